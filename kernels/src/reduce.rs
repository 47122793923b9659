//! Reductions: `sum_i32` and `sum_f32` add 1 to [`MAX_FAN_IN`] equal-length vectors element by
//! element, and `concat` joins them; a job turns many tasks' outputs into one verified answer
//! with a tree of them ([`tree`]), each a task that reads the tasks below it.
//!
//! `sum_i32` wraps on overflow (two's complement), so it is exact and its result does not
//! depend on the order of the inputs: every device and the CPU agree bit for bit. `sum_f32` adds
//! the inputs in binding order, left to right, as the CPU reference does (compare it with a
//! tolerance across vendors). Params: `[words, fan_in]`; inputs: `fan_in` blobs of `4 * words`
//! bytes (`concat`: any multiple of 4, output their total); one thread per output word, 64 per
//! workgroup, dispatched by [`crate::linear_workgroups`].

use super::{expect_output_size, expect_words, expect_workgroups, kernel_error, words_to_bytes};
use crate::{Result, bytes_to_words};
use starling_protocol::job::{BuiltinKernel, OutputOf, TaskInput, TaskSpec};
use starling_protocol::limits::MAX_INPUTS_PER_TASK;
use std::sync::OnceLock;

/// Most inputs one reduction task adds: every input the protocol allows a task.
pub const MAX_FAN_IN: usize = MAX_INPUTS_PER_TASK;
/// Threads per workgroup.
pub const WORKGROUP_SIZE: u32 = 64;
/// Number of param words.
pub const WORDS: usize = 2;

/// A reduction task's params.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReduceParams {
    /// Output words (`sum_*`: also each input's).
    pub words: u32,
    /// Inputs bound, `1..=MAX_FAN_IN`.
    pub fan_in: u32,
}

impl ReduceParams {
    pub fn to_words(&self) -> Vec<u32> {
        vec![self.words, self.fan_in]
    }

    pub fn from_words(kernel: BuiltinKernel, words: &[u32]) -> Result<Self> {
        expect_words(kernel, words, WORDS)?;
        let p = ReduceParams { words: words[0], fan_in: words[1] };
        if p.words == 0 {
            return Err(kernel_error(format!("{} needs at least one word", kernel.name())));
        }
        if p.fan_in == 0 || p.fan_in as usize > MAX_FAN_IN {
            return Err(kernel_error(format!("{} takes 1..={MAX_FAN_IN} inputs", kernel.name())));
        }
        Ok(p)
    }

    /// The dispatch: one thread per output word.
    pub fn workgroups(&self) -> Option<[u32; 3]> {
        crate::linear_workgroups(self.words.div_ceil(WORKGROUP_SIZE))
    }

    pub(crate) fn check(
        &self,
        kernel: BuiltinKernel,
        input_sizes: &[u64],
        workgroups: [u32; 3],
        output_size: u32,
    ) -> Result<()> {
        if input_sizes.len() != self.fan_in as usize {
            return Err(kernel_error(format!(
                "{} with fan_in {} takes {} inputs, got {}",
                kernel.name(),
                self.fan_in,
                self.fan_in,
                input_sizes.len()
            )));
        }
        let total: u64 = input_sizes.iter().sum();
        if kernel == BuiltinKernel::Concat {
            if input_sizes.iter().any(|&s| s == 0 || s % 4 != 0) {
                return Err(kernel_error("concat inputs are whole, non-empty 32-bit words"));
            }
            if total != u64::from(self.words) * 4 {
                return Err(kernel_error(format!("concat of {total} bytes writes {} words", total / 4)));
            }
        } else if input_sizes.iter().any(|&s| s != u64::from(self.words) * 4) {
            return Err(kernel_error(format!(
                "{} inputs must each be {} bytes",
                kernel.name(),
                u64::from(self.words) * 4
            )));
        }
        let expected = self.workgroups().ok_or_else(|| kernel_error("no dispatch covers that many words"))?;
        expect_workgroups(kernel, workgroups, expected)?;
        expect_output_size(kernel, output_size, u64::from(self.words) * 4)
    }

