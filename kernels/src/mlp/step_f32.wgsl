// mlp_step_f32: one step of gradient descent in f32, w - rate * g / n.

struct Step { weights: u32, rate: f32, samples: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Step;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> next: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.weights) { return; }
    next[i] = weights[i] - p.rate * grad[i] / f32(p.samples);
}
