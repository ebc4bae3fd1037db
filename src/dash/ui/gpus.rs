//! The GPUs panel: a block per device (utilization and VRAM bars with threshold
//! colours, their sparklines, temperature, power against the limit, fan, clocks,
//! the processes on it), or one line per device when they do not all fit; with no
//! GPU, the one line saying why.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::boxed;
use super::fmt::{self, Theme};
use crate::dash::state::State;
use crate::gpu::GpuReading;

/// Rows one full device block takes.
const BLOCK_ROWS: usize = 7;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    let width = usize::from(area.width);
    let rows = usize::from(area.height.saturating_sub(1));
    let lines = match state.snapshot.as_ref().map(|s| &s.gpus) {
        Some(r) if !r.devices.is_empty() && r.devices.len() * BLOCK_ROWS <= rows => r
            .devices
            .iter()
            .flat_map(|d| block_lines(state, d, theme, width))
            .collect(),
        _ => compact_lines(state, theme, width),
    };
    let source = state
        .snapshot
        .as_ref()
        .map(|s| match &s.gpus.driver_version {
            Some(v) => format!("{}, driver {v}", s.gpus.source),
            None => s.gpus.source.to_string(),
        })
        .unwrap_or_default();
    frame.render_widget(
        Paragraph::new(lines).block(boxed(format!(" GPUs ({source}) "))),
        area,
    );
}

/// One line per device, or the reason there are none.
pub fn compact_lines(state: &State, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let Some(report) = state.snapshot.as_ref().map(|s| &s.gpus) else {
        return vec![Line::styled("GPU: waiting for the daemon…", theme.dim())];
    };
    if report.devices.is_empty() {
        let why = report.unavailable.as_deref().unwrap_or("no GPU found");
        return fmt::wrap(&format!("No GPU: {why}"), width, 2)
            .into_iter()
            .map(|l| Line::styled(l, theme.warn()))
            .collect();
    }
    let bar = if width >= 100 { 20 } else { 10 };
    report
        .devices
        .iter()
        .map(|d| {
            let mut spans = vec![Span::styled(
                format!("GPU{} {:<14} ", d.index, fmt::fit(short_name(&d.name), 14)),
                theme.title(),
            )];
            if !d.up {
                spans.push(Span::styled(
                    format!("DOWN: {}", d.error.as_deref().unwrap_or("no answer")),
                    theme.bad(),
                ));
                return Line::from(spans);
            }
            let util = d.utilization_ratio.unwrap_or(0.0);
            spans.extend([Span::raw("util "), fmt::bar(theme, util, bar)]);
            spans.push(Span::raw(format!(" {:>4} ", fmt::percent(util))));
            let mem = mem_ratio(d);
            spans.extend([Span::raw("mem "), fmt::bar(theme, mem, bar)]);
            spans.push(Span::raw(format!(" {} ", mem_text(d))));
            if let Some(t) = d.temperature_celsius {
                spans.push(Span::styled(format!("{t}°C "), temp_style(theme, t)));
            }
            if width >= 100
                && let Some(p) = d.power_watts
            {
                spans.push(Span::raw(format!("{p:.0}W")));
            }
            Line::from(spans)
        })
        .collect()
}

