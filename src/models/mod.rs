//! Models: the catalog users ask for by name (`[[models]]`), the rules that pick
//! one for a request (`[routing]`), and the timings learned from finished jobs.
//!
//! Submitting asks [`routing::choose`] for the model (a name, or `auto` by urgency,
//! purpose, quality and free VRAM) and binds its file into the template; the
//! dispatcher then places the job on a backend that has the file and room for it,
//! preferring one that already has it loaded (`dispatch::schedule`), and swaps
//! models with ComfyUI's `/free`. An empty catalog changes nothing: jobs name their
//! checkpoint as before and go to the least loaded backend.

pub mod catalog;
pub mod routing;
pub mod timings;

pub use catalog::{Catalog, ModelSpec, Quality};
pub use routing::{
    BackendView, Estimates, ModelChoice, RouteAsk, RouteError, RoutingConfig, Scheduler, Urgency, choose,
};
pub use timings::{Kind as TimingKind, TimingStats, Timings};
