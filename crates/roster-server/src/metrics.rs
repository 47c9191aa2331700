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
//! The mobile API's stub routes (mobile-api.md §5.13) are counted like every route, which gives
//! their call counts.

use std::sync::{Arc, Mutex};
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
}
