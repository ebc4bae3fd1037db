//! Choosing the model for a request (`[routing]`): a catalog name as asked, or with
//! `"auto"` the rules users wrote for their own router, in their order of
//! precedence — VRAM is a hard limit, then urgency, then purpose, then a minimum
//! quality, otherwise the best quality that fits — with the reason recorded.
//!
//! [`choose`] is a pure function of the request, the catalog, a view of the
//! backends ([`BackendView`]) and the timing estimates, so every rule is tested
//! without a server. Where a job then runs is the dispatcher's choice
//! (`dispatch::schedule`), from the same view.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, ModelSpec, Quality};
use crate::config::ConfigError;

/// How soon a request wants its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Done within 30 s.
    Immediate,
    /// Done within 2 min.
    Standard,
    /// Best quality, whenever.
    Flexible,
}

named_enum!(Urgency, "urgency", {
    Immediate => "immediate",
    Standard => "standard",
    Flexible => "flexible",
});

impl Urgency {
    /// The expected finish it asks for, in seconds.
    pub fn deadline_seconds(self) -> Option<f64> {
        match self {
            Self::Immediate => Some(30.0),
            Self::Standard => Some(120.0),
            Self::Flexible => None,
        }
    }
}

/// Which jobs the dispatcher starts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    /// Group jobs of one model on the backend that has it loaded, within
    /// `max_affinity_wait_seconds` of strict order.
    #[default]
    Affinity,
    /// Strict priority/FIFO order to the least loaded backend (kept for comparison).
    LeastLoaded,
}

named_enum!(Scheduler, "scheduler", {
    Affinity => "affinity",
    LeastLoaded => "least_loaded",
});

/// One row of the free-VRAM table: below this many GB free, use `model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VramRule {
    /// Upper bound (exclusive) of free VRAM in GB; the last row may omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_gb: Option<f64>,
    pub model: String,
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    pub scheduler: Scheduler,
    /// How much longer than strict priority/FIFO order a job may wait while jobs
    /// of a loaded model are grouped ahead of it.
    pub max_affinity_wait_seconds: u64,
    /// The model of a request that names none (default: `auto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// `immediate` / `standard` / `flexible` → model name.
    pub by_urgency: BTreeMap<String, String>,
    /// Purpose word → model name.
    pub by_purpose: BTreeMap<String, String>,
    /// Free VRAM → model name, rows in ascending `below_gb`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_vram: Vec<VramRule>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            scheduler: Scheduler::Affinity,
            max_affinity_wait_seconds: 120,
            default_model: None,
            by_urgency: BTreeMap::new(),
            by_purpose: BTreeMap::new(),
            by_vram: Vec::new(),
        }
    }
}

impl RoutingConfig {
    /// Every model the rules name must be in the catalog.
    pub fn validate(&self, catalog: &Catalog) -> Result<(), ConfigError> {
        let known = |key: String, name: &str| {
            if catalog.get(name).is_some() || (name == "auto" && key == "routing.default_model") {
                Ok(())
            } else {
                Err(ConfigError::Keyed(format!(
                    "{key}: unknown model `{name}` (catalog: {})",
                    catalog.names()
                )))
            }
        };
        if let Some(m) = &self.default_model {
            known("routing.default_model".into(), m)?;
        }
        for (urgency, m) in &self.by_urgency {
            urgency
                .parse::<Urgency>()
                .map_err(|e| ConfigError::Keyed(format!("routing.by_urgency.{urgency}: {e}")))?;
            known(format!("routing.by_urgency.{urgency}"), m)?;
        }
        for (purpose, m) in &self.by_purpose {
            known(format!("routing.by_purpose.{purpose}"), m)?;
        }
        for (i, rule) in self.by_vram.iter().enumerate() {
            known(format!("routing.by_vram[{i}].model"), &rule.model)?;
        }
        Ok(())
    }
}

/// What a request says about its model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteAsk {
    /// A catalog name or `auto`; `None` takes `routing.default_model`.
    pub model: Option<String>,
    pub purpose: Option<String>,
    pub urgency: Option<String>,
    pub min_quality: Option<String>,
}

/// One backend as routing sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendView {
    pub url: String,
    pub healthy: bool,
    /// Files per folder from GET /models/{folder}; `None` until it answered.
    pub inventory: Option<BTreeMap<String, Vec<String>>>,
    pub vram_total: Option<u64>,
    pub vram_free: Option<u64>,
    /// The file of the last model it ran.
    pub loaded: Option<String>,
    pub in_flight: usize,
    pub max_in_flight: usize,
}

