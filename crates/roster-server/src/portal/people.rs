//! People pages: search, the person page and its actions (edit attributes and tags, set the
//! primary installation, depersonalize an installation, GDPR export and erase, merge reversal).
//! Every read and change is a call of the management API (management-api.md §7.4, §7.5, §7.8,
//! §8) as the signed-in key; every action is a CSRF-checked POST answered by a redirect back to
//! the person page with a one-time message (POST/redirect/GET), except a refused edit, which
//! shows the form again with the values sent and the API's errors next to the fields.

use std::collections::BTreeMap;

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    response::IntoResponse,
    routing::{get, post},
};
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    Flash, Layout, PortalState,
    api::{ApiFailure, enc},
    csrf::{CsrfForm, Form},
    pages::{FieldErrors, change_then_redirect, failure_page, flash_to},
    see_other,
    session::{SignedIn, SignedInForDownload},
};
use crate::management::auth::Scope;

pub(super) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/people", get(search))
        .route("/people/{id}", get(person))
        .route("/people/{id}/edit", post(edit))
        .route("/people/{id}/export", get(export))
        .route("/people/{id}/erase", get(erase_confirm).post(erase))
        .route("/installations/{id}/primary", post(make_primary))
        .route("/installations/{id}/depersonalize", post(depersonalize))
        .route("/merges/{id}/reverse", post(reverse_merge))
}

/// People shown per search page.
const PAGE_SIZE: usize = 25;

// --- search --------------------------------------------------------------------------------------

/// One row of the search results.
#[derive(Debug, Clone)]
pub struct PersonRow {
    pub id: String,
    pub name: String,
    pub external_user_id: String,
    pub person_type: String,
    pub contact: String,
    pub tags: String,
    pub installations: usize,
    /// How it was found (`pushRegId`, `phone`, ..., `name`).
    pub found_by: &'static str,
}

/// The people search page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/people.html")]
pub struct SearchPage {
    pub layout: Layout,
    pub q: String,
    pub rows: Vec<PersonRow>,
    /// The cursor of the next page of the name search.
    pub next: Option<String>,
    pub error: Option<String>,
}

