//! `top_k_u32`: the `k` best (score, id) pairs among 1 to [`crate::reduce::MAX_FAN_IN`] lists of
//! them: highest score first, then lowest id. The order is total, so a tree of these gives the
//! same answer as one node over every list (the best of the best is the best), and every device
//! and the CPU agree exactly. Missing places are filled with [`EMPTY`], which sorts last.
//!
//! Params `[k, fan_in]`; each input is whole pairs of u32 words (score, id), at most
//! [`MAX_PAIRS_PER_INPUT`]; the output is `k` pairs. One invocation does an insertion into the
//! output, so `k` and the inputs are kept small ([`MAX_K`]).

use super::{expect_output_size, expect_words, expect_workgroups, kernel_error, words_to_bytes};
use crate::reduce::MAX_FAN_IN;
use crate::{Result, bytes_to_words};
use starling_protocol::job::{BuiltinKernel, OutputOf, TaskInput, TaskSpec};
use std::sync::OnceLock;

/// Most pairs kept.
pub const MAX_K: u32 = 64;
/// Most pairs one input may hold.
pub const MAX_PAIRS_PER_INPUT: u64 = 4096;
/// A place no pair filled: score 0, the largest id.
pub const EMPTY: (u32, u32) = (0, u32::MAX);
const KERNEL: BuiltinKernel = BuiltinKernel::TopKU32;

/// A top-k task's params.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopKParams {
    pub k: u32,
    pub fan_in: u32,
}

impl TopKParams {
    pub fn to_words(&self) -> Vec<u32> {
        vec![self.k, self.fan_in]
    }

    pub fn from_words(words: &[u32]) -> Result<Self> {
        expect_words(KERNEL, words, 2)?;
        let p = TopKParams { k: words[0], fan_in: words[1] };
        if !(1..=MAX_K).contains(&p.k) || p.fan_in == 0 || p.fan_in as usize > MAX_FAN_IN {
            return Err(kernel_error(format!("top_k_u32 keeps 1..={MAX_K} pairs of 1..={MAX_FAN_IN} inputs")));
        }
        Ok(p)
    }

    pub(crate) fn check(&self, sizes: &[u64], workgroups: [u32; 3], output_size: u32) -> Result<()> {
        if sizes.len() != self.fan_in as usize {
            return Err(kernel_error(format!("top_k_u32 with fan_in {} got {} inputs", self.fan_in, sizes.len())));
        }
        if sizes.iter().any(|&s| s % 8 != 0 || s / 8 > MAX_PAIRS_PER_INPUT) {
            return Err(kernel_error(format!(
                "top_k_u32 inputs are whole (score, id) pairs of u32, at most {MAX_PAIRS_PER_INPUT} each"
            )));
        }
        expect_workgroups(KERNEL, workgroups, [1, 1, 1])?;
        expect_output_size(KERNEL, output_size, u64::from(self.k) * 8)
    }

    /// The CPU reference.
    pub fn cpu(&self, inputs: &[&[u8]]) -> Vec<u8> {
        let mut pairs: Vec<(u32, u32)> = inputs
            .iter()
            .flat_map(|i| bytes_to_words(i).chunks_exact(2).map(|c| (c[0], c[1])).collect::<Vec<_>>())
            .collect();
        pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        pairs.resize(pairs.len().max(self.k as usize), EMPTY);
        let words: Vec<u32> = pairs[..self.k as usize].iter().flat_map(|&(s, i)| [s, i]).collect();
        words_to_bytes(&words)
    }
}

/// The WGSL over `fan_in` inputs (generated once per fan-in).
pub fn source(fan_in: usize) -> &'static str {
    static SOURCES: OnceLock<Vec<String>> = OnceLock::new();
    &SOURCES.get_or_init(|| (1..=MAX_FAN_IN).map(generate).collect())[fan_in.clamp(1, MAX_FAN_IN) - 1]
}

