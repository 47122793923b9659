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
}

impl BuiltinKernel {
    pub const ALL: [BuiltinKernel; 4] = [
        BuiltinKernel::Mandelbrot,
        BuiltinKernel::MatmulF32,
        BuiltinKernel::MonteCarloPi,
        BuiltinKernel::Sha256NonceSearch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinKernel::Mandelbrot => "mandelbrot",
            BuiltinKernel::MatmulF32 => "matmul_f32",
            BuiltinKernel::MonteCarloPi => "monte_carlo_pi",
            BuiltinKernel::Sha256NonceSearch => "sha256_nonce_search",
        }
    }

    /// Whether every device and the CPU reference produce the same bytes (integer arithmetic
    /// only): a result can be checked against the CPU reference exactly.
    pub fn exact(self) -> bool {
        !matches!(self, BuiltinKernel::MatmulF32)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl KernelSpec {
    /// Whether running this kernel needs a GPU (custom WGSL has no CPU reference).
    pub fn needs_gpu(&self) -> bool {
        matches!(self, KernelSpec::Wgsl { .. })
    }

    /// Short name for logs and dashboards.
    pub fn display_name(&self) -> String {
        match self {
            KernelSpec::Builtin { name } => name.name().to_string(),
            KernelSpec::Wgsl { entry_point, .. } => format!("wgsl:{entry_point}"),
        }
    }
}

/// One task: its uniform parameters, input blobs, dispatch size and output size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Uniform buffer contents as 32-bit words (floats as their bit patterns).
    #[serde(default)]
    pub params: Vec<u32>,
    /// Input blobs by SHA-256, bound in order from binding 1.
    #[serde(default)]
    pub inputs: Vec<Hash32>,
    /// Workgroups dispatched in x, y, z.
    pub workgroups: [u32; 3],
    /// Bytes of output the kernel writes.
    pub output_size: u32,
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
        if let KernelSpec::Wgsl { source, entry_point } = &self.kernel {
            if source.len() > MAX_WGSL_BYTES {
                return Err(too_large(format!("WGSL source is over {MAX_WGSL_BYTES} bytes")));
            }
            if entry_point.is_empty()
                || entry_point.len() > MAX_ENTRY_POINT_LEN
                || !entry_point.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(invalid("entry_point must be 1-64 ASCII letters, digits or '_'"));
            }
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
            tasks: vec![TaskSpec { params: vec![1, 2, 3], inputs: vec![], workgroups: [4, 4, 1], output_size: 1024 }],
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
                |s| s.tasks[0].inputs = vec![sha256(b""); MAX_INPUTS_PER_TASK + 1],
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
