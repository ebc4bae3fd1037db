//! `[api]`: where the HTTP API listens, its token, body and wait limits, the
//! admission limit on queued jobs, the event backlog and job webhooks. This module
//! owns the section: its defaults and its validation.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    /// Bearer token `/api/v1` requires; empty = none (allowed only on loopback).
    pub token: String,
    /// Require the token on /healthz, /readyz and /metrics too.
    pub protect_ops: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest input image a job may name (`s3://`, URL, base64 or a multipart
    /// file), in bytes; a multipart submit may be this much beyond `max_body_bytes`.
    pub max_image_bytes: u64,
    /// Longest `?wait=` a submit may ask for, in seconds.
    pub max_wait_seconds: u64,
    /// Submits are refused with 429 while this many jobs are queued.
    pub max_queued: u64,
    /// Events kept for `Last-Event-ID` resume.
    pub events_backlog: usize,
    /// Signs job webhooks (`X-Darkroom-Signature: sha256=<hex HMAC>`) when set.
    pub webhook_secret: String,
    /// Tries per job webhook delivery.
    pub webhook_max_attempts: u32,
    /// First retry delay of a job webhook, in milliseconds (doubles, capped at 60 s).
    pub webhook_backoff_ms: u64,
    /// Let requests made for users (job webhooks) reach loopback, link-local and
    /// private addresses; off, they are refused (see [`crate::outbound`]).
    pub allow_private_targets: bool,
    /// Internal targets those requests may reach all the same: addresses,
    /// networks (`10.0.0.0/8`) or host names (`n8n`).
    pub allowed_targets: Vec<String>,
    /// Failed authentications (API token, S3 signature) one client address may
    /// make within `auth_lockout_seconds` before it is refused with 429.
    pub max_auth_failures: u32,
    pub auth_lockout_seconds: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9080)),
            token: String::new(),
            protect_ops: false,
            max_body_bytes: 8 << 20,
            max_image_bytes: 32 << 20,
            max_wait_seconds: 300,
            max_queued: 10_000,
            events_backlog: 4096,
            webhook_secret: String::new(),
            webhook_max_attempts: 5,
            webhook_backoff_ms: 1000,
            allow_private_targets: false,
            allowed_targets: Vec::new(),
            max_auth_failures: 10,
            auth_lockout_seconds: 60,
        }
    }
}

impl ApiConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.token.is_empty() && !self.addr.ip().is_loopback() {
            return invalid(
                "api.token",
                format!(
                    "the API would listen on {} (not loopback) without a token; set one with \
                     `token = \"...\"` under [api] in the config file or DARKROOM_API__TOKEN=..., \
                     or listen on 127.0.0.1",
                    self.addr
                ),
            );
        }
        if self.max_body_bytes < 1024 {
            return invalid("api.max_body_bytes", "must be at least 1024".into());
        }
        if self.max_image_bytes < 1024 {
            return invalid("api.max_image_bytes", "must be at least 1024".into());
        }
        if self.events_backlog == 0 || self.webhook_max_attempts == 0 || self.max_queued == 0 {
            return invalid(
                "api.events_backlog",
                "api.events_backlog, api.webhook_max_attempts and api.max_queued must be at least 1".into(),
            );
        }
        if self.max_auth_failures == 0 || self.auth_lockout_seconds == 0 {
            return invalid(
                "api.max_auth_failures",
                "api.max_auth_failures and api.auth_lockout_seconds must be at least 1".into(),
            );
        }
        self.targets()?;
        Ok(())
    }

    /// The failed-authentication limit shared by the API and S3 listeners.
    pub fn throttle(&self) -> crate::throttle::AuthThrottle {
        crate::throttle::AuthThrottle::new(
            self.max_auth_failures,
            std::time::Duration::from_secs(self.auth_lockout_seconds),
        )
    }

    /// Which targets requests made for users may reach.
    pub fn targets(&self) -> Result<crate::outbound::TargetPolicy, ConfigError> {
        crate::outbound::TargetPolicy::new(self.allow_private_targets, &self.allowed_targets).map_err(
            |message| ConfigError::Invalid {
                key: "api.allowed_targets",
                message,
            },
        )
    }

    /// How job webhooks are retried (in flight ones stop at shutdown).
    pub fn webhook_retries(&self) -> crate::webhook::RetryPolicy {
        crate::webhook::RetryPolicy {
            max_attempts: self.webhook_max_attempts,
            backoff_ms: self.webhook_backoff_ms,
            stop_in_flight: true,
        }
    }

    /// The jobs service's admission limits.
    pub fn job_limits(&self) -> crate::service::JobLimits {
        crate::service::JobLimits {
            max_queued: self.max_queued,
            max_wait_seconds: self.max_wait_seconds,
        }
    }
}
