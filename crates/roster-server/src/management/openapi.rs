//! The OpenAPI 3.1 document of the management API (management-api.md), served without
//! authentication at `GET /api/v1/openapi.json`.
//!
//! The document is built from [`OPERATIONS`], one row per (method, path) the server routes, plus
//! the schemas of the resources in [`schemas`]. It is written by hand rather than derived from
//! handler annotations: the handlers decode bodies as `serde_json::Value` and validate them field
//! by field (to report every problem, §2), so there are no request types to derive schemas from.
//! `tests/openapi.rs` checks it against the real routes both ways.

use std::sync::OnceLock;

use axum::{Router, body::Body, extract::State, routing::get};
use http::Response;
use serde_json::{Map, Value, json};

use crate::AppState;

/// The route of the document itself (nested under `/api/v1`).
pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve))
}

/// The document, with `servers` naming the configured base path.
async fn serve(State(state): State<AppState>) -> Response<Body> {
    let mut doc = document().clone();
    let base = if state.base_path.is_empty() {
        "/"
    } else {
        state.base_path.as_str()
    };
    doc["servers"] = json!([{"url": base}]);
    super::ok(&doc)
}

/// One operation of the API.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    /// The scope a key needs (management-api.md §10); `None`: no authentication.
    scope: Option<&'static str>,
    /// Query parameters besides `limit`/`cursor`: (name, description).
    query: &'static [(&'static str, &'static str)],
    /// Whether the operation is paged (`limit`, `cursor`).
    paged: bool,
    /// The request body schema (a component name).
    body: Option<&'static str>,
    /// The success status and its schema (a component name; `None`: no body).
    ok: (u16, Option<&'static str>),
    /// Error statuses specific to the operation (401/403/429/500/503 are added for every
    /// authenticated operation).
    errors: &'static [u16],
    /// Whether the operation honours `Idempotency-Key` (§3.3).
    idempotent: bool,
}

const fn op(method: &'static str, path: &'static str, id: &'static str, tag: &'static str) -> Op {
    Op {
        method,
        path,
        id,
        tag,
        summary: "",
        scope: None,
        query: &[],
        paged: false,
        body: None,
        ok: (200, None),
        errors: &[],
        idempotent: false,
    }
}

const ADMIN: Option<&str> = Some("admin");
const READ: Option<&str> = Some("people:read");
const WRITE: Option<&str> = Some("people:write");
const SEND: Option<&str> = Some("push:send");

