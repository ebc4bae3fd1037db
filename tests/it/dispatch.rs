//! The dispatcher end to end: the real daemon with one or more fake ComfyUI servers
//! (real HTTP + WebSocket on port 0), jobs through the durable queue, outputs into
//! the object store, presigned URLs fetched over plain HTTP. Tests wait on the
//! queue's events and the fake's counters, never on time.

use std::sync::Arc;

use darkroom::clock::ManualClock;
use darkroom::config::Config;
use darkroom::dispatch::BackendConfig;
use darkroom::dispatch::{JobRequest, JobResult};
use darkroom::queue::{FailureKind, Job, JobStatus, Queue};
use serde_json::{Value, json};
use ulid::Ulid;

use crate::fake_comfy::{FakeComfy, PNG};
use crate::support::{TestServer, server_with, server_with_clock};

/// A daemon dispatching to `backends` (fast polling and retries for tests).
pub async fn daemon(backends: &[&FakeComfy], tweak: impl FnOnce(&mut Config)) -> TestServer {
    let urls: Vec<String> = backends.iter().map(|b| b.url.clone()).collect();
    server_with(|c| {
        configure(c, &urls);
        tweak(c);
    })
    .await
}

pub fn configure(c: &mut Config, urls: &[String]) {
    c.comfyui.backends = urls.iter().map(BackendConfig::new).collect();
    c.comfyui.health_interval_ms = 20;
    c.comfyui.poll_interval_ms = 20;
    c.queue.backoff_base_seconds = 0;
    c.queue.reaper_interval_ms = 10;
}

fn noop(params: Value) -> JobRequest {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    JobRequest::template("noop", params)
}

async fn submit(server: &TestServer, request: JobRequest) -> Ulid {
    let templates = darkroom::comfy::Templates::embedded().unwrap();
    let job = request.into_new_job(&templates).unwrap();
    server.daemon.queue().enqueue(job).await.unwrap().job.id
}

/// Waits until job `id` satisfies `done`, watching the queue's events.
pub async fn wait_job(queue: &Queue, id: Ulid, done: impl Fn(&Job) -> bool) -> Job {
    let mut events = queue.subscribe();
    let wait = async {
        loop {
            let job = queue.get(id).await.unwrap().unwrap();
            if done(&job) {
                return job;
            }
            let _ = events.recv().await;
        }
    };
    crate::support::bounded(&format!("job {id}"), wait).await
}

pub async fn finished(queue: &Queue, id: Ulid) -> Job {
    wait_job(queue, id, |j| j.status.is_terminal()).await
}

fn result(job: &Job) -> JobResult {
    assert_eq!(job.status, JobStatus::Succeeded, "job: {job:#?}");
    serde_json::from_value(job.result.clone().unwrap()).unwrap()
}

