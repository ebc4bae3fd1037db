//! The operational endpoints: `GET /healthz` (the process is up), `GET /readyz`
//! (queue and caches answer — redb or Redis —, outputs can be stored and served, and
//! a ComfyUI backend is healthy when any is configured) and `GET /metrics` (Prometheus text format).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::sync::atomic::Ordering;

use super::ApiState;
use crate::metrics::Scrape;
use crate::service::Services;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take work.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = String, content_type = "text/plain"),
    (status = 503, description = "Not ready; the body says why", body = String, content_type = "text/plain"),
))]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let s = &state.svc;
    let mut problems = Vec::new();
    if let Err(e) = s.storage.list_buckets().await {
        problems.push(format!("object store: {e}"));
    }
    if let Err(e) = s.queue.counts().await {
        problems.push(format!("job queue: {e}"));
    }
    if let Err(e) = s.prompts.usage().await {
        problems.push(format!("prompt cache: {e}"));
    }
    let outputs = s.dispatcher.output_store().await;
    if !outputs.is_shared() {
        if s.s3_addr.is_none() {
            problems
                .push("outputs are stored here but the S3 API is disabled (s3.enabled = false)".to_string());
        }
    } else if !outputs.reachable {
        let endpoint = outputs.endpoint.unwrap_or_default();
        let why = outputs.error.unwrap_or_default();
        problems.push(format!("output store {endpoint} does not answer: {why}"));
    }
    let backends = s.dispatcher.backends();
    if !backends.is_empty() && !backends.iter().any(|b| b.healthy) {
        let urls: Vec<&str> = backends.iter().map(|b| b.url.as_str()).collect();
        problems.push(format!("no ComfyUI backend is healthy ({})", urls.join(", ")));
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
            .into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let s = &state.svc;
    let body = s.metrics.render(&scrape(s).await);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Reads what `/metrics` reports but other modules own. A part that cannot be
/// read is logged and left out; the rest is still served.
async fn scrape(s: &Services) -> Scrape {
    let counts = s
        .queue
        .counts()
        .await
        .map_err(|e| tracing::warn!(error = %e, "metrics: cannot read queue counts"))
        .ok();
    let buckets = s
        .storage
        .usage()
        .await
        .map_err(|e| tracing::warn!(error = %e, "metrics: cannot read bucket usage"))
        .unwrap_or_default();
    let usage = s.prompts.usage().await.unwrap_or_default();
    let stores = crate::stores::StoreChecks::run(&s.queue, &s.prompts, &s.dispatcher).await;
    let stats = s.prompts.stats();
    let lifecycle = s.storage.counters();
    let (alerts_firing, alert_notifications) = match &s.alerts {
        Some(a) => {
            let d = a.deliveries();
            (
                a.firing_count()
                    .into_iter()
                    .map(|(name, severity, n)| (name, severity.to_string(), n))
                    .collect(),
                (d.delivered, d.failed, d.retried),
            )
        }
        None => (Vec::new(), (0, 0, 0)),
    };
    Scrape {
        counts,
        oldest_queued_seconds: s.oldest_queued_seconds(s.queue.now_ms()).await.ok().flatten(),
        buckets,
        backends: s.dispatcher.backends(),
        cache_entries: usage.entries,
        cache_bytes: usage.bytes,
        cache_hits: stats.hits,
        cache_misses: stats.misses,
        cache_evictions: stats.evictions,
        lifecycle_expired: lifecycle.lifecycle_expired.load(Ordering::Relaxed),
        lifecycle_aborted: lifecycle.lifecycle_aborted_uploads.load(Ordering::Relaxed),
        webhooks: s
            .webhooks
            .as_ref()
            .map_or((0, 0, 0), crate::webhook::Webhooks::counts),
        alert_notifications,
        alerts_firing,
        disk: crate::object_store::disk_space(s.storage.root()),
        gpu: s.gpu.report(),
        stores: stores
            .by_role()
            .into_iter()
            .map(|(role, h)| (role.to_owned(), h.backend.to_string(), h.reachable))
            .collect(),
    }
}
