//! The client side: the one place darkroom's own HTTP clients (the CLI, the
//! remote dashboard, webhooks, alert notifiers) learn to trust a private CA besides
//! the public roots (`--ca-file`, `tls.ca_file`, `DARKROOM_CA_FILE`). There is no
//! way to skip verification.

use std::path::Path;

use super::server::TlsError;

/// Adds every certificate of the PEM file `ca_file` as a trusted root.
pub fn trust(
    builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, TlsError> {
    let Some(path) = ca_file else {
        return Ok(builder);
    };
    let mut builder = builder;
    for der in super::server::load_certs(path)? {
        let cert = reqwest::Certificate::from_der(der.as_ref()).map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}
