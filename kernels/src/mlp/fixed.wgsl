// Q16.16 fixed point in i32, the same integer operations as `mlp_fx.rs` (its CPU reference), so
// every device and the CPU produce the same bits. Overflow wraps, as WGSL's runtime i32 and u32
// arithmetic does.

const ONE: i32 = 65536;
const LOG2E: i32 = 94548;
const LN2: i32 = 45426;

// floor(a * b / 2^16) of the exact 64-bit product, truncated to 32 bits: the unsigned product
// (`mul_wide`, wide_math.wgsl: WGSL has no 64-bit integers), signed by subtracting the other
// operand from the high word.
fn mulq(a: i32, b: i32) -> i32 {
    let ua = bitcast<u32>(a);
    let ub = bitcast<u32>(b);
    let wide = mul_wide(ua, ub);
    var hi = wide.y;
    if (a < 0) { hi = hi - ub; }
    if (b < 0) { hi = hi - ua; }
    return bitcast<i32>((hi << 16u) | (wide.x >> 16u));
}

// e^x for x <= 0: 2^(x log2 e), the fraction by a degree-5 polynomial (Horner, in Q16), the
// integer part by a shift (under 29, so every backend shifts alike). A positive x is a difference
// of logits that wrapped: 0, as its true value is.
fn expq(x: i32) -> i32 {
    if (x > 0 || x <= -(20 * ONE)) { return 0; }
    let y = -mulq(x, LOG2E);
    let k = u32(y >> 16u);
    let f = y & 0xffff;
    var q = -87;
    q = mulq(q, f) + 630;
    q = mulq(q, f) - 3638;
    q = mulq(q, f) + 15744;
    q = mulq(q, f) - 45426;
    q = mulq(q, f) + ONE;
    return q >> k;
}

// ln(s) for s >= 1: the exponent from the leading bit, the mantissa m in [1, 2) by
// ln m = 2 atanh((m - 1) / (m + 1)), a series in Q16.
fn lnq(s: i32) -> i32 {
    let n = firstLeadingBit(u32(s)) - 16u;
    let m = u32(s) >> n;
    let t = i32(((m - 65536u) << 16u) / (m + 65536u));
    let t2 = mulq(t, t);
    var q = 9362;
    q = mulq(q, t2) + 13107;
    q = mulq(q, t2) + 21845;
    q = mulq(q, t2) + ONE;
    return i32(n) * LN2 + 2 * mulq(t, q);
}

struct Shape { inputs: u32, hidden: u32, outputs: u32, samples: u32 }
const MAX_HIDDEN: u32 = 64u;
const MAX_OUTPUTS: u32 = 16u;
