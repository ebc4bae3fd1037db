//! Image inputs end to end: each way of giving a picture (`s3://` on darkroom's
//! store, an http URL, base64 and a data: URL in JSON, a multipart file) reaches
//! the fake ComfyUI once, through POST /upload/image under its content-addressed
//! name, and is bound into the LoadImage input; bad inputs are a 400 naming the
//! parameter, before anything is queued.

use std::net::SocketAddr;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::api_support::Api;
use crate::dispatch::{configure, finished};
use crate::fake_comfy::{FakeComfy, PNG, jpeg};
use crate::support::{TestServer, server_with};

async fn daemon(comfy: &FakeComfy, tweak: impl FnOnce(&mut darkroom::config::Config)) -> TestServer {
    let url = comfy.url.clone();
    server_with(|c| {
        configure(c, &[url]);
        c.s3.buckets = vec![darkroom::s3::BucketConfig {
            name: "pics".into(),
            public_read: false,
            expire_days: 0,
        }];
        tweak(c);
    })
    .await
}

async fn api(server: &TestServer) -> Api {
    Api::new(server.daemon.api_addr(), None).await
}

async fn put(server: &TestServer, key: &str, bytes: &[u8]) {
    server
        .client
        .put_object()
        .bucket("pics")
        .key(key)
        .body(bytes.to_vec().into())
        .send()
        .await
        .unwrap();
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Submits `params` to `upscale`, expecting it admitted; returns the job id.
async fn submit(api: &Api, params: Value) -> Ulid {
    let r = api
        .post(
            "/api/v1/jobs",
            Some(&json!({"template": "upscale", "params": params})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.json()["id"].as_str().unwrap().parse().unwrap()
}

/// Runs job `id` to success and checks its input was bound as `sha.ext` and
/// recorded with `source` in metadata.json.
async fn check_ran(server: &TestServer, id: Ulid, bytes: &[u8], ext: &str, source: &str) {
    let job = finished(server.daemon.queue(), id).await;
    assert_eq!(job.status, darkroom::queue::JobStatus::Succeeded, "{job:#?}");
    let name = format!("darkroom/{}.{ext}", sha(bytes));
    assert_eq!(job.payload["params"]["image"], json!(name));
    let meta = server
        .client
        .get_object()
        .bucket("comfyui-outputs")
        .key(format!("jobs/{id}/metadata.json"))
        .send()
        .await
        .unwrap();
    let meta: Value = serde_json::from_slice(&meta.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(meta["inputs"][0]["source"], json!(source), "{meta:#}");
    assert_eq!(meta["inputs"][0]["sha256"], json!(sha(bytes)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_inputs_are_uploaded_once_and_bound() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&comfy, |_| {}).await;
    let api = api(&server).await;
    put(&server, "cat.png", PNG).await;
    let id = submit(&api, json!({"image": "s3://pics/cat.png", "scale": 2})).await;
    check_ran(&server, id, PNG, "png", "s3://pics/cat.png").await;
    let name = format!("darkroom/{}.png", sha(PNG));
    assert_eq!(comfy.ctl.uploads(), vec![name.clone()]);
    assert_eq!(comfy.ctl.load_images(), vec![name.clone()]);
    assert_eq!(
        comfy.ctl.input("darkroom", &format!("{}.png", sha(PNG))).unwrap(),
        PNG
    );

    // The same picture again (another scale, so no cache hit): not uploaded twice.
    let again = submit(&api, json!({"image": "s3://pics/cat.png", "scale": 3})).await;
    check_ran(&server, again, PNG, "png", "s3://pics/cat.png").await;
    assert_eq!(comfy.ctl.uploads(), vec![name.clone()]);
    assert_eq!(comfy.ctl.load_images(), vec![name.clone(), name]);
    // Stored once, content-addressed.
    let stored = server
        .client
        .head_object()
        .bucket("comfyui-outputs")
        .key(format!("inputs/{}.png", sha(PNG)))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.content_length(), Some(PNG.len() as i64));
}

/// A small HTTP server: `/pic.jpg` (the picture), `/page` (HTML).
async fn picture_server(pic: Vec<u8>) -> SocketAddr {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/pic.jpg",
            get(move || async move { ([("content-type", "image/jpeg")], pic) }),
        )
        .route(
            "/page",
            get(|| async { ([("content-type", "text/html")], "<html></html>") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_base64_and_data_url_inputs_are_bound() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&comfy, |c| c.api.allow_private_targets = true).await;
    let api = api(&server).await;
    let pic = jpeg([200, 10, 10], 16, 16);
    let web = picture_server(pic.clone()).await;
    let url = format!("http://{web}/pic.jpg");
    let id = submit(&api, json!({"image": url})).await;
    check_ran(&server, id, &pic, "jpg", &url).await;

    let other = jpeg([10, 200, 10], 16, 16);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&other);
    let id = submit(&api, json!({"image": {"base64": b64}})).await;
    check_ran(&server, id, &other, "jpg", "base64").await;

    let third = jpeg([10, 10, 200], 16, 16);
    let data = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&third)
    );
    let id = submit(&api, json!({"image": data})).await;
    check_ran(&server, id, &third, "jpg", "base64").await;

    let names: Vec<String> = [&pic, &other, &third]
        .iter()
        .map(|b| format!("darkroom/{}.jpg", sha(b)))
        .collect();
    assert_eq!(
        comfy.ctl.uploads(),
        names,
        "each picture reached the backend once"
    );
    assert_eq!(comfy.ctl.load_images(), names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_files_are_bound() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&comfy, |_| {}).await;
    let api = api(&server).await;
    let form = reqwest::multipart::Form::new()
        .text(
            "request",
            json!({"template": "upscale", "params": {"scale": 1.5}}).to_string(),
        )
        .part(
            "image",
            reqwest::multipart::Part::bytes(PNG.to_vec()).file_name("photo.png"),
        );
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs", api.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let job: Value = r.json().await.unwrap();
    let id: Ulid = job["id"].as_str().unwrap().parse().unwrap();
    check_ran(&server, id, PNG, "png", "multipart:photo.png").await;
    assert_eq!(comfy.ctl.uploads(), [format!("darkroom/{}.png", sha(PNG))]);

    // A file for a parameter that is not an image is refused by name.
    let form = reqwest::multipart::Form::new()
        .text("request", json!({"template": "upscale"}).to_string())
        .part(
            "scale",
            reqwest::multipart::Part::bytes(PNG.to_vec()).file_name("x.png"),
        );
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs", api.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "params.scale", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_naming_the_parameter() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&comfy, |c| {
        c.api.max_image_bytes = 4096;
        c.api.token = "root-token".into();
    })
    .await;
    let api = Api::new(server.daemon.api_addr(), Some("root-token")).await;
    put(&server, "cat.png", PNG).await;
    put(&server, "notes.txt", b"not a picture at all").await;
    let big = [PNG, &[0u8; 5000][..]].concat();
    put(&server, "big.jpg", &big).await;
    put(&server, "inbox/ana/mine.png", PNG).await;
    let web = picture_server(PNG.to_vec()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let refused = |api: Api, image: Value, why: &'static str| async move {
        let r = api
            .post(
                "/api/v1/jobs",
                Some(&json!({"template": "upscale", "params": {"image": image}})),
            )
            .await;
        assert_eq!(r.status, 400, "{why}: {}", r.text);
        assert_eq!(
            r.error_field().as_deref(),
            Some("params.image"),
            "{why}: {}",
            r.text
        );
        r.json()["error"]["message"].as_str().unwrap().to_owned()
    };
    let m = refused(api.clone(), json!("s3://pics/nope.png"), "missing object").await;
    assert!(m.contains("no such object"), "{m}");
    let m = refused(api.clone(), json!("s3://pics/notes.txt"), "not an image").await;
    assert!(m.contains("not an image"), "{m}");
    let m = refused(api.clone(), json!("s3://pics/big.jpg"), "too large").await;
    assert!(m.contains("too large"), "{m}");
    let m = refused(api.clone(), json!({"base64": "!!!"}), "bad base64").await;
    assert!(m.contains("base64"), "{m}");
    // Private targets are refused by the outbound guard (api.allow_private_targets is off).
    let m = refused(api.clone(), json!(format!("http://{web}/pic.jpg")), "private URL").await;
    assert!(m.contains("loopback"), "{m}");
    let m = refused(
        api.clone(),
        json!(format!("http://{closed}/x.png")),
        "unreachable",
    )
    .await;
    assert!(m.contains("loopback"), "{m}");

    // A user reads only objects they own.
    let r = api
        .post("/api/v1/users", Some(&json!({"name": "ana", "role": "user"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = api
        .post("/api/v1/keys", Some(&json!({"user": "ana", "name": "t"})))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let ana = Api::new(server.daemon.api_addr(), Some(&key)).await;
    let m = refused(ana.clone(), json!("s3://pics/cat.png"), "no read access").await;
    assert!(m.contains("no read access"), "{m}");
    let id = submit(&ana, json!({"image": "s3://pics/inbox/ana/mine.png"})).await;
    check_ran(&server, id, PNG, "png", "s3://pics/inbox/ana/mine.png").await;
    // Her own job's output is hers to use; the admin's job's is not.
    let key_of = |job: &darkroom::queue::Job| {
        let r: darkroom::dispatch::JobResult = serde_json::from_value(job.result.clone().unwrap()).unwrap();
        format!("s3://{}/{}", r.outputs[0].bucket, r.outputs[0].key)
    };
    let hers = finished(server.daemon.queue(), id).await;
    let again = submit(&ana, json!({"image": key_of(&hers)})).await;
    assert_eq!(
        finished(server.daemon.queue(), again).await.status,
        darkroom::queue::JobStatus::Succeeded
    );
    let admins = submit(&api, json!({"image": "s3://pics/cat.png"})).await;
    let admins = finished(server.daemon.queue(), admins).await;
    let m = refused(ana.clone(), json!(key_of(&admins)), "someone else's output").await;
    assert!(m.contains("no read access"), "{m}");
    // A bucket policy opens a folder to her, and its Deny closes her own inbox.
    put(&server, "refs/style.png", PNG).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ["ana"]}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pics/refs/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pics/inbox/*"}]});
    let (endpoint, policy) = (server.endpoint.clone(), policy.to_string());
    let out = tokio::task::spawn_blocking(move || {
        crate::s3_clients::aws_at(
            &endpoint,
            &[
                "s3api",
                "put-bucket-policy",
                "--bucket",
                "pics",
                "--policy",
                &policy,
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = submit(&ana, json!({"image": "s3://pics/refs/style.png"})).await;
    assert_eq!(
        finished(server.daemon.queue(), id).await.status,
        darkroom::queue::JobStatus::Succeeded
    );
    let m = refused(
        ana.clone(),
        json!("s3://pics/inbox/ana/mine.png"),
        "denied by policy",
    )
    .await;
    assert!(m.contains("no read access"), "{m}");
    assert_eq!(server.daemon.queue().counts().await.unwrap().failed, 0);
    // The fake's output is the same PNG: one content-addressed upload for all.
    assert_eq!(comfy.ctl.uploads().len(), 1, "refused inputs reached nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_non_image_urls_are_refused() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&comfy, |c| c.api.allow_private_targets = true).await;
    let api = api(&server).await;
    let web = picture_server(PNG.to_vec()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for (url, expect) in [
        (format!("http://{closed}/x.png"), "unreachable"),
        (format!("http://{web}/page"), "not an image"),
        (format!("http://{web}/missing.png"), "404"),
    ] {
        let r = api
            .post(
                "/api/v1/jobs",
                Some(&json!({"template": "upscale", "params": {"image": url}})),
            )
            .await;
        assert_eq!(r.status, 400, "{url}: {}", r.text);
        assert_eq!(r.error_field().as_deref(), Some("params.image"));
        assert!(r.text.contains(expect), "{url}: {}", r.text);
    }
    assert!(comfy.ctl.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_reach_the_backend_in_the_clear_with_encryption_at_rest() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&comfy, |c| c.s3.encrypt_all = true).await;
    let api = api(&server).await;
    put(&server, "cat.png", PNG).await;
    let id = submit(&api, json!({"image": "s3://pics/cat.png"})).await;
    check_ran(&server, id, PNG, "png", "s3://pics/cat.png").await;
    let uploaded = comfy.ctl.input("darkroom", &format!("{}.png", sha(PNG))).unwrap();
    assert!(uploaded == PNG, "the stored input is sealed; the upload is not");
}
