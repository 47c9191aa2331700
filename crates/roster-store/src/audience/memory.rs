//! The in-memory audience index of design.md ("Hot paths"): roaring bitmaps over the
//! installations of each account, kept by a store from its committed writes and rebuilt at
//! start-up, that answer segment preview counts and samples (management-api.md §7.6) without
//! reading the tables. SQL over the index tables ([`super::translate`]) grows with the people in
//! scope; here a count is a few bitmap operations.
//!
//! **Pairs.** Every bit is an installation (a dense `u32` per account). A person's field values
//! are set on each of the person's installations, so a filter over (person, installation) pairs
//! is bitmap algebra: `$and` intersects, `$or` unites, `$not` is the complement within the
//! account's installations. A scope is one more intersection.
//!
//! **Exactness.** Every condition is decided with roster-model's reference semantics
//! ([`Condition::holds`]), once per *distinct stored value* of its field instead of once per
//! pair: the matching pairs are the union of the bitmaps of the values it holds for, plus the
//! pairs without a value when it holds for an absent one. `$eq` / `$in` / `$ne` / `$nin` look
//! their operands up, and ordered comparisons of numbers and dates walk a `BTreeMap` range;
//! each candidate is still checked with the reference semantics, and every value outside the
//! candidates is one for which the reference answers `false` (cross-type equality and
//! comparison are never true). Tags are multi-valued: a bitmap per tag, and `$eq`-like
//! operators as "some tag matches". The unit tests compare every answer with
//! [`Filter::matches`] on every pair.
//!
//! **What it does not hold** (a filter using it gets `None`, and the store runs the SQL):
//! phones, emails, lists of objects (`$elemMatch`), `pushRegId`, the `createdAt` /
//! `lastSeenAt` timestamps, and a condition that would have to test each of more than
//! [`SCAN_LIMIT`] distinct values one by one (`$startsWith` on external ids, say).
//!
//! **Memory.** Besides the bitmaps (a few bytes per set bit when dense), each person keeps the
//! keys it was indexed under, so that replacing it removes exactly those bits.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound;

use roaring::{MultiOps, RoaringBitmap};
use roster_model::filter::{
    Cmp, Condition, Field, FieldValue, Filter, InstallationField, Op, Operand, PersonField, custom_value,
};
use roster_model::{AttributeType, Installation, Person};
use serde_json::Value;
use uuid::Uuid;

use super::Scope;
use super::index::num_key;

/// A condition that would evaluate more distinct values than this one by one is left to SQL.
pub const SCAN_LIMIT: usize = 50_000;

/// What a preview counts (the numbers of [`super::Preview`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub people: u64,
    pub installations: u64,
    pub deliverable_installations: u64,
}

/// The index of every account a store holds.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    accounts: HashMap<Uuid, AccountIndex>,
}

impl MemoryIndex {
    pub fn new() -> MemoryIndex {
        MemoryIndex::default()
    }

    /// Replaces everything the index holds on one person by `entry`: the person and all its
    /// installations (of every application of the account). `None` removes the person and its
    /// installations.
    pub fn set_person(&mut self, account_id: Uuid, person_id: Uuid, entry: Option<(&Person, &[Installation])>) {
        let account = self.accounts.entry(account_id).or_default();
        account.remove(person_id);
        if let Some((person, installations)) = entry {
            account.insert(person, installations);
        }
        if account.persons.is_empty() {
            self.accounts.remove(&account_id);
        }
    }

    /// The preview counts of `filter` in `scope` (as `translate::preview_counts`), or `None`
    /// when the filter uses something the index does not hold.
    pub fn counts(&self, scope: Scope, filter: &Filter, primary_only: bool) -> Option<Counts> {
        let Some(account) = self.accounts.get(&scope.account_id) else {
            return account_free(filter).then(Counts::default);
        };
        let matched = account.matching(scope, filter)?;
        let mut deliverable = &matched & &account.deliverable;
        if primary_only {
            deliverable &= &account.primary;
        }
        let people = if person_only(filter) {
            matched.intersection_len(account.representatives(scope))
        } else {
            account.owners(&matched).len()
        };
        Some(Counts {
            people,
            installations: matched.len(),
            deliverable_installations: deliverable.len(),
        })
    }

