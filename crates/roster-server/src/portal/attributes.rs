//! Attribute definitions (management-api.md §7.3; people.md §8.2): the list of both scopes, a
//! create form with a schema editor for `LIST_OF_OBJECTS` (rows of field name and type; "add a
//! row" and "remove" are submit buttons of the same plain form, answered by the form again with
//! its values, so no script is needed), and deletion after a confirmation.

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    response::IntoResponse,
    routing::{get, post},
};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{
    Flash, Layout, PortalState,
    api::enc,
    csrf::{CsrfForm, Form},
    pages::{FieldErrors, change_then_redirect, field_errors, flash_to, text},
    session::SignedIn,
};

pub(super) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/attributes", get(list).post(create))
        .route("/attributes/{scope}/{name}/delete", post(delete))
}

/// The types of a definition (people.md §8.1).
pub const TYPES: &[&str] = &["STRING", "DECIMAL", "BOOLEAN", "DATE", "DATE_TIME", "LIST_OF_OBJECTS"];
/// The scalar types of a schema field.
pub const FIELD_TYPES: &[&str] = &["STRING", "DECIMAL", "BOOLEAN", "DATE", "DATE_TIME"];

/// One definition of the list.
#[derive(Debug, Clone)]
pub struct DefinitionRow {
    pub scope: String,
    pub name: String,
    pub type_name: String,
    /// `name: TYPE` of each schema field.
    pub schema: Vec<String>,
    pub origin: String,
    pub created_at: String,
}

/// A schema row of the create form: (field name, type).
#[derive(Debug, Clone, Default)]
pub struct SchemaRow {
    pub name: String,
    pub type_name: String,
}

/// The create form.
#[derive(Debug, Clone, Default)]
pub struct DefinitionForm {
    pub scope: String,
    pub name: String,
    pub type_name: String,
    pub rows: Vec<SchemaRow>,
    pub errors: FieldErrors,
}

impl DefinitionForm {
    /// The errors of schema row `i`, every member.
    pub fn row_err(&self, i: &usize) -> Vec<String> {
        let prefix = format!("objectSchema[{i}]");
        self.errors
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .flat_map(|(k, v)| {
                let member = k[prefix.len()..].trim_start_matches('.').to_string();
                v.iter().map(move |m| {
                    if member.is_empty() {
                        m.clone()
                    } else {
                        format!("{member}: {m}")
                    }
                })
            })
            .collect()
    }
}

/// The attributes page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/attributes.html")]
pub struct AttributesPage {
    pub layout: Layout,
    pub definitions: Vec<DefinitionRow>,
    pub error: Option<String>,
    pub form: DefinitionForm,
    pub types: &'static [&'static str],
    pub field_types: &'static [&'static str],
    /// A definition waiting for the delete confirmation: (scope, name).
    pub confirm: Option<(String, String)>,
}

async fn page(portal: &PortalState, session: &SignedIn, form: DefinitionForm) -> AttributesPage {
    let (definitions, error) = match portal.api_get(&session.caller, "/attributes?limit=500").await {
        Ok(page) => {
            let mut rows: Vec<DefinitionRow> = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| DefinitionRow {
                    scope: text(&d["scope"]),
                    name: text(&d["name"]),
                    type_name: text(&d["type"]),
                    schema: d["objectSchema"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| format!("{}: {}", text(&f["name"]), text(&f["type"])))
                        .collect(),
                    origin: text(&d["origin"]),
                    created_at: text(&d["createdAt"]),
                })
                .collect();
            rows.sort_by(|a, b| a.scope.cmp(&b.scope).then(a.name.cmp(&b.name)));
            (rows, None)
        }
        Err(f) => (Vec::new(), Some(f.message())),
    };
    AttributesPage {
        layout: session.layout(portal, "Attribute definitions", "attributes"),
        definitions,
        error,
        form,
        types: TYPES,
        field_types: FIELD_TYPES,
        confirm: None,
    }
}

