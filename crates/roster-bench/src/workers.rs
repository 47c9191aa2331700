//! The simulated clients of the HTTP scenarios: Android-style registrations, a device mix, and
//! Parse Server installation creates for the comparison.

use bytes::Bytes;
use http::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::load::{Call, Outcome, Worker};

const USER_AGENT: &str =
    "Infobip Mobile API Client/15.0.0(Android;14;arm64-v8a;Pixel 8;Google;Bench;3.2.1;Pixel 8;;;;;;)";

/// The body of an Android registration (mobile-api.md §7.1) with a token of its own.
pub fn android_registration(token: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"regEnabled":true,"notificationsEnabled":true,"sdkVersion":"15.0.0","appVersion":"3.2.1","os":"Android","osVersion":"14","deviceManufacturer":"Google","deviceModel":"Pixel 8","deviceSecure":true,"language":"en","deviceTimezoneOffset":"GMT+01:00","deviceName":"Pixel 8","pushServiceType":"Firebase","pushServiceToken":"{token}"}}"#
    ))
}

fn android_headers(code: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("App {code}")),
        ("content-type", "application/json".into()),
        ("accept", "application/json".into()),
        ("user-agent", USER_AGENT.into()),
        ("foreground", "true".into()),
    ]
}

/// `register`: every request creates a new installation (a new token, a new device).
pub struct Register {
    code: String,
}

impl Register {
    pub fn new(code: &str) -> Register {
        Register { code: code.to_owned() }
    }
}

