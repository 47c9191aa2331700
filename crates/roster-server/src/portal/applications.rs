//! Application pages (management-api.md §7.1, scope `admin`): the list with a create form, and a
//! page per application with its code, settings (name, enabled, require-JWT, restrict user data),
//! provider settings (APNs, FCM, HMS) and JWT keys.
//!
//! Credentials are write-only: the API never returns them, so the page can only say whether a
//! provider is configured and show its public members; a secret field left empty keeps the stored
//! secret, a filled one replaces it. A new JWT key's secret is shown once, in the answer to the
//! POST that created it (not through the stored one-time message, so it is kept nowhere).

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
    csrf::CsrfForm,
    pages::{FieldErrors, change_then_redirect, failure_page, field_errors, flash_to, text},
    session::SignedIn,
};

pub(super) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/applications", get(list).post(create))
        .route("/applications/{app}", get(show))
        .route("/applications/{app}/settings", post(settings))
        .route("/applications/{app}/providers/{provider}", post(provider))
        .route("/applications/{app}/providers/{provider}/remove", post(remove_provider))
        .route("/applications/{app}/jwt-keys", post(create_jwt_key))
        .route("/applications/{app}/jwt-keys/{kid}/delete", post(delete_jwt_key))
}

// --- list and create -------------------------------------------------------------------------------

/// One application of the list.
#[derive(Debug, Clone)]
pub struct AppRow {
    pub id: String,
    pub name: String,
    pub code: String,
    pub enabled: bool,
    pub providers: String,
    pub created_at: String,
}

/// The applications page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/applications.html")]
pub struct ApplicationsPage {
    pub layout: Layout,
    pub apps: Vec<AppRow>,
    pub error: Option<String>,
    /// The create form's name and its errors.
    pub name: String,
    pub errors: FieldErrors,
}

async fn list_page(portal: &PortalState, session: &SignedIn, name: String, errors: FieldErrors) -> ApplicationsPage {
    let (apps, error) = match portal.api_get(&session.caller, "/applications?limit=500").await {
        Ok(page) => (
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| AppRow {
                    id: text(&a["id"]),
                    name: text(&a["name"]),
                    code: text(&a["applicationCode"]),
                    enabled: a["enabled"] == true,
                    providers: ["apns", "fcm", "hms"]
                        .iter()
                        .filter(|p| a["providers"][**p]["configured"] == true)
                        .map(|p| p.to_uppercase())
                        .collect::<Vec<_>>()
                        .join(", "),
                    created_at: text(&a["createdAt"]),
                })
                .collect(),
            None,
        ),
        Err(f) => (Vec::new(), Some(f.message())),
    };
    ApplicationsPage {
        layout: session.layout(portal, "Applications", "applications"),
        apps,
        error,
        name,
        errors,
    }
}

/// `GET /portal/applications`.
async fn list(State(portal): State<PortalState>, session: SignedIn) -> Response<Body> {
    list_page(&portal, &session, String::new(), FieldErrors::new())
        .await
        .into_response()
}

/// `POST /portal/applications` (`name`): creates one; then its page.
async fn create(State(portal): State<PortalState>, post: CsrfForm) -> Response<Body> {
    let CsrfForm { session, form, .. } = post;
    let name = form.get("name").unwrap_or("").trim().to_string();
    match portal
        .api(
            &session.caller,
            Method::POST,
            "/applications",
            Some(&json!({"name": name})),
        )
        .await
        .and_then(|a| a.json())
    {
        Ok(app) => {
            let flash = Flash::ok(format!("Application “{}” created.", text(&app["name"])));
            flash_to(&portal, &session, flash, &application_path(&text(&app["id"]))).await
        }
        Err(f) => {
            let errors = field_errors(&f, |p| Some(p.to_string()));
            let mut page = list_page(&portal, &session, name, errors).await;
            page.layout.flash = Some(Flash::error(format!("Not created: {}", f.message())));
            (f.status, page).into_response()
        }
    }
}

// --- one application -------------------------------------------------------------------------------

/// One input of a provider form.
#[derive(Debug, Clone)]
pub struct ProviderField {
    /// The API member (`teamId`, `privateKey`, ...); the form field is `provider.member`.
    pub name: &'static str,
    pub label: &'static str,
    /// Write-only: never shown; empty keeps the stored one.
    pub secret: bool,
    pub multiline: bool,
    /// The current public value (always empty for a secret).
    pub value: String,
    pub errors: Vec<String>,
}

