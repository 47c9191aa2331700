//! `roster apikey ...`: management-API keys, directly on the store (management-api.md §1.1,
//! §7.2). The key is printed once; Roster keeps only its hash and prefix.

use anyhow::Context;
use roster_model::{Millis, now_millis};
use roster_server::Settings;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    cli::ApikeyCommand,
    config::open_account,
    core_error, output,
    resource::{ApiKeyResource, Page, timestamp},
};

/// Runs an `apikey` subcommand.
pub async fn run(command: ApikeyCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        ApikeyCommand::Create {
            name,
            scopes,
            expires_at,
            target,
            json,
        } => {
            let expires_at = expires_at.as_deref().map(parse_expiry).transpose()?;
            let scopes: Vec<String> = scopes
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let (core, account) = open_account(settings, target.account).await?;
            // management-api.md §1.1: without --name a name is generated.
            let name = name.unwrap_or_else(|| format!("cli {}", timestamp(now_millis())));
            let created = core
                .create_api_key(account.id, &name, &scopes, expires_at)
                .await
                .map_err(core_error)?;
            let resource = ApiKeyResource::created(&created.key, &created.secret);
            if json {
                return output::json(&resource);
            }
            output::line(format!(
                "Created API key {:?} ({}).",
                resource.name,
                resource.scopes.join(", ")
            ))?;
            let mut rows = vec![("id", resource.id.to_string()), ("key", created.secret.clone())];
            if let Some(expiry) = &resource.expires_at {
                rows.push(("expires", expiry.clone()));
            }
            output::line(output::fields(&rows))?;
            output::line(
                "\nThe key is shown only now: Roster keeps only its hash. Send it as \
                 `Authorization: Bearer <key>` (or `App <key>`).",
            )
        }
        ApikeyCommand::List { target, json } => {
            let (core, account) = open_account(settings, target.account).await?;
            let keys = core.list_api_keys(account.id).await.map_err(core_error)?;
            if json {
                return output::json(&Page::all(keys.iter().map(ApiKeyResource::from).collect()));
            }
            if keys.is_empty() {
                return output::line("No API keys. Create one with: roster apikey create --scopes admin");
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(ApiKeyResource::from)
                .map(|k| {
                    vec![
                        k.id.to_string(),
                        format!("{}…", k.key_prefix),
                        k.scopes.join(","),
                        k.created_at,
                        k.expires_at.unwrap_or_else(|| "-".into()),
                        k.last_used_at.unwrap_or_else(|| "-".into()),
                        k.name,
                    ]
                })
                .collect();
            output::line(output::table(
                &["ID", "PREFIX", "SCOPES", "CREATED", "EXPIRES", "LAST USED", "NAME"],
                &rows,
            ))
        }
    }
}

/// `--expires-at`: an RFC 3339 time (the core refuses one that is not in the future,
/// management-api.md §7.2).
fn parse_expiry(text: &str) -> anyhow::Result<Millis> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .with_context(|| format!("--expires-at {text:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z"))?;
    Millis::try_from(at.unix_timestamp_nanos() / 1_000_000).context("--expires-at is out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_an_rfc3339_time() {
        // That it must be in the future is the core's rule (create_api_key), checked end to end
        // in tests/cli.rs.
        assert_eq!(parse_expiry("2999-01-01T00:00:00+01:00").unwrap(), 32_472_140_400_000);
        assert!(parse_expiry("tomorrow").is_err());
    }
}