    /// The first `limit` owners of matching pairs by person id (as
    /// `translate::preview_sample_people`), or `None` as for [`MemoryIndex::counts`].
    pub fn sample_people(&self, scope: Scope, filter: &Filter, limit: usize) -> Option<Vec<Uuid>> {
        let Some(account) = self.accounts.get(&scope.account_id) else {
            return account_free(filter).then(Vec::new);
        };
        let matched = account.matching(scope, filter)?;
        let owners = if person_only(filter) {
            // One representative installation per matching person: no deduplication needed.
            let reps = &matched & account.representatives(scope);
            reps.iter()
                .map(|i| account.owner[i as usize])
                .collect::<RoaringBitmap>()
        } else {
            account.owners(&matched)
        };
        // The `limit` smallest ids: a max-heap holding the best so far.
        let mut heap = BinaryHeap::with_capacity(limit + 1);
        for p in owners.iter() {
            let id = account.person_ids[p as usize];
            if heap.len() < limit {
                heap.push(id);
            } else if heap.peek().is_some_and(|top| id < *top) {
                heap.pop();
                heap.push(id);
            }
        }
        Some(heap.into_sorted_vec())
    }

    /// The pushRegIds of the matching installations of `scope`, in pushRegId order (the order
    /// of `AudienceTx::audience_page`): a whole audience at once, or `None` as for
    /// [`MemoryIndex::counts`].
    pub fn push_reg_ids(&self, scope: Scope, filter: &Filter) -> Option<Vec<String>> {
        let Some(account) = self.accounts.get(&scope.account_id) else {
            return account_free(filter).then(Vec::new);
        };
        let matched = account.matching(scope, filter)?;
        if account.other_push_reg_ids.is_empty() {
            // Canonical ids only: the byte order of the UUIDs is the order of their text.
            let mut ids: Vec<Uuid> = matched.iter().map(|i| account.push_reg_ids[i as usize]).collect();
            ids.sort_unstable();
            return Some(ids.into_iter().map(|u| u.to_string()).collect());
        }
        let mut ids: Vec<String> = matched.iter().map(|i| account.push_reg_id(i)).collect();
        ids.sort_unstable();
        Some(ids)
    }

    /// How many persons the index holds.
    pub fn persons(&self) -> usize {
        self.accounts.values().map(|a| a.persons.len()).sum()
    }

    /// How many installations the index holds.
    pub fn installations(&self) -> u64 {
        self.accounts.values().map(|a| a.all.len()).sum()
    }
}

/// Whether the index can answer `filter` for an account it holds nothing of (every count 0):
/// it must still refuse what it would refuse with data, so that both paths agree.
fn account_free(filter: &Filter) -> bool {
    AccountIndex::default().eval(filter).is_some()
}

/// The field of an ordered comparison of a number or a date on a field with one value per pair
/// (what [`AccountIndex::comparisons`] can combine).
fn ordered_comparison(filter: &Filter) -> Option<&Field> {
    match filter {
        Filter::Cond(Condition {
            field,
            op: Op::Compare(_, Operand::Num(_) | Operand::Date(_) | Operand::DateTime { .. }),
        }) if !matches!(
            field,
            Field::Person(PersonField::Tags | PersonField::Phones | PersonField::Emails) | Field::Item { .. }
        ) =>
        {
            Some(field)
        }
        _ => None,
    }
}

/// Whether every condition reads the person: all installations of a matching person match.
fn person_only(filter: &Filter) -> bool {
    match filter {
        Filter::All => true,
        Filter::And(v) | Filter::Or(v) => v.iter().all(person_only),
        Filter::Not(f) => person_only(f),
        Filter::Cond(c) => matches!(c.field, Field::Person(_) | Field::PersonCustom { .. }),
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A stored scalar as the index keys it: text (strings, dates, versions), a number as its
/// [`num_key`] (so the key order is the numeric order), a boolean.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Str(String),
    Num(i64),
    Bool(bool),
}

impl Key {
    fn variant(&self) -> usize {
        match self {
            Key::Str(_) => 0,
            Key::Num(_) => 1,
            Key::Bool(_) => 2,
        }
    }

    /// The key of a standard field's value; `None` when absent or not held.
    fn of_field(value: &FieldValue<'_>) -> Option<(Key, StdKind)> {
        Some(match *value {
            FieldValue::Str(s) => (Key::Str(s.to_string()), StdKind::Str),
            FieldValue::DateText(s) => (Key::Str(s.to_string()), StdKind::DateText),
            FieldValue::Version(s) => (Key::Str(s.to_string()), StdKind::Version),
            FieldValue::Bool(b) => (Key::Bool(b), StdKind::Bool),
            _ => return None,
        })
    }

    /// The key of a custom attribute's stored JSON value; `None` for lists and objects (not
    /// held: a filter on them is left to SQL) and null.
    fn of_json(value: &Value) -> Option<Key> {
        Some(match value {
            Value::String(s) => Key::Str(s.clone()),
            Value::Number(n) => Key::Num(num_key(n.as_f64()?)),
            Value::Bool(b) => Key::Bool(*b),
            _ => return None,
        })
    }

    /// The keys under which a value `$eq` to `o` can be stored. Complete: the reference `$eq`
    /// is byte equality of text, `f64` equality of numbers (which [`num_key`] preserves) and
    /// equality of booleans, and never holds across types.
    fn candidates(o: &Operand) -> Option<Key> {
        Some(match o {
            Operand::Str(s) | Operand::Date(s) | Operand::DateTime { text: s, .. } => Key::Str(s.clone()),
            Operand::Num(n) => Key::Num(num_key(*n)),
            Operand::Bool(b) => Key::Bool(*b),
            Operand::EmailKey(_) | Operand::Phone(_) => return None,
        })
    }
}

/// The inverse of [`num_key`].
fn num_of_key(k: i64) -> f64 {
    let bits = if k < 0 { k ^ i64::MAX } else { k };
    f64::from_bits(bits as u64)
}

/// How a standard field's key reads back as a [`FieldValue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdKind {
    Str,
    DateText,
    Version,
    Bool,
}

