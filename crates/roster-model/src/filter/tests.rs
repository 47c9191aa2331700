//! Unit tests of the filter language: parsing errors at their paths, and the evaluation of every
//! kind and operator of management-api.md §4.4 (including the absent-value rules).

use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::domain::{DefinitionOrigin, PersonType, PushServiceType, SystemData};

fn def(scope: AttributeScope, name: &str, attr_type: AttributeType) -> AttributeDefinition {
    AttributeDefinition {
        account_id: Uuid::nil(),
        scope,
        name: name.to_string(),
        attr_type,
        object_schema: None,
        origin: DefinitionOrigin::Api,
        created_at: 0,
    }
}

fn defs() -> Vec<AttributeDefinition> {
    let mut orders = def(AttributeScope::Person, "orders", AttributeType::ListOfObjects);
    orders.object_schema = Some(vec![
        SchemaField {
            name: "sku".into(),
            field_type: AttributeType::String,
        },
        SchemaField {
            name: "price".into(),
            field_type: AttributeType::Decimal,
        },
    ]);
    vec![
        def(AttributeScope::Person, "DeviceType", AttributeType::String),
        def(AttributeScope::Person, "loyaltyPoints", AttributeType::Decimal),
        def(AttributeScope::Person, "vipSince", AttributeType::Date),
        def(AttributeScope::Person, "lastOrderAt", AttributeType::DateTime),
        def(AttributeScope::Person, "subscribed", AttributeType::Boolean),
        def(AttributeScope::Person, "tags", AttributeType::String),
        def(AttributeScope::Installation, "theme", AttributeType::String),
        orders,
    ]
}

fn person() -> Person {
    let mut p = Person::new_anonymous(Uuid::nil(), 0);
    p.external_user_id = Some("cust-1001".into());
    p.first_name = Some("Ana".into());
    p.gender = Some(crate::domain::Gender::Female);
    p.birthday = Some("1995-06-15".into());
    p.phones = vec!["385911234567".into()];
    p.emails = vec!["Ana@Example.com".into()];
    p.tags = ["vip".to_string(), "beta".to_string()].into_iter().collect();
    p.person_type = PersonType::Customer;
    p.custom_attributes.insert("DeviceType".into(), json!("personal"));
    p.custom_attributes.insert("loyaltyPoints".into(), json!(150));
    p.custom_attributes.insert("vipSince".into(), json!("2024-01-31"));
    p.custom_attributes
        .insert("lastOrderAt".into(), json!("2025-03-01T10:00:00Z"));
    p.custom_attributes.insert("subscribed".into(), json!(true));
    p.custom_attributes.insert("tags".into(), json!("shadow"));
    p.custom_attributes.insert(
        "orders".into(),
        json!([{"sku": "A1", "price": 12.5}, {"sku": "B2", "price": 3}]),
    );
    p
}

fn installation() -> Installation {
    Installation {
        account_id: Uuid::nil(),
        application_id: Uuid::nil(),
        push_reg_id: "0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64".into(),
        person_id: Uuid::nil(),
        push_service_type: Some(PushServiceType::Apns),
        push_service_token: Some("abc".into()),
        reg_enabled: true,
        is_primary: true,
        application_user_id: None,
        custom_attributes: [("theme".to_string(), json!("dark"))].into_iter().collect(),
        system: SystemData {
            os: Some("iOS".into()),
            os_version: Some("17.4.1".into()),
            app_version: Some("3.10".into()),
            notifications_enabled: Some(true),
            ..SystemData::default()
        },
        created_at: 1_735_689_600_000, // 2025-01-01T00:00:00Z
        updated_at: 1_735_689_600_000,
        last_seen_at: 1_735_689_600_000,
        token_cleared_at: None,
        token_cleared_reason: None,
    }
}

fn parse(v: Value) -> Filter {
    Filter::parse(&v, &defs(), "filter").unwrap_or_else(|e| panic!("{v} should parse: {e:?}"))
}

fn errors(v: Value) -> Vec<FilterError> {
    match Filter::parse(&v, &defs(), "filter") {
        Ok(f) => panic!("{v} should be refused, parsed as {f:?}"),
        Err(e) => e,
    }
}

