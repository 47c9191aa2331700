//! Decoding of stored columns into domain values. A value that does not decode (a bad UUID, an
//! unknown enum spelling, a boolean other than 0/1, broken JSON) is a corrupt row: it surfaces as
//! `FromSqlConversionFailure`, which `map_err` turns into `StoreError::Other`. Nothing here falls
//! back to a default.

use roster_model::{
    Account, ApiKey, Application, AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, Gender,
    Installation, JwtKey, MergeLogEntry, MergeStatus, Person, PersonType, PushServiceType, SystemData,
    TokenClearedReason,
};
use rusqlite::Row;
use rusqlite::types::{Type, ValueRef};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use uuid::Uuid;

/// A column whose stored value is not a valid domain value.
fn corrupt(idx: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, message.into())
}

/// Decodes a TEXT column with `decode`, without copying it.
fn text_with<T>(row: &Row<'_>, idx: usize, decode: impl FnOnce(&str) -> Result<T, String>) -> rusqlite::Result<T> {
    let value = row.get_ref(idx)?;
    let text = value
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, value.data_type(), e.into()))?;
    decode(text).map_err(|message| corrupt(idx, message))
}

/// Whether a column is NULL.
fn is_null(row: &Row<'_>, idx: usize) -> rusqlite::Result<bool> {
    Ok(matches!(row.get_ref(idx)?, ValueRef::Null))
}

/// A UUID column.
pub(crate) fn uuid_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    text_with(row, idx, |s| {
        Uuid::parse_str(s).map_err(|e| format!("bad UUID {s:?}: {e}"))
    })
}

/// A nullable UUID column.
pub(crate) fn opt_uuid_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Uuid>> {
    if is_null(row, idx)? {
        return Ok(None);
    }
    uuid_at(row, idx).map(Some)
}

/// A boolean column: exactly 0 or 1.
pub(crate) fn bool_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<bool> {
    match row.get::<_, i64>(idx)? {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(corrupt(idx, format!("boolean column holds {n}"))),
    }
}

/// A nullable boolean column.
pub(crate) fn opt_bool_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<bool>> {
    if is_null(row, idx)? {
        return Ok(None);
    }
    bool_at(row, idx).map(Some)
}

/// A JSON column.
pub(crate) fn json_at<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    text_with(row, idx, |s| {
        serde_json::from_str(s).map_err(|e| format!("bad JSON: {e}"))
    })
}

/// A nullable JSON column.
pub(crate) fn opt_json_at<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    if is_null(row, idx)? {
        return Ok(None);
    }
    json_at(row, idx).map(Some)
}

/// An enum column in its stored spelling.
pub(crate) fn enum_at<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    text_with(row, idx, |s| parse(s).ok_or_else(|| format!("unknown value {s:?}")))
}

/// A nullable enum column.
pub(crate) fn opt_enum_at<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<Option<T>> {
    if is_null(row, idx)? {
        return Ok(None);
    }
    enum_at(row, idx, parse).map(Some)
}

/// An `accounts` row.
pub(crate) fn account(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: uuid_at(row, 0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
    })
}

