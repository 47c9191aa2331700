//! The invariant checker of people.md §11, over a whole-store [`Snapshot`]. Tests run it after
//! every scenario; `roster check` (and the reliability scripts) run it on a live store.
//!
//! Checked here: the invariants that are properties of one committed state (1–11, 13–15, and
//! the static parts of 12, 17 and 19). Those about histories (12's "never becomes LEAD again",
//! 16, 18, 20, 21) are checked by the tests that produce the history.

use std::collections::{HashMap, HashSet};

use roster_model::{
    AttributeScope, AttributeType, CustomAttributes, PushServiceType,
    validate::{
        MAX_CUSTOM_ATTRIBUTES, MAX_EMAILS, MAX_FIRST_LAST_NAME, MAX_MIDDLE_NAME, MAX_PHONES, MAX_TAGS,
        canonical_push_reg_id, check_application_user_id, check_birthday, check_external_user_id, check_push_token,
        check_tag, email_key, is_valid_email, normalize_phone,
    },
    values::type_value,
};
use roster_store::Snapshot;
use uuid::Uuid;

/// Every violation found, as readable sentences (empty: all invariants hold).
pub fn check(s: &Snapshot) -> Vec<String> {
    let mut v = Vec::new();
    let accounts: HashSet<Uuid> = s.accounts.iter().map(|a| a.id).collect();
    let apps: HashMap<Uuid, Uuid> = s.applications.iter().map(|a| (a.id, a.account_id)).collect();
    let persons: HashMap<Uuid, &roster_model::Person> = s.persons.iter().map(|p| (p.id, p)).collect();
    let definitions: HashMap<(Uuid, AttributeScope, &str), &roster_model::AttributeDefinition> = s
        .attribute_definitions
        .iter()
        .map(|d| ((d.account_id, d.scope, d.name.as_str()), d))
        .collect();

    // 1. applications belong to an account.
    for a in &s.applications {
        if !accounts.contains(&a.account_id) {
            v.push(format!("1: application {} has no account", a.id));
        }
    }
    // 3. persons belong to an account.
    for p in &s.persons {
        if !accounts.contains(&p.account_id) {
            v.push(format!("3: person {} has no account", p.id));
        }
    }
    // 2, 4, 9, 11, 13 (tokens), 14/15 (installations).
    let mut push_reg_ids = HashSet::new();
    let mut primaries: HashMap<(Uuid, Uuid), Vec<&str>> = HashMap::new();
    let mut tokens: HashMap<(Uuid, &'static str, &str), Vec<&str>> = HashMap::new();
    let mut installations_per_person: HashMap<Uuid, usize> = HashMap::new();
    for i in &s.installations {
        let id = i.push_reg_id.as_str();
        match apps.get(&i.application_id) {
            None => v.push(format!("2: installation {id} has no application")),
            Some(acc) => {
                if *acc != i.account_id {
                    v.push(format!("2: installation {id} account differs from its application's"));
                }
                match persons.get(&i.person_id) {
                    None => v.push(format!("2: installation {id} has no person")),
                    Some(p) if p.account_id != *acc => {
                        v.push(format!("2: installation {id} person is in another account"))
                    }
                    Some(_) => {}
                }
            }
        }
        *installations_per_person.entry(i.person_id).or_default() += 1;
        if canonical_push_reg_id(id).as_deref() != Some(id) {
            v.push(format!("4: pushRegId {id} is not a lowercase UUID"));
        }
        if !push_reg_ids.insert(id) {
            v.push(format!("4: pushRegId {id} is not unique"));
        }
        if i.is_primary {
            primaries.entry((i.person_id, i.application_id)).or_default().push(id);
        }
        if let Some(t) = &i.push_service_token {
            match i.provider() {
                None => v.push(format!("11: installation {id} has a token without a type")),
                Some(p) => tokens
                    .entry((i.application_id, p.as_str(), t.as_str()))
                    .or_default()
                    .push(id),
            }
            if i.push_service_type == Some(PushServiceType::Apns) && t.to_ascii_lowercase() != *t {
                v.push(format!("13: installation {id} has an APNs token that is not lowercase"));
            }
            if check_push_token(t, "token").is_err() {
                v.push(format!("15: installation {id} has an invalid token"));
            }
        }
        if let Some(a) = &i.application_user_id
            && check_application_user_id(a, "applicationUserId").is_err()
        {
            v.push(format!("15: installation {id} applicationUserId is out of limits"));
        }
        check_attributes(
            &mut v,
            &definitions,
            i.account_id,
            AttributeScope::Installation,
            &i.custom_attributes,
            &format!("installation {id}"),
        );
        for (name, s) in [
            ("sdkVersion", &i.system.sdk_version),
            ("appVersion", &i.system.app_version),
            ("os", &i.system.os),
            ("osVersion", &i.system.os_version),
            ("deviceManufacturer", &i.system.device_manufacturer),
            ("deviceModel", &i.system.device_model),
            ("deviceName", &i.system.device_name),
            ("language", &i.system.language),
            ("deviceTimezoneOffset", &i.system.device_timezone_offset),
        ] {
            if let Some(s) = s
                && (s.is_empty() || s.chars().count() > 255)
            {
                v.push(format!("15: installation {id} {name} is empty or longer than 255"));
            }
        }
    }
    for ((person, app), ids) in &primaries {
        if ids.len() > 1 {
            v.push(format!(
                "9: person {person} has {} primary installations in application {app}: {ids:?}",
                ids.len()
            ));
        }
    }
    for ((app, provider, _), ids) in &tokens {
        if ids.len() > 1 {
            v.push(format!(
                "11: {} installations of application {app} hold the same {provider} token: {ids:?}",
                ids.len()
            ));
        }
    }

    // 5–8, 10, 12, 13, 14, 15 for persons.
    let mut ext_owner: HashMap<(Uuid, &str), Uuid> = HashMap::new();
    let mut phone_owner: HashMap<(Uuid, &str), Uuid> = HashMap::new();
    let mut email_owner: HashMap<(Uuid, String), Uuid> = HashMap::new();
    for p in &s.persons {
        let who = format!("person {}", p.id);
        if let Some(e) = &p.external_user_id {
            if check_external_user_id(e, "externalUserId").is_err() {
                v.push(format!("15: {who} externalUserId is out of limits"));
            }
            if let Some(other) = ext_owner.insert((p.account_id, e), p.id) {
                v.push(format!("5: persons {other} and {} share an externalUserId", p.id));
            }
        }
        let mut own_phones = HashSet::new();
        for n in &p.phones {
            if normalize_phone(n).as_deref() != Ok(n.as_str()) {
                v.push(format!("13: {who} has a phone that is not normalised E.164"));
            }
            if !own_phones.insert(n) {
                v.push(format!("8: {who} has a duplicate phone"));
            }
            if let Some(other) = phone_owner.insert((p.account_id, n), p.id)
                && other != p.id
            {
                v.push(format!("6: persons {other} and {} share a phone", p.id));
            }
        }
        let mut own_emails = HashSet::new();
        for e in &p.emails {
            if !is_valid_email(e) || e.chars().count() > 255 {
                v.push(format!("13: {who} has an invalid email"));
            }
            let k = email_key(e);
            if !own_emails.insert(k.clone()) {
                v.push(format!("8: {who} has duplicate emails"));
            }
            if let Some(other) = email_owner.insert((p.account_id, k), p.id)
                && other != p.id
            {
                v.push(format!("7: persons {other} and {} share an email", p.id));
            }
        }
        if p.is_anonymous() && installations_per_person.get(&p.id).copied().unwrap_or(0) == 0 {
            v.push(format!("10: {who} is anonymous and owns no installation"));
        }
        if p.phones.len() > MAX_PHONES || p.emails.len() > MAX_EMAILS || p.tags.len() > MAX_TAGS {
            v.push(format!("15: {who} has too many phones, emails or tags"));
        }
        for t in &p.tags {
            if check_tag(t, "tag").is_err() {
                v.push(format!("15: {who} has a tag out of limits"));
            }
        }
        for (name, value, max) in [
            ("firstName", &p.first_name, MAX_FIRST_LAST_NAME),
            ("middleName", &p.middle_name, MAX_MIDDLE_NAME),
            ("lastName", &p.last_name, MAX_FIRST_LAST_NAME),
        ] {
            if let Some(s) = value
                && (s.is_empty() || s.chars().count() > max)
            {
                v.push(format!("15: {who} {name} is empty or too long"));
            }
        }
        if let Some(b) = &p.birthday
            && check_birthday(b, "birthday").is_err()
        {
            v.push(format!("15: {who} birthday is invalid"));
        }
        if p.version < 1 {
            v.push(format!("20: {who} has version {}", p.version));
        }
        check_attributes(
            &mut v,
            &definitions,
            p.account_id,
            AttributeScope::Person,
            &p.custom_attributes,
            &who,
        );
    }

    // 19 (static part): a reversed entry says when and by whom.
    for e in &s.merge_log {
        if e.status == roster_model::MergeStatus::Reversed && e.reversed_at.is_none() {
            v.push(format!("19: merge {} is REVERSED without reversedAt", e.id));
        }
    }
    v
}

/// Invariant 14 (and 15's count): every stored custom attribute has a definition of its scope
/// and conforms to it.
fn check_attributes(
    v: &mut Vec<String>,
    definitions: &HashMap<(Uuid, AttributeScope, &str), &roster_model::AttributeDefinition>,
    account: Uuid,
    scope: AttributeScope,
    attributes: &CustomAttributes,
    who: &str,
) {
    if attributes.len() > MAX_CUSTOM_ATTRIBUTES {
        v.push(format!(
            "15: {who} has more than {MAX_CUSTOM_ATTRIBUTES} custom attributes"
        ));
    }
    for (name, value) in attributes {
        match definitions.get(&(account, scope, name.as_str())) {
            None => v.push(format!(
                "14: {who} attribute {name} has no {} definition",
                scope.as_str()
            )),
            Some(d) => {
                let schema = d.object_schema.as_deref();
                match type_value(d.attr_type, schema, value, name) {
                    Ok(canonical) if canonical == *value => {}
                    Ok(_) => v.push(format!("14: {who} attribute {name} is not in canonical form")),
                    Err(e) => v.push(format!(
                        "14: {who} attribute {name} does not fit its {} definition: {}",
                        d.attr_type.as_str(),
                        e.text
                    )),
                }
                if d.attr_type == AttributeType::ListOfObjects && schema.is_none() {
                    v.push(format!("14: definition {name} is a list without a schema"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The checker must find each violation it claims to check: every test run relies on it.
    use super::*;
    use roster_model::{
        Account, Application, AttributeDefinition, DefinitionOrigin, Installation, Person, PushServiceType, SystemData,
    };
    use serde_json::json;

    fn valid() -> Snapshot {
        let account = Account {
            id: Uuid::new_v4(),
            name: "a".into(),
            created_at: 0,
        };
        let app = Application {
            account_id: account.id,
            id: Uuid::new_v4(),
            name: "app".into(),
            application_code: "0".repeat(64),
            enabled: true,
            require_jwt_for_user_data: false,
            restrict_user_data_from_sdk: false,
            providers: json!({}),
            created_at: 0,
            updated_at: 0,
        };
        let mut person = Person::new_anonymous(account.id, 0);
        person.external_user_id = Some("u1".into());
        person.phones = vec!["385911234567".into()];
        person.emails = vec!["Ana@Example.com".into()];
        person.custom_attributes.insert("n".into(), json!(1));
        let inst = |token: &str| Installation {
            account_id: account.id,
            application_id: app.id,
            push_reg_id: Uuid::new_v4().to_string(),
            person_id: person.id,
            push_service_type: Some(PushServiceType::Apns),
            push_service_token: Some(token.into()),
            reg_enabled: true,
            is_primary: false,
            application_user_id: None,
            custom_attributes: Default::default(),
            system: SystemData::default(),
            created_at: 0,
            updated_at: 0,
            last_seen_at: 0,
            token_cleared_at: None,
            token_cleared_reason: None,
        };
        let definition = AttributeDefinition {
            account_id: account.id,
            scope: AttributeScope::Person,
            name: "n".into(),
            attr_type: AttributeType::Decimal,
            object_schema: None,
            origin: DefinitionOrigin::Auto,
            created_at: 0,
        };
        Snapshot {
            installations: vec![inst("aa"), inst("bb")],
            accounts: vec![account],
            applications: vec![app],
            persons: vec![person],
            attribute_definitions: vec![definition],
            ..Snapshot::default()
        }
    }

    /// Asserts that `break_it` makes the checker report invariant `n`.
    fn finds(n: u32, break_it: impl FnOnce(&mut Snapshot)) {
        let mut s = valid();
        break_it(&mut s);
        let found = check(&s);
        assert!(
            found.iter().any(|v| v.starts_with(&format!("{n}:"))),
            "invariant {n} not reported; got {found:?}"
        );
    }

    #[test]
    fn a_valid_store_has_no_violations() {
        assert_eq!(check(&valid()), Vec::<String>::new());
    }

    #[test]
    fn each_violation_is_found() {
        finds(1, |s| s.applications[0].account_id = Uuid::new_v4());
        finds(2, |s| s.installations[0].person_id = Uuid::new_v4());
        finds(3, |s| s.persons[0].account_id = Uuid::new_v4());
        finds(4, |s| {
            s.installations[0].push_reg_id = s.installations[0].push_reg_id.to_uppercase()
        });
        finds(4, |s| {
            s.installations[1].push_reg_id = s.installations[0].push_reg_id.clone()
        });
        finds(5, |s| {
            let mut twin = s.persons[0].clone();
            twin.id = Uuid::new_v4();
            twin.phones.clear();
            twin.emails.clear();
            s.persons.push(twin);
        });
        finds(6, |s| {
            let mut twin = s.persons[0].clone();
            twin.id = Uuid::new_v4();
            twin.external_user_id = None;
            twin.emails.clear();
            s.persons.push(twin);
        });
        finds(7, |s| {
            let mut twin = s.persons[0].clone();
            twin.id = Uuid::new_v4();
            twin.external_user_id = None;
            twin.phones.clear();
            twin.emails = vec!["ana@example.COM".into()];
            s.persons.push(twin);
        });
        finds(8, |s| s.persons[0].phones.push("385911234567".into()));
        finds(8, |s| s.persons[0].emails.push("ANA@example.com".into()));
        finds(9, |s| {
            s.installations[0].is_primary = true;
            s.installations[1].is_primary = true;
        });
        finds(10, |s| {
            let mut lonely = Person::new_anonymous(s.accounts[0].id, 0);
            lonely.first_name = Some("nobody".into());
            s.persons.push(lonely);
        });
        finds(11, |s| s.installations[1].push_service_token = Some("aa".into()));
        finds(13, |s| s.installations[0].push_service_token = Some("AA".into()));
        finds(13, |s| s.persons[0].phones = vec!["+385911234567".into()]);
        finds(13, |s| s.persons[0].emails = vec!["not an email".into()]);
        finds(14, |s| {
            s.persons[0].custom_attributes.insert("undefined".into(), json!(true));
        });
        finds(14, |s| {
            s.persons[0].custom_attributes.insert("n".into(), json!("one"));
        });
        finds(14, |s| s.attribute_definitions[0].scope = AttributeScope::Installation);
        finds(15, |s| s.persons[0].middle_name = Some("m".repeat(51)));
        finds(15, |s| s.persons[0].tags = (0..101).map(|i| i.to_string()).collect());
        finds(15, |s| s.installations[0].system.os = Some("x".repeat(256)));
        finds(20, |s| s.persons[0].version = 0);
    }
}
