//! The data types of client-sdk.md §2: the local views of the installation and the user, custom
//! attribute values, and call outcomes. Wire encoding is exactly mobile-api.md §4.

use std::collections::{BTreeMap, BTreeSet};

use roster_model::{
    Gender, PushServiceType,
    values::{canonical_decimal, format_date, format_date_time, parse_date, parse_date_time},
};
use serde_json::{Map, Value};
use time::{Date, OffsetDateTime};

use crate::json::JsonMap;

/// The installation as this client sees it (client-sdk.md §2): the confirmed copy with pending
/// changes applied, or an element of the user's installations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Installation {
    /// The server-assigned id; `None` until the registration succeeded.
    pub push_reg_id: Option<String>,
    pub push_service_type: Option<PushServiceType>,
    /// Only known for the own installation.
    pub push_service_token: Option<String>,
    pub reg_enabled: bool,
    pub is_primary: bool,
    pub notifications_enabled: Option<bool>,
    pub application_user_id: Option<String>,
    pub custom_attributes: BTreeMap<String, CustomValue>,
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

/// `LEAD` or `CUSTOMER` (people.md §3.6), known once the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserType {
    Lead,
    Customer,
}

/// The user (person) as this client sees it (client-sdk.md §2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct User {
    pub external_user_id: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub gender: Option<Gender>,
    pub birthday: Option<Date>,
    /// Normalised E.164 digits without `+`.
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub tags: BTreeSet<String>,
    pub custom_attributes: BTreeMap<String, CustomValue>,
    pub user_type: Option<UserType>,
    /// The person's installations in this application, the own one included (`instances` of the
    /// last user response).
    pub installations: Vec<Installation>,
}

impl User {
    /// Whether the user has an identity key (externalUserId, a phone or an email).
    pub fn has_identity(&self) -> bool {
        self.external_user_id.is_some() || !self.phones.is_empty() || !self.emails.is_empty()
    }
}

/// The identity of a personalize (client-sdk.md §8): at least one key must be set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserIdentity {
    pub external_user_id: Option<String>,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
}

impl UserIdentity {
    /// An identity with only an `externalUserId`.
    pub fn external(id: impl Into<String>) -> Self {
        UserIdentity {
            external_user_id: Some(id.into()),
            ..Default::default()
        }
    }
}

/// The attributes sent with a personalize (`userAttributes`, nulls omitted).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserAttributes {
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub gender: Option<Gender>,
    pub birthday: Option<Date>,
    /// Sent when not empty.
    pub tags: BTreeSet<String>,
    /// Sent when not empty.
    pub custom_attributes: BTreeMap<String, CustomValue>,
}

/// The flags of a personalize (all `false` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PersonalizeOptions {
    pub force_depersonalize: bool,
    pub keep_as_lead: bool,
    pub set_device_as_primary: bool,
}

/// A scalar custom attribute value (also the values inside list-of-objects items).
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarValue {
    String(String),
    Decimal(f64),
    Boolean(bool),
    Date(Date),
    /// UTC, whole seconds (a fraction is dropped when encoding).
    DateTime(OffsetDateTime),
}

/// A custom attribute value (mobile-api.md §4.4).
#[derive(Debug, Clone, PartialEq)]
pub enum CustomValue {
    String(String),
    Decimal(f64),
    Boolean(bool),
    Date(Date),
    /// UTC, whole seconds (a fraction is dropped when encoding).
    DateTime(OffsetDateTime),
    ListOfObjects(Vec<BTreeMap<String, ScalarValue>>),
}

impl ScalarValue {
    /// The wire JSON; `None` for a non-finite decimal.
    pub fn to_json(&self) -> Option<Value> {
        Some(match self {
            ScalarValue::String(s) => Value::String(s.clone()),
            ScalarValue::Decimal(f) => canonical_decimal(*f)?,
            ScalarValue::Boolean(b) => Value::Bool(*b),
            ScalarValue::Date(d) => Value::String(format_date(*d)),
            ScalarValue::DateTime(t) => Value::String(format_date_time(*t)),
        })
    }

    /// Decodes a response value by its shape (client-sdk.md §2); `None` for arrays, objects, null.
    pub fn from_json(v: &Value) -> Option<ScalarValue> {
        Some(match v {
            Value::String(s) => decode_string(s),
            Value::Number(n) => ScalarValue::Decimal(n.as_f64()?),
            Value::Bool(b) => ScalarValue::Boolean(*b),
            _ => return None,
        })
    }

    /// The name of the kind, for homogeneity checks and messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ScalarValue::String(_) => "STRING",
            ScalarValue::Decimal(_) => "DECIMAL",
            ScalarValue::Boolean(_) => "BOOLEAN",
            ScalarValue::Date(_) => "DATE",
            ScalarValue::DateTime(_) => "DATE_TIME",
        }
    }
}

