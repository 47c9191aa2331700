//! People, installations and the merge log through the management API (management-api.md §7.4,
//! §7.5, §7.8) and GDPR export and erase (§8): lookups, the management person PATCH (the user
//! PATCH rules of people.md §6.1 plus `type`), installation PATCH, depersonalize and delete by
//! management, merge reversal (people.md §9.3). Rules only, each in one transaction; the HTTP
//! shapes live in roster-server. The user and installation rules are the mobile API's own
//! functions (`user`, `installation`, `personalize`), never a second copy.

use std::collections::HashMap;

use roster_model::{
    ApiError, ErrorCode, Installation, MergeBefore, MergeLogEntry, MergeStatus, Millis, Person, PersonSnapshot,
    PersonType, now_millis,
    patch::{InstallationPatch, UserPatch},
    resources::{
        EraseReport, InstallationResource, MergeEntryResource, PERSON_EXPORT_FORMAT, PersonExport, PersonResource,
        timestamp,
    },
    validate::{canonical_push_reg_id, email_key, normalize_phone, validate_email},
};
use roster_store::{MergeKey, StoreError, Tx};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    Core, CoreError, CoreResult,
    attributes::apply_attribute_patch,
    idempotency::{IdempotencyHold, store_answer},
    installation::{apply_installation_patch, delete_installation_in, enforce_uniqueness},
    personalize::depersonalize_in,
    user::{apply_user_fields, ensure_new_keys_free, save_person, validate_user_fields},
};

/// The identity key a person lookup names (`GET /api/v1/people/lookup`, management-api.md §7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonKey {
    /// Compared exactly.
    ExternalUserId(String),
    /// Normalised like phone input (people.md §3.2).
    Phone(String),
    /// Compared by comparison key (people.md §3.3).
    Email(String),
    /// One of the person's installations, in any application of the account.
    PushRegId(String),
}

impl PersonKey {
    /// The query parameter that names this kind of key.
    pub fn parameter(&self) -> &'static str {
        match self {
            PersonKey::ExternalUserId(_) => "externalUserId",
            PersonKey::Phone(_) => "phone",
            PersonKey::Email(_) => "email",
            PersonKey::PushRegId(_) => "pushRegId",
        }
    }
}

/// `If-Match` of a person PATCH (management-api.md §3.4), already parsed: `*`, or the versions
/// its entity tags name (a tag that names no version matches nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// The person's version must be one of these.
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Parses an `If-Match` header value: `*` or a comma-separated list of strong entity tags
    /// (`"7"`). Weak tags (`W/"7"`) never match (RFC 9110 §13.1.1: strong comparison).
    pub fn parse(header: &str) -> IfMatch {
        if header.trim() == "*" {
            return IfMatch::Any;
        }
        IfMatch::Versions(
            header
                .split(',')
                .filter_map(|tag| {
                    let tag = tag.trim();
                    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
                })
                .collect(),
        )
    }

    fn matches(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(v) => v.contains(&version),
        }
    }
}

/// A person with its installations in every application of the account (oldest first) and the
/// codes of those applications.
#[derive(Debug, Clone)]
pub struct PersonView {
    pub person: Person,
    pub installations: Vec<Installation>,
    pub application_codes: HashMap<Uuid, String>,
}

impl PersonView {
    /// The person resource (management-api.md §7.4).
    pub fn resource(&self) -> PersonResource {
        PersonResource::of(
            &self.person,
            Some(
                self.installations
                    .iter()
                    .map(|i| InstallationResource::of(i, self.code(i)))
                    .collect(),
            ),
        )
    }

