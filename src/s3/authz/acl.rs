//! Access control lists: canned ACLs (`x-amz-acl`), `x-amz-grant-*` headers and
//! AccessControlPolicy XML turned into an [`Acl`], the reverse for Get*Acl, and
//! what an ACL lets a caller do. The owner has FULL_CONTROL implicitly; with
//! `IgnorePublicAcls`, grants to AllUsers and AuthenticatedUsers count for nothing.

use s3s::dto;
use s3s::{S3Result, s3_error};

use super::Caller;
use crate::object_store::{Acl, Grant, Grantee, Permission};
use crate::users::ROOT_ID;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// The canonical id of an anonymous writer (an object written through a
/// public-read-write bucket), as AWS names it.
pub const ANONYMOUS_ID: &str = "65a011a29cdf8ec533ec3d1ccaae921c";

/// The ACL of a bucket or object that has none stored: private to `owner`.
pub fn private(owner: &str) -> Acl {
    Acl {
        owner: owner.to_owned(),
        grants: vec![full_control(owner)],
    }
}

fn full_control(id: &str) -> Grant {
    Grant {
        grantee: Grantee::User(id.to_owned()),
        permission: Permission::FullControl,
    }
}

/// The grants of a canned ACL for an object or bucket owned by `owner` in a
/// bucket owned by the root account.
pub fn canned(name: &str, owner: &str) -> S3Result<Vec<Grant>> {
    let mut grants = vec![full_control(owner)];
    let group = |grantee, permission| Grant { grantee, permission };
    match name {
        "public-read" => grants.push(group(Grantee::AllUsers, Permission::Read)),
        "public-read-write" => {
            grants.push(group(Grantee::AllUsers, Permission::Read));
            grants.push(group(Grantee::AllUsers, Permission::Write));
        }
        "authenticated-read" => grants.push(group(Grantee::AuthenticatedUsers, Permission::Read)),
        "bucket-owner-read" if owner != ROOT_ID => {
            grants.push(group(Grantee::User(ROOT_ID.into()), Permission::Read));
        }
        "bucket-owner-full-control" if owner != ROOT_ID => grants.push(full_control(ROOT_ID)),
        "private" | "bucket-owner-read" | "bucket-owner-full-control" => {}
        "log-delivery-write" => {
            grants.push(group(Grantee::LogDelivery, Permission::Write));
            grants.push(group(Grantee::LogDelivery, Permission::ReadAcp));
        }
        other => {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-acl: {other:?} is not a canned ACL (private, public-read, public-read-write, \
                 authenticated-read, bucket-owner-read, bucket-owner-full-control)"
            ));
        }
    }
    Ok(grants)
}

/// The grants of `x-amz-grant-*` headers (`id="name", uri="..."`), each given
/// as (permission, header value).
pub fn from_headers(headers: &[(Permission, Option<&str>)]) -> S3Result<Vec<Grant>> {
    let mut grants = Vec::new();
    for (permission, value) in headers {
        let Some(value) = value else { continue };
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, who) = part.split_once('=').ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "x-amz-grant-{}: expected id=\"...\", uri=\"...\", got {part:?}",
                    permission.as_str().to_ascii_lowercase().replace('_', "-")
                )
            })?;
            let who = who.trim().trim_matches('"');
            let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                "id" => Grantee::User(who.to_owned()),
                "uri" => group(who)?,
                "emailaddress" => {
                    return Err(s3_error!(
                        UnresolvableGrantByEmailAddress,
                        "grants by email address are not supported; grant by id"
                    ));
                }
                other => return Err(s3_error!(InvalidArgument, "unknown grantee type {other:?}")),
            };
            grants.push(Grant {
                grantee,
                permission: *permission,
            });
        }
    }
    Ok(grants)
}

fn group(uri: &str) -> S3Result<Grantee> {
    match uri {
        ALL_USERS => Ok(Grantee::AllUsers),
        AUTHENTICATED_USERS => Ok(Grantee::AuthenticatedUsers),
        LOG_DELIVERY => Ok(Grantee::LogDelivery),
        other => Err(s3_error!(InvalidArgument, "unknown grantee group {other:?}")),
    }
}

