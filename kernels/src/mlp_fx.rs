//! A small neural network in Q16.16 fixed point, bit-identical on every GPU and the CPU: a dense
//! layer with ReLU, a dense layer of logits, softmax cross-entropy. Integer arithmetic only, with
//! sums whose order cannot matter (wrapping i32 addition), so training steps compare exactly and
//! a wrong gradient is a provably wrong result, slashable like any other.
//!
//! - `mlp_grad_fx` (params [`Shape`], inputs weights, samples, labels): the summed gradient over
//!   the samples, then the summed loss (Q16) and the count classified right
//!   ([`Shape::grad_words`] words).
//! - `mlp_step_fx` (params [`StepParams`], inputs weights and a gradient): `w - (rate * g) / n`.
//! - `mlp_infer_fx` (params [`Shape`], inputs weights and samples): each sample's class.
//!
//! Weights are W1 `[hidden][inputs]`, b1 `[hidden]`, W2 `[outputs][hidden]`, b2 `[outputs]`, all
//! Q16 i32 words. The WGSL is `mlp/*.wgsl`; the functions here are its CPU reference, operation
//! for operation.

use super::{expect_output_size, expect_words, expect_workgroups, kernel_error, words_to_bytes};
use crate::{Result, bytes_to_words};
use starling_protocol::job::BuiltinKernel;

/// 1.0 in Q16.
pub const ONE: i32 = 1 << 16;
const LOG2E: i32 = 94548;
const LN2: i32 = 45426;
/// Largest hidden layer and output layer the kernels hold per sample.
pub const MAX_HIDDEN: u32 = 64;
pub const MAX_OUTPUTS: u32 = 16;
/// Largest input layer.
pub const MAX_INPUTS: u32 = 4096;
/// Threads per workgroup.
pub const WORKGROUP_SIZE: u32 = 64;
/// Most samples one task takes: one thread each, in one row of workgroups.
pub const MAX_SAMPLES: u32 = 65_535 * WORKGROUP_SIZE;

/// The fixed-point helpers (with the shared 64-bit ones of `wide_math.wgsl`) and the kernel.
macro_rules! fixed_point_source {
    ($kernel:literal) => {
        concat!(include_str!("mlp/fixed.wgsl"), "\n", include_str!("wide_math.wgsl"), "\n", include_str!($kernel))
    };
}
pub const GRAD_SOURCE: &str = concat!(fixed_point_source!("mlp/grad.wgsl"), "\n", include_str!("mlp/forward.wgsl"));
pub const STEP_SOURCE: &str = fixed_point_source!("mlp/step.wgsl");
pub const INFER_SOURCE: &str = concat!(fixed_point_source!("mlp/infer.wgsl"), "\n", include_str!("mlp/forward.wgsl"));

/// `floor(a * b / 2^16)`, truncated to 32 bits.
pub fn mulq(a: i32, b: i32) -> i32 {
    ((i64::from(a) * i64::from(b)) >> 16) as i32
}

/// `e^x` for `x <= 0`, in Q16 (see `mlp/fixed.wgsl`). A positive `x` is a difference of logits
/// that wrapped (logits more than 32768 apart): its true value is far below Q16's resolution, 0.
pub fn expq(x: i32) -> i32 {
    if x > 0 || x <= -(20 * ONE) {
        return 0;
    }
    let y = mulq(x, LOG2E).wrapping_neg();
    let (k, f) = ((y >> 16) as u32, y & 0xffff);
    let mut q = -87;
    for c in [630, -3638, 15744, -45426, ONE] {
        q = mulq(q, f).wrapping_add(c);
    }
    q >> k
}

/// `ln(s)` for `s >= 1`, in Q16 (see `mlp/fixed.wgsl`).
pub fn lnq(s: i32) -> i32 {
    let n = (31 - (s as u32).leading_zeros()).wrapping_sub(16);
    let m = (s as u32) >> n;
    let t = ((m.wrapping_sub(65536) << 16) / (m + 65536)) as i32;
    let t2 = mulq(t, t);
    let mut q = 9362;
    for c in [13107, 21845, ONE] {
        q = mulq(q, t2).wrapping_add(c);
    }
    (n as i32).wrapping_mul(LN2).wrapping_add(2i32.wrapping_mul(mulq(t, q)))
}

