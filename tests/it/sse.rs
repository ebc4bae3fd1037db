//! Encryption at rest through real clients: aws-sdk-s3 (SSE-S3 on PUT, multipart
//! and copy; HEAD/GET answering the header; every range boundary across the 64 KiB
//! chunks and the part boundaries), bucket default encryption, `s3.encrypt_all`,
//! the dispatcher's writes honouring the bucket's default, awscli (`--sse`,
//! put-bucket-encryption), plaintext never on disk, an acknowledged sealed object
//! surviving kill -9, master-key rotation, a wrong master key refused, and backups
//! without the master key.

use std::path::Path;
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use md5::{Digest, Md5};

use crate::support::{ACCESS_KEY, SECRET_KEY, body_bytes, code, data, server, server_with, spawn_serve};

const CHUNK: usize = 64 * 1024;

/// Every file under `dir`, read whole.
pub fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// Fails when any file under `dir` holds `needle`.
fn assert_nowhere(dir: &Path, needle: &[u8], what: &str) {
    for (path, bytes) in files(dir) {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{what} found in {}",
            path.display()
        );
    }
}

async fn get_range(client: &aws_sdk_s3::Client, bucket: &str, key: &str, range: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(range)
        .send()
        .await
        .unwrap();
    body_bytes(out).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_s3_round_trips_small_large_and_multipart_across_every_chunk_boundary() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("sealed").send().await.unwrap();

    // Small (stored inline) and large (a blob file).
    let small = data(300, 1);
    let large = data(16 * CHUNK + 123, 2);
    for (key, bytes) in [("small", &small), ("large", &large)] {
        let put = c
            .put_object()
            .bucket("sealed")
            .key(key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(put.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
        // SSE-S3 ETags are the plaintext's MD5, as AWS gives them.
        assert_eq!(
            put.e_tag().unwrap(),
            format!("\"{}\"", hex::encode(Md5::digest(bytes)))
        );
        let head = c.head_object().bucket("sealed").key(key).send().await.unwrap();
        assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
        assert_eq!(head.content_length(), Some(bytes.len() as i64));
        let got = c.get_object().bucket("sealed").key(key).send().await.unwrap();
        assert_eq!(got.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
        assert!(body_bytes(got).await == *bytes, "{key} came back different");
    }
    // Every chunk boundary: the bytes either side, a range ending on it, one
    // starting on it, and ranges spanning two and three chunks.
    for k in 1..=16usize {
        let b = k * CHUNK;
        let mut ranges = vec![
            (b - 1, b),
            (b - CHUNK, b - 1),
            (b - 1, b + 1.min(large.len() - 1 - b)),
        ];
        if b + 1 < large.len() {
            ranges.push((b, b + 1));
            ranges.push((b.saturating_sub(CHUNK + 5), (b + CHUNK + 5).min(large.len() - 1)));
        }
        for (first, last) in ranges {
            let got = get_range(c, "sealed", "large", &format!("bytes={first}-{last}")).await;
            assert!(
                got == large[first..=last],
                "range {first}-{last} came back different"
            );
        }
    }
    let tail = get_range(c, "sealed", "large", "bytes=-200").await;
    assert!(tail == large[large.len() - 200..]);
    let from = get_range(c, "sealed", "large", &format!("bytes={}-", 3 * CHUNK + 7)).await;
    assert!(from == large[3 * CHUNK + 7..]);

    // Multipart: sealed part by part; ranges across the part boundaries.
    let parts = [
        data(5 * 1024 * 1024 + 11, 3),
        data(5 * 1024 * 1024, 4),
        data(CHUNK + 9, 5),
    ];
    let up = c
        .create_multipart_upload()
        .bucket("sealed")
        .key("multi")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(up.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    let id = up.upload_id().unwrap();
    // Part 1 uploaded twice (a retry with other bytes): the second one counts, and
    // its nonces are not the first one's (each part upload is its own segment).
    c.upload_part()
        .bucket("sealed")
        .key("multi")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(data(5 * 1024 * 1024 + 11, 99)))
        .send()
        .await
        .unwrap();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = c
            .upload_part()
            .bucket("sealed")
            .key("multi")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(p.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.e_tag().unwrap(), format!("\"{}\"", hex::encode(Md5::digest(p))));
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    let complete = c
        .complete_multipart_upload()
        .bucket("sealed")
        .key("multi")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        complete.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let whole = parts.concat();
    let got = body_bytes(c.get_object().bucket("sealed").key("multi").send().await.unwrap()).await;
    assert!(got == whole, "the multipart object came back different");
    let p1 = parts[0].len();
    let p2 = p1 + parts[1].len();
    for (first, last) in [
        (p1 - 1, p1),
        (p1 - 3, p2 + 3),
        (p2, whole.len() - 1),
        (p1 - CHUNK, p1 + CHUNK),
    ] {
        let got = get_range(c, "sealed", "multi", &format!("bytes={first}-{last}")).await;
        assert!(
            got == whole[first..=last],
            "multipart range {first}-{last} came back different"
        );
    }

    // No plaintext anywhere in the data directory (blobs, database files).
    let dir = s.dir.path().join("data");
    assert_nowhere(&dir, &small[..64], "the small object's plaintext");
    assert_nowhere(
        &dir,
        &large[5 * CHUNK..5 * CHUNK + 64],
        "the large object's plaintext",
    );
    assert_nowhere(&dir, &whole[p1 - 32..p1 + 32], "the multipart object's plaintext");
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_default_encryption_copies_across_modes_and_the_dispatchers_writes() {
    let s = server().await;
    let c = &s.client;
    for b in ["enc", "plain"] {
        c.create_bucket().bucket(b).send().await.unwrap();
    }
    assert_eq!(
        code(c.get_bucket_encryption().bucket("enc").send().await),
        "ServerSideEncryptionConfigurationNotFoundError"
    );
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .unwrap(),
        )
        .build();
    c.put_bucket_encryption()
        .bucket("enc")
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = c.get_bucket_encryption().bucket("enc").send().await.unwrap();
    let rules = got.server_side_encryption_configuration().unwrap().rules();
    assert_eq!(
        rules[0]
            .apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm(),
        &ServerSideEncryption::Aes256
    );

    // No header: sealed by the bucket's default.
    let bytes = data(200_000, 9);
    c.put_object()
        .bucket("enc")
        .key("a")
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    let head = c.head_object().bucket("enc").key("a").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));

    // Sealed -> clear bucket: opened; clear -> with the header: sealed.
    c.copy_object()
        .bucket("plain")
        .key("a")
        .copy_source("enc/a")
        .send()
        .await
        .unwrap();
    let head = c.head_object().bucket("plain").key("a").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), None);
    let plain = body_bytes(c.get_object().bucket("plain").key("a").send().await.unwrap()).await;
    assert!(plain == bytes);
    c.copy_object()
        .bucket("plain")
        .key("b")
        .copy_source("plain/a")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    let head = c.head_object().bucket("plain").key("b").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert!(body_bytes(c.get_object().bucket("plain").key("b").send().await.unwrap()).await == bytes);
    // Sealed -> sealed (same mode): shares the bytes and key.
    c.copy_object()
        .bucket("enc")
        .key("c")
        .copy_source("plain/b")
        .send()
        .await
        .unwrap();
    assert!(body_bytes(c.get_object().bucket("enc").key("c").send().await.unwrap()).await == bytes);

    // The dispatcher's writes (ObjectStore::put) honour the bucket's default.
    let out = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes.clone()))]);
    let meta = s
        .daemon
        .storage()
        .put(
            "enc",
            "jobs/x/0.png",
            out,
            darkroom::object_store::ObjectAttrs::default(),
        )
        .await
        .unwrap();
    assert!(
        meta.encryption.is_some(),
        "an output in a default-encrypted bucket was stored in the clear"
    );

    c.delete_bucket_encryption().bucket("enc").send().await.unwrap();
    c.put_object()
        .bucket("enc")
        .key("d")
        .body(ByteStream::from_static(b"clear"))
        .send()
        .await
        .unwrap();
    let head = c.head_object().bucket("enc").key("d").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), None);
    // aws:kms is not offered: an invalid argument naming the header (as AWS
    // answers a method it does not know), for a write and a bucket default, and
    // nothing is written.
    let kms = c
        .put_object()
        .bucket("enc")
        .key("e")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    let err = kms.unwrap_err().into_service_error();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("InvalidArgument")
    );
    let message = aws_sdk_s3::error::ProvideErrorMetadata::message(&err).unwrap_or_default();
    assert!(
        message.contains("x-amz-server-side-encryption") && message.contains("no KMS"),
        "{message}"
    );
    assert_eq!(
        code(c.head_object().bucket("enc").key("e").send().await),
        "NotFound"
    );
    let kms_default = c
        .put_bucket_encryption()
        .bucket("enc")
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await;
    assert_eq!(code(kms_default), "InvalidArgument");
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_all_seals_every_bucket() {
    let s = server_with(|c| c.s3.encrypt_all = true).await;
    let c = &s.client;
    c.create_bucket().bucket("any").send().await.unwrap();
    let bytes = data(100_000, 11);
    c.put_object()
        .bucket("any")
        .key("k")
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    let head = c.head_object().bucket("any").key("k").send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert!(body_bytes(c.get_object().bucket("any").key("k").send().await.unwrap()).await == bytes);
    assert_nowhere(&s.dir.path().join("data"), &bytes[1000..1064], "plaintext");
    s.daemon.shutdown().await;
}

