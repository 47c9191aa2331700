//! FCM stand-in: an OAuth 2.0 token endpoint that verifies the service account's RS256
//! JWT-bearer assertion and issues short-lived access tokens (its own port, HTTP/1.1 or h2c), and
//! `POST /v1/projects/{projectId}/messages:send` over h2c that requires one of those tokens and
//! checks the data-only message shape of management-api.md §6.4; answers scriptable per
//! registration token.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json as json_value};

use crate::fixtures;
use crate::server::{Handler, Scripts, Server, StatusCounts, json, unix_secs};
use crate::shape::{self, FcmBody, IbData};

/// The scope an assertion must ask for.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// What the stand-in answers to a send that passes every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FcmAnswer {
    /// `200` with the message name.
    Success,
    /// `404 NOT_FOUND`, error code `UNREGISTERED`.
    Unregistered,
    /// `400 INVALID_ARGUMENT`, error code `INVALID_ARGUMENT`.
    InvalidArgument,
    /// `401 UNAUTHENTICATED` as for an expired access token; the token presented stops working.
    ExpiredToken,
    /// `401 UNAUTHENTICATED`, error code `THIRD_PARTY_AUTH_ERROR`.
    ThirdPartyAuthError,
    /// `403 PERMISSION_DENIED`, error code `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// `429 RESOURCE_EXHAUSTED`, error code `QUOTA_EXCEEDED`, with `Retry-After` when given.
    QuotaExceeded {
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// `500 INTERNAL`
    Internal,
    /// `503 UNAVAILABLE`
    Unavailable,
}

/// Configuration of an [`FcmStandIn`].
#[derive(Debug, Clone)]
pub struct FcmStandInConfig {
    /// The project of `messages:send` URLs.
    pub project_id: String,
    /// Expected `iss` of assertions.
    pub client_email: String,
    /// Public key (SPKI PEM) assertions must verify with.
    pub public_key_pem: String,
    /// `expires_in` of issued access tokens; they stop working after it.
    pub token_lifetime: Duration,
    /// Keep a copy of every send request for [`FcmStandIn::recorded`].
    pub record: bool,
}

impl FcmStandInConfig {
    /// The test service account of [`fixtures`], tokens valid for an hour, recording requests.
    pub fn test() -> Self {
        FcmStandInConfig {
            project_id: fixtures::FCM_PROJECT_ID.into(),
            client_email: fixtures::FCM_CLIENT_EMAIL.into(),
            public_key_pem: fixtures::FCM_PUBLIC_KEY_PEM.into(),
            token_lifetime: Duration::from_secs(3600),
            record: true,
        }
    }
}

/// One `messages:send` request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct FcmRequest {
    /// The registration token from the body (empty if the body had none).
    pub device_token: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The request body, byte for byte.
    pub body: Bytes,
    /// The status answered.
    pub status: u16,
}

/// Counters of an [`FcmStandIn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmStats {
    /// TCP connections accepted by the `messages:send` endpoint.
    pub send_connections: u64,
    /// TCP connections accepted by the token endpoint.
    pub token_connections: u64,
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Requests to the send endpoint.
    pub sends: u64,
    /// Send answers per HTTP status.
    pub statuses: BTreeMap<u16, u64>,
}

