//! The operational endpoints of the HTTP API: health, readiness, and Prometheus
//! metrics that count real S3 traffic and read the queue, checked by `promtool`.

use std::io::Write;
use std::process::{Command, Stdio};

use aws_sdk_s3::primitives::ByteStream;
use darkroom::queue::NewJob;

use crate::support::server;

fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn generation_counters_are_exported_before_the_first_generation() {
    let s = server().await;
    let text = reqwest::get(format!("http://{}/metrics", s.daemon.api_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A failure-rate rule reads 0 on a fresh node, not nothing.
    for status in ["success", "failure"] {
        let series = format!("comfyui_generations_total{{status=\"{status}\",model=\"\"}}");
        assert_eq!(value(&text, &series), 0, "{series}");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = server().await;
    let api = format!("http://{}", s.daemon.api_addr());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{api}/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(format!("{api}/readyz")).send().await.unwrap().status(),
        200
    );

    let c = &s.client;
    c.create_bucket().bucket("metered").send().await.unwrap();
    c.put_object()
        .bucket("metered")
        .key("a.png")
        .body(ByteStream::from(vec![1u8; 5000]))
        .send()
        .await
        .unwrap();
    let got = c
        .get_object()
        .bucket("metered")
        .key("a.png")
        .send()
        .await
        .unwrap();
    got.body.collect().await.unwrap();
    assert!(
        c.get_object()
            .bucket("metered")
            .key("missing")
            .send()
            .await
            .is_err()
    );
    for i in 0..3 {
        s.daemon
            .queue()
            .enqueue(NewJob::new("comfyui", serde_json::json!({ "n": i })))
            .await
            .unwrap();
    }

    let r = http.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert_eq!(
        value(
            &text,
            r#"darkroom_s3_requests_total{operation="PutObject",outcome="ok"}"#
        ),
        1
    );
    assert_eq!(
        value(
            &text,
            r#"darkroom_s3_requests_total{operation="GetObject",outcome="ok"}"#
        ),
        1
    );
    assert_eq!(
        value(
            &text,
            r#"darkroom_s3_requests_total{operation="GetObject",outcome="NoSuchKey"}"#
        ),
        1
    );
    assert_eq!(value(&text, "darkroom_s3_received_bytes_total"), 5000);
    assert_eq!(value(&text, "darkroom_s3_sent_bytes_total"), 5000);
    assert_eq!(value(&text, r#"darkroom_queue_jobs{status="queued"}"#), 3);
    assert_eq!(value(&text, r#"darkroom_queue_jobs{status="running"}"#), 0);
    assert!(
        text.contains("darkroom_s3_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("darkroom_build_info{version=\""), "{text}");

    // Prometheus's own linter accepts the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: the test command installs the prometheus package");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