fn aws(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("aws")
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn darkroom(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(args)
        .env("DARKROOM_LOG__LEVEL", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// awscli end to end on a `darkroom serve` process: `--sse AES256` (multipart
/// above 8 MiB), put-bucket-encryption, kill -9 after the acknowledgement, master
/// key rotation, a wrong master key, and a backup without the master key.
#[test]
fn awscli_sse_survives_kill_9_rotation_and_backups_leave_the_master_key_out() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let big = data(9 * 1024 * 1024 + 5, 21);
    let src = dir.path().join("big.bin");
    std::fs::write(&src, &big).unwrap();
    let s = spawn_serve(&data_dir, |_| {});
    aws(&s.endpoint, &["s3", "mb", "s3://ssebucket"]);
    aws(
        &s.endpoint,
        &[
            "s3",
            "cp",
            "--sse",
            "AES256",
            src.to_str().unwrap(),
            "s3://ssebucket/big.bin",
        ],
    );
    let head = aws(
        &s.endpoint,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "ssebucket",
            "--key",
            "big.bin",
        ],
    );
    assert!(head.contains("\"ServerSideEncryption\": \"AES256\""), "{head}");
    aws(
        &s.endpoint,
        &[
            "s3api",
            "put-bucket-encryption",
            "--bucket",
            "ssebucket",
            "--server-side-encryption-configuration",
            r#"{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}"#,
        ],
    );
    aws(
        &s.endpoint,
        &["s3", "cp", src.to_str().unwrap(), "s3://ssebucket/default.bin"],
    );
    // Acknowledged, then SIGKILL.
    drop(s);

    // The fsck knows sealed blobs' lengths.
    let (ok, text) = darkroom(&["verify", "--data", data_dir.to_str().unwrap()]);
    assert!(ok, "darkroom verify on sealed objects: {text}");

    let key_file = data_dir.join("master.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    let (ok, text) = darkroom(&["keys", "rotate-master", "--data", data_dir.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("2 data keys re-wrapped"), "{text}");
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_key, new_key);

    let s = spawn_serve(&data_dir, |_| {});
    for key in ["big.bin", "default.bin"] {
        let back = dir.path().join(format!("back-{key}"));
        aws(
            &s.endpoint,
            &[
                "s3",
                "cp",
                &format!("s3://ssebucket/{key}"),
                back.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&back).unwrap() == big,
            "{key} after kill -9 and rotation"
        );
    }
    drop(s);

    // The old master key no longer opens anything: a daemon given it refuses reads.
    let old_file = dir.path().join("old.key");
    std::fs::write(&old_file, &old_key).unwrap();
    let s = spawn_serve(&data_dir, |cmd| {
        cmd.env("DARKROOM_S3__MASTER_KEY_FILE", &old_file);
    });
    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            &s.endpoint,
            "--region",
            "us-east-1",
            "s3",
            "cp",
            "s3://ssebucket/big.bin",
            "-",
        ])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an object opened with the wrong master key"
    );
    drop(s);

    // A backup carries the sealed blobs and wrapped keys, never the master key.
    let backup = dir.path().join("backup");
    let (ok, text) = darkroom(&[
        "backup",
        backup.to_str().unwrap(),
        "--data",
        data_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let secret = new_key.split_whitespace().nth(1).unwrap().as_bytes().to_vec();
    assert_nowhere(&backup, &secret, "the master key");
    assert!(
        files(&backup)
            .iter()
            .all(|(p, _)| !p.to_string_lossy().contains("master.key"))
    );
    assert_nowhere(&backup, &big[4096..4160], "plaintext");
}

fn sse_c_key(seed: u8) -> (String, String, [u8; 32]) {
    use base64::Engine as _;
    let raw: [u8; 32] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
    let b64 = base64::engine::general_purpose::STANDARD;
    (b64.encode(raw), b64.encode(Md5::digest(raw)), raw)
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_c_needs_the_right_key_everywhere_and_never_stores_it() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("cust").send().await.unwrap();
    let (key, md5, raw) = sse_c_key(1);
    let (wrong, wrong_md5, _) = sse_c_key(2);
    let bytes = data(3 * CHUNK + 17, 31);
    let put = c
        .put_object()
        .bucket("cust")
        .key("k")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key)
        .sse_customer_key_md5(&md5)
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.sse_customer_key_md5(), Some(md5.as_str()));
    // As AWS's, an SSE-C ETag is not the plaintext's MD5 (which would let anyone
    // with the metadata check a guess of the content), yet names the version.
    let plain_md5 = hex::encode(Md5::digest(&bytes));
    let etag = put.e_tag().unwrap().to_owned();
    assert_ne!(etag, format!("\"{plain_md5}\""));
    assert_eq!(etag.len(), 34, "{etag}");
    let get = |k: Option<(&str, &str)>, range: Option<&str>| {
        let mut r = c.get_object().bucket("cust").key("k");
        if let Some((k, m)) = k {
            r = r
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k)
                .sse_customer_key_md5(m);
        }
        if let Some(range) = range {
            r = r.range(range);
        }
        r.send()
    };
    let got = get(Some((&key, &md5)), None).await.unwrap();
    assert_eq!(got.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert!(body_bytes(got).await == bytes);
    let part = body_bytes(get(Some((&key, &md5)), Some("bytes=65530-131080")).await.unwrap()).await;
    assert!(part == bytes[65530..=131_080]);
    assert_eq!(
        crate::support::status(get(Some((&wrong, &wrong_md5)), None).await),
        403
    );
    assert_eq!(crate::support::status(get(None, None).await), 400);
    let head = c
        .head_object()
        .bucket("cust")
        .key("k")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key)
        .sse_customer_key_md5(&md5)
        .send()
        .await
        .unwrap();
    assert_eq!(head.sse_customer_key_md5(), Some(md5.as_str()));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert!(c.head_object().bucket("cust").key("k").send().await.is_err());
    // Content-MD5 is still checked against the plaintext.
    let content_md5 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(b))
    };
    for (declared, ok) in [(content_md5(&bytes), true), (content_md5(b"other"), false)] {
        let r = c
            .put_object()
            .bucket("cust")
            .key("md5")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key)
            .sse_customer_key_md5(&md5)
            .content_md5(declared)
            .body(ByteStream::from(bytes.clone()))
            .send()
            .await;
        assert_eq!(r.is_ok(), ok, "{r:?}");
    }

    // Copy: the source's key opens it, the destination gets SSE-S3 or another key.
    assert!(
        c.copy_object()
            .bucket("cust")
            .key("copy")
            .copy_source("cust/k")
            .send()
            .await
            .is_err()
    );
    c.copy_object()
        .bucket("cust")
        .key("copy")
        .copy_source("cust/k")
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&key)
        .copy_source_sse_customer_key_md5(&md5)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&wrong)
        .sse_customer_key_md5(&wrong_md5)
        .send()
        .await
        .unwrap();
    let got = c
        .get_object()
        .bucket("cust")
        .key("copy")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&wrong)
        .sse_customer_key_md5(&wrong_md5)
        .send()
        .await
        .unwrap();
    assert!(body_bytes(got).await == bytes);

    // Multipart: every part needs the upload's key.
    let up = c
        .create_multipart_upload()
        .bucket("cust")
        .key("multi")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key)
        .sse_customer_key_md5(&md5)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let p1 = data(5 * 1024 * 1024, 32);
    let no_key = c
        .upload_part()
        .bucket("cust")
        .key("multi")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(p1.clone()))
        .send()
        .await;
    assert_eq!(crate::support::status(no_key), 400);
    let mut done = Vec::new();
    for (n, p) in [(1, p1.clone()), (2, bytes.clone())] {
        let part_md5 = hex::encode(Md5::digest(&p));
        let r = c
            .upload_part()
            .bucket("cust")
            .key("multi")
            .upload_id(id)
            .part_number(n)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key)
            .sse_customer_key_md5(&md5)
            .body(ByteStream::from(p))
            .send()
            .await
            .unwrap();
        assert_ne!(
            r.e_tag().unwrap(),
            format!("\"{part_md5}\""),
            "an SSE-C part's ETag is its plaintext's MD5"
        );
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket("cust")
        .key("multi")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    let got = c
        .get_object()
        .bucket("cust")
        .key("multi")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key)
        .sse_customer_key_md5(&md5)
        .send()
        .await
        .unwrap();
    assert!(body_bytes(got).await == [p1, bytes.clone()].concat());

    // The key is nowhere on disk, in any form, and neither is the plaintext.
    let dir = s.dir.path().join("data");
    assert_nowhere(&dir, &raw, "the SSE-C key");
    assert_nowhere(&dir, key.as_bytes(), "the SSE-C key (base64)");
    assert_nowhere(&dir, &bytes[70_000..70_064], "plaintext");
    assert_nowhere(&dir, plain_md5.as_bytes(), "the plaintext's MD5");
    s.daemon.shutdown().await;
}

