//! `GET /metrics` (management-api.md §9): Prometheus text (OpenMetrics) with request counts and
//! latencies per route — routes as templates (`/mobile/1/appinstance/{pushRegId}`,
//! `/api/v1/people/{personId}`), never raw paths, so the number of series stays bounded whatever
//! clients send — and the gauges that the delivery pipeline registers (queue depth, deliveries by
//! status and provider), read from the store at scrape time so that every process of a
//! multi-process deployment reports the same shared truth.
//!
//! What §9 names, and where it is:
//! - request counts and latencies per route: `roster_http_requests_total{route,method,status}`,
//!   `roster_http_request_duration_seconds{route,method}` (this process);
//! - deliveries per status and provider: `roster_delivery_attempts_total{provider,status}`, the
//!   outcomes this process recorded (a terminal status once per delivery, `QUEUED` per retry
//!   scheduled); sum it over processes;
//! - queue depth: `roster_delivery_queue_depth{provider,state}` (`QUEUED` records due now, claimed
//!   by a worker, or waiting for a retry) and `roster_audience_jobs{state="resolving"}`
//!   (`MULTIPLE` audiences still resolving), gauges of the whole store read at scrape time: every process reports the same
//!   value, so aggregate them with `max`, not `sum`;
//! - the stub counters of mobile-api.md §5.13: the request counts of their routes.
//!
//! And, when the store keeps an in-memory audience index (SQLite; absent on PostgreSQL), that
//! index in this process, read at scrape time: `roster_audience_index_ready` (1 when it answers
//! segment previews; 0 while it is built, at start and again after another process wrote to
//! the file, when previews run as SQL), `roster_audience_index_persons`,
//! `roster_audience_index_builds_total` and `roster_audience_index_previews_total{result}`
//! (`answered` by the index, or `fallback`: run as SQL while it was ready, for a filter it
//! cannot answer; previews while it is not ready are in neither).
//!
//! And, when the store has one writer (SQLite), how this process used it:
//! `roster_store_writer_held_seconds_total` (seconds held by write transactions and write-batch
//! commits: its rate is the writer's utilisation, and near 1 the writes queue for it, the
//! store's write capacity), `roster_store_writer_transactions_total` and
//! `roster_store_writer_batches_total`.
//!
//! The mobile API's stub routes (mobile-api.md §5.13) are counted like every route, which gives
//! their call counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use roster_model::Provider;
use roster_store::push::QueueState;

/// Labels of a request series.
type RequestLabels = Vec<(String, String)>;

/// The route template of a request, set by the router that answered it.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// The request metrics of one server process.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    /// `QUEUED` delivery records of the store by provider and [`QueueState`].
    queue_depth: Family<RequestLabels, Gauge>,
    /// Unfinished audience jobs of the store.
    audience_jobs: Family<RequestLabels, Gauge>,
    /// The store's in-memory audience index, registered at the first scrape that finds one.
    audience_index: OnceLock<IndexMetrics>,
    /// The store's one writer, registered at the first scrape that finds one.
    writer: OnceLock<WriterMetrics>,
}

/// The series of a single-writer store's writer ([`roster_store::WriterStats`]).
struct WriterMetrics {
    held: Counter<f64, AtomicU64>,
    transactions: Counter,
    batches: Counter,
}

