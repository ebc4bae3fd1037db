//! The dashboard's whole state, and how data from the [`Link`](super::link::Link)
//! changes it. Pure: no I/O, no clock of its own (the loop stamps `now_ms` on each
//! tick), so every update is a unit test away. Key handling lives in
//! [`super::keys`]; drawing reads this and never changes it.

use std::collections::{BTreeMap, VecDeque};

use std::sync::Arc;

use serde_json::Value;
use ulid::Ulid;

use super::form::Form;
use super::picture::{Graphics, Loaded, Pictures};
use crate::alerts::{Alert, AlertChange, AlertState};
use crate::clock::Millis;
use crate::dispatch::JobRequest;
use crate::events::{Event, EventKind};
use crate::gpu::GpuReport;
use crate::queue::{Job, JobEvent, JobStatus};
use crate::service::{ObjectPage, PresignedUrl, TemplateInfo};
use crate::status::StatusSnapshot;
use crate::telemetry::LogLine;

/// Jobs kept in the table at most (the newest; finished ones go first).
pub const MAX_JOBS: usize = 500;
/// Log lines kept.
pub const MAX_LOGS: usize = 1000;
/// GPU samples kept per device for the sparklines.
pub const MAX_HISTORY: usize = 240;

/// The panels, in the order of their number keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Overview,
    Jobs,
    Gpus,
    Storage,
    Alerts,
    Log,
    Gallery,
    Prompts,
    Users,
}

impl Panel {
    pub const ALL: [Panel; 9] = [
        Panel::Overview,
        Panel::Jobs,
        Panel::Gpus,
        Panel::Storage,
        Panel::Alerts,
        Panel::Log,
        Panel::Gallery,
        Panel::Prompts,
        Panel::Users,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Panel::Overview => "Overview",
            Panel::Jobs => "Jobs",
            Panel::Gpus => "GPUs",
            Panel::Storage => "Storage",
            Panel::Alerts => "Alerts",
            Panel::Log => "Log",
            Panel::Gallery => "Gallery",
            Panel::Prompts => "Prompts",
            Panel::Users => "Users",
        }
    }

    pub fn index(self) -> usize {
        Panel::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Whether the daemon is reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    Connecting,
    Connected,
    /// Lost; the feed is retrying.
    Disconnected {
        reason: String,
    },
}

/// What the feed delivers.
#[derive(Debug, Clone)]
pub enum Data {
    /// A fresh start: everything refetched (on connect and after a resync).
    Full {
        snapshot: Box<StatusSnapshot>,
        jobs: Vec<Job>,
        templates: Vec<TemplateInfo>,
    },
    /// The periodic refresh of counts, rates, backends and buckets.
    Snapshot(Box<StatusSnapshot>),
    /// The templates, re-read now and then (user templates come and go).
    Templates(Vec<TemplateInfo>),
    Event(Arc<Event>),
    /// A job read in full (after it changed status).
    Job(Box<Job>),
    /// New log lines; `reset` replaces what is shown (a fresh connection).
    Logs {
        lines: Vec<LogLine>,
        reset: bool,
    },
    Disconnected(String),
}

/// What an action ended with.
#[derive(Debug, Clone)]
pub enum Outcome {
    Submitted(Result<Job, String>),
    Cancelled(Result<Job, String>),
    Retried(Result<Job, String>),
    Objects(Result<ObjectPage, String>),
    Presigned {
        key: String,
        result: Result<PresignedUrl, String>,
    },
    /// A picture for the screen (see [`super::picture`]).
    Picture(Box<Loaded>),
    /// The prompt library's listing.
    Prompts(Result<Vec<crate::service::prompts::PromptSummary>, String>),
    /// One saved prompt's details.
    Prompt {
        name: String,
        result: Result<Box<crate::service::prompts::PromptDetails>, String>,
    },
    /// The usage report (see [`super::users`]).
    Usage(Result<Box<crate::service::quotas::UsageReport>, super::users::NoReport>),
}

/// What the dashboard asks the outside world to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Cancel(String),
    Retry(String),
    Submit(Box<JobRequest>),
    ListObjects {
        bucket: String,
        prefix: String,
    },
    Presign {
        bucket: String,
        key: String,
    },
    /// Read the prompt library's listing.
    LoadPrompts,
    /// Read one saved prompt's versions, stats and runs.
    LoadPrompt(String),
    /// Read the usage report (each user's standing and days).
    LoadUsage,
    /// Leave; in local mode `stop_daemon` drains and stops the daemon first.
    Quit,
}

