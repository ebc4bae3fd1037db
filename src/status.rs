//! One snapshot of everything an operator looks at — queue counts and rates,
//! ComfyUI backends, storage per bucket, cache, alerts — as plain serde types,
//! served by `GET /api/v1/status` and read back by `darkroom status` and the
//! dashboard's remote mode, so every view shows the same numbers.
//!
//! Rates and percentiles come from [`RecentGenerations`], a bounded window of the
//! attempts the dispatcher finished, fed by the daemon. Where things are kept, and
//! whether each store answers, is [`crate::stores`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::dispatch::{AttemptEnd, BackendStatus};
use crate::object_store::BucketUsage;
use crate::queue::Counts;
use crate::stores::StoreHealth;
use crate::sync::lock;

/// The whole snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusSnapshot {
    pub version: String,
    pub at_ms: Millis,
    /// The id of the last event published (resume `/api/v1/events` from here).
    pub last_event_id: u64,
    /// GPU readings (or why there are none).
    pub gpus: crate::gpu::GpuReport,
    pub queue: QueueStatus,
    pub backends: Vec<BackendStatus>,
    /// Where outputs are stored (`embedded` or an external `s3` endpoint) and
    /// whether it answers.
    pub output_store: StoreHealth,
    /// Where the job queue lives (`embedded` or `redis` with its endpoint) and
    /// whether it answers a PING.
    #[serde(default = "StoreHealth::embedded")]
    pub queue_store: StoreHealth,
    /// Where the caches live, likewise.
    #[serde(default = "StoreHealth::embedded")]
    pub cache_store: StoreHealth,
    /// darkroom's own buckets.
    pub buckets: Vec<BucketUsage>,
    pub cache: CacheStatus,
    /// Pending and firing alerts, most severe first.
    pub alerts: Vec<crate::alerts::Alert>,
    /// Where this daemon listens and how to log in to its S3 API (absent from
    /// daemons older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The backup schedule and the last backup (absent from daemons that take
    /// none, and from daemons older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::BackupStatus>,
}

/// Where a daemon listens, what a newcomer needs to use it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Endpoints {
    /// The HTTP API (`http://127.0.0.1:9080`).
    pub api_url: String,
    /// The S3 API, absent when darkroom's S3 server is off (`s3.enabled = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_url: Option<String>,
    /// The S3 access key (never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_access_key: Option<String>,
    /// Where the S3 secret key is: the generated credentials file, or the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_secret_in: Option<String>,
}

/// The queue at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStatus {
    /// All zero while the queue store does not answer (see `unavailable`).
    pub counts: Counts,
    /// Why the queue could not be read (its Redis does not answer); absent when it could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Age of the oldest job waiting to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_seconds: Option<f64>,
    #[serde(flatten)]
    pub recent: GenerationStats,
}

/// What the last few minutes of generations looked like.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenerationStats {
    /// Finished attempts per minute over the last five minutes.
    pub jobs_per_minute: f64,
    /// Share of the window's attempts that failed (0..=1).
    pub failure_ratio: f64,
    /// Median and 95th percentile of generation time (cache hits excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_seconds: Option<f64>,
    /// Share of finished jobs served from the prompt cache.
    pub cache_hit_ratio: f64,
}

/// The prompt cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheStatus {
    /// Why the cache's size could not be read (its Redis does not answer): `entries`
    /// and `bytes` are then zero; absent when it could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// One finished attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Finished {
    at_ms: Millis,
    seconds: f64,
    end: AttemptEnd,
}

/// The window the rates are computed over.
const WINDOW_MS: Millis = 5 * 60 * 1000;
/// At most this many attempts are kept, whatever the window.
const MAX_KEPT: usize = 10_000;

/// A bounded window of recent generations; cheap to clone.
#[derive(Clone, Default)]
pub struct RecentGenerations {
    inner: Arc<Mutex<VecDeque<Finished>>>,
}

impl RecentGenerations {
    pub fn record(&self, at_ms: Millis, seconds: f64, end: AttemptEnd) {
        let mut q = lock(&self.inner);
        if q.len() == MAX_KEPT {
            q.pop_front();
        }
        q.push_back(Finished { at_ms, seconds, end });
    }

    /// The statistics of the five minutes before `now_ms`.
    pub fn stats(&self, now_ms: Millis) -> GenerationStats {
        let mut q = lock(&self.inner);
        while q.front().is_some_and(|f| f.at_ms < now_ms - WINDOW_MS) {
            q.pop_front();
        }
        #[allow(clippy::cast_precision_loss)]
        let n = q.len() as f64;
        if q.is_empty() {
            return GenerationStats::default();
        }
        let failures = q.iter().filter(|f| !f.end.succeeded()).count();
        let hits = q.iter().filter(|f| f.end.cache_hit()).count();
        let mut times: Vec<f64> = q
            .iter()
            .filter(|f| f.end == AttemptEnd::Generated)
            .map(|f| f.seconds)
            .collect();
        times.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        GenerationStats {
            jobs_per_minute: n / 5.0,
            failure_ratio: failures as f64 / n,
            p50_seconds: percentile(&times, 0.50),
            p95_seconds: percentile(&times, 0.95),
            cache_hit_ratio: hits as f64 / n,
        }
    }
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_cover_the_last_five_minutes() {
        let r = RecentGenerations::default();
        r.record(0, 100.0, AttemptEnd::Generated);
        for i in 1..=10 {
            let end = match i {
                9 => AttemptEnd::CacheHit,
                10 => AttemptEnd::Failed { retried: false },
                _ => AttemptEnd::Generated,
            };
            r.record(400_000 + i, f64::from(u32::try_from(i).unwrap()), end);
        }
        let s = r.stats(400_100);
        // The first one is older than the window.
        assert!((s.jobs_per_minute - 2.0).abs() < 1e-9);
        assert!((s.failure_ratio - 0.1).abs() < 1e-9);
        assert!((s.cache_hit_ratio - 0.1).abs() < 1e-9);
        // Successful, not cached: 1..=8 seconds.
        assert_eq!(s.p50_seconds, Some(4.0));
        assert_eq!(s.p95_seconds, Some(8.0));
        assert_eq!(RecentGenerations::default().stats(0), GenerationStats::default());
    }
}
