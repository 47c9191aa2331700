//! Installations through the mobile API: create, read, PATCH own or another, re-creation under
//! a known id, and deletion of an expired installation (mobile-api.md §5.1–5.5,
//! people.md §2, §4).

use roster_model::{
    ApiError, Application, AttributeScope, ErrorCode, Installation, Millis, Person, PushServiceType, SystemData,
    TokenClearedReason, now_millis,
    patch::{InstallationPatch, Patch},
    validate::{MAX_SYSTEM_STRING, canonical_push_reg_id, check_application_user_id, check_push_token, truncate_chars},
    wire::InstallationJson,
};
use roster_store::{StoreError, Tx};
use uuid::Uuid;

use crate::{
    Core, CoreError, CoreResult, CreateGate,
    attributes::apply_attribute_patch,
    resolve::{
        Addressing, forbidden, installation_in_app, last_seen_is_stale, lock_person, no_registration, resolve,
        resolve_for_write,
    },
    user::touch_caller,
};

fn set_truncated(field: &mut Option<String>, patch: &Patch<String>) {
    match patch {
        Patch::Absent => {}
        Patch::Null => *field = None,
        Patch::Value(v) => *field = Some(truncate_chars(v, MAX_SYSTEM_STRING)),
    }
}

/// Applies an installation PATCH body to `inst` (people.md §6.2), validating fields in the
/// order of mobile-api.md §4.1, then keeps the store consistent: token hygiene (§2.3) and the
/// primary rule (§4). `inst` must already be stored or be inserted by the caller afterwards;
/// the hygiene and demotion writes touch only *other* installations.
pub async fn apply_installation_patch(
    tx: &mut dyn Tx,
    core: &Core,
    inst: &mut Installation,
    patch: &InstallationPatch,
    now: Millis,
) -> CoreResult<()> {
    // Row 2: pushServiceType (null is ignored).
    if let Some(raw) = &patch.push_service_type {
        let t = PushServiceType::parse(raw)
            .ok_or_else(|| ApiError::format("pushServiceType", "must be one of Firebase, GCM, HMS, APNS"))?;
        inst.push_service_type = Some(t);
    }
    // Row 3: pushServiceToken.
    match &patch.push_service_token {
        Patch::Absent => {}
        Patch::Null => {
            if inst.push_service_token.is_some() {
                inst.push_service_token = None;
                inst.token_cleared_at = Some(now);
                inst.token_cleared_reason = Some(TokenClearedReason::Device);
            }
        }
        Patch::Value(token) => {
            check_push_token(token, "pushServiceToken")?;
            if inst.push_service_type.is_none() {
                return Err(ApiError::format("pushServiceToken", "a token requires a pushServiceType").into());
            }
            inst.push_service_token = Some(token.clone());
        }
    }
    // APNs tokens are stored lowercase (people.md §2.1, invariant 13), whichever field changed.
    if inst.push_service_type == Some(PushServiceType::Apns)
        && let Some(t) = &mut inst.push_service_token
    {
        *t = t.to_ascii_lowercase();
    }
    // Rows 4–5.
    patch.reg_enabled.apply_to_flag(&mut inst.reg_enabled, true);
    patch.is_primary.apply_to_flag(&mut inst.is_primary, false);
    // Row 6.
    patch
        .notifications_enabled
        .apply_to(&mut inst.system.notifications_enabled);
    // Row 7.
    if let Patch::Value(v) = &patch.application_user_id {
        check_application_user_id(v, "applicationUserId")?;
    }
    patch.application_user_id.apply_to(&mut inst.application_user_id);
    // Row 8.
    apply_attribute_patch(
        tx,
        inst.account_id,
        AttributeScope::Installation,
        core.settings().max_attribute_definitions,
        &mut inst.custom_attributes,
        &patch.custom_attributes,
        "customAttributes",
        now,
    )
    .await?;
    // Rows 9–19: system data; long strings are truncated, never rejected.
    let s: &mut SystemData = &mut inst.system;
    set_truncated(&mut s.sdk_version, &patch.sdk_version);
    set_truncated(&mut s.app_version, &patch.app_version);
    set_truncated(&mut s.os, &patch.os);
    set_truncated(&mut s.os_version, &patch.os_version);
    set_truncated(&mut s.device_manufacturer, &patch.device_manufacturer);
    set_truncated(&mut s.device_model, &patch.device_model);
    set_truncated(&mut s.device_name, &patch.device_name);
    patch.device_secure.apply_to(&mut s.device_secure);
    set_truncated(&mut s.language, &patch.language);
    set_truncated(&mut s.device_timezone_offset, &patch.device_timezone_offset);
    patch.inappchat.apply_to(&mut s.inappchat);
    patch.inbox.apply_to(&mut s.inbox);
    patch.webrtcui.apply_to(&mut s.webrtcui);
    Ok(())
}

