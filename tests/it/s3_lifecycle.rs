//! Lifecycle rules through a real S3 client, applied on a manual clock with the
//! day-length knob (no sleeping): expiry by days and by prefix and tags, abort of
//! stale multipart uploads, and the background sweeper announcing expirations.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter, Tag,
};
use darkroom::clock::{Clock, ManualClock, SystemClock};
use darkroom::object_store::StorageEvent;

use crate::support::{code, server_with_clock};

fn rules() -> BucketLifecycleConfiguration {
    let tmp = LifecycleRule::builder()
        .id("tmp-1d")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .expiration(LifecycleExpiration::builder().days(1).build())
        .build()
        .unwrap();
    let tagged = LifecycleRule::builder()
        .id("scratch-3d")
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .and(
                    LifecycleRuleAndOperator::builder()
                        .prefix("out/")
                        .tags(Tag::builder().key("scratch").value("yes").build().unwrap())
                        .build(),
                )
                .build(),
        )
        .expiration(LifecycleExpiration::builder().days(3).build())
        .build()
        .unwrap();
    let mpu = LifecycleRule::builder()
        .id("abort-mpu")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(2)
                .build(),
        )
        .build()
        .unwrap();
    BucketLifecycleConfiguration::builder()
        .rules(tmp)
        .rules(tagged)
        .rules(mpu)
        .build()
        .unwrap()
}

#[tokio::test]
async fn lifecycle_rules_expire_by_prefix_tags_and_age() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let s = server_with_clock(|c| c.s3.lifecycle_day_seconds = 10, clock.clone()).await;
    let c = &s.client;
    c.create_bucket().bucket("lcy").send().await.unwrap();
    assert_eq!(
        code(c.get_bucket_lifecycle_configuration().bucket("lcy").send().await),
        "NoSuchLifecycleConfiguration"
    );
    c.put_bucket_lifecycle_configuration()
        .bucket("lcy")
        .lifecycle_configuration(rules())
        .send()
        .await
        .unwrap();
    let got = c
        .get_bucket_lifecycle_configuration()
        .bucket("lcy")
        .send()
        .await
        .unwrap();
    assert_eq!(got.rules().len(), 3);
    assert_eq!(got.rules()[0].expiration().unwrap().days(), Some(1));

    let put = |key: &'static str, tagging: Option<&'static str>| {
        c.put_object()
            .bucket("lcy")
            .key(key)
            .set_tagging(tagging.map(str::to_string))
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    put("tmp/a.png", None).await.unwrap();
    put("keep/b.png", None).await.unwrap();
    put("out/scratch.png", Some("scratch=yes")).await.unwrap();
    put("out/final.png", None).await.unwrap();
    let upload = c
        .create_multipart_upload()
        .bucket("lcy")
        .key("stale.bin")
        .send()
        .await
        .unwrap();

    let store = s.daemon.storage();
    let exists =
        |key: &'static str| async move { c.head_object().bucket("lcy").key(key).send().await.is_ok() };

    // Half a day: nothing expires.
    clock.advance_ms(5_000);
    let r = store.sweep_lifecycle(clock.now_ms()).await.unwrap();
    assert!(r.expired.is_empty() && r.aborted_uploads.is_empty());

    // A day and a half: tmp/ expires.
    clock.advance_ms(10_000);
    let r = store.sweep_lifecycle(clock.now_ms()).await.unwrap();
    assert_eq!(r.expired, [("lcy".to_string(), "tmp/a.png".to_string())]);
    assert!(!exists("tmp/a.png").await);
    assert!(exists("keep/b.png").await);

    // Two and a half days: the stale upload is aborted.
    clock.advance_ms(10_000);
    let r = store.sweep_lifecycle(clock.now_ms()).await.unwrap();
    assert_eq!(r.aborted_uploads.len(), 1);
    let parts = c
        .list_parts()
        .bucket("lcy")
        .key("stale.bin")
        .upload_id(upload.upload_id().unwrap())
        .send()
        .await;
    assert_eq!(code(parts), "NoSuchUpload");

    // Three and a half days: only the tagged object under out/ expires.
    clock.advance_ms(10_000);
    store.sweep_lifecycle(clock.now_ms()).await.unwrap();
    assert!(!exists("out/scratch.png").await);
    assert!(exists("out/final.png").await);
    assert!(exists("keep/b.png").await);

    let counters = store.counters();
    assert_eq!(
        counters
            .lifecycle_expired
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(
        counters
            .lifecycle_aborted_uploads
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    c.delete_bucket_lifecycle().bucket("lcy").send().await.unwrap();
    assert_eq!(
        code(c.get_bucket_lifecycle_configuration().bucket("lcy").send().await),
        "NoSuchLifecycleConfiguration"
    );
}

#[tokio::test]
async fn background_sweeper_expires_config_buckets() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let s = server_with_clock(
        |c| {
            c.s3.lifecycle_day_seconds = 1;
            c.s3.lifecycle_interval_seconds = 1;
            c.s3.buckets = vec![darkroom::s3::BucketConfig {
                name: "darkchannel-temp".into(),
                public_read: false,
                expire_days: 1,
            }];
        },
        clock.clone(),
    )
    .await;
    let mut events = s.daemon.storage().subscribe();
    s.client
        .put_object()
        .bucket("darkchannel-temp")
        .key("ref.png")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    clock.advance_ms(2_000);
    // The daemon's own sweeper (not the test) expires it and says so.
    // (The put's own `Written` event comes first.)
    let expired = async {
        loop {
            match events.recv().await.unwrap() {
                StorageEvent::Written { .. } => {}
                other => return other,
            }
        }
    };
    let event = tokio::time::timeout(std::time::Duration::from_secs(120), expired)
        .await
        .expect("the sweeper never ran");
    assert_eq!(
        event,
        StorageEvent::Expired {
            bucket: "darkchannel-temp".into(),
            key: "ref.png".into()
        }
    );
    let r = s
        .client
        .head_object()
        .bucket("darkchannel-temp")
        .key("ref.png")
        .send()
        .await;
    assert!(r.is_err());
}
