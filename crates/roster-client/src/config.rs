//! Configuration (client-sdk.md §1), system data (§7) and the JWT supplier (§14).

use std::{path::PathBuf, sync::Arc, time::Duration};

use roster_model::PushServiceType;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use reqwest::Url;

use crate::json::JsonMap;

/// Supplies the JWT for user-data requests (client-sdk.md §14).
///
/// Called on the engine right before each GET user, PATCH user and personalize request; it must
/// return quickly. `None` means the request uses `App` auth. A panic counts as an invalid token.
pub trait JwtSupplier: Send + Sync {
    /// The current token, or `None`.
    fn jwt(&self) -> Option<String>;
}

impl<F> JwtSupplier for F
where
    F: Fn() -> Option<String> + Send + Sync,
{
    fn jwt(&self) -> Option<String> {
        self()
    }
}

/// A push token the host obtained from its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRegistration {
    /// `Firebase`, `Hms` or `Apns` (wire `Firebase`, `HMS`, `APNS`).
    pub service_type: PushServiceType,
    pub token: String,
}

/// Host-supplied device data (client-sdk.md §7). Absent values are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemInfo {
    /// `Linux`, `macOS`, `Windows`, or the target OS name (filled by [`SystemInfo::detect`]).
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device_manufacturer: Option<String>,
    pub device_model: Option<String>,
    pub device_name: Option<String>,
    pub app_version: Option<String>,
    /// E.g. `en`.
    pub language: Option<String>,
    /// A screen lock is set.
    pub device_secure: Option<bool>,
    /// The OS notification permission.
    pub notifications_enabled: Option<bool>,
}

impl SystemInfo {
    /// `os` and, where it can be read, `osVersion` of this machine; the host supplies the rest.
    pub fn detect() -> SystemInfo {
        let os = match std::env::consts::OS {
            "linux" => "Linux".to_string(),
            "macos" => "macOS".to_string(),
            "windows" => "Windows".to_string(),
            other => other.to_string(),
        };
        SystemInfo {
            os: Some(os),
            os_version: detect_os_version(),
            ..SystemInfo::default()
        }
    }
}

#[cfg(target_os = "linux")]
fn detect_os_version() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(not(target_os = "linux"))]
fn detect_os_version() -> Option<String> {
    None
}

/// Privacy settings (client-sdk.md §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrivacySettings {
    /// Nothing personal is written to disk (§12.1).
    pub user_data_persisting_disabled: bool,
    /// System data is reduced and the `User-Agent` carries only the SDK name and version (§12.2).
    pub system_info_sending_disabled: bool,
}

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// PEM certificates of private CAs, trusted in addition to the system's roots. There is no
    /// switch that disables TLS verification.
    pub extra_root_certificates: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            extra_root_certificates: Vec::new(),
        }
    }
}

/// Backoff of the retries (client-sdk.md §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(15 * 60),
        }
    }
}

