//! The log panel: the daemon's recent lines (its in-memory log buffer), coloured
//! by level, following the tail unless scrolled back.

use crate::telemetry::LogLevel;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::boxed;
use super::fmt::{self, Theme};
use crate::dash::state::State;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect) {
    let rows = usize::from(area.height.saturating_sub(1));
    let width = usize::from(area.width);
    let end = state.logs.len().saturating_sub(state.log_scroll);
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = state
        .logs
        .range(start..end)
        .map(|l| {
            let style = match l.level {
                LogLevel::Error => theme.bad(),
                LogLevel::Warn => theme.warn(),
                LogLevel::Info => theme.good(),
                LogLevel::Debug | LogLevel::Trace => theme.dim(),
            };
            let head = format!("{} {:<5} ", fmt::clock(l.at_ms), l.level);
            let rest = fmt::fit(
                &format!("{}: {}", l.target, l.message),
                width.saturating_sub(head.len()),
            );
            Line::from(vec![Span::styled(head, style), Span::raw(rest)])
        })
        .collect();
    let title = if state.log_scroll == 0 {
        format!(" Log ({} lines, following) ", state.logs.len())
    } else {
        format!(
            " Log ({} lines, {} back; End to follow) ",
            state.logs.len(),
            state.log_scroll
        )
    };
    frame.render_widget(Paragraph::new(lines).block(boxed(title)), area);
}
