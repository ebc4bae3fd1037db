//! The GPU series, named as issue 6 and nvidia_gpu_exporter users expect:
//! `darkroom_gpu_info{gpu,uuid,name,driver_version}`, `darkroom_gpu_up`, the
//! utilization ratios, memory in bytes, temperature, power, fan and clocks, all
//! labelled by `gpu` (the device index). Set from the latest report at scrape time;
//! a device that vanished leaves no stale series.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::gpu::GpuReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Gpu {
    gpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Info {
    gpu: String,
    uuid: String,
    name: String,
    driver_version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuClock {
    gpu: String,
    clock: String,
}

type F = Family<Gpu, Gauge<f64, AtomicU64>>;

pub(super) struct GpuMetrics {
    info: Family<Info, Gauge>,
    up: F,
    utilization: F,
    memctl: F,
    used: F,
    free: F,
    reserved: F,
    total: F,
    temperature: F,
    power: F,
    power_limit: F,
    fan: F,
    clock: Family<GpuClock, Gauge<f64, AtomicU64>>,
}

impl GpuMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let mut f = |name: &str, help: &str| {
            let m = F::default();
            r.register(name, help, m.clone());
            m
        };
        let up = f(
            "darkroom_gpu_up",
            "1 while the GPU answers, 0 when it errors (e.g. lost)",
        );
        let utilization = f(
            "darkroom_gpu_utilization_ratio",
            "Share of time a kernel ran on the GPU",
        );
        let memctl = f(
            "darkroom_gpu_memory_controller_utilization_ratio",
            "Share of time the memory controller was busy (bus activity, not VRAM fill)",
        );
        let used = f(
            "darkroom_gpu_memory_used_bytes",
            "VRAM in use (reserved excluded, as nvidia-smi)",
        );
        let free = f("darkroom_gpu_memory_free_bytes", "VRAM free");
        let reserved = f(
            "darkroom_gpu_memory_reserved_bytes",
            "VRAM reserved by the driver",
        );
        let total = f("darkroom_gpu_memory_total_bytes", "VRAM installed");
        let temperature = f("darkroom_gpu_temperature_celsius", "GPU die temperature");
        let power = f("darkroom_gpu_power_usage_watts", "Power draw");
        let power_limit = f("darkroom_gpu_power_limit_watts", "Enforced power limit");
        let fan = f(
            "darkroom_gpu_fan_speed_ratio",
            "Fan speed (absent where not supported)",
        );
        let clock = Family::<GpuClock, Gauge<f64, AtomicU64>>::default();
        r.register(
            "darkroom_gpu_clock_hz",
            "Current clock by domain (sm, memory)",
            clock.clone(),
        );
        let info = Family::<Info, Gauge>::default();
        r.register("darkroom_gpu_info", "GPU identity (always 1)", info.clone());
        Self {
            info,
            up,
            utilization,
            memctl,
            used,
            free,
            reserved,
            total,
            temperature,
            power,
            power_limit,
            fan,
            clock,
        }
    }

    #[allow(clippy::cast_precision_loss)]
    pub(super) fn set(&self, report: &GpuReport) {
        let all = [
            &self.up,
            &self.utilization,
            &self.memctl,
            &self.used,
            &self.free,
            &self.reserved,
            &self.total,
            &self.temperature,
            &self.power,
            &self.power_limit,
            &self.fan,
        ];
        for f in all {
            f.clear();
        }
        self.info.clear();
        self.clock.clear();
        for d in &report.devices {
            let l = Gpu {
                gpu: d.index.to_string(),
            };
            self.info
                .get_or_create(&Info {
                    gpu: l.gpu.clone(),
                    uuid: d.uuid.clone().unwrap_or_default(),
                    name: d.name.clone(),
                    driver_version: report.driver_version.clone().unwrap_or_default(),
                })
                .set(1);
            self.up.get_or_create(&l).set(if d.up { 1.0 } else { 0.0 });
            let bytes = |v: Option<u64>| v.map(|b| b as f64);
            let values = [
                (&self.utilization, d.utilization_ratio),
                (&self.memctl, d.memory_controller_utilization_ratio),
                (&self.used, bytes(d.memory_used_bytes)),
                (&self.free, bytes(d.memory_free_bytes)),
                (&self.reserved, bytes(d.memory_reserved_bytes)),
                (&self.total, bytes(d.memory_total_bytes)),
                (&self.temperature, d.temperature_celsius.map(f64::from)),
                (&self.power, d.power_watts),
                (&self.power_limit, d.power_limit_watts),
                (&self.fan, d.fan_ratio),
            ];
            for (family, value) in values {
                if let Some(v) = value {
                    family.get_or_create(&l).set(v);
                }
            }
            for (clock, hz) in [("sm", d.sm_clock_hz), ("memory", d.memory_clock_hz)] {
                if let Some(hz) = hz {
                    self.clock
                        .get_or_create(&GpuClock {
                            gpu: l.gpu.clone(),
                            clock: clock.into(),
                        })
                        .set(hz as f64);
                }
            }
        }
    }
}
