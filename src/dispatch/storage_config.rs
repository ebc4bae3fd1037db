//! `[storage]`: where job outputs go — darkroom's own object store (`embedded`,
//! the default) or an external S3 endpoint (`s3`: MinIO, AWS, any S3) that
//! several darkroom nodes can share. With `s3`, darkroom's own S3 server can be
//! turned off (`s3.enabled = false`). The dispatcher's output sinks read it, so
//! the section and its validation live beside them.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub s3: ExternalS3,
}

/// Which store holds the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Embedded,
    S3,
}

/// An external S3 endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalS3 {
    /// `http(s)://host:port` (MinIO, another darkroom); empty means AWS itself.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// `endpoint/bucket/key` URLs (MinIO and most self-hosted S3) instead of
    /// `bucket.endpoint/key`.
    pub path_style: bool,
    /// Outputs larger than this are uploaded in parts.
    pub multipart_threshold_bytes: u64,
    /// The size of each part (S3's minimum is 5 MiB).
    pub part_size_bytes: u64,
}

impl Default for ExternalS3 {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_key: String::new(),
            path_style: true,
            multipart_threshold_bytes: 16 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
        }
    }
}

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl StorageConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == StorageBackend::Embedded {
            return Ok(());
        }
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        let s3 = &self.s3;
        if !s3.endpoint.is_empty()
            && !matches!(reqwest::Url::parse(&s3.endpoint), Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            return invalid(
                "storage.s3.endpoint",
                "must be an http:// or https:// URL, or empty for AWS",
            );
        }
        if s3.access_key.is_empty() || s3.secret_key.is_empty() {
            return invalid(
                "storage.s3.access_key",
                "storage.backend = \"s3\" needs storage.s3.access_key and storage.s3.secret_key",
            );
        }
        if s3.region.is_empty() {
            return invalid("storage.s3.region", "must not be empty (us-east-1 for MinIO)");
        }
        if s3.part_size_bytes < MIN_PART_SIZE {
            return invalid(
                "storage.s3.part_size_bytes",
                "must be at least 5242880 (S3's minimum part)",
            );
        }
        if s3.multipart_threshold_bytes < s3.part_size_bytes {
            return invalid(
                "storage.s3.multipart_threshold_bytes",
                "must be at least storage.s3.part_size_bytes",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(c: &StorageConfig) -> Option<&'static str> {
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            _ => None,
        }
    }

    #[test]
    fn an_s3_backend_needs_credentials_and_sane_parts() {
        let mut c = StorageConfig::default();
        assert_eq!(key_of(&c), None, "embedded needs nothing");
        c.backend = StorageBackend::S3;
        assert_eq!(key_of(&c), Some("storage.s3.access_key"));
        c.s3.access_key = "a".into();
        c.s3.secret_key = "b".into();
        assert_eq!(key_of(&c), None, "empty endpoint: AWS");
        c.s3.endpoint = "minio:9000".into();
        assert_eq!(key_of(&c), Some("storage.s3.endpoint"));
        c.s3.endpoint = "http://minio:9000".into();
        c.s3.part_size_bytes = 1024;
        assert_eq!(key_of(&c), Some("storage.s3.part_size_bytes"));
        c.s3.part_size_bytes = MIN_PART_SIZE;
        c.s3.multipart_threshold_bytes = 1;
        assert_eq!(key_of(&c), Some("storage.s3.multipart_threshold_bytes"));
    }
}
