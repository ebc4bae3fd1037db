//! Who may do what on the S3 API, decided in one place for every operation
//! (multipart and presigned URLs included: a presigned URL carries its signer's
//! rights). The root pair and users whose role is admin may do everything. Anyone
//! else — another user's S3 key, or an unsigned request — may do only what the
//! bucket's policy ([`policy`]) allows or, when the bucket's OwnershipControls
//! leave ACLs on, what its ACL or the object's ACL ([`acl`]) grants (an object's
//! owner has FULL_CONTROL of it). An explicit Deny in the policy wins over
//! everything else; PublicAccessBlock's `RestrictPublicBuckets` makes a public
//! policy grant anonymous callers nothing, `IgnorePublicAcls` does the same for
//! ACL grants to AllUsers / AuthenticatedUsers.
//!
//! [`Authz::check`] runs before each operation (s3s calls it once the signature
//! is checked), records the [`Caller`] in the request's extensions for the
//! handlers (object ownership, ListBuckets), and refuses with `AccessDenied`.
//! DeleteObjects is checked key by key once its body is read (the keys refused
//! are answered `AccessDenied` one by one, the others deleted). Making buckets and
//! changing their policy, PublicAccessBlock or OwnershipControls is the owner
//! account's alone (root and admins), whatever a policy says — as on AWS, where
//! another account cannot be granted them.
//! [`ownership`] decides the owner and ACL of what a request writes.
//!
//! One rule is darkroom's own: a user may read (GetObject, HeadObject) the
//! outputs of their own jobs, `jobs/{job id}/...` in the output bucket, as they
//! may through the API — unless the bucket's policy denies it. [`JobOwners`] says
//! whose a job is.

use std::collections::HashMap;
use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{DeleteObjectsInput, PostObjectInput};
use s3s::path::S3Path;
use s3s::route::S3Route;
use s3s::{Body, S3Error, S3Request, S3Response, S3Result, s3_error};

use super::Connection;
pub use super::auth::{Caller, S3Auth};
use crate::object_store::{BucketMeta, ObjectOwnership, ObjectStore, StorageError};
use crate::users::ROOT_ID;

pub mod acl;
mod actions;
pub mod ownership;
pub mod policy;
#[cfg(test)]
mod tests;

pub use actions::action_of;
use actions::{AclNeed, acl_need};
pub use policy::{Decision, Policy};

/// Whose a job is, for the "own outputs" rule (the queue, in the daemon).
#[async_trait::async_trait]
pub trait JobOwners: Send + Sync {
    /// The owner of job `id`, if it exists and has one.
    async fn owner_of(&self, id: &str) -> Option<String>;
}

/// Where jobs' outputs are, and whose each job is.
#[derive(Clone)]
pub struct JobOutputs {
    pub bucket: String,
    pub owners: Arc<dyn JobOwners>,
}

/// The S3 access check: see the module's documentation.
pub struct Authz {
    store: ObjectStore,
    auth: Arc<S3Auth>,
    outputs: Option<JobOutputs>,
}

impl Authz {
    pub fn new(store: ObjectStore, auth: Arc<S3Auth>, outputs: Option<JobOutputs>) -> Self {
        Self { store, auth, outputs }
    }

    /// Whether `caller` reads an output of their own job.
    async fn own_output(&self, caller: &Caller, action: &str, bucket: &str, key: Option<&str>) -> bool {
        let (Some(outputs), Caller::User { who, .. }, Some(key)) = (&self.outputs, caller, key) else {
            return false;
        };
        if action != "s3:GetObject" || bucket != outputs.bucket {
            return false;
        }
        let Some((id, rest)) = key.strip_prefix("jobs/").and_then(|k| k.split_once('/')) else {
            return false;
        };
        !rest.is_empty() && outputs.owners.owner_of(id).await.as_deref() == Some(who.user.as_str())
    }

