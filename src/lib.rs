//! darkroom: one binary that runs an image-generation box.
//!
//! (Architecture map: see the module list below; each module's own `//!` says why it exists.)

pub mod cache;
pub mod clock;
pub mod queue;
pub mod store;
