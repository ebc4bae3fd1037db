#![allow(clippy::unwrap_used)]

mod cache;
mod queue;
mod queue_admin;
mod queue_crash;
mod queue_lease;
mod queue_support;
