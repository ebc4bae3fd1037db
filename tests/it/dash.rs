//! The dashboard in a real terminal (tmux, 80x24), as an operator on SSH uses it:
//! `darkroom` with a fake ComfyUI and a fake NVML — submit a noop job with `n`
//! and watch it succeed, cancel a held one with `c`, see the GPUs, quit with `q`
//! (which stops the daemon) — and `darkroom dash --url` against a separately
//! started `darkroom serve`, which is killed and started again underneath it, and
//! one whose queue's Redis is.
//! Screens are read back with `capture-pane`; the ones worth showing are written
//! to `target/dash-screens/`.

use std::path::Path;
use std::process::Command;

use crate::fake_comfy::FakeComfy;
use crate::gpu::{FakeNvml, TWO_GPUS};
use crate::redis_server::RedisServer;
use crate::serve::Serve;
use crate::support::{ACCESS_KEY, SECRET_KEY};
use crate::tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_darkroom");

/// Keeps a screen for the record (the closing notes quote them).
fn keep(name: &str, screen: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dash-screens");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), screen);
}

/// The environment every darkroom here runs with.
fn env_prefix(data: &Path) -> String {
    format!(
        "DARKROOM_S3__ACCESS_KEY={ACCESS_KEY} DARKROOM_S3__SECRET_KEY={SECRET_KEY} DARKROOM_COMFYUI__HEALTH_INTERVAL_MS=50 DARKROOM_COMFYUI__POLL_INTERVAL_MS=50 DARKROOM_DATA_DIR={}",
        data.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dashboard_submits_watches_cancels_and_stops_the_daemon() {
    let comfy = FakeComfy::start().await;
    let nvml = FakeNvml::build(TWO_GPUS);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let command = format!(
        "cd {} && env {} {BIN} --s3-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 --comfyui {} --nvml-lib {}",
        dir.path().display(),
        env_prefix(&data),
        comfy.url,
        nvml.lib_str(),
    );
    let ctl = comfy.ctl.clone();
    tokio::task::block_in_place(move || {
        let t = Tmux::start(&command, 80, 24);
        let s = t.wait_text("● connected");
        assert!(s.contains("│ local │"), "{s}");
        // Both fake GPUs, one line each.
        t.wait_for("both GPUs", |s| {
            s.contains("GPU0 RTX 4090") && s.contains("GPU1 A100-SXM4-80GB")
        });

        // n opens the form; Enter submits the noop template with its defaults.
        t.keys(&["n"]);
        t.wait_text("submit a job");
        // The first template is img2img (it needs a picture): Right picks noop.
        t.keys(&["Right"]);
        t.keys(&["Enter"]);
        t.wait_text("submitted");
        t.keys(&["2"]);
        let s = t.wait_text("succeeded");
        assert!(s.contains("noop"), "{s}");
        keep("local-jobs-succeeded", &s);

        // A second job (another colour, so not a cache hit) waits at the gate.
        ctl.hold(true);
        t.keys(&["n"]);
        t.wait_text("submit a job");
        t.keys(&["Right"]);
        t.keys(&["Down"]);
        t.type_text("255");
        t.wait_text("255▏");
        t.keys(&["Enter"]);
        let s = t.wait_text("running");
        // Running work sorts first, so it is the selected row.
        assert!(s.contains("▶"), "{s}");
        t.keys(&["c"]);
        t.wait_text("Cancel job");
        t.keys(&["y"]);
        let s = t.wait_for("the job cancelled", |s| {
            s.contains("cancelled") && !s.contains("running ")
        });
        keep("local-jobs-cancelled", &s);

        // The details of the succeeded job list its output with a URL (scrolled
        // down to its end: the picture of the output takes the right of the
        // screen), and show the output, read from the store in-process.
        t.keys(&["G"]);
        t.keys(&["Enter"]);
        let s = t.wait_text("outputs");
        assert!(s.contains("comfyui-outputs/jobs/"), "{s}");
        let s = t.wait_text("768x768 · 3.9 KiB");
        keep("local-job-picture", &s);
        t.keys(&["j", "j", "j", "j", "j", "j"]);
        t.wait_text("Signature=");
        t.keys(&["h"]);

        // The GPU panel and the log panel (the log is not written over the screen).
        t.keys(&["3"]);
        let s = t.wait_text("GPUs (nvml, driver 550.54.14)");
        assert!(s.contains("temp 65°C"), "{s}");
        keep("local-gpus", &s);
        t.keys(&["6"]);
        t.wait_text("HTTP API listening");
        t.keys(&["1"]);
        // The counts follow the jobs (the snapshot is refetched after changes).
        let s = t.wait_for("the counts", |s| {
            s.contains("Recent jobs") && s.contains("succeeded 1") && s.contains("cancelled 1")
        });
        keep("local-overview", &s);

        // The users panel: the operator (the bootstrap admin) and their day's jobs.
        t.keys(&["9"]);
        let s = t.wait_for("the usage report", |s| {
            s.contains("Users (1)") && s.contains("admin's days") && s.contains("total")
        });
        keep("local-users", &s);

        // q asks, y stops the daemon; the terminal is restored.
        t.keys(&["q"]);
        t.wait_text("Quit and stop the daemon?");
        t.keys(&["y"]);
        assert_eq!(t.wait_exit(), 0);
        assert!(!t.alternate_screen());
    });
    let log = std::fs::read_to_string(data.join("darkroom.log")).unwrap();
    assert!(log.contains("darkroom stopped"), "{log}");
}

/// A newcomer's first `darkroom`: no credentials configured, no ComfyUI yet. The
/// overview says where the S3 and HTTP APIs listen, the access key and where the
/// secret is, and how to add a ComfyUI; the generated pair is printed once the
/// dashboard has given the terminal back — not underneath it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_says_where_everything_is() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "cd {} && env -u DARKROOM_S3__ACCESS_KEY -u DARKROOM_S3__SECRET_KEY -u MINIO_ROOT_USER \
         -u MINIO_ROOT_PASSWORD DARKROOM_DATA_DIR=data {BIN} --s3-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 \
         --nvml-lib /nonexistent/libnvidia-ml.so.1",
        dir.path().display(),
    );
    tokio::task::block_in_place(move || {
        let t = Tmux::start(&command, 100, 30);
        let s = t.wait_for("the endpoints", |s| {
            s.contains("● connected") && s.contains("secret key in data/credentials.toml")
        });
        keep("local-first-start", &s);
        assert!(s.contains("S3   http://127.0.0.1:"), "{s}");
        assert!(s.contains("API  http://127.0.0.1:"), "{s}");
        assert!(
            s.contains("no ComfyUI backend configured (comfyui.backends or --comfyui URL)"),
            "{s}"
        );
        let shown = s
            .split("access key ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no access key on the overview:\n{s}"))
            .to_owned();
        // The secret never appears on the dashboard.
        let file = std::fs::read_to_string(dir.path().join("data/credentials.toml")).unwrap();
        let stored: toml::Table = toml::from_str(&file).unwrap();
        let secret = stored["secret_key"].as_str().unwrap();
        assert_eq!(stored["access_key"].as_str(), Some(shown.as_str()));
        assert!(!s.contains(secret), "{s}");

        t.keys(&["q"]);
        t.wait_text("Quit and stop the daemon?");
        t.keys(&["y"]);
        assert_eq!(t.wait_exit(), 0);
        // Back on the normal screen: the pair, shown once, after the dashboard.
        let after = t.scrollback();
        assert_eq!(after.matches("generated S3 credentials").count(), 1, "{after}");
        assert!(after.contains(&format!("access key: {shown}")), "{after}");
        assert!(after.contains(&format!("secret key: {secret}")), "{after}");
    });
}

