//! Property tests of request-body parsing (mobile-api.md §1.5, §4; people.md §6): any bytes
//! are answered without a panic, the nesting limit is exact, PATCH fields keep their tri-state
//! (absent / null / value) through a round trip, a wrong JSON type or a U+0000 is reported at
//! the JSON path of the offending field, and unknown members are ignored.

use proptest::prelude::*;
use roster_model::{
    ErrorCode,
    patch::{
        InstallationPatch, MAX_JSON_DEPTH, Patch, PersonalizeBody, UserPatch, json_depth_exceeds, parse_body_object,
    },
};
use serde_json::{Map, Value, json};

/// The nesting depth of a JSON value (a scalar is 0, `{}` and `[]` are 1).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Any JSON value, with strings full of brackets and quotes (which must not count as nesting).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[\\[\\]{}\"\\\\a-z]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z\\[{\"]{1,4}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A value nested exactly `d` levels deep (d ≥ 1), mixing arrays and objects.
fn nested(d: usize, arrays: &[bool]) -> Value {
    let mut v = json!("leaf [{");
    for i in 0..d {
        v = if arrays[i % arrays.len()] {
            Value::Array(vec![v])
        } else {
            json!({ "k": v })
        };
    }
    v
}

fn format_error_at(r: Result<impl std::fmt::Debug, roster_model::ApiError>, path: &str) -> Result<(), TestCaseError> {
    let e = r.expect_err("expected a refusal");
    prop_assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
    let prefix = format!("{path}: ");
    prop_assert!(
        e.text.starts_with(&prefix),
        "{:?} does not start with {:?}",
        e.text,
        prefix
    );
    Ok(())
}

// ----- any bytes, truncation, depth --------------------------------------------------------------

proptest! {
    /// Any bytes: no panic; success only for an object (or an empty / whitespace body, which is
    /// `{}`); a refusal is REQUEST_FORMAT_INVALID about the body.
    #[test]
    fn any_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        match parse_body_object(&bytes) {
            Ok(map) => {
                let is_blank = bytes.iter().all(u8::is_ascii_whitespace);
                let is_object = matches!(serde_json::from_slice::<Value>(&bytes), Ok(Value::Object(_)));
                prop_assert!(is_blank || is_object);
                prop_assert!(!is_blank || map.is_empty());
            }
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::RequestFormatInvalid);
                prop_assert!(e.text.starts_with("body: "), "{}", e.text);
            }
        }
    }

    /// Any JSON value: accepted exactly when it is an object within the nesting limit; the
    /// depth scan agrees with the real depth, whatever brackets the strings hold.
    #[test]
    fn any_json_is_judged_by_kind_and_depth(v in any_json()) {
        let text = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(json_depth_exceeds(&text, MAX_JSON_DEPTH), depth(&v) > MAX_JSON_DEPTH);
        for max in 0..6 {
            prop_assert_eq!(json_depth_exceeds(&text, max), depth(&v) > max);
        }
        let r = parse_body_object(&text);
        prop_assert_eq!(r.is_ok(), v.is_object() && depth(&v) <= MAX_JSON_DEPTH);
    }

    /// Every proper prefix of an object's JSON text is malformed (a truncated upload).
    #[test]
    fn truncated_objects_are_refused(v in any_json(), cut in any::<proptest::sample::Index>()) {
        let obj = json!({ "firstName": "Ana", "x": v });
        let text = serde_json::to_vec(&obj).unwrap();
        let n = cut.index(text.len() - 1) + 1; // 1..len-1: never empty, never whole
        format_error_at(parse_body_object(&text[..n]), "body")?;
    }

    /// The limit is exact: a body nested `MAX_JSON_DEPTH` levels (the body object is one) is
    /// parsed, one level more is refused before parsing, however the levels mix arrays and
    /// objects; much deeper input (far beyond serde_json's own limit) is refused the same way.
    #[test]
    fn nesting_limit_is_exact(arrays in proptest::collection::vec(any::<bool>(), 1..4), extra in 0usize..100_000) {
        let ok = json!({ "x": nested(MAX_JSON_DEPTH - 1, &arrays) });
        prop_assert_eq!(depth(&ok), MAX_JSON_DEPTH);
        prop_assert!(parse_body_object(ok.to_string().as_bytes()).is_ok());
        // Built as text: a deep serde_json::Value would itself overflow the stack on drop.
        let levels = MAX_JSON_DEPTH + 1 + extra;
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        let e = parse_body_object(deep.as_bytes()).unwrap_err();
        prop_assert!(e.text.starts_with("body: ") && e.text.contains("deeper"), "{}", e.text);
        // Unterminated deep input too.
        prop_assert!(parse_body_object("[".repeat(levels).as_bytes()).is_err());
    }
}

