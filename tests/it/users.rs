//! Users and API keys end to end: an admin (the bootstrap `api.token`) adds users
//! and keys through the API (answers checked against the OpenAPI document); each
//! key acts as its user's role — a user submits but manages no one, a viewer
//! only reads — and stops working at once when revoked, its user disabled or
//! removed. The first admin key is made with the CLI on a stopped daemon's data
//! directory, and works once the daemon runs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_support::Api;
use crate::dispatch::configure;
use crate::fake_comfy::FakeComfy;
use crate::support::server_with;

async fn status_with(base: &str, token: &str, method: Method, path: &str, body: Option<Value>) -> u16 {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_act_as_their_users_role_until_revoked_disabled_or_removed() {
    let comfy = FakeComfy::start().await;
    let url = comfy.url.clone();
    let server = server_with(|c| {
        configure(c, &[url]);
        c.api.token = "root-token".into();
    })
    .await;
    let root = Api::new(server.daemon.api_addr(), Some("root-token")).await;
    let base = root.base.clone();

    for (name, role) in [("ana", "user"), ("vic", "viewer"), ("bob", "user")] {
        let r = root
            .post("/api/v1/users", Some(&json!({"name": name, "role": role})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    assert_eq!(
        root.post("/api/v1/users", Some(&json!({"name": "ana", "role": "admin"})))
            .await
            .status,
        409
    );
    let bad = root
        .post(
            "/api/v1/users",
            Some(&json!({"name": "Ana Lopez", "role": "user"})),
        )
        .await;
    assert_eq!((bad.status, bad.error_field().as_deref()), (400, Some("name")));

    let key = |user: &str| json!({"user": user, "name": "n8n"});
    let ana = root.post("/api/v1/keys", Some(&key("ana"))).await;
    assert_eq!(ana.status, 201, "{}", ana.text);
    let (ana_key, ana_id) = (
        ana.json()["key"].as_str().unwrap().to_owned(),
        ana.json()["id"].clone(),
    );
    let vic_key = root.post("/api/v1/keys", Some(&key("vic"))).await.json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = root.post("/api/v1/keys", Some(&key("nobody"))).await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("user")));
    let r = root
        .post("/api/v1/keys", Some(&json!({"user": "ana", "expires": "3w"})))
        .await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("expires")));
    let listed = root.get("/api/v1/keys?user=ana").await;
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    let secret = ana_key.rsplit_once('_').unwrap().1;
    assert!(
        !listed.text.contains(secret),
        "a key's secret is never shown again"
    );

    // A user submits and reads, and manages no one.
    let as_ana = Api::new(server.daemon.api_addr(), Some(&ana_key)).await;
    assert_eq!(as_ana.get("/api/v1/status").await.status, 200);
    let submitted = as_ana
        .post("/api/v1/jobs", Some(&json!({"template": "noop"})))
        .await;
    assert_eq!(submitted.status, 202);
    let anas_job = submitted.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted.json()["owner"], "ana");
    crate::dispatch::finished(server.daemon.queue(), anas_job.parse().unwrap()).await;

    // Each user sees their own jobs; an admin sees every one.
    let bob_key = root.post("/api/v1/keys", Some(&key("bob"))).await.json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_bob = Api::new(server.daemon.api_addr(), Some(&bob_key)).await;
    let ids = |page: Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(ids(as_ana.get("/api/v1/jobs").await.json()).contains(&anas_job));
    assert!(ids(root.get("/api/v1/jobs").await.json()).contains(&anas_job));
    assert!(!ids(as_bob.get("/api/v1/jobs").await.json()).contains(&anas_job));
    assert_eq!(as_ana.get(&format!("/api/v1/jobs/{anas_job}")).await.status, 200);
    assert_eq!(as_bob.get(&format!("/api/v1/jobs/{anas_job}")).await.status, 404);
    assert_eq!(
        as_bob
            .post(&format!("/api/v1/jobs/{anas_job}/retry"), None)
            .await
            .status,
        404
    );
    let r = as_bob
        .post(
            &format!("/api/v1/jobs/{anas_job}/rating"),
            Some(&json!({"rating": 1})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        as_bob
            .get(&format!("/api/v1/jobs/{anas_job}/outputs/0/thumbnail"))
            .await
            .status,
        404
    );
    // Bob's event stream skips Ana's job: from the start of the backlog, the first
    // job event he gets is his own job's.
    let bobs_job = as_bob
        .post(
            "/api/v1/jobs",
            Some(&json!({"template": "noop", "params": {"color": 5}})),
        )
        .await;
    let bobs_job = bobs_job.json()["id"].as_str().unwrap().to_owned();
    let mut stream = reqwest::Client::new()
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(&bob_key)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let first_job = crate::support::bounded("bob's first job event", async {
        loop {
            let chunk = stream.chunk().await.unwrap().expect("the stream ended");
            text.push_str(&String::from_utf8_lossy(&chunk));
            let found = text
                .lines()
                .find(|l| l.starts_with("data:") && l.contains("\"queue\":\"comfyui\""));
            if let Some(line) = found {
                return line.to_owned();
            }
        }
    })
    .await;
    assert!(
        first_job.contains(&bobs_job) && !text.contains(&anas_job),
        "{text}"
    );
    let r = as_ana.get("/api/v1/users").await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(as_ana.post("/api/v1/keys", Some(&key("ana"))).await.status, 403);
    assert_eq!(as_ana.post("/api/v1/backups", Some(&json!({}))).await.status, 403);
    // Templates are the team's: a user may try an import (dry run), an admin saves it.
    let workflow: Value = serde_json::from_str(include_str!("../../assets/workflows/noop.json")).unwrap();
    let upload = json!({"name": "mine", "workflow": workflow});
    assert_eq!(
        as_ana
            .post("/api/v1/templates?dry_run=true", Some(&upload))
            .await
            .status,
        200
    );
    assert_eq!(as_ana.post("/api/v1/templates", Some(&upload)).await.status, 403);
    assert_eq!(
        as_ana
            .call(Method::DELETE, "/api/v1/templates/mine", None, &[])
            .await
            .status,
        403
    );
    assert_eq!(root.post("/api/v1/templates", Some(&upload)).await.status, 201);
    // A viewer only reads.
    let as_vic = Api::new(server.daemon.api_addr(), Some(&vic_key)).await;
    assert_eq!(as_vic.get("/api/v1/jobs").await.status, 200);
    let r = as_vic
        .post("/api/v1/jobs", Some(&json!({"template": "noop"})))
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Disabled, enabled, revoked, removed: at once.
    assert_eq!(
        root.post("/api/v1/users/vic/disable", None).await.json()["disabled"],
        true
    );
    assert_eq!(
        status_with(&base, &vic_key, Method::GET, "/api/v1/jobs", None).await,
        401
    );
    assert_eq!(root.post("/api/v1/users/vic/enable", None).await.status, 200);
    assert_eq!(
        status_with(&base, &vic_key, Method::GET, "/api/v1/jobs", None).await,
        200
    );
    let path = format!("/api/v1/keys/{}", ana_id.as_str().unwrap());
    assert_eq!(root.call(Method::DELETE, &path, None, &[]).await.status, 204);
    assert_eq!(
        status_with(&base, &ana_key, Method::GET, "/api/v1/status", None).await,
        401
    );
    assert_eq!(
        root.call(Method::DELETE, "/api/v1/users/vic", None, &[])
            .await
            .status,
        204
    );
    assert_eq!(
        status_with(&base, &vic_key, Method::GET, "/api/v1/jobs", None).await,
        401
    );
    let left = root.get("/api/v1/keys").await.json();
    assert_eq!(left.as_array().unwrap().len(), 1, "only bob's key: {left}");
    assert_eq!(left[0]["user"], "bob");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_admin_key_is_made_offline_and_works_once_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
            .args(&args)
            .env_remove("DARKROOM_URL")
            .env_remove("DARKROOM_TOKEN")
            .output()
            .await
            .unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        (out.status.success(), o, e)
    };
    let d = data.display().to_string();
    let (ok, _, err) = run(vec![
        "users".into(),
        "add".into(),
        "ops".into(),
        "--role".into(),
        "admin".into(),
        "--data".into(),
        d.clone(),
    ])
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(vec![
        "users".into(),
        "add".into(),
        "x".into(),
        "--role".into(),
        "root".into(),
        "--data".into(),
        d.clone(),
    ])
    .await;
    assert!(!ok && err.contains("--role") && err.contains("admin"), "{err}");
    let (ok, out, err) = run(vec![
        "keys".into(),
        "create".into(),
        "--user".into(),
        "ops".into(),
        "--json".into(),
        "--data".into(),
        d.clone(),
    ])
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    let mut config = crate::support::test_config(&dir);
    config.api.token = "root-token".into();
    let (daemon, _) = crate::support::daemon_on(&config).await;
    let base = format!("http://{}", daemon.api_addr());
    assert_eq!(
        status_with(&base, &key, Method::GET, "/api/v1/users", None).await,
        200,
        "an admin key"
    );
    // While the daemon runs, its store is its own: the CLI says to go through it.
    let (ok, _, err) = run(vec!["users".into(), "list".into(), "--data".into(), d.clone()]).await;
    assert!(!ok && err.contains("is the daemon running"), "{err}");
    let (ok, out, err) = run(vec![
        "users".into(),
        "list".into(),
        "--url".into(),
        base.clone(),
        "--token".into(),
        key.clone(),
    ])
    .await;
    assert!(ok && out.contains("ops") && out.contains("admin"), "{out}{err}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (ok, _, err) = run(vec![
        "keys".into(),
        "revoke".into(),
        id,
        "--url".into(),
        base.clone(),
        "--token".into(),
        "root-token".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        status_with(&base, &key, Method::GET, "/api/v1/users", None).await,
        401
    );
    daemon.shutdown().await;
}
