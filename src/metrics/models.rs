//! The model series: `darkroom_model_swaps_total{backend}` (from each backend's
//! count, at scrape time), `darkroom_model_load_seconds{model}` (a histogram of
//! submit-to-first-step after a model switch) and
//! `darkroom_routing_decisions_total{model,reason}` (submits routed on this node).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{BackendLabel, Mirrored};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Decision {
    model: String,
    reason: String,
}

pub(super) struct ModelMetrics {
    swaps: Mirrored<BackendLabel>,
    load: Family<ModelLabel, Histogram>,
    decisions: Mirrored<Decision>,
}

impl ModelMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let load = Family::<ModelLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0])
        });
        r.register(
            "darkroom_model_load_seconds",
            "Time from submit to the first sampler step of jobs that had to load their model",
            load.clone(),
        );
        Self {
            swaps: Mirrored::register(
                r,
                "darkroom_model_swaps",
                "Times each ComfyUI backend switched from one model to another",
            ),
            load,
            decisions: Mirrored::register(
                r,
                "darkroom_routing_decisions",
                "Submits routed to a catalog model, by model and reason",
            ),
        }
    }

    pub(super) fn load(&self, model: &str, seconds: f64) {
        self.load
            .get_or_create(&ModelLabel {
                model: model.to_owned(),
            })
            .observe(seconds);
    }

    pub(super) fn set(&self, swaps: &[(String, u64)], decisions: &[((String, String), u64)]) {
        for (backend, n) in swaps {
            self.swaps.sync(
                &BackendLabel {
                    backend: backend.clone(),
                },
                *n,
            );
        }
        for ((model, reason), n) in decisions {
            self.decisions.sync(
                &Decision {
                    model: model.clone(),
                    reason: reason.clone(),
                },
                *n,
            );
        }
    }
}
