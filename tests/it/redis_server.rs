//! A real `redis-server` (the Debian package) for the Redis backend tests, on a
//! loopback port, started once per test binary and shared: each test takes its own
//! key prefix, so tests never see each other's keys.
//!
//! It runs under `setpriv --pdeathsig KILL`, so it dies with the thread that started
//! it: the shared server is started from a thread that lives as long as the test
//! binary; a test's own server ([`RedisServer::start`]) dies with the test at the
//! latest.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;

use darkroom::redis_store::RedisSettings;
use darkroom::redis_store::RedisStore;

/// A running redis-server.
pub struct RedisServer {
    pub port: u16,
    /// Its working directory (AOF and RDB files), removed with it.
    dir: tempfile::TempDir,
    /// A test's own server; the shared one is owned by its thread.
    child: std::sync::Mutex<Option<Child>>,
    /// The arguments it was started with, for [`RedisServer::restart`].
    args: Vec<String>,
}

impl RedisServer {
    /// The server shared by this test binary.
    pub fn shared() -> &'static RedisServer {
        static SERVER: OnceLock<RedisServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let (mut child, port, rest) = spawn(dir.path(), None, &|port| {
                    vec!["--port".to_owned(), port.to_string()]
                });
                tx.send((port, dir)).unwrap();
                // Keep reading its log so the pipe never fills and blocks it.
                for _ in rest {}
                let _ = child.wait();
            });
            let (port, dir) = rx.recv().expect("redis-server did not start");
            RedisServer {
                port,
                dir,
                child: std::sync::Mutex::new(None),
                args: Vec::new(),
            }
        })
    }

    /// A server of its own, with extra `redis-server` arguments (`--maxmemory-policy
    /// allkeys-lru`...). It stops when dropped, on [`RedisServer::kill`], or when
    /// the test's thread ends.
    pub fn start(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Self::start_with(move |port| {
            let mut args = vec!["--port".to_owned(), port.to_string()];
            args.extend(extra.iter().cloned());
            args
        })
    }

    /// A server of its own whose arguments are made for the free port found
    /// (`--port 0 --tls-port {port}` for a TLS-only server).
    pub fn start_with(args: impl Fn(u16) -> Vec<String>) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let (child, port, rest) = spawn(dir.path(), None, &args);
        std::thread::spawn(move || for _ in rest {});
        RedisServer {
            port,
            dir,
            child: std::sync::Mutex::new(Some(child)),
            args: args(port),
        }
    }

    /// Starts a test's own server again after [`RedisServer::kill`], on the same
    /// port, arguments and directory (with `--appendonly yes`, the same data).
    pub fn restart(&self) {
        assert!(!self.args.is_empty(), "only a test's own server can be restarted");
        self.kill();
        let args = self.args.clone();
        let (child, _, rest) = spawn(self.dir.path(), Some(self.port), &move |_| args.clone());
        std::thread::spawn(move || for _ in rest {});
        *self.child.lock().unwrap() = Some(child);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Settings for this server under a fresh key prefix.
    pub fn settings(&self) -> RedisSettings {
        RedisSettings {
            url: self.url(),
            key_prefix: format!("t{}", ulid::Ulid::new()),
            ..RedisSettings::default()
        }
    }

    /// A store on this server under a fresh key prefix.
    pub fn store(&self) -> RedisStore {
        RedisStore::connect(&self.settings()).unwrap()
    }

    /// SIGKILLs a test's own server.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts redis-server on `port` (`None`: a free one) and waits until it says it
/// is ready.
fn spawn(
    dir: &std::path::Path,
    port: Option<u16>,
    args: &dyn Fn(u16) -> Vec<String>,
) -> (Child, u16, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    for _ in 0..20 {
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "redis-server"])
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .args(args(port))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .expect("redis-server is not installed (./scripts/test.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        if ready {
            return (child, port, lines);
        }
        // The port was taken between the probe and the bind: try another.
        let _ = child.wait();
    }
    panic!("redis-server did not start on any free port");
}
