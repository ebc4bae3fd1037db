//! Who may do what: every request must carry a valid SigV4 signature (header or
//! presigned query), except unsigned GET/HEAD of objects in buckets configured
//! public-read, and MinIO's health endpoints, which load balancers probe unsigned.

use s3s::access::{S3Access, S3AccessContext};
use s3s::route::S3Route;
use s3s::{Body, S3Request, S3Response, S3Result, s3_error};

use crate::object_store::ObjectStore;

pub struct Access {
    store: ObjectStore,
}

impl Access {
    pub fn new(store: ObjectStore) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() {
            return Ok(());
        }
        let op = cx.s3_op().name();
        if (op == "GetObject" || op == "HeadObject")
            && let Some((bucket, _)) = cx.s3_path().as_object()
            && self.store.head_bucket(bucket).await.is_ok_and(|b| b.public_read)
        {
            return Ok(());
        }
        Err(s3_error!(AccessDenied, "Signature is required"))
    }
}

/// `GET /minio/health/live` and `/minio/health/ready`, unauthenticated.
pub struct Health;

#[async_trait::async_trait]
impl S3Route for Health {
    fn is_match(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        _headers: &http::HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        (method == http::Method::GET || method == http::Method::HEAD)
            && matches!(uri.path(), "/minio/health/live" | "/minio/health/ready")
    }

    async fn check_access(&self, _req: &mut S3Request<Body>) -> S3Result<()> {
        Ok(())
    }

    async fn call(&self, _req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        Ok(S3Response::new(Body::empty()))
    }
}
