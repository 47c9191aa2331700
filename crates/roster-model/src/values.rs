//! Custom attribute values (people.md §8.1–§8.2, mobile-api.md §4.4): the strict `DATE` and
//! `DATE_TIME` shapes, the canonical `DECIMAL` output, auto-definition from a JSON value, and the
//! check of a value against its type that yields the canonical stored / output form.

use serde_json::{Map, Value};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::domain::{AttributeType, SchemaField};
use crate::error::ApiError;
use crate::validate::MAX_ATTRIBUTE_VALUE_CHARS;

/// people.md §8.1: `DECIMAL` values within ±2^53 that are integral are emitted as integers.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

/// people.md §8.1: parses exactly `yyyy-MM-dd`, a valid Gregorian date, year 0001–9999.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 {
        return None;
    }
    parse_date_bytes(b)
}

/// mobile-api.md §4.4: parses `yyyy-MM-ddTHH:mm:ss[.f{1,9}](Z|+00:00)` as UTC, fraction truncated.
pub fn parse_date_time(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let date = parse_date_bytes(&b[..10])?;
    if b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let mut rest = &b[19..];
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let n = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        // The fraction is truncated: only its syntax matters.
        rest = &after_dot[n..];
    }
    if rest != b"Z" && rest != b"+00:00" {
        return None;
    }
    let time = Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// people.md §8.1: the output form of a `DATE`, `yyyy-MM-dd`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// people.md §8.1: the output form of a `DATE_TIME`, `yyyy-MM-ddTHH:mm:ssZ` in UTC, no fraction.
