//! Field validation of people.md §3 (persons) and mobile-api.md §4.1 (installations): phone
//! normalisation, email syntax and comparison keys, length and character limits, and the
//! installation id shape. Every function is pure; errors carry the spec's code and, for
//! `REQUEST_FORMAT_INVALID`, the JSON path of the field at fault.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{ApiError, ErrorCode};

/// people.md §3.1: at most 100 phone numbers per person.
pub const MAX_PHONES: usize = 100;
/// people.md §3.1: at most 100 email addresses per person.
pub const MAX_EMAILS: usize = 100;
/// people.md §3.1: at most 100 tags per person.
pub const MAX_TAGS: usize = 100;
/// people.md §3.7: at most 250 custom attributes per person or installation.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 250;
/// mobile-api.md §4.1: system-data strings are truncated to 255 characters.
pub const MAX_SYSTEM_STRING: usize = 255;
/// people.md §3.3: an email address is at most 255 characters.
pub const MAX_EMAIL_CHARS: usize = 255;
/// people.md §3.1: `firstName` and `lastName` are at most 255 characters.
pub const MAX_FIRST_LAST_NAME: usize = 255;
/// people.md §3.1: `middleName` is at most 50 characters.
pub const MAX_MIDDLE_NAME: usize = 50;
/// people.md §8.1: a STRING value (and a list's compact JSON) is at most 4096 characters.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 4096;

/// people.md §3.1: `externalUserId` is 1–256 characters.
const MAX_EXTERNAL_USER_ID: usize = 256;
/// people.md §3.1: each tag is 1–255 characters.
const MAX_TAG: usize = 255;
/// people.md §3.7: an attribute name is 1–100 characters.
const MAX_ATTRIBUTE_NAME: usize = 100;
/// mobile-api.md §4.1 row 3: a push token is 1–4096 characters.
const MAX_PUSH_TOKEN: usize = 4096;
/// mobile-api.md §4.1 row 7: `applicationUserId` is 1–256 characters.
const MAX_APPLICATION_USER_ID: usize = 256;
/// people.md §3.3: the local part of an email address is 1–64 characters.
const MAX_EMAIL_LOCAL: usize = 64;
/// people.md §3.3: a domain label is 1–63 characters.
const MAX_EMAIL_LABEL: usize = 63;

// ---------------------------------------------------------------------------------------------
// Phones (people.md §3.2)
// ---------------------------------------------------------------------------------------------

/// people.md §3.2: normalises a phone number to 7–15 E.164 digits without `+`, or `PHONE_INVALID`.
pub fn normalize_phone(input: &str) -> Result<String, ApiError> {
    // Rule 1: strip leading and trailing whitespace.
    let trimmed = input.trim();
    // Rule 2: remove every space, `-`, `.`, `(`, `)`.
    let stripped: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    // Rule 3: remove one leading `+`.
    let digits = stripped.strip_prefix('+').unwrap_or(&stripped);
    // Rule 4: `^[1-9][0-9]{6,14}$`.
    let bytes = digits.as_bytes();
    let valid = (7..=15).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit) && bytes[0] != b'0';
    if valid {
        Ok(digits.to_string())
    } else {
        Err(ApiError::new(
            ErrorCode::PhoneInvalid,
            format!("Invalid phone number: {input}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Emails (people.md §3.3)
//
// Hand-written on purpose: the available email crates (email_address 0.2 and the like) are more
// permissive than the spec (they accept shapes §3.3 rejects, and differ in length and literal
// rules), so this implements exactly the grammar of people.md §3.3 instead.
// ---------------------------------------------------------------------------------------------

/// people.md §3.3: trims and validates an address, returning it as given, or `EMAIL_INVALID`.
pub fn validate_email(input: &str) -> Result<String, ApiError> {
    let trimmed = input.trim();
    if is_valid_email(trimmed) {
        Ok(trimmed.to_string())
    } else {
        Err(ApiError::new(
            ErrorCode::EmailInvalid,
            format!("Invalid email address: {input}"),
        ))
    }
}

/// people.md §3.3: whether `addr` (not trimmed) is a valid RFC 5322 / RFC 6532 `addr-spec`.
pub fn is_valid_email(addr: &str) -> bool {
    // Total length ≤ 255 characters (Unicode scalar values).
    if addr.chars().count() > MAX_EMAIL_CHARS {
        return false;
    }
    let Some((local, domain)) = split_email(addr) else {
        return false;
    };
    let local_len = local.chars().count();
    if local_len == 0 || local_len > MAX_EMAIL_LOCAL {
        return false;
    }
    // A quoted local part was already checked by `split_email`; otherwise it must be a dot-atom.
    if !local.starts_with('"') && !is_dot_atom(local) {
        return false;
    }
    is_valid_domain(domain)
}

/// people.md §3.3: the identity comparison key, the whole address in Unicode lowercase.
pub fn email_key(addr: &str) -> String {
    addr.to_lowercase()
}

/// Splits an address at its one `@` outside a quoted local part. A quoted local part is checked
/// here (it must end right before the `@`); the domain is returned unchecked.
fn split_email(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('"') {
        // Quoted string: printable ASCII other than `"` and `\`, or `\` + printable ASCII.
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) if is_printable_ascii(e) => {}
                    _ => return None,
                },
                '"' => {
                    // `rest` starts one byte after `addr`; the closing quote ends the local part.
                    let local_end = 1 + i + 1;
                    let after = &addr[local_end..];
                    let domain = after.strip_prefix('@')?;
                    return Some((&addr[..local_end], domain));
                }
                c if is_printable_ascii(c) => {}
                _ => return None,
            }
        }
        None // unterminated quoted string
    } else {
        // No `"` can appear in a dot-atom, so the first `@` is the separator; a second `@` lands
        // in the domain, where it is not a valid character.
        addr.split_once('@')
    }
}

