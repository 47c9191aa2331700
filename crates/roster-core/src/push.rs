//! Sending and delivery (management-api.md §5, §6): accepting `POST /push/3/messages`, resolving
//! `MULTIPLE` audiences in chunks, claiming due deliveries and recording what the providers
//! answered, device reports, and the reads of §6.7. The provider calls themselves happen outside
//! any transaction, in the delivery workers of the server, with the clients of roster-push.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use roster_model::filter::Filter;
use roster_model::validate::{email_key, is_valid_email, normalize_phone};
use roster_model::{Application, ErrorCode, Installation, Millis, Provider, TokenClearedReason, now_millis};
use roster_push::payload::{PAYLOAD_LIMIT, payload_sizes};
use roster_push::retry::{AfterRetryable, after_retryable};
use roster_push::{ContentKind, Outcome, PushContent, PushMessage, SendReport};
use roster_store::audience::Scope;
use roster_store::push::{
    AttemptResult, AudienceJob, AudienceState, Bulk, Delivery, DeliveryCounts, DeliveryStatus, Message,
    SubmissionStatus, constraints,
};
use roster_store::{Constraint, StoreError, Tx};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::idempotency::{IdempotencyHold, done_record};
use crate::{Core, CoreError, CoreResult};

/// §5.1: messages per request.
pub const MAX_MESSAGES: usize = 100;
/// §5.1: destinations per message.
pub const MAX_DESTINATIONS: usize = 1000;
/// §5.1: `content.title` characters.
pub const MAX_TITLE: usize = 256;
/// §5.1: `content.text` characters.
pub const MAX_TEXT: usize = 2000;
/// §5.1: `content.url` characters.
pub const MAX_URL: usize = 2048;
/// §5.1: compact JSON bytes of `options.customPayload`.
pub const MAX_CUSTOM_PAYLOAD: usize = 2048;
/// §5.1: `options.sound` characters.
pub const MAX_SOUND: usize = 64;
/// §5.1: largest `options.badge`.
pub const MAX_BADGE: u64 = 99_999;
/// §5.1: shortest validity period.
pub const MIN_VALIDITY_MS: Millis = 30_000;
/// §5.1: longest validity period.
pub const MAX_VALIDITY_MS: Millis = 72 * 3_600_000;
/// §5.1: validity period when none is given.
pub const DEFAULT_VALIDITY_MS: Millis = 48 * 3_600_000;
/// §5.1, §5.2: `bulkId` and `messageId` are 1–100 of `[A-Za-z0-9._:-]`.
pub const MAX_ID: usize = 100;
/// mobile-api.md §5.13: only the first ids of a device report are matched.
pub const MAX_REPORTED_IDS: usize = 1000;

/// Invalid fields of a request: JSON path → messages (management-api.md §2 `validationErrors`).
pub type FieldProblems = BTreeMap<String, Vec<String>>;

/// Why a send was not accepted.
#[derive(Debug)]
pub enum SendError {
    /// `400 BAD_REQUEST` with every invalid field; nothing was created.
    Invalid(FieldProblems),
    /// Any other refusal (`409 ALREADY_EXISTS`, ...) or a store failure.
    Core(CoreError),
}

impl From<CoreError> for SendError {
    fn from(e: CoreError) -> Self {
        SendError::Core(e)
    }
}

impl From<StoreError> for SendError {
    fn from(e: StoreError) -> Self {
        SendError::Core(e.into())
    }
}

fn problem(problems: &mut FieldProblems, path: impl Into<String>, message: impl Into<String>) {
    problems.entry(path.into()).or_default().push(message.into());
}

// --- the request (§5.1–§5.3, §5.5) -------------------------------------------------------------

/// One destination as validated, before any lookup.
#[derive(Debug, Clone)]
enum Target {
    ExternalUserId(String),
    /// The email comparison key.
    Email(String),
    /// The normalised phone number.
    Phone(String),
    /// A lowercase pushRegId.
    Registration(String),
    /// §5.3: the filter parts (each with its JSON path) and a segment reference.
    Multiple {
        parts: Vec<(Value, String)>,
        segment: Option<(Uuid, String)>,
    },
}

#[derive(Debug, Clone)]
struct DestinationRequest {
    path: String,
    /// As received, echoed in answers.
    raw: Value,
    target: Target,
    target_only_primary: bool,
    message_id: Option<String>,
}

#[derive(Debug, Clone)]
struct MessageRequest {
    path: String,
    sender: Option<String>,
    /// `content` as stored.
    content: Value,
    /// Delivery options as stored.
    options: Value,
    push: PushContent,
    validity_ms: Millis,
    destinations: Vec<DestinationRequest>,
}

#[derive(Debug, Clone)]
struct SendRequest {
    bulk_id: Option<String>,
    messages: Vec<MessageRequest>,
}

/// Whether `s` is 1–100 characters of `[A-Za-z0-9._:-]` (§5.1 `bulkId`, §5.2 `messageId`).
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// An absolute `https` URL with a host and no whitespace or control characters.
fn is_https_url(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://") else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..host_end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    !host.is_empty() && !host.starts_with(':') && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn text_member<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
    required: bool,
    max_chars: usize,
    problems: &mut FieldProblems,
) -> Option<&'a str> {
    let at = format!("{path}.{name}");
    match obj.get(name) {
        None | Some(Value::Null) if required => {
            problem(problems, at, "is required");
            None
        }
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if required && n == 0 {
                problem(problems, at, "must not be empty");
                None
            } else if n > max_chars {
                problem(problems, at, format!("must be at most {max_chars} characters"));
                None
            } else {
                Some(s)
            }
        }
        Some(_) => {
            problem(problems, at, "must be a string");
            None
        }
    }
}

/// §5.1 `validityPeriod` / `ttl`: the validity in milliseconds.
fn validity(options: &Map<String, Value>, path: &str, problems: &mut FieldProblems) -> Millis {
    let period = options.get("validityPeriod").filter(|v| !v.is_null());
    let ttl = options.get("ttl").filter(|v| !v.is_null());
    if period.is_some() && ttl.is_some() {
        problem(
            problems,
            format!("{path}.ttl"),
            "give either validityPeriod or ttl, not both",
        );
        return DEFAULT_VALIDITY_MS;
    }
    if let Some(ttl) = ttl {
        return match ttl.as_u64() {
            Some(secs) if (30..=259_200).contains(&secs) => secs as Millis * 1000,
            _ => {
                problem(
                    problems,
                    format!("{path}.ttl"),
                    "must be an integer number of seconds from 30 to 259200",
                );
                DEFAULT_VALIDITY_MS
            }
        };
    }
    let Some(period) = period else {
        return DEFAULT_VALIDITY_MS;
    };
    let at = format!("{path}.validityPeriod");
    let Some(p) = period.as_object() else {
        problem(problems, at, "must be an object with amount and timeUnit");
        return DEFAULT_VALIDITY_MS;
    };
    let amount = match p.get("amount").and_then(Value::as_u64) {
        Some(a) if a >= 1 => Some(a),
        _ => {
            problem(problems, format!("{at}.amount"), "must be an integer of at least 1");
            None
        }
    };
    let unit_ms: Option<u64> = match p.get("timeUnit").and_then(Value::as_str) {
        Some("SECONDS") => Some(1_000),
        Some("MINUTES") => Some(60_000),
        Some("HOURS") => Some(3_600_000),
        Some("DAYS") => Some(86_400_000),
        _ => {
            problem(
                problems,
                format!("{at}.timeUnit"),
                "must be SECONDS, MINUTES, HOURS or DAYS",
            );
            None
        }
    };
    let (Some(amount), Some(unit_ms)) = (amount, unit_ms) else {
        return DEFAULT_VALIDITY_MS;
    };
    let total = amount.saturating_mul(unit_ms);
    if !(MIN_VALIDITY_MS as u64..=MAX_VALIDITY_MS as u64).contains(&total) {
        problem(problems, at, "must be from 30 seconds to 72 hours");
        return DEFAULT_VALIDITY_MS;
    }
    total as Millis
}

