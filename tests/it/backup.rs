//! Backups that restore, end to end on real data directories: a backup taken
//! while PUTs and enqueues keep coming restores every object and job acknowledged
//! before it (running jobs queued again, presigned URLs still valid); a second
//! backup copies only new blobs and retention never breaks a kept snapshot; a
//! corrupted snapshot is refused naming the file; `kill -9` in the middle of a
//! backup leaves the previous snapshot whole and the partial one visible; an S3
//! destination (darkroom's own S3 server) round-trips through the CLI; the
//! schedule shows in status, `/metrics` and the `DarkroomBackupStale` alert.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use darkroom::backup::{BackupError, BackupReport, Dest, Inventory};
use darkroom::config::Config;
use darkroom::queue::{JobStatus, NewJob};
use darkroom::service::BackupRequest;
use serde_json::{Value, json};

use crate::support::{
    ACCESS_KEY, SECRET_KEY, TestServer, body_bytes, bounded, daemon_on, data, server, server_with,
    test_config,
};

/// Runs the CLI without blocking the runtime (the daemons it talks to run on it).
async fn darkroom(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(args)
        .envs(env.iter().copied())
        .env("DARKROOM_LOG__LEVEL", "warn")
        .output()
        .await
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

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    body_bytes(s3.get_object().bucket(bucket).key(key).send().await.unwrap()).await
}

/// Takes a backup through the daemon's service layer.
async fn backup_to(svc: &darkroom::service::Services, dest: &Path, keep: Option<usize>) -> BackupReport {
    svc.backup(&BackupRequest {
        dest: Some(path(dest).to_owned()),
        keep,
    })
    .await
    .unwrap()
}

/// Files under `dir` (recursively), skipping partial ones.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if !p.to_string_lossy().ends_with(".partial") {
            out.push(p);
        }
    }
    out
}

/// An object the server acknowledged: its key and bytes.
type Acked = (String, Vec<u8>);

