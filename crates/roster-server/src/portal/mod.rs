//! The People portal (`/portal`): server-rendered pages for support and marketing people, a UI
//! over the management API.
//!
//! Every portal action is executed by the in-process management router ([`api`]), authenticated
//! as the signed-in API key: the rules, validation, scope checks and errors of `/api/v1` apply
//! unchanged, and an error is shown on the page as the envelope's message with its field errors.
//! The session ([`session`]) keeps only a hash of its secret in the store, never the API key.
//! Every POST carries the session's CSRF token ([`csrf`]).
//!
//! Layout: `templates/portal/*.html` (askama, auto-escaped), `static/` (vendored htmx and one
//! CSS file, embedded). A page handler takes [`session::SignedIn`] (GET; a download takes
//! [`session::SignedInForDownload`], which leaves the one-time message for the next page) or
//! [`csrf::CsrfForm`] (POST), calls [`PortalState::api`], and answers a template
//! (`#[derive(Template, WebTemplate)]`) whose `layout` field is a [`Layout`]; [`pages`] has the
//! helpers they share (flash and redirect, a failed read as a page, field errors).

pub mod api;
pub mod applications;
pub mod attributes;
pub mod csrf;
pub mod pages;
pub mod people;
pub mod segments;
pub mod send;
pub mod session;

use axum::{
    Router,
    body::Body,
    extract::State,
    response::{IntoResponse, Redirect},
    routing::get,
};
use http::{HeaderValue, Response, StatusCode, header};

use crate::AppState;

/// What every portal handler needs: the server's state, the management router to call, and the
/// URL prefix of the portal (the base path plus `/portal`).
#[derive(Clone)]
pub struct PortalState {
    /// The server's shared state.
    pub app: AppState,
    /// The `/api/v1` routes (without that prefix) and `POST /push/3/messages`, with the state
    /// applied, called in-process ([`api`]).
    pub management: Router,
    /// `{base_path}/portal`: prefix of every link, form action and the cookie path.
    pub prefix: String,
}

/// The portal's routes, to be nested under `/portal`.
pub fn router(state: &AppState) -> Router<AppState> {
    let portal = PortalState {
        app: state.clone(),
        management: crate::management::router()
            .merge(crate::management::push::router())
            .with_state(state.clone()),
        prefix: format!("{}/portal", state.base_path),
    };
    Router::new()
        .route("/", get(home))
        .route("/static/htmx.min.js", get(htmx))
        .route("/static/portal.css", get(css))
        .merge(session::routes())
        .merge(people::routes())
        .merge(send::routes())
        .merge(applications::routes())
        .merge(attributes::routes())
        .merge(segments::routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(portal)
}

/// `GET /portal/`: the people search is the start page.
async fn home(State(portal): State<PortalState>) -> Redirect {
    Redirect::to(&format!("{}/people", portal.prefix))
}

/// htmx 2.0.11 (npm package `htmx.org`, license 0BSD), vendored minified and embedded.
const HTMX: &[u8] = include_bytes!("../../static/htmx.min.js");
/// The portal's stylesheet.
const CSS: &[u8] = include_bytes!("../../static/portal.css");

/// A static asset: long-lived caching is safe only with versioned names, so a day.
fn asset(bytes: &'static [u8], content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    r
}

async fn htmx() -> Response<Body> {
    asset(HTMX, "text/javascript; charset=utf-8")
}

async fn css() -> Response<Body> {
    asset(CSS, "text/css; charset=utf-8")
}

async fn not_found(State(portal): State<PortalState>, uri: http::Uri) -> Response<Body> {
    // `/portal/` (with the slash) is the start page too.
    if uri.path() == "/" || uri.path().is_empty() {
        return see_other(&portal.prefix, "/people");
    }
    message_page(
        &portal.prefix,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page in the portal.",
    )
}

/// The Content-Security-Policy of every portal page: scripts and styles from the portal only (no
/// inline script, no eval), no framing, forms post to the portal only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers of every portal answer; pages (everything but the static assets) are never
/// stored by the browser or a proxy (they show personal data).
async fn security_headers(mut response: Response<Body>) -> Response<Body> {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The nav entries of the base layout: (key, label, path below the prefix).
pub const NAV: &[(&str, &str, &str)] = &[
    ("people", "People", "/people"),
    ("segments", "Segments", "/segments"),
    ("send", "Send", "/send"),
    ("applications", "Applications", "/applications"),
    ("attributes", "Attributes", "/attributes"),
];

/// A one-time message shown at the top of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Whether it reports a failure (shown in red).
    pub error: bool,
    /// The text (auto-escaped when rendered).
    pub text: String,
}

impl Flash {
    /// A success message.
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            error: false,
            text: text.into(),
        }
    }

    /// A failure message.
    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            error: true,
            text: text.into(),
        }
    }

    /// The stored form (`ok:` or `error:` and the text).
    pub fn encode(&self) -> String {
        format!("{}:{}", if self.error { "error" } else { "ok" }, self.text)
    }

    /// Reads the stored form.
    pub fn decode(stored: &str) -> Flash {
        match stored.split_once(':') {
            Some(("error", text)) => Flash::error(text),
            Some(("ok", text)) => Flash::ok(text),
            _ => Flash::ok(stored),
        }
    }
}

/// What the base layout (`templates/portal/base.html`) shows around every page.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `{base_path}/portal`.
    pub prefix: String,
    /// The page's `<title>`.
    pub title: String,
    /// The nav key of the current section (`people`, `segments`, ...), or empty.
    pub active: &'static str,
    /// The session's CSRF token (forms and htmx requests); empty when signed out.
    pub csrf: String,
    /// The signed-in key's name and prefix, for the header; empty when signed out.
    pub signed_in_as: String,
    /// The one-time message of this page view.
    pub flash: Option<Flash>,
}

impl Layout {
    /// The layout of a page without a session (sign-in, errors).
    pub fn signed_out(prefix: &str, title: &str) -> Layout {
        Layout {
            prefix: prefix.to_string(),
            title: title.to_string(),
            active: "",
            csrf: String::new(),
            signed_in_as: String::new(),
            flash: None,
        }
    }

    /// The nav entries as (label, href, current).
    pub fn nav(&self) -> Vec<(&'static str, String, bool)> {
        NAV.iter()
            .map(|(key, label, path)| (*label, format!("{}{}", self.prefix, path), *key == self.active))
            .collect()
    }
}

/// A page with one message (not found, refused, ...).
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub text: String,
}

/// Renders a [`MessagePage`] with a status.
pub fn message_page(prefix: &str, status: StatusCode, heading: &str, text: &str) -> Response<Body> {
    let page = MessagePage {
        layout: Layout::signed_out(prefix, heading),
        heading: heading.to_string(),
        text: text.to_string(),
    };
    (status, page).into_response()
}

/// A `303 See Other` to a portal path (`path` starts with `/`), for POST/redirect/GET.
pub fn see_other(prefix: &str, path: &str) -> Response<Body> {
    Redirect::to(&format!("{prefix}{path}")).into_response()
}
