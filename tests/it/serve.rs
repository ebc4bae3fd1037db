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
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let api = loop {
            let line = lines.next().expect("darkroom serve exited").unwrap();
            if let Some(url) = line.strip_prefix("darkroom: HTTP API on ") {
                break url.to_owned();
            }
        };
        // Keep reading, so its later output never meets a closed pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, api }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
