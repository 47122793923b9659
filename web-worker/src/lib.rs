//! Starling's compute engine: the built-in WGSL kernel library, the GPU context that runs kernels,
//! and the CPU references that every GPU result is checked against.
//!
//! - [`gpu`]: [`GpuContext`] opens one wgpu device, caches compiled pipelines and reads results
//!   back with `map_async` (the same code path natively and in the browser).
//! - [`engine`]: [`engine::run_task`] runs one task (built-in or client WGSL) under the binding
//!   convention of [`starling_protocol::job`]; [`engine::run_task_cpu`] runs a built-in on the CPU.
//! - [`kernels`]: the kernel library (the `starling-kernels` crate, re-exported): one module per
//!   [`starling_protocol::job::BuiltinKernel`] with its WGSL, typed parameters, dispatch helpers,
//!   job builders and CPU reference.
//! - `validate` (not on wasm32): naga-based validation of client WGSL (`starling_kernels::validate`);
//!   in the browser, WebGPU validates WGSL itself.
//! - [`machine`]: every worker's decisions (handshake, assignments, slots, cancels, heartbeats,
//!   backoff, duty cycle, pauses, registration) as one pure state machine: events in, actions
//!   out. Both workers are thin drivers of it.
//! - [`outbox`]: the order frames leave in while a WebCrypto key signs one (the browser glue).
//! - `native` (not on wasm32): the native worker, driving the machine with tokio, WebSockets,
//!   HTTP and the engine.
//! - [`browser`]: the browser worker. Its page side is plain Rust, built and tested everywhere;
//!   its Web Worker glue and `worker_main` exist on wasm32 with the `gpu` feature (WebGPU through
//!   wgpu); the web app (starling-frontend) links them in and exports the entry point.
//! - [`pacing`]: duty-cycle rest and pause rules.
//! - [`escrow`]: what both workers sign for the escrow (results, registration), and what they
//!   refuse to sign.
//!
//! Without the default `gpu` feature only [`kernels`], [`error`], [`pacing`], [`machine`] and the
//! pure parts of [`browser`] remain (no wgpu, no naga): job builders, parameter layouts and CPU references, for
//! front ends that build jobs.
//!
//! Library code stays portable to `wasm32-unknown-unknown`: no threads, no clocks, no tokio.

pub mod blob_cache;
pub mod browser;
#[cfg(feature = "gpu")]
pub mod engine;
pub mod error;
pub mod escrow;
#[cfg(feature = "gpu")]
pub mod gpu;
pub use starling_kernels as kernels;
pub mod machine;
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub mod native;
pub mod outbox;
pub mod pacing;
pub mod relay_urls;
#[cfg(not(target_arch = "wasm32"))]
pub use starling_kernels::validate;

pub use error::{Error, Result};
#[cfg(feature = "gpu")]
pub use gpu::GpuContext;
