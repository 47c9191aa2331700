//! Send pages: a test push to a person, an installation or a segment (management-api.md §5,
//! `POST /push/3/messages` with one destination and `targetOnlyPrimaryDevices`), the message page
//! with its delivery statuses as they arrive (§6.7: the status block polls itself every second
//! through htmx until the message is done), and the recent sends.

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    response::IntoResponse,
    routing::get,
};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Flash, Layout, PortalState,
    api::enc,
    csrf::{CsrfForm, Form},
    pages::{FieldErrors, failure_page, field_errors, flash_to, text},
    session::SignedIn,
};

pub(super) fn routes() -> Router<PortalState> {
    Router::new()
        .route("/send", get(send_form).post(send))
        .route("/messages", get(recent))
        .route("/messages/{id}", get(message))
}

/// An application for a select box: (code, label).
pub(super) async fn application_choices(portal: &PortalState, session: &SignedIn) -> Option<Vec<(String, String)>> {
    // Listing applications needs `admin`; without it the form takes a code typed in.
    let page = portal.api_get(&session.caller, "/applications?limit=500").await.ok()?;
    Some(
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let code = a["applicationCode"].as_str().unwrap_or_default().to_string();
                let label = format!(
                    "{} ({}…)",
                    a["name"].as_str().unwrap_or_default(),
                    code.get(..8).unwrap_or(&code)
                );
                (code, label)
            })
            .collect(),
    )
}

// --- the send form ---------------------------------------------------------------------------------

/// Who a test push goes to: (form value, label).
pub const TARGETS: &[(&str, &str)] = &[
    ("externalUserId", "Person by externalUserId"),
    ("email", "Person by email"),
    ("phone", "Person by phone number"),
    ("person", "Person owning an installation (pushRegId)"),
    ("installation", "One installation (pushRegId)"),
    ("segment", "Saved segment"),
];

/// The send form's values and errors.
#[derive(Debug, Clone, Default)]
pub struct SendForm {
    pub app: String,
    pub target: String,
    pub value: String,
    pub segment: String,
    pub primary_only: bool,
    pub title: String,
    pub text: String,
    /// The `Idempotency-Key` of this form (a double submit sends once).
    pub idem: String,
    pub errors: FieldErrors,
}

/// The send page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/send.html")]
pub struct SendPage {
    pub layout: Layout,
    pub form: SendForm,
    pub targets: &'static [(&'static str, &'static str)],
    /// The applications to choose from; `None` when the key may not list them.
    pub apps: Option<Vec<(String, String)>>,
    /// Saved segments: (id, name); `None` when the key may not list them.
    pub segments: Option<Vec<(String, String)>>,
}

async fn send_page(portal: &PortalState, session: &SignedIn, form: SendForm) -> SendPage {
    let apps = application_choices(portal, session).await;
    let segments = portal
        .api_get(&session.caller, "/segments?limit=500")
        .await
        .ok()
        .map(|page| {
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let id = s["id"].as_str().unwrap_or_default().to_string();
                    let mut name = s["name"].as_str().unwrap_or_default().to_string();
                    if s["valid"] == false {
                        name.push_str(" (not valid)");
                    }
                    (id, name)
                })
                .collect()
        });
    SendPage {
        layout: session.layout(portal, "Send a test push", "send"),
        form,
        targets: TARGETS,
        apps,
        segments,
    }
}

/// `GET /portal/send?target=&value=&app=`: the form, prefilled from the query.
async fn send_form(State(portal): State<PortalState>, session: SignedIn, query: Form) -> Response<Body> {
    let q = |k: &str| query.get(k).unwrap_or("").to_string();
    let form = SendForm {
        app: q("app"),
        target: if q("target").is_empty() {
            "externalUserId".into()
        } else {
            q("target")
        },
        value: q("value"),
        segment: q("segment"),
        primary_only: query.get("primaryOnly").is_some(),
        title: q("title"),
        text: q("text"),
        idem: Uuid::new_v4().to_string(),
        errors: FieldErrors::new(),
    };
    send_page(&portal, &session, form).await.into_response()
}

/// The form field an error path of the send request belongs to.
fn send_field(path: &str) -> Option<String> {
    let rest = path.strip_prefix("messages[0].")?;
    Some(
        match rest {
            "sender" => "app",
            "content.title" => "title",
            "content.text" | "content" => "text",
            r if r.starts_with("destinations[0]") => "value",
            _ => return None,
        }
        .to_string(),
    )
}

