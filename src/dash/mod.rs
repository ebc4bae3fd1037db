//! The terminal dashboard (ratatui + crossterm): `darkroom` runs the daemon with
//! it in-process ([`run_local`]), `darkroom dash --url` attaches it to a running
//! daemon's API ([`run_remote`]). One loop for both: every input (keys, ticks,
//! data from the [`feed`], results of actions, signals) is a [`Msg`] on one
//! channel; [`State`] changes only in [`State::apply`] / [`keys::handle`]; the
//! screen is a pure [`ui::draw`] of the state, at most ~10 times a second and
//! four times a second when idle (for the clocks). Pictures (job outputs, the
//! gallery, live previews; [`picture`]) are drawn with the protocol chosen when the
//! terminal opens; each draw reports the pictures it placed, and the loop's
//! [`picture::Loader`] fetches the missing ones in the background. The terminal
//! is restored on quit, on SIGTERM/SIGHUP and on panic.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ratatui::crossterm::event::{self, Event};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod feed;
pub mod form;
pub mod gallery;
pub mod keys;
pub mod picture;
pub mod prompts;
pub mod state;
pub mod ui;
pub mod users;

#[cfg(test)]
mod tests;

pub use crate::link::{self, Link, LocalLink, RemoteLink};
pub use config::DashConfig;
pub use picture::ImageProtocol;
pub use state::State;

use crate::service::quotas::UsageQuery;
use state::{Command, Data, Outcome};

/// Everything the loop reacts to.
#[derive(Debug)]
pub enum Msg {
    Input(Event),
    Data(Data),
    Outcome(Box<Outcome>),
    /// SIGTERM, SIGHUP or SIGINT: leave (local mode: stopping the daemon).
    Signal,
}

/// How the dashboard runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Actions (cancel, retry, submit) are off.
    pub readonly: bool,
    /// How pictures are drawn (`dash.image_protocol`, `--image-protocol`).
    pub image_protocol: ImageProtocol,
}

/// The fastest redraw, and the idle one.
const MIN_FRAME: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(250);

/// Runs the daemon with the dashboard; quitting (after confirmation) stops the
/// daemon as SIGTERM does. Logs go to `<data_dir>/darkroom.log` and the log panel.
pub async fn run_local(config: crate::config::Config, options: Options) -> anyhow::Result<()> {
    let mut daemon = crate::daemon::Daemon::start(&config, crate::clock::system()).await?;
    let link = Arc::new(LocalLink::new(daemon.services()));
    let result = run(link, true, options).await;
    // Shown once the terminal is the shell's again: drawn before, the dashboard
    // would cover it (the overview says where the secret is meanwhile).
    if let Some(notice) = daemon.take_credentials_notice() {
        eprint!("{notice}");
    }
    eprintln!("darkroom: stopping; running jobs get the grace period to finish…");
    daemon.shutdown().await;
    result
}

/// Attaches the dashboard to the daemon at `url`.
pub async fn run_remote(remote: &crate::cli::Remote, options: Options) -> anyhow::Result<()> {
    let client = remote.client()?;
    run(Arc::new(RemoteLink { client }), false, options).await
}

/// Whether this process can draw a dashboard (stdin and stdout are terminals).
pub fn has_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// The loop, on the terminal, until quit.
pub async fn run(link: Arc<dyn Link>, local: bool, options: Options) -> anyhow::Result<()> {
    let theme = ui::Theme {
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let mut state = State::new(&link.describe(), local, options.readonly);
    state.tick(crate::clock::Clock::now_ms(&crate::clock::SystemClock));
    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let stop = CancellationToken::new();
    tokio::spawn(feed::run(link.clone(), tx.clone(), stop.clone()));
    spawn_signals(tx.clone(), stop.clone());
    let mut terminal = Screen::open()?;
    // Asked before the input thread starts, so the terminal's answers are not read as keys.
    state.graphics = picture::protocol::detect(options.image_protocol);
    if state.graphics.is_some() {
        // Under NO_COLOR the theme draws no colours itself; a picture's colours
        // are its content, so crossterm must not drop them.
        ratatui::crossterm::style::force_color_output(true);
    }
    // A terminal that ignores a query may have printed part of it: start clean.
    terminal.terminal.clear()?;
    if let Ok(size) = terminal.terminal.size() {
        state.screen = (size.width, size.height);
    }
    let mut loader = state
        .graphics
        .map(|g| picture::Loader::new(link.clone(), g, tx.clone()));
    spawn_input(tx.clone(), stop.clone());
    let mut tick = tokio::time::interval(TICK);
    let mut last_draw = Instant::now() - MIN_FRAME;
    let mut dirty = true;
    while !state.quit {
        if dirty && last_draw.elapsed() >= MIN_FRAME {
            let wanted = terminal.draw(&mut state, theme)?;
            if let Some(loader) = &mut loader {
                loader.want(&wanted, &state.pictures);
            }
            last_draw = Instant::now();
            dirty = false;
        }
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                if let (Msg::Outcome(o), Some(loader)) = (&msg, &mut loader)
                    && let Outcome::Picture(loaded) = o.as_ref()
                {
                    loader.done(&loaded.key);
                }
                if let Some(command) = update(&mut state, msg) {
                    execute(&link, command, &tx, &mut state);
                }
                dirty = true;
            }
            _ = tick.tick() => {
                state.tick(crate::clock::Clock::now_ms(&crate::clock::SystemClock));
                if let Some(command) = state.due() {
                    execute(&link, command, &tx, &mut state);
                }
                dirty = true;
            }
            () = tokio::time::sleep_until(last_draw + MIN_FRAME), if dirty => {}
        }
    }
    stop.cancel();
    drop(terminal);
    Ok(())
}

