//! The model catalog (`[[models]]`): what users ask for by name, and what that
//! means on a GPU — the file ComfyUI loads, the VRAM it needs, its quality, the
//! recommended steps/cfg and the largest image it makes. Three entries may share one
//! file and differ only in settings: a catalog model is a file *plus* its settings,
//! and swapping is about files.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// How good a model's images are; ordered `fast < medium < high < ultra`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Fast,
    Medium,
    High,
    Ultra,
}

named_enum!(Quality, "quality", {
    Fast => "fast",
    Medium => "medium",
    High => "high",
    Ultra => "ultra",
});

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// What users ask for (`"model": "sdxl-turbo"`).
    pub name: String,
    /// The file as ComfyUI lists it under GET /models/{folder}.
    pub file: String,
    /// ComfyUI's model folder (`checkpoints`, `diffusion_models`, ...).
    #[serde(default = "checkpoints")]
    pub folder: String,
    /// VRAM needed to run it, in GB (10^9 bytes, as GPU makers count).
    pub vram_gb: f64,
    pub quality: Quality,
    /// Seconds one image takes, until 5 finished jobs teach a better figure.
    pub expected_seconds: f64,
    /// Recommended sampler steps, used when a request gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Recommended CFG scale, used when a request gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg: Option<f64>,
    /// The largest image it makes, `"WxH"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_resolution: Option<String>,
    /// Free words (`thumbnail`, `hero_image`) a request's `purpose` may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub use_cases: Vec<String>,
}

fn checkpoints() -> String {
    "checkpoints".into()
}

impl ModelSpec {
    /// Bytes of VRAM it needs.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn vram_bytes(&self) -> u64 {
        (self.vram_gb * 1e9) as u64
    }

    /// `max_resolution` as (width, height), if set.
    pub fn max_size(&self) -> Option<(u64, u64)> {
        self.max_resolution.as_deref().and_then(parse_size)
    }
}

/// `"1024x768"` as (1024, 768).
pub fn parse_size(s: &str) -> Option<(u64, u64)> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

/// The catalog: every model, in config order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    models: Vec<ModelSpec>,
}

impl Catalog {
    /// Checks `models` (config key `models`) and makes the catalog.
    pub fn new(models: Vec<ModelSpec>) -> Result<Self, ConfigError> {
        validate(&models)?;
        Ok(Self { models })
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn all(&self) -> &[ModelSpec] {
        &self.models
    }

    pub fn get(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The first model that loads `file`.
    pub fn by_file(&self, file: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.file == file)
    }

    /// Every model name, comma-separated (for errors).
    pub fn names(&self) -> String {
        self.models
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The folders whose inventory backends are asked for.
    pub fn folders(&self) -> Vec<String> {
        let mut folders: Vec<String> = self.models.iter().map(|m| m.folder.clone()).collect();
        folders.sort();
        folders.dedup();
        folders
    }
}

/// Checks every entry, naming it (`models[2].vram_gb: ...`).
pub fn validate(models: &[ModelSpec]) -> Result<(), ConfigError> {
    for (i, m) in models.iter().enumerate() {
        let bad =
            |field: &str, message: String| ConfigError::Keyed(format!("models[{i}].{field}: {message}"));
        if m.name.trim().is_empty() || m.name == "auto" {
            return Err(bad("name", format!("{:?} cannot name a model", m.name)));
        }
        if models[..i].iter().any(|o| o.name == m.name) {
            return Err(bad("name", format!("`{}` is listed twice", m.name)));
        }
        if m.file.trim().is_empty() {
            return Err(bad("file", "must name the model file".into()));
        }
        if !(m.vram_gb.is_finite() && m.vram_gb >= 0.0) {
            return Err(bad("vram_gb", format!("{} is not a size in GB", m.vram_gb)));
        }
        if !(m.expected_seconds.is_finite() && m.expected_seconds > 0.0) {
            return Err(bad("expected_seconds", "must be above 0".into()));
        }
        if let Some(r) = &m.max_resolution
            && parse_size(r).is_none()
        {
            return Err(bad("max_resolution", format!("{r:?} is not \"WIDTHxHEIGHT\"")));
        }
    }
    Ok(())
}
