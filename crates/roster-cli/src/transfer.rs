//! `roster export`, `roster import` and `roster migrate-store`: a whole store moved between
//! backends (SQLite <-> PostgreSQL) with nothing lost, through one streaming core.
//!
//! The core reads a store kind by kind in dependency order (accounts, applications, JWT keys,
//! API keys, attribute definitions, persons, installations, merge log, segments, push bulks,
//! messages, audience jobs, delivery records, idempotency records), each kind account by
//! account in keyset pages of [`PAGE`] rows ordered by primary key, all inside one read
//! transaction (one consistent state, also while `roster serve` writes), and hands every row as a
//! [`Record`] to a sink: a dump file (`export`) or the insert methods of another store (`import`
//! reads the records back from a dump; `migrate-store` skips the file). Memory stays flat: one
//! page at a time, whatever the size of the store.
//!
//! The audience index (the value tables a filter is evaluated on) is not dumped: it is derived
//! from persons and installations, and the target store rebuilds it as they are inserted.
//!
//! The dump is JSON lines. Line 1 is the [`Header`]: `{"format":"roster-dump","version":2,
//! "sourceBackend":…,"exportedAt":…,"counts":{…}}`. Every further line is one row,
//! `{"kind":"person",…}`, with the domain object's fields (the store's own serde form, so ids,
//! versions, timestamps, hashes and JSON values travel exactly). A dump holds secrets (JWT key
//! secrets, provider credentials, API key hashes): the file is created readable by its owner only.
//!
//! Version 1 dumps (written before segments and push rows were carried) are still read: they
//! simply hold no rows of those kinds.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use roster_model::{
    Account, ApiKey, Application, AttributeDefinition, AttributeScope, Installation, JwtKey, MergeLogEntry, Person,
};
use roster_server::settings::redact_url;
use roster_server::store::open_command_store;
use roster_store::audience::Segment;
use roster_store::push::{AudienceJob, Bulk, Delivery, IdempotencyRecord, Message, PushTable};
use roster_store::{RowKind, Store, StoreResult, Tx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cli::{ExportArgs, ImportArgs, MigrateStoreArgs};
use crate::output;

/// The `format` of a dump's header.
pub const FORMAT: &str = "roster-dump";
/// The dump version this build writes.
pub const VERSION: u64 = 2;
/// The oldest dump version this build reads (version 1 has no segment or push rows).
pub const OLDEST_VERSION: u64 = 1;
/// Rows per keyset page read from a store.
pub const PAGE: u32 = 500;

/// What a dump holds, in the order it holds it: accounts, then the kinds of rows an account owns
/// ([`RowKind`], dependency order), then segments and the push tables ([`PushTable`], dependency
/// order: a message refers to its bulk, a job and a delivery record to their message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Account,
    Row(RowKind),
    Segment,
    Push(PushTable),
}

impl Kind {
    /// Every kind, in dependency order.
    pub fn all() -> impl Iterator<Item = Kind> {
        std::iter::once(Kind::Account)
            .chain(RowKind::ALL.into_iter().map(Kind::Row))
            .chain(std::iter::once(Kind::Segment))
            .chain(PushTable::ALL.into_iter().map(Kind::Push))
    }

    /// The kinds an account owns, in dependency order.
    fn owned() -> impl Iterator<Item = Kind> {
        Kind::all().filter(|k| *k != Kind::Account)
    }

    /// The plural for people ("API keys").
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Account => "accounts",
            Kind::Row(RowKind::Application) => "applications",
            Kind::Row(RowKind::JwtKey) => "JWT keys",
            Kind::Row(RowKind::ApiKey) => "API keys",
            Kind::Row(RowKind::AttributeDefinition) => "attribute definitions",
            Kind::Row(RowKind::Person) => "persons",
            Kind::Row(RowKind::Installation) => "installations",
            Kind::Row(RowKind::MergeLogEntry) => "merge-log entries",
            Kind::Segment => "segments",
            Kind::Push(PushTable::Bulk) => "bulks",
            Kind::Push(PushTable::Message) => "messages",
            Kind::Push(PushTable::AudienceJob) => "audience jobs",
            Kind::Push(PushTable::Delivery) => "delivery records",
            Kind::Push(PushTable::IdempotencyRecord) => "idempotency records",
        }
    }

    /// The singular for people ("API key").
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Row(RowKind::Application) => "application",
            Kind::Row(RowKind::JwtKey) => "JWT key",
            Kind::Row(RowKind::ApiKey) => "API key",
            Kind::Row(RowKind::AttributeDefinition) => "attribute definition",
            Kind::Row(RowKind::Person) => "person",
            Kind::Row(RowKind::Installation) => "installation",
            Kind::Row(RowKind::MergeLogEntry) => "merge-log entry",
            Kind::Segment => "segment",
            Kind::Push(PushTable::Bulk) => "bulk",
            Kind::Push(PushTable::Message) => "message",
            Kind::Push(PushTable::AudienceJob) => "audience job",
            Kind::Push(PushTable::Delivery) => "delivery record",
            Kind::Push(PushTable::IdempotencyRecord) => "idempotency record",
        }
    }
}