/// Every operation the server routes outside the mobile API (management-api.md §10, plus this
/// document's own route).
const OPERATIONS: &[Op] = &[
    Op {
        summary: "Send push messages (Infobip-compatible subset)",
        scope: SEND,
        body: Some("SendRequest"),
        ok: (200, Some("SendResponse")),
        errors: &[400, 409, 413, 422],
        idempotent: true,
        ..op("post", "/push/3/messages", "sendPushMessages", "Push")
    },
    Op {
        summary: "List the messages of a bulk in request order, or without bulkId the account's messages newest first",
        scope: SEND,
        query: &[(
            "bulkId",
            "The bulk whose messages are listed; without it, every message of the account, newest first",
        )],
        paged: true,
        ok: (200, Some("MessagePage")),
        errors: &[400],
        ..op("get", "/api/v1/messages", "listMessages", "Messages")
    },
    Op {
        summary: "A message with its audience state and delivery counts",
        scope: SEND,
        ok: (200, Some("Message")),
        errors: &[404],
        ..op("get", "/api/v1/messages/{messageId}", "getMessage", "Messages")
    },
    Op {
        summary: "The delivery records of a message, ordered by deliveryId",
        scope: SEND,
        query: &[(
            "status",
            "Only deliveries in this status (QUEUED, ACCEPTED, REJECTED, UNREGISTERED, EXPIRED, FAILED)",
        )],
        paged: true,
        ok: (200, Some("DeliveryPage")),
        errors: &[400, 404],
        ..op(
            "get",
            "/api/v1/messages/{messageId}/deliveries",
            "listDeliveries",
            "Messages",
        )
    },
    Op {
        summary: "Create an application (its application code is generated)",
        scope: ADMIN,
        body: Some("ApplicationCreate"),
        ok: (201, Some("Application")),
        errors: &[400, 409, 413, 422],
        idempotent: true,
        ..op("post", "/api/v1/applications", "createApplication", "Applications")
    },
    Op {
        summary: "List applications, ordered by createdAt then id",
        scope: ADMIN,
        paged: true,
        ok: (200, Some("ApplicationPage")),
        errors: &[400],
        ..op("get", "/api/v1/applications", "listApplications", "Applications")
    },
    Op {
        summary: "An application",
        scope: ADMIN,
        ok: (200, Some("Application")),
        errors: &[404],
        ..op("get", "/api/v1/applications/{appRef}", "getApplication", "Applications")
    },
    Op {
        summary: "Change an application (name, enabled, JWT flags, provider credentials)",
        scope: ADMIN,
        body: Some("ApplicationPatch"),
        ok: (200, Some("Application")),
        errors: &[400, 404, 413],
        ..op(
            "patch",
            "/api/v1/applications/{appRef}",
            "updateApplication",
            "Applications",
        )
    },
    Op {
        summary: "Delete an application with its installations, JWT keys, messages and deliveries",
        scope: ADMIN,
        ok: (204, None),
        errors: &[404],
        ..op(
            "delete",
            "/api/v1/applications/{appRef}",
            "deleteApplication",
            "Applications",
        )
    },
    Op {
        summary: "Create a JWT signing key (the secret is shown only in this answer)",
        scope: ADMIN,
        body: Some("JwtKeyCreate"),
        ok: (201, Some("JwtKeyCreated")),
        errors: &[400, 404, 409, 413, 422],
        idempotent: true,
        ..op(
            "post",
            "/api/v1/applications/{appRef}/jwt-keys",
            "createJwtKey",
            "Applications",
        )
    },
    Op {
        summary: "List the JWT keys of an application",
        scope: ADMIN,
        paged: true,
        ok: (200, Some("JwtKeyPage")),
        errors: &[400, 404],
        ..op(
            "get",
            "/api/v1/applications/{appRef}/jwt-keys",
            "listJwtKeys",
            "Applications",
        )
    },
    Op {
        summary: "Delete a JWT key; tokens signed with it are rejected from then on",
        scope: ADMIN,
        ok: (204, None),
        errors: &[404],
        ..op(
            "delete",
            "/api/v1/applications/{appRef}/jwt-keys/{kid}",
            "deleteJwtKey",
            "Applications",
        )
    },
    Op {
        summary: "Create an API key (the key is shown only in this answer)",
        scope: ADMIN,
        body: Some("ApiKeyCreate"),
        ok: (201, Some("ApiKey")),
        errors: &[400, 409, 413, 422],
        idempotent: true,
        ..op("post", "/api/v1/apikeys", "createApiKey", "API keys")
    },
    Op {
        summary: "List API keys, ordered by createdAt",
        scope: ADMIN,
        paged: true,
        ok: (200, Some("ApiKeyPage")),
        errors: &[400],
        ..op("get", "/api/v1/apikeys", "listApiKeys", "API keys")
    },
    Op {
        summary: "An API key (without the secret)",
        scope: ADMIN,
        ok: (200, Some("ApiKey")),
        errors: &[404],
        ..op("get", "/api/v1/apikeys/{id}", "getApiKey", "API keys")
    },
    Op {
        summary: "Delete an API key, effective immediately (not the last unexpired admin key)",
        scope: ADMIN,
        ok: (204, None),
        errors: &[404, 409],
        ..op("delete", "/api/v1/apikeys/{id}", "deleteApiKey", "API keys")
    },
    Op {
        summary: "List attribute definitions, ordered by name",
        scope: READ,
        query: &[("scope", "PERSON or INSTALLATION; both when absent")],
        paged: true,
        ok: (200, Some("AttributeDefinitionPage")),
        errors: &[400],
        ..op("get", "/api/v1/attributes", "listAttributeDefinitions", "Attributes")
    },
    Op {
        summary: "Define a custom attribute",
        scope: ADMIN,
        body: Some("AttributeDefinitionCreate"),
        ok: (201, Some("AttributeDefinition")),
        errors: &[400, 409, 413, 422],
        idempotent: true,
        ..op("post", "/api/v1/attributes", "createAttributeDefinition", "Attributes")
    },
    Op {
        summary: "An attribute definition (name percent-encoded)",
        scope: READ,
        ok: (200, Some("AttributeDefinition")),
        errors: &[404],
        ..op(
            "get",
            "/api/v1/attributes/{scope}/{name}",
            "getAttributeDefinition",
            "Attributes",
        )
    },
    Op {
        summary: "Delete an attribute definition and every stored value of it; segments using it become invalid",
        scope: ADMIN,
        ok: (204, None),
        errors: &[404],
        ..op(
            "delete",
            "/api/v1/attributes/{scope}/{name}",
            "deleteAttributeDefinition",
            "Attributes",
        )
    },
    Op {
        summary: "The person owning an identity key; exactly one of the parameters",
        scope: READ,
        query: &[
            ("externalUserId", "External user id"),
            ("phone", "Phone number (normalised as people.md §3.2)"),
            ("email", "Email address (compared case-insensitively)"),
            ("pushRegId", "An installation's pushRegId"),
        ],
        ok: (200, Some("Person")),
        errors: &[400, 404],
        ..op("get", "/api/v1/people/lookup", "lookupPerson", "People")
    },
    Op {
        summary: "Search people by filter, ordered by id",
        scope: READ,
        body: Some("SearchRequest"),
        ok: (200, Some("PersonPage")),
        errors: &[400, 413],
        ..op("post", "/api/v1/people/search", "searchPeople", "People")
    },
    Op {
        summary: "A person with its installations of every application (ETag: version)",
        scope: READ,
        ok: (200, Some("Person")),
        errors: &[404],
        ..op("get", "/api/v1/people/{personId}", "getPerson", "People")
    },
    Op {
        summary: "Change a person (user PATCH of people.md §6.1, plus type CUSTOMER); If-Match optional",
        scope: WRITE,
        body: Some("PersonPatch"),
        ok: (200, Some("Person")),
        errors: &[400, 404, 409, 412, 413],
        ..op("patch", "/api/v1/people/{personId}", "updatePerson", "People")
    },
    Op {
        summary: "GDPR erase: the person, its installations, anonymised deliveries, redacted merge log",
        scope: WRITE,
        ok: (200, Some("EraseReport")),
        errors: &[404],
        ..op("delete", "/api/v1/people/{personId}", "erasePerson", "People")
    },
    Op {
        summary: "GDPR export: everything held about the person",
        scope: READ,
        ok: (200, Some("PersonExport")),
        errors: &[404],
        ..op("get", "/api/v1/people/{personId}/export", "exportPerson", "People")
    },
    Op {
        summary: "An installation",
        scope: READ,
        ok: (200, Some("Installation")),
        errors: &[404],
        ..op(
            "get",
            "/api/v1/installations/{pushRegId}",
            "getInstallation",
            "Installations",
        )
    },
    Op {
        summary: "Change an installation (regEnabled, isPrimary, applicationUserId, customAttributes)",
        scope: WRITE,
        body: Some("InstallationPatch"),
        ok: (200, Some("Installation")),
        errors: &[400, 404, 409, 413],
        ..op(
            "patch",
            "/api/v1/installations/{pushRegId}",
            "updateInstallation",
            "Installations",
        )
    },
    Op {
        summary: "Delete an installation",
        scope: WRITE,
        ok: (204, None),
        errors: &[404],
        ..op(
            "delete",
            "/api/v1/installations/{pushRegId}",
            "deleteInstallation",
            "Installations",
        )
    },
    Op {
        summary: "Move an installation to a new anonymous person (people.md §7.1)",
        scope: WRITE,
        ok: (200, Some("Installation")),
        errors: &[404, 409, 422],
        idempotent: true,
        ..op(
            "post",
            "/api/v1/installations/{pushRegId}/depersonalize",
            "depersonalizeInstallation",
            "Installations",
        )
    },
    Op {
        summary: "Create a segment",
        scope: WRITE,
        body: Some("SegmentCreate"),
        ok: (201, Some("Segment")),
        errors: &[400, 409, 413, 422],
        idempotent: true,
        ..op("post", "/api/v1/segments", "createSegment", "Segments")
    },
    Op {
        summary: "List segments, ordered by name",
        scope: READ,
        paged: true,
        ok: (200, Some("SegmentPage")),
        errors: &[400],
        ..op("get", "/api/v1/segments", "listSegments", "Segments")
    },
    Op {
        summary: "Exact audience counts and a sample for a segment and/or filter",
        scope: READ,
        body: Some("PreviewRequest"),
        ok: (200, Some("Preview")),
        errors: &[400, 413],
        ..op("post", "/api/v1/segments/preview", "previewSegment", "Segments")
    },
    Op {
        summary: "A segment",
        scope: READ,
        ok: (200, Some("Segment")),
        errors: &[404],
        ..op("get", "/api/v1/segments/{id}", "getSegment", "Segments")
    },
    Op {
        summary: "Change a segment (name, description, filter)",
        scope: WRITE,
        body: Some("SegmentPatch"),
        ok: (200, Some("Segment")),
        errors: &[400, 404, 409, 413],
        ..op("patch", "/api/v1/segments/{id}", "updateSegment", "Segments")
    },
    Op {
        summary: "Delete a segment (messages already accepted are unaffected)",
        scope: WRITE,
        ok: (204, None),
        errors: &[404],
        ..op("delete", "/api/v1/segments/{id}", "deleteSegment", "Segments")
    },
    Op {
        summary: "The merge log, newest first",
        scope: READ,
        query: &[("personId", "Only entries naming this person as source or target")],
        paged: true,
        ok: (200, Some("MergeEntryPage")),
        errors: &[400],
        ..op("get", "/api/v1/merges", "listMerges", "Merges")
    },
    Op {
        summary: "A merge-log entry, with its before snapshots while retained",
        scope: READ,
        ok: (200, Some("MergeEntry")),
        errors: &[404],
        ..op("get", "/api/v1/merges/{id}", "getMerge", "Merges")
    },
    Op {
        summary: "Reverse a merge (people.md §9.3)",
        scope: WRITE,
        ok: (200, Some("MergeEntry")),
        errors: &[404, 409, 422],
        idempotent: true,
        ..op("post", "/api/v1/merges/{id}/reverse", "reverseMerge", "Merges")
    },
    Op {
        summary: "This document",
        ok: (200, None),
        ..op("get", "/api/v1/openapi.json", "getOpenApiDocument", "Meta")
    },
    Op {
        summary: "Health: 200 when the store answers, else 503",
        ok: (200, Some("Health")),
        errors: &[503],
        ..op("get", "/healthz", "getHealth", "Meta")
    },
    Op {
        summary: "Prometheus metrics (OpenMetrics text)",
        ok: (200, None),
        ..op("get", "/metrics", "getMetrics", "Meta")
    },
];