    fn code(&self, i: &Installation) -> &str {
        self.application_codes
            .get(&i.application_id)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// An installation and the code of its application.
#[derive(Debug, Clone)]
pub struct InstallationView {
    pub installation: Installation,
    pub application_code: String,
}

impl InstallationView {
    /// The installation resource (management-api.md §7.5).
    pub fn resource(&self) -> InstallationResource {
        InstallationResource::of(&self.installation, &self.application_code)
    }
}

/// The installation fields of the resource and of the mobile API that a management PATCH may
/// not write (management-api.md §7.5: system data, token, and what the server derives).
pub const READ_ONLY_INSTALLATION_FIELDS: &[&str] = &[
    "pushRegId",
    "applicationId",
    "applicationCode",
    "personId",
    "pushServiceType",
    "pushServiceToken",
    "hasPushServiceToken",
    "pushServiceTokenSuffix",
    "tokenClearedAt",
    "tokenClearedReason",
    "deliverable",
    "notificationsEnabled",
    "sdkVersion",
    "appVersion",
    "os",
    "osVersion",
    "deviceManufacturer",
    "deviceModel",
    "deviceName",
    "deviceSecure",
    "language",
    "deviceTimezoneOffset",
    "inappchat",
    "inbox",
    "webrtcui",
    "createdAt",
    "updatedAt",
    "lastSeenAt",
];

/// The fields a management installation PATCH may write (management-api.md §7.5).
pub const WRITABLE_INSTALLATION_FIELDS: &[&str] = &["regEnabled", "isPrimary", "applicationUserId", "customAttributes"];

/// The members of a management installation PATCH body that are known installation fields but
/// not writable there, in body order. Unknown members are ignored (management-api.md §3.1).
pub fn read_only_members(body: &Map<String, Value>) -> Vec<&str> {
    body.keys()
        .map(String::as_str)
        .filter(|k| READ_ONLY_INSTALLATION_FIELDS.contains(k))
        .collect()
}

fn not_found(text: impl Into<String>) -> CoreError {
    CoreError::api(ErrorCode::NotFound, text)
}

fn no_person(id: Uuid) -> CoreError {
    not_found(format!("No person {id}"))
}

fn no_installation(id: &str) -> CoreError {
    not_found(format!("No installation {id}"))
}

/// A lookup parameter that cannot name any key: `400 BAD_REQUEST` at `query.<name>`.
fn bad_query(name: &str, text: impl Into<String>) -> CoreError {
    let text = text.into();
    CoreError::Api(ApiError::new(ErrorCode::BadRequest, text).at(&format!("query.{name}")))
}

/// The codes of the account's applications, by application id.
async fn application_codes(tx: &mut dyn Tx, account_id: Uuid) -> CoreResult<HashMap<Uuid, String>> {
    Ok(tx
        .applications(account_id)
        .await?
        .into_iter()
        .map(|a| (a.id, a.application_code))
        .collect())
}

/// The view of a person read (and, in a write transaction, locked) in `tx`.
async fn person_view_in(tx: &mut dyn Tx, person: Person) -> CoreResult<PersonView> {
    let installations = tx.installations_of_person(person.account_id, person.id, None).await?;
    let application_codes = application_codes(tx, person.account_id).await?;
    Ok(PersonView {
        person,
        installations,
        application_codes,
    })
}

/// The installation `raw_id` of the account, if any (not a UUID: none).
async fn installation_of_account(tx: &mut dyn Tx, account_id: Uuid, raw_id: &str) -> CoreResult<Option<Installation>> {
    let Some(id) = canonical_push_reg_id(raw_id) else {
        return Ok(None);
    };
    Ok(tx.installation(&id).await?.filter(|i| i.account_id == account_id))
}

/// The installation `raw_id` of the account with its person locked for the rest of the
/// transaction (every change to a person and its installations serialises on that lock,
/// roster-store `Tx` docs), read again after the lock: `404` when there is none.
async fn lock_installation(tx: &mut dyn Tx, account_id: Uuid, raw_id: &str) -> CoreResult<Installation> {
    let first = installation_of_account(tx, account_id, raw_id)
        .await?
        .ok_or_else(|| no_installation(raw_id))?;
    if !crate::resolve::lock_person(tx, account_id, first.person_id).await? {
        return Ok(first);
    }
    let again = installation_of_account(tx, account_id, raw_id)
        .await?
        .ok_or_else(|| no_installation(raw_id))?;
    if again.person_id != first.person_id {
        // Moved to another person before the lock was held: run the transaction again.
        return Err(CoreError::Store(StoreError::Retry(
            "the installation moved to another person while its person was being locked".into(),
        )));
    }
    Ok(again)
}

async fn view_of_installation(tx: &mut dyn Tx, installation: Installation) -> CoreResult<InstallationView> {
    let application_code = tx
        .application(installation.account_id, installation.application_id)
        .await?
        .map(|a| a.application_code)
        .ok_or_else(|| CoreError::Store(StoreError::Other("installation without application".into())))?;
    Ok(InstallationView {
        installation,
        application_code,
    })
}

/// `type` of a management person PATCH (people.md §3.6): `CUSTOMER` promotes, `LEAD` is allowed
/// only on a `LEAD` (where it changes nothing); anything else is `REQUEST_FORMAT_INVALID`.
fn apply_type(person: &mut Person, before: PersonType, value: Option<&Value>) -> Result<(), ApiError> {
    match value {
        None => Ok(()),
        Some(Value::String(s)) => match PersonType::parse(s) {
            Some(PersonType::Customer) => {
                person.person_type = PersonType::Customer;
                Ok(())
            }
            Some(PersonType::Lead) if before == PersonType::Lead => Ok(()),
            Some(PersonType::Lead) => Err(ApiError::format("type", "a CUSTOMER never becomes a LEAD again")),
            None => Err(ApiError::format("type", "must be LEAD or CUSTOMER")),
        },
        Some(_) => Err(ApiError::format("type", "must be the string LEAD or CUSTOMER")),
    }
}

impl Core {
    /// `GET /api/v1/people/{personId}`: the person with its installations, or `404`.
    pub async fn person_view(&self, account_id: Uuid, person_id: Uuid) -> CoreResult<PersonView> {
        in_read_tx!(self, |tx| async {
            let person = tx
                .person(account_id, person_id)
                .await?
                .ok_or_else(|| no_person(person_id))?;
            person_view_in(tx, person).await
        })
    }

    /// `GET /api/v1/people/lookup`: the person owning the key (phone normalised, email by
    /// comparison key, or owning the installation), or `404`. A phone, email or pushRegId that
    /// no stored key can have is `400` at `query.<parameter>`.
    pub async fn lookup_person(&self, account_id: Uuid, key: &PersonKey) -> CoreResult<PersonView> {
        let param = key.parameter();
        // Normalise outside the transaction: what can never match is a bad request.
        let (ext, phones, emails, push_reg_id) = match key {
            PersonKey::ExternalUserId(v) if v.is_empty() => return Err(bad_query(param, "must not be empty")),
            PersonKey::ExternalUserId(v) => (Some(v.clone()), vec![], vec![], None),
            PersonKey::Phone(v) => {
                let n = normalize_phone(v).map_err(|e| bad_query(param, e.text))?;
                (None, vec![n], vec![], None)
            }
            PersonKey::Email(v) => {
                let e = validate_email(v).map_err(|e| bad_query(param, e.text))?;
                (None, vec![], vec![email_key(&e)], None)
            }
            PersonKey::PushRegId(v) => {
                let id =
                    canonical_push_reg_id(v.trim()).ok_or_else(|| bad_query(param, "must be a pushRegId (a UUID)"))?;
                (None, vec![], vec![], Some(id))
            }
        };
        let missing = || not_found(format!("No person with this {param}"));
        in_read_tx!(self, |tx| async {
            let owner = match &push_reg_id {
                Some(id) => installation_of_account(tx, account_id, id).await?.map(|i| i.person_id),
                None => tx
                    .persons_owning(account_id, ext.as_deref(), &phones, &emails)
                    .await?
                    .first()
                    .copied(),
            };
            let owner = owner.ok_or_else(missing)?;
            let person = tx.person(account_id, owner).await?.ok_or_else(missing)?;
            person_view_in(tx, person).await
        })
    }

    /// `PATCH /api/v1/people/{personId}` (management-api.md §7.4): the user PATCH of
    /// people.md §6.1 plus `type`, in one transaction. Order: `404`, then `If-Match` (`412`,
    /// before the body's values are looked at, RFC 9110 §13.2.2), then the fields in the order
    /// of mobile-api.md §4.2 with `type` last (`400`), then the identity keys (`409
    /// USER_MERGE_INTERRUPTED`) and the rule that an anonymous person keeps an installation
    /// (`409 CONFLICT`). Changes nothing on any refusal.
    pub async fn patch_person(
        &self,
        account_id: Uuid,
        person_id: Uuid,
        body: &Map<String, Value>,
        if_match: Option<&IfMatch>,
    ) -> CoreResult<PersonView> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            // Locks the person until commit.
            let before = tx
                .person(account_id, person_id)
                .await?
                .ok_or_else(|| no_person(person_id))?;
            if let Some(condition) = if_match
                && !condition.matches(before.version)
            {
                return Err(CoreError::api(
                    ErrorCode::PreconditionFailed,
                    format!("If-Match does not match the person's version {}", before.version),
                ));
            }
            let patch = UserPatch::parse(body, "")?;
            let fields = validate_user_fields(&patch, "").map_err(|e| with_item_path(e, &patch))?;
            let mut after = before.clone();
            apply_user_fields(&mut after, &fields);
            apply_attribute_patch(
                tx,
                account_id,
                roster_model::AttributeScope::Person,
                self.settings().max_attribute_definitions,
                &mut after.custom_attributes,
                &patch.custom_attributes,
                "customAttributes",
                now,
            )
            .await?;
            apply_type(&mut after, before.person_type, body.get("type"))?;
            ensure_new_keys_free(tx, &before, &after).await?;
            // people.md §6.1: a management PATCH may not leave an anonymous person without
            // installations (invariant 10); delete the person instead.
            if after.is_anonymous()
                && !before.is_anonymous()
                && tx.count_installations_of_person(account_id, person_id).await? == 0
            {
                return Err(CoreError::api(
                    ErrorCode::Conflict,
                    "The change would leave the person without identity keys and without installations; \
                     erase the person instead",
                ));
            }
            save_person(tx, &before, &mut after, now).await?;
            person_view_in(tx, after).await
        })
    }

    /// `GET /api/v1/installations/{pushRegId}`, or `404`.
    pub async fn installation_view(&self, account_id: Uuid, push_reg_id: &str) -> CoreResult<InstallationView> {
        in_read_tx!(self, |tx| async {
            let inst = installation_of_account(tx, account_id, push_reg_id)
                .await?
                .ok_or_else(|| no_installation(push_reg_id))?;
            view_of_installation(tx, inst).await
        })
    }

    /// `PATCH /api/v1/installations/{pushRegId}` (management-api.md §7.5): `regEnabled`,
    /// `isPrimary`, `applicationUserId` and `customAttributes` with the semantics of
    /// people.md §6.2 (`isPrimary: true` demotes the person's other installations in the
    /// application, §4); any other known installation field is `400 BAD_REQUEST`.
    pub async fn patch_installation_by_management(
        &self,
        account_id: Uuid,
        push_reg_id: &str,
        body: &Map<String, Value>,
    ) -> CoreResult<InstallationView> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let before = lock_installation(tx, account_id, push_reg_id).await?;
            if let Some(field) = read_only_members(body).first() {
                return Err(
                    ApiError::new(ErrorCode::BadRequest, "not writable through the management API")
                        .at(field)
                        .into(),
                );
            }
            let writable: Map<String, Value> = body
                .iter()
                .filter(|(k, _)| WRITABLE_INSTALLATION_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let patch = InstallationPatch::parse(&writable)?;
            let mut inst = before.clone();
            apply_installation_patch(tx, self, &mut inst, &patch, now).await?;
            enforce_uniqueness(tx, Some(&before), &inst, now).await?;
            if inst != before {
                inst.updated_at = now;
                tx.update_installation(&inst).await?;
            }
            view_of_installation(tx, inst).await
        })
    }

    /// `POST /api/v1/installations/{pushRegId}/depersonalize`: people.md §7.1 on any
    /// installation of the account (§7.2); the answer carries the new `personId` (the same one
    /// when the person was anonymous and nothing changed).
    /// With `hold`, its answer (the resource) is stored in the same transaction
    /// (management-api.md §3.3).
    pub async fn depersonalize_by_management(
        &self,
        account_id: Uuid,
        push_reg_id: &str,
        hold: Option<&IdempotencyHold>,
    ) -> CoreResult<InstallationView> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let mut inst = lock_installation(tx, account_id, push_reg_id).await?;
            depersonalize_in(tx, &mut inst, now).await?;
            let view = view_of_installation(tx, inst).await?;
            store_answer(tx, hold, 200, &view.resource(), now).await?;
            Ok(view)
        })
    }

    /// `DELETE /api/v1/installations/{pushRegId}` (people.md §2.5): an anonymous person left
    /// without installations goes with it.
    pub async fn delete_installation_by_management(&self, account_id: Uuid, push_reg_id: &str) -> CoreResult<()> {
        in_write_tx!(self, |tx| async {
            let inst = lock_installation(tx, account_id, push_reg_id).await?;
            delete_installation_in(tx, &inst).await
        })
    }

    /// `GET /api/v1/merges`: entries newest first, optionally only those naming `person`, after
    /// the keyset position `before`; at most `limit`.
    pub async fn merge_entries(
        &self,
        account_id: Uuid,
        person: Option<Uuid>,
        before: Option<MergeKey>,
        limit: u32,
    ) -> CoreResult<Vec<MergeLogEntry>> {
        in_read_tx!(self, |tx| async {
            Ok(tx.merge_entries_newest_first(account_id, person, before, limit).await?)
        })
    }

    /// `GET /api/v1/merges/{id}`, or `404`.
    pub async fn merge_entry(&self, account_id: Uuid, id: Uuid) -> CoreResult<MergeLogEntry> {
        in_read_tx!(self, |tx| async {
            Ok::<_, CoreError>(tx.merge_entry(account_id, id).await?)
        })?
        .ok_or_else(|| not_found(format!("No merge-log entry {id}")))
    }

    /// `POST /api/v1/merges/{id}/reverse` (people.md §9.3), in one transaction: restores the
    /// target's data, re-creates or restores the source, moves the installation back with its
    /// primary flag (and the target's former primary its flag), increments both versions and
    /// marks the entry `REVERSED` by `actor`. `409 MERGE_NOT_REVERSIBLE` when reversed already or
    /// the snapshots are gone; `409 MERGE_REVERSAL_CONFLICT` when the data changed since.
    /// With `hold`, its answer (the entry with its snapshots) is stored in the same
    /// transaction (management-api.md §3.3).
    pub async fn reverse_merge(
        &self,
        account_id: Uuid,
        id: Uuid,
        actor: Value,
        hold: Option<&IdempotencyHold>,
    ) -> CoreResult<MergeLogEntry> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let entry = reverse_in(tx, account_id, id, &actor, now).await?;
            store_answer(tx, hold, 200, &MergeEntryResource::of(&entry, true), now).await?;
            Ok(entry)
        })
    }

    /// `GET /api/v1/people/{personId}/export` (management-api.md §8.1): everything held about
    /// the person, read in one consistent snapshot, including the retained delivery records of
    /// its current installations with the content of their messages.
    pub async fn export_person(&self, account_id: Uuid, person_id: Uuid) -> CoreResult<PersonExport> {
        let now = now_millis();
        in_read_tx!(self, |tx| async {
            let person = tx
                .person(account_id, person_id)
                .await?
                .ok_or_else(|| no_person(person_id))?;
            let view = person_view_in(tx, person).await?;
            let merges = tx.merge_entries_naming(account_id, person_id).await?;
            let ids: Vec<String> = view.installations.iter().map(|i| i.push_reg_id.clone()).collect();
            let mut deliveries = Vec::new();
            let mut messages: HashMap<String, Option<roster_store::push::Message>> = HashMap::new();
            for d in tx.deliveries_of_installations(account_id, &ids).await? {
                if !messages.contains_key(&d.message_id) {
                    let m = tx.message(account_id, &d.message_id).await?;
                    messages.insert(d.message_id.clone(), m);
                }
                let message = messages.get(&d.message_id).and_then(Option::as_ref);
                let code = view
                    .installations
                    .iter()
                    .find(|i| Some(&i.push_reg_id) == d.push_reg_id.as_ref())
                    .map(|i| view.code(i))
                    .filter(|c| !c.is_empty());
                deliveries.push(export_delivery(&d, message, code));
            }
            Ok::<_, CoreError>(PersonExport {
                format: PERSON_EXPORT_FORMAT.to_string(),
                exported_at: timestamp(now),
                account_id,
                person: PersonResource::of(&view.person, None),
                installations: view
                    .installations
                    .iter()
                    .map(|i| InstallationResource::of(i, view.code(i)).with_token(i))
                    .collect(),
                deliveries,
                merges: merges.iter().map(|e| MergeEntryResource::of(e, true)).collect(),
            })
        })
    }

    /// `DELETE /api/v1/people/{personId}` (management-api.md §8.2), in one transaction: deletes
    /// the person's installations in every application and the person with its keys and
    /// attributes, anonymises the delivery records of those installations (those still `QUEUED`
    /// fail with `ERASED`), and redacts the merge-log entries naming it. A second call is `404`.
    pub async fn erase_person(&self, account_id: Uuid, person_id: Uuid) -> CoreResult<EraseReport> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            // Locks the person: its installations cannot change or move meanwhile.
            tx.person(account_id, person_id)
                .await?
                .ok_or_else(|| no_person(person_id))?;
            let installations = tx.installations_of_person(account_id, person_id, None).await?;
            let ids: Vec<String> = installations.iter().map(|i| i.push_reg_id.clone()).collect();
            let anonymised = tx.anonymise_deliveries(account_id, person_id, &ids, now).await?;
            for inst in &installations {
                tx.delete_installation(account_id, &inst.push_reg_id).await?;
            }
            let redacted = tx.redact_merge_entries(account_id, person_id).await?;
            tx.delete_person(account_id, person_id).await?;
            Ok::<_, CoreError>(EraseReport {
                person_id,
                erased_at: timestamp(now),
                installations_deleted: installations.len() as u64,
                deliveries_anonymised: anonymised,
                merge_entries_redacted: redacted,
            })
        })
    }
}

