//! One snapshot of everything an operator looks at — queue counts and rates,
//! ComfyUI backends, storage per bucket, cache, alerts — as plain serde types,
//! served by `GET /api/v1/status` and read back by `darkroom status` and the
//! dashboard's remote mode, so every view shows the same numbers.
//!
//! Rates and percentiles come from [`RecentGenerations`], a bounded window of the
//! attempts the dispatcher finished, fed by the daemon. Where things are kept, and
//! whether each store answers, is [`StoreChecks`] — also what `/metrics` exports and
//! the `store_down` alert watches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::cache::PromptCache;
use crate::clock::Millis;
use crate::dispatch::{BackendStatus, Dispatcher, StoreHealth};
use crate::queue::Counts;
use crate::queue::Queue;
use crate::storage::BucketUsage;
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
    pub output_store: crate::dispatch::StoreHealth,
    /// Where the job queue lives (`embedded` or `redis` with its endpoint) and
    /// whether it answers a PING.
    #[serde(default = "crate::dispatch::StoreHealth::embedded")]
    pub queue_store: crate::dispatch::StoreHealth,
    /// Where the caches live, likewise.
    #[serde(default = "crate::dispatch::StoreHealth::embedded")]
    pub cache_store: crate::dispatch::StoreHealth,
    /// darkroom's own buckets.
    pub buckets: Vec<BucketUsage>,
    pub cache: CacheStatus,
    /// Pending and firing alerts, most severe first.
    pub alerts: Vec<crate::alerts::Alert>,
}

/// The store of each thing darkroom keeps — the queue, the caches, the outputs —
/// checked now (a PING for Redis, a HeadBucket for S3; embedded ones always answer).
#[derive(Debug, Clone)]
pub struct StoreChecks {
    pub queue: StoreHealth,
    pub cache: StoreHealth,
    pub outputs: StoreHealth,
}

impl StoreChecks {
    /// Checks all three at once.
    pub async fn run(queue: &Queue, prompts: &PromptCache, dispatcher: &Dispatcher) -> Self {
        let (queue, cache, outputs) = tokio::join!(
            StoreHealth::of_redis(queue.redis()),
            StoreHealth::of_redis(prompts.redis()),
            dispatcher.output_store()
        );
        Self {
            queue,
            cache,
            outputs,
        }
    }

    /// Each with its role: `queue`, `cache`, `outputs`.
    pub fn by_role(&self) -> [(&'static str, &StoreHealth); 3] {
        [
            ("queue", &self.queue),
            ("cache", &self.cache),
            ("outputs", &self.outputs),
        ]
    }

    /// The shared (not embedded) ones, as the `store_down` alert reads them.
    pub fn shared(&self) -> Vec<crate::alerts::StoreCheck> {
        self.by_role()
            .into_iter()
            .filter(|(_, h)| h.backend != "embedded")
            .map(|(role, h)| crate::alerts::StoreCheck {
                instance: role.to_owned(),
                store: h
                    .endpoint
                    .as_ref()
                    .map_or_else(|| h.backend.clone(), |e| format!("{} {e}", h.backend)),
                up: h.reachable,
                error: h.error.clone(),
            })
            .collect()
    }
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
    success: bool,
    cache_hit: bool,
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
    pub fn record(&self, at_ms: Millis, seconds: f64, success: bool, cache_hit: bool) {
        let mut q = lock(&self.inner);
        if q.len() == MAX_KEPT {
            q.pop_front();
        }
        q.push_back(Finished {
            at_ms,
            seconds,
            success,
            cache_hit,
        });
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
        let failures = q.iter().filter(|f| !f.success).count();
        let hits = q.iter().filter(|f| f.cache_hit).count();
        let mut times: Vec<f64> = q
            .iter()
            .filter(|f| f.success && !f.cache_hit)
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
        r.record(0, 100.0, true, false);
        for i in 1..=10 {
            r.record(400_000 + i, f64::from(u32::try_from(i).unwrap()), i != 10, i == 9);
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
