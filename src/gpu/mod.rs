//! GPU telemetry, read by darkroom itself: NVML through `nvml-wrapper` (what
//! nvidia_gpu_exporter and nvtop read), with ComfyUI's `/system_stats` as the
//! fallback when NVML cannot load, behind one [`GpuSource`] trait.
//!
//! A [`GpuMonitor`] samples its source on a dedicated thread (NVML calls block) at
//! `gpu.sample_interval_ms` and keeps the latest [`GpuReport`] plus a bounded
//! history per device for sparklines. A source that cannot start is reported once
//! as `unavailable` with the reason, and the monitor falls back instead of failing
//! or logging on every sample. A device that errors (a lost GPU) is marked down
//! while the others keep reporting.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Millis, SharedClock};
use crate::sync::lock;

mod attribution;
mod fallback;
mod nvml;

pub use fallback::ComfyStatsSource;
pub use nvml::NvmlSource;

/// Settings of `[gpu]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// Sample GPUs at all.
    pub enabled: bool,
    /// The NVML library to load: a soname searched the usual way, or a path.
    pub nvml_lib: String,
    /// Milliseconds between samples.
    pub sample_interval_ms: u64,
    /// Seconds of history kept per device.
    pub history_seconds: u64,
}

impl GpuConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let invalid = |key, message: &str| {
            Err(crate::config::ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.sample_interval_ms == 0 {
            return invalid("gpu.sample_interval_ms", "must be at least 1");
        }
        if self.enabled && self.nvml_lib.trim().is_empty() {
            return invalid(
                "gpu.nvml_lib",
                "must name the NVML library (libnvidia-ml.so.1 or a path), or set gpu.enabled = false",
            );
        }
        Ok(())
    }
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            nvml_lib: "libnvidia-ml.so.1".into(),
            sample_interval_ms: 1000,
            history_seconds: 600,
        }
    }
}

/// Where GPU readings come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadingSource {
    /// The NVIDIA driver's library, on this machine.
    Nvml,
    /// The ComfyUI backends' `/system_stats` (VRAM only).
    Comfyui,
    /// No readings (NVML missing and no backend to ask, or telemetry off).
    #[default]
    None,
}

named_enum!(ReadingSource, "GPU reading source", {
    Nvml => "nvml",
    Comfyui => "comfyui",
    None => "none",
});

/// A source of GPU readings.
pub trait GpuSource: Send {
    /// Which source this is.
    fn name(&self) -> ReadingSource;
    /// The driver version, when the source knows it.
    fn driver_version(&self) -> Option<String> {
        None
    }
    /// One reading of every device. A device that fails is returned with
    /// `up = false` and its error; `Err` means the source itself failed.
    fn sample(&mut self) -> Result<Vec<GpuReading>, GpuError>;
}

/// The source failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// It cannot be used here (no library, no driver, no backend): said once.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

/// A process using a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuProcess {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_memory_bytes: Option<u64>,
    /// From /proc when visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The ComfyUI backend this process is (local backends only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// One device at one moment. `None` means the reading is not available (fan on a
/// passively cooled card, power on some boards): shown as n/a.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuReading {
    pub index: u32,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// False when the device answered with an error (e.g. the GPU is lost).
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Share of time a kernel ran (0..=1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_ratio: Option<f64>,
    /// Share of time the memory controller was busy (bus activity, not VRAM fill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_controller_utilization_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    /// In use, reserved memory excluded (as nvidia-smi shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reserved_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit_watts: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_hz: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_clock_hz: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<GpuProcess>,
}

/// What the monitor knows now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuReport {
    /// The source the readings come from (`nvml`, `comfyui`), or `none`.
    pub source: ReadingSource,
    /// Why NVML (or every source) is not in use, said once and kept here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    pub at_ms: Millis,
    pub devices: Vec<GpuReading>,
}

/// One point of a device's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    pub at_ms: Millis,
    pub utilization_ratio: Option<f64>,
    pub memory_used_bytes: Option<u64>,
}

