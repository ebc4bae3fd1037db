//! Workflow templates: API-format workflows shipped in `assets/workflows/` with a
//! TOML manifest naming which node input each parameter sets, its type, default
//! and range. [`Templates::render`] checks a request's parameters against the
//! manifest (so a bad one is rejected at submit time, naming it) and fills a random
//! seed when the template has one and the request gives none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
}

/// One parameter of a template manifest.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    #[serde(default)]
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

/// A template manifest (`assets/workflows/<name>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub description: String,
    pub params: BTreeMap<String, ParamSpec>,
}

/// A workflow with its manifest.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub workflow: Value,
    pub manifest: Manifest,
}

/// A template with the request's parameters applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedWorkflow {
    pub template: String,
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
        let mut by_name = BTreeMap::new();
        for (name, json, toml_text) in sources {
            let invalid = |reason: String| TemplateError::Invalid {
                template: name.to_owned(),
                reason,
            };
            let workflow: Value =
                serde_json::from_str(json).map_err(|e| invalid(format!("workflow: {e}")))?;
            let manifest: Manifest =
                toml::from_str(toml_text).map_err(|e| invalid(format!("manifest: {e}")))?;
            for (pname, spec) in &manifest.params {
                if workflow
                    .get(&spec.node)
                    .and_then(|n| n.get("inputs"))
                    .and_then(|i| i.get(&spec.input))
                    .is_none()
                {
                    return Err(invalid(format!(
                        "parameter `{pname}` targets missing input {}.{}",
                        spec.node, spec.input
                    )));
                }
                if let Some(d) = &spec.default {
                    check(name, pname, spec, d)?;
                }
            }
            by_name.insert(
                name.to_owned(),
                Template {
                    name: name.to_owned(),
                    workflow,
                    manifest,
                },
            );
        }
        Ok(Self { by_name })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
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
        ParamType::String | ParamType::Model => {
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
