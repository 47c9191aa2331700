//! Provider settings of an application (management-api.md §7.1): PATCH semantics (a provider
//! object replaces the given members and keeps the others, so a secret need not be re-sent;
//! `null` removes the provider), and the syntax check on save through the credential parsers of
//! roster-push — providers are never contacted on save.
//!
//! The stored document is the write shape of each provider plus `status` (`OK`, or `ERROR` with
//! `lastError`, set by delivery). Saving a provider resets its status to `OK`. Secrets are kept in
//! the store as given: the database is the trust boundary of a self-hosted server
//! (docs/decisions.md).

use roster_push::{ApnsCredentials, CredentialError, FcmCredentials, HmsCredentials};
use serde_json::{Map, Value};

use super::error::Problems;

const PROVIDERS: [&str; 3] = ["apns", "fcm", "hms"];

/// Members delivery writes, which a client cannot set.
const STATUS_MEMBERS: [&str; 2] = ["status", "lastError"];

/// Applies `patch` (the request's `providers`, at JSON path `path`) to the stored document,
/// recording every problem; `None` when there were problems.
pub fn apply_patch(stored: &Value, patch: &Value, path: &str, problems: &mut Problems) -> Option<Value> {
    let Some(patch) = patch.as_object() else {
        problems.add(path, "must be an object with apns, fcm or hms");
        return None;
    };
    let mut out: Map<String, Value> = stored.as_object().cloned().unwrap_or_default();
    let before = problems.len();
    for (provider, change) in patch {
        let member_path = format!("{path}.{provider}");
        if !PROVIDERS.contains(&provider.as_str()) {
            problems.add(member_path, "unknown provider (apns, fcm or hms)");
            continue;
        }
        match change {
            Value::Null => {
                out.remove(provider);
            }
            Value::Object(members) => {
                let mut merged: Map<String, Value> = out
                    .get(provider)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for m in STATUS_MEMBERS {
                    merged.remove(m);
                }
                for (name, value) in members {
                    if STATUS_MEMBERS.contains(&name.as_str()) {
                        problems.add(format!("{member_path}.{name}"), "is set by delivery, not writable");
                    } else if value.is_null() {
                        merged.remove(name);
                    } else {
                        merged.insert(name.clone(), value.clone());
                    }
                }
                let merged = Value::Object(merged);
                let checked = match provider.as_str() {
                    "apns" => ApnsCredentials::parse(&merged).map(drop),
                    "fcm" => FcmCredentials::parse(&merged).map(drop),
                    _ => HmsCredentials::parse(&merged).map(drop),
                };
                match checked {
                    Ok(()) => {
                        let mut saved = merged;
                        saved["status"] = Value::from("OK");
                        out.insert(provider.clone(), saved);
                    }
                    Err(CredentialError(errors)) => {
                        for e in errors {
                            let p = if e.field.is_empty() {
                                member_path.clone()
                            } else {
                                format!("{member_path}.{}", e.field)
                            };
                            problems.add(p, e.message);
                        }
                    }
                }
            }
            _ => problems.add(member_path, "must be an object, or null to remove the provider"),
        }
    }
    (problems.len() == before).then_some(Value::Object(out))
}
