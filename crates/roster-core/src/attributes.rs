//! Custom attribute typing against the account's definitions, with auto-definition
//! (people.md §8, mobile-api.md §4.4).

use std::collections::HashMap;

use roster_model::{
    ApiError, AttributeDefinition, AttributeScope, CustomAttributes, DefinitionOrigin, Millis,
    patch::{AttributePatch, Patch},
    validate::{MAX_CUSTOM_ATTRIBUTES, check_attribute_name},
    values::{auto_type, type_value},
};
use roster_store::Tx;
use serde_json::Value;
use uuid::Uuid;

use crate::CoreResult;

/// Types and applies a `customAttributes` PATCH member to `current` (people.md §6.1): a value
/// sets the key (typed, auto-defining undefined names), `None` deletes it, `Patch::Null`
/// deletes all. Keys are validated in the order received; the first failure is reported.
/// The count limit is checked on the result.
#[allow(clippy::too_many_arguments)]
pub async fn apply_attribute_patch(
    tx: &mut dyn Tx,
    account_id: Uuid,
    scope: AttributeScope,
    max_definitions: u64,
    current: &mut CustomAttributes,
    patch: &Patch<AttributePatch>,
    path: &str,
    now: Millis,
) -> CoreResult<()> {
    let typed = type_attribute_patch(tx, account_id, scope, max_definitions, patch, path, now).await?;
    merge_attribute_patch(current, &typed, path)?;
    Ok(())
}

/// Applies an already typed `customAttributes` patch and checks the count limit on the result.
pub fn merge_attribute_patch(
    current: &mut CustomAttributes,
    typed: &Patch<AttributePatch>,
    path: &str,
) -> Result<(), ApiError> {
    match typed {
        Patch::Absent => {}
        Patch::Null => current.clear(),
        Patch::Value(entries) => {
            for (name, value) in entries {
                match value {
                    Some(v) => current.insert(name.clone(), v.clone()),
                    None => current.remove(name),
                };
            }
        }
    }
    check_attribute_count(current, path)
}

/// At most 250 custom attributes per person or installation (people.md §3.7).
pub fn check_attribute_count(current: &CustomAttributes, path: &str) -> Result<(), ApiError> {
    if current.len() > MAX_CUSTOM_ATTRIBUTES {
        return Err(ApiError::format(
            path,
            format!("at most {MAX_CUSTOM_ATTRIBUTES} custom attributes are allowed"),
        ));
    }
    Ok(())
}

/// Validates names and types every value of a `customAttributes` patch against the
/// definitions (auto-defining undefined names), in the order received; returns the patch with
/// canonical values.
pub async fn type_attribute_patch(
    tx: &mut dyn Tx,
    account_id: Uuid,
    scope: AttributeScope,
    max_definitions: u64,
    patch: &Patch<AttributePatch>,
    path: &str,
    now: Millis,
) -> CoreResult<Patch<AttributePatch>> {
    let entries = match patch {
        Patch::Absent => return Ok(Patch::Absent),
        Patch::Null => return Ok(Patch::Null),
        Patch::Value(entries) => entries,
    };
    let mut definitions: HashMap<String, AttributeDefinition> = HashMap::new();
    let mut typed = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let key_path = format!("{path}.{name}");
        check_attribute_name(name, &key_path)?;
        let Some(value) = value else {
            typed.push((name.clone(), None));
            continue;
        };
        let def = match definitions.get(name) {
            Some(d) => d.clone(),
            None => {
                let d = definition_for(tx, account_id, scope, max_definitions, name, value, &key_path, now).await?;
                definitions.insert(name.clone(), d.clone());
                d
            }
        };
        let v = type_value(def.attr_type, def.object_schema.as_deref(), value, &key_path)?;
        typed.push((name.clone(), Some(v)));
    }
    Ok(Patch::Value(typed))
}

/// The definition of `name`, auto-defining it from `value` when there is none (people.md §8.2).
#[allow(clippy::too_many_arguments)]
async fn definition_for(
    tx: &mut dyn Tx,
    account_id: Uuid,
    scope: AttributeScope,
    max_definitions: u64,
    name: &str,
    value: &Value,
    path: &str,
    now: Millis,
) -> CoreResult<AttributeDefinition> {
    if let Some(def) = tx.attribute_definition(account_id, scope, name).await? {
        return Ok(def);
    }
    let Some(attr_type) = auto_type(value) else {
        let what = if value.is_array() {
            "a list of objects must be defined (management API) before it is written"
        } else {
            "not a valid custom attribute value"
        };
        return Err(ApiError::format(path, what).into());
    };
    if tx.count_attribute_definitions(account_id, scope).await? >= max_definitions {
        return Err(ApiError::format(path, "attribute definition limit reached").into());
    }
    let def = AttributeDefinition {
        account_id,
        scope,
        name: name.to_string(),
        attr_type,
        object_schema: None,
        origin: DefinitionOrigin::Auto,
        created_at: now,
    };
    // A concurrent first write may have won: then its definition is the one to obey.
    let (stored, _inserted) = tx.define_attribute(&def).await?;
    Ok(stored)
}