/// A string is a `Date` or `DateTime` only when it has exactly the output shape, so re-encoding
/// yields the same JSON (a `STRING` attribute holding `"2024-01-01"` survives a round trip).
fn decode_string(s: &str) -> ScalarValue {
    if let Some(d) = parse_date(s) {
        return ScalarValue::Date(d);
    }
    if let Some(t) = parse_date_time(s)
        && format_date_time(t) == s
    {
        return ScalarValue::DateTime(t);
    }
    ScalarValue::String(s.to_string())
}

impl CustomValue {
    /// The wire JSON; `None` for a non-finite decimal.
    pub fn to_json(&self) -> Option<Value> {
        match self {
            CustomValue::String(s) => ScalarValue::String(s.clone()).to_json(),
            CustomValue::Decimal(f) => ScalarValue::Decimal(*f).to_json(),
            CustomValue::Boolean(b) => ScalarValue::Boolean(*b).to_json(),
            CustomValue::Date(d) => ScalarValue::Date(*d).to_json(),
            CustomValue::DateTime(t) => ScalarValue::DateTime(*t).to_json(),
            CustomValue::ListOfObjects(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let mut m = Map::new();
                    for (k, v) in item {
                        m.insert(k.clone(), v.to_json()?);
                    }
                    out.push(Value::Object(m));
                }
                Some(Value::Array(out))
            }
        }
    }

    /// Decodes a response value by its shape (client-sdk.md §2); `None` for null and for shapes
    /// that are not attribute values.
    pub fn from_json(v: &Value) -> Option<CustomValue> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Object(m) = item else { return None };
                    let mut o = BTreeMap::new();
                    for (k, x) in m {
                        o.insert(k.clone(), ScalarValue::from_json(x)?);
                    }
                    out.push(o);
                }
                Some(CustomValue::ListOfObjects(out))
            }
            other => Some(match ScalarValue::from_json(other)? {
                ScalarValue::String(s) => CustomValue::String(s),
                ScalarValue::Decimal(f) => CustomValue::Decimal(f),
                ScalarValue::Boolean(b) => CustomValue::Boolean(b),
                ScalarValue::Date(d) => CustomValue::Date(d),
                ScalarValue::DateTime(t) => CustomValue::DateTime(t),
            }),
        }
    }
}

macro_rules! from_impls {
    ($t:ident) => {
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $t::String(s.to_string())
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                $t::String(s)
            }
        }
        impl From<f64> for $t {
            fn from(f: f64) -> Self {
                $t::Decimal(f)
            }
        }
        impl From<i64> for $t {
            fn from(i: i64) -> Self {
                $t::Decimal(i as f64)
            }
        }
        impl From<i32> for $t {
            fn from(i: i32) -> Self {
                $t::Decimal(f64::from(i))
            }
        }
        impl From<bool> for $t {
            fn from(b: bool) -> Self {
                $t::Boolean(b)
            }
        }
        impl From<Date> for $t {
            fn from(d: Date) -> Self {
                $t::Date(d)
            }
        }
        impl From<OffsetDateTime> for $t {
            fn from(t: OffsetDateTime) -> Self {
                $t::DateTime(t)
            }
        }
    };
}
from_impls!(ScalarValue);
from_impls!(CustomValue);

/// The result of a save (client-sdk.md §6.1).
#[derive(Debug, Clone)]
pub enum SaveOutcome<T> {
    /// The server confirmed the change; the confirmed local view.
    Reported(T),
    /// Kept locally and retried; the error says why it is not confirmed yet.
    Queued(crate::RosterError),
}

impl<T> SaveOutcome<T> {
    /// Whether the server confirmed the change.
    pub fn is_reported(&self) -> bool {
        matches!(self, SaveOutcome::Reported(_))
    }
    /// The confirmed view, if reported.
    pub fn reported(self) -> Option<T> {
        match self {
            SaveOutcome::Reported(t) => Some(t),
            SaveOutcome::Queued(_) => None,
        }
    }
}

/// The result of `depersonalize` (client-sdk.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessPending {
    /// The server confirmed (or nothing had to be told to it).
    Success,
    /// The request failed; it is retried until it succeeds, across restarts.
    Pending,
}

/// What is waiting to be sent (client-sdk.md §3, `pending()`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PendingState {
    /// JSON paths of pending user changes (`firstName`, `customAttributes.tier`, ...).
    pub user_fields: Vec<String>,
    /// JSON paths of pending installation changes (a token change is `pushServiceToken`).
    pub installation_fields: Vec<String>,
    /// Whether a depersonalization waits for the server.
    pub depersonalize_pending: bool,
    /// Whether the installation is not registered yet.
    pub registration_pending: bool,
    /// When the next automatic retry is scheduled, if one is.
    pub next_retry_at: Option<std::time::SystemTime>,
}

impl PendingState {
    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.user_fields.is_empty()
            && self.installation_fields.is_empty()
            && !self.depersonalize_pending
            && !self.registration_pending
    }
}

// ------------------------------------------------------------------------------------------------
// Views from wire JSON
// ------------------------------------------------------------------------------------------------

