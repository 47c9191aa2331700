//! Typed, borrowing views of the request bodies the stand-ins check. Deserialising into these
//! instead of `serde_json::Value` keeps a checked request to a handful of allocations, which
//! matters when the stand-ins absorb a fan-out benchmark.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// Any JSON object, contents ignored (anything else is a shape error).
pub(crate) struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Parses `bytes` as `T`; a syntax error is `not JSON`, a type error names what was unexpected.
pub(crate) fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("unexpected JSON shape: {e}"),
        _ => "not JSON".to_string(),
    })
}

/// APNs body (management-api.md §6.4 "APNs").
#[derive(Deserialize)]
pub(crate) struct ApnsPayload<'a> {
    pub(crate) aps: Option<Aps<'a>>,
    #[serde(rename = "messageId", borrow)]
    pub(crate) message_id: Option<Cow<'a, str>>,
    #[serde(rename = "internalData", borrow)]
    pub(crate) internal_data: Option<ApnsInternal<'a>>,
    #[serde(rename = "customPayload")]
    pub(crate) custom_payload: Option<AnyObject>,
}

#[derive(Deserialize)]
pub(crate) struct Aps<'a> {
    #[serde(borrow)]
    pub(crate) alert: Option<Alert<'a>>,
    #[serde(rename = "content-available")]
    pub(crate) content_available: Option<u64>,
    pub(crate) sound: Option<IgnoredAny>,
    pub(crate) badge: Option<IgnoredAny>,
    #[serde(rename = "mutable-content")]
    pub(crate) mutable_content: Option<IgnoredAny>,
}

#[derive(Deserialize)]
pub(crate) struct Alert<'a> {
    #[serde(borrow)]
    pub(crate) body: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(crate) struct ApnsInternal<'a> {
    #[serde(rename = "sendDateTime")]
    pub(crate) send_date_time: Option<i64>,
    #[serde(rename = "bulkId", borrow)]
    pub(crate) bulk_id: Option<Cow<'a, str>>,
    pub(crate) silent: Option<AnyObject>,
}

/// FCM HTTP v1 body (management-api.md §6.4 "FCM").
#[derive(Deserialize)]
pub(crate) struct FcmBody<'a> {
    #[serde(borrow)]
    pub(crate) message: Option<FcmMessage<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct FcmMessage<'a> {
    #[serde(borrow)]
    pub(crate) token: Option<Cow<'a, str>>,
    pub(crate) notification: Option<IgnoredAny>,
    #[serde(borrow)]
    pub(crate) android: Option<FcmAndroid<'a>>,
    #[serde(borrow)]
    pub(crate) data: Option<HashMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Deserialize)]
pub(crate) struct FcmAndroid<'a> {
    #[serde(borrow)]
    pub(crate) priority: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) ttl: Option<Cow<'a, str>>,
}

/// The IB JSON inside `org_ib_d`.
#[derive(Deserialize)]
pub(crate) struct IbData<'a> {
    #[serde(rename = "messageId", borrow)]
    pub(crate) message_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) text: Option<Cow<'a, str>>,
    pub(crate) notification: Option<AnyObject>,
    #[serde(borrow)]
    pub(crate) internal: Option<IbInternal<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct IbInternal<'a> {
    #[serde(rename = "sendDateTime")]
    pub(crate) send_date_time: Option<i64>,
    #[serde(rename = "bulkId", borrow)]
    pub(crate) bulk_id: Option<Cow<'a, str>>,
}

/// `digits` followed by `s`, as FCM and HMS durations are written.
pub(crate) fn is_duration(ttl: &str) -> bool {
    ttl.strip_suffix('s')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}
