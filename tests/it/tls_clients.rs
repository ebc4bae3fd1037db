//! darkroom's own clients over TLS with a private CA the tests make: ComfyUI
//! backends over https and wss (the fake ComfyUI behind darkroom's TLS listener),
//! `storage.s3` and `s3://` backups on another darkroom's S3 listener over TLS,
//! each trusting `tls.ca_file` / `--ca-file` — and each refusing a certificate
//! from a CA it was not given, saying so, with no job lost.

use std::path::Path;
use std::time::Duration;

use darkroom::comfy::{ComfyClient, ComfyError, ComfyEvent};
use darkroom::config::Config;
use darkroom::daemon::Daemon;
use darkroom::dispatch::{ExternalS3, JobRequest, JobResult, OutputSink, S3Sink, StorageBackend};
use darkroom::queue::JobStatus;
use darkroom::tls::{CertPair, Trust};
use futures::StreamExt;
use serde_json::{Value, json};
use ulid::Ulid;

use crate::dispatch::{configure, finished};
use crate::fake_comfy::{FakeComfy, PNG};
use crate::support::{ACCESS_KEY, SECRET_KEY, bounded, server_with, test_config};
use crate::tls::{Pair, TestCa, use_pair};

fn cert_pair(p: &Pair) -> CertPair {
    CertPair {
        cert_file: p.cert.clone(),
        key_file: p.key.clone(),
    }
}

