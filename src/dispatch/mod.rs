//! The dispatcher: takes jobs from the durable queue, runs them on ComfyUI servers
//! and finishes them with stored images and download URLs — the seeds' "webhook →
//! cache check → queue → worker → ComfyUI → MinIO → cache → return URL", in process.
//!
//! One claim loop leases as many jobs as healthy backends have free slots and
//! starts a task per job ([`run`]) on the backend the [`Pool`] picks (the healthy
//! one with the fewest in flight). A task checks the prompt cache first; otherwise
//! it submits, follows the prompt over the WebSocket (polling when it drops),
//! writes progress into the job, and on success stores every output under
//! `jobs/{job_id}/` in the output bucket through an [`OutputSink`]. A listener on
//! the queue's events wakes a task the moment its job is cancelled or timed out,
//! so the prompt is deleted from ComfyUI's queue or interrupted right away.
//!
//! On shutdown the loop stops claiming; running jobs get the grace period to
//! finish, then are interrupted on ComfyUI and released back to the queue (not
//! counted as an attempt) so they run again after the restart.
//!
//! Layout: `request` (what clients submit, checked and rendered), `backend` (the
//! servers, health, slot choice), `run` (one attempt), `outputs` (where images go),
//! `preview` (the last preview frame of each running job, in memory), `inputs`
//! (a job's input images uploaded to its backend and bound into the workflow).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use ulid::Ulid;

mod backend;
mod config;
pub mod fair;
mod inputs;
mod models;
mod outputs;
mod preview;
mod progress;
mod request;
mod run;
mod s3_sink;
mod schedule;
mod storage_config;

pub use backend::{Backend, BackendStatus, Pool, Slot};
pub use config::{BackendConfig, ComfyConfig, DispatchSettings};
pub use inputs::InputImage;
pub use outputs::{
    JobResult, OutputObject, OutputSink, SharedSink, SinkError, StoreSink, content_type_of, copied_key,
    job_of_key, metadata_key, output_key, outputs_of,
};
pub use preview::{LivePreview, Previews};
pub use request::{JobRequest, JobSpec, QUEUE, RequestError, Routed, model_param};
pub use s3_sink::S3Sink;
pub use schedule::{Placement, Rejected};
pub use storage_config::{ExternalS3, MIN_PART_SIZE, StorageBackend, StorageConfig};

use crate::cache::PromptCache;
use crate::comfy::ComfyError;
use crate::queue::{Job, JobStatus, Queue};
use crate::sync::lock;

/// How an attempt ended, as metrics, rates and alerts count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// ComfyUI generated the outputs.
    Generated,
    /// Served from the prompt cache; no GPU ran.
    CacheHit,
    /// Failed; `retried` when the job went back to the queue for another attempt.
    Failed { retried: bool },
}

impl AttemptEnd {
    /// Generated or served from the cache.
    pub fn succeeded(self) -> bool {
        !matches!(self, Self::Failed { .. })
    }

    pub fn cache_hit(self) -> bool {
        self == Self::CacheHit
    }

    /// A failure that put the job back in the queue.
    pub fn retried(self) -> bool {
        self == Self::Failed { retried: true }
    }
}

/// One finished attempt, for metrics and alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The catalog model it ran, else the checkpoint the workflow loads, or `none`.
    pub model: String,
    /// The backend it ran on.
    pub backend: String,
    /// The backend switched to this model from another one.
    pub swapped: bool,
    /// Seconds from submit to the first sampler step, when the model was loaded.
    pub load_seconds: Option<f64>,
    pub end: AttemptEnd,
    /// From claim to the recorded outcome.
    pub seconds: f64,
    /// How long the job waited before its first attempt (first attempts only).
    pub queue_wait_seconds: Option<f64>,
    /// When the attempt ended.
    pub at_ms: crate::clock::Millis,
}

/// Called for every finished attempt.
pub type GenerationObserver = Arc<dyn Fn(&Generation) + Send + Sync>;

/// What the claim loop and the job tasks share.
pub(crate) struct Shared {
    queue: Queue,
    cache: Option<PromptCache>,
    sink: SharedSink,
    pool: Arc<Pool>,
    settings: DispatchSettings,
    /// Wakes the task running a job when its job changes under it.
    signals: Mutex<HashMap<Ulid, Arc<Notify>>>,
    /// Where each job's last attempt failed, so its retry goes elsewhere if it can.
    failed_on: Mutex<HashMap<Ulid, String>>,
    /// Cancelled when the grace period after shutdown is over.
    abandon: CancellationToken,
    observer: Option<GenerationObserver>,
    /// The last preview frame of each job running here.
    previews: Previews,
    /// When each queued job was first passed over for another of a loaded model.
    passed: Mutex<HashMap<Ulid, crate::clock::Millis>>,
    /// Routing decisions made at submit on this node, by (model, reason).
    decisions: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// Who goes next among users with work waiting.
    fair: fair::FairShare,
    /// The input images each backend already has.
    uploaded: inputs::Uploaded,
}

