//! What the API pushes out: the Server-Sent Events stream with `Last-Event-ID`
//! resume, job webhooks (signed, retried) and built-in alerts firing and
//! resolving to a notifier — each against a real local receiver — plus the
//! Prometheus metrics a finished job leaves, checked by `promtool`, and the
//! shipped Prometheus rules checked and unit-tested by `promtool`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use darkroom::alerts::{NotifierConfig, NotifierKind, RuleConfig, RuleKind, Severity, sign};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api_support::Api;
use crate::dispatch::{daemon, finished};
use crate::fake_comfy::FakeComfy;

fn noop(color: u32) -> Value {
    json!({"template": "noop", "params": {"color": color, "width": 64, "height": 64}})
}

/// An SSE stream read event by event.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug)]
struct SseEvent {
    id: Option<u64>,
    event: String,
    data: Value,
}

impl Sse {
    async fn open(base: &str, last_id: Option<u64>) -> Self {
        let mut req = reqwest::Client::new().get(format!("{base}/api/v1/events"));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            resp,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        v.trim().clone_into(&mut event);
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                return SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
            let chunk = crate::support::bounded("the next event", self.resp.chunk())
                .await
                .unwrap()
                .expect("the event stream ended");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads until job `id` has succeeded; returns the event ids seen for it.
    async fn until_succeeded(&mut self, id: &str) -> Vec<u64> {
        let mut ids = Vec::new();
        loop {
            let e = self.next().await;
            if e.event == "gpu" {
                continue;
            }
            assert_eq!(e.event, "job", "{e:?}");
            assert_eq!(e.data["type"], "job");
            let seq = e.id.unwrap();
            assert_eq!(e.data["id"], json!(seq));
            if e.data["data"]["id"] == json!(id) {
                ids.push(seq);
                if e.data["data"]["to"] == "succeeded" {
                    return ids;
                }
            }
        }
    }
}

#[tokio::test]
async fn events_stream_job_transitions_and_resume_after_last_event_id() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let mut live = Sse::open(&api.base, None).await;
    let id = api.post("/api/v1/jobs", Some(&noop(1))).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = live.until_succeeded(&id).await;
    assert!(
        seen.len() >= 3,
        "created, running, succeeded (and progress): {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // Reconnecting after the first event replays the rest from the backlog.
    let mut resumed = Sse::open(&api.base, Some(seen[0])).await;
    let replayed = resumed.until_succeeded(&id).await;
    assert_eq!(replayed, seen[1..]);

    // An id from before the backlog (or another run) asks the client to resync.
    let mut stale = Sse::open(&api.base, Some(1)).await;
    let first = stale.next().await;
    assert_eq!(first.event, "resync", "{first:?}");

    // The status snapshot says where to resume from.
    let status = api.get("/api/v1/status").await.json();
    assert!(status["last_event_id"].as_u64().unwrap() >= *seen.last().unwrap());
}

/// A receiver that answers `statuses` in turn (then 200) and passes every
/// request to the test.
async fn receiver(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let n = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let status = statuses.get(i).copied().unwrap_or(200);
            let _ = tx.send((headers, body));
            async move { StatusCode::from_u16(status).unwrap() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn job_webhook_is_signed_and_retried() {
    let (url, mut hits) = receiver(vec![500]).await;
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |c| {
        c.api.webhook_secret = "whsec-test".into();
        c.api.webhook_backoff_ms = 1;
        // The receiver is on loopback: allowed by name of its address.
        c.api.allowed_targets = vec!["127.0.0.1".into()];
    })
    .await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let mut body = noop(2);
    body["webhook"] = json!(url);
    let id = api.post("/api/v1/jobs", Some(&body)).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, first) = crate::support::bounded("a webhook delivery", hits.recv())
        .await
        .unwrap();
    let (headers, second) = crate::support::bounded("a webhook delivery", hits.recv())
        .await
        .unwrap();
    assert_eq!(first, second, "a retry sends the same body");
    assert_eq!(
        header(&headers, "x-darkroom-signature"),
        sign("whsec-test", &second)
    );
    assert_eq!(header(&headers, "x-darkroom-event"), "job.succeeded");
    assert_eq!(header(&headers, "content-type"), "application/json");
    let sent: Value = serde_json::from_slice(&second).unwrap();
    assert_eq!(sent["event"], "job.succeeded");
    assert_eq!(sent["job"]["id"], json!(id));
    assert!(sent["job"]["result"]["outputs"][0]["url"].is_string());
    assert_eq!(sent["job"]["payload"]["params"]["color"], json!(2));
    assert!(sent["job"]["payload"].get("workflow").is_none());

    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics.contains("darkroom_webhook_deliveries_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("darkroom_webhook_deliveries_total{outcome=\"retried\"} 1"));
}

#[tokio::test]
async fn alert_rules_fire_and_resolve_to_a_notifier() {
    let (url, mut hits) = receiver(Vec::new()).await;
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    comfy.ctl.set_gpu(100 << 20, 5 << 20);
    let server = daemon(&[&comfy], |c| {
        c.alerts.evaluate_interval_ms = 10;
        c.alerts.rules = vec![
            // Above 1: the first job, queued for a moment before it is claimed,
            // must not make the alert flap.
            rule("Backlog", RuleKind::QueueSizeAbove, 1.0, Severity::Warning),
            rule("VramFull", RuleKind::VramUsageAbove, 0.9, Severity::Critical),
        ];
        c.alerts.notifiers = vec![NotifierConfig {
            kind: NotifierKind::Webhook,
            url: url.clone(),
            secret: Some("alert-secret".into()),
            max_attempts: 3,
            backoff_ms: 1,
        }];
    })
    .await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let first = api.post("/api/v1/jobs", Some(&noop(1))).await.json();
    comfy.ctl.wait_held().await;
    let second = api.post("/api/v1/jobs", Some(&noop(2))).await.json();
    let third = api.post("/api/v1/jobs", Some(&noop(3))).await.json();

    let mut firing = Vec::new();
    while firing.len() < 2 {
        let (headers, body) = crate::support::bounded("a webhook delivery", hits.recv())
            .await
            .unwrap();
        assert_eq!(
            header(&headers, "x-darkroom-signature"),
            sign("alert-secret", &body)
        );
        let n: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(n["status"], "firing", "{n}");
        firing.push(n["alert"]["name"].as_str().unwrap().to_owned());
    }
    firing.sort();
    assert_eq!(firing, ["Backlog", "VramFull"]);
    let status = api.get("/api/v1/status").await.json();
    let active: Vec<&str> = status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(active, ["VramFull", "Backlog"], "critical first");
    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics.contains("darkroom_alerts_firing{alertname=\"VramFull\",severity=\"critical\"} 1"),
        "{metrics}"
    );
    // The changes are in the event stream too.
    let backlog = server.daemon.events().subscribe(Some(0)).backlog;
    let alert_events = backlog
        .iter()
        .filter(|e| matches!(e.kind, darkroom::events::EventKind::Alert(_)))
        .count();
    assert!(alert_events >= 2, "{backlog:?}");

