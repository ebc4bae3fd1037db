//! The HTTP API end to end on a real listener, with the fake ComfyUI behind the
//! dispatcher: submit with `?wait`, downloads with curl, every error status with
//! the field it names, listing with cursors, cancel and retry, auth, status and
//! templates. Every answer is checked against the served OpenAPI document
//! ([`Api`]).

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_support::Api;
use crate::dispatch::{daemon, finished, wait_job};
use crate::fake_comfy::{FakeComfy, PNG};
use crate::support::{TestServer, server_with};

async fn api(server: &TestServer) -> Api {
    Api::new(server.daemon.api_addr(), None).await
}

fn noop(color: u32) -> Value {
    json!({"template": "noop", "params": {"color": color, "width": 64, "height": 64}})
}

#[tokio::test]
async fn submit_with_wait_returns_urls_that_download_with_curl() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let api = api(&server).await;
    let r = api.post("/api/v1/jobs?wait=30", Some(&noop(1))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let job = r.json();
    assert_eq!(job["status"], "succeeded");
    let out = &job["result"]["outputs"][0];
    assert_eq!(out["content_type"], "image/png");
    let url = out["url"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.png");
    // On a blocking thread: the server answering curl runs on this test's runtime.
    let (to, from) = (file.clone(), url.to_owned());
    let curl = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sf", "-o"])
            .arg(&to)
            .arg(&from)
            .status()
            .expect("curl is not installed: the test command installs it")
    })
    .await
    .unwrap();
    assert!(curl.success(), "curl {url} failed");
    assert_eq!(std::fs::read(&file).unwrap(), PNG);

    // The same job by id, and an identical request answered from the cache.
    let id = job["id"].as_str().unwrap();
    let again = api.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!((again.status, again.json()["id"].clone()), (200, json!(id)));
    assert_eq!(again.json()["payload"]["params"]["color"], json!(1));
    let cached = api.post("/api/v1/jobs?wait=30", Some(&noop(1))).await.json();
    assert_eq!(cached["result"]["cache_hit"], json!(true));
    assert_eq!(comfy.ctl.prompts_received(), 1);
}

