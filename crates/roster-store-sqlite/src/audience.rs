//! [`AudienceTx`] on SQLite, and the maintenance of the audience index
//! (`migrations/0003_audience.sql`, rows defined by `roster_store::audience::index`).
//!
//! Index rows are rewritten by `sql.rs` on every person and installation write, in the same
//! transaction (a few cached statements on the one writer connection, the value rows of one
//! owner in multi-row `INSERT`s of up to eight rows); they are deleted with their owner by `ON DELETE CASCADE`. Filters run as the SQL of
//! `roster_store::audience::translate`.

use std::collections::HashMap;

use async_trait::async_trait;
use roster_model::filter::Filter;
use roster_model::{Installation, Person};
use roster_store::audience::index::{self, SEARCH_COLUMNS, ValueRow};
use roster_store::audience::translate::{self, Bind, Dialect, Statement};
use roster_store::audience::{FoundPerson, Preview, SamplePerson, Scope, Segment};
use roster_store::columns::{id, json};
use roster_store::{AudienceTx, MAX_PAGE, Snapshot, StoreError, StoreResult, page_limit};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, ToSql, params};
use uuid::Uuid;

use crate::error::{join_err, map_err};
use crate::rows::{self, bool_at, json_at, uuid_at};
use crate::sql::{self, count, execute, expect_one, query_all, query_opt};
use crate::tx::SqliteTx;

/// The schema version that creates the index; [`backfill`] runs right after it.
pub(crate) const INDEX_MIGRATION: i64 = 3;

/// The most value rows per multi-row `INSERT` of [`insert_value_rows`] (a power of two): a
/// person's rows (its reserved rows, tags and scalar attributes) are usually 6 to 12.
const VALUE_ROWS_PER_INSERT: usize = 8;

/// `INSERT INTO {table} (...) VALUES (...), ...` for `rows` value rows of one owner: the account
/// and the owner are bound once (`?1`, `?2`), each row's seven values after them.
fn insert_values_sql(table: &str, owner_column: &str, rows: usize) -> String {
    let mut sql = format!(
        "INSERT INTO {table} (account_id, {owner_column}, name, item, field, value_text, value_lower, \
         value_num, value_bool) VALUES "
    );
    for r in 0..rows {
        let p = 3 + r * 7;
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(?1, ?2, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
            p,
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6
        ));
    }
    sql
}

/// Inserts an owner's value rows in multi-row statements of 8, 4, 2 and 1 rows (the largest that
/// fits, so that only four statements per table are ever prepared and cached).
fn insert_value_rows(
    conn: &Connection,
    table: &str,
    owner_column: &str,
    account: &str,
    owner: &str,
    rows: &[ValueRow],
) -> StoreResult<()> {
    for chunk in crate::sql::power_of_two_chunks(rows, VALUE_ROWS_PER_INSERT) {
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(2 + chunk.len() * 7);
        values.push(&account);
        values.push(&owner);
        for r in chunk {
            values.extend([
                &r.name as &dyn ToSql,
                &r.item,
                &r.field,
                &r.text,
                &r.lower,
                &r.num,
                &r.boolean,
            ]);
        }
        execute(
            conn,
            &insert_values_sql(table, owner_column, chunk.len()),
            rusqlite::params_from_iter(values),
        )?;
    }
    Ok(())
}

/// A value row read as `name, item, field, value_text, value_lower, value_num, value_bool`.
fn value_row(r: &Row<'_>) -> rusqlite::Result<ValueRow> {
    Ok(ValueRow {
        name: r.get(0)?,
        item: r.get(1)?,
        field: r.get(2)?,
        text: r.get(3)?,
        lower: r.get(4)?,
        num: r.get(5)?,
        boolean: r.get(6)?,
    })
}

/// Writes an owner's value rows. An owner that may have rows already gets only the difference:
/// its stored rows are read (by the primary key, one page), the ones no longer wanted are
/// deleted, the ones whose value changed are updated in place and the missing ones inserted; a
/// row that stays as it was is not touched. Deleting and inserting all of them again would
/// dirty a page of each of the table's value indexes per row on every write, most of them to
/// store what was already there (a `PATCH` of one attribute, a `lastSeenAt` refresh); deleting
/// and inserting a changed row would take its key out of the primary-key tree and put it back.
fn write_value_rows(
    conn: &Connection,
    table: &str,
    owner_column: &str,
    account: &str,
    owner: &str,
    rows: &[ValueRow],
    stored: Stored,
) -> StoreResult<()> {
    let stored = match stored {
        Stored::Nothing => return insert_value_rows(conn, table, owner_column, account, owner, rows),
        Stored::Unknown => stored_value_rows(conn, table, owner_column, owner)?,
        Stored::Known(rows) => rows,
    };
    fn key(r: &ValueRow) -> (&str, i64, &str) {
        (&r.name, r.item, &r.field)
    }
    fn by_key(rows: &[ValueRow]) -> HashMap<(&str, i64, &str), &ValueRow> {
        rows.iter().map(|r| (key(r), r)).collect()
    }
    let (wanted, kept) = (by_key(rows), by_key(&stored));
    for old in &stored {
        match wanted.get(&key(old)) {
            Some(new) if *new == old => {}
            // The same key with another value (a number that changed, a tag at the same
            // position): rewritten in place, so the primary-key tree keeps its entry and only
            // the value indexes that hold the row change.
            Some(new) => {
                execute(
                    conn,
                    &format!(
                        "UPDATE {table} SET value_text = ?5, value_lower = ?6, value_num = ?7, \
                         value_bool = ?8 WHERE {owner_column} = ?1 AND name = ?2 AND item = ?3 \
                         AND field = ?4"
                    ),
                    params![
                        owner,
                        new.name,
                        new.item,
                        new.field,
                        new.text,
                        new.lower,
                        new.num,
                        new.boolean
                    ],
                )?;
            }
            None => {
                execute(
                    conn,
                    &format!(
                        "DELETE FROM {table} WHERE {owner_column} = ?1 AND name = ?2 AND item = ?3 \
                         AND field = ?4"
                    ),
                    params![owner, old.name, old.item, old.field],
                )?;
            }
        }
    }
    let missing: Vec<ValueRow> = rows.iter().filter(|r| !kept.contains_key(&key(r))).cloned().collect();
    insert_value_rows(conn, table, owner_column, account, owner, &missing)
}