/// `content` and `options` of one message (§5.1, §5.5).
fn parse_content(
    message: &Map<String, Value>,
    path: &str,
    problems: &mut FieldProblems,
) -> (Value, Value, PushContent, Millis) {
    let empty = Map::new();
    let content_path = format!("{path}.content");
    let content = match message.get("content") {
        Some(Value::Object(c)) => c,
        None | Some(Value::Null) => {
            problem(problems, &content_path, "is required");
            &empty
        }
        Some(_) => {
            problem(problems, &content_path, "must be an object");
            &empty
        }
    };
    let kind = match content.get("type") {
        None | Some(Value::Null) => "TEXT",
        Some(Value::String(t)) if t == "TEXT" || t == "IMAGE" => t.as_str(),
        Some(Value::String(t)) => {
            problem(
                problems,
                format!("{content_path}.type"),
                format!("content type {t} is not supported (TEXT or IMAGE)"),
            );
            "TEXT"
        }
        Some(_) => {
            problem(problems, format!("{content_path}.type"), "must be TEXT or IMAGE");
            "TEXT"
        }
    };
    let title = text_member(content, "title", &content_path, false, MAX_TITLE, problems);
    let text = if message.get("content").is_some_and(Value::is_object) {
        text_member(content, "text", &content_path, true, MAX_TEXT, problems)
    } else {
        None
    };
    let url = match (kind, content.get("url").filter(|v| !v.is_null())) {
        ("IMAGE", None) => {
            problem(problems, format!("{content_path}.url"), "is required for IMAGE content");
            None
        }
        ("IMAGE", Some(Value::String(u))) if u.chars().count() <= MAX_URL && is_https_url(u) => Some(u.clone()),
        ("IMAGE", Some(_)) => {
            problem(
                problems,
                format!("{content_path}.url"),
                format!("must be an absolute https URL of at most {MAX_URL} characters"),
            );
            None
        }
        (_, Some(_)) => {
            problem(
                problems,
                format!("{content_path}.url"),
                "is only allowed for IMAGE content",
            );
            None
        }
        (_, None) => None,
    };

    let options_path = format!("{path}.options");
    let options = match message.get("options") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => {
            problem(problems, &options_path, "must be an object");
            &empty
        }
    };
    if options.contains_key("deliveryTimeWindow") {
        problem(
            problems,
            format!("{options_path}.deliveryTimeWindow"),
            "is not supported: messages are sent as soon as they are accepted",
        );
    }
    let custom_payload = match options.get("customPayload") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => {
            let size = serde_json::to_string(o).map(|s| s.len()).unwrap_or(usize::MAX);
            if size > MAX_CUSTOM_PAYLOAD {
                problem(
                    problems,
                    format!("{options_path}.customPayload"),
                    format!("must be at most {MAX_CUSTOM_PAYLOAD} bytes of compact JSON"),
                );
                None
            } else {
                Some(o.clone())
            }
        }
        Some(_) => {
            problem(problems, format!("{options_path}.customPayload"), "must be an object");
            None
        }
    };
    let sound = text_member(options, "sound", &options_path, false, MAX_SOUND, problems);
    let badge = match options.get("badge") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(b) if b <= MAX_BADGE => Some(b as u32),
            _ => {
                problem(
                    problems,
                    format!("{options_path}.badge"),
                    format!("must be an integer from 0 to {MAX_BADGE}"),
                );
                None
            }
        },
    };
    let silent = match options.get("silent") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problem(problems, format!("{options_path}.silent"), "must be true or false");
            false
        }
    };
    let validity_ms = validity(options, &options_path, problems);

    let mut stored_content = Map::new();
    stored_content.insert("type".into(), json!(kind));
    if let Some(t) = title {
        stored_content.insert("title".into(), json!(t));
    }
    stored_content.insert("text".into(), json!(text.unwrap_or_default()));
    if let Some(u) = &url {
        stored_content.insert("url".into(), json!(u));
    }
    let mut stored_options = Map::new();
    if let Some(p) = &custom_payload {
        stored_options.insert("customPayload".into(), Value::Object(p.clone()));
    }
    if let Some(s) = sound {
        stored_options.insert("sound".into(), json!(s));
    }
    if let Some(b) = badge {
        stored_options.insert("badge".into(), json!(b));
    }
    stored_options.insert("silent".into(), json!(silent));
    let push = PushContent {
        kind: match url {
            Some(url) => ContentKind::Image { url },
            None => ContentKind::Text,
        },
        title: title.map(str::to_owned),
        text: text.unwrap_or_default().to_owned(),
        custom_payload,
        sound: sound.map(str::to_owned),
        badge,
        silent,
    };
    (
        Value::Object(stored_content),
        Value::Object(stored_options),
        push,
        validity_ms,
    )
}

/// Members a `MULTIPLE` destination may have (§5.3).
const MULTIPLE_MEMBERS: [&str; 8] = [
    "type",
    "targetOnlyPrimaryDevices",
    "messageId",
    "filter",
    "$and",
    "$or",
    "$not",
    "segmentId",
];

fn parse_destination(value: &Value, path: &str, problems: &mut FieldProblems) -> Option<DestinationRequest> {
    let Some(d) = value.as_object() else {
        problem(problems, path, "must be an object");
        return None;
    };
    let target_only_primary = match d.get("targetOnlyPrimaryDevices") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problem(
                problems,
                format!("{path}.targetOnlyPrimaryDevices"),
                "must be true or false",
            );
            false
        }
    };
    let message_id = match d.get("messageId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_valid_id(s) => Some(s.clone()),
        Some(_) => {
            problem(
                problems,
                format!("{path}.messageId"),
                "must be 1 to 100 characters of A-Z a-z 0-9 . _ : -",
            );
            None
        }
    };
    let string_member = |name: &str, problems: &mut FieldProblems| -> Option<String> {
        match d.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                problem(problems, format!("{path}.{name}"), "must not be empty");
                None
            }
            None | Some(Value::Null) => {
                problem(problems, format!("{path}.{name}"), "is required");
                None
            }
            Some(_) => {
                problem(problems, format!("{path}.{name}"), "must be a string");
                None
            }
        }
    };
    let target = match d.get("type").and_then(Value::as_str) {
        Some("EXTERNAL_USER_ID") => string_member("externalUserId", problems).map(Target::ExternalUserId),
        Some("EMAIL") => string_member("email", problems).and_then(|e| {
            let trimmed = e.trim();
            if is_valid_email(trimmed) {
                Some(Target::Email(email_key(trimmed)))
            } else {
                problem(problems, format!("{path}.email"), "not a valid email address");
                None
            }
        }),
        Some("PHONE_NUMBER") => string_member("phoneNumber", problems).and_then(|p| match normalize_phone(&p) {
            Ok(n) => Some(Target::Phone(n)),
            Err(_) => {
                problem(problems, format!("{path}.phoneNumber"), "not a valid E.164 number");
                None
            }
        }),
        Some("REGISTRATION") => {
            string_member("pushRegistrationId", problems).and_then(|id| match Uuid::parse_str(id.trim()) {
                Ok(u) => Some(Target::Registration(u.hyphenated().to_string())),
                Err(_) => {
                    problem(problems, format!("{path}.pushRegistrationId"), "must be a UUID");
                    None
                }
            })
        }
        Some("MULTIPLE") => {
            let mut ok = true;
            for name in d.keys() {
                if !MULTIPLE_MEMBERS.contains(&name.as_str()) {
                    problem(
                        problems,
                        format!("{path}.{name}"),
                        "is not a member of a MULTIPLE destination (it would widen the audience if ignored)",
                    );
                    ok = false;
                }
            }
            let mut parts = Vec::new();
            let infobip: Map<String, Value> = ["$and", "$or", "$not"]
                .iter()
                .filter_map(|k| d.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
            match d.get("filter") {
                Some(_) if !infobip.is_empty() => {
                    problem(
                        problems,
                        format!("{path}.filter"),
                        "use either filter or the $and/$or/$not members, not both",
                    );
                    ok = false;
                }
                Some(f @ Value::Object(_)) => parts.push((f.clone(), format!("{path}.filter"))),
                Some(_) => {
                    problem(problems, format!("{path}.filter"), "must be a filter object");
                    ok = false;
                }
                None => {}
            }
            if !infobip.is_empty() {
                parts.push((Value::Object(infobip), path.to_owned()));
            }
            let segment = match d.get("segmentId") {
                None => None,
                Some(Value::String(s)) => match Uuid::parse_str(s) {
                    Ok(id) => Some((id, format!("{path}.segmentId"))),
                    Err(_) => {
                        problem(problems, format!("{path}.segmentId"), "unknown segment");
                        ok = false;
                        None
                    }
                },
                Some(_) => {
                    problem(problems, format!("{path}.segmentId"), "must be a segment id");
                    ok = false;
                    None
                }
            };
            ok.then_some(Target::Multiple { parts, segment })
        }
        Some(other) => {
            problem(
                problems,
                format!("{path}.type"),
                format!(
                    "unknown destination type {other} (EXTERNAL_USER_ID, EMAIL, PHONE_NUMBER, REGISTRATION or MULTIPLE)"
                ),
            );
            None
        }
        None => {
            problem(problems, format!("{path}.type"), "is required");
            None
        }
    }?;
    Some(DestinationRequest {
        path: path.to_owned(),
        raw: value.clone(),
        target,
        target_only_primary,
        message_id,
    })
}

