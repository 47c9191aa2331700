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

// --- people, installations, merge log, GDPR (management-api.md §7.4, §7.5, §7.8, §8) ------------

/// How many trailing characters of a push token a resource shows (management-api.md §7.5).
pub const TOKEN_SUFFIX_CHARS: usize = 8;

/// The installation resource (management-api.md §7.5). The token itself only in a GDPR export
/// ([`InstallationResource::with_token`]); otherwise its last 8 characters, and only for a token
/// longer than that (a shorter one would be shown whole).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationResource {
    pub push_reg_id: String,
    pub application_id: Uuid,
    pub application_code: String,
    pub person_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub push_service_type: Option<String>,
    pub has_push_service_token: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub push_service_token_suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_cleared_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_cleared_reason: Option<String>,
    pub reg_enabled: bool,
    pub is_primary: bool,
    pub deliverable: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notifications_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub application_user_id: Option<String>,
    #[serde(default)]
    pub custom_attributes: crate::CustomAttributes,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sdk_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub app_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_secure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_timezone_offset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inappchat: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inbox: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub webrtcui: Option<bool>,
    pub created_at: String,
    pub updated_at: String,
    pub last_seen_at: String,
    /// The whole token: only in a GDPR export (management-api.md §8.1).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub push_service_token: Option<String>,
}

/// The last [`TOKEN_SUFFIX_CHARS`] characters of a token longer than that.
pub fn token_suffix(token: &str) -> Option<String> {
    let n = token.chars().count();
    (n > TOKEN_SUFFIX_CHARS).then(|| token.chars().skip(n - TOKEN_SUFFIX_CHARS).collect())
}

impl InstallationResource {
    /// The resource of an installation of the application with code `application_code`.
    pub fn of(i: &crate::Installation, application_code: &str) -> InstallationResource {
        let s = &i.system;
        let token = i.push_service_token.as_deref();
        InstallationResource {
            push_reg_id: i.push_reg_id.clone(),
            application_id: i.application_id,
            application_code: application_code.to_string(),
            person_id: i.person_id,
            push_service_type: i.push_service_type.map(|t| t.as_str().to_string()),
            has_push_service_token: token.is_some(),
            push_service_token_suffix: token.and_then(token_suffix),
            // Shown while the token is gone (§7.5); a later token makes them history.
            token_cleared_at: i.token_cleared_at.filter(|_| token.is_none()).map(timestamp),
            token_cleared_reason: i
                .token_cleared_reason
                .filter(|_| token.is_none())
                .map(|r| r.as_str().to_string()),
            reg_enabled: i.reg_enabled,
            is_primary: i.is_primary,
            deliverable: i.is_deliverable(),
            notifications_enabled: s.notifications_enabled,
            application_user_id: i.application_user_id.clone(),
            custom_attributes: i.custom_attributes.clone(),
            sdk_version: s.sdk_version.clone(),
            app_version: s.app_version.clone(),
            os: s.os.clone(),
            os_version: s.os_version.clone(),
            device_manufacturer: s.device_manufacturer.clone(),
            device_model: s.device_model.clone(),
            device_name: s.device_name.clone(),
            device_secure: s.device_secure,
            language: s.language.clone(),
            device_timezone_offset: s.device_timezone_offset.clone(),
            inappchat: s.inappchat,
            inbox: s.inbox,
            webrtcui: s.webrtcui,
            created_at: timestamp(i.created_at),
            updated_at: timestamp(i.updated_at),
            last_seen_at: timestamp(i.last_seen_at),
            push_service_token: None,
        }
    }

    /// The same resource with the whole token, for a GDPR export.
    pub fn with_token(mut self, i: &crate::Installation) -> InstallationResource {
        self.push_service_token = i.push_service_token.clone();
        self
    }
}

/// The person resource (management-api.md §7.4); `installations` (all applications, oldest
/// first) except in a GDPR export, which lists them beside the person.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonResource {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub person_type: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub birthday: Option<String>,
    #[serde(default)]
    pub phones: Vec<crate::wire::PhoneJson>,
    #[serde(default)]
    pub emails: Vec<crate::wire::EmailJson>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub custom_attributes: crate::CustomAttributes,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub installations: Option<Vec<InstallationResource>>,
}

