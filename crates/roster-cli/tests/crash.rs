//! Crash safety: a write load against the real `roster serve`, SIGKILL at seeded-random moments
//! several times, a restart on the same store after each kill; after every kill the store (read
//! directly, with no server running) must hold every write that was answered `200`, exactly, and
//! satisfy the people.md §11 invariants. On SQLite (the same data dir every time) and on
//! PostgreSQL (one fresh database).
//!
//! The ledger is exact because each simulated device owns its data alone: its installation's
//! token (`crash-{k}-{attempt}`), a per-device counter written to `deviceName` and to
//! `customAttributes.seq`, the identity `crash-{k}` it personalizes as, and a counter in the
//! person attribute `useq` of that person. A device sends one request at a time, so at a kill it
//! has at most one request without an answer; the stored state must then be the state of its
//! acknowledged writes, or that state plus the unanswered request (which the server may have
//! committed without answering), nothing else. The check tells which, and the device continues
//! from there after the restart.
//!
//! The first start is killed too, a few milliseconds in, while it creates the schema (the
//! migration is one transaction, so the next start finds either nothing or all of it).
//!
//! Size: `ROSTER_TEST_CRASH_KILLS` kills (default 4) of loads lasting 0.6–1.8 s from
//! `ROSTER_TEST_CRASH_DEVICES` devices (default 24); `ROSTER_TEST_SEED` replays the choices.

mod support;

