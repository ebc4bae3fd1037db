//! `darkroom tls self-signed`: a certificate and key for a LAN, where no public CA
//! will sign a name like `gpubox.lan`. Clients trust the certificate itself (it is
//! its own CA: `--ca-bundle cert.pem`, `--ca-file cert.pem`), checked by the
//! SHA-256 fingerprint printed beside it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A pair written to disk.
#[derive(Debug, Clone)]
pub struct Written {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// SHA-256 of the certificate's DER, as `AB:CD:...`.
    pub fingerprint: String,
}

/// A pair that could not be made, naming the host or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    #[error("--host: give at least one DNS name or IP address")]
    NoHost,
    #[error("--host {host:?}: {message}")]
    Host { host: String, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot make the certificate: {0}")]
    Generate(String),
}

/// Generates a self-signed certificate (ECDSA P-256) valid `days` for `hosts` and
/// writes `cert.pem` and `key.pem` (mode 0600) into `dir`.
pub fn write(dir: &Path, hosts: &[String], days: u32) -> Result<Written, SelfSignedError> {
    if hosts.is_empty() {
        return Err(SelfSignedError::NoHost);
    }
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| SelfSignedError::Host {
        host: hosts.join(","),
        message: e.to_string(),
    })?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, hosts[0].clone());
    name.push(rcgen::DnType::OrganizationName, "darkroom self-signed");
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
    let key = rcgen::KeyPair::generate().map_err(|e| SelfSignedError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| SelfSignedError::Generate(e.to_string()))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SelfSignedError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    write_private(&key_file, key.serialize_pem().as_bytes()).map_err(io(&key_file))?;
    std::fs::write(&cert_file, cert.pem()).map_err(io(&cert_file))?;
    Ok(Written {
        cert_file,
        key_file,
        fingerprint: fingerprint(cert.der()),
    })
}

/// SHA-256 of a certificate's DER as colon-separated hex (what browsers show).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes a file only its owner can read (created 0600, replaced whole, synced
/// with its directory).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself durable too: a master key must outlive a crash that
    // follows the first encrypted write.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::config::CertPair;

    #[test]
    fn a_written_pair_loads_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let w = write(dir.path(), &["gpubox.lan".into(), "192.168.1.20".into()], 30).unwrap();
        let pair = CertPair {
            cert_file: w.cert_file.clone(),
            key_file: w.key_file.clone(),
        };
        let key = crate::tls::server::load_pair(&pair, &rustls::crypto::ring::default_provider()).unwrap();
        assert_eq!(fingerprint(key.end_entity_cert().unwrap()), w.fingerprint);
        let mode = std::fs::metadata(&w.key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(write(dir.path(), &[], 1), Err(SelfSignedError::NoHost)));
    }
}
