//! `[[inbox]]`: the drop-folder rules. Each names a bucket and prefix on
//! darkroom's own store (and optionally a local directory whose new files are
//! put there), the template a new picture runs with, its parameters, where the
//! results go and whose jobs they are.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::ConfigError;

/// One `[[inbox]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxRule {
    /// The bucket watched (on darkroom's own store; created at start).
    pub bucket: String,
    /// The key prefix watched, `upscale/`: every object directly under it (not in
    /// a sub-folder, not a `.json` sidecar) becomes a job.
    #[serde(default)]
    pub prefix: String,
    /// The template each picture runs with.
    pub template: String,
    /// Its parameters (a sidecar `NAME.json` or `x-amz-meta-darkroom-*` metadata
    /// override them per picture).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// The template's image parameter the picture is bound to (default: `image`).
    #[serde(default = "image_param")]
    pub param: String,
    /// Where results go in the same bucket: `{output_prefix}/{name}-{n}.{ext}`.
    pub output_prefix: String,
    /// The user the jobs belong to (default: none, like the bootstrap admin's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A local directory watched with inotify: each new file is put under
    /// `prefix` (then removed from the directory) and runs like an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

fn image_param() -> String {
    "image".into()
}

impl InboxRule {
    /// The prefix with its trailing `/` (or empty: the bucket's top level).
    pub fn prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }

    /// Where processed originals go.
    pub fn processed(&self) -> String {
        format!("{}processed/", self.prefix())
    }

    /// Where failed originals (and their `.error.json`) go.
    pub fn failed(&self) -> String {
        format!("{}failed/", self.prefix())
    }

    /// The output prefix with its trailing `/`.
    pub fn outputs(&self) -> String {
        format!("{}/", self.output_prefix.trim_matches('/'))
    }

    /// `bucket/prefix`, how the rule is shown.
    pub fn name(&self) -> String {
        format!("{}/{}", self.bucket, self.prefix())
    }

    /// Checks rule `i`; errors name the key.
    pub fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let at = |key: &str, message: String| ConfigError::Keyed(format!("inbox[{i}].{key}: {message}"));
        crate::object_store::validate_bucket_name(&self.bucket).map_err(|e| at("bucket", e.to_string()))?;
        if self.template.is_empty() {
            return Err(at("template", "must name a template".into()));
        }
        if self.output_prefix.trim_matches('/').is_empty() {
            return Err(at("output_prefix", "must name a prefix (`upscaled`)".into()));
        }
        if self.outputs() == self.prefix() {
            return Err(at(
                "output_prefix",
                format!(
                    "{:?} is the watched prefix: results would be ingested again",
                    self.output_prefix
                ),
            ));
        }
        if self.params.contains_key(&self.param) {
            return Err(at(
                "params",
                format!("`{}` is bound to each picture; do not set it", self.param),
            ));
        }
        Ok(())
    }
}

/// Checks every rule; two rules may not watch the same bucket and prefix.
pub fn validate(rules: &[InboxRule]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(i)?;
        if let Some(j) = rules[..i].iter().position(|r| r.name() == rule.name()) {
            return Err(ConfigError::Keyed(format!(
                "inbox[{i}].prefix: {} is watched by inbox[{j}] already",
                rule.name()
            )));
        }
    }
    Ok(())
}
