//! Several darkroom nodes on shared engines: two `darkroom serve` processes on one
//! redis-server (queue and caches) and one S3 endpoint (outputs), each with its own
//! fake ComfyUI. Jobs submitted through either API run exactly once, on either
//! node, and land in the shared bucket; a job is visible and cancellable from both;
//! one node's cached result serves the other; and when a node is SIGKILLed with a
//! job running, the other node takes that job over once its lease lapses. A job
//! finishing while Redis is down is recorded once it is back, not run again.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api_support::Api;
use crate::fake_comfy::FakeComfy;
use crate::redis_server::RedisServer;
use crate::serve::Serve;
use crate::support::{ACCESS_KEY, SECRET_KEY, TestServer, server};

const BIN: &str = env!("CARGO_BIN_EXE_darkroom");
/// Jobs of the exactly-once round.
const JOBS: usize = 300;

/// A node: `darkroom serve` with the queue and caches on `redis` (under `prefix`)
/// and outputs on `s3`, its own S3 server off, running jobs on `comfy`.
fn node(
    dir: &std::path::Path,
    redis: &RedisServer,
    prefix: &str,
    s3: &TestServer,
    comfy: &FakeComfy,
) -> Serve {
    Serve::spawn(node_command(dir, redis, prefix, s3, comfy))
}

fn node_command(
    dir: &std::path::Path,
    redis: &RedisServer,
    prefix: &str,
    s3: &TestServer,
    comfy: &FakeComfy,
) -> Command {
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--api-addr", "127.0.0.1:0", "--comfyui", &comfy.url])
        .args(["--nvml-lib", "/nonexistent/libnvidia-ml.so.1", "--data"])
        .arg(dir.join("data"))
        .env("DARKROOM_S3__ENABLED", "false")
        .env("DARKROOM_QUEUE__BACKEND", "redis")
        .env("DARKROOM_CACHE__BACKEND", "redis")
        .env("DARKROOM_REDIS__URL", redis.url())
        .env("DARKROOM_REDIS__KEY_PREFIX", prefix)
        .env("DARKROOM_STORAGE__BACKEND", "s3")
        .env("DARKROOM_STORAGE__S3__ENDPOINT", &s3.endpoint)
        .env("DARKROOM_STORAGE__S3__ACCESS_KEY", ACCESS_KEY)
        .env("DARKROOM_STORAGE__S3__SECRET_KEY", SECRET_KEY)
        // A short lease, so the dead node's job comes back within seconds.
        .env("DARKROOM_QUEUE__LEASE_SECONDS", "2")
        .env("DARKROOM_QUEUE__REAPER_INTERVAL_MS", "200")
        .env("DARKROOM_COMFYUI__HEALTH_INTERVAL_MS", "50")
        .env("DARKROOM_LOG__LEVEL", "warn")
        .current_dir(dir);
    command
}

async fn api(serve: &Serve) -> Api {
    let addr: SocketAddr = serve.api.trim_start_matches("http://").parse().unwrap();
    Api::new(addr, None).await
}

