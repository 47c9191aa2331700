//! [`AudienceTx`] on PostgreSQL, and the maintenance of the audience index
//! (`migrations/0003_audience.sql`, rows defined by `roster_store::audience::index`): the SQLite
//! backend's behaviour, in as few round trips as PostgreSQL allows.
//!
//! A person or installation write rewrites its index rows in ONE extra statement: the new rows
//! travel as arrays, a data-modifying CTE deletes the rows that are no longer there and upserts
//! the others, and an unchanged row is not written at all (`ON CONFLICT ... WHERE ... IS DISTINCT
//! FROM`), so the frequent installation updates that change nothing indexed (`lastSeenAt`, a
//! token) cost a round trip but no write. Rows go with their owner (`ON DELETE CASCADE`).

use std::collections::HashMap;

use async_trait::async_trait;
use roster_model::filter::Filter;
use roster_model::{Installation, Person};
use roster_store::audience::index::{self, ValueRow};
use roster_store::audience::translate::{self, Bind, Dialect, Statement};
use roster_store::audience::{FoundPerson, Preview, SamplePerson, Scope, Segment};
use roster_store::columns::{id, json};
use roster_store::{
    AudienceTx, MAX_PAGE, Snapshot, StoreError, StoreResult, installation_columns, page_limit, person_columns,
};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::map_err;
use crate::rows::{self, get, json_at, uuid_at};
use crate::sql::{Conn, PgQuery, expect_one};
use crate::tx::PgTx;

/// The schema version that creates the index; [`backfill`] runs right after it.
pub(crate) const INDEX_MIGRATION: i64 = 3;

/// The value rows of one owner as the arrays of an `UNNEST`.
#[derive(Default)]
struct Columns {
    name: Vec<String>,
    item: Vec<i64>,
    field: Vec<String>,
    text: Vec<Option<String>>,
    lower: Vec<Option<String>>,
    num: Vec<Option<i64>>,
    boolean: Vec<Option<bool>>,
}

impl Columns {
    fn push(&mut self, r: ValueRow) {
        self.name.push(r.name);
        self.item.push(r.item);
        self.field.push(r.field);
        self.text.push(r.text);
        self.lower.push(r.lower);
        self.num.push(r.num);
        self.boolean.push(r.boolean);
    }

    fn of(rows: Vec<ValueRow>) -> Columns {
        let mut c = Columns::default();
        for r in rows {
            c.push(r);
        }
        c
    }

    fn bind(self, q: PgQuery) -> PgQuery {
        q.bind(self.name)
            .bind(self.item)
            .bind(self.field)
            .bind(self.text)
            .bind(self.lower)
            .bind(self.num)
            .bind(self.boolean)
    }
}

/// The CTEs (the list after `WITH`, ending in a comma) that make a `*_attribute_values` table
/// hold exactly the rows `$3..$9` for owner `$2` of account `$1`, writing only what changed.
macro_rules! replace_rows {
    ($table:literal, $owner:literal) => {
        concat!(
            "new_rows AS (SELECT * FROM UNNEST($3::text[], $4::int8[], $5::text[], $6::text[], \
             $7::text[], $8::int8[], $9::bool[]) AS r (name, item, field, value_text, value_lower, \
             value_num, value_bool)), \
             gone AS (DELETE FROM ",
            $table,
            " v WHERE v.account_id = $1 AND v.",
            $owner,
            " = $2 AND NOT EXISTS (SELECT 1 FROM new_rows r WHERE r.name = v.name \
             AND r.item = v.item AND r.field = v.field)), \
             put AS (INSERT INTO ",
            $table,
            " (account_id, ",
            $owner,
            ", name, item, field, value_text, value_lower, value_num, value_bool) \
             SELECT $1, $2, name, item, field, value_text, value_lower, value_num, value_bool FROM new_rows \
             ON CONFLICT (",
            $owner,
            ", name, item, field) DO UPDATE SET value_text = EXCLUDED.value_text, \
             value_lower = EXCLUDED.value_lower, value_num = EXCLUDED.value_num, \
             value_bool = EXCLUDED.value_bool \
             WHERE (",
            $table,
            ".value_text, ",
            $table,
            ".value_lower, ",
            $table,
            ".value_num, ",
            $table,
            ".value_bool) IS DISTINCT FROM (EXCLUDED.value_text, EXCLUDED.value_lower, \
             EXCLUDED.value_num, EXCLUDED.value_bool)) "
        )
    };
}

