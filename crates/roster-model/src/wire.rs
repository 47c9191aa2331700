//! Response JSON of the mobile API (mobile-api.md §4.1, §4.2), in the key order of the spec's
//! tables. Absent values are omitted, never `null`. The client SDK decodes the same types.

use serde::{Deserialize, Serialize};

use crate::domain::{CustomAttributes, Installation, Person};

/// Installation JSON (mobile-api.md §4.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallationJson {
    pub push_reg_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub push_service_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub push_service_token: Option<String>,
    #[serde(default = "yes")]
    pub reg_enabled: bool,
    #[serde(default)]
    pub is_primary: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notifications_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub application_user_id: Option<String>,
    #[serde(default)]
    pub custom_attributes: CustomAttributes,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sdk_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub app_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_secure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device_timezone_offset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inappchat: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inbox: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub webrtcui: Option<bool>,
}

fn yes() -> bool {
    true
}

impl InstallationJson {
    /// The JSON of an installation; the token only when it is the caller's own (§4.1).
    pub fn of(i: &Installation, own: bool) -> InstallationJson {
        let s = &i.system;
        InstallationJson {
            push_reg_id: i.push_reg_id.clone(),
            push_service_type: i.push_service_type.map(|t| t.as_str().to_string()),
            push_service_token: if own { i.push_service_token.clone() } else { None },
            reg_enabled: i.reg_enabled,
            is_primary: i.is_primary,
            notifications_enabled: s.notifications_enabled,
            application_user_id: i.application_user_id.clone(),
            custom_attributes: i.custom_attributes.clone(),
            sdk_version: s.sdk_version.clone(),
            app_version: s.app_version.clone(),
            os: s.os.clone(),
            os_version: s.os_version.clone(),
            device_manufacturer: s.device_manufacturer.clone(),
            device_model: s.device_model.clone(),
            device_name: s.device_name.clone(),
            device_secure: s.device_secure,
            language: s.language.clone(),
            device_timezone_offset: s.device_timezone_offset.clone(),
            inappchat: s.inappchat,
            inbox: s.inbox,
            webrtcui: s.webrtcui,
        }
    }
}

/// A phone of user JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneJson {
    pub number: String,
}

/// An email of user JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailJson {
    pub address: String,
}

/// User JSON of a response (mobile-api.md §4.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub birthday: Option<String>,
    #[serde(default)]
    pub phones: Vec<PhoneJson>,
    #[serde(default)]
    pub emails: Vec<EmailJson>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub custom_attributes: CustomAttributes,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub user_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instances: Option<Vec<InstallationJson>>,
}

impl UserJson {
    /// The user JSON of a person with its installations in the calling application (oldest
    /// first); only `caller`'s element carries its token.
    pub fn of(p: &Person, instances: &[Installation], caller: &str) -> UserJson {
        UserJson {
            external_user_id: p.external_user_id.clone(),
            first_name: p.first_name.clone(),
            middle_name: p.middle_name.clone(),
            last_name: p.last_name.clone(),
            gender: p.gender.map(|g| g.as_str().to_string()),
            birthday: p.birthday.clone(),
            phones: p.phones.iter().map(|n| PhoneJson { number: n.clone() }).collect(),
            emails: p.emails.iter().map(|a| EmailJson { address: a.clone() }).collect(),
            // BTreeSet iterates in code-point order (people.md §3.1: emitted sorted).
            tags: p.tags.iter().cloned().collect(),
            custom_attributes: p.custom_attributes.clone(),
            user_type: Some(p.person_type.as_str().to_string()),
            instances: Some(
                instances
                    .iter()
                    .map(|i| InstallationJson::of(i, i.push_reg_id == caller))
                    .collect(),
            ),
        }
    }
}

/// `GET /mobile/3/version` response (mobile-api.md §5.12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionJson {
    pub platform_type: String,
    pub library_version: String,
    pub update_url: String,
}
