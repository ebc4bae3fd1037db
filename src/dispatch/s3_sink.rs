//! Outputs on an external S3 endpoint (`storage.backend = "s3"`: MinIO, AWS,
//! another darkroom) through `aws-sdk-s3`, so several darkroom nodes can share
//! one bucket: small outputs in one PutObject, large ones in parts (aborted on
//! failure, so no half upload lingers), URLs presigned by the SDK for that
//! endpoint, a server-side CopyObject for a cache hit's outputs, and a HeadBucket
//! of the output bucket as the health check.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::outputs::{OutputSink, SinkError};
use super::storage_config::ExternalS3;
use crate::stores::{StoreHealth, StoreKind};
use crate::tls::client::refusal_or;
use crate::tls::{TlsError, Trust};

/// The sink.
pub struct S3Sink {
    client: Client,
    endpoint: String,
    multipart_threshold: u64,
    part_size: u64,
}

impl S3Sink {
    /// A sink on `c`'s endpoint trusting the public roots.
    pub fn new(c: &ExternalS3) -> Self {
        Self::build(c, None)
    }

    /// A sink on `c`'s endpoint trusting `trust`'s CAs too (`tls.ca_file`).
    pub fn with_trust(c: &ExternalS3, trust: &Trust) -> Result<Self, TlsError> {
        Ok(Self::build(c, trust.aws_http_client()?))
    }

    fn build(c: &ExternalS3, http: Option<SharedHttpClient>) -> Self {
        let mut conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                &c.access_key,
                &c.secret_key,
                None,
                None,
                "darkroom",
            ))
            .region(Region::new(c.region.clone()))
            .force_path_style(c.path_style);
        if !c.endpoint.is_empty() {
            conf = conf.endpoint_url(&c.endpoint);
        }
        if let Some(http) = http {
            conf = conf.http_client(http);
        }
        Self {
            client: Client::from_conf(conf.build()),
            endpoint: if c.endpoint.is_empty() {
                format!("AWS S3 ({})", c.region)
            } else {
                c.endpoint.clone()
            },
            multipart_threshold: c.multipart_threshold_bytes,
            part_size: c.part_size_bytes,
        }
    }

    fn remote(&self, what: &str, e: &(impl std::error::Error + 'static)) -> SinkError {
        SinkError::Remote {
            endpoint: self.endpoint.clone(),
            message: format!("{what}: {}", refusal_or(e, DisplayErrorContext(e))),
        }
    }

    async fn put_parts(
        &self,
        bucket: &str,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), SinkError> {
        let what = format!("multipart upload of {bucket}/{key}");
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| self.remote(&what, &e))?;
        let id = upload.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(bucket, key, &id, &bytes).await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| self.remote(&what, &e))?;
        Ok(())
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        bytes: &Bytes,
    ) -> Result<Vec<CompletedPart>, SinkError> {
        let part_size = usize::try_from(self.part_size).unwrap_or(usize::MAX);
        let mut parts = Vec::new();
        for (i, start) in (0..bytes.len()).step_by(part_size).enumerate() {
            let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
            let chunk = bytes.slice(start..(start + part_size).min(bytes.len()));
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| self.remote(&format!("part {number} of {bucket}/{key}"), &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        Ok(parts)
    }
}

#[async_trait]
impl OutputSink for S3Sink {
    async fn put(&self, bucket: &str, key: &str, bytes: Bytes, content_type: &str) -> Result<u64, SinkError> {
        let size = bytes.len() as u64;
        if size > self.multipart_threshold {
            self.put_parts(bucket, key, bytes, content_type).await?;
        } else {
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| self.remote(&format!("cannot store {bucket}/{key}"), &e))?;
        }
        Ok(size)
    }

    async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), SinkError> {
        self.client
            .copy_object()
            .bucket(dst_bucket)
            .key(dst_key)
            .copy_source(copy_source(src_bucket, src_key))
            .send()
            .await
            .map_err(|e| {
                self.remote(
                    &format!("cannot copy {src_bucket}/{src_key} to {dst_bucket}/{dst_key}"),
                    &e,
                )
            })?;
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, SinkError> {
        let what = format!("GET {bucket}/{key}");
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.remote(&what, &e))?;
        let body = object.body.collect().await.map_err(|e| self.remote(&what, &e))?;
        Ok(body.into_bytes())
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, SinkError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(self.remote(&format!("HEAD {bucket}/{key}"), &e)),
        }
    }

    async fn url(&self, bucket: &str, key: &str, expires: Duration) -> Option<String> {
        let config = PresigningConfig::expires_in(expires).ok()?;
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
        {
            Ok(p) => Some(p.uri().to_owned()),
            Err(e) => {
                tracing::warn!(bucket, key, error = %DisplayErrorContext(&e), "cannot presign an output URL");
                None
            }
        }
    }

    async fn ensure_bucket(&self, bucket: &str) -> Result<(), SinkError> {
        if self.client.head_bucket().bucket(bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(e) => Err(self.remote(&format!("cannot create bucket {bucket:?}"), &e)),
        }
    }

    async fn health(&self, bucket: &str) -> StoreHealth {
        let started = Instant::now();
        let answer = self.client.head_bucket().bucket(bucket).send().await;
        let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        let (reachable, error) = match answer {
            Ok(_) => (true, None),
            // It answered (403, 404): reachable, but not usable as configured.
            Err(e) if e.raw_response().is_some() => {
                let status = e.raw_response().map_or(0, |r| r.status().as_u16());
                (true, Some(format!("bucket {bucket:?}: HTTP {status}")))
            }
            Err(e) => (false, Some(refusal_or(&e, DisplayErrorContext(&e)))),
        };
        StoreHealth {
            backend: StoreKind::S3,
            endpoint: Some(self.endpoint.clone()),
            reachable,
            latency_ms,
            error,
        }
    }
}

/// The `x-amz-copy-source` of `bucket/key`: percent-encoded, slashes kept.
fn copy_source(bucket: &str, key: &str) -> String {
    crate::s3::presign::encode(&format!("{bucket}/{key}"), true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(
            super::copy_source("out", "jobs/01J/1-a b+c.png"),
            "out/jobs/01J/1-a%20b%2Bc.png"
        );
    }
}
