//! Scenarios of the retention purges ([`roster_store::RetentionTx`]): rows with controlled
//! timestamps, purged in batches by age across every account, with what must stay (`QUEUED`
//! records, messages that still have records or a pending audience, young rows, merge-log
//! entries whose snapshots were purged). A backend runs them from its `tests/retention.rs`:
//! `retention_store_suite!("sqlite", fresh)`.

use std::sync::Arc;

use roster_model::{Application, InstallationBefore, MergeBefore, MergeLogEntry, MergeStatus, PersonSnapshot};
use roster_store::Store;
use roster_store::push::{AudienceJob, Bulk, Delivery, DeliveryStatus, IdempotencyRecord, IdempotencyState, Message};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{account, application, person, seeded};
use crate::fixtures::{delivery, message};

/// Generates one `#[tokio::test]` per retention scenario, each on a store from `fresh` (as
/// [`store_behaviour_suite!`](crate::store_behaviour_suite)).
#[macro_export]
macro_rules! retention_store_suite {
    ($backend:literal, $fresh:expr $(,)?) => {
        $crate::retention_store_suite!(@list (tests $backend, $fresh));
    };
    (@list $what:tt) => {
        $crate::retention_store_suite! { @expand $what;
            deliveries_messages_and_bulks_purge_by_age,
            idempotency_records_purge_after_they_expire,
            merge_snapshots_then_entries_purge_by_age,
            concurrent_sweeps_purge_each_row_once,
        }
    };
    (@expand (tests $backend:literal, $fresh:expr); $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::run($backend, stringify!($name), $fresh, $crate::retention::$name).await;
            }
        )*
    };
    (@expand (names); $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
}

/// A bulk created at `at`.
fn bulk(app: &Application, bulk_id: &str, at: i64) -> Bulk {
    Bulk {
        account_id: app.account_id,
        bulk_id: bulk_id.into(),
        created_at: at,
    }
}

/// A message created (and last changed) at `at`.
fn message_at(app: &Application, bulk_id: &str, message_id: &str, at: i64) -> Message {
    Message {
        created_at: at,
        updated_at: at,
        ..message(app, bulk_id, message_id, 0)
    }
}

/// A record of `m` to `push_reg_id` with `status`, last changed at `at`.
fn record(m: &Message, push_reg_id: &str, status: DeliveryStatus, at: i64) -> Delivery {
    Delivery {
        status,
        created_at: at,
        updated_at: at,
        ..delivery(m, push_reg_id, Uuid::new_v4(), at)
    }
}

