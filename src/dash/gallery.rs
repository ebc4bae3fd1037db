//! The gallery's model, shared by its keys and its drawing: which pictures it
//! shows and in what order (running jobs' live previews first, then every image
//! output of the finished jobs the dashboard holds, newest first), the `/`
//! filter (template, prompt, status, id), and how a body of a given size is laid
//! out as a grid of tiles — a picture over two lines of label — shrinking the
//! pictures to fit two rows and dropping them below a minimum.

use serde_json::Value;

use super::picture::Source;
use super::state::{State, job_label};
use crate::dispatch::OutputObject;
use crate::queue::{Job, JobStatus};

/// One picture of the gallery.
#[derive(Debug, Clone)]
pub struct Tile<'a> {
    pub job: &'a Job,
    /// Which output (from 0); `None` for a running job's live preview.
    pub output: Option<(usize, OutputObject)>,
}

impl Tile<'_> {
    pub fn source(&self) -> Source {
        match &self.output {
            Some((n, _)) => Source::Output {
                job: self.job.id,
                n: *n,
            },
            None => Source::Live { job: self.job.id },
        }
    }
}

/// The job's image outputs, with their index in `result.outputs`.
pub fn image_outputs(job: &Job) -> Vec<(usize, OutputObject)> {
    crate::dispatch::outputs_of(job)
        .into_iter()
        .enumerate()
        .filter(|(_, o)| o.content_type.starts_with("image/"))
        .collect()
}

/// The job's `prompt` parameter, when it has one.
pub fn prompt_of(job: &Job) -> Option<&str> {
    job.payload.get("params")?.get("prompt")?.as_str()
}

/// The tiles, in the gallery's order, filtered by `/`.
pub fn tiles(state: &State) -> Vec<Tile<'_>> {
    let filter = state.gallery.filter.to_lowercase();
    let mut running: Vec<&Job> = Vec::new();
    let mut finished: Vec<&Job> = Vec::new();
    for job in state
        .jobs
        .values()
        .filter(|j| filter.is_empty() || matches(j, &filter))
    {
        match job.status {
            JobStatus::Running => running.push(job),
            JobStatus::Succeeded => finished.push(job),
            _ => {}
        }
    }
    running.sort_by_key(|j| std::cmp::Reverse(j.id));
    finished.sort_by_key(|j| std::cmp::Reverse((j.finished_ms, j.id)));
    let mut tiles: Vec<Tile> = running
        .into_iter()
        .map(|job| Tile { job, output: None })
        .collect();
    for job in finished {
        tiles.extend(
            image_outputs(job)
                .into_iter()
                .map(|o| Tile { job, output: Some(o) }),
        );
    }
    tiles
}

fn matches(job: &Job, filter: &str) -> bool {
    [
        job.id.to_string().to_lowercase(),
        job_label(job).to_lowercase(),
        prompt_of(job).unwrap_or_default().to_lowercase(),
        job.status.to_string(),
    ]
    .iter()
    .any(|f| f.contains(filter))
        || job
            .payload
            .get("params")
            .and_then(Value::as_object)
            .is_some_and(|p| {
                p.values()
                    .any(|v| v.as_str().is_some_and(|s| s.to_lowercase().contains(filter)))
            })
}

/// The smallest picture drawn in a tile; below it tiles are labels only.
pub const MIN_PICTURE_ROWS: u16 = 3;
/// Lines of label under each picture.
pub const LABEL_ROWS: u16 = 2;

/// How the gallery's body is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Tiles per row and rows of tiles.
    pub cols: u16,
    pub rows: u16,
    /// A tile's width (without the gap after it) and its picture's height (0:
    /// no pictures).
    pub tile_w: u16,
    pub picture_h: u16,
}

impl Grid {
    /// Tiles on one page.
    pub fn per_page(self) -> usize {
        usize::from(self.cols) * usize::from(self.rows)
    }

    /// A tile's height with its label (without the gap under it).
    pub fn tile_h(self) -> u16 {
        self.picture_h + LABEL_ROWS
    }
}

/// The grid for a body of `width` x `height` cells: tiles 18 cells wide (24 on
/// wide terminals) with a one-cell gap, pictures as tall as makes them square in
/// half blocks, shrunk so that two rows fit where they can.
pub fn grid(width: u16, height: u16) -> Grid {
    let tile_w: u16 = if width >= 140 { 24 } else { 18 };
    let cols = ((width + 1) / (tile_w + 1)).max(1);
    let tile_w = tile_w.min(width);
    let square = tile_w / 2;
    let step = |picture_h: u16| picture_h + LABEL_ROWS + 1;
    let mut rows = height.div_ceil(step(square)).max(1);
    let mut picture_h = ((height + 1) / rows).saturating_sub(LABEL_ROWS + 1).min(square);
    if picture_h < MIN_PICTURE_ROWS && rows > 1 {
        rows -= 1;
        picture_h = ((height + 1) / rows).saturating_sub(LABEL_ROWS + 1).min(square);
    }
    if picture_h < MIN_PICTURE_ROWS {
        // Labels only, as many as fit.
        picture_h = 0;
        rows = ((height + 1) / step(0)).max(1);
    }
    Grid {
        cols,
        rows,
        tile_w,
        picture_h,
    }
}

/// The grid of a `screen` of this size (less the header, tabs, footer and the
/// panel's title line).
pub fn grid_of_screen(screen: (u16, u16)) -> Grid {
    grid(screen.0, screen.1.saturating_sub(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_fit_two_rows_of_square_pictures_where_they_can() {
        // 80x24: the body is 20 lines under the panel's title.
        let g = grid_of_screen((80, 24));
        assert_eq!((g.cols, g.rows, g.tile_w, g.picture_h), (4, 2, 18, 7));
        assert!(g.rows * (g.tile_h() + 1) <= 21);
        let g = grid_of_screen((160, 48));
        assert_eq!((g.cols, g.rows, g.tile_w, g.picture_h), (6, 3, 24, 12));
        assert!(g.rows * (g.tile_h() + 1) <= 45);
        // A short terminal: one row, labels only below the minimum.
        let g = grid(60, 6);
        assert_eq!((g.rows, g.picture_h), (1, 4));
        let g = grid(60, 4);
        assert_eq!(g.picture_h, 0);
        assert!(g.rows >= 1);
    }
}
