//! `roster push send`: sends one push through a running server's management API
//! (`POST /push/3/messages`, management-api.md §5) with an API key of scope `push:send`, then
//! follows the message (`GET /api/v1/messages/{id}`, §6.7) until it is done, with a progress bar
//! on stderr (when it is a terminal) and the final counts per delivery status.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::{
    api::{Api, ServerArgs},
    output,
};

/// The delivery statuses in the order of management-api.md §6.2.
const STATUSES: [&str; 6] = ["QUEUED", "ACCEPTED", "REJECTED", "UNREGISTERED", "EXPIRED", "FAILED"];

/// `roster push ...`.
#[derive(Debug, Subcommand)]
pub enum PushCommand {
    /// Send a push to one destination and follow its delivery until it is done.
    Send(SendArgs),
}

/// `roster push send`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("destination").required(true).multiple(false)))]
pub struct SendArgs {
    /// The server and a management API key with the scope push:send.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The sending application (id or application code) [default: the account's only
    /// application, found with an admin key].
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// The person owning this externalUserId.
    #[arg(long, value_name = "X", group = "destination")]
    pub external_user_id: Option<String>,
    /// The person owning this phone number (any format people.md §3.2 accepts).
    #[arg(long, value_name = "P", group = "destination")]
    pub phone: Option<String>,
    /// The person owning this email address (compared case-insensitively).
    #[arg(long, value_name = "E", group = "destination")]
    pub email: Option<String>,
    /// One installation.
    #[arg(long, value_name = "ID", group = "destination")]
    pub push_reg_id: Option<String>,
    /// Everyone in a saved segment.
    #[arg(long, value_name = "ID", group = "destination")]
    pub segment: Option<String>,
    /// Everyone matching a filter (management-api.md §4), as JSON: '{"tags":"vip"}'; '{}' is
    /// every installation of the application.
    #[arg(long, value_name = "JSON", group = "destination")]
    pub filter: Option<String>,
    /// Only the persons' primary installations.
    #[arg(long)]
    pub primary_only: bool,
    /// Notification title.
    #[arg(long, value_name = "T")]
    pub title: Option<String>,
    /// Notification text.
    #[arg(long, value_name = "T")]
    pub text: String,
    /// Custom payload delivered to the app as is, a JSON object: '{"deeplink":"acme://x"}'.
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// Stop following after this many seconds (the delivery goes on in the server).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Print the final message resource (GET /api/v1/messages/{id}) as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `roster push ...`.
pub async fn run(command: PushCommand) -> anyhow::Result<()> {
    match command {
        PushCommand::Send(args) => send(args).await,
    }
}

/// The destination of §5.2 the flags name.
fn destination(args: &SendArgs) -> anyhow::Result<Value> {
    let mut d = if let Some(x) = &args.external_user_id {
        json!({"type": "EXTERNAL_USER_ID", "externalUserId": x})
    } else if let Some(p) = &args.phone {
        json!({"type": "PHONE_NUMBER", "phoneNumber": p})
    } else if let Some(e) = &args.email {
        json!({"type": "EMAIL", "email": e})
    } else if let Some(id) = &args.push_reg_id {
        json!({"type": "REGISTRATION", "pushRegistrationId": id})
    } else if let Some(id) = &args.segment {
        json!({"type": "MULTIPLE", "segmentId": id})
    } else if let Some(filter) = &args.filter {
        let filter: Value = serde_json::from_str(filter).context("--filter is not JSON")?;
        if !filter.is_object() {
            bail!("--filter must be a JSON object");
        }
        json!({"type": "MULTIPLE", "filter": filter})
    } else {
        bail!("name a destination: --external-user-id, --phone, --email, --push-reg-id, --segment or --filter");
    };
    if args.primary_only {
        d["targetOnlyPrimaryDevices"] = json!(true);
    }
    Ok(d)
}

/// The sender: `--app`, else the account's only application (listing needs an admin key).
async fn sender(api: &Api, app: Option<&str>) -> anyhow::Result<String> {
    if let Some(app) = app {
        return Ok(app.to_owned());
    }
    let apps = api
        .get("/api/v1/applications?limit=2")
        .await
        .context("name the sending application with --app (finding it needs an admin key)")?;
    match apps["items"].as_array().map(Vec::as_slice) {
        Some([only]) => only["applicationCode"]
            .as_str()
            .map(str::to_owned)
            .context("the application has no code"),
        Some([]) => bail!("the account has no application"),
        _ => bail!("the account has several applications: name one with --app"),
    }
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    let destination = destination(&args)?;
    let mut content = json!({"type": "TEXT", "text": args.text});
    if let Some(title) = &args.title {
        content["title"] = json!(title);
    }
    let mut message = json!({
        "sender": sender(&api, args.app.as_deref()).await?,
        "destinations": [destination],
        "content": content,
    });
    if let Some(payload) = &args.payload {
        let payload: Value = serde_json::from_str(payload).context("--payload is not JSON")?;
        if !payload.is_object() {
            bail!("--payload must be a JSON object");
        }
        message["options"] = json!({"customPayload": payload});
    }
    let answer = api
        .json("POST", "/push/3/messages", Some(&json!({"messages": [message]})))
        .await?;
    let element = &answer["messages"][0];
    let message_id = element["messageId"]
        .as_str()
        .context("the answer names no message")?
        .to_owned();
    let submission = element["status"]["name"].as_str().unwrap_or("?").to_owned();
    if !args.json {
        output::line(format!(
            "bulk {}, message {message_id}: {submission}",
            answer["bulkId"].as_str().unwrap_or("?")
        ))?;
    }
    let path = format!("/api/v1/messages/{message_id}");
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let last = loop {
        let m = api.get(&path).await?;
        let total = m["audience"]["installations"].as_u64().unwrap_or(0);
        let queued = m["deliveries"]["QUEUED"].as_u64().unwrap_or(0);
        bar.set_length(total);
        bar.set_position(total.saturating_sub(queued));
        bar.set_message(match m["audience"]["state"].as_str() {
            Some("RESOLVING") => "resolving audience, delivering",
            _ => "delivering",
        });
        if m["done"] == true {
            break m;
        }
        if started.elapsed() >= Duration::from_secs(args.timeout) {
            bar.abandon();
            bail!(
                "message {message_id} is not done after {} s (the server goes on delivering; \
                 follow it with GET {path})",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    if args.json {
        output::json(&last)?;
    } else {
        let rows: Vec<(&str, String)> = STATUSES
            .iter()
            .map(|s| (*s, last["deliveries"][s].as_u64().unwrap_or(0).to_string()))
            .collect();
        output::line(format!(
            "done: {} installation(s)\n{}",
            last["audience"]["installations"],
            output::fields(&rows)
        ))?;
    }
    if submission.starts_with("REJECTED") {
        bail!("message {message_id} was rejected: {submission}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        push: PushCommand,
    }

    fn parse(args: &[&str]) -> Result<SendArgs, clap::Error> {
        let mut all = vec![
            "roster",
            "send",
            "--server",
            "http://x",
            "--api-key",
            "k",
            "--text",
            "hi",
        ];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| match c.push {
            PushCommand::Send(a) => a,
        })
    }

    #[test]
    fn destinations_from_flags() {
        let d = |args: &[&str]| destination(&parse(args).unwrap()).unwrap();
        assert_eq!(
            d(&["--external-user-id", "c1", "--primary-only"]),
            json!({"type": "EXTERNAL_USER_ID", "externalUserId": "c1", "targetOnlyPrimaryDevices": true})
        );
        assert_eq!(
            d(&["--phone", "+385 91"]),
            json!({"type": "PHONE_NUMBER", "phoneNumber": "+385 91"})
        );
        assert_eq!(d(&["--email", "a@b.c"]), json!({"type": "EMAIL", "email": "a@b.c"}));
        assert_eq!(
            d(&["--push-reg-id", "x"]),
            json!({"type": "REGISTRATION", "pushRegistrationId": "x"})
        );
        assert_eq!(d(&["--segment", "s"]), json!({"type": "MULTIPLE", "segmentId": "s"}));
        assert_eq!(
            d(&["--filter", r#"{"tags":"vip"}"#]),
            json!({"type": "MULTIPLE", "filter": {"tags": "vip"}})
        );
        assert!(destination(&parse(&["--filter", "[1]"]).unwrap()).is_err());
        // Exactly one destination.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--phone", "1", "--email", "a@b.c"]).is_err());
    }
}
