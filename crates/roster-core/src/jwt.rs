//! Verification of SDK JWTs, `Authorization: Bearer <jwt>` (mobile-api.md §2.2).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use roster_model::{ApiError, Application, ErrorCode};
use serde_json::Value;

use crate::{Core, CoreError, CoreResult};

/// Leeway for `iat` in the future and for `exp`, in seconds.
const LEEWAY_SECONDS: i64 = 60;

fn invalid(text: impl Into<String>) -> CoreError {
    CoreError::Api(ApiError::new(ErrorCode::JwtInvalid, text))
}

fn decode_part(part: &str, what: &str) -> CoreResult<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| invalid(format!("JWT {what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(invalid(format!("JWT {what} is not a JSON object"))),
    }
}

/// A verified token: its application and subject.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub application: Application,
    pub subject: String,
}

impl Core {
    /// Verifies a Bearer token at `now_seconds` (mobile-api.md §2.2): structure, `alg` HS256,
    /// `typ` and `kid` present, the application of `infobip-api-key`, the key by `kid`, the
    /// HMAC-SHA256 signature, then the claims. Every failure is `401 JWT_INVALID` with a text
    /// naming the check that failed.
    pub async fn verify_jwt(&self, token: &str, now_seconds: i64) -> CoreResult<VerifiedJwt> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(invalid("JWT must have three non-empty parts"));
        }
        let header = decode_part(parts[0], "header")?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(invalid("JWT alg must be HS256"));
        }
        if !header.contains_key("typ") {
            return Err(invalid("JWT header typ is missing"));
        }
        let Some(kid) = header.get("kid").and_then(Value::as_str) else {
            return Err(invalid("JWT header kid is missing"));
        };
        let payload = decode_part(parts[1], "payload")?;
        let Some(app_code) = payload.get("infobip-api-key").and_then(Value::as_str) else {
            return Err(invalid("JWT infobip-api-key is missing"));
        };
        let application = match self.application_by_code(app_code).await {
            Ok(app) => app,
            Err(CoreError::Api(_)) => return Err(invalid("JWT names an unknown or disabled application")),
            Err(e) => return Err(e),
        };
        let key = {
            let mut tx = self.store().begin_read().await?;
            let key = tx.jwt_key(application.account_id, application.id, kid).await;
            tx.rollback().await?;
            key?
        };
        let Some(key) = key else {
            return Err(invalid("JWT kid is not a key of this application"));
        };
        // Signature only: the claims are checked below, with the spec's exact rules.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let decoding_key =
            DecodingKey::from_secret(&key.secret).map_err(|e| invalid(format!("JWT key is unusable ({e})")))?;
        jsonwebtoken::decode::<Value>(token, &decoding_key, &validation)
            .map_err(|e| invalid(format!("JWT signature is invalid ({e})")))?;

        if payload.get("typ").and_then(Value::as_str) != Some("Bearer") {
            return Err(invalid("JWT typ claim must be Bearer"));
        }
        let Some(subject) = payload.get("sub").and_then(Value::as_str) else {
            return Err(invalid("JWT sub is missing"));
        };
        let Some(iat) = payload.get("iat").and_then(Value::as_f64) else {
            return Err(invalid("JWT iat is missing"));
        };
        if iat > (now_seconds + LEEWAY_SECONDS) as f64 {
            return Err(invalid("JWT iat is in the future"));
        }
        let Some(exp) = payload.get("exp").and_then(Value::as_f64) else {
            return Err(invalid("JWT exp is missing"));
        };
        if now_seconds as f64 >= exp + LEEWAY_SECONDS as f64 {
            return Err(invalid("JWT has expired"));
        }
        match payload.get("jti").and_then(Value::as_str) {
            Some(j) if !j.is_empty() => {}
            _ => return Err(invalid("JWT jti is missing")),
        }
        Ok(VerifiedJwt {
            application,
            subject: subject.to_string(),
        })
    }
}
