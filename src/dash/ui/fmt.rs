//! The small things every panel draws the same way: colours (none under
//! `NO_COLOR`; named ANSI colours otherwise, which terminals adapt to dark and
//! light backgrounds), bars with threshold colours, sparklines, and numbers —
//! bytes, ages, durations, clock times.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;

use crate::clock::Millis;
use crate::queue::JobStatus;

/// Colours, or their absence.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }
    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }
    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub fn accent(self) -> Style {
        self.fg(Color::Cyan)
    }
    pub fn dim(self) -> Style {
        if self.color {
            Style::default().add_modifier(Modifier::DIM)
        } else {
            Style::default()
        }
    }
    pub fn title(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    /// The selected row: reversed, readable on any background and without colour.
    pub fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    /// Green below 70 %, yellow below 90 %, red above.
    pub fn level(self, ratio: f64) -> Style {
        if ratio >= 0.9 {
            self.bad()
        } else if ratio >= 0.7 {
            self.warn()
        } else {
            self.good()
        }
    }
    pub fn status(self, s: JobStatus) -> Style {
        match s {
            JobStatus::Running => self.accent(),
            JobStatus::Succeeded => self.good(),
            JobStatus::Failed => self.bad(),
            JobStatus::Cancelled => self.dim(),
            JobStatus::Queued | JobStatus::Scheduled => self.warn(),
        }
    }
}

/// A bar of `width` cells filled to `ratio`, coloured by level.
pub fn bar(theme: Theme, ratio: f64, width: usize) -> Span<'static> {
    let ratio = ratio.clamp(0.0, 1.0);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let filled = ((ratio * width as f64).round() as usize).min(width);
    Span::styled(
        format!("{}{}", "█".repeat(filled), "░".repeat(width - filled)),
        theme.level(ratio),
    )
}

/// A progress bar (accent colour, not a threshold).
pub fn progress_bar(theme: Theme, ratio: f64, width: usize) -> Span<'static> {
    let mut s = bar(theme, ratio, width);
    s.style = theme.accent();
    s
}

/// The last `width` values (0..=1) as block characters.
pub fn sparkline(values: impl DoubleEndedIterator<Item = f64> + ExactSizeIterator, width: usize) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = values.len().saturating_sub(width);
    let line: String = values
        .skip(skip)
        .map(|v| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = (v.clamp(0.0, 1.0) * 7.0).round() as usize;
            BLOCKS[i]
        })
        .collect();
    format!("{line:>width$}")
}

/// 1.5 GiB, 320 MiB, 12 KiB, 900 B.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// 45s, 12m, 3h, 2d: for ages.
pub fn age(ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// 0.8s, 12.3s, 4m05s: for durations.
pub fn duration(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        #[allow(clippy::cast_precision_loss)]
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Seconds as a duration.
pub fn seconds(s: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    duration((s * 1000.0) as Millis)
}

/// HH:MM:SS (UTC) of a moment.
pub fn clock(ms: Millis) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// A percentage of a ratio.
pub fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// `s` cut to `width` characters, with an ellipsis when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` in lines of at most `width` characters broken at spaces, at most `max`
/// lines (the last cut with an ellipsis).
pub fn wrap(s: &str, width: usize, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in s.split(' ') {
        let len = current.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    lines.push(current);
    if lines.len() > max {
        let rest = lines[max - 1..].join(" ");
        lines.truncate(max - 1);
        lines.push(rest);
    }
    lines.into_iter().map(|l| fit(&l, width)).collect()
}

/// A URL without its scheme (`127.0.0.1:8188`), for narrow columns.
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |x| x.1);
    rest.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(bytes(900), "900 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(24 * 1024 * 1024 * 1024), "24.0 GiB");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(3_600_000), "1h");
        assert_eq!(duration(800), "0.8s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(clock(3_723_000), "01:02:03");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(wrap("one two three four", 8, 2), ["one two", "three f…"]);
        assert_eq!(host("http://127.0.0.1:8188/"), "127.0.0.1:8188");
        assert_eq!(sparkline([0.0, 0.5, 1.0].into_iter(), 5), "  ▁▅█");
        assert_eq!(bar(Theme { color: false }, 0.5, 4).content, "██░░");
    }
}
