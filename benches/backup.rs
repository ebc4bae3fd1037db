//! Backups against `tar` and `rsync` of the same data directory, side by side:
//! a full backup while the daemon serves, an incremental one, and the p99 latency
//! of 4 KiB GETs with and without a backup running.
//!
//!     cargo bench --bench backup                 # 10,000 small objects + 2 GiB of large ones
//!     BACKUP_BENCH_QUICK=1 cargo bench --bench backup   # 2,000 + 256 MiB
//!
//! darkroom's backup runs in-process against a live daemon (writes pause only
//! while the database files are copied) and ends with `syncfs`; `tar` and `rsync`
//! copy the stopped directory and do not sync. Caches are dropped before each
//! copy when the kernel allows it (root), so every contender reads from disk.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::field_reassign_with_default,
    clippy::too_many_lines
)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use darkroom::config::Config;
use darkroom::daemon::Daemon;
use darkroom::service::BackupRequest;
use futures::StreamExt;

const AK: &str = "benchaccess";
const SK: &str = "benchsecretkey";

fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(AK, SK, None, None, "bench"))
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

fn config(data_dir: &Path) -> Config {
    let mut c = Config::default();
    c.data_dir = data_dir.to_path_buf();
    c.s3.addr = "127.0.0.1:0".parse().unwrap();
    c.api.addr = "127.0.0.1:0".parse().unwrap();
    c.s3.access_key = AK.into();
    c.s3.secret_key = SK.into();
    c.s3.buckets.clear();
    c
}

async fn start(data_dir: &Path) -> (Daemon, Client) {
    let daemon = Daemon::start(&config(data_dir), darkroom::clock::system())
        .await
        .unwrap();
    let s3 = client(&format!("http://{}", daemon.s3_addr().unwrap()));
    (daemon, s3)
}

fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn du(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Puts `small` 4 KiB objects and `large_mb` MiB in 32 MiB objects, 8 at a time.
async fn fill(s3: &Client, small: usize, large_mb: usize, tag: &str) {
    let _ = s3.create_bucket().bucket("bench").send().await;
    let small_body = Arc::new(vec![7u8; 4096]);
    futures::stream::iter(0..small)
        .map(|i| {
            let (s3, body) = (s3.clone(), small_body.clone());
            let key = format!("small/{tag}{i:06}");
            async move {
                s3.put_object()
                    .bucket("bench")
                    .key(key)
                    .body(ByteStream::from(body.as_ref().clone()))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let large = vec![42u8; 32 << 20];
    for i in 0..large_mb / 32 {
        let mut body = large.clone();
        body[..8].copy_from_slice(&(i as u64).to_le_bytes());
        body[8] = tag.as_bytes().first().copied().unwrap_or(0);
        s3.put_object()
            .bucket("bench")
            .key(format!("large/{tag}{i:04}"))
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }
}

/// p99 of 4 KiB GETs from 4 clients until `stop` (or `count` each).
async fn p99_gets(
    s3: Client,
    small: usize,
    stop: tokio_util::sync::CancellationToken,
    count: usize,
) -> (f64, usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4 {
        let (s3, stop) = (s3.clone(), stop.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut i = c * 997;
            while !stop.is_cancelled() && lat.len() < count {
                let key = format!("small/a{:06}", i % small);
                let t = Instant::now();
                let out = s3.get_object().bucket("bench").key(key).send().await.unwrap();
                out.body.collect().await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    all.sort_by(f64::total_cmp);
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or(0.0);
    (p99, all.len())
}

fn timed(what: &str, mut cmd: Command) -> f64 {
    let t = Instant::now();
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
    t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("BACKUP_BENCH_QUICK").is_some();
    let (small, large_mb) = if quick { (2_000, 256) } else { (10_000, 2048) };
    let root =
        tempfile::tempdir_in(std::env::var("BACKUP_BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let data = root.path().join("data");
    println!("backup bench: {small} objects of 4 KiB + {large_mb} MiB in 32 MiB objects");
    let (daemon, s3) = start(&data).await;
    let t = Instant::now();
    fill(&s3, small, large_mb, "a").await;
    println!(
        "  filled in {:.1}s; data directory {} MiB",
        t.elapsed().as_secs_f64(),
        du(&data) >> 20
    );

    // GET latency without, then with, a backup running, both with the small
    // objects read once since the caches were dropped (as a serving box has them);
    // the backup reads everything else from disk.
    let dropped = drop_caches();
    for i in 0..small {
        let key = format!("small/a{i:06}");
        let out = s3.get_object().bucket("bench").key(key).send().await.unwrap();
        out.body.collect().await.unwrap();
    }
    let idle = p99_gets(
        s3.clone(),
        small,
        tokio_util::sync::CancellationToken::new(),
        1_000,
    )
    .await;
    let dest = root.path().join("darkroom-backup");
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(p99_gets(s3.clone(), small, stop.clone(), usize::MAX));
    let svc = daemon.services();
    let t = Instant::now();
    let full = svc
        .backup(&BackupRequest {
            dest: Some(dest.to_string_lossy().into_owned()),
            keep: Some(0),
        })
        .await
        .unwrap();
    let full_secs = t.elapsed().as_secs_f64();
    stop.cancel();
    let busy = load.await.unwrap();

    // Incremental: 1% more small objects and one more large one.
    fill(&s3, small / 100, 32, "b").await;
    let t = Instant::now();
    let incr = svc
        .backup(&BackupRequest {
            dest: Some(dest.to_string_lossy().into_owned()),
            keep: Some(0),
        })
        .await
        .unwrap();
    let incr_secs = t.elapsed().as_secs_f64();
    drop(svc);
    daemon.shutdown().await;

    drop_caches();
    let tar_out = root.path().join("data.tar");
    let mut tar = Command::new("tar");
    tar.arg("-cf").arg(&tar_out).arg("-C").arg(&data).arg(".");
    let tar_secs = timed("tar", tar);
    drop_caches();
    let rsync_dest = root.path().join("rsync");
    let mut rsync = Command::new("rsync");
    rsync
        .arg("-a")
        .arg(format!("{}/", data.display()))
        .arg(&rsync_dest);
    let rsync_secs = timed("rsync (apt-get install rsync)", rsync);
    // rsync's second run: its incremental, after the same change.
    let (daemon, s3) = start(&data).await;
    fill(&s3, small / 100, 32, "c").await;
    daemon.shutdown().await;
    let mut rsync = Command::new("rsync");
    rsync
        .arg("-a")
        .arg(format!("{}/", data.display()))
        .arg(&rsync_dest);
    let rsync_incr_secs = timed("rsync again", rsync);

    println!("  caches dropped before each copy: {dropped}");
    println!("  {:<44} {:>9} {:>12}", "", "seconds", "vs tar");
    let row = |name: &str, secs: f64| println!("  {name:<44} {secs:>9.2} {:>11.2}x", secs / tar_secs);
    row("tar of the stopped directory", tar_secs);
    row("rsync -a of the stopped directory", rsync_secs);
    row("darkroom backup, full, while serving", full_secs);
    row("rsync -a again (after +1%)", rsync_incr_secs);
    row("darkroom backup, incremental (after +1%)", incr_secs);
    println!(
        "  full: {} blobs, {} MiB copied, writes paused {} ms; incremental: {} of {} blobs copied, {} MiB",
        full.blobs,
        full.bytes_copied >> 20,
        full.writes_paused_ms,
        incr.blobs_copied,
        incr.blobs,
        incr.bytes_copied >> 20
    );
    println!("  incremental is {:.1}x faster than full", full_secs / incr_secs);
    println!(
        "  p99 of 4 KiB GETs: {:.2} ms idle ({} GETs), {:.2} ms during the backup ({} GETs): {:.2}x",
        idle.0,
        idle.1,
        busy.0,
        busy.1,
        busy.0 / idle.0
    );
}
