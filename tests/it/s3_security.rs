//! Who gets in: SigV4 with the right secret, presigned URLs used with plain HTTP
//! (as curl would), expiry, public-read buckets, health probes, and keys that look
//! like paths staying keys.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use darkroom::s3::BucketConfig;

use crate::support::{ACCESS_KEY, ServeProcess, body_bytes, client, code, server, server_with, spawn_serve};

#[tokio::test]
async fn wrong_secret_and_unknown_key_are_refused() {
    let s = server().await;
    let bad = client(&s.endpoint, ACCESS_KEY, "not-the-secret");
    assert_eq!(code(bad.list_buckets().send().await), "SignatureDoesNotMatch");
    let unknown = client(&s.endpoint, "nobody", "whatever-secret");
    assert!(unknown.list_buckets().send().await.is_err());
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/", s.endpoint)).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn presigned_get_and_put_work_over_plain_http() {
    let s = server().await;
    s.client.create_bucket().bucket("pre").send().await.unwrap();
    let http = reqwest::Client::new();

    let put = s
        .client
        .put_object()
        .bucket("pre")
        .key("up.png")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    let r = http
        .put(put.uri())
        .body(b"uploaded with a presigned url".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let get = s
        .client
        .get_object()
        .bucket("pre")
        .key("up.png")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(7 * 24 * 3600)).unwrap())
        .await
        .unwrap();
    let r = http.get(get.uri()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        b"uploaded with a presigned url"
    );

    // Tampering with the signed URL breaks it.
    let tampered = get.uri().replace("up.png", "other.png");
    assert_eq!(http.get(tampered).send().await.unwrap().status(), 403);

    // A URL signed two hours ago for one hour has expired.
    let expired = s
        .client
        .get_object()
        .bucket("pre")
        .key("up.png")
        .presigned(
            PresigningConfig::builder()
                .start_time(SystemTime::now() - Duration::from_secs(7200))
                .expires_in(Duration::from_secs(3600))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let r = http.get(expired.uri()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("AccessDenied"));
}

#[tokio::test]
async fn public_read_bucket_allows_unsigned_get_only() {
    let s = server_with(|c| {
        c.s3.buckets = vec![
            BucketConfig {
                name: "public-out".into(),
                public_read: true,
                expire_days: 0,
            },
            BucketConfig {
                name: "private-out".into(),
                public_read: false,
                expire_days: 0,
            },
        ];
    })
    .await;
    for b in ["public-out", "private-out"] {
        s.client
            .put_object()
            .bucket(b)
            .key("img.png")
            .body(ByteStream::from_static(b"png"))
            .send()
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/public-out/img.png", s.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"png");
    let r = http
        .head(format!("{}/public-out/img.png", s.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/private-out/img.png", s.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .put(format!("{}/public-out/evil.png", s.endpoint))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{}/public-out", s.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "listing a public-read bucket stays private");
}

#[tokio::test]
async fn minio_health_endpoints_answer_unsigned() {
    let s = server().await;
    let http = reqwest::Client::new();
    for path in ["/minio/health/live", "/minio/health/ready"] {
        let r = http.get(format!("{}{path}", s.endpoint)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn path_like_keys_are_plain_keys() {
    let s = server().await;
    let c = &s.client;
    c.create_bucket().bucket("trav").send().await.unwrap();
    let keys = [
        "../x",
        "a/../../b",
        "../../../../etc/passwd",
        "./dot",
        "a//b",
        "with space/ü.png",
    ];
    for (i, k) in keys.iter().enumerate() {
        c.put_object()
            .bucket("trav")
            .key(*k)
            .body(ByteStream::from(format!("value {i}").into_bytes()))
            .send()
            .await
            .unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        let got = body_bytes(c.get_object().bucket("trav").key(*k).send().await.unwrap()).await;
        assert_eq!(got, format!("value {i}").as_bytes(), "{k}");
    }
    let listed: Vec<String> = c
        .list_objects_v2()
        .bucket("trav")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    // Nothing was written outside the data directory.
    assert!(!s.dir.path().join("x").exists());
    assert!(!s.dir.path().join("b").exists());
}

#[test]
fn credentials_are_generated_once_and_kept_private() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    // Starts `darkroom serve` with no credentials configured.
    let spawn = || {
        let p = spawn_serve(&dir.path().join("data"), |cmd| {
            cmd.env_remove("DARKROOM_S3__ACCESS_KEY")
                .env_remove("DARKROOM_S3__SECRET_KEY")
                .env_remove("MINIO_ROOT_USER")
                .env_remove("MINIO_ROOT_PASSWORD")
                .env("DARKROOM_LOG__LEVEL", "error")
                .stderr(Stdio::piped());
        });
        let endpoint = p.endpoint.clone();
        (p, endpoint)
    };
    let stop = |mut p: ServeProcess| -> String {
        p.child.kill().unwrap();
        p.child.wait().unwrap();
        let mut err = String::new();
        p.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        err
    };

    let (child, _) = spawn();
    let first = stop(child);
    let key = |label: &str| {
        first
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(str::trim))
            .unwrap_or_else(|| panic!("no {label} in {first:?}"))
            .to_string()
    };
    let (access, secret) = (key("access key:"), key("secret key:"));
    assert!(access.len() >= 16 && secret.len() >= 32);
    let file = dir.path().join("data/credentials.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The second start reuses them silently, and the server accepts them.
    let (child, endpoint) = spawn();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listed = rt.block_on(client(&endpoint, &access, &secret).list_buckets().send());
    let second = stop(child);
    listed.unwrap();
    assert!(
        !second.contains("secret key"),
        "credentials printed twice: {second}"
    );
}

#[tokio::test]
async fn darkrooms_own_presigned_urls_work_and_expire() {
    let s = server().await;
    s.client.create_bucket().bucket("outs").send().await.unwrap();
    s.client
        .put_object()
        .bucket("outs")
        .key("jobs/01/0-image 1.png")
        .body(ByteStream::from_static(b"png bytes"))
        .send()
        .await
        .unwrap();
    let p = s.daemon.presigner().unwrap();
    let http = reqwest::Client::new();
    let url = p
        .get_url(
            "outs",
            "jobs/01/0-image 1.png",
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"png bytes");
    let old = SystemTime::now() - Duration::from_secs(7200);
    let expired = p
        .get_url("outs", "jobs/01/0-image 1.png", Duration::from_secs(3600), old)
        .unwrap();
    assert_eq!(http.get(&expired).send().await.unwrap().status(), 403);
}
