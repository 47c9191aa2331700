//! Changes a host asks for (client-sdk.md §2 `UserChanges`, `InstallationChanges`), validated
//! locally with the server's own rules (roster-model's `validate` and `values`, people.md §3, §8)
//! and turned into PATCH-shaped JSON.

use std::collections::{BTreeMap, BTreeSet};

use roster_model::{
    Gender,
    validate::{
        MAX_ATTRIBUTE_VALUE_CHARS, MAX_CUSTOM_ATTRIBUTES, MAX_EMAILS, MAX_FIRST_LAST_NAME, MAX_MIDDLE_NAME, MAX_PHONES,
        MAX_TAGS, check_application_user_id, check_attribute_name, check_birthday, check_external_user_id,
        check_max_chars, check_tag, email_key, normalize_phone, validate_email,
    },
    values::format_date,
};
use serde_json::{Map, Value};
use time::Date;

use crate::{
    RosterError,
    json::{ATTRS, JsonMap},
    types::{CustomValue, ScalarValue, UserAttributes, UserIdentity},
};

/// One field of a change: leave it, set it, or clear it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum FieldChange<T> {
    #[default]
    Unchanged,
    Set(T),
    Clear,
}

/// One custom attribute of a change.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeChange {
    Set(CustomValue),
    Delete,
}

/// Changes to the user (client-sdk.md §2). Fields left `Unchanged` are not touched; custom
/// attributes are changed per key, after an optional [`UserChanges::clear_all_custom_attributes`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserChanges {
    pub external_user_id: FieldChange<String>,
    pub first_name: FieldChange<String>,
    pub middle_name: FieldChange<String>,
    pub last_name: FieldChange<String>,
    pub gender: FieldChange<Gender>,
    pub birthday: FieldChange<Date>,
    /// Replaces the whole list.
    pub phones: FieldChange<Vec<String>>,
    /// Replaces the whole list.
    pub emails: FieldChange<Vec<String>>,
    /// Replaces the whole set.
    pub tags: FieldChange<BTreeSet<String>>,
    /// Per key: set or delete (applied after `clear_custom_attributes`).
    pub custom_attributes: BTreeMap<String, AttributeChange>,
    /// Delete every custom attribute first.
    pub clear_custom_attributes: bool,
}

/// Changes to the own installation (client-sdk.md §2). The push token has its own calls
/// (`set_push_token`, `clear_push_token`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstallationChanges {
    /// `Clear` resets to the default, `true`.
    pub reg_enabled: FieldChange<bool>,
    /// `Clear` resets to the default, `false`.
    pub is_primary: FieldChange<bool>,
    pub application_user_id: FieldChange<String>,
    /// Per key: set or delete (applied after `clear_custom_attributes`).
    pub custom_attributes: BTreeMap<String, AttributeChange>,
    /// Delete every custom attribute first.
    pub clear_custom_attributes: bool,
}

macro_rules! attribute_methods {
    ($t:ident) => {
        impl $t {
            /// An empty change.
            pub fn new() -> Self {
                Self::default()
            }
            /// Sets one custom attribute.
            pub fn set_custom_attribute(
                &mut self,
                name: impl Into<String>,
                value: impl Into<CustomValue>,
            ) -> &mut Self {
                self.custom_attributes
                    .insert(name.into(), AttributeChange::Set(value.into()));
                self
            }
            /// Deletes one custom attribute.
            pub fn delete_custom_attribute(&mut self, name: impl Into<String>) -> &mut Self {
                self.custom_attributes
                    .insert(name.into(), AttributeChange::Delete);
                self
            }
            /// Deletes every custom attribute (before the per-key changes of this value).
            pub fn clear_all_custom_attributes(&mut self) -> &mut Self {
                self.clear_custom_attributes = true;
                self.custom_attributes.clear();
                self
            }
        }
    };
}
attribute_methods!(UserChanges);
attribute_methods!(InstallationChanges);

