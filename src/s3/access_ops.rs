//! The access-control operations of the S3 API: bucket policies
//! (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus), bucket and object ACLs
//! (Put/Get BucketAcl, ObjectAcl), PublicAccessBlock and OwnershipControls. Who
//! may call them is decided before, in `authz`; the rules of what a policy or ACL
//! may say are `authz`'s too.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::authz::ownership::{self, AclRequest};
use super::authz::{Policy, acl};
use crate::object_store::{self as store, ObjectStore, Permission};
use crate::users::ROOT_ID;

type Out<T> = S3Result<S3Response<T>>;

pub async fn put_bucket_policy(
    s: &ObjectStore,
    req: S3Request<PutBucketPolicyInput>,
) -> Out<PutBucketPolicyOutput> {
    let input = req.input;
    let meta = s.head_bucket(&input.bucket).await?;
    let policy =
        Policy::parse(&input.policy, &input.bucket).map_err(|e| s3_error!(MalformedPolicy, "{e}"))?;
    if meta.public_access_block.is_some_and(|b| b.block_public_policy) && policy.is_public() {
        return Err(s3_error!(
            AccessDenied,
            "the bucket's PublicAccessBlock (BlockPublicPolicy) refuses public policies"
        ));
    }
    s.set_bucket_policy(&input.bucket, Some(input.policy)).await?;
    Ok(S3Response::new(PutBucketPolicyOutput::default()))
}

pub async fn get_bucket_policy(
    s: &ObjectStore,
    req: S3Request<GetBucketPolicyInput>,
) -> Out<GetBucketPolicyOutput> {
    let meta = s.head_bucket(&req.input.bucket).await?;
    let policy = meta
        .policy
        .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
    Ok(S3Response::new(GetBucketPolicyOutput { policy: Some(policy) }))
}

pub async fn delete_bucket_policy(
    s: &ObjectStore,
    req: S3Request<DeleteBucketPolicyInput>,
) -> Out<DeleteBucketPolicyOutput> {
    s.set_bucket_policy(&req.input.bucket, None).await?;
    Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
}

pub async fn get_bucket_policy_status(
    s: &ObjectStore,
    req: S3Request<GetBucketPolicyStatusInput>,
) -> Out<GetBucketPolicyStatusOutput> {
    let meta = s.head_bucket(&req.input.bucket).await?;
    let text = meta
        .policy
        .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
    let public = Policy::parse(&text, &req.input.bucket).is_ok_and(|p| p.is_public());
    Ok(S3Response::new(GetBucketPolicyStatusOutput {
        policy_status: Some(PolicyStatus {
            is_public: Some(public),
        }),
    }))
}

pub async fn put_bucket_acl(s: &ObjectStore, req: S3Request<PutBucketAclInput>) -> Out<PutBucketAclOutput> {
    let input = req.input;
    let meta = s.head_bucket(&input.bucket).await?;
    let mut headers = ownership::grant_headers!(input);
    headers.push((Permission::Write, input.grant_write.as_deref()));
    let request = AclRequest {
        canned: input.acl.as_ref().map(BucketCannedACL::as_str),
        headers,
        body: input.access_control_policy.as_ref(),
    };
    let acl = ownership::for_put_acl(ROOT_ID, &meta, &request)?;
    let acl = (acl != acl::private(ROOT_ID)).then_some(acl);
    s.set_bucket_acl(&input.bucket, acl).await?;
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub async fn get_bucket_acl(s: &ObjectStore, req: S3Request<GetBucketAclInput>) -> Out<GetBucketAclOutput> {
    let meta = s.head_bucket(&req.input.bucket).await?;
    let (owner, grants) = acl::to_dto(&meta.acl.unwrap_or_else(|| acl::private(ROOT_ID)));
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(grants),
        owner: Some(owner),
    }))
}

pub async fn put_object_acl(s: &ObjectStore, req: S3Request<PutObjectAclInput>) -> Out<PutObjectAclOutput> {
    let input = req.input;
    let meta = s.head_bucket(&input.bucket).await?;
    let object = s.head_object(&input.bucket, &input.key).await?;
    let owner = object.attrs.acl.map_or_else(|| ROOT_ID.to_owned(), |a| a.owner);
    let mut headers = ownership::grant_headers!(input);
    headers.push((Permission::Write, input.grant_write.as_deref()));
    let request = AclRequest {
        canned: input.acl.as_ref().map(ObjectCannedACL::as_str),
        headers,
        body: input.access_control_policy.as_ref(),
    };
    let acl = ownership::for_put_acl(&owner, &meta, &request)?;
    let acl = (acl != acl::private(ROOT_ID)).then_some(acl);
    s.set_object_acl(&input.bucket, &input.key, acl).await?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

pub async fn get_object_acl(s: &ObjectStore, req: S3Request<GetObjectAclInput>) -> Out<GetObjectAclOutput> {
    let object = s.head_object(&req.input.bucket, &req.input.key).await?;
    let (owner, grants) = acl::to_dto(&object.attrs.acl.unwrap_or_else(|| acl::private(ROOT_ID)));
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(grants),
        owner: Some(owner),
        request_charged: None,
    }))
}

