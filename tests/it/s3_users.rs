//! S3 users: an access key / secret pair made for a user (through the API, or
//! with the CLI on a stopped daemon's data directory) signs awscli's and the
//! SDK's requests as that user; it is listed among the keys without its secret,
//! and refused with `InvalidAccessKeyId` at once when revoked or its user disabled.

use std::process::Output;

use darkroom::service::users::{CreatedKey, KeyDraft, UserDraft};
use darkroom::users::{Principal, Role};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_support::Api;
use crate::support::{ACCESS_KEY, SECRET_KEY, TestServer, aws_as, client, code, server_with};

/// Adds user `name` with `role` to a running server and makes them an S3 key:
/// (access key, secret key).
pub async fn s3_user(s: &TestServer, name: &str, role: Role) -> (String, String) {
    let users = s.daemon.services().users;
    let root = Principal::root();
    users
        .add(
            &root,
            UserDraft {
                name: name.into(),
                role,
            },
        )
        .await
        .unwrap();
    let draft = KeyDraft {
        user: name.into(),
        name: String::new(),
        expires: None,
        s3: true,
    };
    match users.create_key(&root, draft).await.unwrap() {
        CreatedKey::S3(k) => (k.access_key, k.secret_key),
        CreatedKey::Api(k) => panic!("asked for an S3 key, got {k:?}"),
    }
}

