//! User and key management for admins: `/api/v1/users` and `/api/v1/keys`.
//! Handlers only translate; who may do it is [`crate::service::users`]' rule.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::error::{ApiError, ErrorBody};
use super::query::Params;
use super::{ApiState, json_body};
use crate::service::users::{CreatedKey, KeyDraft, UserDraft};
use crate::users::{KeyRecord, Principal, User};
use axum::body::Body;

/// Every user.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(s.svc.users.list(&who).await?))
}

/// Add a user with a role (`admin`, `user`, `viewer`).
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users", request_body = UserDraft,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn add(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Body,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let draft: UserDraft = json_body(&s, body).await?;
    Ok((StatusCode::CREATED, Json(s.svc.users.add(&who, draft).await?)))
}

/// Disable or enable a user: their keys stop or start working at once.
#[utoipa::path(
    post, path = "/api/v1/users/{name}/{action}", tag = "users",
    params(("name" = String, Path), ("action" = String, Path, description = "`disable` or `enable`")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn action(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<User>, ApiError> {
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(ApiError::invalid("action", "is `disable` or `enable`")),
    };
    Ok(Json(s.svc.users.set_disabled(&who, &name, disabled).await?))
}

/// Remove a user and every key of theirs.
#[utoipa::path(
    delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn remove(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.users.remove(&who, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every key (of `?user=`), without secrets.
#[utoipa::path(
    get, path = "/api/v1/keys", tag = "users",
    params(("user" = Option<String>, Query)),
    responses((status = 200, body = Vec<KeyRecord>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn keys(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<KeyRecord>>, ApiError> {
    let p = Params::parse(q.as_deref());
    Ok(Json(s.svc.users.keys(&who, p.get("user")).await?))
}

/// Make a key for a user; the answer's `key` (or, with `"s3": true`, its
/// `access_key` and `secret_key`) is shown this once.
#[utoipa::path(
    post, path = "/api/v1/keys", tag = "users", request_body = KeyDraft,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn create_key(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    body: Body,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let draft: KeyDraft = json_body(&s, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(s.svc.users.create_key(&who, draft).await?),
    ))
}

/// Revoke a key, on every node at once.
#[utoipa::path(
    delete, path = "/api/v1/keys/{id}", tag = "users",
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn revoke(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.users.revoke(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
