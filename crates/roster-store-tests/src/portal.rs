//! Behaviour-suite scenarios of [`PortalTx`](roster_store::portal::PortalTx) (the People
//! portal's sessions), for every backend. A backend runs them from a test file of its own:
//!
//! ```text
//! roster_store_tests::portal_store_suite!("sqlite", fresh);
//! ```

use std::sync::Arc;

use roster_model::ApiKey;
use roster_store::Store;
use roster_store::portal::PortalSession;
use uuid::Uuid;

use crate::fixtures::{account, seeded};

/// Generates one `#[tokio::test]` per scenario of this module, each on a store from `fresh`
/// (as [`store_behaviour_suite!`](crate::store_behaviour_suite) does for the core scenarios).
#[macro_export]
macro_rules! portal_store_suite {
    ($backend:literal, $fresh:expr $(,)?) => {
        $crate::portal_store_suite!(@list (tests $backend, $fresh));
    };
    (@list $what:tt) => {
        $crate::portal_store_suite! { @expand $what;
            portal_sessions_round_trip_with_their_key,
            touch_and_flash_change_only_their_session,
            ended_sessions_are_deleted_per_account_in_batches,
            sessions_go_with_their_api_key,
        }
    };
    (@expand (tests $backend:literal, $fresh:expr); $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::run($backend, stringify!($name), $fresh, $crate::portal::$name).await;
            }
        )*
    };
    (@expand (names); $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
}

/// An API key of `account_id` whose hash is derived from `n`.
fn api_key(account_id: Uuid, n: u8) -> ApiKey {
    ApiKey {
        account_id,
        id: Uuid::new_v4(),
        name: format!("portal-{n}"),
        scopes: vec!["people:read".into()],
        key_hash: format!("{n:02x}").repeat(32),
        key_prefix: "rk_portal".into(),
        created_at: 1_000,
        expires_at: None,
        last_used_at: None,
    }
}

/// A session of `key` whose hash is derived from `n`, created at `at`, ending a day later.
fn session(key: &ApiKey, n: u8, at: i64) -> PortalSession {
    PortalSession {
        account_id: key.account_id,
        id_hash: format!("{n:02x}").repeat(32),
        api_key_id: key.id,
        created_at: at,
        last_seen_at: at,
        expires_at: at + 86_400_000,
        flash: None,
    }
}

/// Stores `keys` and `sessions` in one transaction.
async fn insert(store: &dyn Store, keys: &[&ApiKey], sessions: &[&PortalSession]) {
    let mut tx = store.begin().await.unwrap();
    for key in keys {
        tx.insert_api_key(key).await.unwrap();
    }
    for s in sessions {
        tx.insert_portal_session(s).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// The session as the store has it now (`None` when gone).
async fn read(store: &dyn Store, id_hash: &str) -> Option<PortalSession> {
    let mut tx = store.begin_read().await.unwrap();
    let found = tx.portal_session(id_hash).await.unwrap().map(|(s, _)| s);
    tx.rollback().await.unwrap();
    found
}

/// A session reads back field for field, with the API key it acts as; an unknown hash is
/// `None`; a second session under the same hash is refused; deleting answers whether it existed.
pub async fn portal_sessions_round_trip_with_their_key(store: Arc<dyn Store>) {
    let (acc, _) = seeded(&*store).await;
    let key = api_key(acc.id, 1);
    let mut s = session(&key, 0xa1, 5_000);
    s.flash = Some("Saved <b>".into());
    insert(&*store, &[&key], &[&s]).await;

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(
        tx.portal_session(&s.id_hash).await.unwrap(),
        Some((s.clone(), key.clone()))
    );
    assert_eq!(tx.portal_session(&"ff".repeat(32)).await.unwrap(), None);
    tx.rollback().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_portal_session(&s).await.is_err(), "a session hash is unique");
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_portal_session(&s.id_hash).await.unwrap());
    assert!(!tx.delete_portal_session(&s.id_hash).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(read(&*store, &s.id_hash).await, None);
}

/// `touch` moves `last_seen_at` only when the last record is more than `min_interval` old, and a
/// flash is set and cleared; neither touches another session.
pub async fn touch_and_flash_change_only_their_session(store: Arc<dyn Store>) {
    let (acc, _) = seeded(&*store).await;
    let key = api_key(acc.id, 2);
    let (a, b) = (session(&key, 0xb1, 10_000), session(&key, 0xb2, 10_000));
    insert(&*store, &[&key], &[&a, &b]).await;

    // Recorded at 10,000: 60,000 later is not "more than" the interval yet.
    for too_soon in [40_000, 70_000] {
        let mut tx = store.begin().await.unwrap();
        tx.touch_portal_session(&a.id_hash, too_soon, 60_000).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            read(&*store, &a.id_hash).await.unwrap().last_seen_at,
            10_000,
            "too soon to record at {too_soon}"
        );
    }
    let mut tx = store.begin().await.unwrap();
    tx.touch_portal_session(&a.id_hash, 70_001, 60_000).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        read(&*store, &a.id_hash).await.unwrap().last_seen_at,
        70_001,
        "one millisecond past the interval"
    );

    let mut tx = store.begin().await.unwrap();
    tx.touch_portal_session(&a.id_hash, 140_000, 60_000).await.unwrap();
    tx.set_portal_flash(&a.id_hash, Some("Primary changed")).await.unwrap();
    tx.commit().await.unwrap();
    let now_a = read(&*store, &a.id_hash).await.unwrap();
    assert_eq!(now_a.last_seen_at, 140_000);
    assert_eq!(now_a.flash.as_deref(), Some("Primary changed"));
    assert_eq!(
        read(&*store, &b.id_hash).await,
        Some(b.clone()),
        "the other session is as it was"
    );

    let mut tx = store.begin().await.unwrap();
    tx.set_portal_flash(&a.id_hash, None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(read(&*store, &a.id_hash).await.unwrap().flash, None);
}

