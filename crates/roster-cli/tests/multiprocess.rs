//! Several server processes on one store (design.md, Scale-out: "Nothing in a process's memory
//! may be the only copy of a fact"): two real `roster serve` processes on one fresh PostgreSQL
//! database under a concurrent mixed load (registrations, PATCHes, personalizations with
//! colliding identities, depersonalizations, remote logouts, primary switches), every device
//! sending each request to either process at random. Afterwards the people.md §11 invariant
//! checker and the history check (support/load.rs) find nothing, no request got a 500, and the
//! 503s of retry exhaustion are counted.
//!
//! Two processes on one SQLite file are not a meaningful variant: SQLite has one writer per file,
//! so the second process would only wait on the first one's write lock (and answer 503 after
//! `busy_timeout`). The same mixed load runs on SQLite against one process instead.
//!
//! Size: `ROSTER_TEST_LOAD_OPS` requests (default 3000) from `ROSTER_TEST_LOAD_DEVICES` devices
//! (default 40); `ROSTER_TEST_SEED` replays a run's choices.

mod support;

use support::{
    load::{self, LoadConfig, env_usize},
    process::{Server, StoreSpec, create_app},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_keep_the_invariants() {
    let Some(store) = StoreSpec::postgres().await else {
        return;
    };
    mixed_load(store, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_process_on_sqlite_keeps_the_invariants() {
    mixed_load(StoreSpec::sqlite(), 1).await;
}

async fn mixed_load(store: StoreSpec, processes: usize) {
    let seed = load::seed();
    let app_code = create_app(&store, "Load").await;
    let mut servers = Vec::new();
    for _ in 0..processes {
        servers.push(Server::start(&store).await);
    }
    let report = load::run(LoadConfig {
        targets: servers.iter().map(|s| s.base_url.clone()).collect(),
        app_code,
        devices: env_usize("ROSTER_TEST_LOAD_DEVICES", 40),
        ops: env_usize("ROSTER_TEST_LOAD_OPS", 3000),
        seed,
    })
    .await;
    report.print(&format!(
        "{} with {processes} roster serve process(es)",
        store.backend()
    ));
    if !report.violations.is_empty() {
        for (n, s) in servers.iter().enumerate() {
            println!("stderr of process {n}:\n{}", s.stderr_tail());
        }
    }
    for s in servers {
        s.stop().await;
    }

    let snapshot = store.snapshot().await;
    let invariants = roster_core::invariants::check(&snapshot);
    let history = report.check_store(&snapshot);
    println!(
        "store: {} persons, {} installations, {} merge-log entries; {} invariant violations, {} history mismatches",
        snapshot.persons.len(),
        snapshot.installations.len(),
        snapshot.merge_log.len(),
        invariants.len(),
        history.len()
    );
    assert!(
        report.violations.is_empty(),
        "responses the spec does not allow (seed {seed}):\n{}",
        report.violations.join("\n")
    );
    assert!(
        invariants.is_empty(),
        "invariants violated (seed {seed}):\n{}",
        invariants.join("\n")
    );
    assert!(
        history.is_empty(),
        "the store differs from the acknowledged history (seed {seed}):\n{}",
        history.join("\n")
    );
}
