//! Job queue administration: cancellation, idempotency keys, TTL purge, listing,
//! counts, events, validation and compaction. Time moves on a manual clock; nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use darkroom::queue::{Directive, JobStatus, ListQuery, NewJob, QueueConfig, QueueError, StopReason};
use serde_json::json;

use crate::queue_support::{Kind, TestQueue, disk_copy, on_both_backends};

async fn cancel_waiting_jobs_at_once_and_refuse_finished_ones(kind: Kind) {
    let t = TestQueue::new(kind);
    let queued = t.put("gen", "a").await;
    let scheduled = t
        .add(NewJob::new("gen", json!({})).delay(Duration::from_secs(9)))
        .await;
    for id in [queued, scheduled] {
        let job = t.queue.cancel(id).await.unwrap();
        assert_eq!(
            (job.status, job.finished_ms),
            (JobStatus::Cancelled, Some(t.now()))
        );
    }
    t.advance(Duration::from_secs(10));
    assert!(t.claim("gen").await.is_none());
    let err = t.queue.cancel(queued).await.unwrap_err();
    assert!(matches!(
        err,
        QueueError::InvalidTransition {
            status: JobStatus::Cancelled,
            ..
        }
    ));
    let missing = t.queue.cancel(ulid::Ulid::new()).await.unwrap_err();
    assert!(matches!(missing, QueueError::NotFound(_)));
}

async fn cancel_running_job_tells_the_worker_to_stop(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    let claimed = t.claim("gen").await.unwrap();
    let flagged = t.queue.cancel(id).await.unwrap();
    assert_eq!(
        (flagged.status, flagged.cancel_requested),
        (JobStatus::Running, true)
    );
    let directive = t.queue.heartbeat(&claimed.lease).await.unwrap();
    assert_eq!(directive, Directive::Stop(StopReason::Cancelled));
    let job = t.queue.fail(&claimed.lease, "stopped on request").await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(t.claim("gen").await.is_none());
    assert_eq!(
        t.queue.heartbeat(&claimed.lease).await.unwrap(),
        Directive::Stop(StopReason::Cancelled)
    );
}

