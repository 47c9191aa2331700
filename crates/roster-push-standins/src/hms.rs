//! HMS (Huawei Push Kit) stand-in: an OAuth 2.0 client-credentials token endpoint (its own
//! port) and `POST /v1/{appId}/messages:send` over h2c that requires an issued token and checks
//! the message shape of management-api.md §6.4 "HMS"; answers scriptable per token.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json as json_value};

use crate::fixtures;
use crate::server::{Handler, Scripts, Server, StatusCounts, json};

/// What the stand-in answers to a send that passes every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HmsAnswer {
    /// `200`, code `80000000`.
    Success,
    /// `200`, code `80100000` (partial success) listing the token in `illegal_tokens`.
    IllegalToken,
    /// `400`, code `80300007` (all tokens invalid).
    InvalidTokens,
    /// `400`, code `80100001` (request parameter error).
    InvalidParameter,
    /// `401`, code `80200003` (OAuth token expired); the token presented stops working.
    TokenExpired,
    /// `401`, code `80200001` (OAuth authentication error).
    AuthError,
    /// `403`, code `80300002` (the app may not send).
    NoPermission,
    /// `429`, with `Retry-After` when given.
    TooManyRequests {
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// `500`, code `81000001` (internal error).
    Internal,
}

/// Configuration of an [`HmsStandIn`].
#[derive(Debug, Clone)]
pub struct HmsStandInConfig {
    /// The app id of `messages:send` URLs.
    pub app_id: String,
    /// Accepted OAuth client id.
    pub client_id: String,
    /// Accepted OAuth client secret.
    pub client_secret: String,
    /// `expires_in` of issued access tokens; they stop working after it.
    pub token_lifetime: Duration,
    /// Keep a copy of every send request for [`HmsStandIn::recorded`].
    pub record: bool,
}

impl HmsStandInConfig {
    /// The test credentials of [`fixtures`], tokens valid for an hour, recording requests.
    pub fn test() -> Self {
        HmsStandInConfig {
            app_id: fixtures::HMS_APP_ID.into(),
            client_id: fixtures::HMS_CLIENT_ID.into(),
            client_secret: fixtures::HMS_CLIENT_SECRET.into(),
            token_lifetime: Duration::from_secs(3600),
            record: true,
        }
    }
}

/// One `messages:send` request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct HmsRequest {
    /// The first token of `message.token` (empty if none).
    pub device_token: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The request body, byte for byte.
    pub body: Bytes,
    /// The status answered.
    pub status: u16,
}

/// Counters of an [`HmsStandIn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmsStats {
    /// TCP connections accepted by the send endpoint.
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