/// A network and a batch of samples: the params of `mlp_grad_fx` and `mlp_infer_fx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub inputs: u32,
    pub hidden: u32,
    pub outputs: u32,
    pub samples: u32,
}

impl Shape {
    pub fn to_words(&self) -> Vec<u32> {
        vec![self.inputs, self.hidden, self.outputs, self.samples]
    }

    pub fn from_words(kernel: BuiltinKernel, words: &[u32]) -> Result<Self> {
        expect_words(kernel, words, 4)?;
        let s = Shape { inputs: words[0], hidden: words[1], outputs: words[2], samples: words[3] };
        if !(1..=MAX_INPUTS).contains(&s.inputs) || !(1..=MAX_HIDDEN).contains(&s.hidden) {
            return Err(kernel_error(format!("need 1..={MAX_INPUTS} inputs and 1..={MAX_HIDDEN} hidden units")));
        }
        if !(2..=MAX_OUTPUTS).contains(&s.outputs) {
            return Err(kernel_error(format!("need 2..={MAX_OUTPUTS} outputs")));
        }
        if s.samples == 0 || s.samples > MAX_SAMPLES {
            return Err(kernel_error("need at least one sample, and at most 65535 workgroups of them"));
        }
        Ok(s)
    }

    /// Words of weights: W1, b1, W2, b2.
    pub fn weight_words(&self) -> u32 {
        self.hidden * self.inputs + self.hidden + self.outputs * self.hidden + self.outputs
    }

    /// Words of `mlp_grad_fx` output: the gradient, the loss, the count right.
    pub fn grad_words(&self) -> u32 {
        self.weight_words() + 2
    }

    /// One thread per sample.
    pub fn workgroups(&self) -> [u32; 3] {
        [self.samples.div_ceil(WORKGROUP_SIZE), 1, 1]
    }

    fn offsets(&self) -> (usize, usize, usize, usize) {
        let (ni, nh, no) = (self.inputs as usize, self.hidden as usize, self.outputs as usize);
        let b1 = nh * ni;
        let w2 = b1 + nh;
        let b2 = w2 + no * nh;
        (b1, w2, b2, b2 + no)
    }

    pub(crate) fn check(
        &self,
        kernel: BuiltinKernel,
        sizes: &[u64],
        workgroups: [u32; 3],
        output_size: u32,
    ) -> Result<()> {
        let w = u64::from(self.weight_words()) * 4;
        let x = u64::from(self.samples) * u64::from(self.inputs) * 4;
        let n = u64::from(self.samples) * 4;
        let (want, out): (&[u64], u64) = match kernel {
            BuiltinKernel::MlpGradFx | BuiltinKernel::MlpGradF32 => (&[w, x, n], u64::from(self.grad_words()) * 4),
            _ => (&[w, x], n),
        };
        if sizes != want {
            return Err(kernel_error(format!("{} needs inputs of {want:?} bytes, got {sizes:?}", kernel.name())));
        }
        expect_workgroups(kernel, workgroups, self.workgroups())?;
        expect_output_size(kernel, output_size, out)
    }

    /// The hidden layer and the logits of sample `x`.
    fn forward(&self, w: &[i32], x: &[i32]) -> (Vec<i32>, Vec<i32>) {
        let (b1, w2, b2, _) = self.offsets();
        let (ni, nh, no) = (self.inputs as usize, self.hidden as usize, self.outputs as usize);
        let h: Vec<i32> = (0..nh)
            .map(|j| (0..ni).fold(w[b1 + j], |acc, k| acc.wrapping_add(mulq(w[j * ni + k], x[k]))).max(0))
            .collect();
        let z: Vec<i32> = (0..no)
            .map(|o| (0..nh).fold(w[b2 + o], |acc, j| acc.wrapping_add(mulq(w[w2 + o * nh + j], h[j]))))
            .collect();
        (h, z)
    }

