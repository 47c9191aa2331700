//! The provider payloads of management-api.md §6.4, byte for byte. Member order and presence are
//! part of the contract (unit tests compare whole strings), so every shape is a struct serialised
//! in declaration order with absent members skipped.

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::message::{ContentKind, Millis, PushMessage};

/// Provider size limit of §5.1: APNs body, FCM data and HMS data each at most 4096 bytes.
pub const PAYLOAD_LIMIT: usize = 4096;

/// The data key the official Android SDK reads.
pub const IB_DATA_KEY: &str = "org_ib_d";

#[derive(Serialize)]
struct ApnsPayload<'a> {
    aps: ApnsAps<'a>,
    #[serde(rename = "messageId")]
    message_id: Uuid,
    #[serde(rename = "internalData")]
    internal_data: ApnsInternal<'a>,
    #[serde(rename = "customPayload", skip_serializing_if = "Option::is_none")]
    custom_payload: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ApnsAps<'a> {
    Alert {
        alert: ApnsAlert<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sound: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        badge: Option<u32>,
        #[serde(rename = "mutable-content", skip_serializing_if = "Option::is_none")]
        mutable_content: Option<u8>,
    },
    Silent {
        #[serde(rename = "content-available")]
        content_available: u8,
    },
}

#[derive(Serialize)]
struct ApnsAlert<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    body: &'a str,
}

#[derive(Serialize)]
struct ApnsSilent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<&'a str>,
}

#[derive(Serialize)]
struct ApnsInternal<'a> {
    #[serde(rename = "sendDateTime")]
    send_date_time: Millis,
    #[serde(rename = "bulkId")]
    bulk_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    silent: Option<ApnsSilent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    atts: Option<[Attachment<'a>; 1]>,
}

#[derive(Serialize)]
struct Attachment<'a> {
    url: &'a str,
}

#[derive(Serialize)]
struct IbData<'a> {
    #[serde(rename = "messageId")]
    message_id: Uuid,
    text: &'a str,
    notification: IbNotification<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<&'a Map<String, Value>>,
    internal: IbInternal<'a>,
}

#[derive(Serialize)]
struct IbNotification<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    silent: Option<bool>,
    #[serde(rename = "contentUrl", skip_serializing_if = "Option::is_none")]
    content_url: Option<&'a str>,
}

#[derive(Serialize)]
struct IbInternal<'a> {
    #[serde(rename = "sendDateTime")]
    send_date_time: Millis,
    #[serde(rename = "bulkId")]
    bulk_id: &'a str,
}

#[derive(Serialize)]
struct FcmBody<'a> {
    message: FcmMessage<'a>,
}

#[derive(Serialize)]
struct FcmMessage<'a> {
    token: &'a str,
    android: FcmAndroid,
    data: FcmData<'a>,
}

#[derive(Serialize)]
struct FcmAndroid {
    priority: &'static str,
    ttl: String,
}

#[derive(Serialize)]
struct FcmData<'a> {
    org_ib_d: &'a str,
}

#[derive(Serialize)]
struct HmsBody<'a> {
    validate_only: bool,
    message: HmsMessage<'a>,
}

#[derive(Serialize)]
struct HmsMessage<'a> {
    token: [&'a str; 1],
    android: HmsAndroid,
    data: String,
}

#[derive(Serialize)]
struct HmsAndroid {
    urgency: &'static str,
    ttl: String,
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Strings, integers and JSON maps only: serialisation has no failure case.
    serde_json::to_vec(value).expect("payload serialisation cannot fail")
}

