//! The model catalog end to end: the real daemon with two fake ComfyUI servers
//! that have different model files and VRAM, jobs submitted through the API.
//! `auto` jobs go where the rules say and every job records why; a backend
//! without the file or the VRAM is never chosen; unknown names are 400s and a
//! model no backend has is a 409; a switch asks ComfyUI to `/free` first and is
//! counted; jobs of a loaded model are grouped, but never past the wait bound;
//! learned timings replace the estimate and are shared through Redis.

use std::time::Duration;

use darkroom::clock::ManualClock;
use darkroom::config::Config;
use darkroom::queue::{Job, JobStatus};
use serde_json::{Value, json};
use ulid::Ulid;

use crate::api_support::Api;
use crate::dispatch::{configure, finished, wait_job};
use crate::fake_comfy::FakeComfy;
use crate::support::{TestServer, server_with, server_with_clock};

const GB: u64 = 1_000_000_000;
const QWEN: &str = "qwen_image_edit_2509_fp8_e4m3fn.safetensors";
const TURBO: &str = "sd_xl_turbo_1.0_fp16.safetensors";

/// The users' catalog and rules (seed notes), plus a model no backend has.
fn catalog(c: &mut Config) {
    let text = format!(
        r#"
        [[models]]
        name = "qwen-image-ultra"
        file = "{QWEN}"
        vram_gb = 14
        quality = "ultra"
        expected_seconds = 100
        steps = 50
        max_resolution = "2048x2048"

        [[models]]
        name = "qwen-image-standard"
        file = "{QWEN}"
        vram_gb = 8
        quality = "high"
        expected_seconds = 60
        steps = 30
        cfg = 4.0
        max_resolution = "1024x1024"

        [[models]]
        name = "qwen-image-fast"
        file = "{QWEN}"
        vram_gb = 6
        quality = "medium"
        expected_seconds = 30
        steps = 15
        max_resolution = "512x512"

        [[models]]
        name = "sdxl-turbo"
        file = "{TURBO}"
        vram_gb = 4
        quality = "fast"
        expected_seconds = 10
        steps = 4
        cfg = 1.0
        max_resolution = "1024x1024"

        [[models]]
        name = "flux-dev"
        file = "flux1-dev.safetensors"
        folder = "diffusion_models"
        vram_gb = 12
        quality = "high"
        expected_seconds = 40

        [routing]
        by_urgency = {{ immediate = "sdxl-turbo", standard = "qwen-image-standard", flexible = "qwen-image-ultra" }}
        by_purpose = {{ hero_image = "qwen-image-ultra", social_media = "qwen-image-standard", thumbnail = "qwen-image-fast", preview = "sdxl-turbo" }}
        "#
    );
    let parsed: Config = toml::from_str(&text).unwrap();
    c.models = parsed.models;
    c.routing = parsed.routing;
}

/// A 10 GB GPU with both files, and a 24 GB GPU with only the qwen file.
async fn backends() -> (FakeComfy, FakeComfy) {
    let small = FakeComfy::start().await;
    small.ctl.set_gpu(10 * GB, 10 * GB);
    small.ctl.set_models("checkpoints", &[QWEN, TURBO]);
    small.ctl.set_model_cost(TURBO, Duration::ZERO, 4 * GB);
    small.ctl.set_model_cost(QWEN, Duration::ZERO, 8 * GB);
    let big = FakeComfy::start().await;
    big.ctl.set_gpu(24 * GB, 24 * GB);
    big.ctl.set_models("checkpoints", &[QWEN]);
    (small, big)
}

async fn daemon_with(urls: &[&str], tweak: impl FnOnce(&mut Config)) -> (TestServer, Api) {
    let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
    let server = server_with(|c| {
        configure(c, &urls);
        catalog(c);
        tweak(c);
    })
    .await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    (server, api)
}

/// Waits until each fake has answered a whole health check from now on, so its
/// model files and VRAM as they are now are what darkroom routes by.
async fn health_checked(fakes: &[&FakeComfy]) {
    for f in fakes {
        f.ctl.health_checked().await;
    }
}