/// What a path parameter names.
fn path_param(name: &str) -> Value {
    let (description, format) = match name {
        "appRef" => ("An application id or its application code", None),
        "kid" => ("A JWT key id (1–64 of [A-Za-z0-9._-])", None),
        "scope" => ("PERSON or INSTALLATION", None),
        "name" => ("An attribute name, percent-encoded", None),
        "personId" => ("A person id", Some("uuid")),
        "pushRegId" => ("An installation's pushRegId", None),
        "messageId" => ("A message id (generated UUID or the one given at sending)", None),
        _ => ("The resource id", Some("uuid")),
    };
    let mut schema = json!({"type": "string"});
    if name == "scope" {
        schema["enum"] = json!(["PERSON", "INSTALLATION"]);
    }
    if let Some(f) = format {
        schema["format"] = json!(f);
    }
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Invalid request (BAD_REQUEST, REQUEST_FORMAT_INVALID, EMAIL_INVALID, PHONE_INVALID)",
        401 => "No valid API key (UNAUTHORIZED)",
        403 => "The key lacks the required scope (FORBIDDEN)",
        404 => "No such resource in this account (NOT_FOUND)",
        409 => {
            "Conflict (ALREADY_EXISTS, CONFLICT, USER_MERGE_INTERRUPTED, MERGE_NOT_REVERSIBLE, \
                MERGE_REVERSAL_CONFLICT, LAST_ADMIN_KEY, IDEMPOTENCY_KEY_IN_PROGRESS)"
        }
        412 => "If-Match does not match the current version (PRECONDITION_FAILED)",
        413 => "Body over the limit (REQUEST_TOO_LARGE)",
        422 => "Same Idempotency-Key with a different request (IDEMPOTENCY_KEY_REUSED)",
        429 => "Rate limit (TOO_MANY_REQUESTS, Retry-After)",
        500 => "Unexpected fault (INTERNAL_ERROR)",
        503 => "Store unavailable, overload or shutting down (SERVICE_UNAVAILABLE)",
        _ => "Error",
    }
}

