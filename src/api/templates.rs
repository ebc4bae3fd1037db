//! The template endpoints: list and show the templates jobs can name, import a
//! workflow as a new one (`POST`, with `?dry_run=true` to see the proposed
//! manifest only), replace (`PUT`) and delete user templates, and validate one
//! against a backend's `/object_info`. Handlers only translate: the rules are the
//! templates service's ([`crate::service::templates`]).

use crate::service::users::require_admin;
use crate::users::Principal;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;

use super::error::{ApiError, ErrorBody, json_error};
use super::query::Params;
use super::{ApiState, read_body};
use crate::service::templates::{
    ImportOutcome, TemplateDeleted, TemplateDetail, TemplateInfo, TemplateUpload, ValidationReport,
};

/// The workflow templates jobs can name, with their parameters and versions.
#[utoipa::path(
    get, path = "/api/v1/templates", tag = "templates",
    responses((status = 200, body = Vec<TemplateInfo>), (status = 401, body = ErrorBody))
)]
pub async fn list(State(s): State<ApiState>) -> Json<Vec<TemplateInfo>> {
    Json(s.svc.templates())
}

/// One template: parameters, version, workflow and manifest.
#[utoipa::path(
    get, path = "/api/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "The template's name")),
    responses((status = 200, body = TemplateDetail), (status = 401, body = ErrorBody), (status = 404, description = "No such template, or its files are broken (named with file and line)", body = ErrorBody))
)]
pub async fn get(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<TemplateDetail>, ApiError> {
    Ok(Json(s.svc.template(&name)?))
}

/// Import an "Export (API)" workflow as a new template; without a `manifest`
/// darkroom proposes one (ranges and choices from a backend's `/object_info`).
#[utoipa::path(
    post, path = "/api/v1/templates", tag = "templates",
    request_body = TemplateUpload,
    params(("dry_run" = Option<bool>, Query, description = "Only propose: save nothing")),
    responses(
        (status = 201, description = "Saved", body = ImportOutcome),
        (status = 200, description = "`dry_run`: what would be saved", body = ImportOutcome),
        (status = 400, description = "Not an API-format workflow (the editor format is named, with how to export the API one), a bad name, or a manifest that does not fit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "The name is a built-in's or already taken", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, description = "The shared store (Redis) does not answer", body = ErrorBody),
    )
)]
pub async fn create(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Principal>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<(StatusCode, Json<ImportOutcome>), ApiError> {
    let dry_run = match Params::parse(query.as_deref()).get("dry_run") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "dry_run",
                format!("{other:?} is not true or false"),
            ));
        }
    };
    if !dry_run {
        require_admin(&who, "saving templates")?;
    }
    let upload = upload(&s, body).await?;
    let outcome = s.svc.import_template(upload, dry_run).await?;
    let status = if outcome.saved {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome)))
}

/// Replace a user template's workflow and manifest (or create it); its version changes.
#[utoipa::path(
    put, path = "/api/v1/templates/{name}", tag = "templates",
    request_body = TemplateUpload,
    params(("name" = String, Path, description = "The template's name")),
    responses(
        (status = 200, body = ImportOutcome),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "A built-in template", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, description = "The shared store (Redis) does not answer", body = ErrorBody),
    )
)]
pub async fn put(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<ImportOutcome>, ApiError> {
    require_admin(&who, "saving templates")?;
    let upload = upload(&s, body).await?;
    Ok(Json(s.svc.replace_template(&name, upload).await?))
}

/// Delete a user template (a built-in is refused).
#[utoipa::path(
    delete, path = "/api/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "The template's name")),
    responses(
        (status = 200, body = TemplateDeleted),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "A built-in template", body = ErrorBody),
        (status = 503, description = "The shared store (Redis) does not answer", body = ErrorBody),
    )
)]
pub async fn delete(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<TemplateDeleted>, ApiError> {
    require_admin(&who, "deleting templates")?;
    Ok(Json(s.svc.delete_template(&name).await?))
}

/// Check a template against a backend's `/object_info`: unknown node classes and
/// inputs, values out of range or not among the choices, each named.
#[utoipa::path(
    get, path = "/api/v1/templates/{name}/validate", tag = "templates",
    params(("name" = String, Path, description = "The template's name")),
    responses(
        (status = 200, body = ValidationReport),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "No backend answered /object_info", body = ErrorBody),
    )
)]
pub async fn validate(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ValidationReport>, ApiError> {
    Ok(Json(s.svc.validate_template(&name).await?))
}

async fn upload(s: &ApiState, body: Body) -> Result<TemplateUpload, ApiError> {
    let bytes = read_body(body, s.config.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| json_error(&e))
}