/// Everything of §5.1–§5.5 that needs no lookup.
fn parse_request(body: &Value, problems: &mut FieldProblems) -> SendRequest {
    let mut request = SendRequest {
        bulk_id: None,
        messages: Vec::new(),
    };
    let Some(obj) = body.as_object() else {
        problem(problems, "$", "the body must be a JSON object");
        return request;
    };
    match obj.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => match options.get("schedule") {
            None | Some(Value::Null) => {}
            Some(Value::Object(schedule)) => {
                for unsupported in ["sendAt", "sendingSpeedLimit"] {
                    if schedule.contains_key(unsupported) {
                        problem(
                            problems,
                            format!("options.schedule.{unsupported}"),
                            "is not supported: messages are sent as soon as they are accepted",
                        );
                    }
                }
                match schedule.get("bulkId") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(b)) if is_valid_id(b) => request.bulk_id = Some(b.clone()),
                    Some(_) => problem(
                        problems,
                        "options.schedule.bulkId",
                        "must be 1 to 100 characters of A-Z a-z 0-9 . _ : -",
                    ),
                }
            }
            Some(_) => problem(problems, "options.schedule", "must be an object"),
        },
        Some(_) => problem(problems, "options", "must be an object"),
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if (1..=MAX_MESSAGES).contains(&m.len()) => m.as_slice(),
        Some(Value::Array(_)) => {
            problem(problems, "messages", format!("must hold 1 to {MAX_MESSAGES} messages"));
            return request;
        }
        None | Some(Value::Null) => {
            problem(problems, "messages", "is required");
            return request;
        }
        Some(_) => {
            problem(problems, "messages", "must be an array");
            return request;
        }
    };
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let Some(m) = message.as_object() else {
            problem(problems, path, "must be an object");
            continue;
        };
        if m.contains_key("webhooks") {
            problem(
                problems,
                format!("{path}.webhooks"),
                "is not supported: poll GET /api/v1/messages/{messageId} instead",
            );
        }
        let sender = match m.get("sender") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_ascii_lowercase()),
            None | Some(Value::Null) => {
                problem(problems, format!("{path}.sender"), "is required");
                None
            }
            Some(_) => {
                problem(problems, format!("{path}.sender"), "must be an application code or id");
                None
            }
        };
        let (content, options, push, validity_ms) = parse_content(m, &path, problems);
        let mut destinations = Vec::new();
        match m.get("destinations") {
            Some(Value::Array(d)) if (1..=MAX_DESTINATIONS).contains(&d.len()) => {
                for (j, dest) in d.iter().enumerate() {
                    if let Some(parsed) = parse_destination(dest, &format!("{path}.destinations[{j}]"), problems) {
                        destinations.push(parsed);
                    }
                }
            }
            Some(Value::Array(_)) => problem(
                problems,
                format!("{path}.destinations"),
                format!("must hold 1 to {MAX_DESTINATIONS} destinations"),
            ),
            None | Some(Value::Null) => problem(problems, format!("{path}.destinations"), "is required"),
            Some(_) => problem(problems, format!("{path}.destinations"), "must be an array"),
        }
        request.messages.push(MessageRequest {
            path,
            sender,
            content,
            options,
            push,
            validity_ms,
            destinations,
        });
    }
    // §5.2: a messageId names one message; two destinations of one request cannot share it.
    let mut seen = HashSet::new();
    for d in request.messages.iter().flat_map(|m| &m.destinations) {
        if let Some(id) = &d.message_id
            && !seen.insert(id.clone())
        {
            problem(
                problems,
                format!("{}.messageId", d.path),
                "is used by another destination of this request",
            );
        }
    }
    request
}

/// The delivery content of a stored message (the same [`PushMessage`] for all its deliveries).
pub fn push_message(message: &Message) -> PushMessage {
    let content = &message.content;
    let options = &message.options;
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    PushMessage {
        content: PushContent {
            kind: match (content.get("type").and_then(Value::as_str), text(content, "url")) {
                (Some("IMAGE"), Some(url)) => ContentKind::Image { url },
                _ => ContentKind::Text,
            },
            title: text(content, "title"),
            text: text(content, "text").unwrap_or_default(),
            custom_payload: options.get("customPayload").and_then(Value::as_object).cloned(),
            sound: text(options, "sound"),
            badge: options
                .get("badge")
                .and_then(Value::as_u64)
                .and_then(|b| u32::try_from(b).ok()),
            silent: options.get("silent").and_then(Value::as_bool).unwrap_or(false),
        },
        bulk_id: message.bulk_id.clone(),
        send_date_time: message.created_at,
        expires_at: message.expires_at,
    }
}

// --- the answer (§5.4) ---------------------------------------------------------------------------

/// The status object of §5.4 / §6.7; `description` only in the send answer.
pub fn submission_status_json(status: SubmissionStatus, multiple: bool, with_description: bool) -> Value {
    let (group_id, group, id, description) = match status {
        SubmissionStatus::PendingAccepted if multiple => {
            (1, "PENDING", 26, "Message accepted, audience resolution queued")
        }
        SubmissionStatus::PendingAccepted => (1, "PENDING", 26, "Message accepted, delivery queued"),
        SubmissionStatus::RejectedDestinationNotFound => {
            (5, "REJECTED", 51, "Destination not found in the sender application")
        }
        SubmissionStatus::RejectedNoDeliverableInstallation => {
            (5, "REJECTED", 52, "No deliverable installation for the destination")
        }
    };
    let mut out = json!({"groupId": group_id, "groupName": group, "id": id, "name": status.as_str()});
    if with_description {
        out["description"] = json!(description);
    }
    out
}

/// Whether a stored destination is `MULTIPLE`.
pub fn is_multiple(destination: &Value) -> bool {
    destination.get("type").and_then(Value::as_str) == Some("MULTIPLE")
}

/// An accepted send: the answer of `POST /push/3/messages`.
#[derive(Debug, Clone)]
pub struct SendAccepted {
    pub bulk_id: String,
    /// One per destination, in request order.
    pub messages: Vec<AcceptedMessage>,
}

/// One element of the answer.
#[derive(Debug, Clone)]
pub struct AcceptedMessage {
    pub message_id: String,
    pub status: SubmissionStatus,
    pub destination: Value,
}

impl SendAccepted {
    /// The JSON of §5.4.
    pub fn to_json(&self) -> Value {
        let messages: Vec<Value> = self
            .messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id,
                    "status": submission_status_json(m.status, is_multiple(&m.destination), true),
                    "destination": m.destination,
                })
            })
            .collect();
        json!({"bulkId": self.bulk_id, "messages": messages})
    }
}

// --- accepting a send ------------------------------------------------------------------------------

/// The audience filter of a `MULTIPLE` destination as one JSON filter: the conjunction of its
/// parts (§5.3), `{}` for a broadcast.
fn conjunction(parts: Vec<Value>) -> Value {
    match parts.len() {
        0 => json!({}),
        1 => parts.into_iter().next().unwrap_or_else(|| json!({})),
        _ => json!({"$and": parts}),
    }
}

/// A destination with everything looked up.
struct Prepared {
    app: Application,
    audience: Option<Value>,
}

