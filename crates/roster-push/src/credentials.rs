//! Provider credentials of an application, parsed and syntax-checked from the write shapes of
//! management-api.md §7.1. A parsed value is ready to sign: the private key was loaded and used
//! once, so a key that parses but cannot sign (wrong curve, truncated) is refused on save, not on
//! the first delivery.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

/// APNs production endpoint (management-api.md §6.4).
pub const APNS_PRODUCTION_URL: &str = "https://api.push.apple.com";
/// APNs sandbox endpoint (management-api.md §6.4).
pub const APNS_SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// FCM endpoint used when the application sets no `fcm.baseUrl`.
pub const FCM_DEFAULT_URL: &str = "https://fcm.googleapis.com";
/// Google's OAuth token endpoint, used when neither `fcm.tokenUrl` nor the service account's
/// `token_uri` is set.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// One invalid member of a provider object: `field` is its path relative to that object
/// (`privateKey`, `serviceAccount.client_email`), ready to be prefixed with `providers.apns.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the member inside the provider object.
    pub field: String,
    /// What is wrong, in English, without any secret.
    pub message: String,
}

/// Every problem found in one provider object (all of them, not just the first: management-api.md
/// §2 lists every invalid field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid provider credentials: {}", summary(.0))]
pub struct CredentialError(pub Vec<FieldError>);

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// APNs environment of an application's key and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApnsEnvironment {
    /// `https://api.push.apple.com`
    Production,
    /// `https://api.sandbox.push.apple.com`
    Sandbox,
}

impl ApnsEnvironment {
    /// The spelling of §7.1.
    pub fn as_str(self) -> &'static str {
        match self {
            ApnsEnvironment::Production => "production",
            ApnsEnvironment::Sandbox => "sandbox",
        }
    }
}

/// Token-based APNs credentials (an ES256 `.p8` key) of one application.
#[derive(Clone)]
pub struct ApnsCredentials {
    team_id: String,
    key_id: String,
    topic: String,
    environment: ApnsEnvironment,
    base_url: String,
    base_url_overridden: bool,
    key: EncodingKey,
}

impl fmt::Debug for ApnsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsCredentials")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("topic", &self.topic)
            .field("environment", &self.environment)
            .field("base_url", &self.base_url)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl ApnsCredentials {
    /// Parses the `providers.apns` write shape: `teamId`, `keyId`, `privateKey` (PEM, PKCS#8,
    /// P-256), `topic`, `environment` (`production` | `sandbox`), optional `baseUrl`.
    pub fn parse(value: &Value) -> Result<Self, CredentialError> {
        let mut errors = Vec::new();
        let Some(obj) = value.as_object() else {
            return Err(CredentialError(vec![field_error("", "must be an object")]));
        };
        let team_id = apple_id(obj, "teamId", &mut errors);
        let key_id = apple_id(obj, "keyId", &mut errors);
        let topic = required_string(obj, "topic", &mut errors);
        if let Some(t) = &topic {
            check_header_safe(t, "topic", 255, &mut errors);
        }
        let environment = match obj.get("environment") {
            Some(Value::String(s)) if s == "production" => Some(ApnsEnvironment::Production),
            Some(Value::String(s)) if s == "sandbox" => Some(ApnsEnvironment::Sandbox),
            None | Some(Value::Null) => {
                errors.push(field_error("environment", "is required (production or sandbox)"));
                None
            }
            Some(_) => {
                errors.push(field_error("environment", "must be production or sandbox"));
                None
            }
        };
        let base_url = optional_url(obj, "baseUrl", &mut errors);
        let key = required_string(obj, "privateKey", &mut errors).and_then(|pem| match load_es256_key(&pem) {
            Ok(key) => Some(key),
            Err(message) => {
                errors.push(field_error("privateKey", &message));
                None
            }
        });
        match (team_id, key_id, topic, environment, key) {
            (Some(team_id), Some(key_id), Some(topic), Some(environment), Some(key)) if errors.is_empty() => {
                let default = match environment {
                    ApnsEnvironment::Production => APNS_PRODUCTION_URL,
                    ApnsEnvironment::Sandbox => APNS_SANDBOX_URL,
                };
                Ok(ApnsCredentials {
                    team_id,
                    key_id,
                    topic,
                    environment,
                    base_url_overridden: base_url.is_some(),
                    base_url: base_url.unwrap_or_else(|| default.to_owned()),
                    key,
                })
            }
            _ => Err(CredentialError(errors)),
        }
    }

    /// Apple team id (the provider token's `iss`).
    pub fn team_id(&self) -> &str {
        &self.team_id
    }
    /// Key id (the provider token's `kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// Bundle id sent as `apns-topic`.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Environment the key and tokens belong to.
    pub fn environment(&self) -> ApnsEnvironment {
        self.environment
    }
    /// The base URL in effect: the `baseUrl` override, else the environment's endpoint; without a
    /// trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// Whether `baseUrl` was set explicitly.
    pub fn base_url_overridden(&self) -> bool {
        self.base_url_overridden
    }
    pub(crate) fn signing_key(&self) -> &EncodingKey {
        &self.key
    }
}

