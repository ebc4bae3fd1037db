//! S3 keys: an access key / secret pair for a user, so S3 clients (awscli, boto3,
//! rclone) sign requests as that user and bucket policies and ACLs decide what
//! they may do. SigV4 needs the secret itself, not a hash, so it is kept wrapped
//! (AES-256-GCM) by the master key of encryption at rest ([`Keyring`]); someone
//! with the records but not the master key cannot sign. The secret is shown once,
//! when the pair is made.
//!
//! Records are read through [`crate::docs`] on every request (no cache), so a
//! revoked key, an expired one or a disabled user is refused at once on every node.
//!
//! | group     | name       | document                          |
//! |-----------|------------|-----------------------------------|
//! | `s3keys`  | access key | [`KeyRecord`] + the wrapped secret |

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{KeyRecord, LAST_USED_EVERY_MS, Principal, Users};
use crate::clock::Millis;
use crate::crypto::Keyring;
use crate::docs::{DocsError, Write};

const S3KEYS: &str = "s3keys";

/// The canonical id S3 gives the root pair (the config's `s3.access_key`), the
/// owner of every bucket; no user may be called this.
pub const ROOT_ID: &str = "darkroom";

/// An S3 key pair just made: the secret is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewS3Key {
    /// The access key id (`DRK...`, 20 characters), also the record's `id`.
    pub access_key: String,
    /// The secret access key: kept only wrapped by the master key.
    pub secret_key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// The record with its secret wrapped by the master key.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    record: KeyRecord,
    /// The master key that wraps `wrapped_secret` ([`Keyring`] ids).
    master_key_id: String,
    /// base64(nonce || AES-256-GCM(master key, the secret's 32 random bytes)).
    wrapped_secret: String,
}

fn secret_text(raw: &[u8; 32]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn new_access_key() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "DRK{}",
        Alphanumeric.sample_string(&mut rand::rng(), 17).to_uppercase()
    )
}

impl Users {
    /// The master key wrapping S3 secrets (without it, S3 keys cannot be made
    /// or used).
    #[must_use]
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    fn keyring(&self) -> Result<&Keyring, DocsError> {
        self.keyring.as_ref().ok_or_else(|| {
            DocsError::Internal(
                "S3 keys need the master key (s3.master_key_file or s3.master_key), which is not loaded"
                    .into(),
            )
        })
    }

    /// Makes an S3 key pair for `user`, valid for `ttl_ms` (or until revoked).
    pub async fn create_s3_key(
        &self,
        user: &str,
        label: &str,
        ttl_ms: Option<Millis>,
    ) -> Result<NewS3Key, DocsError> {
        if user == ROOT_ID {
            return Err(DocsError::invalid(
                "user",
                format!("{ROOT_ID:?} is the S3 root account's id; give S3 keys to another user"),
            ));
        }
        let keyring = self.keyring()?.clone();
        let owner = self
            .get(user)
            .await?
            .ok_or_else(|| DocsError::invalid("user", format!("no user {user:?}")))?;
        if label.chars().count() > 128 {
            return Err(DocsError::invalid("name", "at most 128 characters"));
        }
        let raw: [u8; 32] = rand::random();
        let (master_key_id, wrapped_secret) = keyring.wrap(&raw);
        let access_key = new_access_key();
        let now = self.clock.now_ms();
        let record = KeyRecord {
            id: access_key.clone(),
            user: owner.name,
            label: label.to_owned(),
            created_ms: now,
            expires_ms: ttl_ms.map(|t| now.saturating_add(t)),
            last_used_ms: None,
            s3: true,
        };
        let stored = serde_json::to_vec(&Stored {
            record: record.clone(),
            master_key_id,
            wrapped_secret,
        })?;
        self.docs
            .update(S3KEYS, &access_key, move |old| match old {
                Some(_) => Err(DocsError::Conflict("access key collision; try again".into())),
                None => Ok((Write::Put(stored.clone()), ())),
            })
            .await?;
        Ok(NewS3Key {
            access_key,
            secret_key: secret_text(&raw),
            record,
        })
    }

