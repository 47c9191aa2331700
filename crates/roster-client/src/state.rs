//! The persisted state (client-sdk.md §5.1) and the local views computed from it.

use roster_model::PushServiceType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ChangeTarget, PrivacySettings, PushRegistration,
    json::{self, ATTRS, JsonMap, Kind},
};

/// A confirmed copy and the pending delta on top of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pair {
    /// The last server-confirmed JSON.
    #[serde(default)]
    pub current: Option<JsonMap>,
    /// The pending PATCH-shaped delta.
    #[serde(default)]
    pub unreported: JsonMap,
}

/// The desired push token (what the host handed over), compared with the confirmed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredPush {
    pub service_type: PushServiceType,
    pub token: String,
}

impl StoredPush {
    /// The token as the server stores it (APNs tokens are lowercased, mobile-api.md §4.1).
    pub(crate) fn of(p: &PushRegistration) -> StoredPush {
        let token = if p.service_type == PushServiceType::Apns {
            p.token.to_lowercase()
        } else {
            p.token.clone()
        };
        StoredPush {
            service_type: p.service_type,
            token,
        }
    }
}

/// System-data bookkeeping (client-sdk.md §5.1, §12.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SystemDataState {
    #[serde(default)]
    pub reported_hash: Option<String>,
    #[serde(default)]
    pub clear_pending: bool,
}

/// A registration lost to `NO_REGISTRATION`, remembered until the new one succeeds (§11, §16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Recovery {
    pub old_push_reg_id: String,
    pub had_identity: bool,
}

/// Everything the client keeps (client-sdk.md §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct State {
    pub schema_version: u64,
    pub app_code_hash: String,
    #[serde(default)]
    pub universal_installation_id: String,
    #[serde(default)]
    pub push_reg_id: Option<String>,
    /// The token to hold on the server; `None` means no token.
    #[serde(default)]
    pub push: Option<StoredPush>,
    #[serde(default)]
    pub installation: Pair,
    #[serde(default)]
    pub system_data: SystemDataState,
    #[serde(default)]
    pub user: Pair,
    #[serde(default)]
    pub depersonalize_pending: bool,
    #[serde(default)]
    pub recovery: Option<Recovery>,
}

/// Installation members that are personal data (client-sdk.md §12.1).
const PERSONAL_INSTALLATION_FIELDS: [&str; 2] = [ATTRS, "applicationUserId"];

impl State {
    /// A fresh state for an application code.
    pub(crate) fn fresh(app_code_hash: String) -> State {
        State {
            schema_version: crate::storage::SCHEMA_VERSION,
            app_code_hash,
            universal_installation_id: String::new(),
            push_reg_id: None,
            push: None,
            installation: Pair::default(),
            system_data: SystemDataState::default(),
            user: Pair::default(),
            depersonalize_pending: false,
            recovery: None,
        }
    }

    /// Removes what `user_data_persisting_disabled` never writes (client-sdk.md §12.1).
    pub(crate) fn strip_personal(&mut self) {
        self.user = Pair::default();
        for m in self
            .installation
            .current
            .iter_mut()
            .chain(std::iter::once(&mut self.installation.unreported))
        {
            for f in PERSONAL_INSTALLATION_FIELDS {
                m.remove(f);
            }
        }
    }

    /// The JSON written to `state.json`.
    pub(crate) fn to_file(&self, privacy: &PrivacySettings) -> Value {
        if privacy.user_data_persisting_disabled {
            let mut s = self.clone();
            s.strip_personal();
            serde_json::to_value(&s).expect("the state always serialises")
        } else {
            serde_json::to_value(self).expect("the state always serialises")
        }
    }

    /// The confirmed installation, or the defaults of a new one (`regEnabled` true, not primary,
    /// no attributes) before the registration.
    pub(crate) fn installation_base(&self) -> JsonMap {
        self.installation.current.clone().unwrap_or_else(default_installation)
    }

    /// The confirmed user, or an empty one.
    pub(crate) fn user_base(&self) -> JsonMap {
        self.user.current.clone().unwrap_or_else(empty_user)
    }

    /// The confirmed copy and the pending delta of the installation or the user.
    pub(crate) fn pair(&self, target: ChangeTarget) -> &Pair {
        match target {
            ChangeTarget::Installation => &self.installation,
            ChangeTarget::User => &self.user,
        }
    }

    /// See [`State::pair`].
    pub(crate) fn pair_mut(&mut self, target: ChangeTarget) -> &mut Pair {
        match target {
            ChangeTarget::Installation => &mut self.installation,
            ChangeTarget::User => &mut self.user,
        }
    }

    /// [`State::installation_base`] or [`State::user_base`].
    pub(crate) fn base(&self, target: ChangeTarget) -> JsonMap {
        match target {
            ChangeTarget::Installation => self.installation_base(),
            ChangeTarget::User => self.user_base(),
        }
    }