fn external(endpoint: &str) -> ExternalS3 {
    ExternalS3 {
        endpoint: endpoint.to_owned(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        ..ExternalS3::default()
    }
}

async fn submit_noop(daemon: &Daemon) -> Ulid {
    let templates = darkroom::comfy::Templates::embedded().unwrap();
    let Value::Object(params) = json!({"width": 64, "height": 64}) else {
        unreachable!()
    };
    let job = JobRequest::template("noop", params)
        .into_new_job(&templates)
        .unwrap();
    daemon.queue().enqueue(job).await.unwrap().job.id
}

fn result(job: &darkroom::queue::Job) -> JobResult {
    assert_eq!(job.status, JobStatus::Succeeded, "job: {job:#?}");
    serde_json::from_value(job.result.clone().unwrap()).unwrap()
}

/// `darkroom ARGS` as a child process (no CA file from the environment).
async fn darkroom(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(args)
        .env_remove("DARKROOM_CA_FILE")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("DARKROOM_LOG__LEVEL", "warn")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_on_comfyui_over_https_and_wss_into_an_https_s3_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("darkroom test CA");
    let ca_file = ca.write_ca(&dir.path().join("ca.pem"));
    let (comfy, seen) = FakeComfy::start_tls(&cert_pair(&ca.leaf(dir.path(), "comfy"))).await;
    assert!(comfy.url.starts_with("https://"), "{}", comfy.url);
    // Outputs go to another darkroom's S3 listener, also over TLS.
    let store_pair = ca.leaf(dir.path(), "store");
    let store = server_with(|c| use_pair(c, &store_pair)).await;
    let store_url = store.daemon.s3_url().unwrap();
    assert!(store_url.starts_with("https://"), "{store_url}");

    let node_dir = tempfile::tempdir().unwrap();
    let mut c: Config = test_config(&node_dir);
    configure(&mut c, std::slice::from_ref(&comfy.url));
    c.s3.enabled = false;
    c.storage.backend = StorageBackend::S3;
    c.storage.s3 = external(&store_url);
    c.tls.ca_file.clone_from(&ca_file);
    let node = Daemon::start(&c, darkroom::clock::system()).await.unwrap();

    let id = submit_noop(&node).await;
    let r = result(&finished(node.queue(), id).await);
    assert_eq!(r.backend.as_deref(), Some(comfy.url.as_str()));
    assert!(
        *seen.websockets.borrow() >= 1,
        "no WebSocket was opened over wss://"
    );
    assert_eq!(*seen.refused.borrow(), 0, "a handshake with the fake failed");
    // The image reached the https store, through storage.s3 trusting the CA.
    let out = &r.outputs[0];
    let stored = node
        .dispatcher()
        .read_output(&out.bucket, &out.key)
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), PNG);
    // Its URL is presigned for the https endpoint and verifies with the CA.
    let url = out.url.as_deref().unwrap();
    assert!(url.starts_with(&format!("{store_url}/")), "{url}");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let got = client.get(url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), PNG);
    node.shutdown().await;
    store.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_comfyui_certificate_fails_the_health_check_and_the_job_waits() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("darkroom test CA");
    let ca_file = ca.write_ca(&dir.path().join("ca.pem"));
    let other_file = TestCa::new("someone else").write_ca(&dir.path().join("other.pem"));
    let (comfy, seen) = FakeComfy::start_tls(&cert_pair(&ca.leaf(dir.path(), "comfy"))).await;

    // The client alone: wss:// refused without the CA or with another one, and
    // accepted with it (ComfyUI's greeting arrives).
    for trust in [Trust::default(), Trust::load(Some(&other_file)).unwrap()] {
        let client = ComfyClient::with_trust(&comfy.url, Duration::from_secs(30), &trust).unwrap();
        let Err(e) = client.connect_events("probe").await else {
            panic!("wss:// trusted a certificate from a CA it was not given")
        };
        assert!(matches!(e, ComfyError::Untrusted { .. }), "{e}");
        let e = client.system_stats().await.unwrap_err();
        assert!(matches!(e, ComfyError::Untrusted { .. }), "{e}");
    }
    let trusted = Trust::load(Some(&ca_file)).unwrap();
    let client = ComfyClient::with_trust(&comfy.url, Duration::from_secs(30), &trusted).unwrap();
    let mut events = client.connect_events("probe").await.unwrap();
    let first = bounded("the greeting over wss://", events.next()).await;
    assert!(matches!(first, Some(Ok(ComfyEvent::Status { .. }))), "{first:?}");
    drop(events);

    // The daemon trusting another CA: the backend is never healthy, its error
    // says why, and the job stays queued.
    let data = tempfile::tempdir().unwrap();
    let mut c: Config = test_config(&data);
    configure(&mut c, std::slice::from_ref(&comfy.url));
    c.tls.ca_file.clone_from(&other_file);
    let daemon = Daemon::start(&c, darkroom::clock::system()).await.unwrap();
    let id = submit_noop(&daemon).await;
    let error = bounded("the backend's health check to fail", async {
        loop {
            if let Some(e) = daemon.dispatcher().backends()[0].last_error.clone() {
                return e;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        error.contains("certificate is not trusted") && error.contains("tls.ca_file"),
        "{error}"
    );
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert!(!daemon.dispatcher().backends()[0].healthy);
    let job = daemon.queue().get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued, "{job:#?}");
    assert_eq!(comfy.ctl.prompts_received(), 0);
    assert!(*seen.refused.borrow() >= 1);
    daemon.shutdown().await;

    // Started again trusting the right CA, the job that waited runs.
    c.tls.ca_file = ca_file;
    let daemon = Daemon::start(&c, darkroom::clock::system()).await.unwrap();
    let r = result(&finished(daemon.queue(), id).await);
    assert_eq!(r.backend.as_deref(), Some(comfy.url.as_str()));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_sinks_and_backups_on_an_https_endpoint_trust_the_private_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("darkroom test CA");
    let ca_file = ca.write_ca(&dir.path().join("ca.pem"));
    let other_file = TestCa::new("someone else").write_ca(&dir.path().join("other.pem"));
    let pair = ca.leaf(dir.path(), "target");
    let target = server_with(|c| use_pair(c, &pair)).await;
    let endpoint = target.daemon.s3_url().unwrap();

    // storage.s3's sink: refused with another CA (the error says why), at home
    // with the right one.
    let wrong = S3Sink::with_trust(&external(&endpoint), &Trust::load(Some(&other_file)).unwrap()).unwrap();
    let e = wrong.ensure_bucket("backups").await.unwrap_err().to_string();
    assert!(
        e.contains("certificate is not trusted (invalid peer certificate: UnknownIssuer)")
            && e.contains("tls.ca_file"),
        "{e}"
    );
    let sink = S3Sink::with_trust(&external(&endpoint), &Trust::load(Some(&ca_file)).unwrap()).unwrap();
    sink.ensure_bucket("backups").await.unwrap();
    assert_eq!(
        sink.health("backups").await.error,
        None,
        "the sink's health check over TLS"
    );

    // A daemon backing up to the https endpoint through `[backup.s3]` and
    // tls.ca_file.
    let source = server_with(|c| {
        c.backup.s3 = external(&endpoint);
        c.tls.ca_file.clone_from(&ca_file);
    })
    .await;
    source.client.create_bucket().bucket("art").send().await.unwrap();
    source
        .client
        .put_object()
        .bucket("art")
        .key("k")
        .body(aws_sdk_s3::primitives::ByteStream::from(vec![7u8; 50_000]))
        .send()
        .await
        .unwrap();
    let api = format!("http://{}", source.daemon.api_addr());
    let (code, out) = darkroom(&["backup", "s3://backups/box", "--url", &api, "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["blobs"], 1, "{out}");

    // The CLI on its own: --ca-file for backup --list and restore.
    let list = |ca: &Path| {
        let args = [
            "backup",
            "s3://backups/box",
            "--list",
            "--s3-endpoint",
            &endpoint,
            "--ca-file",
            path(ca),
        ]
        .map(str::to_owned);
        async move { darkroom(&args.each_ref().map(String::as_str)).await }
    };
    let (code, out) = list(&ca_file).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("complete"), "{out}");
    let (code, out) = list(&other_file).await;
    assert_ne!(code, 0, "backup --list trusted a CA it was not given: {out}");
    assert!(
        out.contains("certificate is not trusted (invalid peer certificate: UnknownIssuer)"),
        "{out}"
    );
    let restored = dir.path().join("restored");
    let (code, out) = darkroom(&[
        "restore",
        "s3://backups/box",
        "--data",
        path(&restored),
        "--s3-endpoint",
        &endpoint,
        "--ca-file",
        path(&ca_file),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = darkroom(&[
        "restore",
        "s3://backups/box",
        "--data",
        path(&dir.path().join("refused")),
        "--s3-endpoint",
        &endpoint,
    ])
    .await;
    assert_ne!(code, 0, "restore trusted an unknown CA: {out}");
    source.daemon.shutdown().await;
    target.daemon.shutdown().await;
}
