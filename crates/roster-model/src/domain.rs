//! Domain types of people.md: accounts, applications, installations, persons, definitions and
//! the merge log. These are what the store keeps and the core rules change; wire JSON is built
//! from them in `wire`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Milliseconds since the Unix epoch, UTC. All stored timestamps use it.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_millis() -> Millis {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as Millis
}

/// A canonical, validated custom attribute value (people.md §8.1), already in its output form:
/// strings, numbers, booleans, `yyyy-MM-dd`, `yyyy-MM-ddTHH:mm:ssZ`, or an array of flat objects.
pub type CustomAttributes = BTreeMap<String, Value>;

/// `LEAD` or `CUSTOMER` (people.md §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PersonType {
    Lead,
    Customer,
}

impl PersonType {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PersonType::Lead => "LEAD",
            PersonType::Customer => "CUSTOMER",
        }
    }
    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "LEAD" => Some(PersonType::Lead),
            "CUSTOMER" => Some(PersonType::Customer),
            _ => None,
        }
    }
}

/// `Male` or `Female` (input case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "Male",
            Gender::Female => "Female",
        }
    }
    /// Parses case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("male") {
            Some(Gender::Male)
        } else if s.eq_ignore_ascii_case("female") {
            Some(Gender::Female)
        } else {
            None
        }
    }
}

/// The `pushServiceType` of an installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PushServiceType {
    Firebase,
    #[serde(rename = "GCM")]
    Gcm,
    #[serde(rename = "HMS")]
    Hms,
    #[serde(rename = "APNS")]
    Apns,
}

impl PushServiceType {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PushServiceType::Firebase => "Firebase",
            PushServiceType::Gcm => "GCM",
            PushServiceType::Hms => "HMS",
            PushServiceType::Apns => "APNS",
        }
    }
    /// Parses case-insensitively (mobile-api.md §4.1 row 2).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Firebase, Self::Gcm, Self::Hms, Self::Apns]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
    /// The provider that delivers to this type.
    pub fn provider(self) -> Provider {
        match self {
            PushServiceType::Firebase | PushServiceType::Gcm => Provider::Fcm,
            PushServiceType::Hms => Provider::Hms,
            PushServiceType::Apns => Provider::Apns,
        }
    }
}

/// A push provider: the unit of token uniqueness (people.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Provider {
    Fcm,
    Apns,
    Hms,
}

impl Provider {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Fcm => "FCM",
            Provider::Apns => "APNS",
            Provider::Hms => "HMS",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FCM" => Some(Provider::Fcm),
            "APNS" => Some(Provider::Apns),
            "HMS" => Some(Provider::Hms),
            _ => None,
        }
    }
}

/// Why an installation lost its token (people.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenClearedReason {
    TakenOver,
    Unregistered,
    Device,
}

impl TokenClearedReason {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenClearedReason::TakenOver => "TAKEN_OVER",
            TokenClearedReason::Unregistered => "UNREGISTERED",
            TokenClearedReason::Device => "DEVICE",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TAKEN_OVER" => Some(Self::TakenOver),
            "UNREGISTERED" => Some(Self::Unregistered),
            "DEVICE" => Some(Self::Device),
            _ => None,
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub created_at: Millis,
}

