//! `matmul_f32`: `C = A * B` for row-major little-endian f32 matrices, A `m x k` (input 1) and
//! B `k x n` (input 2). A task computes the row block `[row_offset, row_offset + rows)` of C, so a
//! large product splits into several tasks that share the same two input blobs
//! ([`tasks_for`]); concatenating the outputs in order gives C.
//!
//! GPUs may fuse and reorder float operations, so results agree with [`MatmulParams::cpu`] (and
//! across vendors) within a tolerance, not bit for bit: compare with `Comparison::Tolerance`.

use super::{expect_output_size, expect_words, expect_workgroups, groups, kernel_error};
use crate::Result;
use starling_protocol::bytes::Hash32;
use starling_protocol::job::{BuiltinKernel, TaskSpec};

pub const SOURCE: &str = include_str!("matmul_f32.wgsl");
pub const N_INPUTS: usize = 2;
/// Number of param words.
pub const WORDS: usize = 5;
/// Rows and columns of C computed by one workgroup.
pub const BLOCK: u32 = 64;

const KERNEL: BuiltinKernel = BuiltinKernel::MatmulF32;

/// The params of one row block, in word order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// First row of C this task computes.
    pub row_offset: u32,
    /// Rows of C this task computes.
    pub rows: u32,
}

impl MatmulParams {
    /// The whole product in one task.
    pub fn whole(m: u32, n: u32, k: u32) -> Self {
        MatmulParams { m, n, k, row_offset: 0, rows: m }
    }

    pub fn to_words(&self) -> Vec<u32> {
        vec![self.m, self.n, self.k, self.row_offset, self.rows]
    }

    /// Decodes and checks params: all dimensions at least 1, the row block inside A, and every
    /// matrix's byte size within a u32 (so the kernel's indices cannot overflow).
    pub fn from_words(words: &[u32]) -> Result<Self> {
        expect_words(KERNEL, words, WORDS)?;
        let p = MatmulParams { m: words[0], n: words[1], k: words[2], row_offset: words[3], rows: words[4] };
        if p.m == 0 || p.n == 0 || p.k == 0 || p.rows == 0 {
            return Err(kernel_error("matmul dimensions and rows must be at least 1"));
        }
        if u64::from(p.row_offset) + u64::from(p.rows) > u64::from(p.m) {
            return Err(kernel_error("matmul row block reaches past row m"));
        }
        for (name, r, c) in [("A", p.m, p.k), ("B", p.k, p.n)] {
            if (u64::from(r) * u64::from(c)).saturating_mul(4) > u64::from(u32::MAX) {
                return Err(kernel_error(format!("matmul {name} is over 4 GiB")));
            }
        }
        Ok(p)
    }

    /// One workgroup per 64x64 block of this task's rows of C.
    pub fn workgroups(&self) -> [u32; 3] {
        [groups(self.n, BLOCK), groups(self.rows, BLOCK), 1]
    }

    /// Bytes of output: `rows x n` f32.
    pub fn output_size(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.n) * 4
    }

    pub(crate) fn check(&self, input_sizes: &[u64], workgroups: [u32; 3], output_size: u32) -> Result<()> {
        let a_len = u64::from(self.m) * u64::from(self.k) * 4;
        let b_len = u64::from(self.k) * u64::from(self.n) * 4;
        if input_sizes[0] != a_len || input_sizes[1] != b_len {
            return Err(kernel_error(format!(
                "matmul needs A of {a_len} bytes and B of {b_len} bytes, got {} and {}",
                input_sizes[0], input_sizes[1]
            )));
        }
        expect_workgroups(KERNEL, workgroups, self.workgroups())?;
        expect_output_size(KERNEL, output_size, self.output_size())
    }

    /// The CPU reference: this task's rows of C as little-endian f32 bytes, each element summed
    /// over `k` in order, as each GPU thread does.
    pub fn cpu(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        let (a, b) = (bytes_to_f32s(a), bytes_to_f32s(b));
        let (n, k) = (self.n as usize, self.k as usize);
        let mut c = Vec::with_capacity(self.rows as usize * n);
        for i in self.row_offset as usize..(self.row_offset + self.rows) as usize {
            let a_row = &a[i * k..(i + 1) * k];
            for j in 0..n {
                let mut sum = 0.0f32;
                for (p, &a_ip) in a_row.iter().enumerate() {
                    sum += a_ip * b[p * n + j];
                }
                c.push(sum);
            }
        }
        f32s_to_bytes(&c)
    }
}

