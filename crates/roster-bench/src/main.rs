//! `roster-bench`: Roster's load and data generator (see docs/benchmarks.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use roster_bench::parse::ParseTarget;
use roster_bench::scenarios::{self, AudienceOptions, Common, FanoutOptions, LoadOptions};
use roster_bench::target::{Backend, ServerMode, default_roster_bin};

/// Roster's benchmarks: each scenario starts the real server on a fresh store, generates its
/// data, measures, and prints its method and figures.
#[derive(Debug, Parser)]
#[command(name = "roster-bench", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Args)]
struct Global {
    /// The store backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: Backend,
    /// A PostgreSQL server (any database on it): the run creates a fresh database and drops it.
    #[arg(
        long,
        env = "ROSTER_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// The `roster` binary to run as the server [default: `roster` next to this binary].
    #[arg(long, value_name = "PATH")]
    roster_bin: Option<PathBuf>,
    /// Run the server inside this process instead of as a child (memory figures then include
    /// the load generator).
    #[arg(long)]
    in_process: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

impl Global {
    fn common(&self) -> Common {
        Common {
            backend: self.store,
            postgres_url: self.postgres_url.clone(),
            mode: if self.in_process {
                ServerMode::InProcess
            } else {
                ServerMode::Child(self.roster_bin.clone().unwrap_or_else(default_roster_bin))
            },
            progress: !self.quiet && !self.json,
        }
    }
}

#[derive(Debug, Clone, Args)]
struct Load {
    /// Connections in flight (each a simulated client sending its next request when the last
    /// one is answered).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

impl Load {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            concurrency: self.concurrency.max(1),
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
        }
    }
}

