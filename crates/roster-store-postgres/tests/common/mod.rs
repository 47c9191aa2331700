//! Fixtures shared by the PostgreSQL store tests: a fresh database per test, and domain values.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::{BTreeMap, BTreeSet};

use roster_model::{Account, Application, Gender, Installation, Person, PersonType, PushServiceType, SystemData};
use roster_store::{Constraint, Store, StoreError};
use roster_store_postgres::testing::{TestDbGuard, fresh_test_database, test_base_url};
use roster_store_postgres::{PgStore, PgStoreOptions};
use serde_json::json;
use uuid::Uuid;

/// A migrated store on a database of its own, and the guard that drops the database; `None`
/// (after printing SKIPPED) without `ROSTER_TEST_POSTGRES_URL`. Bind it as `(_db, store)` so
/// that the store is dropped before its database.
pub async fn fresh() -> Option<(TestDbGuard, PgStore)> {
    fresh_with(&small_pool()).await
}

/// As [`fresh`], with explicit options.
pub async fn fresh_with(options: &PgStoreOptions) -> Option<(TestDbGuard, PgStore)> {
    let (url, db) = fresh_url().await?;
    let store = PgStore::connect_with(&url, options).await.unwrap();
    Some((db, store))
}

/// A fresh, empty (unmigrated) database: its URL and guard.
pub async fn fresh_url() -> Option<(String, TestDbGuard)> {
    let base = test_base_url()?;
    let (url, db) = fresh_test_database(&base).await.unwrap();
    Some((url, db))
}

/// Tests run in parallel against one server: a few connections each is plenty.
pub fn small_pool() -> PgStoreOptions {
    PgStoreOptions {
        pool_size: 4,
        ..PgStoreOptions::default()
    }
}

pub fn account(created_at: i64) -> Account {
    Account {
        id: Uuid::new_v4(),
        name: "acme".into(),
        created_at,
    }
}

pub fn application(account_id: Uuid) -> Application {
    Application {
        account_id,
        id: Uuid::new_v4(),
        name: "shop".into(),
        application_code: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
        enabled: true,
        require_jwt_for_user_data: false,
        restrict_user_data_from_sdk: true,
        providers: json!({"fcm": {"projectId": "p", "baseUrl": "http://127.0.0.1:1"}, "apns": null}),
        created_at: 1_000,
        updated_at: 1_000,
    }
}

pub fn person(account_id: Uuid) -> Person {
    Person::new_anonymous(account_id, 2_000)
}

pub fn full_person(account_id: Uuid) -> Person {
    let mut p = person(account_id);
    p.external_user_id = Some(format!("ext-{}", p.id));
    p.first_name = Some("Ana".into());
    p.middle_name = Some("M".into());
    p.last_name = Some("Horvat".into());
    p.gender = Some(Gender::Female);
    p.birthday = Some("1990-02-03".into());
    // Deliberately not sorted: the order is part of the data.
    p.phones = vec!["385911234567".into(), "14155550100".into()];
    p.emails = vec!["Ana.Horvat@Example.com".into(), "b@x.org".into()];
    p.tags = BTreeSet::from(["vip".to_string(), "Beta".to_string(), "ž".to_string()]);
    p.custom_attributes = BTreeMap::from([
        ("score".to_string(), json!(1.5)),
        ("count".to_string(), json!(3)),
        ("vip".to_string(), json!(true)),
        ("since".to_string(), json!("2024-01-02")),
        (
            "orders".to_string(),
            json!([{"sku": "b", "qty": 2}, {"sku": "a", "qty": 1}]),
        ),
    ]);
    p.person_type = PersonType::Customer;
    p.version = 7;
    p.updated_at = 2_500;
    p
}

pub fn installation(app: &Application, person_id: Uuid, created_at: i64) -> Installation {
    Installation {
        account_id: app.account_id,
        application_id: app.id,
        push_reg_id: Uuid::new_v4().to_string(),
        person_id,
        push_service_type: None,
        push_service_token: None,
        reg_enabled: true,
        is_primary: false,
        application_user_id: None,
        custom_attributes: BTreeMap::new(),
        system: SystemData::default(),
        created_at,
        updated_at: created_at,
        last_seen_at: created_at,
        token_cleared_at: None,
        token_cleared_reason: None,
    }
}

pub fn with_token(mut inst: Installation, kind: PushServiceType, token: &str) -> Installation {
    inst.push_service_type = Some(kind);
    inst.push_service_token = Some(token.into());
    inst
}

/// An account with one application, committed.
pub async fn seeded(store: &PgStore) -> (Account, Application) {
    let acc = account(10);
    let app = application(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&acc).await.unwrap();
    tx.insert_application(&app).await.unwrap();
    tx.commit().await.unwrap();
    (acc, app)
}

pub fn conflict_on<T: std::fmt::Debug>(result: Result<T, StoreError>) -> Constraint {
    match result {
        Err(StoreError::Conflict { constraint }) => constraint,
        other => panic!("expected a conflict, got {other:?}"),
    }
}
