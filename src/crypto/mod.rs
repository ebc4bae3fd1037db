//! Encryption at rest (SSE-S3): each encrypted object has its own random 256-bit
//! data key; its bytes are sealed with AES-256-GCM in fixed-size chunks
//! ([`chunked`]), so a ranged read opens only the chunks it touches and a
//! multipart part is sealed as it arrives; the data key is kept only wrapped by the
//! master key ([`master`]), beside the object's metadata ([`Sealed`]). Rotating the
//! master key re-wraps data keys without touching blobs.
//!
//! SSE-C objects have a data key of their own too, wrapped by the client's key,
//! which is never stored: only a salted HMAC of it ([`CustomerCheck`]) tells a
//! wrong key from damaged bytes.
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
    /// SSE-C: the client sends its own AES-256 key with every request.
    #[serde(rename = "SSE-C")]
    Customer,
}

impl SseMode {
    /// The header value S3 uses.
    pub fn as_header(self) -> &'static str {
        match self {
            SseMode::S3 | SseMode::Customer => "AES256",
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
    /// A multipart object's segments in order: (segment id, plaintext size), one
    /// per part, each sealed on its own as it arrived. Empty: one segment (id 0),
    /// the whole object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<(u64, u64)>,
    /// SSE-C: how to recognise the client's key (`wrapped_key` is wrapped by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerCheck>,
}

/// A salted HMAC-SHA256 of an SSE-C key: enough to tell the right key from a
/// wrong one, useless to find the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCheck {
    /// base64 of 16 random bytes.
    pub salt: String,
    /// base64 of HMAC-SHA256(key = salt, message = the client's key).
    pub hmac: String,
}

impl CustomerCheck {
    /// A check for `key` with a fresh salt.
    pub fn new(key: &[u8; 32]) -> Self {
        let salt: [u8; 16] = rand::random();
        Self::with_salt(&salt, key)
    }

    fn with_salt(salt: &[u8], key: &[u8; 32]) -> Self {
        use base64::Engine as _;
        use hmac::Mac as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(salt).unwrap_or_else(|_| unreachable!("any length"));
        mac.update(key);
        Self {
            salt: b64.encode(salt),
            hmac: b64.encode(mac.finalize().into_bytes()),
        }
    }

    /// Whether `key` is the key this check was made for (constant time).
    pub fn matches(&self, key: &[u8; 32]) -> bool {
        use base64::Engine as _;
        use hmac::Mac as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(expected)) = (b64.decode(&self.salt), b64.decode(&self.hmac)) else {
            return false;
        };
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(key);
        mac.verify_slice(&expected).is_ok()
    }
}

/// What a request asks for: SSE-S3, or SSE-C with the client's key.
#[derive(Clone, Copy)]
pub enum SseRequest {
    S3,
    Customer([u8; 32]),
}

impl std::fmt::Debug for SseRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SseRequest::S3 => "S3",
            SseRequest::Customer(_) => "Customer(<redacted>)",
        })
    }
}

/// A fresh data key and its [`Sealed`] record, for a write about to happen.
#[derive(Clone)]
pub struct Seal {
    pub sealed: Sealed,
    pub key: [u8; 32],
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}