/// management-api.md §8.1: one delivery record in a GDPR export, with its message's content and
/// custom payload.
fn export_delivery(
    d: &roster_store::push::Delivery,
    message: Option<&roster_store::push::Message>,
    application_code: Option<&str>,
) -> Value {
    let mut out = Map::new();
    out.insert("deliveryId".into(), json!(d.delivery_id));
    out.insert("messageId".into(), json!(d.message_id));
    if let Some(m) = message {
        out.insert("bulkId".into(), json!(m.bulk_id));
    }
    if let Some(id) = &d.push_reg_id {
        out.insert("pushRegId".into(), json!(id));
    }
    if let Some(code) = application_code {
        out.insert("applicationCode".into(), json!(code));
    }
    out.insert("status".into(), json!(d.status.as_str()));
    out.insert("createdAt".into(), json!(timestamp(d.created_at)));
    out.insert("updatedAt".into(), json!(timestamp(d.updated_at)));
    if let Some(at) = d.delivered_at {
        out.insert("deliveredAt".into(), json!(timestamp(at)));
    }
    if let Some(at) = d.seen_at {
        out.insert("seenAt".into(), json!(timestamp(at)));
    }
    if let Some(m) = message {
        out.insert("content".into(), m.content.clone());
        if let Some(p) = m.options.get("customPayload") {
            out.insert("customPayload".into(), p.clone());
        }
    }
    Value::Object(out)
}

