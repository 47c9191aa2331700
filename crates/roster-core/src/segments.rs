//! Segments, segment preview and people search (management-api.md §7.6, §7.4 search, §4): the
//! rules, over the store's audience primitives (`roster_store::AudienceTx`). Filters are parsed
//! with the account's attribute definitions read in the same transaction as the query or the
//! save, and run in the store as indexed SQL.

use std::collections::HashMap;

use roster_model::filter::{Definitions, Filter, FilterError};
use roster_model::resources::timestamp;
use roster_model::{ErrorCode, now_millis};
use roster_store::audience::{Preview, SEGMENT_NAME_CONSTRAINT, Scope, Segment};
use roster_store::{Constraint, StoreError, Tx};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::idempotency::{IdempotencyHold, store_answer};
use crate::people::PersonView;
use crate::{Core, CoreError, CoreResult};

/// management-api.md §7.6: a segment name has 1–100 characters.
pub const MAX_NAME_CHARS: usize = 100;
/// management-api.md §7.6: a description has at most 1000 characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// management-api.md §7.6: `sampleSize` is 0–100.
pub const MAX_SAMPLE_SIZE: u32 = 100;
/// management-api.md §7.6: `sampleSize` when not given.
pub const DEFAULT_SAMPLE_SIZE: u32 = 10;

/// Field problems of a request, each at its JSON path: answered as `400 BAD_REQUEST` with every
/// one of them in `validationErrors` (management-api.md §2).
pub type Problems = Vec<FilterError>;

/// A segment's fields as given in a create or PATCH body (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct SegmentDraft {
    pub name: Option<String>,
    /// `Some(None)`: remove the description (PATCH with `null`).
    pub description: Option<Option<String>>,
    pub filter: Option<Value>,
}

/// What a segment preview looks at (management-api.md §7.6).
#[derive(Debug, Clone)]
pub struct PreviewRequest {
    pub segment_id: Option<Uuid>,
    pub filter: Option<Value>,
    pub application_code: Option<String>,
    pub primary_only: bool,
    pub sample_size: u32,
}