/// The series of a store's in-memory audience index ([`roster_store::AudienceIndexStatus`]).
struct IndexMetrics {
    ready: Gauge,
    persons: Gauge,
    builds: Counter,
    /// By `result`: `answered` or `fallback`.
    previews: Family<RequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the request families.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms .. ~16 s in powers of two.
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "roster_http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "roster_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            latency.clone(),
        );
        let queue_depth = Family::<RequestLabels, Gauge>::default();
        registry.register(
            "roster_delivery_queue_depth",
            "Delivery records QUEUED in the store, by provider and state (due now, claimed by a worker, \
             waiting for a retry); the same in every process",
            queue_depth.clone(),
        );
        let audience_jobs = Family::<RequestLabels, Gauge>::default();
        registry.register(
            "roster_audience_jobs",
            "Audience-resolution jobs of MULTIPLE messages not finished in the store; the same in every process",
            audience_jobs.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            queue_depth,
            audience_jobs,
            audience_index: OnceLock::new(),
            writer: OnceLock::new(),
        }
    }

    /// Sets the writer series from `stats`, registering them the first time (a store without a
    /// single writer never shows them).
    pub fn set_writer(&self, stats: &roster_store::WriterStats) {
        let m = self.writer.get_or_init(|| {
            let m = WriterMetrics {
                held: Counter::default(),
                transactions: Counter::default(),
                batches: Counter::default(),
            };
            self.register(
                "roster_store_writer_held_seconds",
                "Seconds this process's write transactions and write-batch commits held the store's one \
                 writer (SQLite): a rate near 1 means writes queue for it",
                m.held.clone(),
            );
            self.register(
                "roster_store_writer_transactions",
                "Write transactions begun on the store's one writer (SQLite)",
                m.transactions.clone(),
            );
            self.register(
                "roster_store_writer_batches",
                "Write batches committed on the store's one writer (SQLite): one COMMIT and fsync each \
                 for all of the batch's transactions",
                m.batches.clone(),
            );
            m
        });
        // The store counts; the counters mirror its totals (never decreasing).
        m.held.inner().store(stats.held_seconds.to_bits(), Ordering::Relaxed);
        m.transactions.inner().store(stats.transactions, Ordering::Relaxed);
        m.batches.inner().store(stats.batches, Ordering::Relaxed);
    }

    /// Sets the audience-index series from `status`, registering them the first time (a store
    /// without an index never shows them).
    pub fn set_audience_index(&self, status: &roster_store::AudienceIndexStatus) {
        let m = self.audience_index.get_or_init(|| {
            let m = IndexMetrics {
                ready: Gauge::default(),
                persons: Gauge::default(),
                builds: Counter::default(),
                previews: Family::default(),
            };
            self.register(
                "roster_audience_index_ready",
                "1 when this process's in-memory audience index is built and answers segment previews, \
                 0 while it is built (at start, and again after another process wrote to the store) and \
                 previews run as SQL",
                m.ready.clone(),
            );
            self.register(
                "roster_audience_index_persons",
                "Persons held by this process's in-memory audience index",
                m.persons.clone(),
            );
            self.register(
                "roster_audience_index_builds",
                "Builds of this process's in-memory audience index completed: one at start, one per \
                 rebuild after another process wrote to the store",
                m.builds.clone(),
            );
            self.register(
                "roster_audience_index_previews",
                "Segment previews while this process's in-memory audience index was ready, by result: \
                 answered by the index, or fallback (run as SQL: a filter the index cannot answer)",
                m.previews.clone(),
            );
            m
        });
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        m.ready.set(i64::from(status.ready));
        m.persons.set(gauge(status.persons));
        // The store counts; the counters mirror its totals (never decreasing: they only grow).
        m.builds.inner().store(status.builds, Ordering::Relaxed);
        for (result, value) in [("answered", status.answered), ("fallback", status.fallbacks)] {
            m.previews
                .get_or_create(&vec![("result".to_string(), result.to_string())])
                .inner()
                .store(value, Ordering::Relaxed);
        }
    }

    /// Sets the store gauges from `depth`: every (provider, state) pair is reported, 0 when none
    /// is queued, so that a drained queue reads 0 rather than its last non-zero value.
    pub fn set_queue(&self, depth: &roster_store::push::QueueDepth) {
        for provider in [Provider::Apns, Provider::Fcm, Provider::Hms] {
            for state in QueueState::ALL {
                let labels = vec![
                    ("provider".to_string(), provider.as_str().to_string()),
                    ("state".to_string(), state.as_str().to_string()),
                ];
                self.queue_depth
                    .get_or_create(&labels)
                    .set(i64::try_from(depth.count(provider, state)).unwrap_or(i64::MAX));
            }
        }
        self.audience_jobs
            .get_or_create(&vec![("state".to_string(), "resolving".to_string())])
            .set(i64::try_from(depth.audience_jobs).unwrap_or(i64::MAX));
    }

    /// Drops the store gauges (the store did not answer): absent series rather than stale values.
    pub fn clear_queue(&self) {
        self.queue_depth.clear();
        self.audience_jobs.clear();
    }

    /// Reads the store gauges for a scrape.
    pub async fn refresh_from_store(&self, core: &roster_core::Core) {
        match core.queue_depth().await {
            Ok(depth) => self.set_queue(&depth),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the queue depth could not be read from the store");
                self.clear_queue();
            }
        }
        if let Some(status) = core.store().audience_index() {
            self.set_audience_index(&status);
        }
        if let Some(stats) = core.store().writer_stats() {
            self.set_writer(&stats);
        }
    }

    /// Records one answered request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let base = vec![
            ("route".to_string(), route.to_string()),
            ("method".to_string(), method.to_string()),
        ];
        self.latency.get_or_create(&base).observe(elapsed.as_secs_f64());
        let mut labels = base;
        labels.push(("status".to_string(), status.to_string()));
        self.requests.get_or_create(&labels).inc();
    }

    /// Registers a further metric (e.g. the delivery gauges).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.register(name, help, metric);
    }

    /// The OpenMetrics text of everything registered.
    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &registry) {
            tracing::error!(error = %e, "metrics did not encode");
        }
        out
    }
}