/// management-api.md §2: a `PHONE_INVALID` or `EMAIL_INVALID` names its field in
/// `validationErrors`; the shared validation reports the value only, so the first list item that
/// fails the same check gives the path (`phones[2].number`).
fn with_item_path(e: ApiError, patch: &UserPatch) -> ApiError {
    if e.path.is_some() {
        return e;
    }
    let found = match e.code {
        ErrorCode::PhoneInvalid => patch
            .phones
            .value()
            .and_then(|list| list.iter().position(|p| normalize_phone(p).is_err()))
            .map(|i| format!("phones[{i}].number")),
        ErrorCode::EmailInvalid => patch
            .emails
            .value()
            .and_then(|list| list.iter().position(|a| validate_email(a).is_err()))
            .map(|i| format!("emails[{i}].address")),
        _ => None,
    };
    match found {
        Some(path) => e.at(&path),
        None => e,
    }
}

/// `MERGE_REVERSAL_CONFLICT` with a reason.
fn reversal_conflict(reason: &str) -> CoreError {
    CoreError::api(
        ErrorCode::MergeReversalConflict,
        format!("The merge cannot be reversed: {reason}"),
    )
}

/// Writes a snapshot's data (standard fields, identity keys, tags, custom attributes) into a
/// person; its type, id and timestamps are the caller's.
fn restore_data(person: &mut Person, s: &PersonSnapshot) {
    person.external_user_id.clone_from(&s.external_user_id);
    person.first_name.clone_from(&s.first_name);
    person.middle_name.clone_from(&s.middle_name);
    person.last_name.clone_from(&s.last_name);
    person.gender = s.gender;
    person.birthday.clone_from(&s.birthday);
    person.phones.clone_from(&s.phones);
    person.emails.clone_from(&s.emails);
    person.tags.clone_from(&s.tags);
    person.custom_attributes.clone_from(&s.custom_attributes);
}