impl Worker for Register {
    fn next(&mut self) -> Call {
        let token = format!("fcm:{}", Uuid::new_v4().simple());
        let mut headers = android_headers(&self.code);
        headers.push(("installationid", Uuid::new_v4().to_string()));
        Call {
            op: "register",
            method: Method::POST,
            path: "/mobile/1/appinstance?ri=true".into(),
            headers,
            body: Some(android_registration(&token)),
        }
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> Outcome {
        if status == 200 && contains(body, b"\"pushRegId\"") {
            Outcome::Ok
        } else {
            Outcome::Error
        }
    }
}

/// One simulated phone of the mix.
#[derive(Default)]
struct Device {
    push_reg_id: Option<String>,
    /// The externalUserId it is personalized as.
    user: Option<String>,
}

/// `mobile-mix`: devices that register once, then read and patch their installation and user,
/// personalize (sometimes as a user another device already is: a merge; sometimes switching
/// user without force: an expected `409`) and depersonalize, one request after another.
pub struct Mix {
    code: String,
    devices: Vec<Device>,
    next_device: usize,
    /// Users are drawn from `0..users`: fewer users than devices, so personalizations collide.
    users: u64,
    user_offset: u64,
    rng: StdRng,
    /// What the last request was, to interpret its answer.
    last: (usize, &'static str, Option<String>),
}

impl Mix {
    /// A worker with `devices` phones; users are shared by all workers (`users` of them).
    pub fn new(code: &str, devices: usize, users: u64, seed: u64) -> Mix {
        Mix {
            code: code.to_owned(),
            devices: (0..devices.max(1)).map(|_| Device::default()).collect(),
            next_device: 0,
            users: users.max(1),
            user_offset: 0,
            rng: StdRng::seed_from_u64(seed),
            last: (0, "", None),
        }
    }
}

impl Worker for Mix {
    fn next(&mut self) -> Call {
        let d = self.next_device;
        self.next_device = (self.next_device + 1) % self.devices.len();
        let mut headers = android_headers(&self.code);
        let Some(id) = self.devices[d].push_reg_id.clone() else {
            self.last = (d, "register", None);
            let token = format!("fcm:{}", Uuid::new_v4().simple());
            return Call {
                op: "register",
                method: Method::POST,
                path: "/mobile/1/appinstance?ri=true".into(),
                headers,
                body: Some(android_registration(&token)),
            };
        };
        headers.push(("pushregistrationid", id.clone()));
        let base = format!("/mobile/1/appinstance/{id}");
        let roll = self.rng.random_range(0..100);
        let (op, method, path, body, user): (&'static str, Method, String, Option<String>, Option<String>) = match roll
        {
            0..25 => ("get-installation", Method::GET, format!("{base}?rt=1"), None, None),
            25..40 => {
                headers.push(("x-http-method-override", "PATCH".into()));
                let v = self.rng.random_range(0..5);
                let body = format!(r#"{{"appVersion":"3.2.{v}","notificationsEnabled":true,"language":"en"}}"#);
                ("patch-installation", Method::POST, base, Some(body), None)
            }
            40..52 => ("get-user", Method::GET, format!("{base}/user?ri=true"), None, None),
            52..72 => {
                headers.push(("x-http-method-override", "PATCH".into()));
                let points = self.rng.random_range(0..1000);
                let body = format!(
                    r#"{{"firstName":"Ana","lastName":null,"tags":["bench","t{}"],"customAttributes":{{"loyaltyPoints":{points}}}}}"#,
                    points % 7
                );
                ("patch-user", Method::POST, format!("{base}/user"), Some(body), None)
            }
            72..90 => {
                let user = format!("mix-{}", self.user_offset + self.rng.random_range(0..self.users));
                let force = self.rng.random_bool(0.5);
                let body = format!(
                    r#"{{"userIdentity":{{"externalUserId":"{user}"}},"userAttributes":{{"firstName":"Ana"}}}}"#
                );
                (
                    "personalize",
                    Method::POST,
                    format!("{base}/personalize?forceDepersonalize={force}&keepAsLead=false&setDeviceAsPrimary=false"),
                    Some(body),
                    Some(user),
                )
            }
            _ => (
                "depersonalize",
                Method::POST,
                format!("{base}/depersonalize"),
                None,
                None,
            ),
        };
        self.last = (d, op, user);
        Call {
            op,
            method,
            path,
            headers,
            body: body.map(Bytes::from),
        }
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> Outcome {
        let (d, op, user) = self.last.clone();
        match (op, status) {
            ("register", 200) => {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                match v["pushRegId"].as_str() {
                    Some(id) => {
                        self.devices[d].push_reg_id = Some(id.to_owned());
                        Outcome::Ok
                    }
                    None => Outcome::Error,
                }
            }
            ("personalize", 200) => {
                self.devices[d].user = user;
                Outcome::Ok
            }
            // Switching to another user without forceDepersonalize (mobile-api.md §5.8).
            ("personalize", 409)
                if contains(body, b"PERSONALIZATION_IMPOSSIBLE") || contains(body, b"USER_MERGE_INTERRUPTED") =>
            {
                Outcome::Expected
            }
            ("depersonalize", 200) => {
                self.devices[d].user = None;
                Outcome::Ok
            }
            (_, 200) => Outcome::Ok,
            _ => Outcome::Error,
        }
    }
}

/// Parse Server: `POST /parse/installations`, an Android installation with a unique
/// `installationId` and token, in a channel (what an app's first start sends through the Parse
/// SDK).
pub struct ParseCreate {
    pub app_id: String,
    pub rest_key: String,
    pub mount: String,
}

impl Worker for ParseCreate {
    fn next(&mut self) -> Call {
        let id = Uuid::new_v4();
        let body = format!(
            r#"{{"deviceType":"android","pushType":"gcm","installationId":"{id}","deviceToken":"fcm:{}","channels":["bench"],"appVersion":"3.2.1","localeIdentifier":"en-US","timeZone":"Europe/Zagreb"}}"#,
            id.simple()
        );
        Call {
            op: "create-installation",
            method: Method::POST,
            path: format!("{}/installations", self.mount),
            headers: vec![
                ("x-parse-application-id", self.app_id.clone()),
                ("x-parse-rest-api-key", self.rest_key.clone()),
                ("content-type", "application/json".into()),
            ],
            body: Some(Bytes::from(body)),
        }
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> Outcome {
        if status == 201 && contains(body, b"\"objectId\"") {
            Outcome::Ok
        } else {
            Outcome::Error
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
