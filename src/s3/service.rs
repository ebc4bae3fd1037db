//! `impl S3` for darkroom: one line per operation, delegating to the operation
//! groups (`bucket_ops`, `object_ops`, `list_ops`, `multipart_ops`) and recording
//! each request's outcome, latency and bytes in the metrics. Operations not
//! listed here answer `NotImplemented` (the trait's default), never a false success.

use std::time::Instant;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

use super::{access_ops, bucket_ops, list_ops, multipart_ops, object_ops, sse};
use crate::metrics::Metrics;
use crate::object_store::ObjectStore;

pub struct DarkroomS3 {
    store: ObjectStore,
    region: String,
    metrics: Metrics,
}

impl DarkroomS3 {
    pub fn new(store: ObjectStore, region: &str, metrics: Metrics) -> Self {
        Self {
            store,
            region: region.to_string(),
            metrics,
        }
    }

    /// Runs one operation and records its outcome and latency.
    async fn track<T>(&self, operation: &str, op: impl Future<Output = Out<T>>) -> Out<T> {
        let started = Instant::now();
        let result = op.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code().as_str(),
        };
        self.metrics.s3_request(operation, outcome, started.elapsed());
        result
    }
}

type Out<T> = S3Result<S3Response<T>>;

#[async_trait::async_trait]
impl S3 for DarkroomS3 {
    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> Out<PutBucketEncryptionOutput> {
        self.track(
            "PutBucketEncryption",
            sse::put_bucket_encryption(&self.store, req),
        )
        .await
    }
    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> Out<GetBucketEncryptionOutput> {
        self.track(
            "GetBucketEncryption",
            sse::get_bucket_encryption(&self.store, req),
        )
        .await
    }
    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> Out<DeleteBucketEncryptionOutput> {
        self.track(
            "DeleteBucketEncryption",
            sse::delete_bucket_encryption(&self.store, req),
        )
        .await
    }
    // Access control: policies, ACLs, PublicAccessBlock, OwnershipControls.
    async fn put_bucket_policy(&self, req: S3Request<PutBucketPolicyInput>) -> Out<PutBucketPolicyOutput> {
        self.track("PutBucketPolicy", access_ops::put_bucket_policy(&self.store, req))
            .await
    }
    async fn get_bucket_policy(&self, req: S3Request<GetBucketPolicyInput>) -> Out<GetBucketPolicyOutput> {
        self.track("GetBucketPolicy", access_ops::get_bucket_policy(&self.store, req))
            .await
    }
    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> Out<DeleteBucketPolicyOutput> {
        self.track(
            "DeleteBucketPolicy",
            access_ops::delete_bucket_policy(&self.store, req),
        )
        .await
    }
    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> Out<GetBucketPolicyStatusOutput> {
        self.track(
            "GetBucketPolicyStatus",
            access_ops::get_bucket_policy_status(&self.store, req),
        )
        .await
    }
    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> Out<PutBucketAclOutput> {
        self.track("PutBucketAcl", access_ops::put_bucket_acl(&self.store, req))
            .await
    }
    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> Out<GetBucketAclOutput> {
        self.track("GetBucketAcl", access_ops::get_bucket_acl(&self.store, req))
            .await
    }
    async fn put_object_acl(&self, req: S3Request<PutObjectAclInput>) -> Out<PutObjectAclOutput> {
        self.track("PutObjectAcl", access_ops::put_object_acl(&self.store, req))
            .await
    }
    async fn get_object_acl(&self, req: S3Request<GetObjectAclInput>) -> Out<GetObjectAclOutput> {
        self.track("GetObjectAcl", access_ops::get_object_acl(&self.store, req))
            .await
    }
    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> Out<PutPublicAccessBlockOutput> {
        self.track(
            "PutPublicAccessBlock",
            access_ops::put_public_access_block(&self.store, req),
        )
        .await
    }
    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> Out<GetPublicAccessBlockOutput> {
        self.track(
            "GetPublicAccessBlock",
            access_ops::get_public_access_block(&self.store, req),
        )
        .await
    }
    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> Out<DeletePublicAccessBlockOutput> {
        self.track(
            "DeletePublicAccessBlock",
            access_ops::delete_public_access_block(&self.store, req),
        )
        .await
    }
    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> Out<PutBucketOwnershipControlsOutput> {
        self.track(
            "PutBucketOwnershipControls",
            access_ops::put_ownership_controls(&self.store, req),
        )
        .await
    }
    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> Out<GetBucketOwnershipControlsOutput> {
        self.track(
            "GetBucketOwnershipControls",
            access_ops::get_ownership_controls(&self.store, req),
        )
        .await
    }
    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> Out<DeleteBucketOwnershipControlsOutput> {
        self.track(
            "DeleteBucketOwnershipControls",
            access_ops::delete_ownership_controls(&self.store, req),
        )
        .await
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> Out<CreateBucketOutput> {
        self.track("CreateBucket", bucket_ops::create_bucket(&self.store, req))
            .await
    }
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> Out<HeadBucketOutput> {
        self.track("HeadBucket", bucket_ops::head_bucket(&self.store, req))
            .await
    }
    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> Out<DeleteBucketOutput> {
        self.track("DeleteBucket", bucket_ops::delete_bucket(&self.store, req))
            .await
    }
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> Out<ListBucketsOutput> {
        self.track("ListBuckets", bucket_ops::list_buckets(&self.store, req))
            .await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> Out<GetBucketLocationOutput> {
        self.track(
            "GetBucketLocation",
            bucket_ops::get_bucket_location(&self.store, &self.region, req),
        )
        .await
    }
    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> Out<PutBucketLifecycleConfigurationOutput> {
        self.track(
            "PutBucketLifecycleConfiguration",
            bucket_ops::put_lifecycle(&self.store, req),
        )
        .await
    }
    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> Out<GetBucketLifecycleConfigurationOutput> {
        self.track(
            "GetBucketLifecycleConfiguration",
            bucket_ops::get_lifecycle(&self.store, req),
        )
        .await
    }
    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> Out<DeleteBucketLifecycleOutput> {
        self.track(
            "DeleteBucketLifecycle",
            bucket_ops::delete_lifecycle(&self.store, req),
        )
        .await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> Out<PutObjectOutput> {
        let received = req.input.content_length.and_then(|n| u64::try_from(n).ok());
        let r = self
            .track("PutObject", object_ops::put_object(&self.store, req))
            .await;
        if r.is_ok() {
            self.metrics.s3_bytes(received.unwrap_or(0), 0);
        }
        r
    }
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> Out<GetObjectOutput> {
        let r = self
            .track("GetObject", object_ops::get_object(&self.store, req))
            .await;
        if let Ok(out) = &r {
            let sent = out.output.content_length.and_then(|n| u64::try_from(n).ok());
            self.metrics.s3_bytes(0, sent.unwrap_or(0));
        }
        r
    }
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> Out<HeadObjectOutput> {
        self.track("HeadObject", object_ops::head_object(&self.store, req))
            .await
    }
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> Out<DeleteObjectOutput> {
        self.track("DeleteObject", object_ops::delete_object(&self.store, req))
            .await
    }
    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> Out<DeleteObjectsOutput> {
        self.track("DeleteObjects", object_ops::delete_objects(&self.store, req))
            .await
    }
    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> Out<CopyObjectOutput> {
        self.track("CopyObject", Box::pin(object_ops::copy_object(&self.store, req)))
            .await
    }
    async fn put_object_tagging(&self, req: S3Request<PutObjectTaggingInput>) -> Out<PutObjectTaggingOutput> {
        self.track("PutObjectTagging", object_ops::put_tagging(&self.store, req))
            .await
    }
    async fn get_object_tagging(&self, req: S3Request<GetObjectTaggingInput>) -> Out<GetObjectTaggingOutput> {
        self.track("GetObjectTagging", object_ops::get_tagging(&self.store, req))
            .await
    }
    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> Out<DeleteObjectTaggingOutput> {
        self.track(
            "DeleteObjectTagging",
            object_ops::delete_tagging(&self.store, req),
        )
        .await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> Out<ListObjectsOutput> {
        self.track("ListObjects", list_ops::list_objects(&self.store, req))
            .await
    }
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> Out<ListObjectsV2Output> {
        self.track("ListObjectsV2", list_ops::list_objects_v2(&self.store, req))
            .await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> Out<CreateMultipartUploadOutput> {
        self.track("CreateMultipartUpload", multipart_ops::create(&self.store, req))
            .await
    }
    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> Out<UploadPartOutput> {
        let received = req.input.content_length.and_then(|n| u64::try_from(n).ok());
        let r = self
            .track("UploadPart", multipart_ops::upload_part(&self.store, req))
            .await;
        if r.is_ok() {
            self.metrics.s3_bytes(received.unwrap_or(0), 0);
        }
        r
    }
    async fn upload_part_copy(&self, req: S3Request<UploadPartCopyInput>) -> Out<UploadPartCopyOutput> {
        self.track(
            "UploadPartCopy",
            multipart_ops::upload_part_copy(&self.store, req),
        )
        .await
    }
    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> Out<ListPartsOutput> {
        self.track("ListParts", multipart_ops::list_parts(&self.store, req))
            .await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> Out<ListMultipartUploadsOutput> {
        self.track(
            "ListMultipartUploads",
            multipart_ops::list_uploads(&self.store, req),
        )
        .await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> Out<CompleteMultipartUploadOutput> {
        self.track(
            "CompleteMultipartUpload",
            multipart_ops::complete(&self.store, req),
        )
        .await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> Out<AbortMultipartUploadOutput> {
        self.track("AbortMultipartUpload", multipart_ops::abort(&self.store, req))
            .await
    }
}
