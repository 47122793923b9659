//! The browser engine on WebGPU in a real browser: every built-in kernel and a client WGSL
//! kernel, run through the same [`Compute`] the browser worker uses, inside a dedicated Web
//! Worker (where the worker runs), each held against its CPU reference.
//!
//! Run with `scripts/test-browser-kernels.sh` (headless Chromium, SwiftShader's WebGPU). It fails,
//! never skips, when the browser offers no WebGPU adapter: the worker would fall back to the CPU
//! there, and these tests exist to prove it does not have to. Sizes are small: SwiftShader is a
//! CPU implementation of the GPU.
#![cfg(all(target_arch = "wasm32", feature = "gpu"))]

use starling_protocol::bytes::sha256;
use starling_protocol::job::{BuiltinKernel, KernelSpec, TaskSpec};
use starling_protocol::worker::{Backend, Platform};
use starling_web_worker::Error;
use starling_web_worker::browser::web::compute::{Compute, open_compute};
use starling_web_worker::engine::run_task_cpu;
use starling_web_worker::kernels::bytes_to_words;
use starling_web_worker::kernels::matmul_f32::{self, MatmulParams, bytes_to_f32s, f32s_to_bytes};
use starling_web_worker::kernels::{mandelbrot, monte_carlo_pi, sha256_nonce_search};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

thread_local! {
    /// One device for all tests: opening it is the slow part.
    static GPU: RefCell<Option<Rc<Compute>>> = const { RefCell::new(None) };
}

/// The worker's compute, which must be WebGPU.
async fn gpu() -> Rc<Compute> {
    if let Some(compute) = GPU.with(|g| g.borrow().clone()) {
        return compute;
    }
    let opened = open_compute().await;
    assert_eq!(
        opened.fallback_reason, None,
        "no WebGPU adapter (is the browser started with --enable-unsafe-webgpu, without --disable-gpu?)"
    );
    let Compute::Gpu(ctx) = &opened.compute else { panic!("fell back to the CPU") };
    assert_eq!(ctx.adapter_info().backend, wgpu::Backend::BrowserWebGpu);
    assert_eq!(opened.capabilities.backend, Backend::BrowserWebgpu);
    assert_eq!(opened.capabilities.platform, Platform::Browser);
    assert!(opened.capabilities.runs_wgsl());
    console_log!("WebGPU adapter: {:?}; limits {:?}", opened.capabilities.adapter.name, opened.capabilities.limits);
    let compute = Rc::new(opened.compute);
    GPU.with(|g| *g.borrow_mut() = Some(compute.clone()));
    compute
}

async fn on_gpu(kernel: BuiltinKernel, task: &TaskSpec, inputs: &[&[u8]]) -> Vec<u8> {
    gpu()
        .await
        .run(&KernelSpec::Builtin { name: kernel }, &task.params, inputs, task.workgroups, task.output_size)
        .await
        .unwrap_or_else(|e| panic!("{} on WebGPU: {e}", kernel.name()))
}

fn on_cpu(kernel: BuiltinKernel, task: &TaskSpec, inputs: &[&[u8]]) -> Vec<u8> {
    run_task_cpu(kernel, &task.params, inputs, task.workgroups, task.output_size)
        .unwrap_or_else(|e| panic!("{} on the CPU: {e}", kernel.name()))
}