fn request(color: usize, key: &str) -> Value {
    json!({"template": "noop", "params": {"color": color, "width": 64, "height": 64}, "idempotency_key": key})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_queue_and_take_over_a_dead_nodes_job() {
    let redis = RedisServer::start(&["--appendonly", "yes"]);
    let s3 = server().await;
    let (comfy_a, comfy_b) = (FakeComfy::start().await, FakeComfy::start().await);
    let dir = tempfile::tempdir().unwrap();
    let prefix = "cluster";
    let mut node_a = node(&dir.path().join("a"), &redis, prefix, &s3, &comfy_a);
    let node_b = node(&dir.path().join("b"), &redis, prefix, &s3, &comfy_b);
    let (a, b) = (api(&node_a).await, api(&node_b).await);

    let status = b.get("/api/v1/status").await.json();
    assert_eq!(status["queue_store"]["backend"], "redis", "{status}");
    assert_eq!(status["queue_store"]["reachable"], true, "{status}");
    assert_eq!(status["cache_store"]["backend"], "redis", "{status}");

    // Several hundred jobs through both APIs at once, each waited for to the end.
    let mut submits = Vec::new();
    for i in 0..JOBS {
        let to = if i % 2 == 0 { a.clone() } else { b.clone() };
        submits.push(tokio::spawn(async move {
            let r = to
                .post("/api/v1/jobs?wait=120", Some(&request(i, &format!("job-{i}"))))
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()
        }));
    }
    let mut ids = HashSet::new();
    let mut backends = HashSet::new();
    for submit in submits {
        let job = submit.await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
        assert!(ids.insert(job["id"].as_str().unwrap().to_owned()));
        backends.insert(job["result"]["backend"].as_str().unwrap().to_owned());
        // The image is in the shared bucket.
        let key = job["result"]["outputs"][0]["key"].as_str().unwrap();
        s3.client
            .head_object()
            .bucket("comfyui-outputs")
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key} is not in the shared bucket: {e:?}\n{job}"));
    }
    assert_eq!(ids.len(), JOBS);
    assert_eq!(
        comfy_a.ctl.prompts_received() + comfy_b.ctl.prompts_received(),
        JOBS,
        "every job ran exactly once"
    );
    assert_eq!(backends.len(), 2, "both nodes ran jobs: {backends:?}");
    let counts = a.get("/api/v1/status").await.json()["queue"]["counts"].clone();
    assert_eq!(counts["succeeded"], JOBS, "{counts}");

    // One node's cached result serves the other: the same request again, on the
    // other node, comes from the cache and reaches no ComfyUI.
    let before = comfy_a.ctl.prompts_received() + comfy_b.ctl.prompts_received();
    let again = b
        .post("/api/v1/jobs?wait=60", Some(&request(0, "job-0-again")))
        .await
        .json();
    assert_eq!(again["result"]["cache_hit"], true, "{again}");
    assert_eq!(
        comfy_a.ctl.prompts_received() + comfy_b.ctl.prompts_received(),
        before
    );

    // Both nodes busy: one job held on each ComfyUI, a third waiting in the queue.
    comfy_a.ctl.hold(true);
    comfy_b.ctl.hold(true);
    for n in 0..2 {
        let r = a
            .post("/api/v1/jobs", Some(&request(1000 + n, &format!("held-{n}"))))
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
    }
    comfy_a.ctl.wait_held().await;
    comfy_b.ctl.wait_held().await;
    let waiting = b
        .post("/api/v1/jobs", Some(&request(2000, "waiting")))
        .await
        .json();
    let waiting_id = waiting["id"].as_str().unwrap();
    // Submitted on b, cancelled through a, seen cancelled on b.
    let cancelled = a.post(&format!("/api/v1/jobs/{waiting_id}/cancel"), None).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let seen = b.get(&format!("/api/v1/jobs/{waiting_id}")).await.json();
    assert_eq!(seen["status"], "cancelled", "{seen}");

    // Which running job is node a's?
    let running = b.get("/api/v1/jobs?status=running").await.json();
    let pid_a = node_a.child.id();
    let on_a = running["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["lease_owner"].as_str().unwrap().contains(&format!(":{pid_a}:")))
        .unwrap_or_else(|| panic!("no job leased to node a (pid {pid_a}): {running}"))
        .clone();
    let key = on_a["idempotency_key"].as_str().unwrap().to_owned();

    // SIGKILL node a mid-job; node b finishes its own and then takes a's over.
    node_a.child.kill().unwrap();
    node_a.child.wait().unwrap();
    comfy_b.ctl.hold(false);
    comfy_b.ctl.release();
    let n: usize = key.trim_start_matches("held-").parse().unwrap();
    // Resubmitting with the job's idempotency key waits on the same job.
    let r = b
        .post("/api/v1/jobs?wait=120", Some(&request(1000 + n, &key)))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["idempotent-replayed"], "true");
    let taken_over = r.json();
    assert_eq!(taken_over["id"], on_a["id"]);
    assert_eq!(taken_over["status"], "succeeded", "{taken_over}");
    assert_eq!(taken_over["attempts"], 2, "{taken_over}");
    assert_eq!(taken_over["errors"][0]["kind"], "lease_expired", "{taken_over}");
    assert_eq!(taken_over["result"]["backend"], comfy_b.url, "{taken_over}");

    // A node without its own S3 server is ready while the shared engines answer,
    // and says which one does not once Redis is gone.
    let ready = b.get("/readyz").await;
    assert_eq!((ready.status, ready.text.as_str()), (200, "ready\n"));
    let out = Command::new(BIN)
        .args(["status", "--url", &node_b.api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "queue store: redis redis://127.0.0.1:{}/0 reachable (",
        redis.port
    );
    assert!(out.status.success() && text.contains(&want), "{text}");
    assert!(
        text.contains(&format!("outputs: s3 {} reachable", s3.endpoint)),
        "{text}"
    );
    let metrics = b.get("/metrics").await.text;
    for up in [
        r#"darkroom_store_up{store="queue",backend="redis"} 1"#,
        r#"darkroom_store_up{store="outputs",backend="s3"} 1"#,
    ] {
        assert!(metrics.contains(up), "{up} in\n{metrics}");
    }
    redis.kill();
    let metrics = b.get("/metrics").await.text;
    for line in [
        r#"darkroom_store_up{store="queue",backend="redis"} 0"#,
        r#"darkroom_store_up{store="cache",backend="redis"} 0"#,
        r#"darkroom_store_up{store="outputs",backend="s3"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let ready = b.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.text.contains("job queue: Redis"), "{}", ready.text);
    // The status still answers, saying what is missing and why.
    let status = b.get("/api/v1/status").await;
    assert_eq!(status.status, 200, "{}", status.text);
    let snapshot = status.json();
    assert!(
        snapshot["queue"]["unavailable"]
            .as_str()
            .is_some_and(|why| why.starts_with("job queue: Redis")),
        "{snapshot}"
    );
    assert_eq!(snapshot["queue_store"]["reachable"], false, "{snapshot}");
    assert!(snapshot["cache"]["unavailable"].is_string(), "{snapshot}");
    assert_eq!(
        snapshot["backends"].as_array().map(Vec::len),
        Some(1),
        "{snapshot}"
    );
    let out = Command::new(BIN)
        .args(["status", "--url", &node_b.api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("queue: UNAVAILABLE: job queue: Redis"), "{text}");
    assert!(text.contains(" UNREACHABLE: "), "{text}");
    let list = b.get("/api/v1/jobs").await;
    assert_eq!(list.status, 503, "{}", list.text);
    assert_eq!(list.json()["error"]["code"], "store_unavailable", "{}", list.text);
    let submit = b.post("/api/v1/jobs", Some(&request(3000, "after-redis"))).await;
    assert_eq!(submit.status, 503, "{}", submit.text);
    assert!(submit.text.contains("job queue: Redis"), "{}", submit.text);
}

/// Redis goes away while a job is finishing: the node keeps the finished result and
/// records it once Redis is back, instead of dropping it — and running the job
/// again once its lease lapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_finishing_while_redis_is_down_is_recorded_once_it_is_back() {
    let redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let s3 = server().await;
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let dir = tempfile::tempdir().unwrap();
    let mut command = node_command(dir.path(), &redis, "outage", &s3, &comfy);
    command
        .env("DARKROOM_QUEUE__LEASE_SECONDS", "120")
        .stderr(Stdio::piped());
    let mut serve = Serve::spawn(command);
    let stderr = serve.child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let a = api(&serve).await;
    let submitted = a.post("/api/v1/jobs", Some(&request(1, "outage"))).await;
    assert_eq!(submitted.status, 202, "{}", submitted.text);
    comfy.ctl.wait_held().await;

    redis.kill();
    comfy.ctl.hold(false);
    comfy.ctl.release();
    // Its attempt to record the result has failed (and will be made again).
    tokio::task::block_in_place(|| {
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            let line = log
                .recv_timeout(give_up.saturating_duration_since(Instant::now()))
                .expect("the node never said it would try to record the outcome again");
            if line.contains("cannot record the job's outcome yet; trying again") {
                break;
            }
        }
    });
    redis.restart();
    let r = a.post("/api/v1/jobs?wait=120", Some(&request(1, "outage"))).await;
    let job = r.json();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(comfy.ctl.prompts_received(), 1);
}
