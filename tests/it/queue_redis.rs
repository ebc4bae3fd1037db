//! What only the Redis backend has to prove: several nodes on one queue never claim
//! the same job, see each other's events and wake each other's claimers; and the
//! server is checked before it is trusted — eviction policy, password, TLS, an
//! unreachable or dying server named in a clear error; and a commit whose answer the
//! network lost is neither reported failed nor run twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use darkroom::clock::SystemClock;
use darkroom::queue::{JobStatus, NewJob, Queue, QueueConfig, QueueError};
use darkroom::redis_store::RedisSettings;
use darkroom::redis_store::RedisStore;
use serde_json::json;

use crate::lossy_proxy::{Loss, LossyProxy};
use crate::redis_server::RedisServer;

fn node(store: &RedisStore) -> Queue {
    Queue::open_redis(store.clone(), Arc::new(SystemClock), QueueConfig::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_claim_the_same_job() {
    let store = RedisServer::shared().store();
    let (a, b) = (node(&store), node(&store));
    let mut ids = Vec::new();
    for i in 0..300 {
        let on = if i % 2 == 0 { &a } else { &b };
        ids.push(
            on.enqueue(NewJob::new("gen", json!({ "i": i })))
                .await
                .unwrap()
                .job
                .id,
        );
    }
    let mut workers = Vec::new();
    for (n, queue) in [a.clone(), a.clone(), a.clone(), b.clone(), b.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let batch = queue.claim_batch("gen", &format!("worker-{n}"), 4).await.unwrap();
                if batch.is_empty() {
                    return done;
                }
                for claimed in batch {
                    queue.complete(&claimed.lease, json!(n)).await.unwrap();
                    done.push(claimed.job.id);
                }
            }
        }));
    }
    let mut claims: HashMap<ulid::Ulid, usize> = HashMap::new();
    let mut per_worker = Vec::new();
    for worker in workers {
        let done = worker.await.unwrap();
        per_worker.push(done.len());
        for id in done {
            *claims.entry(id).or_default() += 1;
        }
    }
    assert_eq!(claims.len(), 300, "every job claimed");
    assert!(claims.values().all(|&n| n == 1), "no job claimed twice");
    assert!(
        per_worker.iter().filter(|&&n| n > 0).count() > 1,
        "{per_worker:?}"
    );
    let counts = b.counts().await.unwrap();
    assert_eq!((counts.succeeded, counts.total()), (300, 300));
    for id in ids {
        assert_eq!(a.get(id).await.unwrap().unwrap().status, JobStatus::Succeeded);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nodes_changes_reach_the_other_nodes_subscribers_and_claimers() {
    let store = RedisServer::shared().store();
    let (a, b) = (node(&store), node(&store));
    let mut events = b.subscribe();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.claim_wait("gen", "b-worker", 1, Duration::from_secs(30)).await })
    };
    let id = a.enqueue(NewJob::new("gen", json!({}))).await.unwrap().job.id;
    let claimed = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "node b's waiting claimer was woken by node a's enqueue"
    );
    assert_eq!(claimed[0].job.id, id);
    let first = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, first.from, first.to), (id, None, JobStatus::Queued));

    // A cancel through node a reaches node b's worker in its heartbeat.
    a.cancel(id).await.unwrap();
    let directive = b.heartbeat(&claimed[0].lease).await.unwrap();
    assert!(matches!(
        directive,
        darkroom::queue::Directive::Stop(darkroom::queue::StopReason::Cancelled)
    ));
}

