//! The local check of a supplier's JWT (client-sdk.md §14; the format of mobile-api.md §2.2).
//! The signature is not verified: the SDK has no key.

use base64::{
    Engine as _,
    engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD},
};
use serde_json::Value;

use crate::RosterError;

fn decode_part(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).or_else(|_| URL_SAFE.decode(part)).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Checks a token's structure and expiry at `now` (Unix seconds): three base64url parts; a header
/// with `alg`, `typ`, `kid`; a payload with `typ`, `sub`, `infobip-api-key`, `iat`, `exp`, `jti`;
/// `exp` in the future.
pub(crate) fn check(token: &str, now: i64) -> Result<(), RosterError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(RosterError::JwtStructureInvalid);
    }
    let header = decode_part(parts[0]).ok_or(RosterError::JwtStructureInvalid)?;
    let payload = decode_part(parts[1]).ok_or(RosterError::JwtStructureInvalid)?;
    if ["alg", "typ", "kid"].iter().any(|k| !header.contains_key(*k)) {
        return Err(RosterError::JwtStructureInvalid);
    }
    if ["typ", "sub", "infobip-api-key", "iat", "exp", "jti"]
        .iter()
        .any(|k| !payload.contains_key(*k))
    {
        return Err(RosterError::JwtStructureInvalid);
    }
    let exp = payload["exp"].as_f64().ok_or(RosterError::JwtStructureInvalid)?;
    if !payload["iat"].is_number() {
        return Err(RosterError::JwtStructureInvalid);
    }
    if exp <= now as f64 {
        return Err(RosterError::JwtExpired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(header: Value, payload: Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    fn payload(exp: i64) -> Value {
        json!({"typ": "Bearer", "sub": "u", "infobip-api-key": "code", "iat": 1, "exp": exp, "jti": "j"})
    }

    #[test]
    fn checks() {
        let h = json!({"alg": "HS256", "typ": "JWT", "kid": "k"});
        assert!(check(&token(h.clone(), payload(2000)), 1000).is_ok());
        assert!(matches!(
            check(&token(h.clone(), payload(1000)), 1000),
            Err(RosterError::JwtExpired)
        ));
        assert!(matches!(
            check(&token(json!({"alg": "HS256", "typ": "JWT"}), payload(2000)), 1000),
            Err(RosterError::JwtStructureInvalid)
        ));
        let mut p = payload(2000);
        p.as_object_mut().unwrap().remove("jti");
        assert!(matches!(
            check(&token(h, p), 1000),
            Err(RosterError::JwtStructureInvalid)
        ));
        assert!(matches!(check("a.b", 0), Err(RosterError::JwtStructureInvalid)));
        assert!(matches!(check("not.a.jwt", 0), Err(RosterError::JwtStructureInvalid)));
    }
}
