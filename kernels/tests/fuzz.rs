//! Fuzz targets for the kernel library's front doors that the relay exposes to every client: the WGSL
//! validator (`validate::validate_kernel`, run on each custom kernel posted to `/v1/jobs`) and
//! the built-in kernels' task checks (`kernels::check_sizes`, run on each built-in task).
//!
//! Bounded by `STARLING_FUZZ_SECS` per target (2 s by default) and a case cap; see
//! `starling-fuzz` for the knobs and how to rerun one failing case.

#![cfg(all(not(target_arch = "wasm32"), feature = "validate"))]

use naga::{AddressSpace, ShaderStage, StorageAccess};
use rand::Rng;
use rand::seq::SliceRandom;
use starling_fuzz::Fuzz;
use starling_fuzz::mutate::TokenMutator;
use starling_kernels as kernels;
use starling_kernels::validate::{MAX_INVOCATIONS_PER_WORKGROUP, MAX_WORKGROUP_SIZE, validate_kernel};
use starling_protocol::job::{BuiltinKernel, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::limits::{MAX_INPUTS_PER_TASK, MAX_PARAM_WORDS, MAX_WGSL_BYTES};
use std::time::{Duration, Instant};

/// Custom kernels in the style clients write, beside the built-ins.
const CLIENT_KERNELS: &[&str] = &[
    "\
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < params.count) {
        output[id.x] = input[id.x] * 2u;
    }
}
",
    "\
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
var<workgroup> tile: array<f32, 256>;
const SCALE: f32 = 0.5;

fn mix2(x: f32, y: f32) -> f32 { return x * SCALE + y * (1.0 - SCALE); }

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_index) li: u32, @builtin(global_invocation_id) g: vec3<u32>) {
    tile[li] = a[g.x] + b[g.y];
    workgroupBarrier();
    var acc = 0.0;
    for (var i = 0u; i < 256u; i++) { acc += tile[i]; }
    out[g.x + g.y * 16u] = mix2(acc, f32(li));
    loop { if acc > 1.0 { break; } acc *= 2.0; }
    switch g.z { case 0u: { out[0] = 1.0; } default: {} }
}
",
];

fn corpus() -> Vec<String> {
    let mut corpus: Vec<String> = BuiltinKernel::ALL.iter().map(|&k| kernels::source(k).to_string()).collect();
    corpus.extend(CLIENT_KERNELS.iter().map(|s| s.to_string()));
    corpus
}

/// `(line, column)` names a place in `source`: a line that exists, a column within it or just
/// past its end (naga points there for "unexpected end of input").
fn location_is_in_source(source: &str, line: u32, column: u32) -> bool {
    let lines: Vec<&str> = source.split('\n').collect();
    if line == 0 || column == 0 || line as usize > lines.len().max(1) {
        return false;
    }
    let text = lines.get(line as usize - 1).copied().unwrap_or("");
    column as usize <= text.len() + 1
}

/// What `validate_kernel` promises about a kernel it accepts.
fn assert_follows_convention(module: &naga::Module, entry_point: &str, n_inputs: usize) {
    let entry = module.entry_points.iter().find(|e| e.name == entry_point).expect("the entry point exists");
    assert_eq!(entry.stage, ShaderStage::Compute);
    let size = entry.workgroup_size;
    assert!(size.iter().zip(MAX_WORKGROUP_SIZE).all(|(&s, max)| s <= max), "{size:?}");
    assert!(size.iter().map(|&s| u64::from(s)).product::<u64>() <= u64::from(MAX_INVOCATIONS_PER_WORKGROUP));
    let mut output = false;
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else { continue };
        assert_eq!(binding.group, 0);
        let b = binding.binding as usize;
        match var.space {
            AddressSpace::Uniform => assert_eq!(b, 0),
            AddressSpace::Storage { access } if (1..=n_inputs).contains(&b) => {
                assert!(!access.contains(StorageAccess::STORE))
            }
            AddressSpace::Storage { access } if b == n_inputs + 1 => {
                assert!(access.contains(StorageAccess::STORE));
                output = true;
            }
            other => panic!("binding {b} in {other:?} accepted"),
        }
    }
    assert!(output, "accepted without an output binding");
}

/// Inputs that take longer than this to validate hold a relay blocking thread too long.
const SLOW: Duration = Duration::from_secs(5);