/// How a condition reads the keys of its field.
#[derive(Debug, Clone, Copy)]
enum View {
    Std(StdKind),
    Custom(AttributeType),
}

impl View {
    /// Whether the condition holds for a pair whose field is stored under `key`.
    fn holds(self, cond: &Condition, key: &Key) -> bool {
        self.with_value(key, |v| cond.holds(v))
    }

    /// Whether the value stored under `key` is `$eq` to `o`.
    fn equals(self, key: &Key, o: &Operand) -> bool {
        self.with_value(key, |v| v.equals(o))
    }

    fn with_value(self, key: &Key, f: impl FnOnce(&FieldValue<'_>) -> bool) -> bool {
        match self {
            View::Std(kind) => f(&match (kind, key) {
                (StdKind::Str, Key::Str(s)) => FieldValue::Str(s),
                (StdKind::DateText, Key::Str(s)) => FieldValue::DateText(s),
                (StdKind::Version, Key::Str(s)) => FieldValue::Version(s),
                (StdKind::Bool, Key::Bool(b)) => FieldValue::Bool(*b),
                _ => FieldValue::Absent,
            }),
            View::Custom(attr_type) => {
                let json = match key {
                    Key::Str(s) => Value::String(s.clone()),
                    Key::Num(n) => serde_json::Number::from_f64(num_of_key(*n)).map_or(Value::Null, Value::Number),
                    Key::Bool(b) => Value::Bool(*b),
                };
                f(&custom_value(Some(&json), attr_type))
            }
        }
    }

    /// Whether a key of this variant reads as a value (not absent).
    fn present(self, variant: usize) -> bool {
        match self {
            View::Std(_) => true,
            View::Custom(t) => match t {
                AttributeType::String | AttributeType::Date | AttributeType::DateTime => variant == 0,
                AttributeType::Decimal => variant == 1,
                AttributeType::Boolean => variant == 2,
                _ => false,
            },
        }
    }
}

/// A field that holds one value per pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Person(PersonField),
    PersonCustom(String),
    Installation(InstallationField),
    InstallationCustom(String),
}

/// The person fields held, with one value each (tags are held apart).
const PERSON_FIELDS: [PersonField; 7] = [
    PersonField::ExternalUserId,
    PersonField::FirstName,
    PersonField::MiddleName,
    PersonField::LastName,
    PersonField::Gender,
    PersonField::Birthday,
    PersonField::Type,
];

/// The installation fields held (`pushRegId`, `createdAt` and `lastSeenAt` are not: nearly
/// every value is distinct).
const INSTALLATION_FIELDS: [InstallationField; 16] = [
    InstallationField::PushServiceType,
    InstallationField::Os,
    InstallationField::DeviceManufacturer,
    InstallationField::DeviceModel,
    InstallationField::DeviceName,
    InstallationField::Language,
    InstallationField::DeviceTimezoneOffset,
    InstallationField::ApplicationUserId,
    InstallationField::OsVersion,
    InstallationField::AppVersion,
    InstallationField::SdkVersion,
    InstallationField::RegEnabled,
    InstallationField::NotificationsEnabled,
    InstallationField::DeviceSecure,
    InstallationField::IsPrimary,
    InstallationField::HasPushServiceToken,
];

/// The values of one slot: a number per distinct key, and a bitmap per number. Persons refer to
/// their values by number ([`Ref`]: 8 bytes, whatever the key), so that replacing a person
/// removes exactly its bits without holding a copy of its keys.
#[derive(Debug, Default)]
struct SlotIndex {
    kind: Option<StdKind>,
    numbers: BTreeMap<Key, u32>,
    /// By value number: its key (`None` once free) and its installations.
    keys: Vec<Option<Key>>,
    bitmaps: Vec<RoaringBitmap>,
    free: Vec<u32>,
    /// Per key variant, the installations with a key of that variant (single-valued slots).
    present: [RoaringBitmap; 3],
    /// Single-valued slots: consecutive keys grouped by [`bucket_of`], each group with the union
    /// of its keys' bitmaps and how many keys it has. A comparison takes a group whose keys
    /// all hold in one bitmap instead of one per key.
    buckets: BTreeMap<Key, Bucket>,
}