/// A dialog over the panels.
#[derive(Debug, Clone)]
pub enum Modal {
    Help,
    ConfirmCancel(Ulid),
    /// Local mode: quitting stops the daemon.
    ConfirmQuit,
    Form(Form),
}

/// A one-line message at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub until_ms: Millis,
}

/// The jobs panel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobsView {
    pub selected: usize,
    pub filter: String,
    /// `/` was pressed: keys edit the filter.
    pub filtering: bool,
    /// The job whose detail view is open.
    pub detail: Option<Ulid>,
    pub detail_scroll: u16,
    /// Which of its image outputs the details show (Tab / ←→).
    pub output: usize,
}

/// The gallery panel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GalleryView {
    /// The tile under the cursor (its index in [`super::gallery::tiles`]).
    pub selected: usize,
    pub filter: String,
    /// `/` was pressed in the gallery: keys edit its filter.
    pub filtering: bool,
    /// The last presigned URL, shown in full.
    pub url: Option<(String, String)>,
}

/// The storage panel: buckets, or one bucket's folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageView {
    pub selected: usize,
    pub browse: Option<Browse>,
}

/// A folder being browsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Browse {
    pub bucket: String,
    pub prefix: String,
    pub page: Option<ObjectPage>,
    pub error: Option<String>,
    pub selected: usize,
    /// The last presigned URL, shown in full so it can be selected by hand too.
    pub url: Option<(String, String)>,
}

/// Everything drawn.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)]
pub struct State {
    /// `local` or the daemon's URL.
    pub target: String,
    pub local: bool,
    pub readonly: bool,
    pub conn: Conn,
    pub now_ms: Millis,
    pub snapshot: Option<StatusSnapshot>,
    pub jobs: BTreeMap<Ulid, Job>,
    pub alerts: Vec<Alert>,
    pub gpu_history: BTreeMap<u32, VecDeque<(f64, f64)>>,
    pub logs: VecDeque<LogLine>,
    pub templates: Vec<TemplateInfo>,
    pub panel: Panel,
    pub jobs_view: JobsView,
    pub storage_view: StorageView,
    pub gallery: GalleryView,
    pub prompts: super::prompts::PromptsView,
    pub users: super::users::UsersView,
    pub alerts_selected: usize,
    /// Lines up from the newest (0 follows the tail).
    pub log_scroll: usize,
    pub modal: Option<Modal>,
    pub frozen: bool,
    /// Data that arrived while frozen, applied on thaw.
    pub held: Vec<Data>,
    pub flash: Option<Flash>,
    /// Set when a URL should go to the terminal's clipboard (OSC 52).
    pub clipboard: Option<String>,
    pub quit: bool,
    /// How pictures are drawn; `None`: no pictures (`--image-protocol none`).
    pub graphics: Option<Graphics>,
    /// Pictures loaded for the screen.
    pub pictures: Pictures,
    /// The terminal's size in cells (the gallery's paging needs it).
    pub screen: (u16, u16),
}

impl State {
    pub fn new(target: &str, local: bool, readonly: bool) -> Self {
        Self {
            target: target.to_owned(),
            local,
            readonly,
            conn: Conn::Connecting,
            now_ms: 0,
            snapshot: None,
            jobs: BTreeMap::new(),
            alerts: Vec::new(),
            gpu_history: BTreeMap::new(),
            logs: VecDeque::new(),
            templates: Vec::new(),
            panel: Panel::Overview,
            jobs_view: JobsView::default(),
            storage_view: StorageView::default(),
            gallery: GalleryView::default(),
            prompts: super::prompts::PromptsView::default(),
            users: super::users::UsersView::default(),
            alerts_selected: 0,
            log_scroll: 0,
            modal: None,
            frozen: false,
            held: Vec::new(),
            flash: None,
            clipboard: None,
            quit: false,
            graphics: None,
            pictures: Pictures::default(),
            screen: (80, 24),
        }
    }

