//! A program in a real terminal: a tmux server of its own (its own socket), one
//! window of a fixed size, keys sent with `send-keys` and the screen read back
//! with `capture-pane`, as a person would see it. Waiting is event-driven: a
//! control-mode client (`tmux -C`) reports every `%output` of the pane, and the
//! screen is checked again after each, so nothing sleeps; a generous deadline
//! only turns a hang into a failure that shows the last screen.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a screen may take to show what is awaited before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

pub struct Tmux {
    socket: String,
    control: Child,
    changes: mpsc::Receiver<()>,
}

impl Tmux {
    /// Starts `command` (run by `sh -c`) in a `width` x `height` window. When it
    /// exits, `[exited STATUS]` is printed and the pane stays, so its end can be
    /// observed.
    pub fn start(command: &str, width: u16, height: u16) -> Self {
        let socket = format!("darkroom-test-{}-{}", std::process::id(), ulid::Ulid::new());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "main",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(["-e", "TERM=xterm-256color"])
            // The line after the program is output, which the control client reports.
            .arg(format!("{command}; echo \"[exited $?]\""))
            .args([";", "set-option", "-t", "main", "remain-on-exit", "on"])
            .status()
            .expect("tmux is needed for the terminal tests (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        let mut control = Command::new("tmux")
            .args(["-L", &socket, "-C", "attach-session", "-t", "main"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, changes) = mpsc::channel();
        let stdout = control.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // Any notification: %output, %window-renamed (the exit hook), ...
                if line.starts_with('%') && tx.send(()).is_err() {
                    return;
                }
            }
        });
        Self {
            socket,
            control,
            changes,
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "main"])
    }

    /// The screen with its colours and attributes as escape sequences
    /// (`capture-pane -e`): what a picture drawn in half blocks looks like.
    pub fn screen_with_colours(&self) -> String {
        self.tmux(&["capture-pane", "-e", "-p", "-t", "main"])
    }

    /// Sends keys by tmux name (`n`, `Enter`, `Down`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "main", "-l", text]);
    }

    /// Waits until the screen satisfies `ok`; returns that screen.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                if std::env::var_os("TMUX_TEST_TRACE").is_some() {
                    eprintln!("{:?} {what}", std::time::SystemTime::now());
                }
                return screen;
            }
            // Drain what piled up, then wait for the next change.
            while self.changes.try_recv().is_ok() {}
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || matches!(
                    self.changes.recv_timeout(left),
                    Err(mpsc::RecvTimeoutError::Disconnected)
                )
            {
                let screen = self.screen();
                assert!(ok(&screen), "timed out waiting for {what}; the screen:\n{screen}");
                return screen;
            }
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }

    /// Waits for the program to exit; returns its exit status. (The line may have
    /// scrolled into the history, so that is read too.)
    /// Everything the pane printed, scrolled-off lines included.
    pub fn scrollback(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-S", "-", "-t", "main"])
    }

    pub fn wait_exit(&self) -> i32 {
        let all = || self.scrollback();
        self.wait_for("the program to exit", |_| all().contains("[exited "));
        let text = all();
        let at = text.rfind("[exited ").unwrap_or(0) + "[exited ".len();
        text[at..]
            .split(']')
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or(-1)
    }

    /// The pid of the pane's shell (the program is its child).
    #[allow(dead_code)] // benches/dash.rs
    pub fn pane_pid(&self) -> u32 {
        self.tmux(&["display-message", "-p", "-t", "main", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("no pane pid")
    }

    /// Appends everything the program writes to the terminal from now on to `file`.
    #[allow(dead_code)] // benches/dash.rs
    pub fn pipe_to(&self, file: &std::path::Path) {
        self.tmux(&[
            "pipe-pane",
            "-o",
            "-t",
            "main",
            &format!("cat >> {}", file.display()),
        ]);
    }

    /// Whether the terminal is on its alternate screen (a full-screen program).
    pub fn alternate_screen(&self) -> bool {
        self.tmux(&["display-message", "-p", "-t", "main", "#{alternate_on}"])
            .trim()
            == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
        let _ = self.control.kill();
        let _ = self.control.wait();
    }
}
