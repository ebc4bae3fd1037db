//! Which graphics protocol the dashboard draws pictures with, and how big a
//! terminal cell is in pixels. `dash.image_protocol` / `--image-protocol` names
//! one (`auto` by default, `none` turns pictures off); `auto` asks the terminal:
//! one burst of queries (kitty's graphics query, the device attributes for sixel,
//! the cell size, then a status report every terminal answers), whose answers
//! [`choose`] reads. Inside tmux, pictures are half blocks unless tmux passes
//! escape sequences through (`allow-passthrough`), since tmux redraws the screen
//! itself; the queries are then wrapped for passthrough. Without a known cell
//! size only half blocks can be placed. The answers are parsed by ratatui-image's
//! parser; the terminal I/O is here ([`detect`]) so the choice itself is a pure
//! function that tests drive with scripted answers.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ratatui_image::picker::ProtocolType;
use ratatui_image::picker::cap_parser::{Parser, QueryStdioOptions, Response};
use serde::{Deserialize, Serialize};

/// What `dash.image_protocol` and `--image-protocol` accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageProtocol {
    /// Ask the terminal (half blocks inside tmux without passthrough).
    #[default]
    Auto,
    Kitty,
    Iterm2,
    Sixel,
    /// Unicode half blocks in 24-bit colour: any terminal, coarse.
    Halfblocks,
    /// No pictures.
    None,
}

named_enum!(ImageProtocol, "image protocol", {
    Auto => "auto",
    Kitty => "kitty",
    Iterm2 => "iterm2",
    Sixel => "sixel",
    Halfblocks => "halfblocks",
    None => "none",
});

/// How pictures are drawn: the protocol, the cell size in pixels, and whether
/// escape sequences go through tmux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graphics {
    pub kind: ProtocolType,
    /// A cell's width and height in pixels (for half blocks, a nominal 1:2).
    pub font: (u16, u16),
    pub tmux: bool,
}

impl Graphics {
    /// Half blocks: any terminal with 24-bit colour.
    pub fn halfblocks() -> Self {
        Self {
            kind: ProtocolType::Halfblocks,
            font: (10, 20),
            tmux: false,
        }
    }

    /// The protocol's name, as `--image-protocol` spells it.
    pub fn name(self) -> &'static str {
        match self.kind {
            ProtocolType::Halfblocks => "halfblocks",
            ProtocolType::Sixel => "sixel",
            ProtocolType::Kitty => "kitty",
            ProtocolType::Iterm2 => "iterm2",
        }
    }

    /// The pixels `cols` x `rows` cells show (half blocks: one per column, two
    /// per row).
    pub fn pixels(self, cols: u16, rows: u16) -> (u32, u32) {
        match self.kind {
            ProtocolType::Halfblocks => (u32::from(cols), u32::from(rows) * 2),
            _ => (
                u32::from(cols) * u32::from(self.font.0),
                u32::from(rows) * u32::from(self.font.1),
            ),
        }
    }
}

/// What is known about the terminal before asking it anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terminal {
    /// Inside tmux (`$TMUX`, or `$TERM` starting with `tmux`; `screen` too, which
    /// passes no pictures either).
    pub tmux: bool,
    /// tmux's `allow-passthrough` is on for this pane.
    pub passthrough: bool,
    /// `$TERM_PROGRAM` and `$LC_TERMINAL` (iTerm2, WezTerm and others speak
    /// iTerm2's protocol but do not say so when asked).
    pub term_program: String,
    pub lc_terminal: String,
    /// The window in cells and pixels, from the kernel (`TIOCGWINSZ`); pixels
    /// are 0 where the terminal does not report them.
    pub window: Option<(u16, u16, u16, u16)>,
}

impl Terminal {
    /// Reads the environment, the window size and (inside tmux) the passthrough
    /// option. Runs `tmux show` inside tmux; changes nothing.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let term = var("TERM");
        let tmux = !var("TMUX").is_empty() || term.starts_with("tmux") || term.starts_with("screen");
        let passthrough = tmux && tmux_passthrough();
        let window = ratatui::crossterm::terminal::window_size()
            .ok()
            .map(|w| (w.columns, w.rows, w.width, w.height));
        Self {
            tmux,
            passthrough,
            term_program: var("TERM_PROGRAM"),
            lc_terminal: var("LC_TERMINAL"),
            window,
        }
    }

    /// Names iTerm2's protocol without being asked.
    fn speaks_iterm2(&self) -> bool {
        const PROGRAMS: [&str; 8] = [
            "iTerm",
            "WezTerm",
            "mintty",
            "vscode",
            "Tabby",
            "Hyper",
            "rio",
            "WarpTerminal",
        ];
        PROGRAMS.iter().any(|p| self.term_program.contains(p)) || self.lc_terminal.contains("iTerm")
    }

    /// The cell size from the window's pixel size, when the kernel knows it.
    fn font_from_window(&self) -> Option<(u16, u16)> {
        let (cols, rows, w, h) = self.window?;
        (cols > 0 && rows > 0 && w >= cols && h >= rows).then(|| (w / cols, h / rows))
    }
}