/// Whether an installation is sent to (people.md §2.1 deliverable; §5.2 primary only).
pub fn is_target(inst: &Installation, primary_only: bool) -> bool {
    inst.is_deliverable() && inst.provider().is_some() && (!primary_only || inst.is_primary)
}

/// A new `QUEUED` record of `message` for `inst`, due now.
///
/// Its id is a time-ordered UUID (version 7), not a random one: the delivery tables are keyed
/// by it, and a send inserts thousands of records a second, each of which would otherwise land
/// on a random page of every id-keyed index (docs/decisions.md, "Time-ordered delivery ids").
/// The id is not a secret: it is the message id in the push payload, which the device reports.
fn new_delivery(message: &Message, inst: &Installation, now: Millis) -> Option<Delivery> {
    Some(Delivery {
        account_id: message.account_id,
        delivery_id: Uuid::now_v7(),
        message_id: message.message_id.clone(),
        application_id: message.application_id,
        push_reg_id: Some(inst.push_reg_id.clone()),
        person_id: Some(inst.person_id),
        provider: inst.provider()?,
        status: DeliveryStatus::Queued,
        attempts: 0,
        provider_http_status: None,
        provider_reason: None,
        created_at: now,
        updated_at: now,
        last_attempt_at: None,
        next_attempt_at: now,
        claim_id: None,
        delivered_at: None,
        seen_at: None,
    })
}

/// The installations a single destination reaches: `None` when the person or installation does
/// not exist in the sender application.
async fn single_audience(tx: &mut dyn Tx, app: &Application, target: &Target) -> CoreResult<Option<Vec<Installation>>> {
    let account = app.account_id;
    let owner = match target {
        Target::ExternalUserId(ext) => tx.persons_owning(account, Some(ext), &[], &[]).await?,
        Target::Email(key) => tx.persons_owning(account, None, &[], std::slice::from_ref(key)).await?,
        Target::Phone(phone) => {
            tx.persons_owning(account, None, std::slice::from_ref(phone), &[])
                .await?
        }
        Target::Registration(id) => {
            return Ok(tx
                .installation(id)
                .await?
                .filter(|i| i.account_id == account && i.application_id == app.id)
                .map(|i| vec![i]));
        }
        Target::Multiple { .. } => return Ok(None),
    };
    let Some(person) = owner.first() else {
        return Ok(None);
    };
    let installations = tx.installations_of_person(account, *person, Some(app.id)).await?;
    // §5.2: a person without installations in the sender application is not found there.
    Ok((!installations.is_empty()).then_some(installations))
}

fn already_exists(text: String) -> CoreError {
    CoreError::api(ErrorCode::AlreadyExists, text)
}

impl Core {
    /// `POST /push/3/messages` (management-api.md §5): validates the whole request (every
    /// problem at its path), then in one transaction creates the bulk, one message per
    /// destination, the `QUEUED` records of single destinations, the audience jobs of `MULTIPLE`
    /// ones, and the idempotency record of `hold` with the answer.
    pub async fn accept_send(
        &self,
        account_id: Uuid,
        body: &Value,
        hold: Option<&IdempotencyHold>,
    ) -> Result<SendAccepted, SendError> {
        let mut problems = FieldProblems::new();
        let request = parse_request(body, &mut problems);
        let now = now_millis();
        let bulk_id = request.bulk_id.clone().unwrap_or_else(|| Uuid::new_v4().to_string());

        // Lookups: senders, attribute definitions (filters), segments; then the payload sizes.
        let (apps, definitions) = crate::in_read_tx!(self, |tx| async {
            Ok::<_, CoreError>((
                tx.applications(account_id).await?,
                tx.attribute_definitions(account_id, None).await?,
            ))
        })?;
        let mut prepared: Vec<Vec<Prepared>> = Vec::new();
        let mut segments = HashMap::new();
        for m in &request.messages {
            let app = m.sender.as_deref().and_then(|s| {
                apps.iter()
                    .find(|a| a.application_code == s || Uuid::parse_str(s).is_ok_and(|id| id == a.id))
            });
            let app = match (app, &m.sender) {
                (Some(a), _) if a.enabled => Some(a.clone()),
                (Some(_), _) => {
                    problem(
                        &mut problems,
                        format!("{}.sender", m.path),
                        "the application is disabled",
                    );
                    None
                }
                (None, Some(_)) => {
                    problem(
                        &mut problems,
                        format!("{}.sender", m.path),
                        "no such application in this account",
                    );
                    None
                }
                (None, None) => None,
            };
            let sizes = payload_sizes(&PushMessage {
                content: m.push.clone(),
                bulk_id: bulk_id.clone(),
                send_date_time: now,
                expires_at: now + m.validity_ms,
            });
            if !sizes.fit() {
                problem(
                    &mut problems,
                    format!("{}.content", m.path),
                    format!(
                        "the rendered push is larger than the providers' {PAYLOAD_LIMIT} bytes \
                         (APNs {}, FCM data {}, HMS data {})",
                        sizes.apns, sizes.fcm_data, sizes.hms_data
                    ),
                );
            }
            let mut dests = Vec::new();
            for d in &m.destinations {
                let mut audience = None;
                if let Target::Multiple { parts, segment } = &d.target {
                    let mut all = Vec::new();
                    let mut ok = true;
                    for (part, path) in parts {
                        if let Err(errors) = Filter::parse(part, &definitions, path) {
                            ok = false;
                            for e in errors {
                                problem(&mut problems, e.path, e.message);
                            }
                        }
                        all.push(part.clone());
                    }
                    if let Some((segment_id, path)) = segment {
                        let found = match segments.get(segment_id) {
                            Some(found) => found,
                            None => {
                                let loaded = self.segment_filter(account_id, *segment_id).await?;
                                segments.entry(*segment_id).or_insert(loaded)
                            }
                        };
                        match found {
                            Some((filter, true)) => all.push(filter.clone()),
                            Some(_) => {
                                ok = false;
                                problem(
                                    &mut problems,
                                    path.clone(),
                                    "the segment is not valid (an attribute it uses was deleted)",
                                );
                            }
                            None => {
                                ok = false;
                                problem(&mut problems, path.clone(), "unknown segment");
                            }
                        }
                    }
                    let combined = conjunction(all);
                    if ok && let Err(errors) = Filter::parse(&combined, &definitions, &d.path) {
                        for e in errors {
                            problem(
                                &mut problems,
                                d.path.clone(),
                                format!("the combined audience filter is invalid: {}", e.message),
                            );
                        }
                    }
                    audience = Some(combined);
                }
                if let Some(app) = &app {
                    dests.push(Prepared {
                        app: app.clone(),
                        audience,
                    });
                }
            }
            prepared.push(dests);
        }
        if !problems.is_empty() {
            return Err(SendError::Invalid(problems));
        }

        let accepted = crate::in_write_tx!(self, |tx| async {
            self.create_send(tx, account_id, &request, &prepared, &bulk_id, now, hold)
                .await
        })?;
        Ok(accepted)
    }

