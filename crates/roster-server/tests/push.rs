//! Sending and delivery (management-api.md §5, §6) end to end on every backend: the real server
//! on port 0 sends through its delivery workers to the loopback APNs and FCM stand-ins of
//! roster-push-standins, and every test ends with the invariant checker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Resp, TestServer, ipath, user_path};
use roster_push_standins::{
    ApnsAnswer, ApnsStandIn, ApnsStandInConfig, FcmAnswer, FcmStandIn, FcmStandInConfig, HmsAnswer, HmsStandIn,
    HmsStandInConfig,
};
use roster_server::{RunningServer, Settings, settings::MobileRateSettings};
use serde_json::{Value, json};

/// A server with the test application pointed at an APNs and an FCM stand-in, and API keys.
struct Fixture {
    ts: TestServer,
    /// A `push:send` key.
    key: String,
    /// An `admin` key.
    admin: String,
    apns: ApnsStandIn,
    fcm: FcmStandIn,
}

/// Settings every fixture server gets: workers that poll often.
fn fast(s: &mut Settings) {
    s.delivery.poll_interval_ms = 50;
}

async fn api_key(server: &TestServer, scopes: &[&str]) -> String {
    server.api_key(scopes).await
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(adjust: impl FnOnce(&mut Settings)) -> Fixture {
    let ts = TestServer::start_with(|s| {
        fast(s);
        adjust(s);
    })
    .await;
    let apns = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let fcm = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    let admin = api_key(&ts, &["admin"]).await;
    let key = api_key(&ts, &["push:send"]).await;
    let f = Fixture {
        ts,
        key,
        admin,
        apns,
        fcm,
    };
    let providers = json!({"apns": f.apns.application_settings(), "fcm": f.fcm.application_settings()});
    f.patch_app(json!({ "providers": providers })).await;
    f
}

impl Fixture {
    async fn request(
        &self,
        method: &str,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let auth = format!("App {key}");
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.ts.call_with(method, path, &all, None, body).await
    }

    async fn patch_app(&self, body: Value) -> Value {
        let path = format!("/api/v1/applications/{}", self.ts.app.id);
        self.request("PATCH", &path, &self.admin, &[], Some(body.to_string().into_bytes()))
            .await
            .ok()
            .json()
    }

    async fn app_resource(&self) -> Value {
        let path = format!("/api/v1/applications/{}", self.ts.app.id);
        self.request("GET", &path, &self.admin, &[], None).await.ok().json()
    }

    /// `POST /push/3/messages` with the `push:send` key.
    async fn send(&self, body: &Value) -> Resp {
        self.request(
            "POST",
            "/push/3/messages",
            &self.key,
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// A request of one message from the test application to `destinations`.
    fn message(&self, destinations: Vec<Value>) -> Value {
        json!({"messages": [{
            "sender": self.ts.app.application_code,
            "destinations": destinations,
            "content": {"title": "Sale", "text": "20% off today"},
            "options": {"customPayload": {"deeplink": "acme://sale"}}
        }]})
    }

    /// Sends one destination, asserts a 200, returns the answer's one message element.
    async fn send_one(&self, destination: Value) -> Value {
        let r = self.send(&self.message(vec![destination])).await.ok();
        r.json()["messages"][0].clone()
    }

    async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &self.key, &[], None).await
    }

    /// Polls the message until `done`; returns it.
    async fn done(&self, message_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.get(&format!("/api/v1/messages/{message_id}")).await.ok().json();
            if m["done"] == true {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "message never done: {m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every delivery record of a message, walking the pages.
    async fn records(&self, message_id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/messages/{message_id}/deliveries?limit=2");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&path).await.ok().json();
            out.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        // management-api.md §6.7: a message's deliveries are listed by deliveryId, across pages.
        let ids: Vec<&str> = out.iter().map(|r| r["deliveryId"].as_str().unwrap()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "deliveries not in deliveryId order: {ids:?}"
        );
        out
    }

    /// Records of a message by pushRegId.
    async fn records_by_installation(&self, message_id: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for r in self.records(message_id).await {
            let id = r["pushRegId"].as_str().unwrap().to_owned();
            assert!(out.insert(id, r).is_none(), "two records for one installation");
        }
        out
    }

    /// Registers a Firebase installation with `token` and extra fields.
    async fn fcm_install(&self, token: &str, extra: Value) -> String {
        let mut body = json!({"pushServiceType": "Firebase", "pushServiceToken": token, "os": "Android"});
        merge(&mut body, extra);
        self.ts.register(body).await
    }

    /// Registers an APNs installation with `token`.
    async fn apns_install(&self, token: &str) -> String {
        self.ts
            .register(json!({"pushServiceType": "APNS", "pushServiceToken": token, "os": "iOS"}))
            .await
    }

    /// Personalizes `id` as `ext`.
    async fn personalize(&self, id: &str, ext: &str) {
        self.ts.personalize_as(id, ext).await;
    }

    /// Patches the caller's own installation through the mobile API.
    async fn patch_installation(&self, id: &str, body: Value) {
        self.ts.call("PATCH", &ipath(id), Some(id), Some(&body)).await.ok();
    }

    /// Patches the user of installation `id` through the mobile API.
    async fn patch_user(&self, id: &str, body: Value) {
        self.ts.call("PATCH", &user_path(id), Some(id), Some(&body)).await.ok();
    }

    async fn finish(self) {
        self.ts.finish().await;
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        a.extend(b);
    }
}

fn error_paths(r: &Resp) -> BTreeSet<String> {
    r.json()["requestError"]["serviceException"]["validationErrors"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn status_name(element: &Value) -> &str {
    element["status"]["name"].as_str().unwrap()
}

fn message_id(element: &Value) -> String {
    element["messageId"].as_str().unwrap().to_owned()
}

/// The devices the FCM stand-in accepted pushes for, by token, with the IB JSON of each.
fn fcm_accepted(fcm: &FcmStandIn) -> Vec<(String, Value)> {
    fcm.recorded()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let ib: Value = serde_json::from_str(body["message"]["data"]["org_ib_d"].as_str().unwrap()).unwrap();
            (r.device_token, ib)
        })
        .collect()
}

// --- single destinations ------------------------------------------------------------------------

/// A person with three installations, one primary: each single destination type reaches the
/// person's deliverable installations of the sender application, `targetOnlyPrimaryDevices`
/// exactly the primary one; unknown destinations and persons without a deliverable installation
/// are rejected with their statuses; the pushes carry the delivery id and the content.
async fn single_destinations() {
    let f = fixture().await;
    let a = f.fcm_install("tok-a", json!({})).await;
    let b = f.fcm_install("tok-b", json!({})).await;
    let c = f.apns_install("c0ffee01").await;
    for id in [&a, &b, &c] {
        f.personalize(id, "cust-1").await;
    }
    f.patch_installation(&b, json!({"isPrimary": true})).await;
    f.patch_user(
        &a,
        json!({"phones": [{"number": "385911234567"}], "emails": [{"address": "Ana@Example.com"}]}),
    )
    .await;

    let all = f
        .send_one(json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-1"}))
        .await;
    assert_eq!(status_name(&all), "PENDING_ACCEPTED");
    assert_eq!(all["status"]["groupName"], "PENDING");
    assert_eq!(
        all["destination"],
        json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-1"})
    );
    let m = f.done(&message_id(&all)).await;
    assert_eq!(m["audience"], json!({"state": "RESOLVED", "installations": 3}));
    assert_eq!(m["deliveries"]["ACCEPTED"], 3);
    let records = f.records_by_installation(&message_id(&all)).await;
    assert_eq!(
        records.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([a.clone(), b.clone(), c.clone()])
    );
    for r in records.values() {
        assert_eq!(r["status"], "ACCEPTED");
        assert_eq!(r["attempts"], 1);
        assert_eq!(r["providerResponse"]["httpStatus"], 200);
        assert!(r.get("nextAttemptAt").is_none());
    }
    assert_eq!(records[&c]["provider"], "APNS");
    assert_eq!(records[&a]["provider"], "FCM");
    // The push carries the delivery id as its message id, and the content.
    let pushed = fcm_accepted(&f.fcm);
    let to_a = pushed.iter().find(|(t, _)| t == "tok-a").expect("a push to tok-a");
    assert_eq!(to_a.1["messageId"], records[&a]["deliveryId"]);
    assert_eq!(to_a.1["text"], "20% off today");
    assert_eq!(to_a.1["notification"]["title"], "Sale");
    assert_eq!(to_a.1["custom"], json!({"deeplink": "acme://sale"}));
    let apns = f.apns.recorded();
    assert_eq!(apns.len(), 1);
    assert_eq!(apns[0].device_token, "c0ffee01");
    assert_eq!(
        apns[0].headers["apns-id"].to_str().unwrap(),
        records[&c]["deliveryId"].as_str().unwrap()
    );

    // targetOnlyPrimaryDevices: exactly the primary installation.
    let primary = f
        .send_one(json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-1", "targetOnlyPrimaryDevices": true}))
        .await;
    f.done(&message_id(&primary)).await;
    let records = f.records_by_installation(&message_id(&primary)).await;
    assert_eq!(records.keys().cloned().collect::<Vec<_>>(), vec![b.clone()]);

    // Phone (normalised), email (case-insensitive), registration.
    for (dest, want) in [
        (json!({"type": "PHONE_NUMBER", "phoneNumber": "+385 91 123 4567"}), 3),
        (json!({"type": "EMAIL", "email": "ana@EXAMPLE.com"}), 3),
        (
            json!({"type": "REGISTRATION", "pushRegistrationId": c.to_uppercase()}),
            1,
        ),
    ] {
        let e = f.send_one(dest.clone()).await;
        assert_eq!(status_name(&e), "PENDING_ACCEPTED", "{dest}");
        let m = f.done(&message_id(&e)).await;
        assert_eq!(m["audience"]["installations"], want, "{dest}");
        assert_eq!(m["deliveries"]["ACCEPTED"], want, "{dest}");
    }

    // Rejections: nobody owns the key; an installation of another application; a person
    // without a deliverable installation.
    let other = f.ts.other_app().await;
    let elsewhere = common::people_helpers::register_in_with(
        &f.ts,
        &other,
        &json!({"pushServiceType": "Firebase", "pushServiceToken": "tok-other"}),
    )
    .await;
    let lonely = f.fcm_install("tok-lonely", json!({"regEnabled": false})).await;
    f.personalize(&lonely, "cust-2").await;
    let body = f.message(vec![
        json!({"type": "EXTERNAL_USER_ID", "externalUserId": "nobody"}),
        json!({"type": "REGISTRATION", "pushRegistrationId": elsewhere}),
        json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-2"}),
        json!({"type": "EMAIL", "email": "nobody@example.com"}),
    ]);
    let answer = f.send(&body).await.ok().json();
    let names: Vec<&str> = answer["messages"].as_array().unwrap().iter().map(status_name).collect();
    assert_eq!(
        names,
        [
            "REJECTED_DESTINATION_NOT_FOUND",
            "REJECTED_DESTINATION_NOT_FOUND",
            "REJECTED_NO_DELIVERABLE_INSTALLATION",
            "REJECTED_DESTINATION_NOT_FOUND"
        ]
    );
    assert_eq!(answer["messages"][0]["status"]["groupId"], 5);
    assert_eq!(answer["messages"][0]["status"]["id"], 51);
    assert_eq!(answer["messages"][2]["status"]["id"], 52);
    let rejected = f
        .get(&format!("/api/v1/messages/{}", message_id(&answer["messages"][2])))
        .await
        .ok()
        .json();
    assert_eq!(rejected["done"], true);
    assert_eq!(
        rejected["submissionStatus"]["name"],
        "REJECTED_NO_DELIVERABLE_INSTALLATION"
    );
    assert_eq!(rejected["audience"], json!({"state": "RESOLVED", "installations": 0}));
    assert_eq!(
        f.fcm
            .recorded()
            .iter()
            .filter(|r| r.device_token == "tok-lonely")
            .count(),
        0
    );
    f.finish().await;
}

/// Installations that are not deliverable (`regEnabled = false`, no token) get no record, and a
/// depersonalized installation is no longer reached through its old person's identity.
async fn undeliverable_and_depersonalized_installations_are_skipped() {
    let f = fixture().await;
    let live = f.fcm_install("tok-live", json!({})).await;
    let disabled = f.fcm_install("tok-disabled", json!({"regEnabled": false})).await;
    let tokenless =
        f.ts.register(json!({"pushServiceType": "Firebase", "os": "Android"}))
            .await;
    let leaving = f.fcm_install("tok-leaving", json!({})).await;
    for id in [&live, &disabled, &tokenless, &leaving] {
        f.personalize(id, "cust-9").await;
    }
    let r =
        f.ts.call(
            "POST",
            &format!("{}/depersonalize", ipath(&leaving)),
            Some(&leaving),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = f
        .send_one(json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-9"}))
        .await;
    let m = f.done(&message_id(&e)).await;
    assert_eq!(m["audience"]["installations"], 1);
    let records = f.records_by_installation(&message_id(&e)).await;
    assert_eq!(records.keys().cloned().collect::<Vec<_>>(), vec![live]);
    let tokens: BTreeSet<String> = f.fcm.recorded().into_iter().map(|r| r.device_token).collect();
    assert_eq!(tokens, BTreeSet::from(["tok-live".to_string()]));
    f.finish().await;
}

// --- MULTIPLE -------------------------------------------------------------------------------------

/// `MULTIPLE` destinations resolve in chunks (chunk size 3 here) to exactly the deliverable
/// installations whose (person, installation) pair matches: tags, a custom attribute, an
/// installation field, Infobip-style `$or`, a broadcast; primary only; each installation once.
async fn multiple_destinations_resolve_in_chunks() {
    let f = fixture_with(|s| s.delivery.chunk_size = 3).await;
    // (token, os, tags, level, regEnabled, primary)
    let people = [
        ("m-1", "iOS", vec!["vip"], 5, true, true),
        ("m-2", "Android", vec!["vip"], 1, true, false),
        ("m-3", "iOS", vec![], 7, true, false),
        ("m-4", "iOS", vec!["vip", "beta"], 2, false, false),
        ("m-5", "Android", vec!["beta"], 9, true, true),
        ("m-6", "iOS", vec!["vip"], 3, true, false),
        ("m-7", "Android", vec![], 0, true, false),
    ];
    let mut ids = BTreeMap::new();
    for (token, os, tags, level, enabled, primary) in &people {
        let id = f
            .fcm_install(token, json!({"os": os, "regEnabled": enabled, "isPrimary": primary}))
            .await;
        f.patch_user(&id, json!({"tags": tags, "customAttributes": {"level": level}}))
            .await;
        ids.insert(*token, id);
    }
    let expect = |tokens: &[&str]| -> BTreeSet<String> { tokens.iter().map(|t| ids[t].clone()).collect() };
    let cases = [
        (
            json!({"type": "MULTIPLE", "filter": {"tags": "vip", "installation.os": "iOS"}}),
            expect(&["m-1", "m-6"]),
        ),
        (
            json!({"type": "MULTIPLE", "filter": {"customAttributes.level": {"$gte": 5}}}),
            expect(&["m-1", "m-3", "m-5"]),
        ),
        (
            json!({"type": "MULTIPLE", "$or": [{"tags": "beta"}, {"level": {"$lt": 1}}]}),
            expect(&["m-5", "m-7"]),
        ),
        (
            json!({"type": "MULTIPLE", "targetOnlyPrimaryDevices": true}),
            expect(&["m-1", "m-5"]),
        ),
        (
            json!({"type": "MULTIPLE"}),
            expect(&["m-1", "m-2", "m-3", "m-5", "m-6", "m-7"]),
        ),
        (
            json!({"type": "MULTIPLE", "filter": {"tags": "nobody"}}),
            BTreeSet::new(),
        ),
    ];
    let answer = f
        .send(&f.message(cases.iter().map(|(d, _)| d.clone()).collect()))
        .await
        .ok()
        .json();
    for (i, (dest, want)) in cases.iter().enumerate() {
        let element = &answer["messages"][i];
        assert_eq!(status_name(element), "PENDING_ACCEPTED");
        assert_eq!(
            element["status"]["description"],
            "Message accepted, audience resolution queued"
        );
        assert_eq!(&element["destination"], dest, "echoed as received");
        let m = f.done(&message_id(element)).await;
        assert_eq!(m["audience"]["state"], "RESOLVED");
        assert_eq!(m["audience"]["installations"], want.len(), "{dest}");
        let got: BTreeSet<String> = f
            .records_by_installation(&message_id(element))
            .await
            .into_keys()
            .collect();
        assert_eq!(&got, want, "{dest}");
        assert_eq!(m["deliveries"]["ACCEPTED"], want.len(), "{dest}");
    }
    f.finish().await;
}

/// A `MULTIPLE` send over a few thousand installations (§6.1): the audience is walked in chunks
/// as indexed SQL and reaches exactly the installations whose pair matches and that are
/// deliverable, each once, with the audience count of the message equal to them.
async fn large_filtered_send_reaches_exactly_the_matching_installations() {
    use roster_model::{Installation, Person, PushServiceType, SystemData};
    const N: usize = 3000;
    let f = fixture_with(|s| s.delivery.chunk_size = 250).await;
    let account = f.ts.app.account_id;
    let now = common::now_ms();
    let mut persons = Vec::with_capacity(N);
    let mut insts = Vec::with_capacity(N);
    let mut want = BTreeSet::new();
    for i in 0..N {
        let mut p = Person::new_anonymous(account, now);
        if i % 3 == 0 {
            p.tags.insert("gold".into());
        }
        let android = i % 2 == 0;
        let app_version = if i % 5 == 0 { "3.1.0" } else { "2.9" };
        let deliverable = i % 10 != 7;
        let inst = Installation {
            account_id: account,
            application_id: f.ts.app.id,
            push_reg_id: uuid::Uuid::new_v4().to_string(),
            person_id: p.id,
            push_service_type: Some(PushServiceType::Firebase),
            push_service_token: Some(format!("bulk-{i}")),
            reg_enabled: deliverable,
            is_primary: false,
            application_user_id: None,
            custom_attributes: Default::default(),
            system: SystemData {
                os: Some(if android { "Android" } else { "iOS" }.into()),
                app_version: Some(app_version.into()),
                ..SystemData::default()
            },
            created_at: now,
            updated_at: now,
            last_seen_at: now,
            token_cleared_at: None,
            token_cleared_reason: None,
        };
        // The filter below, evaluated by hand.
        if android && (i % 3 == 0 || i % 5 == 0) && deliverable {
            want.insert(inst.push_reg_id.clone());
        }
        persons.push(p);
        insts.push(inst);
    }
    let mut tx = f.ts.store.begin().await.unwrap();
    tx.insert_persons(&persons).await.unwrap();
    tx.insert_installations(&insts).await.unwrap();
    tx.commit().await.unwrap();
    assert!(want.len() > 250 * 2, "several chunks: {}", want.len());

    let filter = json!({"$or": [{"tags": "gold"}, {"installation.appVersion": {"$gte": "3.0"}}],
        "installation.os": "Android"});
    let element = f.send_one(json!({"type": "MULTIPLE", "filter": filter})).await;
    let id = message_id(&element);
    let m = f.done(&id).await;
    assert_eq!(m["audience"]["state"], "RESOLVED");
    assert_eq!(m["audience"]["installations"], want.len());
    assert_eq!(m["deliveries"]["ACCEPTED"], want.len(), "{m}");
    let mut got = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/messages/{id}/deliveries?limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = f.get(&path).await.ok().json();
        for r in page["items"].as_array().unwrap() {
            assert!(
                got.insert(r["pushRegId"].as_str().unwrap().to_owned()),
                "one record per installation"
            );
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(got, want, "exactly the matching, deliverable installations");
    f.finish().await;
}

/// Deliveries of an application deleted while the workers hold them (management-api.md §7.1: the
/// deletion takes the application's messages and delivery records with it): a record waiting for
/// its retry is never attempted again, and the workers carry on with other applications'
/// deliveries.
async fn deliveries_of_a_deleted_application() {
    let f = fixture().await;
    let doomed = f.ts.other_app().await;
    let providers = json!({"fcm": f.fcm.application_settings()});
    let path = format!("/api/v1/applications/{}", doomed.id);
    f.request(
        "PATCH",
        &path,
        &f.admin,
        &[],
        Some(json!({"providers": providers}).to_string().into_bytes()),
    )
    .await
    .ok();
    let body = json!({"pushServiceType": "Firebase", "pushServiceToken": "doomed-1", "os": "Android"});
    let id = common::people_helpers::register_in_with(&f.ts, &doomed, &body).await;
    // The provider answers 429 with Retry-After 2 s: the record waits for its second attempt.
    f.fcm
        .always("doomed-1", FcmAnswer::QuotaExceeded { retry_after: Some(2) });
    let sent = f
        .send(
            &json!({"messages": [{"sender": doomed.application_code, "content": {"text": "hi"},
            "destinations": [{"type": "REGISTRATION", "pushRegistrationId": id}]}]}),
        )
        .await
        .ok()
        .json();
    let message = message_id(&sent["messages"][0]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.fcm.stats().count(429) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no first attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deleted = f.request("DELETE", &path, &f.admin, &[], None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let after_deletion = f.fcm.stats().count(429);
    // Past the retry time: no further attempt, the message and its records are gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        f.fcm.stats().count(429),
        after_deletion,
        "no retry of a deleted application's delivery"
    );
    f.get(&format!("/api/v1/messages/{message}"))
        .await
        .assert_error(404, "NOT_FOUND");
    let mut tx = f.ts.store.begin_read().await.unwrap();
    let depth = tx.queue_depth(common::now_ms()).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(depth, Default::default(), "nothing left in the queue");

    // The workers still deliver the test application's pushes.
    let alive = f.fcm_install("alive-1", json!({})).await;
    let element = f
        .send_one(json!({"type": "REGISTRATION", "pushRegistrationId": alive}))
        .await;
    let m = f.done(&message_id(&element)).await;
    assert_eq!(m["deliveries"]["ACCEPTED"], 1, "{m}");
    f.finish().await;
}

/// A claim that outlives its application: the worker that claimed a record before the deletion
/// and answers after it (provider call in flight, or no call because it read no application)
/// records nothing and gets no error; the record is gone with the message.
async fn a_claim_outliving_its_application() {
    use roster_core::push::AttemptOutcome;
    use roster_push::{Outcome, ProviderResponse, SendReport};
    // No workers: the test is the worker.
    let ts = TestServer::start_with(|s| s.delivery.enabled = false).await;
    let key = api_key(&ts, &["push:send", "admin"]).await;
    let doomed = ts.other_app().await;
    let body = json!({"pushServiceType": "Firebase", "pushServiceToken": "doomed-2"});
    let ids = [
        common::people_helpers::register_in_with(&ts, &doomed, &body).await,
        common::people_helpers::register_in_with(
            &ts,
            &doomed,
            &json!({"pushServiceType": "Firebase", "pushServiceToken": "doomed-3"}),
        )
        .await,
    ];
    let auth = format!("App {key}");
    let request = json!({"messages": [{"sender": doomed.application_code, "content": {"text": "hi"},
        "destinations": ids.iter().map(|id| json!({"type": "REGISTRATION", "pushRegistrationId": id})).collect::<Vec<_>>()}]});
    ts.call_with(
        "POST",
        "/push/3/messages",
        &[("authorization", &auth)],
        None,
        Some(request.to_string().into_bytes()),
    )
    .await
    .ok();
    let core = ts.core();
    let claimed = core.claim_deliveries(Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.application.is_some() && c.message.is_some()));
    let deleted = ts
        .call_with(
            "DELETE",
            &format!("/api/v1/applications/{}", doomed.id),
            &[("authorization", &auth)],
            None,
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let accepted = AttemptOutcome::Sent {
        report: SendReport {
            outcome: Outcome::Accepted,
            response: ProviderResponse {
                http_status: Some(200),
                reason: "OK".into(),
            },
            credential_refreshed: false,
        },
        token: "doomed-2".into(),
    };
    assert_eq!(core.finish_delivery(&claimed[0], &accepted).await.unwrap(), None);
    let not_sent = AttemptOutcome::NotSent {
        reason: "APPLICATION_DELETED".into(),
    };
    assert_eq!(core.finish_delivery(&claimed[1], &not_sent).await.unwrap(), None);
    // Nothing to claim again, nothing left.
    assert!(
        core.claim_deliveries(Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let s = ts.snapshot().await;
    assert!(s.installations.iter().all(|i| i.application_id != doomed.id));
    ts.finish().await;
}

/// A saved segment as the audience (§5.3): its filter, in conjunction with the destination's
/// own; an unknown segment and one that is no longer valid are `400` at `segmentId`.
async fn segments_as_destinations() {
    let f = fixture().await;
    let mut ids = BTreeMap::new();
    for (token, tags, os) in [
        ("s-1", vec!["beta"], "iOS"),
        ("s-2", vec!["beta"], "Android"),
        ("s-3", vec![], "iOS"),
    ] {
        let id = f.fcm_install(token, json!({"os": os})).await;
        f.patch_user(&id, json!({"tags": tags})).await;
        ids.insert(token, id);
    }
    let now = common::now_ms();
    let segment = |name: &str, valid: bool| roster_store::audience::Segment {
        account_id: f.ts.app.account_id,
        id: uuid::Uuid::new_v4(),
        name: name.into(),
        description: None,
        filter: json!({"tags": "beta"}),
        valid,
        created_at: now,
        updated_at: now,
    };
    let (beta, broken) = (segment("beta", true), segment("broken", false));
    let mut tx = f.ts.store.begin().await.unwrap();
    tx.insert_segment(&beta).await.unwrap();
    tx.insert_segment(&broken).await.unwrap();
    tx.commit().await.unwrap();

    let answer = f
        .send(&f.message(vec![
            json!({"type": "MULTIPLE", "segmentId": beta.id.to_string()}),
            json!({"type": "MULTIPLE", "segmentId": beta.id.to_string(), "filter": {"installation.os": "iOS"}}),
        ]))
        .await
        .ok()
        .json();
    for (i, want) in [vec!["s-1", "s-2"], vec!["s-1"]].into_iter().enumerate() {
        let mid = message_id(&answer["messages"][i]);
        f.done(&mid).await;
        let got: BTreeSet<String> = f.records_by_installation(&mid).await.into_keys().collect();
        let want: BTreeSet<String> = want.iter().map(|t| ids[t].clone()).collect();
        assert_eq!(got, want);
    }
    let r = f
        .send(&f.message(vec![
            json!({"type": "MULTIPLE", "segmentId": broken.id.to_string()}),
            json!({"type": "MULTIPLE", "segmentId": uuid::Uuid::new_v4().to_string()}),
        ]))
        .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(
        error_paths(&r),
        BTreeSet::from([
            "messages[0].destinations[0].segmentId".to_string(),
            "messages[0].destinations[1].segmentId".to_string()
        ])
    );
    f.finish().await;
}

// --- provider outcomes ----------------------------------------------------------------------------

/// APNs answers (§6.3): 200, 400 BadDeviceToken (token kept), 410 Unregistered (token cleared
/// from the installation), 429 with Retry-After then 200, 500 twice then 200, 403
/// ExpiredProviderToken (refreshed, not an attempt), and 429 whose Retry-After passes the end of
/// validity (EXPIRED).
async fn apns_outcomes() {
    let f = fixture().await;
    let tokens = ["a0", "a1", "a2", "a3", "a4", "a5", "a6"];
    let mut ids = Vec::new();
    for t in tokens {
        ids.push(f.apns_install(t).await);
    }
    f.apns.script("a1", [ApnsAnswer::BadDeviceToken]);
    f.apns.script("a2", [ApnsAnswer::Unregistered]);
    f.apns
        .script("a3", [ApnsAnswer::TooManyRequests { retry_after: Some(1) }]);
    f.apns
        .script("a4", [ApnsAnswer::InternalServerError, ApnsAnswer::ServiceUnavailable]);
    f.apns.script("a5", [ApnsAnswer::ExpiredProviderToken]);
    f.apns.script(
        "a6",
        [ApnsAnswer::TooManyRequests {
            retry_after: Some(3600),
        }],
    );
    let mut body = f.message(
        ids.iter()
            .map(|id| json!({"type": "REGISTRATION", "pushRegistrationId": id}))
            .collect(),
    );
    body["messages"][0]["options"]["validityPeriod"] = json!({"amount": 10, "timeUnit": "MINUTES"});
    let answer = f.send(&body).await.ok().json();
    let mut results = Vec::new();
    for e in answer["messages"].as_array().unwrap() {
        f.done(&message_id(e)).await;
        let records = f.records(&message_id(e)).await;
        assert_eq!(records.len(), 1);
        results.push(records[0].clone());
    }
    let got: Vec<(&str, i64, Value, Value)> = results
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap(),
                r["attempts"].as_i64().unwrap(),
                r["providerResponse"]["httpStatus"].clone(),
                r["providerResponse"]["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ACCEPTED", 1, json!(200), json!("OK")),
            ("REJECTED", 1, json!(400), json!("BadDeviceToken")),
            ("UNREGISTERED", 1, json!(410), json!("Unregistered")),
            ("ACCEPTED", 2, json!(200), json!("OK")),
            ("ACCEPTED", 3, json!(200), json!("OK")),
            ("ACCEPTED", 1, json!(200), json!("OK")),
            ("EXPIRED", 1, json!(429), json!("TooManyRequests")),
        ]
    );
    // Retry-After was honoured: the second attempt came at least a second after the first.
    let first = time::OffsetDateTime::parse(
        results[3]["createdAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let last = time::OffsetDateTime::parse(
        results[3]["lastAttemptAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(last - first >= time::Duration::seconds(1), "{first} -> {last}");
    // The token of the unregistered device is gone (compare-and-clear); the rejected one stays.
    let snapshot = f.ts.snapshot().await;
    let inst = |id: &str| {
        snapshot
            .installations
            .iter()
            .find(|i| i.push_reg_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(inst(&ids[2]).push_service_token, None);
    assert_eq!(
        inst(&ids[2]).token_cleared_reason,
        Some(roster_model::TokenClearedReason::Unregistered)
    );
    assert_eq!(inst(&ids[1]).push_service_token.as_deref(), Some("a1"));
    // A refreshed provider token: the stand-in verified two distinct ones.
    assert!(f.apns.stats().provider_tokens >= 2);
    assert_eq!(f.app_resource().await["providers"]["apns"]["status"], "OK");
    // Every recorded attempt is counted on /metrics by provider and resulting status (QUEUED: a
    // retry was scheduled).
    let metrics = f.ts.call_with("GET", "/metrics", &[], None, None).await.ok().text();
    for (status, n) in [
        ("ACCEPTED", 4),
        ("REJECTED", 1),
        ("UNREGISTERED", 1),
        ("EXPIRED", 1),
        ("QUEUED", 3),
    ] {
        let line = format!(r#"roster_delivery_attempts_total{{provider="APNS",status="{status}"}} {n}"#);
        assert!(metrics.lines().any(|l| l == line), "{line} missing in\n{metrics}");
    }
    f.finish().await;
}

/// FCM answers (§6.3): 200, 400 INVALID_ARGUMENT, 404 UNREGISTERED (token cleared), 429 then
/// 200, 500 then 200, 401 for an expired access token (refreshed, one attempt), and a credential
/// failure (401 THIRD_PARTY_AUTH_ERROR): FAILED with the application's provider status ERROR
/// and lastError, back to OK with the next accepted push.
async fn fcm_outcomes_and_provider_status() {
    let f = fixture().await;
    let tokens = ["f0", "f1", "f2", "f3", "f4", "f5"];
    let mut ids = Vec::new();
    for t in tokens {
        ids.push(f.fcm_install(t, json!({})).await);
    }
    f.fcm.script("f1", [FcmAnswer::InvalidArgument]);
    f.fcm.script("f2", [FcmAnswer::Unregistered]);
    f.fcm.script("f3", [FcmAnswer::QuotaExceeded { retry_after: Some(1) }]);
    f.fcm.script("f4", [FcmAnswer::Internal]);
    f.fcm.script("f5", [FcmAnswer::ExpiredToken]);
    let answer = f
        .send(
            &f.message(
                ids.iter()
                    .map(|id| json!({"type": "REGISTRATION", "pushRegistrationId": id}))
                    .collect(),
            ),
        )
        .await
        .ok()
        .json();
    let mut got = Vec::new();
    for e in answer["messages"].as_array().unwrap() {
        f.done(&message_id(e)).await;
        let r = f.records(&message_id(e)).await.remove(0);
        got.push((
            r["status"].as_str().unwrap().to_owned(),
            r["attempts"].as_i64().unwrap(),
        ));
    }
    let want: Vec<(String, i64)> = [
        ("ACCEPTED", 1),
        ("REJECTED", 1),
        ("UNREGISTERED", 1),
        ("ACCEPTED", 2),
        ("ACCEPTED", 2),
        ("ACCEPTED", 1),
    ]
    .iter()
    .map(|(s, n)| (s.to_string(), *n))
    .collect();
    assert_eq!(got, want);
    let snapshot = f.ts.snapshot().await;
    let unregistered = snapshot.installations.iter().find(|i| i.push_reg_id == ids[2]).unwrap();
    assert_eq!(unregistered.push_service_token, None);

    // A credential failure marks the application's FCM settings; the next accepted push clears it.
    f.fcm.script("f0", [FcmAnswer::ThirdPartyAuthError]);
    let failed = f
        .send_one(json!({"type": "REGISTRATION", "pushRegistrationId": ids[0]}))
        .await;
    f.done(&message_id(&failed)).await;
    let r = f.records(&message_id(&failed)).await.remove(0);
    assert_eq!(r["status"], "FAILED");
    assert_eq!(r["providerResponse"]["httpStatus"], 401);
    let fcm = f.app_resource().await["providers"]["fcm"].clone();
    assert_eq!(fcm["status"], "ERROR");
    assert!(
        fcm["lastError"].as_str().unwrap().contains("THIRD_PARTY_AUTH_ERROR"),
        "{fcm}"
    );
    let ok = f
        .send_one(json!({"type": "REGISTRATION", "pushRegistrationId": ids[0]}))
        .await;
    f.done(&message_id(&ok)).await;
    let fcm = f.app_resource().await["providers"]["fcm"].clone();
    assert_eq!(fcm["status"], "OK");
    assert!(fcm.get("lastError").is_none(), "{fcm}");
    f.finish().await;
}

/// HMS installations are delivered through the HMS client: accepted, and a token listed as
/// illegal is unregistered (token cleared).
async fn hms_delivery() {
    let f = fixture().await;
    let hms = HmsStandIn::start(HmsStandInConfig::test()).await.unwrap();
    f.patch_app(json!({"providers": {"hms": hms.application_settings()}}))
        .await;
    let ok =
        f.ts.register(json!({"pushServiceType": "HMS", "pushServiceToken": "h-ok"}))
            .await;
    let gone =
        f.ts.register(json!({"pushServiceType": "HMS", "pushServiceToken": "h-gone"}))
            .await;
    hms.script("h-gone", [HmsAnswer::IllegalToken]);
    let answer = f
        .send(&f.message(vec![
            json!({"type": "REGISTRATION", "pushRegistrationId": ok}),
            json!({"type": "REGISTRATION", "pushRegistrationId": gone}),
        ]))
        .await
        .ok()
        .json();
    let mut statuses = Vec::new();
    for e in answer["messages"].as_array().unwrap() {
        f.done(&message_id(e)).await;
        let r = f.records(&message_id(e)).await.remove(0);
        assert_eq!(r["provider"], "HMS");
        statuses.push(r["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["ACCEPTED", "UNREGISTERED"]);
    let snapshot = f.ts.snapshot().await;
    let cleared = snapshot.installations.iter().find(|i| i.push_reg_id == gone).unwrap();
    assert_eq!(cleared.push_service_token, None);
    assert_eq!(hms.recorded().iter().filter(|r| r.status == 200).count(), 2);
    f.finish().await;
}

/// Provider clients are pooled per application and rebuilt when its provider settings change:
/// after the FCM settings point at another endpoint, the next push goes there.
async fn clients_follow_provider_settings() {
    let f = fixture().await;
    let id = f.fcm_install("p-1", json!({})).await;
    let first = f
        .send_one(json!({"type": "REGISTRATION", "pushRegistrationId": id}))
        .await;
    f.done(&message_id(&first)).await;
    let moved = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    f.patch_app(json!({"providers": {"fcm": moved.application_settings()}}))
        .await;
    let second = f
        .send_one(json!({"type": "REGISTRATION", "pushRegistrationId": id}))
        .await;
    let m = f.done(&message_id(&second)).await;
    assert_eq!(m["deliveries"]["ACCEPTED"], 1);
    assert_eq!((f.fcm.stats().sends, moved.stats().sends), (1, 1));
    f.finish().await;
}

/// An installation whose provider has no credentials in the application: FAILED with reason
/// PROVIDER_NOT_CONFIGURED and no provider call.
async fn provider_not_configured() {
    let f = fixture().await;
    f.patch_app(json!({"providers": {"apns": null}})).await;
    let id = f.apns_install("ab12").await;
    let e = f
        .send_one(json!({"type": "REGISTRATION", "pushRegistrationId": id}))
        .await;
    assert_eq!(status_name(&e), "PENDING_ACCEPTED");
    f.done(&message_id(&e)).await;
    let r = f.records(&message_id(&e)).await.remove(0);
    assert_eq!(r["status"], "FAILED");
    assert_eq!(r["providerResponse"], json!({"reason": "PROVIDER_NOT_CONFIGURED"}));
    assert_eq!(f.apns.stats().requests, 0);
    assert_eq!(
        f.app_resource().await["providers"]["apns"],
        json!({"configured": false})
    );
    f.finish().await;
}

// --- the request ------------------------------------------------------------------------------------

/// Validation (§5.1–§5.5): every invalid field at its path, nothing created; the scope, the body
/// limit, taken bulk and message ids, unknown senders and segments, payload size.
async fn invalid_requests_change_nothing() {
    let f = fixture().await;
    let id = f.fcm_install("v-1", json!({})).await;
    f.personalize(&id, "cust-v").await;
    let code = f.ts.app.application_code.clone();
    let r = f
        .send(&json!({"messages": [{
            "sender": code,
            "destinations": [
                {"type": "PHONE_NUMBER", "phoneNumber": "12"},
                {"type": "MULTIPLE", "filter": {"nope": 1}},
                {"type": "MULTIPLE", "segmentId": uuid::Uuid::new_v4().to_string()},
                {"type": "EXTERNAL_USER_ID", "externalUserId": "cust-v"}],
            "content": {"type": "IMAGE", "text": "x"},
            "options": {"validityPeriod": {"amount": 1, "timeUnit": "WEEKS"}}},
            {"sender": "0".repeat(64), "destinations": [{"type": "EXTERNAL_USER_ID", "externalUserId": "cust-v"}],
             "content": {"text": "y".repeat(2000), "title": "t".repeat(256)},
             "options": {"customPayload": {"k": "z".repeat(2000)}}}],
            "options": {"schedule": {"sendingSpeedLimit": {"amount": 1}}}}))
        .await;
    r.assert_error(400, "BAD_REQUEST");
    let paths = error_paths(&r);
    for p in [
        "messages[0].destinations[0].phoneNumber",
        "messages[0].destinations[1].filter.nope",
        "messages[0].destinations[2].segmentId",
        "messages[0].content.url",
        "messages[0].options.validityPeriod.timeUnit",
        "messages[1].sender",
        "messages[1].content",
        "options.schedule.sendingSpeedLimit",
    ] {
        assert!(paths.contains(p), "{p} missing in {paths:?}");
    }
    // Nothing was created: the customer's device got nothing, and no message exists.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.fcm.stats().sends, 0);

    // Scope, malformed JSON, body limit.
    let reader = api_key(&f.ts, &["people:read"]).await;
    let body = f.message(vec![json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-v"})]);
    f.request(
        "POST",
        "/push/3/messages",
        &reader,
        &[],
        Some(body.to_string().into_bytes()),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    f.request("POST", "/push/3/messages", &f.key, &[], Some(b"{".to_vec()))
        .await
        .assert_error(400, "BAD_REQUEST");
    f.request(
        "POST",
        "/push/3/messages",
        &f.key,
        &[],
        Some(vec![b' '; 8 * 1024 * 1024 + 1]),
    )
    .await
    .assert_error(413, "REQUEST_TOO_LARGE");
    f.request("GET", "/push/3/messages", &f.key, &[], None)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");

    // A disabled sender.
    let other = f.ts.other_app().await;
    let path = format!("/api/v1/applications/{}", other.id);
    f.request("PATCH", &path, &f.admin, &[], Some(br#"{"enabled": false}"#.to_vec()))
        .await
        .ok();
    let mut disabled = body.clone();
    disabled["messages"][0]["sender"] = json!(other.id.to_string());
    let r = f.send(&disabled).await;
    r.assert_error(400, "BAD_REQUEST");
    assert!(error_paths(&r).contains("messages[0].sender"));

    // bulkId and messageId are unique per account: 409, and the second send creates nothing.
    let mut first = f.message(vec![
        json!({"type": "EXTERNAL_USER_ID", "externalUserId": "cust-v", "messageId": "m-once"}),
    ]);
    first["options"] = json!({"schedule": {"bulkId": "bulk-once"}});
    let ok = f.send(&first).await.ok().json();
    assert_eq!(ok["bulkId"], "bulk-once");
    assert_eq!(ok["messages"][0]["messageId"], "m-once");
    f.done("m-once").await;
    let mut again = first.clone();
    again["messages"][0]["destinations"][0]["messageId"] = json!("m-twice");
    f.send(&again).await.assert_error(409, "ALREADY_EXISTS");
    let mut again = first.clone();
    again["options"] = json!({"schedule": {"bulkId": "bulk-twice"}});
    f.send(&again).await.assert_error(409, "ALREADY_EXISTS");
    f.get("/api/v1/messages/m-twice").await.assert_error(404, "NOT_FOUND");
    f.get("/api/v1/messages?bulkId=bulk-twice")
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(f.fcm.stats().sends, 1, "only the first send was delivered");
    f.finish().await;
}

/// Idempotency-Key (§3.3): a replay answers the stored answer with `Idempotent-Replayed: true`
/// and sends nothing again; another body under the key is 422; a key still held by a running
/// request is 409 with `Retry-After: 1`; a refusal is replayed too.
async fn idempotency_keys() {
    let f = fixture().await;
    let id = f.fcm_install("i-1", json!({})).await;
    let body = f.message(vec![json!({"type": "REGISTRATION", "pushRegistrationId": id})]);
    let bytes = body.to_string().into_bytes();
    let headers = [("idempotency-key", "send-1")];
    let first = f
        .request("POST", "/push/3/messages", &f.key, &headers, Some(bytes.clone()))
        .await
        .ok();
    assert!(first.headers.get("idempotent-replayed").is_none());
    f.done(&message_id(&first.json()["messages"][0])).await;
    let replay = f
        .request("POST", "/push/3/messages", &f.key, &headers, Some(bytes.clone()))
        .await
        .ok();
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, first.body, "the stored answer, byte for byte");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.fcm.stats().sends, 1, "a replay sends nothing");

    // Same key, another request (the body bytes differ).
    let mut other = bytes.clone();
    other.push(b' ');
    f.request("POST", "/push/3/messages", &f.key, &headers, Some(other))
        .await
        .assert_error(422, "IDEMPOTENCY_KEY_REUSED");

    // A key held by a request that is still running.
    let print = roster_core::idempotency::fingerprint("POST", "/push/3/messages", "", &bytes);
    let held =
        f.ts.core()
            .idempotency_start(f.ts.app.account_id, "send-2", &print, 24)
            .await
            .unwrap();
    assert!(matches!(held, roster_core::idempotency::IdempotencyStart::Proceed(_)));
    let busy = f
        .request(
            "POST",
            "/push/3/messages",
            &f.key,
            &[("idempotency-key", "send-2")],
            Some(bytes.clone()),
        )
        .await;
    busy.assert_error(409, "IDEMPOTENCY_KEY_IN_PROGRESS");
    assert_eq!(busy.headers["retry-after"], "1");

    // A refusal is stored and replayed; an invalid key is refused.
    let bad = br#"{"messages": []}"#.to_vec();
    let refused = f
        .request(
            "POST",
            "/push/3/messages",
            &f.key,
            &[("idempotency-key", "send-3")],
            Some(bad.clone()),
        )
        .await;
    refused.assert_error(400, "BAD_REQUEST");
    let again = f
        .request(
            "POST",
            "/push/3/messages",
            &f.key,
            &[("idempotency-key", "send-3")],
            Some(bad),
        )
        .await;
    again.assert_error(400, "BAD_REQUEST");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    f.request(
        "POST",
        "/push/3/messages",
        &f.key,
        &[("idempotency-key", "")],
        Some(bytes),
    )
    .await
    .assert_error(400, "BAD_REQUEST");
    f.finish().await;
}

// --- crash and restart ------------------------------------------------------------------------------

/// A send resumes across a server restart with nothing skipped and no installation getting two
/// records: the first server resolves part of a MULTIPLE audience and claims part of its records
/// (then is stopped; its claims were never finished, as if its workers had died); a new server on
/// the same store finishes the audience at the job's cursor and retakes the abandoned claims once
/// their lease ends.
async fn restart_resumes_a_send() {
    let f = fixture_with(|s| {
        s.delivery.enabled = false;
        s.delivery.chunk_size = 2;
    })
    .await;
    let mut ids = BTreeSet::new();
    for i in 0..9 {
        ids.insert(f.fcm_install(&format!("r-{i}"), json!({})).await);
    }
    let e = f.send_one(json!({"type": "MULTIPLE"})).await;
    let mid = message_id(&e);
    // Two chunks by the first process, and a claim of what they queued that never finishes.
    let core = f.ts.core().clone();
    assert!(core.resolve_audience_chunk(2).await.unwrap());
    assert!(core.resolve_audience_chunk(2).await.unwrap());
    let abandoned = core.claim_deliveries(Duration::from_millis(500), 3).await.unwrap();
    assert_eq!(abandoned.len(), 3);
    let m = f.get(&format!("/api/v1/messages/{mid}")).await.ok().json();
    assert_eq!(m["audience"], json!({"state": "RESOLVING", "installations": 4}));
    assert_eq!(m["done"], false);

    // Stop it and start another process on the same store, with workers this time.
    let Fixture {
        mut ts,
        key,
        admin,
        apns,
        fcm,
    } = f;
    let mut settings = Settings {
        data_dir: std::env::temp_dir(),
        ..Settings::default()
    };
    settings.http.listen = "127.0.0.1:0".into();
    settings.mobile.rate = MobileRateSettings::disabled();
    fast(&mut settings);
    settings.delivery.chunk_size = 2;
    let second = RunningServer::start(&settings, ts.store.clone()).await.unwrap();
    let first = std::mem::replace(&mut ts.server, second);
    first.stop().await.unwrap();
    let f = Fixture {
        ts,
        key,
        admin,
        apns,
        fcm,
    };

    let m = f.done(&mid).await;
    assert_eq!(m["audience"], json!({"state": "RESOLVED", "installations": 9}));
    assert_eq!(m["deliveries"]["ACCEPTED"], 9);
    let records = f.records_by_installation(&mid).await;
    assert_eq!(records.keys().cloned().collect::<BTreeSet<_>>(), ids);
    // Every device got the push exactly once (nobody finished the abandoned claims before).
    let mut per_token: BTreeMap<String, usize> = BTreeMap::new();
    for (token, _) in fcm_accepted(&f.fcm) {
        *per_token.entry(token).or_default() += 1;
    }
    assert_eq!(per_token.len(), 9);
    assert!(per_token.values().all(|n| *n == 1), "{per_token:?}");
    f.finish().await;
}

// --- device reports and reading results ---------------------------------------------------------------

/// Device reports (§6.6) on the message stubs set deliveredAt and seenAt of the caller's
/// deliveries only, the first report winning, without changing the status; the counts show them.
async fn device_reports() {
    let f = fixture().await;
    let a = f.fcm_install("d-a", json!({})).await;
    let b = f.fcm_install("d-b", json!({})).await;
    let e = f.send_one(json!({"type": "MULTIPLE"})).await;
    let mid = message_id(&e);
    f.done(&mid).await;
    let records = f.records_by_installation(&mid).await;
    let (da, db) = (
        records[&a]["deliveryId"].as_str().unwrap().to_owned(),
        records[&b]["deliveryId"].as_str().unwrap().to_owned(),
    );
    // b reports a's delivery: ignored. a reports its own (Android sync).
    let r =
        f.ts.call(
            "POST",
            "/mobile/5/messages",
            Some(&b),
            Some(&json!({"mIDs": [], "drIDs": [da]})),
        )
        .await
        .ok();
    assert_eq!(r.json(), json!({"payloads": []}));
    let r0 = f.records_by_installation(&mid).await;
    assert!(r0[&a].get("deliveredAt").is_none());
    f.ts.call(
        "POST",
        "/mobile/5/messages",
        Some(&a),
        Some(&json!({"mIDs": [da], "drIDs": ["junk"]})),
    )
    .await
    .ok();
    let r1 = f.records_by_installation(&mid).await;
    let delivered = r1[&a]["deliveredAt"].clone();
    assert!(delivered.is_string());
    assert!(r1[&a].get("seenAt").is_none());
    // Seen later (iOS seen route), then delivered again: the first report of each wins.
    tokio::time::sleep(Duration::from_millis(10)).await;
    f.ts.call(
        "POST",
        "/mobile/2/messages/seen",
        Some(&a),
        Some(&json!({"messages": [{"messageId": da, "timestampDelta": 5}]})),
    )
    .await
    .ok();
    f.ts.call(
        "POST",
        "/mobile/1/messages/deliveryreport",
        Some(&a),
        Some(&json!({"dlrIds": [da]})),
    )
    .await
    .ok();
    // b's first report is a seen report: it sets both.
    f.ts.call(
        "POST",
        "/mobile/1/messages/seen",
        Some(&b),
        Some(&json!({"messages": [{"messageId": db}]})),
    )
    .await
    .ok();
    let r2 = f.records_by_installation(&mid).await;
    assert_eq!(r2[&a]["deliveredAt"], delivered, "first delivered report wins");
    assert!(r2[&a]["seenAt"].is_string());
    assert!(r2[&b]["seenAt"].is_string() && r2[&b]["deliveredAt"] == r2[&b]["seenAt"]);
    assert!(r2.values().all(|r| r["status"] == "ACCEPTED"));
    let m = f.get(&format!("/api/v1/messages/{mid}")).await.ok().json();
    assert_eq!(m["reported"], json!({"delivered": 2, "seen": 2}));
    // Unknown or missing callers never fail the stub.
    f.ts.call("POST", "/mobile/5/messages", None, Some(&json!({"drIDs": [da]})))
        .await
        .ok();
    f.ts.call(
        "POST",
        "/mobile/1/messages/deliveryreport",
        Some("not-an-installation"),
        Some(&json!({"dlrIds": [da]})),
    )
    .await
    .ok();
    f.finish().await;
}

/// Reading results (§6.7): the message resource, a bulk's messages in request order (paged,
/// cursor bound to its query), deliveries by status, 404 for other accounts' and unknown ids,
/// and the scope.
async fn reading_results() {
    let f = fixture().await;
    let a = f.fcm_install("g-a", json!({})).await;
    let b = f.fcm_install("g-b", json!({})).await;
    f.fcm.script("g-b", [FcmAnswer::InvalidArgument]);
    let mut body = f.message(vec![
        json!({"type": "REGISTRATION", "pushRegistrationId": a, "messageId": "g-1"}),
        json!({"type": "MULTIPLE", "messageId": "g-2"}),
        json!({"type": "EXTERNAL_USER_ID", "externalUserId": "nobody", "messageId": "g-3"}),
    ]);
    body["options"] = json!({"schedule": {"bulkId": "bulk-g"}});
    f.send(&body).await.ok();
    let m = f.done("g-2").await;
    assert_eq!(m["messageId"], "g-2");
    assert_eq!(m["bulkId"], "bulk-g");
    assert_eq!(m["applicationCode"], f.ts.app.application_code);
    assert_eq!(
        m["content"],
        json!({"type": "TEXT", "title": "Sale", "text": "20% off today"})
    );
    assert_eq!(m["destination"], json!({"type": "MULTIPLE", "messageId": "g-2"}));
    assert_eq!(
        m["submissionStatus"],
        json!({"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED"})
    );
    assert_eq!(
        m["deliveries"],
        json!({"QUEUED": 0, "ACCEPTED": 1, "REJECTED": 1, "UNREGISTERED": 0, "EXPIRED": 0, "FAILED": 0})
    );
    assert_eq!(m["reported"], json!({"delivered": 0, "seen": 0}));
    for field in ["createdAt", "expiresAt"] {
        assert!(m[field].as_str().unwrap().ends_with('Z'), "{field}");
    }
    // The bulk, one per page, in request order.
    let mut seen = Vec::new();
    let mut path = "/api/v1/messages?bulkId=bulk-g&limit=1".to_string();
    loop {
        let page = f.get(&path).await.ok().json();
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        seen.push(items[0]["messageId"].as_str().unwrap().to_owned());
        match page["nextCursor"].as_str() {
            Some(c) => {
                // A cursor is bound to its query.
                f.get(&format!("/api/v1/messages?bulkId=other&cursor={c}"))
                    .await
                    .assert_error(400, "BAD_REQUEST");
                path = format!("/api/v1/messages?bulkId=bulk-g&limit=1&cursor={c}");
            }
            None => break,
        }
    }
    assert_eq!(seen, ["g-1", "g-2", "g-3"]);
    // Deliveries by status.
    let rejected = f
        .get("/api/v1/messages/g-2/deliveries?status=REJECTED")
        .await
        .ok()
        .json();
    let items = rejected["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["pushRegId"], b);
    assert_eq!(items[0]["bulkId"], "bulk-g");
    assert_eq!(items[0]["messageId"], "g-2");
    assert_eq!(
        items[0]["providerResponse"],
        json!({"httpStatus": 400, "reason": "INVALID_ARGUMENT"})
    );
    assert!(items[0]["personId"].is_string());
    assert_eq!(rejected["nextCursor"], Value::Null);
    let r = f.get("/api/v1/messages/g-2/deliveries?status=LOST").await;
    r.assert_error(400, "BAD_REQUEST");
    assert!(error_paths(&r).contains("query.status"));
    // Without bulkId: the account's messages, newest first (this bulk's three are the newest).
    let recent = f.get("/api/v1/messages").await.ok().json();
    let mut newest: Vec<&str> = recent["items"].as_array().unwrap()[..3]
        .iter()
        .map(|m| m["messageId"].as_str().unwrap())
        .collect();
    newest.sort();
    assert_eq!(newest, ["g-1", "g-2", "g-3"]);
    f.get("/api/v1/messages/none").await.assert_error(404, "NOT_FOUND");
    f.get("/api/v1/messages/none/deliveries")
        .await
        .assert_error(404, "NOT_FOUND");
    let reader = api_key(&f.ts, &["people:read"]).await;
    f.request("GET", "/api/v1/messages/g-1", &reader, &[], None)
        .await
        .assert_error(403, "FORBIDDEN");
    f.finish().await;
}

on_every_backend!(
    single_destinations,
    undeliverable_and_depersonalized_installations_are_skipped,
    multiple_destinations_resolve_in_chunks,
    large_filtered_send_reaches_exactly_the_matching_installations,
    deliveries_of_a_deleted_application,
    a_claim_outliving_its_application,
    apns_outcomes,
    fcm_outcomes_and_provider_status,
    provider_not_configured,
    clients_follow_provider_settings,
    segments_as_destinations,
    hms_delivery,
    invalid_requests_change_nothing,
    idempotency_keys,
    restart_resumes_a_send,
    device_reports,
    reading_results,
);