/// One row of a store as one dump line: `{"kind":"person", …the domain object's fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Record {
    Account(Account),
    Application(Application),
    JwtKey(JwtKey),
    ApiKey(ApiKey),
    AttributeDefinition(AttributeDefinition),
    Person(Person),
    Installation(Installation),
    /// Boxed: an entry with its before-images is several times the size of any other row.
    MergeLogEntry(Box<MergeLogEntry>),
    Segment(Segment),
    Bulk(Bulk),
    Message(Message),
    AudienceJob(AudienceJob),
    /// As stored, a claimed record with its claim and lease (see docs/decisions.md).
    Delivery(Delivery),
    /// Expired ones included: the answer of a replay must not depend on when the store moved.
    IdempotencyRecord(IdempotencyRecord),
}

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Record::Account(_) => Kind::Account,
            Record::Application(_) => Kind::Row(RowKind::Application),
            Record::JwtKey(_) => Kind::Row(RowKind::JwtKey),
            Record::ApiKey(_) => Kind::Row(RowKind::ApiKey),
            Record::AttributeDefinition(_) => Kind::Row(RowKind::AttributeDefinition),
            Record::Person(_) => Kind::Row(RowKind::Person),
            Record::Installation(_) => Kind::Row(RowKind::Installation),
            Record::MergeLogEntry(_) => Kind::Row(RowKind::MergeLogEntry),
            Record::Segment(_) => Kind::Segment,
            Record::Bulk(_) => Kind::Push(PushTable::Bulk),
            Record::Message(_) => Kind::Push(PushTable::Message),
            Record::AudienceJob(_) => Kind::Push(PushTable::AudienceJob),
            Record::Delivery(_) => Kind::Push(PushTable::Delivery),
            Record::IdempotencyRecord(_) => Kind::Push(PushTable::IdempotencyRecord),
        }
    }

    /// The record's primary key: the cursor of the keyset page that follows it.
    fn cursor(&self) -> Cursor {
        match self {
            Record::Account(a) => Cursor::Id(a.id),
            Record::Application(a) => Cursor::Id(a.id),
            Record::JwtKey(k) => Cursor::JwtKey(k.application_id, k.kid.clone()),
            Record::ApiKey(k) => Cursor::Id(k.id),
            Record::AttributeDefinition(d) => Cursor::Definition(d.scope, d.name.clone()),
            Record::Person(p) => Cursor::Id(p.id),
            Record::Installation(i) => Cursor::PushRegId(i.push_reg_id.clone()),
            Record::MergeLogEntry(e) => Cursor::Id(e.id),
            Record::Segment(s) => Cursor::Id(s.id),
            Record::Bulk(b) => Cursor::Text(b.bulk_id.clone()),
            Record::Message(m) => Cursor::Text(m.message_id.clone()),
            Record::AudienceJob(j) => Cursor::Text(j.message_id.clone()),
            Record::Delivery(d) => Cursor::Id(d.delivery_id),
            Record::IdempotencyRecord(r) => Cursor::Text(r.key.clone()),
        }
    }

    /// The record's key for messages (ids, never secrets).
    fn describe(&self) -> String {
        let key = match self.cursor() {
            Cursor::Id(id) => id.to_string(),
            Cursor::JwtKey(app, kid) => format!("{kid:?} of application {app}"),
            Cursor::Definition(scope, name) => format!("{name:?} ({})", scope.as_str()),
            Cursor::PushRegId(id) => id,
            Cursor::Text(key) => format!("{key:?}"),
        };
        format!("{} {key}", self.kind().singular())
    }

    /// Inserts the record into a store exactly as it is (every field, including ids, versions
    /// and timestamps).
    async fn insert(&self, tx: &mut dyn Tx) -> StoreResult<()> {
        match self {
            Record::Account(a) => tx.insert_account(a).await,
            Record::Application(a) => tx.insert_application(a).await,
            Record::JwtKey(k) => tx.insert_jwt_key(k).await,
            Record::ApiKey(k) => tx.insert_api_key(k).await,
            Record::AttributeDefinition(d) => tx.insert_attribute_definition(d).await,
            Record::Person(p) => tx.insert_person(p).await,
            Record::Installation(i) => tx.insert_installation(i).await,
            Record::MergeLogEntry(e) => tx.insert_merge_entry(e).await,
            Record::Segment(s) => tx.insert_segment(s).await,
            Record::Bulk(b) => tx.insert_bulk(b).await,
            Record::Message(m) => tx.insert_message(m).await,
            Record::AudienceJob(j) => tx.insert_audience_job(j).await,
            Record::Delivery(d) => tx.insert_deliveries(std::slice::from_ref(d)).await,
            Record::IdempotencyRecord(r) => tx.insert_idempotency_record(r).await,
        }
    }
}

