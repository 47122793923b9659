//! The browser worker: the engine in a dedicated module Web Worker, steered by the page with
//! `postMessage` (web-worker/BROWSER.md) and talking to the relay exactly like the native worker.
//!
//! - [`page`]: the page ↔ worker messages (the protocol's), and the key the page hands over.
//! - `keystore` (wasm32 with the `keystore` feature): Ed25519 keys that page scripts cannot read
//!   (non-extractable WebCrypto keys in IndexedDB), for the worker key here and the page's client
//!   key.
//! - [`crate::machine`]: every decision (handshake, assignments, heartbeats, backoff, duty cycle,
//!   pause), as a pure state machine shared with the native worker: events in, actions out.
//! - `web` (wasm32 with the `gpu` feature): the thin glue that carries out the machine's actions
//!   with the browser's APIs (WebSocket, fetch, timers, WebGPU through wgpu), started by
//!   `worker_main`. The web app links it in as a split chunk of its own module and exports
//!   `engine_main`, which `www/worker.js` calls: the worker downloads only the engine's own code.

#[cfg(all(target_arch = "wasm32", feature = "keystore"))]
pub mod keystore;
pub mod page;
#[cfg(all(target_arch = "wasm32", feature = "gpu"))]
pub mod web;

pub use crate::machine::{Action, Machine};
pub use page::{PageMessage, WorkerEvent};
