//! The job endpoints: submit (optionally waiting for the result — n8n's "respond
//! to webhook with the image URL" in one call), read one, list by status with a
//! cursor, cancel, retry. Handlers only translate: the rules are the jobs
//! service's ([`crate::service::jobs`]). A submit is JSON, or `multipart/form-data`
//! with image files (`multipart.rs` splits it; the service resolves the files).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::{ApiError, ErrorBody, json_error};
use super::query::Params;
use super::{ApiState, read_body};
use crate::dispatch::JobRequest;
use crate::queue::{Job, JobStatus};
use crate::service::jobs::parse_id;
pub use crate::service::{JobListing, JobPage};
use crate::users::Principal;

/// Submit a job: a template with parameters, or a whole API-format workflow.
#[utoipa::path(
    post, path = "/api/v1/jobs", tag = "jobs",
    request_body = JobRequest,
    params(
        ("wait" = Option<u64>, Query, description = "Hold the request up to this many seconds (max api.max_wait_seconds) for the job to finish"),
        ("Idempotency-Key" = Option<String>, Header, description = "A repeated submit with the same key returns the first job"),
    ),
    responses(
        (status = 200, description = "Finished within `wait`", body = Job),
        (status = 202, description = "Accepted (still queued or running)", body = Job),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "`model_unavailable`: no backend has or can hold the catalog model", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, description = "No ComfyUI backend is configured, or the queue store (Redis) does not answer", body = ErrorBody),
    )
)]
pub async fn submit(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let wait = params.u64("wait")?;
    let mut request = read_request(&s, &headers, body).await?;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key
            .to_str()
            .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
        request.idempotency_key = Some(key.to_owned());
    }
    let submitted = s.svc.jobs.submit_as(&who, request, wait).await?;
    let status = if submitted.job.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut resp = (status, Json(submitted.job)).into_response();
    if !submitted.created {
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

/// The job request of a submit: a JSON body, or a `multipart/form-data` one with
/// a `request` part (the JSON) and a file part per image parameter.
async fn read_request(s: &ApiState, headers: &HeaderMap, body: Body) -> Result<JobRequest, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = super::multipart::boundary(content_type) else {
        let bytes = read_body(body, s.config.max_body_bytes).await?;
        return serde_json::from_slice(&bytes).map_err(|e| json_error(&e));
    };
    let limit = s.config.max_body_bytes + usize::try_from(s.config.max_image_bytes).unwrap_or(usize::MAX);
    let bytes = read_body(body, limit).await?;
    let mut request = None;
    let mut files = std::collections::BTreeMap::new();
    for part in super::multipart::parts(&bytes, &boundary)? {
        match (part.name.as_str(), part.file_name) {
            ("request", None) => {
                request = Some(serde_json::from_slice::<JobRequest>(&part.body).map_err(|e| json_error(&e))?);
            }
            (name, Some(file)) => {
                let param = name.strip_prefix("params.").unwrap_or(name).to_owned();
                files.insert(param, (file, part.body));
            }
            (name, None) => {
                return Err(ApiError::invalid(
                    name,
                    "a multipart submit has a `request` part (the JSON) and file parts",
                ));
            }
        }
    }
    let mut request =
        request.ok_or_else(|| ApiError::invalid("request", "the multipart submit has no `request` part"))?;
    request.files = files;
    Ok(request)
}

/// One job, with its payload, progress, result and every attempt's error.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody))
)]
pub async fn get(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.svc.jobs.get_as(&who, parse_id(&id)?).await?))
}

/// Jobs by status (all statuses when none is given), a page at a time.
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs",
    params(
        ("status" = Option<String>, Query, description = "queued, scheduled, running, succeeded, failed or cancelled"),
        ("limit" = Option<usize>, Query, description = "1..=500, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody))
)]
pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<JobPage>, ApiError> {
    let params = Params::parse(query.as_deref());
    let status = match params.get("status") {
        Some(v) => Some(
            v.parse::<JobStatus>()
                .map_err(|e| ApiError::invalid("status", e.to_string()))?,
        ),
        None => None,
    };
    let listing = JobListing {
        status,
        limit: usize::try_from(params.u64("limit")?.unwrap_or(50)).unwrap_or(usize::MAX),
        cursor: params.get("cursor").map(str::to_owned),
    };
    Ok(Json(s.svc.jobs.list_as(&who, listing).await?))
}

/// Cancel a job: at once when waiting, on ComfyUI (queue delete or interrupt) when running.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody), (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody))
)]
pub async fn cancel(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.svc.jobs.cancel_as(&who, parse_id(&id)?).await?))
}

/// Run a failed or cancelled job again, with fresh attempts.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Not failed or cancelled", body = ErrorBody), (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody))
)]
pub async fn retry(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.svc.jobs.retry_as(&who, parse_id(&id)?).await?))
}