    /// The filter of a saved segment and whether it is valid (management-api.md §5.3), `None`
    /// for an unknown segment. The filter is copied into the message's audience job, so a later
    /// change or deletion of the segment does not touch an accepted send (§7.6).
    async fn segment_filter(&self, account_id: Uuid, segment_id: Uuid) -> CoreResult<Option<(Value, bool)>> {
        crate::in_read_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.segment(account_id, segment_id).await?.map(|s| (s.filter, s.valid)))
        })
    }

    /// The transaction of [`Core::accept_send`].
    #[allow(clippy::too_many_arguments)]
    async fn create_send(
        &self,
        tx: &mut dyn Tx,
        account_id: Uuid,
        request: &SendRequest,
        prepared: &[Vec<Prepared>],
        bulk_id: &str,
        now: Millis,
        hold: Option<&IdempotencyHold>,
    ) -> CoreResult<SendAccepted> {
        if tx.bulk_exists(account_id, bulk_id).await? {
            return Err(already_exists(format!("bulkId {bulk_id} is already used")));
        }
        for d in request.messages.iter().flat_map(|m| &m.destinations) {
            if let Some(id) = &d.message_id
                && tx.message(account_id, id).await?.is_some()
            {
                return Err(already_exists(format!("messageId {id} is already used")));
            }
        }
        tx.insert_bulk(&Bulk {
            account_id,
            bulk_id: bulk_id.to_owned(),
            created_at: now,
        })
        .await
        .map_err(|e| name_conflict(e, bulk_id))?;
        let mut accepted = SendAccepted {
            bulk_id: bulk_id.to_owned(),
            messages: Vec::new(),
        };
        let mut position = 0i64;
        for (m, dests) in request.messages.iter().zip(prepared) {
            for (d, p) in m.destinations.iter().zip(dests) {
                let message_id = d.message_id.clone().unwrap_or_else(|| Uuid::new_v4().to_string());
                let mut message = Message {
                    account_id,
                    message_id: message_id.clone(),
                    bulk_id: bulk_id.to_owned(),
                    position,
                    application_id: p.app.id,
                    destination: d.raw.clone(),
                    content: m.content.clone(),
                    options: m.options.clone(),
                    target_only_primary: d.target_only_primary,
                    submission_status: SubmissionStatus::PendingAccepted,
                    audience_state: AudienceState::Resolved,
                    audience_count: 0,
                    created_at: now,
                    expires_at: now + m.validity_ms,
                    updated_at: now,
                };
                position += 1;
                match &p.audience {
                    Some(filter) => {
                        message.audience_state = AudienceState::Resolving;
                        tx.insert_message(&message)
                            .await
                            .map_err(|e| name_conflict(e, &message_id))?;
                        tx.insert_audience_job(&AudienceJob {
                            account_id,
                            message_id: message_id.clone(),
                            application_id: p.app.id,
                            filter: filter.clone(),
                            target_only_primary: d.target_only_primary,
                            after_push_reg_id: None,
                            created_at: now,
                            updated_at: now,
                        })
                        .await?;
                    }
                    None => {
                        let deliveries: Vec<Delivery> = match single_audience(tx, &p.app, &d.target).await? {
                            None => {
                                message.submission_status = SubmissionStatus::RejectedDestinationNotFound;
                                Vec::new()
                            }
                            Some(installations) => {
                                let records: Vec<Delivery> = installations
                                    .iter()
                                    .filter(|i| is_target(i, d.target_only_primary))
                                    .filter_map(|i| new_delivery(&message, i, now))
                                    .collect();
                                if records.is_empty() {
                                    message.submission_status = SubmissionStatus::RejectedNoDeliverableInstallation;
                                }
                                records
                            }
                        };
                        message.audience_count = deliveries.len() as i64;
                        tx.insert_message(&message)
                            .await
                            .map_err(|e| name_conflict(e, &message_id))?;
                        tx.insert_deliveries(&deliveries).await?;
                    }
                }
                accepted.messages.push(AcceptedMessage {
                    message_id,
                    status: message.submission_status,
                    destination: d.raw.clone(),
                });
            }
        }
        if let Some(hold) = hold {
            let body = serde_json::to_vec(&accepted.to_json())
                .map_err(|e| StoreError::Other(format!("cannot encode the answer: {e}")))?;
            tx.put_idempotency_record(&done_record(hold, 200, body, now)).await?;
        }
        Ok(accepted)
    }
}

/// A bulk or message id taken by a concurrent send: `409 ALREADY_EXISTS` (the check before the
/// insert saw it free).
fn name_conflict(e: StoreError, id: &str) -> CoreError {
    match &e {
        StoreError::Conflict {
            constraint: Constraint::Other(name),
        } if name == constraints::BULK_ID => already_exists(format!("bulkId {id} is already used")),
        StoreError::Conflict {
            constraint: Constraint::Other(name),
        } if name == constraints::MESSAGE_ID => already_exists(format!("messageId {id} is already used")),
        _ => e.into(),
    }
}

// --- audience resolution (§6.1) ---------------------------------------------------------------------

impl Core {
    /// Resolves one chunk of the audience job that waited longest, in one transaction: the next
    /// `chunk_size` installations of the sender application that match the filter, by pushRegId
    /// (indexed SQL, `AudienceTx::audience_installations`), the records of those that are
    /// deliverable now, the message's count and the job's cursor (the last matching pushRegId);
    /// the last chunk marks the audience `RESOLVED` and ends the job. Whether a job was worked
    /// on (`false`: nothing to do).
    pub async fn resolve_audience_chunk(&self, chunk_size: u32) -> CoreResult<bool> {
        let chunk_size = chunk_size.clamp(1, roster_store::MAX_PAGE);
        crate::in_write_tx!(self, |tx| async {
            let Some(job) = tx.claim_audience_job().await? else {
                return Ok(false);
            };
            let now = now_millis();
            let Some(message) = tx.message(job.account_id, &job.message_id).await? else {
                tx.delete_audience_job(job.account_id, &job.message_id).await?;
                return Ok(true);
            };
            let definitions = tx.attribute_definitions(job.account_id, None).await?;
            let filter = match Filter::parse(&job.filter, &definitions, "filter") {
                Ok(f) => f,
                Err(errors) => {
                    // An attribute the filter uses was deleted after the send was accepted: no
                    // installation can match it any more (docs/decisions.md).
                    tracing::warn!(
                        message_id = %job.message_id,
                        problems = errors.len(),
                        "audience filter no longer parses; resolving the audience as it stands"
                    );
                    tx.set_message_audience(
                        job.account_id,
                        &job.message_id,
                        AudienceState::Resolved,
                        message.audience_count,
                        now,
                    )
                    .await?;
                    tx.delete_audience_job(job.account_id, &job.message_id).await?;
                    return Ok(true);
                }
            };
            // §6.1: the next chunk of the audience by pushRegId, as indexed SQL over the audience
            // index (the filter is not evaluated row by row here); deliverability is checked now.
            let scope = Scope {
                account_id: job.account_id,
                application_id: Some(job.application_id),
            };
            let chunk = tx
                .audience_installations(scope, &filter, job.after_push_reg_id.as_deref(), chunk_size)
                .await?;
            let records: Vec<Delivery> = chunk
                .iter()
                .filter(|inst| is_target(inst, job.target_only_primary))
                .filter_map(|inst| new_delivery(&message, inst, now))
                .collect();
            tx.insert_deliveries(&records).await?;
            let count = message.audience_count + records.len() as i64;
            let last = (chunk.len() as u32) < chunk_size;
            let state = if last {
                AudienceState::Resolved
            } else {
                AudienceState::Resolving
            };
            tx.set_message_audience(job.account_id, &job.message_id, state, count, now)
                .await?;
            match chunk.last() {
                Some(inst) if !last => {
                    tx.advance_audience_job(job.account_id, &job.message_id, &inst.push_reg_id, now)
                        .await?
                }
                _ => tx.delete_audience_job(job.account_id, &job.message_id).await?,
            }
            Ok(true)
        })
    }
}

// --- delivery (§6.2–§6.5) ---------------------------------------------------------------------------

/// A claimed delivery with what its attempt needs, read right after the claim. The message, its
/// provider-neutral form and the application are shared by the records of a batch (read once
/// per batch; a copy per record was a tenth of the server's fan-out CPU).
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    /// `None` if the message is gone (its application was deleted).
    pub message: Option<Arc<ClaimedMessage>>,
    /// The installation now (its token may have changed since resolution).
    pub installation: Option<Installation>,
    pub application: Option<Arc<Application>>,
}

/// The message of claimed deliveries, with its provider-neutral payload built once.
#[derive(Debug)]
pub struct ClaimedMessage {
    pub message: Message,
    /// [`push_message`] of `message`.
    pub push: PushMessage,
}

impl ClaimedDelivery {
    /// The claim this delivery was taken with.
    pub fn claim_id(&self) -> Uuid {
        self.delivery.claim_id.unwrap_or_default()
    }
}

/// What happened to a claimed delivery.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    /// Its validity ended before the provider accepted it: `EXPIRED`, no call made.
    Expired,
    /// No provider call could be made: `FAILED` with this reason (installation deleted or no
    /// longer deliverable, message gone).
    NotSent { reason: String },
    /// One provider call (to `token`) with its report.
    Sent { report: SendReport, token: String },
}

