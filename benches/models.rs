//! Model affinity vs plain least-loaded dispatch, as issue 16 asks: 300 jobs
//! mixing three models over two fake ComfyUI backends with room for one large
//! model each. The large model takes 2 s to load on a switch, the two others
//! 0.5 s; every image takes 0.1 s. Both runs use the same catalog and job mix;
//! only `routing.scheduler` differs (`least_loaded` is strict priority/FIFO order
//! to the least loaded backend: the behaviour before the catalog). Prints swaps,
//! makespan and p95 queue wait of each, and the ratios.
//!
//! Run with `cargo bench --bench models` (`MODELS_BENCH_JOBS`, default 300).

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

use std::time::{Duration, Instant};

use darkroom::config::Config;
use darkroom::daemon::Daemon;
use darkroom::dispatch::{BackendConfig, JobRequest};
use darkroom::models::{ModelSpec, Scheduler};
use darkroom::queue::JobStatus;
use fake_comfy::FakeComfy;
use serde_json::json;
use ulid::Ulid;

const GB: u64 = 1_000_000_000;
/// No run may take longer than this.
const TIME_LIMIT: Duration = Duration::from_mins(6);

/// (name, file, VRAM GB, load time).
const MODELS: [(&str, &str, u64, Duration); 3] = [
    ("large", "large.safetensors", 14, Duration::from_secs(2)),
    ("small-a", "small_a.safetensors", 4, Duration::from_millis(500)),
    ("small-b", "small_b.safetensors", 4, Duration::from_millis(500)),
];

struct Outcome {
    swaps: u64,
    makespan: f64,
    p95_wait: f64,
}

/// The job mix: the same pseudo-random sequence of models for both runs.
fn mix(jobs: usize) -> Vec<&'static str> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..jobs)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            MODELS[(x % 3) as usize].0
        })
        .collect()
}

async fn run(scheduler: Scheduler, jobs: &[&str]) -> Outcome {
    let mut fakes = Vec::new();
    for _ in 0..2 {
        let f = FakeComfy::start().await;
        f.ctl.set_gpu(16 * GB, 16 * GB);
        f.ctl.set_models("checkpoints", &MODELS.map(|m| m.1));
        for (_, file, vram, load) in MODELS {
            f.ctl.set_model_cost(file, load, vram * GB);
        }
        f.ctl.set_work(Duration::from_millis(100));
        fakes.push(f);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.data_dir = dir.path().join("data");
    c.s3.addr = "127.0.0.1:0".parse().unwrap();
    c.api.addr = "127.0.0.1:0".parse().unwrap();
    c.s3.access_key = "bench".into();
    c.s3.secret_key = "bench-secret".into();
    c.api.max_queued = 100_000;
    c.comfyui.backends = fakes.iter().map(|f| BackendConfig::new(&f.url)).collect();
    c.comfyui.health_interval_ms = 100;
    c.models = MODELS
        .iter()
        .map(|(name, file, vram, _)| {
            toml::from_str::<ModelSpec>(&format!(
                "name = \"{name}\"\nfile = \"{file}\"\nvram_gb = {vram}\nquality = \"high\"\nexpected_seconds = 0.1"
            ))
            .unwrap()
        })
        .collect();
    c.routing.scheduler = scheduler;
    let daemon = Daemon::start(&c, darkroom::clock::system()).await.unwrap();
    let services = daemon.services();
    let queue = daemon.queue().clone();
    let mut events = queue.subscribe();
    let start = Instant::now();
    let mut ids: Vec<Ulid> = Vec::with_capacity(jobs.len());
    for (i, model) in jobs.iter().enumerate() {
        let serde_json::Value::Object(params) = json!({"prompt": "a lighthouse", "seed": i, "steps": 1})
        else {
            unreachable!()
        };
        let mut r = JobRequest::template("txt2img", params);
        r.model = Some((*model).to_owned());
        r.cache = Some(false);
        ids.push(services.jobs.submit(r, None).await.unwrap().job.id);
    }
    let mut finished = 0;
    while finished < jobs.len() {
        assert!(
            start.elapsed() < TIME_LIMIT,
            "{scheduler:?}: only {finished} jobs done"
        );
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(e)) if e.to == JobStatus::Succeeded => finished += 1,
            Ok(Ok(e)) if e.to.is_terminal() => panic!("job {} ended {}", e.id, e.to),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(_)) => finished = queue.counts().await.unwrap().get(JobStatus::Succeeded) as usize,
        }
    }
    let makespan = start.elapsed().as_secs_f64();
    let mut waits = Vec::with_capacity(ids.len());
    for id in ids {
        let j = queue.get(id).await.unwrap().unwrap();
        waits.push((j.started_ms.unwrap() - j.created_ms) as f64 / 1000.0);
    }
    let swaps = daemon.dispatcher().backends().iter().map(|b| b.swaps).sum();
    daemon.shutdown().await;
    Outcome {
        swaps,
        makespan,
        p95_wait: darkroom::models::timings::percentile(&waits, 0.95).unwrap(),
    }
}

fn main() {
    let jobs: usize = std::env::var("MODELS_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mix = mix(jobs);
    println!("{jobs} jobs, 3 models (large: 2 s load; two small: 0.5 s), 0.1 s per image, 2 backends");
    let plain = rt.block_on(run(Scheduler::LeastLoaded, &mix));
    let affinity = rt.block_on(run(Scheduler::Affinity, &mix));
    println!(
        "{:<14} {:>7} {:>12} {:>14}",
        "scheduler", "swaps", "makespan s", "p95 wait s"
    );
    for (name, o) in [("least_loaded", &plain), ("affinity", &affinity)] {
        println!(
            "{name:<14} {:>7} {:>12.1} {:>14.1}",
            o.swaps, o.makespan, o.p95_wait
        );
    }
    println!(
        "affinity: {:.1}x fewer swaps, makespan {:.2}x shorter, p95 wait {:.2}x of least_loaded",
        plain.swaps as f64 / affinity.swaps.max(1) as f64,
        plain.makespan / affinity.makespan,
        affinity.p95_wait / plain.p95_wait
    );
}