#[test]
fn wgsl_front_door_never_panics_and_locates_errors() {
    // Nesting stays at 1,000 levels or less: deeper unary nesting overflows naga's parser (see
    // `deepest_nesting_within_the_size_limit_is_refused_on_a_small_stack`).
    let mutator = TokenMutator::new(corpus()).with_max_nesting(1000);
    let (mut accepted, mut slowest) = (0u64, Duration::ZERO);
    Fuzz::new("wgsl_front_door", 20_000).run(
        |rng| {
            // Mostly sizes like real kernels; now and then up to the relay's limit.
            let max_len = if rng.gen_ratio(1, 20) { MAX_WGSL_BYTES } else { 16 << 10 };
            let source = mutator.source(rng, max_len);
            let entry_point = if rng.gen_ratio(9, 10) { "main".to_string() } else { mutator.source(rng, 40) };
            (source, entry_point, rng.gen_range(0..=MAX_INPUTS_PER_TASK))
        },
        |(source, entry_point, n_inputs)| {
            let start = Instant::now();
            let result = validate_kernel(source, entry_point, *n_inputs);
            let took = start.elapsed();
            slowest = slowest.max(took);
            assert!(took < SLOW, "validation took {took:?}");
            match result {
                Ok(module) => {
                    accepted += 1;
                    assert_follows_convention(&module, entry_point, *n_inputs);
                }
                Err(e) => {
                    assert!(location_is_in_source(source, e.line, e.column), "{e} points outside the source");
                    assert!(!e.message.is_empty());
                    assert!(e.to_string().starts_with(&format!("{}:{}: ", e.line, e.column)));
                }
            }
        },
    );
    eprintln!("wgsl_front_door: {accepted} accepted, slowest {slowest:?}");
}

/// Valid tasks of every built-in kernel, as their builders make them.
fn builtin_tasks() -> Vec<(BuiltinKernel, TaskSpec, Vec<u64>)> {
    use kernels::{mandelbrot, matmul_f32, monte_carlo_pi, sha256_nonce_search};
    let h = starling_protocol::sha256(b"");
    let mut out = Vec::new();
    for t in mandelbrot::tile_job_tasks(64, 48, 16, 100, (-0.5, 0.0), 3.0) {
        out.push((BuiltinKernel::Mandelbrot, t, vec![]));
    }
    for (m, n, k) in [(2, 2, 2), (16, 8, 4), (33, 1, 7)] {
        out.push((
            BuiltinKernel::MatmulF32,
            matmul_f32::task_for(m, n, k, h, h),
            vec![4 * u64::from(m * k), 4 * u64::from(k * n)],
        ));
    }
    for t in monte_carlo_pi::tasks(7, 3, 4, 16) {
        out.push((BuiltinKernel::MonteCarloPi, t, vec![]));
    }
    for t in sha256_nonce_search::tasks([3; 32], 0, 3, 2, 8) {
        out.push((BuiltinKernel::Sha256NonceSearch, t, vec![]));
    }
    out
}

type BuiltinCase = (BuiltinKernel, TaskSpec, Vec<u64>);

