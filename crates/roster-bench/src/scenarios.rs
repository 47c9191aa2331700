//! The scenarios of issue 7. Each builds a fresh store and server, generates its data, measures,
//! and returns a [`Report`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use roster_server::store::open_command_store;
use roster_store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::load::{self, Worker};
use crate::report::{Method, Report, histogram};
use crate::seed::{self, PERSON_ATTRIBUTES, SeedSpec, Seeded};
use crate::standin;
use crate::system::{self, Machine};
use crate::target::{App, Backend, FreshStore, Server, ServerMode, ServerOptions};
use crate::workers::{Mix, Register};

/// Options every scenario shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub backend: Backend,
    /// A PostgreSQL server URL (any database): the run creates and drops its own database.
    pub postgres_url: String,
    pub mode: ServerMode,
    /// Progress bars on stderr.
    pub progress: bool,
}

/// A store, a server on it, and the machine description.
struct Run {
    store: FreshStore,
    server: Server,
    machine: Machine,
}

impl Run {
    async fn start(common: &Common, opts: &ServerOptions) -> anyhow::Result<Run> {
        let machine = Machine::describe();
        let store = FreshStore::create(common.backend, &common.postgres_url).await?;
        let server = Server::start(&common.mode, &store, opts).await?;
        Ok(Run { store, server, machine })
    }

    fn method(&mut self) -> Method {
        self.machine.finish();
        Method {
            machine: self.machine.clone(),
            store: self.store.backend.name().to_owned(),
            server: self.server.mode_name.to_owned(),
            data_size: None,
            concurrency: None,
            duration_seconds: None,
            warmup_seconds: None,
            notes: Vec::new(),
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        self.store.cleanup().await
    }
}

/// Options of the two load scenarios.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// `register`: unique Android registrations over HTTP, closed loop.
pub async fn register(common: &Common, o: &LoadOptions) -> anyhow::Result<Report> {
    let mut run = Run::start(common, &ServerOptions::default()).await?;
    let app = run.server.create_application("bench", None).await?;
    let workers: Vec<Box<dyn Worker>> = (0..o.concurrency)
        .map(|_| Box::new(Register::new(&app.code)) as Box<dyn Worker>)
        .collect();
    let before = run.server.cpu_seconds();
    let writer_before = writer_metrics(&run.server).await?;
    let started = Instant::now();
    let result = load::run(
        &run.server.addr,
        &run.server.addr,
        workers,
        o.warmup,
        o.duration,
        common.progress,
    )
    .await?;
    let cpu = run.server.cpu_seconds().zip(before).map(|(a, b)| a - b);
    let writer = writer_use(&run.server, writer_before, started).await?;
    let mut method = run.method();
    method.concurrency = Some(o.concurrency);
    method.duration_seconds = Some(result.elapsed);
    method.warmup_seconds = Some(o.warmup.as_secs_f64());
    method.notes.push("each request: POST /mobile/1/appinstance with the Android body of mobile-api.md §7.1 and a new token; HTTP/1.1 keep-alive; the load generator shares the machine".into());
    let mut report = Report::new("register", method);
    report.add("registrations/s", result.throughput(), "/s");
    report.add_latency("register", &result.all);
    add_counts(&mut report, &result);
    if let Some(cpu) = cpu {
        // Over the whole run (warm-up included), divided by every request answered.
        report.add(
            "server CPU per registration",
            cpu * 1e6 / result.total_answered.max(1) as f64,
            "µs",
        );
    }
    add_writer(&mut report, writer);
    add_memory(&mut report, &run.server);
    run.finish().await?;
    Ok(report)
}

/// `mobile-mix`: devices registering once, then the SDK's calls in a realistic mix.
pub async fn mobile_mix(common: &Common, o: &LoadOptions, devices: usize) -> anyhow::Result<Report> {
    let mut run = Run::start(common, &ServerOptions::default()).await?;
    let app = run.server.create_application("bench", None).await?;
    let per_worker = devices.div_ceil(o.concurrency.max(1));
    let users = (devices as u64 / 2).max(1);
    let workers: Vec<Box<dyn Worker>> = (0..o.concurrency)
        .map(|i| Box::new(Mix::new(&app.code, per_worker, users, i as u64 + 1)) as Box<dyn Worker>)
        .collect();
    let before = run.server.cpu_seconds();
    let writer_before = writer_metrics(&run.server).await?;
    let started = Instant::now();
    let result = load::run(
        &run.server.addr,
        &run.server.addr,
        workers,
        o.warmup,
        o.duration,
        common.progress,
    )
    .await?;
    let writer = writer_use(&run.server, writer_before, started).await?;
    let mut method = run.method();
    method.concurrency = Some(o.concurrency);
    method.data_size = Some((per_worker * o.concurrency) as u64);
    method.duration_seconds = Some(result.elapsed);
    method.warmup_seconds = Some(o.warmup.as_secs_f64());
    method.notes.push(format!(
        "{} simulated devices ({per_worker} per connection, served round robin), {users} users to personalize as; mix: 25% GET installation, 15% PATCH installation, 12% GET user, 20% PATCH user, 18% personalize (half with forceDepersonalize), 10% depersonalize; a device registers first; the warm-up registers the devices",
        per_worker * o.concurrency
    ));
    let mut report = Report::new("mobile-mix", method);
    report.add("requests/s", result.throughput(), "/s");
    report.add_latency("all", &result.all);
    for (op, h) in &result.per_op {
        report.add_latency(op, h);
    }
    add_counts(&mut report, &result);
    if let Some(cpu) = run.server.cpu_seconds().zip(before).map(|(a, b)| a - b) {
        report.add(
            "server CPU per request",
            cpu * 1e6 / result.total_answered.max(1) as f64,
            "µs",
        );
    }
    add_writer(&mut report, writer);
    add_memory(&mut report, &run.server);
    run.finish().await?;
    Ok(report)
}

/// The server's `GET /metrics` text.
async fn metrics_text(server: &Server) -> anyhow::Result<String> {
    let resp = reqwest::get(format!("{}/metrics", server.base_url)).await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("GET /metrics: {status}: {text}");
    }
    Ok(text)
}

