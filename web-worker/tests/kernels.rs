//! Known-answer tests of the built-in kernels on a real GPU adapter (lavapipe in CI), each held
//! against the CPU reference. These tests fail, never skip, when no adapter is found.

// Native adapters only (blocking polls, a shared static device); the browser's run in
// tests/browser_kernels.rs.
#![cfg(not(target_arch = "wasm32"))]

use starling_protocol::bytes::sha256;
use starling_protocol::job::{BuiltinKernel, KernelSpec, TaskSpec};
use starling_web_worker::engine::{run_task, run_task_cpu};
use starling_web_worker::kernels::bytes_to_words;
use starling_web_worker::kernels::mandelbrot::{self, MandelbrotParams, ONE, Tile};
use starling_web_worker::kernels::matmul_f32::{self, MatmulParams, bytes_to_f32s, f32s_to_bytes};
use starling_web_worker::kernels::monte_carlo_pi::{self, MonteCarloParams};
use starling_web_worker::kernels::sha256_nonce_search::{self, Sha256Params};
use starling_web_worker::{Error, GpuContext};
use std::sync::OnceLock;

/// One context for the whole test binary: opening lavapipe is the slow part.
fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        pollster::block_on(GpuContext::new())
            .expect("no GPU adapter: install lavapipe (mesa-vulkan-drivers) or run on a machine with a GPU")
    })
}

fn gpu(kernel: BuiltinKernel, task: &TaskSpec, inputs: &[&[u8]]) -> Vec<u8> {
    pollster::block_on(run_task(
        ctx(),
        &KernelSpec::Builtin { name: kernel },
        &task.params,
        inputs,
        task.workgroups,
        task.output_size,
    ))
    .unwrap_or_else(|e| panic!("{} on the GPU: {e}", kernel.name()))
}