/// The member of `providers` that holds a provider's settings (management-api.md §7.1).
pub fn provider_key(provider: Provider) -> &'static str {
    match provider {
        Provider::Apns => "apns",
        Provider::Fcm => "fcm",
        Provider::Hms => "hms",
    }
}

/// The members of an application's provider settings that delivery writes (the provider status
/// of §7.1, set by [`Core::finish_deliveries`]): everything else in them is credentials.
pub const PROVIDER_STATUS_MEMBERS: [&str; 2] = ["status", "lastError"];

/// Whether the stored provider settings show `status: ERROR`.
pub fn provider_in_error(app: &Application, provider: Provider) -> bool {
    app.providers
        .get(provider_key(provider))
        .and_then(|p| p.get("status"))
        .and_then(Value::as_str)
        == Some("ERROR")
}

impl Core {
    /// Claims up to `limit` due deliveries for `lease` (§6.5: row locks, any number of
    /// processes), then reads each one's message, installation and application.
    pub async fn claim_deliveries(&self, lease: Duration, limit: u32) -> CoreResult<Vec<ClaimedDelivery>> {
        let now = now_millis();
        let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let claim_id = Uuid::new_v4();
        let claimed = crate::in_write_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.claim_deliveries(now, lease_until, claim_id, limit).await?)
        })?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        crate::in_read_tx!(self, |tx| async {
            // Each message and application once per batch, the installations in one read.
            let mut messages: HashMap<(Uuid, String), Option<Arc<ClaimedMessage>>> = HashMap::new();
            let mut apps: HashMap<Uuid, Option<Arc<Application>>> = HashMap::new();
            for d in &claimed {
                let key = (d.account_id, d.message_id.clone());
                if let std::collections::hash_map::Entry::Vacant(slot) = messages.entry(key) {
                    let message = tx.message(d.account_id, &d.message_id).await?;
                    slot.insert(message.map(|message| {
                        let push = push_message(&message);
                        Arc::new(ClaimedMessage { message, push })
                    }));
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = apps.entry(d.application_id) {
                    slot.insert(tx.application(d.account_id, d.application_id).await?.map(Arc::new));
                }
            }
            // One read per account of the batch (every query filters by account).
            let mut ids: HashMap<Uuid, Vec<String>> = HashMap::new();
            for d in &claimed {
                if let Some(id) = &d.push_reg_id {
                    ids.entry(d.account_id).or_default().push(id.clone());
                }
            }
            let mut installations: HashMap<String, Installation> = HashMap::new();
            for (account_id, mut ids) in ids {
                ids.sort_unstable();
                ids.dedup();
                for i in tx.installations_by_ids(account_id, &ids).await? {
                    installations.insert(i.push_reg_id.clone(), i);
                }
            }
            let mut out = Vec::with_capacity(claimed.len());
            for d in claimed {
                let key = (d.account_id, d.message_id.clone());
                // Several records of a batch may go to one installation (several messages).
                let installation = d
                    .push_reg_id
                    .as_ref()
                    .and_then(|id| installations.get(id))
                    .filter(|i| i.account_id == d.account_id)
                    .cloned();
                out.push(ClaimedDelivery {
                    message: messages.get(&key).cloned().flatten(),
                    installation,
                    application: apps.get(&d.application_id).cloned().flatten(),
                    delivery: d,
                });
            }
            Ok::<_, CoreError>(out)
        })
    }

    /// Records an attempt (§6.2, §6.3, §6.5) if the delivery is still under its claim: the new
    /// status, `attempts`, `providerResponse`, the retry time; on `UNREGISTERED` the token is
    /// cleared from the installation if it still holds it (people.md §2.3); a credential failure
    /// sets the application's provider `status: ERROR` with `lastError`, and the next accepted
    /// push sets it back to `OK`. Returns the status recorded (`None`: the claim was lost, nothing
    /// was written).
    pub async fn finish_delivery(
        &self,
        claimed: &ClaimedDelivery,
        outcome: &AttemptOutcome,
    ) -> CoreResult<Option<DeliveryStatus>> {
        let mut statuses = self.finish_deliveries(&[(claimed, outcome)]).await?;
        Ok(statuses.pop().flatten())
    }

    /// Records the attempts of many deliveries in ONE write transaction, each exactly as
    /// [`Core::finish_delivery`] does (its record only while still under its claim, the
    /// compare-and-clear of an `UNREGISTERED` token, the provider status). Returns the status
    /// recorded per delivery, in order (`None`: that claim was lost, nothing of it written). If
    /// the transaction fails nothing of the batch is written: the claims expire and the
    /// deliveries are attempted again (at-least-once).
    pub async fn finish_deliveries(
        &self,
        done: &[(&ClaimedDelivery, &AttemptOutcome)],
    ) -> CoreResult<Vec<Option<DeliveryStatus>>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_millis();
        let planned: Vec<PlannedFinish> = done
            .iter()
            .map(|(claimed, outcome)| plan_finish(claimed, outcome, now))
            .collect();
        let results: Vec<AttemptResult> = planned.iter().map(|p| p.result.clone()).collect();
        crate::in_write_tx!(self, |tx| async {
            let applied = tx.finish_attempts(&results).await?;
            if applied.len() != planned.len() {
                return Err(CoreError::from(StoreError::Other(format!(
                    "{} attempt results recorded as {} answers",
                    planned.len(),
                    applied.len()
                ))));
            }
            // The provider status of each (account, application, provider) as the last recorded
            // attempt of the batch left it: applying them one by one would end the same.
            let mut provider_statuses: Vec<((Uuid, Uuid, Provider), Option<String>)> = Vec::new();
            let mut statuses = Vec::with_capacity(planned.len());
            for (plan, applied) in planned.iter().zip(applied) {
                if !applied {
                    statuses.push(None);
                    continue;
                }
                if let (Some(token), Some(id)) = (&plan.clear_token, &plan.push_reg_id) {
                    tx.clear_token_if_held(plan.result.account_id, id, token, TokenClearedReason::Unregistered, now)
                        .await?;
                }
                if let Some(error) = &plan.provider_status {
                    let key = (plan.result.account_id, plan.application_id, plan.result.provider);
                    provider_statuses.retain(|(k, _)| *k != key);
                    provider_statuses.push((key, error.clone()));
                }
                statuses.push(Some(plan.result.status));
            }
            for ((account_id, application_id, provider), error) in &provider_statuses {
                set_provider_status(tx, *account_id, *application_id, *provider, error.as_deref()).await?;
            }
            Ok(statuses)
        })
    }
}

/// What recording one attempt writes: the record's new state, the token to compare-and-clear,
/// the provider status to set (`Some(None)`: back to `OK`).
struct PlannedFinish {
    result: AttemptResult,
    application_id: Uuid,
    push_reg_id: Option<String>,
    clear_token: Option<String>,
    provider_status: Option<Option<String>>,
}

fn plan_finish(claimed: &ClaimedDelivery, outcome: &AttemptOutcome, now: Millis) -> PlannedFinish {
    let d = &claimed.delivery;
    let expires_at = claimed.message.as_ref().map_or(now, |m| m.message.expires_at);
    let mut result = AttemptResult {
        account_id: d.account_id,
        delivery_id: d.delivery_id,
        claim_id: claimed.claim_id(),
        status: DeliveryStatus::Failed,
        provider: claimed
            .installation
            .as_ref()
            .and_then(|i| i.provider())
            .unwrap_or(d.provider),
        attempts: d.attempts,
        provider_http_status: d.provider_http_status,
        provider_reason: d.provider_reason.clone(),
        last_attempt_at: d.last_attempt_at,
        next_attempt_at: d.next_attempt_at,
        now,
    };
    // Side effects beyond the record: the token to compare-and-clear, the provider status.
    let mut clear_token = None;
    let mut provider_status: Option<Option<String>> = None;
    match outcome {
        AttemptOutcome::Expired => result.status = DeliveryStatus::Expired,
        AttemptOutcome::NotSent { reason } => {
            result.status = DeliveryStatus::Failed;
            result.provider_http_status = None;
            result.provider_reason = Some(reason.clone());
        }
        AttemptOutcome::Sent { report, token } => {
            result.attempts += 1;
            result.last_attempt_at = Some(now);
            result.provider_http_status = report.response.http_status.map(i64::from);
            result.provider_reason = Some(report.response.reason.clone());
            result.status = match &report.outcome {
                Outcome::Accepted => {
                    if claimed
                        .application
                        .as_ref()
                        .is_some_and(|a| provider_in_error(a, result.provider))
                    {
                        provider_status = Some(None);
                    }
                    DeliveryStatus::Accepted
                }
                Outcome::Unregistered => {
                    clear_token = Some(token.clone());
                    DeliveryStatus::Unregistered
                }
                Outcome::Rejected { .. } => DeliveryStatus::Rejected,
                Outcome::Failed { last_error } => {
                    provider_status = Some(Some(last_error.clone()));
                    DeliveryStatus::Failed
                }
                Outcome::Retry { retry_after } => retryable(&mut result, *retry_after, now, expires_at),
                // The clients refresh and retry themselves; a report never carries this.
                Outcome::RefreshAndRetry => retryable(&mut result, None, now, expires_at),
            };
        }
    }
    PlannedFinish {
        result,
        application_id: d.application_id,
        push_reg_id: d.push_reg_id.clone(),
        clear_token,
        provider_status,
    }
}

