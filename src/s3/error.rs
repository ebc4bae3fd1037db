//! The one place where object-store errors become S3 error codes. Internal failures
//! are logged with their detail and answered as `InternalError` without it.

use s3s::{S3Error, S3ErrorCode};

use crate::object_store::StorageError;

impl From<StorageError> for S3Error {
    fn from(e: StorageError) -> Self {
        use StorageError as E;
        let code = match &e {
            E::NoSuchBucket(_) => S3ErrorCode::NoSuchBucket,
            E::BucketAlreadyExists(_) => S3ErrorCode::BucketAlreadyOwnedByYou,
            E::BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
            E::InvalidBucketName { .. } => S3ErrorCode::InvalidBucketName,
            E::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
            E::NoSuchUpload(_) => S3ErrorCode::NoSuchUpload,
            E::InvalidPart(_) => S3ErrorCode::InvalidPart,
            E::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
            E::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
            E::EntityTooLarge { .. } => S3ErrorCode::EntityTooLarge,
            E::IncompleteBody { .. } | E::Body(_) => S3ErrorCode::IncompleteBody,
            E::PreconditionFailed(_) => S3ErrorCode::PreconditionFailed,
            E::BadDigest(_) => S3ErrorCode::BadDigest,
            E::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            E::StorageFull { .. } => {
                tracing::error!(error = %e, "disk full: write refused");
                let mut err = S3Error::with_message(
                    S3ErrorCode::Custom("XDarkroomStorageFull".into()),
                    "Storage backend has reached its minimum free drive threshold (disk full).",
                );
                err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
                return err;
            }
            E::Damaged { .. } => {
                tracing::warn!(error = %e, "read of a damaged object refused");
                return S3Error::with_message(S3ErrorCode::InternalError, e.to_string());
            }
            E::EncryptionUnavailable => S3ErrorCode::NotImplemented,
            E::CustomerKeyMissing | E::CustomerKeyNotApplicable => S3ErrorCode::InvalidRequest,
            E::CustomerKeyWrong => S3ErrorCode::AccessDenied,
            E::Io { .. } | E::Store(_) | E::Encryption(_) => {
                tracing::error!(error = %e, "internal storage error");
                return S3Error::with_message(S3ErrorCode::InternalError, "internal storage error");
            }
        };
        S3Error::with_message(code, e.to_string())
    }
}
