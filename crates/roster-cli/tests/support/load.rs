//! The mixed-load generator of the reliability tests: simulated devices speaking the mobile API
//! (mobile-api.md §5) over HTTP with reqwest, each one request at a time, many at once, making
//! seeded random choices. A small pool of `externalUserId`s, phones and emails is shared by all
//! devices, so personalizations and user PATCHes collide; devices depersonalize, log each other
//! out, switch primaries, re-install (token take-over) and delete their expired installations.
//!
//! Every response is checked against the statuses and codes the spec allows for its operation
//! (a `503` from retry exhaustion is allowed and counted; any `500` is a failure), and against
//! what the device can know exactly: its own writes read back (also through another server
//! process), the fields of a successful response, and the anonymity of a freshly
//! depersonalized installation. [`LoadReport::check_store`] then compares the store with the
//! acknowledged history.
//!
//! Used by roster-cli's `multiprocess.rs` (real `roster serve` processes) and included by path
//! from roster-server's `history.rs` (in-process server): one generator, two harnesses, and a
//! test crate cannot depend on another crate's tests.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use roster_model::TokenClearedReason;
use roster_store::Snapshot;
use serde_json::{Value, json};

/// The seed used when `ROSTER_TEST_SEED` is not set.
pub const DEFAULT_SEED: u64 = 20_250_601;

/// Identities in each shared pool (`externalUserId`s, phones, emails).
const POOL: usize = 6;

/// The run's seed: `ROSTER_TEST_SEED` or [`DEFAULT_SEED`], printed so that a failure can be
/// replayed.
pub fn seed() -> u64 {
    let seed = match std::env::var("ROSTER_TEST_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ROSTER_TEST_SEED must be an unsigned integer, got {s:?}")),
        Err(_) => DEFAULT_SEED,
    };
    println!("seed: {seed} (replay with ROSTER_TEST_SEED={seed})");
    seed
}

/// A count from the environment (for longer local runs), or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be an unsigned integer, got {s:?}")),
        Err(_) => default,
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URLs of the server processes (`http://127.0.0.1:PORT`); every request picks one at
    /// random, so one device alternates between processes.
    pub targets: Vec<String>,
    /// The application's code (`Authorization: App <code>`).
    pub app_code: String,
    /// Simulated devices running at once.
    pub devices: usize,
    /// Requests in all (spread evenly over the devices).
    pub ops: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// The `deviceName` a device writes with its `n`th installation write: a per-device counter that
/// only the device itself writes, that no rule clears, so the stored value is exact.
fn device_name(k: usize, n: u64) -> String {
    format!("d{k}-{n}")
}

fn pool_ext(i: usize) -> String {
    format!("u{i}")
}

fn pool_phone(i: usize) -> String {
    format!("3859100000{i:02}")
}

fn pool_email(i: usize) -> String {
    format!("e{i}@x.com")
}

/// One request of a device.
struct Request<'a> {
    /// The operation's name in the report.
    op: &'static str,
    method: &'static str,
    path: &'a str,
    /// The `pushregistrationid` header.
    caller: Option<&'a str>,
    body: Option<&'a Value>,
}

impl<'a> Request<'a> {
    fn new(
        op: &'static str,
        method: &'static str,
        path: &'a str,
        caller: Option<&'a str>,
        body: Option<&'a Value>,
    ) -> Request<'a> {
        Request {
            op,
            method,
            path,
            caller,
            body,
        }
    }
}

/// One response.
struct Reply {
    body: Value,
    start: Instant,
    end: Instant,
}

/// Counters and failures of a run, shared by the devices.
#[derive(Default)]
struct Stats {
    requests: usize,
    /// op -> "200" / "409 CODE" / ... -> count.
    by_op: BTreeMap<&'static str, BTreeMap<String, usize>>,
    unavailable: usize,
    unavailable_with_retry_after: usize,
    violations: Vec<String>,
}

/// State every device sees.
struct Shared {
    cfg: LoadConfig,
    http: reqwest::Client,
    /// Every pushRegId registered so far (targets of "foreign" remote operations).
    all_ids: Mutex<Vec<String>>,
    /// Per installation: the intervals of depersonalizations of it answered `200` (own, remote,
    /// or forced by personalize), which may have cleared its custom attributes.
    clears: Mutex<HashMap<String, Vec<(Instant, Instant)>>>,
    stats: Mutex<Stats>,
}

impl Shared {
    fn violation(&self, text: String) {
        self.stats.lock().unwrap().violations.push(text);
    }
}

/// An acknowledged custom-attribute write of a device on its installation.
#[derive(Debug, Clone, Copy)]
struct SeqWrite {
    value: u64,
    start: Instant,
}

