//! The user templates: where the templates jobs name come from and how they stay
//! current. [`TemplateLibrary`] is a cheap `Clone` handle whose
//! [`current`](TemplateLibrary::current) is an immutable snapshot
//! ([`Templates`]) — a render holds its snapshot, so a reload never changes a
//! template under a job being admitted. The set is, by precedence:
//!
//! 1. the built-ins (`noop`, `txt2img`), which nothing replaces;
//! 2. the templates folder (`comfyui.templates_dir`, [`folder`]), watched and
//!    reloaded on change ([`watch`]); a broken file is logged and reported by name
//!    and line, and the previous good version of that template stays in use;
//! 3. with the queue on Redis, the shared store ([`shared`]): API saves go there,
//!    a node's folder templates are published there (on start when Redis lacks
//!    them, and on every change), and every node re-reads it when its revision
//!    counter moves.
//!
//! It also owns what turns a workflow into a template: the manifest proposal of
//! `templates import` ([`import`]) and the check against a backend's
//! `/object_info` ([`validate`], [`object_info`]).

pub mod folder;
pub mod import;
pub mod object_info;
mod shared;
pub mod validate;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use import::{Proposal, manifest_text, propose, read_workflow};
pub use object_info::{InputKind, InputSpec, ObjectInfo};
pub use shared::SharedTemplates;
pub use validate::{Finding, FindingKind};

use crate::comfy::{SourceError, Template, TemplateError, TemplateSource, Templates};
use crate::redis_store::RedisStore;
use crate::sync::lock;

/// How often a node asks Redis whether the shared templates changed.
const SHARED_REFRESH: Duration = Duration::from_secs(1);

