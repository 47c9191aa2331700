//! Domain values for store tests (the behaviour suite's and each backend's own): an account
//! with an application, persons, installations, the conflict a result must be, and messages with
//! their delivery records.

use std::collections::{BTreeMap, BTreeSet};

use roster_model::{
    Account, Application, Gender, Installation, Person, PersonType, Provider, PushServiceType, SystemData,
};
use roster_store::push::{AudienceState, Bulk, Delivery, DeliveryStatus, Message, SubmissionStatus};
use roster_store::{Constraint, Store, StoreError};
use serde_json::json;
use uuid::Uuid;

/// An account named "acme" with a new id.
pub fn account(created_at: i64) -> Account {
    Account {
        id: Uuid::new_v4(),
        name: "acme".into(),
        created_at,
    }
}

/// An enabled application of the account, with a unique code and FCM configured.
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

/// An anonymous person of the account.
pub fn person(account_id: Uuid) -> Person {
    Person::new_anonymous(account_id, 2_000)
}

/// A person with every field set: identity keys, names, tags, custom attributes of every type.
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

/// An installation of the application owned by the person, with a new pushRegId and no token.
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

/// The installation holding a push token of a kind.
pub fn with_token(mut inst: Installation, kind: PushServiceType, token: &str) -> Installation {
    inst.push_service_type = Some(kind);
    inst.push_service_token = Some(token.into());
    inst
}

/// An account with one application, committed.
pub async fn seeded(store: &dyn Store) -> (Account, Application) {
    let acc = account(10);
    let app = application(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&acc).await.unwrap();
    tx.insert_application(&app).await.unwrap();
    tx.commit().await.unwrap();
    (acc, app)
}

/// The constraint a result conflicts on; panics if it is no conflict.
pub fn conflict_on<T: std::fmt::Debug>(result: Result<T, StoreError>) -> Constraint {
    match result {
        Err(StoreError::Conflict { constraint }) => constraint,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// --- push queue -----------------------------------------------------------------------------------

/// A message of `app` in bulk `bulk_id` at `position`.
pub fn message(app: &Application, bulk_id: &str, message_id: &str, position: i64) -> Message {
    Message {
        account_id: app.account_id,
        message_id: message_id.into(),
        bulk_id: bulk_id.into(),
        position,
        application_id: app.id,
        destination: json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-1"}),
        content: json!({"type": "TEXT", "title": "Sale", "text": "20% off"}),
        options: json!({"customPayload": {"deeplink": "acme://sale"}, "silent": false}),
        target_only_primary: false,
        submission_status: SubmissionStatus::PendingAccepted,
        audience_state: AudienceState::Resolved,
        audience_count: 0,
        created_at: 5_000,
        expires_at: 1_000_000,
        updated_at: 5_000,
    }
}

/// A `QUEUED` record of the message to `push_reg_id`, due at `due`.
pub fn delivery(m: &Message, push_reg_id: &str, person_id: Uuid, due: i64) -> Delivery {
    Delivery {
        account_id: m.account_id,
        delivery_id: Uuid::new_v4(),
        message_id: m.message_id.clone(),
        application_id: m.application_id,
        push_reg_id: Some(push_reg_id.into()),
        person_id: Some(person_id),
        provider: Provider::Fcm,
        status: DeliveryStatus::Queued,
        attempts: 0,
        provider_http_status: None,
        provider_reason: None,
        created_at: 5_000,
        updated_at: 5_000,
        last_attempt_at: None,
        next_attempt_at: due,
        claim_id: None,
        delivered_at: None,
        seen_at: None,
    }
}

/// A bulk with one message, committed; returns the application and the message.
pub async fn bulk_with_message(store: &dyn Store) -> (Application, Message) {
    let (_, app) = seeded(store).await;
    let m = message(&app, "bulk-1", "msg-1", 0);
    let mut tx = store.begin().await.unwrap();
    tx.insert_bulk(&Bulk {
        account_id: app.account_id,
        bulk_id: "bulk-1".into(),
        created_at: 5_000,
    })
    .await
    .unwrap();
    tx.insert_message(&m).await.unwrap();
    tx.commit().await.unwrap();
    (app, m)
}

/// `n` due records of the message (to made-up installations), committed, by id.
pub async fn queued(store: &dyn Store, m: &Message, n: usize, due: i64) -> Vec<Delivery> {
    let records: Vec<Delivery> = (0..n)
        .map(|_| delivery(m, &Uuid::new_v4().to_string(), Uuid::new_v4(), due))
        .collect();
    let mut tx = store.begin().await.unwrap();
    tx.insert_deliveries(&records).await.unwrap();
    tx.commit().await.unwrap();
    records
}
