//! darkroom's integration tests: the real daemon on port-0 listeners, driven by
//! real clients (aws-sdk-s3, raw HTTP for presigned URLs, child processes for
//! crash tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod config;
mod s3_buckets;
mod s3_crash;
mod s3_lifecycle;
mod s3_list;
mod s3_multipart;
mod s3_objects;
mod s3_security;
