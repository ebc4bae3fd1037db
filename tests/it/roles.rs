//! The role matrix: every operation in the OpenAPI document, called with a
//! viewer's, a user's and an admin's key, a revoked key and none. A viewer changes
//! nothing (403 on every write), a user is refused exactly the admin-only
//! operations, an admin is never refused, a valid key is never taken for no key
//! (401), and a revoked key or none opens nothing but the open endpoints (health,
//! metrics, the document). A new endpoint is covered the day it is documented.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_support::Api;
use crate::dispatch::configure;
use crate::fake_comfy::FakeComfy;
use crate::support::server_with;

/// What a user (not an admin) is refused: `METHOD path-template`.
const ADMIN_ONLY: &[&str] = &[
    "DELETE /api/v1/keys/{id}",
    "DELETE /api/v1/templates/{name}",
    "DELETE /api/v1/users/{name}",
    "GET /api/v1/keys",
    "GET /api/v1/users",
    "PATCH /api/v1/users/{name}/quota",
    "POST /api/v1/backups",
    "POST /api/v1/keys",
    "POST /api/v1/templates",
    "POST /api/v1/users",
    "POST /api/v1/users/{name}/{action}",
    "PUT /api/v1/templates/{name}",
];

/// A concrete path for a documented template.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{id}" => "01JEXAMPLE0000000000000000".to_owned(),
            "{name}" => "nobody".to_owned(),
            "{action}" => "disable".to_owned(),
            "{bucket}" => "comfyui-outputs".to_owned(),
            "{key}" | "{key:.*}" => "none.png".to_owned(),
            "{n}" => "0".to_owned(),
            s if s.starts_with('{') => "x".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_answers_each_role_as_it_allows() {
    let comfy = FakeComfy::start().await;
    let url = comfy.url.clone();
    let server = server_with(|c| {
        configure(c, &[url]);
        c.api.token = "root-token".into();
        // The revoked key and the missing one fail on purpose, many times.
        c.api.max_auth_failures = 1_000_000;
    })
    .await;
    let addr = server.daemon.api_addr();
    let root = Api::new(addr, Some("root-token")).await;
    let mut keys = Vec::new();
    for (name, role) in [("vic", "viewer"), ("ana", "user"), ("ops", "admin")] {
        let r = root
            .post("/api/v1/users", Some(&json!({"name": name, "role": role})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = root.post("/api/v1/keys", Some(&json!({"user": name}))).await;
        keys.push((role, r.json()["key"].as_str().unwrap().to_owned()));
    }
    // A revoked key, and no key at all: 401 everywhere but the open endpoints.
    let r = root.post("/api/v1/keys", Some(&json!({"user": "ana"}))).await;
    let revoked = r.json()["key"].as_str().unwrap().to_owned();
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = root
        .call(Method::DELETE, &format!("/api/v1/keys/{id}"), None, &[])
        .await;
    assert_eq!(r.status, 204);
    keys.push(("revoked", revoked));
    keys.push(("nobody", String::new()));
    let spec: Value = root.get("/api/v1/openapi.json").await.json();
    let http = reqwest::Client::new();
    let mut refused_users = BTreeSet::new();
    let mut open = BTreeSet::new();
    let mut operations = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() || template.ends_with("/events") {
                continue;
            }
            operations += 1;
            let op = format!("{} {template}", method.to_uppercase());
            let path = concrete(template);
            for (role, key) in &keys {
                let m: Method = method.to_uppercase().parse().unwrap();
                let mut req = http.request(m, format!("{}{path}", root.base));
                if !key.is_empty() {
                    req = req.bearer_auth(key);
                }
                // A valid body where the operation's refusal could hide behind a 400.
                let body = match op.as_str() {
                    "POST /api/v1/users" => json!({"name": format!("new-{role}"), "role": "viewer"}),
                    "POST /api/v1/keys" => json!({"user": "ana"}),
                    _ => json!({}),
                };
                let resp = req
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                assert!(status < 500, "{role} {op}: {status} {body}");
                if matches!(*role, "revoked" | "nobody") {
                    if status != 401 {
                        open.insert(format!("{role} {op}"));
                    }
                    continue;
                }
                assert_ne!(status, 401, "{role} {op}: {body}");
                let write = method != "get";
                match *role {
                    "viewer" if write => assert_eq!(status, 403, "viewer {op}: {body}"),
                    "user" if status == 403 => {
                        refused_users.insert(op.clone());
                    }
                    "admin" => assert_ne!(status, 403, "admin {op}: {body}"),
                    _ => {}
                }
            }
        }
    }
    assert!(operations > 40, "only {operations} operations documented?");
    let expected: BTreeSet<String> = ADMIN_ONLY.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(refused_users, expected, "what a user is refused");
    let open_ops = [
        "GET /api/v1/openapi.json",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ];
    let expected_open: BTreeSet<String> = ["revoked", "nobody"]
        .iter()
        .flat_map(|who| open_ops.iter().map(move |op| format!("{who} {op}")))
        .collect();
    let unexpected: Vec<_> = open.difference(&expected_open).collect();
    assert!(
        unexpected.is_empty(),
        "answered without a valid key: {unexpected:?}"
    );
}
