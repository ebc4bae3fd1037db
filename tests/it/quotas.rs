//! Quotas and fair share end to end, through the API with users' keys: a user
//! over a limit gets `429 quota_exceeded` naming the limit, the usage and the
//! reset (with `Retry-After`), a job asking too much is refused before it is
//! queued, usage is reported per user per day (to them, and to admins for
//! everyone), an admin changes a user's limits with the CLI, and one user's batch
//! (200 jobs) does not hold back another user's five. Concurrent submits are
//! admitted exactly up to the limit, through the API and raced from two handles
//! on one Redis.

use darkroom::clock::Millis;
use darkroom::docs::Docs;
use darkroom::queue::{JobStatus, Queue};
use darkroom::quotas::ledger::Ledger;
use darkroom::quotas::{Limit, Limits};
use serde_json::{Value, json};
use ulid::Ulid;

use crate::api_support::Api;
use crate::dispatch::{configure, wait_job};
use crate::fake_comfy::FakeComfy;
use crate::support::server_with;

async fn key_for(root: &Api, user: &str, role: &str) -> String {
    let r = root
        .post("/api/v1/users", Some(&json!({"name": user, "role": role})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = root.post("/api/v1/keys", Some(&json!({"user": user}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["key"].as_str().unwrap().to_owned()
}

fn noop(n: u64) -> Value {
    json!({"template": "noop", "params": {"color": n}, "cache": false})
}

async fn cli(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(args)
        .env_remove("DARKROOM_URL")
        .env_remove("DARKROOM_TOKEN")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_with_429_and_usage_is_reported_per_user_per_day() {
    let comfy = FakeComfy::start().await;
    let url = comfy.url.clone();
    let server = server_with(|c| {
        configure(c, &[url]);
        c.api.token = "root-token".into();
        c.quotas.user.generations_per_day = Some(Limit(3));
    })
    .await;
    let addr = server.daemon.api_addr();
    let root = Api::new(addr, Some("root-token")).await;
    let ana = Api::new(addr, Some(&key_for(&root, "ana", "user").await)).await;
    let bob = Api::new(addr, Some(&key_for(&root, "bob", "user").await)).await;
    let base = root.base.clone();

    // Per-job limits: refused before anything is counted.
    let big = json!({"template": "txt2img", "params": {"width": 2048, "height": 2048, "prompt": "x"}});
    let r = ana.post("/api/v1/jobs", Some(&big)).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{}",
        r.text
    );
    let q = &r.json()["error"]["quota"];
    assert_eq!(
        (q["limit"].as_str(), q["used"].as_u64(), q["allowed"].as_u64()),
        (Some("max_pixels"), Some(2048 * 2048), Some(1024 * 1024))
    );
    assert_eq!(r.error_field().as_deref(), Some("params.width"));

    // Three a day (the config's [quotas.user]); the fourth is refused until midnight UTC.
    let mut anas = Vec::new();
    for n in 0..3 {
        let r = ana.post("/api/v1/jobs", Some(&noop(n))).await;
        assert_eq!(r.status, 202, "{}", r.text);
        anas.push(r.json()["id"].as_str().unwrap().parse::<Ulid>().unwrap());
    }
    let over = reqwest::Client::new()
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(ana.token.clone().unwrap())
        .json(&noop(9))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status().as_u16(), 429);
    let retry_after: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let body: Value = over.json().await.unwrap();
    let q = &body["error"]["quota"];
    assert_eq!(
        (q["limit"].as_str(), q["used"].as_u64(), q["allowed"].as_u64()),
        (Some("generations_per_day"), Some(3), Some(3))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("resets at"),
        "{body}"
    );
    // Bob has his own count; the admin (api.token) has none.
    assert_eq!(bob.post("/api/v1/jobs", Some(&noop(10))).await.status, 202);
    assert_eq!(root.post("/api/v1/jobs", Some(&noop(11))).await.status, 202);
    for id in &anas {
        crate::dispatch::finished(server.daemon.queue(), *id).await;
    }

    // An admin lifts Ana's daily limit with the CLI; the next submit passes.
    let (ok, out, err) = cli(&[
        "users",
        "set",
        "ana",
        "--quota",
        "generations_per_day=5",
        "--url",
        &base,
        "--token",
        "root-token",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\"generations_per_day\":5"), "{out}");
    let (ok, _, err) = cli(&[
        "users",
        "set",
        "ana",
        "--quota",
        "speed=2",
        "--url",
        &base,
        "--token",
        "root-token",
    ])
    .await;
    assert!(!ok && err.contains("speed"), "{err}");
    let r = ana.post("/api/v1/jobs", Some(&noop(12))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let fourth: Ulid = r.json()["id"].as_str().unwrap().parse().unwrap();
    crate::dispatch::finished(server.daemon.queue(), fourth).await;
    let r = bob
        .call(
            reqwest::Method::PATCH,
            "/api/v1/users/bob/quota",
            Some(json!({"generations_per_day": 1000}).to_string().into_bytes()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 403, "users do not raise their own limits");

    // Usage: Ana sees her own day; Bob may not see hers; the admin sees everyone.
    let mine = ana.get("/api/v1/usage").await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let report = mine.json();
    assert_eq!(report["users"].as_array().unwrap().len(), 1);
    let standing = &report["users"][0];
    assert_eq!(
        (standing["user"].as_str(), standing["generations_today"].as_u64()),
        (Some("ana"), Some(4))
    );
    assert_eq!(standing["limits"]["generations_per_day"], 5);
    let day = &report["days"][0];
    assert_eq!(
        (day["user"].as_str(), day["submitted"].as_u64()),
        (Some("ana"), Some(4))
    );
    assert_eq!(day["jobs"]["succeeded"], 4, "{report}");
    assert_eq!(day["images"], 4);
    assert!(day["bytes"].as_u64().unwrap() > 0 && day["gpu_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(bob.get("/api/v1/usage?user=ana").await.status, 403);
    let r = ana.get("/api/v1/usage?from=yesterday").await;
    assert_eq!((r.status, r.error_field().as_deref()), (400, Some("from")));
    let all = root.get("/api/v1/usage").await.json();
    let users: Vec<&str> = all["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    for u in ["ana", "bob", "admin"] {
        assert!(users.contains(&u), "{users:?}");
    }
    let (ok, out, err) = cli(&["usage", "--url", &base, "--token", "root-token", "--user", "ana"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("ana") && out.contains("4/5"), "{out}");
    let (ok, out, err) = cli(&["usage", "--json", "--url", &base, "--token", "root-token"]).await;
    assert!(ok, "{err}");
    let parsed: Value = serde_json::from_str(&out).unwrap();
    assert!(parsed["days"].as_array().unwrap().len() >= 3, "{parsed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_users_batch_does_not_hold_back_another_users_job() {
    let comfy = FakeComfy::start().await;
    let url = comfy.url.clone();
    let server = server_with(|c| {
        configure(c, &[url]);
        c.api.token = "root-token".into();
        // A batch of 200 is past the planned daily and waiting limits.
        c.quotas.user.generations_per_day = Some(Limit::UNLIMITED);
        c.quotas.user.max_queued = Some(Limit::UNLIMITED);
    })
    .await;
    let addr = server.daemon.api_addr();
    let root = Api::new(addr, Some("root-token")).await;
    let ana = Api::new(addr, Some(&key_for(&root, "ana", "user").await)).await;
    let bob = Api::new(addr, Some(&key_for(&root, "bob", "user").await)).await;
    let queue = server.daemon.queue().clone();

    // One backend, one slot: Ana's first job runs (held); 199 more of hers wait.
    comfy.ctl.hold(true);
    let mut anas = Vec::new();
    for n in 0..200 {
        let r = ana.post("/api/v1/jobs", Some(&noop(n))).await;
        assert_eq!(r.status, 202, "{}", r.text);
        anas.push(r.json()["id"].as_str().unwrap().parse::<Ulid>().unwrap());
    }
    comfy.ctl.wait_held().await;
    let mut bobs = Vec::new();
    for n in 0..5 {
        let r = bob.post("/api/v1/jobs", Some(&noop(1000 + n))).await;
        bobs.push(r.json()["id"].as_str().unwrap().parse::<Ulid>().unwrap());
    }

    // The order jobs start in from now on, until Bob's five have all started.
    let mut events = queue.subscribe();
    comfy.ctl.hold(false);
    comfy.ctl.release();
    let first = anas[0];
    let order = crate::support::bounded("Bob's jobs to start", async {
        let mut order = Vec::new();
        while !bobs.iter().all(|b| order.contains(b)) {
            let e = events.recv().await.unwrap();
            // A claim (progress and placement events are Running -> Running too).
            if e.from == Some(JobStatus::Queued) && e.to == JobStatus::Running && e.id != first {
                order.push(e.id);
            }
        }
        order
    })
    .await;
    let who: String = order
        .iter()
        .map(|id| if bobs.contains(id) { 'B' } else { 'A' })
        .collect();
    println!(
        "fair share: Bob's 5 jobs started within the first {} dispatches after his submit ({who})",
        order.len()
    );
    assert!(
        order.len() <= 10,
        "Bob's jobs waited behind Ana's batch: {} dispatches",
        order.len()
    );
    assert_eq!(order[0], bobs[0], "Bob, who used no GPU yet, goes first");
    let job = wait_job(&queue, bobs[4], |j| j.status.is_terminal()).await;
    assert_eq!(job.status, JobStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_submits_are_admitted_exactly_up_to_the_limit() {
    let comfy = FakeComfy::start().await;
    let url = comfy.url.clone();
    let server = server_with(|c| {
        configure(c, &[url]);
        c.api.token = "root-token".into();
        c.quotas.user.generations_per_day = Some(Limit(5));
    })
    .await;
    let root = Api::new(server.daemon.api_addr(), Some("root-token")).await;
    let key = key_for(&root, "ana", "user").await;
    let base = root.base.clone();
    let mut submits = Vec::new();
    for n in 0..20 {
        let (base, key) = (base.clone(), key.clone());
        submits.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/jobs"))
                .bearer_auth(key)
                .json(&noop(n))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for s in submits {
        statuses.push(s.await.unwrap());
    }
    statuses.sort_unstable();
    let admitted = statuses.iter().filter(|s| **s == 202).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, refused), (5, 15), "{statuses:?}");
    let usage = Api::new(server.daemon.api_addr(), Some(&key))
        .await
        .get("/api/v1/usage")
        .await
        .json();
    assert_eq!(usage["users"][0]["generations_today"], 5, "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_on_redis_admit_exactly_the_limit_across_nodes() {
    // Two nodes: two connections to one Redis under one key prefix.
    let settings = crate::redis_server::RedisServer::shared().settings();
    let node = || {
        Ledger::new(Docs::Redis(
            darkroom::redis_store::RedisStore::connect(&settings).unwrap(),
        ))
    };
    let (a, b) = (node(), node());
    let limits = Limits {
        generations_per_day: Some(Limit(5)),
        ..Limits::default()
    };
    let now: Millis = 1_796_601_600_000;
    let race = |ledger: Ledger, limits: Limits| {
        tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..8 {
                if ledger.reserve("ana", &limits, now, vec![]).await.is_ok() {
                    admitted += 1;
                }
            }
            admitted
        })
    };
    let (x, y) = (race(a.clone(), limits.clone()), race(b, limits));
    let total = x.await.unwrap() + y.await.unwrap();
    assert_eq!(total, 5, "two nodes together admit exactly the limit");
    assert_eq!(a.account("ana").await.unwrap().day_count, 5);
}

/// A claim looking at only the first ready job still sees every owner's best job
/// (the owner index), on both queue stores; a claimed or cancelled job leaves it.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_sees_each_owners_best_job_beyond_its_window() {
    use darkroom::queue::{Candidate, NewJob, Picker, QueueConfig};
    let dir = tempfile::tempdir().unwrap();
    let clock: darkroom::clock::SharedClock = std::sync::Arc::new(darkroom::clock::SystemClock);
    let embedded = Queue::open(&dir.path().join("q.redb"), clock.clone(), QueueConfig::default()).unwrap();
    let store = crate::redis_server::RedisServer::shared().store();
    let redis = Queue::open_redis(store, clock, QueueConfig::default()).unwrap();
    for queue in [embedded, redis] {
        let mut bens = Vec::new();
        for i in 0..30 {
            let job = NewJob::new("gen", json!({ "i": i })).owner("ana");
            queue.enqueue(job).await.unwrap();
        }
        for i in 0..2 {
            let job = NewJob::new("gen", json!({ "b": i })).owner("ben");
            bens.push(queue.enqueue(job).await.unwrap().job.id);
        }
        queue.enqueue(NewJob::new("gen", json!({}))).await.unwrap();
        // Look only: pick nothing, remember what was offered.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Candidate>::new()));
        let look = |seen: std::sync::Arc<std::sync::Mutex<Vec<Candidate>>>,
                    take_owner: Option<&'static str>|
         -> Picker<()> {
            std::sync::Arc::new(move |c: &[Candidate]| {
                *seen.lock().unwrap() = c.to_vec();
                c.iter()
                    .position(|x| take_owner.is_some() && x.owner.as_deref() == take_owner)
                    .map(|i| (i, ()))
                    .into_iter()
                    .collect()
            })
        };
        queue
            .claim_picked("gen", "w", 1, look(seen.clone(), None))
            .await
            .unwrap();
        let offered: Vec<Option<String>> = seen.lock().unwrap().iter().map(|c| c.owner.clone()).collect();
        assert_eq!(
            offered,
            vec![Some("ana".into()), Some("ben".into())],
            "best first: ana's first, then ben's"
        );
        assert_eq!(seen.lock().unwrap()[1].id, bens[0]);
        // Ben's first is claimed; his second is his best now.
        let claimed = queue
            .claim_picked("gen", "w", 1, look(seen.clone(), Some("ben")))
            .await
            .unwrap();
        assert_eq!(claimed[0].0.job.id, bens[0]);
        queue
            .claim_picked("gen", "w", 1, look(seen.clone(), None))
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap()[1].id, bens[1]);
        queue.cancel(bens[1]).await.unwrap();
        queue
            .claim_picked("gen", "w", 1, look(seen.clone(), None))
            .await
            .unwrap();
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "no ben left: {:?}",
            seen.lock().unwrap()
        );
    }
}
