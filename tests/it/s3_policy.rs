//! Bucket policies with real clients: awscli's `put-bucket-policy` confining a
//! user to `inbox/${aws:username}/`, anonymous reads only once a public-read
//! policy (or the `public_read` config key) says so, explicit Deny over Allow,
//! `aws:SourceIp`, presigned URLs carrying only their signer's rights,
//! `MalformedPolicy` naming the mistake, and policies surviving a restart.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use darkroom::s3::BucketConfig;
use darkroom::users::Role;
use serde_json::json;

use crate::s3_users::{failed, ok, s3_user};
use crate::support::{ACCESS_KEY, SECRET_KEY, aws_as, client, code, server, server_with};

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(), String> {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"bytes"))
        .send()
        .await
        .map(drop)
        .map_err(|e| code::<(), _>(Err(e)))
}

async fn anonymous_get(endpoint: &str, path: &str) -> u16 {
    reqwest::get(format!("{endpoint}/{path}"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_confined_to_their_inbox_writes_there_and_nowhere_else() {
    let s = server().await;
    let (ak, sk) = s3_user(&s, "ana", Role::User).await;
    s.client.create_bucket().bucket("shared").send().await.unwrap();
    put(&s.client, "shared", "jobs/1/out.png").await.unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "OwnInbox", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
         "Resource": "arn:aws:s3:::shared/inbox/${aws:username}/*"},
        {"Sid": "ListOwnInbox", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::shared",
         "Condition": {"StringLike": {"s3:prefix": "inbox/${aws:username}/*"}}},
        {"Sid": "ReadJobs", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::darkroom:user/ana"]},
         "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/jobs/*"}]});
    let file = s.dir.path().join("policy.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    let root = (ACCESS_KEY, SECRET_KEY);
    let policy_arg = format!("file://{}", file.display());
    tokio::task::block_in_place(|| {
        ok(aws_as(
            &s.endpoint,
            root,
            &[
                "s3api",
                "put-bucket-policy",
                "--bucket",
                "shared",
                "--policy",
                &policy_arg,
            ],
        ));
        let got = ok(aws_as(
            &s.endpoint,
            root,
            &["s3api", "get-bucket-policy", "--bucket", "shared"],
        ));
        assert!(got.contains("OwnInbox"), "{got}");
    });

    let ana = client(&s.endpoint, &ak, &sk);
    put(&ana, "shared", "inbox/ana/sketch.png").await.unwrap();
    assert_eq!(
        put(&ana, "shared", "inbox/bob/sketch.png").await,
        Err("AccessDenied".into())
    );
    assert_eq!(
        put(&ana, "shared", "jobs/1/out.png").await,
        Err("AccessDenied".into())
    );
    assert_eq!(
        put(&ana, "shared", "sketch.png").await,
        Err("AccessDenied".into())
    );
    // Multipart uploads are PutObject too.
    let denied = ana
        .create_multipart_upload()
        .bucket("shared")
        .key("elsewhere/big.bin")
        .send()
        .await;
    assert_eq!(code(denied), "AccessDenied");
    let up = ana
        .create_multipart_upload()
        .bucket("shared")
        .key("inbox/ana/big.bin")
        .send()
        .await
        .unwrap();
    // Aborting is an action of its own (s3:AbortMultipartUpload), not granted here.
    let abort = |c: &aws_sdk_s3::Client| {
        c.abort_multipart_upload()
            .bucket("shared")
            .key("inbox/ana/big.bin")
            .upload_id(up.upload_id().unwrap())
            .send()
    };
    assert_eq!(code(abort(&ana).await), "AccessDenied");
    abort(&s.client).await.unwrap();
    // Reads: her inbox and the jobs, listing only her inbox.
    ana.get_object()
        .bucket("shared")
        .key("jobs/1/out.png")
        .send()
        .await
        .unwrap();
    let listed = ana
        .list_objects_v2()
        .bucket("shared")
        .prefix("inbox/ana/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(1));
    assert_eq!(
        code(ana.list_objects_v2().bucket("shared").send().await),
        "AccessDenied"
    );
    assert_eq!(
        code(
            ana.list_objects_v2()
                .bucket("shared")
                .prefix("inbox/")
                .send()
                .await
        ),
        "AccessDenied"
    );
    // A condition on the request's x-amz-acl header.
    let acl_policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "ana"}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::drop/*",
        "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}]});
    s.client.create_bucket().bucket("drop").send().await.unwrap();
    s.client
        .put_bucket_policy()
        .bucket("drop")
        .policy(acl_policy.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put(&ana, "drop", "a.png").await, Err("AccessDenied".into()));
    ana.put_object()
        .bucket("drop")
        .key("a.png")
        .acl(aws_sdk_s3::types::ObjectCannedAcl::BucketOwnerFullControl)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    // Another user: their own inbox only, and not the jobs.
    let (bk, bs) = s3_user(&s, "bob", Role::User).await;
    let bob = client(&s.endpoint, &bk, &bs);
    put(&bob, "shared", "inbox/bob/a.png").await.unwrap();
    assert_eq!(
        code(
            bob.get_object()
                .bucket("shared")
                .key("inbox/ana/sketch.png")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(
            bob.get_object()
                .bucket("shared")
                .key("jobs/1/out.png")
                .send()
                .await
        ),
        "AccessDenied"
    );
    // Copying within her inbox is a PutObject there and a GetObject of the source.
    ana.copy_object()
        .bucket("shared")
        .key("inbox/ana/copy.png")
        .copy_source("shared/inbox/ana/sketch.png")
        .send()
        .await
        .unwrap();
    // Copying out of someone else's inbox needs read rights on the source.
    let copied = bob
        .copy_object()
        .bucket("shared")
        .key("inbox/bob/stolen.png")
        .copy_source("shared/inbox/ana/sketch.png")
        .send()
        .await;
    assert_eq!(code(copied), "AccessDenied");
    // Batch deletes are checked key by key: his own goes, hers is refused.
    let id = |k: &str| {
        aws_sdk_s3::types::ObjectIdentifier::builder()
            .key(k)
            .build()
            .unwrap()
    };
    let batch = bob
        .delete_objects()
        .bucket("shared")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .objects(id("inbox/ana/sketch.png"))
                .objects(id("inbox/bob/a.png"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let refused: Vec<(&str, &str)> = batch
        .errors()
        .iter()
        .map(|e| (e.key().unwrap(), e.code().unwrap()))
        .collect();
    assert_eq!(refused, [("inbox/ana/sketch.png", "AccessDenied")]);
    let deleted: Vec<&str> = batch.deleted().iter().filter_map(|d| d.key()).collect();
    assert_eq!(deleted, ["inbox/bob/a.png"]);
    s.client
        .head_object()
        .bucket("shared")
        .key("inbox/ana/sketch.png")
        .send()
        .await
        .unwrap();
    // No user manages the policy.
    assert_eq!(
        code(ana.delete_bucket_policy().bucket("shared").send().await),
        "AccessDenied"
    );
}

#[tokio::test]
async fn anonymous_reads_need_a_public_read_policy() {
    let s = server_with(|c| {
        c.s3.buckets = vec![BucketConfig {
            name: "configured-public".into(),
            public_read: true,
            expire_days: 0,
        }];
    })
    .await;
    s.client.create_bucket().bucket("gallery").send().await.unwrap();
    put(&s.client, "gallery", "a.png").await.unwrap();
    put(&s.client, "configured-public", "b.png").await.unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "gallery/a.png").await, 403);
    // The config key is a policy now, readable as one.
    assert_eq!(anonymous_get(&s.endpoint, "configured-public/b.png").await, 200);
    let written = s
        .client
        .get_bucket_policy()
        .bucket("configured-public")
        .send()
        .await
        .unwrap();
    assert!(written.policy().unwrap().contains("s3:GetObject"));

    s.client
        .put_bucket_policy()
        .bucket("gallery")
        .policy(darkroom::s3::public_read_policy("gallery"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "gallery/a.png").await, 200);
    let status = s
        .client
        .get_bucket_policy_status()
        .bucket("gallery")
        .send()
        .await
        .unwrap();
    assert_eq!(status.policy_status().unwrap().is_public(), Some(true));
    // Reading is all it grants.
    let r = reqwest::Client::new()
        .put(format!("{}/gallery/evil.png", s.endpoint))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(anonymous_get(&s.endpoint, "gallery?list-type=2").await, 403);
    // RestrictPublicBuckets turns the public policy off for anonymous callers.
    let block = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .restrict_public_buckets(true)
        .build();
    s.client
        .put_public_access_block()
        .bucket("gallery")
        .public_access_block_configuration(block)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "gallery/a.png").await, 403);
    // BlockPublicPolicy refuses a public policy (the one in place stays).
    let block = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .block_public_policy(true)
        .build();
    s.client
        .put_public_access_block()
        .bucket("gallery")
        .public_access_block_configuration(block)
        .send()
        .await
        .unwrap();
    let refused = s
        .client
        .put_bucket_policy()
        .bucket("gallery")
        .policy(darkroom::s3::public_read_policy("gallery"))
        .send()
        .await;
    assert_eq!(code(refused), "AccessDenied");
    s.client
        .delete_public_access_block()
        .bucket("gallery")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "gallery/a.png").await, 200);
    s.client
        .delete_bucket_policy()
        .bucket("gallery")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "gallery/a.png").await, 403);
    assert_eq!(
        code(s.client.get_bucket_policy().bucket("gallery").send().await),
        "NoSuchBucketPolicy"
    );
}

#[tokio::test]
async fn explicit_deny_wins_and_source_addresses_are_checked() {
    let s = server().await;
    s.client.create_bucket().bucket("pics").send().await.unwrap();
    for key in ["open/a.png", "secret/b.png", "lan/c.png", "office/d.png"] {
        put(&s.client, "pics", key).await.unwrap();
    }
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pics/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:Get*", "Resource": "arn:aws:s3:::pics/secret/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pics/lan/*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pics/office/*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.20.0.0/16"]}}}]});
    s.client
        .put_bucket_policy()
        .bucket("pics")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "pics/open/a.png").await, 200);
    assert_eq!(anonymous_get(&s.endpoint, "pics/secret/b.png").await, 403);
    assert_eq!(
        anonymous_get(&s.endpoint, "pics/lan/c.png").await,
        200,
        "from 127.0.0.1"
    );
    assert_eq!(
        anonymous_get(&s.endpoint, "pics/office/d.png").await,
        403,
        "not from 10.20/16"
    );
    // A user is denied as anyone; the root pair is the owner and is not.
    let (ak, sk) = s3_user(&s, "ana", Role::User).await;
    let ana = client(&s.endpoint, &ak, &sk);
    assert_eq!(
        code(ana.get_object().bucket("pics").key("secret/b.png").send().await),
        "AccessDenied"
    );
    ana.get_object()
        .bucket("pics")
        .key("open/a.png")
        .send()
        .await
        .unwrap();
    s.client
        .get_object()
        .bucket("pics")
        .key("secret/b.png")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_presigned_url_carries_only_its_signers_rights() {
    let s = server().await;
    s.client.create_bucket().bucket("private").send().await.unwrap();
    put(&s.client, "private", "x.png").await.unwrap();
    let (ak, sk) = s3_user(&s, "ana", Role::User).await;
    let ana = client(&s.endpoint, &ak, &sk);
    let presign = |c: aws_sdk_s3::Client| async move {
        c.get_object()
            .bucket("private")
            .key("x.png")
            .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
            .await
            .unwrap()
            .uri()
            .to_owned()
    };
    let http = reqwest::Client::new();
    let anas = presign(ana.clone()).await;
    let r = http.get(&anas).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("AccessDenied"));
    let roots = presign(s.client.clone()).await;
    assert_eq!(http.get(&roots).send().await.unwrap().status(), 200);
    // Granted read, the same user's URL works.
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": ak.clone()}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::private/*"}]});
    s.client
        .put_bucket_policy()
        .bucket("private")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(http.get(&anas).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_policies_are_refused_by_name_and_good_ones_survive_a_restart() {
    let s = server().await;
    s.client.create_bucket().bucket("keep").send().await.unwrap();
    let refused = |policy: String| {
        let c = s.client.clone();
        async move {
            let e = c
                .put_bucket_policy()
                .bucket("keep")
                .policy(policy)
                .send()
                .await
                .unwrap_err();
            let e = e.into_service_error();
            (
                aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
                    .unwrap_or_default()
                    .to_owned(),
                aws_sdk_s3::error::ProvideErrorMetadata::message(&e)
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let (c, m) = refused("{not json".into()).await;
    assert_eq!(c, "MalformedPolicy");
    assert!(m.contains("JSON"), "{m}");
    let (c, m) = refused(
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other-bucket/*"}]})
        .to_string(),
    )
    .await;
    assert_eq!(c, "MalformedPolicy");
    assert!(
        m.contains("Statement[0].Resource") && m.contains("other-bucket"),
        "{m}"
    );
    let (_, m) = refused(
        json!({"Statement": [{"Effect": "Permit", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::keep/*"}]})
        .to_string(),
    )
    .await;
    assert!(m.contains("Statement[0].Effect"), "{m}");
    let out = tokio::task::block_in_place(|| {
        aws_as(
            &s.endpoint,
            (ACCESS_KEY, SECRET_KEY),
            &[
                "s3api",
                "put-bucket-policy",
                "--bucket",
                "keep",
                "--policy",
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"iam:PassRole","Resource":"*"}]}"#,
            ],
        )
    });
    let err = failed(out);
    assert!(
        err.contains("MalformedPolicy") && err.contains("iam:PassRole"),
        "{err}"
    );

    let good = darkroom::s3::public_read_policy("keep");
    s.client
        .put_bucket_policy()
        .bucket("keep")
        .policy(good.clone())
        .send()
        .await
        .unwrap();
    let crate::support::TestServer { daemon, dir, .. } = s;
    daemon.shutdown().await;
    let (daemon, root) = crate::support::daemon_on(&crate::support::test_config(&dir)).await;
    let got = root.get_bucket_policy().bucket("keep").send().await.unwrap();
    assert_eq!(got.policy(), Some(good.as_str()));
    daemon.shutdown().await;
}
