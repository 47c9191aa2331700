//! Behaviour-suite scenarios of [`PeopleTx`](roster_store::PeopleTx) (the merge log by person and
//! its GDPR redaction), for every backend. A backend runs them from a test file of its own:
//!
//! ```text
//! roster_store_tests::people_store_suite!("sqlite", fresh);
//! ```

use std::sync::Arc;

use roster_model::{InstallationBefore, MergeBefore, MergeLogEntry, MergeStatus, PersonSnapshot};
use roster_store::{MergeKey, Store};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{account, application, full_person, person, seeded};

/// Generates one `#[tokio::test]` per scenario of this module, each on a store from `fresh`
/// (as [`store_behaviour_suite!`](crate::store_behaviour_suite) does for the core scenarios).
#[macro_export]
macro_rules! people_store_suite {
    ($backend:literal, $fresh:expr $(,)?) => {
        $crate::people_store_suite!(@list (tests $backend, $fresh));
    };
    (@list $what:tt) => {
        $crate::people_store_suite! { @expand $what;
            merge_entries_page_newest_first_by_person,
            merge_entries_naming_lists_every_entry_of_a_person_oldest_first,
            redact_merge_entries_purges_snapshots_and_the_persons_id,
        }
    };
    (@expand (tests $backend:literal, $fresh:expr); $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::run($backend, stringify!($name), $fresh, $crate::people::$name).await;
            }
        )*
    };
    (@expand (names); $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
}

/// A merge-log entry of the account moving `push_reg_id` from `source` into `target`, with
/// snapshots.
fn entry(account_id: Uuid, created_at: i64, source: Option<Uuid>, target: Option<Uuid>) -> MergeLogEntry {
    let push_reg_id = Uuid::new_v4().to_string();
    MergeLogEntry {
        account_id,
        id: Uuid::new_v4(),
        created_at,
        actor: json!({"type": "INSTALLATION", "pushRegId": push_reg_id}),
        push_reg_id,
        source_person_id: source,
        target_person_id: target,
        source_deleted: false,
        after_forced_depersonalize: false,
        dropped_attributes: vec!["a".into()],
        before: Some(MergeBefore {
            source: PersonSnapshot::of(&person(account_id)),
            target: PersonSnapshot::of(&full_person(account_id)),
            installation: InstallationBefore {
                is_primary: true,
                target_primary_push_reg_id: Some(Uuid::new_v4().to_string()),
            },
        }),
        after_target_version: 3,
        after_source_version: Some(2),
        status: MergeStatus::Applied,
        reversed_at: None,
        reversed_by: None,
        redacted: false,
    }
}

/// The newest-first order: `createdAt` descending, then id descending.
fn newest_first(entries: &mut [MergeLogEntry]) {
    entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
}

