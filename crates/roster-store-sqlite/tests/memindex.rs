//! The in-memory audience index of the SQLite store (src/memindex.rs): previews answered by it
//! equal the SQL previews of a store on the same file with the index off, and the reference
//! (`Filter::matches`), after seeding, after every kind of write (person and tag updates, moved
//! and deleted installations, deleted persons, a deleted application, rolled-back and dropped
//! transactions, writes racing the build), and after a restart.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use roster_model::filter::Filter;
use roster_store::Store;
use roster_store::audience::{Preview, Scope};
use roster_store_sqlite::{SqliteOptions, SqliteStore};
use roster_store_tests::audience::{Population, Vocab, check_filters, random_filters, seed_population};
use serde_json::{Value, json};
use uuid::Uuid;

const READY: Duration = Duration::from_secs(30);

/// SplitMix64, for seeded choices among the mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

async fn indexed(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).await.unwrap();
    assert!(store.wait_for_audience_index(READY).await, "the index was not built");
    store
}

/// A store on the same file whose previews are SQL only.
async fn sql_only(path: &Path) -> SqliteStore {
    SqliteStore::open_with(path, SqliteOptions { audience_index: false })
        .await
        .unwrap()
}

async fn vocab(store: &dyn Store, account_id: Uuid) -> Vocab {
    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    tx.rollback().await.unwrap();
    Vocab::of(&snap, account_id)
}

/// Hand-written filters over what the index is most likely to hold, next to random ones.
fn fixed_filters() -> Vec<Value> {
    vec![
        json!({}),
        json!({"tags": "vip"}),
        json!({"tags": {"$in": ["vip", "new"]}}),
        json!({"tags": {"$nin": ["vip"]}}),
        json!({"tags": {"$exists": false}}),
        json!({"installation.os": "Android"}),
        json!({"installation.pushServiceType": {"$in": ["Firebase", "APNS"]}}),
        json!({"score": {"$gte": 2}}),
        json!({"vip": true}),
        json!({"$or": [{"tags": "vip"}, {"installation.customAttributes.channel": "web"}]}),
        json!({"$not": {"tags": "vip"}}),
        json!({"type": "CUSTOMER"}),
    ]
}

fn same(a: &Preview, b: &Preview, ctx: &str) {
    assert_eq!(a.people, b.people, "people of {ctx}");
    assert_eq!(a.installations, b.installations, "installations of {ctx}");
    assert_eq!(
        a.deliverable_installations, b.deliverable_installations,
        "deliverable installations of {ctx}"
    );
    let ids = |p: &Preview| -> Vec<(Uuid, Vec<String>)> {
        p.sample
            .iter()
            .map(|s| (s.person.id, s.installations.clone()))
            .collect()
    };
    assert_eq!(ids(a), ids(b), "sample of {ctx}");
    for (x, y) in a.sample.iter().zip(&b.sample) {
        assert_eq!(x.person, y.person, "sample person of {ctx}");
    }
}

/// [`compare_previews`], of which the index must have answered some. Returns how many.
async fn compare(indexed: &SqliteStore, sql: &SqliteStore, pop: &Population, seed: u64) -> u64 {
    let answered = compare_previews(indexed, sql, pop, seed).await;
    assert!(answered > 0, "no preview was answered by the index");
    answered
}

/// Every filter on every scope, with and without `primary_only`, sample sizes 0 to 100: the
/// indexed store's previews equal the SQL store's; then the reference check of the audience
/// suite on the indexed store. Returns how many previews the index answered.
async fn compare_previews(indexed: &SqliteStore, sql: &SqliteStore, pop: &Population, seed: u64) -> u64 {
    let before = indexed.audience_index_stats().answered;
    let vocab = vocab(indexed, pop.account.id).await;
    let mut filters = fixed_filters();
    filters.extend(random_filters(seed, &vocab, 60));
    let mut fast = indexed.begin_read().await.unwrap();
    let mut slow = sql.begin_read().await.unwrap();
    for (n, json) in filters.iter().enumerate() {
        let filter = Filter::parse(json, &pop.definitions, "filter").unwrap();
        for app in [None, Some(pop.apps[0].id), Some(pop.apps[1].id)] {
            let scope = Scope {
                account_id: pop.account.id,
                application_id: app,
            };
            for primary_only in [false, true] {
                let sample = [0, 1, 3, 10, 100][n % 5];
                let a = fast.preview(scope, &filter, primary_only, sample).await.unwrap();
                let b = slow.preview(scope, &filter, primary_only, sample).await.unwrap();
                same(&a, &b, &format!("#{n} {json} in {app:?}, primary only {primary_only}"));
            }
        }
    }
    fast.rollback().await.unwrap();
    slow.rollback().await.unwrap();
    check_filters(indexed, pop, &filters).await;
    let stats = indexed.audience_index_stats();
    let answered = stats.answered - before;
    eprintln!("{answered} previews answered by the index; so far {stats:?}");
    answered
}