/// The whole product `A (m x k) * B (k x n)` as one task.
pub fn task_for(m: u32, n: u32, k: u32, a: Hash32, b: Hash32) -> TaskSpec {
    task(MatmulParams::whole(m, n, k), a, b)
}

/// The product split into tasks of `rows_per_task` rows of C each (the last may be shorter), in
/// row order. Empty when any of `m`, `n`, `k`, `rows_per_task` is 0.
pub fn tasks_for(m: u32, n: u32, k: u32, a: Hash32, b: Hash32, rows_per_task: u32) -> Vec<TaskSpec> {
    if m == 0 || n == 0 || k == 0 || rows_per_task == 0 {
        return Vec::new();
    }
    (0..m)
        .step_by(rows_per_task as usize)
        .map(|row_offset| task(MatmulParams { m, n, k, row_offset, rows: rows_per_task.min(m - row_offset) }, a, b))
        .collect()
}

fn task(params: MatmulParams, a: Hash32, b: Hash32) -> TaskSpec {
    TaskSpec {
        params: params.to_words(),
        inputs: vec![a.into(), b.into()],
        workgroups: params.workgroups(),
        // Saturates for a product no device could hold; validation refuses it later.
        output_size: u32::try_from(params.output_size()).unwrap_or(u32::MAX),
        kernel: 0,
    }
}

/// Deterministic pseudo-random matrix entries in [-1, 1) (xorshift): the same seed gives the same
/// matrices from `starling submit matmul` and from the web app's Dashboard.
pub fn random_matrix(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Little-endian bytes of `values`: the input and output blob format.
pub fn f32s_to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `bytes` read as little-endian f32; a trailing partial value is ignored.
pub fn bytes_to_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_product() {
        // [1 2 3]   [ 7  8]   [ 58  64]
        // [4 5 6] * [ 9 10] = [139 154]
        //           [11 12]
        let a = f32s_to_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f32s_to_bytes(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let whole = MatmulParams::whole(2, 2, 3);
        assert_eq!(bytes_to_f32s(&whole.cpu(&a, &b)), [58.0, 64.0, 139.0, 154.0]);
        let second_row = MatmulParams { row_offset: 1, rows: 1, ..whole };
        assert_eq!(bytes_to_f32s(&second_row.cpu(&a, &b)), [139.0, 154.0]);
    }

    #[test]
    fn params_round_trip_and_refuse_bad_blocks() {
        let p = MatmulParams { m: 130, n: 65, k: 7, row_offset: 64, rows: 66 };
        assert_eq!(MatmulParams::from_words(&p.to_words()).unwrap(), p);
        assert_eq!(p.workgroups(), [2, 2, 1]);
        assert!(MatmulParams::from_words(&MatmulParams { rows: 67, ..p }.to_words()).is_err());
        assert!(MatmulParams::from_words(&MatmulParams { k: 0, ..p }.to_words()).is_err());
        assert!(MatmulParams::from_words(&MatmulParams { m: 1 << 16, k: 1 << 15, ..p }.to_words()).is_err());
    }

    #[test]
    fn row_blocks_cover_c() {
        let h = starling_protocol::bytes::sha256(b"x");
        let tasks = tasks_for(100, 3, 4, h, h, 32);
        let rows: Vec<(u32, u32)> = tasks.iter().map(|t| (t.params[3], t.params[4])).collect();
        assert_eq!(rows, [(0, 32), (32, 32), (64, 32), (96, 4)]);
        assert_eq!(tasks.iter().map(|t| u64::from(t.output_size)).sum::<u64>(), 100 * 3 * 4);
        assert_eq!(task_for(100, 3, 4, h, h).output_size, 1200);
        assert!(tasks_for(0, 3, 4, h, h, 32).is_empty());
    }
}
