//! Whose signature a request carries: the config's root pair (`s3.access_key`,
//! the owner of everything) or a user's S3 key ([`crate::users::Users`], read on
//! every request so a revocation holds at once on every node). An unknown key, an
//! expired one or a disabled user's answers `InvalidAccessKeyId`, as AWS does.
//! s3s checks the signature with the secret given here; [`Caller::of`] then says
//! who the checked access key belongs to.

use s3s::auth::SecretKey;
use s3s::{S3Result, s3_error};

use super::Credentials;
use crate::users::{Principal, Role, Users};

/// The S3 authentication provider: the root pair and the users' S3 keys.
pub struct S3Auth {
    root: Credentials,
    users: Option<Users>,
}

impl S3Auth {
    pub fn new(root: Credentials, users: Option<Users>) -> Self {
        Self { root, users }
    }

    /// Who `access_key` (whose signature s3s has checked) is.
    pub async fn caller(&self, access_key: &str) -> S3Result<Caller> {
        if access_key == self.root.access_key {
            return Ok(Caller::Root);
        }
        let users = self.users.as_ref().ok_or_else(unknown_key)?;
        match users.s3_principal(access_key).await {
            Ok(Some(who)) => Ok(Caller::User {
                who,
                access_key: access_key.to_owned(),
            }),
            Ok(None) => Err(unknown_key()),
            Err(e) => {
                tracing::error!(error = %e, "s3: cannot read S3 keys");
                Err(s3_error!(InternalError, "cannot read S3 keys"))
            }
        }
    }
}

fn unknown_key() -> s3s::S3Error {
    s3_error!(
        InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records."
    )
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for S3Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.root.access_key {
            return Ok(SecretKey::from(self.root.secret_key.clone()));
        }
        let users = self.users.as_ref().ok_or_else(unknown_key)?;
        match users.s3_secret(access_key).await {
            Ok(Some(secret)) => Ok(SecretKey::from(secret)),
            Ok(None) => Err(unknown_key()),
            Err(e) => {
                tracing::error!(error = %e, "s3: cannot read S3 keys");
                Err(s3_error!(InternalError, "cannot read S3 keys"))
            }
        }
    }
}

/// Who made an S3 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The config's root pair: owner of every bucket.
    Root,
    /// A user's S3 key.
    User { who: Principal, access_key: String },
    /// No signature.
    Anonymous,
}

impl Caller {
    /// Root, or a user whose role is admin: allowed everything.
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Root => true,
            Caller::User { who, .. } => who.role == Role::Admin,
            Caller::Anonymous => false,
        }
    }

    /// The user's name (`aws:username`), if a user signed.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Caller::User { who, .. } => Some(&who.user),
            _ => None,
        }
    }

    /// The canonical id ACLs name this caller by: the root account's
    /// ([`crate::users::ROOT_ID`]) or the user's name.
    pub fn canonical_id(&self) -> Option<&str> {
        match self {
            Caller::Root => Some(crate::users::ROOT_ID),
            Caller::User { who, .. } => Some(&who.user),
            Caller::Anonymous => None,
        }
    }

    /// The caller a request recorded in its extensions (see `authz`); anonymous
    /// when none is there.
    pub fn of(extensions: &http::Extensions) -> Caller {
        extensions.get::<Caller>().cloned().unwrap_or(Caller::Anonymous)
    }
}