/// One mobile app of an account (people.md §1).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub account_id: Uuid,
    pub id: Uuid,
    pub name: String,
    /// 64 lowercase hex characters.
    pub application_code: String,
    pub enabled: bool,
    pub require_jwt_for_user_data: bool,
    pub restrict_user_data_from_sdk: bool,
    /// Provider credentials as stored (management-api.md §7.1); secrets inside, never shown.
    pub providers: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl std::fmt::Debug for Application {
    // Provider credentials hold secrets: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A JWT signing key of an application (mobile-api.md §2.2).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtKey {
    pub account_id: Uuid,
    pub application_id: Uuid,
    pub kid: String,
    /// The 32 secret bytes (the HMAC key).
    pub secret: Vec<u8>,
    pub created_at: Millis,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A management API key; only its hash is stored (management-api.md §1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub account_id: Uuid,
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    /// Lowercase hex SHA-256 of the whole key.
    pub key_hash: String,
    pub key_prefix: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

/// Device-reported system data of an installation (mobile-api.md §4.1 rows 6, 9–19).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    pub notifications_enabled: Option<bool>,
    pub sdk_version: Option<String>,
    pub app_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device_manufacturer: Option<String>,
    pub device_model: Option<String>,
    pub device_name: Option<String>,
    pub device_secure: Option<bool>,
    pub language: Option<String>,
    pub device_timezone_offset: Option<String>,
    pub inappchat: Option<bool>,
    pub inbox: Option<bool>,
    pub webrtcui: Option<bool>,
}

/// One install of one application on one device (people.md §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    pub account_id: Uuid,
    pub application_id: Uuid,
    /// Lowercase hyphenated UUID.
    pub push_reg_id: String,
    pub person_id: Uuid,
    pub push_service_type: Option<PushServiceType>,
    pub push_service_token: Option<String>,
    pub reg_enabled: bool,
    pub is_primary: bool,
    pub application_user_id: Option<String>,
    pub custom_attributes: CustomAttributes,
    pub system: SystemData,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_seen_at: Millis,
    pub token_cleared_at: Option<Millis>,
    pub token_cleared_reason: Option<TokenClearedReason>,
}

impl Installation {
    /// The provider of the stored type, if any.
    pub fn provider(&self) -> Option<Provider> {
        self.push_service_type.map(PushServiceType::provider)
    }
    /// `regEnabled` and a token present (people.md §2.1).
    pub fn is_deliverable(&self) -> bool {
        self.reg_enabled && self.push_service_token.is_some()
    }
}

/// A user (people.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    pub account_id: Uuid,
    pub id: Uuid,
    pub external_user_id: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub gender: Option<Gender>,
    /// `yyyy-MM-dd`.
    pub birthday: Option<String>,
    /// Normalised E.164 digits, in order, distinct.
    pub phones: Vec<String>,
    /// As given (trimmed), in order, distinct by [`crate::validate::email_key`].
    pub emails: Vec<String>,
    pub tags: BTreeSet<String>,
    pub custom_attributes: CustomAttributes,
    #[serde(rename = "type")]
    pub person_type: PersonType,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Person {
    /// A fresh anonymous `LEAD` person with no data (people.md §2.2 step 1).
    pub fn new_anonymous(account_id: Uuid, now: Millis) -> Person {
        Person {
            account_id,
            id: Uuid::new_v4(),
            external_user_id: None,
            first_name: None,
            middle_name: None,
            last_name: None,
            gender: None,
            birthday: None,
            phones: Vec::new(),
            emails: Vec::new(),
            tags: BTreeSet::new(),
            custom_attributes: BTreeMap::new(),
            person_type: PersonType::Lead,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// No identity key (people.md §3.1).
    pub fn is_anonymous(&self) -> bool {
        self.external_user_id.is_none() && self.phones.is_empty() && self.emails.is_empty()
    }

    /// The email comparison keys, in order.
    pub fn email_keys(&self) -> Vec<String> {
        self.emails.iter().map(|e| crate::validate::email_key(e)).collect()
    }

    /// The data part of the person (what a merge-log snapshot keeps, people.md §9.2).
    pub fn data_equals(&self, other: &Person) -> bool {
        self.external_user_id == other.external_user_id
            && self.first_name == other.first_name
            && self.middle_name == other.middle_name
            && self.last_name == other.last_name
            && self.gender == other.gender
            && self.birthday == other.birthday
            && self.phones == other.phones
            && self.emails == other.emails
            && self.tags == other.tags
            && self.custom_attributes == other.custom_attributes
            && self.person_type == other.person_type
    }
}

/// Scope of an attribute definition (people.md §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AttributeScope {
    Person,
    Installation,
}

impl AttributeScope {
    /// Wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeScope::Person => "PERSON",
            AttributeScope::Installation => "INSTALLATION",
        }
    }
    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PERSON" => Some(Self::Person),
            "INSTALLATION" => Some(Self::Installation),
            _ => None,
        }
    }
}

