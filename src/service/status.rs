//! The status collector: gathers the [`StatusSnapshot`] from the services that own
//! each number (queue counts, backends, bucket usage, cache, alerts) — what
//! `GET /api/v1/status`, `darkroom status` and the dashboard show.
//!
//! A shared store that does not answer (the queue's or the cache's Redis) does not
//! take the whole answer down: its part says why it is missing, its health says the
//! store is unreachable, and the GPUs, backends and alerts are still there — the
//! operator looking at a dashboard needs them most then.

use super::{ServiceError, Services};
use crate::queue::{JobStatus, ListQuery};
use crate::status::{CacheStatus, QueueStatus, StatusSnapshot};
use crate::stores::StoreChecks;

impl Services {
    /// Reads every part of the snapshot.
    pub async fn status(&self) -> Result<StatusSnapshot, ServiceError> {
        let now = self.queue.now_ms();
        // The shared stores are read and checked at once: a Redis that does not
        // answer costs one wait, not one per part.
        let (counts, usage, stores) = tokio::join!(
            self.queue.counts(),
            self.prompts.usage(),
            StoreChecks::run(&self.queue, &self.prompts, &self.dispatcher)
        );
        let (counts, queue_unavailable) = degraded(counts.map_err(ServiceError::from))?;
        let (usage, cache_unavailable) = degraded(usage.map_err(ServiceError::from))?;
        let oldest_queued_seconds = match queue_unavailable {
            None => self.oldest_queued_seconds(now).await?,
            Some(_) => None,
        };
        let buckets = self
            .storage
            .usage()
            .await
            .map_err(|e| ServiceError::Internal(format!("bucket usage: {e}")))?;
        let stats = self.prompts.stats();
        Ok(StatusSnapshot {
            version: env!("CARGO_PKG_VERSION").into(),
            at_ms: now,
            last_event_id: self.hub.next_id().saturating_sub(1),
            gpus: self.gpu.report(),
            queue: QueueStatus {
                counts,
                unavailable: queue_unavailable,
                oldest_queued_seconds,
                recent: self.recent.stats(now),
            },
            backends: self.dispatcher.backends(),
            output_store: stores.outputs,
            queue_store: stores.queue,
            cache_store: stores.cache,
            buckets,
            cache: CacheStatus {
                unavailable: cache_unavailable,
                entries: usage.entries,
                bytes: usage.bytes,
                max_bytes: self.prompts.max_bytes(),
                hits: stats.hits,
                misses: stats.misses,
                evictions: stats.evictions,
            },
            alerts: self
                .alerts
                .as_ref()
                .map(crate::alerts::Alerts::active)
                .unwrap_or_default(),
            endpoints: self.endpoints.clone(),
            backup: self.backup_status(),
        })
    }

    /// The age of the oldest queued job, looking at up to the first 1,000 in claim
    /// order (priorities can put an older job behind newer ones).
    pub async fn oldest_queued_seconds(&self, now: i64) -> Result<Option<f64>, ServiceError> {
        let page = self.queue.list(ListQuery::new(JobStatus::Queued, 1000)).await?;
        #[allow(clippy::cast_precision_loss)]
        Ok(page
            .jobs
            .iter()
            .map(|j| j.created_ms)
            .min()
            .map(|c| (now - c).max(0) as f64 / 1000.0))
    }
}

/// A part read from a shared store, or — when that store does not answer — its
/// default with the reason, so the rest of the snapshot is still served.
fn degraded<T: Default>(read: Result<T, ServiceError>) -> Result<(T, Option<String>), ServiceError> {
    match read {
        Ok(value) => Ok((value, None)),
        Err(ServiceError::Unavailable(why)) => Ok((T::default(), Some(why))),
        Err(e) => Err(e),
    }
}