/// The grants of an AccessControlPolicy document (PutBucketAcl / PutObjectAcl body).
pub fn from_policy(policy: &dto::AccessControlPolicy) -> S3Result<Vec<Grant>> {
    let mut out = Vec::new();
    for g in policy.grants.iter().flatten() {
        let (Some(grantee), Some(permission)) = (&g.grantee, &g.permission) else {
            return Err(s3_error!(
                MalformedACLError,
                "a Grant needs a Grantee and a Permission"
            ));
        };
        let permission: Permission = permission
            .as_str()
            .parse()
            .map_err(|e| s3_error!(MalformedACLError, "Permission: {e}"))?;
        let grantee = match grantee.type_.as_str() {
            "CanonicalUser" => Grantee::User(
                grantee
                    .id
                    .clone()
                    .ok_or_else(|| s3_error!(MalformedACLError, "a CanonicalUser Grantee needs an ID"))?,
            ),
            "Group" => group(
                grantee
                    .uri
                    .as_deref()
                    .ok_or_else(|| s3_error!(MalformedACLError, "a Group Grantee needs a URI"))?,
            )?,
            "AmazonCustomerByEmail" => {
                return Err(s3_error!(
                    UnresolvableGrantByEmailAddress,
                    "grants by email address are not supported; grant by id"
                ));
            }
            other => return Err(s3_error!(MalformedACLError, "unknown Grantee type {other:?}")),
        };
        out.push(Grant { grantee, permission });
    }
    Ok(out)
}

/// The owner and grants as S3 answers them.
pub fn to_dto(acl: &Acl) -> (dto::Owner, dto::Grants) {
    let owner = dto::Owner {
        display_name: Some(acl.owner.clone()),
        id: Some(acl.owner.clone()),
    };
    let grants = acl
        .grants
        .iter()
        .map(|g| {
            let grantee = match &g.grantee {
                Grantee::User(id) => dto::Grantee {
                    display_name: Some(id.clone()),
                    email_address: None,
                    id: Some(id.clone()),
                    type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
                    uri: None,
                },
                other => dto::Grantee {
                    display_name: None,
                    email_address: None,
                    id: None,
                    type_: dto::Type::from_static(dto::Type::GROUP),
                    uri: Some(
                        match other {
                            Grantee::AllUsers => ALL_USERS,
                            Grantee::AuthenticatedUsers => AUTHENTICATED_USERS,
                            _ => LOG_DELIVERY,
                        }
                        .to_owned(),
                    ),
                },
            };
            dto::Grant {
                grantee: Some(grantee),
                permission: Some(dto::Permission::from(g.permission.as_str().to_owned())),
            }
        })
        .collect();
    (owner, grants)
}

/// Whether any grant is to everyone or to every signed-in caller.
pub fn is_public(grants: &[Grant]) -> bool {
    grants
        .iter()
        .any(|g| matches!(g.grantee, Grantee::AllUsers | Grantee::AuthenticatedUsers))
}

/// Whether the ACL gives nothing beyond its owner's FULL_CONTROL (what
/// BucketOwnerEnforced accepts).
pub fn owner_only(acl: &Acl) -> bool {
    acl.grants
        .iter()
        .all(|g| g.grantee == Grantee::User(acl.owner.clone()))
}

/// Whether `acl` gives `caller` `wanted`.
pub fn allows(acl: &Acl, caller: &Caller, wanted: Permission, ignore_public: bool) -> bool {
    let id = caller.canonical_id();
    if id == Some(acl.owner.as_str()) {
        return true;
    }
    acl.grants.iter().any(|g| {
        let covers = g.permission == wanted || g.permission == Permission::FullControl;
        let to_caller = match &g.grantee {
            Grantee::User(u) => id == Some(u.as_str()),
            Grantee::AllUsers => !ignore_public,
            Grantee::AuthenticatedUsers => !ignore_public && *caller != Caller::Anonymous,
            Grantee::LogDelivery => false,
        };
        covers && to_caller
    })
}
