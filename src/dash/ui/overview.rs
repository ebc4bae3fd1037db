//! The first panel, everything at a glance: a line per GPU, the queue and its
//! throughput, the ComfyUI backends (or how to add one), where the S3 and HTTP APIs
//! listen and where the S3 credentials are, active alerts, and as many recent jobs
//! as fit.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, TableState};

use super::fmt::{self, Theme};
use super::{boxed, gpus, jobs};
use crate::alerts::AlertState;
use crate::dash::state::State;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    let width = usize::from(area.width);
    let gpu_lines = gpus::compact_lines(state, theme, width);
    let queue_lines = queue_lines(state, theme);
    let backend_lines = backend_lines(state, theme, width);
    let alert_lines = alert_lines(state, theme, width);
    let endpoint_lines = endpoint_lines(state, theme, width);
    let height = |n: usize| u16::try_from(n + 1).unwrap_or(u16::MAX);
    let optional = |lines: &[Line<'_>]| if lines.is_empty() { 0 } else { height(lines.len()) };
    let [
        gpu_area,
        queue_area,
        backend_area,
        endpoint_area,
        alert_area,
        jobs_area,
    ] = Layout::vertical([
        Constraint::Length(height(gpu_lines.len())),
        Constraint::Length(height(queue_lines.len())),
        Constraint::Length(height(backend_lines.len())),
        Constraint::Length(optional(&endpoint_lines)),
        Constraint::Length(optional(&alert_lines)),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(gpu_lines).block(boxed(" GPUs ".into())), gpu_area);
    frame.render_widget(
        Paragraph::new(queue_lines).block(boxed(" Queue ".into())),
        queue_area,
    );
    frame.render_widget(
        Paragraph::new(backend_lines).block(boxed(" Backends ".into())),
        backend_area,
    );
    if !endpoint_lines.is_empty() {
        frame.render_widget(
            Paragraph::new(endpoint_lines).block(boxed(" Endpoints ".into())),
            endpoint_area,
        );
    }
    if !alert_lines.is_empty() {
        frame.render_widget(
            Paragraph::new(alert_lines).block(boxed(" Alerts ".into())),
            alert_area,
        );
    }
    if jobs_area.height > 2 {
        let visible = state.visible_jobs();
        let mut none = TableState::default();
        let visible: Vec<_> = visible.into_iter().take(usize::from(jobs_area.height)).collect();
        frame.render_stateful_widget(
            jobs::table(state, &visible, theme, area.width).block(boxed(" Recent jobs (2 for all) ".into())),
            jobs_area,
            &mut none,
        );
    }
}

fn queue_lines(state: &State, theme: Theme) -> Vec<Line<'static>> {
    let Some(s) = &state.snapshot else {
        return vec![Line::styled("waiting for the daemon…", theme.dim())];
    };
    let c = &s.queue.counts;
    let r = &s.queue.recent;
    if let Some(why) = &s.queue.unavailable {
        return vec![
            Line::styled(format!("queue unavailable: {why}"), theme.bad()),
            Line::styled(
                "jobs cannot be listed, claimed or submitted until it answers",
                theme.dim(),
            ),
        ];
    }
    let count = |label: &str, n: u64, style| {
        vec![
            Span::raw(format!("{label} ")),
            Span::styled(format!("{n}  "), style),
        ]
    };
    let mut first = Vec::new();
    first.extend(count("running", c.running, theme.accent()));
    first.extend(count("queued", c.queued, theme.warn()));
    first.extend(count("scheduled", c.scheduled, theme.dim()));
    first.extend(count("succeeded", c.succeeded, theme.good()));
    first.extend(count(
        "failed",
        c.failed,
        if c.failed > 0 { theme.bad() } else { theme.dim() },
    ));
    first.extend(count("cancelled", c.cancelled, theme.dim()));
    let p = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), fmt::seconds);
    let second = format!(
        "{:.1}/min  p50 {}  p95 {}  oldest waiting {}  cache hits {}  failed {}",
        r.jobs_per_minute,
        p(r.p50_seconds),
        p(r.p95_seconds),
        p(s.queue.oldest_queued_seconds),
        fmt::percent(r.cache_hit_ratio),
        fmt::percent(r.failure_ratio),
    );
    vec![Line::from(first), Line::raw(second)]
}

