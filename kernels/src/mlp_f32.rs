//! The two-layer network of [`crate::mlp_fx`] in f32: `mlp_grad_f32` and `mlp_step_f32`, with
//! the same params, layouts and figures. Float results differ in their last bits across GPUs
//! (exp, fused multiply-adds), so a job of these compares within a tolerance (or runs
//! `homogeneous`, on one adapter class, for exact agreement); the fixed-point kernels are the
//! ones whose every result compares exactly.
//!
//! `mlp_grad_f32` is a pipeline of two dispatches ([`grad_pipeline`]): `per_sample` writes each
//! sample's gradient row into an intermediate buffer, `sum_rows` adds the rows in sample order.

use super::{expect_output_size, expect_words, expect_workgroups, kernel_error, words_to_bytes};
use crate::mlp_fx::Shape;
use crate::{Result, bytes_to_words};
use starling_protocol::job::{BuiltinKernel, KernelSpec, NamedBuffer, Stage};
use starling_protocol::limits::MAX_OUTPUT_BYTES;

pub const GRAD_SOURCE: &str = include_str!("mlp/grad_f32.wgsl");
pub const STEP_SOURCE: &str = include_str!("mlp/step_f32.wgsl");

/// The dispatches of `mlp_grad_f32` for `shape`: the per-sample rows, then their sum.
pub fn grad_pipeline(shape: Shape) -> KernelSpec {
    let words = shape.grad_words();
    let stage = |entry: &str, inputs: &[&str], output: &str, workgroups| Stage {
        entry_point: entry.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: output.into(),
        workgroups: Some(workgroups),
    };
    let sum_groups = crate::linear_workgroups(words.div_ceil(64)).unwrap_or([1, 1, 1]);
    KernelSpec::Pipeline {
        source: GRAD_SOURCE.into(),
        buffers: vec![NamedBuffer { name: "rows".into(), size: shape.samples.saturating_mul(words).saturating_mul(4) }],
        stages: vec![
            stage("per_sample", &["input:0", "input:1", "input:2"], "rows", shape.workgroups()),
            stage("sum_rows", &["rows"], "output", sum_groups),
        ],
    }
}

/// Most samples one `mlp_grad_f32` task takes: `sum_rows` loops over them in each invocation,
/// and a dispatch must end well within a browser's or a driver's watchdog.
pub const MAX_SAMPLES: u32 = 8192;

/// The bytes of the per-sample rows a gradient task of `shape` keeps.
pub fn rows_bytes(shape: &Shape) -> u64 {
    u64::from(shape.samples) * u64::from(shape.grad_words()) * 4
}

/// Refuses a gradient task whose per-sample rows would not fit one buffer, or too many samples.
pub(crate) fn check_grad(shape: &Shape, sizes: &[u64], workgroups: [u32; 3], output_size: u32) -> Result<()> {
    if shape.samples > MAX_SAMPLES {
        return Err(kernel_error(format!("mlp_grad_f32 takes at most {MAX_SAMPLES} samples a task; split the batch")));
    }
    let rows = rows_bytes(shape);
    if rows > u64::from(MAX_OUTPUT_BYTES) {
        return Err(kernel_error(format!(
            "mlp_grad_f32 keeps a row per sample: {rows} bytes for these samples, over {MAX_OUTPUT_BYTES}; split the batch"
        )));
    }
    shape.check(BuiltinKernel::MlpGradF32, sizes, workgroups, output_size)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes_to_words(bytes).into_iter().map(f32::from_bits).collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    words_to_bytes(&values.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
}

/// The CPU reference of `mlp_grad_f32`, in the WGSL's order of operations.
// Index loops, as the WGSL's: the reference is read beside the kernel, line for line.
#[allow(clippy::needless_range_loop)]
pub fn grad_cpu(shape: &Shape, weights: &[u8], xs: &[u8], labels: &[u8]) -> Vec<u8> {
    let (w, xs, labels) = (f32s(weights), f32s(xs), bytes_to_words(labels));
    let (ni, nh, no) = (shape.inputs as usize, shape.hidden as usize, shape.outputs as usize);
    let (b1, w2) = (nh * ni, nh * ni + nh);
    let b2 = w2 + no * nh;
    let total = b2 + no;
    let mut grad = vec![0f32; total + 2];
    let mut row = vec![0f32; total + 2];
    for s in 0..shape.samples as usize {
        let x = &xs[s * ni..(s + 1) * ni];
        let y = labels[s] as usize;
        let h: Vec<f32> =
            (0..nh).map(|j| (0..ni).fold(w[b1 + j], |acc, k| acc + w[j * ni + k] * x[k]).max(0.0)).collect();
        let z: Vec<f32> = (0..no).map(|o| (0..nh).fold(w[b2 + o], |acc, j| acc + w[w2 + o * nh + j] * h[j])).collect();
        let best = (0..no).fold(0, |b, o| if z[o] > z[b] { o } else { b });
        let top = z[best];
        let e: Vec<f32> = z.iter().map(|v| (v - top).exp()).collect();
        let sum = e.iter().fold(0.0f32, |a, v| a + v);
        let d: Vec<f32> = (0..no).map(|o| e[o] / sum - if o == y { 1.0 } else { 0.0 }).collect();
        for o in 0..no {
            row[b2 + o] = d[o];
            for j in 0..nh {
                row[w2 + o * nh + j] = d[o] * h[j];
            }
        }
        for j in 0..nh {
            let dh = if h[j] > 0.0 { (0..no).fold(0.0f32, |acc, o| acc + w[w2 + o * nh + j] * d[o]) } else { 0.0 };
            row[b1 + j] = dh;
            for k in 0..ni {
                row[j * ni + k] = dh * x[k];
            }
        }
        row[total] = sum.ln() + top - z[y.min(no - 1)];
        // Not counted in f32 (see grad_f32.wgsl): a near tie may go either way.
        row[total + 1] = 0.0;
        for (g, r) in grad.iter_mut().zip(&row) {
            *g += r;
        }
    }
    f32_bytes(&grad)
}

/// Each sample's class (the first largest logit) under f32 weights: a client's own inference
/// with verified weights.
pub fn infer_cpu(shape: &Shape, weights: &[u8], xs: &[u8]) -> Vec<u32> {
    let (w, xs) = (f32s(weights), f32s(xs));
    let (ni, nh, no) = (shape.inputs as usize, shape.hidden as usize, shape.outputs as usize);
    let (b1, w2) = (nh * ni, nh * ni + nh);
    let b2 = w2 + no * nh;
    (0..shape.samples as usize)
        .map(|s| {
            let x = &xs[s * ni..(s + 1) * ni];
            let h: Vec<f32> =
                (0..nh).map(|j| (0..ni).fold(w[b1 + j], |acc, k| acc + w[j * ni + k] * x[k]).max(0.0)).collect();
            let z: Vec<f32> =
                (0..no).map(|o| (0..nh).fold(w[b2 + o], |acc, j| acc + w[w2 + o * nh + j] * h[j])).collect();
            (0..no).fold(0, |b, o| if z[o] > z[b] { o } else { b }) as u32
        })
        .collect()
}

/// Params of `mlp_step_f32`: the rate is an f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepF32 {
    pub weights: u32,
    pub rate: f32,
    pub samples: u32,
}

