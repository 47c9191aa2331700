//! Property tests of custom attribute values (people.md §8.1–§8.2, mobile-api.md §4.4): typing
//! any JSON against every type never panics, accepted values normalise idempotently and keep
//! their type, dates and date-times round-trip, decimals are canonical, and errors inside a list
//! of objects name the offending item and field.

use proptest::prelude::*;
use roster_model::{
    AttributeType, ErrorCode, SchemaField,
    validate::MAX_ATTRIBUTE_VALUE_CHARS,
    values::{auto_type, canonical_decimal, format_date, format_date_time, parse_date, parse_date_time, type_value},
};
use serde_json::{Map, Value, json};

const SCALARS: [AttributeType; 5] = [
    AttributeType::String,
    AttributeType::Decimal,
    AttributeType::Boolean,
    AttributeType::Date,
    AttributeType::DateTime,
];

fn scalar_type() -> impl Strategy<Value = AttributeType> {
    proptest::sample::select(SCALARS.to_vec())
}

/// Any JSON value, nested a few levels, with strings that look like dates now and then.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        date_like().prop_map(Value::String),
        date_time_like().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,4}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `yyyy-MM-dd`-shaped strings, valid or not (month 13, day 31 of a short month, year 0000).
fn date_like() -> impl Strategy<Value = String> {
    (0u32..=10000, 0u32..=13, 0u32..=32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

/// Date-time-shaped strings, valid or not: fractions of 0–10 digits, `Z`, `+00:00` or another
/// offset, hours and minutes out of range now and then.
fn date_time_like() -> impl Strategy<Value = String> {
    (
        date_like(),
        0u32..=25,
        0u32..=61,
        0u32..=61,
        "(\\.[0-9]{0,10})?",
        prop_oneof![
            Just("Z"),
            Just("+00:00"),
            Just("-00:00"),
            Just("+01:00"),
            Just(""),
            Just("z")
        ],
    )
        .prop_map(|(d, h, mi, s, f, z)| format!("{d}T{h:02}:{mi:02}:{s:02}{f}{z}"))
}

/// A list-of-objects schema of 1–4 scalar fields with distinct names.
fn schema() -> impl Strategy<Value = Vec<SchemaField>> {
    proptest::collection::btree_map("[a-z]{1,6}", scalar_type(), 1..5).prop_map(|m| {
        m.into_iter()
            .map(|(name, field_type)| SchemaField { name, field_type })
            .collect()
    })
}

/// A JSON value that fits a scalar type (possibly in a non-canonical input form).
fn value_of(t: AttributeType) -> BoxedStrategy<Value> {
    match t {
        AttributeType::String => "\\PC{0,30}".prop_map(Value::String).boxed(),
        AttributeType::Decimal => prop_oneof![
            any::<i32>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
        ]
        .boxed(),
        AttributeType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        AttributeType::Date => (1i32..=9999, 1u8..=12, 1u8..=28)
            .prop_map(|(y, m, d)| json!(format!("{y:04}-{m:02}-{d:02}")))
            .boxed(),
        AttributeType::DateTime => (
            (1i32..=9999, 1u8..=12, 1u8..=28),
            (0u8..24, 0u8..60, 0u8..60),
            "(\\.[0-9]{1,9})?",
            prop_oneof![Just("Z"), Just("+00:00")],
        )
            .prop_map(|((y, mo, d), (h, mi, s), f, z)| {
                json!(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{f}{z}"))
            })
            .boxed(),
        AttributeType::ListOfObjects => unreachable!("not a scalar"),
    }
}

/// A schema and a list of 0–6 items that fit it.
fn valid_list() -> impl Strategy<Value = (Vec<SchemaField>, Value)> {
    schema().prop_flat_map(|schema| {
        let item = schema
            .iter()
            .map(|f| {
                value_of(f.field_type).prop_map({
                    let name = f.name.clone();
                    move |v| (name.clone(), v)
                })
            })
            .collect::<Vec<_>>()
            .prop_map(|kv| Value::Object(kv.into_iter().collect()));
        (
            Just(schema),
            proptest::collection::vec(item, 0..6).prop_map(Value::Array),
        )
    })
}

proptest! {
    /// Typing arbitrary JSON against every type, with and without a schema, never panics;
    /// a refusal is REQUEST_FORMAT_INVALID whose text starts with the attribute's path.
    #[test]
    fn typing_any_json_never_panics(v in any_json(), s in schema()) {
        for t in SCALARS.iter().copied().chain([AttributeType::ListOfObjects]) {
            for sch in [None, Some(s.as_slice())] {
                if let Err(e) = type_value(t, sch, &v, "customAttributes.x") {
                    prop_assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
                    prop_assert!(e.text.starts_with("customAttributes.x"), "{}", e.text);
                }
            }
        }
        let _ = auto_type(&v);
    }

    /// Accepted scalar values normalise idempotently, and the canonical form is accepted by
    /// the same type (it re-validates).
    #[test]
    fn scalar_values_normalise_idempotently(t in scalar_type(), v in any_json()) {
        if let Ok(canonical) = type_value(t, None, &v, "p") {
            prop_assert_eq!(type_value(t, None, &canonical, "p"), Ok(canonical.clone()));
        }
    }

    /// A value that fits its type is accepted, and its canonical form is what auto-definition
    /// would type it as (STRING excepted: `"2024-01-01"` may be a STRING, but auto-defines as
    /// DATE).
    #[test]
    fn fitting_values_are_accepted(
        (t, v) in scalar_type().prop_flat_map(|t| (Just(t), value_of(t))),
    ) {
        let canonical = type_value(t, None, &v, "p").unwrap();
        if t != AttributeType::String {
            prop_assert_eq!(auto_type(&canonical), Some(t), "{}", canonical);
        }
        // A value never fits a scalar type of another JSON kind.
        for other in SCALARS {
            // Booleans and numbers are JSON kinds of their own; every other type is a string.
            let kind_differs = matches!(t, AttributeType::Boolean | AttributeType::Decimal) && other != t;
            if kind_differs {
                prop_assert!(type_value(other, None, &v, "p").is_err(), "{} fits {:?}", v, other);
            }
        }
    }

    /// Date and date-time strings: accepted exactly when they parse, the canonical output is
    /// the fixed shape (`yyyy-MM-dd`, `yyyy-MM-ddTHH:mm:ssZ`) and parses to the same instant
    /// (fraction truncated).
    #[test]
    fn dates_and_date_times_have_one_canonical_form(d in date_like(), dt in date_time_like()) {
        match (parse_date(&d), type_value(AttributeType::Date, None, &json!(d), "p")) {
            (Some(date), Ok(out)) => {
                let formatted = format_date(date);
                prop_assert_eq!(out.as_str(), Some(formatted.as_str()));
                prop_assert_eq!(out.as_str(), Some(d.as_str()));
            }
            (None, Err(_)) => {}
            (p, r) => prop_assert!(false, "{:?}: parse {:?} but typing {:?}", d, p, r),
        }
        match (parse_date_time(&dt), type_value(AttributeType::DateTime, None, &json!(dt), "p")) {
            (Some(t), Ok(out)) => {
                let s = out.as_str().unwrap();
                prop_assert_eq!(s.len(), 20);
                prop_assert!(s.ends_with('Z'));
                prop_assert_eq!(parse_date_time(s), Some(t));
                prop_assert_eq!(&s[..19], &dt[..19]);
                prop_assert!(dt.ends_with('Z') || dt.ends_with("+00:00"));
            }
            (None, Err(_)) => {}
            (p, r) => prop_assert!(false, "{:?}: parse {:?} but typing {:?}", dt, p, r),
        }
    }

    /// DECIMAL: the canonical JSON is the same f64, integral values within ±2^53 are integers,
    /// and the text re-parses to the same canonical value.
    #[test]
    fn decimals_are_canonical(f in any::<f64>()) {
        match canonical_decimal(f) {
            None => prop_assert!(!f.is_finite()),
            Some(v) => {
                prop_assert_eq!(v.as_f64(), Some(f));
                let text = v.to_string();
                let back: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(canonical_decimal(back.as_f64().unwrap()), Some(v.clone()));
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    prop_assert!(!text.contains(['.', 'e', 'E']), "{}", text);
                }
            }
        }
    }

    /// A list that fits its schema is accepted; its canonical form re-validates to itself and
    /// keeps one object per item with exactly the schema's keys, in schema order.
    #[test]
    fn fitting_lists_normalise_idempotently((schema, list) in valid_list()) {
        let out = type_value(AttributeType::ListOfObjects, Some(&schema), &list, "customAttributes.l").unwrap();
        prop_assert_eq!(
            type_value(AttributeType::ListOfObjects, Some(&schema), &out, "customAttributes.l"),
            Ok(out.clone())
        );
        let items = out.as_array().unwrap();
        prop_assert_eq!(items.len(), list.as_array().unwrap().len());
        for item in items {
            let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
            let names: Vec<&String> = schema.iter().map(|f| &f.name).collect();
            prop_assert_eq!(keys, names);
        }
        prop_assert!(serde_json::to_string(&out).unwrap().chars().count() <= MAX_ATTRIBUTE_VALUE_CHARS);
    }

    /// One broken item in a fitting list (a missing key, an extra key, a null, or a value of
    /// another JSON kind): the error names exactly that item and field.
    #[test]
    fn list_errors_point_at_the_offending_field(
        (schema, list) in valid_list().prop_filter("non-empty", |(_, l)| !l.as_array().unwrap().is_empty()),
        which_item in any::<proptest::sample::Index>(),
        which_field in any::<proptest::sample::Index>(),
        how in 0u8..4,
    ) {
        let mut items = list.as_array().unwrap().clone();
        let i = which_item.index(items.len());
        let field = &schema[which_field.index(schema.len())];
        let obj = items[i].as_object_mut().unwrap();
        let expected_path = match how {
            0 => {
                obj.remove(&field.name);
                format!("customAttributes.l[{i}].{}", field.name)
            }
            1 => {
                obj.insert("zzzzzzz".into(), json!(1));
                format!("customAttributes.l[{i}].zzzzzzz")
            }
            2 => {
                obj.insert(field.name.clone(), Value::Null);
                format!("customAttributes.l[{i}].{}", field.name)
            }
            _ => {
                // An array fits no scalar type.
                obj.insert(field.name.clone(), json!([1]));
                format!("customAttributes.l[{i}].{}", field.name)
            }
        };
        let e = type_value(AttributeType::ListOfObjects, Some(&schema), &Value::Array(items), "customAttributes.l")
            .unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
        let expected_prefix = format!("{expected_path}: ");
        prop_assert!(e.text.starts_with(&expected_prefix), "{} does not start with {}", e.text, expected_path);
    }

    /// A list too long for 4096 characters of compact JSON is refused at the attribute's path,
    /// however many items it has (bodies of up to 2 MiB can hold ~10^5 items).
    #[test]
    fn overlong_lists_are_refused(n in prop_oneof![1usize..600, 600usize..1_500], extra in 0usize..60) {
        let schema = vec![SchemaField { name: "s".into(), field_type: AttributeType::String }];
        let item = json!({"s": "x".repeat(extra)});
        let list = Value::Array(vec![item; n]);
        // `[` + n × `{"s":"…"}` joined by `,` + `]`.
        let len = 2 + n * (8 + extra) + (n - 1);
        let r = type_value(AttributeType::ListOfObjects, Some(&schema), &list, "customAttributes.l");
        prop_assert_eq!(r.is_ok(), len <= MAX_ATTRIBUTE_VALUE_CHARS, "length {}", len);
        if let Err(e) = r {
            prop_assert!(e.text.starts_with("customAttributes.l: "), "{}", e.text);
        }
    }
}

#[test]
fn date_time_output_round_trips_through_format() {
    // Spot check of the fixed shapes the official SDKs recognise (mobile-api.md §4.4).
    let t = parse_date_time("2020-02-26T09:41:57.123456+00:00").unwrap();
    assert_eq!(format_date_time(t), "2020-02-26T09:41:57Z");
    assert_eq!(format_date(parse_date("0001-01-01").unwrap()), "0001-01-01");
}