/// Makes a person's index rows those of its current data (insert and update alike).
pub(crate) async fn replace_person(c: &mut Conn, person: &Person) -> StoreResult<()> {
    let q = sqlx::query(concat!(
        "WITH ",
        replace_rows!("person_attribute_values", "person_id"),
        "SELECT 1"
    ))
    .bind(id(person.account_id))
    .bind(id(person.id));
    c.execute(Columns::of(index::person_rows(person)).bind(q))
        .await
        .map(drop)
}

const SEARCH_UPSERT: &str = "INSERT INTO installation_search (account_id, push_reg_id, os_lower, \
     device_manufacturer_lower, device_model_lower, device_name_lower, language_lower, \
     device_timezone_offset_lower, application_user_id_lower, os_version_lower, app_version_lower, \
     sdk_version_lower, os_version_key, app_version_key, sdk_version_key) ";

const SEARCH_CONFLICT: &str = " ON CONFLICT (push_reg_id) DO UPDATE SET os_lower = EXCLUDED.os_lower, \
     device_manufacturer_lower = EXCLUDED.device_manufacturer_lower, \
     device_model_lower = EXCLUDED.device_model_lower, device_name_lower = EXCLUDED.device_name_lower, \
     language_lower = EXCLUDED.language_lower, \
     device_timezone_offset_lower = EXCLUDED.device_timezone_offset_lower, \
     application_user_id_lower = EXCLUDED.application_user_id_lower, \
     os_version_lower = EXCLUDED.os_version_lower, app_version_lower = EXCLUDED.app_version_lower, \
     sdk_version_lower = EXCLUDED.sdk_version_lower, os_version_key = EXCLUDED.os_version_key, \
     app_version_key = EXCLUDED.app_version_key, sdk_version_key = EXCLUDED.sdk_version_key \
     WHERE (installation_search.os_lower, installation_search.device_manufacturer_lower, \
     installation_search.device_model_lower, installation_search.device_name_lower, \
     installation_search.language_lower, installation_search.device_timezone_offset_lower, \
     installation_search.application_user_id_lower, installation_search.os_version_lower, \
     installation_search.app_version_lower, installation_search.sdk_version_lower, \
     installation_search.os_version_key, installation_search.app_version_key, \
     installation_search.sdk_version_key) IS DISTINCT FROM (EXCLUDED.os_lower, \
     EXCLUDED.device_manufacturer_lower, EXCLUDED.device_model_lower, EXCLUDED.device_name_lower, \
     EXCLUDED.language_lower, EXCLUDED.device_timezone_offset_lower, \
     EXCLUDED.application_user_id_lower, EXCLUDED.os_version_lower, EXCLUDED.app_version_lower, \
     EXCLUDED.sdk_version_lower, EXCLUDED.os_version_key, EXCLUDED.app_version_key, \
     EXCLUDED.sdk_version_key)";

/// Makes an installation's index rows (value rows and search row) those of its current data,
/// in one statement (insert and update alike).
pub(crate) async fn replace_installation(c: &mut Conn, inst: &Installation) -> StoreResult<()> {
    c.execute(replace_installation_query(inst, "")).await.map(drop)
}

/// The statement of [`replace_installation`], its parameters `$1..$22`; `first_cte`, when not
/// empty, is one more data-modifying CTE (`name AS (...), `) run in the same statement with
/// parameters from `$23` on, bound by the caller after these.
pub(crate) fn replace_installation_query(inst: &Installation, first_cte: &str) -> PgQuery {
    let rows = replace_rows!("installation_attribute_values", "push_reg_id");
    let sql = format!(
        "WITH {first_cte}{rows}{SEARCH_UPSERT}VALUES ($1, $2, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22){SEARCH_CONFLICT}",
    );
    let mut q = Columns::of(index::installation_rows(inst)).bind(
        sqlx::query(AssertSqlSafe(sql))
            .bind(id(inst.account_id))
            .bind(inst.push_reg_id.clone()),
    );
    for v in index::installation_search(inst) {
        q = q.bind(v);
    }
    q
}