/// Persons of the account, by id.
async fn persons(store: &dyn Store, account_id: Uuid) -> Vec<roster_model::Person> {
    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    tx.rollback().await.unwrap();
    snap.persons
        .into_iter()
        .filter(|p| p.account_id == account_id)
        .collect()
}

/// Changes tags, attributes and names of some persons, moves installations to other persons
/// (merging a person into another: its installations moved, then it is deleted), deletes
/// installations and persons, in several transactions.
async fn mutate(store: &dyn Store, pop: &Population, seed: u64) {
    let mut rng = Rng::new(seed);
    let all = persons(store, pop.account.id).await;
    let tags = ["vip", "new", "churned", "Beta"];
    // Person updates, one transaction per 25.
    for chunk in all.chunks(25) {
        let mut tx = store.begin().await.unwrap();
        for p in chunk {
            if !rng.chance(40) {
                continue;
            }
            let mut q = p.clone();
            q.version += 1;
            q.tags = (0..rng.below(3))
                .map(|_| tags[rng.below(tags.len())].to_string())
                .collect();
            if rng.chance(50) {
                q.custom_attributes.insert("score".into(), json!(rng.below(10)));
            } else {
                q.custom_attributes.remove("score");
            }
            if rng.chance(30) {
                q.first_name = None;
            }
            tx.update_person(&q).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    // Merges: every 9th person's installations move to the next person, then it is deleted.
    let mut tx = store.begin().await.unwrap();
    for pair in all.chunks(2).step_by(9) {
        let [from, into] = pair else { continue };
        for mut inst in tx.installations_of_person(pop.account.id, from.id, None).await.unwrap() {
            inst.person_id = into.id;
            inst.is_primary = false;
            tx.update_installation(&inst).await.unwrap();
        }
        assert!(tx.delete_person(pop.account.id, from.id).await.unwrap());
    }
    tx.commit().await.unwrap();
    // Installations moved to another person, their old owner kept (it may match no more).
    let mut tx = store.begin().await.unwrap();
    let left = persons(store, pop.account.id).await;
    for (i, p) in left.iter().enumerate().skip(3).step_by(5) {
        let into = &left[(i * 7) % left.len()];
        for mut inst in tx.installations_of_person(pop.account.id, p.id, None).await.unwrap() {
            if into.id != p.id {
                inst.person_id = into.id;
                inst.is_primary = false;
                tx.update_installation(&inst).await.unwrap();
            }
        }
    }
    tx.commit().await.unwrap();
    // Some installations deleted, and persons left without any deleted too.
    let mut tx = store.begin().await.unwrap();
    for p in persons(store, pop.account.id).await.iter().step_by(7) {
        for inst in tx.installations_of_person(pop.account.id, p.id, None).await.unwrap() {
            if rng.chance(50) {
                tx.delete_installation(pop.account.id, &inst.push_reg_id).await.unwrap();
            }
        }
        if tx.count_installations_of_person(pop.account.id, p.id).await.unwrap() == 0 && rng.chance(50) {
            assert!(tx.delete_person(pop.account.id, p.id).await.unwrap());
        }
    }
    tx.commit().await.unwrap();
}

/// Writes that never commit: a rolled-back transaction and a dropped one, each tagging every
/// person and deleting installations; the index must not show any of it.
async fn abandoned_writes(store: &dyn Store, pop: &Population) {
    for drop_it in [false, true] {
        let mut tx = store.begin().await.unwrap();
        for p in persons(store, pop.account.id).await {
            let mut q = p.clone();
            q.version += 1;
            q.tags = BTreeSet::from(["ghost".to_string(), "vip".to_string()]);
            tx.update_person(&q).await.unwrap();
            for inst in tx.installations_of_person(pop.account.id, p.id, None).await.unwrap() {
                tx.delete_installation(pop.account.id, &inst.push_reg_id).await.unwrap();
            }
        }
        if drop_it {
            drop(tx);
        } else {
            tx.rollback().await.unwrap();
        }
    }
}

/// Deletes an application the way the management API does (its installations, owner by owner,
/// then the application).
async fn delete_application(store: &dyn Store, pop: &Population, app: Uuid) {
    let mut tx = store.begin().await.unwrap();
    loop {
        let owners = tx.installation_owners(pop.account.id, app, 50).await.unwrap();
        if owners.is_empty() {
            break;
        }
        tx.delete_installations_of_owners(pop.account.id, app, &owners)
            .await
            .unwrap();
    }
    assert!(tx.delete_application(pop.account.id, app).await.unwrap());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn index_previews_equal_sql_previews_through_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let store = indexed(&path).await;
    let sql = sql_only(&path).await;
    assert!(!sql.audience_index_ready());
    let seed = 0x1DE7_0001;
    // Seeded after the build: everything reaches the index through capture.
    let pop = seed_population(&store, seed, 300).await;
    compare(&store, &sql, &pop, seed).await;

    mutate(&store, &pop, seed ^ 1).await;
    compare(&store, &sql, &pop, seed ^ 2).await;

    abandoned_writes(&store, &pop).await;
    compare(&store, &sql, &pop, seed ^ 3).await;

    delete_application(&store, &pop, pop.apps[1].id).await;
    let stats = store.audience_index_stats();
    assert_eq!(
        stats.persons,
        persons(&store, pop.account.id).await.len(),
        "persons held"
    );
    // The second application's scope is empty now on both sides.
    compare(&store, &sql, &pop, seed ^ 4).await;
    // The store's own writes never looked like another process's.
    assert_eq!(store.audience_index_stats().builds, 1);
}

/// Reopening the file builds the index again from the database (the population seeded before
/// the open), with writes racing the build; the answers are the same as SQL's.
#[tokio::test]
async fn a_restarted_store_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let seed = 0x1DE7_0002;
    let pop = {
        let store = SqliteStore::open(&path).await.unwrap();
        let pop = seed_population(&store, seed, 400).await;
        mutate(&store, &pop, seed ^ 1).await;
        pop
    };
    let sql = sql_only(&path).await;
    let store = SqliteStore::open(&path).await.unwrap();
    // Written while the build may still run: these must not be lost.
    mutate(&store, &pop, seed ^ 2).await;
    assert!(store.wait_for_audience_index(READY).await);
    compare(&store, &sql, &pop, seed).await;
    let stats = store.audience_index_stats();
    assert_eq!(
        stats.persons,
        persons(&store, pop.account.id).await.len(),
        "persons held"
    );
    drop(store);

    let store = indexed(&path).await;
    compare(&store, &sql, &pop, seed ^ 3).await;
}

/// With the index off nothing is built and previews are SQL.
#[tokio::test]
async fn the_index_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let store = sql_only(&path).await;
    let pop = seed_population(&store, 0x1DE7_0003, 30).await;
    assert!(!store.wait_for_audience_index(Duration::from_millis(50)).await);
    let filters = fixed_filters();
    check_filters(&store, &pop, &filters).await;
    assert_eq!(store.audience_index_stats(), Default::default());
}