    /// The CPU reference.
    pub fn cpu(&self, kernel: BuiltinKernel, inputs: &[&[u8]]) -> Vec<u8> {
        match kernel {
            BuiltinKernel::SumF32 => {
                let mut acc = vec![0f32; self.words as usize];
                for input in inputs {
                    for (a, w) in acc.iter_mut().zip(bytes_to_words(input)) {
                        *a += f32::from_bits(w);
                    }
                }
                acc.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            BuiltinKernel::Concat => inputs.concat(),
            _ => {
                let mut acc = vec![0u32; self.words as usize];
                for input in inputs {
                    for (a, w) in acc.iter_mut().zip(bytes_to_words(input)) {
                        *a = a.wrapping_add(w);
                    }
                }
                words_to_bytes(&acc)
            }
        }
    }
}

/// The WGSL of `kernel` over `fan_in` inputs (each fan-in binds its own inputs, so it has its own
/// source; generated once).
pub fn source(kernel: BuiltinKernel, fan_in: usize) -> &'static str {
    static SOURCES: OnceLock<Vec<[String; 3]>> = OnceLock::new();
    let all = SOURCES.get_or_init(|| {
        (1..=MAX_FAN_IN)
            .map(|n| {
                [
                    generate(BuiltinKernel::SumI32, n),
                    generate(BuiltinKernel::SumF32, n),
                    generate(BuiltinKernel::Concat, n),
                ]
            })
            .collect()
    });
    let which = match kernel {
        BuiltinKernel::SumI32 => 0,
        BuiltinKernel::SumF32 => 1,
        _ => 2,
    };
    &all[fan_in.clamp(1, MAX_FAN_IN) - 1][which]
}

fn generate(kernel: BuiltinKernel, fan_in: usize) -> String {
    let ty = if kernel == BuiltinKernel::SumF32 { "f32" } else { "u32" };
    let mut s =
        String::from("struct Params { words: u32, fan_in: u32 }\n@group(0) @binding(0) var<uniform> p: Params;\n");
    for i in 1..=fan_in {
        s += &format!("@group(0) @binding({i}) var<storage, read> in{i}: array<{ty}>;\n");
    }
    s += &format!("@group(0) @binding({}) var<storage, read_write> out: array<{ty}>;\n", fan_in + 1);
    s += &format!(
        "@compute @workgroup_size({WORKGROUP_SIZE})\n\
         fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n\
         \x20       @builtin(local_invocation_index) lid: u32) {{\n\
         \x20   let i = (wid.x + wid.y * nwg.x) * {WORKGROUP_SIZE}u + lid;\n\
         \x20   if (i >= p.words) {{ return; }}\n"
    );
    if kernel == BuiltinKernel::Concat {
        // Output word i comes from the input whose range holds it.
        s += "    var start = 0u;\n";
        for i in 1..=fan_in {
            s += &format!(
                "    if (i < start + arrayLength(&in{i})) {{ out[i] = in{i}[i - start]; return; }}\n    start = start + arrayLength(&in{i});\n"
            );
        }
    } else {
        // Wrapping u32 addition is two's-complement i32 addition, bit for bit.
        let terms: Vec<String> = (1..=fan_in).map(|i| format!("in{i}[i]")).collect();
        let zero = if ty == "f32" { "0.0" } else { "0u" };
        s += &format!("    var acc: {ty} = {zero};\n");
        for t in terms {
            s += &format!("    acc = acc + {t};\n");
        }
        s += "    out[i] = acc;\n";
    }
    s += "}\n";
    s
}

