//! What a client posts: a kernel, its tasks, and the rules for accepting results.
//!
//! Binding convention, the same for built-in and custom kernels: bind group 0 holds
//! `@binding(0)` a uniform buffer of the task's `params` (32-bit words), `@binding(1..=N)` the
//! task's input blobs as read-only storage buffers in order, and `@binding(N+1)` the output, a
//! read-write storage buffer of `output_size` bytes that starts zeroed.

use crate::bytes::{Hash32, sha256};
use crate::error::ErrorCode;
use crate::limits::*;
use serde::{Deserialize, Serialize};

/// A job as the client posts it. Field order is part of the signed encoding (see [`JobSpec::digest`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Free text shown on dashboards.
    #[serde(default)]
    pub label: String,
    pub kernel: KernelSpec,
    /// Further kernels a task may name by [`TaskSpec::kernel`] (a reduction's, a training
    /// round's update): task kernel `0` is [`JobSpec::kernel`], `i` is `kernels[i - 1]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<KernelSpec>,
    pub tasks: Vec<TaskSpec>,
    #[serde(default)]
    pub comparison: Comparison,
    /// Replicas handed out per task at first.
    #[serde(default = "default_replicas")]
    pub replicas: u8,
    /// Agreeing results needed to verify a task.
    #[serde(default = "default_quorum")]
    pub quorum: u8,
    /// Upper bound on replicas per task once results disagree.
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u8,
    /// What the client pays per accepted replica, in micro-units of the settlement token.
    #[serde(default)]
    pub price_per_replica: u64,
    /// Seconds from submission after which unfinished tasks fail (and are refunded).
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
    /// Only compare replicas from the same adapter class (backend, vendor, device), so float
    /// output can be compared exactly.
    #[serde(default)]
    pub homogeneous: bool,
    /// Makes otherwise identical submissions distinct.
    #[serde(default)]
    pub nonce: u64,
    /// Adaptive replication, when the client allows it: a task whose first replica goes to a
    /// worker with a long record of verified results may run on that worker alone, audited at the
    /// client's rate. Needs `quorum` 1 (the escrow then pays a single signature, which the client
    /// signed for in its deposit) and exact comparison. Absent: every task gets `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<Adaptive>,
}

/// The client's terms for adaptive replication (see [`JobSpec::adaptive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adaptive {
    /// Chance, in percent (1..=100), that a task run on one worker gets an unannounced audit
    /// replica on another before it is accepted.
    pub audit_percent: u8,
}

/// What a spec that leaves them out gets.
pub const DEFAULT_REPLICAS: u8 = 2;
pub const DEFAULT_QUORUM: u8 = 2;
pub const DEFAULT_MAX_REPLICAS: u8 = 4;
pub const DEFAULT_DEADLINE_SECS: u64 = 3600;

fn default_replicas() -> u8 {
    DEFAULT_REPLICAS
}
fn default_quorum() -> u8 {
    DEFAULT_QUORUM
}
fn default_max_replicas() -> u8 {
    DEFAULT_MAX_REPLICAS
}
fn default_deadline() -> u64 {
    DEFAULT_DEADLINE_SECS
}

/// Which code a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KernelSpec {
    /// A kernel every worker ships, with a CPU reference (so CPU-only workers can run it).
    Builtin { name: BuiltinKernel },
    /// Client-supplied WGSL, validated by the relay before acceptance.
    Wgsl { source: String, entry_point: String },
    /// Client-supplied WGSL run as several dispatches in order, each an entry point of one
    /// module, over named intermediate buffers (a forward pass: matmul, then bias, then
    /// activation). Each stage follows the binding convention with its own inputs and output.
    Pipeline {
        source: String,
        /// Intermediate buffers, zeroed at the start of the task.
        #[serde(default)]
        buffers: Vec<NamedBuffer>,
        stages: Vec<Stage>,
    },
}

/// An intermediate buffer of a pipeline (see [`KernelSpec::Pipeline`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedBuffer {
    /// 1 to 32 of `a-z`, `0-9`, `_`.
    pub name: String,
    /// Bytes, a positive multiple of 4.
    pub size: u32,
}

/// One dispatch of a pipeline. Binding 0 is the task's params, bindings `1..=N` its `inputs`
/// (read-only) and `N + 1` its `output` (read-write), each named: `"input:K"` for the task's
/// K-th input, `"output"` for the task's output, or an intermediate buffer's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub entry_point: String,
    #[serde(default)]
    pub inputs: Vec<String>,
    pub output: String,
    /// Workgroups dispatched; absent, the task's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workgroups: Option<[u32; 3]>,
}

/// What a pipeline stage's binding names (see [`Stage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    /// The task's input at this index.
    Input(usize),
    /// The task's output.
    Output,
    /// An intermediate buffer, by its index in `buffers`.
    Buffer(usize),
}