impl FcmStats {
    /// Send answers with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// A running FCM stand-in on `127.0.0.1` (two ports: token endpoint and FCM); stops when dropped.
pub struct FcmStandIn {
    send_server: Server,
    token_server: Server,
    state: Arc<FcmState>,
}

struct FcmState {
    config: FcmStandInConfig,
    key: DecodingKey,
    token_url: OnceLock<String>,
    send_path: String,
    /// Issued access tokens and when they stop working.
    tokens: RwLock<HashMap<String, Instant>>,
    scripts: Scripts<FcmAnswer>,
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    sends: AtomicU64,
    statuses: StatusCounts,
    recorded: Mutex<Vec<FcmRequest>>,
}

/// The token endpoint's view of the shared state.
struct TokenEndpoint(Arc<FcmState>);

#[derive(Deserialize)]
struct AssertionClaims {
    scope: String,
    iat: u64,
    exp: u64,
}

impl FcmStandIn {
    /// Starts both endpoints on free loopback ports.
    pub async fn start(config: FcmStandInConfig) -> io::Result<Self> {
        let key = DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("FCM public key: {e}")))?;
        let state = Arc::new(FcmState {
            send_path: format!("/v1/projects/{}/messages:send", config.project_id),
            config,
            key,
            token_url: OnceLock::new(),
            tokens: RwLock::new(HashMap::new()),
            scripts: Scripts::new(),
            token_requests: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            sends: AtomicU64::new(0),
            statuses: StatusCounts::new(),
            recorded: Mutex::new(Vec::new()),
        });
        let token_server = Server::start(Arc::new(TokenEndpoint(state.clone()))).await?;
        let _ = state.token_url.set(format!("http://{}/token", token_server.addr()));
        let send_server = Server::start(state.clone()).await?;
        Ok(FcmStandIn {
            send_server,
            token_server,
            state,
        })
    }

    /// `http://127.0.0.1:<port>`: the `fcm.baseUrl` that points an application here.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.send_server.addr())
    }

    /// The token endpoint (`fcm.tokenUrl` or the service account's `token_uri`).
    pub fn token_url(&self) -> String {
        self.state.token_url.get().cloned().unwrap_or_default()
    }

    /// The `providers.fcm` write shape (management-api.md §7.1) of the test service account,
    /// pointing here (the token URL as the service account's `token_uri`).
    pub fn application_settings(&self) -> Value {
        json_value!({"serviceAccount": fixtures::service_account(&self.token_url()), "baseUrl": self.base_url()})
    }

    /// Queues one-shot answers for the next sends to `device_token` (then back to the standing
    /// answer, by default `Success`).
    pub fn script(&self, device_token: &str, answers: impl IntoIterator<Item = FcmAnswer>) {
        self.state.scripts.push(device_token, answers);
    }

    /// Sets the standing answer for `device_token`.
    pub fn always(&self, device_token: &str, answer: FcmAnswer) {
        self.state.scripts.always(device_token, answer);
    }

    /// Makes every access token issued so far stop working, as if they had all expired.
    pub fn expire_access_tokens(&self) {
        self.state.tokens.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Counters so far.
    pub fn stats(&self) -> FcmStats {
        let s = &self.state;
        FcmStats {
            send_connections: self.send_server.connections(),
            token_connections: self.token_server.connections(),
            token_requests: s.token_requests.load(Ordering::Relaxed),
            tokens_issued: s.tokens_issued.load(Ordering::Relaxed),
            sends: s.sends.load(Ordering::Relaxed),
            statuses: s.statuses.snapshot(),
        }
    }

    /// Send requests recorded so far (empty unless `record` is set).
    pub fn recorded(&self) -> Vec<FcmRequest> {
        self.state.recorded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn oauth_error(error: &str, description: &str) -> Response<Full<Bytes>> {
    json(
        StatusCode::BAD_REQUEST,
        json_value!({"error": error, "error_description": description}).to_string(),
    )
}

impl Handler for TokenEndpoint {
    fn handle(&self, request: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
        let state = &self.0;
        state.token_requests.fetch_add(1, Ordering::Relaxed);
        if request.method != Method::POST || request.uri.path() != "/token" {
            return json(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#);
        }
        let is_form = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return oauth_error("invalid_request", "form body expected");
        }
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return oauth_error("unsupported_grant_type", "Invalid grant_type");
        }
        let Some(assertion) = form.get("assertion") else {
            return oauth_error("invalid_request", "Missing required parameter: assertion");
        };
        if let Err(why) = state.verify_assertion(assertion) {
            return oauth_error("invalid_grant", why);
        }
        let token = format!("ya29.standin-{}", uuid::Uuid::new_v4().simple());
        let lifetime = state.config.token_lifetime;
        state
            .tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), Instant::now() + lifetime);
        state.tokens_issued.fetch_add(1, Ordering::Relaxed);
        json(
            StatusCode::OK,
            json_value!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}).to_string(),
        )
    }
}

impl FcmState {
    fn verify_assertion(&self, assertion: &str) -> Result<(), &'static str> {
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| "Invalid JWT")?;
        if header.alg != Algorithm::RS256 {
            return Err("Invalid JWT: alg must be RS256");
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_audience(&[self.token_url.get().map(String::as_str).unwrap_or("")]);
        validation.set_issuer(&[&self.config.client_email]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &self.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "Invalid JWT Signature.",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "Invalid JWT: aud must be the token URL",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "Invalid grant: account not found",
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token",
                _ => "Invalid JWT",
            })?
            .claims;
        let now = unix_secs();
        if claims.iat > now + 60 || claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
            return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe");
        }
        if !claims.scope.split(' ').any(|s| s == FCM_SCOPE) {
            return Err("Invalid JWT: scope must include firebase.messaging");
        }
        Ok(())
    }

    fn bearer_valid(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
        else {
            return false;
        };
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens.get(token).is_some_and(|expires| Instant::now() < *expires)
    }

    fn revoke(&self, headers: &HeaderMap) {
        if let Some((_, token)) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
        {
            self.tokens.write().unwrap_or_else(|p| p.into_inner()).remove(token);
        }
    }
}

/// Google's error envelope, with the FCM error code as a detail when there is one.
fn fcm_error(
    status: StatusCode,
    google_status: &str,
    message: &str,
    error_code: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut error = json_value!({"code": status.as_u16(), "message": message, "status": google_status});
    if let Some(code) = error_code {
        error["details"] =
            json_value!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]);
    }
    json(status, json_value!({ "error": error }).to_string())
}