/// A provider's settings and form.
#[derive(Debug, Clone)]
pub struct ProviderView {
    /// `apns`, `fcm` or `hms`.
    pub key: &'static str,
    pub label: &'static str,
    pub configured: bool,
    pub status: String,
    pub last_error: String,
    pub fields: Vec<ProviderField>,
    /// Errors of the provider as a whole.
    pub errors: Vec<String>,
}

/// (provider, label, [(member, label, secret, multiline)]) as in management-api.md §7.1.
type ProviderSpec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, bool, bool)],
);

const PROVIDERS: &[ProviderSpec] = &[
    (
        "apns",
        "APNs (iOS)",
        &[
            ("teamId", "Team id", false, false),
            ("keyId", "Key id", false, false),
            ("privateKey", "Private key (PEM, PKCS#8 P-256)", true, true),
            ("topic", "Topic (bundle id)", false, false),
            ("environment", "Environment (production or sandbox)", false, false),
            ("baseUrl", "Base URL (optional override)", false, false),
        ],
    ),
    (
        "fcm",
        "FCM (Android)",
        &[
            ("serviceAccount", "Service account (JSON)", true, true),
            ("baseUrl", "Base URL (optional override)", false, false),
            ("tokenUrl", "Token URL (optional override)", false, false),
        ],
    ),
    (
        "hms",
        "HMS (Huawei)",
        &[
            ("appId", "App id", false, false),
            ("clientId", "Client id", false, false),
            ("clientSecret", "Client secret", true, false),
            ("baseUrl", "Base URL (optional override)", false, false),
            ("tokenUrl", "Token URL (optional override)", false, false),
        ],
    ),
];

/// A JWT key of the application.
#[derive(Debug, Clone)]
pub struct JwtKeyRow {
    pub kid: String,
    pub created_at: String,
}

/// The page of one application.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/application.html")]
pub struct ApplicationPage {
    pub layout: Layout,
    pub id: String,
    pub name: String,
    pub code: String,
    pub enabled: bool,
    pub require_jwt: bool,
    pub restrict_user_data: bool,
    pub created_at: String,
    pub updated_at: String,
    pub providers: Vec<ProviderView>,
    pub jwt_keys: Vec<JwtKeyRow>,
    /// A JWT key just created: (kid, secret), shown this once.
    pub new_key: Option<(String, String)>,
    /// Errors of the settings and JWT key forms, by field.
    pub errors: FieldErrors,
}

/// Loads the page of application `app_ref` (id or code).
async fn load(portal: &PortalState, session: &SignedIn, app_ref: &str) -> Result<ApplicationPage, ApiFailure> {
    let a = portal.api_get(&session.caller, &application_path(app_ref)).await?;
    let id = text(&a["id"]);
    let keys = portal
        .api_get(&session.caller, &format!("{}/jwt-keys", application_path(&id)))
        .await?;
    let providers = PROVIDERS
        .iter()
        .map(|(key, label, fields)| {
            let view = &a["providers"][*key];
            ProviderView {
                key,
                label,
                configured: view["configured"] == true,
                status: text(&view["status"]),
                last_error: text(&view["lastError"]),
                fields: fields
                    .iter()
                    .map(|(name, label, secret, multiline)| ProviderField {
                        name,
                        label,
                        secret: *secret,
                        multiline: *multiline,
                        value: if *secret { String::new() } else { text(&view[*name]) },
                        errors: Vec::new(),
                    })
                    .collect(),
                errors: Vec::new(),
            }
        })
        .collect();
    Ok(ApplicationPage {
        layout: session.layout(portal, format!("Application {}", text(&a["name"])), "applications"),
        id,
        name: text(&a["name"]),
        code: text(&a["applicationCode"]),
        enabled: a["enabled"] == true,
        require_jwt: a["requireJwtForUserData"] == true,
        restrict_user_data: a["restrictUserDataFromSdk"] == true,
        created_at: text(&a["createdAt"]),
        updated_at: text(&a["updatedAt"]),
        providers,
        jwt_keys: keys["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| JwtKeyRow {
                kid: text(&k["kid"]),
                created_at: text(&k["createdAt"]),
            })
            .collect(),
        new_key: None,
        errors: FieldErrors::new(),
    })
}

