//! Property tests of the identity validators (people.md §3.2–§3.4, §3.7): `externalUserId`,
//! phone normalisation, email syntax and comparison keys, and the U+0000 rule for every stored
//! string. Each property runs proptest's default number of cases.

use proptest::prelude::*;
use roster_model::{
    ErrorCode,
    validate::{
        MAX_EMAIL_CHARS, check_external_user_id, check_no_nul, email_key, is_valid_email, normalize_phone,
        validate_email,
    },
};

/// Any string, control characters and U+0000 included (proptest's `any::<String>()` is
/// weighted towards printable text; this mixes in the characters validators trip over).
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        proptest::collection::vec(
            prop_oneof![
                Just('\0'),
                Just('\n'),
                Just('\t'),
                Just('\u{7f}'),
                Just('\u{85}'),
                Just('\u{a0}'),
                Just('\u{200b}'),
                Just('@'),
                Just('"'),
                Just('\\'),
                Just('.'),
                Just('+'),
                Just(' '),
                Just('-'),
                any::<char>(),
                proptest::char::range('0', '9'),
                proptest::char::range('a', 'z'),
            ],
            0..80,
        )
        .prop_map(|cs| cs.into_iter().collect()),
    ]
}

// ----- externalUserId ----------------------------------------------------------------------------

proptest! {
    /// people.md §3.7: accepted exactly when 1–256 characters without control characters; the
    /// error is REQUEST_FORMAT_INVALID naming the path.
    #[test]
    fn external_user_id_is_accepted_exactly_by_its_rule(s in hostile_string()) {
        let path = "userIdentity.externalUserId";
        let expected = (1..=256).contains(&s.chars().count()) && !s.chars().any(char::is_control);
        match check_external_user_id(&s, path) {
            Ok(()) => prop_assert!(expected, "{:?} accepted", s),
            Err(e) => {
                prop_assert!(!expected, "{:?} refused: {}", s, e);
                prop_assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
                prop_assert!(e.text.starts_with("userIdentity.externalUserId: "), "{}", e.text);
            }
        }
    }

    /// Stored exactly as given (people.md §3.4): validation never depends on surrounding
    /// whitespace being trimmed, and lengths are counted in characters, not bytes.
    #[test]
    fn external_user_id_counts_characters(
        c in any::<char>().prop_filter("not control", |c| !c.is_control()),
        n in 1usize..=300,
    ) {
        let s: String = std::iter::repeat_n(c, n).collect();
        prop_assert_eq!(check_external_user_id(&s, "externalUserId").is_ok(), n <= 256);
    }
}

// ----- phones ------------------------------------------------------------------------------------

/// A phone number that people.md §3.2 accepts, decorated as people type them, with the
/// normalised form it must give.
fn decorated_phone() -> impl Strategy<Value = (String, String)> {
    (
        "[1-9][0-9]{6,14}",
        any::<bool>(),
        proptest::collection::vec(
            prop_oneof![
                Just(""),
                Just(" "),
                Just("-"),
                Just("."),
                Just("("),
                Just(")"),
                Just(" - ")
            ],
            15,
        ),
        "[ \t\r\n]{0,3}",
        "[ \t\r\n]{0,3}",
    )
        .prop_map(|(digits, plus, seps, lead, trail)| {
            let mut s = lead;
            if plus {
                s.push('+');
            }
            for (c, sep) in digits.chars().zip(seps) {
                s.push(c);
                s.push_str(sep);
            }
            s.push_str(&trail);
            (s, digits)
        })
}

