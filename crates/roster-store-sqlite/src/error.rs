//! From rusqlite errors to [`StoreError`]: uniqueness violations become a typed
//! [`Constraint`], a busy or locked database becomes [`StoreError::Unavailable`].

use roster_store::{Constraint, StoreError};
use rusqlite::ErrorCode;
use rusqlite::ffi;

/// Every unique constraint and unique index of the schema: its name, the column list SQLite puts
/// in "UNIQUE constraint failed: <columns>", and the rule it enforces (`None`: not a rule of
/// people.md, reported as `Constraint::Other(name)`). A test checks that this table and the
/// schema agree, so a new unique index cannot be forgotten here.
pub(crate) const UNIQUE_CONSTRAINTS: &[(&str, &str, Option<Constraint>)] = &[
    ("accounts_pkey", "accounts.id", None),
    ("applications_pkey", "applications.id", None),
    (
        "applications_application_code_key",
        "applications.application_code",
        Some(Constraint::ApplicationCode),
    ),
    (
        "jwt_keys_pkey",
        "jwt_keys.application_id, jwt_keys.kid",
        Some(Constraint::JwtKid),
    ),
    ("api_keys_pkey", "api_keys.id", None),
    ("api_keys_key_hash_key", "api_keys.key_hash", Some(Constraint::ApiKey)),
    ("persons_pkey", "persons.id", None),
    (
        "persons_external_user_id_key",
        "persons.account_id, persons.external_user_id",
        Some(Constraint::ExternalUserId),
    ),
    (
        "person_phones_pkey",
        "person_phones.person_id, person_phones.position",
        None,
    ),
    (
        "person_phones_number_key",
        "person_phones.account_id, person_phones.number",
        Some(Constraint::Phone),
    ),
    (
        "person_emails_pkey",
        "person_emails.person_id, person_emails.position",
        None,
    ),
    (
        "person_emails_email_key_key",
        "person_emails.account_id, person_emails.email_key",
        Some(Constraint::Email),
    ),
    ("person_tags_pkey", "person_tags.person_id, person_tags.tag", None),
    (
        "installations_pkey",
        "installations.push_reg_id",
        Some(Constraint::PushRegId),
    ),
    (
        "installations_push_token_key",
        "installations.application_id, installations.provider, installations.push_service_token",
        Some(Constraint::PushToken),
    ),
    (
        "installations_primary_key",
        "installations.person_id, installations.application_id",
        Some(Constraint::PrimaryInstallation),
    ),
    (
        "attribute_definitions_pkey",
        "attribute_definitions.account_id, attribute_definitions.scope, attribute_definitions.name",
        Some(Constraint::AttributeDefinition),
    ),
    ("merge_log_pkey", "merge_log.id", None),
    // migrations/0002_push.sql (roster_store::push::constraints names them)
    ("bulks_pkey", "bulks.account_id, bulks.bulk_id", None),
    ("messages_pkey", "messages.account_id, messages.message_id", None),
    (
        "audience_jobs_pkey",
        "audience_jobs.account_id, audience_jobs.message_id",
        None,
    ),
    ("deliveries_pkey", "deliveries.account_id, deliveries.delivery_id", None),
    (
        "deliveries_message_installation_key",
        "deliveries.account_id, deliveries.message_id, deliveries.push_reg_id",
        None,
    ),
    (
        "idempotency_keys_pkey",
        "idempotency_keys.account_id, idempotency_keys.idem_key",
        None,
    ),
    // migrations/0003_audience.sql
    (
        "person_attribute_values_pkey",
        "person_attribute_values.person_id, person_attribute_values.name, person_attribute_values.item, \
         person_attribute_values.field",
        None,
    ),
    (
        "installation_attribute_values_pkey",
        "installation_attribute_values.push_reg_id, installation_attribute_values.name, \
         installation_attribute_values.item, installation_attribute_values.field",
        None,
    ),
    ("installation_search_pkey", "installation_search.push_reg_id", None),
    ("segments_pkey", "segments.id", None),
    // roster_store::audience::SEGMENT_NAME_CONSTRAINT
    ("segments_account_name_key", "segments.account_id, segments.name", None),
    ("portal_sessions_pkey", "portal_sessions.id_hash", None),
];

/// The constraint named by the text after "UNIQUE constraint failed: ".
fn constraint_from_columns(columns: &str) -> Constraint {
    match UNIQUE_CONSTRAINTS.iter().find(|(_, cols, _)| *cols == columns) {
        Some((_, _, Some(rule))) => rule.clone(),
        Some((name, _, None)) => Constraint::Other((*name).to_owned()),
        // An expression index would be reported as "index 'name'"; keep whatever SQLite said.
        None => Constraint::Other(columns.to_owned()),
    }
}

/// Maps a rusqlite error to the store's error.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(failure, message) => match failure.code {
            // busy_timeout elapsed (another process holds the write lock) or a lock conflict
            // inside this process: transient, the caller may retry.
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Unavailable(e.to_string()),
            ErrorCode::CannotOpen | ErrorCode::DiskFull => StoreError::Unavailable(e.to_string()),
            ErrorCode::ConstraintViolation => match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    let text = message.as_deref().unwrap_or("");
                    let columns = text.strip_prefix("UNIQUE constraint failed: ").unwrap_or(text);
                    StoreError::Conflict {
                        constraint: constraint_from_columns(columns),
                    }
                }
                // SQLite does not say which reference; the caller knows what it wrote.
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::ForeignKey(e.to_string()),
                // A CHECK or NOT NULL violation is a bug in the caller, never a rule the client
                // can trip over.
                _ => StoreError::Other(format!("constraint violated: {e}")),
            },
            ErrorCode::ReadOnly => StoreError::Other(format!("write in a read-only transaction: {e}")),
            _ => StoreError::Other(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Other(format!("corrupt row: {e}")),
        _ => StoreError::Other(e.to_string()),
    }
}

/// A blocking task that panicked or was cancelled.
pub(crate) fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Other(format!("database task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_columns_to_rules() {
        assert_eq!(
            constraint_from_columns("person_phones.account_id, person_phones.number"),
            Constraint::Phone
        );
        assert_eq!(
            constraint_from_columns("accounts.id"),
            Constraint::Other("accounts_pkey".into())
        );
        assert_eq!(
            constraint_from_columns("index 'x'"),
            Constraint::Other("index 'x'".into())
        );
    }
}