/// One simulated device (an app on a phone).
struct Device {
    k: usize,
    rng: StdRng,
    push_type: &'static str,
    /// The token as sent (APNs tokens in upper case, to exercise lowercasing).
    token: String,
    /// Its current pushRegId.
    id: Option<String>,
    /// Installations it re-installed away from (their token was taken over).
    abandoned: Vec<String>,
    /// Abandoned installations it deleted (`DELETE`, answered 200).
    deleted: Vec<String>,
    registrations: usize,
    counter: u64,
    /// How many operations it has started: devices advance at about the same pace, so a name
    /// derived from it is tried by many devices at about the same moment.
    step: usize,
    /// `n` of the last acknowledged `deviceName` (`d{k}-{n}`) of the current installation.
    acked_name: Option<u64>,
    /// The last acknowledged `customAttributes.seq` of the current installation.
    seq: Option<SeqWrite>,
    /// Other installations of its person, as last seen in a user response.
    others: Vec<String>,
    /// True while the device knows its installation is the only one of an anonymous person
    /// (after registering or its own depersonalization, until its identity changes).
    known_anonymous: bool,
    /// Personalizations answered 200, per installation.
    personalized: HashMap<String, usize>,
}

/// What a device leaves for the final store check.
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    k: usize,
    stored_token: String,
    id: Option<String>,
    abandoned: Vec<String>,
    deleted: Vec<String>,
    registrations: usize,
    acked_name: Option<u64>,
    seq: Option<SeqWrite>,
    personalized: HashMap<String, usize>,
}

/// The outcome of a run.
pub struct LoadReport {
    pub seed: u64,
    pub devices: usize,
    pub requests: usize,
    pub elapsed: Duration,
    by_op: BTreeMap<&'static str, BTreeMap<String, usize>>,
    /// `503` answers (retry exhaustion), and how many of them carried `Retry-After`.
    pub unavailable: usize,
    pub unavailable_with_retry_after: usize,
    /// Responses the spec does not allow, failed read-your-writes checks, transport errors.
    pub violations: Vec<String>,
    records: Vec<DeviceRecord>,
    clears: HashMap<String, Vec<(Instant, Instant)>>,
    app_code: String,
}

/// Runs the load to the end and reports.
pub async fn run(cfg: LoadConfig) -> LoadReport {
    assert!(!cfg.targets.is_empty() && cfg.devices > 0);
    let shared = Arc::new(Shared {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        cfg: cfg.clone(),
        all_ids: Mutex::new(Vec::new()),
        clears: Mutex::new(HashMap::new()),
        stats: Mutex::new(Stats::default()),
    });
    let started = Instant::now();
    let per_device = cfg.ops.div_ceil(cfg.devices);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..cfg.devices {
        let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(k as u64));
        let ios = rng.random_bool(0.3);
        let token = if ios {
            (0..32).map(|_| format!("{:02X}", rng.random::<u8>())).collect()
        } else {
            format!("fcm-{k}:{}", rng.random::<u64>())
        };
        let device = Device {
            k,
            rng,
            push_type: if ios { "APNS" } else { "Firebase" },
            token,
            id: None,
            abandoned: Vec::new(),
            deleted: Vec::new(),
            registrations: 0,
            counter: 0,
            step: 0,
            acked_name: None,
            seq: None,
            others: Vec::new(),
            known_anonymous: false,
            personalized: HashMap::new(),
        };
        let shared = shared.clone();
        tasks.spawn(async move { device.run(&shared, per_device).await });
    }
    let mut records = Vec::with_capacity(cfg.devices);
    while let Some(done) = tasks.join_next().await {
        records.push(done.expect("a device task panicked"));
    }
    records.sort_by_key(|r| r.k);
    let elapsed = started.elapsed();
    let shared = Arc::into_inner(shared).expect("devices are done");
    let stats = shared.stats.into_inner().unwrap();
    LoadReport {
        seed: cfg.seed,
        devices: cfg.devices,
        requests: stats.requests,
        elapsed,
        by_op: stats.by_op,
        unavailable: stats.unavailable,
        unavailable_with_retry_after: stats.unavailable_with_retry_after,
        violations: stats.violations,
        records,
        clears: shared.clears.into_inner().unwrap(),
        app_code: cfg.app_code,
    }
}

/// `(status, code)` pairs an operation may be answered with (`""`: a `200`).
type Allowed = &'static [(u16, &'static str)];

const OK: Allowed = &[(200, "")];
const OK_OR_FORBIDDEN: Allowed = &[(200, ""), (403, "FORBIDDEN_INSTALLATION")];
const PATCH_USER: Allowed = &[(200, ""), (409, "USER_MERGE_INTERRUPTED")];
const PERSONALIZE: Allowed = &[
    (200, ""),
    (409, "AMBIGUOUS_PERSONALIZE_CANDIDATES"),
    (409, "PERSONALIZATION_IMPOSSIBLE"),
    (409, "USER_MERGE_INTERRUPTED"),
];

/// The operations a device picks from, with their weights.
#[derive(Debug, Clone, Copy)]
enum Op {
    GetOwn,
    GetOther,
    PatchOwn,
    PrimaryOwn,
    PrimaryOther,
    GetUser,
    PatchUser,
    PatchUserInvalid,
    Personalize,
    Depersonalize,
    RemoteLogout,
    Reinstall,
    DeleteExpired,
}