/// Token hygiene and the primary rule for an installation about to be written
/// (people.md §2.3, §4): other holders of its (provider, token) lose it, and if it is primary
/// the person's other installations in the application are demoted.
pub async fn enforce_uniqueness(
    tx: &mut dyn Tx,
    before: Option<&Installation>,
    inst: &Installation,
    now: Millis,
) -> CoreResult<()> {
    if let (Some(provider), Some(token)) = (inst.provider(), &inst.push_service_token) {
        let unchanged =
            before.is_some_and(|b| b.provider() == Some(provider) && b.push_service_token.as_ref() == Some(token));
        if !unchanged {
            tx.clear_token_holders(
                inst.account_id,
                inst.application_id,
                provider,
                token,
                &inst.push_reg_id,
                TokenClearedReason::TakenOver,
                now,
            )
            .await?;
        }
    }
    let was_primary_here = before.is_some_and(|b| b.is_primary && b.person_id == inst.person_id);
    if inst.is_primary && !was_primary_here {
        // people.md §4: a promotion serialises on the person and application.
        tx.lock_key(&primary_lock(inst.person_id, inst.application_id)).await?;
        tx.demote_primaries(
            inst.account_id,
            inst.person_id,
            inst.application_id,
            &inst.push_reg_id,
            now,
        )
        .await?;
    }
    Ok(())
}

/// The lock key that serialises promotions of one person in one application (people.md §4).
pub fn primary_lock(person: Uuid, application: Uuid) -> String {
    format!("primary:{person}:{application}")
}

/// A new installation and its new anonymous `LEAD` person (people.md §2.2), with the body
/// applied; used by create and by re-creation under a known id (§2.4).
async fn create_in(
    tx: &mut dyn Tx,
    core: &Core,
    app: &Application,
    push_reg_id: String,
    patch: &InstallationPatch,
    now: Millis,
) -> CoreResult<Installation> {
    let person = Person::new_anonymous(app.account_id, now);
    let mut inst = Installation {
        account_id: app.account_id,
        application_id: app.id,
        push_reg_id,
        person_id: person.id,
        push_service_type: None,
        push_service_token: None,
        reg_enabled: true,
        is_primary: false,
        application_user_id: None,
        custom_attributes: Default::default(),
        system: SystemData::default(),
        created_at: now,
        updated_at: now,
        last_seen_at: now,
        token_cleared_at: None,
        token_cleared_reason: None,
    };
    apply_installation_patch(tx, core, &mut inst, patch, now).await?;
    // A cleared token on a brand-new installation is no event.
    inst.token_cleared_at = None;
    inst.token_cleared_reason = None;
    tx.insert_person(&person).await?;
    enforce_uniqueness(tx, None, &inst, now).await?;
    tx.insert_installation(&inst).await?;
    Ok(inst)
}

impl Core {
    /// `POST /mobile/1/appinstance` (mobile-api.md §5.1).
    pub async fn create_installation(
        &self,
        app: &Application,
        patch: &InstallationPatch,
    ) -> CoreResult<InstallationJson> {
        let now = now_millis();
        let created = in_write_tx!(self, |tx| async {
            let id = Uuid::new_v4().to_string();
            let inst = create_in(tx, self, app, id, patch, now).await?;
            Ok(InstallationJson::of(&inst, true))
        });
        self.unless_application_deleted(app, created).await
    }

