//! Starling's web app: a Leptos app rendered in the browser (CSR), with three pages.
//!
//! - **Contribute** lends this device's GPU: it starts the compute engine in a module Web Worker
//!   (`www/worker.js`, contract in `web-worker/BROWSER.md`), forwards visibility and battery
//!   readings, and shows what the worker and the relay say about it.
//! - **Dashboard** posts signed jobs (built-in kernels with their parameters, or custom WGSL with
//!   input files) and follows them; `/jobs/:id` shows one job task by task, with its throughput,
//!   downloads and, for Mandelbrot renders, the picture.
//! - **Network** shows workers online by backend and adapter, and verified tasks per second.
//!
//! Logic that decides or computes lives in plain modules that build and test natively:
//! [`format`], [`chart`], [`job_form`], [`job_model`], [`results`], [`network_stats`], [`poll`], [`worker_protocol`],
//! [`wgsl_error`], [`views`] and [`error`]. The browser-only modules (`app`, `api`, `browser`,
//! `compute`, `routes`, `components`) exist only on wasm32.

pub mod chart;
pub mod error;
pub mod format;
pub mod job_form;
pub mod job_model;
pub mod network_stats;
pub mod poll;
pub mod results;
pub mod views;
pub mod wgsl_error;
pub mod worker_protocol;

pub use error::{Error, Result};

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
mod components;
#[cfg(target_arch = "wasm32")]
mod compute;
#[cfg(target_arch = "wasm32")]
mod routes;

/// Entry point: replaces the static shell in `#app` with the app.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    use wasm_bindgen::JsCast;
    // A panic in wasm surfaces only as "unreachable": say what it was.
    std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&format!("starling: {info}").into())));
    let Some(root) = browser::window().document().and_then(|d| d.get_element_by_id("app")) else {
        web_sys::console::error_1(&"starling: no #app element to mount into".into());
        return;
    };
    root.set_inner_html("");
    let root: web_sys::HtmlElement = root.unchecked_into();
    leptos::mount::mount_to(root, app::App).forget();
}
