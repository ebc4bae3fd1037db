//! Who owns what a request writes and which ACL it gets, under the bucket's
//! OwnershipControls and PublicAccessBlock: with BucketOwnerEnforced (the
//! default) ACLs are off — a write may only say `bucket-owner-full-control` (or
//! `private`), anything else is `AccessControlListNotSupported` — and the bucket
//! owner owns every object; with ObjectWriter the writer owns what they write
//! (BucketOwnerPreferred: unless written `bucket-owner-full-control`).
//! `BlockPublicAcls` refuses an ACL that grants AllUsers or AuthenticatedUsers.

use s3s::dto;
use s3s::{S3Result, s3_error};

use super::{Caller, acl};
use crate::object_store::{Acl, BucketMeta, Grant, ObjectOwnership, Permission};
use crate::users::ROOT_ID;

/// What a request says about an ACL: a canned name, `x-amz-grant-*` headers
/// (permission, value), and (PutBucketAcl / PutObjectAcl) an
/// AccessControlPolicy body.
#[derive(Default)]
pub struct AclRequest<'a> {
    pub canned: Option<&'a str>,
    pub headers: Vec<(Permission, Option<&'a str>)>,
    pub body: Option<&'a dto::AccessControlPolicy>,
}

/// The `x-amz-grant-*` fields of an input, as [`AclRequest::headers`].
macro_rules! grant_headers {
    ($input:expr) => {
        vec![
            (
                $crate::object_store::Permission::FullControl,
                $input.grant_full_control.as_deref(),
            ),
            (
                $crate::object_store::Permission::Read,
                $input.grant_read.as_deref(),
            ),
            (
                $crate::object_store::Permission::ReadAcp,
                $input.grant_read_acp.as_deref(),
            ),
            (
                $crate::object_store::Permission::WriteAcp,
                $input.grant_write_acp.as_deref(),
            ),
        ]
    };
}
pub(crate) use grant_headers;

impl AclRequest<'_> {
    /// The grants asked for, for an owner `owner`; `None` when nothing was asked.
    fn grants(&self, owner: &str) -> S3Result<Option<Vec<Grant>>> {
        let from_headers = acl::from_headers(&self.headers)?;
        let given = usize::from(self.canned.is_some())
            + usize::from(!from_headers.is_empty())
            + usize::from(self.body.is_some());
        if given > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "give a canned ACL (x-amz-acl), x-amz-grant-* headers or an AccessControlPolicy, only one"
            ));
        }
        Ok(match (self.canned, self.body) {
            (Some(name), _) => Some(acl::canned(name, owner)?),
            (None, Some(body)) => Some(acl::from_policy(body)?),
            (None, None) if !from_headers.is_empty() => Some(from_headers),
            (None, None) => None,
        })
    }

    /// Whether the request is one BucketOwnerEnforced accepts (no ACL, or one
    /// giving the bucket owner everything).
    fn fits_enforced(&self) -> bool {
        matches!(self.canned, None | Some("bucket-owner-full-control" | "private"))
            && self.headers.iter().all(|(_, v)| v.is_none())
            && self.body.is_none_or(|b| {
                acl::from_policy(b).is_ok_and(|grants| {
                    acl::owner_only(&Acl {
                        owner: ROOT_ID.into(),
                        grants,
                    })
                })
            })
    }
}

fn check_public(meta: &BucketMeta, grants: &[Grant]) -> S3Result<()> {
    if meta.public_access_block.is_some_and(|b| b.block_public_acls) && acl::is_public(grants) {
        return Err(s3_error!(
            AccessDenied,
            "the bucket's PublicAccessBlock (BlockPublicAcls) refuses public ACLs"
        ));
    }
    Ok(())
}

fn not_supported() -> s3s::S3Error {
    s3_error!(
        AccessControlListNotSupported,
        "The bucket does not allow ACLs (OwnershipControls: BucketOwnerEnforced)"
    )
}

/// The owner and ACL of an object `caller` writes into the bucket `meta`
/// (PutObject, CopyObject, CreateMultipartUpload); `None`: the bucket owner's,
/// private.
pub fn for_new_object(caller: &Caller, meta: &BucketMeta, req: &AclRequest<'_>) -> S3Result<Option<Acl>> {
    if meta.object_ownership == Some(ObjectOwnership::BucketOwnerEnforced) {
        return if req.fits_enforced() {
            Ok(None)
        } else {
            Err(not_supported())
        };
    }
    let writer = caller.canonical_id().unwrap_or(acl::ANONYMOUS_ID);
    let to_bucket_owner = meta.object_ownership == Some(ObjectOwnership::BucketOwnerPreferred)
        && req.canned == Some("bucket-owner-full-control");
    let owner = if to_bucket_owner { ROOT_ID } else { writer };
    let grants = match req.grants(owner)? {
        Some(g) => g,
        None => acl::private(owner).grants,
    };
    check_public(meta, &grants)?;
    let acl = Acl {
        owner: owner.to_owned(),
        grants,
    };
    Ok((acl != acl::private(ROOT_ID)).then_some(acl))
}

/// The ACL a PutBucketAcl / PutObjectAcl sets on something owned by `owner`.
pub fn for_put_acl(owner: &str, meta: &BucketMeta, req: &AclRequest<'_>) -> S3Result<Acl> {
    if meta.object_ownership == Some(ObjectOwnership::BucketOwnerEnforced) && !req.fits_enforced() {
        return Err(not_supported());
    }
    let grants = req.grants(owner)?.ok_or_else(|| {
        s3_error!(
            MissingSecurityHeader,
            "give a canned ACL (x-amz-acl), x-amz-grant-* headers or an AccessControlPolicy"
        )
    })?;
    check_public(meta, &grants)?;
    Ok(Acl {
        owner: owner.to_owned(),
        grants,
    })
}

/// The ACL a CreateBucket sets (`None`: private), under the ownership it asks for.
pub fn for_new_bucket(ownership: Option<ObjectOwnership>, req: &AclRequest<'_>) -> S3Result<Option<Acl>> {
    if ownership == Some(ObjectOwnership::BucketOwnerEnforced) && !req.fits_enforced() {
        return Err(s3_error!(
            InvalidBucketAclWithObjectOwnership,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
        ));
    }
    let Some(grants) = req.grants(ROOT_ID)? else {
        return Ok(None);
    };
    let acl = Acl {
        owner: ROOT_ID.into(),
        grants,
    };
    Ok((acl != acl::private(ROOT_ID)).then_some(acl))
}