#[derive(Debug, Default)]
struct Bucket {
    bits: RoaringBitmap,
    keys: u32,
}

/// The group of a key in [`SlotIndex::buckets`]: keys of one group are consecutive in key order,
/// and the group's key is at most each of them. Numbers by the top 16 bits of their key (sign,
/// exponent and 4 bits of mantissa: 16 groups per power of two), text by its first 7
/// characters (a month of dates), booleans not at all.
fn bucket_of(key: &Key) -> Option<Key> {
    match key {
        Key::Num(k) => Some(Key::Num((k >> 48) << 48)),
        Key::Str(s) => Some(Key::Str(s.chars().take(7).collect())),
        Key::Bool(_) => None,
    }
}

impl SlotIndex {
    /// The number of `key`, made if new (its bitmap empty until [`SlotIndex::insert`]).
    fn number(&mut self, key: &Key) -> u32 {
        if let Some(n) = self.numbers.get(key) {
            return *n;
        }
        let n = match self.free.pop() {
            Some(n) => {
                self.keys[n as usize] = Some(key.clone());
                n
            }
            None => {
                self.keys.push(Some(key.clone()));
                self.bitmaps.push(RoaringBitmap::new());
                (self.keys.len() - 1) as u32
            }
        };
        self.numbers.insert(key.clone(), n);
        if let Some(b) = bucket_of(key) {
            self.buckets.entry(b).or_default().keys += 1;
        }
        n
    }

    fn insert(&mut self, value: u32, inst: u32, single_valued: bool) {
        self.bitmaps[value as usize].insert(inst);
        if single_valued && let Some(key) = &self.keys[value as usize] {
            self.present[key.variant()].insert(inst);
            if let Some(bucket) = bucket_of(key).and_then(|b| self.buckets.get_mut(&b)) {
                bucket.bits.insert(inst);
            }
        }
    }

    fn remove(&mut self, value: u32, inst: u32, single_valued: bool) {
        let v = value as usize;
        self.bitmaps[v].remove(inst);
        if single_valued && let Some(key) = &self.keys[v] {
            self.present[key.variant()].remove(inst);
            if let Some(bucket) = bucket_of(key).and_then(|b| self.buckets.get_mut(&b)) {
                bucket.bits.remove(inst);
            }
        }
        if self.bitmaps[v].is_empty()
            && let Some(key) = self.keys[v].take()
        {
            if let Some(b) = bucket_of(&key)
                && let Some(bucket) = self.buckets.get_mut(&b)
            {
                bucket.keys -= 1;
                if bucket.keys == 0 {
                    self.buckets.remove(&b);
                }
            }
            self.numbers.remove(&key);
            self.free.push(value);
        }
    }

    /// The union of the bitmaps of the keys in `low..high` for which `holds`; a bucket whose
    /// keys all lie in the range and all hold is taken whole. Single-valued slots only.
    fn union_where(&self, low: Key, high: Bound<Key>, holds: impl Fn(&Key) -> bool) -> RoaringBitmap {
        let mut parts: Vec<&RoaringBitmap> = Vec::new();
        // The bucket being walked: its key, whether every key seen held, the bitmaps of those.
        let mut current: Walk<'_> = None;
        type Walk<'a> = Option<(Key, bool, Vec<&'a RoaringBitmap>)>;
        fn flush<'a>(buckets: &'a BTreeMap<Key, Bucket>, current: Walk<'a>, parts: &mut Vec<&'a RoaringBitmap>) {
            let Some((b, all, members)) = current else { return };
            match buckets.get(&b) {
                Some(bucket) if all && members.len() == bucket.keys as usize => parts.push(&bucket.bits),
                _ => parts.extend(members),
            }
        }
        for (key, bits) in self.range(low, high) {
            let b = bucket_of(key);
            let same = matches!((&current, &b), (Some((c, ..)), Some(b)) if c == b);
            if !same {
                flush(&self.buckets, current.take(), &mut parts);
                current = b.map(|b| (b, true, Vec::new()));
            }
            let held = holds(key);
            match &mut current {
                Some((_, all, members)) => {
                    if held {
                        members.push(bits);
                    } else {
                        *all = false;
                    }
                }
                None if held => parts.push(bits),
                None => {}
            }
        }
        flush(&self.buckets, current, &mut parts);
        parts.into_iter().union()
    }

    fn get(&self, key: &Key) -> Option<&RoaringBitmap> {
        self.numbers.get(key).map(|n| &self.bitmaps[*n as usize])
    }

    fn len(&self) -> usize {
        self.numbers.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&Key, &RoaringBitmap)> {
        self.numbers.iter().map(|(k, n)| (k, &self.bitmaps[*n as usize]))
    }

    fn range(&self, low: Key, high: Bound<Key>) -> impl Iterator<Item = (&Key, &RoaringBitmap)> {
        self.numbers
            .range((Bound::Included(low), high))
            .map(|(k, n)| (k, &self.bitmaps[*n as usize]))
    }
}