/// Printable ASCII, space included (RFC 5321 `qtextSMTP` / `quoted-pairSMTP` range 32–126).
fn is_printable_ascii(c: char) -> bool {
    matches!(c, ' '..='~')
}

/// people.md §3.3: atoms separated by single dots, no leading or trailing dot.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// RFC 5322 `atext` plus RFC 6532 non-ASCII: letters, digits, non-ASCII and ``!#$%&'*+-/=?^_`{|}~``.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// people.md §3.3: dot-separated labels (a single label allowed) or an IPv4 / IPv6 literal.
fn is_valid_domain(domain: &str) -> bool {
    if let Some(inner) = domain.strip_prefix('[') {
        let Some(literal) = inner.strip_suffix(']') else {
            return false;
        };
        // RFC 5321 `IPv6-address-literal`; ABNF string literals are case-insensitive.
        if literal.len() >= 5 && literal.as_bytes()[..5].eq_ignore_ascii_case(b"IPv6:") {
            return literal[5..].parse::<Ipv6Addr>().is_ok();
        }
        return literal.parse::<Ipv4Addr>().is_ok();
    }
    !domain.is_empty() && domain.split('.').all(is_valid_label)
}

/// people.md §3.3: 1–63 letters, digits, non-ASCII and `-`, not starting or ending with `-`.
fn is_valid_label(label: &str) -> bool {
    let len = label.chars().count();
    (1..=MAX_EMAIL_LABEL).contains(&len)
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
}

// ---------------------------------------------------------------------------------------------
// Strings and limits (people.md §3.1, §3.4, §3.7; mobile-api.md §4.1)
// ---------------------------------------------------------------------------------------------

/// people.md §3.4 / §3.7: `externalUserId` is 1–256 characters without control characters.
pub fn check_external_user_id(s: &str, path: &str) -> Result<(), ApiError> {
    check_len_range(s, 1, MAX_EXTERNAL_USER_ID, path)?;
    check_no_control(s, path)
}

/// people.md §3.7: rejects a string longer than `max` characters (Unicode scalar values).
pub fn check_max_chars(s: &str, max: usize, path: &str) -> Result<(), ApiError> {
    if s.chars().count() > max {
        return Err(ApiError::format(path, format!("must be at most {max} characters long")));
    }
    Ok(())
}

/// mobile-api.md §4.1: the first `max` characters of `s` (system data is truncated, not rejected).
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((byte, _)) => s[..byte].to_string(),
        None => s.to_string(),
    }
}

