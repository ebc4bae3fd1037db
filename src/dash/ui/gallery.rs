//! The gallery panel (7): the newest pictures as a grid of tiles — running jobs'
//! live previews first, then the outputs of finished jobs — each labelled with
//! the job's template and age and its prompt. The page shown is the one holding
//! the selected tile (PageUp / PageDown turn pages); Enter opens the job, `o`
//! presigns the output's URL (shown under the grid), `/` filters.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::fmt::{self, Theme};
use super::{boxed, picture};
use crate::dash::gallery::{Grid, Tile, grid, prompt_of, tiles};
use crate::dash::picture::Key;
use crate::dash::state::{State, job_label, short_id};
use crate::queue::JobStatus;

pub fn draw(state: &State, theme: Theme, frame: &mut Frame, area: Rect, wanted: &mut Vec<Key>) {
    let tiles = tiles(state);
    let url_rows = if state.gallery.url.is_some() { 4 } else { 0 };
    let [grid_area, url_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(url_rows)]).areas(area);
    let block = boxed(String::new());
    let body = block.inner(grid_area);
    let g = grid(body.width, body.height);
    let selected = state.gallery.selected.min(tiles.len().saturating_sub(1));
    let first = selected / g.per_page().max(1) * g.per_page().max(1);
    let filter = if state.gallery.filter.is_empty() {
        String::new()
    } else {
        format!(", filter {:?}", state.gallery.filter)
    };
    let pages = tiles.len().div_ceil(g.per_page().max(1)).max(1);
    let plural = if tiles.len() == 1 { "" } else { "s" };
    let title = format!(
        " Gallery ({} picture{plural}{filter}) page {}/{pages} — Enter job, o URL, PgUp PgDn ",
        tiles.len(),
        first / g.per_page().max(1) + 1,
    );
    frame.render_widget(block.title(title), grid_area);
    if tiles.is_empty() {
        let text = if state.gallery.filter.is_empty() {
            "No pictures yet: finished jobs' outputs and running jobs' previews show here."
        } else {
            "No pictures match the filter (Esc in / clears it)."
        };
        frame.render_widget(Paragraph::new(text).style(theme.dim()), body);
    }
    for (i, tile) in tiles.iter().enumerate().skip(first).take(g.per_page()) {
        let at = i - first;
        let (col, row) = (at % usize::from(g.cols), at / usize::from(g.cols));
        let rect = tile_rect(body, g, col, row);
        draw_tile(state, tile, i == selected, rect, g, theme, frame, wanted);
    }
    if let Some((key, url)) = &state.gallery.url {
        frame.render_widget(
            Paragraph::new(url.clone())
                .block(boxed(format!(" presigned URL of {key} ")))
                .wrap(Wrap { trim: false }),
            url_area,
        );
    }
}

/// Where tile (`col`, `row`) of the page goes (a one-cell gap right and below).
fn tile_rect(body: Rect, g: Grid, col: usize, row: usize) -> Rect {
    let col = u16::try_from(col).unwrap_or(0);
    let row = u16::try_from(row).unwrap_or(0);
    let x = body.x + col * (g.tile_w + 1);
    let y = body.y + row * (g.tile_h() + 1);
    Rect::new(
        x,
        y,
        g.tile_w.min(body.right().saturating_sub(x)),
        g.tile_h().min(body.bottom().saturating_sub(y)),
    )
}

#[allow(clippy::too_many_arguments)]
fn draw_tile(
    state: &State,
    tile: &Tile,
    selected: bool,
    rect: Rect,
    g: Grid,
    theme: Theme,
    frame: &mut Frame,
    wanted: &mut Vec<Key>,
) {
    let [slot, label_area] =
        Layout::vertical([Constraint::Length(g.picture_h), Constraint::Length(2)]).areas(rect);
    if g.picture_h > 0 {
        picture::draw(state, tile.source(), slot, frame, theme, wanted);
        if state.graphics.is_none() {
            frame.render_widget(Paragraph::new("(pictures off)").style(theme.dim()), slot);
        }
    }
    let job = tile.job;
    let width = usize::from(rect.width);
    let age = match job.status {
        JobStatus::Running => "running".to_owned(),
        _ => fmt::age(state.now_ms - job.finished_ms.unwrap_or(job.created_ms)),
    };
    let mut first = format!("{} {age}", job_label(job));
    if let Some((n, _)) = &tile.output
        && *n > 0
    {
        first = format!("{first} #{}", n + 1);
    }
    let marker = if selected { "▶" } else { " " };
    let style = if selected { theme.selected() } else { theme.title() };
    let second = prompt_of(job).map_or_else(|| short_id(&job.id), str::to_owned);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(fmt::fit(&format!("{marker}{first}"), width), style)),
            Line::from(Span::styled(fmt::fit(&format!(" {second}"), width), theme.dim())),
        ]),
        label_area,
    );
}
