//! `roster serve` (design.md, Configuration and start-up): open and migrate the store, make sure
//! the default account exists and has an API key (management-api.md §1.1), serve the API until
//! Ctrl-C or SIGTERM, then stop gracefully.

use anyhow::Context;
use roster_core::admin::CreatedApiKey;
use roster_server::{RunningServer, Settings, settings::redact_url};

use crate::{cli::ServeArgs, config, core_error, output};

/// Name of the key `roster serve` creates in a default account without keys.
const FIRST_KEY_NAME: &str = "admin";

/// Runs the server until a shutdown signal.
pub async fn run(args: ServeArgs, mut settings: Settings) -> anyhow::Result<()> {
    if let Some(listen) = &args.listen {
        settings.http.listen = listen.clone();
    }
    let core = config::open_serving_core(&settings).await?;
    tracing::info!(store = %redact_url(&settings.store_url()), "store opened");

    // management-api.md §1.1: a serve that finds no API key in the default account creates
    // one `admin` key there and prints it once.
    let account = core.account_or_default(None).await.map_err(core_error)?;
    let mut new_key = false;
    if let Some(created) = core
        .create_first_admin_key(account.id, FIRST_KEY_NAME)
        .await
        .map_err(core_error)?
    {
        announce_first_key(&created)?;
        new_key = true;
    }
    let no_apps = core.list_applications(account.id).await.map_err(core_error)?.is_empty();

    let shutdown = shutdown_signal()?;
    let server = RunningServer::start(&settings, core.store().clone())
        .await
        .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
    if no_apps {
        output::line(format!(
            "No applications yet. Create one (also while the server runs) with:\n  roster app create --name NAME{}",
            store_flags(&args, &settings)
        ))?;
    }
    if !settings.base_path().is_empty() {
        output::line(format!("SDK base URL: {}", server.base_url()))?;
    }
    output::line(format!(
        "People portal: {}/portal (sign in with {})",
        browser_url(&server),
        if new_key {
            "the admin API key above"
        } else {
            "an API key; more keys: roster apikey create"
        }
    ))?;
    // Scripts and tests read this line to find the bound port (`--listen 127.0.0.1:0`); it comes
    // last, once the server accepts connections.
    output::line(format!("listening on http://{}", server.addr))?;
    tracing::info!(addr = %server.addr, "serving");

    shutdown.await;
    tracing::info!("shutting down: finishing requests in flight");
    server.stop().await.context("the server failed while stopping")?;
    tracing::info!("stopped");
    Ok(())
}

/// The server's base URL as a browser on this machine reaches it (a wildcard listen address
/// is not one a browser can open).
fn browser_url(server: &RunningServer) -> String {
    let mut addr = server.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}{}", server.state.base_path)
}

/// Prints the new admin key, clearly labelled, on stdout.
fn announce_first_key(created: &CreatedApiKey) -> anyhow::Result<()> {
    output::line(format!(
        "\nCreated an admin API key for the default account. It is shown only now; Roster keeps \
         only its hash.\n\n  admin API key: {}\n\nKeep it somewhere safe. More keys: roster apikey create --scopes admin\n",
        created.secret
    ))
}

/// The store flags a follow-up command needs to reach the same store (the config file and
/// environment apply to it by themselves).
fn store_flags(args: &ServeArgs, settings: &Settings) -> String {
    let mut flags = String::new();
    if let Some(path) = &args.store.config {
        flags.push_str(&format!(" --config {}", path.display()));
    }
    if args.store.database_url.is_some() {
        flags.push_str(&format!(" --database-url {}", redact_url(&settings.database_url)));
    } else if args.store.data_dir.is_some() {
        flags.push_str(&format!(" --data-dir {}", settings.data_dir.display()));
    }
    flags
}

/// Waits for Ctrl-C, or SIGTERM on Unix (what `docker stop` and systemd send). The handlers are
/// registered when this is called, before the future is first polled, so a signal that arrives
/// right after start-up is not lost.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Waits for Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
        }
    })
}