impl Handler for FcmState {
    fn handle(&self, request: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
        self.sends.fetch_add(1, Ordering::Relaxed);
        let parsed: Result<FcmBody, String> = shape::parse(&body);
        let device_token = parsed
            .as_ref()
            .ok()
            .and_then(|b| b.message.as_ref())
            .and_then(|m| m.token.as_deref())
            .unwrap_or("")
            .to_owned();
        let response = self.answer(&request, &parsed, &device_token);
        self.statuses.add(response.status());
        if self.config.record {
            self.recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(FcmRequest {
                    device_token,
                    headers: request.headers,
                    body,
                    status: response.status().as_u16(),
                });
        }
        response
    }
}

impl FcmState {
    fn answer(
        &self,
        request: &http::request::Parts,
        body: &Result<FcmBody, String>,
        device_token: &str,
    ) -> Response<Full<Bytes>> {
        let path = request.uri.path();
        if request.method != Method::POST || !path.starts_with("/v1/projects/") || !path.ends_with("/messages:send") {
            return fcm_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Requested entity was not found.",
                None,
            );
        }
        if !self.bearer_valid(&request.headers) {
            return fcm_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                None,
            );
        }
        if path != self.send_path {
            return fcm_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "The caller does not have permission",
                None,
            );
        }
        if request.version != http::Version::HTTP_2 {
            return fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "stand-in requires HTTP/2",
                None,
            );
        }
        if let Err(why) = check_message(body) {
            return fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &why,
                Some("INVALID_ARGUMENT"),
            );
        }
        match self.scripts.next(device_token).unwrap_or(FcmAnswer::Success) {
            FcmAnswer::Success => json(
                StatusCode::OK,
                format!(
                    r#"{{"name":"projects/{}/messages/{}"}}"#,
                    self.config.project_id,
                    uuid::Uuid::new_v4().simple()
                ),
            ),
            FcmAnswer::Unregistered => fcm_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Requested entity was not found.",
                Some("UNREGISTERED"),
            ),
            FcmAnswer::InvalidArgument => fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                Some("INVALID_ARGUMENT"),
            ),
            FcmAnswer::ExpiredToken => {
                self.revoke(&request.headers);
                fcm_error(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                    None,
                )
            }
            FcmAnswer::ThirdPartyAuthError => fcm_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Auth error from APNS or Web Push Service",
                Some("THIRD_PARTY_AUTH_ERROR"),
            ),
            FcmAnswer::SenderIdMismatch => fcm_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "SenderId mismatch",
                Some("SENDER_ID_MISMATCH"),
            ),
            FcmAnswer::QuotaExceeded { retry_after } => {
                let mut response = fcm_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Quota exceeded for quota metric",
                    Some("QUOTA_EXCEEDED"),
                );
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
            FcmAnswer::Internal => fcm_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error encountered.",
                Some("INTERNAL"),
            ),
            FcmAnswer::Unavailable => fcm_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                Some("UNAVAILABLE"),
            ),
        }
    }
}

/// The data-only message shape of management-api.md §6.4 "FCM".
fn check_message(body: &Result<FcmBody, String>) -> Result<(), String> {
    let body = body
        .as_ref()
        .map_err(|e| format!("Invalid JSON payload received: {e}"))?;
    let message = body.message.as_ref().ok_or("no message object")?;
    if message.token.as_deref().is_none_or(str::is_empty) {
        return Err("message.token missing".into());
    }
    if message.notification.is_some() {
        return Err("Roster sends data-only messages: unexpected message.notification".into());
    }
    let android = message.android.as_ref().ok_or("no message.android")?;
    if android.priority.as_deref() != Some("HIGH") {
        return Err("message.android.priority must be HIGH".into());
    }
    let ttl = android.ttl.as_deref().unwrap_or("");
    if !shape::is_duration(ttl) {
        return Err(format!("Invalid value at 'message.android.ttl' ({ttl})"));
    }
    let data = message.data.as_ref().ok_or("no message.data")?;
    if data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > 4096 {
        return Err("Android message is too big".into());
    }
    let ib = data.get("org_ib_d").ok_or("no data.org_ib_d")?;
    let ib: IbData = serde_json::from_str(ib).map_err(|_| "data.org_ib_d is not the IB JSON object".to_string())?;
    if ib.message_id.is_none() || ib.text.is_none() {
        return Err("org_ib_d needs messageId and text".into());
    }
    if ib.notification.is_none() {
        return Err("org_ib_d.notification must be an object".into());
    }
    let internal = ib.internal.ok_or("no org_ib_d.internal")?;
    if internal.send_date_time.is_none() || internal.bulk_id.is_none() {
        return Err("org_ib_d.internal needs sendDateTime and bulkId".into());
    }
    Ok(())
}