    /// Applies what the feed sent (held back while frozen).
    pub fn apply(&mut self, data: Data) {
        if self.frozen {
            self.held.push(data);
            return;
        }
        match data {
            Data::Full {
                snapshot,
                jobs,
                templates,
            } => {
                self.conn = Conn::Connected;
                self.jobs = jobs.into_iter().map(|j| (j.id, j)).collect();
                self.templates = templates;
                self.set_snapshot(*snapshot);
            }
            Data::Snapshot(s) => self.set_snapshot(*s),
            Data::Templates(t) => self.templates = t,
            Data::Event(e) => self.apply_event(&e),
            Data::Job(job) => self.put_job(*job),
            Data::Logs { lines, reset } => {
                if reset {
                    self.logs.clear();
                }
                for l in lines {
                    if self.logs.len() == MAX_LOGS {
                        self.logs.pop_front();
                    }
                    self.logs.push_back(l);
                }
            }
            Data::Disconnected(reason) => self.conn = Conn::Disconnected { reason },
        }
    }

    /// Unfreezes and catches up.
    pub fn thaw(&mut self) {
        self.frozen = false;
        for d in std::mem::take(&mut self.held) {
            self.apply(d);
        }
    }

    fn set_snapshot(&mut self, s: StatusSnapshot) {
        self.alerts.clone_from(&s.alerts);
        self.push_gpu(&s.gpus);
        self.snapshot = Some(s);
    }

    fn apply_event(&mut self, e: &Event) {
        match &e.kind {
            EventKind::Job(ev) => self.job_event(ev),
            EventKind::Alert(change) => self.alert_change(change),
            EventKind::Gpu(report) => {
                self.push_gpu(report);
                if let Some(s) = &mut self.snapshot {
                    s.gpus = report.clone();
                }
            }
        }
    }

    fn job_event(&mut self, ev: &JobEvent) {
        if let Some(job) = self.jobs.get_mut(&ev.id) {
            job.status = ev.to;
            job.cancel_requested = ev.cancel_requested;
            if ev.backend.is_some() {
                job.backend.clone_from(&ev.backend);
            }
            if ev.progress.is_some() || ev.to != JobStatus::Running {
                job.progress.clone_from(&ev.progress);
            }
        }
    }

    fn alert_change(&mut self, change: &AlertChange) {
        let alert = change.alert().clone();
        self.alerts
            .retain(|a| !(a.name == alert.name && a.instance == alert.instance));
        if alert.state != AlertState::Inactive {
            self.alerts.push(alert);
            self.alerts.sort_by(|a, b| {
                (a.severity.rank(), a.state != AlertState::Firing, &a.name).cmp(&(
                    b.severity.rank(),
                    b.state != AlertState::Firing,
                    &b.name,
                ))
            });
        }
    }

    fn push_gpu(&mut self, report: &GpuReport) {
        for d in &report.devices {
            let h = self.gpu_history.entry(d.index).or_default();
            if h.len() == MAX_HISTORY {
                h.pop_front();
            }
            #[allow(clippy::cast_precision_loss)]
            let mem = match (d.memory_used_bytes, d.memory_total_bytes) {
                (Some(u), Some(t)) if t > 0 => u as f64 / t as f64,
                _ => 0.0,
            };
            h.push_back((d.utilization_ratio.unwrap_or(0.0), mem));
        }
    }

    /// Adds or replaces a job, keeping at most [`MAX_JOBS`].
    pub fn put_job(&mut self, job: Job) {
        self.jobs.insert(job.id, job);
        while self.jobs.len() > MAX_JOBS {
            // The oldest finished job goes first, else the oldest of all.
            let victim = self
                .jobs
                .values()
                .find(|j| j.status.is_terminal())
                .or_else(|| self.jobs.values().next())
                .map(|j| j.id);
            match victim {
                Some(id) => self.jobs.remove(&id),
                None => break,
            };
        }
    }

