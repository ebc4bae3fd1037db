//! Learned timings: per model and backend, the run time and load time of recent
//! finished jobs, so routing and ETAs use what the GPU really does instead of the
//! catalog's `expected_seconds` once there are [`MIN_SAMPLES`] of them.
//!
//! Samples are kept in memory and written through to the key-value cache (the
//! embedded database, or Redis with several nodes), one key per model, so they
//! survive restarts and every node sharing the store learns from every other.
//! Writes re-read the key first; two nodes recording at once may lose one sample,
//! which a median does not notice.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, ModelSpec};
use crate::cache::KvCache;
use crate::sync::lock;

/// Samples before a learned figure replaces `expected_seconds`.
pub const MIN_SAMPLES: usize = 5;
/// Samples kept per model, backend and kind.
const KEEP: usize = 100;

/// Recent samples of one model on one backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Samples {
    #[serde(default)]
    run: VecDeque<f64>,
    #[serde(default)]
    load: VecDeque<f64>,
}

/// Per backend URL.
type ModelSamples = BTreeMap<String, Samples>;

/// What was learned about one model on one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimingStats {
    pub backend: String,
    pub runs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_p50_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_p95_seconds: Option<f64>,
    pub loads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_p50_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_p95_seconds: Option<f64>,
}

/// Which kind of sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Submit to done, minus the load.
    Run,
    /// Submit to the first sampler step after a model switch.
    Load,
}

/// The learned timings; cheap to clone.
#[derive(Clone, Default)]
pub struct Timings {
    kv: Option<KvCache>,
    by_model: Arc<Mutex<BTreeMap<String, ModelSamples>>>,
}

fn key(model: &str) -> String {
    format!("darkroom:model_timings:{model}")
}

fn loaded_key(backend: &str) -> String {
    format!("darkroom:model_loaded:{backend}")
}

impl std::fmt::Debug for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timings")
            .field("shared", &self.kv.is_some())
            .finish_non_exhaustive()
    }
}

/// Nearest-rank percentile of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

impl Timings {
    /// Timings kept in `kv` (none: in memory only, for tests).
    pub fn new(kv: Option<KvCache>) -> Self {
        Self {
            kv,
            by_model: Arc::default(),
        }
    }

    /// Reads what the store holds for every catalog model (at start, and to pick
    /// up other nodes' samples).
    pub async fn refresh(&self, catalog: &Catalog) {
        let Some(kv) = &self.kv else { return };
        for m in catalog.all() {
            match kv.get(&key(&m.name)).await {
                Ok(Some(raw)) => {
                    if let Ok(samples) = serde_json::from_slice::<ModelSamples>(&raw) {
                        lock(&self.by_model).insert(m.name.clone(), samples);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(model = %m.name, error = %e, "cannot read learned timings"),
            }
        }
    }

    /// Records one sample and writes it through.
    pub async fn record(&self, model: &str, backend: &str, kind: Kind, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let stored = match &self.kv {
            Some(kv) => kv
                .get(&key(model))
                .await
                .ok()
                .flatten()
                .and_then(|raw| serde_json::from_slice::<ModelSamples>(&raw).ok()),
            None => None,
        };
        let updated = {
            let mut all = lock(&self.by_model);
            let entry = all.entry(model.to_owned()).or_default();
            if let Some(stored) = stored {
                *entry = stored;
            }
            let samples = entry.entry(backend.to_owned()).or_default();
            let list = match kind {
                Kind::Run => &mut samples.run,
                Kind::Load => &mut samples.load,
            };
            list.push_back(seconds);
            while list.len() > KEEP {
                list.pop_front();
            }
            serde_json::to_vec(entry).unwrap_or_default()
        };
        if let Some(kv) = &self.kv
            && let Err(e) = kv.set(&key(model), &updated, None).await
        {
            tracing::warn!(model, error = %e, "cannot store learned timings");
        }
    }

    /// Tells other nodes that `backend` now has `file` loaded.
    pub async fn share_loaded(&self, backend: &str, file: &str) {
        if let Some(kv) = &self.kv
            && let Err(e) = kv.set(&loaded_key(backend), file.as_bytes(), None).await
        {
            tracing::debug!(backend, error = %e, "cannot share the loaded model");
        }
    }

    /// The model file some node last loaded on `backend`.
    pub async fn shared_loaded(&self, backend: &str) -> Option<String> {
        let raw = self.kv.as_ref()?.get(&loaded_key(backend)).await.ok()??;
        String::from_utf8(raw).ok()
    }

    /// Seconds one image of `model` takes: the median of its runs on every backend
    /// once there are [`MIN_SAMPLES`], else the catalog's estimate.
    pub fn run_seconds(&self, model: &ModelSpec) -> f64 {
        self.learned(&model.name, None, Kind::Run)
            .unwrap_or(model.expected_seconds)
    }

    /// The median load time of `model` on `backend` (any backend if none there),
    /// once learned.
    pub fn load_seconds(&self, model: &str, backend: &str) -> Option<f64> {
        self.learned(model, Some(backend), Kind::Load)
            .or_else(|| self.learned(model, None, Kind::Load))
    }

    fn learned(&self, model: &str, backend: Option<&str>, kind: Kind) -> Option<f64> {
        let all = lock(&self.by_model);
        let samples: Vec<f64> = all
            .get(model)?
            .iter()
            .filter(|(b, _)| backend.is_none_or(|want| want == b.as_str()))
            .flat_map(|(_, s)| match kind {
                Kind::Run => s.run.iter().copied(),
                Kind::Load => s.load.iter().copied(),
            })
            .collect();
        (samples.len() >= MIN_SAMPLES)
            .then(|| percentile(&samples, 0.5))
            .flatten()
    }

    /// Per backend, what was learned about `model`.
    pub fn stats(&self, model: &str) -> Vec<TimingStats> {
        let all = lock(&self.by_model);
        let Some(per_backend) = all.get(model) else {
            return Vec::new();
        };
        per_backend
            .iter()
            .map(|(backend, s)| {
                let (run, load): (Vec<f64>, Vec<f64>) =
                    (s.run.iter().copied().collect(), s.load.iter().copied().collect());
                TimingStats {
                    backend: backend.clone(),
                    runs: run.len(),
                    run_p50_seconds: percentile(&run, 0.5),
                    run_p95_seconds: percentile(&run, 0.95),
                    loads: load.len(),
                    load_p50_seconds: percentile(&load, 0.5),
                    load_p95_seconds: percentile(&load, 0.95),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turbo() -> ModelSpec {
        toml::from_str(
            r#"name = "turbo"
               file = "t.safetensors"
               vram_gb = 4
               quality = "fast"
               expected_seconds = 10"#,
        )
        .unwrap()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(10.0));
        assert_eq!(percentile(&v, 0.95), Some(19.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[tokio::test]
    async fn five_samples_replace_the_estimate() {
        let t = Timings::new(None);
        let m = turbo();
        for s in [2.0, 3.0, 4.0, 5.0] {
            t.record("turbo", "http://a", Kind::Run, s).await;
        }
        assert!(
            (t.run_seconds(&m) - 10.0).abs() < 1e-9,
            "4 samples are not enough"
        );
        t.record("turbo", "http://b", Kind::Run, 6.0).await;
        assert!((t.run_seconds(&m) - 4.0).abs() < 1e-9);
        let stats = t.stats("turbo");
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].runs, 4);
        assert_eq!(stats[0].run_p95_seconds, Some(5.0));
    }
}
