//! Input images of a job at run time. At submit, the jobs service resolved each
//! `image` parameter (an `s3://` object, a URL, base64, a multipart file) into an
//! [`InputImage`]: its bytes stored once on darkroom's store under
//! `inputs/{sha256}.{ext}` in the output bucket, the job payload carrying only that
//! reference. Before a prompt is submitted, [`bind`] uploads each input to the
//! chosen backend with POST /upload/image under the content-addressed name
//! `darkroom/{sha256}.{ext}` and binds the name ComfyUI answers into the
//! `LoadImage` input. ComfyUI keeps the name for identical bytes, so a retry or a
//! second job with the same picture never makes a second file; and each backend's
//! uploads are remembered here, so the same bytes are not even sent twice to it.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Shared;
use super::backend::Backend;
use super::request::JobSpec;
use crate::comfy::ComfyError;
use crate::sync::lock;

/// The subfolder of ComfyUI's input folder darkroom uploads into.
pub const SUBFOLDER: &str = "darkroom";

/// One input image of a job, as the payload records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputImage {
    /// The template parameter it fills.
    pub param: String,
    /// The workflow node and input it is bound to.
    pub node: String,
    pub input: String,
    /// SHA-256 of the bytes, hex: the name it has everywhere.
    pub sha256: String,
    /// Where darkroom keeps the bytes (`inputs/{sha256}.{ext}` in the output bucket).
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub size: u64,
    /// Where it came from: `s3://bucket/key`, the URL, `base64` or `multipart:NAME`.
    pub source: String,
}

impl InputImage {
    /// The file extension of its content type.
    pub fn extension(content_type: &str) -> &'static str {
        match content_type {
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            _ => "png",
        }
    }

    /// The file name it is uploaded under: `{sha256}.{ext}`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.sha256, Self::extension(&self.content_type))
    }

    /// What the workflow names before the upload answers: `darkroom/{sha256}.{ext}`
    /// (so the prompt-cache key, a hash of the workflow, includes the image's hash).
    pub fn comfy_path(&self) -> String {
        format!("{SUBFOLDER}/{}", self.file_name())
    }

    /// The object key of content-addressed bytes.
    pub fn key_of(sha256: &str, content_type: &str) -> String {
        format!("inputs/{sha256}.{}", Self::extension(content_type))
    }
}

/// The names each backend answered for the inputs uploaded to it since start.
#[derive(Debug, Default)]
pub(crate) struct Uploaded(Mutex<HashMap<(String, String), String>>);

impl Uploaded {
    fn get(&self, backend: &str, file: &str) -> Option<String> {
        lock(&self.0).get(&(backend.to_owned(), file.to_owned())).cloned()
    }

    fn put(&self, backend: &str, file: &str, path: String) {
        lock(&self.0).insert((backend.to_owned(), file.to_owned()), path);
    }
}

/// Why the inputs could not be bound.
#[derive(Debug)]
pub(super) enum BindError {
    /// The backend did not take the upload.
    Comfy(ComfyError),
    /// The stored bytes could not be read.
    Store(String),
}

/// `spec`'s workflow with each input uploaded to `backend` and its name bound.
pub(super) async fn bind(shared: &Shared, backend: &Backend, spec: &JobSpec) -> Result<Value, BindError> {
    let mut workflow = spec.workflow.clone();
    for input in &spec.inputs {
        let file = input.file_name();
        let path = match shared.uploaded.get(&backend.url, &file) {
            Some(path) => path,
            None => {
                let bytes = shared.sink.get(&input.bucket, &input.key).await.map_err(|e| {
                    BindError::Store(format!("cannot read input {}/{}: {e}", input.bucket, input.key))
                })?;
                let answer = backend
                    .client
                    .upload_image(&file, SUBFOLDER, bytes)
                    .await
                    .map_err(BindError::Comfy)?;
                let path = if answer.subfolder.is_empty() {
                    answer.name
                } else {
                    format!("{}/{}", answer.subfolder, answer.name)
                };
                shared.uploaded.put(&backend.url, &file, path.clone());
                path
            }
        };
        workflow[&input.node]["inputs"][&input.input] = Value::from(path);
    }
    Ok(workflow)
}
