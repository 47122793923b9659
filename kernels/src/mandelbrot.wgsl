// Mandelbrot escape counts over one tile of an image, in signed Q4.28 fixed point.
//
// Integer arithmetic only, so every device produces the same counts bit for bit. WGSL has no
// 64-bit integers: the 32x32 -> 64-bit product is built from 16-bit limbs, and all sums are done
// on u32 so overflow wraps the same way everywhere. The CPU reference in mandelbrot.rs follows
// this file step for step.

struct Params {
    image_width: u32,
    image_height: u32,
    tile_x: u32,
    tile_y: u32,
    tile_width: u32,
    tile_height: u32,
    max_iter: u32,
    center_re: i32,
    center_im: i32,
    step: i32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;

const FRAC_BITS: u32 = 28u;
// 2.0 and 4.0 in Q4.28.
const TWO: i32 = 0x20000000;
const FOUR: u32 = 0x40000000u;

// floor(a * b / 2^28), wrapped to 32 bits: the signed product's high word is the unsigned one
// minus each operand when the other is negative.
fn fx_mul(a: i32, b: i32) -> u32 {
    let ua = bitcast<u32>(a);
    let ub = bitcast<u32>(b);
    let p = mul_wide(ua, ub);
    var hi = p.y;
    if (a < 0) {
        hi = hi - ub;
    }
    if (b < 0) {
        hi = hi - ua;
    }
    return (p.x >> FRAC_BITS) | (hi << (32u - FRAC_BITS));
}

// One iteration z <- z^2 + c. Returns true, leaving z alone, when z has already escaped
// (|x| > 2 or |y| > 2 or x^2 + y^2 > 4; the first two keep the squares inside Q4.28).
fn escaped_or_step(z: ptr<function, vec2<i32>>, c: vec2<u32>) -> bool {
    let x = (*z).x;
    let y = (*z).y;
    if (x > TWO || x < -TWO || y > TWO || y < -TWO) {
        return true;
    }
    let x2 = fx_mul(x, x);
    let y2 = fx_mul(y, y);
    if (x2 + y2 > FOUR) {
        return true;
    }
    let xy = fx_mul(x, y);
    *z = vec2<i32>(bitcast<i32>(x2 - y2 + c.x), bitcast<i32>((xy << 1u) + c.y));
    return false;
}

// Iterations before z escapes, or max_iter. Unrolled by four: the escape test between steps
// is the only branch in the hot part.
fn escape_count(c: vec2<u32>, max_iter: u32) -> u32 {
    var z = vec2<i32>(0, 0);
    var i = 0u;
    loop {
        if (max_iter - i < 4u) {
            break;
        }
        if (escaped_or_step(&z, c)) {
            return i;
        }
        if (escaped_or_step(&z, c)) {
            return i + 1u;
        }
        if (escaped_or_step(&z, c)) {
            return i + 2u;
        }
        if (escaped_or_step(&z, c)) {
            return i + 3u;
        }
        i = i + 4u;
    }
    loop {
        if (i >= max_iter) {
            break;
        }
        if (escaped_or_step(&z, c)) {
            return i;
        }
        i = i + 1u;
    }
    return max_iter;
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.tile_width || gid.y >= params.tile_height) {
        return;
    }
    let px = params.tile_x + gid.x;
    let py = params.tile_y + gid.y;
    let pixel_step = bitcast<u32>(params.step);
    // The image centre maps to the plane centre; imaginary values grow upwards.
    let c_re = bitcast<u32>(params.center_re) + (px - params.image_width / 2u) * pixel_step;
    let c_im = bitcast<u32>(params.center_im) - (py - params.image_height / 2u) * pixel_step;
    counts[gid.y * params.tile_width + gid.x] = escape_count(vec2<u32>(c_re, c_im), params.max_iter);
}