/// Whether tmux passes escape sequences through for this pane (tmux 3.3+).
fn tmux_passthrough() -> bool {
    std::process::Command::new("tmux")
        .args(["show-options", "-Apv", "allow-passthrough"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| matches!(String::from_utf8_lossy(&o.stdout).trim(), "on" | "all"))
}

/// Whether choosing needs the terminal's answers: for `auto`, unless tmux
/// would swallow the queries; for a forced graphics protocol, to learn the
/// cell size.
pub fn needs_query(wanted: ImageProtocol, term: &Terminal) -> bool {
    match wanted {
        ImageProtocol::None | ImageProtocol::Halfblocks => false,
        ImageProtocol::Auto => !term.tmux || term.passthrough,
        ImageProtocol::Kitty | ImageProtocol::Iterm2 | ImageProtocol::Sixel => true,
    }
}

/// The queries to write (wrapped for tmux's passthrough inside tmux).
pub fn query(term: &Terminal) -> String {
    Parser::query(term.tmux, QueryStdioOptions::default())
}

/// Parses the terminal's answers; `true` once its status report (the last
/// answer) came.
pub fn parse_answers(bytes: &[u8], parser: &mut Parser, into: &mut Vec<Response>) -> bool {
    for b in bytes {
        for r in parser.push(char::from(*b)) {
            if r == Response::Status {
                return true;
            }
            into.push(r);
        }
    }
    false
}

/// The protocol to draw with (`None`: no pictures), from what was asked for,
/// what is known of the terminal and what it answered (`None` when it was not
/// asked or did not answer in time).
pub fn choose(wanted: ImageProtocol, term: &Terminal, answers: Option<&[Response]>) -> Option<Graphics> {
    let answers = answers.unwrap_or_default();
    let font = answers
        .iter()
        .find_map(|r| match r {
            Response::CellSize(Some((w, h))) => Some((*w, *h)),
            _ => None,
        })
        .or_else(|| term.font_from_window());
    let kind = match wanted {
        ImageProtocol::None => return None,
        ImageProtocol::Halfblocks => ProtocolType::Halfblocks,
        ImageProtocol::Kitty => ProtocolType::Kitty,
        ImageProtocol::Iterm2 => ProtocolType::Iterm2,
        ImageProtocol::Sixel => ProtocolType::Sixel,
        ImageProtocol::Auto if term.tmux && !term.passthrough => ProtocolType::Halfblocks,
        ImageProtocol::Auto => {
            if answers.contains(&Response::Kitty) {
                ProtocolType::Kitty
            } else if term.speaks_iterm2() {
                ProtocolType::Iterm2
            } else if answers.contains(&Response::Sixel) {
                ProtocolType::Sixel
            } else {
                ProtocolType::Halfblocks
            }
        }
    };
    let halfblocks = Graphics::halfblocks();
    match (kind, font) {
        // Pixels cannot be placed in cells of unknown size.
        (ProtocolType::Halfblocks, _) | (_, None) => Some(halfblocks),
        (kind, Some(font)) => Some(Graphics {
            kind,
            font,
            tmux: term.tmux,
        }),
    }
}

/// How long the terminal gets to answer (a slow SSH link included; an answer
/// later than this would be read as keys).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Chooses the protocol for the terminal on stdin/stdout, asking it when
/// needed. Call in raw mode, before anything else reads the input.
pub fn detect(wanted: ImageProtocol) -> Option<Graphics> {
    let term = Terminal::from_env();
    if !needs_query(wanted, &term) {
        return choose(wanted, &term, None);
    }
    let answers = ask(&term, &mut std::io::stdout(), &mut std::io::stdin());
    choose(wanted, &term, answers.as_deref())
}

/// Writes the queries and reads the answers until the status report, or
/// gives up after [`ANSWER_WITHIN`] (reading only when input is waiting, so
/// nothing is left blocked on the terminal).
fn ask(term: &Terminal, out: &mut impl Write, input: &mut std::io::Stdin) -> Option<Vec<Response>> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    out.write_all(query(term).as_bytes()).ok()?;
    out.flush().ok()?;
    let deadline = Instant::now() + ANSWER_WITHIN;
    let (mut parser, mut answers, mut buf) = (Parser::new(), Vec::new(), [0u8; 256]);
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let timeout = Timespec::try_from(left).ok()?;
        let ready = {
            let fd = input.lock();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            poll(&mut fds, Some(&timeout)).ok()?
        };
        if ready == 0 {
            return None;
        }
        let n = input.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        if parse_answers(&buf[..n], &mut parser, &mut answers) {
            return Some(answers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers as a terminal writes them, through the real parser.
    fn answers(script: &str) -> Option<Vec<Response>> {
        let (mut parser, mut out) = (Parser::new(), Vec::new());
        parse_answers(script.as_bytes(), &mut parser, &mut out).then_some(out)
    }

    const KITTY: &str = "\x1b_Gi=31;OK\x1b\\\x1b[?62;22;52c\x1b[6;20;10t\x1b[0n";
    const FOOT_SIXEL: &str = "\x1b[?62;4;22c\x1b[6;17;8t\x1b[0n";
    const PLAIN_XTERM: &str = "\x1b[?65;1;9c\x1b[0n";

    #[test]
    fn a_kitty_answer_picks_kitty_with_the_reported_cell_size() {
        let g = choose(
            ImageProtocol::Auto,
            &Terminal::default(),
            answers(KITTY).as_deref(),
        )
        .unwrap();
        assert_eq!((g.kind, g.font, g.tmux), (ProtocolType::Kitty, (10, 20), false));
        assert_eq!(g.pixels(30, 10), (300, 200));
    }

    #[test]
    fn sixel_in_the_device_attributes_picks_sixel() {
        let g = choose(
            ImageProtocol::Auto,
            &Terminal::default(),
            answers(FOOT_SIXEL).as_deref(),
        )
        .unwrap();
        assert_eq!((g.kind, g.font), (ProtocolType::Sixel, (8, 17)));
    }

    #[test]
    fn a_terminal_with_no_graphics_gets_half_blocks() {
        let g = choose(
            ImageProtocol::Auto,
            &Terminal::default(),
            answers(PLAIN_XTERM).as_deref(),
        )
        .unwrap();
        assert_eq!(g, Graphics::halfblocks());
        assert_eq!(g.pixels(30, 10), (30, 20));
        // No answer at all (a timeout) is the same.
        assert_eq!(
            choose(ImageProtocol::Auto, &Terminal::default(), None),
            Some(Graphics::halfblocks())
        );
    }

    #[test]
    fn iterm2_is_known_by_its_name_and_needs_a_cell_size() {
        let iterm = Terminal {
            term_program: "iTerm.app".into(),
            window: Some((100, 40, 1000, 800)),
            ..Terminal::default()
        };
        let g = choose(ImageProtocol::Auto, &iterm, answers(PLAIN_XTERM).as_deref()).unwrap();
        // The cell size comes from the window's pixels when the query has none.
        assert_eq!((g.kind, g.font), (ProtocolType::Iterm2, (10, 20)));
        let blind = Terminal {
            window: None,
            ..iterm
        };
        assert_eq!(
            choose(ImageProtocol::Auto, &blind, answers(PLAIN_XTERM).as_deref()),
            Some(Graphics::halfblocks())
        );
    }

    #[test]
    fn tmux_without_passthrough_is_half_blocks_without_asking() {
        let tmux = Terminal {
            tmux: true,
            ..Terminal::default()
        };
        assert!(!needs_query(ImageProtocol::Auto, &tmux));
        // Even a kitty outside: tmux would not pass the pictures on.
        let g = choose(ImageProtocol::Auto, &tmux, answers(KITTY).as_deref()).unwrap();
        assert_eq!(g, Graphics::halfblocks());
        let through = Terminal {
            passthrough: true,
            ..tmux
        };
        assert!(needs_query(ImageProtocol::Auto, &through));
        assert!(query(&through).starts_with("\x1bPtmux;"), "{:?}", query(&through));
        let g = choose(ImageProtocol::Auto, &through, answers(KITTY).as_deref()).unwrap();
        assert_eq!((g.kind, g.tmux), (ProtocolType::Kitty, true));
    }

    #[test]
    fn a_forced_protocol_wins_and_none_turns_pictures_off() {
        let term = Terminal::default();
        assert!(!needs_query(ImageProtocol::Halfblocks, &term));
        assert!(needs_query(ImageProtocol::Sixel, &term));
        let g = choose(ImageProtocol::Sixel, &term, answers(KITTY).as_deref()).unwrap();
        assert_eq!(g.kind, ProtocolType::Sixel);
        assert_eq!(
            choose(ImageProtocol::Halfblocks, &term, answers(KITTY).as_deref()),
            Some(Graphics::halfblocks())
        );
        assert_eq!(
            choose(ImageProtocol::None, &term, answers(KITTY).as_deref()),
            None
        );
        assert!(!needs_query(ImageProtocol::None, &term));
        assert_eq!("SIXEL".parse::<ImageProtocol>().unwrap(), ImageProtocol::Sixel);
        let err = "ascii".parse::<ImageProtocol>().unwrap_err().to_string();
        assert!(
            err.contains("auto, kitty, iterm2, sixel, halfblocks, none"),
            "{err}"
        );
    }

    #[test]
    fn answers_split_across_reads_still_parse() {
        let (mut parser, mut out) = (Parser::new(), Vec::new());
        let (a, b) = KITTY.as_bytes().split_at(7);
        assert!(!parse_answers(a, &mut parser, &mut out));
        assert!(parse_answers(b, &mut parser, &mut out));
        assert!(out.contains(&Response::Kitty), "{out:?}");
    }
}
