// Monte Carlo estimate of pi, integer only and exact on every device.
//
// Each thread draws samples_per_thread points from Philox-4x32-10 (counter = sample pair index,
// thread index in the workgroup, and the 64-bit global workgroup index first_workgroup + w; key =
// the 64-bit seed). One Philox block gives two points; each point is two 16-bit coordinates
// (the high halves of two words) and hits when x^2 + y^2 < 2^32, tested as "the u32 sum does not
// carry". The workgroup sums its hits in workgroup memory and writes one u32.

struct Params {
    seed_lo: u32,
    seed_hi: u32,
    first_workgroup: u32,
    samples_per_thread: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> hits: array<u32>;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W: vec2<u32> = vec2<u32>(0x9E3779B9u, 0xBB67AE85u);

var<workgroup> partial: array<u32, 256>;

fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let p0 = mul_wide(PHILOX_M0, c.x);
    let p1 = mul_wide(PHILOX_M1, c.z);
    return vec4<u32>(p1.y ^ c.y ^ k.x, p1.x, p0.y ^ c.w ^ k.y, p0.x);
}

// Philox-4x32 with 10 rounds, unrolled.
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    k = k + PHILOX_W;
    c = philox_round(c, k);
    return c;
}

// 1 when the point (u >> 16, v >> 16) lies strictly inside the circle of radius 2^16.
fn hit(u: u32, v: u32) -> u32 {
    let x = u >> 16u;
    let y = v >> 16u;
    let x2 = x * x;
    let sum = x2 + y * y;
    return select(0u, 1u, sum >= x2);
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let w = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
    let group_lo = params.first_workgroup + w;
    let group_hi = select(0u, 1u, group_lo < w);
    let key = vec2<u32>(params.seed_lo, params.seed_hi);
    let n = params.samples_per_thread;

    var count = 0u;
    var s = 0u;
    loop {
        if (n - s < 2u) {
            break;
        }
        let r = philox(vec4<u32>(s >> 1u, lid, group_lo, group_hi), key);
        count = count + hit(r.x, r.y) + hit(r.z, r.w);
        s = s + 2u;
    }
    if (s < n) {
        let r = philox(vec4<u32>(s >> 1u, lid, group_lo, group_hi), key);
        count = count + hit(r.x, r.y);
    }

    partial[lid] = count;
    workgroupBarrier();
    if (lid < 128u) {
        partial[lid] = partial[lid] + partial[lid + 128u];
    }
    workgroupBarrier();
    if (lid < 64u) {
        partial[lid] = partial[lid] + partial[lid + 64u];
    }
    workgroupBarrier();
    if (lid < 32u) {
        partial[lid] = partial[lid] + partial[lid + 32u];
    }
    workgroupBarrier();
    if (lid < 16u) {
        partial[lid] = partial[lid] + partial[lid + 16u];
    }
    workgroupBarrier();
    if (lid < 8u) {
        partial[lid] = partial[lid] + partial[lid + 8u];
    }
    workgroupBarrier();
    if (lid < 4u) {
        partial[lid] = partial[lid] + partial[lid + 4u];
    }
    workgroupBarrier();
    if (lid < 2u) {
        partial[lid] = partial[lid] + partial[lid + 2u];
    }
    workgroupBarrier();
    if (lid < 1u) {
        partial[lid] = partial[lid] + partial[lid + 1u];
    }
    workgroupBarrier();
    if (lid == 0u) {
        hits[w] = partial[0];
    }
}
