//! One attempt of one job, from the claim to the queue's record of how it ended:
//! prompt-cache lookup (a hit gets its own copies of the cached outputs), the
//! reserved backend recorded on the job, submit to it, follow it (progress into
//! the job, heartbeats, cancel and timeout), store the outputs and metadata, fill
//! the cache. Every way it can end is an [`Outcome`], reported to the queue in one
//! place ([`report`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, watch};

use super::backend::{Backend, Slot};
use super::outputs::{
    JobResult, OutputObject, content_type_of, copied_key, job_of_key, metadata_key, output_key,
};
use super::progress::ProgressTracker;
use super::request::JobSpec;
use super::schedule::Placement;
use super::{AttemptEnd, Shared};
use crate::cache::{CacheKey, PromptCache};
use crate::comfy::{
    BinaryImage, ComfyError, ComfyEvent, Completion, ImageFormat, ImageType, OutputImage, PromptFailure,
    PromptState, wait_for_completion,
};
use crate::queue::{Claimed, Directive, Job, QueueError, StopReason};

/// How often progress is written to the job at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How an attempt ended.
#[derive(Debug)]
enum Outcome {
    Done(JobResult),
    /// Failed; retried while attempts remain.
    Retry(String),
    /// Failed in a way retrying cannot fix (ComfyUI refused the workflow).
    Fatal(String),
    /// The queue said stop (cancel, timeout, lost lease).
    Stopped(StopReason),
    /// The daemon is shutting down and the grace period is over.
    Abandoned,
}

/// Runs one claimed job on the backend of `slot` (placed there by the scheduler
/// for `placement`'s reason, with a model catalog) and records the outcome.
pub(super) async fn run(
    shared: Arc<Shared>,
    claimed: Claimed,
    slot: Slot,
    placement: Option<Placement>,
    signal: Arc<Notify>,
) {
    let id = claimed.job.id;
    let backend = slot.backend.clone();
    let started = tokio::time::Instant::now();
    let mut facts = Facts::default();
    let outcome = attempt(&shared, &claimed, &slot, placement.as_ref(), &signal, &mut facts).await;
    drop(slot);
    shared.forget(id);
    let seconds = started.elapsed().as_secs_f64();
    report(&shared, &claimed, &backend, outcome, seconds, &facts).await;
}

/// What an attempt learned about its model, for timings and metrics.
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// The catalog model it ran.
    pub model: Option<String>,
    /// The backend had another model loaded.
    pub swapped: bool,
    /// Submit to the first sampler step, when the model had to be loaded.
    pub load_seconds: Option<f64>,
    /// Submit to done, less the load.
    pub run_seconds: Option<f64>,
}