async fn download(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn noop_template_runs_end_to_end_to_a_downloadable_url() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let id = submit(&server, noop(json!({"width": 64, "height": 64}))).await;
    let job = finished(server.daemon.queue(), id).await;
    let r = result(&job);
    assert!(!r.cache_hit);
    assert_eq!(r.backend.as_deref(), Some(comfy.url.as_str()));
    assert_eq!(r.outputs.len(), 1);
    let out = &r.outputs[0];
    assert_eq!(out.bucket, "comfyui-outputs");
    assert_eq!(out.key, format!("jobs/{id}/1-noop_00001_.png"));
    assert_eq!(out.content_type, "image/png");
    assert_eq!(out.size, PNG.len() as u64);
    let (status, ct, bytes) = download(out.url.as_deref().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("image/png"));
    assert_eq!(bytes, PNG);

    // The seeds' metadata layout, readable with any S3 client.
    let meta_key = r.metadata_key.unwrap();
    assert_eq!(meta_key, format!("jobs/{id}/metadata.json"));
    let got = server
        .client
        .get_object()
        .bucket("comfyui-outputs")
        .key(&meta_key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/json"));
    let meta: Value = serde_json::from_slice(&crate::support::body_bytes(got).await).unwrap();
    assert_eq!(meta["job_id"], json!(id.to_string()));
    assert_eq!(meta["template"], json!("noop"));
    assert_eq!(meta["params"]["width"], json!(64));
    assert_eq!(meta["prompt_id"], json!(r.prompt_id.unwrap()));
    assert_eq!(meta["outputs"][0]["key"], json!(out.key));
    assert_eq!(meta["workflow"]["3"]["inputs"]["width"], json!(64));
    assert_eq!(server.daemon.dispatcher().backends()[0].completed, 1);
}

#[tokio::test]
async fn identical_request_is_served_from_the_prompt_cache() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let q = server.daemon.queue();
    let first = result(&finished(q, submit(&server, noop(json!({"color": 7}))).await).await);
    let second_id = submit(&server, noop(json!({"color": 7}))).await;
    let second = result(&finished(q, second_id).await);
    assert_eq!(
        comfy.ctl.prompts_received(),
        1,
        "the second job must not reach ComfyUI"
    );
    assert!(second.cache_hit);
    // The hit's outputs are its own, under its own id, with the original's names.
    assert_ne!(second.outputs[0].key, first.outputs[0].key);
    assert_eq!(
        second.outputs[0].key,
        format!("jobs/{second_id}/1-noop_00001_.png")
    );
    let (status, _, bytes) = download(second.outputs[0].url.as_deref().unwrap()).await;
    assert_eq!((status, bytes.as_slice()), (200, PNG));

    // `cache: false` runs it again; a different parameter is a different entry.
    let mut fresh = noop(json!({"color": 7}));
    fresh.cache = Some(false);
    assert!(!result(&finished(q, submit(&server, fresh).await).await).cache_hit);
    assert!(!result(&finished(q, submit(&server, noop(json!({"color": 8}))).await).await).cache_hit);
    assert_eq!(comfy.ctl.prompts_received(), 3);
}

async fn get_bytes(server: &TestServer, key: &str) -> Vec<u8> {
    let got = server
        .client
        .get_object()
        .bucket("comfyui-outputs")
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"));
    crate::support::body_bytes(got).await
}

async fn delete(server: &TestServer, keys: &[&str]) {
    for key in keys {
        server
            .client
            .delete_object()
            .bucket("comfyui-outputs")
            .key(*key)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_cache_hit_gets_its_own_objects_sharing_the_originals_bytes() {
    let comfy = FakeComfy::start().await;
    // Every object in a blob file (none inline), so sharing is visible on disk.
    let server = daemon(&[&comfy], |c| c.s3.inline_max_bytes = 0).await;
    let blobs = || crate::support::blob_files(&server.dir.path().join("data"));
    let q = server.daemon.queue();
    let a = submit(&server, noop(json!({"color": 11}))).await;
    let first = result(&finished(q, a).await);
    assert_eq!(blobs(), 2, "the image and metadata.json");
    let b = submit(&server, noop(json!({"color": 11}))).await;
    let hit = result(&finished(q, b).await);
    assert!(hit.cache_hit);
    assert_eq!(comfy.ctl.prompts_received(), 1);

    // Its own objects under its own id, same names, same bytes; fresh URLs to them.
    assert_eq!(hit.outputs.len(), first.outputs.len());
    let (orig, own) = (&first.outputs[0], &hit.outputs[0]);
    assert_eq!(own.key, format!("jobs/{b}/1-noop_00001_.png"));
    assert_eq!(orig.key, format!("jobs/{a}/1-noop_00001_.png"));
    assert_eq!((own.size, own.content_type.as_str()), (orig.size, "image/png"));
    assert_eq!(get_bytes(&server, &own.key).await, PNG);
    let url = own.url.as_deref().unwrap();
    assert!(url.contains(&format!("/jobs/{b}/")), "{url}");
    assert_eq!(download(url).await.2, PNG);

    // Its own metadata.json, naming the job it was served from.
    let meta_key = hit.metadata_key.clone().unwrap();
    assert_eq!(meta_key, format!("jobs/{b}/metadata.json"));
    let meta: Value = serde_json::from_slice(&get_bytes(&server, &meta_key).await).unwrap();
    assert_eq!(meta["job_id"], json!(b.to_string()));
    assert_eq!(meta["cache_hit"], json!(true));
    assert_eq!(meta["served_from"], json!(a.to_string()));
    assert_eq!(meta["template"], json!("noop"));
    assert_eq!(meta["params"]["color"], json!(11));
    assert!(meta["workflow"].is_object(), "{meta}");
    assert_eq!(meta["outputs"][0]["key"], json!(own.key));

    // The image's bytes are shared, not copied: one more metadata file only.
    assert_eq!(blobs(), 3);
    // Deleting the original's objects leaves the hit's readable...
    let orig_meta = first.metadata_key.clone().unwrap();
    delete(&server, &[&orig.key, &orig_meta]).await;
    assert_eq!(get_bytes(&server, &own.key).await, PNG);
    assert_eq!(blobs(), 2, "the shared image stays");
    // ...and the image's file goes with the last object using it.
    delete(&server, &[&own.key, &meta_key]).await;
    assert_eq!(blobs(), 0);
}

#[tokio::test]
async fn deleting_a_hits_objects_leaves_the_originals() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |c| c.s3.inline_max_bytes = 0).await;
    let q = server.daemon.queue();
    let a = submit(&server, noop(json!({"color": 12}))).await;
    let first = result(&finished(q, a).await);
    let b = submit(&server, noop(json!({"color": 12}))).await;
    let hit = result(&finished(q, b).await);
    assert!(hit.cache_hit);
    let own_meta = hit.metadata_key.clone().unwrap();
    delete(&server, &[&hit.outputs[0].key, &own_meta]).await;
    assert_eq!(get_bytes(&server, &first.outputs[0].key).await, PNG);
    // The entry still serves: a third request is a hit too.
    let c = submit(&server, noop(json!({"color": 12}))).await;
    let third = result(&finished(q, c).await);
    assert!(third.cache_hit);
    assert_eq!(get_bytes(&server, &third.outputs[0].key).await, PNG);
    assert_eq!(comfy.ctl.prompts_received(), 1);
}

