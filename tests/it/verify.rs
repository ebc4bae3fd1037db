//! `darkroom verify` on a real data directory: clean after real writes, then the
//! four corruptions — a flipped byte, a truncated blob, a missing blob, an orphan —
//! each found and named; `--repair` removes the orphan and marks the damaged
//! objects, which a restarted daemon then refuses to serve instead of sending
//! wrong bytes. Exit codes: 0 clean, 1 problems, 2 could not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

use crate::support::{TestServer, daemon_on, data, server, test_config};

fn verify(data_dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .arg("verify")
        .arg("--data")
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The blob file holding exactly `content`.
fn blob_with(data_dir: &Path, content: &[u8]) -> PathBuf {
    for shard in std::fs::read_dir(data_dir.join("blobs")).unwrap() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if std::fs::read(&path).unwrap() == content {
                return path;
            }
        }
    }
    panic!("no blob file holds that content");
}

#[tokio::test]
async fn verify_finds_the_four_corruptions_and_repair_marks_what_it_cannot_mend() {
    let s = server().await;
    s.client.create_bucket().bucket("verified").send().await.unwrap();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("small.txt", b"inline bytes".to_vec()),
        ("flipped.png", data(100_000, 1)),
        ("truncated.png", data(120_000, 2)),
        ("missing.png", data(90_000, 3)),
        ("fine.png", data(80_000, 4)),
    ];
    for (key, body) in &bodies {
        s.client
            .put_object()
            .bucket("verified")
            .key(*key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
    }
    let TestServer { daemon, dir, .. } = s;
    daemon.shutdown().await;
    let data_dir = dir.path().join("data");

    let (code, out) = verify(&data_dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("5 objects") && out.trim_end().ends_with("clean"),
        "{out}"
    );

    // The four corruptions.
    let flipped = blob_with(&data_dir, &bodies[1].1);
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[5_000] ^= 0x40;
    std::fs::write(&flipped, bytes).unwrap();
    let truncated = blob_with(&data_dir, &bodies[2].1);
    std::fs::write(&truncated, &bodies[2].1[..60_000]).unwrap();
    std::fs::remove_file(blob_with(&data_dir, &bodies[3].1)).unwrap();
    let orphan = data_dir.join("blobs/ab/ab00000000000000000000000000000f");
    std::fs::write(&orphan, b"left behind").unwrap();

    let (code, out) = verify(&data_dir, &["--json"]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let what = f["key"]
                .as_str()
                .or_else(|| f["blob"].as_str())
                .unwrap()
                .to_owned();
            (f["kind"].as_str().unwrap().to_owned(), what)
        })
        .collect();
    for expected in [
        ("wrong_checksum", "flipped.png"),
        ("wrong_size", "truncated.png"),
        ("missing_blob", "missing.png"),
        ("orphan", "ab00000000000000000000000000000f"),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {kinds:?}"
        );
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");

    // The human report names them too.
    let (_, text) = verify(&data_dir, &[]);
    for line in [
        "corrupt   verified/flipped.png",
        "truncated verified/truncated.png",
        "missing   verified/missing.png",
        "orphan    blob ab00",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }

    // Repair: the orphan goes, the three objects are marked.
    let (code, out) = verify(&data_dir, &["--repair"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 orphan blob files removed, 3 objects marked damaged"),
        "{out}"
    );
    assert!(!orphan.exists());
    let (code, out) = verify(&data_dir, &["--json"]);
    assert_eq!(code, 1, "damaged objects are still problems: {out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["kind"] == "damaged"),
        "{out}"
    );

    // A daemon on the repaired directory names the damage instead of sending wrong bytes.
    let (daemon, c) = daemon_on(&test_config(&dir)).await;
    let err = c
        .get_object()
        .bucket("verified")
        .key("flipped.png")
        .send()
        .await
        .unwrap_err();
    let text = format!("{:?}", err.into_service_error());
    assert!(text.contains("damaged") && text.contains("flipped.png"), "{text}");
    for (key, body) in [&bodies[0], &bodies[4]] {
        let got = c.get_object().bucket("verified").key(*key).send().await.unwrap();
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            body.as_slice()
        );
    }
    // Deleting a damaged object is how it is cleared.
    c.delete_object()
        .bucket("verified")
        .key("flipped.png")
        .send()
        .await
        .unwrap();
    daemon.shutdown().await;
    let (_, out) = verify(&data_dir, &["--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 2, "{out}");
}

#[tokio::test]
async fn verify_cannot_run_on_a_held_or_missing_directory() {
    let s = server().await;
    let data_dir = s.dir.path().join("data");
    let (code, out) = verify(&data_dir, &[]);
    assert_eq!(code, 2, "a running daemon holds it: {out}");
    assert!(out.contains("in another process"), "{out}");
    let (code, out) = verify(&s.dir.path().join("nothing-here"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a darkroom data directory"), "{out}");
    drop(s);
}
