//! Behaviour-suite scenarios of [`AdminTx`](roster_store::AdminTx) (the deletions of the
//! management API), for every backend. A backend runs them from a test file of its own:
//!
//! ```text
//! roster_store_tests::admin_store_suite!("sqlite", fresh);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use roster_model::{ApiKey, AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, JwtKey};
use roster_store::Store;
use roster_store::push::Bulk;
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{account, application, full_person, installation, person, seeded};
use crate::fixtures::{delivery, message};

/// Generates one `#[tokio::test]` per scenario of this module, each on a store from `fresh`
/// (as [`store_behaviour_suite!`](crate::store_behaviour_suite) does for the core scenarios).
#[macro_export]
macro_rules! admin_store_suite {
    ($backend:literal, $fresh:expr $(,)?) => {
        $crate::admin_store_suite!(@list (tests $backend, $fresh));
    };
    (@list $what:tt) => {
        $crate::admin_store_suite! { @expand $what;
            api_keys_are_deleted_only_in_their_account,
            application_deletion_takes_installations_messages_records_and_jwt_keys,
            attribute_values_are_deleted_in_one_scope,
        }
    };
    (@expand (tests $backend:literal, $fresh:expr); $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::run($backend, stringify!($name), $fresh, $crate::admin::$name).await;
            }
        )*
    };
    (@expand (names); $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
}

fn api_key(account_id: Uuid) -> ApiKey {
    ApiKey {
        account_id,
        id: Uuid::new_v4(),
        name: "k".into(),
        scopes: vec!["admin".into()],
        key_hash: Uuid::new_v4().simple().to_string(),
        key_prefix: "rk_abcdefg".into(),
        created_at: 1_000,
        expires_at: None,
        last_used_at: None,
    }
}

/// A key is found and deleted only through its own account; deleting it twice answers `false`.
pub async fn api_keys_are_deleted_only_in_their_account(store: Arc<dyn Store>) {
    let (acc, _) = seeded(&*store).await;
    let other = account(11);
    let (mine, theirs) = (api_key(acc.id), api_key(other.id));
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&other).await.unwrap();
    tx.insert_api_key(&mine).await.unwrap();
    tx.insert_api_key(&theirs).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.api_key_for_update(acc.id, mine.id).await.unwrap(),
        Some(mine.clone())
    );
    assert_eq!(tx.api_key_for_update(acc.id, theirs.id).await.unwrap(), None);
    assert!(!tx.delete_api_key(acc.id, theirs.id).await.unwrap());
    assert!(tx.delete_api_key(acc.id, mine.id).await.unwrap());
    assert!(!tx.delete_api_key(acc.id, mine.id).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.api_key_by_hash(&mine.key_hash).await.unwrap(), None);
    assert_eq!(tx.api_key_by_hash(&theirs.key_hash).await.unwrap(), Some(theirs));
    tx.rollback().await.unwrap();
}

