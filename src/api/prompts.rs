//! The prompt library endpoints: saved prompts and their versions with stats
//! (`/prompts`), ratings of jobs (`/jobs/{id}/rating`), A/B campaigns
//! (`/campaigns`), collections (`/collections`) and the whole library as one
//! file (`/library`). Handlers only translate; the rules are
//! [`crate::service::prompts`]'s.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;

use super::error::{ApiError, ErrorBody};
use super::query::Params;
use super::{ApiState, json_body as json};
use crate::prompts::{
    Campaign, CampaignDraft, CampaignReport, CampaignState, Collection, ImportReport, LibraryExport, Prompt,
    PromptDraft, PromptEdit, Rating,
};
use crate::service::jobs::parse_id;
use crate::service::prompts::{JobRating, PromptDetails, PromptFilter, PromptSummary};

fn flag(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    params
        .get(name)
        .map(|v| match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ApiError::invalid(name, "must be true or false")),
        })
        .transpose()
}

/// Saved prompts with the stats of all their versions.
#[utoipa::path(
    get, path = "/api/v1/prompts", tag = "prompts",
    params(PromptFilter),
    responses((status = 200, body = Vec<PromptSummary>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn list(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<PromptSummary>>, ApiError> {
    let p = Params::parse(q.as_deref());
    let filter = PromptFilter {
        category: p.get("category").map(str::to_owned),
        tag: p.get("tag").map(str::to_owned),
        favourite: flag(&p, "favourite")?,
        collection: p.get("collection").map(str::to_owned),
    };
    Ok(Json(s.svc.library.list(&filter).await?))
}

/// Save a new prompt (its version 1); its parameters are checked against the template.
#[utoipa::path(
    post, path = "/api/v1/prompts", tag = "prompts", request_body = PromptDraft,
    responses((status = 201, body = Prompt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody))
)]
pub async fn create(State(s): State<ApiState>, body: Body) -> Result<(StatusCode, Json<Prompt>), ApiError> {
    let draft = json(&s, body).await?;
    Ok((StatusCode::CREATED, Json(s.svc.library.create(draft).await?)))
}

/// A prompt with every version, each version's stats, and its latest runs.
#[utoipa::path(
    get, path = "/api/v1/prompts/{name}", tag = "prompts",
    params(("name" = String, Path)),
    responses((status = 200, body = PromptDetails), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn get(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<PromptDetails>, ApiError> {
    Ok(Json(s.svc.library.get(&name).await?))
}

/// Edit a prompt: a new template or new parameters make a new version.
#[utoipa::path(
    put, path = "/api/v1/prompts/{name}", tag = "prompts", request_body = PromptEdit,
    params(("name" = String, Path)),
    responses((status = 200, body = Prompt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn edit(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Prompt>, ApiError> {
    let edit = json(&s, body).await?;
    Ok(Json(s.svc.library.edit(&name, edit).await?))
}

/// Delete a prompt and the record of its runs (the jobs stay).
#[utoipa::path(
    delete, path = "/api/v1/prompts/{name}", tag = "prompts",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "A campaign still uses it", body = ErrorBody))
)]
pub async fn delete(State(s): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    s.svc.library.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rate a succeeded job's images, 1 to 5, with an optional comment (again replaces).
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/rating", tag = "prompts", request_body = Rating,
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = JobRating), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "The job has not succeeded", body = ErrorBody))
)]
pub async fn rate(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<crate::users::Principal>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<JobRating>, ApiError> {
    let id = parse_id(&id)?;
    s.svc.jobs.get_as(&who, id).await?;
    let rating = json(&s, body).await?;
    Ok(Json(s.svc.library.rate(id, rating).await?))
}

/// A job's rating.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/rating", tag = "prompts",
    params(("id" = String, Path, description = "The job's ULID")),
    responses((status = 200, body = Rating), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "Not rated", body = ErrorBody))
)]
pub async fn rating(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Rating>, ApiError> {
    let id = parse_id(&id)?;
    let rating = s.svc.library.rating(id).await?;
    rating
        .map(Json)
        .ok_or_else(|| crate::service::ServiceError::NotFound(format!("job {id} is not rated")).into())
}

/// Every A/B campaign.
#[utoipa::path(
    get, path = "/api/v1/campaigns", tag = "prompts",
    responses((status = 200, body = Vec<Campaign>), (status = 401, body = ErrorBody))
)]
pub async fn campaigns(State(s): State<ApiState>) -> Result<Json<Vec<Campaign>>, ApiError> {
    Ok(Json(s.svc.library.campaigns().await?))
}