async fn insert_all(store: &dyn Store, entries: &[MergeLogEntry]) {
    let mut tx = store.begin().await.unwrap();
    for e in entries {
        tx.insert_merge_entry(e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Walks every page of `limit` entries; the pages in order.
async fn walk(store: &dyn Store, account_id: Uuid, person: Option<Uuid>, limit: u32) -> Vec<Vec<MergeLogEntry>> {
    let mut pages = Vec::new();
    let mut before: Option<MergeKey> = None;
    let mut tx = store.begin_read().await.unwrap();
    loop {
        let page = tx
            .merge_entries_newest_first(account_id, person, before, limit)
            .await
            .unwrap();
        assert!(page.len() <= limit as usize);
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id));
        pages.push(page);
    }
    tx.rollback().await.unwrap();
    pages
}

/// Newest first, ties on `createdAt` broken by id descending; keyset pages list each entry once;
/// with a person only the entries naming it (as source or as target); never another account's.
pub async fn merge_entries_page_newest_first_by_person(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let (p, q) = (Uuid::new_v4(), Uuid::new_v4());
    let mut entries = vec![
        entry(acc.id, 100, Some(p), Some(q)),
        entry(acc.id, 300, None, Some(p)),
        entry(acc.id, 200, Some(q), Some(Uuid::new_v4())),
        // Equal creation times: the id decides.
        entry(acc.id, 250, Some(p), Some(Uuid::new_v4())),
        entry(acc.id, 250, Some(Uuid::new_v4()), Some(p)),
        entry(acc.id, 250, Some(Uuid::new_v4()), Some(Uuid::new_v4())),
    ];
    // Another account naming the same person id: never listed for this account.
    let other = account(11);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&other).await.unwrap();
    tx.insert_application(&application(other.id)).await.unwrap();
    tx.commit().await.unwrap();
    let foreign = entry(other.id, 999, Some(p), Some(q));
    insert_all(&*store, &entries).await;
    insert_all(&*store, std::slice::from_ref(&foreign)).await;

    newest_first(&mut entries);
    for limit in [1, 2, 4, 100] {
        let all: Vec<MergeLogEntry> = walk(&*store, acc.id, None, limit).await.concat();
        assert_eq!(all, entries, "every entry of the account, limit {limit}");
        let of_p: Vec<MergeLogEntry> = walk(&*store, acc.id, Some(p), limit).await.concat();
        let expected: Vec<MergeLogEntry> = entries
            .iter()
            .filter(|e| e.source_person_id == Some(p) || e.target_person_id == Some(p))
            .cloned()
            .collect();
        assert_eq!(expected.len(), 4);
        assert_eq!(of_p, expected, "entries naming p, limit {limit}");
    }
    // Pages of 2 over p's 4 entries: exactly two full pages.
    let pages = walk(&*store, acc.id, Some(p), 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
    // A person nobody names, and the other account's view.
    assert!(walk(&*store, acc.id, Some(Uuid::new_v4()), 10).await.is_empty());
    assert_eq!(walk(&*store, other.id, Some(p), 10).await.concat(), [foreign]);
}

/// Every entry naming the person, oldest first, whatever its role; other entries and other
/// accounts are left out.
pub async fn merge_entries_naming_lists_every_entry_of_a_person_oldest_first(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let p = Uuid::new_v4();
    let as_target = entry(acc.id, 50, Some(Uuid::new_v4()), Some(p));
    let as_source = entry(acc.id, 10, Some(p), Some(Uuid::new_v4()));
    let unrelated = entry(acc.id, 30, Some(Uuid::new_v4()), Some(Uuid::new_v4()));
    insert_all(&*store, &[as_target.clone(), as_source.clone(), unrelated]).await;
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(
        tx.merge_entries_naming(acc.id, p).await.unwrap(),
        [as_source, as_target]
    );
    assert!(tx.merge_entries_naming(Uuid::new_v4(), p).await.unwrap().is_empty());
    tx.rollback().await.unwrap();
}

/// GDPR erase step 4: the entries naming the person lose both snapshots and the person's id
/// (only in its own role) and are marked redacted; every other field, and every other entry,
/// stays as it was; a second call changes nothing.
pub async fn redact_merge_entries_purges_snapshots_and_the_persons_id(store: Arc<dyn Store>) {
    let (acc, _app) = seeded(&*store).await;
    let (p, q) = (Uuid::new_v4(), Uuid::new_v4());
    let mut reversed = entry(acc.id, 40, Some(q), Some(p));
    reversed.status = MergeStatus::Reversed;
    reversed.reversed_at = Some(45);
    reversed.reversed_by = Some(json!({"type": "API_KEY", "apiKeyId": Uuid::new_v4()}));
    let as_source = entry(acc.id, 20, Some(p), Some(q));
    let unrelated = entry(acc.id, 30, Some(q), Some(Uuid::new_v4()));
    insert_all(&*store, &[reversed.clone(), as_source.clone(), unrelated.clone()]).await;

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.redact_merge_entries(acc.id, p).await.unwrap(), 2);
    // Another account's call touches nothing here.
    assert_eq!(tx.redact_merge_entries(Uuid::new_v4(), q).await.unwrap(), 0);
    tx.commit().await.unwrap();

    let redacted = |e: &MergeLogEntry| {
        let mut e = e.clone();
        e.before = None;
        e.redacted = true;
        if e.source_person_id == Some(p) {
            e.source_person_id = None;
        }
        if e.target_person_id == Some(p) {
            e.target_person_id = None;
        }
        e
    };
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.merge_entry(acc.id, reversed.id).await.unwrap(),
        Some(redacted(&reversed))
    );
    assert_eq!(
        tx.merge_entry(acc.id, as_source.id).await.unwrap(),
        Some(redacted(&as_source))
    );
    assert_eq!(tx.merge_entry(acc.id, unrelated.id).await.unwrap(), Some(unrelated));
    // The entries no longer name p: nothing is left to redact or list.
    assert_eq!(tx.redact_merge_entries(acc.id, p).await.unwrap(), 0);
    assert!(tx.merge_entries_naming(acc.id, p).await.unwrap().is_empty());
    // q is still named by all three.
    assert_eq!(tx.merge_entries_naming(acc.id, q).await.unwrap().len(), 3);
    tx.commit().await.unwrap();
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of this module is in the macro's list, and nothing else is.
    #[test]
    fn the_suite_runs_every_scenario() {
        let listed: &[&str] = people_store_suite!(@list (names));
        let mut defined: Vec<&str> = include_str!("people.rs")
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
