//! `darkroom templates import`: reads a workflow saved with ComfyUI's "Export
//! (API)" and proposes its manifest, so a user's own workflow becomes a template
//! in one command. The proposal follows the graph, not node titles:
//!
//! - `prompt` / `negative_prompt`: the nodes with a literal `text` (or `text_*`)
//!   input found by following a sampler's `positive` / `negative` links upstream,
//!   through conditioning nodes (ControlNet, combine, ...) — a node with both a
//!   `positive` and a `negative` input is followed on the same side only;
//! - `seed` (also from `noise_seed`), `steps`, `cfg`, `sampler_name`, `scheduler`,
//!   `denoise` from any node that has them (KSampler, KSamplerAdvanced, the
//!   custom-sampling nodes); `width`, `height`, `batch_size` from latent nodes;
//!   `checkpoint` (type `model`) from the loader's `ckpt_name` / `unet_name`;
//!   `lora`, `upscale_model`, `scale_by`, `upscale_method` where present;
//!   `image` (type `image`) from each LoadImage; `filename_prefix` from each saver;
//! - a second one of a kind is `steps_2`, `image_2`, ...
//!
//! Types and defaults come from the workflow (a seed gets none: random per job);
//! ranges and choices from a backend's `/object_info` when one answers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::object_info::{InputKind, ObjectInfo};
use super::validate::link_target;
use crate::comfy::templates::check_api_format;
use crate::comfy::{Manifest, ParamSpec, ParamType, SourceError};

/// A proposed manifest and what the user should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub manifest: Manifest,
    /// Things the proposal could not do (no backend, unknown node classes, ...).
    pub notes: Vec<String>,
}

/// Reads an API-format workflow from `text`; a mistake names `file` and the line,
/// and the editor's format is refused with how to export the API one.
pub fn read_workflow(file: &str, text: &str) -> Result<Value, SourceError> {
    let workflow: Value = serde_json::from_str(text).map_err(|e| SourceError {
        file: file.to_owned(),
        line: Some(e.line()),
        column: Some(e.column()),
        message: format!("not JSON: {e}"),
    })?;
    check_api_format(&workflow).map_err(|message| SourceError {
        file: file.to_owned(),
        line: None,
        column: None,
        message,
    })?;
    Ok(workflow)
}

/// Node ids in ComfyUI's order (numbers numerically, then the rest).
fn node_order(nodes: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut ids: Vec<String> = nodes.keys().cloned().collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.clone()));
    ids
}

/// Proposes the manifest of `workflow` (already checked to be API format).
pub fn propose(workflow: &Value, info: Option<&ObjectInfo>, description: &str) -> Proposal {
    let empty = serde_json::Map::new();
    let nodes = workflow.as_object().unwrap_or(&empty);
    let mut b = Builder {
        nodes,
        info,
        params: BTreeMap::new(),
        used: BTreeSet::new(),
        counts: BTreeMap::new(),
        notes: Vec::new(),
        has_model: false,
    };
    let (positive, negative) = prompt_inputs(nodes);
    for (node, input) in positive {
        b.add(&node, &input, "prompt", ParamType::String, "positive prompt");
    }
    for (node, input) in negative {
        b.add(
            &node,
            &input,
            "negative_prompt",
            ParamType::String,
            "negative prompt",
        );
    }
    for id in node_order(nodes) {
        let class = nodes[&id]["class_type"].as_str().unwrap_or_default().to_owned();
        let Some(inputs) = nodes[&id]["inputs"].as_object() else {
            continue;
        };
        for (input, value) in inputs {
            if link_target(value).is_some() {
                continue;
            }
            if let Some((base, kind, what)) = rule(&class, input, value) {
                b.add(&id, input, base, kind, what);
            }
        }
    }
    if info.is_none() {
        b.notes.push(
            "no backend's /object_info could be read: no ranges or choices were filled in \
             (run `darkroom templates validate` once a backend answers)"
                .into(),
        );
    } else if let Some(info) = info {
        for id in node_order(nodes) {
            let class = nodes[&id]["class_type"].as_str().unwrap_or_default();
            if !info.has_class(class) {
                b.notes.push(format!(
                    "node {id}: class `{class}` is not known to the backend (a custom node it lacks?): \
                     its parameters were named from their inputs alone"
                ));
            }
        }
    }
    if b.params.keys().all(|k| !k.starts_with("prompt")) && nodes.values().any(is_consumer) {
        b.notes.push(
            "no node with a literal `text` input feeds a sampler's positive side: no `prompt` parameter"
                .into(),
        );
    }
    Proposal {
        manifest: Manifest {
            description: description.to_owned(),
            params: b.params,
        },
        notes: b.notes,
    }
}