// ---------------------------------------------------------------------------------------------
// One account
// ---------------------------------------------------------------------------------------------

/// A value a person or installation was indexed under: slot and value numbers.
#[derive(Debug, Clone, Copy)]
struct Ref {
    slot: u32,
    value: u32,
}

/// The number of a person without installations (it has none: nothing refers to it).
const NO_PERSON_NUMBER: u32 = u32::MAX;

/// What a person was indexed under, to remove exactly that.
#[derive(Debug)]
struct PersonEntry {
    dense: u32,
    /// The person's values and tags (set on each of its installations).
    values: Box<[Ref]>,
    tags: Box<[u32]>,
    installations: Box<[InstallationEntry]>,
}

#[derive(Debug)]
struct InstallationEntry {
    dense: u32,
    application_id: Uuid,
    values: Box<[Ref]>,
}

#[derive(Debug, Default)]
struct AccountIndex {
    persons: HashMap<Uuid, PersonEntry>,
    /// Person ids by dense person number; free numbers are reused.
    person_ids: Vec<Uuid>,
    free_persons: Vec<u32>,
    /// The owner (dense person number) of each installation number.
    owner: Vec<u32>,
    /// The pushRegId of each installation number: a UUID in its canonical text form (what
    /// the mobile API assigns), else held in `other_push_reg_ids`.
    push_reg_ids: Vec<Uuid>,
    other_push_reg_ids: HashMap<u32, Box<str>>,
    free_installations: Vec<u32>,

    /// Every installation of the account.
    all: RoaringBitmap,
    by_application: HashMap<Uuid, RoaringBitmap>,
    deliverable: RoaringBitmap,
    primary: RoaringBitmap,
    /// One installation per person (the lowest number), and one per person and application:
    /// intersected with the pairs of a filter that reads only the person, they count people.
    representative: RoaringBitmap,
    representative_in_application: RoaringBitmap,

    /// The single-valued slots by number.
    slot_numbers: HashMap<Slot, u32>,
    slots: Vec<SlotIndex>,
    /// The tags (keys `Key::Str`), and the installations of persons with at least one.
    tags: SlotIndex,
    tagged: RoaringBitmap,
}

/// Cheap shared empties for lookups that find nothing.
static EMPTY_SLOT: std::sync::LazyLock<SlotIndex> = std::sync::LazyLock::new(SlotIndex::default);
static EMPTY_BITMAP: std::sync::LazyLock<RoaringBitmap> = std::sync::LazyLock::new(RoaringBitmap::new);

impl AccountIndex {
    fn slot(&self, slot: &Slot) -> Option<&SlotIndex> {
        self.slot_numbers.get(slot).map(|n| &self.slots[*n as usize])
    }

    fn slot_number(&mut self, slot: Slot, kind: Option<StdKind>) -> u32 {
        let n = match self.slot_numbers.get(&slot) {
            Some(n) => *n,
            None => {
                self.slots.push(SlotIndex::default());
                let n = (self.slots.len() - 1) as u32;
                self.slot_numbers.insert(slot, n);
                n
            }
        };
        if kind.is_some() {
            self.slots[n as usize].kind = kind;
        }
        n
    }

    /// The numbers of a person's or an installation's values (made if new).
    fn refs(&mut self, keys: Vec<(Slot, Option<StdKind>, Key)>) -> Box<[Ref]> {
        keys.into_iter()
            .map(|(slot, kind, key)| {
                let slot = self.slot_number(slot, kind);
                let value = self.slots[slot as usize].number(&key);
                Ref { slot, value }
            })
            .collect()
    }

