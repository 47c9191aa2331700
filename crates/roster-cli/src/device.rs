//! `roster device --state DIR ...`: act as one installation of one application against a running
//! server, through the client SDK (client-sdk.md). The state directory holds the client's own
//! files plus `device.json` (the server URL and the application code), so that every command
//! after `register` needs only `--state`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use roster_client::{
    Config, CustomValue, FieldChange, Installation, PendingState, PersonalizeOptions, PushRegistration,
    PushServiceType, RosterClient, SaveOutcome, SuccessPending, User, UserChanges, UserIdentity, UserType,
};
use roster_model::wire::{EmailJson, InstallationJson, PhoneJson, UserJson};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    cli::{DeviceArgs, DeviceCommand},
    output,
};

/// What `register` remembers next to the client's files.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceFile {
    server: String,
    application_code: String,
}

const DEVICE_FILE: &str = "device.json";

/// Runs one `roster device` command.
pub async fn run(args: DeviceArgs) -> anyhow::Result<()> {
    let state = args.state;
    if let DeviceCommand::Register {
        server,
        app_code,
        push_token,
        push_type,
        json,
    } = args.command
    {
        return register(&state, server, app_code, push_token, push_type, json).await;
    }
    let client = open(&state, None).await?;
    let result = command(&client, args.command).await;
    client.shutdown().await;
    result
}

async fn open(state: &Path, push: Option<PushRegistration>) -> anyhow::Result<RosterClient> {
    let path = state.join(DEVICE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}; run `roster device --state {} register` first",
            path.display(),
            state.display()
        )
    })?;
    let device: DeviceFile = serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))?;
    start(state, &device, push).await
}

async fn start(state: &Path, device: &DeviceFile, push: Option<PushRegistration>) -> anyhow::Result<RosterClient> {
    let base_url = device
        .server
        .parse()
        .with_context(|| format!("invalid server URL {:?}", device.server))?;
    let client = RosterClient::start(Config {
        application_code: device.application_code.clone(),
        base_url,
        storage_dir: PathBuf::from(state),
        push,
        ..Config::default()
    })
    .await?;
    Ok(client)
}

async fn register(
    state: &Path,
    server: String,
    app_code: String,
    push_token: Option<String>,
    push_type: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let push = match (push_token, push_type) {
        (Some(token), Some(kind)) => {
            let service_type = PushServiceType::parse(&kind)
                .with_context(|| format!("unknown push type {kind:?} (APNS, Firebase or HMS)"))?;
            Some(PushRegistration { service_type, token })
        }
        _ => None,
    };
    std::fs::create_dir_all(state).with_context(|| format!("cannot create {}", state.display()))?;
    let device = DeviceFile {
        server,
        application_code: app_code,
    };
    let client = start(state, &device, push).await?;
    let synced = client.sync_now().await;
    let installation = client.installation();
    client.shutdown().await;
    synced.context("registration failed")?;
    if installation.push_reg_id.is_none() {
        bail!("the server did not register the installation");
    }
    std::fs::write(state.join(DEVICE_FILE), serde_json::to_string_pretty(&device)? + "\n")
        .with_context(|| format!("cannot write {}", state.join(DEVICE_FILE).display()))?;
    if json {
        output::json(&installation_json(&installation))
    } else {
        output::line(format!(
            "registered installation {}\n{}",
            installation.push_reg_id.as_deref().unwrap_or("-"),
            installation_fields(&installation)
        ))
    }
}

