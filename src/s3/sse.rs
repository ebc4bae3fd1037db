//! Server-side encryption on the wire: the `x-amz-server-side-encryption` and
//! SSE-C (`x-amz-server-side-encryption-customer-*`) headers read and answered,
//! and Put/Get/DeleteBucketEncryption. Which writes are sealed, and whether a key
//! opens an object, is decided by the object store (`object_store::sealing`).

use base64::Engine as _;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Connection;
use crate::crypto::{Sealed, SseMode, SseRequest};
use crate::object_store::ObjectStore;

type Out<T> = S3Result<S3Response<T>>;

/// An SSE-C key a request carried (never logged, never stored).
#[derive(Clone)]
pub struct CustomerKey {
    pub key: [u8; 32],
    /// base64 MD5 of the key, echoed in answers as AWS does.
    pub md5: String,
}

/// The SSE-C headers of a request, checked: all three or none, AES256, a 256-bit
/// key whose MD5 matches; refused over plain HTTP from off this machine, as AWS
/// refuses them over HTTP.
pub fn customer_key(
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
    conn: Option<Connection>,
) -> S3Result<Option<CustomerKey>> {
    let (algorithm, key, key_md5) = match (algorithm, key, key_md5) {
        (None, None, None) => return Ok(None),
        (Some(a), Some(k), Some(m)) => (a, k, m),
        _ => {
            return Err(s3_error!(
                InvalidArgument,
                "SSE-C needs the algorithm, key and key-MD5 headers together"
            ));
        }
    };
    if conn.is_some_and(|c| !c.tls && !c.peer.ip().is_loopback()) {
        return Err(s3_error!(
            InvalidRequest,
            "requests specifying server-side encryption with customer-provided keys must be made over a secure connection"
        ));
    }
    if algorithm != "AES256" {
        return Err(s3_error!(InvalidArgument, "the SSE-C algorithm must be AES256"));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw: [u8; 32] = b64
        .decode(key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the SSE-C key must be 256 bits, base64"))?;
    let md5 = b64.encode(Md5::digest(raw));
    if md5 != key_md5 {
        return Err(s3_error!(
            InvalidArgument,
            "the SSE-C key's MD5 does not match the key"
        ));
    }
    Ok(Some(CustomerKey { key: raw, md5 }))
}

/// What a write asks for: `x-amz-server-side-encryption`, or SSE-C.
pub fn requested(
    header: Option<&ServerSideEncryption>,
    customer: Option<&CustomerKey>,
) -> S3Result<Option<SseRequest>> {
    let mode = match header.map(ServerSideEncryption::as_str) {
        None => None,
        Some(ServerSideEncryption::AES256) => Some(SseRequest::S3),
        Some(other) => return Err(unsupported_method("x-amz-server-side-encryption", other)),
    };
    match (mode, customer) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption and SSE-C headers cannot both be given"
        )),
        (m, None) => Ok(m),
        (None, Some(c)) => Ok(Some(SseRequest::Customer(c.key))),
    }
}

/// The answer to an encryption method darkroom does not have (`aws:kms`,
/// `aws:kms:dsse`, anything but AES256): 400 InvalidArgument naming where it was
/// asked for, as AWS answers a method it does not know — not NotImplemented, which
/// clients read as "try again elsewhere", and never a silent plaintext write.
fn unsupported_method(argument: &str, method: &str) -> s3s::S3Error {
    let why = if method.starts_with("aws:kms") {
        "darkroom has no KMS (SSE-KMS is not configured)"
    } else {
        "the encryption method specified is not supported"
    };
    s3_error!(
        InvalidArgument,
        "{argument} {method:?}: {why}; use AES256 (SSE-S3) or SSE-C"
    )
}

/// The `x-amz-server-side-encryption` answered for a stored object (SSE-S3 only;
/// SSE-C objects answer with [`customer_answer`]).
pub fn answered(sealed: Option<&Sealed>) -> Option<ServerSideEncryption> {
    sealed
        .filter(|s| s.mode == SseMode::S3)
        .map(|s| ServerSideEncryption::from(s.mode.as_header().to_string()))
}

/// The SSE-C answer headers (algorithm, key MD5) when the request carried a key.
pub fn customer_answer(customer: Option<&CustomerKey>) -> (Option<String>, Option<String>) {
    match customer {
        Some(c) => (Some("AES256".into()), Some(c.md5.clone())),
        None => (None, None),
    }
}

pub async fn put_bucket_encryption(
    s: &ObjectStore,
    req: S3Request<PutBucketEncryptionInput>,
) -> Out<PutBucketEncryptionOutput> {
    let input = req.input;
    let rules = input.server_side_encryption_configuration.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "give exactly one ServerSideEncryptionRule"
        ));
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(
            MalformedXML,
            "ApplyServerSideEncryptionByDefault is missing"
        ));
    };
    if default.sse_algorithm.as_str() != ServerSideEncryption::AES256 {
        return Err(unsupported_method("SSEAlgorithm", default.sse_algorithm.as_str()));
    }
    s.set_bucket_encryption(&input.bucket, Some(SseMode::S3)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &[u8; 32]) -> (String, String) {
        let b64 = base64::engine::general_purpose::STANDARD;
        (b64.encode(key), b64.encode(Md5::digest(key)))
    }

    #[test]
    fn kms_and_unknown_methods_are_invalid_arguments_naming_the_header() {
        for (method, why) in [
            ("aws:kms", "no KMS"),
            ("aws:kms:dsse", "no KMS"),
            ("ROT13", "not supported"),
        ] {
            let header = ServerSideEncryption::from(method.to_owned());
            let err = requested(Some(&header), None).err().unwrap();
            assert_eq!(err.code().as_str(), "InvalidArgument");
            let message = err.message().unwrap_or_default();
            assert!(
                message.contains("x-amz-server-side-encryption") && message.contains(why),
                "{message}"
            );
        }
        let aes = ServerSideEncryption::from(ServerSideEncryption::AES256.to_owned());
        assert!(matches!(requested(Some(&aes), None), Ok(Some(SseRequest::S3))));
    }

    #[test]
    fn sse_c_is_refused_over_plain_http_off_loopback_only() {
        let (key, md5) = headers(&[5u8; 32]);
        let conn = |tls, peer: &str| {
            Some(Connection {
                tls,
                peer: peer.parse().unwrap(),
            })
        };
        let try_with = |c| customer_key(Some("AES256"), Some(&key), Some(&md5), c);
        let err = try_with(conn(false, "192.168.1.5:40000")).err().unwrap();
        assert_eq!(err.code().as_str(), "InvalidRequest");
        assert!(try_with(conn(true, "192.168.1.5:40000")).unwrap().is_some());
        assert!(try_with(conn(false, "127.0.0.1:40000")).unwrap().is_some());
        assert!(try_with(conn(false, "[::1]:40000")).unwrap().is_some());
        // A key whose MD5 does not match, or half the headers, are refused.
        let (_, other_md5) = headers(&[6u8; 32]);
        assert!(customer_key(Some("AES256"), Some(&key), Some(&other_md5), None).is_err());
        assert!(customer_key(Some("AES256"), Some(&key), None, None).is_err());
    }
}