/// The built-in kernel library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinKernel {
    /// u32 escape-iteration counts over a tile of the complex plane. Exact.
    Mandelbrot,
    /// Tiled f32 matrix product. Compare with a tolerance across vendors.
    MatmulF32,
    /// Integer hit counts of counter-based random points in the unit quarter circle. Exact.
    MonteCarloPi,
    /// SHA-256 of (prefix || nonce) for a range of nonces, reporting the best leading zeros. Exact.
    Sha256NonceSearch,
    /// Element-wise sum of 1 to 6 equal vectors of i32, wrapping. Exact; a reduction's node.
    SumI32,
    /// Element-wise sum of 1 to 6 equal vectors of f32, in binding order. Compare with a tolerance.
    SumF32,
    /// The inputs one after another. Exact.
    Concat,
    /// A two-layer network's summed softmax cross-entropy gradient over a batch, in Q16 fixed
    /// point. Exact on every device.
    MlpGradFx,
    /// One gradient descent step on Q16 weights. Exact.
    MlpStepFx,
    /// A two-layer network's class for each sample, in Q16 fixed point. Exact.
    MlpInferFx,
    /// `mlp_grad_fx` in f32: compare with a tolerance (or run homogeneous).
    MlpGradF32,
    /// `mlp_step_fx` in f32: compare with a tolerance (or run homogeneous).
    MlpStepF32,
    /// The k best (score, id) pairs of 1 to 6 lists. Exact; a reduction's node.
    TopKU32,
}

impl BuiltinKernel {
    pub const ALL: [BuiltinKernel; 13] = [
        BuiltinKernel::Mandelbrot,
        BuiltinKernel::MatmulF32,
        BuiltinKernel::MonteCarloPi,
        BuiltinKernel::Sha256NonceSearch,
        BuiltinKernel::SumI32,
        BuiltinKernel::SumF32,
        BuiltinKernel::Concat,
        BuiltinKernel::MlpGradFx,
        BuiltinKernel::MlpStepFx,
        BuiltinKernel::MlpInferFx,
        BuiltinKernel::MlpGradF32,
        BuiltinKernel::MlpStepF32,
        BuiltinKernel::TopKU32,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinKernel::Mandelbrot => "mandelbrot",
            BuiltinKernel::MatmulF32 => "matmul_f32",
            BuiltinKernel::MonteCarloPi => "monte_carlo_pi",
            BuiltinKernel::Sha256NonceSearch => "sha256_nonce_search",
            BuiltinKernel::SumI32 => "sum_i32",
            BuiltinKernel::SumF32 => "sum_f32",
            BuiltinKernel::Concat => "concat",
            BuiltinKernel::MlpGradFx => "mlp_grad_fx",
            BuiltinKernel::MlpStepFx => "mlp_step_fx",
            BuiltinKernel::MlpInferFx => "mlp_infer_fx",
            BuiltinKernel::MlpGradF32 => "mlp_grad_f32",
            BuiltinKernel::MlpStepF32 => "mlp_step_f32",
            BuiltinKernel::TopKU32 => "top_k_u32",
        }
    }

    /// Whether every device and the CPU reference produce the same bytes (integer arithmetic
    /// only): a result can be checked against the CPU reference exactly.
    pub fn exact(self) -> bool {
        !matches!(
            self,
            BuiltinKernel::MatmulF32 | BuiltinKernel::SumF32 | BuiltinKernel::MlpGradF32 | BuiltinKernel::MlpStepF32
        )
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl KernelSpec {
    /// Whether running this kernel needs a GPU (custom WGSL has no CPU reference).
    pub fn needs_gpu(&self) -> bool {
        matches!(self, KernelSpec::Wgsl { .. } | KernelSpec::Pipeline { .. })
    }

    /// The client WGSL this kernel carries, if any.
    pub fn wgsl(&self) -> Option<&str> {
        match self {
            KernelSpec::Wgsl { source, .. } | KernelSpec::Pipeline { source, .. } => Some(source),
            KernelSpec::Builtin { .. } => None,
        }
    }

    /// Each dispatch as (entry point, number of inputs), in order (`n_inputs`: what a task of
    /// this kernel binds, for the single dispatch of plain WGSL). Empty for a built-in.
    pub fn dispatches(&self, n_inputs: usize) -> Vec<(&str, usize)> {
        match self {
            KernelSpec::Builtin { .. } => Vec::new(),
            KernelSpec::Wgsl { entry_point, .. } => vec![(entry_point.as_str(), n_inputs)],
            KernelSpec::Pipeline { stages, .. } => {
                stages.iter().map(|s| (s.entry_point.as_str(), s.inputs.len())).collect()
            }
        }
    }

    /// The resolved bindings of each stage of a pipeline run by a task of `n_inputs` inputs:
    /// (inputs, output). Refuses a name that binds nothing, a stage that binds one buffer twice
    /// (WebGPU refuses a read-write buffer also bound read-only), and a pipeline whose stages
    /// never write the task's output.
    #[allow(clippy::type_complexity)]
    pub fn pipeline_bindings(&self, n_inputs: usize) -> Result<Vec<(Vec<Binding>, Binding)>, SpecError> {
        let KernelSpec::Pipeline { buffers, stages, .. } = self else {
            return Err(invalid("not a pipeline"));
        };
        let resolve = |name: &str, stage: usize| -> Result<Binding, SpecError> {
            if name == "output" {
                return Ok(Binding::Output);
            }
            match name.strip_prefix("input:").map(str::parse::<usize>) {
                Some(Ok(k)) if k < n_inputs => Ok(Binding::Input(k)),
                Some(_) => Err(invalid(format!("stage {stage} binds {name:?}; the task has {n_inputs} inputs"))),
                None => buffers.iter().position(|b| b.name == name).map(Binding::Buffer).ok_or_else(|| {
                    invalid(format!("stage {stage} binds {name:?}, which is no input, output or buffer"))
                }),
            }
        };
        let mut out = Vec::with_capacity(stages.len());
        for (i, stage) in stages.iter().enumerate() {
            let inputs: Vec<Binding> = stage.inputs.iter().map(|n| resolve(n, i)).collect::<Result<_, _>>()?;
            let output = resolve(&stage.output, i)?;
            if matches!(output, Binding::Input(_)) {
                return Err(invalid(format!("stage {i} writes a task input, which is read-only")));
            }
            let mut all = inputs.clone();
            all.push(output);
            let distinct: std::collections::HashSet<_> = all.iter().collect();
            if distinct.len() != all.len() {
                return Err(invalid(format!("stage {i} binds one buffer twice")));
            }
            out.push((inputs, output));
        }
        if !out.iter().any(|(_, o)| *o == Binding::Output) {
            return Err(invalid("no stage writes the task's output"));
        }
        // A buffer no stage binds would be allocated for nothing.
        for (k, b) in buffers.iter().enumerate() {
            if !out.iter().any(|(i, o)| *o == Binding::Buffer(k) || i.contains(&Binding::Buffer(k))) {
                return Err(invalid(format!("buffer {:?} is bound by no stage", b.name)));
            }
        }
        Ok(out)
    }

    /// Short name for logs and dashboards.
    pub fn display_name(&self) -> String {
        match self {
            KernelSpec::Builtin { name } => name.name().to_string(),
            KernelSpec::Wgsl { entry_point, .. } => format!("wgsl:{entry_point}"),
            KernelSpec::Pipeline { stages, .. } => format!("pipeline:{} stages", stages.len()),
        }
    }
}

/// One task: its uniform parameters, inputs, dispatch size and output size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Uniform buffer contents as 32-bit words (floats as their bit patterns).
    #[serde(default)]
    pub params: Vec<u32>,
    /// Inputs, bound in order from binding 1: blobs by SHA-256, or other tasks' verified outputs.
    #[serde(default)]
    pub inputs: Vec<TaskInput>,
    /// Workgroups dispatched in x, y, z.
    pub workgroups: [u32; 3],
    /// Bytes of output the kernel writes.
    pub output_size: u32,
    /// Which of the job's kernels it runs (see [`JobSpec::kernels`]); `0`, the job's `kernel`,
    /// when absent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kernel: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// Where one of a task's inputs comes from. On the wire a blob is its hex SHA-256 (as before
/// tasks could depend on tasks) and another task's output is `{"task": INDEX}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskInput {
    /// A blob the client uploaded.
    Blob(Hash32),
    /// The verified output of another task of the same job. The relay releases the task only once
    /// every task it reads from is verified, and binds the output every replica agreed on; if one
    /// of them fails, so does the task.
    Output(OutputOf),
}