/// Start an A/B campaign over 2+ prompt versions (`running` unless `state` is `draft`).
#[utoipa::path(
    post, path = "/api/v1/campaigns", tag = "prompts", request_body = CampaignDraft,
    responses((status = 201, body = Campaign), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody))
)]
pub async fn create_campaign(
    State(s): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    let draft = json(&s, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(s.svc.library.create_campaign(draft).await?),
    ))
}

/// A campaign's figures per variant and its winner (highest mean rating once each
/// variant has `min_ratings` ratings; ties: success rate, then mean time).
#[utoipa::path(
    get, path = "/api/v1/campaigns/{name}", tag = "prompts",
    params(("name" = String, Path)),
    responses((status = 200, body = CampaignReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn report(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<CampaignReport>, ApiError> {
    Ok(Json(s.svc.library.report(&name).await?))
}

/// Start (`running`) or stop (`completed`) a campaign.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{name}/{action}", tag = "prompts",
    params(("name" = String, Path), ("action" = String, Path, description = "`start` or `stop`")),
    responses((status = 200, body = Campaign), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn campaign_action(
    State(s): State<ApiState>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Campaign>, ApiError> {
    let state = match action.as_str() {
        "start" => CampaignState::Running,
        "stop" => CampaignState::Completed,
        _ => return Err(ApiError::invalid("action", "is `start` or `stop`")),
    };
    Ok(Json(s.svc.library.set_campaign_state(&name, state).await?))
}

/// Delete a campaign (its runs stay in the prompts' stats).
#[utoipa::path(
    delete, path = "/api/v1/campaigns/{name}", tag = "prompts",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn delete_campaign(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.library.delete_campaign(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every collection.
#[utoipa::path(
    get, path = "/api/v1/collections", tag = "prompts",
    responses((status = 200, body = Vec<Collection>), (status = 401, body = ErrorBody))
)]
pub async fn collections(State(s): State<ApiState>) -> Result<Json<Vec<Collection>>, ApiError> {
    Ok(Json(s.svc.library.collections().await?))
}

/// Create or replace a collection: a named list of saved prompts.
#[utoipa::path(
    put, path = "/api/v1/collections/{name}", tag = "prompts", request_body = Collection,
    params(("name" = String, Path)),
    responses((status = 200, body = Collection), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn put_collection(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Collection>, ApiError> {
    let c = json(&s, body).await?;
    Ok(Json(s.svc.library.put_collection(&name, c).await?))
}

/// Delete a collection (its prompts stay).
#[utoipa::path(
    delete, path = "/api/v1/collections/{name}", tag = "prompts",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn delete_collection(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.library.delete_collection(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The whole library as one JSON file: prompts with every version, collections,
/// campaign definitions.
#[utoipa::path(
    get, path = "/api/v1/library", tag = "prompts",
    responses((status = 200, body = LibraryExport), (status = 401, body = ErrorBody))
)]
pub async fn export(State(s): State<ApiState>) -> Result<Json<LibraryExport>, ApiError> {
    Ok(Json(s.svc.library.export().await?))
}

/// Merge an exported library: new prompts are created, versions a prompt lacks are
/// added, differing versions are conflicts (replaced with `?replace=true`).
#[utoipa::path(
    post, path = "/api/v1/library", tag = "prompts", request_body = LibraryExport,
    params(("replace" = Option<bool>, Query, description = "Replace prompts whose versions differ")),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn import(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let replace = flag(&Params::parse(q.as_deref()), "replace")?.unwrap_or(false);
    let file = json(&s, body).await?;
    Ok(Json(s.svc.library.import(file, replace).await?))
}
