//! The drop folder end to end: uploads into an `[[inbox]]` prefix (awscli, the
//! SDK with metadata, a sidecar) become exactly one job each on the fake ComfyUI,
//! the results land in the output prefix and the original in `processed/` (or
//! `failed/` with its `.error.json`), nothing written by the inbox is ingested
//! again, and an upload acknowledged right before a SIGKILL of the daemon process
//! still gets its one job after the restart. Waits are on the store's events.

use std::collections::BTreeSet;

use aws_sdk_s3::primitives::ByteStream;
use darkroom::config::Config;
use darkroom::inbox::InboxRule;
use darkroom::object_store::{ListQuery, ObjectStore};
use serde_json::{Value, json};

use crate::dispatch::configure;
use crate::fake_comfy::{FakeComfy, PNG, jpeg};
use crate::support::{ACCESS_KEY, SECRET_KEY, bounded, client, spawn_serve, test_config};

fn rule() -> InboxRule {
    let params = json!({"scale": 2, "filename_prefix": "darkroom/inbox"});
    InboxRule {
        bucket: "inbox".into(),
        prefix: "upscale/".into(),
        template: "upscale".into(),
        params: params.as_object().unwrap().clone(),
        param: "image".into(),
        output_prefix: "upscaled".into(),
        owner: Some("studio".into()),
        dir: None,
    }
}

fn config(dir: &tempfile::TempDir, comfy: &FakeComfy) -> Config {
    let mut c = test_config(dir);
    configure(&mut c, std::slice::from_ref(&comfy.url));
    c.inbox = vec![rule()];
    c
}

/// Every key of `bucket` on `storage`.
async fn keys(storage: &ObjectStore, bucket: &str) -> BTreeSet<String> {
    let q = ListQuery {
        max_keys: 1000,
        ..ListQuery::default()
    };
    let page = storage.list(bucket, q).await.unwrap();
    page.objects.into_iter().map(|(k, _)| k).collect()
}

/// Waits until `done` holds for the keys of `inbox`, rechecking on each write.
async fn wait_keys(
    storage: &ObjectStore,
    what: &str,
    done: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    let mut events = storage.subscribe();
    bounded(what, async {
        loop {
            let now = keys(storage, "inbox").await;
            if done(&now) {
                return now;
            }
            let _ = events.recv().await;
        }
    })
    .await
}

/// Every job the queue holds, with its payload.
async fn jobs(server: &darkroom::daemon::Daemon) -> Vec<darkroom::queue::Job> {
    let page = server
        .services()
        .jobs
        .list(darkroom::service::JobListing::newest(500))
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for j in page.jobs {
        jobs.push(server.queue().get(j.id).await.unwrap().unwrap());
    }
    jobs
}

