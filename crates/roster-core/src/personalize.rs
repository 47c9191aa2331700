//! Personalize (with merge), repersonalize, depersonalize and remote logout
//! (people.md §5, §7, §9.1; mobile-api.md §5.8–5.10).

use roster_model::{
    ApiError, Application, AttributeScope, ErrorCode, Installation, InstallationBefore, MergeBefore, MergeLogEntry,
    MergeStatus, Millis, Person, PersonSnapshot, PersonType, now_millis,
    patch::{IdentityInput, PersonalizeBody},
    validate::{MAX_CUSTOM_ATTRIBUTES, MAX_EMAILS, MAX_PHONES, MAX_TAGS, check_external_user_id, email_key},
    wire::UserJson,
};
use roster_store::Tx;
use serde_json::json;
use uuid::Uuid;

use crate::{
    Auth, Core, CoreError, CoreResult,
    attributes::{check_attribute_count, merge_attribute_patch, type_attribute_patch},
    resolve::{Addressing, resolve_for_write},
    user::{
        apply_user_fields, normalize_emails, normalize_phones, person_of, save_person, touch_caller, user_json,
        validate_user_fields,
    },
};

/// The three query flags of personalize (mobile-api.md §5.8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersonalizeFlags {
    /// `forceDepersonalize`.
    pub force_depersonalize: bool,
    /// `keepAsLead`.
    pub keep_as_lead: bool,
    /// `setDeviceAsPrimary`.
    pub set_device_as_primary: bool,
}

/// A validated identity K (people.md §5): normalised phones and emails, email keys.
struct Identity {
    external_user_id: Option<String>,
    phones: Vec<String>,
    emails: Vec<String>,
    email_keys: Vec<String>,
}

/// people.md §5.1 step 1, the identity part.
fn validate_identity(k: Option<&IdentityInput>) -> Result<Identity, ApiError> {
    let Some(k) = k.filter(|k| k.has_any_key()) else {
        return Err(ApiError::new(
            ErrorCode::UserIdentityInvalid,
            "userIdentity needs an externalUserId, a phone or an email",
        ));
    };
    if let Some(ext) = &k.external_user_id {
        check_external_user_id(ext, "userIdentity.externalUserId")?;
    }
    let phones = normalize_phones(&k.phones)?;
    let emails = normalize_emails(&k.emails)?;
    let email_keys = emails.iter().map(|e| email_key(e)).collect();
    Ok(Identity {
        external_user_id: k.external_user_id.clone(),
        phones,
        emails,
        email_keys,
    })
}

/// Depersonalizes an installation in the current transaction (people.md §7.1): when its person
/// is personalized, it moves to a fresh anonymous `LEAD` person and loses its custom
/// attributes, `applicationUserId` and primary flag. Returns the new person, or `None` when
/// nothing changed (the person was anonymous).
pub async fn depersonalize_in(tx: &mut dyn Tx, inst: &mut Installation, now: Millis) -> CoreResult<Option<Person>> {
    let person = person_of(tx, inst).await?;
    if person.is_anonymous() {
        return Ok(None);
    }
    let fresh = Person::new_anonymous(inst.account_id, now);
    tx.insert_person(&fresh).await?;
    let stored = inst.clone();
    inst.person_id = fresh.id;
    inst.custom_attributes.clear();
    inst.application_user_id = None;
    inst.is_primary = false;
    inst.updated_at = now;
    tx.update_installation_from(&stored, inst).await?;
    Ok(Some(fresh))
}

/// Fills T from P0 (people.md §5.2 "what wins", §9.1 step 2). Returns the custom attribute
/// names that were not copied because of the 250 limit.
fn fill_target(target: &mut Person, source: &Person) -> Vec<String> {
    for (t, s) in [
        (&mut target.first_name, &source.first_name),
        (&mut target.middle_name, &source.middle_name),
        (&mut target.last_name, &source.last_name),
        (&mut target.birthday, &source.birthday),
    ] {
        if t.is_none() {
            t.clone_from(s);
        }
    }
    if target.gender.is_none() {
        target.gender = source.gender;
    }
    target.tags.extend(source.tags.iter().cloned());
    let mut dropped = Vec::new();
    // BTreeMap iterates in ascending key order, as §9.1 step 2 requires.
    for (k, v) in &source.custom_attributes {
        if target.custom_attributes.contains_key(k) {
            continue;
        }
        if target.custom_attributes.len() < MAX_CUSTOM_ATTRIBUTES {
            target.custom_attributes.insert(k.clone(), v.clone());
        } else {
            dropped.push(k.clone());
        }
    }
    if source.person_type == PersonType::Customer {
        target.person_type = PersonType::Customer;
    }
    dropped
}