/// The value of the exact series line `series` (name and labels) of a `/metrics` text.
fn series_value<T: std::str::FromStr>(text: &str, series: &str) -> Option<T> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The server's single writer from `/metrics` (`roster_store_writer_*`): seconds held, write
/// transactions, committed batches; `None` when the store has none (PostgreSQL).
async fn writer_metrics(server: &Server) -> anyhow::Result<Option<(f64, u64, u64)>> {
    let text = metrics_text(server).await?;
    let value = |series: &str| series_value::<f64>(&text, series);
    let Some(held) = value("roster_store_writer_held_seconds_total") else {
        return Ok(None);
    };
    let count = |series: &str| value(series).unwrap_or(0.0) as u64;
    Ok(Some((
        held,
        count("roster_store_writer_transactions_total"),
        count("roster_store_writer_batches_total"),
    )))
}

/// How a load run used the server's single writer, from `/metrics` before and after it.
struct WriterUse {
    /// Share of the run's wall time the writer was held.
    busy: f64,
    /// Microseconds held per write transaction (batch commits included).
    per_transaction_us: f64,
    /// Write transactions per committed batch.
    per_batch: f64,
}

async fn writer_use(
    server: &Server,
    before: Option<(f64, u64, u64)>,
    started: Instant,
) -> anyhow::Result<Option<WriterUse>> {
    let wall = started.elapsed().as_secs_f64();
    let after = writer_metrics(server).await?;
    Ok(before.zip(after).map(|((h0, t0, b0), (h1, t1, b1))| {
        let (held, txs, batches) = (h1 - h0, t1.saturating_sub(t0), b1.saturating_sub(b0));
        WriterUse {
            busy: held / wall.max(f64::MIN_POSITIVE),
            per_transaction_us: held * 1e6 / txs.max(1) as f64,
            per_batch: txs as f64 / batches.max(1) as f64,
        }
    }))
}

fn add_writer(report: &mut Report, writer: Option<WriterUse>) {
    if let Some(w) = writer {
        // Over the whole run, warm-up included, like the CPU figure.
        report.add("store writer held (share of the run)", w.busy, "");
        report.add("store writer held per write transaction", w.per_transaction_us, "µs");
        report.add("write transactions per committed batch", w.per_batch, "");
    }
}