#[tokio::test]
async fn a_backup_under_load_restores_everything_acknowledged_before_it() {
    // Generated S3 credentials (kept in the data directory), as on a real box.
    let s = server_with(|c| {
        c.s3.access_key.clear();
        c.s3.secret_key.clear();
    })
    .await;
    let data_dir = s.dir.path().join("data");
    let creds: toml::Value =
        toml::from_str(&std::fs::read_to_string(data_dir.join("credentials.toml")).unwrap()).unwrap();
    let (access, secret) = (
        creds["access_key"].as_str().unwrap(),
        creds["secret_key"].as_str().unwrap(),
    );
    let s3 = crate::support::client(&s.endpoint, access, secret);
    s3.create_bucket().bucket("outputs").send().await.unwrap();
    let queue = s.daemon.queue().clone();
    // One job is running when the snapshot is taken.
    let running = queue
        .enqueue(NewJob::new("render", json!({"n": "running"})))
        .await
        .unwrap()
        .job
        .id;
    let claimed = queue.claim("render", "worker-1").await.unwrap().unwrap();
    assert_eq!(claimed.job.id, running);

    // Load: PUTs (inline-sized and blob-sized) and enqueues, each recorded once acked.
    let acked_objects: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let acked_jobs: Arc<Mutex<Vec<ulid::Ulid>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    // Each ack wakes the test, which starts the backup once enough have come.
    let acked = Arc::new(tokio::sync::Notify::new());
    let mut load = tokio::task::JoinSet::new();
    for writer in 0..2u64 {
        let (s3, acked, stop, woken) = (s3.clone(), acked_objects.clone(), stop.clone(), acked.clone());
        load.spawn(async move {
            let mut i = 0u64;
            while !stop.is_cancelled() {
                let size = if i.is_multiple_of(2) { 1_000 } else { 150_000 };
                let key = format!("w{writer}/{i}.png");
                let body = data(size, writer * 1_000_000 + i);
                put(&s3, "outputs", &key, body.clone()).await;
                acked.lock().unwrap().push((key, body));
                woken.notify_one();
                i += 1;
            }
        });
    }
    {
        let (queue, acked, stop, woken) = (queue.clone(), acked_jobs.clone(), stop.clone(), acked.clone());
        load.spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                let job = queue
                    .enqueue(NewJob::new("render", json!({ "n": i })))
                    .await
                    .unwrap();
                acked.lock().unwrap().push(job.job.id);
                woken.notify_one();
                i += 1;
            }
        });
    }
    bounded("the load to get going", async {
        while acked_objects.lock().unwrap().len() < 20 || acked_jobs.lock().unwrap().len() < 20 {
            acked.notified().await;
        }
    })
    .await;
    let presigned_key = acked_objects.lock().unwrap()[1].0.clone();
    let url = s
        .daemon
        .presigner()
        .unwrap()
        .get_url(
            "outputs",
            &presigned_key,
            std::time::Duration::from_secs(3600),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let before_objects = acked_objects.lock().unwrap().clone();
    let before_jobs = acked_jobs.lock().unwrap().clone();
    let dest = s.dir.path().join("backups");
    let report = backup_to(&s.daemon.services(), &dest, None).await;
    stop.cancel();
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    let after = acked_objects.lock().unwrap().len();
    assert!(after > before_objects.len(), "the load went on during the backup");
    assert_eq!(
        report.blobs, report.blobs_copied,
        "a first backup copies every blob"
    );
    // Every blob-sized object acknowledged before the backup has its blob in it
    // (how many that is depends on how the two writers interleaved).
    let blob_sized = before_objects.iter().filter(|(_, b)| b.len() > 32 * 1024).count() as u64;
    assert!(
        blob_sized > 0 && report.blobs >= blob_sized,
        "{blob_sized} blob-sized objects: {report:?}"
    );
    let TestServer { daemon, dir, .. } = s;
    daemon.shutdown().await;

    // Restore through the CLI into a fresh directory.
    let restored = dir.path().join("restored");
    let (code, out) = darkroom(&["restore", path(&dest), "--data", path(&restored)], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("every SHA-256 checked") && out.contains("1 running jobs queued again"),
        "{out}"
    );
    let (code, out) = darkroom(&["verify", "--data", path(&restored)], &[]).await;
    assert_eq!(code, 0, "the restored directory is clean: {out}");

    let mut config = test_config(&dir);
    config.data_dir = restored;
    config.s3.access_key.clear();
    config.s3.secret_key.clear();
    let (daemon, _) = daemon_on(&config).await;
    let s3 = crate::support::client(&format!("http://{}", daemon.s3_addr().unwrap()), access, secret);
    for (key, body) in &before_objects {
        assert_eq!(
            &get(&s3, "outputs", key).await,
            body,
            "{key} reads back byte-identical"
        );
    }
    for id in &before_jobs {
        assert!(
            daemon.queue().get(*id).await.unwrap().is_some(),
            "job {id} was acknowledged before the backup"
        );
    }
    let job = daemon.queue().get(running).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Queued,
        "a job running at snapshot time runs again"
    );
    // The URL presigned before the backup still verifies (same credentials): sent
    // to the restored daemon with the Host it was signed for.
    let signed = reqwest::Url::parse(&url).unwrap();
    let host = format!("{}:{}", signed.host_str().unwrap(), signed.port().unwrap());
    let target = format!(
        "http://{}{}?{}",
        daemon.s3_addr().unwrap(),
        signed.path(),
        signed.query().unwrap()
    );
    let resp = reqwest::Client::new()
        .get(&target)
        .header("host", host)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let expected = &before_objects
        .iter()
        .find(|(k, _)| *k == presigned_key)
        .unwrap()
        .1;
    assert_eq!(&resp.bytes().await.unwrap().to_vec(), expected);
    daemon.shutdown().await;
}