const WEIGHTS: &[(Op, u32)] = &[
    (Op::GetOwn, 8),
    (Op::GetOther, 4),
    (Op::PatchOwn, 14),
    (Op::PrimaryOwn, 4),
    (Op::PrimaryOther, 6),
    (Op::GetUser, 8),
    (Op::PatchUser, 10),
    (Op::PatchUserInvalid, 2),
    (Op::Personalize, 20),
    (Op::Depersonalize, 7),
    (Op::RemoteLogout, 6),
    (Op::Reinstall, 2),
    (Op::DeleteExpired, 2),
];

impl Device {
    async fn run(mut self, sh: &Shared, ops: usize) -> DeviceRecord {
        for step in 0..ops {
            self.step = step;
            let Some(id) = self.id.clone() else {
                self.register(sh).await;
                continue;
            };
            match self.pick() {
                Op::GetOwn => self.get_own(sh, &id).await,
                Op::GetOther => self.get_other(sh, &id).await,
                Op::PatchOwn => self.patch_own(sh, &id).await,
                Op::PrimaryOwn => self.primary_own(sh, &id).await,
                Op::PrimaryOther => self.primary_other(sh, &id).await,
                Op::GetUser => self.get_user(sh, &id).await,
                Op::PatchUser => self.patch_user(sh, &id).await,
                Op::PatchUserInvalid => self.patch_user_invalid(sh, &id).await,
                Op::Personalize => self.personalize(sh, &id).await,
                Op::Depersonalize => self.depersonalize(sh, &id).await,
                Op::RemoteLogout => self.remote_logout(sh, &id).await,
                Op::Reinstall => self.register(sh).await,
                Op::DeleteExpired => self.delete_expired(sh, &id).await,
            }
        }
        DeviceRecord {
            k: self.k,
            stored_token: self.stored_token(),
            id: self.id,
            abandoned: self.abandoned,
            deleted: self.deleted,
            registrations: self.registrations,
            acked_name: self.acked_name,
            seq: self.seq,
            personalized: self.personalized,
        }
    }

    fn pick(&mut self) -> Op {
        let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        for (op, w) in WEIGHTS {
            if roll < *w {
                return *op;
            }
            roll -= w;
        }
        unreachable!()
    }

    /// The token as the server stores it (APNs lowercased, people.md §2.3).
    fn stored_token(&self) -> String {
        if self.push_type == "APNS" {
            self.token.to_ascii_lowercase()
        } else {
            self.token.clone()
        }
    }

    fn violation(&self, sh: &Shared, text: String) {
        sh.violation(format!("device {}: {text}", self.k));
    }

    /// Another installation to act on: one of its person's (as last seen), or now and then any
    /// installation at all (usually another person's: a `403`).
    fn other_target(&mut self, sh: &Shared, me: &str) -> Option<String> {
        if !self.others.is_empty() && self.rng.random_bool(0.8) {
            return self.others.choose(&mut self.rng).cloned();
        }
        let all = sh.all_ids.lock().unwrap();
        all.choose(&mut self.rng).filter(|id| *id != me).cloned()
    }

