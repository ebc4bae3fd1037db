//! Leases, heartbeats, timeouts and the reaper: a killed worker's job comes back, a
//! job past its timeout really stops, and a stale worker can never report an outcome.

use std::time::Duration;

use darkroom::queue::{Directive, FailureKind, JobStatus, NewJob, QueueConfig, QueueError, StopReason};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::queue_support::{Kind, TestQueue, on_both_backends};

async fn expired_lease_returns_the_job_with_its_attempt_counted(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    let first = t.claim("gen").await.unwrap();
    let lease = t.queue.config().lease;

    t.advance(lease.saturating_sub(Duration::from_millis(1)));
    assert_eq!(t.queue.reap_expired(t.now()).await.unwrap(), 0);
    assert!(t.claim("gen").await.is_none());
    t.advance(Duration::from_millis(1));
    assert_eq!(t.queue.reap_expired(t.now()).await.unwrap(), 1);

    let job = t.queue.get(id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Queued, 1));
    assert_eq!(job.errors[0].kind, FailureKind::LeaseExpired);
    assert!(job.lease_owner.is_none());

    let second = t.queue.claim("gen", "worker-2").await.unwrap().unwrap();
    assert_eq!((second.job.id, second.lease.attempt), (id, 2));
    let stale = t.queue.complete(&first.lease, json!("late")).await.unwrap_err();
    assert!(
        matches!(stale, QueueError::LeaseLost { attempt: 1, .. }),
        "{stale}"
    );
    assert_eq!(
        t.queue.heartbeat(&first.lease).await.unwrap(),
        Directive::Stop(StopReason::LeaseLost)
    );
    t.queue.complete(&second.lease, json!("ok")).await.unwrap();
}

async fn expired_lease_on_the_last_attempt_dead_letters(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.add(NewJob::new("gen", json!({})).max_attempts(1)).await;
    t.claim("gen").await.unwrap();
    t.advance(t.queue.config().lease);
    t.queue.reap_expired(t.now()).await.unwrap();
    let job = t.queue.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.errors.len(), 1);
}

async fn a_lease_lost_before_a_retry_cannot_report_on_the_new_attempt(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.add(NewJob::new("gen", json!({})).max_attempts(1)).await;
    let stale = t.claim("gen").await.unwrap();
    t.advance(t.queue.config().lease);
    t.queue.reap_expired(t.now()).await.unwrap();
    t.queue.retry(id).await.unwrap();
    // The same worker takes it again: same job, same worker, attempt 1 again.
    let fresh = t.claim("gen").await.unwrap();
    assert_eq!(
        (&fresh.lease.worker, fresh.lease.attempt),
        (&stale.lease.worker, stale.lease.attempt)
    );
    let refused = t.queue.complete(&stale.lease, json!("late")).await.unwrap_err();
    assert!(matches!(refused, QueueError::LeaseLost { .. }), "{refused}");
    assert_eq!(
        t.queue.heartbeat(&stale.lease).await.unwrap(),
        Directive::Stop(StopReason::LeaseLost)
    );
    let done = t.queue.complete(&fresh.lease, json!("ok")).await.unwrap();
    assert_eq!((done.status, done.claims), (JobStatus::Succeeded, 2));
}

async fn heartbeat_extends_the_lease(kind: Kind) {
    let t = TestQueue::new(kind);
    t.put("gen", "a").await;
    let claimed = t.claim("gen").await.unwrap();
    t.advance(Duration::from_secs(20));
    let Directive::Continue { lease_until_ms } = t.queue.heartbeat(&claimed.lease).await.unwrap() else {
        panic!("told to stop");
    };
    assert_eq!(lease_until_ms, t.now() + 30_000);
    t.advance(Duration::from_secs(29));
    assert_eq!(t.queue.reap_expired(t.now()).await.unwrap(), 0);
    t.advance(Duration::from_secs(1));
    assert_eq!(t.queue.reap_expired(t.now()).await.unwrap(), 1);
}

async fn a_job_past_its_timeout_is_stopped_even_while_heartbeating(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t
        .add(NewJob::new("gen", json!({})).timeout(Duration::from_mins(1)))
        .await;
    let claimed = t.claim("gen").await.unwrap();
    for _ in 0..2 {
        t.advance(Duration::from_secs(25));
        let directive = t.queue.progress(&claimed.lease, 0.3, None).await.unwrap();
        assert!(matches!(directive, Directive::Continue { .. }));
    }
    let job = t.queue.get(id).await.unwrap().unwrap();
    assert_eq!(
        job.lease_until_ms,
        Some(t.now() - 50_000 + 60_000),
        "the lease never reaches past the timeout"
    );

    t.advance(Duration::from_secs(10));
    let directive = t.queue.heartbeat(&claimed.lease).await.unwrap();
    assert_eq!(directive, Directive::Stop(StopReason::TimedOut));
    let job = t.queue.get(id).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Scheduled,
        "timed out attempts are retried after a backoff"
    );
    assert_eq!(job.errors[0].kind, FailureKind::TimedOut);
    let late = t
        .queue
        .complete(&claimed.lease, json!("too late"))
        .await
        .unwrap_err();
    assert!(matches!(late, QueueError::LeaseLost { .. }), "{late}");
    assert_eq!(
        t.queue.heartbeat(&claimed.lease).await.unwrap(),
        Directive::Stop(StopReason::TimedOut)
    );
}

async fn the_reaper_fails_a_timed_out_job_on_its_last_attempt(kind: Kind) {
    let config = QueueConfig {
        lease: Duration::from_mins(10),
        ..QueueConfig::default()
    };
    let t = TestQueue::with_config(kind, config);
    let id = t
        .add(
            NewJob::new("gen", json!({}))
                .timeout(Duration::from_secs(90))
                .max_attempts(1),
        )
        .await;
    t.claim("gen").await.unwrap();
    t.advance(Duration::from_secs(89));
    assert_eq!(t.queue.reap_expired(t.now()).await.unwrap(), 0);
    t.advance(Duration::from_secs(1));
    assert_eq!(t.queue.reap_expired(t.now()).await.unwrap(), 1);
    let job = t.queue.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.errors[0].kind, FailureKind::TimedOut);
}

async fn the_background_reaper_returns_an_abandoned_job(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    t.claim("gen").await.unwrap();
    let mut events = t.queue.subscribe();
    let shutdown = CancellationToken::new();
    let reaper = t.queue.spawn_reaper(Duration::from_millis(5), shutdown.clone());
    t.advance(t.queue.config().lease);

    let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.id, event.from, event.to),
        (id, Some(JobStatus::Running), JobStatus::Queued)
    );
    shutdown.cancel();
    reaper.await.unwrap();
}

async fn claim_wait_wakes_when_a_job_arrives(kind: Kind) {
    let t = TestQueue::new(kind);
    let queue = t.queue.clone();
    let waiter = tokio::spawn(async move { queue.claim_wait("gen", "w", 4, Duration::from_secs(30)).await });
    tokio::task::yield_now().await;
    let id = t.put("gen", "a").await;
    let claimed = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.id, id);
}

on_both_backends!(
    expired_lease_returns_the_job_with_its_attempt_counted,
    expired_lease_on_the_last_attempt_dead_letters,
    a_lease_lost_before_a_retry_cannot_report_on_the_new_attempt,
    heartbeat_extends_the_lease,
    a_job_past_its_timeout_is_stopped_even_while_heartbeating,
    the_reaper_fails_a_timed_out_job_on_its_last_attempt,
    the_background_reaper_returns_an_abandoned_job,
    claim_wait_wakes_when_a_job_arrives,
);