#[tokio::test]
async fn incremental_backups_copy_only_new_blobs_and_retention_keeps_what_kept_snapshots_need() {
    let s = server().await;
    s.client.create_bucket().bucket("bits").send().await.unwrap();
    let big = |n: u64| data(100_000, n);
    for n in 0..3 {
        put(&s.client, "bits", &format!("big{n}"), big(n)).await;
    }
    put(&s.client, "bits", "small", b"inline".to_vec()).await;
    let dest = s.dir.path().join("backups");
    let svc = s.daemon.services();
    let backup = |keep: usize| backup_to(&svc, &dest, Some(keep));
    let first = backup(2).await;
    assert_eq!((first.blobs, first.blobs_copied), (3, 3));
    assert_eq!(first.files, 3, "queue, cache and objects databases: {first:?}");

    for n in 3..5 {
        put(&s.client, "bits", &format!("big{n}"), big(n)).await;
    }
    let second = backup(2).await;
    assert_eq!(
        (second.blobs, second.blobs_copied),
        (5, 2),
        "only the new blobs are copied"
    );
    assert!(second.bytes_copied < second.bytes);

    // big0 goes; the snapshots that hold it keep its blob until they are pruned.
    s.client
        .delete_object()
        .bucket("bits")
        .key("big0")
        .send()
        .await
        .unwrap();
    put(&s.client, "bits", "big5", big(5)).await;
    let third = backup(2).await;
    assert_eq!(third.pruned, vec![first.id.clone()]);
    assert_eq!(
        files_under(&dest.join("blobs")).len(),
        6,
        "big0's blob is still needed by the second snapshot"
    );
    let fourth = backup(2).await;
    assert_eq!(fourth.pruned, vec![second.id.clone()]);
    assert_eq!(
        files_under(&dest.join("blobs")).len(),
        5,
        "nothing kept needs big0's blob any more"
    );
    let inventory = Inventory::read(&Dest::Local(dest.clone())).await.unwrap();
    let kept: Vec<&str> = inventory.complete.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(kept, [third.id.as_str(), fourth.id.as_str()]);

    // Both kept snapshots restore, each as it was.
    let clock = darkroom::clock::system();
    for snapshot in [&third.id, &fourth.id] {
        let target = s.dir.path().join(format!("restore-{snapshot}"));
        darkroom::backup::restore(
            &Dest::Local(dest.clone()),
            &target,
            Some(snapshot),
            false,
            clock.clone(),
        )
        .await
        .unwrap();
        let (code, out) = darkroom(&["verify", "--data", path(&target)], &[]).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("6 objects"), "big1..big5 and small: {out}");
    }

    // A corrupted snapshot is refused, naming the file; the target stays empty.
    let victim = files_under(&dest.join("blobs")).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let target = s.dir.path().join("refused");
    let err = darkroom::backup::restore(&Dest::Local(dest.clone()), &target, None, false, clock.clone())
        .await
        .unwrap_err();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    match &err {
        BackupError::Corrupt { file, why, .. } => {
            assert!(file.ends_with(&name), "{err}");
            assert!(why.contains("SHA-256"), "{err}");
        }
        other => panic!("expected a corrupt snapshot, got {other}"),
    }
    assert!(files_under(&target).is_empty(), "nothing is left in the target");
    std::fs::remove_file(&victim).unwrap();
    let err = darkroom::backup::restore(&Dest::Local(dest.clone()), &target, None, false, clock.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&name) && err.to_string().contains("missing"),
        "{err}"
    );

    // A target with data in it needs --force.
    let err = darkroom::backup::restore(&Dest::Local(dest), &s.dir.path().join("data"), None, false, clock)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    s.daemon.shutdown().await;
}