/// §6.5: a retryable failure stays `QUEUED` until its next attempt, or ends `EXPIRED` / `FAILED`.
fn retryable(
    result: &mut AttemptResult,
    retry_after: Option<Duration>,
    now: Millis,
    expires_at: Millis,
) -> DeliveryStatus {
    let attempts = u32::try_from(result.attempts).unwrap_or(u32::MAX);
    match after_retryable(attempts, retry_after, now, expires_at, &mut rand::rng()) {
        AfterRetryable::RetryAt(at) => {
            result.next_attempt_at = at;
            DeliveryStatus::Queued
        }
        AfterRetryable::Expired => DeliveryStatus::Expired,
        AfterRetryable::Exhausted => DeliveryStatus::Failed,
    }
}

/// Sets a configured provider's `status` to `ERROR` with `lastError` (`Some`) or back to `OK`
/// (`None`); a provider without settings has no status to change.
async fn set_provider_status(
    tx: &mut dyn Tx,
    account_id: Uuid,
    application_id: Uuid,
    provider: Provider,
    error: Option<&str>,
) -> CoreResult<()> {
    let Some(mut app) = tx.application(account_id, application_id).await? else {
        return Ok(());
    };
    let Some(settings) = app
        .providers
        .get_mut(provider_key(provider))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    let (status, last_error) = match error {
        Some(e) => ("ERROR", Some(e)),
        None => ("OK", None),
    };
    let unchanged = settings.get("status").and_then(Value::as_str) == Some(status)
        && settings.get("lastError").and_then(Value::as_str) == last_error;
    if unchanged {
        return Ok(());
    }
    settings.insert("status".into(), json!(status));
    match last_error {
        Some(e) => settings.insert("lastError".into(), json!(e)),
        None => settings.remove("lastError"),
    };
    // `updatedAt` stays: delivery reports a status, nobody changed the application.
    tx.update_application(&app).await?;
    Ok(())
}

// --- device reports (§6.6) ----------------------------------------------------------------------------

/// Which stub route a report came in on (mobile-api.md §5.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// `POST /mobile/{3,5}/messages`: `mIDs` and `drIDs` were delivered.
    Sync,
    /// `POST /mobile/{1,2}/messages/seen`: `messages[].messageId` were seen.
    Seen,
    /// `POST /mobile/1/messages/deliveryreport`: `dlrIds` were delivered.
    DeliveryReport,
}

/// The reported message ids of a stub body, parsed leniently (anything unreadable is no id),
/// the first [`MAX_REPORTED_IDS`] only; ids that are no UUID cannot be a delivery and are
/// dropped.
pub fn reported_ids(kind: ReportKind, body: &[u8]) -> Vec<Uuid> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let strings = |name: &str| -> Vec<Value> { value.get(name).and_then(Value::as_array).cloned().unwrap_or_default() };
    let ids: Vec<Value> = match kind {
        ReportKind::Sync => strings("mIDs").into_iter().chain(strings("drIDs")).collect(),
        ReportKind::DeliveryReport => strings("dlrIds"),
        ReportKind::Seen => strings("messages")
            .into_iter()
            .filter_map(|m| m.get("messageId").cloned())
            .collect(),
    };
    let mut out: Vec<Uuid> = ids
        .iter()
        .take(MAX_REPORTED_IDS)
        .filter_map(Value::as_str)
        .filter_map(|s| Uuid::parse_str(s).ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Core {
    /// §6.6: records device reports on the deliveries made to the caller (the installation
    /// named by `pushregistrationid`, of `app`); unknown callers and ids are ignored. Status
    /// never changes. How many records changed.
    pub async fn record_device_reports(
        &self,
        app: &Application,
        caller: Option<&str>,
        kind: ReportKind,
        body: &[u8],
    ) -> CoreResult<u64> {
        let Some(caller) = caller.map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()) else {
            return Ok(0);
        };
        let ids = reported_ids(kind, body);
        if ids.is_empty() {
            return Ok(0);
        }
        let now = now_millis();
        crate::in_write_tx!(self, |tx| async {
            match tx.installation(&caller).await? {
                Some(inst) if inst.application_id == app.id => {}
                _ => return Ok(0),
            }
            Ok::<_, CoreError>(
                tx.record_device_reports(app.account_id, &caller, &ids, now, kind == ReportKind::Seen)
                    .await?,
            )
        })
    }
}

// --- reading results (§6.7) -----------------------------------------------------------------------------

/// A message with its counts, for `GET /api/v1/messages/...`.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub message: Message,
    pub application_code: String,
    pub counts: DeliveryCounts,
}

impl MessageView {
    /// §6.7: resolved and nothing `QUEUED`.
    pub fn done(&self) -> bool {
        self.message.audience_state == AudienceState::Resolved && self.counts.count(DeliveryStatus::Queued) == 0
    }
}

async fn view(tx: &mut dyn Tx, message: Message) -> CoreResult<MessageView> {
    let counts = tx.delivery_counts(message.account_id, &message.message_id).await?;
    let application_code = tx
        .application(message.account_id, message.application_id)
        .await?
        .map(|a| a.application_code)
        .unwrap_or_default();
    Ok(MessageView {
        message,
        application_code,
        counts,
    })
}

impl Core {
    /// The queued work of the whole store now (`GET /metrics`, management-api.md §9), read in
    /// one snapshot.
    pub async fn queue_depth(&self) -> CoreResult<roster_store::push::QueueDepth> {
        let now = now_millis();
        crate::in_read_tx!(self, |tx| async { Ok::<_, CoreError>(tx.queue_depth(now).await?) })
    }
}

impl Core {
    /// `GET /api/v1/messages/{messageId}`: `404` if the account has no such message.
    pub async fn message_view(&self, account_id: Uuid, message_id: &str) -> CoreResult<MessageView> {
        crate::in_read_tx!(self, |tx| async {
            match tx.message(account_id, message_id).await? {
                Some(m) => view(tx, m).await,
                None => Err(CoreError::api(ErrorCode::NotFound, format!("No message {message_id}"))),
            }
        })
    }