#[test]
fn an_evicting_redis_is_refused_unless_allowed() {
    let server = RedisServer::start(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut settings = server.settings();
    let err = RedisStore::connect(&settings).err().unwrap().to_string();
    for needle in [
        "allkeys-lru",
        "noeviction",
        "redis.allow_eviction",
        &server.url()[..20],
    ] {
        assert!(err.contains(needle), "`{needle}` in: {err}");
    }
    settings.allow_eviction = true;
    RedisStore::connect(&settings).unwrap();
}

#[test]
fn a_password_protected_redis_needs_the_password_in_the_url() {
    let server = RedisServer::start(&["--requirepass", "s3cret"]);
    let settings = server.settings();
    let err = RedisStore::connect(&settings).err().unwrap().to_string();
    assert!(
        err.contains("redis.url") && err.to_lowercase().contains("auth"),
        "{err}"
    );
    let with_password = RedisSettings {
        url: format!("redis://:s3cret@127.0.0.1:{}/0", server.port),
        ..settings
    };
    let store = RedisStore::connect(&with_password).unwrap();
    assert_eq!(
        store.endpoint(),
        format!("redis://:***@127.0.0.1:{}/0", server.port)
    );
}

#[test]
fn an_unreachable_redis_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = RedisSettings {
        url: format!("redis://user:hunter2@127.0.0.1:{port}/0"),
        ..RedisSettings::default()
    };
    let err = RedisStore::connect(&settings).err().unwrap().to_string();
    assert!(
        err.contains("cannot reach Redis") && err.contains("redis.url"),
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && !err.contains("hunter2"),
        "{err}"
    );
}

#[tokio::test]
async fn a_dead_redis_fails_operations_with_a_clear_error() {
    let server = RedisServer::start(&[]);
    let queue = node(&server.store());
    queue.enqueue(NewJob::new("gen", json!({}))).await.unwrap();
    server.kill();
    let err = queue.enqueue(NewJob::new("gen", json!({}))).await.unwrap_err();
    // The pooled connection is found dead before anything is committed; a fresh
    // one is refused.
    assert!(matches!(err, QueueError::Redis(_)), "{err:?}");
    assert!(err.to_string().starts_with("Redis:"), "{err}");
    assert!(err.to_string().contains("Connection refused"), "{err}");
    assert!(queue.counts().await.is_err());
}

/// Redis restarts under a running node (same port, same AOF): the node's next
/// operations and reads go through on fresh connections, instead of each failing
/// once on a pooled connection the restart broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_go_through_after_redis_restarts() {
    let server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let queue = node(&server.store());
    let before = queue.enqueue(NewJob::new("gen", json!({}))).await.unwrap().job.id;
    assert_eq!(queue.counts().await.unwrap().queued, 1);

    server.restart();
    assert_eq!(
        queue.counts().await.unwrap().queued,
        1,
        "the job survived the restart"
    );
    server.restart();
    let after = queue.enqueue(NewJob::new("gen", json!({}))).await.unwrap().job.id;
    let claimed = queue.claim_batch("gen", "w", 2).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|c| c.job.id).collect();
    assert_eq!(ids, [before, after]);
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it, with openssl.
fn tls_files(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is not installed (./scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=darkroom test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test]
async fn rediss_with_a_private_ca_carries_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    tls_files(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let server = RedisServer::start_with(move |port| {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned)
        .to_vec()
    });
    let tls = RedisSettings {
        url: format!("rediss://127.0.0.1:{}/0", server.port),
        ca_file: Some(dir.path().join("ca.pem")),
        ..server.settings()
    };
    let queue = node(&RedisStore::connect(&tls).unwrap());
    let id = queue.enqueue(NewJob::new("gen", json!({}))).await.unwrap().job.id;
    assert_eq!(queue.claim("gen", "w").await.unwrap().unwrap().job.id, id);

    let plain = RedisSettings {
        url: format!("redis://127.0.0.1:{}/0", server.port),
        ..tls.clone()
    };
    assert!(
        RedisStore::connect(&plain).is_err(),
        "a TLS port does not speak plain Redis"
    );
    let untrusted = RedisSettings { ca_file: None, ..tls };
    let err = RedisStore::connect(&untrusted).err().unwrap().to_string();
    assert!(err.contains("cannot reach Redis"), "{err}");
}