    // The queue drains and VRAM frees up: both resolve.
    comfy.ctl.set_gpu(100 << 20, 80 << 20);
    comfy.ctl.hold(false);
    comfy.ctl.release();
    let mut resolved = Vec::new();
    while resolved.len() < 2 {
        let (_, body) = crate::support::bounded("a webhook delivery", hits.recv())
            .await
            .unwrap();
        let n: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(n["status"], "resolved", "{n}");
        resolved.push(n["alert"]["name"].as_str().unwrap().to_owned());
    }
    resolved.sort();
    assert_eq!(resolved, ["Backlog", "VramFull"]);
    for job in [first, second, third] {
        finished(
            server.daemon.queue(),
            job["id"].as_str().unwrap().parse().unwrap(),
        )
        .await;
    }
}

fn rule(name: &str, kind: RuleKind, threshold: f64, severity: Severity) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        kind,
        threshold,
        for_seconds: 0,
        window_seconds: 0,
        severity,
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

fn promtool(args: &[&str], stdin: Option<&str>, dir: &std::path::Path) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: the test command installs the prometheus package");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        std::io::Write::write_all(&mut input, text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_finished_job_shows_in_the_seed_exporters_metrics() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.set_gpu(24 << 30, 16 << 30);
    let server = daemon(&[&comfy], |_| {}).await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let job = api.post("/api/v1/jobs?wait=30", Some(&noop(3))).await.json();
    assert_eq!(job["status"], "succeeded");
    let text = api.get("/metrics").await.text;
    let b = &comfy.url;
    for (series, want) in [
        (
            "comfyui_generations_total{status=\"success\",model=\"none\"}".to_owned(),
            1.0,
        ),
        ("comfyui_generation_duration_seconds_count".to_owned(), 1.0),
        ("comfyui_queue_size".to_owned(), 0.0),
        ("comfyui_active_generations".to_owned(), 0.0),
        (
            format!("comfyui_vram_total_bytes{{backend=\"{b}\"}}"),
            f64::from(24u32 << 20) * 1024.0,
        ),
        (
            format!("comfyui_vram_usage_bytes{{backend=\"{b}\"}}"),
            f64::from(8u32 << 20) * 1024.0,
        ),
        (format!("darkroom_backend_up{{backend=\"{b}\"}}"), 1.0),
        (format!("darkroom_backend_in_flight{{backend=\"{b}\"}}"), 0.0),
        (
            "darkroom_bucket_objects{bucket=\"comfyui-outputs\"}".to_owned(),
            2.0,
        ),
        ("darkroom_cache_requests_total{result=\"miss\"}".to_owned(), 1.0),
        ("darkroom_cache_entries".to_owned(), 1.0),
        ("darkroom_queue_jobs{status=\"succeeded\"}".to_owned(), 1.0),
        ("darkroom_queue_wait_seconds_count".to_owned(), 1.0),
        ("darkroom_job_retries_total".to_owned(), 0.0),
    ] {
        assert!(
            (value(&text, &series) - want).abs() < 1e-6,
            "{series} != {want} in:\n{text}"
        );
    }
    assert!(value(&text, "darkroom_data_total_bytes") > 0.0);
    promtool(&["check", "metrics"], Some(&text), std::path::Path::new("."));
}