    /// The CPU reference of `mlp_grad_fx`.
    // Index loops, as the WGSL's: the reference is read beside the kernel, line for line.
    #[allow(clippy::needless_range_loop)]
    pub fn grad_cpu(&self, weights: &[u8], xs: &[u8], labels: &[u8]) -> Vec<u8> {
        let (w, xs, labels) = (as_i32(weights), as_i32(xs), bytes_to_words(labels));
        let (b1, w2, b2, total) = self.offsets();
        let (ni, nh, no) = (self.inputs as usize, self.hidden as usize, self.outputs as usize);
        let mut g = vec![0i32; total + 2];
        let add = |g: &mut Vec<i32>, i: usize, v: i32| g[i] = g[i].wrapping_add(v);
        for s in 0..self.samples as usize {
            let x = &xs[s * ni..(s + 1) * ni];
            let y = labels[s] as usize;
            let (h, z) = self.forward(&w, x);
            // The first largest logit.
            let best = (0..no).fold(0, |b, o| if z[o] > z[b] { o } else { b });
            let top = z[best];
            let e: Vec<i32> = z.iter().map(|&zo| expq(zo.wrapping_sub(top))).collect();
            let sum = e.iter().fold(0i32, |a, &v| a.wrapping_add(v));
            let d: Vec<i32> = (0..no)
                .map(|o| {
                    let p = (((e[o] as u32) << 14) / ((sum as u32) >> 2)) as i32;
                    if o == y { p.wrapping_sub(ONE) } else { p }
                })
                .collect();
            for o in 0..no {
                if d[o] != 0 {
                    add(&mut g, b2 + o, d[o]);
                    for j in 0..nh {
                        if h[j] != 0 {
                            add(&mut g, w2 + o * nh + j, mulq(d[o], h[j]));
                        }
                    }
                }
            }
            for j in 0..nh {
                if h[j] <= 0 {
                    continue;
                }
                let dh = (0..no).fold(0i32, |acc, o| acc.wrapping_add(mulq(w[w2 + o * nh + j], d[o])));
                if dh == 0 {
                    continue;
                }
                add(&mut g, b1 + j, dh);
                for k in 0..ni {
                    if x[k] != 0 {
                        add(&mut g, j * ni + k, mulq(dh, x[k]));
                    }
                }
            }
            add(&mut g, total, lnq(sum).wrapping_add(top).wrapping_sub(z[y.min(no - 1)]));
            if best == y {
                add(&mut g, total + 1, 1);
            }
        }
        words_to_bytes(&g.iter().map(|&v| v as u32).collect::<Vec<_>>())
    }

    /// The CPU reference of `mlp_infer_fx`.
    pub fn infer_cpu(&self, weights: &[u8], xs: &[u8]) -> Vec<u8> {
        let (w, xs) = (as_i32(weights), as_i32(xs));
        let ni = self.inputs as usize;
        let classes: Vec<u32> = (0..self.samples as usize)
            .map(|s| {
                let (_, z) = self.forward(&w, &xs[s * ni..(s + 1) * ni]);
                (0..z.len()).fold(0, |b, o| if z[o] > z[b] { o } else { b }) as u32
            })
            .collect();
        words_to_bytes(&classes)
    }
}

/// Params of `mlp_step_fx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepParams {
    /// Words of weights.
    pub weights: u32,
    /// Learning rate, Q16.
    pub rate: i32,
    /// Samples the gradient was summed over.
    pub samples: u32,
}

impl StepParams {
    pub fn to_words(&self) -> Vec<u32> {
        vec![self.weights, self.rate as u32, self.samples, 0]
    }

    pub fn from_words(words: &[u32]) -> Result<Self> {
        expect_words(BuiltinKernel::MlpStepFx, words, 4)?;
        let p = StepParams { weights: words[0], rate: words[1] as i32, samples: words[2] };
        if p.weights == 0 || p.samples == 0 || p.samples > i32::MAX as u32 || words[3] != 0 {
            return Err(kernel_error("mlp_step_fx needs weights and samples, and a zero fourth word"));
        }
        Ok(p)
    }