/// FCM HTTP v1 credentials (a Google service account) of one application.
#[derive(Clone)]
pub struct FcmCredentials {
    project_id: String,
    client_email: String,
    private_key_id: Option<String>,
    base_url: String,
    token_url: String,
    key: EncodingKey,
}

impl fmt::Debug for FcmCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmCredentials")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl FcmCredentials {
    /// Parses the `providers.fcm` write shape: `serviceAccount` (the service-account JSON object,
    /// or the same JSON as a string), optional `baseUrl` and `tokenUrl`.
    pub fn parse(value: &Value) -> Result<Self, CredentialError> {
        let mut errors = Vec::new();
        let Some(obj) = value.as_object() else {
            return Err(CredentialError(vec![field_error("", "must be an object")]));
        };
        let base_url = optional_url(obj, "baseUrl", &mut errors);
        let token_url = optional_url(obj, "tokenUrl", &mut errors);
        // A pasted key file is a string; accepting it spares users a JSON-in-JSON edit.
        let parsed_string;
        let account = match obj.get("serviceAccount") {
            Some(Value::Object(map)) => Some(map),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => {
                    parsed_string = map;
                    Some(&parsed_string)
                }
                _ => {
                    errors.push(field_error("serviceAccount", "must be the service account JSON object"));
                    None
                }
            },
            None | Some(Value::Null) => {
                errors.push(field_error("serviceAccount", "is required"));
                None
            }
            Some(_) => {
                errors.push(field_error("serviceAccount", "must be the service account JSON object"));
                None
            }
        };
        let mut project_id = None;
        let mut client_email = None;
        let mut private_key_id = None;
        let mut token_uri = None;
        let mut key = None;
        if let Some(account) = account {
            let mut inner = Vec::new();
            if let Some(kind) = account.get("type")
                && kind.as_str() != Some("service_account")
            {
                inner.push(field_error("type", "must be \"service_account\""));
            }
            project_id = required_string(account, "project_id", &mut inner);
            if let Some(p) = &project_id
                && !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')
            {
                inner.push(field_error("project_id", "is not a valid project id"));
            }
            client_email = required_string(account, "client_email", &mut inner);
            if let Some(e) = &client_email
                && !e.contains('@')
            {
                inner.push(field_error("client_email", "is not an email address"));
            }
            private_key_id = match account.get("private_key_id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                None | Some(Value::Null) => None,
                Some(_) => {
                    inner.push(field_error("private_key_id", "must be a non-empty string"));
                    None
                }
            };
            token_uri = optional_url(account, "token_uri", &mut inner);
            key = required_string(account, "private_key", &mut inner).and_then(|pem| match load_rs256_key(&pem) {
                Ok(key) => Some(key),
                Err(message) => {
                    inner.push(field_error("private_key", &message));
                    None
                }
            });
            errors.extend(inner.into_iter().map(|e| FieldError {
                field: format!("serviceAccount.{}", e.field),
                message: e.message,
            }));
        }
        match (project_id, client_email, key) {
            (Some(project_id), Some(client_email), Some(key)) if errors.is_empty() => Ok(FcmCredentials {
                project_id,
                client_email,
                private_key_id,
                base_url: base_url.unwrap_or_else(|| FCM_DEFAULT_URL.to_owned()),
                // management-api.md §6.4: tokenUrl wins, else token_uri, else Google's.
                token_url: token_url.or(token_uri).unwrap_or_else(|| GOOGLE_TOKEN_URL.to_owned()),
                key,
            }),
            _ => Err(CredentialError(errors)),
        }
    }

    /// Firebase project id (from the service account).
    pub fn project_id(&self) -> &str {
        &self.project_id
    }
    /// Service account email (the assertion's `iss`).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }
    /// Base URL in effect, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// Token URL in effect (§6.4 precedence), also the assertion's `aud`.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }
    pub(crate) fn private_key_id(&self) -> Option<&str> {
        self.private_key_id.as_deref()
    }
    pub(crate) fn signing_key(&self) -> &EncodingKey {
        &self.key
    }
}

