//! What a provider's answer means for a delivery: the table of management-api.md §6.3.

use std::time::{Duration, SystemTime};

/// Classified result of one provider call (§6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the push: status `ACCEPTED`.
    Accepted,
    /// The token is no longer valid: status `UNREGISTERED`, clear the token (compare-and-clear).
    Unregistered,
    /// The provider refused token or payload for good: status `REJECTED`, token kept.
    Rejected {
        /// The provider's reason (`BadDeviceToken`, `INVALID_ARGUMENT`, ...).
        reason: String,
    },
    /// The provider credential expired: refresh it and retry at once, not counted as an attempt,
    /// at most once per delivery. The clients act on this themselves; a [`SendReport`] never
    /// carries it.
    RefreshAndRetry,
    /// Credentials are missing, invalid or refused (or the endpoint is not a push provider):
    /// status `FAILED`, and the application's provider `status` becomes `ERROR` with `last_error`.
    Failed {
        /// What an operator should read on the application (`lastError`), without secrets.
        last_error: String,
    },
    /// Transient: 429, 5xx, connection error or timeout. Retry per §6.5, waiting at least
    /// `retry_after` when the provider gave one.
    Retry {
        /// The provider's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
}

/// The provider's answer as stored on the delivery record (§6.2 `providerResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderResponse {
    /// HTTP status, absent when no answer came (connection error, timeout, not configured).
    pub http_status: Option<u16>,
    /// The provider's reason (`Unregistered`, `UNREGISTERED`, `OK`) or ours (`TIMEOUT`,
    /// `CONNECTION_ERROR`, `PROVIDER_NOT_CONFIGURED`, `TOKEN_ENDPOINT_ERROR`).
    pub reason: String,
}

/// Result of one send: what to do, and what to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// What the answer means for the delivery.
    pub outcome: Outcome,
    /// What to store as `providerResponse`.
    pub response: ProviderResponse,
    /// Whether the provider credential was refreshed during this send (§6.3 row 4).
    pub credential_refreshed: bool,
}

impl SendReport {
    /// The report for an application without credentials for the installation's provider:
    /// `FAILED` with reason `PROVIDER_NOT_CONFIGURED` (§6.3 row 5).
    pub fn provider_not_configured(provider: &str) -> Self {
        SendReport {
            outcome: Outcome::Failed {
                last_error: format!("no {provider} credentials configured"),
            },
            response: ProviderResponse {
                http_status: None,
                reason: "PROVIDER_NOT_CONFIGURED".into(),
            },
            credential_refreshed: false,
        }
    }
}

/// Classifies an APNs answer: HTTP status and the `reason` of its JSON body (§6.3).
pub fn classify_apns(status: u16, reason: &str, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Accepted,
        410 => Outcome::Unregistered,
        400 | 413 => Outcome::Rejected {
            reason: reason.to_owned(),
        },
        403 if reason == "ExpiredProviderToken" => Outcome::RefreshAndRetry,
        403 => Outcome::Failed {
            last_error: format!("APNs refused the provider token: 403 {reason}"),
        },
        429 | 500..=599 => Outcome::Retry { retry_after },
        // 404 BadPath, 405 MethodNotAllowed, redirects, anything else: the endpoint is not
        // answering like APNs, which only configuration (baseUrl) can fix.
        _ => Outcome::Failed {
            last_error: format!("unexpected APNs answer {status} {reason}: check apns.baseUrl"),
        },
    }
}

/// The parts of an FCM error answer that decide its meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FcmError {
    /// Whether the body was Google's error envelope (`{"error":{...}}`).
    pub envelope: bool,
    /// `error.status` (`NOT_FOUND`, `UNAUTHENTICATED`, ...).
    pub status: Option<String>,
    /// The `errorCode` of the `google.firebase.fcm.v1.FcmError` detail (`UNREGISTERED`, ...).
    pub error_code: Option<String>,
}

