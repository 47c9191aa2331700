//! Accounts, applications, JWT keys and API keys: what `roster serve`, `roster app` and
//! `roster apikey` do directly on the store (management-api.md §1.1, §7.1, §7.2).

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use rand::RngCore;
use roster_model::{
    Account, ApiError, ApiKey, Application, ErrorCode, JwtKey, now_millis,
    resources::{ApiKeyResource, ApplicationResource, JwtKeyCreated},
};
use roster_store::{Constraint, StoreError, Tx};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    Core, CoreError, CoreResult,
    idempotency::{IdempotencyHold, store_answer},
    manage::ProvidersUpdate,
};

/// The settings of a new application (`POST /api/v1/applications`).
#[derive(Clone, Default)]
pub struct NewApplication {
    pub name: String,
    pub require_jwt_for_user_data: bool,
    pub restrict_user_data_from_sdk: bool,
    /// The provider settings, applied to an empty document (already validated by the caller).
    pub providers: Option<ProvidersUpdate>,
}

/// The scopes of management-api.md §1.2.
pub const SCOPES: &[&str] = &["people:read", "people:write", "push:send", "admin"];

/// At most this many JWT keys per application (management-api.md §7.1).
pub const MAX_JWT_KEYS: usize = 10;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// A new application code: 64 random lowercase hex characters.
pub fn new_application_code() -> String {
    hex::encode(random_bytes::<32>())
}

/// The lowercase hex SHA-256 under which an API key is stored.
pub fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The default account, creating it in `tx` when the store has none.
pub async fn ensure_default_account(tx: &mut dyn Tx) -> CoreResult<Account> {
    if let Some(a) = tx.default_account().await? {
        return Ok(a);
    }
    let account = Account {
        id: Uuid::new_v4(),
        name: "default".into(),
        created_at: now_millis(),
    };
    tx.insert_account(&account).await?;
    Ok(account)
}

/// A newly created API key with its secret, shown once.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// A newly created JWT key with its secret in standard base64, shown once.
#[derive(Debug, Clone)]
pub struct CreatedJwtKey {
    pub key: JwtKey,
    pub secret_base64: String,
}

/// An invalid admin request (management-api.md §2: `BAD_REQUEST`).
fn bad(text: impl Into<String>) -> CoreError {
    CoreError::Api(ApiError::new(ErrorCode::BadRequest, text))
}

impl Core {
    /// The account to act in: `account` if given (it must exist), else the default account
    /// (created on an empty store).
    pub async fn account_or_default(&self, account: Option<Uuid>) -> CoreResult<Account> {
        in_write_tx!(self, |tx| async {
            match account {
                Some(id) => tx.account(id).await?.ok_or_else(|| bad(format!("no account {id}"))),
                None => ensure_default_account(tx).await,
            }
        })
    }

    /// Creates an application in an account (management-api.md §7.1) with default settings.
    pub async fn create_application(&self, account_id: Uuid, name: &str) -> CoreResult<Application> {
        let new = NewApplication {
            name: name.to_string(),
            ..NewApplication::default()
        };
        self.create_application_with(account_id, &new, None).await
    }

