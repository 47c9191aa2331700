//! From sqlx errors to [`StoreError`]: a uniqueness violation becomes a typed [`Constraint`]
//! named by the violated constraint, a lost race (serialization failure, deadlock, lock timeout)
//! becomes [`StoreError::Retry`], an unreachable or overloaded server [`StoreError::Unavailable`].

use roster_store::{Constraint, StoreError};

/// Every unique constraint and unique index of the schema, by the name PostgreSQL reports in a
/// `unique_violation`, and the rule it enforces (`None`: not a rule of people.md, reported as
/// `Constraint::Other(name)`). The names are those of the SQLite schema. A test checks this
/// table against the catalog of a migrated database both ways, so a new unique index cannot be
/// forgotten here.
pub(crate) const UNIQUE_CONSTRAINTS: &[(&str, Option<Constraint>)] = &[
    ("accounts_pkey", None),
    ("applications_pkey", None),
    ("applications_application_code_key", Some(Constraint::ApplicationCode)),
    ("jwt_keys_pkey", Some(Constraint::JwtKid)),
    ("api_keys_pkey", None),
    ("api_keys_key_hash_key", Some(Constraint::ApiKey)),
    ("persons_pkey", None),
    ("persons_external_user_id_key", Some(Constraint::ExternalUserId)),
    ("person_phones_pkey", None),
    ("person_phones_number_key", Some(Constraint::Phone)),
    ("person_emails_pkey", None),
    ("person_emails_email_key_key", Some(Constraint::Email)),
    ("person_tags_pkey", None),
    ("installations_pkey", Some(Constraint::PushRegId)),
    ("installations_push_token_key", Some(Constraint::PushToken)),
    ("installations_primary_key", Some(Constraint::PrimaryInstallation)),
    ("attribute_definitions_pkey", Some(Constraint::AttributeDefinition)),
    ("merge_log_pkey", None),
    // migrations/0002_push.sql (roster_store::push::constraints names them)
    ("bulks_pkey", None),
    ("messages_pkey", None),
    ("audience_jobs_pkey", None),
    ("deliveries_pkey", None),
    ("deliveries_message_installation_key", None),
    ("idempotency_keys_pkey", None),
    // migrations/0003_audience.sql
    ("person_attribute_values_pkey", None),
    ("installation_attribute_values_pkey", None),
    ("installation_search_pkey", None),
    ("segments_pkey", None),
    // roster_store::audience::SEGMENT_NAME_CONSTRAINT
    ("segments_account_name_key", None),
    ("portal_sessions_pkey", None),
];

/// The rule behind a violated unique constraint or index.
pub(crate) fn constraint_named(name: &str) -> Constraint {
    match UNIQUE_CONSTRAINTS.iter().find(|(n, _)| *n == name) {
        Some((_, Some(rule))) => rule.clone(),
        _ => Constraint::Other(name.to_owned()),
    }
}

/// SQLSTATEs after which the transaction lost against a concurrent one and may succeed when run
/// again from the start: serialization_failure, deadlock_detected, lock_not_available (our
/// `lock_timeout` elapsed).
const RETRY_STATES: &[&str] = &["40001", "40P01", "55P03"];

/// Whether a SQLSTATE says the server cannot serve now (transient): connection exceptions
/// (class 08), insufficient resources (class 53: too many connections, disk full, out of
/// memory), operator intervention (class 57: shutdown, cannot connect now, query cancelled).
fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
}

/// Maps a sqlx error to the store's error.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // unique_violation
                "23505" => StoreError::Conflict {
                    constraint: constraint_named(db.constraint().unwrap_or("")),
                },
                // foreign_key_violation
                "23503" => StoreError::ForeignKey(e.to_string()),
                // A CHECK or NOT NULL violation is a bug in the caller, never a rule the client
                // can trip over.
                c if c.starts_with("23") => StoreError::Other(format!("constraint violated: {e}")),
                c if RETRY_STATES.contains(&c) => StoreError::Retry(e.to_string()),
                c if is_unavailable_state(c) => StoreError::Unavailable(e.to_string()),
                // read_only_sql_transaction
                "25006" => StoreError::Other(format!("write in a read-only transaction: {e}")),
                _ => StoreError::Other(e.to_string()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Other(format!("corrupt row: {e}")),
        _ => StoreError::Other(e.to_string()),
    }
}

/// Whether PostgreSQL aborted the transaction with this error: every error the server reports
/// inside a transaction block does, and every later statement but ROLLBACK fails.
pub(crate) fn aborts_transaction(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(_))
}

/// A second error of the same kind as `first`, for a commit refused after `first` aborted the
/// transaction: so that a caller that retries on `Conflict` or `Retry` still does.
pub(crate) fn replay(first: &StoreError) -> StoreError {
    let why = |m: &dyn std::fmt::Display| format!("the transaction was aborted by an earlier error: {m}");
    match first {
        StoreError::NotFound => StoreError::Other(why(&first)),
        StoreError::Conflict { constraint } => StoreError::Conflict {
            constraint: constraint.clone(),
        },
        StoreError::ForeignKey(m) => StoreError::ForeignKey(why(m)),
        StoreError::Unavailable(m) => StoreError::Unavailable(why(m)),
        StoreError::Retry(m) => StoreError::Retry(why(m)),
        StoreError::Other(m) => StoreError::Other(why(m)),
    }
}

/// A stored value that is not a valid domain value.
pub(crate) fn corrupt(column: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("corrupt row: column {column}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names_to_rules() {
        assert_eq!(constraint_named("person_phones_number_key"), Constraint::Phone);
        assert_eq!(
            constraint_named("installations_primary_key"),
            Constraint::PrimaryInstallation
        );
        assert_eq!(
            constraint_named("accounts_pkey"),
            Constraint::Other("accounts_pkey".into())
        );
        assert_eq!(constraint_named("nope"), Constraint::Other("nope".into()));
    }

    #[test]
    fn transport_failures_are_unavailable() {
        assert!(matches!(map_err(sqlx::Error::PoolTimedOut), StoreError::Unavailable(_)));
        assert!(matches!(
            map_err(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset
            ))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(map_err(sqlx::Error::RowNotFound), StoreError::Other(_)));
        assert!(is_unavailable_state("08006"));
        assert!(is_unavailable_state("57P01"));
        assert!(!is_unavailable_state("23505"));
    }
}