// ----- user PATCH: tri-state round trip, wrong types, U+0000 -------------------------------------

/// The string fields of the user JSON, with their `""`-means-null rule (all of them).
const USER_STRINGS: [&str; 6] = [
    "externalUserId",
    "firstName",
    "middleName",
    "lastName",
    "gender",
    "birthday",
];

/// One field state: absent, `null`, or a value.
#[derive(Debug, Clone)]
enum State<T> {
    Absent,
    Null,
    Value(T),
}

fn state<T: std::fmt::Debug + Clone + 'static>(v: impl Strategy<Value = T> + 'static) -> BoxedStrategy<State<T>> {
    prop_oneof![Just(State::Absent), Just(State::Null), v.prop_map(State::Value)].boxed()
}

fn put<T: Clone>(obj: &mut Map<String, Value>, name: &str, s: &State<T>, to_json: impl Fn(&T) -> Value) {
    match s {
        State::Absent => {}
        State::Null => {
            obj.insert(name.into(), Value::Null);
        }
        State::Value(v) => {
            obj.insert(name.into(), to_json(v));
        }
    }
}

/// What parsing must give for a string field: `""` (and, for externalUserId, `"null"` in any
/// case) means `null`.
fn expected_string(name: &str, s: &State<String>) -> Patch<String> {
    match s {
        State::Absent => Patch::Absent,
        State::Null => Patch::Null,
        State::Value(v) if v.is_empty() => Patch::Null,
        State::Value(v) if name == "externalUserId" && v.eq_ignore_ascii_case("null") => Patch::Null,
        State::Value(v) => Patch::Value(v.clone()),
    }
}

fn expected_list<T: Clone>(s: &State<T>) -> Patch<T> {
    match s {
        State::Absent => Patch::Absent,
        State::Null => Patch::Null,
        State::Value(v) => Patch::Value(v.clone()),
    }
}

/// Strings without U+0000, `""` and `"null"`/`"NULL"` now and then.
fn field_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("null".to_string()),
        Just("NuLL".to_string()),
        "[^\0]{0,12}"
    ]
}

