//! `roster segment ...`: saved segments and their preview through a running server's management
//! API (management-api.md §7.6, filters §4), with an API key of scope `people:write` to create or
//! delete and `people:read` to list and preview. Readable output, or the API's JSON with `--json`.

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand};
use serde_json::{Value, json};

use crate::{
    api::{Api, ServerArgs, json_arg},
    output,
};

/// `roster segment ...`.
#[derive(Debug, Subcommand)]
pub enum SegmentCommand {
    /// Save a segment: a name and a filter.
    Create {
        /// 1–100 characters, unique in the account.
        #[arg(long)]
        name: String,
        /// The filter (management-api.md §4) as JSON, e.g. '{"tags":"vip","installation.os":"iOS"}'.
        #[arg(long, value_name = "JSON")]
        filter: String,
        /// Up to 1000 characters.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        /// Print the segment resource as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the saved segments, by name.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the segments as one JSON list page.
        #[arg(long)]
        json: bool,
    },
    /// Exact counts of who a segment or a filter reaches, and a sample of people.
    #[command(group(ArgGroup::new("audience").required(true).multiple(true)))]
    Preview {
        /// A saved segment id.
        #[arg(long, value_name = "ID", group = "audience")]
        segment: Option<String>,
        /// A filter as JSON (with --segment too: both must match).
        #[arg(long, value_name = "JSON", group = "audience")]
        filter: Option<String>,
        /// Only this application's installations (id or application code) [default: all].
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        /// Count as a send with targetOnlyPrimaryDevices would.
        #[arg(long)]
        primary_only: bool,
        /// How many people to show (0–100).
        #[arg(long, default_value_t = 10)]
        sample: u32,
        #[command(flatten)]
        server: ServerArgs,
        /// Print the preview as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete a saved segment (messages already accepted are unaffected).
    Delete {
        /// The segment id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Runs a `segment` subcommand.
pub async fn run(command: SegmentCommand) -> anyhow::Result<()> {
    match command {
        SegmentCommand::Create {
            name,
            filter,
            description,
            server,
            json,
        } => {
            let mut body = json!({"name": name, "filter": json_arg("--filter", &filter)?});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let segment = Api::new(&server)?.json("POST", "/api/v1/segments", Some(&body)).await?;
            if json {
                return output::json(&segment);
            }
            output::line(format!(
                "Created segment {:?}: {}",
                segment["name"].as_str().unwrap_or_default(),
                segment["id"].as_str().unwrap_or_default()
            ))
        }
        SegmentCommand::List { server, json } => {
            let api = Api::new(&server)?;
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = match &cursor {
                    None => api.get_query("/api/v1/segments", &[("limit", "500")]).await?,
                    Some(c) => {
                        api.get_query("/api/v1/segments", &[("limit", "500"), ("cursor", c)])
                            .await?
                    }
                };
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["nextCursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break,
                }
            }
            if json {
                return output::json(&json!({"items": items, "nextCursor": null}));
            }
            if items.is_empty() {
                return output::line("No segments.");
            }
            for s in &items {
                let valid = if s["valid"].as_bool() == Some(false) {
                    "  (invalid)"
                } else {
                    ""
                };
                output::line(format!(
                    "{}  {}{valid}\n    {}",
                    s["id"].as_str().unwrap_or_default(),
                    s["name"].as_str().unwrap_or_default(),
                    s["filter"]
                ))?;
            }
            Ok(())
        }
        SegmentCommand::Preview {
            segment,
            filter,
            app,
            primary_only,
            sample,
            server,
            json,
        } => {
            if sample > 100 {
                bail!("--sample is 0 to 100");
            }
            let mut body = json!({"targetOnlyPrimaryDevices": primary_only, "sampleSize": sample});
            if let Some(id) = segment {
                body["segmentId"] = json!(id);
            }
            if let Some(f) = filter {
                body["filter"] = json_arg("--filter", &f)?;
            }
            if let Some(app) = app {
                body["applicationCode"] = json!(app);
            }
            let preview = Api::new(&server)?
                .json("POST", "/api/v1/segments/preview", Some(&body))
                .await?;
            if json {
                return output::json(&preview);
            }
            print_preview(&preview)
        }
        SegmentCommand::Delete { id, server } => {
            let id =
                uuid::Uuid::parse_str(id.trim()).with_context(|| format!("{id:?} is not a segment id (a UUID)"))?;
            Api::new(&server)?
                .call("DELETE", &format!("/api/v1/segments/{id}"), None)
                .await?;
            output::line(format!("Deleted segment {id}."))
        }
    }
}

fn print_preview(p: &Value) -> anyhow::Result<()> {
    let n = |k: &str| p[k].as_u64().unwrap_or(0).to_string();
    output::line(output::fields(&[
        ("people", n("people")),
        ("installations", n("installations")),
        ("deliverable installations", n("deliverableInstallations")),
    ]))?;
    let sample = p["sample"].as_array().cloned().unwrap_or_default();
    if !sample.is_empty() {
        output::line("sample:")?;
        for person in sample {
            let name = [&person["externalUserId"], &person["firstName"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let installations = person["installations"].as_array().map_or(0, Vec::len);
            output::line(format!(
                "  {}  {}  {name}  ({installations} installation(s))",
                person["personId"].as_str().unwrap_or_default(),
                person["type"].as_str().unwrap_or_default(),
            ))?;
        }
    }
    Ok(())
}
