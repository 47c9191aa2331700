//! Roster's HTTP server: the SDK mobile API (`/mobile/...`) and health. Handlers are thin:
//! decode and authenticate, call one core operation, encode.

pub mod delivery;
pub mod management;
pub mod metrics;
pub mod mobile;
pub mod portal;
pub mod ratelimit;
pub mod response;
pub mod retention;
pub mod settings;
pub mod store;

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use http::{HeaderValue, Request, Response, StatusCode};
use roster_core::{Core, CoreSettings};
use roster_store::Store;
use tokio::{net::TcpListener, task::JoinHandle};
use tower::ServiceExt;
use tracing::Instrument;

pub use settings::Settings;

use crate::{mobile::MobileState, ratelimit::RateLimiter};

/// Shared state of all routes.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    pub mobile: Arc<MobileState>,
    pub base_path: String,
    /// Shared with the delivery workers (delivery.rs).
    pub push: Arc<delivery::PushState>,
    /// Request metrics of this process (`GET /metrics`).
    pub metrics: Arc<metrics::Metrics>,
    /// The per-API-key limit of the management API (management-api.md §3.1).
    pub api_key_rate: Arc<RateLimiter>,
}

impl AppState {
    /// State for a store and settings.
    pub fn new(store: Arc<dyn Store>, settings: &Settings) -> AppState {
        let core = Core::new(
            store,
            CoreSettings {
                max_attribute_definitions: settings.limits.attribute_definitions,
            },
        );
        let rate = &settings.mobile.rate;
        let mobile = Arc::new(MobileState {
            core: core.clone(),
            max_body_bytes: settings.mobile.max_body_bytes,
            latest_sdk_version: settings.mobile.latest_sdk_version.clone(),
            sdk_update_url: settings.mobile.sdk_update_url.clone(),
            per_installation: RateLimiter::new(rate.per_installation_rps, rate.per_installation_burst),
            create_per_ip: RateLimiter::new(rate.create_per_ip_rps, rate.create_per_ip_burst),
            per_application: RateLimiter::new(rate.per_application_rps, rate.per_application_burst),
        });
        let push = Arc::new(delivery::PushState {
            idempotency_ttl_hours: settings.management.idempotency_ttl_hours,
            ..delivery::PushState::default()
        });
        let metrics = Arc::new(metrics::Metrics::new());
        metrics.register(
            "roster_delivery_attempts",
            "Delivery attempts recorded by this process, by provider and resulting status",
            push.attempts.clone(),
        );
        AppState {
            core,
            mobile,
            base_path: settings.base_path(),
            push,
            metrics,
            api_key_rate: Arc::new(RateLimiter::new(
                settings.management.rate.rps,
                settings.management.rate.burst,
            )),
        }
    }
}