fn cpu(kernel: BuiltinKernel, task: &TaskSpec, inputs: &[&[u8]]) -> Vec<u8> {
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

#[test]
fn mandelbrot_tiles_match_the_cpu_exactly() {
    // Tiles of 20 px: partial workgroups inside each tile and smaller tiles at the edges.
    let (w, h) = (50, 37);
    let tasks = mandelbrot::tile_job_tasks(w, h, 20, 300, (-0.6, 0.1), 2.8);
    assert_eq!(tasks.len(), 6);
    let mut outputs = Vec::new();
    for task in &tasks {
        let on_gpu = gpu(BuiltinKernel::Mandelbrot, task, &[]);
        assert_eq!(on_gpu, cpu(BuiltinKernel::Mandelbrot, task, &[]), "tile {:?}", &task.params[2..6]);
        outputs.push(on_gpu);
    }
    let counts = mandelbrot::assemble_counts(w, h, &tasks, &outputs).unwrap();
    // The image has both escaping and captive points, so the comparison above means something.
    assert!(counts.contains(&300) && counts.iter().any(|&c| c < 5), "{counts:?}");
    let image = mandelbrot::assemble_image(w, h, &tasks, &outputs).unwrap();
    assert_eq!(image.len(), (w * h * 3) as usize);
}

#[test]
fn mandelbrot_known_pixels() {
    // A 3x3 image centred on 1+i with a step of 1: pixel (px, py) is c = (px) + (2 - py)i.
    let params = MandelbrotParams {
        image_width: 3,
        image_height: 3,
        tile: Tile { x: 0, y: 0, width: 3, height: 3 },
        max_iter: 1000,
        center_re: ONE,
        center_im: ONE,
        step: ONE,
    };
    let task = TaskSpec {
        params: params.to_words(),
        inputs: vec![],
        workgroups: params.workgroups(),
        output_size: params.output_size(),
        kernel: 0,
    };
    let counts = bytes_to_words(&gpu(BuiltinKernel::Mandelbrot, &task, &[]));
    let at = |px: usize, py: usize| counts[py * 3 + px];
    assert_eq!(at(0, 2), 1000, "c = 0 never escapes");
    assert_eq!(at(2, 0), 1, "c = 2+2i escapes at iteration 1");
    assert_eq!(at(1, 1), 2, "c = 1+i: z = 1+i, then 1+3i escapes");
    assert_eq!(at(0, 1), 1000, "c = i is a 2-cycle (-1+i, -i)");
    assert_eq!(words(&cpu(BuiltinKernel::Mandelbrot, &task, &[])), counts);
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes_to_words(bytes)
}

#[test]
fn matmul_hand_computed_product_is_exact() {
    let a = f32s_to_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32s_to_bytes(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    let task = matmul_f32::task_for(2, 2, 3, sha256(&a), sha256(&b));
    let c = bytes_to_f32s(&gpu(BuiltinKernel::MatmulF32, &task, &[&a, &b]));
    assert_eq!(c, [58.0, 64.0, 139.0, 154.0]);
}

#[test]
fn matmul_row_blocks_match_the_cpu_within_tolerance() {
    // Odd sizes: partial 64x64 blocks and a partial 16-wide k stage.
    let (m, n, k) = (150, 70, 37);
    let a = f32s_to_bytes(&floats((m * k) as usize, 1));
    let b = f32s_to_bytes(&floats((k * n) as usize, 2));
    let tasks = matmul_f32::tasks_for(m, n, k, sha256(&a), sha256(&b), 100);
    assert_eq!(tasks.len(), 2);
    let mut whole = Vec::new();
    for task in &tasks {
        let on_gpu = bytes_to_f32s(&gpu(BuiltinKernel::MatmulF32, task, &[&a, &b]));
        let on_cpu = bytes_to_f32s(&cpu(BuiltinKernel::MatmulF32, task, &[&a, &b]));
        assert_eq!(on_gpu.len(), on_cpu.len());
        for (i, (g, c)) in on_gpu.iter().zip(&on_cpu).enumerate() {
            assert!((g - c).abs() <= 1e-5 + 1e-5 * g.abs().max(c.abs()), "element {i}: gpu {g} cpu {c}");
        }
        whole.extend(on_gpu);
    }
    // The row blocks concatenate to the whole product.
    let params = MatmulParams::whole(m, n, k);
    let reference = bytes_to_f32s(&params.cpu(&a, &b));
    assert_eq!(whole.len(), reference.len());
    assert!(whole.iter().zip(&reference).all(|(g, c)| (g - c).abs() <= 1e-4));
}

/// `k` and `n` multiples of 4: the generated register-tiled kernel runs (same blocks, same
/// dispatch), over partial blocks, a partial stage and a row block that starts mid-matrix.
#[test]
fn tiled_matmul_row_blocks_match_the_cpu_within_tolerance() {
    // Partial blocks and stages (the checked loads); then whole blocks and stages in row blocks
    // that start mid-matrix (the interior loads).
    for (m, n, k, rows) in [(150, 68, 52, 100), (256, 128, 64, 128)] {
        tiled_matmul_matches(m, n, k, rows);
    }
}

fn tiled_matmul_matches(m: u32, n: u32, k: u32, rows: u32) {
    let a = f32s_to_bytes(&floats((m * k) as usize, 3));
    let b = f32s_to_bytes(&floats((k * n) as usize, 4));
    let tasks = matmul_f32::tasks_for(m, n, k, sha256(&a), sha256(&b), rows);
    assert_eq!(tasks.len(), 2);
    for task in &tasks {
        assert_eq!(
            starling_web_worker::kernels::source_for(BuiltinKernel::MatmulF32, &task.params),
            starling_web_worker::kernels::matmul_tiled::default_source(),
            "this product runs the generated kernel"
        );
        let on_gpu = bytes_to_f32s(&gpu(BuiltinKernel::MatmulF32, task, &[&a, &b]));
        let on_cpu = bytes_to_f32s(&cpu(BuiltinKernel::MatmulF32, task, &[&a, &b]));
        assert_eq!(on_gpu.len(), on_cpu.len());
        for (i, (g, c)) in on_gpu.iter().zip(&on_cpu).enumerate() {
            assert!((g - c).abs() <= 1e-5 + 1e-5 * g.abs().max(c.abs()), "element {i}: gpu {g} cpu {c}");
        }
    }
}

#[test]
fn monte_carlo_pi_matches_the_cpu_and_estimates_pi() {
    // 2 tasks x 64 workgroups x 256 threads x 32 samples = 1 048 576 points.
    let tasks = monte_carlo_pi::tasks(0x5eed_0000_0000_0042, 2, 64, 32);
    let (mut hits, mut samples) = (0, 0);
    for task in &tasks {
        let on_gpu = gpu(BuiltinKernel::MonteCarloPi, task, &[]);
        assert_eq!(on_gpu, cpu(BuiltinKernel::MonteCarloPi, task, &[]));
        hits += monte_carlo_pi::total_hits(&on_gpu);
        samples += MonteCarloParams::from_words(&task.params).unwrap().samples(task.workgroups);
    }
    assert_eq!(samples, 1 << 20);
    let pi = monte_carlo_pi::estimate(hits, samples);
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "estimate {pi}");
}

#[test]
fn monte_carlo_pi_three_dimensional_dispatch_and_odd_sample_count() {
    let params = MonteCarloParams { seed: 7, first_workgroup: u32::MAX - 5, samples_per_thread: 5 };
    let workgroups = [3, 2, 2];
    let task = TaskSpec {
        params: params.to_words(),
        inputs: vec![],
        workgroups,
        output_size: MonteCarloParams::output_size(workgroups) as u32,
        kernel: 0,
    };
    let on_gpu = gpu(BuiltinKernel::MonteCarloPi, &task, &[]);
    assert_eq!(on_gpu, cpu(BuiltinKernel::MonteCarloPi, &task, &[]));
    // Different workgroups draw different points.
    let counts = words(&on_gpu);
    assert!(counts.iter().any(|&c| c != counts[0]), "{counts:?}");
}

#[test]
fn sha256_nonce_search_matches_the_cpu_and_sha2() {
    let prefix = *b"starling: sha256 nonce search!!!";
    // Starts just below 2^32 so the nonce's high word carries inside the range.
    let tasks = sha256_nonce_search::tasks(prefix, (1 << 32) - 3000, 2, 3, 4);
    let mut records = Vec::new();
    for task in &tasks {
        let on_gpu = gpu(BuiltinKernel::Sha256NonceSearch, task, &[]);
        assert_eq!(on_gpu, cpu(BuiltinKernel::Sha256NonceSearch, task, &[]));
        records.extend(sha256_nonce_search::decode(&on_gpu));
    }
    assert_eq!(records.len(), 6);
    let best = sha256_nonce_search::best(records).unwrap();
    // Check the winner straight against sha2.
    use sha2::{Digest, Sha256};
    let mut message = prefix.to_vec();
    message.extend(best.nonce.to_be_bytes());
    let digest = Sha256::digest(&message);
    assert_eq!(sha256_nonce_search::leading_zero_bits(&digest), best.leading_zeros);
    assert!(best.leading_zeros >= 8, "6144 tries should find 8 zero bits: {best:?}");
}

#[test]
fn sha256_nonce_search_wraps_at_two_to_the_64_and_uses_all_dimensions() {
    let params = Sha256Params { prefix: [0x5a; 32], start: u64::MAX - 1000, nonces_per_thread: 3 };
    let workgroups = [2, 2, 1];
    let task = TaskSpec {
        params: params.to_words(),
        inputs: vec![],
        workgroups,
        output_size: Sha256Params::output_size(workgroups) as u32,
        kernel: 0,
    };
    assert_eq!(gpu(BuiltinKernel::Sha256NonceSearch, &task, &[]), cpu(BuiltinKernel::Sha256NonceSearch, &task, &[]));
}

#[test]
fn builtins_refuse_mismatched_tasks() {
    let task = &mandelbrot::tile_job_tasks(32, 32, 32, 10, (0.0, 0.0), 3.0)[0];
    let kernel = KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot };
    let run = |params: &[u32], workgroups, output_size| {
        pollster::block_on(run_task(ctx(), &kernel, params, &[], workgroups, output_size))
    };
    assert!(matches!(run(&task.params, task.workgroups, task.output_size - 4), Err(Error::Kernel(_))));
    assert!(matches!(run(&task.params, [1, 1, 1], task.output_size), Err(Error::Kernel(_))));
    assert!(matches!(run(&task.params[..3], task.workgroups, task.output_size), Err(Error::Kernel(_))));
    let a = [0u8; 12];
    let matmul = matmul_f32::task_for(2, 2, 2, sha256(&a), sha256(&a));
    let result = pollster::block_on(run_task(
        ctx(),
        &KernelSpec::Builtin { name: BuiltinKernel::MatmulF32 },
        &matmul.params,
        &[&a, &a],
        matmul.workgroups,
        matmul.output_size,
    ));
    assert!(matches!(result, Err(Error::Kernel(_))), "A of 12 bytes is not 2x2: {result:?}");
}

