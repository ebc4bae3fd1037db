//! The records the object store keeps in redb, and the tables that hold them.
//!
//! Objects are keyed by `(bucket, key)`, so listing a bucket is an ordered range scan.
//! Records are JSON: small, readable with any redb tool, and easy to extend.

use std::collections::BTreeMap;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// bucket name -> [`BucketMeta`]
pub const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
/// (bucket, key) -> [`ObjectMeta`]
pub const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
/// upload id -> [`UploadMeta`]
pub const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// (upload id, part number) -> [`PartMeta`]
pub const PARTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("parts");
/// blob id -> the bytes of a small object stored inline (see [`ObjectMeta::inline`]).
pub const INLINE: TableDefinition<&str, &[u8]> = TableDefinition::new("inline_blobs");
/// upload id -> [`CompletedUpload`], so a retried CompleteMultipartUpload succeeds.
pub const COMPLETED: TableDefinition<&str, &[u8]> = TableDefinition::new("completed_uploads");
/// blob id -> how many objects refer to that blob file *beyond the first*. A blob
/// file with no entry has exactly one owner (every blob written before copies
/// shared files, so older data directories need no migration); CopyObject adds
/// one instead of copying bytes, and a delete or overwrite takes one away, freeing
/// the file only when none is left (see `objects::release`).
pub const BLOB_REFS: TableDefinition<&str, u64> = TableDefinition::new("blob_refs");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMeta {
    pub created_ms: Millis,
    /// What `s3.buckets.public_read` last said (its public-read policy is in `policy`).
    #[serde(default)]
    pub public_read: bool,
    #[serde(default)]
    pub lifecycle: Vec<LifecycleRule>,
    /// Bucket default encryption (PutBucketEncryption): new objects are sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::crypto::SseMode>,
    /// The bucket policy, as the client sent it (PutBucketPolicy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The bucket ACL; none: private to the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<super::access::Acl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<super::access::PublicAccessBlock>,
    /// OwnershipControls; `null` once deleted (ACLs on, writers own objects).
    /// Missing (buckets made before it existed): BucketOwnerEnforced.
    #[serde(default = "super::access::default_ownership")]
    pub object_ownership: Option<super::access::ObjectOwnership>,
}

impl Default for BucketMeta {
    fn default() -> Self {
        Self {
            created_ms: 0,
            public_read: false,
            lifecycle: Vec::new(),
            encryption: None,
            policy: None,
            acl: None,
            public_access_block: None,
            object_ownership: super::access::default_ownership(),
        }
    }
}

/// The attributes a client sets on an object (PutObject, CreateMultipartUpload,
/// CopyObject with `REPLACE`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// The object's owner and ACL; none: the bucket owner's, private.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<super::access::Acl>,
}

/// Additional checksums (base64, as S3 sends them) the client asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// The ETag without quotes: hex MD5, or `md5-of-md5s-N` for multipart objects.
    pub etag: String,
    pub last_modified_ms: Millis,
    /// The blob file holding the bytes.
    pub blob: String,
    #[serde(default)]
    pub attrs: ObjectAttrs,
    #[serde(default)]
    pub checksums: Checksums,
    /// Number of parts for a multipart object, 0 otherwise.
    #[serde(default)]
    pub parts: u32,
    /// The bytes live in the `INLINE` table under `blob`, not in a file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
    /// Why the bytes cannot be trusted (set by `darkroom verify --repair` when the
    /// blob is missing, truncated or corrupt): reads answer this instead of wrong bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    /// How the bytes are encrypted at rest (`size` and `etag` are the plaintext's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::crypto::Sealed>,
}

impl ObjectMeta {
    /// The length of its blob: `size`, or the sealed length when encrypted.
    pub fn stored_len(&self) -> u64 {
        match &self.encryption {
            Some(e) => crate::crypto::chunked::object_sealed_len(self.size, &e.segments, e.chunk_size),
            None => self.size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    pub bucket: String,
    pub key: String,
    pub initiated_ms: Millis,
    #[serde(default)]
    pub attrs: ObjectAttrs,
    /// The upload's data key: each part is sealed with it as it arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::crypto::Sealed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    pub size: u64,
    /// Hex MD5 of the part (its ETag).
    pub etag: String,
    pub last_modified_ms: Millis,
    pub blob: String,
    /// The blob's length when the part is sealed (`size` is the plaintext's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
    /// The sealed part's segment id (its nonces' prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedUpload {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub completed_ms: Millis,
}

/// One lifecycle rule (the subset of S3's that darkroom applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    #[serde(default)]
    pub id: Option<String>,
    pub enabled: bool,
    #[serde(default)]
    pub prefix: String,
    /// Every tag must be present on the object for the rule to apply.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Expire objects this many lifecycle days after their last modification.
    #[serde(default)]
    pub expiration_days: Option<u32>,
    /// Expire objects once this moment has passed.
    #[serde(default)]
    pub expiration_date_ms: Option<Millis>,
    /// Abort multipart uploads this many days after they were initiated.
    #[serde(default)]
    pub abort_incomplete_days: Option<u32>,
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(v)
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(b)
}
