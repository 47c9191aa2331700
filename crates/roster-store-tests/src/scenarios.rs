//! The scenarios of the store behaviour suite: each takes a fresh, migrated, empty store of any
//! backend and panics on the first answer that is not the trait's.
//!
//! Written for every backend at once: where SQLite would let a transaction go on after a failed
//! statement and PostgreSQL aborts it, a scenario starts a new transaction per failing statement
//! (the `Tx` contract: roll back after any error). `NotFound` is no database error, so a
//! transaction goes on after it. Orders are code-point orders, which the schemas pin whatever
//! the database's default collation.
//!
//! A new scenario is a `pub async fn name(store: Arc<dyn Store>)` here plus its name in
//! [`store_behaviour_suite!`](crate::store_behaviour_suite); a unit test of this crate checks
//! that the two lists agree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use roster_model::{
    ApiKey, AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, Gender, Installation,
    InstallationBefore, JwtKey, MergeBefore, MergeLogEntry, MergeStatus, Person, PersonSnapshot, Provider,
    PushServiceType, SchemaField, SystemData, TokenClearedReason,
};
use roster_store::{Constraint, MAX_PAGE, RowKind, Store, StoreError};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{account, application, conflict_on, full_person, installation, person, seeded, with_token};

// --- round trips ---------------------------------------------------------------------------------

/// Every entity reads back as written; updates write every field and release the identity keys
/// they drop; updates and deletes of missing rows, or of rows under another account, find
/// nothing.
pub async fn every_entity_round_trips(store: Arc<dyn Store>) {
    store.ping().await.unwrap();

    let acc = account(10);
    let app = application(acc.id);
    let key = JwtKey {
        account_id: acc.id,
        application_id: app.id,
        kid: "k1".into(),
        secret: (0u8..32).collect(),
        created_at: 1_100,
    };
    let api = ApiKey {
        account_id: acc.id,
        id: Uuid::new_v4(),
        name: "admin".into(),
        scopes: vec!["people:read".into(), "push:send".into()],
        key_hash: "ab".repeat(32),
        key_prefix: "rst_abcd".into(),
        created_at: 1_200,
        expires_at: Some(9_999),
        last_used_at: None,
    };
    let p = full_person(acc.id);
    let mut inst = with_token(installation(&app, p.id, 3_000), PushServiceType::Apns, "abcdef0123");
    inst.is_primary = true;
    inst.reg_enabled = false;
    inst.application_user_id = Some("u-1".into());
    inst.custom_attributes = BTreeMap::from([("plan".to_string(), json!("gold"))]);
    inst.system = SystemData {
        notifications_enabled: Some(true),
        sdk_version: Some("13.1.0".into()),
        app_version: Some("2.0".into()),
        os: Some("iOS".into()),
        os_version: Some("17.4".into()),
        device_manufacturer: Some("Apple".into()),
        device_model: Some("iPhone15,2".into()),
        device_name: Some("Ana's phone".into()),
        device_secure: Some(false),
        language: Some("hr".into()),
        device_timezone_offset: Some("GMT+01:00".into()),
        inappchat: Some(false),
        inbox: None,
        webrtcui: Some(true),
    };
    inst.token_cleared_at = Some(2_900);
    inst.token_cleared_reason = Some(TokenClearedReason::Device);
    let def = AttributeDefinition {
        account_id: acc.id,
        scope: AttributeScope::Person,
        name: "orders".into(),
        attr_type: AttributeType::ListOfObjects,
        object_schema: Some(vec![
            SchemaField {
                name: "sku".into(),
                field_type: AttributeType::String,
            },
            SchemaField {
                name: "qty".into(),
                field_type: AttributeType::Decimal,
            },
        ]),
        origin: DefinitionOrigin::Api,
        created_at: 1_300,
    };
    let entry = MergeLogEntry {
        account_id: acc.id,
        id: Uuid::new_v4(),
        created_at: 4_000,
        actor: json!({"type": "INSTALLATION", "pushRegId": inst.push_reg_id, "applicationCode": app.application_code}),
        push_reg_id: inst.push_reg_id.clone(),
        source_person_id: Some(Uuid::new_v4()),
        target_person_id: Some(p.id),
        source_deleted: true,
        after_forced_depersonalize: false,
        dropped_attributes: vec!["z".into()],
        before: Some(MergeBefore {
            source: PersonSnapshot::of(&person(acc.id)),
            target: PersonSnapshot::of(&p),
            installation: InstallationBefore {
                is_primary: false,
                target_primary_push_reg_id: None,
            },
        }),
        after_target_version: 8,
        after_source_version: None,
        status: MergeStatus::Applied,
        reversed_at: None,
        reversed_by: None,
        redacted: false,
    };

    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&acc).await.unwrap();
    tx.insert_application(&app).await.unwrap();
    tx.insert_jwt_key(&key).await.unwrap();
    tx.insert_api_key(&api).await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_installation(&inst).await.unwrap();
    assert_eq!(tx.define_attribute(&def).await.unwrap(), (def.clone(), true));
    tx.insert_merge_entry(&entry).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.default_account().await.unwrap(), Some(acc.clone()));
    assert_eq!(tx.account(acc.id).await.unwrap(), Some(acc.clone()));
    assert_eq!(
        tx.application_by_code(&app.application_code).await.unwrap(),
        Some(app.clone())
    );
    assert_eq!(tx.application(acc.id, app.id).await.unwrap(), Some(app.clone()));
    assert_eq!(tx.application(Uuid::new_v4(), app.id).await.unwrap(), None);
    assert_eq!(tx.applications(acc.id).await.unwrap(), vec![app.clone()]);
    assert_eq!(tx.jwt_key(acc.id, app.id, "k1").await.unwrap(), Some(key.clone()));
    assert_eq!(tx.jwt_key(Uuid::new_v4(), app.id, "k1").await.unwrap(), None);
    assert_eq!(tx.jwt_keys(acc.id, app.id).await.unwrap(), vec![key.clone()]);
    assert!(tx.jwt_keys(Uuid::new_v4(), app.id).await.unwrap().is_empty());
    assert_eq!(tx.api_key_by_hash(&api.key_hash).await.unwrap(), Some(api.clone()));
    assert_eq!(tx.api_keys(acc.id).await.unwrap(), vec![api.clone()]);
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), Some(p.clone()));
    assert_eq!(tx.person(Uuid::new_v4(), p.id).await.unwrap(), None);
    assert_eq!(tx.installation(&inst.push_reg_id).await.unwrap(), Some(inst.clone()));
    assert_eq!(
        tx.attribute_definition(acc.id, AttributeScope::Person, "orders")
            .await
            .unwrap(),
        Some(def.clone())
    );
    assert_eq!(tx.merge_entry(acc.id, entry.id).await.unwrap(), Some(entry.clone()));
    assert_eq!(tx.merge_entry(Uuid::new_v4(), entry.id).await.unwrap(), None);
    tx.commit().await.unwrap();

    // Updates write every field.
    let mut app2 = app.clone();
    app2.name = "shop 2".into();
    app2.enabled = false;
    app2.require_jwt_for_user_data = true;
    app2.providers = json!({});
    app2.updated_at = 5_000;
    let mut p2 = p.clone();
    p2.external_user_id = None;
    p2.first_name = None;
    p2.gender = Some(Gender::Male);
    p2.phones = vec!["14155550100".into()];
    p2.emails = vec![];
    p2.tags = BTreeSet::from(["new".to_string()]);
    p2.custom_attributes.remove("score");
    p2.version = 8;
    let other = person(acc.id);
    let mut inst2 = inst.clone();
    inst2.person_id = other.id;
    inst2.push_service_token = None;
    inst2.is_primary = false;
    inst2.system.os = None;
    inst2.custom_attributes.clear();
    inst2.updated_at = 5_000;
    let mut entry2 = entry.clone();
    entry2.status = MergeStatus::Reversed;
    entry2.reversed_at = Some(6_000);
    entry2.reversed_by = Some(json!({"type": "API_KEY", "apiKeyId": api.id}));
    entry2.before = None;
    entry2.redacted = true;
    entry2.target_person_id = None;

    let mut tx = store.begin().await.unwrap();
    tx.update_application(&app2).await.unwrap();
    tx.update_person(&p2).await.unwrap();
    tx.insert_person(&other).await.unwrap();
    tx.update_installation(&inst2).await.unwrap();
    tx.update_merge_entry(&entry2).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.application(acc.id, app.id).await.unwrap(), Some(app2));
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), Some(p2.clone()));
    assert_eq!(tx.installation(&inst.push_reg_id).await.unwrap(), Some(inst2.clone()));
    assert_eq!(tx.merge_entry(acc.id, entry.id).await.unwrap(), Some(entry2));
    // The released keys are free: nobody owns them any more.
    assert_eq!(
        tx.persons_owning(
            acc.id,
            p.external_user_id.as_deref(),
            &["385911234567".into()],
            &["ana.horvat@example.com".into()]
        )
        .await
        .unwrap(),
        Vec::<Uuid>::new()
    );
    drop(tx);

    // Updates and deletes of missing rows (NotFound is no database error: the transaction goes
    // on).
    let mut tx = store.begin().await.unwrap();
    let ghost = person(acc.id);
    assert!(matches!(tx.update_person(&ghost).await, Err(StoreError::NotFound)));
    assert!(matches!(
        tx.update_installation(&installation(&app, ghost.id, 1)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        tx.update_application(&application(acc.id)).await,
        Err(StoreError::NotFound)
    ));
    let mut ghost_entry = entry.clone();
    ghost_entry.id = Uuid::new_v4();
    assert!(matches!(
        tx.update_merge_entry(&ghost_entry).await,
        Err(StoreError::NotFound)
    ));
    // An update under another account does not reach the row.
    let mut foreign = p2.clone();
    foreign.account_id = Uuid::new_v4();
    assert!(matches!(tx.update_person(&foreign).await, Err(StoreError::NotFound)));

    assert!(!tx.delete_jwt_key(Uuid::new_v4(), app.id, "k1").await.unwrap());
    assert!(tx.delete_jwt_key(acc.id, app.id, "k1").await.unwrap());
    assert!(!tx.delete_jwt_key(acc.id, app.id, "k1").await.unwrap());
    assert!(!tx.delete_installation(Uuid::new_v4(), &inst.push_reg_id).await.unwrap());
    assert!(tx.delete_installation(acc.id, &inst.push_reg_id).await.unwrap());
    assert!(!tx.delete_installation(acc.id, &inst.push_reg_id).await.unwrap());
    assert!(tx.delete_person(acc.id, p.id).await.unwrap());
    assert!(!tx.delete_person(acc.id, p.id).await.unwrap());
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), None);
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    assert!(snap.jwt_keys.is_empty());
    assert!(snap.installations.is_empty());
    assert_eq!(snap.persons, vec![other]);
}

