//! Storage primitives of audiences (management-api.md §4, §7.4 people search, §7.6 segments):
//! evaluating a filter as indexed SQL over the audience index, and the segments table. A
//! supertrait of [`Tx`](crate::Tx), so every transaction has them.
//!
//! [`index`] defines the rows every backend maintains on each person and installation write (in
//! the same transaction); [`translate`] turns a `Filter` into SQL over them, once for both
//! dialects. `Filter::matches` (roster-model) is the reference semantics.

pub mod index;
pub mod memory;
pub mod translate;

use async_trait::async_trait;
use roster_model::filter::Filter;
use roster_model::{Installation, Millis, Person};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use translate::Scope;

use crate::StoreResult;

/// A saved filter (management-api.md §7.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    pub account_id: Uuid,
    pub id: Uuid,
    /// 1–100 characters, unique per account.
    pub name: String,
    pub description: Option<String>,
    /// The filter JSON as saved.
    pub filter: Value,
    /// `false` once an attribute the filter uses was deleted.
    pub valid: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A person of a preview's sample with its matching installations (pushRegIds, oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePerson {
    pub person: Person,
    pub installations: Vec<String>,
}

/// What a segment preview answers (management-api.md §7.6), from one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Distinct owners of the matching installations.
    pub people: u64,
    /// Matching installations (the audience before deliverability).
    pub installations: u64,
    /// Those a send would use: deliverable (regEnabled and a token), and primary when asked.
    pub deliverable_installations: u64,
    /// Up to the sample size of the owners, by person id.
    pub sample: Vec<SamplePerson>,
}

/// A person found by people search, with its installations of every application of the
/// account, oldest first (the person resource of management-api.md §7.4).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundPerson {
    pub person: Person,
    pub installations: Vec<Installation>,
}

/// Audiences and segments inside one transaction. Every method filters by account.
#[async_trait]
pub trait AudienceTx: Send {
    /// Counts and sample of the pairs matching `filter` in `scope` (§7.6). Run it in a
    /// `begin_read` transaction: its statements then see one snapshot.
    async fn preview(
        &mut self,
        scope: Scope,
        filter: &Filter,
        primary_only: bool,
        sample_size: u32,
    ) -> StoreResult<Preview>;

    /// People search (§7.4, §4.2): the persons with a matching pair (or, without installations in
    /// scope, matching with every installation field absent), by id, after `after`, at most
    /// `limit` (capped at [`MAX_PAGE`](crate::MAX_PAGE)).
    async fn search_people(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<FoundPerson>>;

    /// The pushRegIds of the matching installations of `scope`, in pushRegId order, after
    /// `after`, at most `limit` (capped at [`MAX_PAGE`](crate::MAX_PAGE)): an audience walked
    /// in chunks.
    async fn audience_page(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<String>>;

    /// The matching installations of `scope` themselves, as [`AudienceTx::audience_page`] walks
    /// them (pushRegId order, after `after`, at most `limit` capped at
    /// [`MAX_PAGE`](crate::MAX_PAGE)), in one statement: a chunk of a `MULTIPLE` send
    /// (management-api.md §6.1) read without evaluating the filter row by row.
    async fn audience_installations(
        &mut self,
        scope: Scope,
        filter: &Filter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Installation>>;

    /// A segment of the account.
    async fn segment(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Segment>>;
    /// The segments of the account, by name (code-point order).
    async fn segments(&mut self, account_id: Uuid) -> StoreResult<Vec<Segment>>;
    /// Inserts a segment (`Conflict(Other("segments_account_name_key"))` if the name is taken).
    async fn insert_segment(&mut self, segment: &Segment) -> StoreResult<()>;
    /// Writes every field of an existing segment (`NotFound` if there is none; a taken name is a
    /// conflict as for insert).
    async fn update_segment(&mut self, segment: &Segment) -> StoreResult<()>;
    /// Deletes a segment; whether it existed.
    async fn delete_segment(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<bool>;

    /// How many segments the account has (export, `roster migrate-store`).
    async fn count_segments(&mut self, account_id: Uuid) -> StoreResult<u64>;
    /// A keyset page of the account's segments by id, after `after`, at most `limit` (capped at
    /// [`MAX_PAGE`](crate::MAX_PAGE)), as [`Tx`](crate::Tx)'s `*_page` methods: export walks the
    /// table with it, and [`AudienceTx::insert_segment`] stores each row as is.
    async fn segments_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Segment>>;
}

/// The name of the unique constraint on (account, segment name), as a `Constraint::Other`.
pub const SEGMENT_NAME_CONSTRAINT: &str = "segments_account_name_key";
