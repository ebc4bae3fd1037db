//! What happens when an inbox job ends: on success its images are written to
//! `{output_prefix}/{name}-{n}.{ext}` and the original moves to
//! `{prefix}processed/`; otherwise (failed, cancelled, or refused at submit) the
//! original moves to `{prefix}failed/` with `NAME.error.json` beside it. A
//! sidecar moves with its picture. The move comes last, so a crash in between
//! leaves the original where the next start's catch-up finds it and finishes it
//! again (the writes are idempotent); once moved, the job's end is not handled
//! twice. An original replaced by a new version stays: that version has its own
//! job.

use bytes::Bytes;
use serde_json::{Value, json};

use super::ingest::Ingest;
use super::{InboxRule, job_key, rule_for, stem};
use crate::dispatch::{InputImage, JobSpec, outputs_of};
use crate::object_store::{ObjectAttrs, StorageError};
use crate::queue::{Job, JobStatus};

/// Finishes inbox job `job`, unless its original was already moved or replaced.
pub(super) async fn finish(ingest: &Ingest, job: &Job) {
    let Some((rule, key, name)) = locate(ingest, job) else {
        return;
    };
    let current = match ingest.storage.head_object(&rule.bucket, &key).await {
        Ok(meta) => job.idempotency_key.as_deref() == Some(job_key(&rule.bucket, &key, &meta.etag).as_str()),
        Err(_) => false,
    };
    if !current {
        return;
    }
    if job.status == JobStatus::Succeeded {
        match write_outputs(ingest, rule, &name, job).await {
            Ok(n) => {
                tracing::info!(inbox = %rule.name(), %key, job = %job.id, outputs = n, "inbox picture processed");
                move_original(ingest, rule, &name, &rule.processed()).await;
            }
            Err(e) => {
                let error =
                    json!({"job_id": job.id.to_string(), "error": format!("cannot write the results: {e}")});
                give_up(ingest, rule, &name, &error).await;
            }
        }
    } else {
        let error = json!({
            "job_id": job.id.to_string(),
            "status": job.status,
            "source": format!("s3://{}/{key}", rule.bucket),
            "errors": job.errors,
        });
        give_up(ingest, rule, &name, &error).await;
    }
}

/// Moves picture `name` to `failed/` with `error` as `NAME.error.json` beside it.
pub(super) async fn give_up(ingest: &Ingest, rule: &InboxRule, name: &str, error: &Value) {
    tracing::warn!(inbox = %rule.name(), %name, %error, "inbox picture failed");
    let key = format!("{}{name}.error.json", rule.failed());
    let body = Bytes::from(serde_json::to_vec_pretty(error).unwrap_or_default());
    if let Err(e) = put(ingest, &rule.bucket, &key, body, "application/json").await {
        tracing::warn!(inbox = %rule.name(), %key, error = %e, "cannot write the error file");
    }
    move_original(ingest, rule, name, &rule.failed()).await;
}

/// The rule, key and name of the picture job `job` ran on.
fn locate<'i>(ingest: &'i Ingest, job: &Job) -> Option<(&'i InboxRule, String, String)> {
    let spec: JobSpec = serde_json::from_value(job.payload.clone()).ok()?;
    spec.inputs.iter().find_map(|input: &InputImage| {
        let (bucket, key) = input.source.strip_prefix("s3://")?.split_once('/')?;
        let (rule, name) = rule_for(&ingest.rules, bucket, key)?;
        (rule.param == input.param).then(|| (rule, key.to_owned(), name))
    })
}

/// Copies the job's images to the output prefix; returns how many.
async fn write_outputs(ingest: &Ingest, rule: &InboxRule, name: &str, job: &Job) -> Result<usize, String> {
    let outputs = outputs_of(job);
    for (i, o) in outputs.iter().enumerate() {
        let bytes = ingest
            .dispatcher
            .read_output(&o.bucket, &o.key)
            .await
            .map_err(|e| format!("{}/{}: {e}", o.bucket, o.key))?;
        let ext = o.key.rsplit_once('.').map_or("png", |(_, x)| x);
        let key = format!("{}{}-{}.{ext}", rule.outputs(), stem(name), i + 1);
        put(ingest, &rule.bucket, &key, bytes, &o.content_type)
            .await
            .map_err(|e| format!("{}/{key}: {e}", rule.bucket))?;
    }
    Ok(outputs.len())
}

/// Moves picture `name` (and its sidecar) from the prefix into `folder`.
async fn move_original(ingest: &Ingest, rule: &InboxRule, name: &str, folder: &str) {
    let sidecar = format!("{}.json", stem(name));
    for (file, required) in [(name, true), (sidecar.as_str(), false)] {
        let from = format!("{}{file}", rule.prefix());
        let to = format!("{folder}{file}");
        let storage = &ingest.storage;
        match storage
            .copy_object((&rule.bucket, &from), (&rule.bucket, &to), None)
            .await
        {
            Ok(_) => {
                if let Err(e) = storage.delete_object(&rule.bucket, &from).await {
                    tracing::warn!(inbox = %rule.name(), key = %from, error = %e, "cannot remove the original");
                }
            }
            Err(StorageError::NoSuchKey { .. }) if !required => {}
            Err(e) => {
                tracing::warn!(inbox = %rule.name(), key = %from, error = %e, "cannot move the original");
            }
        }
    }
}

async fn put(
    ingest: &Ingest,
    bucket: &str,
    key: &str,
    bytes: Bytes,
    content_type: &str,
) -> Result<(), StorageError> {
    let attrs = ObjectAttrs {
        content_type: Some(content_type.to_owned()),
        ..ObjectAttrs::default()
    };
    let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
    ingest.storage.put(bucket, key, body, attrs).await.map(drop)
}
