//! Caches on the daemon's embedded store: the prompt cache (an identical generation
//! request returns the stored images instead of using the GPU again) and a small
//! key-value cache with TTL for other short-lived data.
//!
//! With `cache.backend = "redis"` both live on the shared Redis server instead
//! (`on_redis`), so every node sees one node's cached results.
//!
//! Both take a [`Store`](crate::redb_store::Store) — normally their own file opened with
//! [`crate::redb_store::Store::open_compacted`] (`{data_dir}/cache.redb`), so cache churn never
//! fragments the job queue's file — and the injectable clock, so TTL tests move time
//! instead of sleeping. [`spawn_sweeper`] removes expired entries in the background.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod config;
mod error;
mod key;
mod kv;
mod on_redis;
mod prompt;

pub use config::CacheSettings;
pub use error::CacheError;
pub use key::{CacheKey, ParseKeyError, canonical_json};
pub use kv::KvCache;
pub use prompt::{
    CacheStats, CachedObject, CachedResult, Evicted, PromptCache, PromptCacheConfig, PutOutcome, Usage,
};

use crate::clock::SharedClock;

/// Sweeps expired entries of both caches every `every` until `shutdown`.
///
/// Prompt entries swept here are only logged; objects they named are left to the S3
/// lifecycle rules. Call [`PromptCache::sweep_expired`] directly to get them back.
pub fn spawn_sweeper(
    prompts: PromptCache,
    kv: KvCache,
    clock: SharedClock,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(crate::clock::run_every(every, shutdown, move || {
        let (prompts, kv, now) = (prompts.clone(), kv.clone(), clock.now_ms());
        async move {
            match prompts.sweep_expired(now).await {
                Ok(gone) if !gone.is_empty() => {
                    tracing::debug!(entries = gone.len(), "prompt cache: expired entries swept");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "prompt cache sweep failed"),
            }
            if let Err(e) = kv.sweep_expired(now).await {
                tracing::warn!(error = %e, "key-value cache sweep failed");
            }
        }
    }))
}
