//! Errors of the ComfyUI client: every variant names the URL at fault, and a
//! rejected workflow (HTTP 400 from `/prompt`) carries ComfyUI's `node_errors`
//! turned into one readable line per node input.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

/// What can go wrong talking to one ComfyUI server.
#[derive(Debug, thiserror::Error)]
pub enum ComfyError {
    /// Nothing listens at the address (connection refused, host unreachable): the
    /// dispatcher counts this as "backend gone".
    #[error("ComfyUI at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server's TLS certificate was refused (a self-signed one, or signed by a
    /// private CA that `tls.ca_file` does not name): the backend counts as gone.
    #[error(
        "ComfyUI at {url}: its TLS certificate is not trusted ({reason}); set tls.ca_file to the CA that signed it"
    )]
    Untrusted { url: String, reason: String },
    /// Any other transport failure (timeout, reset, body read).
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// ComfyUI answered with an unexpected status.
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    /// ComfyUI rejected the workflow (HTTP 400 from POST /prompt).
    #[error("ComfyUI rejected the workflow ({kind}): {message}")]
    Validation {
        /// ComfyUI's `error.type`, e.g. `prompt_outputs_failed_validation`.
        kind: String,
        /// Readable summary naming node id, class, input and reason.
        message: String,
        /// The per-node details the summary was built from.
        node_errors: Vec<NodeError>,
    },
    /// An answer that is not the JSON shape ComfyUI sends.
    #[error("unexpected answer from {url}: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// A WebSocket frame could not be parsed.
    #[error("unexpected WebSocket frame from {url}: {source}")]
    Event {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// The WebSocket failed to connect or broke.
    #[error("WebSocket {url} failed: {source}")]
    WebSocket {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The configured base URL cannot be used.
    #[error("invalid ComfyUI URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
}

impl ComfyError {
    /// True when the backend is not there at all, or not to be trusted (the
    /// dispatcher retries elsewhere).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Untrusted { .. })
    }

    pub(crate) fn from_reqwest(url: &str, source: reqwest::Error) -> Self {
        let url = url.to_owned();
        if let Some(reason) = crate::tls::client::certificate_problem(&source) {
            Self::Untrusted { url, reason }
        } else if source.is_connect() {
            Self::Unreachable { url, source }
        } else {
            Self::Http { url, source }
        }
    }
}

/// One problem with one node input, as reported in ComfyUI's `node_errors`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeError {
    pub node_id: String,
    pub class_type: String,
    /// The input at fault, when ComfyUI names one.
    pub input: Option<String>,
    pub reason: String,
}

#[derive(Deserialize)]
struct Body400 {
    error: ErrorObj,
    #[serde(default)]
    node_errors: std::collections::BTreeMap<String, NodeErrors>,
}

#[derive(Deserialize)]
struct ErrorObj {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: String,
}

#[derive(Deserialize)]
struct NodeErrors {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    #[serde(default)]
    class_type: String,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: String,
    #[serde(default)]
    extra_info: Value,
}

/// Turns a 400 body from POST /prompt into [`ComfyError::Validation`]; `None`
/// when the body is not ComfyUI's error shape.
pub(crate) fn validation_error(body: &str) -> Option<ComfyError> {
    let parsed: Body400 = serde_json::from_str(body).ok()?;
    let mut node_errors = Vec::new();
    for (node_id, node) in parsed.node_errors {
        for e in node.errors {
            let input = e
                .extra_info
                .get("input_name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let mut reason = e.message;
            if !e.details.is_empty() && Some(e.details.as_str()) != input.as_deref() {
                let _ = write!(reason, ": {}", e.details);
            }
            node_errors.push(NodeError {
                node_id: node_id.clone(),
                class_type: node.class_type.clone(),
                input,
                reason,
            });
        }
    }
    let mut message = parsed.error.message;
    if !parsed.error.details.is_empty() {
        let _ = write!(message, " ({})", parsed.error.details);
    }
    for n in &node_errors {
        let _ = write!(message, "; node {} ({})", n.node_id, n.class_type);
        if let Some(input) = &n.input {
            let _ = write!(message, " input `{input}`");
        }
        let _ = write!(message, ": {}", n.reason);
    }
    Some(ComfyError::Validation {
        kind: parsed.error.kind,
        message,
        node_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_value_names_node_class_input_and_reason() {
        let body = include_str!("../../tests/fixtures/comfyui/error_bad_value.json");
        let err = validation_error(body).unwrap();
        let text = err.to_string();
        assert!(text.contains("prompt_outputs_failed_validation"), "{text}");
        assert!(
            text.contains("node 1 (EmptyImage) input `width`: Value -5 smaller than min of 1"),
            "{text}"
        );
        assert!(
            text.contains("node 2 (ImageScale) input `upscale_method`"),
            "{text}"
        );
        let ComfyError::Validation { node_errors, .. } = err else {
            panic!("not a validation error")
        };
        assert_eq!(node_errors.len(), 3);
    }

    #[test]
    fn unknown_node_class_keeps_the_message() {
        let body = include_str!("../../tests/fixtures/comfyui/error_unknown_node_class.json");
        let text = validation_error(body).unwrap().to_string();
        assert!(text.contains("invalid_prompt"), "{text}");
        assert!(text.contains("node NoSuchNode does not exist"), "{text}");
        assert!(text.contains("Node ID '#1'"), "{text}");
    }

    #[test]
    fn non_comfy_body_is_not_a_validation_error() {
        assert!(validation_error("Invalid JSON").is_none());
    }
}