/// Names a task of the same job by its index (see [`TaskInput::Output`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputOf {
    pub task: u32,
}

impl TaskInput {
    /// The blob this input names, if it is one.
    pub fn blob(&self) -> Option<Hash32> {
        match self {
            TaskInput::Blob(h) => Some(*h),
            TaskInput::Output(_) => None,
        }
    }

    /// The task whose output this input is, if it is one.
    pub fn task(&self) -> Option<u32> {
        match self {
            TaskInput::Blob(_) => None,
            TaskInput::Output(o) => Some(o.task),
        }
    }
}

impl From<Hash32> for TaskInput {
    fn from(h: Hash32) -> Self {
        TaskInput::Blob(h)
    }
}

impl TaskSpec {
    /// The blobs it reads, in binding order.
    pub fn blobs(&self) -> impl Iterator<Item = Hash32> + '_ {
        self.inputs.iter().filter_map(TaskInput::blob)
    }

    /// The tasks whose outputs it reads, in binding order (a task read twice appears twice).
    pub fn depends_on(&self) -> impl Iterator<Item = u32> + '_ {
        self.inputs.iter().filter_map(TaskInput::task)
    }
}

/// How replicas of a task are compared.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Comparison {
    /// Byte-for-byte equal output (compared by SHA-256).
    #[default]
    Exact,
    /// Output read as little-endian f32; element `a` and `b` agree when
    /// `|a - b| <= abs + rel * max(|a|, |b|)`. NaN never agrees.
    Tolerance { rel: f32, abs: f32 },
}

/// A structural problem with a spec, found before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub code: ErrorCode,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> SpecError {
    SpecError { code: ErrorCode::InvalidSpec, message: message.into() }
}

fn too_large(message: impl Into<String>) -> SpecError {
    SpecError { code: ErrorCode::TooLarge, message: message.into() }
}

impl JobSpec {
    /// SHA-256 of the spec's canonical encoding: `serde_json` of this struct, fields in
    /// declaration order, no whitespace. Clients sign this digest (see [`crate::sign::job_bytes`]).
    pub fn digest(&self) -> Hash32 {
        sha256(&serde_json::to_vec(self).expect("JobSpec always serializes"))
    }