pub async fn put_public_access_block(
    s: &ObjectStore,
    req: S3Request<PutPublicAccessBlockInput>,
) -> Out<PutPublicAccessBlockOutput> {
    let c = req.input.public_access_block_configuration;
    let block = store::PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    s.set_public_access_block(&req.input.bucket, Some(block)).await?;
    Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
}

pub async fn get_public_access_block(
    s: &ObjectStore,
    req: S3Request<GetPublicAccessBlockInput>,
) -> Out<GetPublicAccessBlockOutput> {
    let meta = s.head_bucket(&req.input.bucket).await?;
    let Some(b) = meta.public_access_block else {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
            "The public access block configuration was not found",
        );
        e.set_status_code(http::StatusCode::NOT_FOUND);
        return Err(e);
    };
    Ok(S3Response::new(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(b.block_public_acls),
            ignore_public_acls: Some(b.ignore_public_acls),
            block_public_policy: Some(b.block_public_policy),
            restrict_public_buckets: Some(b.restrict_public_buckets),
        }),
    }))
}

pub async fn delete_public_access_block(
    s: &ObjectStore,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> Out<DeletePublicAccessBlockOutput> {
    s.set_public_access_block(&req.input.bucket, None).await?;
    Ok(S3Response::new(DeletePublicAccessBlockOutput::default()))
}

/// An ObjectOwnership value of a request.
pub fn parse_ownership(value: &ObjectOwnership) -> S3Result<store::ObjectOwnership> {
    value
        .as_str()
        .parse()
        .map_err(|e| s3_error!(InvalidArgument, "ObjectOwnership: {e}"))
}

pub async fn put_ownership_controls(
    s: &ObjectStore,
    req: S3Request<PutBucketOwnershipControlsInput>,
) -> Out<PutBucketOwnershipControlsOutput> {
    let input = req.input;
    let [rule] = input.ownership_controls.rules.as_slice() else {
        return Err(s3_error!(MalformedXML, "OwnershipControls has exactly one Rule"));
    };
    let ownership = parse_ownership(&rule.object_ownership)?;
    let meta = s.head_bucket(&input.bucket).await?;
    if ownership == store::ObjectOwnership::BucketOwnerEnforced
        && meta.acl.as_ref().is_some_and(|a| !acl::owner_only(a))
    {
        return Err(s3_error!(
            InvalidBucketAclWithObjectOwnership,
            "the bucket's ACL grants others access: set it private before BucketOwnerEnforced"
        ));
    }
    s.set_object_ownership(&input.bucket, Some(ownership)).await?;
    Ok(S3Response::new(PutBucketOwnershipControlsOutput::default()))
}

pub async fn get_ownership_controls(
    s: &ObjectStore,
    req: S3Request<GetBucketOwnershipControlsInput>,
) -> Out<GetBucketOwnershipControlsOutput> {
    let meta = s.head_bucket(&req.input.bucket).await?;
    let ownership = meta.object_ownership.ok_or_else(|| {
        s3_error!(
            OwnershipControlsNotFoundError,
            "The bucket ownership controls were not found"
        )
    })?;
    Ok(S3Response::new(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: ObjectOwnership::from(ownership.as_str().to_owned()),
            }],
        }),
    }))
}

pub async fn delete_ownership_controls(
    s: &ObjectStore,
    req: S3Request<DeleteBucketOwnershipControlsInput>,
) -> Out<DeleteBucketOwnershipControlsOutput> {
    s.set_object_ownership(&req.input.bucket, None).await?;
    Ok(S3Response::new(DeleteBucketOwnershipControlsOutput::default()))
}

/// `s3.buckets.public_read`: the policy it writes (GetObject for anyone).
pub fn public_read_policy(bucket: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": PUBLIC_READ_SID,
            "Effect": "Allow",
            "Principal": {"AWS": ["*"]},
            "Action": ["s3:GetObject"],
            "Resource": [format!("arn:aws:s3:::{bucket}/*")],
        }],
    })
    .to_string()
}

const PUBLIC_READ_SID: &str = "DarkroomConfigPublicRead";

/// Applies `s3.buckets.public_read` to a configured bucket: `true` writes the
/// public-read policy when the bucket has no policy; `false` removes that policy
/// (only that one: a policy set through S3 stays).
pub async fn apply_public_read(
    s: &ObjectStore,
    bucket: &str,
    public_read: bool,
) -> Result<(), store::StorageError> {
    let meta = s.head_bucket(bucket).await?;
    let ours = public_read_policy(bucket);
    match (&meta.policy, public_read) {
        (None, true) => s.set_bucket_policy(bucket, Some(ours)).await,
        (Some(p), false) if *p == ours => s.set_bucket_policy(bucket, None).await,
        (Some(p), true) if *p != ours => {
            tracing::warn!(
                bucket,
                "s3.buckets.public_read: the bucket has a policy of its own; it is left as it is"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}
