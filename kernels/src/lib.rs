//! The built-in kernel library: one module per [`BuiltinKernel`], each with its WGSL (a sibling
//! `.wgsl` file), typed parameters that round-trip through the task's `params` words, dispatch and
//! output-size helpers, job builders and a CPU reference.
//!
//! Built-ins follow the same binding convention as client WGSL (see [`starling_protocol::job`])
//! and all use the entry point [`ENTRY_POINT`]. Before a built-in runs, on the GPU or the CPU,
//! [`check`] refuses any task whose params, inputs, workgroup counts or output size differ from
//! what the kernel computes, so the GPU and the CPU reference always produce the same bytes
//! (exact kernels) or the same values within f32 tolerance (`matmul_f32`).
//!
//! Hot loops are unrolled by hand: wgpu bounds every loop by default, which stops drivers from
//! unrolling them (see TOOLCHAIN.md).
//!
//! [`job`] assembles and checks a whole job's spec (the CLI and the web app build through it).
//!
//! This crate has no GPU dependency: the relay, the CLI and the web app build jobs and check
//! results with it. [`validate`] (naga validation of client WGSL, with line and column in every
//! error) is behind the `validate` feature; the GPU engine that runs these kernels is
//! `starling-web-worker`.

pub mod error;
pub mod examples;
pub mod job;
#[cfg(feature = "validate")]
pub mod validate;

pub use error::{Error, Result, WgslError};
use starling_protocol::job::{BuiltinKernel, KernelSpec};

#[cfg(feature = "datasets")]
pub mod digits;
pub mod mandelbrot;
pub mod matmul_f32;
pub mod matmul_tiled;
pub mod mlp_f32;
pub mod mlp_fx;
pub mod monte_carlo_pi;
pub mod reduce;
pub mod sha256_nonce_search;
pub mod top_k;
pub mod train;

/// The entry point of every built-in kernel.
pub const ENTRY_POINT: &str = "main";

/// The WGSL a built-in runs with these params: [`source`], except that a matmul whose `k` and
/// `n` are multiples of 4 runs the generated register-tiled kernel
/// ([`matmul_tiled::default_source`]), which covers the same 64 x 64 blocks of C with the same
/// dispatch (so a task's spec, its checks and its CPU reference do not change).
pub fn source_for(kernel: BuiltinKernel, params: &[u32]) -> &'static str {
    match kernel {
        BuiltinKernel::MatmulF32 => matmul_source(params),
        BuiltinKernel::SumI32 | BuiltinKernel::SumF32 | BuiltinKernel::Concat | BuiltinKernel::TopKU32 => {
            reduction_source(kernel, params)
        }
        _ => source(kernel),
    }
}

/// The matmul's WGSL for these params (see [`source_for`]).
fn matmul_source(params: &[u32]) -> &'static str {
    match matmul_f32::MatmulParams::from_words(params) {
        Ok(p) if matmul_tiled::Tiling::fits(p.k, p.n) => matmul_tiled::default_source(),
        _ => matmul_f32::SOURCE,
    }
}

/// A reduction's WGSL for the fan-in its params name.
fn reduction_source(kernel: BuiltinKernel, params: &[u32]) -> &'static str {
    let fan_in = reduction_fan_in(kernel, params).unwrap_or(1);
    match kernel {
        BuiltinKernel::TopKU32 => top_k::source(fan_in),
        _ => reduce::source(kernel, fan_in),
    }
}

/// The fan-in a reduction's params name (clamped to what the kernel takes), `None` for any other
/// kernel.
fn reduction_fan_in(kernel: BuiltinKernel, params: &[u32]) -> Option<usize> {
    matches!(kernel, BuiltinKernel::SumI32 | BuiltinKernel::SumF32 | BuiltinKernel::Concat | BuiltinKernel::TopKU32)
        .then(|| params.get(1).map_or(1, |&n| (n as usize).clamp(1, reduce::MAX_FAN_IN)))
}

