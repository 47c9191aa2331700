//! `audience-index`: the in-memory audience index (`roster_store::audience::memory`) on its
//! own, at the full size. The `audience` scenario times previews through a server whose
//! store must first be seeded, which takes hours at 10M people on a small machine; this one
//! builds the index straight from the same generated data set in this process and times the
//! exact counts of the same five filters, so the 10M figure can be rerun in minutes.
//!
//! What it measures is the index's own work (filter evaluation and the three counts), not the
//! HTTP request, the filter parsing of the server or the refresh of changed persons; the
//! `audience` scenario measures those at sizes a run can seed.

use std::time::Instant;

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;
use roster_model::filter::Filter;
use roster_model::{AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin};
use roster_store::audience::Scope;
use roster_store::audience::memory::MemoryIndex;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::load::count_bar;
use crate::report::{Method, Report};
use crate::scenarios::{audience_filters, spread};
use crate::seed::{self, PERSON_ATTRIBUTES, SeedSpec};
use crate::system::{self, Machine};

/// Options of `audience-index`.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    pub people: u64,
    /// Counts per filter.
    pub repeat: usize,
    /// Length of the external-id list of the fifth filter.
    pub ext_ids: u64,
    pub progress: bool,
}

pub fn audience_index(o: &IndexOptions) -> anyhow::Result<Report> {
    let mut machine = Machine::describe();
    let account_id = Uuid::new_v4();
    let app_id = Uuid::new_v4();
    let spec = SeedSpec {
        people: o.people,
        max_installations: 3,
        apns_percent: 40,
        seed: 7,
        batch: 2000,
    };
    let me = std::process::id();
    let before = system::memory_of(me).context("own memory")?;

    // Build: the generated persons go into the index one by one, as a store's start-up build
    // feeds them, and are dropped.
    let mut index = MemoryIndex::new();
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let now = seed::now_ms();
    let bar = count_bar(o.progress, o.people, "people");
    let started = Instant::now();
    for n in 0..o.people {
        let (person, installations) = seed::generate(&mut rng, account_id, app_id, &spec, n, now);
        index.set_person(account_id, person.id, Some((&person, &installations)));
        if n % 10_000 == 0 {
            bar.set_position(n);
        }
    }
    let build_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let after = system::memory_of(me).context("own memory")?;

    let defs: Vec<AttributeDefinition> = PERSON_ATTRIBUTES
        .iter()
        .map(|(name, t)| -> anyhow::Result<AttributeDefinition> {
            Ok(AttributeDefinition {
                account_id,
                scope: AttributeScope::Person,
                name: (*name).to_owned(),
                attr_type: serde_json::from_value::<AttributeType>(json!(t))?,
                object_schema: None,
                origin: DefinitionOrigin::Api,
                created_at: now,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let scope = Scope {
        account_id,
        application_id: Some(app_id),
    };
    let parse = |v: &Value| Filter::parse(v, &defs, "filter").map_err(|e| anyhow::anyhow!("{v}: {e:?}"));

    let mut rows: Vec<(String, Value)> = Vec::new();
    for (name, json) in audience_filters() {
        let filter = parse(&json)?;
        let mut times = Vec::new();
        let mut counts = None;
        for _ in 0..o.repeat.max(1) {
            let started = Instant::now();
            counts = Some(
                index
                    .counts(scope, &filter, false)
                    .context("the index holds every field of the filter")?,
            );
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let c = counts.context("no count")?;
        // Resolution: the whole audience as pushRegIds in pushRegId order, as a send walks it.
        let mut resolve_times = Vec::new();
        let mut resolved = 0;
        for _ in 0..o.repeat.max(1) {
            let started = Instant::now();
            resolved = index.push_reg_ids(scope, &filter).context("held")?.len();
            resolve_times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        rows.push((
            name.to_owned(),
            json!({"filter": json, "people": c.people, "installations": c.installations,
                   "deliverable": c.deliverable_installations, "countMs": spread(&mut times),
                   "resolvedInstallations": resolved, "resolutionMs": spread(&mut resolve_times)}),
        ));
    }
    // The fifth: primary devices of an external-id list, counted as the server does it, one
    // count per slice of 1,000 ids (a filter's `$in` limit), summed.
    let n = o.ext_ids.min(o.people);
    let step = (o.people / n.max(1)).max(1);
    let ids: Vec<String> = (0..n).map(|k| seed::external_id(k * step)).collect();
    let slices: Vec<Filter> = ids
        .chunks(1000)
        .map(|slice| parse(&json!({"externalUserId": {"$in": slice}})))
        .collect::<anyhow::Result<_>>()?;
    let mut times = Vec::new();
    let mut sums = [0u64; 3];
    for r in 0..o.repeat.max(1) {
        let started = Instant::now();
        let mut s = [0u64; 3];
        for filter in &slices {
            let c = index.counts(scope, filter, true).context("external ids are held")?;
            s[0] += c.people;
            s[1] += c.installations;
            s[2] += c.deliverable_installations;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if r == 0 {
            sums = s;
        }
    }
    rows.push((
        "primary devices of an external-id list".to_owned(),
        json!({"filter": format!("externalUserId in a list of {n}, targetOnlyPrimaryDevices"),
               "people": sums[0], "installations": sums[1], "deliverable": sums[2],
               "countMs": spread(&mut times)}),
    ));

    machine.finish();
    let method = Method {
        machine,
        store: "in-memory index (no store)".to_owned(),
        server: "none: the index in this process".to_owned(),
        data_size: Some(o.people),
        concurrency: Some(1),
        duration_seconds: None,
        warmup_seconds: None,
        notes: vec![
            format!(
                "the data set of the audience scenario ({} people, 1-3 installations each, 16 tags, attributes score DECIMAL, signup DATE, plan STRING, active BOOLEAN), generated and fed to MemoryIndex::set_person one person at a time",
                o.people
            ),
            format!(
                "each filter counted {} times (people, installations, deliverable installations) in the application's scope, and resolved as many times (MemoryIndex::push_reg_ids: every matching pushRegId, sorted); times are of those calls alone",
                o.repeat.max(1)
            ),
        ],
    };
    let mut report = Report::new("audience-index", method);
    report.add("build", o.people as f64 / build_seconds.max(1e-9), "people/s");
    report.add("installations held", index.installations(), "");
    let grown = after.anon_kib.saturating_sub(before.anon_kib) as f64;
    report.add("index memory (RssAnon growth)", grown / 1024.0, "MiB");
    report.add("index memory per person", grown * 1024.0 / o.people.max(1) as f64, "B");
    for (name, row) in rows {
        report.add(name, row, "");
    }
    Ok(report)
}
