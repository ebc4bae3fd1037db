//! Objects through a real S3 client: put/get, ranges, conditions, metadata,
//! overwrite atomicity, copy, batch delete, tagging, size limits.

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier, Tag, Tagging};

use crate::support::{blob_files, body_bytes, code, data, server, server_with, status};

#[tokio::test]
async fn put_get_head_with_metadata_and_ranges() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("bk1").send().await.unwrap();
    let bytes = data(100_000, 1);
    let put = c
        .put_object()
        .bucket("bk1")
        .key("dir/image.png")
        .content_type("image/png")
        .metadata("prompt-id", "abc123")
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    let md5 = format!("\"{}\"", hex::encode(<md5::Md5 as md5::Digest>::digest(&bytes)));
    assert_eq!(put.e_tag(), Some(md5.as_str()));

    let got = c
        .get_object()
        .bucket("bk1")
        .key("dir/image.png")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("image/png"));
    assert_eq!(
        got.metadata().unwrap().get("prompt-id").map(String::as_str),
        Some("abc123")
    );
    assert_eq!(got.e_tag(), Some(md5.as_str()));
    assert_eq!(body_bytes(got).await, bytes);

    let head = c
        .head_object()
        .bucket("bk1")
        .key("dir/image.png")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(100_000));

    let part = c
        .get_object()
        .bucket("bk1")
        .key("dir/image.png")
        .range("bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.content_range(), Some("bytes 10-19/100000"));
    assert_eq!(body_bytes(part).await, &bytes[10..20]);

    let tail = c
        .get_object()
        .bucket("bk1")
        .key("dir/image.png")
        .range("bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(body_bytes(tail).await, &bytes[bytes.len() - 5..]);

    let beyond = c
        .get_object()
        .bucket("bk1")
        .key("dir/image.png")
        .range("bytes=200000-")
        .send()
        .await;
    assert_eq!(code(beyond), "InvalidRange");
    assert_eq!(
        code(c.get_object().bucket("bk1").key("missing").send().await),
        "NoSuchKey"
    );
    assert_eq!(
        code(c.get_object().bucket("nobucket").key("k").send().await),
        "NoSuchBucket"
    );
}

#[tokio::test]
async fn conditional_requests() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("cond").send().await.unwrap();
    let etag = c
        .put_object()
        .bucket("cond")
        .key("k")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    let get = || c.get_object().bucket("cond").key("k");
    assert!(get().if_match(&etag).send().await.is_ok());
    assert_eq!(status(get().if_match("\"0000\"").send().await), 412);
    assert_eq!(status(get().if_none_match(&etag).send().await), 304);
    assert!(get().if_none_match("\"0000\"").send().await.is_ok());
    let future = DateTime::from_secs(4_000_000_000);
    let past = DateTime::from_secs(1_000_000_000);
    assert_eq!(status(get().if_modified_since(future).send().await), 304);
    assert!(get().if_modified_since(past).send().await.is_ok());
    assert_eq!(status(get().if_unmodified_since(past).send().await), 412);
    assert_eq!(
        status(
            c.head_object()
                .bucket("cond")
                .key("k")
                .if_none_match(&etag)
                .send()
                .await
        ),
        304
    );

    // Conditional writes: create-only and compare-and-swap.
    let put = || {
        c.put_object()
            .bucket("cond")
            .key("k")
            .body(ByteStream::from_static(b"v2"))
    };
    assert_eq!(code(put().if_none_match("*").send().await), "PreconditionFailed");
    assert_eq!(
        code(put().if_match("\"0000\"").send().await),
        "PreconditionFailed"
    );
    put().if_match(&etag).send().await.unwrap();
    let now = body_bytes(get().send().await.unwrap()).await;
    assert_eq!(now, b"v2");
}

