//! End-to-end dispatch throughput, as issue 4 asks: jobs/s through queue ->
//! dispatch -> ComfyUI -> store of the 4 KiB output PNG -> complete, with 1 and 4
//! backends, against the fake ComfyUI of the tests (a real HTTP + WebSocket server
//! answering at once). Beside it, the same fakes driven by a bare client loop
//! (submit, follow the WebSocket, download the image, nothing stored or recorded):
//! the ceiling the fakes allow, so the ratio is darkroom's own overhead.
//!
//! Run with `cargo bench --bench dispatch` (`DISPATCH_BENCH_JOBS`, default 2000).
//! Everything listens on 127.0.0.1 and lives in a temp dir; every run is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::field_reassign_with_default,
    dead_code
)]

#[path = "../tests/it/fake_comfy.rs"]
mod fake_comfy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use darkroom::comfy::{ComfyClient, Templates, wait_for_completion};
use darkroom::config::Config;
use darkroom::daemon::Daemon;
use darkroom::dispatch::BackendConfig;
use darkroom::dispatch::JobRequest;
use darkroom::queue::JobStatus;
use fake_comfy::FakeComfy;
use serde_json::{Map, Value, json};

/// No single measurement may run longer than this.
const TIME_LIMIT: Duration = Duration::from_mins(2);

fn noop(color: usize) -> JobRequest {
    let Value::Object(params) = json!({ "color": color }) else {
        unreachable!()
    };
    let mut r = JobRequest::template("noop", params);
    r.cache = Some(false);
    r
}

/// darkroom end to end: enqueue `jobs`, wait until every one has succeeded.
async fn darkroom(backends: usize, jobs: usize) -> f64 {
    let fakes: Vec<FakeComfy> = futures::future::join_all((0..backends).map(|_| FakeComfy::start())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.data_dir = dir.path().join("data");
    c.s3.addr = "127.0.0.1:0".parse().unwrap();
    c.api.addr = "127.0.0.1:0".parse().unwrap();
    c.s3.access_key = "bench".into();
    c.s3.secret_key = "bench-secret".into();
    c.comfyui.backends = fakes.iter().map(|f| BackendConfig::new(&f.url)).collect();
    let daemon = Daemon::start(&c, darkroom::clock::system()).await.unwrap();
    let queue = daemon.queue().clone();
    let templates = Templates::embedded().unwrap();
    let mut events = queue.subscribe();
    let start = Instant::now();
    for i in 0..jobs {
        queue
            .enqueue(noop(i).into_new_job(&templates).unwrap())
            .await
            .unwrap();
    }
    let mut finished = 0;
    while finished < jobs && start.elapsed() < TIME_LIMIT {
        match events.recv().await {
            Ok(e) if e.to == JobStatus::Succeeded => finished += 1,
            Ok(e) if e.to.is_terminal() => panic!("job {} ended {}", e.id, e.to),
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                finished = usize::try_from(queue.counts().await.unwrap().get(JobStatus::Succeeded)).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(finished, jobs, "only {finished} of {jobs} jobs finished in time");
    daemon.shutdown().await;
    jobs as f64 / seconds
}

/// The ceiling: one bare loop per fake (submit, follow, download the image).
async fn bare(backends: usize, jobs: usize) -> f64 {
    let fakes: Vec<FakeComfy> = futures::future::join_all((0..backends).map(|_| FakeComfy::start())).await;
    let templates = Templates::embedded().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let loops: Vec<_> = fakes
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let client = ComfyClient::new(&f.url).unwrap();
            let next = next.clone();
            let workflow = templates.render("noop", &Map::new()).unwrap().workflow;
            tokio::spawn(async move {
                let client_id = format!("bare-{n}");
                while next.fetch_add(1, Ordering::Relaxed) < jobs && start.elapsed() < TIME_LIMIT {
                    let events = client.connect_events(&client_id).await.ok();
                    let sub = client.submit(&workflow, &client_id).await.unwrap();
                    let done = wait_for_completion(
                        &client,
                        &client_id,
                        &sub.prompt_id,
                        Duration::from_secs(1),
                        events,
                        |_| {},
                    )
                    .await
                    .unwrap();
                    let darkroom::comfy::PromptState::Done(outputs) = done.state else {
                        panic!("prompt failed: {:?}", done.state)
                    };
                    for o in outputs {
                        client
                            .view(&o.image.filename, &o.image.subfolder, o.image.kind)
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for l in loops {
        l.await.unwrap();
    }
    jobs as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` runs this too; only `cargo bench` (--bench) measures.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let jobs: usize = std::env::var("DISPATCH_BENCH_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!(
        "\ndispatch end to end, {jobs} noop jobs, fake ComfyUI answering at once, {} cores",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<12} {:>14} {:>18} {:>8}",
        "backends", "darkroom job/s", "bare client job/s", "ratio"
    );
    for backends in [1, 4] {
        let d = darkroom(backends, jobs).await;
        let b = bare(backends, jobs).await;
        println!("{backends:<12} {d:>14.0} {b:>18.0} {:>7.2}x", d / b);
    }
    println!(
        "darkroom: durable enqueue, claim, progress, 4 KiB PNG + metadata.json stored with fsync, \
         prompt cache filled, completion with presigned URLs. bare: submit + WebSocket + /view only."
    );
}