#[allow(clippy::needless_pass_by_value)] // called with json!(...) literals
fn txt2img(extra: Value) -> Value {
    let mut req = json!({"template": "txt2img", "params": {"prompt": "a lighthouse"}});
    for (k, v) in extra.as_object().unwrap() {
        if k == "params" {
            for (pk, pv) in v.as_object().unwrap() {
                req["params"][pk] = pv.clone();
            }
        } else {
            req[k] = v.clone();
        }
    }
    req
}

async fn submit(api: &Api, body: Value) -> Ulid {
    let r = api.post("/api/v1/jobs", Some(&body)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.json()["id"].as_str().unwrap().parse().unwrap()
}

async fn done(server: &TestServer, id: Ulid) -> Job {
    let job = finished(server.daemon.queue(), id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    job
}

#[tokio::test]
async fn auto_jobs_go_where_the_rules_say_and_say_why() {
    let (small, big) = backends().await;
    let (server, api) = daemon_with(&[&small.url, &big.url], |_| {}).await;
    health_checked(&[&small, &big]).await;

    // immediate -> sdxl-turbo, which only the small GPU has.
    let id = submit(&api, txt2img(json!({"model": "auto", "urgency": "immediate"}))).await;
    let job = done(&server, id).await;
    let routing = job.routing.clone().unwrap();
    assert_eq!(routing["model"], json!("sdxl-turbo"));
    assert_eq!(routing["reason"], json!("urgency:immediate"));
    assert_eq!(routing["backend"], json!(small.url));
    assert_eq!(
        routing["rejected"],
        json!([{"backend": big.url, "why": format!("has no checkpoints/{TURBO}")}])
    );
    let spec = &job.payload;
    assert_eq!(spec["workflow"]["4"]["inputs"]["ckpt_name"], json!(TURBO));
    assert_eq!(spec["params"]["steps"], json!(4), "the model's recommended steps");
    assert_eq!(spec["params"]["cfg"], json!(1.0));

    // hero_image -> ultra (14 GB): only the big GPU can hold it.
    let id = submit(
        &api,
        txt2img(json!({"model": "auto", "purpose": "hero_image", "params": {"steps": 20}})),
    )
    .await;
    let job = done(&server, id).await;
    let routing = job.routing.clone().unwrap();
    assert_eq!(routing["model"], json!("qwen-image-ultra"));
    assert_eq!(routing["reason"], json!("purpose:hero_image"));
    assert_eq!(routing["backend"], json!(big.url));
    let why = routing["rejected"][0]["why"].as_str().unwrap();
    assert!(why.contains("10.0 GB VRAM in all"), "{why}");
    assert_eq!(job.payload["params"]["steps"], json!(20), "a given value wins");
    // The API shows the same record.
    let shown = api.get(&format!("/api/v1/jobs/{id}")).await.json();
    assert_eq!(shown["routing"]["model"], json!("qwen-image-ultra"));

    // A name: as asked, on the backend that has its file loaded already; with the
    // size checked against its max_resolution.
    let id = submit(&api, txt2img(json!({"model": "qwen-image-standard"}))).await;
    let routing = done(&server, id).await.routing.unwrap();
    assert_eq!(routing["reason"], json!("requested"));
    assert_eq!(
        (&routing["backend"], &routing["placement"]),
        (&json!(big.url), &json!("loaded"))
    );
    let r = api
        .post(
            "/api/v1/jobs",
            Some(&txt2img(
                json!({"model": "qwen-image-fast", "params": {"width": 1024}}),
            )),
        )
        .await;
    assert_eq!(
        (r.status, r.error_field().as_deref()),
        (400, Some("params.width")),
        "{}",
        r.text
    );
    assert!(r.text.contains("512x512"), "{}", r.text);
    let r = api
        .post("/api/v1/jobs", Some(&txt2img(json!({"model": "sdxl"}))))
        .await;
    assert_eq!(
        (r.status, r.error_field().as_deref()),
        (400, Some("model")),
        "{}",
        r.text
    );
    assert!(r.text.contains("sdxl-turbo"), "the catalog is listed: {}", r.text);
    let r = api
        .post("/api/v1/jobs", Some(&txt2img(json!({"urgency": "asap"}))))
        .await;
    assert_eq!(
        (r.status, r.error_field().as_deref()),
        (400, Some("urgency")),
        "{}",
        r.text
    );
    // A catalog model no backend has: 409 model_unavailable, naming where it looked.
    let r = api
        .post("/api/v1/jobs", Some(&txt2img(json!({"model": "flux-dev"}))))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], json!("model_unavailable"));
    assert!(
        r.text.contains(&small.url) && r.text.contains(&big.url),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("diffusion_models/flux1-dev.safetensors"),
        "{}",
        r.text
    );

    // OpenAI's Images API names catalog models too.
    let base = format!("http://{}/v1", server.daemon.api_addr());
    let listed: Value = reqwest::get(format!("{base}/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == json!("sdxl-turbo")),
        "{listed}"
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/images/generations"))
        .json(&json!({"prompt": "a fox", "model": "sdxl-turbo", "size": "512x512"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let newest = api.get("/api/v1/jobs?status=succeeded&limit=500").await.json();
    let last = newest["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|j| j["id"].as_str().unwrap().to_owned())
        .unwrap()
        .clone();
    assert_eq!(last["routing"]["model"], json!("sdxl-turbo"), "{last}");
    assert_eq!(last["routing"]["reason"], json!("requested"), "{last}");

    // The catalog report and the CLI.
    let report = api.get("/api/v1/models").await.json();
    let model = |name: &str| {
        report["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"]["name"] == json!(name))
            .unwrap()
            .clone()
    };
    assert_eq!(model("sdxl-turbo")["available_on"], json!([small.url]));
    assert_eq!(model("qwen-image-ultra")["available_on"], json!([big.url]));
    assert_eq!(model("flux-dev")["available_on"], json!([]));
    assert_eq!(model("qwen-image-standard")["loaded_on"], json!([big.url]));
    assert_eq!(model("sdxl-turbo")["loaded_on"], json!([small.url]));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(["models", "--url", &format!("http://{}", server.daemon.api_addr())])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("sdxl-turbo") && text.contains("on no backend yet"),
        "{text}"
    );
    assert!(
        text.contains(&format!("backend {}: loaded {TURBO}, 0 swaps", small.url)),
        "{text}"
    );

    // Every catalog model has its generation series from the start, and the
    // decisions are counted.
    let metrics = reqwest::get(format!("http://{}/metrics", server.daemon.api_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"comfyui_generations_total{status="failure",model="flux-dev"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"darkroom_routing_decisions_total{model="sdxl-turbo",reason="urgency:immediate"} 1"#),
        "{metrics}"
    );
    server.daemon.shutdown().await;
}

#[tokio::test]
async fn a_switch_frees_vram_first_and_is_counted_and_timed() {
    let (small, _) = backends().await;
    small.ctl.set_model_cost(QWEN, Duration::from_millis(50), 8 * GB);
    let (server, api) = daemon_with(&[&small.url], |_| {}).await;
    health_checked(&[&small]).await;
    let turbo = submit(&api, txt2img(json!({"model": "sdxl-turbo"}))).await;
    done(&server, turbo).await;
    assert_eq!(small.ctl.frees(), 0, "10 GB free: no need to unload first");
    // A health check sees turbo's 4 GB in use (6 GB free < 8 GB).
    health_checked(&[&small]).await;
    let r = api.get("/api/v1/models").await.json();
    assert_eq!(r["backends"][0]["vram_free_bytes"], json!(6 * GB));
    let qwen = submit(&api, txt2img(json!({"model": "qwen-image-standard"}))).await;
    done(&server, qwen).await;
    assert_eq!(small.ctl.frees(), 1, "unloaded before the switch");
    assert_eq!(small.ctl.loads(), vec![TURBO.to_owned(), QWEN.to_owned()]);
    let report = api.get("/api/v1/models").await.json();
    assert_eq!(report["backends"][0]["swaps"], json!(1));
    assert_eq!(report["backends"][0]["loaded_model"], json!(QWEN));
    let metrics = reqwest::get(format!("http://{}/metrics", server.daemon.api_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            r#"darkroom_model_swaps_total{{backend="{}"}} 1"#,
            small.url
        )),
        "{metrics}"
    );
    // Both jobs loaded their model; the qwen load took its 50 ms at least.
    let load_count = |model: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    r#"darkroom_model_load_seconds_count{{model="{model}"}}"#
                ))
            })
            .unwrap_or_else(|| panic!("no load histogram for {model}: {metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(load_count("qwen-image-standard"), "1");
    assert_eq!(load_count("sdxl-turbo"), "1");
    let timings = &report["models"][1]["timings"][0];
    assert!(timings["load_p50_seconds"].as_f64().unwrap() >= 0.05, "{timings}");
    server.daemon.shutdown().await;
}

#[tokio::test]
async fn broken_and_missing_files_fail_with_comfyuis_words() {
    let (small, _) = backends().await;
    small.ctl.set_broken(TURBO);
    let (server, api) = daemon_with(&[&small.url], |c| c.queue.default_max_attempts = 1).await;
    health_checked(&[&small]).await;
    let id = submit(&api, txt2img(json!({"model": "sdxl-turbo"}))).await;
    let job = finished(server.daemon.queue(), id).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = &job.errors[0].message;
    assert!(
        error.contains("CheckpointLoaderSimple") && error.contains("header too small"),
        "{error}"
    );
    // A raw workflow naming a file the server lacks: refused at validation.
    let mut workflow: Value =
        serde_json::from_str(include_str!("../../assets/workflows/txt2img.json")).unwrap();
    workflow["4"]["inputs"]["ckpt_name"] = json!("sd_xl_base_1.0.safetensors");
    let id = submit(&api, json!({"workflow": workflow})).await;
    let job = finished(server.daemon.queue(), id).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = &job.errors[0].message;
    assert!(
        error.contains("value_not_in_list") || error.contains("not in"),
        "{error}"
    );
    server.daemon.shutdown().await;
}

/// When the job last started, by the queue's clock.
fn started(job: &Job) -> i64 {
    job.started_ms.unwrap()
}

#[tokio::test]
async fn affinity_groups_a_loaded_model_but_not_past_the_wait_bound() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.set_models("checkpoints", &[QWEN, TURBO]);
    comfy.ctl.hold(true);
    let clock = ManualClock::new(1_800_000_000_000);
    let url = comfy.url.clone();
    let server = server_with_clock(
        move |c| {
            configure(c, &[url]);
            catalog(c);
            c.routing.max_affinity_wait_seconds = 5;
        },
        clock.clone(),
    )
    .await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    health_checked(&[&comfy]).await;
    let queue = server.daemon.queue();
    let turbo = || txt2img(json!({"model": "sdxl-turbo"}));
    let first = submit(&api, turbo()).await;
    comfy.ctl.wait_held().await;
    // Queued behind it, oldest first: a qwen job, then three more turbo jobs.
    let qwen = submit(
        &api,
        txt2img(json!({"model": "qwen-image-fast", "params": {"width": 512, "height": 512}})),
    )
    .await;
    let t1 = submit(&api, turbo()).await;
    let t2 = submit(&api, turbo()).await;
    let t3 = submit(&api, turbo()).await;
    // Queued jobs have an expected start and finish.
    let shown = api.get(&format!("/api/v1/jobs/{qwen}")).await.json();
    assert!(
        shown["eta"]["start_ms"].is_i64() && shown["eta"]["finish_ms"].is_i64(),
        "{shown}"
    );
    let running = api.get(&format!("/api/v1/jobs/{first}")).await.json();
    assert!(running["eta"]["finish_ms"].is_i64(), "{running}");

    let running_next = |id: Ulid| async move {
        wait_job(queue, id, |j| {
            j.status == JobStatus::Running && j.routing.is_some()
        })
        .await
    };
    // turbo is loaded: t1 and t2 go before the older qwen job...
    comfy.ctl.release();
    assert_eq!(
        running_next(t1).await.routing.unwrap()["placement"],
        json!("loaded")
    );
    comfy.ctl.wait_held().await;
    comfy.ctl.release();
    assert_eq!(
        running_next(t2).await.routing.unwrap()["placement"],
        json!("loaded")
    );
    comfy.ctl.wait_held().await;
    // ... until qwen has been passed over for the bound: then it goes first.
    clock.advance_ms(5_000);
    comfy.ctl.release();
    assert_eq!(
        running_next(qwen).await.routing.unwrap()["placement"],
        json!("waited")
    );
    comfy.ctl.wait_held().await;
    comfy.ctl.release();
    running_next(t3).await;
    comfy.ctl.wait_held().await;
    comfy.ctl.hold(false);
    comfy.ctl.release();
    for id in [first, qwen, t1, t2, t3] {
        done(&server, id).await;
    }
    let job = |id| async move { queue.get(id).await.unwrap().unwrap() };
    let order = [
        started(&job(t1).await),
        started(&job(t2).await),
        started(&job(qwen).await),
        started(&job(t3).await),
    ];
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    assert_eq!(
        comfy.ctl.loads(),
        vec![TURBO.to_owned(), QWEN.to_owned(), TURBO.to_owned()]
    );
    server.daemon.shutdown().await;
}

#[tokio::test]
async fn learned_timings_replace_the_estimate_and_are_shared_through_redis() {
    let redis = crate::redis_server::RedisServer::shared();
    let prefix = format!("models-{}", Ulid::new());
    let comfy = FakeComfy::start().await;
    comfy.ctl.set_models("checkpoints", &[QWEN, TURBO]);
    let on_redis = |c: &mut Config| {
        c.redis = redis.settings();
        c.redis.key_prefix.clone_from(&prefix);
        c.queue.backend = darkroom::redis_store::Backend::Redis;
        c.cache.backend = darkroom::redis_store::Backend::Redis;
    };
    let (one, api_one) = daemon_with(&[&comfy.url], on_redis).await;
    let (two, api_two) = daemon_with(&[&comfy.url], on_redis).await;
    let turbo_seconds = |r: &Value| {
        r["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"]["name"] == json!("sdxl-turbo"))
            .unwrap()["run_seconds"]
            .as_f64()
            .unwrap()
    };
    let estimate = turbo_seconds(&api_two.get("/api/v1/models").await.json());
    assert!((estimate - 10.0).abs() < 1e-9, "{estimate}");
    for n in 0..5 {
        let id = submit(
            &api_one,
            txt2img(json!({"model": "sdxl-turbo", "params": {"seed": n}})),
        )
        .await;
        done(&one, id).await;
    }
    // The fake takes milliseconds: the learned figure replaces the 10 s estimate,
    // on the node that did not run them too.
    let learned = turbo_seconds(&api_two.get("/api/v1/models").await.json());
    assert!(learned < 5.0, "{learned}");
    // And the other node sees which model the shared backend has loaded.
    let r = api_two.get("/api/v1/models").await.json();
    assert_eq!(r["backends"][0]["loaded_model"], json!(TURBO));
    one.daemon.shutdown().await;
    two.daemon.shutdown().await;
}