/// HMS (Huawei Push Kit) endpoint used when the application sets no `hms.baseUrl`.
pub const HMS_DEFAULT_URL: &str = "https://push-api.cloud.huawei.com";
/// Huawei's OAuth token endpoint, used when the application sets no `hms.tokenUrl`.
pub const HMS_TOKEN_URL: &str = "https://oauth-login.cloud.huawei.com/oauth2/v3/token";

/// HMS Push Kit credentials (OAuth client credentials) of one application.
#[derive(Clone)]
pub struct HmsCredentials {
    app_id: String,
    client_id: String,
    client_secret: String,
    base_url: String,
    token_url: String,
}

impl fmt::Debug for HmsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmsCredentials")
            .field("app_id", &self.app_id)
            .field("client_id", &self.client_id)
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl HmsCredentials {
    /// Parses the `providers.hms` write shape: `appId`, `clientId`, `clientSecret`, optional
    /// `baseUrl` and `tokenUrl`.
    pub fn parse(value: &Value) -> Result<Self, CredentialError> {
        let mut errors = Vec::new();
        let Some(obj) = value.as_object() else {
            return Err(CredentialError(vec![field_error("", "must be an object")]));
        };
        let app_id = required_string(obj, "appId", &mut errors);
        // The app id is a path segment of the send URL.
        if let Some(id) = &app_id
            && !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            errors.push(field_error("appId", "must be letters, digits, '-', '_' or '.'"));
        }
        let client_id = required_string(obj, "clientId", &mut errors);
        let client_secret = required_string(obj, "clientSecret", &mut errors);
        let base_url = optional_url(obj, "baseUrl", &mut errors);
        let token_url = optional_url(obj, "tokenUrl", &mut errors);
        match (app_id, client_id, client_secret) {
            (Some(app_id), Some(client_id), Some(client_secret)) if errors.is_empty() => Ok(HmsCredentials {
                app_id,
                client_id,
                client_secret,
                base_url: base_url.unwrap_or_else(|| HMS_DEFAULT_URL.to_owned()),
                token_url: token_url.unwrap_or_else(|| HMS_TOKEN_URL.to_owned()),
            }),
            _ => Err(CredentialError(errors)),
        }
    }

    /// Huawei app id (path of the send URL).
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
    /// OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// Base URL in effect, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// Token URL in effect.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }
    pub(crate) fn client_secret(&self) -> &str {
        &self.client_secret
    }
}

fn field_error(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn required_string(obj: &Map<String, Value>, name: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            errors.push(field_error(name, "must not be empty"));
            None
        }
        None | Some(Value::Null) => {
            errors.push(field_error(name, "is required"));
            None
        }
        Some(_) => {
            errors.push(field_error(name, "must be a string"));
            None
        }
    }
}

/// Apple team and key ids are 10 characters of `A-Z0-9`; a typo here would fail every delivery.
fn apple_id(obj: &Map<String, Value>, name: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let value = required_string(obj, name, errors)?;
    if value.len() == 10 && value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        Some(value)
    } else {
        errors.push(field_error(name, "must be 10 characters of A-Z and 0-9"));
        None
    }
}

fn check_header_safe(value: &str, name: &str, max: usize, errors: &mut Vec<FieldError>) {
    if value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        errors.push(field_error(
            name,
            &format!("must be 1-{max} printable ASCII characters without spaces"),
        ));
    }
}

/// An optional absolute `http`/`https` URL without query or fragment; returned without a trailing
/// slash so that paths can be appended.
fn optional_url(obj: &Map<String, Value>, name: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match obj.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match reqwest::Url::parse(s) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && url.query().is_none()
                    && url.fragment().is_none()
                    && url.username().is_empty()
                    && url.password().is_none() =>
            {
                // The normalised form: ASCII only (punycode hosts), so it is also a valid `http::Uri`.
                Some(url.as_str().trim_end_matches('/').to_owned())
            }
            _ => {
                errors.push(field_error(name, "must be an absolute http or https URL without query"));
                None
            }
        },
        Some(_) => {
            errors.push(field_error(name, "must be a string"));
            None
        }
    }
}

