//! Settings for a command (design.md, Configuration and start-up): defaults < config file <
//! `ROSTER_*` environment (both in `Settings::load`) < the command's flags (here), then the log
//! subscriber and the opened store.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, bail};
use roster_core::{Core, CoreSettings};
use roster_model::Account;
use roster_server::{
    Settings,
    settings::{redact_url, unknown_env_vars},
    store::{open_command_store, open_store_with},
};
use roster_store::Store;
use tracing_subscriber::EnvFilter;

use crate::{cli::StoreArgs, core_error};

/// Loads the settings of a store-touching command, installs the log subscriber, and warns about
/// `ROSTER_*` variables that no setting reads (lldap-style: a typo should be visible).
pub fn prepare(args: &StoreArgs) -> anyhow::Result<Settings> {
    let unknown = unknown_env_vars();
    let settings = settings(args)?;
    init_logging(&settings)?;
    for name in unknown {
        tracing::warn!(variable = %name, "environment variable is not a Roster setting; ignored");
    }
    Ok(settings)
}

/// Loads the settings and applies the store flags on top.
fn settings(args: &StoreArgs) -> anyhow::Result<Settings> {
    if let Some(path) = &args.config
        && !path.is_file()
    {
        bail!("config file {} does not exist", path.display());
    }
    let mut settings = Settings::load(args.config.as_deref()).context("invalid configuration")?;
    if let Some(dir) = &args.data_dir {
        // `--data-dir` names the SQLite store in DIR: a database URL from the file or the
        // environment must not silently win over the flag.
        settings.data_dir = dir.clone();
        settings.database_url.clear();
    }
    if let Some(url) = &args.database_url {
        settings.database_url = url.clone();
    }
    Ok(settings)
}

/// Installs the log subscriber (stderr, so that stdout stays machine-readable) from
/// `log.format` and `log.filter`, `RUST_LOG` winning over the filter.
fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => {
            EnvFilter::try_new(&from_env).with_context(|| format!("invalid RUST_LOG {from_env:?}"))?
        }
        _ => EnvFilter::try_new(&settings.log.filter)
            .with_context(|| format!("invalid log.filter {:?}", settings.log.filter))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match settings.log.format.as_str() {
        "text" => builder.try_init(),
        "json" => builder.json().try_init(),
        other => bail!("invalid log.format {other:?}: use \"text\" or \"json\""),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Opens (and migrates) the store of the settings for a one-shot command (no in-memory
/// audience index) and returns the rules over it.
pub async fn open_core(settings: &Settings) -> anyhow::Result<Core> {
    let url = settings.store_url();
    let store = open_command_store(&url).await;
    core_over(store, &url, settings)
}

/// [`open_core`] for `roster serve`: the store keeps its in-memory audience index unless
/// `[audience] memory_index` is off.
pub async fn open_serving_core(settings: &Settings) -> anyhow::Result<Core> {
    let url = settings.store_url();
    let store = open_store_with(&url, settings.audience.memory_index).await;
    core_over(store, &url, settings)
}

fn core_over(store: anyhow::Result<Arc<dyn Store>>, url: &str, settings: &Settings) -> anyhow::Result<Core> {
    let store = store.with_context(|| format!("cannot open the store {}", redact_url(url)))?;
    Ok(Core::new(
        store,
        CoreSettings {
            max_attribute_definitions: settings.limits.attribute_definitions,
        },
    ))
}

/// The rules over the store and the account to act in: the default account (created on an
/// empty store), unless `account` names another existing one (people.md §1).
pub async fn open_account(settings: &Settings, account: Option<uuid::Uuid>) -> anyhow::Result<(Core, Account)> {
    let core = open_core(settings).await?;
    let account = core.account_or_default(account).await.map_err(core_error)?;
    Ok((core, account))
}