#[test]
fn reductions_match_the_cpu_for_every_fan_in() {
    use starling_web_worker::kernels::reduce::{MAX_FAN_IN, ReduceParams};
    let words = 200u32;
    let vectors: Vec<Vec<u8>> = (0..MAX_FAN_IN as u32)
        .map(|i| floats(words as usize, 77 + i).iter().map(|f| f * 1e4).flat_map(|f| f.to_le_bytes()).collect())
        .collect();
    for fan_in in 1..=MAX_FAN_IN {
        let inputs: Vec<&[u8]> = vectors[..fan_in].iter().map(Vec::as_slice).collect();
        for kernel in [BuiltinKernel::SumI32, BuiltinKernel::SumF32, BuiltinKernel::Concat] {
            let total = if kernel == BuiltinKernel::Concat { words * fan_in as u32 } else { words };
            let p = ReduceParams { words: total, fan_in: fan_in as u32 };
            let task = TaskSpec {
                params: p.to_words(),
                inputs: vec![],
                workgroups: p.workgroups().unwrap(),
                output_size: total * 4,
                kernel: 0,
            };
            // Every kernel here adds (or copies) in binding order, so even f32 agrees exactly.
            assert_eq!(gpu(kernel, &task, &inputs), cpu(kernel, &task, &inputs), "{} x{fan_in}", kernel.name());
        }
    }
}

