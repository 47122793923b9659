//! Assembling a job: the one place a `JobSpec` is put together from a kernel, its tasks and the
//! client's rules, and checked the way the relay will check it. The CLI (`starling submit`) and
//! the web app's job form both build through here, so a job means the same from either.

use starling_protocol::Hash32;
use starling_protocol::job::{self, Adaptive, Comparison, JobSpec, KernelSpec, TaskSpec};

/// How a job is replicated, paid for and labelled: everything its spec says beside the kernel and
/// the tasks. The defaults are the protocol's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub label: String,
    /// Replicas handed out per task at first.
    pub replicas: u8,
    /// Agreeing results needed to verify a task.
    pub quorum: u8,
    /// Most replicas per task once results disagree.
    pub max_replicas: u8,
    /// Paid per accepted replica, in micro-units.
    pub price_per_replica: u64,
    /// Seconds until unfinished tasks fail (and are refunded).
    pub deadline_secs: u64,
    /// Adaptive replication with this audit percentage, if the client allows it.
    pub adaptive_audit: Option<u8>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            label: String::new(),
            replicas: job::DEFAULT_REPLICAS,
            quorum: job::DEFAULT_QUORUM,
            max_replicas: job::DEFAULT_MAX_REPLICAS,
            price_per_replica: 0,
            deadline_secs: job::DEFAULT_DEADLINE_SECS,
            adaptive_audit: None,
        }
    }
}

impl Rules {
    /// The job these rules make of `kernel` run over `tasks`; `nonce` makes otherwise identical
    /// submissions distinct.
    pub fn spec(&self, kernel: KernelSpec, tasks: Vec<TaskSpec>, comparison: Comparison, nonce: u64) -> JobSpec {
        JobSpec {
            label: self.label.clone(),
            kernel,
            tasks,
            comparison,
            replicas: self.replicas,
            quorum: self.quorum,
            max_replicas: self.max_replicas,
            price_per_replica: self.price_per_replica,
            deadline_secs: self.deadline_secs,
            homogeneous: false,
            nonce,
            adaptive: self.adaptive_audit.map(|audit_percent| Adaptive { audit_percent }),
            kernels: Vec::new(),
        }
    }
}

/// The relay's own checks, before anything is uploaded or posted: the spec's structure
/// ([`JobSpec::validate`]) and, for a built-in, every task's params, input sizes, workgroups and
/// output size against what the kernel computes ([`crate::check_sizes`]); an input that is another
/// task's output has that task's declared size. `input_size` gives the size of a blob the client
/// is about to upload (`None`: not known here, taken as empty).
pub fn check(spec: &JobSpec, input_size: impl Fn(&Hash32) -> Option<u64>) -> Result<(), String> {
    spec.validate().map_err(|e| e.message)?;
    for (i, task) in spec.tasks.iter().enumerate() {
        if let Some(KernelSpec::Builtin { name }) = spec.kernel_of(i) {
            let sizes: Vec<u64> = spec.input_sizes(i, &input_size).into_iter().map(|s| s.unwrap_or(0)).collect();
            crate::check_sizes(*name, &task.params, &sizes, task.workgroups, task.output_size)
                .map_err(|e| format!("task {i}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monte_carlo_pi;
    use starling_protocol::job::BuiltinKernel;

    #[test]
    fn rules_make_the_spec_and_default_to_the_protocol() {
        let rules = Rules::default();
        assert_eq!((rules.replicas, rules.quorum, rules.max_replicas, rules.deadline_secs), (2, 2, 4, 3600));
        let rules = Rules { label: "pi".into(), price_per_replica: 5, adaptive_audit: Some(10), quorum: 1, ..rules };
        let tasks = monte_carlo_pi::tasks(7, 2, 4, 32);
        let spec = rules.spec(KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi }, tasks, Comparison::Exact, 9);
        assert_eq!((spec.label.as_str(), spec.price_per_replica, spec.nonce), ("pi", 5, 9));
        assert_eq!(spec.adaptive, Some(Adaptive { audit_percent: 10 }));
        check(&spec, |_| None).expect("a built job passes the relay's checks");
    }

    #[test]
    fn check_refuses_what_the_relay_would() {
        let tasks = monte_carlo_pi::tasks(7, 1, 4, 32);
        let kernel = KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi };
        let mut spec = Rules::default().spec(kernel.clone(), tasks.clone(), Comparison::Exact, 1);
        spec.tasks[0].output_size += 4;
        assert!(check(&spec, |_| None).unwrap_err().starts_with("task 0: "));
        let spec = Rules { quorum: 3, ..Rules::default() }.spec(kernel, tasks, Comparison::Exact, 1);
        assert!(check(&spec, |_| None).is_err(), "a quorum above the replicas");
    }
}
