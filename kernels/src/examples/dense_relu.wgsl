// A dense layer's forward pass as a pipeline of three dispatches over named buffers:
// `matmul` (z = x W), `bias` (zb = z + b), `relu` (y = max(zb, 0)). Each stage declares its own
// resources at the bindings its place in the pipeline gives them.
//
// Params: rows n, inputs k, outputs m. x: [n][k], W: [k][m], b: [m], y: [n][m], all f32.

struct Shape { n: u32, k: u32, m: u32 }
@group(0) @binding(0) var<uniform> shape: Shape;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;

@compute @workgroup_size(64)
fn matmul(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= shape.n * shape.m) { return; }
    let row = i / shape.m;
    let col = i % shape.m;
    var acc = 0.0;
    for (var j = 0u; j < shape.k; j++) {
        acc += x[row * shape.k + j] * w[j * shape.m + col];
    }
    z[i] = acc;
}

@group(0) @binding(1) var<storage, read> z_in: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> zb: array<f32>;

@compute @workgroup_size(64)
fn bias(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= shape.n * shape.m) { return; }
    zb[i] = z_in[i] + b[i % shape.m];
}

@group(0) @binding(1) var<storage, read> zb_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn relu(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= shape.n * shape.m) { return; }
    y[i] = max(zb_in[i], 0.0);
}