async fn command(client: &RosterClient, command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Register { .. } => unreachable!("handled before the client starts"),
        DeviceCommand::Personalize {
            external_user_id,
            phones,
            emails,
            force,
            keep_as_lead,
            primary,
            json,
        } => {
            if external_user_id.is_none() && phones.is_empty() && emails.is_empty() {
                bail!("personalize needs --external-user-id, --phone or --email");
            }
            let identity = UserIdentity {
                external_user_id,
                phones,
                emails,
            };
            let options = PersonalizeOptions {
                force_depersonalize: force,
                keep_as_lead,
                set_device_as_primary: primary,
            };
            let user = client.personalize(identity, None, options).await?;
            print_user(&user, json)
        }
        DeviceCommand::Show { json } => print_both(&client.installation(), &client.user(), &client.pending(), json),
        DeviceCommand::Fetch { json } => {
            let installation = client.fetch_installation().await?;
            let user = client.fetch_user().await?;
            print_both(&installation, &user, &client.pending(), json)
        }
        DeviceCommand::Depersonalize { json } => {
            let status = match client.depersonalize().await? {
                SuccessPending::Success => "Success",
                SuccessPending::Pending => "Pending",
            };
            if json {
                output::json(&json!({ "status": status }))
            } else {
                output::line(format!("depersonalize: {status}"))
            }
        }
        DeviceCommand::Sync { json } => {
            let result = client.sync_now().await;
            let pending = match &result {
                Ok(pending) => pending.clone(),
                Err(_) => client.pending(),
            };
            if json {
                output::json(&pending_json(&pending))?;
            } else {
                output::line(pending_text(&pending))?;
            }
            result.map(|_| ()).context("the sync pass stopped")
        }
        DeviceCommand::SetUser {
            first_name,
            last_name,
            tags,
            attrs,
            json,
        } => {
            let mut changes = UserChanges::new();
            if let Some(v) = first_name {
                changes.first_name = FieldChange::Set(v);
            }
            if let Some(v) = last_name {
                changes.last_name = FieldChange::Set(v);
            }
            if !tags.is_empty() {
                changes.tags = FieldChange::Set(tags.into_iter().collect());
            }
            for attr in attrs {
                let (name, raw) = attr
                    .split_once('=')
                    .with_context(|| format!("--attr {attr:?}: expected NAME=JSON"))?;
                let value: Value =
                    serde_json::from_str(raw).with_context(|| format!("--attr {name}: the value is not JSON"))?;
                if value.is_null() {
                    changes.delete_custom_attribute(name);
                } else {
                    let value = CustomValue::from_json(&value)
                        .with_context(|| format!("--attr {name}: not a custom attribute value"))?;
                    changes.set_custom_attribute(name, value);
                }
            }
            match client.save_user(changes).await? {
                SaveOutcome::Reported(user) => print_user(&user, json),
                SaveOutcome::Queued(why) => print_queued(&why, json),
            }
        }
        DeviceCommand::Installations { json } => {
            let user = client.fetch_user().await?;
            if json {
                let items: Vec<Value> = user.installations.iter().map(installation_json).collect();
                output::json(&json!({ "items": items }))
            } else {
                let own = client.installation().push_reg_id;
                let rows: Vec<Vec<String>> = user
                    .installations
                    .iter()
                    .map(|i| {
                        let id = i.push_reg_id.clone().unwrap_or_default();
                        vec![
                            if own.as_deref() == Some(id.as_str()) {
                                "*".into()
                            } else {
                                String::new()
                            },
                            id,
                            output::yes_no(i.is_primary),
                            output::yes_no(i.reg_enabled),
                            opt(&i.os),
                            opt(&i.device_model),
                        ]
                    })
                    .collect();
                output::line(output::table(
                    &["", "PUSHREGID", "PRIMARY", "ENABLED", "OS", "MODEL"],
                    &rows,
                ))
            }
        }
        DeviceCommand::SetPrimary {
            push_reg_id,
            not_primary,
            json,
        } => match client.set_installation_as_primary(&push_reg_id, !not_primary).await? {
            SaveOutcome::Reported(()) => {
                if json {
                    output::json(&json!({ "status": "Reported" }))
                } else {
                    output::line(format!(
                        "{push_reg_id} is {}primary",
                        if not_primary { "not " } else { "" }
                    ))
                }
            }
            SaveOutcome::Queued(why) => print_queued(&why, json),
        },
        DeviceCommand::Logout { push_reg_id, json } => {
            client.depersonalize_installation(&push_reg_id).await?;
            if json {
                output::json(&json!({ "status": "Success" }))
            } else {
                output::line(format!("logged out installation {push_reg_id}"))
            }
        }
    }
}

fn print_queued(why: &roster_client::RosterError, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(&json!({ "status": "Queued", "reason": why.to_string() }))
    } else {
        output::line(format!("kept for later: {why}"))
    }
}

fn print_user(user: &User, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(&user_json(user))
    } else {
        output::line(user_fields(user))
    }
}

/// The local views and what of them the server has not confirmed yet (`pending`), so that a
/// script can tell a reported value from a queued one.
fn print_both(installation: &Installation, user: &User, pending: &PendingState, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(&json!({
            "installation": installation_json(installation),
            "user": user_json(user),
            "pending": pending_json(pending),
        }))
    } else {
        let pending = if pending.is_empty() {
            "  nothing".to_string()
        } else {
            pending_text(pending)
        };
        output::line(format!(
            "installation\n{}\nuser\n{}\npending\n{pending}",
            installation_fields(installation),
            user_fields(user)
        ))
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn attrs_json(attrs: &std::collections::BTreeMap<String, CustomValue>) -> std::collections::BTreeMap<String, Value> {
    attrs
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.to_json()?)))
        .collect()
}

