//! The model rules of the service layer: which catalog model a request gets
//! (at submit, so a bad name is a 400 and a model no backend has is a 409
//! `model_unavailable` then, not a failed job later), when each queued job is
//! expected to start and finish, and the catalog report behind `GET /api/v1/models`
//! and `darkroom models`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ulid::Ulid;

use super::ServiceError;
use crate::clock::Millis;
use crate::comfy::Templates;
use crate::dispatch::{Dispatcher, JobRequest, QUEUE, Routed, model_param};
use crate::models::{BackendView, Catalog, Estimates, ModelSpec, RouteAsk, RouteError, TimingStats, Timings};
use crate::queue::{Job, JobStatus, ListQuery, Queue};

/// Queued jobs a forecast looks at (the rest get no estimate).
const FORECAST_DEPTH: usize = 500;

impl From<RouteError> for ServiceError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::Invalid { field, message } => Self::invalid(field, message),
            RouteError::Unavailable(m) => Self::ModelUnavailable(m),
        }
    }
}

/// The catalog model `request` runs, if the catalog is in use and it has one.
pub async fn route(
    request: &JobRequest,
    templates: &Templates,
    queue: &Queue,
    dispatcher: &Dispatcher,
) -> Result<Option<Routed>, ServiceError> {
    let (catalog, config, timings) = dispatcher.models();
    let asked = request.model.is_some()
        || request.purpose.is_some()
        || request.urgency.is_some()
        || request.min_quality.is_some();
    if catalog.is_empty() {
        if asked {
            let field = if request.model.is_some() {
                "model"
            } else {
                "purpose"
            };
            return Err(ServiceError::invalid(
                field,
                "no model catalog is configured ([[models]] in config.toml); name the checkpoint in the template's parameters",
            ));
        }
        return Ok(None);
    }
    let backends = dispatcher.backend_views();
    let mut ask = RouteAsk {
        model: request.model.clone(),
        purpose: request.purpose.clone(),
        urgency: request.urgency.clone(),
        min_quality: request.min_quality.clone(),
    };
    match (&request.template, &request.workflow) {
        (Some(template), _) => {
            let Some(param) = model_param(templates, template) else {
                if asked {
                    return Err(ServiceError::invalid(
                        "model",
                        format!(
                            "template `{template}` has no model parameter (a parameter with type = \"model\")"
                        ),
                    ));
                }
                return Ok(None);
            };
            if let Some(given) = request.params.get(&param) {
                let name = given.as_str().and_then(|v| {
                    catalog
                        .get(v)
                        .or_else(|| catalog.by_file(v))
                        .map(|m| m.name.clone())
                });
                let Some(name) = name else {
                    return Err(ServiceError::invalid(
                        format!("params.{param}"),
                        format!("{given} is not a catalog model (catalog: {})", catalog.names()),
                    ));
                };
                if ask.model.as_ref().is_some_and(|m| *m != name) {
                    return Err(ServiceError::invalid(
                        "model",
                        format!("names another model than params.{param}; give one of them"),
                    ));
                }
                ask.model = Some(name);
            }
        }
        (None, Some(workflow)) => {
            if asked {
                return Err(ServiceError::invalid(
                    "model",
                    "model routing applies to templates; a workflow names its checkpoint itself",
                ));
            }
            let Some(model) = workflow_model(workflow, catalog) else {
                return Ok(None);
            };
            crate::models::routing::available(model, &backends)?;
            let choice = crate::models::ModelChoice::of(model, "workflow");
            return Ok(Some(Routed {
                spec: model.clone(),
                choice,
            }));
        }
        (None, None) => return Ok(None),
    }
    // Only an urgency compares expected finishes; the forecast reads the queue.
    let wait = if ask.urgency.is_some() {
        forecast(queue, dispatcher).await?.wait_seconds
    } else {
        0.0
    };
    let estimates = Forecasted { timings, wait };
    let choice = crate::models::choose(&ask, catalog, config, &backends, &estimates)?;
    dispatcher.count_decision(&choice.name, &choice.reason);
    let spec = catalog
        .get(&choice.name)
        .cloned()
        .ok_or_else(|| ServiceError::Internal(format!("routing chose unknown model {}", choice.name)))?;
    Ok(Some(Routed { spec, choice }))
}

