//! Operations of the management API (management-api.md §7) that the mobile API does not need:
//! API-key lookup, attribute definitions by API, application updates. Rules only; the HTTP shapes
//! live in roster-server.

use roster_model::{
    ApiError, ApiKey, Application, AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, ErrorCode,
    SchemaField, now_millis, validate::check_attribute_name,
};
use roster_store::{StoreError, Tx};
use uuid::Uuid;

use crate::{Core, CoreError, CoreResult};

/// management-api.md §1.1: `lastUsedAt` moves at most this often per key.
pub const LAST_USED_INTERVAL_MS: i64 = 60_000;

/// people.md §8.2: a LIST_OF_OBJECTS schema has 1–50 fields.
pub const MAX_SCHEMA_FIELDS: usize = 50;

/// Computes the new `providers` document from the one stored when the change commits (so that
/// concurrent changes of other providers are kept); `None` when the change no longer applies.
pub type ProvidersUpdate = std::sync::Arc<dyn Fn(&serde_json::Value) -> Option<serde_json::Value> + Send + Sync>;

/// The changes of `PATCH /api/v1/applications/{appRef}` (`None` keeps a setting).
#[derive(Clone, Default)]
pub struct ApplicationChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub require_jwt_for_user_data: Option<bool>,
    pub restrict_user_data_from_sdk: Option<bool>,
    /// The change of the provider settings, applied inside the transaction.
    pub providers: Option<ProvidersUpdate>,
}

fn not_found(what: impl Into<String>) -> CoreError {
    CoreError::api(ErrorCode::NotFound, what)
}

/// people.md §8.2: checks a definition's name and schema. Errors carry their JSON path.
pub fn check_definition(name: &str, attr_type: AttributeType, schema: Option<&[SchemaField]>) -> Result<(), ApiError> {
    check_attribute_name(name, "name")?;
    match (attr_type, schema) {
        (AttributeType::ListOfObjects, None) => Err(ApiError::format(
            "objectSchema",
            "a LIST_OF_OBJECTS definition needs an objectSchema",
        )),
        (AttributeType::ListOfObjects, Some(fields)) => {
            if fields.is_empty() || fields.len() > MAX_SCHEMA_FIELDS {
                return Err(ApiError::format(
                    "objectSchema",
                    format!("an objectSchema has 1 to {MAX_SCHEMA_FIELDS} fields"),
                ));
            }
            for (i, f) in fields.iter().enumerate() {
                check_attribute_name(&f.name, &format!("objectSchema[{i}].name"))?;
                if !f.field_type.is_scalar() {
                    return Err(ApiError::format(
                        &format!("objectSchema[{i}].type"),
                        "a schema field has a scalar type",
                    ));
                }
                if fields[..i].iter().any(|g| g.name == f.name) {
                    return Err(ApiError::format(
                        &format!("objectSchema[{i}].name"),
                        format!("duplicate field name {}", f.name),
                    ));
                }
            }
            Ok(())
        }
        (_, Some(_)) => Err(ApiError::format(
            "objectSchema",
            "only a LIST_OF_OBJECTS definition has an objectSchema",
        )),
        (_, None) => Ok(()),
    }
}

impl Core {
    /// The API key stored under `key_hash`, if any (expiry is the caller's check).
    pub async fn api_key_by_hash(&self, key_hash: &str) -> CoreResult<Option<ApiKey>> {
        in_read_tx!(self, |tx| async { Ok(tx.api_key_by_hash(key_hash).await?) })
    }

    /// management-api.md §1.1: records that a key was used, at most once a minute per key (a
    /// busy key costs one write a minute, not one per request).
    pub async fn touch_api_key(&self, key: &ApiKey) -> CoreResult<()> {
        let now = now_millis();
        if key.last_used_at.is_some_and(|at| now - at < LAST_USED_INTERVAL_MS) {
            return Ok(());
        }
        in_write_tx!(self, |tx| async {
            tx.touch_api_key(key.account_id, key.id, now, LAST_USED_INTERVAL_MS)
                .await?;
            Ok::<_, CoreError>(())
        })
    }

