//! Byte-level wire behaviour (client-sdk.md §4): the requests the SDK puts on the wire, captured
//! by a scripted loopback HTTP/1.1 peer that answers what the test tells it to (including the
//! answers a Roster server does not give on purpose: redirects, 429, 5xx, empty 2xx bodies).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use roster_client::{
    Config, FieldChange, InstallationChanges, PersonalizeOptions, RetrySettings, RosterClient, RosterError,
    SaveOutcome, SuccessPending, SystemInfo, UserChanges, UserIdentity,
};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const CODE: &str = "8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71";
const ID: &str = "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f";

#[derive(Debug, Clone)]
struct Captured {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Peer {
    requests: Arc<Mutex<Vec<Captured>>>,
    answers: Arc<Mutex<VecDeque<String>>>,
}

impl Peer {
    fn answer(&self, status: &str, extra_headers: &str, body: &str) {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            r.push_str("Content-Type: application/json\r\n");
        }
        r.push_str(extra_headers);
        r.push_str("\r\n");
        r.push_str(body);
        self.answers.lock().unwrap().push_back(r);
    }
    fn last(&self) -> Captured {
        self.requests.lock().unwrap().last().cloned().expect("a request")
    }
    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn serve_one(peer: Peer, mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap().split(' ');
    let method = first.next().unwrap().to_string();
    let target = first.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    peer.requests.lock().unwrap().push(Captured {
        method,
        target,
        headers,
        body,
    });
    let answer = peer.answers.lock().unwrap().pop_front().unwrap_or_else(|| {
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}".into()
    });
    s.write_all(answer.as_bytes()).await.unwrap();
    let _ = s.shutdown().await;
}

async fn peer() -> (Peer, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = Peer::default();
    let p = peer.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_one(p.clone(), s));
        }
    });
    (peer, addr)
}

fn registration() -> String {
    json!({"pushRegId": ID, "regEnabled": true, "isPrimary": false, "customAttributes": {}}).to_string()
}

