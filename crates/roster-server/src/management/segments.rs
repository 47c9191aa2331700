//! Segments and segment preview (management-api.md §7.6): read and preview `people:read`, write
//! `people:write`. `POST /segments` honours `Idempotency-Key` (§3.3); the read-only preview
//! ignores it.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    routing::{get, post},
};
use http::{Response, StatusCode};
use roster_core::segments::{
    DEFAULT_SAMPLE_SIZE, MAX_SAMPLE_SIZE, PreviewRequest, Problems as CoreProblems, SegmentDraft, SegmentResource,
};
use roster_store::audience::Preview;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    JsonBody, PathParams, QueryPairs,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult, Problems},
    idempotent, json_with, no_content, object, ok, opt_bool, opt_str,
    paging::{PageRequest, page_response},
    parse_json,
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/segments", get(list).post(create))
        .route("/segments/preview", post(preview))
        .route("/segments/{id}", get(show).patch(change).delete(remove))
}

/// The segment id of the path; one that is no UUID names no segment (`404`).
fn segment_id(raw: &str) -> MgmtResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| MgmtError::not_found(format!("No segment {raw}")))
}

/// Adds the core's problems (filter, name and description rules) to the request's own.
fn merge(problems: &mut Problems, found: CoreProblems) {
    for p in found {
        problems.add(p.path, p.message);
    }
}

/// The members of a create or PATCH body, type-checked: `name` a string, `description` a string
/// (or `null` in a PATCH, to remove it), `filter` whatever it is (the filter check reports it).
fn draft_of(body: &Value, problems: &mut Problems, patch: bool) -> SegmentDraft {
    let name = opt_str(body, "name", problems).map(str::to_string);
    let description = match body.get("description") {
        None => None,
        Some(Value::Null) if patch => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            problems.add("description", "must be a string");
            None
        }
    };
    SegmentDraft {
        name,
        description,
        filter: body.get("filter").cloned(),
    }
}

/// Answers with the request's own problems, and the filter's when it has one, all at once.
async fn refuse(state: &AppState, caller: &Caller, body: &Value, mut problems: Problems) -> MgmtResult<Response<Body>> {
    if let Some(filter) = body.get("filter") {
        merge(
            &mut problems,
            state.core.check_filter(caller.account_id(), filter, "filter").await?,
        );
    }
    problems.finish()?;
    Err(MgmtError::internal("refused without a problem"))
}

async fn list(State(state): State<AppState>, caller: Caller, query: QueryPairs) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let page = PageRequest::from_query("segments", &query.pairs())?;
    let segments = state.core.segments(caller.account_id()).await?;
    // Names are unique per account: the name alone orders and keys the pages.
    let (items, next) = page.page_sorted(segments, |s| serde_json::json!([s.name]));
    page_response(items.iter().map(SegmentResource::from), next)
}

async fn create(State(state): State<AppState>, caller: Caller, req: Request) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    let (st, by) = (&state, &caller);
    idempotent::run(st, by, req, move |hold, bytes| async move {
        let body = parse_json(&bytes)?;
        object(&body)?;
        let mut problems = Problems::default();
        let draft = draft_of(&body, &mut problems, false);
        if !problems.is_empty() {
            return refuse(st, by, &body, problems).await;
        }
        match st.core.create_segment(by.account_id(), draft, hold.as_ref()).await? {
            Ok(segment) => Ok(json_with(StatusCode::CREATED, &SegmentResource::from(&segment))),
            Err(found) => {
                merge(&mut problems, found);
                problems.finish()?;
                Err(MgmtError::internal("refused without a problem"))
            }
        }
    })
    .await
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let segment = state.core.segment(caller.account_id(), segment_id(&p[0])?).await?;
    Ok(ok(&SegmentResource::from(&segment)))
}

async fn change(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    let id = segment_id(&p[0])?;
    object(&body)?;
    let mut problems = Problems::default();
    let draft = draft_of(&body, &mut problems, true);
    if !problems.is_empty() {
        return refuse(&state, &caller, &body, problems).await;
    }
    match state.core.update_segment(caller.account_id(), id, draft).await? {
        Ok(segment) => Ok(ok(&SegmentResource::from(&segment))),
        Err(found) => {
            merge(&mut problems, found);
            problems.finish()?;
            Err(MgmtError::internal("refused without a problem"))
        }
    }
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    state
        .core
        .delete_segment(caller.account_id(), segment_id(&p[0])?)
        .await?;
    Ok(no_content())
}

/// One person of a preview's sample (management-api.md §7.6).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SampleItem<'a> {
    person_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(rename = "type")]
    person_type: &'static str,
    installations: &'a [String],
}

/// The preview answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PreviewAnswer<'a> {
    people: u64,
    installations: u64,
    deliverable_installations: u64,
    sample: Vec<SampleItem<'a>>,
}

impl<'a> From<&'a Preview> for PreviewAnswer<'a> {
    fn from(p: &'a Preview) -> Self {
        PreviewAnswer {
            people: p.people,
            installations: p.installations,
            deliverable_installations: p.deliverable_installations,
            sample: p
                .sample
                .iter()
                .map(|s| SampleItem {
                    person_id: s.person.id,
                    external_user_id: s.person.external_user_id.as_deref(),
                    first_name: s.person.first_name.as_deref(),
                    person_type: s.person.person_type.as_str(),
                    installations: &s.installations,
                })
                .collect(),
        }
    }
}

/// `POST /segments/preview`: `segmentId`, `filter` (both: their conjunction; neither:
/// everything), `applicationCode`, `targetOnlyPrimaryDevices`, `sampleSize` (0–100, default 10).
async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    object(&body)?;
    let mut problems = Problems::default();
    let segment_id = match body.get("segmentId") {
        None => None,
        Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => Some(id),
            None => {
                problems.add("segmentId", "must be a segment id");
                None
            }
        },
    };
    let application_code = opt_str(&body, "applicationCode", &mut problems).map(str::to_string);
    let primary_only = opt_bool(&body, "targetOnlyPrimaryDevices", &mut problems).unwrap_or(false);
    let sample_size = match body.get("sampleSize") {
        None => DEFAULT_SAMPLE_SIZE,
        Some(v) => match v.as_u64().filter(|n| *n <= u64::from(MAX_SAMPLE_SIZE)) {
            Some(n) => n as u32,
            None => {
                problems.add("sampleSize", format!("must be an integer from 0 to {MAX_SAMPLE_SIZE}"));
                0
            }
        },
    };
    if !problems.is_empty() {
        return refuse(&state, &caller, &body, problems).await;
    }
    let req = PreviewRequest {
        segment_id,
        filter: body.get("filter").cloned(),
        application_code,
        primary_only,
        sample_size,
    };
    match state.core.preview(caller.account_id(), &req).await? {
        Ok(preview) => Ok(ok(&PreviewAnswer::from(&preview))),
        Err(found) => {
            merge(&mut problems, found);
            problems.finish()?;
            Err(MgmtError::internal("refused without a problem"))
        }
    }
}
