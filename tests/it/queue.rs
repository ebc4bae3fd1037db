//! Job queue: states and transitions, priority and FIFO order, delays, retries with
//! backoff and the dead-letter set. Time moves on a manual clock; nothing sleeps.

use std::str::FromStr;
use std::time::Duration;

use darkroom::queue::{FailureKind, JobStatus, NewJob, QueueConfig, QueueError};
use serde_json::json;

use crate::queue_support::{Kind, TestQueue, name_of, on_both_backends};

#[test]
fn status_has_serde_display_and_fromstr_listing_valid_values() {
    for status in JobStatus::ALL {
        let text = status.to_string();
        assert_eq!(JobStatus::from_str(&text).unwrap(), status);
        assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{text}\""));
    }
    let err = JobStatus::from_str("done").unwrap_err().to_string();
    for valid in [
        "queued",
        "scheduled",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ] {
        assert!(err.contains(valid), "{err}");
    }
}

async fn enqueue_stores_the_job_durably_with_its_payload(kind: Kind) {
    let t = TestQueue::new(kind);
    let payload = json!({ "prompt": { "3": { "class_type": "KSampler", "inputs": { "seed": 7 } } } });
    let enqueued = t
        .queue
        .enqueue(NewJob::new("gen", payload.clone()).priority(2))
        .await
        .unwrap();
    assert!(enqueued.created);
    let job = enqueued.job;
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!((job.attempts, job.max_attempts, job.timeout_ms), (0, 3, 600_000));
    assert_eq!(job.created_ms, t.now());

    let (reopened, _copy_dir) = t.reopened();
    let stored = reopened.get(job.id).await.unwrap().unwrap();
    assert_eq!(stored.payload, payload);
    assert_eq!(stored.priority, 2);
    assert_eq!(reopened.counts().await.unwrap().queued, 1);
}

async fn higher_priority_first_then_fifo_within_a_priority(kind: Kind) {
    let t = TestQueue::new(kind);
    for (name, priority) in [
        ("low-1", -1),
        ("mid-1", 0),
        ("high-1", 5),
        ("mid-2", 0),
        ("high-2", 5),
        ("low-2", -1),
    ] {
        t.queue
            .enqueue(NewJob::new("gen", json!({ "name": name })).priority(priority))
            .await
            .unwrap();
    }
    let mut order = Vec::new();
    while let Some(claimed) = t.claim("gen").await {
        order.push(name_of(&claimed));
    }
    assert_eq!(order, ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]);
}

async fn claim_batch_takes_the_best_n_of_one_queue_only(kind: Kind) {
    let t = TestQueue::new(kind);
    for i in 0..5 {
        t.put("gen", &format!("g{i}")).await;
    }
    t.put("other", "o0").await;
    let batch = t.queue.claim_batch("gen", "w", 3).await.unwrap();
    let names: Vec<_> = batch.iter().map(name_of).collect();
    assert_eq!(names, ["g0", "g1", "g2"]);
    assert!(
        batch
            .iter()
            .all(|c| c.job.status == JobStatus::Running && c.lease.attempt == 1)
    );
    assert_eq!(t.queue.claim_batch("gen", "w", 10).await.unwrap().len(), 2);
    assert!(t.claim("gen").await.is_none());
    assert_eq!(name_of(&t.claim("other").await.unwrap()), "o0");
}

