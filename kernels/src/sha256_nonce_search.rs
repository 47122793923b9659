//! `sha256_nonce_search`: hashes `prefix (32 bytes) || nonce (8 bytes, big-endian)` with SHA-256
//! for a range of nonces and reports, per workgroup, the digest with the most leading zero bits
//! (the smallest nonce on ties, so the answer is deterministic). Exact on every device.
//!
//! Thread `t` of workgroup `w` (`w = x + y * nx + z * nx * ny`) covers the nonces
//! `start + (w * 256 + t) * nonces_per_thread ..` (`nonces_per_thread` of them, wrapping mod
//! 2^64). Output: 3 little-endian u32 per workgroup, in `w` order: leading zero bits, nonce low
//! word, nonce high word ([`decode`]).

use super::{expect_output_size, expect_words, kernel_error, linear_workgroups, total_workgroups, words_to_bytes};
use crate::Result;
use sha2::{Digest, Sha256};
use starling_protocol::job::{BuiltinKernel, TaskSpec};

/// The kernel with the shared 64-bit helpers of `wide_math.wgsl` appended (WGSL has no
/// includes; module-scope functions may be declared after use).
pub const SOURCE: &str = concat!(include_str!("sha256_nonce_search.wgsl"), "\n", include_str!("wide_math.wgsl"));
pub const N_INPUTS: usize = 0;
/// Number of param words.
pub const WORDS: usize = 11;
/// Threads per workgroup.
pub const WORKGROUP_SIZE: u32 = 256;
/// Bytes of output per workgroup.
pub const RECORD_BYTES: u32 = 12;

const KERNEL: BuiltinKernel = BuiltinKernel::Sha256NonceSearch;

/// The params of one task. Words: the prefix as 8 big-endian words, then `start` (low word
/// first), then `nonces_per_thread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sha256Params {
    pub prefix: [u8; 32],
    pub start: u64,
    pub nonces_per_thread: u32,
}

/// The best nonce of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchResult {
    pub leading_zeros: u32,
    pub nonce: u64,
}

impl SearchResult {
    /// Stands for "nothing yet": every real result beats it or equals it.
    const NONE: SearchResult = SearchResult { leading_zeros: 0, nonce: u64::MAX };

    /// More leading zeros wins; on a tie, the smaller nonce.
    pub fn beats(&self, other: &SearchResult) -> bool {
        (self.leading_zeros, std::cmp::Reverse(self.nonce)) > (other.leading_zeros, std::cmp::Reverse(other.nonce))
    }
}

impl Sha256Params {
    pub fn to_words(&self) -> Vec<u32> {
        let mut words: Vec<u32> =
            self.prefix.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        words.extend([self.start as u32, (self.start >> 32) as u32, self.nonces_per_thread]);
        words
    }

    /// Decodes and checks params: `nonces_per_thread` at least 1.
    pub fn from_words(words: &[u32]) -> Result<Self> {
        expect_words(KERNEL, words, WORDS)?;
        let mut prefix = [0u8; 32];
        for (chunk, word) in prefix.chunks_exact_mut(4).zip(&words[..8]) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        let p = Sha256Params {
            prefix,
            start: u64::from(words[8]) | (u64::from(words[9]) << 32),
            nonces_per_thread: words[10],
        };
        if p.nonces_per_thread == 0 {
            return Err(kernel_error("nonces_per_thread must be at least 1"));
        }
        Ok(p)
    }

    /// Nonces a dispatch of `workgroups` hashes.
    pub fn nonces(&self, workgroups: [u32; 3]) -> u64 {
        total_workgroups(workgroups) * u64::from(WORKGROUP_SIZE) * u64::from(self.nonces_per_thread)
    }

    /// Bytes of output for a dispatch of `workgroups`: one 12-byte record per workgroup.
    pub fn output_size(workgroups: [u32; 3]) -> u64 {
        total_workgroups(workgroups).saturating_mul(u64::from(RECORD_BYTES))
    }

    pub(crate) fn check(&self, workgroups: [u32; 3], output_size: u32) -> Result<()> {
        expect_output_size(KERNEL, output_size, Self::output_size(workgroups))
    }

    /// The CPU reference (SHA-256 from the `sha2` crate): one record per workgroup.
    pub fn cpu(&self, workgroups: [u32; 3]) -> Vec<u8> {
        let per_group = u64::from(WORKGROUP_SIZE) * u64::from(self.nonces_per_thread);
        let mut words = Vec::new();
        for w in 0..total_workgroups(workgroups) {
            let first = self.start.wrapping_add(w.wrapping_mul(per_group));
            let mut best = SearchResult::NONE;
            for i in 0..per_group {
                let nonce = first.wrapping_add(i);
                let found = SearchResult { leading_zeros: leading_zero_bits(&digest(&self.prefix, nonce)), nonce };
                if found.beats(&best) {
                    best = found;
                }
            }
            words.extend([best.leading_zeros, best.nonce as u32, (best.nonce >> 32) as u32]);
        }
        words_to_bytes(&words)
    }
}

/// SHA-256 of `prefix || nonce` (nonce big-endian).
pub fn digest(prefix: &[u8; 32], nonce: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    hasher.update(nonce.to_be_bytes());
    hasher.finalize().into()
}

