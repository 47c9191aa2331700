//! Users (persons) through the mobile API: GET and PATCH user (mobile-api.md §5.6, §5.7;
//! people.md §6.1), and the validation of user fields shared with personalize.

use std::collections::{BTreeSet, HashSet};

use roster_model::{
    ApiError, Application, AttributeScope, ErrorCode, Gender, Installation, Millis, Person, now_millis,
    patch::{Patch, UserPatch, json_path},
    validate::{
        MAX_EMAILS, MAX_FIRST_LAST_NAME, MAX_MIDDLE_NAME, MAX_PHONES, MAX_TAGS, check_birthday, check_external_user_id,
        check_max_chars, check_tag, email_key, normalize_phone, validate_email,
    },
    wire::UserJson,
};
use roster_store::Tx;

use crate::{
    Auth, Core, CoreError, CoreResult,
    attributes::apply_attribute_patch,
    resolve::{Addressing, last_seen_is_stale, lock_person, resolve, resolve_for_write},
};

/// A user PATCH whose standard fields passed validation (people.md §3.7), normalised:
/// phones in E.164 digits, emails trimmed, duplicates collapsed to the first occurrence.
/// An empty list is `Null` (clear).
#[derive(Debug, Clone, Default)]
pub struct ValidUserFields {
    pub external_user_id: Patch<String>,
    pub first_name: Patch<String>,
    pub middle_name: Patch<String>,
    pub last_name: Patch<String>,
    pub gender: Patch<Gender>,
    pub birthday: Patch<String>,
    pub phones: Patch<Vec<String>>,
    pub emails: Patch<Vec<String>>,
    pub tags: Patch<BTreeSet<String>>,
}

