//! The S3 credentials: the configured pair, or one generated at first start and
//! kept in `{data_dir}/credentials.toml` (mode 0600), printed once.

use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::s3::Credentials;

/// The configured credentials, or the ones generated at first start.
pub(super) fn resolve_credentials(config: &Config) -> anyhow::Result<Credentials> {
    if !config.s3.access_key.is_empty() {
        return Ok(Credentials {
            access_key: config.s3.access_key.clone(),
            secret_key: config.s3.secret_key.clone(),
        });
    }
    load_or_generate_credentials(&config.data_dir.join("credentials.toml"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCredentials {
    access_key: String,
    secret_key: String,
}

fn load_or_generate_credentials(path: &Path) -> anyhow::Result<Credentials> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let c: StoredCredentials =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        return Ok(Credentials {
            access_key: c.access_key,
            secret_key: c.secret_key,
        });
    }
    use rand::distr::{Alphanumeric, SampleString};
    let mut rng = rand::rng();
    let c = StoredCredentials {
        access_key: Alphanumeric.sample_string(&mut rng, 20).to_uppercase(),
        secret_key: Alphanumeric.sample_string(&mut rng, 40),
    };
    let text = toml::to_string(&c)?;
    write_private(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "darkroom: generated S3 credentials (stored in {}, shown once):\n  access key: {}\n  secret key: {}",
        path.display(),
        c.access_key,
        c.secret_key
    );
    // For the dashboard's log panel (the lines above scroll away under it).
    tracing::info!(file = %path.display(), access_key = %c.access_key, "generated S3 credentials; the secret is in the file");
    Ok(Credentials {
        access_key: c.access_key,
        secret_key: c.secret_key,
    })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
