//! Quotas and usage over HTTP: `GET /api/v1/usage` (yours; admins: anyone's) and
//! `PATCH /api/v1/users/{name}/quota` (admins). Handlers only translate; the
//! rules are [`crate::service::quotas`]'.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};

use super::error::{ApiError, ErrorBody};
use super::query::Params;
use super::{ApiState, json_body};
use crate::service::ServiceError;
use crate::service::quotas::{QuotaChange, Quotas, UsageQuery, UsageReport};
use crate::users::{Principal, User};

fn quotas(s: &ApiState) -> Result<&Quotas, ApiError> {
    s.svc
        .jobs
        .quotas()
        .ok_or_else(|| ApiError::Service(ServiceError::NotFound("this server keeps no quotas".into())))
}

/// Usage per user per day (jobs by status, GPU seconds, images, bytes) and each
/// user's standing against their limits now.
#[utoipa::path(
    get, path = "/api/v1/usage", tag = "users",
    params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn usage(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    RawQuery(q): RawQuery,
) -> Result<Json<UsageReport>, ApiError> {
    let p = Params::parse(q.as_deref());
    let query = UsageQuery {
        user: p.get("user").map(str::to_owned),
        from: p.get("from").map(str::to_owned),
        to: p.get("to").map(str::to_owned),
    };
    Ok(Json(quotas(&s)?.usage(&who, query).await?))
}

/// Set a user's own limits over their role's: `{"generations_per_day": 5,
/// "templates": ["txt2img"], "max_steps": null}` (`null` or `""`: back to the
/// role's; `"unlimited"`: none).
#[utoipa::path(
    patch, path = "/api/v1/users/{name}/quota", tag = "users",
    params(("name" = String, Path)), request_body = QuotaChange,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn set_quota(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<User>, ApiError> {
    let change: QuotaChange = json_body(&s, body).await?;
    let assignments = change.assignments()?;
    Ok(Json(quotas(&s)?.set_quota(&who, &name, &assignments).await?))
}