#[tokio::test]
async fn submit_without_wait_is_accepted_and_idempotency_keys_dedupe() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let server = daemon(&[&comfy], |_| {}).await;
    let api = api(&server).await;
    let body = noop(2).to_string().into_bytes();
    let key = [("Idempotency-Key", "order-42")];
    let first = api
        .call(Method::POST, "/api/v1/jobs", Some(body.clone()), &key)
        .await;
    assert_eq!(first.status, 202, "{}", first.text);
    let second = api.call(Method::POST, "/api/v1/jobs", Some(body), &key).await;
    assert_eq!(second.status, 202);
    assert_eq!(second.json()["id"], first.json()["id"]);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    comfy.ctl.wait_held().await;
    // A wait that runs out answers 202 with the job still running.
    let waited = api.post("/api/v1/jobs?wait=1", Some(&noop(3))).await;
    assert_eq!(waited.status, 202);
    assert_eq!(waited.json()["status"], "queued");
    comfy.ctl.hold(false);
    comfy.ctl.release();
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |c| c.api.max_body_bytes = 4096).await;
    let api = api(&server).await;
    let cases = [
        (
            json!({"template": "noop", "params": {"width": 0}}),
            "params.width",
        ),
        (json!({"template": "noop", "params": {"nope": 1}}), "params.nope"),
        (json!({"template": "nope"}), "template"),
        (json!({}), "template"),
        (json!({"template": "noop", "colour": 1}), "colour"),
        (json!({"template": "noop", "workflow": {}}), "workflow"),
        (json!({"template": "noop", "webhook": "ftp://x"}), "webhook"),
    ];
    for (body, field) in cases {
        let r = api.post("/api/v1/jobs", Some(&body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error_field().as_deref(), Some(field), "{body}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "invalid_request");
    }
    let r = api
        .call(Method::POST, "/api/v1/jobs", Some(b"{not json".to_vec()), &[])
        .await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("body")));
    let r = api.post("/api/v1/jobs?wait=301", Some(&noop(1))).await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("wait")));
    let big = json!({"template": "noop", "params": {"filename_prefix": "x".repeat(5000)}});
    let r = api.post("/api/v1/jobs", Some(&big)).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");

    for (path, field) in [
        ("/api/v1/jobs?status=done", "status"),
        ("/api/v1/jobs?limit=0", "limit"),
        ("/api/v1/jobs?limit=ten", "limit"),
        ("/api/v1/jobs?cursor=garbage", "cursor"),
        ("/api/v1/jobs/not-an-id", "id"),
    ] {
        let r = api.get(path).await;
        assert_eq!(
            (r.status, r.error_field().as_deref()),
            (400, Some(field)),
            "{path}: {}",
            r.text
        );
    }
    let r = api.get("/api/v1/jobs?status=done").await;
    assert!(r.text.contains("queued"), "lists the valid statuses: {}", r.text);
    let r = api.get("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV").await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let r = api
        .post("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel", None)
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn no_backend_is_503_and_unknown_paths_are_json_404() {
    let server = server_with(|_| {}).await;
    let api = api(&server).await;
    let r = api.post("/api/v1/jobs", Some(&noop(1))).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "no_backend");
    assert!(r.text.contains("--comfyui"), "{}", r.text);
    // Ready without backends; not ready when every configured backend is down.
    assert_eq!(
        reqwest::get(format!("{}/readyz", api.base))
            .await
            .unwrap()
            .status(),
        200
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let down =
        server_with(|c| c.comfyui.backends = vec![darkroom::dispatch::BackendConfig::new(&dead_url)]).await;
    let r = reqwest::get(format!("http://{}/readyz", down.daemon.api_addr()))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("no ComfyUI backend is healthy"));
    let raw = reqwest::get(format!("{}/api/v1/nope", api.base)).await.unwrap();
    assert_eq!(raw.status(), 404);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn list_pages_cancel_retry_and_queue_full() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.hold(true);
    let server = daemon(&[&comfy], |c| c.api.max_queued = 3).await;
    let api = api(&server).await;
    let mut ids = Vec::new();
    for color in 0..4 {
        let r = api.post("/api/v1/jobs", Some(&noop(color))).await;
        assert_eq!(r.status, 202);
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
        if color == 0 {
            comfy.ctl.wait_held().await;
        }
    }
    // One runs (held), three wait: the queue is full.
    let full = api.post("/api/v1/jobs", Some(&noop(9))).await;
    assert_eq!(
        (full.status, full.json()["error"]["code"].clone()),
        (429, json!("queue_full"))
    );

    let page = api.get("/api/v1/jobs?status=queued&limit=2").await.json();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(page["jobs"][0]["id"], json!(ids[1]));
    assert!(
        page["jobs"][0].get("payload").is_none(),
        "listings leave the payload out"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = api
        .get(&format!("/api/v1/jobs?status=queued&limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(rest["jobs"][0]["id"], json!(ids[3]));
    assert!(rest.get("next_cursor").is_none());
    // Without a status: running first, then queued, across pages.
    let mut seen = Vec::new();
    let mut path = "/api/v1/jobs?limit=3".to_owned();
    loop {
        let p = api.get(&path).await.json();
        seen.extend(
            p["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match p["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/jobs?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let cancelled = api.post(&format!("/api/v1/jobs/{}/cancel", ids[3]), None).await;
    assert_eq!(
        (cancelled.status, cancelled.json()["status"].clone()),
        (200, json!("cancelled"))
    );
    let again = api.post(&format!("/api/v1/jobs/{}/cancel", ids[3]), None).await;
    assert_eq!(
        (again.status, again.json()["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    let retried = api.post(&format!("/api/v1/jobs/{}/retry", ids[3]), None).await;
    assert_eq!(
        (retried.status, retried.json()["status"].clone()),
        (200, json!("queued"))
    );
    let running = api.post(&format!("/api/v1/jobs/{}/retry", ids[0]), None).await;
    assert_eq!(running.status, 409);

    comfy.ctl.hold(false);
    comfy.ctl.release();
    let q = server.daemon.queue();
    for id in &ids {
        finished(q, id.parse().unwrap()).await;
    }
}

#[tokio::test]
async fn bearer_token_guards_the_api_and_optionally_the_ops_endpoints() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |c| c.api.token = "s3cret-token".into()).await;
    let open = Api::new(server.daemon.api_addr(), Some("s3cret-token")).await;
    let base = &open.base;
    let http = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong"), Some("s3cret-token")] {
        let mut req = http.get(format!("{base}/api/v1/status"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(open.get("/api/v1/status").await.status, 200);
    assert_eq!(
        http.get(format!("{base}/metrics")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/healthz")).send().await.unwrap().status(),
        200
    );

    let guarded = daemon(&[&comfy], |c| {
        c.api.token = "s3cret-token".into();
        c.api.protect_ops = true;
    })
    .await;
    let addr = guarded.daemon.api_addr();
    assert_eq!(
        http.get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = http
        .get(format!("http://{addr}/metrics"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// Guessing is cut short per client address, on the API and S3 alike: after
/// `api.max_auth_failures` failures even the right token is refused with 429 and
/// `Retry-After`, while another address goes on as before.
#[tokio::test]
async fn failed_authentication_is_throttled_per_client_address() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |c| {
        c.api.token = "s3cret-token".into();
        c.api.max_auth_failures = 3;
    })
    .await;
    let base = format!("http://{}", server.daemon.api_addr());
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(Some(ip.parse().unwrap()))
            .build()
            .unwrap()
    };
    let (one, two, three) = (from("127.0.0.1"), from("127.0.0.2"), from("127.0.0.3"));
    // Two refused S3 signatures and one refused token: three from 127.0.0.1.
    let s3 = &server.endpoint;
    let wrong = crate::support::client(s3, crate::support::ACCESS_KEY, "not-the-secret");
    for _ in 0..2 {
        assert_eq!(
            crate::support::code(wrong.list_buckets().send().await),
            "SignatureDoesNotMatch"
        );
    }
    let r = one
        .get(format!("{base}/api/v1/status"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = one
        .get(format!("{base}/api/v1/status"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "locked out, the right token too");
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_auth_failures");
    let r = one
        .post(format!("{base}/v1/images/generations"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "OpenAI's routes too");
    let r = one.get(format!("{s3}/")).send().await.unwrap();
    assert_eq!(r.status(), 429, "and S3");
    assert!(r.text().await.unwrap().contains("<Code>SlowDown</Code>"));
    let r = two
        .get(format!("{base}/api/v1/status"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another address is not affected");
    // Requests refused for other reasons (unsigned reads) are not guesses.
    for _ in 0..5 {
        assert_eq!(three.get(format!("{s3}/")).send().await.unwrap().status(), 403);
    }
}

#[test]
fn a_non_loopback_api_without_a_token_is_refused() {
    let env = [("DARKROOM_API__ADDR".to_owned(), "0.0.0.0:9080".to_owned())];
    let err = darkroom::config::Config::load_from(None, env, &darkroom::config::Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("api.token") && err.contains("DARKROOM_API__TOKEN"),
        "{err}"
    );
    let env = [
        ("DARKROOM_API__ADDR".to_owned(), "0.0.0.0:9080".to_owned()),
        ("DARKROOM_API__TOKEN".to_owned(), "t".to_owned()),
    ];
    darkroom::config::Config::load_from(None, env, &darkroom::config::Overrides::default()).unwrap();
}

#[tokio::test]
async fn status_and_templates_describe_the_box() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.set_gpu(24 << 30, 20 << 30);
    let server = daemon(&[&comfy], |_| {}).await;
    let api = api(&server).await;
    let done = api.post("/api/v1/jobs?wait=30", Some(&noop(5))).await.json();
    assert_eq!(done["status"], "succeeded");
    let s = api.get("/api/v1/status").await.json();
    assert_eq!(s["queue"]["counts"]["succeeded"], json!(1));
    assert!(s["queue"]["jobs_per_minute"].as_f64().unwrap() > 0.0);
    assert!(s["queue"]["p50_seconds"].as_f64().is_some());
    assert_eq!(s["backends"][0]["url"], json!(comfy.url));
    assert_eq!(s["backends"][0]["healthy"], json!(true));
    // From the backend's /system_stats.
    assert_eq!(s["backends"][0]["vram_total_bytes"], json!(24u64 << 30));
    assert_eq!(s["backends"][0]["vram_free_bytes"], json!(20u64 << 30));
    let bucket = s["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "comfyui-outputs")
        .unwrap();
    assert_eq!(bucket["objects"], json!(2), "the image and metadata.json");
    assert_eq!(s["cache"]["entries"], json!(1));
    assert_eq!(s["cache"]["misses"], json!(1));

    let t = api.get("/api/v1/templates").await.json();
    let names: Vec<&str> = t
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["img2img", "noop", "txt2img", "upscale"]);
    assert_eq!(t[1]["params"]["width"]["type"], "int");
    assert_eq!(t[1]["params"]["width"]["max"], json!(4096.0));
}

#[tokio::test]
async fn a_job_can_be_followed_until_it_succeeds() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let api = api(&server).await;
    let id = api.post("/api/v1/jobs", Some(&noop(6))).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = wait_job(server.daemon.queue(), id.parse().unwrap(), |j| {
        j.status.is_terminal()
    })
    .await;
    assert_eq!(job.status, darkroom::queue::JobStatus::Succeeded);
    let r = api.get(&format!("/api/v1/jobs/{id}")).await.json();
    assert_eq!(r["result"]["outputs"][0]["bucket"], "comfyui-outputs");
}
