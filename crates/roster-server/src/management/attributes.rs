//! Attribute definitions (management-api.md §7.3): read `people:read`, write `admin`.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    routing::get,
};
use http::{Response, StatusCode};
use roster_model::{AttributeScope, AttributeType, SchemaField, resources::AttributeDefinitionResource};
use serde_json::Value;

use super::{
    PathParams, QueryPairs,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult, Problems},
    idempotent, json_with, object, ok,
    paging::{PageRequest, page_response},
    parse_json,
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/attributes", get(list).post(create))
        .route("/attributes/{scope}/{name}", get(show).delete(remove))
}

fn scope_of(s: &str) -> Option<AttributeScope> {
    AttributeScope::parse(s)
}

async fn list(State(state): State<AppState>, caller: Caller, query: QueryPairs) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let scope = match query.get("scope") {
        None => None,
        Some(s) => Some(scope_of(s).ok_or_else(|| MgmtError::field("query.scope", "must be PERSON or INSTALLATION"))?),
    };
    let page = PageRequest::from_query("attributes", &query.pairs())?;
    let defs = state.core.definitions(caller.account_id(), scope).await?;
    let (items, next) = page.page_sorted(defs, |d| serde_json::json!([d.name, d.scope.as_str()]));
    page_response(items.iter().map(AttributeDefinitionResource::from), next)
}

async fn create(State(state): State<AppState>, caller: Caller, req: Request) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let (st, by) = (&state, &caller);
    idempotent::run(st, by, req, move |hold, bytes| async move {
        let body = parse_json(&bytes)?;
        object(&body)?;
        let mut problems = Problems::default();
        let scope = match body.get("scope").and_then(Value::as_str).and_then(scope_of) {
            Some(s) => Some(s),
            None => {
                problems.add("scope", "must be PERSON or INSTALLATION");
                None
            }
        };
        let name = match body.get("name") {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => {
                problems.add("name", "must be a string");
                None
            }
        };
        let attr_type = match body.get("type").and_then(Value::as_str).and_then(AttributeType::parse) {
            Some(t) => Some(t),
            None => {
                problems.add(
                    "type",
                    "must be one of STRING, DECIMAL, BOOLEAN, DATE, DATE_TIME, LIST_OF_OBJECTS",
                );
                None
            }
        };
        let schema = match body.get("objectSchema") {
            None | Some(Value::Null) => None,
            Some(Value::Array(fields)) => {
                let mut out = Vec::with_capacity(fields.len());
                for (i, f) in fields.iter().enumerate() {
                    let fname = f.get("name").and_then(Value::as_str);
                    let ftype = f.get("type").and_then(Value::as_str).and_then(AttributeType::parse);
                    if !f.is_object() || fname.is_none() {
                        problems.add(format!("objectSchema[{i}].name"), "must be a string");
                    }
                    if ftype.is_none() {
                        problems.add(format!("objectSchema[{i}].type"), "must be a scalar attribute type");
                    }
                    if let (Some(name), Some(field_type)) = (fname, ftype) {
                        out.push(SchemaField {
                            name: name.to_string(),
                            field_type,
                        });
                    }
                }
                Some(out)
            }
            Some(_) => {
                problems.add("objectSchema", "must be an array of {name, type}");
                None
            }
        };
        problems.finish()?;
        let (Some(scope), Some(name), Some(attr_type)) = (scope, name, attr_type) else {
            return Err(MgmtError::internal("validated fields missing"));
        };
        let def = st
            .core
            .create_definition(by.account_id(), scope, name, attr_type, schema, hold.as_ref())
            .await?;
        Ok(json_with(StatusCode::CREATED, &AttributeDefinitionResource::from(&def)))
    })
    .await
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let scope = scope_of(&p[0]).ok_or_else(|| MgmtError::not_found(format!("No attribute scope {}", p[0])))?;
    let def = state.core.definition(caller.account_id(), scope, &p[1]).await?;
    Ok(ok(&AttributeDefinitionResource::from(&def)))
}

/// `DELETE /api/v1/attributes/{scope}/{name}`: `204`; every stored value of it goes, and the
/// segments whose filter uses it become `valid: false`.
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let scope = scope_of(&p[0]).ok_or_else(|| MgmtError::not_found(format!("No attribute scope {}", p[0])))?;
    state.core.delete_definition(caller.account_id(), scope, &p[1]).await?;
    Ok(super::no_content())
}
