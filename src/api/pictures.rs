//! Pictures of jobs for other tools and the remote dashboard: a thumbnail of one
//! output (`GET /api/v1/jobs/{id}/outputs/{n}/thumbnail?size=&format=`, PNG or
//! lossless WebP, with a year-long `Cache-Control` and an ETag) and the live
//! preview of a running job (`GET /api/v1/jobs/{id}/preview`, the last frame
//! ComfyUI sent, revalidated with `If-None-Match`). The work is the service
//! layer's ([`crate::service::pictures`]); these read the request and set headers.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::query::Params;
use crate::service::jobs::parse_id;
use crate::service::pictures::{DEFAULT_THUMBNAIL, ThumbnailFormat};

/// A thumbnail never changes for its ETag (outputs are written once).
const THUMBNAIL_CACHE: &str = "private, max-age=31536000, immutable";
/// A preview changes with every frame: clients revalidate.
const PREVIEW_CACHE: &str = "no-cache";

/// The source output's width and height in pixels, on thumbnail answers.
pub const SOURCE_WIDTH: &str = "x-image-width";
pub const SOURCE_HEIGHT: &str = "x-image-height";
/// The preview frame's number (grows with every frame).
pub const PREVIEW_SEQ: &str = "x-preview-seq";

/// A thumbnail of one output of a job, scaled down to fit `size` x `size`.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/outputs/{n}/thumbnail", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's ULID"),
        ("n" = usize, Path, description = "The output's index in the job's `result.outputs`, from 0"),
        ("size" = Option<u32>, Query, description = "The longer side in pixels, 16..=1024 (default 256); smaller pictures are not enlarged"),
        ("format" = Option<String>, Query, description = "`png` or `webp` (lossless); default: WebP when `Accept` names image/webp, else PNG"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer: 304 when it still matches"),
    ),
    responses(
        (status = 200, description = "The thumbnail; `Cache-Control: private, max-age=31536000, immutable`, an `ETag`, and the output's own size in `X-Image-Width` / `X-Image-Height`",
         content(("image/png"), ("image/webp"))),
        (status = 304, description = "The thumbnail the `If-None-Match` ETag names is still current"),
        (status = 400, description = "A bad id, `n`, `size` or `format`, or the output is not an image darkroom can read (field `n`)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such job, the job has no such output, or the output's object is gone", body = ErrorBody),
        (status = 503, description = "The queue store (Redis) or the external S3 does not answer", body = ErrorBody),
    )
)]
pub async fn thumbnail(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<crate::users::Principal>,
    Path((id, n)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    s.svc.jobs.get_as(&who, id).await?;
    let n: usize = n
        .parse()
        .map_err(|_| ApiError::invalid("n", format!("{n:?} is not an output index (0, 1, ...)")))?;
    let params = Params::parse(query.as_deref());
    let size = match params.u64("size")? {
        Some(v) => u32::try_from(v).unwrap_or(u32::MAX),
        None => DEFAULT_THUMBNAIL,
    };
    let negotiated = params.get("format").is_none();
    let format = match params.get("format") {
        Some(f) => f
            .parse::<ThumbnailFormat>()
            .map_err(|e| ApiError::invalid("format", e.to_string()))?,
        None if accepts_webp(&headers) => ThumbnailFormat::Webp,
        None => ThumbnailFormat::Png,
    };
    let thumb = s.svc.thumbnail(id, n, size, format).await?;
    let mut resp = if if_none_match(&headers, &thumb.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Body::from(thumb.bytes).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        h.insert(SOURCE_WIDTH, thumb.source_width.into());
        h.insert(SOURCE_HEIGHT, thumb.source_height.into());
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(THUMBNAIL_CACHE));
    if let Ok(etag) = HeaderValue::from_str(&thumb.etag) {
        h.insert(header::ETAG, etag);
    }
    if negotiated {
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    Ok(resp)
}

/// The last preview frame of a running job (JPEG or PNG, as ComfyUI sent it).
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/preview", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's ULID"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the frame the client has: 304 while no newer frame came"),
    ),
    responses(
        (status = 200, description = "The frame, with its number in `X-Preview-Seq` and an `ETag`; `Cache-Control: no-cache`",
         content(("image/jpeg"), ("image/png"))),
        (status = 304, description = "No newer frame than the one the `If-None-Match` ETag names"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such job, or no frame: the job is not running on this node or has sent none yet", body = ErrorBody),
        (status = 503, description = "The queue store (Redis) does not answer", body = ErrorBody),
    )
)]
pub async fn preview(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<crate::users::Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    s.svc.jobs.get_as(&who, id).await?;
    let frame = s.svc.live_preview(id).await?;
    let etag = format!("\"p{}\"", frame.seq);
    let mut resp = if if_none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Body::from(frame.bytes).into_response();
        if let Ok(ct) = HeaderValue::from_str(&frame.content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(PREVIEW_CACHE));
    h.insert(PREVIEW_SEQ, frame.seq.into());
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    Ok(resp)
}

/// The request's `If-None-Match` names `etag` (or is `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn accepts_webp(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("image/webp")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_in_lists_weakly_and_by_star() {
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, "\"a\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"b\", W/\"a\""));
        assert!(if_none_match(&h, "\"a\""));
        assert!(!if_none_match(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"c\""));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("image/avif,image/webp;q=0.9,*/*"),
        );
        assert!(accepts_webp(&h));
    }
}
