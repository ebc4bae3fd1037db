//! `templates validate`: checks a template against what a backend says it can run
//! (`/object_info`) before a job finds out — every node's class, every literal
//! input's name, type, range and choices, links to nodes that exist, required
//! inputs present, and the manifest's defaults the same way. Each finding names
//! the node, its class and the input.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::object_info::{InputKind, InputSpec, ObjectInfo};
use crate::comfy::Template;

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The backend has no such node class (a custom node it lacks?).
    UnknownClass,
    /// The class has no input of that name.
    UnknownInput,
    /// A required input is not given.
    MissingInput,
    /// The value is not of the input's type.
    WrongType,
    /// A number outside the input's min..max.
    OutOfRange,
    /// A value that is not one of the input's choices.
    NotInChoices,
    /// A link to a node the workflow does not have.
    BadLink,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    pub node: String,
    pub class_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub kind: FindingKind,
    pub message: String,
}

/// Every problem of `template` against `info`, in node order.
pub fn validate(template: &Template, info: &ObjectInfo) -> Vec<Finding> {
    let mut findings = validate_workflow(&template.workflow, info);
    for (pname, spec) in &template.manifest.params {
        let node = &template.workflow[&spec.node];
        let (Some(default), Some(class)) = (&spec.default, node["class_type"].as_str()) else {
            continue;
        };
        // The workflow's own value was checked above.
        if node["inputs"][&spec.input] == *default {
            continue;
        }
        if let Some(input) = info.input(class, &spec.input)
            && let Some((kind, why)) = check_value(&input, default)
        {
            findings.push(Finding {
                node: spec.node.clone(),
                class_type: class.to_owned(),
                input: Some(spec.input.clone()),
                kind,
                message: format!("parameter `{pname}`'s default {default}: {why}"),
            });
        }
    }
    findings
}

/// Every problem of an API-format workflow against `info`.
pub fn validate_workflow(workflow: &Value, info: &ObjectInfo) -> Vec<Finding> {
    let Some(nodes) = workflow.as_object() else {
        return Vec::new();
    };
    let mut ids: Vec<&String> = nodes.keys().collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), (*id).clone()));
    let mut out = Vec::new();
    for id in ids {
        let node = &nodes[id];
        let class = node["class_type"].as_str().unwrap_or_default();
        let finding = |input: Option<&str>, kind, message: String| Finding {
            node: id.clone(),
            class_type: class.to_owned(),
            input: input.map(str::to_owned),
            kind,
            message,
        };
        if !info.has_class(class) {
            out.push(finding(
                None,
                FindingKind::UnknownClass,
                format!("node {id}: the backend has no node class `{class}` (a custom node it lacks?)"),
            ));
            continue;
        }
        let specs = info.inputs(class);
        let inputs = node["inputs"].as_object().cloned().unwrap_or_default();
        for (name, value) in &inputs {
            let Some((_, spec)) = specs.iter().find(|(n, _)| n == name) else {
                out.push(finding(
                    Some(name),
                    FindingKind::UnknownInput,
                    format!(
                        "node {id} ({class}): no input `{name}` (it has: {})",
                        names(&specs)
                    ),
                ));
                continue;
            };
            if let Some(target) = link_target(value) {
                if !nodes.contains_key(target) {
                    out.push(finding(
                        Some(name),
                        FindingKind::BadLink,
                        format!("node {id} ({class}) input `{name}` links to node {target}, which is not in the workflow"),
                    ));
                }
                continue;
            }
            if let Some((kind, why)) = check_value(spec, value) {
                out.push(finding(
                    Some(name),
                    kind,
                    format!("node {id} ({class}) input `{name}` = {value}: {why}"),
                ));
            }
        }
        for (name, spec) in &specs {
            if spec.required && !inputs.contains_key(name) {
                out.push(finding(
                    Some(name),
                    FindingKind::MissingInput,
                    format!("node {id} ({class}): required input `{name}` is missing"),
                ));
            }
        }
    }
    out
}

