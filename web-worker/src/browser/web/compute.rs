//! What computes in the browser: WebGPU through wgpu when the browser gives us an adapter, the
//! built-in kernels' CPU references when it does not. Either way through [`crate::engine`].
//!
//! The built-ins' WGSL, by [`WgslGroup`], and their CPU references are split points of the web
//! app (wasm-split cuts each into a chunk of its own; `scripts/build-web.sh`): a browser with
//! WebGPU fetches a group's WGSL with the group's first task and never the CPU kernels, a browser
//! without it the CPU kernels and never any WGSL.

use super::timer::{Sleep, with_timeout};
use crate::gpu::GpuContext;
use crate::kernels::{ProgramFn, WgslGroup};
use crate::{Error, engine};
use js_sys::{Function, Promise, Reflect};
use starling_protocol::job::{BuiltinKernel, KernelSpec};
use starling_protocol::limits::{MAX_BLOB_BYTES, MAX_INPUTS_PER_TASK, MAX_WORKGROUPS_PER_DIM};
use starling_protocol::worker::{AdapterInfo, Backend, Capabilities, DeviceLimits, Platform};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// How long to wait for `requestAdapter`/`requestDevice`. Some browser and driver combinations
/// never settle the promise (lavapipe inside Chromium does this); the worker must not hang.
const OPEN_TIMEOUT_MS: u32 = 20_000;

/// The compute backend a browser worker uses for its whole life (until the device is lost).
#[derive(Debug)]
pub enum Compute {
    Gpu(Box<GpuContext>),
    /// No WebGPU: built-in kernels only, on their CPU references.
    Cpu,
}

/// A freshly opened backend, what it announces, and why it is the CPU if it is.
#[derive(Debug)]
pub struct Opened {
    pub compute: Compute,
    pub capabilities: Capabilities,
    /// Why WebGPU was not used, for the page's log.
    pub fallback_reason: Option<String>,
}

/// Opens WebGPU if the browser has it, the CPU otherwise. Capabilities carry slots 1, price 0
/// and duty 1; the machine puts the page's duty cycle into each `hello`.
pub async fn open_compute() -> Opened {
    let opened = with_timeout(GpuContext::new(), Sleep::new(OPEN_TIMEOUT_MS)).await;
    let fallback_reason = match opened {
        Some(Ok(ctx)) => {
            let mut capabilities = ctx.capabilities(0, 1.0, 1);
            if capabilities.adapter.name.is_empty() {
                // wgpu leaves the name empty in the browser; GPUAdapter.info says what it is.
                capabilities.adapter.name = adapter_description().await.unwrap_or_default();
            }
            return Opened { compute: Compute::Gpu(Box::new(ctx)), capabilities, fallback_reason: None };
        }
        Some(Err(e)) => e.to_string(),
        None => format!("WebGPU did not answer within {} s", OPEN_TIMEOUT_MS / 1000),
    };
    Opened { compute: Compute::Cpu, capabilities: cpu_capabilities(), fallback_reason: Some(fallback_reason) }
}

/// What a CPU-only browser worker announces: built-ins only (the relay sends no WGSL to a `cpu`
/// backend), and nothing bigger than a blob.
pub fn cpu_capabilities() -> Capabilities {
    Capabilities {
        backend: Backend::Cpu,
        platform: Platform::Browser,
        adapter: AdapterInfo { name: "cpu".into(), device_type: "cpu".into(), ..Default::default() },
        limits: DeviceLimits {
            max_buffer_size: MAX_BLOB_BYTES,
            max_storage_buffer_binding_size: MAX_BLOB_BYTES,
            max_storage_buffers_per_shader_stage: MAX_INPUTS_PER_TASK as u32 + 1,
            max_compute_workgroups_per_dimension: MAX_WORKGROUPS_PER_DIM,
        },
        asking_price: 0,
        duty_cycle: 1.0,
        slots: 1,
    }
}

impl Compute {
    /// Runs one task. The CPU path blocks the worker's thread for the task's length: keep CPU
    /// tasks small (the relay's leases outlast them only while heartbeats flow).
    pub async fn run(
        &self,
        kernel: &KernelSpec,
        params: &[u32],
        inputs: &[&[u8]],
        workgroups: [u32; 3],
        output_size: u32,
    ) -> crate::Result<Vec<u8>> {
        match (self, kernel) {
            (Compute::Gpu(ctx), KernelSpec::Builtin { name }) => {
                crate::kernels::check(*name, params, inputs, workgroups, output_size)?;
                let program = group_program(WgslGroup::of(*name))
                    .await
                    .map_err(|NotLoaded| not_loaded(&format!("WGSL of {}", name.name())))?;
                let program = program(*name, params);
                engine::run_program(ctx, &program, engine::Source::Builtin, params, inputs, workgroups, output_size)
                    .await
            }
            (Compute::Gpu(ctx), kernel) => {
                engine::run_program(ctx, kernel, engine::Source::Client, params, inputs, workgroups, output_size).await
            }
            (Compute::Cpu, KernelSpec::Builtin { name }) => {
                let run = cpu_kernels().await.map_err(|NotLoaded| not_loaded("built-in kernels' CPU code"))?;
                run(*name, params, inputs, workgroups, output_size)
            }
            (Compute::Cpu, KernelSpec::Wgsl { .. } | KernelSpec::Pipeline { .. }) => {
                Err(Error::Kernel("this browser has no WebGPU adapter for custom WGSL".into()))
            }
        }
    }
}