fn operation(o: &Op) -> Value {
    let mut params: Vec<Value> = o
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(path_param)
        .collect();
    for (name, description) in o.query {
        params.push(
            json!({"name": name, "in": "query", "required": false, "description": description,
            "schema": {"type": "string"}}),
        );
    }
    if o.paged {
        params.push(json!({"$ref": "#/components/parameters/limit"}));
        params.push(json!({"$ref": "#/components/parameters/cursor"}));
    }
    if o.idempotent {
        params.push(json!({"$ref": "#/components/parameters/idempotencyKey"}));
    }
    if o.id == "updatePerson" {
        params.push(json!({"name": "If-Match", "in": "header", "required": false,
            "description": "The expected person version, quoted (\"7\")", "schema": {"type": "string"}}));
    }

    let mut responses = Map::new();
    let (status, schema) = o.ok;
    let mut success = json!({"description": status_text(status)});
    match (schema, o.id) {
        (Some(name), _) => success["content"] = json!({"application/json": {"schema": reference(name)}}),
        (None, "getOpenApiDocument") => {
            success["content"] = json!({"application/json": {"schema": {"type": "object"}}})
        }
        (None, "getMetrics") => {
            success["content"] = json!({"application/openmetrics-text": {"schema": {"type": "string"}}})
        }
        (None, _) => {}
    }
    responses.insert(status.to_string(), success);
    let mut errors: Vec<u16> = o.errors.to_vec();
    if o.scope.is_some() {
        errors.extend([401, 403, 429, 500, 503]);
    }
    errors.sort_unstable();
    errors.dedup();
    for e in errors {
        responses.insert(e.to_string(), json!({"$ref": format!("#/components/responses/E{e}")}));
    }

    let mut out = json!({
        "operationId": o.id,
        "summary": o.summary,
        "tags": [o.tag],
        "parameters": params,
        "responses": responses,
    });
    match o.scope {
        Some(scope) => {
            out["x-scope"] = json!(scope);
            out["security"] = json!([{"apiKey": [scope]}]);
            out["description"] = json!(format!("Requires an API key with scope `{scope}` (or `admin`)."));
        }
        None => out["security"] = json!([]),
    }
    if let Some(body) = o.body {
        out["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": reference(body)}}});
    }
    out
}

/// The document (built once).
fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut paths = Map::new();
    for o in OPERATIONS {
        let item = paths.entry(o.path).or_insert_with(|| json!({}));
        item[o.method] = operation(o);
    }
    let mut responses = Map::new();
    for e in [400, 401, 403, 404, 409, 412, 413, 422, 429, 500, 503] {
        responses.insert(
            format!("E{e}"),
            json!({"description": status_text(e),
                "content": {"application/json": {"schema": reference("ErrorEnvelope")}}}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Roster management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Send pushes, read delivery results and manage applications, API keys, attribute \
                definitions, people, installations, segments and the merge log. Every error answers in the \
                envelope `ErrorEnvelope`. Every POST except people search and segment preview honours \
                `Idempotency-Key`. List endpoints are paged with `limit` (1–500, default 50) and an opaque \
                `cursor`; `nextCursor` is null on the last page.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "tags": [
            {"name": "Push"}, {"name": "Messages"}, {"name": "Applications"}, {"name": "API keys"},
            {"name": "Attributes"}, {"name": "People"}, {"name": "Installations"}, {"name": "Segments"},
            {"name": "Merges"}, {"name": "Meta"}
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`App <apiKey>` or `Bearer <apiKey>` (scheme case-insensitive). Scopes: \
                        `people:read`, `people:write`, `push:send`, `admin` (admin grants everything)."
                }
            },
            "parameters": {
                "limit": {"name": "limit", "in": "query", "required": false,
                    "description": "Page size (1–500, default 50)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                "cursor": {"name": "cursor", "in": "query", "required": false,
                    "description": "The nextCursor of the previous page; bound to the query",
                    "schema": {"type": "string"}},
                "idempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "1–255 printable ASCII characters; a repeat replays the stored answer \
                        (Idempotent-Replayed: true) for 24 hours",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
            },
            "responses": responses,
            "schemas": schemas(),
        }
    })
}