impl StepF32 {
    pub fn to_words(&self) -> Vec<u32> {
        vec![self.weights, self.rate.to_bits(), self.samples, 0]
    }

    pub fn from_words(words: &[u32]) -> Result<Self> {
        expect_words(BuiltinKernel::MlpStepF32, words, 4)?;
        let p = StepF32 { weights: words[0], rate: f32::from_bits(words[1]), samples: words[2] };
        if p.weights == 0 || p.samples == 0 || !p.rate.is_finite() || words[3] != 0 {
            return Err(kernel_error("mlp_step_f32 needs weights, samples, a finite rate and a zero fourth word"));
        }
        Ok(p)
    }

    pub fn workgroups(&self) -> Option<[u32; 3]> {
        crate::linear_workgroups(self.weights.div_ceil(64))
    }

    pub(crate) fn check(&self, sizes: &[u64], workgroups: [u32; 3], output_size: u32) -> Result<()> {
        let w = u64::from(self.weights) * 4;
        if sizes.len() != 2 || sizes[0] != w || (sizes[1] != w && sizes[1] != w + 8) {
            return Err(kernel_error(format!("mlp_step_f32 needs weights of {w} bytes and their gradient")));
        }
        let expected = self.workgroups().ok_or_else(|| kernel_error("no dispatch covers that many weights"))?;
        expect_workgroups(BuiltinKernel::MlpStepF32, workgroups, expected)?;
        expect_output_size(BuiltinKernel::MlpStepF32, output_size, w)
    }

    pub fn cpu(&self, weights: &[u8], grad: &[u8]) -> Vec<u8> {
        let (w, g) = (f32s(weights), f32s(grad));
        let n = self.samples as f32;
        let next: Vec<f32> = (0..self.weights as usize).map(|i| w[i] - self.rate * g[i] / n).collect();
        f32_bytes(&next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp_fx::{self, from_q};

    #[test]
    fn the_f32_gradient_is_the_fixed_point_ones_within_its_resolution() {
        let shape = Shape { inputs: 6, hidden: 5, outputs: 4, samples: 9 };
        let wq = mlp_fx::init_weights(shape, 2);
        let xq: Vec<i32> = (0..54).map(|i| ((i * 37) % 17) << 12).collect();
        let ys: Vec<u32> = (0..9).map(|i| i % 4).collect();
        let fx =
            mlp_fx::bytes_i32(&shape.grad_cpu(&mlp_fx::i32_bytes(&wq), &mlp_fx::i32_bytes(&xq), &words_to_bytes(&ys)));
        let to_f = |v: &[i32]| f32_bytes(&v.iter().map(|&q| from_q(q) as f32).collect::<Vec<_>>());
        let f = f32s(&grad_cpu(&shape, &to_f(&wq), &to_f(&xq), &words_to_bytes(&ys)));
        // Every word but the last (the count classified right, a plain integer in both) is Q16.
        let last = fx.len() - 1;
        for (i, (a, b)) in fx[..last].iter().zip(&f).enumerate() {
            assert!((from_q(*a) as f32 - b).abs() < 2e-3, "word {i}: fixed {} vs f32 {b}", from_q(*a));
        }
        assert_eq!(f[last], 0.0, "f32 counts nothing: a near tie may go either way");
        let step = StepF32 { weights: shape.weight_words(), rate: 0.5, samples: 9 };
        assert_eq!(StepF32::from_words(&step.to_words()).unwrap(), step);
        let next = f32s(&step.cpu(&to_f(&wq), &f32_bytes(&f)));
        assert!(next.iter().zip(f32s(&to_f(&wq))).any(|(n, w)| n != &w));
    }
}
