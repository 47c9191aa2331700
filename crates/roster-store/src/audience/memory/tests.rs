//! The index against the reference semantics: random persons and installations, a few hundred
//! filters parsed from JSON (every operator on every held field, and combinations), every
//! scope; then random replacements and removals, and the same again.

use std::collections::BTreeSet;

use roster_model::filter::Filter;
use roster_model::{
    AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, Gender, Installation, Person, PersonType,
    PushServiceType, SystemData,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Counts, MemoryIndex};
use crate::audience::Scope;

/// A small deterministic generator (xorshift64*), so that a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

const TAGS: [&str; 6] = ["a", "b", "c", "vip", "Beta", "beta"];
const NAMES: [&str; 5] = ["Ana", "ana", "Bo", "Émile", "Zoë"];
/// Two of a month and two numbers of one bucket of the index (8 and 8.25): comparisons that
/// split a bucket.
const DATES: [&str; 6] = [
    "1970-01-01",
    "1985-06-15",
    "1999-12-01",
    "1999-12-31",
    "2001-02-03",
    "2020-07-04",
];
const OSES: [&str; 3] = ["Android", "iOS", "HarmonyOS"];
const VERSIONS: [&str; 6] = ["9", "10", "10.0", "11.2.1", "2.10", "beta"];

fn definitions(account_id: Uuid) -> Vec<AttributeDefinition> {
    let def = |scope, name: &str, attr_type| AttributeDefinition {
        account_id,
        scope,
        name: name.to_string(),
        attr_type,
        object_schema: None,
        origin: DefinitionOrigin::Api,
        created_at: 0,
    };
    vec![
        def(AttributeScope::Person, "score", AttributeType::Decimal),
        def(AttributeScope::Person, "city", AttributeType::String),
        def(AttributeScope::Person, "since", AttributeType::Date),
        def(AttributeScope::Person, "seen", AttributeType::DateTime),
        def(AttributeScope::Person, "vip", AttributeType::Boolean),
        def(AttributeScope::Installation, "lang", AttributeType::String),
        def(AttributeScope::Installation, "level", AttributeType::Decimal),
    ]
}

fn person(rng: &mut Rng, account_id: Uuid, id: Uuid) -> Person {
    let mut p = Person::new_anonymous(account_id, 0);
    p.id = id;
    if rng.chance(60) {
        p.external_user_id = Some(format!("ext-{}", rng.below(40)));
    }
    if rng.chance(50) {
        p.first_name = Some(rng.pick(&NAMES).to_string());
    }
    if rng.chance(30) {
        p.gender = Some(if rng.chance(50) { Gender::Male } else { Gender::Female });
    }
    if rng.chance(50) {
        p.birthday = Some(rng.pick(&DATES).to_string());
    }
    if rng.chance(40) {
        p.person_type = PersonType::Customer;
    }
    p.tags = TAGS
        .iter()
        .filter(|_| rng.chance(30))
        .map(|t| t.to_string())
        .collect::<BTreeSet<_>>();
    let attrs = &mut p.custom_attributes;
    if rng.chance(70) {
        // Mostly numbers; sometimes a string, stored before the definition said DECIMAL.
        let v = match rng.below(9) {
            7 => json!(8),
            8 => json!(8.25),
            0 => json!(-1.5),
            1 => json!(0),
            2 => json!(2),
            3 => json!(3.25),
            4 => json!(10),
            5 => json!(-0.0),
            _ => json!("7"),
        };
        attrs.insert("score".into(), v);
    }
    if rng.chance(60) {
        attrs.insert("city".into(), json!(rng.pick(&["Zagreb", "zagreb", "Split", "Osijek"])));
    }
    if rng.chance(60) {
        attrs.insert("since".into(), json!(rng.pick(&DATES)));
    }
    if rng.chance(40) {
        let t = rng.pick(&["2020-01-01T00:00:00Z", "2021-06-30T12:00:00Z", "2024-02-29T23:59:59Z"]);
        attrs.insert("seen".into(), json!(t));
    }
    if rng.chance(50) {
        attrs.insert("vip".into(), json!(rng.chance(50)));
    }
    if rng.chance(20) {
        attrs.insert("orders".into(), json!([{"sku": "x", "qty": 1}]));
    }
    p
}

