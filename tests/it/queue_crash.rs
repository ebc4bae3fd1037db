//! Crash safety with a real SIGKILL: a child process (this test binary, re-executed)
//! enqueues from many tasks and completes jobs with a few workers, printing each
//! acknowledgement as it gets it. The parent kills it at a random moment, several
//! rounds in a row on the same file, and checks that every acknowledged job is on disk
//! with its payload intact and that no acknowledged completion is ever claimed again.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use darkroom::clock;
use darkroom::queue::{JobStatus, NewJob, Queue, QueueConfig};
use rand::Rng;
use serde_json::{Value, json};
use ulid::Ulid;

use crate::queue_support::disk_copy;

const DIR_ENV: &str = "DARKROOM_QUEUE_CRASH_DIR";
const ROUND_ENV: &str = "DARKROOM_QUEUE_CRASH_ROUND";
const ROUNDS: u32 = 5;
const PRODUCERS: u32 = 32;
const WORKERS: u32 = 4;
/// The child stops on its own after this many enqueues per producer, or this long.
const PER_PRODUCER: u32 = 2_000;
const CHILD_LIMIT: Duration = Duration::from_secs(30);

fn payload(round: u32, task: u32, i: u32) -> Value {
    json!({
        "prompt": format!("a lighthouse at dusk, round {round}, task {task}, job {i}"),
        "workflow": { "3": { "class_type": "KSampler", "inputs": { "seed": i, "steps": 20 } } },
        "pad": "x".repeat(usize::try_from(i % 200).unwrap()),
    })
}

fn child_config() -> QueueConfig {
    QueueConfig {
        lease: Duration::from_millis(300),
        ..QueueConfig::default()
    }
}

/// The child side: runs only when the parent sets [`DIR_ENV`].
#[test]
fn queue_crash_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(child(PathBuf::from(dir).join("queue.redb"), round));
}

async fn child(path: PathBuf, round: u32) {
    let queue = Queue::open(&path, clock::system(), child_config()).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _reaper = queue.spawn_reaper(Duration::from_millis(50), shutdown.clone());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = move |line: String| {
        let mut out = out.lock().unwrap();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..PRODUCERS {
        let (queue, say) = (queue.clone(), say.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_PRODUCER {
                if started.elapsed() > CHILD_LIMIT {
                    break;
                }
                let job = queue
                    .enqueue(NewJob::new("crash", payload(round, task, i)))
                    .await
                    .unwrap()
                    .job;
                say(format!("ENQ {} {round} {task} {i}", job.id));
            }
        }));
    }
    for worker in 0..WORKERS {
        let (queue, say) = (queue.clone(), say.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("r{round}-w{worker}");
            while started.elapsed() < CHILD_LIMIT {
                let claimed = queue
                    .claim_wait("crash", &name, 8, Duration::from_millis(100))
                    .await
                    .unwrap();
                for c in claimed {
                    say(format!("CLAIM {}", c.job.id));
                    queue.complete(&c.lease, json!({ "ok": true })).await.unwrap();
                    say(format!("DONE {}", c.job.id));
                }
            }
        }));
    }
    for task in tasks.into_iter().take(usize::try_from(PRODUCERS).unwrap()) {
        task.await.unwrap();
    }
    shutdown.cancel();
}

/// What the parent learned from the child's acknowledgements, in print order.
#[derive(Default)]
struct Acks {
    enqueued: HashMap<Ulid, (u32, u32, u32)>,
    done: HashSet<Ulid>,
}

impl Acks {
    /// Takes in one line of the child's output; false if it is not an acknowledgement.
    fn read(&mut self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ENQ", id, round, task, i] => {
                let fields = (round.parse().unwrap(), task.parse().unwrap(), i.parse().unwrap());
                self.enqueued.insert(id.parse().unwrap(), fields);
            }
            ["CLAIM", id] => {
                let id: Ulid = id.parse().unwrap();
                assert!(
                    !self.done.contains(&id),
                    "job {id} was claimed after its completion was acknowledged"
                );
            }
            ["DONE", id] => {
                self.done.insert(id.parse().unwrap());
            }
            _ => return false,
        }
        true
    }
}

/// Runs one child round, kills it after a random number of acknowledgements and
/// returns how many it read.
fn run_round(dir: &Path, round: u32, acks: &mut Acks) -> usize {
    let kill_after = rand::rng().random_range(1..4_000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "queue_crash::queue_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    let mut killed = false;
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        if !acks.read(&line) {
            continue;
        }
        seen += 1;
        if seen == kill_after && !killed {
            child.kill().unwrap();
            killed = true;
        }
    }
    child.wait().unwrap();
    seen
}

/// Opens what the killed child left on disk and checks every acknowledgement.
async fn verify(path: &Path, acks: &Acks, claim_everything: bool) {
    let (_dir, copy) = disk_copy(path);
    let queue = Queue::open(&copy, clock::system(), child_config()).unwrap();
    for (id, (round, task, i)) in &acks.enqueued {
        let job = queue
            .get(*id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged job {id} lost"));
        assert_eq!(job.payload, payload(*round, *task, *i), "payload of {id}");
    }
    for id in &acks.done {
        let job = queue.get(*id).await.unwrap().unwrap();
        assert_eq!(
            job.status,
            JobStatus::Succeeded,
            "acknowledged completion of {id}"
        );
    }
    if claim_everything {
        queue.reap_expired(queue.now_ms() + 3_600_000).await.unwrap();
        loop {
            let batch = queue.claim_batch("crash", "verifier", 512).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for c in batch {
                assert!(
                    !acks.done.contains(&c.job.id),
                    "completed job {} claimed after restart",
                    c.job.id
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_crash_recovers_every_acknowledged_job() {
    if std::env::var_os(DIR_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let mut acks = Acks::default();
    for round in 0..ROUNDS {
        let root = dir.path().to_path_buf();
        let mut round_acks = std::mem::take(&mut acks);
        let (lines, back) = tokio::task::spawn_blocking(move || {
            let lines = run_round(&root, round, &mut round_acks);
            (lines, round_acks)
        })
        .await
        .unwrap();
        acks = back;
        assert!(lines > 0, "round {round}: the child acknowledged nothing");
        eprintln!(
            "crash round {round}: child killed, {lines} acks read; {} enqueues and {} completions acknowledged so far",
            acks.enqueued.len(),
            acks.done.len()
        );
        verify(&path, &acks, round + 1 == ROUNDS).await;
    }
    assert!(!acks.enqueued.is_empty() && !acks.done.is_empty());
}
