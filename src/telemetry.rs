//! Logging: `tracing` to stderr (or, under the dashboard, to a file so nothing is
//! written over the screen), human-readable by default or JSON lines for daemons
//! under systemd or compose (`--log-format json`). Every line is also kept in a
//! bounded in-memory [`LogBuffer`], which the dashboard's log panel and
//! `GET /api/v1/logs` read.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::clock::Clock as _;
use crate::sync::lock;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `darkroom=debug,info`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        EnvFilter::try_new(&self.level)
            .map(drop)
            .map_err(|e| crate::config::ConfigError::Invalid {
                key: "log.level",
                message: format!(
                    "{:?} is not a tracing filter (info, debug, darkroom=debug,info): {e}",
                    self.level
                ),
            })
    }
}

/// How severe a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

named_enum!(LogLevel, "log level", {
    Error => "ERROR",
    Warn => "WARN",
    Info => "INFO",
    Debug => "DEBUG",
    Trace => "TRACE",
});

impl From<&tracing::Level> for LogLevel {
    fn from(level: &tracing::Level) -> Self {
        match *level {
            tracing::Level::ERROR => Self::Error,
            tracing::Level::WARN => Self::Warn,
            tracing::Level::INFO => Self::Info,
            tracing::Level::DEBUG => Self::Debug,
            tracing::Level::TRACE => Self::Trace,
        }
    }
}

/// Where the formatted log goes.
pub enum Output<'a> {
    Stderr,
    /// Appended to this file (the dashboard owns the terminal).
    File(&'a Path),
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
///
/// The `s3s` crate logs every refused request (a 404, a bad signature) at ERROR;
/// darkroom logs the failures that matter itself, so `s3s` is quiet unless the
/// level names it.
pub fn init(format: LogFormat, level: &str, output: &Output<'_>) -> std::io::Result<()> {
    let directive = if level.contains("s3s") {
        level.to_string()
    } else {
        format!("{level},s3s=off")
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directive))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = match output {
        Output::Stderr => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
        Output::File(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(Mutex::new(file))
        }
    };
    let ansi = matches!(output, Output::Stderr);
    let registry = tracing_subscriber::registry().with(filter).with(logs().clone());
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(writer),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("darkroom: logging was already set up: {e}");
    }
    Ok(())
}

/// The process's log buffer (what [`init`] feeds).
pub fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| LogBuffer::new(2000))
}

/// One log line as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Numbered from 1 in the order logged; ask for lines after the last you saw.
    pub seq: u64,
    pub at_ms: i64,
    pub level: LogLevel,
    pub target: String,
    /// The message followed by its fields (`key=value`).
    pub message: String,
}

/// The last lines logged, numbered; cheap to clone.
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Mutex<Lines>>,
}

struct Lines {
    next: u64,
    capacity: usize,
    lines: VecDeque<LogLine>,
}

impl LogBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Lines {
                next: 1,
                capacity: capacity.max(1),
                lines: VecDeque::new(),
            })),
        }
    }

    /// Adds a line, dropping the oldest beyond the capacity.
    pub fn push(&self, at_ms: i64, level: LogLevel, target: &str, message: String) {
        let mut l = lock(&self.inner);
        let seq = l.next;
        l.next += 1;
        if l.lines.len() == l.capacity {
            l.lines.pop_front();
        }
        l.lines.push_back(LogLine {
            seq,
            at_ms,
            level,
            target: target.to_owned(),
            message,
        });
    }

    /// Up to `limit` lines after `after`, the newest ones when more are kept.
    pub fn after(&self, after: u64, limit: usize) -> Vec<LogLine> {
        let l = lock(&self.inner);
        let newer: Vec<&LogLine> = l.lines.iter().filter(|x| x.seq > after).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogBuffer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let meta = event.metadata();
        let message = if text.fields.is_empty() {
            text.message
        } else if text.message.is_empty() {
            text.fields
        } else {
            format!("{} {}", text.message, text.fields)
        };
        self.push(
            crate::clock::SystemClock.now_ms(),
            meta.level().into(),
            meta.target(),
            message,
        );
    }
}

/// Collects an event's message and its other fields as `key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.add(field, format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.add(field, format_args!("{value:?}"));
        }
    }
}

impl Text {
    fn add(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value}", field.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_keeps_messages_and_fields_numbered() {
        let buffer = LogBuffer::new(2);
        let subscriber = tracing_subscriber::registry().with(buffer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            tracing::warn!(job = "01J", attempt = 2, "job attempt failed");
            tracing::error!(path = "/data", "disk full");
        });
        let lines = buffer.after(0, 10);
        // The capacity is 2: the first line is gone.
        assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(lines[0].level.as_str(), "WARN");
        assert_eq!(lines[0].message, "job attempt failed job=01J attempt=2");
        assert_eq!(buffer.after(2, 10).len(), 1);
        assert_eq!(buffer.after(0, 1)[0].seq, 3);
    }
}
