//! ComfyUI's WebSocket messages as one typed enum.
//!
//! Text frames are `{"type", "data"}`; the types darkroom acts on are parsed into
//! [`ComfyEvent`] variants, anything else becomes [`ComfyEvent::Unknown`] (ComfyUI and
//! its custom nodes add message types freely, so they are never fatal). Binary frames
//! carry preview and `SaveImageWebsocket` images behind a 4-byte big-endian event
//! number (see [`BinaryImage`]).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::ImageRef;

/// One message from ComfyUI's `/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Serialized as `{"type", "data"}` like ComfyUI's frames (fields flattened).
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ComfyEvent {
    /// Queue length, sent to every socket (and first, with `sid`, on connect).
    Status {
        queue_remaining: u64,
        sid: Option<String>,
    },
    ExecutionStart {
        prompt_id: String,
    },
    /// Nodes whose results came from ComfyUI's own cache.
    ExecutionCached {
        prompt_id: String,
        nodes: Vec<String>,
    },
    /// A node starts; `node: None` means the prompt is finished.
    Executing {
        prompt_id: Option<String>,
        node: Option<String>,
    },
    /// Legacy per-node progress bar (e.g. KSampler steps).
    Progress {
        prompt_id: Option<String>,
        node: Option<String>,
        value: u64,
        max: u64,
    },
    /// Per-node progress of the whole prompt (sent on every node start/finish).
    ProgressState {
        prompt_id: String,
        nodes: BTreeMap<String, NodeProgress>,
    },
    /// A node produced UI output; `images` lists saved/preview files.
    Executed {
        prompt_id: String,
        node: String,
        images: Vec<ImageRef>,
    },
    ExecutionSuccess {
        prompt_id: String,
    },
    ExecutionError(ExecutionError),
    ExecutionInterrupted(ExecutionInterrupted),
    /// A binary frame: a preview or a `SaveImageWebsocket` image.
    Binary(BinaryImage),
    /// A message type darkroom does not know (e.g. `feature_flags`, custom nodes).
    Unknown(String),
}

/// One node's entry in `progress_state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProgress {
    pub value: f64,
    pub max: f64,
    /// `running` or `finished` (others may appear).
    pub state: String,
}

/// A node raised while running: ComfyUI's `execution_error` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionError {
    pub prompt_id: String,
    pub node_id: String,
    pub node_type: String,
    pub exception_type: String,
    pub exception_message: String,
    #[serde(default)]
    pub traceback: Vec<String>,
}

/// The prompt was interrupted (POST /interrupt): `execution_interrupted` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionInterrupted {
    pub prompt_id: String,
    pub node_id: String,
    pub node_type: String,
}

/// The image format code of a binary frame (event 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Other(u32),
}

impl ImageFormat {
    fn from_code(code: u32) -> Self {
        match code {
            1 => Self::Jpeg,
            2 => Self::Png,
            other => Self::Other(other),
        }
    }

    /// The MIME type, when known.
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Self::Jpeg => Some("image/jpeg"),
            Self::Png => Some("image/png"),
            Self::Other(_) => None,
        }
    }
}

/// A binary frame. Event 1: 4-byte image type + image; event 4: 4-byte length +
/// JSON metadata + image (the metadata names node and prompt). ComfyUI sends both
/// a sampler's step previews and `SaveImageWebsocket`'s images this way; the node
/// that sent it tells them apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryImage {
    pub event: u32,
    pub format: Option<ImageFormat>,
    pub metadata: Option<Value>,
    /// The node that sent it: the metadata's `node_id` (event 4), else the node
    /// executing when it arrived (filled in by [`super::wait_for_completion`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip)]
    pub bytes: Bytes,
}

