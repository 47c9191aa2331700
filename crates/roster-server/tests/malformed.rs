//! Hostile input over HTTP (issue item 8): a flood of a few thousand generated malformed
//! requests across every mobile route against a populated store — invalid, truncated and
//! non-UTF-8 JSON, wrong types at every field path, overlong strings, U+0000, too-deep nesting,
//! too many tags / attributes / phones / emails, bad identities, dates and enum values, wrong
//! methods, bad or missing Authorization, oversize bodies, odd paths, unknown and foreign
//! installations — each answered with its expected status and the §3 error envelope (never a
//! 5xx), and the store unchanged afterwards (people.md invariant 16). Plus focused tests of
//! U+0000, the nesting limit and very large bodies within the size limit.
mod common;

use std::time::Instant;

use common::{NO_FLAGS, Resp, TestServer, ipath, make_jwt, now_secs, people_helpers::assert_same_store, user_path};
use futures::StreamExt;
use roster_model::{AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, SchemaField};
use serde_json::{Map, Value, json};

/// The generator's seed: change it to explore other floods; a failure prints the case.
const SEED: u64 = 0x0005_eed0_f100_d5ed;

/// How many requests are in flight at once.
const CONCURRENCY: usize = 4;

/// SplitMix64: a reproducible stream of numbers for the generator. Written out here because
/// the test needs nothing more than a seeded sequence (no distributions, no crypto), and a
/// fixed algorithm keeps the flood identical across dependency upgrades.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

// ----- the populated store -----------------------------------------------------------------------

/// A server with people, installations, definitions and a JWT key.
struct Fixture {
    ts: TestServer,
    /// "ana": personalized, with a phone, an email, tags, and every kind of custom attribute.
    a: String,
    /// "ben": personalized, with an email.
    b: String,
    /// An anonymous installation.
    n: String,
    secret: Vec<u8>,
}

async fn define_orders(ts: &TestServer, scope: AttributeScope) {
    let def = AttributeDefinition {
        account_id: ts.app.account_id,
        scope,
        name: "orders".into(),
        attr_type: AttributeType::ListOfObjects,
        object_schema: Some(vec![
            SchemaField {
                name: "sku".into(),
                field_type: AttributeType::String,
            },
            SchemaField {
                name: "price".into(),
                field_type: AttributeType::Decimal,
            },
        ]),
        origin: DefinitionOrigin::Api,
        created_at: 0,
    };
    let mut tx = ts.store.begin().await.unwrap();
    tx.define_attribute(&def).await.unwrap();
    tx.commit().await.unwrap();
}

async fn fixture() -> Fixture {
    let ts = TestServer::start().await;
    define_orders(&ts, AttributeScope::Person).await;
    define_orders(&ts, AttributeScope::Installation).await;
    let secret = ts.core().create_jwt_key(&ts.app, Some("k1")).await.unwrap().key.secret;
    let a = ts.register(installation_base("tok-ana")).await;
    ts.personalize_ok(
        &a,
        json!({
            "userIdentity": {"externalUserId": "ana", "phones": [{"number": "385911234567"}],
                             "emails": [{"address": "ana@example.com"}]},
            "userAttributes": user_base()
        }),
        NO_FLAGS,
    )
    .await;
    let b = ts.register_android().await;
    ts.personalize_ok(
        &b,
        json!({"userIdentity": {"externalUserId": "ben", "emails": [{"address": "ben@example.com"}]}}),
        NO_FLAGS,
    )
    .await;
    let n = ts.register_android().await;
    for _ in 0..8 {
        ts.register_android().await;
    }
    Fixture { ts, a, b, n, secret }
}

/// A valid installation body (create, PATCH own).
fn installation_base(token: &str) -> Value {
    json!({
        "pushServiceType": "Firebase", "pushServiceToken": token, "regEnabled": true, "isPrimary": false,
        "notificationsEnabled": true, "applicationUserId": "app-user-1",
        "customAttributes": {"i_tier": "gold", "i_since": "2024-01-01", "orders": [{"sku": "A", "price": 1}]},
        "sdkVersion": "15.0.0", "appVersion": "3.2.1", "os": "Android", "osVersion": "14",
        "deviceManufacturer": "Google", "deviceModel": "Pixel 8", "deviceName": "Pixel", "deviceSecure": true,
        "language": "en", "deviceTimezoneOffset": "GMT+01:00", "inappchat": false, "inbox": false, "webrtcui": false
    })
}

/// A valid user body (PATCH user; `userAttributes` of personalize). Identity fields are the
/// ones ana already owns.
fn user_base() -> Value {
    json!({
        "firstName": "Ana", "middleName": "M", "lastName": "Horvat", "gender": "Female", "birthday": "1990-05-17",
        "phones": [{"number": "+385 91 123 4567"}], "emails": [{"address": "ana@example.com"}], "tags": ["vip", "beta"],
        "customAttributes": {"tier": "gold", "score": 1, "vip": true, "since": "2024-01-01",
                             "seen": "2024-01-01T00:00:00Z", "orders": [{"sku": "A", "price": 1}]}
    })
}

/// A valid personalize body for ana's installation (decision-table row 4).
fn personalize_base() -> Value {
    let mut attrs = user_base();
    let o = attrs.as_object_mut().unwrap();
    o.remove("phones");
    o.remove("emails");
    json!({
        "userIdentity": {"externalUserId": "ana", "phones": [{"number": "385911234567"}],
                         "emails": [{"address": "ana@example.com"}]},
        "userAttributes": attrs
    })
}

// ----- cases -------------------------------------------------------------------------------------

/// One request and the answer it must get.
#[derive(Debug, Clone)]
struct Case {
    what: String,
    method: String,
    path: String,
    /// `None`: the application's own `App` credential.
    authorization: Option<Option<String>>,
    caller: Option<String>,
    extra_headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
    /// The error text must contain this (the JSON path of the field at fault).
    needle: Option<String>,
}

impl Case {
    fn new(what: impl Into<String>, method: &str, path: String, status: u16, code: &'static str) -> Case {
        Case {
            what: what.into(),
            method: method.into(),
            path,
            authorization: None,
            caller: None,
            extra_headers: Vec::new(),
            body: None,
            status,
            code,
            needle: None,
        }
    }
    fn caller(mut self, id: &str) -> Case {
        self.caller = Some(id.into());
        self
    }
    fn body(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.body = Some(bytes.into());
        self
    }
    fn json(self, v: &Value) -> Case {
        self.body(serde_json::to_vec(v).unwrap())
    }
    fn needle(mut self, n: impl Into<String>) -> Case {
        self.needle = Some(n.into());
        self
    }
    fn auth(mut self, a: Option<String>) -> Case {
        self.authorization = Some(a);
        self
    }
    fn header(mut self, k: &str, v: &str) -> Case {
        self.extra_headers.push((k.into(), v.into()));
        self
    }
}

/// The routes that parse a body, each with a valid base body and the JSON kinds of its fields.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyRoute {
    Create,
    PatchInstallation,
    PatchUser,
    Personalize,
    Repersonalize,
}

const BODY_ROUTES: [BodyRoute; 5] = [
    BodyRoute::Create,
    BodyRoute::PatchInstallation,
    BodyRoute::PatchUser,
    BodyRoute::Personalize,
    BodyRoute::Repersonalize,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Bool,
    Obj,
    Arr,
}

