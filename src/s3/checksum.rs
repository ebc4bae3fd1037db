//! Body integrity for writes: Content-MD5 and the additional checksums (CRC32,
//! CRC32C, SHA-1, SHA-256, CRC64NVME) a client declares in headers or sends as
//! trailers (aws-chunked uploads of recent AWS SDKs). A mismatch is `BadDigest` and
//! the staged bytes are discarded.

use base64::Engine;
use s3s::checksum::ChecksumHasher;
use s3s::dto::ChecksumAlgorithm;
use s3s::{S3Result, s3_error};

use crate::storage::{Checksums, StagedBlob};

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
