//! A full disk: on a small tmpfs, PUTs fail with a clean S3 error (507
//! XDarkroomStorageFull), no half object or orphan blob is left, every object that
//! was acknowledged still reads back, and after deleting something writes work again.
//!
//! Mounting the tmpfs needs root (CI runs as root; elsewhere `sudo` is used).

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;

use crate::support::{blob_files, body_bytes, data, server_with, status};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let mut cmd = if root {
            Command::new("mount")
        } else {
            Command::new("sudo")
        };
        if !root {
            cmd.args(["-n", "mount"]);
        }
        let st = cmd
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs needs root or passwordless sudo");
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = Command::new("sudo")
            .args(["-n", "umount", "-l"])
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn full_disk_is_a_clean_error() {
    let outer = tempfile::tempdir().unwrap();
    let mnt = outer.path().join("small");
    let _fs = Tmpfs::mount(&mnt, "24m");
    let data_dir = mnt.join("data");
    let dd = data_dir.clone();
    let s = server_with(move |c| c.data_dir = dd).await;
    let c = &s.client;
    c.create_bucket().bucket("full").send().await.unwrap();

    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..64u64 {
        let body = data(1024 * 1024, i);
        let r = c
            .put_object()
            .bucket("full")
            .key(format!("o{i}"))
            .body(ByteStream::from(body))
            .send()
            .await;
        match r {
            Ok(_) => acked.push(i),
            Err(e) => {
                refused = Some((i, status(Err::<(), _>(e))));
                break;
            }
        }
    }
    let (failed_at, code) = refused.expect("24 MiB never filled up");
    assert_eq!(code, 507, "a full disk is 507 Insufficient Storage");
    assert!(!acked.is_empty());
    // The refused object does not exist, half or whole.
    let r = c
        .head_object()
        .bucket("full")
        .key(format!("o{failed_at}"))
        .send()
        .await;
    assert!(r.is_err());
    // Every acknowledged object is intact.
    for i in &acked {
        let got = body_bytes(
            c.get_object()
                .bucket("full")
                .key(format!("o{i}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(got == data(1024 * 1024, *i), "o{i} damaged");
    }
    assert_eq!(
        blob_files(&data_dir),
        acked.len(),
        "a half-written blob was left behind"
    );
    // Freeing space makes writes work again.
    for i in acked.iter().take(4) {
        c.delete_object()
            .bucket("full")
            .key(format!("o{i}"))
            .send()
            .await
            .unwrap();
    }
    c.put_object()
        .bucket("full")
        .key("after")
        .body(ByteStream::from(data(512 * 1024, 99)))
        .send()
        .await
        .unwrap();
}
