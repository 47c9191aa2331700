//! The resources of the management API (management-api.md §7.1 applications and JWT keys, §7.2
//! API keys, §7.3 attribute definitions), field for field. The server's `/api/v1` routes and the
//! CLI's `--json` output both print these, so that a script can treat `roster app create --json`
//! and `POST /api/v1/applications` alike.

use crate::{ApiKey, Application, AttributeDefinition, JwtKey, Millis, SchemaField};
use serde::Serialize;
use serde_json::Value;
use time::{OffsetDateTime, format_description::BorrowedFormatItem, macros::format_description};
use uuid::Uuid;

/// `2025-03-01T10:00:00.123Z`.
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A stored timestamp as RFC 3339 UTC with milliseconds and `Z` (management-api.md §3.1).
pub fn timestamp(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(TIMESTAMP).ok())
        // Only a timestamp beyond year 9999 gets here; show the raw value rather than fail.
        .unwrap_or_else(|| ms.to_string())
}

/// A list in the shape of the API's paged lists (management-api.md §3.2), always one page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// All items in one page (`nextCursor: null`).
    pub fn all(items: Vec<T>) -> Page<T> {
        Page {
            items,
            next_cursor: None,
        }
    }
}

/// The application resource (management-api.md §7.1).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationResource {
    pub id: Uuid,
    pub name: String,
    pub application_code: String,
    pub enabled: bool,
    pub require_jwt_for_user_data: bool,
    pub restrict_user_data_from_sdk: bool,
    pub providers: Value,
    pub created_at: String,
    pub updated_at: String,
}

/// management-api.md §7.1: the public view of an application's stored provider settings. A
/// configured provider shows its non-secret members and `status` (`lastError` after a credential
/// failure); secrets (`privateKey`, `serviceAccount`, `clientSecret`) are never shown.
pub fn providers_view(stored: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for provider in ["apns", "fcm", "hms"] {
        let mut view = serde_json::Map::new();
        match stored.get(provider).and_then(Value::as_object) {
            None => {
                view.insert("configured".into(), Value::Bool(false));
            }
            Some(settings) => {
                view.insert("configured".into(), Value::Bool(true));
                let public: &[&str] = match provider {
                    "apns" => &["teamId", "keyId", "topic", "environment", "baseUrl"],
                    "fcm" => &["projectId", "clientEmail", "baseUrl", "tokenUrl"],
                    _ => &["appId", "clientId", "baseUrl", "tokenUrl"],
                };
                for name in public {
                    let value = match (provider, *name) {
                        ("fcm", "projectId") => service_account_member(settings, "project_id"),
                        ("fcm", "clientEmail") => service_account_member(settings, "client_email"),
                        _ => settings.get(*name).filter(|v| !v.is_null()).cloned(),
                    };
                    if let Some(v) = value {
                        view.insert((*name).into(), v);
                    }
                }
                let status = settings.get("status").cloned().unwrap_or_else(|| Value::from("OK"));
                view.insert("status".into(), status);
                if let Some(e) = settings.get("lastError").filter(|v| !v.is_null()) {
                    view.insert("lastError".into(), e.clone());
                }
            }
        }
        out.insert(provider.into(), Value::Object(view));
    }
    Value::Object(out)
}

/// A member of the stored FCM service account (an object, or the same JSON as a string).
fn service_account_member(settings: &serde_json::Map<String, Value>, name: &str) -> Option<Value> {
    match settings.get("serviceAccount")? {
        Value::Object(account) => account.get(name).cloned(),
        Value::String(text) => serde_json::from_str::<Value>(text).ok()?.get(name).cloned(),
        _ => None,
    }
}

impl From<&Application> for ApplicationResource {
    fn from(app: &Application) -> Self {
        ApplicationResource {
            id: app.id,
            name: app.name.clone(),
            application_code: app.application_code.clone(),
            enabled: app.enabled,
            require_jwt_for_user_data: app.require_jwt_for_user_data,
            restrict_user_data_from_sdk: app.restrict_user_data_from_sdk,
            providers: providers_view(&app.providers),
            created_at: timestamp(app.created_at),
            updated_at: timestamp(app.updated_at),
        }
    }
}

/// A JWT key as listed: no secret (management-api.md §7.1).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtKeyItem {
    pub kid: String,
    pub created_at: String,
}

impl From<&JwtKey> for JwtKeyItem {
    fn from(key: &JwtKey) -> Self {
        JwtKeyItem {
            kid: key.kid.clone(),
            created_at: timestamp(key.created_at),
        }
    }
}

/// A JWT key just created: the only time its secret (standard base64, padded) is shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtKeyCreated {
    pub kid: String,
    pub secret: String,
    pub created_at: String,
}

impl JwtKeyCreated {
    /// A key just created, with its secret in standard base64.
    pub fn new(key: &JwtKey, secret_base64: &str) -> Self {
        JwtKeyCreated {
            kid: key.kid.clone(),
            secret: secret_base64.to_string(),
            created_at: timestamp(key.created_at),
        }
    }
}

/// An API key (management-api.md §7.2); `key` only when just created, `lastUsedAt` only in lists.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyResource {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub key_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