impl HmsStats {
    /// Send answers with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// A running HMS stand-in on `127.0.0.1` (token endpoint and Push Kit); stops when dropped.
pub struct HmsStandIn {
    send_server: Server,
    token_server: Server,
    state: Arc<HmsState>,
}

struct HmsState {
    config: HmsStandInConfig,
    send_path: String,
    token_url: OnceLock<String>,
    tokens: RwLock<HashMap<String, Instant>>,
    scripts: Scripts<HmsAnswer>,
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    sends: AtomicU64,
    statuses: StatusCounts,
    recorded: Mutex<Vec<HmsRequest>>,
}

struct TokenEndpoint(Arc<HmsState>);

impl HmsStandIn {
    /// Starts both endpoints on free loopback ports.
    pub async fn start(config: HmsStandInConfig) -> io::Result<Self> {
        let state = Arc::new(HmsState {
            send_path: format!("/v1/{}/messages:send", config.app_id),
            config,
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
        let _ = state
            .token_url
            .set(format!("http://{}/oauth2/v3/token", token_server.addr()));
        let send_server = Server::start(state.clone()).await?;
        Ok(HmsStandIn {
            send_server,
            token_server,
            state,
        })
    }

    /// `http://127.0.0.1:<port>`: the `hms.baseUrl` that points an application here.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.send_server.addr())
    }

    /// The token endpoint (`hms.tokenUrl`).
    pub fn token_url(&self) -> String {
        self.state.token_url.get().cloned().unwrap_or_default()
    }

    /// The `providers.hms` write shape (management-api.md §7.1) of the test credentials, pointing here.
    pub fn application_settings(&self) -> Value {
        json_value!({
            "appId": self.state.config.app_id,
            "clientId": self.state.config.client_id,
            "clientSecret": self.state.config.client_secret,
            "baseUrl": self.base_url(),
            "tokenUrl": self.token_url(),
        })
    }

    /// Queues one-shot answers for the next sends to `device_token`.
    pub fn script(&self, device_token: &str, answers: impl IntoIterator<Item = HmsAnswer>) {
        self.state.scripts.push(device_token, answers);
    }

    /// Sets the standing answer for `device_token`.
    pub fn always(&self, device_token: &str, answer: HmsAnswer) {
        self.state.scripts.always(device_token, answer);
    }

    /// Counters so far.
    pub fn stats(&self) -> HmsStats {
        let s = &self.state;
        HmsStats {
            send_connections: self.send_server.connections(),
            token_connections: self.token_server.connections(),
            token_requests: s.token_requests.load(Ordering::Relaxed),
            tokens_issued: s.tokens_issued.load(Ordering::Relaxed),
            sends: s.sends.load(Ordering::Relaxed),
            statuses: s.statuses.snapshot(),
        }
    }

    /// Send requests recorded so far (empty unless `record` is set).
    pub fn recorded(&self) -> Vec<HmsRequest> {
        self.state.recorded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn oauth_error(status: StatusCode, error: u32, description: &str) -> Response<Full<Bytes>> {
    json(
        status,
        json_value!({"error": error, "error_description": description}).to_string(),
    )
}

impl Handler for TokenEndpoint {
    fn handle(&self, request: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
        let state = &self.0;
        state.token_requests.fetch_add(1, Ordering::Relaxed);
        if request.method != Method::POST || request.uri.path() != "/oauth2/v3/token" {
            return json(StatusCode::NOT_FOUND, r#"{"error":404}"#);
        }
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(StatusCode::BAD_REQUEST, 1102, "invalid grant_type");
        }
        if form.get("client_id") != Some(&state.config.client_id)
            || form.get("client_secret") != Some(&state.config.client_secret)
        {
            return oauth_error(StatusCode::UNAUTHORIZED, 1101, "invalid client_id or client_secret");
        }
        let token = format!("hms-standin-{}", uuid::Uuid::new_v4().simple());
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

fn hms_answer(status: StatusCode, code: &str, msg: &str) -> Response<Full<Bytes>> {
    json(
        status,
        json_value!({"code": code, "msg": msg, "requestId": uuid::Uuid::new_v4().simple().to_string()}).to_string(),
    )
}

impl Handler for HmsState {
    fn handle(&self, request: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
        self.sends.fetch_add(1, Ordering::Relaxed);
        let parsed = serde_json::from_slice::<Value>(&body).ok();
        let device_token = parsed
            .as_ref()
            .and_then(|v| v.pointer("/message/token/0"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let response = self.answer(&request, parsed.as_ref(), &device_token);
        self.statuses.add(response.status());
        if self.config.record {
            self.recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(HmsRequest {
                    device_token,
                    headers: request.headers,
                    body,
                    status: response.status().as_u16(),
                });
        }
        response
    }
}

impl HmsState {
    fn bearer(headers: &HeaderMap) -> Option<&str> {
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
    }

    fn answer(
        &self,
        request: &http::request::Parts,
        body: Option<&Value>,
        device_token: &str,
    ) -> Response<Full<Bytes>> {
        if request.method != Method::POST || request.uri.path() != self.send_path {
            return hms_answer(StatusCode::NOT_FOUND, "80300002", "unknown app or path");
        }
        let valid = Self::bearer(&request.headers).is_some_and(|t| {
            let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
            tokens.get(t).is_some_and(|expires| Instant::now() < *expires)
        });
        if !valid {
            return hms_answer(StatusCode::UNAUTHORIZED, "80200003", "OAuth token expired");
        }
        if request.version != http::Version::HTTP_2 {
            return hms_answer(StatusCode::BAD_REQUEST, "80100001", "stand-in requires HTTP/2");
        }
        match body.ok_or_else(|| "not JSON".to_string()).and_then(check_message) {
            Err(why) if why == "too big" => return hms_answer(StatusCode::PAYLOAD_TOO_LARGE, "80300008", &why),
            Err(why) => return hms_answer(StatusCode::BAD_REQUEST, "80100003", &why),
            Ok(()) => {}
        }
        match self.scripts.next(device_token).unwrap_or(HmsAnswer::Success) {
            HmsAnswer::Success => hms_answer(StatusCode::OK, "80000000", "Success"),
            HmsAnswer::IllegalToken => {
                let msg = json_value!({"success": 0, "failure": 1, "illegal_tokens": [device_token]}).to_string();
                hms_answer(StatusCode::OK, "80100000", &msg)
            }
            HmsAnswer::InvalidTokens => hms_answer(StatusCode::BAD_REQUEST, "80300007", "All the tokens are invalid"),
            HmsAnswer::InvalidParameter => hms_answer(
                StatusCode::BAD_REQUEST,
                "80100001",
                "Some request parameters are incorrect",
            ),
            HmsAnswer::TokenExpired => {
                if let Some(token) = Self::bearer(&request.headers) {
                    self.tokens.write().unwrap_or_else(|p| p.into_inner()).remove(token);
                }
                hms_answer(StatusCode::UNAUTHORIZED, "80200003", "OAuth token expired")
            }
            HmsAnswer::AuthError => hms_answer(StatusCode::UNAUTHORIZED, "80200001", "OAuth authentication error"),
            HmsAnswer::NoPermission => hms_answer(
                StatusCode::FORBIDDEN,
                "80300002",
                "The current app does not have the permission",
            ),
            HmsAnswer::TooManyRequests { retry_after } => {
                let mut response = json(StatusCode::TOO_MANY_REQUESTS, r#"{"msg":"flow control"}"#);
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
            HmsAnswer::Internal => hms_answer(StatusCode::INTERNAL_SERVER_ERROR, "81000001", "System internal error"),
        }
    }
}

/// The message shape of management-api.md §6.4 "HMS".
fn check_message(body: &Value) -> Result<(), String> {
    if body.get("validate_only") != Some(&Value::Bool(false)) {
        return Err("validate_only must be false".into());
    }
    let message = body
        .get("message")
        .and_then(Value::as_object)
        .ok_or("no message object")?;
    let tokens = message
        .get("token")
        .and_then(Value::as_array)
        .ok_or("message.token must be an array")?;
    if tokens.len() != 1 || tokens[0].as_str().is_none_or(str::is_empty) {
        return Err("message.token must hold one token".into());
    }
    let android = message
        .get("android")
        .and_then(Value::as_object)
        .ok_or("no message.android")?;
    if android.get("urgency").and_then(Value::as_str) != Some("HIGH") {
        return Err("message.android.urgency must be HIGH".into());
    }
    let ttl = android.get("ttl").and_then(Value::as_str).unwrap_or("");
    let digits = ttl.strip_suffix('s').unwrap_or("");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("message.android.ttl must be like 86400s".into());
    }
    let data = message
        .get("data")
        .and_then(Value::as_str)
        .ok_or("message.data must be a string")?;
    if data.len() > 4096 {
        return Err("too big".into());
    }
    let data: Value = serde_json::from_str(data).map_err(|_| "message.data is not JSON".to_string())?;
    let ib = data
        .get("org_ib_d")
        .and_then(Value::as_object)
        .ok_or("data.org_ib_d must be an object")?;
    if !ib.get("messageId").is_some_and(Value::is_string) || !ib.get("text").is_some_and(Value::is_string) {
        return Err("org_ib_d needs messageId and text".into());
    }
    if !ib.get("notification").is_some_and(Value::is_object) {
        return Err("org_ib_d.notification must be an object".into());
    }
    Ok(())
}
