//! The command line of `roster` (clap derive). Scripts rely on these names and on the JSON that
//! `--json` prints, so both are a contract: change them only on purpose.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

/// Roster: a self-hosted backend for the Infobip Mobile Messaging SDKs.
#[derive(Debug, Parser)]
#[command(name = "roster", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (mobile API) on the configured store.
    Serve(ServeArgs),
    /// Open the store, apply pending migrations, and report it.
    Migrate(StoreArgs),
    /// Manage applications and their JWT keys, directly on the store.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Manage management-API keys, directly on the store.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Write every row of the store (people, installations, definitions, merge log, applications,
    /// keys) to a versioned JSON-lines dump, for `roster import`.
    Export(ExportArgs),
    /// Load a dump written by `roster export` into an empty store, in one transaction: all of it
    /// or, on any error, nothing.
    Import(ImportArgs),
    /// Copy every row of one store into another, empty one (SQLite <-> PostgreSQL), in one
    /// transaction on the target, without an intermediate file.
    MigrateStore(MigrateStoreArgs),
    /// Act as one device (an installation) against a running server, with the client SDK.
    Device(DeviceArgs),
    /// Find, show, export (GDPR) and erase people through a running server's management API.
    People {
        #[command(subcommand)]
        command: crate::people::PeopleCommand,
    },
    /// Send a push through a running server's management API and follow its delivery.
    Push {
        #[command(subcommand)]
        command: crate::push::PushCommand,
    },
    /// Saved segments and audience previews through a running server's management API.
    Segment {
        #[command(subcommand)]
        command: crate::segment::SegmentCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// Where the store is: shared by every subcommand that touches it, so that `serve`, `app` and
/// `apikey` always agree on the store for the same flags. Precedence: defaults < the config file
/// < `ROSTER_*` environment < these flags.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Configuration file [default: ./roster.toml when it exists].
    #[arg(long, env = "ROSTER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use the embedded SQLite store in this directory (roster.db inside it); overrides any
    /// configured database URL [default: ./roster-data].
    #[arg(long, value_name = "DIR", conflicts_with = "database_url")]
    pub data_dir: Option<PathBuf>,
    /// Use the store at this URL, e.g. sqlite:///var/lib/roster/roster.db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// The store and the account a management command acts in.
#[derive(Debug, Clone, Args)]
pub struct Target {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Act in this existing account instead of the store's default account.
    #[arg(long, value_name = "ID")]
    pub account: Option<Uuid>,
}

/// `roster serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on, e.g. 0.0.0.0:8080; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// `roster export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The store to export (--database-url, --data-dir or the configured store).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where to write the dump: a file (created readable by its owner only: the dump holds
    /// secrets), or - for stdout.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    pub out: PathBuf,
    /// No progress bars (they are drawn on stderr only when it is a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Print a summary {"sourceBackend","file","counts":{...},"elapsedMs"} (needs --out FILE).
    #[arg(long)]
    pub json: bool,
}

/// `roster import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The dump written by `roster export`, or - for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// The empty store to load it into (--database-url, --data-dir or the configured store).
    #[command(flatten)]
    pub store: StoreArgs,
    /// No progress bars (they are drawn on stderr only when it is a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Print a summary {"sourceBackend","targetBackend","file","counts":{...},"elapsedMs"}.
    #[arg(long)]
    pub json: bool,
}

/// `roster migrate-store`.
#[derive(Debug, Args)]
pub struct MigrateStoreArgs {
    /// The store to copy from, e.g. sqlite:///var/lib/roster/roster.db (it is only read).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The empty store to copy into, e.g. postgres://roster@db/roster.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// No progress bars (they are drawn on stderr only when it is a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Print a summary {"sourceBackend","targetBackend","counts":{...},"elapsedMs"}.
    #[arg(long)]
    pub json: bool,
}

