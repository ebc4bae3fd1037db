//! The server side of TLS: a `rustls` configuration (TLS 1.2 and 1.3 only, ring's
//! AEAD suites with forward secrecy) whose certificate is re-read when its files
//! change, so a renewal (Let's Encrypt, a new self-signed pair) takes effect on the
//! next handshake without a restart and without touching open connections.
//!
//! [`ReloadingCert`] checks the files' identity (size, modification time, inode) on
//! each handshake — two `stat` calls — and loads them again when they changed. A
//! pair that does not load (a renewal half written: the new certificate beside the
//! old key) is logged and the previous pair keeps serving until the files agree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::config::CertPair;
use crate::sync::lock;

/// A certificate or key that cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{cert} and {key}: {message}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// What ALPN a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1 only (the S3 listener: S3 clients speak HTTP/1.1).
    Http1,
    /// HTTP/2 preferred, HTTP/1.1 accepted (the API).
    H2AndHttp1,
}

/// Builds a TLS acceptor serving `pair`, re-read when its files change.
pub fn acceptor(pair: &CertPair, alpn: Alpn) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = ReloadingCert::open(pair, provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::File {
            path: pair.cert_file.clone(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = match alpn {
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::H2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Reads a PEM chain and key and checks they belong together.
pub fn load_pair(pair: &CertPair, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(&pair.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&pair.key_file).map_err(|e| TlsError::File {
        path: pair.key_file.clone(),
        message: format!("no usable PEM private key: {e}"),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Pair {
        cert: pair.cert_file.clone(),
        key: pair.key_file.clone(),
        message: e.to_string(),
    })
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |message: String| TlsError::File {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Which version of the files is loaded: size, modification time and inode of each.
type Stamp = [(u64, Option<std::time::SystemTime>, u64); 2];

fn stamp(pair: &CertPair) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok(), m.ino()))
    };
    Some([one(&pair.cert_file)?, one(&pair.key_file)?])
}

/// A certificate resolver that follows its files.
pub struct ReloadingCert {
    pair: CertPair,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<Stamp>, Arc<CertifiedKey>)>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("pair", &self.pair)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair now (an error stops the start, naming the file).
    pub fn open(pair: &CertPair, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamp = stamp(pair);
        let key = load_pair(pair, &provider)?;
        Ok(Self {
            pair: pair.clone(),
            provider,
            current: Mutex::new((stamp, Arc::new(key))),
        })
    }

    /// The pair to serve: the loaded one, or the files' new version when they
    /// changed and load.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.pair);
        let mut current = lock(&self.current);
        if now.is_some() && now != current.0 {
            match load_pair(&self.pair, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.pair.cert_file.display(), "tls: certificate reloaded");
                    *current = (now, Arc::new(key));
                }
                // Logged once per change of the files, not once per handshake.
                Err(e) => {
                    tracing::warn!(error = %e, "tls: the changed certificate does not load; serving the previous one");
                    current.0 = now;
                }
            }
        }
        current.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
