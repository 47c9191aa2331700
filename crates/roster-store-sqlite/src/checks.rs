//! Migration 10 (migrations/0010_check_comparisons.sql): the `IN` lists of three or more
//! values in the `CHECK` constraints of `installations` and `deliveries`, rewritten as `OR`ed
//! comparisons in the stored schema.
//!
//! Written by hand: SQLite's `ALTER TABLE` cannot change a constraint, and the documented way
//! for a change that leaves every stored row valid is an edit of `sqlite_schema` under
//! `writable_schema` with the schema cookie moved on, which no migration crate does.

use rusqlite::{Connection, params};

use crate::error::map_err;
use crate::sql::query_opt;
use roster_store::{StoreError, StoreResult};

/// The schema version whose file precedes [`rewrite`].
pub(crate) const CHECKS_MIGRATION: i64 = 10;

/// A column and its allowed values, as the constraint's old text lists them.
struct Listed {
    table: &'static str,
    /// The exact text of the old constraint in the table's `CREATE TABLE` (migrations 1 and 2).
    old: &'static str,
    column: &'static str,
    values: &'static [&'static str],
}

/// Every constraint this migration rewrites. Lists of two values stay as they are: SQLite
/// compiles those to comparisons already.
const LISTED: &[Listed] = &[
    Listed {
        table: "installations",
        old: "CHECK (push_service_type IN ('Firebase', 'GCM', 'HMS', 'APNS'))",
        column: "push_service_type",
        values: &["Firebase", "GCM", "HMS", "APNS"],
    },
    Listed {
        table: "installations",
        old: "CHECK (provider IN ('FCM', 'APNS', 'HMS'))",
        column: "provider",
        values: &["FCM", "APNS", "HMS"],
    },
    Listed {
        table: "installations",
        old: "CHECK (token_cleared_reason IN ('TAKEN_OVER', 'UNREGISTERED', 'DEVICE'))",
        column: "token_cleared_reason",
        values: &["TAKEN_OVER", "UNREGISTERED", "DEVICE"],
    },
    Listed {
        table: "deliveries",
        old: "CHECK (provider IN ('FCM', 'APNS', 'HMS'))",
        column: "provider",
        values: &["FCM", "APNS", "HMS"],
    },
    Listed {
        table: "deliveries",
        old: "CHECK (status IN ('QUEUED', 'ACCEPTED', 'REJECTED',\n                                     'UNREGISTERED', 'EXPIRED', 'FAILED'))",
        column: "status",
        values: &["QUEUED", "ACCEPTED", "REJECTED", "UNREGISTERED", "EXPIRED", "FAILED"],
    },
];

/// `CHECK (c = 'A' OR c = 'B' ...)`.
fn comparisons(listed: &Listed) -> String {
    let alternatives: Vec<String> = listed
        .values
        .iter()
        .map(|v| format!("{} = '{v}'", listed.column))
        .collect();
    format!("CHECK ({})", alternatives.join(" OR "))
}

/// Rewrites the constraints of [`LISTED`] in `sqlite_schema`, inside the migration's
/// transaction. Fails, changing nothing, if a table's stored text does not hold the old
/// constraint exactly once.
pub(crate) fn rewrite(conn: &Connection) -> StoreResult<()> {
    let mut texts: Vec<(&str, String)> = Vec::new();
    for table in ["installations", "deliveries"] {
        let mut sql: String = query_opt(
            conn,
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?
        .ok_or_else(|| StoreError::Other(format!("migration 10: no table {table}")))?;
        for listed in LISTED.iter().filter(|l| l.table == table) {
            if sql.matches(listed.old).count() != 1 {
                return Err(StoreError::Other(format!(
                    "migration 10: the schema of {table} does not hold `{}` once; it was changed by hand?",
                    listed.old
                )));
            }
            sql = sql.replace(listed.old, &comparisons(listed));
        }
        texts.push((table, sql));
    }
    let cookie: i64 = conn
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .map_err(map_err)?;
    conn.execute_batch("PRAGMA writable_schema = ON").map_err(map_err)?;
    let edited = (|| -> StoreResult<()> {
        for (table, sql) in &texts {
            let n = conn
                .execute(
                    "UPDATE sqlite_schema SET sql = ?2 WHERE type = 'table' AND name = ?1",
                    params![table, sql],
                )
                .map_err(map_err)?;
            if n != 1 {
                return Err(StoreError::Other(format!("migration 10: {table} updated {n} times")));
            }
        }
        // Other connections (and this one) read the schema again when the cookie moves.
        conn.execute_batch(&format!("PRAGMA schema_version = {}", cookie + 1))
            .map_err(map_err)
    })();
    // Off again whatever happened; on failure the caller rolls the transaction back.
    let off = conn.execute_batch("PRAGMA writable_schema = OFF").map_err(map_err);
    edited?;
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_list_every_value() {
        assert_eq!(
            comparisons(&LISTED[1]),
            "CHECK (provider = 'FCM' OR provider = 'APNS' OR provider = 'HMS')"
        );
    }

    /// Each old text is the `IN` list of its column and values (whitespace aside), so that
    /// the comparisons written in its place allow exactly what it allowed; every table is one
    /// that `rewrite` reads.
    #[test]
    fn each_old_text_lists_its_values() {
        for listed in LISTED {
            let quoted: Vec<String> = listed.values.iter().map(|v| format!("'{v}'")).collect();
            let expected = format!("CHECK ({} IN ({}))", listed.column, quoted.join(", "));
            let old = listed.old.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(old, expected);
            assert!(["installations", "deliveries"].contains(&listed.table));
        }
    }

    #[test]
    fn the_old_texts_are_those_of_the_migrations() {
        let files = [
            include_str!("../migrations/0001_initial.sql"),
            include_str!("../migrations/0002_push.sql"),
        ];
        for listed in LISTED {
            assert!(
                files.iter().any(|f| f.contains(listed.old)),
                "{} is not in the migrations",
                listed.old
            );
        }
    }
}