/// JSON columns are TEXT in every backend: a document reads back exactly as written, including
/// what PostgreSQL's `jsonb` would refuse (a "\u0000" escape) or reorder (object keys).
pub async fn json_documents_round_trip_byte_for_byte(store: Arc<dyn Store>) {
    let acc = account(1);
    let mut app = application(acc.id);
    app.providers = json!({"z": 1, "a": {"y": [1.5, "x\u{0}y"], "b": null}});
    let mut p = person(acc.id);
    p.custom_attributes = BTreeMap::from([("nul".to_string(), json!("a\u{0}b")), ("big".to_string(), json!(1e300))]);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&acc).await.unwrap();
    tx.insert_application(&app).await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let read = tx.application(acc.id, app.id).await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_string(&read.providers).unwrap(),
        serde_json::to_string(&app.providers).unwrap()
    );
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), Some(p));
}

// --- uniqueness ----------------------------------------------------------------------------------

/// externalUserId, phone and email key are unique per account, on insert and on update, and
/// another account's person may hold the same keys. Nothing of a failed attempt is kept.
pub async fn identity_keys_are_unique_per_account(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let other_acc = account(20);
    let owner = full_person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&other_acc).await.unwrap();
    tx.insert_person(&owner).await.unwrap();
    tx.commit().await.unwrap();

    // How a person claims one of the owner's keys, and the rule that refuses it.
    type Claim<'a> = Box<dyn Fn(&mut Person) + 'a>;
    let cases: Vec<(Claim<'_>, Constraint)> = vec![
        (
            Box::new(|p: &mut Person| p.external_user_id = owner.external_user_id.clone()),
            Constraint::ExternalUserId,
        ),
        (
            Box::new(|p: &mut Person| p.phones = vec!["1999999999".into(), "14155550100".into()]),
            Constraint::Phone,
        ),
        // Another spelling of an owned address: same comparison key.
        (
            Box::new(|p: &mut Person| p.emails = vec!["ANA.HORVAT@example.COM".into()]),
            Constraint::Email,
        ),
    ];
    for (apply, expected) in cases {
        // On insert.
        let mut p = person(acc.id);
        apply(&mut p);
        let mut tx = store.begin().await.unwrap();
        let got = conflict_on(tx.insert_person(&p).await);
        assert_eq!(got, expected);
        assert!(got.is_identity());
        drop(tx);

        // On update.
        let mut p = person(acc.id);
        let mut tx = store.begin().await.unwrap();
        tx.insert_person(&p).await.unwrap();
        apply(&mut p);
        assert_eq!(conflict_on(tx.update_person(&p).await), expected);
        drop(tx);

        // The same key in another account is another person's key.
        let mut p = person(other_acc.id);
        apply(&mut p);
        let mut tx = store.begin().await.unwrap();
        tx.insert_person(&p).await.unwrap();
        tx.commit().await.unwrap();
    }

    // A person's own duplicate key collides with itself.
    let mut twice = person(acc.id);
    twice.phones = vec!["1777777777".into(), "1777777777".into()];
    let mut tx = store.begin().await.unwrap();
    assert_eq!(conflict_on(tx.insert_person(&twice).await), Constraint::Phone);
    drop(tx);

    // Nothing of the failed attempts was kept.
    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    assert_eq!(snap.persons.iter().filter(|p| p.account_id == acc.id).count(), 1);
}

