//! CSRF protection of every portal POST: the session's token (see [`super::session::csrf_token`])
//! must come back in the form's hidden `csrf` field or, for htmx requests, in the `X-CSRF-Token`
//! header. Without it the request is refused with `403` before anything runs, so it changes
//! nothing. The session cookie is also `SameSite=Strict`; the token is the second, independent
//! line.

use axum::{
    body::Body,
    extract::{FromRequest, Request},
};
use http::{Response, StatusCode};

use super::{
    PortalState, message_page,
    session::{SignedIn, is_https, load, refusal},
};
use crate::management::{MAX_BODY_BYTES, read_body};

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug, Clone, Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// The value of a field (the last one when repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated field, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The query string, as a form (the search page's `q` and `cursor`).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Form {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Form, Self::Rejection> {
        Ok(Form(
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

/// Reads a form body (at most the management API's body limit).
pub async fn read_form(body: Body) -> Result<Form, Response<Body>> {
    match read_body(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(Form(
            form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )),
        Err(e) => Err(message_page(
            "",
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            "Request refused",
            &e.text,
        )),
    }
}

/// Compares two tokens in time independent of where they differ (no crate in the tree offers
/// this for strings; the loop is the whole of it).
pub fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `403` answer to a POST without a valid CSRF token.
pub fn refused(prefix: &str) -> Response<Body> {
    message_page(
        prefix,
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form was not sent from a current portal page (its security token is missing or stale). \
         Nothing was changed. Go back, reload the page and try again.",
    )
}

/// A POST of a signed-in session whose CSRF token checked out, with its form fields.
pub struct CsrfForm {
    /// The session.
    pub session: SignedIn,
    /// The form's fields.
    pub form: Form,
    /// Whether the browser reached us over https (for cookies set in the answer).
    pub https: bool,
}

impl FromRequest<PortalState> for CsrfForm {
    type Rejection = Response<Body>;

    async fn from_request(req: Request, portal: &PortalState) -> Result<CsrfForm, Response<Body>> {
        let (parts, body) = req.into_parts();
        let session = load(portal, &parts.headers, false)
            .await
            .map_err(|why| refusal(portal, &parts.method, &parts.headers, why))?;
        let form = read_form(body).await?;
        let header_token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        let given = form.get("csrf").or(header_token).unwrap_or("");
        if !same_token(given, &session.csrf) {
            return Err(refused(&portal.prefix));
        }
        Ok(CsrfForm {
            session,
            form,
            https: is_https(&parts.headers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("ab", "abc"));
        assert!(!same_token("", "abc"));
    }
}
