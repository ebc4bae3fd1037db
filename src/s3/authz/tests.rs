use std::collections::HashMap;

use super::policy::{Decision, Policy, Request, glob};
use super::{Caller, acl};
use crate::object_store::{Acl, Grant, Grantee, Permission};
use crate::users::{Principal, Role};

fn user(name: &str) -> Caller {
    Caller::User {
        who: Principal {
            user: name.into(),
            role: Role::User,
        },
        access_key: format!("DRK{}", name.to_ascii_uppercase()),
    }
}

fn keys(caller: &Caller, extra: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut k: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(n) = caller.user_name() {
        k.insert("aws:username".into(), vec![n.into()]);
    }
    for (a, b) in extra {
        k.entry((*a).to_owned()).or_default().push((*b).to_owned());
    }
    k
}

fn decide(
    policy: &Policy,
    caller: &Caller,
    action: &str,
    resource: &str,
    extra: &[(&str, &str)],
) -> Decision {
    let keys = keys(caller, extra);
    policy.evaluate(&Request {
        caller,
        action,
        resource,
        keys: &keys,
    })
}

fn parse(json: &str) -> Policy {
    Policy::parse(json, "media").unwrap()
}

#[test]
fn wildcards_match_actions_and_resources() {
    assert!(glob("s3:get*", "s3:getobject"));
    assert!(glob(
        "arn:aws:s3:::media/inbox/*",
        "arn:aws:s3:::media/inbox/a/b.png"
    ));
    assert!(!glob("arn:aws:s3:::media/inbox/*", "arn:aws:s3:::media/jobs/x"));
    assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
    assert!(glob("*", "") && glob("**x", "yyx"));
}

#[test]
fn public_read_allows_anyone_to_get_objects_only() {
    let p = parse(&crate::s3::public_read_policy("media"));
    let anon = Caller::Anonymous;
    let obj = "arn:aws:s3:::media/a.png";
    assert_eq!(decide(&p, &anon, "s3:GetObject", obj, &[]), Decision::Allow);
    assert_eq!(
        decide(&p, &anon, "s3:PutObject", obj, &[]),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(&p, &anon, "s3:ListBucket", "arn:aws:s3:::media", &[]),
        Decision::NotApplicable
    );
    assert!(p.is_public());
}

#[test]
fn a_user_is_confined_to_their_prefix_by_a_policy_variable() {
    let p = parse(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::darkroom:user/ana","bob"]},
           "Action":["s3:PutObject","s3:GetObject"],
           "Resource":"arn:aws:s3:::media/inbox/${aws:username}/*"},
          {"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::media",
           "Condition":{"StringLike":{"s3:prefix":"inbox/${aws:username}/*"}}}]}"#,
    );
    let (ana, bob, eve) = (user("ana"), user("bob"), user("eve"));
    let put = "s3:PutObject";
    assert_eq!(
        decide(&p, &ana, put, "arn:aws:s3:::media/inbox/ana/x.png", &[]),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &bob, put, "arn:aws:s3:::media/inbox/bob/x.png", &[]),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &ana, put, "arn:aws:s3:::media/inbox/bob/x.png", &[]),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(&p, &ana, put, "arn:aws:s3:::media/x.png", &[]),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(&p, &eve, put, "arn:aws:s3:::media/inbox/eve/x.png", &[]),
        Decision::NotApplicable,
        "not a named principal"
    );
    let list = |c: &Caller, prefix: &str| {
        decide(
            &p,
            c,
            "s3:ListBucket",
            "arn:aws:s3:::media",
            &[("s3:prefix", prefix)],
        )
    };
    assert_eq!(list(&ana, "inbox/ana/"), Decision::Allow);
    assert_eq!(list(&ana, "inbox/"), Decision::NotApplicable);
    assert_eq!(
        list(&Caller::Anonymous, "inbox//"),
        Decision::NotApplicable,
        "no user name"
    );
    assert!(!p.is_public() || p.is_public(), "evaluates");
}

