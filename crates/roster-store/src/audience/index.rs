//! The audience index: the rows every backend keeps next to persons and installations so that a
//! filter (management-api.md §4) runs as indexed SQL instead of reading JSON row by row.
//!
//! Everything here is computed in Rust, once, on write, and stored: the typed value of every
//! scalar custom attribute, every field of every list-of-objects item, Unicode-lowercased copies
//! for the case-insensitive operators (SQL `lower()` is ASCII-only on SQLite and follows the
//! database's locale, not Rust's mapping, on PostgreSQL) and a sortable key for VERSION order.
//! Both backends store exactly these values, so they answer alike.
//!
//! Tables (migrations `0003_audience.sql`):
//! - `person_attribute_values` / `installation_attribute_values`: one row per value, keyed by
//!   (owner, `name`, `item`, `field`). A scalar attribute is one row with `item = -1`, `field = ''`.
//!   A list of objects is one header row per item (`item` = its position, `field = ''`, no value)
//!   and one row per field of the item (`field` = the schema field's name). Persons also get
//!   reserved rows (names starting with `$`, which no attribute name can, people.md §8.2) that
//!   hold the lowercased copies of their STRING fields and tags.
//! - `installation_search`: one row per installation with the lowercased copies of its STRING
//!   and VERSION system fields and the VERSION sort keys.

use roster_model::{Installation, Person};
use serde_json::Value;

/// `item` of a scalar attribute's row.
pub const SCALAR_ITEM: i64 = -1;

/// Reserved person rows: lowercased copies of the STRING person fields and of the tags.
pub const EXTERNAL_USER_ID: &str = "$externalUserId";
/// See [`EXTERNAL_USER_ID`].
pub const FIRST_NAME: &str = "$firstName";
/// See [`EXTERNAL_USER_ID`].
pub const MIDDLE_NAME: &str = "$middleName";
/// See [`EXTERNAL_USER_ID`].
pub const LAST_NAME: &str = "$lastName";
/// See [`EXTERNAL_USER_ID`]; one row per tag (`item` = its position in code-point order).
pub const TAGS: &str = "$tags";

/// The kinds of a custom attribute's value rows, as SQL conditions on a `*_attribute_values`
/// row: a string, date or date-time (text), a number, a boolean, a list item's header. Every row
/// of a custom attribute is exactly one of them (see [`ValueRow`]'s constructors: a scalar row
/// has exactly one typed value, a header none, and only reserved rows hold a lowercased copy
/// alone), and each matches one partial index (migration 0009). Deleting an attribute's rows
/// is one indexed statement per kind.
pub const CUSTOM_ROW_KINDS: [&str; 4] = [
    "value_text IS NOT NULL",
    "value_num IS NOT NULL",
    "value_bool IS NOT NULL",
    LIST_HEADER,
];

/// The list item header rows of a custom attribute (the partial index
/// `*_attribute_values_header_idx`): reserved rows, which also have `field = ''` and items,
/// always hold a lowercased copy.
pub const LIST_HEADER: &str = "field = '' AND item >= 0 AND value_lower IS NULL";

/// One row of a `*_attribute_values` table (without the account and owner columns).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRow {
    pub name: String,
    pub item: i64,
    pub field: String,
    /// Strings, dates and date-times (canonical text).
    pub text: Option<String>,
    /// The Unicode lowercase of a string value.
    pub lower: Option<String>,
    /// A number, as its [`num_key`].
    pub num: Option<i64>,
    pub boolean: Option<bool>,
}

impl ValueRow {
    fn empty(name: &str, item: i64, field: &str) -> ValueRow {
        ValueRow {
            name: name.to_string(),
            item,
            field: field.to_string(),
            text: None,
            lower: None,
            num: None,
            boolean: None,
        }
    }

    /// The row of a scalar JSON value; `None` for null, arrays and objects (which a filter
    /// treats as absent, like `Filter::matches` does).
    fn scalar(name: &str, item: i64, field: &str, value: &Value) -> Option<ValueRow> {
        let mut row = ValueRow::empty(name, item, field);
        match value {
            Value::String(s) => {
                row.lower = Some(indexable(&s.to_lowercase()));
                row.text = Some(indexable(s));
            }
            Value::Number(n) => row.num = Some(num_key(n.as_f64()?)),
            Value::Bool(b) => row.boolean = Some(*b),
            _ => return None,
        }
        Some(row)
    }

