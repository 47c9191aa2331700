//! `GET /metrics` (management-api.md §9): Prometheus text (OpenMetrics) with request counts and
//! latencies per route — routes as templates (`/mobile/1/appinstance/{pushRegId}`,
//! `/api/v1/people/{personId}`), never raw paths, so the number of series stays bounded whatever
//! clients send — and the gauges that the delivery pipeline registers (queue depth, deliveries by
//! status and provider), read from the store at scrape time so that every process of a
//! multi-process deployment reports the same shared truth.
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
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

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
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
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
