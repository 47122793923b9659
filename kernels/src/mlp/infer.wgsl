// mlp_infer_fx: one invocation per sample runs the network forward and writes the index of the
// largest logit (the first on a tie). Bindings as `mlp_grad_fx`'s weights and samples.

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> weights: array<i32>;
@group(0) @binding(2) var<storage, read> xs: array<i32>;
@group(0) @binding(3) var<storage, read_write> classes: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wid.x * 64u + lid;
    if (s >= shape.samples) { return; }
    classes[s] = forward(s).best;
}
