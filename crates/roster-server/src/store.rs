//! Opens the store named by a database URL (design.md, Storage): `sqlite://PATH` (or a bare
//! path) for the embedded default, `postgres://` for PostgreSQL.

use std::{path::Path, sync::Arc};

use roster_store::Store;
use roster_store_postgres::PgStore;
use roster_store_sqlite::SqliteStore;

/// Opens (and migrates) the store of `url`.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let store = SqliteStore::open(Path::new(path)).await?;
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