fn add_counts(report: &mut Report, result: &load::LoadResult) {
    report.add("answers ok", result.ok, "");
    report.add(
        "expected refusals (409 on a user switch without force)",
        result.expected,
        "",
    );
    report.add("errors", result.errors, "");
    if result.transport_errors > 0 {
        report.add("transport errors", result.transport_errors, "");
    }
    if !result.error_samples.is_empty() {
        report.add("error samples", &result.error_samples, "");
    }
}

fn add_memory(report: &mut Report, server: &Server) {
    if let Some(m) = server.memory() {
        report.add("server RSS at end", m.rss_kib as f64 / 1024.0, "MiB");
        report.add("server peak RSS", m.peak_rss_kib as f64 / 1024.0, "MiB");
        report.add(
            "server private memory at end (RssAnon)",
            m.anon_kib as f64 / 1024.0,
            "MiB",
        );
    }
}

/// The stand-ins of a run and the application pointed at them.
struct Providers {
    apns: roster_push_standins::ApnsStandIn,
    fcm: roster_push_standins::FcmStandIn,
}

impl Providers {
    async fn start() -> anyhow::Result<Providers> {
        Ok(Providers {
            apns: standin::apns().await?,
            fcm: standin::fcm().await?,
        })
    }

    /// `providers` of the application resource; APNs through `apns_base` when given (the TLS
    /// front), else straight to the h2c stand-in.
    fn settings(&self, apns_base: Option<String>) -> Value {
        let mut apns = self.apns.application_settings();
        if let Some(base) = apns_base {
            apns["baseUrl"] = json!(base);
        }
        json!({"apns": apns, "fcm": self.fcm.application_settings()})
    }

    fn sent(&self) -> u64 {
        self.apns.stats().requests + self.fcm.stats().sends
    }
}

/// Defines the generator's attributes and seeds `spec` into the default account, straight
/// through the store.
async fn seed_people(run: &Run, app: &App, spec: &SeedSpec, progress: bool) -> anyhow::Result<Seeded> {
    for (name, kind) in PERSON_ATTRIBUTES {
        run.server.define_person_attribute(name, kind).await?;
    }
    // Without an in-memory audience index: this process only writes.
    let store: Arc<dyn Store> = open_command_store(&run.store.url).await?;
    let account = {
        let mut tx = store.begin_read().await?;
        let account = tx
            .default_account()
            .await?
            .context("the server made no default account")?;
        tx.rollback().await?;
        account
    };
    let seeded = seed::seed(store.as_ref(), account.id, app.id, spec, progress).await?;
    drop(store);
    Ok(seeded)
}