/// Terminal records purge oldest first, `limit` at a time, from every account; `QUEUED` records
/// never. A message goes once none of its records remain (and no audience is pending), a bulk
/// once none of its messages remain; young rows stay.
pub async fn deliveries_messages_and_bulks_purge_by_age(store: Arc<dyn Store>) {
    let (_, app) = seeded(&*store).await;
    let other_account = account(20);
    let other_app = application(other_account.id);
    const CUT: i64 = 10_000;

    let m_old = message_at(&app, "b-old", "m-old", 1_000);
    let m_job = message_at(&app, "b-old", "m-job", 1_000);
    let m_empty = message_at(&app, "b-empty", "m-empty", 1_000);
    let m_young = message_at(&app, "b-young", "m-young", 60_000);
    let m_other = message_at(&other_app, "b-other", "m-other", 1_000);
    let accepted = record(&m_old, "inst-1", DeliveryStatus::Accepted, 2_000);
    let rejected = record(&m_old, "inst-2", DeliveryStatus::Rejected, 3_000);
    let queued = record(&m_old, "inst-3", DeliveryStatus::Queued, 1_500);
    let recent = record(&m_old, "inst-4", DeliveryStatus::Failed, 50_000);
    let other = record(&m_other, "inst-9", DeliveryStatus::Unregistered, 2_500);
    {
        let mut tx = store.begin().await.unwrap();
        tx.insert_account(&other_account).await.unwrap();
        tx.insert_application(&other_app).await.unwrap();
        for (a, b, at) in [
            (&app, "b-old", 1_000),
            (&app, "b-empty", 1_000),
            (&app, "b-bare", 1_000),
            (&app, "b-young", 60_000),
            (&other_app, "b-other", 1_000),
        ] {
            tx.insert_bulk(&bulk(a, b, at)).await.unwrap();
        }
        for m in [&m_old, &m_job, &m_empty, &m_young, &m_other] {
            tx.insert_message(m).await.unwrap();
        }
        tx.insert_audience_job(&AudienceJob {
            account_id: app.account_id,
            message_id: "m-job".into(),
            application_id: app.id,
            filter: json!({"tags": "vip"}),
            target_only_primary: false,
            after_push_reg_id: None,
            created_at: 1_000,
            updated_at: 1_000,
        })
        .await
        .unwrap();
        tx.insert_deliveries(&[accepted.clone(), rejected.clone(), queued.clone(), recent.clone()])
            .await
            .unwrap();
        tx.insert_deliveries(std::slice::from_ref(&other)).await.unwrap();
        tx.commit().await.unwrap();
    }

    // Three terminal records are older than the cut-off: one per call, oldest first.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.purge_deliveries(CUT, 1).await.unwrap(), 1);
    assert!(
        tx.delivery(app.account_id, accepted.delivery_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        tx.delivery(app.account_id, rejected.delivery_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(tx.purge_deliveries(CUT, 1).await.unwrap(), 1);
    assert!(
        tx.delivery(other_account.id, other.delivery_id)
            .await
            .unwrap()
            .is_none(),
        "the sweep covers every account"
    );
    assert_eq!(tx.purge_deliveries(CUT, 10).await.unwrap(), 1);
    assert_eq!(tx.purge_deliveries(CUT, 10).await.unwrap(), 0);
    assert!(
        tx.delivery(app.account_id, rejected.delivery_id)
            .await
            .unwrap()
            .is_none()
    );
    let kept = tx
        .delivery(app.account_id, queued.delivery_id)
        .await
        .unwrap()
        .expect("QUEUED stays");
    assert_eq!(kept.status, DeliveryStatus::Queued);
    assert!(tx.delivery(app.account_id, recent.delivery_id).await.unwrap().is_some());
    // Even with every cut-off in the future, a QUEUED record stays.
    assert_eq!(
        tx.purge_deliveries(i64::MAX, 10).await.unwrap(),
        1,
        "only the recent FAILED one"
    );
    assert!(tx.delivery(app.account_id, queued.delivery_id).await.unwrap().is_some());
    tx.commit().await.unwrap();

    // Messages: m-old still has its QUEUED record, m-job a pending audience, m-young is young.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.purge_messages(CUT, 1).await.unwrap(), 1);
    assert_eq!(tx.purge_messages(CUT, 10).await.unwrap(), 1);
    assert_eq!(tx.purge_messages(CUT, 10).await.unwrap(), 0);
    assert!(tx.message(app.account_id, "m-empty").await.unwrap().is_none());
    assert!(tx.message(other_account.id, "m-other").await.unwrap().is_none());
    for kept in ["m-old", "m-job", "m-young"] {
        assert!(
            tx.message(app.account_id, kept).await.unwrap().is_some(),
            "{kept} stays"
        );
    }
    // Bulks: b-empty and b-bare have no messages left; b-other neither (other account).
    assert_eq!(tx.purge_bulks(CUT, 2).await.unwrap(), 2);
    assert_eq!(tx.purge_bulks(CUT, 10).await.unwrap(), 1);
    assert_eq!(tx.purge_bulks(CUT, 10).await.unwrap(), 0);
    for (acc, gone) in [
        (app.account_id, "b-empty"),
        (app.account_id, "b-bare"),
        (other_account.id, "b-other"),
    ] {
        assert!(!tx.bulk_exists(acc, gone).await.unwrap(), "{gone} purged");
    }
    for kept in ["b-old", "b-young"] {
        assert!(tx.bulk_exists(app.account_id, kept).await.unwrap(), "{kept} stays");
    }
    tx.commit().await.unwrap();

    // Once the audience is resolved and the last record is final and old, the message goes too.
    let mut tx = store.begin().await.unwrap();
    tx.delete_audience_job(app.account_id, "m-job").await.unwrap();
    assert_eq!(tx.purge_messages(CUT, 10).await.unwrap(), 1, "m-job");
    assert!(tx.message(app.account_id, "m-old").await.unwrap().is_some());
    tx.commit().await.unwrap();
}

/// An idempotency record goes once it expired, oldest first; a live one stays.
pub async fn idempotency_records_purge_after_they_expire(store: Arc<dyn Store>) {
    let (_, app) = seeded(&*store).await;
    let record = |key: &str, expires_at: i64| IdempotencyRecord {
        account_id: app.account_id,
        key: key.into(),
        fingerprint: "f".into(),
        owner: Uuid::new_v4(),
        state: IdempotencyState::Done,
        response_status: Some(201),
        response_body: Some(b"{}".to_vec()),
        created_at: 1_000,
        expires_at,
    };
    let mut tx = store.begin().await.unwrap();
    for (key, expires) in [("k-first", 5_000), ("k-second", 9_000), ("k-live", 20_000)] {
        tx.insert_idempotency_record(&record(key, expires)).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.purge_idempotency_records(10_000, 1).await.unwrap(), 1);
    assert!(
        tx.idempotency_record(app.account_id, "k-first")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        tx.idempotency_record(app.account_id, "k-second")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(tx.purge_idempotency_records(10_000, 10).await.unwrap(), 1);
    assert_eq!(tx.purge_idempotency_records(10_000, 10).await.unwrap(), 0);
    assert!(
        tx.idempotency_record(app.account_id, "k-second")
            .await
            .unwrap()
            .is_none()
    );
    assert!(tx.idempotency_record(app.account_id, "k-live").await.unwrap().is_some());
    tx.commit().await.unwrap();
}

/// Snapshots of entries older than the image retention are purged oldest first (the entry stays,
/// unchanged otherwise, and no longer reversible); entries older than the entry retention go.
pub async fn merge_snapshots_then_entries_purge_by_age(store: Arc<dyn Store>) {
    let (acc, _) = seeded(&*store).await;
    let target = person(acc.id);
    let entry = |created_at: i64, with_before: bool| MergeLogEntry {
        account_id: acc.id,
        id: Uuid::new_v4(),
        created_at,
        actor: json!({"type": "API_KEY", "id": "k"}),
        push_reg_id: format!("inst-{created_at}"),
        source_person_id: Some(Uuid::new_v4()),
        target_person_id: Some(target.id),
        source_deleted: true,
        after_forced_depersonalize: false,
        dropped_attributes: vec![],
        before: with_before.then(|| MergeBefore {
            source: PersonSnapshot::of(&person(acc.id)),
            target: PersonSnapshot::of(&target),
            installation: InstallationBefore {
                is_primary: false,
                target_primary_push_reg_id: None,
            },
        }),
        after_target_version: 2,
        after_source_version: None,
        status: MergeStatus::Applied,
        reversed_at: None,
        reversed_by: None,
        redacted: false,
    };
    let oldest = entry(1_000, true);
    let bare = entry(2_000, false);
    let older = entry(5_000, true);
    let young = entry(50_000, true);
    let mut tx = store.begin().await.unwrap();
    for e in [&oldest, &bare, &older, &young] {
        tx.insert_merge_entry(e).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.purge_merge_snapshots(10_000, 1).await.unwrap(), 1);
    let purged = tx
        .merge_entry(acc.id, oldest.id)
        .await
        .unwrap()
        .expect("the entry stays");
    assert_eq!(
        purged,
        MergeLogEntry {
            before: None,
            ..oldest.clone()
        }
    );
    assert!(!roster_model::resources::MergeEntryResource::of(&purged, true).reversible);
    assert!(
        tx.merge_entry(acc.id, older.id)
            .await
            .unwrap()
            .unwrap()
            .before
            .is_some()
    );
    assert_eq!(
        tx.purge_merge_snapshots(10_000, 10).await.unwrap(),
        1,
        "the entry without one is skipped"
    );
    assert_eq!(tx.purge_merge_snapshots(10_000, 10).await.unwrap(), 0);
    assert!(
        tx.merge_entry(acc.id, older.id)
            .await
            .unwrap()
            .unwrap()
            .before
            .is_none()
    );
    assert_eq!(tx.merge_entry(acc.id, young.id).await.unwrap().unwrap(), young);

    assert_eq!(tx.purge_merge_entries(3_000, 1).await.unwrap(), 1);
    assert!(tx.merge_entry(acc.id, oldest.id).await.unwrap().is_none());
    assert_eq!(tx.purge_merge_entries(3_000, 10).await.unwrap(), 1);
    assert_eq!(tx.purge_merge_entries(3_000, 10).await.unwrap(), 0);
    assert!(tx.merge_entry(acc.id, bare.id).await.unwrap().is_none());
    assert!(tx.merge_entry(acc.id, older.id).await.unwrap().is_some());
    assert!(tx.merge_entry(acc.id, young.id).await.unwrap().is_some());
    tx.commit().await.unwrap();
}

/// Sweeps running at once (several server processes) share the work: every aged record is
/// purged exactly once, none fails, and the young ones stay.
pub async fn concurrent_sweeps_purge_each_row_once(store: Arc<dyn Store>) {
    const AGED: u64 = 600;
    let (_, app) = seeded(&*store).await;
    let m = message_at(&app, "b", "m", 1_000);
    let records: Vec<Delivery> = (0..AGED + 20)
        .map(|i| {
            let at = if i < AGED { 2_000 + i as i64 } else { 50_000 };
            record(&m, &format!("inst-{i:04}"), DeliveryStatus::Accepted, at)
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    tx.insert_bulk(&bulk(&app, "b", 1_000)).await.unwrap();
    tx.insert_message(&m).await.unwrap();
    tx.insert_deliveries(&records).await.unwrap();
    tx.commit().await.unwrap();

    let sweeps: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut purged = 0;
                loop {
                    let mut tx = store.begin().await.unwrap();
                    let n = tx.purge_deliveries(10_000, 50).await.unwrap();
                    tx.commit().await.unwrap();
                    purged += n;
                    if n == 0 {
                        return purged;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut total = 0;
    for sweep in sweeps {
        total += sweep.await.unwrap();
    }
    assert_eq!(total, AGED);
    let mut tx = store.begin_read().await.unwrap();
    let left = tx
        .deliveries_of_message(app.account_id, "m", None, None, 1_000)
        .await
        .unwrap();
    assert_eq!(left.len(), 20);
    assert!(left.iter().all(|d| d.updated_at == 50_000));
}
