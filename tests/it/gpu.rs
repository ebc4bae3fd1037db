//! GPU telemetry against a fake libnvidia-ml.so built from C by the test
//! (tests/fake_nvml/fake_nvml.c), each test with its own copy and its own script
//! file beside it: readings of two GPUs, fan NotSupported, init failures and a
//! missing library reported once, a GPU lost mid-run, values changing between
//! samples reaching metrics and history, the ComfyUI `/system_stats` fallback, and
//! `darkroom gpu --json`.

use std::path::{Path, PathBuf};

use darkroom::gpu::{GpuMonitor, GpuSource, NvmlSource};
use serde_json::Value;

use crate::dispatch::daemon;
use crate::fake_comfy::FakeComfy;

pub const TWO_GPUS: &str = "\
driver=550.54.14
count=2
gpu0.name=NVIDIA GeForce RTX 4090
gpu0.uuid=GPU-00000000-1111-2222-3333-444444444444
gpu0.mem_total=25757220864
gpu0.mem_used=8589934592
gpu0.mem_reserved=536870912
gpu0.util_gpu=87
gpu0.util_mem=40
gpu0.temp=65
gpu0.power_mw=350000
gpu0.power_limit_mw=450000
gpu0.fan=55
gpu0.clock_sm=2520
gpu0.clock_mem=10501
gpu0.procs=1234:2147483648
gpu1.name=NVIDIA A100-SXM4-80GB
gpu1.uuid=GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee
gpu1.mem_total=85899345920
gpu1.mem_used=0
gpu1.mem_reserved=0
gpu1.util_gpu=0
gpu1.util_mem=0
gpu1.temp=31
gpu1.power_mw=60000
gpu1.power_limit_mw=400000
gpu1.fan=notsupported
gpu1.clock_sm=1410
gpu1.clock_mem=1593
";

/// A fake NVML in its own directory (the .so reads `fake_nvml.conf` beside it).
pub struct FakeNvml {
    dir: tempfile::TempDir,
}

impl FakeNvml {
    pub fn build(conf: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_nvml/fake_nvml.c");
        let out = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(dir.path().join("libnvidia-ml.so.1"))
            .arg(&src)
            .arg("-ldl")
            .output()
            .expect("a C compiler (cc) is needed to build the fake NVML");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let fake = Self { dir };
        fake.script(conf);
        fake
    }

    fn lib(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so.1")
    }

    pub fn lib_str(&self) -> String {
        self.lib().to_str().unwrap().to_owned()
    }

    /// Replaces the script; the library reads it again on its next call.
    fn script(&self, conf: &str) {
        let tmp = self.dir.path().join("fake_nvml.conf.tmp");
        std::fs::write(&tmp, conf).unwrap();
        std::fs::rename(tmp, self.dir.path().join("fake_nvml.conf")).unwrap();
    }
}

#[test]
fn nvml_readings_of_two_gpus() {
    let fake = FakeNvml::build(TWO_GPUS);
    let mut nvml = NvmlSource::open(&fake.lib_str()).unwrap();
    assert_eq!(nvml.driver_version().as_deref(), Some("550.54.14"));
    let d = nvml.sample().unwrap();
    assert_eq!(d.len(), 2);
    let g = &d[0];
    assert!(g.up);
    assert_eq!(g.name, "NVIDIA GeForce RTX 4090");
    assert_eq!(
        g.uuid.as_deref(),
        Some("GPU-00000000-1111-2222-3333-444444444444")
    );
    assert_eq!(g.utilization_ratio, Some(0.87));
    assert_eq!(g.memory_controller_utilization_ratio, Some(0.40));
    assert_eq!(g.memory_total_bytes, Some(25_757_220_864));
    assert_eq!(g.memory_used_bytes, Some(8_589_934_592));
    assert_eq!(g.memory_reserved_bytes, Some(536_870_912));
    assert_eq!(
        g.memory_free_bytes,
        Some(25_757_220_864 - 8_589_934_592 - 536_870_912)
    );
    assert_eq!(g.temperature_celsius, Some(65));
    assert_eq!((g.power_watts, g.power_limit_watts), (Some(350.0), Some(450.0)));
    assert_eq!(g.fan_ratio, Some(0.55));
    assert_eq!(
        (g.sm_clock_hz, g.memory_clock_hz),
        (Some(2_520_000_000), Some(10_501_000_000))
    );
    assert_eq!(g.processes.len(), 1);
    assert_eq!(
        (g.processes[0].pid, g.processes[0].used_memory_bytes),
        (1234, Some(2 << 30))
    );
    // A datacenter card has no fan: n/a, not an error.
    assert!(d[1].up);
    assert_eq!(d[1].fan_ratio, None);
    assert_eq!(d[1].temperature_celsius, Some(31));
    assert!(d[1].processes.is_empty());
}