/// The manifest text of a proposal: a short header, then the TOML.
pub fn manifest_text(proposal: &Proposal, source: &str) -> String {
    let mut out = format!(
        "# Proposed by `darkroom templates import` from {source}. Each parameter sets one\n\
         # node input; type is int, float, string, seed, model or image. Edit freely.\n"
    );
    for note in &proposal.notes {
        out.push_str("# note: ");
        out.push_str(note);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&proposal.manifest.to_toml());
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The parameter an input becomes, by its name: (base name, type, what it is).
fn rule(class: &str, input: &str, value: &Value) -> Option<(&'static str, ParamType, &'static str)> {
    let latent = class.contains("Latent");
    Some(match input {
        "seed" | "noise_seed" => ("seed", ParamType::Seed, "seed, random when not given"),
        "steps" => ("steps", ParamType::Int, "sampling steps"),
        "cfg" => ("cfg", ParamType::Float, "classifier-free guidance scale"),
        "sampler_name" => ("sampler_name", ParamType::String, "sampler"),
        "scheduler" => ("scheduler", ParamType::String, "noise schedule"),
        "denoise" => ("denoise", ParamType::Float, "denoise strength"),
        "width" if latent => ("width", ParamType::Int, "image width"),
        "height" if latent => ("height", ParamType::Int, "image height"),
        "batch_size" if latent => ("batch_size", ParamType::Int, "images per job"),
        "ckpt_name" | "unet_name" => ("checkpoint", ParamType::Model, "model file"),
        "lora_name" => ("lora", ParamType::String, "LoRA file"),
        "model_name" if class.contains("Upscale") => {
            ("upscale_model", ParamType::String, "upscale model file")
        }
        "scale_by" => ("scale_by", ParamType::Float, "scale factor"),
        "upscale_method" => ("upscale_method", ParamType::String, "scaling method"),
        "image" if class.starts_with("LoadImage") && value.is_string() => (
            "image",
            ParamType::Image,
            "input image: a file in the backend's input folder",
        ),
        "filename_prefix" => ("filename_prefix", ParamType::String, "output file name prefix"),
        _ => return None,
    })
}

struct Builder<'a> {
    nodes: &'a serde_json::Map<String, Value>,
    info: Option<&'a ObjectInfo>,
    params: BTreeMap<String, ParamSpec>,
    used: BTreeSet<Slot>,
    counts: BTreeMap<&'static str, usize>,
    notes: Vec<String>,
    /// Only the first loader input is of type `model` (what a catalog binds).
    has_model: bool,
}

