//! The queue's tunables: lease length, per-job defaults, how long finished jobs are
//! kept, and the retry backoff curve.

use std::time::Duration;

use super::job::duration_ms;

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