/// The rows an [`Importer`] has not inserted yet.
enum Batch {
    None,
    Persons(Vec<Person>),
    Installations(Vec<Installation>),
    Deliveries(Vec<Delivery>),
}

impl Batch {
    fn kind(&self) -> Option<Kind> {
        match self {
            Batch::None => None,
            Batch::Persons(_) => Some(Kind::Row(RowKind::Person)),
            Batch::Installations(_) => Some(Kind::Row(RowKind::Installation)),
            Batch::Deliveries(_) => Some(Kind::Push(PushTable::Delivery)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Batch::None => 0,
            Batch::Persons(rows) => rows.len(),
            Batch::Installations(rows) => rows.len(),
            Batch::Deliveries(rows) => rows.len(),
        }
    }
}

/// Where a keyset page starts: after the primary key of the previous page's last row.
#[derive(Debug, Clone)]
enum Cursor {
    Id(Uuid),
    JwtKey(Uuid, String),
    Definition(AttributeScope, String),
    PushRegId(String),
    /// A text key: bulk id, message id, idempotency key.
    Text(String),
}

/// How many rows of each kind: a dump header's promise, or what was copied.
/// The kinds that came with version 2 are absent from a version 1 header (0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Counts {
    pub account: u64,
    pub application: u64,
    pub jwt_key: u64,
    pub api_key: u64,
    pub attribute_definition: u64,
    pub person: u64,
    pub installation: u64,
    pub merge_log_entry: u64,
    #[serde(default)]
    pub segment: u64,
    #[serde(default)]
    pub bulk: u64,
    #[serde(default)]
    pub message: u64,
    #[serde(default)]
    pub audience_job: u64,
    #[serde(default)]
    pub delivery: u64,
    #[serde(default)]
    pub idempotency_record: u64,
}

impl Counts {
    fn slot(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Account => &mut self.account,
            Kind::Row(RowKind::Application) => &mut self.application,
            Kind::Row(RowKind::JwtKey) => &mut self.jwt_key,
            Kind::Row(RowKind::ApiKey) => &mut self.api_key,
            Kind::Row(RowKind::AttributeDefinition) => &mut self.attribute_definition,
            Kind::Row(RowKind::Person) => &mut self.person,
            Kind::Row(RowKind::Installation) => &mut self.installation,
            Kind::Row(RowKind::MergeLogEntry) => &mut self.merge_log_entry,
            Kind::Segment => &mut self.segment,
            Kind::Push(PushTable::Bulk) => &mut self.bulk,
            Kind::Push(PushTable::Message) => &mut self.message,
            Kind::Push(PushTable::AudienceJob) => &mut self.audience_job,
            Kind::Push(PushTable::Delivery) => &mut self.delivery,
            Kind::Push(PushTable::IdempotencyRecord) => &mut self.idempotency_record,
        }
    }

    /// The count of one kind.
    pub fn get(&self, kind: Kind) -> u64 {
        let mut copy = *self;
        *copy.slot(kind)
    }

    /// The sum of every kind.
    pub fn total(&self) -> u64 {
        Kind::all().map(|k| self.get(k)).sum()
    }

    /// "1 account, 3 applications, …" (kinds with no rows left out; "nothing" if none).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = Kind::all()
            .filter(|k| self.get(*k) > 0)
            .map(|k| {
                let n = self.get(k);
                format!("{n} {}", if n == 1 { k.singular() } else { k.plural() })
            })
            .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }

    /// Counts every row of a store in `tx`, account by account.
    async fn of_store(tx: &mut dyn Tx) -> anyhow::Result<Counts> {
        let mut counts = Counts {
            account: tx.count_accounts().await?,
            ..Counts::default()
        };
        for account in account_ids(tx).await? {
            for kind in RowKind::ALL {
                *counts.slot(Kind::Row(kind)) += tx.count_rows(account, kind).await?;
            }
            counts.segment += tx.count_segments(account).await?;
            for table in PushTable::ALL {
                *counts.slot(Kind::Push(table)) += tx.count_push_rows(account, table).await?;
            }
        }
        Ok(counts)
    }
}

/// Line 1 of a dump.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this build; [`OLDEST_VERSION`] up to [`VERSION`] are read.
    pub version: u64,
    /// `sqlite` or `postgres`.
    pub source_backend: String,
    /// RFC 3339, UTC.
    pub exported_at: String,
    /// The rows that follow, per kind: an import checks it got exactly these.
    pub counts: Counts,
}

impl Header {
    /// Parses line 1, checking the format name before anything else and the version before the
    /// rest, so that a file of another kind or a newer dump gets a message saying so.
    pub fn parse(line: &str) -> anyhow::Result<Header> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| anyhow!("line 1: not a {FORMAT} header ({e})"))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            bail!(
                "line 1: not a {FORMAT} header (no \"format\":\"{FORMAT}\"): is this a file written by `roster export`?"
            );
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if (OLDEST_VERSION..=VERSION).contains(&v) => {}
            Some(other) => bail!(
                "line 1: dump version {other} is not supported: this roster reads versions {OLDEST_VERSION} to {VERSION}"
            ),
            None => bail!("line 1: the header has no numeric \"version\""),
        }
        serde_json::from_value(value).map_err(|e| anyhow!("line 1: invalid {FORMAT} header: {e}"))
    }
}

