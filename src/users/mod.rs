//! Users and their API keys: who may call darkroom's API and as what role —
//! `admin` (everything, user management), `user` (submit, see and cancel their own
//! jobs) or `viewer` (read status and their own jobs). `api.token` stays a
//! bootstrap admin token.
//!
//! A key is `drk_{id}_{secret}`: the id finds its record, the secret is kept only
//! as a SHA-256 hash (it is 256 random bits, so a slow hash adds nothing) and is
//! compared in constant time. The secret is shown once, when the key is made.
//! Records live in the queue's store ([`crate::docs`]): on Redis every node sees a
//! revocation at once.
//!
//! | group   | name      | document      |
//! |---------|-----------|---------------|
//! | `users` | user name | [`User`]      |
//! | `keys`  | key id    | [`KeyRecord`] |
//!
//! S3 keys (access key / secret pairs, `keys create --s3`) are [`s3keys`]'.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{Millis, SharedClock};
use crate::docs::{Docs, DocsError, Write};

pub mod client;
mod s3keys;

pub use s3keys::{NewS3Key, ROOT_ID};

const USERS: &str = "users";
const KEYS: &str = "keys";
/// A key's last use is written at most this often (ms).
const LAST_USED_EVERY_MS: Millis = 60_000;

/// What a user may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read status and their own jobs.
    Viewer,
    /// Submit, see, cancel and retry their own jobs, read their outputs.
    User,
    /// Everything, every user's jobs, user and key management.
    Admin,
}

named_enum!(Role, "role", {
    Viewer => "viewer",
    User => "user",
    Admin => "admin",
});

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub disabled: bool,
    pub created_ms: Millis,
    /// Their own limits, over their role's (`users set NAME --quota KEY=VALUE`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub quota: crate::quotas::Limits,
}

fn is_default(l: &crate::quotas::Limits) -> bool {
    *l == crate::quotas::Limits::default()
}

/// An API key as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: String,
    pub user: String,
    #[serde(default)]
    pub label: String,
    pub created_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_ms: Option<Millis>,
    /// An S3 access key (its `id` is the access key id), not an API key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub s3: bool,
}

/// The record with the hex SHA-256 of the key's secret, as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    record: KeyRecord,
    secret_sha256: String,
}

/// A key just made: its record and the whole key, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewKey {
    /// `drk_{id}_{secret}`: the bearer token.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

impl Principal {
    /// The bootstrap admin (`api.token`, or no token on loopback).
    pub fn root() -> Self {
        Self {
            user: "admin".into(),
            role: Role::Admin,
        }
    }
}

/// Cheap `Clone` handle on users and keys.
#[derive(Clone)]
pub struct Users {
    docs: Docs,
    clock: SharedClock,
    /// Wraps S3 secrets ([`Users::with_keyring`]).
    keyring: Option<crate::crypto::Keyring>,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_user_name(name: &str) -> Result<(), DocsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DocsError::invalid(
            "name",
            format!("{name:?} is not a user name: 1-64 of a-z, 0-9, '-', '_', '.'"),
        ))
    }
}

/// `30d`, `12h`, `90m` or seconds, as milliseconds.
pub fn parse_duration(field: &str, text: &str) -> Result<Millis, DocsError> {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: Millis = n
        .parse()
        .map_err(|_| DocsError::invalid(field, format!("{text:?}: expected a number with d, h, m or s")))?;
    let per = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" | "" => 1000,
        _ => {
            return Err(DocsError::invalid(
                field,
                format!("{text:?}: the unit is d, h, m or s"),
            ));
        }
    };
    if n == 0 {
        return Err(DocsError::invalid(field, "must be more than 0"));
    }
    Ok(n.saturating_mul(per))
}

impl Users {
    pub fn new(docs: Docs, clock: SharedClock) -> Self {
        Self {
            docs,
            clock,
            keyring: None,
        }
    }

    pub async fn list(&self) -> Result<Vec<User>, DocsError> {
        let all = self.docs.list(USERS).await?;
        all.iter()
            .map(|(_, raw)| Ok(serde_json::from_slice(raw)?))
            .collect()
    }

    pub async fn get(&self, name: &str) -> Result<Option<User>, DocsError> {
        let raw = self.docs.get(USERS, name).await?;
        Ok(raw.map(|r| serde_json::from_slice(&r)).transpose()?)
    }

    /// Whether any user exists (then keys, not only `api.token`, open the API).
    pub async fn any(&self) -> Result<bool, DocsError> {
        Ok(!self.docs.list(USERS).await?.is_empty())
    }

    pub async fn add(&self, name: &str, role: Role) -> Result<User, DocsError> {
        check_user_name(name)?;
        let user = User {
            name: name.to_owned(),
            role,
            disabled: false,
            created_ms: self.clock.now_ms(),
            quota: crate::quotas::Limits::default(),
        };
        let raw = serde_json::to_vec(&user)?;
        let taken = name.to_owned();
        self.docs
            .update(USERS, name, move |old| match old {
                Some(_) => Err(DocsError::Conflict(format!("user {taken:?} exists"))),
                None => Ok((Write::Put(raw.clone()), ())),
            })
            .await?;
        Ok(user)
    }