/// A deterministic batch for the network: Q16 features in [0, 1), labels in 0..outputs.
fn batch(shape: starling_web_worker::kernels::mlp_fx::Shape, seed: u32) -> (Vec<u8>, Vec<u8>) {
    let n = (shape.samples * shape.inputs) as usize;
    let xs: Vec<i32> = floats(n, seed).iter().map(|f| ((f + 1.0) * 32768.0) as i32 & !0xfff).collect();
    let ys: Vec<u32> = (0..shape.samples).map(|i| (i * 7 + seed) % shape.outputs).collect();
    (xs.iter().flat_map(|v| v.to_le_bytes()).collect(), ys.iter().flat_map(|v| v.to_le_bytes()).collect())
}

#[test]
fn the_fixed_point_network_is_bit_identical_on_the_gpu_and_the_cpu() {
    use starling_web_worker::kernels::mlp_fx::{Shape, StepParams, i32_bytes, init_weights};
    // 130 samples: a partial workgroup; 64 inputs and 32 hidden units as the digits use, and a
    // shape with the most hidden units and outputs the kernels hold.
    for shape in [
        Shape { inputs: 64, hidden: 32, outputs: 10, samples: 130 },
        Shape { inputs: 5, hidden: 64, outputs: 16, samples: 70 },
    ] {
        let w = i32_bytes(&init_weights(shape, 3));
        let (xs, ys) = batch(shape, 11);
        // Weights a client could pick: logits far apart enough that their differences wrap.
        let wild: Vec<i32> = init_weights(shape, 5).iter().map(|w| w.wrapping_mul(40_000)).collect();
        let wild = i32_bytes(&wild);
        let grad_task = TaskSpec {
            params: shape.to_words(),
            inputs: vec![],
            workgroups: shape.workgroups(),
            output_size: shape.grad_words() * 4,
            kernel: 0,
        };
        let grad = gpu(BuiltinKernel::MlpGradFx, &grad_task, &[&w, &xs, &ys]);
        assert_eq!(grad, cpu(BuiltinKernel::MlpGradFx, &grad_task, &[&w, &xs, &ys]), "gradient {shape:?}");
        assert_eq!(
            gpu(BuiltinKernel::MlpGradFx, &grad_task, &[&wild, &xs, &ys]),
            cpu(BuiltinKernel::MlpGradFx, &grad_task, &[&wild, &xs, &ys]),
            "gradient of wrapping logits {shape:?}"
        );
        assert!(grad.iter().any(|&b| b != 0));
        let step = StepParams { weights: shape.weight_words(), rate: 1 << 15, samples: shape.samples };
        let step_task = TaskSpec {
            params: step.to_words(),
            inputs: vec![],
            workgroups: step.workgroups().unwrap(),
            output_size: shape.weight_words() * 4,
            kernel: 0,
        };
        let next = gpu(BuiltinKernel::MlpStepFx, &step_task, &[&w, &grad]);
        assert_eq!(next, cpu(BuiltinKernel::MlpStepFx, &step_task, &[&w, &grad]), "step {shape:?}");
        assert_ne!(next, w);
        let infer_task = TaskSpec {
            params: shape.to_words(),
            inputs: vec![],
            workgroups: shape.workgroups(),
            output_size: shape.samples * 4,
            kernel: 0,
        };
        assert_eq!(
            gpu(BuiltinKernel::MlpInferFx, &infer_task, &[&next, &xs]),
            cpu(BuiltinKernel::MlpInferFx, &infer_task, &[&next, &xs]),
            "classes {shape:?}"
        );
    }
}