#[tokio::test]
async fn overwrite_is_atomic_for_readers() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("ovw").send().await.unwrap();
    let v1 = data(3 * 1024 * 1024, 11);
    let v2 = data(2 * 1024 * 1024, 22);
    c.put_object()
        .bucket("ovw")
        .key("k")
        .body(ByteStream::from(v1.clone()))
        .send()
        .await
        .unwrap();
    // A download of v1 is under way when v2 replaces it: it still gets all of v1.
    let reading = c.get_object().bucket("ovw").key("k").send().await.unwrap();
    c.put_object()
        .bucket("ovw")
        .key("k")
        .body(ByteStream::from(v2.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(body_bytes(reading).await, v1);
    assert_eq!(
        body_bytes(c.get_object().bucket("ovw").key("k").send().await.unwrap()).await,
        v2
    );
    // The old version's blob is gone once nobody refers to it.
    assert_eq!(blob_files(&s.dir.path().join("data")), 1);

    // Concurrent writers and readers: every read is one whole version.
    let versions: Vec<Vec<u8>> = (0..4)
        .map(|i| data(64 * 1024 + i * 1000, 100 + i as u64))
        .collect();
    let mut tasks = Vec::new();
    for round in 0..8 {
        let c = c.clone();
        let v = versions[round % versions.len()].clone();
        tasks.push(tokio::spawn(async move {
            c.put_object()
                .bucket("ovw")
                .key("hot")
                .body(ByteStream::from(v))
                .send()
                .await
                .unwrap();
        }));
    }
    for _ in 0..16 {
        let c = c.clone();
        let versions = versions.clone();
        tasks.push(tokio::spawn(async move {
            if let Ok(out) = c.get_object().bucket("ovw").key("hot").send().await {
                let got = body_bytes(out).await;
                assert!(versions.contains(&got), "a read saw a torn object");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn copy_delete_many_and_tagging() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("src").send().await.unwrap();
    c.create_bucket().bucket("dst").send().await.unwrap();
    c.put_object()
        .bucket("src")
        .key("a")
        .content_type("image/png")
        .metadata("m", "1")
        .tagging("kind=output&job=7")
        .body(ByteStream::from_static(b"copy me"))
        .send()
        .await
        .unwrap();

    c.copy_object()
        .bucket("dst")
        .key("copied")
        .copy_source("src/a")
        .send()
        .await
        .unwrap();
    let got = c.get_object().bucket("dst").key("copied").send().await.unwrap();
    assert_eq!(got.content_type(), Some("image/png"));
    assert_eq!(got.metadata().unwrap().get("m").map(String::as_str), Some("1"));
    assert_eq!(body_bytes(got).await, b"copy me");

    c.copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source("src/a")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/plain")
        .metadata("m", "2")
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket("dst")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(head.metadata().unwrap().get("m").map(String::as_str), Some("2"));
    assert_eq!(
        code(
            c.copy_object()
                .bucket("dst")
                .key("x")
                .copy_source("src/missing")
                .send()
                .await
        ),
        "NoSuchKey"
    );

    let tags = c
        .get_object_tagging()
        .bucket("src")
        .key("a")
        .send()
        .await
        .unwrap();
    let mut pairs: Vec<(String, String)> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [("job".into(), "7".into()), ("kind".into(), "output".into())]
    );
    c.put_object_tagging()
        .bucket("src")
        .key("a")
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("keep").value("yes").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tags = c
        .get_object_tagging()
        .bucket("src")
        .key("a")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1);
    assert_eq!(tags.tag_set()[0].key(), "keep");
    c.delete_object_tagging()
        .bucket("src")
        .key("a")
        .send()
        .await
        .unwrap();
    let tags = c
        .get_object_tagging()
        .bucket("src")
        .key("a")
        .send()
        .await
        .unwrap();
    assert!(tags.tag_set().is_empty());

    let del = Delete::builder()
        .objects(ObjectIdentifier::builder().key("copied").build().unwrap())
        .objects(ObjectIdentifier::builder().key("replaced").build().unwrap())
        .objects(ObjectIdentifier::builder().key("never-existed").build().unwrap())
        .build()
        .unwrap();
    let out = c.delete_objects().bucket("dst").delete(del).send().await.unwrap();
    assert_eq!(out.deleted().len(), 3);
    assert!(out.errors().is_empty());
    let left = c.list_objects_v2().bucket("dst").send().await.unwrap();
    assert_eq!(left.key_count(), Some(0));
}

#[tokio::test]
async fn size_limit_and_bad_digest_leave_nothing_behind() {
    // Inline storage off, so refused bodies exercise the blob-file cleanup.
    let s = server_with(|c| {
        c.s3.max_object_size = 1024;
        c.s3.inline_max_bytes = 0;
    })
    .await;
    let c = &s.client;
    c.create_bucket().bucket("lim").send().await.unwrap();
    let too_big = c
        .put_object()
        .bucket("lim")
        .key("big")
        .body(ByteStream::from(vec![7u8; 4096]))
        .send()
        .await;
    assert_eq!(code(too_big), "EntityTooLarge");
    let bad_md5 = c
        .put_object()
        .bucket("lim")
        .key("md5")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from_static(b"abc"))
        .send()
        .await;
    assert_eq!(code(bad_md5), "BadDigest");
    assert_eq!(
        code(c.head_object().bucket("lim").key("md5").send().await),
        "NotFound"
    );
    assert_eq!(blob_files(&s.dir.path().join("data")), 0);
    c.put_object()
        .bucket("lim")
        .key("ok")
        .body(ByteStream::from(vec![1u8; 1024]))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn small_objects_live_inline_and_large_ones_in_files() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("inl").send().await.unwrap();
    let small = data(32 * 1024, 1);
    let large = data(32 * 1024 + 1, 2);
    for (k, v) in [("small", &small), ("large", &large)] {
        c.put_object()
            .bucket("inl")
            .key(k)
            .body(ByteStream::from(v.clone()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        blob_files(&s.dir.path().join("data")),
        1,
        "only the large object is a file"
    );
    let part = c
        .get_object()
        .bucket("inl")
        .key("small")
        .range("bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(body_bytes(part).await, &small[100..200]);
    assert_eq!(
        body_bytes(c.get_object().bucket("inl").key("small").send().await.unwrap()).await,
        small
    );
    // Overwriting an inline object with a file and back, and copying, keeps one copy each.
    c.put_object()
        .bucket("inl")
        .key("small")
        .body(ByteStream::from(large.clone()))
        .send()
        .await
        .unwrap();
    c.copy_object()
        .bucket("inl")
        .key("copy")
        .copy_source("inl/large")
        .send()
        .await
        .unwrap();
    c.put_object()
        .bucket("inl")
        .key("large")
        .body(ByteStream::from(small.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(blob_files(&s.dir.path().join("data")), 2);
    assert_eq!(
        body_bytes(c.get_object().bucket("inl").key("large").send().await.unwrap()).await,
        small
    );
    assert_eq!(
        body_bytes(c.get_object().bucket("inl").key("copy").send().await.unwrap()).await,
        large
    );
    for k in ["small", "large", "copy"] {
        c.delete_object().bucket("inl").key(k).send().await.unwrap();
    }
    assert_eq!(blob_files(&s.dir.path().join("data")), 0);
}

#[tokio::test]
async fn a_copy_shares_the_blob_file_until_the_last_object_using_it_goes() {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    use darkroom::clock::{Clock, ManualClock, SystemClock};
    use darkroom::object_store::LifecycleRule;

    let clock = ManualClock::new(SystemClock.now_ms());
    let s = crate::support::server_with_clock(|c| c.s3.lifecycle_day_seconds = 10, clock.clone()).await;
    let c = &s.client;
    let blobs = || blob_files(&s.dir.path().join("data"));
    let read = |key: &'static str| async move {
        body_bytes(c.get_object().bucket("cpy").key(key).send().await.unwrap()).await
    };
    let copy = |from: &'static str, to: &'static str| {
        c.copy_object()
            .bucket("cpy")
            .key(to)
            .copy_source(format!("cpy/{from}"))
            .send()
    };
    c.create_bucket().bucket("cpy").send().await.unwrap();
    let v1 = data(100 * 1024, 1);
    c.put_object()
        .bucket("cpy")
        .key("orig")
        .body(ByteStream::from(v1.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(blobs(), 1);
    for to in ["a", "b", "tmp/c"] {
        copy("orig", to).await.unwrap();
    }
    assert_eq!(blobs(), 1, "copies refer to the source's file");
    // A copy onto itself (new metadata) keeps its bytes.
    c.copy_object()
        .bucket("cpy")
        .key("a")
        .copy_source("cpy/a")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("image/png")
        .send()
        .await
        .unwrap();
    assert_eq!(read("a").await, v1);

    // Delete: the others keep the file.
    c.delete_object().bucket("cpy").key("orig").send().await.unwrap();
    assert_eq!((read("a").await, blobs()), (v1.clone(), 1));
    // Overwrite by a put: the others keep the old bytes.
    let v2 = data(90 * 1024, 2);
    c.put_object()
        .bucket("cpy")
        .key("a")
        .body(ByteStream::from(v2.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!((read("a").await, read("b").await, blobs()), (v2, v1.clone(), 2));
    // Overwrite by a completed multipart upload.
    let upload = c
        .create_multipart_upload()
        .bucket("cpy")
        .key("b")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let v3 = data(70 * 1024, 3);
    let part = c
        .upload_part()
        .bucket("cpy")
        .key("b")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(v3.clone()))
        .send()
        .await
        .unwrap();
    c.complete_multipart_upload()
        .bucket("cpy")
        .key("b")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!((read("b").await, read("tmp/c").await, blobs()), (v3, v1, 3));
    // Lifecycle expiry of the last object using the first file frees it.
    let store = s.daemon.storage();
    let rule = LifecycleRule {
        enabled: true,
        prefix: "tmp/".into(),
        expiration_days: Some(1),
        ..LifecycleRule::default()
    };
    store.set_lifecycle("cpy", vec![rule]).await.unwrap();
    clock.advance_ms(15_000);
    let swept = store.sweep_lifecycle(clock.now_ms()).await.unwrap();
    assert_eq!(swept.expired, [("cpy".to_owned(), "tmp/c".to_owned())]);
    assert_eq!(blobs(), 2);
    c.delete_object().bucket("cpy").key("a").send().await.unwrap();
    c.delete_object().bucket("cpy").key("b").send().await.unwrap();
    assert_eq!(blobs(), 0);

    // A small (inline) object's copy outlives its source too.
    c.put_object()
        .bucket("cpy")
        .key("small")
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await
        .unwrap();
    copy("small", "small-copy").await.unwrap();
    c.delete_object().bucket("cpy").key("small").send().await.unwrap();
    assert_eq!(read("small-copy").await, b"tiny");
}
