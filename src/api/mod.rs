//! The HTTP API on its own port (default 127.0.0.1:9080; S3 stays on 9000): what
//! n8n, scripts, the dashboard's remote mode, Prometheus and load balancers talk
//! to.
//!
//! - `/api/v1/jobs` ([`jobs`]): submit (with `?wait=`), get, list, cancel, retry;
//! - `/api/v1/jobs/{id}/outputs/{n}/thumbnail`, `/api/v1/jobs/{id}/preview`
//!   ([`pictures`]): thumbnails of outputs and a running job's live preview;
//! - `/api/v1/events` ([`events`]): Server-Sent Events with `Last-Event-ID` resume;
//! - `/api/v1/templates` ([`templates`]): list, show, import, replace, delete,
//!   validate workflow templates;
//! - `/api/v1/status`, `/api/v1/openapi.json` (here, [`openapi`]);
//! - `/api/v1/buckets/{bucket}/objects|presign`, `/api/v1/logs` ([`browse`]), for
//!   the dashboard's storage browser and log panel;
//! - `/api/v1/backups` ([`backups`]): take a backup now, read the schedule's state;
//! - `/api/v1/models` ([`models`]): the model catalog, availability, timings, swaps;
//! - `/healthz`, `/readyz`, `/metrics` ([`ops`]);
//! - `/v1` (OpenAI's Images API, [`crate::openai`]) and `/mcp` (MCP's Streamable
//!   HTTP transport, [`crate::mcp::http`]), behind the same token.
//!
//! `/api/v1` takes a bearer token when `api.token` is set (the ops endpoints too
//! with `api.protect_ops`); errors are JSON from one place ([`error`]). Handlers
//! only extract, call the service layer ([`crate::service`]) and map its errors.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

pub mod backups;
pub mod browse;
pub mod config;
pub mod error;
pub mod events;
pub mod inbox;
pub mod jobs;
pub mod models;
mod multipart;
pub mod openapi;
pub mod ops;
pub mod pictures;
pub mod prompts;
mod query;
pub mod status;
pub mod templates;
pub mod usage;
pub mod users;

pub use crate::service::TemplateInfo;
pub use config::ApiConfig;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use jobs::JobPage;

use crate::service::Services;

/// What the handlers need: the services, and the API's own settings.
#[derive(Clone)]
pub struct ApiState {
    pub svc: Services,
    pub config: Arc<ApiConfig>,
    /// How `/v1` (OpenAI's Images API) maps requests onto templates.
    pub openai: Arc<crate::openai::OpenAiConfig>,
    /// The daemon's shutdown: ends MCP sessions (`/mcp`) and their streams.
    pub shutdown: CancellationToken,
    /// Failed authentications per client address (shared with the S3 listener).
    pub throttle: crate::throttle::AuthThrottle,
}

/// The address a request came from, put into its extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The router, separate from the listener so tests can drive it directly.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::get))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/{id}/outputs/{n}/thumbnail", get(pictures::thumbnail))
        .route("/jobs/{id}/preview", get(pictures::preview))
        .route("/events", get(events::events))
        .route("/status", get(status::status))
        .route("/backups", post(backups::create).get(backups::status))
        .route("/templates", get(templates::list).post(templates::create))
        .route(
            "/templates/{name}",
            get(templates::get).put(templates::put).delete(templates::delete),
        )
        .route("/templates/{name}/validate", get(templates::validate))
        .route("/models", get(models::models))
        .route("/inbox", get(inbox::list))
        .route("/prompts", get(prompts::list).post(prompts::create))
        .route(
            "/prompts/{name}",
            get(prompts::get).put(prompts::edit).delete(prompts::delete),
        )
        .route("/jobs/{id}/rating", post(prompts::rate).get(prompts::rating))
        .route(
            "/campaigns",
            get(prompts::campaigns).post(prompts::create_campaign),
        )
        .route(
            "/campaigns/{name}",
            get(prompts::report).delete(prompts::delete_campaign),
        )
        .route("/campaigns/{name}/{action}", post(prompts::campaign_action))
        .route("/collections", get(prompts::collections))
        .route(
            "/collections/{name}",
            put(prompts::put_collection).delete(prompts::delete_collection),
        )
        .route("/library", get(prompts::export).post(prompts::import))
        .route("/users", get(users::list).post(users::add))
        .route("/users/{name}", axum::routing::delete(users::remove))
        .route("/users/{name}/{action}", post(users::action))
        .route("/users/{name}/quota", axum::routing::patch(usage::set_quota))
        .route("/usage", get(usage::usage))
        .route("/keys", get(users::keys).post(users::create_key))
        .route("/keys/{id}", axum::routing::delete(users::revoke))
        .route("/buckets/{bucket}/objects", get(browse::objects))
        .route("/buckets/{bucket}/presign", get(browse::presign))
        .route("/logs", get(browse::logs))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let mut ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    if state.config.protect_ops {
        ops = ops.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    }
    let mcp = Router::new()
        .route_service(
            "/mcp",
            crate::mcp::http::service(&state.svc, &state.config, &state.shutdown),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/api/v1", api)
        .nest("/v1", crate::openai::router(&state))
        .merge(mcp)
        .merge(ops)
        .fallback(not_found)
        .with_state(state)
}