/// Evaluates on the fixture pair.
fn on_pair(v: Value) -> bool {
    parse(v).matches(&person(), Some(&installation()))
}

#[track_caller]
fn check(cases: &[(Value, bool)]) {
    for (filter, expected) in cases {
        assert_eq!(on_pair(filter.clone()), *expected, "filter {filter}");
    }
}

#[test]
fn structure() {
    assert!(parse(json!({})).is_all());
    check(&[
        (json!({}), true),
        (json!({"tags": "vip", "installation.os": "iOS"}), true),
        (json!({"tags": "vip", "installation.os": "Android"}), false),
        (json!({"$and": [{"tags": "vip"}, {"tags": "beta"}]}), true),
        (json!({"$or": [{"tags": "nope"}, {"DeviceType": "personal"}]}), true),
        (json!({"$or": [{"tags": "nope"}, {"DeviceType": "work"}]}), false),
        (json!({"$not": {"tags": "vip"}}), false),
        (json!({"$not": {"emails": {"$exists": true}}}), false),
    ]);
}

#[test]
fn strings() {
    check(&[
        (json!({"firstName": "Ana"}), true),
        (json!({"firstName": "ana"}), false), // exact
        (json!({"firstName": {"$ne": "Bo"}}), true),
        (json!({"middleName": {"$ne": "Bo"}}), true), // absent: $ne holds
        (json!({"middleName": "Bo"}), false),
        (json!({"middleName": {"$nin": ["Bo"]}}), true),
        (json!({"middleName": {"$exists": false}}), true),
        (json!({"firstName": {"$in": ["Bo", "Ana"]}}), true),
        (json!({"firstName": {"$startsWith": "AN"}}), true),
        (json!({"firstName": {"$contains": "N"}}), true),
        (json!({"middleName": {"$startsWith": ""}}), false), // absent
        (
            json!({"installation.pushRegId": "0B9E2F8A-6C1D-4A3E-9F7B-5D2C1E0A8B64"}),
            true,
        ),
        (json!({"customAttributes.DeviceType": "personal"}), true),
        (json!({"DeviceType": {"$exists": true}}), true),
    ]);
}

#[test]
fn shadowing_custom_attribute_only_through_prefix() {
    // `tags` is the standard field; the custom attribute named `tags` needs the prefix.
    check(&[
        (json!({"tags": "shadow"}), false),
        (json!({"customAttributes.tags": "shadow"}), true),
    ]);
}

#[test]
fn enums() {
    check(&[
        (json!({"gender": "Female"}), true),
        (json!({"type": "CUSTOMER"}), true),
        (json!({"type": {"$in": ["LEAD"]}}), false),
        (json!({"installation.pushServiceType": "APNS"}), true),
        (json!({"installation.pushServiceType": {"$ne": "Firebase"}}), true),
    ]);
    let e = errors(json!({"gender": "female"}));
    assert_eq!(e[0].path, "filter.gender");
}

#[test]
fn decimals() {
    check(&[
        (json!({"loyaltyPoints": 150}), true),
        (json!({"loyaltyPoints": 150.0}), true),
        (json!({"loyaltyPoints": {"$gte": 100, "$lt": 200}}), true),
        (json!({"loyaltyPoints": {"$gt": 150}}), false),
        (json!({"loyaltyPoints": {"$in": [1, 150]}}), true),
        (json!({"customAttributes.loyaltyPoints": {"$lte": 149.99}}), false),
    ]);
    assert!(!parse(json!({"loyaltyPoints": {"$gt": 0}})).matches(&Person::new_anonymous(Uuid::nil(), 0), None));
    assert_eq!(errors(json!({"loyaltyPoints": "150"}))[0].path, "filter.loyaltyPoints");
}

