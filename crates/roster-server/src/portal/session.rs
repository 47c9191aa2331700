//! Portal sessions: sign-in with an API key, the session cookie, sign-out.
//!
//! The cookie carries a random 256-bit secret; the store keeps its SHA-256 hash, the API key's
//! id and timestamps (`roster_store::PortalTx`), so several server processes on one PostgreSQL
//! share sessions and the API key itself is kept nowhere. A session ends at sign-out, after
//! [`IDLE_MS`] without a request, [`ABSOLUTE_MS`] after sign-in, and as soon as its API key is
//! deleted (the row goes with the key) or expires.

use axum::{
    Router,
    body::Body,
    extract::{FromRequestParts, Request, State},
    response::IntoResponse,
    routing::{get, post},
};
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header, request::Parts};
use rand::RngCore;
use roster_core::admin::api_key_hash;
use roster_model::{ApiKey, now_millis};
use roster_store::PortalSession;
use sha2::{Digest, Sha256};

use super::{Flash, Layout, PortalState, csrf, message_page, see_other};
use crate::management::{
    auth::Caller,
    error::{MgmtError, MgmtResult},
};

/// The session cookie.
pub const COOKIE: &str = "roster_portal";
/// The cookie of the sign-in form's CSRF token (double submit: there is no session yet).
pub const SIGN_IN_COOKIE: &str = "roster_portal_signin";
/// A session ends after this long without a request (12 hours).
pub const IDLE_MS: i64 = 12 * 3600 * 1000;
/// A session ends this long after sign-in, however active (7 days).
pub const ABSOLUTE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Activity is recorded at most this often (one write a minute per busy session).
pub const TOUCH_INTERVAL_MS: i64 = 60 * 1000;

pub(super) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
}

