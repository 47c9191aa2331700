//! Opens the store named by a database URL (design.md, Storage): `sqlite://PATH` (or a bare
//! path) for the embedded default, `postgres://` for PostgreSQL.

use std::{path::Path, sync::Arc};

use roster_store::Store;
use roster_store_postgres::PgStore;
use roster_store_sqlite::{SqliteOptions, SqliteStore};

/// Opens (and migrates) the store of `url` for a server: a SQLite store builds and keeps its
/// in-memory audience index.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(url, true).await
}

/// Opens (and migrates) the store of `url` for a one-shot command (import, export, an
/// application or key created from the command line): a SQLite store does not build its
/// in-memory audience index, which would read every person for a process about to exit.
pub async fn open_command_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(url, false).await
}

/// Opens (and migrates) the store of `url`, a SQLite store with its in-memory audience index
/// or not (`[audience] memory_index`).
pub async fn open_store_with(url: &str, audience_index: bool) -> anyhow::Result<Arc<dyn Store>> {
    let options = SqliteOptions { audience_index };
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let store = SqliteStore::open_with(Path::new(path), options).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(url).await?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!(
        "unsupported database URL {:?}: use sqlite://PATH or postgres://...",
        crate::settings::redact_url(url)
    )
}
