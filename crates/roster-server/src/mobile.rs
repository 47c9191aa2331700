//! The SDK mobile API (mobile-api.md): routing with the wire quirks of §6, the processing order
//! of §3.3, and one thin handler per endpoint that calls one core operation.
//!
//! Routing is done here rather than with axum's router because the spec's routing rules are
//! not a router's: `POST` + `X-HTTP-Method-Override: PATCH` is a `PATCH`, a bad override is a
//! `405` with the envelope, `{pushRegId}` matches case-insensitively, and every 404/405 carries
//! the envelope and an `Allow` header.

use std::{net::SocketAddr, sync::Arc};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use roster_core::{Auth, Core, personalize::PersonalizeFlags, push::ReportKind, resolve::Addressing};
use roster_model::{
    ApiError, Application, ErrorCode,
    patch::{InstallationPatch, PersonalizeBody, UserPatch, parse_body_object},
    wire::VersionJson,
};
use serde_json::{Value, json};

use crate::{ratelimit::RateLimiter, response};

/// What the mobile handlers share.
pub struct MobileState {
    pub core: Core,
    pub max_body_bytes: usize,
    pub latest_sdk_version: String,
    pub sdk_update_url: String,
    pub per_installation: RateLimiter,
    pub create_per_ip: RateLimiter,
    /// One bucket per application code (docs/decisions.md: per-application rate limit).
    pub per_application: RateLimiter,
}

/// The endpoints of mobile-api.md §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Create,
    GetInstallation,
    PatchInstallation,
    DeleteInstallation,
    GetUser,
    PatchUser,
    Personalize,
    Repersonalize,
    Depersonalize,
    SessionEvents,
    CustomEvents,
    BaseUrl,
    Version,
    Messages,
    Seen,
    DeliveryReport,
    MobileOriginated,
}

/// A matched route: the methods it allows (in `Allow` order) and, per method, the endpoint.
struct Route<'p> {
    methods: &'static [(Method, Endpoint)],
    push_reg_id: Option<&'p str>,
}

/// The route template of a mobile path for metrics (`/mobile/1/appinstance/{pushRegId}/user`), or
/// `None` when no mobile route matches.
pub fn route_label(path: &str) -> Option<String> {
    let r = route(path)?;
    Some(match r.push_reg_id {
        Some(id) => path
            .split('/')
            .map(|seg| if seg == id { "{pushRegId}" } else { seg })
            .collect::<Vec<_>>()
            .join("/"),
        None => path.to_string(),
    })
}

/// Matches a normalised path (base path already stripped).
fn route(path: &str) -> Option<Route<'_>> {
    use Endpoint::*;
    type Methods = &'static [(Method, Endpoint)];
    const CREATE: Methods = &[(Method::POST, Create)];
    const INSTALLATION: Methods = &[
        (Method::GET, GetInstallation),
        (Method::PATCH, PatchInstallation),
        (Method::DELETE, DeleteInstallation),
    ];
    const USER: Methods = &[(Method::GET, GetUser), (Method::PATCH, PatchUser)];
    const PERSONALIZE: Methods = &[(Method::POST, Personalize)];
    const REPERSONALIZE: Methods = &[(Method::POST, Repersonalize)];
    const DEPERSONALIZE: Methods = &[(Method::POST, Depersonalize)];
    const SESSION: Methods = &[(Method::POST, SessionEvents)];
    const CUSTOM: Methods = &[(Method::POST, CustomEvents)];
    const BASEURL: Methods = &[(Method::GET, BaseUrl)];
    const VERSION: Methods = &[(Method::GET, Version)];
    const MESSAGES: Methods = &[(Method::POST, Messages)];
    const SEEN: Methods = &[(Method::POST, Seen)];
    const DLR: Methods = &[(Method::POST, DeliveryReport)];
    const MO: Methods = &[(Method::POST, MobileOriginated)];

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (methods, push_reg_id): (Methods, Option<&str>) = match segments.as_slice() {
        ["mobile", "1", "appinstance"] => (CREATE, None),
        ["mobile", "1", "appinstance", id] => (INSTALLATION, Some(id)),
        ["mobile", "1", "appinstance", id, "user"] => (USER, Some(id)),
        ["mobile", "1", "appinstance", id, "personalize"] => (PERSONALIZE, Some(id)),
        ["mobile", "1", "appinstance", id, "repersonalize"] => (REPERSONALIZE, Some(id)),
        ["mobile", "1", "appinstance", id, "depersonalize"] => (DEPERSONALIZE, Some(id)),
        ["mobile", "1", "appinstance", id, "user", "events", "session"] => (SESSION, Some(id)),
        ["mobile", "1", "appinstance", id, "user", "events", "custom"] => (CUSTOM, Some(id)),
        ["mobile", "1", "baseurl"] => (BASEURL, None),
        ["mobile", "3", "version"] => (VERSION, None),
        ["mobile", "5" | "3", "messages"] => (MESSAGES, None),
        ["mobile", "2" | "1", "messages", "seen"] => (SEEN, None),
        ["mobile", "1", "messages", "deliveryreport"] => (DLR, None),
        ["mobile", "1", "messages", "mo"] => (MO, None),
        _ => return None,
    };
    Some(Route { methods, push_reg_id })
}

