//! Behaviour-suite scenarios of [`AudienceTx`](roster_store::AudienceTx): filters evaluated by the
//! store (as SQL over the audience index) against the reference semantics,
//! `roster_model::filter::Filter::matches`, on a seeded random population, for every backend.
//! A backend runs them from a test file of its own:
//!
//! ```text
//! roster_store_tests::audience_store_suite!("sqlite", fresh);
//! ```
//!
//! The population and filter generators are public so that a backend's own tests (backfill after
//! the migration, query plans) can reuse them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use roster_model::filter::Filter;
use roster_model::resources::timestamp;
use roster_model::{
    Account, Application, AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, Gender, Installation,
    Person, PersonType, PushServiceType, SchemaField, SystemData,
};
use roster_store::audience::{SEGMENT_NAME_CONSTRAINT, Scope, Segment};
use roster_store::{Constraint, Snapshot, Store, StoreError, Tx};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::{account, application, conflict_on};

/// Generates one `#[tokio::test]` per scenario of this module, each on a store from `fresh`
/// (as [`store_behaviour_suite!`](crate::store_behaviour_suite) does for the core scenarios).
#[macro_export]
macro_rules! audience_store_suite {
    ($backend:literal, $fresh:expr $(,)?) => {
        $crate::audience_store_suite!(@list (tests $backend, $fresh));
    };
    (@list $what:tt) => {
        $crate::audience_store_suite! { @expand $what;
            random_filters_agree_with_the_reference,
            filters_agree_after_updates_moves_and_deletes,
            filters_agree_after_updates_from_the_stored_state,
            deleted_attribute_values_match_no_filter,
            segments_round_trip_with_a_unique_name_per_account,
        }
    };
    (@expand (tests $backend:literal, $fresh:expr); $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::run($backend, stringify!($name), $fresh, $crate::audience::$name).await;
            }
        )*
    };
    (@expand (names); $($name:ident,)*) => {
        &[$(stringify!($name)),*]
    };
}

// ---------------------------------------------------------------------------------------------
// A deterministic generator
// ---------------------------------------------------------------------------------------------

/// SplitMix64: a few lines, and the same sequence for a seed on every platform and release
/// (which a seeded generator of the `rand` crate does not promise), so a failing seed replays.
pub struct Rng(u64);

impl Rng {
    /// A generator for a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    fn maybe<T: Clone>(&mut self, percent: u64, items: &[T]) -> Option<T> {
        self.chance(percent).then(|| self.pick(items))
    }
}

// ---------------------------------------------------------------------------------------------
// The population
// ---------------------------------------------------------------------------------------------

// Vocabularies: small, so that filters hit; with Unicode case traps (final sigma, dotted İ, ß).
const NAMES: &[&str] = &[
    "Ana",
    "ana",
    "ANA",
    "Anamarija",
    "Ivan",
    "ΣΊΣΥΦΟΣ",
    "σίσυφος",
    "İrem",
    "irem",
    "ß",
    "SS",
    "Ærø",
    "Zoë",
    "",
];
const TAGS: &[&str] = &["vip", "VIP", "beta", "Beta", "ž", "Ž", "new", "İx", "a%_b"];
const DATES: &[&str] = &["1990-01-01", "1999-12-31", "2000-01-01", "2024-02-29", "2024-03-01"];
const DATE_TIMES: &[&str] = &[
    "2024-01-01T00:00:00Z",
    "2024-06-01T12:30:00Z",
    "2024-06-01T12:30:01Z",
    "2025-01-01T00:00:00Z",
];
const NUMBERS: &[f64] = &[
    -2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 10.0, 10.5, 20.0, 100.0, 1e300, -1e-300,
];
const OSES: &[&str] = &["iOS", "ios", "Android", "ANDROID", "HarmonyOS"];
const VERSIONS: &[&str] = &[
    "3",
    "3.0",
    "3.0.0",
    "3.2",
    "3.10.1",
    "10.0",
    "2.9.5",
    "3.2.0-rc1",
    "beta",
    "v1.2",
    "01.2",
    "3.",
];
const MAKERS: &[&str] = &["Google", "google", "Apple", "Ğiz", "İnc"];
const LANGUAGES: &[&str] = &["en", "EN", "hr", "de-DE"];
const OFFSETS: &[&str] = &["GMT+01:00", "GMT-05:00", "GMT+00:00"];
const SKUS: &[&str] = &["A1", "a1", "B2", "Ž3", "ß4"];
const CHANNELS: &[&str] = &["web", "Web", "store", "ΣΤ"];
const PUSH_TYPES: &[PushServiceType] = &[
    PushServiceType::Firebase,
    PushServiceType::Gcm,
    PushServiceType::Hms,
    PushServiceType::Apns,
];

/// A seeded population of one account with two applications: its ids and definitions.
#[derive(Debug, Clone)]
pub struct Population {
    pub account: Account,
    pub apps: [Application; 2],
    pub definitions: Vec<AttributeDefinition>,
}

fn definition(account_id: Uuid, scope: AttributeScope, name: &str, attr_type: AttributeType) -> AttributeDefinition {
    AttributeDefinition {
        account_id,
        scope,
        name: name.into(),
        attr_type,
        object_schema: None,
        origin: DefinitionOrigin::Api,
        created_at: 5,
    }
}

fn list_definition(
    account_id: Uuid,
    scope: AttributeScope,
    name: &str,
    fields: &[(&str, AttributeType)],
) -> AttributeDefinition {
    let mut d = definition(account_id, scope, name, AttributeType::ListOfObjects);
    d.object_schema = Some(
        fields
            .iter()
            .map(|(n, t)| SchemaField {
                name: (*n).into(),
                field_type: *t,
            })
            .collect(),
    );
    d
}