/// `legacy`: percent of pushRegIds that are not canonical UUIDs.
fn installation(rng: &mut Rng, p: &Person, apps: &[Uuid], legacy: u64) -> Installation {
    let mut system = SystemData::default();
    if rng.chance(80) {
        system.os = Some(rng.pick(&OSES).to_string());
    }
    if rng.chance(70) {
        system.os_version = Some(rng.pick(&VERSIONS).to_string());
    }
    if rng.chance(60) {
        system.notifications_enabled = Some(rng.chance(70));
    }
    if rng.chance(50) {
        system.language = Some(rng.pick(&["en", "hr", "EN"]).to_string());
    }
    let mut custom = roster_model::CustomAttributes::new();
    if rng.chance(50) {
        custom.insert("lang".into(), json!(rng.pick(&["en", "de", "hr"])));
    }
    if rng.chance(50) {
        custom.insert("level".into(), json!(rng.below(4)));
    }
    Installation {
        account_id: p.account_id,
        application_id: *rng.pick(apps),
        // Now and then an id the mobile API would not assign (imported data).
        push_reg_id: if rng.chance(legacy) {
            format!("Legacy-{}", rng.next())
        } else {
            rng.uuid().to_string()
        },
        person_id: p.id,
        push_service_type: Some(*rng.pick(&[PushServiceType::Firebase, PushServiceType::Apns])),
        push_service_token: rng.chance(80).then(|| format!("tok-{}", rng.next())),
        reg_enabled: rng.chance(85),
        is_primary: rng.chance(40),
        application_user_id: rng.chance(30).then(|| format!("u{}", rng.below(5))),
        custom_attributes: custom,
        system,
        created_at: 0,
        updated_at: 0,
        last_seen_at: 0,
        token_cleared_at: None,
        token_cleared_reason: None,
    }
}

/// Filters exercising every operator on every held field, several the index leaves to SQL,
/// and random combinations of them.
fn filters(rng: &mut Rng) -> Vec<Value> {
    let mut base = vec![
        json!({}),
        json!({"tags": "vip"}),
        json!({"tags": {"$in": ["a", "beta"]}}),
        json!({"tags": {"$nin": ["a", "b"]}}),
        json!({"tags": {"$all": ["a", "b"]}}),
        json!({"tags": {"$exists": true}}),
        json!({"tags": {"$exists": false}}),
        json!({"tags": {"$startsWith": "BE"}}),
        json!({"externalUserId": "ext-3"}),
        json!({"externalUserId": {"$in": ["ext-1", "ext-2", "nobody"]}}),
        json!({"externalUserId": {"$nin": ["ext-1", "ext-2"]}}),
        json!({"externalUserId": {"$exists": false}}),
        json!({"externalUserId": {"$startsWith": "EXT-1"}}),
        json!({"firstName": "ana"}),
        json!({"firstName": {"$ne": "Ana"}}),
        json!({"firstName": {"$contains": "ë"}}),
        json!({"gender": "Male"}),
        json!({"gender": {"$ne": "Female"}}),
        json!({"type": "CUSTOMER"}),
        json!({"birthday": {"$lt": "1999-12-31"}}),
        json!({"birthday": {"$gte": "1985-06-15"}}),
        json!({"birthday": {"$exists": true}}),
        json!({"score": {"$gt": 0}}),
        json!({"score": {"$gte": 0, "$lt": 10}}),
        json!({"score": {"$lte": -1.5}}),
        json!({"score": {"$gt": 8}}),
        json!({"score": {"$lt": 8.25}}),
        json!({"birthday": {"$gt": "1999-12-01"}}),
        json!({"score": {"$gte": 8.25}}),
        json!({"score": {"$lte": 8}}),
        json!({"birthday": {"$gte": "1999-12-31"}}),
        json!({"since": {"$lte": "1999-12-01"}}),
        // Bounds combined under one `$and`: a band, an empty one, a point, apart, dates-times.
        json!({"score": {"$gt": 10, "$lt": 0}}),
        json!({"score": {"$gte": 2, "$lte": 2}}),
        json!({"score": {"$gt": -1.5, "$lte": 8.25, "$ne": 2}}),
        json!({"$and": [{"score": {"$gt": 0}}, {"tags": "a"}, {"score": {"$lte": 8.25}}]}),
        json!({"seen": {"$gt": "2020-01-01T00:00:00Z", "$lt": "2024-02-29T23:59:59Z"}}),
        json!({"birthday": {"$gte": "1985-06-15", "$lt": "1999-12-31"}}),
        json!({"score": 0}),
        json!({"score": {"$ne": 2}}),
        json!({"score": {"$in": [2, 3.25]}}),
        json!({"score": {"$exists": true}}),
        json!({"score": {"$exists": false}}),
        json!({"city": "Zagreb"}),
        json!({"city": {"$startsWith": "zag"}}),
        json!({"city": {"$nin": ["Split"]}}),
        json!({"customAttributes.since": {"$lt": "2000-01-01"}}),
        json!({"since": {"$gt": "1985-06-15", "$lte": "2020-07-04"}}),
        json!({"seen": {"$gte": "2021-06-30T12:00:00Z"}}),
        json!({"seen": "2020-01-01T00:00:00Z"}),
        json!({"vip": true}),
        json!({"vip": {"$ne": true}}),
        json!({"installation.os": "iOS"}),
        json!({"installation.os": {"$in": ["iOS", "HarmonyOS"]}}),
        json!({"installation.os": {"$exists": false}}),
        json!({"installation.osVersion": {"$gte": "10"}}),
        json!({"installation.osVersion": {"$lt": "10.1"}}),
        json!({"installation.osVersion": "10"}),
        json!({"installation.isPrimary": true}),
        json!({"installation.regEnabled": false}),
        json!({"installation.hasPushServiceToken": true}),
        json!({"installation.notificationsEnabled": {"$ne": true}}),
        json!({"installation.pushServiceType": "APNS"}),
        json!({"installation.language": {"$startsWith": "e"}}),
        json!({"installation.applicationUserId": {"$exists": true}}),
        json!({"installation.customAttributes.lang": "hr"}),
        json!({"installation.customAttributes.level": {"$gte": 2}}),
        json!({"installation.customAttributes.level": {"$exists": false}}),
        // Left to SQL by the index.
        json!({"phones": {"$exists": true}}),
        json!({"installation.createdAt": {"$gt": "2020-01-01T00:00:00Z"}}),
    ];
    // The five of the benchmark: one tag; tag AND number range; date before; OR of two tags NOT
    // a third; an external-id list (primary-only is a preview flag).
    base.extend([
        json!({"$and": [{"tags": "a"}, {"score": {"$gte": 0, "$lte": 5}}]}),
        json!({"since": {"$lt": "2000-01-01"}}),
        json!({"$and": [{"$or": [{"tags": "a"}, {"tags": "b"}]}, {"$not": {"tags": "c"}}]}),
    ]);
    let singles = base.clone();
    for _ in 0..150 {
        let n = 2 + rng.below(3);
        let parts: Vec<Value> = (0..n).map(|_| rng.pick(&singles).clone()).collect();
        let combined = match rng.below(3) {
            0 => json!({"$and": parts}),
            1 => json!({"$or": parts}),
            _ => json!({"$and": [{"$not": parts[0].clone()}, {"$or": parts[1..].to_vec()}]}),
        };
        base.push(combined);
    }
    base
}

