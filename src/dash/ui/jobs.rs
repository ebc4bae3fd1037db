//! The jobs panel: a scrollable table (id, template, status, backend, progress
//! with the current node, age, duration, attempts) and, on Enter, one job in
//! full — parameters, timings, outputs with their URLs, every attempt's error —
//! beside a picture: the output chosen with Tab / ←→ (its dimensions, size and
//! name under it), or a running job's live preview. The picture needs a body of
//! at least [`PICTURE_MIN_WIDTH`] x [`PICTURE_MIN_HEIGHT`]; smaller, the facts
//! have it all.

use std::fmt::Write as _;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState, Wrap};
use serde_json::Value;

use super::fmt::{self, Theme};
use super::{boxed, picture};
use crate::dash::gallery::image_outputs;
use crate::dash::picture::{Key, Source};
use crate::dash::state::{State, job_label, short_id};
use crate::dispatch::OutputObject;
use crate::queue::{Job, JobStatus};

/// The smallest body that shows a picture beside the facts.
pub const PICTURE_MIN_WIDTH: u16 = 70;
pub const PICTURE_MIN_HEIGHT: u16 = 8;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect, wanted: &mut Vec<Key>) {
    if let Some(job) = state.jobs_view.detail.and_then(|id| state.jobs.get(&id)) {
        let lines = detail_lines(state, job, theme);
        let title = format!(" Job {} (Esc back, c cancel, r retry) ", job.id);
        let block = boxed(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let picture = picture_of(state, job).filter(|_| {
            state.graphics.is_some() && inner.width >= PICTURE_MIN_WIDTH && inner.height >= PICTURE_MIN_HEIGHT
        });
        let facts = match picture {
            Some((source, title, label)) => {
                let width = (inner.width * 2 / 5).min(inner.height * 4);
                let [facts, pane] =
                    Layout::horizontal([Constraint::Min(0), Constraint::Length(width)]).areas(inner);
                picture_pane(state, (source, title, label), frame, pane, theme, wanted);
                facts
            }
            None => inner,
        };
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .scroll((state.jobs_view.detail_scroll, 0)),
            facts,
        );
        return;
    }
    let jobs = state.visible_jobs();
    let filter = if state.jobs_view.filter.is_empty() {
        String::new()
    } else {
        format!(", filter {:?}", state.jobs_view.filter)
    };
    let title = format!(" Jobs ({} shown{filter}) ", jobs.len());
    let mut table_state = TableState::default().with_selected(Some(state.jobs_view.selected));
    frame.render_stateful_widget(
        table(state, &jobs, theme, area.width).block(boxed(title)),
        area,
        &mut table_state,
    );
}

/// The jobs table (also the overview's recent jobs).
pub fn table<'a>(state: &State, jobs: &[&Job], theme: Theme, width: u16) -> Table<'a> {
    let wide = width >= 110;
    let bar = if wide { 16 } else { 8 };
    let rows = jobs.iter().map(|j| {
        let (progress, node) = progress_of(j);
        let mut cells = vec![
            Span::raw(short_id(&j.id)),
            Span::raw(job_label(j)),
            Span::styled(status_text(j), theme.status(j.status)),
        ];
        if wide {
            cells.push(Span::raw(j.owner.clone().unwrap_or_default()));
        }
        cells.push(Span::raw(backend_of(j).map_or("", fmt::host).to_owned()));
        let progress = match j.status {
            JobStatus::Running => {
                let mut line = vec![
                    fmt::progress_bar(theme, progress, bar),
                    Span::raw(format!(" {:>3.0}%", progress * 100.0)),
                ];
                if wide && let Some(n) = node {
                    line.push(Span::styled(format!(" {n}"), theme.dim()));
                }
                Line::from(line)
            }
            _ => Line::raw(""),
        };
        let age = fmt::age(state.now_ms - j.created_ms);
        let duration = match (j.started_ms, j.finished_ms) {
            (Some(s), Some(f)) => fmt::duration(f - s),
            (Some(s), None) => fmt::duration(state.now_ms - s),
            _ => String::new(),
        };
        let attempts = format!("{}/{}", j.attempts, j.max_attempts);
        let mut row: Vec<ratatui::widgets::Cell> = cells.drain(..).map(Into::into).collect();
        row.extend([progress.into(), age.into(), duration.into(), attempts.into()]);
        Row::new(row)
    });
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Length(if wide { 14 } else { 8 }),
        Constraint::Length(10),
        Constraint::Fill(1),
        Constraint::Length(if wide { 40 } else { 13 }),
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(4),
    ];
    let mut header = vec![
        "ID", "TEMPLATE", "STATUS", "BACKEND", "PROGRESS", "AGE", "TIME", "TRY",
    ];
    if wide {
        // Whose job it is: an admin sees every user's.
        widths.insert(3, Constraint::Length(10));
        header.insert(3, "OWNER");
    }
    let header = Row::new(header).style(theme.title());
    Table::new(rows, widths)
        .header(header)
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶")
        .column_spacing(1)
}

