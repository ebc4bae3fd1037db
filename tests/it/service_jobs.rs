//! The jobs service's rules, called as the dashboard's local mode calls them — no
//! HTTP in between: what is admitted, what is refused and with which field, the
//! wait limit, idempotency, cursors over every status, cancel and retry.
//! The daemon's backend here never answers, so admitted jobs stay queued.

use darkroom::dispatch::{BackendConfig, JobRequest};
use darkroom::queue::JobStatus;
use darkroom::service::{JobListing, ServiceError};
use serde_json::{Value, json};

use crate::support::server_with;

fn noop(params: Value) -> JobRequest {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    JobRequest::template("noop", params)
}

fn field(e: &ServiceError) -> Option<&str> {
    e.field()
}

#[tokio::test]
async fn without_a_backend_nothing_is_admitted() {
    let server = server_with(|_| {}).await;
    let jobs = server.daemon.services().jobs;
    let err = jobs.submit(noop(json!({})), None).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::NoBackend(ref m) if m.contains("--comfyui URL")),
        "{err:?}"
    );
    assert_eq!(server.daemon.queue().counts().await.unwrap().queued, 0);
}

#[tokio::test]
async fn admission_names_what_it_refuses_and_stops_at_max_queued() {
    let server = server_with(|c| {
        // Nothing listens there: admitted jobs wait in the queue.
        c.comfyui.backends = vec![BackendConfig::new("http://127.0.0.1:9")];
        c.api.max_queued = 2;
        c.api.max_wait_seconds = 5;
    })
    .await;
    let jobs = server.daemon.services().jobs;

    let too_long = jobs.submit(noop(json!({})), Some(6)).await.unwrap_err();
    assert_eq!(field(&too_long), Some("wait"), "{too_long:?}");
    assert!(too_long.to_string().contains("api.max_wait_seconds"));
    let mut hooked = noop(json!({}));
    hooked.webhook = Some("ftp://example.com/hook".into());
    let bad_hook = jobs.submit(hooked, None).await.unwrap_err();
    assert_eq!(field(&bad_hook), Some("webhook"), "{bad_hook:?}");
    let bad_param = jobs
        .submit(noop(json!({"width": 1_000_000})), None)
        .await
        .unwrap_err();
    assert_eq!(field(&bad_param), Some("params.width"), "{bad_param:?}");
    assert_eq!(
        server.daemon.queue().counts().await.unwrap().queued,
        0,
        "refusals queue nothing"
    );

    // Idempotency: the same key is the same job.
    let mut keyed = noop(json!({"color": 1}));
    keyed.idempotency_key = Some("order-7".into());
    let first = jobs.submit(keyed.clone(), None).await.unwrap();
    let again = jobs.submit(keyed, None).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.job.id, again.job.id);

    // A wait on a job that cannot run ends with the wait, still queued.
    let waited = jobs.submit(noop(json!({"color": 2})), Some(0)).await.unwrap();
    assert_eq!(waited.job.status, JobStatus::Queued);
    let full = jobs.submit(noop(json!({"color": 3})), None).await.unwrap_err();
    assert!(
        matches!(full, ServiceError::QueueFull(ref m) if m.contains("api.max_queued = 2")),
        "{full:?}"
    );
}

#[tokio::test]
async fn listings_page_with_cursors_and_cancel_and_retry_follow_the_rules() {
    let server = server_with(|c| c.comfyui.backends = vec![BackendConfig::new("http://127.0.0.1:9")]).await;
    let jobs = server.daemon.services().jobs;
    let a = jobs.submit(noop(json!({"color": 1})), None).await.unwrap().job;
    let b = jobs.submit(noop(json!({"color": 2})), None).await.unwrap().job;
    let cancelled = jobs.cancel(a.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(matches!(jobs.cancel(a.id).await, Err(ServiceError::Conflict(_))));
    assert!(matches!(jobs.retry(b.id).await, Err(ServiceError::Conflict(_))));
    assert!(matches!(
        jobs.get(ulid::Ulid::new()).await,
        Err(ServiceError::NotFound(_))
    ));

    // One at a time across statuses: queued b, then cancelled a, then the end.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = jobs
            .list(JobListing {
                status: None,
                limit: 1,
                cursor: cursor.take(),
            })
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| (j.id, j.status)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [(b.id, JobStatus::Queued), (a.id, JobStatus::Cancelled)]);
    let only = |status, cursor: Option<&str>| JobListing {
        status: Some(status),
        limit: 10,
        cursor: cursor.map(str::to_owned),
    };
    let wrong = jobs
        .list(only(JobStatus::Queued, Some("failed")))
        .await
        .unwrap_err();
    assert_eq!(field(&wrong), Some("cursor"), "{wrong:?}");
    let garbage = jobs
        .list(only(JobStatus::Queued, Some("nonsense")))
        .await
        .unwrap_err();
    assert_eq!(field(&garbage), Some("cursor"), "{garbage:?}");
    let zero = jobs.list(JobListing::newest(0)).await.unwrap_err();
    assert_eq!(field(&zero), Some("limit"), "{zero:?}");

    // Retried, the cancelled job waits again.
    assert_eq!(jobs.retry(a.id).await.unwrap().status, JobStatus::Queued);
}
