//! `POST /v1/images/generations` and `GET /v1/models`: OpenAI's Images API over
//! darkroom's templates. A request becomes `n` jobs of one template — the one its
//! `model` names, else `openai.template` (run with the catalog model `model` names,
//! or `auto`, when there is a model catalog) — with `prompt` bound to the template's
//! `prompt` parameter and `size` ("WxH") to `width`/`height`, where the template
//! has them. The answer waits for the jobs (up to `openai.wait_seconds`) and
//! carries each job's first image as a presigned URL or inline base64.
//!
//! Every rule about jobs stays the jobs service's: admission, parameter limits
//! (a size beyond the template's range is refused naming `size`), queue limits.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::OpenAiError;
use crate::api::ApiState;
use crate::comfy::Templates;
use crate::dispatch::{JobRequest, JobResult, OutputObject};
use crate::queue::{Job, JobStatus};

/// The largest image handed back as `b64_json` (bigger ones: ask for a URL).
const MAX_INLINE_BYTES: u64 = 64 << 20;

/// OpenAI's image generation request (fields darkroom has no use for, such as
/// `quality`, `style` or `user`, are accepted and ignored).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GenerationRequest {
    pub prompt: Option<String>,
    pub n: Option<u32>,
    /// `WxH` (`1024x1024`) or `auto` (the template's own size).
    pub size: Option<String>,
    /// `url` (default) or `b64_json`.
    pub response_format: Option<String>,
    /// A template name; anything else (`dall-e-3`, `gpt-image-1`) runs `openai.template`.
    pub model: Option<String>,
    pub stream: Option<bool>,
}

/// How the images come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Url,
    Base64,
}

/// OpenAI's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagesResponse {
    /// Unix seconds.
    pub created: i64,
    pub data: Vec<ImageData>,
}

/// One image: a URL or the bytes, and the prompt as it was used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
}

/// What one request turns into: the same job request `n` times.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    request: JobRequest,
    n: u32,
    format: Format,
}

/// Checks an OpenAI request and maps it onto a template.
fn plan(
    r: GenerationRequest,
    templates: &Templates,
    default_template: &str,
    max_n: u32,
) -> Result<Plan, OpenAiError> {
    if r.stream == Some(true) {
        return Err(OpenAiError::invalid(
            "stream",
            "streaming image generation is not supported",
        ));
    }
    let prompt = r.prompt.filter(|p| !p.trim().is_empty());
    let Some(prompt) = prompt else {
        return Err(OpenAiError::invalid("prompt", "`prompt` is required"));
    };
    let n = r.n.unwrap_or(1);
    if !(1..=max_n).contains(&n) {
        return Err(OpenAiError::invalid(
            "n",
            format!("must be 1..={max_n} (openai.max_n)"),
        ));
    }
    let format = match r.response_format.as_deref() {
        None | Some("url") => Format::Url,
        Some("b64_json") => Format::Base64,
        Some(other) => {
            return Err(OpenAiError::invalid(
                "response_format",
                format!("{other:?} is not one of url, b64_json"),
            ));
        }
    };
    let name = match r.model.as_deref() {
        Some(m) if templates.get(m).is_ok() => m,
        _ => default_template,
    };
    let template = templates
        .get(name)
        .map_err(|e| OpenAiError::invalid("model", e.to_string()))?;
    let has = |p: &str| template.manifest.params.contains_key(p);
    let mut params = Map::new();
    if has("prompt") {
        params.insert("prompt".into(), Value::from(prompt));
    }
    if let Some((width, height)) = parse_size(r.size.as_deref())?
        && has("width")
        && has("height")
    {
        params.insert("width".into(), Value::from(width));
        params.insert("height".into(), Value::from(height));
    }
    Ok(Plan {
        request: JobRequest::template(name, params),
        n,
        format,
    })
}

/// `WxH`, or `None` for `auto` / absent.
fn parse_size(size: Option<&str>) -> Result<Option<(u32, u32)>, OpenAiError> {
    let Some(size) = size.map(str::trim).filter(|s| !s.is_empty() && *s != "auto") else {
        return Ok(None);
    };
    let parsed = size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0);
    parsed.map(Some).ok_or_else(|| {
        OpenAiError::invalid(
            "size",
            format!("{size:?} is not a size: give WIDTHxHEIGHT (1024x1024) or auto"),
        )
    })
}

/// Create images from a prompt.
pub async fn generations(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<crate::users::Principal>,
    body: Body,
) -> Result<Json<ImagesResponse>, OpenAiError> {
    let bytes = crate::api::read_body(body, s.config.max_body_bytes)
        .await
        .map_err(|_| OpenAiError::too_large(s.config.max_body_bytes))?;
    let request: GenerationRequest = serde_json::from_slice(&bytes).map_err(|e| {
        OpenAiError::invalid(
            "body",
            format!("the body is not an image generation request: {e}"),
        )
    })?;
    let prompt = request.prompt.clone();
    let model_asked = request.model.clone();
    let jobs = &s.svc.jobs;
    let catalog = s.svc.dispatcher.models().0;
    let mut plan = plan(request, &jobs.templates(), &s.openai.template, s.openai.max_n)?;
    // A catalog model's name (or `auto`) picks the model for the default template.
    if let Some(m) = &model_asked
        && (catalog.get(m).is_some() || (m == "auto" && !catalog.is_empty()))
    {
        plan.request.model = Some(m.clone());
    }
    let mut ids = Vec::new();
    for _ in 0..plan.n {
        ids.push(jobs.submit_as(&who, plan.request.clone(), None).await?.job.id);
    }
    let wait = Duration::from_secs(s.openai.wait_seconds);
    let ended = futures::future::join_all(ids.iter().map(|id| jobs.wait_for(*id, wait))).await;
    let mut data = Vec::new();
    for job in ended {
        let job = job?;
        let image = first_image(&job)?;
        let (url, b64_json) = match plan.format {
            Format::Url => (Some(url_of(&image)?), None),
            Format::Base64 => {
                let bytes = s
                    .svc
                    .read_output(&image.bucket, &image.key, MAX_INLINE_BYTES)
                    .await?;
                (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                )
            }
        };
        data.push(ImageData {
            url,
            b64_json,
            revised_prompt: prompt.clone(),
        });
    }
    Ok(Json(ImagesResponse {
        created: s.svc.queue.now_ms() / 1000,
        data,
    }))
}