proptest! {
    /// Never panics; whatever is accepted is 7–15 ASCII digits without a leading 0, and
    /// normalising it again gives itself (idempotent); a refusal is PHONE_INVALID quoting the
    /// input as received.
    #[test]
    fn phone_normalisation_is_total_and_idempotent(s in hostile_string()) {
        match normalize_phone(&s) {
            Ok(n) => {
                let b = n.as_bytes();
                prop_assert!((7..=15).contains(&b.len()), "{:?} -> {:?}", s, n);
                prop_assert!(b.iter().all(u8::is_ascii_digit) && b[0] != b'0', "{:?} -> {:?}", s, n);
                prop_assert_eq!(normalize_phone(&n), Ok(n.clone()));
                // The digits of the output are the digits of the input, in order.
                let digits: String = s.chars().filter(char::is_ascii_digit).collect();
                prop_assert_eq!(digits, n);
            }
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::PhoneInvalid);
                prop_assert!(e.text.contains(&s), "{:?} not in {:?}", s, e.text);
            }
        }
    }

    /// Spaces, `-`, `.`, `(`, `)`, one leading `+` and surrounding whitespace never change the
    /// number.
    #[test]
    fn decorations_do_not_change_the_number((input, digits) in decorated_phone()) {
        prop_assert_eq!(normalize_phone(&input), Ok(digits));
    }

    /// What is not decoration makes a number invalid: a second `+`, a letter, a `00` prefix, a
    /// U+0000, or a digit count outside 7–15.
    #[test]
    fn anything_but_decoration_is_refused(
        (input, digits) in decorated_phone(),
        junk in prop_oneof![Just("+"), Just("x"), Just("/"), Just("\0"), Just("٣"), Just("\u{a0}")],
        at in any::<proptest::sample::Index>(),
    ) {
        // The decorated number is ASCII, so every index is a character boundary.
        let trimmed = input.trim();
        let pos = at.index(trimmed.len() + 1);
        // Cases where the insertion is harmless: a first `+`, or a no-break space at either end
        // (trimmed as whitespace by rule 1).
        let harmless = (junk == "+" && pos == 0 && !trimmed.starts_with('+'))
            || (junk == "\u{a0}" && (pos == 0 || pos == trimmed.len()));
        if !harmless {
            let bad = format!("{}{}{}", &trimmed[..pos], junk, &trimmed[pos..]);
            prop_assert_eq!(normalize_phone(&bad).map_err(|e| e.code), Err(ErrorCode::PhoneInvalid), "{:?}", bad);
        }
        let prefixed = format!("00{digits}");
        let sixteen = format!("{digits}{}", "1".repeat(16 - digits.len()));
        for v in [prefixed.as_str(), &digits[..6], sixteen.as_str()] {
            prop_assert!(normalize_phone(v).is_err(), "{:?} accepted", v);
        }
    }
}

// ----- emails ------------------------------------------------------------------------------------

/// A dot-atom local part (people.md §3.3), ASCII and non-ASCII.
fn dot_atom() -> impl Strategy<Value = String> {
    let atom = prop_oneof!["[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,12}", "[a-zé用ü]{1,6}",];
    proptest::collection::vec(atom, 1..4).prop_map(|atoms| atoms.join("."))
}

/// A quoted local part: printable ASCII other than `"` and `\`, or a backslash pair.
fn quoted_local() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[ !#-\\[\\]-~]".prop_map(|s: String| s),
            "[ -~]".prop_map(|c: String| format!("\\{c}")),
        ],
        0..12,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()))
}

/// A domain: dot-separated labels (a single label allowed) or an IP literal.
fn domain() -> impl Strategy<Value = String> {
    let label = prop_oneof!["[a-zA-Z0-9]{1,10}", "[a-z0-9][a-z0-9-]{0,8}[a-z0-9]", "[a-zäöü]{1,5}",];
    prop_oneof![
        4 => proptest::collection::vec(label, 1..4).prop_map(|l| l.join(".")),
        1 => any::<std::net::Ipv4Addr>().prop_map(|ip| format!("[{ip}]")),
        1 => any::<std::net::Ipv6Addr>().prop_map(|ip| format!("[IPv6:{ip}]")),
    ]
}

/// A valid address of the §3.3 grammar.
fn valid_email() -> impl Strategy<Value = String> {
    (prop_oneof![3 => dot_atom(), 1 => quoted_local()], domain())
        .prop_map(|(l, d)| format!("{l}@{d}"))
        .prop_filter("length limits", |a| {
            let local = a.rsplit_once('@').unwrap().0;
            local.chars().count() <= 64 && a.chars().count() <= MAX_EMAIL_CHARS
        })
}

