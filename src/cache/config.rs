//! `[cache]`: where the prompt cache and the key-value cache live, how long a
//! cached generation is reused and how large the cache may grow. This module owns
//! the section: its defaults and its validation.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The prompt cache and the key-value cache (`{data_dir}/cache.redb`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `embedded` (`{data_dir}/cache.redb`) or `redis` (`[redis]`, shared by several
    /// nodes, so one node's cached result serves them all).
    pub backend: crate::redis_store::Backend,
    /// Seconds a cached generation result is reused.
    pub prompt_ttl_seconds: u64,
    /// Total size of the outputs the prompt cache refers to before least recently
    /// used entries are evicted (the seed's Redis ran with maxmemory 2gb allkeys-lru).
    pub prompt_max_bytes: u64,
    /// Seconds between expiry sweeps of both caches.
    pub sweep_interval_seconds: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            backend: crate::redis_store::Backend::Embedded,
            prompt_ttl_seconds: 7 * 86_400,
            prompt_max_bytes: 2 << 30,
            sweep_interval_seconds: 60,
        }
    }
}

impl CacheSettings {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sweep_interval_seconds == 0 {
            return Err(ConfigError::Invalid {
                key: "cache.sweep_interval_seconds",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The prompt cache's working settings.
    pub fn prompt_cache(&self) -> super::PromptCacheConfig {
        super::PromptCacheConfig {
            ttl: std::time::Duration::from_secs(self.prompt_ttl_seconds),
            max_bytes: self.prompt_max_bytes,
        }
    }
}
