//! A randomized history test: thousands of random mobile API operations from ~50 concurrent
//! simulated devices against the server (register and re-install, GET/PATCH installation own and
//! other, set primary own and other, GET/PATCH user, personalize with and without force and
//! keepAsLead over a small pool of colliding identities, depersonalize, remote logout, delete
//! expired), then a Jepsen-style check of our own rules: every answer is one the spec allows for
//! its operation (a 503 of retry exhaustion is counted, a 500 fails), each device's exact
//! expectations held (its own writes read back, the fields of each answer), the store matches the
//! acknowledged history, and the people.md §11 invariant checker finds nothing.
//!
//! Seeded and reproducible in its choices: the seed is printed, `ROSTER_TEST_SEED` replays it.
//! Size: `ROSTER_TEST_HISTORY_OPS` (default 3000) requests from `ROSTER_TEST_HISTORY_DEVICES`
//! (default 50) devices.
mod common;

// The generator is shared with roster-cli's multiprocess test, which runs it against real
// `roster serve` processes; a test crate cannot depend on another crate's tests, so it is
// included by path.
#[allow(dead_code)]
#[path = "../../roster-cli/tests/support/load.rs"]
mod load;

use common::TestServer;
use load::{LoadConfig, env_usize};

async fn random_history_keeps_the_invariants() {
    let seed = load::seed();
    let ts = TestServer::start().await;
    let report = load::run(LoadConfig {
        targets: vec![ts.server.base_url()],
        app_code: ts.app.application_code.clone(),
        devices: env_usize("ROSTER_TEST_HISTORY_DEVICES", 50),
        ops: env_usize("ROSTER_TEST_HISTORY_OPS", 3000),
        seed,
    })
    .await;
    report.print(ts.store.backend());
    assert!(
        report.violations.is_empty(),
        "answers the spec does not allow or exact expectations broken (seed {seed}):\n{}",
        report.violations.join("\n")
    );
    let snapshot = ts.snapshot().await;
    let history = report.check_store(&snapshot);
    println!(
        "store: {} persons, {} installations, {} merge-log entries, {} history mismatches",
        snapshot.persons.len(),
        snapshot.installations.len(),
        snapshot.merge_log.len(),
        history.len()
    );
    assert!(
        history.is_empty(),
        "the store differs from the acknowledged history (seed {seed}):\n{}",
        history.join("\n")
    );
    // The history check is not vacuous: a lost registration and a lost write are reported.
    let mut lost = snapshot.clone();
    lost.installations.pop();
    assert!(
        !report.check_store(&lost).is_empty(),
        "a lost installation must be reported"
    );
    let mut stale = snapshot.clone();
    for i in &mut stale.installations {
        i.system.device_name = Some("an older value".into());
    }
    assert!(!report.check_store(&stale).is_empty(), "lost writes must be reported");
    // The invariant checker of people.md §11.
    ts.finish().await;
}

on_every_backend!(multi_thread: random_history_keeps_the_invariants);
