//! The small form behind `n`: pick a template, fill its parameters (defaults shown,
//! left empty to keep them), submit. Values are typed by the template's parameter
//! types here, and the daemon checks them again and names any it refuses.

use serde_json::{Map, Value};

use crate::comfy::ParamType;
use crate::dispatch::JobRequest;
use crate::service::TemplateInfo;

/// The form's fields.
#[derive(Debug, Clone)]
pub struct Form {
    pub templates: Vec<TemplateInfo>,
    /// Which template.
    pub template: usize,
    /// Row 0 is the template; row `i + 1` is parameter `i`.
    pub row: usize,
    /// The text typed for each parameter of the current template.
    pub values: Vec<String>,
    /// Why the last submit was refused here.
    pub error: Option<String>,
}

impl Form {
    pub fn new(templates: Vec<TemplateInfo>) -> Self {
        let mut f = Self {
            templates,
            template: 0,
            row: 0,
            values: Vec::new(),
            error: None,
        };
        f.reset_values();
        f
    }

    fn reset_values(&mut self) {
        self.values = vec![String::new(); self.params().len()];
    }

    pub fn current(&self) -> Option<&TemplateInfo> {
        self.templates.get(self.template)
    }

    /// The current template's parameters, by name.
    pub fn params(&self) -> Vec<(&String, &crate::comfy::ParamSpec)> {
        self.current()
            .map(|t| t.params.iter().collect())
            .unwrap_or_default()
    }

    pub fn next_row(&mut self) {
        self.row = (self.row + 1) % (self.values.len() + 1);
    }

    pub fn prev_row(&mut self) {
        let rows = self.values.len() + 1;
        self.row = (self.row + rows - 1) % rows;
    }

    /// Left/right on the template row picks another template.
    pub fn cycle_template(&mut self, forward: bool) {
        if self.row != 0 || self.templates.is_empty() {
            return;
        }
        let n = self.templates.len();
        self.template = if forward {
            (self.template + 1) % n
        } else {
            (self.template + n - 1) % n
        };
        self.reset_values();
    }

    pub fn type_char(&mut self, c: char) {
        if let Some(v) = self.row.checked_sub(1).and_then(|i| self.values.get_mut(i)) {
            v.push(c);
        }
    }

    pub fn backspace(&mut self) {
        if let Some(v) = self.row.checked_sub(1).and_then(|i| self.values.get_mut(i)) {
            v.pop();
        }
    }

    /// The job request, or the parameter whose text is not of its type.
    pub fn request(&self) -> Result<JobRequest, String> {
        let t = self.current().ok_or("the daemon offers no templates")?;
        let mut params = Map::new();
        for ((name, spec), text) in self.params().into_iter().zip(&self.values) {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let value = match spec.kind {
                ParamType::Int | ParamType::Seed => text
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| format!("{name}: {text:?} is not a whole number"))?,
                ParamType::Float => text
                    .parse::<f64>()
                    .map(Value::from)
                    .map_err(|_| format!("{name}: {text:?} is not a number"))?,
                ParamType::String | ParamType::Model | ParamType::Image => Value::from(text),
            };
            params.insert(name.clone(), value);
        }
        Ok(JobRequest {
            template: Some(t.name.clone()),
            params,
            ..JobRequest::default()
        })
    }
}

#[cfg(test)]
pub mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::comfy::ParamSpec;

    use serde_json::json;

    /// A request as its JSON reads.
    fn req(v: Value) -> JobRequest {
        serde_json::from_value(v).unwrap()
    }

    fn spec(kind: ParamType) -> ParamSpec {
        serde_json::from_value(json!({"node": "1", "input": "x", "type": match kind {
            ParamType::Int => "int", ParamType::Float => "float", ParamType::String => "string", ParamType::Seed => "seed", ParamType::Model => "model", ParamType::Image => "image",
        }}))
        .unwrap()
    }

    pub fn templates() -> Vec<TemplateInfo> {
        let mut noop = BTreeMap::new();
        noop.insert("color".to_owned(), spec(ParamType::Int));
        noop.insert("filename_prefix".to_owned(), spec(ParamType::String));
        let mut txt = BTreeMap::new();
        txt.insert("cfg".to_owned(), spec(ParamType::Float));
        vec![
            TemplateInfo {
                name: "noop".into(),
                description: "smoke".into(),
                params: noop,
                ..TemplateInfo::default()
            },
            TemplateInfo {
                name: "txt2img".into(),
                description: "sdxl".into(),
                params: txt,
                ..TemplateInfo::default()
            },
        ]
    }

    #[test]
    fn typed_values_and_named_mistakes() {
        let mut f = Form::new(templates());
        assert_eq!(
            f.request().unwrap(),
            req(json!({"template": "noop", "params": {}}))
        );
        f.next_row();
        for c in "12x".chars() {
            f.type_char(c);
        }
        assert_eq!(f.request().unwrap_err(), "color: \"12x\" is not a whole number");
        f.backspace();
        f.next_row();
        f.type_char('p');
        assert_eq!(
            f.request().unwrap(),
            req(json!({"template": "noop", "params": {"color": 12, "filename_prefix": "p"}}))
        );
        // Back on the template row, another template clears the values.
        f.next_row();
        assert_eq!(f.row, 0);
        f.cycle_template(true);
        assert_eq!(f.values, [""]);
        assert_eq!(f.request().unwrap().template.as_deref(), Some("txt2img"));
    }
}
