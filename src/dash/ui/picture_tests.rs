//! Snapshot tests of the pictures (half blocks, `NO_COLOR` on): the job details
//! with an output and with a live preview, the gallery, the storage browser's
//! preview, at 80x24 and 160x48. Each screen is drawn once (slots say
//! "loading…" and report the pictures they want), the wanted pictures are
//! encoded from a generated four-colour test pattern or the recorded ComfyUI
//! output and handed to the state as the loader would, and the screen is drawn
//! again. A snapshot is the text plus a map of the picture cells' colours
//! (R G B W for the pattern's quadrants, A for the recorded azure output), and
//! the tests check the quadrants land where they belong.

use std::collections::BTreeSet;
use std::sync::Arc;

use image::{DynamicImage, Rgb, RgbImage};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use serde_json::json;

use super::tests::{NOW, render, state};
use super::{Theme, draw};
use crate::dash::picture::encode::encode;
use crate::dash::picture::{Graphics, Key, Loaded, Picture, Ready, Source};
use crate::dash::state::{Browse, Outcome, Panel, State};
use crate::queue::JobStatus;

/// The recorded output of ComfyUI's noop workflow (768x768, one colour).
const RECORDED: &[u8] = include_bytes!("../../../tests/fixtures/comfyui/view_output.png");

/// Red, green, blue and white quadrants.
fn pattern(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
        (true, true) => Rgb([255, 0, 0]),
        (false, true) => Rgb([0, 255, 0]),
        (true, false) => Rgb([0, 0, 255]),
        (false, false) => Rgb([255, 255, 255]),
    }))
}

fn recorded() -> DynamicImage {
    crate::service::pictures::decode(RECORDED).unwrap()
}

fn buffer(state: &State, w: u16, h: u16) -> (Buffer, Vec<Key>) {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut wanted = Vec::new();
    t.draw(|f| wanted = draw(state, Theme { color: false }, f))
        .unwrap();
    (t.backend().buffer().clone(), wanted)
}

/// Draws, loads what the screen wanted (as the loader hands it over), draws
/// again; returns the first screen's text and the final buffer.
fn draw_loaded(s: &mut State, w: u16, h: u16, image: impl Fn(&Source) -> DynamicImage) -> (String, Buffer) {
    s.graphics = Some(Graphics::halfblocks());
    s.screen = (w, h);
    let first = render(s, w, h);
    let (_, wanted) = buffer(s, w, h);
    assert!(!wanted.is_empty(), "no picture wanted:\n{first}");
    for key in wanted {
        let img = image(&key.source);
        let protocol = encode(&img, key.cols, key.rows, Graphics::halfblocks()).unwrap();
        let seq = key.source.is_live().then_some(7);
        let ready = Ready {
            protocol,
            width: img.width(),
            height: img.height(),
            seq,
        };
        let picture = Some(Picture::Ready(Arc::new(ready)));
        s.outcome(Outcome::Picture(Box::new(Loaded { key, picture })));
    }
    let (buf, again) = buffer(s, w, h);
    // Everything wanted is loaded now: nothing more to fetch.
    assert!(again.iter().all(|k| s.pictures.get(k).is_some()));
    (first, buf)
}

/// A picture cell's colour as a letter; `.` for a cell that is no picture.
fn letter(c: Color) -> char {
    let Color::Rgb(r, g, b) = c else { return '.' };
    let near = |x: u8, y: u8| x.abs_diff(y) < 40;
    match (r, g, b) {
        (r, g, b) if near(r, 255) && near(g, 0) && near(b, 0) => 'R',
        (r, g, b) if near(r, 0) && near(g, 255) && near(b, 0) => 'G',
        (r, g, b) if near(r, 0) && near(g, 0) && near(b, 255) => 'B',
        (r, g, b) if near(r, 255) && near(g, 255) && near(b, 255) => 'W',
        (r, g, b) if near(r, 0) && near(g, 128) && near(b, 255) => 'A',
        _ => '+',
    }
}