    fn insert(&mut self, person: &Person, installations: &[Installation]) {
        if installations.is_empty() {
            // In no pair: nothing to index (previews count installations and their owners).
            self.persons.insert(
                person.id,
                PersonEntry {
                    dense: NO_PERSON_NUMBER,
                    values: Box::new([]),
                    tags: Box::new([]),
                    installations: Box::new([]),
                },
            );
            return;
        }
        let dense = match self.free_persons.pop() {
            Some(n) => {
                self.person_ids[n as usize] = person.id;
                n
            }
            None => {
                self.person_ids.push(person.id);
                (self.person_ids.len() - 1) as u32
            }
        };
        let mut keys = Vec::new();
        for f in PERSON_FIELDS {
            if let Some((key, kind)) = Key::of_field(&Field::Person(f).value_on(person, None)) {
                keys.push((Slot::Person(f), Some(kind), key));
            }
        }
        for (name, value) in &person.custom_attributes {
            if let Some(key) = Key::of_json(value) {
                keys.push((Slot::PersonCustom(name.clone()), None, key));
            }
        }
        let values = self.refs(keys);
        let tags: Box<[u32]> = person
            .tags
            .iter()
            .map(|t| self.tags.number(&Key::Str(t.clone())))
            .collect();
        let mut entries = Vec::with_capacity(installations.len());
        let mut first_in_application: HashMap<Uuid, u32> = HashMap::new();
        let mut first = u32::MAX;
        for inst in installations {
            let n = match self.free_installations.pop() {
                Some(n) => {
                    self.owner[n as usize] = dense;
                    n
                }
                None => {
                    self.owner.push(dense);
                    self.push_reg_ids.push(Uuid::nil());
                    (self.owner.len() - 1) as u32
                }
            };
            match Uuid::try_parse(&inst.push_reg_id) {
                Ok(u) if u.hyphenated().to_string() == inst.push_reg_id => self.push_reg_ids[n as usize] = u,
                _ => {
                    self.other_push_reg_ids.insert(n, inst.push_reg_id.as_str().into());
                }
            }
            let mut keys = Vec::new();
            for f in INSTALLATION_FIELDS {
                if let Some((key, kind)) = Key::of_field(&Field::Installation(f).value_on(person, Some(inst))) {
                    keys.push((Slot::Installation(f), Some(kind), key));
                }
            }
            for (name, value) in &inst.custom_attributes {
                if let Some(key) = Key::of_json(value) {
                    keys.push((Slot::InstallationCustom(name.clone()), None, key));
                }
            }
            let inst_values = self.refs(keys);
            self.all.insert(n);
            self.by_application.entry(inst.application_id).or_default().insert(n);
            if inst.is_deliverable() {
                self.deliverable.insert(n);
            }
            if inst.is_primary {
                self.primary.insert(n);
            }
            for r in values.iter().chain(inst_values.iter()) {
                self.slots[r.slot as usize].insert(r.value, n, true);
            }
            for t in tags.iter() {
                self.tags.insert(*t, n, false);
            }
            if !tags.is_empty() {
                self.tagged.insert(n);
            }
            let lowest = first_in_application.entry(inst.application_id).or_insert(n);
            *lowest = (*lowest).min(n);
            first = first.min(n);
            entries.push(InstallationEntry {
                dense: n,
                application_id: inst.application_id,
                values: inst_values,
            });
        }
        self.representative.insert(first);
        self.representative_in_application
            .extend(first_in_application.into_values());
        self.persons.insert(
            person.id,
            PersonEntry {
                dense,
                values,
                tags,
                installations: entries.into_boxed_slice(),
            },
        );
    }

    fn remove(&mut self, person_id: Uuid) {
        let Some(entry) = self.persons.remove(&person_id) else {
            return;
        };
        for inst in entry.installations.iter() {
            let n = inst.dense;
            for r in entry.values.iter().chain(inst.values.iter()) {
                self.slots[r.slot as usize].remove(r.value, n, true);
            }
            for t in entry.tags.iter() {
                self.tags.remove(*t, n, false);
            }
            self.tagged.remove(n);
            self.all.remove(n);
            if let Some(bits) = self.by_application.get_mut(&inst.application_id) {
                bits.remove(n);
                if bits.is_empty() {
                    self.by_application.remove(&inst.application_id);
                }
            }
            self.deliverable.remove(n);
            self.primary.remove(n);
            self.representative.remove(n);
            self.representative_in_application.remove(n);
            self.other_push_reg_ids.remove(&n);
            self.free_installations.push(n);
        }
        if entry.dense != NO_PERSON_NUMBER {
            self.free_persons.push(entry.dense);
        }
    }

    fn scope(&self, scope: Scope) -> &RoaringBitmap {
        match scope.application_id {
            None => &self.all,
            Some(app) => self.by_application.get(&app).unwrap_or(&EMPTY_BITMAP),
        }
    }

    fn representatives(&self, scope: Scope) -> &RoaringBitmap {
        match scope.application_id {
            None => &self.representative,
            Some(_) => &self.representative_in_application,
        }
    }

    /// The matching pairs of `scope`.
    fn matching(&self, scope: Scope, filter: &Filter) -> Option<RoaringBitmap> {
        Some(self.eval(filter)? & self.scope(scope))
    }

    fn push_reg_id(&self, n: u32) -> String {
        match self.other_push_reg_ids.get(&n) {
            Some(other) => other.to_string(),
            None => self.push_reg_ids[n as usize].to_string(),
        }
    }

    /// The owners (dense person numbers) of some installations.
    fn owners(&self, installations: &RoaringBitmap) -> RoaringBitmap {
        installations.iter().map(|i| self.owner[i as usize]).collect()
    }