/// pushRegId, one token holder per (application, provider, token) and one primary per (person,
/// application) are constraints; what they do not cover does not collide; an upper-case
/// pushRegId, an unknown person and deleting a person who owns installations are errors.
pub async fn installation_rules_are_constraints(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;
    let app_b = application(acc.id);
    let p = person(acc.id);
    let holder = with_token(installation(&app, p.id, 1), PushServiceType::Firebase, "tok");
    let mut primary = installation(&app, p.id, 2);
    primary.is_primary = true;
    let mut tx = store.begin().await.unwrap();
    tx.insert_application(&app_b).await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_installation(&holder).await.unwrap();
    tx.insert_installation(&primary).await.unwrap();
    tx.commit().await.unwrap();

    // pushRegId.
    let mut tx = store.begin().await.unwrap();
    let mut dup = installation(&app_b, p.id, 3);
    dup.push_reg_id = holder.push_reg_id.clone();
    assert_eq!(conflict_on(tx.insert_installation(&dup).await), Constraint::PushRegId);
    drop(tx);
    // Same token, same provider (GCM is FCM too), same application.
    let mut tx = store.begin().await.unwrap();
    let taker = with_token(installation(&app, p.id, 3), PushServiceType::Gcm, "tok");
    assert_eq!(conflict_on(tx.insert_installation(&taker).await), Constraint::PushToken);
    drop(tx);
    // Also when an update gives the token.
    let mut tx = store.begin().await.unwrap();
    let mut later = installation(&app, p.id, 4);
    tx.insert_installation(&later).await.unwrap();
    later = with_token(later, PushServiceType::Firebase, "tok");
    assert_eq!(conflict_on(tx.update_installation(&later).await), Constraint::PushToken);
    drop(tx);
    // A second primary for (person, application).
    let mut tx = store.begin().await.unwrap();
    let mut second = installation(&app, p.id, 5);
    second.is_primary = true;
    assert_eq!(
        conflict_on(tx.insert_installation(&second).await),
        Constraint::PrimaryInstallation
    );
    drop(tx);

    // What does not collide: another provider, another application, cleared tokens, a primary
    // in another application, non-primary installations.
    let mut tx = store.begin().await.unwrap();
    tx.insert_installation(&with_token(installation(&app, p.id, 6), PushServiceType::Hms, "tok"))
        .await
        .unwrap();
    tx.insert_installation(&with_token(
        installation(&app_b, p.id, 7),
        PushServiceType::Firebase,
        "tok",
    ))
    .await
    .unwrap();
    for t in 8..10 {
        let mut no_token = installation(&app, p.id, t);
        no_token.push_service_type = Some(PushServiceType::Firebase);
        tx.insert_installation(&no_token).await.unwrap();
    }
    let mut primary_b = installation(&app_b, p.id, 10);
    primary_b.is_primary = true;
    tx.insert_installation(&primary_b).await.unwrap();
    tx.commit().await.unwrap();

    // A pushRegId that is not lowercase is refused (invariant 4).
    let mut tx = store.begin().await.unwrap();
    let mut upper = installation(&app, p.id, 11);
    upper.push_reg_id = upper.push_reg_id.to_uppercase();
    assert!(matches!(
        tx.insert_installation(&upper).await,
        Err(StoreError::Other(_))
    ));
    drop(tx);
    // An installation of an unknown person or application breaks a reference, not a
    // uniqueness rule (the core answers an application deleted meanwhile as unknown).
    let mut tx = store.begin().await.unwrap();
    assert!(matches!(
        tx.insert_installation(&installation(&app, Uuid::new_v4(), 12)).await,
        Err(StoreError::ForeignKey(_))
    ));
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    let gone = application(acc.id);
    assert!(matches!(
        tx.insert_installation(&installation(&gone, p.id, 13)).await,
        Err(StoreError::ForeignKey(_))
    ));
    drop(tx);
    // As does deleting a person who still owns installations.
    let mut tx = store.begin().await.unwrap();
    assert!(matches!(
        tx.delete_person(acc.id, p.id).await,
        Err(StoreError::ForeignKey(_))
    ));
}

/// Application code, JWT kid per application and API key hash are unique; any other duplicate
/// key is a conflict named by its constraint.
pub async fn application_jwt_and_api_key_uniqueness(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;

    let mut tx = store.begin().await.unwrap();
    let mut same_code = application(acc.id);
    same_code.application_code = app.application_code.clone();
    assert_eq!(
        conflict_on(tx.insert_application(&same_code).await),
        Constraint::ApplicationCode
    );
    drop(tx);

    let key = JwtKey {
        account_id: acc.id,
        application_id: app.id,
        kid: "k".into(),
        secret: vec![1; 32],
        created_at: 1,
    };
    let api = ApiKey {
        account_id: acc.id,
        id: Uuid::new_v4(),
        name: "a".into(),
        scopes: vec![],
        key_hash: "h".into(),
        key_prefix: "p".into(),
        created_at: 1,
        expires_at: None,
        last_used_at: None,
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_jwt_key(&key).await.unwrap();
    tx.insert_api_key(&api).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(conflict_on(tx.insert_jwt_key(&key).await), Constraint::JwtKid);
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    let mut same_hash = api.clone();
    same_hash.id = Uuid::new_v4();
    assert_eq!(conflict_on(tx.insert_api_key(&same_hash).await), Constraint::ApiKey);
    drop(tx);
    // A duplicate primary key that is no rule of people.md is named by its constraint.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        conflict_on(tx.insert_account(&acc).await),
        Constraint::Other("accounts_pkey".into())
    );
}