use std::{collections::BTreeMap, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use roster_store::Snapshot;
use serde_json::{Value, json};
use support::{
    load::{self, env_usize},
    process::{Server, StoreSpec, create_app, wait_for_sessions_to_end},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_acknowledged_write_on_sqlite() {
    crash_run(StoreSpec::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_acknowledged_write_on_postgres() {
    let Some(store) = StoreSpec::postgres().await else {
        return;
    };
    crash_run(store).await;
}

/// What a device has had acknowledged (and so must find in the store).
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    /// Its installation and the token it registered with.
    installation: Option<(String, String)>,
    /// `deviceName` = `c{k}-{name}`.
    name: u64,
    /// `customAttributes.seq` of the installation (cleared by a depersonalization).
    seq: Option<u64>,
    /// Whether the installation belongs to the person `crash-{k}`.
    personalized: bool,
    /// Whether the person `crash-{k}` exists (it is never deleted once personalized).
    person_exists: bool,
    /// `customAttributes.useq` of the person `crash-{k}`.
    user_seq: Option<u64>,
}

/// A write whose answer the device did not get.
#[derive(Debug, Clone)]
enum Write {
    Register { token: String, name: u64 },
    PatchInstallation { n: u64 },
    Personalize,
    PatchUser { n: u64 },
    Depersonalize,
}

/// What the store shows of a device's installation.
#[derive(Debug, PartialEq)]
struct ObservedInstallation {
    token: Option<String>,
    device_name: Option<String>,
    seq: Option<Value>,
    /// The `externalUserId` of the person owning it.
    owner: Option<String>,
}

/// What the store shows of one device's data (compared with [`Model::expected`]).
#[derive(Debug, PartialEq)]
struct Observed {
    installation: Option<ObservedInstallation>,
    /// The person `crash-{k}`: its `useq`.
    person: Option<Option<Value>>,
}

fn ext(k: usize) -> String {
    format!("crash-{k}")
}

fn name(k: usize, n: u64) -> String {
    format!("c{k}-{n}")
}

impl Model {
    /// The state after `write` too (for a register, `found` is the installation holding its
    /// token, if the store has it).
    fn after(&self, write: &Write, found: Option<String>) -> Model {
        let mut m = self.clone();
        match write {
            Write::Register { token, name } => {
                m = Model {
                    installation: found.map(|id| (id, token.clone())),
                    name: *name,
                    person_exists: self.person_exists,
                    user_seq: self.user_seq,
                    ..Model::default()
                };
            }
            Write::PatchInstallation { n } => {
                m.name = *n;
                m.seq = Some(*n);
            }
            Write::Personalize => {
                m.personalized = true;
                m.person_exists = true;
            }
            Write::PatchUser { n } => m.user_seq = Some(*n),
            Write::Depersonalize => {
                m.personalized = false;
                m.seq = None;
            }
        }
        m
    }

    fn expected(&self, k: usize) -> Observed {
        Observed {
            installation: self.installation.as_ref().map(|(_, token)| ObservedInstallation {
                token: Some(token.clone()),
                device_name: Some(name(k, self.name)),
                seq: self.seq.map(|n| json!(n)),
                owner: self.personalized.then(|| ext(k)),
            }),
            person: self.person_exists.then(|| self.user_seq.map(|n| json!(n))),
        }
    }
}

fn observe(s: &Snapshot, k: usize, installation: Option<&str>) -> Observed {
    let person = s
        .persons
        .iter()
        .find(|p| p.external_user_id.as_deref() == Some(&ext(k)));
    Observed {
        installation: installation.map(|id| match s.installations.iter().find(|i| i.push_reg_id == id) {
            None => ObservedInstallation {
                token: None,
                device_name: None,
                seq: None,
                owner: Some("<installation missing>".into()),
            },
            Some(i) => ObservedInstallation {
                token: i.push_service_token.clone(),
                device_name: i.system.device_name.clone(),
                seq: i.custom_attributes.get("seq").cloned(),
                owner: s
                    .persons
                    .iter()
                    .find(|p| p.id == i.person_id)
                    .map_or(Some("<person missing>".into()), |p| p.external_user_id.clone()),
            },
        }),
        person: person.map(|p| p.custom_attributes.get("useq").cloned()),
    }
}

/// One simulated device of the crash load.
struct CrashDevice {
    k: usize,
    rng: StdRng,
    model: Model,
    /// The write in flight when the server died, if any.
    unanswered: Option<Write>,
    counter: u64,
    attempts: u64,
    acknowledged: BTreeMap<&'static str, usize>,
    unavailable: usize,
    violations: Vec<String>,
}

/// Figures of the whole run.
#[derive(Default)]
struct Figures {
    acknowledged: BTreeMap<&'static str, usize>,
    kills: usize,
    unanswered: usize,
    committed_unanswered: usize,
    unavailable: usize,
    violations: Vec<String>,
}

impl CrashDevice {
    fn new(seed: u64, k: usize) -> CrashDevice {
        CrashDevice {
            k,
            rng: StdRng::seed_from_u64(seed.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(k as u64)),
            model: Model::default(),
            unanswered: None,
            counter: 0,
            attempts: 0,
            acknowledged: BTreeMap::new(),
            unavailable: 0,
            violations: Vec::new(),
        }
    }

    /// Sends writes (and reads that check earlier writes) until a request goes unanswered:
    /// the server was killed.
    async fn run(mut self, http: reqwest::Client, base: String, app_code: String) -> CrashDevice {
        let auth = format!("App {app_code}");
        loop {
            let (write, method, path, body) = self.next_request();
            let caller = self.model.installation.as_ref().map(|(id, _)| id.clone());
            let mut rb = http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{base}{path}"),
                )
                .header("authorization", &auth);
            if let Some(c) = &caller {
                rb = rb.header("pushregistrationid", c);
            }
            if let Some(b) = &body {
                rb = rb.header("content-type", "application/json").body(b.to_string());
            }
            let answered = match rb.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    r.bytes().await.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            let (status, bytes) = match answered {
                Ok(a) => a,
                Err(_) => {
                    // No answer: the write may or may not have been committed.
                    self.unanswered = write;
                    return self;
                }
            };
            let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            match status {
                200 => self.acknowledged(write, method, &reply),
                503 => self.unavailable += 1,
                _ => self
                    .violations
                    .push(format!("device {}: {method} {path}: {status} {reply}", self.k)),
            }
        }
    }

    /// The next request: `(the write it makes, method, path, body)`.
    fn next_request(&mut self) -> (Option<Write>, &'static str, String, Option<Value>) {
        let Some((id, _)) = self.model.installation.clone() else {
            self.attempts += 1;
            self.counter += 1;
            let token = format!("crash-{}-{}", self.k, self.attempts);
            let body = json!({"pushServiceType": "Firebase", "pushServiceToken": token, "os": "Android",
                "deviceName": name(self.k, self.counter), "regEnabled": true});
            let write = Write::Register {
                token,
                name: self.counter,
            };
            return (Some(write), "POST", "/mobile/1/appinstance".into(), Some(body));
        };
        let base = format!("/mobile/1/appinstance/{id}");
        let roll = self.rng.random_range(0..100);
        if roll < 10 {
            return (None, "GET", base, None);
        }
        if roll < 18 {
            return (None, "GET", format!("{base}/user"), None);
        }
        if roll < 55 {
            self.counter += 1;
            let n = self.counter;
            let body = json!({"deviceName": name(self.k, n), "customAttributes": {"seq": n}});
            return (Some(Write::PatchInstallation { n }), "PATCH", base, Some(body));
        }
        if !self.model.personalized {
            let flags = format!(
                "forceDepersonalize=false&keepAsLead={}&setDeviceAsPrimary={}",
                self.rng.random_bool(0.5),
                self.rng.random_bool(0.5)
            );
            let body = json!({"userIdentity": {"externalUserId": ext(self.k)}});
            return (
                Some(Write::Personalize),
                "POST",
                format!("{base}/personalize?{flags}"),
                Some(body),
            );
        }
        if roll < 85 {
            self.counter += 1;
            let n = self.counter;
            let body = json!({"firstName": format!("F{n}"), "customAttributes": {"useq": n}});
            return (
                Some(Write::PatchUser { n }),
                "PATCH",
                format!("{base}/user"),
                Some(body),
            );
        }
        (
            Some(Write::Depersonalize),
            "POST",
            format!("{base}/depersonalize"),
            None,
        )
    }

    /// A `200`: reads are checked against the model, writes enter it.
    fn acknowledged(&mut self, write: Option<Write>, method: &str, reply: &Value) {
        let k = self.k;
        let Some(write) = write else {
            // A read: it must show the acknowledged state, also right after a restart.
            let expected = self.model.expected(k);
            let ObservedInstallation { token, device_name, .. } =
                expected.installation.expect("reads need an installation");
            let wrong = if reply.get("instances").is_some() {
                reply.get("externalUserId").and_then(Value::as_str)
                    != self.model.personalized.then(|| ext(k)).as_deref()
                    || (self.model.personalized
                        && reply["customAttributes"].get("useq") != self.model.user_seq.map(|n| json!(n)).as_ref())
            } else {
                reply["pushServiceToken"].as_str() != token.as_deref()
                    || reply["deviceName"].as_str() != device_name.as_deref()
                    || reply["customAttributes"].get("seq") != self.model.seq.map(|n| json!(n)).as_ref()
            };
            if wrong {
                self.violations.push(format!(
                    "device {k}: {method} read {reply}, acknowledged {:?}",
                    self.model
                ));
            }
            return;
        };
        let label = match &write {
            Write::Register { .. } => "register",
            Write::PatchInstallation { .. } => "patch installation",
            Write::Personalize => "personalize",
            Write::PatchUser { .. } => "patch user",
            Write::Depersonalize => "depersonalize",
        };
        *self.acknowledged.entry(label).or_default() += 1;
        let found = reply["pushRegId"].as_str().map(str::to_string);
        self.model = self.model.after(&write, found);
    }

    /// Compares the store with the acknowledged writes (and the unanswered one); continues from
    /// the state found.
    fn verify(&mut self, s: &Snapshot, figures: &mut Figures) {
        let k = self.k;
        let acked_id = self.model.installation.as_ref().map(|(id, _)| id.clone());
        let acked = observe(s, k, acked_id.as_deref());
        let Some(write) = self.unanswered.take() else {
            if acked != self.model.expected(k) {
                figures.violations.push(format!(
                    "device {k}: store shows {acked:?}, acknowledged {:?}",
                    self.model.expected(k)
                ));
            }
            return;
        };
        figures.unanswered += 1;
        let found = match &write {
            Write::Register { token, .. } => s
                .installations
                .iter()
                .find(|i| i.push_service_token.as_deref() == Some(token))
                .map(|i| i.push_reg_id.clone()),
            _ => None,
        };
        let alternative = self.model.after(&write, found);
        let alt_id = alternative.installation.as_ref().map(|(id, _)| id.clone());
        let committed = observe(s, k, alt_id.as_deref());
        // A register that was not committed leaves nothing to find: the acknowledged state.
        let register_lost = matches!(write, Write::Register { .. }) && alternative.installation.is_none();
        if !register_lost && committed == alternative.expected(k) {
            figures.committed_unanswered += 1;
            self.model = alternative;
        } else if acked != self.model.expected(k) {
            figures.violations.push(format!(
                "device {k}: store shows {acked:?} / {committed:?}; acknowledged {:?}, or with the unanswered {write:?} {:?}",
                self.model.expected(k),
                alternative.expected(k)
            ));
        }
    }
}

async fn crash_run(store: StoreSpec) {
    let seed = load::seed();
    let kills = env_usize("ROSTER_TEST_CRASH_KILLS", 4);
    let device_count = env_usize("ROSTER_TEST_CRASH_DEVICES", 24);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = std::time::Instant::now();
    let mut figures = Figures::default();

    // Kill the very first start, while it creates the schema.
    let mut first = Server::spawn(&store);
    tokio::time::sleep(Duration::from_millis(rng.random_range(5..60))).await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    figures.kills += 1;
    if let StoreSpec::Postgres { url, .. } = &store {
        wait_for_sessions_to_end(url).await;
    }
    let after_first = store.snapshot().await;
    let broken = roster_core::invariants::check(&after_first);
    assert!(broken.is_empty(), "after the kill at start-up:\n{}", broken.join("\n"));

    let app_code = create_app(&store, "Crash").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut devices: Vec<CrashDevice> = (0..device_count).map(|k| CrashDevice::new(seed, k)).collect();
    for round in 1..=kills {
        let server = Server::start(&store).await;
        let mut tasks = tokio::task::JoinSet::new();
        for d in devices.drain(..) {
            tasks.spawn(d.run(http.clone(), server.base_url.clone(), app_code.clone()));
        }
        let load_ms = rng.random_range(600..1800);
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        server.sigkill().await;
        figures.kills += 1;
        while let Some(d) = tasks.join_next().await {
            devices.push(d.expect("a device task panicked"));
        }
        devices.sort_by_key(|d| d.k);
        if let StoreSpec::Postgres { url, .. } = &store {
            wait_for_sessions_to_end(url).await;
        }
        let snapshot = store.snapshot().await;
        let before = (
            figures.unanswered,
            figures.committed_unanswered,
            figures.violations.len(),
        );
        for d in &mut devices {
            d.verify(&snapshot, &mut figures);
        }
        let invariants = roster_core::invariants::check(&snapshot);
        figures
            .violations
            .extend(invariants.iter().map(|v| format!("after kill {round}: invariant {v}")));
        println!(
            "kill {round} after {load_ms} ms of load: {} installations stored, {} requests unanswered ({} of them committed), {} new violations",
            snapshot.installations.len(),
            figures.unanswered - before.0,
            figures.committed_unanswered - before.1,
            figures.violations.len() - before.2
        );
    }

    // A last clean run: every write answered, a graceful stop, then the same check.
    let server = Server::start(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for d in devices.drain(..) {
        tasks.spawn(d.run(http.clone(), server.base_url.clone(), app_code.clone()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop().await;
    while let Some(d) = tasks.join_next().await {
        devices.push(d.expect("a device task panicked"));
    }
    let snapshot = store.snapshot().await;
    let (unanswered, committed) = (figures.unanswered, figures.committed_unanswered);
    for d in &mut devices {
        d.verify(&snapshot, &mut figures);
    }
    // A graceful stop answers every request it commits: the requests it left unanswered were
    // refused before they started.
    let refused = figures.unanswered - unanswered;
    figures.unanswered = unanswered;
    if figures.committed_unanswered != committed {
        figures.violations.push(format!(
            "{} writes committed during the graceful stop went unanswered",
            figures.committed_unanswered - committed
        ));
    }
    figures.violations.extend(
        roster_core::invariants::check(&snapshot)
            .into_iter()
            .map(|v| format!("after the graceful stop: invariant {v}")),
    );

    // The check is not vacuous: a store that lost a device's last acknowledged deviceName is
    // reported.
    let probe_device = devices
        .iter()
        .position(|d| d.model.installation.is_some())
        .expect("a registered device");
    let (id, _) = devices[probe_device].model.installation.clone().unwrap();
    let mut lost = snapshot.clone();
    for i in lost.installations.iter_mut().filter(|i| i.push_reg_id == id) {
        i.system.device_name = Some("an older value".into());
    }
    let mut probe = Figures::default();
    devices[probe_device].verify(&lost, &mut probe);
    assert_eq!(probe.violations.len(), 1, "a lost write must be reported");

    for d in &devices {
        for (op, n) in &d.acknowledged {
            *figures.acknowledged.entry(op).or_default() += n;
        }
        figures.unavailable += d.unavailable;
        figures.violations.extend(d.violations.iter().cloned());
    }
    let total: usize = figures.acknowledged.values().sum();
    println!(
        "{}: seed {seed}, {} devices, {} kills (1 at start-up), {total} writes acknowledged {:?}, {} unanswered at a kill ({} committed), {refused} refused by the graceful stop, {} answered 503, {} violations, {:.1} s",
        store.backend(),
        device_count,
        figures.kills,
        figures.acknowledged,
        figures.unanswered,
        figures.committed_unanswered,
        figures.unavailable,
        figures.violations.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        figures.violations.is_empty(),
        "acknowledged writes lost or invariants broken (seed {seed}):\n{}",
        figures.violations.join("\n")
    );
    assert!(total > 0, "no write was acknowledged");
}