/// `GET /healthz`: `200 {"status":"ok"}` when the store answers, else `503`.
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> Response<Body> {
    match state.core.store().ping().await {
        Ok(()) => response::json(&serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::warn!(error = %e, "health check: store does not answer");
            response::json_bytes(StatusCode::SERVICE_UNAVAILABLE, br#"{"status":"unavailable"}"#.to_vec())
        }
    }
}

/// `GET /metrics` (management-api.md §9): Prometheus text, no auth.
async fn metrics_text(axum::extract::State(state): axum::extract::State<AppState>) -> Response<Body> {
    state.metrics.refresh_from_store(&state.core).await;
    let body = state.metrics.render().into_bytes();
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// Tags the response of a routed request with its route template, for the metrics.
async fn label_route(
    matched: Option<axum::extract::MatchedPath>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let mut response = next.run(req).await;
    if let Some(m) = matched {
        response
            .extensions_mut()
            .insert(metrics::RouteLabel(m.as_str().to_string()));
    }
    response
}

/// The router of the non-mobile routes; everything else goes to the mobile dispatcher.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .nest("/api/v1", management::router())
        .merge(management::push::router())
        .nest("/portal", portal::router(&state))
        .layer(axum::middleware::from_fn(label_route))
        .fallback(mobile_fallback)
        .with_state(state)
}

async fn mobile_fallback(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request<Body>,
) -> Response<Body> {
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let path = req.uri().path().to_string();
    mobile::serve(state.mobile.clone(), path, req, client).await
}

/// Normalises the path (§1.1), strips the base path, tags the response with `X-Request-Id`,
/// and runs the request in a span.
async fn entry(
    router: Router,
    base_path: Arc<str>,
    metrics: Arc<metrics::Metrics>,
    mut req: Request<Body>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = metrics::method_label(req.method());
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = tracing::field::Empty, status = tracing::field::Empty);
    async move {
        let normalised = mobile::normalize_path(req.uri().path());
        let stripped = if base_path.is_empty() {
            Some(normalised)
        } else if normalised == *base_path {
            Some("/".to_string())
        } else {
            normalised
                .strip_prefix(&*base_path)
                .filter(|rest| rest.starts_with('/'))
                .map(str::to_string)
        };
        let route_path = stripped.clone();
        let mut response = match stripped {
            None => response::error(&roster_model::ApiError::new(
                roster_model::ErrorCode::ResourceNotFound,
                "No such route",
            )),
            Some(path) => {
                tracing::Span::current().record("path", path.as_str());
                let pq = match req.uri().query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                match pq.parse() {
                    Ok(uri) => {
                        *req.uri_mut() = uri;
                        match router.oneshot(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        }
                    }
                    Err(_) => response::error(&roster_model::ApiError::new(
                        roster_model::ErrorCode::ResourceNotFound,
                        "No such route",
                    )),
                }
            }
        };
        tracing::Span::current().record("status", response.status().as_u16());
        let route = match response.extensions().get::<metrics::RouteLabel>() {
            Some(label) => label.0.clone(),
            None => route_path
                .as_deref()
                .and_then(mobile::route_label)
                .unwrap_or_else(|| "unmatched".to_string()),
        };
        metrics.observe(&route, method, response.status().as_u16(), started.elapsed());
        if response.status().is_server_error() {
            tracing::warn!("answered with a server fault");
        } else {
            tracing::debug!("answered");
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        response
    }
    .instrument(span)
    .await
}

/// A server bound to its port and serving in the background.
pub struct RunningServer {
    /// The address actually bound (port 0 resolves to a real port).
    pub addr: SocketAddr,
    /// The state, for tests and the CLI.
    pub state: AppState,
    handle: JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The push delivery workers (`delivery.enabled`).
    workers: Option<delivery::DeliveryWorkers>,
    /// The retention sweeper (`retention.sweep_interval_seconds` > 0).
    sweeper: Option<retention::Sweeper>,
}

impl RunningServer {
    /// Binds `settings.http.listen` and serves `store` until stopped.
    pub async fn start(settings: &Settings, store: Arc<dyn Store>) -> anyhow::Result<RunningServer> {
        let listener = TcpListener::bind(&settings.http.listen).await?;
        Self::start_on(listener, settings, store)
    }

    /// Serves on an already bound listener.
    pub fn start_on(
        listener: TcpListener,
        settings: &Settings,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<RunningServer> {
        let addr = listener.local_addr()?;
        let state = AppState::new(store, settings);
        let workers = if settings.delivery.enabled {
            Some(delivery::DeliveryWorkers::start(
                state.core.clone(),
                &settings.delivery,
                state.push.clone(),
            )?)
        } else {
            None
        };
        let sweeper = retention::Sweeper::start(state.core.store().clone(), &settings.retention, &settings.merge_log);
        let base_path: Arc<str> = state.base_path.clone().into();
        let router = router(state.clone());
        let metrics = state.metrics.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let router = router.clone();
            let base_path = base_path.clone();
            let metrics = metrics.clone();
            async move { Ok::<_, std::convert::Infallible>(entry(router, base_path, metrics, req).await) }
        });
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let make = axum::ServiceExt::<Request<Body>>::into_make_service_with_connect_info::<SocketAddr>(service);
        let handle = tokio::spawn(async move {
            axum::serve(listener, make)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(RunningServer {
            addr,
            state,
            handle,
            shutdown: tx,
            workers,
            sweeper,
        })
    }

    /// Stops accepting, finishes requests in flight, and waits for the server task.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.handle.await;
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        if let Some(sweeper) = self.sweeper {
            sweeper.stop().await;
        }
        served??;
        Ok(())
    }

    /// Waits until the server task ends (it runs until stopped or failed).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await??;
        Ok(())
    }

    /// The base URL clients use, e.g. `http://127.0.0.1:8080`.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.state.base_path)
    }
}