const BOTO3_SSE_C: &str = r#"
import sys, os, boto3, botocore
from botocore.config import Config
endpoint, ca, ak, sk = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, verify=ca, aws_access_key_id=ak,
                  aws_secret_access_key=sk, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
key = bytes(range(32))
s3.create_bucket(Bucket="bcust")
s3.put_object(Bucket="bcust", Key="k", Body=b"customer bytes" * 5000, SSECustomerAlgorithm="AES256", SSECustomerKey=key)
got = s3.get_object(Bucket="bcust", Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
assert got["Body"].read() == b"customer bytes" * 5000
assert got["SSECustomerAlgorithm"] == "AES256"
try:
    s3.get_object(Bucket="bcust", Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=bytes(32))
    raise SystemExit("a wrong key opened the object")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
s3.put_object(Bucket="bcust", Key="s3", Body=b"managed", ServerSideEncryption="AES256")
assert s3.head_object(Bucket="bcust", Key="s3")["ServerSideEncryption"] == "AES256"
print("boto3 sse ok")
"#;

/// boto3 with SSE-C and SSE-S3 over TLS against `darkroom serve` logging at
/// debug: the key is in neither the log nor the data directory.
#[test]
fn boto3_sse_c_over_tls_and_the_key_never_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::tls::TestCa::new("sse CA");
    let ca_file = ca.write_ca(&dir.path().join("ca.pem"));
    let pair = ca.leaf(dir.path(), "server");
    let log = dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let data_dir = dir.path().join("data");
    let s = spawn_serve(&data_dir, |cmd| {
        cmd.env("DARKROOM_TLS__CERT_FILE", &pair.cert)
            .env("DARKROOM_TLS__KEY_FILE", &pair.key)
            .env("DARKROOM_LOG__LEVEL", "debug")
            .stderr(log_file);
    });
    let out = Command::new("python3")
        .args([
            "-c",
            BOTO3_SSE_C,
            &s.endpoint,
            ca_file.to_str().unwrap(),
            ACCESS_KEY,
            SECRET_KEY,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 SSE failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "boto3 sse ok");
    drop(s);
    use base64::Engine as _;
    let raw: Vec<u8> = (0..32).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let logged = std::fs::read(&log).unwrap();
    assert!(
        !logged.is_empty(),
        "the debug log is empty: the scan would prove nothing"
    );
    assert!(
        !logged.windows(b64.len()).any(|w| w == b64.as_bytes()),
        "the SSE-C key is in the log"
    );
    assert_nowhere(&data_dir, &raw, "the SSE-C key");
    assert_nowhere(&data_dir, b64.as_bytes(), "the SSE-C key (base64)");
}