fn names(specs: &[(String, InputSpec)]) -> String {
    specs
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The node id of a link input (`["4", 0]`).
pub(super) fn link_target(v: &Value) -> Option<&str> {
    match v.as_array().map(Vec::as_slice) {
        Some([Value::String(id), slot]) if slot.is_u64() => Some(id),
        _ => None,
    }
}

/// Why `v` does not fit `spec`, if it does not.
fn check_value(spec: &InputSpec, v: &Value) -> Option<(FindingKind, String)> {
    let wrong = |what: &str| Some((FindingKind::WrongType, format!("must be {what}")));
    let number = match &spec.kind {
        InputKind::Int => match v.as_f64() {
            Some(n) if v.is_i64() || v.is_u64() => n,
            _ => return wrong("an integer"),
        },
        InputKind::Float => match v.as_f64() {
            Some(n) => n,
            None => return wrong("a number"),
        },
        InputKind::String => {
            return (!v.is_string()).then(|| (FindingKind::WrongType, "must be a string".into()));
        }
        InputKind::Boolean => {
            return (!v.is_boolean()).then(|| (FindingKind::WrongType, "must be true or false".into()));
        }
        InputKind::Link(t) => return wrong(&format!("a link to another node's {t} output")),
        InputKind::Choice(choices) => {
            let Some(s) = v.as_str() else {
                return wrong("a string");
            };
            // An empty list: the backend lists nothing (no model files); nothing to check.
            if choices.is_empty() || choices.iter().any(|c| c == s) {
                return None;
            }
            let shown: Vec<&str> = choices.iter().take(20).map(String::as_str).collect();
            let more = if choices.len() > 20 { ", ..." } else { "" };
            return Some((
                FindingKind::NotInChoices,
                format!("not one of the backend's choices [{}{more}]", shown.join(", ")),
            ));
        }
    };
    let below = spec.min.is_some_and(|m| number < m);
    let above = spec.max.is_some_and(|m| number > m);
    (below || above).then(|| {
        let fmt = |b: Option<f64>| b.map_or_else(|| "..".to_owned(), |x| x.to_string());
        (
            FindingKind::OutOfRange,
            format!(
                "outside the backend's range {}..={}",
                fmt(spec.min),
                fmt(spec.max)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> ObjectInfo {
        ObjectInfo::new(
            serde_json::from_str(include_str!("../../tests/fixtures/comfyui/object_info.json")).unwrap(),
        )
    }

    #[test]
    fn the_builtin_txt2img_is_clean() {
        let t = crate::comfy::Templates::embedded().unwrap();
        assert_eq!(validate(t.get("txt2img").unwrap(), &info()), []);
    }

    #[test]
    fn each_kind_of_problem_is_named() {
        let wf = json!({
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 8, "height": 512.5, "batch_size": 1, "colour": 3}},
            "2": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7, "sampler_name": "warp_drive",
                  "scheduler": "normal", "denoise": 1, "model": ["9", 0], "positive": ["1", 0], "negative": ["1", 0],
                  "latent_image": ["1", 0]}},
            "3": {"class_type": "MyCustomNode", "inputs": {}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        });
        let f = validate_workflow(&wf, &info());
        let kinds: Vec<(&str, Option<&str>, FindingKind)> = f
            .iter()
            .map(|f| (f.node.as_str(), f.input.as_deref(), f.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("1", Some("colour"), FindingKind::UnknownInput),
                ("1", Some("height"), FindingKind::WrongType),
                ("1", Some("width"), FindingKind::OutOfRange),
                ("2", Some("model"), FindingKind::BadLink),
                ("2", Some("sampler_name"), FindingKind::NotInChoices),
                ("3", None, FindingKind::UnknownClass),
                ("4", Some("filename_prefix"), FindingKind::MissingInput),
            ]
        );
        assert!(f[2].message.contains("16..=16384"), "{}", f[2].message);
        assert!(f[5].message.contains("MyCustomNode"), "{}", f[5].message);
    }
}