/// Another process writing to the file (here a second store on it, whose writer is another
/// connection: its commits are not captured) makes the index build again before it answers;
/// meanwhile previews are SQL. Both ways of noticing: a preview while the writer is idle, and
/// the store's next write batch.
#[tokio::test]
async fn writes_of_another_process_rebuild_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let store = indexed(&path).await;
    let other = sql_only(&path).await;
    let seed = 0x1DE7_0004;
    let pop = seed_population(&store, seed, 200).await;
    compare(&store, &other, &pop, seed).await;
    assert_eq!(store.audience_index_stats().builds, 1);

    // Noticed by a preview. The index is built again once the other process has been quiet
    // for a while (memindex.rs `REBUILD_QUIET`): meanwhile SQL answers, exactly.
    mutate(&other, &pop, seed ^ 1).await;
    compare_previews(&store, &other, &pop, seed ^ 2).await;
    assert!(store.wait_for_audience_index(READY).await);
    assert_eq!(store.audience_index_stats().builds, 2);
    compare(&store, &other, &pop, seed ^ 3).await;

    // Noticed by the store's next write, before any preview.
    mutate(&other, &pop, seed ^ 4).await;
    mutate(&store, &pop, seed ^ 5).await;
    assert!(store.wait_for_audience_index(READY).await);
    assert_eq!(store.audience_index_stats().builds, 3);
    compare(&store, &other, &pop, seed ^ 6).await;
}