    /// Sends one request to a random server process and records its outcome; `Some` only for a
    /// `200` (an acknowledged request).
    async fn call(&mut self, sh: &Shared, request: Request<'_>, allowed: Allowed) -> Option<Reply> {
        let Request {
            op,
            method,
            path,
            caller,
            body,
        } = request;
        let base = sh.cfg.targets.choose(&mut self.rng).unwrap().clone();
        // Half the PATCHes the way the Android SDK sends them (mobile-api.md §1.2).
        let override_patch = method == "PATCH" && self.rng.random_bool(0.5);
        let verb = if override_patch { "POST" } else { method };
        let mut rb = sh
            .http
            .request(
                reqwest::Method::from_bytes(verb.as_bytes()).unwrap(),
                format!("{base}{path}"),
            )
            .header("authorization", format!("App {}", sh.cfg.app_code));
        if override_patch {
            rb = rb.header("x-http-method-override", "PATCH");
        }
        if let Some(c) = caller {
            rb = rb.header("pushregistrationid", c);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b.to_string());
        }
        let start = Instant::now();
        let sent = rb.send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.violation(sh, format!("{op} {method} {path}: request failed: {e}"));
                return None;
            }
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.violation(sh, format!("{op} {method} {path}: body not read: {e}"));
                return None;
            }
        };
        let end = Instant::now();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) => {
                    self.violation(
                        sh,
                        format!(
                            "{op}: {status} with a body that is not JSON: {}",
                            String::from_utf8_lossy(&bytes)
                        ),
                    );
                    return None;
                }
            }
        };
        let code = body["requestError"]["serviceException"]["messageId"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let key = if code.is_empty() {
            status.to_string()
        } else {
            format!("{status} {code}")
        };
        let mut stats = sh.stats.lock().unwrap();
        stats.requests += 1;
        *stats.by_op.entry(op).or_default().entry(key).or_default() += 1;
        if status == 503 {
            // Retry exhaustion under contention (people.md §5.1 step 8): allowed, nothing changed.
            stats.unavailable += 1;
            if retry_after {
                stats.unavailable_with_retry_after += 1;
            }
            if body != json!({}) {
                stats
                    .violations
                    .push(format!("device {}: {op}: 503 body is not {{}}: {body}", self.k));
            }
            return None;
        }
        if !allowed.iter().any(|(s, c)| *s == status && *c == code) {
            stats.violations.push(format!(
                "device {}: {op} {method} {path}: {status} is not an allowed answer: {body}",
                self.k
            ));
            return None;
        }
        drop(stats);
        (status == 200).then_some(Reply { body, start, end })
    }

    /// `POST /mobile/1/appinstance` (also a re-install: a new installation with the same token).
    async fn register(&mut self, sh: &Shared) {
        self.counter += 1;
        let n = self.counter;
        let mut body = json!({
            "pushServiceType": self.push_type, "pushServiceToken": self.token,
            "os": if self.push_type == "APNS" { "iOS" } else { "Android" },
            "sdkVersion": "15.0.0", "deviceName": device_name(self.k, n), "regEnabled": true,
        });
        if self.rng.random_bool(0.3) {
            body["isPrimary"] = json!(true);
        }
        let Some(r) = self
            .call(
                sh,
                Request::new("register", "POST", "/mobile/1/appinstance", None, Some(&body)),
                OK,
            )
            .await
        else {
            return;
        };
        let Some(id) = r.body["pushRegId"].as_str().map(str::to_string) else {
            return self.violation(sh, format!("register: no pushRegId in {}", r.body));
        };
        if r.body["pushServiceToken"] != self.stored_token().as_str() || r.body["deviceName"] != device_name(self.k, n)
        {
            self.violation(sh, format!("register: response does not echo the body: {}", r.body));
        }
        if let Some(old) = self.id.replace(id.clone()) {
            self.abandoned.push(old);
        }
        self.registrations += 1;
        self.acked_name = Some(n);
        self.seq = None;
        self.others.clear();
        self.known_anonymous = true;
        sh.all_ids.lock().unwrap().push(id);
    }

    /// `GET` own installation: its own last writes, whichever process answers.
    async fn get_own(&mut self, sh: &Shared, me: &str) {
        let Some(r) = self
            .call(sh, Request::new("get own", "GET", &ipath(me), Some(me), None), OK)
            .await
        else {
            return;
        };
        let expected = self.acked_name.map(|n| device_name(self.k, n));
        if r.body["deviceName"].as_str() != expected.as_deref() {
            self.violation(
                sh,
                format!(
                    "read-your-writes: deviceName {} after acknowledged {expected:?}",
                    r.body["deviceName"]
                ),
            );
        }
        if r.body["pushServiceToken"] != self.stored_token().as_str() {
            self.violation(sh, format!("own installation lost its token: {}", r.body));
        }
    }

    /// `GET` another installation: `200` without its token, or `403`.
    async fn get_other(&mut self, sh: &Shared, me: &str) {
        let Some(target) = self.other_target(sh, me) else {
            return;
        };
        let Some(r) = self
            .call(
                sh,
                Request::new("get other", "GET", &ipath(&target), Some(me), None),
                OK_OR_FORBIDDEN,
            )
            .await
        else {
            return;
        };
        if r.body["pushRegId"] != target.as_str() || r.body.get("pushServiceToken").is_some() {
            self.violation(sh, format!("get other {target}: {}", r.body));
        }
    }

    /// `PATCH` own installation: the `deviceName` counter, `customAttributes.seq`, and some
    /// other fields.
    async fn patch_own(&mut self, sh: &Shared, me: &str) {
        self.counter += 1;
        let n = self.counter;
        let mut body = json!({"deviceName": device_name(self.k, n), "customAttributes": {"seq": n}});
        if self.rng.random_bool(0.2) {
            // A name many devices define at about the same moment (people.md §8.2: concurrent
            // first writes race on the definition's uniqueness constraint). At most 200 names,
            // within the 250 attributes per installation and 500 definitions per scope.
            body["customAttributes"][format!("w{}", (self.step / 8) % 200)] = json!(n);
        }
        if self.rng.random_bool(0.3) {
            body["appVersion"] = json!(format!("1.{n}"));
        }
        if self.rng.random_bool(0.2) {
            body["notificationsEnabled"] = json!(self.rng.random_bool(0.5));
        }
        if self.rng.random_bool(0.2) {
            body["language"] = if self.rng.random_bool(0.5) {
                json!("hr")
            } else {
                Value::Null
            };
        }
        let Some(r) = self
            .call(
                sh,
                Request::new("patch own", "PATCH", &ipath(me), Some(me), Some(&body)),
                OK,
            )
            .await
        else {
            return;
        };
        if r.body["deviceName"] != device_name(self.k, n)
            || r.body["customAttributes"]["seq"] != json!(n)
            || r.body["pushServiceToken"] != self.stored_token().as_str()
        {
            self.violation(sh, format!("patch own: response does not show the write: {}", r.body));
        }
        self.acked_name = Some(n);
        self.seq = Some(SeqWrite {
            value: n,
            start: r.start,
        });
    }

    /// `PATCH` own installation `{"isPrimary": b}`.
    async fn primary_own(&mut self, sh: &Shared, me: &str) {
        let b = self.rng.random_bool(0.6);
        let body = json!({ "isPrimary": b });
        if let Some(r) = self
            .call(
                sh,
                Request::new("primary own", "PATCH", &ipath(me), Some(me), Some(&body)),
                OK,
            )
            .await
            && r.body["isPrimary"] != b
        {
            self.violation(sh, format!("primary own {b}: {}", r.body));
        }
    }

    /// `PATCH` another installation `{"isPrimary": b}` (mobile-api.md §5.4).
    async fn primary_other(&mut self, sh: &Shared, me: &str) {
        let Some(target) = self.other_target(sh, me) else {
            return;
        };
        let b = self.rng.random_bool(0.7);
        let mut body = json!({ "isPrimary": b });
        if self.rng.random_bool(0.1) {
            // Any other field makes it a 403 and changes nothing (the owner's exact checks
            // would see a changed deviceName).
            body["deviceName"] = json!("hijacked");
            const FORBIDDEN: Allowed = &[(403, "FORBIDDEN_INSTALLATION")];
            if self
                .call(
                    sh,
                    Request::new("patch other invalid", "PATCH", &ipath(&target), Some(me), Some(&body)),
                    FORBIDDEN,
                )
                .await
                .is_some()
            {
                self.violation(sh, format!("PATCH of {target} with deviceName was accepted"));
            }
            return;
        }
        if let Some(r) = self
            .call(
                sh,
                Request::new("primary other", "PATCH", &ipath(&target), Some(me), Some(&body)),
                OK_OR_FORBIDDEN,
            )
            .await
            && (r.body["isPrimary"] != b
                || r.body["pushRegId"] != target.as_str()
                || r.body.get("pushServiceToken").is_some())
        {
            self.violation(sh, format!("primary other {target} {b}: {}", r.body));
        }
    }

    /// Checks a user response (GET/PATCH user, personalize): the caller among `instances` with
    /// its token, nobody else's token, at most one primary; remembers the other installations.
    fn check_user(&mut self, sh: &Shared, op: &str, me: &str, user: &Value) {
        let Some(instances) = user["instances"].as_array() else {
            return self.violation(sh, format!("{op}: no instances in {user}"));
        };
        let mut mine = false;
        let mut primaries = 0;
        let mut others = Vec::new();
        for i in instances {
            let id = i["pushRegId"].as_str().unwrap_or_default();
            if i["isPrimary"] == true {
                primaries += 1;
            }
            if id == me {
                mine = true;
                if i["pushServiceToken"] != self.stored_token().as_str() {
                    self.violation(sh, format!("{op}: own element without own token: {i}"));
                }
            } else {
                others.push(id.to_string());
                if i.get("pushServiceToken").is_some() {
                    self.violation(sh, format!("{op}: another installation's token revealed: {i}"));
                }
            }
        }
        if !mine || primaries > 1 {
            self.violation(sh, format!("{op}: caller missing or {primaries} primaries: {user}"));
        }
        if self.known_anonymous
            && (user.get("externalUserId").is_some()
                || user["phones"] != json!([])
                || user["emails"] != json!([])
                || user["type"] != "LEAD"
                || !others.is_empty())
        {
            self.violation(
                sh,
                format!("{op}: installation alone on an anonymous person after its own depersonalize, got {user}"),
            );
        }
        self.others = others;
    }

    async fn get_user(&mut self, sh: &Shared, me: &str) {
        let path = format!("{}/user", ipath(me));
        if let Some(r) = self
            .call(sh, Request::new("get user", "GET", &path, Some(me), None), OK)
            .await
        {
            self.check_user(sh, "get user", me, &r.body);
        }
    }

    /// Person custom attributes from a small pool of names, one type per name prefix (`n`
    /// numbers, `s` strings, `b` booleans, `d` dates); now and then a `null` (delete).
    fn person_attributes(&mut self) -> Value {
        let mut attrs = serde_json::Map::new();
        for _ in 0..self.rng.random_range(1..=2) {
            let i = self.rng.random_range(0..4);
            let (name, value) = match self.rng.random_range(0..4) {
                0 => (format!("n{i}"), json!(self.rng.random_range(0..1000))),
                1 => (format!("s{i}"), json!(format!("v{}", self.rng.random_range(0..1000)))),
                2 => (format!("b{i}"), json!(self.rng.random_bool(0.5))),
                _ => (
                    format!("d{i}"),
                    json!(format!("2024-01-{:02}", self.rng.random_range(1..=28))),
                ),
            };
            let value = if self.rng.random_bool(0.15) { Value::Null } else { value };
            attrs.insert(name, value);
        }
        Value::Object(attrs)
    }

    /// A phone of the pool as a device may type it.
    fn typed_phone(&mut self, i: usize) -> String {
        if self.rng.random_bool(0.5) {
            format!("+{}", pool_phone(i))
        } else {
            pool_phone(i)
        }
    }

    /// An email of the pool in a random letter case (compared case-insensitively).
    fn typed_email(&mut self, i: usize) -> String {
        if self.rng.random_bool(0.3) {
            pool_email(i).to_uppercase()
        } else {
            pool_email(i)
        }
    }

    /// `PATCH` user: standard fields, tags, custom attributes, and sometimes an identity key of
    /// the shared pool (`409 USER_MERGE_INTERRUPTED` when another person owns it). Identity is
    /// only ever set, never cleared, so a person once personalized stays personalized and an
    /// anonymous person always owns exactly one installation (which makes `known_anonymous`
    /// exact).
    async fn patch_user(&mut self, sh: &Shared, me: &str) {
        let mut body = json!({});
        if self.rng.random_bool(0.4) {
            body["firstName"] = if self.rng.random_bool(0.8) {
                json!(format!("F{}", self.rng.random_range(0..100)))
            } else {
                Value::Null
            };
        }
        if self.rng.random_bool(0.2) {
            body["birthday"] = json!(format!("1990-05-{:02}", self.rng.random_range(1..=28)));
        }
        if self.rng.random_bool(0.3) {
            let n = self.rng.random_range(0..=3);
            let tags: BTreeSet<String> = (0..n).map(|_| format!("t{}", self.rng.random_range(0..10))).collect();
            body["tags"] = json!(tags);
        }
        if self.rng.random_bool(0.5) {
            body["customAttributes"] = self.person_attributes();
        }
        let identity = self.rng.random_bool(0.25);
        if identity {
            let i = self.rng.random_range(0..POOL);
            match self.rng.random_range(0..3) {
                0 => body["externalUserId"] = json!(pool_ext(i)),
                1 => body["phones"] = json!([{ "number": self.typed_phone(i) }]),
                _ => body["emails"] = json!([{ "address": self.typed_email(i) }]),
            }
        }
        let path = format!("{}/user", ipath(me));
        let Some(r) = self
            .call(
                sh,
                Request::new("patch user", "PATCH", &path, Some(me), Some(&body)),
                PATCH_USER,
            )
            .await
        else {
            return;
        };
        if identity {
            self.known_anonymous = false;
        }
        let u = &r.body;
        let mut wrong = Vec::new();
        if let Some(e) = body.get("externalUserId")
            && u["externalUserId"] != *e
        {
            wrong.push("externalUserId");
        }
        if let Some(f) = body.get("firstName")
            && u.get("firstName").unwrap_or(&Value::Null) != f
        {
            wrong.push("firstName");
        }
        if let Some(t) = body.get("tags")
            && u["tags"] != *t
        {
            wrong.push("tags");
        }
        if let Some(Value::Object(attrs)) = body.get("customAttributes") {
            for (name, value) in attrs {
                if u["customAttributes"].get(name).unwrap_or(&Value::Null) != value {
                    wrong.push("customAttributes");
                }
            }
        }
        if !wrong.is_empty() {
            self.violation(
                sh,
                format!("patch user: {wrong:?} not as written: sent {body}, got {u}"),
            );
        }
        let user = r.body;
        self.check_user(sh, "patch user", me, &user);
    }

    /// A `PATCH` user that fails validation: `400`, nothing changed.
    async fn patch_user_invalid(&mut self, sh: &Shared, me: &str) {
        const EMAIL: Allowed = &[(400, "EMAIL_INVALID")];
        const PHONE: Allowed = &[(400, "PHONE_INVALID")];
        const FORMAT: Allowed = &[(400, "REQUEST_FORMAT_INVALID")];
        let (body, allowed) = match self.rng.random_range(0..3) {
            0 => (
                json!({"firstName": "ok", "emails": [{"address": "not an email"}]}),
                EMAIL,
            ),
            1 => (json!({"phones": [{"number": "00385 91"}]}), PHONE),
            _ => (json!({"birthday": "1990-02-30"}), FORMAT),
        };
        let path = format!("{}/user", ipath(me));
        if self
            .call(
                sh,
                Request::new("patch user invalid", "PATCH", &path, Some(me), Some(&body)),
                allowed,
            )
            .await
            .is_some()
        {
            self.violation(sh, format!("invalid patch user {body} was accepted"));
        }
    }

    /// Personalize with a random identity of the shared pool and random flags.
    async fn personalize(&mut self, sh: &Shared, me: &str) {
        let mut identity = json!({});
        let mut ext = None;
        let mut phone = None;
        let mut email = None;
        if self.rng.random_bool(0.15) {
            // A new key many devices claim at about the same moment (people.md §5.1 step 8: the
            // losers restart and merge into the winner).
            ext = Some(format!("w{}", self.step / 8));
            identity["externalUserId"] = json!(ext);
        } else if self.rng.random_bool(0.7) {
            ext = Some(pool_ext(self.rng.random_range(0..POOL)));
            identity["externalUserId"] = json!(ext);
        }
        if self.rng.random_bool(0.25) {
            let i = self.rng.random_range(0..POOL);
            phone = Some(pool_phone(i));
            identity["phones"] = json!([{ "number": self.typed_phone(i) }]);
        }
        if self.rng.random_bool(0.25) || identity == json!({}) {
            let i = self.rng.random_range(0..POOL);
            email = Some(pool_email(i));
            identity["emails"] = json!([{ "address": self.typed_email(i) }]);
        }
        let mut body = json!({ "userIdentity": identity });
        let first_name = self
            .rng
            .random_bool(0.3)
            .then(|| format!("P{}", self.rng.random_range(0..100)));
        if let Some(f) = &first_name {
            body["userAttributes"] = json!({"firstName": f, "customAttributes": self.person_attributes()});
        }
        let (force, keep_as_lead, set_primary) = (
            self.rng.random_bool(0.3),
            self.rng.random_bool(0.3),
            self.rng.random_bool(0.3),
        );
        // Android spelling or iOS spelling (mobile-api.md §1.3).
        let query = if self.rng.random_bool(0.5) {
            format!("forceDepersonalize={force}&keepAsLead={keep_as_lead}&setDeviceAsPrimary={set_primary}")
        } else {
            let b = |v: bool| u8::from(v);
            format!(
                "forceDepersonalize={}&keepAsLead={}&setDeviceAsPrimary={}",
                b(force),
                b(keep_as_lead),
                b(set_primary)
            )
        };
        let path = format!("{}/personalize?{query}", ipath(me));
        let Some(r) = self
            .call(
                sh,
                Request::new("personalize", "POST", &path, Some(me), Some(&body)),
                PERSONALIZE,
            )
            .await
        else {
            return;
        };
        *self.personalized.entry(me.to_string()).or_default() += 1;
        if force {
            // A forced depersonalization may have cleared the installation's attributes.
            sh.clears
                .lock()
                .unwrap()
                .entry(me.to_string())
                .or_default()
                .push((r.start, r.end));
        }
        self.known_anonymous = false;
        let u = &r.body;
        let mut wrong = Vec::new();
        if let Some(e) = &ext
            && u["externalUserId"] != e.as_str()
        {
            wrong.push("externalUserId");
        }
        if let Some(p) = &phone
            && !u["phones"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["number"] == p.as_str()))
        {
            wrong.push("phones");
        }
        if let Some(e) = &email
            && !u["emails"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["address"].as_str().map(str::to_lowercase).as_deref() == Some(e))
            })
        {
            wrong.push("emails");
        }
        if let Some(f) = &first_name
            && u["firstName"] != f.as_str()
        {
            wrong.push("firstName");
        }
        if !keep_as_lead && u["type"] != "CUSTOMER" {
            wrong.push("type");
        }
        if set_primary
            && !u["instances"]
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i["pushRegId"] == me && i["isPrimary"] == true))
        {
            wrong.push("isPrimary");
        }
        if !wrong.is_empty() {
            self.violation(
                sh,
                format!("personalize: {wrong:?} not as asked: sent {body} ({query}), got {u}"),
            );
        }
        let user = r.body;
        self.check_user(sh, "personalize", me, &user);
    }

    /// Own depersonalize: afterwards the installation is alone on an anonymous person.
    async fn depersonalize(&mut self, sh: &Shared, me: &str) {
        let path = format!("{}/depersonalize", ipath(me));
        if let Some(r) = self
            .call(sh, Request::new("depersonalize", "POST", &path, Some(me), None), OK)
            .await
        {
            sh.clears
                .lock()
                .unwrap()
                .entry(me.to_string())
                .or_default()
                .push((r.start, r.end));
            self.known_anonymous = true;
            self.others.clear();
        }
    }

    /// Remote logout of another installation (of the same person: `200`; otherwise `403`).
    async fn remote_logout(&mut self, sh: &Shared, me: &str) {
        let Some(target) = self.other_target(sh, me) else {
            return;
        };
        let path = format!("{}/depersonalize", ipath(&target));
        if let Some(r) = self
            .call(
                sh,
                Request::new("remote logout", "POST", &path, Some(me), None),
                OK_OR_FORBIDDEN,
            )
            .await
        {
            sh.clears
                .lock()
                .unwrap()
                .entry(target.clone())
                .or_default()
                .push((r.start, r.end));
            self.others.retain(|o| *o != target);
        }
    }

    /// `DELETE` one of its own expired installations (mobile-api.md §5.5).
    async fn delete_expired(&mut self, sh: &Shared, me: &str) {
        if self.abandoned.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.abandoned.len());
        let old = self.abandoned[i].clone();
        if self
            .call(
                sh,
                Request::new("delete expired", "DELETE", &ipath(&old), Some(me), None),
                OK,
            )
            .await
            .is_some()
        {
            self.abandoned.remove(i);
            self.deleted.push(old);
        }
    }
}