/// A valid built-in task with one to three things changed: param words at edges, word count,
/// workgroups, output size, input sizes, or the kernel.
fn mutated_builtin_task(rng: &mut rand::rngs::StdRng, valid: &[BuiltinCase]) -> BuiltinCase {
    let edge = |rng: &mut rand::rngs::StdRng| -> u32 {
        *[0, 1, 2, 3, 4, 16, 64, 255, 256, 65_535, 65_536, 1 << 31, u32::MAX - 1, u32::MAX, rng.r#gen()]
            .choose(rng)
            .unwrap()
    };
    let (kernel, task, sizes) = valid.choose(rng).unwrap();
    let (mut kernel, mut task, mut sizes) = (*kernel, task.clone(), sizes.clone());
    for _ in 0..rng.gen_range(1..=3) {
        match rng.gen_range(0..8) {
            0 | 1 if !task.params.is_empty() => {
                let i = rng.gen_range(0..task.params.len());
                task.params[i] = edge(rng);
            }
            2 => {
                let to = rng.gen_range(0..=MAX_PARAM_WORDS);
                task.params.resize(to, edge(rng));
            }
            3 => task.workgroups[rng.gen_range(0..3)] = edge(rng),
            4 => task.output_size = edge(rng),
            5 => {
                sizes = (0..rng.gen_range(0..=3))
                    .map(|_| *[0, 4, 16, 1 << 20, u64::from(u32::MAX), u64::MAX, rng.r#gen()].choose(rng).unwrap())
                    .collect()
            }
            6 => kernel = *BuiltinKernel::ALL.choose(rng).unwrap(),
            _ => {
                if let Some(w) = task.params.choose_mut(rng) {
                    *w = w.wrapping_add(rng.gen_range(0..3)).wrapping_sub(1);
                }
            }
        }
    }
    (kernel, task, sizes)
}

/// What the relay does with a built-in task a client posts: `JobSpec::validate`, then
/// `kernels::check_sizes` on the tasks it let through.
#[test]
fn builtin_task_checks_as_the_relay_runs_them() {
    let valid = builtin_tasks();
    for (kernel, task, sizes) in &valid {
        kernels::check_sizes(*kernel, &task.params, sizes, task.workgroups, task.output_size)
            .unwrap_or_else(|e| panic!("corpus task for {kernel:?} refused: {e}"));
    }
    let mut accepted = 0u64;
    Fuzz::new("builtin_task_checks", 200_000).run(
        |rng| mutated_builtin_task(rng, &valid),
        |(kernel, task, sizes)| {
            let spec = JobSpec {
                label: String::new(),
                kernel: KernelSpec::Builtin { name: *kernel },
                tasks: vec![task.clone()],
                comparison: Default::default(),
                replicas: 2,
                quorum: 2,
                max_replicas: 4,
                price_per_replica: 0,
                deadline_secs: 600,
                homogeneous: false,
                nonce: 0,
                adaptive: None,
                kernels: Vec::new(),
            };
            if spec.validate().is_ok()
                && kernels::check_sizes(*kernel, &task.params, sizes, task.workgroups, task.output_size).is_ok()
            {
                accepted += 1;
            }
        },
    );
    assert!(accepted > 0, "no mutated task passed the checks; the target only tests refusals");
}

/// What a worker does with an assignment from its relay: `kernels::check` runs on whatever the
/// relay sent, before the engine compares workgroups with the device's limits. Includes the
/// inputs that used to overflow.
///
/// Was a bug: `kernels::total_workgroups` multiplies the three counts in u64
/// unchecked, so workgroups beyond `JobSpec::validate`'s bounds overflow in
/// `MonteCarloParams::output_size` (monte_carlo_pi.rs) and `Sha256Params::output_size`: a panic in
/// debug builds, and in release a wrapped product that can match a small `output_size`, after
/// which `run_cpu` loops over the true (huge) workgroup count. Found with
/// `(MonteCarloPi, params [7, 0, 8, 15], workgroups [4294967294, 2147483648, 1], output 16)`.
/// Fix: saturating or checked products in `total_workgroups`, or `check_sizes` refusing any
/// count over `MAX_WORKGROUPS_PER_DIM` before the kernel's own check.
#[test]
fn builtin_task_checks_on_any_assignment() {
    let valid = builtin_tasks();
    Fuzz::new("builtin_task_checks_any", 200_000).run(
        |rng| mutated_builtin_task(rng, &valid),
        |(kernel, task, sizes)| {
            let _ = kernels::check_sizes(*kernel, &task.params, sizes, task.workgroups, task.output_size);
        },
    );
}

/// The relay validates client WGSL on a tokio blocking thread (2 MiB of stack by default): the
/// deepest nesting that fits in `MAX_WGSL_BYTES` must come back as an error, not overflow the
/// stack and abort the relay.
///
/// Was a bug (it aborted the process): naga's WGSL parser recurses
/// once per prefix unary operator with no depth limit (its limit covers parentheses, which come
/// back as an error). On a 2 MiB stack `let x = !!!…!true;` parses at 4,000 operators and
/// overflows the stack at 6,000 (`!`, `-`, `~` and `*&` alike), about 6 KB of source; the relay
/// process aborts on one `POST /v1/jobs` (see `relay/tests/it/fuzz_http.rs`,
/// `deeply_nested_wgsl_does_not_abort_the_relay`). Same family as gfx-rs/wgpu#5759 and #4352.
/// Fix in `validate_kernel` (or where the relay calls it): refuse sources whose nesting of
/// prefix operators and brackets passes a few hundred before calling naga, or run naga on a
/// thread whose stack fits the deepest nesting `MAX_WGSL_BYTES` allows (about 400 bytes per
/// level: 64 KiB of operators needs about 26 MiB).
#[test]
fn deepest_nesting_within_the_size_limit_is_refused_on_a_small_stack() {
    let body = |open: &str, close: &str, filler: &str| {
        let frame = "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
                     @compute @workgroup_size(1) fn main() { let x = ; o[0] = 1u; }";
        let room = MAX_WGSL_BYTES - frame.len() - filler.len();
        let depth = room / (open.len() + close.len());
        frame.replace("let x = ;", &format!("let x = {}{filler}{};", open.repeat(depth), close.repeat(depth)))
    };
    let sources = [
        body("(", ")", "1u"),
        body("-", "", "1"),
        body("!", "", "true"),
        body("~", "", "1u"),
        body("array<", ">", "u32"),
        body("vec2(", ")", "1u"),
        body("*&", "", "o[0]"),
        // Nested blocks and ifs instead of expressions.
        format!(
            "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
             @compute @workgroup_size(1) fn main() {{ {}o[0] = 1u;{} }}",
            "{".repeat(MAX_WGSL_BYTES / 3),
            "}".repeat(MAX_WGSL_BYTES / 3)
        ),
        format!(
            "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
             @compute @workgroup_size(1) fn main() {{ {}o[0] = 1u;{} }}",
            "if true {".repeat(MAX_WGSL_BYTES / 11),
            "}".repeat(MAX_WGSL_BYTES / 11)
        ),
    ];
    for (i, source) in sources.into_iter().enumerate() {
        eprintln!("nesting source {i}");
        assert!(source.len() <= MAX_WGSL_BYTES + 16, "{}", source.len());
        let head: String = source.chars().skip(100).take(40).collect();
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || validate_kernel(&source, "main", 0).map(|_| ()))
            .unwrap()
            .join()
            .unwrap_or_else(|_| panic!("validator panicked on nesting {head:?}"));
        let _ = result;
    }
}