/// The statement inserting the value rows of new owners (none of them has rows yet); `None`
/// when they have no rows at all (a new anonymous person: no round trip for nothing).
fn insert_new_rows(
    table: &'static str,
    owner: &'static str,
    owners: Vec<(String, String, Vec<ValueRow>)>,
) -> Option<PgQuery> {
    if owners.iter().all(|(_, _, rows)| rows.is_empty()) {
        return None;
    }
    let mut accounts = Vec::new();
    let mut ids = Vec::new();
    let mut cols = Columns::default();
    for (account, owner_id, rows) in owners {
        for r in rows {
            accounts.push(account.clone());
            ids.push(owner_id.clone());
            cols.push(r);
        }
    }
    let sql = format!(
        "INSERT INTO {table} (account_id, {owner}, name, item, field, value_text, value_lower, value_num, \
         value_bool) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], \
         $6::text[], $7::text[], $8::int8[], $9::bool[])"
    );
    Some(cols.bind(sqlx::query(AssertSqlSafe(sql)).bind(accounts).bind(ids)))
}

/// The statements writing the index rows of new persons.
pub(crate) fn new_person_statements(persons: &[Person]) -> Vec<PgQuery> {
    let owners = persons
        .iter()
        .map(|p| (id(p.account_id), id(p.id), index::person_rows(p)))
        .collect();
    insert_new_rows("person_attribute_values", "person_id", owners)
        .into_iter()
        .collect()
}

/// The statements writing the index rows of new installations.
pub(crate) fn new_installation_statements(insts: &[Installation]) -> Vec<PgQuery> {
    let owners = insts
        .iter()
        .map(|i| (id(i.account_id), i.push_reg_id.clone(), index::installation_rows(i)))
        .collect();
    let mut search: Vec<Vec<Option<String>>> = (0..13).map(|_| Vec::with_capacity(insts.len())).collect();
    for inst in insts {
        for (column, value) in search.iter_mut().zip(index::installation_search(inst)) {
            column.push(value);
        }
    }
    let mut q = sqlx::query(
        "INSERT INTO installation_search (account_id, push_reg_id, os_lower, device_manufacturer_lower, \
         device_model_lower, device_name_lower, language_lower, device_timezone_offset_lower, \
         application_user_id_lower, os_version_lower, app_version_lower, sdk_version_lower, \
         os_version_key, app_version_key, sdk_version_key) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
         $14::text[], $15::text[])",
    )
    .bind(insts.iter().map(|i| id(i.account_id)).collect::<Vec<_>>())
    .bind(insts.iter().map(|i| i.push_reg_id.clone()).collect::<Vec<_>>());
    for column in search {
        q = q.bind(column);
    }
    let mut statements = vec![q];
    statements.extend(insert_new_rows("installation_attribute_values", "push_reg_id", owners));
    statements
}

/// Writes the index rows of new persons (bulk insert paths).
pub(crate) async fn index_new_persons(c: &mut Conn, persons: &[Person]) -> StoreResult<()> {
    if persons.is_empty() {
        return Ok(());
    }
    for q in new_person_statements(persons) {
        c.execute(q).await?;
    }
    Ok(())
}

/// Writes the index rows of new installations (bulk insert paths).
pub(crate) async fn index_new_installations(c: &mut Conn, insts: &[Installation]) -> StoreResult<()> {
    if insts.is_empty() {
        return Ok(());
    }
    for q in new_installation_statements(insts) {
        c.execute(q).await?;
    }
    Ok(())
}

/// Rows read per statement while backfilling.
const BACKFILL_PAGE: i64 = 2000;

