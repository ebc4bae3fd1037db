//! darkroom's durable queue side by side with Redis 7 (AOF, `appendfsync always` and
//! `everysec`) and Python RQ, as issue 3 asks: durable enqueues/s at 1 and 50
//! producers; the drain of pre-enqueued jobs by 4 and 16 workers (what RQ's burst
//! worker does); and the full cycle enqueue -> claim -> complete with 4 and 16 workers.
//!
//! Run with `cargo bench --bench queue`. Needs `redis-server`, `redis-benchmark`
//! (apt: redis-server) and Python with `rq` (pip: rq); a missing peer is reported and
//! its column left empty. Every server this starts listens on 127.0.0.1 only, every
//! loop is bounded in count and time, and everything lives in a temp dir.
//! Sizes can be scaled with `QUEUE_BENCH_SCALE` (default 1.0).

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use darkroom::clock;
use darkroom::queue::{NewJob, Queue, QueueConfig};
use serde_json::{Value, json};

/// No single measurement may run longer than this.
const TIME_LIMIT: Duration = Duration::from_mins(1);
/// Jobs per claim in the darkroom workers.
const CLAIM_BATCH: usize = 16;
/// Concurrent producers for the drain and full-cycle runs.
const PRODUCERS: usize = 50;

fn scale(n: usize) -> usize {
    let factor: f64 = std::env::var("QUEUE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let scaled = (n as f64 * factor) as usize;
    scaled.max(50)
}

/// A ~100-byte job body, the size the Redis and RQ runs carry too.
fn payload(i: usize) -> Value {
    json!({ "workflow": "sdxl-base", "prompt": "a lighthouse at dusk, volumetric light", "seed": i })
}

struct Rate {
    jobs: usize,
    seconds: f64,
    p99_ms: Option<f64>,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.jobs as f64 / self.seconds
    }
}

fn fresh_queue(dir: &Path, name: &str) -> Queue {
    Queue::open(&dir.join(name), clock::system(), QueueConfig::default()).unwrap()
}

/// Enqueues `jobs` jobs from `producers` concurrent tasks; returns each ack's latency.
async fn produce(queue: &Queue, producers: usize, jobs: usize) -> Vec<Duration> {
    let per = jobs / producers;
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per);
                for i in 0..per {
                    if start.elapsed() > TIME_LIMIT {
                        break;
                    }
                    let sent = Instant::now();
                    queue
                        .enqueue(NewJob::new("bench", payload(p * per + i)))
                        .await
                        .unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(jobs);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies
}

