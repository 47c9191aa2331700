//! API-key authentication and scopes (management-api.md §1).

use axum::extract::FromRequestParts;
use http::request::Parts;
use roster_core::admin::api_key_hash;
use roster_model::{ApiKey, ErrorCode, now_millis};
use uuid::Uuid;

use super::error::MgmtError;
use crate::AppState;

/// A scope of management-api.md §1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    PeopleRead,
    PeopleWrite,
    PushSend,
    Admin,
}

impl Scope {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PeopleRead => "people:read",
            Scope::PeopleWrite => "people:write",
            Scope::PushSend => "push:send",
            Scope::Admin => "admin",
        }
    }
}

/// The authenticated caller of a management request: the key and its account.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
}

impl Caller {
    /// The account every request of this key acts in.
    pub fn account_id(&self) -> Uuid {
        self.key.account_id
    }

    /// Whether the key grants `scope` (§1.2: `admin` grants everything, `people:write` also
    /// grants `people:read`).
    pub fn has(&self, scope: Scope) -> bool {
        self.key.scopes.iter().any(|s| {
            s == scope.as_str() || s == "admin" || (scope == Scope::PeopleRead && s == Scope::PeopleWrite.as_str())
        })
    }

    /// `403 FORBIDDEN` naming the scope unless the key grants it.
    pub fn require(&self, scope: Scope) -> Result<(), MgmtError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(MgmtError::new(
                ErrorCode::Forbidden,
                format!("This API key lacks the scope {}", scope.as_str()),
            ))
        }
    }
}

/// The key in `Authorization: App <key>` or `Bearer <key>` (scheme case-insensitive).
pub fn presented_key(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("app") || scheme.eq_ignore_ascii_case("bearer"))
        .then_some(key)
        .filter(|k| !k.is_empty())
}

/// A caller the server already verified (the portal's session names its API key), carried as a
/// request extension on the portal's in-process management requests. Extensions are set only by
/// server code, never from a client's bytes, so this cannot be forged from outside.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedCaller(pub Caller);

/// `429 TOO_MANY_REQUESTS` with `Retry-After` when the key is over its limit (§3.1).
fn rate_limit(state: &AppState, key: &ApiKey) -> Result<(), MgmtError> {
    state.api_key_rate.check(&key.id.to_string()).map_err(|secs| {
        let mut e = MgmtError::new(ErrorCode::TooManyRequests, "Too many requests for this API key");
        e.retry_after = Some(secs);
        e
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = MgmtError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, MgmtError> {
        if let Some(VerifiedCaller(caller)) = parts.extensions.get::<VerifiedCaller>() {
            // The portal's calls count against the key's limit like any other (§3.1).
            rate_limit(state, &caller.key)?;
            return Ok(caller.clone());
        }
        let unauthorized = || MgmtError::new(ErrorCode::Unauthorized, "A valid API key is required");
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let secret = presented_key(header).ok_or_else(unauthorized)?;
        let key = state
            .core
            .api_key_by_hash(&api_key_hash(secret))
            .await?
            .ok_or_else(unauthorized)?;
        if key.expires_at.is_some_and(|at| at <= now_millis()) {
            return Err(unauthorized());
        }
        // §3.1: per key, before anything of the request is read or done (not even `lastUsedAt`),
        // so that a refused request changes nothing.
        rate_limit(state, &key)?;
        // `lastUsedAt` is informational: a store that cannot record it (busy, read-only replica)
        // must not refuse a request the key is entitled to, so a failure is logged, not answered.
        if let Err(e) = state.core.touch_api_key(&key).await {
            tracing::warn!(error = %e, key_id = %key.id, "could not record the API key's lastUsedAt");
        }
        Ok(Caller { key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(presented_key("App rk_x"), Some("rk_x"));
        assert_eq!(presented_key("bearer  rk_x "), Some("rk_x"));
        assert_eq!(presented_key("BEARER rk_x"), Some("rk_x"));
        assert_eq!(presented_key("Basic rk_x"), None);
        assert_eq!(presented_key("App "), None);
        assert_eq!(presented_key("rk_x"), None);
    }
}
