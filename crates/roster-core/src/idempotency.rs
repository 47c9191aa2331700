//! `Idempotency-Key` (management-api.md §3.3): the first request with a key holds it while it runs
//! (a `RUNNING` record, committed at once so that a concurrent duplicate sees it), and its answer
//! is stored in the same transaction as its effects; later requests with the same key and the
//! same fingerprint get that answer again without effect.

use roster_model::{ErrorCode, Millis, now_millis};
use roster_store::{
    StoreError, Tx,
    push::{IdempotencyRecord, IdempotencyState},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Core, CoreError, CoreResult};

/// §3.3: a request that died without answering stops counting as running after this long.
pub const STALE_AFTER_MS: Millis = 60_000;

/// §3.3: how long answers are kept unless configured otherwise.
pub const DEFAULT_TTL_HOURS: u64 = 24;

/// A key held by the running request: pass it to the operation so that it stores its answer in
/// its own transaction, or settle it with [`Core::idempotency_answer`] / [`Core::idempotency_release`].
#[derive(Debug, Clone)]
pub struct IdempotencyHold {
    pub account_id: Uuid,
    pub key: String,
    pub fingerprint: String,
    /// This request.
    pub owner: Uuid,
    /// How long the answer is kept.
    pub ttl_ms: Millis,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum IdempotencyStart {
    /// First use: process it; the key is held.
    Proceed(IdempotencyHold),
    /// Seen before with the same fingerprint: answer this again (`Idempotent-Replayed: true`).
    Replay { status: u16, body: Vec<u8> },
}

/// §3.3: 1–255 printable ASCII characters.
pub fn is_valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// §3.3: the fingerprint of a request: method, path, query and the exact body bytes.
pub fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), query.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(body);
    hex::encode(h.finalize())
}

/// The `DONE` record of a held key with its answer, for the operation's own transaction.
pub fn done_record(hold: &IdempotencyHold, status: u16, body: Vec<u8>, now: Millis) -> IdempotencyRecord {
    IdempotencyRecord {
        account_id: hold.account_id,
        key: hold.key.clone(),
        fingerprint: hold.fingerprint.clone(),
        owner: hold.owner,
        state: IdempotencyState::Done,
        response_status: Some(status),
        response_body: Some(body),
        created_at: now,
        expires_at: now.saturating_add(hold.ttl_ms),
    }
}

impl Core {
    /// Looks the key up and, on first use (or after its record expired, or went stale while
    /// `RUNNING`), holds it for this request. Same key with another fingerprint: `422
    /// IDEMPOTENCY_KEY_REUSED`; same key while its first request runs: `409
    /// IDEMPOTENCY_KEY_IN_PROGRESS`.
    pub async fn idempotency_start(
        &self,
        account_id: Uuid,
        key: &str,
        fingerprint: &str,
        ttl_hours: u64,
    ) -> CoreResult<IdempotencyStart> {
        let ttl_ms = Millis::try_from(ttl_hours.saturating_mul(3_600_000)).unwrap_or(Millis::MAX / 2);
        let now = now_millis();
        crate::in_write_tx!(self, |tx| async {
            let found = tx.idempotency_record(account_id, key).await?;
            let absent = found.is_none();
            if let Some(found) = found
                && found.expires_at > now
                && !(found.state == IdempotencyState::Running && now - found.created_at >= STALE_AFTER_MS)
            {
                if found.fingerprint != fingerprint {
                    return Err(CoreError::api(
                        ErrorCode::IdempotencyKeyReused,
                        "This Idempotency-Key was used with a different request",
                    ));
                }
                return match (found.state, found.response_status, found.response_body) {
                    (IdempotencyState::Done, Some(status), Some(body)) => Ok(IdempotencyStart::Replay { status, body }),
                    _ => Err(CoreError::api(
                        ErrorCode::IdempotencyKeyInProgress,
                        "A request with this Idempotency-Key is still being processed",
                    )),
                };
            }
            let hold = IdempotencyHold {
                account_id,
                key: key.to_owned(),
                fingerprint: fingerprint.to_owned(),
                owner: Uuid::new_v4(),
                ttl_ms,
            };
            let running = IdempotencyRecord {
                account_id,
                key: key.to_owned(),
                fingerprint: fingerprint.to_owned(),
                owner: hold.owner,
                state: IdempotencyState::Running,
                response_status: None,
                response_body: None,
                created_at: now,
                expires_at: now.saturating_add(ttl_ms),
            };
            // A first use inserts (a concurrent first use then conflicts, and the retry sees its
            // record); an expired or stale record, locked by the read, is taken over.
            if absent {
                tx.insert_idempotency_record(&running).await?;
            } else {
                tx.put_idempotency_record(&running).await?;
            }
            Ok(IdempotencyStart::Proceed(hold))
        })
    }

    /// Stores the answer of a held key that the operation did not store itself (a refusal
    /// before any effect), if this request still holds it.
    pub async fn idempotency_answer(&self, hold: &IdempotencyHold, status: u16, body: Vec<u8>) -> CoreResult<()> {
        let now = now_millis();
        crate::in_write_tx!(self, |tx| async {
            match tx.idempotency_record(hold.account_id, &hold.key).await? {
                Some(r) if r.owner == hold.owner && r.state == IdempotencyState::Running => {
                    tx.put_idempotency_record(&done_record(hold, status, body.clone(), now))
                        .await?;
                }
                _ => {}
            }
            Ok::<_, CoreError>(())
        })
    }

    /// Lets go of a held key without an answer (a 5xx or 429 stores nothing, §3.3).
    pub async fn idempotency_release(&self, hold: &IdempotencyHold) -> CoreResult<()> {
        crate::in_write_tx!(self, |tx| async {
            tx.delete_idempotency_record(hold.account_id, &hold.key, hold.owner)
                .await?;
            Ok::<_, CoreError>(())
        })
    }
}

/// Stores the answer of a held `Idempotency-Key` in the operation's own transaction (§3.3): the
/// status and the resource's JSON, byte for byte what the route sends. Nothing without a hold.
pub async fn store_answer(
    tx: &mut dyn Tx,
    hold: Option<&IdempotencyHold>,
    status: u16,
    resource: &impl serde::Serialize,
    now: Millis,
) -> CoreResult<()> {
    if let Some(hold) = hold {
        let body = serde_json::to_vec(resource)
            .map_err(|e| CoreError::Store(StoreError::Other(format!("answer did not serialise: {e}"))))?;
        tx.put_idempotency_record(&done_record(hold, status, body, now)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_fingerprints() {
        assert!(is_valid_key("a"));
        assert!(is_valid_key(&"k".repeat(255)));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(&"k".repeat(256)));
        assert!(!is_valid_key("tab\there"));
        assert!(!is_valid_key("ž"));
        let f = fingerprint("POST", "/push/3/messages", "", b"{}");
        assert_eq!(f, fingerprint("POST", "/push/3/messages", "", b"{}"));
        assert_ne!(f, fingerprint("POST", "/push/3/messages", "", b"{ }"));
        assert_ne!(f, fingerprint("POST", "/push/3/messages", "a=1", b"{}"));
        // Parts are length-prefixed: moving bytes between them changes the fingerprint.
        assert_ne!(fingerprint("POST", "/a", "b", b""), fingerprint("POST", "/ab", "", b""));
    }
}