/// A `darkroom serve` whose API listens on `port` (0: any).
fn serve(data: &Path, comfy: &str, port: u16) -> Serve {
    Serve::spawn(serve_command(data, comfy, port))
}

fn serve_command(data: &Path, comfy: &str, port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--s3-addr", "127.0.0.1:0", "--api-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--comfyui",
            comfy,
            "--nvml-lib",
            "/nonexistent/libnvidia-ml.so.1",
            "--data",
        ])
        .arg(data)
        .env("DARKROOM_S3__ACCESS_KEY", ACCESS_KEY)
        .env("DARKROOM_S3__SECRET_KEY", SECRET_KEY)
        .env("DARKROOM_COMFYUI__HEALTH_INTERVAL_MS", "50")
        .env("DARKROOM_LOG__LEVEL", "warn")
        .current_dir(data.parent().unwrap());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_dashboard_follows_a_daemon_through_a_restart() {
    let comfy = FakeComfy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = comfy.url.clone();
    tokio::task::block_in_place(move || {
        let first = serve(&data, &url, 0);
        let port: u16 = first.api.rsplit(':').next().unwrap().parse().unwrap();
        let t = Tmux::start(&format!("{BIN} dash --url {}", first.api), 80, 24);
        let s = t.wait_text("● connected");
        assert!(s.contains(&first.api), "{s}");
        // No NVML on the remote daemon: one line says why, the rest works.
        t.wait_text("No GPU: NVML");
        t.keys(&["n"]);
        t.wait_text("submit a job");
        // The first template is img2img (it needs a picture): Right picks noop.
        t.keys(&["Right"]);
        t.keys(&["Enter"]);
        t.wait_text("submitted");
        t.keys(&["2"]);
        t.wait_text("succeeded");

        // The daemon dies (SIGKILL); the dashboard says so and keeps retrying.
        drop(first);
        let s = t.wait_text("disconnected, retrying");
        keep("remote-disconnected", &s);

        // Started again on the same port and data: the dashboard reconnects by
        // itself and shows the job that survived the kill.
        let _second = serve(&data, &url, port);
        // The job is listed, then read in full (its template named).
        let s = t.wait_for("the reconnect", |s| {
            s.contains("● connected") && s.contains("noop     succeeded")
        });
        keep("remote-reconnected", &s);
        t.keys(&["n"]);
        t.wait_text("submit a job");
        t.keys(&["Right"]);
        t.keys(&["Down"]);
        t.type_text("7");
        t.keys(&["Enter"]);
        t.wait_for("two succeeded jobs", |s| s.matches("succeeded").count() >= 2);

        // Remote mode quits at once and leaves the daemon running.
        t.keys(&["q"]);
        assert_eq!(t.wait_exit(), 0);
        assert!(!t.alternate_screen());
    });
}

