//! OpenAI's Images API against the daemon and the fake ComfyUI: answers and errors
//! checked field by field against the shapes of OpenAI's published API (written
//! here: no network), and the real `openai` Python SDK driving it.

use std::collections::BTreeSet;
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::dispatch::daemon;
use crate::fake_comfy::{FakeComfy, PNG};
use crate::support::TestServer;

const KEY: &str = "sk-darkroom-test";

async fn openai_daemon(comfy: &FakeComfy, tweak: impl FnOnce(&mut darkroom::config::Config)) -> TestServer {
    daemon(&[comfy], |c| {
        c.api.token = KEY.into();
        c.openai.template = "noop".into();
        tweak(c);
    })
    .await
}

fn base(s: &TestServer) -> String {
    format!("http://{}/v1", s.daemon.api_addr())
}

async fn post(s: &TestServer, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/images/generations", base(s)))
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// OpenAI's error object: `error` with exactly `message`, `type`, `param`, `code`.
fn assert_error(body: &Value, kind: &str, param: Option<&str>, code: Option<&str>) {
    assert_eq!(keys(body), BTreeSet::from(["error"]), "{body}");
    let e = &body["error"];
    assert_eq!(
        keys(e),
        BTreeSet::from(["message", "type", "param", "code"]),
        "{body}"
    );
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(e["type"], kind, "{body}");
    assert_eq!(e["param"].as_str(), param, "{body}");
    assert_eq!(e["code"].as_str(), code, "{body}");
}

#[tokio::test]
async fn generations_answer_in_openais_shapes() {
    let comfy = FakeComfy::start().await;
    let s = openai_daemon(&comfy, |_| {}).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // n = 2, URLs: `created` and `data`, each image a working URL.
    let (status, body) = post(
        &s,
        &json!({"prompt": "a red square", "n": 2, "size": "64x64"}),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), BTreeSet::from(["created", "data"]), "{body}");
    let created = body["created"].as_u64().unwrap();
    assert!(created + 5 >= before && created <= before + 600, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{body}");
    for image in data {
        assert_eq!(keys(image), BTreeSet::from(["url", "revised_prompt"]), "{body}");
        assert_eq!(image["revised_prompt"], "a red square");
        let got = reqwest::get(image["url"].as_str().unwrap()).await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.headers()["content-type"], "image/png");
        assert_eq!(got.bytes().await.unwrap().as_ref(), PNG);
    }

    // b64_json: the bytes themselves.
    let (status, body) = post(
        &s,
        &json!({"prompt": "x", "response_format": "b64_json", "model": "noop", "quality": "hd", "user": "u1"}),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let image = &body["data"][0];
    assert_eq!(
        keys(image),
        BTreeSet::from(["b64_json", "revised_prompt"]),
        "{body}"
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(image["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, PNG);

    // Mistakes name OpenAI's field.
    let (status, body) = post(&s, &json!({"prompt": "x", "size": "13x"}), Some(KEY)).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_request_error", Some("size"), None);
    let (status, body) = post(&s, &json!({"prompt": "x", "size": "99999x64"}), Some(KEY)).await;
    assert_eq!(status, 400, "beyond the template's width: {body}");
    assert_error(&body, "invalid_request_error", Some("size"), None);
    let (status, body) = post(&s, &json!({"n": 1}), Some(KEY)).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_request_error", Some("prompt"), None);
    let (status, body) = post(&s, &json!({"prompt": "x"}), None).await;
    assert_eq!(status, 401);
    assert_error(&body, "invalid_request_error", None, Some("invalid_api_key"));
    let (status, body) = post(&s, &json!({"prompt": "x"}), Some("sk-wrong")).await;
    assert_eq!(status, 401);
    assert_error(&body, "invalid_request_error", None, Some("invalid_api_key"));

    // The models are the templates.
    let http = reqwest::Client::new();
    let models: Value = http
        .get(format!("{}/models", base(&s)))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&models), BTreeSet::from(["object", "data"]));
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(
                keys(m),
                BTreeSet::from(["id", "object", "created", "owned_by"]),
                "{m}"
            );
            assert_eq!(m["object"], "model");
            m["id"].as_str().unwrap()
        })
        .collect();
    assert!(ids.contains(&"noop") && ids.contains(&"txt2img"), "{models}");
    let one = http
        .get(format!("{}/models/noop", base(&s)))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let missing = http
        .get(format!("{}/models/dall-e-3", base(&s)))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_error(
        &missing.json().await.unwrap(),
        "invalid_request_error",
        None,
        Some("not_found"),
    );
}

#[tokio::test]
async fn a_failed_generation_is_a_server_error_and_a_slow_one_times_out() {
    let comfy = FakeComfy::start().await;
    let s = openai_daemon(&comfy, |c| {
        c.queue.default_max_attempts = 1;
        c.openai.wait_seconds = 1;
    })
    .await;
    comfy.ctl.fail_next("RuntimeError", "the sampler broke");
    let (status, body) = post(&s, &json!({"prompt": "x"}), Some(KEY)).await;
    assert_eq!(status, 500, "{body}");
    assert_error(&body, "server_error", None, Some("generation_failed"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the sampler broke"),
        "{body}"
    );

    // A job that does not end within openai.wait_seconds: 504, and it goes on.
    comfy.ctl.hold(true);
    let (status, body) = post(&s, &json!({"prompt": "y", "size": "32x32"}), Some(KEY)).await;
    assert_eq!(status, 504, "{body}");
    assert_error(&body, "server_error", None, Some("timeout"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/jobs/"),
        "{body}"
    );
    comfy.ctl.hold(false);
    comfy.ctl.release();
}

const SDK_SCRIPT: &str = r#"
import sys, urllib.request
import openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
r = client.images.generate(prompt="a lighthouse", size="64x64", model="noop", n=1)
assert len(r.data) == 1, r
png = urllib.request.urlopen(r.data[0].url).read()
assert png.startswith(b"\x89PNG"), png[:8]
b = client.images.generate(prompt="a lighthouse", model="noop", response_format="b64_json")
assert b.data[0].b64_json, b
try:
    client.images.generate(prompt="x", model="noop", size="13x")
    raise SystemExit("a bad size was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.body["param"] == "size", e.body
try:
    openai.OpenAI(base_url=sys.argv[1], api_key="sk-wrong", max_retries=0).images.generate(prompt="x")
    raise SystemExit("a wrong key was accepted")
except openai.AuthenticationError:
    pass
print("openai sdk ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_generates_an_image() {
    let comfy = FakeComfy::start().await;
    let s = openai_daemon(&comfy, |_| {}).await;
    let url = base(&s);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", SDK_SCRIPT, &url, KEY])
            .output()
            .expect("python3 is needed")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the openai SDK script failed (is the openai package installed? the test command installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "openai sdk ok");
}
