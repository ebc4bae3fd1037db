//! The daemon as a whole: it opens the object store, the job queue and the caches
//! under one data directory and keeps what was acknowledged across a restart.

use darkroom::daemon::Daemon;
use darkroom::queue::{JobStatus, NewJob};

use crate::support::test_config;

#[tokio::test]
async fn queue_and_caches_live_in_the_data_dir_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let daemon = Daemon::start(&config, darkroom::clock::system()).await.unwrap();
    let job = daemon
        .queue()
        .enqueue(NewJob::new("comfyui", serde_json::json!({"template": "noop"})))
        .await
        .unwrap()
        .job;
    daemon.kv_cache().set("session", b"abc", None).await.unwrap();
    daemon.shutdown().await;
    for f in ["objects.redb", "queue.redb", "cache.redb"] {
        assert!(config.data_dir.join(f).is_file(), "{f} missing");
    }

    let daemon = Daemon::start(&config, darkroom::clock::system()).await.unwrap();
    let again = daemon
        .queue()
        .get(job.id)
        .await
        .unwrap()
        .expect("job lost across restart");
    assert_eq!(again.status, JobStatus::Queued);
    assert_eq!(again.payload["template"], "noop");
    assert_eq!(
        daemon.kv_cache().get("session").await.unwrap().as_deref(),
        Some(&b"abc"[..])
    );
    daemon.shutdown().await;
}

/// A supervisor may send SIGTERM the moment `darkroom serve` says it is ready:
/// the daemon is already listening for it and stops cleanly (exit 0), every time.
/// (It once printed its ready lines before installing the handler, and a SIGTERM
/// in between killed it.)
#[test]
fn sigterm_right_after_ready_stops_cleanly() {
    use rustix::process::{Pid, Signal, kill_process};
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let mut p = crate::support::spawn_serve(&dir.path().join("data"), |_| {});
        kill_process(Pid::from_child(&p.child), Signal::TERM).unwrap();
        let status = p.child.wait().unwrap();
        assert!(status.success(), "round {round}: {status}");
    }
}