proptest! {
    /// Every address the grammar of §3.3 produces is accepted, trimmed and kept as given.
    #[test]
    fn grammar_addresses_are_valid(addr in valid_email(), pad in "[ \t\n]{0,2}") {
        prop_assert!(is_valid_email(&addr), "{:?}", addr);
        let padded = format!("{pad}{addr}{pad}");
        prop_assert_eq!(validate_email(&padded), Ok(addr.clone()));
        // Idempotent: the stored form validates to itself.
        prop_assert_eq!(validate_email(&addr), Ok(addr.clone()));
    }

    /// The comparison key ignores letter case anywhere in the address, and is itself a fixed
    /// point.
    #[test]
    fn case_variants_share_one_key(addr in valid_email()) {
        let upper = addr.to_uppercase();
        let key = email_key(&addr);
        prop_assert_eq!(email_key(&upper), key.clone());
        prop_assert_eq!(email_key(&key), key.clone());
        prop_assert_eq!(email_key(&addr.to_ascii_lowercase()), key);
    }

    /// Never panics on any input; whatever is accepted has one `@` separating a 1–64 character
    /// local part from a non-empty domain, is at most 255 characters, and holds no ASCII control
    /// character; a refusal is EMAIL_INVALID quoting the input.
    #[test]
    fn email_validation_is_total(s in hostile_string()) {
        match validate_email(&s) {
            Ok(addr) => {
                prop_assert_eq!(addr.as_str(), s.trim());
                prop_assert!(addr.chars().count() <= MAX_EMAIL_CHARS);
                prop_assert!(!addr.chars().any(|c| c.is_ascii_control()), "{:?}", addr);
                let (local, domain) = addr.rsplit_once('@').expect("an @");
                prop_assert!(!domain.is_empty() && (1..=64).contains(&local.chars().count()));
            }
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::EmailInvalid);
                prop_assert!(e.text.contains(&s));
            }
        }
    }

    /// Breaking the grammar anywhere breaks the address: a character outside it inserted in a
    /// dot-atom, a second `@` in the domain, a doubled dot, a leading or trailing dot.
    #[test]
    fn grammar_violations_are_invalid(
        local in dot_atom(),
        dom in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        bad in prop_oneof![Just('\0'), Just(' '), Just(','), Just('('), Just('"'), Just('\\'), Just('['), Just('\n')],
        at in any::<proptest::sample::Index>(),
    ) {
        let chars: Vec<char> = local.chars().collect();
        let i = at.index(chars.len() + 1);
        let broken: String = chars[..i].iter().chain(std::iter::once(&bad)).chain(&chars[i..]).collect();
        let variants = [
            format!("{broken}@{dom}"),
            format!("{local}@{dom}@{dom}"),
            format!("{local}..x@{dom}"),
            format!(".{local}@{dom}"),
            format!("{local}.@{dom}"),
            format!("{local}@{dom}."),
            format!("{local}@-{dom}"),
        ];
        for v in variants {
            prop_assert!(!is_valid_email(&v), "{:?} accepted", v);
        }
    }
}

// ----- U+0000 ------------------------------------------------------------------------------------

proptest! {
    /// U+0000 anywhere in a string is refused with the path; a string without it passes.
    #[test]
    fn nul_is_refused_anywhere(
        prefix in "\\PC{0,10}",
        suffix in "\\PC{0,10}",
        path in "[a-zA-Z]{1,8}(\\.[a-zA-Z]{1,8})?",
    ) {
        let with = format!("{prefix}\0{suffix}");
        let e = check_no_nul(&with, &path).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
        let prefix_of_text = format!("{path}: ");
        prop_assert!(e.text.starts_with(&prefix_of_text), "{}", e.text);
        let without = format!("{prefix}{suffix}");
        prop_assert_eq!(check_no_nul(&without, &path), Ok(()));
        // The other identity validators refuse it too, each with its own code.
        prop_assert!(check_external_user_id(&with, "externalUserId").is_err());
        prop_assert!(normalize_phone(&with).is_err());
        prop_assert!(validate_email(&with).is_err());
    }
}
