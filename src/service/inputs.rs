//! Input images at submit: every parameter of type `image` a request sets is
//! resolved before the job is admitted, so a job is never half-admitted. A value
//! may be an object on darkroom's own store (`s3://bucket/key`, read if the caller
//! may read it: [`Inputs::may_read`]), an `http://` or `https://` URL (fetched by
//! the outbound guard's client, size-limited, content type checked), base64 in
//! JSON (`{"base64": "..."}`, or a `data:image/png;base64,...` URL), or a file of
//! a `multipart/form-data` submit (the part named like the parameter). Any other
//! string is a file name already in the backend's input folder, as before.
//!
//! The bytes must be a PNG, JPEG or WebP picture of at most `api.max_image_bytes`;
//! they are stored once, content-addressed, as `inputs/{sha256}.{ext}` in the
//! output bucket, and the parameter is rewritten to `darkroom/{sha256}.{ext}`, the
//! name the dispatcher uploads it under ([`crate::dispatch::InputImage`]). Every
//! refusal is a 400 naming the parameter (`params.image`).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ServiceError;
use crate::comfy::{ParamType, Templates};
use crate::dispatch::{Dispatcher, InputImage, JobRequest};
use crate::object_store::{ObjectStore, StorageError};
use crate::outbound::TargetPolicy;
use crate::queue::Queue;
use crate::users::{Principal, Role};

/// What resolves input images; cheap to clone.
#[derive(Clone)]
pub struct Inputs {
    inner: Arc<Inner>,
}

struct Inner {
    storage: ObjectStore,
    dispatcher: Dispatcher,
    queue: Queue,
    /// Guarded by the targets policy (see [`crate::outbound`]).
    http: reqwest::Client,
    targets: TargetPolicy,
    max_bytes: u64,
}

/// Picture bytes and where they came from.
struct Picture {
    bytes: Bytes,
    source: String,
}