/// Collapses runs of `/` and drops one trailing `/` (mobile-api.md §1.1).
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut last_slash = false;
    for c in path.chars() {
        if c == '/' {
            if !last_slash {
                out.push('/');
            }
            last_slash = true;
        } else {
            out.push(c);
            last_slash = false;
        }
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn method_not_allowed(methods: &[(Method, Endpoint)], text: &str) -> Response<Body> {
    let mut r = response::error(&ApiError::new(ErrorCode::MethodNotAllowed, text));
    let allow: Vec<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// The effective method: `POST` + `X-HTTP-Method-Override: PATCH` is `PATCH` (§1.2);
/// `Err` for an override on another method or with another value.
fn effective_method(method: &Method, headers: &HeaderMap) -> Result<Method, ()> {
    match headers.get("x-http-method-override") {
        None => Ok(method.clone()),
        Some(v) => {
            let is_patch = v
                .to_str()
                .map(|s| s.trim().eq_ignore_ascii_case("PATCH"))
                .unwrap_or(false);
            if *method == Method::POST && is_patch {
                Ok(Method::PATCH)
            } else {
                Err(())
            }
        }
    }
}

/// The credential of the `Authorization` header.
enum Credential {
    App(String),
    Bearer(String),
}

/// Parses `Authorization` (§2.1): scheme case-insensitive; missing, unknown scheme or empty
/// credential is `APP_CODE_MISSING`.
fn credential(headers: &HeaderMap) -> Result<Credential, ApiError> {
    let missing = || {
        ApiError::new(
            ErrorCode::AppCodeMissing,
            "Authorization header with App or Bearer credential is required",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?
        .trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).ok_or_else(missing)?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(missing());
    }
    if scheme.eq_ignore_ascii_case("App") {
        Ok(Credential::App(rest.to_string()))
    } else if scheme.eq_ignore_ascii_case("Bearer") {
        Ok(Credential::Bearer(rest.to_string()))
    } else {
        Err(missing())
    }
}

/// Query booleans (§1.3): `true`/`false`/`1`/`0` case-insensitive, absent = `false`, last
/// occurrence wins, anything else (also empty) is `REQUEST_FORMAT_INVALID` naming it.
fn query_bool(query: Option<&str>, name: &str) -> Result<bool, ApiError> {
    let value = query_param(query, name);
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(false),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(ApiError::format(
            &format!("query.{name}"),
            "must be true, false, 1 or 0",
        )),
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Serves one mobile request whose path is already normalised and stripped of the base path.
pub async fn serve(
    state: Arc<MobileState>,
    path: String,
    req: Request<Body>,
    client: Option<SocketAddr>,
) -> Response<Body> {
    match handle(&state, &path, req, client).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = response::error(&e.error);
            if let Some(secs) = e.retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
    }
}

/// A rejection, with the `Retry-After` of a 429.
struct Rejection {
    error: ApiError,
    retry_after: Option<u64>,
}

impl From<ApiError> for Rejection {
    fn from(error: ApiError) -> Self {
        Rejection {
            error,
            retry_after: None,
        }
    }
}

impl From<roster_core::CoreError> for Rejection {
    fn from(e: roster_core::CoreError) -> Self {
        let retry_after = match e {
            roster_core::CoreError::RateLimited(secs) => Some(secs),
            _ => None,
        };
        Rejection {
            error: response::api_error(e),
            retry_after,
        }
    }
}

async fn handle(
    state: &MobileState,
    path: &str,
    req: Request<Body>,
    client: Option<SocketAddr>,
) -> Result<Response<Body>, Rejection> {
    use Endpoint::*;
    // Step 1: route and method.
    let Some(route) = route(path) else {
        return Err(ApiError::new(ErrorCode::ResourceNotFound, format!("No route {path}")).into());
    };
    let (parts, body) = req.into_parts();
    let method = match effective_method(&parts.method, &parts.headers) {
        Ok(m) => m,
        Err(()) => {
            return Ok(method_not_allowed(
                route.methods,
                "X-HTTP-Method-Override is only allowed as PATCH on POST",
            ));
        }
    };
    let Some(endpoint) = route.methods.iter().find(|(m, _)| *m == method).map(|(_, e)| *e) else {
        return Ok(method_not_allowed(
            route.methods,
            &format!("Method {method} is not allowed here"),
        ));
    };

    // Step 2: body size.
    let body: Bytes = match Limited::new(body, state.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(ApiError::new(
                ErrorCode::RequestTooLarge,
                format!("Body larger than {} bytes", state.max_body_bytes),
            )
            .into());
        }
        Err(e) => {
            return Err(ApiError::format("body", format!("could not be read ({e})")).into());
        }
    };

    // Step 3: rate limits.
    if let Some(id) = route.push_reg_id {
        state
            .per_installation
            .check(&id.to_ascii_lowercase())
            .map_err(|secs| Rejection {
                error: ApiError::new(ErrorCode::TooManyRequests, "Too many requests for this installation"),
                retry_after: Some(secs),
            })?;
    }
    let ip = client.map(|a| a.ip().to_string()).unwrap_or_default();
    if endpoint == Create {
        state.create_per_ip.check(&ip).map_err(|secs| Rejection {
            error: ApiError::new(ErrorCode::TooManyRequests, "Too many registrations from this address"),
            retry_after: Some(secs),
        })?;
    }
    // Per application, keyed by the code the request names (checked against the store only in
    // step 4; the code is public anyway). Base URL and version checks must never fail (§5.11,
    // §5.12) and are not counted. A JWT names its application inside the token: it takes from
    // the same bucket once the token is decoded, below.
    if !matches!(endpoint, BaseUrl | Version)
        && let Ok(Credential::App(code)) = credential(&parts.headers)
    {
        check_application_rate(state, &code)?;
    }

    // Endpoints that tolerate any credential (§5.11, §5.12).
    match endpoint {
        BaseUrl => {
            return Ok(response::json_bytes(
                http::StatusCode::OK,
                br#"{"baseUrl":null}"#.to_vec(),
            ));
        }
        Version => {
            let platform = query_param(parts.uri.query(), "platformType").unwrap_or_default();
            return Ok(response::json(&VersionJson {
                platform_type: platform,
                library_version: state.latest_sdk_version.clone(),
                update_url: state.sdk_update_url.clone(),
            }));
        }
        _ => {}
    }

    // Step 4: authentication.
    let core = &state.core;
    let user_data = matches!(endpoint, GetUser | PatchUser | Personalize | Repersonalize);
    let (app, auth): (Application, Auth) = match credential(&parts.headers)? {
        Credential::App(code) => {
            let app = core.application_by_code(&code).await?;
            if user_data && app.require_jwt_for_user_data {
                return Err(
                    ApiError::new(ErrorCode::JwtInvalid, "JWT required for user data of this application").into(),
                );
            }
            (app, Auth::App)
        }
        Credential::Bearer(token) => {
            if !user_data {
                return Err(ApiError::new(
                    ErrorCode::AppCodeMissing,
                    "A JWT is only accepted on user data endpoints",
                )
                .into());
            }
            let verified = core.verify_jwt(&token, roster_model::now_millis() / 1000).await?;
            check_application_rate(state, &verified.application.application_code)?;
            (
                verified.application,
                Auth::Jwt {
                    subject: verified.subject,
                },
            )
        }
    };

    let caller_header = header_str(&parts.headers, "pushregistrationid");
    let path_id = route.push_reg_id.unwrap_or("");
    let at = Addressing { path_id, caller_header };
    let query = parts.uri.query();

    // Steps 5–9, per endpoint.
    match endpoint {
        Create => {
            let patch = InstallationPatch::parse(&parse_body_object(&body)?)?;
            Ok(response::json(&core.create_installation(&app, &patch).await?))
        }
        GetInstallation => Ok(response::json(&core.get_installation(&app, at).await?)),
        PatchInstallation => {
            let patch = InstallationPatch::parse(&parse_body_object(&body)?)?;
            let gate = || state.create_per_ip.check(&ip);
            Ok(response::json(&core.patch_installation(&app, at, &patch, &gate).await?))
        }
        DeleteInstallation => {
            core.delete_expired_installation(&app, path_id, caller_header).await?;
            Ok(response::empty())
        }
        GetUser => Ok(response::json(&core.get_user(&app, &auth, at).await?)),
        PatchUser => {
            let patch = UserPatch::parse(&parse_body_object(&body)?, "")?;
            Ok(response::json(&core.patch_user(&app, &auth, at, &patch).await?))
        }
        Personalize | Repersonalize => {
            let parsed = PersonalizeBody::parse(&parse_body_object(&body)?)?;
            let flags = if endpoint == Personalize {
                PersonalizeFlags {
                    force_depersonalize: query_bool(query, "forceDepersonalize")?,
                    keep_as_lead: query_bool(query, "keepAsLead")?,
                    set_device_as_primary: query_bool(query, "setDeviceAsPrimary")?,
                }
            } else {
                // §5.9: exactly personalize with all three flags false; any query is ignored.
                PersonalizeFlags::default()
            };
            Ok(response::json(
                &core.personalize(&app, &auth, at, &parsed, flags).await?,
            ))
        }
        Depersonalize => {
            core.depersonalize(&app, at).await?;
            Ok(response::empty())
        }
        SessionEvents | CustomEvents => {
            core.caller_event(&app, at).await?;
            Ok(response::empty())
        }
        // management-api.md §6.6: reports of the caller's deliveries.
        Messages => {
            core.record_device_reports(&app, caller_header, ReportKind::Sync, &body)
                .await?;
            Ok(response::json_bytes(
                http::StatusCode::OK,
                br#"{"payloads":[]}"#.to_vec(),
            ))
        }
        Seen | DeliveryReport => {
            let kind = if endpoint == Seen {
                ReportKind::Seen
            } else {
                ReportKind::DeliveryReport
            };
            core.record_device_reports(&app, caller_header, kind, &body).await?;
            Ok(response::empty())
        }
        MobileOriginated => Ok(response::json(&mo_echo(&body))),
        BaseUrl | Version => unreachable!("answered before authentication"),
    }
}

/// `POST /mobile/1/messages/mo`: one SUCCESS element per received message, in order (§5.13).
/// Parsed leniently: anything unparsable is an empty list.
fn mo_echo(body: &[u8]) -> Value {
    let messages = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("messages").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let out: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut o = serde_json::Map::new();
            if let Some(id) = m.get("messageId").filter(|v| !v.is_null()) {
                o.insert("messageId".into(), id.clone());
            }
            o.insert("statusCode".into(), json!(0));
            o.insert("status".into(), json!("SUCCESS"));
            Value::Object(o)
        })
        .collect();
    json!({ "messages": out })
}