    /// Checks every bound that does not need a WGSL parser or the blob store.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.label.chars().count() > MAX_LABEL_LEN {
            return Err(invalid(format!("label is longer than {MAX_LABEL_LEN} characters")));
        }
        if 1 + self.kernels.len() > MAX_KERNELS_PER_JOB {
            return Err(too_large(format!("a job may have at most {MAX_KERNELS_PER_JOB} kernels")));
        }
        for (i, kernel) in self.all_kernels().enumerate() {
            kernel.validate().map_err(|e| match i {
                0 => e,
                i => SpecError { code: e.code, message: format!("kernels[{}]: {}", i - 1, e.message) },
            })?;
        }
        let wgsl: usize = self.all_kernels().map(|k| k.wgsl().map_or(0, str::len)).sum();
        if wgsl > MAX_JOB_WGSL_BYTES {
            return Err(too_large(format!("a job's WGSL kernels may total at most {MAX_JOB_WGSL_BYTES} bytes")));
        }
        if self.tasks.is_empty() {
            return Err(invalid("a job needs at least one task"));
        }
        if self.tasks.len() > MAX_TASKS {
            return Err(too_large(format!("a job may have at most {MAX_TASKS} tasks")));
        }
        if self.quorum == 0 || self.replicas < self.quorum {
            return Err(invalid("need 1 <= quorum <= replicas"));
        }
        if self.max_replicas < self.replicas || self.max_replicas > MAX_REPLICAS {
            return Err(invalid(format!("need replicas <= max_replicas <= {MAX_REPLICAS}")));
        }
        if let Some(a) = self.adaptive {
            if self.quorum != 1 || self.replicas < 2 {
                return Err(invalid("adaptive replication needs quorum 1 and at least 2 replicas"));
            }
            if self.comparison != Comparison::Exact {
                return Err(invalid("adaptive replication needs exact comparison"));
            }
            if a.audit_percent == 0 || a.audit_percent > 100 {
                return Err(invalid("adaptive audit_percent must be in 1..=100"));
            }
        }
        if self.deadline_secs == 0 || self.deadline_secs > MAX_DEADLINE_SECS {
            return Err(invalid(format!("deadline_secs must be in 1..={MAX_DEADLINE_SECS}")));
        }
        if let Comparison::Tolerance { rel, abs } = self.comparison
            && !(rel.is_finite() && abs.is_finite() && rel >= 0.0 && abs >= 0.0)
        {
            return Err(invalid("tolerance rel and abs must be finite and non-negative"));
        }
        for (i, task) in self.tasks.iter().enumerate() {
            task.validate(self.comparison)
                .map_err(|e| SpecError { code: e.code, message: format!("task {i}: {}", e.message) })?;
            if let Some(pipeline @ KernelSpec::Pipeline { .. }) = self.kernel_of(i) {
                pipeline
                    .pipeline_bindings(task.inputs.len())
                    .map_err(|e| SpecError { code: e.code, message: format!("task {i}: {}", e.message) })?;
            }
            if usize::from(task.kernel) > self.kernels.len() {
                return Err(invalid(format!(
                    "task {i}: kernel {} does not exist (the job has {} kernels)",
                    task.kernel,
                    1 + self.kernels.len()
                )));
            }
        }
        // Every kernel runs somewhere: one no task runs would be carried, shown and (WGSL)
        // validated for nothing, and would decide which workers fit.
        for k in 0..=self.kernels.len() {
            if !self.tasks.iter().any(|t| usize::from(t.kernel) == k) {
                return Err(invalid(match k {
                    0 => "no task runs the job's kernel".to_string(),
                    k => format!("no task runs kernels[{}]", k - 1),
                }));
            }
        }
        self.dependency_depths()?;
        Ok(())
    }

    /// The job's kernels in index order: `kernel`, then `kernels`.
    pub fn all_kernels(&self) -> impl Iterator<Item = &KernelSpec> {
        std::iter::once(&self.kernel).chain(&self.kernels)
    }

    /// The kernel task `index` runs (`None` for a task or kernel index that does not exist,
    /// which [`JobSpec::validate`] refuses).
    pub fn kernel_of(&self, index: usize) -> Option<&KernelSpec> {
        self.kernel_of_task(self.tasks.get(index)?)
    }

    /// The kernel `task` (one of this job's) runs.
    pub fn kernel_of_task(&self, task: &TaskSpec) -> Option<&KernelSpec> {
        match task.kernel {
            0 => Some(&self.kernel),
            k => self.kernels.get(usize::from(k) - 1),
        }
    }

    /// Whether any of its kernels needs a GPU.
    pub fn needs_gpu(&self) -> bool {
        self.all_kernels().any(KernelSpec::needs_gpu)
    }

    /// How many undecided tasks (`decided` says which are decided) still wait for an input: they
    /// read a task that is not verified yet (`verified`). For dashboards following a graph.
    pub fn waiting_for_inputs(&self, decided: impl Fn(u32) -> bool, verified: impl Fn(u32) -> bool) -> usize {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| !decided(*i as u32) && t.depends_on().any(|d| !verified(d)))
            .count()
    }

    /// Whether any task depends on another's output.
    pub fn has_dependencies(&self) -> bool {
        self.tasks.iter().any(|t| t.depends_on().next().is_some())
    }

    /// The size of each of task `index`'s inputs in binding order: a blob's from `blob_size`, a
    /// task output's from the declared `output_size` of the task it names. `None` where a blob is
    /// not known or the task does not exist.
    pub fn input_sizes(&self, index: usize, blob_size: impl Fn(&Hash32) -> Option<u64>) -> Vec<Option<u64>> {
        let Some(task) = self.tasks.get(index) else {
            return Vec::new();
        };
        task.inputs
            .iter()
            .map(|input| match input {
                TaskInput::Blob(h) => blob_size(h),
                TaskInput::Output(o) => self.tasks.get(o.task as usize).map(|t| u64::from(t.output_size)),
            })
            .collect()
    }

    /// Each task's depth in the dependency graph (0: reads no other task; else one more than the
    /// deepest task it reads), after checking the graph: every named task exists and is not the
    /// task itself, there is no cycle, and no chain is deeper than [`MAX_DEPENDENCY_DEPTH`].
    pub fn dependency_depths(&self) -> Result<Vec<usize>, SpecError> {
        let n = self.tasks.len();
        for (i, task) in self.tasks.iter().enumerate() {
            for d in task.depends_on() {
                if d as usize >= n {
                    return Err(invalid(format!("task {i} reads the output of task {d}, which does not exist")));
                }
                if d as usize == i {
                    return Err(invalid(format!("task {i} reads its own output")));
                }
            }
        }
        // Iterative depth-first search: `Some(depth)` once done, on the stack while visiting.
        const UNSEEN: usize = usize::MAX;
        const VISITING: usize = usize::MAX - 1;
        let mut depth = vec![UNSEEN; n];
        for root in 0..n {
            if depth[root] != UNSEEN {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            depth[root] = VISITING;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let deps: Vec<u32> = self.tasks[node].depends_on().collect();
                if let Some(&d) = deps.get(*next) {
                    *next += 1;
                    let d = d as usize;
                    match depth[d] {
                        UNSEEN => {
                            depth[d] = VISITING;
                            stack.push((d, 0));
                        }
                        VISITING => {
                            let from = stack.iter().position(|&(t, _)| t == d).unwrap_or(0);
                            let cycle: Vec<String> =
                                stack[from..].iter().map(|(t, _)| t.to_string()).chain([d.to_string()]).collect();
                            return Err(invalid(format!(
                                "tasks depend on each other in a cycle: {}",
                                cycle.join(" reads ")
                            )));
                        }
                        _ => {}
                    }
                } else {
                    let own = deps.iter().map(|&d| depth[d as usize] + 1).max().unwrap_or(0);
                    if own > MAX_DEPENDENCY_DEPTH {
                        return Err(too_large(format!(
                            "task {node} is {own} levels deep in the dependency graph; the most is \
                             {MAX_DEPENDENCY_DEPTH}"
                        )));
                    }
                    depth[node] = own;
                    stack.pop();
                }
            }
        }
        Ok(depth)
    }
}