/// What the details' picture shows: the chosen image output, or the live
/// preview of a running job; with the pane's title and the label under it.
fn picture_of(state: &State, job: &Job) -> Option<(Source, String, Option<OutputObject>)> {
    if job.status == JobStatus::Running {
        return Some((Source::Live { job: job.id }, " live preview ".into(), None));
    }
    let outputs = image_outputs(job);
    let count = outputs.len();
    let at = state.jobs_view.output.min(count.checked_sub(1)?);
    let (n, output) = outputs.into_iter().nth(at)?;
    let more = if count > 1 { " · Tab ←→" } else { "" };
    let title = format!(" output {}/{count}{more} ", at + 1);
    Some((Source::Output { job: job.id, n }, title, Some(output)))
}

/// The picture pane: a title line, the picture, and a line of label.
fn picture_pane(
    state: &State,
    (source, title, output): (Source, String, Option<OutputObject>),
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    wanted: &mut Vec<Key>,
) {
    let block = Block::default()
        .borders(Borders::LEFT)
        .title(Span::styled(title, theme.accent()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [slot, label_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    let slot = Rect {
        x: slot.x + 1,
        width: slot.width.saturating_sub(1),
        ..slot
    };
    let ready = picture::draw(state, source, slot, frame, theme, wanted);
    let mut label = Vec::new();
    if let Some(r) = &ready {
        label.push(format!("{}x{}", r.width, r.height));
        if let Some(seq) = r.seq {
            label.push(format!("frame #{}", seq % 100_000));
        }
    }
    if let Some(o) = &output {
        label.push(fmt::bytes(o.size));
        label.push(o.key.rsplit('/').next().unwrap_or(&o.key).to_owned());
    }
    frame.render_widget(
        Paragraph::new(Line::styled(
            fmt::fit(&format!(" {}", label.join(" · ")), usize::from(label_area.width)),
            theme.dim(),
        )),
        label_area,
    );
}

fn status_text(j: &Job) -> String {
    if j.cancel_requested && !j.status.is_terminal() {
        "cancelling".into()
    } else {
        j.status.to_string()
    }
}

fn progress_of(j: &Job) -> (f64, Option<String>) {
    j.progress
        .as_ref()
        .map_or((0.0, None), |p| (f64::from(p.fraction), p.message.clone()))
}

/// The backend running the job (or that last ran it), else the one its result names.
fn backend_of(j: &Job) -> Option<&str> {
    j.backend
        .as_deref()
        .or_else(|| j.result.as_ref()?.get("backend")?.as_str())
}

fn field(label: &str, value: String, theme: Theme) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{label:>12}  "), theme.accent()),
        Span::raw(value),
    ])
}