/// The queue's Redis stops answering under a remote dashboard: it stays connected
/// and says the queue is unavailable, with the backends and the log still shown;
/// a dashboard started during the outage connects too. When Redis is back (same
/// data), the counts and the jobs come back by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_dashboard_rides_out_a_redis_outage() {
    let comfy = FakeComfy::start().await;
    let redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = comfy.url.clone();
    tokio::task::block_in_place(move || {
        let mut command = serve_command(&data, &url, 0);
        command
            .env("DARKROOM_QUEUE__BACKEND", "redis")
            .env("DARKROOM_CACHE__BACKEND", "redis")
            .env("DARKROOM_REDIS__URL", redis.url());
        let node = Serve::spawn(command);
        let dash = format!("{BIN} dash --url {}", node.api);
        let t = Tmux::start(&dash, 80, 24);
        t.wait_text("● connected");
        t.keys(&["n"]);
        t.wait_text("submit a job");
        // The first template is img2img (it needs a picture): Right picks noop.
        t.keys(&["Right"]);
        t.keys(&["Enter"]);
        t.wait_text("submitted");
        t.wait_text("succeeded 1");

        redis.kill();
        let s = t.wait_text("queue unavailable");
        // Connected, and the backends are still shown.
        let backend = url.trim_start_matches("http://");
        assert!(
            s.contains("● connected") && s.contains(&format!("up   {backend}")),
            "{s}"
        );
        keep("remote-redis-down", &s);
        t.keys(&["q"]);
        assert_eq!(t.wait_exit(), 0);

        // Attached while Redis is down: no jobs to list, but connected.
        let t = Tmux::start(&dash, 80, 24);
        let s = t.wait_text("queue unavailable");
        assert!(s.contains("● connected"), "{s}");

        redis.restart();
        t.wait_for("the counts again", |s| {
            s.contains("succeeded 1") && !s.contains("queue unavailable")
        });
        t.keys(&["2"]);
        t.wait_text("noop     succeeded");
        t.keys(&["q"]);
        assert_eq!(t.wait_exit(), 0);
    });
}

