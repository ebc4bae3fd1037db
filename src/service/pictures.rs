//! Pictures of jobs for every front end: a thumbnail of a job's output (scaled to
//! fit a square of `size` pixels, re-encoded as PNG or lossless WebP, kept in a
//! small in-memory cache by output, size and format) and the live preview of a
//! running job (the last frame ComfyUI sent, held by the dispatcher). The HTTP API
//! serves both (`/api/v1/jobs/{id}/outputs/{n}/thumbnail`, `/api/v1/jobs/{id}/preview`);
//! the dashboard's local mode calls them in-process. Decoding and encoding run on
//! a blocking thread.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use super::{ServiceError, Services};
use crate::dispatch::{LivePreview, OutputObject};
use crate::sync::lock;

/// The smallest and largest thumbnail, in pixels on the longer side.
pub const MIN_THUMBNAIL: u32 = 16;
pub const MAX_THUMBNAIL: u32 = 1024;
/// The size asked for when none is given.
pub const DEFAULT_THUMBNAIL: u32 = 256;
/// Outputs larger than this are not read to make a thumbnail.
pub const MAX_SOURCE_BYTES: u64 = 64 << 20;
/// Pictures wider or taller than this are refused (a decompression bomb).
const MAX_SOURCE_SIDE: u32 = 16_384;
/// What the thumbnail cache holds at most.
const CACHE_BYTES: usize = 32 << 20;

/// How a thumbnail is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailFormat {
    Png,
    Webp,
}

named_enum!(ThumbnailFormat, "thumbnail format", {
    Png => "png",
    Webp => "webp",
});

impl ThumbnailFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }
}

/// A thumbnail of one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Bytes,
    pub format: ThumbnailFormat,
    /// Changes when the output's bytes, the size or the format do.
    pub etag: String,
    /// The thumbnail's own dimensions.
    pub width: u32,
    pub height: u32,
    /// The output's dimensions.
    pub source_width: u32,
    pub source_height: u32,
}

/// A picture of an output as the front ends fetch it: the encoded bytes (a
/// thumbnail) and the output's own dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPicture {
    pub bytes: Bytes,
    pub source_width: u32,
    pub source_height: u32,
}

impl From<Thumbnail> for OutputPicture {
    fn from(t: Thumbnail) -> Self {
        Self {
            bytes: t.bytes,
            source_width: t.source_width,
            source_height: t.source_height,
        }
    }
}

/// Thumbnails made lately, up to [`CACHE_BYTES`]; the oldest go first.
#[derive(Clone, Default)]
pub struct ThumbnailCache {
    inner: Arc<Mutex<CacheInner>>,
}

type CacheKey = (String, String, u32, ThumbnailFormat);

#[derive(Default)]
struct CacheInner {
    entries: HashMap<CacheKey, Thumbnail>,
    order: VecDeque<CacheKey>,
    bytes: usize,
}

impl ThumbnailCache {
    fn get(&self, key: &CacheKey) -> Option<Thumbnail> {
        lock(&self.inner).entries.get(key).cloned()
    }

    fn put(&self, key: CacheKey, thumb: Thumbnail) {
        let mut c = lock(&self.inner);
        let len = thumb.bytes.len();
        if len > CACHE_BYTES {
            return;
        }
        if let Some(old) = c.entries.insert(key.clone(), thumb) {
            c.bytes -= old.bytes.len();
        } else {
            c.order.push_back(key);
        }
        c.bytes += len;
        while c.bytes > CACHE_BYTES {
            let Some(oldest) = c.order.pop_front() else { break };
            if let Some(gone) = c.entries.remove(&oldest) {
                c.bytes -= gone.bytes.len();
            }
        }
    }
}

/// Checks a requested thumbnail size.
pub fn check_size(size: u32) -> Result<u32, ServiceError> {
    if (MIN_THUMBNAIL..=MAX_THUMBNAIL).contains(&size) {
        Ok(size)
    } else {
        Err(ServiceError::invalid(
            "size",
            format!("must be {MIN_THUMBNAIL}..={MAX_THUMBNAIL} pixels (the longer side), not {size}"),
        ))
    }
}

impl Services {
    /// Output `n` (counted from 0, as in the job's `result.outputs`) of job `id`,
    /// scaled down to fit `size` x `size` pixels (never up).
    pub async fn thumbnail(
        &self,
        id: Ulid,
        n: usize,
        size: u32,
        format: ThumbnailFormat,
    ) -> Result<Thumbnail, ServiceError> {
        let size = check_size(size)?;
        let output = self.output(id, n).await?;
        let key = (output.bucket.clone(), output.key.clone(), size, format);
        if let Some(hit) = self.thumbnails.get(&key) {
            return Ok(hit);
        }
        let source = self
            .read_output(&output.bucket, &output.key, MAX_SOURCE_BYTES)
            .await
            .map_err(|e| match e {
                ServiceError::Invalid { .. } => ServiceError::invalid(
                    "n",
                    format!(
                        "output {n} of job {id} is larger than {MAX_SOURCE_BYTES} bytes; download its URL"
                    ),
                ),
                other => other,
            })?;
        let what = format!("output {n} of job {id} ({}, {})", output.key, output.content_type);
        let thumb = tokio::task::spawn_blocking(move || make_thumbnail(&source, size, format))
            .await
            .map_err(|e| ServiceError::Internal(format!("thumbnail task: {e}")))?
            .map_err(|e| match e {
                ThumbError::Decode(e) => {
                    ServiceError::invalid("n", format!("{what} is not an image darkroom can read: {e}"))
                }
                ThumbError::Encode(e) => ServiceError::Internal(format!("encode a thumbnail of {what}: {e}")),
            })?;
        self.thumbnails.put(key, thumb.clone());
        Ok(thumb)
    }