/// Fills the index for every person and installation stored before it existed (run by the
/// migration to [`INDEX_MIGRATION`], in its transaction), a page at a time.
pub(crate) async fn backfill(tx: &mut sqlx::PgConnection) -> StoreResult<()> {
    let mut after = String::new();
    loop {
        let rows = sqlx::query(concat!(
            "SELECT ",
            person_columns!(),
            " FROM persons WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.clone())
        .bind(BACKFILL_PAGE)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let mut persons = rows.iter().map(rows::person).collect::<StoreResult<Vec<Person>>>()?;
        let Some(last) = persons.last() else { break };
        after = id(last.id);
        let ids: Vec<String> = persons.iter().map(|p| id(p.id)).collect();
        let tags = sqlx::query("SELECT person_id, tag FROM person_tags WHERE person_id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let mut by_person: HashMap<Uuid, Vec<String>> = HashMap::new();
        for row in &tags {
            by_person.entry(uuid_at(row, 0)?).or_default().push(get(row, 1)?);
        }
        for p in &mut persons {
            p.tags = by_person.remove(&p.id).unwrap_or_default().into_iter().collect();
        }
        for q in new_person_statements(&persons) {
            q.execute(&mut *tx).await.map_err(map_err)?;
        }
    }
    let mut after = String::new();
    loop {
        let rows = sqlx::query(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE push_reg_id > $1 ORDER BY push_reg_id LIMIT $2"
        ))
        .bind(after.clone())
        .bind(BACKFILL_PAGE)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let insts = rows
            .iter()
            .map(rows::installation)
            .collect::<StoreResult<Vec<Installation>>>()?;
        let Some(last) = insts.last() else { break };
        after = last.push_reg_id.clone();
        for q in new_installation_statements(&insts) {
            q.execute(&mut *tx).await.map_err(map_err)?;
        }
    }
    Ok(())
}

/// A translated statement, ready to run (not kept prepared: its text depends on the filter).
fn query_of(st: &Statement) -> PgQuery {
    let mut q = sqlx::query(AssertSqlSafe(st.sql.clone())).persistent(false);
    for b in &st.binds {
        q = match b {
            Bind::Text(s) => q.bind(s.clone()),
            Bind::Int(n) => q.bind(*n),
            Bind::Bool(v) => q.bind(*v),
            Bind::TextList(v) => q.bind(v.clone()),
            Bind::IntList(v) => q.bind(v.clone()),
        };
    }
    q
}

fn count_at(row: &PgRow, idx: usize) -> StoreResult<u64> {
    let n: i64 = get(row, idx)?;
    u64::try_from(n).map_err(|_| StoreError::Other(format!("negative count {n}")))
}

fn three_counts(row: &PgRow) -> StoreResult<(u64, u64, u64)> {
    Ok((count_at(row, 0)?, count_at(row, 1)?, count_at(row, 2)?))
}

fn first_uuid(row: &PgRow) -> StoreResult<Uuid> {
    uuid_at(row, 0)
}

fn first_text(row: &PgRow) -> StoreResult<String> {
    get(row, 0)
}

fn person_and_text(row: &PgRow) -> StoreResult<(Uuid, String)> {
    Ok((uuid_at(row, 0)?, get(row, 1)?))
}

type Grouped = HashMap<Uuid, Vec<String>>;

fn kind_person_value(row: &PgRow) -> StoreResult<(i32, Uuid, String)> {
    Ok((get(row, 0)?, uuid_at(row, 1)?, get(row, 2)?))
}

/// Persons of the account by id, with their phones, emails and tags, in the order of `ids`.
async fn persons_by_ids(c: &mut Conn, account_id: Uuid, ids: &[Uuid]) -> StoreResult<Vec<Person>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(|p| id(*p)).collect();
    let account = id(account_id);
    let found = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                person_columns!(),
                " FROM persons WHERE account_id = $1 AND id = ANY($2)"
            ))
            .bind(account.clone())
            .bind(list.clone()),
            rows::person,
        )
        .await?;
    let mut by_id: HashMap<Uuid, Person> = found.into_iter().map(|p| (p.id, p)).collect();
    // Phones, emails and tags in one round trip: (kind, person, value), in position order.
    let keys = c
        .query_all(
            sqlx::query(
                "SELECT 0 AS kind, person_id, number, position FROM person_phones \
                 WHERE account_id = $1 AND person_id = ANY($2) \
                 UNION ALL SELECT 1, person_id, address, position FROM person_emails \
                 WHERE account_id = $1 AND person_id = ANY($2) \
                 UNION ALL SELECT 2, person_id, tag, 0 FROM person_tags \
                 WHERE account_id = $1 AND person_id = ANY($2) \
                 ORDER BY 1, 2, 4",
            )
            .bind(account)
            .bind(list),
            kind_person_value,
        )
        .await?;
    let (mut phones, mut emails, mut tags): (Grouped, Grouped, Grouped) = Default::default();
    for (kind, person, value) in keys {
        let group = match kind {
            0 => &mut phones,
            1 => &mut emails,
            _ => &mut tags,
        };
        group.entry(person).or_default().push(value);
    }
    let mut out = Vec::with_capacity(ids.len());
    for person_id in ids {
        let mut p = by_id
            .remove(person_id)
            .ok_or_else(|| StoreError::Other(format!("person {person_id} of a matching row is missing")))?;
        p.phones = phones.remove(person_id).unwrap_or_default();
        p.emails = emails.remove(person_id).unwrap_or_default();
        p.tags = tags.remove(person_id).unwrap_or_default().into_iter().collect();
        out.push(p);
    }
    Ok(out)
}

