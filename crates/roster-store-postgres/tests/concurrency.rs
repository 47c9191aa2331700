//! What PostgreSQL adds over SQLite's single writer: transactions really run side by side, so
//! these tests pin how they meet. A read-modify-write of one row serialises on its lock and
//! loses nothing; the loser of a uniqueness race gets `Conflict`; a deadlock or a lock held past
//! `lock_timeout` is `Retry`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use roster_model::{AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, PushServiceType};
use roster_store::{Constraint, Store, StoreError};
use roster_store_postgres::PgStoreOptions;
use tokio::sync::oneshot;
use uuid::Uuid;

/// How long a waiting transaction is given to show that it waits.
const WAIT: Duration = Duration::from_millis(300);

/// PostgreSQL's write transactions run side by side, so none of them may skip the person lock
/// (`Tx::writes_alone`): two are open at once here.
#[tokio::test]
async fn write_transactions_do_not_write_alone() {
    let Some((_db, store)) = fresh().await else { return };
    let first = store.begin().await.unwrap();
    let second = store.begin().await.unwrap();
    assert!(!first.writes_alone());
    assert!(!second.writes_alone());
    assert!(!store.begin_read().await.unwrap().writes_alone());
    first.rollback().await.unwrap();
    second.rollback().await.unwrap();
}

/// Two transactions each read a person (locking it), change it and write it back. The second
/// one's read waits for the first to commit and then sees its change, so both increments and
/// both tags survive.
#[tokio::test]
async fn read_modify_writes_of_one_person_serialise() {
    let Some((_db, store)) = fresh().await else { return };
    let (acc, _app) = seeded(&store).await;
    let p = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();
    let store = Arc::new(store);

    // The first transaction reads and holds the row.
    let mut first = store.begin().await.unwrap();
    let mut mine = first.person(acc.id, p.id).await.unwrap().unwrap();

    // The second one starts its read-modify-write meanwhile.
    let second = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let mut theirs = tx.person(acc.id, p.id).await.unwrap().unwrap();
            let seen_version = theirs.version;
            theirs.version += 1;
            theirs.tags.insert("second".into());
            tx.update_person(&theirs).await.unwrap();
            tx.commit().await.unwrap();
            seen_version
        }
    });
    tokio::time::sleep(WAIT).await;
    assert!(!second.is_finished(), "the second read did not wait for the row lock");

    mine.version += 1;
    mine.tags.insert("first".into());
    first.update_person(&mine).await.unwrap();
    first.commit().await.unwrap();
    // The second transaction read the first one's result, not the row as it was.
    assert_eq!(second.await.unwrap(), 2);

    let mut tx = store.begin_read().await.unwrap();
    let stored = tx.person(acc.id, p.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 3);
    assert!(stored.tags.contains("first") && stored.tags.contains("second"));
}

/// Many concurrent increments of one person's version, each a read-modify-write in its own
/// transaction: none is lost.
#[tokio::test]
async fn concurrent_increments_lose_nothing() {
    let options = PgStoreOptions {
        pool_size: 6,
        ..PgStoreOptions::default()
    };
    let Some((_db, store)) = fresh_with(&options).await else {
        return;
    };
    let (acc, _app) = seeded(&store).await;
    let p = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let mut q = tx.person(acc.id, p.id).await.unwrap().unwrap();
            tokio::task::yield_now().await;
            q.version += 1;
            q.tags.insert(format!("t{i}"));
            tx.update_person(&q).await.unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut tx = store.begin_read().await.unwrap();
    let stored = tx.person(acc.id, p.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 25);
    assert_eq!(stored.tags.len(), 24);
}

/// A read-only transaction neither locks nor waits for a lock.
#[tokio::test]
async fn readers_do_not_wait_for_row_locks() {
    let Some((_db, store)) = fresh().await else { return };
    let (acc, _app) = seeded(&store).await;
    let p = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();

    let mut writer = store.begin().await.unwrap();
    writer.person(acc.id, p.id).await.unwrap().unwrap();
    let mut reader = store.begin_read().await.unwrap();
    let read = tokio::time::timeout(WAIT, reader.person(acc.id, p.id)).await;
    assert_eq!(read.expect("a reader waited for a row lock").unwrap(), Some(p));
}