#[tokio::test]
async fn a_running_job_names_its_backend_and_a_finished_one_is_at_full_progress() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let server = daemon(&[&comfy], |_| {}).await;
    let q = server.daemon.queue();
    let id = submit(&server, noop(json!({"color": 13}))).await;
    tokio::time::timeout(std::time::Duration::from_secs(30), comfy.ctl.wait_held())
        .await
        .expect("the prompt reaches the fake ComfyUI");
    let api = crate::api_support::Api::new(server.daemon.api_addr(), None).await;
    let running = api.get(&format!("/api/v1/jobs/{id}")).await.json();
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["backend"], json!(comfy.url), "{running}");
    comfy.ctl.hold(false);
    comfy.ctl.release();
    let job = tokio::time::timeout(std::time::Duration::from_secs(30), finished(q, id))
        .await
        .expect("the job finishes");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.backend.as_deref(), Some(comfy.url.as_str()));
    let progress = job.progress.expect("a finished job has progress");
    assert!((progress.fraction - 1.0).abs() < f32::EPSILON, "{progress:?}");
}

#[tokio::test]
async fn stale_cache_entry_whose_outputs_were_deleted_runs_again() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let q = server.daemon.queue();
    let first = result(&finished(q, submit(&server, noop(json!({"color": 9}))).await).await);
    server
        .client
        .delete_object()
        .bucket("comfyui-outputs")
        .key(&first.outputs[0].key)
        .send()
        .await
        .unwrap();
    let second = result(&finished(q, submit(&server, noop(json!({"color": 9}))).await).await);
    assert!(!second.cache_hit);
    assert_eq!(comfy.ctl.prompts_received(), 2);
}

#[tokio::test]
async fn validation_error_fails_at_once_naming_node_and_input() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let mut workflow: Value = serde_json::from_str(include_str!("../../assets/workflows/noop.json")).unwrap();
    workflow["3"]["inputs"]["width"] = json!(0);
    let request = JobRequest {
        workflow: Some(workflow),
        max_attempts: Some(3),
        ..JobRequest::default()
    };
    let job = finished(server.daemon.queue(), submit(&server, request).await).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 1, "a rejected workflow is not retried");
    let message = &job.errors[0].message;
    assert!(
        message.contains("node 3") && message.contains("ImageScale"),
        "{message}"
    );
    assert!(
        message.contains("width") && message.contains("smaller than min"),
        "{message}"
    );
    assert_eq!(comfy.ctl.prompts_received(), 1);
}