/// The first definition of a (scope, name) wins; listings are by scope, then name in code-point
/// order.
pub async fn define_attribute_keeps_the_first_definition(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let first = AttributeDefinition {
        account_id: acc.id,
        scope: AttributeScope::Person,
        name: "age".into(),
        attr_type: AttributeType::Decimal,
        object_schema: None,
        origin: DefinitionOrigin::Auto,
        created_at: 5,
    };
    let mut loser = first.clone();
    loser.attr_type = AttributeType::String;
    loser.created_at = 6;
    let mut other_scope = loser.clone();
    other_scope.scope = AttributeScope::Installation;

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.define_attribute(&first).await.unwrap(), (first.clone(), true));
    assert_eq!(tx.define_attribute(&loser).await.unwrap(), (first.clone(), false));
    assert_eq!(
        tx.define_attribute(&other_scope).await.unwrap(),
        (other_scope.clone(), true)
    );
    let mut b = first.clone();
    b.name = "Birth".into();
    tx.define_attribute(&b).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(
        tx.count_attribute_definitions(acc.id, AttributeScope::Person)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        tx.count_attribute_definitions(Uuid::new_v4(), AttributeScope::Person)
            .await
            .unwrap(),
        0
    );
    // By scope (PERSON first), then name in code-point order ("B" < "a"), whatever the
    // database's default collation (PostgreSQL's test databases are ICU en-US, where "a" < "B").
    let all = tx.attribute_definitions(acc.id, None).await.unwrap();
    assert_eq!(all, vec![b.clone(), first.clone(), other_scope.clone()]);
    assert_eq!(
        tx.attribute_definitions(acc.id, Some(AttributeScope::Installation))
            .await
            .unwrap(),
        vec![other_scope]
    );
    assert_eq!(
        tx.attribute_definition(acc.id, AttributeScope::Installation, "nope")
            .await
            .unwrap(),
        None
    );
}

// --- transactions --------------------------------------------------------------------------------

/// Dropping a transaction, or rolling it back, keeps none of its writes and frees its keys and
/// locks, also when it is dropped on another task.
pub async fn dropping_a_transaction_rolls_it_back(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;
    let p = full_person(acc.id);

    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_installation(&installation(&app, p.id, 1)).await.unwrap();
    assert!(tx.person(acc.id, p.id).await.unwrap().is_some());
    drop(tx);

    // Nothing was kept, and the keys are free again.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), None);
    tx.insert_person(&p).await.unwrap();
    tx.rollback().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), None);
    assert_eq!(
        tx.persons_owning(acc.id, p.external_user_id.as_deref(), &p.phones, &p.email_keys())
            .await
            .unwrap(),
        Vec::<Uuid>::new()
    );
    tx.commit().await.unwrap();

    // A transaction dropped on another task (a request cancelled mid-way) as well, and its
    // row locks are released: a later writer of the same keys does not wait for them.
    let s = store.clone();
    let q = p.clone();
    tokio::spawn(async move {
        let mut tx = s.begin().await.unwrap();
        tx.insert_person(&q).await.unwrap();
        // dropped here
    })
    .await
    .unwrap();
    let mut tx = store.begin().await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), tx.insert_person(&p))
        .await
        .expect("the dropped transaction still holds its locks")
        .unwrap();
    drop(tx);
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), None);
}

/// After a conflict and its rollback, the next transaction writes and commits normally.
pub async fn a_conflict_does_not_poison_later_transactions(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let mut tx = store.begin().await.unwrap();
    assert!(matches!(
        tx.insert_account(&acc).await,
        Err(StoreError::Conflict { .. })
    ));
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    let p = person(acc.id);
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), Some(p));
}

/// A read transaction refuses writes, sees the database as of `begin_read`, and many of them
/// at once queue for connections rather than fail.
pub async fn read_transactions_refuse_writes_and_keep_their_snapshot(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;

    let mut reader = store.begin_read().await.unwrap();
    assert!(matches!(
        reader.insert_person(&person(acc.id)).await,
        Err(StoreError::Other(_))
    ));
    drop(reader);

    // A write committed after begin_read is not seen by that transaction.
    let mut reader = store.begin_read().await.unwrap();
    let p = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(reader.person(acc.id, p.id).await.unwrap(), None);
    assert!(reader.snapshot().await.unwrap().persons.is_empty());
    reader.commit().await.unwrap();

    let mut reader = store.begin_read().await.unwrap();
    assert_eq!(reader.person(acc.id, p.id).await.unwrap(), Some(p));
    reader.rollback().await.unwrap();

    // More readers than the pool holds, at once: they queue, none fails.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = s.begin_read().await.unwrap();
            let n = tx.snapshot().await.unwrap().accounts.len();
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.commit().await.unwrap();
            n
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1);
    }
}

/// Twenty tasks writing at once all commit (SQLite serialises them on its one writer,
/// PostgreSQL runs them side by side).
pub async fn concurrent_writers_all_commit(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = person(acc.id);
            p.external_user_id = Some(format!("user-{i}"));
            let mut tx = s.begin().await.unwrap();
            tx.insert_person(&p).await.unwrap();
            tokio::task::yield_now().await;
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.snapshot().await.unwrap().persons.len(), 20);
}

// --- person keys ---------------------------------------------------------------------------------

/// Keys released by one person's update can be taken by another's later in the same
/// transaction.
pub async fn a_key_moves_between_persons_in_one_transaction(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let mut a = person(acc.id);
    a.external_user_id = Some("alice".into());
    a.phones = vec!["385911111111".into(), "385912222222".into()];
    a.emails = vec!["Shared@X.org".into()];
    let b = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&a).await.unwrap();
    tx.insert_person(&b).await.unwrap();
    tx.commit().await.unwrap();

    // A releases its external id, one phone and the email; B takes them.
    let mut a2 = a.clone();
    a2.external_user_id = None;
    a2.phones = vec!["385912222222".into()];
    a2.emails = vec![];
    let mut b2 = b.clone();
    b2.external_user_id = Some("alice".into());
    b2.phones = vec!["385911111111".into()];
    b2.emails = vec!["shared@x.org".into()];
    let mut tx = store.begin().await.unwrap();
    tx.update_person(&a2).await.unwrap();
    tx.update_person(&b2).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.person(acc.id, a.id).await.unwrap(), Some(a2));
    assert_eq!(tx.person(acc.id, b.id).await.unwrap(), Some(b2));
    assert_eq!(
        tx.persons_owning(acc.id, Some("alice"), &[], &[]).await.unwrap(),
        vec![b.id]
    );
}