/// The destination of the form (management-api.md §5.2), or the form's errors.
async fn destination(portal: &PortalState, session: &SignedIn, form: &SendForm) -> Result<Value, FieldErrors> {
    let fail = |field: &str, message: String| {
        let mut e = FieldErrors::new();
        e.insert(field.to_string(), vec![message]);
        e
    };
    let value = form.value.trim();
    if form.target != "segment" && value.is_empty() {
        return Err(fail("value", "is required".into()));
    }
    let mut d = match form.target.as_str() {
        "externalUserId" => json!({"type": "EXTERNAL_USER_ID", "externalUserId": value}),
        "email" => json!({"type": "EMAIL", "email": value}),
        "phone" => json!({"type": "PHONE_NUMBER", "phoneNumber": value}),
        "installation" => json!({"type": "REGISTRATION", "pushRegistrationId": value}),
        "segment" => {
            let segment = form.segment.trim();
            if segment.is_empty() {
                return Err(fail("segment", "choose a segment".into()));
            }
            json!({"type": "MULTIPLE", "segmentId": segment})
        }
        "person" => {
            // The person owning the installation: by its externalUserId when it has one (the
            // answer then says at once whether anything was deliverable), else its installations
            // of the application as a MULTIPLE audience (the filter language has no person id).
            let person = portal
                .api_get(&session.caller, &format!("/people/lookup?pushRegId={}", enc(value)))
                .await
                .map_err(|f| fail("value", f.message()))?;
            if let Some(ext) = person["externalUserId"].as_str() {
                json!({"type": "EXTERNAL_USER_ID", "externalUserId": ext})
            } else {
                let ids: Vec<&str> = person["installations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| form.app.is_empty() || i["applicationCode"].as_str() == Some(form.app.trim()))
                    .filter_map(|i| i["pushRegId"].as_str())
                    .collect();
                if ids.is_empty() {
                    return Err(fail(
                        "value",
                        "this person has no installation in the chosen application".into(),
                    ));
                }
                json!({"type": "MULTIPLE", "filter": {"installation.pushRegId": {"$in": ids}}})
            }
        }
        _ => return Err(fail("target", "choose who to send to".into())),
    };
    d["targetOnlyPrimaryDevices"] = json!(form.primary_only);
    Ok(d)
}

/// `POST /portal/send`: one message to one destination; then the message page.
async fn send(State(portal): State<PortalState>, post: CsrfForm) -> Response<Body> {
    let CsrfForm { session, form: f, .. } = post;
    let get = |k: &str| f.get(k).unwrap_or("").to_string();
    let mut form = SendForm {
        app: get("app").trim().to_string(),
        target: get("target"),
        value: get("value"),
        segment: get("segment"),
        primary_only: f.get("primaryOnly").is_some(),
        title: get("title"),
        text: get("text"),
        idem: get("idem"),
        errors: FieldErrors::new(),
    };
    let mut content = json!({"text": form.text});
    if !form.title.trim().is_empty() {
        content["title"] = json!(form.title);
    }
    let failure = match destination(&portal, &session, &form).await {
        Err(errors) => {
            form.errors = errors;
            None
        }
        Ok(d) => {
            let body = json!({"messages": [{"sender": form.app, "destinations": [d], "content": content}]});
            let idem = Uuid::parse_str(&form.idem).map(|u| u.to_string()).ok();
            let headers: Vec<(&str, String)> = idem.into_iter().map(|k| ("idempotency-key", k)).collect();
            match portal
                .api_with(&session.caller, Method::POST, "/push/3/messages", Some(&body), &headers)
                .await
                .and_then(|a| a.json())
            {
                Ok(answer) => {
                    let m = &answer["messages"][0];
                    let id = m["messageId"].as_str().unwrap_or_default();
                    let status = &m["status"];
                    let text = format!(
                        "{}: {}",
                        status["name"].as_str().unwrap_or("SENT"),
                        status["description"].as_str().unwrap_or("")
                    );
                    let flash = if status["groupName"] == "REJECTED" {
                        Flash::error(text)
                    } else {
                        Flash::ok(text)
                    };
                    return flash_to(&portal, &session, flash, &format!("/messages/{}", enc(id))).await;
                }
                Err(f) => {
                    form.errors = field_errors(&f, send_field);
                    Some(f)
                }
            }
        }
    };
    let status = failure.as_ref().map_or(StatusCode::BAD_REQUEST, |f| f.status);
    let mut page = send_page(&portal, &session, form).await;
    page.layout.flash = Some(Flash::error(match &failure {
        Some(f) => format!("Not sent: {}", f.message()),
        None => "Not sent: see the fields below.".to_string(),
    }));
    (status, page).into_response()
}

// --- the message page ------------------------------------------------------------------------------

/// One delivery record, for display.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub push_reg_id: String,
    pub provider: String,
    pub status: String,
    pub attempts: String,
    pub response: String,
    pub updated_at: String,
    pub reported: String,
}

/// A message with its statuses.
#[derive(Debug, Clone, Default)]
pub struct MessageView {
    pub message_id: String,
    pub bulk_id: String,
    pub application_code: String,
    pub created_at: String,
    pub destination: String,
    pub title: String,
    pub text: String,
    pub submission: String,
    pub audience: String,
    /// (status, count) of every delivery status.
    pub counts: Vec<(String, i64)>,
    pub delivered: i64,
    pub seen: i64,
    pub done: bool,
}