fn ipath(id: &str) -> String {
    format!("/mobile/1/appinstance/{id}")
}

impl LoadReport {
    /// Prints the figures of the run.
    pub fn print(&self, label: &str) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "{label}: seed {}, {} devices, {} requests in {:.1} s ({:.0}/s), {} answered 503 ({} with Retry-After), {} violations",
            self.seed,
            self.devices,
            self.requests,
            secs,
            self.requests as f64 / secs.max(0.001),
            self.unavailable,
            self.unavailable_with_retry_after,
            self.violations.len()
        );
        for (op, statuses) in &self.by_op {
            let line: Vec<String> = statuses.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!("  {op:<20} {}", line.join(", "));
        }
        for v in self.violations.iter().take(30) {
            println!("  VIOLATION {v}");
        }
    }

    /// The installations a finished run must have left, compared with the store: every
    /// acknowledged registration present (minus acknowledged deletions), each device's last
    /// acknowledged writes, taken-over tokens cleared, merge-log entries only for installations
    /// that personalized. Returns the differences (empty: the store matches the history).
    pub fn check_store(&self, s: &Snapshot) -> Vec<String> {
        let mut v = Vec::new();
        let Some(app) = s.applications.iter().find(|a| a.application_code == self.app_code) else {
            return vec![format!("application {} not in the store", self.app_code)];
        };
        let installations: HashMap<&str, &roster_model::Installation> = s
            .installations
            .iter()
            .filter(|i| i.application_id == app.id)
            .map(|i| (i.push_reg_id.as_str(), i))
            .collect();
        let registered: usize = self.records.iter().map(|r| r.registrations).sum();
        let deleted: usize = self.records.iter().map(|r| r.deleted.len()).sum();
        if installations.len() != registered - deleted {
            v.push(format!(
                "{} installations stored; {registered} registrations and {deleted} deletions were acknowledged",
                installations.len()
            ));
        }
        for r in &self.records {
            let who = format!("device {}", r.k);
            if let Some(id) = &r.id {
                let Some(i) = installations.get(id.as_str()) else {
                    v.push(format!("{who}: installation {id} is missing"));
                    continue;
                };
                if i.push_service_token.as_deref() != Some(r.stored_token.as_str()) {
                    v.push(format!("{who}: {id} holds token {:?}", i.push_service_token));
                }
                let expected = r.acked_name.map(|n| device_name(r.k, n));
                if i.system.device_name != expected {
                    v.push(format!(
                        "{who}: {id} deviceName {:?}, last acknowledged {expected:?}",
                        i.system.device_name
                    ));
                }
                let stored = i.custom_attributes.get("seq");
                match r.seq {
                    None if stored.is_some() => v.push(format!("{who}: {id} has seq {stored:?}, never written")),
                    None => {}
                    Some(w) => {
                        // A depersonalization that did not end before the write started may
                        // have come after it and cleared it; one that ended before cannot.
                        let maybe_cleared = self
                            .clears
                            .get(id)
                            .is_some_and(|c| c.iter().any(|(_, end)| *end > w.start));
                        let acked = json!(w.value);
                        if !(stored == Some(&acked) || (maybe_cleared && stored.is_none())) {
                            v.push(format!(
                                "{who}: {id} seq {stored:?}, last acknowledged {} (cleared since: {maybe_cleared})",
                                w.value
                            ));
                        }
                    }
                }
            }
            for old in &r.abandoned {
                match installations.get(old.as_str()) {
                    None => v.push(format!("{who}: abandoned installation {old} is missing")),
                    Some(i)
                        if i.push_service_token.is_some()
                            || i.token_cleared_reason != Some(TokenClearedReason::TakenOver) =>
                    {
                        v.push(format!(
                            "{who}: re-installed away from {old}, which still holds {:?} ({:?})",
                            i.push_service_token, i.token_cleared_reason
                        ))
                    }
                    Some(_) => {}
                }
            }
            for gone in &r.deleted {
                if installations.contains_key(gone.as_str()) {
                    v.push(format!("{who}: deleted installation {gone} is still stored"));
                }
            }
        }
        // Invariant 18: only personalize writes merge-log entries, at most one per success.
        let personalized: HashMap<&str, usize> = self
            .records
            .iter()
            .flat_map(|r| r.personalized.iter().map(|(id, n)| (id.as_str(), *n)))
            .collect();
        let mut entries: HashMap<&str, usize> = HashMap::new();
        for e in &s.merge_log {
            *entries.entry(e.push_reg_id.as_str()).or_default() += 1;
        }
        for (id, n) in entries {
            let ok = personalized.get(id).copied().unwrap_or(0);
            if n > ok {
                v.push(format!(
                    "{n} merge-log entries name {id}, which personalized {ok} times"
                ));
            }
        }
        v
    }
}
