//! Users and keys as a service: who may manage them (admins only), and the
//! conversion of the record store's errors. The rules of keys themselves
//! (hashing, expiry, revocation) are [`crate::users`]'.

use serde::Deserialize;

use super::ServiceError;
use crate::docs::DocsError;
use crate::users::{KeyRecord, NewKey, NewS3Key, Principal, Role, User, Users, parse_duration};

impl From<DocsError> for ServiceError {
    fn from(e: DocsError) -> Self {
        match e {
            DocsError::Invalid { field, message } => Self::invalid(field, message),
            DocsError::NotFound(m) => Self::NotFound(m),
            DocsError::Conflict(m) => Self::Conflict(m),
            DocsError::Redis(_) | DocsError::Contention(_) => Self::Unavailable(format!("record store: {e}")),
            other => Self::Internal(format!("record store: {other}")),
        }
    }
}

/// A new user (`POST /api/v1/users`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDraft {
    pub name: String,
    pub role: Role,
}

/// A new key (`POST /api/v1/keys`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyDraft {
    pub user: String,
    /// What it is for (`n8n`, `laptop`).
    #[serde(default)]
    pub name: String,
    /// `30d`, `12h`, `90m`; none: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// An S3 access key / secret pair instead of an API key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub s3: bool,
}

/// A key just made (`POST /api/v1/keys`): an API key, or with `"s3": true` an
/// S3 pair; its secret is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CreatedKey {
    S3(NewS3Key),
    Api(NewKey),
}

/// Refuses anyone but an admin.
pub fn require_admin(who: &Principal, what: &str) -> Result<(), ServiceError> {
    if who.role == Role::Admin {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "{what} is for admins; {} is a {}",
            who.user, who.role
        )))
    }
}

/// The users service; cheap to clone.
#[derive(Clone)]
pub struct UsersService {
    users: Users,
}

impl UsersService {
    pub fn new(users: Users) -> Self {
        Self { users }
    }

    /// The records, for authentication.
    pub fn users(&self) -> &Users {
        &self.users
    }

    pub async fn list(&self, who: &Principal) -> Result<Vec<User>, ServiceError> {
        require_admin(who, "listing users")?;
        Ok(self.users.list().await?)
    }

    pub async fn add(&self, who: &Principal, draft: UserDraft) -> Result<User, ServiceError> {
        require_admin(who, "adding users")?;
        Ok(self.users.add(&draft.name, draft.role).await?)
    }

    pub async fn set_disabled(
        &self,
        who: &Principal,
        name: &str,
        disabled: bool,
    ) -> Result<User, ServiceError> {
        require_admin(who, "disabling users")?;
        Ok(self.users.set_disabled(name, disabled).await?)
    }

    pub async fn remove(&self, who: &Principal, name: &str) -> Result<(), ServiceError> {
        require_admin(who, "removing users")?;
        Ok(self.users.remove(name).await?)
    }

    pub async fn keys(&self, who: &Principal, user: Option<&str>) -> Result<Vec<KeyRecord>, ServiceError> {
        require_admin(who, "listing keys")?;
        Ok(self.users.keys(user).await?)
    }

    /// Makes an API key, or an S3 pair when the draft says `s3`.
    pub async fn create_key(&self, who: &Principal, draft: KeyDraft) -> Result<CreatedKey, ServiceError> {
        require_admin(who, "making keys")?;
        let ttl = draft
            .expires
            .as_deref()
            .map(|e| parse_duration("expires", e))
            .transpose()?;
        Ok(if draft.s3 {
            CreatedKey::S3(self.users.create_s3_key(&draft.user, &draft.name, ttl).await?)
        } else {
            CreatedKey::Api(self.users.create_key(&draft.user, &draft.name, ttl).await?)
        })
    }

    pub async fn revoke(&self, who: &Principal, id: &str) -> Result<(), ServiceError> {
        require_admin(who, "revoking keys")?;
        Ok(self.users.revoke(id).await?)
    }
}