/// What a command did, for `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The backend read from (`export`, `migrate-store`) or named in the dump (`import`).
    pub source_backend: String,
    /// The backend written to (`import`, `migrate-store`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_backend: Option<String>,
    /// The dump written (`export`) or read (`import`); `-` for stdout or stdin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Rows copied, per kind.
    pub counts: Counts,
    /// Wall time of the whole command.
    pub elapsed_ms: u64,
}

// --- commands -------------------------------------------------------------------------------------

/// `roster export`: every row of the store to a dump (`--out FILE`, or stdout).
pub async fn export(args: ExportArgs, store_url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let to_stdout = args.out.as_os_str() == "-";
    if to_stdout && args.json {
        bail!("--json needs --out FILE: with --out - the dump itself goes to stdout");
    }
    let store = open_existing(store_url).await?;
    let mut out = DumpOut::create(&args.out)?;
    let progress = Progress::new(args.quiet);
    let mut tx = store.begin_read().await?;
    let expected = Counts::of_store(&mut *tx).await?;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        source_backend: store.backend().into(),
        exported_at: now_rfc3339()?,
        counts: expected,
    };
    out.line(&header)?;
    let mut sink = Sink::Dump(&mut out);
    let copied = copy_rows(&mut *tx, &expected, &mut sink, &progress).await?;
    tx.rollback().await?;
    out.finish()?;
    progress.clear();
    let summary = Summary {
        source_backend: store.backend().into(),
        target_backend: None,
        file: Some(args.out.display().to_string()),
        counts: copied,
        elapsed_ms: millis(started.elapsed()),
    };
    let text = format!(
        "exported {} from {} to {} in {:.1}s",
        copied.describe(),
        redact_url(store_url),
        if to_stdout {
            "stdout".into()
        } else {
            args.out.display().to_string()
        },
        started.elapsed().as_secs_f64()
    );
    if args.json {
        output::json(&summary)
    } else if to_stdout {
        // stdout is the dump.
        if !args.quiet {
            eprintln!("{text}");
        }
        Ok(())
    } else {
        output::line(text)
    }
}