/// The latest report and history; cheap to clone.
#[derive(Clone)]
pub struct GpuMonitor {
    inner: Arc<Mutex<State>>,
    /// Counts the reports taken, so watchers wake on each new one.
    samples: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for GpuMonitor {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            samples: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

#[derive(Default)]
struct State {
    report: GpuReport,
    history: BTreeMap<u32, VecDeque<HistoryPoint>>,
    keep: usize,
}

impl GpuMonitor {
    /// A monitor that reports `reason` and nothing else (GPU sampling is off).
    pub fn disabled(reason: &str) -> Self {
        let m = Self::default();
        m.set(GpuReport {
            source: ReadingSource::None,
            unavailable: Some(reason.into()),
            ..GpuReport::default()
        });
        m
    }

    /// The latest report.
    pub fn report(&self) -> GpuReport {
        lock(&self.inner).report.clone()
    }

    /// Wakes on every new report (the value counts them).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.samples.subscribe()
    }

    /// The recent history of device `index`, oldest first.
    pub fn history(&self, index: u32) -> Vec<HistoryPoint> {
        lock(&self.inner)
            .history
            .get(&index)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    fn set(&self, report: GpuReport) {
        let mut s = lock(&self.inner);
        let keep = s.keep.max(1);
        for d in &report.devices {
            let h = s.history.entry(d.index).or_default();
            if h.len() == keep {
                h.pop_front();
            }
            h.push_back(HistoryPoint {
                at_ms: report.at_ms,
                utilization_ratio: d.utilization_ratio,
                memory_used_bytes: d.memory_used_bytes,
            });
        }
        s.report = report;
        drop(s);
        self.samples.send_modify(|n| *n += 1);
    }

    /// Samples `primary` (falling back to `fallback` when `primary` is unavailable)
    /// every `config.sample_interval_ms` on a dedicated thread until the returned
    /// [`Sampler`] is stopped.
    pub fn start(
        config: &GpuConfig,
        primary: Result<Box<dyn GpuSource>, GpuError>,
        fallback: Option<Box<dyn GpuSource>>,
        clock: SharedClock,
    ) -> (Self, Sampler) {
        let monitor = Self::default();
        let every = Duration::from_millis(config.sample_interval_ms.max(10));
        {
            let mut s = lock(&monitor.inner);
            let per_sec = 1000 / config.sample_interval_ms.clamp(1, 1000);
            s.keep = usize::try_from(config.history_seconds.saturating_mul(per_sec)).unwrap_or(600);
        }
        let m = monitor.clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("darkroom-gpu".into())
            .spawn(move || sample_loop(&m, primary, fallback, &*clock, every, &stopped));
        let thread = spawned
            .map_err(|e| tracing::warn!(error = %e, "cannot start the GPU sampling thread"))
            .ok();
        (monitor, Sampler { stop, thread })
    }

    /// One report from `source` (the `darkroom gpu --once` path).
    pub fn sample_once(source: &mut dyn GpuSource, at_ms: Millis) -> GpuReport {
        match source.sample() {
            Ok(devices) => GpuReport {
                source: source.name(),
                unavailable: None,
                driver_version: source.driver_version(),
                at_ms,
                devices,
            },
            Err(e) => GpuReport {
                source: ReadingSource::None,
                unavailable: Some(e.to_string()),
                at_ms,
                ..GpuReport::default()
            },
        }
    }
}

/// The sampling thread; [`Sampler::stop`] ends and joins it.
pub struct Sampler {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Stops sampling and waits for the thread (at most one sample's time).
    pub fn stop(self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

fn sample_loop(
    monitor: &GpuMonitor,
    primary: Result<Box<dyn GpuSource>, GpuError>,
    fallback: Option<Box<dyn GpuSource>>,
    clock: &dyn crate::clock::Clock,
    every: Duration,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let (mut source, mut unavailable) = match primary {
        Ok(s) => (Some(s), None),
        Err(e) if fallback.is_some() => {
            tracing::warn!(reason = %e, "GPU telemetry: NVML unavailable; reading VRAM from ComfyUI's /system_stats instead");
            (fallback, Some(e.to_string()))
        }
        Err(e) => {
            tracing::warn!(reason = %e, "GPU telemetry unavailable");
            (None, Some(e.to_string()))
        }
    };
    let mut last_error: Option<String> = None;
    loop {
        let at_ms = clock.now_ms();
        let report = match source.as_mut() {
            None => GpuReport {
                source: ReadingSource::None,
                unavailable: unavailable.clone(),
                at_ms,
                ..GpuReport::default()
            },
            Some(s) => match s.sample() {
                Ok(devices) => {
                    last_error = None;
                    GpuReport {
                        source: s.name(),
                        unavailable: unavailable.clone(),
                        driver_version: s.driver_version(),
                        at_ms,
                        devices,
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(source = %s.name(), error = %text, "GPU sampling failed");
                        last_error = Some(text.clone());
                    }
                    if matches!(e, GpuError::Unavailable(_)) && unavailable.is_none() {
                        unavailable = Some(text);
                    }
                    GpuReport {
                        source: s.name(),
                        unavailable: unavailable.clone(),
                        at_ms,
                        ..GpuReport::default()
                    }
                }
            },
        };
        monitor.set(report);
        match stopped.recv_timeout(every) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // Stopped, or the sampler was dropped.
            _ => return,
        }
    }
}

/// VRAM (used, total) of the GPU `backend` runs on: NVML's reading of the device
/// its process was attributed to, else the backend's own `/system_stats`.
pub fn backend_vram(report: &GpuReport, backend: &crate::dispatch::BackendStatus) -> Option<(u64, u64)> {
    let nvml = report.devices.iter().find_map(|d| {
        d.processes
            .iter()
            .any(|p| p.backend.as_deref() == Some(backend.url.as_str()))
            .then_some((d.memory_used_bytes?, d.memory_total_bytes?))
    });
    nvml.or_else(|| {
        let total = backend.vram_total_bytes?;
        Some((total.saturating_sub(backend.vram_free_bytes?), total))
    })
}

/// A watt figure from milliwatts.
pub(crate) fn watts(mw: u32) -> f64 {
    f64::from(mw) / 1000.0
}

/// The name of process `pid` from /proc, when visible.
pub(crate) fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<GpuReading>);

    impl GpuSource for Fixed {
        fn name(&self) -> ReadingSource {
            ReadingSource::Nvml
        }
        fn sample(&mut self) -> Result<Vec<GpuReading>, GpuError> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn history_is_bounded_and_reports_carry_the_source() {
        let m = GpuMonitor::default();
        m.inner.lock().unwrap().keep = 3;
        let mut src = Fixed(vec![GpuReading {
            index: 0,
            name: "test".into(),
            up: true,
            utilization_ratio: Some(0.5),
            ..GpuReading::default()
        }]);
        for t in 0..5 {
            m.set(GpuMonitor::sample_once(&mut src, t));
        }
        let h = m.history(0);
        assert_eq!(h.iter().map(|p| p.at_ms).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(m.report().source, ReadingSource::Nvml);
        let off = GpuMonitor::disabled("gpu.enabled = false");
        assert_eq!(off.report().unavailable.as_deref(), Some("gpu.enabled = false"));
    }
}