/// The stdout of a successful awscli run.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "aws failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The stderr of a failed awscli run.
pub fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "aws should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_key_signs_as_its_user_until_revoked_or_disabled() {
    let s = server_with(|c| c.api.token = "root-token".into()).await;
    let root = Api::new(s.daemon.api_addr(), Some("root-token")).await;
    let r = root
        .post("/api/v1/users", Some(&json!({"name": "ana", "role": "user"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let made = root
        .post(
            "/api/v1/keys",
            Some(&json!({"user": "ana", "name": "laptop", "s3": true})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let (ak, sk) = (
        made.json()["access_key"].as_str().unwrap().to_owned(),
        made.json()["secret_key"].as_str().unwrap().to_owned(),
    );
    assert!(ak.starts_with("DRK") && ak.len() == 20, "{ak}");
    let listed = root.get("/api/v1/keys?user=ana").await;
    let keys: Value = listed.json();
    assert_eq!(keys[0]["id"], ak.as_str());
    assert_eq!(keys[0]["s3"], true);
    assert!(!listed.text.contains(&sk), "the secret is never shown again");

    s.client.create_bucket().bucket("media").send().await.unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::darkroom:user/ana"]},
        "Action": ["s3:*"], "Resource": ["arn:aws:s3:::media", "arn:aws:s3:::media/*"]}]});
    s.client
        .put_bucket_policy()
        .bucket("media")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let file = s.dir.path().join("in.png");
    std::fs::write(&file, b"ana's picture").unwrap();
    let as_ana = |args: &[&str]| tokio::task::block_in_place(|| aws_as(&s.endpoint, (&ak, &sk), args));
    ok(as_ana(&["s3", "cp", file.to_str().unwrap(), "s3://media/in.png"]));
    assert!(ok(as_ana(&["s3", "ls", "s3://media/"])).contains("in.png"));
    // Only what the policy grants: no other bucket, no bucket of her own.
    assert!(failed(as_ana(&["s3", "mb", "s3://anas-own"])).contains("AccessDenied"));
    let listing = ok(as_ana(&["s3api", "list-buckets"]));
    assert!(listing.contains("media"), "{listing}");
    // Even with s3:*, who may use the bucket stays the owner's to say.
    let sdk = client(&s.endpoint, &ak, &sk);
    let r = sdk.delete_bucket_policy().bucket("media").send().await;
    assert_eq!(code(r), "AccessDenied");

    // Disabled: refused at once, as an unknown key; enabled again: back.
    assert_eq!(root.post("/api/v1/users/ana/disable", None).await.status, 200);
    assert!(failed(as_ana(&["s3", "ls", "s3://media/"])).contains("InvalidAccessKeyId"));
    assert_eq!(root.post("/api/v1/users/ana/enable", None).await.status, 200);
    ok(as_ana(&["s3", "ls", "s3://media/"]));
    // Revoked: refused at once.
    let r = root
        .call(Method::DELETE, &format!("/api/v1/keys/{ak}"), None, &[])
        .await;
    assert_eq!(r.status, 204);
    assert!(failed(as_ana(&["s3", "ls", "s3://media/"])).contains("InvalidAccessKeyId"));
    assert_eq!(code(sdk.list_buckets().send().await), "InvalidAccessKeyId");
    // The CLI makes S3 keys through the API too (`--url`, `--token`).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(["keys", "create", "--user", "ana", "--s3", "--json", "--url"])
        .arg(&root.base)
        .args(["--token", "root-token"])
        .env_remove("DARKROOM_URL")
        .env_remove("DARKROOM_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let again = client(
        &s.endpoint,
        made["access_key"].as_str().unwrap(),
        made["secret_key"].as_str().unwrap(),
    );
    again.list_objects_v2().bucket("media").send().await.unwrap();
    // The root pair still owns everything.
    ok(tokio::task::block_in_place(|| {
        aws_as(
            &s.endpoint,
            (ACCESS_KEY, SECRET_KEY),
            &["s3", "ls", "s3://media/"],
        )
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admins_s3_key_made_offline_works_once_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::test_config(&dir);
    let d = config.data_dir.display().to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
            .args(args)
            .args(["--data", &d])
            .env_remove("DARKROOM_URL")
            .env_remove("DARKROOM_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["users", "add", "ops", "--role", "admin"]);
    let made: Value = serde_json::from_str(&run(&[
        "keys", "create", "--user", "ops", "--s3", "--name", "backup", "--json",
    ]))
    .unwrap();
    let (ak, sk) = (
        made["access_key"].as_str().unwrap().to_owned(),
        made["secret_key"].as_str().unwrap().to_owned(),
    );
    let listed = run(&["keys", "list"]);
    assert!(
        listed.contains(&ak) && listed.contains("s3") && !listed.contains(&sk),
        "{listed}"
    );
    let raw = std::fs::read(config.data_dir.join("queue.redb")).unwrap();
    assert!(
        !raw.windows(sk.len()).any(|w| w == sk.as_bytes()),
        "the secret is stored wrapped, never in clear"
    );

    // A master key rotation re-wraps the secret; the key still signs afterwards.
    let rotated = run(&["keys", "rotate-master"]);
    assert!(rotated.contains("1 S3 secrets too"), "{rotated}");

    let (daemon, root) = crate::support::daemon_on(&config).await;
    let endpoint = format!("http://{}", daemon.s3_addr().unwrap());
    root.create_bucket().bucket("ops-bucket").send().await.unwrap();
    // An admin's key may do everything.
    let ops = client(&endpoint, &ak, &sk);
    ops.create_bucket().bucket("made-by-ops").send().await.unwrap();
    let names: Vec<String> = ops
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, ["made-by-ops", "ops-bucket"]);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_redis_share_s3_keys_and_their_revocation() {
    let redis = crate::redis_server::RedisServer::shared();
    let prefix = format!("s3keys-{}", ulid::Ulid::new());
    // One master key for both nodes (it wraps the secrets they share).
    let master = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rand::random::<[u8; 32]>(),
    );
    let on_redis = |c: &mut darkroom::config::Config| {
        c.redis = redis.settings();
        c.redis.key_prefix.clone_from(&prefix);
        c.queue.backend = darkroom::redis_store::Backend::Redis;
        c.cache.backend = darkroom::redis_store::Backend::Redis;
        c.s3.master_key.clone_from(&master);
    };
    let one = server_with(on_redis).await;
    let two = server_with(on_redis).await;
    let (ak, sk) = s3_user(&one, "ops", Role::Admin).await;
    let on_two = client(&two.endpoint, &ak, &sk);
    on_two.create_bucket().bucket("from-two").send().await.unwrap();
    let users = one.daemon.services().users;
    users.revoke(&Principal::root(), &ak).await.unwrap();
    assert_eq!(code(on_two.list_buckets().send().await), "InvalidAccessKeyId");
}

/// A user reads the outputs of their own jobs over S3 (as through the API), and
/// no one else's; listing the jobs folder is not theirs to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_reads_the_outputs_of_their_own_jobs_only() {
    let comfy = crate::fake_comfy::FakeComfy::start().await;
    let url = comfy.url.clone();
    let s = server_with(|c| crate::dispatch::configure(c, &[url])).await;
    let ana = s3_user(&s, "ana", Role::User).await;
    let bob = s3_user(&s, "bob", Role::User).await;
    let as_ana = Principal {
        user: "ana".into(),
        role: Role::User,
    };
    let request = darkroom::dispatch::JobRequest::template("noop", serde_json::Map::new());
    let job = s
        .daemon
        .services()
        .jobs
        .submit_as(&as_ana, request, None)
        .await
        .unwrap()
        .job;
    let job = crate::dispatch::finished(s.daemon.queue(), job.id).await;
    let output = &darkroom::dispatch::outputs_of(&job)[0];
    let uri = format!("s3://{}/{}", output.bucket, output.key);
    let aws = |who: &(String, String), args: &[&str]| {
        tokio::task::block_in_place(|| aws_as(&s.endpoint, (&who.0, &who.1), args))
    };
    let bytes = aws(&ana, &["s3", "cp", &uri, "-"]);
    assert!(
        bytes.status.success(),
        "{}",
        String::from_utf8_lossy(&bytes.stderr)
    );
    assert_eq!(bytes.stdout.len() as u64, output.size);
    let refused = failed(aws(&bob, &["s3", "cp", &uri, "-"]));
    assert!(
        refused.contains("403") || refused.contains("Forbidden"),
        "{refused}"
    );
    let listing = format!("s3://{}/jobs/", output.bucket);
    assert!(failed(aws(&ana, &["s3", "ls", &listing])).contains("AccessDenied"));
}