fn definitions(account_id: Uuid) -> Vec<AttributeDefinition> {
    use AttributeScope::{Installation as I, Person as P};
    use AttributeType::*;
    vec![
        definition(account_id, P, "score", Decimal),
        definition(account_id, P, "nick", String),
        definition(account_id, P, "vip", Boolean),
        definition(account_id, P, "since", Date),
        definition(account_id, P, "seen", DateTime),
        list_definition(
            account_id,
            P,
            "orders",
            &[
                ("sku", String),
                ("price", Decimal),
                ("at", DateTime),
                ("gift", Boolean),
                ("day", Date),
            ],
        ),
        definition(account_id, I, "segmentNo", Decimal),
        definition(account_id, I, "channel", String),
        definition(account_id, I, "beta", Boolean),
        list_definition(account_id, I, "items", &[("k", String), ("n", Decimal)]),
    ]
}

fn number(rng: &mut Rng) -> Value {
    let n = rng.pick(NUMBERS);
    // Integral numbers sometimes as JSON integers: equal to their float form.
    if n.fract() == 0.0 && n.abs() < 1e15 && rng.chance(50) {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// Person custom attributes: each present or not, now and then of a wrong type (a filter reads
/// that as absent).
fn person_attributes(rng: &mut Rng) -> BTreeMap<String, Value> {
    let mut a = BTreeMap::new();
    if rng.chance(60) {
        a.insert("score".into(), if rng.chance(5) { json!("high") } else { number(rng) });
    }
    if let Some(n) = rng.maybe(50, NAMES) {
        a.insert("nick".into(), json!(n));
    }
    if rng.chance(50) {
        a.insert("vip".into(), json!(rng.chance(50)));
    }
    if let Some(d) = rng.maybe(50, DATES) {
        a.insert("since".into(), json!(d));
    }
    if let Some(d) = rng.maybe(50, DATE_TIMES) {
        a.insert("seen".into(), json!(d));
    }
    if rng.chance(60) {
        if rng.chance(5) {
            a.insert("orders".into(), json!("not a list"));
        } else {
            let items: Vec<Value> = (0..rng.below(4))
                .map(|_| {
                    json!({"sku": rng.pick(SKUS), "price": number(rng), "at": rng.pick(DATE_TIMES),
                           "gift": rng.chance(50), "day": rng.pick(DATES)})
                })
                .collect();
            a.insert("orders".into(), Value::Array(items));
        }
    }
    a
}

fn installation_attributes(rng: &mut Rng) -> BTreeMap<String, Value> {
    let mut a = BTreeMap::new();
    if rng.chance(50) {
        a.insert("segmentNo".into(), number(rng));
    }
    if let Some(c) = rng.maybe(50, CHANNELS) {
        a.insert("channel".into(), json!(c));
    }
    if rng.chance(40) {
        a.insert("beta".into(), json!(rng.chance(50)));
    }
    if rng.chance(40) {
        let items: Vec<Value> = (0..rng.below(3))
            .map(|_| json!({"k": rng.pick(CHANNELS), "n": number(rng)}))
            .collect();
        a.insert("items".into(), Value::Array(items));
    }
    a
}

fn random_person(rng: &mut Rng, account_id: Uuid, i: usize) -> Person {
    let mut p = Person::new_anonymous(account_id, 1_000);
    if rng.chance(60) {
        p.external_user_id = Some(format!("{}-{i}", rng.pick(&["ext", "EXT", "Ēxt"])));
    }
    p.first_name = rng.maybe(70, NAMES).map(String::from);
    p.middle_name = rng.maybe(20, NAMES).map(String::from);
    p.last_name = rng.maybe(50, NAMES).map(String::from);
    p.gender = rng.maybe(60, &[Gender::Male, Gender::Female]);
    p.birthday = rng.maybe(50, DATES).map(String::from);
    p.phones = (0..rng.below(3))
        .map(|k| format!("{}{:07}", rng.pick(&["38591", "38598"]), i * 10 + k))
        .collect();
    p.emails = (0..rng.below(3))
        .map(|k| {
            format!(
                "{}{i}.{k}@{}",
                rng.pick(&["Ana", "ivan", "ΣΊΣ"]),
                rng.pick(&["Example.COM", "x.org"])
            )
        })
        .collect();
    p.tags = (0..rng.below(4)).map(|_| rng.pick(TAGS).to_string()).collect();
    p.custom_attributes = person_attributes(rng);
    p.person_type = if rng.chance(40) {
        PersonType::Customer
    } else {
        PersonType::Lead
    };
    p
}

/// Installation times: whole seconds half of the time, so that `$eq` on createdAt can hit.
fn random_time(rng: &mut Rng) -> i64 {
    let seconds = 1_700_000_000 + rng.below(5) as i64 * 1_000;
    seconds * 1000 + if rng.chance(50) { 0 } else { rng.below(1000) as i64 }
}

fn random_installation(rng: &mut Rng, app: &Application, person_id: Uuid, n: usize) -> Installation {
    let created_at = random_time(rng);
    let push_service_type = rng.maybe(80, PUSH_TYPES);
    let token = push_service_type.filter(|_| rng.chance(70)).map(|_| format!("tok-{n}"));
    Installation {
        account_id: app.account_id,
        application_id: app.id,
        push_reg_id: Uuid::new_v4().to_string(),
        person_id,
        push_service_type,
        push_service_token: token,
        reg_enabled: rng.chance(80),
        is_primary: false,
        application_user_id: rng.maybe(30, NAMES).map(String::from),
        custom_attributes: installation_attributes(rng),
        system: SystemData {
            notifications_enabled: rng.maybe(80, &[true, false]),
            sdk_version: rng.maybe(80, VERSIONS).map(String::from),
            app_version: rng.maybe(80, VERSIONS).map(String::from),
            os: rng.maybe(85, OSES).map(String::from),
            os_version: rng.maybe(80, VERSIONS).map(String::from),
            device_manufacturer: rng.maybe(70, MAKERS).map(String::from),
            device_model: rng.maybe(60, NAMES).map(String::from),
            device_name: rng.maybe(60, NAMES).map(String::from),
            device_secure: rng.maybe(70, &[true, false]),
            language: rng.maybe(70, LANGUAGES).map(String::from),
            device_timezone_offset: rng.maybe(70, OFFSETS).map(String::from),
            inappchat: None,
            inbox: None,
            webrtcui: None,
        },
        created_at,
        updated_at: created_at,
        last_seen_at: created_at + rng.below(3) as i64 * 1000,
        token_cleared_at: None,
        token_cleared_reason: None,
    }
}

/// Seeds `persons` persons (0–3 installations each, in either application, one primary per
/// person and application at most) under a new account, through the store's write paths.
pub async fn seed_population(store: &dyn Store, seed: u64, persons: usize) -> Population {
    let mut rng = Rng::new(seed);
    let acc = account(1);
    let apps = [application(acc.id), application(acc.id)];
    let defs = definitions(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&acc).await.unwrap();
    for app in &apps {
        tx.insert_application(app).await.unwrap();
    }
    for d in &defs {
        tx.insert_attribute_definition(d).await.unwrap();
    }
    let mut n = 0;
    for i in 0..persons {
        let p = random_person(&mut rng, acc.id, i);
        tx.insert_person(&p).await.unwrap();
        let mut has_primary = [false, false];
        for _ in 0..rng.below(4) {
            let a = rng.below(2);
            let mut inst = random_installation(&mut rng, &apps[a], p.id, n);
            n += 1;
            if !has_primary[a] && rng.chance(50) {
                inst.is_primary = true;
                has_primary[a] = true;
            }
            tx.insert_installation(&inst).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    Population {
        account: acc,
        apps,
        definitions: defs,
    }
}

/// Seeds a large population like [`seed_population`]'s (without the definitions' variety of
/// timing), in pages of 1000 persons through the bulk insert paths: for measuring, not for the
/// timed suite.
pub async fn seed_bulk(store: &dyn Store, seed: u64, persons: usize) -> Population {
    let mut rng = Rng::new(seed);
    let acc = account(1);
    let apps = [application(acc.id), application(acc.id)];
    let defs = definitions(acc.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&acc).await.unwrap();
    for app in &apps {
        tx.insert_application(app).await.unwrap();
    }
    for d in &defs {
        tx.insert_attribute_definition(d).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut n = 0;
    for start in (0..persons).step_by(1000) {
        let mut page = Vec::new();
        let mut insts = Vec::new();
        for i in start..(start + 1000).min(persons) {
            let p = random_person(&mut rng, acc.id, i);
            let mut has_primary = [false, false];
            for _ in 0..rng.below(4) {
                let a = rng.below(2);
                let mut inst = random_installation(&mut rng, &apps[a], p.id, n);
                n += 1;
                if !has_primary[a] && rng.chance(50) {
                    inst.is_primary = true;
                    has_primary[a] = true;
                }
                insts.push(inst);
            }
            page.push(p);
        }
        let mut tx = store.begin().await.unwrap();
        tx.insert_persons(&page).await.unwrap();
        tx.insert_installations(&insts).await.unwrap();
        tx.commit().await.unwrap();
    }
    Population {
        account: acc,
        apps,
        definitions: defs,
    }
}

/// Times a preview (counts and a sample of 10, one read transaction each) and a search page of
/// typical filters over a population, printing one line per filter: for measuring.
pub async fn time_previews(store: &dyn Store, pop: &Population) {
    let filters = [
        json!({}),
        json!({"tags": "vip"}),
        json!({"score": {"$gte": 10}}),
        json!({"tags": "vip", "installation.os": "iOS"}),
        json!({"installation.appVersion": {"$gte": "3.2"}, "installation.regEnabled": true}),
        json!({"firstName": {"$startsWith": "an"}}),
        json!({"orders": {"$elemMatch": {"price": {"$gt": 10}, "sku": "A1"}}}),
        json!({"$or": [{"tags": "beta"}, {"nick": {"$contains": "an"}}]}),
    ];
    for f in filters {
        let filter = Filter::parse(&f, &pop.definitions, "filter").unwrap();
        for app in [None, Some(pop.apps[0].id)] {
            let scope = Scope {
                account_id: pop.account.id,
                application_id: app,
            };
            let started = std::time::Instant::now();
            let mut tx = store.begin_read().await.unwrap();
            let preview = tx.preview(scope, &filter, true, 10).await.unwrap();
            tx.rollback().await.unwrap();
            let preview_took = started.elapsed();
            let started = std::time::Instant::now();
            let mut tx = store.begin_read().await.unwrap();
            let page = tx.search_people(scope, &filter, None, 50).await.unwrap();
            tx.rollback().await.unwrap();
            println!(
                "{:<8} {f} in {}: preview {:>7.1} ms ({} people, {} installations, {} deliverable); search page of {} {:>7.1} ms",
                store.backend(),
                if app.is_some() { "one app" } else { "all apps" },
                preview_took.as_secs_f64() * 1000.0,
                preview.people,
                preview.installations,
                preview.deliverable_installations,
                page.len(),
                started.elapsed().as_secs_f64() * 1000.0,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random filters
// ---------------------------------------------------------------------------------------------

/// Values of the stored data that filters draw operands from, besides the vocabularies.
pub struct Vocab {
    push_reg_ids: Vec<String>,
    external_ids: Vec<String>,
    phones: Vec<String>,
    emails: Vec<String>,
    times: Vec<i64>,
}

impl Vocab {
    /// The vocabulary of one account of a snapshot.
    pub fn of(snap: &Snapshot, account_id: Uuid) -> Vocab {
        let persons = snap.persons.iter().filter(|p| p.account_id == account_id);
        let insts: Vec<&Installation> = snap
            .installations
            .iter()
            .filter(|i| i.account_id == account_id)
            .collect();
        let mut v = Vocab {
            push_reg_ids: insts.iter().map(|i| i.push_reg_id.clone()).collect(),
            external_ids: Vec::new(),
            phones: vec!["385911234567".into()],
            emails: vec!["nobody@example.com".into()],
            times: insts.iter().flat_map(|i| [i.created_at, i.last_seen_at]).collect(),
        };
        for p in persons {
            v.external_ids.extend(p.external_user_id.clone());
            v.phones.extend(p.phones.iter().cloned());
            v.emails.extend(p.emails.iter().cloned());
        }
        v.push_reg_ids.push(Uuid::new_v4().to_string());
        v.external_ids.push("ext-none".into());
        v.times.push(1_700_000_000_000);
        v
    }
}

/// Changes the case of some characters of `s`.
fn recase(rng: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| match rng.below(3) {
            0 => c.to_uppercase().collect::<String>(),
            1 => c.to_lowercase().collect::<String>(),
            _ => c.to_string(),
        })
        .collect()
}

/// A prefix (by characters) of `s`, case changed now and then.
fn prefix_of(rng: &mut Rng, s: &str) -> String {
    let n = s.chars().count();
    let p: String = s.chars().take(rng.below(n + 1)).collect();
    if rng.chance(50) { recase(rng, &p) } else { p }
}

/// A substring of `s`, case changed now and then.
fn infix_of(rng: &mut Rng, s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let start = rng.below(chars.len() + 1);
    let end = start + rng.below(chars.len() - start + 1);
    let p: String = chars[start..end].iter().collect();
    if rng.chance(50) { recase(rng, &p) } else { p }
}

/// The kinds of the filter language, with what operands are drawn from.
#[derive(Clone, Copy)]
enum K {
    Str(&'static [&'static str]),
    ExternalId,
    PushRegId,
    Enum(&'static [&'static str]),
    Decimal,
    Boolean,
    Date,
    DateTime,
    Millis,
    Version,
    Phones,
    Emails,
    Tags,
    Orders,
    Items,
}

const FIELDS: &[(&str, K)] = &[
    ("externalUserId", K::ExternalId),
    ("firstName", K::Str(NAMES)),
    ("middleName", K::Str(NAMES)),
    ("lastName", K::Str(NAMES)),
    ("gender", K::Enum(&["Male", "Female"])),
    ("birthday", K::Date),
    ("type", K::Enum(&["LEAD", "CUSTOMER"])),
    ("phones", K::Phones),
    ("emails", K::Emails),
    ("tags", K::Tags),
    ("score", K::Decimal),
    ("customAttributes.score", K::Decimal),
    ("nick", K::Str(NAMES)),
    ("vip", K::Boolean),
    ("since", K::Date),
    ("customAttributes.seen", K::DateTime),
    ("orders", K::Orders),
    ("installation.pushRegId", K::PushRegId),
    (
        "installation.pushServiceType",
        K::Enum(&["Firebase", "GCM", "HMS", "APNS"]),
    ),
    ("installation.os", K::Str(OSES)),
    ("installation.deviceManufacturer", K::Str(MAKERS)),
    ("installation.deviceModel", K::Str(NAMES)),
    ("installation.deviceName", K::Str(NAMES)),
    ("installation.language", K::Str(LANGUAGES)),
    ("installation.deviceTimezoneOffset", K::Str(OFFSETS)),
    ("installation.applicationUserId", K::Str(NAMES)),
    ("installation.osVersion", K::Version),
    ("installation.appVersion", K::Version),
    ("installation.sdkVersion", K::Version),
    ("installation.regEnabled", K::Boolean),
    ("installation.notificationsEnabled", K::Boolean),
    ("installation.deviceSecure", K::Boolean),
    ("installation.isPrimary", K::Boolean),
    ("installation.hasPushServiceToken", K::Boolean),
    ("installation.createdAt", K::Millis),
    ("installation.lastSeenAt", K::Millis),
    ("installation.customAttributes.segmentNo", K::Decimal),
    ("installation.customAttributes.channel", K::Str(CHANNELS)),
    ("installation.customAttributes.beta", K::Boolean),
    ("installation.customAttributes.items", K::Items),
];

const ORDER_FIELDS: &[(&str, K)] = &[
    ("sku", K::Str(SKUS)),
    ("price", K::Decimal),
    ("at", K::DateTime),
    ("gift", K::Boolean),
    ("day", K::Date),
];
const ITEM_FIELDS: &[(&str, K)] = &[("k", K::Str(CHANNELS)), ("n", K::Decimal)];

/// The operators §4.4 allows for a kind.
fn operators(k: K) -> &'static [&'static str] {
    match k {
        K::Str(_) | K::ExternalId | K::PushRegId => {
            &["$eq", "$ne", "$in", "$nin", "$exists", "$startsWith", "$contains"]
        }
        K::Enum(_) => &["$eq", "$ne", "$in", "$nin", "$exists"],
        K::Decimal => &["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"],
        K::Boolean => &["$eq", "$ne", "$exists"],
        K::Date | K::DateTime | K::Millis => &["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$exists"],
        K::Version => &[
            "$eq",
            "$ne",
            "$in",
            "$nin",
            "$gt",
            "$gte",
            "$lt",
            "$lte",
            "$exists",
            "$startsWith",
        ],
        K::Phones | K::Emails | K::Tags => &["$eq", "$in", "$all", "$nin", "$exists", "$startsWith"],
        K::Orders | K::Items => &["$elemMatch", "$exists", "$elemMatch"],
    }
}

/// The filter generator over a vocabulary.
pub struct FilterGen<'a> {
    rng: Rng,
    vocab: &'a Vocab,
}

impl<'a> FilterGen<'a> {
    /// A generator for a seed.
    pub fn new(seed: u64, vocab: &'a Vocab) -> FilterGen<'a> {
        FilterGen {
            rng: Rng::new(seed),
            vocab,
        }
    }

    /// A text value a field of kind `k` may hold.
    fn text(&mut self, k: K) -> String {
        let r = &mut self.rng;
        match k {
            K::Str(vocab) => r.pick(vocab).to_string(),
            K::ExternalId => r.pick(&self.vocab.external_ids),
            K::PushRegId => {
                let id = r.pick(&self.vocab.push_reg_ids);
                if r.chance(30) { id.to_uppercase() } else { id }
            }
            K::Enum(values) => r.pick(values).to_string(),
            K::Version => r.pick(VERSIONS).to_string(),
            K::Tags => r.pick(TAGS).to_string(),
            K::Phones => r.pick(&self.vocab.phones),
            K::Emails => r.pick(&self.vocab.emails),
            _ => String::new(),
        }
    }

    /// An operand of `$eq` and the like.
    fn value(&mut self, k: K) -> Value {
        match k {
            K::Decimal => number(&mut self.rng),
            K::Boolean => json!(self.rng.chance(50)),
            K::Date => json!(self.rng.pick(DATES)),
            K::DateTime => {
                let t = self.rng.pick(DATE_TIMES);
                // Other accepted input forms of the same instants.
                json!(match self.rng.below(3) {
                    0 => t.replace('Z', "+00:00"),
                    1 => t.replace('Z', ".5Z"),
                    _ => t.to_string(),
                })
            }
            K::Millis => json!(timestamp(self.rng.pick(&self.vocab.times))),
            K::Phones => {
                // Phone input forms normalise to the stored digits.
                let digits = self.text(k);
                json!(match self.rng.below(3) {
                    0 => format!("+{digits}"),
                    1 => format!("+{} {}-{}", &digits[..3], &digits[3..5], &digits[5..]),
                    _ => digits,
                })
            }
            K::Emails => {
                let e = self.text(k);
                json!(if self.rng.chance(50) {
                    recase(&mut self.rng, &e)
                } else {
                    e
                })
            }
            other => json!(self.text(other)),
        }
    }

    fn values(&mut self, k: K, min: usize) -> Value {
        let n = min + self.rng.below(4);
        Value::Array((0..n).map(|_| self.value(k)).collect())
    }

    fn prefix(&mut self, k: K) -> Value {
        if let K::Phones = k {
            let digits = self.text(k);
            let p: String = digits.chars().take(self.rng.below(8)).collect();
            return json!(if self.rng.chance(50) { format!("+{p}") } else { p });
        }
        let s = self.text(k);
        json!(prefix_of(&mut self.rng, &s))
    }

    /// One operator with its operand.
    fn operator(&mut self, name: &str, k: K, depth: usize) -> Value {
        match name {
            "$in" | "$all" => self.values(k, 1),
            "$nin" => self.values(k, 0),
            "$exists" => json!(self.rng.chance(50)),
            "$startsWith" => self.prefix(k),
            "$contains" => {
                let s = self.text(k);
                json!(infix_of(&mut self.rng, &s))
            }
            "$elemMatch" => {
                let fields = if let K::Orders = k { ORDER_FIELDS } else { ITEM_FIELDS };
                self.filter_over(fields, depth + 1, 2)
            }
            _ => self.value(k),
        }
    }

    /// `{"field": literal}` or `{"field": {"$op": v, ...}}`.
    fn condition(&mut self, fields: &[(&str, K)], depth: usize) -> (String, Value) {
        let (name, k) = self.rng.pick(fields);
        let ops = operators(k);
        if !matches!(k, K::Orders | K::Items) && self.rng.chance(25) {
            return (name.to_string(), self.value(k));
        }
        let mut object = serde_json::Map::new();
        for _ in 0..1 + self.rng.below(2) {
            let op = self.rng.pick(ops);
            let operand = self.operator(op, k, depth);
            object.insert(op.to_string(), operand);
        }
        (name.to_string(), Value::Object(object))
    }

    /// A filter over `fields`, nested at most `max_depth` more levels.
    fn filter_over(&mut self, fields: &[(&str, K)], depth: usize, max_depth: usize) -> Value {
        let nest = depth < max_depth;
        match self.rng.below(12) {
            0 | 1 if nest => {
                let op = if self.rng.chance(50) { "$and" } else { "$or" };
                let subs: Vec<Value> = (0..1 + self.rng.below(3))
                    .map(|_| self.filter_over(fields, depth + 1, max_depth))
                    .collect();
                json!({ op: subs })
            }
            2 if nest => json!({"$not": self.filter_over(fields, depth + 1, max_depth)}),
            3 => json!({}),
            _ => {
                let mut object = serde_json::Map::new();
                for _ in 0..1 + self.rng.below(2) {
                    let (name, operand) = self.condition(fields, depth);
                    object.insert(name, operand);
                }
                Value::Object(object)
            }
        }
    }

    /// A random filter over every field of the population.
    pub fn filter(&mut self) -> Value {
        self.filter_over(FIELDS, 1, 4)
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the store against the reference
// ---------------------------------------------------------------------------------------------

/// What the reference says for one filter and scope.
struct Expected {
    /// Matching (person id, pushRegId, deliverable, primary), by person then (createdAt, pushRegId).
    pairs: Vec<(Uuid, String, bool, bool)>,
    /// Persons found by search, by id.
    found: Vec<Uuid>,
}

fn ordered_installations(snap: &Snapshot, person_id: Uuid) -> Vec<&Installation> {
    let mut v: Vec<&Installation> = snap.installations.iter().filter(|i| i.person_id == person_id).collect();
    v.sort_by(|a, b| (a.created_at, &a.push_reg_id).cmp(&(b.created_at, &b.push_reg_id)));
    v
}

fn expected(snap: &Snapshot, scope: Scope, filter: &Filter) -> Expected {
    let mut pairs = Vec::new();
    let mut found = Vec::new();
    let mut persons: Vec<&Person> = snap
        .persons
        .iter()
        .filter(|p| p.account_id == scope.account_id)
        .collect();
    persons.sort_by_key(|p| p.id);
    for p in persons {
        let in_scope: Vec<&Installation> = ordered_installations(snap, p.id)
            .into_iter()
            .filter(|i| scope.application_id.is_none_or(|a| i.application_id == a))
            .collect();
        let mut any = false;
        for i in &in_scope {
            if filter.matches(p, Some(i)) {
                any = true;
                pairs.push((p.id, i.push_reg_id.clone(), i.is_deliverable(), i.is_primary));
            }
        }
        if any || (in_scope.is_empty() && filter.matches(p, None)) {
            found.push(p.id);
        }
    }
    Expected { pairs, found }
}

/// Checks every filter on both scopes (all applications, the first one): preview counts (with
/// `targetOnlyPrimaryDevices` too for every other filter), the sample, people search (one page,
/// and walked in small pages for every 7th filter), and the audience walked in pages (every 3rd). Returns how many (filter, scope) pairs
/// matched something, so that a caller can tell the filters were not all empty.
pub async fn check_filters(store: &dyn Store, pop: &Population, filters: &[Value]) -> usize {
    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    let mut non_empty = 0;
    for (n, json) in filters.iter().enumerate() {
        let filter = Filter::parse(json, &pop.definitions, "filter")
            .unwrap_or_else(|e| panic!("generated filter {json} does not parse: {e:?}"));
        for app in [None, Some(pop.apps[0].id)] {
            let scope = Scope {
                account_id: pop.account.id,
                application_id: app,
            };
            let want = expected(&snap, scope, &filter);
            let ctx = format!("filter #{n} {json} in scope {app:?}");
            let people: BTreeSet<Uuid> = want.pairs.iter().map(|p| p.0).collect();
            if !want.pairs.is_empty() {
                non_empty += 1;
            }
            // `targetOnlyPrimaryDevices` on every other filter (each statement costs a round
            // trip on PostgreSQL; the suite must stay fast).
            let primary_modes: &[bool] = if n % 2 == 0 { &[false, true] } else { &[false] };
            for &primary_only in primary_modes {
                let sample_size = [0, 1, 3, 100][n % 4];
                let got = tx.preview(scope, &filter, primary_only, sample_size).await.unwrap();
                assert_eq!(got.installations, want.pairs.len() as u64, "installations of {ctx}");
                assert_eq!(got.people, people.len() as u64, "people of {ctx}");
                let deliverable = want.pairs.iter().filter(|p| p.2 && (!primary_only || p.3)).count() as u64;
                assert_eq!(got.deliverable_installations, deliverable, "deliverable of {ctx}");
                let sample: Vec<(Uuid, Vec<String>)> = got
                    .sample
                    .iter()
                    .map(|s| (s.person.id, s.installations.clone()))
                    .collect();
                let want_sample: Vec<(Uuid, Vec<String>)> = people
                    .iter()
                    .take(sample_size as usize)
                    .map(|p| {
                        let ids = want.pairs.iter().filter(|q| q.0 == *p).map(|q| q.1.clone()).collect();
                        (*p, ids)
                    })
                    .collect();
                assert_eq!(sample, want_sample, "sample of {ctx}");
                for s in &got.sample {
                    let stored = snap.persons.iter().find(|p| p.id == s.person.id);
                    assert_eq!(Some(&s.person), stored, "sample person of {ctx}");
                }
            }
            let got = tx.search_people(scope, &filter, None, 500).await.unwrap();
            let ids: Vec<Uuid> = got.iter().map(|f| f.person.id).collect();
            assert_eq!(ids, want.found, "search of {ctx}");
            for f in &got {
                let all: Vec<Installation> = ordered_installations(&snap, f.person.id).into_iter().cloned().collect();
                assert_eq!(f.installations, all, "installations of a found person, {ctx}");
                assert_eq!(Some(&f.person), snap.persons.iter().find(|p| p.id == f.person.id));
            }
            if n % 7 == 0 {
                let mut walked = Vec::new();
                let mut after = None;
                loop {
                    let page = tx.search_people(scope, &filter, after, 7).await.unwrap();
                    assert!(page.len() <= 7);
                    let Some(last) = page.last() else { break };
                    after = Some(last.person.id);
                    walked.extend(page.iter().map(|f| f.person.id));
                }
                assert_eq!(walked, want.found, "paged search of {ctx}");
            }
            if n % 3 != 0 {
                continue;
            }
            let mut audience = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = tx.audience_page(scope, &filter, after.as_deref(), 50).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.clone());
                audience.extend(page);
            }
            let mut want_audience: Vec<String> = want.pairs.iter().map(|p| p.1.clone()).collect();
            want_audience.sort();
            assert_eq!(audience, want_audience, "audience of {ctx}");
        }
    }
    tx.rollback().await.unwrap();
    non_empty
}

/// Filters from a seed over a vocabulary.
pub fn random_filters(seed: u64, vocab: &Vocab, n: usize) -> Vec<Value> {
    let mut g = FilterGen::new(seed, vocab);
    (0..n).map(|_| g.filter()).collect()
}

async fn vocab_of(store: &dyn Store, account_id: Uuid) -> Vocab {
    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    tx.rollback().await.unwrap();
    Vocab::of(&snap, account_id)
}

/// Two hundred seeded random filters over a seeded population: the store's preview counts and
/// sample, people search and audience pages equal what `Filter::matches` computes over the
/// snapshot, for the whole account and for one application.
pub async fn random_filters_agree_with_the_reference(store: Arc<dyn Store>) {
    let seed = 0x5EED_0001;
    let pop = seed_population(&*store, seed, 120).await;
    let vocab = vocab_of(&*store, pop.account.id).await;
    let filters = random_filters(seed, &vocab, 200);
    let non_empty = check_filters(&*store, &pop, &filters).await;
    // The generator is meant to hit: most filters must match something somewhere.
    assert!(
        non_empty > 100,
        "only {non_empty} of 400 (filter, scope) pairs matched anything"
    );
    // Every operator of §4.4 appears among the filters.
    let all = serde_json::to_string(&filters).unwrap();
    for op in [
        "$eq",
        "$ne",
        "$in",
        "$nin",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$exists",
        "$startsWith",
        "$contains",
        "$all",
        "$elemMatch",
        "$and",
        "$or",
        "$not",
    ] {
        assert!(all.contains(&format!("\"{op}\"")), "no filter uses {op}");
    }
}

/// The index follows every write: persons updated (names, tags, attributes), installations
/// updated and moved to other persons, installations and persons deleted; filters still agree.
pub async fn filters_agree_after_updates_moves_and_deletes(store: Arc<dyn Store>) {
    updates_moves_and_deletes(store, false).await
}

/// [`filters_agree_after_updates_moves_and_deletes`] with the updates given the stored state
/// (`Tx::update_person_from`, `update_installation_from`: SQLite then diffs keys and index rows
/// against it instead of reading them).
pub async fn filters_agree_after_updates_from_the_stored_state(store: Arc<dyn Store>) {
    updates_moves_and_deletes(store, true).await
}

async fn updates_moves_and_deletes(store: Arc<dyn Store>, from_stored: bool) {
    let seed = 0x5EED_0002;
    let pop = seed_population(&*store, seed, 60).await;
    let mut rng = Rng::new(seed ^ 0xFFFF);
    let mut tx = store.begin().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    let persons: Vec<Person> = snap.persons.clone();
    for (i, p) in persons.iter().enumerate() {
        match rng.below(4) {
            0 => {
                let mut q = random_person(&mut rng, p.account_id, 1000 + i);
                q.id = p.id;
                q.version = p.version + 1;
                update_person(&mut *tx, p, &q, from_stored).await;
            }
            1 => {
                let mut q = p.clone();
                q.tags.clear();
                q.custom_attributes.clear();
                q.first_name = None;
                update_person(&mut *tx, p, &q, from_stored).await;
            }
            _ => {}
        }
    }
    for inst in &snap.installations {
        match rng.below(5) {
            0 => {
                let mut changed = random_installation(&mut rng, &pop.apps[0], inst.person_id, 0);
                changed.push_reg_id = inst.push_reg_id.clone();
                changed.application_id = inst.application_id;
                changed.push_service_token = inst.push_service_token.clone();
                changed.push_service_type = inst.push_service_type;
                changed.is_primary = inst.is_primary;
                update_installation(&mut *tx, inst, &changed, from_stored).await;
            }
            1 => {
                let mut moved = inst.clone();
                moved.person_id = rng.pick(&persons).id;
                moved.is_primary = false;
                moved.custom_attributes.clear();
                update_installation(&mut *tx, inst, &moved, from_stored).await;
            }
            2 => {
                assert!(
                    tx.delete_installation(inst.account_id, &inst.push_reg_id)
                        .await
                        .unwrap()
                );
            }
            _ => {}
        }
    }
    // Persons left without installations: some are deleted (their index rows go with them).
    for p in &persons {
        if tx.count_installations_of_person(p.account_id, p.id).await.unwrap() == 0 && rng.chance(50) {
            assert!(tx.delete_person(p.account_id, p.id).await.unwrap());
        }
    }
    tx.commit().await.unwrap();
    let vocab = vocab_of(&*store, pop.account.id).await;
    let filters = random_filters(seed, &vocab, 120);
    let non_empty = check_filters(&*store, &pop, &filters).await;
    assert!(
        non_empty > 40,
        "only {non_empty} (filter, scope) pairs matched anything"
    );
}

async fn update_person(tx: &mut dyn Tx, stored: &Person, after: &Person, from_stored: bool) {
    if from_stored {
        tx.update_person_from(stored, after).await.unwrap();
    } else {
        tx.update_person(after).await.unwrap();
    }
}

async fn update_installation(tx: &mut dyn Tx, stored: &Installation, after: &Installation, from_stored: bool) {
    if from_stored {
        tx.update_installation_from(stored, after).await.unwrap();
    } else {
        tx.update_installation(after).await.unwrap();
    }
}

/// Deleting an attribute's values (people.md §8.2 via management-api.md §7.3) removes every
/// kind of its index rows — strings, numbers, booleans, list headers and item fields, of
/// persons and installations — so no filter on it matches anybody any more, and the other
/// attributes' rows stay (filters still agree with the reference on everything).
pub async fn deleted_attribute_values_match_no_filter(store: Arc<dyn Store>) {
    let pop = seed_population(&*store, 0x5EED_0003, 80).await;
    let deleted = [
        (AttributeScope::Person, "nick", "nick"),
        (AttributeScope::Person, "score", "score"),
        (AttributeScope::Person, "vip", "vip"),
        (AttributeScope::Person, "orders", "orders"),
        (
            AttributeScope::Installation,
            "beta",
            "installation.customAttributes.beta",
        ),
        (
            AttributeScope::Installation,
            "items",
            "installation.customAttributes.items",
        ),
    ];
    let exists = |field: &str| json!({ field: {"$exists": true} });
    let kept = [
        exists("since"),
        exists("seen"),
        exists("installation.customAttributes.channel"),
        exists("installation.customAttributes.segmentNo"),
    ];
    let gone: Vec<Value> = deleted
        .iter()
        .map(|(_, _, field)| exists(field))
        .chain([
            json!({"vip": true}),
            json!({"nick": {"$startsWith": "a"}}),
            json!({"orders": {"$elemMatch": {"price": {"$gte": 0}}}}),
        ])
        .collect();
    assert!(
        check_filters(&*store, &pop, &gone).await > 0,
        "the attributes have values before"
    );
    let mut tx = store.begin().await.unwrap();
    for (scope, name, _) in deleted {
        tx.delete_attribute_values(pop.account.id, scope, name, 50_000)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        check_filters(&*store, &pop, &gone).await,
        0,
        "no filter on them matches"
    );
    assert!(check_filters(&*store, &pop, &kept).await > 0, "the others keep theirs");
}

/// Segments: insert, read, list by name, update, delete; the name is unique per account (the
/// constraint the core maps to `409 ALREADY_EXISTS`), another account may reuse it.
pub async fn segments_round_trip_with_a_unique_name_per_account(store: Arc<dyn Store>) {
    let acc = account(1);
    let other = account(2);
    let segment = |account_id: Uuid, name: &str| Segment {
        account_id,
        id: Uuid::new_v4(),
        name: name.into(),
        description: Some("the best \u{1F600}".into()),
        filter: json!({"tags": "vip", "z": {"$gt": 1}, "a": [1.5, "x"]}),
        valid: true,
        created_at: 10,
        updated_at: 11,
    };
    let b = segment(acc.id, "b");
    let mut a = segment(acc.id, "a");
    a.description = None;
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&acc).await.unwrap();
    tx.insert_account(&other).await.unwrap();
    tx.insert_segment(&b).await.unwrap();
    tx.insert_segment(&a).await.unwrap();
    tx.insert_segment(&segment(other.id, "b")).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let taken = conflict_on(tx.insert_segment(&segment(acc.id, "b")).await);
    assert_eq!(taken, Constraint::Other(SEGMENT_NAME_CONSTRAINT.into()));
    tx.rollback().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.segment(acc.id, b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(
        tx.segment(other.id, b.id).await.unwrap(),
        None,
        "another account's segment"
    );
    assert_eq!(tx.segments(acc.id).await.unwrap(), vec![a.clone(), b.clone()]);
    let mut renamed = b.clone();
    renamed.name = "a".into();
    let taken = conflict_on(tx.update_segment(&renamed).await);
    assert_eq!(taken, Constraint::Other(SEGMENT_NAME_CONSTRAINT.into()));
    tx.rollback().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let mut changed = b.clone();
    changed.name = "c".into();
    changed.valid = false;
    changed.filter = json!({});
    changed.updated_at = 99;
    tx.update_segment(&changed).await.unwrap();
    let mut ghost = changed.clone();
    ghost.id = Uuid::new_v4();
    assert!(matches!(tx.update_segment(&ghost).await, Err(StoreError::NotFound)));
    assert!(tx.delete_segment(acc.id, a.id).await.unwrap());
    assert!(!tx.delete_segment(acc.id, a.id).await.unwrap());
    assert!(!tx.delete_segment(other.id, changed.id).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.segments(acc.id).await.unwrap(), vec![changed]);
    tx.rollback().await.unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `pub async fn` of this module is in the macro's list, and nothing else is.
    #[test]
    fn the_suite_runs_every_audience_scenario() {
        let mut listed: Vec<&str> = audience_store_suite!(@list (names)).to_vec();
        let mut defined: Vec<&str> = include_str!("audience.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|rest| rest.split('(').next().unwrap_or(rest))
            .filter(|name| !["seed_population", "seed_bulk", "time_previews", "check_filters"].contains(name))
            .collect();
        defined.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, defined);
    }

    /// The generator only makes filters that parse (every kind, operator and operand form).
    #[test]
    fn generated_filters_parse() {
        let vocab = Vocab {
            push_reg_ids: vec![Uuid::new_v4().to_string()],
            external_ids: vec!["ext-1".into()],
            phones: vec!["385911234567".into()],
            emails: vec!["Ana@Example.com".into()],
            times: vec![1_700_000_000_123],
        };
        let defs = definitions(Uuid::nil());
        for f in random_filters(7, &vocab, 2000) {
            if let Err(e) = Filter::parse(&f, &defs, "filter") {
                panic!("{f} does not parse: {e:?}");
            }
        }
    }
}