fn any_attributes() -> impl Strategy<Value = Vec<(String, Option<Value>)>> {
    proptest::collection::btree_map(
        "[a-zA-Z$ ]{1,8}",
        proptest::option::of(prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[^\0]{0,8}".prop_map(Value::String),
            Just(json!([{"sku": "A1", "price": 9.5}])),
            Just(json!({"nested": "objects are typed later"})),
        ]),
        0..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

#[derive(Debug, Clone)]
struct UserBody {
    strings: Vec<State<String>>,
    phones: State<Vec<String>>,
    emails: State<Vec<String>>,
    tags: State<Vec<String>>,
    attributes: State<Vec<(String, Option<Value>)>>,
    unknown: Option<Value>,
}

fn user_body() -> impl Strategy<Value = UserBody> {
    (
        proptest::collection::vec(state(field_string()), 6),
        state(proptest::collection::vec("[^\0]{0,10}", 0..4)),
        state(proptest::collection::vec("[^\0]{0,10}", 0..4)),
        state(proptest::collection::vec("[^\0]{0,10}", 0..4)),
        state(any_attributes()),
        proptest::option::of(any_json()),
    )
        .prop_map(|(strings, phones, emails, tags, attributes, unknown)| UserBody {
            strings,
            phones,
            emails,
            tags,
            attributes,
            unknown,
        })
}

impl UserBody {
    fn to_json(&self) -> Map<String, Value> {
        let mut o = Map::new();
        for (name, s) in USER_STRINGS.iter().zip(&self.strings) {
            put(&mut o, name, s, |v| json!(v));
        }
        put(&mut o, "phones", &self.phones, |v| {
            json!(
                v.iter()
                    .map(|n| json!({"number": n, "preferred": true}))
                    .collect::<Vec<_>>()
            )
        });
        put(&mut o, "emails", &self.emails, |v| {
            json!(v.iter().map(|a| json!({"address": a})).collect::<Vec<_>>())
        });
        put(&mut o, "tags", &self.tags, |v| json!(v));
        put(&mut o, "customAttributes", &self.attributes, |v| {
            Value::Object(
                v.iter()
                    .map(|(k, v)| (k.clone(), v.clone().unwrap_or(Value::Null)))
                    .collect(),
            )
        });
        if let Some(u) = &self.unknown {
            // Unknown members are ignored whatever they hold, U+0000 included.
            o.insert("type".into(), u.clone());
            o.insert("somethingNew".into(), json!({"deep": [u, "\0"]}));
        }
        o
    }
}

fn check_user_patch(p: &UserPatch, b: &UserBody) -> Result<(), TestCaseError> {
    let got = [
        &p.external_user_id,
        &p.first_name,
        &p.middle_name,
        &p.last_name,
        &p.gender,
        &p.birthday,
    ];
    for ((name, s), g) in USER_STRINGS.iter().zip(&b.strings).zip(got) {
        prop_assert_eq!(g, &expected_string(name, s), "{}", name);
    }
    prop_assert_eq!(&p.phones, &expected_list(&b.phones));
    prop_assert_eq!(&p.emails, &expected_list(&b.emails));
    prop_assert_eq!(&p.tags, &expected_list(&b.tags));
    prop_assert_eq!(&p.custom_attributes, &expected_list(&b.attributes));
    Ok(())
}

/// Every JSON path of a string in a user body, with a function that puts U+0000 there.
fn user_string_paths(o: &Map<String, Value>) -> Vec<String> {
    let mut paths = Vec::new();
    for name in USER_STRINGS {
        if o.get(name).is_some_and(Value::is_string) {
            paths.push(name.to_string());
        }
    }
    for (list, member) in [("phones", "number"), ("emails", "address")] {
        if let Some(Value::Array(items)) = o.get(list) {
            for i in 0..items.len() {
                paths.push(format!("{list}[{i}].{member}"));
            }
        }
    }
    if let Some(Value::Array(tags)) = o.get("tags") {
        for i in 0..tags.len() {
            paths.push(format!("tags[{i}]"));
        }
    }
    if let Some(Value::Object(attrs)) = o.get("customAttributes") {
        for (k, v) in attrs {
            match v {
                Value::String(_) => paths.push(format!("customAttributes.{k}")),
                Value::Array(_) => paths.push(format!("customAttributes.{k}[0].sku")),
                Value::Object(_) => paths.push(format!("customAttributes.{k}.nested")),
                _ => {}
            }
        }
    }
    paths
}

/// Puts U+0000 into the string at `path` (as produced by [`user_string_paths`]).
fn poison(o: &mut Map<String, Value>, path: &str) {
    let pointer: String = path
        .split('.')
        .flat_map(|seg| seg.split('['))
        .map(|p| format!("/{}", p.trim_end_matches(']')))
        .collect();
    let mut v = Value::Object(std::mem::take(o));
    let target = v.pointer_mut(&pointer).unwrap_or_else(|| panic!("no {pointer}"));
    let s = target.as_str().unwrap().to_string();
    *target = json!(format!("{s}\0x"));
    *o = match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
}

proptest! {
    /// A user body of any mix of absent / null / value fields parses back to exactly that mix,
    /// as a PATCH and as the `userAttributes` of personalize (where identity members are
    /// ignored); unknown members never matter.
    #[test]
    fn user_fields_keep_their_tri_state(b in user_body()) {
        let o = b.to_json();
        let bytes = serde_json::to_vec(&Value::Object(o.clone())).unwrap();
        let parsed = parse_body_object(&bytes).unwrap();
        check_user_patch(&UserPatch::parse(&parsed, "").unwrap(), &b)?;

        let body = json!({"userIdentity": {"externalUserId": "u"}, "userAttributes": Value::Object(o.clone())});
        let p = PersonalizeBody::parse(body.as_object().unwrap()).unwrap();
        prop_assert_eq!(&p.attributes.external_user_id, &Patch::Absent);
        prop_assert_eq!(&p.attributes.phones, &Patch::Absent);
        prop_assert_eq!(&p.attributes.emails, &Patch::Absent);
        prop_assert_eq!(&p.attributes.first_name, &expected_string("firstName", &b.strings[1]));
        prop_assert_eq!(&p.attributes.tags, &expected_list(&b.tags));
        let others = o.keys().any(|k| !matches!(k.as_str(), "externalUserId" | "phones" | "emails"));
        prop_assert_eq!(p.attributes_non_empty, others);
    }

    /// A value of the wrong JSON type at any field path is refused naming that path, at the
    /// top level and inside `userAttributes` (where identity members are ignored instead).
    #[test]
    fn wrong_types_name_the_path(
        b in user_body(),
        which in 0usize..11,
        wrong in prop_oneof![Just(json!(1)), Just(json!(true)), Just(json!([])), Just(json!({})), Just(json!("s"))],
    ) {
        let mut o = b.to_json();
        // (path of the error, whether the value is in fact of the right type)
        let (path, ok): (String, bool) = match which {
            0..=5 => {
                o.insert(USER_STRINGS[which].into(), wrong.clone());
                (USER_STRINGS[which].to_string(), wrong.is_string())
            }
            6 => {
                o.insert("phones".into(), wrong.clone());
                ("phones".into(), wrong.is_array())
            }
            7 => {
                o.insert("phones".into(), json!([{"number": "1234567"}, wrong.clone()]));
                // An object without `number` is refused at the member.
                let at = if wrong.is_object() { "phones[1].number" } else { "phones[1]" };
                (at.into(), false)
            }
            8 => {
                o.insert("emails".into(), json!([{"address": wrong.clone()}]));
                ("emails[0].address".into(), wrong.is_string())
            }
            9 => {
                o.insert("tags".into(), json!(["a", "b", wrong.clone()]));
                ("tags[2]".into(), wrong.is_string())
            }
            _ => {
                o.insert("customAttributes".into(), wrong.clone());
                ("customAttributes".into(), wrong.is_object())
            }
        };
        let r = UserPatch::parse(&o, "");
        if ok {
            prop_assert!(r.is_ok(), "{:?}", r);
        } else {
            format_error_at(r, &path)?;
        }
        let body = json!({"userAttributes": Value::Object(o)});
        let r = PersonalizeBody::parse(body.as_object().unwrap());
        let identity_member = matches!(which, 0 | 6 | 7 | 8);
        if ok || identity_member {
            prop_assert!(r.is_ok(), "{:?}", r);
        } else {
            format_error_at(r, &format!("userAttributes.{path}"))?;
        }
    }

    /// U+0000 in any string that would be stored — standard fields, phones, emails, tags,
    /// custom attribute values and list items — is refused naming exactly its path; in a
    /// custom attribute name as well.
    #[test]
    fn nul_is_refused_at_its_path(b in user_body(), pick in any::<proptest::sample::Index>()) {
        let mut o = b.to_json();
        let paths = user_string_paths(&o);
        if !paths.is_empty() {
            let path = &paths[pick.index(paths.len())];
            poison(&mut o, path);
            format_error_at(UserPatch::parse(&o, ""), path)?;
        }
        let mut o = b.to_json();
        o.insert("customAttributes".into(), json!({"ok": 1, "bad\0name": 2}));
        format_error_at(UserPatch::parse(&o, ""), "customAttributes.bad\\u0000name")?;
    }
}

// ----- installation PATCH and personalize --------------------------------------------------------

const INSTALLATION_STRINGS: [&str; 10] = [
    "pushServiceToken",
    "applicationUserId",
    "sdkVersion",
    "appVersion",
    "os",
    "osVersion",
    "deviceManufacturer",
    "deviceModel",
    "deviceName",
    "language",
];
const INSTALLATION_BOOLS: [&str; 7] = [
    "regEnabled",
    "isPrimary",
    "notificationsEnabled",
    "deviceSecure",
    "inappchat",
    "inbox",
    "webrtcui",
];

proptest! {
    /// Installation bodies: each field keeps its tri-state (system strings and
    /// `applicationUserId` map `""` to null; the token keeps `""` for validation to refuse),
    /// `pushServiceType: null` is ignored, and "only isPrimary" is detected exactly.
    #[test]
    fn installation_fields_keep_their_tri_state(
        strings in proptest::collection::vec(state(field_string()), INSTALLATION_STRINGS.len()),
        bools in proptest::collection::vec(state(any::<bool>()), INSTALLATION_BOOLS.len()),
        push_type in state("[A-Za-z]{0,8}"),
        unknown in proptest::option::of(any_json()),
    ) {
        let mut o = Map::new();
        for (n, s) in INSTALLATION_STRINGS.iter().zip(&strings) {
            put(&mut o, n, s, |v| json!(v));
        }
        for (n, s) in INSTALLATION_BOOLS.iter().zip(&bools) {
            put(&mut o, n, s, |v| json!(v));
        }
        put(&mut o, "pushServiceType", &push_type, |v| json!(v));
        if let Some(u) = unknown {
            o.insert("pushRegId".into(), u.clone());
            o.insert("whatever".into(), u);
        }
        let p = InstallationPatch::parse(&o).unwrap();
        let got_strings = [
            &p.push_service_token, &p.application_user_id, &p.sdk_version, &p.app_version, &p.os,
            &p.os_version, &p.device_manufacturer, &p.device_model, &p.device_name, &p.language,
        ];
        for ((n, s), g) in INSTALLATION_STRINGS.iter().zip(&strings).zip(got_strings) {
            let expected = match (n, s) {
                (&"pushServiceToken", State::Value(v)) => Patch::Value(v.clone()),
                _ => expected_string(n, s),
            };
            prop_assert_eq!(g, &expected, "{}", n);
        }
        let got_bools = [
            &p.reg_enabled, &p.is_primary, &p.notifications_enabled, &p.device_secure, &p.inappchat, &p.inbox,
            &p.webrtcui,
        ];
        for (s, g) in bools.iter().zip(got_bools) {
            prop_assert_eq!(g, &expected_list(s));
        }
        let expected_type = match &push_type { State::Value(v) => Some(v.clone()), _ => None };
        prop_assert_eq!(&p.push_service_type, &expected_type);
        let others = o.keys().any(|k| INSTALLATION_STRINGS.contains(&k.as_str())
            || (INSTALLATION_BOOLS.contains(&k.as_str()) && k != "isPrimary")
            || k == "pushServiceType");
        prop_assert_eq!(p.has_fields_other_than_is_primary, others);
    }

    /// Wrong types and U+0000 in installation fields are refused naming the field.
    #[test]
    fn installation_errors_name_the_field(
        field in proptest::sample::select(
            INSTALLATION_STRINGS.iter().chain(&INSTALLATION_BOOLS).copied().collect::<Vec<_>>()
        ),
        wrong in prop_oneof![Just(json!(1)), Just(json!([])), Just(json!({}))],
    ) {
        let o = json!({ (field): wrong });
        format_error_at(InstallationPatch::parse(o.as_object().unwrap()), field)?;
        if INSTALLATION_STRINGS.contains(&field) {
            let o = json!({ (field): "ok\0" });
            format_error_at(InstallationPatch::parse(o.as_object().unwrap()), field)?;
        } else {
            let o = json!({ (field): "true" });
            format_error_at(InstallationPatch::parse(o.as_object().unwrap()), field)?;
        }
        let o = json!({"customAttributes": {"a": [{"sku": "x\0"}]}});
        format_error_at(InstallationPatch::parse(o.as_object().unwrap()), "customAttributes.a[0].sku")?;
    }

    /// Personalize: identity members inside `userAttributes` are ignored whatever their type;
    /// `userIdentity` members are typed and U+0000-checked with their full path.
    #[test]
    fn personalize_identity_paths(
        junk in any_json(),
        ext in field_string(),
        phones in proptest::collection::vec("[0-9+ ]{0,12}", 0..3),
    ) {
        let body = json!({
            "userIdentity": {
                "externalUserId": ext,
                "phones": phones.iter().map(|n| json!({"number": n})).collect::<Vec<_>>()
            },
            "userAttributes": {"externalUserId": junk, "phones": junk, "emails": junk},
        });
        let p = PersonalizeBody::parse(body.as_object().unwrap()).unwrap();
        prop_assert!(!p.attributes_non_empty);
        let identity = p.identity.unwrap();
        let expected_ext = match expected_string("externalUserId", &State::Value(ext.clone())) {
            Patch::Value(v) => Some(v),
            _ => None,
        };
        prop_assert_eq!(identity.external_user_id, expected_ext);
        prop_assert_eq!(identity.phones, phones.clone());

        let mut bad = body.clone();
        bad["userIdentity"]["emails"] = json!([{"address": "a@b"}, {"address": "c\0@d"}]);
        format_error_at(PersonalizeBody::parse(bad.as_object().unwrap()), "userIdentity.emails[1].address")?;
        let mut bad = body.clone();
        bad["userIdentity"]["externalUserId"] = json!(format!("{ext}\0"));
        format_error_at(PersonalizeBody::parse(bad.as_object().unwrap()), "userIdentity.externalUserId")?;
        let mut bad = body;
        bad["userIdentity"] = json!([ext]);
        format_error_at(PersonalizeBody::parse(bad.as_object().unwrap()), "userIdentity")?;
    }
}

#[test]
fn duplicate_keys_last_one_wins() {
    let o = parse_body_object(br#"{"firstName":"a","tags":["x"],"firstName":"b","tags":null}"#).unwrap();
    let p = UserPatch::parse(&o, "").unwrap();
    assert_eq!(p.first_name, Patch::Value("b".into()));
    assert_eq!(p.tags, Patch::Null);
}