fn segment_row(row: &PgRow) -> StoreResult<Segment> {
    Ok(Segment {
        account_id: uuid_at(row, 0)?,
        id: uuid_at(row, 1)?,
        name: get(row, 2)?,
        description: get(row, 3)?,
        filter: json_at(row, 4)?,
        valid: get(row, 5)?,
        created_at: get(row, 6)?,
        updated_at: get(row, 7)?,
    })
}

macro_rules! segment_columns {
    () => {
        "account_id, id, name, description, filter, valid, created_at, updated_at"
    };
}

#[async_trait]
impl AudienceTx for PgTx {
    async fn preview(
        &mut self,
        scope: Scope,
        filter: &Filter,
        primary_only: bool,
        sample_size: u32,
    ) -> StoreResult<Preview> {
        let c = self.conn()?;
        let counts = c
            .query_all(
                query_of(&translate::preview_counts(
                    Dialect::Postgres,
                    scope,
                    filter,
                    primary_only,
                )),
                three_counts,
            )
            .await?;
        let (installations, people, deliverable_installations) = counts.first().copied().unwrap_or_default();
        let mut sample = Vec::new();
        if sample_size > 0 && installations > 0 {
            let ids = c
                .query_all(
                    query_of(&translate::preview_sample_people(
                        Dialect::Postgres,
                        scope,
                        filter,
                        sample_size,
                    )),
                    first_uuid,
                )
                .await?;
            let pairs = c
                .query_all(
                    query_of(&translate::preview_sample_installations(
                        Dialect::Postgres,
                        scope,
                        filter,
                        &ids,
                    )),
                    person_and_text,
                )
                .await?;
            let persons = persons_by_ids(c, scope.account_id, &ids).await?;
            for person in persons {
                let installations = pairs
                    .iter()
                    .filter(|(p, _)| *p == person.id)
                    .map(|(_, r)| r.clone())
                    .collect();
                sample.push(SamplePerson { person, installations });
            }
        }
        Ok(Preview {
            people,
            installations,
            deliverable_installations,
            sample,
        })
    }

