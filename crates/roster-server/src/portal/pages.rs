//! Small helpers every portal page module shares: flash and redirect (POST/redirect/GET), one
//! change through the API then a redirect with its outcome, a failed read as a page, the API's
//! field errors keyed by form field, and a JSON value as page text.

use std::collections::BTreeMap;

use axum::{body::Body, response::IntoResponse};
use http::{Method, Response, StatusCode};
use serde_json::Value;

use super::{Flash, PortalState, api::ApiFailure, message_page, see_other, session::SignedIn};

/// Sets the session's one-time message and answers `303` to `path` (POST/redirect/GET).
pub(super) async fn flash_to(portal: &PortalState, session: &SignedIn, flash: Flash, path: &str) -> Response<Body> {
    if let Err(e) = session.set_flash(portal, &flash).await {
        return e.into_response();
    }
    see_other(&portal.prefix, path)
}

/// Runs one change through the API as the session's key, then redirects to `back` with its
/// outcome as the one-time message: `done` on success, "`refused`: the API's reason" otherwise.
#[allow(clippy::too_many_arguments)]
pub(super) async fn change_then_redirect(
    portal: &PortalState,
    session: &SignedIn,
    method: Method,
    path: &str,
    body: Option<&Value>,
    done: String,
    refused: &str,
    back: &str,
) -> Response<Body> {
    let flash = match portal.api(&session.caller, method, path, body).await {
        Ok(_) => Flash::ok(done),
        Err(f) => Flash::error(format!("{refused}: {}", f.message())),
    };
    flash_to(portal, session, flash, back).await
}

/// A failed read of a page, as a page with the API's status.
pub(super) fn failure_page(portal: &PortalState, failure: &ApiFailure) -> Response<Body> {
    let heading = match failure.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        _ => "Something went wrong",
    };
    message_page(&portal.prefix, failure.status, heading, &failure.message())
}

/// Field errors of a form: form field name → messages (a map, through `Deref`).
#[derive(Debug, Clone, Default)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    /// No errors.
    pub fn new() -> FieldErrors {
        FieldErrors::default()
    }

    /// The messages of one form field (templates show them next to the field).
    pub fn of(&self, field: &str) -> Vec<String> {
        self.0.get(field).cloned().unwrap_or_default()
    }
}

impl IntoIterator for FieldErrors {
    type Item = (String, Vec<String>);
    type IntoIter = std::collections::btree_map::IntoIter<String, Vec<String>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::ops::Deref for FieldErrors {
    type Target = BTreeMap<String, Vec<String>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for FieldErrors {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Moves the API's field errors to form fields: `map` gives, for an API path, the form field it
/// belongs to (`None`: the path is shown in the page's message only).
pub(super) fn field_errors(failure: &ApiFailure, map: impl Fn(&str) -> Option<String>) -> FieldErrors {
    let mut out = FieldErrors::new();
    for (path, messages) in &failure.fields {
        if let Some(field) = map(path) {
            out.entry(field).or_default().extend(messages.iter().cloned());
        }
    }
    out
}

/// A JSON value as text for a page: a string as is, `null` as nothing, anything else as JSON.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
