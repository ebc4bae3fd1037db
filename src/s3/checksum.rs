//! Body integrity for writes: Content-MD5 and the additional checksums (CRC32,
//! CRC32C, SHA-1, SHA-256, CRC64NVME) a client declares in headers or sends as
//! trailers (aws-chunked uploads of recent AWS SDKs). A mismatch is `BadDigest` and
//! the staged bytes are discarded.

use base64::Engine;
use s3s::checksum::ChecksumHasher;
use s3s::dto::ChecksumAlgorithm;
use s3s::{S3Result, s3_error};

use crate::object_store::{Checksums, ObjectStore, StagedBlob};

/// The checksums a client declared for one body.
#[derive(Debug, Default)]
pub struct Declared {
    pub content_md5: Option<String>,
    pub algorithm: Option<ChecksumAlgorithm>,
    pub sums: Checksums,
}

/// Computes what was declared while the body streams, then compares.
pub struct Verifier {
    hasher: ChecksumHasher,
    declared: Declared,
}

impl Verifier {
    pub fn new(declared: Declared) -> S3Result<Self> {
        let mut hasher = ChecksumHasher::default();
        let s = &declared.sums;
        if s.crc32.is_some() {
            hasher.crc32 = Some(<_>::default());
        }
        if s.crc32c.is_some() {
            hasher.crc32c = Some(<_>::default());
        }
        if s.sha1.is_some() {
            hasher.sha1 = Some(<_>::default());
        }
        if s.sha256.is_some() {
            hasher.sha256 = Some(<_>::default());
        }
        if s.crc64nvme.is_some() {
            hasher.crc64nvme = Some(<_>::default());
        }
        if let Some(alg) = &declared.algorithm {
            match alg.as_str() {
                ChecksumAlgorithm::CRC32 => hasher.crc32 = Some(<_>::default()),
                ChecksumAlgorithm::CRC32C => hasher.crc32c = Some(<_>::default()),
                ChecksumAlgorithm::SHA1 => hasher.sha1 = Some(<_>::default()),
                ChecksumAlgorithm::SHA256 => hasher.sha256 = Some(<_>::default()),
                ChecksumAlgorithm::CRC64NVME => hasher.crc64nvme = Some(<_>::default()),
                other => {
                    return Err(s3_error!(
                        NotImplemented,
                        "checksum algorithm {other} is not supported"
                    ));
                }
            }
        }
        Ok(Self { hasher, declared })
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    /// Compares the staged body with what was declared (including trailers).
    pub fn finish(self, staged: &StagedBlob, trailers: Option<s3s::TrailingHeaders>) -> S3Result<Checksums> {
        let Self { hasher, mut declared } = self;
        if let Some(md5) = &declared.content_md5 {
            let want = base64::engine::general_purpose::STANDARD
                .decode(md5)
                .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not valid base64"))?;
            if want != staged.md5 {
                return Err(s3_error!(
                    BadDigest,
                    "the Content-MD5 you specified did not match what we received"
                ));
            }
        }
        if let Some(t) = trailers.and_then(|t| t.take()) {
            let get = |name: &str| t.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let s = &mut declared.sums;
            s.crc32 = get("x-amz-checksum-crc32").or(s.crc32.take());
            s.crc32c = get("x-amz-checksum-crc32c").or(s.crc32c.take());
            s.sha1 = get("x-amz-checksum-sha1").or(s.sha1.take());
            s.sha256 = get("x-amz-checksum-sha256").or(s.sha256.take());
            s.crc64nvme = get("x-amz-checksum-crc64nvme").or(s.crc64nvme.take());
        }
        let got = hasher.finalize();
        let computed = Checksums {
            crc32: got.checksum_crc32,
            crc32c: got.checksum_crc32c,
            sha1: got.checksum_sha1,
            sha256: got.checksum_sha256,
            crc64nvme: got.checksum_crc64nvme,
        };
        let pairs = [
            ("CRC32", &declared.sums.crc32, &computed.crc32),
            ("CRC32C", &declared.sums.crc32c, &computed.crc32c),
            ("SHA1", &declared.sums.sha1, &computed.sha1),
            ("SHA256", &declared.sums.sha256, &computed.sha256),
            ("CRC64NVME", &declared.sums.crc64nvme, &computed.crc64nvme),
        ];
        for (name, want, got) in pairs {
            if let Some(want) = want
                && Some(want) != got.as_ref()
            {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} checksum you specified did not match what we received"
                ));
            }
        }
        Ok(computed)
    }
}

/// A write request's body and what the client declared about it.
pub struct Incoming {
    pub body: Option<s3s::dto::StreamingBlob>,
    pub content_length: Option<i64>,
    pub declared: Declared,
    pub trailers: Option<s3s::TrailingHeaders>,
}

/// What is being written: an object (may be stored inline) or a multipart part
/// (always a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Object,
    Part,
}

/// Streams a request body into a staged blob, enforcing the size limit,
/// Content-Length and every declared checksum. PutObject and UploadPart share it.
pub async fn receive(
    s: &ObjectStore,
    bucket: &str,
    incoming: Incoming,
    target: Target,
    seal: Option<&crate::crypto::Seal>,
) -> S3Result<(StagedBlob, Checksums)> {
    if let Some(len) = incoming.content_length
        && u64::try_from(len).unwrap_or(0) > s.options().max_object_size
    {
        return Err(s3_error!(
            EntityTooLarge,
            "the body is larger than s3.max_object_size"
        ));
    }
    let Some(body) = incoming.body else {
        return Err(s3_error!(IncompleteBody, "missing request body"));
    };
    let mut verifier = Verifier::new(incoming.declared)?;
    let staged = s
        .stage_sealed(bucket, body, seal, target == Target::Part, |c| verifier.update(c))
        .await?;
    if let Some(len) = incoming.content_length
        && u64::try_from(len).ok() != Some(staged.size)
    {
        return Err(s3_error!(
            IncompleteBody,
            "the body was shorter or longer than Content-Length"
        ));
    }
    let sums = verifier.finish(&staged, incoming.trailers)?;
    Ok((staged, sums))
}

/// The [`Declared`] checksums of an input with the usual S3 field names.
macro_rules! declared {
    ($input:expr) => {
        $crate::s3::checksum::Declared {
            content_md5: $input.content_md5,
            algorithm: $input.checksum_algorithm,
            sums: $crate::object_store::Checksums {
                crc32: $input.checksum_crc32,
                crc32c: $input.checksum_crc32c,
                sha1: $input.checksum_sha1,
                sha256: $input.checksum_sha256,
                crc64nvme: $input.checksum_crc64nvme,
            },
        }
    };
}
pub(crate) use declared;
