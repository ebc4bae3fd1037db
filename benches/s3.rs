//! darkroom's S3 server against s3s-fs, side by side on this machine, with ratios.
//!
//!     cargo bench --bench s3                # full run (100,000-key listing)
//!     S3_BENCH_QUICK=1 cargo bench --bench s3   # smaller counts
//!
//! s3s-fs is the sample server of the s3s crate darkroom builds on (no fsync); it is
//! installed into ~/.cache/darkroom/tools on first use (or set S3S_FS to a binary).
//! Both servers run as release binaries on loopback, driven by the same aws-sdk-s3
//! client code. darkroom runs with its defaults: every PUT is fsynced.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_lossless,
    clippy::many_single_char_names,
    clippy::too_many_lines
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;

const AK: &str = "benchaccess";
const SK: &str = "benchsecretkey";

struct Server {
    name: &'static str,
    child: Child,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(port: u16) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(AK, SK, None, None, "bench"))
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

async fn wait_ready(name: &str, c: &Client) {
    let mut last = None;
    for _ in 0..600 {
        match c.list_buckets().send().await {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not come up: {last:?}");
}

fn s3s_fs_binary() -> PathBuf {
    if let Ok(p) = std::env::var("S3S_FS") {
        return PathBuf::from(p);
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    let root = home.join(".cache/darkroom/tools");
    let bin = root.join("bin/s3s-fs");
    if !bin.exists() {
        eprintln!("installing s3s-fs 0.14.1 into {} ...", root.display());
        let st = Command::new("cargo")
            .args([
                "install",
                "s3s-fs",
                "--version",
                "0.14.1",
                "--features",
                "binary",
                "--root",
            ])
            .arg(&root)
            .env("CARGO_TARGET_DIR", home.join(".cache/darkroom/tools-target"))
            .status()
            .unwrap();
        assert!(st.success(), "cargo install s3s-fs failed");
    }
    bin
}

async fn start_darkroom() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args([
            "serve",
            "--s3-addr",
            &format!("127.0.0.1:{port}"),
            "--api-addr",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .env("DARKROOM_S3__ACCESS_KEY", AK)
        .env("DARKROOM_S3__SECRET_KEY", SK)
        .env("DARKROOM_S3__BUCKETS", "[]")
        .env("DARKROOM_LOG__LEVEL", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = client(port);
    wait_ready("darkroom", &client).await;
    Server {
        name: "darkroom",
        child,
        client,
        _dir: dir,
    }
}

async fn start_s3s_fs(bin: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            AK,
            "--secret-key",
            SK,
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = client(port);
    wait_ready("s3s-fs", &client).await;
    Server {
        name: "s3s-fs",
        child,
        client,
        _dir: dir,
    }
}

/// Runs `n` operations with `conc` in flight; returns operations per second.
async fn run<F, Fut>(n: usize, conc: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(op)
        .buffer_unordered(conc)
        .collect::<Vec<()>>()
        .await;
    n as f64 / t.elapsed().as_secs_f64()
}

struct Row {
    what: String,
    unit: &'static str,
    darkroom: f64,
    s3s_fs: f64,
}

async fn measure(s: &Server, small_n: usize, list_n: usize) -> Vec<(String, &'static str, f64)> {
    let c = &s.client;
    let mut out = Vec::new();
    c.create_bucket().bucket("bench").send().await.unwrap();
    let small = bytes::Bytes::from(vec![7u8; 4096]);
    for conc in [1, 32] {
        let ops = run(small_n, conc, |i| {
            let c = c.clone();
            let body = small.clone();
            async move {
                c.put_object()
                    .bucket("bench")
                    .key(format!("small/c{conc}/{i:08}"))
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
        eprintln!(
            "{}: PUT 4 KiB x{small_n}, {conc} client(s): {ops:.0} ops/s",
            s.name
        );
        out.push((format!("PUT 4 KiB, {conc} client(s)"), "ops/s", ops));
        let ops = run(small_n, conc, |i| {
            let c = c.clone();
            async move {
                let o = c
                    .get_object()
                    .bucket("bench")
                    .key(format!("small/c{conc}/{i:08}"))
                    .send()
                    .await
                    .unwrap();
                o.body.collect().await.unwrap();
            }
        })
        .await;
        eprintln!(
            "{}: GET 4 KiB x{small_n}, {conc} client(s): {ops:.0} ops/s",
            s.name
        );
        out.push((format!("GET 4 KiB, {conc} client(s)"), "ops/s", ops));
    }
    let big = bytes::Bytes::from(vec![9u8; 64 * 1024 * 1024]);
    let rounds = 4;
    let t = Instant::now();
    for i in 0..rounds {
        c.put_object()
            .bucket("bench")
            .key(format!("big/{i}"))
            .body(ByteStream::from(big.clone()))
            .send()
            .await
            .unwrap();
    }
    out.push((
        "PUT 64 MiB".into(),
        "MB/s",
        (rounds * 64) as f64 * 1.048_576 / t.elapsed().as_secs_f64(),
    ));
    let t = Instant::now();
    for i in 0..rounds {
        let o = c
            .get_object()
            .bucket("bench")
            .key(format!("big/{i}"))
            .send()
            .await
            .unwrap();
        let b = o.body.collect().await.unwrap().into_bytes();
        assert_eq!(b.len(), big.len());
    }
    out.push((
        "GET 64 MiB".into(),
        "MB/s",
        (rounds * 64) as f64 * 1.048_576 / t.elapsed().as_secs_f64(),
    ));

    eprintln!("{}: 64 MiB done; writing {list_n} keys for the listing", s.name);
    c.create_bucket().bucket("listing").send().await.unwrap();
    let tiny = bytes::Bytes::from_static(b"x");
    run(list_n, 32, |i| {
        let c = c.clone();
        let body = tiny.clone();
        async move {
            c.put_object()
                .bucket("listing")
                .key(format!("k/{i:08}"))
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
        }
    })
    .await;
    let t = Instant::now();
    let mut token = None;
    let mut seen = 0;
    loop {
        let page = c
            .list_objects_v2()
            .bucket("listing")
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        seen += page.contents().len();
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_string);
    }
    assert_eq!(seen, list_n, "{} listed {seen} of {list_n} keys", s.name);
    out.push((
        format!("ListObjectsV2, all {list_n} keys"),
        "s (lower is better)",
        t.elapsed().as_secs_f64(),
    ));
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` runs this too; only `cargo bench` (--bench) measures.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = std::env::var_os("S3_BENCH_QUICK").is_some();
    let (small_n, list_n) = if quick { (500, 5_000) } else { (2_000, 100_000) };
    let s3s_fs = s3s_fs_binary();

    let d = start_darkroom().await;
    let dm = measure(&d, small_n, list_n).await;
    drop(d);
    let f = start_s3s_fs(&s3s_fs).await;
    let fm = measure(&f, small_n, list_n).await;
    drop(f);

    let rows: Vec<Row> = dm
        .into_iter()
        .zip(fm)
        .map(|((what, unit, darkroom), (_, _, s3s_fs))| Row {
            what,
            unit,
            darkroom,
            s3s_fs,
        })
        .collect();
    println!(
        "\ndarkroom vs s3s-fs 0.14.1 ({} cores, loopback, aws-sdk-s3 client)",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<34} {:>12} {:>12} {:>8}  unit",
        "workload", "darkroom", "s3s-fs", "ratio"
    );
    for r in rows {
        let ratio = if r.unit.starts_with('s') {
            r.s3s_fs / r.darkroom
        } else {
            r.darkroom / r.s3s_fs
        };
        println!(
            "{:<34} {:>12.1} {:>12.1} {:>7.2}x  {}",
            r.what, r.darkroom, r.s3s_fs, ratio, r.unit
        );
    }
    println!("ratio > 1 means darkroom is faster. darkroom fsyncs every object; s3s-fs does not.");
}