/// A reduction tree over the outputs of `leaves` (task indices of the same job, each `words`
/// words), as tasks to append to a job whose first new task gets index `first`: each node reads
/// up to [`MAX_FAN_IN`] tasks below it, the root last. Returns the tasks; the root is
/// `first + tasks.len() - 1`. `kernel` is the index of the reduction kernel in the job's kernels
/// (`sum_i32` or `sum_f32`; a concat is one task over at most [`MAX_FAN_IN`] inputs).
/// Empty when there are no leaves or no dispatch covers `words`.
pub fn tree(kernel: u8, leaves: &[u32], words: u32, first: u32) -> Vec<TaskSpec> {
    let Some(workgroups) = (ReduceParams { words, fan_in: 1 }).workgroups() else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    let mut level: Vec<u32> = leaves.to_vec();
    while level.len() > 1 || (tasks.is_empty() && level.len() == 1) {
        let mut next = Vec::new();
        for group in level.chunks(MAX_FAN_IN) {
            let params = ReduceParams { words, fan_in: group.len() as u32 };
            tasks.push(TaskSpec {
                params: params.to_words(),
                inputs: group.iter().map(|&task| TaskInput::Output(OutputOf { task })).collect(),
                workgroups,
                output_size: words * 4,
                kernel,
            });
            next.push(first + tasks.len() as u32 - 1);
        }
        level = next;
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_wrap_and_add_in_order_and_concat_joins() {
        let a = words_to_bytes(&[1, u32::MAX, 7]);
        let b = words_to_bytes(&[2, 2, (-9i32) as u32]);
        let p = ReduceParams { words: 3, fan_in: 2 };
        assert_eq!(bytes_to_words(&p.cpu(BuiltinKernel::SumI32, &[&a, &b])), vec![3, 1, (-2i32) as u32]);
        let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (x, y) = (f(&[1.5, 1e8, -0.25]), f(&[2.0, 1.0, 0.25]));
        assert_eq!(p.cpu(BuiltinKernel::SumF32, &[&x, &y]), f(&[3.5, 1e8 + 1.0, 0.0]));
        let c = ReduceParams { words: 6, fan_in: 2 };
        assert_eq!(c.cpu(BuiltinKernel::Concat, &[&a, &b]), [a.clone(), b.clone()].concat());
    }

    #[test]
    fn check_table() {
        let p = ReduceParams { words: 100, fan_in: 3 };
        let wg = p.workgroups().unwrap();
        assert_eq!(wg, [2, 1, 1]);
        /// A kernel, its input sizes, dispatch and output size, and whether it checks.
        type Case<'a> = (&'a str, BuiltinKernel, &'a [u64], [u32; 3], u32, bool);
        let cases: &[Case] = &[
            ("fits", BuiltinKernel::SumI32, &[400, 400, 400], wg, 400, true),
            ("one input short", BuiltinKernel::SumI32, &[400, 400], wg, 400, false),
            ("a short input", BuiltinKernel::SumF32, &[400, 396, 400], wg, 400, false),
            ("too few workgroups", BuiltinKernel::SumI32, &[400, 400, 400], [1, 1, 1], 400, false),
            ("wrong output", BuiltinKernel::SumI32, &[400, 400, 400], wg, 404, false),
            ("concat of all", BuiltinKernel::Concat, &[100, 200, 100], wg, 400, true),
            ("concat short", BuiltinKernel::Concat, &[100, 200, 96], wg, 400, false),
            ("concat of odd bytes", BuiltinKernel::Concat, &[101, 199, 100], wg, 400, false),
        ];
        for &(name, kernel, sizes, wg, out, ok) in cases {
            assert_eq!(p.check(kernel, sizes, wg, out).is_ok(), ok, "{name}");
        }
        assert!(ReduceParams::from_words(BuiltinKernel::SumI32, &[4, 0]).is_err());
        assert!(ReduceParams::from_words(BuiltinKernel::SumI32, &[4, MAX_FAN_IN as u32 + 1]).is_err());
        assert!(ReduceParams::from_words(BuiltinKernel::SumI32, &[0, 1]).is_err());
    }

    #[test]
    fn a_tree_reads_every_leaf_once_within_the_fan_in() {
        for n in [1usize, 2, 6, 7, 36, 37, 100] {
            let leaves: Vec<u32> = (0..n as u32).collect();
            let tasks = tree(1, &leaves, 8, n as u32);
            // Every leaf and every inner node but the root is read exactly once.
            let mut read: Vec<u32> = tasks.iter().flat_map(|t| t.depends_on()).collect();
            read.sort_unstable();
            let root = n as u32 + tasks.len() as u32 - 1;
            let expected: Vec<u32> = (0..root).collect();
            assert_eq!(read, expected, "{n} leaves");
            assert!(tasks.iter().all(|t| t.inputs.len() <= MAX_FAN_IN && t.kernel == 1));
        }
    }

    #[cfg(feature = "validate")]
    #[test]
    fn every_fan_in_validates() {
        for kernel in [BuiltinKernel::SumI32, BuiltinKernel::SumF32, BuiltinKernel::Concat] {
            for n in 1..=MAX_FAN_IN {
                crate::validate::validate_kernel(source(kernel, n), crate::ENTRY_POINT, n)
                    .unwrap_or_else(|e| panic!("{} x{n}: {e}", kernel.name()));
            }
        }
    }
}
