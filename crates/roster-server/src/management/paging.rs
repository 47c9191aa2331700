//! Keyset paging (management-api.md §3.2): `limit` 1–500 (default 50) and an opaque cursor that
//! is bound to its query. The cursor is base64url of `{"q": <query fingerprint>, "k": <last key>}`;
//! the fingerprint is a short hash of the endpoint and the query parameters other than `limit`
//! and `cursor` (and of the filter body where there is one), so a cursor used with another query
//! is refused.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{MgmtError, MgmtResult};

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// A validated page request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: usize,
    /// The sort key of the last item of the previous page.
    pub after: Option<Value>,
    fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    q: String,
    k: Value,
}

fn fingerprint(endpoint: &str, query: &[(&str, &str)], body: Option<&Value>) -> String {
    let mut h = Sha256::new();
    h.update(endpoint.as_bytes());
    let mut q: Vec<_> = query.iter().filter(|(k, _)| *k != "limit" && *k != "cursor").collect();
    q.sort();
    for (k, v) in q {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    if let Some(b) = body {
        h.update([2]);
        h.update(b.to_string().as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

impl PageRequest {
    /// Reads `limit` and `cursor` (from the query string or a body; `path_of` names where they
    /// came from in errors, e.g. `query.` or `` for body members).
    pub fn parse(
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        limit: Option<&Value>,
        cursor: Option<&str>,
        path_prefix: &str,
    ) -> MgmtResult<PageRequest> {
        let fingerprint = fingerprint(endpoint, query, body);
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(v) => {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse::<u64>().ok()))
                    .filter(|n| (1..=MAX_LIMIT as u64).contains(n));
                match n {
                    Some(n) => n as usize,
                    None => {
                        return Err(MgmtError::field(
                            format!("{path_prefix}limit"),
                            format!("must be an integer from 1 to {MAX_LIMIT}"),
                        ));
                    }
                }
            }
        };
        let after = match cursor {
            None | Some("") => None,
            Some(c) => {
                let bad = || {
                    MgmtError::field(
                        format!("{path_prefix}cursor"),
                        "invalid cursor, or one of another query",
                    )
                };
                let bytes = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
                let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
                if cursor.q != fingerprint {
                    return Err(bad());
                }
                Some(cursor.k)
            }
        };
        Ok(PageRequest {
            limit,
            after,
            fingerprint,
        })
    }

    /// From query parameters only.
    pub fn from_query(endpoint: &str, query: &[(&str, &str)]) -> MgmtResult<PageRequest> {
        let get = |name: &str| query.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let limit = get("limit").map(|s| Value::String(s.to_string()));
        PageRequest::parse(endpoint, query, None, limit.as_ref(), get("cursor"), "query.")
    }

    /// The cursor that continues after `last_key`.
    pub fn cursor_after(&self, last_key: Value) -> String {
        let c = Cursor {
            q: self.fingerprint.clone(),
            k: last_key,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default())
    }

    /// Pages an in-memory list already sorted by `key` (ascending, unique): the items after the
    /// cursor, at most `limit`, and the next cursor. For small collections (applications, API
    /// keys, definitions, segments); large ones page in the store.
    pub fn page_sorted<T>(&self, items: Vec<T>, key: impl Fn(&T) -> Value) -> (Vec<T>, Option<String>) {
        let cmp = |a: &Value, b: &Value| compare_keys(a, b);
        let mut rest: Vec<T> = match &self.after {
            None => items,
            Some(after) => items
                .into_iter()
                .filter(|i| cmp(&key(i), after) == std::cmp::Ordering::Greater)
                .collect(),
        };
        let more = rest.len() > self.limit;
        rest.truncate(self.limit);
        let next = if more {
            rest.last().map(|last| self.cursor_after(key(last)))
        } else {
            None
        };
        (rest, next)
    }
}

/// Orders sort keys: arrays element by element, numbers numerically, strings by bytes.
pub fn compare_keys(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = compare_keys(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => Ordering::Equal,
    }
}

/// `{"items": [...], "nextCursor": ... }`.
pub fn page_json(items: Vec<Value>, next: Option<String>) -> Value {
    serde_json::json!({"items": items, "nextCursor": next})
}

/// The `200` answer of a list route: each resource serialised into the page of [`page_json`].
pub fn page_response<R: Serialize>(
    resources: impl IntoIterator<Item = R>,
    next: Option<String>,
) -> MgmtResult<axum::response::Response> {
    let items = resources
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(MgmtError::internal)?;
    Ok(super::ok(&page_json(items, next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pages_and_cursor_binding() {
        let p = PageRequest::from_query("/x", &[("limit", "2")]).unwrap();
        let (page, next) = p.page_sorted(vec![1, 2, 3, 4, 5], |i| json!(i));
        assert_eq!(page, [1, 2]);
        let next = next.unwrap();
        let p2 = PageRequest::from_query("/x", &[("limit", "3"), ("cursor", &next)]).unwrap();
        let (page, last) = p2.page_sorted(vec![1, 2, 3, 4, 5], |i| json!(i));
        assert_eq!(page, [3, 4, 5]);
        assert!(last.is_none());
        // Bound to its query.
        let e = PageRequest::from_query("/x", &[("scope", "PERSON"), ("cursor", &next)]).unwrap_err();
        assert!(e.validation.contains_key("query.cursor"));
        let e = PageRequest::from_query("/y", &[("cursor", &next)]).unwrap_err();
        assert!(e.validation.contains_key("query.cursor"));
        assert!(PageRequest::from_query("/x", &[("cursor", "garbage!")]).is_err());
        for bad in ["0", "501", "x", "-1"] {
            let e = PageRequest::from_query("/x", &[("limit", bad)]).unwrap_err();
            assert!(e.validation.contains_key("query.limit"), "{bad}");
        }
    }
}