    pub fn workgroups(&self) -> Option<[u32; 3]> {
        crate::linear_workgroups(self.weights.div_ceil(WORKGROUP_SIZE))
    }

    pub(crate) fn check(&self, sizes: &[u64], workgroups: [u32; 3], output_size: u32) -> Result<()> {
        let w = u64::from(self.weights) * 4;
        // The gradient may carry the loss and the count after it (as `mlp_grad_fx` writes).
        if sizes.len() != 2 || sizes[0] != w || (sizes[1] != w && sizes[1] != w + 8) {
            return Err(kernel_error(format!("mlp_step_fx needs weights of {w} bytes and their gradient")));
        }
        let expected = self.workgroups().ok_or_else(|| kernel_error("no dispatch covers that many weights"))?;
        expect_workgroups(BuiltinKernel::MlpStepFx, workgroups, expected)?;
        expect_output_size(BuiltinKernel::MlpStepFx, output_size, w)
    }

    /// The CPU reference.
    pub fn cpu(&self, weights: &[u8], grad: &[u8]) -> Vec<u8> {
        let (w, g) = (as_i32(weights), as_i32(grad));
        let n = self.samples as i32;
        let next: Vec<u32> =
            (0..self.weights as usize).map(|i| w[i].wrapping_sub(mulq(self.rate, g[i]) / n) as u32).collect();
        words_to_bytes(&next)
    }
}

fn as_i32(bytes: &[u8]) -> Vec<i32> {
    bytes_to_words(bytes).into_iter().map(|w| w as i32).collect()
}

/// Q16 of a real number, rounded to nearest.
pub fn to_q(v: f64) -> i32 {
    (v * f64::from(ONE)).round() as i32
}

/// A real number from Q16.
pub fn from_q(v: i32) -> f64 {
    f64::from(v) / f64::from(ONE)
}