async fn attempt(
    shared: &Shared,
    claimed: &Claimed,
    slot: &Slot,
    placement: Option<&Placement>,
    signal: &Notify,
    facts: &mut Facts,
) -> Outcome {
    let job = &claimed.job;
    let spec: JobSpec = match serde_json::from_value(job.payload.clone()) {
        Ok(s) => s,
        Err(e) => return Outcome::Fatal(format!("the job's payload is not a darkroom ComfyUI job: {e}")),
    };
    let cache_key = spec.cache.then(|| CacheKey::of(&spec.workflow, &[]));
    if let (Some(cache), Some(key)) = (&shared.cache, &cache_key)
        && let Some(result) = from_cache(shared, cache, key, job, &spec).await
    {
        return Outcome::Done(result);
    }
    let backend = &slot.backend;
    let loading = match super::models::place(shared, claimed, backend, &spec, placement, facts).await {
        Ok(loading) => loading,
        Err(reason) => return Outcome::Stopped(reason),
    };
    let client_id = format!("darkroom-{}-{}", job.id, claimed.lease.attempt);
    // Listen first: ComfyUI does not keep messages for a client with no socket.
    let events = match backend.client.connect_events(&client_id).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(backend = %backend.url, error = %e, "no WebSocket before submit; polling");
            None
        }
    };
    let submitted_ms = shared.queue.now_ms();
    let submitted = tokio::time::Instant::now();
    let first_step = Arc::new(std::sync::OnceLock::new());
    let workflow = match super::inputs::bind(shared, backend, &spec).await {
        Ok(w) => w,
        Err(super::inputs::BindError::Comfy(e)) => return backend_failure(slot, &e),
        Err(super::inputs::BindError::Store(m)) => return Outcome::Retry(m),
    };
    let prompt_id = match backend.client.submit(&workflow, &client_id).await {
        Ok(s) => s.prompt_id,
        Err(e @ ComfyError::Validation { .. }) => return Outcome::Fatal(e.to_string()),
        Err(e) => return backend_failure(slot, &e),
    };
    tracing::debug!(job = %job.id, backend = %backend.url, %prompt_id, "submitted to ComfyUI");
    let prompt = Prompt {
        client_id: &client_id,
        prompt_id: &prompt_id,
        events,
    };
    let completion = match follow(shared, claimed, backend, &spec, prompt, signal, &first_step).await {
        Ok(c) => c,
        Err(FollowEnd::Outcome(o)) => return o,
        Err(FollowEnd::Comfy(e)) => return backend_failure(slot, &e),
    };
    match completion.state {
        PromptState::Done(images) => {
            let took = submitted.elapsed().as_secs_f64();
            let load = loading
                .then(|| {
                    first_step
                        .get()
                        .map(|at| at.duration_since(submitted).as_secs_f64())
                })
                .flatten();
            facts.load_seconds = load;
            facts.run_seconds = Some((took - load.unwrap_or(0.0)).max(0.0));
            let run = Finished {
                job,
                spec: &spec,
                backend,
                prompt_id: &prompt_id,
                client_id: &client_id,
                submitted_ms,
            };
            match store_outputs(shared, &run, &images, &completion.ws_images).await {
                Ok(result) => {
                    if let (Some(cache), Some(key)) = (&shared.cache, &cache_key)
                        && let Err(e) = cache.put(key, result.to_cached()).await
                    {
                        tracing::warn!(job = %job.id, error = %e, "cannot fill the prompt cache");
                    }
                    Outcome::Done(result)
                }
                Err(message) => Outcome::Retry(message),
            }
        }
        PromptState::Failed(PromptFailure::Error(e)) => Outcome::Retry(format!(
            "ComfyUI execution error at node {} ({}): {}: {}",
            e.node_id,
            e.node_type,
            e.exception_type,
            e.exception_message.trim_end()
        )),
        PromptState::Failed(failure) => Outcome::Retry(format!("ComfyUI prompt {prompt_id} {failure}")),
        PromptState::Unknown => Outcome::Retry(format!(
            "ComfyUI at {} forgot prompt {prompt_id} (it restarted or its queue was cleared)",
            backend.url
        )),
        PromptState::Queued | PromptState::Running => {
            Outcome::Retry(format!("ComfyUI prompt {prompt_id} did not finish"))
        }
    }
}

/// A prompt submitted to ComfyUI, with the socket opened for it.
struct Prompt<'a> {
    client_id: &'a str,
    prompt_id: &'a str,
    events: Option<crate::comfy::EventStream>,
}

/// Why following a prompt ended without a completion.
enum FollowEnd {
    Outcome(Outcome),
    Comfy(ComfyError),
}