/// The catalog model a raw workflow's checkpoint loader names, if any.
fn workflow_model<'a>(workflow: &Value, catalog: &'a Catalog) -> Option<&'a ModelSpec> {
    workflow.as_object()?.values().find_map(|node| {
        let inputs = node.get("inputs")?.as_object()?;
        ["ckpt_name", "unet_name"]
            .iter()
            .find_map(|k| inputs.get(*k)?.as_str())
            .and_then(|f| catalog.by_file(f))
    })
}

struct Forecasted<'a> {
    timings: &'a Timings,
    wait: f64,
}

impl Estimates for Forecasted<'_> {
    fn run_seconds(&self, model: &ModelSpec) -> f64 {
        self.timings.run_seconds(model)
    }
    fn wait_seconds(&self) -> f64 {
        self.wait
    }
}

/// When a job is expected to start and finish (learned timings, else the
/// catalog's estimates), computed when it is read; never stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Eta {
    /// While queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<Millis>,
    pub finish_ms: Millis,
}

/// Estimates for every running and queued job, and the wait a new job would have.
#[derive(Debug, Clone, Default)]
pub struct Forecast {
    pub etas: HashMap<Ulid, Eta>,
    pub wait_seconds: f64,
}

/// Plays the queue forward over the backends' slots: each queued job, in order,
/// takes the slot that frees first among backends that can hold its model, plus
/// the load time when that slot last ran another model.
pub async fn forecast(queue: &Queue, dispatcher: &Dispatcher) -> Result<Forecast, ServiceError> {
    let (catalog, _, timings) = dispatcher.models();
    if catalog.is_empty() {
        return Ok(Forecast::default());
    }
    let list = |status| {
        let mut q = ListQuery::new(status, FORECAST_DEPTH);
        q.queue = Some(QUEUE.into());
        queue.list(q)
    };
    let running = list(JobStatus::Running).await?.jobs;
    let queued = list(JobStatus::Queued).await?.jobs;
    let now = queue.now_ms();
    let views = dispatcher.backend_views();
    Ok(play(now, &views, &running, &queued, catalog, timings))
}

/// One slot of a backend in the forecast.
struct Lane {
    backend: usize,
    free_at: f64,
    loaded: Option<String>,
}

