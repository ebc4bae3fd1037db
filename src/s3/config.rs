//! `[s3]`: the S3-compatible server — where it listens, its credentials, the
//! object store's durability and size limits, lifecycle timing and the buckets made
//! at start. This module owns the section: its defaults and its validation.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The S3-compatible server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub enabled: bool,
    pub addr: SocketAddr,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub public_url: String,
    pub max_object_size: u64,
    pub fsync: bool,
    pub inline_max_bytes: usize,
    pub lifecycle_day_seconds: u64,
    pub lifecycle_interval_seconds: u64,
    pub buckets: Vec<BucketConfig>,
    /// Seal every new object of every bucket with SSE-S3 (MinIO's auto-encryption).
    pub encrypt_all: bool,
    /// The master key wrapping every data key; empty = `{data_dir}/master.key`.
    /// Keep it outside the data directory to keep it out of its backups.
    pub master_key_file: std::path::PathBuf,
    /// The master key itself (base64 of 32 bytes, or a master.key file's text),
    /// for a secrets store through `DARKROOM_S3__MASTER_KEY`; instead of
    /// `master_key_file`. Never printed (`config check` leaves it out).
    #[serde(skip_serializing)]
    pub master_key: String,
}

impl Default for S3Config {
    fn default() -> Self {
        let bucket = |name: &str, expire_days| BucketConfig {
            name: name.into(),
            public_read: false,
            expire_days,
        };
        Self {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 9000)),
            access_key: String::new(),
            secret_key: String::new(),
            region: "us-east-1".into(),
            public_url: String::new(),
            max_object_size: 5 * 1024 * 1024 * 1024,
            fsync: true,
            inline_max_bytes: 32 * 1024,
            lifecycle_day_seconds: 86_400,
            lifecycle_interval_seconds: 60,
            buckets: vec![
                bucket("comfyui-outputs", 0),
                bucket("darkchannel-jobs", 0),
                bucket("darkchannel-output", 0),
                bucket("darkchannel-refs", 0),
                bucket("darkchannel-temp", 1),
            ],
            encrypt_all: false,
            master_key_file: std::path::PathBuf::new(),
            master_key: String::new(),
        }
    }
}

/// A bucket created at startup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub name: String,
    #[serde(default)]
    pub public_read: bool,
    /// Lifecycle days after which objects expire; 0 means never.
    #[serde(default)]
    pub expire_days: u32,
}

impl S3Config {
    /// The object store's working options.
    pub fn storage_options(&self) -> crate::object_store::StorageOptions {
        crate::object_store::StorageOptions {
            fsync: self.fsync,
            max_object_size: self.max_object_size,
            lifecycle_day_ms: i64::try_from(self.lifecycle_day_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            inline_max: self.inline_max_bytes,
        }
    }

    /// The master keys: `s3.master_key` itself, else the file (and a rotation's
    /// next file) at [`S3Config::master_key_path`], created when missing.
    pub fn keyring(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<crate::crypto::Keyring, crate::crypto::MasterKeyError> {
        if self.master_key.is_empty() {
            crate::crypto::Keyring::load_or_create(&self.master_key_path(data_dir))
        } else {
            crate::crypto::Keyring::from_text(&self.master_key)
        }
    }

    /// Where the master key is (`s3.master_key_file`, else in the data directory).
    pub fn master_key_path(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        if self.master_key_file.as_os_str().is_empty() {
            data_dir.join("master.key")
        } else {
            self.master_key_file.clone()
        }
    }

    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.access_key.is_empty() != self.secret_key.is_empty() {
            return invalid(
                "s3.access_key",
                "set both s3.access_key and s3.secret_key, or neither (to generate them)",
            );
        }
        if !self.secret_key.is_empty() && self.secret_key.len() < 8 {
            return invalid("s3.secret_key", "must be at least 8 characters");
        }
        if !self.master_key.is_empty() {
            if !self.master_key_file.as_os_str().is_empty() {
                return invalid(
                    "s3.master_key",
                    "set s3.master_key or s3.master_key_file, not both",
                );
            }
            if let Err(e) = crate::crypto::Keyring::from_text(&self.master_key) {
                return Err(ConfigError::Invalid {
                    key: "s3.master_key",
                    message: e.to_string().trim_start_matches("s3.master_key: ").to_owned(),
                });
            }
        }
        if self.lifecycle_day_seconds == 0 {
            return invalid("s3.lifecycle_day_seconds", "must be at least 1");
        }
        if self.lifecycle_interval_seconds == 0 {
            return invalid("s3.lifecycle_interval_seconds", "must be at least 1");
        }
        for b in &self.buckets {
            if let Err(e) = crate::object_store::validate_bucket_name(&b.name) {
                return Err(ConfigError::Invalid {
                    key: "s3.buckets.name",
                    message: format!("{:?}: {e}", b.name),
                });
            }
        }
        Ok(())
    }
}