/// A 64x64 picture in four colours: red and green over blue and white.
fn quadrants() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| match (x < 32, y < 32) {
        (true, true) => image::Rgb([255, 0, 0]),
        (false, true) => image::Rgb([0, 255, 0]),
        (true, false) => image::Rgb([0, 0, 255]),
        (false, false) => image::Rgb([255, 255, 255]),
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Where the picture's colours are on a `capture-pane -e` screen: for each of
/// red, green, blue and white (24-bit, foreground or background), the first
/// line and the position in it where it is used.
fn colour_places(screen: &str) -> [Option<(usize, usize)>; 4] {
    ["255;0;0m", "0;255;0m", "0;0;255m", "255;255;255m"].map(|rgb| {
        screen.lines().enumerate().find_map(|(y, line)| {
            let x = [format!("48;2;{rgb}"), format!("38;2;{rgb}")]
                .iter()
                .filter_map(|code| line.find(code.as_str()))
                .min()?;
            Some((y, x))
        })
    })
}

/// The quadrants are on screen in their places: red left of green, both above
/// blue left of white.
fn shows_quadrants(screen: &str) -> bool {
    let [Some(r), Some(g), Some(b), Some(w)] = colour_places(screen) else {
        return false;
    };
    r.0 == g.0 && r.1 < g.1 && b.0 == w.0 && b.1 < w.1 && r.0 < b.0
}

/// Over `darkroom dash --url` in tmux (no passthrough: `auto` picks half blocks),
/// with `NO_COLOR` set (the interface loses its colours, pictures keep theirs):
/// a finished job's output is drawn in the details in 24-bit colour cells, and
/// in the gallery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_jobs_picture_shows_in_colour_cells() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.set_image(quadrants());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = comfy.url.clone();
    tokio::task::block_in_place(move || {
        let node = serve(&data, &url, 0);
        let t = Tmux::start(&format!("NO_COLOR=1 {BIN} dash --url {}", node.api), 80, 24);
        t.wait_text("● connected");
        t.keys(&["n"]);
        t.wait_text("submit a job");
        // The first template is img2img (it needs a picture): Right picks noop.
        t.keys(&["Right"]);
        t.keys(&["Enter"]);
        t.keys(&["2"]);
        t.wait_text("noop     succeeded");
        t.keys(&["Enter"]);
        let s = t.wait_text("output 1/1");
        assert!(s.contains("status  succeeded"), "{s}");
        let colours = t.wait_for("the output in colour", |_| {
            shows_quadrants(&t.screen_with_colours())
        });
        let s = t.screen();
        assert!(s.contains("64x64 · "), "{s}");
        keep("remote-job-picture", &s);
        keep("remote-job-picture-colours", &t.screen_with_colours());
        // The picture is right of the facts.
        let [Some((_, x)), ..] = colour_places(&t.screen_with_colours()) else {
            panic!("no red:\n{colours}")
        };
        assert!(x > 40, "red starts at byte {x}");

        t.keys(&["7"]);
        t.wait_text("Gallery (1 picture)");
        t.wait_for("the gallery tile in colour", |_| {
            shows_quadrants(&t.screen_with_colours())
        });
        keep("remote-gallery", &t.screen());
        t.keys(&["q"]);
        assert_eq!(t.wait_exit(), 0);
    });
}

#[test]
fn without_a_terminal_darkroom_runs_headless() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["--s3-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("DARKROOM_S3__ACCESS_KEY", ACCESS_KEY)
        .env("DARKROOM_S3__SECRET_KEY", SECRET_KEY)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // It serves (its API line arrives on stdout) and says why there is no dashboard.
    let mut serve = Serve::spawn(command);
    let mut stderr = std::io::BufReader::new(serve.child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(
        first.contains("no terminal for the dashboard; running headless"),
        "{first}"
    );
    assert!(serve.api.starts_with("http://127.0.0.1:"), "{}", serve.api);
}
