//! ACLs, PublicAccessBlock and OwnershipControls with real clients: a canned
//! public-read object is readable anonymously only where ACLs are on and no
//! PublicAccessBlock says otherwise; BucketOwnerEnforced (the default) refuses
//! ACLs; grants round-trip as AccessControlPolicy XML through boto3 and as
//! `--grant-*` headers through awscli; under ObjectWriter a user owns what they
//! write.

use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ObjectCannedAcl, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration,
};
use darkroom::users::Role;

use crate::s3_users::{ok, s3_user};
use crate::support::{ACCESS_KEY, SECRET_KEY, aws_as, client, code, server};

async fn anonymous_get(endpoint: &str, path: &str) -> u16 {
    reqwest::get(format!("{endpoint}/{path}"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn put_public(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"public bytes"))
}

#[tokio::test]
async fn a_public_read_object_is_public_unless_acls_are_off_or_blocked() {
    let s = server().await;
    // The default: BucketOwnerEnforced, ACLs refused.
    s.client.create_bucket().bucket("enforced").send().await.unwrap();
    let ownership = s
        .client
        .get_bucket_ownership_controls()
        .bucket("enforced")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ownership.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    assert_eq!(
        code(put_public(&s.client, "enforced", "a.png").send().await),
        "AccessControlListNotSupported"
    );
    s.client
        .put_object()
        .bucket("enforced")
        .key("a.png")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "enforced/a.png").await, 403);
    assert_eq!(
        code(
            s.client
                .create_bucket()
                .bucket("bad")
                .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
                .send()
                .await
        ),
        "InvalidBucketAclWithObjectOwnership"
    );

    // ACLs on: the canned ACL makes the object public.
    s.client
        .create_bucket()
        .bucket("acls")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    put_public(&s.client, "acls", "p.png").send().await.unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "acls/p.png").await, 200);
    let private = s
        .client
        .put_object()
        .bucket("acls")
        .key("q.png")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    private.unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "acls/q.png").await, 403);
    // IgnorePublicAcls hides it; BlockPublicAcls refuses new public ACLs.
    let block = |ignore, refuse| {
        PublicAccessBlockConfiguration::builder()
            .ignore_public_acls(ignore)
            .block_public_acls(refuse)
            .build()
    };
    s.client
        .put_public_access_block()
        .bucket("acls")
        .public_access_block_configuration(block(true, false))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "acls/p.png").await, 403);
    s.client
        .put_public_access_block()
        .bucket("acls")
        .public_access_block_configuration(block(false, true))
        .send()
        .await
        .unwrap();
    let got = s
        .client
        .get_public_access_block()
        .bucket("acls")
        .send()
        .await
        .unwrap();
    let c = got.public_access_block_configuration().unwrap();
    assert_eq!(
        (c.block_public_acls(), c.ignore_public_acls()),
        (Some(true), Some(false))
    );
    assert_eq!(anonymous_get(&s.endpoint, "acls/p.png").await, 200);
    assert_eq!(
        code(put_public(&s.client, "acls", "r.png").send().await),
        "AccessDenied"
    );
    s.client
        .delete_public_access_block()
        .bucket("acls")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(s.client.get_public_access_block().bucket("acls").send().await),
        "NoSuchPublicAccessBlockConfiguration"
    );
    // Turning ACLs off hides it again.
    let enforced = OwnershipControls::builder()
        .rules(
            OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    s.client
        .put_bucket_ownership_controls()
        .bucket("acls")
        .ownership_controls(enforced)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "acls/p.png").await, 403);
}

const BOTO3_ACL_SCRIPT: &str = r#"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
                  aws_secret_access_key=sys.argv[3], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket="shared-acl", ObjectOwnership="ObjectWriter")
