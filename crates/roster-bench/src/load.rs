//! The load engine: a fixed number of HTTP/1.1 keep-alive connections, each driven by one
//! [`Worker`] that sends its next request as soon as the previous answer is read (closed loop).
//! Latency is measured per request from send to the last body byte; requests completed during
//! the warm-up are not counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpStream;

use crate::report::histogram;

/// One request a worker wants sent.
pub struct Call {
    /// The operation's name in the report (`register`, `get-user`, ...).
    pub op: &'static str,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Bytes>,
}

/// How an answer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// What a correct server answers.
    Ok,
    /// A refusal the scenario provokes on purpose (e.g. `409` on a colliding personalize).
    Expected,
    /// Anything else.
    Error,
}

/// A simulated client: produces requests and judges answers.
pub trait Worker: Send + 'static {
    /// The next request.
    fn next(&mut self) -> Call;
    /// Judges the answer to the last request.
    fn answer(&mut self, status: u16, body: &[u8]) -> Outcome;
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Counts and latencies of a load run.
pub struct LoadResult {
    /// Seconds measured.
    pub elapsed: f64,
    /// Latency of every measured request.
    pub all: Histogram<u64>,
    /// Latency per operation.
    pub per_op: BTreeMap<&'static str, Histogram<u64>>,
    pub ok: u64,
    pub expected: u64,
    pub errors: u64,
    /// Transport failures (connection refused or reset, timeouts).
    pub transport_errors: u64,
    /// A few error answers, for the report.
    pub error_samples: Vec<String>,
    /// Every request answered, warm-up included (for CPU per request over the whole run).
    pub total_answered: u64,
}

impl LoadResult {
    /// Requests per second over the measured time.
    pub fn throughput(&self) -> f64 {
        (self.ok + self.expected + self.errors) as f64 / self.elapsed.max(1e-9)
    }
}

struct WorkerResult {
    all: Histogram<u64>,
    per_op: BTreeMap<&'static str, Histogram<u64>>,
    ok: u64,
    expected: u64,
    errors: u64,
    transport_errors: u64,
    error_samples: Vec<String>,
}

/// Runs `workers` against `addr` (`host:port`): `warmup`, then `duration` measured.
pub async fn run(
    addr: &str,
    host: &str,
    workers: Vec<Box<dyn Worker>>,
    warmup: Duration,
    duration: Duration,
    progress: bool,
) -> anyhow::Result<LoadResult> {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for worker in workers {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let phase = phase.clone();
        let done = done.clone();
        let host = host.to_owned();
        let addr = addr.to_owned();
        handles.push(tokio::spawn(drive(worker, sender, addr, host, phase, done)));
    }
    let bar = progress_bar(progress, warmup + duration);
    let ticker = {
        let bar = bar.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let s = started.elapsed().as_secs_f64();
                bar.set_position((s * 10.0) as u64);
                bar.set_message(format!(
                    "{} requests, {:.0}/s",
                    done.load(Ordering::Relaxed),
                    done.load(Ordering::Relaxed) as f64 / s
                ));
            }
        })
    };
    tokio::time::sleep(warmup).await;
    phase.store(MEASURE, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    phase.store(STOP, Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    let mut result = LoadResult {
        elapsed,
        all: histogram(),
        per_op: BTreeMap::new(),
        ok: 0,
        expected: 0,
        errors: 0,
        transport_errors: 0,
        error_samples: Vec::new(),
        total_answered: 0,
    };
    for h in handles {
        let w = h.await?;
        result.all.add(&w.all)?;
        for (op, hist) in w.per_op {
            result.per_op.entry(op).or_insert_with(histogram).add(&hist)?;
        }
        result.ok += w.ok;
        result.expected += w.expected;
        result.errors += w.errors;
        result.transport_errors += w.transport_errors;
        if result.error_samples.len() < 5 {
            result.error_samples.extend(w.error_samples.into_iter().take(5));
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    result.total_answered = done.load(Ordering::Relaxed);
    Ok(result)
}

async fn drive(
    mut worker: Box<dyn Worker>,
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: String,
    host: String,
    phase: Arc<AtomicU8>,
    done: Arc<AtomicU64>,
) -> WorkerResult {
    let mut r = WorkerResult {
        all: histogram(),
        per_op: BTreeMap::new(),
        ok: 0,
        expected: 0,
        errors: 0,
        transport_errors: 0,
        error_samples: Vec::new(),
    };
    loop {
        if phase.load(Ordering::Relaxed) == STOP {
            return r;
        }
        let call = worker.next();
        let mut builder = Request::builder()
            .method(call.method)
            .uri(&call.path)
            .header(http::header::HOST, &host);
        for (k, v) in &call.headers {
            builder = builder.header(*k, v);
        }
        let request = builder
            .body(Full::new(call.body.unwrap_or_default()))
            .expect("a valid request");
        let started = Instant::now();
        let answer = async {
            sender.ready().await?;
            let resp = sender.send_request(request).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        let micros = started.elapsed().as_micros() as u64;
        let measuring = phase.load(Ordering::Relaxed) == MEASURE;
        done.fetch_add(1, Ordering::Relaxed);
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                if measuring {
                    r.transport_errors += 1;
                    r.errors += 1;
                    if r.error_samples.len() < 3 {
                        r.error_samples.push(format!("{}: {e}", call.op));
                    }
                }
                // A broken connection: open a new one and go on.
                match reconnect(&addr).await {
                    Some(s) => sender = s,
                    None => return r,
                }
                continue;
            }
        };
        let outcome = worker.answer(status, &body);
        if !measuring {
            continue;
        }
        let _ = r.all.record(micros.max(1));
        let _ = r.per_op.entry(call.op).or_insert_with(histogram).record(micros.max(1));
        match outcome {
            Outcome::Ok => r.ok += 1,
            Outcome::Expected => r.expected += 1,
            Outcome::Error => {
                r.errors += 1;
                if r.error_samples.len() < 3 {
                    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                    r.error_samples.push(format!("{}: {status} {text}", call.op));
                }
            }
        }
    }
}

async fn reconnect(addr: &str) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    for _ in 0..50 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            let _ = stream.set_nodelay(true);
            if let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                tokio::spawn(conn);
                return Some(sender);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A bar over `total` (in tenths of a second), hidden unless wanted (it draws on stderr, and only
/// when that is a terminal).
pub fn progress_bar(show: bool, total: Duration) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new((total.as_secs_f64() * 10.0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {msg}").expect("a valid template"),
    );
    bar
}

/// A bar counting `total` items.
pub fn count_bar(show: bool, total: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("a valid template"),
    );
    bar
}
