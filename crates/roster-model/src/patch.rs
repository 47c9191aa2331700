//! Request bodies of the mobile API parsed into tri-state patches (mobile-api.md §1.5, §4;
//! people.md §6). Parsing checks JSON types only (processing step 5 of mobile-api.md §3.3);
//! limits and formats are checked later (step 8), in spec order, by the core.

use serde_json::{Map, Value};

use crate::{
    error::ApiError,
    validate::{check_no_nul, check_value_no_nul, display_name, value_has_nul},
};

/// A PATCH field: absent (keep), `null` (clear) or a value (set).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    /// Whether the field was present in the body (as a value or `null`).
    pub fn is_present(&self) -> bool {
        !matches!(self, Patch::Absent)
    }
    /// The value, if one was given.
    pub fn value(&self) -> Option<&T> {
        match self {
            Patch::Value(v) => Some(v),
            _ => None,
        }
    }
    /// Maps the value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Value(v) => Patch::Value(f(v)),
        }
    }
    /// Applies the field to an optional value: absent keeps it, `null` clears it, a value sets it.
    pub fn apply_to(&self, field: &mut Option<T>)
    where
        T: Clone,
    {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = None,
            Patch::Value(v) => *field = Some(v.clone()),
        }
    }

    /// Applies a field to a flag whose `null` means a default (`regEnabled: null` is `true`,
    /// `isPrimary: null` is `false`, people.md §6.2).
    pub fn apply_to_flag(&self, field: &mut T, null_means: T)
    where
        T: Clone,
    {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = null_means,
            Patch::Value(v) => *field = v.clone(),
        }
    }

    /// Maps the value through a fallible function.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Patch<U>, E> {
        Ok(match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Value(v) => Patch::Value(f(v)?),
        })
    }
}

/// A `customAttributes` member of a PATCH: per key a value to type, or `None` to delete the key,
/// in the order received.
pub type AttributePatch = Vec<(String, Option<Value>)>;

/// The deepest nesting of arrays and objects a request body may have; the body object itself
/// is level 1. The deepest valid shape is a list-of-objects item inside personalize
/// (`body.userAttributes.customAttributes.orders[0]`, level 5); the rest is room for unknown
/// members, which are ignored (mobile-api.md §1.5). Deeper bodies are refused before any value is
/// built (docs/decisions.md).
pub const MAX_JSON_DEPTH: usize = 32;

