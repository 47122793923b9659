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
    let ni = shape.inputs;
    let nh = shape.hidden;
    let no = shape.outputs;
    let b1 = nh * ni;
    let w2 = b1 + nh;
    let b2 = w2 + no * nh;
    let x0 = s * ni;
    var h: array<i32, MAX_HIDDEN>;
    for (var j = 0u; j < nh; j++) {
        var acc = weights[b1 + j];
        for (var k = 0u; k < ni; k++) {
            acc += mulq(weights[j * ni + k], xs[x0 + k]);
        }
        h[j] = max(acc, 0);
    }
    var best = 0u;
    var top = 0;
    for (var o = 0u; o < no; o++) {
        var acc = weights[b2 + o];
        for (var j = 0u; j < nh; j++) {
            acc += mulq(weights[w2 + o * nh + j], h[j]);
        }
        if (o == 0u || acc > top) { best = o; top = acc; }
    }
    classes[s] = best;
}