impl FcmError {
    /// Reads an FCM answer body; anything that is not the error envelope gives `envelope: false`.
    pub fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return FcmError::default();
        };
        let Some(error) = value.get("error").filter(|e| e.is_object()) else {
            return FcmError::default();
        };
        let status = error.get("status").and_then(|s| s.as_str()).map(str::to_owned);
        let error_code = error
            .get("details")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .filter(|d| {
                d.get("@type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"))
            })
            .find_map(|d| d.get("errorCode").and_then(|c| c.as_str()).map(str::to_owned));
        FcmError {
            envelope: true,
            status,
            error_code,
        }
    }

    /// The reason to record: the FCM error code, else the Google status.
    pub fn reason(&self, http_status: u16) -> String {
        self.error_code
            .clone()
            .or_else(|| self.status.clone())
            .unwrap_or_else(|| format!("HTTP_{http_status}"))
    }
}

/// Classifies an FCM HTTP v1 answer (§6.3).
pub fn classify_fcm(status: u16, error: &FcmError, retry_after: Option<Duration>) -> Outcome {
    let code = error.error_code.as_deref();
    let reason = error.reason(status);
    match status {
        200..=299 => Outcome::Accepted,
        _ if code == Some("UNREGISTERED") => Outcome::Unregistered,
        // A 404 without Google's error envelope comes from something that is not FCM: clearing
        // tokens on it would wipe the audience because of a wrong baseUrl.
        404 if error.envelope => Outcome::Unregistered,
        400 => Outcome::Rejected { reason },
        403 if code == Some("SENDER_ID_MISMATCH") => Outcome::Rejected { reason },
        401 if code == Some("THIRD_PARTY_AUTH_ERROR") => Outcome::Failed {
            last_error: "FCM: THIRD_PARTY_AUTH_ERROR (check the APNs key uploaded to Firebase)".into(),
        },
        401 => Outcome::RefreshAndRetry,
        403 => Outcome::Failed {
            last_error: format!("FCM refused the service account: 403 {reason}"),
        },
        429 | 500..=599 => Outcome::Retry { retry_after },
        _ => Outcome::Failed {
            last_error: format!("unexpected FCM answer {status} {reason}: check fcm.baseUrl"),
        },
    }
}

/// The parts of an HMS Push Kit answer that decide its meaning
/// (`{"code":"80000000","msg":"Success","requestId":"..."}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HmsAnswer {
    /// Result code (`80000000` success, `80300007` invalid tokens, ...).
    pub code: Option<String>,
    /// `msg`; for `80100000` (partial success) a JSON string listing `illegal_tokens`.
    pub msg: Option<String>,
}

impl HmsAnswer {
    /// Reads an HMS answer body; anything else gives no code.
    pub fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return HmsAnswer::default();
        };
        let text = |name: &str| match value.get(name) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        HmsAnswer {
            code: text("code"),
            msg: text("msg"),
        }
    }

    /// The reason to record: the HMS code, else `HTTP_<status>`.
    pub fn reason(&self, http_status: u16) -> String {
        self.code.clone().unwrap_or_else(|| format!("HTTP_{http_status}"))
    }

    /// Whether a partial-success answer (`80100000`) lists `token` as illegal.
    fn lists_illegal(&self, token: &str) -> bool {
        let Some(msg) = &self.msg else { return false };
        serde_json::from_str::<serde_json::Value>(msg)
            .ok()
            .and_then(|m| m.get("illegal_tokens").and_then(|t| t.as_array()).cloned())
            .is_some_and(|tokens| tokens.iter().any(|t| t.as_str() == Some(token)))
    }
}