/// The segment resource (management-api.md §7.6).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentResource {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub filter: Value,
    pub valid: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Segment> for SegmentResource {
    fn from(s: &Segment) -> Self {
        SegmentResource {
            id: s.id,
            name: s.name.clone(),
            description: s.description.clone(),
            filter: s.filter.clone(),
            valid: s.valid,
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

/// A page of people search.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub people: Vec<PersonView>,
    /// Whether more persons may follow the last one.
    pub more: bool,
}

fn problem(path: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn not_found(what: impl Into<String>) -> CoreError {
    CoreError::api(ErrorCode::NotFound, what)
}

fn already_exists(name: &str) -> CoreError {
    CoreError::api(
        ErrorCode::AlreadyExists,
        format!("A segment named {name:?} already exists"),
    )
}

/// Every string of a JSON value (member names included) is free of U+0000, which no stored value
/// can hold (docs/decisions.md "U+0000 and other control characters"): a filter operand with it
/// could never match, and PostgreSQL refuses it in a query.
fn check_no_nul(value: &Value, path: &str, out: &mut Problems) {
    match value {
        Value::String(s) if s.contains('\0') => out.push(problem(path, "must not contain U+0000")),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_no_nul(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(members) => {
            for (k, v) in members {
                let at = format!("{path}.{}", k.replace('\0', "\\u0000"));
                if k.contains('\0') {
                    out.push(problem(&at, "must not contain U+0000"));
                }
                check_no_nul(v, &at, out);
            }
        }
        _ => {}
    }
}

/// Parses a filter found at `path` with the account's definitions: the typed filter, or every
/// problem at its path.
pub fn parse_filter(value: &Value, defs: &dyn Definitions, path: &str) -> Result<Filter, Problems> {
    let mut problems = Vec::new();
    check_no_nul(value, path, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Filter::parse(value, defs, path)
}

/// management-api.md §7.6: the name and description rules.
fn check_texts(draft: &SegmentDraft, problems: &mut Problems) {
    if let Some(name) = &draft.name {
        let n = name.chars().count();
        if n == 0 || n > MAX_NAME_CHARS {
            problems.push(problem("name", format!("must be 1 to {MAX_NAME_CHARS} characters")));
        } else if name.contains('\0') {
            problems.push(problem("name", "must not contain U+0000"));
        }
    }
    if let Some(Some(description)) = &draft.description {
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            problems.push(problem(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        } else if description.contains('\0') {
            problems.push(problem("description", "must not contain U+0000"));
        }
    }
}

/// The account's application with this code (any case), or `404`.
async fn application_in(tx: &mut dyn Tx, account_id: Uuid, code: &str) -> CoreResult<Uuid> {
    match tx.application_by_code(&code.to_ascii_lowercase()).await? {
        Some(app) if app.account_id == account_id => Ok(app.id),
        _ => Err(not_found(format!("No application with code {code}"))),
    }
}

/// Inserts or updates a segment; a taken name is `409 ALREADY_EXISTS`.
async fn save(tx: &mut dyn Tx, segment: &Segment, insert: bool) -> CoreResult<()> {
    // Checked first, so that the usual case answers without a failed statement; the constraint
    // still decides between concurrent saves.
    let taken = tx
        .segments(segment.account_id)
        .await?
        .into_iter()
        .any(|s| s.name == segment.name && s.id != segment.id);
    if taken {
        return Err(already_exists(&segment.name));
    }
    let saved = if insert {
        tx.insert_segment(segment).await
    } else {
        tx.update_segment(segment).await
    };
    match saved {
        Err(StoreError::Conflict {
            constraint: Constraint::Other(name),
        }) if name == SEGMENT_NAME_CONSTRAINT => Err(already_exists(&segment.name)),
        other => Ok(other?),
    }
}

impl Core {
    /// `POST /api/v1/segments`: a new segment, its filter checked with the account's definitions
    /// (`Ok(Err(problems))` for a `400`). With a held `Idempotency-Key`, the `201` answer is
    /// stored in the same transaction.
    pub async fn create_segment(
        &self,
        account_id: Uuid,
        draft: SegmentDraft,
        hold: Option<&IdempotencyHold>,
    ) -> CoreResult<Result<Segment, Problems>> {
        let mut problems = Vec::new();
        if draft.name.is_none() {
            problems.push(problem("name", "is required"));
        }
        if draft.filter.is_none() {
            problems.push(problem("filter", "is required"));
        }
        check_texts(&draft, &mut problems);
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let mut problems = problems.clone();
            let defs = tx.attribute_definitions(account_id, None).await?;
            if let Some(filter) = &draft.filter
                && let Err(e) = parse_filter(filter, &defs, "filter")
            {
                problems.extend(e);
            }
            if !problems.is_empty() {
                return Ok(Err(problems));
            }
            let segment = Segment {
                account_id,
                id: Uuid::new_v4(),
                name: draft.name.clone().unwrap_or_default(),
                description: draft.description.clone().flatten(),
                filter: draft.filter.clone().unwrap_or_default(),
                valid: true,
                created_at: now,
                updated_at: now,
            };
            save(tx, &segment, true).await?;
            store_answer(tx, hold, 201, &SegmentResource::from(&segment), now).await?;
            Ok(Ok(segment))
        })
    }

    /// `GET /api/v1/segments/{id}`, or `404`.
    pub async fn segment(&self, account_id: Uuid, id: Uuid) -> CoreResult<Segment> {
        in_read_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.segment(account_id, id).await?)
        })?
        .ok_or_else(|| not_found(format!("No segment {id}")))
    }

    /// `GET /api/v1/segments`: the account's segments by name.
    pub async fn segments(&self, account_id: Uuid) -> CoreResult<Vec<Segment>> {
        in_read_tx!(self, |tx| async { Ok::<_, CoreError>(tx.segments(account_id).await?) })
    }

    /// `PATCH /api/v1/segments/{id}`: changes the given fields; a new filter is checked (and
    /// makes the segment valid again). `404` when there is no such segment.
    pub async fn update_segment(
        &self,
        account_id: Uuid,
        id: Uuid,
        draft: SegmentDraft,
    ) -> CoreResult<Result<Segment, Problems>> {
        let mut problems = Vec::new();
        check_texts(&draft, &mut problems);
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let mut problems = problems.clone();
            let mut segment = tx
                .segment(account_id, id)
                .await?
                .ok_or_else(|| not_found(format!("No segment {id}")))?;
            if let Some(filter) = &draft.filter {
                let defs = tx.attribute_definitions(account_id, None).await?;
                if let Err(e) = parse_filter(filter, &defs, "filter") {
                    problems.extend(e);
                }
                segment.filter = filter.clone();
                segment.valid = true;
            }
            if !problems.is_empty() {
                return Ok(Err(problems));
            }
            if let Some(name) = &draft.name {
                segment.name = name.clone();
            }
            if let Some(description) = &draft.description {
                segment.description = description.clone();
            }
            segment.updated_at = now.max(segment.updated_at);
            save(tx, &segment, false).await?;
            Ok(Ok(segment))
        })
    }

    /// `DELETE /api/v1/segments/{id}`, or `404`.
    pub async fn delete_segment(&self, account_id: Uuid, id: Uuid) -> CoreResult<()> {
        let deleted = in_write_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.delete_segment(account_id, id).await?)
        })?;
        if deleted {
            Ok(())
        } else {
            Err(not_found(format!("No segment {id}")))
        }
    }

    /// Checks a filter with the account's current definitions (for reporting it together with
    /// other problems of a request).
    pub async fn check_filter(&self, account_id: Uuid, filter: &Value, path: &str) -> CoreResult<Problems> {
        let defs = in_read_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.attribute_definitions(account_id, None).await?)
        })?;
        Ok(parse_filter(filter, &defs, path).err().unwrap_or_default())
    }

    /// `POST /api/v1/segments/preview` (management-api.md §7.6): counts and sample from one
    /// snapshot (one read transaction: definitions, segment, application and every statement).
    /// A segment and a filter together are their conjunction; neither is everything.
    pub async fn preview(&self, account_id: Uuid, req: &PreviewRequest) -> CoreResult<Result<Preview, Problems>> {
        in_read_tx!(self, |tx| async {
            let defs = tx.attribute_definitions(account_id, None).await?;
            let mut filter = Filter::All;
            let mut problems = Vec::new();
            if let Some(id) = req.segment_id {
                let segment = tx
                    .segment(account_id, id)
                    .await?
                    .ok_or_else(|| not_found(format!("No segment {id}")))?;
                match parse_filter(&segment.filter, &defs, "filter") {
                    Ok(f) if segment.valid => filter = f,
                    _ => problems.push(problem(
                        "segmentId",
                        "the segment's filter is not valid (an attribute it uses was deleted); update its filter",
                    )),
                }
            }
            if let Some(value) = &req.filter {
                match parse_filter(value, &defs, "filter") {
                    Ok(f) => filter = filter.and(f),
                    Err(e) => problems.extend(e),
                }
            }
            if !problems.is_empty() {
                return Ok(Err(problems));
            }
            let application_id = match &req.application_code {
                Some(code) => Some(application_in(tx, account_id, code).await?),
                None => None,
            };
            let scope = Scope {
                account_id,
                application_id,
            };
            let sample_size = req.sample_size.min(MAX_SAMPLE_SIZE);
            Ok(Ok(tx.preview(scope, &filter, req.primary_only, sample_size).await?))
        })
    }

    /// `POST /api/v1/people/search` (management-api.md §7.4): the persons matching `filter`
    /// after `after`, by id, at most `limit`, each with its installations of every application.
    pub async fn search_people(
        &self,
        account_id: Uuid,
        filter: &Value,
        application_code: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
    ) -> CoreResult<Result<SearchPage, Problems>> {
        in_read_tx!(self, |tx| async {
            let defs = tx.attribute_definitions(account_id, None).await?;
            let filter = match parse_filter(filter, &defs, "filter") {
                Ok(f) => f,
                Err(problems) => return Ok(Err(problems)),
            };
            let application_id = match application_code {
                Some(code) => Some(application_in(tx, account_id, code).await?),
                None => None,
            };
            let scope = Scope {
                account_id,
                application_id,
            };
            let mut found = tx.search_people(scope, &filter, after, limit.saturating_add(1)).await?;
            let more = found.len() > limit as usize;
            found.truncate(limit as usize);
            let application_codes: HashMap<Uuid, String> = tx
                .applications(account_id)
                .await?
                .into_iter()
                .map(|a| (a.id, a.application_code))
                .collect();
            let people = found
                .into_iter()
                .map(|f| PersonView {
                    person: f.person,
                    installations: f.installations,
                    application_codes: application_codes.clone(),
                })
                .collect();
            Ok(Ok(SearchPage { people, more }))
        })
    }
}