/// Deterministic floats in [-1, 1) (xorshift32).
fn floats(n: usize, mut state: u32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

#[wasm_bindgen_test]
async fn the_browser_worker_computes_on_webgpu() {
    let compute = gpu().await;
    assert!(matches!(*compute, Compute::Gpu(_)));
}

#[wasm_bindgen_test]
async fn mandelbrot_matches_the_cpu_exactly() {
    // 12 px tiles over 30x17: partial workgroups in each tile, smaller tiles at the edges.
    let (w, h) = (30, 17);
    let tasks = mandelbrot::tile_job_tasks(w, h, 12, 200, (-0.6, 0.1), 2.8);
    assert_eq!(tasks.len(), 6);
    let mut outputs = Vec::new();
    for task in &tasks {
        let gpu = on_gpu(BuiltinKernel::Mandelbrot, task, &[]).await;
        assert_eq!(gpu, on_cpu(BuiltinKernel::Mandelbrot, task, &[]), "tile {:?}", &task.params[2..6]);
        outputs.push(gpu);
    }
    let counts = mandelbrot::assemble_counts(w, h, &tasks, &outputs).unwrap();
    // Both captive and fast-escaping points, so the comparison covers both paths.
    assert!(counts.contains(&200) && counts.iter().any(|&c| c < 5), "{counts:?}");
}

#[wasm_bindgen_test]
async fn matmul_matches_the_cpu_within_tolerance() {
    let a = f32s_to_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32s_to_bytes(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    let task = matmul_f32::task_for(2, 2, 3, sha256(&a), sha256(&b));
    let c = bytes_to_f32s(&on_gpu(BuiltinKernel::MatmulF32, &task, &[&a, &b]).await);
    assert_eq!(c, [58.0, 64.0, 139.0, 154.0]);

    // Odd sizes: partial 64x64 blocks and a partial 16-wide k stage, in two row blocks.
    let (m, n, k) = (70, 33, 19);
    let a = f32s_to_bytes(&floats((m * k) as usize, 1));
    let b = f32s_to_bytes(&floats((k * n) as usize, 2));
    let tasks = matmul_f32::tasks_for(m, n, k, sha256(&a), sha256(&b), 40);
    assert_eq!(tasks.len(), 2);
    let mut whole = Vec::new();
    for task in &tasks {
        let gpu = bytes_to_f32s(&on_gpu(BuiltinKernel::MatmulF32, task, &[&a, &b]).await);
        let cpu = bytes_to_f32s(&on_cpu(BuiltinKernel::MatmulF32, task, &[&a, &b]));
        assert_eq!(gpu.len(), cpu.len());
        for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
            assert!((g - c).abs() <= 1e-5 + 1e-5 * g.abs().max(c.abs()), "element {i}: gpu {g} cpu {c}");
        }
        whole.extend(gpu);
    }
    let reference = bytes_to_f32s(&MatmulParams::whole(m, n, k).cpu(&a, &b));
    assert_eq!(whole.len(), reference.len());
    assert!(whole.iter().zip(&reference).all(|(g, c)| (g - c).abs() <= 1e-4));
}

#[wasm_bindgen_test]
async fn monte_carlo_pi_matches_the_cpu_exactly() {
    // 2 tasks x 8 workgroups x 256 threads x 8 samples = 32 768 points.
    let tasks = monte_carlo_pi::tasks(0x5eed_0000_0000_0042, 2, 8, 8);
    let mut hits = 0;
    for task in &tasks {
        let gpu = on_gpu(BuiltinKernel::MonteCarloPi, task, &[]).await;
        assert_eq!(gpu, on_cpu(BuiltinKernel::MonteCarloPi, task, &[]));
        hits += monte_carlo_pi::total_hits(&gpu);
    }
    let pi = monte_carlo_pi::estimate(hits, 1 << 15);
    assert!((pi - std::f64::consts::PI).abs() < 0.05, "estimate {pi}");
}

#[wasm_bindgen_test]
async fn sha256_nonce_search_matches_the_cpu_exactly() {
    let prefix = *b"starling: sha256 nonce search!!!";
    // Starts just below 2^32 so the nonce's high word carries inside the range.
    let tasks = sha256_nonce_search::tasks(prefix, (1 << 32) - 1000, 2, 2, 2);
    let mut records = Vec::new();
    for task in &tasks {
        let gpu = on_gpu(BuiltinKernel::Sha256NonceSearch, task, &[]).await;
        assert_eq!(gpu, on_cpu(BuiltinKernel::Sha256NonceSearch, task, &[]));
        records.extend(sha256_nonce_search::decode(&gpu));
    }
    assert_eq!(records.len(), 4);
    let best = sha256_nonce_search::best(records).unwrap();
    assert!(best.leading_zeros >= 4, "2048 tries should find 4 zero bits: {best:?}");
}

const DOUBLE: &str = "\
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

@compute @workgroup_size(64)
fn double(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.count) {
        output[id.x] = input[id.x] * 2u + 1u;
    }
}
";

#[wasm_bindgen_test]
async fn custom_wgsl_runs_and_bad_wgsl_is_refused() {
    let kernel = KernelSpec::Wgsl { source: DOUBLE.into(), entry_point: "double".into() };
    let input: Vec<u32> = (0..100).map(|i| i * 7 + 3).collect();
    let bytes: Vec<u8> = input.iter().flat_map(|w| w.to_le_bytes()).collect();
    // 100 of 104 outputs written; the rest stay zero.
    let output = gpu().await.run(&kernel, &[100], &[&bytes], [2, 1, 1], 416).await.unwrap();
    let mut expected: Vec<u32> = input.iter().map(|x| x * 2 + 1).collect();
    expected.extend([0; 4]);
    assert_eq!(bytes_to_words(&output), expected);

    let broken = KernelSpec::Wgsl { source: DOUBLE.replace("* 2u", "* 2.0"), entry_point: "double".into() };
    match gpu().await.run(&broken, &[100], &[&bytes], [2, 1, 1], 400).await {
        Err(Error::Validation(e)) => assert_eq!(e.line, 9, "{e}"),
        other => panic!("expected a WGSL error, got {other:?}"),
    }
}
