//! The ComfyUI client: everything darkroom says to a ComfyUI server, in its real
//! API as recorded from a real server (`tests/fixtures/comfyui/`) — submit over
//! HTTP, follow over the WebSocket, read results from `/history` and files from `/view`, cancel with
//! `/queue` delete and `/interrupt` — plus the workflow [`templates`] that jobs
//! name instead of sending a full workflow. The dispatcher builds on this; it does
//! not speak HTTP to ComfyUI itself.

mod client;
mod error;
mod events;
pub mod templates;
mod types;
mod ws;

pub use client::{ComfyClient, parse_base_url};
pub use error::{ComfyError, NodeError};
pub use events::{BinaryImage, ComfyEvent, ExecutionError, ExecutionInterrupted, ImageFormat, NodeProgress};
pub use templates::{
    Manifest, ParamSpec, ParamType, RenderedWorkflow, SourceError, Template, TemplateError, TemplateSource,
    Templates,
};
pub use types::{
    Device, HistoryEntry, HistoryStatus, ImageRef, ImageType, NodeOutput, OutputImage, PromptFailure,
    PromptState, QueueItem, QueueSnapshot, Submitted, SystemInfo, SystemStats, UploadedImage,
};
pub use ws::{Completion, EventStream, wait_for_completion};