const INSTALLATION_FIELDS: &[(&str, Kind)] = &[
    ("pushServiceType", Kind::Str),
    ("pushServiceToken", Kind::Str),
    ("regEnabled", Kind::Bool),
    ("isPrimary", Kind::Bool),
    ("notificationsEnabled", Kind::Bool),
    ("applicationUserId", Kind::Str),
    ("customAttributes", Kind::Obj),
    ("sdkVersion", Kind::Str),
    ("appVersion", Kind::Str),
    ("os", Kind::Str),
    ("osVersion", Kind::Str),
    ("deviceManufacturer", Kind::Str),
    ("deviceModel", Kind::Str),
    ("deviceName", Kind::Str),
    ("deviceSecure", Kind::Bool),
    ("language", Kind::Str),
    ("deviceTimezoneOffset", Kind::Str),
    ("inappchat", Kind::Bool),
    ("inbox", Kind::Bool),
    ("webrtcui", Kind::Bool),
];

const USER_FIELDS: &[(&str, Kind)] = &[
    ("externalUserId", Kind::Str),
    ("firstName", Kind::Str),
    ("middleName", Kind::Str),
    ("lastName", Kind::Str),
    ("gender", Kind::Str),
    ("birthday", Kind::Str),
    ("phones", Kind::Arr),
    ("phones[0]", Kind::Obj),
    ("phones[0].number", Kind::Str),
    ("emails", Kind::Arr),
    ("emails[0]", Kind::Obj),
    ("emails[0].address", Kind::Str),
    ("tags", Kind::Arr),
    ("tags[1]", Kind::Str),
    ("customAttributes", Kind::Obj),
];

const PERSONALIZE_FIELDS: &[(&str, Kind)] = &[
    ("userIdentity", Kind::Obj),
    ("userIdentity.externalUserId", Kind::Str),
    ("userIdentity.phones", Kind::Arr),
    ("userIdentity.phones[0]", Kind::Obj),
    ("userIdentity.phones[0].number", Kind::Str),
    ("userIdentity.emails", Kind::Arr),
    ("userIdentity.emails[0]", Kind::Obj),
    ("userIdentity.emails[0].address", Kind::Str),
    ("userAttributes", Kind::Obj),
    ("userAttributes.firstName", Kind::Str),
    ("userAttributes.middleName", Kind::Str),
    ("userAttributes.lastName", Kind::Str),
    ("userAttributes.gender", Kind::Str),
    ("userAttributes.birthday", Kind::Str),
    ("userAttributes.tags", Kind::Arr),
    ("userAttributes.tags[0]", Kind::Str),
    ("userAttributes.customAttributes", Kind::Obj),
];

/// The strings of a route's base body that would be stored (for U+0000).
fn stored_strings(route: BodyRoute) -> Vec<&'static str> {
    match route {
        BodyRoute::Create | BodyRoute::PatchInstallation => vec![
            "pushServiceType",
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
            "deviceTimezoneOffset",
            "customAttributes.i_tier",
            "customAttributes.i_since",
            "customAttributes.orders[0].sku",
        ],
        BodyRoute::PatchUser => vec![
            "firstName",
            "middleName",
            "lastName",
            "gender",
            "birthday",
            "phones[0].number",
            "emails[0].address",
            "tags[0]",
            "tags[1]",
            "customAttributes.tier",
            "customAttributes.since",
            "customAttributes.seen",
            "customAttributes.orders[0].sku",
        ],
        BodyRoute::Personalize | BodyRoute::Repersonalize => vec![
            "userIdentity.externalUserId",
            "userIdentity.phones[0].number",
            "userIdentity.emails[0].address",
            "userAttributes.firstName",
            "userAttributes.lastName",
            "userAttributes.tags[1]",
            "userAttributes.customAttributes.tier",
            "userAttributes.customAttributes.orders[0].sku",
        ],
    }
}

fn fields(route: BodyRoute) -> &'static [(&'static str, Kind)] {
    match route {
        BodyRoute::Create | BodyRoute::PatchInstallation => INSTALLATION_FIELDS,
        BodyRoute::PatchUser => USER_FIELDS,
        BodyRoute::Personalize | BodyRoute::Repersonalize => PERSONALIZE_FIELDS,
    }
}

fn base(route: BodyRoute) -> Value {
    match route {
        BodyRoute::Create => installation_base("tok-new"),
        BodyRoute::PatchInstallation => installation_base("tok-ana-2"),
        BodyRoute::PatchUser => user_base(),
        BodyRoute::Personalize | BodyRoute::Repersonalize => personalize_base(),
    }
}

/// A JSON pointer for a path like `userIdentity.phones[0].number`.
fn pointer(path: &str) -> String {
    path.split('.')
        .flat_map(|seg| seg.split('['))
        .map(|p| format!("/{}", p.trim_end_matches(']')))
        .collect()
}

/// Sets the value at `path` (the parent must exist; a missing last member is added).
fn set(body: &mut Value, path: &str, v: Value) {
    let p = pointer(path);
    let (parent, last) = p.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() {
        Some(&mut *body)
    } else {
        body.pointer_mut(parent)
    };
    match parent.unwrap_or_else(|| panic!("no parent for {path}")) {
        Value::Object(o) => {
            o.insert(last.to_string(), v);
        }
        Value::Array(a) => a[last.parse::<usize>().unwrap()] = v,
        other => panic!("{path}: parent is {other}"),
    }
}

fn get<'a>(body: &'a Value, path: &str) -> &'a Value {
    body.pointer(&pointer(path))
        .unwrap_or_else(|| panic!("no {path} in {body}"))
}

/// A value of another JSON kind than `kind` (never `null`: null is a valid "clear").
fn wrong_value(rng: &mut Rng, kind: Kind) -> Value {
    let all = [
        (Some(Kind::Str), json!("text")),
        (Some(Kind::Bool), json!(true)),
        (Some(Kind::Obj), json!({"k": 1})),
        (Some(Kind::Arr), json!(["x"])),
        (None, json!(42)),
        (None, json!(-0.5)),
    ];
    let candidates: Vec<&Value> = all.iter().filter(|(k, _)| *k != Some(kind)).map(|(_, v)| v).collect();
    candidates[rng.below(candidates.len())].clone()
}

struct Gen<'f> {
    f: &'f Fixture,
    rng: Rng,
    cases: Vec<Case>,
}

