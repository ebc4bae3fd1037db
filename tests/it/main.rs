//! darkroom's integration tests: the real daemon on port-0 listeners, driven by
//! real clients (aws-sdk-s3, awscli, boto3, raw HTTP for presigned URLs), the queue
//! and caches on real redb files, and child processes killed with SIGKILL for the
//! crash tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::field_reassign_with_default,
    clippy::duration_suboptimal_units,
    clippy::too_many_lines
)]

mod api_support;
mod fake_comfy;
mod lossy_proxy;
mod mcp_http_client;
mod serve;
mod support;
mod tmux;

mod api;
mod api_browse;
mod api_events;
mod backup;
mod cache;
mod cli_client;
mod comfy_client;
mod compose;
mod config;
mod daemon;
mod dash;
mod dispatch;
mod gpu;
mod inbox;
mod inputs;
mod mcp;
mod metrics;
mod models;
mod multi_node;
mod openai;
mod pictures;
mod prompts;
mod queue;
mod queue_admin;
mod queue_crash;
mod queue_lease;
mod queue_redis;
mod queue_support;
mod quotas;
mod redis_server;
mod roles;
mod s3_acl;
mod s3_backend;
mod s3_buckets;
mod s3_clients;
mod s3_crash;
mod s3_disk_full;
mod s3_lifecycle;
mod s3_list;
mod s3_matrix;
mod s3_multipart;
mod s3_objects;
mod s3_policy;
mod s3_security;
mod s3_users;
mod service_jobs;
mod sse;
mod sse_keys;
mod templates;
mod tls;
mod tls_clients;
mod users;
mod verify;