#[derive(Debug, Clone, Args)]
struct ParseArgs {
    /// Parse Server's REST base, e.g. http://127.0.0.1:1337/parse.
    #[arg(long)]
    parse_url: String,
    #[arg(long)]
    app_id: String,
    #[arg(long, default_value = "")]
    rest_key: String,
    #[arg(long, default_value = "")]
    master_key: String,
    /// The Parse process id, for its CPU and memory.
    #[arg(long)]
    parse_pid: Option<u32>,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

impl ParseArgs {
    fn target(&self) -> ParseTarget {
        ParseTarget {
            url: self.parse_url.clone(),
            app_id: self.app_id.clone(),
            rest_key: self.rest_key.clone(),
            master_key: self.master_key.clone(),
            pid: self.parse_pid,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Unique Android-style installation registrations over HTTP.
    Register {
        #[command(flatten)]
        global: Global,
        #[command(flatten)]
        load: Load,
    },
    /// Simulated devices: register once, then GET/PATCH installation, GET/PATCH user,
    /// personalize (some colliding), depersonalize.
    MobileMix {
        #[command(flatten)]
        global: Global,
        #[command(flatten)]
        load: Load,
        /// Simulated devices in all.
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
    },
    /// People with tags, typed attributes and 1-3 installations; exact-count previews and full
    /// resolution of five filters.
    Audience {
        #[command(flatten)]
        global: Global,
        /// People to generate (the figure is 1,000,000; its 10M option works too).
        #[arg(long, default_value_t = 1_000_000)]
        people: u64,
        /// Previews per filter.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Length of the external-id list of the fifth filter.
        #[arg(long, default_value_t = 10_000)]
        ext_ids: u64,
        /// Only previews: do not time full resolution by sending to each audience.
        #[arg(long)]
        no_send: bool,
    },
    /// The in-memory audience index alone, built from the audience data set in this process:
    /// exact counts of the five filters at sizes a seeded store takes hours to reach.
    AudienceIndex {
        /// People to generate.
        #[arg(long, default_value_t = 1_000_000)]
        people: u64,
        /// Counts per filter.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Length of the external-id list of the fifth filter.
        #[arg(long, default_value_t = 10_000)]
        ext_ids: u64,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// A broadcast to N installations through the loopback APNs and FCM stand-ins.
    Fanout {
        #[command(flatten)]
        global: Global,
        #[arg(long, default_value_t = 1_000_000)]
        installations: u64,
        /// Percent of installations on APNs (the rest on FCM).
        #[arg(long, default_value_t = 50)]
        apns_percent: u32,
        /// `delivery.workers` of the server (provider calls in flight).
        #[arg(long)]
        delivery_workers: Option<usize>,
        /// APNs through a TLS front with this certificate chain (PEM: leaf, then its CA), like
        /// Parse's path; the server trusts the CA in it through SSL_CERT_FILE.
        #[arg(long, requires = "apns_tls_key")]
        apns_tls_cert: Option<PathBuf>,
        /// The key of --apns-tls-cert (PEM).
        #[arg(long)]
        apns_tls_key: Option<PathBuf>,
    },
    /// Idle RSS, RSS with N people, bytes on disk per person.
    Footprint {
        #[command(flatten)]
        global: Global,
        #[arg(long, default_value_t = 1_000_000)]
        people: u64,
    },
    /// The APNs stand-in behind TLS, with GET /stats, for the Parse comparison (runs until
    /// killed).
    Standin {
        /// Where the TLS front listens.
        #[arg(long, default_value = "127.0.0.1:0")]
        tls_listen: String,
        /// Where GET /stats answers.
        #[arg(long, default_value = "127.0.0.1:0")]
        stats_listen: String,
        #[arg(long)]
        tls_cert: PathBuf,
        #[arg(long)]
        tls_key: PathBuf,
    },
    /// Installation creates against a running Parse Server.
    ParseRegister {
        #[command(flatten)]
        parse: ParseArgs,
        #[command(flatten)]
        load: Load,
    },
    /// A push through a running Parse Server into `roster-bench standin`.
    ParsePush {
        #[command(flatten)]
        parse: ParseArgs,
        /// The stand-in's stats URL.
        #[arg(long)]
        stats_url: String,
        /// Installations in the audience (the push is done when the stand-in answered this
        /// many requests).
        #[arg(long)]
        expect: u64,
        /// The channel of the audience.
        #[arg(long, default_value = "bulk")]
        channel: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (report, json) = match cli.scenario {
        Scenario::Register { global, load } => (
            scenarios::register(&global.common(), &load.options()).await?,
            global.json,
        ),
        Scenario::MobileMix { global, load, devices } => (
            scenarios::mobile_mix(&global.common(), &load.options(), devices).await?,
            global.json,
        ),
        Scenario::Audience {
            global,
            people,
            repeat,
            ext_ids,
            no_send,
        } => (
            scenarios::audience(
                &global.common(),
                &AudienceOptions {
                    people,
                    repeat,
                    ext_ids,
                    send: !no_send,
                },
            )
            .await?,
            global.json,
        ),
        Scenario::AudienceIndex {
            people,
            repeat,
            ext_ids,
            json,
            quiet,
        } => (
            roster_bench::index::audience_index(&roster_bench::index::IndexOptions {
                people,
                repeat,
                ext_ids,
                progress: !quiet && !json,
            })?,
            json,
        ),
        Scenario::Fanout {
            global,
            installations,
            apns_percent,
            delivery_workers,
            apns_tls_cert,
            apns_tls_key,
        } => (
            scenarios::fanout(
                &global.common(),
                &FanoutOptions {
                    installations,
                    apns_percent: apns_percent.min(100),
                    delivery_workers,
                    apns_tls: apns_tls_cert.zip(apns_tls_key),
                },
            )
            .await?,
            global.json,
        ),
        Scenario::Footprint { global, people } => (scenarios::footprint(&global.common(), people).await?, global.json),
        Scenario::Standin {
            tls_listen,
            stats_listen,
            tls_cert,
            tls_key,
        } => {
            roster_bench::standin::serve_standalone(&tls_listen, &stats_listen, &tls_cert, &tls_key).await?;
            return Ok(());
        }
        Scenario::ParseRegister { parse, load } => (
            roster_bench::parse::register(&parse.target(), &load.options(), !parse.quiet && !parse.json).await?,
            parse.json,
        ),
        Scenario::ParsePush {
            parse,
            stats_url,
            expect,
            channel,
        } => (
            roster_bench::parse::push(
                &parse.target(),
                &stats_url,
                expect,
                &channel,
                !parse.quiet && !parse.json,
            )
            .await?,
            parse.json,
        ),
    };
    report.print(json)
}
