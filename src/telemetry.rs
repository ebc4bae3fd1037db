//! Logging: `tracing` to stderr, human-readable by default or JSON lines for
//! daemons under systemd or compose (`--log-format json`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
///
/// The `s3s` crate logs every refused request (a 404, a bad signature) at ERROR;
/// darkroom logs the failures that matter itself, so `s3s` is quiet unless the
/// level names it.
pub fn init(format: LogFormat, level: &str) {
    let directive = if level.contains("s3s") {
        level.to_string()
    } else {
        format!("{level},s3s=off")
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directive))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("darkroom: logging was already set up: {e}");
    }
}
