//! What the dashboard costs while an operator leaves it open over SSH: CPU and
//! terminal bytes per second of `darkroom dash` attached to an idle daemon (it
//! redraws four times a second for its clocks), on the overview and on the
//! gallery showing the pictures of a dozen finished jobs (half blocks, as tmux
//! without passthrough gets), side by side with `top -d 0.25` (procps, refreshing
//! at the same 4 Hz) in the same 80x24 tmux window. CPU time is read from
//! /proc/<pid>/stat; bytes from tmux's `pipe-pane`. The jobs run on the tests'
//! fake ComfyUI before the measuring starts.
//!
//! Run: `./scripts/bench.sh dash` (or `cargo bench --bench dash`).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/it/fake_comfy.rs"]
#[allow(dead_code)]
mod fake_comfy;
#[path = "../tests/it/serve.rs"]
mod serve;
#[path = "../tests/it/tmux.rs"]
#[allow(dead_code)]
mod tmux;

const SECONDS: u64 = 20;

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process is gone");
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz: u64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap_or(100);
    #[allow(clippy::cast_precision_loss)]
    let s = ticks as f64 / hz as f64;
    s
}

/// The pane's program: the shell's child.
fn child_of(shell: u32) -> u32 {
    let out = Command::new("pgrep")
        .args(["-P", &shell.to_string()])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .expect("no child")
        .trim()
        .parse()
        .unwrap()
}

struct Reading {
    cpu_percent: f64,
    bytes_per_second: f64,
}

/// Jobs finished before the gallery is measured.
const JOBS: usize = 12;

/// Runs `command` in tmux once `ready` shows, then `keys` and until the screen
/// satisfies `settled`, for [`SECONDS`].
fn measure(command: &str, ready: &str, keys: &[&str], settled: impl Fn(&str) -> bool) -> Reading {
    let dir = tempfile::tempdir().unwrap();
    let bytes = dir.path().join("bytes");
    let t = tmux::Tmux::start(command, 80, 24);
    t.wait_text(ready);
    if !keys.is_empty() {
        t.keys(keys);
    }
    t.wait_for("the screen to settle", settled);
    let shell: u32 = t.pane_pid();
    let pid = child_of(shell);
    t.pipe_to(&bytes);
    let (cpu0, at0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(SECONDS));
    let (cpu1, elapsed) = (cpu_seconds(pid), at0.elapsed().as_secs_f64());
    #[allow(clippy::cast_precision_loss)]
    let written = std::fs::metadata(&bytes).map_or(0, |m| m.len()) as f64;
    Reading {
        cpu_percent: (cpu1 - cpu0) / elapsed * 100.0,
        bytes_per_second: written / elapsed,
    }
}

/// Submits [`JOBS`] noop jobs (each its own colour) and waits for them.
fn finish_jobs(runtime: &tokio::runtime::Runtime, api: &str) {
    runtime.block_on(async {
        let http = reqwest::Client::new();
        for color in 0..JOBS {
            let body = serde_json::json!({"template": "noop", "params": {"color": color * 1000}});
            let r = http
                .post(format!("{api}/api/v1/jobs?wait=60"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    });
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let comfy = runtime.block_on(fake_comfy::FakeComfy::start());
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_darkroom"));
    command
        .args([
            "serve",
            "--s3-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
            "--nvml-lib",
            "/nonexistent/libnvidia-ml.so.1",
            "--comfyui",
            &comfy.url,
            "--data",
        ])
        .arg(data.path().join("data"))
        .env("DARKROOM_LOG__LEVEL", "warn")
        .env("DARKROOM_S3__ACCESS_KEY", "bench-access")
        .env("DARKROOM_S3__SECRET_KEY", "bench-secret-key")
        .stderr(Stdio::null());
    let serve = serve::Serve::spawn(command);
    let api = serve.api.clone();
    finish_jobs(&runtime, &api);
    println!("dashboard idle cost, 80x24 tmux window, {SECONDS} s each (2-core machine)");
    let dash_command = format!("{} dash --url {api}", env!("CARGO_BIN_EXE_darkroom"));
    let dash = measure(&dash_command, "● connected", &[], |_| true);
    let gallery = measure(&dash_command, "● connected", &["7"], |s| {
        s.contains(&format!("Gallery ({JOBS} pictures)")) && !s.contains("loading…")
    });
    let top = measure("top -d 0.25", "load average", &[], |_| true);
    drop(serve);
    println!("{:<32} {:>10} {:>14}", "", "CPU % core", "terminal B/s");
    for (name, r) in [
        ("darkroom dash (4 Hz idle)", &dash),
        ("darkroom dash, gallery open", &gallery),
        ("top -d 0.25 (4 Hz)", &top),
    ] {
        println!("{name:<32} {:>10.2} {:>14.0}", r.cpu_percent, r.bytes_per_second);
    }
    println!(
        "ratio dash/top: CPU {:.2}x, bytes {:.2}x; gallery/top: CPU {:.2}x, bytes {:.2}x; target: dash below 2% of one core",
        dash.cpu_percent / top.cpu_percent.max(1e-9),
        dash.bytes_per_second / top.bytes_per_second.max(1e-9),
        gallery.cpu_percent / top.cpu_percent.max(1e-9),
        gallery.bytes_per_second / top.bytes_per_second.max(1e-9)
    );
}
