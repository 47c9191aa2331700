//! APNs stand-in: `POST /3/device/{token}` over h2c, token-based authentication checked like
//! Apple does (ES256 JWT with `kid` and `iss`, at most an hour old), the request headers and the
//! payload shape Roster sends (management-api.md §6.4) checked strictly, answers scriptable per
//! device token.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::fixtures;
use crate::server::{Handler, Scripts, Server, StatusCounts, json, unix_secs};
use crate::shape::{self, ApnsPayload};

/// What the stand-in answers to a request that passes every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApnsAnswer {
    /// `200`
    Success,
    /// `400 BadDeviceToken`
    BadDeviceToken,
    /// `400 DeviceTokenNotForTopic`
    DeviceTokenNotForTopic,
    /// `410 Unregistered`
    Unregistered,
    /// `429 TooManyRequests`, with `Retry-After: <seconds>` when given.
    TooManyRequests {
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// `500 InternalServerError`
    InternalServerError,
    /// `503 ServiceUnavailable`
    ServiceUnavailable,
    /// `403 ExpiredProviderToken`; the provider token presented is expired from then on, as if an
    /// hour had passed, so the client must make a new one.
    ExpiredProviderToken,
    /// `403 InvalidProviderToken`
    InvalidProviderToken,
}

/// Configuration of an [`ApnsStandIn`].
#[derive(Debug, Clone)]
pub struct ApnsStandInConfig {
    /// Expected `iss` of provider tokens.
    pub team_id: String,
    /// Expected `kid` of provider tokens.
    pub key_id: String,
    /// Public key (SPKI PEM) the tokens must verify with.
    pub public_key_pem: String,
    /// Accepted `apns-topic` values.
    pub topics: Vec<String>,
    /// Keep a copy of every request (headers and body) for [`ApnsStandIn::recorded`].
    pub record: bool,
    /// Provider tokens older than this are `ExpiredProviderToken` (Apple: one hour).
    pub max_token_age: Duration,
}

impl ApnsStandInConfig {
    /// The test identity of [`fixtures`], recording requests.
    pub fn test() -> Self {
        ApnsStandInConfig {
            team_id: fixtures::APNS_TEAM_ID.into(),
            key_id: fixtures::APNS_KEY_ID.into(),
            public_key_pem: fixtures::APNS_PUBLIC_KEY_PEM.into(),
            topics: vec![fixtures::APNS_TOPIC.into()],
            record: true,
            max_token_age: Duration::from_secs(3600),
        }
    }
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct ApnsRequest {
    /// The device token from the path.
    pub device_token: String,
    /// All request headers (pseudo-headers excluded).
    pub headers: HeaderMap,
    /// The request body, byte for byte.
    pub body: Bytes,
    /// The status answered.
    pub status: u16,
    /// The `reason` answered, for errors.
    pub reason: Option<String>,
}

/// Counters of an [`ApnsStandIn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// Requests answered.
    pub requests: u64,
    /// Distinct provider tokens that verified.
    pub provider_tokens: u64,
    /// Answers per HTTP status.
    pub statuses: BTreeMap<u16, u64>,
}

impl ApnsStats {
    /// Answers with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// A running APNs stand-in on `127.0.0.1`; stops when dropped.
pub struct ApnsStandIn {
    server: Server,
    state: Arc<ApnsState>,
}

struct ApnsState {
    config: ApnsStandInConfig,
    key: DecodingKey,
    validation: Validation,
    /// Verified provider tokens: iat, and whether the stand-in has declared them expired.
    tokens: RwLock<HashMap<String, TokenState>>,
    scripts: Scripts<ApnsAnswer>,
    requests: AtomicU64,
    provider_tokens: AtomicU64,
    statuses: StatusCounts,
    recorded: Mutex<Vec<ApnsRequest>>,
}

#[derive(Clone, Copy)]
struct TokenState {
    iat: u64,
    expired: bool,
}

#[derive(Deserialize)]
struct ProviderClaims {
    iss: String,
    iat: u64,
}

impl ApnsStandIn {
    /// Starts a stand-in on a free loopback port.
    pub async fn start(config: ApnsStandInConfig) -> io::Result<Self> {
        let key = DecodingKey::from_ec_pem(config.public_key_pem.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("APNs public key: {e}")))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let state = Arc::new(ApnsState {
            config,
            key,
            validation,
            tokens: RwLock::new(HashMap::new()),
            scripts: Scripts::new(),
            requests: AtomicU64::new(0),
            provider_tokens: AtomicU64::new(0),
            statuses: StatusCounts::new(),
            recorded: Mutex::new(Vec::new()),
        });
        let server = Server::start(state.clone()).await?;
        Ok(ApnsStandIn { server, state })
    }

