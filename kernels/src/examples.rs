//! Client kernels as a client would write them, for documentation and tests: they run through
//! the same validation and engine as any posted WGSL.

use starling_protocol::job::{KernelSpec, NamedBuffer, Stage};

/// The WGSL of [`dense_relu`].
pub const DENSE_RELU_SOURCE: &str = include_str!("examples/dense_relu.wgsl");

/// `y = relu(x W + b)` for `n` rows of `k` inputs and `m` outputs, as a pipeline of three
/// dispatches (matmul, bias, activation) over two intermediate buffers. Task inputs: x, W, b;
/// params: `[n, k, m]`; output: `n * m` f32; workgroups: `[ceil(n m / 64), 1, 1]`.
pub fn dense_relu(n: u32, m: u32) -> KernelSpec {
    let size = n * m * 4;
    let stage = |entry: &str, inputs: &[&str], output: &str| Stage {
        entry_point: entry.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: output.into(),
        workgroups: None,
    };
    KernelSpec::Pipeline {
        source: DENSE_RELU_SOURCE.into(),
        buffers: vec![NamedBuffer { name: "z".into(), size }, NamedBuffer { name: "zb".into(), size }],
        stages: vec![
            stage("matmul", &["input:0", "input:1"], "z"),
            stage("bias", &["z", "input:2"], "zb"),
            stage("relu", &["zb"], "output"),
        ],
    }
}

/// The CPU reference of [`dense_relu`], summing in the same order as the WGSL.
pub fn dense_relu_cpu(n: usize, k: usize, m: usize, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    (0..n * m)
        .map(|i| {
            let (row, col) = (i / m, i % m);
            let z = (0..k).fold(0.0f32, |acc, j| acc + x[row * k + j] * w[j * m + col]);
            (z + b[col]).max(0.0)
        })
        .collect()
}

#[cfg(all(test, feature = "validate"))]
mod tests {
    use super::*;
    use crate::validate::validate_pipeline;

    #[test]
    fn the_dense_layer_pipeline_validates_and_wrong_stages_are_named() {
        validate_pipeline(DENSE_RELU_SOURCE, &[("matmul", 2), ("bias", 2), ("relu", 1)]).unwrap();
        // Each stage's smallest bindings: the 12-byte params struct, one f32 of each array.
        let (_, sizes) =
            crate::validate::pipeline_checked(DENSE_RELU_SOURCE, &[("matmul", 2), ("bias", 2), ("relu", 1)]).unwrap();
        let mut relu = sizes[2].clone();
        relu.sort_unstable();
        assert_eq!(relu, vec![(0, 12), (1, 4), (2, 4)]);
        // The relu stage read as if it bound two inputs: its output binding 2 is not read-only.
        let e = validate_pipeline(DENSE_RELU_SOURCE, &[("matmul", 2), ("bias", 2), ("relu", 2)]).unwrap_err();
        assert!(e.message.starts_with("stage 2 (`relu`): "), "{e}");
        let e = validate_pipeline(DENSE_RELU_SOURCE, &[("matmul", 2), ("softmax", 1)]).unwrap_err();
        assert!(e.message.contains("no entry point named `softmax`"), "{e}");
        // Leaving a stage out leaves its resources unused: refused, not silently carried.
        let e = validate_pipeline(DENSE_RELU_SOURCE, &[("matmul", 2), ("relu", 1)]).unwrap_err();
        assert!(e.message.contains("used by no stage"), "{e}");
    }
}