async fn cancel_running_job_whose_worker_died_ends_cancelled(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    t.claim("gen").await.unwrap();
    t.queue.cancel(id).await.unwrap();
    t.advance(t.queue.config().lease);
    assert_eq!(t.queue.reap_expired(t.now()).await.unwrap(), 1);
    assert_eq!(
        t.queue.get(id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

async fn idempotency_key_returns_the_existing_job(kind: Kind) {
    let t = TestQueue::new(kind);
    let first = t
        .queue
        .enqueue(NewJob::new("gen", json!({ "n": 1 })).idempotency_key("req-42"))
        .await
        .unwrap();
    let second = t
        .queue
        .enqueue(NewJob::new("gen", json!({ "n": 2 })).idempotency_key("req-42"))
        .await
        .unwrap();
    assert!(first.created && !second.created);
    assert_eq!(second.job.id, first.job.id);
    assert_eq!(second.job.payload, json!({ "n": 1 }));
    assert_eq!(t.queue.counts().await.unwrap().total(), 1);

    let claimed = t.claim("gen").await.unwrap();
    t.queue.complete(&claimed.lease, json!(null)).await.unwrap();
    let third = t
        .queue
        .enqueue(NewJob::new("gen", json!({ "n": 3 })).idempotency_key("req-42"))
        .await
        .unwrap();
    assert!(
        !third.created,
        "a finished job still answers for its key until purged"
    );
    t.advance(Duration::from_hours(24));
    assert_eq!(t.queue.purge_expired(t.now()).await.unwrap(), 1);
    let fourth = t
        .queue
        .enqueue(NewJob::new("gen", json!({ "n": 4 })).idempotency_key("req-42"))
        .await
        .unwrap();
    assert!(fourth.created);
    assert_ne!(fourth.job.id, first.job.id);
}

async fn finished_jobs_are_purged_after_their_ttl(kind: Kind) {
    let t = TestQueue::new(kind);
    let default_ttl = t.put("gen", "a").await;
    let short_ttl = t
        .add(NewJob::new("gen", json!({ "name": "b" })).result_ttl(Duration::from_mins(1)))
        .await;
    let dead = t
        .add(NewJob::new("gen", json!({ "name": "c" })).max_attempts(1))
        .await;
    for claimed in t.queue.claim_batch("gen", "w", 3).await.unwrap() {
        if claimed.job.id == dead {
            t.queue.fail(&claimed.lease, "boom").await.unwrap();
        } else {
            t.queue.complete(&claimed.lease, json!("ok")).await.unwrap();
        }
    }
    let queued = t.put("gen", "waiting").await;

    t.advance(Duration::from_secs(59));
    assert_eq!(t.queue.purge_expired(t.now()).await.unwrap(), 0);
    t.advance(Duration::from_secs(1));
    assert_eq!(t.queue.purge_expired(t.now()).await.unwrap(), 1);
    assert!(t.queue.get(short_ttl).await.unwrap().is_none());

    t.advance(Duration::from_secs(24 * 3600 - 61));
    assert_eq!(t.queue.purge_expired(t.now()).await.unwrap(), 0);
    t.advance(Duration::from_secs(1));
    assert_eq!(t.queue.purge_expired(t.now()).await.unwrap(), 1);
    assert!(t.queue.get(default_ttl).await.unwrap().is_none());
    assert!(
        t.queue.get(dead).await.unwrap().is_some(),
        "dead letters are kept for failed_ttl"
    );

    t.advance(Duration::from_hours(7 * 24));
    assert_eq!(t.queue.purge_expired(t.now()).await.unwrap(), 1);
    assert!(t.queue.get(dead).await.unwrap().is_none());
    assert!(
        t.queue.get(queued).await.unwrap().is_some(),
        "waiting jobs are never purged"
    );
    let counts = t.queue.counts().await.unwrap();
    assert_eq!((counts.total(), counts.queued), (1, 1));
}

/// Pages through one listing, `limit` at a time; returns the ids and the page count.
async fn list_all(t: &TestQueue, mut query: ListQuery) -> (Vec<ulid::Ulid>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = t.queue.list(query.clone()).await.unwrap();
        pages += 1;
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return (seen, pages),
        }
    }
}

async fn list_pages_through_a_status_with_a_cursor(kind: Kind) {
    let t = TestQueue::new(kind);
    let (mut gen_urgent, mut gen_normal, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..25 {
        let (queue, priority) = match i % 5 {
            0 => ("other", 0),
            1 => ("gen", 1),
            _ => ("gen", 0),
        };
        let job = NewJob::new(queue, json!({ "i": i })).priority(priority);
        let id = t.add(job).await;
        match (queue, priority) {
            ("other", _) => other.push(id),
            (_, 1) => gen_urgent.push(id),
            _ => gen_normal.push(id),
        }
    }
    let claim_order: Vec<_> = [gen_urgent.clone(), gen_normal.clone(), other.clone()].concat();
    assert_eq!(
        list_all(&t, ListQuery::new(JobStatus::Queued, 10)).await,
        (claim_order, 3)
    );

    let mut only_gen = ListQuery::new(JobStatus::Queued, 7);
    only_gen.queue = Some("gen".into());
    assert_eq!(
        list_all(&t, only_gen).await,
        ([gen_urgent, gen_normal].concat(), 3)
    );

    let batch = t.queue.claim_batch("other", "w", 5).await.unwrap();
    for (n, claimed) in batch.iter().enumerate() {
        t.advance(Duration::from_secs(1));
        if n < 3 {
            t.queue.complete(&claimed.lease, json!(n)).await.unwrap();
        }
    }
    let (succeeded, pages) = list_all(&t, ListQuery::new(JobStatus::Succeeded, 2)).await;
    assert_eq!(
        (succeeded, pages),
        (other[..3].to_vec(), 2),
        "finished jobs list in finish order"
    );
    let mut running_of_gen = ListQuery::new(JobStatus::Running, 10);
    running_of_gen.queue = Some("gen".into());
    assert!(t.queue.list(running_of_gen).await.unwrap().jobs.is_empty());
    assert_eq!(
        list_all(&t, ListQuery::new(JobStatus::Running, 10)).await.0,
        other[3..].to_vec()
    );

    let mut bad = ListQuery::new(JobStatus::Queued, 10);
    bad.after = Some("nonsense".into());
    assert!(matches!(t.queue.list(bad).await, Err(QueueError::Invalid(_))));
}

async fn counts_follow_every_transition(kind: Kind) {
    let t = TestQueue::new(kind);
    for i in 0..4 {
        t.put("gen", &i.to_string()).await;
    }
    t.queue
        .enqueue(NewJob::new("gen", json!({})).delay(Duration::from_mins(1)))
        .await
        .unwrap();
    let batch = t.queue.claim_batch("gen", "w", 3).await.unwrap();
    t.queue.complete(&batch[0].lease, json!(1)).await.unwrap();
    t.queue.fail(&batch[1].lease, "x").await.unwrap();
    let c = t.queue.counts().await.unwrap();
    assert_eq!(
        (
            c.queued,
            c.scheduled,
            c.running,
            c.succeeded,
            c.failed,
            c.cancelled
        ),
        (1, 2, 1, 1, 0, 0)
    );
}

async fn every_transition_is_broadcast_after_commit(kind: Kind) {
    let t = TestQueue::new(kind);
    let mut events = t.queue.subscribe();
    let id = t.put("gen", "a").await;
    let claimed = t.claim("gen").await.unwrap();
    t.queue
        .progress(&claimed.lease, 0.5, Some("step 10/20".into()))
        .await
        .unwrap();
    t.queue.fail(&claimed.lease, "oom").await.unwrap();
    t.queue.promote_due(t.now() + 3_600_000).await.unwrap();
    let claimed = t.claim("gen").await.unwrap();
    t.queue.complete(&claimed.lease, json!("ok")).await.unwrap();

    // On Redis events arrive through the shared stream, after the commit returned.
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("an event for every transition")
            .unwrap();
        assert_eq!(event.id, id);
        seen.push((event.from, event.to, event.progress.map(|p| p.fraction)));
    }
    tokio::task::yield_now().await;
    assert!(
        events.try_recv().is_err(),
        "no event beyond the seven transitions"
    );
    use JobStatus::{Queued, Running, Scheduled, Succeeded};
    assert_eq!(
        seen,
        [
            (None, Queued, None),
            (Some(Queued), Running, None),
            (Some(Running), Running, Some(0.5)),
            (Some(Running), Scheduled, None),
            (Some(Scheduled), Queued, None),
            (Some(Queued), Running, None),
            (Some(Running), Succeeded, Some(1.0)),
        ]
    );
}

async fn a_succeeded_job_is_at_full_progress(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    let claimed = t.claim("gen").await.unwrap();
    t.queue
        .progress(&claimed.lease, 0.25, Some("node 2 (ImageInvert)".into()))
        .await
        .unwrap();
    let done = t.queue.complete(&claimed.lease, json!("ok")).await.unwrap();
    let stored = t.queue.get(id).await.unwrap().unwrap();
    for job in [done, stored] {
        let progress = job.progress.expect("a succeeded job has progress");
        assert!((progress.fraction - 1.0).abs() < f32::EPSILON, "{progress:?}");
        assert_eq!(progress.message, None);
        assert_eq!(progress.at_ms, t.now());
    }
}

async fn the_backend_running_an_attempt_is_recorded_until_the_next_claim(kind: Kind) {
    let t = TestQueue::new(kind);
    let id = t.put("gen", "a").await;
    let claimed = t.claim("gen").await.unwrap();
    assert_eq!(claimed.job.backend, None);
    let mut events = t.queue.subscribe();
    let directive = t
        .queue
        .running_on(&claimed.lease, "http://gpu-1:8188")
        .await
        .unwrap();
    assert!(matches!(directive, Directive::Continue { .. }), "{directive:?}");
    // (On Redis the claim's own event may still be on its way.)
    let event = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.from == Some(JobStatus::Running) {
                return event;
            }
        }
    })
    .await
    .expect("an event for the running job");
    assert_eq!((event.id, event.to), (id, JobStatus::Running));
    let running = t.queue.get(id).await.unwrap().unwrap();
    assert_eq!(running.backend.as_deref(), Some("http://gpu-1:8188"));
    // Progress does not lose it; a failed attempt keeps where it ran.
    t.queue.progress(&claimed.lease, 0.5, None).await.unwrap();
    let failed = t.queue.fail(&claimed.lease, "oom").await.unwrap();
    assert_eq!(failed.backend.as_deref(), Some("http://gpu-1:8188"));
    // The next attempt starts with none, until its worker says.
    t.queue.promote_due(t.now() + 3_600_000).await.unwrap();
    let again = t.claim("gen").await.unwrap();
    assert_eq!(again.job.backend, None);
    assert_eq!(t.queue.get(id).await.unwrap().unwrap().backend, None);
    // A stale lease cannot set it.
    assert_eq!(
        t.queue
            .running_on(&claimed.lease, "http://gpu-9:8188")
            .await
            .unwrap(),
        Directive::Stop(StopReason::LeaseLost)
    );
    assert_eq!(t.queue.get(id).await.unwrap().unwrap().backend, None);
}

