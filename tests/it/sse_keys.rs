//! The master key given as configuration (`s3.master_key`, i.e.
//! `DARKROOM_S3__MASTER_KEY` from a secrets store) instead of a file: used, never
//! written to the data directory, the same key opening the objects after a
//! restart and another key refused; `config check` accepts it without printing
//! it, refuses a malformed one by name, and `keys rotate-master` says why it
//! cannot rotate it.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use base64::Engine as _;
use darkroom::daemon::Daemon;

use crate::support::{ACCESS_KEY, SECRET_KEY, body_bytes, client, data, test_config};

fn b64(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// `darkroom ARGS` with `envs`, in `dir` (no config file there): (success, output).
async fn darkroom(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(args)
        .envs(envs.iter().copied())
        .env("DARKROOM_LOG__LEVEL", "warn")
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_key_from_the_environment_is_used_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let raw: [u8; 32] = rand::random();
    let key = b64(&raw);
    let mut c = test_config(&dir);
    c.s3.master_key.clone_from(&key);
    let bytes = data(200_000, 9);

    let daemon = Daemon::start(&c, darkroom::clock::system()).await.unwrap();
    let s3 = client(
        &format!("http://{}", daemon.s3_addr().unwrap()),
        ACCESS_KEY,
        SECRET_KEY,
    );
    s3.create_bucket().bucket("keyed").send().await.unwrap();
    s3.put_object()
        .bucket("keyed")
        .key("k")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await
        .unwrap();
    daemon.shutdown().await;
    assert!(
        !c.data_dir.join("master.key").exists(),
        "a master.key file was written beside a given key"
    );
    for (path, text) in crate::sse::files(&c.data_dir) {
        for needle in [&raw[..], key.as_bytes()] {
            assert!(
                !text.windows(needle.len()).any(|w| w == needle),
                "the master key is in {}",
                path.display()
            );
        }
    }

    // The same key after a restart opens the object; another one does not.
    let open = |master: String| {
        let mut c = c.clone();
        c.s3.master_key = master;
        async move {
            let daemon = Daemon::start(&c, darkroom::clock::system()).await.unwrap();
            let s3 = client(
                &format!("http://{}", daemon.s3_addr().unwrap()),
                ACCESS_KEY,
                SECRET_KEY,
            );
            let got = match s3.get_object().bucket("keyed").key("k").send().await {
                Ok(out) => Some(body_bytes(out).await),
                Err(_) => None,
            };
            daemon.shutdown().await;
            got
        }
    };
    assert!(open(key.clone()).await == Some(bytes));
    assert_eq!(open(b64(&[1; 32])).await, None, "another master key opened it");

    // Through the environment: accepted and not printed by `config check`; a
    // malformed one refused by name without being echoed; no rotation of it.
    let (ok, out) = darkroom(
        dir.path(),
        &["config", "check"],
        &[("DARKROOM_S3__MASTER_KEY", &key)],
    )
    .await;
    assert!(ok, "{out}");
    assert!(!out.contains(&key), "config check printed the master key");
    let (ok, out) = darkroom(
        dir.path(),
        &["config", "check"],
        &[("DARKROOM_S3__MASTER_KEY", "not-a-key-at-all")],
    )
    .await;
    assert!(!ok);
    assert!(
        out.contains("s3.master_key") && !out.contains("not-a-key-at-all"),
        "{out}"
    );
    let data_dir = c.data_dir.to_str().unwrap();
    let (ok, out) = darkroom(
        dir.path(),
        &["keys", "rotate-master", "--data", data_dir],
        &[("DARKROOM_S3__MASTER_KEY", &key)],
    )
    .await;
    assert!(!ok);
    assert!(out.contains("s3.master_key_file"), "{out}");
}