/// An owner's stored value rows, read by the primary key (owner, name, item, field): owner ids
/// are unique across accounts, and the value indexes are led by the account.
fn stored_value_rows(conn: &Connection, table: &str, owner_column: &str, owner: &str) -> StoreResult<Vec<ValueRow>> {
    query_all(
        conn,
        &format!(
            "SELECT name, item, field, value_text, value_lower, value_num, value_bool FROM {table} \
             WHERE {owner_column} = ?1"
        ),
        params![owner],
        value_row,
    )
}

/// The value rows an owner has before a write.
pub(crate) enum Stored {
    /// None (a new owner).
    Nothing,
    /// Whatever is stored: read it.
    Unknown,
    /// These (computed from the owner as it is stored).
    Known(Vec<ValueRow>),
}

/// Writes a person's index rows (people.md person write paths).
pub(crate) fn index_person(conn: &Connection, person: &Person, stored: Stored) -> StoreResult<()> {
    let (account, owner) = (id(person.account_id), id(person.id));
    write_value_rows(
        conn,
        "person_attribute_values",
        "person_id",
        &account,
        &owner,
        &index::person_rows(person),
        stored,
    )
}

/// [`index_person`] for `after`, the person stored as `before` until now: its rows are those
/// of `before`, not read again.
pub(crate) fn index_person_from(conn: &Connection, before: &Person, after: &Person) -> StoreResult<()> {
    index_person(conn, after, Stored::Known(index::person_rows(before)))
}

/// Writes an installation's index rows (installation write paths).
pub(crate) fn index_installation(conn: &Connection, inst: &Installation, stored: Stored) -> StoreResult<()> {
    write_search_row(conn, inst)?;
    write_installation_rows(conn, inst, stored)
}

/// [`index_installation`] for `after`, the installation stored as `before` until now: its search
/// row is written only if it differs, and its value rows are diffed against those of `before`,
/// neither read again.
pub(crate) fn index_installation_from(
    conn: &Connection,
    before: &Installation,
    after: &Installation,
) -> StoreResult<()> {
    if index::installation_search(before) != index::installation_search(after) {
        write_search_row(conn, after)?;
    }
    write_installation_rows(conn, after, Stored::Known(index::installation_rows(before)))
}

fn write_installation_rows(conn: &Connection, inst: &Installation, stored: Stored) -> StoreResult<()> {
    write_value_rows(
        conn,
        "installation_attribute_values",
        "push_reg_id",
        &id(inst.account_id),
        &inst.push_reg_id,
        &index::installation_rows(inst),
        stored,
    )
}

/// Debug builds, so every test: the `before` of an `*_from` update must be exactly what is
/// stored (row, keys, index rows), or the difference written from it would leave them wrong.
/// A caller passing anything else is a bug: this panics with what differs.
#[cfg(debug_assertions)]
pub(crate) fn assert_stored_person(conn: &Connection, before: &Person) {
    let stored = crate::sql::person(conn, before.account_id, before.id)
        .expect("reading the stored person")
        .expect("the person of an update is stored");
    assert_eq!(&stored, before, "update_person_from: `before` is not the stored person");
    assert_eq!(
        stored_rows_in_key_order(conn, "person_attribute_values", "person_id", &id(before.id)),
        by_value_key(index::person_rows(before)),
        "update_person_from: the stored value rows are not those of `before`"
    );
}

/// [`assert_stored_person`] for an installation, its search row included.
#[cfg(debug_assertions)]
pub(crate) fn assert_stored_installation(conn: &Connection, before: &Installation) {
    let stored = crate::sql::installation(conn, &before.push_reg_id)
        .expect("reading the stored installation")
        .expect("the installation of an update is stored");
    assert_eq!(
        &stored, before,
        "update_installation_from: `before` is not the stored installation"
    );
    assert_eq!(
        stored_rows_in_key_order(
            conn,
            "installation_attribute_values",
            "push_reg_id",
            &before.push_reg_id
        ),
        by_value_key(index::installation_rows(before)),
        "update_installation_from: the stored value rows are not those of `before`"
    );
    let search: Vec<Option<String>> = conn
        .query_row(
            &format!(
                "SELECT {} FROM installation_search WHERE push_reg_id = ?1",
                SEARCH_COLUMNS.join(", ")
            ),
            [&before.push_reg_id],
            |r| (0..SEARCH_COLUMNS.len()).map(|i| r.get(i)).collect(),
        )
        .expect("the installation's search row");
    assert_eq!(
        search,
        index::installation_search(before).to_vec(),
        "update_installation_from: the stored search row is not that of `before`"
    );
}