    /// A new installation refers to its application (a foreign key): when the application is
    /// deleted between the request's authentication and the insert, the store refuses the insert
    /// with [`StoreError::ForeignKey`] (on PostgreSQL the insert waits for the deletion's
    /// lock, then fails). That is the unknown application of mobile-api.md §2.1, `401
    /// INVALID_APPLICATION_CODE`, not a server fault, once the application is confirmed gone;
    /// any other missing reference stays a server fault.
    ///
    /// The check runs in a write transaction, which sees what the failed insert saw: on SQLite a
    /// deletion may be in the write batch of the failed insert (group commit) and not yet
    /// visible to read transactions.
    async fn unless_application_deleted<T>(&self, app: &Application, result: CoreResult<T>) -> CoreResult<T> {
        let Err(CoreError::Store(StoreError::ForeignKey(cause))) = result else {
            return result;
        };
        let code = app.application_code.to_ascii_lowercase();
        let current = crate::in_write_tx!(self, |tx| async { Ok(tx.application_by_code(&code).await?) });
        match current {
            Ok(Some(app)) if app.enabled => Err(CoreError::Store(StoreError::ForeignKey(cause))),
            Ok(_) => Err(CoreError::api(
                ErrorCode::InvalidApplicationCode,
                "Invalid application code",
            )),
            Err(_) => Err(CoreError::Store(StoreError::ForeignKey(cause))),
        }
    }

    /// `GET /mobile/1/appinstance/{id}` (mobile-api.md §5.2): own or (read-only) another
    /// installation of the same person; the token only for the caller's own.
    pub async fn get_installation(
        &self,
        app: &Application,
        addressing: Addressing<'_>,
    ) -> CoreResult<InstallationJson> {
        let now = now_millis();
        let r = in_read_tx!(self, |tx| async { resolve(tx, app, addressing, true).await })?;
        self.refresh_last_seen(&r.caller, now).await?;
        Ok(InstallationJson::of(r.target(), r.remote_target.is_none()))
    }

    /// `PATCH /mobile/1/appinstance/{id}` (mobile-api.md §5.3, §5.4): own installation (with
    /// re-creation of an unknown own id, §5.3), or the primary flag of another installation of
    /// the same person.
    pub async fn patch_installation(
        &self,
        app: &Application,
        addressing: Addressing<'_>,
        patch: &InstallationPatch,
        create_gate: CreateGate<'_>,
    ) -> CoreResult<InstallationJson> {
        let now = now_millis();
        let patched = in_write_tx!(self, |tx| async {
            let r = match resolve_for_write(tx, app, addressing, true).await {
                // The own installation is unknown: re-creation under its id, or NO_REGISTRATION.
                Err(CoreError::Api(e)) if e.code == ErrorCode::NoRegistration && !addressing.is_remote() => {
                    return self
                        .recreate(tx, app, addressing.path_id, patch, now, create_gate)
                        .await;
                }
                other => other?,
            };
            match &r.remote_target {
                None => {
                    let before = r.caller.clone();
                    let mut inst = before.clone();
                    apply_installation_patch(tx, self, &mut inst, patch, now).await?;
                    enforce_uniqueness(tx, Some(&before), &inst, now).await?;
                    inst.last_seen_at = if last_seen_is_stale(&before, now) {
                        now
                    } else {
                        before.last_seen_at
                    };
                    if inst != before {
                        inst.updated_at = now;
                        tx.update_installation_from(&before, &inst).await?;
                    }
                    Ok(InstallationJson::of(&inst, true))
                }
                Some(target) => {
                    // §5.4: only isPrimary may be sent about another installation.
                    if patch.has_fields_other_than_is_primary {
                        return Err(forbidden("Only isPrimary may be changed on another installation"));
                    }
                    let before = target.clone();
                    let mut inst = before.clone();
                    patch.is_primary.apply_to_flag(&mut inst.is_primary, false);
                    if inst != before {
                        enforce_uniqueness(tx, Some(&before), &inst, now).await?;
                        inst.updated_at = now;
                        tx.update_installation_from(&before, &inst).await?;
                    }
                    touch_caller(tx, &r.caller, now).await?;
                    Ok(InstallationJson::of(&inst, false))
                }
            }
        });
        // A re-creation inserts an installation (see `unless_application_deleted`).
        self.unless_application_deleted(app, patched).await
    }

