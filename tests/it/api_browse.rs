//! The endpoints behind the dashboard's storage browser and log panel, on a real
//! listener with objects written through S3 (aws-sdk-s3): a bucket listed one
//! folder at a time, a presigned URL that downloads the object, the log lines,
//! lifecycle rules in the status snapshot, and the errors naming what is wrong.
//! Every answer is checked against the served OpenAPI document.

use aws_sdk_s3::primitives::ByteStream;

use crate::api_support::Api;
use crate::support::server_with;

#[tokio::test]
async fn browse_a_bucket_by_folder_and_presign_an_object() {
    let server = server_with(|c| {
        c.s3.buckets = vec![darkroom::s3::BucketConfig {
            name: "outputs".into(),
            public_read: false,
            expire_days: 0,
        }];
    })
    .await;
    for key in [
        "jobs/01A/image.png",
        "jobs/01A/metadata.json",
        "jobs/01B/image.png",
        "top.txt",
    ] {
        server
            .client
            .put_object()
            .bucket("outputs")
            .key(key)
            .content_type(if key.contains("image") {
                "image/png"
            } else {
                "text/plain"
            })
            .body(ByteStream::from(key.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    let api = Api::new(server.daemon.api_addr(), None).await;
    let top = api.get("/api/v1/buckets/outputs/objects").await;
    assert_eq!(top.status, 200, "{}", top.text);
    let top = top.json();
    assert_eq!(top["prefixes"], serde_json::json!(["jobs/"]));
    assert_eq!(top["objects"][0]["key"], "top.txt");
    let folder = api
        .get("/api/v1/buckets/outputs/objects?prefix=jobs%2F01A%2F")
        .await
        .json();
    let keys: Vec<&str> = folder["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["jobs/01A/image.png", "jobs/01A/metadata.json"]);
    assert_eq!(folder["objects"][0]["content_type"], "image/png");
    assert_eq!(folder["objects"][0]["size"], 18);
    // Pages: one key at a time, then the next after it.
    let first = api
        .get("/api/v1/buckets/outputs/objects?prefix=jobs%2F01A%2F&limit=1")
        .await
        .json();
    assert_eq!(first["truncated"], true);
    let next = api
        .get("/api/v1/buckets/outputs/objects?prefix=jobs%2F01A%2F&limit=1&after=jobs%2F01A%2Fimage.png")
        .await
        .json();
    assert_eq!(next["objects"][0]["key"], "jobs/01A/metadata.json");

    // The presigned URL downloads the object with no credentials.
    let p = api
        .get("/api/v1/buckets/outputs/presign?key=jobs%2F01B%2Fimage.png")
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    let url = p.json()["url"].as_str().unwrap().to_owned();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let body = reqwest::get(&url).await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.bytes().await.unwrap().as_ref(), b"jobs/01B/image.png");

    // Mistakes name what is wrong.
    let r = api.get("/api/v1/buckets/nope/objects").await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("\\\"nope\\\""), "{}", r.text);
    let r = api.get("/api/v1/buckets/outputs/presign").await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("key")));
    let r = api.get("/api/v1/buckets/outputs/presign?key=missing.png").await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("missing.png"), "{}", r.text);
    let r = api.get("/api/v1/buckets/outputs/objects?limit=0").await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("limit")));
}

#[tokio::test]
async fn status_lists_lifecycle_rules_and_logs_answer_in_order() {
    // darkchannel-temp carries the seed's one-day expiry rule.
    let server = server_with(|c| c.s3.buckets = darkroom::config::Config::default().s3.buckets).await;
    let api = Api::new(server.daemon.api_addr(), None).await;
    let status = api.get("/api/v1/status").await.json();
    let temp = status["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "darkchannel-temp")
        .unwrap()
        .clone();
    let rule = temp["lifecycle"][0].as_str().unwrap();
    assert!(rule.starts_with("expire every object after 1 day"), "{rule}");

    // The log endpoint serves the process's buffer (this test process logs
    // nothing through it unless a subscriber is installed; the lines are what
    // the buffer holds, in order).
    darkroom::telemetry::logs().push(1, darkroom::telemetry::LogLevel::Info, "it", "first line".into());
    darkroom::telemetry::logs().push(2, darkroom::telemetry::LogLevel::Warn, "it", "second line".into());
    let logs = api.get("/api/v1/logs?limit=2000").await;
    assert_eq!(logs.status, 200, "{}", logs.text);
    let lines = logs.json()["lines"].as_array().unwrap().clone();
    let ours: Vec<&str> = lines
        .iter()
        .filter(|l| l["target"] == "it")
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(ours[ours.len() - 2..], ["first line", "second line"]);
    let last = lines.last().unwrap()["seq"].as_u64().unwrap();
    let after = api.get(&format!("/api/v1/logs?after={last}")).await.json();
    assert_eq!(after["lines"], serde_json::json!([]));
    let r = api.get("/api/v1/logs?limit=5000").await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("limit")));
}