    /// [`State::prune_installation_delta`] or [`State::prune_user_delta`].
    pub(crate) fn prune_delta(&mut self, target: ChangeTarget) {
        match target {
            ChangeTarget::Installation => self.prune_installation_delta(),
            ChangeTarget::User => self.prune_user_delta(),
        }
    }

    /// The token the server confirmed, as the one to hold after a token change was rejected
    /// (client-sdk.md §6.2: the rejected change is discarded).
    pub(crate) fn confirmed_push(&self) -> Option<StoredPush> {
        let cur = self.installation.current.as_ref();
        let service_type = cur
            .and_then(|c| c.get("pushServiceType"))
            .and_then(Value::as_str)
            .and_then(PushServiceType::parse)?;
        let token = cur.and_then(|c| c.get("pushServiceToken")).and_then(Value::as_str)?;
        Some(StoredPush {
            service_type,
            token: token.to_string(),
        })
    }

    /// Confirmed installation with the pending delta and the desired token applied (without
    /// system data).
    pub(crate) fn installation_local(&self) -> JsonMap {
        let mut m = self.installation_base();
        json::apply(&mut m, &self.installation.unreported, Kind::Installation);
        match &self.push {
            Some(p) => {
                m.insert("pushServiceType".into(), Value::String(p.service_type.as_str().into()));
                m.insert("pushServiceToken".into(), Value::String(p.token.clone()));
            }
            None => {
                m.remove("pushServiceToken");
            }
        }
        if let Some(id) = &self.push_reg_id {
            m.insert("pushRegId".into(), Value::String(id.clone()));
        }
        m
    }

    /// Confirmed user with the pending delta applied.
    pub(crate) fn user_local(&self) -> JsonMap {
        let mut m = self.user_base();
        json::apply(&mut m, &self.user.unreported, Kind::User);
        m
    }

    /// The token change to send: `Some(Some(p))` set, `Some(None)` clear, `None` nothing.
    pub(crate) fn token_change(&self) -> Option<Option<StoredPush>> {
        let cur = self.installation.current.as_ref();
        let cur_type = cur.and_then(|c| c.get("pushServiceType")).and_then(Value::as_str);
        let cur_token = cur.and_then(|c| c.get("pushServiceToken")).and_then(Value::as_str);
        match &self.push {
            Some(p) if cur_type != Some(p.service_type.as_str()) || cur_token != Some(p.token.as_str()) => {
                Some(Some(p.clone()))
            }
            Some(_) => None,
            None if cur_token.is_some() => Some(None),
            None => None,
        }
    }

    /// Drops installation delta entries equal to the confirmed value (client-sdk.md §5.1). The
    /// personal fields of a copy stripped at start under `user_data_persisting_disabled` are
    /// unknown (a confirmed installation always has `customAttributes`), so their entries stay.
    pub(crate) fn prune_installation_delta(&mut self) {
        let base = self.installation_base();
        if base.contains_key(ATTRS) {
            json::prune(&mut self.installation.unreported, &base, Kind::Installation);
            return;
        }
        let mut personal = JsonMap::new();
        for f in PERSONAL_INSTALLATION_FIELDS {
            if let Some(v) = self.installation.unreported.remove(f) {
                personal.insert(f.to_string(), v);
            }
        }
        json::prune(&mut self.installation.unreported, &base, Kind::Installation);
        self.installation.unreported.extend(personal);
    }

    /// Drops user delta entries equal to the confirmed value, when the user is known at all.
    pub(crate) fn prune_user_delta(&mut self) {
        if let Some(current) = &self.user.current {
            json::prune(&mut self.user.unreported, current, Kind::User);
        }
    }

    /// Whether the user (confirmed or local) has an identity key.
    pub(crate) fn user_has_identity(&self) -> bool {
        let u = self.user_local();
        let non_empty = |k: &str| u.get(k).and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        u.get("externalUserId").is_some_and(|v| !v.is_null()) || non_empty("phones") || non_empty("emails")
    }

    /// The own element of a user response's `instances`.
    pub(crate) fn own_instance<'a>(&self, user: &'a JsonMap) -> Option<&'a JsonMap> {
        let id = self.push_reg_id.as_deref()?;
        user.get("instances")?.as_array()?.iter().find_map(|i| {
            let o = i.as_object()?;
            o.get("pushRegId")?
                .as_str()
                .filter(|p| p.eq_ignore_ascii_case(id))
                .map(|_| o)
        })
    }
}

/// The installation defaults before registration.
pub(crate) fn default_installation() -> JsonMap {
    json::obj(serde_json::json!({"regEnabled": true, "isPrimary": false, "customAttributes": {}}))
}

/// An empty (anonymous, unknown) user.
pub(crate) fn empty_user() -> JsonMap {
    json::obj(serde_json::json!({"phones": [], "emails": [], "tags": [], "customAttributes": {}}))
}