/// An `applications` row.
pub(crate) fn application(row: &Row<'_>) -> rusqlite::Result<Application> {
    Ok(Application {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        name: row.get(2)?,
        application_code: row.get(3)?,
        enabled: bool_at(row, 4)?,
        require_jwt_for_user_data: bool_at(row, 5)?,
        restrict_user_data_from_sdk: bool_at(row, 6)?,
        providers: json_at(row, 7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

/// A `jwt_keys` row.
pub(crate) fn jwt_key(row: &Row<'_>) -> rusqlite::Result<JwtKey> {
    Ok(JwtKey {
        account_id: uuid_at(row, 0)?,
        application_id: uuid_at(row, 1)?,
        kid: row.get(2)?,
        secret: row.get(3)?,
        created_at: row.get(4)?,
    })
}

/// An `api_keys` row.
pub(crate) fn api_key(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        name: row.get(2)?,
        scopes: json_at(row, 3)?,
        key_hash: row.get(4)?,
        key_prefix: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        last_used_at: row.get(8)?,
    })
}

/// A `persons` row, without its phones, emails and tags (they live in their own tables).
pub(crate) fn person(row: &Row<'_>) -> rusqlite::Result<Person> {
    Ok(Person {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        external_user_id: row.get(2)?,
        first_name: row.get(3)?,
        middle_name: row.get(4)?,
        last_name: row.get(5)?,
        // The stored spelling is exactly "Male" / "Female" (CHECK); parse is case-insensitive.
        gender: opt_enum_at(row, 6, Gender::parse)?,
        birthday: row.get(7)?,
        phones: Vec::new(),
        emails: Vec::new(),
        tags: BTreeSet::new(),
        custom_attributes: json_at(row, 8)?,
        person_type: enum_at(row, 9, PersonType::parse)?,
        version: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
    })
}

/// An `installations` row (the `provider` column is derived, not read back).
pub(crate) fn installation(row: &Row<'_>) -> rusqlite::Result<Installation> {
    Ok(Installation {
        account_id: uuid_at(row, 0)?,
        application_id: uuid_at(row, 1)?,
        push_reg_id: row.get(2)?,
        person_id: uuid_at(row, 3)?,
        push_service_type: opt_enum_at(row, 4, push_service_type)?,
        push_service_token: row.get(5)?,
        reg_enabled: bool_at(row, 6)?,
        is_primary: bool_at(row, 7)?,
        application_user_id: row.get(8)?,
        custom_attributes: json_at(row, 9)?,
        system: SystemData {
            notifications_enabled: opt_bool_at(row, 10)?,
            sdk_version: row.get(11)?,
            app_version: row.get(12)?,
            os: row.get(13)?,
            os_version: row.get(14)?,
            device_manufacturer: row.get(15)?,
            device_model: row.get(16)?,
            device_name: row.get(17)?,
            device_secure: opt_bool_at(row, 18)?,
            language: row.get(19)?,
            device_timezone_offset: row.get(20)?,
            inappchat: opt_bool_at(row, 21)?,
            inbox: opt_bool_at(row, 22)?,
            webrtcui: opt_bool_at(row, 23)?,
        },
        created_at: row.get(24)?,
        updated_at: row.get(25)?,
        last_seen_at: row.get(26)?,
        token_cleared_at: row.get(27)?,
        token_cleared_reason: opt_enum_at(row, 28, TokenClearedReason::parse)?,
    })
}

/// The stored spelling of a push service type is exact (`PushServiceType::parse` also accepts
/// other letter cases, which is for requests, not for rows).
fn push_service_type(s: &str) -> Option<PushServiceType> {
    PushServiceType::parse(s).filter(|t| t.as_str() == s)
}

/// An `attribute_definitions` row.
pub(crate) fn attribute_definition(row: &Row<'_>) -> rusqlite::Result<AttributeDefinition> {
    Ok(AttributeDefinition {
        account_id: uuid_at(row, 0)?,
        scope: enum_at(row, 1, AttributeScope::parse)?,
        name: row.get(2)?,
        attr_type: enum_at(row, 3, AttributeType::parse)?,
        object_schema: opt_json_at(row, 4)?,
        origin: enum_at(row, 5, DefinitionOrigin::parse)?,
        created_at: row.get(6)?,
    })
}

/// A `merge_log` row.
pub(crate) fn merge_entry(row: &Row<'_>) -> rusqlite::Result<MergeLogEntry> {
    Ok(MergeLogEntry {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        created_at: row.get(2)?,
        actor: json_at(row, 3)?,
        push_reg_id: row.get(4)?,
        source_person_id: opt_uuid_at(row, 5)?,
        target_person_id: opt_uuid_at(row, 6)?,
        source_deleted: bool_at(row, 7)?,
        after_forced_depersonalize: bool_at(row, 8)?,
        dropped_attributes: json_at(row, 9)?,
        before: opt_json_at(row, 10)?,
        after_target_version: row.get(11)?,
        after_source_version: row.get(12)?,
        status: enum_at(row, 13, MergeStatus::parse)?,
        reversed_at: row.get(14)?,
        reversed_by: opt_json_at(row, 15)?,
        redacted: bool_at(row, 16)?,
    })
}
