//! Measures how many pushes per second the provider clients get through to the loopback
//! stand-ins on this machine (client and stand-in share the cores).
//!
//! `cargo run --release -p roster-push --example push_throughput -- [apns|fcm] [total] [concurrency] [connections]`
//!
//! Prints the method and the figures; not part of the test suite.

use std::time::Instant;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use roster_push::{
    ApnsClient, ApnsCredentials, FcmClient, FcmCredentials, Outcome, PushContent, PushMessage, Transport,
    TransportSettings,
};
use roster_push_standins::{ApnsStandIn, ApnsStandInConfig, FcmStandIn, FcmStandInConfig};
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let provider = args.get(1).map(String::as_str).unwrap_or("apns").to_owned();
    let total: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let concurrency: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(512);
    let connections: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1);
    let transport = Transport::new(TransportSettings {
        connections_per_origin: connections,
        ..Default::default()
    })
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let message = PushMessage {
        content: PushContent {
            title: Some("Sale".into()),
            ..PushContent::text("20% off today")
        },
        bulk_id: "bench".into(),
        send_date_time: now,
        expires_at: now + 3_600_000,
    };
    let message = Arc::new(message);
    let tokens: Vec<String> = (0..total).map(|i| format!("{i:064x}")).collect();
    println!(
        "{provider}: {total} sends, {concurrency} in flight, {connections} HTTP/2 connection(s), {} worker threads",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let started;
    let accepted;
    let stand_in_connections;
    match provider.as_str() {
        "fcm" => {
            let standin = FcmStandIn::start(FcmStandInConfig {
                record: false,
                ..FcmStandInConfig::test()
            })
            .await
            .unwrap();
            let client = FcmClient::new(
                FcmCredentials::parse(&standin.application_settings()).unwrap(),
                &transport,
            );
            started = Instant::now();
            accepted = drive(tokens, concurrency, move |token| {
                let client = client.clone();
                let message = message.clone();
                async move { client.send(&message, Uuid::new_v4(), &token).await.outcome == Outcome::Accepted }
            })
            .await;
            stand_in_connections = standin.stats().send_connections;
        }
        _ => {
            let standin = ApnsStandIn::start(ApnsStandInConfig {
                record: false,
                ..ApnsStandInConfig::test()
            })
            .await
            .unwrap();
            let client = ApnsClient::new(
                ApnsCredentials::parse(&standin.application_settings()).unwrap(),
                &transport,
            );
            started = Instant::now();
            accepted = drive(tokens, concurrency, move |token| {
                let client = client.clone();
                let message = message.clone();
                async move { client.send(&message, Uuid::new_v4(), &token).await.outcome == Outcome::Accepted }
            })
            .await;
            stand_in_connections = standin.stats().connections;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "accepted {accepted}/{total} in {:.2} s: {:.0} pushes/s over {stand_in_connections} connection(s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}

/// Runs one task per send (as delivery workers do), at most `concurrency` at a time, and counts
/// the sends that returned `true`.
async fn drive<F, Fut>(tokens: Vec<String>, concurrency: usize, send: F) -> usize
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let accepted = Arc::new(AtomicUsize::new(0));
    for token in tokens {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let accepted = accepted.clone();
        let send = send(token);
        tokio::spawn(async move {
            if send.await {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    let _all_done = permits.acquire_many(concurrency as u32).await.unwrap();
    accepted.load(Ordering::Relaxed)
}