#[test]
fn shipped_prometheus_config_and_rules_pass_promtool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/monitoring");
    promtool(&["check", "config", "prometheus.yml"], None, &dir);
    promtool(&["check", "rules", "darkroom-rules.yml"], None, &dir);
    promtool(&["test", "rules", "promtool-tests.yml"], None, &dir);
    let dashboard = std::fs::read_to_string(dir.join("grafana/dashboards/darkroom.json")).unwrap();
    let d: Value = serde_json::from_str(&dashboard).unwrap();
    assert_eq!(d["uid"], "darkroom");
    // The built-in defaults and the Prometheus rules carry the same alert names.
    let rules = std::fs::read_to_string(dir.join("darkroom-rules.yml")).unwrap();
    for r in darkroom::alerts::AlertsConfig::default().rules {
        assert!(
            rules.contains(&format!("alert: {}", r.name)),
            "{} is missing from darkroom-rules.yml",
            r.name
        );
    }
}

#[tokio::test]
async fn a_webhook_cut_off_by_a_restart_is_delivered_after_it() {
    // The first request is never answered (the daemon stops while it waits).
    let (tx, mut hits) = mpsc::unbounded_channel();
    let n = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let first = n.fetch_add(1, Ordering::SeqCst) == 0;
            let _ = tx.send(body);
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::test_config(&dir);
    crate::dispatch::configure(&mut config, std::slice::from_ref(&comfy.url));
    config.api.allow_private_targets = true;
    let first = darkroom::daemon::Daemon::start(&config, darkroom::clock::system())
        .await
        .unwrap();
    let api = Api::new(first.api_addr(), None).await;
    let mut body = noop(7);
    body["webhook"] = json!(url);
    let id = api.post("/api/v1/jobs", Some(&body)).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cut_off: Value = serde_json::from_slice(
        &crate::support::bounded("a webhook delivery", hits.recv())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cut_off["job"]["id"], json!(id));
    first.shutdown().await;

    let second = darkroom::daemon::Daemon::start(&config, darkroom::clock::system())
        .await
        .unwrap();
    // A guard, not a timing: without the catch-up nothing ever arrives.
    let redelivered = tokio::time::timeout(std::time::Duration::from_secs(60), hits.recv())
        .await
        .expect("the webhook was not delivered after the restart");
    let again: Value = serde_json::from_slice(&redelivered.unwrap()).unwrap();
    assert_eq!(again["job"]["id"], json!(id));
    assert_eq!(again["event"], "job.succeeded");
    second.shutdown().await;
}

/// A job webhook may not point at this box, its link-local metadata address or a
/// private network: refused at submit naming `webhook`, and at delivery a redirect
/// to such an address is not followed (the check holds as the connection is made).
#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused_unless_allowed() {
    let comfy = FakeComfy::start().await;
    let strict = daemon(&[&comfy], |_| {}).await;
    let api = Api::new(strict.daemon.api_addr(), None).await;
    for (url, why) in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://localhost:9/hook", "loopback"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://10.0.0.7/hook", "private"),
        ("http://[::ffff:192.168.1.1]/hook", "private"),
    ] {
        let mut body = noop(1);
        body["webhook"] = json!(url);
        let r = api.post("/api/v1/jobs", Some(&body)).await;
        assert_eq!(
            (r.status, r.error_field().as_deref()),
            (400, Some("webhook")),
            "{url}: {}",
            r.text
        );
        assert!(r.text.contains(why), "{url}: {}", r.text);
    }

    // Allowed 127.0.0.1 redirects to 127.0.0.2, which is not allowed: never reached.
    let (hidden_tx, mut hidden) = mpsc::unbounded_channel::<()>();
    let inner = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let _ = hidden_tx.send(());
            async { StatusCode::OK }
        }),
    );
    let inner_listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let target = format!("http://{}/hook", inner_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(inner_listener, inner).await.unwrap() });
    let (hits_tx, mut hits) = mpsc::unbounded_channel::<()>();
    let outer = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let _ = hits_tx.send(());
            let to = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, outer).await.unwrap() });
    let server = daemon(&[&comfy], |c| {
        c.api.allowed_targets = vec!["127.0.0.1".into()];
        c.api.webhook_max_attempts = 2;
        c.api.webhook_backoff_ms = 1;
    })
    .await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let mut body = noop(2);
    body["webhook"] = json!(url);
    assert_eq!(api.post("/api/v1/jobs", Some(&body)).await.status, 202);
    // A second attempt starts only once the first is over, its redirect refused
    // (a followed redirect would have delivered it, and no retry would come).
    for n in ["first", "second"] {
        crate::support::bounded(&format!("the {n} attempt's hit"), hits.recv())
            .await
            .unwrap();
    }
    assert!(
        hidden.try_recv().is_err(),
        "the redirect to 127.0.0.2 was followed"
    );
}
