//! Workflow templates: API-format workflows (the built-ins shipped in
//! `assets/workflows/`, the user's from the templates folder or the shared store)
//! with a TOML manifest naming which node input each parameter sets, its type,
//! default and range. [`Template::parse`] reads one from its two texts, naming
//! the file, line and column of a mistake, and gives it a version (a short hash of
//! both texts, so every edit changes it). [`Templates::render`] checks a
//! request's parameters against the manifest (so a bad one is rejected at submit
//! time, naming it) and fills a random seed when the template has one and the
//! request gives none. Where templates come from and how they are reloaded is
//! [`crate::templates`]' business; this is one immutable set of them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The templates compiled into the binary: (name, workflow JSON, manifest TOML).
const EMBEDDED: &[(&str, &str, &str)] = &[
    (
        "noop",
        include_str!("../../assets/workflows/noop.json"),
        include_str!("../../assets/workflows/noop.toml"),
    ),
    (
        "txt2img",
        include_str!("../../assets/workflows/txt2img.json"),
        include_str!("../../assets/workflows/txt2img.toml"),
    ),
    (
        "upscale",
        include_str!("../../assets/workflows/upscale.json"),
        include_str!("../../assets/workflows/upscale.toml"),
    ),
    (
        "img2img",
        include_str!("../../assets/workflows/img2img.json"),
        include_str!("../../assets/workflows/img2img.toml"),
    ),
];

/// Largest seed filled in at random: 2^53 - 1, exact in every JSON reader.
const MAX_RANDOM_SEED: u64 = (1 << 53) - 1;

/// What is wrong with a template or a request's parameters.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("unknown template `{name}` (known: {known})")]
    UnknownTemplate { name: String, known: String },
    #[error("template `{template}`: unknown parameter `{name}` (known: {known})")]
    UnknownParameter {
        template: String,
        name: String,
        known: String,
    },
    #[error("template `{template}`: parameter `{name}` must be {expected}, got {got}")]
    WrongType {
        template: String,
        name: String,
        expected: &'static str,
        got: String,
    },
    #[error("template `{template}`: parameter `{name}` = {value} is out of range {range}")]
    OutOfRange {
        template: String,
        name: String,
        value: String,
        range: String,
    },
    #[error("template `{template}`: parameter `{name}` is required")]
    Missing { template: String, name: String },
    #[error("template `{template}` is broken: {reason}")]
    Invalid { template: String, reason: String },
}

/// A mistake in one of a template's two files, with where it is when known
/// (`portrait.toml:12:3: ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, thiserror::Error)]
pub struct SourceError {
    /// `NAME.json` or `NAME.toml`.
    pub file: String,
    /// 1-based, when the mistake has a place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum TemplateSource {
    /// Compiled into the binary; cannot be replaced or deleted.
    #[default]
    Builtin,
    /// A `NAME.json` + `NAME.toml` pair in `comfyui.templates_dir`.
    Folder,
    /// The shared store (Redis), for every node alike.
    Shared,
}

impl TemplateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Folder => "folder",
            Self::Shared => "shared",
        }
    }
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Int,
    Float,
    String,
    /// An unsigned integer filled at random when not given.
    Seed,
    /// A model file (a loader's input): with a model catalog, requests name a
    /// catalog model (`"model": "sdxl-turbo"` or `"auto"`) and its file is bound
    /// here; without one it is a plain string.
    Model,
    /// An input picture (a `LoadImage` node's): `s3://bucket/key`, an http(s)
    /// URL, `{"base64": ...}`, a `data:` URL or a multipart file, resolved at
    /// submit by `crate::service::inputs` into the name darkroom uploads it under;
    /// any other string is a file already in the backend's input folder.
    Image,
}

/// One parameter of a template manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// Node id in the workflow.
    pub node: String,
    /// Input name of that node.
    pub input: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Any JSON value of the parameter's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if takes a reference
fn is_false(b: &bool) -> bool {
    !b
}

/// A template manifest (`NAME.toml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub description: String,
    pub params: BTreeMap<String, ParamSpec>,
}

impl Manifest {
    /// The manifest as the TOML of a `NAME.toml` file.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render the manifest: {e}\n"))
    }
}

/// A workflow with its manifest.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub workflow: Value,
    pub manifest: Manifest,
    /// A short hash of the workflow and manifest texts: changes on every edit.
    pub version: String,
    pub source: TemplateSource,
    /// The texts it was read from (`NAME.json`, `NAME.toml`), as stored.
    pub workflow_text: String,
    pub manifest_text: String,
}