impl From<&ApiKey> for ApiKeyResource {
    fn from(key: &ApiKey) -> Self {
        ApiKeyResource {
            id: key.id,
            name: key.name.clone(),
            scopes: key.scopes.clone(),
            key_prefix: key.key_prefix.clone(),
            key: None,
            created_at: timestamp(key.created_at),
            expires_at: key.expires_at.map(timestamp),
            last_used_at: key.last_used_at.map(timestamp),
        }
    }
}

impl ApiKeyResource {
    /// A key just created: the only time its secret is shown.
    pub fn created(key: &ApiKey, secret: &str) -> Self {
        ApiKeyResource {
            key: Some(secret.to_string()),
            // A new key has never been used; its create response has no lastUsedAt.
            last_used_at: None,
            ..ApiKeyResource::from(key)
        }
    }
}

/// An attribute definition (management-api.md §7.3).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeDefinitionResource {
    pub scope: &'static str,
    pub name: String,
    #[serde(rename = "type")]
    pub attr_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_schema: Option<Vec<SchemaField>>,
    pub origin: &'static str,
    pub created_at: String,
}

impl From<&AttributeDefinition> for AttributeDefinitionResource {
    fn from(d: &AttributeDefinition) -> Self {
        AttributeDefinitionResource {
            scope: d.scope.as_str(),
            name: d.name.clone(),
            attr_type: d.attr_type.as_str(),
            object_schema: d.object_schema.clone(),
            origin: d.origin.as_str(),
            created_at: timestamp(d.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 2025-01-01T00:00:00.000Z
    const NEW_YEAR_2025: Millis = 1_735_689_600_000;

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        assert_eq!(timestamp(NEW_YEAR_2025), "2025-01-01T00:00:00.000Z");
        assert_eq!(timestamp(NEW_YEAR_2025 + 123), "2025-01-01T00:00:00.123Z");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn application_resource_has_the_fields_of_the_spec() {
        // management-api.md §7.1, with no provider configured.
        let app = Application {
            account_id: Uuid::nil(),
            id: "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f".parse().unwrap(),
            name: "Acme Shop".into(),
            application_code: "8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71".into(),
            enabled: true,
            require_jwt_for_user_data: false,
            restrict_user_data_from_sdk: false,
            providers: json!({}),
            created_at: NEW_YEAR_2025,
            updated_at: NEW_YEAR_2025,
        };
        let shown = serde_json::to_string(&ApplicationResource::from(&app)).unwrap();
        assert_eq!(
            shown,
            r#"{"id":"3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","name":"Acme Shop","applicationCode":"8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71","enabled":true,"requireJwtForUserData":false,"restrictUserDataFromSdk":false,"providers":{"apns":{"configured":false},"fcm":{"configured":false},"hms":{"configured":false}},"createdAt":"2025-01-01T00:00:00.000Z","updatedAt":"2025-01-01T00:00:00.000Z"}"#
        );
    }

    #[test]
    fn provider_views_hide_secrets() {
        let stored = json!({
            "apns": {"teamId": "ABCDE12345", "keyId": "FGHIJ67890", "privateKey": "-----BEGIN PRIVATE KEY-----",
                     "topic": "com.acme.shop", "environment": "production", "status": "ERROR", "lastError": "InvalidProviderToken"},
            "fcm": {"serviceAccount": {"project_id": "acme-shop", "client_email": "push@acme-shop.iam.gserviceaccount.com",
                    "private_key": "-----BEGIN PRIVATE KEY-----"}, "baseUrl": "http://127.0.0.1:1", "status": "OK"},
        });
        assert_eq!(
            providers_view(&stored),
            json!({
                "apns": {"configured": true, "teamId": "ABCDE12345", "keyId": "FGHIJ67890", "topic": "com.acme.shop",
                         "environment": "production", "status": "ERROR", "lastError": "InvalidProviderToken"},
                "fcm": {"configured": true, "projectId": "acme-shop", "clientEmail": "push@acme-shop.iam.gserviceaccount.com",
                        "baseUrl": "http://127.0.0.1:1", "status": "OK"},
                "hms": {"configured": false},
            })
        );
        assert!(!providers_view(&stored).to_string().contains("PRIVATE KEY"));
    }

    #[test]
    fn api_key_create_shows_the_key_and_lists_do_not() {
        let key = ApiKey {
            account_id: Uuid::nil(),
            id: Uuid::nil(),
            name: "ci".into(),
            scopes: vec!["push:send".into()],
            key_hash: "00".into(),
            key_prefix: "rk_Jx2vQ8m".into(),
            created_at: NEW_YEAR_2025,
            expires_at: None,
            last_used_at: Some(NEW_YEAR_2025),
        };
        assert_eq!(
            serde_json::to_value(ApiKeyResource::created(&key, "rk_secret")).unwrap(),
            json!({"id":Uuid::nil(),"name":"ci","scopes":["push:send"],"keyPrefix":"rk_Jx2vQ8m","key":"rk_secret","createdAt":"2025-01-01T00:00:00.000Z"})
        );
        let listed = serde_json::to_value(ApiKeyResource::from(&key)).unwrap();
        assert!(listed.get("key").is_none() && listed["lastUsedAt"] == "2025-01-01T00:00:00.000Z");
    }

    #[test]
    fn pages_end_with_a_null_cursor() {
        assert_eq!(
            serde_json::to_string(&Page::all(vec![1])).unwrap(),
            r#"{"items":[1],"nextCursor":null}"#
        );
    }
}