/// Only the given account's ended sessions go (idle since before the cut, or past their
/// absolute end), at most `limit` per call; live sessions and other accounts' stay.
pub async fn ended_sessions_are_deleted_per_account_in_batches(store: Arc<dyn Store>) {
    let (acc, _) = seeded(&*store).await;
    let other = account(12);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&other).await.unwrap();
    tx.commit().await.unwrap();
    let (mine, theirs) = (api_key(acc.id, 3), api_key(other.id, 4));
    let idle_1 = session(&mine, 0xc1, 1_000);
    let idle_2 = session(&mine, 0xc2, 2_000);
    let mut past_end = session(&mine, 0xc3, 50_000);
    past_end.expires_at = 60_000;
    let live = session(&mine, 0xc4, 50_000);
    let theirs_idle = session(&theirs, 0xc5, 1_000);
    insert(
        &*store,
        &[&mine, &theirs],
        &[&idle_1, &idle_2, &past_end, &live, &theirs_idle],
    )
    .await;

    // Idle cut at 10_000, now 70_000: three of mine ended; one call of limit 2, then the rest.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.delete_ended_portal_sessions(acc.id, 10_000, 70_000, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        tx.delete_ended_portal_sessions(acc.id, 10_000, 70_000, 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        tx.delete_ended_portal_sessions(acc.id, 10_000, 70_000, 2)
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();
    for gone in [&idle_1, &idle_2, &past_end] {
        assert_eq!(read(&*store, &gone.id_hash).await, None);
    }
    assert_eq!(read(&*store, &live.id_hash).await, Some(live.clone()));
    assert_eq!(read(&*store, &theirs_idle.id_hash).await, Some(theirs_idle.clone()));
}

/// Deleting an API key deletes its sessions and no other key's.
pub async fn sessions_go_with_their_api_key(store: Arc<dyn Store>) {
    let (acc, _) = seeded(&*store).await;
    let (k1, k2) = (api_key(acc.id, 5), api_key(acc.id, 6));
    let (s1, s2) = (session(&k1, 0xd1, 1_000), session(&k2, 0xd2, 1_000));
    insert(&*store, &[&k1, &k2], &[&s1, &s2]).await;

    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_api_key(acc.id, k1.id).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(read(&*store, &s1.id_hash).await, None);
    assert_eq!(read(&*store, &s2.id_hash).await, Some(s2.clone()));
}