impl Gen<'_> {
    /// Method, path and caller of a body route, on ana's installation; PATCH is sent either
    /// as PATCH or as POST with the Android override.
    fn target(&mut self, route: BodyRoute, what: String, status: u16, code: &'static str) -> Case {
        let a = self.f.a.clone();
        let patch = |path: String, rng: &mut Rng| {
            if rng.chance(50) {
                Case::new(what.clone(), "PATCH", path, status, code)
            } else {
                Case::new(what.clone(), "POST", path, status, code).header("x-http-method-override", " patch ")
            }
        };
        match route {
            BodyRoute::Create => Case::new(what, "POST", "/mobile/1/appinstance".into(), status, code),
            BodyRoute::PatchInstallation => patch(ipath(&a), &mut self.rng).caller(&a),
            BodyRoute::PatchUser => patch(user_path(&a), &mut self.rng).caller(&a),
            BodyRoute::Personalize => Case::new(
                what,
                "POST",
                format!("{}/personalize?{NO_FLAGS}", ipath(&a)),
                status,
                code,
            )
            .caller(&a),
            BodyRoute::Repersonalize => {
                Case::new(what, "POST", format!("{}/repersonalize", ipath(&a)), status, code).caller(&a)
            }
        }
    }

    fn bad_body(&mut self, route: BodyRoute, what: String, body: Vec<u8>) {
        let c = self
            .target(route, what, 400, "REQUEST_FORMAT_INVALID")
            .body(body)
            .needle("body");
        self.cases.push(c);
    }

    fn field_error(&mut self, route: BodyRoute, what: String, body: &Value, code: &'static str, needle: &str) {
        let c = self.target(route, what, 400, code).json(body).needle(needle);
        self.cases.push(c);
    }

    /// Wrong JSON types at every field path of every body route.
    fn wrong_types(&mut self) {
        for route in BODY_ROUTES {
            for &(path, kind) in fields(route) {
                for _ in 0..2 {
                    let mut body = base(route);
                    let v = wrong_value(&mut self.rng, kind);
                    set(&mut body, path, v.clone());
                    self.field_error(
                        route,
                        format!("{route:?}: {path} = {v}"),
                        &body,
                        "REQUEST_FORMAT_INVALID",
                        path,
                    );
                }
            }
        }
    }

    /// U+0000 in every stored string, and in an attribute name.
    fn nuls(&mut self) {
        for route in BODY_ROUTES {
            for path in stored_strings(route) {
                let mut body = base(route);
                let s = get(&body, path).as_str().unwrap().to_string();
                let at = self.rng.below(s.len() + 1);
                let poisoned = format!("{}\0{}", &s[..at], &s[at..]);
                set(&mut body, path, json!(poisoned));
                self.field_error(
                    route,
                    format!("{route:?}: U+0000 in {path}"),
                    &body,
                    "REQUEST_FORMAT_INVALID",
                    path,
                );
            }
            let attrs = match route {
                BodyRoute::Create | BodyRoute::PatchInstallation | BodyRoute::PatchUser => "customAttributes",
                _ => "userAttributes.customAttributes",
            };
            let mut body = base(route);
            set(&mut body, &format!("{attrs}.bad\u{0}name"), json!(1));
            self.field_error(
                route,
                format!("{route:?}: U+0000 in an attribute name"),
                &body,
                "REQUEST_FORMAT_INVALID",
                &format!("{attrs}.bad\\u0000name"),
            );
        }
    }

    /// Values outside their limits and formats (step 8), each naming its field.
    fn limits(&mut self) {
        let long = |n: usize| "x".repeat(n);
        let many = |n: usize, f: &dyn Fn(usize) -> Value| Value::Array((0..n).map(f).collect());
        let inst: Vec<(&str, Value, &str)> = vec![
            ("applicationUserId", json!(long(257)), "applicationUserId"),
            ("pushServiceToken", json!(long(4097)), "pushServiceToken"),
            ("pushServiceToken", json!("with space"), "pushServiceToken"),
            ("pushServiceToken", json!(""), "pushServiceToken"),
            ("pushServiceToken", json!("tab\there"), "pushServiceToken"),
            ("pushServiceType", json!("FCM"), "pushServiceType"),
            ("pushServiceType", json!(""), "pushServiceType"),
            ("customAttributes.i_tier", json!(long(4097)), "customAttributes.i_tier"),
            ("customAttributes.i_tier", json!(5), "customAttributes.i_tier"),
            (
                "customAttributes.i_since",
                json!("2024-02-30"),
                "customAttributes.i_since",
            ),
            (
                "customAttributes.i_since",
                json!("2024-01-01T00:00:00Z"),
                "customAttributes.i_since",
            ),
            (
                "customAttributes.orders",
                json!([{"sku": "A"}]),
                "customAttributes.orders[0].price",
            ),
            (
                "customAttributes.orders",
                json!([{"sku": "A", "price": 1, "x": 2}]),
                "customAttributes.orders[0].x",
            ),
            (
                "customAttributes.orders",
                json!([{"sku": "A", "price": "1"}]),
                "customAttributes.orders[0].price",
            ),
            (
                "customAttributes.orders",
                json!({"sku": "A"}),
                "customAttributes.orders",
            ),
            (
                "customAttributes.newList",
                json!([{"a": 1}]),
                "customAttributes.newList",
            ),
            (
                "customAttributes.newObject",
                json!({"a": 1}),
                "customAttributes.newObject",
            ),
            ("customAttributes.$system", json!(1), "customAttributes.$system"),
            ("customAttributes.tab\tname", json!(1), "customAttributes."),
        ];
        let name101 = format!("customAttributes.{}", long(101));
        for route in [BodyRoute::Create, BodyRoute::PatchInstallation] {
            for (path, v, needle) in inst
                .iter()
                .cloned()
                .chain([(name101.as_str(), json!(1), "customAttributes.")])
            {
                let mut body = base(route);
                set(&mut body, path, v);
                self.field_error(
                    route,
                    format!("{route:?}: {path} out of limits"),
                    &body,
                    "REQUEST_FORMAT_INVALID",
                    needle,
                );
            }
            // A token without a type, and 251 attributes.
            let mut body = base(route);
            body.as_object_mut().unwrap().remove("pushServiceType");
            if route == BodyRoute::Create {
                self.field_error(
                    route,
                    "token without a type".into(),
                    &body,
                    "REQUEST_FORMAT_INVALID",
                    "pushServiceToken",
                );
            }
            let mut body = base(route);
            let attrs: Map<String, Value> = (0..251).map(|i| (format!("flood{i}"), json!(i))).collect();
            set(&mut body, "customAttributes", Value::Object(attrs));
            self.field_error(
                route,
                format!("{route:?}: 251 attributes"),
                &body,
                "REQUEST_FORMAT_INVALID",
                "customAttributes",
            );
        }

        let user: Vec<(&str, Value, &'static str, &str)> = vec![
            (
                "externalUserId",
                json!(long(257)),
                "REQUEST_FORMAT_INVALID",
                "externalUserId",
            ),
            (
                "externalUserId",
                json!("line\nbreak"),
                "REQUEST_FORMAT_INVALID",
                "externalUserId",
            ),
            (
                "externalUserId",
                json!("del\u{7f}"),
                "REQUEST_FORMAT_INVALID",
                "externalUserId",
            ),
            ("firstName", json!(long(256)), "REQUEST_FORMAT_INVALID", "firstName"),
            ("middleName", json!(long(51)), "REQUEST_FORMAT_INVALID", "middleName"),
            ("lastName", json!("ž".repeat(256)), "REQUEST_FORMAT_INVALID", "lastName"),
            ("gender", json!("Other"), "REQUEST_FORMAT_INVALID", "gender"),
            ("gender", json!("M"), "REQUEST_FORMAT_INVALID", "gender"),
            ("birthday", json!("2023-02-29"), "REQUEST_FORMAT_INVALID", "birthday"),
            ("birthday", json!("1990-5-17"), "REQUEST_FORMAT_INVALID", "birthday"),
            ("birthday", json!("0000-01-01"), "REQUEST_FORMAT_INVALID", "birthday"),
            (
                "birthday",
                json!("1990-05-17T00:00:00Z"),
                "REQUEST_FORMAT_INVALID",
                "birthday",
            ),
            (
                "phones[0].number",
                json!("00385911234567"),
                "PHONE_INVALID",
                "00385911234567",
            ),
            ("phones[0].number", json!("123"), "PHONE_INVALID", "123"),
            (
                "phones[0].number",
                json!("+385 91 123 4567 ext 2"),
                "PHONE_INVALID",
                "ext 2",
            ),
            ("emails[0].address", json!("a@@b"), "EMAIL_INVALID", "a@@b"),
            (
                "emails[0].address",
                json!("ana@example..com"),
                "EMAIL_INVALID",
                "ana@example..com",
            ),
            (
                "emails[0].address",
                json!(format!("{}@x", long(65))),
                "EMAIL_INVALID",
                "@x",
            ),
            ("tags[1]", json!(""), "REQUEST_FORMAT_INVALID", "tags[1]"),
            ("tags[0]", json!(long(256)), "REQUEST_FORMAT_INVALID", "tags[0]"),
            (
                "tags",
                many(101, &|i| json!(format!("t{i}"))),
                "REQUEST_FORMAT_INVALID",
                "tags",
            ),
            (
                "phones",
                many(101, &|i| json!({"number": format!("1{:09}", i)})),
                "REQUEST_FORMAT_INVALID",
                "phones",
            ),
            (
                "emails",
                many(101, &|i| json!({"address": format!("u{i}@example.com")})),
                "REQUEST_FORMAT_INVALID",
                "emails",
            ),
            (
                "customAttributes.tier",
                json!(long(4097)),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.tier",
            ),
            (
                "customAttributes.score",
                json!("12"),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.score",
            ),
            (
                "customAttributes.vip",
                json!("true"),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.vip",
            ),
            (
                "customAttributes.since",
                json!("2024-02-30"),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.since",
            ),
            (
                "customAttributes.seen",
                json!("2024-01-01T00:00:00+01:00"),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.seen",
            ),
            (
                "customAttributes.seen",
                json!("2024-01-01T24:00:00Z"),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.seen",
            ),
            (
                "customAttributes.orders",
                json!([{"sku": null, "price": 1}]),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.orders[0].sku",
            ),
            (
                "customAttributes.orders",
                json!([1]),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.orders[0]",
            ),
            (
                "customAttributes.newList",
                json!([]),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.newList",
            ),
            (
                "customAttributes.$x",
                json!(1),
                "REQUEST_FORMAT_INVALID",
                "customAttributes.$x",
            ),
        ];
        for (path, v, code, needle) in &user {
            let mut body = base(BodyRoute::PatchUser);
            set(&mut body, path, v.clone());
            self.field_error(
                BodyRoute::PatchUser,
                format!("PATCH user: {path} out of limits"),
                &body,
                code,
                needle,
            );
            // The same inside userAttributes of personalize (identity members are ignored there).
            let in_attributes =
                !path.starts_with("externalUserId") && !path.starts_with("phones") && !path.starts_with("emails");
            if in_attributes {
                let route = *self.rng.pick(&[BodyRoute::Personalize, BodyRoute::Repersonalize]);
                let mut body = base(route);
                set(&mut body, &format!("userAttributes.{path}"), v.clone());
                let needle = if *code == "REQUEST_FORMAT_INVALID" {
                    format!("userAttributes.{needle}")
                } else {
                    needle.to_string()
                };
                self.field_error(
                    route,
                    format!("{route:?}: userAttributes.{path} out of limits"),
                    &body,
                    code,
                    &needle,
                );
            }
        }
        let mut body = base(BodyRoute::PatchUser);
        let attrs: Map<String, Value> = (0..251).map(|i| (format!("flood{i}"), json!(i))).collect();
        set(&mut body, "customAttributes", Value::Object(attrs));
        self.field_error(
            BodyRoute::PatchUser,
            "PATCH user: 251 attributes".into(),
            &body,
            "REQUEST_FORMAT_INVALID",
            "customAttributes",
        );

        // Personalize identities.
        for route in [BodyRoute::Personalize, BodyRoute::Repersonalize] {
            let identity_cases: Vec<(Value, &'static str, &str)> = vec![
                (
                    json!({"externalUserId": long(257)}),
                    "REQUEST_FORMAT_INVALID",
                    "userIdentity.externalUserId",
                ),
                (
                    json!({"externalUserId": "a\u{1}b"}),
                    "REQUEST_FORMAT_INVALID",
                    "userIdentity.externalUserId",
                ),
                (
                    json!({"externalUserId": "ana", "phones": [{"number": "12ab"}]}),
                    "PHONE_INVALID",
                    "12ab",
                ),
                (
                    json!({"externalUserId": "ana", "emails": [{"address": "no-at-sign"}]}),
                    "EMAIL_INVALID",
                    "no-at-sign",
                ),
                (json!({}), "USER_IDENTITY_INVALID", ""),
                (json!({"externalUserId": ""}), "USER_IDENTITY_INVALID", ""),
                (
                    json!({"externalUserId": "NULL", "phones": [], "emails": null}),
                    "USER_IDENTITY_INVALID",
                    "",
                ),
                (json!(null), "USER_IDENTITY_INVALID", ""),
            ];
            for (identity, code, needle) in identity_cases {
                let mut body = base(route);
                set(&mut body, "userIdentity", identity.clone());
                self.field_error(
                    route,
                    format!("{route:?}: userIdentity {identity}"),
                    &body,
                    code,
                    needle,
                );
            }
        }
    }

    /// Bodies that are not JSON objects: garbage, truncations, bad UTF-8, non-objects,
    /// numbers out of range, lone surrogates, trailing bytes, nesting beyond the limit.
    fn broken_json(&mut self, random_cases: usize) {
        let fixed: Vec<(&str, Vec<u8>)> = vec![
            ("array", b"[]".to_vec()),
            ("string", b"\"{}\"".to_vec()),
            ("number", b"1".to_vec()),
            ("null", b"null".to_vec()),
            ("true", b"true".to_vec()),
            ("NaN", br#"{"customAttributes":{"score":NaN}}"#.to_vec()),
            ("1e400", br#"{"customAttributes":{"score":1e400}}"#.to_vec()),
            ("lone surrogate", br#"{"firstName":"\ud800"}"#.to_vec()),
            ("comment", b"{/* c */}".to_vec()),
            ("single quotes", b"{'firstName':'x'}".to_vec()),
            ("trailing comma", br#"{"firstName":"x",}"#.to_vec()),
            ("raw control character", b"{\"firstName\":\"a\x01b\"}".to_vec()),
            ("raw NUL byte", b"{\"firstName\":\"a\x00b\"}".to_vec()),
            (
                "UTF-16",
                "{\"a\":1}".encode_utf16().flat_map(u16::to_le_bytes).collect(),
            ),
            ("BOM", [b"\xef\xbb\xbf".as_slice(), b"{}"].concat()),
            ("two objects", b"{}{}".to_vec()),
            (
                "deep arrays",
                format!("{{\"x\":{}}}", "[".repeat(40) + &"]".repeat(40)).into_bytes(),
            ),
            (
                "very deep arrays",
                format!("{{\"x\":{}1{}}}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            ),
            (
                "deep objects",
                format!("{}1{}", "{\"a\":".repeat(33), "}".repeat(33)).into_bytes(),
            ),
            ("unterminated deep", "[".repeat(100_000).into_bytes()),
        ];
        for (what, bytes) in fixed {
            let route = *self.rng.pick(&BODY_ROUTES);
            self.bad_body(route, format!("{route:?}: {what}"), bytes);
        }
        for i in 0..random_cases {
            let route = *self.rng.pick(&BODY_ROUTES);
            let valid = serde_json::to_vec(&base(route)).unwrap();
            let (what, bytes) = match i % 4 {
                0 => {
                    let n = 1 + self.rng.below(valid.len() - 1);
                    (format!("{route:?}: truncated at {n}"), valid[..n].to_vec())
                }
                1 => {
                    const BAD_UTF8: [&[u8]; 5] = [
                        b"\xff",
                        b"\xc3\x28",
                        b"\xed\xa0\x80",
                        b"\xf8\x88\x80\x80\x80",
                        b"\xe2\x82",
                    ];
                    let bad = self.rng.pick(&BAD_UTF8[..]);
                    let at = self.rng.below(valid.len());
                    let mut v = valid.clone();
                    v.splice(at..at, bad.iter().copied());
                    (format!("{route:?}: bad UTF-8 {bad:x?} at {at}"), v)
                }
                2 => {
                    // Random bytes drawn mostly from JSON's own characters.
                    let alphabet = b"{}[]\":,0123456789.eE+-tfnul \\abc\n";
                    let n = 1 + self.rng.below(120);
                    let bytes: Vec<u8> = (0..n)
                        .map(|_| {
                            if self.rng.chance(90) {
                                *self.rng.pick(alphabet)
                            } else {
                                self.rng.next() as u8
                            }
                        })
                        .collect();
                    let blank = bytes.iter().all(u8::is_ascii_whitespace);
                    let object = matches!(serde_json::from_slice::<Value>(&bytes), Ok(Value::Object(_)));
                    if blank || object {
                        continue;
                    }
                    (
                        format!("{route:?}: garbage {:?}", String::from_utf8_lossy(&bytes)),
                        bytes,
                    )
                }
                _ => {
                    // One byte of the valid body replaced by a structural character.
                    let at = self.rng.below(valid.len());
                    let mut v = valid.clone();
                    v[at] = *self.rng.pick(b"{[\"");
                    if matches!(serde_json::from_slice::<Value>(&v), Ok(Value::Object(_))) {
                        continue;
                    }
                    (format!("{route:?}: byte {at} replaced"), v)
                }
            };
            self.bad_body(route, what, bytes);
        }
    }

    /// Random mutations of a field: a wrong type, U+0000, or an overlong string at a random
    /// path of a random route.
    fn random_field_mutations(&mut self, n: usize) {
        for _ in 0..n {
            let route = *self.rng.pick(&BODY_ROUTES);
            let mut body = base(route);
            if self.rng.chance(50) {
                let &(path, kind) = self.rng.pick(fields(route));
                let v = wrong_value(&mut self.rng, kind);
                set(&mut body, path, v.clone());
                self.field_error(
                    route,
                    format!("{route:?}: {path} = {v}"),
                    &body,
                    "REQUEST_FORMAT_INVALID",
                    path,
                );
            } else {
                let paths = stored_strings(route);
                let path = *self.rng.pick(&paths);
                let len = 1 + self.rng.below(300);
                let s: String = (0..len)
                    .map(|i| {
                        if i == len / 2 {
                            '\0'
                        } else {
                            *self.rng.pick(&['a', 'ž', '🙂', ' ', '"', '\\', '\n'])
                        }
                    })
                    .collect();
                set(&mut body, path, json!(s));
                self.field_error(
                    route,
                    format!("{route:?}: U+0000 in a random {path}"),
                    &body,
                    "REQUEST_FORMAT_INVALID",
                    path,
                );
            }
        }
    }

    /// Wrong methods and bad method overrides: 405 with `Allow`, before anything else.
    fn methods(&mut self) {
        let a = &self.f.a;
        let list: Vec<(&str, String, Option<&str>)> = vec![
            ("PUT", ipath(a), None),
            ("POST", ipath(a), None),
            ("DELETE", user_path(a), None),
            ("PUT", user_path(a), None),
            ("GET", format!("{}/personalize", ipath(a)), None),
            ("PATCH", format!("{}/personalize", ipath(a)), None),
            ("GET", format!("{}/depersonalize", ipath(a)), None),
            ("DELETE", format!("{}/repersonalize", ipath(a)), None),
            ("PATCH", "/mobile/1/appinstance".into(), None),
            ("GET", "/mobile/1/appinstance".into(), None),
            ("DELETE", "/mobile/1/appinstance".into(), None),
            ("POST", "/mobile/1/baseurl".into(), None),
            ("PUT", "/mobile/5/messages".into(), None),
            ("GET", format!("{}/user/events/session", ipath(a)), None),
            ("OPTIONS", ipath(a), None),
            ("FROB", ipath(a), None),
            ("POST", ipath(a), Some("PUT")),
            ("POST", ipath(a), Some("DELETE")),
            ("POST", user_path(a), Some("PATCHY")),
            ("POST", user_path(a), Some("")),
            ("GET", ipath(a), Some("PATCH")),
            ("PATCH", user_path(a), Some("PATCH")),
            ("DELETE", ipath(a), Some("PATCH")),
            ("POST", format!("{}/personalize", ipath(a)), Some("PATCH")),
            ("POST", "/mobile/1/appinstance".into(), Some("PATCH")),
        ];
        for (method, path, over) in list {
            for with_auth in [true, false] {
                let mut c = Case::new(
                    format!("{method} {path} override {over:?}"),
                    method,
                    path.clone(),
                    405,
                    "METHOD_NOT_ALLOWED",
                )
                .caller(a)
                .json(&json!({"firstName": "X"}));
                if let Some(o) = over {
                    c = c.header("x-http-method-override", o);
                }
                if !with_auth {
                    c = c.auth(None);
                }
                self.cases.push(c);
            }
        }
    }

    /// Missing and bad credentials on every route, with bodies that would otherwise succeed.
    fn credentials(&mut self) {
        let a = self.f.a.clone();
        let code = self.f.ts.app.application_code.clone();
        let expired = make_jwt(
            "k1",
            &self.f.secret,
            &code,
            "ana",
            json!({"iat": now_secs() - 900, "exp": now_secs() - 100}),
        );
        let good = make_jwt("k1", &self.f.secret, &code, "ana", json!({}));
        let wrong_key = make_jwt("k1", b"not the secret", &code, "ana", json!({}));
        let other_sub = make_jwt("k1", &self.f.secret, &code, "ben", json!({}));
        type Auth = (Option<String>, (u16, &'static str), (u16, &'static str));
        let missing = (401, "APP_CODE_MISSING");
        let invalid_code = (401, "INVALID_APPLICATION_CODE");
        let jwt = (401, "JWT_INVALID");
        let auths: Vec<Auth> = vec![
            (None, missing, missing),
            (Some("".into()), missing, missing),
            (Some("App".into()), missing, missing),
            (Some("Basic YWRtaW46YWRtaW4=".into()), missing, missing),
            (Some(format!("Token {code}")), missing, missing),
            (Some(format!("App {}", &code[..63])), invalid_code, invalid_code),
            (Some(format!("App {code}{code}")), invalid_code, invalid_code),
            (Some("App ../../etc/passwd".into()), invalid_code, invalid_code),
            (Some(format!("Bearer {good}")), missing, (200, "")),
            (Some("Bearer a.b.c".into()), missing, jwt),
            (Some("Bearer x".into()), missing, jwt),
            (Some(format!("Bearer {expired}")), missing, jwt),
            (Some(format!("Bearer {wrong_key}")), missing, jwt),
            (Some(format!("Bearer {other_sub}")), missing, jwt),
        ];
        let routes: Vec<(&str, String, Option<Value>, bool)> = vec![
            (
                "POST",
                "/mobile/1/appinstance".into(),
                Some(installation_base("tok-new")),
                false,
            ),
            ("GET", ipath(&a), None, false),
            ("PATCH", ipath(&a), Some(json!({"language": "de"})), false),
            ("DELETE", ipath(&self.f.n), None, false),
            ("GET", user_path(&a), None, true),
            ("PATCH", user_path(&a), Some(json!({"firstName": "Eve"})), true),
            (
                "POST",
                format!("{}/personalize?{NO_FLAGS}", ipath(&a)),
                Some(personalize_base()),
                true,
            ),
            (
                "POST",
                format!("{}/repersonalize", ipath(&a)),
                Some(personalize_base()),
                true,
            ),
            ("POST", format!("{}/depersonalize", ipath(&a)), None, false),
            (
                "POST",
                format!("{}/user/events/session", ipath(&a)),
                Some(json!({})),
                false,
            ),
            (
                "POST",
                format!("{}/user/events/custom", ipath(&a)),
                Some(json!({})),
                false,
            ),
            ("POST", "/mobile/5/messages".into(), Some(json!({"mIDs": []})), false),
            ("POST", "/mobile/2/messages/seen".into(), Some(json!({})), false),
            (
                "POST",
                "/mobile/1/messages/deliveryreport".into(),
                Some(json!({})),
                false,
            ),
            (
                "POST",
                "/mobile/1/messages/mo".into(),
                Some(json!({"messages": []})),
                false,
            ),
        ];
        for (auth, on_app, on_user) in &auths {
            for (method, path, body, user_data) in &routes {
                let (status, code) = if *user_data { *on_user } else { *on_app };
                if status == 200 {
                    continue;
                }
                let mut c = Case::new(
                    format!("{method} {path} with {auth:?}"),
                    method,
                    path.clone(),
                    status,
                    code,
                )
                .caller(&a)
                .auth(auth.clone());
                if let Some(b) = body {
                    c = c.json(b);
                }
                self.cases.push(c);
            }
        }
    }

    /// Unknown routes, unknown and foreign installations, remote targets, bad query booleans,
    /// oversize bodies, and the domain conflicts — each with its code.
    fn addressing(&mut self) {
        let (a, b, n) = (self.f.a.clone(), self.f.b.clone(), self.f.n.clone());
        let odd_paths = [
            format!("{}/unknown", ipath(&a)),
            format!("{}/user/events", ipath(&a)),
            format!("{}/user/events/other", ipath(&a)),
            format!("{}/personalize/x", ipath(&a)),
            format!("{}/%00", ipath(&a)),
            format!("/mobile/1/APPINSTANCE/{a}"),
            "/Mobile/1/appinstance".into(),
            "/mobile/2/appinstance".into(),
            "/mobile/1/appinstances".into(),
            "/mobile/4/messages".into(),
            "/mobile/1/messages/seen/x".into(),
            "/mobile".into(),
            "/mobile/1".into(),
            "/".into(),
            "/mobile/ž".into(),
            format!("/mobile/1/appinstance/{}/nope", "x".repeat(4000)),
            "/mobile/1/appinstance/a b/user/x".into(),
        ];
        for p in odd_paths {
            for method in ["GET", "POST", "PATCH", "DELETE"] {
                self.cases.push(
                    Case::new(
                        format!("{method} odd path {p}"),
                        method,
                        p.clone(),
                        404,
                        "RESOURCE_NOT_FOUND",
                    )
                    .caller(&a)
                    .json(&json!({"firstName": "X"})),
                );
            }
        }
        let unknown = uuid::Uuid::new_v4().to_string();
        let no_reg: Vec<(&str, String, Option<String>, Option<Value>)> = vec![
            ("GET", ipath(&unknown), None, None),
            ("GET", ipath("not-a-uuid"), None, None),
            ("PATCH", ipath(&unknown), None, Some(json!({"language": "de"}))),
            (
                "PATCH",
                ipath(&unknown),
                None,
                Some(json!({"pushServiceToken": "t-only"})),
            ),
            (
                "PATCH",
                ipath("not-a-uuid"),
                None,
                Some(json!({"pushServiceType": "Firebase", "pushServiceToken": "t"})),
            ),
            ("GET", user_path(&unknown), None, None),
            ("PATCH", user_path(&unknown), None, Some(json!({"firstName": "X"}))),
            (
                "POST",
                format!("{}/personalize?{NO_FLAGS}", ipath(&unknown)),
                None,
                Some(personalize_base()),
            ),
            ("POST", format!("{}/depersonalize", ipath(&unknown)), None, None),
            ("POST", format!("{}/user/events/session", ipath(&unknown)), None, None),
            ("GET", ipath(&a), Some(unknown.clone()), None),
            ("GET", user_path(&a), Some("not-a-uuid".into()), None),
            ("DELETE", ipath(&b), Some(unknown.clone()), None),
        ];
        for (method, path, caller, body) in no_reg {
            let explicit_caller = caller.is_some();
            let mut c = Case::new(
                format!("{method} {path} unknown caller"),
                method,
                path.clone(),
                404,
                "NO_REGISTRATION",
            );
            if explicit_caller {
                c = c.caller(caller.as_deref().unwrap());
            }
            if let Some(b) = body {
                c = c.json(&b);
            }
            self.cases.push(c);
        }
        let forbidden: Vec<(&str, String, Option<Value>)> = vec![
            ("GET", ipath(&b), None),
            ("PATCH", ipath(&b), Some(json!({"isPrimary": true}))),
            ("PATCH", ipath(&n), Some(json!({"isPrimary": false}))),
            ("PATCH", ipath(&unknown), Some(json!({"isPrimary": true}))),
            ("POST", format!("{}/depersonalize", ipath(&b)), None),
            ("GET", user_path(&b), None),
            ("PATCH", user_path(&b), Some(json!({"firstName": "X"}))),
            (
                "POST",
                format!("{}/personalize?{NO_FLAGS}", ipath(&b)),
                Some(personalize_base()),
            ),
            ("POST", format!("{}/user/events/custom", ipath(&n)), Some(json!({}))),
            ("DELETE", ipath(&a), None),
        ];
        for (method, path, body) in forbidden {
            let mut c = Case::new(
                format!("{method} {path} from ana"),
                method,
                path.clone(),
                403,
                "FORBIDDEN_INSTALLATION",
            )
            .caller(&a);
            if let Some(b) = body {
                c = c.json(&b);
            }
            self.cases.push(c);
        }
        // DELETE without a caller header.
        let mut c = Case::new(
            "DELETE without caller",
            "DELETE",
            ipath(&b),
            403,
            "FORBIDDEN_INSTALLATION",
        );
        c.extra_headers.push(("pushregistrationid".into(), "".into()));
        self.cases.push(c);

        for (name, value) in [
            ("keepAsLead", "yes"),
            ("forceDepersonalize", ""),
            ("setDeviceAsPrimary", "2"),
            ("keepAsLead", "tru"),
        ] {
            let path = format!("{}/personalize?{NO_FLAGS}&{name}={value}", ipath(&a));
            self.cases.push(
                Case::new(
                    format!("query {name}={value}"),
                    "POST",
                    path,
                    400,
                    "REQUEST_FORMAT_INVALID",
                )
                .caller(&a)
                .json(&personalize_base())
                .needle(format!("query.{name}")),
            );
        }

        let conflicts: Vec<(String, Value, &'static str, &str)> = vec![
            (
                user_path(&a),
                json!({"externalUserId": "ben"}),
                "USER_MERGE_INTERRUPTED",
                "PATCH",
            ),
            (
                user_path(&a),
                json!({"emails": [{"address": "BEN@example.com"}]}),
                "USER_MERGE_INTERRUPTED",
                "PATCH",
            ),
            (
                format!("{}/personalize?{NO_FLAGS}", ipath(&a)),
                json!({"userIdentity": {"externalUserId": "ben"}}),
                "PERSONALIZATION_IMPOSSIBLE",
                "POST",
            ),
            (
                format!("{}/personalize?{NO_FLAGS}", ipath(&n)),
                json!({"userIdentity": {"externalUserId": "ana", "emails": [{"address": "ben@example.com"}]}}),
                "AMBIGUOUS_PERSONALIZE_CANDIDATES",
                "POST",
            ),
            (
                format!("{}/personalize?{NO_FLAGS}", ipath(&n)),
                json!({"userIdentity": {"externalUserId": "nobody", "emails": [{"address": "ana@example.com"}]}}),
                "USER_MERGE_INTERRUPTED",
                "POST",
            ),
        ];
        for (path, body, code, method) in conflicts {
            let caller = if path.contains(&n) { n.clone() } else { a.clone() };
            self.cases.push(
                Case::new(format!("{method} {path} {body}"), method, path, 409, code)
                    .caller(&caller)
                    .json(&body),
            );
        }
    }

    /// Bodies one byte over the limit and far over it, on body and body-less routes.
    fn oversize(&mut self, max: usize) {
        let a = self.f.a.clone();
        for (i, (method, path)) in [
            ("POST", "/mobile/1/appinstance".to_string()),
            ("PATCH", user_path(&a)),
            ("GET", ipath(&a)),
            ("POST", format!("{}/depersonalize", ipath(&a))),
        ]
        .into_iter()
        .enumerate()
        {
            let size = if i % 2 == 0 { max + 1 } else { max + 100_000 };
            let mut body = b"{\"firstName\":\"".to_vec();
            body.resize(size - 2, b'x');
            body.extend_from_slice(b"\"}");
            self.cases.push(
                Case::new(
                    format!("{method} {path} with {size} bytes"),
                    method,
                    path,
                    413,
                    "REQUEST_TOO_LARGE",
                )
                .caller(&a)
                .body(body),
            );
        }
    }
}

/// Sends a case and returns what is wrong with the answer, if anything.
async fn run(ts: &TestServer, c: &Case) -> Option<String> {
    let own = ts.app_auth();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    match &c.authorization {
        None => headers.push(("authorization", own.as_str())),
        Some(Some(a)) => headers.push(("authorization", a.as_str())),
        Some(None) => {}
    }
    for (k, v) in &c.extra_headers {
        headers.push((k.as_str(), v.as_str()));
    }
    let r: Resp = ts
        .call_with(&c.method, &c.path, &headers, c.caller.as_deref(), c.body.clone())
        .await;
    let fail = |why: String| {
        Some(format!(
            "{}: {why}; got {} {}",
            c.what,
            r.status,
            r.text().chars().take(300).collect::<String>()
        ))
    };
    if r.status.is_server_error() {
        return fail("a server fault".into());
    }
    if r.status.as_u16() != c.status {
        return fail(format!("expected status {}", c.status));
    }
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(&r.body) else {
        return fail("no JSON envelope".into());
    };
    let se = top.get("requestError").and_then(|re| re.get("serviceException"));
    let envelope_shape = top.len() == 1
        && top["requestError"].as_object().is_some_and(|o| o.len() == 1)
        && se.and_then(Value::as_object).is_some_and(|o| o.len() == 2);
    if !envelope_shape {
        return fail("not exactly the §3.1 envelope".into());
    }
    let se = se.unwrap();
    if se["messageId"] != c.code {
        return fail(format!("expected code {}", c.code));
    }
    let Some(text) = se["text"].as_str() else {
        return fail("text is not a string".into());
    };
    if let Some(n) = &c.needle
        && !text.contains(n.as_str())
    {
        return fail(format!("text does not name {n:?}"));
    }
    if r.headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/json") {
        return fail("Content-Type is not application/json".into());
    }
    if r.headers.get("content-length").and_then(|v| v.to_str().ok()) != Some(r.body.len().to_string().as_str()) {
        return fail("Content-Length does not match the body".into());
    }
    if r.headers.contains_key("transfer-encoding") {
        return fail("chunked".into());
    }
    if c.status == 405 && !r.headers.contains_key("allow") {
        return fail("no Allow header".into());
    }
    None
}

/// A few thousand malformed requests; each gets its expected status and envelope, none a
/// 5xx, and the store is exactly as before.
async fn malformed_request_flood_changes_nothing() {
    let f = fixture().await;
    let max = roster_server::Settings::default().mobile.max_body_bytes;
    let mut g = Gen {
        f: &f,
        rng: Rng(SEED),
        cases: Vec::new(),
    };
    g.wrong_types();
    g.nuls();
    g.limits();
    g.broken_json(1200);
    g.random_field_mutations(600);
    g.methods();
    g.credentials();
    g.addressing();
    g.oversize(max);
    let cases = g.cases;
    assert!(cases.len() >= 2000, "{} cases", cases.len());

    let before = f.ts.snapshot().await;
    let started = Instant::now();
    let failures: Vec<String> = futures::stream::iter(cases.iter())
        .map(|c| run(&f.ts, c))
        .buffer_unordered(CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    println!(
        "malformed flood: {} requests in {:.1} s, seed {SEED:#x}",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests answered wrongly (seed {SEED:#x}):\n{}",
        failures.len(),
        cases.len(),
        failures.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_same_store(&before, &f.ts.snapshot().await, "after the malformed flood");
    f.ts.finish().await;
}

// ----- focused tests -----------------------------------------------------------------------------

/// U+0000 in each stored string is a 400 naming the field and changes nothing, on every
/// backend (PostgreSQL text cannot hold it); other control characters where the spec allows
/// them are stored and read back as sent.
async fn nul_is_refused_and_other_controls_round_trip() {
    let f = fixture().await;
    let ts = &f.ts;
    let a = &f.a;
    let before = ts.snapshot().await;
    let cases: Vec<(String, Value, &str)> = vec![
        (user_path(a), json!({"firstName": "A\u{0}"}), "firstName"),
        (user_path(a), json!({"externalUserId": "\u{0}"}), "externalUserId"),
        (user_path(a), json!({"tags": ["ok", "\u{0}"]}), "tags[1]"),
        (
            user_path(a),
            json!({"phones": [{"number": "385911234567\u{0}"}]}),
            "phones[0].number",
        ),
        (
            user_path(a),
            json!({"emails": [{"address": "ana@example.com\u{0}"}]}),
            "emails[0].address",
        ),
        (
            user_path(a),
            json!({"customAttributes": {"tier": "g\u{0}ld"}}),
            "customAttributes.tier",
        ),
        (
            user_path(a),
            json!({"customAttributes": {"new\u{0}": 1}}),
            "customAttributes.new\\u0000",
        ),
        (
            user_path(a),
            json!({"customAttributes": {"orders": [{"sku": "\u{0}", "price": 1}]}}),
            "customAttributes.orders[0].sku",
        ),
        (ipath(a), json!({"deviceName": "Pixel\u{0}"}), "deviceName"),
        (ipath(a), json!({"applicationUserId": "\u{0}u"}), "applicationUserId"),
        (ipath(a), json!({"pushServiceToken": "t\u{0}"}), "pushServiceToken"),
        (
            ipath(a),
            json!({"customAttributes": {"i_tier": "\u{0}"}}),
            "customAttributes.i_tier",
        ),
    ];
    for (path, body, field) in &cases {
        let r = ts.call("PATCH", path, Some(a), Some(body)).await;
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        let text = r.json()["requestError"]["serviceException"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.starts_with(&format!("{field}: ")), "{body}: {text}");
    }
    let r = ts.create(&json!({"os": "Android\u{0}"})).await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    let r = ts
        .personalize(
            &f.n,
            json!({"userIdentity": {"externalUserId": "new\u{0}user"}}),
            NO_FLAGS,
        )
        .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_same_store(&before, &ts.snapshot().await, "U+0000 refused");

    // Controls the spec does not forbid are kept exactly, on both backends.
    let odd = "tab\there\u{1}\u{1f}\u{7f}\u{85}";
    let u = ts
        .call(
            "PATCH",
            &user_path(a),
            Some(a),
            Some(&json!({"firstName": odd, "tags": [odd], "customAttributes": {"tier": odd}})),
        )
        .await
        .ok()
        .json();
    assert_eq!(u["firstName"], odd);
    assert_eq!(u["customAttributes"]["tier"], odd);
    let again = ts.call("GET", &user_path(a), Some(a), None).await.ok().json();
    assert_eq!(again["firstName"], odd);
    assert!(again["tags"].as_array().unwrap().contains(&json!(odd)));
    f.ts.finish().await;
}

/// The nesting limit over HTTP: 32 levels are served, 33 are a 400 about the body, and far
/// deeper bodies (beyond serde_json's own limit) too; never a 5xx, nothing changed.
async fn nesting_limit_over_http() {
    let f = fixture().await;
    let ts = &f.ts;
    let a = &f.a;
    // Level 1 is the body, level 2 `x`, then 30 arrays: 32.
    let ok = format!(
        "{{\"x\":{{\"y\":{}1{}}},\"language\":\"hr\"}}",
        "[".repeat(30),
        "]".repeat(30)
    );
    let r = ts
        .call_bytes("PATCH", &ipath(a), Some(a), Some(ok.into_bytes()))
        .await
        .ok();
    assert_eq!(r.json()["language"], "hr");
    let before = ts.snapshot().await;
    for levels in [33usize, 129, 10_000, 500_000] {
        let deep = format!(
            "{{\"x\":{{\"y\":{}1{}}},\"language\":\"de\"}}",
            "[".repeat(levels - 2),
            "]".repeat(levels - 2)
        );
        let r = ts
            .call_bytes("PATCH", &ipath(a), Some(a), Some(deep.into_bytes()))
            .await;
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        assert!(r.text().contains("deeper than 32"), "{}", r.text());
    }
    assert_same_store(&before, &ts.snapshot().await, "deep bodies refused");
    // List-of-objects attributes, the deepest shape the spec defines, work in personalize.
    let u = ts
        .personalize_ok(
            a,
            json!({"userIdentity": {"externalUserId": "ana"},
                   "userAttributes": {"customAttributes": {"orders": [{"sku": "B", "price": 2}]}}}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(u["customAttributes"]["orders"], json!([{"sku": "B", "price": 2}]));
    f.ts.finish().await;
}

/// Bodies within 2 MiB with very many keys or items: refused with the limit that applies
/// (tags, phones, emails, attributes, list length), or served, never a 5xx; timings printed.
async fn huge_bodies_within_the_size_limit() {
    let f = fixture().await;
    let ts = &f.ts;
    let a = &f.a;
    let max = roster_server::Settings::default().mobile.max_body_bytes;
    let before = ts.snapshot().await;
    let fill = |make: &dyn Fn(usize) -> Value, wrap: &dyn Fn(Value) -> Value| {
        // As many items as fit 2 MiB.
        let one = serde_json::to_vec(&make(999_999)).unwrap().len() + 1;
        let n = (max - 200) / one;
        wrap(Value::Array((0..n).map(make).collect()))
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "tags",
            fill(&|i| json!(format!("t{i}")), &|v| json!({"tags": v})),
            "tags",
        ),
        (
            "phones",
            fill(&|i| json!({"number": format!("1{i:09}")}), &|v| json!({"phones": v})),
            "phones",
        ),
        (
            "emails",
            fill(&|i| json!({"address": format!("u{i}@x.io")}), &|v| json!({"emails": v})),
            "emails",
        ),
        (
            "list of objects",
            fill(
                &|i| json!({"sku": format!("{i}"), "price": 1}),
                &|v| json!({"customAttributes": {"orders": v}}),
            ),
            "customAttributes.orders",
        ),
        (
            "attributes",
            {
                let attrs: Map<String, Value> = (0..60_000).map(|i| (format!("k{i}"), json!(i))).collect();
                json!({"customAttributes": attrs})
            },
            "customAttributes",
        ),
        (
            "unknown members",
            {
                let junk: Map<String, Value> = (0..60_000)
                    .map(|i| (format!("junk{i}"), json!([i, {"a": i}])))
                    .collect();
                let mut v = Value::Object(junk);
                v["tags"] = json!(42);
                v
            },
            "tags",
        ),
    ];
    for (what, body, needle) in cases {
        let bytes = serde_json::to_vec(&body).unwrap();
        assert!(bytes.len() <= max, "{what}: {} bytes", bytes.len());
        let started = Instant::now();
        let r = ts
            .call_bytes("PATCH", &user_path(a), Some(a), Some(bytes.clone()))
            .await;
        println!(
            "{what}: {} bytes answered {} in {} ms",
            bytes.len(),
            r.status,
            started.elapsed().as_millis()
        );
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        assert!(r.text().contains(needle), "{what}: {}", r.text());
    }
    assert_same_store(&before, &ts.snapshot().await, "huge bodies refused");
    // 60,000 deletions of attributes that do not exist: a valid request that changes nothing.
    let deletions: Map<String, Value> = (0..60_000).map(|i| (format!("gone{i}"), Value::Null)).collect();
    let started = Instant::now();
    ts.call(
        "PATCH",
        &user_path(a),
        Some(a),
        Some(&json!({"customAttributes": deletions})),
    )
    .await
    .ok();
    println!("60,000 deletions served in {} ms", started.elapsed().as_millis());
    assert_same_store(&before, &ts.snapshot().await, "deleting absent attributes");
    f.ts.finish().await;
}

on_every_backend!(
    malformed_request_flood_changes_nothing,
    nul_is_refused_and_other_controls_round_trip,
    nesting_limit_over_http,
    huge_bodies_within_the_size_limit,
);
