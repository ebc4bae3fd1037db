//! `[dash]`: how the terminal dashboard draws. `image_protocol` picks the
//! graphics protocol for pictures (`auto` asks the terminal; `--image-protocol`
//! overrides it for one run).

use serde::{Deserialize, Serialize};

use super::picture::ImageProtocol;

/// Settings of `[dash]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashConfig {
    /// `auto`, `kitty`, `iterm2`, `sixel`, `halfblocks` or `none`.
    pub image_protocol: ImageProtocol,
}
