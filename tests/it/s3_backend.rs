//! `storage.backend = "s3"`: outputs on an external S3 endpoint — here another
//! darkroom's own S3 server, a real endpoint on a real port — with darkroom's own
//! S3 server turned off: jobs store their images there (path-style), the URLs
//! are presigned for that endpoint and download, large outputs go up in parts,
//! status reports the endpoint's health, and an endpoint that does not answer is
//! reported, not fatal.

use darkroom::config::Config;
use darkroom::daemon::Daemon;
use darkroom::dispatch::{ExternalS3, StorageBackend};
use darkroom::dispatch::{OutputSink, S3Sink};
use serde_json::json;

use crate::api_support::Api;
use crate::dispatch::configure;
use crate::fake_comfy::{FakeComfy, PNG};
use crate::support::{ACCESS_KEY, SECRET_KEY, server, test_config};

fn external(endpoint: &str) -> ExternalS3 {
    ExternalS3 {
        endpoint: endpoint.to_owned(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        ..ExternalS3::default()
    }
}

/// A daemon with outputs on `endpoint` and no S3 server of its own.
async fn node(dir: &tempfile::TempDir, endpoint: &str, comfy: &FakeComfy) -> Daemon {
    let mut c: Config = test_config(dir);
    configure(&mut c, std::slice::from_ref(&comfy.url));
    c.s3.enabled = false;
    c.storage.backend = StorageBackend::S3;
    c.storage.s3 = external(endpoint);
    Daemon::start(&c, darkroom::clock::system()).await.unwrap()
}

#[tokio::test]
async fn outputs_go_to_the_external_endpoint_with_urls_presigned_for_it() {
    let store = server().await;
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, &store.endpoint, &comfy).await;
    assert!(node.s3_addr().is_none(), "its own S3 server is off");
    let api = Api::new(node.api_addr(), None).await;
    let r = api
        .post(
            "/api/v1/jobs?wait=30",
            Some(&json!({"template": "noop", "params": {"color": 3}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let job = r.json();
    assert_eq!(job["status"], "succeeded", "{job}");
    let out = &job["result"]["outputs"][0];
    let key = out["key"].as_str().unwrap();
    // The image is in the external store's bucket (created there at start).
    let head = store
        .client
        .head_object()
        .bucket("comfyui-outputs")
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(PNG.len() as i64));
    // The URL points at the external endpoint, path-style, and downloads.
    let url = out["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/comfyui-outputs/", store.endpoint)),
        "{url}"
    );
    let body = reqwest::get(url).await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.bytes().await.unwrap().as_ref(), PNG);
    // The metadata went there too.
    let meta = job["result"]["metadata_key"].as_str().unwrap();
    assert!(
        store
            .client
            .head_object()
            .bucket("comfyui-outputs")
            .key(meta)
            .send()
            .await
            .is_ok()
    );

    let status = api.get("/api/v1/status").await.json();
    let s = &status["output_store"];
    assert_eq!(
        (s["backend"].clone(), s["reachable"].clone()),
        (json!("s3"), json!(true))
    );
    assert_eq!(s["endpoint"], json!(store.endpoint));
    assert_eq!(status["buckets"], json!([]), "nothing is stored locally");
    node.shutdown().await;
}

#[tokio::test]
async fn a_cache_hit_copies_the_outputs_under_its_own_id_on_the_endpoint() {
    let store = server().await;
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, &store.endpoint, &comfy).await;
    let api = Api::new(node.api_addr(), None).await;
    let request = json!({"template": "noop", "params": {"color": 21}});
    let first = api.post("/api/v1/jobs?wait=30", Some(&request)).await.json();
    let hit = api.post("/api/v1/jobs?wait=30", Some(&request)).await.json();
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(hit["result"]["cache_hit"], true, "{hit}");
    assert_eq!(comfy.ctl.prompts_received(), 1);
    let (a, b) = (first["id"].as_str().unwrap(), hit["id"].as_str().unwrap());
    let out = &hit["result"]["outputs"][0];
    let key = out["key"].as_str().unwrap();
    assert_eq!(key, format!("jobs/{b}/1-noop_00001_.png"), "{hit}");
    let get = |key: String| {
        let client = store.client.clone();
        async move {
            let got = client
                .get_object()
                .bucket("comfyui-outputs")
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{key} is not on the endpoint: {e:?}"));
            crate::support::body_bytes(got).await
        }
    };
    assert_eq!(get(key.to_owned()).await, PNG);
    let url = out["url"].as_str().unwrap();
    assert!(url.contains(&format!("/jobs/{b}/")), "{url}");
    assert_eq!(
        reqwest::get(url).await.unwrap().bytes().await.unwrap().as_ref(),
        PNG
    );
    let meta_key = hit["result"]["metadata_key"].as_str().unwrap();
    assert_eq!(meta_key, format!("jobs/{b}/metadata.json"));
    let meta: serde_json::Value = serde_json::from_slice(&get(meta_key.to_owned()).await).unwrap();
    assert_eq!(meta["served_from"], json!(a), "{meta}");
    assert_eq!(meta["cache_hit"], json!(true), "{meta}");
    node.shutdown().await;
}

#[tokio::test]
async fn large_outputs_upload_in_parts_and_missing_ones_are_told_apart() {
    let store = server().await;
    let sink = S3Sink::new(&ExternalS3 {
        multipart_threshold_bytes: 5 * 1024 * 1024,
        part_size_bytes: 5 * 1024 * 1024,
        ..external(&store.endpoint)
    });
    sink.ensure_bucket("big").await.unwrap();
    // A second time is not an error.
    sink.ensure_bucket("big").await.unwrap();
    let data = crate::support::data(12 * 1024 * 1024 + 7, 42);
    let size = sink
        .put("big", "jobs/1/huge.png", data.clone().into(), "image/png")
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    let head = store
        .client
        .head_object()
        .bucket("big")
        .key("jobs/1/huge.png")
        .send()
        .await
        .unwrap();
    // Three parts: 5 + 5 + 2 MiB, as S3 names a multipart ETag.
    assert!(head.e_tag().unwrap().ends_with("-3\""), "{:?}", head.e_tag());
    assert_eq!(head.content_type(), Some("image/png"));
    let url = sink
        .url("big", "jobs/1/huge.png", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        reqwest::get(&url).await.unwrap().bytes().await.unwrap().as_ref(),
        &data[..]
    );
    assert!(sink.exists("big", "jobs/1/huge.png").await.unwrap());
    assert!(!sink.exists("big", "jobs/1/nothing.png").await.unwrap());
    // No upload is left behind.
    let uploads = store
        .client
        .list_multipart_uploads()
        .bucket("big")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_is_reported_not_fatal() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, &endpoint, &comfy).await;
    let api = Api::new(node.api_addr(), None).await;
    let s = api.get("/api/v1/status").await.json()["output_store"].clone();
    assert_eq!(s["reachable"], json!(false));
    assert!(s["error"].as_str().unwrap().contains("onnect"), "{s}");
    node.shutdown().await;
}
