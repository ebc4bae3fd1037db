//! Bucket operations of the S3 API: create (with its ACL and ObjectOwnership),
//! head, list (for users who are not admins, only the buckets they may list),
//! delete, location, lifecycle.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::authz::ownership::{self, AclRequest, grant_headers};
use super::authz::{self, Caller};
use super::convert;
use crate::object_store::{ObjectStore, Permission};

type Out<T> = S3Result<S3Response<T>>;

pub async fn create_bucket(s: &ObjectStore, req: S3Request<CreateBucketInput>) -> Out<CreateBucketOutput> {
    let input = req.input;
    let ownership = match &input.object_ownership {
        Some(o) => Some(super::access_ops::parse_ownership(o)?),
        None => Some(crate::object_store::ObjectOwnership::BucketOwnerEnforced),
    };
    let mut headers = grant_headers!(input);
    headers.push((Permission::Write, input.grant_write.as_deref()));
    let request = AclRequest {
        canned: input.acl.as_ref().map(BucketCannedACL::as_str),
        headers,
        body: None,
    };
    let acl = ownership::for_new_bucket(ownership, &request)?;
    s.create_bucket(&input.bucket).await?;
    if ownership != crate::object_store::BucketMeta::default().object_ownership {
        s.set_object_ownership(&input.bucket, ownership).await?;
    }
    if acl.is_some() {
        s.set_bucket_acl(&input.bucket, acl).await?;
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    }))
}

pub async fn head_bucket(s: &ObjectStore, req: S3Request<HeadBucketInput>) -> Out<HeadBucketOutput> {
    s.head_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput::default()))
}

pub async fn delete_bucket(s: &ObjectStore, req: S3Request<DeleteBucketInput>) -> Out<DeleteBucketOutput> {
    s.delete_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

pub async fn list_buckets(s: &ObjectStore, req: S3Request<ListBucketsInput>) -> Out<ListBucketsOutput> {
    let caller = Caller::of(&req.extensions);
    let conn = req.extensions.get::<super::Connection>().copied();
    let keys = authz::context_keys(&caller, conn, &req.uri, &req.headers);
    let buckets = s
        .list_buckets()
        .await?
        .into_iter()
        .filter(|(name, meta)| authz::may_list(meta, &caller, &keys, name))
        .map(|(name, meta)| Bucket {
            name: Some(name),
            creation_date: Some(convert::timestamp(meta.created_ms)),
            bucket_region: None,
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(super::owner()),
        ..Default::default()
    }))
}

pub async fn get_bucket_location(
    s: &ObjectStore,
    region: &str,
    req: S3Request<GetBucketLocationInput>,
) -> Out<GetBucketLocationOutput> {
    s.head_bucket(&req.input.bucket).await?;
    // us-east-1 is reported as an empty constraint, as AWS does.
    let constraint = (region != "us-east-1").then(|| BucketLocationConstraint::from(region.to_string()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: constraint,
    }))
}

pub async fn put_lifecycle(
    s: &ObjectStore,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> Out<PutBucketLifecycleConfigurationOutput> {
    let input = req.input;
    let Some(config) = input.lifecycle_configuration else {
        return Err(s3_error!(MalformedXML, "missing LifecycleConfiguration"));
    };
    if config.rules.len() > 1000 {
        return Err(s3_error!(InvalidArgument, "at most 1000 lifecycle rules"));
    }
    let rules = config
        .rules
        .into_iter()
        .map(convert::rule_from_dto)
        .collect::<S3Result<Vec<_>>>()?;
    s.set_lifecycle(&input.bucket, rules).await?;
    Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
}

pub async fn get_lifecycle(
    s: &ObjectStore,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> Out<GetBucketLifecycleConfigurationOutput> {
    let bucket = s.head_bucket(&req.input.bucket).await?;
    if bucket.lifecycle.is_empty() {
        return Err(s3_error!(
            NoSuchLifecycleConfiguration,
            "the bucket has no lifecycle configuration"
        ));
    }
    Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
        rules: Some(bucket.lifecycle.iter().map(convert::rule_to_dto).collect()),
        ..Default::default()
    }))
}

pub async fn delete_lifecycle(
    s: &ObjectStore,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> Out<DeleteBucketLifecycleOutput> {
    s.set_lifecycle(&req.input.bucket, Vec::new()).await?;
    Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
}