/// Why a template could not be saved, removed or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("template name {0:?}: use 1 to 64 of a-z, 0-9, `_` and `-`")]
    BadName(String),
    #[error("`{0}` is a built-in template: it cannot be replaced or deleted (use another name)")]
    Builtin(String),
    #[error("no template `{0}`")]
    NotFound(String),
    #[error(
        "template `{0}` already exists: PUT /api/v1/templates/{0} (or `templates import --replace`) replaces it"
    )]
    Exists(String),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("templates folder {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("shared templates on Redis at {endpoint}: {source}")]
    Redis {
        endpoint: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot watch the templates folder {}: {message}", path.display())]
    Watch { path: PathBuf, message: String },
    #[error("no templates folder and no shared store to keep template `{0}` in")]
    NowhereToSave(String),
}

/// The live set of templates; cheap to clone.
#[derive(Clone)]
pub struct TemplateLibrary {
    inner: Arc<Inner>,
}

struct Inner {
    builtins: Vec<Template>,
    dir: Option<PathBuf>,
    shared: Option<SharedTemplates>,
    state: Mutex<State>,
    /// Held through a whole folder reload, and through a whole shared refresh, so
    /// a slow read never overwrites a newer one.
    folder_reload: Mutex<()>,
    shared_refresh: Mutex<()>,
    current: RwLock<Arc<Templates>>,
    /// Bumped on every rebuild of `current`: what waiters (and tests) watch.
    generation: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The last good version of each folder template.
    folder: BTreeMap<String, Template>,
    shared: BTreeMap<String, Template>,
    shared_rev: Option<u64>,
    folder_problems: BTreeMap<String, SourceError>,
    shared_problems: BTreeMap<String, SourceError>,
    /// The last failure to read the shared store, logged once.
    refresh_error: Option<String>,
}

impl TemplateLibrary {
    /// The built-ins alone (front ends and tests without a daemon).
    pub fn builtin() -> Result<Self, TemplateError> {
        let builtins: Vec<Template> = Templates::embedded()?.iter().cloned().collect();
        Ok(Self::with(builtins, None, None))
    }

    fn with(builtins: Vec<Template>, dir: Option<PathBuf>, shared: Option<SharedTemplates>) -> Self {
        let current = Arc::new(Templates::from_templates(builtins.clone()));
        Self {
            inner: Arc::new(Inner {
                builtins,
                dir,
                shared,
                state: Mutex::new(State::default()),
                folder_reload: Mutex::new(()),
                shared_refresh: Mutex::new(()),
                current: RwLock::new(current),
                generation: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// The built-ins, the folder `dir` (created if missing) and, with `shared`,
    /// the templates on Redis; the folder's templates Redis lacks are published.
    /// Blocking: run it off the async workers.
    pub fn open(dir: Option<PathBuf>, shared: Option<RedisStore>) -> Result<Self, LibraryError> {
        let builtins: Vec<Template> = Templates::embedded()
            .map_err(|e| {
                LibraryError::Source(SourceError {
                    file: "built-in templates".into(),
                    line: None,
                    column: None,
                    message: e.to_string(),
                })
            })?
            .iter()
            .cloned()
            .collect();
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|source| LibraryError::Io {
                path: d.clone(),
                source,
            })?;
        }
        let lib = Self::with(builtins, dir, shared.map(SharedTemplates::new));
        lib.load_folder(true)?;
        lib.refresh_shared(true)?;
        Ok(lib)
    }

    /// The templates as they are now; a snapshot that later reloads do not change.
    pub fn current(&self) -> Arc<Templates> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A receiver that sees a new number after every reload.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// The templates folder, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// Whether saves go to the shared store (Redis).
    pub fn is_shared(&self) -> bool {
        self.inner.shared.is_some()
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.inner.builtins.iter().any(|t| t.name == name)
    }

    /// What is wrong with the files (or shared copies) of `name`, if anything.
    pub fn problems_of(&self, name: &str) -> Vec<SourceError> {
        let st = lock(&self.inner.state);
        st.folder_problems
            .get(name)
            .into_iter()
            .chain(st.shared_problems.get(name))
            .cloned()
            .collect()
    }

    /// Every problem, by template name.
    pub fn problems(&self) -> BTreeMap<String, Vec<SourceError>> {
        let st = lock(&self.inner.state);
        let mut out: BTreeMap<String, Vec<SourceError>> = BTreeMap::new();
        for (name, e) in st.folder_problems.iter().chain(&st.shared_problems) {
            out.entry(name.clone()).or_default().push(e.clone());
        }
        out
    }

    /// Re-reads the folder (after a change). Blocking.
    pub fn reload_folder(&self) -> Result<(), LibraryError> {
        self.load_folder(false)
    }

    fn load_folder(&self, initial: bool) -> Result<(), LibraryError> {
        let Some(dir) = &self.inner.dir else {
            return Ok(());
        };
        let _one_at_a_time = lock(&self.inner.folder_reload);
        let scanned = folder::scan(dir).map_err(|source| LibraryError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut st = lock(&self.inner.state);
        let (mut good, mut problems) = (BTreeMap::new(), BTreeMap::new());
        let mut changed = Vec::new();
        for (name, entry) in scanned {
            let parsed = entry.and_then(|(json, toml)| {
                if self.is_builtin(&name) {
                    return Err(SourceError {
                        file: format!("{name}.json"),
                        line: None,
                        column: None,
                        message: format!("`{name}` is a built-in template's name: rename both files"),
                    });
                }
                Template::parse(&name, &json, &toml, TemplateSource::Folder)
            });
            match parsed {
                Ok(t) => {
                    if st.folder.get(&name).is_none_or(|old| old.version != t.version) {
                        tracing::info!(template = %name, version = %t.version, "template loaded from the folder");
                        changed.push(t.clone());
                    }
                    good.insert(name, t);
                }
                Err(e) => {
                    let old = st.folder.get(&name);
                    if st.folder_problems.get(&name) != Some(&e) {
                        match old {
                            Some(o) => {
                                tracing::warn!(template = %name, "{e}; version {} stays in use", o.version);
                            }
                            None => tracing::warn!(template = %name, "{e}; the template is not loaded"),
                        }
                    }
                    if let Some(o) = old {
                        good.insert(name.clone(), o.clone());
                    }
                    problems.insert(name, e);
                }
            }
        }
        let removed: Vec<Template> = st
            .folder
            .values()
            .filter(|t| !good.contains_key(&t.name))
            .cloned()
            .collect();
        for t in &removed {
            tracing::info!(template = %t.name, "template files removed from the folder");
        }
        st.folder = good;
        st.folder_problems = problems;
        let shared_versions: BTreeMap<String, String> = st
            .shared
            .iter()
            .map(|(n, t)| (n.clone(), t.version.clone()))
            .collect();
        drop(st);
        if let Some(shared) = &self.inner.shared {
            let moved = !changed.is_empty() || !removed.is_empty();
            for t in &changed {
                Self::publish(shared, t, initial)?;
            }
            // A file removed here takes its shared copy along when that copy is this one.
            for t in removed {
                if shared_versions.get(&t.name) == Some(&t.version) {
                    shared.delete(&t.name).map_err(|e| redis_error(shared, e))?;
                }
            }
            if !initial && moved {
                self.refresh_shared(true)?;
            }
        }
        self.rebuild();
        Ok(())
    }

    fn publish(shared: &SharedTemplates, t: &Template, only_new: bool) -> Result<(), LibraryError> {
        let stored = shared::Stored {
            workflow: t.workflow_text.clone(),
            manifest: t.manifest_text.clone(),
        };
        if shared
            .put(&t.name, &stored, only_new)
            .map_err(|e| redis_error(shared, e))?
        {
            tracing::info!(template = %t.name, version = %t.version, "template published to the shared store");
        }
        Ok(())
    }

    /// Re-reads the shared store when its revision moved (always with `force`);
    /// true when it did. Blocking.
    pub fn refresh_shared(&self, force: bool) -> Result<bool, LibraryError> {
        let Some(shared) = &self.inner.shared else {
            return Ok(false);
        };
        let _one_at_a_time = lock(&self.inner.shared_refresh);
        if !force {
            let rev = shared.revision().map_err(|e| redis_error(shared, e))?;
            if lock(&self.inner.state).shared_rev == Some(rev) {
                return Ok(false);
            }
        }
        let (rev, entries) = shared.all().map_err(|e| redis_error(shared, e))?;
        let (mut good, mut problems) = (BTreeMap::new(), BTreeMap::new());
        for (name, entry) in entries {
            let parsed = entry
                .map_err(|message| SourceError {
                    file: format!("{name} (shared)"),
                    line: None,
                    column: None,
                    message,
                })
                .and_then(|s| Template::parse(&name, &s.workflow, &s.manifest, TemplateSource::Shared));
            match parsed {
                Ok(t) if !self.is_builtin(&name) => {
                    good.insert(name, t);
                }
                Ok(_) => {}
                Err(e) => {
                    problems.insert(name, e);
                }
            }
        }
        let mut st = lock(&self.inner.state);
        for (name, t) in &good {
            if st.shared.get(name).is_none_or(|o| o.version != t.version) {
                tracing::info!(template = %name, version = %t.version, "shared template loaded");
            }
        }
        for (name, e) in &problems {
            if st.shared_problems.get(name) != Some(e) {
                tracing::warn!(template = %name, "{e}");
            }
        }
        st.shared = good;
        st.shared_rev = Some(rev);
        st.shared_problems = problems;
        st.refresh_error = None;
        drop(st);
        self.rebuild();
        Ok(true)
    }

    /// Makes `current` the built-ins, then the folder, then the shared store.
    fn rebuild(&self) {
        let st = lock(&self.inner.state);
        let all = self
            .inner
            .builtins
            .iter()
            .chain(st.folder.values())
            .chain(st.shared.values())
            .cloned();
        let next = Arc::new(Templates::from_templates(all));
        drop(st);
        *self.inner.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Saves template `name` from its two texts — to the shared store when there
    /// is one, else the folder — and returns it as now served. With `only_new`,
    /// an existing template of that name is not replaced. Blocking.
    pub fn save(
        &self,
        name: &str,
        workflow_text: &str,
        manifest_text: &str,
        only_new: bool,
    ) -> Result<Template, LibraryError> {
        if !folder::valid_name(name) {
            return Err(LibraryError::BadName(name.to_owned()));
        }
        if self.is_builtin(name) {
            return Err(LibraryError::Builtin(name.to_owned()));
        }
        let source = if self.is_shared() {
            TemplateSource::Shared
        } else {
            TemplateSource::Folder
        };
        let t = Template::parse(name, workflow_text, manifest_text, source)?;
        if only_new && self.current().get(name).is_ok() {
            return Err(LibraryError::Exists(name.to_owned()));
        }
        if let Some(shared) = &self.inner.shared {
            let stored = shared::Stored {
                workflow: t.workflow_text.clone(),
                manifest: t.manifest_text.clone(),
            };
            if !shared
                .put(name, &stored, only_new)
                .map_err(|e| redis_error(shared, e))?
            {
                return Err(LibraryError::Exists(name.to_owned()));
            }
            self.refresh_shared(true)?;
        } else if let Some(dir) = &self.inner.dir {
            folder::write_pair(dir, name, workflow_text, manifest_text).map_err(|source| {
                LibraryError::Io {
                    path: dir.clone(),
                    source,
                }
            })?;
            self.load_folder(false)?;
        } else {
            return Err(LibraryError::NowhereToSave(name.to_owned()));
        }
        tracing::info!(template = %name, version = %t.version, "template saved");
        Ok(self.current().get(name).cloned().unwrap_or(t))
    }

    /// Removes template `name` from the shared store and this node's folder. Blocking.
    pub fn delete(&self, name: &str) -> Result<(), LibraryError> {
        if self.is_builtin(name) {
            return Err(LibraryError::Builtin(name.to_owned()));
        }
        if !folder::valid_name(name) {
            return Err(LibraryError::NotFound(name.to_owned()));
        }
        let mut found = false;
        if let Some(shared) = &self.inner.shared {
            found |= shared.delete(name).map_err(|e| redis_error(shared, e))?;
        }
        if let Some(dir) = &self.inner.dir {
            found |= folder::remove_pair(dir, name).map_err(|source| LibraryError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        self.load_folder(false)?;
        self.refresh_shared(true)?;
        if !found {
            return Err(LibraryError::NotFound(name.to_owned()));
        }
        tracing::info!(template = %name, "template deleted");
        Ok(())
    }

    /// Starts watching the folder and, with a shared store, re-reading it when
    /// its revision moves; both stop with `shutdown`. A folder that cannot be
    /// watched (no inotify instance left, say) is logged, and its templates are
    /// served as loaded until a restart or an API save re-reads it.
    pub fn start(&self, shutdown: &CancellationToken, tasks: &mut JoinSet<()>) {
        if let Some(dir) = &self.inner.dir
            && let Err(e) = watch::spawn(self.clone(), dir, shutdown.clone(), tasks)
        {
            tracing::warn!("{e}: edits to the templates folder are picked up at the next start only");
        }
        if self.inner.shared.is_some() {
            let lib = self.clone();
            tasks.spawn(crate::clock::run_every(
                SHARED_REFRESH,
                shutdown.clone(),
                move || {
                    let lib = lib.clone();
                    async move {
                        let l = lib.clone();
                        let result = tokio::task::spawn_blocking(move || l.refresh_shared(false)).await;
                        let error = match result {
                            Ok(Ok(_)) => return,
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => e.to_string(),
                        };
                        let mut st = lock(&lib.inner.state);
                        if st.refresh_error.as_deref() != Some(error.as_str()) {
                            tracing::warn!("cannot refresh the shared templates: {error}");
                            st.refresh_error = Some(error);
                        }
                    }
                },
            ));
        }
    }
}

fn redis_error(shared: &SharedTemplates, source: redis::RedisError) -> LibraryError {
    LibraryError::Redis {
        endpoint: shared.endpoint().to_owned(),
        source,
    }
}

#[cfg(test)]
#[path = "library_tests.rs"]
mod tests;