#[test]
fn booleans() {
    check(&[
        (json!({"subscribed": true}), true),
        (json!({"subscribed": {"$ne": true}}), false),
        (json!({"installation.regEnabled": true}), true),
        (json!({"installation.isPrimary": false}), false),
        (json!({"installation.hasPushServiceToken": true}), true),
        (json!({"installation.deviceSecure": {"$exists": false}}), true),
        (json!({"installation.notificationsEnabled": true}), true),
    ]);
    assert_eq!(
        errors(json!({"subscribed": {"$gt": true}}))[0].message,
        "operator $gt is not allowed for a BOOLEAN field"
    );
}

#[test]
fn dates_and_date_times() {
    check(&[
        (json!({"birthday": {"$gte": "1990-01-01", "$lt": "2000-01-01"}}), true),
        (json!({"birthday": "1995-06-15"}), true),
        (json!({"vipSince": {"$lt": "2024-02-01"}}), true),
        (json!({"lastOrderAt": {"$gt": "2025-03-01T09:59:59Z"}}), true),
        (json!({"lastOrderAt": "2025-03-01T10:00:00.999+00:00"}), true), // fraction truncated
        (
            json!({"installation.createdAt": {"$gte": "2025-01-01T00:00:00Z"}}),
            true,
        ),
        (
            json!({"installation.createdAt": {"$gt": "2025-01-01T00:00:00Z"}}),
            false,
        ),
        (
            json!({"installation.lastSeenAt": {"$lt": "2024-12-31T23:59:59Z"}}),
            false,
        ),
    ]);
    assert_eq!(errors(json!({"birthday": "1995-6-15"}))[0].path, "filter.birthday");
    assert_eq!(
        errors(json!({"lastOrderAt": {"$gt": "2025-03-01"}}))[0].path,
        "filter.lastOrderAt.$gt"
    );
}

#[test]
fn versions() {
    check(&[
        (json!({"installation.appVersion": {"$gte": "3.2"}}), true), // 3.10 > 3.2
        (json!({"installation.appVersion": {"$gt": "3.9.5"}}), true),
        (json!({"installation.appVersion": "3.10"}), true),
        (json!({"installation.appVersion": "3.10.0"}), false), // $eq is exact
        (json!({"installation.osVersion": {"$startsWith": "17."}}), true),
        (json!({"installation.sdkVersion": {"$gt": "1"}}), false), // absent
    ]);
    use std::cmp::Ordering::*;
    assert_eq!(compare_versions("2.10", "2.9.5"), Some(Greater));
    assert_eq!(compare_versions("3", "3.0.0"), Some(Equal));
    assert_eq!(compare_versions("3.1-beta", "3.1"), Some(Equal));
    assert_eq!(compare_versions("1.", "1.0"), Some(Equal));
    assert_eq!(compare_versions("beta", "1"), None);
    assert_eq!(
        compare_versions("99999999999999999999999999999999999999999", "1"),
        Some(Greater)
    );
}

#[test]
fn multi_valued_fields() {
    check(&[
        (json!({"tags": {"$all": ["vip", "beta"]}, "type": "CUSTOMER"}), true),
        (json!({"tags": {"$all": ["vip", "gamma"]}}), false),
        (json!({"tags": {"$in": ["gamma", "beta"]}}), true),
        (json!({"tags": {"$nin": ["gamma"]}}), true),
        (json!({"tags": {"$nin": ["vip"]}}), false),
        (json!({"tags": {"$startsWith": "VI"}}), true),
        (json!({"emails": "ana@example.COM"}), true),
        (json!({"emails": {"$startsWith": "ANA@"}}), true),
        (json!({"phones": "+385 91 123 4567"}), true),
        (json!({"phones": {"$startsWith": "+385"}}), true),
        (json!({"phones": {"$startsWith": "(386)"}}), false),
        (json!({"phones": {"$exists": true}}), true),
    ]);
    let anon = Person::new_anonymous(Uuid::nil(), 0);
    assert!(parse(json!({"tags": {"$exists": false}})).matches(&anon, None));
    assert!(parse(json!({"tags": {"$nin": ["vip"]}})).matches(&anon, None));
    assert_eq!(errors(json!({"phones": "12"}))[0].path, "filter.phones");
    assert!(!errors(json!({"tags": {"$ne": "vip"}})).is_empty());
}

