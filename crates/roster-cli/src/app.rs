//! `roster app ...`: applications and their JWT keys, directly on the store
//! (management-api.md §7.1). A running server sees every change at once, because it reads the
//! application on each request.

use anyhow::bail;
use roster_core::Core;
use roster_model::{Account, Application};
use roster_server::Settings;

use crate::{
    cli::{AppCommand, JwtKeyCommand, Target},
    config::open_account,
    core_error, output,
    resource::{ApplicationResource, JwtKeyCreated, JwtKeyItem, Page, timestamp},
};

/// Runs an `app` subcommand.
pub async fn run(command: AppCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        AppCommand::Create { name, target, json } => {
            let (core, account) = open_account(settings, target.account).await?;
            let app = core.create_application(account.id, &name).await.map_err(core_error)?;
            if json {
                return output::json(&ApplicationResource::from(&app));
            }
            output::line(format!("Created application {:?}.", app.name))?;
            output::line(describe(&app))?;
            output::line(
                "\nConfigure the mobile SDK with this application code and this server's URL \
                 (docs/official-sdks.md).",
            )
        }
        AppCommand::List { target, json } => {
            let (core, account) = open_account(settings, target.account).await?;
            let apps = core.list_applications(account.id).await.map_err(core_error)?;
            if json {
                return output::json(&Page::all(apps.iter().map(ApplicationResource::from).collect()));
            }
            if apps.is_empty() {
                return output::line("No applications yet. Create one with: roster app create --name NAME");
            }
            let rows: Vec<Vec<String>> = apps
                .iter()
                .map(|a| {
                    vec![
                        a.application_code.clone(),
                        a.id.to_string(),
                        output::yes_no(a.enabled),
                        a.name.clone(),
                    ]
                })
                .collect();
            output::line(output::table(&["APPLICATION CODE", "ID", "ENABLED", "NAME"], &rows))
        }
        AppCommand::Show { app, target, json } => {
            let (_, _, app) = open_app(settings, &target, &app).await?;
            show(&app, json)
        }
        AppCommand::Set {
            app,
            require_jwt,
            restrict_user_data,
            enabled,
            target,
            json,
        } => {
            if require_jwt.is_none() && restrict_user_data.is_none() && enabled.is_none() {
                bail!("nothing to change: give --require-jwt, --restrict-user-data or --enabled");
            }
            let (core, _, app) = open_app(settings, &target, &app).await?;
            let app = core
                .update_application_settings(&app, enabled, require_jwt, restrict_user_data)
                .await
                .map_err(core_error)?;
            show(&app, json)
        }
        AppCommand::JwtKey { command } => jwt_key(command, settings).await,
    }
}

/// Runs an `app jwt-key` subcommand.
async fn jwt_key(command: JwtKeyCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        JwtKeyCommand::Create { app, kid, target, json } => {
            let (core, _, app) = open_app(settings, &target, &app).await?;
            let created = core.create_jwt_key(&app, kid.as_deref()).await.map_err(core_error)?;
            if json {
                return output::json(&JwtKeyCreated::new(&created.key, &created.secret_base64));
            }
            output::line(format!(
                "Created JWT key {:?} for application {:?}.",
                created.key.kid, app.name
            ))?;
            output::line(output::fields(&[
                ("kid", created.key.kid.clone()),
                ("secret", created.secret_base64.clone()),
                ("created", timestamp(created.key.created_at)),
            ]))?;
            output::line(
                "\nThe secret (standard base64 of 32 bytes) is shown only now. Sign HS256 tokens with \
                 the decoded bytes and put the kid in the token header (mobile-api.md §2.2).",
            )
        }
        JwtKeyCommand::List { app, target, json } => {
            let (core, _, app) = open_app(settings, &target, &app).await?;
            let keys = core.list_jwt_keys(&app).await.map_err(core_error)?;
            if json {
                return output::json(&Page::all(keys.iter().map(JwtKeyItem::from).collect()));
            }
            if keys.is_empty() {
                return output::line(format!("Application {:?} has no JWT keys.", app.name));
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| vec![k.kid.clone(), timestamp(k.created_at)])
                .collect();
            output::line(output::table(&["KID", "CREATED"], &rows))
        }
        JwtKeyCommand::Delete { app, kid, target } => {
            let (core, _, app) = open_app(settings, &target, &app).await?;
            if !core.delete_jwt_key(&app, &kid).await.map_err(core_error)? {
                bail!("application {:?} has no JWT key {kid:?}", app.name);
            }
            output::line(format!(
                "Deleted JWT key {kid:?} of application {:?}; tokens signed with it are refused from now on.",
                app.name
            ))
        }
    }
}

/// The store, the account, and the application named by id or application code.
async fn open_app(settings: &Settings, target: &Target, app_ref: &str) -> anyhow::Result<(Core, Account, Application)> {
    let (core, account) = open_account(settings, target.account).await?;
    let app = core.find_application(account.id, app_ref).await.map_err(core_error)?;
    Ok((core, account, app))
}

/// Prints an application as JSON or text.
fn show(app: &Application, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(&ApplicationResource::from(app));
    }
    output::line(format!("Application {:?}", app.name))?;
    output::line(describe(app))
}

/// The fields of an application for people.
fn describe(app: &Application) -> String {
    let resource = ApplicationResource::from(app);
    let provider = |name: &str| {
        let view = &resource.providers[name];
        match (view["configured"].as_bool(), view["status"].as_str()) {
            (Some(true), Some("OK") | None) => format!("{name}: configured"),
            (Some(true), Some(status)) => format!("{name}: configured ({status})"),
            _ => format!("{name}: not configured"),
        }
    };
    output::fields(&[
        ("id", resource.id.to_string()),
        ("application code", resource.application_code),
        ("enabled", output::yes_no(resource.enabled)),
        (
            "require JWT for user data",
            output::yes_no(resource.require_jwt_for_user_data),
        ),
        (
            "restrict user data from SDK",
            output::yes_no(resource.restrict_user_data_from_sdk),
        ),
        (
            "providers",
            [provider("apns"), provider("fcm"), provider("hms")].join(", "),
        ),
        ("created", resource.created_at),
        ("updated", resource.updated_at),
    ])
}
