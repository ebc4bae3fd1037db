//! A `darkroom serve` child process, ready once it has printed where its HTTP API
//! listens (readiness without sleeping), killed when dropped. Shared by the
//! terminal tests and the dashboard bench.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub api: String,
}

impl Serve {
    /// Spawns `command` (a `darkroom serve ...`) and waits for its API line.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // Read on a thread of its own, which keeps reading so later output never
        // meets a closed pipe; the wait for the ready line is bounded.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let api = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .expect("darkroom serve exited or printed no API line within two minutes");
            if let Some(url) = line.strip_prefix("darkroom: HTTP API on ") {
                break url.to_owned();
            }
        };
        Self { child, api }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
