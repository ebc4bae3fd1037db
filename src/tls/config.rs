//! `[tls]`: the certificate and key the S3 and API listeners serve (one pair for
//! both, or one per listener), the private CA darkroom's own clients trust, and
//! whether a listener off loopback may run without TLS. This module owns the
//! section: its defaults and its validation.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// TLS for darkroom's listeners and clients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate (a chain is fine: leaf first) for both listeners; empty = no TLS.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching `cert_file`.
    pub key_file: PathBuf,
    /// A private CA (PEM) that darkroom's own clients trust besides the public
    /// roots: webhooks, alert notifiers, `storage.s3`, `s3://` backups, ComfyUI
    /// backends over https and wss.
    pub ca_file: PathBuf,
    /// Refuse to start a listener off loopback without TLS (default: warn).
    pub required_off_loopback: bool,
    /// The S3 listener's own pair, instead of `cert_file` / `key_file`.
    pub s3: Option<CertPair>,
    /// The API listener's own pair, instead of `cert_file` / `key_file`.
    pub api: Option<CertPair>,
}

/// A certificate file and its key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Which listener a pair is for (in messages and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    S3,
    Api,
}

impl Listener {
    pub fn name(self) -> &'static str {
        match self {
            Listener::S3 => "s3",
            Listener::Api => "api",
        }
    }
}

impl TlsConfig {
    /// The pair `listener` serves, or `None` when it speaks plain HTTP.
    pub fn pair_for(&self, listener: Listener) -> Option<CertPair> {
        let own = match listener {
            Listener::S3 => &self.s3,
            Listener::Api => &self.api,
        };
        own.clone().or_else(|| {
            (!self.cert_file.as_os_str().is_empty()).then(|| CertPair {
                cert_file: self.cert_file.clone(),
                key_file: self.key_file.clone(),
            })
        })
    }

    /// The CA file darkroom's clients trust, when one is set.
    pub fn ca(&self) -> Option<&std::path::Path> {
        (!self.ca_file.as_os_str().is_empty()).then_some(self.ca_file.as_path())
    }

    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.as_os_str().is_empty() != self.key_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "tls.cert_file",
                message: "set both tls.cert_file and tls.key_file, or neither".into(),
            });
        }
        for (key, pair) in [("tls.s3", &self.s3), ("tls.api", &self.api)] {
            if let Some(p) = pair
                && (p.cert_file.as_os_str().is_empty() || p.key_file.as_os_str().is_empty())
            {
                return Err(ConfigError::Invalid {
                    key,
                    message: "needs both cert_file and key_file".into(),
                });
            }
        }
        Ok(())
    }

    /// The rule for listeners off loopback: without TLS they are refused when
    /// `tls.required_off_loopback` is set, and otherwise named in the warnings
    /// returned (the daemon logs them loudly at start).
    pub fn check_exposure(&self, listeners: &[(Listener, SocketAddr)]) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        for &(listener, addr) in listeners {
            if addr.ip().is_loopback() || self.pair_for(listener).is_some() {
                continue;
            }
            let message = format!(
                "the {} listener on {addr} (not loopback) speaks plain HTTP: tokens, signatures' payloads \
                 and objects cross the network in clear text; set tls.cert_file and tls.key_file \
                 (`darkroom tls self-signed --host NAME` makes a pair)",
                listener.name()
            );
            if self.required_off_loopback {
                return Err(ConfigError::Invalid {
                    key: "tls.required_off_loopback",
                    message,
                });
            }
            warnings.push(message);
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pair_per_listener_wins_over_the_shared_one() {
        let mut c = TlsConfig {
            cert_file: "all.pem".into(),
            key_file: "all.key".into(),
            ..TlsConfig::default()
        };
        c.api = Some(CertPair {
            cert_file: "api.pem".into(),
            key_file: "api.key".into(),
        });
        assert_eq!(
            c.pair_for(Listener::S3).unwrap().cert_file,
            PathBuf::from("all.pem")
        );
        assert_eq!(
            c.pair_for(Listener::Api).unwrap().cert_file,
            PathBuf::from("api.pem")
        );
        assert!(TlsConfig::default().pair_for(Listener::S3).is_none());
    }

    #[test]
    fn half_a_pair_is_refused_by_name() {
        let c = TlsConfig {
            cert_file: "a.pem".into(),
            ..TlsConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().starts_with("tls.cert_file"));
    }

    #[test]
    fn plain_off_loopback_warns_or_is_refused() {
        let mut c = TlsConfig::default();
        let listeners = [
            (Listener::S3, addr("0.0.0.0:9000")),
            (Listener::Api, addr("127.0.0.1:9080")),
        ];
        let warnings = c.check_exposure(&listeners).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("s3 listener on 0.0.0.0:9000"),
            "{warnings:?}"
        );
        c.required_off_loopback = true;
        let err = c.check_exposure(&listeners).unwrap_err().to_string();
        assert!(err.starts_with("tls.required_off_loopback"), "{err}");
        c.cert_file = "c.pem".into();
        c.key_file = "c.key".into();
        assert!(c.check_exposure(&listeners).unwrap().is_empty());
    }
}
