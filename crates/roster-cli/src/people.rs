//! `roster people ...`: find, show, export and erase people through a running server's
//! management API (management-api.md §7.4, §8), with an API key of scope `people:read`
//! (`people:write` to erase). Readable output, or the API's JSON with `--json`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand};
use roster_model::resources::{EraseReport, InstallationResource, PersonResource};
use serde_json::Value;

use crate::{
    api::{Api, ServerArgs},
    output,
};

/// `roster people ...`.
#[derive(Debug, Subcommand)]
pub enum PeopleCommand {
    /// Find the person owning an identity key or an installation.
    #[command(group(ArgGroup::new("key").required(true).multiple(false)))]
    Find {
        /// The externalUserId, compared exactly.
        #[arg(long, value_name = "X", group = "key")]
        external_user_id: Option<String>,
        /// A phone number, in any format people.md §3.2 accepts (+385 91 123 4567).
        #[arg(long, value_name = "P", group = "key")]
        phone: Option<String>,
        /// An email address, compared case-insensitively.
        #[arg(long, value_name = "E", group = "key")]
        email: Option<String>,
        /// The pushRegId of one of the person's installations.
        #[arg(long, value_name = "ID", group = "key")]
        push_reg_id: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        /// Print the person resource as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show a person with its installations in every application.
    Show {
        /// The person id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Print the person resource as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write everything the server holds about a person (GDPR export, push tokens included).
    Export {
        /// The person id.
        id: String,
        /// Write to this file (created readable by its owner only) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Erase a person (GDPR): the person, its installations in every application, its data in
    /// the merge log. Cannot be undone.
    Erase {
        /// The person id.
        id: String,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
        /// Print the erase report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `people` subcommand.
pub async fn run(command: PeopleCommand) -> anyhow::Result<()> {
    match command {
        PeopleCommand::Find {
            external_user_id,
            phone,
            email,
            push_reg_id,
            server,
            json,
        } => {
            let (name, value) = match (external_user_id, phone, email, push_reg_id) {
                (Some(v), ..) => ("externalUserId", v),
                (_, Some(v), ..) => ("phone", v),
                (_, _, Some(v), _) => ("email", v),
                (_, _, _, Some(v)) => ("pushRegId", v),
                // clap's group makes one of them required.
                _ => bail!("give one of --external-user-id, --phone, --email, --push-reg-id"),
            };
            let api = Api::new(&server)?;
            let person = api
                .get_query("/api/v1/people/lookup", &[(name, value.as_str())])
                .await?;
            print_person(&person, json)
        }
        PeopleCommand::Show { id, server, json } => {
            let api = Api::new(&server)?;
            let person = api.get(&format!("/api/v1/people/{}", person_id(&id)?)).await?;
            print_person(&person, json)
        }
        PeopleCommand::Export { id, out, server } => {
            let api = Api::new(&server)?;
            let bytes = api
                .call("GET", &format!("/api/v1/people/{}/export", person_id(&id)?), None)
                .await?;
            match out {
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&bytes)?;
                    stdout.write_all(b"\n")?;
                    stdout.flush()?;
                    Ok(())
                }
                Some(path) => {
                    write_private(&path, &bytes)?;
                    let doc: Value = serde_json::from_slice(&bytes).context("the export is not JSON")?;
                    let count = |k: &str| doc[k].as_array().map_or(0, Vec::len);
                    eprintln!(
                        "Exported person {id} to {}: {} installations, {} deliveries, {} merge-log entries.",
                        path.display(),
                        count("installations"),
                        count("deliveries"),
                        count("merges"),
                    );
                    Ok(())
                }
            }
        }
        PeopleCommand::Erase { id, yes, server, json } => {
            let api = Api::new(&server)?;
            let path = format!("/api/v1/people/{}", person_id(&id)?);
            if !yes {
                // Show who is about to go, so that a wrong id is noticed before it is too late.
                let person: PersonResource = serde_json::from_value(api.get(&path).await?)?;
                confirm_erase(&person)?;
            }
            let report: EraseReport = serde_json::from_value(api.json("DELETE", &path, None).await?)?;
            if json {
                return output::json(&report);
            }
            output::line(format!("Erased person {} at {}.", report.person_id, report.erased_at))?;
            output::line(output::fields(&[
                ("installations deleted", report.installations_deleted.to_string()),
                ("deliveries anonymised", report.deliveries_anonymised.to_string()),
                ("merge entries redacted", report.merge_entries_redacted.to_string()),
            ]))
        }
    }
}

/// Asks on the terminal; anything but `yes` aborts. Without a terminal, `--yes` is required.
fn confirm_erase(person: &PersonResource) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to erase without --yes: stdin is not a terminal to confirm on");
    }
    let who = person
        .external_user_id
        .as_deref()
        .map(|e| format!(" (externalUserId {e})"))
        .unwrap_or_default();
    let installations = person.installations.as_ref().map_or(0, Vec::len);
    eprint!(
        "Erase person {}{who} and its {installations} installation(s) in every application? \
         This cannot be undone. Type yes to erase: ",
        person.id
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("not erased");
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory (owner-only
/// permissions, as tempfile creates them), renamed into place when complete.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".roster-export")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    temp.write_all(bytes)?;
    temp.write_all(b"\n")?;
    temp.as_file().sync_all()?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A person id as typed: it must be a UUID (so that nothing typed can change the request path).
fn person_id(id: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(id.trim()).with_context(|| format!("{id:?} is not a person id (a UUID)"))
}

/// Prints a person resource (the server's JSON) as JSON or readable text.
fn print_person(person: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(person);
    }
    let p: PersonResource = serde_json::from_value(person.clone()).context("unexpected person resource")?;
    output::line(format!("Person {}  {}  version {}", p.id, p.person_type, p.version))?;
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &p.external_user_id {
        rows.push(("externalUserId", v.clone()));
    }
    let name: Vec<&str> = [&p.first_name, &p.middle_name, &p.last_name]
        .into_iter()
        .filter_map(|n| n.as_deref())
        .collect();
    if !name.is_empty() {
        rows.push(("name", name.join(" ")));
    }
    if let Some(v) = &p.gender {
        rows.push(("gender", v.clone()));
    }
    if let Some(v) = &p.birthday {
        rows.push(("birthday", v.clone()));
    }
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    rows.push(("phones", list(p.phones.iter().map(|x| x.number.clone()).collect())));
    rows.push(("emails", list(p.emails.iter().map(|x| x.address.clone()).collect())));
    rows.push(("tags", list(p.tags.clone())));
    for (k, v) in &p.custom_attributes {
        rows.push(("attribute", format!("{k} = {v}")));
    }
    rows.push(("created", p.created_at.clone()));
    rows.push(("updated", p.updated_at.clone()));
    output::line(output::fields(&rows))?;
    let installations: &[InstallationResource] = p.installations.as_deref().unwrap_or_default();
    if installations.is_empty() {
        return output::line("No installations.");
    }
    output::line(format!("Installations ({}):", installations.len()))?;
    let rows: Vec<Vec<String>> = installations
        .iter()
        .map(|i| {
            vec![
                i.push_reg_id.clone(),
                i.application_code.chars().take(12).collect::<String>() + "…",
                i.push_service_type.clone().unwrap_or_else(|| "-".into()),
                i.push_service_token_suffix
                    .as_ref()
                    .map(|s| format!("…{s}"))
                    .unwrap_or_else(|| "-".into()),
                output::yes_no(i.is_primary),
                output::yes_no(i.deliverable),
                [i.os.as_deref(), i.os_version.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
                i.last_seen_at.clone(),
            ]
        })
        .collect();
    output::line(output::table(
        &[
            "PUSH REG ID",
            "APP",
            "TYPE",
            "TOKEN",
            "PRIMARY",
            "DELIVERABLE",
            "OS",
            "LAST SEEN",
        ],
        &rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_and_ids_are_uuids() {
        use crate::api::query_value;
        assert_eq!(query_value("a.b-c_d~e"), "a.b-c_d~e");
        assert_eq!(query_value("x&y=1#"), "x%26y%3D1%23");
        assert_eq!(query_value("+385 91"), "%2B385%2091");
        assert_eq!(query_value("ž"), "%C5%BE");
        assert!(person_id("9A8B7C6D-5E4F-4A3B-8C2D-1E0F9A8B7C6D").is_ok());
        assert!(person_id("../x").is_err());
    }
}