/// management-api.md §7.3, §7.6: after an attribute definition is deleted, every segment whose
/// filter no longer parses with the remaining definitions becomes `valid: false`. Call it in the
/// transaction that deletes the definition; returns how many segments it marked.
pub async fn invalidate_segments(tx: &mut dyn Tx, account_id: Uuid) -> CoreResult<u64> {
    let defs = tx.attribute_definitions(account_id, None).await?;
    let mut marked = 0;
    for mut segment in tx.segments(account_id).await? {
        if segment.valid && parse_filter(&segment.filter, &defs, "filter").is_err() {
            segment.valid = false;
            tx.update_segment(&segment).await?;
            marked += 1;
        }
    }
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_and_nul() {
        let mut p = Vec::new();
        check_texts(
            &SegmentDraft {
                name: Some(String::new()),
                description: Some(Some("x".repeat(1001))),
                filter: None,
            },
            &mut p,
        );
        let paths: Vec<&str> = p.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["name", "description"]);
        let mut p = Vec::new();
        check_texts(
            &SegmentDraft {
                name: Some("ž".repeat(100)),
                description: Some(None),
                filter: None,
            },
            &mut p,
        );
        assert!(p.is_empty());
        let e = parse_filter(&json!({"tags": {"$in": ["a", "b\u{0}"]}}), &Vec::new(), "filter").unwrap_err();
        assert_eq!(e[0].path, "filter.tags.$in[1]");
    }
}
