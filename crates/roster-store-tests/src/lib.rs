//! The store behaviour suite (conventions.md "Storage": one behaviour suite, written once, run on
//! every backend): what any [`Store`] must answer, as [`scenarios`] over a fresh store, and the
//! [`fixtures`] they and the backends' own tests build on.
//!
//! A backend runs the suite from one test file, `tests/behaviour.rs`, with a factory of fresh
//! stores; the macro makes one `#[tokio::test]` per scenario (the calling crate needs `tokio`):
//!
//! ```text
//! use roster_store_tests::{TestStore, store_behaviour_suite};
//!
//! /// A migrated, empty store; `None` (after printing why) skips the test.
//! async fn fresh() -> Option<TestStore> {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = roster_store_sqlite::SqliteStore::open(&dir.path().join("roster.db")).await.unwrap();
//!     Some(TestStore::new(store, dir))
//! }
//!
//! store_behaviour_suite!("sqlite", fresh);
//! ```
//!
//! Only what a backend cannot share stays in its own tests: files, processes and pragmas for
//! SQLite; the aborted-transaction guard, row and advisory locks, pools and the schema
//! comparison for PostgreSQL.

use std::any::Any;
use std::sync::Arc;

use roster_store::Store;

pub mod admin;
pub mod audience;
pub mod fixtures;
pub mod people;
pub mod portal;
pub mod push;
pub mod retention;
pub mod scenarios;

/// A fresh store under test, and what must outlive it (a temporary directory, a throw-away
/// database): dropped after the store.
pub struct TestStore {
    // Field order is drop order: the store before what holds its database.
    store: Arc<dyn Store>,
    _keep_alive: Box<dyn Any + Send>,
}

impl TestStore {
    /// Wraps a migrated, empty store and the guard of its database.
    pub fn new(store: impl Store, keep_alive: impl Any + Send) -> TestStore {
        TestStore {
            store: Arc::new(store),
            _keep_alive: Box::new(keep_alive),
        }
    }

    /// The store, to hand to a scenario.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// Runs one scenario on a store from `fresh`, which returns `None` (after printing why, e.g.
/// `SKIPPED: ROSTER_TEST_POSTGRES_URL not set`) when the backend is not available. Checks that
/// the store is of the `backend` the suite was invoked for, and prints which backend ran.
#[doc(hidden)]
pub async fn run<F, S>(backend: &str, name: &str, fresh: impl FnOnce() -> F, scenario: impl FnOnce(Arc<dyn Store>) -> S)
where
    F: Future<Output = Option<TestStore>>,
    S: Future<Output = ()>,
{
    let Some(under_test) = fresh().await else { return };
    let store = under_test.store();
    assert_eq!(store.backend(), backend, "the factory made a store of another backend");
    println!("store behaviour suite: {name} on {backend}");
    scenario(store).await;
}

/// Generates one `#[tokio::test]` per scenario of [`scenarios`], each on a store from `fresh`:
/// `store_behaviour_suite!("postgres", fresh)`, where `fresh` is an `async fn() ->
/// Option<TestStore>` (or a closure returning such a future) and the string is what the store's
/// [`Store::backend`] answers.
#[macro_export]
macro_rules! store_behaviour_suite {
    ($backend:literal, $fresh:expr $(,)?) => {
        $crate::store_behaviour_suite!(@list (tests $backend, $fresh));
        $crate::store_behaviour_suite!(@push (tests $backend, $fresh));
    };
    // The scenarios of the push queue primitives (`push.rs`).
    (@push $what:tt) => {
        $crate::store_behaviour_suite! { @expand_push $what;
            push_records_round_trip,
            claims_are_exclusive,
            attempts_need_their_claim_and_terminal_statuses_stay,
            attempt_results_in_one_batch_apply_as_one_by_one,
            audience_jobs_resume_at_their_cursor,
            compare_and_clear_takes_only_the_held_token,
            erase_anonymises_deliveries,
            push_and_segment_pages_walk_each_account,
        }
    };
    (@expand_push (tests $backend:literal, $fresh:expr); $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::run($backend, stringify!($name), $fresh, $crate::push::$name).await;
            }
        )*
    };
    (@expand_push (names); $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
    // The one list of scenarios (a unit test compares it with `scenarios`).
    (@list $what:tt) => {
        $crate::store_behaviour_suite! { @expand $what;
            every_entity_round_trips,
            json_documents_round_trip_byte_for_byte,
            identity_keys_are_unique_per_account,
            installation_rules_are_constraints,
            application_jwt_and_api_key_uniqueness,
            define_attribute_keeps_the_first_definition,
            dropping_a_transaction_rolls_it_back,
            a_conflict_does_not_poison_later_transactions,
            read_transactions_refuse_writes_and_keep_their_snapshot,
            concurrent_writers_all_commit,
            a_key_moves_between_persons_in_one_transaction,
            a_persons_keys_are_reordered_and_recased_in_place,
            persons_owning_returns_distinct_owners,
            clear_token_holders_takes_the_token_from_the_others,
            demote_primaries_clears_the_flag_of_the_others_only,
            installations_with_equal_creation_times_order_by_push_reg_id,
            snapshot_is_ordered_by_keys,
            keyset_pages_list_every_row_of_an_account_in_key_order,
            insert_attribute_definition_refuses_a_duplicate,
            batch_inserts_store_what_single_inserts_store,
        }
    };
    (@expand (tests $backend:literal, $fresh:expr); $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::run($backend, stringify!($name), $fresh, $crate::scenarios::$name).await;
            }
        )*
    };
    (@expand (names); $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of `scenarios` is in the macro's list, and nothing else is.
    #[test]
    fn the_suite_runs_every_scenario() {
        let listed: &[&str] = store_behaviour_suite!(@list (names));
        let mut defined: Vec<&str> = include_str!("scenarios.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|rest| rest.split('(').next().unwrap_or(rest))
            .collect();
        let mut listed = listed.to_vec();
        defined.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, defined);
        assert!(!listed.is_empty());
    }

    /// Every `pub async fn` of `push` is in the macro's push list, and nothing else is.
    #[test]
    fn the_suite_runs_every_push_scenario() {
        let mut listed: Vec<&str> = store_behaviour_suite!(@push (names)).to_vec();
        let mut defined: Vec<&str> = include_str!("push.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|rest| rest.split('(').next().unwrap_or(rest))
            .collect();
        defined.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, defined);
        assert!(!listed.is_empty());
    }
}