/// Each cell's colour letter: both halves alike, else `+` (an edge).
fn colours(buf: &Buffer) -> Vec<Vec<char>> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| {
                    let cell = &buf[(x, y)];
                    let (fg, bg) = (letter(cell.fg), letter(cell.bg));
                    if cell.symbol() == " " || fg == bg { bg } else { '+' }
                })
                .collect()
        })
        .collect()
}

/// The rows with picture cells, for the snapshot.
fn colour_map(map: &[Vec<char>]) -> String {
    map.iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|c| *c != '.'))
        .map(|(y, row)| format!("{y:>2} {}", row.iter().collect::<String>().trim_end_matches('.')))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A part of the screen: columns and rows.
type Area = (std::ops::Range<usize>, std::ops::Range<usize>);

/// The whole screen's columns `from..to`.
fn columns(from: usize, to: usize) -> Area {
    (from..to, 0..usize::MAX)
}

/// The bounding box (x0, y0, x1, y1, exclusive) of the cells of `letters` in `area`.
fn bounds(map: &[Vec<char>], letters: &str, area: &Area) -> (usize, usize, usize, usize) {
    let cells: Vec<(usize, usize)> = map
        .iter()
        .enumerate()
        .filter(|(y, _)| area.1.contains(y))
        .flat_map(|(y, row)| {
            row.iter()
                .enumerate()
                .filter(|(x, c)| area.0.contains(x) && letters.contains(**c))
                .map(move |(x, _)| (x, y))
        })
        .collect();
    assert!(
        !cells.is_empty(),
        "no {letters} cells in {area:?}:\n{}",
        colour_map(map)
    );
    let x0 = cells.iter().map(|c| c.0).min().unwrap();
    let y0 = cells.iter().map(|c| c.1).min().unwrap();
    let x1 = cells.iter().map(|c| c.0).max().unwrap() + 1;
    let y1 = cells.iter().map(|c| c.1).max().unwrap() + 1;
    (x0, y0, x1, y1)
}

/// The test pattern's quadrants land in the right corners of the picture in
/// `area`, and it is about square (half blocks: a cell is 1x2 pixels).
fn assert_pattern(map: &[Vec<char>], area: &Area) -> (usize, usize, usize, usize) {
    let (x0, y0, x1, y1) = bounds(map, "RGBW+", area);
    let (w, h) = (x1 - x0, y1 - y0);
    let at = |fx: usize, fy: usize| map[y0 + h * fy / 4][x0 + w * fx / 4];
    assert_eq!(
        [at(1, 1), at(3, 1), at(1, 3), at(3, 3)],
        ['R', 'G', 'B', 'W'],
        "quadrants of the picture at {x0},{y0} {w}x{h}:\n{}",
        colour_map(map)
    );
    assert!(w.abs_diff(2 * h) <= 2, "not square: {w}x{h} cells");
    (x0, y0, x1, y1)
}

fn snapshot(text: &str, buf: &Buffer) -> String {
    format!(
        "{text}\n--- picture colours (row: cells) ---\n{}\n",
        colour_map(&colours(buf))
    )
}