    /// Refuses `caller` `action` on `bucket` (or its object `key`) unless the
    /// bucket's policy or an ACL allows it. A missing bucket is left for the
    /// operation to answer (`NoSuchBucket`).
    async fn require(
        &self,
        caller: &Caller,
        keys: &HashMap<String, Vec<String>>,
        action: &str,
        bucket: &str,
        key: Option<&str>,
    ) -> S3Result<()> {
        let meta = match self.store.head_bucket(bucket).await {
            Ok(meta) => meta,
            Err(StorageError::NoSuchBucket(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let resource = arn(bucket, key);
        match by_policy(&meta, caller, keys, action, bucket, &resource) {
            Decision::Deny => return Err(denied()),
            Decision::Allow => return Ok(()),
            Decision::NotApplicable => {}
        }
        if self.own_output(caller, action, bucket, key).await {
            return Ok(());
        }
        let granted = match (acls_on(&meta), acl_need(action), key) {
            (true, Some(AclNeed::Bucket(p)), _) => by_bucket_acl(&meta, caller, p),
            (true, Some(AclNeed::Object(p)), Some(key)) => match self.store.head_object(bucket, key).await {
                Ok(object) => {
                    let acl = object.attrs.acl.unwrap_or_else(|| acl::private(ROOT_ID));
                    acl::allows(&acl, caller, p, ignores_public_acls(&meta))
                }
                Err(_) => false,
            },
            _ => false,
        };
        if granted { Ok(()) } else { Err(denied()) }
    }
}

fn denied() -> S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
pub fn arn(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("arn:aws:s3:::{bucket}/{k}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

/// Whether the bucket's OwnershipControls leave ACLs in force.
pub fn acls_on(meta: &BucketMeta) -> bool {
    meta.object_ownership != Some(ObjectOwnership::BucketOwnerEnforced)
}

fn ignores_public_acls(meta: &BucketMeta) -> bool {
    meta.public_access_block.is_some_and(|b| b.ignore_public_acls)
}

/// What the bucket's policy says (a stored policy that no longer parses counts
/// for nothing, and is logged).
pub fn by_policy(
    meta: &BucketMeta,
    caller: &Caller,
    keys: &HashMap<String, Vec<String>>,
    action: &str,
    bucket: &str,
    resource: &str,
) -> Decision {
    let Some(text) = &meta.policy else {
        return Decision::NotApplicable;
    };
    let policy = match Policy::parse(text, bucket) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(bucket, error = %e, "s3: the stored bucket policy does not parse; ignored");
            return Decision::NotApplicable;
        }
    };
    let decision = policy.evaluate(&policy::Request {
        caller,
        action,
        resource,
        keys,
    });
    let restricted = meta
        .public_access_block
        .is_some_and(|b| b.restrict_public_buckets);
    if decision == Decision::Allow && restricted && *caller == Caller::Anonymous && policy.is_public() {
        return Decision::NotApplicable;
    }
    decision
}

/// Whether the bucket's ACL gives `caller` `wanted`.
pub fn by_bucket_acl(meta: &BucketMeta, caller: &Caller, wanted: crate::object_store::Permission) -> bool {
    let acl = meta.acl.clone().unwrap_or_else(|| acl::private(ROOT_ID));
    acl::allows(&acl, caller, wanted, ignores_public_acls(meta))
}

/// Whether `caller` may list `bucket` (ListBuckets shows non-admins only those).
pub fn may_list(
    meta: &BucketMeta,
    caller: &Caller,
    keys: &HashMap<String, Vec<String>>,
    bucket: &str,
) -> bool {
    if caller.is_admin() {
        return true;
    }
    match by_policy(meta, caller, keys, "s3:ListBucket", bucket, &arn(bucket, None)) {
        Decision::Allow => true,
        Decision::Deny => false,
        Decision::NotApplicable => {
            acls_on(meta) && by_bucket_acl(meta, caller, crate::object_store::Permission::Read)
        }
    }
}

/// The condition keys a request gives a policy, lowercase: `aws:SourceIp`,
/// `aws:SecureTransport`, `aws:username` / `aws:userid` (a user's name),
/// `aws:PrincipalType`, `aws:Referer`, `aws:UserAgent`, the query's
/// `s3:prefix`, `s3:delimiter`, `s3:max-keys`, and every `x-amz-*` header as
/// `s3:x-amz-*` (`s3:x-amz-acl`).
pub fn context_keys(
    caller: &Caller,
    conn: Option<Connection>,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> HashMap<String, Vec<String>> {
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    let mut put = |k: &str, v: String| keys.entry(k.to_owned()).or_default().push(v);
    if let Some(conn) = conn {
        let ip = match conn.peer.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(std::net::IpAddr::V6(v6), Into::into),
            v4 @ std::net::IpAddr::V4(_) => v4,
        };
        put("aws:sourceip", ip.to_string());
        put("aws:securetransport", conn.tls.to_string());
    }
    let principal_type = match caller {
        Caller::Root => "Account",
        Caller::User { .. } => "User",
        Caller::Anonymous => "Anonymous",
    };
    put("aws:principaltype", principal_type.into());
    if let Some(name) = caller.user_name() {
        put("aws:username", name.to_owned());
        put("aws:userid", name.to_owned());
    }
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let name = name.as_str();
        if name.starts_with("x-amz-") {
            put(&format!("s3:{name}"), value.to_owned());
        } else if name == "referer" {
            put("aws:referer", value.to_owned());
        } else if name == "user-agent" {
            put("aws:useragent", value.to_owned());
        }
    }
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if matches!(k.as_ref(), "prefix" | "delimiter" | "max-keys") {
            put(&format!("s3:{k}"), v.into_owned());
        }
    }
    keys
}

/// The bucket and key of an `x-amz-copy-source` header.
fn copy_source(headers: &http::HeaderMap) -> Option<(String, String)> {
    let raw = headers.get("x-amz-copy-source")?.to_str().ok()?;
    let raw = raw.split_once('?').map_or(raw, |(path, _)| path);
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    let (bucket, key) = decoded.trim_start_matches('/').split_once('/')?;
    Some((bucket.to_owned(), key.to_owned()))
}

#[async_trait::async_trait]
impl S3Access for Authz {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let caller = match cx.credentials() {
            Some(c) => self.auth.caller(&c.access_key).await?,
            None => Caller::Anonymous,
        };
        cx.extensions_mut().insert(caller.clone());
        if caller.is_admin() {
            return Ok(());
        }
        let conn = cx.extensions_mut().get::<Connection>().copied();
        let op = cx.s3_op().name();
        let keys = context_keys(&caller, conn, cx.uri(), cx.headers());
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root if op == "ListBuckets" && caller != Caller::Anonymous => return Ok(()),
            S3Path::Root => return Err(denied()),
            S3Path::Bucket { bucket } => (bucket.to_string(), None),
            S3Path::Object { bucket, key } => (bucket.to_string(), Some(key.to_string())),
        };
        match op {
            // Buckets, and the settings that say who may use them, are the
            // owner account's (the root pair and admins): no policy grants them.
            "CreateBucket"
            | "PutBucketPolicy"
            | "GetBucketPolicy"
            | "DeleteBucketPolicy"
            | "PutPublicAccessBlock"
            | "DeletePublicAccessBlock"
            | "PutBucketOwnershipControls"
            | "DeleteBucketOwnershipControls" => return Err(denied()),
            // Once the body is read: key by key (`delete_objects` below), and the
            // form's key (`post_object`).
            "DeleteObjects" | "PostObject" => return Ok(()),
            _ => {}
        }
        self.require(&caller, &keys, &action_of(op), &bucket, key.as_deref())
            .await?;
        if matches!(op, "CopyObject" | "UploadPartCopy")
            && let Some((src_bucket, src_key)) = copy_source(cx.headers())
        {
            self.require(&caller, &keys, "s3:GetObject", &src_bucket, Some(&src_key))
                .await?;
        }
        Ok(())
    }

    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        let caller = Caller::of(&req.extensions);
        if caller.is_admin() {
            return Ok(());
        }
        let conn = req.extensions.get::<Connection>().copied();
        let keys = context_keys(&caller, conn, &req.uri, &req.headers);
        self.require(
            &caller,
            &keys,
            "s3:PutObject",
            &req.input.bucket,
            Some(&req.input.key),
        )
        .await
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let caller = Caller::of(&req.extensions);
        if caller.is_admin() {
            return Ok(());
        }
        let conn = req.extensions.get::<Connection>().copied();
        let keys = context_keys(&caller, conn, &req.uri, &req.headers);
        let mut denied = DeniedKeys::default();
        for object in &req.input.delete.objects {
            let r = self
                .require(
                    &caller,
                    &keys,
                    "s3:DeleteObject",
                    &req.input.bucket,
                    Some(&object.key),
                )
                .await;
            match r {
                Ok(()) => {}
                Err(e) if *e.code() == s3s::S3ErrorCode::AccessDenied => {
                    denied.0.insert(object.key.clone());
                }
                Err(e) => return Err(e),
            }
        }
        req.extensions.insert(denied);
        Ok(())
    }
}

/// The keys of a DeleteObjects request its caller may not delete: the operation
/// answers `AccessDenied` for each, as AWS does, and deletes the others.
#[derive(Debug, Clone, Default)]
pub struct DeniedKeys(pub std::collections::HashSet<String>);

/// `GET /minio/health/live` and `/minio/health/ready`, unauthenticated (load
/// balancers probe them unsigned).
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