/// Takes a token from the bucket of application `code` (compared like the code itself:
/// lowercase, mobile-api.md §2.1).
fn check_application_rate(state: &MobileState, code: &str) -> Result<(), Rejection> {
    state
        .per_application
        .check(&code.to_ascii_lowercase())
        .map_err(|secs| Rejection {
            error: ApiError::new(ErrorCode::TooManyRequests, "Too many requests for this application"),
            retry_after: Some(secs),
        })
}

/// The last value of a query parameter, percent-decoded (names too); `None` when absent.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    // The last occurrence wins (§1.3): search from the end.
    query
        .unwrap_or("")
        .split('&')
        .rev()
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_normalisation() {
        assert_eq!(normalize_path("//mobile/1//appinstance/"), "/mobile/1/appinstance");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("///"), "/");
        assert_eq!(normalize_path("/a/b"), "/a/b");
    }

    #[test]
    fn query_booleans() {
        let q = Some("ri=true&keepAsLead=1&keepAsLead=FALSE&setDeviceAsPrimary=TRUE");
        assert!(!query_bool(q, "keepAsLead").unwrap());
        assert!(query_bool(q, "setDeviceAsPrimary").unwrap());
        assert!(!query_bool(q, "forceDepersonalize").unwrap());
        assert!(query_bool(Some("keepAsLead="), "keepAsLead").is_err());
        assert!(query_bool(Some("keepAsLead=yes"), "keepAsLead").is_err());
    }

    #[test]
    fn mo_echoes_in_order() {
        let v = mo_echo(br#"{"from":"x","messages":[{"messageId":"a"},{"messageId":"b","text":"t"}]}"#);
        assert_eq!(
            v.to_string(),
            r#"{"messages":[{"messageId":"a","statusCode":0,"status":"SUCCESS"},{"messageId":"b","statusCode":0,"status":"SUCCESS"}]}"#
        );
        assert_eq!(mo_echo(b"garbage").to_string(), r#"{"messages":[]}"#);
    }
}
