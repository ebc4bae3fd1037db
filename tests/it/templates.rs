//! User templates end to end: `darkroom templates import` (the real binary, into
//! the folder and into a daemon) of the realistic workflows in
//! `tests/fixtures/templates/`, with ranges from the fake ComfyUI's recorded
//! `/object_info`; the daemon's hot reload of the folder (an edit serves a new
//! version, a broken file is named with its line while the old version goes on
//! serving); the version every job records; the API's POST/PUT/DELETE and
//! validate; and two nodes sharing their templates through one redis-server.
//! Nothing sleeps: reloads are awaited on the library's change notifications,
//! bounded by the suite's overall deadline.

use std::path::{Path, PathBuf};

use darkroom::config::Config;
use darkroom::templates::TemplateLibrary;
use serde_json::{Value, json};

use crate::api_support::Api;
use crate::dispatch::{configure, daemon};
use crate::fake_comfy::FakeComfy;
use crate::support::{TestServer, bounded, server_with};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/templates")
        .join(name)
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// Runs the darkroom binary (tokio::process: the daemon runs on this runtime)
/// in `cwd`; returns (success, stdout, stderr).
async fn darkroom(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(args)
        .env_remove("DARKROOM_URL")
        .env_remove("DARKROOM_TOKEN")
        .current_dir(cwd)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (on the library's change notifications) until `cond` holds.
async fn until(lib: &TemplateLibrary, what: &str, cond: impl Fn(&TemplateLibrary) -> bool) {
    let mut changes = lib.changes();
    bounded(what, async {
        while !cond(lib) {
            changes.changed().await.unwrap();
        }
    })
    .await;
}

/// Replaces a file as careful editors do (a new file renamed over it), so the
/// watcher never reads it half written.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn version_of(lib: &TemplateLibrary, name: &str) -> Option<String> {
    lib.current().get(name).ok().map(|t| t.version.clone())
}

async fn api(server: &TestServer) -> Api {
    Api::new(server.daemon.api_addr(), None).await
}

fn templates_dir(server: &TestServer) -> PathBuf {
    server.dir.path().join("data/templates")
}

/// Submits `template` with `params` and waits for the job to end.
async fn run(api: &Api, template: &str, params: Value) -> Value {
    let r = api
        .post(
            "/api/v1/jobs?wait=60",
            Some(&json!({"template": template, "params": params})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

#[tokio::test]
async fn a_cli_import_into_the_folder_is_hot_reloaded_and_jobs_record_its_version() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let api = api(&server).await;
    let lib = server.daemon.services().jobs.template_library().clone();
    let dir = templates_dir(&server);
    let dir_arg = dir.to_str().unwrap();
    let file = fixture("sdxl_txt2img.json");
    let import = [
        "templates",
        "import",
        file.to_str().unwrap(),
        "--name",
        "portrait",
        "--dir",
        dir_arg,
        "--comfyui",
        comfy.url.as_str(),
    ];

    // --dry-run prints the proposed manifest, with the backend's ranges, and saves nothing.
    let (ok, out, err) = darkroom(server.dir.path(), &[&import[..], &["--dry-run"]].concat()).await;
    assert!(ok, "{err}");
    let manifest: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let steps = &manifest["params"]["steps"];
    assert_eq!(
        (
            steps["node"].as_str(),
            steps["type"].as_str(),
            steps["default"].as_integer()
        ),
        (Some("3"), Some("int"), Some(30))
    );
    assert_eq!(steps["max"].as_float(), Some(10000.0));
    assert_eq!(manifest["params"]["checkpoint"]["type"].as_str(), Some("model"));
    assert!(err.contains(&comfy.url), "{err}");
    assert!(!dir.join("portrait.json").exists() && !dir.join("portrait.toml").exists());

    // Saved: the daemon watching the folder serves it.
    let (ok, out, err) = darkroom(server.dir.path(), &import).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("saved template portrait version "), "{out}");
    until(&lib, "the imported template to load", |l| {
        version_of(l, "portrait").is_some()
    })
    .await;
    let first = version_of(&lib, "portrait").unwrap();
    assert!(
        out.contains(&first),
        "the CLI names the version the daemon serves: {out}"
    );
    // A second import of the same name is refused without --replace.
    let (ok, _, err) = darkroom(server.dir.path(), &import).await;
    assert!(!ok && err.contains("--replace"), "{err}");

    let job = run(&api, "portrait", json!({"prompt": "a lighthouse", "steps": 12})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["payload"]["template"], "portrait");
    assert_eq!(job["payload"]["template_version"], json!(first));
    assert_eq!(job["payload"]["workflow"]["3"]["inputs"]["steps"], 12);
    // The stored metadata.json beside the outputs names it too.
    let id = job["id"].as_str().unwrap();
    let meta = server
        .client
        .get_object()
        .bucket("comfyui-outputs")
        .key(format!("jobs/{id}/metadata.json"))
        .send()
        .await
        .unwrap();
    let meta: Value = serde_json::from_slice(&meta.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(
        (&meta["template"], &meta["template_version"]),
        (&json!("portrait"), &json!(first))
    );
    let out_of_range = api
        .post(
            "/api/v1/jobs",
            Some(&json!({"template": "portrait", "params": {"steps": 0}})),
        )
        .await;
    assert_eq!(
        (out_of_range.status, out_of_range.error_field()),
        (400, Some("params.steps".into()))
    );

    // An edit: a new version serves, and the next job records it.
    let toml_path = dir.join("portrait.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    replace_file(&toml_path, &text.replace("default = 30", "default = 40"));
    until(&lib, "the edited template to load", |l| {
        version_of(l, "portrait").is_some_and(|v| v != first)
    })
    .await;
    let second = version_of(&lib, "portrait").unwrap();
    let shown = api.get("/api/v1/templates/portrait").await.json();
    assert_eq!(
        (shown["version"].as_str(), &shown["params"]["steps"]["default"]),
        (Some(second.as_str()), &json!(40))
    );
    let job = run(&api, "portrait", json!({})).await;
    assert_eq!(job["payload"]["template_version"], json!(second));
    assert_eq!(job["payload"]["params"]["steps"], 40);

    // Broken at line 3: named with the file and line; the second version still serves.
    replace_file(
        &toml_path,
        "description = \"oops\"\n\n[params.steps\nnode = \"3\"\n",
    );
    until(&lib, "the broken file to be reported", |l| {
        !l.problems_of("portrait").is_empty()
    })
    .await;
    let problem = &lib.problems_of("portrait")[0];
    assert_eq!(
        (problem.file.as_str(), problem.line),
        ("portrait.toml", Some(3)),
        "{problem}"
    );
    let shown = api.get("/api/v1/templates/portrait").await.json();
    assert_eq!(shown["version"], json!(second));
    assert_eq!(shown["problems"][0]["file"], "portrait.toml");
    assert_eq!(shown["problems"][0]["line"], 3);
    let job = run(&api, "portrait", json!({})).await;
    assert_eq!(
        (job["status"].as_str(), &job["payload"]["template_version"]),
        (Some("succeeded"), &json!(second))
    );
    let url = format!("http://{}", server.daemon.api_addr());
    let (ok, out, err) = darkroom(server.dir.path(), &["templates", "list", "--url", &url]).await;
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("portrait ")).unwrap();
    assert!(line.contains(&second) && line.contains("broken"), "{out}");
    let (ok, out, _) = darkroom(
        server.dir.path(),
        &["templates", "show", "portrait", "--url", &url],
    )
    .await;
    assert!(ok && out.contains("PROBLEM: portrait.toml:3"), "{out}");

    // A new template whose workflow is broken JSON never loads; its line is named.
    replace_file(&dir.join("fresh.toml"), "params = {}\n");
    replace_file(
        &dir.join("fresh.json"),
        "{\n  \"1\": {\n    \"class_type\": \"SaveImage\",,\n",
    );
    // (A reload between the two files reports the missing half, without a line.)
    until(&lib, "the broken new template to be reported", |l| {
        l.problems_of("fresh").iter().any(|p| p.line.is_some())
    })
    .await;
    let r = api.get("/api/v1/templates/fresh").await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("fresh.json:3:"), "{}", r.text);
    let r = api
        .post("/api/v1/jobs", Some(&json!({"template": "fresh"})))
        .await;
    assert_eq!((r.status, r.error_field()), (400, Some("template".into())));

    // A built-in's job records the built-in's version too.
    let builtin = version_of(&lib, "noop").unwrap();
    let job = run(&api, "noop", json!({"width": 64, "height": 64})).await;
    assert_eq!(job["payload"]["template_version"], json!(builtin));
    server.daemon.shutdown().await;
}

#[tokio::test]
async fn import_refuses_the_editor_format_with_how_to_export() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture("editor_format.json");
    let (ok, _, err) = darkroom(
        dir.path(),
        &[
            "templates",
            "import",
            file.to_str().unwrap(),
            "--name",
            "x",
            "--dry-run",
            "--dir",
            "t",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("editor_format.json")
            && err.contains("Workflow → Export (API)")
            && err.contains("Dev mode"),
        "{err}"
    );
    let (ok, _, err) = darkroom(
        dir.path(),
        &[
            "templates",
            "import",
            fixture("upscale_chain.json").to_str().unwrap(),
            "--name",
            "Upscale!",
            "--dir",
            "t",
        ],
    )
    .await;
    assert!(!ok && err.contains("--name"), "{err}");
    let (ok, _, err) = darkroom(
        dir.path(),
        &[
            "templates",
            "import",
            fixture("upscale_chain.json").to_str().unwrap(),
            "--name",
            "txt2img",
            "--dir",
            "t",
        ],
    )
    .await;
    assert!(!ok && err.contains("built-in"), "{err}");
    assert!(
        !dir.path().join("t").exists() || std::fs::read_dir(dir.path().join("t")).unwrap().next().is_none()
    );
}

#[tokio::test]
async fn the_api_imports_replaces_validates_and_deletes() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |_| {}).await;
    let api = api(&server).await;
    let upscale = fixture_json("upscale_chain.json");

    // A dry run proposes with the backend's ranges and saves nothing.
    let r = api
        .post(
            "/api/v1/templates?dry_run=true",
            Some(&json!({"name": "upscaler", "workflow": upscale})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let proposal = r.json();
    assert_eq!(proposal["saved"], false);
    assert_eq!(proposal["backend"], json!(comfy.url));
    let params = &proposal["template"]["params"];
    assert_eq!(params["image"]["type"], "image");
    assert_eq!(params["image"]["default"], "render_0042.png");
    assert_eq!(
        (
            params["scale_by"]["min"].as_f64(),
            params["scale_by"]["max"].as_f64()
        ),
        (Some(0.01), Some(8.0))
    );
    assert_eq!(api.get("/api/v1/templates/upscaler").await.status, 404);

    // Saved into the folder; a second POST of the name is a conflict.
    let r = api
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "upscaler", "workflow": upscale})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let first = r.json()["template"]["version"].as_str().unwrap().to_owned();
    assert!(templates_dir(&server).join("upscaler.toml").is_file());
    let r = api
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "upscaler", "workflow": upscale})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let list = api.get("/api/v1/templates").await.json();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "upscaler")
        .unwrap();
    assert_eq!(
        (listed["version"].as_str(), listed["source"].as_str()),
        (Some(first.as_str()), Some("folder"))
    );

    // Refusals: the editor format (with the how-to), a built-in's name, a bad name,
    // a manifest that does not fit the workflow (named with its line).
    let r = api
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "ed", "workflow": fixture_json("editor_format.json")})),
        )
        .await;
    assert_eq!((r.status, r.error_field()), (400, Some("workflow".into())));
    assert!(r.text.contains("Export (API)"), "{}", r.text);
    let r = api
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "txt2img", "workflow": upscale})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = api
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "Up Scale", "workflow": upscale})),
        )
        .await;
    assert_eq!((r.status, r.error_field()), (400, Some("name".into())));
    let bad = "description = \"\"\n[params.factor]\nnode = \"4\"\ninput = \"factor\"\ntype = \"float\"\n";
    let r = api
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "up2", "workflow": upscale, "manifest": bad})),
        )
        .await;
    assert_eq!((r.status, r.error_field()), (400, Some("manifest".into())));
    assert!(
        r.text.contains("up2.toml:2") && r.text.contains("4.factor"),
        "{}",
        r.text
    );

    // PUT with an edited manifest: a new version, the edit served.
    let mut manifest = proposal["template"]["manifest"].as_str().unwrap().to_owned();
    manifest = manifest.replace("default = 0.5", "default = 0.25");
    let r = api
        .call(
            reqwest::Method::PUT,
            "/api/v1/templates/upscaler",
            Some(
                json!({"workflow": upscale, "manifest": manifest})
                    .to_string()
                    .into_bytes(),
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.json()["template"]["version"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let shown = api.get("/api/v1/templates/upscaler").await.json();
    assert_eq!(
        (shown["version"].as_str(), &shown["params"]["scale_by"]["default"]),
        (Some(second.as_str()), &json!(0.25))
    );
    assert_eq!(shown["workflow"]["4"]["class_type"], "ImageScaleBy");

    // Validate: the built-in is clean; the upscale's input picture is not on the
    // backend (its input folder has example.png only); each kind of problem is named.
    let r = api.get("/api/v1/templates/txt2img/validate").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let report = r.json();
    assert_eq!(
        (report["ok"].as_bool(), report["backend"].as_str()),
        (Some(true), Some(comfy.url.as_str())),
        "{report}"
    );
    let report = api.get("/api/v1/templates/upscaler/validate").await.json();
    assert_eq!(report["ok"], false);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(
        (&findings[0]["kind"], &findings[0]["node"], &findings[0]["input"]),
        (&json!("not_in_choices"), &json!("1"), &json!("image"))
    );
    let mut broken = fixture_json("sdxl_txt2img.json");
    broken["3"]["inputs"]["steps"] = json!(0);
    broken["3"]["inputs"]["sampler_name"] = json!("warp_drive");
    broken["5"]["inputs"]["colour"] = json!("red");
    broken["10"] = json!({"class_type": "FaceDetailerPipe", "inputs": {"image": ["8", 0]}});
    let r = api
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "broken", "workflow": broken})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = format!("http://{}", server.daemon.api_addr());
    let (ok, out, err) = darkroom(
        server.dir.path(),
        &["templates", "validate", "broken", "--url", &url],
    )
    .await;
    assert!(!ok && err.contains("4 problem"), "{out}\n{err}");
    for needle in [
        "not_in_choices: node 3 (KSampler) input `sampler_name`",
        "out_of_range: node 3 (KSampler) input `steps`",
        "unknown_input: node 5 (EmptyLatentImage): no input `colour`",
        "unknown_class: node 10: the backend has no node class `FaceDetailerPipe`",
    ] {
        assert!(out.contains(needle), "{needle:?} not in\n{out}");
    }
    let report = api.get("/api/v1/templates/broken/validate").await.json();
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["not_in_choices", "out_of_range", "unknown_input", "unknown_class"]
    );

    // Import into the daemon through the CLI (--url): the custom-node workflow.
    let custom = fixture("custom_nodes.json");
    let (ok, out, err) = darkroom(
        server.dir.path(),
        &[
            "templates",
            "import",
            custom.to_str().unwrap(),
            "--name",
            "castle",
            "--url",
            &url,
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("saved template castle"), "{out}");
    assert!(
        err.contains("UltimateSDUpscale"),
        "the custom class is noted: {err}"
    );
    let castle = api.get("/api/v1/templates/castle").await.json();
    for p in ["seed_3", "steps_3", "filename_prefix_2", "negative_prompt"] {
        assert!(castle["params"][p].is_object(), "no {p}: {castle}");
    }

    // DELETE: gone from the API and the folder; built-ins and unknown names refused.
    let r = api
        .call(reqwest::Method::DELETE, "/api/v1/templates/upscaler", None, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(api.get("/api/v1/templates/upscaler").await.status, 404);
    assert!(!templates_dir(&server).join("upscaler.json").exists());
    let r = api
        .call(reqwest::Method::DELETE, "/api/v1/templates/txt2img", None, &[])
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = api
        .call(reqwest::Method::DELETE, "/api/v1/templates/upscaler", None, &[])
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    server.daemon.shutdown().await;
}

#[tokio::test]
async fn two_nodes_on_one_redis_serve_the_same_templates() {
    let redis = crate::redis_server::RedisServer::shared();
    let prefix = format!("templates-{}", ulid::Ulid::new());
    let comfy = FakeComfy::start().await;
    let on_redis = |c: &mut Config| {
        configure(c, std::slice::from_ref(&comfy.url));
        c.redis = redis.settings();
        c.redis.key_prefix.clone_from(&prefix);
        c.queue.backend = darkroom::redis_store::Backend::Redis;
        c.cache.backend = darkroom::redis_store::Backend::Redis;
    };
    // Node one starts with a template in its folder: it is published.
    let seeded = tempfile::tempdir().unwrap();
    let one = server_with(|c| {
        on_redis(c);
        c.comfyui.templates_dir = Some(seeded.path().to_owned());
        let wf = std::fs::read_to_string(fixture("upscale_chain.json")).unwrap();
        let workflow: Value = serde_json::from_str(&wf).unwrap();
        let p = darkroom::templates::propose(&workflow, None, "seeded");
        darkroom::templates::folder::write_pair(
            seeded.path(),
            "seeded",
            &wf,
            &darkroom::templates::manifest_text(&p, "upscale_chain.json"),
        )
        .unwrap();
    })
    .await;
    let two = server_with(on_redis).await;
    let (api_one, api_two) = (api(&one).await, api(&two).await);
    let (lib_one, lib_two) = (
        one.daemon.services().jobs.template_library().clone(),
        two.daemon.services().jobs.template_library().clone(),
    );
    assert_eq!(version_of(&lib_two, "seeded"), version_of(&lib_one, "seeded"));
    assert!(version_of(&lib_two, "seeded").is_some());

    // Saved through node one's API: node two serves it without a restart.
    let sdxl = fixture_json("sdxl_txt2img.json");
    let r = api_one
        .post(
            "/api/v1/templates",
            Some(&json!({"name": "portrait", "workflow": sdxl})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v1 = r.json()["template"]["version"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["template"]["source"], "shared");
    until(&lib_two, "node two to serve portrait", |l| {
        version_of(l, "portrait").as_deref() == Some(v1.as_str())
    })
    .await;
    let job = run(&api_two, "portrait", json!({"prompt": "from node two"})).await;
    assert_eq!(
        (job["status"].as_str(), &job["payload"]["template_version"]),
        (Some("succeeded"), &json!(v1))
    );

    // Replaced through node two: node one serves the new version.
    let manifest = r.json()["template"]["manifest"]
        .as_str()
        .unwrap()
        .replace("default = 30", "default = 8");
    let r = api_two
        .call(
            reqwest::Method::PUT,
            "/api/v1/templates/portrait",
            Some(
                json!({"workflow": sdxl, "manifest": manifest})
                    .to_string()
                    .into_bytes(),
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v2 = r.json()["template"]["version"].as_str().unwrap().to_owned();
    until(&lib_one, "node one to serve the replacement", |l| {
        version_of(l, "portrait").as_deref() == Some(v2.as_str())
    })
    .await;
    assert_eq!(
        api_one.get("/api/v1/templates/portrait").await.json()["params"]["steps"]["default"],
        8
    );

    // An edit of node one's folder file is published too.
    let toml_path = seeded.path().join("seeded.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    replace_file(
        &toml_path,
        &text.replace("description = \"seeded\"", "description = \"edited\""),
    );
    until(&lib_two, "node two to see the folder edit", |l| {
        l.current()
            .get("seeded")
            .is_ok_and(|t| t.manifest.description == "edited")
    })
    .await;

    // Deleted through node two: gone from node one.
    let r = api_two
        .call(reqwest::Method::DELETE, "/api/v1/templates/portrait", None, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    until(&lib_one, "node one to drop portrait", |l| {
        version_of(l, "portrait").is_none()
    })
    .await;
    one.daemon.shutdown().await;
    two.daemon.shutdown().await;
}
