//! Opens the store named by a database URL (design.md, Storage): `sqlite://PATH` (or a bare
//! path) for the embedded default; `postgres://` once that backend exists.

use std::{path::Path, sync::Arc};

use roster_store::Store;
use roster_store_sqlite::SqliteStore;

/// Opens (and migrates) the store of `url`.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let store = SqliteStore::open(Path::new(path)).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        anyhow::bail!("the PostgreSQL store is not available in this build yet; use sqlite://PATH");
    }
    anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH")
}