    /// What an action ended with.
    pub fn outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Submitted(r) => self.job_outcome(r, "submitted"),
            Outcome::Cancelled(r) => self.job_outcome(r, "cancelled"),
            Outcome::Retried(r) => self.job_outcome(r, "queued again"),
            Outcome::Objects(r) => {
                if let Some(b) = &mut self.storage_view.browse {
                    match r {
                        Ok(page) if page.bucket == b.bucket && page.prefix == b.prefix => {
                            b.page = Some(page);
                            b.error = None;
                        }
                        Ok(_) => {}
                        Err(e) => b.error = Some(e),
                    }
                }
            }
            Outcome::Presigned { key, result } => match result {
                Ok(p) => {
                    self.say(format!(
                        "copied the URL of {key} (OSC 52); it is also shown below"
                    ));
                    self.clipboard = Some(p.url.clone());
                    self.gallery.url = Some((key.clone(), p.url.clone()));
                    if let Some(b) = &mut self.storage_view.browse {
                        b.url = Some((key, p.url));
                    }
                }
                Err(e) => self.warn(format!("cannot presign {key}: {e}")),
            },
            Outcome::Picture(loaded) => {
                let Loaded { key, picture } = *loaded;
                if let Some(picture) = picture {
                    self.pictures.put(key, picture);
                }
            }
            Outcome::Prompts(r) => self.prompts_loaded(r),
            Outcome::Prompt { name, result } => self.prompt_loaded(&name, result),
            Outcome::Usage(r) => self.usage_loaded(r),
        }
    }

    fn job_outcome(&mut self, r: Result<Job, String>, what: &str) {
        match r {
            Ok(job) => {
                self.say(format!("job {} {what}", short_id(&job.id)));
                self.put_job(job);
            }
            Err(e) => self.warn(e),
        }
    }

    pub fn say(&mut self, text: String) {
        self.flash = Some(Flash {
            text,
            error: false,
            until_ms: self.now_ms + 5_000,
        });
    }

    pub fn warn(&mut self, text: String) {
        self.flash = Some(Flash {
            text,
            error: true,
            until_ms: self.now_ms + 10_000,
        });
    }

    /// The clock moved (each tick).
    pub fn tick(&mut self, now_ms: Millis) {
        self.now_ms = now_ms;
        if self.flash.as_ref().is_some_and(|f| f.until_ms <= now_ms) {
            self.flash = None;
        }
    }

    /// The jobs the table shows, in its order: live work first (running, then
    /// queued by priority), then the newest finished; filtered by `/`.
    pub fn visible_jobs(&self) -> Vec<&Job> {
        let filter = self.jobs_view.filter.to_lowercase();
        let mut jobs: Vec<&Job> = self
            .jobs
            .values()
            .filter(|j| filter.is_empty() || job_matches(j, &filter))
            .collect();
        jobs.sort_by(|a, b| {
            let rank = |j: &Job| match j.status {
                JobStatus::Running => 0,
                JobStatus::Queued => 1,
                JobStatus::Scheduled => 2,
                _ => 3,
            };
            rank(a)
                .cmp(&rank(b))
                .then(b.priority.cmp(&a.priority).then(b.id.cmp(&a.id)))
        });
        jobs
    }

    /// The job under the cursor in the table.
    pub fn selected_job(&self) -> Option<&Job> {
        self.visible_jobs().get(self.jobs_view.selected).copied()
    }

    /// A critical alert is firing.
    pub fn critical_firing(&self) -> Option<&Alert> {
        self.alerts
            .iter()
            .find(|a| a.state == AlertState::Firing && a.severity == crate::alerts::Severity::Critical)
    }
}

/// The job's template, or `workflow` for a raw one.
pub fn job_label(job: &Job) -> String {
    if job.payload.is_null() {
        // Listed without its payload and not read in full yet.
        return "…".to_owned();
    }
    job.payload
        .get("template")
        .and_then(Value::as_str)
        .map_or_else(|| "workflow".to_owned(), str::to_owned)
}

/// The last 8 characters of the ULID: the random part, unique enough to read.
pub fn short_id(id: &Ulid) -> String {
    let s = id.to_string();
    s[s.len() - 8..].to_owned()
}

fn job_matches(job: &Job, filter: &str) -> bool {
    let backend = job
        .result
        .as_ref()
        .and_then(|r| r.get("backend"))
        .and_then(Value::as_str)
        .unwrap_or("");
    [
        job.id.to_string().to_lowercase(),
        job_label(job).to_lowercase(),
        job.status.to_string(),
        backend.to_lowercase(),
    ]
    .iter()
    .any(|f| f.contains(filter))
}