fn model_err(e: roster_model::ApiError) -> RosterError {
    RosterError::from_model(e, None)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A string field: `""` (and for `externalUserId` `"null"`) means clear, as on the server.
fn string_change(
    f: &FieldChange<String>,
    path: &str,
    is_null: impl Fn(&str) -> bool,
    check: impl Fn(&str, &str) -> Result<(), roster_model::ApiError>,
) -> Result<Option<Value>, RosterError> {
    Ok(match f {
        FieldChange::Unchanged => None,
        FieldChange::Clear => Some(Value::Null),
        FieldChange::Set(s) if is_null(s) => Some(Value::Null),
        FieldChange::Set(s) => {
            check(s, path).map_err(model_err)?;
            Some(Value::String(s.clone()))
        }
    })
}

fn no_null(s: &str) -> bool {
    s.is_empty()
}

fn ext_null(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("null")
}

/// people.md §3.2: phones normalised, duplicates collapsed to the first occurrence.
pub(crate) fn phones_json(list: &[String], path: &str) -> Result<Vec<Value>, RosterError> {
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let n = normalize_phone(raw).map_err(|e| RosterError::from_model(e, Some(&format!("{path}[{i}].number"))))?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    if out.len() > MAX_PHONES {
        return Err(RosterError::validation(
            path,
            format!("at most {MAX_PHONES} phone numbers are allowed"),
        ));
    }
    Ok(out.into_iter().map(|n| serde_json::json!({ "number": n })).collect())
}

/// people.md §3.3: emails trimmed, duplicates (by comparison key) collapsed.
pub(crate) fn emails_json(list: &[String], path: &str) -> Result<Vec<Value>, RosterError> {
    let mut out: Vec<String> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let e = validate_email(raw).map_err(|e| RosterError::from_model(e, Some(&format!("{path}[{i}].address"))))?;
        let k = email_key(&e);
        if !keys.contains(&k) {
            keys.push(k);
            out.push(e);
        }
    }
    if out.len() > MAX_EMAILS {
        return Err(RosterError::validation(
            path,
            format!("at most {MAX_EMAILS} email addresses are allowed"),
        ));
    }
    Ok(out.into_iter().map(|a| serde_json::json!({ "address": a })).collect())
}