    /// Disables (or enables) a user: their keys stop (or start again) working at once.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<User, DocsError> {
        let missing = name.to_owned();
        self.docs
            .update(USERS, name, move |old| {
                let old = old.ok_or_else(|| DocsError::NotFound(format!("no user {missing:?}")))?;
                let mut user: User = serde_json::from_slice(old)?;
                user.disabled = disabled;
                Ok((Write::Put(serde_json::to_vec(&user)?), user))
            })
            .await
    }

    /// Replaces a user's own limits.
    pub async fn set_quota(&self, name: &str, quota: crate::quotas::Limits) -> Result<User, DocsError> {
        let missing = name.to_owned();
        self.docs
            .update(USERS, name, move |old| {
                let old = old.ok_or_else(|| DocsError::NotFound(format!("no user {missing:?}")))?;
                let mut user: User = serde_json::from_slice(old)?;
                user.quota = quota.clone();
                Ok((Write::Put(serde_json::to_vec(&user)?), user))
            })
            .await
    }

    /// Removes a user and every key of theirs.
    pub async fn remove(&self, name: &str) -> Result<(), DocsError> {
        let missing = name.to_owned();
        self.docs
            .update(USERS, name, move |old| match old {
                Some(_) => Ok((Write::Delete, ())),
                None => Err(DocsError::NotFound(format!("no user {missing:?}"))),
            })
            .await?;
        for key in self.keys(Some(name)).await? {
            self.revoke(&key.id).await?;
        }
        Ok(())
    }

    /// Makes a key for `user`, valid for `ttl_ms` (or until revoked).
    pub async fn create_key(
        &self,
        user: &str,
        label: &str,
        ttl_ms: Option<Millis>,
    ) -> Result<NewKey, DocsError> {
        let owner = self
            .get(user)
            .await?
            .ok_or_else(|| DocsError::invalid("user", format!("no user {user:?}")))?;
        if label.chars().count() > 128 {
            return Err(DocsError::invalid("name", "at most 128 characters"));
        }
        let id = hex::encode(rand::random::<[u8; 6]>());
        let secret = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            rand::random::<[u8; 32]>(),
        );
        let now = self.clock.now_ms();
        let record = KeyRecord {
            id: id.clone(),
            user: owner.name,
            label: label.to_owned(),
            created_ms: now,
            expires_ms: ttl_ms.map(|t| now.saturating_add(t)),
            last_used_ms: None,
            s3: false,
        };
        let stored = serde_json::to_vec(&Stored {
            record: record.clone(),
            secret_sha256: hash(&secret),
        })?;
        self.docs
            .update(KEYS, &id, move |old| match old {
                Some(_) => Err(DocsError::Conflict("key id collision; try again".into())),
                None => Ok((Write::Put(stored.clone()), ())),
            })
            .await?;
        Ok(NewKey {
            key: format!("drk_{id}_{secret}"),
            record,
        })
    }

    /// Every key (of `user`), API and S3, without secrets.
    pub async fn keys(&self, user: Option<&str>) -> Result<Vec<KeyRecord>, DocsError> {
        let all = self.docs.list(KEYS).await?;
        let mut out = Vec::new();
        for (_, raw) in all {
            let s: Stored = serde_json::from_slice(&raw)?;
            if user.is_none_or(|u| s.record.user == u) {
                out.push(s.record);
            }
        }
        out.extend(self.s3_keys(user).await?);
        Ok(out)
    }

    /// Revokes an API key (by id) or an S3 key (by access key id).
    pub async fn revoke(&self, id: &str) -> Result<(), DocsError> {
        if self.revoke_s3(id).await? {
            return Ok(());
        }
        let missing = id.to_owned();
        self.docs
            .update(KEYS, id, move |old| match old {
                Some(_) => Ok((Write::Delete, ())),
                None => Err(DocsError::NotFound(format!("no key {missing:?}"))),
            })
            .await
    }

    /// Who `token` (a `drk_` key) is, if it is a live key of an enabled user.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, DocsError> {
        let Some((id, secret)) = token.strip_prefix("drk_").and_then(|t| t.split_once('_')) else {
            return Ok(None);
        };
        let Some(raw) = self.docs.get(KEYS, id).await? else {
            return Ok(None);
        };
        let stored: Stored = serde_json::from_slice(&raw)?;
        if !same(hash(secret).as_bytes(), stored.secret_sha256.as_bytes()) {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        if stored.record.expires_ms.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        let Some(user) = self.get(&stored.record.user).await? else {
            return Ok(None);
        };
        if user.disabled {
            return Ok(None);
        }
        if stored
            .record
            .last_used_ms
            .is_none_or(|t| now - t >= LAST_USED_EVERY_MS)
        {
            self.touch(id, now).await;
        }
        Ok(Some(Principal {
            user: user.name,
            role: user.role,
        }))
    }

    /// Records a key's use (best effort: a failure only leaves the old time).
    async fn touch(&self, id: &str, now: Millis) {
        let r = self
            .docs
            .update(KEYS, id, move |old| {
                let Some(old) = old else {
                    return Ok((Write::Keep, ()));
                };
                let mut s: Stored = serde_json::from_slice(old)?;
                s.record.last_used_ms = Some(now);
                Ok((Write::Put(serde_json::to_vec(&s)?), ()))
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(key = id, error = %e, "cannot record a key's use");
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