/// people.md §3.1: `birthday` is exactly `yyyy-MM-dd`, a valid Gregorian date, year 0001–9999.
pub fn check_birthday(s: &str, path: &str) -> Result<(), ApiError> {
    match crate::values::parse_date(s) {
        Some(_) => Ok(()),
        None => Err(ApiError::format(
            path,
            "must be a valid date in the form yyyy-MM-dd (year 0001 to 9999)",
        )),
    }
}

/// people.md §3.1: a tag is 1–255 characters.
pub fn check_tag(s: &str, path: &str) -> Result<(), ApiError> {
    check_len_range(s, 1, MAX_TAG, path)
}

/// people.md §3.7: an attribute name is 1–100 characters, no control characters, no leading `$`.
pub fn check_attribute_name(name: &str, path: &str) -> Result<(), ApiError> {
    check_len_range(name, 1, MAX_ATTRIBUTE_NAME, path)?;
    check_no_control(name, path)?;
    if name.starts_with('$') {
        return Err(ApiError::format(path, "an attribute name must not start with '$'"));
    }
    Ok(())
}

/// mobile-api.md §4.1 row 3: a push token is 1–4096 characters, no whitespace or control characters.
pub fn check_push_token(token: &str, path: &str) -> Result<(), ApiError> {
    check_len_range(token, 1, MAX_PUSH_TOKEN, path)?;
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::format(
            path,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// mobile-api.md §4.1 row 7: `applicationUserId` is 1–256 characters.
pub fn check_application_user_id(s: &str, path: &str) -> Result<(), ApiError> {
    check_len_range(s, 1, MAX_APPLICATION_USER_ID, path)
}

/// A length in characters within `min..=max`.
fn check_len_range(s: &str, min: usize, max: usize, path: &str) -> Result<(), ApiError> {
    let len = s.chars().count();
    if len < min || len > max {
        return Err(ApiError::format(
            path,
            format!("must be {min} to {max} characters long"),
        ));
    }
    Ok(())
}

/// No control characters (Unicode general category Cc).
fn check_no_control(s: &str, path: &str) -> Result<(), ApiError> {
    if s.chars().any(char::is_control) {
        return Err(ApiError::format(path, "must not contain control characters"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// U+0000 (every stored string)
//
// PostgreSQL `text` cannot hold U+0000, so a string with it could be stored on SQLite and not
// on PostgreSQL. No field of the spec has a use for it: every string taken from a request body
// is refused with it, the same way on every backend (docs/decisions.md). Other control
// characters are refused only where the spec says so (`externalUserId`, attribute names, push
// tokens).
// ---------------------------------------------------------------------------------------------

/// Rejects a string containing U+0000 with `REQUEST_FORMAT_INVALID` naming `path`.
pub fn check_no_nul(s: &str, path: &str) -> Result<(), ApiError> {
    if s.contains('\0') {
        return Err(ApiError::format(path, "must not contain the character U+0000"));
    }
    Ok(())
}

/// Rejects U+0000 anywhere in a JSON value: in its strings and in the member names of its
/// objects, at any depth. The error names the JSON path below `path` that holds it
/// (`customAttributes.orders[1].sku`).
pub fn check_value_no_nul(value: &serde_json::Value, path: &str) -> Result<(), ApiError> {
    use serde_json::Value;
    // Paths are only built on the way to a U+0000 that is known to be there.
    if !value_has_nul(value) {
        return Ok(());
    }
    match value {
        Value::Array(items) => {
            let (i, item) = items
                .iter()
                .enumerate()
                .find(|(_, item)| value_has_nul(item))
                .expect("value_has_nul found one");
            check_value_no_nul(item, &format!("{path}[{i}]"))
        }
        Value::Object(members) => {
            let (name, member) = members
                .iter()
                .find(|(k, v)| k.contains('\0') || value_has_nul(v))
                .expect("value_has_nul found one");
            let member_path = format!("{path}.{}", display_name(name));
            if name.contains('\0') {
                return Err(ApiError::format(
                    &member_path,
                    "a member name must not contain the character U+0000",
                ));
            }
            check_value_no_nul(member, &member_path)
        }
        _ => Err(ApiError::format(path, "must not contain the character U+0000")),
    }
}

/// Whether a JSON value holds U+0000 in any string or member name.
pub fn value_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(value_has_nul),
        Value::Object(members) => members.iter().any(|(k, v)| k.contains('\0') || value_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A member name as it appears in a JSON path of an error text: control characters are shown
/// as JSON-style `\u0000` escapes so that the text stays printable.
pub fn display_name(name: &str) -> String {
    if !name.chars().any(char::is_control) {
        return name.to_string();
    }
    name.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Installation ids (mobile-api.md §4.1 row 1)
// ---------------------------------------------------------------------------------------------

/// mobile-api.md §4.1 row 1: whether `s` is a hyphenated UUID (any version, any letter case).
pub fn is_valid_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// mobile-api.md §4.1 row 1: the canonical lowercase form of a hyphenated UUID, or `None`.
pub fn canonical_push_reg_id(s: &str) -> Option<String> {
    is_valid_uuid(s).then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn phone_ok(s: &str) -> String {
        normalize_phone(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
    }

    fn phone_err(s: &str) {
        let e = normalize_phone(s).expect_err(s);
        assert_eq!(e.code, ErrorCode::PhoneInvalid);
        assert!(e.text.contains(s), "{:?} does not contain {s:?}", e.text);
    }

    fn is_e164_digits(s: &str) -> bool {
        let b = s.as_bytes();
        (7..=15).contains(&b.len()) && b[0].is_ascii_digit() && b[0] != b'0' && b.iter().all(u8::is_ascii_digit)
    }

    // ----- phones -----

    #[test]
    fn phone_spec_examples() {
        assert_eq!(phone_ok("+385 91 123 4567"), "385911234567");
        assert_eq!(phone_ok("+385 (91) 123-4567"), "385911234567");
        assert_eq!(phone_ok("385911234567"), "385911234567");
        assert_eq!(phone_ok("  +1.555.123.4567\t\n"), "15551234567");
        assert_eq!(phone_ok("+ 385 91 123 4567"), "385911234567");
    }

    #[test]
    fn phone_length_bounds() {
        assert_eq!(phone_ok("1234567"), "1234567"); // 7 digits
        assert_eq!(phone_ok("123456789012345"), "123456789012345"); // 15 digits
        phone_err("123456"); // 6 digits
        phone_err("1234567890123456"); // 16 digits
        phone_err("+123456");
    }

    #[test]
    fn phone_rejections() {
        phone_err("00385911234567"); // 00 prefix is not rewritten
        phone_err("0911234567");
        phone_err("++385911234567"); // only one `+` removed
        phone_err("385+911234567");
        phone_err("385/91/1234567");
        phone_err("385911234567x");
        phone_err("");
        phone_err("   ");
        phone_err("+");
        phone_err("３８５９１１２３４５６７"); // full-width digits are not ASCII digits
        phone_err("385\t91\t1234567"); // inner tabs are not removed, only spaces
        phone_err("[385]911234567");
    }

    #[test]
    fn phone_error_text_contains_input_as_received() {
        let e = normalize_phone("  +00 12 ").unwrap_err();
        assert!(e.text.contains("  +00 12 "));
    }

    // ----- emails -----

    fn email_ok(s: &str) {
        assert!(is_valid_email(s), "{s:?} should be valid");
    }

    fn email_bad(s: &str) {
        assert!(!is_valid_email(s), "{s:?} should be invalid");
    }

    #[test]
    fn email_plain() {
        email_ok("ana.horvat@example.com");
        email_ok("Ana.Horvat@Example.COM");
        email_ok("a@b");
        email_ok("user+tag@example.co.uk");
        email_ok("!#$%&'*+-/=?^_`{|}~@example.com");
        email_ok("1@2.3");
        email_ok("a-b@a-b.c-d");
        email_ok("x@xn--bcher-kva.de");
    }

    #[test]
    fn email_single_label_domain() {
        email_ok("root@localhost");
        email_ok("admin@mailserver1");
    }

    #[test]
    fn email_dot_atom_rules() {
        email_bad("a..b@x");
        email_bad(".a@x");
        email_bad("a.@x");
        email_bad(".@x");
        email_ok("a.b.c@x");
        email_bad("a b@x");
        email_bad("a(comment)@x");
        email_bad("a,b@x");
        email_bad("a[b]@x");
        email_bad("a:b@x");
        email_bad("a;b@x");
        email_bad("a<b>@x");
        email_bad("a\\b@x");
        email_bad("a\"b@x");
    }

    #[test]
    fn email_quoted_local_part() {
        email_ok("\"john doe\"@example.com");
        email_ok("\"a@b\"@example.com");
        email_ok("\"a\\\"b\"@example.com"); // escaped quote
        email_ok("\"a\\\\b\"@example.com"); // escaped backslash
        email_ok("\"\\a\"@example.com"); // backslash + any printable ASCII
        email_ok("\"a..b\"@x");
        email_ok("\".a\"@x");
        email_ok("\"(),:;<>[]\"@x");
        email_ok("\"\"@x"); // empty quoted string: the local part `""` is 2 characters
        email_bad("\"a\"b\"@x"); // bare quote inside
        email_bad("\"a\\\"@x"); // escaped closing quote leaves the string open
        email_bad("\"unterminated@x");
        email_bad("\"a\".b@x"); // obsolete mixed local part
        email_bad("b.\"a\"@x");
        email_bad("\"a\"@"); // empty domain
        email_bad("\"a\"x@y");
        email_bad("\"a\tb\"@x"); // tab is not printable
        email_bad("\"a\\\tb\"@x"); // nor escapable
        email_bad("\"a\nb\"@x");
        email_bad("\"ä\"@x"); // quoted strings are printable ASCII only (§3.3)
        email_bad("\"a\"@b@c");
    }

    #[test]
    fn email_at_sign_count() {
        email_bad("a@b@c");
        email_bad("a@@b");
        email_bad("ab");
        email_bad("@x");
        email_bad("a@");
        email_bad("@");
        email_bad("");
    }

    #[test]
    fn email_local_length() {
        let l64 = "a".repeat(64);
        let l65 = "a".repeat(65);
        email_ok(&format!("{l64}@x"));
        email_bad(&format!("{l65}@x"));
        // Quoted: the quotes count towards the 64 characters.
        email_ok(&format!("\"{}\"@x", "a".repeat(62)));
        email_bad(&format!("\"{}\"@x", "a".repeat(63)));
        // Characters, not bytes.
        email_ok(&format!("{}@x", "ä".repeat(64)));
        email_bad(&format!("{}@x", "ä".repeat(65)));
    }

    #[test]
    fn email_label_rules() {
        email_ok(&format!("a@{}.com", "b".repeat(63)));
        email_bad(&format!("a@{}.com", "b".repeat(64)));
        email_ok(&format!("a@{}", "ü".repeat(63)));
        email_bad(&format!("a@{}", "ü".repeat(64)));
        email_bad("a@-x.com");
        email_bad("a@x-.com");
        email_bad("a@x.-com");
        email_ok("a@x-y.com");
        email_bad("a@x..com");
        email_bad("a@.x.com");
        email_bad("a@x.com.");
        email_bad("a@x_y.com");
        email_bad("a@x y.com");
        email_bad("a@x!.com");
    }

    #[test]
    fn email_total_length() {
        // 64 + 1 + 190 = 255 characters.
        let domain = format!("{}.{}.{}", "d".repeat(63), "d".repeat(63), "d".repeat(62));
        let ok = format!("{}@{domain}", "l".repeat(64));
        assert_eq!(ok.chars().count(), 255);
        email_ok(&ok);
        let bad = format!("{}@{domain}d", "l".repeat(64));
        assert_eq!(bad.chars().count(), 256);
        email_bad(&bad);
    }

    #[test]
    fn email_domain_literals() {
        email_ok("a@[127.0.0.1]");
        email_ok("a@[IPv6:::1]");
        email_ok("a@[IPv6:2001:db8::8a2e:370:7334]");
        email_ok("a@[IPv6:::ffff:192.0.2.1]");
        email_ok("a@[ipv6:::1]"); // ABNF literals are case-insensitive
        email_bad("a@[::1]");
        email_bad("a@[256.0.0.1]");
        email_bad("a@[1.2.3]");
        email_bad("a@[1.2.3.4.5]");
        email_bad("a@[example.com]");
        email_bad("a@[IPv6:1.2.3.4]");
        email_bad("a@[IPv6:::1%eth0]");
        email_bad("a@[IPv6:]");
        email_bad("a@[]");
        email_bad("a@[127.0.0.1");
        email_bad("a@127.0.0.1]");
        email_bad("a@[ 127.0.0.1]");
        email_bad("a@x.[127.0.0.1]");
        email_ok("a@127.0.0.1"); // all-digit labels are ordinary labels
    }

    #[test]
    fn email_unicode() {
        email_ok("josé@bücher.de");
        email_ok("用户@例子.广告");
        email_ok("квіточка@пошта.укр");
        email_ok("Ünïcödé.Ñame@Ëxample.Çom");
        email_bad("josé@bü cher.de");
    }

    #[test]
    fn validate_email_trims_and_keeps_case() {
        assert_eq!(
            validate_email("  Ana.Horvat@Example.com \n").unwrap(),
            "Ana.Horvat@Example.com"
        );
        let e = validate_email(" not an email ").unwrap_err();
        assert_eq!(e.code, ErrorCode::EmailInvalid);
        assert!(e.text.contains("not an email"));
        let e = validate_email("a..b@x").unwrap_err();
        assert!(e.text.contains("a..b@x"));
        assert!(validate_email("").is_err());
        assert!(!is_valid_email(" a@x")); // is_valid_email does not trim
    }

    #[test]
    fn email_keys() {
        assert_eq!(email_key("Ana.Horvat@Example.com"), email_key("ana.horvat@example.com"));
        assert_eq!(email_key("ÄÖÜ@BÜCHER.DE"), "äöü@bücher.de");
        assert_eq!(email_key("\"John Doe\"@X"), "\"john doe\"@x");
        // Unicode mapping, not ASCII-only.
        assert_eq!(email_key("ΣΑΣ@Χ"), "σας@χ");
    }

    // ----- strings and limits -----

    fn assert_format(r: Result<(), ApiError>, path: &str) {
        let e = r.expect_err("expected an error");
        assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
        assert!(e.text.starts_with(&format!("{path}: ")), "{:?}", e.text);
    }

    #[test]
    fn external_user_id() {
        let p = "externalUserId";
        assert!(check_external_user_id("cust-1001", p).is_ok());
        assert!(check_external_user_id(" spaced ", p).is_ok());
        assert!(check_external_user_id(&"x".repeat(256), p).is_ok());
        assert!(check_external_user_id(&"ž".repeat(256), p).is_ok());
        assert_format(check_external_user_id(&"x".repeat(257), p), p);
        assert_format(check_external_user_id("", p), p);
        assert_format(check_external_user_id("a\nb", p), p);
        assert_format(check_external_user_id("a\u{0}b", p), p);
        assert_format(check_external_user_id("a\u{7f}", p), p);
        assert_format(check_external_user_id("a\u{85}", p), p);
        assert_format(
            check_external_user_id("", "userIdentity.externalUserId"),
            "userIdentity.externalUserId",
        );
    }

    #[test]
    #[should_panic(expected = "expected an error")]
    fn assert_format_panics_on_ok() {
        assert_format(Ok(()), "p");
    }

    #[test]
    fn max_chars() {
        assert!(check_max_chars("", 0, "p").is_ok());
        assert!(check_max_chars(&"é".repeat(50), MAX_MIDDLE_NAME, "middleName").is_ok());
        assert_format(
            check_max_chars(&"é".repeat(51), MAX_MIDDLE_NAME, "middleName"),
            "middleName",
        );
        assert!(check_max_chars(&"a".repeat(255), MAX_FIRST_LAST_NAME, "firstName").is_ok());
        assert_format(
            check_max_chars(&"a".repeat(256), MAX_FIRST_LAST_NAME, "firstName"),
            "firstName",
        );
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate_chars("abc", 5), "abc");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abc", 2), "ab");
        assert_eq!(truncate_chars("abc", 0), "");
        assert_eq!(truncate_chars("žžž", 2), "žž");
        assert_eq!(truncate_chars("🙂🙂🙂", 1), "🙂");
        let long = "é".repeat(300);
        let t = truncate_chars(&long, MAX_SYSTEM_STRING);
        assert_eq!(t.chars().count(), 255);
        assert!(long.starts_with(&t));
    }

    #[test]
    fn birthday() {
        let p = "birthday";
        assert!(check_birthday("1990-05-17", p).is_ok());
        assert!(check_birthday("2024-02-29", p).is_ok());
        assert!(check_birthday("2000-02-29", p).is_ok());
        assert!(check_birthday("0001-01-01", p).is_ok());
        assert!(check_birthday("9999-12-31", p).is_ok());
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-02-30",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "2024-01-00",
            "0000-01-01",
            "10000-01-01",
            "1990-5-17",
            "90-05-17",
            "1990/05/17",
            "1990-05-17T00:00:00Z",
            " 1990-05-17",
            "",
            "+990-05-17",
        ] {
            assert_format(check_birthday(bad, p), p);
        }
    }

    #[test]
    fn tags() {
        assert!(check_tag("vip", "tags[0]").is_ok());
        assert!(check_tag(&"t".repeat(255), "tags[0]").is_ok());
        assert_format(check_tag("", "tags[1]"), "tags[1]");
        assert_format(check_tag(&"t".repeat(256), "tags[2]"), "tags[2]");
    }

    #[test]
    fn attribute_names() {
        let p = "customAttributes";
        assert!(check_attribute_name("tier", p).is_ok());
        assert!(check_attribute_name("a$", p).is_ok());
        assert!(check_attribute_name("with space", p).is_ok());
        assert!(check_attribute_name(&"n".repeat(100), p).is_ok());
        assert_format(check_attribute_name(&"n".repeat(101), p), p);
        assert_format(check_attribute_name("", p), p);
        assert_format(check_attribute_name("$system", p), p);
        assert_format(check_attribute_name("$", p), p);
        assert_format(check_attribute_name("a\tb", p), p);
    }

    #[test]
    fn push_tokens() {
        let p = "pushServiceToken";
        assert!(check_push_token("abc:DEF_123-xyz", p).is_ok());
        assert!(check_push_token(&"f".repeat(4096), p).is_ok());
        assert_format(check_push_token(&"f".repeat(4097), p), p);
        assert_format(check_push_token("", p), p);
        assert_format(check_push_token("ab cd", p), p);
        assert_format(check_push_token(" abcd", p), p);
        assert_format(check_push_token("ab\u{a0}cd", p), p);
        assert_format(check_push_token("ab\u{1}cd", p), p);
        assert_format(check_push_token("abcd\n", p), p);
    }

    #[test]
    fn application_user_ids() {
        let p = "applicationUserId";
        assert!(check_application_user_id("u", p).is_ok());
        assert!(check_application_user_id(&"u".repeat(256), p).is_ok());
        assert_format(check_application_user_id(&"u".repeat(257), p), p);
        assert_format(check_application_user_id("", p), p);
    }

    #[test]
    fn constants_match_spec() {
        assert_eq!(MAX_PHONES, 100);
        assert_eq!(MAX_EMAILS, 100);
        assert_eq!(MAX_TAGS, 100);
        assert_eq!(MAX_CUSTOM_ATTRIBUTES, 250);
        assert_eq!(MAX_SYSTEM_STRING, 255);
        assert_eq!(MAX_EMAIL_CHARS, 255);
        assert_eq!(MAX_FIRST_LAST_NAME, 255);
        assert_eq!(MAX_MIDDLE_NAME, 50);
        assert_eq!(MAX_ATTRIBUTE_VALUE_CHARS, 4096);
    }

    // ----- uuids -----

    #[test]
    fn uuids() {
        let v4 = "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f";
        assert!(is_valid_uuid(v4));
        assert_eq!(canonical_push_reg_id(v4).as_deref(), Some(v4));
        assert_eq!(
            canonical_push_reg_id("7C0E9F5A-3B1D-4E2A-9C8F-1A2B3C4D5E6F").as_deref(),
            Some(v4)
        );
        // Any version and variant, including nil and max.
        assert!(is_valid_uuid("00000000-0000-0000-0000-000000000000"));
        assert!(is_valid_uuid("ffffffff-ffff-ffff-ffff-ffffffffffff"));
        assert!(is_valid_uuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8")); // v1
        assert!(is_valid_uuid("01890a5d-ac96-774b-bcce-b302099a8057")); // v7
        for bad in [
            "",
            "7c0e9f5a3b1d4e2a9c8f1a2b3c4d5e6f",
            "{7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f}",
            "urn:uuid:7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f",
            "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6",
            "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f0",
            "7c0e9f5a-3b1d-4e2a-9c8f_1a2b3c4d5e6f",
            "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6g",
            "7c0e9f5a3-b1d-4e2a-9c8f-1a2b3c4d5e6f",
            " 7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6",
            "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5é",
        ] {
            assert!(!is_valid_uuid(bad), "{bad:?}");
            assert_eq!(canonical_push_reg_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn uuid_matches_uuid_crate() {
        for _ in 0..100 {
            let u = uuid::Uuid::new_v4();
            let upper = u.hyphenated().to_string().to_uppercase();
            assert_eq!(canonical_push_reg_id(&upper), Some(u.hyphenated().to_string()));
        }
    }

    // ----- properties -----

    proptest! {
        #[test]
        fn prop_phone_output_matches_regex(s in "\\PC{0,24}") {
            if let Ok(n) = normalize_phone(&s) {
                prop_assert!(is_e164_digits(&n), "{:?} -> {:?}", s, n);
            }
        }

        #[test]
        fn prop_phone_decorated_numbers(
            digits in "[1-9][0-9]{6,14}",
            plus in proptest::bool::ANY,
            seps in proptest::collection::vec(prop_oneof![
                Just(""), Just(" "), Just("-"), Just("."), Just("("), Just(")")
            ], 15),
            pad in "[ \t\n]{0,3}",
        ) {
            let mut s = String::new();
            s.push_str(&pad);
            if plus { s.push('+'); }
            for (c, sep) in digits.chars().zip(seps.iter()) {
                s.push(c);
                s.push_str(sep);
            }
            s.push_str(&pad);
            prop_assert_eq!(normalize_phone(&s).unwrap(), digits);
        }

        #[test]
        fn prop_phone_idempotent(s in "[+ ()0-9.-]{0,24}") {
            if let Ok(n) = normalize_phone(&s) {
                prop_assert_eq!(normalize_phone(&n).unwrap(), n);
            } else {
                let e = normalize_phone(&s).unwrap_err();
                prop_assert_eq!(e.code, ErrorCode::PhoneInvalid);
                prop_assert!(e.text.contains(&s));
            }
        }

        #[test]
        fn prop_simple_emails_valid(
            local in "[a-zA-Z0-9_+-]{1,20}(\\.[a-zA-Z0-9_+-]{1,10}){0,2}",
            labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1..4),
        ) {
            let addr = format!("{local}@{}", labels.join("."));
            prop_assert!(is_valid_email(&addr), "{}", addr);
            prop_assert_eq!(validate_email(&format!(" {addr} ")).unwrap(), addr.clone());
            prop_assert_eq!(email_key(&addr), addr.to_lowercase());
        }

        #[test]
        fn prop_email_never_panics(s in "\\PC{0,80}") {
            let v = is_valid_email(&s);
            if v {
                prop_assert!(s.chars().count() <= MAX_EMAIL_CHARS);
                prop_assert!(s.contains('@'));
            }
        }

        #[test]
        fn prop_truncate_is_prefix(s in "\\PC{0,40}", n in 0usize..50) {
            let t = truncate_chars(&s, n);
            prop_assert!(s.starts_with(&t));
            prop_assert_eq!(t.chars().count(), n.min(s.chars().count()));
        }

        #[test]
        fn prop_uuid_canonical(s in "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}") {
            let c = canonical_push_reg_id(&s).unwrap();
            prop_assert_eq!(&c, &s.to_lowercase());
            prop_assert_eq!(canonical_push_reg_id(&c), Some(c.clone()));
            prop_assert!(uuid::Uuid::try_parse(&s).is_ok());
        }
    }
}
