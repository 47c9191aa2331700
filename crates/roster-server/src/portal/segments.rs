//! Segments (management-api.md §4, §7.6): the list, and a builder for the filter language: rows of
//! conditions (field, operator, value) joined by AND or OR, or a filter typed as JSON. Every change
//! of the form asks the preview endpoint (htmx) for the exact counts and a sample of the audience,
//! or for the API's parse error; "Check" does the same without script. Save creates or updates
//! the segment; delete asks first.

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    response::IntoResponse,
    routing::{get, post},
};
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{
    Flash, Layout, PortalState,
    api::{ApiFailure, enc},
    csrf::{CsrfForm, Form},
    pages::{FieldErrors, change_then_redirect, failure_page, flash_to, text},
    send::application_choices,
    session::SignedIn,
};

pub(super) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/segments", get(list))
        .route("/segments/new", get(new_segment))
        .route("/segments/build", post(build))
        .route("/segments/preview", post(preview))
        .route("/segments/{id}", get(edit))
        .route("/segments/{id}/delete", post(delete))
}

/// The operators of §4.4 offered by the builder: (operator, label).
pub const OPERATORS: &[(&str, &str)] = &[
    ("$eq", "is"),
    ("$ne", "is not"),
    ("$in", "is one of (comma-separated)"),
    ("$nin", "is none of (comma-separated)"),
    ("$all", "contains all of (comma-separated)"),
    ("$startsWith", "starts with"),
    ("$contains", "contains"),
    ("$gt", ">"),
    ("$gte", "≥"),
    ("$lt", "<"),
    ("$lte", "≤"),
    ("$exists", "exists (true/false)"),
];

/// Fields of §4.3 offered as suggestions: (field, kind).
const STANDARD_FIELDS: &[(&str, &str)] = &[
    ("externalUserId", "STRING"),
    ("firstName", "STRING"),
    ("middleName", "STRING"),
    ("lastName", "STRING"),
    ("gender", "ENUM"),
    ("birthday", "DATE"),
    ("type", "ENUM"),
    ("phones", "MULTI"),
    ("emails", "MULTI"),
    ("tags", "MULTI"),
    ("installation.pushRegId", "STRING"),
    ("installation.pushServiceType", "ENUM"),
    ("installation.os", "STRING"),
    ("installation.osVersion", "VERSION"),
    ("installation.appVersion", "VERSION"),
    ("installation.sdkVersion", "VERSION"),
    ("installation.deviceManufacturer", "STRING"),
    ("installation.deviceModel", "STRING"),
    ("installation.deviceName", "STRING"),
    ("installation.language", "STRING"),
    ("installation.deviceTimezoneOffset", "STRING"),
    ("installation.applicationUserId", "STRING"),
    ("installation.regEnabled", "BOOLEAN"),
    ("installation.notificationsEnabled", "BOOLEAN"),
    ("installation.deviceSecure", "BOOLEAN"),
    ("installation.isPrimary", "BOOLEAN"),
    ("installation.hasPushServiceToken", "BOOLEAN"),
    ("installation.createdAt", "DATE_TIME"),
    ("installation.lastSeenAt", "DATE_TIME"),
];

/// One condition row of the builder.
#[derive(Debug, Clone, Default)]
pub struct Condition {
    pub field: String,
    pub op: String,
    pub value: String,
}

/// The builder's form.
#[derive(Debug, Clone, Default)]
pub struct BuilderForm {
    /// The segment being edited (empty: a new one).
    pub id: String,
    pub name: String,
    pub description: String,
    /// `and` or `or`.
    pub combine: String,
    pub rows: Vec<Condition>,
    /// A filter typed as JSON; when filled it is used instead of the rows.
    pub raw: String,
    /// The application the preview looks at (empty: all).
    pub app: String,
    pub primary_only: bool,
    pub errors: FieldErrors,
}

