//! Encryption at rest (SSE-S3): each encrypted object has its own random 256-bit
//! data key; its bytes are sealed with AES-256-GCM in fixed-size chunks
//! ([`chunked`]), so a ranged read opens only the chunks it touches and a
//! multipart part is sealed as it arrives; the data key is kept only wrapped by the
//! master key ([`master`]), beside the object's metadata ([`Sealed`]). Rotating the
//! master key re-wraps data keys without touching blobs.
//!
//! What an attacker with the data directory but not the master key can read: object
//! names, sizes, user metadata and tags (in redb), never the bytes of an encrypted
//! object. Backups carry blobs and wrapped keys, never the master key.

pub mod chunked;
pub mod master;

use serde::{Deserialize, Serialize};

pub use master::{Keyring, MasterKeyError};

/// The server-side encryption modes darkroom implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SseMode {
    /// SSE-S3: `x-amz-server-side-encryption: AES256`, keys managed by darkroom.
    #[serde(rename = "AES256")]
    S3,
}

impl SseMode {
    /// The header value S3 uses.
    pub fn as_header(self) -> &'static str {
        match self {
            SseMode::S3 => "AES256",
        }
    }
}

/// How an object's (or an upload's) bytes are sealed: kept in its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub mode: SseMode,
    /// The master key that wraps `wrapped_key` ([`Keyring`] ids).
    pub key_id: String,
    /// base64(nonce || AES-256-GCM(master key, data key)).
    pub wrapped_key: String,
    /// Plaintext bytes per sealed chunk.
    pub chunk_size: u32,
    /// A multipart object's segments in order: (part number, plaintext size); each
    /// was sealed on its own as it arrived. Empty: one segment (number 0), the
    /// whole object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<(u32, u64)>,
}

/// A fresh data key and its [`Sealed`] record, for a write about to happen.
#[derive(Clone)]
pub struct Seal {
    pub sealed: Sealed,
    pub key: [u8; 32],
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal").field("sealed", &self.sealed).finish_non_exhaustive()
    }
}
