//! What the store keeps about who may use a bucket or an object, as plain data
//! (the rules that read it are `s3::authz`'s): a bucket's policy text, its ACL,
//! its public access block and its object-ownership setting, and an object's
//! owner and ACL (in [`ObjectAttrs::acl`](super::ObjectAttrs), so it travels with
//! uploads and copies as the other attributes do). All in the bucket and object
//! records in redb: they survive restarts and backups.

use serde::{Deserialize, Serialize};

use super::{ObjectStore, StorageError};

/// An access control list: the owner (a canonical id) and the grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub owner: String,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// One grant of an ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: Permission,
}

/// Whom a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    /// A canonical user id (darkroom: a user's name, or the root account's id).
    User(String),
    /// `http://acs.amazonaws.com/groups/global/AllUsers`: anyone, anonymous too.
    AllUsers,
    /// `http://acs.amazonaws.com/groups/global/AuthenticatedUsers`: any signed request.
    AuthenticatedUsers,
    /// `http://acs.amazonaws.com/groups/s3/LogDelivery` (kept, grants nothing here).
    LogDelivery,
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "FULL_CONTROL")]
    FullControl,
    #[serde(rename = "READ")]
    Read,
    #[serde(rename = "WRITE")]
    Write,
    #[serde(rename = "READ_ACP")]
    ReadAcp,
    #[serde(rename = "WRITE_ACP")]
    WriteAcp,
}

named_enum!(Permission, "permission", {
    FullControl => "FULL_CONTROL",
    Read => "READ",
    Write => "WRITE",
    ReadAcp => "READ_ACP",
    WriteAcp => "WRITE_ACP",
});

/// A bucket's PublicAccessBlock configuration (S3's four switches).
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

/// A bucket's OwnershipControls rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    /// ACLs are off; the bucket owner owns every object (the default, as on AWS).
    BucketOwnerEnforced,
    /// The writer owns an object unless it was written `bucket-owner-full-control`.
    BucketOwnerPreferred,
    /// The writer owns an object.
    ObjectWriter,
}

named_enum!(ObjectOwnership, "object ownership", {
    BucketOwnerEnforced => "BucketOwnerEnforced",
    BucketOwnerPreferred => "BucketOwnerPreferred",
    ObjectWriter => "ObjectWriter",
});

/// New buckets, and buckets made before ownership controls existed.
#[allow(clippy::unnecessary_wraps)]
pub(super) fn default_ownership() -> Option<ObjectOwnership> {
    Some(ObjectOwnership::BucketOwnerEnforced)
}

impl ObjectStore {
    /// Sets (or with `None` deletes) the bucket's policy text.
    pub async fn set_bucket_policy(&self, bucket: &str, policy: Option<String>) -> Result<(), StorageError> {
        self.update_bucket(bucket, move |b| b.policy = policy).await
    }

    /// Sets the bucket's ACL.
    pub async fn set_bucket_acl(&self, bucket: &str, acl: Option<Acl>) -> Result<(), StorageError> {
        self.update_bucket(bucket, move |b| b.acl = acl).await
    }

    /// Sets (or deletes) the bucket's public access block.
    pub async fn set_public_access_block(
        &self,
        bucket: &str,
        block: Option<PublicAccessBlock>,
    ) -> Result<(), StorageError> {
        self.update_bucket(bucket, move |b| b.public_access_block = block)
            .await
    }

    /// Sets (or deletes: ACLs on, writers own) the bucket's ownership rule.
    pub async fn set_object_ownership(
        &self,
        bucket: &str,
        ownership: Option<ObjectOwnership>,
    ) -> Result<(), StorageError> {
        self.update_bucket(bucket, move |b| b.object_ownership = ownership)
            .await
    }

    /// Sets an object's ACL (and with it, its owner).
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        acl: Option<Acl>,
    ) -> Result<(), StorageError> {
        self.update_object(bucket, key, move |o| o.attrs.acl = acl).await
    }
}