/// The answer of the reference semantics, pair by pair.
fn reference(
    data: &[(Person, Vec<Installation>)],
    scope: Scope,
    filter: &Filter,
    primary_only: bool,
) -> (Counts, Vec<Uuid>, Vec<String>) {
    let mut counts = Counts::default();
    let mut owners = BTreeSet::new();
    let mut ids = Vec::new();
    for (p, insts) in data {
        for i in insts {
            if scope.application_id.is_some_and(|a| a != i.application_id) || !filter.matches(p, Some(i)) {
                continue;
            }
            counts.installations += 1;
            ids.push(i.push_reg_id.clone());
            if i.is_deliverable() && (!primary_only || i.is_primary) {
                counts.deliverable_installations += 1;
            }
            owners.insert(p.id);
        }
    }
    counts.people = owners.len() as u64;
    ids.sort();
    (counts, owners.into_iter().take(5).collect(), ids)
}

fn check(
    index: &MemoryIndex,
    data: &[(Person, Vec<Installation>)],
    scopes: &[Scope],
    filters: &[(Value, Filter)],
) -> usize {
    let mut answered = 0;
    for (json, filter) in filters {
        for &scope in scopes {
            for primary_only in [false, true] {
                let Some(counts) = index.counts(scope, filter, primary_only) else {
                    assert!(index.sample_people(scope, filter, 5).is_none(), "{json}");
                    continue;
                };
                let (want, want_sample, want_ids) = reference(data, scope, filter, primary_only);
                assert_eq!(
                    counts, want,
                    "counts of {json} in {scope:?}, primary only {primary_only}"
                );
                let sample = index.sample_people(scope, filter, 5).expect("sample when counts");
                assert_eq!(sample, want_sample, "sample of {json} in {scope:?}");
                let ids = index.push_reg_ids(scope, filter).expect("pushRegIds when counts");
                assert_eq!(ids, want_ids, "pushRegIds of {json} in {scope:?}");
                answered += 1;
            }
        }
    }
    answered
}

