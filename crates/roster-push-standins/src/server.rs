//! A minimal loopback HTTP server (HTTP/1.1 and h2c with prior knowledge on the same port) that
//! hands each request, body collected, to a synchronous handler. The stand-ins keep all state in
//! memory, so a handler never waits; keeping it synchronous keeps a request to one small future.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request body read; bigger ones get 413 without reaching the handler.
const BODY_LIMIT: usize = 1 << 20;

/// Streams each client may open at once on one HTTP/2 connection (APNs advertises about 1000).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, request: http::request::Parts, body: Bytes) -> Response<Full<Bytes>>;
}

/// A running server; stops (with all its connections) when dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start<H: Handler>(handler: Arc<H>) -> io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts every connection.
            let mut open = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else {
                            // Out of file descriptors, usually: let connections close first.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        counter.fetch_add(1, Ordering::Relaxed);
                        open.spawn(serve_connection(stream, handler.clone()));
                    }
                    Some(_) = open.join_next(), if !open.is_empty() => {}
                }
            }
        });
        Ok(Server {
            addr,
            connections,
            task,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection<H: Handler>(stream: tokio::net::TcpStream, handler: Arc<H>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = request.into_parts();
            let response = match Limited::new(body, BODY_LIMIT).collect().await {
                Ok(collected) => handler.handle(parts, collected.to_bytes()),
                Err(_) => plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large or broken"),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    // A client that goes away mid-connection is normal here; nothing to report.
    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
}

/// A response with a JSON body.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

/// A response with a text body.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Current Unix time in seconds.
pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Count per HTTP status, lock-free (an atomic per possible status code).
pub(crate) struct StatusCounts([AtomicU64; 600]);

impl StatusCounts {
    pub(crate) fn new() -> Self {
        StatusCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
    pub(crate) fn add(&self, status: StatusCode) {
        if let Some(slot) = self.0.get(status.as_u16() as usize) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn snapshot(&self) -> std::collections::BTreeMap<u16, u64> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(status, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then_some((status as u16, n))
            })
            .collect()
    }
}

/// Scripted answers per device token: queued one-shot answers first, then a standing answer.
pub(crate) struct Scripts<A> {
    by_token: std::sync::Mutex<std::collections::HashMap<String, Script<A>>>,
    any: std::sync::atomic::AtomicBool,
}

struct Script<A> {
    queue: std::collections::VecDeque<A>,
    always: Option<A>,
}

impl<A: Clone> Scripts<A> {
    pub(crate) fn new() -> Self {
        Scripts {
            by_token: Default::default(),
            any: Default::default(),
        }
    }

    pub(crate) fn push(&self, token: &str, answers: impl IntoIterator<Item = A>) {
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        let script = map.entry(token.to_owned()).or_insert_with(|| Script {
            queue: Default::default(),
            always: None,
        });
        script.queue.extend(answers);
        self.any.store(true, Ordering::Release);
    }

    pub(crate) fn always(&self, token: &str, answer: A) {
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        let script = map.entry(token.to_owned()).or_insert_with(|| Script {
            queue: Default::default(),
            always: None,
        });
        script.always = Some(answer);
        self.any.store(true, Ordering::Release);
    }

    /// The answer for the next request to `token`, if one is scripted.
    pub(crate) fn next(&self, token: &str) -> Option<A> {
        if !self.any.load(Ordering::Acquire) {
            return None; // the benchmark path: no lock when nothing is scripted
        }
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        let script = map.get_mut(token)?;
        script.queue.pop_front().or_else(|| script.always.clone())
    }
}