/// The APNs request body (§6.4, "APNs").
pub fn apns_payload(message: &PushMessage, delivery_id: Uuid) -> Vec<u8> {
    let c = &message.content;
    let image = c.image_url();
    let aps = if c.silent {
        ApnsAps::Silent { content_available: 1 }
    } else {
        ApnsAps::Alert {
            alert: ApnsAlert {
                title: c.title.as_deref(),
                body: &c.text,
            },
            sound: c.sound.as_deref(),
            badge: c.badge,
            mutable_content: image.map(|_| 1),
        }
    };
    let silent = c.silent.then(|| ApnsSilent {
        title: c.title.as_deref(),
        body: &c.text,
        sound: c.sound.as_deref(),
    });
    to_json(&ApnsPayload {
        aps,
        message_id: delivery_id,
        internal_data: ApnsInternal {
            send_date_time: message.send_date_time,
            bulk_id: &message.bulk_id,
            silent,
            atts: image.map(|url| [Attachment { url }]),
        },
        custom_payload: c.custom_payload.as_ref(),
    })
}

/// `apns-push-type` and `apns-priority` of a message: `alert`/`10`, silent `background`/`5`.
pub fn apns_push_type(message: &PushMessage) -> (&'static str, &'static str) {
    if message.content.silent {
        ("background", "5")
    } else {
        ("alert", "10")
    }
}

/// `apns-expiration`: the end of validity in Unix seconds.
pub fn apns_expiration(message: &PushMessage) -> i64 {
    message.expires_at.div_euclid(1000)
}

/// The IB JSON the official SDKs read (`org_ib_d`, §6.4 "FCM").
pub fn ib_json(message: &PushMessage, delivery_id: Uuid) -> String {
    let c = &message.content;
    let bytes = to_json(&IbData {
        message_id: delivery_id,
        text: &c.text,
        notification: IbNotification {
            title: c.title.as_deref(),
            sound: c.sound.as_deref(),
            silent: c.silent.then_some(true),
            content_url: match &c.kind {
                ContentKind::Text => None,
                ContentKind::Image { url } => Some(url),
            },
        },
        custom: c.custom_payload.as_ref(),
        internal: IbInternal {
            send_date_time: message.send_date_time,
            bulk_id: &message.bulk_id,
        },
    });
    String::from_utf8(bytes).expect("serde_json writes UTF-8")
}

/// Remaining validity in whole seconds at `now` (never negative): the FCM and HMS `ttl`.
pub fn remaining_ttl_secs(message: &PushMessage, now: Millis) -> i64 {
    (message.expires_at - now).max(0) / 1000
}

/// The FCM HTTP v1 `messages:send` body (§6.4, "FCM"): data-only, so the SDK builds the notification.
pub fn fcm_body(message: &PushMessage, delivery_id: Uuid, device_token: &str, now: Millis) -> Vec<u8> {
    let ib = ib_json(message, delivery_id);
    to_json(&FcmBody {
        message: FcmMessage {
            token: device_token,
            android: FcmAndroid {
                priority: "HIGH",
                ttl: format!("{}s", remaining_ttl_secs(message, now)),
            },
            data: FcmData { org_ib_d: &ib },
        },
    })
}

/// The HMS `data` string: `{"org_ib_d":{...IB JSON object...}}` (the Huawei SDK expects an object).
pub fn hms_data(message: &PushMessage, delivery_id: Uuid) -> String {
    format!("{{\"{IB_DATA_KEY}\":{}}}", ib_json(message, delivery_id))
}

/// The HMS `messages:send` body (§6.4, "HMS").
pub fn hms_body(message: &PushMessage, delivery_id: Uuid, device_token: &str, now: Millis) -> Vec<u8> {
    to_json(&HmsBody {
        validate_only: false,
        message: HmsMessage {
            token: [device_token],
            android: HmsAndroid {
                urgency: "HIGH",
                ttl: format!("{}s", remaining_ttl_secs(message, now)),
            },
            data: hms_data(message, delivery_id),
        },
    })
}

/// Rendered sizes of a message's payloads, computed with a 36-character message id (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSizes {
    /// Bytes of the APNs body.
    pub apns: usize,
    /// Bytes of the FCM data: key `org_ib_d` plus its string value (FCM counts keys and values).
    pub fcm_data: usize,
    /// Bytes of the HMS `data` string.
    pub hms_data: usize,
}