/// Normalises phones, collapsing duplicates to the first occurrence (people.md §3.2, §3.5).
pub fn normalize_phones(phones: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::with_capacity(phones.len());
    // A set, not `out.contains`: a 2 MiB body holds ~10^5 numbers (quadratic would take seconds).
    let mut seen: HashSet<String> = HashSet::with_capacity(phones.len());
    for raw in phones {
        let n = normalize_phone(raw)?;
        if seen.insert(n.clone()) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Validates emails, collapsing duplicates (by comparison key) to the first occurrence.
pub fn normalize_emails(emails: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::with_capacity(emails.len());
    let mut keys: HashSet<String> = HashSet::with_capacity(emails.len());
    for raw in emails {
        let e = validate_email(raw)?;
        if keys.insert(email_key(&e)) {
            out.push(e);
        }
    }
    Ok(out)
}

fn list_patch(v: Vec<String>) -> Patch<Vec<String>> {
    if v.is_empty() { Patch::Null } else { Patch::Value(v) }
}

/// Validates the standard fields of a user PATCH in the order of mobile-api.md §4.2 (custom
/// attributes, which come last, are typed separately against the definitions).
pub fn validate_user_fields(p: &UserPatch, prefix: &str) -> Result<ValidUserFields, ApiError> {
    let path = |n: &str| json_path(prefix, n);
    let external_user_id = p.external_user_id.clone().try_map(|s| {
        check_external_user_id(&s, &path("externalUserId"))?;
        Ok::<_, ApiError>(s)
    })?;
    let name = |f: &Patch<String>, n: &str, max: usize| {
        f.clone().try_map(|s| {
            check_max_chars(&s, max, &path(n))?;
            Ok::<_, ApiError>(s)
        })
    };
    let first_name = name(&p.first_name, "firstName", MAX_FIRST_LAST_NAME)?;
    let middle_name = name(&p.middle_name, "middleName", MAX_MIDDLE_NAME)?;
    let last_name = name(&p.last_name, "lastName", MAX_FIRST_LAST_NAME)?;
    let gender = p
        .gender
        .clone()
        .try_map(|g| Gender::parse(&g).ok_or_else(|| ApiError::format(&path("gender"), "must be Male or Female")))?;
    let birthday = p.birthday.clone().try_map(|b| {
        check_birthday(&b, &path("birthday"))?;
        Ok::<_, ApiError>(b)
    })?;
    let phones = match &p.phones {
        Patch::Value(list) => {
            let v = normalize_phones(list)?;
            if v.len() > MAX_PHONES {
                return Err(ApiError::format(
                    &path("phones"),
                    format!("at most {MAX_PHONES} phone numbers are allowed"),
                ));
            }
            list_patch(v)
        }
        Patch::Null => Patch::Null,
        Patch::Absent => Patch::Absent,
    };
    let emails = match &p.emails {
        Patch::Value(list) => {
            let v = normalize_emails(list)?;
            if v.len() > MAX_EMAILS {
                return Err(ApiError::format(
                    &path("emails"),
                    format!("at most {MAX_EMAILS} email addresses are allowed"),
                ));
            }
            list_patch(v)
        }
        Patch::Null => Patch::Null,
        Patch::Absent => Patch::Absent,
    };
    let tags = match &p.tags {
        Patch::Value(list) => {
            for (i, t) in list.iter().enumerate() {
                check_tag(t, &format!("{}[{i}]", path("tags")))?;
            }
            let set: BTreeSet<String> = list.iter().cloned().collect();
            if set.len() > MAX_TAGS {
                return Err(ApiError::format(
                    &path("tags"),
                    format!("at most {MAX_TAGS} tags are allowed"),
                ));
            }
            if set.is_empty() { Patch::Null } else { Patch::Value(set) }
        }
        Patch::Null => Patch::Null,
        Patch::Absent => Patch::Absent,
    };
    Ok(ValidUserFields {
        external_user_id,
        first_name,
        middle_name,
        last_name,
        gender,
        birthday,
        phones,
        emails,
        tags,
    })
}

/// Applies validated standard fields to a person (people.md §6.1 table).
pub fn apply_user_fields(person: &mut Person, v: &ValidUserFields) {
    v.external_user_id.apply_to(&mut person.external_user_id);
    v.first_name.apply_to(&mut person.first_name);
    v.middle_name.apply_to(&mut person.middle_name);
    v.last_name.apply_to(&mut person.last_name);
    v.gender.apply_to(&mut person.gender);
    v.birthday.apply_to(&mut person.birthday);
    match &v.phones {
        Patch::Absent => {}
        Patch::Null => person.phones.clear(),
        Patch::Value(list) => person.phones = list.clone(),
    }
    match &v.emails {
        Patch::Absent => {}
        Patch::Null => person.emails.clear(),
        Patch::Value(list) => person.emails = list.clone(),
    }
    match &v.tags {
        Patch::Absent => {}
        Patch::Null => person.tags.clear(),
        Patch::Value(set) => person.tags = set.clone(),
    }
}

/// The identity keys of `person` that `before` did not own: (externalUserId, phones, email keys).
pub fn new_identity_keys(before: &Person, after: &Person) -> (Option<String>, Vec<String>, Vec<String>) {
    let ext = match (&before.external_user_id, &after.external_user_id) {
        (b, Some(a)) if b.as_ref() != Some(a) => Some(a.clone()),
        _ => None,
    };
    let phones = after
        .phones
        .iter()
        .filter(|p| !before.phones.contains(p))
        .cloned()
        .collect();
    let before_keys = before.email_keys();
    let emails = after
        .email_keys()
        .into_iter()
        .filter(|k| !before_keys.contains(k))
        .collect();
    (ext, phones, emails)
}

/// `USER_MERGE_INTERRUPTED` when one of the keys `after` gained over `before` is owned by
/// another person of the account (people.md §6.1: PATCH never merges).
pub async fn ensure_new_keys_free(tx: &mut dyn Tx, before: &Person, after: &Person) -> CoreResult<()> {
    let (ext, phones, emails) = new_identity_keys(before, after);
    if ext.is_none() && phones.is_empty() && emails.is_empty() {
        return Ok(());
    }
    let owners = tx
        .persons_owning(after.account_id, ext.as_deref(), &phones, &emails)
        .await?;
    if owners.iter().any(|o| *o != after.id) {
        return Err(CoreError::api(
            ErrorCode::UserMergeInterrupted,
            "An identity key in the request belongs to another user",
        ));
    }
    Ok(())
}

/// Writes a changed person: bumps `version` and `updatedAt` when its data changed
/// (people.md invariant 20). Returns whether anything was written.
pub async fn save_person(tx: &mut dyn Tx, before: &Person, after: &mut Person, now: Millis) -> CoreResult<bool> {
    if before.data_equals(after) {
        *after = before.clone();
        return Ok(false);
    }
    after.version = before.version + 1;
    after.updated_at = now;
    tx.update_person_from(before, after).await?;
    Ok(true)
}

/// Writes the caller's `lastSeenAt` if stale (people.md §2.7); part of a successful request.
pub async fn touch_caller(tx: &mut dyn Tx, caller: &Installation, now: Millis) -> CoreResult<()> {
    if last_seen_is_stale(caller, now) {
        // Lock the person (a no-op when the operation already holds it), then re-read: the
        // operation, or a concurrent request, may have changed the caller meanwhile.
        lock_person(tx, caller.account_id, caller.person_id).await?;
        if let Some(stored) = tx.installation(&caller.push_reg_id).await? {
            let mut current = stored.clone();
            current.last_seen_at = now;
            tx.update_installation_from(&stored, &current).await?;
        }
    }
    Ok(())
}

/// The user JSON of `person` with its installations in `app`, the caller's with its token.
pub async fn user_json(tx: &mut dyn Tx, app: &Application, person: &Person, caller: &str) -> CoreResult<UserJson> {
    let instances = tx
        .installations_of_person(app.account_id, person.id, Some(app.id))
        .await?;
    Ok(UserJson::of(person, &instances, caller))
}

/// JWT subject rule for GET / PATCH user (mobile-api.md §2.2).
fn check_subject(auth: &Auth, person: &Person) -> CoreResult<()> {
    if let Auth::Jwt { subject } = auth
        && person.external_user_id.as_deref() != Some(subject.as_str())
    {
        return Err(CoreError::api(
            ErrorCode::JwtInvalid,
            "The token's subject is not the externalUserId of this installation's user",
        ));
    }
    Ok(())
}

/// Loads the caller's person; a missing one is a broken invariant, reported as a store error.
pub async fn person_of(tx: &mut dyn Tx, inst: &Installation) -> CoreResult<Person> {
    tx.person(inst.account_id, inst.person_id).await?.ok_or_else(|| {
        CoreError::Store(roster_store::StoreError::Other(format!(
            "installation {} has no person",
            inst.push_reg_id
        )))
    })
}

impl Core {
    /// `GET /mobile/1/appinstance/{id}/user` (mobile-api.md §5.6).
    pub async fn get_user(&self, app: &Application, auth: &Auth, addressing: Addressing<'_>) -> CoreResult<UserJson> {
        let now = now_millis();
        let (json, caller) = in_read_tx!(self, |tx| async {
            let r = resolve(tx, app, addressing, false).await?;
            let person = person_of(tx, &r.caller).await?;
            check_subject(auth, &person)?;
            let json = user_json(tx, app, &person, &r.caller.push_reg_id).await?;
            Ok::<_, CoreError>((json, r.caller))
        })?;
        self.refresh_last_seen(&caller, now).await?;
        Ok(json)
    }

    /// Rewrites a caller's stale `lastSeenAt` after a successful read-only request.
    pub async fn refresh_last_seen(&self, caller: &Installation, now: Millis) -> CoreResult<()> {
        if !last_seen_is_stale(caller, now) {
            return Ok(());
        }
        in_write_tx!(self, |tx| async { touch_caller(tx, caller, now).await })
    }

    /// `PATCH /mobile/1/appinstance/{id}/user` (mobile-api.md §5.7, people.md §6.1).
    pub async fn patch_user(
        &self,
        app: &Application,
        auth: &Auth,
        addressing: Addressing<'_>,
        patch: &UserPatch,
    ) -> CoreResult<UserJson> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            // Step 6: caller and target.
            let r = resolve_for_write(tx, app, addressing, false).await?;
            let before = person_of(tx, &r.caller).await?;
            // Step 7: JWT subject rules and restrictUserDataFromSdk.
            check_subject(auth, &before)?;
            if let Auth::Jwt { subject } = auth {
                let renames = match &patch.external_user_id {
                    Patch::Absent => false,
                    Patch::Null => true,
                    Patch::Value(v) => v != subject,
                };
                if renames {
                    return Err(CoreError::api(
                        ErrorCode::UserDataRestricted,
                        "externalUserId may not differ from the token's subject",
                    ));
                }
            }
            if app.restrict_user_data_from_sdk {
                return Err(CoreError::api(
                    ErrorCode::UserDataRestricted,
                    "User data changes from the SDK are disabled",
                ));
            }
            // Step 8: field validation, in table order; custom attributes last.
            let fields = validate_user_fields(patch, "")?;
            let mut after = before.clone();
            apply_user_fields(&mut after, &fields);
            apply_attribute_patch(
                tx,
                app.account_id,
                AttributeScope::Person,
                self.settings().max_attribute_definitions,
                &mut after.custom_attributes,
                &patch.custom_attributes,
                "customAttributes",
                now,
            )
            .await?;
            // Step 9: identity keys must be free.
            ensure_new_keys_free(tx, &before, &after).await?;
            save_person(tx, &before, &mut after, now).await?;
            touch_caller(tx, &r.caller, now).await?;
            user_json(tx, app, &after, &r.caller.push_reg_id).await
        })
    }
}