/// `GET /portal/applications/{app}`.
async fn show(State(portal): State<PortalState>, session: SignedIn, Path(app): Path<String>) -> Response<Body> {
    match load(&portal, &session, &app).await {
        Ok(page) => page.into_response(),
        Err(f) => failure_page(&portal, &f),
    }
}

/// Shows the page again after a refused change, with the API's message and field errors.
async fn refused(
    portal: &PortalState,
    session: &SignedIn,
    app: &str,
    failure: &ApiFailure,
    adjust: impl FnOnce(&mut ApplicationPage),
) -> Response<Body> {
    let mut page = match load(portal, session, app).await {
        Ok(page) => page,
        Err(f) => return failure_page(portal, &f),
    };
    page.layout.flash = Some(Flash::error(format!("Not saved: {}", failure.message())));
    adjust(&mut page);
    (failure.status, page).into_response()
}

/// `POST /portal/applications/{app}/settings`: name, enabled, requireJwtForUserData,
/// restrictUserDataFromSdk (checkboxes: absent is `false`).
async fn settings(State(portal): State<PortalState>, Path(app): Path<String>, post: CsrfForm) -> Response<Body> {
    let CsrfForm { session, form, .. } = post;
    let patch = json!({
        "name": form.get("name").unwrap_or("").trim(),
        "enabled": form.get("enabled").is_some(),
        "requireJwtForUserData": form.get("requireJwtForUserData").is_some(),
        "restrictUserDataFromSdk": form.get("restrictUserDataFromSdk").is_some(),
    });
    match patch_application(&portal, &session, &app, &patch, Flash::ok("Settings saved.")).await {
        Ok(saved) => saved,
        Err(f) => {
            let errors = field_errors(&f, |p| Some(p.to_string()));
            refused(&portal, &session, &app, &f, |page| page.errors = errors).await
        }
    }
}

/// `POST /portal/applications/{app}/providers/{provider}`: a PATCH of that provider's members.
/// A filled field sets its member; an empty public field removes it (e.g. a `baseUrl`
/// override); an empty secret keeps the stored one.
async fn provider(
    State(portal): State<PortalState>,
    Path((app, provider)): Path<(String, String)>,
    post: CsrfForm,
) -> Response<Body> {
    let CsrfForm { session, form, .. } = post;
    let (key, _, fields) = match provider_spec(&provider) {
        Ok(spec) => spec,
        Err(f) => return failure_page(&portal, &f),
    };
    let mut members = Map::new();
    let mut local = FieldErrors::new();
    for (name, _, secret, _) in fields.iter() {
        let raw = form.get(&format!("{key}.{name}")).unwrap_or("").trim();
        if raw.is_empty() {
            if !secret {
                members.insert((*name).into(), Value::Null);
            }
            continue;
        }
        let value = if *name == "serviceAccount" {
            match serde_json::from_str::<Value>(raw) {
                Ok(v) if v.is_object() => v,
                _ => {
                    local.insert(
                        format!("{key}.{name}"),
                        vec!["must be the service account JSON object (the file Google gives you)".into()],
                    );
                    continue;
                }
            }
        } else {
            json!(raw)
        };
        members.insert((*name).into(), value);
    }
    let failure = if local.is_empty() {
        let patch = json!({"providers": {*key: members}});
        let flash = Flash::ok(format!("{} settings saved.", key.to_uppercase()));
        match patch_application(&portal, &session, &app, &patch, flash).await {
            Ok(saved) => return saved,
            Err(f) => f,
        }
    } else {
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST".into(),
            text: "Some values are not valid".into(),
            fields: local.into_iter().map(|(k, v)| (format!("providers.{k}"), v)).collect(),
        }
    };
    // Errors next to the fields: `providers.apns.privateKey` → the APNs form's privateKey.
    let key = *key;
    refused(&portal, &session, &app, &failure.clone(), move |page| {
        if let Some(view) = page.providers.iter_mut().find(|p| p.key == key) {
            let prefix = format!("providers.{key}");
            for (path, messages) in &failure.fields {
                match path.strip_prefix(&prefix) {
                    Some("") => view.errors.extend(messages.iter().cloned()),
                    Some(rest) => {
                        let member = rest.trim_start_matches('.').split(['.', '[']).next().unwrap_or("");
                        match view.fields.iter_mut().find(|f| f.name == member) {
                            Some(field) => field.errors.extend(messages.iter().cloned()),
                            None => view.errors.extend(messages.iter().map(|m| format!("{member}: {m}"))),
                        }
                    }
                    None => {}
                }
            }
            // Show what was typed again, except secrets.
            for field in &mut view.fields {
                if !field.secret {
                    field.value = form
                        .get(&format!("{key}.{}", field.name))
                        .unwrap_or("")
                        .trim()
                        .to_string();
                }
            }
        }
    })
    .await
}

