//! Scale-out throughput, as issue 8 asks: jobs/s through one and two darkroom nodes
//! sharing a Redis queue (and caches) and one S3 endpoint for outputs, each node with
//! its own fake ComfyUI (a real HTTP + WebSocket server answering at once). The
//! single embedded node (redb queue, own object store) is the reference.
//!
//! Run with `./scripts/bench.sh cluster` (`CLUSTER_BENCH_JOBS`, default 1000). Every
//! node, the fakes and the S3 endpoint run in this process; redis-server is a child.
//! With fakes that answer at once the figure measures darkroom's own work per job —
//! on a real GPU box a node's throughput is its GPUs', and nodes add GPUs.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::field_reassign_with_default,
    dead_code
)]

#[path = "../tests/it/fake_comfy.rs"]
mod fake_comfy;
#[path = "../tests/it/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use darkroom::comfy::Templates;
use darkroom::config::Config;
use darkroom::daemon::Daemon;
use darkroom::dispatch::JobRequest;
use darkroom::dispatch::{BackendConfig, ExternalS3, StorageBackend};
use darkroom::queue::JobStatus;
use darkroom::redis_store::Backend;
use fake_comfy::FakeComfy;
use redis_server::RedisServer;
use serde_json::{Value, json};

/// No single measurement may run longer than this.
const TIME_LIMIT: Duration = Duration::from_mins(3);

fn noop(color: usize) -> JobRequest {
    let Value::Object(params) = json!({ "color": color }) else {
        unreachable!()
    };
    let mut r = JobRequest::template("noop", params);
    r.cache = Some(false);
    r
}

fn base_config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.data_dir = dir.to_path_buf();
    c.s3.addr = "127.0.0.1:0".parse().unwrap();
    c.api.addr = "127.0.0.1:0".parse().unwrap();
    c.s3.access_key = "bench".into();
    c.s3.secret_key = "bench-secret".into();
    c
}

/// Where the nodes keep things.
enum Shared<'a> {
    /// One node on its own redb queue and object store.
    Embedded,
    /// Nodes on one Redis and one S3 endpoint.
    Cluster { redis: &'a RedisServer, s3: &'a str },
}

/// Enqueues `jobs` spread over `nodes` nodes and waits until all have succeeded.
async fn run(shared: &Shared<'_>, nodes: usize, jobs: usize, work: Duration) -> f64 {
    let fakes: Vec<FakeComfy> = futures::future::join_all((0..nodes).map(|_| FakeComfy::start())).await;
    for fake in &fakes {
        fake.ctl.set_work(work);
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("bench{}", ulid::Ulid::new());
    let mut daemons = Vec::new();
    for (n, fake) in fakes.iter().enumerate() {
        let mut c = base_config(&dir.path().join(format!("node{n}")));
        c.comfyui.backends = vec![BackendConfig::new(&fake.url)];
        if let Shared::Cluster { redis, s3 } = shared {
            c.queue.backend = Backend::Redis;
            c.cache.backend = Backend::Redis;
            c.redis.url = redis.url();
            c.redis.key_prefix.clone_from(&prefix);
            c.s3.enabled = false;
            c.storage.backend = StorageBackend::S3;
            c.storage.s3 = ExternalS3 {
                endpoint: (*s3).to_owned(),
                access_key: "bench".into(),
                secret_key: "bench-secret".into(),
                ..ExternalS3::default()
            };
        }
        daemons.push(Daemon::start(&c, darkroom::clock::system()).await.unwrap());
    }
    let templates = Templates::embedded().unwrap();
    // One node's subscription sees every node's events (on Redis, through the stream).
    let mut events = daemons[0].queue().subscribe();
    let start = Instant::now();
    for i in 0..jobs {
        let queue = daemons[i % nodes].queue();
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
                let counts = daemons[0].queue().counts().await.unwrap();
                finished = usize::try_from(counts.get(JobStatus::Succeeded)).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(finished, jobs, "only {finished} of {jobs} jobs finished in time");
    let per_node: Vec<usize> = fakes.iter().map(|f| f.ctl.prompts_received()).collect();
    assert_eq!(per_node.iter().sum::<usize>(), jobs, "every job ran exactly once");
    eprintln!("    per node: {per_node:?} in {seconds:.2} s");
    for d in daemons {
        d.shutdown().await;
    }
    jobs as f64 / seconds
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` runs this too; only `cargo bench` (--bench) measures.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let jobs: usize = std::env::var("CLUSTER_BENCH_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!("\nscale-out: noop jobs, one fake ComfyUI per node, {cores} cores");
    // The shared S3 endpoint: a darkroom serving only S3.
    let s3_dir = tempfile::tempdir().unwrap();
    let s3_node = Daemon::start(&base_config(s3_dir.path()), darkroom::clock::system())
        .await
        .unwrap();
    let s3 = format!("http://{}", s3_node.s3_addr().unwrap());
    let redis = RedisServer::start(&["--appendonly", "yes"]);
    let cluster = Shared::Cluster {
        redis: &redis,
        s3: &s3,
    };

    // At once: darkroom's own cost per job, bound by this machine's cores. With
    // 50 ms of simulated GPU time per image: a GPU-bound box, where nodes add GPUs.
    for (label, work, n) in [
        ("fake answers at once", Duration::ZERO, jobs),
        ("fake takes 50 ms per image", Duration::from_millis(50), jobs / 4),
    ] {
        println!("\n{label}, {n} jobs");
        println!("{:<34} {:>8} {:>10}", "setup", "job/s", "vs 1 node");
        let embedded = run(&Shared::Embedded, 1, n, work).await;
        println!(
            "{:<34} {embedded:>8.1} {:>10}",
            "1 node, embedded (redb + own S3)", ""
        );
        let one = run(&cluster, 1, n, work).await;
        println!("{:<34} {one:>8.1} {:>9.2}x", "1 node, Redis + S3", 1.0);
        let two = run(&cluster, 2, n, work).await;
        println!("{:<34} {two:>8.1} {:>9.2}x", "2 nodes, Redis + S3", two / one);
    }
    println!(
        "Redis: redis-server 7, appendonly yes (everysec). Each job: enqueue, claim, progress, \
         4 KiB PNG + metadata.json to S3, completion with presigned URLs, events to every node."
    );
    s3_node.shutdown().await;
}