async fn complete_succeeds_once_and_the_job_is_never_claimed_again(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    let claimed = t.claim("gen").await.unwrap();
    assert_eq!(claimed.job.started_ms, Some(t.now()));
    t.advance(Duration::from_secs(3));
    let job = t
        .queue
        .complete(&claimed.lease, json!({ "images": ["a.png"] }))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.finished_ms, Some(t.now()));
    assert_eq!(job.result, Some(json!({ "images": ["a.png"] })));

    let again = t.queue.complete(&claimed.lease, json!(null)).await.unwrap_err();
    assert!(
        matches!(
            again,
            QueueError::InvalidTransition {
                status: JobStatus::Succeeded,
                ..
            }
        ),
        "{again}"
    );
    let fail = t.queue.fail(&claimed.lease, "late").await.unwrap_err();
    assert!(matches!(fail, QueueError::InvalidTransition { .. }), "{fail}");
    assert!(t.claim("gen").await.is_none());
    assert_eq!(t.queue.reap_expired(t.now() + 86_400_000).await.unwrap(), 0);
    assert!(t.claim("gen").await.is_none());
    assert_eq!(
        t.queue.get(id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
}

async fn failures_back_off_exponentially_with_jitter(kind: Kind) {
    let t = TestQueue::with_config(kind, QueueConfig::default());
    let backoff = t.queue.config().backoff;
    let id = t.add(NewJob::new("gen", json!({})).max_attempts(5)).await;
    let mut last_delay = 0;
    for attempt in 1..=4 {
        let claimed = t.claim("gen").await.unwrap();
        assert_eq!(claimed.lease.attempt, attempt);
        let job = t
            .queue
            .fail(&claimed.lease, format!("boom {attempt}"))
            .await
            .unwrap();
        assert_eq!(job.status, JobStatus::Scheduled);
        let delay = job.not_before_ms.unwrap() - t.now();
        let (low, high) = backoff.bounds_ms(attempt);
        assert!(
            (low..=high).contains(&delay),
            "attempt {attempt}: {delay} not in {low}..={high}"
        );
        assert!(delay > last_delay, "delays must grow: {last_delay} then {delay}");
        last_delay = delay;

        t.advance(Duration::from_millis(u64::try_from(delay - 1).unwrap()));
        assert!(
            t.claim("gen").await.is_none(),
            "claimable before its backoff ended"
        );
        t.advance(Duration::from_millis(1));
        assert_eq!(t.queue.promote_due(t.now()).await.unwrap(), 1);
        assert_eq!(t.queue.get(id).await.unwrap().unwrap().status, JobStatus::Queued);
    }
}

async fn max_attempts_dead_letters_with_every_error_then_retry_revives(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    for attempt in 1..=3 {
        t.queue.promote_due(t.now() + 3_600_000).await.unwrap();
        let claimed = t.claim("gen").await.unwrap();
        t.queue
            .fail(&claimed.lease, format!("error {attempt}"))
            .await
            .unwrap();
    }
    let job = t.queue.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 3);
    let history: Vec<_> = job
        .errors
        .iter()
        .map(|e| (e.attempt, e.kind, e.message.as_str()))
        .collect();
    assert_eq!(
        history,
        [
            (1, FailureKind::Error, "error 1"),
            (2, FailureKind::Error, "error 2"),
            (3, FailureKind::Error, "error 3")
        ]
    );
    assert!(t.claim("gen").await.is_none());
    assert_eq!(t.queue.counts().await.unwrap().failed, 1);

    let revived = t.queue.retry(id).await.unwrap();
    assert_eq!(
        (revived.status, revived.attempts, revived.errors.len()),
        (JobStatus::Queued, 0, 3)
    );
    assert_eq!(t.claim("gen").await.unwrap().job.id, id);
    let err = t.queue.retry(id).await.unwrap_err();
    assert!(matches!(
        err,
        QueueError::InvalidTransition {
            status: JobStatus::Running,
            ..
        }
    ));
}

async fn fail_permanently_skips_the_remaining_attempts(kind: Kind) {
    let t = TestQueue::new(kind);
    t.put("gen", "a").await;
    let claimed = t.claim("gen").await.unwrap();
    let job = t
        .queue
        .fail_permanently(&claimed.lease, "invalid workflow")
        .await
        .unwrap();
    assert_eq!(
        (job.status, job.attempts, job.errors.len()),
        (JobStatus::Failed, 1, 1)
    );
}

async fn delayed_job_waits_for_its_time(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t
        .add(NewJob::new("gen", json!({})).delay(Duration::from_secs(5)))
        .await;
    assert_eq!(
        t.queue.get(id).await.unwrap().unwrap().status,
        JobStatus::Scheduled
    );
    t.advance(Duration::from_millis(4_999));
    assert!(t.claim("gen").await.is_none());
    t.advance(Duration::from_millis(1));
    let claimed = t.claim("gen").await.unwrap();
    assert_eq!(claimed.job.id, id);
    let at = t.now() + 60_000;
    let later = t
        .queue
        .enqueue(NewJob::new("gen", json!({})).not_before(at))
        .await
        .unwrap()
        .job;
    assert_eq!(
        (later.status, later.not_before_ms),
        (JobStatus::Scheduled, Some(at))
    );
}

on_both_backends!(
    enqueue_stores_the_job_durably_with_its_payload,
    higher_priority_first_then_fifo_within_a_priority,
    claim_batch_takes_the_best_n_of_one_queue_only,
    complete_succeeds_once_and_the_job_is_never_claimed_again,
    failures_back_off_exponentially_with_jitter,
    max_attempts_dead_letters_with_every_error_then_retry_revives,
    fail_permanently_skips_the_remaining_attempts,
    delayed_job_waits_for_its_time,
);