/// The source of a merge without the custom attributes it would move onto `target` whose
/// definition is gone. Reading a definition in a write transaction share-locks it (PostgreSQL),
/// so a concurrent `DELETE /api/v1/attributes/...` either waits for the merge (and then removes
/// the moved value from the target too) or has already deleted it and the value is not moved:
/// no value without a definition (people.md §11, invariant 14; docs/decisions.md).
async fn defined_only(tx: &mut dyn Tx, source: &Person, target: &Person) -> CoreResult<Person> {
    let mut kept = source.clone();
    for name in source.custom_attributes.keys() {
        if target.custom_attributes.contains_key(name) {
            continue;
        }
        if tx
            .attribute_definition(source.account_id, AttributeScope::Person, name)
            .await?
            .is_none()
        {
            kept.custom_attributes.remove(name);
        }
    }
    Ok(kept)
}

/// people.md §5.1 step 6: checks the limits of §3.7 on the resulting person.
fn check_person_limits(p: &Person) -> Result<(), ApiError> {
    if p.phones.len() > MAX_PHONES {
        return Err(ApiError::format(
            "userIdentity.phones",
            format!("at most {MAX_PHONES} phone numbers are allowed"),
        ));
    }
    if p.emails.len() > MAX_EMAILS {
        return Err(ApiError::format(
            "userIdentity.emails",
            format!("at most {MAX_EMAILS} email addresses are allowed"),
        ));
    }
    if p.tags.len() > MAX_TAGS {
        return Err(ApiError::format(
            "userAttributes.tags",
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    check_attribute_count(&p.custom_attributes, "userAttributes.customAttributes")
}

impl Core {
    /// `POST /mobile/1/appinstance/{id}/personalize` and `/repersonalize` (people.md §5.1).
    pub async fn personalize(
        &self,
        app: &Application,
        auth: &Auth,
        addressing: Addressing<'_>,
        body: &PersonalizeBody,
        flags: PersonalizeFlags,
    ) -> CoreResult<UserJson> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            self.personalize_in(tx, app, auth, addressing, body, flags, now).await
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn personalize_in(
        &self,
        tx: &mut dyn Tx,
        app: &Application,
        auth: &Auth,
        addressing: Addressing<'_>,
        body: &PersonalizeBody,
        flags: PersonalizeFlags,
        now: Millis,
    ) -> CoreResult<UserJson> {
        // mobile-api.md §3.3 step 6: the target must be the caller.
        let r = resolve_for_write(tx, app, addressing, false).await?;
        let mut inst = r.caller.clone();
        // Step 7: JWT subject (people.md §5.4) and restrictUserDataFromSdk (mobile-api.md §2.3).
        if let Auth::Jwt { subject } = auth {
            let ext = body.identity.as_ref().and_then(|k| k.external_user_id.as_deref());
            if ext != Some(subject.as_str()) {
                return Err(CoreError::api(
                    ErrorCode::JwtInvalid,
                    "userIdentity.externalUserId must equal the token's subject",
                ));
            }
        }
        if app.restrict_user_data_from_sdk && body.attributes_non_empty {
            return Err(CoreError::api(
                ErrorCode::UserDataRestricted,
                "User data changes from the SDK are disabled",
            ));
        }
        // people.md §5.1 step 1: validate K, then A as a user PATCH.
        let k = validate_identity(body.identity.as_ref())?;
        let fields = validate_user_fields(&body.attributes, "userAttributes")?;
        let typed_attributes = type_attribute_patch(
            tx,
            app.account_id,
            AttributeScope::Person,
            self.settings().max_attribute_definitions,
            &body.attributes.custom_attributes,
            "userAttributes.customAttributes",
            now,
        )
        .await?;

        // Step 2: candidates.
        let candidates = tx
            .persons_owning(app.account_id, k.external_user_id.as_deref(), &k.phones, &k.email_keys)
            .await?;
        if candidates.len() > 1 {
            return Err(CoreError::api(
                ErrorCode::AmbiguousPersonalizeCandidates,
                "The identity keys belong to more than one user",
            ));
        }
        let candidate = candidates.first().copied();
        let was_primary = inst.is_primary;
        let mut p0 = person_of(tx, &inst).await?;

        // Step 3: conflict with the current person.
        let ext_differs =
            |p: &Person| matches!((&p.external_user_id, &k.external_user_id), (Some(a), Some(b)) if a != b);
        let conflict = !p0.is_anonymous() && (candidate != Some(p0.id) || ext_differs(&p0));
        let mut forced = false;
        if conflict {
            if !flags.force_depersonalize {
                return Err(CoreError::api(
                    ErrorCode::PersonalizationImpossible,
                    "Installation is personalized as another person; personalize with forceDepersonalize=true to switch",
                ));
            }
            p0 = depersonalize_in(tx, &mut inst, now)
                .await?
                .expect("a personalized person is depersonalized");
            forced = true;
        }

        // Step 4: target.
        let mut target = match candidate {
            Some(id) if id != p0.id => tx
                .person(app.account_id, id)
                .await?
                .ok_or_else(|| CoreError::Store(roster_store::StoreError::Other("candidate vanished".into())))?,
            _ => p0.clone(),
        };
        if ext_differs(&target) {
            return Err(CoreError::api(
                ErrorCode::UserMergeInterrupted,
                "The identity names two different users (externalUserId differs)",
            ));
        }
        let target_before = target.clone();

        // Step 5: merge P0 into T (people.md §9.1).
        let mut merge: Option<MergeLogEntry> = None;
        if target.id != p0.id {
            let target_installations = tx
                .installations_of_person(app.account_id, target.id, Some(app.id))
                .await?;
            let target_primary = target_installations
                .iter()
                .find(|i| i.is_primary)
                .map(|i| i.push_reg_id.clone());
            let before = MergeBefore {
                source: PersonSnapshot::of(&p0),
                target: PersonSnapshot::of(&target),
                installation: InstallationBefore {
                    is_primary: was_primary,
                    target_primary_push_reg_id: target_primary.clone(),
                },
            };
            // 1. move I to T; it keeps its flag only if T has no primary in this application.
            let stored = inst.clone();
            inst.person_id = target.id;
            if inst.is_primary && target_primary.is_some() {
                inst.is_primary = false;
            }
            inst.updated_at = now;
            tx.update_installation_from(&stored, &inst).await?;
            // 2. fill T from P0 (with the attributes that still have a definition).
            let moved = defined_only(tx, &p0, &target).await?;
            let dropped = fill_target(&mut target, &moved);
            // 3. delete P0 if it has no installations left.
            let source_deleted = tx.count_installations_of_person(app.account_id, p0.id).await? == 0;
            if source_deleted {
                tx.delete_person(app.account_id, p0.id).await?;
            }
            merge = Some(MergeLogEntry {
                account_id: app.account_id,
                id: Uuid::new_v4(),
                created_at: now,
                actor: json!({"type": "INSTALLATION", "pushRegId": inst.push_reg_id, "applicationCode": app.application_code}),
                push_reg_id: inst.push_reg_id.clone(),
                source_person_id: Some(p0.id),
                target_person_id: Some(target.id),
                source_deleted,
                after_forced_depersonalize: forced,
                dropped_attributes: dropped,
                before: Some(before),
                after_target_version: 0,
                after_source_version: if source_deleted { None } else { Some(p0.version) },
                status: MergeStatus::Applied,
                reversed_at: None,
                reversed_by: None,
                redacted: false,
            });
        }

        // Step 6: identity and attributes.
        if target.external_user_id.is_none() {
            target.external_user_id.clone_from(&k.external_user_id);
        }
        for phone in &k.phones {
            if !target.phones.contains(phone) {
                target.phones.push(phone.clone());
            }
        }
        let mut keys = target.email_keys();
        for (email, key) in k.emails.iter().zip(&k.email_keys) {
            if !keys.contains(key) {
                keys.push(key.clone());
                target.emails.push(email.clone());
            }
        }
        apply_user_fields(&mut target, &fields);
        merge_attribute_patch(
            &mut target.custom_attributes,
            &typed_attributes,
            "userAttributes.customAttributes",
        )?;
        check_person_limits(&target)?;

        // Step 7: type and primary.
        if !flags.keep_as_lead {
            target.person_type = PersonType::Customer;
        }
        if flags.set_device_as_primary && !inst.is_primary {
            tx.lock_key(&crate::installation::primary_lock(target.id, app.id))
                .await?;
            tx.demote_primaries(app.account_id, target.id, app.id, &inst.push_reg_id, now)
                .await?;
            let stored = inst.clone();
            inst.is_primary = true;
            inst.updated_at = now;
            tx.update_installation_from(&stored, &inst).await?;
        }
        // The merge moved I (already written); a same-person personalize writes I only above.
        save_person(tx, &target_before, &mut target, now).await?;
        if let Some(mut entry) = merge {
            entry.after_target_version = target.version;
            tx.insert_merge_entry(&entry).await?;
        }
        touch_caller(tx, &inst, now).await?;
        user_json(tx, app, &target, &inst.push_reg_id).await
    }

    /// `POST /mobile/1/appinstance/{id}/depersonalize` (mobile-api.md §5.10): own logout, or
    /// remote logout of another installation of the same person (people.md §7.2).
    pub async fn depersonalize(&self, app: &Application, addressing: Addressing<'_>) -> CoreResult<()> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let r = resolve_for_write(tx, app, addressing, true).await?;
            let mut target = r.target().clone();
            depersonalize_in(tx, &mut target, now).await?;
            if r.remote_target.is_some() {
                touch_caller(tx, &r.caller, now).await?;
            } else {
                touch_caller(tx, &target, now).await?;
            }
            Ok(())
        })
    }
}
