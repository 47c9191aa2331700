//! Applications and their JWT keys (management-api.md §7.1), scope `admin`.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    routing::{delete, get},
};
use http::{Response, StatusCode};
use roster_core::{
    admin::NewApplication,
    manage::{ApplicationChanges, ProvidersUpdate},
};
use roster_model::{
    ErrorCode,
    resources::{ApplicationResource, JwtKeyCreated, JwtKeyItem},
};
use serde_json::Value;

use super::{
    JsonBody, PathParams, QueryPairs,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult, Problems},
    idempotent, json_with, no_content, object, ok, opt_bool, opt_str,
    paging::{PageRequest, page_response},
    parse_json, providers, required_name,
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/applications", get(list).post(create))
        .route("/applications/{app_ref}", get(show).patch(change).delete(remove))
        .route(
            "/applications/{app_ref}/jwt-keys",
            get(list_jwt_keys).post(create_jwt_key),
        )
        .route("/applications/{app_ref}/jwt-keys/{kid}", delete(delete_jwt_key))
}

/// The application named by `{appRef}` (id or code) in the caller's account, else `404`.
async fn app_of(state: &AppState, caller: &Caller, app_ref: &str) -> MgmtResult<roster_model::Application> {
    state
        .core
        .find_application(caller.account_id(), app_ref)
        .await
        .map_err(|_| MgmtError::not_found(format!("No application {app_ref}")))
}

/// The `providers` member of a request as an update: checked now against `stored` (reporting every
/// problem), and applied again to the document stored when the change commits.
fn providers_update(stored: &Value, body: &Value, problems: &mut Problems) -> Option<ProvidersUpdate> {
    let patch = body.get("providers")?.clone();
    providers::apply_patch(stored, &patch, "providers", problems)?;
    Some(std::sync::Arc::new(move |current: &Value| {
        providers::apply_patch(current, &patch, "providers", &mut Problems::default())
    }))
}

async fn list(State(state): State<AppState>, caller: Caller, query: QueryPairs) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let page = PageRequest::from_query("applications", &query.pairs())?;
    let apps = state.core.list_applications(caller.account_id()).await?;
    let mut apps = apps;
    apps.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let (items, next) = page.page_sorted(apps, |a| serde_json::json!([a.created_at, a.id.to_string()]));
    page_response(items.iter().map(ApplicationResource::from), next)
}

async fn create(State(state): State<AppState>, caller: Caller, req: Request) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let (st, by) = (&state, &caller);
    idempotent::run(st, by, req, move |hold, bytes| async move {
        let body = parse_json(&bytes)?;
        object(&body)?;
        let mut problems = Problems::default();
        let name = required_name(&body, &mut problems);
        let require_jwt = opt_bool(&body, "requireJwtForUserData", &mut problems);
        let restrict = opt_bool(&body, "restrictUserDataFromSdk", &mut problems);
        let providers = providers_update(&Value::Object(Default::default()), &body, &mut problems);
        problems.finish()?;
        let new = NewApplication {
            name,
            require_jwt_for_user_data: require_jwt.unwrap_or(false),
            restrict_user_data_from_sdk: restrict.unwrap_or(false),
            providers,
        };
        let app = st
            .core
            .create_application_with(by.account_id(), &new, hold.as_ref())
            .await?;
        Ok(json_with(StatusCode::CREATED, &ApplicationResource::from(&app)))
    })
    .await
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let app = app_of(&state, &caller, &p[0]).await?;
    Ok(ok(&ApplicationResource::from(&app)))
}

async fn change(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let app = app_of(&state, &caller, &p[0]).await?;
    object(&body)?;
    let mut problems = Problems::default();
    let changes = ApplicationChanges {
        name: opt_str(&body, "name", &mut problems).map(str::to_string),
        enabled: opt_bool(&body, "enabled", &mut problems),
        require_jwt_for_user_data: opt_bool(&body, "requireJwtForUserData", &mut problems),
        restrict_user_data_from_sdk: opt_bool(&body, "restrictUserDataFromSdk", &mut problems),
        providers: providers_update(&app.providers, &body, &mut problems),
    };
    problems.finish()?;
    let app = state.core.change_application(&app, &changes).await?;
    Ok(ok(&ApplicationResource::from(&app)))
}

async fn list_jwt_keys(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    query: QueryPairs,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let app = app_of(&state, &caller, &p[0]).await?;
    let page = PageRequest::from_query(&format!("jwt-keys/{}", app.id), &query.pairs())?;
    let mut keys = state.core.list_jwt_keys(&app).await?;
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.kid.cmp(&b.kid)));
    let (items, next) = page.page_sorted(keys, |k| serde_json::json!([k.created_at, k.kid]));
    page_response(items.iter().map(JwtKeyItem::from), next)
}

async fn create_jwt_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    req: Request,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let app = app_of(&state, &caller, &p[0]).await?;
    let (st, by) = (&state, &caller);
    idempotent::run(st, by, req, move |hold, bytes| async move {
        let body = parse_json(&bytes)?;
        object(&body)?;
        let mut problems = Problems::default();
        let kid = opt_str(&body, "kid", &mut problems);
        problems.finish()?;
        let created = st.core.create_jwt_key_held(&app, kid, hold.as_ref()).await?;
        Ok(json_with(
            StatusCode::CREATED,
            &JwtKeyCreated::new(&created.key, &created.secret_base64),
        ))
    })
    .await
}

async fn delete_jwt_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let app = app_of(&state, &caller, &p[0]).await?;
    if state.core.delete_jwt_key(&app, &p[1]).await? {
        Ok(no_content())
    } else {
        Err(MgmtError::new(ErrorCode::NotFound, format!("No JWT key {}", p[1])))
    }
}

/// `DELETE /api/v1/applications/{appRef}`: `204`; the application goes with its installations
/// (and the anonymous persons they leave empty), JWT keys, messages and delivery records.
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let app = app_of(&state, &caller, &p[0]).await?;
    state.core.delete_application(&app).await?;
    Ok(no_content())
}