    /// Re-creation under a known id (mobile-api.md §5.3, people.md §2.4), or `NO_REGISTRATION`.
    async fn recreate(
        &self,
        tx: &mut dyn Tx,
        app: &Application,
        path_id: &str,
        patch: &InstallationPatch,
        now: Millis,
        create_gate: CreateGate<'_>,
    ) -> CoreResult<InstallationJson> {
        let has_token = matches!(patch.push_service_token, Patch::Value(_)) && patch.push_service_type.is_some();
        let Some(id) = canonical_push_reg_id(path_id) else {
            return Err(no_registration());
        };
        if !has_token || tx.installation(&id).await?.is_some() {
            return Err(no_registration());
        }
        // mobile-api.md §1.7: re-creation takes from the per-IP create bucket, checked here,
        // when re-creation is decided.
        create_gate().map_err(CoreError::RateLimited)?;
        let inst = create_in(tx, self, app, id, patch, now).await?;
        tracing::info!(push_reg_id = %inst.push_reg_id, "installation re-created under its known id");
        Ok(InstallationJson::of(&inst, true))
    }

    /// `DELETE /mobile/1/appinstance/{expiredId}` (mobile-api.md §5.5, people.md §2.5).
    pub async fn delete_expired_installation(
        &self,
        app: &Application,
        path_id: &str,
        caller_header: Option<&str>,
    ) -> CoreResult<()> {
        let now = now_millis();
        let caller_id = match caller_header.map(str::trim) {
            Some(h) if !h.is_empty() && !h.eq_ignore_ascii_case(path_id) => h,
            _ => {
                return Err(CoreError::api(
                    ErrorCode::ForbiddenInstallation,
                    "Deleting an installation needs the caller's own, different pushregistrationid",
                ));
            }
        };
        in_write_tx!(self, |tx| async {
            let caller = installation_in_app(tx, app, caller_id)
                .await?
                .ok_or_else(no_registration)?;
            let Some(target) = installation_in_app(tx, app, path_id).await? else {
                // Unknown in this application: idempotent success, nothing changed.
                return Ok(());
            };
            let target = if lock_person(tx, target.account_id, target.person_id).await? {
                let Some(again) = installation_in_app(tx, app, path_id).await? else {
                    return Ok(());
                };
                again
            } else {
                target
            };
            delete_installation_in(tx, &target).await?;
            touch_caller(tx, &caller, now).await?;
            Ok(())
        })
    }
}

/// Deletes an installation; its person goes too when anonymous and left without installations
/// (people.md §2.5, invariant 10).
pub async fn delete_installation_in(tx: &mut dyn Tx, target: &Installation) -> CoreResult<()> {
    tx.delete_installation(target.account_id, &target.push_reg_id).await?;
    let person = tx.person(target.account_id, target.person_id).await?;
    if let Some(person) = person
        && person.is_anonymous()
        && tx.count_installations_of_person(person.account_id, person.id).await? == 0
    {
        tx.delete_person(person.account_id, person.id).await?;
    }
    Ok(())
}

impl Core {
    /// Session and custom event stubs (mobile-api.md §5.13): the normal caller rules (no remote
    /// target), then the caller's `lastSeenAt` is refreshed (15-minute rule).
    pub async fn caller_event(&self, app: &Application, addressing: Addressing<'_>) -> CoreResult<()> {
        let now = now_millis();
        let r = in_read_tx!(self, |tx| async { resolve(tx, app, addressing, false).await })?;
        self.refresh_last_seen(&r.caller, now).await
    }
}