/// A random 256-bit secret, base64url without padding (43 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored identity of a session: lowercase hex SHA-256 of its secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The session's CSRF token: derived from the secret (so nothing more is stored) under its own
/// label (so it differs from the stored hash, and knowing it reveals nothing of the cookie).
pub fn csrf_token(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"roster portal csrf\n");
    h.update(secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The value of a cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached us over https (a TLS-terminating proxy says so in
/// `X-Forwarded-Proto` or `Forwarded`); the cookie is then `Secure`.
pub fn is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        });
    forwarded_proto || forwarded
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=<prefix>`, `Secure` over https;
/// `max_age` `Some(0)` deletes the cookie, `None` makes it last until the browser closes.
pub fn set_cookie(prefix: &str, name: &str, value: &str, max_age: Option<u64>, https: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path={prefix}; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if https {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The signed-in session of a request, with the API key it acts as. As an extractor it answers
/// a GET without a valid session by a redirect to the sign-in page, anything else by `403`.
/// On a GET it also takes the session's one-time message ([`SignedIn::flash`]).
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The API key, as the management API's caller.
    pub caller: Caller,
    /// The stored hash of the session secret.
    pub id_hash: String,
    /// The session's CSRF token (every form's hidden `csrf` field, htmx's `X-CSRF-Token`).
    pub csrf: String,
    /// The one-time message for this page view, if any.
    pub flash: Option<Flash>,
}

impl SignedIn {
    /// The base layout of a page of this session.
    pub fn layout(&self, portal: &PortalState, title: impl Into<String>, active: &'static str) -> Layout {
        Layout {
            prefix: portal.prefix.clone(),
            title: title.into(),
            active,
            csrf: self.csrf.clone(),
            signed_in_as: format!("{} ({}…)", self.caller.key.name, self.caller.key.key_prefix),
            flash: self.flash.clone(),
        }
    }

    /// Sets the message the next page of this session shows (after a redirect).
    pub async fn set_flash(&self, portal: &PortalState, flash: &Flash) -> MgmtResult<()> {
        let mut tx = portal.app.core.store().begin().await?;
        tx.set_portal_flash(&self.id_hash, Some(&flash.encode())).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Why a request has no usable session.
pub enum NoSession {
    /// No cookie, or one naming no live session.
    Missing { had_cookie: bool },
    /// The store failed.
    Failed(MgmtError),
}

/// Loads the live session named by the request's cookie, recording activity; `take_flash`
/// also takes (clears) its one-time message.
pub async fn load(portal: &PortalState, headers: &HeaderMap, take_flash: bool) -> Result<SignedIn, NoSession> {
    let Some(secret) = cookie(headers, COOKIE) else {
        return Err(NoSession::Missing { had_cookie: false });
    };
    let id_hash = secret_hash(secret);
    let store = portal.app.core.store();
    let found = async {
        let mut tx = store.begin_read().await?;
        let found = tx.portal_session(&id_hash).await?;
        tx.rollback().await?;
        Ok::<_, MgmtError>(found)
    }
    .await
    .map_err(NoSession::Failed)?;
    let now = now_millis();
    let Some((session, key)) = found.filter(|(s, key)| is_live(s, key, now)) else {
        return Err(NoSession::Missing { had_cookie: true });
    };
    let touch = now - session.last_seen_at >= TOUCH_INTERVAL_MS;
    let flash = if take_flash { session.flash.clone() } else { None };
    if touch || flash.is_some() {
        let write = async {
            let mut tx = store.begin().await?;
            if touch {
                tx.touch_portal_session(&id_hash, now, TOUCH_INTERVAL_MS).await?;
            }
            if flash.is_some() {
                tx.set_portal_flash(&id_hash, None).await?;
            }
            tx.commit().await?;
            Ok::<_, MgmtError>(())
        };
        write.await.map_err(NoSession::Failed)?;
    }
    if let Err(e) = portal.app.core.touch_api_key(&key).await {
        tracing::warn!(error = %e, key_id = %key.id, "could not record the API key's lastUsedAt");
    }
    Ok(SignedIn {
        caller: Caller { key },
        id_hash,
        csrf: csrf_token(secret),
        flash: flash.as_deref().map(Flash::decode),
    })
}

/// Whether a session may still be used: not idle too long, not past its end, its key unexpired.
fn is_live(session: &PortalSession, key: &ApiKey, now: i64) -> bool {
    now - session.last_seen_at < IDLE_MS
        && now < session.expires_at
        && key.expires_at.is_none_or(|at| at > now)
        && key.account_id == session.account_id
}

/// The answer to a request without a usable session.
pub fn refusal(portal: &PortalState, method: &Method, headers: &HeaderMap, why: NoSession) -> Response<Body> {
    let had_cookie = match why {
        NoSession::Failed(e) => return e.into_response(),
        NoSession::Missing { had_cookie } => had_cookie,
    };
    let sign_in = format!("{}/sign-in", portal.prefix);
    let mut r = if method == Method::GET || method == Method::HEAD {
        let mut r = see_other(&portal.prefix, "/sign-in");
        // An htmx request would swap the sign-in page into a fragment: send the browser there.
        if headers.contains_key("hx-request")
            && let Ok(v) = HeaderValue::from_str(&sign_in)
        {
            r.headers_mut().insert("hx-redirect", v);
        }
        r
    } else {
        message_page(
            &portal.prefix,
            StatusCode::FORBIDDEN,
            "Not signed in",
            "Your session has ended or this request did not come from a portal page. Sign in again; nothing was changed.",
        )
    };
    if had_cookie {
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&portal.prefix, COOKIE, "", Some(0), is_https(headers)),
        );
    }
    r
}

impl FromRequestParts<PortalState> for SignedIn {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, portal: &PortalState) -> Result<SignedIn, Response<Body>> {
        let take_flash = parts.method == Method::GET && !parts.headers.contains_key("hx-request");
        load(portal, &parts.headers, take_flash)
            .await
            .map_err(|why| refusal(portal, &parts.method, &parts.headers, why))
    }
}

/// [`SignedIn`] for a GET that answers a download rather than a page: the session's one-time
/// message is left for the next page (a download shows no message, so taking it would lose it).
pub struct SignedInForDownload(pub SignedIn);

impl FromRequestParts<PortalState> for SignedInForDownload {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, portal: &PortalState) -> Result<Self, Response<Body>> {
        load(portal, &parts.headers, false)
            .await
            .map(SignedInForDownload)
            .map_err(|why| refusal(portal, &parts.method, &parts.headers, why))
    }
}

/// The sign-in page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/sign_in.html")]
pub struct SignInPage {
    pub layout: Layout,
    /// The double-submit token of the form (also in [`SIGN_IN_COOKIE`]).
    pub token: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Shown after sign-out.
    pub notice: Option<String>,
}

/// `GET /portal/sign-in`: the form (or the people page when already signed in).
async fn sign_in_page(State(portal): State<PortalState>, req: Request) -> Response<Body> {
    let headers = req.headers();
    if load(&portal, headers, false).await.is_ok() {
        return see_other(&portal.prefix, "/people");
    }
    let notice = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "signed-out"))
        .then(|| "You are signed out.".to_string());
    sign_in_form(&portal, headers, StatusCode::OK, None, notice)
}

/// Renders the sign-in form with a fresh double-submit token.
fn sign_in_form(
    portal: &PortalState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    notice: Option<String>,
) -> Response<Body> {
    // Forms open in several tabs share the browser's token (a new one per form would refuse all
    // but the last).
    let token = cookie(headers, SIGN_IN_COOKIE)
        .filter(|t| t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map_or_else(new_secret, str::to_string);
    let page = SignInPage {
        layout: Layout::signed_out(&portal.prefix, "Sign in"),
        token: token.clone(),
        error,
        notice,
    };
    let mut r = (status, page).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&portal.prefix, SIGN_IN_COOKIE, &token, Some(3600), is_https(headers)),
    );
    r
}

/// `POST /portal/sign-in` (`key`, `csrf`): checks the API key like the management API does
/// (known hash, not expired), creates a session and sets its cookie.
async fn sign_in(State(portal): State<PortalState>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let form = match csrf::read_form(body).await {
        Ok(form) => form,
        Err(r) => return r,
    };
    let expected = cookie(&parts.headers, SIGN_IN_COOKIE).unwrap_or("");
    if expected.is_empty() || !csrf::same_token(form.get("csrf").unwrap_or(""), expected) {
        return csrf::refused(&portal.prefix);
    }
    let presented = form.get("key").unwrap_or("").trim();
    let key = if presented.is_empty() {
        None
    } else {
        match portal.app.core.api_key_by_hash(&api_key_hash(presented)).await {
            Ok(key) => key.filter(|k| k.expires_at.is_none_or(|at| at > now_millis())),
            Err(e) => return MgmtError::from(e).into_response(),
        }
    };
    let Some(key) = key else {
        return sign_in_form(
            &portal,
            &parts.headers,
            StatusCode::UNAUTHORIZED,
            Some("That API key is not valid (unknown, deleted or expired).".into()),
            None,
        );
    };
    let secret = new_secret();
    let now = now_millis();
    let session = PortalSession {
        account_id: key.account_id,
        id_hash: secret_hash(&secret),
        api_key_id: key.id,
        created_at: now,
        last_seen_at: now,
        expires_at: now + ABSOLUTE_MS,
        flash: None,
    };
    let created = async {
        let mut tx = portal.app.core.store().begin().await?;
        // Signing in again (perhaps with another key) replaces the browser's session.
        if let Some(previous) = cookie(&parts.headers, COOKIE) {
            tx.delete_portal_session(&secret_hash(previous)).await?;
        }
        // Ended sessions of the account go now and then; a bounded batch per sign-in keeps the
        // table small without a sweeper of its own.
        tx.delete_ended_portal_sessions(key.account_id, now - IDLE_MS, now, 100)
            .await?;
        tx.insert_portal_session(&session).await?;
        tx.commit().await?;
        Ok::<_, MgmtError>(())
    };
    if let Err(e) = created.await {
        return e.into_response();
    }
    if let Err(e) = portal.app.core.touch_api_key(&key).await {
        tracing::warn!(error = %e, key_id = %key.id, "could not record the API key's lastUsedAt");
    }
    let https = is_https(&parts.headers);
    let mut r = see_other(&portal.prefix, "/people");
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&portal.prefix, COOKIE, &secret, None, https),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&portal.prefix, SIGN_IN_COOKIE, "", Some(0), https),
    );
    r
}

/// `POST /portal/sign-out`: ends the session (CSRF-checked) and deletes the cookie.
async fn sign_out(State(portal): State<PortalState>, form: csrf::CsrfForm) -> Response<Body> {
    let ended = async {
        let mut tx = portal.app.core.store().begin().await?;
        tx.delete_portal_session(&form.session.id_hash).await?;
        tx.commit().await?;
        Ok::<_, MgmtError>(())
    };
    if let Err(e) = ended.await {
        return e.into_response();
    }
    let mut r = see_other(&portal.prefix, "/sign-in?signed-out");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&portal.prefix, COOKIE, "", Some(0), form.https),
    );
    r
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn key(account_id: Uuid, expires_at: Option<i64>) -> ApiKey {
        ApiKey {
            account_id,
            id: Uuid::new_v4(),
            name: "portal".into(),
            scopes: vec!["people:read".into()],
            key_hash: "0".repeat(64),
            key_prefix: "rk_".into(),
            created_at: 0,
            expires_at,
            last_used_at: None,
        }
    }

    fn session(key: &ApiKey, last_seen_at: i64) -> PortalSession {
        PortalSession {
            account_id: key.account_id,
            id_hash: "1".repeat(64),
            api_key_id: key.id,
            created_at: 1_000,
            last_seen_at,
            expires_at: 1_000 + ABSOLUTE_MS,
            flash: None,
        }
    }

    /// The session's boundaries to the millisecond: 12 hours without a request end it (idle for
    /// exactly `IDLE_MS` is too long), so do its absolute end and its key's expiry; a session of
    /// another account than its key's is never live.
    #[test]
    fn a_session_ends_at_its_idle_and_absolute_boundaries() {
        let account = Uuid::new_v4();
        let k = key(account, None);
        let s = session(&k, 5_000);
        assert!(is_live(&s, &k, 5_000 + IDLE_MS - 1));
        assert!(!is_live(&s, &k, 5_000 + IDLE_MS), "idle for exactly 12 hours");

        let recent = session(&k, s.expires_at - 10);
        assert!(is_live(&recent, &k, recent.expires_at - 1));
        assert!(!is_live(&recent, &k, recent.expires_at), "at its absolute end");

        let expiring = key(account, Some(9_000));
        assert!(is_live(&s, &expiring, 8_999));
        assert!(!is_live(&s, &expiring, 9_000), "its key expired");

        let elsewhere = key(Uuid::new_v4(), None);
        assert!(!is_live(&s, &elsewhere, 5_001), "a key of another account");
    }
}
