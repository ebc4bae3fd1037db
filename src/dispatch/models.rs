//! The model side of one attempt: the routing record the job keeps, the swap
//! (`/free` first when the backend's free VRAM is below the new model's need),
//! and what the attempt teaches the learned timings.

use serde_json::{Value, json};

use super::Shared;
use super::backend::Backend;
use super::request::JobSpec;
use super::run::Facts;
use super::schedule::Placement;
use crate::models::{ModelChoice, TimingKind};
use crate::queue::{Claimed, Directive, StopReason};

/// What the job records about where it runs and why (`null` without a model or
/// placement: nothing to say beyond the backend).
fn routing_record(model: Option<&ModelChoice>, backend: &str, placement: Option<&Placement>) -> Value {
    if model.is_none() && placement.is_none() {
        return Value::Null;
    }
    json!({
        "model": model.map(|m| &m.name),
        "file": model.map(|m| &m.file),
        "reason": model.map(|m| &m.reason),
        "backend": backend,
        "placement": placement.map(|p| p.reason),
        "rejected": placement.map(|p| &p.rejected),
    })
}

/// Records where the job runs (and why: the jobs table, GET /jobs/{id}) and
/// makes room for its model there. `Ok(true)` when the model has to be loaded;
/// `Err` when the queue says stop.
pub(super) async fn place(
    shared: &Shared,
    claimed: &Claimed,
    backend: &Backend,
    spec: &JobSpec,
    placement: Option<&Placement>,
    facts: &mut Facts,
) -> Result<bool, StopReason> {
    let routing = routing_record(spec.model.as_ref(), &backend.url, placement);
    match shared
        .queue
        .placed_on(&claimed.lease, &backend.url, routing)
        .await
    {
        Ok(Directive::Stop(reason)) => return Err(reason),
        Ok(Directive::Continue { .. }) => {}
        Err(e) => tracing::warn!(job = %claimed.job.id, error = %e, "cannot record the job's backend"),
    }
    Ok(match &spec.model {
        Some(model) => prepare(shared, backend, model, facts).await,
        None => false,
    })
}

/// Makes room for `model` on `backend` before the submit: asks ComfyUI to unload
/// what it has when its free VRAM is below the model's need. Returns whether the
/// model has to be loaded (it was not the last one run there).
async fn prepare(shared: &Shared, backend: &Backend, model: &ModelChoice, facts: &mut Facts) -> bool {
    facts.model = Some(model.name.clone());
    if backend.loaded().as_deref() == Some(model.file.as_str()) {
        return false;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let need = (model.vram_gb * 1e9) as u64;
    if shared
        .pool
        .view(backend)
        .vram_free
        .is_some_and(|free| free < need)
    {
        match backend.client.free().await {
            Ok(()) => {
                tracing::info!(backend = %backend.url, model = %model.name, "asked ComfyUI to unload models first");
            }
            Err(e) => {
                tracing::warn!(backend = %backend.url, error = %e, "cannot ask ComfyUI to unload models");
            }
        }
    }
    facts.swapped = shared.pool.loaded(backend, &model.file).await;
    if facts.swapped {
        tracing::info!(backend = %backend.url, model = %model.name, "switching models");
    }
    true
}

/// Records a generated attempt's run and load times.
pub(super) async fn learn(shared: &Shared, backend: &str, facts: &Facts) {
    let Some(model) = &facts.model else { return };
    let timings = &shared.settings.timings;
    if let Some(run) = facts.run_seconds {
        timings.record(model, backend, TimingKind::Run, run).await;
    }
    if let Some(load) = facts.load_seconds {
        timings.record(model, backend, TimingKind::Load, load).await;
    }
}
