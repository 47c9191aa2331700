//! PATCH-shaped deltas over confirmed JSON (client-sdk.md §5.1, §6.2; people.md §6): applying a
//! delta, merging new changes into it, dropping entries equal to the confirmed value, and
//! acknowledging (or discarding) the entries of a sent snapshot.
//!
//! A delta is a JSON object shaped like a PATCH body: a value sets, `null` clears; its
//! `customAttributes` is either an object merged per key (`null` deletes a key) or `null`
//! (delete all). The "entries" of a delta are its top-level members, except that each key of a
//! `customAttributes` object is an entry of its own.

use serde_json::{Map, Value};

/// A JSON object.
pub(crate) type JsonMap = Map<String, Value>;

/// The member holding custom attributes.
pub(crate) const ATTRS: &str = "customAttributes";

/// Which PATCH semantics apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// people.md §6.2: `regEnabled: null` is `true`, `isPrimary: null` is `false`,
    /// `pushServiceType: null` is ignored.
    Installation,
    /// people.md §6.1: `phones`/`emails`/`tags` `null` is `[]`.
    User,
}

impl Kind {
    /// The PATCH semantics of the installation or the user.
    pub(crate) fn of(target: crate::ChangeTarget) -> Kind {
        match target {
            crate::ChangeTarget::Installation => Kind::Installation,
            crate::ChangeTarget::User => Kind::User,
        }
    }
}

/// Applies one delta entry (a top-level member) to `base`.
fn apply_entry(base: &mut JsonMap, key: &str, value: &Value, kind: Kind) {
    if key == ATTRS {
        match value {
            Value::Null => {
                base.insert(ATTRS.into(), Value::Object(Map::new()));
            }
            Value::Object(changes) => {
                let attrs = base.entry(ATTRS).or_insert_with(|| Value::Object(Map::new()));
                if !attrs.is_object() {
                    *attrs = Value::Object(Map::new());
                }
                let attrs = attrs.as_object_mut().expect("just made an object");
                for (name, v) in changes {
                    if v.is_null() {
                        attrs.remove(name);
                    } else {
                        attrs.insert(name.clone(), v.clone());
                    }
                }
            }
            _ => {}
        }
        return;
    }
    match (kind, key, value) {
        (Kind::Installation, "regEnabled", Value::Null) => {
            base.insert(key.into(), Value::Bool(true));
        }
        (Kind::Installation, "isPrimary", Value::Null) => {
            base.insert(key.into(), Value::Bool(false));
        }
        (Kind::Installation, "pushServiceType", Value::Null) => {}
        (Kind::User, "phones" | "emails" | "tags", Value::Null) => {
            base.insert(key.into(), Value::Array(Vec::new()));
        }
        (_, _, Value::Null) => {
            base.remove(key);
        }
        (_, _, v) => {
            base.insert(key.into(), v.clone());
        }
    }
}

/// `base` with `delta` applied (PATCH semantics).
pub(crate) fn apply(base: &mut JsonMap, delta: &JsonMap, kind: Kind) {
    for (k, v) in delta {
        apply_entry(base, k, v, kind);
    }
}

/// Merges a new PATCH-shaped change into the pending delta. `confirmed_attrs` are the confirmed
/// custom attributes: a pending "delete all" followed by new values becomes explicit deletions of
/// every confirmed key plus the new values (a PATCH body cannot say both).
pub(crate) fn merge(delta: &mut JsonMap, change: &JsonMap, confirmed_attrs: &JsonMap) {
    for (k, v) in change {
        if k != ATTRS {
            delta.insert(k.clone(), v.clone());
            continue;
        }
        match (delta.get_mut(ATTRS), v) {
            (_, Value::Null) => {
                delta.insert(ATTRS.into(), Value::Null);
            }
            (Some(Value::Object(pending)), Value::Object(m)) => {
                for (n, x) in m {
                    pending.insert(n.clone(), x.clone());
                }
            }
            (Some(Value::Null), Value::Object(m)) => {
                let mut o: JsonMap = confirmed_attrs.keys().map(|k| (k.clone(), Value::Null)).collect();
                for (n, x) in m {
                    o.insert(n.clone(), x.clone());
                }
                delta.insert(ATTRS.into(), Value::Object(o));
            }
            (_, Value::Object(m)) => {
                delta.insert(ATTRS.into(), Value::Object(m.clone()));
            }
            _ => {}
        }
    }
}

