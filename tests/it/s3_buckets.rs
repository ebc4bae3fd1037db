//! Bucket rules through a real S3 client.

use aws_sdk_s3::primitives::ByteStream;

use crate::support::{code, server, server_with, status};

#[tokio::test]
async fn bucket_lifecycle_of_create_list_delete() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("photos").send().await.unwrap();
    assert_eq!(
        code(c.create_bucket().bucket("photos").send().await),
        "BucketAlreadyOwnedByYou"
    );
    c.head_bucket().bucket("photos").send().await.unwrap();
    assert_eq!(status(c.head_bucket().bucket("nope-missing").send().await), 404);

    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert_eq!(names, ["photos"]);

    c.put_object()
        .bucket("photos")
        .key("a.png")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(c.delete_bucket().bucket("photos").send().await),
        "BucketNotEmpty"
    );
    c.delete_object()
        .bucket("photos")
        .key("a.png")
        .send()
        .await
        .unwrap();
    c.delete_bucket().bucket("photos").send().await.unwrap();
    assert_eq!(status(c.head_bucket().bucket("photos").send().await), 404);
    assert_eq!(
        code(c.delete_bucket().bucket("photos").send().await),
        "NoSuchBucket"
    );
}

#[tokio::test]
async fn invalid_bucket_names_are_refused() {
    let s = server().await;
    for name in ["ab", "Upper-Case", "under_score", "-lead", "a..b", "192.168.0.1"] {
        let r = s.client.create_bucket().bucket(name).send().await;
        assert!(r.is_err(), "{name} was accepted");
    }
    assert!(s.client.list_buckets().send().await.unwrap().buckets().is_empty());
}

#[tokio::test]
async fn location_and_configured_buckets() {
    let s = server_with(|c| {
        c.s3.buckets = darkroom::config::Config::default().s3.buckets;
    })
    .await;
    let names: Vec<String> = s
        .client
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert_eq!(
        names,
        [
            "comfyui-outputs",
            "darkchannel-jobs",
            "darkchannel-output",
            "darkchannel-refs",
            "darkchannel-temp"
        ]
    );
    let loc = s
        .client
        .get_bucket_location()
        .bucket("comfyui-outputs")
        .send()
        .await
        .unwrap();
    assert!(loc.location_constraint().is_none_or(|l| l.as_str().is_empty()));
    // The temp bucket carries its 1-day expiry from config.
    let lc = s
        .client
        .get_bucket_lifecycle_configuration()
        .bucket("darkchannel-temp")
        .send()
        .await
        .unwrap();
    assert_eq!(lc.rules()[0].expiration().unwrap().days(), Some(1));
}
