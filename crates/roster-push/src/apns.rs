//! APNs provider client: token-based authentication (ES256 provider token) over HTTP/2
//! (management-api.md §6.4 "APNs", §6.3).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use jsonwebtoken::{Algorithm, Header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use uuid::Uuid;

use crate::credentials::ApnsCredentials;
use crate::message::PushMessage;
use crate::outcome::{Outcome, ProviderResponse, SendReport, classify_apns};
use crate::payload::{apns_expiration, apns_payload, apns_push_type};
use crate::transport::{Http2Pool, Transport, USER_AGENT_VALUE, origin, unix_now};

/// Provider tokens are regenerated after this age (§6.4; APNs refuses them after 60 minutes and
/// throttles regeneration more often than every 20).
pub const PROVIDER_TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
const APNS_ID: HeaderName = HeaderName::from_static("apns-id");
const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");

/// Characters left as they are in the device-token path segment (RFC 3986 unreserved); APNs tokens
/// are hex, anything else is escaped so that a token can never change the path.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Sends pushes for one application's APNs credentials. Cheap to clone; clones share the provider
/// token and the connection pool.
#[derive(Clone)]
pub struct ApnsClient {
    inner: Arc<ApnsInner>,
}

struct ApnsInner {
    credentials: ApnsCredentials,
    pool: Http2Pool,
    /// Scheme and authority of the base URL, parsed once; each request only adds its path.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// `{base path}/3/device/`
    device_path: String,
    topic: HeaderValue,
    token: Mutex<Option<ProviderToken>>,
}

#[derive(Clone)]
struct ProviderToken {
    bearer: HeaderValue,
    issued: Instant,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

impl ApnsClient {
    /// A client for `credentials`, sharing the HTTP/2 connections of `transport` with every other
    /// client of the same base URL and team.
    pub fn new(credentials: ApnsCredentials, transport: &Transport) -> Self {
        // Partitioned by team: a connection carries the provider tokens of one team only.
        let pool = transport.http2_pool(&format!(
            "apns {} {}",
            origin(credentials.base_url()),
            credentials.team_id()
        ));
        let topic = HeaderValue::from_str(credentials.topic()).expect("topic checked by ApnsCredentials::parse");
        let base: Uri = credentials
            .base_url()
            .parse()
            .expect("base URL checked by ApnsCredentials::parse");
        let parts = base.into_parts();
        let path = parts
            .path_and_query
            .as_ref()
            .map(|p| p.path().trim_end_matches('/'))
            .unwrap_or("");
        ApnsClient {
            inner: Arc::new(ApnsInner {
                device_path: format!("{path}/3/device/"),
                scheme: parts.scheme.expect("absolute URL checked by ApnsCredentials::parse"),
                authority: parts.authority.expect("absolute URL checked by ApnsCredentials::parse"),
                credentials,
                pool,
                topic,
                token: Mutex::new(None),
            }),
        }
    }

    /// The credentials this client sends with.
    pub fn credentials(&self) -> &ApnsCredentials {
        &self.inner.credentials
    }

