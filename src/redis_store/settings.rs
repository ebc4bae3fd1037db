//! `[redis]`, and the `backend` switch of `[queue]` and `[cache]`: the Redis server
//! that several darkroom nodes share for their job queue and caches. This module
//! owns the section: its defaults and its validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Where the queue (or the caches) live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A redb file in the data directory: one box, nothing to operate.
    #[default]
    Embedded,
    /// The Redis server of `[redis]`, shared by every node pointed at it.
    Redis,
}

/// The section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:6379/0`, or `rediss://` for TLS.
    pub url: String,
    /// Every key darkroom writes starts with this and a colon, so one Redis can
    /// serve other applications (or several darkroom clusters) too.
    pub key_prefix: String,
    /// Start even though Redis may evict keys (`maxmemory-policy` other than
    /// `noeviction`), which can silently drop queued jobs.
    pub allow_eviction: bool,
    /// A PEM file of the CA that signed the server's certificate (`rediss://` with a
    /// private CA); the system's web roots are used without it.
    pub ca_file: Option<PathBuf>,
    /// Milliseconds to wait for a connection or an answer before giving up.
    pub timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            key_prefix: "darkroom".into(),
            allow_eviction: false,
            ca_file: None,
            timeout_ms: 5000,
        }
    }
}

impl RedisSettings {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some() => {}
            _ => {
                return invalid(
                    "redis.url",
                    format!(
                        "`{}` is not a redis://host:port/db or rediss://host:port/db URL",
                        super::redact(&self.url)
                    ),
                );
            }
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return invalid("redis.key_prefix", "must be non-empty, without spaces".into());
        }
        if self.timeout_ms == 0 {
            return invalid("redis.timeout_ms", "must be at least 1".into());
        }
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            return invalid(
                "redis.ca_file",
                format!("{} is not a readable file", path.display()),
            );
        }
        Ok(())
    }
}