    /// The installations of the account whose pair matches `filter`.
    fn eval(&self, filter: &Filter) -> Option<RoaringBitmap> {
        Some(match filter {
            Filter::All => self.all.clone(),
            Filter::And(subs) => {
                let mut acc: Option<RoaringBitmap> = None;
                let mut done = vec![false; subs.len()];
                for (i, sub) in subs.iter().enumerate() {
                    if done[i] {
                        continue;
                    }
                    // Comparisons of one field under this `$and` go together.
                    let same: Vec<usize> = match ordered_comparison(sub) {
                        Some(field) => (i..subs.len())
                            .filter(|j| !done[*j] && ordered_comparison(&subs[*j]) == Some(field))
                            .collect(),
                        None => Vec::new(),
                    };
                    let bits = if same.len() > 1 {
                        let conds: Vec<&Condition> = same
                            .iter()
                            .filter_map(|j| match &subs[*j] {
                                Filter::Cond(c) => Some(c),
                                _ => None,
                            })
                            .collect();
                        for j in same {
                            done[j] = true;
                        }
                        self.comparisons(&conds[0].field, &conds)?
                    } else {
                        self.eval(sub)?
                    };
                    acc = Some(match acc {
                        None => bits,
                        Some(a) => a & bits,
                    });
                }
                acc.unwrap_or_else(|| self.all.clone())
            }
            Filter::Or(subs) => {
                let mut acc = RoaringBitmap::new();
                for sub in subs {
                    acc |= self.eval(sub)?;
                }
                acc
            }
            Filter::Not(sub) => &self.all - self.eval(sub)?,
            Filter::Cond(cond) => self.condition(cond)?,
        })
    }

    fn condition(&self, cond: &Condition) -> Option<RoaringBitmap> {
        if matches!(cond.field, Field::Person(PersonField::Tags)) {
            return self.tag_condition(cond);
        }
        if matches!(cond.op, Op::ElemMatch(_)) {
            return None;
        }
        let (index, view) = self.single_valued_field(&cond.field)?;
        // No value stored anywhere: every pair reads the field as absent.
        let Some(view) = view.filter(|_| index.len() > 0) else {
            return Some(if cond.holds(&FieldValue::Absent) {
                self.all.clone()
            } else {
                RoaringBitmap::new()
            });
        };
        self.single_valued(cond, index, view)
    }

    /// The values of a field with at most one value per pair, and how its keys read (`None`
    /// when nothing was ever stored); `None` for a field the index does not hold.
    fn single_valued_field(&self, field: &Field) -> Option<(&SlotIndex, Option<View>)> {
        let (slot, view) = match field {
            Field::Person(PersonField::Tags | PersonField::Phones | PersonField::Emails) => return None,
            Field::Person(f) => {
                let slot = Slot::Person(*f);
                let kind = self.slot(&slot).and_then(|s| s.kind);
                (slot, kind.map(View::Std))
            }
            Field::Installation(
                InstallationField::PushRegId | InstallationField::CreatedAt | InstallationField::LastSeenAt,
            ) => return None,
            Field::Installation(f) => {
                let slot = Slot::Installation(*f);
                let kind = self.slot(&slot).and_then(|s| s.kind);
                (slot, kind.map(View::Std))
            }
            Field::PersonCustom { attr_type, .. } | Field::InstallationCustom { attr_type, .. }
                if *attr_type == AttributeType::ListOfObjects =>
            {
                return None;
            }
            Field::PersonCustom { name, attr_type } => {
                (Slot::PersonCustom(name.clone()), Some(View::Custom(*attr_type)))
            }
            Field::InstallationCustom { name, attr_type } => {
                (Slot::InstallationCustom(name.clone()), Some(View::Custom(*attr_type)))
            }
            Field::Item { .. } => return None,
        };
        Some((self.slot(&slot).unwrap_or(&EMPTY_SLOT), view))
    }