/// The snapshots, target and source of an entry that may still be reversed, else
/// `MERGE_NOT_REVERSIBLE` (people.md §9.3: already reversed, or snapshots purged or redacted).
fn reversible_parts(entry: &MergeLogEntry) -> CoreResult<(MergeBefore, Uuid, Uuid)> {
    let not_reversible = |why: &str| CoreError::api(ErrorCode::MergeNotReversible, format!("The merge {why}"));
    if entry.status == MergeStatus::Reversed {
        return Err(not_reversible("was already reversed"));
    }
    match (&entry.before, entry.target_person_id, entry.source_person_id) {
        (Some(before), Some(target), Some(source)) => Ok((before.clone(), target, source)),
        _ => Err(not_reversible("has no snapshots any more (purged or redacted)")),
    }
}

/// people.md §9.3 inside a transaction.
async fn reverse_in(
    tx: &mut dyn Tx,
    account_id: Uuid,
    id: Uuid,
    actor: &Value,
    now: Millis,
) -> CoreResult<MergeLogEntry> {
    let entry = tx
        .merge_entry(account_id, id)
        .await?
        .ok_or_else(|| not_found(format!("No merge-log entry {id}")))?;
    let (_, target_id, source_id) = reversible_parts(&entry)?;

    // Lock both persons, in id order (a concurrent reversal of the same pair takes them in the
    // same order; any other deadlock is retried by the transaction runner). Every change to the
    // entry (a reversal, a GDPR erase of either person) holds one of these locks, so the entry
    // read again now is the one to judge (invariant 19: reversed at most once).
    let (first, second) = if target_id < source_id {
        (target_id, source_id)
    } else {
        (source_id, target_id)
    };
    let mut locked: HashMap<Uuid, Option<Person>> = HashMap::new();
    for pid in [first, second] {
        locked.insert(pid, tx.person(account_id, pid).await?);
    }
    let mut entry = tx
        .merge_entry(account_id, id)
        .await?
        .ok_or_else(|| not_found(format!("No merge-log entry {id}")))?;
    let (before, _, _) = reversible_parts(&entry)?;
    let target = locked
        .remove(&target_id)
        .flatten()
        .ok_or_else(|| reversal_conflict("the target person no longer exists"))?;
    if target.version != entry.after_target_version {
        return Err(reversal_conflict("the target person changed since the merge"));
    }
    let inst = tx
        .installation(&entry.push_reg_id)
        .await?
        .filter(|i| i.account_id == account_id && i.person_id == target_id)
        .ok_or_else(|| reversal_conflict("the installation no longer belongs to the target person"))?;
    let source_now = locked.remove(&source_id).flatten();
    match (entry.source_deleted, &source_now, entry.after_source_version) {
        (true, None, _) => {}
        (false, Some(p), Some(v)) if p.version == v => {}
        (true, Some(_), _) => return Err(reversal_conflict("the source person exists again")),
        _ => return Err(reversal_conflict("the source person changed since the merge")),
    }

    // 1. Restore T's data; its type stays (a CUSTOMER never becomes a LEAD again).
    let mut restored_target = target.clone();
    restore_data(&mut restored_target, &before.target);
    // The restored keys were T's own and P0 is anonymous, so nobody else can own them; checked
    // all the same (people.md §9.3).
    let (ext, phones, emails) = crate::user::new_identity_keys(&target, &restored_target);
    if ext.is_some() || !phones.is_empty() || !emails.is_empty() {
        let owners = tx.persons_owning(account_id, ext.as_deref(), &phones, &emails).await?;
        if owners.iter().any(|o| *o != target_id) {
            return Err(reversal_conflict(
                "an identity key of the target belongs to another person now",
            ));
        }
    }
    restored_target.version = target.version + 1;
    restored_target.updated_at = now;
    tx.update_person(&restored_target).await?;

    // 2. Re-create P0 under its id, or restore its data.
    match source_now {
        None => {
            let mut p0 = Person::new_anonymous(account_id, now);
            p0.id = source_id;
            restore_data(&mut p0, &before.source);
            p0.person_type = before.source.person_type;
            p0.version = before.source.version + 1;
            tx.insert_person(&p0).await?;
        }
        Some(current) => {
            let mut p0 = current.clone();
            restore_data(&mut p0, &before.source);
            p0.version = current.version + 1;
            p0.updated_at = now;
            tx.update_person(&p0).await?;
        }
    }

    // 3. Move I back to P0 with its former primary flag (demoting P0's others in the
    //    application when it was primary), then give T's former primary its flag back.
    let mut moved = inst.clone();
    moved.person_id = source_id;
    moved.is_primary = before.installation.is_primary;
    moved.updated_at = now;
    enforce_uniqueness(tx, Some(&inst), &moved, now).await?;
    tx.update_installation(&moved).await?;
    if let Some(former) = &before.installation.target_primary_push_reg_id
        && let Some(x) = tx.installation(former).await?
        && x.account_id == account_id
        && x.person_id == target_id
        && !x.is_primary
    {
        let mut promoted = x.clone();
        promoted.is_primary = true;
        promoted.updated_at = now;
        enforce_uniqueness(tx, Some(&x), &promoted, now).await?;
        tx.update_installation(&promoted).await?;
    }

    // 4. The entry.
    entry.status = MergeStatus::Reversed;
    entry.reversed_at = Some(now);
    entry.reversed_by = Some(actor.clone());
    tx.update_merge_entry(&entry).await?;
    Ok(entry)
}

