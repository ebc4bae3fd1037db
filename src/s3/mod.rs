//! The S3-compatible server: the `s3s` crate speaks the protocol (routing, XML,
//! SigV4 including presigned URLs and aws-chunked bodies); this module adapts it to
//! darkroom's [`ObjectStore`](crate::object_store::ObjectStore). Handlers stay thin: they
//! translate types and call the store. Also here: whose signature a request
//! carries (`auth`: the root pair, users' S3 keys), who may do what (`authz`:
//! bucket policies, ACLs, PublicAccessBlock, OwnershipControls) and MinIO's
//! health endpoints.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::object_store::ObjectStore;

mod access_ops;
mod auth;
pub(crate) mod authz;
pub use authz::{JobOutputs, JobOwners};
mod bucket_ops;
mod checksum;
pub mod config;
mod convert;
mod error;
mod list_ops;
mod multipart_ops;
mod object_ops;
pub mod presign;
mod service;
mod sse;

pub use access_ops::{apply_public_read, public_read_policy};
pub use config::{BucketConfig, S3Config};
pub use convert::{millis, timestamp};

/// The owner darkroom reports for buckets and listings: the root account.
fn owner() -> s3s::dto::Owner {
    s3s::dto::Owner {
        display_name: Some(crate::users::ROOT_ID.into()),
        id: Some(crate::users::ROOT_ID.into()),
    }
}

/// SigV4 credentials accepted by the server.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Builds the S3 service over `store`: the root pair `credentials` and, with
/// `users`, their S3 keys sign requests.
pub fn build(
    store: ObjectStore,
    credentials: &Credentials,
    users: Option<crate::users::Users>,
    outputs: Option<JobOutputs>,
    region: &str,
    metrics: Metrics,
) -> S3Service {
    let mut builder = S3ServiceBuilder::new(service::DarkroomS3::new(store.clone(), region, metrics));
    let auth = Arc::new(auth::S3Auth::new(credentials.clone(), users));
    builder.set_auth(SharedAuth(auth.clone()));
    builder.set_access(authz::Authz::new(store, auth, outputs));
    builder.set_route(authz::Health);
    builder.build()
}

/// The one [`auth::S3Auth`] shared by s3s (secrets) and `authz` (callers).
struct SharedAuth(Arc<auth::S3Auth>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for SharedAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        s3s::auth::S3Auth::get_secret_key(&*self.0, access_key).await
    }
}

/// How a request reached the S3 listener: over TLS or not, and from where (the
/// SSE-C rule reads it). Put into each request's extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub tls: bool,
    pub peer: std::net::SocketAddr,
}

/// Serves `service` on `listener` (plain or TLS) until `shutdown` fires, then
/// lets open requests finish for up to `grace`.
pub async fn serve(
    listener: crate::tls::Listener,
    service: S3Service,
    throttle: crate::throttle::AuthThrottle,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = Arc::new(service);
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "s3: accept failed");
                    continue;
                }
            },
        };
        let svc = (*service).clone();
        let throttle = throttle.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let info = Connection {
                tls: incoming.is_tls(),
                peer: incoming.peer,
            };
            let stream = match incoming.handshake().await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, peer = %info.peer, "s3: TLS handshake failed");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(info);
                let ip = info.peer.ip();
                let refused = throttle.check(ip).err();
                let answer = refused
                    .is_none()
                    .then(|| hyper::service::Service::call(&svc, req));
                let throttle = throttle.clone();
                async move {
                    let Some(answer) = answer else {
                        return Ok(slow_down(refused.unwrap_or_default()));
                    };
                    let resp = answer.await?;
                    if refused_credentials(&resp) {
                        throttle.failed(ip, "s3");
                    }
                    Ok::<_, s3s::HttpError>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_mins(1))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "s3: connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("s3: all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "s3: connections still open after the grace period; closing"),
    }
}

/// Whether S3 refused the request's key or signature (a guess, perhaps) — not
/// a request refused for other reasons (a wrong SSE-C key, an unsigned read).
fn refused_credentials(resp: &s3s::HttpResponse) -> bool {
    if resp.status() != hyper::StatusCode::FORBIDDEN {
        return false;
    }
    let Some(body) = resp.body().bytes() else {
        return false;
    };
    ["SignatureDoesNotMatch", "InvalidAccessKeyId", "NotSignedUp"]
        .iter()
        .any(|code| {
            let needle = format!("<Code>{code}</Code>");
            body.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
}

/// The answer to an address locked out for failing authentication: 429 with
/// S3's throttling code, which SDKs back off from.
fn slow_down(wait: Duration) -> s3s::HttpResponse {
    let secs = wait.as_secs().max(1);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>too many \
         failed authentications from this address (api.max_auth_failures); try again in {secs} s\
         </Message></Error>"
    );
    let mut resp = hyper::Response::new(s3s::Body::from(body));
    *resp.status_mut() = hyper::StatusCode::TOO_MANY_REQUESTS;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    headers.insert(hyper::header::RETRY_AFTER, secs.into());
    resp
}