/// Puts `count` objects of 1 MiB named `{prefix}{n}` through a daemon on `config`.
async fn fill(config: &Config, prefix: &str, count: u64) {
    let (daemon, s3) = daemon_on(config).await;
    let _ = s3.create_bucket().bucket("big").send().await;
    for n in 0..count {
        put(&s3, "big", &format!("{prefix}{n}"), data(1 << 20, n + 7)).await;
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn kill_9_during_a_backup_leaves_the_previous_snapshot_whole_and_the_partial_one_visible() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let data_dir = config.data_dir.clone();
    let dest = dir.path().join("backups");
    fill(&config, "first", 8).await;
    let (code, out) = darkroom(&["backup", path(&dest), "--data", path(&data_dir)], &[]).await;
    assert_eq!(code, 0, "{out}");
    let blobs_before = files_under(&dest.join("blobs")).len();
    assert_eq!(blobs_before, 8);
    fill(&config, "second", 160).await;

    // The second backup is killed once it has begun copying blobs.
    let mut child = Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(["backup", path(&dest), "--data", path(&data_dir)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    bounded("the second backup to start copying blobs", async {
        // Another process's files: nothing to subscribe to, so look every ms (the
        // copy of 160 MiB takes far longer).
        while files_under(&dest.join("blobs")).len() == blobs_before {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed before it finished");

    let (code, out) = darkroom(&["backup", path(&dest), "--list", "--json"], &[]).await;
    assert_eq!(code, 0, "{out}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let states: Vec<bool> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["complete"].as_bool().unwrap())
        .collect();
    assert_eq!(
        states,
        [true, false],
        "the first snapshot complete, the killed one partial: {out}"
    );
    let (_, text) = darkroom(&["backup", path(&dest), "--list"], &[]).await;
    assert!(text.contains("PARTIAL"), "{text}");

    // The previous snapshot restores whole (the killed one is never picked).
    let restored = dir.path().join("restored");
    let (code, out) = darkroom(&["restore", path(&dest), "--data", path(&restored)], &[]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = darkroom(&["verify", "--data", path(&restored)], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("8 objects"), "{out}");
    // The source is untouched by the kill, and the next backup completes and
    // prunes the partial one.
    let (code, out) = darkroom(&["verify", "--data", path(&data_dir)], &[]).await;
    assert_eq!(code, 0, "{out}");
    let partial = list[1]["id"].as_str().unwrap().to_owned();
    let (code, out) = darkroom(&["backup", path(&dest), "--data", path(&data_dir), "--json"], &[]).await;
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["pruned"], json!([partial]));
    assert_eq!(report["blobs"], 168);
    assert!(!data_dir.join(".backup-staging").exists());
}

#[tokio::test]
async fn an_s3_destination_round_trips_through_the_cli() {
    // The destination: another darkroom's S3 server.
    let target = server().await;
    target
        .client
        .create_bucket()
        .bucket("backups")
        .send()
        .await
        .unwrap();
    // The destination's endpoint and keys are the daemon's `[backup.s3]`; no
    // `backup.dest`, so nothing is scheduled and the CLI's backups run alone.
    let source = server_with(|c| {
        c.backup.s3.endpoint = target.endpoint.clone();
        c.backup.s3.access_key = ACCESS_KEY.into();
        c.backup.s3.secret_key = SECRET_KEY.into();
    })
    .await;
    source.client.create_bucket().bucket("art").send().await.unwrap();
    let bodies: Vec<(String, Vec<u8>)> = (0..4)
        .map(|n| (format!("img{n}.png"), data(60_000 + n as usize, n)))
        .collect();
    for (key, body) in &bodies {
        put(&source.client, "art", key, body.clone()).await;
    }
    let api = format!("http://{}", source.daemon.api_addr());
    // Through the daemon.
    let (code, out) = darkroom(&["backup", "s3://backups/box1", "--url", &api, "--json"], &[]).await;
    assert_eq!(code, 0, "{out}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (first["blobs"].as_u64(), first["blobs_copied"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(first["dest"], "s3://backups/box1");
    let (code, out) = darkroom(&["backup", "s3://backups/box1", "--url", &api, "--json"], &[]).await;
    assert_eq!(code, 0, "{out}");
    let second: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(second["blobs_copied"], 0, "nothing new to copy: {out}");
    let keys: Vec<String> = target
        .client
        .list_objects_v2()
        .bucket("backups")
        .prefix("box1/snapshots/")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert!(keys.iter().any(|k| k.ends_with("/manifest.json")), "{keys:?}");

    // Restore from S3 with awscli's variables, into a new directory.
    let restored = source.dir.path().join("restored");
    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let (code, out) = darkroom(
        &[
            "restore",
            "s3://backups/box1",
            "--data",
            path(&restored),
            "--s3-endpoint",
            &target.endpoint,
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let mut config = test_config(&source.dir);
    config.data_dir = restored;
    let (daemon, s3) = daemon_on(&config).await;
    for (key, body) in &bodies {
        assert_eq!(&get(&s3, "art", key).await, body);
    }
    daemon.shutdown().await;
    // A wrong key is refused by the destination, and the message names it.
    let (code, out) = darkroom(
        &[
            "backup",
            "s3://backups/box1",
            "--list",
            "--s3-endpoint",
            &target.endpoint,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "nobody"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(out.contains("s3://backups/box1"), "{out}");
    source.daemon.shutdown().await;
    target.daemon.shutdown().await;
}

#[tokio::test]
async fn scheduled_backups_show_in_status_metrics_and_the_stale_alert() {
    let dest = tempfile::tempdir().unwrap();
    let good = server_with(|c| {
        c.backup.dest = path(dest.path()).to_owned();
        c.backup.interval = "1s".into();
        c.backup.keep = 2;
    })
    .await;
    let svc = good.daemon.services();
    let mut backups = svc.backups.as_ref().unwrap().subscribe();
    bounded("a scheduled backup", backups.wait_for(|s| s.last.is_some()))
        .await
        .unwrap();
    let status = svc.status().await.unwrap().backup.unwrap();
    assert_eq!(status.interval_seconds, Some(1));
    assert!(
        status.state.last_success_ms.is_some() && status.state.last_error.is_none(),
        "{status:?}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", good.daemon.api_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "darkroom_backup_last_success_timestamp_seconds ",
        "darkroom_backup_duration_seconds ",
        "darkroom_backup_bytes ",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    let interval = metrics
        .lines()
        .find_map(|l| l.strip_prefix("darkroom_backup_interval_seconds "))
        .map(|v| v.parse::<f64>().unwrap());
    assert_eq!(interval, Some(1.0));
    let api: Value = reqwest::get(format!("http://{}/api/v1/backups", good.daemon.api_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["dest"], path(dest.path()));
    good.daemon.shutdown().await;

    // A destination that never answers: the failure is in the status and the
    // stale alert fires once two intervals pass without a good backup.
    let bad = server_with(|c| {
        c.backup.dest = "s3://nowhere/box".into();
        c.backup.s3.endpoint = "http://127.0.0.1:9".into();
        c.backup.interval = "1s".into();
        c.alerts.evaluate_interval_ms = 50;
    })
    .await;
    let svc = bad.daemon.services();
    let mut backups = svc.backups.as_ref().unwrap().subscribe();
    let mut alerts = svc.alerts.as_ref().unwrap().subscribe();
    let alert = bounded("the DarkroomBackupStale alert", async {
        loop {
            let status = svc.status().await.unwrap();
            let failed = status
                .backup
                .as_ref()
                .is_some_and(|b| b.state.last_error.is_some());
            if let Some(a) = status.alerts.iter().find(|a| a.name == "DarkroomBackupStale")
                && failed
            {
                return (a.clone(), status.backup.unwrap());
            }
            // Look again when a backup ends or an alert changes.
            tokio::select! {
                _ = backups.changed() => {}
                _ = alerts.recv() => {}
            }
        }
    })
    .await;
    assert!(alert.0.summary.contains("no good backup"), "{:?}", alert.0);
    let error = alert.1.state.last_error.unwrap_or_default();
    assert!(error.contains("s3://nowhere/box"), "{error}");
    bad.daemon.shutdown().await;
}

#[tokio::test]
async fn with_the_queue_and_cache_on_redis_the_backup_holds_the_object_store() {
    let s = server_with(|c| {
        c.redis = crate::redis_server::RedisServer::shared().settings();
        c.queue.backend = darkroom::redis_store::Backend::Redis;
        c.cache.backend = darkroom::redis_store::Backend::Redis;
    })
    .await;
    s.client.create_bucket().bucket("kept").send().await.unwrap();
    put(&s.client, "kept", "a.png", data(70_000, 9)).await;
    let dest = s.dir.path().join("backups");
    let report = backup_to(&s.daemon.services(), &dest, None).await;
    let manifest = &Inventory::read(&Dest::Local(dest)).await.unwrap().complete[0];
    let files: Vec<&str> = manifest
        .files
        .iter()
        .map(|f| f.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        files,
        ["objects.redb"],
        "Redis backs up the queue and cache itself"
    );
    assert_eq!(report.blobs, 1);
    s.daemon.shutdown().await;
}