/// Claims racing enqueues: a claim that read the ready index just before another
/// node claimed the same job must not take it too (the index read is not what the
/// commit checks; the record is).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_racing_enqueues_on_two_nodes_run_each_job_once() {
    const N: usize = 300;
    let store = RedisServer::shared().store();
    let (a, b) = (node(&store), node(&store));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for (n, queue) in [a.clone(), a.clone(), b.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut ran = Vec::new();
            while done.load(std::sync::atomic::Ordering::SeqCst) < N {
                let wait = Duration::from_millis(200);
                for claimed in queue.claim_wait("gen", &format!("w{n}"), 2, wait).await.unwrap() {
                    let completed = queue.complete(&claimed.lease, json!(n)).await;
                    if claimed.job.attempts != 1 || completed.is_err() {
                        // Stop everyone; the assertion below reports it.
                        done.store(N, std::sync::atomic::Ordering::SeqCst);
                        return Err(format!("claimed twice: {:?} ({completed:?})", claimed.job));
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    ran.push(claimed.job.id);
                }
            }
            Ok(ran)
        }));
    }
    let mut enqueues = Vec::new();
    for i in 0..N {
        let on = if i % 2 == 0 { a.clone() } else { b.clone() };
        enqueues.push(tokio::spawn(async move {
            on.enqueue(NewJob::new("gen", json!({ "i": i }))).await.unwrap()
        }));
    }
    for e in enqueues {
        e.await.unwrap();
    }
    let mut ran = std::collections::HashSet::new();
    for w in workers {
        for id in w.await.unwrap().unwrap() {
            assert!(ran.insert(id), "{id} ran twice");
        }
    }
    assert_eq!(ran.len(), N);
}

/// Two nodes claiming at the same moment with two jobs ready: the one that loses the
/// race for the first job gets the second, instead of coming back empty and leaving
/// it waiting (found by the scale-out bench: one node then ran nine jobs in ten).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_that_loses_a_race_takes_the_next_job() {
    let store = RedisServer::shared().store();
    let (a, b) = (node(&store), node(&store));
    for round in 0..50 {
        for i in 0..2 {
            a.enqueue(NewJob::new("gen", json!({ "round": round, "i": i })))
                .await
                .unwrap();
        }
        let (ca, cb) = tokio::join!(
            a.claim_batch("gen", "node-a", 1),
            b.claim_batch("gen", "node-b", 1)
        );
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        assert_eq!(
            (ca.len(), cb.len()),
            (1, 1),
            "round {round}: each node gets one of the two jobs"
        );
        assert_ne!(ca[0].job.id, cb[0].job.id);
        for claimed in ca.iter().chain(&cb) {
            a.complete(&claimed.lease, json!("ok")).await.unwrap();
        }
    }
}

/// The connection drops after a claim's script was sent: once after Redis ran it
/// (its answer lost), once before it got there. The queue asks Redis which it was, so
/// the first claim returns the job it really leased — not an error that would leave
/// the job leased to nobody until its lease lapsed, nor a second job — and the
/// second runs again and leases the next job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_is_lost_returns_what_redis_did() {
    let server = RedisServer::shared();
    let proxy = LossyProxy::start(server.port);
    let settings = RedisSettings {
        url: proxy.url(),
        ..server.settings()
    };
    let queue = node(&RedisStore::connect(&settings).unwrap());
    // The first commit loads the script, so the calls lost below are ones Redis runs.
    let mut ids = Vec::new();
    for n in 0..3 {
        let job = queue
            .enqueue(NewJob::new("gen", json!({ "n": n })))
            .await
            .unwrap()
            .job;
        ids.push(job.id);
    }

    proxy.lose_next(Loss::Answer);
    let first = queue
        .claim("gen", "w")
        .await
        .unwrap()
        .expect("the claim Redis applied");
    assert_eq!((first.job.id, first.lease.attempt), (ids[0], 1));
    proxy.lose_next(Loss::Request);
    let second = queue
        .claim("gen", "w")
        .await
        .unwrap()
        .expect("the claim run again");
    assert_eq!((second.job.id, second.lease.attempt), (ids[1], 1));
    assert_eq!(proxy.lost(), 2);

    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.running, counts.queued), (2, 1));
    for claimed in [first, second] {
        queue.complete(&claimed.lease, json!("ok")).await.unwrap();
    }
    let third = queue.claim("gen", "w").await.unwrap().unwrap();
    assert_eq!(third.job.id, ids[2]);
}
