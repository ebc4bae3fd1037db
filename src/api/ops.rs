//! The operational endpoints: `GET /healthz` (the process is up), `GET /readyz`
//! (the service layer's readiness: queue and caches answer, outputs can be stored
//! and served, a ComfyUI backend is healthy when any is configured) and
//! `GET /metrics` (Prometheus text format of the service layer's scrape).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;

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
    let problems = state.svc.readiness().await;
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
    let body = s.metrics.render(&s.scrape().await);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}