impl PersonResource {
    /// The resource of a person, with `installations` when given.
    pub fn of(p: &crate::Person, installations: Option<Vec<InstallationResource>>) -> PersonResource {
        PersonResource {
            id: p.id,
            person_type: p.person_type.as_str().to_string(),
            external_user_id: p.external_user_id.clone(),
            first_name: p.first_name.clone(),
            middle_name: p.middle_name.clone(),
            last_name: p.last_name.clone(),
            gender: p.gender.map(|g| g.as_str().to_string()),
            birthday: p.birthday.clone(),
            phones: p
                .phones
                .iter()
                .map(|n| crate::wire::PhoneJson { number: n.clone() })
                .collect(),
            emails: p
                .emails
                .iter()
                .map(|a| crate::wire::EmailJson { address: a.clone() })
                .collect(),
            // BTreeSet: code-point order (people.md §3.1).
            tags: p.tags.iter().cloned().collect(),
            custom_attributes: p.custom_attributes.clone(),
            version: p.version,
            created_at: timestamp(p.created_at),
            updated_at: timestamp(p.updated_at),
            installations,
        }
    }

    /// The `ETag` of the person (management-api.md §3.4): its version, quoted.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// A person snapshot of a merge-log entry (people.md §9.2), in the person resource's shapes.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonSnapshotResource {
    #[serde(rename = "type")]
    pub person_type: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub birthday: Option<String>,
    #[serde(default)]
    pub phones: Vec<crate::wire::PhoneJson>,
    #[serde(default)]
    pub emails: Vec<crate::wire::EmailJson>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub custom_attributes: crate::CustomAttributes,
    pub version: i64,
}

impl From<&crate::PersonSnapshot> for PersonSnapshotResource {
    fn from(s: &crate::PersonSnapshot) -> Self {
        PersonSnapshotResource {
            person_type: s.person_type.as_str().to_string(),
            external_user_id: s.external_user_id.clone(),
            first_name: s.first_name.clone(),
            middle_name: s.middle_name.clone(),
            last_name: s.last_name.clone(),
            gender: s.gender.map(|g| g.as_str().to_string()),
            birthday: s.birthday.clone(),
            phones: s
                .phones
                .iter()
                .map(|n| crate::wire::PhoneJson { number: n.clone() })
                .collect(),
            emails: s
                .emails
                .iter()
                .map(|a| crate::wire::EmailJson { address: a.clone() })
                .collect(),
            tags: s.tags.iter().cloned().collect(),
            custom_attributes: s.custom_attributes.clone(),
            version: s.version,
        }
    }
}

/// `before.installation` of a merge-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationBeforeResource {
    pub is_primary: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target_primary_push_reg_id: Option<String>,
}

/// `before` of a merge-log entry: the snapshots, while retained.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeBeforeResource {
    pub source: PersonSnapshotResource,
    pub target: PersonSnapshotResource,
    pub installation: InstallationBeforeResource,
}

/// `after` of a merge-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeAfterResource {
    pub target_version: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_version: Option<i64>,
}

/// A merge-log entry (people.md §9.2, management-api.md §7.8). `sourcePersonId` and
/// `targetPersonId` are always present, `null` once that person was GDPR-erased; `before` only
/// where asked for (one entry, the export) and while retained.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeEntryResource {
    pub id: Uuid,
    pub created_at: String,
    pub actor: Value,
    pub push_reg_id: String,
    pub source_person_id: Option<Uuid>,
    pub target_person_id: Option<Uuid>,
    pub source_deleted: bool,
    pub after_forced_depersonalize: bool,
    #[serde(default)]
    pub dropped_attributes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub before: Option<MergeBeforeResource>,
    pub after: MergeAfterResource,
    pub status: String,
    pub reversible: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reversed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reversed_by: Option<Value>,
    pub redacted: bool,
}

impl MergeEntryResource {
    /// The resource of an entry; its snapshots only when `with_before` (and still retained).
    pub fn of(e: &crate::MergeLogEntry, with_before: bool) -> MergeEntryResource {
        MergeEntryResource {
            id: e.id,
            created_at: timestamp(e.created_at),
            actor: e.actor.clone(),
            push_reg_id: e.push_reg_id.clone(),
            source_person_id: e.source_person_id,
            target_person_id: e.target_person_id,
            source_deleted: e.source_deleted,
            after_forced_depersonalize: e.after_forced_depersonalize,
            dropped_attributes: e.dropped_attributes.clone(),
            before: e.before.as_ref().filter(|_| with_before).map(|b| MergeBeforeResource {
                source: (&b.source).into(),
                target: (&b.target).into(),
                installation: InstallationBeforeResource {
                    is_primary: b.installation.is_primary,
                    target_primary_push_reg_id: b.installation.target_primary_push_reg_id.clone(),
                },
            }),
            after: MergeAfterResource {
                target_version: e.after_target_version,
                source_version: e.after_source_version,
            },
            status: e.status.as_str().to_string(),
            // people.md §9.2: derived; the version checks of §9.3 are made when reversing.
            reversible: e.status == crate::MergeStatus::Applied && e.before.is_some(),
            reversed_at: e.reversed_at.map(timestamp),
            reversed_by: e.reversed_by.clone(),
            redacted: e.redacted,
        }
    }
}

