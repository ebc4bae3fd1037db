//! The HTTP API on its own port (default 127.0.0.1:9080; S3 stays on 9000): what
//! n8n, scripts, Prometheus and load balancers talk to. For now it serves the
//! operational endpoints — `GET /healthz` (process up), `GET /readyz` (databases
//! open, S3 serving) and `GET /metrics` (Prometheus text format); the job endpoints
//! arrive with the dispatcher.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::storage::ObjectStore;

/// What the handlers need; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub storage: ObjectStore,
    pub queue: Queue,
    pub metrics: Metrics,
    /// Where the S3 API listens, if it is enabled.
    pub s3_addr: Option<SocketAddr>,
}

/// The router, separate from the listener so tests can drive it directly.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` fires, letting requests finish.
pub async fn serve(listener: TcpListener, state: ApiState, shutdown: CancellationToken) {
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "api: server failed");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<ApiState>) -> Response {
    let mut problems = Vec::new();
    if let Err(e) = s.storage.list_buckets().await {
        problems.push(format!("object store: {e}"));
    }
    if let Err(e) = s.queue.counts().await {
        problems.push(format!("job queue: {e}"));
    }
    if s.s3_addr.is_none() {
        problems.push("S3 API is disabled (s3.enabled = false)".to_string());
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

async fn metrics(State(s): State<ApiState>) -> Response {
    let body = s.metrics.render(&s.storage, &s.queue).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}