#[tokio::test]
async fn a_gpu_process_that_is_a_local_backend_is_attributed_to_it() {
    // The fake ComfyUI listens inside this test process: make this process the
    // GPU's compute process, and it must be recognised as that backend.
    let comfy = FakeComfy::start().await;
    let me = std::process::id();
    let fake = FakeNvml::build(&TWO_GPUS.replace(
        "gpu0.procs=1234:2147483648",
        &format!("gpu0.procs={me}:1073741824"),
    ));
    let nvml = NvmlSource::open(&fake.lib_str()).unwrap();
    let mut nvml = nvml.with_backends(vec![comfy.url.clone(), "http://gpu2.example:8188".into()]);
    let d = nvml.sample().unwrap();
    let p = &d[0].processes[0];
    assert_eq!(p.pid, me);
    assert_eq!(p.backend.as_deref(), Some(comfy.url.as_str()));
    assert!(p.name.is_some(), "the process name comes from /proc");
}

#[test]
fn a_gpu_lost_mid_run_is_marked_down_and_the_other_keeps_reporting() {
    let fake = FakeNvml::build(TWO_GPUS);
    let mut nvml = NvmlSource::open(&fake.lib_str()).unwrap();
    assert!(nvml.sample().unwrap().iter().all(|d| d.up));
    fake.script(&format!("{TWO_GPUS}gpu1.lost=1\n"));
    let d = nvml.sample().unwrap();
    assert!(d[0].up);
    assert_eq!(d[0].utilization_ratio, Some(0.87));
    assert!(!d[1].up);
    assert!(
        d[1].error.as_deref().unwrap().to_lowercase().contains("lost"),
        "{:?}",
        d[1].error
    );
}

#[test]
fn init_failures_are_one_clear_reason() {
    let fake = FakeNvml::build("init_error=9\n");
    let Err(e) = NvmlSource::open(&fake.lib_str()) else {
        panic!("init must fail")
    };
    assert!(e.to_string().contains("DriverNotLoaded"), "{e}");
    let Err(e) = NvmlSource::open("/nonexistent/libnvidia-ml.so.1") else {
        panic!("no such library")
    };
    let text = e.to_string();
    assert!(
        text.contains("not found") && text.contains("NVIDIA driver installed"),
        "{text}"
    );
}