pub fn format_date_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// people.md §8.1: a `DECIMAL` as JSON (integer if integral within ±2^53); `None` if non-finite.
pub fn canonical_decimal(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER {
        // Exact: |f| ≤ 2^53 fits an i64, and -0.0 becomes 0.
        return Some(Value::from(f as i64));
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// people.md §8.2: the auto-defined type of a scalar JSON value; `None` for arrays, objects, null.
pub fn auto_type(value: &Value) -> Option<AttributeType> {
    match value {
        Value::Number(_) => Some(AttributeType::Decimal),
        Value::Bool(_) => Some(AttributeType::Boolean),
        Value::String(s) if parse_date(s).is_some() => Some(AttributeType::Date),
        Value::String(s) if parse_date_time(s).is_some() => Some(AttributeType::DateTime),
        Value::String(_) => Some(AttributeType::String),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// people.md §8.1–§8.2: checks a non-null value against its type and returns its canonical form.
pub fn type_value(
    attr_type: AttributeType,
    schema: Option<&[SchemaField]>,
    value: &Value,
    path: &str,
) -> Result<Value, ApiError> {
    if value.is_null() {
        return Err(ApiError::format(
            path,
            format!("null is not a value of type {}", attr_type.as_str()),
        ));
    }
    match attr_type {
        AttributeType::ListOfObjects => type_list(schema, value, path),
        scalar => type_scalar(scalar, value, path),
    }
}

/// A scalar value (STRING, DECIMAL, BOOLEAN, DATE, DATE_TIME) in canonical form.
fn type_scalar(attr_type: AttributeType, value: &Value, path: &str) -> Result<Value, ApiError> {
    let wrong = |expected: &str| {
        ApiError::format(
            path,
            format!(
                "expected {expected} for an attribute of type {}, got {}",
                attr_type.as_str(),
                json_kind(value)
            ),
        )
    };
    match attr_type {
        AttributeType::String => {
            let s = value.as_str().ok_or_else(|| wrong("a string"))?;
            if s.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
                return Err(ApiError::format(
                    path,
                    format!("a STRING value must be at most {MAX_ATTRIBUTE_VALUE_CHARS} characters long"),
                ));
            }
            Ok(value.clone())
        }
        AttributeType::Decimal => value
            .as_f64()
            .and_then(canonical_decimal)
            .ok_or_else(|| wrong("a number")),
        AttributeType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => Err(wrong("true or false")),
        },
        AttributeType::Date => {
            let s = value.as_str().ok_or_else(|| wrong("a date string yyyy-MM-dd"))?;
            let d = parse_date(s).ok_or_else(|| {
                ApiError::format(
                    path,
                    "not a valid DATE: expected yyyy-MM-dd, a valid calendar date, year 0001 to 9999",
                )
            })?;
            Ok(Value::String(format_date(d)))
        }
        AttributeType::DateTime => {
            let s = value
                .as_str()
                .ok_or_else(|| wrong("a date-time string yyyy-MM-ddTHH:mm:ssZ"))?;
            let t = parse_date_time(s).ok_or_else(|| {
                ApiError::format(
                    path,
                    "not a valid DATE_TIME: expected yyyy-MM-ddTHH:mm:ssZ (optional fractional \
                     seconds, Z or +00:00)",
                )
            })?;
            Ok(Value::String(format_date_time(t)))
        }
        AttributeType::ListOfObjects => Err(ApiError::format(path, "a LIST_OF_OBJECTS value is not allowed here")),
    }
}

/// A LIST_OF_OBJECTS value: an array of flat objects with exactly the schema's keys, each item's
/// keys emitted in schema order; the compact JSON of the canonical array is ≤ 4096 characters.
fn type_list(schema: Option<&[SchemaField]>, value: &Value, path: &str) -> Result<Value, ApiError> {
    let Some(schema) = schema else {
        return Err(ApiError::format(
            path,
            "the LIST_OF_OBJECTS attribute has no object schema",
        ));
    };
    let Value::Array(items) = value else {
        return Err(ApiError::format(
            path,
            format!(
                "expected an array of objects for an attribute of type LIST_OF_OBJECTS, got {}",
                json_kind(value)
            ),
        ));
    };
    // Every canonical item is at least `{"name":v,...}` long, so a list with more items than
    // could ever fit the limit is refused before any item is typed (a 2 MiB body could hold
    // 10^5 items).
    let min_item: usize =
        2 + schema.iter().map(|f| f.name.chars().count() + 4).sum::<usize>() + schema.len().saturating_sub(1);
    let min_len = 2 + items.len() * min_item + items.len().saturating_sub(1);
    if !items.is_empty() && min_len > MAX_ATTRIBUTE_VALUE_CHARS {
        return Err(list_too_long(path));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Value::Object(obj) = item else {
            return Err(ApiError::format(
                &item_path,
                format!("expected an object, got {}", json_kind(item)),
            ));
        };
        let mut canonical = Map::with_capacity(schema.len());
        for field in schema {
            let field_path = format!("{item_path}.{}", field.name);
            let v = obj.get(&field.name).ok_or_else(|| {
                ApiError::format(
                    &field_path,
                    format!("missing key '{}' required by the object schema", field.name),
                )
            })?;
            if v.is_null() {
                return Err(ApiError::format(&field_path, "null is not allowed in a list item"));
            }
            if !field.field_type.is_scalar() {
                return Err(ApiError::format(
                    &field_path,
                    "the object schema gives this field a non-scalar type",
                ));
            }
            canonical.insert(field.name.clone(), type_scalar(field.field_type, v, &field_path)?);
        }
        if let Some(extra) = obj.keys().find(|k| !schema.iter().any(|f| &f.name == *k)) {
            return Err(ApiError::format(
                &format!("{item_path}.{extra}"),
                format!("unexpected key '{extra}', not in the object schema"),
            ));
        }
        out.push(Value::Object(canonical));
    }
    let out = Value::Array(out);
    let compact = serde_json::to_string(&out).expect("a JSON value always serialises");
    if compact.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
        return Err(list_too_long(path));
    }
    Ok(out)
}

fn list_too_long(path: &str) -> ApiError {
    ApiError::format(
        path,
        format!("a LIST_OF_OBJECTS value must be at most {MAX_ATTRIBUTE_VALUE_CHARS} characters of compact JSON"),
    )
}

/// The JSON kind of a value, for error texts.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `yyyy-MM-dd` from exactly ten bytes, year 0001–9999.
fn parse_date_bytes(b: &[u8]) -> Option<Date> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if year == 0 {
        return None;
    }
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

/// The value of a run of ASCII digits (all of `b` must be digits).
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::{date, datetime};

    fn field(name: &str, t: AttributeType) -> SchemaField {
        SchemaField {
            name: name.to_string(),
            field_type: t,
        }
    }

    fn orders_schema() -> Vec<SchemaField> {
        vec![
            field("sku", AttributeType::String),
            field("price", AttributeType::Decimal),
            field("at", AttributeType::DateTime),
            field("gift", AttributeType::Boolean),
            field("day", AttributeType::Date),
        ]
    }

    fn err_text(r: Result<Value, ApiError>) -> String {
        let e = r.expect_err("expected an error");
        assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
        e.text
    }

    // ----- dates -----

    #[test]
    fn dates_valid() {
        assert_eq!(parse_date("2024-02-29"), Some(date!(2024 - 02 - 29)));
        assert_eq!(parse_date("2000-02-29"), Some(date!(2000 - 02 - 29)));
        assert_eq!(parse_date("0001-01-01"), Some(date!(0001 - 01 - 01)));
        assert_eq!(parse_date("9999-12-31"), Some(date!(9999 - 12 - 31)));
        assert_eq!(parse_date("1990-05-17"), Some(date!(1990 - 05 - 17)));
    }

    #[test]
    fn dates_invalid() {
        for s in [
            "2023-02-29",
            "1900-02-29",
            "2100-02-29",
            "2024-02-30",
            "2024-06-31",
            "2024-13-01",
            "2024-00-01",
            "2024-01-00",
            "2024-01-32",
            "0000-01-01",
            "10000-01-01",
            "-001-01-01",
            "+2024-01-01",
            "2024-1-01",
            "2024-01-1",
            "24-01-01",
            "2024/01/01",
            "2024-01-01 ",
            " 2024-01-01",
            "2024-01-01T00:00:00Z",
            "20240101",
            "2024-０1-01",
            "",
            "abcd-ef-gh",
        ] {
            assert_eq!(parse_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn dates_format() {
        assert_eq!(format_date(date!(2024 - 02 - 29)), "2024-02-29");
        assert_eq!(format_date(date!(0001 - 01 - 01)), "0001-01-01");
        assert_eq!(format_date(date!(0999 - 12 - 09)), "0999-12-09");
    }

    // ----- date-times -----

    #[test]
    fn date_times_valid() {
        let t = datetime!(2020-02-26 09:41:57 UTC);
        assert_eq!(parse_date_time("2020-02-26T09:41:57Z"), Some(t));
        assert_eq!(parse_date_time("2020-02-26T09:41:57+00:00"), Some(t));
        assert_eq!(parse_date_time("2020-02-26T09:41:57.5Z"), Some(t));
        assert_eq!(parse_date_time("2020-02-26T09:41:57.999999999Z"), Some(t));
        assert_eq!(parse_date_time("2020-02-26T09:41:57.123456+00:00"), Some(t));
        assert_eq!(parse_date_time("2020-02-26T09:41:57.000Z"), Some(t));
        assert_eq!(
            parse_date_time("0001-01-01T00:00:00Z"),
            Some(datetime!(0001-01-01 00:00:00 UTC))
        );
        assert_eq!(
            parse_date_time("9999-12-31T23:59:59.9Z"),
            Some(datetime!(9999-12-31 23:59:59 UTC))
        );
        assert_eq!(
            parse_date_time("2024-02-29T12:00:00Z"),
            Some(datetime!(2024-02-29 12:00:00 UTC))
        );
        assert_eq!(
            parse_date_time("2020-02-26T09:41:57Z").unwrap().offset(),
            UtcOffset::UTC
        );
    }

    #[test]
    fn date_times_invalid() {
        for s in [
            "2020-02-26T09:41:57+01:00",
            "2020-02-26T09:41:57-00:00",
            "2020-02-26T09:41:57-05:00",
            "2020-02-26T09:41:57+0000",
            "2020-02-26T09:41:57+00",
            "2020-02-26T09:41:57",
            "2020-02-26T09:41Z",
            "2020-02-26T09:41:57z",
            "2020-02-26t09:41:57Z",
            "2020-02-26 09:41:57Z",
            "2020-02-26T09:41:57.Z",
            "2020-02-26T09:41:57.1234567890Z",
            "2020-02-26T09:41:57,5Z",
            "2020-02-26T09:41:57.5",
            "2020-02-26T09:41:57ZZ",
            "2020-02-26T09:41:57Z ",
            "2020-02-26T24:00:00Z",
            "2020-02-26T23:60:00Z",
            "2020-02-26T23:59:60Z",
            "2020-02-30T09:41:57Z",
            "2023-02-29T09:41:57Z",
            "0000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2020-2-26T09:41:57Z",
            "2020-02-26T9:41:57Z",
            "2020-02-26",
            "2020-02-26T09:41:57.５Z",
            "",
        ] {
            assert_eq!(parse_date_time(s), None, "{s:?}");
        }
    }

    #[test]
    fn date_times_format() {
        assert_eq!(
            format_date_time(datetime!(2020-02-26 09:41:57.75 UTC)),
            "2020-02-26T09:41:57Z"
        );
        assert_eq!(
            format_date_time(datetime!(2020-02-26 10:41:57 +01:00)),
            "2020-02-26T09:41:57Z"
        );
        assert_eq!(
            format_date_time(datetime!(0001-01-01 00:00:00 UTC)),
            "0001-01-01T00:00:00Z"
        );
    }

    // ----- decimals -----

    #[test]
    fn decimals() {
        assert_eq!(canonical_decimal(120.0), Some(json!(120)));
        assert_eq!(canonical_decimal(-3.0), Some(json!(-3)));
        assert_eq!(canonical_decimal(-0.0), Some(json!(0)));
        assert_eq!(canonical_decimal(19.99), Some(json!(19.99)));
        assert_eq!(
            canonical_decimal(9_007_199_254_740_992.0),
            Some(json!(9_007_199_254_740_992i64))
        );
        assert_eq!(
            canonical_decimal(-9_007_199_254_740_992.0),
            Some(json!(-9_007_199_254_740_992i64))
        );
        let big = canonical_decimal(9_007_199_254_740_994.0).unwrap();
        assert!(big.is_f64());
        assert_eq!(big.as_f64(), Some(9_007_199_254_740_994.0));
        assert!(canonical_decimal(1e300).unwrap().is_f64());
        assert_eq!(canonical_decimal(f64::NAN), None);
        assert_eq!(canonical_decimal(f64::INFINITY), None);
        assert_eq!(canonical_decimal(f64::NEG_INFINITY), None);
        // Wire spelling: integers without a fraction, floats in shortest round-trip form.
        assert_eq!(canonical_decimal(120.0).unwrap().to_string(), "120");
        assert_eq!(canonical_decimal(0.1).unwrap().to_string(), "0.1");
        assert_eq!(canonical_decimal(19.99).unwrap().to_string(), "19.99");
    }

    // ----- auto-definition -----

    #[test]
    fn auto_types() {
        assert_eq!(auto_type(&json!(1)), Some(AttributeType::Decimal));
        assert_eq!(auto_type(&json!(1.5)), Some(AttributeType::Decimal));
        assert_eq!(auto_type(&json!(-1)), Some(AttributeType::Decimal));
        assert_eq!(auto_type(&json!(true)), Some(AttributeType::Boolean));
        assert_eq!(auto_type(&json!("2024-01-01")), Some(AttributeType::Date));
        assert_eq!(auto_type(&json!("2024-02-30")), Some(AttributeType::String));
        assert_eq!(auto_type(&json!("2020-02-26T09:41:57Z")), Some(AttributeType::DateTime));
        assert_eq!(
            auto_type(&json!("2020-02-26T09:41:57.123+00:00")),
            Some(AttributeType::DateTime)
        );
        assert_eq!(
            auto_type(&json!("2020-02-26T09:41:57+01:00")),
            Some(AttributeType::String)
        );
        assert_eq!(auto_type(&json!("gold")), Some(AttributeType::String));
        assert_eq!(auto_type(&json!("")), Some(AttributeType::String));
        assert_eq!(auto_type(&json!("1")), Some(AttributeType::String));
        assert_eq!(auto_type(&json!(null)), None);
        assert_eq!(auto_type(&json!([])), None);
        assert_eq!(auto_type(&json!([{"a": 1}])), None);
        assert_eq!(auto_type(&json!({"a": 1})), None);
    }

    // ----- scalar typing -----

    #[test]
    fn type_string() {
        let p = "customAttributes.tier";
        assert_eq!(
            type_value(AttributeType::String, None, &json!("gold"), p).unwrap(),
            json!("gold")
        );
        // A STRING attribute keeps a date-looking string as given.
        assert_eq!(
            type_value(AttributeType::String, None, &json!("2024-01-01"), p).unwrap(),
            json!("2024-01-01")
        );
        assert_eq!(
            type_value(AttributeType::String, None, &json!(""), p).unwrap(),
            json!("")
        );
        let max = "ž".repeat(4096);
        assert_eq!(
            type_value(AttributeType::String, None, &json!(max), p).unwrap(),
            json!(max)
        );
        let t = err_text(type_value(AttributeType::String, None, &json!("x".repeat(4097)), p));
        assert!(t.starts_with("customAttributes.tier: "), "{t}");
        assert!(t.contains("4096"));
        for v in [json!(1), json!(true), json!(["a"]), json!({"a": "b"})] {
            let t = err_text(type_value(AttributeType::String, None, &v, p));
            assert!(t.starts_with("customAttributes.tier: "), "{t}");
            assert!(t.contains("STRING"), "{t}");
        }
    }

    #[test]
    fn type_decimal() {
        let p = "customAttributes.score";
        let d = |v: Value| type_value(AttributeType::Decimal, None, &v, p);
        assert_eq!(d(json!(120)).unwrap().to_string(), "120");
        assert_eq!(d(json!(120.0)).unwrap().to_string(), "120");
        assert_eq!(d(json!(19.99)).unwrap(), json!(19.99));
        assert_eq!(d(json!(-0.5)).unwrap(), json!(-0.5));
        assert_eq!(d(json!(u64::MAX)).unwrap().as_f64(), Some(u64::MAX as f64));
        assert!(d(json!(u64::MAX)).unwrap().is_f64());
        for v in [json!("1"), json!(true), json!([1]), json!({"a": 1})] {
            let t = err_text(d(v));
            assert!(t.starts_with("customAttributes.score: "), "{t}");
            assert!(t.contains("DECIMAL"), "{t}");
        }
    }

    #[test]
    fn type_boolean() {
        let p = "customAttributes.vip";
        assert_eq!(
            type_value(AttributeType::Boolean, None, &json!(true), p).unwrap(),
            json!(true)
        );
        assert_eq!(
            type_value(AttributeType::Boolean, None, &json!(false), p).unwrap(),
            json!(false)
        );
        for v in [json!("true"), json!(1), json!(0), json!([]), json!({})] {
            let t = err_text(type_value(AttributeType::Boolean, None, &v, p));
            assert!(t.starts_with("customAttributes.vip: "), "{t}");
        }
    }

    #[test]
    fn type_date() {
        let p = "customAttributes.since";
        let d = |v: Value| type_value(AttributeType::Date, None, &v, p);
        assert_eq!(d(json!("2024-02-29")).unwrap(), json!("2024-02-29"));
        for v in [
            json!("2024-02-30"),
            json!("2023-02-29"),
            json!("0000-01-01"),
            json!("10000-01-01"),
            json!("2024-01-01T00:00:00Z"),
            json!("gold"),
            json!(20240101),
            json!(true),
            json!({"y": 2024}),
        ] {
            let t = err_text(d(v.clone()));
            assert!(t.starts_with("customAttributes.since: "), "{v}: {t}");
            assert!(t.contains("DATE"), "{t}");
        }
    }

    #[test]
    fn type_date_time() {
        let p = "customAttributes.seen";
        let d = |v: Value| type_value(AttributeType::DateTime, None, &v, p);
        assert_eq!(d(json!("2020-02-26T09:41:57Z")).unwrap(), json!("2020-02-26T09:41:57Z"));
        assert_eq!(
            d(json!("2020-02-26T09:41:57.5Z")).unwrap(),
            json!("2020-02-26T09:41:57Z")
        );
        assert_eq!(
            d(json!("2020-02-26T09:41:57.123456+00:00")).unwrap(),
            json!("2020-02-26T09:41:57Z")
        );
        for v in [
            json!("2020-02-26T09:41:57+01:00"),
            json!("2020-02-26"),
            json!("2020-02-26T09:41:57"),
            json!(1582710117),
            json!(false),
        ] {
            let t = err_text(d(v.clone()));
            assert!(t.starts_with("customAttributes.seen: "), "{v}: {t}");
            assert!(t.contains("DATE_TIME"), "{t}");
        }
    }

    #[test]
    fn null_is_never_a_value() {
        for t in [
            AttributeType::String,
            AttributeType::Decimal,
            AttributeType::Boolean,
            AttributeType::Date,
            AttributeType::DateTime,
            AttributeType::ListOfObjects,
        ] {
            let schema = orders_schema();
            let text = err_text(type_value(t, Some(&schema), &Value::Null, "customAttributes.x"));
            assert!(text.starts_with("customAttributes.x: "));
        }
    }

    // ----- lists -----

    fn order(i: u32) -> Value {
        json!({
            "sku": format!("A{i}"),
            "price": 9.5,
            "at": "2024-01-02T10:00:00Z",
            "gift": false,
            "day": "2024-01-02"
        })
    }

    fn list(v: &Value) -> Result<Value, ApiError> {
        let schema = orders_schema();
        type_value(
            AttributeType::ListOfObjects,
            Some(&schema),
            v,
            "customAttributes.orders",
        )
    }

    #[test]
    fn list_valid_and_canonical() {
        let input = json!([
            {"day": "2024-01-02", "gift": true, "at": "2024-01-02T10:00:00.75+00:00", "price": 10.0, "sku": "A1"},
            order(2)
        ]);
        let out = list(&input).unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"[{"sku":"A1","price":10,"at":"2024-01-02T10:00:00Z","gift":true,"day":"2024-01-02"},{"sku":"A2","price":9.5,"at":"2024-01-02T10:00:00Z","gift":false,"day":"2024-01-02"}]"#
        );
        assert_eq!(list(&json!([])).unwrap(), json!([]));
    }

    #[test]
    fn list_spec_example() {
        let schema = vec![
            field("sku", AttributeType::String),
            field("price", AttributeType::Decimal),
            field("at", AttributeType::DateTime),
        ];
        let v = json!([{"sku":"A1","price":9.5,"at":"2024-01-02T10:00:00Z"}]);
        let out = type_value(
            AttributeType::ListOfObjects,
            Some(&schema),
            &v,
            "customAttributes.orders",
        )
        .unwrap();
        assert_eq!(out, v);
    }

    #[test]
    fn list_item_errors_name_the_field() {
        let base = || vec![order(0), order(1), order(2)];

        let mut items = base();
        items[2]["price"] = json!("9.5");
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[2].price: "), "{t}");

        let mut items = base();
        items[2].as_object_mut().unwrap().remove("price");
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[2].price: "), "{t}");
        assert!(t.contains("missing"), "{t}");

        let mut items = base();
        items[1]["color"] = json!("red");
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[1].color: "), "{t}");
        assert!(t.contains("unexpected"), "{t}");

        let mut items = base();
        items[0]["sku"] = Value::Null;
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[0].sku: "), "{t}");
        assert!(t.contains("null"), "{t}");

        let mut items = base();
        items[1]["at"] = json!("2024-01-02T10:00:00+02:00");
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[1].at: "), "{t}");

        let mut items = base();
        items[1]["day"] = json!("2024-02-30");
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[1].day: "), "{t}");

        let mut items = base();
        items[1]["gift"] = json!("yes");
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[1].gift: "), "{t}");

        let mut items = base();
        items[1]["sku"] = json!({"nested": "x"});
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[1].sku: "), "{t}");

        let mut items = base();
        items[1]["sku"] = json!(["x"]);
        let t = err_text(list(&Value::Array(items)));
        assert!(t.starts_with("customAttributes.orders[1].sku: "), "{t}");
    }

    #[test]
    fn list_shape_errors() {
        for (v, at) in [
            (json!({"sku": "A1"}), "customAttributes.orders: "),
            (json!("[]"), "customAttributes.orders: "),
            (json!(1), "customAttributes.orders: "),
            (json!(true), "customAttributes.orders: "),
            (json!([1]), "customAttributes.orders[0]: "),
            (json!([order(0), "x"]), "customAttributes.orders[1]: "),
            (json!([order(0), [order(1)]]), "customAttributes.orders[1]: "),
            (json!([order(0), null]), "customAttributes.orders[1]: "),
            (json!([{}]), "customAttributes.orders[0].sku: "),
        ] {
            let t = err_text(list(&v));
            assert!(t.starts_with(at), "{v}: {t}");
        }
        // No schema: a definition without an object schema cannot type a list.
        let t = err_text(type_value(
            AttributeType::ListOfObjects,
            None,
            &json!([]),
            "customAttributes.orders",
        ));
        assert!(t.starts_with("customAttributes.orders: "));
    }

    #[test]
    fn list_rejects_non_scalar_schema_field() {
        let schema = vec![field("inner", AttributeType::ListOfObjects)];
        let t = err_text(type_value(
            AttributeType::ListOfObjects,
            Some(&schema),
            &json!([{"inner": []}]),
            "customAttributes.l",
        ));
        assert!(t.starts_with("customAttributes.l[0].inner: "), "{t}");
    }

    #[test]
    fn list_compact_json_limit() {
        let schema = vec![field("s", AttributeType::String)];
        let ty = |v: &Value| type_value(AttributeType::ListOfObjects, Some(&schema), v, "customAttributes.l");
        // `[{"s":"…"}]` is 10 characters of overhead.
        let exact = json!([{"s": "x".repeat(4086)}]);
        assert_eq!(serde_json::to_string(&exact).unwrap().chars().count(), 4096);
        assert!(ty(&exact).is_ok());
        let over = json!([{"s": "x".repeat(4087)}]);
        let t = err_text(ty(&over));
        assert!(t.starts_with("customAttributes.l: "), "{t}");
        assert!(t.contains("4096"));
        // Counted in characters, not bytes.
        let wide = json!([{"s": "ž".repeat(4086)}]);
        assert!(ty(&wide).is_ok());
        // Measured on the canonical form: fractions dropped before measuring.
        let dt_schema = vec![field("t", AttributeType::DateTime)];
        let item = json!({"t": "2024-01-02T10:00:00.123456789+00:00"});
        let canonical_item_len = r#"{"t":"2024-01-02T10:00:00Z"}"#.len();
        let n = 4095 / (canonical_item_len + 1);
        let v = Value::Array(vec![item; n]);
        assert!(serde_json::to_string(&v).unwrap().len() > 4096);
        let out = type_value(AttributeType::ListOfObjects, Some(&dt_schema), &v, "p").unwrap();
        assert!(serde_json::to_string(&out).unwrap().len() <= 4096);
        // Escapes count as they are serialised.
        let quotes = json!([{"s": "\"".repeat(2043)}]);
        assert!(ty(&quotes).is_ok());
        let quotes = json!([{"s": "\"".repeat(2044)}]);
        assert!(ty(&quotes).is_err());
    }

    // ----- properties -----

    fn scalar_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::String),
            (1i32..=9999, 1u8..=12, 1u8..=31).prop_map(|(y, m, d)| json!(format!("{y:04}-{m:02}-{d:02}"))),
            (
                1i32..=9999,
                1u8..=12,
                1u8..=28,
                0u8..24,
                0u8..60,
                0u8..60,
                "(\\.[0-9]{1,9})?",
                prop_oneof![Just("Z"), Just("+00:00"), Just("+01:00")]
            )
                .prop_map(|(y, mo, d, h, mi, s, f, z)| json!(format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{f}{z}"
                ))),
        ]
    }

    fn any_type() -> impl Strategy<Value = AttributeType> {
        prop_oneof![
            Just(AttributeType::String),
            Just(AttributeType::Decimal),
            Just(AttributeType::Boolean),
            Just(AttributeType::Date),
            Just(AttributeType::DateTime),
        ]
    }

    proptest! {
        #[test]
        fn prop_canonical_decimal_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let v = canonical_decimal(f).unwrap();
            prop_assert_eq!(v.as_f64(), Some(f));
            // The emitted text reads back as the same f64 (std's parser is exact; serde_json's
            // default parser may be one ULP off without its `float_roundtrip` feature).
            let text = serde_json::to_string(&v).unwrap();
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back, f);
            prop_assert_eq!(canonical_decimal(back), Some(v.clone()));
            if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER {
                prop_assert!(v.is_i64());
                prop_assert!(!text.contains('.') && !text.contains('e'));
            }
        }

        #[test]
        fn prop_integers_within_2_53_are_integers(i in -(1i64 << 53)..=(1i64 << 53)) {
            prop_assert_eq!(canonical_decimal(i as f64), Some(Value::from(i)));
        }

        #[test]
        fn prop_type_value_idempotent(t in any_type(), v in scalar_value()) {
            if let Ok(out) = type_value(t, None, &v, "p") {
                prop_assert_eq!(type_value(t, None, &out, "p"), Ok(out.clone()));
            }
        }

        #[test]
        fn prop_auto_type_accepts_its_value(v in scalar_value()) {
            let t = auto_type(&v).unwrap();
            // Short generated strings are always within the STRING limit.
            let out = type_value(t, None, &v, "p").unwrap();
            prop_assert_eq!(auto_type(&out), Some(t));
        }

        #[test]
        fn prop_list_idempotent(
            rows in proptest::collection::vec((scalar_value(), scalar_value()), 0..8),
            ta in any_type(),
            tb in any_type(),
        ) {
            let schema = vec![field("a", ta), field("b", tb)];
            let v = Value::Array(rows.into_iter().map(|(a, b)| json!({"b": b, "a": a})).collect());
            if let Ok(out) = type_value(AttributeType::ListOfObjects, Some(&schema), &v, "p") {
                prop_assert_eq!(
                    type_value(AttributeType::ListOfObjects, Some(&schema), &out, "p"),
                    Ok(out.clone())
                );
            }
        }

        #[test]
        fn prop_date_round_trip(jd in Date::MIN.to_julian_day()..=Date::MAX.to_julian_day()) {
            let d = Date::from_julian_day(jd).unwrap();
            let s = format_date(d);
            if (1..=9999).contains(&d.year()) {
                prop_assert_eq!(parse_date(&s), Some(d));
            } else {
                prop_assert_eq!(parse_date(&s), None);
            }
        }

        #[test]
        fn prop_date_time_round_trip(
            secs in -62_135_596_800i64..=253_402_300_799i64,
            nanos in 0u32..1_000_000_000,
        ) {
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos));
            let s = format_date_time(t);
            let parsed = parse_date_time(&s).unwrap();
            prop_assert_eq!(parsed, t.replace_nanosecond(0).unwrap());
            prop_assert_eq!(format_date_time(parsed), s);
        }

        #[test]
        fn prop_parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_date(&s);
            let _ = parse_date_time(&s);
            let _ = auto_type(&Value::String(s));
        }
    }
}
