//! Which policy action each S3 operation is (AWS's names: multipart uploads and
//! a copy's destination are `s3:PutObject`, HeadObject is `s3:GetObject`,
//! HeadBucket is `s3:ListBucket`),
//! and which ACL permission grants it, if any (AWS's mapping of ACL permissions to
//! policy actions).

use crate::object_store::Permission;

/// The policy action an operation needs (`s3:` + its name when AWS names it so).
pub fn action_of(op: &str) -> String {
    let named = match op {
        "HeadObject" | "GetObject" | "GetObjectAttributes" => "GetObject",
        "PutObject"
        | "PostObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload" => "PutObject",
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => "ListBucket",
        "ListObjectVersions" => "ListBucketVersions",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "ListParts" => "ListMultipartUploadParts",
        "ListBuckets" => "ListAllMyBuckets",
        "DeleteObjects" => "DeleteObject",
        "GetBucketLifecycleConfiguration" => "GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => "PutLifecycleConfiguration",
        "GetBucketEncryption" => "GetEncryptionConfiguration",
        "PutBucketEncryption" | "DeleteBucketEncryption" => "PutEncryptionConfiguration",
        "GetPublicAccessBlock" => "GetBucketPublicAccessBlock",
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => "PutBucketPublicAccessBlock",
        "DeleteBucketOwnershipControls" => "PutBucketOwnershipControls",
        other => other,
    };
    format!("s3:{named}")
}

/// Where an ACL would grant `action`: the bucket's ACL or the object's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclNeed {
    Bucket(Permission),
    Object(Permission),
}

/// The ACL permission that grants `action`; `None`: no ACL grants it.
pub fn acl_need(action: &str) -> Option<AclNeed> {
    Some(match action {
        "s3:ListBucket" | "s3:ListBucketVersions" | "s3:ListBucketMultipartUploads" => {
            AclNeed::Bucket(Permission::Read)
        }
        "s3:PutObject" | "s3:DeleteObject" | "s3:AbortMultipartUpload" | "s3:ListMultipartUploadParts" => {
            AclNeed::Bucket(Permission::Write)
        }
        "s3:GetBucketAcl" => AclNeed::Bucket(Permission::ReadAcp),
        "s3:PutBucketAcl" => AclNeed::Bucket(Permission::WriteAcp),
        "s3:GetObject" => AclNeed::Object(Permission::Read),
        "s3:GetObjectAcl" => AclNeed::Object(Permission::ReadAcp),
        "s3:PutObjectAcl" => AclNeed::Object(Permission::WriteAcp),
        _ => return None,
    })
}