fn generate(fan_in: usize) -> String {
    let mut s = String::from("struct Params { k: u32, fan_in: u32 }\n@group(0) @binding(0) var<uniform> p: Params;\n");
    for i in 1..=fan_in {
        s += &format!("@group(0) @binding({i}) var<storage, read> in{i}: array<u32>;\n");
    }
    s += &format!("@group(0) @binding({}) var<storage, read_write> out: array<u32>;\n", fan_in + 1);
    s += "\n// Whether (s, i) goes before (t, j): a higher score, then a lower id.\n\
          fn before(s: u32, i: u32, t: u32, j: u32) -> bool { return s > t || (s == t && i < j); }\n\n\
          // Inserts (s, i) into the sorted top k in `out`, dropping what falls off the end.\n\
          fn insert(s: u32, i: u32) {\n\
          \x20   let last = p.k - 1u;\n\
          \x20   if (!before(s, i, out[2u * last], out[2u * last + 1u])) { return; }\n\
          \x20   var at = last;\n\
          \x20   loop {\n\
          \x20       if (at == 0u || !before(s, i, out[2u * (at - 1u)], out[2u * (at - 1u) + 1u])) { break; }\n\
          \x20       out[2u * at] = out[2u * (at - 1u)];\n\
          \x20       out[2u * at + 1u] = out[2u * (at - 1u) + 1u];\n\
          \x20       at = at - 1u;\n\
          \x20   }\n\
          \x20   out[2u * at] = s;\n\
          \x20   out[2u * at + 1u] = i;\n\
          }\n\n\
          @compute @workgroup_size(1)\n\
          fn main() {\n\
          \x20   for (var n = 0u; n < p.k; n++) { out[2u * n] = 0u; out[2u * n + 1u] = 0xffffffffu; }\n";
    for i in 1..=fan_in {
        s += &format!(
            "    for (var n = 0u; n + 1u < arrayLength(&in{i}); n += 2u) {{ insert(in{i}[n], in{i}[n + 1u]); }}\n"
        );
    }
    s += "}\n";
    s
}

/// One top-k task over the outputs of `tasks` (at most [`MAX_FAN_IN`]), running the job's
/// kernel `kernel`.
pub fn task(kernel: u8, tasks: &[u32], k: u32) -> TaskSpec {
    let p = TopKParams { k, fan_in: tasks.len() as u32 };
    TaskSpec {
        params: p.to_words(),
        inputs: tasks.iter().map(|&task| TaskInput::Output(OutputOf { task })).collect(),
        workgroups: [1, 1, 1],
        output_size: k * 8,
        kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(u32, u32)]) -> Vec<u8> {
        words_to_bytes(&p.iter().flat_map(|&(s, i)| [s, i]).collect::<Vec<_>>())
    }

    #[test]
    fn the_best_pairs_in_order_and_a_tree_agrees_with_one_node() {
        let a = pairs(&[(5, 1), (9, 2), (5, 0), (1, 7)]);
        let b = pairs(&[(9, 1), (3, 3)]);
        let p = TopKParams { k: 4, fan_in: 2 };
        assert_eq!(p.cpu(&[&a, &b]), pairs(&[(9, 1), (9, 2), (5, 0), (5, 1)]));
        // Fewer pairs than k: the rest are EMPTY.
        let p6 = TopKParams { k: 8, fan_in: 1 };
        assert_eq!(&p6.cpu(&[&b])[16..24], &pairs(&[EMPTY])[..]);
        // (top of a) with (top of b) = top of (a and b).
        let one = TopKParams { k: 2, fan_in: 1 };
        let two = TopKParams { k: 2, fan_in: 2 };
        assert_eq!(two.cpu(&[&one.cpu(&[&a]), &one.cpu(&[&b])]), two.cpu(&[&a, &b]));
        assert!(p.check(&[32, 16], [1, 1, 1], 32).is_ok());
        assert!(p.check(&[32, 12], [1, 1, 1], 32).is_err(), "half a pair");
        assert!(p.check(&[32, 16], [2, 1, 1], 32).is_err());
        assert!(TopKParams::from_words(&[MAX_K + 1, 1]).is_err());
    }

    #[cfg(feature = "validate")]
    #[test]
    fn every_fan_in_validates() {
        for n in 1..=MAX_FAN_IN {
            crate::validate::validate_kernel(source(n), crate::ENTRY_POINT, n).unwrap_or_else(|e| panic!("x{n}: {e}"));
        }
    }
}
