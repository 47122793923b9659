// C = A * B for row-major f32 matrices, A m x k (binding 1), B k x n (binding 2), computing
// rows [row_offset, row_offset + rows) of C into the output (binding 3), rows x n.
//
// Each 16x16 workgroup computes a 64x64 block of C; each thread a 4x4 register block. A and B
// are staged through workgroup memory 16 columns of A (rows of B) at a time, packed as vec4 so
// the inner product is four vec4 multiply-adds per step. The 16 steps are unrolled by hand.
// Out-of-range loads read 0 and out-of-range stores are skipped, so any m, n, k works.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    row_offset: u32,
    rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE_K: u32 = 16u;
const BLOCK: u32 = 64u;

// a_tile[kk * 16 + r] holds A at column kk of the stage for block rows 4r .. 4r + 3.
var<workgroup> a_tile: array<vec4<f32>, 256>;
// b_tile[kk * 16 + q] holds B at row kk of the stage for block columns 4q .. 4q + 3.
var<workgroup> b_tile: array<vec4<f32>, 256>;

// This thread's 4x4 block of C, one vec4 per row.
var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

// A at task row `row` (0-based within the task), column `col`; 0 outside the matrix.
fn load_a(row: u32, col: u32) -> f32 {
    if (row < params.rows && col < params.k) {
        return a[(params.row_offset + row) * params.k + col];
    }
    return 0.0;
}

fn load_b(row: u32, col: u32) -> f32 {
    if (row < params.k && col < params.n) {
        return b[row * params.n + col];
    }
    return 0.0;
}

fn mac(kk: u32, tx: u32, ty: u32) {
    let av = a_tile[kk * 16u + ty];
    let bv = b_tile[kk * 16u + tx];
    acc0 = acc0 + av.x * bv;
    acc1 = acc1 + av.y * bv;
    acc2 = acc2 + av.z * bv;
    acc3 = acc3 + av.w * bv;
}

fn store_row(row: u32, col: u32, v: vec4<f32>) {
    if (row >= params.rows) {
        return;
    }
    let base = row * params.n + col;
    if (col < params.n) {
        c[base] = v.x;
    }
    if (col + 1u < params.n) {
        c[base + 1u] = v.y;
    }
    if (col + 2u < params.n) {
        c[base + 2u] = v.z;
    }
    if (col + 3u < params.n) {
        c[base + 3u] = v.w;
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let flat_id = ty * 16u + tx;
    let row0 = wid.y * BLOCK;
    let col0 = wid.x * BLOCK;
    // Loading roles: neighbouring threads read neighbouring addresses.
    let a_col = flat_id % 16u;
    let a_row = row0 + (flat_id / 16u) * 4u;
    let b_col = col0 + (flat_id % 16u) * 4u;
    let b_row = flat_id / 16u;

    acc0 = vec4<f32>(0.0);
    acc1 = vec4<f32>(0.0);
    acc2 = vec4<f32>(0.0);
    acc3 = vec4<f32>(0.0);
    let stages = (params.k + TILE_K - 1u) / TILE_K;
    for (var s = 0u; s < stages; s = s + 1u) {
        let k0 = s * TILE_K;
        let ak = k0 + a_col;
        a_tile[a_col * 16u + flat_id / 16u] =
            vec4<f32>(load_a(a_row, ak), load_a(a_row + 1u, ak), load_a(a_row + 2u, ak), load_a(a_row + 3u, ak));
        let bk = k0 + b_row;
        b_tile[b_row * 16u + flat_id % 16u] =
            vec4<f32>(load_b(bk, b_col), load_b(bk, b_col + 1u), load_b(bk, b_col + 2u), load_b(bk, b_col + 3u));
        workgroupBarrier();
        mac(0u, tx, ty);
        mac(1u, tx, ty);
        mac(2u, tx, ty);
        mac(3u, tx, ty);
        mac(4u, tx, ty);
        mac(5u, tx, ty);
        mac(6u, tx, ty);
        mac(7u, tx, ty);
        mac(8u, tx, ty);
        mac(9u, tx, ty);
        mac(10u, tx, ty);
        mac(11u, tx, ty);
        mac(12u, tx, ty);
        mac(13u, tx, ty);
        mac(14u, tx, ty);
        mac(15u, tx, ty);
        workgroupBarrier();
    }

    let row = row0 + ty * 4u;
    let col = col0 + tx * 4u;
    store_row(row, col, acc0);
    store_row(row + 1u, col, acc1);
    store_row(row + 2u, col, acc2);
    store_row(row + 3u, col, acc3);
}