/// The live preview: the filter sent and the API's answer.
#[derive(Debug, Clone, Default)]
pub struct PreviewView {
    /// The filter as compact JSON (empty when it could not be built).
    pub filter: String,
    pub error: Option<String>,
    pub people: i64,
    pub installations: i64,
    pub deliverable: i64,
    /// (person id, name, type, installation count).
    pub sample: Vec<(String, String, String, usize)>,
    /// Whether counts were computed.
    pub computed: bool,
}

/// The preview fragment (the answer to the htmx request).
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/segment_preview.html")]
pub struct PreviewFragment {
    pub prefix: String,
    pub preview: PreviewView,
}

/// The builder page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/segment.html")]
pub struct SegmentPage {
    pub layout: Layout,
    pub prefix: String,
    pub form: BuilderForm,
    pub preview: PreviewView,
    pub operators: &'static [(&'static str, &'static str)],
    /// Field suggestions (standard fields and defined custom attributes).
    pub fields: Vec<String>,
    pub apps: Option<Vec<(String, String)>>,
}

/// One saved segment of the list.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub filter: String,
    pub valid: bool,
    pub updated_at: String,
}

/// The segments page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/segments.html")]
pub struct SegmentsPage {
    pub layout: Layout,
    pub segments: Vec<SegmentRow>,
    pub error: Option<String>,
    /// A segment waiting for the delete confirmation: (id, name).
    pub confirm: Option<(String, String)>,
}

// --- filter <-> rows ------------------------------------------------------------------------------

/// Field kinds for typing values: standard fields, then the account's definitions (§4.3 forms).
async fn kinds(portal: &PortalState, session: &SignedIn) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = STANDARD_FIELDS
        .iter()
        .map(|(f, k)| (f.to_string(), k.to_string()))
        .collect();
    // Without people:read there are no definitions to offer; values are then typed by their look.
    if let Ok(page) = portal.api_get(&session.caller, "/attributes?limit=500").await {
        for d in page["items"].as_array().into_iter().flatten() {
            let (name, kind) = (text(&d["name"]), text(&d["type"]));
            if d["scope"] == "INSTALLATION" {
                out.insert(format!("installation.customAttributes.{name}"), kind);
            } else {
                out.insert(format!("customAttributes.{name}"), kind.clone());
                out.entry(name).or_insert(kind);
            }
        }
    }
    out
}

/// One operand typed for the field's kind: a number for DECIMAL, a boolean for BOOLEAN, a string
/// otherwise; for a field of unknown kind, a JSON number or boolean when it reads as one.
fn operand(kind: Option<&str>, raw: &str) -> Value {
    let raw = raw.trim();
    match kind {
        Some("DECIMAL") => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| json!(raw), Value::Number),
        Some("BOOLEAN") => match raw {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(raw),
        },
        Some(_) => json!(raw),
        None => match serde_json::from_str::<Value>(raw) {
            Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
            _ => json!(raw),
        },
    }
}

/// The filter of the builder's rows.
fn rows_filter(form: &BuilderForm, kinds: &BTreeMap<String, String>) -> Value {
    let conditions: Vec<Value> = form
        .rows
        .iter()
        .filter(|r| !r.field.trim().is_empty())
        .map(|r| {
            let field = r.field.trim();
            let kind = kinds.get(field).map(String::as_str);
            let op = if r.op.is_empty() { "$eq" } else { r.op.as_str() };
            let value = match op {
                "$in" | "$nin" | "$all" => Value::Array(
                    r.value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| operand(kind, v))
                        .collect(),
                ),
                "$exists" => json!(r.value.trim() != "false"),
                _ => operand(kind, &r.value),
            };
            json!({ field: { op: value } })
        })
        .collect();
    match conditions.len() {
        0 => json!({}),
        1 => conditions.into_iter().next().unwrap_or_default(),
        _ if form.combine == "or" => json!({ "$or": conditions }),
        _ => json!({ "$and": conditions }),
    }
}

