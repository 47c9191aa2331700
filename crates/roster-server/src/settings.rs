//! One typed `Settings`: defaults in code < `roster.toml` < `ROSTER_*` environment < CLI flags
//! (design.md, Configuration). Dotted setting names map to TOML tables and to environment
//! variables with `__` between segments (`mobile.max_body_bytes` =
//! `ROSTER_MOBILE__MAX_BODY_BYTES`).

use std::path::{Path, PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Every setting of the server.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded SQLite store lives when no `database_url` is given.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; empty: SQLite under `data_dir`.
    pub database_url: String,
    pub http: HttpSettings,
    pub mobile: MobileSettings,
    pub limits: LimitSettings,
    pub audience: AudienceSettings,
    pub log: LogSettings,
    pub management: ManagementSettings,
    pub delivery: DeliverySettings,
    pub retention: RetentionSettings,
    pub merge_log: MergeLogSettings,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on.
    pub listen: String,
    /// Public base path every route is served under (e.g. `/roster`); empty for `/`.
    pub base_path: String,
}

/// `[mobile]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MobileSettings {
    /// Request body limit in bytes (mobile-api.md §1.5).
    pub max_body_bytes: usize,
    /// `libraryVersion` of `/mobile/3/version`.
    pub latest_sdk_version: String,
    /// `updateUrl` of `/mobile/3/version`.
    pub sdk_update_url: String,
    pub rate: MobileRateSettings,
}

/// `[mobile.rate]` (mobile-api.md §1.7); 0 disables a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MobileRateSettings {
    /// Requests per second addressing one installation (the path's pushRegId).
    pub per_installation_rps: f64,
    pub per_installation_burst: f64,
    /// Creations (and re-creations) per second from one client IP.
    pub create_per_ip_rps: f64,
    pub create_per_ip_burst: f64,
    /// Requests per second of one application, whole user base together (off by default,
    /// docs/decisions.md).
    pub per_application_rps: f64,
    pub per_application_burst: f64,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Attribute definitions per account and scope (people.md §8.2).
    pub attribute_definitions: u64,
}

/// `[audience]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudienceSettings {
    /// `roster serve` on SQLite answers segment previews from an in-memory index of every
    /// person (built in the background at start); off, previews run as SQL.
    pub memory_index: bool,
}

impl Default for AudienceSettings {
    fn default() -> Self {
        AudienceSettings { memory_index: true }
    }
}

/// `[management]` (management-api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementSettings {
    /// How long answers of requests with an `Idempotency-Key` are kept (§3.3).
    pub idempotency_ttl_hours: u64,
    pub rate: ManagementRateSettings,
}

/// `[management.rate]` (management-api.md §3.1): a token bucket per API key; 0 disables it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementRateSettings {
    /// Requests per second of one API key, sustained.
    pub rps: f64,
    /// Requests one API key may make at once after a pause.
    pub burst: f64,
}

/// `[delivery]`: the push delivery workers of this process (management-api.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Run the workers in this process (audience resolution and provider calls).
    pub enabled: bool,
    /// Provider calls in flight at once in this process; up to twice as many records are
    /// claimed at once (the next batch is claimed while calls are in flight).
    ///
    /// 256 by default, and 128 for `per_application`: the calls are streams multiplexed on
    /// one HTTP/2 connection per provider client, and a send's rate is at most the calls in
    /// flight divided by the provider's answer time (Little's law), so the defaults are sized
    /// for a provider's round trip rather than for the CPU. Measured with `roster-bench
    /// fanout` (docs/benchmarks.md): 64 and 32, the earlier defaults, bounded a fan-out even
    /// through loopback stand-ins (SQLite +20%, PostgreSQL +16% at 256 and 128).
    pub workers: usize,
    /// Provider calls in flight at once per application and provider: one application cannot
    /// take every call of the process.
    pub per_application: usize,
    /// How often idle workers look for new work, in milliseconds (a send accepted by this
    /// process wakes them at once).
    pub poll_interval_ms: u64,
    /// Installations per audience-resolution chunk (one transaction each).
    pub chunk_size: u32,
    /// How long a claimed delivery stays with its worker before another may take it (a worker
    /// that died is replaced after this), in seconds. Longer than one provider call (30 s).
    pub lease_seconds: u64,
}

/// `[retention]`: how long push records are kept (management-api.md §6.7) and how often this
/// process sweeps. 0 days keeps those rows forever; 0 seconds runs no sweeper in this process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Delivery records are purged this many days after their last change (never while `QUEUED`).
    pub deliveries_days: u64,
    /// Messages are purged this many days after they were sent, once none of their delivery
    /// records remain.
    pub messages_days: u64,
    /// Seconds between two sweeps of this process (the first one shortly after start).
    pub sweep_interval_seconds: u64,
}

