//! What a client asks for and what the queue stores: a [`JobRequest`] (a template
//! name with parameters, or a whole API-format workflow, plus queue options) is
//! checked and rendered at submit time — a bad parameter is refused then, naming it,
//! and a random seed is fixed and recorded — into the [`JobSpec`] payload the
//! dispatcher later runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::comfy::{TemplateError, Templates};
use crate::queue::NewJob;

/// The queue every ComfyUI job goes through.
pub const QUEUE: &str = "comfyui";

/// A generation request, as sent to the API or `darkroom submit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// A template name (`noop`, `txt2img`, ...); exclusive with `workflow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template's parameters; unknown ones are refused.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// A full ComfyUI API-format workflow (`{"node id": {"class_type", "inputs"}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub workflow: Option<Value>,
    /// Higher runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Seconds one attempt may run before it is interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// A repeated request with the same key returns the first job instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// A URL the finished job's result is POSTed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Reuse a stored result of an identical workflow (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// A catalog model name, or `auto` to let the routing rules choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What the image is for (`thumbnail`, `hero_image`, ...), for `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// `immediate` (< 30 s), `standard` (< 2 min) or `flexible` (best quality), for `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
    /// `fast`, `medium`, `high` or `ultra`: the least quality `auto` may choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_quality: Option<String>,
    /// A saved prompt, `name` (its latest version) or `name@3`: its template and
    /// parameters, with `params` overriding; exclusive with `template`, `workflow`
    /// and `campaign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// An A/B campaign: the submission runs the prompt version the campaign assigns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The saved prompt version the service expanded `prompt` or `campaign` into;
    /// recorded in the job. Not a client field.
    #[serde(skip)]
    pub saved_prompt: Option<crate::prompts::PromptRef>,
    /// The user submitting it, as the service authenticated them. Not a client field.
    #[serde(skip)]
    pub owner: Option<String>,
    /// Who submits it, for the read access of `s3://` inputs (none: darkroom
    /// itself). Not a client field.
    #[serde(skip)]
    #[schema(ignore)]
    pub reader: Option<crate::users::Principal>,
    /// Files sent with a multipart submit, by parameter name; the service turns
    /// them into `inputs`. Not a JSON field.
    #[serde(skip)]
    #[schema(ignore)]
    pub files: std::collections::BTreeMap<String, (String, bytes::Bytes)>,
    /// The input images the service resolved (their parameters already name
    /// them). Not a client field.
    #[serde(skip)]
    #[schema(ignore)]
    pub inputs: Vec<super::InputImage>,
}

/// The model a request was routed to: its catalog entry and the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub spec: crate::models::ModelSpec,
    pub choice: crate::models::ModelChoice,
}

/// The job payload the dispatcher runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The template it was rendered from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// That template's version (a hash of its workflow and manifest) when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<String>,
    /// Every parameter's effective value (the seed included).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// The API-format workflow sent to ComfyUI.
    pub workflow: Value,
    #[serde(default = "yes")]
    pub cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The catalog model it runs, and why that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::models::ModelChoice>,
    /// The saved prompt version it runs (and the campaign that chose it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<crate::prompts::PromptRef>,
    /// Its input images, uploaded to the backend before the prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<super::InputImage>,
}

fn yes() -> bool {
    true
}

/// A request that cannot become a job; `field` names the part at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

impl RequestError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<TemplateError> for RequestError {
    fn from(e: TemplateError) -> Self {
        let field = match &e {
            TemplateError::UnknownTemplate { .. } | TemplateError::Invalid { .. } => "template".into(),
            TemplateError::UnknownParameter { name, .. }
            | TemplateError::WrongType { name, .. }
            | TemplateError::OutOfRange { name, .. }
            | TemplateError::Missing { name, .. } => format!("params.{name}"),
        };
        Self::new(field, e.to_string())
    }
}

impl JobRequest {
    /// A request for template `name` with `params`.
    pub fn template(name: impl Into<String>, params: Map<String, Value>) -> Self {
        Self {
            template: Some(name.into()),
            params,
            ..Self::default()
        }
    }

    /// Checks the request and renders it into the job to enqueue.
    pub fn into_new_job(self, templates: &Templates) -> Result<NewJob, RequestError> {
        self.into_new_job_with(templates, None)
    }