fn tags_json(tags: &BTreeSet<String>, path: &str) -> Result<Vec<Value>, RosterError> {
    for (i, t) in tags.iter().enumerate() {
        check_tag(t, &format!("{path}[{i}]")).map_err(model_err)?;
    }
    if tags.len() > MAX_TAGS {
        return Err(RosterError::validation(
            path,
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    Ok(tags.iter().map(|t| Value::String(t.clone())).collect())
}

fn birthday_json(d: &Date, path: &str) -> Result<Value, RosterError> {
    let s = format_date(*d);
    check_birthday(&s, path).map_err(model_err)?;
    Ok(Value::String(s))
}

/// Validates a scalar value and returns its wire JSON.
fn scalar_json(v: &ScalarValue, path: &str) -> Result<Value, RosterError> {
    match v {
        ScalarValue::String(s) if s.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS => Err(RosterError::validation(
            path,
            format!("a STRING value must be at most {MAX_ATTRIBUTE_VALUE_CHARS} characters long"),
        )),
        ScalarValue::Date(d) if !(1..=9999).contains(&d.year()) => {
            Err(RosterError::validation(path, "not a valid DATE: year 0001 to 9999"))
        }
        ScalarValue::DateTime(t) if !(1..=9999).contains(&t.to_offset(time::UtcOffset::UTC).year()) => Err(
            RosterError::validation(path, "not a valid DATE_TIME: year 0001 to 9999"),
        ),
        other => other
            .to_json()
            .ok_or_else(|| RosterError::validation(path, "a DECIMAL value must be a finite number")),
    }
}

/// people.md §8: a custom attribute value, checked (string length, finite numbers, date range,
/// list-of-objects homogeneity and size) and encoded.
pub(crate) fn custom_value_json(v: &CustomValue, path: &str) -> Result<Value, RosterError> {
    let CustomValue::ListOfObjects(items) = v else {
        let scalar = match v {
            CustomValue::String(s) => ScalarValue::String(s.clone()),
            CustomValue::Decimal(f) => ScalarValue::Decimal(*f),
            CustomValue::Boolean(b) => ScalarValue::Boolean(*b),
            CustomValue::Date(d) => ScalarValue::Date(*d),
            CustomValue::DateTime(t) => ScalarValue::DateTime(*t),
            CustomValue::ListOfObjects(_) => unreachable!("handled above"),
        };
        return scalar_json(&scalar, path);
    };
    // Homogeneity: every item has the keys of the first, with the same value kinds (a
    // list-of-objects attribute has one object schema).
    let schema: Option<Vec<(&String, &'static str)>> = items
        .first()
        .map(|first| first.iter().map(|(k, v)| (k, v.kind())).collect());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        if item.is_empty() {
            return Err(RosterError::validation(
                item_path,
                "a list item needs at least one field",
            ));
        }
        let schema = schema.as_ref().expect("items is not empty");
        for (k, kind) in schema {
            match item.get(*k) {
                None => {
                    return Err(RosterError::validation(
                        format!("{item_path}.{k}"),
                        format!("missing key '{k}': every item must have the keys of the first"),
                    ));
                }
                Some(v) if v.kind() != *kind => {
                    return Err(RosterError::validation(
                        format!("{item_path}.{k}"),
                        format!("expected {kind} like the first item, got {}", v.kind()),
                    ));
                }
                Some(_) => {}
            }
        }
        let mut m = Map::new();
        for (k, v) in item {
            let field_path = format!("{item_path}.{k}");
            if !schema.iter().any(|(s, _)| *s == k) {
                return Err(RosterError::validation(
                    field_path,
                    format!("unexpected key '{k}': every item must have the keys of the first"),
                ));
            }
            check_attribute_name(k, &field_path).map_err(model_err)?;
            m.insert(k.clone(), scalar_json(v, &field_path)?);
        }
        out.push(Value::Object(m));
    }
    let out = Value::Array(out);
    let compact = serde_json::to_string(&out).expect("JSON always serialises");
    if compact.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
        return Err(RosterError::validation(
            path,
            format!("a LIST_OF_OBJECTS value must be at most {MAX_ATTRIBUTE_VALUE_CHARS} characters of compact JSON"),
        ));
    }
    Ok(out)
}

/// The `customAttributes` member of a change, checked against the local view's attributes
/// (`view_attrs`): names, values, and at most 250 attributes after the change.
fn attributes_change(
    clear: bool,
    changes: &BTreeMap<String, AttributeChange>,
    view_attrs: &JsonMap,
    path: &str,
) -> Result<Option<Value>, RosterError> {
    if !clear && changes.is_empty() {
        return Ok(None);
    }
    let mut after: JsonMap = if clear { Map::new() } else { view_attrs.clone() };
    let mut member = Map::new();
    if clear && !changes.values().any(|c| matches!(c, AttributeChange::Set(_))) {
        for name in changes.keys() {
            check_attribute_name(name, &format!("{path}.{name}")).map_err(model_err)?;
        }
        return Ok(Some(Value::Null));
    }
    if clear {
        for k in view_attrs.keys() {
            member.insert(k.clone(), Value::Null);
        }
    }
    for (name, change) in changes {
        let key_path = format!("{path}.{name}");
        check_attribute_name(name, &key_path).map_err(model_err)?;
        match change {
            AttributeChange::Set(v) => {
                let j = custom_value_json(v, &key_path)?;
                after.insert(name.clone(), j.clone());
                member.insert(name.clone(), j);
            }
            AttributeChange::Delete => {
                after.remove(name);
                member.insert(name.clone(), Value::Null);
            }
        }
    }
    if after.len() > MAX_CUSTOM_ATTRIBUTES {
        return Err(RosterError::validation(
            path,
            format!("at most {MAX_CUSTOM_ATTRIBUTES} custom attributes are allowed"),
        ));
    }
    Ok(Some(Value::Object(member)))
}

impl UserChanges {
    /// The PATCH-shaped JSON of these changes, validated in the server's order (people.md §6.1).
    pub(crate) fn to_patch(&self, view_attrs: &JsonMap) -> Result<JsonMap, RosterError> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put(
            "externalUserId",
            string_change(
                &self.external_user_id,
                "externalUserId",
                ext_null,
                check_external_user_id,
            )?,
        );
        put(
            "firstName",
            string_change(&self.first_name, "firstName", no_null, |s, p| {
                check_max_chars(s, MAX_FIRST_LAST_NAME, p)
            })?,
        );
        put(
            "middleName",
            string_change(&self.middle_name, "middleName", no_null, |s, p| {
                check_max_chars(s, MAX_MIDDLE_NAME, p)
            })?,
        );
        put(
            "lastName",
            string_change(&self.last_name, "lastName", no_null, |s, p| {
                check_max_chars(s, MAX_FIRST_LAST_NAME, p)
            })?,
        );
        put(
            "gender",
            match &self.gender {
                FieldChange::Unchanged => None,
                FieldChange::Clear => Some(Value::Null),
                FieldChange::Set(g) => Some(Value::String(g.as_str().to_string())),
            },
        );
        put(
            "birthday",
            match &self.birthday {
                FieldChange::Unchanged => None,
                FieldChange::Clear => Some(Value::Null),
                FieldChange::Set(d) => Some(birthday_json(d, "birthday")?),
            },
        );
        put("phones", list_change(&self.phones, |l| phones_json(l, "phones"))?);
        put("emails", list_change(&self.emails, |l| emails_json(l, "emails"))?);
        put(
            "tags",
            match &self.tags {
                FieldChange::Unchanged => None,
                FieldChange::Clear => Some(Value::Null),
                FieldChange::Set(t) if t.is_empty() => Some(Value::Null),
                FieldChange::Set(t) => Some(Value::Array(tags_json(t, "tags")?)),
            },
        );
        put(
            ATTRS,
            attributes_change(self.clear_custom_attributes, &self.custom_attributes, view_attrs, ATTRS)?,
        );
        Ok(m)
    }
}

/// A list field; an empty list clears (sent as `null`).
fn list_change(
    f: &FieldChange<Vec<String>>,
    encode: impl Fn(&[String]) -> Result<Vec<Value>, RosterError>,
) -> Result<Option<Value>, RosterError> {
    Ok(match f {
        FieldChange::Unchanged => None,
        FieldChange::Clear => Some(Value::Null),
        FieldChange::Set(l) => {
            let v = encode(l)?;
            if v.is_empty() {
                Some(Value::Null)
            } else {
                Some(Value::Array(v))
            }
        }
    })
}

impl InstallationChanges {
    /// The PATCH-shaped JSON of these changes, validated (mobile-api.md §4.1).
    pub(crate) fn to_patch(&self, view_attrs: &JsonMap) -> Result<JsonMap, RosterError> {
        let mut m = Map::new();
        let bool_change = |f: &FieldChange<bool>| match f {
            FieldChange::Unchanged => None,
            FieldChange::Clear => Some(Value::Null),
            FieldChange::Set(b) => Some(Value::Bool(*b)),
        };
        if let Some(v) = bool_change(&self.reg_enabled) {
            m.insert("regEnabled".into(), v);
        }
        if let Some(v) = bool_change(&self.is_primary) {
            m.insert("isPrimary".into(), v);
        }
        if let Some(v) = string_change(
            &self.application_user_id,
            "applicationUserId",
            no_null,
            check_application_user_id,
        )? {
            m.insert("applicationUserId".into(), v);
        }
        if let Some(v) = attributes_change(self.clear_custom_attributes, &self.custom_attributes, view_attrs, ATTRS)? {
            m.insert(ATTRS.into(), v);
        }
        Ok(m)
    }
}

/// The body of a personalize (mobile-api.md §4.3), validated: identity first (at least one key,
/// formats), then the attributes.
pub(crate) fn personalize_body(
    identity: &UserIdentity,
    attributes: Option<&UserAttributes>,
) -> Result<Value, RosterError> {
    let mut id = Map::new();
    if let Some(ext) = &identity.external_user_id
        && !ext_null(ext)
    {
        check_external_user_id(ext, "userIdentity.externalUserId").map_err(model_err)?;
        id.insert("externalUserId".into(), Value::String(ext.clone()));
    }
    let phones = phones_json(&identity.phones, "userIdentity.phones")?;
    if !phones.is_empty() {
        id.insert("phones".into(), Value::Array(phones));
    }
    let emails = emails_json(&identity.emails, "userIdentity.emails")?;
    if !emails.is_empty() {
        id.insert("emails".into(), Value::Array(emails));
    }
    if id.is_empty() {
        return Err(RosterError::validation(
            "userIdentity",
            "at least one of externalUserId, phones and emails must be set",
        ));
    }
    let mut body = Map::new();
    body.insert("userIdentity".into(), Value::Object(id));
    if let Some(a) = attributes {
        let p = "userAttributes";
        let mut m = Map::new();
        let mut text = |name: &str, v: &Option<String>, max: usize| -> Result<(), RosterError> {
            if let Some(s) = v
                && !s.is_empty()
            {
                check_max_chars(s, max, &join(p, name)).map_err(model_err)?;
                m.insert(name.into(), Value::String(s.clone()));
            }
            Ok(())
        };
        text("firstName", &a.first_name, MAX_FIRST_LAST_NAME)?;
        text("middleName", &a.middle_name, MAX_MIDDLE_NAME)?;
        text("lastName", &a.last_name, MAX_FIRST_LAST_NAME)?;
        if let Some(g) = a.gender {
            m.insert("gender".into(), Value::String(g.as_str().into()));
        }
        if let Some(d) = &a.birthday {
            m.insert("birthday".into(), birthday_json(d, &join(p, "birthday"))?);
        }
        if !a.tags.is_empty() {
            m.insert("tags".into(), Value::Array(tags_json(&a.tags, &join(p, "tags"))?));
        }
        if !a.custom_attributes.is_empty() {
            let changes: BTreeMap<String, AttributeChange> = a
                .custom_attributes
                .iter()
                .map(|(k, v)| (k.clone(), AttributeChange::Set(v.clone())))
                .collect();
            if let Some(v) = attributes_change(false, &changes, &Map::new(), &join(p, ATTRS))? {
                m.insert(ATTRS.into(), v);
            }
        }
        if !m.is_empty() {
            body.insert("userAttributes".into(), Value::Object(m));
        }
    }
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::{date, datetime};

    fn field(e: RosterError) -> String {
        match e {
            RosterError::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn user_changes_encode_with_nulls() {
        let mut c = UserChanges {
            first_name: FieldChange::Set("Ana".into()),
            last_name: FieldChange::Clear,
            middle_name: FieldChange::Set(String::new()),
            external_user_id: FieldChange::Set("NULL".into()),
            gender: FieldChange::Set(Gender::Female),
            birthday: FieldChange::Set(date!(1990 - 05 - 17)),
            phones: FieldChange::Set(vec!["+385 91 123 4567".into(), "385911234567".into()]),
            emails: FieldChange::Set(vec![" Ana@Example.com ".into(), "ana@example.com".into()]),
            tags: FieldChange::Set(BTreeSet::new()),
            ..Default::default()
        };
        c.set_custom_attribute("tier", "gold")
            .set_custom_attribute("points", 120)
            .set_custom_attribute("seen", datetime!(2020-02-26 09:41:57.5 UTC))
            .delete_custom_attribute("old");
        let p = c.to_patch(&Map::new()).unwrap();
        assert_eq!(
            Value::Object(p),
            json!({"externalUserId": null, "firstName": "Ana", "middleName": null, "lastName": null,
                "gender": "Female", "birthday": "1990-05-17", "phones": [{"number": "385911234567"}],
                "emails": [{"address": "Ana@Example.com"}], "tags": null,
                "customAttributes": {"old": null, "points": 120, "seen": "2020-02-26T09:41:57Z", "tier": "gold"}})
        );
    }

    #[test]
    fn validation_names_the_field() {
        let c = UserChanges {
            emails: FieldChange::Set(vec!["ok@example.com".into(), "not an email".into()]),
            ..Default::default()
        };
        assert_eq!(field(c.to_patch(&Map::new()).unwrap_err()), "emails[1].address");
        let c = UserChanges {
            phones: FieldChange::Set(vec!["12".into()]),
            ..Default::default()
        };
        assert_eq!(field(c.to_patch(&Map::new()).unwrap_err()), "phones[0].number");
        let c = UserChanges {
            middle_name: FieldChange::Set("x".repeat(51)),
            ..Default::default()
        };
        assert_eq!(field(c.to_patch(&Map::new()).unwrap_err()), "middleName");
        let mut c = UserChanges::new();
        c.set_custom_attribute("$bad", 1);
        assert_eq!(field(c.to_patch(&Map::new()).unwrap_err()), "customAttributes.$bad");
        let mut c = UserChanges::new();
        c.set_custom_attribute("n", f64::INFINITY);
        assert_eq!(field(c.to_patch(&Map::new()).unwrap_err()), "customAttributes.n");
        // Count after the change.
        let view: JsonMap = (0..250).map(|i| (format!("a{i}"), json!(1))).collect();
        let mut c = UserChanges::new();
        c.set_custom_attribute("one-more", 1);
        assert_eq!(field(c.to_patch(&view).unwrap_err()), "customAttributes");
        let mut c = UserChanges::new();
        c.delete_custom_attribute("a1").set_custom_attribute("one-more", 1);
        assert!(c.to_patch(&view).is_ok());
    }

    #[test]
    fn lists_of_objects_must_be_homogeneous() {
        let item = |sku: &str, price: ScalarValue| -> BTreeMap<String, ScalarValue> {
            [
                ("sku".to_string(), ScalarValue::String(sku.into())),
                ("price".to_string(), price),
            ]
            .into_iter()
            .collect()
        };
        let ok = CustomValue::ListOfObjects(vec![
            item("A", ScalarValue::Decimal(1.5)),
            item("B", ScalarValue::Decimal(2.0)),
        ]);
        assert_eq!(
            custom_value_json(&ok, "customAttributes.orders").unwrap(),
            json!([{"price": 1.5, "sku": "A"}, {"price": 2, "sku": "B"}])
        );
        let bad = CustomValue::ListOfObjects(vec![
            item("A", ScalarValue::Decimal(1.5)),
            item("B", ScalarValue::String("2".into())),
        ]);
        assert_eq!(
            field(custom_value_json(&bad, "customAttributes.orders").unwrap_err()),
            "customAttributes.orders[1].price"
        );
        let mut extra = item("C", ScalarValue::Decimal(1.0));
        extra.insert("color".into(), ScalarValue::String("red".into()));
        let bad = CustomValue::ListOfObjects(vec![item("A", ScalarValue::Decimal(1.5)), extra]);
        assert_eq!(
            field(custom_value_json(&bad, "customAttributes.orders").unwrap_err()),
            "customAttributes.orders[1].color"
        );
    }

    #[test]
    fn clear_all_then_set() {
        let view = crate::json::obj(json!({"a": 1, "b": 2}));
        let mut c = InstallationChanges::new();
        c.clear_all_custom_attributes();
        assert_eq!(
            Value::Object(c.to_patch(&view).unwrap()),
            json!({"customAttributes": null})
        );
        c.set_custom_attribute("c", true);
        assert_eq!(
            Value::Object(c.to_patch(&view).unwrap()),
            json!({"customAttributes": {"a": null, "b": null, "c": true}})
        );
    }

    #[test]
    fn personalize_bodies() {
        let e = personalize_body(&UserIdentity::default(), None).unwrap_err();
        assert_eq!(field(e), "userIdentity");
        let e = personalize_body(&UserIdentity::external("null"), None).unwrap_err();
        assert_eq!(field(e), "userIdentity");
        let b = personalize_body(
            &UserIdentity {
                external_user_id: Some("cust-1".into()),
                emails: vec!["a@b.c".into()],
                ..Default::default()
            },
            Some(&UserAttributes {
                first_name: Some("Ana".into()),
                custom_attributes: [("tier".to_string(), CustomValue::from("gold"))].into_iter().collect(),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(
            b,
            json!({"userIdentity": {"externalUserId": "cust-1", "emails": [{"address": "a@b.c"}]},
                "userAttributes": {"firstName": "Ana", "customAttributes": {"tier": "gold"}}})
        );
    }
}
