//! Decoding of stored columns into domain values. A value that does not decode (a bad UUID, an
//! unknown enum spelling, broken JSON, a column of an unexpected type) is a corrupt row: it
//! surfaces as `StoreError::Other("corrupt row: ...")`. Nothing here falls back to a default.

use std::collections::BTreeSet;

use roster_model::{
    Account, ApiKey, Application, AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, Gender,
    Installation, JwtKey, MergeLogEntry, MergeStatus, Person, PersonType, PushServiceType, SystemData,
    TokenClearedReason,
};
use roster_store::StoreResult;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{corrupt, map_err};

/// A column of a plain type (text, integer, boolean, bytes, and their `Option`s).
pub(crate) fn get<'r, T>(row: &'r PgRow, idx: usize) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(idx).map_err(map_err)
}

/// A UUID stored as text.
pub(crate) fn uuid_at(row: &PgRow, idx: usize) -> StoreResult<Uuid> {
    let text: &str = get(row, idx)?;
    parse_uuid(row, idx, text)
}

/// A nullable UUID stored as text.
pub(crate) fn opt_uuid_at(row: &PgRow, idx: usize) -> StoreResult<Option<Uuid>> {
    let text: Option<&str> = get(row, idx)?;
    text.map(|t| parse_uuid(row, idx, t)).transpose()
}

fn parse_uuid(row: &PgRow, idx: usize, text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|e| corrupt(&column_name(row, idx), format!("bad UUID {text:?}: {e}")))
}

/// A JSON document stored as text.
pub(crate) fn json_at<T: DeserializeOwned>(row: &PgRow, idx: usize) -> StoreResult<T> {
    let text: &str = get(row, idx)?;
    serde_json::from_str(text).map_err(|e| corrupt(&column_name(row, idx), format!("bad JSON: {e}")))
}

/// A nullable JSON document stored as text.
pub(crate) fn opt_json_at<T: DeserializeOwned>(row: &PgRow, idx: usize) -> StoreResult<Option<T>> {
    let text: Option<&str> = get(row, idx)?;
    text.map(|t| serde_json::from_str(t).map_err(|e| corrupt(&column_name(row, idx), format!("bad JSON: {e}"))))
        .transpose()
}

/// An enum column in its stored spelling.
pub(crate) fn enum_at<T>(row: &PgRow, idx: usize, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let text: &str = get(row, idx)?;
    parse(text).ok_or_else(|| corrupt(&column_name(row, idx), format!("unknown value {text:?}")))
}

/// A nullable enum column.
pub(crate) fn opt_enum_at<T>(row: &PgRow, idx: usize, parse: fn(&str) -> Option<T>) -> StoreResult<Option<T>> {
    let text: Option<&str> = get(row, idx)?;
    text.map(|t| parse(t).ok_or_else(|| corrupt(&column_name(row, idx), format!("unknown value {t:?}"))))
        .transpose()
}

/// The name of a column, for error messages.
fn column_name(row: &PgRow, idx: usize) -> String {
    use sqlx::Column;
    row.columns()
        .get(idx)
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| format!("#{idx}"))
}

/// An `accounts` row.
pub(crate) fn account(row: &PgRow) -> StoreResult<Account> {
    Ok(Account {
        id: uuid_at(row, 0)?,
        name: get(row, 1)?,
        created_at: get(row, 2)?,
    })
}

/// An `applications` row.
pub(crate) fn application(row: &PgRow) -> StoreResult<Application> {
    Ok(Application {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        name: get(row, 2)?,
        application_code: get(row, 3)?,
        enabled: get(row, 4)?,
        require_jwt_for_user_data: get(row, 5)?,
        restrict_user_data_from_sdk: get(row, 6)?,
        providers: json_at(row, 7)?,
        created_at: get(row, 8)?,
        updated_at: get(row, 9)?,
    })
}

/// A `jwt_keys` row.
pub(crate) fn jwt_key(row: &PgRow) -> StoreResult<JwtKey> {
    Ok(JwtKey {
        account_id: uuid_at(row, 0)?,
        application_id: uuid_at(row, 1)?,
        kid: get(row, 2)?,
        secret: get(row, 3)?,
        created_at: get(row, 4)?,
    })
}

