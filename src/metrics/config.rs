//! `[metrics]`: what `/metrics` exports beyond the defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Label the usage series (`darkroom_user_*`) with each user's name too, not
    /// only their role. Off by default: a label per user grows without bound.
    pub per_user: bool,
}