/// Classifies an HMS Push Kit answer to a send to `device_token` (§6.3).
pub fn classify_hms(status: u16, answer: &HmsAnswer, device_token: &str, retry_after: Option<Duration>) -> Outcome {
    let ok = (200..300).contains(&status);
    match answer.code.as_deref() {
        Some("80000000") if ok => Outcome::Accepted,
        Some("80100000") if answer.lists_illegal(device_token) => Outcome::Unregistered,
        Some("80100000") if ok => Outcome::Accepted,
        Some("80300007") => Outcome::Unregistered,
        Some("80200003") => Outcome::RefreshAndRetry,
        Some("80200001") => Outcome::Failed {
            last_error: "HMS: OAuth authentication error 80200001".into(),
        },
        Some("80300002") => Outcome::Failed {
            last_error: "HMS: the client may not send to this app (80300002)".into(),
        },
        _ if status == 429 || status >= 500 => Outcome::Retry { retry_after },
        Some(_) if status == 401 => Outcome::RefreshAndRetry,
        Some(code) if status == 403 => Outcome::Failed {
            last_error: format!("HMS refused the client: 403 {code}"),
        },
        Some(code) if (400..500).contains(&status) || ok => Outcome::Rejected {
            reason: code.to_owned(),
        },
        // No HMS code at all: whatever answered is not Push Kit.
        _ => Outcome::Failed {
            last_error: format!("unexpected HMS answer {status}: check hms.baseUrl"),
        },
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date (a date in the past means no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_table() {
        let ra = Some(Duration::from_secs(7));
        assert_eq!(classify_apns(200, "", None), Outcome::Accepted);
        assert_eq!(classify_apns(410, "Unregistered", None), Outcome::Unregistered);
        for reason in ["BadDeviceToken", "DeviceTokenNotForTopic", "BadCollapseId"] {
            assert_eq!(
                classify_apns(400, reason, None),
                Outcome::Rejected { reason: reason.into() }
            );
        }
        assert_eq!(
            classify_apns(413, "PayloadTooLarge", None),
            Outcome::Rejected {
                reason: "PayloadTooLarge".into()
            }
        );
        assert_eq!(
            classify_apns(403, "ExpiredProviderToken", None),
            Outcome::RefreshAndRetry
        );
        for reason in ["InvalidProviderToken", "MissingProviderToken", "BadCertificate"] {
            assert!(
                matches!(classify_apns(403, reason, None), Outcome::Failed { last_error } if last_error.contains(reason))
            );
        }
        assert_eq!(
            classify_apns(429, "TooManyRequests", ra),
            Outcome::Retry { retry_after: ra }
        );
        assert_eq!(
            classify_apns(500, "InternalServerError", None),
            Outcome::Retry { retry_after: None }
        );
        assert_eq!(
            classify_apns(503, "ServiceUnavailable", ra),
            Outcome::Retry { retry_after: ra }
        );
        assert!(matches!(classify_apns(404, "BadPath", None), Outcome::Failed { .. }));
        assert!(matches!(classify_apns(301, "", None), Outcome::Failed { .. }));
    }

    fn fcm_error(status: &str, code: Option<&str>) -> FcmError {
        let details = match code {
            Some(c) => format!(
                r#","details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"{c}"}}]"#
            ),
            None => String::new(),
        };
        FcmError::parse(format!(r#"{{"error":{{"code":1,"message":"m","status":"{status}"{details}}}}}"#).as_bytes())
    }

    #[test]
    fn fcm_error_parsing() {
        let e = fcm_error("NOT_FOUND", Some("UNREGISTERED"));
        assert_eq!(
            e,
            FcmError {
                envelope: true,
                status: Some("NOT_FOUND".into()),
                error_code: Some("UNREGISTERED".into())
            }
        );
        assert_eq!(e.reason(404), "UNREGISTERED");
        assert_eq!(fcm_error("UNAUTHENTICATED", None).reason(401), "UNAUTHENTICATED");
        assert_eq!(FcmError::parse(b"<html>"), FcmError::default());
        assert_eq!(FcmError::default().reason(502), "HTTP_502");
    }

    #[test]
    fn fcm_table() {
        let ra = Some(Duration::from_secs(30));
        assert_eq!(classify_fcm(200, &FcmError::default(), None), Outcome::Accepted);
        assert_eq!(
            classify_fcm(404, &fcm_error("NOT_FOUND", Some("UNREGISTERED")), None),
            Outcome::Unregistered
        );
        assert_eq!(
            classify_fcm(404, &fcm_error("NOT_FOUND", None), None),
            Outcome::Unregistered
        );
        assert_eq!(
            classify_fcm(400, &fcm_error("INVALID_ARGUMENT", Some("UNREGISTERED")), None),
            Outcome::Unregistered
        );
        assert!(matches!(
            classify_fcm(404, &FcmError::default(), None),
            Outcome::Failed { .. }
        ));
        assert_eq!(
            classify_fcm(400, &fcm_error("INVALID_ARGUMENT", Some("INVALID_ARGUMENT")), None),
            Outcome::Rejected {
                reason: "INVALID_ARGUMENT".into()
            }
        );
        assert_eq!(
            classify_fcm(403, &fcm_error("PERMISSION_DENIED", Some("SENDER_ID_MISMATCH")), None),
            Outcome::Rejected {
                reason: "SENDER_ID_MISMATCH".into()
            }
        );
        assert_eq!(
            classify_fcm(401, &fcm_error("UNAUTHENTICATED", None), None),
            Outcome::RefreshAndRetry
        );
        assert!(matches!(
            classify_fcm(401, &fcm_error("UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR")), None),
            Outcome::Failed { .. }
        ));
        assert!(matches!(
            classify_fcm(403, &fcm_error("PERMISSION_DENIED", None), None),
            Outcome::Failed { .. }
        ));
        assert_eq!(
            classify_fcm(429, &fcm_error("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED")), ra),
            Outcome::Retry { retry_after: ra }
        );
        assert_eq!(
            classify_fcm(500, &fcm_error("INTERNAL", Some("INTERNAL")), None),
            Outcome::Retry { retry_after: None }
        );
        assert_eq!(
            classify_fcm(503, &FcmError::default(), None),
            Outcome::Retry { retry_after: None }
        );
    }

    fn hms(code: &str, msg: &str) -> HmsAnswer {
        HmsAnswer::parse(
            format!(
                r#"{{"code":"{code}","msg":{},"requestId":"r"}}"#,
                serde_json::to_string(msg).unwrap()
            )
            .as_bytes(),
        )
    }

    #[test]
    fn hms_table() {
        let ra = Some(Duration::from_secs(9));
        assert_eq!(
            classify_hms(200, &hms("80000000", "Success"), "t", None),
            Outcome::Accepted
        );
        let partial = hms("80100000", r#"{"success":0,"failure":1,"illegal_tokens":["t"]}"#);
        assert_eq!(classify_hms(200, &partial, "t", None), Outcome::Unregistered);
        assert_eq!(classify_hms(200, &partial, "other", None), Outcome::Accepted);
        assert_eq!(
            classify_hms(400, &hms("80300007", "All the tokens are invalid"), "t", None),
            Outcome::Unregistered
        );
        assert_eq!(
            classify_hms(400, &hms("80100001", "bad"), "t", None),
            Outcome::Rejected {
                reason: "80100001".into()
            }
        );
        assert_eq!(
            classify_hms(413, &hms("80300008", "big"), "t", None),
            Outcome::Rejected {
                reason: "80300008".into()
            }
        );
        assert_eq!(
            classify_hms(401, &hms("80200003", "expired"), "t", None),
            Outcome::RefreshAndRetry
        );
        assert!(matches!(
            classify_hms(401, &hms("80200001", "auth"), "t", None),
            Outcome::Failed { .. }
        ));
        assert!(matches!(
            classify_hms(403, &hms("80300002", "no"), "t", None),
            Outcome::Failed { .. }
        ));
        assert_eq!(
            classify_hms(500, &hms("81000001", "internal"), "t", ra),
            Outcome::Retry { retry_after: ra }
        );
        assert_eq!(
            classify_hms(429, &HmsAnswer::default(), "t", ra),
            Outcome::Retry { retry_after: ra }
        );
        assert!(matches!(
            classify_hms(404, &HmsAnswer::parse(b"<html>"), "t", None),
            Outcome::Failed { .. }
        ));
        assert!(matches!(
            classify_hms(200, &HmsAnswer::parse(b"{}"), "t", None),
            Outcome::Failed { .. }
        ));
        assert_eq!(
            HmsAnswer::parse(br#"{"code":80000000}"#).code.as_deref(),
            Some("80000000")
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 01 Jan 2025 00:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 01 Jan 2025 00:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Tue, 31 Dec 2024 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