/// Parses a request body: empty (or whitespace only) is `{}`, else a JSON object
/// (mobile-api.md §1.5) nested at most [`MAX_JSON_DEPTH`] levels. Duplicate keys: the last one
/// wins.
pub fn parse_body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    if json_depth_exceeds(body, MAX_JSON_DEPTH) {
        return Err(ApiError::format(
            "body",
            format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::format("body", format!("malformed JSON ({e})")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::format("body", "the body must be a JSON object")),
    }
}

/// Whether the arrays and objects of a JSON text nest deeper than `max` levels, judged from the
/// bytes alone (brackets outside strings), so that a hostile body is refused before serde_json
/// builds anything. serde_json's own limit (128 levels, fixed) is not configurable; this scan is
/// a few lines and also bounds the work done on bodies that are refused anyway. It does not
/// validate: malformed text is left to the parser.
pub fn json_depth_exceeds(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The JSON path of member `name` of the object at `prefix` (`""` at the top level).
pub fn json_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::format(path, format!("expected {expected}, got {}", type_name(got)))
}

/// A string field: absent / null / string.
/// A string with U+0000 is refused here, for every string field (see [`check_no_nul`]).
pub fn string_field(obj: &Map<String, Value>, name: &str, prefix: &str) -> Result<Patch<String>, ApiError> {
    match obj.get(name) {
        None => Ok(Patch::Absent),
        Some(Value::Null) => Ok(Patch::Null),
        Some(Value::String(s)) => {
            check_no_nul(s, &json_path(prefix, name))?;
            Ok(Patch::Value(s.clone()))
        }
        Some(other) => Err(wrong_type(&json_path(prefix, name), "a string", other)),
    }
}

/// A string field where `""` also means `null` (people.md §3.1).
fn string_field_empty_is_null(obj: &Map<String, Value>, name: &str, prefix: &str) -> Result<Patch<String>, ApiError> {
    Ok(match string_field(obj, name, prefix)? {
        Patch::Value(s) if s.is_empty() => Patch::Null,
        other => other,
    })
}

/// A boolean field: absent / null / boolean.
pub fn bool_field(obj: &Map<String, Value>, name: &str, prefix: &str) -> Result<Patch<bool>, ApiError> {
    match obj.get(name) {
        None => Ok(Patch::Absent),
        Some(Value::Null) => Ok(Patch::Null),
        Some(Value::Bool(b)) => Ok(Patch::Value(*b)),
        Some(other) => Err(wrong_type(&json_path(prefix, name), "a boolean", other)),
    }
}

/// A `customAttributes` object: absent / null (delete all) / per-key values. Values are typed
/// later (step 8), but U+0000 in a name or anywhere in a value is refused here.
pub fn attributes_field(obj: &Map<String, Value>, name: &str, prefix: &str) -> Result<Patch<AttributePatch>, ApiError> {
    let path = json_path(prefix, name);
    match obj.get(name) {
        None => Ok(Patch::Absent),
        Some(Value::Null) => Ok(Patch::Null),
        Some(Value::Object(m)) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m {
                if k.contains('\0') {
                    return Err(ApiError::format(
                        &format!("{path}.{}", display_name(k)),
                        "an attribute name must not contain the character U+0000",
                    ));
                }
                if value_has_nul(v) {
                    check_value_no_nul(v, &format!("{path}.{k}"))?;
                }
                out.push((k.clone(), if v.is_null() { None } else { Some(v.clone()) }));
            }
            Ok(Patch::Value(out))
        }
        Some(other) => Err(wrong_type(&path, "an object", other)),
    }
}

/// An array of `{"<member>": string}` objects (phones, emails); extra members are ignored.
fn object_list_field(
    obj: &Map<String, Value>,
    name: &str,
    member: &str,
    prefix: &str,
) -> Result<Patch<Vec<String>>, ApiError> {
    let path = json_path(prefix, name);
    match obj.get(name) {
        None => Ok(Patch::Absent),
        Some(Value::Null) => Ok(Patch::Null),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                let Value::Object(m) = item else {
                    return Err(wrong_type(&item_path, "an object", item));
                };
                match m.get(member) {
                    Some(Value::String(s)) => {
                        check_no_nul(s, &format!("{item_path}.{member}"))?;
                        out.push(s.clone());
                    }
                    Some(other) => return Err(wrong_type(&format!("{item_path}.{member}"), "a string", other)),
                    None => return Err(ApiError::format(&format!("{item_path}.{member}"), "missing")),
                }
            }
            Ok(Patch::Value(out))
        }
        Some(other) => Err(wrong_type(&path, "an array", other)),
    }
}