    /// An API key of an account by id.
    pub async fn api_key(&self, account_id: Uuid, id: Uuid) -> CoreResult<ApiKey> {
        let keys = self.list_api_keys(account_id).await?;
        keys.into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| not_found(format!("No API key {id}")))
    }

    /// The attribute definitions of an account, in one scope or both, ordered by name then scope.
    pub async fn definitions(
        &self,
        account_id: Uuid,
        scope: Option<AttributeScope>,
    ) -> CoreResult<Vec<AttributeDefinition>> {
        let mut defs = in_read_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.attribute_definitions(account_id, scope).await?)
        })?;
        defs.sort_by(|a, b| a.name.cmp(&b.name).then(a.scope.cmp(&b.scope)));
        Ok(defs)
    }

    /// One definition, or `404 NOT_FOUND`.
    pub async fn definition(
        &self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
    ) -> CoreResult<AttributeDefinition> {
        in_read_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.attribute_definition(account_id, scope, name).await?)
        })?
        .ok_or_else(|| not_found(format!("No {} attribute named {name}", scope.as_str())))
    }

    /// `POST /api/v1/attributes` (management-api.md §7.3): defines an attribute with origin
    /// `API`; `409 ALREADY_EXISTS` when the name is defined in that scope (also by
    /// auto-definition); beyond the per-scope limit `400 REQUEST_FORMAT_INVALID`.
    pub async fn create_definition(
        &self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
        attr_type: AttributeType,
        schema: Option<Vec<SchemaField>>,
        hold: Option<&crate::idempotency::IdempotencyHold>,
    ) -> CoreResult<AttributeDefinition> {
        check_definition(name, attr_type, schema.as_deref())?;
        let def = AttributeDefinition {
            account_id,
            scope,
            name: name.to_string(),
            attr_type,
            object_schema: schema,
            origin: DefinitionOrigin::Api,
            created_at: now_millis(),
        };
        let max = self.settings().max_attribute_definitions;
        in_write_tx!(self, |tx| async {
            if tx.attribute_definition(account_id, scope, name).await?.is_some() {
                return Err(CoreError::api(
                    ErrorCode::AlreadyExists,
                    format!("{} attribute {name} is already defined", scope.as_str()),
                ));
            }
            if tx.count_attribute_definitions(account_id, scope).await? >= max {
                return Err(ApiError::format("name", "attribute definition limit reached").into());
            }
            let (stored, inserted) = tx.define_attribute(&def).await?;
            if !inserted {
                return Err(CoreError::api(
                    ErrorCode::AlreadyExists,
                    format!("{} attribute {name} is already defined", scope.as_str()),
                ));
            }
            let shown = roster_model::resources::AttributeDefinitionResource::from(&stored);
            crate::idempotency::store_answer(tx, hold, 201, &shown, stored.created_at).await?;
            Ok(stored)
        })
    }

    /// `PATCH /api/v1/applications/{appRef}`: applies the changes in one transaction.
    pub async fn change_application(&self, app: &Application, changes: &ApplicationChanges) -> CoreResult<Application> {
        if let Some(name) = &changes.name {
            let n = name.chars().count();
            if n == 0 || n > 100 {
                return Err(ApiError::new(ErrorCode::BadRequest, "name must be 1 to 100 characters")
                    .at("name")
                    .into());
            }
        }
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let mut current = current_application(tx, app).await?;
            if let Some(v) = &changes.name {
                current.name = v.clone();
            }
            if let Some(v) = changes.enabled {
                current.enabled = v;
            }
            if let Some(v) = changes.require_jwt_for_user_data {
                current.require_jwt_for_user_data = v;
            }
            if let Some(v) = changes.restrict_user_data_from_sdk {
                current.restrict_user_data_from_sdk = v;
            }
            if let Some(update) = &changes.providers {
                current.providers = update(&current.providers).ok_or_else(|| {
                    CoreError::api(
                        ErrorCode::Conflict,
                        "the provider settings changed meanwhile and the change no longer applies; retry",
                    )
                })?;
            }
            current.updated_at = now;
            tx.update_application(&current).await?;
            Ok(current)
        })
    }
}

/// How many owners of an application's installations one round of [`Core::delete_application`]
/// locks and empties.
const OWNERS_PER_ROUND: u32 = 500;

/// The advisory lock under which the admin keys of an account are counted and deleted.
fn admin_keys_lock(account_id: Uuid) -> String {
    format!("admin-keys:{account_id}")
}

/// Whether a key grants `admin` and has not expired at `now` (the check of the authentication).
fn is_live_admin(key: &ApiKey, now: i64) -> bool {
    key.scopes.iter().any(|s| s == "admin") && key.expires_at.is_none_or(|at| at > now)
}