/// The method as a label: the standard methods by name, anything else `other` (a client may send
/// any token as a method; the label set must stay bounded).
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    for m in [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ] {
        if *method == m {
            return match m.as_str() {
                "GET" => "GET",
                "POST" => "POST",
                "PATCH" => "PATCH",
                "PUT" => "PUT",
                "DELETE" => "DELETE",
                "HEAD" => "HEAD",
                _ => "OPTIONS",
            };
        }
    }
    "other"
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latencies_per_route_template() {
        let m = Metrics::new();
        m.observe(
            "/mobile/1/appinstance/{pushRegId}",
            "GET",
            200,
            Duration::from_millis(3),
        );
        m.observe(
            "/mobile/1/appinstance/{pushRegId}",
            "GET",
            200,
            Duration::from_millis(1),
        );
        m.observe(
            "/mobile/1/appinstance/{pushRegId}",
            "GET",
            404,
            Duration::from_millis(1),
        );
        let text = m.render();
        assert!(
            text.contains(
                r#"roster_http_requests_total{route="/mobile/1/appinstance/{pushRegId}",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"roster_http_request_duration_seconds_count{route="/mobile/1/appinstance/{pushRegId}",method="GET"} 3"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn audience_index_series_only_once_set() {
        let m = Metrics::new();
        assert!(!m.render().contains("roster_audience_index"));
        let mut status = roster_store::AudienceIndexStatus::default();
        m.set_audience_index(&status);
        let text = m.render();
        assert!(text.contains("\nroster_audience_index_ready 0\n"), "{text}");
        assert!(text.contains("\nroster_audience_index_builds_total 0\n"), "{text}");
        status = roster_store::AudienceIndexStatus {
            ready: true,
            persons: 1200,
            builds: 2,
            answered: 5,
            fallbacks: 1,
        };
        m.set_audience_index(&status);
        let text = m.render();
        for line in [
            "roster_audience_index_ready 1",
            "roster_audience_index_persons 1200",
            "roster_audience_index_builds_total 2",
            r#"roster_audience_index_previews_total{result="answered"} 5"#,
            r#"roster_audience_index_previews_total{result="fallback"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
    }
}
