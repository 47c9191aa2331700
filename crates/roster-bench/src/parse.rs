//! The Parse Server side of the comparison (scripts/bench-compare.sh starts Parse): installation
//! creates through its REST API with the same load engine as Roster's `register`, and a push to
//! an audience through its APNs adapter into the stand-in of `roster-bench standin`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::load::{self, Worker};
use crate::report::{Method, Report};
use crate::system::{self, Machine};
use crate::workers::ParseCreate;

/// Where Parse runs.
#[derive(Debug, Clone)]
pub struct ParseTarget {
    /// e.g. `http://127.0.0.1:1337/parse`.
    pub url: String,
    pub app_id: String,
    pub rest_key: String,
    pub master_key: String,
    /// The Parse process, for its memory.
    pub pid: Option<u32>,
}

impl ParseTarget {
    fn host_port_mount(&self) -> anyhow::Result<(String, String)> {
        let rest = self
            .url
            .strip_prefix("http://")
            .context("--parse-url must be http://HOST:PORT/MOUNT")?;
        let (addr, mount) = rest.split_once('/').unwrap_or((rest, ""));
        Ok((addr.to_owned(), format!("/{mount}")))
    }
}

fn method(machine: &mut Machine, pid: Option<u32>) -> Method {
    machine.finish();
    Method {
        machine: machine.clone(),
        store: "postgres (Parse Server's PostgreSQL adapter)".into(),
        server: format!(
            "Parse Server (node), pid {}",
            pid.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into())
        ),
        data_size: None,
        concurrency: None,
        duration_seconds: None,
        warmup_seconds: None,
        notes: Vec::new(),
    }
}

/// Installation creates against Parse, closed loop.
pub async fn register(t: &ParseTarget, o: &crate::scenarios::LoadOptions, progress: bool) -> anyhow::Result<Report> {
    let mut machine = Machine::describe();
    let (addr, mount) = t.host_port_mount()?;
    let workers: Vec<Box<dyn Worker>> = (0..o.concurrency)
        .map(|_| {
            Box::new(ParseCreate {
                app_id: t.app_id.clone(),
                rest_key: t.rest_key.clone(),
                mount: mount.trim_end_matches('/').to_owned(),
            }) as Box<dyn Worker>
        })
        .collect();
    let result = load::run(&addr, &addr, workers, o.warmup, o.duration, progress).await?;
    let mut m = method(&mut machine, t.pid);
    m.concurrency = Some(o.concurrency);
    m.duration_seconds = Some(result.elapsed);
    m.warmup_seconds = Some(o.warmup.as_secs_f64());
    m.notes.push("each request: POST /parse/installations, an Android installation with a new installationId and token in channel `bench`; HTTP/1.1 keep-alive".into());
    let mut report = Report::new("parse-register", m);
    report.add("creates/s", result.throughput(), "/s");
    report.add_latency("create", &result.all);
    report.add("answers ok", result.ok, "");
    report.add("errors", result.errors, "");
    if !result.error_samples.is_empty() {
        report.add("error samples", &result.error_samples, "");
    }
    if let Some(mem) = t.pid.and_then(system::memory_of) {
        report.add("Parse peak RSS", mem.peak_rss_kib as f64 / 1024.0, "MiB");
    }
    Ok(report)
}

async fn standin_requests(http: &reqwest::Client, stats_url: &str) -> anyhow::Result<(u64, Value)> {
    let stats: Value = http.get(stats_url).send().await?.json().await?;
    Ok((stats["requests"].as_u64().unwrap_or(0), stats))
}

/// A push through Parse to every iOS installation of channel `channel`, timed from the REST call
/// until the stand-in has answered `expect` more requests (or nothing more came for 15 s).
pub async fn push(
    t: &ParseTarget,
    stats_url: &str,
    expect: u64,
    channel: &str,
    progress: bool,
) -> anyhow::Result<Report> {
    let mut machine = Machine::describe();
    let http = reqwest::Client::new();
    let (before, _) = standin_requests(&http, stats_url).await?;
    let cpu_before = t.pid.and_then(system::cpu_seconds_of);
    // The payload carries what the stand-in checks in Roster's pushes (an alert with a body, a
    // messageId, internalData with sendDateTime and bulkId); Parse sends the extra keys as they
    // are.
    let body = json!({
        "where": {"deviceType": "ios", "channels": {"$in": [channel]}},
        "data": {
            "alert": {"title": "Bench", "body": "Fan-out"},
            "messageId": "bench-parse",
            "internalData": {"sendDateTime": 1, "bulkId": "bench-parse"}
        }
    });
    let started = Instant::now();
    let resp = http
        .post(format!("{}/push", t.url.trim_end_matches('/')))
        .header("x-parse-application-id", &t.app_id)
        .header("x-parse-master-key", &t.master_key)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("Parse refused the push: {status} {text}");
    }
    let bar = load::count_bar(progress, expect, "pushes");
    // (pushes answered so far, when the last one was seen)
    let mut last = (0u64, Instant::now());
    let mut peak_rss = 0u64;
    // Parse gives up on some pushes without retrying them (node's HTTP/2 client refuses streams
    // it cannot queue): when nothing arrives for 15 s the push is over, short of `expect`.
    let stats = loop {
        let (now, stats) = standin_requests(&http, stats_url).await?;
        if let Some(mem) = t.pid.and_then(system::memory_of) {
            peak_rss = peak_rss.max(mem.peak_rss_kib);
        }
        let got = now - before;
        bar.set_position(got);
        if got != last.0 {
            last = (got, Instant::now());
        }
        if got >= expect || last.1.elapsed() > Duration::from_secs(15) {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delivered = last.0;
    let elapsed = last.1.duration_since(started).as_secs_f64();
    bar.finish_and_clear();
    if delivered == 0 {
        bail!("Parse delivered no push (stand-in: {stats})");
    }
    let mut m = method(&mut machine, t.pid);
    m.data_size = Some(expect);
    m.notes.push(format!(
        "POST /parse/push to deviceType ios in channel {channel} ({expect} installations), push.queueOptions.batchSize 1000, APNs adapter (@parse/node-apn, token auth) over TLS into the loopback APNs stand-in; timed until the stand-in answered {expect} requests"
    ));
    let mut report = Report::new("parse-push", m);
    report.add("notifications/s end to end", delivered as f64 / elapsed, "/s");
    report.add("total time (to the last push answered)", elapsed, "s");
    report.add("pushes answered by the stand-in", delivered, "");
    report.add("pushes lost by Parse", expect.saturating_sub(delivered), "");
    report.add("stand-in", stats, "");
    if let Some(cpu) = t
        .pid
        .and_then(system::cpu_seconds_of)
        .zip(cpu_before)
        .map(|(a, b)| a - b)
    {
        report.add("Parse CPU", cpu, "s");
        report.add("Parse CPU per notification", cpu * 1e6 / delivered.max(1) as f64, "µs");
    }
    report.add("Parse peak RSS", peak_rss as f64 / 1024.0, "MiB");
    Ok(report)
}