/// The first image a finished job stored, or why there is none.
fn first_image(job: &Job) -> Result<OutputObject, OpenAiError> {
    match job.status {
        JobStatus::Succeeded => {}
        JobStatus::Failed | JobStatus::Cancelled => {
            let why = job
                .errors
                .last()
                .map_or("no error recorded", |e| e.message.as_str());
            return Err(OpenAiError::generation_failed(format!(
                "job {} {}: {why}",
                job.id, job.status
            )));
        }
        _ => {
            return Err(OpenAiError::timeout(format!(
                "job {} is still {} after openai.wait_seconds; it goes on: GET /api/v1/jobs/{}",
                job.id, job.status, job.id
            )));
        }
    }
    let result: JobResult = job
        .result
        .clone()
        .and_then(|r| serde_json::from_value(r).ok())
        .ok_or_else(|| {
            OpenAiError::internal(&format!("job {} succeeded without a readable result", job.id))
        })?;
    let outputs = result.outputs;
    let image = outputs.iter().position(|o| o.content_type.starts_with("image/"));
    outputs
        .into_iter()
        .nth(image.unwrap_or(0))
        .ok_or_else(|| OpenAiError::generation_failed(format!("job {} stored no image", job.id)))
}

fn url_of(image: &OutputObject) -> Result<String, OpenAiError> {
    image.url.clone().ok_or_else(|| {
        OpenAiError::invalid(
            "response_format",
            "darkroom's S3 server is off (s3.enabled = false), so there is no URL: ask for b64_json",
        )
    })
}

/// One of OpenAI's model objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub owned_by: String,
}

/// A list of models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

fn model(id: &str) -> Model {
    Model {
        id: id.to_owned(),
        object: "model".into(),
        created: 0,
        owned_by: "darkroom".into(),
    }
}

/// What `model` can name: the templates, and the catalog's models (run with
/// `openai.template`).
pub async fn models(State(s): State<ApiState>) -> Json<ModelList> {
    let catalog = s.svc.dispatcher.models().0;
    let templates = s.svc.jobs.templates();
    let names = templates
        .names()
        .chain(catalog.all().iter().map(|m| m.name.as_str()));
    Json(ModelList {
        object: "list".into(),
        data: names.map(model).collect(),
    })
}

/// One model, if it is a template or a catalog model.
pub async fn model_by_id(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, OpenAiError> {
    let known = s.svc.jobs.templates().get(&id).is_ok() || s.svc.dispatcher.models().0.get(&id).is_some();
    known
        .then(|| Json(model(&id)))
        .ok_or_else(|| OpenAiError::not_found(format!("no model {id:?}; GET /v1/models lists them")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> GenerationRequest {
        serde_json::from_value(v).unwrap()
    }

    fn plan_of(v: Value) -> Result<Plan, OpenAiError> {
        plan(request(v), &Templates::embedded().unwrap(), "txt2img", 10)
    }

    #[test]
    fn prompt_and_size_go_to_the_templates_parameters() {
        let p = plan_of(serde_json::json!({"prompt": "a fox", "size": "512x768", "n": 2, "model": "dall-e-3", "quality": "hd"})).unwrap();
        assert_eq!(p.n, 2);
        assert_eq!(p.format, Format::Url);
        assert_eq!(p.request.template.as_deref(), Some("txt2img"));
        assert_eq!(p.request.params["prompt"], "a fox");
        assert_eq!(
            (
                p.request.params["width"].clone(),
                p.request.params["height"].clone()
            ),
            (512.into(), 768.into())
        );
        // A template by name; noop has no prompt, and `auto` keeps its size.
        let noop = plan_of(serde_json::json!({"prompt": "x", "model": "noop", "size": "auto", "response_format": "b64_json"})).unwrap();
        assert_eq!(noop.request.template.as_deref(), Some("noop"));
        assert!(noop.request.params.is_empty());
        assert_eq!(noop.format, Format::Base64);
    }

    #[test]
    fn mistakes_name_the_openai_field() {
        for (body, param) in [
            (serde_json::json!({}), "prompt"),
            (serde_json::json!({"prompt": "x", "n": 0}), "n"),
            (serde_json::json!({"prompt": "x", "n": 11}), "n"),
            (serde_json::json!({"prompt": "x", "size": "big"}), "size"),
            (serde_json::json!({"prompt": "x", "size": "0x10"}), "size"),
            (
                serde_json::json!({"prompt": "x", "response_format": "png"}),
                "response_format",
            ),
            (serde_json::json!({"prompt": "x", "stream": true}), "stream"),
        ] {
            let e = plan_of(body.clone()).unwrap_err();
            assert_eq!(e.detail.param.as_deref(), Some(param), "{body}: {e:?}");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
