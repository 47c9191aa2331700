//! The data generator: people with tags, typed custom attributes and installations, written
//! straight through the store's bulk paths (`Tx::insert_persons`, `Tx::insert_installations`,
//! the same the importer uses) in transactions of a few thousand rows, so that a million people
//! take a minute, not the hours the mobile API would need. The audience index is maintained by
//! those store methods as for any other write.
//!
//! The data is deterministic for a seed: person `i` is `externalUserId` `p{i}`.
//!
//! Ids are time-ordered (the UUID version 7 layout: person `i` and its installations carry the
//! timestamp `ID_EPOCH_MS + i`, the rest of the bits from the seeded generator), so that each
//! transaction appends to the end of the id-keyed B-trees. With random (version 4) ids every
//! transaction of a few thousand people dirties pages all over each of those trees; once they
//! outgrow the writer's page cache the pages spill and are written again, and each commit
//! rewrites pages in proportion to the store's size (about nine times the bytes written per
//! person at 20,000 people, more as the store grows).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roster_model::{Installation, Person, PersonType, PushServiceType, SystemData};
use roster_store::Store;
use serde_json::json;
use uuid::Uuid;

use crate::load::count_bar;

/// The person attributes the generator writes, with their types (defined through the
/// management API before seeding).
pub const PERSON_ATTRIBUTES: &[(&str, &str)] = &[
    ("score", "DECIMAL"),
    ("signup", "DATE"),
    ("plan", "STRING"),
    ("active", "BOOLEAN"),
];

/// Tag `tag{k}` is given to a person with probability 1/(k+2): `tag0` to half of them,
/// `tag1` to a third, ... so that filters select audiences of different sizes.
pub const TAGS: usize = 16;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    /// People to write.
    pub people: u64,
    /// Installations per person: uniformly from 1 to this (1 = exactly one each).
    pub max_installations: u32,
    /// Percent of installations that are APNs (the rest FCM).
    pub apns_percent: u32,
    /// Random seed.
    pub seed: u64,
    /// Persons per transaction.
    pub batch: usize,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub people: u64,
    pub installations: u64,
    pub apns_installations: u64,
    pub primary_installations: u64,
    pub seconds: f64,
    /// Up to 1,000 pushRegIds (for read load after seeding).
    pub sample_push_reg_ids: Vec<String>,
}