    /// Sends `message` to one device: one delivery attempt. An `ExpiredProviderToken` answer
    /// regenerates the provider token and retries at once, once; every other answer is returned
    /// classified (§6.3).
    pub async fn send(&self, message: &PushMessage, delivery_id: Uuid, device_token: &str) -> SendReport {
        let inner = &self.inner;
        let uri = self.device_uri(device_token);
        let body = Bytes::from(apns_payload(message, delivery_id));
        let (push_type, priority) = apns_push_type(message);
        let expiration = HeaderValue::from(apns_expiration(message).max(0));
        let apns_id = HeaderValue::from_str(delivery_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
            .expect("a UUID is a valid header value");
        let mut refreshed = false;
        loop {
            let bearer = match self.provider_token(Instant::now()) {
                Ok(bearer) => bearer,
                Err(report) => return report,
            };
            let mut headers = HeaderMap::with_capacity(8);
            headers.insert(AUTHORIZATION, bearer.clone());
            headers.insert(APNS_TOPIC, inner.topic.clone());
            headers.insert(APNS_ID, apns_id.clone());
            headers.insert(APNS_EXPIRATION, expiration.clone());
            headers.insert(APNS_PUSH_TYPE, HeaderValue::from_static(push_type));
            headers.insert(APNS_PRIORITY, HeaderValue::from_static(priority));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
            let (outcome, response) = match inner.pool.post(uri.clone(), headers, body.clone()).await {
                Err(response) => (Outcome::Retry { retry_after: None }, response),
                Ok(answer) => {
                    let reason = apns_reason(answer.status, &answer.body);
                    let outcome = classify_apns(answer.status, &reason, answer.retry_after);
                    (
                        outcome,
                        ProviderResponse {
                            http_status: Some(answer.status),
                            reason,
                        },
                    )
                }
            };
            let outcome = match outcome {
                Outcome::RefreshAndRetry if !refreshed => {
                    self.invalidate(&bearer);
                    refreshed = true;
                    continue;
                }
                Outcome::RefreshAndRetry => Outcome::Failed {
                    last_error: "APNs called a freshly generated provider token expired: check the server clock".into(),
                },
                other => other,
            };
            return SendReport {
                outcome,
                response,
                credential_refreshed: refreshed,
            };
        }
    }

    /// `{base}/3/device/{token}`, the token percent-encoded.
    fn device_uri(&self, device_token: &str) -> Uri {
        let inner = &self.inner;
        let path = format!(
            "{}{}",
            inner.device_path,
            utf8_percent_encode(device_token, PATH_SEGMENT)
        );
        Uri::builder()
            .scheme(inner.scheme.clone())
            .authority(inner.authority.clone())
            .path_and_query(path)
            .build()
            .expect("a percent-encoded path is a valid URI path")
    }

    /// The cached provider token, regenerated once it is [`PROVIDER_TOKEN_LIFETIME`] old.
    fn provider_token(&self, now: Instant) -> Result<HeaderValue, SendReport> {
        let mut cached = self.inner.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = cached.as_ref()
            && now.saturating_duration_since(token.issued) < PROVIDER_TOKEN_LIFETIME
        {
            return Ok(token.bearer.clone());
        }
        let token = self.sign(now)?;
        let bearer = token.bearer.clone();
        *cached = Some(token);
        Ok(bearer)
    }

    fn sign(&self, now: Instant) -> Result<ProviderToken, SendReport> {
        let creds = &self.inner.credentials;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        header.kid = Some(creds.key_id().to_owned());
        let claims = Claims {
            iss: creds.team_id(),
            iat: unix_now().as_secs(),
        };
        let failed = |why: String| SendReport {
            outcome: Outcome::Failed { last_error: why },
            response: ProviderResponse {
                http_status: None,
                reason: "PROVIDER_TOKEN_ERROR".into(),
            },
            credential_refreshed: false,
        };
        let jwt = jsonwebtoken::encode(&header, &claims, creds.signing_key())
            .map_err(|e| failed(format!("cannot sign the APNs provider token: {e}")))?;
        // Not marked sensitive: HPACK may then index it, so the ~200-byte token crosses each
        // connection once instead of with every request. It is never logged.
        let bearer = HeaderValue::from_str(&format!("bearer {jwt}"))
            .map_err(|_| failed("APNs provider token is not a valid header".into()))?;
        Ok(ProviderToken { bearer, issued: now })
    }

    /// Drops the cached token if it is still `used` (another task may have replaced it already).
    fn invalidate(&self, used: &HeaderValue) {
        let mut cached = self.inner.token.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|t| t.bearer == used) {
            *cached = None;
        }
    }
}

/// The `reason` of an APNs answer (`OK` for success, `HTTP_<status>` when the body has none).
fn apns_reason(status: u16, body: &[u8]) -> String {
    if (200..300).contains(&status) {
        return "OK".into();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP_{status}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_push_standins::fixtures;
    use serde_json::json;

    fn client() -> ApnsClient {
        let creds = ApnsCredentials::parse(
            &json!({"teamId": fixtures::APNS_TEAM_ID, "keyId": fixtures::APNS_KEY_ID,
            "privateKey": fixtures::APNS_PRIVATE_KEY_PEM, "topic": fixtures::APNS_TOPIC,
            "environment": "production", "baseUrl": "http://127.0.0.1:9"}),
        )
        .unwrap();
        ApnsClient::new(creds, &Transport::new(Default::default()).unwrap())
    }

    #[test]
    fn provider_token_is_reused_for_50_minutes_then_regenerated() {
        let client = client();
        let start = Instant::now();
        let first = client.provider_token(start).unwrap();
        assert_eq!(client.provider_token(start + Duration::from_secs(60)).unwrap(), first);
        assert_eq!(
            client
                .provider_token(start + PROVIDER_TOKEN_LIFETIME - Duration::from_secs(1))
                .unwrap(),
            first
        );
        let second = client.provider_token(start + PROVIDER_TOKEN_LIFETIME).unwrap();
        assert_ne!(second, first);
        // Invalidating a token another task already replaced keeps the newer one.
        client.invalidate(&first);
        assert_eq!(client.provider_token(start + PROVIDER_TOKEN_LIFETIME).unwrap(), second);
        client.invalidate(&second);
        assert_ne!(client.provider_token(start + PROVIDER_TOKEN_LIFETIME).unwrap(), second);
    }

    #[test]
    fn provider_token_has_the_apns_claims() {
        let bearer = client().provider_token(Instant::now()).unwrap();
        let jwt = bearer.to_str().unwrap().strip_prefix("bearer ").unwrap();
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(fixtures::APNS_KEY_ID));
        let key = jsonwebtoken::DecodingKey::from_ec_pem(fixtures::APNS_PUBLIC_KEY_PEM.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["iss"], fixtures::APNS_TEAM_ID);
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(unix_now().as_secs()) <= 2);
        assert_eq!(claims.as_object().unwrap().len(), 2);
    }

