// mlp_grad_f32: the two-layer network's gradient in f32, as two dispatches. `per_sample` runs
// one invocation per sample, forward and back, and writes that sample's gradient row (then its
// loss and 1.0 if it was classified right) into `rows`; `sum_rows` adds the rows in sample order,
// one invocation per word. Floats differ in their last bits across GPUs (exp, fused
// multiply-adds): compare with a tolerance. Layouts as mlp_grad_fx's, except that the last word
// (the count classified right) is 0: a near tie between two logits may go either way on two
// GPUs, and a count off by one is no tolerance's business.

struct Shape { inputs: u32, hidden: u32, outputs: u32, samples: u32 }
const MAX_HIDDEN: u32 = 64u;
const MAX_OUTPUTS: u32 = 16u;

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> rows: array<f32>;

@compute @workgroup_size(64)
fn per_sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wid.x * 64u + lid;
    if (s >= shape.samples) { return; }
    let ni = shape.inputs;
    let nh = shape.hidden;
    let no = shape.outputs;
    let b1 = nh * ni;
    let w2 = b1 + nh;
    let b2 = w2 + no * nh;
    let total = b2 + no;
    let row = s * (total + 2u);
    let x0 = s * ni;
    let y = labels[s];

    var h: array<f32, MAX_HIDDEN>;
    for (var j = 0u; j < nh; j++) {
        var acc = weights[b1 + j];
        for (var k = 0u; k < ni; k++) {
            acc += weights[j * ni + k] * xs[x0 + k];
        }
        h[j] = max(acc, 0.0);
    }
    var z: array<f32, MAX_OUTPUTS>;
    var best = 0u;
    for (var o = 0u; o < no; o++) {
        var acc = weights[b2 + o];
        for (var j = 0u; j < nh; j++) {
            acc += weights[w2 + o * nh + j] * h[j];
        }
        z[o] = acc;
        if (acc > z[best]) { best = o; }
    }
    let top = z[best];
    var sum = 0.0;
    var e: array<f32, MAX_OUTPUTS>;
    for (var o = 0u; o < no; o++) {
        e[o] = exp(z[o] - top);
        sum += e[o];
    }
    var d: array<f32, MAX_OUTPUTS>;
    for (var o = 0u; o < no; o++) {
        d[o] = e[o] / sum;
        if (o == y) { d[o] -= 1.0; }
        rows[row + b2 + o] = d[o];
        for (var j = 0u; j < nh; j++) {
            rows[row + w2 + o * nh + j] = d[o] * h[j];
        }
    }
    for (var j = 0u; j < nh; j++) {
        var dh = 0.0;
        if (h[j] > 0.0) {
            for (var o = 0u; o < no; o++) {
                dh += weights[w2 + o * nh + j] * d[o];
            }
        }
        rows[row + b1 + j] = dh;
        for (var k = 0u; k < ni; k++) {
            rows[row + j * ni + k] = dh * xs[x0 + k];
        }
    }
    rows[row + total] = log(sum) + top - z[min(y, no - 1u)];
    rows[row + total + 1u] = 0.0;
}

@group(0) @binding(1) var<storage, read> rows_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn sum_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let words = shape.hidden * shape.inputs + shape.hidden + shape.outputs * shape.hidden + shape.outputs + 2u;
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= words) { return; }
    var acc = 0.0;
    for (var s = 0u; s < shape.samples; s++) {
        acc += rows_in[s * words + i];
    }
    grad[i] = acc;
}
