//! Reading send results (management-api.md §6.7, §7.7), scope `push:send`:
//! `GET /api/v1/messages/{messageId}`, `GET /api/v1/messages?bulkId=`,
//! `GET /api/v1/messages/{messageId}/deliveries?status=`.

use axum::{Router, body::Body, extract::State, routing::get};
use http::Response;
use roster_core::push::{MessageView, is_multiple, submission_status_json};
use roster_model::resources::timestamp;
use roster_store::push::{Delivery, DeliveryStatus};
use serde_json::{Map, Value, json};

use super::{
    PathParams, QueryPairs,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult},
    ok,
    paging::{PageRequest, page_json},
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/messages", get(list))
        .route("/messages/{message_id}", get(show))
        .route("/messages/{message_id}/deliveries", get(deliveries))
}

/// The message resource of §6.7.
fn message_json(v: &MessageView) -> Value {
    let m = &v.message;
    let counts: Map<String, Value> = DeliveryStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), json!(v.counts.count(*s))))
        .collect();
    json!({
        "messageId": m.message_id,
        "bulkId": m.bulk_id,
        "applicationCode": v.application_code,
        "createdAt": timestamp(m.created_at),
        "expiresAt": timestamp(m.expires_at),
        "destination": m.destination,
        "content": m.content,
        "submissionStatus": submission_status_json(m.submission_status, is_multiple(&m.destination), false),
        "audience": {"state": m.audience_state.as_str(), "installations": m.audience_count},
        "deliveries": counts,
        "reported": {"delivered": v.counts.delivered, "seen": v.counts.seen},
        "done": v.done(),
    })
}

/// The delivery record of §6.2; `pushRegId` and `personId` are `null` after a GDPR erase.
fn delivery_json(d: &Delivery, bulk_id: &str) -> Value {
    let mut out = json!({
        "deliveryId": d.delivery_id,
        "messageId": d.message_id,
        "bulkId": bulk_id,
        "pushRegId": d.push_reg_id,
        "personId": d.person_id,
        "provider": d.provider.as_str(),
        "status": d.status.as_str(),
        "attempts": d.attempts,
    });
    if let Some(reason) = &d.provider_reason {
        let mut response = Map::new();
        if let Some(status) = d.provider_http_status {
            response.insert("httpStatus".into(), json!(status));
        }
        response.insert("reason".into(), json!(reason));
        out["providerResponse"] = Value::Object(response);
    }
    out["createdAt"] = json!(timestamp(d.created_at));
    out["updatedAt"] = json!(timestamp(d.updated_at));
    if let Some(at) = d.last_attempt_at {
        out["lastAttemptAt"] = json!(timestamp(at));
    }
    // While QUEUED only: a terminal record has no next attempt.
    if d.status == DeliveryStatus::Queued {
        out["nextAttemptAt"] = json!(timestamp(d.next_attempt_at));
    }
    if let Some(at) = d.delivered_at {
        out["deliveredAt"] = json!(timestamp(at));
    }
    if let Some(at) = d.seen_at {
        out["seenAt"] = json!(timestamp(at));
    }
    out
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PushSend)?;
    let view = state.core.message_view(caller.account_id(), &p[0]).await?;
    Ok(ok(&message_json(&view)))
}

/// `?bulkId=`: the bulk's messages in request order, paged; without `bulkId` (a Roster addition
/// for the portal's recent sends) the account's messages newest first.
async fn list(State(state): State<AppState>, caller: Caller, query: QueryPairs) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PushSend)?;
    let Some(bulk_id) = query.get("bulkId").filter(|b| !b.is_empty()) else {
        return recent(&state, &caller, &query).await;
    };
    let page = PageRequest::from_query("messages", &query.pairs())?;
    let after = match &page.after {
        None => None,
        Some(k) => Some(
            k.as_i64()
                .ok_or_else(|| MgmtError::field("query.cursor", "invalid cursor, or one of another query"))?,
        ),
    };
    let mut views = state
        .core
        .bulk_messages(caller.account_id(), bulk_id, after, page.limit as u32 + 1)
        .await?;
    let more = views.len() > page.limit;
    views.truncate(page.limit);
    let next = match views.last() {
        Some(last) if more => Some(page.cursor_after(json!(last.message.position))),
        _ => None,
    };
    Ok(ok(&page_json(views.iter().map(message_json).collect(), next)))
}

/// The account's messages by `createdAt` then `messageId`, both descending; the cursor holds
/// the last item's pair.
async fn recent(state: &AppState, caller: &Caller, query: &QueryPairs) -> MgmtResult<Response<Body>> {
    let page = PageRequest::from_query("messages?recent", &query.pairs())?;
    let before = match &page.after {
        None => None,
        Some(k) => Some(
            k.as_array()
                .and_then(|a| Some((a.first()?.as_i64()?, a.get(1)?.as_str()?.to_string())))
                .ok_or_else(|| MgmtError::field("query.cursor", "invalid cursor, or one of another query"))?,
        ),
    };
    let mut views = state
        .core
        .recent_messages(caller.account_id(), before, page.limit as u32 + 1)
        .await?;
    let more = views.len() > page.limit;
    views.truncate(page.limit);
    let next = match views.last() {
        Some(last) if more => Some(page.cursor_after(json!([last.message.created_at, last.message.message_id]))),
        _ => None,
    };
    Ok(ok(&page_json(views.iter().map(message_json).collect(), next)))
}

/// The records of a message by `deliveryId`, optionally of one `status`, paged.
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    query: QueryPairs,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PushSend)?;
    let status = match query.get("status") {
        None | Some("") => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            MgmtError::field(
                "query.status",
                "must be QUEUED, ACCEPTED, REJECTED, UNREGISTERED, EXPIRED or FAILED",
            )
        })?),
    };
    let page = PageRequest::from_query(&format!("messages/{}/deliveries", p[0]), &query.pairs())?;
    let after = match &page.after {
        None => None,
        Some(k) => Some(
            k.as_str()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .ok_or_else(|| MgmtError::field("query.cursor", "invalid cursor, or one of another query"))?,
        ),
    };
    let (message, mut records) = state
        .core
        .message_deliveries(caller.account_id(), &p[0], status, after, page.limit as u32 + 1)
        .await?;
    let more = records.len() > page.limit;
    records.truncate(page.limit);
    let next = match records.last() {
        Some(last) if more => Some(page.cursor_after(json!(last.delivery_id.to_string()))),
        _ => None,
    };
    let items = records.iter().map(|d| delivery_json(d, &message.bulk_id)).collect();
    Ok(ok(&page_json(items, next)))
}