impl Shared {
    fn watch(&self, id: Ulid) -> Arc<Notify> {
        let signal = Arc::new(Notify::new());
        {
            let mut s = lock(&self.signals);
            s.insert(id, signal.clone());
        }
        signal
    }

    fn forget(&self, id: Ulid) {
        {
            let mut s = lock(&self.signals);
            s.remove(&id);
        }
        self.previews.forget(id);
    }

    fn signal(&self, id: Option<Ulid>) {
        let s = lock(&self.signals);
        match id {
            Some(id) => {
                if let Some(n) = s.get(&id) {
                    n.notify_one();
                }
            }
            None => s.values().for_each(|n| n.notify_one()),
        }
    }

    /// Remembers (`Some`) or forgets (`None`) the backend a job last failed on.
    fn set_failed_on(&self, id: Ulid, backend: Option<&str>) {
        {
            let mut m = lock(&self.failed_on);
            match backend {
                Some(b) => m.insert(id, b.to_owned()),
                None => m.remove(&id),
            };
        }
    }

    fn failed_on(&self, id: Ulid) -> Option<String> {
        lock(&self.failed_on).get(&id).cloned()
    }

    fn observe(&self, job: &Job, end: AttemptEnd, seconds: f64, backend: &str, facts: &run::Facts) {
        if let Some(observer) = &self.observer {
            #[allow(clippy::cast_precision_loss)]
            let queue_wait_seconds = (job.attempts == 1)
                .then_some(job.started_ms)
                .flatten()
                .map(|started| (started - job.created_ms).max(0) as f64 / 1000.0);
            observer(&Generation {
                model: facts.model.clone().unwrap_or_else(|| model_of(&job.payload)),
                backend: backend.to_owned(),
                swapped: facts.swapped,
                load_seconds: facts.load_seconds,
                end,
                seconds,
                queue_wait_seconds,
                at_ms: self.queue.now_ms(),
            });
        }
    }
}

/// The checkpoint a job's workflow loads: the `checkpoint` parameter, else the
/// first `ckpt_name` input, else `none`.
fn model_of(payload: &serde_json::Value) -> String {
    if let Some(c) = payload["params"]["checkpoint"].as_str() {
        return c.to_owned();
    }
    payload["workflow"]
        .as_object()
        .and_then(|nodes| nodes.values().find_map(|n| n["inputs"]["ckpt_name"].as_str()))
        .unwrap_or("none")
        .to_owned()
}

