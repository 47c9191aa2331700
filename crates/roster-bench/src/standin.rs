//! The provider stand-ins as the benchmarks use them: without recording (memory stays flat over
//! a million pushes), optionally behind a TLS terminator for clients that only speak HTTPS
//! (Parse Server's APNs adapter), and as a stand-alone process with a small stats endpoint for
//! the Parse comparison.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use roster_push_standins::{ApnsStandIn, ApnsStandInConfig, FcmStandIn, FcmStandInConfig};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// An APNs stand-in for benchmarks: the test identity, no recording.
pub async fn apns() -> anyhow::Result<ApnsStandIn> {
    Ok(ApnsStandIn::start(ApnsStandInConfig {
        record: false,
        ..ApnsStandInConfig::test()
    })
    .await?)
}

/// An FCM stand-in for benchmarks: the test identity, no recording.
pub async fn fcm() -> anyhow::Result<FcmStandIn> {
    Ok(FcmStandIn::start(FcmStandInConfig {
        record: false,
        ..FcmStandInConfig::test()
    })
    .await?)
}

/// Accepts TLS (ALPN `h2`) on `listener` and relays the decrypted bytes to the h2c stand-in at
/// `backend`: HTTP/2 over TLS and HTTP/2 with prior knowledge are the same frames once the
/// handshake is done. The certificate and key are PEM files (the comparison script makes a
/// self-signed pair with openssl).
pub async fn tls_front(listener: TcpListener, backend: SocketAddr, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("cannot read {}", key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = plain.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    Ok(())
}

/// `roster-bench standin`: an APNs stand-in behind TLS on `tls_listen`, with `GET /stats` (the
/// stand-in's counters as JSON) on `stats_listen`, until killed. Prints one JSON line with both
/// addresses once it listens.
pub async fn serve_standalone(tls_listen: &str, stats_listen: &str, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let apns = Arc::new(apns().await?);
    let backend: SocketAddr = apns.base_url().trim_start_matches("http://").parse()?;
    let tls = TcpListener::bind(tls_listen).await?;
    let tls_addr = tls.local_addr()?;
    tls_front(tls, backend, cert, key).await?;
    let stats = TcpListener::bind(stats_listen).await?;
    println!(
        "{}",
        json!({"apnsTls": tls_addr.to_string(), "apnsH2c": backend.to_string(), "stats": format!("http://{}/stats", stats.local_addr()?)})
    );
    loop {
        let (socket, _) = stats.accept().await?;
        let apns = apns.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let s = apns.stats();
                let body = json!({
                    "connections": s.connections,
                    "requests": s.requests,
                    "statuses": s.statuses.iter().map(|(k, v)| (k.to_string(), json!(*v))).collect::<serde_json::Map<String, serde_json::Value>>(),
                });
                async move {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .expect("a valid response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