/// The filter of the form: the JSON text when filled, else the rows.
fn form_filter(form: &BuilderForm, kinds: &BTreeMap<String, String>) -> Result<Value, String> {
    if form.raw.trim().is_empty() {
        return Ok(rows_filter(form, kinds));
    }
    serde_json::from_str::<Value>(&form.raw).map_err(|e| format!("The filter is not valid JSON: {e}"))
}

/// A row's value as text.
fn value_text(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => text(other),
    }
}

/// The rows of a saved filter when it has the builder's shape (one condition, a conjunction of
/// fields, or `$and`/`$or` of single conditions, each one operator); `None` otherwise.
fn decompose(filter: &Value) -> Option<(String, Vec<Condition>)> {
    fn single(field: &str, v: &Value) -> Option<Condition> {
        if field.starts_with('$') {
            return None;
        }
        match v {
            Value::Object(ops) if ops.len() == 1 => {
                let (op, value) = ops.iter().next()?;
                if !OPERATORS.iter().any(|(o, _)| o == op) || value.is_object() {
                    return None;
                }
                Some(Condition {
                    field: field.into(),
                    op: op.clone(),
                    value: value_text(value),
                })
            }
            Value::Object(_) | Value::Array(_) | Value::Null => None,
            literal => Some(Condition {
                field: field.into(),
                op: "$eq".into(),
                value: value_text(literal),
            }),
        }
    }
    let obj = filter.as_object()?;
    for combine in ["$and", "$or"] {
        if obj.len() == 1
            && let Some(list) = obj.get(combine).and_then(Value::as_array)
        {
            let rows = list
                .iter()
                .map(|c| {
                    let o = c.as_object().filter(|o| o.len() == 1)?;
                    let (f, v) = o.iter().next()?;
                    single(f, v)
                })
                .collect::<Option<Vec<_>>>()?;
            return Some((combine.trim_start_matches('$').to_string(), rows));
        }
    }
    let rows = obj.iter().map(|(f, v)| single(f, v)).collect::<Option<Vec<_>>>()?;
    Some(("and".into(), rows))
}

// --- preview ---------------------------------------------------------------------------------------

/// Asks `POST /segments/preview` for the form's filter.
async fn compute_preview(
    portal: &PortalState,
    session: &SignedIn,
    form: &BuilderForm,
    kinds: &BTreeMap<String, String>,
) -> PreviewView {
    let filter = match form_filter(form, kinds) {
        Ok(f) => f,
        Err(e) => {
            return PreviewView {
                error: Some(e),
                ..PreviewView::default()
            };
        }
    };
    let mut body = json!({"filter": filter, "sampleSize": 10, "targetOnlyPrimaryDevices": form.primary_only});
    if !form.app.trim().is_empty() {
        body["applicationCode"] = json!(form.app.trim());
    }
    let mut view = PreviewView {
        filter: filter.to_string(),
        ..PreviewView::default()
    };
    match portal
        .api(&session.caller, Method::POST, "/segments/preview", Some(&body))
        .await
        .and_then(|a| a.json())
    {
        Ok(p) => {
            view.computed = true;
            view.people = p["people"].as_i64().unwrap_or(0);
            view.installations = p["installations"].as_i64().unwrap_or(0);
            view.deliverable = p["deliverableInstallations"].as_i64().unwrap_or(0);
            view.sample = p["sample"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let name = match (s["firstName"].as_str(), s["externalUserId"].as_str()) {
                        (Some(first), _) => first.to_string(),
                        (None, Some(ext)) => ext.to_string(),
                        (None, None) => "Anonymous person".to_string(),
                    };
                    (
                        text(&s["personId"]),
                        name,
                        text(&s["type"]),
                        s["installations"].as_array().map_or(0, Vec::len),
                    )
                })
                .collect();
        }
        Err(f) => view.error = Some(f.message()),
    }
    view
}

