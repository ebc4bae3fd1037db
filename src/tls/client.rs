//! The client side: the one place darkroom's own clients (the CLI, the remote
//! dashboard, webhooks, alert notifiers, ComfyUI backends over https and wss,
//! `storage.s3` and `s3://` backups) learn to trust a private CA besides the
//! public roots (`--ca-file`, `tls.ca_file`, `DARKROOM_CA_FILE`). There is no way
//! to skip verification.
//!
//! [`Trust`] reads the CA file once and hands the same certificates to each
//! client stack: reqwest ([`Trust::reqwest`]), a rustls configuration for the
//! ComfyUI WebSocket ([`Trust::rustls`]) and the HTTP client under aws-sdk-s3
//! ([`Trust::aws_http_client`]). [`certificate_problem`] finds a refused
//! certificate in an error's chain, so a wrong CA reads as one, not as "connection
//! failed".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::server::TlsError;

/// The CAs darkroom's clients trust: the public roots, plus every certificate of
/// the CA file when one is given. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The CA file and its certificates, when one is given.
    ca: Option<Arc<CaFile>>,
    /// The rustls client configuration (public roots + the CA file).
    rustls: Arc<rustls::ClientConfig>,
}

#[derive(Debug)]
struct CaFile {
    path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
}

impl Default for Trust {
    /// The public roots only.
    fn default() -> Self {
        Self::build(None).unwrap_or_else(|e| unreachable!("no CA file, no error: {e}"))
    }
}

impl Trust {
    /// The public roots plus every certificate of the PEM file `ca_file` (an
    /// error names the file).
    pub fn load(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let ca = match ca_file {
            None => None,
            Some(path) => Some(Arc::new(CaFile {
                path: path.to_path_buf(),
                certs: super::server::load_certs(path)?,
            })),
        };
        Self::build(ca)
    }

    fn build(ca: Option<Arc<CaFile>>) -> Result<Self, TlsError> {
        let mut roots: rustls::RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
        if let Some(ca) = &ca {
            for cert in &ca.certs {
                roots.add(cert.clone()).map_err(|e| ca.error(&e))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::File {
                path: ca.as_ref().map(|c| c.path.clone()).unwrap_or_default(),
                message: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            ca,
            rustls: Arc::new(config),
        })
    }

    /// The CA file, when one is given.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref().map(|c| c.path.as_path())
    }

    /// `builder` trusting the CA file's certificates too.
    pub fn reqwest(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, TlsError> {
        let Some(ca) = &self.ca else {
            return Ok(builder);
        };
        let mut builder = builder;
        for der in &ca.certs {
            let cert = reqwest::Certificate::from_der(der.as_ref()).map_err(|e| ca.error(&e))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(builder)
    }

    /// A rustls client configuration (TLS 1.2+, the public roots and the CA file),
    /// for the ComfyUI WebSocket.
    pub fn rustls(&self) -> Arc<rustls::ClientConfig> {
        self.rustls.clone()
    }

    /// The HTTP client for aws-sdk-s3 trusting the CA file besides the system's
    /// roots (the SDK's default), or `None` with no CA file: the SDK's own default.
    pub fn aws_http_client(&self) -> Result<Option<aws_sdk_s3::config::SharedHttpClient>, TlsError> {
        use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let mut store = TrustStore::default();
        for der in &ca.certs {
            store.add_pem_certificate(pem(der));
        }
        let context = TlsContext::builder()
            .with_trust_store(store)
            .build()
            .map_err(|e| ca.error(&e))?;
        Ok(Some(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context)
                .build_https(),
        ))
    }
}

impl CaFile {
    fn error(&self, e: &dyn std::fmt::Display) -> TlsError {
        TlsError::File {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

/// A DER certificate as PEM text.
fn pem(der: &CertificateDer<'_>) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// Adds every certificate of the PEM file `ca_file` as a trusted root.
pub fn trust(
    builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, TlsError> {
    Trust::load(ca_file)?.reqwest(builder)
}

/// When `error` (or one of its causes) is a server certificate the client
/// refused, what rustls said about it (`invalid peer certificate: UnknownIssuer`).
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)) =
            e.downcast_ref::<rustls::Error>()
        {
            return Some(tls.to_string());
        }
        // An io::Error's `source` is its inner error's source, skipping the inner
        // error itself (where hyper and tokio-rustls put rustls' verdict): go in.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// `text` (how `error` reads), unless `error` is a refused server certificate:
/// then a sentence that says so and what to set, for errors whose own text buries
/// it (aws-sdk-s3's "dispatch failure").
pub fn refusal_or(error: &(dyn std::error::Error + 'static), text: impl std::fmt::Display) -> String {
    match certificate_problem(error) {
        Some(reason) => format!(
            "the server's TLS certificate is not trusted ({reason}); set tls.ca_file (or --ca-file) to the CA that signed it"
        ),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_is_read_once_and_named_when_bad() {
        let dir = tempfile::tempdir().unwrap();
        let written = crate::tls::self_signed::write(dir.path(), &["ca.test".into()], 1).unwrap();
        let trust = Trust::load(Some(&written.cert_file)).unwrap();
        assert_eq!(trust.ca_file(), Some(written.cert_file.as_path()));
        assert!(trust.aws_http_client().unwrap().is_some());
        assert!(Trust::default().aws_http_client().unwrap().is_none());
        let pem_text = String::from_utf8(pem(&trust.ca.as_ref().unwrap().certs[0])).unwrap();
        assert_eq!(
            pem_text.trim(),
            std::fs::read_to_string(&written.cert_file).unwrap().trim()
        );

        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let err = Trust::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.starts_with(&bad.display().to_string()), "{err}");
    }

    #[test]
    fn a_refused_certificate_is_found_under_io_errors() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        // As hyper wraps it: an io::Error in an io::Error.
        let io = std::io::Error::other(io);
        let found = certificate_problem(&io).unwrap();
        assert!(found.contains("UnknownIssuer"), "{found}");
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(certificate_problem(&other), None);
    }
}
