// mlp_step_fx: one step of gradient descent, w - (rate * g) / n, per weight, in Q16; the
// division truncates toward zero, as Rust's i32 division does.

struct Step { weights: u32, rate: i32, samples: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Step;
@group(0) @binding(1) var<storage, read> weights: array<i32>;
@group(0) @binding(2) var<storage, read> grad: array<i32>;
@group(0) @binding(3) var<storage, read_write> next: array<i32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.weights) { return; }
    next[i] = weights[i] - mulq(p.rate, grad[i]) / i32(p.samples);
}
