//! End-to-end tests with real relay and worker processes: one binary, linked once.

mod e2e;
mod escrow;
mod registry;
mod scale_out;
mod support;
mod workloads;