/// Leading zero bits of `bytes`, most significant bit of the first byte first.
pub fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut zeros = 0;
    for &b in bytes {
        zeros += b.leading_zeros();
        if b != 0 {
            break;
        }
    }
    zeros
}

/// The per-workgroup records of an output.
pub fn decode(output: &[u8]) -> Vec<SearchResult> {
    super::bytes_to_words(output)
        .chunks_exact(3)
        .map(|r| SearchResult { leading_zeros: r[0], nonce: u64::from(r[1]) | (u64::from(r[2]) << 32) })
        .collect()
}

/// The best of several results (more zeros, then the smaller nonce).
pub fn best(results: impl IntoIterator<Item = SearchResult>) -> Option<SearchResult> {
    results.into_iter().reduce(|best, r| if r.beats(&best) { r } else { best })
}

/// `n_tasks` tasks of `workgroups_per_task` workgroups covering consecutive nonces from `start`.
/// Empty when a count is 0 or `workgroups_per_task` has no dispatch shape
/// ([`super::linear_workgroups`]).
pub fn tasks(
    prefix: [u8; 32],
    start: u64,
    n_tasks: u32,
    workgroups_per_task: u32,
    nonces_per_thread: u32,
) -> Vec<TaskSpec> {
    let Some(workgroups) = linear_workgroups(workgroups_per_task) else {
        return Vec::new();
    };
    let Ok(output_size) = u32::try_from(Sha256Params::output_size(workgroups)) else {
        return Vec::new();
    };
    if nonces_per_thread == 0 {
        return Vec::new();
    }
    let per_task = u64::from(workgroups_per_task) * u64::from(WORKGROUP_SIZE) * u64::from(nonces_per_thread);
    (0..u64::from(n_tasks))
        .map(|i| {
            let params =
                Sha256Params { prefix, start: start.wrapping_add(i.wrapping_mul(per_task)), nonces_per_thread };
            TaskSpec { params: params.to_words(), inputs: Vec::new(), workgroups, output_size, kernel: 0 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_digest_is_sha256_of_prefix_and_big_endian_nonce() {
        let prefix = [0xab; 32];
        let mut message = prefix.to_vec();
        message.extend([0, 0, 0, 0, 0, 0, 0x01, 0x02]);
        assert_eq!(digest(&prefix, 0x0102), <[u8; 32]>::from(Sha256::digest(&message)));
        // Computed independently (Python's hashlib) for 40 zero bytes and for a text prefix.
        assert_eq!(
            hex::encode(digest(&[0; 32], 0)),
            "2c34ce1df23b838c5abf2a7f6437cca3d3067ed509ff25f11df6b11b582b51eb"
        );
        assert_eq!(
            hex::encode(digest(b"starling sha256 nonce search 32b", 12345)),
            "329d796749c101fb680f0dea0083c395f81e6fc5d610cca15d336d9835df6799"
        );
    }

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        assert_eq!(leading_zero_bits(&[0x80, 0]), 0);
        assert_eq!(leading_zero_bits(&[0x01, 0]), 7);
        assert_eq!(leading_zero_bits(&[0, 0, 0x10]), 19);
        assert_eq!(leading_zero_bits(&[0; 32]), 256);
    }

    #[test]
    fn ties_go_to_the_smaller_nonce() {
        let a = SearchResult { leading_zeros: 3, nonce: 10 };
        let b = SearchResult { leading_zeros: 3, nonce: 4 };
        let c = SearchResult { leading_zeros: 5, nonce: 99 };
        assert!(b.beats(&a) && !a.beats(&b) && c.beats(&b));
        assert_eq!(best([a, b, c]), Some(c));
        assert_eq!(best([a, b]), Some(b));
    }

    #[test]
    fn cpu_reference_finds_the_best_nonce_of_each_workgroup() {
        let p =
            Sha256Params { prefix: *b"starling sha256 nonce search 32b", start: u64::MAX - 300, nonces_per_thread: 2 };
        assert_eq!(Sha256Params::from_words(&p.to_words()).unwrap(), p);
        let out = p.cpu([2, 1, 1]);
        let records = decode(&out);
        assert_eq!(records.len(), 2);
        for (w, record) in records.iter().enumerate() {
            // Brute force over the workgroup's 512 nonces (they wrap past 2^64 in the first one).
            let first = p.start.wrapping_add(w as u64 * 512);
            let expected = best((0..512).map(|i| {
                let nonce = first.wrapping_add(i);
                SearchResult { leading_zeros: leading_zero_bits(&digest(&p.prefix, nonce)), nonce }
            }));
            assert_eq!(Some(*record), expected);
            assert_eq!(leading_zero_bits(&digest(&p.prefix, record.nonce)), record.leading_zeros);
        }
        // 512 tries find at least a few zero bits.
        assert!(records.iter().all(|r| r.leading_zeros >= 4), "{records:?}");
    }

    #[test]
    fn tasks_cover_consecutive_ranges() {
        let tasks = tasks([1; 32], 1000, 3, 2, 5);
        let starts: Vec<u64> = tasks.iter().map(|t| Sha256Params::from_words(&t.params).unwrap().start).collect();
        assert_eq!(starts, [1000, 1000 + 2560, 1000 + 5120]);
        assert!(tasks.iter().all(|t| t.workgroups == [2, 1, 1] && t.output_size == 24));
    }
}