/// An `api_keys` row.
pub(crate) fn api_key(row: &PgRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        name: get(row, 2)?,
        scopes: json_at(row, 3)?,
        key_hash: get(row, 4)?,
        key_prefix: get(row, 5)?,
        created_at: get(row, 6)?,
        expires_at: get(row, 7)?,
        last_used_at: get(row, 8)?,
    })
}

/// A `persons` row, without its phones, emails and tags (they live in their own tables).
pub(crate) fn person(row: &PgRow) -> StoreResult<Person> {
    Ok(Person {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        external_user_id: get(row, 2)?,
        first_name: get(row, 3)?,
        middle_name: get(row, 4)?,
        last_name: get(row, 5)?,
        // The stored spelling is exactly "Male" / "Female" (CHECK); parse is case-insensitive.
        gender: opt_enum_at(row, 6, Gender::parse)?,
        birthday: get(row, 7)?,
        phones: Vec::new(),
        emails: Vec::new(),
        tags: BTreeSet::new(),
        custom_attributes: json_at(row, 8)?,
        person_type: enum_at(row, 9, PersonType::parse)?,
        version: get(row, 10)?,
        created_at: get(row, 11)?,
        updated_at: get(row, 12)?,
    })
}

/// An `installations` row (the `provider` column is derived, not read back).
pub(crate) fn installation(row: &PgRow) -> StoreResult<Installation> {
    Ok(Installation {
        account_id: uuid_at(row, 0)?,
        application_id: uuid_at(row, 1)?,
        push_reg_id: get(row, 2)?,
        person_id: uuid_at(row, 3)?,
        push_service_type: opt_enum_at(row, 4, push_service_type)?,
        push_service_token: get(row, 5)?,
        reg_enabled: get(row, 6)?,
        is_primary: get(row, 7)?,
        application_user_id: get(row, 8)?,
        custom_attributes: json_at(row, 9)?,
        system: SystemData {
            notifications_enabled: get(row, 10)?,
            sdk_version: get(row, 11)?,
            app_version: get(row, 12)?,
            os: get(row, 13)?,
            os_version: get(row, 14)?,
            device_manufacturer: get(row, 15)?,
            device_model: get(row, 16)?,
            device_name: get(row, 17)?,
            device_secure: get(row, 18)?,
            language: get(row, 19)?,
            device_timezone_offset: get(row, 20)?,
            inappchat: get(row, 21)?,
            inbox: get(row, 22)?,
            webrtcui: get(row, 23)?,
        },
        created_at: get(row, 24)?,
        updated_at: get(row, 25)?,
        last_seen_at: get(row, 26)?,
        token_cleared_at: get(row, 27)?,
        token_cleared_reason: opt_enum_at(row, 28, TokenClearedReason::parse)?,
    })
}

/// The stored spelling of a push service type is exact (`PushServiceType::parse` also accepts
/// other letter cases, which is for requests, not for rows).
fn push_service_type(s: &str) -> Option<PushServiceType> {
    PushServiceType::parse(s).filter(|t| t.as_str() == s)
}

/// An `attribute_definitions` row.
pub(crate) fn attribute_definition(row: &PgRow) -> StoreResult<AttributeDefinition> {
    Ok(AttributeDefinition {
        account_id: uuid_at(row, 0)?,
        scope: enum_at(row, 1, AttributeScope::parse)?,
        name: get(row, 2)?,
        attr_type: enum_at(row, 3, AttributeType::parse)?,
        object_schema: opt_json_at(row, 4)?,
        origin: enum_at(row, 5, DefinitionOrigin::parse)?,
        created_at: get(row, 6)?,
    })
}

/// A `merge_log` row.
pub(crate) fn merge_entry(row: &PgRow) -> StoreResult<MergeLogEntry> {
    Ok(MergeLogEntry {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        created_at: get(row, 2)?,
        actor: json_at(row, 3)?,
        push_reg_id: get(row, 4)?,
        source_person_id: opt_uuid_at(row, 5)?,
        target_person_id: opt_uuid_at(row, 6)?,
        source_deleted: get(row, 7)?,
        after_forced_depersonalize: get(row, 8)?,
        dropped_attributes: json_at(row, 9)?,
        before: opt_json_at(row, 10)?,
        after_target_version: get(row, 11)?,
        after_source_version: get(row, 12)?,
        status: enum_at(row, 13, MergeStatus::parse)?,
        reversed_at: get(row, 14)?,
        reversed_by: opt_json_at(row, 15)?,
        redacted: get(row, 16)?,
    })
}