#[tokio::test]
async fn without_a_catalog_nothing_changes() {
    let comfy = FakeComfy::start().await;
    let url = comfy.url.clone();
    let server = server_with(move |c| configure(c, &[url])).await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    // The checkpoint is a plain file name, as before; no routing, no ETA.
    let id = submit(
        &api,
        txt2img(json!({"params": {"checkpoint": TURBO, "steps": 2}})),
    )
    .await;
    let job = done(&server, id).await;
    assert_eq!(job.payload["workflow"]["4"]["inputs"]["ckpt_name"], json!(TURBO));
    assert!(job.routing.is_none() && job.affinity.is_none(), "{job:#?}");
    assert!(
        api.get(&format!("/api/v1/jobs/{id}"))
            .await
            .json()
            .get("eta")
            .is_none()
    );
    // Asking for a model without a catalog says what is missing.
    let r = api
        .post("/api/v1/jobs", Some(&txt2img(json!({"model": "auto"}))))
        .await;
    assert_eq!(
        (r.status, r.error_field().as_deref()),
        (400, Some("model")),
        "{}",
        r.text
    );
    assert!(r.text.contains("[[models]]"), "{}", r.text);
    let report = api.get("/api/v1/models").await.json();
    assert_eq!(report["models"], json!([]));
    server.daemon.shutdown().await;
}