/// The screen's text, as `TestBackend` prints it.
fn text(buf: &Buffer) -> String {
    (0..buf.area.height)
        .map(|y| {
            let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
            format!("{line:?}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A succeeded job with two outputs: the pattern, then the recorded image.
fn two_outputs(s: &mut State) -> ulid::Ulid {
    let id = s
        .visible_jobs()
        .into_iter()
        .find(|j| j.status == JobStatus::Succeeded)
        .unwrap()
        .id;
    let job = s.jobs.get_mut(&id).unwrap();
    let result = job.result.as_mut().unwrap();
    result["outputs"].as_array_mut().unwrap().push(json!({
        "bucket": "comfyui-outputs", "key": format!("jobs/{id}/2-ComfyUI_00002_.png"), "size": 4_038,
        "content_type": "image/png"}));
    s.panel = Panel::Jobs;
    s.jobs_view.detail = Some(id);
    id
}

fn by_output(source: &Source) -> DynamicImage {
    match source {
        Source::Output { n: 0, .. } => pattern(64, 64),
        _ => recorded(),
    }
}

#[test]
fn job_details_show_the_chosen_output_beside_the_facts() {
    let mut s = state(true);
    let id = two_outputs(&mut s);
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        s.pictures = crate::dash::picture::Pictures::default();
        let (first, buf) = draw_loaded(&mut s, w, h, by_output);
        assert!(first.contains("loading…"), "{first}");
        assert!(first.contains("output 1/2 · Tab ←→"), "{first}");
        let screen = text(&buf);
        assert!(screen.contains("64x64 · 1.2 MiB · ComfyUI_000"), "{screen}");
        // The picture is in the right-hand pane, the facts keep the left.
        let map = colours(&buf);
        let (x0, ..) = assert_pattern(&map, &columns(0, usize::from(w)));
        assert!(x0 > usize::from(w) / 2, "picture at column {x0}");
        assert!(screen.contains("status  succeeded"), "{screen}");
        insta::assert_snapshot!(format!("job_picture_{w}x{h}"), snapshot(&screen, &buf));
    }
    // Tab shows the second output: the recorded azure image, its own dimensions.
    crate::dash::keys::handle(
        &mut s,
        ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Tab),
    );
    assert_eq!((s.jobs_view.detail, s.jobs_view.output), (Some(id), 1));
    let (_, buf) = draw_loaded(&mut s, 80, 24, by_output);
    let screen = text(&buf);
    assert!(screen.contains("output 2/2"), "{screen}");
    assert!(screen.contains("768x768 · 3.9 KiB · 2-ComfyUI"), "{screen}");
    let map = colours(&buf);
    let (x0, y0, x1, y1) = bounds(&map, "A", &columns(0, 80));
    assert!((x1 - x0).abs_diff(2 * (y1 - y0)) <= 2, "{x0},{y0} {x1},{y1}");
    assert!(!map.iter().flatten().any(|c| "RGBW".contains(*c)));
}

#[test]
fn a_running_job_shows_its_live_preview() {
    let mut s = state(true);
    let running = s
        .visible_jobs()
        .into_iter()
        .find(|j| j.status == JobStatus::Running)
        .unwrap()
        .id;
    s.panel = Panel::Jobs;
    s.jobs_view.detail = Some(running);
    let (first, buf) = draw_loaded(&mut s, 80, 24, |source| {
        assert_eq!(source, &Source::Live { job: running });
        pattern(48, 48)
    });
    assert!(first.contains("live preview"), "{first}");
    let screen = text(&buf);
    assert!(screen.contains("48x48 · frame #7"), "{screen}");
    assert_pattern(&colours(&buf), &columns(40, 80));
    insta::assert_snapshot!("job_live_preview_80x24", snapshot(&screen, &buf));
}

#[test]
fn the_gallery_shows_outputs_as_tiles() {
    let mut s = state(true);
    s.panel = Panel::Gallery;
    // Running jobs' live previews come first, then the finished outputs, newest
    // first; every other one of those shows the recorded output, the rest (and
    // the previews) the pattern.
    let tiles: Vec<(ulid::Ulid, bool)> = crate::dash::gallery::tiles(&s)
        .iter()
        .map(|t| (t.job.id, t.output.is_none()))
        .collect();
    let live = tiles.iter().take_while(|t| t.1).count();
    assert_eq!(
        live,
        s.jobs.values().filter(|j| j.status == JobStatus::Running).count()
    );
    assert!(tiles[live..].iter().all(|t| !t.1));
    let recorded_jobs: BTreeSet<ulid::Ulid> = tiles[live..].iter().step_by(2).map(|t| t.0).collect();
    let image = |source: &Source| match source {
        Source::Output { job, .. } if recorded_jobs.contains(job) => recorded(),
        _ => pattern(64, 64),
    };
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        s.pictures = crate::dash::picture::Pictures::default();
        let (first, buf) = draw_loaded(&mut s, w, h, image);
        assert!(first.contains("loading…"), "{first}");
        let screen = text(&buf);
        let g = crate::dash::gallery::grid_of_screen((w, h));
        assert!(
            screen.contains(&format!("Gallery ({} pictures)", tiles.len())),
            "{screen}"
        );
        // The first tile is selected, a running job's preview.
        assert!(screen.contains("▶noop running"), "{screen}");
        let map = colours(&buf);
        // Tile i's cells: the body starts under the header, tabs and title.
        let tile = |i: usize| -> Area {
            let (w, h) = (usize::from(g.tile_w) + 1, usize::from(g.tile_h()) + 1);
            let (col, row) = (i % usize::from(g.cols), i / usize::from(g.cols));
            (col * w..col * w + w - 1, 3 + row * h..3 + row * h + h - 1)
        };
        assert_pattern(&map, &tile(0));
        // The first finished output shows the recorded image, the next the pattern.
        let (x0, y0, x1, y1) = bounds(&map, "A", &tile(live));
        assert!((x1 - x0).abs_diff(2 * (y1 - y0)) <= 2, "{x0},{y0} {x1},{y1}");
        assert_pattern(&map, &tile(live + 1));
        insta::assert_snapshot!(format!("gallery_{w}x{h}"), snapshot(&screen, &buf));
    }
}

#[test]
fn the_storage_browser_previews_the_selected_image() {
    let mut s = state(true);
    s.panel = Panel::Storage;
    let page = serde_json::from_value(json!({
        "bucket": "comfyui-outputs", "prefix": "jobs/01JX/", "truncated": false, "prefixes": [],
        "objects": [
            {"key": "jobs/01JX/ComfyUI_00001_.png", "size": 1_234_567, "last_modified_ms": NOW - 120_000, "content_type": "image/png"},
            {"key": "jobs/01JX/metadata.json", "size": 2_048, "last_modified_ms": NOW - 120_000, "content_type": "application/json"},
        ]}))
    .unwrap();
    s.storage_view.browse = Some(Browse {
        bucket: "comfyui-outputs".into(),
        prefix: "jobs/01JX/".into(),
        page: Some(page),
        ..Browse::default()
    });
    let (_, buf) = draw_loaded(&mut s, 80, 24, |source| {
        assert!(matches!(source, Source::Object { key, .. } if key == "jobs/01JX/ComfyUI_00001_.png"));
        pattern(40, 40)
    });
    let screen = text(&buf);
    assert!(screen.contains("40x40 · 1.2 MiB"), "{screen}");
    assert_pattern(&colours(&buf), &columns(40, 80));
    insta::assert_snapshot!("storage_preview_80x24", snapshot(&screen, &buf));
    // metadata.json is no picture: no preview, the listing has the width.
    s.storage_view.browse.as_mut().unwrap().selected = 1;
    let (_, wanted) = buffer(&s, 80, 24);
    assert!(wanted.is_empty());
}

#[test]
fn pictures_off_or_a_small_terminal_draw_none() {
    let mut s = state(true);
    two_outputs(&mut s);
    // --image-protocol none: the facts take the whole width, nothing is fetched.
    let (_, wanted) = buffer(&s, 80, 24);
    assert!(wanted.is_empty());
    assert!(!render(&s, 80, 24).contains("output 1/2"));
    // Half blocks, but below the details' minimum (a 60x16 terminal).
    s.graphics = Some(Graphics::halfblocks());
    let (_, wanted) = buffer(&s, 60, 16);
    assert!(wanted.is_empty());
    // The gallery still lays out its tiles at 60x16, pictures shrunk.
    s.panel = Panel::Gallery;
    let (_, wanted) = buffer(&s, 60, 16);
    assert!(!wanted.is_empty());
    assert!(
        wanted
            .iter()
            .all(|k| k.rows >= super::picture::MIN_ROWS && k.cols <= 18)
    );
}