#[test]
fn answers_as_the_reference_semantics_through_changes() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let account = rng.uuid();
    let other_account = rng.uuid();
    let apps = [rng.uuid(), rng.uuid()];
    let defs = definitions(account);
    let filters: Vec<(Value, Filter)> = filters(&mut rng)
        .into_iter()
        .map(|v| {
            let f = Filter::parse(&v, &defs, "filter").unwrap_or_else(|e| panic!("{v}: {e:?}"));
            (v, f)
        })
        .collect();
    let scopes = [
        Scope {
            account_id: account,
            application_id: None,
        },
        Scope {
            account_id: account,
            application_id: Some(apps[0]),
        },
        Scope {
            account_id: account,
            application_id: Some(apps[1]),
        },
        Scope {
            account_id: account,
            application_id: Some(rng.uuid()),
        },
    ];

    let mut index = MemoryIndex::new();
    let mut data: Vec<(Person, Vec<Installation>)> = Vec::new();
    for _ in 0..300 {
        let id = rng.uuid();
        let p = person(&mut rng, account, id);
        let insts: Vec<Installation> = (0..rng.below(4))
            .map(|_| installation(&mut rng, &p, &apps, 0))
            .collect();
        index.set_person(account, p.id, Some((&p, &insts)));
        data.push((p, insts));
    }
    // Another account's persons never count.
    for _ in 0..20 {
        let id = rng.uuid();
        let p = person(&mut rng, other_account, id);
        let insts = vec![installation(&mut rng, &p, &apps, 0)];
        index.set_person(other_account, p.id, Some((&p, &insts)));
    }
    assert_eq!(index.persons(), 320);
    let answered = check(&index, &data, &scopes, &filters);
    // Everything but the two filters left to SQL (and combinations with them) is answered.
    assert!(answered > filters.len() * scopes.len(), "answered only {answered}");

    // Replace, remove and add; numbers of removed persons and installations are reused, and
    // some pushRegIds are not canonical UUIDs from now on.
    for round in 0..3 {
        for _ in 0..100 {
            let k = rng.below(data.len());
            match rng.below(3) {
                0 => {
                    let (p, _) = data.swap_remove(k);
                    index.set_person(account, p.id, None);
                }
                _ => {
                    let id = data[k].0.id;
                    let p = person(&mut rng, account, id);
                    let insts: Vec<Installation> = (0..rng.below(4))
                        .map(|_| installation(&mut rng, &p, &apps, 5))
                        .collect();
                    index.set_person(account, id, Some((&p, &insts)));
                    data[k] = (p, insts);
                }
            }
            if rng.chance(30) {
                let id = rng.uuid();
                let p = person(&mut rng, account, id);
                let insts: Vec<Installation> = (0..rng.below(4))
                    .map(|_| installation(&mut rng, &p, &apps, 5))
                    .collect();
                index.set_person(account, p.id, Some((&p, &insts)));
                data.push((p, insts));
            }
        }
        let answered = check(&index, &data, &scopes, &filters);
        assert!(answered > 0, "round {round}");
    }
    assert_eq!(index.persons(), data.len() + 20);

    // Removing everyone leaves an empty account, answered with zeros.
    for (p, _) in data.drain(..) {
        index.set_person(account, p.id, None);
    }
    check(&index, &data, &scopes, &filters);
    assert_eq!(index.persons(), 20);
}

#[test]
fn leaves_what_it_does_not_hold_to_sql() {
    let account = Uuid::from_u128(1);
    let defs = definitions(account);
    let mut index = MemoryIndex::new();
    let p = Person::new_anonymous(account, 0);
    index.set_person(account, p.id, Some((&p, &[])));
    let scope = Scope {
        account_id: account,
        application_id: None,
    };
    for v in [
        json!({"phones": "385911234567"}),
        json!({"emails": {"$exists": true}}),
        json!({"installation.pushRegId": "x"}),
        json!({"installation.lastSeenAt": {"$gt": "2020-01-01T00:00:00Z"}}),
        json!({"$or": [{"tags": "a"}, {"installation.createdAt": {"$lt": "2020-01-01T00:00:00Z"}}]}),
    ] {
        let f = Filter::parse(&v, &defs, "filter").unwrap();
        assert_eq!(index.counts(scope, &f, false), None, "{v}");
        assert_eq!(index.sample_people(scope, &f, 3), None, "{v}");
    }
    let f = Filter::parse(&json!({"tags": "a"}), &defs, "filter").unwrap();
    assert_eq!(index.counts(scope, &f, false), Some(Counts::default()));
}