owner = s3.get_bucket_acl(Bucket="shared-acl")["Owner"]
assert owner["ID"] == "darkroom", owner
grants = [
    {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"},
    {"Grantee": {"Type": "CanonicalUser", "ID": "bob"}, "Permission": "READ"},
    {"Grantee": {"Type": "CanonicalUser", "ID": "bob"}, "Permission": "WRITE"},
    {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"}, "Permission": "READ_ACP"},
]
s3.put_bucket_acl(Bucket="shared-acl", AccessControlPolicy={"Owner": owner, "Grants": grants})
got = s3.get_bucket_acl(Bucket="shared-acl")["Grants"]
def norm(gs):
    return sorted((g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in gs)
assert norm(got) == norm(grants), got
s3.put_object(Bucket="shared-acl", Key="o.png", Body=b"x")
s3.put_object_acl(Bucket="shared-acl", Key="o.png", AccessControlPolicy={"Owner": owner, "Grants": [
    {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"}]})
got = s3.get_object_acl(Bucket="shared-acl", Key="o.png")
assert norm(got["Grants"]) == [("http://acs.amazonaws.com/groups/global/AllUsers", "READ")], got
try:
    s3.put_object_acl(Bucket="shared-acl", Key="o.png", AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "a@b.c"}, "Permission": "READ"}]})
    raise SystemExit("a grant by email was accepted")
except s3.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "UnresolvableGrantByEmailAddress", e.response
print("acl ok")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn grants_round_trip_and_writers_own_what_they_write() {
    let s = server().await;
    let (bk, bs) = s3_user(&s, "bob", Role::User).await;
    let (ck, cs) = s3_user(&s, "cid", Role::User).await;
    let out = tokio::task::block_in_place(|| {
        Command::new("python3")
            .args(["-c", BOTO3_ACL_SCRIPT, &s.endpoint, ACCESS_KEY, SECRET_KEY])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "boto3 script failed (is boto3 installed? the test command installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "acl ok");
    assert_eq!(anonymous_get(&s.endpoint, "shared-acl/o.png").await, 200);

    // Bob may list and write (bucket READ, WRITE); what he writes is his.
    let bob = client(&s.endpoint, &bk, &bs);
    bob.list_objects_v2().bucket("shared-acl").send().await.unwrap();
    bob.put_object()
        .bucket("shared-acl")
        .key("bobs.png")
        .body(ByteStream::from_static(b"bob's"))
        .send()
        .await
        .unwrap();
    let acl = s
        .client
        .get_object_acl()
        .bucket("shared-acl")
        .key("bobs.png")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.owner().unwrap().id(), Some("bob"));
    let listed = s
        .client
        .list_objects_v2()
        .bucket("shared-acl")
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    let owners: Vec<(&str, &str)> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap(), o.owner().unwrap().id().unwrap()))
        .collect();
    assert_eq!(owners, [("bobs.png", "bob"), ("o.png", "darkroom")]);
    bob.get_object()
        .bucket("shared-acl")
        .key("bobs.png")
        .send()
        .await
        .unwrap();
    // Cid may read the ACL (AuthenticatedUsers READ_ACP) but not list, write or read bob's object.
    let cid = client(&s.endpoint, &ck, &cs);
    cid.get_bucket_acl().bucket("shared-acl").send().await.unwrap();
    assert_eq!(
        code(cid.list_objects_v2().bucket("shared-acl").send().await),
        "AccessDenied"
    );
    assert_eq!(
        code(cid.get_object().bucket("shared-acl").key("bobs.png").send().await),
        "AccessDenied"
    );
    // Bob, the owner, grants cid read with awscli's --grant-read header.
    tokio::task::block_in_place(|| {
        ok(aws_as(
            &s.endpoint,
            (&bk, &bs),
            &[
                "s3api",
                "put-object-acl",
                "--bucket",
                "shared-acl",
                "--key",
                "bobs.png",
                "--grant-read",
                "id=cid",
            ],
        ));
        let shown = ok(aws_as(
            &s.endpoint,
            (ACCESS_KEY, SECRET_KEY),
            &[
                "s3api",
                "get-object-acl",
                "--bucket",
                "shared-acl",
                "--key",
                "bobs.png",
            ],
        ));
        assert!(shown.contains("\"cid\"") && shown.contains("READ"), "{shown}");
    });
    cid.get_object()
        .bucket("shared-acl")
        .key("bobs.png")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            cid.put_object_acl()
                .bucket("shared-acl")
                .key("bobs.png")
                .acl(ObjectCannedAcl::PublicRead)
                .send()
                .await
        ),
        "AccessDenied"
    );
    // A copy gets the ACL its request names, never its source's.
    bob.copy_object()
        .bucket("shared-acl")
        .key("bobs-copy.png")
        .copy_source("shared-acl/bobs.png")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "shared-acl/bobs-copy.png").await, 200);
    s.client
        .copy_object()
        .bucket("shared-acl")
        .key("o-copy.png")
        .copy_source("shared-acl/o.png")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "shared-acl/o.png").await, 200);
    assert_eq!(anonymous_get(&s.endpoint, "shared-acl/o-copy.png").await, 403);
    // A multipart upload's ACL is the one it was created with.
    let up = bob
        .create_multipart_upload()
        .bucket("shared-acl")
        .key("big.bin")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = bob
        .upload_part()
        .bucket("shared-acl")
        .key("big.bin")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"one small part"))
        .send()
        .await
        .unwrap();
    let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .parts(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(1)
                .e_tag(part.e_tag().unwrap())
                .build(),
        )
        .build();
    bob.complete_multipart_upload()
        .bucket("shared-acl")
        .key("big.bin")
        .upload_id(id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(&s.endpoint, "shared-acl/big.bin").await, 200);
}