    /// The last preview frame of job `id`, while it runs on this node.
    pub async fn live_preview(&self, id: Ulid) -> Result<LivePreview, ServiceError> {
        if let Some(frame) = self.dispatcher.preview(id) {
            return Ok(frame);
        }
        let job = self.jobs.get(id).await?;
        Err(ServiceError::NotFound(format!(
            "no preview of job {id}: it is {}{}",
            job.status,
            if job.status == crate::queue::JobStatus::Running {
                " and has sent no preview frame yet (or runs on another node)"
            } else {
                ", and previews exist only while a job runs"
            }
        )))
    }

    /// Output `n` of job `id`, as its result lists it.
    async fn output(&self, id: Ulid, n: usize) -> Result<OutputObject, ServiceError> {
        let job = self.jobs.get(id).await?;
        let outputs = crate::dispatch::outputs_of(&job);
        if outputs.is_empty() {
            return Err(ServiceError::NotFound(format!(
                "job {id} is {} and has no outputs",
                job.status
            )));
        }
        let count = outputs.len();
        outputs.into_iter().nth(n).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "job {id} has {count} output{}; there is no output {n} (they count from 0)",
                if count == 1 { "" } else { "s" }
            ))
        })
    }
}

#[derive(Debug)]
enum ThumbError {
    Decode(image::ImageError),
    Encode(image::ImageError),
}

/// Decodes an image whatever its format (PNG, JPEG, WebP), refusing huge ones.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, image::ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_SOURCE_SIDE);
    reader.limits(limits);
    reader.decode()
}

fn make_thumbnail(source: &[u8], size: u32, format: ThumbnailFormat) -> Result<Thumbnail, ThumbError> {
    let image = decode(source).map_err(ThumbError::Decode)?;
    let (source_width, source_height) = (image.width(), image.height());
    let image = if source_width > size || source_height > size {
        image.thumbnail(size, size)
    } else {
        image
    };
    // PNG and WebP take 8-bit RGB(A); 16-bit and float images are converted.
    let image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    let mut out = Cursor::new(Vec::new());
    let encoding = match format {
        ThumbnailFormat::Png => ImageFormat::Png,
        ThumbnailFormat::Webp => ImageFormat::WebP,
    };
    image.write_to(&mut out, encoding).map_err(ThumbError::Encode)?;
    let digest = Sha256::digest(source);
    let etag = format!("\"{}-{size}-{format}\"", hex::encode(&digest[..12]));
    Ok(Thumbnail {
        bytes: out.into_inner().into(),
        format,
        etag,
        width: image.width(),
        height: image.height(),
        source_width,
        source_height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn thumbnails_keep_the_aspect_and_never_grow() {
        let t = make_thumbnail(&png(400, 200), 100, ThumbnailFormat::Png).unwrap();
        assert_eq!(
            (t.width, t.height, t.source_width, t.source_height),
            (100, 50, 400, 200)
        );
        let back = decode(&t.bytes).unwrap().to_rgb8();
        assert_eq!(back.get_pixel(10, 25).0, [255, 0, 0]);
        assert_eq!(back.get_pixel(90, 25).0, [0, 0, 255]);
        let small = make_thumbnail(&png(40, 20), 256, ThumbnailFormat::Webp).unwrap();
        assert_eq!((small.width, small.height), (40, 20));
        assert_eq!(image::guess_format(&small.bytes).unwrap(), ImageFormat::WebP);
        assert_ne!(
            small.etag,
            make_thumbnail(&png(40, 20), 256, ThumbnailFormat::Png)
                .unwrap()
                .etag
        );
        assert!(matches!(
            make_thumbnail(b"not a picture", 64, ThumbnailFormat::Png),
            Err(ThumbError::Decode(_))
        ));
    }

    #[test]
    fn sizes_outside_the_range_name_the_field() {
        assert_eq!(check_size(256).unwrap(), 256);
        for bad in [0, 15, 1025] {
            assert_eq!(check_size(bad).unwrap_err().field(), Some("size"));
        }
    }

    #[test]
    fn the_cache_drops_the_oldest_past_its_budget() {
        let cache = ThumbnailCache::default();
        let thumb = |len: usize| Thumbnail {
            bytes: Bytes::from(vec![0; len]),
            format: ThumbnailFormat::Png,
            etag: String::new(),
            width: 1,
            height: 1,
            source_width: 1,
            source_height: 1,
        };
        let key = |k: &str| ("b".to_owned(), k.to_owned(), 256, ThumbnailFormat::Png);
        cache.put(key("a"), thumb(CACHE_BYTES / 2));
        cache.put(key("b"), thumb(CACHE_BYTES / 2));
        assert!(cache.get(&key("a")).is_some());
        cache.put(key("c"), thumb(1));
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get(&key("b")).is_some() && cache.get(&key("c")).is_some());
    }
}