async fn invalid_requests_are_refused(kind: Kind) {
    let t = TestQueue::new(kind);
    for bad in [
        NewJob::new("", json!({})),
        NewJob::new("gen", json!({})).max_attempts(0),
        NewJob::new("gen", json!({})).timeout(Duration::ZERO),
        NewJob::new("gen", json!({})).idempotency_key(""),
    ] {
        assert!(matches!(t.queue.enqueue(bad).await, Err(QueueError::Invalid(_))));
    }
    assert_eq!(t.queue.counts().await.unwrap().total(), 0);
}

#[tokio::test]
async fn reopening_compacts_the_file_after_a_purge() {
    let t = TestQueue::new(Kind::Embedded);
    let body = "x".repeat(4_000);
    for i in 0..400 {
        let job = NewJob::new("gen", json!({ "i": i, "body": body })).result_ttl(Duration::from_secs(1));
        t.queue.enqueue(job).await.unwrap();
    }
    let survivor = t.put("other", "late").await;
    loop {
        let batch = t.queue.claim_batch("gen", "w", 100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for claimed in batch {
            t.queue.complete(&claimed.lease, json!("ok")).await.unwrap();
        }
    }
    t.advance(Duration::from_secs(1));
    assert_eq!(t.queue.purge_expired(t.now()).await.unwrap(), 400);
    let (_dir, copy) = disk_copy(&t.path());
    let before = std::fs::metadata(&copy).unwrap().len();
    let reopened =
        darkroom::queue::Queue::open(&copy, Arc::new(t.clock.clone()), QueueConfig::default()).unwrap();
    let after = std::fs::metadata(&copy).unwrap().len();
    assert!(
        after * 4 < before,
        "compaction at open: {before} -> {after} bytes"
    );
    assert_eq!(reopened.counts().await.unwrap().total(), 1);
    assert!(reopened.get(survivor).await.unwrap().is_some());
}

on_both_backends!(
    cancel_waiting_jobs_at_once_and_refuse_finished_ones,
    cancel_running_job_tells_the_worker_to_stop,
    cancel_running_job_whose_worker_died_ends_cancelled,
    idempotency_key_returns_the_existing_job,
    finished_jobs_are_purged_after_their_ttl,
    list_pages_through_a_status_with_a_cursor,
    counts_follow_every_transition,
    every_transition_is_broadcast_after_commit,
    a_succeeded_job_is_at_full_progress,
    the_backend_running_an_attempt_is_recorded_until_the_next_claim,
    invalid_requests_are_refused,
);