/// A handle on the running dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// Starts health checks, the event listener and the claim loop. The returned
    /// task ends after `shutdown` once every running job finished or was released.
    pub fn start(
        settings: DispatchSettings,
        queue: Queue,
        cache: Option<PromptCache>,
        sink: SharedSink,
        observer: Option<GenerationObserver>,
        shutdown: CancellationToken,
    ) -> Result<(Self, JoinHandle<()>), ComfyError> {
        let pool = Pool::with_models(
            &settings.backends,
            settings.request_timeout,
            &settings.trust,
            settings.catalog.folders(),
            settings.timings.clone(),
        )?;
        let checks = CancellationToken::new();
        pool.spawn_health_checks(settings.health_interval, &checks);
        let shared = Arc::new(Shared {
            queue,
            cache,
            sink,
            pool,
            settings,
            signals: Mutex::new(HashMap::new()),
            failed_on: Mutex::new(HashMap::new()),
            abandon: CancellationToken::new(),
            observer,
            previews: Previews::default(),
            passed: Mutex::new(HashMap::new()),
            decisions: Mutex::default(),
            fair: fair::FairShare::new(Arc::new(fair::Equal)),
            uploaded: inputs::Uploaded::default(),
        });
        let listener = tokio::spawn(listen(shared.clone(), checks.clone()));
        let main = tokio::spawn(claim_loop(shared.clone(), shutdown, checks, listener));
        Ok((Self { shared }, main))
    }

    /// Where fair share learns each owner's share and `max_running` (default:
    /// everyone equal, unlimited).
    pub fn set_owner_policy(&self, policy: Arc<dyn fair::OwnerPolicy>) {
        self.shared.fair.set_policy(policy);
    }

    /// Jobs of `owner` running on this node.
    pub fn running_of(&self, owner: &str) -> u64 {
        self.shared.fair.running(owner)
    }

    /// Every backend's state.
    pub fn backends(&self) -> Vec<BackendStatus> {
        self.shared.pool.backends().iter().map(|b| b.status()).collect()
    }

    /// Where outputs are stored and whether it answers.
    pub async fn output_store(&self) -> crate::stores::StoreHealth {
        self.shared.sink.health(&self.shared.settings.output_bucket).await
    }

    /// Stores `bytes` as `bucket/key` where outputs go (input images at submit).
    pub async fn store_object(
        &self,
        bucket: &str,
        key: &str,
        bytes: bytes::Bytes,
        content_type: &str,
    ) -> Result<u64, SinkError> {
        self.shared.sink.put(bucket, key, bytes, content_type).await
    }

    /// Whether `bucket/key` exists where outputs go.
    pub async fn has_object(&self, bucket: &str, key: &str) -> Result<bool, SinkError> {
        self.shared.sink.exists(bucket, key).await
    }

    /// The bytes of a stored output (`bucket/key` of a job's result).
    pub async fn read_output(&self, bucket: &str, key: &str) -> Result<bytes::Bytes, SinkError> {
        self.shared.sink.get(bucket, key).await
    }

    /// The CAs the backends' clients trust over https and wss (`tls.ca_file`).
    pub fn trust(&self) -> &crate::tls::Trust {
        &self.shared.settings.trust
    }

    pub fn output_bucket(&self) -> &str {
        &self.shared.settings.output_bucket
    }

    /// The model catalog, the routing rules and the learned timings.
    pub fn models(
        &self,
    ) -> (
        &crate::models::Catalog,
        &crate::models::RoutingConfig,
        &crate::models::Timings,
    ) {
        let s = &self.shared.settings;
        (&s.catalog, &s.routing, &s.timings)
    }

    /// Every backend as routing sees it.
    pub fn backend_views(&self) -> Vec<crate::models::BackendView> {
        self.shared.pool.views()
    }

    /// Reads each backend's VRAM through `source` (NVML for local backends) instead
    /// of its `/system_stats` where that knows it.
    pub fn read_vram_from(&self, source: backend::VramSource) {
        self.shared.pool.read_vram_from(source);
    }

    /// Counts one routing decision (`darkroom_routing_decisions_total`).
    pub fn count_decision(&self, model: &str, reason: &str) {
        *lock(&self.shared.decisions)
            .entry((model.to_owned(), reason.to_owned()))
            .or_default() += 1;
    }

    /// Routing decisions so far, by (model, reason).
    pub fn decisions(&self) -> Vec<((String, String), u64)> {
        lock(&self.shared.decisions)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The last preview frame ComfyUI sent for `job`, while it runs on this node.
    pub fn preview(&self, job: Ulid) -> Option<LivePreview> {
        self.shared.previews.get(job)
    }
}

/// Wakes job tasks when the queue changes their job: a cancel request, or the
/// attempt ended by the reaper (timeout, lost lease).
async fn listen(shared: Arc<Shared>, stop: CancellationToken) {
    let mut events = shared.queue.subscribe();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Ok(e)
                if e.cancel_requested
                    || (e.from == Some(JobStatus::Running) && e.to != JobStatus::Running) =>
            {
                shared.signal(Some(e.id));
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => shared.signal(None),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn claim_loop(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    checks: CancellationToken,
    listener: JoinHandle<()>,
) {
    let tasks = TaskTracker::new();
    if shared.settings.catalog.is_empty() {
        claim_in_order(&shared, &shutdown, &tasks).await;
    } else {
        claim_by_model(&shared, &shutdown, &tasks).await;
    }
    tasks.close();
    if !tasks.is_empty() {
        tracing::info!(running = tasks.len(), grace = ?shared.settings.grace, "waiting for running jobs");
        if tokio::time::timeout(shared.settings.grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = tasks.len(),
                "grace period over: interrupting and releasing running jobs"
            );
            shared.abandon.cancel();
            tasks.wait().await;
        }
    }
    checks.cancel();
    let _ = listener.await;
}

/// Without a model catalog: the best jobs in priority order, owners taking turns
/// ([`fair`]), each to the least loaded healthy backend.
async fn claim_in_order(shared: &Arc<Shared>, shutdown: &CancellationToken, tasks: &TaskTracker) {
    let worker = shared.settings.worker.clone();
    while !shutdown.is_cancelled() {
        let free = shared.pool.free_slots();
        if free == 0 {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = shared.pool.changed() => continue,
            }
        }
        let ready = shared.queue.ready_notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let fair = shared.clone();
        let picker: crate::queue::Picker<()> = Arc::new(move |candidates: &[crate::queue::Candidate]| {
            let now = fair.queue.now_ms();
            let order = fair.fair.order(candidates, now);
            order.into_iter().take(free).map(|i| (i, ())).collect()
        });
        let claimed = match shared.queue.claim_picked(QUEUE, &worker, free, picker).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim jobs");
                if pause(shutdown).await {
                    continue;
                }
                break;
            }
        };
        if claimed.is_empty() {
            if idle(shared, shutdown, ready).await {
                continue;
            }
            break;
        }
        for (job, ()) in claimed {
            let avoid = shared.failed_on(job.job.id);
            let Some(slot) = shared.pool.reserve(avoid.as_deref()) else {
                // A backend went down between counting slots and claiming.
                if let Err(e) = shared.queue.release(&job.lease).await {
                    tracing::warn!(job = %job.job.id, error = %e, "cannot release a job");
                }
                continue;
            };
            start(shared, tasks, job, slot, None);
        }
    }
}

