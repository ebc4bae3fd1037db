//! Shared test support: an in-process daemon on a free port with a temp data dir,
//! and an aws-sdk-s3 client pointed at it.

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use darkroom::clock::{ManualClock, SharedClock};
use darkroom::config::Config;
use darkroom::daemon::Daemon;
use tempfile::TempDir;

/// How long any test waits for something that should happen before calling the
/// feature broken (generous: the machine may be busy; no timing is asserted).
pub const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Awaits `f`, failing the test with `what` if it takes longer than [`WAIT_LIMIT`]
/// — so a broken feature fails instead of hanging the suite.
pub async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT_LIMIT, f)
        .await
        .unwrap_or_else(|elapsed| panic!("gave up waiting for {what}: {elapsed} ({WAIT_LIMIT:?})"))
}

pub const ACCESS_KEY: &str = "darkroom-test";
pub const SECRET_KEY: &str = "darkroom-test-secret";

pub struct TestServer {
    pub daemon: Daemon,
    pub client: Client,
    pub endpoint: String,
    pub dir: TempDir,
}

/// A config for tests: temp data dir, port 0, fixed credentials, no buckets.
pub fn test_config(dir: &TempDir) -> Config {
    let mut c = Config::default();
    c.data_dir = dir.path().join("data");
    c.s3.addr = "127.0.0.1:0".parse().unwrap();
    c.api.addr = "127.0.0.1:0".parse().unwrap();
    c.s3.access_key = ACCESS_KEY.into();
    c.s3.secret_key = SECRET_KEY.into();
    c.s3.buckets.clear();
    c
}

pub async fn server() -> TestServer {
    server_with(|_| {}).await
}

pub async fn server_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    start(tweak, None).await
}

/// A server whose clock only moves when the test says so.
pub async fn server_with_clock(tweak: impl FnOnce(&mut Config), clock: ManualClock) -> TestServer {
    start(tweak, Some(clock)).await
}

async fn start(tweak: impl FnOnce(&mut Config), clock: Option<ManualClock>) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    tweak(&mut config);
    let shared: SharedClock = match &clock {
        Some(c) => Arc::new(c.clone()),
        None => darkroom::clock::system(),
    };
    let daemon = Daemon::start(&config, shared).await.unwrap();
    let endpoint = format!("http://{}", daemon.s3_addr().unwrap());
    let client = client(&endpoint, ACCESS_KEY, SECRET_KEY);
    TestServer {
        daemon,
        client,
        endpoint,

        dir,
    }
}

/// A daemon started in-process on `config` (an existing data directory, say) and
/// an S3 client of it.
pub async fn daemon_on(config: &Config) -> (Daemon, Client) {
    let daemon = Daemon::start(config, darkroom::clock::system()).await.unwrap();
    let endpoint = format!("http://{}", daemon.s3_addr().unwrap());
    (daemon, client(&endpoint, ACCESS_KEY, SECRET_KEY))
}

pub fn client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// The S3 error code of a failed SDK call.
pub fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().map_or_else(|| format!("{e:?}"), str::to_string),
    }
}

/// The HTTP status of a failed SDK call.
pub fn status<T, E, R>(r: Result<T, aws_sdk_s3::error::SdkError<E, R>>) -> u16
where
    T: std::fmt::Debug,
    E: std::fmt::Debug,
    R: std::fmt::Debug + HttpStatus,
{
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.raw_response().map_or(0, HttpStatus::status_code),
    }
}

pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

pub async fn body_bytes(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Counts blob files under a data dir.
pub fn blob_files(data_dir: &std::path::Path) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(data_dir.join("blobs")).unwrap() {
        n += std::fs::read_dir(shard.unwrap().path()).unwrap().count();
    }
    n
}

/// A `darkroom serve` child process (killed when dropped).
pub struct ServeProcess {
    pub child: std::process::Child,
    pub endpoint: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `darkroom serve` on a free port with `data_dir`, the test credentials
/// (unless `configure` removes them) and quiet logs; returns once it listens (it
/// prints its address on stdout: readiness without sleeping).
pub fn spawn_serve(
    data_dir: &std::path::Path,
    configure: impl FnOnce(&mut std::process::Command),
) -> ServeProcess {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_darkroom"));
    cmd.args([
        "serve",
        "--s3-addr",
        "127.0.0.1:0",
        "--api-addr",
        "127.0.0.1:0",
        "--data",
    ])
    .arg(data_dir)
    .env("DARKROOM_S3__ACCESS_KEY", ACCESS_KEY)
    .env("DARKROOM_S3__SECRET_KEY", SECRET_KEY)
    .env("DARKROOM_LOG__LEVEL", "warn")
    .current_dir(data_dir.parent().unwrap())
    .stdout(std::process::Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // The first line, read on a thread that then keeps reading (a closed pipe would
    // make darkroom's later lines fail with EPIPE); the wait for it is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        let _ = tx.send(first);
        std::io::copy(&mut stdout, &mut std::io::sink())
    });
    let line = rx
        .recv_timeout(WAIT_LIMIT)
        .expect("darkroom serve printed nothing within the wait limit");
    let endpoint = line
        .trim()
        .strip_prefix("darkroom: S3 API on ")
        .unwrap_or_else(|| panic!("darkroom serve did not start; first line {line:?}"))
        .to_string();
    ServeProcess { child, endpoint }
}

/// Runs awscli against `endpoint` signed with `(access_key, secret_key)`, no
/// user configuration read.
pub fn aws_as(endpoint: &str, (access_key, secret_key): (&str, &str), args: &[&str]) -> std::process::Output {
    std::process::Command::new("aws")
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("awscli is not installed: run the test command from the README, which installs it")
}