    /// `http://127.0.0.1:<port>`: the `apns.baseUrl` that points an application here.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The `providers.apns` write shape (management-api.md §7.1) of the test key, pointing here.
    pub fn application_settings(&self) -> Value {
        serde_json::json!({
            "teamId": self.state.config.team_id,
            "keyId": self.state.config.key_id,
            "privateKey": fixtures::APNS_PRIVATE_KEY_PEM,
            "topic": self.state.config.topics.first().cloned().unwrap_or_default(),
            "environment": "sandbox",
            "baseUrl": self.base_url(),
        })
    }

    /// Queues one-shot answers for the next requests to `device_token` (then back to the
    /// standing answer, by default `Success`).
    pub fn script(&self, device_token: &str, answers: impl IntoIterator<Item = ApnsAnswer>) {
        self.state.scripts.push(device_token, answers);
    }

    /// Sets the standing answer for `device_token`.
    pub fn always(&self, device_token: &str, answer: ApnsAnswer) {
        self.state.scripts.always(device_token, answer);
    }

    /// Counters so far.
    pub fn stats(&self) -> ApnsStats {
        ApnsStats {
            connections: self.server.connections(),
            requests: self.state.requests.load(Ordering::Relaxed),
            provider_tokens: self.state.provider_tokens.load(Ordering::Relaxed),
            statuses: self.state.statuses.snapshot(),
        }
    }

    /// Requests recorded so far (empty unless `record` is set).
    pub fn recorded(&self) -> Vec<ApnsRequest> {
        self.state.recorded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Handler for ApnsState {
    fn handle(&self, request: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let device_token = request.uri.path().strip_prefix("/3/device/").unwrap_or("").to_owned();
        let (status, reason, retry_after) = match self.check(&request, &device_token, &body) {
            Err((status, reason)) => (status, Some(reason), None),
            Ok(()) => self.answer(&request.headers, &device_token),
        };
        self.statuses.add(status);
        if self.config.record {
            self.recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ApnsRequest {
                    device_token,
                    headers: request.headers.clone(),
                    body,
                    status: status.as_u16(),
                    reason: reason.clone(),
                });
        }
        let mut response = match &reason {
            None => json(status, Bytes::new()),
            Some(reason) if status == StatusCode::GONE => json(
                status,
                format!(r#"{{"reason":"{reason}","timestamp":{}}}"#, unix_secs() * 1000),
            ),
            Some(reason) => json(status, format!(r#"{{"reason":"{reason}"}}"#)),
        };
        let apns_id = request.headers.get("apns-id").cloned().unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value")
        });
        response.headers_mut().insert("apns-id", apns_id);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, reason: &str) -> Refusal {
    (status, reason.to_owned())
}

impl ApnsState {
    /// Every check Apple makes on the request that Roster's client could get wrong, in Apple's
    /// order, plus the payload shape of §6.4.
    fn check(&self, request: &http::request::Parts, device_token: &str, body: &[u8]) -> Result<(), Refusal> {
        if request.method != Method::POST {
            return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
        }
        if !request.uri.path().starts_with("/3/device/") {
            return Err(refuse(StatusCode::NOT_FOUND, "BadPath"));
        }
        if device_token.is_empty() {
            return Err(refuse(StatusCode::BAD_REQUEST, "MissingDeviceToken"));
        }
        if request.version != http::Version::HTTP_2 {
            return Err(refuse(StatusCode::BAD_REQUEST, "StandInRequiresHttp2"));
        }
        self.check_provider_token(&request.headers)?;
        let headers = &request.headers;
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
        match header("apns-topic") {
            None => return Err(refuse(StatusCode::BAD_REQUEST, "MissingTopic")),
            Some(topic) if !self.config.topics.iter().any(|t| t == topic) => {
                return Err(refuse(StatusCode::BAD_REQUEST, "TopicDisallowed"));
            }
            Some(_) => {}
        }
        let push_type = match header("apns-push-type") {
            Some(t @ ("alert" | "background")) => t,
            _ => return Err(refuse(StatusCode::BAD_REQUEST, "InvalidPushType")),
        };
        match (push_type, header("apns-priority")) {
            ("alert", None | Some("10")) | ("background", Some("5")) => {}
            _ => return Err(refuse(StatusCode::BAD_REQUEST, "BadPriority")),
        }
        let apns_id = header("apns-id");
        if let Some(id) = apns_id
            && !is_canonical_uuid(id)
        {
            return Err(refuse(StatusCode::BAD_REQUEST, "BadMessageId"));
        }
        if let Some(expiration) = header("apns-expiration")
            && expiration.parse::<u64>().is_err()
        {
            return Err(refuse(StatusCode::BAD_REQUEST, "BadExpirationDate"));
        }
        if body.is_empty() {
            return Err(refuse(StatusCode::BAD_REQUEST, "PayloadEmpty"));
        }
        if body.len() > 4096 {
            return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
        }
        check_payload(body, push_type, apns_id).map_err(|what| (StatusCode::BAD_REQUEST, format!("BadPayload: {what}")))
    }

    fn check_provider_token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(refuse(StatusCode::FORBIDDEN, "MissingProviderToken"));
        };
        let value = value.to_str().unwrap_or("");
        let jwt = match value.split_once(' ') {
            Some((scheme, jwt)) if scheme.eq_ignore_ascii_case("bearer") => jwt,
            _ => return Err(refuse(StatusCode::FORBIDDEN, "MissingProviderToken")),
        };
        let now = unix_secs();
        let known = self.tokens.read().unwrap_or_else(|p| p.into_inner()).get(jwt).copied();
        let state = match known {
            Some(state) => state,
            None => {
                let state = self.verify(jwt, now)?;
                let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
                if tokens.len() > 4096 {
                    tokens.clear(); // bound memory; a forgotten token is simply verified again
                }
                if tokens.insert(jwt.to_owned(), state).is_none() {
                    self.provider_tokens.fetch_add(1, Ordering::Relaxed);
                }
                state
            }
        };
        if state.expired || now.saturating_sub(state.iat) > self.config.max_token_age.as_secs() {
            return Err(refuse(StatusCode::FORBIDDEN, "ExpiredProviderToken"));
        }
        Ok(())
    }

    fn verify(&self, jwt: &str, now: u64) -> Result<TokenState, Refusal> {
        let invalid = || refuse(StatusCode::FORBIDDEN, "InvalidProviderToken");
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| invalid())?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(self.config.key_id.as_str()) {
            return Err(invalid());
        }
        let claims = jsonwebtoken::decode::<ProviderClaims>(jwt, &self.key, &self.validation)
            .map_err(|_| invalid())?
            .claims;
        if claims.iss != self.config.team_id || claims.iat > now + 60 {
            return Err(invalid());
        }
        Ok(TokenState {
            iat: claims.iat,
            expired: false,
        })
    }