/// The custom attributes of a JSON object (empty when absent).
pub(crate) fn attrs_of(m: &JsonMap) -> JsonMap {
    m.get(ATTRS).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Drops every delta entry whose value equals the confirmed value (client-sdk.md §5.1: setting a
/// field and setting it back leaves nothing to send).
pub(crate) fn prune(delta: &mut JsonMap, confirmed: &JsonMap, kind: Kind) {
    let keys: Vec<String> = delta.keys().cloned().collect();
    for k in keys {
        if k == ATTRS {
            let current = attrs_of(confirmed);
            let keep = match delta.get_mut(ATTRS) {
                Some(Value::Null) => !current.is_empty(),
                Some(Value::Object(o)) => {
                    o.retain(|n, x| {
                        if x.is_null() {
                            current.contains_key(n)
                        } else {
                            current.get(n) != Some(x)
                        }
                    });
                    !o.is_empty()
                }
                _ => false,
            };
            if !keep {
                delta.remove(ATTRS);
            }
            continue;
        }
        let mut tmp = confirmed.clone();
        apply_entry(&mut tmp, &k, &delta[&k], kind);
        if tmp == *confirmed {
            delta.remove(&k);
        }
    }
}

/// Removes from `delta` every entry of the sent snapshot that is still unchanged (client-sdk.md
/// §6.2), returning the JSON paths removed. Entries changed after the snapshot stay pending.
pub(crate) fn ack(delta: &mut JsonMap, snapshot: &JsonMap) -> Vec<String> {
    let mut removed = Vec::new();
    for (k, sent) in snapshot {
        if k == ATTRS {
            match (delta.get_mut(ATTRS), sent) {
                (Some(Value::Object(pending)), Value::Object(sent_attrs)) => {
                    for (n, x) in sent_attrs {
                        if pending.get(n) == Some(x) {
                            pending.remove(n);
                            removed.push(format!("{ATTRS}.{n}"));
                        }
                    }
                    if pending.is_empty() {
                        delta.remove(ATTRS);
                    }
                }
                (Some(Value::Null), Value::Null) => {
                    delta.remove(ATTRS);
                    removed.push(ATTRS.to_string());
                }
                _ => {}
            }
        } else if delta.get(k) == Some(sent) {
            delta.remove(k);
            removed.push(k.clone());
        }
    }
    removed
}

/// The JSON paths of the entries of a delta.
pub(crate) fn paths(delta: &JsonMap) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in delta {
        match (k.as_str(), v) {
            (ATTRS, Value::Object(o)) => out.extend(o.keys().map(|n| format!("{ATTRS}.{n}"))),
            _ => out.push(k.clone()),
        }
    }
    out
}

/// Whether `delta` still holds any entry of `change` (so a save has something to wait for).
pub(crate) fn carries(delta: &JsonMap, change: &JsonMap) -> bool {
    change.iter().any(|(k, v)| {
        if k != ATTRS {
            return delta.contains_key(k);
        }
        match (delta.get(ATTRS), v) {
            (Some(Value::Null), _) => true,
            (Some(Value::Object(pending)), Value::Object(m)) => m.keys().any(|n| pending.contains_key(n)),
            (Some(Value::Object(pending)), Value::Null) => !pending.is_empty(),
            _ => false,
        }
    })
}

/// A JSON object from a `json!` value (tests and literals).
pub(crate) fn obj(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_has_patch_semantics() {
        let mut inst = obj(
            json!({"regEnabled": false, "isPrimary": true, "pushServiceType": "APNS",
            "applicationUserId": "u", "customAttributes": {"a": 1, "b": 2}}),
        );
        apply(
            &mut inst,
            &obj(json!({"regEnabled": null, "isPrimary": null, "pushServiceType": null,
                "applicationUserId": null, "customAttributes": {"a": null, "c": 3}})),
            Kind::Installation,
        );
        assert_eq!(
            Value::Object(inst),
            json!({"regEnabled": true, "isPrimary": false, "pushServiceType": "APNS",
                "customAttributes": {"b": 2, "c": 3}})
        );
        let mut user = obj(json!({"firstName": "A", "tags": ["x"], "customAttributes": {"a": 1}}));
        apply(
            &mut user,
            &obj(json!({"firstName": null, "tags": null, "customAttributes": null})),
            Kind::User,
        );
        assert_eq!(Value::Object(user), json!({"tags": [], "customAttributes": {}}));
    }

    #[test]
    fn merge_and_prune() {
        let confirmed = obj(json!({"firstName": "A", "tags": [], "phones": [], "customAttributes": {"a": 1, "b": 2}}));
        let mut delta = JsonMap::new();
        merge(&mut delta, &obj(json!({"firstName": "B"})), &attrs_of(&confirmed));
        merge(
            &mut delta,
            &obj(json!({"customAttributes": null})),
            &attrs_of(&confirmed),
        );
        merge(
            &mut delta,
            &obj(json!({"customAttributes": {"c": 3}})),
            &attrs_of(&confirmed),
        );
        assert_eq!(
            Value::Object(delta.clone()),
            json!({"firstName": "B", "customAttributes": {"a": null, "b": null, "c": 3}})
        );
        // Setting back to the confirmed values leaves nothing to send.
        merge(
            &mut delta,
            &obj(json!({"firstName": "A", "customAttributes": {"a": 1, "b": 2, "c": null}})),
            &attrs_of(&confirmed),
        );
        prune(&mut delta, &confirmed, Kind::User);
        assert!(delta.is_empty(), "{delta:?}");
        // Clearing an empty list is a no-op.
        let mut d = obj(json!({"tags": null, "phones": null, "lastName": null}));
        prune(&mut d, &confirmed, Kind::User);
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn ack_keeps_entries_changed_after_the_snapshot() {
        let snapshot = obj(json!({"firstName": "A", "lastName": "L", "customAttributes": {"a": 1, "b": 2}}));
        let mut delta = obj(json!({"firstName": "A2", "lastName": "L", "customAttributes": {"a": 1, "b": 3, "c": 4}}));
        let removed = ack(&mut delta, &snapshot);
        assert_eq!(removed, vec!["lastName", "customAttributes.a"]);
        assert_eq!(
            Value::Object(delta),
            json!({"firstName": "A2", "customAttributes": {"b": 3, "c": 4}})
        );
    }

    #[test]
    fn carries_and_paths() {
        let delta = obj(json!({"firstName": "A", "customAttributes": {"a": 1}}));
        assert!(carries(&delta, &obj(json!({"firstName": "A"}))));
        assert!(carries(&delta, &obj(json!({"customAttributes": {"a": 1}}))));
        assert!(!carries(&delta, &obj(json!({"customAttributes": {"b": 1}}))));
        assert!(!carries(&delta, &obj(json!({"lastName": null}))));
        assert_eq!(paths(&delta), vec!["firstName", "customAttributes.a"]);
        assert_eq!(paths(&obj(json!({"customAttributes": null}))), vec!["customAttributes"]);
    }
}