/// Another process that keeps writing, its commits closer together than the quiet period the
/// index waits for, is waited out: the index is built once after it stops, not again after
/// each commit (which threw the running build away). Previews stay exact meanwhile (SQL).
#[tokio::test]
async fn a_process_that_keeps_writing_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let store = indexed(&path).await;
    let other = sql_only(&path).await;
    let seed = 0x1DE7_0009;
    let pop = seed_population(&store, seed, 60).await;
    assert_eq!(store.audience_index_stats().builds, 1);
    let filter = Filter::parse(&json!({"tags": "vip"}), &pop.definitions, "filter").unwrap();
    let scope = Scope {
        account_id: pop.account.id,
        application_id: None,
    };
    // Six commits 400 ms apart: 2.4 s of writing, longer than the quiet period.
    for (round, p) in persons(&other, pop.account.id).await.iter().take(6).enumerate() {
        let mut q = p.clone();
        q.version += 1;
        q.tags = BTreeSet::from(["vip".to_string()]);
        let mut tx = other.begin().await.unwrap();
        tx.update_person(&q).await.unwrap();
        tx.commit().await.unwrap();
        // The preview notices the commit (the writer is idle) and is answered by SQL.
        let mut fast = store.begin_read().await.unwrap();
        let mut slow = other.begin_read().await.unwrap();
        same(
            &fast.preview(scope, &filter, false, 10).await.unwrap(),
            &slow.preview(scope, &filter, false, 10).await.unwrap(),
            &format!("vip after commit {round} of the other process"),
        );
        fast.rollback().await.unwrap();
        slow.rollback().await.unwrap();
        assert!(
            !store.audience_index_ready(),
            "the index answered before the writing stopped"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(store.wait_for_audience_index(READY).await);
    assert_eq!(
        store.audience_index_stats().builds,
        2,
        "one build after the other process stopped, none per commit"
    );
    compare(&store, &other, &pop, seed ^ 1).await;
}

/// Not part of the suite: what the index costs and gives over 100,000 persons (about 150,000
/// installations): bulk seeding with capture on and off, the build at open, previews by the
/// index and by SQL, and a preview right after 1,000 persons were updated (its refresh).
/// `cargo test --release -p roster-store-sqlite --test memindex -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn timings_over_100k_people() {
    use roster_store_tests::audience::{seed_bulk, time_previews};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let mut pop = None;
    let runs: &[(&str, bool)] = if std::env::var("ROSTER_TIMINGS_QUICK").is_ok() {
        &[("with", true)]
    } else {
        &[("without", false), ("with", true)]
    };
    for &(name, audience_index) in runs {
        let path = dir.path().join(format!("{name}.db"));
        let store = SqliteStore::open_with(&path, SqliteOptions { audience_index })
            .await
            .unwrap();
        let started = Instant::now();
        pop = Some(seed_bulk(&store, 42, 100_000).await);
        println!("seeded {name} capture in {:.2} s", started.elapsed().as_secs_f64());
    }
    let pop = pop.unwrap();
    let path = dir.path().join("with.db");
    // Private memory (not the file's pages read through the memory map).
    let rss_anon_kib = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let before = rss_anon_kib();
    let started = Instant::now();
    let store = indexed(&path).await;
    println!(
        "index built in {:.2} s: {:?}; private memory {} MiB -> {} MiB",
        started.elapsed().as_secs_f64(),
        store.audience_index_stats(),
        before / 1024,
        rss_anon_kib() / 1024
    );
    println!("-- previews answered by the index (or SQL where it falls back):");
    time_previews(&store, &pop).await;
    println!("{:?}", store.audience_index_stats());
    for f in [json!({"tags": "vip"}), json!({"score": {"$gte": 10}})] {
        let filter = Filter::parse(&f, &pop.definitions, "filter").unwrap();
        let scope = Scope {
            account_id: pop.account.id,
            application_id: None,
        };
        for sample in [0, 10] {
            let mut tx = store.begin_read().await.unwrap();
            let started = Instant::now();
            tx.preview(scope, &filter, false, sample).await.unwrap();
            println!(
                "{f} sample {sample}: {:.1} ms {:?}",
                started.elapsed().as_secs_f64() * 1000.0,
                store.audience_index_stats()
            );
            tx.rollback().await.unwrap();
        }
    }
    {
        // The index alone, without the store around it.
        let mut tx = store.begin_read().await.unwrap();
        let snap = tx.snapshot().await.unwrap();
        tx.rollback().await.unwrap();
        let mut index = roster_store::audience::memory::MemoryIndex::new();
        let mut by_person: std::collections::HashMap<Uuid, Vec<roster_model::Installation>> = Default::default();
        for i in snap.installations {
            by_person.entry(i.person_id).or_default().push(i);
        }
        for p in &snap.persons {
            let own = by_person.remove(&p.id).unwrap_or_default();
            index.set_person(p.account_id, p.id, Some((p, &own)));
        }
        let filter = Filter::parse(&json!({"tags": "vip"}), &pop.definitions, "filter").unwrap();
        let scope = Scope {
            account_id: pop.account.id,
            application_id: None,
        };
        for _ in 0..3 {
            let started = Instant::now();
            let counts = index.counts(scope, &filter, false).unwrap();
            println!(
                "MemoryIndex::counts tags=vip alone: {:.2} ms ({counts:?})",
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
    println!("-- previews by SQL:");
    time_previews(&sql_only(&path).await, &pop).await;
    let all = persons(&store, pop.account.id).await;
    let mut tx = store.begin().await.unwrap();
    for p in all.iter().take(1000) {
        let mut q = p.clone();
        q.version += 1;
        q.tags.insert("touched".into());
        tx.update_person(&q).await.unwrap();
    }
    tx.commit().await.unwrap();
    let filter = Filter::parse(&json!({"tags": "touched"}), &pop.definitions, "filter").unwrap();
    let scope = Scope {
        account_id: pop.account.id,
        application_id: None,
    };
    for round in ["after 1,000 updates", "again"] {
        let started = Instant::now();
        let mut tx = store.begin_read().await.unwrap();
        let preview = tx.preview(scope, &filter, false, 10).await.unwrap();
        tx.rollback().await.unwrap();
        println!(
            "preview {round}: {:.1} ms ({} people)",
            started.elapsed().as_secs_f64() * 1000.0,
            preview.people
        );
    }
    // A bulk change (more pending persons than a preview reads itself): SQL answers while a
    // background refresh applies them, then the index again, equal to SQL.
    let mut tx = store.begin().await.unwrap();
    for p in all.iter().skip(1000).take(30_000) {
        let mut q = p.clone();
        q.version += 1;
        q.tags.insert("bulk".into());
        tx.update_person(&q).await.unwrap();
    }
    tx.commit().await.unwrap();
    let filter = Filter::parse(&json!({"tags": "bulk"}), &pop.definitions, "filter").unwrap();
    let sql = sql_only(&path).await;
    let mut last = None;
    for round in 0..40 {
        let before = store.audience_index_stats();
        let started = Instant::now();
        let mut tx = store.begin_read().await.unwrap();
        let preview = tx.preview(scope, &filter, false, 10).await.unwrap();
        tx.rollback().await.unwrap();
        let by_index = store.audience_index_stats().answered > before.answered;
        println!(
            "preview {round} after 30,000 updates: {:.1} ms ({} people) by {}",
            started.elapsed().as_secs_f64() * 1000.0,
            preview.people,
            if by_index { "the index" } else { "SQL" }
        );
        last = Some(preview);
        if by_index {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut tx = sql.begin_read().await.unwrap();
    let want = tx.preview(scope, &filter, false, 10).await.unwrap();
    tx.rollback().await.unwrap();
    same(&last.unwrap(), &want, "the bulk tag");
    println!(
        "{:?}; private memory {} MiB",
        store.audience_index_stats(),
        rss_anon_kib() / 1024
    );
}

/// Walks the audience as the core resolves a send: chunks of `chunk` installations after the
/// last one returned, each in a write transaction of its own, until a short chunk; `between`
/// runs after each chunk with the cursor. Every chunk but the last is full.
async fn walk(store: &SqliteStore, scope: Scope, filter: &Filter, chunk: u32) -> Vec<String> {
    walk_from(store, scope, filter, chunk, None, usize::MAX).await
}

/// [`walk`] from `after`, stopping after `chunks` chunks (the cursor is the last id returned).
async fn walk_from(
    store: &SqliteStore,
    scope: Scope,
    filter: &Filter,
    chunk: u32,
    mut after: Option<String>,
    chunks: usize,
) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for _ in 0..chunks {
        let mut tx = store.begin().await.unwrap();
        let got = tx
            .audience_installations(scope, filter, after.as_deref(), chunk)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for inst in &got {
            assert_eq!(inst.account_id, scope.account_id);
            assert!(scope.application_id.is_none_or(|a| a == inst.application_id));
        }
        let ids: Vec<String> = got.into_iter().map(|i| i.push_reg_id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in pushRegId order");
        if let (Some(a), Some(first)) = (&after, ids.first()) {
            assert!(first > a, "after the cursor");
        }
        let last = (ids.len() as u32) < chunk;
        after = ids.last().cloned().or(after);
        all.extend(ids);
        if last {
            break;
        }
    }
    all
}

/// The pushRegIds of `audience_page` walked in chunks, in a read transaction each.
async fn page_walk(store: &SqliteStore, scope: Scope, filter: &Filter, chunk: u32) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    loop {
        let mut tx = store.begin_read().await.unwrap();
        let ids = tx
            .audience_page(scope, filter, all.last().map(String::as_str), chunk)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let last = (ids.len() as u32) < chunk;
        all.extend(ids);
        if last {
            return all;
        }
    }
}

/// Resolving a send's audience in chunks (`audience_installations` in write transactions, as
/// the core does) from the index's list gives the SQL path's pushRegIds in the same order, for
/// fixed and random filters on three scopes, after seeding and after mutations; so does
/// `audience_page`.
#[tokio::test]
async fn index_resolution_equals_sql_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let store = indexed(&path).await;
    let sql = sql_only(&path).await;
    let seed = 0x1DE7_0005;
    let pop = seed_population(&store, seed, 300).await;
    for round in 0..2 {
        if round == 1 {
            mutate(&store, &pop, seed ^ 1).await;
        }
        let vocab = vocab(&store, pop.account.id).await;
        let mut filters = fixed_filters();
        filters.extend(random_filters(seed ^ round, &vocab, 25));
        let mut non_empty = 0;
        for json in &filters {
            let filter = Filter::parse(json, &pop.definitions, "filter").unwrap();
            for app in [None, Some(pop.apps[0].id), Some(pop.apps[1].id)] {
                let scope = Scope {
                    account_id: pop.account.id,
                    application_id: app,
                };
                let want = walk(&sql, scope, &filter, 7).await;
                let got = walk(&store, scope, &filter, 7).await;
                assert_eq!(got, want, "{json} in {app:?}, round {round}");
                assert_eq!(
                    page_walk(&store, scope, &filter, 7).await,
                    want,
                    "pages of {json} in {app:?}"
                );
                non_empty += usize::from(!want.is_empty());
            }
        }
        assert!(non_empty > filters.len(), "only {non_empty} audiences are not empty");
    }
    assert!(store.audience_index_ready());
}

/// Between two chunks of a resolution: installations of the audience ahead of the cursor are
/// deleted, a person owning some stops matching, and a matching installation is created ahead
/// of the cursor. The walk is the audience as resolution started (unlike SQL's): it skips the
/// deleted ones, keeps the person's, does not take the new one; its chunks stay full.
#[tokio::test]
async fn resolution_walks_the_audience_as_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.db");
    let store = indexed(&path).await;
    let sql = sql_only(&path).await;
    let pop = seed_population(&store, 0x1DE7_0006, 300).await;
    let filter = Filter::parse(&json!({"tags": "vip"}), &pop.definitions, "filter").unwrap();
    let scope = Scope {
        account_id: pop.account.id,
        application_id: Some(pop.apps[0].id),
    };
    let before = walk(&sql, scope, &filter, 7).await;
    assert!(before.len() > 25, "audience of {} only", before.len());

    let head = walk_from(&store, scope, &filter, 7, None, 2).await;
    assert_eq!(head, before[..14]);
    let cursor = head.last().cloned();
    let ahead = &before[14..];

    let mut tx = store.begin().await.unwrap();
    // Deleted: the installation right after the cursor and one further on.
    for gone in [&ahead[0], &ahead[10]] {
        assert!(tx.delete_installation(pop.account.id, gone).await.unwrap());
    }
    // A person owning one ahead stops matching (all of its installations leave the audience).
    let owned = tx.installation(&ahead[3]).await.unwrap().unwrap();
    let mut person = tx.person(pop.account.id, owned.person_id).await.unwrap().unwrap();
    person.version += 1;
    person.tags.remove("vip");
    tx.update_person(&person).await.unwrap();
    // Created after the list was computed, matching and ahead of the cursor.
    let mut new = None;
    for r in &ahead[5..] {
        let inst = tx.installation(r).await.unwrap().unwrap();
        if inst.person_id != person.id {
            new = Some(inst);
            break;
        }
    }
    let mut new = new.expect("an installation of another matching person");
    new.push_reg_id = "ffffffff-ffff-4fff-bfff-ffffffffffff".into();
    new.is_primary = false;
    new.push_service_token = new.push_service_token.map(|t| format!("{t}-new"));
    tx.insert_installation(&new).await.unwrap();
    tx.commit().await.unwrap();

    let sql_rest = walk_from(&sql, scope, &filter, 7, cursor.clone(), usize::MAX).await;
    assert!(sql_rest.contains(&new.push_reg_id), "SQL takes the new installation");
    assert!(!sql_rest.contains(&ahead[0]) && !sql_rest.contains(&ahead[3]));
    // The index's walk is the audience as resolution started: without what was deleted since,
    // with the person who stopped matching, without what was created since; still in full
    // chunks.
    let rest = walk_from(&store, scope, &filter, 7, cursor, usize::MAX).await;
    let want: Vec<String> = ahead
        .iter()
        .filter(|r| **r != ahead[0] && **r != ahead[10])
        .cloned()
        .collect();
    assert!(want.contains(&ahead[3]), "the person who stopped matching stays");
    assert_eq!(rest, want, "the rest of the walk");

    // A resolution started now lists the audience again: the new installation is in it.
    assert_eq!(
        walk(&store, scope, &filter, 7).await,
        walk(&sql, scope, &filter, 7).await
    );
}

/// Not part of the suite: resolving audiences of about 100,000 installations in chunks of 1,000
/// (write transactions, as the core does) from the index's list and by SQL, over 100,000
/// persons. `cargo test --release -p roster-store-sqlite --test memindex -- --ignored
/// --nocapture resolution_timings_over_100k_people`.
#[tokio::test]
#[ignore]
async fn resolution_timings_over_100k_people() {
    use roster_store_tests::audience::seed_bulk;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let pop = {
        let store = sql_only(&path).await;
        let started = Instant::now();
        let pop = seed_bulk(&store, 42, 100_000).await;
        println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
        pop
    };
    let store = indexed(&path).await;
    let sql = sql_only(&path).await;
    let cases = [
        (json!({}), None),
        (json!({}), Some(pop.apps[0].id)),
        (json!({"tags": {"$nin": ["vip"]}}), None),
        (json!({"tags": {"$nin": ["vip"]}}), Some(pop.apps[0].id)),
        (json!({"tags": "vip"}), None),
        (json!({"tags": "vip"}), Some(pop.apps[0].id)),
        (json!({"score": {"$gte": 5}}), Some(pop.apps[0].id)),
    ];
    for (json, app) in cases {
        let filter = Filter::parse(&json, &pop.definitions, "filter").unwrap();
        let scope = Scope {
            account_id: pop.account.id,
            application_id: app,
        };
        let mut walks = Vec::new();
        for (name, s) in [("index", &store), ("SQL", &sql)] {
            let started = Instant::now();
            let first = walk_from(s, scope, &filter, 1000, None, 1).await;
            let first_ms = started.elapsed().as_secs_f64() * 1000.0;
            let rest = walk_from(s, scope, &filter, 1000, first.last().cloned(), usize::MAX).await;
            let total = started.elapsed().as_secs_f64();
            println!(
                "{json} in {}: {} installations by {name} in {total:.2} s (first chunk {first_ms:.0} ms)",
                if app.is_some() {
                    "one application"
                } else {
                    "the account"
                },
                first.len() + rest.len()
            );
            walks.push([first, rest].concat());
        }
        assert_eq!(walks[0], walks[1], "{json}");
    }
}