#[test]
fn lists_of_objects() {
    check(&[
        (
            json!({"orders": {"$elemMatch": {"sku": "A1", "price": {"$gt": 10}}}}),
            true,
        ),
        (
            json!({"orders": {"$elemMatch": {"sku": "B2", "price": {"$gt": 10}}}}),
            false,
        ),
        (
            json!({"orders": {"$elemMatch": {"$or": [{"sku": "Z"}, {"price": 3}]}}}),
            true,
        ),
        (json!({"orders": {"$exists": true}}), true),
    ]);
    let e = errors(json!({"orders": {"$elemMatch": {"color": "red"}}}));
    assert_eq!(e[0].path, "filter.orders.$elemMatch.color");
    let e = errors(json!({"orders": {"$elemMatch": {"sku": {"$elemMatch": {}}}}}));
    assert_eq!(e[0].path, "filter.orders.$elemMatch.sku.$elemMatch");
    assert!(!errors(json!({"orders": "A1"})).is_empty());
}

#[test]
fn installation_fields_absent_without_installation() {
    let p = person();
    assert!(!parse(json!({"installation.os": "iOS"})).matches(&p, None));
    assert!(parse(json!({"installation.os": {"$ne": "iOS"}})).matches(&p, None));
    // Installation custom attributes are reached only through `installation.customAttributes.`.
    assert!(
        errors(json!({"installation.theme": "dark"}))[0]
            .message
            .contains("unknown installation field")
    );
    assert!(parse(json!({"installation.customAttributes.theme": "dark"})).matches(&p, Some(&installation())));
    assert!(!parse(json!({"installation.customAttributes.theme": "dark"})).matches(&p, None));
    assert!(parse(json!({"installation.isPrimary": true})).uses_installation());
    assert!(!parse(json!({"tags": "vip"})).uses_installation());
}

#[test]
fn every_problem_is_reported_at_its_path() {
    let e = errors(json!({
        "$or": [{"nope": 1}, {"tags": null}],
        "$where": "1",
        "installation.color": "red",
        "firstName": {"$gt": "a"},
        "loyaltyPoints": {"$in": [1, "x", 3]},
        "tags": {"$in": []},
    }));
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "filter.$or[0].nope",
            "filter.$or[1].tags",
            "filter.$where",
            "filter.installation.color",
            "filter.firstName.$gt",
            "filter.loyaltyPoints.$in[1]",
            "filter.tags.$in",
        ]
    );
    assert!(e[0].message.contains("no person custom attribute named nope"));
    assert!(e[1].message.contains("null"));
}

#[test]
fn limits() {
    let mut deep = json!({"tags": "vip"});
    for _ in 0..10 {
        deep = json!({"$not": deep});
    }
    assert!(errors(deep)[0].message.contains("deeper than 10"));
    let mut ok = json!({"tags": "vip"});
    for _ in 0..9 {
        ok = json!({"$not": ok});
    }
    parse(ok);

    let many: Vec<Value> = (0..201).map(|i| json!({"firstName": format!("n{i}")})).collect();
    let chunks: Vec<Value> = many.chunks(100).map(|c| json!({"$or": c})).collect();
    assert!(errors(json!({"$and": chunks}))[0].message.contains("201 conditions"));

    let too_many: Vec<Value> = (0..101).map(|_| json!({})).collect();
    assert!(!errors(json!({"$or": too_many})).is_empty());
    assert!(!errors(json!({"$and": []})).is_empty());
    let big = "x".repeat(MAX_JSON_BYTES);
    assert!(errors(json!({"firstName": big}))[0].message.contains("larger than"));
    let ins: Vec<Value> = (0..1001).map(|i| json!(i)).collect();
    assert!(!errors(json!({"loyaltyPoints": {"$in": ins}})).is_empty());
}

#[test]
fn not_an_object() {
    assert_eq!(errors(json!([1]))[0].path, "filter");
    assert_eq!(errors(json!({"$not": 3}))[0].path, "filter.$not");
    assert!(!errors(json!({"firstName": {}})).is_empty());
    assert!(!errors(json!({"firstName": {"$eq": "a", "oops": 1}})).is_empty());
}