/// Serves the API on `listener` (plain, or TLS with HTTP/2 and HTTP/1.1 by ALPN)
/// until `shutdown` fires, letting requests finish. Open event streams end with
/// the shutdown too.
pub async fn serve(listener: crate::tls::Listener, state: ApiState, shutdown: CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "api: accept failed");
                    continue;
                }
            },
        };
        let tower = hyper_util::service::TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let peer = incoming.peer;
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    hyper::service::Service::call(&tower, req)
                });
            let stream = match incoming.handshake().await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "api: TLS handshake failed");
                    return;
                }
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "api: connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn not_found() -> ApiError {
    ApiError::Service(crate::service::ServiceError::NotFound(
        "no such endpoint; see /api/v1/openapi.json".into(),
    ))
}

/// Refuses requests without a valid bearer token (`api.token` or a user's key),
/// and a viewer's requests that change something; the caller's
/// [`Principal`](crate::users::Principal) goes into the request's extensions.
async fn require_token(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let (ip, given) = credentials(&req);
    let who = match who_is(&s, ip, &given).await {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    let reads = matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if who.role == crate::users::Role::Viewer && !reads {
        let e = crate::service::ServiceError::Forbidden(format!("{} is a viewer: read-only", who.user));
        return ApiError::from(e).into_response();
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// A request's address and bearer token (owned, so no borrow of the request is
/// held across the lookup).
pub(crate) fn credentials(req: &Request) -> (Option<std::net::IpAddr>, String) {
    let ip = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    (ip, given)
}

/// Who the request is from: `api.token` (or no token configured) is the
/// bootstrap admin, a `drk_` key its user. An address locked out for failing too
/// often is refused first; a failure is counted against the address.
pub(crate) async fn who_is(
    s: &ApiState,
    ip: Option<std::net::IpAddr>,
    given: &str,
) -> Result<crate::users::Principal, ApiError> {
    if let Some(ip) = ip
        && let Err(wait) = s.throttle.check(ip)
    {
        return Err(ApiError::Throttled {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    if s.config.token.is_empty() {
        return Ok(crate::users::Principal::root());
    }
    if constant_time_eq(given.as_bytes(), s.config.token.as_bytes()) {
        return Ok(crate::users::Principal::root());
    }
    let users = s.svc.users.users();
    if let Some(who) = users
        .authenticate(given)
        .await
        .map_err(crate::service::ServiceError::from)?
    {
        return Ok(who);
    }
    if let Some(ip) = ip {
        s.throttle.failed(ip, "api");
    }
    Err(ApiError::Unauthorized)
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON request body of at most `api.max_body_bytes`, its errors naming the field.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    s: &ApiState,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, s.config.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| error::json_error(&e))
}

/// Reads a request body up to `limit` bytes (413 beyond).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge { limit }),
        Err(e) => Err(ApiError::invalid(
            "body",
            format!("cannot read the request body: {e}"),
        )),
    }
}