#[tokio::test]
async fn requests_on_the_wire() {
    let (peer, addr) = peer().await;
    let dir = tempfile::tempdir().unwrap();
    let info = SystemInfo {
        os: Some("Linux".into()),
        os_version: Some("6.1".into()),
        device_model: Some("Test Box".into()),
        app_version: Some("3.2.1".into()),
        ..SystemInfo::default()
    };
    let client = RosterClient::start(Config {
        application_code: CODE.into(),
        // A path prefix and a trailing slash.
        base_url: format!("http://{addr}/roster/").parse().unwrap(),
        storage_dir: dir.path().to_path_buf(),
        system_info: info,
        retry: RetrySettings {
            initial: Duration::from_secs(600),
            max: Duration::from_secs(600),
        },
        ..Config::default()
    })
    .await
    .unwrap();

    // A redirect is not followed; it is a retryable failure.
    peer.answer("302 Found", "Location: http://example.com/\r\n", "");
    let e = client.sync_now().await.unwrap_err();
    assert!(matches!(e, RosterError::Http { status: 302 }), "{e:?}");
    assert_eq!(peer.count(), 1);
    let r = peer.last();
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/roster/mobile/1/appinstance");
    assert_eq!(r.header("authorization"), Some(format!("App {CODE}").as_str()));
    let hash = hex::encode(sha2::Sha256::digest(CODE.as_bytes()));
    assert_eq!(r.header("applicationcode"), Some(&hash[..10]));
    assert_eq!(r.header("applicationcode"), Some("6e04a5de32"), "mobile-api.md §7");
    let uiid = r.header("installationid").unwrap();
    assert_eq!(uiid, uiid.to_lowercase());
    assert_eq!(uuid::Uuid::parse_str(uiid).unwrap().get_version_num(), 4);
    assert_eq!(
        r.header("user-agent"),
        Some(
            format!(
                "RosterClient/{} (Linux; 6.1; Test Box; 3.2.1)",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("pushregistrationid"), None);
    let body = r.json();
    assert_eq!(body["sdkVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["os"], "Linux");
    assert_eq!(body["deviceModel"], "Test Box");
    assert!(body["deviceTimezoneOffset"].as_str().unwrap().starts_with("GMT"));
    assert!(body.get("pushServiceToken").is_none());
    assert!(body.get("language").is_none(), "absent values are not sent");

    // Registration.
    peer.answer("200 OK", "", &registration());
    assert!(client.sync_now().await.unwrap().is_empty());
    assert_eq!(client.installation().push_reg_id.as_deref(), Some(ID));

    // A user PATCH: real PATCH, only the changes; an empty 2xx body confirms the sent delta.
    peer.answer("200 OK", "", "");
    let mut changes = UserChanges {
        first_name: FieldChange::Set("A".into()),
        tags: FieldChange::Set(["x".to_string()].into_iter().collect()),
        ..Default::default()
    };
    changes.set_custom_attribute("k", 1);
    let user = match client.save_user(changes).await.unwrap() {
        SaveOutcome::Reported(u) => u,
        other => panic!("{other:?}"),
    };
    assert_eq!(user.first_name.as_deref(), Some("A"));
    let r = peer.last();
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.target, format!("/roster/mobile/1/appinstance/{ID}/user"));
    assert_eq!(r.header("pushregistrationid"), Some(ID));
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        r#"{"firstName":"A","tags":["x"],"customAttributes":{"k":1}}"#
    );

    // A cleared value is an explicit null.
    peer.answer("200 OK", "", "");
    let mut changes = UserChanges {
        first_name: FieldChange::Clear,
        ..Default::default()
    };
    changes.delete_custom_attribute("k");
    assert!(client.save_user(changes).await.unwrap().is_reported());
    assert_eq!(
        String::from_utf8(peer.last().body).unwrap(),
        r#"{"firstName":null,"customAttributes":{"k":null}}"#
    );
    assert_eq!(client.user().first_name, None);

    // Personalize: all three flags, true/false.
    peer.answer(
        "200 OK",
        "",
        &json!({"externalUserId": "e-1", "phones": [], "emails": [], "tags": [], "customAttributes": {},
            "type": "LEAD", "instances": [{"pushRegId": ID, "regEnabled": true, "isPrimary": false, "customAttributes": {}}]})
        .to_string(),
    );
    let user = client
        .personalize(
            UserIdentity::external("e-1"),
            None,
            PersonalizeOptions {
                keep_as_lead: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.installations.len(), 1);
    let r = peer.last();
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.target,
        format!(
            "/roster/mobile/1/appinstance/{ID}/personalize?forceDepersonalize=false&keepAsLead=true&setDeviceAsPrimary=false"
        )
    );
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"{"userIdentity":{"externalUserId":"e-1"}}"#
    );

    // 429: queued, and the next automatic attempt waits at least Retry-After.
    peer.answer(
        "429 Too Many Requests",
        "Retry-After: 30\r\n",
        r#"{"requestError":{"serviceException":{"messageId":"TOO_MANY_REQUESTS","text":"slow down"}}}"#,
    );
    let e = match client
        .save_installation(InstallationChanges {
            is_primary: FieldChange::Set(true),
            ..Default::default()
        })
        .await
        .unwrap()
    {
        SaveOutcome::Queued(e) => e,
        other => panic!("{other:?}"),
    };
    assert!(matches!(&e, RosterError::Api { http_status: 429, code, .. } if code == "TOO_MANY_REQUESTS"));
    assert_eq!(peer.last().method, "PATCH");
    assert_eq!(peer.last().json(), json!({"isPrimary": true}));
    let next = client.pending().next_retry_at.expect("a retry is scheduled");
    assert!(next >= SystemTime::now() + Duration::from_secs(25), "{next:?}");

    // 5xx `{}` is retryable too.
    client.shutdown().await;
    let client = RosterClient::start(Config {
        application_code: CODE.into(),
        base_url: format!("http://{addr}/roster").parse().unwrap(),
        storage_dir: dir.path().to_path_buf(),
        retry: RetrySettings {
            initial: Duration::from_secs(600),
            max: Duration::from_secs(600),
        },
        privacy: roster_client::PrivacySettings {
            system_info_sending_disabled: true,
            ..Default::default()
        },
        ..Config::default()
    })
    .await
    .unwrap();
    assert_eq!(client.pending().installation_fields, vec!["isPrimary"]);
    let before = peer.count();
    let e = client.sync_now().await.unwrap_err();
    assert!(matches!(e, RosterError::Http { status: 503 }), "{e:?}");
    assert_eq!(peer.count(), before + 1, "the pass ends on the retryable failure");
    let r = peer.last();
    assert_eq!(
        r.header("user-agent"),
        Some(format!("RosterClient/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    // The reduced system data (§12.2): the dropped fields are sent once as null.
    let body = r.json();
    assert_eq!(body["isPrimary"], true);
    assert_eq!(body["deviceModel"], Value::Null);
    assert_eq!(body["deviceTimezoneOffset"], Value::Null);

    // Depersonalize: a body-less POST.
    peer.answer("200 OK", "", "");
    assert_eq!(client.depersonalize().await.unwrap(), SuccessPending::Success);
    let r = peer.requests.lock().unwrap()[before + 1].clone();
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, format!("/roster/mobile/1/appinstance/{ID}/depersonalize"));
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("authorization"), Some(format!("App {CODE}").as_str()));
    client.shutdown().await;
}
