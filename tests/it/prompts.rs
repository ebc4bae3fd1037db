//! The prompt library end to end, through the HTTP API (every answer checked
//! against the OpenAPI document) with a fake ComfyUI running the jobs: prompts
//! saved and versioned, jobs submitted by name and by `@version` recording which
//! version ran, stats after succeeded, failed and rated jobs equal to figures
//! computed by hand from the job records, an A/B campaign assigning variants in
//! its proportions and naming the winner by the stated rule, collections,
//! export/import round trips, a restart, two nodes sharing the library on Redis,
//! and the `darkroom prompts` CLI.

use darkroom::config::Config;
use darkroom::queue::{Job, JobStatus};
use reqwest::Method;
use serde_json::{Value, json};
use ulid::Ulid;

use crate::api_support::{Api, Resp};
use crate::dispatch::{configure, finished};
use crate::fake_comfy::FakeComfy;
use crate::support::{TestServer, daemon_on, server_with};

async fn node(comfy: &FakeComfy, tweak: impl FnOnce(&mut Config)) -> (TestServer, Api) {
    let url = comfy.url.clone();
    let server = server_with(|c| {
        configure(c, &[url]);
        tweak(c);
    })
    .await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    (server, api)
}

async fn put(api: &Api, path: &str, body: &Value) -> Resp {
    api.call(Method::PUT, path, Some(body.to_string().into_bytes()), &[])
        .await
}

async fn delete(api: &Api, path: &str) -> Resp {
    api.call(Method::DELETE, path, None, &[]).await
}