/// Two transactions insert the same identity key: the second one's insert waits for the first;
/// when the first commits, the second gets `Conflict` naming the rule; when the first rolls
/// back, the second succeeds.
#[tokio::test]
async fn the_loser_of_a_unique_race_gets_a_conflict() {
    let Some((_db, store)) = fresh().await else { return };
    let (acc, app) = seeded(&store).await;
    let store = Arc::new(store);

    for winner_commits in [true, false] {
        let ext = format!("race-{winner_commits}");
        let mut a = person(acc.id);
        a.external_user_id = Some(ext.clone());
        let mut b = person(acc.id);
        b.external_user_id = Some(ext.clone());

        let mut first = store.begin().await.unwrap();
        first.insert_person(&a).await.unwrap();
        let (started_tx, started) = oneshot::channel();
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                started_tx.send(()).unwrap();
                let inserted = tx.insert_person(&b).await;
                if inserted.is_ok() {
                    tx.commit().await.unwrap();
                }
                inserted
            }
        });
        started.await.unwrap();
        tokio::time::sleep(WAIT).await;
        assert!(!second.is_finished(), "the second insert did not wait for the first");
        if winner_commits {
            first.commit().await.unwrap();
            assert_eq!(conflict_on(second.await.unwrap()), Constraint::ExternalUserId);
        } else {
            first.rollback().await.unwrap();
            second.await.unwrap().unwrap();
        }
        let mut tx = store.begin_read().await.unwrap();
        assert_eq!(tx.persons_owning(acc.id, Some(&ext), &[], &[]).await.unwrap().len(), 1);
    }

    // The same for a token taken by two installations at once, and two primaries.
    let p = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();
    for (a, b, rule) in [
        (
            with_token(installation(&app, p.id, 1), PushServiceType::Apns, "t"),
            with_token(installation(&app, p.id, 2), PushServiceType::Apns, "t"),
            Constraint::PushToken,
        ),
        (
            {
                let mut i = installation(&app, p.id, 3);
                i.is_primary = true;
                i
            },
            {
                let mut i = installation(&app, p.id, 4);
                i.is_primary = true;
                i
            },
            Constraint::PrimaryInstallation,
        ),
    ] {
        let mut first = store.begin().await.unwrap();
        first.insert_installation(&a).await.unwrap();
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                tx.insert_installation(&b).await
            }
        });
        tokio::time::sleep(WAIT).await;
        first.commit().await.unwrap();
        assert_eq!(conflict_on(second.await.unwrap()), rule);
    }
}

/// people.md §8.2: two first definitions of one name at once. The second waits for the first
/// and, when it commits, reads the winner back instead of failing.
#[tokio::test]
async fn concurrent_first_definitions_agree_on_the_winner() {
    let Some((_db, store)) = fresh().await else { return };
    let (acc, _app) = seeded(&store).await;
    let store = Arc::new(store);
    let winner = AttributeDefinition {
        account_id: acc.id,
        scope: AttributeScope::Person,
        name: "level".into(),
        attr_type: AttributeType::Decimal,
        object_schema: None,
        origin: DefinitionOrigin::Auto,
        created_at: 1,
    };
    let mut loser = winner.clone();
    loser.attr_type = AttributeType::String;
    loser.created_at = 2;

    let mut first = store.begin().await.unwrap();
    assert_eq!(first.define_attribute(&winner).await.unwrap(), (winner.clone(), true));
    let second = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let got = tx.define_attribute(&loser).await.unwrap();
            tx.commit().await.unwrap();
            got
        }
    });
    tokio::time::sleep(WAIT).await;
    assert!(
        !second.is_finished(),
        "the second definition did not wait for the first"
    );
    first.commit().await.unwrap();
    assert_eq!(second.await.unwrap(), (winner.clone(), false));

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.attribute_definitions(acc.id, None).await.unwrap(), vec![winner]);
}

/// Two transactions lock two persons in opposite orders: PostgreSQL detects the deadlock and
/// fails one of them, which the store reports as `Retry`; the other one goes on.
#[tokio::test]
async fn a_deadlock_is_retry() {
    let Some((_db, store)) = fresh().await else { return };
    let (acc, _app) = seeded(&store).await;
    let (p, q) = (person(acc.id), person(acc.id));
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_person(&q).await.unwrap();
    tx.commit().await.unwrap();
    let store = Arc::new(store);
    // Each holds its first row before either asks for its second: a deadlock for sure.
    let both_hold_one = Arc::new(tokio::sync::Barrier::new(2));

    let crossing = |a: Uuid, b: Uuid| {
        let store = store.clone();
        let both_hold_one = both_hold_one.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            tx.person(acc.id, a).await.unwrap().unwrap();
            both_hold_one.wait().await;
            let second = tx.person(acc.id, b).await;
            match second {
                Ok(_) => tx.commit().await,
                Err(e) => Err(e),
            }
        })
    };
    let one = crossing(p.id, q.id);
    let two = crossing(q.id, p.id);
    let results = [one.await.unwrap(), two.await.unwrap()];
    let retries = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Retry(_))))
        .count();
    assert_eq!(retries, 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
}

/// A row lock held longer than `lock_timeout`: the waiting statement gives up with `Retry`
/// instead of waiting for ever.
#[tokio::test]
async fn a_lock_held_past_the_lock_timeout_is_retry() {
    let options = PgStoreOptions {
        pool_size: 3,
        lock_timeout: Duration::from_millis(400),
        ..PgStoreOptions::default()
    };
    let Some((_db, store)) = fresh_with(&options).await else {
        return;
    };
    let (acc, _app) = seeded(&store).await;
    let p = person(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.commit().await.unwrap();

    let mut holder = store.begin().await.unwrap();
    holder.person(acc.id, p.id).await.unwrap().unwrap();
    let mut waiter = store.begin().await.unwrap();
    let started = Instant::now();
    let got = waiter.person(acc.id, p.id).await;
    assert!(matches!(got, Err(StoreError::Retry(_))), "{got:?}");
    assert!(started.elapsed() >= Duration::from_millis(350));
    // The waiter's transaction is aborted: its commit says so and keeps nothing.
    assert!(matches!(waiter.commit().await, Err(StoreError::Retry(_))));
    holder.commit().await.unwrap();
}
