//! The `roster` command line: `serve`, `migrate`, `app`, `apikey`, `config`, `device`, and
//! `export` / `import` / `migrate-store` for moving a whole store (design.md,
//! Configuration and start-up; management-api.md §1.1 and §7.1). Every store-touching command
//! takes the same store flags (`--config`, `--data-dir`, `--database-url`) and works directly on
//! the store, also while `roster serve` runs on it.

pub mod api;
pub mod apikey;
pub mod app;
pub mod cli;
pub mod config;
pub mod device;
pub mod output;
pub mod people;
pub mod push;
pub mod resource;
pub mod segment;
pub mod serve;
pub mod transfer;

use std::process::ExitCode;

use clap::Parser;
use roster_core::CoreError;
use roster_server::{Settings, settings::redact_url};

use crate::cli::{Cli, Command};

/// Parses the command line, runs the command, and turns an error into a message on stderr and
/// exit status 1 (usage errors: clap's message and status 2).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command: loads the settings, then runs it on a multi-threaded runtime.
pub fn run(command: Command) -> anyhow::Result<()> {
    if let Command::Device(args) = command {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(device::run(args));
    }
    if let Command::People { command } = command {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(people::run(command));
    }
    if let Command::Push { command } = command {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(push::run(command));
    }
    if let Command::Segment { command } = command {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(segment::run(command));
    }
    let Some(store) = command.store_args() else {
        return config_example();
    };
    let settings = config::prepare(store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match command {
            Command::Serve(args) => serve::run(args, settings).await,
            Command::Migrate(_) => migrate(&settings).await,
            Command::App { command } => app::run(command, &settings).await,
            Command::Apikey { command } => apikey::run(command, &settings).await,
            Command::Export(args) => transfer::export(args, &settings.store_url()).await,
            Command::Import(args) => transfer::import(args, &settings.store_url()).await,
            Command::MigrateStore(args) => transfer::migrate_store(args).await,
            Command::Config { .. }
            | Command::Device(_)
            | Command::People { .. }
            | Command::Push { .. }
            | Command::Segment { .. } => config_example(),
        }
    })
}

/// `roster config example`. Needs no settings: a broken roster.toml must not keep anybody from
/// the example.
fn config_example() -> anyhow::Result<()> {
    output::line(roster_server::settings::EXAMPLE.trim_end())
}

/// `roster migrate`: opening the store applies its pending migrations.
async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    config::open_core(settings).await?;
    output::line(format!(
        "store {} is migrated and ready",
        redact_url(&settings.store_url())
    ))
}

/// A core error for a person: a rejection's text alone (its code is for HTTP clients).
pub(crate) fn core_error(e: CoreError) -> anyhow::Error {
    match e {
        CoreError::Api(api) => anyhow::anyhow!(api.text),
        CoreError::Store(store) => anyhow::Error::new(store).context("the store failed"),
        rate @ CoreError::RateLimited(_) => anyhow::Error::new(rate),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