/// A line per backend (health, in flight, done, failed, last error), then where
/// outputs are stored.
pub fn backend_lines(state: &State, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let Some(s) = &state.snapshot else {
        return Vec::new();
    };
    let text = crate::commands::output_store_text;
    let stores = [&s.queue_store, &s.cache_store, &s.output_store];
    let line = if stores.iter().any(|h| h.is_shared()) {
        format!(
            "queue: {}  cache: {}  outputs: {}",
            text(&s.queue_store),
            text(&s.cache_store),
            text(&s.output_store)
        )
    } else {
        "queue, cache, outputs: embedded".to_owned()
    };
    let all_reachable = stores.iter().all(|h| h.reachable);
    let store_line = Line::styled(
        fmt::fit(&line, width),
        if all_reachable { theme.dim() } else { theme.bad() },
    );
    let backup_line = s
        .backup
        .as_ref()
        .and_then(|b| backup_line(b, state.now_ms, theme, width));
    if s.backends.is_empty() {
        let mut lines = vec![
            Line::styled(
                "no ComfyUI backend configured (comfyui.backends or --comfyui URL)",
                theme.warn(),
            ),
            store_line,
        ];
        lines.extend(backup_line);
        return lines;
    }
    let mut lines: Vec<Line<'static>> = s
        .backends
        .iter()
        .map(|b| {
            let (mark, style) = match (b.healthy, &b.last_error) {
                (true, _) => ("up  ", theme.good()),
                (false, Some(_)) => ("DOWN", theme.bad()),
                // Not health-checked yet.
                (false, None) => ("…   ", theme.dim()),
            };
            let mut spans = vec![
                Span::styled(format!("{mark} "), style),
                Span::raw(format!(
                    "{:<24} in flight {}/{}  done {}  failed {}",
                    fmt::fit(fmt::host(&b.url), 24),
                    b.in_flight,
                    b.max_in_flight,
                    b.completed,
                    b.failed
                )),
            ];
            if let Some(m) = &b.loaded_model {
                spans.push(Span::styled(
                    format!("  model {}  swaps {}", fmt::fit(m, 40), b.swaps),
                    theme.dim(),
                ));
            }
            if let Some(e) = &b.last_error {
                let room = width.saturating_sub(75).max(10);
                spans.push(Span::styled(format!("  {}", fmt::fit(e, room)), theme.bad()));
            }
            Line::from(spans)
        })
        .collect();
    lines.push(store_line);
    lines.extend(backup_line);
    lines
}

/// The last backup and its state, when backups are scheduled or one was taken.
fn backup_line(
    b: &crate::backup::BackupStatus,
    now_ms: crate::clock::Millis,
    theme: Theme,
    width: usize,
) -> Option<Line<'static>> {
    let st = &b.state;
    let last = st.last_success_ms.map_or_else(
        || "no good backup yet".to_owned(),
        |ms| format!("last good {} ago", fmt::age(now_ms - ms)),
    );
    let (text, style) = if st.running {
        (format!("backup: running now; {last}"), theme.accent())
    } else if let Some(e) = &st.last_error {
        (format!("backup: FAILED ({e}); {last}"), theme.bad())
    } else if b.dest.is_none() && st.last_success_ms.is_none() {
        return None;
    } else {
        let size = st.last.as_ref().map_or_else(String::new, |r| {
            format!(
                " ({}, {} copied)",
                fmt::bytes(r.bytes),
                fmt::bytes(r.bytes_copied)
            )
        });
        (format!("backup: {last}{size}"), theme.dim())
    };
    let next = match (b.next_ms, &b.dest) {
        (Some(next), Some(dest)) if !st.running => format!("; next in {} to {dest}", fmt::age(next - now_ms)),
        _ => String::new(),
    };
    Some(Line::styled(fmt::fit(&format!("{text}{next}"), width), style))
}

/// Where the daemon listens and how to log in to its S3 API — what a newcomer
/// needs first (the generated secret itself is shown once, outside the dashboard).
fn endpoint_lines(state: &State, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let Some(e) = state.snapshot.as_ref().and_then(|s| s.endpoints.as_ref()) else {
        return Vec::new();
    };
    let fit = |text: String| fmt::fit(&text, width);
    let mut lines = match (&e.s3_url, &e.s3_access_key) {
        (Some(url), Some(key)) => vec![
            Line::raw(fit(format!("S3   {url}  access key {key}"))),
            Line::styled(
                fit(format!(
                    "     secret key in {}",
                    e.s3_secret_in.as_deref().unwrap_or("the configuration")
                )),
                theme.dim(),
            ),
        ],
        (Some(url), None) => vec![Line::raw(fit(format!("S3   {url}")))],
        (None, _) => vec![Line::styled("S3   off (s3.enabled = false)", theme.dim())],
    };
    lines.push(Line::raw(fit(format!(
        "API  {}  (`darkroom dash --url` attaches; OpenAPI at /api/v1/openapi.json)",
        e.api_url
    ))));
    lines
}

fn alert_lines(state: &State, theme: Theme, width: usize) -> Vec<Line<'static>> {
    state
        .alerts
        .iter()
        .take(3)
        .map(|a| {
            let (label, style) = match a.state {
                AlertState::Firing => ("FIRING ", theme.bad()),
                _ => ("pending", theme.warn()),
            };
            let since = fmt::age(state.now_ms - a.firing_since_ms.unwrap_or(a.active_since_ms));
            Line::from(vec![
                Span::styled(format!("{label} "), style),
                Span::raw(fmt::fit(
                    &format!("{} for {since}: {}", a.name, a.summary),
                    width.saturating_sub(9),
                )),
            ])
        })
        .collect()
}
