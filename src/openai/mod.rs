//! OpenAI's Images API on the API port, for tools that already speak it (the
//! `openai` SDKs, n8n's OpenAI node, Open WebUI, LibreChat): `POST
//! /v1/images/generations`, `GET /v1/models` and `GET /v1/models/{id}`. Requests
//! become jobs through the same jobs service as `/api/v1/jobs` ([`images`]);
//! answers and errors ([`error`]) are in OpenAI's shapes. `/v1` takes the same
//! bearer token as `/api/v1` (`api.token`), refused in OpenAI's error shape.
//! `[openai]` ([`config`]) picks the default template and the limits.

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub mod config;
pub mod error;
pub mod images;

pub use config::OpenAiConfig;
pub use error::{OpenAiError, OpenAiErrorBody};

use crate::api::ApiState;

/// The `/v1` routes (nested by the API's router).
pub fn router(state: &ApiState) -> Router<ApiState> {
    Router::new()
        .route("/images/generations", post(images::generations))
        .route("/models", get(images::models))
        .route("/models/{id}", get(images::model_by_id))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
}

async fn not_found() -> OpenAiError {
    OpenAiError::not_found("no such endpoint: darkroom speaks /v1/images/generations and /v1/models")
}

/// Refuses requests without the API's bearer token, in OpenAI's shape.
async fn require_token(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let (ip, given) = crate::api::credentials(&req);
    match crate::api::who_is(&s, ip, &given).await {
        Ok(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Err(crate::api::ApiError::Throttled { retry_after_secs }) => {
            let mut resp = OpenAiError::rate_limited(format!(
                "too many failed authentications from this address; try again in {retry_after_secs} s"
            ))
            .into_response();
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after_secs.into());
            resp
        }
        Err(_) => OpenAiError::unauthorized().into_response(),
    }
}