/// [`stored_value_rows`] in key order (name, item, field).
#[cfg(any(test, debug_assertions))]
fn stored_rows_in_key_order(conn: &Connection, table: &str, owner_column: &str, owner: &str) -> Vec<ValueRow> {
    by_value_key(stored_value_rows(conn, table, owner_column, owner).expect("reading the stored value rows"))
}

/// Value rows in key order (name, item, field).
#[cfg(any(test, debug_assertions))]
fn by_value_key(mut rows: Vec<ValueRow>) -> Vec<ValueRow> {
    rows.sort_by(|a, b| (&a.name, a.item, &a.field).cmp(&(&b.name, b.item, &b.field)));
    rows
}

/// Writes an installation's `installation_search` row (when it differs from the stored one).
fn write_search_row(conn: &Connection, inst: &Installation) -> StoreResult<()> {
    let account = id(inst.account_id);
    let owner = inst.push_reg_id.as_str();
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12] = index::installation_search(inst);
    execute(
        conn,
        "INSERT INTO installation_search (account_id, push_reg_id, os_lower, \
         device_manufacturer_lower, device_model_lower, device_name_lower, language_lower, \
         device_timezone_offset_lower, application_user_id_lower, os_version_lower, \
         app_version_lower, sdk_version_lower, os_version_key, app_version_key, sdk_version_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT (push_reg_id) DO UPDATE SET os_lower = excluded.os_lower, \
         device_manufacturer_lower = excluded.device_manufacturer_lower, \
         device_model_lower = excluded.device_model_lower, device_name_lower = excluded.device_name_lower, \
         language_lower = excluded.language_lower, \
         device_timezone_offset_lower = excluded.device_timezone_offset_lower, \
         application_user_id_lower = excluded.application_user_id_lower, \
         os_version_lower = excluded.os_version_lower, app_version_lower = excluded.app_version_lower, \
         sdk_version_lower = excluded.sdk_version_lower, os_version_key = excluded.os_version_key, \
         app_version_key = excluded.app_version_key, sdk_version_key = excluded.sdk_version_key \
         WHERE (os_lower, device_manufacturer_lower, device_model_lower, device_name_lower, \
         language_lower, device_timezone_offset_lower, application_user_id_lower, os_version_lower, \
         app_version_lower, sdk_version_lower, os_version_key, app_version_key, sdk_version_key) \
         IS NOT (excluded.os_lower, excluded.device_manufacturer_lower, excluded.device_model_lower, \
         excluded.device_name_lower, excluded.language_lower, excluded.device_timezone_offset_lower, \
         excluded.application_user_id_lower, excluded.os_version_lower, excluded.app_version_lower, \
         excluded.sdk_version_lower, excluded.os_version_key, excluded.app_version_key, \
         excluded.sdk_version_key)",
        params![account, owner, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12],
    )?;
    debug_assert_eq!(SEARCH_COLUMNS.len(), 13);
    Ok(())
}