/// A person's own keys can change places and case in one update (each key that moves is
/// released before it is written again), and an update that changes some keys leaves the others
/// as they were.
pub async fn a_persons_keys_are_reordered_and_recased_in_place(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let p = full_person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();

    let mut p2 = p.clone();
    p2.phones.swap(0, 1);
    p2.emails = vec!["b@x.org".into(), p.emails[0].to_uppercase()];
    p2.tags.remove("Beta");
    p2.tags.insert("beta".into());
    p2.version += 1;
    let mut p3 = p2.clone();
    p3.phones.push("385917654321".into());
    p3.version += 1;
    let mut tx = store.begin().await.unwrap();
    tx.update_person(&p2).await.unwrap();
    tx.update_person(&p3).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.person(acc.id, p.id).await.unwrap(), Some(p3.clone()));
    for phone in &p3.phones {
        assert_eq!(
            tx.persons_owning(acc.id, None, std::slice::from_ref(phone), &[])
                .await
                .unwrap(),
            vec![p.id]
        );
    }
    assert_eq!(
        tx.persons_owning(acc.id, None, &[], &[roster_model::validate::email_key(&p.emails[0])])
            .await
            .unwrap(),
        vec![p.id]
    );
}

/// `persons_owning` answers each owner once, sorted, within the account, matching email keys
/// (not stored addresses).
pub async fn persons_owning_returns_distinct_owners(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let other_acc = account(20);
    let mut a = person(acc.id);
    a.external_user_id = Some("a".into());
    a.phones = vec!["1111111111".into()];
    a.emails = vec!["A@X.org".into()];
    let mut b = person(acc.id);
    b.phones = vec!["2222222222".into()];
    let mut elsewhere = person(other_acc.id);
    elsewhere.external_user_id = Some("a".into());
    elsewhere.phones = vec!["2222222222".into()];
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&other_acc).await.unwrap();
    for p in [&a, &b, &elsewhere] {
        tx.insert_person(p).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    // Three keys of A: A once.
    assert_eq!(
        tx.persons_owning(acc.id, Some("a"), &["1111111111".into()], &["a@x.org".into()])
            .await
            .unwrap(),
        vec![a.id]
    );
    let mut both = vec![a.id, b.id];
    both.sort();
    assert_eq!(
        tx.persons_owning(acc.id, Some("a"), &["2222222222".into(), "9999999999".into()], &[])
            .await
            .unwrap(),
        both
    );
    // The stored address is not the key: only its lowercase form matches.
    assert_eq!(
        tx.persons_owning(acc.id, None, &[], &["A@X.org".into()]).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(
        tx.persons_owning(acc.id, None, &[], &[]).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(
        tx.persons_owning(other_acc.id, Some("a"), &["2222222222".into()], &[])
            .await
            .unwrap(),
        vec![elsewhere.id]
    );
}

// --- installations -------------------------------------------------------------------------------

/// Token hygiene clears the token of the other holders in the same application and provider
/// only (exact comparison), records why and when, and never clears the excepted one.
pub async fn clear_token_holders_takes_the_token_from_the_others(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;
    let app_b = application(acc.id);
    let p = person(acc.id);
    let old = with_token(installation(&app, p.id, 1), PushServiceType::Apns, "abc");
    let fresh_inst = installation(&app, p.id, 2);
    let other_app = with_token(installation(&app_b, p.id, 3), PushServiceType::Apns, "abc");
    let other_provider = with_token(installation(&app, p.id, 4), PushServiceType::Firebase, "abc");
    let other_case = with_token(installation(&app, p.id, 5), PushServiceType::Apns, "ABC");
    let mut tx = store.begin().await.unwrap();
    tx.insert_application(&app_b).await.unwrap();
    tx.insert_person(&p).await.unwrap();
    for i in [&old, &fresh_inst, &other_app, &other_provider, &other_case] {
        tx.insert_installation(i).await.unwrap();
    }

    // The holder itself is never cleared.
    assert!(
        tx.clear_token_holders(
            acc.id,
            app.id,
            Provider::Apns,
            "abc",
            &old.push_reg_id,
            TokenClearedReason::TakenOver,
            50
        )
        .await
        .unwrap()
        .is_empty()
    );
    // Another account sees nothing.
    assert!(
        tx.clear_token_holders(
            Uuid::new_v4(),
            app.id,
            Provider::Apns,
            "abc",
            &fresh_inst.push_reg_id,
            TokenClearedReason::TakenOver,
            50
        )
        .await
        .unwrap()
        .is_empty()
    );
    let cleared = tx
        .clear_token_holders(
            acc.id,
            app.id,
            Provider::Apns,
            "abc",
            &fresh_inst.push_reg_id,
            TokenClearedReason::TakenOver,
            100,
        )
        .await
        .unwrap();
    assert_eq!(cleared, vec![old.push_reg_id.clone()]);
    // Now the new installation can take the token.
    let taker = with_token(fresh_inst.clone(), PushServiceType::Apns, "abc");
    tx.update_installation(&taker).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let mut expected = old.clone();
    expected.push_service_token = None;
    expected.token_cleared_at = Some(100);
    expected.token_cleared_reason = Some(TokenClearedReason::TakenOver);
    expected.updated_at = 100;
    assert_eq!(tx.installation(&old.push_reg_id).await.unwrap(), Some(expected));
    // Untouched: another application, another provider, another token (exact comparison).
    for untouched in [&other_app, &other_provider, &other_case] {
        assert_eq!(
            tx.installation(&untouched.push_reg_id).await.unwrap().as_ref(),
            Some(untouched)
        );
    }
    assert_eq!(tx.installation(&taker.push_reg_id).await.unwrap(), Some(taker));
}

/// `demote_primaries` clears `isPrimary` on the person's other installations in the application
/// only; a person's installations list oldest first and count across applications.
pub async fn demote_primaries_clears_the_flag_of_the_others_only(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;
    let app_b = application(acc.id);
    let p = person(acc.id);
    let q = person(acc.id);
    let mut was_primary = installation(&app, p.id, 1);
    was_primary.is_primary = true;
    let promoted = installation(&app, p.id, 2);
    let plain = installation(&app, p.id, 3);
    let mut primary_in_b = installation(&app_b, p.id, 4);
    primary_in_b.is_primary = true;
    let mut primary_of_q = installation(&app, q.id, 5);
    primary_of_q.is_primary = true;
    let mut tx = store.begin().await.unwrap();
    tx.insert_application(&app_b).await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_person(&q).await.unwrap();
    for i in [&was_primary, &promoted, &plain, &primary_in_b, &primary_of_q] {
        tx.insert_installation(i).await.unwrap();
    }
    assert_eq!(
        tx.demote_primaries(acc.id, p.id, app.id, &promoted.push_reg_id, 70)
            .await
            .unwrap(),
        1
    );
    let mut now_primary = promoted.clone();
    now_primary.is_primary = true;
    tx.update_installation(&now_primary).await.unwrap();
    // Demoting again finds nobody but the excepted one.
    assert_eq!(
        tx.demote_primaries(acc.id, p.id, app.id, &promoted.push_reg_id, 80)
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let mut demoted = was_primary.clone();
    demoted.is_primary = false;
    demoted.updated_at = 70;
    assert_eq!(
        tx.installation(&was_primary.push_reg_id).await.unwrap(),
        Some(demoted.clone())
    );
    assert_eq!(tx.installation(&plain.push_reg_id).await.unwrap(), Some(plain.clone()));
    assert_eq!(
        tx.installation(&primary_in_b.push_reg_id).await.unwrap(),
        Some(primary_in_b.clone())
    );
    assert_eq!(
        tx.installation(&primary_of_q.push_reg_id).await.unwrap(),
        Some(primary_of_q)
    );

    // A person's installations: oldest first, in one application or in all.
    assert_eq!(
        tx.installations_of_person(acc.id, p.id, Some(app.id)).await.unwrap(),
        vec![demoted.clone(), now_primary.clone(), plain.clone()]
    );
    assert_eq!(
        tx.installations_of_person(acc.id, p.id, None).await.unwrap(),
        vec![demoted, now_primary, plain, primary_in_b]
    );
    assert!(
        tx.installations_of_person(Uuid::new_v4(), p.id, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(tx.count_installations_of_person(acc.id, p.id).await.unwrap(), 4);
    assert_eq!(tx.count_installations_of_person(acc.id, q.id).await.unwrap(), 1);
    assert_eq!(tx.count_installations_of_person(Uuid::new_v4(), p.id).await.unwrap(), 0);
}

/// Installations created at the same millisecond are ordered by pushRegId.
pub async fn installations_with_equal_creation_times_order_by_push_reg_id(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;
    let p = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    let mut all: Vec<Installation> = Vec::new();
    for _ in 0..5 {
        let i = installation(&app, p.id, 42);
        tx.insert_installation(&i).await.unwrap();
        all.push(i);
    }
    all.sort_by(|a, b| a.push_reg_id.cmp(&b.push_reg_id));
    assert_eq!(
        tx.installations_of_person(acc.id, p.id, Some(app.id)).await.unwrap(),
        all
    );
}

// --- snapshot ------------------------------------------------------------------------------------

/// A snapshot lists every table by its key in code-point order (whatever the database's
/// collation), keeps phones and emails in their stored order, and is stable; the default
/// account is the first created.
pub async fn snapshot_is_ordered_by_keys(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let mut accounts: Vec<_> = (0..3).map(|i| account(100 - i)).collect();
    let mut apps = Vec::new();
    let mut persons = Vec::new();
    let mut insts = Vec::new();
    let mut keys = Vec::new();
    for acc in &accounts {
        tx.insert_account(acc).await.unwrap();
        for _ in 0..2 {
            let app = application(acc.id);
            tx.insert_application(&app).await.unwrap();
            // Upper before lower case in code-point order, not in en-US.
            for kid in ["b", "a", "B"] {
                let key = JwtKey {
                    account_id: acc.id,
                    application_id: app.id,
                    kid: kid.into(),
                    secret: vec![7; 32],
                    created_at: 1,
                };
                tx.insert_jwt_key(&key).await.unwrap();
                keys.push(key);
            }
            apps.push(app);
        }
        for n in 0..3 {
            let mut p = person(acc.id);
            p.phones = vec![
                format!("3859100000{n}{}", acc.created_at),
                format!("1415555000{n}{}", acc.created_at),
            ];
            p.emails = vec![format!("Z{n}@{}.org", acc.id), format!("a{n}@{}.org", acc.id)];
            p.tags = BTreeSet::from(["z".to_string(), "a".to_string(), "B".to_string()]);
            tx.insert_person(&p).await.unwrap();
            let i = installation(&apps[apps.len() - 1], p.id, 9 - n);
            tx.insert_installation(&i).await.unwrap();
            insts.push(i);
            persons.push(p);
        }
    }
    // The first account created is the default, whatever the ids.
    let default = accounts.iter().min_by_key(|a| a.created_at).unwrap().clone();
    assert_eq!(tx.default_account().await.unwrap(), Some(default));
    // A write transaction's snapshot sees its own writes.
    let own = tx.snapshot().await.unwrap();
    assert_eq!(own.persons.len(), persons.len());
    tx.commit().await.unwrap();

    accounts.sort_by_key(|a| a.id);
    apps.sort_by_key(|a| a.id);
    keys.sort_by(|a, b| (a.application_id, &a.kid).cmp(&(b.application_id, &b.kid)));
    persons.sort_by_key(|p| p.id);
    insts.sort_by(|a, b| a.push_reg_id.cmp(&b.push_reg_id));

    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    assert_eq!(snap.accounts, accounts);
    assert_eq!(snap.applications, apps);
    assert_eq!(snap.jwt_keys, keys);
    // Phones and emails keep their positions ("3859..." before "1415...", "Z" before "a").
    assert_eq!(snap.persons, persons);
    assert_eq!(snap.installations, insts);
    // Stable: the same snapshot twice.
    assert_eq!(tx.snapshot().await.unwrap(), snap);
    assert_eq!(own, snap);
}

// --- streaming every row -------------------------------------------------------------------------

/// Walks every keyset page of one kind: `walk!(limit, |row| key, |after, n| page)`, where `page`
/// reads the page of up to `n` rows after the key `after` (`None`: from the start). Checks that
/// each page is at most `limit` rows, in key order, and continues strictly after the previous
/// one; evaluates to every row, in walk order. (A macro rather than a function: the page call
/// borrows the transaction mutably, which a closure cannot lend to the future it returns.)
macro_rules! walk {
    ($limit:expr, |$row:ident| $key:expr, |$after:ident, $n:ident| $page:expr) => {{
        let limit: u32 = $limit;
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let rows = {
                let $after = cursor.clone();
                let $n = limit;
                $page
            };
            assert!(rows.len() <= limit as usize, "a page longer than its limit");
            if rows.is_empty() {
                break;
            }
            let keys: Vec<_> = rows.iter().map(|$row| $key).collect();
            assert!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "a page out of key order: {keys:?}"
            );
            if let Some(previous) = &cursor {
                assert!(&keys[0] > previous, "a page that does not continue after its cursor");
            }
            cursor = keys.last().cloned();
            all.extend(rows);
        }
        all
    }};
}

/// The keyset pages of every kind list exactly an account's rows, in primary-key order (ids as
/// text; definitions by stored scope, then name, in code-point order), however small the pages;
/// persons come with their keys and tags in stored order; the counts agree; another account's
/// rows never show; an account without rows pages nothing; a page never exceeds `MAX_PAGE`.
pub async fn keyset_pages_list_every_row_of_an_account_in_key_order(store: Arc<dyn Store>) {
    let accounts = [account(30), account(31), account(32)];
    let empty = &accounts[2];
    let mut tx = store.begin().await.unwrap();
    for acc in &accounts {
        tx.insert_account(acc).await.unwrap();
    }
    for acc in &accounts[..2] {
        for a in 0..3 {
            let app = application(acc.id);
            tx.insert_application(&app).await.unwrap();
            for kid in ["b", "B", "a", "é"] {
                let key = JwtKey {
                    account_id: acc.id,
                    application_id: app.id,
                    kid: kid.into(),
                    secret: vec![a; 32],
                    created_at: 5,
                };
                tx.insert_jwt_key(&key).await.unwrap();
            }
            tx.insert_api_key(&ApiKey {
                account_id: acc.id,
                id: Uuid::new_v4(),
                name: format!("key {a}"),
                scopes: vec!["admin".into()],
                key_hash: Uuid::new_v4().simple().to_string(),
                key_prefix: "rk_x".into(),
                created_at: 6,
                expires_at: None,
                last_used_at: Some(7),
            })
            .await
            .unwrap();
            for p in 0..4 {
                // Every other person has keys and tags; the others have none.
                let mut owner = person(acc.id);
                if p % 2 == 0 {
                    owner = full_person(acc.id);
                    owner.phones = vec![
                        format!("3859{a}{p}{}", acc.created_at),
                        format!("1415{a}{p}{}", acc.created_at),
                    ];
                    owner.emails = vec![format!("Z{a}{p}@{}.org", acc.id), format!("a{a}{p}@{}.org", acc.id)];
                }
                tx.insert_person(&owner).await.unwrap();
                let mut inst = installation(&app, owner.id, 100 - i64::from(p));
                inst.is_primary = p == 0;
                tx.insert_installation(&inst).await.unwrap();
                tx.insert_merge_entry(&MergeLogEntry {
                    account_id: acc.id,
                    id: Uuid::new_v4(),
                    created_at: 8,
                    actor: json!({"type": "INSTALLATION", "pushRegId": inst.push_reg_id}),
                    push_reg_id: inst.push_reg_id.clone(),
                    source_person_id: None,
                    target_person_id: Some(owner.id),
                    source_deleted: false,
                    after_forced_depersonalize: true,
                    dropped_attributes: vec![],
                    before: None,
                    after_target_version: 2,
                    after_source_version: None,
                    status: MergeStatus::Applied,
                    reversed_at: None,
                    reversed_by: None,
                    redacted: true,
                })
                .await
                .unwrap();
            }
        }
        for (scope, name) in [
            (AttributeScope::Person, "b"),
            (AttributeScope::Installation, "z"),
            (AttributeScope::Person, "B"),
            (AttributeScope::Person, "ä"),
            (AttributeScope::Installation, "a"),
        ] {
            tx.insert_attribute_definition(&AttributeDefinition {
                account_id: acc.id,
                scope,
                name: name.into(),
                attr_type: AttributeType::String,
                object_schema: None,
                origin: DefinitionOrigin::Auto,
                created_at: 9,
            })
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    assert_eq!(tx.count_accounts().await.unwrap(), 3);
    for limit in [1, 3, 1_000] {
        let walked = walk!(limit, |a| a.id, |after, n| tx.accounts_page(after, n).await.unwrap());
        assert_eq!(walked, snap.accounts);
    }
    for acc in &accounts {
        let mine = |a: Uuid| a == acc.id;
        let applications: Vec<_> = snap
            .applications
            .iter()
            .filter(|r| mine(r.account_id))
            .cloned()
            .collect();
        let jwt_keys: Vec<_> = snap.jwt_keys.iter().filter(|r| mine(r.account_id)).cloned().collect();
        let api_keys: Vec<_> = snap.api_keys.iter().filter(|r| mine(r.account_id)).cloned().collect();
        let mut definitions: Vec<_> = snap
            .attribute_definitions
            .iter()
            .filter(|r| mine(r.account_id))
            .cloned()
            .collect();
        definitions.sort_by(|a, b| (a.scope.as_str(), &a.name).cmp(&(b.scope.as_str(), &b.name)));
        let persons: Vec<_> = snap.persons.iter().filter(|r| mine(r.account_id)).cloned().collect();
        let installations: Vec<_> = snap
            .installations
            .iter()
            .filter(|r| mine(r.account_id))
            .cloned()
            .collect();
        let merge_log: Vec<_> = snap.merge_log.iter().filter(|r| mine(r.account_id)).cloned().collect();
        if acc.id == empty.id {
            assert!(persons.is_empty() && applications.is_empty());
        } else {
            assert_eq!((applications.len(), jwt_keys.len(), persons.len()), (3, 12, 12));
            // Scopes in stored-text order, names in code-point order.
            let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(names, ["a", "z", "B", "b", "ä"]);
        }
        let counts = [
            (RowKind::Application, applications.len()),
            (RowKind::JwtKey, jwt_keys.len()),
            (RowKind::ApiKey, api_keys.len()),
            (RowKind::AttributeDefinition, definitions.len()),
            (RowKind::Person, persons.len()),
            (RowKind::Installation, installations.len()),
            (RowKind::MergeLogEntry, merge_log.len()),
        ];
        assert_eq!(counts.map(|(k, _)| k), RowKind::ALL);
        for (kind, n) in counts {
            assert_eq!(tx.count_rows(acc.id, kind).await.unwrap(), n as u64, "{kind:?}");
        }
        for limit in [1, 5, 1_000] {
            let got = walk!(limit, |r| r.id, |after, n| tx
                .applications_page(acc.id, after, n)
                .await
                .unwrap());
            assert_eq!(got, applications);
            let got = walk!(limit, |r| (r.application_id, r.kid.clone()), |after, n| {
                let after = after.as_ref().map(|(app, kid): &(Uuid, String)| (*app, kid.as_str()));
                tx.jwt_keys_page(acc.id, after, n).await.unwrap()
            });
            assert_eq!(got, jwt_keys);
            let got = walk!(limit, |r| r.id, |after, n| tx
                .api_keys_page(acc.id, after, n)
                .await
                .unwrap());
            assert_eq!(got, api_keys);
            let got = walk!(limit, |r| (r.scope.as_str(), r.name.clone()), |after, n| {
                let after = after
                    .as_ref()
                    .map(|(scope, name): &(&str, String)| (AttributeScope::parse(scope).unwrap(), name.as_str()));
                tx.attribute_definitions_page(acc.id, after, n).await.unwrap()
            });
            assert_eq!(got, definitions);
            let got = walk!(limit, |r| r.id, |after, n| tx
                .persons_page(acc.id, after, n)
                .await
                .unwrap());
            assert_eq!(got, persons);
            let got = walk!(limit, |r| r.push_reg_id.clone(), |after, n| tx
                .installations_page(acc.id, after.as_deref(), n)
                .await
                .unwrap());
            assert_eq!(got, installations);
            let got = walk!(limit, |r| r.id, |after, n| tx
                .merge_entries_page(acc.id, after, n)
                .await
                .unwrap());
            assert_eq!(got, merge_log);
        }
    }
    // A page after the last key is empty; a limit of 0 asks for nothing; a huge limit is capped.
    let last = snap.persons.iter().map(|p| p.id).max().unwrap();
    assert!(
        tx.persons_page(accounts[0].id, Some(last), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(tx.persons_page(accounts[0].id, None, 0).await.unwrap().is_empty());
    assert_eq!(
        tx.persons_page(accounts[0].id, None, u32::MAX).await.unwrap().len(),
        12.min(MAX_PAGE as usize)
    );
}

/// `insert_attribute_definition` stores every field as given, and a second definition of the same
/// account, scope and name is a conflict (not the silent first-wins of `define_attribute`); the
/// same name in the other scope or another account is not.
pub async fn insert_attribute_definition_refuses_a_duplicate(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let other = account(40);
    let def = AttributeDefinition {
        account_id: acc.id,
        scope: AttributeScope::Installation,
        name: "orders".into(),
        attr_type: AttributeType::ListOfObjects,
        object_schema: Some(vec![SchemaField {
            name: "at".into(),
            field_type: AttributeType::DateTime,
        }]),
        origin: DefinitionOrigin::Api,
        created_at: 77,
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&other).await.unwrap();
    tx.insert_attribute_definition(&def).await.unwrap();
    let mut person_scope = def.clone();
    person_scope.scope = AttributeScope::Person;
    tx.insert_attribute_definition(&person_scope).await.unwrap();
    let mut elsewhere = def.clone();
    elsewhere.account_id = other.id;
    tx.insert_attribute_definition(&elsewhere).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let mut again = def.clone();
    again.attr_type = AttributeType::String;
    again.object_schema = None;
    assert_eq!(
        conflict_on(tx.insert_attribute_definition(&again).await),
        Constraint::AttributeDefinition
    );
    drop(tx);

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(
        tx.attribute_definition(acc.id, AttributeScope::Installation, "orders")
            .await
            .unwrap(),
        Some(def)
    );
    assert_eq!(tx.count_rows(acc.id, RowKind::AttributeDefinition).await.unwrap(), 2);
}

/// `insert_persons` and `insert_installations` store exactly what one insert per row stores
/// (every field, keys and tags in order, persons without any), also after `refresh_statistics`
/// in the same transaction; an empty batch does nothing; a
/// duplicate key inside a batch, or against a stored row, is the same conflict as one insert
/// would meet.
pub async fn batch_inserts_store_what_single_inserts_store(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;
    let mut persons = Vec::new();
    for n in 0..7 {
        let mut p = if n % 2 == 0 {
            full_person(acc.id)
        } else {
            person(acc.id)
        };
        if n % 2 == 0 {
            p.phones = vec![format!("38591000000{n}"), format!("14155550{n}00")];
            p.emails = vec![format!("Z{n}@x.org"), format!("a{n}@x.org")];
            p.external_user_id = Some(format!("ext-{n}"));
        }
        persons.push(p);
    }
    let mut insts: Vec<Installation> = persons
        .iter()
        .enumerate()
        .map(|(n, p)| {
            with_token(
                installation(&app, p.id, 50 - n as i64),
                PushServiceType::Firebase,
                &format!("t{n}"),
            )
        })
        .collect();
    insts[0].is_primary = true;
    insts[1].system.os = Some("iOS".into());
    insts[1].token_cleared_reason = Some(TokenClearedReason::Unregistered);
    insts[1].token_cleared_at = Some(3);
    let mut tx = store.begin().await.unwrap();
    tx.insert_persons(&[]).await.unwrap();
    tx.insert_installations(&[]).await.unwrap();
    tx.insert_persons(&persons).await.unwrap();
    tx.insert_installations(&insts).await.unwrap();
    // What an import does last: statistics refreshed inside the transaction, which goes on.
    tx.refresh_statistics().await.unwrap();
    assert_eq!(tx.count_rows(acc.id, RowKind::Person).await.unwrap(), 7);
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    persons.sort_by_key(|p| p.id);
    insts.sort_by(|a, b| a.push_reg_id.cmp(&b.push_reg_id));
    assert_eq!(snap.persons, persons);
    assert_eq!(snap.installations, insts);
    drop(tx);

    // A key taken twice inside one batch, or a key already stored.
    let mut a = person(acc.id);
    a.phones = vec!["1999000001".into()];
    let mut b = person(acc.id);
    b.phones = vec!["1999000001".into()];
    let mut tx = store.begin().await.unwrap();
    assert_eq!(conflict_on(tx.insert_persons(&[a.clone(), b]).await), Constraint::Phone);
    drop(tx);
    let mut c = person(acc.id);
    c.external_user_id = Some("ext-0".into());
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        conflict_on(tx.insert_persons(&[a, c]).await),
        Constraint::ExternalUserId
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    let taker = with_token(installation(&app, persons[1].id, 60), PushServiceType::Gcm, "t3");
    assert_eq!(
        conflict_on(tx.insert_installations(&[taker]).await),
        Constraint::PushToken
    );
    drop(tx);
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.snapshot().await.unwrap(), snap);
}