    /// `POST /api/v1/applications`: creates an application with its settings in one transaction,
    /// storing the `201` answer of a held `Idempotency-Key` with it.
    pub async fn create_application_with(
        &self,
        account_id: Uuid,
        new: &NewApplication,
        hold: Option<&IdempotencyHold>,
    ) -> CoreResult<Application> {
        let chars = new.name.chars().count();
        if chars == 0 || chars > 100 {
            return Err(CoreError::Api(
                ApiError::new(ErrorCode::BadRequest, "name must be 1 to 100 characters").at("name"),
            ));
        }
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let empty = serde_json::json!({});
            let providers = match &new.providers {
                None => empty,
                Some(update) => update(&empty).ok_or_else(|| bad("invalid provider settings"))?,
            };
            let app = Application {
                account_id,
                id: Uuid::new_v4(),
                name: new.name.clone(),
                application_code: new_application_code(),
                enabled: true,
                require_jwt_for_user_data: new.require_jwt_for_user_data,
                restrict_user_data_from_sdk: new.restrict_user_data_from_sdk,
                providers,
                created_at: now,
                updated_at: now,
            };
            tx.insert_application(&app).await?;
            store_answer(tx, hold, 201, &ApplicationResource::from(&app), now).await?;
            Ok(app)
        })
    }

    /// The applications of an account.
    pub async fn list_applications(&self, account_id: Uuid) -> CoreResult<Vec<Application>> {
        in_read_tx!(self, |tx| async { Ok(tx.applications(account_id).await?) })
    }

    /// An application of an account by id or application code.
    pub async fn find_application(&self, account_id: Uuid, app_ref: &str) -> CoreResult<Application> {
        let app_ref = app_ref.trim().to_ascii_lowercase();
        let found = in_read_tx!(self, |tx| async {
            let by_id = match Uuid::parse_str(&app_ref) {
                Ok(id) => tx.application(account_id, id).await?,
                Err(_) => None,
            };
            match by_id {
                Some(a) => Ok::<_, CoreError>(Some(a)),
                None => Ok(tx
                    .application_by_code(&app_ref)
                    .await?
                    .filter(|a| a.account_id == account_id)),
            }
        })?;
        found.ok_or_else(|| CoreError::api(ErrorCode::NotFound, format!("no application {app_ref}")))
    }

    /// Changes the settings of an application; `None` leaves a setting as it is.
    pub async fn update_application_settings(
        &self,
        app: &Application,
        enabled: Option<bool>,
        require_jwt: Option<bool>,
        restrict_user_data: Option<bool>,
    ) -> CoreResult<Application> {
        let now = now_millis();
        in_write_tx!(self, |tx| async {
            let mut current = tx
                .application(app.account_id, app.id)
                .await?
                .ok_or_else(|| bad("the application no longer exists"))?;
            if let Some(v) = enabled {
                current.enabled = v;
            }
            if let Some(v) = require_jwt {
                current.require_jwt_for_user_data = v;
            }
            if let Some(v) = restrict_user_data {
                current.restrict_user_data_from_sdk = v;
            }
            current.updated_at = now;
            tx.update_application(&current).await?;
            Ok(current)
        })
    }

    /// Creates a JWT key for an application (`kid` generated when absent): 32 random secret
    /// bytes, handed out once in standard base64 (management-api.md §7.1).
    pub async fn create_jwt_key(&self, app: &Application, kid: Option<&str>) -> CoreResult<CreatedJwtKey> {
        self.create_jwt_key_held(app, kid, None).await
    }

    /// [`Core::create_jwt_key`], storing the `201` answer of a held `Idempotency-Key` (with the
    /// secret: the key's secret is stored in the store anyway) in the same transaction.
    pub async fn create_jwt_key_held(
        &self,
        app: &Application,
        kid: Option<&str>,
        hold: Option<&IdempotencyHold>,
    ) -> CoreResult<CreatedJwtKey> {
        let kid = match kid {
            Some(k) => {
                let ok = (1..=64).contains(&k.len())
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if !ok {
                    return Err(CoreError::Api(
                        ApiError::new(ErrorCode::BadRequest, "kid must be 1 to 64 of A-Z a-z 0-9 . _ -").at("kid"),
                    ));
                }
                k.to_string()
            }
            None => format!("key-{}", &URL_SAFE_NO_PAD.encode(random_bytes::<6>())),
        };
        let secret = random_bytes::<32>().to_vec();
        let now = now_millis();
        let key = in_write_tx!(self, |tx| async {
            if tx.jwt_keys(app.account_id, app.id).await?.len() >= MAX_JWT_KEYS {
                return Err(CoreError::api(
                    ErrorCode::Conflict,
                    format!("an application has at most {MAX_JWT_KEYS} JWT keys"),
                ));
            }
            let key = JwtKey {
                account_id: app.account_id,
                application_id: app.id,
                kid: kid.clone(),
                secret: secret.clone(),
                created_at: now,
            };
            match tx.insert_jwt_key(&key).await {
                Err(StoreError::Conflict {
                    constraint: Constraint::JwtKid,
                }) => Err(CoreError::api(
                    ErrorCode::AlreadyExists,
                    format!("kid {kid} already exists"),
                )),
                Err(e) => Err(e.into()),
                Ok(()) => {
                    let shown = JwtKeyCreated::new(&key, &STANDARD.encode(&key.secret));
                    store_answer(tx, hold, 201, &shown, now).await?;
                    Ok(key)
                }
            }
        })?;
        Ok(CreatedJwtKey {
            secret_base64: STANDARD.encode(&key.secret),
            key,
        })
    }

    /// The JWT keys of an application.
    pub async fn list_jwt_keys(&self, app: &Application) -> CoreResult<Vec<JwtKey>> {
        in_read_tx!(self, |tx| async { Ok(tx.jwt_keys(app.account_id, app.id).await?) })
    }

    /// Deletes a JWT key; tokens signed with it are refused from then on. Whether it existed.
    pub async fn delete_jwt_key(&self, app: &Application, kid: &str) -> CoreResult<bool> {
        in_write_tx!(self, |tx| async {
            Ok(tx.delete_jwt_key(app.account_id, app.id, kid).await?)
        })
    }

    /// Creates an API key with scopes (management-api.md §1.1): `rk_` + 43 base64url
    /// characters; only its SHA-256 and first 10 characters are stored.
    pub async fn create_api_key(
        &self,
        account_id: Uuid,
        name: &str,
        scopes: &[String],
        expires_at: Option<i64>,
    ) -> CoreResult<CreatedApiKey> {
        self.create_api_key_held(account_id, name, scopes, expires_at, None)
            .await
    }

    /// [`Core::create_api_key`], storing the `201` answer of a held `Idempotency-Key` in the same
    /// transaction — without `key` (management-api.md §3.3: Roster keeps only the key's hash, so a
    /// replay omits it).
    pub async fn create_api_key_held(
        &self,
        account_id: Uuid,
        name: &str,
        scopes: &[String],
        expires_at: Option<i64>,
        hold: Option<&IdempotencyHold>,
    ) -> CoreResult<CreatedApiKey> {
        if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
            return Err(bad(format!(
                "scopes must be a non-empty subset of {}",
                SCOPES.join(", ")
            )));
        }
        let chars = name.chars().count();
        if chars == 0 || chars > 100 {
            return Err(bad("name must be 1 to 100 characters"));
        }
        let now = now_millis();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(bad("expiresAt must be in the future"));
        }
        let (key, secret) = new_api_key(account_id, name, scopes, expires_at, now);
        in_write_tx!(self, |tx| async {
            tx.insert_api_key(&key).await?;
            store_answer(tx, hold, 201, &ApiKeyResource::from(&key), now).await
        })?;
        Ok(CreatedApiKey { key, secret })
    }

    /// management-api.md §1.1: the `admin` key a `roster serve` creates when the account has no
    /// API key yet; `None` when it has one. One transaction, serialised per account, so two
    /// servers starting at once on an empty store make one key, not two.
    pub async fn create_first_admin_key(&self, account_id: Uuid, name: &str) -> CoreResult<Option<CreatedApiKey>> {
        let now = now_millis();
        let (key, secret) = new_api_key(account_id, name, &["admin".to_string()], None, now);
        let created = in_write_tx!(self, |tx| async {
            tx.lock_key(&format!("first-admin-key:{account_id}")).await?;
            if !tx.api_keys(account_id).await?.is_empty() {
                return Ok(false);
            }
            tx.insert_api_key(&key).await?;
            Ok::<_, CoreError>(true)
        })?;
        Ok(created.then_some(CreatedApiKey { key, secret }))
    }
}

/// A new API key (`rk_` + 43 base64url characters) and its stored form; only the SHA-256 and
/// the first 10 characters are kept.
fn new_api_key(account_id: Uuid, name: &str, scopes: &[String], expires_at: Option<i64>, now: i64) -> (ApiKey, String) {
    let secret = format!("rk_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let key = ApiKey {
        account_id,
        id: Uuid::new_v4(),
        name: name.to_string(),
        scopes: scopes.to_vec(),
        key_hash: api_key_hash(&secret),
        key_prefix: secret[..10].to_string(),
        created_at: now,
        expires_at,
        last_used_at: None,
    };
    (key, secret)
}

impl Core {
    /// The API keys of an account.
    pub async fn list_api_keys(&self, account_id: Uuid) -> CoreResult<Vec<ApiKey>> {
        in_read_tx!(self, |tx| async { Ok(tx.api_keys(account_id).await?) })
    }
}
