//! A rule's local directory (`dir`): watched with inotify (through `notify`), each
//! file written and closed there (or moved in) is put under the rule's prefix on
//! darkroom's store — from there it runs like any upload — and then removed from
//! the directory. Files already there at start are taken the same way. Hidden
//! files (`.name`, editors' and downloaders' temporaries) are left alone.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::InboxRule;
use crate::object_store::{ObjectAttrs, ObjectStore};

/// Watches `dir` for `rule` until `shutdown`.
pub(super) fn spawn(
    rule: InboxRule,
    dir: &Path,
    storage: ObjectStore,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("inbox dir {}: {e}", dir.display()))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) if finished_writing(e.kind) => {
            for p in e.paths {
                let _ = tx.send(p);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "inbox directory watch"),
    })
    .map_err(|e| anyhow::anyhow!("inbox dir {}: {e}", dir.display()))?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("inbox dir {}: {e}", dir.display()))?;
    let dir = dir.to_owned();
    tasks.spawn(async move {
        let _watcher = watcher; // watches as long as this task lives
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                take(&rule, &storage, &entry.path()).await;
            }
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = rx.recv() => match got {
                    Some(path) => take(&rule, &storage, &path).await,
                    None => return,
                },
            }
        }
    });
    Ok(())
}

/// A file is complete: closed after writing, or moved in.
fn finished_writing(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To))
    )
}

/// Puts file `path` under the rule's prefix, then removes it.
async fn take(rule: &InboxRule, storage: &ObjectStore, path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    if name.starts_with('.') || !path.is_file() {
        return;
    }
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => return tracing::warn!(path = %path.display(), error = %e, "inbox cannot read a file"),
    };
    let key = format!("{}{name}", rule.prefix());
    let attrs = ObjectAttrs {
        content_type: crate::service::inputs::sniff(&bytes).map(str::to_owned),
        ..ObjectAttrs::default()
    };
    let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from(bytes))]);
    match storage.put(&rule.bucket, &key, body, attrs).await {
        Ok(_) => {
            if let Err(e) = tokio::fs::remove_file(path).await {
                tracing::warn!(path = %path.display(), error = %e, "inbox cannot remove a taken file");
            }
        }
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "inbox cannot store a file"),
    }
}