/// `roster import`: a dump into an empty store.
pub async fn import(args: ImportArgs, store_url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let from_stdin = args.file.as_os_str() == "-";
    let mut input: Box<dyn BufRead> = if from_stdin {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    // The header is checked before the target is touched.
    let mut line = String::new();
    if read_line(&mut input, &mut line, 1)? == 0 {
        bail!("{} is empty: not a {FORMAT} file", args.file.display());
    }
    let header = Header::parse(&line)?;
    let store = open_command_store(store_url)
        .await
        .with_context(|| format!("cannot open the store {}", redact_url(store_url)))?;
    let progress = Progress::new(args.quiet);
    let mut importer = Importer::begin(store.clone(), &progress, &header.counts).await?;
    let mut number = 1;
    let loaded: anyhow::Result<()> = async {
        loop {
            line.clear();
            if read_line(&mut input, &mut line, number + 1)? == 0 {
                break;
            }
            number += 1;
            if line.trim().is_empty() {
                bail!("line {number}: empty line: a dump has one record per line");
            }
            let record: Record =
                serde_json::from_str(&line).map_err(|e| anyhow!("line {number}: not a valid record: {e}"))?;
            importer.put(record, Some(number)).await?;
        }
        importer.flush().await?;
        importer.check_complete(&header.counts).map_err(|e| {
            anyhow!("the dump ends at line {number}, before the end its header announces: {e} (is the file truncated?)")
        })
    }
    .await;
    if let Err(e) = loaded {
        importer.abort().await;
        return Err(e.context("nothing was imported"));
    }
    let copied = importer.commit().await?;
    progress.clear();
    let summary = Summary {
        source_backend: header.source_backend.clone(),
        target_backend: Some(store.backend().into()),
        file: Some(args.file.display().to_string()),
        counts: copied,
        elapsed_ms: millis(started.elapsed()),
    };
    if args.json {
        return output::json(&summary);
    }
    output::line(format!(
        "imported {} from {} (a {} dump of {}) into {} in {:.1}s",
        copied.describe(),
        if from_stdin {
            "stdin".into()
        } else {
            args.file.display().to_string()
        },
        header.source_backend,
        header.exported_at,
        redact_url(store_url),
        started.elapsed().as_secs_f64()
    ))
}

/// `roster migrate-store`: every row of one store into another, empty one, without a file.
pub async fn migrate_store(args: MigrateStoreArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.from == args.to {
        bail!("--from and --to name the same store");
    }
    let source = open_existing(&args.from).await?;
    let target = open_command_store(&args.to)
        .await
        .with_context(|| format!("cannot open the target store {}", redact_url(&args.to)))?;
    let progress = Progress::new(args.quiet);
    let mut tx = source.begin_read().await?;
    let expected = Counts::of_store(&mut *tx).await?;
    let mut importer = Importer::begin(target.clone(), &progress, &expected).await?;
    let copied = {
        let mut sink = Sink::Store(&mut importer);
        copy_rows(&mut *tx, &expected, &mut sink, &progress).await
    };
    let copied = match copied {
        Ok(_) => importer.flush().await,
        Err(e) => Err(e),
    };
    tx.rollback().await?;
    if let Err(e) = copied {
        importer.abort().await;
        return Err(e.context("nothing was copied"));
    }
    let copied = importer.commit().await?;
    progress.clear();
    let summary = Summary {
        source_backend: source.backend().into(),
        target_backend: Some(target.backend().into()),
        file: None,
        counts: copied,
        elapsed_ms: millis(started.elapsed()),
    };
    if args.json {
        return output::json(&summary);
    }
    output::line(format!(
        "copied {} from {} to {} in {:.1}s",
        copied.describe(),
        redact_url(&args.from),
        redact_url(&args.to),
        started.elapsed().as_secs_f64()
    ))
}

// --- the streaming core ---------------------------------------------------------------------------

/// Where copied rows go.
enum Sink<'a, 'p> {
    Dump(&'a mut DumpOut),
    Store(&'a mut Importer<'p>),
}

impl Sink<'_, '_> {
    async fn put(&mut self, record: Record) -> anyhow::Result<()> {
        match self {
            Sink::Dump(out) => out.line(&record),
            Sink::Store(importer) => importer.put(record, None).await,
        }
    }
}

/// The ids of every account, in id order (paged: an id is all that is kept per account).
async fn account_ids(tx: &mut dyn Tx) -> StoreResult<Vec<Uuid>> {
    let mut ids = Vec::new();
    loop {
        let page = tx.accounts_page(ids.last().copied(), PAGE).await?;
        if page.is_empty() {
            return Ok(ids);
        }
        ids.extend(page.iter().map(|a| a.id));
    }
}

/// The page of rows of `kind` of an account after `after`.
async fn read_page(tx: &mut dyn Tx, account: Uuid, kind: Kind, after: Option<&Cursor>) -> anyhow::Result<Vec<Record>> {
    let id = || match after {
        None => Ok(None),
        Some(Cursor::Id(id)) => Ok(Some(*id)),
        Some(other) => Err(anyhow!("a {other:?} cursor for {kind:?} rows")),
    };
    let text = || match after {
        None => Ok(None),
        Some(Cursor::Text(key)) => Ok(Some(key.as_str())),
        Some(other) => Err(anyhow!("a {other:?} cursor for {kind:?} rows")),
    };
    let kind = match kind {
        Kind::Account => bail!("accounts are not rows of an account"),
        Kind::Row(kind) => kind,
        Kind::Segment => {
            let rows = tx.segments_page(account, id()?, PAGE).await?;
            return Ok(rows.into_iter().map(Record::Segment).collect());
        }
        Kind::Push(table) => {
            return Ok(match table {
                PushTable::Bulk => {
                    let rows = tx.bulks_page(account, text()?, PAGE).await?;
                    rows.into_iter().map(Record::Bulk).collect()
                }
                PushTable::Message => {
                    let rows = tx.messages_page(account, text()?, PAGE).await?;
                    rows.into_iter().map(Record::Message).collect()
                }
                PushTable::AudienceJob => {
                    let rows = tx.audience_jobs_page(account, text()?, PAGE).await?;
                    rows.into_iter().map(Record::AudienceJob).collect()
                }
                PushTable::Delivery => {
                    let rows = tx.deliveries_page(account, id()?, PAGE).await?;
                    rows.into_iter().map(Record::Delivery).collect()
                }
                PushTable::IdempotencyRecord => {
                    let rows = tx.idempotency_records_page(account, text()?, PAGE).await?;
                    rows.into_iter().map(Record::IdempotencyRecord).collect()
                }
            });
        }
    };
    Ok(match kind {
        RowKind::Application => {
            let rows = tx.applications_page(account, id()?, PAGE).await?;
            rows.into_iter().map(Record::Application).collect()
        }
        RowKind::JwtKey => {
            let after = match after {
                None => None,
                Some(Cursor::JwtKey(app, kid)) => Some((*app, kid.as_str())),
                Some(other) => bail!("a {other:?} cursor for JWT keys"),
            };
            let rows = tx.jwt_keys_page(account, after, PAGE).await?;
            rows.into_iter().map(Record::JwtKey).collect()
        }
        RowKind::ApiKey => {
            let rows = tx.api_keys_page(account, id()?, PAGE).await?;
            rows.into_iter().map(Record::ApiKey).collect()
        }
        RowKind::AttributeDefinition => {
            let after = match after {
                None => None,
                Some(Cursor::Definition(scope, name)) => Some((*scope, name.as_str())),
                Some(other) => bail!("a {other:?} cursor for attribute definitions"),
            };
            let rows = tx.attribute_definitions_page(account, after, PAGE).await?;
            rows.into_iter().map(Record::AttributeDefinition).collect()
        }
        RowKind::Person => {
            let rows = tx.persons_page(account, id()?, PAGE).await?;
            rows.into_iter().map(Record::Person).collect()
        }
        RowKind::Installation => {
            let after = match after {
                None => None,
                Some(Cursor::PushRegId(id)) => Some(id.as_str()),
                Some(other) => bail!("a {other:?} cursor for installations"),
            };
            let rows = tx.installations_page(account, after, PAGE).await?;
            rows.into_iter().map(Record::Installation).collect()
        }
        RowKind::MergeLogEntry => {
            let rows = tx.merge_entries_page(account, id()?, PAGE).await?;
            rows.into_iter().map(|e| Record::MergeLogEntry(Box::new(e))).collect()
        }
    })
}

/// Copies every row of the store in `tx` to `sink`, kind by kind in dependency order, each kind
/// account by account in keyset pages; returns how many rows of each kind it copied, which must
/// be `expected` (counted in the same transaction).
async fn copy_rows(
    tx: &mut dyn Tx,
    expected: &Counts,
    sink: &mut Sink<'_, '_>,
    progress: &Progress,
) -> anyhow::Result<Counts> {
    let mut copied = Counts::default();
    let bar = progress.bar(Kind::Account, expected.account);
    let mut accounts = Vec::new();
    loop {
        let page = tx.accounts_page(accounts.last().copied(), PAGE).await?;
        if page.is_empty() {
            break;
        }
        for account in page {
            accounts.push(account.id);
            sink.put(Record::Account(account)).await?;
            copied.account += 1;
            bar.inc(1);
        }
    }
    bar.finish();
    for kind in Kind::owned() {
        let bar = progress.bar(kind, expected.get(kind));
        for &account in &accounts {
            let mut after: Option<Cursor> = None;
            loop {
                let page = read_page(tx, account, kind, after.as_ref()).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.cursor());
                for record in page {
                    sink.put(record).await?;
                    *copied.slot(kind) += 1;
                    bar.inc(1);
                }
            }
        }
        bar.finish();
    }
    if copied != *expected {
        // Cannot happen inside one read transaction; if it does, the copy is not to be trusted.
        bail!(
            "the source changed while it was read: counted {}, read {}",
            expected.describe(),
            copied.describe()
        );
    }
    Ok(copied)
}

/// Loads records into a store, in one write transaction for the whole import.
///
/// One transaction, because a failed import (a corrupt line, a conflict, a lost connection)
/// must leave the target as it was, empty, so that the fix is simply to run the command again;
/// an import in batches would leave a partial store that a rerun refuses as non-empty. The cost
/// is one long transaction: SQLite holds its write lock (nobody else writes meanwhile, which an
/// import into a fresh store does not mind) and PostgreSQL keeps the new rows in its log until
/// commit. Measured: see `large_store_round_trip` in crates/roster-cli/tests/migrate_store.rs
/// and docs/decisions.md ("Moving a store").
struct Importer<'p> {
    /// Kept so that the store outlives its transaction.
    _store: Arc<dyn Store>,
    tx: Option<Box<dyn Tx>>,
    backend: &'static str,
    copied: Counts,
    /// The kind of the last record, to keep the dependency order.
    last: Option<Kind>,
    /// Persons or installations not inserted yet: the kinds with many rows go in batches of
    /// [`PAGE`] ([`Tx::insert_persons`], [`Tx::insert_installations`]), which PostgreSQL writes
    /// in a few statements instead of several per row.
    batch: Batch,
    /// The dump lines of the batch (first, last), for messages.
    batch_lines: Option<(u64, u64)>,
    progress: &'p Progress,
    expected: Counts,
    bar: Option<ProgressBar>,
}

