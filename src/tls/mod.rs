//! TLS for darkroom's two listeners (S3 and the HTTP API) and its own clients.
//!
//! The listeners ([`listen::Listener`]) speak TLS when `[tls]` names a certificate
//! and key ([`config::TlsConfig`]); the certificate is re-read when its files change
//! ([`server::ReloadingCert`]), TLS 1.2+ only, HTTP/2 and HTTP/1.1 by ALPN on the
//! API. [`self_signed`] makes a pair for a LAN. [`client::Trust`] is the one place a
//! darkroom client (CLI, remote dashboard, webhooks, alert notifiers, ComfyUI
//! backends, `storage.s3`, `s3://` backups) learns to trust a private CA;
//! verification is never turned off.

pub mod client;
pub mod config;
pub mod listen;
pub mod self_signed;
pub mod server;

pub use client::Trust;
pub use config::{CertPair, Listener as ListenerKind, TlsConfig};
pub use listen::{Incoming, Listener, Stream};
pub use server::{Alpn, TlsError};
