//! `impl S3` for darkroom: one line per operation, delegating to the operation
//! groups (`bucket_ops`, `object_ops`, `list_ops`, `multipart_ops`). Operations not
//! listed here answer `NotImplemented` (the trait's default), never a false success.

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

use super::{bucket_ops, list_ops, multipart_ops, object_ops};
use crate::storage::ObjectStore;

pub struct DarkroomS3 {
    store: ObjectStore,
    region: String,
}

impl DarkroomS3 {
    pub fn new(store: ObjectStore, region: &str) -> Self {
        Self {
            store,
            region: region.to_string(),
        }
    }
}

type Out<T> = S3Result<S3Response<T>>;

#[async_trait::async_trait]
impl S3 for DarkroomS3 {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> Out<CreateBucketOutput> {
        bucket_ops::create_bucket(&self.store, req).await
    }
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> Out<HeadBucketOutput> {
        bucket_ops::head_bucket(&self.store, req).await
    }
    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> Out<DeleteBucketOutput> {
        bucket_ops::delete_bucket(&self.store, req).await
    }
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> Out<ListBucketsOutput> {
        bucket_ops::list_buckets(&self.store, req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> Out<GetBucketLocationOutput> {
        bucket_ops::get_bucket_location(&self.store, &self.region, req).await
    }
    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> Out<PutBucketLifecycleConfigurationOutput> {
        bucket_ops::put_lifecycle(&self.store, req).await
    }
    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> Out<GetBucketLifecycleConfigurationOutput> {
        bucket_ops::get_lifecycle(&self.store, req).await
    }
    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> Out<DeleteBucketLifecycleOutput> {
        bucket_ops::delete_lifecycle(&self.store, req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> Out<PutObjectOutput> {
        object_ops::put_object(&self.store, req).await
    }
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> Out<GetObjectOutput> {
        object_ops::get_object(&self.store, req).await
    }
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> Out<HeadObjectOutput> {
        object_ops::head_object(&self.store, req).await
    }
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> Out<DeleteObjectOutput> {
        object_ops::delete_object(&self.store, req).await
    }
    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> Out<DeleteObjectsOutput> {
        object_ops::delete_objects(&self.store, req).await
    }
    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> Out<CopyObjectOutput> {
        object_ops::copy_object(&self.store, req).await
    }
    async fn put_object_tagging(&self, req: S3Request<PutObjectTaggingInput>) -> Out<PutObjectTaggingOutput> {
        object_ops::put_tagging(&self.store, req).await
    }
    async fn get_object_tagging(&self, req: S3Request<GetObjectTaggingInput>) -> Out<GetObjectTaggingOutput> {
        object_ops::get_tagging(&self.store, req).await
    }
    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> Out<DeleteObjectTaggingOutput> {
        object_ops::delete_tagging(&self.store, req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> Out<ListObjectsOutput> {
        list_ops::list_objects(&self.store, req).await
    }
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> Out<ListObjectsV2Output> {
        list_ops::list_objects_v2(&self.store, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> Out<CreateMultipartUploadOutput> {
        multipart_ops::create(&self.store, req).await
    }
    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> Out<UploadPartOutput> {
        multipart_ops::upload_part(&self.store, req).await
    }
    async fn upload_part_copy(&self, req: S3Request<UploadPartCopyInput>) -> Out<UploadPartCopyOutput> {
        multipart_ops::upload_part_copy(&self.store, req).await
    }
    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> Out<ListPartsOutput> {
        multipart_ops::list_parts(&self.store, req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> Out<ListMultipartUploadsOutput> {
        multipart_ops::list_uploads(&self.store, req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> Out<CompleteMultipartUploadOutput> {
        multipart_ops::complete(&self.store, req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> Out<AbortMultipartUploadOutput> {
        multipart_ops::abort(&self.store, req).await
    }
}