    /// `GET /api/v1/messages?bulkId=`: the bulk's messages in request order after
    /// `after_position`, at most `limit`; `404` if the account has no such bulk.
    pub async fn bulk_messages(
        &self,
        account_id: Uuid,
        bulk_id: &str,
        after_position: Option<i64>,
        limit: u32,
    ) -> CoreResult<Vec<MessageView>> {
        crate::in_read_tx!(self, |tx| async {
            if !tx.bulk_exists(account_id, bulk_id).await? {
                return Err(CoreError::api(ErrorCode::NotFound, format!("No bulk {bulk_id}")));
            }
            let messages = tx.messages_of_bulk(account_id, bulk_id, after_position, limit).await?;
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                out.push(view(tx, m).await?);
            }
            Ok(out)
        })
    }

    /// `GET /api/v1/messages` without `bulkId`: the account's messages newest first (by
    /// `createdAt`, then `messageId`, both descending), strictly before `before`, at most `limit`.
    pub async fn recent_messages(
        &self,
        account_id: Uuid,
        before: Option<(Millis, String)>,
        limit: u32,
    ) -> CoreResult<Vec<MessageView>> {
        crate::in_read_tx!(self, |tx| async {
            let messages = tx.recent_messages(account_id, before, limit).await?;
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                out.push(view(tx, m).await?);
            }
            Ok(out)
        })
    }

    /// `GET /api/v1/messages/{messageId}/deliveries`: records by `deliveryId` after `after`,
    /// optionally of one status; `404` if the account has no such message. Also returns the
    /// message's bulk id.
    pub async fn message_deliveries(
        &self,
        account_id: Uuid,
        message_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        limit: u32,
    ) -> CoreResult<(Message, Vec<Delivery>)> {
        crate::in_read_tx!(self, |tx| async {
            let Some(message) = tx.message(account_id, message_id).await? else {
                return Err(CoreError::api(ErrorCode::NotFound, format!("No message {message_id}")));
            };
            let records = tx
                .deliveries_of_message(account_id, message_id, status, after, limit)
                .await?;
            Ok((message, records))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(body: Value) -> FieldProblems {
        let mut p = FieldProblems::new();
        parse_request(&body, &mut p);
        p
    }

    fn message(dest: Value, extra: Value) -> Value {
        let mut m = json!({"sender": "app", "destinations": [dest], "content": {"text": "hi"}});
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        json!({"messages": [m]})
    }

    #[test]
    fn a_valid_request_has_no_problems() {
        let body = json!({"messages": [{"sender": "x", "destinations": [
            {"type": "EXTERNAL_USER_ID", "externalUserId": "c-1", "targetOnlyPrimaryDevices": true},
            {"type": "MULTIPLE", "$or": [{"tags": "vip"}], "messageId": "m:1"},
            {"type": "EMAIL", "email": "A@Example.com"},
            {"type": "PHONE_NUMBER", "phoneNumber": "+385 91 123 4567"},
            {"type": "REGISTRATION", "pushRegistrationId": "0B9E2F8A-6C1D-4A3E-9F7B-5D2C1E0A8B64"}],
            "content": {"type": "IMAGE", "title": "Sale", "text": "20% off", "url": "https://cdn.example.com/a.png"},
            "options": {"customPayload": {"a": 1}, "validityPeriod": {"amount": 6, "timeUnit": "HOURS"},
                        "sound": "default", "badge": 3, "silent": false}}],
            "options": {"schedule": {"bulkId": "spring-sale-1"}}});
        assert!(problems_of(body.clone()).is_empty(), "{:?}", problems_of(body));
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let body = json!({"messages": [{"destinations": [
            {"type": "PHONE_NUMBER", "phoneNumber": "12"},
            {"type": "MULTIPLE", "filter": {}, "$or": [{}], "extra": 1},
            {"type": "FAX"},
            {"type": "REGISTRATION", "pushRegistrationId": "nope"}],
            "content": {"type": "VIDEO", "text": "", "url": "http://x"},
            "options": {"ttl": 10, "badge": 100000, "deliveryTimeWindow": {}},
            "webhooks": {}}],
            "options": {"schedule": {"sendAt": "x", "bulkId": "bad id!"}}});
        let p = problems_of(body);
        for path in [
            "messages[0].sender",
            "messages[0].destinations[0].phoneNumber",
            "messages[0].destinations[1].filter",
            "messages[0].destinations[1].extra",
            "messages[0].destinations[2].type",
            "messages[0].destinations[3].pushRegistrationId",
            "messages[0].content.type",
            "messages[0].content.text",
            "messages[0].content.url",
            "messages[0].options.ttl",
            "messages[0].options.badge",
            "messages[0].options.deliveryTimeWindow",
            "messages[0].webhooks",
            "options.schedule.sendAt",
            "options.schedule.bulkId",
        ] {
            assert!(p.contains_key(path), "{path} missing from {p:?}");
        }
    }

    #[test]
    fn limits_of_5_1() {
        let dest = json!({"type": "EXTERNAL_USER_ID", "externalUserId": "c"});
        let p = problems_of(message(
            dest.clone(),
            json!({"options": {"validityPeriod": {"amount": 29, "timeUnit": "SECONDS"}}}),
        ));
        assert!(p.contains_key("messages[0].options.validityPeriod"));
        let p = problems_of(message(
            dest.clone(),
            json!({"options": {"validityPeriod": {"amount": 73, "timeUnit": "HOURS"}}}),
        ));
        assert!(p.contains_key("messages[0].options.validityPeriod"));
        let p = problems_of(message(
            dest.clone(),
            json!({"options": {"validityPeriod": {"amount": 3, "timeUnit": "DAYS"}}}),
        ));
        assert!(p.is_empty(), "72 hours is the longest validity: {p:?}");
        let p = problems_of(message(
            dest.clone(),
            json!({"options": {"ttl": 60, "validityPeriod": {"amount": 1, "timeUnit": "HOURS"}}}),
        ));
        assert!(p.contains_key("messages[0].options.ttl"));
        let p = problems_of(message(dest.clone(), json!({"content": {"text": "x".repeat(2001)}})));
        assert!(p.contains_key("messages[0].content.text"));
        let p = problems_of(message(
            dest.clone(),
            json!({"content": {"text": "x", "title": "t".repeat(257)}}),
        ));
        assert!(p.contains_key("messages[0].content.title"));
        let big: Map<String, Value> = (0..300).map(|i| (format!("k{i}"), json!(i))).collect();
        let p = problems_of(message(dest.clone(), json!({"options": {"customPayload": big}})));
        assert!(p.contains_key("messages[0].options.customPayload"));
        let many: Vec<Value> = (0..1001).map(|_| dest.clone()).collect();
        let p = problems_of(json!({"messages": [{"sender": "a", "destinations": many, "content": {"text": "x"}}]}));
        assert!(p.contains_key("messages[0].destinations"));
        let p = problems_of(json!({"messages": []}));
        assert!(p.contains_key("messages"));
        let twice = json!({"type": "EXTERNAL_USER_ID", "externalUserId": "c", "messageId": "same"});
        let p = problems_of(
            json!({"messages": [{"sender": "a", "destinations": [twice.clone(), twice], "content": {"text": "x"}}]}),
        );
        assert!(p.contains_key("messages[0].destinations[1].messageId"));
    }

    #[test]
    fn ids_and_urls() {
        assert!(is_valid_id("spring-sale_1.a:b"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id(&"a".repeat(101)));
        assert!(is_https_url("https://cdn.example.com/sale.png?x=1"));
        assert!(!is_https_url("http://cdn.example.com/a.png"));
        assert!(!is_https_url("https:///a.png"));
        assert!(!is_https_url("https://a b/"));
    }

    #[test]
    fn reported_ids_are_lenient() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let body = format!(r#"{{"mIDs":["{a}","not-a-uuid"],"drIDs":["{b}","{a}"]}}"#);
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(reported_ids(ReportKind::Sync, body.as_bytes()), want);
        let seen = format!(r#"{{"messages":[{{"messageId":"{a}","timestampDelta":3}},{{"x":1}}]}}"#);
        assert_eq!(reported_ids(ReportKind::Seen, seen.as_bytes()), vec![a]);
        assert!(reported_ids(ReportKind::DeliveryReport, b"garbage").is_empty());
        let many: Vec<String> = (0..1500).map(|_| Uuid::new_v4().to_string()).collect();
        let body = serde_json::to_vec(&json!({ "dlrIds": many })).unwrap();
        assert_eq!(reported_ids(ReportKind::DeliveryReport, &body).len(), MAX_REPORTED_IDS);
    }

    #[test]
    fn status_objects() {
        assert_eq!(
            submission_status_json(SubmissionStatus::PendingAccepted, false, true),
            json!({"groupId":1,"groupName":"PENDING","id":26,"name":"PENDING_ACCEPTED","description":"Message accepted, delivery queued"})
        );
        assert_eq!(
            submission_status_json(SubmissionStatus::RejectedDestinationNotFound, false, false),
            json!({"groupId":5,"groupName":"REJECTED","id":51,"name":"REJECTED_DESTINATION_NOT_FOUND"})
        );
    }
}