#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn play(
    now: Millis,
    views: &[BackendView],
    running: &[Job],
    queued: &[Job],
    catalog: &Catalog,
    timings: &Timings,
) -> Forecast {
    let model = |j: &Job| j.affinity.as_deref().and_then(|n| catalog.get(n));
    let run_ms = |m: Option<&ModelSpec>| m.map_or(0.0, |m| timings.run_seconds(m) * 1000.0);
    let mut out = Forecast::default();
    let mut lanes: Vec<Lane> = views
        .iter()
        .enumerate()
        .filter(|(_, b)| b.healthy)
        .flat_map(|(i, b)| {
            (0..b.max_in_flight.max(1)).map(move |_| Lane {
                backend: i,
                free_at: now as f64,
                loaded: b.loaded.clone(),
            })
        })
        .collect();
    for job in running {
        let started = job.started_ms.unwrap_or(now) as f64;
        let finish = (started + run_ms(model(job))).max(now as f64);
        out.etas.insert(
            job.id,
            Eta {
                start_ms: None,
                finish_ms: finish as Millis,
            },
        );
        let lane = job
            .backend
            .as_deref()
            .and_then(|url| views.iter().position(|b| b.url == url))
            .and_then(|bi| {
                lanes
                    .iter_mut()
                    .find(|l| l.backend == bi && l.free_at <= now as f64)
            });
        if let Some(lane) = lane {
            lane.free_at = finish;
        }
    }
    for job in queued {
        let m = model(job);
        let fits = |l: &&mut Lane| m.is_none_or(|m| views[l.backend].cannot_hold(m).is_none());
        let Some(lane) = lanes
            .iter_mut()
            .filter(fits)
            .min_by(|a, b| a.free_at.total_cmp(&b.free_at))
        else {
            continue;
        };
        let load = match m {
            Some(m) if lane.loaded.as_deref() != Some(m.file.as_str()) => {
                timings
                    .load_seconds(&m.name, &views[lane.backend].url)
                    .unwrap_or(0.0)
                    * 1000.0
            }
            _ => 0.0,
        };
        let start = lane.free_at;
        let finish = start + load + run_ms(m);
        lane.free_at = finish;
        if let Some(m) = m {
            lane.loaded = Some(m.file.clone());
        }
        out.etas.insert(
            job.id,
            Eta {
                start_ms: Some(start as Millis),
                finish_ms: finish as Millis,
            },
        );
    }
    out.wait_seconds = lanes
        .iter()
        .map(|l| (l.free_at - now as f64) / 1000.0)
        .fold(f64::INFINITY, f64::min);
    if !out.wait_seconds.is_finite() {
        out.wait_seconds = 0.0;
    }
    out
}

/// One catalog model in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The catalog entry.
    pub model: ModelSpec,
    /// Backends that have its file (as their last inventory said).
    pub available_on: Vec<String>,
    /// Backends where it is the model last run.
    pub loaded_on: Vec<String>,
    /// Seconds one image takes now: learned (5+ runs) or `expected_seconds`.
    pub run_seconds: f64,
    /// What was learned, per backend.
    pub timings: Vec<TimingStats>,
}

/// One backend in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelBackend {
    pub url: String,
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_model: Option<String>,
    pub swaps: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_total_bytes: Option<u64>,
    /// Model files per folder (catalog folders), once it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// `GET /api/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelsReport {
    pub models: Vec<ModelInfo>,
    pub backends: Vec<ModelBackend>,
    /// `affinity` or `least_loaded`.
    pub scheduler: String,
    pub max_affinity_wait_seconds: u64,
}

/// The catalog with where each model is and what was learned, read fresh from
/// the shared store (timings and the loaded-model view), so it includes what
/// other nodes ran.
pub async fn report(dispatcher: &Dispatcher) -> ModelsReport {
    let (catalog, config, timings) = dispatcher.models();
    timings.refresh(catalog).await;
    let mut views = dispatcher.backend_views();
    for v in &mut views {
        if let Some(file) = timings.shared_loaded(&v.url).await {
            v.loaded = Some(file);
        }
    }
    let statuses = dispatcher.backends();
    let models = catalog
        .all()
        .iter()
        .map(|m| ModelInfo {
            available_on: views
                .iter()
                .filter(|b| b.inventory.is_some() && b.cannot_hold(m).is_none())
                .map(|b| b.url.clone())
                .collect(),
            loaded_on: views
                .iter()
                .filter(|b| b.loaded.as_deref() == Some(m.file.as_str()))
                .map(|b| b.url.clone())
                .collect(),
            run_seconds: timings.run_seconds(m),
            timings: timings.stats(&m.name),
            model: m.clone(),
        })
        .collect();
    let backends = views
        .into_iter()
        .zip(&statuses)
        .map(|(v, s)| ModelBackend {
            url: v.url,
            healthy: v.healthy,
            loaded_model: v.loaded,
            swaps: s.swaps,
            vram_free_bytes: v.vram_free,
            vram_total_bytes: v.vram_total,
            inventory: v.inventory,
        })
        .collect();
    ModelsReport {
        models,
        backends,
        scheduler: config.scheduler.as_str().to_owned(),
        max_affinity_wait_seconds: config.max_affinity_wait_seconds,
    }
}
