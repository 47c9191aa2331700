//! A tiny run of every scenario (issue 7: benchmarks are not part of the test suite, but a smoke
//! run proves they still work): the real server in this process on a fresh SQLite store (and on
//! PostgreSQL when ROSTER_TEST_POSTGRES_URL is set), with sizes small enough for seconds.

use std::time::Duration;

use roster_bench::report::Report;
use roster_bench::scenarios::{self, AudienceOptions, Common, FanoutOptions, LoadOptions};
use roster_bench::target::{Backend, ServerMode};
use serde_json::Value;

fn common(backend: Backend) -> Option<Common> {
    let postgres_url = match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => match std::env::var("ROSTER_TEST_POSTGRES_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                println!("SKIPPED on postgres: ROSTER_TEST_POSTGRES_URL not set");
                return None;
            }
        },
    };
    Some(Common {
        backend,
        postgres_url,
        mode: ServerMode::InProcess,
        progress: false,
    })
}

fn figure(report: &Report, name: &str) -> Value {
    report
        .figures
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no figure {name:?} in {report:#?}"))
        .value
        .clone()
}

fn load() -> LoadOptions {
    LoadOptions {
        concurrency: 4,
        duration: Duration::from_millis(700),
        warmup: Duration::from_millis(200),
    }
}

async fn http_scenarios(backend: Backend) {
    let Some(common) = common(backend) else { return };
    let r = scenarios::register(&common, &load()).await.unwrap();
    assert!(figure(&r, "answers ok").as_u64().unwrap() > 0, "{r:#?}");
    assert_eq!(figure(&r, "errors"), 0, "{r:#?}");
    assert!(figure(&r, "register latency")["p99Ms"].as_f64().unwrap() > 0.0);

    let r = scenarios::mobile_mix(&common, &load(), 40).await.unwrap();
    assert!(figure(&r, "answers ok").as_u64().unwrap() > 0, "{r:#?}");
    assert_eq!(figure(&r, "errors"), 0, "{r:#?}");
    // The writer's use, from the server's /metrics: SQLite has one writer, PostgreSQL none.
    let writer = r
        .figures
        .iter()
        .find(|f| f.name == "store writer held per write transaction");
    match backend {
        Backend::Sqlite => {
            let held = figure(&r, "store writer held (share of the run)").as_f64().unwrap();
            assert!(held > 0.0 && held <= 1.0, "{r:#?}");
            assert!(writer.is_some_and(|f| f.value.as_f64().unwrap() > 0.0), "{r:#?}");
        }
        Backend::Postgres => assert!(writer.is_none(), "{r:#?}"),
    }
    r.print(false).unwrap();
}

async fn data_scenarios(backend: Backend) {
    let Some(common) = common(backend) else { return };
    let r = scenarios::audience(
        &common,
        &AudienceOptions {
            people: 300,
            repeat: 1,
            ext_ids: 50,
            send: true,
        },
    )
    .await
    .unwrap();
    r.print(false).unwrap();
    for name in [
        "one tag",
        "tag AND number range",
        "date before",
        "OR of two tags NOT a third",
    ] {
        let row = figure(&r, name);
        let deliverable = row["deliverable"].as_u64().unwrap();
        assert!(deliverable > 0, "{name}: {row}");
        // Every seeded installation is deliverable: resolution finds exactly the previewed ones,
        // and the stand-ins accept every push.
        assert_eq!(
            row["resolvedInstallations"].as_u64(),
            Some(deliverable),
            "{name}: {row}"
        );
        assert_eq!(row["accepted"].as_u64(), Some(deliverable), "{name}: {row}");
    }
    // On SQLite the previews are timed once the server's in-memory audience index holds the
    // seed (another process's commits); PostgreSQL has no index to wait for.
    let waited = r.figures.iter().find(|f| f.name == "audience index persons");
    match backend {
        Backend::Sqlite => {
            assert_eq!(waited.map(|f| f.value.clone()), Some(300.into()), "{r:#?}");
            assert!(figure(&r, "audience index ready after seeding").as_f64().unwrap() >= 0.0);
        }
        Backend::Postgres => assert!(waited.is_none(), "{r:#?}"),
    }
    let primaries = figure(&r, "primary devices of an external-id list");
    assert_eq!(primaries["people"], 50, "{primaries}");
    assert_eq!(primaries["deliverable"], 50, "one primary each: {primaries}");

    // The in-memory index alone, on the same data set, counts what the server counted.
    let index = roster_bench::index::audience_index(&roster_bench::index::IndexOptions {
        people: 300,
        repeat: 1,
        ext_ids: 50,
        progress: false,
    })
    .unwrap();
    index.print(false).unwrap();
    for name in [
        "one tag",
        "tag AND number range",
        "date before",
        "OR of two tags NOT a third",
        "primary devices of an external-id list",
    ] {
        let (server, alone) = (figure(&r, name), figure(&index, name));
        for count in ["people", "installations", "deliverable"] {
            assert_eq!(server[count], alone[count], "{name} {count}: {server} vs {alone}");
        }
    }

    let r = scenarios::fanout(
        &common,
        &FanoutOptions {
            installations: 300,
            apns_percent: 50,
            delivery_workers: None,
            apns_tls: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(figure(&r, "deliveries")["ACCEPTED"], 300, "{r:#?}");
    assert_eq!(figure(&r, "requests answered by the stand-ins"), 300, "{r:#?}");

    let r = scenarios::footprint(&common, 300).await.unwrap();
    let per_person = figure(&r, "bytes on disk per person (one installation)")
        .as_f64()
        .unwrap();
    assert!(per_person > 100.0 && per_person < 100_000.0, "{r:#?}");
    assert!(figure(&r, "idle RSS").as_f64().unwrap() > 1.0);
    let largest = figure(&r, "largest relations");
    assert!(largest.as_array().is_some_and(|a| !a.is_empty()), "{largest}");
    r.print(false).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_scenarios_sqlite() {
    http_scenarios(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_scenarios_sqlite() {
    data_scenarios(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_scenarios_postgres() {
    http_scenarios(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_scenarios_postgres() {
    data_scenarios(Backend::Postgres).await
}