/// The `format` of a GDPR export document.
pub const PERSON_EXPORT_FORMAT: &str = "roster.person-export.v1";

/// A GDPR export (management-api.md §8.1): everything Roster holds about one person.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonExport {
    pub format: String,
    pub exported_at: String,
    pub account_id: Uuid,
    /// The person resource without `installations`.
    pub person: PersonResource,
    /// Every installation in every application, with its whole token.
    pub installations: Vec<InstallationResource>,
    /// Delivery records still retained for those installations (management-api.md §6.7).
    pub deliveries: Vec<Value>,
    /// Every merge-log entry naming the person, with its retained snapshots.
    pub merges: Vec<MergeEntryResource>,
}

/// The answer of a GDPR erase (management-api.md §8.2).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EraseReport {
    pub person_id: Uuid,
    pub erased_at: String,
    pub installations_deleted: u64,
    pub deliveries_anonymised: u64,
    pub merge_entries_redacted: u64,
}

#[cfg(test)]
mod people_tests {
    use serde_json::json;

    use super::*;
    use crate::{Installation, Person, PersonType, PushServiceType, SystemData, TokenClearedReason};

    const T0: Millis = 1_735_689_600_000;

    fn installation() -> Installation {
        Installation {
            account_id: Uuid::nil(),
            application_id: "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f".parse().unwrap(),
            push_reg_id: "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f".into(),
            person_id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".parse().unwrap(),
            push_service_type: Some(PushServiceType::Firebase),
            push_service_token: Some("dQw4w9WgXcQ:APA91bHx7Yk2LmN3pQ4rS5tU6vW7xY8zA9bC0dE1fG2hI3jK4".into()),
            reg_enabled: true,
            is_primary: true,
            application_user_id: None,
            custom_attributes: Default::default(),
            system: SystemData {
                notifications_enabled: Some(true),
                sdk_version: Some("15.0.0".into()),
                app_version: Some("3.2.1".into()),
                os: Some("Android".into()),
                os_version: Some("14".into()),
                device_manufacturer: Some("Google".into()),
                device_model: Some("Pixel 8".into()),
                device_name: Some("Pixel 8".into()),
                device_secure: Some(true),
                language: Some("en".into()),
                device_timezone_offset: Some("GMT+01:00".into()),
                ..SystemData::default()
            },
            created_at: T0,
            updated_at: T0,
            last_seen_at: T0,
            token_cleared_at: None,
            token_cleared_reason: None,
        }
    }

