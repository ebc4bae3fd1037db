//! Server-side encryption on the wire: the `x-amz-server-side-encryption` header
//! read and answered, and Put/Get/DeleteBucketEncryption. Which writes are sealed
//! is decided by the object store (`object_store::sealing`), not here.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::crypto::{Sealed, SseMode};
use crate::object_store::ObjectStore;

type Out<T> = S3Result<S3Response<T>>;

/// The mode a request's `x-amz-server-side-encryption` asks for.
pub fn requested(header: Option<&ServerSideEncryption>) -> S3Result<Option<SseMode>> {
    match header.map(ServerSideEncryption::as_str) {
        None => Ok(None),
        Some(ServerSideEncryption::AES256) => Ok(Some(SseMode::S3)),
        Some(other) => Err(s3_error!(
            NotImplemented,
            "x-amz-server-side-encryption {other:?}: darkroom implements AES256 (SSE-S3) only"
        )),
    }
}

/// The header value answered for a stored object.
pub fn answered(sealed: Option<&Sealed>) -> Option<ServerSideEncryption> {
    sealed.map(|s| ServerSideEncryption::from(s.mode.as_header().to_string()))
}

pub async fn put_bucket_encryption(
    s: &ObjectStore,
    req: S3Request<PutBucketEncryptionInput>,
) -> Out<PutBucketEncryptionOutput> {
    let input = req.input;
    let rules = input.server_side_encryption_configuration.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3_error!(MalformedXML, "give exactly one ServerSideEncryptionRule"));
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(MalformedXML, "ApplyServerSideEncryptionByDefault is missing"));
    };
    let mode = requested(Some(&default.sse_algorithm))?;
    s.set_bucket_encryption(&input.bucket, mode).await?;
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

pub async fn get_bucket_encryption(
    s: &ObjectStore,
    req: S3Request<GetBucketEncryptionInput>,
) -> Out<GetBucketEncryptionOutput> {
    let bucket = s.head_bucket(&req.input.bucket).await?;
    let Some(mode) = bucket.encryption else {
        return Err(s3_error!(
            ServerSideEncryptionConfigurationNotFoundError,
            "the bucket has no default encryption"
        ));
    };
    let rule = ServerSideEncryptionRule {
        apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
            kms_master_key_id: None,
            sse_algorithm: ServerSideEncryption::from(mode.as_header().to_string()),
        }),
        ..Default::default()
    };
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration { rules: vec![rule] }),
    }))
}

pub async fn delete_bucket_encryption(
    s: &ObjectStore,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> Out<DeleteBucketEncryptionOutput> {
    s.set_bucket_encryption(&req.input.bucket, None).await?;
    Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
}