#[test]
fn explicit_deny_wins_and_not_action_and_keys_work() {
    let p = parse(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::media","arn:aws:s3:::media/*"]},
          {"Effect":"Deny","Principal":{"AWS":"DRKANA"},"NotAction":"s3:Get*","Resource":"arn:aws:s3:::media/*"}]}"#,
    );
    let ana = user("ana");
    let obj = "arn:aws:s3:::media/k";
    assert_eq!(decide(&p, &ana, "s3:GetObject", obj, &[]), Decision::Allow);
    assert_eq!(decide(&p, &ana, "s3:DeleteObject", obj, &[]), Decision::Deny);
    assert_eq!(
        decide(&p, &user("bob"), "s3:DeleteObject", obj, &[]),
        Decision::Allow
    );
}

#[test]
fn conditions_on_address_transport_and_headers() {
    let p = parse(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*",
           "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","::1"]},"Bool":{"aws:SecureTransport":"false"}}},
          {"Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::media/*",
           "Condition":{"StringEquals":{"s3:x-amz-acl":"bucket-owner-full-control"}}},
          {"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*",
           "Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"},"StringEquals":{"aws:SecureTransport":"true"}}}]}"#,
    );
    let a = Caller::Anonymous;
    let obj = "arn:aws:s3:::media/k";
    let get = |ip: &str, tls: &str| {
        decide(
            &p,
            &a,
            "s3:GetObject",
            obj,
            &[("aws:sourceip", ip), ("aws:securetransport", tls)],
        )
    };
    assert_eq!(get("10.1.2.3", "false"), Decision::Allow);
    assert_eq!(get("192.168.1.1", "false"), Decision::NotApplicable);
    assert_eq!(get("::1", "false"), Decision::Allow);
    assert_eq!(get("192.168.1.1", "true"), Decision::Deny);
    assert_eq!(
        decide(
            &p,
            &a,
            "s3:PutObject",
            obj,
            &[("s3:x-amz-acl", "bucket-owner-full-control")]
        ),
        Decision::Allow
    );
    assert_eq!(decide(&p, &a, "s3:PutObject", obj, &[]), Decision::NotApplicable);
    assert!(
        p.is_public(),
        "a header condition does not narrow who: anyone may still PutObject"
    );
}

#[test]
fn malformed_policies_name_what_is_wrong() {
    let err = |json: &str| Policy::parse(json, "media").unwrap_err().0;
    assert!(err("{").contains("not JSON"));
    assert!(err(r#"{"Version":"2012-10-17"}"#).contains("Statement"));
    let e = err(
        r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*"}]}"#,
    );
    assert!(e.contains("Statement[0].Effect"), "{e}");
    let e =
        err(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ec2:RunInstances","Resource":"*"}}"#);
    assert!(
        e.contains("Statement[0].Action") && e.contains("ec2:RunInstances"),
        "{e}"
    );
    let e = err(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}}"#,
    );
    assert!(e.contains("Statement[0].Resource") && e.contains("other"), "{e}");
    let e =
        err(r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*"}}"#);
    assert!(e.contains("Principal"), "{e}");
    let e = err(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.300/8"}}}}"#,
    );
    assert!(e.contains("aws:SourceIp") && e.contains("10.0.0.300"), "{e}");
    let e = err(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*","Condition":{"NumericLessThan":{"s3:max-keys":"10"}}}}"#,
    );
    assert!(e.contains("NumericLessThan"), "{e}");
}

#[test]
fn acls_grant_owners_groups_and_named_users() {
    let acl = Acl {
        owner: "ana".into(),
        grants: vec![
            Grant {
                grantee: Grantee::AllUsers,
                permission: Permission::Read,
            },
            Grant {
                grantee: Grantee::User("bob".into()),
                permission: Permission::WriteAcp,
            },
        ],
    };
    let (ana, bob, anon) = (user("ana"), user("bob"), Caller::Anonymous);
    assert!(acl::allows(&acl, &ana, Permission::WriteAcp, false), "the owner");
    assert!(acl::allows(&acl, &anon, Permission::Read, false));
    assert!(
        !acl::allows(&acl, &anon, Permission::Read, true),
        "IgnorePublicAcls"
    );
    assert!(acl::allows(&acl, &bob, Permission::WriteAcp, true));
    assert!(!acl::allows(&acl, &bob, Permission::ReadAcp, true));
    let grants = acl::canned("authenticated-read", "ana").unwrap();
    let auth = Acl {
        owner: "ana".into(),
        grants,
    };
    assert!(acl::allows(&auth, &bob, Permission::Read, false));
    assert!(!acl::allows(&auth, &anon, Permission::Read, false));
    assert!(acl::canned("world-writable", "ana").is_err());
    let from = acl::from_headers(&[(
        Permission::Read,
        Some(r#"id="bob", uri="http://acs.amazonaws.com/groups/global/AllUsers""#),
    )])
    .unwrap();
    assert_eq!(from.len(), 2);
    assert!(acl::is_public(&from));
}

#[test]
fn operations_are_the_actions_aws_names() {
    use super::action_of;
    let puts = [
        "PutObject",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    ];
    for op in puts {
        assert_eq!(action_of(op), "s3:PutObject", "{op}");
    }
    assert_eq!(action_of("HeadObject"), "s3:GetObject");
    assert_eq!(action_of("ListObjectsV2"), "s3:ListBucket");
    assert_eq!(action_of("AbortMultipartUpload"), "s3:AbortMultipartUpload");
    assert_eq!(action_of("GetBucketAcl"), "s3:GetBucketAcl");
}

#[test]
fn canonical_user_principals_name_users_and_unknown_kinds_are_refused() {
    let p = parse(
        r#"{"Statement":{"Effect":"Allow","Principal":{"CanonicalUser":"ana"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::media/*"}}"#,
    );
    let obj = "arn:aws:s3:::media/k";
    assert_eq!(
        decide(&p, &user("ana"), "s3:GetObject", obj, &[]),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &user("bob"), "s3:GetObject", obj, &[]),
        Decision::NotApplicable
    );
    let e = Policy::parse(
        r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"s3:GetObject","Resource":"*"}}"#,
        "media",
    )
    .unwrap_err();
    assert!(e.0.contains("Statement[0].Principal.Service"), "{e}");
}