impl<'p> Importer<'p> {
    /// Starts the import transaction on an empty store; refuses a store that holds any row.
    async fn begin(store: Arc<dyn Store>, progress: &'p Progress, expected: &Counts) -> anyhow::Result<Importer<'p>> {
        let mut tx = store.begin().await?;
        let present = Counts::of_store(&mut *tx).await?;
        if present.total() > 0 {
            tx.rollback().await?;
            bail!(
                "the target store is not empty: it holds {}. Import only into an empty store \
                 (a new SQLite file or a newly created PostgreSQL database; note that `roster serve` \
                 creates the default account and an API key on first start)",
                present.describe()
            );
        }
        Ok(Importer {
            backend: store.backend(),
            _store: store,
            tx: Some(tx),
            copied: Counts::default(),
            last: None,
            batch: Batch::None,
            batch_lines: None,
            progress,
            expected: *expected,
            bar: None,
        })
    }

    fn tx(&mut self) -> anyhow::Result<&mut dyn Tx> {
        match self.tx.as_deref_mut() {
            Some(tx) => Ok(tx),
            None => bail!("the import transaction is already finished"),
        }
    }

    /// Inserts one record, exactly as it is (persons and installations in batches: a conflict
    /// in a batch is reported with the batch's lines). `line`: where the record is in the dump.
    async fn put(&mut self, record: Record, line: Option<u64>) -> anyhow::Result<()> {
        let at = line.map(|n| format!("line {n}: ")).unwrap_or_default();
        let kind = record.kind();
        if let Some(last) = self.last
            && kind < last
        {
            bail!(
                "{at}{} after {}: records must come in dependency order (accounts, applications, JWT \
                 keys, API keys, attribute definitions, persons, installations, merge-log entries, segments, \
                 bulks, messages, audience jobs, delivery records, idempotency records)",
                record.describe(),
                last.plural()
            );
        }
        if self.last != Some(kind) {
            self.flush().await?;
            if let Some(bar) = self.bar.take() {
                bar.finish();
            }
            self.bar = Some(self.progress.bar(kind, self.expected.get(kind)));
            self.last = Some(kind);
        }
        if let Some(n) = line {
            let first = self.batch_lines.map_or(n, |(first, _)| first);
            self.batch_lines = Some((first, n));
        }
        match (&mut self.batch, record) {
            (Batch::None, Record::Person(p)) => self.batch = Batch::Persons(vec![p]),
            (Batch::None, Record::Installation(i)) => self.batch = Batch::Installations(vec![i]),
            (Batch::Persons(batch), Record::Person(p)) => batch.push(p),
            (Batch::Installations(batch), Record::Installation(i)) => batch.push(i),
            (Batch::None, Record::Delivery(d)) => self.batch = Batch::Deliveries(vec![d]),
            (Batch::Deliveries(batch), Record::Delivery(d)) => batch.push(d),
            (_, record) => {
                // Every other kind is few rows: one insert each, reported with its own line.
                self.batch_lines = None;
                let backend = self.backend;
                record
                    .insert(self.tx()?)
                    .await
                    .with_context(|| format!("{at}cannot store {} in {backend}", record.describe()))?;
                self.counted(kind, 1);
                return Ok(());
            }
        }
        if self.batch.len() >= PAGE as usize {
            self.flush().await?;
        }
        Ok(())
    }

    /// Inserts the pending batch, if any.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let batch = std::mem::replace(&mut self.batch, Batch::None);
        let lines = self.batch_lines.take();
        let Some(kind) = batch.kind() else { return Ok(()) };
        let n = batch.len();
        let backend = self.backend;
        let tx = self.tx()?;
        let inserted = match &batch {
            Batch::Persons(persons) => tx.insert_persons(persons).await,
            Batch::Installations(insts) => tx.insert_installations(insts).await,
            Batch::Deliveries(records) => tx.insert_deliveries(records).await,
            Batch::None => Ok(()),
        };
        inserted.with_context(|| {
            let at = match lines {
                Some((first, last)) if first == last => format!("line {first}: "),
                Some((first, last)) => format!("lines {first}-{last}: "),
                None => String::new(),
            };
            format!("{at}cannot store {n} {} in {backend}", kind.plural())
        })?;
        self.counted(kind, n as u64);
        Ok(())
    }