/// Initial weights for `shape`, from `seed`: each layer's weights uniform in `±1/sqrt(fan-in)`
/// (SplitMix64), biases zero. Deterministic, so a client and the CPU reference start alike.
pub fn init_weights(shape: Shape, seed: u64) -> Vec<i32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut uniform = |limit: f64| to_q(((next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * limit);
    let (r1, r2) = (1.0 / f64::from(shape.inputs).sqrt(), 1.0 / f64::from(shape.hidden).sqrt());
    let mut w = Vec::with_capacity(shape.weight_words() as usize);
    w.extend((0..shape.hidden * shape.inputs).map(|_| uniform(r1)));
    w.extend((0..shape.hidden).map(|_| 0));
    w.extend((0..shape.outputs * shape.hidden).map(|_| uniform(r2)));
    w.extend((0..shape.outputs).map(|_| 0));
    w
}

/// Little-endian bytes of Q16 words.
pub fn i32_bytes(words: &[i32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Q16 words from little-endian bytes.
pub fn bytes_i32(bytes: &[u8]) -> Vec<i32> {
    as_i32(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limb product the WGSL computes, in Rust: it must equal the 64-bit one.
    fn mulq_limbs(a: i32, b: i32) -> i32 {
        let (ua, ub) = (a as u32, b as u32);
        let (lo, mut hi) = crate::mul_wide(ua, ub);
        if a < 0 {
            hi = hi.wrapping_sub(ub);
        }
        if b < 0 {
            hi = hi.wrapping_sub(ua);
        }
        ((hi << 16) | (lo >> 16)) as i32
    }

    #[test]
    fn the_limb_product_is_the_64_bit_product() {
        let edge = [0, 1, -1, 2, -2, ONE, -ONE, 0x7fff, -0x8000, i32::MAX, i32::MIN, 123_456_789, -987_654_321];
        let mut x = 0x2545_f491u32;
        let mut values = edge.to_vec();
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values.push(x as i32);
        }
        for &a in &values {
            for &b in &values {
                assert_eq!(mulq_limbs(a, b), mulq(a, b), "{a} * {b}");
            }
        }
    }

    #[test]
    fn exp_and_ln_are_close_to_the_real_ones() {
        for i in 0..=400 {
            let x = -(i * ONE) / 20;
            let got = from_q(expq(x));
            let want = from_q(x).exp();
            assert!((got - want).abs() < 2e-4, "exp({}) = {got}, not {want}", from_q(x));
        }
        // Differences of logits that wrapped read as positive: 0, never a shift of 32 or more.
        for x in [1, ONE, i32::MAX] {
            assert_eq!(expq(x), 0);
        }
        for s in [ONE, ONE + 1, 3 * ONE / 2, 2 * ONE, 10 * ONE, 1000 * ONE, i32::MAX] {
            let (got, want) = (from_q(lnq(s)), from_q(s).ln());
            assert!((got - want).abs() < 2e-4, "ln({}) = {got}, not {want}", from_q(s));
        }
    }

    #[test]
    fn the_gradient_matches_finite_differences_of_the_loss() {
        // A tiny network: the analytic gradient of a weight (from the fixed-point kernel) against
        // the change in the summed loss when that weight moves, in floating point.
        let shape = Shape { inputs: 3, hidden: 4, outputs: 3, samples: 5 };
        let w = init_weights(shape, 7);
        let xs: Vec<i32> = (0..15).map(|i| to_q(f64::from((i * 7) % 5) / 4.0)).collect();
        let ys: Vec<u32> = vec![0, 1, 2, 1, 0];
        let loss = |w: &[f64]| -> f64 {
            let (b1, w2, b2, _) = shape.offsets();
            (0..5)
                .map(|s| {
                    let x: Vec<f64> = xs[s * 3..s * 3 + 3].iter().map(|&v| from_q(v)).collect();
                    let h: Vec<f64> = (0..4)
                        .map(|j| (w[b1 + j] + (0..3).map(|k| w[j * 3 + k] * x[k]).sum::<f64>()).max(0.0))
                        .collect();
                    let z: Vec<f64> =
                        (0..3).map(|o| w[b2 + o] + (0..4).map(|j| w[w2 + o * 4 + j] * h[j]).sum::<f64>()).collect();
                    let top = z.iter().cloned().fold(f64::MIN, f64::max);
                    let lse = top + z.iter().map(|v| (v - top).exp()).sum::<f64>().ln();
                    lse - z[ys[s] as usize]
                })
                .sum()
        };
        let g = as_i32(&shape.grad_cpu(&i32_bytes(&w), &i32_bytes(&xs), &words_to_bytes(&ys)));
        let wf: Vec<f64> = w.iter().map(|&v| from_q(v)).collect();
        for i in 0..shape.weight_words() as usize {
            let mut up = wf.clone();
            up[i] += 1e-4;
            let mut down = wf.clone();
            down[i] -= 1e-4;
            let numeric = (loss(&up) - loss(&down)) / 2e-4;
            assert!((from_q(g[i]) - numeric).abs() < 5e-3, "weight {i}: {} vs {numeric}", from_q(g[i]));
        }
        let total = shape.weight_words() as usize;
        assert!((from_q(g[total]) - loss(&wf)).abs() < 2e-3, "loss {} vs {}", from_q(g[total]), loss(&wf));
    }

    #[test]
    fn a_step_moves_against_the_gradient_and_checks_its_inputs() {
        let p = StepParams { weights: 3, rate: ONE / 2, samples: 4 };
        let w = i32_bytes(&[ONE, -ONE, 0]);
        let g = i32_bytes(&[8 * ONE, -8 * ONE, 3]);
        assert_eq!(as_i32(&p.cpu(&w, &g)), vec![0, 0, 0], "3 * 0.5 / 4 truncates to 0");
        let wg = p.workgroups().unwrap();
        assert!(p.check(&[12, 12], wg, 12).is_ok());
        assert!(p.check(&[12, 20], wg, 12).is_ok(), "a gradient with its loss and count");
        assert!(p.check(&[12, 16], wg, 12).is_err());
        assert!(p.check(&[12, 12], wg, 16).is_err());
        assert!(StepParams::from_words(&[3, 1, 0, 0]).is_err());
    }
}
