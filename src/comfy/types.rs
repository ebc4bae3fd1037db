//! The typed answers of ComfyUI's HTTP API (only the fields darkroom uses; the
//! rest is ignored so newer ComfyUI versions keep parsing).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{ExecutionError, ExecutionInterrupted};

/// Which of ComfyUI's folders a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageType {
    Output,
    Temp,
    Input,
}

impl ImageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Output => "output",
            Self::Temp => "temp",
            Self::Input => "input",
        }
    }
}

impl fmt::Display for ImageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file ComfyUI wrote, as named in `executed` and `/history` outputs; fetch
/// it with [`super::ComfyClient::view`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type")]
    pub kind: ImageType,
}

/// An output image with the node that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputImage {
    pub node_id: String,
    pub image: ImageRef,
}

/// The answer to POST /prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub prompt_id: String,
    /// Position in ComfyUI's queue (lowest runs first; negative for `front`).
    pub number: i64,
}

/// One prompt in `/history/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryEntry {
    #[serde(default)]
    pub outputs: BTreeMap<String, NodeOutput>,
    pub status: HistoryStatus,
}

/// One node's outputs in a history entry.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeOutput {
    #[serde(default)]
    pub images: Vec<ImageRef>,
}

/// `status` of a history entry: `messages` are `[event, data]` pairs.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryStatus {
    pub status_str: String,
    pub completed: bool,
    #[serde(default)]
    pub messages: Vec<(String, Value)>,
}

impl HistoryEntry {
    /// Every image of the entry, in node order.
    pub fn images(&self) -> Vec<OutputImage> {
        self.outputs
            .iter()
            .flat_map(|(node_id, out)| {
                out.images.iter().map(|image| OutputImage {
                    node_id: node_id.clone(),
                    image: image.clone(),
                })
            })
            .collect()
    }

    /// What the entry says about how the prompt ended.
    pub fn state(&self) -> PromptState {
        if self.status.status_str == "success" {
            return PromptState::Done(self.images());
        }
        for (event, data) in self.status.messages.iter().rev() {
            let failure = match event.as_str() {
                "execution_error" => serde_json::from_value(data.clone())
                    .ok()
                    .map(PromptFailure::Error),
                "execution_interrupted" => serde_json::from_value(data.clone())
                    .ok()
                    .map(PromptFailure::Interrupted),
                _ => None,
            };
            if let Some(f) = failure {
                return PromptState::Failed(f);
            }
        }
        PromptState::Failed(PromptFailure::Other(self.status.status_str.clone()))
    }
}

/// A prompt in `/queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    pub number: i64,
    pub prompt_id: String,
}

/// `/queue`: the running prompt(s) and the pending ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub running: Vec<QueueItem>,
    pub pending: Vec<QueueItem>,
}

impl QueueSnapshot {
    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        let items = |key: &str| -> Option<Vec<QueueItem>> {
            v.get(key)?
                .as_array()?
                .iter()
                .map(|entry| {
                    Some(QueueItem {
                        number: entry.get(0)?.as_i64()?,
                        prompt_id: entry.get(1)?.as_str()?.to_owned(),
                    })
                })
                .collect()
        };
        Some(Self {
            running: items("queue_running")?,
            pending: items("queue_pending")?,
        })
    }

    pub fn is_running(&self, prompt_id: &str) -> bool {
        self.running.iter().any(|i| i.prompt_id == prompt_id)
    }

    pub fn is_pending(&self, prompt_id: &str) -> bool {
        self.pending.iter().any(|i| i.prompt_id == prompt_id)
    }
}

/// Where a prompt stands, from `/queue` + `/history` (see [`super::ComfyClient::poll_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptState {
    /// Pending in ComfyUI's queue.
    Queued,
    Running,
    Done(Vec<OutputImage>),
    Failed(PromptFailure),
    /// Neither queued nor in history: ComfyUI never had it or forgot it (restart).
    Unknown,
}

impl PromptState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Done(_) | Self::Failed(_) | Self::Unknown)
    }
}

/// Why a prompt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptFailure {
    Error(ExecutionError),
    Interrupted(ExecutionInterrupted),
    /// `status_str` was not "success" and no error message was recorded.
    Other(String),
}

impl fmt::Display for PromptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(e) => write!(
                f,
                "node {} ({}) raised {}: {}",
                e.node_id,
                e.node_type,
                e.exception_type,
                e.exception_message.trim_end()
            ),
            Self::Interrupted(e) => {
                write!(f, "interrupted at node {} ({})", e.node_id, e.node_type)
            }
            Self::Other(s) => write!(f, "ended with status `{s}`"),
        }
    }
}

/// The answer to POST /upload/image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedImage {
    /// The stored name (ComfyUI renames on a clash: `name (1).png`).
    pub name: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type")]
    pub kind: ImageType,
}

/// `/system_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStats {
    pub system: SystemInfo,
    pub devices: Vec<Device>,
}

/// `system` of `/system_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub ram_total: u64,
    #[serde(default)]
    pub ram_free: u64,
    #[serde(default)]
    pub comfyui_version: Option<String>,
    #[serde(default)]
    pub python_version: Option<String>,
    #[serde(default)]
    pub pytorch_version: Option<String>,
}

/// One compute device in `/system_stats` (`cpu` or a GPU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub index: Option<u32>,
    pub vram_total: u64,
    pub vram_free: u64,
    #[serde(default)]
    pub torch_vram_total: u64,
    #[serde(default)]
    pub torch_vram_free: u64,
}