impl Builder<'_> {
    fn add(&mut self, node: &str, input: &str, base: &'static str, mut kind: ParamType, what: &str) {
        if !self.used.insert((node.to_owned(), input.to_owned())) {
            return;
        }
        let value = self.nodes[node]["inputs"][input].clone();
        let class = self.nodes[node]["class_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if kind == ParamType::Model {
            if self.has_model {
                kind = ParamType::String;
            }
            self.has_model = true;
        }
        // The workflow's value decides between int and float, and a string is a string.
        kind = match (kind, &value) {
            (ParamType::Int, v) if v.is_f64() => ParamType::Float,
            (ParamType::Int | ParamType::Float | ParamType::Seed, Value::String(_)) => ParamType::String,
            (k, _) => k,
        };
        // A float written as a whole number in the workflow (`"cfg": 7`) is a float.
        let value = match (value.as_f64(), kind) {
            (Some(f), ParamType::Float) if !value.is_f64() => Value::from(f),
            _ => value,
        };
        let n = self.counts.entry(base).or_insert(0);
        *n += 1;
        let name = if *n == 1 {
            base.to_owned()
        } else {
            format!("{base}_{n}")
        };
        let mut spec = ParamSpec {
            node: node.to_owned(),
            input: input.to_owned(),
            kind,
            default: (kind != ParamType::Seed).then_some(value.clone()),
            required: false,
            min: None,
            max: None,
            max_len: None,
            choices: None,
            description: Some(format!("{what} ({class}, node {node})")),
        };
        match kind {
            ParamType::String if base.ends_with("prompt") => spec.max_len = Some(10_000),
            ParamType::String | ParamType::Model | ParamType::Image => spec.max_len = Some(1024),
            _ => {}
        }
        if let Some(backend) = self.info.and_then(|i| i.input(&class, input)) {
            self.ranges(&name, &mut spec, &backend.kind, backend.min, backend.max);
        }
        self.params.insert(name, spec);
    }

    /// Fills min/max or choices from the backend, unless the workflow's own
    /// value falls outside them (then they are left out, with a note).
    fn ranges(
        &mut self,
        name: &str,
        spec: &mut ParamSpec,
        kind: &InputKind,
        min: Option<f64>,
        max: Option<f64>,
    ) {
        let value = spec.default.clone().unwrap_or(Value::Null);
        match (spec.kind, kind) {
            (ParamType::Int | ParamType::Float, InputKind::Int | InputKind::Float) => {
                let n = value.as_f64();
                let inside = n.is_none_or(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m));
                if inside {
                    spec.min = min;
                    spec.max = max;
                } else {
                    self.notes.push(format!(
                        "parameter `{name}`: the workflow's {value} is outside the backend's range; no range was set"
                    ));
                }
            }
            // File names differ from backend to backend: no choices for those.
            (ParamType::String, InputKind::Choice(choices)) if !choices.is_empty() => {
                if value.as_str().is_some_and(|v| choices.iter().any(|c| c == v)) {
                    spec.choices = Some(choices.clone());
                    spec.max_len = None;
                } else {
                    self.notes.push(format!(
                        "parameter `{name}`: the workflow's {value} is not one of the backend's choices; none were set"
                    ));
                }
            }
            _ => {}
        }
    }
}

/// A node that takes conditioning on both sides (a sampler, a guider, a ControlNet).
fn is_consumer(node: &Value) -> bool {
    let inputs = &node["inputs"];
    link_target(&inputs["positive"]).is_some() && link_target(&inputs["negative"]).is_some()
}

/// A (node id, input name) pair.
type Slot = (String, String);

/// The slots of prompt text on the positive and on the negative side of each
/// sampler, in sampler order.
fn prompt_inputs(nodes: &serde_json::Map<String, Value>) -> (Vec<Slot>, Vec<Slot>) {
    let consumers: Vec<String> = node_order(nodes)
        .into_iter()
        .filter(|id| is_consumer(&nodes[id]))
        .collect();
    // Samplers: consumers whose outputs feed no other consumer's positive/negative.
    let feeds_another = |id: &str| {
        consumers.iter().any(|c| {
            ["positive", "negative"]
                .iter()
                .any(|side| link_target(&nodes[c]["inputs"][*side]) == Some(id))
        })
    };
    let (mut positive, mut negative) = (Vec::new(), Vec::new());
    for root in consumers.iter().filter(|c| !feeds_another(c)) {
        for (side, out) in [("positive", &mut positive), ("negative", &mut negative)] {
            let mut seen = BTreeSet::new();
            if let Some(start) = link_target(&nodes[root]["inputs"][side]) {
                trace(nodes, start, side, &mut seen, out);
            }
        }
    }
    (positive, negative)
}

/// Walks upstream from `id` collecting literal text inputs; stops at a node that
/// has one.
fn trace(
    nodes: &serde_json::Map<String, Value>,
    id: &str,
    side: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<Slot>,
) {
    if !seen.insert(id.to_owned()) {
        return;
    }
    let Some(inputs) = nodes.get(id).and_then(|n| n["inputs"].as_object()) else {
        return;
    };
    let texts: Vec<&String> = inputs
        .iter()
        .filter(|(k, v)| (*k == "text" || k.starts_with("text_")) && v.is_string())
        .map(|(k, _)| k)
        .collect();
    if !texts.is_empty() {
        for t in texts {
            let pair = (id.to_owned(), t.clone());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
        return;
    }
    let next: Vec<&str> = if is_consumer(&nodes[id]) {
        link_target(&inputs[side]).into_iter().collect()
    } else {
        inputs.values().filter_map(link_target).collect()
    };
    for n in next {
        trace(nodes, n, side, seen, out);
    }
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