/// Sends one message; returns its `messageId` and how long the request took.
async fn send(server: &Server, message: Value) -> anyhow::Result<(Vec<String>, f64)> {
    let started = Instant::now();
    let answer = server.api("POST", "/push/3/messages", Some(message)).await?;
    let took = started.elapsed().as_secs_f64();
    let ids = answer["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["messageId"].as_str().map(String::from))
        .collect();
    Ok((ids, took))
}

/// Polls a message until `until` holds for it; returns the message and seconds waited.
async fn wait_message(
    server: &Server,
    id: &str,
    started: Instant,
    timeout: Duration,
    until: impl Fn(&Value) -> bool,
) -> anyhow::Result<(Value, f64)> {
    loop {
        let m = server.api("GET", &format!("/api/v1/messages/{id}"), None).await?;
        if until(&m) {
            return Ok((m, started.elapsed().as_secs_f64()));
        }
        if started.elapsed() > timeout {
            bail!("message {id} not there after {timeout:?}: {m}");
        }
        tokio::time::sleep(poll_interval(started)).await;
    }
}

/// How long to wait before polling a message again: often at first (short resolutions are
/// timed to 20 ms), then every half second, because reading a message counts its delivery
/// records by status, which on a large send is work the poller would add to what it measures.
fn poll_interval(started: Instant) -> Duration {
    if started.elapsed() < Duration::from_secs(2) {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(500)
    }
}

/// Options of `audience`.
#[derive(Debug, Clone)]
pub struct AudienceOptions {
    pub people: u64,
    /// Previews per filter (the report gives min, median and max).
    pub repeat: usize,
    /// Size of the external-id list of filter 5.
    pub ext_ids: u64,
    /// Also time full resolution, by sending to each audience.
    pub send: bool,
}

/// `audience`: people with tags, typed attributes and 1–3 installations; exact-count previews
/// and full resolution of five filters.
/// The first four filters of the issue's five (the fifth, an external-id list with
/// `targetOnlyPrimaryDevices`, is built from the data set's ids).
pub fn audience_filters() -> [(&'static str, Value); 4] {
    [
        ("one tag", json!({"tags": "tag1"})),
        (
            "tag AND number range",
            json!({"tags": "tag2", "score": {"$gte": 250, "$lt": 500}}),
        ),
        ("date before", json!({"signup": {"$lt": "2021-01-01"}})),
        (
            "OR of two tags NOT a third",
            json!({"$or": [{"tags": "tag3"}, {"tags": "tag4"}], "$not": {"tags": "tag0"}}),
        ),
    ]
}

pub async fn audience(common: &Common, o: &AudienceOptions) -> anyhow::Result<Report> {
    let providers = Providers::start().await?;
    let mut run = Run::start(common, &ServerOptions::default()).await?;
    let app = run
        .server
        .create_application("bench", Some(providers.settings(None)))
        .await?;
    let seeded = seed_people(
        &run,
        &app,
        &SeedSpec {
            people: o.people,
            max_installations: 3,
            apns_percent: 40,
            seed: 7,
            batch: 2000,
        },
        common.progress,
    )
    .await?;
    // The server's SQLite store sees the seed as another process's commits and builds its
    // in-memory audience index again; the previews are timed once it holds every person.
    let index_wait = wait_for_audience_index(&run, &app, seeded.people).await?;
    let index_before = audience_index_metrics(&run.server).await?;
    let mut previews = 0u64;
    let filters = audience_filters();
    let mut report_rows: Vec<(String, Value)> = Vec::new();
    for (name, filter) in &filters {
        let mut times = Vec::new();
        let mut counts = Value::Null;
        for _ in 0..o.repeat.max(1) {
            let started = Instant::now();
            previews += 1;
            counts = run
                .server
                .api(
                    "POST",
                    "/api/v1/segments/preview",
                    Some(json!({"filter": filter, "applicationCode": app.code, "sampleSize": 0})),
                )
                .await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let mut row = json!({
            "filter": filter,
            "people": counts["people"],
            "installations": counts["installations"],
            "deliverable": counts["deliverableInstallations"],
            "previewMs": spread(&mut times),
        });
        if o.send {
            let message = json!({"messages": [{
                "sender": app.code,
                "destinations": [{"type": "MULTIPLE", "filter": filter}],
                "content": {"title": "Bench", "text": "Audience resolution"}
            }]});
            let started = Instant::now();
            let (ids, _) = send(&run.server, message).await?;
            let id = ids.first().context("no message")?;
            let timeout = Duration::from_secs(3600);
            let (m, resolved) = wait_message(&run.server, id, started, timeout, |m| {
                m["audience"]["state"] == "RESOLVED"
            })
            .await?;
            let (done, delivered) = wait_message(&run.server, id, started, timeout, |m| m["done"] == true).await?;
            row["resolvedInstallations"] = m["audience"]["installations"].clone();
            row["resolutionMs"] = json!(resolved * 1000.0);
            row["allDeliveredMs"] = json!(delivered * 1000.0);
            row["accepted"] = done["deliveries"]["ACCEPTED"].clone();
        }
        report_rows.push((name.to_string(), row));
    }
    // Filter 5: primary devices of an external-id list. A filter holds at most 1,000 `$in`
    // values and 64 KiB, so the exact count is the sum of previews of disjoint slices of 1,000;
    // full resolution is one send of EXTERNAL_USER_ID destinations (100 messages × 1,000
    // destinations at most per request), resolved in the request.
    let n = o.ext_ids.min(o.people);
    let step = (o.people / n.max(1)).max(1);
    let ids: Vec<String> = (0..n).map(|k| seed::external_id(k * step)).collect();
    let mut times = Vec::new();
    let mut total = json!({"people": 0, "installations": 0, "deliverable": 0});
    for r in 0..o.repeat.max(1) {
        let started = Instant::now();
        let mut sums = [0u64; 3];
        for slice in ids.chunks(1000) {
            previews += 1;
            let counts = run
                .server
                .api(
                    "POST",
                    "/api/v1/segments/preview",
                    Some(
                        json!({"filter": {"externalUserId": {"$in": slice}}, "applicationCode": app.code,
                        "targetOnlyPrimaryDevices": true, "sampleSize": 0}),
                    ),
                )
                .await?;
            sums[0] += counts["people"].as_u64().unwrap_or(0);
            sums[1] += counts["installations"].as_u64().unwrap_or(0);
            sums[2] += counts["deliverableInstallations"].as_u64().unwrap_or(0);
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if r == 0 {
            total = json!({"people": sums[0], "installations": sums[1], "deliverable": sums[2]});
        }
    }
    let mut row = json!({
        "filter": format!("externalUserId in a list of {n}, targetOnlyPrimaryDevices"),
        "people": total["people"],
        "installations": total["installations"],
        "deliverable": total["deliverable"],
        "previewMs": spread(&mut times),
    });
    if o.send {
        let messages: Vec<Value> = ids
            .chunks(1000)
            .map(|slice| {
                json!({
                    "sender": app.code,
                    "destinations": slice.iter().map(|e| json!({"type": "EXTERNAL_USER_ID", "externalUserId": e, "targetOnlyPrimaryDevices": true})).collect::<Vec<_>>(),
                    "content": {"title": "Bench", "text": "Primary devices of a list"}
                })
            })
            .collect();
        let mut took = 0.0;
        let mut message_ids = Vec::new();
        for batch in messages.chunks(100) {
            let (ids, t) = send(&run.server, json!({"messages": batch})).await?;
            took += t;
            message_ids.extend(ids);
        }
        row["resolutionMs"] = json!(took * 1000.0);
        row["resolvedInstallations"] = json!(format!("{} messages, resolved in the request", message_ids.len()));
    }
    report_rows.push(("primary devices of an external-id list".into(), row));
    let index_after = audience_index_metrics(&run.server).await?;

    let mut method = run.method();
    method.data_size = Some(seeded.people);
    method.notes.push(format!(
        "{} people with {} installations (1-3 each, 40% APNs, first one primary), 16 tags (tag k with probability 1/(k+2)), attributes score DECIMAL, signup DATE, plan STRING, active BOOLEAN; written through the store's bulk insert in {:.1} s",
        seeded.people, seeded.installations, seeded.seconds
    ));
    method.notes.push("preview: POST /api/v1/segments/preview with applicationCode and sampleSize 0 (exact counts); full resolution: POST /push/3/messages with a MULTIPLE destination, timed until the message's audience is RESOLVED (its delivery records written), then until done (every push answered by the stand-ins)".into());
    method.notes.push(match (&index_before, &index_after) {
        (Some(before), Some(after)) => format!(
            "path of the timed previews, from the server's /metrics before and after them: {} of {previews} answered by the in-memory audience index, {} ran as SQL although it was ready (a filter it cannot answer), the other {} as SQL while it was not ready; the index was {} at the end",
            after.answered.saturating_sub(before.answered),
            after.fallbacks.saturating_sub(before.fallbacks),
            previews.saturating_sub(
                after.answered.saturating_sub(before.answered) + after.fallbacks.saturating_sub(before.fallbacks)
            ),
            if after.ready { "ready" } else { "not ready" },
        ),
        _ => "path of the timed previews: SQL (the server's store keeps no in-memory audience index)".into(),
    });
    if let Some((_, index)) = &index_wait {
        method.notes.push(format!(
            "before the timed previews, on SQLite: one preview (so that the server looks for the seed's commits, which another process made, and builds its in-memory audience index again), then /metrics polled every {} ms until roster_audience_index_ready is 1 with roster_audience_index_persons = {} (index builds so far: {})",
            INDEX_POLL.as_millis(),
            index.persons,
            index.builds
        ));
    }
    let mut report = Report::new("audience", method);
    report.add("seed rate", seeded.people as f64 / seeded.seconds.max(1e-9), "people/s");
    if let Some((waited, index)) = &index_wait {
        report.add("audience index ready after seeding", *waited, "s");
        report.add("audience index persons", index.persons, "");
    }
    for (name, row) in report_rows {
        report.add(name, row, "");
    }
    report.add("pushes answered by the stand-ins", providers.sent(), "");
    add_memory(&mut report, &run.server);
    run.finish().await?;
    Ok(report)
}

/// How often the audience scenario reads `/metrics` while the index builds.
const INDEX_POLL: Duration = Duration::from_millis(250);

/// The longest the audience scenario waits for the server's in-memory audience index.
const INDEX_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The server's in-memory audience index as its `/metrics` reports it.
#[derive(Debug, Clone, Copy, Default)]
struct IndexMetrics {
    ready: bool,
    persons: u64,
    builds: u64,
    answered: u64,
    fallbacks: u64,
}

/// The server's in-memory audience index from `/metrics`; `None` when it reports none (a
/// PostgreSQL store, or the index turned off).
async fn audience_index_metrics(server: &Server) -> anyhow::Result<Option<IndexMetrics>> {
    let text = metrics_text(server).await?;
    let value = |series: &str| series_value::<u64>(&text, series);
    let Some(ready) = value("roster_audience_index_ready") else {
        return Ok(None);
    };
    Ok(Some(IndexMetrics {
        ready: ready == 1,
        persons: value("roster_audience_index_persons").unwrap_or(0),
        builds: value("roster_audience_index_builds_total").unwrap_or(0),
        answered: value(r#"roster_audience_index_previews_total{result="answered"}"#).unwrap_or(0),
        fallbacks: value(r#"roster_audience_index_previews_total{result="fallback"}"#).unwrap_or(0),
    }))
}

/// After the seed (another process's commits): one preview, which makes the server look for
/// commits it did not make and build its index again, then `/metrics` until the index is ready
/// and holds `people` persons. Seconds from the end of the seed, and the index then; `None` when
/// the server keeps no index (a PostgreSQL store, or the index turned off), with nothing to wait
/// for.
async fn wait_for_audience_index(run: &Run, app: &App, people: u64) -> anyhow::Result<Option<(f64, IndexMetrics)>> {
    if run.store.backend == Backend::Postgres {
        return Ok(None);
    }
    let server = &run.server;
    let started = Instant::now();
    let nudge = async || {
        server
            .api(
                "POST",
                "/api/v1/segments/preview",
                Some(json!({"filter": {"tags": "tag1"}, "applicationCode": app.code, "sampleSize": 0})),
            )
            .await
    };
    nudge().await?;
    let mut last_nudge = Instant::now();
    loop {
        let Some(index) = audience_index_metrics(server).await? else {
            return Ok(None);
        };
        if index.ready && index.persons == people {
            return Ok(Some((started.elapsed().as_secs_f64(), index)));
        }
        if started.elapsed() > INDEX_TIMEOUT {
            bail!("the server's audience index was not ready with {people} persons after {INDEX_TIMEOUT:?}: {index:?}");
        }
        // Ready but without the seed: the server has not seen its commits yet (its writer was
        // busy when the preview looked); another preview, answered by the index, looks again.
        if index.ready && last_nudge.elapsed() > Duration::from_secs(5) {
            nudge().await?;
            last_nudge = Instant::now();
        }
        tokio::time::sleep(INDEX_POLL).await;
    }
}

/// min / median / max of `times` (milliseconds).
pub fn spread(times: &mut [f64]) -> Value {
    times.sort_by(|a, b| a.total_cmp(b));
    json!({
        "min": times.first().copied().unwrap_or(f64::NAN),
        "median": times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        "max": times.last().copied().unwrap_or(f64::NAN),
    })
}

/// Options of `fanout`.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub installations: u64,
    pub apns_percent: u32,
    pub delivery_workers: Option<usize>,
    /// Send APNs through a TLS front with this certificate and key (PEM files), as Parse must.
    pub apns_tls: Option<(PathBuf, PathBuf)>,
}

/// `fanout`: a broadcast to every installation through the loopback stand-ins.
pub async fn fanout(common: &Common, o: &FanoutOptions) -> anyhow::Result<Report> {
    let providers = Providers::start().await?;
    let mut opts = ServerOptions {
        delivery_workers: o.delivery_workers,
        env: Vec::new(),
    };
    let mut apns_base = None;
    if let Some((cert, key)) = &o.apns_tls {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backend = providers.apns.base_url().trim_start_matches("http://").parse()?;
        standin::tls_front(listener, backend, cert, key).await?;
        apns_base = Some(format!("https://{addr}"));
        // The server's APNs client verifies the stand-in's self-signed certificate against it.
        opts.env.push(("SSL_CERT_FILE".into(), cert.display().to_string()));
    }
    let mut run = Run::start(common, &opts).await?;
    let app = run
        .server
        .create_application("bench", Some(providers.settings(apns_base.clone())))
        .await?;
    let seeded = seed_people(
        &run,
        &app,
        &SeedSpec {
            people: o.installations,
            max_installations: 1,
            apns_percent: o.apns_percent,
            seed: 11,
            batch: 2000,
        },
        common.progress,
    )
    .await?;
    // As in `audience`: the seed is another process's commits, after which a SQLite server
    // builds its in-memory audience index again. The send starts once it is built, as it would
    // on a server that started on this data, so that neither the build's CPU nor SQL
    // resolution in its stead is counted as the send's.
    let index_wait = wait_for_audience_index(&run, &app, seeded.people).await?;
    let memory_before = run.server.memory();
    let cpu_before = run.server.cpu_seconds();
    let own_cpu_before = system::cpu_seconds_of(std::process::id());
    let sent_before = providers.sent();
    let message = json!({"messages": [{
        "sender": app.code,
        "destinations": [{"type": "MULTIPLE"}],
        "content": {"title": "Bench", "text": "Fan-out"}
    }]});
    let started = Instant::now();
    let (ids, _) = send(&run.server, message).await?;
    let id = ids.first().context("no message")?.clone();
    let bar = load::count_bar(common.progress, seeded.installations, "pushes");
    let mut resolved_at = None;
    let mut peak_rss = 0u64;
    let mut peak_anon = 0u64;
    let done = loop {
        let m = run.server.api("GET", &format!("/api/v1/messages/{id}"), None).await?;
        if let Some(mem) = run.server.memory() {
            peak_rss = peak_rss.max(mem.peak_rss_kib);
            peak_anon = peak_anon.max(mem.anon_kib);
        }
        bar.set_position(providers.sent() - sent_before);
        if resolved_at.is_none() && m["audience"]["state"] == "RESOLVED" {
            resolved_at = Some(started.elapsed().as_secs_f64());
        }
        if m["done"] == true {
            break m;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("the fan-out did not finish within an hour: {m}");
        }
        // Between polls, watch the stand-ins' count of calls (in this process, no request):
        // once every installation has had its call, poll every 20 ms until the answers are
        // recorded. Otherwise the end of a send longer than 2 s would be timed to the half
        // second of the slow polls (±5% at 100,000 installations).
        let all_called = || providers.sent() - sent_before >= seeded.installations;
        let interval = if all_called() {
            Duration::from_millis(20)
        } else {
            poll_interval(started)
        };
        let wake = Instant::now() + interval;
        while Instant::now() < wake {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if interval > Duration::from_millis(20) && all_called() {
                break;
            }
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let cpu = run.server.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let own_cpu = system::cpu_seconds_of(std::process::id())
        .zip(own_cpu_before)
        .map(|(a, b)| a - b);
    let accepted = done["deliveries"]["ACCEPTED"].as_u64().unwrap_or(0);
    let mut method = run.method();
    method.data_size = Some(seeded.installations);
    method.notes.push(format!(
        "{} installations, one per person, {}% APNs, the rest FCM; one MULTIPLE broadcast; timed from the POST /push/3/messages to the message being done (every delivery answered; polled every 20 ms from the stand-ins' last call); the stand-ins run in the load generator's process; APNs over {}",
        seeded.installations,
        o.apns_percent,
        if apns_base.is_some() { "TLS (a TLS front relaying to the h2c stand-in)" } else { "h2c" }
    ));
    if let Some((waited, index)) = &index_wait {
        method.notes.push(format!(
            "before the send, on SQLite: the server's in-memory audience index built again after the seed (another process's commits), ready {waited:.1} s after the seed with {} persons ({} builds so far)",
            index.persons, index.builds
        ));
    }
    let mut report = Report::new("fanout", method);
    report.add("notifications/s end to end", accepted as f64 / elapsed, "/s");
    report.add("total time", elapsed, "s");
    if let Some(r) = resolved_at {
        report.add("audience resolved after", r, "s");
    }
    report.add("deliveries", &done["deliveries"], "");
    report.add("requests answered by the stand-ins", providers.sent() - sent_before, "");
    if let Some(cpu) = cpu {
        report.add("server CPU", cpu, "s");
        report.add("server CPU per notification", cpu * 1e6 / accepted.max(1) as f64, "µs");
    }
    if let Some(cpu) = own_cpu {
        report.add("stand-ins + poller CPU", cpu, "s");
    }
    if let Some(m) = memory_before {
        report.add("server RSS before the send", m.rss_kib as f64 / 1024.0, "MiB");
    }
    report.add("server peak RSS", peak_rss as f64 / 1024.0, "MiB");
    report.add(
        "server peak private memory (RssAnon, sampled with the polls)",
        peak_anon as f64 / 1024.0,
        "MiB",
    );
    run.finish().await?;
    Ok(report)
}

/// `footprint`: idle RSS, RSS with N people, bytes on disk per person.
pub async fn footprint(common: &Common, people: u64) -> anyhow::Result<Report> {
    let mut run = Run::start(common, &ServerOptions::default()).await?;
    // Idle: started, one health check, a moment to settle.
    run.server.api("GET", "/healthz", None).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = run.server.memory();
    let app = run.server.create_application("bench", None).await?;
    let disk_before = run.store.bytes_on_disk().await?;
    let seeded = seed_people(
        &run,
        &app,
        &SeedSpec {
            people,
            max_installations: 1,
            apns_percent: 50,
            seed: 13,
            batch: 2000,
        },
        common.progress,
    )
    .await?;
    let disk_after = run.store.bytes_on_disk().await?;
    // Work the data a little so that the server has read it: a preview over everyone, and the
    // installations of the sample read through the mobile API.
    let started = Instant::now();
    run.server
        .api(
            "POST",
            "/api/v1/segments/preview",
            Some(json!({"filter": {}, "sampleSize": 10})),
        )
        .await?;
    let preview_ms = started.elapsed().as_secs_f64() * 1000.0;
    let http = reqwest::Client::new();
    let mut gets = histogram();
    for id in &seeded.sample_push_reg_ids {
        let started = Instant::now();
        let r = http
            .get(format!("{}/mobile/1/appinstance/{id}", run.server.base_url))
            .header("authorization", format!("App {}", app.code))
            .header("pushregistrationid", id)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET installation {id}: {}", r.status());
        }
        r.bytes().await?;
        let _ = gets.record(started.elapsed().as_micros() as u64);
    }
    let loaded = run.server.memory();
    let mut method = run.method();
    method.data_size = Some(seeded.people);
    method.notes.push(format!(
        "{} people, each with one installation, 2-3 tags on average and four typed attributes; bytes on disk: {}",
        seeded.people,
        match run.store.backend {
            Backend::Sqlite => "the database file after a WAL checkpoint (TRUNCATE), growth over the empty store",
            Backend::Postgres => "pg_database_size growth over the empty store (after ANALYZE)",
        }
    ));
    let mut report = Report::new("footprint", method);
    if let Some(m) = idle {
        report.add("idle RSS", m.rss_kib as f64 / 1024.0, "MiB");
    }
    if let Some(m) = loaded {
        report.add(
            format!("RSS with {} people", seeded.people),
            m.rss_kib as f64 / 1024.0,
            "MiB",
        );
        report.add("peak RSS", m.peak_rss_kib as f64 / 1024.0, "MiB");
        report.add(
            format!(
                "of the RSS with {} people: private (RssAnon) / file pages (RssFile)",
                seeded.people
            ),
            format!(
                "{:.1} / {:.1} MiB",
                m.anon_kib as f64 / 1024.0,
                m.file_kib as f64 / 1024.0
            ),
            "",
        );
    }
    report.add("store size empty", disk_before, "bytes");
    report.add("store size loaded", disk_after, "bytes");
    report.add(
        "bytes on disk per person (one installation)",
        (disk_after.saturating_sub(disk_before)) as f64 / seeded.people.max(1) as f64,
        "bytes",
    );
    // Where the bytes go, per person: the ten largest tables and indexes.
    let sizes: Vec<Value> = run
        .store
        .relation_sizes()
        .await?
        .into_iter()
        .take(10)
        .map(|(name, bytes)| json!({"relation": name, "bytesPerPerson": bytes as f64 / seeded.people.max(1) as f64}))
        .collect();
    report.add("largest relations", sizes, "");
    report.add("preview of everyone", preview_ms, "ms");
    report.add_latency("GET installation (sample)", &gets);
    if run.server.in_process() {
        report.add("warning", "in-process server: RSS includes the load generator", "");
    }
    run.finish().await?;
    Ok(report)
}