    #[test]
    fn device_urls_keep_the_base_path_and_escape_the_token() {
        let url = client().device_uri("ab12ef");
        assert_eq!(url.to_string(), "http://127.0.0.1:9/3/device/ab12ef");
        assert_eq!(
            client().device_uri("../x?y#z").to_string(),
            "http://127.0.0.1:9/3/device/..%2Fx%3Fy%23z"
        );
        let creds = ApnsCredentials::parse(
            &json!({"teamId": fixtures::APNS_TEAM_ID, "keyId": fixtures::APNS_KEY_ID,
            "privateKey": fixtures::APNS_PRIVATE_KEY_PEM, "topic": fixtures::APNS_TOPIC,
            "environment": "production", "baseUrl": "https://gateway.example.com/apns/"}),
        )
        .unwrap();
        let client = ApnsClient::new(creds, &Transport::new(Default::default()).unwrap());
        assert_eq!(
            client.device_uri("ab").to_string(),
            "https://gateway.example.com/apns/3/device/ab"
        );
        let creds = ApnsCredentials::parse(
            &json!({"teamId": fixtures::APNS_TEAM_ID, "keyId": fixtures::APNS_KEY_ID,
            "privateKey": fixtures::APNS_PRIVATE_KEY_PEM, "topic": fixtures::APNS_TOPIC,
            "environment": "production", "baseUrl": "https://gätewäy.example.com"}),
        )
        .unwrap();
        let client = ApnsClient::new(creds, &Transport::new(Default::default()).unwrap());
        assert_eq!(
            client.device_uri("ab").to_string(),
            "https://xn--gtewy-grad.example.com/3/device/ab"
        );
    }

    #[test]
    fn device_tokens_cannot_escape_the_path() {
        assert_eq!(utf8_percent_encode("ab12EF", PATH_SEGMENT).to_string(), "ab12EF");
        assert_eq!(
            utf8_percent_encode("../x?y#z", PATH_SEGMENT).to_string(),
            "..%2Fx%3Fy%23z"
        );
    }

    #[test]
    fn reasons() {
        assert_eq!(apns_reason(200, b""), "OK");
        assert_eq!(
            apns_reason(410, br#"{"reason":"Unregistered","timestamp":1}"#),
            "Unregistered"
        );
        assert_eq!(apns_reason(502, b"<html>"), "HTTP_502");
    }
}