    /// Counts rows as stored.
    fn counted(&mut self, kind: Kind, n: u64) {
        *self.copied.slot(kind) += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Checks that every row the header promised arrived.
    fn check_complete(&self, expected: &Counts) -> anyhow::Result<()> {
        let missing: Vec<String> = Kind::all()
            .filter(|k| self.copied.get(*k) != expected.get(*k))
            .map(|k| {
                format!(
                    "{} {} announced, {} found",
                    expected.get(k),
                    k.plural(),
                    self.copied.get(k)
                )
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            bail!("{}", missing.join("; "))
        }
    }

    /// Commits the whole import; how many rows of each kind it holds.
    async fn commit(mut self) -> anyhow::Result<Counts> {
        self.flush().await?;
        self.tx()?.refresh_statistics().await?;
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        let tx = self
            .tx
            .take()
            .ok_or_else(|| anyhow!("the import transaction is already finished"))?;
        tx.commit()
            .await
            .context("the import failed at commit: nothing was imported")?;
        Ok(self.copied)
    }

    /// Rolls the whole import back (the target stays empty).
    async fn abort(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        if let Some(tx) = self.tx.take()
            && let Err(e) = tx.rollback().await
        {
            // Dropping the transaction rolls it back as well; the error is only worth a log line.
            tracing::warn!(error = %e, "rolling back the import failed");
        }
    }
}

/// The dump being written: to a temporary file beside `--out FILE` that replaces FILE only once
/// complete (a failed export leaves no half file behind), or to stdout.
struct DumpOut {
    writer: BufWriter<Box<dyn Write + Send>>,
    file: Option<(tempfile::TempPath, PathBuf)>,
}

impl DumpOut {
    fn create(out: &Path) -> anyhow::Result<DumpOut> {
        if out.as_os_str() == "-" {
            return Ok(DumpOut {
                writer: BufWriter::with_capacity(1 << 16, Box::new(std::io::stdout())),
                file: None,
            });
        }
        let dir = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        // Created with mode 0600: the dump holds secrets.
        let temp = tempfile::Builder::new()
            .prefix(".roster-export-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let (file, path) = temp.into_parts();
        Ok(DumpOut {
            writer: BufWriter::with_capacity(1 << 16, Box::new(file)),
            file: Some((path, out.to_path_buf())),
        })
    }

    /// Writes one value as one line.
    fn line<T: Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.writer, value)?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes the dump and, for a file, syncs it and moves it into place.
    fn finish(self) -> anyhow::Result<()> {
        let inner = self.writer.into_inner().map_err(|e| e.into_error())?;
        drop(inner);
        if let Some((temp, out)) = self.file {
            File::open(&temp)?.sync_all()?;
            temp.persist(&out)
                .map_err(|e| anyhow!("cannot write {}: {}", out.display(), e.error))?;
        }
        Ok(())
    }
}

/// One bar per kind on stderr, hidden when stderr is not a terminal or with `--quiet`.
struct Progress {
    bars: MultiProgress,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Progress {
            bars: MultiProgress::with_draw_target(target),
        }
    }

    /// A bar for `len` rows of `kind`.
    fn bar(&self, kind: Kind, len: u64) -> ProgressBar {
        let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        self.bars
            .add(ProgressBar::new(len).with_style(style).with_prefix(kind.plural()))
    }

    /// Removes the bars before the summary is printed.
    fn clear(&self) {
        if let Err(e) = self.bars.clear() {
            tracing::debug!(error = %e, "cannot clear the progress bars");
        }
    }
}

// --- helpers --------------------------------------------------------------------------------------

/// Opens a store to read from; a SQLite URL must name an existing file (opening a missing one
/// would create an empty store and export nothing without a word).
async fn open_existing(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))
        && !Path::new(path).is_file()
    {
        bail!("there is no SQLite store at {path}");
    }
    open_command_store(url)
        .await
        .with_context(|| format!("cannot open the store {}", redact_url(url)))
}