    /// Several ordered comparisons of one single-valued field under one `$and` (a range written
    /// `{"$gte": a, "$lt": b}`): one walk of the keys between the tightest bounds, each key
    /// checked against all of them, instead of two half-lines intersected. An absent value
    /// never compares, so only stored keys can match.
    fn comparisons(&self, field: &Field, conds: &[&Condition]) -> Option<RoaringBitmap> {
        let (index, view) = self.single_valued_field(field)?;
        let Some(view) = view.filter(|_| index.len() > 0) else {
            return Some(RoaringBitmap::new());
        };
        let mut low: Option<Key> = None;
        let mut high: Option<Key> = None;
        for cond in conds {
            let Op::Compare(cmp, o) = &cond.op else { return None };
            let at = Key::candidates(o)?;
            match cmp {
                Cmp::Gt | Cmp::Gte => low = Some(low.map_or(at.clone(), |l| l.max(at))),
                Cmp::Lt | Cmp::Lte => high = Some(high.map_or(at.clone(), |h| h.min(at))),
            }
        }
        // The ends of the operands' variant stand in for a missing bound.
        let variant = low.as_ref().or(high.as_ref())?.variant();
        let (first, end) = match variant {
            1 => (Key::Num(i64::MIN), Bound::Included(Key::Num(i64::MAX))),
            _ => (Key::Str(String::new()), Bound::Excluded(Key::Num(i64::MIN))),
        };
        let low = low.unwrap_or(first);
        let high = high.map_or(end, Bound::Included);
        let empty = match &high {
            Bound::Included(h) => low > *h,
            Bound::Excluded(h) => low >= *h,
            Bound::Unbounded => false,
        };
        if empty {
            return Some(RoaringBitmap::new());
        }
        Some(index.union_where(low, high, |key| conds.iter().all(|c| view.holds(c, key))))
    }

    /// A condition on a field with at most one value per pair.
    fn single_valued(&self, cond: &Condition, index: &SlotIndex, view: View) -> Option<RoaringBitmap> {
        let lookup = |operands: &[Operand]| {
            operands
                .iter()
                .filter_map(|o| {
                    let key = Key::candidates(o)?;
                    index.get(&key).filter(|_| view.equals(&key, o))
                })
                .union()
        };
        Some(match &cond.op {
            // `$eq` / `$in` never hold for an absent value; `$ne` / `$nin` always do.
            Op::Eq(o) => lookup(std::slice::from_ref(o)),
            Op::In(os) => lookup(os),
            Op::Ne(o) => &self.all - lookup(std::slice::from_ref(o)),
            Op::Nin(os) => &self.all - lookup(os),
            Op::Compare(cmp, o @ (Operand::Num(_) | Operand::Date(_) | Operand::DateTime { .. })) => {
                // Only keys of the operand's variant compare, and only on the operand's side
                // of it; the reference decides each of those.
                let at = Key::candidates(o)?;
                let (first, end) = match at {
                    Key::Num(_) => (Key::Num(i64::MIN), Bound::Included(Key::Num(i64::MAX))),
                    _ => (Key::Str(String::new()), Bound::Excluded(Key::Num(i64::MIN))),
                };
                let (low, high) = match cmp {
                    Cmp::Gt | Cmp::Gte => (at, end),
                    Cmp::Lt | Cmp::Lte => (first, Bound::Included(at)),
                };
                index.union_where(low, high, |key| view.holds(cond, key))
            }
            _ => {
                if index.len() > SCAN_LIMIT {
                    return None;
                }
                let mut out = index
                    .iter()
                    .filter(|(key, _)| view.holds(cond, key))
                    .map(|(_, bits)| bits)
                    .union();
                if cond.holds(&FieldValue::Absent) {
                    let mut present = RoaringBitmap::new();
                    for variant in 0..3 {
                        if view.present(variant) {
                            present |= &index.present[variant];
                        }
                    }
                    out |= &self.all - present;
                }
                out
            }
        })
    }

    /// A condition on the tags: "some tag is" operators unite the tags' bitmaps.
    fn tag_condition(&self, cond: &Condition) -> Option<RoaringBitmap> {
        let tag = |o: &Operand| match o {
            Operand::Str(t) => self.tags.get(&Key::Str(t.clone())),
            _ => None,
        };
        let tagged = |o: &Operand| tag(o).cloned().unwrap_or_default();
        let any = |os: &[Operand]| os.iter().filter_map(tag).union();
        Some(match &cond.op {
            Op::Eq(o) => tagged(o),
            Op::In(os) => any(os),
            Op::Ne(o) => &self.all - tagged(o),
            Op::Nin(os) => &self.all - any(os),
            Op::All(os) => {
                let mut out = self.all.clone();
                for o in os {
                    out &= tagged(o);
                }
                out
            }
            Op::Exists(true) => self.tagged.clone(),
            Op::Exists(false) => &self.all - &self.tagged,
            Op::StartsWith(_) | Op::Contains(_) => {
                if self.tags.len() > SCAN_LIMIT {
                    return None;
                }
                let mut out = RoaringBitmap::new();
                for (tag, bits) in self.tags.iter() {
                    let Key::Str(tag) = tag else { continue };
                    let one = BTreeSet::from([tag.clone()]);
                    if cond.holds(&FieldValue::Tags(&one)) {
                        out |= bits;
                    }
                }
                out
            }
            // Ordered comparisons and `$elemMatch` never hold for tags.
            Op::Compare(..) | Op::ElemMatch(_) => RoaringBitmap::new(),
        })
    }
}

#[cfg(test)]
mod tests;