/// An array of strings (tags).
fn string_list_field(obj: &Map<String, Value>, name: &str, prefix: &str) -> Result<Patch<Vec<String>>, ApiError> {
    let path = json_path(prefix, name);
    match obj.get(name) {
        None => Ok(Patch::Absent),
        Some(Value::Null) => Ok(Patch::Null),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => {
                    check_no_nul(s, &format!("{path}[{i}]"))?;
                    Ok(s.clone())
                }
                other => Err(wrong_type(&format!("{path}[{i}]"), "a string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Patch::Value),
        Some(other) => Err(wrong_type(&path, "an array", other)),
    }
}

/// The body of a user PATCH, or `userAttributes` of personalize (mobile-api.md §4.2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    /// `""` and `"null"` (any case) already mapped to `Null`.
    pub external_user_id: Patch<String>,
    pub first_name: Patch<String>,
    pub middle_name: Patch<String>,
    pub last_name: Patch<String>,
    pub gender: Patch<String>,
    pub birthday: Patch<String>,
    pub phones: Patch<Vec<String>>,
    pub emails: Patch<Vec<String>>,
    pub tags: Patch<Vec<String>>,
    pub custom_attributes: Patch<AttributePatch>,
}

impl UserPatch {
    /// Parses a user JSON object; `prefix` is the JSON path of the object (`""` at top level).
    pub fn parse(obj: &Map<String, Value>, prefix: &str) -> Result<UserPatch, ApiError> {
        Ok(UserPatch {
            external_user_id: external_user_id_field(obj, prefix)?,
            first_name: string_field_empty_is_null(obj, "firstName", prefix)?,
            middle_name: string_field_empty_is_null(obj, "middleName", prefix)?,
            last_name: string_field_empty_is_null(obj, "lastName", prefix)?,
            gender: string_field_empty_is_null(obj, "gender", prefix)?,
            birthday: string_field_empty_is_null(obj, "birthday", prefix)?,
            phones: object_list_field(obj, "phones", "number", prefix)?,
            emails: object_list_field(obj, "emails", "address", prefix)?,
            tags: string_list_field(obj, "tags", prefix)?,
            custom_attributes: attributes_field(obj, "customAttributes", prefix)?,
        })
    }

    /// Whether any field other than the identity keys is present (mobile-api.md §2.3: a
    /// "non-empty" `userAttributes`).
    pub fn has_non_identity_fields(&self) -> bool {
        self.first_name.is_present()
            || self.middle_name.is_present()
            || self.last_name.is_present()
            || self.gender.is_present()
            || self.birthday.is_present()
            || self.tags.is_present()
            || self.custom_attributes.is_present()
    }
}

/// `externalUserId`: `""` and `"null"` in any letter case mean `null` (people.md §3.1).
fn external_user_id_field(obj: &Map<String, Value>, prefix: &str) -> Result<Patch<String>, ApiError> {
    Ok(match string_field(obj, "externalUserId", prefix)? {
        Patch::Value(s) if s.is_empty() || s.eq_ignore_ascii_case("null") => Patch::Null,
        other => other,
    })
}

/// The body of an installation create or PATCH (mobile-api.md §4.1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstallationPatch {
    /// `null` is ignored (the type is kept), so only absent or a raw value.
    pub push_service_type: Option<String>,
    pub push_service_token: Patch<String>,
    pub reg_enabled: Patch<bool>,
    pub is_primary: Patch<bool>,
    pub notifications_enabled: Patch<bool>,
    /// `""` already mapped to `Null`.
    pub application_user_id: Patch<String>,
    pub custom_attributes: Patch<AttributePatch>,
    /// System-data strings; `""` already mapped to `Null`.
    pub sdk_version: Patch<String>,
    pub app_version: Patch<String>,
    pub os: Patch<String>,
    pub os_version: Patch<String>,
    pub device_manufacturer: Patch<String>,
    pub device_model: Patch<String>,
    pub device_name: Patch<String>,
    pub device_secure: Patch<bool>,
    pub language: Patch<String>,
    pub device_timezone_offset: Patch<String>,
    pub inappchat: Patch<bool>,
    pub inbox: Patch<bool>,
    pub webrtcui: Patch<bool>,
    /// Whether the body names any installation field other than `isPrimary` (even with `null`);
    /// a remote PATCH may only carry `isPrimary` (mobile-api.md §5.4).
    pub has_fields_other_than_is_primary: bool,
}