/// A message resource (§6.7) for display.
pub fn message_view(m: &Value) -> MessageView {
    MessageView {
        message_id: text(&m["messageId"]),
        bulk_id: text(&m["bulkId"]),
        application_code: text(&m["applicationCode"]),
        created_at: text(&m["createdAt"]),
        destination: m["destination"].to_string(),
        title: text(&m["content"]["title"]),
        text: text(&m["content"]["text"]),
        submission: text(&m["submissionStatus"]["name"]),
        audience: match m["audience"]["installations"].as_i64() {
            Some(n) => format!("{} ({n} installations)", text(&m["audience"]["state"])),
            None => text(&m["audience"]["state"]),
        },
        counts: m["deliveries"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0))).collect())
            .unwrap_or_default(),
        delivered: m["reported"]["delivered"].as_i64().unwrap_or(0),
        seen: m["reported"]["seen"].as_i64().unwrap_or(0),
        done: m["done"] == true,
    }
}

/// The message page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/send_message.html")]
pub struct MessagePageView {
    pub layout: Layout,
    pub m: MessageView,
    pub deliveries: Vec<DeliveryRow>,
    /// More records than shown.
    pub more: bool,
}

/// Delivery records shown on the message page.
const DELIVERIES_SHOWN: usize = 100;

/// `GET /portal/messages/{id}`: the message and its delivery records; while not done, the
/// status block (`#delivery-status`) reloads itself every second (htmx, `hx-select`), and the
/// version rendered once done has no trigger, which ends the polling.
async fn message(State(portal): State<PortalState>, session: SignedIn, Path(id): Path<String>) -> Response<Body> {
    let m = match portal
        .api_get(&session.caller, &format!("/messages/{}", enc(&id)))
        .await
    {
        Ok(m) => m,
        Err(f) => return failure_page(&portal, &f),
    };
    let records = match portal
        .api_get(
            &session.caller,
            &format!("/messages/{}/deliveries?limit={DELIVERIES_SHOWN}", enc(&id)),
        )
        .await
    {
        Ok(r) => r,
        Err(f) => return failure_page(&portal, &f),
    };
    let deliveries = records["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let mut reported = Vec::new();
            if let Some(at) = d["deliveredAt"].as_str() {
                reported.push(format!("delivered {at}"));
            }
            if let Some(at) = d["seenAt"].as_str() {
                reported.push(format!("seen {at}"));
            }
            let r = &d["providerResponse"];
            DeliveryRow {
                delivery_id: text(&d["deliveryId"]),
                push_reg_id: text(&d["pushRegId"]),
                provider: text(&d["provider"]),
                status: text(&d["status"]),
                attempts: text(&d["attempts"]),
                response: match (r["httpStatus"].as_i64(), r["reason"].as_str()) {
                    (Some(s), Some(reason)) => format!("{s} {reason}"),
                    (Some(s), None) => s.to_string(),
                    (None, Some(reason)) => reason.to_string(),
                    (None, None) => String::new(),
                },
                updated_at: text(&d["updatedAt"]),
                reported: reported.join(", "),
            }
        })
        .collect();
    let view = message_view(&m);
    MessagePageView {
        layout: session.layout(&portal, format!("Message {}", view.message_id), "send"),
        m: view,
        deliveries,
        more: records["nextCursor"].is_string(),
    }
    .into_response()
}

// --- recent sends ----------------------------------------------------------------------------------

/// The recent sends page.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "portal/send_recent.html")]
pub struct RecentPage {
    pub layout: Layout,
    pub messages: Vec<MessageView>,
    pub next: Option<String>,
    pub bulk_id: String,
    pub error: Option<String>,
}

/// Messages per page of recent sends.
const RECENT_PAGE: usize = 25;

/// `GET /portal/messages?cursor=&bulkId=`: the account's messages, newest first (or one bulk's).
async fn recent(State(portal): State<PortalState>, session: SignedIn, query: Form) -> Response<Body> {
    let bulk_id = query.get("bulkId").unwrap_or("").trim().to_string();
    let mut path = format!("/messages?limit={RECENT_PAGE}");
    if !bulk_id.is_empty() {
        path.push_str(&format!("&bulkId={}", enc(&bulk_id)));
    }
    if let Some(c) = query.get("cursor").filter(|c| !c.is_empty()) {
        path.push_str(&format!("&cursor={}", enc(c)));
    }
    let (messages, next, error) = match portal.api_get(&session.caller, &path).await {
        Ok(page) => (
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(message_view)
                .collect(),
            page["nextCursor"].as_str().map(str::to_string),
            None,
        ),
        Err(f) => (Vec::new(), None, Some(f.message())),
    };
    RecentPage {
        layout: session.layout(&portal, "Recent sends", "send"),
        messages,
        next,
        bulk_id,
        error,
    }
    .into_response()
}