#[tokio::test]
async fn the_daemon_samples_into_status_metrics_and_history() {
    // This process (where the fake ComfyUI listens) runs on GPU 0.
    let procs = format!("gpu0.procs={}:1073741824", std::process::id());
    let conf = TWO_GPUS.replace("gpu0.procs=1234:2147483648", &procs);
    let fake = FakeNvml::build(&conf);
    let comfy = FakeComfy::start().await;
    let lib = fake.lib_str();
    let server = daemon(&[&comfy], |c| {
        c.gpu.nvml_lib = lib;
        c.gpu.sample_interval_ms = 10;
    })
    .await;
    let gpu = server.daemon.gpu().clone();
    wait_for(&gpu, |m| m.report().devices.len() == 2).await;
    assert_eq!(gpu.report().source, "nvml");

    fake.script(&conf.replace("gpu0.util_gpu=87", "gpu0.util_gpu=20"));
    wait_for(&gpu, |m| m.report().devices[0].utilization_ratio == Some(0.2)).await;
    let history: Vec<Option<f64>> = gpu.history(0).iter().map(|p| p.utilization_ratio).collect();
    assert!(
        history.contains(&Some(0.87)) && history.last() == Some(&Some(0.2)),
        "{history:?}"
    );

    let api = format!("http://{}", server.daemon.api_addr());
    let metrics = reqwest::get(format!("{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "darkroom_gpu_utilization_ratio{gpu=\"0\"} 0.2",
        "darkroom_gpu_up{gpu=\"1\"} 1",
        "darkroom_gpu_memory_total_bytes{gpu=\"1\"} 85899345920",
        "darkroom_gpu_temperature_celsius{gpu=\"0\"} 65",
        "darkroom_gpu_power_limit_watts{gpu=\"0\"} 450",
        "darkroom_gpu_fan_speed_ratio{gpu=\"0\"} 0.55",
        "darkroom_gpu_clock_hz{gpu=\"0\",clock=\"sm\"} 2520000000",
        // The seed's VRAM series come from the GPU the backend's process is on.
        &format!("comfyui_vram_usage_bytes{{backend=\"{}\"}} 8589934592", comfy.url),
        &format!(
            "comfyui_vram_total_bytes{{backend=\"{}\"}} 25757220864",
            comfy.url
        ),
    ] {
        assert!(metrics.contains(series), "{series} missing from:\n{metrics}");
    }
    assert!(
        !metrics.contains("darkroom_gpu_fan_speed_ratio{gpu=\"1\"}"),
        "no fan series for a fanless card"
    );
    assert!(metrics.contains("darkroom_gpu_info{gpu=\"0\",uuid=\"GPU-00000000-1111-2222-3333-444444444444\",name=\"NVIDIA GeForce RTX 4090\",driver_version=\"550.54.14\"} 1"));
    // Samples reach the event stream too.
    let backlog = server.daemon.events().subscribe(Some(0)).backlog;
    assert!(
        backlog
            .iter()
            .any(|e| matches!(e.kind, darkroom::events::EventKind::Gpu(_)))
    );
    let status: Value = reqwest::get(format!("{api}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["gpus"]["source"], "nvml");
    assert_eq!(status["gpus"]["devices"][1]["name"], "NVIDIA A100-SXM4-80GB");
}

#[tokio::test]
async fn without_nvml_the_daemon_falls_back_to_comfyuis_system_stats() {
    let comfy = FakeComfy::start().await;
    comfy.ctl.set_gpu(24 << 30, 16 << 30);
    let server = daemon(&[&comfy], |c| {
        c.gpu.nvml_lib = "/nonexistent/libnvidia-ml.so.1".into();
        c.gpu.sample_interval_ms = 10;
    })
    .await;
    let gpu = server.daemon.gpu().clone();
    wait_for(&gpu, |m| !m.report().devices.is_empty()).await;
    let r = gpu.report();
    assert_eq!(r.source, "comfyui");
    assert!(r.unavailable.as_deref().unwrap().contains("not found"), "{r:?}");
    assert_eq!(r.devices[0].memory_total_bytes, Some(24 << 30));
    assert_eq!(r.devices[0].memory_used_bytes, Some(8 << 30));
}

async fn wait_for(gpu: &GpuMonitor, done: impl Fn(&GpuMonitor) -> bool) {
    let mut samples = gpu.subscribe();
    let wait = async {
        while !done(gpu) {
            samples.changed().await.unwrap();
        }
    };
    crate::support::bounded("a GPU sample", wait).await;
}

#[tokio::test]
async fn darkroom_gpu_prints_the_readings_or_why_there_are_none() {
    let fake = FakeNvml::build(TWO_GPUS);
    let lib = fake.lib_str();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
                .args(&args)
                .current_dir(std::env::temp_dir())
                .output()
                .unwrap()
        })
    };
    let out = run(vec![
        "gpu".into(),
        "--json".into(),
        "--once".into(),
        "--nvml-lib".into(),
        lib.clone(),
    ])
    .await
    .unwrap();
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["source"], "nvml");
    assert_eq!(r["driver_version"], "550.54.14");
    assert_eq!(r["devices"][0]["utilization_ratio"], 0.87);
    assert_eq!(r["devices"].as_array().unwrap().len(), 2);

    let text = run(vec!["gpu".into(), "--once".into(), "--nvml-lib".into(), lib])
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("NVIDIA GeForce RTX 4090") && text.contains("fan n/a"),
        "{text}"
    );

    let none = run(vec![
        "gpu".into(),
        "--json".into(),
        "--once".into(),
        "--nvml-lib".into(),
        "/nonexistent/libnvidia-ml.so.1".into(),
    ])
    .await
    .unwrap();
    assert!(none.status.success(), "no GPU is not an error");
    let r: Value = serde_json::from_slice(&none.stdout).unwrap();
    assert_eq!(r["source"], "none");
    assert!(
        r["unavailable"]
            .as_str()
            .unwrap()
            .contains("NVIDIA driver installed")
    );
}
