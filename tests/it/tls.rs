//! TLS on both listeners with a CA the tests make (rcgen): awscli (`--ca-bundle`),
//! boto3 (`verify=`), curl (HTTP/2 and HTTP/1.1 by ALPN on the API, TLS 1.1
//! refused), darkroom's own CLI and API client (`--ca-file`), https presigned
//! URLs, a wrong CA refused, a self-signed pair from `darkroom tls self-signed`,
//! and a certificate replaced under load without one failed request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use darkroom::config::Config;

use crate::support::{ACCESS_KEY, SECRET_KEY, bounded, server_with, spawn_serve};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate file and its key file.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to `path` and returns it.
    pub fn write_ca(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap();
        path.to_path_buf()
    }

    /// A server certificate for localhost and 127.0.0.1, signed by this CA, as PEM
    /// (certificate, key).
    pub fn leaf_pem(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate written to `dir/{name}.pem` and `dir/{name}.key`.
    pub fn leaf(&self, dir: &Path, name: &str) -> Pair {
        let (cert, key) = self.leaf_pem();
        let pair = Pair {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&pair.cert, cert).unwrap();
        std::fs::write(&pair.key, key).unwrap();
        pair
    }
}

/// Points both listeners of `config` at `pair`.
pub fn use_pair(config: &mut Config, pair: &Pair) {
    config.tls.cert_file.clone_from(&pair.cert);
    config.tls.key_file.clone_from(&pair.key);
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn aws(endpoint: &str, ca: &Path, args: &[&str]) -> (bool, String, String) {
    run(Command::new("aws")
        .args(["--endpoint-url", endpoint, "--region", "us-east-1", "--ca-bundle"])
        .arg(ca)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"))
}

fn curl(args: &[&str]) -> (bool, String, String) {
    run(Command::new("curl").args(["-sS", "--max-time", "60"]).args(args))
}

const BOTO3_SCRIPT: &str = r#"
import sys, boto3
from botocore.config import Config
endpoint, ca, ak, sk = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, verify=ca, aws_access_key_id=ak,
                  aws_secret_access_key=sk, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="boto-tls")
s3.put_object(Bucket="boto-tls", Key="k", Body=b"over tls")
assert s3.get_object(Bucket="boto-tls", Key="k")["Body"].read() == b"over tls"
print("boto3 ok")
"#;

#[test]
fn s3_over_tls_with_awscli_boto3_and_presigned_urls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("darkroom test CA");
    let ca_file = ca.write_ca(&dir.path().join("ca.pem"));
    let pair = ca.leaf(dir.path(), "server");
    let s = spawn_serve(&dir.path().join("data"), |cmd| {
        cmd.env("DARKROOM_TLS__CERT_FILE", &pair.cert)
            .env("DARKROOM_TLS__KEY_FILE", &pair.key);
    });
    assert!(s.endpoint.starts_with("https://127.0.0.1:"), "{}", s.endpoint);

    let ok = |r: (bool, String, String)| {
        assert!(r.0, "failed: {}\n{}", r.1, r.2);
        r.1
    };
    ok(aws(&s.endpoint, &ca_file, &["s3", "mb", "s3://tls-bucket"]));
    let src = dir.path().join("in.bin");
    let bytes = crate::support::data(9 * 1024 * 1024, 7);
    std::fs::write(&src, &bytes).unwrap();
    ok(aws(
        &s.endpoint,
        &ca_file,
        &["s3", "cp", src.to_str().unwrap(), "s3://tls-bucket/in.bin"],
    ));
    let back = dir.path().join("back.bin");
    ok(aws(
        &s.endpoint,
        &ca_file,
        &["s3", "cp", "s3://tls-bucket/in.bin", back.to_str().unwrap()],
    ));
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "the object came back different over TLS"
    );

    // A presigned URL is https and works with the CA.
    let url = ok(aws(
        &s.endpoint,
        &ca_file,
        &["s3", "presign", "s3://tls-bucket/in.bin"],
    ));
    let url = url.trim();
    assert!(url.starts_with("https://"), "{url}");
    let got = dir.path().join("presigned.bin");
    ok(curl(&[
        "--fail",
        "--cacert",
        ca_file.to_str().unwrap(),
        "-o",
        got.to_str().unwrap(),
        url,
    ]));
    assert!(std::fs::read(&got).unwrap() == bytes);

    // A client trusting another CA is refused.
    let other = TestCa::new("someone else").write_ca(&dir.path().join("other.pem"));
    let (refused, _, err) = aws(&s.endpoint, &other, &["s3", "ls", "s3://tls-bucket"]);
    assert!(
        !refused,
        "awscli trusted a certificate from a CA it was not given"
    );
    assert!(err.contains("SSL") || err.contains("certificate"), "{err}");

    let out = Command::new("python3")
        .args([
            "-c",
            BOTO3_SCRIPT,
            &s.endpoint,
            ca_file.to_str().unwrap(),
            ACCESS_KEY,
            SECRET_KEY,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 over TLS failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "boto3 ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_over_tls_speaks_h2_and_http1_to_curl_the_cli_and_the_dashboard_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("darkroom test CA");
    let ca_file = ca.write_ca(&dir.path().join("ca.pem"));
    let pair = ca.leaf(dir.path(), "server");
    let s = server_with(|c| use_pair(c, &pair)).await;
    let api = s.daemon.api_url().to_string();
    assert!(api.starts_with("https://"), "{api}");
    let healthz = format!("{api}/healthz");
    let ca_arg = ca_file.to_str().unwrap().to_string();
    let (curl_h2, curl_h1, curl_old, curl_plain) = tokio::task::spawn_blocking({
        let (healthz, ca_arg) = (healthz.clone(), ca_arg.clone());
        move || {
            let version = |extra: &[&str]| {
                let mut args = vec![
                    "--fail",
                    "--cacert",
                    &ca_arg,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_version}",
                ];
                args.extend_from_slice(extra);
                args.push(&healthz);
                curl(&args)
            };
            (
                version(&["--http2"]),
                version(&["--http1.1"]),
                version(&["--tlsv1.1", "--tls-max", "1.1"]),
                curl(&["--fail", &healthz.replace("https://", "http://")]),
            )
        }
    })
    .await
    .unwrap();
    assert!(curl_h2.0 && curl_h2.1 == "2", "HTTP/2 by ALPN: {curl_h2:?}");
    assert!(curl_h1.0 && curl_h1.1 == "1.1", "HTTP/1.1 by ALPN: {curl_h1:?}");
    assert!(!curl_old.0, "TLS 1.1 was accepted: {curl_old:?}");
    assert!(
        !curl_plain.0,
        "plain HTTP was answered on the TLS port: {curl_plain:?}"
    );

    // darkroom's own CLI, with and without the CA.
    let status = |ca: Option<String>| {
        let api = api.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_darkroom"));
            cmd.args(["status", "--json", "--url", &api])
                .env_remove("DARKROOM_CA_FILE");
            if let Some(ca) = ca {
                cmd.args(["--ca-file", &ca]);
            }
            run(&mut cmd)
        })
    };
    let with_ca = status(Some(ca_arg.clone())).await.unwrap();
    assert!(with_ca.0, "darkroom status over TLS failed: {}", with_ca.2);
    assert!(
        with_ca.1.contains(&format!("\"api_url\": \"{api}\"")) || with_ca.1.contains(&api),
        "{}",
        with_ca.1
    );
    let without = status(None).await.unwrap();
    assert!(!without.0, "darkroom status trusted an unknown CA");

    // The remote dashboard's client (RemoteLink over ApiClient) with the CA file.
    let client = darkroom::client::ApiClient::with_ca(&api, None, Some(&ca_file)).unwrap();
    let snapshot = bounded("status over TLS", client.status()).await.unwrap();
    assert_eq!(snapshot.endpoints.unwrap().api_url, api);
    let plain = darkroom::client::ApiClient::new(&api, None).unwrap();
    assert!(bounded("status without the CA", plain.status()).await.is_err());
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_certificate_is_served_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let pair = old_ca.leaf(dir.path(), "server");
    let s = server_with(|c| use_pair(c, &pair)).await;
    let healthz = format!("{}/healthz", s.daemon.api_url());
    let root = |ca: &TestCa| reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap();
    // Load: a new connection (and handshake) per request, trusting both CAs.
    let fresh = reqwest::Client::builder()
        .add_root_certificate(root(&old_ca))
        .add_root_certificate(root(&new_ca))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // A kept-alive connection opened before the change, trusting the old CA only.
    let kept = reqwest::Client::builder()
        .add_root_certificate(root(&old_ca))
        .build()
        .unwrap();
    let only_new = reqwest::Client::builder()
        .add_root_certificate(root(&new_ca))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert!(kept.get(&healthz).send().await.unwrap().status().is_success());
    assert!(
        only_new.get(&healthz).send().await.is_err(),
        "the new CA is trusted before the change"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, stop, done, failed) = (
            fresh.clone(),
            healthz.clone(),
            stop.clone(),
            done.clone(),
            failed.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => done.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed request during the reload: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    // Renewal as certbot-like tools do it: the certificate first, then the key (a
    // moment where they do not match), each replaced whole by a rename.
    let (cert, key) = new_ca.leaf_pem();
    for (path, text) in [(&pair.cert, cert), (&pair.key, key)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    // The next handshakes serve the new certificate.
    bounded("the new certificate to be served", async {
        while only_new.get(&healthz).send().await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let before = done.load(Ordering::Relaxed);
    bounded("more requests after the reload", async {
        while done.load(Ordering::Relaxed) < before + 20 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed while the certificate changed"
    );
    assert!(done.load(Ordering::Relaxed) > 20);
    // The connection opened before the change still works (it was not dropped).
    assert!(kept.get(&healthz).send().await.unwrap().status().is_success());
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_pair_is_served_and_trusted_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls");
    let (ok, stdout, stderr) = run(Command::new(env!("CARGO_BIN_EXE_darkroom")).args([
        "tls",
        "self-signed",
        "--host",
        "127.0.0.1",
        "--host",
        "gpubox.lan",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(ok, "{stderr}");
    let fingerprint = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .expect("a fingerprint line")
        .to_string();
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
    let pair = Pair {
        cert: out.join("cert.pem"),
        key: out.join("key.pem"),
    };
    let s = server_with(|c| use_pair(c, &pair)).await;
    let healthz = format!("{}/healthz", s.daemon.api_url());
    let cert = pair.cert.to_str().unwrap().to_string();
    let got = tokio::task::spawn_blocking(move || {
        curl(&["--fail", "--cacert", &cert, "-o", "/dev/null", &healthz])
    })
    .await
    .unwrap();
    assert!(got.0, "curl with the self-signed certificate as CA: {got:?}");
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_sdk_s3_and_darkrooms_own_presigned_urls_over_tls() {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("darkroom test CA");
    let pair = ca.leaf(dir.path(), "server");
    let s = server_with(|c| use_pair(c, &pair)).await;
    let endpoint = s.daemon.s3_url().unwrap();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(ca.pem.as_bytes()))
                .build()
                .unwrap(),
        )
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "test",
        ))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .http_client(http)
        .build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    c.create_bucket().bucket("sdk-tls").send().await.unwrap();
    let bytes = crate::support::data(300_000, 3);
    c.put_object()
        .bucket("sdk-tls")
        .key("k")
        .body(aws_sdk_s3::primitives::ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    let got =
        crate::support::body_bytes(c.get_object().bucket("sdk-tls").key("k").send().await.unwrap()).await;
    assert!(got == bytes);
    // The presigned URLs darkroom hands out (job outputs) are https and verify.
    let url = s
        .daemon
        .presigner()
        .unwrap()
        .get_url(
            "sdk-tls",
            "k",
            std::time::Duration::from_secs(60),
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = client.get(&url).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(resp.bytes().await.unwrap() == bytes);
    s.daemon.shutdown().await;
}
