//! Hot reload of the templates folder: an inotify watch (through `notify`) on
//! `comfyui.templates_dir`, debounced — an editor's save is several events (write,
//! rename, chmod) and `write_pair` writes two files — so the folder is re-read
//! once the events stop for [`DEBOUNCE`]. The re-read runs on a blocking thread.

use std::path::Path;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{LibraryError, TemplateLibrary};

/// Quiet time after the last event before the folder is re-read.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches `dir` and reloads `library` after changes, until `shutdown`.
pub(super) fn spawn(
    library: TemplateLibrary,
    dir: &Path,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<(), LibraryError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watch_error = |e: notify::Error| LibraryError::Watch {
        path: dir.to_owned(),
        message: e.to_string(),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) if relevant(&e) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "templates folder watch"),
    })
    .map_err(watch_error)?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    tracing::info!(dir = %dir.display(), "watching the templates folder");
    tasks.spawn(async move {
        // The watcher stops when dropped: it lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Wait for the burst to end.
            loop {
                tokio::select! {
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    got = rx.recv() => if got.is_none() { return },
                }
            }
            let lib = library.clone();
            match tokio::task::spawn_blocking(move || lib.reload_folder()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cannot reload the templates folder: {e}"),
                Err(e) => tracing::warn!("templates folder reload: {e}"),
            }
        }
    });
    Ok(())
}

/// A change to a template file (not a read, not a hidden temporary file).
fn relevant(e: &notify::Event) -> bool {
    let kind_counts = match e.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    kind_counts && e.paths.iter().any(|p| template_file(p))
}

fn template_file(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && p.extension().is_some_and(|x| x == "json" || x == "toml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(path.into())
    }

    #[test]
    fn only_changes_to_template_files_count() {
        let write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(relevant(&event(write, "/t/portrait.toml")));
        assert!(relevant(&event(renamed, "/t/portrait.json")));
        assert!(relevant(&event(
            EventKind::Remove(notify::event::RemoveKind::File),
            "/t/a.json"
        )));
        // Reads, hidden temporary files and other files do not.
        assert!(!relevant(&event(
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            "/t/a.json"
        )));
        assert!(!relevant(&event(
            EventKind::Create(CreateKind::File),
            "/t/.portrait.json.tmp"
        )));
        assert!(!relevant(&event(write, "/t/notes.txt")));
    }
}