/// The kernel's WGSL source (its only one, except for the matmul and the reductions, whose
/// source depends on their params: see [`source_for`]; a reduction's here is its one-input form).
pub fn source(kernel: BuiltinKernel) -> &'static str {
    match kernel {
        BuiltinKernel::Mandelbrot => mandelbrot::SOURCE,
        BuiltinKernel::MatmulF32 => matmul_f32::SOURCE,
        BuiltinKernel::MonteCarloPi => monte_carlo_pi::SOURCE,
        BuiltinKernel::Sha256NonceSearch => sha256_nonce_search::SOURCE,
        BuiltinKernel::SumI32 | BuiltinKernel::SumF32 | BuiltinKernel::Concat => reduce::source(kernel, 1),
        BuiltinKernel::MlpGradFx => mlp_fx::GRAD_SOURCE,
        BuiltinKernel::MlpStepFx => mlp_fx::STEP_SOURCE,
        BuiltinKernel::MlpInferFx => mlp_fx::INFER_SOURCE,
        BuiltinKernel::MlpGradF32 => mlp_f32::GRAD_SOURCE,
        BuiltinKernel::MlpStepF32 => mlp_f32::STEP_SOURCE,
        BuiltinKernel::TopKU32 => top_k::source(1),
    }
}

/// Bytes of intermediate buffers a built-in keeps beside its inputs and output (one that runs as
/// several dispatches), 0 for the others or params it refuses.
pub fn intermediate_bytes(kernel: BuiltinKernel, params: &[u32]) -> u64 {
    match kernel {
        BuiltinKernel::MlpGradF32 => mlp_fx::Shape::from_words(kernel, params).map_or(0, |s| mlp_f32::rows_bytes(&s)),
        _ => 0,
    }
}

/// The dispatches of a built-in that runs as several (a [`KernelSpec::Pipeline`] over its own
/// WGSL, with each stage's workgroups set), `None` for a one-dispatch built-in or params it
/// refuses.
///
/// [`KernelSpec::Pipeline`]: starling_protocol::job::KernelSpec::Pipeline
pub fn pipeline_for(kernel: BuiltinKernel, params: &[u32]) -> Option<starling_protocol::job::KernelSpec> {
    match kernel {
        BuiltinKernel::MlpGradF32 => mlp_fx::Shape::from_words(kernel, params).ok().map(mlp_f32::grad_pipeline),
        _ => None,
    }
}

/// The WGSL program the GPU runs for a built-in with these params: its kernel at [`ENTRY_POINT`]
/// ([`source_for`]) with every input bound, or, for a built-in that runs as several dispatches,
/// the pipeline it expands to ([`pipeline_for`]).
pub fn program(kernel: BuiltinKernel, params: &[u32]) -> KernelSpec {
    WgslGroup::of(kernel).program()(kernel, params)
}

/// Builds [`program`] for the kernels of one [`WgslGroup`].
pub type ProgramFn = fn(BuiltinKernel, &[u32]) -> KernelSpec;

/// The built-ins by the WGSL they share. Each group's [`WgslGroup::program`] names only its own
/// WGSL, so the web app keeps each group's WGSL in a chunk of its own, fetched with the group's
/// first task (`starling-web-worker`'s browser engine): a phone that only ever renders Mandelbrot
/// tiles never downloads the SHA-256 search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgslGroup {
    Mandelbrot,
    Matmul,
    MonteCarloPi,
    Sha256NonceSearch,
    /// Sums, concatenation and top-k, generated for their fan-in.
    Reductions,
    /// The fixed-point network's gradient, step and inference.
    MlpFx,
    /// The f32 network's gradient pipeline and step.
    MlpF32,
}

impl WgslGroup {
    pub fn of(kernel: BuiltinKernel) -> Self {
        match kernel {
            BuiltinKernel::Mandelbrot => WgslGroup::Mandelbrot,
            BuiltinKernel::MatmulF32 => WgslGroup::Matmul,
            BuiltinKernel::MonteCarloPi => WgslGroup::MonteCarloPi,
            BuiltinKernel::Sha256NonceSearch => WgslGroup::Sha256NonceSearch,
            BuiltinKernel::SumI32 | BuiltinKernel::SumF32 | BuiltinKernel::Concat | BuiltinKernel::TopKU32 => {
                WgslGroup::Reductions
            }
            BuiltinKernel::MlpGradFx | BuiltinKernel::MlpStepFx | BuiltinKernel::MlpInferFx => WgslGroup::MlpFx,
            BuiltinKernel::MlpGradF32 | BuiltinKernel::MlpStepF32 => WgslGroup::MlpF32,
        }
    }