/// The builder form of a POST.
fn read_form(f: &Form) -> BuilderForm {
    let get = |k: &str| f.get(k).unwrap_or("").to_string();
    let fields = f.all("cf");
    let ops = f.all("co");
    let values = f.all("cv");
    BuilderForm {
        id: get("id"),
        name: get("name").trim().to_string(),
        description: get("description"),
        combine: if f.get("combine") == Some("or") {
            "or".into()
        } else {
            "and".into()
        },
        rows: fields
            .iter()
            .enumerate()
            .map(|(i, field)| Condition {
                field: field.to_string(),
                op: ops.get(i).copied().unwrap_or("$eq").to_string(),
                value: values.get(i).copied().unwrap_or("").to_string(),
            })
            .collect(),
        raw: get("raw"),
        app: get("app"),
        primary_only: f.get("primaryOnly").is_some(),
        errors: FieldErrors::new(),
    }
}

/// `POST /portal/segments/preview` (htmx): the preview fragment of the form as it is now.
async fn preview(State(portal): State<PortalState>, post: CsrfForm) -> Response<Body> {
    let form = read_form(&post.form);
    let kinds = kinds(&portal, &post.session).await;
    PreviewFragment {
        prefix: portal.prefix.clone(),
        preview: compute_preview(&portal, &post.session, &form, &kinds).await,
    }
    .into_response()
}

// --- pages -----------------------------------------------------------------------------------------

async fn builder_page(
    portal: &PortalState,
    session: &SignedIn,
    mut form: BuilderForm,
    with_preview: bool,
) -> SegmentPage {
    let kinds = kinds(portal, session).await;
    let preview = if with_preview {
        compute_preview(portal, session, &form, &kinds).await
    } else {
        PreviewView::default()
    };
    if form.rows.is_empty() {
        form.rows.push(Condition::default());
    }
    let title = if form.id.is_empty() {
        "New segment".to_string()
    } else {
        format!("Segment {}", form.name)
    };
    SegmentPage {
        layout: session.layout(portal, title, "segments"),
        prefix: portal.prefix.clone(),
        form,
        preview,
        operators: OPERATORS,
        fields: kinds.keys().cloned().collect(),
        apps: application_choices(portal, session).await,
    }
}

/// `GET /portal/segments?delete=ID`.
async fn list(State(portal): State<PortalState>, session: SignedIn, query: Form) -> Response<Body> {
    let (segments, error) = match portal.api_get(&session.caller, "/segments?limit=500").await {
        Ok(page) => (
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| SegmentRow {
                    id: text(&s["id"]),
                    name: text(&s["name"]),
                    description: text(&s["description"]),
                    filter: s["filter"].to_string(),
                    valid: s["valid"] != false,
                    updated_at: text(&s["updatedAt"]),
                })
                .collect::<Vec<_>>(),
            None,
        ),
        Err(f) => (Vec::new(), Some(f.message())),
    };
    let confirm = query
        .get("delete")
        .and_then(|id| segments.iter().find(|s| s.id == id))
        .map(|s| (s.id.clone(), s.name.clone()));
    SegmentsPage {
        layout: session.layout(&portal, "Segments", "segments"),
        segments,
        error,
        confirm,
    }
    .into_response()
}

/// `GET /portal/segments/new`: an empty builder, previewing everything.
async fn new_segment(State(portal): State<PortalState>, session: SignedIn) -> Response<Body> {
    let form = BuilderForm {
        combine: "and".into(),
        ..BuilderForm::default()
    };
    builder_page(&portal, &session, form, true).await.into_response()
}

