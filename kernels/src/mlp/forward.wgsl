// The forward pass of the fixed-point network, shared by mlp_grad_fx and mlp_infer_fx (each
// declares `shape`, `weights` and `xs`): sample `s`'s hidden layer after ReLU, its logits, and
// the index of its first largest logit.

struct Forward { h: array<i32, MAX_HIDDEN>, z: array<i32, MAX_OUTPUTS>, best: u32 }

fn forward(s: u32) -> Forward {
    let ni = shape.inputs;
    let nh = shape.hidden;
    let no = shape.outputs;
    let b1 = nh * ni;
    let w2 = b1 + nh;
    let b2 = w2 + no * nh;
    let x0 = s * ni;
    var f: Forward;
    for (var j = 0u; j < nh; j++) {
        var acc = weights[b1 + j];
        for (var k = 0u; k < ni; k++) {
            acc += mulq(weights[j * ni + k], xs[x0 + k]);
        }
        f.h[j] = max(acc, 0);
    }
    for (var o = 0u; o < no; o++) {
        var acc = weights[b2 + o];
        for (var j = 0u; j < nh; j++) {
            acc += mulq(weights[w2 + o * nh + j], f.h[j]);
        }
        f.z[o] = acc;
        if (acc > f.z[f.best]) { f.best = o; }
    }
    return f;
}