/// Everything `RosterClient::start` needs (client-sdk.md §1).
#[derive(Clone)]
pub struct Config {
    /// Required, non-empty; sent as `Authorization: App <code>`.
    pub application_code: String,
    /// `http` or `https`, may carry a path prefix. Defaults to `http://127.0.0.1:8080`, where
    /// `roster serve` listens by default.
    pub base_url: Url,
    /// Required; created if missing. Holds `state.json` and `roster.lock`.
    pub storage_dir: PathBuf,
    /// The push token, if the host has one. When set it replaces a token stored earlier; when
    /// `None` a token stored earlier (by `set_push_token`) is kept.
    pub push: Option<PushRegistration>,
    pub system_info: SystemInfo,
    pub privacy: PrivacySettings,
    pub jwt_supplier: Option<Arc<dyn JwtSupplier>>,
    pub http: HttpSettings,
    pub retry: RetrySettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            application_code: String::new(),
            base_url: Url::parse("http://127.0.0.1:8080").expect("a valid URL"),
            storage_dir: PathBuf::new(),
            push: None,
            system_info: SystemInfo::detect(),
            privacy: PrivacySettings::default(),
            jwt_supplier: None,
            http: HttpSettings::default(),
            retry: RetrySettings::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("application_code", &"<redacted>")
            .field("base_url", &self.base_url.as_str())
            .field("storage_dir", &self.storage_dir)
            .field("push", &self.push.as_ref().map(|p| p.service_type))
            .field("system_info", &self.system_info)
            .field("privacy", &self.privacy)
            .field("jwt_supplier", &self.jwt_supplier.is_some())
            .field("http", &self.http)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The SDK version sent as `sdkVersion` and in the `User-Agent`.
pub(crate) const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The system-data fields dropped by `system_info_sending_disabled` (client-sdk.md §12.2).
pub(crate) const REDUCED_FIELDS: [&str; 6] = [
    "deviceModel",
    "appVersion",
    "deviceSecure",
    "language",
    "deviceName",
    "deviceTimezoneOffset",
];

/// The system-data block (client-sdk.md §7), in a fixed key order so that its JSON is canonical.
pub(crate) fn system_block(info: &SystemInfo, sending_disabled: bool) -> JsonMap {
    let mut m = Map::new();
    let mut text = |k: &str, v: &Option<String>| {
        if let Some(s) = v
            && !s.is_empty()
        {
            m.insert(k.into(), Value::String(s.clone()));
        }
    };
    text("sdkVersion", &Some(SDK_VERSION.to_string()));
    text("os", &info.os);
    text("osVersion", &info.os_version);
    text("deviceManufacturer", &info.device_manufacturer);
    if !sending_disabled {
        text("deviceModel", &info.device_model);
        text("deviceName", &info.device_name);
        text("appVersion", &info.app_version);
        text("language", &info.language);
        if let Some(b) = info.device_secure {
            m.insert("deviceSecure".into(), Value::Bool(b));
        }
    }
    if let Some(b) = info.notifications_enabled {
        m.insert("notificationsEnabled".into(), Value::Bool(b));
    }
    if !sending_disabled {
        m.insert("deviceTimezoneOffset".into(), Value::String(timezone_offset()));
    }
    m
}

/// SHA-256 (hex) of the canonical JSON of a block.
pub(crate) fn block_hash(block: &JsonMap) -> String {
    sha256_hex(serde_json::to_string(block).expect("JSON always serialises").as_bytes())
}

/// SHA-256 as lowercase hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The local UTC offset as `GMT+01:00` (client-sdk.md §7).
pub(crate) fn timezone_offset() -> String {
    let secs = local_offset_seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!("GMT{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60)
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd"
))]
fn local_offset_seconds() -> i64 {
    // SAFETY: `time(NULL)` and `localtime_r` with a valid output buffer; `localtime_r` is the
    // re-entrant variant and writes only to `tm`.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff as i64
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd"
)))]
fn local_offset_seconds() -> i64 {
    time::UtcOffset::current_local_offset()
        .map(|o| i64::from(o.whole_seconds()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezone_format() {
        let s = timezone_offset();
        assert!(s.starts_with("GMT+") || s.starts_with("GMT-"), "{s}");
        assert_eq!(s.len(), 9, "{s}");
    }

    #[test]
    fn reduced_block() {
        let info = SystemInfo {
            os: Some("Linux".into()),
            device_model: Some("Box".into()),
            app_version: Some("1.0".into()),
            notifications_enabled: Some(true),
            device_secure: Some(true),
            ..Default::default()
        };
        let full = system_block(&info, false);
        assert_eq!(full["deviceModel"], "Box");
        assert!(full.contains_key("deviceTimezoneOffset"));
        let reduced = system_block(&info, true);
        for f in REDUCED_FIELDS {
            assert!(!reduced.contains_key(f), "{f}");
        }
        assert_eq!(reduced["sdkVersion"], SDK_VERSION);
        assert_eq!(reduced["notificationsEnabled"], true);
    }
}