/// `GET /portal/attributes?delete=SCOPE/NAME`: the list and the create form (with a delete
/// confirmation when asked).
async fn list(State(portal): State<PortalState>, session: SignedIn, query: Form) -> Response<Body> {
    let form = DefinitionForm {
        scope: "PERSON".into(),
        type_name: "STRING".into(),
        rows: vec![SchemaRow::default()],
        ..DefinitionForm::default()
    };
    let mut p = page(&portal, &session, form).await;
    if let Some((scope, name)) = query.get("delete").and_then(|d| d.split_once('/')) {
        p.confirm = Some((scope.to_string(), name.to_string()));
    }
    p.into_response()
}

/// `POST /portal/attributes`: `action` = `add-row`, `remove-row-N` (the form again, changed) or
/// `create`.
async fn create(State(portal): State<PortalState>, post: CsrfForm) -> Response<Body> {
    let CsrfForm { session, form: f, .. } = post;
    let names = f.all("fieldName");
    let types = f.all("fieldType");
    let mut form = DefinitionForm {
        scope: f.get("scope").unwrap_or("PERSON").to_string(),
        name: f.get("name").unwrap_or("").trim().to_string(),
        type_name: f.get("type").unwrap_or("STRING").to_string(),
        rows: names
            .iter()
            .enumerate()
            .map(|(i, n)| SchemaRow {
                name: n.trim().to_string(),
                type_name: types.get(i).copied().unwrap_or("STRING").to_string(),
            })
            .collect(),
        errors: FieldErrors::new(),
    };
    let action = f.get("action").unwrap_or("create");
    if action == "add-row" {
        form.rows.push(SchemaRow::default());
        return page(&portal, &session, form).await.into_response();
    }
    if let Some(i) = action.strip_prefix("remove-row-").and_then(|i| i.parse::<usize>().ok()) {
        if i < form.rows.len() {
            form.rows.remove(i);
        }
        return page(&portal, &session, form).await.into_response();
    }
    let mut body = json!({"scope": form.scope, "name": form.name, "type": form.type_name});
    if form.type_name == "LIST_OF_OBJECTS" {
        // Rows left entirely empty are not fields (the form always offers one).
        let schema: Vec<Value> = form
            .rows
            .iter()
            .filter(|r| !r.name.is_empty())
            .map(|r| json!({"name": r.name, "type": r.type_name}))
            .collect();
        form.rows.retain(|r| !r.name.is_empty());
        body["objectSchema"] = json!(schema);
    }
    match portal
        .api(&session.caller, Method::POST, "/attributes", Some(&body))
        .await
    {
        Ok(_) => {
            let flash = Flash::ok(format!("{} attribute “{}” defined.", form.scope, form.name));
            flash_to(&portal, &session, flash, "/attributes").await
        }
        Err(failure) => {
            form.errors = field_errors(&failure, |p| Some(p.to_string()));
            if form.rows.is_empty() {
                form.rows.push(SchemaRow::default());
            }
            let mut p = page(&portal, &session, form).await;
            p.layout.flash = Some(Flash::error(format!("Not defined: {}", failure.message())));
            (failure.status, p).into_response()
        }
    }
}

/// `POST /portal/attributes/{scope}/{name}/delete` (`confirm=delete`): deletes the definition and
/// every stored value of it.
async fn delete(
    State(portal): State<PortalState>,
    Path((scope, name)): Path<(String, String)>,
    post: CsrfForm,
) -> Response<Body> {
    let session = post.session;
    if post.form.get("confirm") != Some("delete") {
        let mut p = page(&portal, &session, DefinitionForm::default()).await;
        p.confirm = Some((scope, name));
        return (StatusCode::OK, p).into_response();
    }
    let path = format!("/attributes/{}/{}", enc(&scope), enc(&name));
    let done =
        format!("{scope} attribute “{name}” deleted with all its values; segments using it are now marked not valid.");
    change_then_redirect(
        &portal,
        &session,
        Method::DELETE,
        &path,
        None,
        done,
        "Not deleted",
        "/attributes",
    )
    .await
}