/// Follows a submitted prompt to its end, writing progress and heartbeats into the
/// job; stops it on ComfyUI when the queue says stop or shutdown abandons it.
async fn follow(
    shared: &Shared,
    claimed: &Claimed,
    backend: &Backend,
    spec: &JobSpec,
    prompt: Prompt<'_>,
    signal: &Notify,
    first_step: &Arc<std::sync::OnceLock<tokio::time::Instant>>,
) -> Result<Completion, FollowEnd> {
    let Prompt {
        client_id,
        prompt_id,
        events,
    } = prompt;
    let (progress_tx, mut progress_rx) = watch::channel((0.0f32, None::<String>));
    let mut tracker = ProgressTracker::new(&spec.workflow, prompt_id);
    let (previews, job_id) = (shared.previews.clone(), claimed.job.id);
    let first_step = first_step.clone();
    let follow = wait_for_completion(
        &backend.client,
        client_id,
        prompt_id,
        shared.settings.poll_interval,
        events,
        move |event| {
            if let ComfyEvent::Binary(image) = event {
                previews.record(job_id, image);
            }
            if matches!(event, ComfyEvent::Progress { .. }) {
                let _ = first_step.set(tokio::time::Instant::now());
            }
            if let Some(p) = tracker.on_event(event) {
                progress_tx.send_replace(p);
            }
        },
    );
    tokio::pin!(follow);
    let heartbeat_every = (shared.queue.config().lease / 3).max(Duration::from_millis(100));
    let mut beat = tokio::time::interval(heartbeat_every);
    beat.reset();
    let mut progress_tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        let directive = tokio::select! {
            done = &mut follow => return done.map_err(FollowEnd::Comfy),
            () = shared.abandon.cancelled() => {
                stop_on_comfy(backend, prompt_id).await;
                return Err(FollowEnd::Outcome(Outcome::Abandoned));
            }
            () = signal.notified() => shared.queue.heartbeat(&claimed.lease).await,
            _ = beat.tick() => shared.queue.heartbeat(&claimed.lease).await,
            _ = progress_tick.tick() => {
                if !progress_rx.has_changed().unwrap_or(false) {
                    continue;
                }
                let (fraction, message) = progress_rx.borrow_and_update().clone();
                shared.queue.progress(&claimed.lease, fraction, message).await
            }
        };
        match directive {
            Ok(Directive::Continue { .. }) => beat.reset(),
            Ok(Directive::Stop(reason)) => {
                stop_on_comfy(backend, prompt_id).await;
                return Err(FollowEnd::Outcome(Outcome::Stopped(reason)));
            }
            Err(e) => tracing::warn!(job = %claimed.job.id, error = %e, "heartbeat failed"),
        }
    }
}

/// A transport failure: an unreachable backend leaves the rotation, and the job is
/// retried (on any healthy backend).
fn backend_failure(slot: &Slot, e: &ComfyError) -> Outcome {
    if e.is_unreachable() {
        slot.pool().mark_down(&slot.backend, e);
    }
    Outcome::Retry(e.to_string())
}

/// A cached result whose objects still exist, served as this job's own: each
/// object copied under `jobs/{id}/` with its `{n}-{filename}` name (by reference
/// on the embedded store, server-side on S3), a `metadata.json` naming the job it
/// was served from, fresh URLs. `None` (run the job) when the entry is missing or
/// stale, or the copies cannot be made.
async fn from_cache(
    shared: &Shared,
    cache: &PromptCache,
    key: &CacheKey,
    job: &Job,
    spec: &JobSpec,
) -> Option<JobResult> {
    let hit = match cache.get(key).await {
        Ok(hit) => hit?,
        Err(e) => {
            tracing::warn!(error = %e, "prompt cache lookup failed; running the job");
            return None;
        }
    };
    for o in &hit.objects {
        if !shared.sink.exists(&o.bucket, &o.key).await.unwrap_or(false) {
            // The outputs were deleted (lifecycle, by hand): the entry is stale.
            let _ = cache.remove(key).await;
            return None;
        }
    }
    let bucket = shared.settings.output_bucket.as_str();
    let id = job.id.to_string();
    let served_from = hit
        .objects
        .iter()
        .find_map(|o| job_of_key(&o.key))
        .map(str::to_owned);
    let mut outputs = Vec::with_capacity(hit.objects.len());
    for o in hit.objects {
        let dst = copied_key(&id, &o.key);
        // A retried job may find its own outputs in the cache: they are in place.
        let in_place = o.bucket == bucket && o.key == dst;
        if !in_place && let Err(e) = shared.sink.copy(&o.bucket, &o.key, bucket, &dst).await {
            tracing::warn!(job = %id, error = %e, "cannot copy a cached output; running the job");
            return None;
        }
        outputs.push(OutputObject {
            bucket: bucket.to_owned(),
            key: dst,
            size: o.size,
            content_type: o.content_type,
            url: None,
        });
    }
    let finished_ms = shared.queue.now_ms();
    let metadata = json!({
        "job_id": id,
        "cache_hit": true,
        "served_from": served_from,
        "template": spec.template,
        "template_version": spec.template_version,
        "params": spec.params,
        "inputs": spec.inputs,
        "workflow": spec.workflow,
        "attempt": job.attempts,
        "timings": {
            "created_ms": job.created_ms,
            "started_ms": job.started_ms,
            "finished_ms": finished_ms,
        },
        "outputs": outputs,
    });
    let meta_key = match store_metadata(shared, &id, &metadata).await {
        Ok(k) => k,
        Err(message) => {
            tracing::warn!(job = %id, error = %message, "cache hit; running the job");
            return None;
        }
    };
    let mut result = JobResult {
        outputs,
        cache_hit: true,
        backend: None,
        prompt_id: None,
        metadata_key: Some(meta_key),
        generation_ms: None,
        urls_expire_ms: None,
    };
    result
        .presign(shared.sink.as_ref(), shared.settings.url_expiry, finished_ms)
        .await;
    Some(result)
}