/// Submits `request` and waits for the job to end.
async fn run(server: &TestServer, api: &Api, request: Value) -> Job {
    let r = api.post("/api/v1/jobs", Some(&request)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id: Ulid = r.json()["id"].as_str().unwrap().parse().unwrap();
    finished(server.daemon.queue(), id).await
}

fn saved(job: &Job) -> Value {
    job.payload["prompt"].clone()
}

async fn rate(api: &Api, job: &Job, rating: u8) -> Resp {
    api.post(
        &format!("/api/v1/jobs/{}/rating", job.id),
        Some(&json!({"rating": rating, "comment": "ok"})),
    )
    .await
}

#[allow(clippy::cast_precision_loss)]
fn seconds(job: &Job) -> f64 {
    (job.finished_ms.unwrap() - job.started_ms.unwrap()) as f64 / 1000.0
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("not a number: {a}"));
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_version_run_rate_compare_and_round_trip() {
    let comfy = FakeComfy::start().await;
    let (server, api) = node(&comfy, |_| {}).await;

    // Save: a bad parameter is refused naming it; a good prompt is version 1.
    let bad = api
        .post(
            "/api/v1/prompts",
            Some(&json!({"name": "hero-shot", "template": "noop", "params": {"colour": 1}})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_field().as_deref()),
        (400, Some("params.colour"))
    );
    let bad = api
        .post(
            "/api/v1/prompts",
            Some(&json!({"name": "Hero Shot", "template": "noop"})),
        )
        .await;
    assert_eq!((bad.status, bad.error_field().as_deref()), (400, Some("name")));
    let created = api
        .post(
            "/api/v1/prompts",
            Some(&json!({
                "name": "hero-shot", "template": "noop", "params": {"color": 100, "width": 64},
                "description": "product hero", "category": "product", "tags": ["hero", "web"], "author": "ana"
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["versions"][0]["version"], 1);
    let taken = api
        .post(
            "/api/v1/prompts",
            Some(&json!({"name": "hero-shot", "template": "noop"})),
        )
        .await;
    assert_eq!(taken.status, 409);

    // An edit of what runs is a new version; a description edit is not.
    let v2 = put(
        &api,
        "/api/v1/prompts/hero-shot",
        &json!({"params": {"color": 200, "width": 96}, "note": "wider"}),
    )
    .await;
    assert_eq!(v2.status, 200, "{}", v2.text);
    assert_eq!(v2.json()["versions"].as_array().unwrap().len(), 2);
    let same = put(
        &api,
        "/api/v1/prompts/hero-shot",
        &json!({"description": "the hero", "favourite": true}),
    )
    .await;
    assert_eq!(same.json()["versions"].as_array().unwrap().len(), 2);
    assert_eq!(same.json()["favourite"], true);

    // Submit by name (latest) and by @version, with overrides; the job says which ran.
    let latest = run(
        &server,
        &api,
        json!({"prompt": "hero-shot", "params": {"color": 201}}),
    )
    .await;
    assert_eq!(saved(&latest), json!({"name": "hero-shot", "version": 2}));
    assert_eq!(latest.payload["params"]["width"], 96);
    assert_eq!(latest.payload["params"]["color"], 201);
    let first = run(
        &server,
        &api,
        json!({"prompt": "hero-shot@1", "params": {"color": 101}}),
    )
    .await;
    assert_eq!(saved(&first), json!({"name": "hero-shot", "version": 1}));
    assert_eq!(first.payload["params"]["width"], 64);
    for (req, field) in [
        (json!({"prompt": "hero-shot@9"}), "prompt"),
        (json!({"prompt": "nope"}), "prompt"),
        (json!({"prompt": "hero-shot", "template": "noop"}), "prompt"),
        (
            json!({"prompt": "hero-shot", "params": {"width": 0}}),
            "params.width",
        ),
    ] {
        let r = api.post("/api/v1/jobs", Some(&req)).await;
        assert_eq!(
            (r.status, r.error_field().as_deref()),
            (400, Some(field)),
            "{req}: {}",
            r.text
        );
    }

    // More runs of version 1: one fails, and ratings on three.
    let second = run(
        &server,
        &api,
        json!({"prompt": "hero-shot@1", "params": {"color": 102}}),
    )
    .await;
    comfy.ctl.fail_next("RuntimeError", "CUDA out of memory");
    let failed = run(
        &server,
        &api,
        json!({"prompt": "hero-shot@1", "params": {"color": 103}, "max_attempts": 1}),
    )
    .await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(rate(&api, &first, 5).await.status, 200);
    assert_eq!(rate(&api, &second, 2).await.status, 200);
    let again = rate(&api, &second, 3).await;
    assert_eq!(again.json()["prompt"], json!({"name": "hero-shot", "version": 1}));
    assert_eq!(rate(&api, &latest, 4).await.status, 200);
    let r = rate(&api, &failed, 4).await;
    assert_eq!(r.status, 409, "only a succeeded job is rated: {}", r.text);
    let r = api
        .post(
            &format!("/api/v1/jobs/{}/rating", first.id),
            Some(&json!({"rating": 6})),
        )
        .await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("rating")));
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{}/rating", second.id))
            .await
            .json()["rating"],
        3
    );

    // Stats per version, as computed by hand from the job records.
    let details = api.get("/api/v1/prompts/hero-shot").await.json();
    let v1 = &details["versions"][0]["stats"];
    assert_eq!(v1["uses"], 3);
    assert_eq!(
        (v1["succeeded"].clone(), v1["failed"].clone()),
        (json!(2), json!(1))
    );
    close(&v1["success_rate"], 2.0 / 3.0);
    close(&v1["mean_rating"], 4.0);
    assert_eq!(v1["ratings"], 2);
    let (a, b) = (seconds(&first), seconds(&second));
    close(&v1["mean_seconds"], f64::midpoint(a, b));
    close(&v1["p95_seconds"], a.max(b));
    let v2 = &details["versions"][1]["stats"];
    assert_eq!(
        (v2["uses"].clone(), v2["mean_rating"].clone()),
        (json!(1), json!(4.0))
    );
    close(&v2["success_rate"], 1.0);
    assert_eq!(details["stats"]["uses"], 4);
    assert_eq!(details["recent"][0]["job_id"], failed.id.to_string());
    let listing = api.get("/api/v1/prompts?tag=hero&favourite=true").await.json();
    assert_eq!(listing.as_array().unwrap().len(), 1, "{listing}");
    assert_eq!(listing[0]["stats"]["uses"], 4);
    assert_eq!(api.get("/api/v1/prompts?category=other").await.json(), json!([]));

    // A/B: weights 2:1 over six submissions, then the campaign is complete.
    let c = api
        .post(
            "/api/v1/campaigns",
            Some(&json!({"name": "hero-ab", "target": 6, "min_ratings": 2,
                "variants": [{"prompt": "hero-shot@1", "weight": 2}, {"prompt": "hero-shot"}]})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(
        c.json()["variants"][1]["prompt"],
        "hero-shot@2",
        "a bare name is pinned to its latest"
    );
    let mut jobs = Vec::new();
    for color in 0..6 {
        jobs.push(
            run(
                &server,
                &api,
                json!({"campaign": "hero-ab", "params": {"color": 300 + color}}),
            )
            .await,
        );
    }
    let versions: Vec<u64> = jobs
        .iter()
        .map(|j| saved(j)["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 1, 1, 2, 1]);
    assert!(jobs.iter().all(|j| saved(j)["campaign"] == "hero-ab"));
    let over = api
        .post("/api/v1/jobs", Some(&json!({"campaign": "hero-ab"})))
        .await;
    assert_eq!(over.status, 409, "{}", over.text);
    // Variant @1 rated 5, 4 (mean 4.5); @2 rated 5 only: no winner yet.
    for (job, stars) in [(&jobs[0], 5), (&jobs[2], 4), (&jobs[1], 5)] {
        assert_eq!(rate(&api, job, stars).await.status, 200);
    }
    let report = api.get("/api/v1/campaigns/hero-ab").await.json();
    assert_eq!(report["state"], "completed");
    assert_eq!(report["assigned"], 6);
    assert_eq!(report["winner"], Value::Null);
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .contains("hero-shot@2 has 1 of the 2"),
        "{report}"
    );
    assert_eq!(rate(&api, &jobs[4], 3).await.status, 200);
    let report = api.get("/api/v1/campaigns/hero-ab").await.json();
    assert_eq!(report["variants"][0]["uses"], 4);
    close(&report["variants"][0]["mean_rating"], 4.5);
    close(&report["variants"][1]["mean_rating"], 4.0);
    assert_eq!(report["winner"], "hero-shot@1", "{report}");
    // A campaign's runs count in the prompt's stats too.
    assert_eq!(
        api.get("/api/v1/prompts/hero-shot").await.json()["stats"]["uses"],
        10
    );

    // Collections name saved prompts only.
    let second_prompt = api
        .post(
            "/api/v1/prompts",
            Some(&json!({"name": "thumb", "template": "noop", "params": {"width": 32}})),
        )
        .await;
    assert_eq!(second_prompt.status, 201);
    let bad = put(
        &api,
        "/api/v1/collections/web",
        &json!({"prompts": ["thumb", "missing"]}),
    )
    .await;
    assert_eq!(
        (bad.status, bad.error_field().as_deref()),
        (400, Some("prompts[1]"))
    );
    let ok = put(
        &api,
        "/api/v1/collections/web",
        &json!({"prompts": ["thumb"], "description": "web set"}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let only = api.get("/api/v1/prompts?collection=web").await.json();
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(only[0]["name"], "thumb");

    // A running campaign protects its prompts.
    let blocking = api
        .post(
            "/api/v1/campaigns",
            Some(&json!({"name": "thumb-ab", "variants": [{"prompt": "thumb"}, {"prompt": "hero-shot@2"}]})),
        )
        .await;
    assert_eq!(blocking.status, 201);
    assert_eq!(delete(&api, "/api/v1/prompts/thumb").await.status, 409);
    assert_eq!(
        api.post("/api/v1/campaigns/thumb-ab/stop", None).await.json()["state"],
        "completed"
    );

    // Export, import into a fresh node: the same library; a second import changes nothing.
    let export = api.get("/api/v1/library").await.json();
    assert_eq!(export["format"], "darkroom-prompts/1");
    let (other, other_api) = node(&comfy, |_| {}).await;
    let imported = other_api.post("/api/v1/library", Some(&export)).await.json();
    assert_eq!(imported["created"], json!(["hero-shot", "thumb"]), "{imported}");
    assert_eq!(
        (imported["collections"].clone(), imported["campaigns"].clone()),
        (json!(1), json!(2))
    );
    let again = other_api.post("/api/v1/library", Some(&export)).await.json();
    assert_eq!(again["unchanged"], json!(["hero-shot", "thumb"]));
    assert_eq!(other_api.get("/api/v1/library").await.json(), export);
    // Imported campaigns are drafts: they take no submissions until started.
    let draft = other_api
        .post("/api/v1/jobs", Some(&json!({"campaign": "hero-ab"})))
        .await;
    assert_eq!(draft.status, 409, "{}", draft.text);
    // A version that differs under the same number is a conflict unless replaced.
    let mut changed = export.clone();
    changed["prompts"][0]["versions"][0]["params"]["color"] = json!(999);
    let r = other_api.post("/api/v1/library", Some(&changed)).await.json();
    assert_eq!(r["conflicts"], json!(["hero-shot"]));
    let r = other_api
        .post("/api/v1/library?replace=true", Some(&changed))
        .await
        .json();
    assert_eq!(r["updated"], json!(["hero-shot"]));
    let bad = other_api
        .post("/api/v1/library", Some(&json!({"format": "x", "prompts": []})))
        .await;
    assert_eq!((bad.status, bad.error_field().as_deref()), (400, Some("format")));
    drop(other);

    // Deleting a prompt drops its runs, not its jobs.
    assert_eq!(delete(&api, "/api/v1/collections/web").await.status, 204);
    assert_eq!(delete(&api, "/api/v1/prompts/thumb").await.status, 204);
    assert_eq!(api.get("/api/v1/prompts/thumb").await.status, 404);

    // Everything survives a restart.
    let config = {
        let mut c = crate::support::test_config(&server.dir);
        configure(&mut c, std::slice::from_ref(&comfy.url));
        c
    };
    let TestServer { daemon, dir, .. } = server;
    daemon.shutdown().await;
    let (daemon, _) = daemon_on(&config).await;
    let api = Api::new(daemon.api_addr(), None).await;
    let details = api.get("/api/v1/prompts/hero-shot").await.json();
    assert_eq!(details["stats"]["uses"], 10);
    assert_eq!(details["versions"].as_array().unwrap().len(), 2);
    assert_eq!(
        api.get("/api/v1/campaigns/hero-ab").await.json()["winner"],
        "hero-shot@1"
    );
    daemon.shutdown().await;
    drop(dir);
}

/// Two nodes on one Redis share the library; a campaign's slots, taken through
/// both at once, are each handed out exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_the_library_and_a_campaigns_slots_on_redis() {
    let redis = crate::redis_server::RedisServer::shared();
    let comfy = FakeComfy::start().await;
    let prefix = format!("prompts-{}", Ulid::new());
    let on_redis = |c: &mut Config| {
        c.redis = redis.settings();
        c.redis.key_prefix.clone_from(&prefix);
        c.queue.backend = darkroom::redis_store::Backend::Redis;
        c.cache.backend = darkroom::redis_store::Backend::Redis;
    };
    let (one, api_one) = node(&comfy, on_redis).await;
    let (_two, api_two) = node(&comfy, on_redis).await;
    for (name, color) in [("a", 1), ("b", 2)] {
        let r = api_one
            .post(
                "/api/v1/prompts",
                Some(&json!({"name": name, "template": "noop", "params": {"color": color}})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let edit = put(&api_two, "/api/v1/prompts/a", &json!({"params": {"color": 11}})).await;
    assert_eq!(
        edit.json()["versions"].as_array().unwrap().len(),
        2,
        "node two edits what node one saved"
    );
    let c = api_two
        .post(
            "/api/v1/campaigns",
            Some(&json!({"name": "ab", "target": 40, "variants": [{"prompt": "a"}, {"prompt": "b"}]})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);

    let submit = |api: Api, color: u64| async move {
        let r = api
            .post(
                "/api/v1/jobs",
                Some(&json!({"campaign": "ab", "params": {"color": color}, "cache": false})),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.json()["payload"]["prompt"]["name"].as_str().unwrap().to_owned()
    };
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        tasks.push(tokio::spawn(submit(api_one.clone(), 1000 + i)));
        tasks.push(tokio::spawn(submit(api_two.clone(), 2000 + i)));
    }
    let mut names = Vec::new();
    for t in tasks {
        names.push(t.await.unwrap());
    }
    let a = names.iter().filter(|n| *n == "a").count();
    assert_eq!(
        (a, names.len() - a),
        (20, 20),
        "each slot handed out once: {names:?}"
    );
    let report = api_one.get("/api/v1/campaigns/ab").await.json();
    assert_eq!(
        (report["assigned"].clone(), report["state"].clone()),
        (json!(40), json!("completed"))
    );
    assert_eq!(report["variants"][0]["uses"], 20);
    assert_eq!(report["variants"][1]["uses"], 20);
    drop(one);
}

/// `darkroom prompts` and `darkroom jobs rate` against a running daemon.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_saves_lists_submits_rates_and_exports() {
    let comfy = FakeComfy::start().await;
    let (server, _api) = node(&comfy, |_| {}).await;
    let url = format!("http://{}", server.daemon.api_addr());
    let cli = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
                .args(&args)
                .env("DARKROOM_URL", &url)
                .env_remove("DARKROOM_TOKEN")
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            (out.status.success(), text, err)
        }
    };
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();

    let (ok, out, err) = cli(args(
        "prompts save fox --template noop -p color=5 -p width=48 --tag animal --category nature",
    ))
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "fox@1");
    let (ok, out, _) = cli(args("prompts save fox -p width=64 --note wider")).await;
    assert!(ok);
    assert_eq!(out.trim(), "fox@2");
    let (ok, _, err) = cli(args("prompts save fox -p widht=64")).await;
    assert!(!ok);
    assert!(err.contains("params.widht"), "{err}");

    let (ok, out, err) = cli(args("submit --prompt fox@1 -p color=6 --wait 60 --json")).await;
    assert!(ok, "{err}");
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["payload"]["prompt"], json!({"name": "fox", "version": 1}));
    let id = job["id"].as_str().unwrap().to_owned();
    let (ok, out, err) = cli(vec![
        "jobs".into(),
        "rate".into(),
        id.clone(),
        "4".into(),
        "--comment".into(),
        "nice".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("rated 4 (fox@1)"), "{out}");
    let (ok, _, err) = cli(vec!["jobs".into(), "rate".into(), id, "9".into()]).await;
    assert!(!ok && err.contains('9'), "{err}");

    let (ok, out, _) = cli(args("prompts list")).await;
    assert!(ok);
    let line = out
        .lines()
        .find(|l| l.starts_with("fox"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("100%") && line.contains("4.00 (1)"), "{line}");
    let (ok, out, _) = cli(args("prompts show fox")).await;
    assert!(ok);
    assert!(
        out.contains("@1") && out.contains("@2") && out.contains("rated 4"),
        "{out}"
    );

    let file = server.dir.path().join("library.json");
    let (ok, _, err) = cli(vec![
        "prompts".into(),
        "export".into(),
        "-o".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(ok, "{err}");
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["prompts"][0]["versions"].as_array().unwrap().len(), 2);
    let (ok, out, _) = cli(vec![
        "prompts".into(),
        "import".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(ok);
    assert!(out.starts_with("created 0, updated 0, unchanged 1"), "{out}");
    let (ok, out, err) = cli(args(
        "prompts campaign create fa --variant fox@1:3 --variant fox@2 --target 4",
    ))
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("fox@1 x3, fox@2 x1"), "{out}");
    let (ok, out, _) = cli(args("prompts campaign show fa")).await;
    assert!(ok);
    assert!(out.contains("no winner yet"), "{out}");
}