    #[test]
    fn installation_resource_has_the_fields_of_the_spec_and_hides_the_token() {
        // management-api.md §7.5, field for field and in its order.
        let r = InstallationResource::of(&installation(), "8f2d");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"pushRegId":"7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f","applicationId":"3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","applicationCode":"8f2d","personId":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d","pushServiceType":"Firebase","hasPushServiceToken":true,"pushServiceTokenSuffix":"G2hI3jK4","regEnabled":true,"isPrimary":true,"deliverable":true,"notificationsEnabled":true,"customAttributes":{},"sdkVersion":"15.0.0","appVersion":"3.2.1","os":"Android","osVersion":"14","deviceManufacturer":"Google","deviceModel":"Pixel 8","deviceName":"Pixel 8","deviceSecure":true,"language":"en","deviceTimezoneOffset":"GMT+01:00","createdAt":"2025-01-01T00:00:00.000Z","updatedAt":"2025-01-01T00:00:00.000Z","lastSeenAt":"2025-01-01T00:00:00.000Z"}"#
        );
        let exported = serde_json::to_value(r.with_token(&installation())).unwrap();
        assert_eq!(
            exported["pushServiceToken"],
            "dQw4w9WgXcQ:APA91bHx7Yk2LmN3pQ4rS5tU6vW7xY8zA9bC0dE1fG2hI3jK4"
        );
    }

    #[test]
    fn a_cleared_token_shows_when_and_why() {
        let mut i = installation();
        i.push_service_token = None;
        i.token_cleared_at = Some(T0 + 1);
        i.token_cleared_reason = Some(TokenClearedReason::TakenOver);
        let v = serde_json::to_value(InstallationResource::of(&i, "c")).unwrap();
        assert_eq!(v["hasPushServiceToken"], false);
        assert_eq!(v["deliverable"], false);
        assert_eq!(v["tokenClearedAt"], "2025-01-01T00:00:00.001Z");
        assert_eq!(v["tokenClearedReason"], "TAKEN_OVER");
        assert!(v.get("pushServiceTokenSuffix").is_none());
        // Short tokens are never shown, not even as a suffix.
        assert_eq!(token_suffix("12345678"), None);
        assert_eq!(token_suffix("123456789").as_deref(), Some("23456789"));
        assert_eq!(token_suffix("ééééééééé").as_deref(), Some("éééééééé"));
    }

    #[test]
    fn person_resource_has_the_fields_of_the_spec() {
        let mut p = Person::new_anonymous(Uuid::nil(), T0);
        p.id = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".parse().unwrap();
        p.person_type = PersonType::Customer;
        p.external_user_id = Some("cust-1001".into());
        p.first_name = Some("Ana".into());
        p.middle_name = Some("Marija".into());
        p.birthday = Some("1990-05-17".into());
        p.phones = vec!["385911234567".into()];
        p.emails = vec!["Ana.Horvat@Example.com".into()];
        p.tags = ["vip".to_string(), "beta".to_string()].into_iter().collect();
        p.custom_attributes = [
            ("loyaltyPoints".to_string(), json!(120)),
            ("newsletter".to_string(), json!(true)),
        ]
        .into_iter()
        .collect();
        p.version = 7;
        let r = PersonResource::of(&p, Some(vec![]));
        assert_eq!(r.etag(), "\"7\"");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"id":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d","type":"CUSTOMER","externalUserId":"cust-1001","firstName":"Ana","middleName":"Marija","birthday":"1990-05-17","phones":[{"number":"385911234567"}],"emails":[{"address":"Ana.Horvat@Example.com"}],"tags":["beta","vip"],"customAttributes":{"loyaltyPoints":120,"newsletter":true},"version":7,"createdAt":"2025-01-01T00:00:00.000Z","updatedAt":"2025-01-01T00:00:00.000Z","installations":[]}"#
        );
        // Round trip (the CLI reads what the server writes).
        let back: PersonResource = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(
            serde_json::to_value(PersonResource::of(&p, None))
                .unwrap()
                .get("installations")
                .is_none()
        );
    }

    #[test]
    fn merge_entries_show_null_ids_and_snapshots_only_when_asked() {
        let source = Person::new_anonymous(Uuid::nil(), T0);
        let entry = crate::MergeLogEntry {
            account_id: Uuid::nil(),
            id: Uuid::nil(),
            created_at: T0,
            actor: json!({"type": "INSTALLATION", "pushRegId": "p", "applicationCode": "c"}),
            push_reg_id: "p".into(),
            source_person_id: None,
            target_person_id: Some(Uuid::nil()),
            source_deleted: true,
            after_forced_depersonalize: false,
            dropped_attributes: vec![],
            before: Some(crate::MergeBefore {
                source: crate::PersonSnapshot::of(&source),
                target: crate::PersonSnapshot::of(&source),
                installation: crate::InstallationBefore {
                    is_primary: false,
                    target_primary_push_reg_id: None,
                },
            }),
            after_target_version: 2,
            after_source_version: None,
            status: crate::MergeStatus::Applied,
            reversed_at: None,
            reversed_by: None,
            redacted: false,
        };
        let listed = serde_json::to_value(MergeEntryResource::of(&entry, false)).unwrap();
        assert_eq!(
            listed,
            json!({"id": Uuid::nil(), "createdAt": "2025-01-01T00:00:00.000Z",
                   "actor": {"type": "INSTALLATION", "pushRegId": "p", "applicationCode": "c"},
                   "pushRegId": "p", "sourcePersonId": null, "targetPersonId": Uuid::nil(),
                   "sourceDeleted": true, "afterForcedDepersonalize": false, "droppedAttributes": [],
                   "after": {"targetVersion": 2}, "status": "APPLIED", "reversible": true, "redacted": false})
        );
        let shown = serde_json::to_value(MergeEntryResource::of(&entry, true)).unwrap();
        assert_eq!(
            shown["before"]["source"],
            json!({"type": "LEAD", "phones": [], "emails": [], "tags": [], "customAttributes": {}, "version": 1})
        );
        assert_eq!(shown["before"]["installation"], json!({"isPrimary": false}));
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
