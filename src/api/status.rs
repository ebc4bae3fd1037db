//! `GET /api/v1/status`: gathers the [`StatusSnapshot`] from the services that own
//! each number (queue counts, backends, bucket usage, cache, alerts).
//!
//! A shared store that does not answer (the queue's or the cache's Redis) does not
//! take the whole answer down: its part says why it is missing, its health says the
//! store is unreachable, and the GPUs, backends and alerts are still there — the
//! operator looking at a dashboard needs them most then.

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::queue::{JobStatus, ListQuery};
use crate::status::{CacheStatus, QueueStatus, StatusSnapshot, StoreChecks};

/// Everything the dashboard shows, in one answer.
#[utoipa::path(
    get, path = "/api/v1/status", tag = "status",
    responses((status = 200, description = "The snapshot; while Redis does not answer, `queue.unavailable` / `cache.unavailable` say so", body = StatusSnapshot), (status = 401, body = ErrorBody))
)]
pub async fn status(State(s): State<ApiState>) -> Result<Json<StatusSnapshot>, ApiError> {
    Ok(Json(collect(&s).await?))
}

/// Reads every part of the snapshot.
pub async fn collect(s: &ApiState) -> Result<StatusSnapshot, ApiError> {
    let now = s.queue.now_ms();
    // The shared stores are read and checked at once: a Redis that does not answer
    // costs one wait, not one per part.
    let (counts, usage, stores) = tokio::join!(
        s.queue.counts(),
        s.prompts.usage(),
        StoreChecks::run(&s.queue, &s.prompts, &s.dispatcher)
    );
    let (counts, queue_unavailable) = degraded(counts.map_err(ApiError::from))?;
    let (usage, cache_unavailable) = degraded(usage.map_err(ApiError::from))?;
    let oldest_queued_seconds = match queue_unavailable {
        None => oldest_queued_seconds(s, now).await?,
        Some(_) => None,
    };
    let buckets = s
        .storage
        .usage()
        .await
        .map_err(|e| ApiError::Internal(format!("bucket usage: {e}")))?;
    let stats = s.prompts.stats();
    let alerts = s
        .alerts
        .as_ref()
        .map(|a| {
            a.active()
                .iter()
                .filter_map(|x| serde_json::to_value(x).ok())
                .collect()
        })
        .unwrap_or_default();
    Ok(StatusSnapshot {
        version: env!("CARGO_PKG_VERSION").into(),
        at_ms: now,
        last_event_id: s.hub.next_id().saturating_sub(1),
        gpus: s.gpu.report(),
        queue: QueueStatus {
            counts,
            unavailable: queue_unavailable,
            oldest_queued_seconds,
            recent: s.recent.stats(now),
        },
        backends: s.dispatcher.backends(),
        output_store: stores.outputs,
        queue_store: stores.queue,
        cache_store: stores.cache,
        buckets,
        cache: CacheStatus {
            unavailable: cache_unavailable,
            entries: usage.entries,
            bytes: usage.bytes,
            max_bytes: s.prompts.max_bytes(),
            hits: stats.hits,
            misses: stats.misses,
            evictions: stats.evictions,
        },
        alerts,
    })
}

/// A part read from a shared store, or — when that store does not answer — its
/// default with the reason, so the rest of the snapshot is still served.
fn degraded<T: Default>(read: Result<T, ApiError>) -> Result<(T, Option<String>), ApiError> {
    match read {
        Ok(value) => Ok((value, None)),
        Err(ApiError::Unavailable(why)) => Ok((T::default(), Some(why))),
        Err(e) => Err(e),
    }
}

/// The age of the oldest queued job, looking at up to the first 1,000 in claim
/// order (priorities can put an older job behind newer ones).
pub async fn oldest_queued_seconds(s: &ApiState, now: i64) -> Result<Option<f64>, ApiError> {
    let page = s.queue.list(ListQuery::new(JobStatus::Queued, 1000)).await?;
    #[allow(clippy::cast_precision_loss)]
    Ok(page
        .jobs
        .iter()
        .map(|j| j.created_ms)
        .min()
        .map(|c| (now - c).max(0) as f64 / 1000.0))
}
