//! Configuration: the embedded example, precedence of the layers, and errors that
//! name the key and where it came from.

use std::path::Path;

use darkroom::config::{Config, ConfigError, LogFormat, Overrides};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn example_config_is_the_defaults() {
    let parsed: Config = toml::from_str(darkroom::config::EXAMPLE).unwrap();
    assert_eq!(parsed, Config::default());
    parsed.validate().unwrap();
    // The repository's config.toml is the embedded one.
    let on_disk = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")).unwrap();
    assert_eq!(on_disk, darkroom::config::EXAMPLE);
}

/// The commented catalog and routing rules in config.toml (the seed's) are a
/// valid configuration once uncommented.
#[test]
fn example_model_catalog_is_valid() {
    let text = darkroom::config::EXAMPLE;
    let start = text.find("# [[models]]").unwrap();
    let end = text.find("\n[routing]").unwrap();
    let models: String = text[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let rules_start = text.find("# by_urgency").unwrap();
    let rules_end = rules_start + text[rules_start..].find("\n\n").unwrap();
    let rules: String = text[rules_start..rules_end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let config: Config = toml::from_str(&format!("{models}\n[routing]\n{rules}\n")).unwrap();
    assert_eq!(config.models.len(), 4);
    assert_eq!(config.routing.by_vram.len(), 3);
    config.validate().unwrap();
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("darkroom.toml");
    std::fs::write(
        &file,
        "data_dir = \"/from/file\"\n[s3]\naddr = \"127.0.0.1:9100\"\nregion = \"eu-west-1\"\naccess_key = \"filekey\"\nsecret_key = \"filesecret\"\n",
    )
    .unwrap();
    let vars = env(&[
        ("DARKROOM_S3__ADDR", "127.0.0.1:9200"),
        ("DARKROOM_S3__FSYNC", "false"),
        ("DARKROOM_S3__ACCESS_KEY", "12345678"),
        ("MINIO_ROOT_USER", "minio-user"),
        ("UNRELATED", "x"),
    ]);
    let overrides = Overrides {
        s3_addr: Some("127.0.0.1:9300".parse().unwrap()),
        log_format: Some(LogFormat::Json),
        ..Overrides::default()
    };
    let loaded = Config::load_from(Some(&file), vars, &overrides).unwrap();
    let c = loaded.config;
    assert_eq!(c.data_dir, Path::new("/from/file"));
    assert_eq!(c.s3.region, "eu-west-1");
    assert_eq!(c.s3.addr.port(), 9300, "flags beat env beats file");
    assert!(!c.s3.fsync);
    assert_eq!(
        c.s3.access_key, "12345678",
        "DARKROOM_ beats MINIO_, a number stays a string"
    );
    assert_eq!(c.s3.secret_key, "filesecret");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(loaded.file.as_deref(), Some(file.as_path()));
}

#[test]
fn minio_variables_set_the_credentials() {
    let vars = env(&[
        ("MINIO_ROOT_USER", "minioadmin"),
        ("MINIO_ROOT_PASSWORD", "minioadmin-secret"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let c = Config::load_from(Some(&file), vars, &Overrides::default())
        .unwrap()
        .config;
    assert_eq!(c.s3.access_key, "minioadmin");
    assert_eq!(c.s3.secret_key, "minioadmin-secret");
}

#[test]
fn unknown_keys_name_the_key_and_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[s3]\naddr = \"127.0.0.1:9000\"\nacess_key = \"typo\"\n").unwrap();
    let err = Config::load_from(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::File { .. }));
    assert!(msg.contains("bad.toml") && msg.contains("acess_key"), "{msg}");

    let err = Config::load_from(None, env(&[("DARKROOM_S3__NOPE", "1")]), &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("DARKROOM_S3__NOPE") && msg.contains("nope"), "{msg}");

    let err = Config::load_from(
        None,
        env(&[("DARKROOM_S3__ADDR", "not an address")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("DARKROOM_S3__ADDR"), "{err}");
}

#[test]
fn invalid_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[[s3.buckets]]\nname = \"Bad_Name\"\n").unwrap();
    let err = Config::load_from(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("Bad_Name"), "{err}");
    std::fs::write(&file, "[s3]\naccess_key = \"only-the-key\"\n").unwrap();
    let err = Config::load_from(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("s3.secret_key"), "{err}");
}

#[test]
fn config_check_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[s3]\nregion = \"ap-south-1\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(["config", "check"])
        .arg(&file)
        .env("DARKROOM_API__ADDR", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let effective: Config = toml::from_str(&text).unwrap();
    assert_eq!(effective.s3.region, "ap-south-1");
    assert_eq!(effective.api.addr.port(), 9999);

    std::fs::write(&file, "bogus = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bogus") && err.contains("c.toml"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut p = crate::support::spawn_serve(&dir.path().join("data"), |cmd| {
        cmd.args(["--log-format", "json"])
            .env("DARKROOM_LOG__LEVEL", "info")
            .stderr(std::process::Stdio::piped());
    });
    let st = std::process::Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(p.child.wait().unwrap().success());
    let mut err = String::new();
    p.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "S3 API listening"), "{err}");
    assert!(lines.iter().any(|l| l["message"] == "darkroom stopped"), "{err}");
}
