//! What is pushed: a message's content and the facts every delivery of it shares
//! (management-api.md §5.1, §6.4). One [`PushMessage`] serves all of its deliveries; the per-delivery
//! parts (delivery id, device token) are arguments of the send and render calls.

use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch (the model's `Millis`).
pub type Millis = i64;

/// `content.type` of §5.1, with the image URL that only `IMAGE` has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentKind {
    /// `TEXT`
    Text,
    /// `IMAGE` with its absolute `https` URL.
    Image {
        /// `content.url`
        url: String,
    },
}

/// The visible (or silent) content of a push, as accepted by `POST /push/3/messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct PushContent {
    /// `TEXT` or `IMAGE`.
    pub kind: ContentKind,
    /// `content.title`
    pub title: Option<String>,
    /// `content.text` (required, 1–2000 characters; validated by the API, not here).
    pub text: String,
    /// `options.customPayload`, delivered to the app as is.
    pub custom_payload: Option<Map<String, Value>>,
    /// `options.sound`
    pub sound: Option<String>,
    /// `options.badge` (APNs only).
    pub badge: Option<u32>,
    /// `options.silent`: data-only push, no visible notification.
    pub silent: bool,
}

impl PushContent {
    /// A `TEXT` content with only its text set.
    pub fn text(text: impl Into<String>) -> Self {
        PushContent {
            kind: ContentKind::Text,
            title: None,
            text: text.into(),
            custom_payload: None,
            sound: None,
            badge: None,
            silent: false,
        }
    }

    /// The image URL of an `IMAGE` content.
    pub fn image_url(&self) -> Option<&str> {
        match &self.kind {
            ContentKind::Text => None,
            ContentKind::Image { url } => Some(url),
        }
    }
}

/// A message as delivered to each of its installations.
#[derive(Debug, Clone, PartialEq)]
pub struct PushMessage {
    /// What to show.
    pub content: PushContent,
    /// The bulk the message belongs to.
    pub bulk_id: String,
    /// The message's creation time (`sendDateTime` in the payloads).
    pub send_date_time: Millis,
    /// End of the validity period (creation + `validityPeriod`): `apns-expiration`, FCM/HMS `ttl`,
    /// and the expiry rule of §6.5.
    pub expires_at: Millis,
}