/// After a failed claim: a second's pause. False once shut down.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}

/// Nothing a free backend can take: waits for a new job, a freed slot or a
/// health change, and at most a second (delayed jobs come due, passed-over jobs
/// reach their limit). False once shut down.
async fn idle(
    shared: &Shared,
    shutdown: &CancellationToken,
    ready: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = ready => true,
        () = shared.pool.changed() => true,
        () = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}

/// Runs `job` on `slot` as a task, charging its owner's fair share.
fn start(
    shared: &Arc<Shared>,
    tasks: &TaskTracker,
    job: crate::queue::Claimed,
    slot: Slot,
    placement: Option<Placement>,
) {
    let signal = shared.watch(job.job.id);
    let owner = job.job.owner.clone();
    let began = shared.queue.now_ms();
    let charged = shared.fair.started(owner.as_deref(), began);
    let shared = shared.clone();
    tasks.spawn(async move {
        run::run(shared.clone(), job, slot, placement, signal).await;
        let now = shared.queue.now_ms();
        shared.fair.ended(owner.as_deref(), charged, now - began, now);
    });
}

/// Ready jobs the scheduler looks at in one claim (at least).
const WINDOW: usize = 64;

/// With a model catalog: [`schedule::plan`] chooses among the first ready jobs
/// which to start and where; a job no free backend can take waits.
async fn claim_by_model(shared: &Arc<Shared>, shutdown: &CancellationToken, tasks: &TaskTracker) {
    let worker = shared.settings.worker.clone();
    while !shutdown.is_cancelled() {
        let free = shared.pool.free_slots();
        if free == 0 {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = shared.pool.changed() => continue,
            }
        }
        let ready = shared.queue.ready_notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let picker = picker(shared, shared.pool.views());
        let claimed = match shared
            .queue
            .claim_picked(QUEUE, &worker, WINDOW.max(free * 4), picker.clone())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim jobs");
                if pause(shutdown).await {
                    continue;
                }
                break;
            }
        };
        if claimed.is_empty() {
            if idle(shared, shutdown, ready).await {
                continue;
            }
            break;
        }
        for (job, placement) in claimed {
            lock(&shared.passed).remove(&job.job.id);
            let Some(slot) = shared.pool.reserve_on(placement.backend) else {
                if let Err(e) = shared.queue.release(&job.lease).await {
                    tracing::warn!(job = %job.job.id, error = %e, "cannot release a job");
                }
                continue;
            };
            start(shared, tasks, job, slot, Some(placement));
        }
    }
}

/// The claim's picker: plans with this moment's backends, and remembers which
/// jobs the plan passed over (the last plan wins when a claim reruns).
fn picker(shared: &Arc<Shared>, views: Vec<crate::models::BackendView>) -> crate::queue::Picker<Placement> {
    let shared = shared.clone();
    Arc::new(move |all: &[crate::queue::Candidate]| {
        let now = shared.queue.now_ms();
        // The plan sees the jobs in fair-share order; its picks are mapped back.
        let order = shared.fair.order(all, now);
        let candidates: Vec<crate::queue::Candidate> = order.iter().map(|&i| all[i].clone()).collect();
        let candidates = candidates.as_slice();
        let passed = lock(&shared.passed).clone();
        let failed_on = lock(&shared.failed_on).clone();
        let settings = &shared.settings;
        let plan = schedule::plan(
            candidates,
            &schedule::Inputs {
                catalog: &settings.catalog,
                scheduler: settings.routing.scheduler,
                backends: &views,
                now_ms: now,
                max_wait_ms: i64::try_from(settings.routing.max_affinity_wait_seconds)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000),
                passed: &passed,
                failed_on: &failed_on,
            },
        );
        {
            let mut p = lock(&shared.passed);
            p.retain(|id, _| candidates.iter().any(|c| c.id == *id));
            for id in plan.passed_over {
                p.entry(id).or_insert(now);
            }
        }
        plan.picks.into_iter().map(|(i, tag)| (order[i], tag)).collect()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn model_comes_from_the_checkpoint() {
        assert_eq!(
            model_of(&json!({"params": {"checkpoint": "sdxl.safetensors"}})),
            "sdxl.safetensors"
        );
        let wf = json!({"workflow": {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.ckpt"}}}});
        assert_eq!(model_of(&wf), "a.ckpt");
        assert_eq!(model_of(&json!({"workflow": {}})), "none");
    }
}