fn aws_cp(endpoint: &str, file: &std::path::Path, to: &str) {
    let out = crate::s3_clients::aws_at(endpoint, &["s3", "cp", file.to_str().unwrap(), to]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awscli_upload_becomes_one_job_a_result_and_a_processed_original() {
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = config(&dir, &comfy);
    let (daemon, _client) = crate::support::daemon_on(&c).await;
    let endpoint = format!("http://{}", daemon.s3_addr().unwrap());
    let photo = dir.path().join("photo.png");
    std::fs::write(&photo, PNG).unwrap();
    aws_cp(&endpoint, &photo, "s3://inbox/upscale/photo.png");
    let storage = daemon.storage();
    let done = wait_keys(storage, "photo processed", |k| {
        k.contains("upscale/processed/photo.png") && !k.contains("upscale/photo.png")
    })
    .await;
    assert!(done.contains("upscaled/photo-1.png"), "{done:?}");
    assert!(
        !done.contains("upscale/photo.png"),
        "the original moved: {done:?}"
    );

    // A second upload, handled after every write of the first: had any of those
    // been ingested, its job would exist by now.
    let second = dir.path().join("second.jpg");
    std::fs::write(&second, jpeg([0, 90, 200], 8, 8)).unwrap();
    aws_cp(&endpoint, &second, "s3://inbox/upscale/second.jpg");
    wait_keys(storage, "second processed", |k| {
        k.contains("upscale/processed/second.jpg") && !k.contains("upscale/second.jpg")
    })
    .await;
    let all = jobs(&daemon).await;
    assert_eq!(all.len(), 2, "one job per upload, no re-ingest: {all:#?}");
    assert!(all.iter().all(|j| j.owner.as_deref() == Some("studio")));
    assert_eq!(comfy.ctl.prompts_received(), 2);
    let out = keys(storage, "inbox").await;
    assert!(out.contains("upscaled/second-1.png"), "{out:?}");

    let status = daemon.services().inbox().await.unwrap();
    assert_eq!(
        (status[0].pending, status[0].processed, status[0].failed),
        (0, 2, 0)
    );
    // The same through the API (and its document).
    let api = crate::api_support::Api::new(daemon.api_addr(), None).await;
    let listed = api.get("/api/v1/inbox").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json()[0]["processed"], json!(2));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_and_metadata_override_the_rules_parameters_and_bad_pictures_fail() {
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = config(&dir, &comfy);
    let (daemon, s3) = crate::support::daemon_on(&c).await;
    let put = |key: &'static str, body: Vec<u8>| {
        s3.put_object()
            .bucket("inbox")
            .key(key)
            .body(ByteStream::from(body))
    };
    put(
        "upscale/a.json",
        json!({"scale": 3, "method": "bicubic"}).to_string().into_bytes(),
    )
    .send()
    .await
    .unwrap();
    put("upscale/a.png", PNG.to_vec()).send().await.unwrap();
    put("upscale/b.jpg", jpeg([1, 2, 3], 8, 8))
        .metadata("darkroom-scale", "1.5")
        .send()
        .await
        .unwrap();
    put("upscale/c.png", b"not a picture".to_vec())
        .send()
        .await
        .unwrap();
    let storage = daemon.storage();
    let done = wait_keys(storage, "a, b and c handled", |k| {
        let moved = ["upscale/processed/a.png", "upscale/processed/a.json"];
        let moved = moved
            .iter()
            .chain(&["upscale/processed/b.jpg", "upscale/failed/c.png"]);
        let gone = [
            "upscale/a.png",
            "upscale/a.json",
            "upscale/b.jpg",
            "upscale/c.png",
        ];
        moved.into_iter().all(|x| k.contains(*x)) && gone.iter().all(|x| !k.contains(*x))
    })
    .await;
    assert!(
        done.contains("upscale/processed/a.json"),
        "the sidecar moved too: {done:?}"
    );
    assert!(done.contains("upscale/failed/c.png.error.json"), "{done:?}");
    let error = s3
        .get_object()
        .bucket("inbox")
        .key("upscale/failed/c.png.error.json")
        .send()
        .await
        .unwrap();
    let error: Value = serde_json::from_slice(&error.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(error["field"], json!("params.image"), "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("not an image"),
        "{error}"
    );

    let all = jobs(&daemon).await;
    assert_eq!(all.len(), 2, "no job for the refused picture: {all:#?}");
    let scale_of = |source: &str| {
        let j = all
            .iter()
            .find(|j| j.payload["inputs"][0]["source"] == json!(source))
            .unwrap_or_else(|| panic!("no job for {source}"));
        (
            j.payload["params"]["scale"].clone(),
            j.payload["params"]["method"].clone(),
        )
    };
    assert_eq!(scale_of("s3://inbox/upscale/a.png"), (json!(3), json!("bicubic")));
    assert_eq!(
        scale_of("s3://inbox/upscale/b.jpg"),
        (json!(1.5), json!("lanczos"))
    );
    let status = daemon.services().inbox().await.unwrap();
    assert_eq!(
        (status[0].pending, status[0].processed, status[0].failed),
        (0, 2, 1)
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_acknowledged_before_sigkill_gets_exactly_one_job() {
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir, &comfy);
    c.queue.lease_seconds = 1;
    // `darkroom serve` reads ./config.toml from its working directory.
    std::fs::write(dir.path().join("config.toml"), c.to_toml()).unwrap();
    let names: Vec<String> = (0..4).map(|i| format!("p{i}.jpg")).collect();
    for round in 0..2u8 {
        let mut serve = spawn_serve(&c.data_dir, |_| {});
        let s3 = client(&serve.endpoint, ACCESS_KEY, SECRET_KEY);
        for (i, name) in names.iter().enumerate() {
            let picture = jpeg([round * 100, i as u8 * 40, 7], 8, 8);
            s3.put_object()
                .bucket("inbox")
                .key(format!("upscale/{round}-{name}"))
                .body(ByteStream::from(picture))
                .send()
                .await
                .unwrap();
        }
        // Killed as soon as the last upload is acknowledged.
        serve.child.kill().unwrap();
        serve.child.wait().unwrap();
    }
    let (daemon, _) = crate::support::daemon_on(&c).await;
    let expected: Vec<String> = (0..2)
        .flat_map(|r| names.iter().map(move |n| format!("upscale/processed/{r}-{n}")))
        .collect();
    let originals: Vec<String> = (0..2)
        .flat_map(|r| names.iter().map(move |n| format!("upscale/{r}-{n}")))
        .collect();
    let done = wait_keys(daemon.storage(), "every upload processed", |k| {
        expected.iter().all(|x| k.contains(x)) && originals.iter().all(|x| !k.contains(x))
    })
    .await;
    for r in 0..2 {
        for n in &names {
            let out = format!("upscaled/{r}-{}-1.png", n.trim_end_matches(".jpg"));
            assert!(done.contains(&out), "{out}: {done:?}");
        }
    }
    let all = jobs(&daemon).await;
    assert_eq!(all.len(), 8, "exactly one job per upload: {all:#?}");
    let keys: BTreeSet<_> = all.iter().map(|j| j.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 8);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_moves_its_original_to_failed_with_the_error() {
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir, &comfy);
    c.queue.default_max_attempts = 1;
    let (daemon, s3) = crate::support::daemon_on(&c).await;
    comfy.ctl.fail_next("RuntimeError", "the GPU caught fire");
    s3.put_object()
        .bucket("inbox")
        .key("upscale/doomed.png")
        .body(ByteStream::from(PNG.to_vec()))
        .send()
        .await
        .unwrap();
    let done = wait_keys(daemon.storage(), "doomed failed", |k| {
        k.contains("upscale/failed/doomed.png") && !k.contains("upscale/doomed.png")
    })
    .await;
    assert!(!done.iter().any(|k| k.starts_with("upscaled/")), "{done:?}");
    let error = s3
        .get_object()
        .bucket("inbox")
        .key("upscale/failed/doomed.png.error.json")
        .send()
        .await
        .unwrap();
    let error: Value = serde_json::from_slice(&error.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(error["status"], json!("failed"), "{error}");
    assert!(error.to_string().contains("the GPU caught fire"), "{error}");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_dropped_in_the_local_directory_run_like_uploads() {
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir, &comfy);
    let local = dir.path().join("drop");
    std::fs::create_dir_all(&local).unwrap();
    // One file there before the start, one written after.
    std::fs::write(local.join("early.png"), PNG).unwrap();
    c.inbox[0].dir = Some(local.clone());
    let (daemon, _) = crate::support::daemon_on(&c).await;
    let storage = daemon.storage();
    std::fs::write(local.join(".partial"), b"ignored").unwrap();
    std::fs::write(local.join("late.jpg"), jpeg([5, 5, 250], 8, 8)).unwrap();
    let done = wait_keys(storage, "both files processed", |k| {
        k.contains("upscale/processed/early.png") && k.contains("upscale/processed/late.jpg")
    })
    .await;
    assert!(
        done.contains("upscaled/early-1.png") && done.contains("upscaled/late-1.png"),
        "{done:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [".partial"], "taken files are removed, hidden ones left");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_refused_by_a_full_queue_runs_once_a_job_ends() {
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir, &comfy);
    c.api.max_queued = 1;
    let (daemon, s3) = crate::support::daemon_on(&c).await;
    comfy.ctl.hold(true);
    let put = |key: String, rgb: [u8; 3]| {
        s3.put_object()
            .bucket("inbox")
            .key(key)
            .body(ByteStream::from(jpeg(rgb, 8, 8)))
            .send()
    };
    put("upscale/one.jpg".into(), [1, 0, 0]).await.unwrap();
    comfy.ctl.wait_held().await; // one runs
    put("upscale/two.jpg".into(), [2, 0, 0]).await.unwrap();
    put("upscale/three.jpg".into(), [3, 0, 0]).await.unwrap();
    // two is queued, three is refused (api.max_queued = 1): both wait in the prefix.
    // The inbox handles uploads in order: once a bad picture put after them is
    // filed as failed, three has been refused.
    s3.put_object()
        .bucket("inbox")
        .key("upscale/marker.png")
        .body(ByteStream::from_static(b"not a picture"))
        .send()
        .await
        .unwrap();
    let before = wait_keys(daemon.storage(), "the marker failed", |k| {
        k.contains("upscale/failed/marker.png")
    })
    .await;
    assert!(before.contains("upscale/three.jpg"), "{before:?}");
    assert_eq!(jobs(&daemon).await.len(), 2, "three was refused");
    comfy.ctl.hold(false);
    comfy.ctl.release();
    let done = wait_keys(daemon.storage(), "all three processed", |k| {
        ["one", "two", "three"]
            .iter()
            .all(|n| k.contains(&format!("upscale/processed/{n}.jpg")))
    })
    .await;
    assert!(done.contains("upscaled/three-1.png"), "{done:?}");
    assert_eq!(jobs(&daemon).await.len(), 3);
    daemon.shutdown().await;
}