/// Stores job `id`'s `metadata.json` in the output bucket; returns its key.
async fn store_metadata(shared: &Shared, id: &str, metadata: &serde_json::Value) -> Result<String, String> {
    let bucket = shared.settings.output_bucket.as_str();
    let key = metadata_key(id);
    let body = serde_json::to_vec_pretty(metadata).unwrap_or_default();
    shared
        .sink
        .put(bucket, &key, body.into(), "application/json")
        .await
        .map_err(|e| format!("cannot store {bucket}/{key}: {e}"))?;
    Ok(key)
}

/// Cancels a prompt on ComfyUI: removed from its queue while pending, interrupted
/// once running.
async fn stop_on_comfy(backend: &Backend, prompt_id: &str) {
    let pending = backend
        .client
        .queue()
        .await
        .is_ok_and(|q| q.is_pending(prompt_id));
    let done = if pending {
        backend.client.delete_from_queue(&[prompt_id.to_owned()]).await
    } else {
        backend.client.interrupt(prompt_id).await
    };
    if let Err(e) = done {
        tracing::warn!(backend = %backend.url, prompt_id, error = %e, "cannot stop the prompt on ComfyUI");
    }
}

/// What is known about a prompt that ended well.
struct Finished<'a> {
    job: &'a Job,
    spec: &'a JobSpec,
    backend: &'a Backend,
    prompt_id: &'a str,
    client_id: &'a str,
    submitted_ms: i64,
}

/// Downloads the prompt's output images, stores them and the job's metadata, and
/// builds the result with presigned URLs.
async fn store_outputs(
    shared: &Shared,
    run: &Finished<'_>,
    images: &[OutputImage],
    ws_images: &[BinaryImage],
) -> Result<JobResult, String> {
    let bucket = shared.settings.output_bucket.as_str();
    let id = run.job.id.to_string();
    let mut outputs = Vec::new();
    let mut store = async |filename: &str, bytes: bytes::Bytes, content_type: &str| {
        let key = output_key(&id, outputs.len() + 1, filename);
        let size = shared
            .sink
            .put(bucket, &key, bytes, content_type)
            .await
            .map_err(|e| format!("cannot store output {bucket}/{key}: {e}"))?;
        outputs.push(OutputObject {
            bucket: bucket.to_owned(),
            key,
            size,
            content_type: content_type.to_owned(),
            url: None,
        });
        Ok::<_, String>(())
    };
    for image in images
        .iter()
        .map(|i| &i.image)
        .filter(|i| i.kind == ImageType::Output)
    {
        let bytes = run
            .backend
            .client
            .view(&image.filename, &image.subfolder, image.kind)
            .await
            .map_err(|e| format!("cannot download output {}: {e}", image.filename))?;
        store(&image.filename, bytes, content_type_of(&image.filename)).await?;
    }
    let ws_outputs = ws_images.iter().filter(|i| is_ws_output(&run.spec.workflow, i));
    for (n, image) in ws_outputs.enumerate() {
        let (ext, content_type) = match image.format {
            Some(ImageFormat::Jpeg) => ("jpg", "image/jpeg"),
            _ => ("png", "image/png"),
        };
        store(
            &format!("websocket_{}.{ext}", n + 1),
            image.bytes.clone(),
            content_type,
        )
        .await?;
    }
    let finished_ms = shared.queue.now_ms();
    let metadata = json!({
        "job_id": id,
        "cache_hit": false,
        "template": run.spec.template,
        "template_version": run.spec.template_version,
        "params": run.spec.params,
        "inputs": run.spec.inputs,
        "workflow": run.spec.workflow,
        "backend": run.backend.url,
        "prompt_id": run.prompt_id,
        "client_id": run.client_id,
        "attempt": run.job.attempts,
        "timings": {
            "created_ms": run.job.created_ms,
            "started_ms": run.job.started_ms,
            "submitted_ms": run.submitted_ms,
            "finished_ms": finished_ms,
        },
        "outputs": outputs,
    });
    let meta_key = store_metadata(shared, &id, &metadata).await?;
    let mut result = JobResult {
        outputs,
        cache_hit: false,
        backend: Some(run.backend.url.clone()),
        prompt_id: Some(run.prompt_id.to_owned()),
        metadata_key: Some(meta_key),
        generation_ms: Some(finished_ms.saturating_sub(run.submitted_ms)),
        urls_expire_ms: None,
    };
    result
        .presign(shared.sink.as_ref(), shared.settings.url_expiry, finished_ms)
        .await;
    Ok(result)
}