/// A chunk of the app's code could not be fetched.
struct NotLoaded;

#[cfg(feature = "split")]
impl From<wasm_split_helpers::SplitLoaderError> for NotLoaded {
    fn from(_: wasm_split_helpers::SplitLoaderError) -> Self {
        NotLoaded
    }
}

fn not_loaded(what: &str) -> Error {
    Error::CodeNotLoaded(format!(
        "the {what} could not be downloaded: the relay may be unreachable, or Starling was updated since this page opened"
    ))
}

type RunCpu = fn(BuiltinKernel, &[u32], &[&[u8]], [u32; 3], u32) -> crate::Result<Vec<u8>>;

/// The program builder of a built-in's [`WgslGroup`], from the group's chunk of WGSL.
#[cfg(feature = "split")]
async fn group_program(group: WgslGroup) -> Result<ProgramFn, NotLoaded> {
    match group {
        WgslGroup::Mandelbrot => wgsl_mandelbrot().await,
        WgslGroup::Matmul => wgsl_matmul().await,
        WgslGroup::MonteCarloPi => wgsl_monte_carlo_pi().await,
        WgslGroup::Sha256NonceSearch => wgsl_sha256_nonce_search().await,
        WgslGroup::Reductions => wgsl_reductions().await,
        WgslGroup::MlpFx => wgsl_mlp_fx().await,
        WgslGroup::MlpF32 => wgsl_mlp_f32().await,
    }
}

/// One split point per [`WgslGroup`]: wasm-split moves each group's program, with the WGSL it
/// names, into a chunk of its own.
#[cfg(feature = "split")]
macro_rules! wgsl_group {
    ($($split:ident: $program:ident;)*) => {$(
        #[wasm_split_helpers::wasm_split($split, fallible)]
        fn $split() -> Result<ProgramFn, NotLoaded> {
            Ok(crate::kernels::programs::$program)
        }
    )*};
}

#[cfg(feature = "split")]
wgsl_group! {
    wgsl_mandelbrot: mandelbrot;
    wgsl_matmul: matmul;
    wgsl_monte_carlo_pi: monte_carlo_pi;
    wgsl_sha256_nonce_search: sha256_nonce_search;
    wgsl_reductions: reductions;
    wgsl_mlp_fx: mlp_fx;
    wgsl_mlp_f32: mlp_f32;
}

/// A built-in's CPU reference ([`engine::run_task_cpu`]), in the chunk that holds them all.
#[cfg(feature = "split")]
#[wasm_split_helpers::wasm_split(builtins_cpu, fallible)]
fn cpu_kernels() -> Result<RunCpu, NotLoaded> {
    Ok(engine::run_task_cpu)
}

/// Without the `split` feature: everything is in the one module.
#[cfg(not(feature = "split"))]
async fn group_program(group: WgslGroup) -> Result<ProgramFn, NotLoaded> {
    Ok(group.program())
}

#[cfg(not(feature = "split"))]
async fn cpu_kernels() -> Result<RunCpu, NotLoaded> {
    Ok(engine::run_task_cpu)
}

/// "vendor architecture device description" from `GPUAdapter.info`, the parts the browser
/// discloses. Any failure means no description, never an error.
async fn adapter_description() -> Option<String> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok().filter(|g| g.is_object())?;
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into()).ok()?.dyn_into().ok()?;
    let options = js_sys::Object::new();
    Reflect::set(&options, &"powerPreference".into(), &"high-performance".into()).ok()?;
    let promise: Promise = request.call1(&gpu, &options).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok().filter(|a| a.is_object())?;
    let info = Reflect::get(&adapter, &"info".into()).ok().filter(|i| i.is_object())?;
    let field = |name: &str| Reflect::get(&info, &JsValue::from_str(name)).ok().and_then(|v| v.as_string());
    let parts: Vec<String> = ["vendor", "architecture", "device", "description"]
        .into_iter()
        .filter_map(field)
        .filter(|part| !part.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}
