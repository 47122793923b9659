//! Client WGSL through the engine on a real GPU adapter (lavapipe in CI): a valid kernel runs,
//! invalid ones are refused with their location, and tasks beyond the device's limits or
//! refused by wgpu come back as errors, not panics. Fails, never skips, without an adapter.

// Native adapters only (blocking polls, a shared static device); the browser's run in
// tests/browser_kernels.rs.
#![cfg(not(target_arch = "wasm32"))]

use starling_protocol::job::KernelSpec;
use starling_protocol::worker::{Backend, Platform};
use starling_web_worker::engine::run_task;
use starling_web_worker::{Error, GpuContext};
use std::sync::OnceLock;

fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        pollster::block_on(GpuContext::new())
            .expect("no GPU adapter: install lavapipe (mesa-vulkan-drivers) or run on a machine with a GPU")
    })
}

const DOUBLE: &str = "\
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

@compute @workgroup_size(64)
fn double(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.count) {
        output[id.x] = input[id.x] * 2u;
    }
}
";

fn wgsl(source: &str, entry_point: &str) -> KernelSpec {
    KernelSpec::Wgsl { source: source.to_string(), entry_point: entry_point.to_string() }
}

fn run(
    kernel: &KernelSpec,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<Vec<u8>, Error> {
    pollster::block_on(run_task(ctx(), kernel, params, inputs, workgroups, output_size))
}

fn le_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn doubling_kernel_runs_and_compiles_once() {
    let kernel = wgsl(DOUBLE, "double");
    let input: Vec<u32> = (0..100).collect();
    let bytes = le_words(&input);
    let output = run(&kernel, &[100], &[&bytes], [2, 1, 1], 400).unwrap();
    let expected: Vec<u32> = input.iter().map(|x| x * 2).collect();
    assert_eq!(output, le_words(&expected));

    // Only the first `count` elements are written; the rest of the output stays zeroed.
    let output = run(&kernel, &[3], &[&bytes], [1, 1, 1], 24).unwrap();
    assert_eq!(output, le_words(&[0, 2, 4, 0, 0, 0]));

    // Compiled once, for this entry point and input count.
    assert!(ctx().has_pipeline(DOUBLE, "double", 1));
    assert!(!ctx().has_pipeline(DOUBLE, "double", 2));
}

#[test]
fn odd_sized_and_empty_inputs_are_padded() {
    // 6 bytes of input bind as 8 (the pad is zero); an empty input binds as 4 zero bytes.
    let kernel = wgsl(
        "@group(0) @binding(1) var<storage, read> a: array<u32>;
         @group(0) @binding(2) var<storage, read> b: array<u32>;
         @group(0) @binding(3) var<storage, read_write> o: array<u32>;
         @compute @workgroup_size(1) fn main() {
             o[0] = a[0]; o[1] = a[1]; o[2] = arrayLength(&a); o[3] = b[0] + arrayLength(&b);
         }",
        "main",
    );
    let a = [1u8, 0, 0, 0, 0xff, 0xff];
    // An output size that is not a multiple of 4 is padded on the GPU and cut on the way back.
    let output = run(&kernel, &[], &[&a, &[]], [1, 1, 1], 15).unwrap();
    assert_eq!(output, le_words(&[1, 0xffff, 2, 1])[..15]);
}

#[test]
fn invalid_wgsl_is_refused_with_its_location() {
    let broken = DOUBLE.replace("input[id.x] * 2u;", "input[id.x] * 2u");
    match run(&wgsl(&broken, "double"), &[1], &[&[0; 4]], [1, 1, 1], 4) {
        Err(Error::Validation(e)) => assert_eq!((e.line, e.column), (10, 5), "{e}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    match run(&wgsl(DOUBLE, "main"), &[1], &[&[0; 4]], [1, 1, 1], 4) {
        Err(Error::Validation(e)) => assert!(e.message.contains("no entry point named `main`"), "{e}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    // One input declared, none supplied: the input binding is outside the convention.
    match run(&wgsl(DOUBLE, "double"), &[1], &[], [1, 1, 1], 4) {
        Err(Error::Validation(e)) => assert_eq!(e.line, 3, "{e}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn limits_are_errors_not_panics() {
    let kernel = wgsl(DOUBLE, "double");
    let limits = ctx().limits().clone();
    let too_many = limits.max_compute_workgroups_per_dimension + 1;
    assert!(matches!(run(&kernel, &[1], &[&[0; 4]], [too_many, 1, 1], 4), Err(Error::Exceeds(_))));
    let params = vec![0; limits.max_uniform_buffer_binding_size as usize / 4 + 1];
    assert!(matches!(run(&kernel, &params, &[&[0; 4]], [1, 1, 1], 4), Err(Error::Exceeds(_))));
    let inputs: Vec<&[u8]> = vec![&[0; 4]; limits.max_storage_buffers_per_shader_stage as usize];
    assert!(matches!(run(&kernel, &[1], &inputs, [1, 1, 1], 4), Err(Error::Exceeds(_))));
    if limits.max_storage_buffer_binding_size < u64::from(u32::MAX) {
        let output_size = limits.max_storage_buffer_binding_size as u32 + 4;
        assert!(matches!(run(&kernel, &[1], &[&[0; 4]], [1, 1, 1], output_size), Err(Error::Exceeds(_))));
    }
    assert!(matches!(run(&kernel, &[1], &[&[0; 4]], [0, 1, 1], 4), Err(Error::Kernel(_))));
    assert!(matches!(run(&kernel, &[1], &[&[0; 4]], [1, 1, 1], 0), Err(Error::Kernel(_))));
}

#[test]
fn errors_wgpu_finds_late_are_errors_not_panics() {
    // Valid WGSL whose params struct is bigger than the 16 bytes bound for two words: naga
    // accepts it, wgpu refuses the dispatch.
    let kernel = wgsl(
        "struct Params { a: vec4<u32>, b: vec4<u32> }
         @group(0) @binding(0) var<uniform> params: Params;
         @group(0) @binding(1) var<storage, read_write> o: array<u32>;
         @compute @workgroup_size(1) fn main() { o[0] = params.b.x; }",
        "main",
    );
    assert!(matches!(run(&kernel, &[1, 2], &[], [1, 1, 1], 4), Err(Error::Gpu(_))));
    // With enough params the same kernel runs: the failure left the device usable.
    assert_eq!(run(&kernel, &[0, 0, 0, 0, 9, 0, 0, 0], &[], [1, 1, 1], 4).unwrap(), le_words(&[9]));
}

#[test]
fn capabilities_describe_this_device() {
    let caps = ctx().capabilities(5, 0.5, 2);
    assert_ne!(caps.backend, Backend::Cpu);
    assert_ne!(caps.backend, Backend::BrowserWebgpu);
    assert_eq!(caps.platform, Platform::Native);
    assert!(caps.runs_wgsl());
    assert!(caps.limits.max_storage_buffer_binding_size >= 1 << 20);
    assert!(caps.limits.max_compute_workgroups_per_dimension >= 65_535);
    assert!(caps.limits.max_storage_buffers_per_shader_stage >= 4);
    assert_eq!((caps.asking_price, caps.duty_cycle, caps.slots), (5, 0.5, 2));
    assert_eq!(caps.adapter.vendor, ctx().adapter_info().vendor);
    eprintln!("adapter: {:?} class {}", caps.adapter, caps.adapter_class());
}

#[test]
fn run_task_is_send_so_a_multithreaded_runtime_can_spawn_it() {
    fn assert_send<T: Send>(_: &T) {}
    let kernel = wgsl(DOUBLE, "double");
    let future = run_task(ctx(), &kernel, &[1], &[], [1, 1, 1], 4);
    assert_send(&future);
}

#[test]
fn a_pipeline_runs_its_stages_in_order_over_named_buffers() {
    use starling_web_worker::kernels::examples::{dense_relu, dense_relu_cpu};
    // Small integers: every f32 sum is exact, so the GPU must match the CPU bit for bit.
    let (n, k, m) = (5usize, 7usize, 9usize);
    let x: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 2.0).collect();
    let w: Vec<f32> = (0..k * m).map(|i| (i % 3) as f32 - 1.0).collect();
    let b: Vec<f32> = (0..m).map(|i| i as f32 - 4.0).collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let kernel = dense_relu(n as u32, m as u32);
    let groups = ((n * m) as u32).div_ceil(64);
    let out = run(
        &kernel,
        &[n as u32, k as u32, m as u32],
        &[&bytes(&x), &bytes(&w), &bytes(&b)],
        [groups, 1, 1],
        (n * m * 4) as u32,
    )
    .expect("the pipeline runs");
    let want = dense_relu_cpu(n, k, m, &x, &w, &b);
    assert_eq!(out, bytes(&want));
    assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0), "the activation clips some, not all");
    // Each stage compiled once, and found in the cache the next time.
    assert!(["matmul", "bias", "relu"].iter().zip([2, 2, 1]).all(|(e, n)| ctx().has_pipeline(
        starling_web_worker::kernels::examples::DENSE_RELU_SOURCE,
        e,
        n
    )));
    // A task that binds fewer inputs than the stages name is refused before anything runs.
    let short =
        run(&kernel, &[n as u32, k as u32, m as u32], &[&bytes(&x), &bytes(&w)], [groups, 1, 1], (n * m * 4) as u32);
    assert!(matches!(short, Err(Error::Kernel(ref e)) if e.contains("the task has 2 inputs")), "{short:?}");
}