#[tokio::test]
async fn execution_error_keeps_exception_type_and_message() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.fail_next(
        "torch.OutOfMemoryError",
        "CUDA out of memory. Tried to allocate 2.00 GiB",
    );
    let server = daemon(&[&comfy], |_| {}).await;
    let mut request = noop(json!({}));
    request.max_attempts = Some(1);
    let job = finished(server.daemon.queue(), submit(&server, request).await).await;
    assert_eq!(job.status, JobStatus::Failed);
    let message = &job.errors[0].message;
    assert!(message.contains("torch.OutOfMemoryError"), "{message}");
    assert!(message.contains("CUDA out of memory"), "{message}");
    assert!(message.contains("ImageInvert"), "names the node class: {message}");
    assert_eq!(server.daemon.dispatcher().backends()[0].failed, 1);
}

#[tokio::test]
async fn execution_error_is_retried_while_attempts_remain() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.fail_next("RuntimeError", "transient");
    let server = daemon(&[&comfy], |_| {}).await;
    let job = finished(server.daemon.queue(), submit(&server, noop(json!({}))).await).await;
    let r = result(&job);
    assert_eq!(job.attempts, 2);
    assert!(job.errors[0].message.contains("RuntimeError: transient"));
    assert_eq!(r.outputs.len(), 1);
}

#[tokio::test]
async fn websocket_drop_mid_job_is_recovered_by_polling() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.drop_ws_next();
    let server = daemon(&[&comfy], |_| {}).await;
    let job = finished(server.daemon.queue(), submit(&server, noop(json!({}))).await).await;
    let r = result(&job);
    assert_eq!(job.attempts, 1);
    assert_eq!(r.outputs.len(), 1);
}

#[tokio::test]
async fn backend_restart_mid_job_is_retried_on_another_backend() {
    let (a, b) = (FakeComfy::start().await, FakeComfy::start().await);
    a.ctl.hold(true);
    b.ctl.hold(true);
    let server = daemon(&[&a, &b], |_| {}).await;
    let id = submit(&server, noop(json!({}))).await;
    let (first, second) = tokio::select! {
        _ = a.ctl.wait_held() => (&a, &b),
        _ = b.ctl.wait_held() => (&b, &a),
    };
    first.ctl.restart();
    second.ctl.wait_held().await;
    second.ctl.release();
    let job = finished(server.daemon.queue(), id).await;
    let r = result(&job);
    assert_eq!(r.backend.as_deref(), Some(second.url.as_str()));
    assert_eq!(job.attempts, 2);
    assert!(
        job.errors[0].message.contains("forgot prompt"),
        "{:?}",
        job.errors
    );
}

#[tokio::test]
async fn unreachable_backend_gets_no_work() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let live = FakeComfy::start().await;
    let urls = vec![dead_url.clone(), live.url.clone()];
    let server = server_with(|c| configure(c, &urls)).await;
    let q = server.daemon.queue();
    let mut ids = Vec::new();
    for color in 0..4 {
        ids.push(submit(&server, noop(json!({ "color": color }))).await);
    }
    for id in ids {
        let r = result(&finished(q, id).await);
        assert_eq!(r.backend.as_deref(), Some(live.url.as_str()));
    }
    let status = server.daemon.dispatcher().backends();
    assert!(!status[0].healthy);
    assert!(
        status[0].last_error.as_deref().unwrap().contains("unreachable"),
        "{status:?}"
    );
    assert!(status[1].healthy);
    assert_eq!(status[1].completed, 4);
}

#[tokio::test]
async fn two_backends_share_the_load() {
    let (a, b) = (FakeComfy::start().await, FakeComfy::start().await);
    a.ctl.hold(true);
    b.ctl.hold(true);
    let server = daemon(&[&a, &b], |_| {}).await;
    let one = submit(&server, noop(json!({"color": 1}))).await;
    let two = submit(&server, noop(json!({"color": 2}))).await;
    // Both are held at once: each backend took one.
    a.ctl.wait_held().await;
    b.ctl.wait_held().await;
    a.ctl.release();
    b.ctl.release();
    let q = server.daemon.queue();
    let mut used = vec![
        result(&finished(q, one).await).backend.unwrap(),
        result(&finished(q, two).await).backend.unwrap(),
    ];
    used.sort();
    let mut want = vec![a.url.clone(), b.url.clone()];
    want.sort();
    assert_eq!(used, want);
}

