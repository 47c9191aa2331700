//! What a run prints: its method (machine, store, sizes, concurrency, timing) and its figures,
//! as aligned text or as one JSON object (`--json`).

use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::system::Machine;

/// How a run was made.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Method {
    pub machine: Machine,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// `child process` (the `roster` binary) or `in-process`.
    pub server: String,
    /// People (or installations) in the store when measuring, where the scenario has data.
    pub data_size: Option<u64>,
    /// Connections (simulated clients) in flight.
    pub concurrency: Option<usize>,
    /// Measured seconds, where the scenario runs for a time.
    pub duration_seconds: Option<f64>,
    /// Seconds of load before measuring.
    pub warmup_seconds: Option<f64>,
    /// Anything else a reader needs to repeat or judge the run.
    pub notes: Vec<String>,
}

/// Latency percentiles of a set of requests, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Summarises a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One measured quantity.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: Value,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub unit: String,
}

/// A whole run: what was done and what came out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: String,
    pub method: Method,
    pub figures: Vec<Figure>,
}

impl Report {
    /// An empty report of `scenario`.
    pub fn new(scenario: &str, method: Method) -> Report {
        Report {
            scenario: scenario.to_owned(),
            method,
            figures: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn add(&mut self, name: impl Into<String>, value: impl Serialize, unit: &str) {
        self.figures.push(Figure {
            name: name.into(),
            value: serde_json::to_value(value).unwrap_or(Value::Null),
            unit: unit.to_owned(),
        });
    }

    /// Adds the latency percentiles of `h` under `prefix`.
    pub fn add_latency(&mut self, prefix: &str, h: &Histogram<u64>) {
        let l = Latency::of(h);
        self.add(format!("{prefix} latency"), l, "ms");
    }

    /// Prints the report as text or JSON on stdout.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer(&mut out, self)?;
            writeln!(out)?;
            return Ok(());
        }
        let m = &self.method;
        let mc = &m.machine;
        writeln!(out, "scenario     {}", self.scenario)?;
        writeln!(
            out,
            "machine      {} ({} cores, {} MiB, kernel {})",
            mc.cpu, mc.cores, mc.memory_mib, mc.kernel
        )?;
        writeln!(
            out,
            "load         {:.2} {:.2} {:.2} at start, {:.2} {:.2} {:.2} at end",
            mc.load_at_start[0],
            mc.load_at_start[1],
            mc.load_at_start[2],
            mc.load_at_end[0],
            mc.load_at_end[1],
            mc.load_at_end[2]
        )?;
        writeln!(
            out,
            "build        {} build, commit {}",
            mc.build,
            mc.commit.as_deref().unwrap_or("unknown")
        )?;
        writeln!(out, "store        {}", m.store)?;
        writeln!(out, "server       {}", m.server)?;
        if let Some(n) = m.data_size {
            writeln!(out, "data size    {n}")?;
        }
        if let Some(c) = m.concurrency {
            writeln!(out, "concurrency  {c}")?;
        }
        if let Some(d) = m.duration_seconds {
            writeln!(out, "duration     {d:.1} s")?;
        }
        if let Some(w) = m.warmup_seconds {
            writeln!(out, "warm-up      {w:.1} s")?;
        }
        for note in &m.notes {
            writeln!(out, "note         {note}")?;
        }
        writeln!(out)?;
        let width = self.figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for f in &self.figures {
            let value = match &f.value {
                Value::Object(map) if map.contains_key("p50Ms") => format!(
                    "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}  (n = {})",
                    num(&map["p50Ms"]),
                    num(&map["p99Ms"]),
                    num(&map["p999Ms"]),
                    num(&map["maxMs"]),
                    num(&map["meanMs"]),
                    map["count"]
                ),
                Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            writeln!(out, "{:<width$}  {value} {}", f.name, f.unit)?;
        }
        Ok(())
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A histogram of microseconds from 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}
