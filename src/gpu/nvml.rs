//! NVML through `nvml-wrapper`: the library is loaded from `gpu.nvml_lib`
//! (default the soname `libnvidia-ml.so.1`) and every device is read on each
//! sample. Init failures become one clear [`GpuError::Unavailable`] reason; a
//! device that errors is reported down with its error while the others read on;
//! a reading a device does not support (a fan on a passively cooled card) is n/a.

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use super::{GpuError, GpuProcess, GpuReading, GpuSource, process_name, watts};

/// GPUs read through NVML.
pub struct NvmlSource {
    nvml: Nvml,
    driver: Option<String>,
    /// ComfyUI backend URLs, to tell which GPU process is which.
    backends: Vec<String>,
}

impl NvmlSource {
    /// Loads and initialises NVML from `lib` (a soname or a path).
    pub fn open(lib: &str) -> Result<Self, GpuError> {
        let nvml = Nvml::builder()
            .lib_path(OsStr::new(lib))
            .init()
            .map_err(|e| GpuError::Unavailable(init_reason(lib, &e)))?;
        let driver = nvml.sys_driver_version().ok();
        Ok(Self {
            nvml,
            driver,
            backends: Vec::new(),
        })
    }

    /// Attributes GPU processes to these ComfyUI backends (those on this machine).
    #[must_use]
    pub fn with_backends(mut self, backends: Vec<String>) -> Self {
        self.backends = backends;
        self
    }
}

/// Why NVML could not start, in words an operator can act on.
fn init_reason(lib: &str, e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) => {
            format!("NVML: {lib} not found or not loadable — is the NVIDIA driver installed? ({e})")
        }
        NvmlError::DriverNotLoaded => {
            format!("NVML: {lib} loaded but the NVIDIA driver is not running (DriverNotLoaded)")
        }
        NvmlError::FailedToLoadSymbol(s) => {
            format!("NVML: {lib} is not a usable NVML library (missing {s}; a CUDA stub?)")
        }
        NvmlError::NoPermission => format!("NVML: no permission to use the GPUs through {lib}"),
        other => format!("NVML: {lib} failed to initialise: {other}"),
    }
}

/// A reading that may be unsupported: `NotSupported` is n/a, other errors too
/// (they show in the device's `error` only when the device itself is gone).
fn opt<T>(r: Result<T, NvmlError>) -> Option<T> {
    r.ok()
}

impl GpuSource for NvmlSource {
    fn name(&self) -> super::ReadingSource {
        super::ReadingSource::Nvml
    }

    fn driver_version(&self) -> Option<String> {
        self.driver.clone()
    }

    fn sample(&mut self) -> Result<Vec<GpuReading>, GpuError> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| GpuError::Failed(format!("NVML: cannot count devices: {e}")))?;
        let mut devices: Vec<GpuReading> = (0..count).map(|i| read_device(&self.nvml, i)).collect();
        super::attribution::attribute(&mut devices, &self.backends);
        Ok(devices)
    }
}

fn read_device(nvml: &Nvml, index: u32) -> GpuReading {
    let down = |name: String, e: &NvmlError| GpuReading {
        index,
        name,
        up: false,
        error: Some(match e {
            NvmlError::GpuLost => "NVML: GPU lost (fell off the bus or became inaccessible)".to_owned(),
            other => format!("NVML: {other}"),
        }),
        ..GpuReading::default()
    };
    let device = match nvml.device_by_index(index) {
        Ok(d) => d,
        Err(e) => return down(format!("GPU {index}"), &e),
    };
    // The name is asked first: a lost GPU fails here and is reported as such.
    let name = match device.name() {
        Ok(n) => n,
        Err(e) => return down(format!("GPU {index}"), &e),
    };
    let memory = match device.memory_info() {
        Ok(m) => Some(m),
        Err(e @ NvmlError::GpuLost) => return down(name, &e),
        Err(_) => None,
    };
    let utilization = opt(device.utilization_rates());
    let processes = opt(device.running_compute_processes())
        .unwrap_or_default()
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            },
            name: process_name(p.pid),
            backend: None,
        })
        .collect();
    GpuReading {
        index,
        name,
        uuid: opt(device.uuid()),
        up: true,
        error: None,
        utilization_ratio: utilization.as_ref().map(|u| f64::from(u.gpu) / 100.0),
        memory_controller_utilization_ratio: utilization.as_ref().map(|u| f64::from(u.memory) / 100.0),
        memory_total_bytes: memory.as_ref().map(|m| m.total),
        memory_used_bytes: memory.as_ref().map(|m| m.used),
        memory_free_bytes: memory.as_ref().map(|m| m.free),
        memory_reserved_bytes: memory.as_ref().map(|m| m.reserved),
        temperature_celsius: opt(device.temperature(TemperatureSensor::Gpu)),
        power_watts: opt(device.power_usage()).map(watts),
        power_limit_watts: opt(device.enforced_power_limit()).map(watts),
        fan_ratio: opt(device.fan_speed(0)).map(|p| f64::from(p) / 100.0),
        sm_clock_hz: opt(device.clock_info(Clock::SM)).map(|mhz| u64::from(mhz) * 1_000_000),
        memory_clock_hz: opt(device.clock_info(Clock::Memory)).map(|mhz| u64::from(mhz) * 1_000_000),
        processes,
    }
}
