//! The queue's tunables: lease length, per-job defaults, how long finished jobs are
//! kept, and the retry backoff curve — [`QueueConfig`] as the queue works with it,
//! and `[queue]` ([`QueueSettings`]) as the file spells it. This module owns the
//! section: its defaults and its validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::job::duration_ms;
use crate::config::ConfigError;

/// Settings of a [`crate::queue::Queue`]; `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a claim or heartbeat keeps a job leased (default 30 s).
    pub lease: Duration,
    /// How long one attempt may run unless the job says otherwise (default 10 min).
    pub default_timeout: Duration,
    /// Attempts before a job is dead-lettered unless it says otherwise (default 3).
    pub default_max_attempts: u32,
    /// How long succeeded and cancelled jobs are kept unless the job says otherwise
    /// (default 24 h, like RQ's `result_ttl`).
    pub result_ttl: Duration,
    /// How long dead-lettered (`failed`) jobs are kept (default 7 days).
    pub failed_ttl: Duration,
    pub backoff: Backoff,
    /// Events a slow subscriber may fall behind by before it sees `Lagged` (default 4096).
    pub event_capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            default_timeout: Duration::from_mins(10),
            default_max_attempts: 3,
            result_ttl: Duration::from_hours(24),
            failed_ttl: Duration::from_hours(7 * 24),
            backoff: Backoff::default(),
            event_capacity: 4096,
        }
    }
}

/// Exponential backoff with jitter between attempts.
///
/// The delay after failed attempt `n` (1-based) is `base * 2^(n-1)`, stretched by a
/// random factor in `[1, 1 + jitter)` so jobs that failed together do not come back
/// together, and capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// 0.0 ..= 1.0; 0.25 stretches each delay by up to a quarter.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_mins(10),
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt`, for a jitter draw `unit` in `[0, 1)`.
    pub fn delay_ms(&self, attempt: u32, unit: f64) -> i64 {
        let (low, _) = self.bounds_ms(attempt);
        let stretch = 1.0 + self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let stretched = (low as f64 * stretch) as i64;
        stretched.clamp(low, duration_ms(self.max).max(low))
    }

    /// The smallest and largest delay after failed attempt `attempt`.
    pub fn bounds_ms(&self, attempt: u32) -> (i64, i64) {
        let max = duration_ms(self.max);
        let shift = attempt.saturating_sub(1).min(40);
        let low = duration_ms(self.base).saturating_mul(1_i64 << shift).min(max);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let high = ((low as f64) * (1.0 + self.jitter.clamp(0.0, 1.0))) as i64;
        (low, high.min(max).max(low))
    }
}

/// The durable job queue (`{data_dir}/queue.redb`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// `embedded` (a redb file in the data directory) or `redis` (`[redis]`, shared
    /// by several nodes).
    pub backend: crate::redis_store::Backend,
    /// Seconds a claimed job stays leased without a heartbeat.
    pub lease_seconds: u64,
    /// Seconds a job may run before it is stopped (per-job override allowed).
    pub default_timeout_seconds: u64,
    /// Attempts before a job is dead-lettered as `failed` (per-job override allowed).
    pub default_max_attempts: u32,
    /// Seconds finished jobs are kept (RQ's result_ttl; per-job override allowed).
    pub result_ttl_seconds: u64,
    /// Seconds failed jobs are kept for inspection and retry.
    pub failed_ttl_seconds: u64,
    /// First retry delay in seconds; doubles per attempt, with jitter.
    pub backoff_base_seconds: u64,
    /// Longest retry delay in seconds.
    pub backoff_max_seconds: u64,
    /// Milliseconds between reaper passes (expired leases, timeouts, due delayed jobs).
    pub reaper_interval_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            backend: crate::redis_store::Backend::Embedded,
            lease_seconds: 30,
            default_timeout_seconds: 600,
            default_max_attempts: 3,
            result_ttl_seconds: 86_400,
            failed_ttl_seconds: 7 * 86_400,
            backoff_base_seconds: 2,
            backoff_max_seconds: 600,
            reaper_interval_ms: 1000,
        }
    }
}

impl QueueSettings {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.lease_seconds == 0 || self.reaper_interval_ms == 0 {
            return invalid(
                "queue.lease_seconds",
                "queue.lease_seconds and queue.reaper_interval_ms must be at least 1",
            );
        }
        if self.default_max_attempts == 0 {
            return invalid("queue.default_max_attempts", "must be at least 1");
        }
        Ok(())
    }

    /// The queue's working settings.
    pub fn to_queue_config(&self) -> QueueConfig {
        QueueConfig {
            lease: Duration::from_secs(self.lease_seconds),
            default_timeout: Duration::from_secs(self.default_timeout_seconds),
            default_max_attempts: self.default_max_attempts,
            result_ttl: Duration::from_secs(self.result_ttl_seconds),
            failed_ttl: Duration::from_secs(self.failed_ttl_seconds),
            backoff: Backoff {
                base: Duration::from_secs(self.backoff_base_seconds),
                max: Duration::from_secs(self.backoff_max_seconds),
                ..Backoff::default()
            },
            ..QueueConfig::default()
        }
    }
}