/// `GET /portal/segments/{id}`: the builder with the saved segment (its filter as rows when it
/// has the builder's shape, else as JSON text).
async fn edit(State(portal): State<PortalState>, session: SignedIn, Path(id): Path<String>) -> Response<Body> {
    let s = match portal
        .api_get(&session.caller, &format!("/segments/{}", enc(&id)))
        .await
    {
        Ok(s) => s,
        Err(f) => return failure_page(&portal, &f),
    };
    let (combine, rows, raw) = match decompose(&s["filter"]) {
        Some((combine, rows)) => (combine, rows, String::new()),
        None => (
            "and".to_string(),
            Vec::new(),
            serde_json::to_string_pretty(&s["filter"]).unwrap_or_default(),
        ),
    };
    let form = BuilderForm {
        id: text(&s["id"]),
        name: text(&s["name"]),
        description: text(&s["description"]),
        combine,
        rows,
        raw,
        ..BuilderForm::default()
    };
    let mut page = builder_page(&portal, &session, form, true).await;
    if s["valid"] == false {
        page.layout.flash = Some(Flash::error(
            "This segment is not valid: an attribute it uses was deleted. Change its filter and save.",
        ));
    }
    page.into_response()
}

/// `POST /portal/segments/build`: `action` = `add-row`, `remove-row-N`, `check` (the builder
/// again, with the preview) or `save` (create, or update when `id` is set).
async fn build(State(portal): State<PortalState>, post: CsrfForm) -> Response<Body> {
    let CsrfForm { session, form: f, .. } = post;
    let mut form = read_form(&f);
    let action = f.get("action").unwrap_or("check");
    if action == "add-row" {
        form.rows.push(Condition::default());
        return builder_page(&portal, &session, form, true).await.into_response();
    }
    if let Some(i) = action.strip_prefix("remove-row-").and_then(|i| i.parse::<usize>().ok()) {
        if i < form.rows.len() {
            form.rows.remove(i);
        }
        return builder_page(&portal, &session, form, true).await.into_response();
    }
    if action != "save" {
        return builder_page(&portal, &session, form, true).await.into_response();
    }
    let kinds = kinds(&portal, &session).await;
    let failure = match form_filter(&form, &kinds) {
        Err(e) => ApiFailure {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST".into(),
            text: e.clone(),
            fields: [("filter".to_string(), vec![e])].into_iter().collect(),
        },
        Ok(filter) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(form.name));
            body.insert("description".into(), json!(form.description));
            body.insert("filter".into(), filter);
            let (method, path) = if form.id.is_empty() {
                (Method::POST, "/segments".to_string())
            } else {
                (Method::PATCH, format!("/segments/{}", enc(&form.id)))
            };
            match portal
                .api(&session.caller, method, &path, Some(&Value::Object(body)))
                .await
                .and_then(|a| a.json())
            {
                Ok(s) => {
                    let flash = Flash::ok(format!("Segment “{}” saved.", text(&s["name"])));
                    return flash_to(&portal, &session, flash, &format!("/segments/{}", enc(&text(&s["id"])))).await;
                }
                Err(f) => f,
            }
        }
    };
    for (path, messages) in &failure.fields {
        let field = if path.starts_with("filter") {
            "filter"
        } else {
            path.as_str()
        };
        form.errors
            .entry(field.to_string())
            .or_default()
            .extend(messages.iter().cloned());
    }
    let mut page = builder_page(&portal, &session, form, true).await;
    page.layout.flash = Some(Flash::error(format!("Not saved: {}", failure.message())));
    (failure.status, page).into_response()
}

/// `POST /portal/segments/{id}/delete` (`confirm=delete`).
async fn delete(State(portal): State<PortalState>, Path(id): Path<String>, post: CsrfForm) -> Response<Body> {
    let session = post.session;
    if post.form.get("confirm") != Some("delete") {
        return flash_to(
            &portal,
            &session,
            Flash::error("Not deleted: confirm first."),
            &format!("/segments?delete={}", enc(&id)),
        )
        .await;
    }
    let path = format!("/segments/{}", enc(&id));
    let done = "Segment deleted (messages already accepted are unaffected).".to_string();
    change_then_redirect(
        &portal,
        &session,
        Method::DELETE,
        &path,
        None,
        done,
        "Not deleted",
        "/segments",
    )
    .await
}