impl BackendView {
    /// Why `model` can never run here (no file, too little VRAM in all), if so.
    pub fn cannot_hold(&self, model: &ModelSpec) -> Option<String> {
        if let Some(inv) = &self.inventory
            && !inv
                .get(&model.folder)
                .is_some_and(|files| files.contains(&model.file))
        {
            return Some(format!("has no {}/{}", model.folder, model.file));
        }
        match self.vram_total {
            Some(total) if total < model.vram_bytes() => Some(format!(
                "{:.1} GB VRAM in all, {} needs {} GB",
                gb(total),
                model.name,
                model.vram_gb
            )),
            _ => None,
        }
    }

    /// VRAM it could give a model now: free, plus what the loaded model uses (it
    /// is unloaded first). `None` when it reports no GPU.
    pub fn capacity(&self, catalog: &Catalog) -> Option<u64> {
        let free = self.vram_free?;
        let loaded = self
            .loaded
            .as_deref()
            .and_then(|f| catalog.by_file(f))
            .map_or(0, ModelSpec::vram_bytes);
        Some(self.vram_total.map_or(free + loaded, |t| (free + loaded).min(t)))
    }

    /// Whether `model` fits now: already loaded, or enough capacity.
    pub fn fits_now(&self, model: &ModelSpec, catalog: &Catalog) -> bool {
        self.loaded.as_deref() == Some(model.file.as_str())
            || self.capacity(catalog).is_none_or(|c| c >= model.vram_bytes())
    }
}

#[allow(clippy::cast_precision_loss)]
pub fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// What routing needs to know about time.
pub trait Estimates {
    /// Seconds one image of `model` takes (learned, else `expected_seconds`).
    fn run_seconds(&self, model: &ModelSpec) -> f64;
    /// Seconds a job queued now would wait before it starts.
    fn wait_seconds(&self) -> f64;
}

/// The model a request will run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelChoice {
    pub name: String,
    pub file: String,
    pub folder: String,
    pub vram_gb: f64,
    pub quality: Quality,
    /// `requested`, `default_model`, `urgency:immediate`, `purpose:hero_image`,
    /// `min_quality:high`, `vram:10GB`, `best_available_quality`, `workflow`.
    pub reason: String,
}

impl ModelChoice {
    pub fn of(model: &ModelSpec, reason: impl Into<String>) -> Self {
        Self {
            name: model.name.clone(),
            file: model.file.clone(),
            folder: model.folder.clone(),
            vram_gb: model.vram_gb,
            quality: model.quality,
            reason: reason.into(),
        }
    }
}

/// Why a request's model cannot be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The request is wrong (400); `field` names the part at fault.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// No backend has or can hold it (409 `model_unavailable`).
    #[error("{0}")]
    Unavailable(String),
}

/// The model `ask` gets, or why none.
pub fn choose(
    ask: &RouteAsk,
    catalog: &Catalog,
    config: &RoutingConfig,
    backends: &[BackendView],
    estimates: &dyn Estimates,
) -> Result<ModelChoice, RouteError> {
    let invalid = |field, message: String| RouteError::Invalid { field, message };
    let urgency = ask
        .urgency
        .as_deref()
        .map(str::parse::<Urgency>)
        .transpose()
        .map_err(|e| invalid("urgency", e.to_string()))?;
    let min_quality = ask
        .min_quality
        .as_deref()
        .map(str::parse::<Quality>)
        .transpose()
        .map_err(|e| invalid("min_quality", e.to_string()))?;
    let (name, defaulted) = match (&ask.model, &config.default_model) {
        (Some(m), _) => (m.as_str(), false),
        (None, Some(d)) => (d.as_str(), true),
        (None, None) => ("auto", true),
    };
    if name != "auto" {
        let model = catalog.get(name).ok_or_else(|| {
            invalid(
                "model",
                format!(
                    "unknown model `{name}` (catalog: {}, or \"auto\")",
                    catalog.names()
                ),
            )
        })?;
        available(model, backends)?;
        if let Some(min) = min_quality
            && model.quality < min
        {
            return Err(invalid(
                "min_quality",
                format!("`{name}` is {} quality, below {min}", model.quality),
            ));
        }
        let reason = if defaulted { "default_model" } else { "requested" };
        return Ok(ModelChoice::of(model, reason));
    }
    auto(ask, urgency, min_quality, catalog, config, backends, estimates)
}