    async fn search_people(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<FoundPerson>> {
        let c = self.conn()?;
        let ids = c
            .query_all(
                query_of(&translate::search_people(
                    Dialect::Postgres,
                    scope,
                    filter,
                    after,
                    limit.min(MAX_PAGE),
                )),
                first_uuid,
            )
            .await?;
        let persons = persons_by_ids(c, scope.account_id, &ids).await?;
        let list: Vec<String> = ids.iter().map(|p| id(*p)).collect();
        let insts = c
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    installation_columns!(),
                    " FROM installations WHERE account_id = $1 AND person_id = ANY($2) \
                     ORDER BY person_id, created_at, push_reg_id"
                ))
                .bind(id(scope.account_id))
                .bind(list),
                rows::installation,
            )
            .await?;
        let mut by_person: HashMap<Uuid, Vec<Installation>> = HashMap::new();
        for inst in insts {
            by_person.entry(inst.person_id).or_default().push(inst);
        }
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
        self.conn()?
            .query_all(
                query_of(&translate::audience_page(
                    Dialect::Postgres,
                    scope,
                    filter,
                    after,
                    limit.min(MAX_PAGE),
                )),
                first_text,
            )
            .await
    }

    async fn audience_installations(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Installation>> {
        let page = translate::audience_page(Dialect::Postgres, scope, filter, after, limit.min(MAX_PAGE));
        let st = Statement {
            sql: format!(
                "SELECT {} FROM installations WHERE push_reg_id IN ({}) ORDER BY push_reg_id",
                installation_columns!(),
                page.sql
            ),
            binds: page.binds,
        };
        self.conn()?.query_all(query_of(&st), rows::installation).await
    }

    async fn segment(&mut self, account_id: Uuid, segment_id: Uuid) -> StoreResult<Option<Segment>> {
        self.conn()?
            .query_opt(
                sqlx::query(concat!(
                    "SELECT ",
                    segment_columns!(),
                    " FROM segments WHERE account_id = $1 AND id = $2"
                ))
                .bind(id(account_id))
                .bind(id(segment_id)),
                segment_row,
            )
            .await
    }

    async fn segments(&mut self, account_id: Uuid) -> StoreResult<Vec<Segment>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    segment_columns!(),
                    " FROM segments WHERE account_id = $1 ORDER BY name, id"
                ))
                .bind(id(account_id)),
                segment_row,
            )
            .await
    }

    async fn insert_segment(&mut self, s: &Segment) -> StoreResult<()> {
        let q = sqlx::query(concat!(
            "INSERT INTO segments (",
            segment_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(id(s.account_id))
        .bind(id(s.id))
        .bind(s.name.clone())
        .bind(s.description.clone())
        .bind(json(&s.filter)?)
        .bind(s.valid)
        .bind(s.created_at)
        .bind(s.updated_at);
        self.conn()?.execute(q).await.map(drop)
    }

    async fn update_segment(&mut self, s: &Segment) -> StoreResult<()> {
        let q = sqlx::query(
            "UPDATE segments SET name = $3, description = $4, filter = $5, valid = $6, created_at = $7, \
             updated_at = $8 WHERE account_id = $1 AND id = $2",
        )
        .bind(id(s.account_id))
        .bind(id(s.id))
        .bind(s.name.clone())
        .bind(s.description.clone())
        .bind(json(&s.filter)?)
        .bind(s.valid)
        .bind(s.created_at)
        .bind(s.updated_at);
        let changed = self.conn()?.execute(q).await?;
        expect_one(changed)
    }

    async fn delete_segment(&mut self, account_id: Uuid, segment_id: Uuid) -> StoreResult<bool> {
        self.conn()?
            .execute(
                sqlx::query("DELETE FROM segments WHERE account_id = $1 AND id = $2")
                    .bind(id(account_id))
                    .bind(id(segment_id)),
            )
            .await
            .map(|n| n > 0)
    }

    async fn count_segments(&mut self, account_id: Uuid) -> StoreResult<u64> {
        self.conn()?
            .count(sqlx::query("SELECT count(*) FROM segments WHERE account_id = $1").bind(id(account_id)))
            .await
    }

    async fn segments_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Segment>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    segment_columns!(),
                    " FROM segments WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                ))
                .bind(id(account_id))
                .bind(after.map(id).unwrap_or_default())
                .bind(page_limit(limit)),
                segment_row,
            )
            .await
    }
}

/// Fills the segments of a [`Snapshot`], by (account, id).
pub(crate) async fn snapshot_into(c: &mut Conn, snapshot: &mut Snapshot) -> StoreResult<()> {
    snapshot.segments = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                segment_columns!(),
                " FROM segments ORDER BY account_id, id"
            )),
            segment_row,
        )
        .await?;
    Ok(())
}