fn s(m: &JsonMap, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

fn b(m: &JsonMap, k: &str) -> Option<bool> {
    m.get(k).and_then(Value::as_bool)
}

/// Decodes a `customAttributes` object.
pub(crate) fn attributes_of(v: Option<&Value>) -> BTreeMap<String, CustomValue> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(m)) = v {
        for (k, x) in m {
            if let Some(cv) = CustomValue::from_json(x) {
                out.insert(k.clone(), cv);
            }
        }
    }
    out
}

/// An installation view from installation JSON (mobile-api.md §4.1).
pub(crate) fn installation_of(m: &JsonMap) -> Installation {
    Installation {
        push_reg_id: s(m, "pushRegId"),
        push_service_type: s(m, "pushServiceType").and_then(|t| PushServiceType::parse(&t)),
        push_service_token: s(m, "pushServiceToken"),
        reg_enabled: b(m, "regEnabled").unwrap_or(true),
        is_primary: b(m, "isPrimary").unwrap_or(false),
        notifications_enabled: b(m, "notificationsEnabled"),
        application_user_id: s(m, "applicationUserId"),
        custom_attributes: attributes_of(m.get("customAttributes")),
        sdk_version: s(m, "sdkVersion"),
        app_version: s(m, "appVersion"),
        os: s(m, "os"),
        os_version: s(m, "osVersion"),
        device_manufacturer: s(m, "deviceManufacturer"),
        device_model: s(m, "deviceModel"),
        device_name: s(m, "deviceName"),
        device_secure: b(m, "deviceSecure"),
        language: s(m, "language"),
        device_timezone_offset: s(m, "deviceTimezoneOffset"),
        inappchat: b(m, "inappchat"),
        inbox: b(m, "inbox"),
        webrtcui: b(m, "webrtcui"),
    }
}

/// A user view from user JSON (mobile-api.md §4.2).
pub(crate) fn user_of(m: &JsonMap) -> User {
    let list = |k: &str, member: &str| -> Vec<String> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get(member).and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    User {
        external_user_id: s(m, "externalUserId"),
        first_name: s(m, "firstName"),
        middle_name: s(m, "middleName"),
        last_name: s(m, "lastName"),
        gender: s(m, "gender").and_then(|g| Gender::parse(&g)),
        birthday: s(m, "birthday").and_then(|d| parse_date(&d)),
        phones: list("phones", "number"),
        emails: list("emails", "address"),
        tags: m
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        custom_attributes: attributes_of(m.get("customAttributes")),
        user_type: match m.get("type").and_then(Value::as_str) {
            Some("LEAD") => Some(UserType::Lead),
            Some("CUSTOMER") => Some(UserType::Customer),
            _ => None,
        },
        installations: m
            .get("instances")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).map(installation_of).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::{date, datetime};

    #[test]
    fn decoding_by_shape() {
        assert_eq!(
            CustomValue::from_json(&json!("2024-01-01")),
            Some(CustomValue::Date(date!(2024 - 01 - 01)))
        );
        assert_eq!(
            CustomValue::from_json(&json!("2020-02-26T09:41:57Z")),
            Some(CustomValue::DateTime(datetime!(2020-02-26 09:41:57 UTC)))
        );
        // Not the exact output shape: a plain string.
        assert_eq!(
            CustomValue::from_json(&json!("2020-02-26T09:41:57+00:00")),
            Some(CustomValue::String("2020-02-26T09:41:57+00:00".into()))
        );
        assert_eq!(CustomValue::from_json(&json!(120)), Some(CustomValue::Decimal(120.0)));
        assert_eq!(CustomValue::from_json(&json!(true)), Some(CustomValue::Boolean(true)));
        assert_eq!(CustomValue::from_json(&json!(null)), None);
        assert_eq!(CustomValue::from_json(&json!({"a": 1})), None);
    }

    #[test]
    fn round_trips_yield_the_same_json() {
        for v in [
            json!("gold"),
            json!("2024-01-01"),
            json!("2020-02-26T09:41:57Z"),
            json!(120),
            json!(19.99),
            json!(false),
            json!([{"sku": "A1", "price": 9.5, "at": "2024-01-02T10:00:00Z", "day": "2024-01-02"}]),
            json!([]),
        ] {
            let cv = CustomValue::from_json(&v).unwrap();
            assert_eq!(cv.to_json().unwrap(), v, "{v}");
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(CustomValue::Decimal(120.0).to_json(), Some(json!(120)));
        assert_eq!(CustomValue::Decimal(f64::NAN).to_json(), None);
        assert_eq!(
            CustomValue::DateTime(datetime!(2020-02-26 09:41:57.75 UTC)).to_json(),
            Some(json!("2020-02-26T09:41:57Z"))
        );
        assert_eq!(
            CustomValue::DateTime(datetime!(2020-02-26 10:41:57 +01:00)).to_json(),
            Some(json!("2020-02-26T09:41:57Z"))
        );
    }
}
