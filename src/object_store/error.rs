//! What the object store can refuse or fail at. The S3 adapter maps each variant to
//! one S3 error code in one place (`s3::error`).

use crate::redb_store::from_redb;
use std::path::PathBuf;

use crate::redb_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("bucket {0:?} already exists")]
    BucketAlreadyExists(String),
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    #[error("invalid bucket name {name:?}: {reason}")]
    InvalidBucketName { name: String, reason: &'static str },
    #[error("key {key:?} does not exist in bucket {bucket:?}")]
    NoSuchKey { bucket: String, key: String },
    #[error("multipart upload {0:?} does not exist")]
    NoSuchUpload(String),
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    #[error("part {part} is {size} bytes; every part but the last must be at least {min} bytes")]
    EntityTooSmall { part: u32, size: u64, min: u64 },
    #[error("object is larger than the {max} bytes allowed (s3.max_object_size)")]
    EntityTooLarge { max: u64 },
    #[error("the body was {got} bytes but Content-Length said {expected}")]
    IncompleteBody { expected: u64, got: u64 },
    #[error("precondition failed: {0}")]
    PreconditionFailed(&'static str),
    #[error("{0}")]
    BadDigest(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `darkroom verify --repair` found its bytes missing or corrupt.
    #[error("object {key:?} in bucket {bucket:?} is damaged ({why}); restore it from a backup or delete it")]
    Damaged {
        bucket: String,
        key: String,
        why: String,
    },
    #[error("disk full while writing {path}")]
    StorageFull { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("reading the request body: {0}")]
    Body(String),
    /// A sealed object or upload whose key cannot be had (no or another master key).
    #[error("encryption: {0}")]
    Encryption(String),
    /// An SSE-C object read without its key.
    #[error("the object is encrypted with a customer key: send it (x-amz-server-side-encryption-customer-*)")]
    CustomerKeyMissing,
    /// An SSE-C object read with another key.
    #[error("the customer key does not match the one the object was encrypted with")]
    CustomerKeyWrong,
    /// A customer key sent for an object that is not encrypted with one.
    #[error("the object is not encrypted with a customer key; do not send one")]
    CustomerKeyNotApplicable,
    /// Encryption asked for on a store without a master key.
    #[error("server-side encryption is not available (no master key loaded)")]
    EncryptionUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StorageError {
    /// Wraps an I/O error on `path`, recognising a full disk.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(libc::ENOSPC) {
            Self::StorageFull { path }
        } else {
            Self::Io { path, source }
        }
    }
}

from_redb!(StorageError);

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        Self::Io {
            path: PathBuf::from("(metadata record)"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }
    }
}
