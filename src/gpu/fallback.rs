//! The fallback source when NVML cannot load: VRAM total and free per backend
//! from ComfyUI's `/system_stats`, as the dispatcher's health checks last saw it
//! (no extra requests). It knows nothing else — no utilization, temperature or
//! power — so those read as n/a.

use super::{GpuError, GpuReading, GpuSource};
use crate::dispatch::Dispatcher;

/// VRAM per ComfyUI backend.
pub struct ComfyStatsSource {
    dispatcher: Dispatcher,
}

impl ComfyStatsSource {
    pub fn new(dispatcher: Dispatcher) -> Self {
        Self { dispatcher }
    }
}

impl GpuSource for ComfyStatsSource {
    fn name(&self) -> super::ReadingSource {
        super::ReadingSource::Comfyui
    }

    fn sample(&mut self) -> Result<Vec<GpuReading>, GpuError> {
        let backends = self.dispatcher.backends();
        if backends.is_empty() {
            return Err(GpuError::Unavailable(
                "no ComfyUI backend is configured to read VRAM from".into(),
            ));
        }
        Ok(backends
            .iter()
            .filter_map(|b| Some((b, b.vram_total_bytes?, b.vram_free_bytes?)))
            .zip(0u32..)
            .map(|((b, total, free), index)| GpuReading {
                index,
                name: format!("GPU of {}", b.url),
                up: b.healthy,
                error: b.last_error.clone(),
                memory_total_bytes: Some(total),
                memory_free_bytes: Some(free),
                memory_used_bytes: Some(total.saturating_sub(free)),
                ..GpuReading::default()
            })
            .collect())
    }
}
