// SHA-256 nonce search: each thread hashes the 40-byte message prefix (32 bytes) || nonce
// (8 bytes, big-endian) for its nonces and keeps the digest with the most leading zero bits,
// the smallest nonce on ties. Each workgroup writes its best as 3 u32: leading zero bits,
// nonce low word, nonce high word.
//
// Thread t of workgroup w (w = x + y * nx + z * nx * ny, t = local index) covers nonces
// [start + (w * 256 + t) * nonces_per_thread, .. + nonces_per_thread), wrapping mod 2^64.
// The message fits one block; rounds 0..7 read only the prefix, so each thread runs them once
// and starts every nonce from that state. Rounds and message schedule are unrolled by hand.

struct Params {
    // The prefix as big-endian words (the first eight message words).
    prefix: array<vec4<u32>, 2>,
    start_lo: u32,
    start_hi: u32,
    nonces_per_thread: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> best: array<u32>;

const K = array<u32, 64>(
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
);

var<workgroup> best_zeros: array<u32, 256>;
var<workgroup> best_lo: array<u32, 256>;
var<workgroup> best_hi: array<u32, 256>;

// Working state a..h of the compression function.
var<private> sa: u32;
var<private> sb: u32;
var<private> sc: u32;
var<private> sd: u32;
var<private> se: u32;
var<private> sf: u32;
var<private> sg: u32;
var<private> sh: u32;

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

fn small_sigma0(x: u32) -> u32 {
    return rotr(x, 7u) ^ rotr(x, 18u) ^ (x >> 3u);
}

fn small_sigma1(x: u32) -> u32 {
    return rotr(x, 17u) ^ rotr(x, 19u) ^ (x >> 10u);
}

// One compression round; kw = K[i] + W[i].
fn sha_round(kw: u32) {
    let t1 = sh + (rotr(se, 6u) ^ rotr(se, 11u) ^ rotr(se, 25u)) + ((se & sf) ^ (~se & sg)) + kw;
    let t2 = (rotr(sa, 2u) ^ rotr(sa, 13u) ^ rotr(sa, 22u)) + ((sa & sb) ^ (sa & sc) ^ (sb & sc));
    sh = sg;
    sg = sf;
    sf = se;
    se = sd + t1;
    sd = sc;
    sc = sb;
    sb = sa;
    sa = t1 + t2;
}

// Leading zero bits of the digest (IV + state), most significant word first.
fn leading_zeros() -> u32 {
    var h = array<u32, 8>(
        0x6a09e667u + sa, 0xbb67ae85u + sb, 0x3c6ef372u + sc, 0xa54ff53au + sd,
        0x510e527fu + se, 0x9b05688cu + sf, 0x1f83d9abu + sg, 0x5be0cd19u + sh,
    );
    var zeros = 0u;
    for (var i = 0u; i < 8u; i = i + 1u) {
        zeros = zeros + countLeadingZeros(h[i]);
        if (h[i] != 0u) {
            break;
        }
    }
    return zeros;
}

// Whether (zeros, nonce) beats (best_zeros, best_nonce): more zeros, or as many and a smaller nonce.
fn better(zeros: u32, lo: u32, hi: u32, bz: u32, blo: u32, bhi: u32) -> bool {
    if (zeros != bz) {
        return zeros > bz;
    }
    if (hi != bhi) {
        return hi < bhi;
    }
    return lo < blo;
}

fn keep_better(dst: u32, src: u32) {
    if (better(best_zeros[src], best_lo[src], best_hi[src], best_zeros[dst], best_lo[dst], best_hi[dst])) {
        best_zeros[dst] = best_zeros[src];
        best_lo[dst] = best_lo[src];
        best_hi[dst] = best_hi[src];
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wg = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
    let npt = params.nonces_per_thread;

    // First nonce: start + (wg * 256 + lid) * npt, in 64 bits.
    let thread_lo = (wg << 8u) | lid;
    let thread_hi = wg >> 24u;
    let offset = mul_wide(thread_lo, npt);
    let offset_hi = offset.y + thread_hi * npt;
    var lo = params.start_lo + offset.x;
    var hi = params.start_hi + offset_hi + select(0u, 1u, lo < offset.x);

    let w0 = params.prefix[0].x;
    let w1 = params.prefix[0].y;
    let w2 = params.prefix[0].z;
    let w3 = params.prefix[0].w;
    let w4 = params.prefix[1].x;
    let w5 = params.prefix[1].y;
    let w6 = params.prefix[1].z;
    let w7 = params.prefix[1].w;
    sa = 0x6a09e667u;
    sb = 0xbb67ae85u;
    sc = 0x3c6ef372u;
    sd = 0xa54ff53au;
    se = 0x510e527fu;
    sf = 0x9b05688cu;
    sg = 0x1f83d9abu;
    sh = 0x5be0cd19u;
    sha_round(0x428a2f98u + w0);
    sha_round(0x71374491u + w1);
    sha_round(0xb5c0fbcfu + w2);
    sha_round(0xe9b5dba5u + w3);
    sha_round(0x3956c25bu + w4);
    sha_round(0x59f111f1u + w5);
    sha_round(0x923f82a4u + w6);
    sha_round(0xab1c5ed5u + w7);
    let mid = array<u32, 8>(sa, sb, sc, sd, se, sf, sg, sh);

    // (0, 2^64 - 1) stands for "nothing yet": every real nonce beats it or equals it.
    var my_zeros = 0u;
    var my_lo = 0xffffffffu;
    var my_hi = 0xffffffffu;
    for (var i = 0u; i < npt; i = i + 1u) {
        let zeros = hash_nonce(mid, array<u32, 8>(w0, w1, w2, w3, w4, w5, w6, w7), lo, hi);
        if (better(zeros, lo, hi, my_zeros, my_lo, my_hi)) {
            my_zeros = zeros;
            my_lo = lo;
            my_hi = hi;
        }
        lo = lo + 1u;
        hi = hi + select(0u, 1u, lo == 0u);
    }

    best_zeros[lid] = my_zeros;
    best_lo[lid] = my_lo;
    best_hi[lid] = my_hi;
    workgroupBarrier();
    if (lid < 128u) {
        keep_better(lid, lid + 128u);
    }
    workgroupBarrier();
    if (lid < 64u) {
        keep_better(lid, lid + 64u);
    }
    workgroupBarrier();
    if (lid < 32u) {
        keep_better(lid, lid + 32u);
    }
    workgroupBarrier();
    if (lid < 16u) {
        keep_better(lid, lid + 16u);
    }
    workgroupBarrier();
    if (lid < 8u) {
        keep_better(lid, lid + 8u);
    }
    workgroupBarrier();
    if (lid < 4u) {
        keep_better(lid, lid + 4u);
    }
    workgroupBarrier();
    if (lid < 2u) {
        keep_better(lid, lid + 2u);
    }
    workgroupBarrier();
    if (lid < 1u) {
        keep_better(lid, lid + 1u);
    }
    workgroupBarrier();
    if (lid == 0u) {
        best[wg * 3u] = best_zeros[0];
        best[wg * 3u + 1u] = best_lo[0];
        best[wg * 3u + 2u] = best_hi[0];
    }
}

// Leading zero bits of SHA-256(prefix || nonce), starting from the state after rounds 0..7.
fn hash_nonce(mid: array<u32, 8>, prefix: array<u32, 8>, lo: u32, hi: u32) -> u32 {
    var w: array<u32, 64>;
    w[0] = prefix[0];
    w[1] = prefix[1];
    w[2] = prefix[2];
    w[3] = prefix[3];
    w[4] = prefix[4];
    w[5] = prefix[5];
    w[6] = prefix[6];
    w[7] = prefix[7];
    w[8] = hi;
    w[9] = lo;
    // Padding: a 1 bit, zeros, then the message length in bits (40 * 8).
    w[10] = 0x80000000u;
    w[11] = 0u;
    w[12] = 0u;
    w[13] = 0u;
    w[14] = 0u;
    w[15] = 320u;
    w[16] = small_sigma1(w[14]) + w[9] + small_sigma0(w[1]) + w[0];
    w[17] = small_sigma1(w[15]) + w[10] + small_sigma0(w[2]) + w[1];
    w[18] = small_sigma1(w[16]) + w[11] + small_sigma0(w[3]) + w[2];
    w[19] = small_sigma1(w[17]) + w[12] + small_sigma0(w[4]) + w[3];
    w[20] = small_sigma1(w[18]) + w[13] + small_sigma0(w[5]) + w[4];
    w[21] = small_sigma1(w[19]) + w[14] + small_sigma0(w[6]) + w[5];
    w[22] = small_sigma1(w[20]) + w[15] + small_sigma0(w[7]) + w[6];
    w[23] = small_sigma1(w[21]) + w[16] + small_sigma0(w[8]) + w[7];
    w[24] = small_sigma1(w[22]) + w[17] + small_sigma0(w[9]) + w[8];
    w[25] = small_sigma1(w[23]) + w[18] + small_sigma0(w[10]) + w[9];
    w[26] = small_sigma1(w[24]) + w[19] + small_sigma0(w[11]) + w[10];
    w[27] = small_sigma1(w[25]) + w[20] + small_sigma0(w[12]) + w[11];
    w[28] = small_sigma1(w[26]) + w[21] + small_sigma0(w[13]) + w[12];
    w[29] = small_sigma1(w[27]) + w[22] + small_sigma0(w[14]) + w[13];
    w[30] = small_sigma1(w[28]) + w[23] + small_sigma0(w[15]) + w[14];
    w[31] = small_sigma1(w[29]) + w[24] + small_sigma0(w[16]) + w[15];
    w[32] = small_sigma1(w[30]) + w[25] + small_sigma0(w[17]) + w[16];
    w[33] = small_sigma1(w[31]) + w[26] + small_sigma0(w[18]) + w[17];
    w[34] = small_sigma1(w[32]) + w[27] + small_sigma0(w[19]) + w[18];
    w[35] = small_sigma1(w[33]) + w[28] + small_sigma0(w[20]) + w[19];
    w[36] = small_sigma1(w[34]) + w[29] + small_sigma0(w[21]) + w[20];
    w[37] = small_sigma1(w[35]) + w[30] + small_sigma0(w[22]) + w[21];
    w[38] = small_sigma1(w[36]) + w[31] + small_sigma0(w[23]) + w[22];
    w[39] = small_sigma1(w[37]) + w[32] + small_sigma0(w[24]) + w[23];
    w[40] = small_sigma1(w[38]) + w[33] + small_sigma0(w[25]) + w[24];
    w[41] = small_sigma1(w[39]) + w[34] + small_sigma0(w[26]) + w[25];
    w[42] = small_sigma1(w[40]) + w[35] + small_sigma0(w[27]) + w[26];
    w[43] = small_sigma1(w[41]) + w[36] + small_sigma0(w[28]) + w[27];
    w[44] = small_sigma1(w[42]) + w[37] + small_sigma0(w[29]) + w[28];
    w[45] = small_sigma1(w[43]) + w[38] + small_sigma0(w[30]) + w[29];
    w[46] = small_sigma1(w[44]) + w[39] + small_sigma0(w[31]) + w[30];
    w[47] = small_sigma1(w[45]) + w[40] + small_sigma0(w[32]) + w[31];
    w[48] = small_sigma1(w[46]) + w[41] + small_sigma0(w[33]) + w[32];
    w[49] = small_sigma1(w[47]) + w[42] + small_sigma0(w[34]) + w[33];
    w[50] = small_sigma1(w[48]) + w[43] + small_sigma0(w[35]) + w[34];
    w[51] = small_sigma1(w[49]) + w[44] + small_sigma0(w[36]) + w[35];
    w[52] = small_sigma1(w[50]) + w[45] + small_sigma0(w[37]) + w[36];
    w[53] = small_sigma1(w[51]) + w[46] + small_sigma0(w[38]) + w[37];
    w[54] = small_sigma1(w[52]) + w[47] + small_sigma0(w[39]) + w[38];
    w[55] = small_sigma1(w[53]) + w[48] + small_sigma0(w[40]) + w[39];
    w[56] = small_sigma1(w[54]) + w[49] + small_sigma0(w[41]) + w[40];
    w[57] = small_sigma1(w[55]) + w[50] + small_sigma0(w[42]) + w[41];
    w[58] = small_sigma1(w[56]) + w[51] + small_sigma0(w[43]) + w[42];
    w[59] = small_sigma1(w[57]) + w[52] + small_sigma0(w[44]) + w[43];
    w[60] = small_sigma1(w[58]) + w[53] + small_sigma0(w[45]) + w[44];
    w[61] = small_sigma1(w[59]) + w[54] + small_sigma0(w[46]) + w[45];
    w[62] = small_sigma1(w[60]) + w[55] + small_sigma0(w[47]) + w[46];
    w[63] = small_sigma1(w[61]) + w[56] + small_sigma0(w[48]) + w[47];
    sa = mid[0];
    sb = mid[1];
    sc = mid[2];
    sd = mid[3];
    se = mid[4];
    sf = mid[5];
    sg = mid[6];
    sh = mid[7];
    sha_round(0xd807aa98u + w[8]);
    sha_round(0x12835b01u + w[9]);
    sha_round(0x243185beu + w[10]);
    sha_round(0x550c7dc3u + w[11]);
    sha_round(0x72be5d74u + w[12]);
    sha_round(0x80deb1feu + w[13]);
    sha_round(0x9bdc06a7u + w[14]);
    sha_round(0xc19bf174u + w[15]);
    sha_round(0xe49b69c1u + w[16]);
    sha_round(0xefbe4786u + w[17]);
    sha_round(0x0fc19dc6u + w[18]);
    sha_round(0x240ca1ccu + w[19]);
    sha_round(0x2de92c6fu + w[20]);
    sha_round(0x4a7484aau + w[21]);
    sha_round(0x5cb0a9dcu + w[22]);
    sha_round(0x76f988dau + w[23]);
    sha_round(0x983e5152u + w[24]);
    sha_round(0xa831c66du + w[25]);
    sha_round(0xb00327c8u + w[26]);
    sha_round(0xbf597fc7u + w[27]);
    sha_round(0xc6e00bf3u + w[28]);
    sha_round(0xd5a79147u + w[29]);
    sha_round(0x06ca6351u + w[30]);
    sha_round(0x14292967u + w[31]);
    sha_round(0x27b70a85u + w[32]);
    sha_round(0x2e1b2138u + w[33]);
    sha_round(0x4d2c6dfcu + w[34]);
    sha_round(0x53380d13u + w[35]);
    sha_round(0x650a7354u + w[36]);
    sha_round(0x766a0abbu + w[37]);
    sha_round(0x81c2c92eu + w[38]);
    sha_round(0x92722c85u + w[39]);
    sha_round(0xa2bfe8a1u + w[40]);
    sha_round(0xa81a664bu + w[41]);
    sha_round(0xc24b8b70u + w[42]);
    sha_round(0xc76c51a3u + w[43]);
    sha_round(0xd192e819u + w[44]);
    sha_round(0xd6990624u + w[45]);
    sha_round(0xf40e3585u + w[46]);
    sha_round(0x106aa070u + w[47]);
    sha_round(0x19a4c116u + w[48]);
    sha_round(0x1e376c08u + w[49]);
    sha_round(0x2748774cu + w[50]);
    sha_round(0x34b0bcb5u + w[51]);
    sha_round(0x391c0cb3u + w[52]);
    sha_round(0x4ed8aa4au + w[53]);
    sha_round(0x5b9cca4fu + w[54]);
    sha_round(0x682e6ff3u + w[55]);
    sha_round(0x748f82eeu + w[56]);
    sha_round(0x78a5636fu + w[57]);
    sha_round(0x84c87814u + w[58]);
    sha_round(0x8cc70208u + w[59]);
    sha_round(0x90befffau + w[60]);
    sha_round(0xa4506cebu + w[61]);
    sha_round(0xbef9a3f7u + w[62]);
    sha_round(0xc67178f2u + w[63]);
    return leading_zeros();
}