/// Fills the index for every person and installation stored before it existed (run by the
/// migration to [`INDEX_MIGRATION`], in its transaction), a page at a time.
pub(crate) fn backfill(conn: &Connection) -> StoreResult<()> {
    let accounts: Vec<Uuid> = query_all(conn, "SELECT id FROM accounts ORDER BY id", [], |r| uuid_at(r, 0))?;
    for account in accounts {
        let mut after = None;
        loop {
            let page = sql::persons_page(conn, account, after, MAX_PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for person in &page {
                index_person(conn, person, Stored::Nothing)?;
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = sql::installations_page(conn, account, after.as_deref(), MAX_PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.push_reg_id.clone());
            for inst in &page {
                index_installation(conn, inst, Stored::Nothing)?;
            }
        }
    }
    Ok(())
}

fn sql_value(b: &Bind) -> StoreResult<SqlValue> {
    Ok(match b {
        Bind::Text(s) => SqlValue::Text(s.clone()),
        Bind::Int(n) => SqlValue::Integer(*n),
        Bind::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Bind::TextList(v) => SqlValue::Text(json(v)?),
        Bind::IntList(v) => SqlValue::Text(json(v)?),
    })
}

/// Runs a translated statement (not cached: its text depends on the filter).
fn run<T>(conn: &Connection, st: &Statement, decode: fn(&Row<'_>) -> rusqlite::Result<T>) -> StoreResult<Vec<T>> {
    let values = st.binds.iter().map(sql_value).collect::<StoreResult<Vec<_>>>()?;
    let mut stmt = conn.prepare(&st.sql).map_err(map_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(values), decode)
        .map_err(map_err)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(map_err)
}

fn count_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, i64>(idx)?.max(0) as u64)
}

/// Persons of the account by id, with their phones, emails and tags, in the order of `ids`: a
/// few statements for the whole list (a page of search results, a preview's sample).
fn persons_by_ids(conn: &Connection, account_id: Uuid, ids: &[Uuid]) -> StoreResult<Vec<Person>> {
    let mut by_id = persons_found(conn, account_id, ids)?;
    ids.iter()
        .map(|person_id| {
            // Inside one transaction the person of a matching row exists.
            by_id
                .remove(person_id)
                .ok_or_else(|| StoreError::Other(format!("person {person_id} of a matching row is missing")))
        })
        .collect()
}

/// Person ids as one JSON list, for `IN (SELECT value FROM json_each(?))`.
fn id_list(ids: &[Uuid]) -> StoreResult<String> {
    json(&ids.iter().map(|p| id(*p)).collect::<Vec<_>>())
}

/// The persons of the account among `ids` that exist, by id, with their phones, emails and tags.
pub(crate) fn persons_found(conn: &Connection, account_id: Uuid, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, Person>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let account = id(account_id);
    let list = id_list(ids)?;
    let found = query_all(
        conn,
        concat!(
            "SELECT ",
            roster_store::person_columns!(),
            " FROM persons WHERE +account_id = ?1 AND id IN (SELECT value FROM json_each(?2))"
        ),
        params![account, list],
        rows::person,
    )?;
    // `+account_id`: the id lists drive the lookups (primary keys), not the account's indexes.
    let mut by_id: HashMap<Uuid, Person> = found.into_iter().map(|p| (p.id, p)).collect();
    let child = |sql: &str| -> StoreResult<HashMap<Uuid, Vec<String>>> {
        let pairs = query_all(conn, sql, params![account, list], |r| Ok((uuid_at(r, 0)?, r.get(1)?)))?;
        let mut grouped: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (person, value) in pairs {
            grouped.entry(person).or_default().push(value);
        }
        Ok(grouped)
    };
    let mut phones = child(
        "SELECT person_id, number FROM person_phones WHERE +account_id = ?1 \
         AND person_id IN (SELECT value FROM json_each(?2)) ORDER BY person_id, position",
    )?;
    let mut emails = child(
        "SELECT person_id, address FROM person_emails WHERE +account_id = ?1 \
         AND person_id IN (SELECT value FROM json_each(?2)) ORDER BY person_id, position",
    )?;
    let mut tags = child(
        "SELECT person_id, tag FROM person_tags WHERE +account_id = ?1 \
         AND person_id IN (SELECT value FROM json_each(?2))",
    )?;
    for (person_id, p) in &mut by_id {
        p.phones = phones.remove(person_id).unwrap_or_default();
        p.emails = emails.remove(person_id).unwrap_or_default();
        p.tags = tags.remove(person_id).unwrap_or_default().into_iter().collect();
    }
    Ok(by_id)
}

/// The installations of the account's persons `ids` (every application), by owner, each
/// owner's oldest first: a page of search results, a preview's sample, the persons an audience
/// index refresh reads. `+account_id`: the id list drives the lookups (owner index).
pub(crate) fn installations_of_persons(
    conn: &Connection,
    account_id: Uuid,
    ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, Vec<Installation>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = id_list(ids)?;
    let found = query_all(
        conn,
        concat!(
            "SELECT ",
            roster_store::installation_columns!(),
            " FROM installations WHERE person_id IN (SELECT value FROM json_each(?2)) AND +account_id = ?1 \
             ORDER BY person_id, created_at, push_reg_id"
        ),
        params![id(account_id), list],
        rows::installation,
    )?;
    Ok(by_owner(found))
}

/// Installations grouped by owner, in the order given.
pub(crate) fn by_owner(installations: Vec<Installation>) -> HashMap<Uuid, Vec<Installation>> {
    let mut out: HashMap<Uuid, Vec<Installation>> = HashMap::new();
    for inst in installations {
        out.entry(inst.person_id).or_default().push(inst);
    }
    out
}

/// The preview's sample for persons `ids` (chosen by the in-memory index) as this transaction
/// sees them, each with its matching installations of the scope; `None` if one of them does not
/// exist here or has no matching installation here (the index saw a later commit than this
/// transaction).
///
/// The matching installations are picked with `Filter::matches`, the reference semantics that
/// the SQL translation and the index are both tested against, over the persons' installations
/// read by owner: `translate::preview_sample_installations` evaluates the whole filter in SQL,
/// which SQLite may drive from the filter's index rather than the few owners (measured: 40 ms
/// for a sample of 10 behind a tag matching 11,500 of 100,000 persons).
fn sample_of(conn: &Connection, scope: Scope, filter: &Filter, ids: &[Uuid]) -> StoreResult<Option<Vec<SamplePerson>>> {
    if ids.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut found = persons_found(conn, scope.account_id, ids)?;
    if found.len() != ids.len() {
        return Ok(None);
    }
    let mut installations = installations_of_persons(conn, scope.account_id, ids)?;
    let mut sample = Vec::with_capacity(ids.len());
    for person_id in ids {
        let Some(person) = found.remove(person_id) else {
            return Ok(None);
        };
        let matching: Vec<String> = installations
            .remove(person_id)
            .unwrap_or_default()
            .iter()
            .filter(|i| scope.application_id.is_none_or(|a| a == i.application_id) && filter.matches(&person, Some(i)))
            .map(|i| i.push_reg_id.clone())
            .collect();
        if matching.is_empty() {
            return Ok(None);
        }
        sample.push(SamplePerson {
            person,
            installations: matching,
        });
    }
    Ok(Some(sample))
}

/// The preview's sample by SQL: the first `sample_size` owners of matching pairs, by person id.
fn sql_sample(conn: &Connection, scope: Scope, filter: &Filter, sample_size: u32) -> StoreResult<Vec<SamplePerson>> {
    let ids = run(
        conn,
        &translate::preview_sample_people(Dialect::Sqlite, scope, filter, sample_size),
        |r| uuid_at(r, 0),
    )?;
    let pairs = run(
        conn,
        &translate::preview_sample_installations(Dialect::Sqlite, scope, filter, &ids),
        |r| Ok((uuid_at(r, 0)?, r.get::<_, String>(1)?)),
    )?;
    Ok(persons_by_ids(conn, scope.account_id, &ids)?
        .into_iter()
        .map(|person| SamplePerson {
            installations: pairs
                .iter()
                .filter(|(p, _)| *p == person.id)
                .map(|(_, r)| r.clone())
                .collect(),
            person,
        })
        .collect())
}

/// The whole preview by SQL, in the transaction's snapshot.
fn sql_preview(
    conn: &Connection,
    scope: Scope,
    filter: &Filter,
    primary_only: bool,
    sample_size: u32,
) -> StoreResult<Preview> {
    let counts = run(
        conn,
        &translate::preview_counts(Dialect::Sqlite, scope, filter, primary_only),
        |r| Ok((count_at(r, 0)?, count_at(r, 1)?, count_at(r, 2)?)),
    )?;
    let (installations, people, deliverable_installations) = counts.first().copied().unwrap_or_default();
    let sample = if sample_size > 0 && installations > 0 {
        sql_sample(conn, scope, filter, sample_size)?
    } else {
        Vec::new()
    };
    Ok(Preview {
        people,
        installations,
        deliverable_installations,
        sample,
    })
}

/// The installations among `ids` (pushRegIds in order) that still exist in this transaction and
/// belong to the scope, in the order of `ids`.
///
/// They are not checked against the filter again: the list is the audience as it matched when
/// resolution started (the index's state then), and a person who changed since keeps the
/// installations it had in it, as a snapshot would. Re-reading every owner to test the filter
/// again cost about two thirds of the resolution time (measured at 100,000 persons: 1.8 s
/// against SQL's 0.64 s for a whole application) for a race a send cannot avoid anyway (a
/// change right after resolution reaches the same person). Deliverability is checked by the
/// core per chunk, as for SQL.
fn existing_installations(conn: &Connection, scope: Scope, ids: &[String]) -> StoreResult<Vec<Installation>> {
    let list = json(&ids)?;
    // `+account_id`: the id list drives the lookups (primary key), not the account's indexes.
    let found = query_all(
        conn,
        concat!(
            "SELECT ",
            roster_store::installation_columns!(),
            " FROM installations WHERE push_reg_id IN (SELECT value FROM json_each(?2)) AND +account_id = ?1 \
             ORDER BY push_reg_id"
        ),
        params![id(scope.account_id), list],
        rows::installation,
    )?;
    Ok(found
        .into_iter()
        .filter(|i| scope.application_id.is_none_or(|a| a == i.application_id))
        .collect())
}

/// The audience by SQL over the index tables: installations after `after`, `limit` at most.
fn sql_audience(
    conn: &Connection,
    scope: Scope,
    filter: &Filter,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Installation>> {
    let page = translate::audience_page(Dialect::Sqlite, scope, filter, after, limit);
    let st = Statement {
        sql: format!(
            "SELECT {} FROM installations WHERE push_reg_id IN ({}) ORDER BY push_reg_id",
            roster_store::installation_columns!(),
            page.sql
        ),
        binds: page.binds,
    };
    run(conn, &st, rows::installation)
}

impl SqliteTx {
    /// The audience's installations after `after` (`limit` of them, fewer only at its end) from
    /// the in-memory index's list of the audience, each checked in this transaction; `None` when
    /// the index cannot give the list (then SQL resolves).
    ///
    /// The list is computed at a resolution's first chunk and kept for the next ones, so
    /// installations that come to match later are not in that walk, and those that stop
    /// matching stay in it (the audience is as of the start of resolution); those deleted since,
    /// as this transaction sees them, are skipped.
    async fn indexed_audience(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Option<Vec<Installation>>> {
        let Some(state) = self.resolution_index() else {
            return Ok(None);
        };
        // Writes of another process reach the index only by a rebuild (a write transaction's
        // batch looked when it began; the writer is busy then and this does nothing).
        state.look_for_foreign_commits();
        if !state.is_ready() {
            return Ok(None);
        }
        // The refresh reads on the index's own connection and the index may be busy: not on a
        // runtime thread.
        let (asked, owned, fresh) = (state.clone(), filter.clone(), after.is_none());
        let list = tokio::task::spawn_blocking(move || asked.audience_list(scope, &owned, fresh))
            .await
            .map_err(join_err)?;
        let list = match list {
            Ok(Some(list)) => list,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "the in-memory audience index could not list an audience; resolving with SQL");
                return Ok(None);
            }
        };
        let conn = self.conn()?;
        let ids = list.ids.as_slice();
        let mut at = after.map_or(0, |after| ids.partition_point(|r| r.as_str() <= after));
        let mut out = Vec::with_capacity(limit.min(ids.len() - at));
        // Never fewer than `limit` while ids remain: a short chunk ends the resolution.
        while out.len() < limit && at < ids.len() {
            let take = (limit - out.len()).min(ids.len() - at);
            out.extend(existing_installations(conn, scope, &ids[at..at + take])?);
            at += take;
        }
        if at >= ids.len() {
            state.forget_list(&list);
        }
        Ok(Some(out))
    }
}

fn segment_row(row: &Row<'_>) -> rusqlite::Result<Segment> {
    Ok(Segment {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        filter: json_at(row, 4)?,
        valid: bool_at(row, 5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

const SEGMENT_COLUMNS: &str = "account_id, id, name, description, filter, valid, created_at, updated_at";

#[async_trait]
impl AudienceTx for SqliteTx {
    async fn preview(
        &mut self,
        scope: Scope,
        filter: &Filter,
        primary_only: bool,
        sample_size: u32,
    ) -> StoreResult<Preview> {
        if let Some(state) = self.audience_index().cloned() {
            // Writes of another process reach the index only by a rebuild.
            state.look_for_foreign_commits();
        }
        if let Some(state) = self.audience_index().filter(|s| s.is_ready()).cloned() {
            // The refresh reads on the index's own connection and the index may be busy: not on
            // a runtime thread.
            let (asked, owned) = (state.clone(), filter.clone());
            let answer =
                tokio::task::spawn_blocking(move || asked.answer(scope, &owned, primary_only, sample_size as usize))
                    .await
                    .map_err(join_err)?;
            match answer {
                Ok(Some(answer)) => {
                    let conn = self.conn()?;
                    let sample = match sample_of(conn, scope, filter, &answer.sample)? {
                        Some(sample) => sample,
                        // A sampled person is not in this transaction's snapshot.
                        None => sql_sample(conn, scope, filter, sample_size)?,
                    };
                    return Ok(Preview {
                        people: answer.counts.people,
                        installations: answer.counts.installations,
                        deliverable_installations: answer.counts.deliverable_installations,
                        sample,
                    });
                }
                Ok(None) => state.count_fallback(),
                Err(e) => {
                    state.count_fallback();
                    tracing::warn!(error = %e, "the in-memory audience index could not answer; previewing with SQL");
                }
            }
        }
        sql_preview(self.conn()?, scope, filter, primary_only, sample_size)
    }

    async fn search_people(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<FoundPerson>> {
        let conn = self.conn()?;
        let ids = run(
            conn,
            &translate::search_people(Dialect::Sqlite, scope, filter, after, limit.min(MAX_PAGE)),
            |r| uuid_at(r, 0),
        )?;
        let persons = persons_by_ids(conn, scope.account_id, &ids)?;
        let mut by_person = installations_of_persons(conn, scope.account_id, &ids)?;
        Ok(persons
            .into_iter()
            .map(|person| FoundPerson {
                installations: by_person.remove(&person.id).unwrap_or_default(),
                person,
            })
            .collect())
    }

    async fn audience_page(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let limit = limit.min(MAX_PAGE);
        if let Some(found) = self.indexed_audience(scope, filter, after, limit as usize).await? {
            return Ok(found.into_iter().map(|i| i.push_reg_id).collect());
        }
        run(
            self.conn()?,
            &translate::audience_page(Dialect::Sqlite, scope, filter, after, limit),
            |r| r.get(0),
        )
    }

    async fn audience_installations(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Installation>> {
        let limit = limit.min(MAX_PAGE);
        if let Some(found) = self.indexed_audience(scope, filter, after, limit as usize).await? {
            return Ok(found);
        }
        sql_audience(self.conn()?, scope, filter, after, limit)
    }

    async fn segment(&mut self, account_id: Uuid, segment_id: Uuid) -> StoreResult<Option<Segment>> {
        query_opt(
            self.conn()?,
            &format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE account_id = ?1 AND id = ?2"),
            params![id(account_id), id(segment_id)],
            segment_row,
        )
    }

    async fn segments(&mut self, account_id: Uuid) -> StoreResult<Vec<Segment>> {
        query_all(
            self.conn()?,
            &format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE account_id = ?1 ORDER BY name, id"),
            params![id(account_id)],
            segment_row,
        )
    }

    async fn insert_segment(&mut self, s: &Segment) -> StoreResult<()> {
        execute(
            self.conn()?,
            &format!("INSERT INTO segments ({SEGMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                id(s.account_id),
                id(s.id),
                s.name,
                s.description,
                json(&s.filter)?,
                s.valid,
                s.created_at,
                s.updated_at
            ],
        )
        .map(drop)
    }

    async fn update_segment(&mut self, s: &Segment) -> StoreResult<()> {
        let changed = execute(
            self.conn()?,
            "UPDATE segments SET name = ?3, description = ?4, filter = ?5, valid = ?6, created_at = ?7, \
             updated_at = ?8 WHERE account_id = ?1 AND id = ?2",
            params![
                id(s.account_id),
                id(s.id),
                s.name,
                s.description,
                json(&s.filter)?,
                s.valid,
                s.created_at,
                s.updated_at
            ],
        )?;
        expect_one(changed)
    }

    async fn delete_segment(&mut self, account_id: Uuid, segment_id: Uuid) -> StoreResult<bool> {
        execute(
            self.conn()?,
            "DELETE FROM segments WHERE account_id = ?1 AND id = ?2",
            params![id(account_id), id(segment_id)],
        )
        .map(|n| n > 0)
    }

    async fn count_segments(&mut self, account_id: Uuid) -> StoreResult<u64> {
        count(
            self.conn()?,
            "SELECT count(*) FROM segments WHERE account_id = ?1",
            params![id(account_id)],
        )
    }

    async fn segments_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Segment>> {
        query_all(
            self.conn()?,
            &format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"),
            params![id(account_id), after.map(id).unwrap_or_default(), page_limit(limit)],
            segment_row,
        )
    }
}

/// Fills the segments of a [`Snapshot`], by (account, id).
pub(crate) fn snapshot_into(conn: &Connection, snapshot: &mut Snapshot) -> StoreResult<()> {
    snapshot.segments = query_all(
        conn,
        &format!("SELECT {SEGMENT_COLUMNS} FROM segments ORDER BY account_id, id"),
        [],
        segment_row,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segment decoder reads the columns in the table's order.
    #[test]
    fn segment_columns_are_the_table_order() {
        let conn = Connection::open_in_memory().unwrap();
        crate::apply_migrations(&conn).unwrap();
        let cols: Vec<String> = conn
            .prepare("PRAGMA table_info(segments)")
            .unwrap()
            .query_map([], |r| r.get("name"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cols.join(", "), SEGMENT_COLUMNS);
    }

    /// Every value row of a person is written, whatever its count (one to several multi-row
    /// statements of 8, 4, 2 and 1 rows), and exactly once.
    #[test]
    fn value_rows_are_written_in_chunks() {
        let conn = Connection::open_in_memory().unwrap();
        crate::apply_migrations(&conn).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let account = roster_model::Account {
            id: Uuid::new_v4(),
            name: "a".into(),
            created_at: 1,
        };
        sql::insert_account(&conn, &account).unwrap();
        for tags in 0..20 {
            let mut person = Person::new_anonymous(account.id, 1);
            person.first_name = Some("Ana".into());
            person.tags = (0..tags).map(|k| format!("Tag{k}")).collect();
            person.custom_attributes.insert("n".into(), serde_json::json!(tags));
            sql::insert_person(&conn, &person).unwrap();
            let stored = stored_rows_in_key_order(&conn, "person_attribute_values", "person_id", &id(person.id));
            let expected = by_value_key(index::person_rows(&person));
            assert_eq!(expected.len(), 2 + tags, "{tags} tags");
            assert_eq!(stored, expected, "{tags} tags");
        }
    }

    /// Updates write only the rows that changed (SQLite rewrites every index entry of a column
    /// named in an `UPDATE`'s `SET`, changed or not, and a deleted and re-inserted row dirties
    /// a page of each of its indexes), and what is read back is still the whole new state: keys
    /// moved between positions, an address whose case changed (same unique key), tags and
    /// attributes partly changed, an installation's indexed columns changed or not.
    #[test]
    fn an_update_writes_only_what_changed() {
        use roster_model::PushServiceType;
        use roster_store_tests::fixtures::{account, application, full_person, installation, with_token};

        // A file in WAL mode without automatic checkpoints: the log frames a commit appends are
        // the pages it dirtied.
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("u.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; PRAGMA foreign_keys = ON")
            .unwrap();
        crate::apply_migrations(&conn).unwrap();
        let acc = account(1);
        let app = application(acc.id);
        sql::insert_account(&conn, &acc).unwrap();
        sql::insert_application(&conn, &app).unwrap();
        let person = full_person(acc.id);
        sql::insert_person(&conn, &person).unwrap();
        let mut inst = with_token(installation(&app, person.id, 3_000), PushServiceType::Firebase, "tok-1");
        inst.system.os = Some("Android".into());
        inst.system.app_version = Some("1.2.3".into());
        inst.custom_attributes.insert("plan".into(), serde_json::json!("Gold"));
        sql::insert_installation(&conn, &inst).unwrap();
        let changes = |f: &dyn Fn()| {
            let before = conn.total_changes();
            f();
            conn.total_changes() - before
        };
        let check = |person: &Person, inst: &Installation| {
            assert_eq!(sql::person(&conn, acc.id, person.id).unwrap().as_ref(), Some(person));
            assert_eq!(
                sql::installation(&conn, &inst.push_reg_id).unwrap().as_ref(),
                Some(inst)
            );
            let owner = id(person.id);
            assert_eq!(
                stored_rows_in_key_order(&conn, "person_attribute_values", "person_id", &owner),
                by_value_key(index::person_rows(person))
            );
            assert_eq!(
                stored_rows_in_key_order(&conn, "installation_attribute_values", "push_reg_id", &inst.push_reg_id),
                by_value_key(index::installation_rows(inst))
            );
        };

        // The pages one transaction running `f` dirtied: the log is checkpointed whole before
        // it, so the transaction starts it again.
        let pages = |f: &dyn Fn()| -> i64 {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            f();
            conn.execute_batch("COMMIT").unwrap();
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .unwrap()
        };

        // Nothing but the version and times changed: one row each, and one page (each table
        // and index of this small store is one page: rewriting every index entry of the row
        // would dirty six for the installation).
        let mut p = person.clone();
        p.version += 1;
        p.updated_at += 1;
        assert_eq!(changes(&|| sql::update_person(&conn, &p).unwrap()), 1);
        p.version += 1;
        assert_eq!(pages(&|| sql::update_person(&conn, &p).unwrap()), 1);
        let mut i = inst.clone();
        i.last_seen_at += 1;
        assert_eq!(changes(&|| sql::update_installation(&conn, &i).unwrap()), 1);
        i.last_seen_at += 1;
        assert_eq!(pages(&|| sql::update_installation(&conn, &i).unwrap()), 1);
        check(&p, &i);

        // One attribute: the person's row, and its value row rewritten in place (an UPDATE, not
        // a DELETE and an INSERT).
        p.custom_attributes.insert("count".into(), serde_json::json!(4));
        assert_eq!(changes(&|| sql::update_person(&conn, &p).unwrap()), 2);
        check(&p, &i);

        // Phones swapped, the first address's case changed (the same unique email key), one tag
        // replaced, the external id changed: each moved key deleted before any is inserted.
        p.phones.swap(0, 1);
        p.emails[0] = p.emails[0].to_lowercase();
        p.tags.remove("Beta");
        p.tags.insert("gamma".into());
        p.external_user_id = Some("someone-else".into());
        sql::update_person(&conn, &p).unwrap();
        check(&p, &i);
        // Keys removed and added at the end.
        p.phones.pop();
        p.emails.push("c@x.org".into());
        p.tags.clear();
        p.external_user_id = None;
        sql::update_person(&conn, &p).unwrap();
        check(&p, &i);

        // The installation's token and primary flag (indexed) and an attribute change; then its
        // owner.
        i.push_service_token = Some("tok-2".into());
        i.is_primary = true;
        i.system.app_version = Some("1.10.0".into());
        i.custom_attributes.insert("plan".into(), serde_json::json!("Silver"));
        sql::update_installation(&conn, &i).unwrap();
        check(&p, &i);
        // The push service and its provider together (the provider CHECK reads both).
        i.push_service_type = Some(PushServiceType::Apns);
        i.push_service_token = Some("ab12".into());
        sql::update_installation(&conn, &i).unwrap();
        check(&p, &i);
        let other = roster_store_tests::fixtures::person(acc.id);
        sql::insert_person(&conn, &other).unwrap();
        i.person_id = other.id;
        sql::update_installation(&conn, &i).unwrap();
        assert_eq!(sql::installation(&conn, &i.push_reg_id).unwrap(), Some(i.clone()));

        // The same kinds of change written from the stored state (`update_*_from`, which reads
        // nothing first; in debug builds the store asserts that `before` is what is stored):
        // the result is the whole new state again.
        let before = sql::person(&conn, acc.id, p.id).unwrap().unwrap();
        let mut after = before.clone();
        after.version += 1;
        after.tags.insert("delta".into());
        after.tags.remove("gamma");
        after.phones.reverse();
        after.external_user_id = None;
        after.custom_attributes.insert("count".into(), serde_json::json!(5));
        after
            .custom_attributes
            .insert("added".into(), serde_json::json!("Value"));
        sql::update_person_from(&conn, &before, &after).unwrap();
        let stored = sql::installation(&conn, &i.push_reg_id).unwrap().unwrap();
        let mut j = stored.clone();
        j.system.app_version = Some("2.0.0".into());
        j.custom_attributes.remove("plan");
        j.person_id = p.id;
        j.last_seen_at += 5;
        sql::update_installation_from(&conn, &stored, &j).unwrap();
        check(&after, &j);
        // Nothing indexed, searched or attributed changed: the row alone is written.
        let mut k = j.clone();
        k.last_seen_at += 1;
        assert_eq!(changes(&|| sql::update_installation_from(&conn, &j, &k).unwrap()), 1);
        check(&after, &k);
        let mut q = after.clone();
        q.version += 1;
        assert_eq!(changes(&|| sql::update_person_from(&conn, &after, &q).unwrap()), 1);
        check(&q, &k);
    }

    /// Debug builds catch a caller that gives `update_person_from` a person other than the
    /// stored one (its difference would be written against the wrong rows).
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "`before` is not the stored person")]
    fn an_update_from_a_stale_person_is_caught_in_debug_builds() {
        use roster_store_tests::fixtures::{account, application, full_person};
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        crate::apply_migrations(&conn).unwrap();
        let acc = account(1);
        sql::insert_account(&conn, &acc).unwrap();
        sql::insert_application(&conn, &application(acc.id)).unwrap();
        let person = full_person(acc.id);
        sql::insert_person(&conn, &person).unwrap();
        let mut stale = person.clone();
        stale.tags.insert("never-stored".into());
        let mut after = stale.clone();
        after.version += 1;
        let _ = sql::update_person_from(&conn, &stale, &after);
    }
}