/// Errs unless some backend may hold `model`, naming what each lacks.
pub fn available(model: &ModelSpec, backends: &[BackendView]) -> Result<(), RouteError> {
    if backends.is_empty() {
        return Ok(());
    }
    let why: Vec<String> = backends
        .iter()
        .map(|b| b.cannot_hold(model).map(|w| format!("{} {w}", b.url)))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if why.is_empty() {
        return Ok(());
    }
    Err(RouteError::Unavailable(format!(
        "model `{}` ({}/{}) is on no backend: {}",
        model.name,
        model.folder,
        model.file,
        why.join("; ")
    )))
}

fn auto(
    ask: &RouteAsk,
    urgency: Option<Urgency>,
    min_quality: Option<Quality>,
    catalog: &Catalog,
    config: &RoutingConfig,
    backends: &[BackendView],
    estimates: &dyn Estimates,
) -> Result<ModelChoice, RouteError> {
    // VRAM is a hard limit: models some backend can hold now, else ever.
    let holdable: Vec<&ModelSpec> = catalog
        .all()
        .iter()
        .filter(|m| available(m, backends).is_ok())
        .collect();
    let fit_now: Vec<&ModelSpec> = holdable
        .iter()
        .copied()
        .filter(|m| {
            backends.is_empty()
                || backends
                    .iter()
                    .any(|b| b.cannot_hold(m).is_none() && b.fits_now(m, catalog))
        })
        .collect();
    let mut candidates = if fit_now.is_empty() { holdable } else { fit_now };
    if let Some(min) = min_quality {
        candidates.retain(|m| m.quality >= min);
    }
    if candidates.is_empty() {
        let floor = min_quality.map_or(String::new(), |q| format!(" of {q} quality or better"));
        let looked: Vec<&str> = backends.iter().map(|b| b.url.as_str()).collect();
        return Err(RouteError::Unavailable(format!(
            "no catalog model{floor} is available (looked on: {})",
            looked.join(", ")
        )));
    }
    let pick = |name: &str| candidates.iter().copied().find(|m| m.name == name);
    let finish = |m: &ModelSpec| estimates.wait_seconds() + estimates.run_seconds(m);
    let best = |among: &mut dyn Iterator<Item = &ModelSpec>| -> Option<ModelSpec> {
        among
            .max_by(|a, b| {
                a.quality
                    .cmp(&b.quality)
                    .then(estimates.run_seconds(b).total_cmp(&estimates.run_seconds(a)))
            })
            .cloned()
    };
    if let Some(u) = urgency {
        let deadline = u.deadline_seconds();
        let in_time = |m: &ModelSpec| deadline.is_none_or(|d| finish(m) <= d);
        if let Some(m) = config.by_urgency.get(u.as_str()).and_then(|n| pick(n))
            && in_time(m)
        {
            return Ok(ModelChoice::of(m, format!("urgency:{u}")));
        }
        if let Some(m) = best(&mut candidates.iter().copied().filter(|m| in_time(m))) {
            return Ok(ModelChoice::of(&m, format!("urgency:{u}")));
        }
        let fastest = candidates
            .iter()
            .copied()
            .min_by(|a, b| finish(a).total_cmp(&finish(b)))
            .expect("candidates is not empty");
        return Ok(ModelChoice::of(fastest, format!("urgency:{u}:fastest")));
    }
    if let Some(p) = &ask.purpose {
        if let Some(m) = config.by_purpose.get(p).and_then(|n| pick(n)) {
            return Ok(ModelChoice::of(m, format!("purpose:{p}")));
        }
        if let Some(m) = best(&mut candidates.iter().copied().filter(|m| m.use_cases.contains(p))) {
            return Ok(ModelChoice::of(&m, format!("purpose:{p}")));
        }
    }
    if let Some(min) = min_quality {
        let m = best(&mut candidates.iter().copied()).expect("candidates is not empty");
        return Ok(ModelChoice::of(&m, format!("min_quality:{min}")));
    }
    if !config.by_vram.is_empty() {
        let free = backends.iter().filter_map(|b| b.capacity(catalog)).max().map(gb);
        if let Some(free) = free
            && let Some(rule) = config
                .by_vram
                .iter()
                .find(|r| r.below_gb.is_none_or(|below| free < below))
            && let Some(m) = pick(&rule.model)
        {
            return Ok(ModelChoice::of(m, format!("vram:{free:.0}GB")));
        }
    }
    let m = best(&mut candidates.iter().copied()).expect("candidates is not empty");
    Ok(ModelChoice::of(&m, "best_available_quality"))
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