#[tokio::test]
async fn cancel_queued_pending_and_running_jobs() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let server = daemon(&[&comfy], |c| c.comfyui.backends[0].max_in_flight = 2).await;
    let q = server.daemon.queue();
    let a = submit(&server, noop(json!({"color": 1}))).await;
    let b = submit(&server, noop(json!({"color": 2}))).await;
    let held = comfy.ctl.wait_held().await;
    for id in [a, b] {
        wait_job(q, id, |j| j.status == JobStatus::Running).await;
    }
    // Progress from the held prompt reaches the job record.
    // (Only the held one: the other waits in ComfyUI's queue and reports nothing.)
    let progressed = |j: &Job| j.progress.is_some();
    let running = tokio::select! {
        j = wait_job(q, a, progressed) => j,
        j = wait_job(q, b, progressed) => j,
    };
    let with_progress = running.progress.unwrap();
    assert!(with_progress.fraction > 0.0);
    assert!(with_progress.message.unwrap().contains("ImageInvert"));

    // A third job waits in darkroom's queue (both slots busy): cancelled at once.
    let c = submit(&server, noop(json!({"color": 3}))).await;
    let job = q.cancel(c).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Cancelled, 0));

    // The two sent to ComfyUI: one runs (held), one waits in ComfyUI's queue.
    // The waiting one first (cancelling the running one first would let ComfyUI
    // start the other, which then has to be interrupted too).
    let pending = if running.id == a { b } else { a };
    q.cancel(pending).await.unwrap();
    assert_eq!(finished(q, pending).await.status, JobStatus::Cancelled);
    comfy.ctl.wait_stops(1).await;
    q.cancel(running.id).await.unwrap();
    assert_eq!(finished(q, running.id).await.status, JobStatus::Cancelled);
    comfy.ctl.wait_stops(2).await;
    assert_eq!(comfy.ctl.interrupts(), vec![Some(held.clone())]);
    let deletes = comfy.ctl.deletes();
    assert_eq!(deletes.len(), 1);
    assert_ne!(deletes[0], held);
    assert_eq!(comfy.ctl.prompts_received(), 2);
}

#[tokio::test]
async fn timeout_interrupts_the_prompt_and_fails_the_attempt() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let clock = ManualClock::new(1_700_000_000_000);
    let url = comfy.url.clone();
    let server = server_with_clock(|c| configure(c, &[url]), clock.clone()).await;
    let mut request = noop(json!({}));
    request.timeout_seconds = Some(30);
    request.max_attempts = Some(1);
    let id = submit(&server, request).await;
    let held = comfy.ctl.wait_held().await;
    clock.advance_ms(31_000);
    let job = finished(server.daemon.queue(), id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.errors[0].kind, FailureKind::TimedOut);
    comfy.ctl.wait_stops(1).await;
    assert_eq!(comfy.ctl.interrupts(), vec![Some(held)]);
}

#[tokio::test]
async fn shutdown_releases_running_jobs_to_run_again() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let server = daemon(&[&comfy], |c| c.shutdown_grace_seconds = 0).await;
    let id = submit(&server, noop(json!({}))).await;
    let held = comfy.ctl.wait_held().await;
    let data = server.dir.path().join("data");
    let TestServer { daemon, dir, .. } = server;
    daemon.shutdown().await;
    assert_eq!(comfy.ctl.interrupts(), vec![Some(held)]);
    let queue = Queue::open(
        &data.join("queue.redb"),
        Arc::new(ManualClock::new(0)),
        darkroom::queue::QueueConfig::default(),
    )
    .unwrap();
    let job = queue.get(id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0));
    assert!(job.errors.is_empty());
    drop(dir);
}

#[tokio::test]
async fn payload_that_is_not_a_comfy_job_fails_without_retry() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let q = server.daemon.queue();
    let job = darkroom::queue::NewJob::new(darkroom::dispatch::QUEUE, json!({"nope": 1}));
    let id = q.enqueue(job).await.unwrap().job.id;
    let job = finished(q, id).await;
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 1));
    assert!(job.errors[0].message.contains("not a darkroom ComfyUI job"));
}