/// The actor of a reversal requested with an API key (management-api.md §7.8).
pub fn api_key_actor(api_key_id: Uuid) -> Value {
    json!({"type": "API_KEY", "apiKeyId": api_key_id})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_compares_strong_tags() {
        assert!(IfMatch::parse("*").matches(3));
        assert!(IfMatch::parse("\"3\"").matches(3));
        assert!(IfMatch::parse(" \"2\" , \"3\"").matches(3));
        assert!(!IfMatch::parse("\"2\"").matches(3));
        assert!(!IfMatch::parse("W/\"3\"").matches(3));
        assert!(!IfMatch::parse("3").matches(3));
        assert!(!IfMatch::parse("\"x\"").matches(3));
    }

    #[test]
    fn type_rules() {
        let mut p = Person::new_anonymous(Uuid::nil(), 0);
        assert!(apply_type(&mut p, PersonType::Lead, Some(&json!("LEAD"))).is_ok());
        assert_eq!(p.person_type, PersonType::Lead);
        assert!(apply_type(&mut p, PersonType::Lead, Some(&json!("CUSTOMER"))).is_ok());
        assert_eq!(p.person_type, PersonType::Customer);
        let e = apply_type(&mut p, PersonType::Customer, Some(&json!("LEAD"))).unwrap_err();
        assert_eq!(
            (e.code, e.path.as_deref()),
            (ErrorCode::RequestFormatInvalid, Some("type"))
        );
        for bad in [json!("customer"), json!(null), json!(1)] {
            let e = apply_type(&mut p, PersonType::Lead, Some(&bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::RequestFormatInvalid, "{bad}");
        }
    }

    #[test]
    fn read_only_members_in_body_order() {
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"os":"x","regEnabled":true,"foo":1,"pushServiceToken":"t"}"#).unwrap();
        assert_eq!(read_only_members(&body), ["os", "pushServiceToken"]);
    }
}