    /// [`program`] for this group's kernels (given another group's kernel, it builds this
    /// group's WGSL all the same: pick the group with [`WgslGroup::of`]).
    pub fn program(self) -> ProgramFn {
        match self {
            WgslGroup::Mandelbrot => programs::mandelbrot,
            WgslGroup::Matmul => programs::matmul,
            WgslGroup::MonteCarloPi => programs::monte_carlo_pi,
            WgslGroup::Sha256NonceSearch => programs::sha256_nonce_search,
            WgslGroup::Reductions => programs::reductions,
            WgslGroup::MlpFx => programs::mlp_fx,
            WgslGroup::MlpF32 => programs::mlp_f32,
        }
    }
}

/// One [`ProgramFn`] per [`WgslGroup`], each naming its group's WGSL only (the browser engine's
/// split points name these, not [`WgslGroup::program`], which names them all).
pub mod programs {
    use super::*;

    fn one(source: &str) -> KernelSpec {
        KernelSpec::Wgsl { source: source.to_string(), entry_point: ENTRY_POINT.to_string() }
    }

    pub fn mandelbrot(_: BuiltinKernel, _: &[u32]) -> KernelSpec {
        one(mandelbrot::SOURCE)
    }

    pub fn matmul(_: BuiltinKernel, params: &[u32]) -> KernelSpec {
        one(matmul_source(params))
    }

    pub fn monte_carlo_pi(_: BuiltinKernel, _: &[u32]) -> KernelSpec {
        one(monte_carlo_pi::SOURCE)
    }

    pub fn sha256_nonce_search(_: BuiltinKernel, _: &[u32]) -> KernelSpec {
        one(sha256_nonce_search::SOURCE)
    }

    pub fn reductions(kernel: BuiltinKernel, params: &[u32]) -> KernelSpec {
        one(reduction_source(kernel, params))
    }

    pub fn mlp_fx(kernel: BuiltinKernel, _: &[u32]) -> KernelSpec {
        one(match kernel {
            BuiltinKernel::MlpStepFx => mlp_fx::STEP_SOURCE,
            BuiltinKernel::MlpInferFx => mlp_fx::INFER_SOURCE,
            _ => mlp_fx::GRAD_SOURCE,
        })
    }

    pub fn mlp_f32(kernel: BuiltinKernel, params: &[u32]) -> KernelSpec {
        pipeline_for(kernel, params).unwrap_or_else(|| {
            one(match kernel {
                BuiltinKernel::MlpStepF32 => mlp_f32::STEP_SOURCE,
                _ => mlp_f32::GRAD_SOURCE,
            })
        })
    }
}

/// How many input blobs the kernel binds (bindings `1..=n`) with these params.
pub fn n_inputs(kernel: BuiltinKernel, params: &[u32]) -> usize {
    match kernel {
        BuiltinKernel::Mandelbrot => mandelbrot::N_INPUTS,
        BuiltinKernel::MatmulF32 => matmul_f32::N_INPUTS,
        BuiltinKernel::MonteCarloPi => monte_carlo_pi::N_INPUTS,
        BuiltinKernel::Sha256NonceSearch => sha256_nonce_search::N_INPUTS,
        BuiltinKernel::SumI32 | BuiltinKernel::SumF32 | BuiltinKernel::Concat | BuiltinKernel::TopKU32 => {
            reduction_fan_in(kernel, params).unwrap_or(1)
        }
        BuiltinKernel::MlpGradFx | BuiltinKernel::MlpGradF32 => 3,
        BuiltinKernel::MlpStepFx | BuiltinKernel::MlpInferFx | BuiltinKernel::MlpStepF32 => 2,
    }
}

