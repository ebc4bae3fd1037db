//! darkroom's MCP resources: a job as JSON (`darkroom://jobs/{id}`) and a stored
//! output's bytes (`darkroom://outputs/{bucket}/{key}`, the key's segments
//! percent-encoded). `resources/list` offers the first output of the newest
//! succeeded jobs; both URI shapes are listed as resource templates, so any job
//! or output can be read by id or key.

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rmcp::ErrorData;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource, ResourceContents,
    ResourceTemplate,
};

use super::McpServer;
use super::error::resource_error;
use crate::dispatch::{JobResult, content_type_of};
use crate::queue::JobStatus;
use crate::service::JobListing;

const JOBS: &str = "darkroom://jobs/";
const OUTPUTS: &str = "darkroom://outputs/";
/// How many recent outputs `resources/list` offers.
pub const RECENT_OUTPUTS: usize = 20;
/// How many pages of 500 succeeded jobs `resources/list` looks through.
const SCAN_PAGES: usize = 4;
/// The largest output `resources/read` returns.
pub const MAX_READ_BYTES: u64 = 32 << 20;

/// What stays as it is in a URI path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `darkroom://outputs/{bucket}/{key}`.
pub fn output_uri(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!(
        "{OUTPUTS}{}/{}",
        utf8_percent_encode(bucket, SEGMENT),
        key.join("/")
    )
}

/// What a resource URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Job(String),
    Output { bucket: String, key: String },
}

/// Reads a `darkroom://` URI.
pub fn parse(uri: &str) -> Result<Target, ErrorData> {
    let bad = || {
        ErrorData::invalid_params(
            format!(
                "{uri:?} is not a darkroom resource: darkroom://jobs/{{id}} or darkroom://outputs/{{bucket}}/{{key}}"
            ),
            None,
        )
    };
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| bad())
    };
    if let Some(id) = uri
        .strip_prefix(JOBS)
        .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        return Ok(Target::Job(decode(id)?));
    }
    let (bucket, key) = uri
        .strip_prefix(OUTPUTS)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(bad)?;
    let key: Result<Vec<String>, ErrorData> = key.split('/').map(decode).collect();
    Ok(Target::Output {
        bucket: decode(bucket)?,
        key: key?.join("/"),
    })
}

impl McpServer {
    /// The first output of each of the newest succeeded jobs. Finished jobs
    /// list in purge order (oldest first), so this pages through up to
    /// [`SCAN_PAGES`] pages and keeps the newest.
    pub(super) async fn recent_outputs(&self) -> Result<ListResourcesResult, ErrorData> {
        let mut jobs = Vec::new();
        let mut cursor = None;
        for _ in 0..SCAN_PAGES {
            let listing = JobListing {
                status: Some(JobStatus::Succeeded),
                limit: 500,
                cursor,
            };
            let page = self
                .link
                .jobs(listing)
                .await
                .map_err(|e| resource_error("resources/list", &e))?;
            jobs.extend(page.jobs);
            jobs.sort_by_key(|j| std::cmp::Reverse(j.finished_ms));
            jobs.truncate(RECENT_OUTPUTS);
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let resources = jobs
            .iter()
            .filter_map(|job| {
                let result: JobResult = serde_json::from_value(job.result.clone()?).ok()?;
                let o = result.outputs.into_iter().next()?;
                let name = o.key.rsplit('/').next().unwrap_or(&o.key).to_owned();
                Some(
                    Resource::new(output_uri(&o.bucket, &o.key), name)
                        .with_description(format!("The first output of job {}", job.id))
                        .with_mime_type(o.content_type)
                        .with_size(o.size),
                )
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    pub(super) fn resource_templates() -> ListResourceTemplatesResult {
        ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("darkroom://jobs/{id}", "job")
                .with_description("A darkroom job as JSON: status, progress, errors and its outputs' URLs")
                .with_mime_type("application/json"),
            ResourceTemplate::new("darkroom://outputs/{bucket}/{key}", "output")
                .with_description("A stored output's bytes (an image, a video, metadata.json)"),
        ])
    }

    pub(super) async fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let contents = match parse(uri)? {
            Target::Job(id) => {
                let job = self.link.job(&id).await.map_err(|e| resource_error(uri, &e))?;
                let text = serde_json::to_string_pretty(&job)
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                ResourceContents::text(text, uri).with_mime_type("application/json")
            }
            Target::Output { bucket, key } => {
                let bytes = self
                    .link
                    .read_output(&bucket, &key, MAX_READ_BYTES)
                    .await
                    .map_err(|e| resource_error(uri, &e))?;
                ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(bytes), uri)
                    .with_mime_type(content_type_of(&key))
            }
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        let uri = output_uri("comfyui-outputs", "jobs/01J/0-a b+c%.png");
        assert_eq!(
            uri,
            "darkroom://outputs/comfyui-outputs/jobs/01J/0-a%20b%2Bc%25.png"
        );
        assert_eq!(
            parse(&uri).unwrap(),
            Target::Output {
                bucket: "comfyui-outputs".into(),
                key: "jobs/01J/0-a b+c%.png".into()
            }
        );
        assert_eq!(parse("darkroom://jobs/01J").unwrap(), Target::Job("01J".into()));
        for bad in [
            "darkroom://jobs/",
            "darkroom://outputs/b",
            "darkroom://outputs//k",
            "file:///etc/passwd",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