impl BinaryImage {
    /// The image's MIME type: from the format code (event 1) or the metadata's
    /// `image_type` (event 4), when it is one darkroom knows.
    pub fn content_type(&self) -> Option<&'static str> {
        if let Some(t) = self.format.and_then(ImageFormat::content_type) {
            return Some(t);
        }
        match self.metadata.as_ref()?.get("image_type")?.as_str()? {
            "image/png" | "PNG" => Some("image/png"),
            "image/jpeg" | "JPEG" => Some("image/jpeg"),
            "image/webp" | "WEBP" => Some("image/webp"),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct StatusData {
    status: StatusInner,
    sid: Option<String>,
}
#[derive(Deserialize)]
struct StatusInner {
    exec_info: ExecInfo,
}
#[derive(Deserialize)]
struct ExecInfo {
    queue_remaining: u64,
}
#[derive(Deserialize)]
struct PromptOnly {
    prompt_id: String,
}
#[derive(Deserialize)]
struct CachedData {
    prompt_id: String,
    nodes: Vec<String>,
}
#[derive(Deserialize)]
struct ExecutingData {
    prompt_id: Option<String>,
    node: Option<String>,
}
#[derive(Deserialize)]
struct ProgressData {
    prompt_id: Option<String>,
    node: Option<String>,
    value: u64,
    max: u64,
}
#[derive(Deserialize)]
struct ProgressStateData {
    prompt_id: String,
    nodes: BTreeMap<String, NodeProgress>,
}
#[derive(Deserialize)]
struct ExecutedData {
    prompt_id: String,
    node: String,
    #[serde(default)]
    output: Option<ExecutedOutput>,
}
#[derive(Deserialize)]
struct ExecutedOutput {
    #[serde(default)]
    images: Vec<ImageRef>,
}

impl ComfyEvent {
    /// Parses one text frame. Unknown types are `Ok(Unknown)`; a known type with
    /// a malformed body is an error.
    pub fn from_text(text: &str) -> Result<Self, serde_json::Error> {
        let frame: Frame = serde_json::from_str(text)?;
        Self::from_frame(&frame.kind, frame.data)
    }

    /// Parses `data` of a message of type `kind`.
    pub fn from_frame(kind: &str, data: Value) -> Result<Self, serde_json::Error> {
        use serde_json::from_value as v;
        Ok(match kind {
            "status" => {
                let d: StatusData = v(data)?;
                Self::Status {
                    queue_remaining: d.status.exec_info.queue_remaining,
                    sid: d.sid,
                }
            }
            "execution_start" => Self::ExecutionStart {
                prompt_id: v::<PromptOnly>(data)?.prompt_id,
            },
            "execution_cached" => {
                let d: CachedData = v(data)?;
                Self::ExecutionCached {
                    prompt_id: d.prompt_id,
                    nodes: d.nodes,
                }
            }
            "executing" => {
                let d: ExecutingData = v(data)?;
                Self::Executing {
                    prompt_id: d.prompt_id,
                    node: d.node,
                }
            }
            "progress" => {
                let d: ProgressData = v(data)?;
                Self::Progress {
                    prompt_id: d.prompt_id,
                    node: d.node,
                    value: d.value,
                    max: d.max,
                }
            }
            "progress_state" => {
                let d: ProgressStateData = v(data)?;
                Self::ProgressState {
                    prompt_id: d.prompt_id,
                    nodes: d.nodes,
                }
            }
            "executed" => {
                let d: ExecutedData = v(data)?;
                Self::Executed {
                    prompt_id: d.prompt_id,
                    node: d.node,
                    images: d.output.map(|o| o.images).unwrap_or_default(),
                }
            }
            "execution_success" => Self::ExecutionSuccess {
                prompt_id: v::<PromptOnly>(data)?.prompt_id,
            },
            "execution_error" => Self::ExecutionError(v(data)?),
            "execution_interrupted" => Self::ExecutionInterrupted(v(data)?),
            other => Self::Unknown(other.to_owned()),
        })
    }

    /// Parses one binary frame; `None` when it is too short to carry an event.
    pub fn from_binary(frame: &Bytes) -> Option<Self> {
        let event = be_u32(frame, 0)?;
        let image = match event {
            1 => BinaryImage {
                event,
                format: Some(ImageFormat::from_code(be_u32(frame, 4)?)),
                metadata: None,
                node: None,
                bytes: frame.slice(8..),
            },
            4 => {
                let len = usize::try_from(be_u32(frame, 4)?).ok()?;
                let end = 8usize.checked_add(len).filter(|e| *e <= frame.len())?;
                let metadata: Option<Value> = serde_json::from_slice(&frame[8..end]).ok();
                let node = metadata
                    .as_ref()
                    .and_then(|m| m.get("node_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                BinaryImage {
                    event,
                    format: None,
                    metadata,
                    node,
                    bytes: frame.slice(end..),
                }
            }
            _ => BinaryImage {
                event,
                format: None,
                metadata: None,
                node: None,
                bytes: frame.slice(4..),
            },
        };
        Some(Self::Binary(image))
    }

    /// The prompt this event belongs to, when it names one.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Self::ExecutionStart { prompt_id }
            | Self::ExecutionCached { prompt_id, .. }
            | Self::ProgressState { prompt_id, .. }
            | Self::Executed { prompt_id, .. }
            | Self::ExecutionSuccess { prompt_id }
            | Self::ExecutionError(ExecutionError { prompt_id, .. })
            | Self::ExecutionInterrupted(ExecutionInterrupted { prompt_id, .. }) => Some(prompt_id),
            Self::Executing { prompt_id, .. } | Self::Progress { prompt_id, .. } => prompt_id.as_deref(),
            Self::Status { .. } | Self::Binary(_) | Self::Unknown(_) => None,
        }
    }

    /// True for the events that end a prompt's run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::ExecutionSuccess { .. } | Self::ExecutionError(_) | Self::ExecutionInterrupted(_)
        )
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl fmt::Display for ComfyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        match self {
            Self::Status { queue_remaining, .. } => write!(f, "status: {queue_remaining} queued"),
            Self::ExecutionStart { prompt_id } => write!(f, "execution_start {prompt_id}"),
            Self::ExecutionCached { prompt_id, nodes } => {
                write!(f, "execution_cached {prompt_id}: {} nodes", nodes.len())
            }
            Self::Executing { prompt_id, node } => {
                write!(f, "executing {} node {}", opt(prompt_id), opt(node))
            }
            Self::Progress {
                prompt_id,
                node,
                value,
                max,
            } => write!(f, "progress {} node {}: {value}/{max}", opt(prompt_id), opt(node)),
            Self::ProgressState { prompt_id, nodes } => {
                let done = nodes.values().filter(|n| n.state == "finished").count();
                write!(f, "progress_state {prompt_id}: {done}/{} nodes", nodes.len())
            }
            Self::Executed {
                prompt_id,
                node,
                images,
            } => write!(f, "executed {prompt_id} node {node}: {} images", images.len()),
            Self::ExecutionSuccess { prompt_id } => write!(f, "execution_success {prompt_id}"),
            Self::ExecutionError(e) => write!(
                f,
                "execution_error {} at node {} ({}): {}: {}",
                e.prompt_id,
                e.node_id,
                e.node_type,
                e.exception_type,
                e.exception_message.trim_end()
            ),
            Self::ExecutionInterrupted(e) => write!(
                f,
                "execution_interrupted {} at node {} ({})",
                e.prompt_id, e.node_id, e.node_type
            ),
            Self::Binary(b) => write!(f, "binary event {}: {} bytes", b.event, b.bytes.len()),
            Self::Unknown(kind) => write!(f, "unknown message type `{kind}`"),
        }
    }
}
