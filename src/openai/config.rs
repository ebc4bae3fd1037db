//! `[openai]`: how OpenAI Images API requests become darkroom jobs — the template
//! a request runs when its `model` names none, how many images one request may
//! ask for, and how long it waits for them. This module owns the section: its
//! defaults and its validation.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The template a request runs unless its `model` names another template.
    /// `prompt` goes to its `prompt` parameter and `size` to `width`/`height`
    /// when it has them (`noop` has no prompt: a model-free smoke test).
    pub template: String,
    /// The most images one request may ask for (`n`).
    pub max_n: u32,
    /// How long a request waits for its images before answering 504, in seconds.
    pub wait_seconds: u64,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            template: "txt2img".into(),
            max_n: 10,
            wait_seconds: 300,
        }
    }
}

impl OpenAiConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        let templates = crate::comfy::Templates::embedded().map_err(|e| ConfigError::Invalid {
            key: "openai.template",
            message: format!("the built-in templates do not load: {e}"),
        })?;
        if templates.get(&self.template).is_err() {
            let names: Vec<&str> = templates.names().collect();
            return invalid(
                "openai.template",
                format!(
                    "{:?} is not a template (valid: {})",
                    self.template,
                    names.join(", ")
                ),
            );
        }
        if !(1..=100).contains(&self.max_n) {
            return invalid("openai.max_n", "must be 1..=100".into());
        }
        if self.wait_seconds == 0 {
            return invalid("openai.wait_seconds", "must be at least 1".into());
        }
        Ok(())
    }
}