/// Writes `spec.people` people of `account_id`, with installations in application `app_id`.
pub async fn seed(
    store: &dyn Store,
    account_id: Uuid,
    app_id: Uuid,
    spec: &SeedSpec,
    progress: bool,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let bar = count_bar(progress, spec.people, "people");
    let mut out = Seeded {
        people: 0,
        installations: 0,
        apns_installations: 0,
        primary_installations: 0,
        seconds: 0.0,
        sample_push_reg_ids: Vec::new(),
    };
    let now = now_ms();
    let mut i = 0u64;
    while i < spec.people {
        let end = (i + spec.batch as u64).min(spec.people);
        let mut persons = Vec::with_capacity((end - i) as usize);
        let mut insts = Vec::new();
        for n in i..end {
            let (person, generated) = generate(&mut rng, account_id, app_id, spec, n, now);
            for inst in generated {
                out.apns_installations += u64::from(inst.push_service_type == Some(PushServiceType::Apns));
                out.primary_installations += u64::from(inst.is_primary);
                if out.sample_push_reg_ids.len() < 1000 {
                    out.sample_push_reg_ids.push(inst.push_reg_id.clone());
                }
                insts.push(inst);
            }
            persons.push(person);
        }
        let mut tx = store.begin().await?;
        tx.insert_persons(&persons).await?;
        tx.insert_installations(&insts).await?;
        tx.commit().await?;
        out.people += persons.len() as u64;
        out.installations += insts.len() as u64;
        bar.inc(persons.len() as u64);
        i = end;
    }
    // PostgreSQL plans the audience queries from statistics; bring them up to date with the
    // bulk load as an import does.
    let mut tx = store.begin().await?;
    tx.refresh_statistics().await?;
    tx.commit().await?;
    bar.finish_and_clear();
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Person `n` of the data set and its installations (`rng` seeded with `spec.seed` and called
/// for persons 0, 1, ... in order gives the data set of [`seed`]).
pub fn generate(
    rng: &mut StdRng,
    account_id: Uuid,
    app_id: Uuid,
    spec: &SeedSpec,
    n: u64,
    now: i64,
) -> (Person, Vec<Installation>) {
    let person = person(rng, account_id, n, now);
    let count = rng.random_range(1..=spec.max_installations.max(1));
    let insts = (0..count)
        .map(|k| {
            let apns = rng.random_range(0..100) < spec.apns_percent;
            installation(rng, account_id, app_id, person.id, n, apns, k == 0, now)
        })
        .collect();
    (person, insts)
}

fn person(rng: &mut StdRng, account_id: Uuid, n: u64, now: i64) -> Person {
    let mut p = Person::new_anonymous(account_id, now);
    p.id = ordered_uuid(rng, n);
    p.external_user_id = Some(external_id(n));
    p.person_type = PersonType::Customer;
    p.first_name = Some(["Ana", "Ivan", "Marija", "Luka", "Petra", "Josip"][rng.random_range(0..6)].into());
    p.tags = (0..TAGS)
        .filter(|k| rng.random_range(0..(k + 2)) == 0)
        .map(|k| format!("tag{k}"))
        .collect::<BTreeSet<_>>();
    let mut attrs = BTreeMap::new();
    attrs.insert("score".to_owned(), json!(rng.random_range(0..1000)));
    let day = rng.random_range(0..7 * 365);
    attrs.insert("signup".to_owned(), json!(date_after_2019(day)));
    attrs.insert(
        "plan".to_owned(),
        json!(["free", "pro", "team"][rng.random_range(0..3)]),
    );
    attrs.insert("active".to_owned(), json!(rng.random_bool(0.7)));
    p.custom_attributes = attrs;
    p
}

/// `externalUserId` of person `n`.
pub fn external_id(n: u64) -> String {
    format!("p{n}")
}

#[allow(clippy::too_many_arguments)]
fn installation(
    rng: &mut StdRng,
    account_id: Uuid,
    app_id: Uuid,
    person_id: Uuid,
    n: u64,
    apns: bool,
    primary: bool,
    now: i64,
) -> Installation {
    let id = ordered_uuid(rng, n);
    let (kind, token, os) = if apns {
        // A 64-hex-digit device token, as iOS reports it.
        let token = format!("{}{}", id.simple(), uuid_from(rng).simple());
        (PushServiceType::Apns, token, "iOS")
    } else {
        (PushServiceType::Firebase, format!("fcm:{}", id.simple()), "Android")
    };
    Installation {
        account_id,
        application_id: app_id,
        push_reg_id: id.to_string(),
        person_id,
        push_service_type: Some(kind),
        push_service_token: Some(token),
        reg_enabled: true,
        is_primary: primary,
        application_user_id: None,
        custom_attributes: BTreeMap::new(),
        system: SystemData {
            notifications_enabled: Some(true),
            sdk_version: Some("13.2.0".into()),
            app_version: Some(["3.1.0", "3.2.1", "4.0.0"][rng.random_range(0..3)].into()),
            os: Some(os.into()),
            os_version: Some(if apns { "17.4" } else { "14" }.into()),
            device_manufacturer: Some(if apns { "Apple" } else { "Google" }.into()),
            device_model: Some(if apns { "iPhone15,2" } else { "Pixel 8" }.into()),
            device_name: None,
            device_secure: Some(true),
            language: Some("en".into()),
            device_timezone_offset: Some("GMT+01:00".into()),
            inappchat: None,
            inbox: None,
            webrtcui: None,
        },
        created_at: now,
        updated_at: now,
        last_seen_at: now,
        token_cleared_at: None,
        token_cleared_reason: None,
    }
}

/// A v4-shaped UUID from the seeded generator (the data set is the same for the same seed).
fn uuid_from(rng: &mut StdRng) -> Uuid {
    let bytes: [u8; 16] = rng.random();
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The timestamp of person 0's ids: 2026-01-01T00:00:00Z.
const ID_EPOCH_MS: u64 = 1_767_225_600_000;

/// A v7-shaped UUID for person `n` (and its installations): timestamp `ID_EPOCH_MS + n`, the
/// remaining 74 bits from the seeded generator. Ids of later people sort after those of earlier
/// ones, in their lowercase hyphenated text form as well.
fn ordered_uuid(rng: &mut StdRng, n: u64) -> Uuid {
    let bytes: [u8; 10] = rng.random();
    uuid::Builder::from_unix_timestamp_millis(ID_EPOCH_MS + n, &bytes).into_uuid()
}

/// `yyyy-MM-dd` of 2019-01-01 plus `days`.
pub fn date_after_2019(days: i64) -> String {
    let date = time::macros::date!(2019 - 01 - 01) + time::Duration::days(days);
    date.format(time::macros::format_description!("[year]-[month]-[day]"))
        .expect("a date formats")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    /// Ids of later people sort after those of earlier ones, as the stores compare them (the
    /// lowercase hyphenated text), and are version 7.
    #[test]
    fn ids_are_ordered() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let ids: Vec<uuid::Uuid> = (0..5000u64).map(|n| super::ordered_uuid(&mut rng, n)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0].to_string() < pair[1].to_string(), "{pair:?}");
        }
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
    }

    #[test]
    fn dates() {
        assert_eq!(super::date_after_2019(0), "2019-01-01");
        assert_eq!(super::date_after_2019(59), "2019-03-01");
        assert_eq!(super::date_after_2019(365 + 366), "2021-01-01");
    }
}