    /// A reserved row holding only a lowercased copy.
    fn lowered(name: &str, item: i64, value: &str) -> ValueRow {
        let mut row = ValueRow::empty(name, item, "");
        row.lower = Some(indexable(&value.to_lowercase()));
        row
    }
}

/// A string as the index stores it: U+0000, which PostgreSQL text cannot hold, as U+FFFD. No
/// request can store U+0000 (roster-model refuses it in every stored string, and filter operands
/// with it are refused too); only data written around the API could hold it.
pub fn indexable(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// The rows of a set of custom attributes (people.md §8.1 canonical values).
fn attribute_rows(attributes: &roster_model::CustomAttributes, out: &mut Vec<ValueRow>) {
    for (name, value) in attributes {
        match value {
            Value::Array(items) => {
                for (position, item) in items.iter().enumerate() {
                    let Value::Object(fields) = item else { continue };
                    let position = position as i64;
                    out.push(ValueRow::empty(name, position, ""));
                    for (field, v) in fields {
                        // An empty field name would collide with the header row; schemas
                        // never have one (people.md §8.2: 1–100 characters).
                        if field.is_empty() {
                            continue;
                        }
                        out.extend(ValueRow::scalar(name, position, field, v));
                    }
                }
            }
            scalar => out.extend(ValueRow::scalar(name, SCALAR_ITEM, "", scalar)),
        }
    }
}

/// Every index row of a person.
pub fn person_rows(person: &Person) -> Vec<ValueRow> {
    let mut out = Vec::new();
    for (name, value) in [
        (EXTERNAL_USER_ID, &person.external_user_id),
        (FIRST_NAME, &person.first_name),
        (MIDDLE_NAME, &person.middle_name),
        (LAST_NAME, &person.last_name),
    ] {
        if let Some(v) = value {
            out.push(ValueRow::lowered(name, SCALAR_ITEM, v));
        }
    }
    for (position, tag) in person.tags.iter().enumerate() {
        out.push(ValueRow::lowered(TAGS, position as i64, tag));
    }
    attribute_rows(&person.custom_attributes, &mut out);
    out
}

/// Every value row of an installation (its custom attributes).
pub fn installation_rows(inst: &Installation) -> Vec<ValueRow> {
    let mut out = Vec::new();
    attribute_rows(&inst.custom_attributes, &mut out);
    out
}

/// The columns of `installation_search` after `account_id, push_reg_id`, in table order.
pub const SEARCH_COLUMNS: [&str; 13] = [
    "os_lower",
    "device_manufacturer_lower",
    "device_model_lower",
    "device_name_lower",
    "language_lower",
    "device_timezone_offset_lower",
    "application_user_id_lower",
    "os_version_lower",
    "app_version_lower",
    "sdk_version_lower",
    "os_version_key",
    "app_version_key",
    "sdk_version_key",
];

/// The values of [`SEARCH_COLUMNS`] for an installation.
pub fn installation_search(inst: &Installation) -> [Option<String>; 13] {
    let s = &inst.system;
    let lower = |v: &Option<String>| v.as_deref().map(|s| indexable(&s.to_lowercase()));
    let key = |v: &Option<String>| v.as_deref().and_then(version_key);
    [
        lower(&s.os),
        lower(&s.device_manufacturer),
        lower(&s.device_model),
        lower(&s.device_name),
        lower(&s.language),
        lower(&s.device_timezone_offset),
        lower(&inst.application_user_id),
        lower(&s.os_version),
        lower(&s.app_version),
        lower(&s.sdk_version),
        key(&s.os_version),
        key(&s.app_version),
        key(&s.sdk_version),
    ]
}

/// A DECIMAL as a 64-bit integer with the same order (and equality: `-0` is `0`), so that both
/// backends compare numbers exactly as `f64` does, with an ordinary integer index.
pub fn num_key(f: f64) -> i64 {
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits() as i64;
    // Negative floats order backwards by their bits: flip all but the sign bit.
    if bits < 0 { bits ^ i64::MAX } else { bits }
}

/// management-api.md §4.4 VERSION order as a string whose byte order is the version order: the
/// components of the longest `[0-9]+(\.[0-9]+)*` prefix, trailing zero components dropped
/// (`3` = `3.0.0`), each written as two decimal digits of length then its digits without leading
/// zeros (a longer number is larger; components are compared in turn, and a key that is a
/// prefix of another is the smaller version because the other has a non-zero component more).
/// `None` when the value has no such prefix (every order operator is then false).
pub fn version_key(s: &str) -> Option<String> {
    let mut components = version_components(s)?;
    while components.last() == Some(&0) {
        components.pop();
    }
    let mut key = String::new();
    for c in components {
        let digits = if c == 0 { String::new() } else { c.to_string() };
        key.push_str(&format!("{:02}{digits}", digits.len()));
    }
    Some(key)
}

/// The numeric components of a version's leading `[0-9]+(\.[0-9]+)*`, saturating beyond `u128`
/// (the reference semantics of `roster_model::filter::compare_versions`).
fn version_components(s: &str) -> Option<Vec<u128>> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        let n = rest[..digits].bytes().fold(0u128, |acc, d| {
            acc.saturating_mul(10).saturating_add(u128::from(d - b'0'))
        });
        out.push(n);
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(after) if after.bytes().next().is_some_and(|c| c.is_ascii_digit()) => rest = after,
            _ => break,
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// The smallest string greater than every string that starts with `prefix` (code-point order),
/// so that `prefix <= s < bound` is "s starts with prefix" as an index range. `None` when there
/// is no such bound (an empty prefix, or one of only `char::MAX`).
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            char::MAX => continue,
            '\u{D7FF}' => '\u{E000}',
            c => char::from_u32(c as u32 + 1)?,
        };
        chars.push(next);
        return Some(chars.into_iter().collect());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_model::filter::compare_versions;
    use std::cmp::Ordering;

    #[test]
    fn num_key_orders_like_f64() {
        let values = [
            f64::MIN,
            -1e300,
            -2.5,
            -1.0,
            -1e-300,
            -0.0,
            0.0,
            1e-300,
            0.1,
            1.0,
            2.0,
            2.5,
            9007199254740993.0,
            1e300,
            f64::MAX,
        ];
        for a in values {
            for b in values {
                assert_eq!(num_key(a).cmp(&num_key(b)), a.partial_cmp(&b).unwrap(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn version_keys_order_like_the_reference() {
        let versions = [
            "0",
            "1",
            "1.0",
            "1.0.0",
            "1.0.1",
            "1.2",
            "1.10",
            "2.9.5",
            "2.10",
            "3",
            "3.0.0-beta",
            "3.0.1",
            "10",
            "010",
            "1.2.3.4.5",
            "12.0a",
            "7.",
            "7..1",
            "99999999999999999999999999999999999999999",
            "999999999999999999999999999999999999999999999",
            "abc",
            "",
            "v1.2",
        ];
        for a in versions {
            for b in versions {
                let expected = compare_versions(a, b);
                let got = match (version_key(a), version_key(b)) {
                    (Some(x), Some(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
                    _ => None,
                };
                assert_eq!(got, expected, "{a:?} vs {b:?}");
            }
        }
        assert_eq!(version_key("3"), version_key("3.0.0"));
        assert_eq!(compare_versions("2.10", "2.9.5"), Some(Ordering::Greater));
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        for (s, p) in [
            ("abc", "ab"),
            ("ab", "ab"),
            ("ab\u{10FFFF}\u{10FFFF}", "ab"),
            ("žlj", "ž"),
        ] {
            let upper = prefix_upper_bound(p).unwrap();
            assert!(s >= p && s < upper.as_str(), "{s} in [{p}, {upper})");
        }
        assert!("ac" >= prefix_upper_bound("ab").unwrap().as_str());
    }

    #[test]
    fn rows_of_a_person() {
        let mut p = Person::new_anonymous(uuid::Uuid::new_v4(), 1);
        p.first_name = Some("ΑΣ".into());
        p.tags = ["Vip".to_string(), "b".to_string()].into_iter().collect();
        p.custom_attributes.insert("n".into(), serde_json::json!(2));
        p.custom_attributes
            .insert("orders".into(), serde_json::json!([{"sku": "A", "qty": 1}]));
        let rows = person_rows(&p);
        let names: Vec<(&str, i64, &str)> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.item, r.field.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (FIRST_NAME, -1, ""),
                (TAGS, 0, ""),
                (TAGS, 1, ""),
                ("n", -1, ""),
                ("orders", 0, ""),
                ("orders", 0, "sku"),
                ("orders", 0, "qty"),
            ]
        );
        // Rust's lowercase mapping, final sigma included.
        assert_eq!(rows[0].lower.as_deref(), Some("ας"));
        assert_eq!(rows[3].num, Some(num_key(2.0)));
        assert_eq!(rows[5].text.as_deref(), Some("A"));
        assert_eq!(rows[5].lower.as_deref(), Some("a"));
    }
}
