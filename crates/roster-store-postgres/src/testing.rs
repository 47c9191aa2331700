//! Throw-away databases for test suites (this crate's and any other that runs against
//! PostgreSQL): each test gets a database of its own on the server named by
//! `ROSTER_TEST_POSTGRES_URL`, so tests run in parallel without seeing each other's rows.
//!
//! ```no_run
//! # async fn t() {
//! use roster_store_postgres::{PgStore, testing};
//! let Some(base) = testing::test_base_url() else { return }; // prints SKIPPED
//! let (url, db) = testing::fresh_test_database(&base).await.unwrap();
//! let store = PgStore::connect(&url).await.unwrap();
//! // ... the test ...
//! store.close().await;
//! db.cleanup().await.unwrap(); // or let `db` drop
//! # }
//! ```

use roster_store::{StoreError, StoreResult};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The environment variable naming the PostgreSQL server for tests (any database on it: the
/// tests create their own). CI sets it; without it PostgreSQL tests skip.
pub const TEST_URL_ENV: &str = "ROSTER_TEST_POSTGRES_URL";

/// The server URL from [`TEST_URL_ENV`]; `None`, after printing that the test is skipped, when
/// it is not set, so that a skipped run is visible in the test output.
pub fn test_base_url() -> Option<String> {
    match std::env::var(TEST_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("SKIPPED: {TEST_URL_ENV} not set");
            None
        }
    }
}

/// Creates a new, empty database `roster_t_<random>` on the server of `base_url` and returns its
/// URL (the base URL with the database name replaced) and a guard that drops it.
///
/// Where the server has ICU, the database's default collation is ICU `en-US`, in which "a" sorts
/// before "B": a test of code-point order then proves that the schema's `COLLATE "C"` does the
/// ordering, not a lucky server default.
pub async fn fresh_test_database(base_url: &str) -> StoreResult<(String, TestDbGuard)> {
    let name = format!("roster_t_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(base_url, &name)?;
    let mut admin = PgConnection::connect(base_url)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to the test server: {e}")))?;
    // `name` is ours (a prefix and hex digits): safe to splice into the statement.
    let icu = format!("CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'");
    if sqlx::raw_sql(AssertSqlSafe(icu)).execute(&mut admin).await.is_err() {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .map_err(|e| StoreError::Other(format!("cannot create test database {name}: {e}")))?;
    }
    let _ = admin.close().await;
    Ok((
        url,
        TestDbGuard {
            admin_url: base_url.to_owned(),
            name,
            dropped: false,
        },
    ))
}

/// Owns a database made by [`fresh_test_database`]: [`TestDbGuard::cleanup`] drops it, and so,
/// best-effort, does dropping the guard (also when the test panics).
#[derive(Debug)]
pub struct TestDbGuard {
    admin_url: String,
    name: String,
    dropped: bool,
}

impl TestDbGuard {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, ending any session still connected to it.
    pub async fn cleanup(mut self) -> StoreResult<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TestDbGuard {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), std::mem::take(&mut self.name));
        // Drop may run inside the test's runtime (which cannot block on itself) or during its
        // shutdown (where spawned tasks never run): drop the database from a thread with a
        // runtime of its own, and wait for it so that it happens before the process exits.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(rt) => {
                    if let Err(e) = rt.block_on(drop_database(&admin_url, &name)) {
                        eprintln!("warning: could not drop test database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("warning: could not drop test database {name}: {e}"),
            }
        });
        let _ = worker.join();
    }
}

/// `DROP DATABASE ... WITH (FORCE)`: the store's pool may still hold connections to it.
async fn drop_database(admin_url: &str, name: &str) -> StoreResult<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to the test server: {e}")))?;
    let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .map(drop)
    .map_err(|e| StoreError::Other(format!("cannot drop test database {name}: {e}")));
    let _ = admin.close().await;
    dropped
}

/// `url` with its database (the path) replaced by `name`; user, password, host, port and query
/// parameters stay as they are.
fn with_database(url: &str, name: &str) -> StoreResult<String> {
    let mut parsed = url::Url::parse(url).map_err(|e| StoreError::Other(format!("invalid PostgreSQL URL: {e}")))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(StoreError::Other("not a postgres:// URL".into()));
    }
    // A `dbname=` parameter would override the path.
    if parsed.query_pairs().any(|(k, _)| k == "dbname") {
        return Err(StoreError::Other(
            "the test URL must name its database in the path, not with dbname=".into(),
        ));
    }
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_only() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p%2Fw@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p%2Fw@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x").unwrap(), "postgres://h/x");
        assert!(with_database("sqlite://x", "y").is_err());
        assert!(with_database("postgres://h/db?dbname=z", "y").is_err());
    }
}