impl PayloadSizes {
    /// Whether every payload is within [`PAYLOAD_LIMIT`].
    pub fn fit(&self) -> bool {
        self.apns.max(self.fcm_data).max(self.hms_data) <= PAYLOAD_LIMIT
    }
}

/// The sizes the §5.1 check compares with [`PAYLOAD_LIMIT`]. Delivery ids are UUIDs, so every real
/// delivery renders to exactly these sizes.
pub fn payload_sizes(message: &PushMessage) -> PayloadSizes {
    let id = Uuid::nil(); // 36 characters, like every delivery id
    let ib = ib_json(message, id);
    PayloadSizes {
        apns: apns_payload(message, id).len(),
        fcm_data: IB_DATA_KEY.len() + ib.len(),
        hms_data: hms_data(message, id).len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PushContent;
    use serde_json::json;

    const ID: &str = "0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64";

    fn id() -> Uuid {
        ID.parse().unwrap()
    }

    /// The spec's example message: IMAGE with title, sound, badge and custom payload.
    fn sale() -> PushMessage {
        PushMessage {
            content: PushContent {
                kind: ContentKind::Image {
                    url: "https://cdn.example.com/sale.png".into(),
                },
                title: Some("Sale".into()),
                text: "20% off today".into(),
                custom_payload: Some(json!({"deeplink": "acme://sale"}).as_object().unwrap().clone()),
                sound: Some("default".into()),
                badge: Some(3),
                silent: false,
            },
            bulk_id: "spring-sale-1".into(),
            send_date_time: 1_735_689_600_000,
            expires_at: 1_735_689_600_000 + 6 * 3600 * 1000,
        }
    }

    fn text_only() -> PushMessage {
        PushMessage {
            content: PushContent::text("Hi \"there\"\n"),
            ..sale()
        }
    }

    fn utf8(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn apns_matches_the_spec_example() {
        let expected = format!(
            r#"{{"aps":{{"alert":{{"title":"Sale","body":"20% off today"}},"sound":"default","badge":3,"mutable-content":1}},"messageId":"{ID}","internalData":{{"sendDateTime":1735689600000,"bulkId":"spring-sale-1","atts":[{{"url":"https://cdn.example.com/sale.png"}}]}},"customPayload":{{"deeplink":"acme://sale"}}}}"#
        );
        assert_eq!(utf8(apns_payload(&sale(), id())), expected);
        assert_eq!(apns_push_type(&sale()), ("alert", "10"));
        assert_eq!(apns_expiration(&sale()), 1_735_689_600 + 6 * 3600);
    }

    #[test]
    fn apns_text_omits_what_is_not_set() {
        let expected = format!(
            r#"{{"aps":{{"alert":{{"body":"Hi \"there\"\n"}}}},"messageId":"{ID}","internalData":{{"sendDateTime":1735689600000,"bulkId":"spring-sale-1"}}}}"#
        );
        assert_eq!(utf8(apns_payload(&text_only(), id())), expected);
    }

    #[test]
    fn apns_silent_moves_the_alert_into_internal_data() {
        let mut m = sale();
        m.content.silent = true;
        let expected = format!(
            r#"{{"aps":{{"content-available":1}},"messageId":"{ID}","internalData":{{"sendDateTime":1735689600000,"bulkId":"spring-sale-1","silent":{{"title":"Sale","body":"20% off today","sound":"default"}},"atts":[{{"url":"https://cdn.example.com/sale.png"}}]}},"customPayload":{{"deeplink":"acme://sale"}}}}"#
        );
        assert_eq!(utf8(apns_payload(&m, id())), expected);
        assert_eq!(apns_push_type(&m), ("background", "5"));
        let mut m = text_only();
        m.content.silent = true;
        let expected = format!(
            r#"{{"aps":{{"content-available":1}},"messageId":"{ID}","internalData":{{"sendDateTime":1735689600000,"bulkId":"spring-sale-1","silent":{{"body":"Hi \"there\"\n"}}}}}}"#
        );
        assert_eq!(utf8(apns_payload(&m, id())), expected);
    }

    #[test]
    fn ib_json_matches_the_spec_example() {
        let expected = format!(
            r#"{{"messageId":"{ID}","text":"20% off today","notification":{{"title":"Sale","sound":"default","contentUrl":"https://cdn.example.com/sale.png"}},"custom":{{"deeplink":"acme://sale"}},"internal":{{"sendDateTime":1735689600000,"bulkId":"spring-sale-1"}}}}"#
        );
        assert_eq!(ib_json(&sale(), id()), expected);
    }

    #[test]
    fn ib_json_always_has_a_notification_and_silent_only_when_true() {
        let expected = format!(
            r#"{{"messageId":"{ID}","text":"Hi \"there\"\n","notification":{{}},"internal":{{"sendDateTime":1735689600000,"bulkId":"spring-sale-1"}}}}"#
        );
        assert_eq!(ib_json(&text_only(), id()), expected);
        let mut m = text_only();
        m.content.silent = true;
        m.content.title = Some("T".into());
        let expected = format!(
            r#"{{"messageId":"{ID}","text":"Hi \"there\"\n","notification":{{"title":"T","silent":true}},"internal":{{"sendDateTime":1735689600000,"bulkId":"spring-sale-1"}}}}"#
        );
        assert_eq!(ib_json(&m, id()), expected);
    }

    #[test]
    fn fcm_body_carries_the_ib_json_as_a_string_and_the_remaining_ttl() {
        let m = sale();
        // 1.5 s into the six hours: whole seconds remaining, rounded down.
        let body = utf8(fcm_body(&m, id(), "tok-1", m.send_date_time + 1500));
        let ib = serde_json::to_string(&ib_json(&m, id())).unwrap();
        assert_eq!(
            body,
            format!(
                r#"{{"message":{{"token":"tok-1","android":{{"priority":"HIGH","ttl":"21598s"}},"data":{{"org_ib_d":{ib}}}}}}}"#
            )
        );
        let at_start = utf8(fcm_body(&m, id(), "tok-1", m.send_date_time));
        assert!(at_start.contains(r#""ttl":"21600s""#));
        let late = utf8(fcm_body(&m, id(), "tok-1", m.expires_at + 5000));
        assert!(late.contains(r#""ttl":"0s""#));
    }

    #[test]
    fn hms_body_nests_the_ib_object_in_the_data_string() {
        let m = sale();
        let body = utf8(hms_body(&m, id(), "h-1", m.send_date_time));
        let data = serde_json::to_string(&format!(r#"{{"org_ib_d":{}}}"#, ib_json(&m, id()))).unwrap();
        assert_eq!(
            body,
            format!(
                r#"{{"validate_only":false,"message":{{"token":["h-1"],"android":{{"urgency":"HIGH","ttl":"21600s"}},"data":{data}}}}}"#
            )
        );
    }

    #[test]
    fn sizes_use_a_36_character_id_and_match_real_renders() {
        let m = sale();
        let sizes = payload_sizes(&m);
        let real = Uuid::new_v4();
        assert_eq!(sizes.apns, apns_payload(&m, real).len());
        assert_eq!(sizes.fcm_data, "org_ib_d".len() + ib_json(&m, real).len());
        assert_eq!(sizes.hms_data, hms_data(&m, real).len());
        assert!(sizes.fit());
    }

    #[test]
    fn sizes_cross_the_limit_exactly_at_4096_bytes() {
        // Grow the text until the largest payload is exactly at the limit, then one byte more.
        let mut m = text_only();
        m.content.text = String::new();
        let base = payload_sizes(&m);
        let largest = base.apns.max(base.fcm_data).max(base.hms_data);
        m.content.text = "x".repeat(PAYLOAD_LIMIT - largest);
        assert!(payload_sizes(&m).fit());
        m.content.text.push('x');
        assert!(!payload_sizes(&m).fit());
        // Multi-byte characters count as bytes.
        m.content.text = "é".repeat(2048);
        assert!(!payload_sizes(&m).fit());
    }
}