/// The job's catalog model, ETA and placement, when it has them.
fn model_lines(job: &Job, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(m) = job.payload.get("model").filter(|m| m.is_object()) {
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        lines.push(field(
            "model",
            format!("{} ({})  {}", text("name"), text("file"), text("reason")),
            theme,
        ));
    }
    if let Some(eta) = &job.eta {
        let start = eta
            .start_ms
            .map_or(String::new(), |s| format!("start ~{}  ", fmt::clock(s)));
        lines.push(field(
            "eta",
            format!("{start}finish ~{}", fmt::clock(eta.finish_ms)),
            theme,
        ));
    }
    if let Some(r) = job
        .routing
        .as_ref()
        .and_then(|r| r.get("placement"))
        .and_then(Value::as_str)
    {
        let rejected = job
            .routing
            .as_ref()
            .and_then(|r| r.get("rejected"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        lines.push(field(
            "placed",
            format!("{r} ({rejected} backends could not take it)"),
            theme,
        ));
    }
    lines
}

fn detail_lines(state: &State, job: &Job, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{:>12}  ", "status"), theme.accent()),
            Span::styled(status_text(job), theme.status(job.status)),
        ]),
        field("template", job_label(job), theme),
        field(
            "queue",
            format!(
                "{}  priority {}  attempts {}/{}",
                job.queue, job.priority, job.attempts, job.max_attempts
            ),
            theme,
        ),
    ];
    let at = |ms: Option<i64>| ms.map_or_else(|| "—".to_owned(), fmt::clock);
    let mut timings = format!(
        "created {}  started {}  finished {}",
        fmt::clock(job.created_ms),
        at(job.started_ms),
        at(job.finished_ms)
    );
    if let Some(s) = job.started_ms {
        let _ = write!(timings, "  (waited {}", fmt::duration(s - job.created_ms));
        let end = job.finished_ms.unwrap_or(state.now_ms);
        let _ = write!(timings, ", ran {})", fmt::duration(end - s));
    }
    lines.push(field("timings", timings, theme));
    if let Some(p) = &job.progress {
        let msg = p.message.clone().unwrap_or_default();
        lines.push(field(
            "progress",
            format!("{:.0}% {msg}", f64::from(p.fraction) * 100.0),
            theme,
        ));
    }
    if let Some(Value::Object(params)) = job.payload.get("params") {
        for (i, (k, v)) in params.iter().enumerate() {
            lines.push(field(
                if i == 0 { "params" } else { "" },
                format!("{k} = {v}"),
                theme,
            ));
        }
    }
    lines.extend(model_lines(job, theme));
    if let Some(b) = backend_of(job) {
        lines.push(field("backend", b.to_owned(), theme));
    }
    if let Some(r) = &job.result {
        if r.get("cache_hit").and_then(Value::as_bool) == Some(true) {
            lines.push(field(
                "cache",
                "hit: served from the prompt cache, no GPU ran".into(),
                theme,
            ));
        }
        let outputs = r
            .get("outputs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, o) in outputs.iter().enumerate() {
            let key = format!(
                "{}/{}  {}",
                o["bucket"].as_str().unwrap_or(""),
                o["key"].as_str().unwrap_or(""),
                o["size"].as_u64().map(fmt::bytes).unwrap_or_default()
            );
            lines.push(field(if i == 0 { "outputs" } else { "" }, key, theme));
            if let Some(url) = o["url"].as_str() {
                lines.push(Line::styled(format!("{:>14}{url}", ""), theme.dim()));
            }
        }
    }
    for (i, e) in job.errors.iter().enumerate() {
        let label = if i == 0 { "attempts" } else { "" };
        lines.push(Line::from(vec![
            Span::styled(format!("{label:>12}  "), theme.accent()),
            Span::raw(format!("#{} at {} ", e.attempt, fmt::clock(e.at_ms))),
            Span::styled(
                format!(
                    "{}: ",
                    serde_json::to_value(e.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
                theme.bad(),
            ),
            Span::raw(e.message.clone()),
        ]));
    }
    lines.push(field("id", job.id.to_string(), theme));
    lines
}