    /// Every S3 key (of `user`), without secrets.
    pub(super) async fn s3_keys(&self, user: Option<&str>) -> Result<Vec<KeyRecord>, DocsError> {
        let mut out = Vec::new();
        for (_, raw) in self.docs.list(S3KEYS).await? {
            let s: Stored = serde_json::from_slice(&raw)?;
            if user.is_none_or(|u| s.record.user == u) {
                out.push(s.record);
            }
        }
        Ok(out)
    }

    /// Deletes the S3 key `access_key`; `false` when there is none.
    pub(super) async fn revoke_s3(&self, access_key: &str) -> Result<bool, DocsError> {
        self.docs
            .update(S3KEYS, access_key, |old| match old {
                Some(_) => Ok((Write::Delete, true)),
                None => Ok((Write::Keep, false)),
            })
            .await
    }

    /// The live record of `access_key` and who it is: `None` when unknown,
    /// expired, or its user is disabled or gone.
    async fn live_s3(&self, access_key: &str) -> Result<Option<(Stored, Principal)>, DocsError> {
        let Some(raw) = self.docs.get(S3KEYS, access_key).await? else {
            return Ok(None);
        };
        let stored: Stored = serde_json::from_slice(&raw)?;
        if stored.record.expires_ms.is_some_and(|e| e <= self.clock.now_ms()) {
            return Ok(None);
        }
        let Some(user) = self.get(&stored.record.user).await? else {
            return Ok(None);
        };
        if user.disabled {
            return Ok(None);
        }
        let who = Principal {
            user: user.name,
            role: user.role,
        };
        Ok(Some((stored, who)))
    }

    /// The secret of a live S3 key (for checking a signature), or `None`.
    pub async fn s3_secret(&self, access_key: &str) -> Result<Option<String>, DocsError> {
        let Some((stored, _)) = self.live_s3(access_key).await? else {
            return Ok(None);
        };
        let raw = self
            .keyring()?
            .unwrap(&stored.master_key_id, &stored.wrapped_secret)
            .map_err(|e| DocsError::Internal(format!("S3 key {access_key}: {e}")))?;
        Ok(Some(secret_text(&raw)))
    }

    /// Who signed with the live S3 key `access_key` (recording its use), or `None`.
    pub async fn s3_principal(&self, access_key: &str) -> Result<Option<Principal>, DocsError> {
        let Some((stored, who)) = self.live_s3(access_key).await? else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        if stored
            .record
            .last_used_ms
            .is_none_or(|t| now - t >= LAST_USED_EVERY_MS)
        {
            let r = self
                .docs
                .update(S3KEYS, access_key, move |old| {
                    let Some(old) = old else {
                        return Ok((Write::Keep, ()));
                    };
                    let mut s: Stored = serde_json::from_slice(old)?;
                    s.record.last_used_ms = Some(now);
                    Ok((Write::Put(serde_json::to_vec(&s)?), ()))
                })
                .await;
            if let Err(e) = r {
                tracing::debug!(key = access_key, error = %e, "cannot record an S3 key's use");
            }
        }
        Ok(Some(who))
    }

    /// Re-wraps every S3 secret with `keyring`'s current key (a master key
    /// rotation); returns how many were re-wrapped.
    pub async fn rewrap_s3_secrets(&self, keyring: &Keyring) -> Result<usize, DocsError> {
        let mut n = 0;
        for (name, _) in self.docs.list(S3KEYS).await? {
            let keyring = keyring.clone();
            let changed = self
                .docs
                .update(S3KEYS, &name, move |old| {
                    let Some(old) = old else {
                        return Ok((Write::Keep, false));
                    };
                    let mut s: Stored = serde_json::from_slice(old)?;
                    if s.master_key_id == keyring.current_id() {
                        return Ok((Write::Keep, false));
                    }
                    let raw = keyring
                        .unwrap(&s.master_key_id, &s.wrapped_secret)
                        .map_err(|e| DocsError::Internal(format!("S3 key {}: {e}", s.record.id)))?;
                    (s.master_key_id, s.wrapped_secret) = keyring.wrap(&raw);
                    Ok((Write::Put(serde_json::to_vec(&s)?), true))
                })
                .await?;
            n += usize::from(changed);
        }
        Ok(n)
    }
}