/// Owners are listed once each, by id, in pages; deleting by owner takes only that application's
/// installations; the application goes with its JWT keys, messages, their records and audience
/// jobs, and the bulks it emptied; the other application keeps all of its own.
pub async fn application_deletion_takes_installations_messages_records_and_jwt_keys(store: Arc<dyn Store>) {
    let (acc, doomed) = seeded(&*store).await;
    let kept = application(acc.id);
    let (p, q) = (person(acc.id), person(acc.id));
    let p_doomed = [installation(&doomed, p.id, 3_000), installation(&doomed, p.id, 3_001)];
    let q_doomed = installation(&doomed, q.id, 3_002);
    let p_kept = installation(&kept, p.id, 3_003);
    let m_doomed = message(&doomed, "shared", "m-doomed", 0);
    let m_kept = message(&kept, "shared", "m-kept", 1);
    let m_alone = message(&doomed, "alone", "m-alone", 0);
    let jwt = |app_id| JwtKey {
        account_id: acc.id,
        application_id: app_id,
        kid: "k1".into(),
        secret: vec![7; 32],
        created_at: 1_000,
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_application(&kept).await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_person(&q).await.unwrap();
    for inst in p_doomed.iter().chain([&q_doomed, &p_kept]) {
        tx.insert_installation(inst).await.unwrap();
    }
    tx.insert_jwt_key(&jwt(doomed.id)).await.unwrap();
    tx.insert_jwt_key(&jwt(kept.id)).await.unwrap();
    for bulk in ["shared", "alone"] {
        let bulk = Bulk {
            account_id: acc.id,
            bulk_id: bulk.into(),
            created_at: 5_000,
        };
        tx.insert_bulk(&bulk).await.unwrap();
    }
    for m in [&m_doomed, &m_kept, &m_alone] {
        tx.insert_message(m).await.unwrap();
    }
    tx.insert_deliveries(&[
        delivery(&m_doomed, &p_doomed[0].push_reg_id, p.id, 6_000),
        delivery(&m_kept, &p_kept.push_reg_id, p.id, 6_000),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let app = tx.application_for_update(acc.id, doomed.id).await.unwrap().unwrap();
    assert_eq!(app.id, doomed.id);
    assert_eq!(
        tx.application_for_update(Uuid::new_v4(), doomed.id).await.unwrap(),
        None
    );
    let mut all = vec![p.id, q.id];
    all.sort();
    assert_eq!(tx.installation_owners(acc.id, doomed.id, 10).await.unwrap(), all);
    assert_eq!(tx.installation_owners(acc.id, doomed.id, 1).await.unwrap(), all[..1]);
    assert_eq!(tx.installation_owners(acc.id, kept.id, 10).await.unwrap(), vec![p.id]);
    // Only the doomed application's installations of the named owners.
    assert_eq!(
        tx.delete_installations_of_owners(acc.id, doomed.id, &[p.id])
            .await
            .unwrap(),
        2
    );
    assert_eq!(tx.installation_owners(acc.id, doomed.id, 10).await.unwrap(), vec![q.id]);
    assert_eq!(
        tx.delete_installations_of_owners(acc.id, doomed.id, &[q.id])
            .await
            .unwrap(),
        1
    );
    assert!(tx.delete_application(acc.id, doomed.id).await.unwrap());
    assert!(!tx.delete_application(acc.id, doomed.id).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let s = tx.snapshot().await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(s.applications.iter().map(|a| a.id).collect::<Vec<_>>(), vec![kept.id]);
    assert_eq!(
        s.installations
            .iter()
            .map(|i| i.push_reg_id.clone())
            .collect::<Vec<_>>(),
        vec![p_kept.push_reg_id.clone()]
    );
    assert_eq!(s.jwt_keys.len(), 1);
    assert_eq!(s.jwt_keys[0].application_id, kept.id);
    assert_eq!(s.messages.len(), 1);
    assert_eq!(s.messages[0].message_id, "m-kept");
    assert_eq!(s.deliveries.len(), 1);
    assert_eq!(s.deliveries[0].message_id, "m-kept");
    // "alone" lost its only message; "shared" keeps the other application's.
    assert_eq!(
        s.bulks.iter().map(|b| b.bulk_id.as_str()).collect::<Vec<_>>(),
        vec!["shared"]
    );
    // Persons are the core's business: the store deleted none.
    assert_eq!(s.persons.len(), 2);
}

fn definition(account_id: Uuid, scope: AttributeScope, name: &str, attr_type: AttributeType) -> AttributeDefinition {
    AttributeDefinition {
        account_id,
        scope,
        name: name.into(),
        attr_type,
        object_schema: None,
        origin: DefinitionOrigin::Api,
        created_at: 1_000,
    }
}

/// The values of one name in one scope go, with their index rows (a filter on them matches
/// nobody), person versions move; the other scope, other names and other accounts keep theirs.
pub async fn attribute_values_are_deleted_in_one_scope(store: Arc<dyn Store>) {
    let (acc, app) = seeded(&*store).await;
    let other = account(11);
    let other_app = application(other.id);
    // Names that need quoting in a JSON path: the store must not build one from them.
    let name = "score \"x\".y";
    let mut holder = full_person(acc.id);
    holder.custom_attributes = BTreeMap::from([(name.to_string(), json!(1.5)), ("count".to_string(), json!(3))]);
    let mut bystander = person(acc.id);
    bystander.custom_attributes = BTreeMap::from([("count".to_string(), json!(4))]);
    let mut foreign = full_person(other.id);
    foreign.custom_attributes = BTreeMap::from([(name.to_string(), json!(2.5))]);
    let mut inst = installation(&app, holder.id, 3_000);
    inst.custom_attributes = BTreeMap::from([(name.to_string(), json!(9))]);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&other).await.unwrap();
    tx.insert_application(&other_app).await.unwrap();
    for (account_id, scope) in [
        (acc.id, AttributeScope::Person),
        (acc.id, AttributeScope::Installation),
        (other.id, AttributeScope::Person),
    ] {
        tx.insert_attribute_definition(&definition(account_id, scope, name, AttributeType::Decimal))
            .await
            .unwrap();
    }
    tx.insert_attribute_definition(&definition(
        acc.id,
        AttributeScope::Person,
        "count",
        AttributeType::Decimal,
    ))
    .await
    .unwrap();
    for p in [&holder, &bystander, &foreign] {
        tx.insert_person(p).await.unwrap();
    }
    tx.insert_installation(&inst).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(found_by_name(&mut *tx, acc.id, name).await, vec![holder.id]);
    tx.rollback().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.delete_attribute_definition(acc.id, AttributeScope::Person, name)
            .await
            .unwrap()
    );
    assert!(
        !tx.delete_attribute_definition(acc.id, AttributeScope::Person, name)
            .await
            .unwrap()
    );
    assert_eq!(
        tx.delete_attribute_values(acc.id, AttributeScope::Person, name, 9_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        tx.delete_attribute_values(acc.id, AttributeScope::Person, name, 9_000)
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let got = tx.person(acc.id, holder.id).await.unwrap().unwrap();
    assert_eq!(got.custom_attributes, BTreeMap::from([("count".to_string(), json!(3))]));
    assert_eq!((got.version, got.updated_at), (holder.version + 1, 9_000));
    assert_eq!(tx.person(acc.id, bystander.id).await.unwrap().unwrap(), bystander);
    assert_eq!(tx.person(other.id, foreign.id).await.unwrap().unwrap(), foreign);
    assert_eq!(tx.installation(&inst.push_reg_id).await.unwrap().unwrap(), inst);
    let defs = tx.attribute_definitions(acc.id, None).await.unwrap();
    assert_eq!(defs.len(), 2, "{defs:?}");
    // The index rows went too: a filter on the name found the holder before, nobody now.
    assert!(found_by_name(&mut *tx, acc.id, name).await.is_empty());
    tx.rollback().await.unwrap();
}

/// The persons of the account (any application) a `customAttributes.<name> > 0` filter finds.
async fn found_by_name(tx: &mut dyn roster_store::Tx, account_id: Uuid, name: &str) -> Vec<Uuid> {
    let scope = roster_store::audience::Scope {
        account_id,
        application_id: None,
    };
    let defs = vec![definition(
        account_id,
        AttributeScope::Person,
        name,
        AttributeType::Decimal,
    )];
    let mut filter = serde_json::Map::new();
    filter.insert(format!("customAttributes.{name}"), json!({"$gt": 0}));
    let filter = roster_model::filter::Filter::parse(&serde_json::Value::Object(filter), &defs, "f").unwrap();
    let found = tx.search_people(scope, &filter, None, 10).await.unwrap();
    found.into_iter().map(|f| f.person.id).collect()
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of this module is in the macro's list, and nothing else is.
    #[test]
    fn the_suite_runs_every_scenario() {
        let listed: &[&str] = admin_store_suite!(@list (names));
        let mut defined: Vec<&str> = include_str!("admin.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|rest| rest.split('(').next().unwrap_or(rest))
            .collect();
        let mut listed = listed.to_vec();
        defined.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, defined);
    }
}