fn block_lines(state: &State, d: &GpuReading, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let bar = (width.saturating_sub(40)).clamp(10, 50);
    let history = state.gpu_history.get(&d.index);
    let spark_width = width.saturating_sub(14).min(120);
    let util_spark = history.map_or_else(String::new, |h| {
        fmt::sparkline(h.iter().map(|p| p.0), spark_width)
    });
    let mem_spark = history.map_or_else(String::new, |h| {
        fmt::sparkline(h.iter().map(|p| p.1), spark_width)
    });
    let mut title = vec![Span::styled(format!("GPU{} {}", d.index, d.name), theme.title())];
    if let Some(u) = &d.uuid {
        title.push(Span::styled(format!("  {u}"), theme.dim()));
    }
    if !d.up {
        title.push(Span::styled(
            format!("  DOWN: {}", d.error.as_deref().unwrap_or("no answer")),
            theme.bad(),
        ));
        return vec![Line::from(title)];
    }
    let util = d.utilization_ratio.unwrap_or(0.0);
    let mem = mem_ratio(d);
    let mut facts = Vec::new();
    if let Some(t) = d.temperature_celsius {
        facts.push(Span::styled(format!("temp {t}°C  "), temp_style(theme, t)));
    }
    match (d.power_watts, d.power_limit_watts) {
        (Some(p), Some(l)) if l > 0.0 => {
            facts.push(Span::styled(
                format!("power {p:.0}/{l:.0} W  "),
                theme.level(p / l),
            ));
        }
        (Some(p), _) => facts.push(Span::raw(format!("power {p:.0} W  "))),
        _ => {}
    }
    facts.push(Span::raw(format!(
        "fan {}  ",
        d.fan_ratio.map_or_else(|| "n/a".to_owned(), fmt::percent)
    )));
    #[allow(clippy::cast_precision_loss)]
    if let (Some(sm), Some(memc)) = (d.sm_clock_hz, d.memory_clock_hz) {
        facts.push(Span::raw(format!(
            "clocks {:.0}/{:.0} MHz",
            sm as f64 / 1e6,
            memc as f64 / 1e6
        )));
    }
    let procs = if d.processes.is_empty() {
        "processes: none".to_owned()
    } else {
        let list: Vec<String> = d
            .processes
            .iter()
            .map(|p| {
                let name = p
                    .backend
                    .as_deref()
                    .map(fmt::host)
                    .or(p.name.as_deref())
                    .unwrap_or("?");
                let mem = p.used_memory_bytes.map(fmt::bytes).unwrap_or_default();
                format!("{} {name} {mem}", p.pid)
            })
            .collect();
        format!("processes: {}", list.join(", "))
    };
    vec![
        Line::from(title),
        Line::from(vec![
            Span::raw("  util "),
            fmt::bar(theme, util, bar),
            Span::raw(format!(" {}", fmt::percent(util))),
        ]),
        Line::from(vec![
            Span::styled("   util ", theme.dim()),
            Span::styled(util_spark, theme.accent()),
        ]),
        Line::from(vec![
            Span::raw("  VRAM "),
            fmt::bar(theme, mem, bar),
            Span::raw(format!(" {}", mem_text(d))),
        ]),
        Line::from(vec![
            Span::styled("   VRAM ", theme.dim()),
            Span::styled(mem_spark, theme.accent()),
        ]),
        Line::from(facts),
        Line::styled(fmt::fit(&format!("  {procs}"), width), theme.dim()),
    ]
}

/// `RTX 4090` for `NVIDIA GeForce RTX 4090`: the part that tells cards apart.
fn short_name(name: &str) -> &str {
    let name = name.strip_prefix("NVIDIA ").unwrap_or(name);
    name.strip_prefix("GeForce ").unwrap_or(name)
}

#[allow(clippy::cast_precision_loss)]
fn mem_ratio(d: &GpuReading) -> f64 {
    match (d.memory_used_bytes, d.memory_total_bytes) {
        (Some(u), Some(t)) if t > 0 => u as f64 / t as f64,
        _ => 0.0,
    }
}

fn mem_text(d: &GpuReading) -> String {
    match (d.memory_used_bytes, d.memory_total_bytes) {
        (Some(u), Some(t)) => format!("{}/{}", fmt::bytes(u), fmt::bytes(t)),
        _ => "n/a".into(),
    }
}

fn temp_style(theme: Theme, t: u32) -> ratatui::style::Style {
    match t {
        0..75 => theme.good(),
        75..85 => theme.warn(),
        _ => theme.bad(),
    }
}