/// The schemas of the resources and request bodies (management-api.md §2, §5–§8).
fn schemas() -> Value {
    let ts = json!({"type": "string", "format": "date-time"});
    let uuid = json!({"type": "string", "format": "uuid"});
    let custom = json!({"type": "object", "additionalProperties": true});
    let entries: Vec<(&str, Value)> = vec![
        (
            "Timestamp",
            json!({"type": "string", "format": "date-time",
            "description": "RFC 3339 UTC with milliseconds and Z"}),
        ),
        (
            "ErrorEnvelope",
            json!({
                "type": "object", "required": ["requestError"],
                "properties": {"requestError": {"type": "object", "required": ["serviceException"], "properties": {
                    "serviceException": {"type": "object", "required": ["messageId", "text"], "properties": {
                        "messageId": {"type": "string", "description": "The error code, e.g. BAD_REQUEST"},
                        "text": {"type": "string"},
                        "validationErrors": {"type": "object",
                            "description": "JSON path into the body (or query.<name>) to its problems",
                            "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1}}
                    }}
                }}}
            }),
        ),
        (
            "Filter",
            json!({"type": "object", "additionalProperties": true,
            "description": "A filter of management-api.md §4: field conditions, $and, $or, $not"}),
        ),
        (
            "Health",
            json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}),
        ),
        (
            "ProviderStatus",
            json!({"type": "object", "required": ["configured"], "properties": {
            "configured": {"type": "boolean"},
            "status": {"type": "string", "enum": ["OK", "ERROR"]},
            "lastError": {"type": "string"}
        }, "additionalProperties": true}),
        ),
        (
            "Application",
            json!({
                "type": "object",
                "required": ["id", "name", "applicationCode", "enabled", "requireJwtForUserData",
                    "restrictUserDataFromSdk", "providers", "createdAt", "updatedAt"],
                "properties": {
                    "id": uuid, "name": {"type": "string"}, "applicationCode": {"type": "string"},
                    "enabled": {"type": "boolean"}, "requireJwtForUserData": {"type": "boolean"},
                    "restrictUserDataFromSdk": {"type": "boolean"},
                    "providers": {"type": "object", "properties": {
                        "apns": reference("ProviderStatus"), "fcm": reference("ProviderStatus"),
                        "hms": reference("ProviderStatus")}},
                    "createdAt": ts, "updatedAt": ts
                }
            }),
        ),
        (
            "ProvidersWrite",
            json!({"type": "object", "description": "Write-only secrets are never returned; \
            in PATCH a provider object replaces the given members and null removes the provider",
            "properties": {
                "apns": {"type": ["object", "null"], "properties": {
                    "teamId": {"type": "string"}, "keyId": {"type": "string"},
                    "privateKey": {"type": "string", "description": "PEM PKCS#8 P-256 key", "writeOnly": true},
                    "topic": {"type": "string"}, "environment": {"type": "string", "enum": ["production", "sandbox"]},
                    "baseUrl": {"type": "string"}}},
                "fcm": {"type": ["object", "null"], "properties": {
                    "serviceAccount": {"type": "object", "writeOnly": true},
                    "baseUrl": {"type": "string"}, "tokenUrl": {"type": "string"}}},
                "hms": {"type": ["object", "null"], "properties": {
                    "appId": {"type": "string"}, "clientId": {"type": "string"},
                    "clientSecret": {"type": "string", "writeOnly": true},
                    "baseUrl": {"type": "string"}, "tokenUrl": {"type": "string"}}}
            }}),
        ),
        (
            "ApplicationCreate",
            json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "requireJwtForUserData": {"type": "boolean"}, "restrictUserDataFromSdk": {"type": "boolean"},
            "providers": reference("ProvidersWrite")}}),
        ),
        (
            "ApplicationPatch",
            json!({"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100}, "enabled": {"type": "boolean"},
            "requireJwtForUserData": {"type": "boolean"}, "restrictUserDataFromSdk": {"type": "boolean"},
            "providers": reference("ProvidersWrite")}}),
        ),
        (
            "JwtKey",
            json!({"type": "object", "required": ["kid", "createdAt"],
            "properties": {"kid": {"type": "string"}, "createdAt": ts}}),
        ),
        (
            "JwtKeyCreate",
            json!({"type": "object", "properties": {
            "kid": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}}),
        ),
        (
            "JwtKeyCreated",
            json!({"type": "object", "required": ["kid", "secret", "createdAt"], "properties": {
            "kid": {"type": "string"},
            "secret": {"type": "string", "description": "Standard base64 (padded) of 32 random bytes; shown once"},
            "createdAt": ts}}),
        ),
        (
            "ApiKey",
            json!({"type": "object", "required": ["id", "name", "scopes", "keyPrefix", "createdAt"], "properties": {
            "id": uuid, "name": {"type": "string"},
            "scopes": {"type": "array", "items": reference("Scope")},
            "keyPrefix": {"type": "string"},
            "key": {"type": "string", "description": "The secret: only in the creating answer"},
            "createdAt": ts, "expiresAt": ts, "lastUsedAt": ts}}),
        ),
        (
            "Scope",
            json!({"type": "string", "enum": ["people:read", "people:write", "push:send", "admin"]}),
        ),
        (
            "ApiKeyCreate",
            json!({"type": "object", "required": ["name", "scopes"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "scopes": {"type": "array", "items": reference("Scope"), "minItems": 1},
            "expiresAt": ts}}),
        ),
        (
            "AttributeType",
            json!({"type": "string",
            "enum": ["STRING", "DECIMAL", "BOOLEAN", "DATE", "DATE_TIME", "LIST_OF_OBJECTS"]}),
        ),
        (
            "AttributeDefinition",
            json!({"type": "object", "required": ["scope", "name", "type", "origin", "createdAt"],
            "properties": {
                "scope": {"type": "string", "enum": ["PERSON", "INSTALLATION"]},
                "name": {"type": "string"}, "type": reference("AttributeType"),
                "objectSchema": {"type": "array", "items": {"type": "object", "required": ["name", "type"],
                    "properties": {"name": {"type": "string"}, "type": reference("AttributeType")}}},
                "origin": {"type": "string"}, "createdAt": ts}}),
        ),
        (
            "AttributeDefinitionCreate",
            json!({"type": "object", "required": ["scope", "name", "type"], "properties": {
            "scope": {"type": "string", "enum": ["PERSON", "INSTALLATION"]},
            "name": {"type": "string"}, "type": reference("AttributeType"),
            "objectSchema": {"type": "array", "minItems": 1, "maxItems": 50, "items": {"type": "object",
                "required": ["name", "type"],
                "properties": {"name": {"type": "string"}, "type": reference("AttributeType")}}}}}),
        ),
        (
            "Installation",
            json!({"type": "object",
            "required": ["pushRegId", "applicationId", "applicationCode", "personId", "pushServiceType",
                "hasPushServiceToken", "regEnabled", "isPrimary", "deliverable", "customAttributes", "createdAt",
                "updatedAt"],
            "properties": {
                "pushRegId": {"type": "string"}, "applicationId": uuid, "applicationCode": {"type": "string"},
                "personId": uuid,
                "pushServiceType": {"type": "string", "enum": ["Firebase", "GCM", "HMS", "APNS"]},
                "hasPushServiceToken": {"type": "boolean"}, "pushServiceTokenSuffix": {"type": "string"},
                "tokenClearedAt": ts, "tokenClearedReason": {"type": "string"},
                "regEnabled": {"type": "boolean"}, "isPrimary": {"type": "boolean"},
                "deliverable": {"type": "boolean"}, "notificationsEnabled": {"type": "boolean"},
                "applicationUserId": {"type": "string"},
                "customAttributes": custom,
                "sdkVersion": {"type": "string"}, "appVersion": {"type": "string"}, "os": {"type": "string"},
                "osVersion": {"type": "string"}, "deviceManufacturer": {"type": "string"},
                "deviceModel": {"type": "string"}, "deviceName": {"type": "string"},
                "deviceSecure": {"type": "boolean"}, "language": {"type": "string"},
                "deviceTimezoneOffset": {"type": "string"},
                "createdAt": ts, "updatedAt": ts, "lastSeenAt": ts}}),
        ),
        (
            "InstallationPatch",
            json!({"type": "object", "properties": {
            "regEnabled": {"type": "boolean"}, "isPrimary": {"type": "boolean"},
            "applicationUserId": {"type": ["string", "null"]}, "customAttributes": custom}}),
        ),
        (
            "Person",
            json!({"type": "object",
            "required": ["id", "type", "phones", "emails", "tags", "customAttributes", "version", "createdAt",
                "updatedAt", "installations"],
            "properties": {
                "id": uuid, "type": {"type": "string", "enum": ["LEAD", "CUSTOMER"]},
                "externalUserId": {"type": "string"}, "firstName": {"type": "string"},
                "middleName": {"type": "string"}, "lastName": {"type": "string"},
                "gender": {"type": "string", "enum": ["Male", "Female"]},
                "birthday": {"type": "string", "format": "date"},
                "phones": {"type": "array", "items": {"type": "object", "required": ["number"],
                    "properties": {"number": {"type": "string"}}}},
                "emails": {"type": "array", "items": {"type": "object", "required": ["address"],
                    "properties": {"address": {"type": "string"}}}},
                "tags": {"type": "array", "items": {"type": "string"}},
                "customAttributes": custom,
                "version": {"type": "integer"}, "createdAt": ts, "updatedAt": ts,
                "installations": {"type": "array", "items": reference("Installation")}}}),
        ),
        (
            "PersonPatch",
            json!({"type": "object", "additionalProperties": true,
            "description": "The user PATCH of people.md §6.1 (standard fields, phones, emails, tags, \
                customAttributes; null removes), plus \"type\": \"CUSTOMER\""}),
        ),
        (
            "EraseReport",
            json!({"type": "object",
            "required": ["personId", "erasedAt", "installationsDeleted", "deliveriesAnonymised", "mergeEntriesRedacted"],
            "properties": {"personId": uuid, "erasedAt": ts, "installationsDeleted": {"type": "integer"},
                "deliveriesAnonymised": {"type": "integer"}, "mergeEntriesRedacted": {"type": "integer"}}}),
        ),
        (
            "PersonExport",
            json!({"type": "object", "required": ["format", "exportedAt", "accountId", "person",
                "installations", "deliveries", "merges"],
            "properties": {
                "format": {"const": "roster.person-export.v1"}, "exportedAt": ts, "accountId": uuid,
                "person": {"type": "object", "additionalProperties": true},
                "installations": {"type": "array", "items": {"allOf": [reference("Installation"),
                    {"type": "object", "properties": {"pushServiceToken": {"type": "string"}}}]}},
                "deliveries": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                "merges": {"type": "array", "items": reference("MergeEntry")}}}),
        ),
        (
            "SearchRequest",
            json!({"type": "object", "required": ["filter"], "properties": {
            "filter": reference("Filter"), "applicationCode": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 500}, "cursor": {"type": "string"}}}),
        ),
        (
            "Segment",
            json!({"type": "object", "required": ["id", "name", "filter", "valid", "createdAt", "updatedAt"],
            "properties": {"id": uuid, "name": {"type": "string"}, "description": {"type": "string"},
                "filter": reference("Filter"), "valid": {"type": "boolean"}, "createdAt": ts, "updatedAt": ts}}),
        ),
        (
            "SegmentCreate",
            json!({"type": "object", "required": ["name", "filter"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "description": {"type": "string", "maxLength": 1000}, "filter": reference("Filter")}}),
        ),
        (
            "SegmentPatch",
            json!({"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "description": {"type": "string", "maxLength": 1000}, "filter": reference("Filter")}}),
        ),
        (
            "PreviewRequest",
            json!({"type": "object", "properties": {
            "segmentId": uuid, "filter": reference("Filter"), "applicationCode": {"type": "string"},
            "targetOnlyPrimaryDevices": {"type": "boolean"},
            "sampleSize": {"type": "integer", "minimum": 0, "maximum": 100, "default": 10}}}),
        ),
        (
            "Preview",
            json!({"type": "object", "required": ["people", "installations", "deliverableInstallations", "sample"],
            "properties": {"people": {"type": "integer"}, "installations": {"type": "integer"},
                "deliverableInstallations": {"type": "integer"},
                "sample": {"type": "array", "items": {"type": "object", "required": ["personId", "installations"],
                    "properties": {"personId": uuid, "externalUserId": {"type": "string"},
                        "firstName": {"type": "string"}, "type": {"type": "string"},
                        "installations": {"type": "array", "items": {"type": "string"}}}}}}}),
        ),
        (
            "MergeEntry",
            json!({"type": "object",
            "required": ["id", "createdAt", "actor", "pushRegId", "sourcePersonId", "targetPersonId",
                "sourceDeleted", "afterForcedDepersonalize", "droppedAttributes", "after", "status",
                "reversible", "redacted"],
            "properties": {
                "id": uuid, "createdAt": ts, "actor": {"type": "object"}, "pushRegId": {"type": "string"},
                "sourcePersonId": {"type": ["string", "null"], "format": "uuid"},
                "targetPersonId": {"type": ["string", "null"], "format": "uuid"},
                "sourceDeleted": {"type": "boolean"}, "afterForcedDepersonalize": {"type": "boolean"},
                "droppedAttributes": {"type": "array", "items": {"type": "string"}},
                "before": {"type": "object", "description": "Snapshots, while retained"},
                "after": {"type": "object", "required": ["targetVersion"], "properties": {
                    "targetVersion": {"type": "integer"}, "sourceVersion": {"type": "integer"}}},
                "status": {"type": "string"}, "reversible": {"type": "boolean"},
                "reversedAt": ts, "reversedBy": {"type": "object"}, "redacted": {"type": "boolean"}}}),
        ),
        (
            "SubmissionStatus",
            json!({"type": "object", "required": ["groupId", "groupName", "id", "name"], "properties": {
            "groupId": {"type": "integer"}, "groupName": {"type": "string"}, "id": {"type": "integer"},
            "name": {"type": "string"}, "description": {"type": "string"}}}),
        ),
        (
            "Destination",
            json!({"type": "object", "required": ["type"], "additionalProperties": true, "properties": {
            "type": {"type": "string",
                "enum": ["EXTERNAL_USER_ID", "EMAIL", "PHONE_NUMBER", "REGISTRATION", "MULTIPLE"]},
            "targetOnlyPrimaryDevices": {"type": "boolean"},
            "messageId": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$"},
            "externalUserId": {"type": "string"}, "email": {"type": "string"}, "phoneNumber": {"type": "string"},
            "pushRegistrationId": {"type": "string"}, "filter": reference("Filter"),
            "segmentId": uuid}}),
        ),
        (
            "Content",
            json!({"type": "object", "required": ["text"], "properties": {
            "type": {"type": "string", "enum": ["TEXT", "IMAGE"], "default": "TEXT"},
            "title": {"type": "string", "maxLength": 256},
            "text": {"type": "string", "minLength": 1, "maxLength": 2000},
            "url": {"type": "string", "maxLength": 2048}}}),
        ),
        (
            "SendRequest",
            json!({"type": "object", "required": ["messages"], "properties": {
            "messages": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object",
                "required": ["sender", "destinations", "content"], "properties": {
                    "sender": {"type": "string", "description": "Application code or id"},
                    "destinations": {"type": "array", "minItems": 1, "maxItems": 1000,
                        "items": reference("Destination")},
                    "content": reference("Content"),
                    "options": {"type": "object", "properties": {
                        "customPayload": {"type": "object"},
                        "validityPeriod": {"type": "object", "required": ["amount", "timeUnit"], "properties": {
                            "amount": {"type": "integer", "minimum": 1},
                            "timeUnit": {"type": "string", "enum": ["SECONDS", "MINUTES", "HOURS", "DAYS"]}}},
                        "ttl": {"type": "integer", "minimum": 30, "maximum": 259200},
                        "sound": {"type": "string", "maxLength": 64},
                        "badge": {"type": "integer", "minimum": 0, "maximum": 99999},
                        "silent": {"type": "boolean"}}}}}},
            "options": {"type": "object", "properties": {"schedule": {"type": "object", "properties": {
                "bulkId": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$"}}}}}}}),
        ),
        (
            "SendResponse",
            json!({"type": "object", "required": ["bulkId", "messages"], "properties": {
            "bulkId": {"type": "string"},
            "messages": {"type": "array", "items": {"type": "object", "required": ["messageId", "status", "destination"],
                "properties": {"messageId": {"type": "string"}, "status": reference("SubmissionStatus"),
                    "destination": reference("Destination")}}}}}),
        ),
        (
            "Message",
            json!({"type": "object",
            "required": ["messageId", "bulkId", "applicationCode", "createdAt", "expiresAt", "destination",
                "content", "submissionStatus", "audience", "deliveries", "reported", "done"],
            "properties": {
                "messageId": {"type": "string"}, "bulkId": {"type": "string"},
                "applicationCode": {"type": "string"}, "createdAt": ts, "expiresAt": ts,
                "destination": reference("Destination"), "content": reference("Content"),
                "submissionStatus": reference("SubmissionStatus"),
                "audience": {"type": "object", "required": ["state"], "properties": {
                    "state": {"type": "string", "enum": ["RESOLVING", "RESOLVED"]},
                    "installations": {"type": "integer"}}},
                "deliveries": {"type": "object", "additionalProperties": {"type": "integer"},
                    "description": "Count per delivery status"},
                "reported": {"type": "object", "properties": {"delivered": {"type": "integer"},
                    "seen": {"type": "integer"}}},
                "done": {"type": "boolean"}}}),
        ),
        (
            "DeliveryStatus",
            json!({"type": "string",
            "enum": ["QUEUED", "ACCEPTED", "REJECTED", "UNREGISTERED", "EXPIRED", "FAILED"]}),
        ),
        (
            "Delivery",
            json!({"type": "object", "required": ["deliveryId", "messageId", "bulkId", "pushRegId", "personId",
                "provider", "status", "attempts", "createdAt", "updatedAt"],
            "properties": {
                "deliveryId": uuid, "messageId": {"type": "string"}, "bulkId": {"type": "string"},
                "pushRegId": {"type": ["string", "null"]}, "personId": {"type": ["string", "null"], "format": "uuid"},
                "provider": {"type": "string", "enum": ["APNS", "FCM", "HMS"]},
                "status": reference("DeliveryStatus"), "attempts": {"type": "integer"},
                "providerResponse": {"type": "object", "properties": {"httpStatus": {"type": "integer"},
                    "reason": {"type": "string"}}},
                "createdAt": ts, "updatedAt": ts, "lastAttemptAt": ts, "nextAttemptAt": ts,
                "deliveredAt": ts, "seenAt": ts}}),
        ),
    ];
    let mut map: Map<String, Value> = entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for item in [
        "Application",
        "JwtKey",
        "ApiKey",
        "AttributeDefinition",
        "Person",
        "Segment",
        "MergeEntry",
        "Message",
        "Delivery",
    ] {
        map.insert(
            format!("{item}Page"),
            json!({"type": "object", "required": ["items", "nextCursor"], "properties": {
                "items": {"type": "array", "items": reference(item)},
                "nextCursor": {"type": ["string", "null"], "description": "null on the last page"}}}),
        );
    }
    Value::Object(map)
}