/// The provider settings form named `provider`, or why there is none (a `404`).
fn provider_spec(provider: &str) -> Result<&'static ProviderSpec, ApiFailure> {
    PROVIDERS
        .iter()
        .find(|(k, _, _)| *k == provider)
        .ok_or_else(|| ApiFailure {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND".into(),
            text: "No such provider (apns, fcm or hms)".into(),
            fields: Default::default(),
        })
}

/// The path of application `app` (id or code): its portal page below the portal's prefix, and
/// its resource below `/api/v1`.
fn application_path(app: &str) -> String {
    format!("/applications/{}", enc(app))
}

/// PATCHes application `app` with `patch` and, when the API takes it, answers the redirect to
/// the application's page with `flash`; the API's failure otherwise (nothing changed).
async fn patch_application(
    portal: &PortalState,
    session: &SignedIn,
    app: &str,
    patch: &Value,
    flash: Flash,
) -> Result<Response<Body>, ApiFailure> {
    let path = application_path(app);
    portal.api(&session.caller, Method::PATCH, &path, Some(patch)).await?;
    Ok(flash_to(portal, session, flash, &path).await)
}

/// `POST /portal/applications/{app}/providers/{provider}/remove`: `"provider": null` removes
/// its credentials.
async fn remove_provider(
    State(portal): State<PortalState>,
    Path((app, provider)): Path<(String, String)>,
    post: CsrfForm,
) -> Response<Body> {
    let session = post.session;
    let (key, _, _) = match provider_spec(&provider) {
        Ok(spec) => spec,
        Err(f) => return failure_page(&portal, &f),
    };
    let patch = json!({"providers": {*key: null}});
    let path = application_path(&app);
    let done = format!("{} credentials removed.", key.to_uppercase());
    change_then_redirect(
        &portal,
        &session,
        Method::PATCH,
        &path,
        Some(&patch),
        done,
        "Not removed",
        &path,
    )
    .await
}

/// `POST /portal/applications/{app}/jwt-keys` (`kid` optional): answers the page with the new
/// secret shown once.
async fn create_jwt_key(State(portal): State<PortalState>, Path(app): Path<String>, post: CsrfForm) -> Response<Body> {
    let CsrfForm { session, form, .. } = post;
    let kid = form.get("kid").unwrap_or("").trim().to_string();
    let body = if kid.is_empty() { json!({}) } else { json!({"kid": kid}) };
    match portal
        .api(
            &session.caller,
            Method::POST,
            &format!("{}/jwt-keys", application_path(&app)),
            Some(&body),
        )
        .await
        .and_then(|a| a.json())
    {
        Ok(created) => match load(&portal, &session, &app).await {
            Ok(mut page) => {
                let kid = text(&created["kid"]);
                page.layout.flash = Some(Flash::ok(format!(
                    "JWT key “{kid}” created. Copy its secret now: it is not shown again."
                )));
                page.new_key = Some((kid, text(&created["secret"])));
                (StatusCode::CREATED, page).into_response()
            }
            Err(f) => failure_page(&portal, &f),
        },
        Err(f) => {
            let errors = field_errors(&f, |p| (p == "kid").then(|| "kid".to_string()));
            refused(&portal, &session, &app, &f, |page| page.errors = errors).await
        }
    }
}

/// `POST /portal/applications/{app}/jwt-keys/{kid}/delete`.
async fn delete_jwt_key(
    State(portal): State<PortalState>,
    Path((app, kid)): Path<(String, String)>,
    post: CsrfForm,
) -> Response<Body> {
    let session = post.session;
    let path = format!("{}/jwt-keys/{}", application_path(&app), enc(&kid));
    let done = format!("JWT key “{kid}” deleted; tokens signed with it are refused from now on.");
    let back = application_path(&app);
    change_then_redirect(
        &portal,
        &session,
        Method::DELETE,
        &path,
        None,
        done,
        "Not deleted",
        &back,
    )
    .await
}