/// Installation fields of mobile-api.md §4.1 other than `pushRegId` and `isPrimary`.
const INSTALLATION_FIELDS: &[&str] = &[
    "pushServiceType",
    "pushServiceToken",
    "regEnabled",
    "notificationsEnabled",
    "applicationUserId",
    "customAttributes",
    "sdkVersion",
    "appVersion",
    "os",
    "osVersion",
    "deviceManufacturer",
    "deviceModel",
    "deviceName",
    "deviceSecure",
    "language",
    "deviceTimezoneOffset",
    "inappchat",
    "inbox",
    "webrtcui",
];

impl InstallationPatch {
    /// Parses an installation JSON object (types only).
    pub fn parse(obj: &Map<String, Value>) -> Result<InstallationPatch, ApiError> {
        let s = |name: &str| string_field_empty_is_null(obj, name, "");
        let b = |name: &str| bool_field(obj, name, "");
        let push_service_type = match string_field(obj, "pushServiceType", "")? {
            Patch::Value(v) => Some(v),
            _ => None,
        };
        Ok(InstallationPatch {
            push_service_type,
            push_service_token: string_field(obj, "pushServiceToken", "")?,
            reg_enabled: b("regEnabled")?,
            is_primary: b("isPrimary")?,
            notifications_enabled: b("notificationsEnabled")?,
            application_user_id: s("applicationUserId")?,
            custom_attributes: attributes_field(obj, "customAttributes", "")?,
            sdk_version: s("sdkVersion")?,
            app_version: s("appVersion")?,
            os: s("os")?,
            os_version: s("osVersion")?,
            device_manufacturer: s("deviceManufacturer")?,
            device_model: s("deviceModel")?,
            device_name: s("deviceName")?,
            device_secure: b("deviceSecure")?,
            language: s("language")?,
            device_timezone_offset: s("deviceTimezoneOffset")?,
            inappchat: b("inappchat")?,
            inbox: b("inbox")?,
            webrtcui: b("webrtcui")?,
            has_fields_other_than_is_primary: INSTALLATION_FIELDS.iter().any(|f| obj.contains_key(*f)),
        })
    }
}

/// `userIdentity` of a personalize body (mobile-api.md §4.3), types checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentityInput {
    /// `None` when absent, `null`, `""` or `"null"`.
    pub external_user_id: Option<String>,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
}

impl IdentityInput {
    /// Whether at least one key is given (else `USER_IDENTITY_INVALID`).
    pub fn has_any_key(&self) -> bool {
        self.external_user_id.is_some() || !self.phones.is_empty() || !self.emails.is_empty()
    }
}

/// A personalize / repersonalize body (mobile-api.md §4.3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonalizeBody {
    /// `None` when `userIdentity` is absent or `null`.
    pub identity: Option<IdentityInput>,
    /// `userAttributes` without its (ignored) identity fields.
    pub attributes: UserPatch,
    /// Whether `userAttributes` has a member other than the ignored identity members
    /// (mobile-api.md §2.3, `restrictUserDataFromSdk`).
    pub attributes_non_empty: bool,
}

/// Members of `userAttributes` that are ignored (identity only comes from `userIdentity`).
const IGNORED_IN_ATTRIBUTES: &[&str] = &["externalUserId", "phones", "emails"];

