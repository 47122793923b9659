// mlp_grad_fx: one invocation per training sample runs the two-layer network forward and back
// and adds its gradient (and its loss and whether it was classified right) into the output with
// integer atomics, whose wrapping sum does not depend on the order the samples land in.
//
// Weights (binding 1), all Q16: W1 [hidden][inputs], b1 [hidden], W2 [outputs][hidden],
// b2 [outputs]. Samples (binding 2): [samples][inputs] Q16. Labels (binding 3): u32 per sample.
// Output: the gradient of the summed softmax cross-entropy in the weights' layout, then the
// summed loss (Q16), then the number of samples whose largest logit is their label.

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> weights: array<i32>;
@group(0) @binding(2) var<storage, read> xs: array<i32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> grad: array<atomic<i32>>;

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
    let total = b2 + no;
    let x0 = s * ni;
    let y = labels[s];

    let f = forward(s);
    var h = f.h;
    var z = f.z;
    let best = f.best;
    let top = z[best];
    var e: array<i32, MAX_OUTPUTS>;
    var sum = 0;
    for (var o = 0u; o < no; o++) {
        e[o] = expq(z[o] - top);
        sum += e[o];
    }
    // d loss / d z = softmax - one-hot: p = e / sum in Q16, as (e << 14) / (sum >> 2).
    var d: array<i32, MAX_OUTPUTS>;
    for (var o = 0u; o < no; o++) {
        d[o] = i32((u32(e[o]) << 14u) / (u32(sum) >> 2u));
        if (o == y) { d[o] -= ONE; }
        if (d[o] != 0) {
            atomicAdd(&grad[b2 + o], d[o]);
            for (var j = 0u; j < nh; j++) {
                if (h[j] != 0) { atomicAdd(&grad[w2 + o * nh + j], mulq(d[o], h[j])); }
            }
        }
    }
    for (var j = 0u; j < nh; j++) {
        if (h[j] <= 0) { continue; }
        var dh = 0;
        for (var o = 0u; o < no; o++) {
            dh += mulq(weights[w2 + o * nh + j], d[o]);
        }
        if (dh == 0) { continue; }
        atomicAdd(&grad[b1 + j], dh);
        for (var k = 0u; k < ni; k++) {
            let x = xs[x0 + k];
            if (x != 0) { atomicAdd(&grad[j * ni + k], mulq(dh, x)); }
        }
    }
    atomicAdd(&grad[total], lnq(sum) + top - z[min(y, no - 1u)]);
    if (best == y) { atomicAdd(&grad[total + 1u], 1); }
}