impl KernelSpec {
    /// The bounds on a kernel alone (source size, entry points, a pipeline's stages and
    /// buffers), as [`JobSpec::validate`] applies them; workers check an assignment's with it.
    pub fn validate(&self) -> Result<(), SpecError> {
        let entry_ok = |e: &str| {
            !e.is_empty() && e.len() <= MAX_ENTRY_POINT_LEN && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if self.wgsl().is_some_and(|s| s.len() > MAX_WGSL_BYTES) {
            return Err(too_large(format!("WGSL source is over {MAX_WGSL_BYTES} bytes")));
        }
        match self {
            KernelSpec::Builtin { .. } => {}
            KernelSpec::Wgsl { entry_point, .. } => {
                if !entry_ok(entry_point) {
                    return Err(invalid("entry_point must be 1-64 ASCII letters, digits or '_'"));
                }
            }
            KernelSpec::Pipeline { buffers, stages, .. } => {
                if stages.is_empty() || stages.len() > MAX_STAGES {
                    return Err(invalid(format!("a pipeline has 1 to {MAX_STAGES} stages")));
                }
                if buffers.len() > MAX_PIPELINE_BUFFERS {
                    return Err(too_large(format!("a pipeline has at most {MAX_PIPELINE_BUFFERS} buffers")));
                }
                let mut names = std::collections::HashSet::new();
                for b in buffers {
                    let name_ok = !b.name.is_empty()
                        && b.name.len() <= MAX_BUFFER_NAME_LEN
                        && b.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !name_ok || b.name == "output" {
                        return Err(invalid(format!(
                            "buffer name {:?}: 1-{MAX_BUFFER_NAME_LEN} of a-z, 0-9 and '_', not \"output\"",
                            b.name
                        )));
                    }
                    if !names.insert(b.name.as_str()) {
                        return Err(invalid(format!("two buffers are named {:?}", b.name)));
                    }
                    if b.size == 0 || !b.size.is_multiple_of(4) || b.size > MAX_OUTPUT_BYTES {
                        return Err(invalid(format!(
                            "buffer {:?}: size must be a positive multiple of 4 up to {MAX_OUTPUT_BYTES}",
                            b.name
                        )));
                    }
                }
                if buffers.iter().map(|b| u64::from(b.size)).sum::<u64>() > MAX_PIPELINE_BUFFER_BYTES {
                    return Err(too_large(format!(
                        "a pipeline's buffers total at most {MAX_PIPELINE_BUFFER_BYTES} bytes"
                    )));
                }
                for (i, stage) in stages.iter().enumerate() {
                    if !entry_ok(&stage.entry_point) {
                        return Err(invalid(format!(
                            "stage {i}: entry_point must be 1-64 ASCII letters, digits or '_'"
                        )));
                    }
                    if stage.inputs.len() > MAX_INPUTS_PER_TASK {
                        return Err(too_large(format!("stage {i}: at most {MAX_INPUTS_PER_TASK} inputs")));
                    }
                    if stage.workgroups.is_some_and(|w| w.contains(&0) || w.iter().any(|&n| n > MAX_WORKGROUPS_PER_DIM))
                    {
                        return Err(invalid(format!(
                            "stage {i}: workgroups must be in 1..={MAX_WORKGROUPS_PER_DIM} per dimension"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

impl TaskSpec {
    fn validate(&self, comparison: Comparison) -> Result<(), SpecError> {
        if self.params.len() > MAX_PARAM_WORDS {
            return Err(too_large(format!("at most {MAX_PARAM_WORDS} param words")));
        }
        if self.inputs.len() > MAX_INPUTS_PER_TASK {
            return Err(too_large(format!("at most {MAX_INPUTS_PER_TASK} inputs")));
        }
        if self.workgroups.contains(&0) || self.workgroups.iter().any(|&w| w > MAX_WORKGROUPS_PER_DIM) {
            return Err(invalid(format!("workgroups must be in 1..={MAX_WORKGROUPS_PER_DIM} per dimension")));
        }
        if self.output_size == 0 || !self.output_size.is_multiple_of(4) {
            return Err(invalid("output_size must be a positive multiple of 4"));
        }
        if self.output_size > MAX_OUTPUT_BYTES {
            return Err(too_large(format!("output_size is over {MAX_OUTPUT_BYTES} bytes")));
        }
        let _ = comparison;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn spec() -> JobSpec {
        JobSpec {
            label: "tiles".into(),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot },
            kernels: vec![],
            tasks: vec![TaskSpec {
                params: vec![1, 2, 3],
                inputs: vec![],
                workgroups: [4, 4, 1],
                output_size: 1024,
                kernel: 0,
            }],
            comparison: Comparison::Exact,
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            price_per_replica: 10,
            deadline_secs: 600,
            homogeneous: false,
            nonce: 1,
            adaptive: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tests_support::spec as sample_spec;

    #[test]
    fn defaults_fill_in_and_unknown_fields_are_refused() {
        let json =
            r#"{"kernel":{"type":"builtin","name":"monte_carlo_pi"},"tasks":[{"workgroups":[1,1,1],"output_size":4}]}"#;
        let spec: JobSpec = serde_json::from_str(json).unwrap();
        assert_eq!((spec.replicas, spec.quorum, spec.max_replicas), (2, 2, 4));
        spec.validate().unwrap();
        let bad = json.replace("\"tasks\"", "\"extra\":1,\"tasks\"");
        assert!(serde_json::from_str::<JobSpec>(&bad).is_err());
        let unknown = json.replace("monte_carlo_pi", "bitcoin_miner");
        assert!(serde_json::from_str::<JobSpec>(&unknown).is_err());
    }

    #[test]
    fn validation_table() {
        type Mutate = fn(&mut JobSpec);
        let cases: &[(&str, Mutate, Option<ErrorCode>)] = &[
            ("sample is valid", |_| {}, None),
            ("no tasks", |s| s.tasks.clear(), Some(ErrorCode::InvalidSpec)),
            ("too many tasks", |s| s.tasks = vec![s.tasks[0].clone(); MAX_TASKS + 1], Some(ErrorCode::TooLarge)),
            ("quorum zero", |s| s.quorum = 0, Some(ErrorCode::InvalidSpec)),
            ("quorum above replicas", |s| s.quorum = 3, Some(ErrorCode::InvalidSpec)),
            ("max below replicas", |s| s.max_replicas = 1, Some(ErrorCode::InvalidSpec)),
            ("max above limit", |s| s.max_replicas = MAX_REPLICAS + 1, Some(ErrorCode::InvalidSpec)),
            ("zero workgroups", |s| s.tasks[0].workgroups = [0, 1, 1], Some(ErrorCode::InvalidSpec)),
            ("huge workgroups", |s| s.tasks[0].workgroups = [70_000, 1, 1], Some(ErrorCode::InvalidSpec)),
            ("odd output", |s| s.tasks[0].output_size = 3, Some(ErrorCode::InvalidSpec)),
            ("huge output", |s| s.tasks[0].output_size = MAX_OUTPUT_BYTES + 4, Some(ErrorCode::TooLarge)),
            ("too many params", |s| s.tasks[0].params = vec![0; MAX_PARAM_WORDS + 1], Some(ErrorCode::TooLarge)),
            (
                "too many inputs",
                |s| s.tasks[0].inputs = vec![sha256(b"").into(); MAX_INPUTS_PER_TASK + 1],
                Some(ErrorCode::TooLarge),
            ),
            ("zero deadline", |s| s.deadline_secs = 0, Some(ErrorCode::InvalidSpec)),
            ("adaptive with quorum 1", |s| (s.quorum, s.adaptive) = (1, Some(Adaptive { audit_percent: 10 })), None),
            (
                "adaptive with quorum 2",
                |s| s.adaptive = Some(Adaptive { audit_percent: 10 }),
                Some(ErrorCode::InvalidSpec),
            ),
            (
                "adaptive with one replica",
                |s| (s.replicas, s.quorum, s.adaptive) = (1, 1, Some(Adaptive { audit_percent: 10 })),
                Some(ErrorCode::InvalidSpec),
            ),
            (
                "adaptive without audits",
                |s| (s.quorum, s.adaptive) = (1, Some(Adaptive { audit_percent: 0 })),
                Some(ErrorCode::InvalidSpec),
            ),
            (
                "adaptive on tolerance",
                |s| {
                    s.quorum = 1;
                    s.adaptive = Some(Adaptive { audit_percent: 10 });
                    s.comparison = Comparison::Tolerance { rel: 0.0, abs: 0.0 };
                },
                Some(ErrorCode::InvalidSpec),
            ),
            (
                "nan tolerance",
                |s| s.comparison = Comparison::Tolerance { rel: f32::NAN, abs: 0.0 },
                Some(ErrorCode::InvalidSpec),
            ),
            ("long label", |s| s.label = "x".repeat(MAX_LABEL_LEN + 1), Some(ErrorCode::InvalidSpec)),
            (
                "bad entry point",
                |s| s.kernel = KernelSpec::Wgsl { source: "".into(), entry_point: "main()".into() },
                Some(ErrorCode::InvalidSpec),
            ),
            (
                "huge wgsl",
                |s| s.kernel = KernelSpec::Wgsl { source: " ".repeat(MAX_WGSL_BYTES + 1), entry_point: "main".into() },
                Some(ErrorCode::TooLarge),
            ),
        ];
        for (name, mutate, want) in cases {
            let mut spec = sample_spec();
            mutate(&mut spec);
            assert_eq!(spec.validate().err().map(|e| e.code), *want, "{name}");
        }
    }

    /// A job of `n` tasks where task `i` reads the outputs named in `edges[i]`.
    fn graph(n: usize, edges: &[(usize, &[u32])]) -> JobSpec {
        let mut spec = sample_spec();
        spec.tasks = vec![spec.tasks[0].clone(); n];
        for (i, deps) in edges {
            spec.tasks[*i].inputs = deps.iter().map(|&task| TaskInput::Output(OutputOf { task })).collect();
        }
        spec
    }

    #[test]
    fn dependency_validation_table() {
        let chain = |n: usize| {
            let mut spec = graph(n, &[]);
            for i in 1..n {
                spec.tasks[i].inputs = vec![TaskInput::Output(OutputOf { task: i as u32 - 1 })];
            }
            spec
        };
        /// A graph, and its depths or the error's code and part of its message.
        type Case<'a> = (&'a str, JobSpec, Result<Vec<usize>, (ErrorCode, &'a str)>);
        let cases: Vec<Case> = vec![
            ("no dependencies", graph(3, &[]), Ok(vec![0, 0, 0])),
            ("a reduction", graph(4, &[(3, &[0, 1, 2])]), Ok(vec![0, 0, 0, 1])),
            ("a later task read by an earlier one", graph(3, &[(0, &[2]), (2, &[1])]), Ok(vec![2, 0, 1])),
            ("the same output twice", graph(2, &[(1, &[0, 0])]), Ok(vec![0, 1])),
            (
                "a missing task",
                graph(2, &[(1, &[7])]),
                Err((ErrorCode::InvalidSpec, "task 1 reads the output of task 7")),
            ),
            ("itself", graph(2, &[(1, &[1])]), Err((ErrorCode::InvalidSpec, "task 1 reads its own output"))),
            (
                "a cycle",
                graph(4, &[(0, &[1]), (1, &[2]), (2, &[0]), (3, &[0])]),
                Err((ErrorCode::InvalidSpec, "tasks depend on each other in a cycle: 0 reads 1 reads 2 reads 0")),
            ),
            ("a chain at the limit", chain(MAX_DEPENDENCY_DEPTH + 1), Ok((0..=MAX_DEPENDENCY_DEPTH).collect())),
            (
                "a chain over the limit",
                chain(MAX_DEPENDENCY_DEPTH + 2),
                Err((ErrorCode::TooLarge, "levels deep in the dependency graph")),
            ),
        ];
        for (name, spec, want) in cases {
            let got = spec.dependency_depths();
            match (&got, &want) {
                (Ok(depths), Ok(want)) => assert_eq!(depths, want, "{name}"),
                (Err(e), Err((code, text))) => {
                    assert_eq!(e.code, *code, "{name}: {}", e.message);
                    assert!(e.message.contains(text), "{name}: {}", e.message);
                    assert_eq!(spec.validate().unwrap_err(), *e, "{name}: validate refuses it too");
                }
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        // A fan-in over the input bound is refused like any other input count.
        let wide = graph(8, &[(7, &[0, 1, 2, 3, 4, 5, 6])]);
        assert_eq!(wide.validate().unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn tasks_name_kernels_that_exist_and_kernels_are_bounded() {
        let mut spec = sample_spec();
        spec.tasks[0].kernel = 1;
        let e = spec.validate().unwrap_err();
        assert!(e.message.contains("kernel 1 does not exist"), "{}", e.message);
        spec.kernels = vec![KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi }];
        let e = spec.validate().unwrap_err();
        assert_eq!(e.message, "no task runs the job's kernel");
        spec.tasks.push(TaskSpec { kernel: 0, ..spec.tasks[0].clone() });
        spec.validate().unwrap();
        assert_eq!(spec.kernel_of(0), Some(&spec.kernels[0]));
        spec.kernels.push(KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot });
        assert_eq!(spec.validate().unwrap_err().message, "no task runs kernels[1]");
        spec.kernels.pop();
        let big = KernelSpec::Wgsl { source: " ".repeat(MAX_WGSL_BYTES), entry_point: "main".into() };
        spec.kernel = big.clone();
        spec.kernels = vec![big.clone(), big];
        spec.tasks.push(TaskSpec { kernel: 2, ..spec.tasks[0].clone() });
        assert_eq!(spec.validate().unwrap_err().code, ErrorCode::TooLarge, "three kernels of 64 KiB");
        spec.kernels = vec![KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi }; MAX_KERNELS_PER_JOB];
        assert_eq!(spec.validate().unwrap_err().code, ErrorCode::TooLarge);
        spec.kernels = vec![KernelSpec::Wgsl { source: String::new(), entry_point: "no way".into() }];
        let e = spec.validate().unwrap_err();
        assert!(e.message.starts_with("kernels[0]: entry_point"), "{}", e.message);
    }

    #[test]
    fn pipeline_validation_table() {
        fn pipeline(buffers: &[(&str, u32)], stages: &[(&str, &[&str], &str)]) -> KernelSpec {
            KernelSpec::Pipeline {
                source: String::new(),
                buffers: buffers.iter().map(|(n, s)| NamedBuffer { name: n.to_string(), size: *s }).collect(),
                stages: stages
                    .iter()
                    .map(|(e, i, o)| Stage {
                        entry_point: e.to_string(),
                        inputs: i.iter().map(|s| s.to_string()).collect(),
                        output: o.to_string(),
                        workgroups: None,
                    })
                    .collect(),
            }
        }
        let ok: &[(&str, &[&str], &str)] = &[("a", &["input:0", "input:1"], "z"), ("b", &["z"], "output")];
        let cases: Vec<(&str, KernelSpec, Option<&str>)> = vec![
            ("two stages", pipeline(&[("z", 64)], ok), None),
            ("no stages", pipeline(&[], &[]), Some("1 to 16 stages")),
            (
                "a name the task lacks",
                pipeline(&[("z", 64)], &[("a", &["input:2"], "output")]),
                Some("the task has 2 inputs"),
            ),
            ("an unknown buffer", pipeline(&[], &[("a", &["y"], "output")]), Some("no input, output or buffer")),
            ("a buffer bound twice", pipeline(&[("z", 64)], &[("a", &["z"], "z")]), Some("binds one buffer twice")),
            ("writing an input", pipeline(&[], &[("a", &[], "input:0")]), Some("writes a task input")),
            ("never writing the output", pipeline(&[("z", 64)], &[("a", &["input:0"], "z")]), Some("no stage writes")),
            ("two buffers of one name", pipeline(&[("z", 64), ("z", 8)], ok), Some("two buffers are named")),
            ("a buffer named output", pipeline(&[("output", 64)], ok), Some("not \"output\"")),
            ("an odd buffer", pipeline(&[("z", 6)], ok), Some("positive multiple of 4")),
            (
                "a buffer nobody binds",
                pipeline(&[("z", 64), ("spare", 64)], ok),
                Some("\"spare\" is bound by no stage"),
            ),
            ("a bad entry point", pipeline(&[("z", 64)], &[("a b", &[], "output")]), Some("stage 0: entry_point")),
        ];
        for (name, kernel, want) in cases {
            let mut spec = sample_spec();
            spec.kernel = kernel;
            spec.tasks[0].inputs = vec![sha256(b"x").into(), sha256(b"w").into()];
            match (spec.validate(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(text)) => assert!(e.message.contains(text), "{name}: {}", e.message),
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
        let many = vec![("s", &[][..], "output"); MAX_STAGES + 1];
        let mut spec = sample_spec();
        spec.kernel = pipeline(&[], &many);
        assert!(spec.validate().is_err());
        spec.kernel = pipeline(&[("a", MAX_OUTPUT_BYTES), ("b", MAX_OUTPUT_BYTES), ("c", 4)], &[("s", &[], "output")]);
        assert_eq!(spec.validate().unwrap_err().code, ErrorCode::TooLarge, "buffers over their total");
    }

    #[test]
    fn inputs_are_hashes_or_task_outputs_on_the_wire() {
        let blob = sha256(b"x");
        let json = format!(
            r#"{{"kernel":{{"type":"builtin","name":"monte_carlo_pi"}},"tasks":[{{"workgroups":[1,1,1],"output_size":4}},{{"inputs":["{blob}",{{"task":0}}],"workgroups":[1,1,1],"output_size":4,"kernel":0}}]}}"#
        );
        let spec: JobSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(spec.tasks[1].inputs, vec![TaskInput::Blob(blob), TaskInput::Output(OutputOf { task: 0 })]);
        assert_eq!(spec.tasks[1].blobs().collect::<Vec<_>>(), vec![blob]);
        assert_eq!(spec.tasks[1].depends_on().collect::<Vec<_>>(), vec![0]);
        assert_eq!(spec.input_sizes(1, |_| Some(9)), vec![Some(9), Some(4)]);
        assert!(spec.has_dependencies());
        assert_eq!(spec.waiting_for_inputs(|_| false, |_| false), 1);
        assert_eq!(spec.waiting_for_inputs(|_| false, |t| t == 0), 0);
        assert_eq!(spec.waiting_for_inputs(|t| t == 1, |_| false), 0, "a decided task waits for nothing");
        let wire = serde_json::to_string(&spec).unwrap();
        assert!(!wire.contains("\"kernel\":0") && !wire.contains("kernels"), "defaults stay off the wire: {wire}");
        for bad in [r#"{"task":0,"x":1}"#, r#"{"task":-1}"#, r#""zz""#, r#"{"blob":"00"}"#] {
            let json = json.replace(r#"{"task":0}"#, bad);
            assert!(serde_json::from_str::<JobSpec>(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_is_stable_across_a_json_round_trip() {
        let spec = sample_spec();
        let wire = serde_json::to_string_pretty(&spec).unwrap();
        let back: JobSpec = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.digest(), spec.digest());
        let mut other = spec.clone();
        other.nonce = 2;
        assert_ne!(other.digest(), spec.digest());
        // Absent adaptive terms leave the encoding (and so every digest signed before) as it was.
        assert!(!serde_json::to_string(&spec).unwrap().contains("adaptive"));
        let adaptive = JobSpec { quorum: 1, adaptive: Some(Adaptive { audit_percent: 5 }), ..spec.clone() };
        let back: JobSpec = serde_json::from_str(&serde_json::to_string(&adaptive).unwrap()).unwrap();
        assert_eq!(back.digest(), adaptive.digest());
    }
}