/// `[merge_log]` (people.md §9.2). 0 days keeps them forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeLogSettings {
    /// The snapshots of a merge are purged this many days after it (the merge can no longer be
    /// reversed; the entry stays).
    pub image_retention_days: u64,
    /// Entries are deleted this many days after the merge.
    pub entry_retention_days: u64,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info,roster_server=debug`.
    pub filter: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./roster-data"),
            database_url: String::new(),
            http: HttpSettings::default(),
            mobile: MobileSettings::default(),
            limits: LimitSettings::default(),
            audience: AudienceSettings::default(),
            log: LogSettings::default(),
            management: ManagementSettings::default(),
            delivery: DeliverySettings::default(),
            retention: RetentionSettings::default(),
            merge_log: MergeLogSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            base_path: String::new(),
        }
    }
}

impl Default for MobileSettings {
    fn default() -> Self {
        MobileSettings {
            max_body_bytes: 2_097_152,
            latest_sdk_version: "0.0.0".into(),
            sdk_update_url: String::new(),
            rate: MobileRateSettings::default(),
        }
    }
}

impl Default for MobileRateSettings {
    fn default() -> Self {
        MobileRateSettings {
            per_installation_rps: 5.0,
            per_installation_burst: 30.0,
            create_per_ip_rps: 10.0,
            create_per_ip_burst: 100.0,
            per_application_rps: 0.0,
            per_application_burst: 0.0,
        }
    }
}

impl MobileRateSettings {
    /// Every limit off (tests, benchmarks).
    pub fn disabled() -> Self {
        MobileRateSettings {
            per_installation_rps: 0.0,
            per_installation_burst: 0.0,
            create_per_ip_rps: 0.0,
            create_per_ip_burst: 0.0,
            per_application_rps: 0.0,
            per_application_burst: 0.0,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            attribute_definitions: 500,
        }
    }
}

impl Default for ManagementSettings {
    fn default() -> Self {
        ManagementSettings {
            idempotency_ttl_hours: 24,
            rate: ManagementRateSettings::default(),
        }
    }
}

impl Default for ManagementRateSettings {
    fn default() -> Self {
        ManagementRateSettings {
            rps: 50.0,
            burst: 200.0,
        }
    }
}

impl ManagementRateSettings {
    /// The limit off (tests that make many management calls quickly, benchmarks).
    pub fn disabled() -> Self {
        ManagementRateSettings { rps: 0.0, burst: 0.0 }
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            enabled: true,
            workers: 256,
            per_application: 128,
            poll_interval_ms: 1000,
            chunk_size: 1000,
            lease_seconds: 120,
        }
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            deliveries_days: 30,
            messages_days: 90,
            sweep_interval_seconds: 3600,
        }
    }
}

impl Default for MergeLogSettings {
    fn default() -> Self {
        MergeLogSettings {
            image_retention_days: 90,
            entry_retention_days: 365,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}

impl std::fmt::Debug for Settings {
    // The database URL may carry a password: redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("http", &self.http)
            .field("mobile", &self.mobile)
            .field("limits", &self.limits)
            .field("audience", &self.audience)
            .field("log", &self.log)
            .field("management", &self.management)
            .field("delivery", &self.delivery)
            .field("retention", &self.retention)
            .field("merge_log", &self.merge_log)
            .finish()
    }
}

/// A URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Environment variables starting with `ROSTER_` that no setting reads (lldap-style warning):
/// a typo otherwise silently does nothing.
pub fn unknown_env_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("ROSTER_"))
        .filter(|k| !IGNORED_ENV.contains(&k.as_str()))
        .filter(|k| !is_setting(&k["ROSTER_".len()..]))
        .collect()
}

/// Whether `KEY` (after `ROSTER_`, segments joined by `__`) names a setting.
fn is_setting(key: &str) -> bool {
    static KNOWN: std::sync::LazyLock<Figment> =
        std::sync::LazyLock::new(|| Figment::from(Serialized::defaults(Settings::default())));
    KNOWN.find_value(&key.to_ascii_lowercase().replace("__", ".")).is_ok()
}

/// `ROSTER_*` variables that are not settings (the CLI's own, the test suite's).
const IGNORED_ENV: &[&str] = &["ROSTER_CONFIG", "ROSTER_TEST_POSTGRES_URL", "ROSTER_LOG"];

impl Settings {
    /// Loads defaults < the TOML file (if it exists) < `ROSTER_*` environment.
    /// Unknown `ROSTER_*` variables are skipped here (see [`unknown_env_vars`] to warn about
    /// them); unknown keys in the file are an error.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            fig = fig.merge(Toml::file_exact(path));
        } else if Path::new("roster.toml").exists() {
            fig = fig.merge(Toml::file_exact("roster.toml"));
        }
        fig = fig.merge(Env::prefixed("ROSTER_").filter(|k| is_setting(k.as_str())).split("__"));
        fig.extract().map_err(Box::new)
    }

    /// The store URL: `database_url`, or the SQLite file under `data_dir`.
    pub fn store_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("roster.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// The normalised base path: empty, or `/segment...` without a trailing slash.
    pub fn base_path(&self) -> String {
        let trimmed = self.http.base_path.trim_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        }
    }
}

/// The commented example file printed by `roster config example`.
pub const EXAMPLE: &str = r#"# roster.toml — every setting with its default. Each can also be set in the environment:
# ROSTER_<TABLE>__<KEY>, e.g. ROSTER_MOBILE__MAX_BODY_BYTES=1048576, and most by a CLI flag.

# Where the embedded SQLite store lives (roster.db inside it).
data_dir = "./roster-data"
# Use another store instead: "sqlite:///var/lib/roster/roster.db" or "postgres://user@host/db".
database_url = ""

[http]
# Address and port to listen on.
listen = "127.0.0.1:8080"
# Serve every route under this path (clients then use https://host/roster as base URL).
base_path = ""

[mobile]
# Largest accepted request body, in bytes (larger: 413 REQUEST_TOO_LARGE).
max_body_bytes = 2097152
# What GET /mobile/3/version answers as libraryVersion and updateUrl.
latest_sdk_version = "0.0.0"
sdk_update_url = ""

[mobile.rate]
# Token buckets (requests/second sustained, burst); 0 disables the limit. Over a limit the
# answer is 429 TOO_MANY_REQUESTS with Retry-After. Buckets live in each server process: with
# several processes the effective limit is that many times the setting.
# Per installation (the pushRegId in the path of /mobile/1/appinstance/{pushRegId}...).
per_installation_rps = 5.0
per_installation_burst = 30.0
# Registrations (and re-creations of a known id) per client IP address.
create_per_ip_rps = 10.0
create_per_ip_burst = 100.0
# Per application: every request with "App <code>" of one application, and every JWT request
# of it, share one bucket. Off by default; size it from the application's whole user base
# (e.g. devices x syncs per device per second x a safety factor).
per_application_rps = 0.0
per_application_burst = 0.0

[limits]
# Custom attribute definitions per account and scope.
attribute_definitions = 500

[audience]
# With SQLite, `roster serve` answers segment previews from an in-memory index of every person
# (built in the background at start, about 1 KB of memory per person); false: they run as SQL.
memory_index = true

[management]
# How long the answer of a request with an Idempotency-Key is kept for replays, in hours.
idempotency_ttl_hours = 24

[management.rate]
# A token bucket per API key (requests/second sustained, burst); 0 disables it. Over the limit
# the answer is 429 TOO_MANY_REQUESTS with Retry-After, before the request is read or acted on.
# Buckets live in each server process, like the mobile limits.
rps = 50.0
burst = 200.0

[delivery]
# Run the push delivery workers in this process (audience resolution and provider calls). With
# several processes on one PostgreSQL, any number of them may deliver.
enabled = true
# Provider calls in flight at once in this process, and per application and provider (up to
# twice `workers` records are claimed at once: the next batch while calls are in flight). A
# send's rate is at most the calls in flight divided by the provider's answer time.
workers = 256
per_application = 128
# How often idle workers look for new work, in milliseconds (a send accepted by this process
# wakes them at once).
poll_interval_ms = 1000
# Installations per audience-resolution chunk of a MULTIPLE destination (one transaction each).
chunk_size = 1000
# Seconds a claimed delivery stays with its worker; a worker that died is replaced after this.
lease_seconds = 120

[retention]
# Delivery records are purged this many days after their last change (never while QUEUED), and
# messages this many days after they were sent once none of their records remain; 0 keeps them.
# Expired Idempotency-Key records are purged by the same sweep.
deliveries_days = 30
messages_days = 90
# Seconds between two sweeps of this process; 0 runs no sweeper here. Several processes may
# sweep the same store at once.
sweep_interval_seconds = 3600

[merge_log]
# Days after a merge when its snapshots are purged (it can then no longer be reversed; the
# entry stays), and when the entry itself is deleted; 0 keeps them.
image_retention_days = 90
entry_retention_days = 365

[log]
# "text" or "json".
format = "text"
# A tracing filter; RUST_LOG overrides it.
filter = "info"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_to_the_defaults() {
        let parsed: Settings = Figment::from(Toml::string(EXAMPLE)).extract().unwrap();
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    // figment's Jail closure must return figment's (large) error type.
    #[allow(clippy::result_large_err)]
    fn file_then_env_precedence() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "r.toml",
                "[http]\nlisten = \"0.0.0.0:1\"\n[mobile]\nmax_body_bytes = 10\n",
            )?;
            jail.set_env("ROSTER_MOBILE__MAX_BODY_BYTES", "20");
            let s = Settings::load(Some(Path::new("r.toml"))).map_err(|e| *e)?;
            assert_eq!(s.http.listen, "0.0.0.0:1");
            assert_eq!(s.mobile.max_body_bytes, 20);
            jail.set_env("ROSTER_MOBILE__NOPE", "1");
            assert_eq!(unknown_env_vars(), vec!["ROSTER_MOBILE__NOPE".to_string()]);
            let s = Settings::load(Some(Path::new("r.toml"))).map_err(|e| *e)?;
            assert_eq!(
                s.mobile.max_body_bytes, 20,
                "an unknown variable is skipped, not an error"
            );
            Ok(())
        });
    }

    #[test]
    fn database_url_password_is_redacted() {
        let s = Settings {
            database_url: "postgres://u:secret@h/db".into(),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("secret") && shown.contains("u:***@h/db"), "{shown}");
    }
}