/// Whether a binary frame is an output of the workflow rather than a step
/// preview: sent by a node whose class sends images over the WebSocket
/// (`SaveImageWebsocket`, custom nodes named alike), or by an unknown node.
/// A sampler's previews (sent while the sampler runs) are shown live, never stored.
fn is_ws_output(workflow: &serde_json::Value, image: &BinaryImage) -> bool {
    let Some(node) = &image.node else { return true };
    workflow[node.as_str()]["class_type"]
        .as_str()
        .is_none_or(|class| class.to_ascii_lowercase().contains("websocket"))
}

/// Runs `record` until the queue takes it, trying again while the queue's store
/// does not answer (Redis restarting) for as long as the lease would last: the
/// generation is done and its outputs stored, so a blip must not throw it away and
/// run the job again.
async fn persist<T, F, Fut>(shared: &Shared, id: ulid::Ulid, record: F) -> Result<T, QueueError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, QueueError>>,
{
    let give_up = tokio::time::Instant::now() + shared.queue.config().lease;
    let mut wait = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match record().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + wait < give_up => {
                if !warned {
                    tracing::warn!(job = %id, error = %e, "cannot record the job's outcome yet; trying again");
                    warned = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Tells the queue how the attempt ended.
async fn report(
    shared: &Shared,
    claimed: &Claimed,
    backend: &Backend,
    outcome: Outcome,
    seconds: f64,
    facts: &Facts,
) {
    let lease = &claimed.lease;
    let id = claimed.job.id;
    let queue = &shared.queue;
    let retried = matches!(outcome, Outcome::Retry(_));
    let recorded = match outcome {
        Outcome::Done(result) => {
            if !result.cache_hit {
                backend.record(true);
            }
            let end = if result.cache_hit {
                AttemptEnd::CacheHit
            } else {
                AttemptEnd::Generated
            };
            if !result.cache_hit {
                super::models::learn(shared, &backend.url, facts).await;
            }
            shared.observe(&claimed.job, end, seconds, &backend.url, facts);
            persist(shared, id, || queue.complete(lease, result.to_value()))
                .await
                .map(drop)
        }
        Outcome::Retry(message) => {
            tracing::warn!(job = %id, backend = %backend.url, error = %message, "job attempt failed");
            backend.record(false);
            let job = persist(shared, id, || queue.fail(lease, message.clone())).await;
            let again = job.as_ref().is_ok_and(|j| !j.status.is_terminal());
            shared.observe(
                &claimed.job,
                AttemptEnd::Failed { retried: again },
                seconds,
                &backend.url,
                facts,
            );
            shared.set_failed_on(id, again.then_some(backend.url.as_str()));
            job.map(drop)
        }
        Outcome::Fatal(message) => {
            tracing::warn!(job = %id, error = %message, "job failed");
            shared.observe(
                &claimed.job,
                AttemptEnd::Failed { retried: false },
                seconds,
                &backend.url,
                facts,
            );
            persist(shared, id, || queue.fail_permanently(lease, message.clone()))
                .await
                .map(drop)
        }
        Outcome::Stopped(StopReason::Cancelled) => {
            persist(shared, id, || queue.fail(lease, "cancelled while running"))
                .await
                .map(drop)
        }
        Outcome::Stopped(reason) => {
            tracing::info!(job = %id, ?reason, "job stopped");
            Ok(())
        }
        // Shutting down: not worth waiting for; the lease lapses if this fails.
        Outcome::Abandoned => queue.release(lease).await.map(drop),
    };
    if !retried {
        shared.set_failed_on(id, None);
    }
    if let Err(e) = recorded {
        tracing::warn!(job = %id, error = %e, "cannot record the job's outcome");
    }
}