/// Reads one line into `line`; 0 at the end of the input.
fn read_line(input: &mut dyn BufRead, line: &mut String, number: u64) -> anyhow::Result<usize> {
    input
        .read_line(line)
        .with_context(|| format!("line {number}: cannot read it"))
}

fn now_rfc3339() -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0)?;
    Ok(now.format(&time::format_description::well_known::Rfc3339)?)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_in_dependency_order() {
        let kinds: Vec<Kind> = Kind::all().collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        assert_eq!(kinds, sorted);
        assert_eq!(kinds.len(), 14);
    }

    #[test]
    fn records_are_tagged_with_their_kind() {
        let account = Account {
            id: Uuid::nil(),
            name: "a".into(),
            created_at: 5,
        };
        let line = serde_json::to_string(&Record::Account(account.clone())).unwrap();
        assert_eq!(
            line,
            r#"{"kind":"account","id":"00000000-0000-0000-0000-000000000000","name":"a","createdAt":5}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), Record::Account(account));
        assert!(serde_json::from_str::<Record>(r#"{"kind":"planet","id":"x"}"#).is_err());
    }

    #[test]
    fn headers_are_checked_for_format_and_version() {
        let good = r#"{"format":"roster-dump","version":1,"sourceBackend":"sqlite","exportedAt":"2025-01-01T00:00:00Z","counts":{"account":1,"application":0,"jwtKey":0,"apiKey":0,"attributeDefinition":0,"person":2,"installation":0,"mergeLogEntry":0}}"#;
        let header = Header::parse(good).unwrap();
        assert_eq!((header.counts.account, header.counts.person), (1, 2));
        // Version 1 headers have no counts of the kinds version 2 added: 0.
        assert_eq!(
            (header.version, header.counts.delivery, header.counts.segment),
            (1, 0, 0)
        );
        let current = good.replace("\"version\":1", "\"version\":2").replace(
            "\"mergeLogEntry\":0",
            "\"mergeLogEntry\":0,\"segment\":3,\"delivery\":4",
        );
        let header = Header::parse(&current).unwrap();
        assert_eq!((header.counts.segment, header.counts.delivery), (3, 4));
        let newer = good.replace("\"version\":1", "\"version\":3");
        assert!(
            Header::parse(&newer)
                .unwrap_err()
                .to_string()
                .contains("version 3 is not supported")
        );
        let other = r#"{"kind":"account"}"#;
        assert!(
            Header::parse(other)
                .unwrap_err()
                .to_string()
                .contains("not a roster-dump header")
        );
        let unknown_kind = good.replace("\"person\":2", "\"planet\":2");
        assert!(Header::parse(&unknown_kind).is_err());
    }

    #[test]
    fn counts_describe_what_is_there() {
        let mut counts = Counts::default();
        assert_eq!(counts.describe(), "nothing");
        counts.account = 1;
        counts.api_key = 2;
        assert_eq!(counts.describe(), "1 account, 2 API keys");
        assert_eq!(counts.total(), 3);
    }
}