    /// [`JobRequest::into_new_job`] for a request routed to a catalog model: its
    /// file fills the template's model parameter, its recommended steps and cfg
    /// fill those the request leaves out, and a size above its `max_resolution`
    /// is refused.
    pub fn into_new_job_with(
        mut self,
        templates: &Templates,
        routed: Option<Routed>,
    ) -> Result<NewJob, RequestError> {
        if let (Some(r), Some(name)) = (&routed, &self.template) {
            apply_model(templates, name, &mut self.params, &r.spec)?;
        }
        let spec = match (self.template, self.workflow) {
            (Some(_), Some(_)) => {
                return Err(RequestError::new(
                    "workflow",
                    "give either `template` (with `params`) or `workflow`, not both",
                ));
            }
            (None, None) => {
                return Err(RequestError::new(
                    "template",
                    format!(
                        "a job needs a `template` (one of: {}) or a `workflow`",
                        templates.names().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            (Some(name), None) => {
                let rendered = templates.render(&name, &self.params)?;
                JobSpec {
                    template: Some(name),
                    template_version: Some(rendered.version),
                    params: rendered.params_used,
                    workflow: rendered.workflow,
                    cache: true,
                    webhook: None,
                    model: None,
                    prompt: None,
                    inputs: Vec::new(),
                }
            }
            (None, Some(workflow)) => {
                if !self.params.is_empty() {
                    return Err(RequestError::new(
                        "params",
                        "`params` only apply to a `template`; edit the `workflow` instead",
                    ));
                }
                check_workflow(&workflow)?;
                JobSpec {
                    template: None,
                    template_version: None,
                    params: Map::new(),
                    workflow,
                    cache: true,
                    webhook: None,
                    model: None,
                    prompt: None,
                    inputs: Vec::new(),
                }
            }
        };
        if let Some(url) = &self.webhook {
            check_webhook(url)?;
        }
        if let Some(r) = &routed {
            check_size(&spec.params, &r.spec)?;
        }
        let affinity = routed.as_ref().map(|r| r.choice.name.clone());
        let spec = JobSpec {
            cache: self.cache.unwrap_or(true),
            webhook: self.webhook,
            model: routed.map(|r| r.choice),
            prompt: self.saved_prompt,
            inputs: self.inputs,
            ..spec
        };
        let payload = serde_json::to_value(&spec)
            .map_err(|e| RequestError::new("workflow", format!("cannot be stored: {e}")))?;
        let mut job = NewJob::new(QUEUE, payload).priority(self.priority.unwrap_or(0));
        if let Some(owner) = self.owner {
            job = job.owner(owner);
        }
        if let Some(key) = affinity {
            job = job.affinity(key);
        }
        if let Some(t) = self.timeout_seconds {
            if t == 0 {
                return Err(RequestError::new("timeout_seconds", "must be at least 1"));
            }
            job = job.timeout(Duration::from_secs(t));
        }
        if let Some(n) = self.max_attempts {
            if n == 0 {
                return Err(RequestError::new("max_attempts", "must be at least 1"));
            }
            job = job.max_attempts(n);
        }
        if let Some(key) = self.idempotency_key {
            if key.is_empty() || key.len() > 256 {
                return Err(RequestError::new("idempotency_key", "must be 1..=256 bytes"));
            }
            job = job.idempotency_key(key);
        }
        Ok(job)
    }
}

/// The name of `template`'s parameter of type `model`, if it has one.
pub fn model_param(templates: &Templates, template: &str) -> Option<String> {
    let t = templates.get(template).ok()?;
    t.manifest
        .params
        .iter()
        .find(|(_, p)| p.kind == crate::comfy::ParamType::Model)
        .map(|(name, _)| name.clone())
}

/// Binds `model`'s file and fills `steps` / `cfg` the request left out.
fn apply_model(
    templates: &Templates,
    template: &str,
    params: &mut Map<String, Value>,
    model: &crate::models::ModelSpec,
) -> Result<(), RequestError> {
    let Some(param) = model_param(templates, template) else {
        return Err(RequestError::new(
            "model",
            format!("template `{template}` has no model parameter (a parameter with type = \"model\")"),
        ));
    };
    params.insert(param, Value::from(model.file.clone()));
    let has = |name: &str| {
        templates
            .get(template)
            .is_ok_and(|t| t.manifest.params.contains_key(name))
    };
    if let Some(steps) = model.steps
        && has("steps")
    {
        params.entry("steps").or_insert_with(|| Value::from(steps));
    }
    if let Some(cfg) = model.cfg
        && has("cfg")
    {
        params.entry("cfg").or_insert_with(|| Value::from(cfg));
    }
    Ok(())
}

/// Refuses `width` / `height` above the model's `max_resolution`.
fn check_size(params: &Map<String, Value>, model: &crate::models::ModelSpec) -> Result<(), RequestError> {
    let Some((max_w, max_h)) = model.max_size() else {
        return Ok(());
    };
    for (field, max) in [("width", max_w), ("height", max_h)] {
        if let Some(v) = params.get(field).and_then(Value::as_u64)
            && v > max
        {
            return Err(RequestError::new(
                format!("params.{field}"),
                format!(
                    "{v} is above model `{}`'s max_resolution {}",
                    model.name,
                    model.max_resolution.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// A workflow must be ComfyUI's API format: node ids mapping to
/// `{"class_type": "...", "inputs": {...}}`.
fn check_workflow(workflow: &Value) -> Result<(), RequestError> {
    let Some(nodes) = workflow.as_object() else {
        return Err(RequestError::new(
            "workflow",
            "must be an API-format workflow object (ComfyUI: Save (API Format)), not the UI format",
        ));
    };
    if nodes.is_empty() {
        return Err(RequestError::new("workflow", "has no nodes"));
    }
    for (id, node) in nodes {
        if node.get("class_type").and_then(Value::as_str).is_none() {
            return Err(RequestError::new(
                format!("workflow.{id}.class_type"),
                "every node needs a string `class_type` (is this the UI format? export with Save (API Format))",
            ));
        }
        if !node.get("inputs").is_some_and(Value::is_object) {
            return Err(RequestError::new(
                format!("workflow.{id}.inputs"),
                "every node needs an `inputs` object",
            ));
        }
    }
    Ok(())
}

fn check_webhook(url: &str) -> Result<(), RequestError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(_) => Err(RequestError::new("webhook", "must be an http:// or https:// URL")),
        Err(e) => Err(RequestError::new("webhook", format!("`{url}` is not a URL: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn templates() -> Templates {
        Templates::embedded().unwrap()
    }

    fn spec(job: &NewJob) -> JobSpec {
        serde_json::from_value(job.payload.clone()).unwrap()
    }

    #[test]
    fn template_request_renders_and_fixes_the_seed() {
        let mut params = Map::new();
        params.insert("prompt".into(), json!("a lighthouse at dusk"));
        let req = JobRequest::template("txt2img", params);
        let job = req.into_new_job(&templates()).unwrap();
        let spec = spec(&job);
        assert_eq!(job.queue, QUEUE);
        let seed = spec.params["seed"].as_u64().unwrap();
        assert_eq!(spec.workflow["3"]["inputs"]["seed"], json!(seed));
        assert!(spec.cache);
    }

    #[test]
    fn bad_parameter_names_the_field() {
        let mut params = Map::new();
        params.insert("width".into(), json!(0));
        let err = JobRequest::template("noop", params)
            .into_new_job(&templates())
            .unwrap_err();
        assert_eq!(err.field, "params.width");
        let err = JobRequest::template("nope", Map::new())
            .into_new_job(&templates())
            .unwrap_err();
        assert_eq!(err.field, "template");
        assert!(err.message.contains("noop"), "{err}");
    }

    #[test]
    fn workflow_requests_are_checked() {
        let t = templates();
        let ui_format = JobRequest {
            workflow: Some(json!({"1": {"inputs": {}}})),
            ..JobRequest::default()
        };
        assert_eq!(
            ui_format.into_new_job(&t).unwrap_err().field,
            "workflow.1.class_type"
        );
        let both = JobRequest {
            template: Some("noop".into()),
            workflow: Some(json!({})),
            ..JobRequest::default()
        };
        assert_eq!(both.into_new_job(&t).unwrap_err().field, "workflow");
        assert_eq!(
            JobRequest::default().into_new_job(&t).unwrap_err().field,
            "template"
        );
        let ok = JobRequest {
            workflow: Some(json!({"1": {"class_type": "EmptyImage", "inputs": {}}})),
            cache: Some(false),
            timeout_seconds: Some(5),
            ..JobRequest::default()
        };
        let job = ok.into_new_job(&t).unwrap();
        assert_eq!(job.timeout_ms, Some(5000));
        assert!(!spec(&job).cache);
    }

    #[test]
    fn options_are_validated() {
        let t = templates();
        let req = |f: fn(&mut JobRequest)| {
            let mut r = JobRequest::template("noop", Map::new());
            f(&mut r);
            r.into_new_job(&t).unwrap_err().field
        };
        assert_eq!(req(|r| r.timeout_seconds = Some(0)), "timeout_seconds");
        assert_eq!(req(|r| r.max_attempts = Some(0)), "max_attempts");
        assert_eq!(
            req(|r| r.idempotency_key = Some(String::new())),
            "idempotency_key"
        );
        assert_eq!(req(|r| r.webhook = Some("ftp://x".into())), "webhook");
    }
}
