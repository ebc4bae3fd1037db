//! Multipart uploads through a real S3 client: 64 MiB in 8 MiB parts, the `-N`
//! ETag, retried completion, part copy, listing, abort, and the size rule.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::support::{blob_files, code, data, server};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn multipart_64_mib_in_8_mib_parts() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let whole = data(64 * MIB, 5);
    let up = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("big.bin")
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();

    let listed = c.list_multipart_uploads().bucket("mpu").send().await.unwrap();
    assert_eq!(listed.uploads().len(), 1);
    assert_eq!(listed.uploads()[0].upload_id(), Some(id.as_str()));

    let mut parts = Vec::new();
    let mut md5s = Vec::new();
    for (i, chunk) in whole.chunks(8 * MIB).enumerate() {
        let n = i32::try_from(i + 1).unwrap();
        let out = c
            .upload_part()
            .bucket("mpu")
            .key("big.bin")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        md5s.extend_from_slice(&Md5::digest(chunk));
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let lp = c
        .list_parts()
        .bucket("mpu")
        .key("big.bin")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(lp.parts().len(), 8);
    assert_eq!(lp.parts()[0].size(), Some(8 * MIB as i64));

    let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    let out = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big.bin")
        .upload_id(&id)
        .multipart_upload(done.clone())
        .send()
        .await
        .unwrap();
    let expected = format!("\"{}-8\"", hex::encode(Md5::digest(&md5s)));
    assert_eq!(out.e_tag(), Some(expected.as_str()));

    // A retried Complete (lost response) answers the same success.
    let again = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big.bin")
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .unwrap();
    assert_eq!(again.e_tag(), Some(expected.as_str()));

    let got = c.get_object().bucket("mpu").key("big.bin").send().await.unwrap();
    assert_eq!(got.content_length(), Some(64 * MIB as i64));
    assert_eq!(got.e_tag(), Some(expected.as_str()));
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(Sha256::digest(&bytes), Sha256::digest(&whole));
    // Parts were merged into one blob and removed.
    assert_eq!(blob_files(&s.dir.path().join("data")), 1);
    assert!(
        c.list_multipart_uploads()
            .bucket("mpu")
            .send()
            .await
            .unwrap()
            .uploads()
            .is_empty()
    );
}

#[tokio::test]
async fn part_rules_copy_and_abort() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("mp2").send().await.unwrap();
    let src = data(6 * MIB, 9);
    c.put_object()
        .bucket("mp2")
        .key("src")
        .body(ByteStream::from(src.clone()))
        .send()
        .await
        .unwrap();

    let id = c
        .create_multipart_upload()
        .bucket("mp2")
        .key("dst")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    // Part 1 copied from the whole source, part 2 a byte range of it.
    let p1 = c
        .upload_part_copy()
        .bucket("mp2")
        .key("dst")
        .upload_id(&id)
        .part_number(1)
        .copy_source("mp2/src")
        .send()
        .await
        .unwrap();
    let p2 = c
        .upload_part_copy()
        .bucket("mp2")
        .key("dst")
        .upload_id(&id)
        .part_number(2)
        .copy_source("mp2/src")
        .copy_source_range("bytes=0-99")
        .send()
        .await
        .unwrap();
    let e1 = p1.copy_part_result().unwrap().e_tag().unwrap().to_string();
    let e2 = p2.copy_part_result().unwrap().e_tag().unwrap().to_string();

    // Out of order and unknown ETags are refused.
    let part = |n, e: &str| CompletedPart::builder().part_number(n).e_tag(e).build();
    let bad_order = CompletedMultipartUpload::builder()
        .parts(part(2, &e2))
        .parts(part(1, &e1))
        .build();
    let r = c
        .complete_multipart_upload()
        .bucket("mp2")
        .key("dst")
        .upload_id(&id)
        .multipart_upload(bad_order)
        .send()
        .await;
    assert_eq!(code(r), "InvalidPartOrder");
    let bad_etag = CompletedMultipartUpload::builder()
        .parts(part(1, "\"00\""))
        .build();
    let r = c
        .complete_multipart_upload()
        .bucket("mp2")
        .key("dst")
        .upload_id(&id)
        .multipart_upload(bad_etag)
        .send()
        .await;
    assert_eq!(code(r), "InvalidPart");

    let ok = CompletedMultipartUpload::builder()
        .parts(part(1, &e1))
        .parts(part(2, &e2))
        .build();
    c.complete_multipart_upload()
        .bucket("mp2")
        .key("dst")
        .upload_id(&id)
        .multipart_upload(ok)
        .send()
        .await
        .unwrap();
    let got = c.get_object().bucket("mp2").key("dst").send().await.unwrap();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    let mut want = src.clone();
    want.extend_from_slice(&src[..100]);
    assert_eq!(bytes.as_ref(), want.as_slice());

    // A small non-last part is EntityTooSmall.
    let id2 = c
        .create_multipart_upload()
        .bucket("mp2")
        .key("small")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let mut small_parts = Vec::new();
    for n in 1..=2 {
        let out = c
            .upload_part()
            .bucket("mp2")
            .key("small")
            .upload_id(&id2)
            .part_number(n)
            .body(ByteStream::from(vec![n as u8; 1024]))
            .send()
            .await
            .unwrap();
        small_parts.push(part(n, out.e_tag().unwrap()));
    }
    let r = c
        .complete_multipart_upload()
        .bucket("mp2")
        .key("small")
        .upload_id(&id2)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(small_parts))
                .build(),
        )
        .send()
        .await;
    assert_eq!(code(r), "EntityTooSmall");

    c.abort_multipart_upload()
        .bucket("mp2")
        .key("small")
        .upload_id(&id2)
        .send()
        .await
        .unwrap();
    let r = c
        .list_parts()
        .bucket("mp2")
        .key("small")
        .upload_id(&id2)
        .send()
        .await;
    assert_eq!(code(r), "NoSuchUpload");
    // Only the two objects' blobs remain.
    assert_eq!(blob_files(&s.dir.path().join("data")), 2);
}
