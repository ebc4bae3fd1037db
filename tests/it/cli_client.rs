//! The client subcommands — `darkroom submit`, `darkroom jobs`, `darkroom status`
//! — run as the real binary against a daemon with the fake ComfyUI behind it.

use crate::dispatch::daemon;
use crate::fake_comfy::{FakeComfy, PNG};

/// Runs the darkroom binary with `args` on a blocking thread (the daemon it talks
/// to runs on this test's runtime); returns (success, stdout, stderr).
async fn darkroom(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
            .args(&args)
            .env_remove("DARKROOM_URL")
            .env_remove("DARKROOM_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn submit_jobs_and_status_talk_to_the_api() {
    let comfy = FakeComfy::start().await;
    let server = daemon(&[&comfy], |c| c.api.token = "cli-token".into()).await;
    let url = format!("http://{}", server.daemon.api_addr());
    let remote = ["--url", url.as_str(), "--token", "cli-token"];

    let submit = [
        &["submit"][..],
        &remote,
        &["noop", "-p", "width=64", "-p", "height=64", "--wait", "30"],
    ]
    .concat();
    let (ok, out, err) = darkroom(&submit).await;
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let first = lines.next().unwrap();
    let (id, status) = first.split_once(' ').unwrap();
    assert_eq!(status, "succeeded", "{out}");
    let link = lines
        .find(|l| l.trim_start().starts_with("http://"))
        .unwrap()
        .trim();
    assert_eq!(reqwest::get(link).await.unwrap().bytes().await.unwrap(), PNG);

    let (ok, out, err) = darkroom(&[&["jobs", "list"][..], &remote].concat()).await;
    assert!(ok, "{err}");
    assert!(out.contains(id) && out.contains("succeeded"), "{out}");
    let (ok, out, _) = darkroom(&[&["jobs", "show", id][..], &remote].concat()).await;
    assert!(ok);
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["payload"]["params"]["width"], 64);
    let (ok, _, err) = darkroom(&[&["jobs", "cancel", id][..], &remote].concat()).await;
    assert!(!ok);
    assert!(err.contains("409") && err.contains("cannot cancel"), "{err}");

    let (ok, out, err) = darkroom(&[&["status"][..], &remote].concat()).await;
    assert!(ok, "{err}");
    assert!(out.contains("1 succeeded") && out.contains(&comfy.url), "{out}");
    let (ok, out, _) = darkroom(&[&["status", "--json"][..], &remote].concat()).await;
    assert!(ok);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["queue"]["counts"]["succeeded"], 1);

    // A bad parameter is refused naming it; a wrong token is refused.
    let bad = [&["submit"][..], &remote, &["noop", "-p", "width=0"]].concat();
    let (ok, _, err) = darkroom(&bad).await;
    assert!(!ok && err.contains("params.width"), "{err}");
    let (ok, _, err) = darkroom(&["status", "--url", url.as_str(), "--token", "nope"]).await;
    assert!(!ok && err.contains("401"), "{err}");
}
