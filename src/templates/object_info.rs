//! ComfyUI's `/object_info` read as typed input specs: what each node class
//! accepts, with its type, default, range or choices. Import takes ranges and
//! choices from it, validate checks every node of a workflow against it. The
//! shape, as recorded from a real server: `{CLASS: {"input": {"required": {NAME:
//! SPEC}, "optional": {...}}}}` where SPEC is `["INT", {"default", "min", "max"}]`,
//! `[["a", "b"], {...}]` (a combo), `["COMBO", {"options": [...]}]` (the newer
//! combo form), or `["MODEL"]` (a link from another node's output).

use std::time::Duration;

use serde_json::Value;

/// The value an input takes.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    Int,
    Float,
    String,
    Boolean,
    /// One of these strings (empty: the backend lists none, e.g. no model files).
    Choice(Vec<String>),
    /// Another node's output of this type (`MODEL`, `IMAGE`, ...).
    Link(String),
}

/// One input of a node class.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub kind: InputKind,
    pub default: Option<Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub required: bool,
}

/// A backend's `/object_info` answer.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    classes: serde_json::Map<String, Value>,
}

impl ObjectInfo {
    /// Wraps an `/object_info` answer (anything but an object reads as no classes).
    pub fn new(v: Value) -> Self {
        match v {
            Value::Object(classes) => Self { classes },
            _ => Self {
                classes: serde_json::Map::new(),
            },
        }
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.classes.contains_key(class)
    }

    /// Every input of `class` (required, then optional), in the backend's order.
    pub fn inputs(&self, class: &str) -> Vec<(String, InputSpec)> {
        let Some(input) = self.classes.get(class).and_then(|c| c.get("input")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (section, required) in [("required", true), ("optional", false)] {
            if let Some(map) = input.get(section).and_then(Value::as_object) {
                for (name, spec) in map {
                    if let Some(s) = parse_spec(spec, required) {
                        out.push((name.clone(), s));
                    }
                }
            }
        }
        out
    }

    /// Input `name` of `class`, if the backend knows it.
    pub fn input(&self, class: &str, name: &str) -> Option<InputSpec> {
        self.inputs(class)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// How many node classes the backend has.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }
}

fn parse_spec(spec: &Value, required: bool) -> Option<InputSpec> {
    let parts = spec.as_array()?;
    let opts = parts.get(1).and_then(Value::as_object);
    let opt_f64 = |k: &str| opts.and_then(|o| o.get(k)).and_then(Value::as_f64);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let kind = match parts.first()? {
        Value::Array(_) => InputKind::Choice(strings(&parts[0])),
        Value::String(t) => match t.as_str() {
            "INT" => InputKind::Int,
            "FLOAT" => InputKind::Float,
            "STRING" => InputKind::String,
            "BOOLEAN" => InputKind::Boolean,
            "COMBO" => InputKind::Choice(
                opts.and_then(|o| o.get("options"))
                    .map(strings)
                    .unwrap_or_default(),
            ),
            other => InputKind::Link(other.to_owned()),
        },
        _ => return None,
    };
    Some(InputSpec {
        kind,
        default: opts.and_then(|o| o.get("default")).cloned(),
        min: opt_f64("min"),
        max: opt_f64("max"),
        required,
    })
}

/// The `/object_info` of the first of `backends` that answers within `timeout`
/// (over https trusting `trust`'s CAs): its URL and the answer, or why none did.
pub async fn fetch(
    backends: &[String],
    timeout: Duration,
    trust: &crate::tls::Trust,
) -> Result<(String, ObjectInfo), String> {
    if backends.is_empty() {
        return Err("no ComfyUI backend is configured".into());
    }
    let mut why = Vec::new();
    for url in backends {
        let client = match crate::comfy::ComfyClient::with_trust(url, timeout, trust) {
            Ok(c) => c,
            Err(e) => {
                why.push(format!("{url}: {e}"));
                continue;
            }
        };
        match client.object_info().await {
            Ok(v) if v.is_object() => return Ok((url.clone(), ObjectInfo::new(v))),
            Ok(_) => why.push(format!("{url}: /object_info is not an object")),
            Err(e) => why.push(format!("{url}: {e}")),
        }
    }
    Err(format!("no backend answered /object_info ({})", why.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_spec_form_reads() {
        let info = ObjectInfo::new(json!({
            "KSampler": {"input": {"required": {
                "model": ["MODEL", {"tooltip": "x"}],
                "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0}],
                "sampler_name": [["euler", "heun"], {}],
            }, "optional": {"flag": ["BOOLEAN", {"default": true}]}}},
            "UpscaleModelLoader": {"input": {"required": {
                "model_name": ["COMBO", {"multiselect": false, "options": ["4x.pth"]}],
            }}},
        }));
        assert!(info.has_class("KSampler") && !info.has_class("Nope"));
        let steps = info.input("KSampler", "steps").unwrap();
        assert_eq!(
            (steps.kind, steps.min, steps.max, steps.default),
            (InputKind::Int, Some(1.0), Some(10000.0), Some(json!(20)))
        );
        assert_eq!(
            info.input("KSampler", "model").unwrap().kind,
            InputKind::Link("MODEL".into())
        );
        assert_eq!(
            info.input("KSampler", "sampler_name").unwrap().kind,
            InputKind::Choice(vec!["euler".into(), "heun".into()])
        );
        let flag = info.input("KSampler", "flag").unwrap();
        assert!(!flag.required && flag.kind == InputKind::Boolean);
        assert_eq!(
            info.input("UpscaleModelLoader", "model_name").unwrap().kind,
            InputKind::Choice(vec!["4x.pth".into()])
        );
        assert!(info.input("KSampler", "nope").is_none());
    }

    #[test]
    fn the_recorded_object_info_reads() {
        let text = include_str!("../../tests/fixtures/comfyui/object_info.json");
        let info = ObjectInfo::new(serde_json::from_str(text).unwrap());
        assert!(info.class_count() > 400);
        let w = info.input("EmptyLatentImage", "width").unwrap();
        assert_eq!((w.min, w.max), (Some(16.0), Some(16384.0)));
        let InputKind::Choice(samplers) = info.input("KSampler", "sampler_name").unwrap().kind else {
            panic!("sampler_name is not a combo");
        };
        assert!(samplers.iter().any(|s| s == "dpmpp_2m"));
    }
}