impl Core {
    /// `DELETE /api/v1/apikeys/{id}` (management-api.md §7.2): `404` for a key of another
    /// account, `409 LAST_ADMIN_KEY` for the last unexpired `admin` key of the account. The key
    /// is gone for every request that authenticates after the commit (each one reads the store).
    pub async fn delete_api_key(&self, account_id: Uuid, id: Uuid) -> CoreResult<()> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            // Two deletions of the last two admin keys must not both see the other one.
            tx.lock_key(&admin_keys_lock(account_id)).await?;
            let key = tx
                .api_key_for_update(account_id, id)
                .await?
                .ok_or_else(|| not_found(format!("No API key {id}")))?;
            if is_live_admin(&key, now) {
                let others = tx
                    .api_keys(account_id)
                    .await?
                    .iter()
                    .filter(|k| k.id != id && is_live_admin(k, now))
                    .count();
                if others == 0 {
                    return Err(CoreError::api(
                        ErrorCode::LastAdminKey,
                        "This is the last unexpired admin key of the account; create another one first",
                    ));
                }
            }
            tx.delete_api_key(account_id, id).await?;
            Ok(())
        })
    }

    /// `DELETE /api/v1/applications/{appRef}` (management-api.md §7.1, people.md §10), in one
    /// transaction: the application's installations (each owner locked first, in id order;
    /// anonymous owners left without installations deleted with them), then its messages with
    /// their delivery records, its JWT keys and the application.
    pub async fn delete_application(&self, app: &Application) -> CoreResult<()> {
        let (account_id, app_id) = (app.account_id, app.id);
        in_write_tx!(self, |tx| async {
            // Locked first: from here on no installation of it can be inserted elsewhere.
            if tx.application_for_update(account_id, app_id).await?.is_none() {
                return Err(not_found(format!("No application {app_id}")));
            }
            loop {
                let owners = tx.installation_owners(account_id, app_id, OWNERS_PER_ROUND).await?;
                if owners.is_empty() {
                    break;
                }
                for owner in &owners {
                    crate::resolve::lock_person(tx, account_id, *owner).await?;
                }
                tx.delete_installations_of_owners(account_id, app_id, &owners).await?;
                for owner in &owners {
                    if let Some(person) = tx.person(account_id, *owner).await?
                        && person.is_anonymous()
                        && tx.count_installations_of_person(account_id, person.id).await? == 0
                    {
                        tx.delete_person(account_id, person.id).await?;
                    }
                }
            }
            if !tx.delete_application(account_id, app_id).await? {
                return Err(not_found(format!("No application {app_id}")));
            }
            Ok(())
        })
    }

    /// `DELETE /api/v1/attributes/{scope}/{name}` (management-api.md §7.3), in one transaction:
    /// the definition, every stored value of it in that scope (a person's `version` goes up),
    /// and every segment whose filter no longer parses becomes `valid: false`.
    pub async fn delete_definition(&self, account_id: Uuid, scope: AttributeScope, name: &str) -> CoreResult<()> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            if !tx.delete_attribute_definition(account_id, scope, name).await? {
                return Err(not_found(format!("No {} attribute named {name}", scope.as_str())));
            }
            tx.delete_attribute_values(account_id, scope, name, now).await?;
            crate::segments::invalidate_segments(tx, account_id).await?;
            Ok(())
        })
    }
}

async fn current_application(tx: &mut dyn Tx, app: &Application) -> CoreResult<Application> {
    match tx.application(app.account_id, app.id).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) | Err(StoreError::NotFound) => Err(not_found(format!("No application {}", app.id))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, t: AttributeType) -> SchemaField {
        SchemaField {
            name: name.into(),
            field_type: t,
        }
    }

    #[test]
    fn definition_rules() {
        assert!(check_definition("points", AttributeType::Decimal, None).is_ok());
        assert!(
            check_definition(
                "orders",
                AttributeType::ListOfObjects,
                Some(&[field("sku", AttributeType::String)])
            )
            .is_ok()
        );
        let path = |r: Result<(), ApiError>| r.unwrap_err().path.unwrap();
        assert_eq!(path(check_definition("$x", AttributeType::String, None)), "name");
        assert_eq!(
            path(check_definition("o", AttributeType::ListOfObjects, None)),
            "objectSchema"
        );
        assert_eq!(
            path(check_definition("o", AttributeType::ListOfObjects, Some(&[]))),
            "objectSchema"
        );
        assert_eq!(
            path(check_definition(
                "o",
                AttributeType::String,
                Some(&[field("a", AttributeType::String)])
            )),
            "objectSchema"
        );
        assert_eq!(
            path(check_definition(
                "o",
                AttributeType::ListOfObjects,
                Some(&[field("a", AttributeType::String), field("a", AttributeType::Decimal)])
            )),
            "objectSchema[1].name"
        );
        assert_eq!(
            path(check_definition(
                "o",
                AttributeType::ListOfObjects,
                Some(&[field("a", AttributeType::ListOfObjects)])
            )),
            "objectSchema[0].type"
        );
        let many: Vec<SchemaField> = (0..51)
            .map(|i| field(&format!("f{i}"), AttributeType::String))
            .collect();
        assert_eq!(
            path(check_definition("o", AttributeType::ListOfObjects, Some(&many))),
            "objectSchema"
        );
    }
}