/// The display name of a person resource.
fn display_name(p: &Value) -> String {
    let parts: Vec<&str> = ["firstName", "middleName", "lastName"]
        .iter()
        .filter_map(|f| p[*f].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    if !parts.is_empty() {
        parts.join(" ")
    } else if let Some(ext) = p["externalUserId"].as_str() {
        ext.to_string()
    } else {
        "Anonymous person".to_string()
    }
}

fn strings(v: &Value, member: Option<&str>) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| match member {
                    Some(m) => x[m].as_str(),
                    None => x.as_str(),
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn row(p: &Value, found_by: &'static str) -> PersonRow {
    let mut contact = strings(&p["phones"], Some("number"));
    contact.extend(strings(&p["emails"], Some("address")));
    PersonRow {
        id: p["id"].as_str().unwrap_or_default().to_string(),
        name: display_name(p),
        external_user_id: p["externalUserId"].as_str().unwrap_or_default().to_string(),
        person_type: p["type"].as_str().unwrap_or_default().to_string(),
        contact: contact.join(", "),
        tags: strings(&p["tags"], None).join(", "),
        installations: p["installations"].as_array().map_or(0, Vec::len),
        found_by,
    }
}

/// Whether `q` could be a phone number (people.md §3.2: digits after removing separators).
fn phone_like(q: &str) -> bool {
    let digits: String = q
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '+'))
        .collect();
    (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

/// `GET /portal/people?q=&cursor=`: one box for every way to find a person. The exact look-ups
/// come first (pushRegId or person id when `q` is a UUID, phone when it reads as one, email when
/// it has an `@`, always externalUserId), then a name search (first, middle or last name, or
/// externalUserId, containing `q`, case-insensitive) through the people search API, paged with
/// its keyset cursor. An empty box lists everyone.
async fn search(State(portal): State<PortalState>, session: SignedIn, query: Form) -> Response<Body> {
    let q = query.get("q").unwrap_or("").trim().to_string();
    let cursor = query.get("cursor").filter(|c| !c.is_empty()).map(str::to_string);
    let caller = &session.caller;
    let mut rows: Vec<PersonRow> = Vec::new();
    let mut error = None;
    if !q.is_empty() && cursor.is_none() {
        let mut lookups: Vec<(&'static str, String)> = Vec::new();
        if Uuid::parse_str(&q).is_ok() {
            lookups.push(("pushRegId", format!("/people/lookup?pushRegId={}", enc(&q))));
            lookups.push(("person id", format!("/people/{}", enc(&q))));
        }
        if q.contains('@') {
            lookups.push(("email", format!("/people/lookup?email={}", enc(&q))));
        }
        if phone_like(&q) {
            lookups.push(("phone", format!("/people/lookup?phone={}", enc(&q))));
        }
        lookups.push(("externalUserId", format!("/people/lookup?externalUserId={}", enc(&q))));
        for (by, path) in lookups {
            match portal.api_get(caller, &path).await {
                Ok(p) => {
                    if !rows.iter().any(|r| Some(r.id.as_str()) == p["id"].as_str()) {
                        rows.push(row(&p, by));
                    }
                }
                // Not found, or not a valid key of that kind: the next way may find it.
                Err(f) if f.status == StatusCode::NOT_FOUND || f.status == StatusCode::BAD_REQUEST => {}
                Err(f) => {
                    error = Some(f.message());
                    break;
                }
            }
        }
    }
    let filter = if q.is_empty() {
        json!({})
    } else {
        json!({"$or": [
            {"firstName": {"$contains": q}},
            {"middleName": {"$contains": q}},
            {"lastName": {"$contains": q}},
            {"externalUserId": {"$contains": q}},
        ]})
    };
    let mut next = None;
    if error.is_none() {
        let mut body = json!({"filter": filter, "limit": PAGE_SIZE});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        match portal.api(caller, Method::POST, "/people/search", Some(&body)).await {
            Ok(answer) => match answer.json() {
                Ok(page) => {
                    for p in page["items"].as_array().into_iter().flatten() {
                        if !rows.iter().any(|r| Some(r.id.as_str()) == p["id"].as_str()) {
                            rows.push(row(p, if q.is_empty() { "" } else { "name" }));
                        }
                    }
                    next = page["nextCursor"].as_str().map(str::to_string);
                }
                Err(f) => error = Some(f.message()),
            },
            Err(f) => error = Some(f.message()),
        }
    }
    SearchPage {
        layout: session.layout(&portal, "People", "people"),
        q,
        rows,
        next,
        error,
    }
    .into_response()
}

// --- the person page ----------------------------------------------------------------------------

/// A table of a LIST_OF_OBJECTS value.
#[derive(Debug, Clone)]
pub struct TableView {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A custom attribute with its type, for display.
#[derive(Debug, Clone)]
pub struct AttributeView {
    pub name: String,
    pub type_name: String,
    /// A scalar value as text.
    pub text: Option<String>,
    /// A list of objects.
    pub table: Option<TableView>,
}

/// An installation of the person.
#[derive(Debug, Clone)]
pub struct InstallationView {
    pub push_reg_id: String,
    pub application: String,
    pub primary: bool,
    pub reg_enabled: bool,
    pub notifications_enabled: Option<bool>,
    pub deliverable: bool,
    pub has_token: bool,
    /// The push service type and, when a token was cleared, when and why.
    pub token_note: String,
    pub system: Vec<(&'static str, String)>,
    pub custom: Vec<AttributeView>,
    /// The query of the Send page addressed to this installation alone, in its application.
    pub send_query: String,
}

/// A merge-log entry naming the person.
#[derive(Debug, Clone)]
pub struct MergeView {
    pub id: String,
    pub created_at: String,
    pub push_reg_id: String,
    pub summary: String,
    pub status: String,
    pub can_reverse: bool,
}

/// One custom attribute input of the edit form.
#[derive(Debug, Clone)]
pub struct CustomInput {
    pub name: String,
    pub type_name: String,
    /// `text`, `number`, `bool`, `date` or `json`.
    pub kind: &'static str,
    pub value: String,
    pub errors: Vec<String>,
}

/// The edit form's values (the person's, or those just sent) and errors per form field.
#[derive(Debug, Clone, Default)]
pub struct EditForm {
    pub version: String,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub gender: String,
    pub birthday: String,
    pub external_user_id: String,
    pub person_type: String,
    pub phones: String,
    pub emails: String,
    pub tags: String,
    pub custom: Vec<CustomInput>,
    pub errors: FieldErrors,
}

/// The person page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/person.html")]
pub struct PersonPage {
    pub layout: Layout,
    pub id: String,
    pub name: String,
    pub person_type: String,
    pub version: String,
    pub created_at: String,
    pub updated_at: String,
    pub standard: Vec<(&'static str, String)>,
    pub external_user_id: String,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub tags: Vec<String>,
    pub custom: Vec<AttributeView>,
    pub installations: Vec<InstallationView>,
    pub merges: Vec<MergeView>,
    /// Why the merge history could not be read (e.g. a scope), if so.
    pub merges_error: Option<String>,
    pub edit: EditForm,
    /// The edit form is open (it was refused and shows the values sent).
    pub edit_open: bool,
    pub can_write: bool,
    /// The key may send pushes (the Send links are shown).
    pub can_send: bool,
    /// The query of the Send page addressed to this person: by externalUserId, else by one of
    /// its installations (the form then sends to all of the person's installations); `None`
    /// for a person with neither.
    pub send_query: Option<String>,
}

/// Attribute definitions of one scope: name → (type, item field names).
type Definitions = BTreeMap<String, (String, Vec<String>)>;

async fn definitions(portal: &PortalState, session: &SignedIn, scope: &str) -> Definitions {
    let mut out = Definitions::new();
    // A key without people:read sees no definitions; values then show without their type.
    if let Ok(page) = portal
        .api_get(&session.caller, &format!("/attributes?scope={scope}&limit=500"))
        .await
    {
        for d in page["items"].as_array().into_iter().flatten() {
            let fields = d["objectSchema"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|f| f["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(
                d["name"].as_str().unwrap_or_default().to_string(),
                (d["type"].as_str().unwrap_or_default().to_string(), fields),
            );
        }
    }
    out
}

/// A scalar JSON value as text.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn attribute_views(values: &Value, defs: &Definitions) -> Vec<AttributeView> {
    let Some(map) = values.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, v)| {
            let (type_name, fields) = defs.get(name).cloned().unwrap_or_default();
            let table = v.as_array().map(|items| {
                let mut columns = fields.clone();
                for item in items {
                    for key in item.as_object().into_iter().flat_map(|o| o.keys()) {
                        if !columns.contains(key) {
                            columns.push(key.clone());
                        }
                    }
                }
                let rows = items
                    .iter()
                    .map(|item| columns.iter().map(|c| scalar_text(&item[c.as_str()])).collect())
                    .collect();
                TableView { columns, rows }
            });
            AttributeView {
                name: name.clone(),
                type_name: if type_name.is_empty() { "?".into() } else { type_name },
                text: table.is_none().then(|| scalar_text(v)),
                table,
            }
        })
        .collect()
}

const SYSTEM_FIELDS: &[(&str, &str)] = &[
    ("os", "OS"),
    ("osVersion", "OS version"),
    ("deviceManufacturer", "Manufacturer"),
    ("deviceModel", "Model"),
    ("deviceName", "Device name"),
    ("deviceSecure", "Device secure"),
    ("language", "Language"),
    ("deviceTimezoneOffset", "Time zone"),
    ("appVersion", "App version"),
    ("sdkVersion", "SDK version"),
    ("applicationUserId", "Application user id"),
    ("createdAt", "Registered"),
    ("lastSeenAt", "Last seen"),
];

fn installation_view(i: &Value, apps: &BTreeMap<String, String>, defs: &Definitions) -> InstallationView {
    let code = i["applicationCode"].as_str().unwrap_or_default();
    let application = match apps.get(code) {
        Some(name) => format!("{name} ({}…)", code.get(..8).unwrap_or(code)),
        None => code.to_string(),
    };
    let mut token_note = i["pushServiceType"].as_str().unwrap_or("no push service").to_string();
    if let Some(at) = i["tokenClearedAt"].as_str() {
        let reason = i["tokenClearedReason"].as_str().unwrap_or("");
        token_note.push_str(&format!("; token cleared {at} ({reason})"));
    }
    InstallationView {
        push_reg_id: i["pushRegId"].as_str().unwrap_or_default().to_string(),
        application,
        primary: i["isPrimary"].as_bool().unwrap_or(false),
        reg_enabled: i["regEnabled"].as_bool().unwrap_or(false),
        notifications_enabled: i["notificationsEnabled"].as_bool(),
        deliverable: i["deliverable"].as_bool().unwrap_or(false),
        has_token: i["hasPushServiceToken"].as_bool().unwrap_or(false),
        token_note,
        system: SYSTEM_FIELDS
            .iter()
            .filter(|(f, _)| !i[*f].is_null())
            .map(|(f, label)| (*label, scalar_text(&i[*f])))
            .collect(),
        custom: attribute_views(&i["customAttributes"], defs),
        send_query: format!(
            "target=installation&value={}&app={}",
            enc(i["pushRegId"].as_str().unwrap_or_default()),
            enc(code)
        ),
    }
}

/// The Send page's query for a test push to the person `p` (see [`PersonPage::send_query`]).
fn person_send_query(p: &Value) -> Option<String> {
    if let Some(ext) = p["externalUserId"].as_str().filter(|e| !e.is_empty()) {
        return Some(format!("target=externalUserId&value={}", enc(ext)));
    }
    let first = p["installations"].as_array()?.first()?;
    Some(format!(
        "target=person&value={}&app={}",
        enc(first["pushRegId"].as_str()?),
        enc(first["applicationCode"].as_str().unwrap_or_default())
    ))
}

fn merge_view(e: &Value, person_id: &str) -> MergeView {
    let source = e["sourcePersonId"].as_str();
    let target = e["targetPersonId"].as_str();
    let summary = if target == Some(person_id) {
        match source {
            Some(s) if e["sourceDeleted"].as_bool() == Some(true) => {
                format!("Person {s} was merged into this person (and deleted)")
            }
            Some(s) => format!("An installation of person {s} moved to this person"),
            None => "An erased person was merged into this person".to_string(),
        }
    } else {
        match target {
            Some(t) => format!("This person's installation moved to person {t}"),
            None => "This person's installation moved to an erased person".to_string(),
        }
    };
    MergeView {
        id: e["id"].as_str().unwrap_or_default().to_string(),
        created_at: e["createdAt"].as_str().unwrap_or_default().to_string(),
        push_reg_id: e["pushRegId"].as_str().unwrap_or_default().to_string(),
        summary,
        status: e["status"].as_str().unwrap_or_default().to_string(),
        can_reverse: e["reversible"].as_bool() == Some(true) && e["status"].as_str() == Some("APPLIED"),
    }
}

/// The inputs of the person's custom attributes (every PERSON definition, and any value
/// without one).
fn custom_inputs(values: &Value, defs: &Definitions) -> Vec<CustomInput> {
    let mut names: Vec<String> = defs.keys().cloned().collect();
    for name in values.as_object().into_iter().flat_map(|o| o.keys()) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let type_name = defs.get(&name).map(|d| d.0.clone()).unwrap_or_default();
            let v = &values[name.as_str()];
            let kind = match type_name.as_str() {
                "DECIMAL" => "number",
                "BOOLEAN" => "bool",
                "DATE" => "date",
                "LIST_OF_OBJECTS" => "json",
                _ => "text",
            };
            let value = match (kind, v) {
                (_, Value::Null) => String::new(),
                ("json", v) => serde_json::to_string_pretty(v).unwrap_or_default(),
                (_, v) => scalar_text(v),
            };
            CustomInput {
                name,
                type_name,
                kind,
                value,
                errors: Vec::new(),
            }
        })
        .collect()
}

/// The edit form filled with the person's current values.
fn edit_form(p: &Value, defs: &Definitions) -> EditForm {
    let s = |f: &str| p[f].as_str().unwrap_or_default().to_string();
    EditForm {
        version: p["version"].as_i64().map(|v| v.to_string()).unwrap_or_default(),
        first_name: s("firstName"),
        middle_name: s("middleName"),
        last_name: s("lastName"),
        gender: s("gender"),
        birthday: s("birthday"),
        external_user_id: s("externalUserId"),
        person_type: s("type"),
        phones: strings(&p["phones"], Some("number")).join("\n"),
        emails: strings(&p["emails"], Some("address")).join("\n"),
        tags: strings(&p["tags"], None).join("\n"),
        custom: custom_inputs(&p["customAttributes"], defs),
        errors: FieldErrors::new(),
    }
}

/// Everything the person page shows, read through the API.
async fn load_person(
    portal: &PortalState,
    session: &SignedIn,
    id: &str,
) -> Result<(Value, Definitions, PersonPage), ApiFailure> {
    let p = portal.api_get(&session.caller, &format!("/people/{}", enc(id))).await?;
    let person_defs = definitions(portal, session, "PERSON").await;
    let inst_defs = definitions(portal, session, "INSTALLATION").await;
    // Application names need `admin`; other keys see the application codes.
    let mut apps = BTreeMap::new();
    if session.caller.has(Scope::Admin)
        && let Ok(page) = portal.api_get(&session.caller, "/applications?limit=500").await
    {
        for a in page["items"].as_array().into_iter().flatten() {
            if let (Some(code), Some(name)) = (a["applicationCode"].as_str(), a["name"].as_str()) {
                apps.insert(code.to_string(), name.to_string());
            }
        }
    }
    let (merges, merges_error) = match portal
        .api_get(&session.caller, &format!("/merges?personId={}&limit=50", enc(id)))
        .await
    {
        Ok(page) => (
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| merge_view(e, id))
                .collect(),
            None,
        ),
        Err(f) => (Vec::new(), Some(f.message())),
    };
    let standard = [
        ("First name", "firstName"),
        ("Middle name", "middleName"),
        ("Last name", "lastName"),
        ("Gender", "gender"),
        ("Birthday", "birthday"),
    ]
    .iter()
    .filter_map(|(label, f)| p[*f].as_str().map(|v| (*label, v.to_string())))
    .collect();
    let page = PersonPage {
        layout: session.layout(portal, display_name(&p), "people"),
        id: p["id"].as_str().unwrap_or(id).to_string(),
        name: display_name(&p),
        person_type: p["type"].as_str().unwrap_or_default().to_string(),
        version: p["version"].as_i64().map(|v| v.to_string()).unwrap_or_default(),
        created_at: p["createdAt"].as_str().unwrap_or_default().to_string(),
        updated_at: p["updatedAt"].as_str().unwrap_or_default().to_string(),
        standard,
        external_user_id: p["externalUserId"].as_str().unwrap_or_default().to_string(),
        phones: strings(&p["phones"], Some("number")),
        emails: strings(&p["emails"], Some("address")),
        tags: strings(&p["tags"], None),
        custom: attribute_views(&p["customAttributes"], &person_defs),
        installations: p["installations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| installation_view(i, &apps, &inst_defs))
            .collect(),
        merges,
        merges_error,
        edit: edit_form(&p, &person_defs),
        edit_open: false,
        can_write: session.caller.has(Scope::PeopleWrite),
        can_send: session.caller.has(Scope::PushSend),
        send_query: person_send_query(&p),
    };
    Ok((p, person_defs, page))
}

/// `GET /portal/people/{id}`.
async fn person(State(portal): State<PortalState>, session: SignedIn, Path(id): Path<String>) -> Response<Body> {
    match load_person(&portal, &session, &id).await {
        Ok((_, _, page)) => page.into_response(),
        Err(f) => failure_page(&portal, &f),
    }
}

// --- actions ---------------------------------------------------------------------------------------

/// The person page path of a form's `person` field (a UUID, so never an open redirect).
fn back_to(form: &Form) -> String {
    match form.get("person").and_then(|p| Uuid::parse_str(p).ok()) {
        Some(id) => format!("/people/{id}"),
        None => "/people".to_string(),
    }
}

/// The lines of a textarea, trimmed, without empty ones.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A custom attribute input as its JSON value (`Null` when empty), or why it is not one.
fn custom_value(kind: &str, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    match kind {
        "number" => raw
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .map(|n| match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
                _ => n,
            })
            .ok_or_else(|| "must be a number".to_string()),
        "bool" => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("must be true or false".to_string()),
        },
        "json" => serde_json::from_str::<Value>(raw)
            .map_err(|e| format!("must be a JSON list of objects ({e})"))
            .and_then(|v| {
                if v.as_array().is_some_and(|a| a.iter().all(Value::is_object)) {
                    Ok(v)
                } else {
                    Err("must be a JSON list of objects, e.g. [{\"sku\": \"A1\"}]".to_string())
                }
            }),
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// The form field an API error path belongs to (`phones[1]` → `phones`,
/// `customAttributes.points` → `ca.points`).
fn form_field(path: &str) -> String {
    if let Some(name) = path.strip_prefix("customAttributes.") {
        let name = name.split('[').next().unwrap_or(name);
        return format!("ca.{name}");
    }
    path.split(['[', '.']).next().unwrap_or(path).to_string()
}

/// `POST /portal/people/{id}/edit`: the changed fields only, as a person PATCH with
/// `If-Match` of the version the form showed (someone else's change meanwhile is a `412`,
/// shown, not overwritten).
async fn edit(State(portal): State<PortalState>, Path(id): Path<String>, post: CsrfForm) -> Response<Body> {
    let CsrfForm { session, form, .. } = post;
    let (current, _, mut page) = match load_person(&portal, &session, &id).await {
        Ok(loaded) => loaded,
        Err(f) => return failure_page(&portal, &f),
    };
    let get = |name: &str| form.get(name).unwrap_or("").trim().to_string();
    let mut patch = Map::new();
    for (field, member) in [
        ("firstName", "firstName"),
        ("middleName", "middleName"),
        ("lastName", "lastName"),
        ("gender", "gender"),
        ("birthday", "birthday"),
        ("externalUserId", "externalUserId"),
    ] {
        let new = get(field);
        let old = current[member].as_str().unwrap_or("");
        if new != old {
            patch.insert(member.into(), if new.is_empty() { Value::Null } else { json!(new) });
        }
    }
    let person_type = get("type");
    if !person_type.is_empty() && current["type"].as_str() != Some(person_type.as_str()) {
        patch.insert("type".into(), json!(person_type));
    }
    for (field, old) in [
        ("phones", strings(&current["phones"], Some("number"))),
        ("emails", strings(&current["emails"], Some("address"))),
        ("tags", strings(&current["tags"], None)),
    ] {
        let new = lines(form.get(field).unwrap_or(""));
        if new != old {
            // Phones and emails are objects in the API (management-api.md §7.4).
            let value = match field {
                "phones" => json!(new.iter().map(|n| json!({"number": n})).collect::<Vec<_>>()),
                "emails" => json!(new.iter().map(|a| json!({"address": a})).collect::<Vec<_>>()),
                _ => json!(new),
            };
            patch.insert(field.into(), value);
        }
    }
    let mut custom = Map::new();
    let mut errors = FieldErrors::new();
    let mut inputs = page.edit.custom.clone();
    for input in &mut inputs {
        let key = format!("ca.{}", input.name);
        let raw = form.get(&key).unwrap_or("").to_string();
        match custom_value(input.kind, &raw) {
            Ok(new) => {
                let old = &current["customAttributes"][input.name.as_str()];
                if new != *old {
                    custom.insert(input.name.clone(), new);
                }
            }
            Err(message) => errors.entry(key.clone()).or_default().push(message),
        }
        input.value = raw;
    }
    if !custom.is_empty() {
        patch.insert("customAttributes".into(), Value::Object(custom));
    }
    let version = get("version");
    let mut failure = None;
    if errors.is_empty() {
        if patch.is_empty() {
            return flash_to(
                &portal,
                &session,
                Flash::ok("Nothing changed."),
                &format!("/people/{id}"),
            )
            .await;
        }
        let if_match = [("if-match", format!("\"{version}\""))];
        match portal
            .api_with(
                &session.caller,
                Method::PATCH,
                &format!("/people/{}", enc(&id)),
                Some(&Value::Object(patch)),
                if version.is_empty() { &[] } else { &if_match },
            )
            .await
        {
            Ok(_) => return flash_to(&portal, &session, Flash::ok("Saved."), &format!("/people/{id}")).await,
            Err(f) => {
                for (path, messages) in &f.fields {
                    errors.entry(form_field(path)).or_default().extend(messages.clone());
                }
                failure = Some(f);
            }
        }
    }
    // Show the form again with what was sent, and why it was refused.
    let status = failure.as_ref().map_or(StatusCode::BAD_REQUEST, |f| f.status);
    let text = match &failure {
        Some(f) if f.status == StatusCode::PRECONDITION_FAILED => {
            "Someone changed this person after you opened the form; nothing was saved. The page now shows the \
             current data: make your change again."
                .to_string()
        }
        Some(f) => format!("Not saved: {}", f.message()),
        None => "Not saved: some values are not valid (see below).".to_string(),
    };
    page.layout.flash = Some(Flash::error(text));
    if failure
        .as_ref()
        .is_some_and(|f| f.status == StatusCode::PRECONDITION_FAILED)
    {
        return (status, page).into_response();
    }
    for input in &mut inputs {
        input.errors = errors.get(&format!("ca.{}", input.name)).cloned().unwrap_or_default();
    }
    page.edit = EditForm {
        version,
        first_name: get("firstName"),
        middle_name: get("middleName"),
        last_name: get("lastName"),
        gender: get("gender"),
        birthday: get("birthday"),
        external_user_id: get("externalUserId"),
        person_type: if person_type.is_empty() {
            page.person_type.clone()
        } else {
            person_type
        },
        phones: form.get("phones").unwrap_or("").to_string(),
        emails: form.get("emails").unwrap_or("").to_string(),
        tags: form.get("tags").unwrap_or("").to_string(),
        custom: inputs,
        errors,
    };
    page.edit_open = true;
    (status, page).into_response()
}

/// `POST /portal/installations/{pushRegId}/primary`: `PATCH {"isPrimary": true}` (people.md §4:
/// the person's other installations of that application are demoted).
async fn make_primary(State(portal): State<PortalState>, Path(id): Path<String>, post: CsrfForm) -> Response<Body> {
    change_then_redirect(
        &portal,
        &post.session,
        Method::PATCH,
        &format!("/installations/{}", enc(&id)),
        Some(&json!({"isPrimary": true})),
        format!("Installation {id} is now the primary device of its application."),
        "Not changed",
        &back_to(&post.form),
    )
    .await
}

/// `POST /portal/installations/{pushRegId}/depersonalize` (people.md §7.1): the installation
/// moves to a new anonymous person.
async fn depersonalize(State(portal): State<PortalState>, Path(id): Path<String>, post: CsrfForm) -> Response<Body> {
    let back = back_to(&post.form);
    let flash = match portal
        .api(
            &post.session.caller,
            Method::POST,
            &format!("/installations/{}/depersonalize", enc(&id)),
            None,
        )
        .await
        .and_then(|a| a.json())
    {
        Ok(i) => Flash::ok(format!(
            "Installation {id} was depersonalized; it now belongs to the anonymous person {}.",
            i["personId"].as_str().unwrap_or("?")
        )),
        Err(f) => Flash::error(format!("Not depersonalized: {}", f.message())),
    };
    flash_to(&portal, &post.session, flash, &back).await
}

/// `POST /portal/merges/{id}/reverse` (people.md §9.3).
async fn reverse_merge(State(portal): State<PortalState>, Path(id): Path<String>, post: CsrfForm) -> Response<Body> {
    change_then_redirect(
        &portal,
        &post.session,
        Method::POST,
        &format!("/merges/{}/reverse", enc(&id)),
        None,
        "The merge was reversed.".into(),
        "Not reversed",
        &back_to(&post.form),
    )
    .await
}

/// `GET /portal/people/{id}/export`: the GDPR export as a JSON download (management-api.md §8.1).
async fn export(
    State(portal): State<PortalState>,
    SignedInForDownload(session): SignedInForDownload,
    Path(id): Path<String>,
) -> Response<Body> {
    match portal
        .api(
            &session.caller,
            Method::GET,
            &format!("/people/{}/export", enc(&id)),
            None,
        )
        .await
    {
        Ok(answer) => {
            let mut r = Response::new(Body::from(answer.body));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let disposition = answer
                .headers
                .get(header::CONTENT_DISPOSITION)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("attachment; filename=\"person-export.json\""));
            r.headers_mut().insert(header::CONTENT_DISPOSITION, disposition);
            r
        }
        Err(f) => failure_page(&portal, &f),
    }
}

/// The confirmation step of a GDPR erase.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/erase.html")]
pub struct ErasePage {
    pub layout: Layout,
    pub id: String,
    pub name: String,
    pub installations: usize,
}

/// `GET /portal/people/{id}/erase`: asks for confirmation.
async fn erase_confirm(State(portal): State<PortalState>, session: SignedIn, Path(id): Path<String>) -> Response<Body> {
    match portal.api_get(&session.caller, &format!("/people/{}", enc(&id))).await {
        Ok(p) => ErasePage {
            layout: session.layout(&portal, "Erase person", "people"),
            id: p["id"].as_str().unwrap_or(&id).to_string(),
            name: display_name(&p),
            installations: p["installations"].as_array().map_or(0, Vec::len),
        }
        .into_response(),
        Err(f) => failure_page(&portal, &f),
    }
}

/// `POST /portal/people/{id}/erase` (`confirm=erase`): GDPR erase (management-api.md §8.2).
async fn erase(State(portal): State<PortalState>, Path(id): Path<String>, post: CsrfForm) -> Response<Body> {
    if post.form.get("confirm") != Some("erase") {
        return see_other(&portal.prefix, &format!("/people/{}/erase", enc(&id)));
    }
    match portal
        .api(
            &post.session.caller,
            Method::DELETE,
            &format!("/people/{}", enc(&id)),
            None,
        )
        .await
        .and_then(|a| a.json())
    {
        Ok(report) => {
            let text = format!(
                "Person {id} was erased: {} installation(s) deleted, {} delivery record(s) anonymised, {} merge-log \
                 entr(y/ies) redacted.",
                report["installationsDeleted"], report["deliveriesAnonymised"], report["mergeEntriesRedacted"]
            );
            flash_to(&portal, &post.session, Flash::ok(text), "/people").await
        }
        Err(f) => {
            flash_to(
                &portal,
                &post.session,
                Flash::error(format!("Not erased: {}", f.message())),
                &format!("/people/{id}"),
            )
            .await
        }
    }
}