    fn answer(&self, headers: &HeaderMap, device_token: &str) -> (StatusCode, Option<String>, Option<u64>) {
        let reason = |s: &str| Some(s.to_owned());
        match self.scripts.next(device_token).unwrap_or(ApnsAnswer::Success) {
            ApnsAnswer::Success => (StatusCode::OK, None, None),
            ApnsAnswer::BadDeviceToken => (StatusCode::BAD_REQUEST, reason("BadDeviceToken"), None),
            ApnsAnswer::DeviceTokenNotForTopic => (StatusCode::BAD_REQUEST, reason("DeviceTokenNotForTopic"), None),
            ApnsAnswer::Unregistered => (StatusCode::GONE, reason("Unregistered"), None),
            ApnsAnswer::TooManyRequests { retry_after } => {
                (StatusCode::TOO_MANY_REQUESTS, reason("TooManyRequests"), retry_after)
            }
            ApnsAnswer::InternalServerError => (StatusCode::INTERNAL_SERVER_ERROR, reason("InternalServerError"), None),
            ApnsAnswer::ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, reason("ServiceUnavailable"), None),
            ApnsAnswer::ExpiredProviderToken => {
                if let Some(jwt) = headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split_once(' '))
                    .map(|(_, jwt)| jwt)
                {
                    let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
                    if let Some(state) = tokens.get_mut(jwt) {
                        state.expired = true;
                    }
                }
                (StatusCode::FORBIDDEN, reason("ExpiredProviderToken"), None)
            }
            ApnsAnswer::InvalidProviderToken => (StatusCode::FORBIDDEN, reason("InvalidProviderToken"), None),
        }
    }
}

/// `8-4-4-4-12` hexadecimal digits, as `apns-id` requires.
fn is_canonical_uuid(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The payload shape of management-api.md §6.4 "APNs".
fn check_payload(body: &[u8], push_type: &str, apns_id: Option<&str>) -> Result<(), String> {
    let payload: ApnsPayload = shape::parse(body)?;
    let aps = payload.aps.ok_or("no aps object")?;
    if push_type == "alert" {
        let alert = aps.alert.ok_or("alert push without aps.alert object")?;
        if alert.body.is_none() {
            return Err("aps.alert.body missing".into());
        }
        if aps.content_available.is_some() {
            return Err("alert push with content-available".into());
        }
    } else {
        if aps.content_available != Some(1) {
            return Err("background push without content-available 1".into());
        }
        if aps.alert.is_some() || aps.sound.is_some() || aps.badge.is_some() || aps.mutable_content.is_some() {
            return Err("background push with visible aps members".into());
        }
    }
    let message_id = payload.message_id.ok_or("no messageId")?;
    if let Some(id) = apns_id
        && id != message_id
    {
        return Err("messageId differs from apns-id".into());
    }
    let internal = payload.internal_data.ok_or("no internalData object")?;
    if internal.send_date_time.is_none() || internal.bulk_id.is_none() {
        return Err("internalData needs sendDateTime and bulkId".into());
    }
    if push_type == "background" && internal.silent.is_none() {
        return Err("background push without internalData.silent".into());
    }
    let _ = payload.custom_payload; // an object when present, or the parse failed
    Ok(())
}