impl PersonalizeBody {
    /// Parses a personalize body (types only).
    pub fn parse(obj: &Map<String, Value>) -> Result<PersonalizeBody, ApiError> {
        let identity = match obj.get("userIdentity") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                let ext = match external_user_id_field(m, "userIdentity")? {
                    Patch::Value(s) => Some(s),
                    _ => None,
                };
                let phones = match object_list_field(m, "phones", "number", "userIdentity")? {
                    Patch::Value(v) => v,
                    _ => Vec::new(),
                };
                let emails = match object_list_field(m, "emails", "address", "userIdentity")? {
                    Patch::Value(v) => v,
                    _ => Vec::new(),
                };
                Some(IdentityInput {
                    external_user_id: ext,
                    phones,
                    emails,
                })
            }
            Some(other) => return Err(wrong_type("userIdentity", "an object", other)),
        };
        let mut attributes_non_empty = false;
        let attributes = match obj.get("userAttributes") {
            None | Some(Value::Null) => UserPatch::default(),
            Some(Value::Object(m)) => {
                // Identity members inside userAttributes are ignored entirely, types included.
                let mut m = m.clone();
                for ignored in IGNORED_IN_ATTRIBUTES {
                    m.remove(*ignored);
                }
                attributes_non_empty = !m.is_empty();
                UserPatch::parse(&m, "userAttributes")?
            }
            Some(other) => return Err(wrong_type("userAttributes", "an object", other)),
        };
        Ok(PersonalizeBody {
            identity,
            attributes,
            attributes_non_empty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        parse_body_object(s.as_bytes()).unwrap()
    }

    #[test]
    fn empty_body_is_empty_object() {
        assert!(parse_body_object(b"").unwrap().is_empty());
        assert!(parse_body_object(b"  \n").unwrap().is_empty());
        assert!(parse_body_object(b"[]").is_err());
        assert!(parse_body_object(b"{").is_err());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let m = obj(r#"{"firstName":"a","firstName":"b"}"#);
        assert_eq!(UserPatch::parse(&m, "").unwrap().first_name, Patch::Value("b".into()));
    }

    #[test]
    fn user_patch_tri_state() {
        let p = UserPatch::parse(
            &obj(r#"{"externalUserId":"NuLl","lastName":null,"firstName":"","birthday":"1990-05-17","customAttributes":{"a":null,"b":1}}"#),
            "",
        )
        .unwrap();
        assert_eq!(p.external_user_id, Patch::Null);
        assert_eq!(p.last_name, Patch::Null);
        assert_eq!(p.first_name, Patch::Null);
        assert_eq!(p.middle_name, Patch::Absent);
        assert_eq!(p.birthday, Patch::Value("1990-05-17".into()));
        assert_eq!(
            p.custom_attributes,
            Patch::Value(vec![("a".into(), None), ("b".into(), Some(serde_json::json!(1)))])
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let e = UserPatch::parse(&obj(r#"{"phones":[{"number":1}]}"#), "").unwrap_err();
        assert!(e.text.contains("phones[0].number"), "{}", e.text);
        let e = PersonalizeBody::parse(&obj(r#"{"userAttributes":{"tags":["a",2]}}"#)).unwrap_err();
        assert!(e.text.contains("userAttributes.tags[1]"), "{}", e.text);
        let e = InstallationPatch::parse(&obj(r#"{"regEnabled":"1"}"#)).unwrap_err();
        assert!(e.text.contains("regEnabled"));
    }

    #[test]
    fn remote_patch_detection() {
        assert!(
            !InstallationPatch::parse(&obj(r#"{"isPrimary":true,"foo":1}"#))
                .unwrap()
                .has_fields_other_than_is_primary
        );
        assert!(
            InstallationPatch::parse(&obj(r#"{"isPrimary":true,"regEnabled":null}"#))
                .unwrap()
                .has_fields_other_than_is_primary
        );
    }

    #[test]
    fn personalize_ignores_identity_in_attributes() {
        let b = PersonalizeBody::parse(&obj(
            r#"{"userIdentity":{"externalUserId":"x"},"userAttributes":{"externalUserId":"y","phones":[{"number":"1"}],"firstName":"A"}}"#,
        ))
        .unwrap();
        assert_eq!(b.identity.unwrap().external_user_id.as_deref(), Some("x"));
        assert_eq!(b.attributes.external_user_id, Patch::Absent);
        assert_eq!(b.attributes.phones, Patch::Absent);
        assert!(b.attributes.has_non_identity_fields());
        assert!(b.attributes_non_empty);
        let b = PersonalizeBody::parse(&obj(
            r#"{"userIdentity":{"externalUserId":"x"},"userAttributes":{"phones":5}}"#,
        ))
        .unwrap();
        assert!(!b.attributes_non_empty);
    }
}