/// The mobile wire JSON (`InstallationJson`) of the client's view; `pushRegId` is left out while
/// the installation is not registered.
fn installation_json(i: &Installation) -> Value {
    let wire = InstallationJson {
        push_reg_id: i.push_reg_id.clone().unwrap_or_default(),
        push_service_type: i.push_service_type.map(|t| t.as_str().to_string()),
        push_service_token: i.push_service_token.clone(),
        reg_enabled: i.reg_enabled,
        is_primary: i.is_primary,
        notifications_enabled: i.notifications_enabled,
        application_user_id: i.application_user_id.clone(),
        custom_attributes: attrs_json(&i.custom_attributes),
        sdk_version: i.sdk_version.clone(),
        app_version: i.app_version.clone(),
        os: i.os.clone(),
        os_version: i.os_version.clone(),
        device_manufacturer: i.device_manufacturer.clone(),
        device_model: i.device_model.clone(),
        device_name: i.device_name.clone(),
        device_secure: i.device_secure,
        language: i.language.clone(),
        device_timezone_offset: i.device_timezone_offset.clone(),
        inappchat: i.inappchat,
        inbox: i.inbox,
        webrtcui: i.webrtcui,
    };
    let mut value = serde_json::to_value(wire).unwrap_or(Value::Null);
    if i.push_reg_id.is_none()
        && let Some(obj) = value.as_object_mut()
    {
        obj.remove("pushRegId");
    }
    value
}

/// The mobile wire JSON (`UserJson`) of the client's view; `instances` only when known.
fn user_json(u: &User) -> Value {
    let date = time::macros::format_description!("[year]-[month]-[day]");
    let wire = UserJson {
        external_user_id: u.external_user_id.clone(),
        first_name: u.first_name.clone(),
        middle_name: u.middle_name.clone(),
        last_name: u.last_name.clone(),
        gender: u.gender.map(|g| g.as_str().to_string()),
        birthday: u.birthday.and_then(|d| d.format(date).ok()),
        phones: u.phones.iter().map(|n| PhoneJson { number: n.clone() }).collect(),
        emails: u.emails.iter().map(|a| EmailJson { address: a.clone() }).collect(),
        tags: u.tags.iter().cloned().collect(),
        custom_attributes: attrs_json(&u.custom_attributes),
        user_type: u.user_type.map(|t| {
            match t {
                UserType::Lead => "LEAD",
                UserType::Customer => "CUSTOMER",
            }
            .to_string()
        }),
        instances: (!u.installations.is_empty()).then(|| {
            u.installations
                .iter()
                .filter_map(|i| serde_json::from_value(installation_json(i)).ok())
                .collect()
        }),
    };
    serde_json::to_value(wire).unwrap_or(Value::Null)
}

fn installation_fields(i: &Installation) -> String {
    output::fields(&[
        ("pushRegId", opt(&i.push_reg_id)),
        (
            "pushServiceType",
            i.push_service_type.map_or("-".into(), |t| t.as_str().into()),
        ),
        ("regEnabled", output::yes_no(i.reg_enabled)),
        ("isPrimary", output::yes_no(i.is_primary)),
        ("os", opt(&i.os)),
        ("deviceModel", opt(&i.device_model)),
        ("sdkVersion", opt(&i.sdk_version)),
    ])
}

fn user_fields(u: &User) -> String {
    let join = |v: Vec<String>| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    let attrs = attrs_json(&u.custom_attributes)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    output::fields(&[
        ("externalUserId", opt(&u.external_user_id)),
        ("firstName", opt(&u.first_name)),
        ("lastName", opt(&u.last_name)),
        ("phones", join(u.phones.clone())),
        ("emails", join(u.emails.clone())),
        ("tags", join(u.tags.iter().cloned().collect())),
        ("customAttributes", join(attrs)),
        (
            "type",
            match u.user_type {
                Some(UserType::Lead) => "LEAD".into(),
                Some(UserType::Customer) => "CUSTOMER".into(),
                None => "-".into(),
            },
        ),
        ("installations", u.installations.len().to_string()),
    ])
}

fn pending_json(p: &PendingState) -> Value {
    json!({
        "userFields": p.user_fields,
        "installationFields": p.installation_fields,
        "depersonalizePending": p.depersonalize_pending,
        "registrationPending": p.registration_pending,
    })
}

fn pending_text(p: &PendingState) -> String {
    if p.is_empty() {
        return "nothing pending".into();
    }
    let join = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    output::fields(&[
        ("user fields", join(&p.user_fields)),
        ("installation fields", join(&p.installation_fields)),
        ("depersonalize", output::yes_no(p.depersonalize_pending)),
        ("registration", output::yes_no(p.registration_pending)),
    ])
}
