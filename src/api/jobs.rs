//! The job endpoints: submit (optionally waiting for the result — n8n's "respond
//! to webhook with the image URL" in one call), read one, list by status with a
//! cursor, cancel, retry. Handlers only translate: the request is checked and
//! rendered by [`crate::dispatch::JobRequest`], the work is the queue's.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::error::{ApiError, ErrorBody, json_error};
use super::query::Params;
use super::{ApiState, read_body};
use crate::dispatch::{JobRequest, QUEUE};
use crate::queue::{Job, JobStatus, ListQuery};

/// Order of the statuses when a listing spans all of them: live work first.
const LIST_ORDER: [JobStatus; 6] = [
    JobStatus::Running,
    JobStatus::Queued,
    JobStatus::Scheduled,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

/// One page of jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    /// Without their payload; `GET /api/v1/jobs/{id}` has it.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

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
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, description = "No ComfyUI backend is configured, or the queue store (Redis) does not answer", body = ErrorBody),
    )
)]
pub async fn submit(
    State(s): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    let wait = params.u64("wait")?;
    if let Some(w) = wait
        && w > s.config.max_wait_seconds
    {
        return Err(ApiError::invalid(
            "wait",
            format!(
                "at most {} seconds (api.max_wait_seconds)",
                s.config.max_wait_seconds
            ),
        ));
    }
    let bytes = read_body(body, s.config.max_body_bytes).await?;
    let mut request: JobRequest = serde_json::from_slice(&bytes).map_err(|e| json_error(&e))?;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key
            .to_str()
            .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
        request.idempotency_key = Some(key.to_owned());
    }
    let mut events = s.queue.subscribe();
    let enqueued = enqueue(&s, request).await?;
    let mut job = enqueued.job;
    if let Some(seconds) = wait {
        let deadline = tokio::time::sleep(Duration::from_secs(seconds));
        tokio::pin!(deadline);
        while !job.status.is_terminal() {
            let refetch = tokio::select! {
                () = &mut deadline => break,
                e = events.recv() => match e {
                    Ok(e) => e.id == job.id,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            };
            if refetch && let Some(j) = s.queue.get(job.id).await? {
                job = j;
            }
        }
    }
    let status = if job.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut resp = (status, Json(job)).into_response();
    if !enqueued.created {
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

/// Checks a request, renders it and queues it (what submit does before waiting;
/// the dashboard's local mode calls it too).
pub async fn enqueue(s: &ApiState, request: JobRequest) -> Result<crate::queue::Enqueued, ApiError> {
    if let Some(url) = &request.webhook {
        super::check_url("webhook", url)?;
    }
    let new = request.into_new_job(&s.templates)?;
    if s.dispatcher.backends().is_empty() {
        return Err(ApiError::NoBackend(
            "no ComfyUI backend is configured, so no job could ever run: set comfyui.backends or pass --comfyui URL"
                .into(),
        ));
    }
    let queued = s.queue.counts().await?.queued;
    if queued >= s.config.max_queued {
        return Err(ApiError::QueueFull(format!(
            "{queued} jobs are already queued (api.max_queued = {}); try again later",
            s.config.max_queued
        )));
    }
    Ok(s.queue.enqueue(new).await?)
}

/// One job, with its payload, progress, result and every attempt's error.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody))
)]
pub async fn get(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id = parse_id(&id)?;
    s.queue
        .get(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
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
pub async fn list(State(s): State<ApiState>, RawQuery(query): RawQuery) -> Result<Json<JobPage>, ApiError> {
    let params = Params::parse(query.as_deref());
    let only = match params.get("status") {
        Some(v) => Some(
            v.parse::<JobStatus>()
                .map_err(|e| ApiError::invalid("status", e.to_string()))?,
        ),
        None => None,
    };
    let limit = params.u64("limit")?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1..=500"));
    }
    let limit = usize::try_from(limit).unwrap_or(500);
    // The cursor is `status` or `status.inner`: where in which status to go on.
    let (mut status, mut after) = match params.get("cursor") {
        Some(c) => {
            let (st, inner) = c.split_once('.').unwrap_or((c, ""));
            let st = st
                .parse::<JobStatus>()
                .map_err(|_| ApiError::invalid("cursor", "not a cursor this API returned"))?;
            (st, (!inner.is_empty()).then(|| inner.to_owned()))
        }
        None => (only.unwrap_or(LIST_ORDER[0]), None),
    };
    if only.is_some_and(|o| o != status) {
        return Err(ApiError::invalid(
            "cursor",
            "belongs to a listing of another status",
        ));
    }
    let mut jobs = Vec::new();
    loop {
        let mut q = ListQuery::new(status, limit - jobs.len());
        q.queue = Some(QUEUE.into());
        q.after = after.take();
        let page = s.queue.list(q).await.map_err(|e| match e {
            crate::queue::QueueError::Invalid(m) => ApiError::invalid("cursor", m),
            other => other.into(),
        })?;
        jobs.extend(page.jobs);
        if let Some(next) = page.next {
            return Ok(Json(JobPage {
                jobs,
                next_cursor: Some(format!("{status}.{next}")),
            }));
        }
        let following = LIST_ORDER
            .iter()
            .position(|x| *x == status)
            .and_then(|i| LIST_ORDER.get(i + 1));
        match (only, following) {
            (None, Some(next)) if jobs.len() < limit => status = *next,
            (None, Some(next)) => {
                return Ok(Json(JobPage {
                    jobs,
                    next_cursor: Some(next.to_string()),
                }));
            }
            _ => {
                return Ok(Json(JobPage {
                    jobs,
                    next_cursor: None,
                }));
            }
        }
    }
}

/// Cancel a job: at once when waiting, on ComfyUI (queue delete or interrupt) when running.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody), (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody))
)]
pub async fn cancel(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.queue.cancel(parse_id(&id)?).await?))
}

/// Run a failed or cancelled job again, with fresh attempts.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Not failed or cancelled", body = ErrorBody), (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody))
)]
pub async fn retry(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.queue.retry(parse_id(&id)?).await?))
}

fn parse_id(id: &str) -> Result<Ulid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::invalid("id", format!("{id:?} is not a job id (a 26-character ULID)")))
}
