//! `monte_carlo_pi`: counts random points of the unit square that fall inside the quarter circle,
//! with integer arithmetic only, so every device and the CPU agree exactly.
//!
//! Randomness is counter-based (Philox-4x32-10): thread `t` of global workgroup `g` draws its
//! points from counters `(j, t, g_lo, g_hi)`, `j = 0, 1, ..`, under the 64-bit seed, two points per
//! block. Global workgroup `g` is `first_workgroup + w` where `w = x + y * nx + z * nx * ny` is the
//! workgroup's index in the dispatch; tasks of one job use disjoint `first_workgroup` ranges so
//! they draw disjoint samples. A point is two 16-bit coordinates `x, y` (the high halves of two
//! words) and hits when `x^2 + y^2 < 2^32`. Output: one u32 hit count per workgroup, in `w` order.

use super::{expect_output_size, expect_words, kernel_error, linear_workgroups, total_workgroups, words_to_bytes};
use crate::Result;
use starling_protocol::job::{BuiltinKernel, TaskSpec};

/// The kernel with the shared 64-bit helpers of `wide_math.wgsl` appended (WGSL has no
/// includes; module-scope functions may be declared after use).
pub const SOURCE: &str = concat!(include_str!("monte_carlo_pi.wgsl"), "\n", include_str!("wide_math.wgsl"));
pub const N_INPUTS: usize = 0;
/// Number of param words.
pub const WORDS: usize = 4;
/// Threads per workgroup.
pub const WORKGROUP_SIZE: u32 = 256;
/// Most samples per thread: a workgroup's hit count must fit in a u32.
pub const MAX_SAMPLES_PER_THREAD: u32 = u32::MAX / WORKGROUP_SIZE;

const KERNEL: BuiltinKernel = BuiltinKernel::MonteCarloPi;
const PHILOX_M: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
const PHILOX_W: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];

/// The params of one task, in word order (`seed` takes two words, low first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonteCarloParams {
    pub seed: u64,
    /// Global index of the dispatch's first workgroup.
    pub first_workgroup: u32,
    pub samples_per_thread: u32,
}

impl MonteCarloParams {
    pub fn to_words(&self) -> Vec<u32> {
        vec![self.seed as u32, (self.seed >> 32) as u32, self.first_workgroup, self.samples_per_thread]
    }

    /// Decodes and checks params: `samples_per_thread` in `1..=MAX_SAMPLES_PER_THREAD`.
    pub fn from_words(words: &[u32]) -> Result<Self> {
        expect_words(KERNEL, words, WORDS)?;
        let p = MonteCarloParams {
            seed: u64::from(words[0]) | (u64::from(words[1]) << 32),
            first_workgroup: words[2],
            samples_per_thread: words[3],
        };
        if p.samples_per_thread == 0 || p.samples_per_thread > MAX_SAMPLES_PER_THREAD {
            return Err(kernel_error(format!("samples_per_thread must be in 1..={MAX_SAMPLES_PER_THREAD}")));
        }
        Ok(p)
    }

    /// Samples a dispatch of `workgroups` draws.
    pub fn samples(&self, workgroups: [u32; 3]) -> u64 {
        total_workgroups(workgroups) * u64::from(WORKGROUP_SIZE) * u64::from(self.samples_per_thread)
    }

    /// Bytes of output for a dispatch of `workgroups`: one u32 per workgroup.
    pub fn output_size(workgroups: [u32; 3]) -> u64 {
        total_workgroups(workgroups).saturating_mul(4)
    }

    pub(crate) fn check(&self, workgroups: [u32; 3], output_size: u32) -> Result<()> {
        expect_output_size(KERNEL, output_size, Self::output_size(workgroups))
    }

    /// The CPU reference: hit counts per workgroup as little-endian bytes.
    pub fn cpu(&self, workgroups: [u32; 3]) -> Vec<u8> {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let counts: Vec<u32> = (0..total_workgroups(workgroups))
            .map(|w| {
                let group = u64::from(self.first_workgroup) + w;
                (0..WORKGROUP_SIZE).map(|thread| self.thread_hits(key, group, thread)).sum()
            })
            .collect();
        words_to_bytes(&counts)
    }

    fn thread_hits(&self, key: [u32; 2], group: u64, thread: u32) -> u32 {
        let mut hits = 0;
        for s in (0..self.samples_per_thread).step_by(2) {
            let r = philox4x32_10([s >> 1, thread, group as u32, (group >> 32) as u32], key);
            hits += u32::from(hit(r[0], r[1]));
            if s + 1 < self.samples_per_thread {
                hits += u32::from(hit(r[2], r[3]));
            }
        }
        hits
    }
}