impl Inputs {
    /// `http` must be [`TargetPolicy::guard`]ed by `targets`.
    pub fn new(
        storage: ObjectStore,
        dispatcher: Dispatcher,
        queue: Queue,
        (http, targets): (reqwest::Client, TargetPolicy),
        max_bytes: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                dispatcher,
                queue,
                http,
                targets,
                max_bytes,
            }),
        }
    }

    /// Resolves the image parameters of `request` (for `request.reader`; none:
    /// darkroom itself, which reads everything): stores each picture and names
    /// it in the parameter, and records it in `request.inputs`.
    pub async fn resolve(
        &self,
        templates: &Templates,
        mut request: JobRequest,
    ) -> Result<JobRequest, ServiceError> {
        let files = std::mem::take(&mut request.files);
        let Some(name) = request.template.clone() else {
            if let Some(param) = files.keys().next() {
                return Err(ServiceError::invalid(
                    format!("params.{param}"),
                    "files are for a `template`'s image parameters",
                ));
            }
            return Ok(request);
        };
        let Ok(template) = templates.get(&name) else {
            return Ok(request); // the renderer names the unknown template
        };
        for param in files.keys() {
            if template
                .manifest
                .params
                .get(param)
                .is_none_or(|p| p.kind != ParamType::Image)
            {
                return Err(ServiceError::invalid(
                    format!("params.{param}"),
                    format!("template `{name}` has no image parameter `{param}`"),
                ));
            }
        }
        for (param, spec) in &template.manifest.params {
            if spec.kind != ParamType::Image {
                continue;
            }
            let field = format!("params.{param}");
            let picture = match files.get(param) {
                Some((file, bytes)) => Picture {
                    bytes: bytes.clone(),
                    source: format!("multipart:{file}"),
                },
                None => match request.params.get(param) {
                    Some(value) => match self.fetch(request.reader.as_ref(), value).await {
                        Ok(Some(p)) => p,
                        Ok(None) => continue,
                        Err(message) => return Err(ServiceError::invalid(field, message)),
                    },
                    None => continue,
                },
            };
            let input = self
                .store(param, (&spec.node, &spec.input), picture)
                .await
                .map_err(|m| ServiceError::invalid(field, m))?;
            request
                .params
                .insert(param.clone(), Value::from(input.comfy_path()));
            request.inputs.push(input);
        }
        Ok(request)
    }

    /// The picture a parameter's value names (`None`: a backend file name).
    async fn fetch(&self, reader: Option<&Principal>, value: &Value) -> Result<Option<Picture>, String> {
        let text = match value {
            Value::Object(o) => {
                let Some(b64) = o.get("base64").and_then(Value::as_str).filter(|_| o.len() == 1) else {
                    return Err("an image object is {\"base64\": \"...\"}".into());
                };
                return Ok(Some(Picture {
                    bytes: self.decode(b64)?,
                    source: "base64".into(),
                }));
            }
            Value::String(s) => s.as_str(),
            _ => return Ok(None), // the renderer names the wrong type
        };
        if let Some(rest) = text.strip_prefix("data:") {
            let Some((_, b64)) = rest.split_once(";base64,") else {
                return Err("a data: URL must be base64 (data:image/png;base64,...)".into());
            };
            return Ok(Some(Picture {
                bytes: self.decode(b64)?,
                source: "base64".into(),
            }));
        }
        if let Some(path) = text.strip_prefix("s3://") {
            let (bucket, key) = path
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| format!("{text:?} is not s3://bucket/key"))?;
            if !self.may_read(reader, bucket, key).await {
                return Err(format!("{text}: no read access (or no such object)"));
            }
            let bytes = read_object(&self.inner.storage, bucket, key, self.inner.max_bytes)
                .await
                .map_err(|e| format!("{text}: {e}"))?;
            return Ok(Some(Picture {
                bytes,
                source: text.to_owned(),
            }));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Some(Picture {
                bytes: self.download(text).await?,
                source: text.to_owned(),
            }));
        }
        Ok(None)
    }

    fn decode(&self, b64: &str) -> Result<Bytes, String> {
        let max = self.inner.max_bytes;
        if (b64.len() as u64) / 4 * 3 > max + 3 {
            return Err(format!("too large: at most {max} bytes (api.max_image_bytes)"));
        }
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Bytes::from)
            .map_err(|e| format!("not valid base64: {e}"))
    }

    /// Fetches a URL through the guarded client, at most `max_bytes`, refusing
    /// an answer that says it is not an image.
    async fn download(&self, url: &str) -> Result<Bytes, String> {
        crate::service::jobs::check_url("url", url).map_err(|_| format!("{url:?} is not an http(s) URL"))?;
        self.inner.targets.check_url(url).await?;
        let resp = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url} is unreachable: {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.is_empty()
            && !content_type.starts_with("image/")
            && !content_type.starts_with("application/octet-stream")
        {
            return Err(format!("{url} is not an image (Content-Type: {content_type})"));
        }
        let max = self.inner.max_bytes;
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(format!(
                "{url} is too large: at most {max} bytes (api.max_image_bytes)"
            ));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("{url}: {}", error_chain(&e)))?;
            if (body.len() + chunk.len()) as u64 > max {
                return Err(format!(
                    "{url} is too large: at most {max} bytes (api.max_image_bytes)"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    /// Checks the picture and stores it content-addressed (once).
    async fn store(
        &self,
        param: &str,
        (node, input): (&str, &str),
        picture: Picture,
    ) -> Result<InputImage, String> {
        let max = self.inner.max_bytes;
        if picture.bytes.len() as u64 > max {
            return Err(format!("too large: at most {max} bytes (api.max_image_bytes)"));
        }
        let content_type = sniff(&picture.bytes).ok_or("not an image (PNG, JPEG or WebP)")?;
        let sha256 = hex::encode(Sha256::digest(&picture.bytes));
        let bucket = self.inner.dispatcher.output_bucket().to_owned();
        let key = InputImage::key_of(&sha256, content_type);
        let size = picture.bytes.len() as u64;
        let stored = self
            .inner
            .dispatcher
            .has_object(&bucket, &key)
            .await
            .unwrap_or(false);
        if !stored {
            self.inner
                .dispatcher
                .store_object(&bucket, &key, picture.bytes, content_type)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, %bucket, %key, "cannot store an input image");
                    "cannot be stored now; try again".to_owned()
                })?;
        }
        Ok(InputImage {
            param: param.to_owned(),
            node: node.to_owned(),
            input: input.to_owned(),
            sha256,
            bucket,
            key,
            content_type: content_type.to_owned(),
            size,
            source: picture.source,
        })
    }

    /// Whether `reader` may use `bucket/key` as an input: darkroom itself (no
    /// reader) and admins read everything; other users the objects they own —
    /// their jobs' outputs (`jobs/{id}/` of a job they own, in the output bucket)
    /// and their inbox (`inbox/{user}/` in any bucket).
    ///
    /// The bucket's policy is asked first, as for the user's S3 key: its Deny
    /// wins over everything, its Allow opens the object.
    pub async fn may_read(&self, reader: Option<&Principal>, bucket: &str, key: &str) -> bool {
        let Some(who) = reader else { return true };
        if who.role == Role::Admin {
            return true;
        }
        if let Ok(meta) = self.inner.storage.head_bucket(bucket).await {
            use crate::s3::authz::{Caller, Decision, arn, by_policy};
            let caller = Caller::User {
                who: who.clone(),
                access_key: String::new(),
            };
            let keys = std::collections::HashMap::from([("aws:username".to_owned(), vec![who.user.clone()])]);
            match by_policy(
                &meta,
                &caller,
                &keys,
                "s3:GetObject",
                bucket,
                &arn(bucket, Some(key)),
            ) {
                Decision::Deny => return false,
                Decision::Allow => return true,
                Decision::NotApplicable => {}
            }
        }
        if key.starts_with(&format!("inbox/{}/", who.user)) {
            return true;
        }
        let job = (bucket == self.inner.dispatcher.output_bucket())
            .then(|| {
                key.strip_prefix("jobs/")?
                    .split_once('/')?
                    .0
                    .parse::<ulid::Ulid>()
                    .ok()
            })
            .flatten();
        match job {
            Some(id) => matches!(
                self.inner.queue.get(id).await,
                Ok(Some(j)) if j.owner.as_deref() == Some(who.user.as_str())
            ),
            None => false,
        }
    }
}

/// The content type of PNG, JPEG or WebP bytes, by their signature.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Png => Some("image/png"),
        image::ImageFormat::Jpeg => Some("image/jpeg"),
        image::ImageFormat::WebP => Some("image/webp"),
        _ => None,
    }
}

/// The plaintext of `bucket/key` on darkroom's store, refused above `max` bytes.
pub async fn read_object(storage: &ObjectStore, bucket: &str, key: &str, max: u64) -> Result<Bytes, String> {
    let open = storage.open_object(bucket, key).await.map_err(|e| match e {
        StorageError::NoSuchKey { .. } | StorageError::NoSuchBucket(_) => "no such object".to_owned(),
        other => other.to_string(),
    })?;
    if open.meta.size > max {
        return Err(format!("too large: at most {max} bytes (api.max_image_bytes)"));
    }
    let size = open.meta.size;
    let mut stream = storage
        .read_span(&open.meta, open.body, 0..size, None)
        .map_err(|e| e.to_string())?;
    let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(body.into())
}

/// An error with its causes (reqwest hides the interesting part in `source`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