/// The version of a template with these two texts: 12 hex digits of SHA-256.
pub fn version_of(workflow_text: &str, manifest_text: &str) -> String {
    let mut h = Sha256::new();
    h.update(workflow_text.as_bytes());
    h.update(b"\n\0\n");
    h.update(manifest_text.as_bytes());
    hex::encode(h.finalize())[..12].to_owned()
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The line of `[params.NAME]` in a manifest text, for errors about that parameter.
fn param_line(text: &str, name: &str) -> Option<usize> {
    let header = format!("[params.{name}]");
    text.lines().position(|l| l.trim() == header).map(|i| i + 1)
}

impl Template {
    /// Reads template `name` from its workflow JSON and manifest TOML. Each
    /// manifest target must exist in the workflow and each default must be valid;
    /// a mistake names the file and, when it has one, the line and column.
    pub fn parse(
        name: &str,
        workflow_text: &str,
        manifest_text: &str,
        source: TemplateSource,
    ) -> Result<Self, SourceError> {
        let json_file = format!("{name}.json");
        let toml_file = format!("{name}.toml");
        let workflow: Value = serde_json::from_str(workflow_text).map_err(|e| SourceError {
            file: json_file.clone(),
            line: Some(e.line()),
            column: Some(e.column()),
            message: strip_position(&e.to_string()),
        })?;
        if let Err(message) = check_api_format(&workflow) {
            return Err(SourceError {
                file: json_file,
                line: None,
                column: None,
                message,
            });
        }
        let manifest: Manifest = toml::from_str(manifest_text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_col(manifest_text, s.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            SourceError {
                file: toml_file.clone(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        for (pname, spec) in &manifest.params {
            let at = |message: String| SourceError {
                file: toml_file.clone(),
                line: param_line(manifest_text, pname),
                column: None,
                message,
            };
            if workflow
                .get(&spec.node)
                .and_then(|n| n.get("inputs"))
                .and_then(|i| i.get(&spec.input))
                .is_none()
            {
                return Err(at(format!(
                    "parameter `{pname}` targets missing input {}.{} of {json_file}",
                    spec.node, spec.input
                )));
            }
            if let Some(d) = &spec.default {
                check(name, pname, spec, d).map_err(|e| at(format!("default: {e}")))?;
            }
        }
        Ok(Self {
            name: name.to_owned(),
            version: version_of(workflow_text, manifest_text),
            workflow,
            manifest,
            source,
            workflow_text: workflow_text.to_owned(),
            manifest_text: manifest_text.to_owned(),
        })
    }
}

/// serde_json's message without its trailing " at line L column C" (the
/// [`SourceError`] carries them).
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// What the editor's (non-API) format looks like, and how to get the API one.
pub const EDITOR_FORMAT_HOWTO: &str = "this is ComfyUI's editor format (top-level `nodes` and `links`), not the API format: \
     in ComfyUI, enable \"Dev mode\" options in the settings (gear icon), then use Workflow → Export (API) \
     (older versions: the \"Save (API Format)\" button) and use that file";

/// A workflow must be ComfyUI's API format: node ids mapping to
/// `{"class_type": "...", "inputs": {...}}`; the editor's format is named as such.
pub fn check_api_format(workflow: &Value) -> Result<(), String> {
    let Some(nodes) = workflow.as_object() else {
        return Err("must be an API-format workflow object (node id -> {class_type, inputs})".into());
    };
    if nodes.get("nodes").is_some_and(Value::is_array) && nodes.get("links").is_some_and(Value::is_array) {
        return Err(EDITOR_FORMAT_HOWTO.into());
    }
    if nodes.is_empty() {
        return Err("has no nodes".into());
    }
    for (id, node) in nodes {
        if node.get("class_type").and_then(Value::as_str).is_none() {
            return Err(format!("node {id:?} has no string `class_type`"));
        }
        if !node.get("inputs").is_some_and(Value::is_object) {
            return Err(format!("node {id:?} has no `inputs` object"));
        }
    }
    Ok(())
}

/// A template with the request's parameters applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedWorkflow {
    pub template: String,
    /// The template's version that was rendered.
    pub version: String,
    /// API-format workflow ready for POST /prompt.
    pub workflow: Value,
    /// Every parameter's effective value (given, default, or random seed).
    pub params_used: Map<String, Value>,
}

/// The set of known templates.
#[derive(Debug, Clone)]
pub struct Templates {
    by_name: BTreeMap<String, Template>,
}

impl Templates {
    /// The templates shipped in the binary.
    pub fn embedded() -> Result<Self, TemplateError> {
        Self::from_sources(EMBEDDED.iter().copied())
    }

    /// Templates from (name, workflow JSON, manifest TOML) triples; each
    /// manifest target must exist in its workflow and each default must be valid.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, TemplateError> {
        let mut templates = Vec::new();
        for (name, json, toml_text) in sources {
            let t = Template::parse(name, json, toml_text, TemplateSource::Builtin).map_err(|e| {
                TemplateError::Invalid {
                    template: name.to_owned(),
                    reason: e.to_string(),
                }
            })?;
            templates.push(t);
        }
        Ok(Self::from_templates(templates))
    }

    /// A set of already-checked templates; a later one replaces an earlier one
    /// of the same name.
    pub fn from_templates(templates: impl IntoIterator<Item = Template>) -> Self {
        Self {
            by_name: templates.into_iter().map(|t| (t.name.clone(), t)).collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Every template, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Template> {
        self.by_name.values()
    }

    pub fn get(&self, name: &str) -> Result<&Template, TemplateError> {
        self.by_name
            .get(name)
            .ok_or_else(|| TemplateError::UnknownTemplate {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Applies `params` to template `name`.
    pub fn render(&self, name: &str, params: &Map<String, Value>) -> Result<RenderedWorkflow, TemplateError> {
        let t = self.get(name)?;
        let specs = &t.manifest.params;
        if let Some(unknown) = params.keys().find(|k| !specs.contains_key(*k)) {
            return Err(TemplateError::UnknownParameter {
                template: name.to_owned(),
                name: unknown.clone(),
                known: specs.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let mut workflow = t.workflow.clone();
        let mut params_used = Map::new();
        for (pname, spec) in specs {
            let value = match (params.get(pname), &spec.default) {
                (Some(v), _) => {
                    check(name, pname, spec, v)?;
                    v.clone()
                }
                (None, _) if spec.required => {
                    return Err(TemplateError::Missing {
                        template: name.to_owned(),
                        name: pname.clone(),
                    });
                }
                (None, Some(d)) => d.clone(),
                (None, None) if spec.kind == ParamType::Seed => {
                    Value::from(rand::random::<u64>() & MAX_RANDOM_SEED)
                }
                (None, None) => workflow[&spec.node]["inputs"][&spec.input].clone(),
            };
            workflow[&spec.node]["inputs"][&spec.input] = value.clone();
            params_used.insert(pname.clone(), value);
        }
        Ok(RenderedWorkflow {
            template: name.to_owned(),
            version: t.version.clone(),
            workflow,
            params_used,
        })
    }
}

/// Checks one value against its spec.
fn check(template: &str, name: &str, spec: &ParamSpec, v: &Value) -> Result<(), TemplateError> {
    let wrong = |expected: &'static str| TemplateError::WrongType {
        template: template.to_owned(),
        name: name.to_owned(),
        expected,
        got: v.to_string(),
    };
    let out_of_range = |range: String| TemplateError::OutOfRange {
        template: template.to_owned(),
        name: name.to_owned(),
        value: v.to_string(),
        range,
    };
    #[allow(clippy::cast_precision_loss)]
    let number = match spec.kind {
        ParamType::Int => Some(v.as_i64().map(|i| i as f64).ok_or_else(|| wrong("an integer"))?),
        ParamType::Seed => {
            v.as_u64().ok_or_else(|| wrong("a non-negative integer"))?;
            None
        }
        ParamType::Float => Some(v.as_f64().ok_or_else(|| wrong("a number"))?),
        ParamType::String | ParamType::Model | ParamType::Image => {
            let s = v.as_str().ok_or_else(|| wrong("a string"))?;
            if let Some(max) = spec.max_len
                && s.chars().count() > max
            {
                return Err(out_of_range(format!("of at most {max} characters")));
            }
            if let Some(choices) = &spec.choices
                && !choices.iter().any(|c| c == s)
            {
                return Err(out_of_range(format!("[{}]", choices.join(", "))));
            }
            None
        }
    };
    if let Some(n) = number {
        let below = spec.min.is_some_and(|m| n < m);
        let above = spec.max.is_some_and(|m| n > m);
        if below || above {
            let fmt = |b: Option<f64>| b.map_or_else(|| "..".to_owned(), |x| x.to_string());
            return Err(out_of_range(format!("{}..={}", fmt(spec.min), fmt(spec.max))));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "templates_tests.rs"]
mod tests;