/// Whether the point `(u >> 16, v >> 16)` lies strictly inside the circle of radius 2^16.
fn hit(u: u32, v: u32) -> bool {
    let (x, y) = (u64::from(u >> 16), u64::from(v >> 16));
    x * x + y * y < 1 << 32
}

/// Philox-4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W[0]), k[1].wrapping_add(PHILOX_W[1])];
        }
        let p0 = u64::from(PHILOX_M[0]) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M[1]) * u64::from(c[2]);
        c = [(p1 >> 32) as u32 ^ c[1] ^ k[0], p1 as u32, (p0 >> 32) as u32 ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// `n_tasks` tasks of `workgroups_per_task` workgroups each, drawing disjoint samples under
/// `seed`. Empty when the counts are 0, when `workgroups_per_task` has no dispatch shape
/// ([`super::linear_workgroups`]), when `samples_per_thread` is out of range, or when the tasks
/// would need more than 2^32 global workgroups.
pub fn tasks(seed: u64, n_tasks: u32, workgroups_per_task: u32, samples_per_thread: u32) -> Vec<TaskSpec> {
    let Some(workgroups) = linear_workgroups(workgroups_per_task) else {
        return Vec::new();
    };
    if samples_per_thread == 0
        || samples_per_thread > MAX_SAMPLES_PER_THREAD
        || u64::from(n_tasks) * u64::from(workgroups_per_task) > 1 << 32
    {
        return Vec::new();
    }
    (0..n_tasks)
        .map(|i| {
            let params = MonteCarloParams { seed, first_workgroup: i * workgroups_per_task, samples_per_thread };
            TaskSpec {
                params: params.to_words(),
                inputs: Vec::new(),
                workgroups,
                output_size: u32::try_from(MonteCarloParams::output_size(workgroups)).unwrap_or(u32::MAX),
                kernel: 0,
            }
        })
        .collect()
}

/// The sum of a task output's per-workgroup hit counts.
pub fn total_hits(output: &[u8]) -> u64 {
    super::bytes_to_words(output).iter().map(|&h| u64::from(h)).sum()
}

/// The estimate of pi from `hits` out of `samples` points.
pub fn estimate(hits: u64, samples: u64) -> f64 {
    if samples == 0 {
        return 0.0;
    }
    4.0 * hits as f64 / samples as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Known-answer vectors from Random123's kat_vectors.
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]);
        assert_eq!(
            philox4x32_10([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn hit_boundary_is_strict() {
        assert!(hit(0xffff_0000, 0));
        assert!(!hit(0xffff_0000, 0xffff_0000));
        // 2^30 + 0xddb3^2 = 4_294_871_849 < 2^32 <= 2^30 + 0xddb4^2 = 4_294_985_360
        assert!(hit(0x8000_0000, 0xddb3_ffff));
        assert!(!hit(0x8000_0000, 0xddb4_0000));
        // 2 * 0xb504^2 = 4_294_791_200 < 2^32 <= 2 * 0xb505^2 = 4_294_976_562
        assert!(hit(0xb504_0000, 0xb504_0000));
        assert!(!hit(0xb505_0000, 0xb505_0000));
    }

    #[test]
    fn params_round_trip_and_cpu_estimate() {
        let p = MonteCarloParams { seed: 0x0123_4567_89ab_cdef, first_workgroup: 9, samples_per_thread: 33 };
        assert_eq!(MonteCarloParams::from_words(&p.to_words()).unwrap(), p);
        assert!(MonteCarloParams::from_words(&MonteCarloParams { samples_per_thread: 0, ..p }.to_words()).is_err());
        let out = p.cpu([4, 1, 1]);
        assert_eq!(out.len(), 16);
        let pi = estimate(total_hits(&out), p.samples([4, 1, 1]));
        assert!((pi - std::f64::consts::PI).abs() < 0.05, "{pi}");
    }

    #[test]
    fn tasks_draw_disjoint_workgroups() {
        let tasks = tasks(7, 3, 10, 4);
        let firsts: Vec<u32> = tasks.iter().map(|t| t.params[2]).collect();
        assert_eq!(firsts, [0, 10, 20]);
        assert!(tasks.iter().all(|t| t.workgroups == [10, 1, 1] && t.output_size == 40));
        assert!(super::tasks(7, 3, 10, 0).is_empty());
    }
}