/// `roster app ...`.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an application; its application code is generated.
    Create {
        /// Display name, 1 to 100 characters.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        target: Target,
        /// Print the application resource as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the applications of the account.
    List {
        #[command(flatten)]
        target: Target,
        /// Print {"items":[...],"nextCursor":null}.
        #[arg(long)]
        json: bool,
    },
    /// Show one application.
    Show {
        /// Application id or application code.
        app: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Change the security settings of an application.
    Set {
        /// Application id or application code.
        app: String,
        /// Require a JWT on the user-data endpoints (mobile-api.md §2.3).
        #[arg(long, value_name = "true|false")]
        require_jwt: Option<bool>,
        /// Refuse user data sent by the SDK (mobile-api.md §2.3).
        #[arg(long, value_name = "true|false")]
        restrict_user_data: Option<bool>,
        /// A disabled application's code is refused by the mobile API.
        #[arg(long, value_name = "true|false")]
        enabled: Option<bool>,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Manage the JWT keys that sign user-data tokens (mobile-api.md §2.2).
    JwtKey {
        #[command(subcommand)]
        command: JwtKeyCommand,
    },
}

/// `roster app jwt-key ...`.
#[derive(Debug, Subcommand)]
pub enum JwtKeyCommand {
    /// Create a key; its secret is printed only this once.
    Create {
        /// Application id or application code.
        app: String,
        /// Key id, 1 to 64 of A-Z a-z 0-9 . _ - [default: generated].
        #[arg(long)]
        kid: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print {"kid","secret","createdAt"}.
        #[arg(long)]
        json: bool,
    },
    /// List the keys (without secrets).
    List {
        /// Application id or application code.
        app: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Delete a key; tokens signed with it are refused from then on.
    Delete {
        /// Application id or application code.
        app: String,
        /// The key id.
        kid: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `roster apikey ...`.
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key; the key is printed only this once.
    Create {
        /// Name for display, 1 to 100 characters [default: generated].
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated scopes: people:read, people:write, push:send, admin.
        #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// Expiry, RFC 3339 (e.g. 2026-01-01T00:00:00Z); must be in the future.
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print {"id","name","scopes","keyPrefix","key","createdAt","expiresAt"?}.
        #[arg(long)]
        json: bool,
    },
    /// List the API keys of the account (without the keys themselves).
    List {
        #[command(flatten)]
        target: Target,
        /// Print {"items":[...],"nextCursor":null}.
        #[arg(long)]
        json: bool,
    },
}

/// Store flags of a command that names its stores otherwise.
static NO_STORE_FLAGS: StoreArgs = StoreArgs {
    config: None,
    data_dir: None,
    database_url: None,
};

impl Command {
    /// The store flags of the command; `None` for commands that touch no store.
    pub fn store_args(&self) -> Option<&StoreArgs> {
        match self {
            Command::Serve(args) => Some(&args.store),
            Command::Migrate(store) => Some(store),
            Command::App { command } => Some(&command.target().store),
            Command::Apikey { command } => Some(&command.target().store),
            Command::Export(args) => Some(&args.store),
            Command::Import(args) => Some(&args.store),
            // Both stores are named by flags; the defaults (config file, environment) still set
            // up logging.
            Command::MigrateStore(_) => Some(&NO_STORE_FLAGS),
            Command::Config { .. }
            | Command::Device(_)
            | Command::People { .. }
            | Command::Push { .. }
            | Command::Segment { .. } => None,
        }
    }
}

impl AppCommand {
    /// The store and account the command acts on.
    pub fn target(&self) -> &Target {
        match self {
            AppCommand::Create { target, .. }
            | AppCommand::List { target, .. }
            | AppCommand::Show { target, .. }
            | AppCommand::Set { target, .. } => target,
            AppCommand::JwtKey { command } => match command {
                JwtKeyCommand::Create { target, .. }
                | JwtKeyCommand::List { target, .. }
                | JwtKeyCommand::Delete { target, .. } => target,
            },
        }
    }
}

impl ApikeyCommand {
    /// The store and account the command acts on.
    pub fn target(&self) -> &Target {
        match self {
            ApikeyCommand::Create { target, .. } | ApikeyCommand::List { target, .. } => target,
        }
    }
}

/// `roster device --state DIR ...`.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The device's state directory: the client's files plus device.json (server and app code).
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// `roster device ... <COMMAND>`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register the installation and remember the server and application code.
    Register {
        /// Base URL of the server, e.g. http://127.0.0.1:8080.
        #[arg(long, value_name = "URL")]
        server: String,
        /// The application code.
        #[arg(long, value_name = "CODE")]
        app_code: String,
        /// A push token (with --push-type).
        #[arg(long, value_name = "T", requires = "push_type")]
        push_token: Option<String>,
        /// APNS, Firebase or HMS.
        #[arg(long, value_name = "TYPE", requires = "push_token")]
        push_type: Option<String>,
        /// Print the installation JSON.
        #[arg(long)]
        json: bool,
    },
    /// Log a user in on this installation; prints the user.
    Personalize {
        #[arg(long, value_name = "X")]
        external_user_id: Option<String>,
        #[arg(long = "phone", value_name = "P")]
        phones: Vec<String>,
        #[arg(long = "email", value_name = "E")]
        emails: Vec<String>,
        /// Log the installation out of another user first.
        #[arg(long)]
        force: bool,
        /// Keep the user a LEAD.
        #[arg(long)]
        keep_as_lead: bool,
        /// Make this installation the user's primary one.
        #[arg(long)]
        primary: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the local view: {"installation": ..., "user": ...}.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Read the installation and the user from the server; prints like `show`.
    Fetch {
        #[arg(long)]
        json: bool,
    },
    /// Log the user out on this installation; prints {"status":"Success"|"Pending"}.
    Depersonalize {
        #[arg(long)]
        json: bool,
    },
    /// Send whatever is pending now; prints what is still pending.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// Change the user (a delta save).
    SetUser {
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        /// Replace the tags with these (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Set a custom attribute, VALUE as JSON (e.g. tier=\"gold\", n=3); `null` deletes.
        #[arg(long = "attr", value_name = "NAME=JSON")]
        attrs: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the user's installations (from the server).
    Installations {
        #[arg(long)]
        json: bool,
    },
    /// Make an installation of the user primary (or not, with --false).
    SetPrimary {
        push_reg_id: String,
        #[arg(long = "false")]
        not_primary: bool,
        #[arg(long)]
        json: bool,
    },
    /// Log the user out on another of their installations.
    Logout {
        push_reg_id: String,
        #[arg(long)]
        json: bool,
    },
}

/// `roster config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented roster.toml with every setting and its default.
    Example,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