/// Applies one message; a key may ask for a command.
pub fn update(state: &mut State, msg: Msg) -> Option<Command> {
    match msg {
        Msg::Input(Event::Key(key)) => keys::handle(state, key),
        Msg::Input(Event::Resize(w, h)) => {
            state.screen = (w, h);
            None
        }
        Msg::Input(_) => None,
        Msg::Data(d) => {
            state.apply(d);
            None
        }
        Msg::Outcome(o) => {
            state.outcome(*o);
            None
        }
        Msg::Signal => {
            state.quit = true;
            None
        }
    }
}

/// Runs a command in the background; its outcome comes back as a message.
fn execute(link: &Arc<dyn Link>, command: Command, tx: &mpsc::Sender<Msg>, state: &mut State) {
    if command == Command::Quit {
        state.quit = true;
        return;
    }
    let (link, tx) = (link.clone(), tx.clone());
    tokio::spawn(async move {
        let outcome = match command {
            Command::Cancel(id) => Outcome::Cancelled(text(link.cancel(&id).await)),
            Command::Retry(id) => Outcome::Retried(text(link.retry(&id).await)),
            Command::Submit(request) => Outcome::Submitted(text(link.submit(*request).await)),
            Command::ListObjects { bucket, prefix } => {
                Outcome::Objects(text(link.objects(&bucket, &prefix).await))
            }
            Command::Presign { bucket, key } => {
                let result = text(link.presign(&bucket, &key).await);
                Outcome::Presigned { key, result }
            }
            Command::LoadPrompts => Outcome::Prompts(text(link.prompts().await)),
            Command::LoadPrompt(name) => {
                let result = text(link.prompt(&name).await).map(Box::new);
                Outcome::Prompt { name, result }
            }
            Command::LoadUsage => Outcome::Usage(
                link.usage(UsageQuery::default())
                    .await
                    .map(Box::new)
                    .map_err(|e| users::NoReport::of(&e)),
            ),
            Command::Quit => return,
        };
        let _ = tx.send(Msg::Outcome(Box::new(outcome))).await;
    });
}

/// An outcome as the state keeps it: the error as the text to show.
fn text<T>(r: Result<T, link::LinkError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// Reads the terminal's input on a thread of its own (crossterm blocks).
fn spawn_input(tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    std::thread::spawn(move || {
        while !stop.is_cancelled() {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => match event::read() {
                    Ok(e) => {
                        if tx.blocking_send(Msg::Input(e)).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
}

fn spawn_signals(tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = int.recv() => {}
            () = stop.cancelled() => return,
        }
        let _ = tx.send(Msg::Signal).await;
    });
}

/// The terminal in dashboard mode; dropping it (or a panic) restores it.
struct Screen {
    terminal: ratatui::DefaultTerminal,
}

impl Screen {
    fn open() -> anyhow::Result<Self> {
        let terminal = ratatui::try_init().context("cannot set up the terminal for the dashboard")?;
        Ok(Self { terminal })
    }

    /// Draws the state; returns the pictures placed.
    fn draw(&mut self, state: &mut State, theme: ui::Theme) -> anyhow::Result<Vec<picture::Key>> {
        let mut wanted = Vec::new();
        self.terminal.draw(|f| wanted = ui::draw(state, theme, f))?;
        if let Some(url) = state.clipboard.take() {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(url);
            let mut out = std::io::stdout();
            let _ = write!(out, "\x1b]52;c;{b64}\x07").and_then(|()| out.flush());
        }
        Ok(wanted)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}
