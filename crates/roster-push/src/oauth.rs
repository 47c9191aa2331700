//! OAuth 2.0 access tokens of the FCM and HMS clients: one form POST to the token endpoint, and a
//! cache that hands the token to every send until shortly before it expires, with one token
//! request at a time (the others wait for its result, success or failure).

use std::future::Future;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde_json::Value;

use crate::outcome::{Outcome, ProviderResponse, SendReport};
use crate::transport::{retry_after, transport_failure};

/// Tokens are refreshed this long before they expire (or at half their lifetime, for short-lived
/// ones), so that a token never expires on its way to the provider.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Lifetime assumed when a token answer has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// An access token ready to send, and when to stop using it.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub(crate) bearer: HeaderValue,
    pub(crate) refresh_at: Instant,
}

/// The access token cache of one client.
pub(crate) struct TokenCache {
    token: RwLock<Option<AccessToken>>,
    /// Single flight: one token request at a time.
    refresh: tokio::sync::Mutex<()>,
    /// The last failed token request, shared with the sends that waited for it.
    failure: Mutex<Option<(Instant, SendReport)>>,
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        TokenCache {
            token: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            failure: Mutex::new(None),
        }
    }

    /// The cached token, or a new one from `fetch`. Callers that arrive while a request is running
    /// wait for it and share its token or its failure.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<HeaderValue, SendReport>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, SendReport>>,
    {
        if let Some(bearer) = self.cached(Instant::now()) {
            return Ok(bearer);
        }
        let waiting_since = Instant::now();
        let _single_flight = self.refresh.lock().await;
        if let Some(bearer) = self.cached(Instant::now()) {
            return Ok(bearer);
        }
        {
            let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, report)) = failure.as_ref()
                && *at >= waiting_since
            {
                return Err(report.clone());
            }
        }
        match fetch().await {
            Ok(token) => {
                let bearer = token.bearer.clone();
                *self.token.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
                Ok(bearer)
            }
            Err(report) => {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), report.clone()));
                Err(report)
            }
        }
    }

    fn cached(&self, now: Instant) -> Option<HeaderValue> {
        let token = self.token.read().unwrap_or_else(|p| p.into_inner());
        token.as_ref().filter(|t| now < t.refresh_at).map(|t| t.bearer.clone())
    }

    /// Drops the cached token if it is still `used` (another task may have replaced it already).
    pub(crate) fn invalidate(&self, used: &HeaderValue) {
        let mut token = self.token.write().unwrap_or_else(|p| p.into_inner());
        if token.as_ref().is_some_and(|t| t.bearer == used) {
            *token = None;
        }
    }
}

/// How long a token of `lifetime` is used before a new one is fetched.
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    lifetime - REFRESH_MARGIN.min(lifetime / 2)
}

/// A credential failure found while getting a token: `FAILED`, provider status `ERROR`.
pub(crate) fn credential_failure(status: Option<u16>, reason: &str, last_error: String) -> SendReport {
    SendReport {
        outcome: Outcome::Failed { last_error },
        response: ProviderResponse {
            http_status: status,
            reason: reason.into(),
        },
        credential_refreshed: false,
    }
}

/// One token request: a form POST to `url`. `provider` names the provider in `lastError`.
/// `429`/`5xx`/no answer are retryable; other refusals are credential failures.
pub(crate) async fn request_token(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    provider: &str,
) -> Result<AccessToken, SendReport> {
    let retry = |response: ProviderResponse, retry_after: Option<Duration>| SendReport {
        outcome: Outcome::Retry { retry_after },
        response,
        credential_refreshed: false,
    };
    let requested = Instant::now();
    let answer = client
        .post(url)
        .form(form)
        .send()
        .await
        .map_err(|e| retry(transport_failure(&e), None))?;
    let status = answer.status().as_u16();
    let wait = retry_after(answer.headers());
    let bytes = answer.bytes().await.map_err(|e| retry(transport_failure(&e), None))?;
    if status == 429 || status >= 500 {
        let response = ProviderResponse {
            http_status: Some(status),
            reason: "TOKEN_ENDPOINT_UNAVAILABLE".into(),
        };
        return Err(retry(response, wait));
    }
    let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        // Google answers `"error": "invalid_grant"`, Huawei a number (`"error": 1101`).
        let reason = match body.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("HTTP_{status}"),
        };
        let description = body.get("error_description").and_then(Value::as_str).unwrap_or("");
        let last_error = format!("{provider} token endpoint refused the credentials: {status} {reason} {description}");
        return Err(credential_failure(
            Some(status),
            &reason,
            last_error.trim_end().to_owned(),
        ));
    }
    let unusable = || {
        credential_failure(
            Some(status),
            "TOKEN_ENDPOINT_ERROR",
            format!("{provider} token endpoint answered without a usable access_token"),
        )
    };
    let token = body.get("access_token").and_then(Value::as_str).ok_or_else(unusable)?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unusable())?;
    let lifetime = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIFETIME);
    Ok(AccessToken {
        bearer,
        refresh_at: requested + refresh_after(lifetime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_shortly_before_they_expire() {
        assert_eq!(refresh_after(Duration::from_secs(3599)), Duration::from_secs(3539));
        assert_eq!(refresh_after(Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(refresh_after(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }
}