fn load_es256_key(pem: &str) -> Result<EncodingKey, String> {
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        return Err("must be a PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----)".into());
    }
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| "is not a PEM PKCS#8 EC private key".to_string())?;
    // Sign once: a P-384 or otherwise unusable key parses as PEM but cannot make ES256 tokens.
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &serde_json::json!({"iat": 0}), &key)
        .map_err(|_| "is not a P-256 key usable for ES256".to_string())?;
    Ok(key)
}

fn load_rs256_key(pem: &str) -> Result<EncodingKey, String> {
    if !pem.contains("-----BEGIN") {
        return Err("must be a PEM RSA private key".into());
    }
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| "is not a PEM RSA private key".to_string())?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &serde_json::json!({"iat": 0}), &key)
        .map_err(|_| "is not an RSA key usable for RS256".to_string())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_push_standins::fixtures;
    use serde_json::json;

    fn apns_value() -> Value {
        json!({"teamId": fixtures::APNS_TEAM_ID, "keyId": fixtures::APNS_KEY_ID,
               "privateKey": fixtures::APNS_PRIVATE_KEY_PEM, "topic": fixtures::APNS_TOPIC,
               "environment": "sandbox"})
    }

    fn fields(err: CredentialError) -> Vec<String> {
        err.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn apns_parses_and_picks_the_environment_url() {
        let creds = ApnsCredentials::parse(&apns_value()).unwrap();
        assert_eq!(creds.base_url(), APNS_SANDBOX_URL);
        assert!(!creds.base_url_overridden());
        let mut v = apns_value();
        v["environment"] = json!("production");
        v["baseUrl"] = json!("http://127.0.0.1:9/");
        let creds = ApnsCredentials::parse(&v).unwrap();
        assert_eq!(creds.base_url(), "http://127.0.0.1:9");
        assert_eq!(creds.environment(), ApnsEnvironment::Production);
        v["baseUrl"] = json!("https://exämple.com/apns/");
        assert_eq!(
            ApnsCredentials::parse(&v).unwrap().base_url(),
            "https://xn--exmple-cua.com/apns"
        );
    }

    #[test]
    fn apns_debug_redacts_the_key() {
        let creds = ApnsCredentials::parse(&apns_value()).unwrap();
        let text = format!("{creds:?}");
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("BEGIN"));
        let pem_body = fixtures::APNS_PRIVATE_KEY_PEM.lines().nth(1).unwrap();
        assert!(!text.contains(pem_body));
    }

    #[test]
    fn apns_lists_every_bad_field() {
        let v = json!({"teamId": "abc", "keyId": 5, "privateKey": "not a key", "topic": "has space",
                       "environment": "prod", "baseUrl": "ftp://x"});
        let err = ApnsCredentials::parse(&v).unwrap_err();
        assert_eq!(
            fields(err),
            ["teamId", "keyId", "topic", "environment", "baseUrl", "privateKey"]
        );
        let err = ApnsCredentials::parse(&json!({})).unwrap_err();
        assert_eq!(fields(err), ["teamId", "keyId", "topic", "environment", "privateKey"]);
        assert!(ApnsCredentials::parse(&json!([])).is_err());
    }

    #[test]
    fn apns_refuses_keys_that_cannot_sign_es256() {
        for (pem, why) in [
            (fixtures::P384_PRIVATE_KEY_PEM, "P-256"),
            (fixtures::FCM_PRIVATE_KEY_PEM, "EC"),
            (fixtures::APNS_PUBLIC_KEY_PEM, "PKCS#8"),
        ] {
            let mut v = apns_value();
            v["privateKey"] = json!(pem);
            let err = ApnsCredentials::parse(&v).unwrap_err();
            assert_eq!(err.0.len(), 1);
            assert_eq!(err.0[0].field, "privateKey");
            assert!(err.0[0].message.contains(why), "{}", err.0[0].message);
        }
        // Truncated PEM body.
        let mut v = apns_value();
        let pem = fixtures::APNS_PRIVATE_KEY_PEM.replacen('A', "", 3);
        v["privateKey"] = json!(pem);
        assert!(ApnsCredentials::parse(&v).is_err());
    }

    fn service_account() -> Value {
        json!({"type": "service_account", "project_id": fixtures::FCM_PROJECT_ID,
               "private_key_id": "k1", "private_key": fixtures::FCM_PRIVATE_KEY_PEM,
               "client_email": fixtures::FCM_CLIENT_EMAIL, "token_uri": "http://127.0.0.1:9/token"})
    }

    #[test]
    fn fcm_token_url_precedence() {
        let creds = FcmCredentials::parse(&json!({"serviceAccount": service_account()})).unwrap();
        assert_eq!(creds.token_url(), "http://127.0.0.1:9/token");
        assert_eq!(creds.base_url(), FCM_DEFAULT_URL);
        let creds = FcmCredentials::parse(&json!({"serviceAccount": service_account(),
            "tokenUrl": "http://127.0.0.1:8/oauth", "baseUrl": "http://127.0.0.1:7"}))
        .unwrap();
        assert_eq!(creds.token_url(), "http://127.0.0.1:8/oauth");
        assert_eq!(creds.base_url(), "http://127.0.0.1:7");
        let mut account = service_account();
        account.as_object_mut().unwrap().remove("token_uri");
        let creds = FcmCredentials::parse(&json!({"serviceAccount": account})).unwrap();
        assert_eq!(creds.token_url(), GOOGLE_TOKEN_URL);
    }

    #[test]
    fn fcm_accepts_the_service_account_as_a_string_and_redacts_it() {
        let text = service_account().to_string();
        let creds = FcmCredentials::parse(&json!({"serviceAccount": text})).unwrap();
        assert_eq!(creds.project_id(), fixtures::FCM_PROJECT_ID);
        assert_eq!(creds.client_email(), fixtures::FCM_CLIENT_EMAIL);
        let debug = format!("{creds:?}");
        assert!(debug.contains("<redacted>") && !debug.contains("BEGIN"));
    }

    #[test]
    fn hms_parses_checks_and_redacts() {
        let creds = HmsCredentials::parse(&json!({"appId": "101234567", "clientId": "101234567",
            "clientSecret": "s3cr3t-value"}))
        .unwrap();
        assert_eq!(creds.base_url(), HMS_DEFAULT_URL);
        assert_eq!(creds.token_url(), HMS_TOKEN_URL);
        let debug = format!("{creds:?}");
        assert!(debug.contains("<redacted>") && !debug.contains("s3cr3t-value"));
        let creds = HmsCredentials::parse(&json!({"appId": "1", "clientId": "1", "clientSecret": "s",
            "baseUrl": "http://127.0.0.1:5/", "tokenUrl": "http://127.0.0.1:6/t"}))
        .unwrap();
        assert_eq!(
            (creds.base_url(), creds.token_url()),
            ("http://127.0.0.1:5", "http://127.0.0.1:6/t")
        );
        let err = HmsCredentials::parse(&json!({"appId": "a/b", "clientSecret": 5, "tokenUrl": "x"})).unwrap_err();
        assert_eq!(fields(err), ["appId", "clientId", "clientSecret", "tokenUrl"]);
    }

    #[test]
    fn fcm_lists_every_bad_field() {
        let err = FcmCredentials::parse(&json!({"baseUrl": "nope"})).unwrap_err();
        assert_eq!(fields(err), ["baseUrl", "serviceAccount"]);
        let err = FcmCredentials::parse(&json!({"serviceAccount": {"type": "user", "private_key": "x",
            "client_email": "nobody"}}))
        .unwrap_err();
        assert_eq!(
            fields(err),
            [
                "serviceAccount.type",
                "serviceAccount.project_id",
                "serviceAccount.client_email",
                "serviceAccount.private_key"
            ]
        );
        let mut account = service_account();
        account["private_key"] = json!(fixtures::APNS_PRIVATE_KEY_PEM);
        let err = FcmCredentials::parse(&json!({"serviceAccount": account})).unwrap_err();
        assert_eq!(fields(err), ["serviceAccount.private_key"]);
        let err = FcmCredentials::parse(&json!({"serviceAccount": "{not json"})).unwrap_err();
        assert_eq!(fields(err), ["serviceAccount"]);
    }
}