/// The type of a custom attribute (people.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttributeType {
    String,
    Decimal,
    Boolean,
    Date,
    DateTime,
    ListOfObjects,
}

impl AttributeType {
    /// Wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "STRING",
            AttributeType::Decimal => "DECIMAL",
            AttributeType::Boolean => "BOOLEAN",
            AttributeType::Date => "DATE",
            AttributeType::DateTime => "DATE_TIME",
            AttributeType::ListOfObjects => "LIST_OF_OBJECTS",
        }
    }
    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::String,
            Self::Decimal,
            Self::Boolean,
            Self::Date,
            Self::DateTime,
            Self::ListOfObjects,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
    /// Whether a field of a LIST_OF_OBJECTS schema may have this type.
    pub fn is_scalar(self) -> bool {
        self != AttributeType::ListOfObjects
    }
}

/// One field of a LIST_OF_OBJECTS schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: AttributeType,
}

/// Who created a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DefinitionOrigin {
    Auto,
    Api,
}

impl DefinitionOrigin {
    /// Wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionOrigin::Auto => "AUTO",
            DefinitionOrigin::Api => "API",
        }
    }
    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AUTO" => Some(Self::Auto),
            "API" => Some(Self::Api),
            _ => None,
        }
    }
}

/// A custom attribute definition (people.md §8.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeDefinition {
    pub account_id: Uuid,
    pub scope: AttributeScope,
    pub name: String,
    #[serde(rename = "type")]
    pub attr_type: AttributeType,
    pub object_schema: Option<Vec<SchemaField>>,
    pub origin: DefinitionOrigin,
    pub created_at: Millis,
}

/// Snapshot of a person's data kept in a merge-log entry (people.md §9.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonSnapshot {
    pub external_user_id: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub gender: Option<Gender>,
    pub birthday: Option<String>,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub tags: BTreeSet<String>,
    pub custom_attributes: CustomAttributes,
    #[serde(rename = "type")]
    pub person_type: PersonType,
    pub version: i64,
}

impl PersonSnapshot {
    /// Snapshot of a person's current data.
    pub fn of(p: &Person) -> Self {
        PersonSnapshot {
            external_user_id: p.external_user_id.clone(),
            first_name: p.first_name.clone(),
            middle_name: p.middle_name.clone(),
            last_name: p.last_name.clone(),
            gender: p.gender,
            birthday: p.birthday.clone(),
            phones: p.phones.clone(),
            emails: p.emails.clone(),
            tags: p.tags.clone(),
            custom_attributes: p.custom_attributes.clone(),
            person_type: p.person_type,
            version: p.version,
        }
    }
}

/// `before.installation` of a merge-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationBefore {
    pub is_primary: bool,
    pub target_primary_push_reg_id: Option<String>,
}

/// The `before` images of a merge-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeBefore {
    pub source: PersonSnapshot,
    pub target: PersonSnapshot,
    pub installation: InstallationBefore,
}

/// Status of a merge-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MergeStatus {
    Applied,
    Reversed,
}

impl MergeStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStatus::Applied => "APPLIED",
            MergeStatus::Reversed => "REVERSED",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "APPLIED" => Some(Self::Applied),
            "REVERSED" => Some(Self::Reversed),
            _ => None,
        }
    }
}

/// One merge-log entry (people.md §9.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeLogEntry {
    pub account_id: Uuid,
    pub id: Uuid,
    pub created_at: Millis,
    /// `{"type":"INSTALLATION","pushRegId":…,"applicationCode":…}` or `{"type":"API_KEY",…}`.
    pub actor: Value,
    pub push_reg_id: String,
    pub source_person_id: Option<Uuid>,
    pub target_person_id: Option<Uuid>,
    pub source_deleted: bool,
    pub after_forced_depersonalize: bool,
    pub dropped_attributes: Vec<String>,
    /// `None` once purged (retention or GDPR erase).
    pub before: Option<MergeBefore>,
    pub after_target_version: i64,
    pub after_source_version: Option<i64>,
    pub status: MergeStatus,
    pub reversed_at: Option<Millis>,
    pub reversed_by: Option<Value>,
    pub redacted: bool,
}
