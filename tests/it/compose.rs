//! docker-compose.yml, validated without a Docker engine: Debian's docker-compose
//! renders it (`config`, every profile on) with `.env.example` as the `.env`, and
//! the environment it gives the darkroom service is checked by `darkroom config
//! check` itself — for both storage switches — so a key compose sets but darkroom
//! does not know fails here, not at `docker compose up`. The files it mounts must
//! exist in the repository.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The rendered file as JSON, with `.env.example` as `.env` and `extra` set.
fn render(extra: &[(&str, &str)]) -> Value {
    let project = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(ROOT).join(".env.example"), project.path().join(".env")).unwrap();
    let mut cmd = Command::new("docker-compose");
    cmd.arg("--project-directory")
        .arg(project.path())
        .arg("-f")
        .arg(Path::new(ROOT).join("docker-compose.yml"))
        .args([
            "--profile",
            "minio",
            "--profile",
            "monitoring",
            "--profile",
            "comfyui",
            "--profile",
            "redis",
            "config",
        ])
        .env_remove("COMPOSE_PROFILES");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("docker-compose is needed (apt-get install docker-compose; the test command installs it)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // docker-compose prints YAML; its own Python has the YAML parser.
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), &out.stdout).unwrap();
    let json = py.wait_with_output().unwrap();
    assert!(json.status.success());
    serde_json::from_slice(&json.stdout).unwrap()
}

/// `darkroom config check` with exactly the service's environment.
fn check_darkroom_env(env: &serde_json::Map<String, Value>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_darkroom"));
    cmd.args(["config", "check"]).current_dir(dir.path()).env_clear();
    for (k, v) in env {
        cmd.env(k, v.as_str().unwrap_or_default());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "darkroom refuses the compose environment: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_file_validates_and_darkroom_accepts_its_environment() {
    let embedded = render(&[]);
    let services = embedded["services"].as_object().unwrap();
    for name in [
        "darkroom",
        "minio",
        "minio-setup",
        "prometheus",
        "grafana",
        "comfyui",
        "redis",
    ] {
        assert!(services.contains_key(name), "no service {name}");
    }
    let darkroom = &services["darkroom"];
    assert_eq!(
        darkroom["healthcheck"]["test"][3],
        "http://127.0.0.1:9080/healthz"
    );
    assert!(
        darkroom.get("profiles").is_none(),
        "darkroom runs in every profile"
    );
    assert!(darkroom["volumes"][0].as_str().unwrap().ends_with(":/data:rw"));
    let minio = &services["minio"];
    assert!(
        minio["healthcheck"]["test"]
            .to_string()
            .contains("/minio/health/live")
    );
    assert_eq!(
        services["minio-setup"]["depends_on"]["minio"]["condition"],
        "service_healthy"
    );
    let gpu = &services["comfyui"]["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(gpu["driver"], "nvidia");
    let env = darkroom["environment"].as_object().unwrap();
    assert_eq!(env["DARKROOM_STORAGE__BACKEND"], "embedded");
    check_darkroom_env(env);

    // The MinIO switch: darkroom stores on the minio service.
    let s3 = render(&[("DARKROOM_STORAGE_BACKEND", "s3")]);
    let env = s3["services"]["darkroom"]["environment"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(env["DARKROOM_STORAGE__BACKEND"], "s3");
    assert_eq!(env["DARKROOM_STORAGE__S3__ENDPOINT"], "http://minio:9000");
    assert_eq!(
        env["DARKROOM_STORAGE__S3__ACCESS_KEY"],
        s3["services"]["minio"]["environment"]["MINIO_ROOT_USER"]
    );
    check_darkroom_env(&env);

    // The Redis switch: darkroom's queue and caches on the redis service, whose
    // command line is run here to show darkroom accepts that Redis (password,
    // noeviction) — and that it would refuse it without the password.
    let redis = render(&[
        ("DARKROOM_QUEUE_BACKEND", "redis"),
        ("DARKROOM_CACHE_BACKEND", "redis"),
    ]);
    let env = redis["services"]["darkroom"]["environment"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(env["DARKROOM_QUEUE__BACKEND"], "redis");
    assert_eq!(env["DARKROOM_CACHE__BACKEND"], "redis");
    check_darkroom_env(&env);
    let service = &redis["services"]["redis"];
    assert_eq!(service["healthcheck"]["test"][1], "redis-cli");
    let args: Vec<String> = service["command"].as_array().unwrap()[1..]
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(args.windows(2).any(|w| w == ["--appendonly", "yes"]), "{args:?}");
    let server = crate::redis_server::RedisServer::start_with(move |port| {
        let mut all = args.clone();
        all.extend(["--port".to_owned(), port.to_string()]);
        all
    });
    let url = env["DARKROOM_REDIS__URL"].as_str().unwrap();
    let local = url.replace("@redis:6379", &format!("@127.0.0.1:{}", server.port));
    let settings = darkroom::redis_store::RedisSettings {
        url: local.clone(),
        ..server.settings()
    };
    darkroom::redis_store::RedisStore::connect(&settings).unwrap();
    let (_, without_password) = local.split_once('@').unwrap();
    let refused = darkroom::redis_store::RedisSettings {
        url: format!("redis://{without_password}"),
        ..settings
    };
    assert!(darkroom::redis_store::RedisStore::connect(&refused).is_err());

    // Everything mounted from the repository is there.
    for service in ["prometheus", "grafana"] {
        for v in s3["services"][service]["volumes"].as_array().unwrap() {
            let source = v.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('/') {
                let rel = source
                    .rsplit_once("/assets/")
                    .map(|(_, r)| format!("assets/{r}"))
                    .unwrap();
                assert!(
                    Path::new(ROOT).join(&rel).exists(),
                    "{service} mounts {rel}, which is missing"
                );
            }
        }
    }
}

#[test]
fn the_dockerfile_builds_the_release_binary_and_runs_it_unprivileged() {
    let file = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    // The build the test command also runs (`cargo build --release --locked`).
    assert!(file.contains("cargo build --release --locked"), "{file}");
    assert!(file.contains("USER darkroom"), "non-root");
    assert!(file.contains("VOLUME [\"/data\"]"));
    assert!(file.contains("/healthz"));
    assert!(file.contains("ENTRYPOINT [\"darkroom\", \"serve\""));
}