/// Refuses a task the kernel would not compute exactly as described: wrong param words, wrong
/// number or size of inputs, workgroup counts that do not cover the work, or an output size other
/// than what the kernel writes.
pub fn check(
    kernel: BuiltinKernel,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<()> {
    let sizes: Vec<u64> = inputs.iter().map(|i| i.len() as u64).collect();
    check_sizes(kernel, params, &sizes, workgroups, output_size)
}

/// [`check`] from the input sizes alone, for callers (the relay) that hold blob sizes, not bytes.
pub fn check_sizes(
    kernel: BuiltinKernel,
    params: &[u32],
    input_sizes: &[u64],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<()> {
    if input_sizes.len() != n_inputs(kernel, params) {
        return Err(kernel_error(format!(
            "{} takes {} input(s), got {}",
            kernel.name(),
            n_inputs(kernel, params),
            input_sizes.len()
        )));
    }
    if workgroups.contains(&0) {
        return Err(kernel_error("workgroup counts must be at least 1"));
    }
    match kernel {
        BuiltinKernel::Mandelbrot => mandelbrot::MandelbrotParams::from_words(params)?.check(workgroups, output_size),
        BuiltinKernel::MatmulF32 => {
            matmul_f32::MatmulParams::from_words(params)?.check(input_sizes, workgroups, output_size)
        }
        BuiltinKernel::MonteCarloPi => {
            monte_carlo_pi::MonteCarloParams::from_words(params)?.check(workgroups, output_size)
        }
        BuiltinKernel::Sha256NonceSearch => {
            sha256_nonce_search::Sha256Params::from_words(params)?.check(workgroups, output_size)
        }
        BuiltinKernel::SumI32 | BuiltinKernel::SumF32 | BuiltinKernel::Concat => {
            reduce::ReduceParams::from_words(kernel, params)?.check(kernel, input_sizes, workgroups, output_size)
        }
        BuiltinKernel::TopKU32 => top_k::TopKParams::from_words(params)?.check(input_sizes, workgroups, output_size),
        BuiltinKernel::MlpGradFx | BuiltinKernel::MlpInferFx => {
            mlp_fx::Shape::from_words(kernel, params)?.check(kernel, input_sizes, workgroups, output_size)
        }
        BuiltinKernel::MlpStepFx => mlp_fx::StepParams::from_words(params)?.check(input_sizes, workgroups, output_size),
        BuiltinKernel::MlpGradF32 => {
            mlp_f32::check_grad(&mlp_fx::Shape::from_words(kernel, params)?, input_sizes, workgroups, output_size)
        }
        BuiltinKernel::MlpStepF32 => mlp_f32::StepF32::from_words(params)?.check(input_sizes, workgroups, output_size),
    }
}

/// Runs the kernel's CPU reference after [`check`].
pub fn run_cpu(
    kernel: BuiltinKernel,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<Vec<u8>> {
    check(kernel, params, inputs, workgroups, output_size)?;
    let output = match kernel {
        BuiltinKernel::Mandelbrot => mandelbrot::MandelbrotParams::from_words(params)?.cpu(),
        BuiltinKernel::MatmulF32 => matmul_f32::MatmulParams::from_words(params)?.cpu(inputs[0], inputs[1]),
        BuiltinKernel::MonteCarloPi => monte_carlo_pi::MonteCarloParams::from_words(params)?.cpu(workgroups),
        BuiltinKernel::Sha256NonceSearch => sha256_nonce_search::Sha256Params::from_words(params)?.cpu(workgroups),
        BuiltinKernel::SumI32 | BuiltinKernel::SumF32 | BuiltinKernel::Concat => {
            reduce::ReduceParams::from_words(kernel, params)?.cpu(kernel, inputs)
        }
        BuiltinKernel::TopKU32 => top_k::TopKParams::from_words(params)?.cpu(inputs),
        BuiltinKernel::MlpGradFx => {
            mlp_fx::Shape::from_words(kernel, params)?.grad_cpu(inputs[0], inputs[1], inputs[2])
        }
        BuiltinKernel::MlpInferFx => mlp_fx::Shape::from_words(kernel, params)?.infer_cpu(inputs[0], inputs[1]),
        BuiltinKernel::MlpStepFx => mlp_fx::StepParams::from_words(params)?.cpu(inputs[0], inputs[1]),
        BuiltinKernel::MlpGradF32 => {
            mlp_f32::grad_cpu(&mlp_fx::Shape::from_words(kernel, params)?, inputs[0], inputs[1], inputs[2])
        }
        BuiltinKernel::MlpStepF32 => mlp_f32::StepF32::from_words(params)?.cpu(inputs[0], inputs[1]),
    };
    debug_assert_eq!(output.len(), output_size as usize);
    Ok(output)
}

pub(crate) fn kernel_error(message: impl Into<String>) -> Error {
    Error::Kernel(message.into())
}

/// Refuses `words` unless it has exactly `n` of them.
pub(crate) fn expect_words(kernel: BuiltinKernel, words: &[u32], n: usize) -> Result<()> {
    if words.len() == n {
        Ok(())
    } else {
        Err(kernel_error(format!("{} takes {n} param words, got {}", kernel.name(), words.len())))
    }
}

/// Refuses `workgroups` unless it is exactly `expected`.
pub(crate) fn expect_workgroups(kernel: BuiltinKernel, workgroups: [u32; 3], expected: [u32; 3]) -> Result<()> {
    if workgroups == expected {
        Ok(())
    } else {
        Err(kernel_error(format!("{} needs workgroups {expected:?}, got {workgroups:?}", kernel.name())))
    }
}

/// Refuses `output_size` unless it is exactly `expected` bytes.
pub(crate) fn expect_output_size(kernel: BuiltinKernel, output_size: u32, expected: u64) -> Result<()> {
    if u64::from(output_size) == expected {
        Ok(())
    } else {
        Err(kernel_error(format!("{} writes {expected} bytes of output, not {output_size}", kernel.name())))
    }
}

/// The number of workgroups in a dispatch, and the linear index order every kernel uses:
/// `x + y * nx + z * nx * ny`.
/// Saturates rather than overflow: a dispatch a relay (or a fuzzer) names may be absurd, and
/// must then fail the size checks, not wrap into a small count.
pub(crate) fn total_workgroups(workgroups: [u32; 3]) -> u64 {
    workgroups.iter().fold(1u64, |n, &w| n.saturating_mul(u64::from(w)))
}

/// Splits `count` workgroups into a dispatch no dimension of which is over the WebGPU limit
/// (65 535), for kernels whose output is one record per workgroup. `None` when `count` is 0 or
/// has no such factorisation within two dimensions.
pub fn linear_workgroups(count: u32) -> Option<[u32; 3]> {
    const MAX: u32 = starling_protocol::limits::MAX_WORKGROUPS_PER_DIM;
    if count == 0 {
        return None;
    }
    if count <= MAX {
        return Some([count, 1, 1]);
    }
    (count.div_ceil(MAX)..=MAX).find(|&y| count.is_multiple_of(y) && count / y <= MAX).map(|y| [count / y, y, 1])
}

/// `ceil(a / b)` for workgroup counts.
pub(crate) fn groups(a: u32, b: u32) -> u32 {
    a.div_ceil(b)
}

/// Low and high words of the unsigned 64-bit product `a * b`, computed from 16-bit limbs exactly
/// as the WGSL `mul_wide` does (WGSL has no 64-bit integers). Kept here so tests can hold the
/// limb arithmetic against native 64-bit multiplication.
pub fn mul_wide(a: u32, b: u32) -> (u32, u32) {
    let (a0, a1) = (a & 0xffff, a >> 16);
    let (b0, b1) = (b & 0xffff, b >> 16);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    let lo = (mid << 16) | (p00 & 0xffff);
    let hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16);
    (lo, hi)
}

/// Little-endian bytes of `words`, as the GPU writes them.
pub(crate) fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Reads `bytes` as little-endian u32 words; a trailing partial word is ignored.
pub fn bytes_to_words(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_wide_matches_64_bit_multiplication() {
        let edge = [0, 1, 2, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xdead_beef, 0xffff_fffe, u32::MAX];
        let mut x = 0x1234_5678u32;
        let mut values = edge.to_vec();
        for _ in 0..200 {
            // xorshift32: deterministic spread of values
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values.push(x);
        }
        for &a in &values {
            for &b in &values {
                let wide = u64::from(a) * u64::from(b);
                assert_eq!(mul_wide(a, b), (wide as u32, (wide >> 32) as u32), "{a:#x} * {b:#x}");
            }
        }
    }

    #[cfg(feature = "validate")]
    #[test]
    fn every_builtin_follows_the_binding_convention() {
        for kernel in BuiltinKernel::ALL {
            let shape = [64, 32, 10, 100];
            match pipeline_for(kernel, &shape) {
                Some(pipeline) => {
                    let stages = pipeline.dispatches(n_inputs(kernel, &shape));
                    crate::validate::validate_pipeline(source(kernel), &stages)
                }
                None => crate::validate::validate_kernel(source(kernel), ENTRY_POINT, n_inputs(kernel, &[1, 1])),
            }
            .unwrap_or_else(|e| panic!("{}: {e}", kernel.name()));
        }
    }

    /// Each group's program is what [`source_for`] and [`pipeline_for`] say the kernel runs, for
    /// params of every shape the program depends on (tiled or not, every fan-in, a gradient that
    /// runs as a pipeline or params it refuses); the groups cover every kernel, and no two kernels
    /// of different groups share WGSL (each group's chunk is all a task of it needs).
    #[test]
    fn each_group_builds_what_its_kernels_run() {
        let matmul =
            |m: u32, k: u32, n: u32| matmul_f32::MatmulParams { m, k, n, row_offset: 0, rows: m.min(64) }.to_words();
        let mut params: Vec<Vec<u32>> = vec![vec![], vec![0], vec![64, 32, 10, 100], vec![u32::MAX; 6]];
        params.extend([matmul(64, 64, 64), matmul(64, 63, 64), matmul(8, 4, 12)]);
        params.extend((0..=reduce::MAX_FAN_IN as u32 + 1).map(|fan_in| vec![16, fan_in]));
        let expected = |kernel: BuiltinKernel, params: &[u32]| {
            pipeline_for(kernel, params).unwrap_or_else(|| KernelSpec::Wgsl {
                source: source_for(kernel, params).to_string(),
                entry_point: ENTRY_POINT.to_string(),
            })
        };
        let sources = |spec: &KernelSpec| match spec {
            KernelSpec::Wgsl { source, .. } | KernelSpec::Pipeline { source, .. } => source.clone(),
            KernelSpec::Builtin { .. } => panic!("a program is WGSL"),
        };
        let mut seen: Vec<(String, WgslGroup)> = Vec::new();
        for kernel in BuiltinKernel::ALL {
            let group = WgslGroup::of(kernel);
            for words in &params {
                let built = group.program()(kernel, words);
                assert_eq!(built, expected(kernel, words), "{} with {words:?}", kernel.name());
                assert_eq!(program(kernel, words), built);
                let source = sources(&built);
                if let Some((_, other)) = seen.iter().find(|(s, g)| *s == source && *g != group) {
                    panic!("{} ({group:?}) shares its WGSL with {other:?}", kernel.name());
                }
                seen.push((source, group));
            }
        }
        assert!(params.iter().any(|w| pipeline_for(BuiltinKernel::MlpGradF32, w).is_some()), "a pipeline is covered");
        assert_ne!(
            program(BuiltinKernel::MatmulF32, &matmul(64, 64, 64)),
            program(BuiltinKernel::MatmulF32, &matmul(64, 63, 64)),
            "the tiled matmul and the plain one are both covered"
        );
    }

    #[test]
    fn linear_workgroups_respects_the_per_dimension_limit() {
        assert_eq!(linear_workgroups(0), None);
        assert_eq!(linear_workgroups(7), Some([7, 1, 1]));
        assert_eq!(linear_workgroups(65_535), Some([65_535, 1, 1]));
        let [x, y, z] = linear_workgroups(131_072).unwrap();
        assert_eq!((u64::from(x) * u64::from(y), z), (131_072, 1));
        assert!(x <= 65_535 && y <= 65_535);
        // A prime above the limit has no two-dimensional split.
        assert_eq!(linear_workgroups(65_537), None);
    }

    #[test]
    fn check_refuses_wrong_input_counts_and_zero_workgroups() {
        let params = mandelbrot::MandelbrotParams::for_tile(
            16,
            16,
            mandelbrot::Tile { x: 0, y: 0, width: 16, height: 16 },
            10,
            (0.0, 0.0),
            3.0,
        );
        let words = params.to_words();
        check(BuiltinKernel::Mandelbrot, &words, &[], params.workgroups(), params.output_size()).unwrap();
        assert!(matches!(
            check(BuiltinKernel::Mandelbrot, &words, &[&[0u8; 4]], params.workgroups(), params.output_size()),
            Err(Error::Kernel(_))
        ));
        assert!(matches!(
            check(BuiltinKernel::Mandelbrot, &words, &[], [0, 1, 1], params.output_size()),
            Err(Error::Kernel(_))
        ));
        assert!(matches!(
            check(BuiltinKernel::Mandelbrot, &words[1..], &[], params.workgroups(), params.output_size()),
            Err(Error::Kernel(_))
        ));
    }
}