#[test]
fn the_f32_network_matches_the_cpu_within_a_tolerance() {
    use starling_web_worker::kernels::mlp_f32::StepF32;
    use starling_web_worker::kernels::mlp_fx::{Shape, from_q, init_weights};
    let shape = Shape { inputs: 64, hidden: 32, outputs: 10, samples: 130 };
    let w: Vec<u8> = init_weights(shape, 3).iter().flat_map(|&q| (from_q(q) as f32).to_le_bytes()).collect();
    let (xq, ys) = batch(shape, 11);
    let xs: Vec<u8> = bytes_to_words(&xq).iter().flat_map(|&q| (from_q(q as i32) as f32).to_le_bytes()).collect();
    let task = TaskSpec {
        params: shape.to_words(),
        inputs: vec![],
        workgroups: shape.workgroups(),
        output_size: shape.grad_words() * 4,
        kernel: 0,
    };
    // Two dispatches (per-sample rows, then their sum in sample order) on the GPU.
    let g = bytes_to_f32s(&gpu(BuiltinKernel::MlpGradF32, &task, &[&w, &xs, &ys]));
    let c = bytes_to_f32s(&cpu(BuiltinKernel::MlpGradF32, &task, &[&w, &xs, &ys]));
    let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in g.iter().zip(&c).enumerate() {
        assert!((a - b).abs() <= 1e-4 * scale.max(1.0), "word {i}: GPU {a} vs CPU {b}");
    }
    assert_eq!(g[g.len() - 1], c[c.len() - 1], "the count classified right is a whole number on both");
    let step = StepF32 { weights: shape.weight_words(), rate: 0.5, samples: shape.samples };
    let step_task = TaskSpec {
        params: step.to_words(),
        inputs: vec![],
        workgroups: step.workgroups().unwrap(),
        output_size: shape.weight_words() * 4,
        kernel: 0,
    };
    let grad = f32s_to_bytes(&c);
    let next_gpu = bytes_to_f32s(&gpu(BuiltinKernel::MlpStepF32, &step_task, &[&w, &grad]));
    let next_cpu = bytes_to_f32s(&cpu(BuiltinKernel::MlpStepF32, &step_task, &[&w, &grad]));
    assert!(next_gpu.iter().zip(&next_cpu).all(|(a, b)| (a - b).abs() <= 1e-6));
}

#[test]
fn top_k_matches_the_cpu_for_every_fan_in() {
    use starling_web_worker::kernels::top_k::{MAX_K, TopKParams};
    // Lists of (score, id) with many ties, one of them empty.
    let lists: Vec<Vec<u8>> = (0..6u32)
        .map(|l| {
            let n = if l == 3 { 0 } else { 40 + l * 7 };
            let words: Vec<u32> =
                (0..n).flat_map(|i| [i.wrapping_mul(2_654_435_761u32.wrapping_mul(l + 1)) % 23, i + 100 * l]).collect();
            words.iter().flat_map(|w| w.to_le_bytes()).collect()
        })
        .collect();
    for fan_in in 1..=6usize {
        for k in [1, 7, MAX_K] {
            let p = TopKParams { k, fan_in: fan_in as u32 };
            let task =
                TaskSpec { params: p.to_words(), inputs: vec![], workgroups: [1, 1, 1], output_size: k * 8, kernel: 0 };
            let inputs: Vec<&[u8]> = lists[..fan_in].iter().map(Vec::as_slice).collect();
            assert_eq!(
                gpu(BuiltinKernel::TopKU32, &task, &inputs),
                cpu(BuiltinKernel::TopKU32, &task, &inputs),
                "x{fan_in} k {k}"
            );
        }
    }
}