/// `workers` workers claim jobs in batches and complete each, until `total` are done;
/// returns how many were.
async fn consume(queue: &Queue, workers: usize, total: usize) -> usize {
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (queue, done) = (queue.clone(), done.clone());
            tokio::spawn(async move {
                let name = format!("worker-{w}");
                while done.load(Ordering::Relaxed) < total && start.elapsed() < TIME_LIMIT {
                    let claimed = queue
                        .claim_wait("bench", &name, CLAIM_BATCH, Duration::from_millis(50))
                        .await
                        .unwrap();
                    let completions = claimed
                        .iter()
                        .map(|c| queue.complete(&c.lease, json!({ "images": 1 })));
                    for result in futures::future::join_all(completions).await {
                        result.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed)
}

/// Durable enqueues from `producers` concurrent tasks.
async fn darkroom_enqueue(dir: &Path, producers: usize, jobs: usize) -> Rate {
    let queue = fresh_queue(dir, &format!("enqueue-{producers}.redb"));
    let start = Instant::now();
    let mut latencies = produce(&queue, producers, jobs).await;
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let p99 = latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0;
    Rate {
        jobs: latencies.len(),
        seconds,
        p99_ms: Some(p99),
    }
}

/// `workers` workers draining `jobs` jobs enqueued beforehand (like RQ's burst worker).
async fn darkroom_drain(dir: &Path, workers: usize, jobs: usize) -> Rate {
    let queue = fresh_queue(dir, &format!("drain-{workers}.redb"));
    let enqueued = produce(&queue, PRODUCERS, jobs).await.len();
    let start = Instant::now();
    let done = consume(&queue, workers, enqueued).await;
    Rate {
        jobs: done,
        seconds: start.elapsed().as_secs_f64(),
        p99_ms: None,
    }
}

/// [`PRODUCERS`] producers enqueue `jobs` jobs while `workers` workers claim and
/// complete them: first enqueue to last completion.
async fn darkroom_cycle(dir: &Path, workers: usize, jobs: usize) -> Rate {
    let queue = fresh_queue(dir, &format!("cycle-{workers}.redb"));
    let total = jobs / PRODUCERS * PRODUCERS;
    let start = Instant::now();
    let (_, done) = tokio::join!(produce(&queue, PRODUCERS, jobs), consume(&queue, workers, total));
    Rate {
        jobs: done,
        seconds: start.elapsed().as_secs_f64(),
        p99_ms: None,
    }
}

/// A redis-server on a free loopback port with AOF on, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start(fsync: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", fsync, "--logfile", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let out = BufReader::new(child.stdout.take()?);
        for line in out.lines().take(200) {
            if line.ok()?.contains("Ready to accept connections") {
                return Some(Self {
                    child,
                    port,
                    _dir: dir,
                });
            }
        }
        let _ = child.kill();
        None
    }

    /// LPUSH of 100-byte values from `clients` connections, via redis-benchmark.
    fn lpush(&self, clients: usize, requests: usize) -> Option<Rate> {
        let out = Command::new("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-t",
                "lpush",
                "-d",
                "100",
            ])
            .args(["-c", &clients.to_string(), "-n", &requests.to_string(), "--csv"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let row = text.lines().find(|l| l.starts_with("\"LPUSH\""))?;
        let fields: Vec<f64> = row
            .split(',')
            .skip(1)
            .filter_map(|f| f.trim_matches('"').parse().ok())
            .collect();
        let rps = *fields.first()?;
        Some(Rate {
            jobs: requests,
            seconds: requests as f64 / rps,
            p99_ms: fields.get(5).copied(),
        })
    }

    /// Runs `benches/rq_bench.py` against this server; its JSON report.
    fn rq(&self, args: &[&str]) -> Option<Value> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/rq_bench.py");
        let out = Command::new("python3")
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// RQ's enqueue rate from `producers` threads.
    fn rq_enqueue(&self, producers: usize, jobs: usize) -> Option<Rate> {
        let report = self.rq(&[
            "enqueue",
            "--producers",
            &producers.to_string(),
            "--jobs",
            &jobs.to_string(),
        ])?;
        Some(Rate {
            jobs: usize::try_from(report["jobs"].as_u64()?).ok()?,
            seconds: report["seconds"].as_f64()?,
            p99_ms: None,
        })
    }

    /// RQ with `workers` burst workers: the drain alone, and enqueue (50 threads)
    /// followed by the drain.
    fn rq_drain(&self, workers: usize, jobs: usize) -> (Option<Rate>, Option<Rate>) {
        let args = [
            "drain",
            "--workers",
            &workers.to_string(),
            "--jobs",
            &jobs.to_string(),
        ];
        let Some(report) = self.rq(&args) else {
            return (None, None);
        };
        let rates = || -> Option<(Rate, Rate)> {
            let done = usize::try_from(report["jobs"].as_u64()?).ok()?;
            let drain = report["seconds"].as_f64()?;
            let enqueue = report["enqueue_seconds"].as_f64()?;
            let rate = |seconds| Rate {
                jobs: done,
                seconds,
                p99_ms: None,
            };
            Some((rate(drain), rate(drain + enqueue)))
        };
        rates().map_or((None, None), |(drain, cycle)| (Some(drain), Some(cycle)))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rq_available() -> bool {
    Command::new("python3")
        .args(["-c", "import rq"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn fmt_rate(rate: Option<&Rate>) -> String {
    rate.map_or_else(|| "-".into(), |r| format!("{:.0}", r.per_second()))
}

fn ratio(ours: &Rate, theirs: Option<&Rate>) -> String {
    theirs.map_or_else(
        || "-".into(),
        |t| format!("{:.1}x", ours.per_second() / t.per_second()),
    )
}

const ROWS: [&str; 6] = [
    "durable enqueue, 1 producer",
    "durable enqueue, 50 producers",
    "drain, 4 workers",
    "drain, 16 workers",
    "full cycle, 4 workers",
    "full cycle, 16 workers",
];
const PEERS: [&str; 4] = ["redis-al", "redis-es", "rq-al", "rq-es"];

/// One peer's figure for each row of [`ROWS`].
type Column = [Option<Rate>; 6];

/// Redis LPUSH and RQ figures on one redis-server configuration.
fn measure_peers(fsync: &str, rq: bool, rq_jobs: usize) -> (Column, Column) {
    let Some(redis) = Redis::start(fsync) else {
        println!("redis-server not available: Redis and RQ columns skipped (apt-get install redis-server)");
        return (Column::default(), Column::default());
    };
    let mut lpush = Column::default();
    lpush[0] = redis.lpush(1, scale(5_000));
    lpush[1] = redis.lpush(50, scale(50_000));
    let mut column = Column::default();
    if rq {
        column[0] = redis.rq_enqueue(1, rq_jobs);
        column[1] = redis.rq_enqueue(50, rq_jobs);
        (column[2], column[4]) = redis.rq_drain(4, rq_jobs);
        (column[3], column[5]) = redis.rq_drain(16, rq_jobs);
    }
    (lpush, column)
}

fn print_table(ours: &[Rate; 6], peers: &[Column; 4]) {
    print!("\n{:<31} {:>9}", "per second", "darkroom");
    for peer in PEERS {
        print!(" {peer:>9}");
    }
    print!(" |");
    for peer in PEERS {
        print!(" {:>9}", format!("/{peer}"));
    }
    println!();
    for (row, label) in ROWS.iter().enumerate() {
        print!("{label:<31} {:>9}", fmt_rate(Some(&ours[row])));
        for column in peers {
            print!(" {:>9}", fmt_rate(column[row].as_ref()));
        }
        print!(" |");
        for column in peers {
            print!(" {:>9}", ratio(&ours[row], column[row].as_ref()));
        }
        println!();
    }
    println!(
        "\nredis-al / redis-es: redis-server 7, appendonly yes, appendfsync always / everysec, \
         LPUSH of 100 bytes via redis-benchmark.\nrq-al / rq-es: Python RQ on those servers; \
         no-op jobs, drained by burst SimpleWorker processes.\ndrain: jobs enqueued beforehand, \
         timed from the workers' start to the last completion (darkroom workers claim batches \
         of {CLAIM_BATCH}).\nfull cycle: darkroom's {PRODUCERS} producers enqueue while the workers \
         claim and complete; RQ enqueues from {PRODUCERS} threads, then drains (burst workers \
         stop on an empty queue)."
    );
}

fn check(label: &str, ours: &Rate, theirs: Option<&Rate>, factor: f64) {
    match theirs {
        Some(t) => {
            let got = ours.per_second() / t.per_second();
            let verdict = if got >= factor { "met" } else { "NOT met" };
            println!("target {label} >= {factor}x: {got:.2}x — {verdict}");
        }
        None => println!("target {label} >= {factor}x: peer not measured"),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (n1, n50, n_cycle, rq_jobs) = (scale(3_000), scale(40_000), scale(20_000), scale(1_000));

    println!("darkroom queue bench: {n1} enqueues at 1 producer, {n50} at 50, {n_cycle} per drain and cycle");
    let ours = runtime.block_on(async {
        [
            darkroom_enqueue(dir.path(), 1, n1).await,
            darkroom_enqueue(dir.path(), 50, n50).await,
            darkroom_drain(dir.path(), 4, n_cycle).await,
            darkroom_drain(dir.path(), 16, n_cycle).await,
            darkroom_cycle(dir.path(), 4, n_cycle).await,
            darkroom_cycle(dir.path(), 16, n_cycle).await,
        ]
    });
    for (label, rate) in ROWS.iter().zip(&ours).take(2) {
        println!("darkroom {label}: ack p99 {:.2} ms", rate.p99_ms.unwrap_or(0.0));
    }

    let rq = rq_available();
    if !rq {
        println!("python rq not importable: RQ columns skipped (pip install rq)");
    }
    let (redis_always, rq_always) = measure_peers("always", rq, rq_jobs);
    let (redis_everysec, rq_everysec) = measure_peers("everysec", rq, rq_jobs);
    for (name, column) in [("always", &redis_always), ("everysec", &redis_everysec)] {
        if let Some(p99) = column[1].as_ref().and_then(|r| r.p99_ms) {
            println!("redis {name} LPUSH x50: p99 {p99:.2} ms");
        }
    }
    let peers = [redis_always, redis_everysec, rq_always, rq_everysec];
    print_table(&ours, &peers);
    println!();
    check(
        "enqueue x50 vs RQ enqueue x50 (always)",
        &ours[1],
        peers[2][1].as_ref(),
        5.0,
    );
    check(
        "enqueue x50 vs RQ enqueue x50 (everysec)",
        &ours[1],
        peers[3][1].as_ref(),
        5.0,
    );
    check(
        "enqueue x50 vs Redis LPUSH x50 always",
        &ours[1],
        peers[0][1].as_ref(),
        1.0,
    );
    for row in 2..6 {
        check(
            &format!("{} vs RQ (always)", ROWS[row]),
            &ours[row],
            peers[2][row].as_ref(),
            10.0,
        );
        check(
            &format!("{} vs RQ (everysec)", ROWS[row]),
            &ours[row],
            peers[3][row].as_ref(),
            10.0,
        );
    }
}
