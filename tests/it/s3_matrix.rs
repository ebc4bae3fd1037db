//! The S3 access matrix with the Rust SDK (aws-sdk-s3): the owner (the root
//! pair), a second user (their own S3 key) and anonymous callers (the SDK with no
//! credentials: unsigned requests) try reads, writes, deletes, listings and ACL
//! changes on a bucket governed by a policy and on one governed by ACLs, and each
//! answer is what AWS would give. (awscli and boto3 cover the same ground in
//! `s3_policy.rs` and `s3_acl.rs`.)

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectCannedAcl, ObjectOwnership, OwnershipControls, OwnershipControlsRule};
use darkroom::users::Role;
use serde_json::json;

use crate::s3_users::s3_user;
use crate::support::{ACCESS_KEY, SECRET_KEY, client, server_with};

/// The SDK without credentials: it sends unsigned requests.
fn anonymous(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// `ok` or the S3 error code of each call, for one caller.
async fn get(c: &Client, bucket: &str, key: &str) -> String {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(_) => "ok".into(),
        Err(e) => outcome(&e),
    }
}

async fn put(c: &Client, bucket: &str, key: &str) -> String {
    let body = ByteStream::from_static(b"matrix");
    match c.put_object().bucket(bucket).key(key).body(body).send().await {
        Ok(_) => "ok".into(),
        Err(e) => outcome(&e),
    }
}

async fn delete(c: &Client, bucket: &str, key: &str) -> String {
    match c.delete_object().bucket(bucket).key(key).send().await {
        Ok(_) => "ok".into(),
        Err(e) => outcome(&e),
    }
}

async fn list(c: &Client, bucket: &str) -> String {
    match c.list_objects_v2().bucket(bucket).send().await {
        Ok(_) => "ok".into(),
        Err(e) => outcome(&e),
    }
}

fn outcome<E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(e: &E) -> String {
    e.code().map_or_else(|| format!("{e:?}"), str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_second_user_and_anonymous_get_what_policies_and_acls_grant() {
    let s = server_with(|_| {}).await;
    let owner = client(&s.endpoint, ACCESS_KEY, SECRET_KEY);
    let (ak, sk) = s3_user(&s, "bob", Role::User).await;
    let bob = client(&s.endpoint, &ak, &sk);
    let anon = anonymous(&s.endpoint);

    // A bucket governed by its policy (ACLs off: BucketOwnerEnforced).
    owner.create_bucket().bucket("gov").send().await.unwrap();
    for key in ["bob/a.txt", "public/p.txt", "other/o.txt"] {
        assert_eq!(put(&owner, "gov", key).await, "ok");
    }
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::darkroom:user/bob"]},
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": "arn:aws:s3:::gov/bob/*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::gov/public/*"},
        {"Effect": "Deny", "Principal": {"AWS": ["bob"]}, "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::gov/bob/keep-*"}]});
    owner
        .put_bucket_policy()
        .bucket("gov")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put(&owner, "gov", "bob/keep-1.txt").await, "ok");

    let denied = "AccessDenied";
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "owner",
            "get other/o",
            get(&owner, "gov", "other/o.txt").await,
            "ok",
        ),
        ("owner", "list", list(&owner, "gov").await, "ok"),
        ("bob", "get bob/a", get(&bob, "gov", "bob/a.txt").await, "ok"),
        ("bob", "put bob/b", put(&bob, "gov", "bob/b.txt").await, "ok"),
        (
            "bob",
            "get public/p",
            get(&bob, "gov", "public/p.txt").await,
            "ok",
        ),
        (
            "bob",
            "get other/o",
            get(&bob, "gov", "other/o.txt").await,
            denied,
        ),
        (
            "bob",
            "put other/x",
            put(&bob, "gov", "other/x.txt").await,
            denied,
        ),
        ("bob", "list", list(&bob, "gov").await, denied),
        (
            "bob",
            "delete bob/b",
            delete(&bob, "gov", "bob/b.txt").await,
            "ok",
        ),
        (
            "bob",
            "delete bob/keep-1 (Deny wins)",
            delete(&bob, "gov", "bob/keep-1.txt").await,
            denied,
        ),
        (
            "anon",
            "get public/p",
            get(&anon, "gov", "public/p.txt").await,
            "ok",
        ),
        ("anon", "get bob/a", get(&anon, "gov", "bob/a.txt").await, denied),
        (
            "anon",
            "put public/x",
            put(&anon, "gov", "public/x.txt").await,
            denied,
        ),
        ("anon", "list", list(&anon, "gov").await, denied),
        (
            "owner",
            "delete bob/keep-1",
            delete(&owner, "gov", "bob/keep-1.txt").await,
            "ok",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, _, got, want)| got != want)
        .map(|(who, what, got, want)| format!("{who} {what}: {got}, expected {want}"))
        .collect();
    assert!(wrong.is_empty(), "policy bucket:\n{}", wrong.join("\n"));

    // A bucket governed by ACLs (ObjectWriter: ACLs on).
    owner.create_bucket().bucket("acls").send().await.unwrap();
    let rule = OwnershipControlsRule::builder()
        .object_ownership(ObjectOwnership::ObjectWriter)
        .build()
        .unwrap();
    owner
        .put_bucket_ownership_controls()
        .bucket("acls")
        .ownership_controls(OwnershipControls::builder().rules(rule).build().unwrap())
        .send()
        .await
        .unwrap();
    let body = || ByteStream::from_static(b"acl");
    owner
        .put_object()
        .bucket("acls")
        .key("open.txt")
        .acl(ObjectCannedAcl::PublicRead)
        .body(body())
        .send()
        .await
        .unwrap();
    owner
        .put_object()
        .bucket("acls")
        .key("members.txt")
        .acl(ObjectCannedAcl::AuthenticatedRead)
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(put(&owner, "acls", "private.txt").await, "ok");
    let acl = owner
        .get_object_acl()
        .bucket("acls")
        .key("open.txt")
        .send()
        .await
        .unwrap();
    let grants = format!("{:?}", acl.grants());
    assert!(
        grants.contains("http://acs.amazonaws.com/groups/global/AllUsers"),
        "{grants}"
    );
    let cases = [
        (
            "bob get open (AllUsers READ)",
            get(&bob, "acls", "open.txt").await,
            "ok",
        ),
        ("anon get open", get(&anon, "acls", "open.txt").await, "ok"),
        (
            "bob get members (AuthenticatedUsers READ)",
            get(&bob, "acls", "members.txt").await,
            "ok",
        ),
        (
            "anon get members",
            get(&anon, "acls", "members.txt").await,
            denied,
        ),
        ("bob get private", get(&bob, "acls", "private.txt").await, denied),
        (
            "anon get private",
            get(&anon, "acls", "private.txt").await,
            denied,
        ),
        (
            "bob put (no bucket WRITE)",
            put(&bob, "acls", "mine.txt").await,
            denied,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: {got}, expected {want}"))
        .collect();
    assert!(wrong.is_empty(), "ACL bucket:\n{}", wrong.join("\n"));
    // Changing an object's ACL takes WRITE_ACP, which bob lacks.
    let r = bob
        .put_object_acl()
        .bucket("acls")
        .key("open.txt")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await;
    assert_eq!(r.map_or_else(|e| outcome(&e), |_| "ok".to_owned()), denied);
}
