//! Known-answer checks ("canaries"): the relay computes a result itself with the kernel's CPU
//! reference and compares it with what a worker signed. The core draws which results are checked
//! ([`crate::core::CoreConfig::canary_rate`]), after they are in, so a worker cannot tell a checked
//! task from any other: every task of a checkable job ([`crate::core::checkable`]) may be one.
//!
//! The comparison ([`compare`]) is pure; [`Checker`] runs it off the driver, at most
//! `concurrency` at a time. A drawn check answers [`CheckOutcome::Unchecked`] at once when all its
//! slots are busy; a check that settles a dispute waits for a slot, in a queue of at most
//! [`DISPUTE_QUEUE`] (beyond it, unchecked too). A flood of results costs the relay at most that
//! many CPU threads and that many waiting checks.
//!
//! What a failed check does is relay-side only: the result is thrown out and the worker barred
//! from paid work on this relay (see `docs/TRUST.md`, "Canaries"). It is not slashed for it: the
//! contract cannot check the relay's answer. Its signature becomes slashable evidence only if the
//! task then settles through an independent quorum with a different result, as any dissent does.

use crate::blobs::BlobStore;
use crate::core::{Check, CheckOutcome, Input};
use crate::verifier::floats_agree;
use starling_kernels as kernels;
use starling_protocol::job::{Comparison, KernelSpec};
use starling_protocol::{Hash32, sha256};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// Compares a worker's result with the reference output: by hash on exact jobs, element-wise
/// within the job's tolerance on tolerance jobs (which needs the worker's bytes).
pub fn compare(comparison: Comparison, reference: &[u8], output_hash: &Hash32, output: Option<&[u8]>) -> CheckOutcome {
    if sha256(reference) == *output_hash {
        return CheckOutcome::Matches;
    }
    match (comparison, output) {
        (Comparison::Exact, _) => CheckOutcome::Differs,
        (Comparison::Tolerance { rel, abs }, Some(bytes)) if sha256(bytes) == *output_hash => {
            if floats_agree(reference, bytes, rel, abs) { CheckOutcome::Matches } else { CheckOutcome::Differs }
        }
        // The bytes are missing or are not what was signed: nothing proven either way.
        (Comparison::Tolerance { .. }, _) => CheckOutcome::Unchecked,
    }
}

/// Dispute checks that may wait for a free slot at once.
pub const DISPUTE_QUEUE: usize = 64;

/// Runs checks on the blocking pool, a bounded number at a time.
#[derive(Debug, Clone)]
pub struct Checker {
    slots: Arc<Semaphore>,
    /// Places in the queue of dispute checks waiting for a slot.
    queue: Arc<Semaphore>,
    blobs: BlobStore,
}

impl Checker {
    pub fn new(blobs: BlobStore, concurrency: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            queue: Arc::new(Semaphore::new(DISPUTE_QUEUE)),
            blobs,
        }
    }

    /// Starts `check` on `runtime`; its answer comes back through `answers`.
    pub fn start(&self, check: Check, runtime: &tokio::runtime::Handle, answers: mpsc::UnboundedSender<Input>) {
        let (task, lease) = (check.task, check.lease);
        let (now, place) = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => (Some(permit), None),
            Err(_) if check.dispute => match self.queue.clone().try_acquire_owned() {
                Ok(place) => (None, Some(place)),
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        };
        if now.is_none() && place.is_none() {
            let _ = answers.send(Input::Checked { task, lease, outcome: CheckOutcome::Unchecked });
            return;
        }
        let (blobs, slots) = (self.blobs.clone(), self.slots.clone());
        runtime.spawn(async move {
            let permit = match now {
                Some(permit) => permit,
                None => match slots.acquire_owned().await {
                    Ok(permit) => {
                        drop(place);
                        permit
                    }
                    Err(_) => {
                        let _ = answers.send(Input::Checked { task, lease, outcome: CheckOutcome::Unchecked });
                        return;
                    }
                },
            };
            let outcome = run(&blobs, &check).await;
            drop(permit);
            if outcome == CheckOutcome::Differs {
                tracing::warn!(%task, %lease, "known-answer check failed");
            }
            let _ = answers.send(Input::Checked { task, lease, outcome });
        });
    }
}

async fn run(blobs: &BlobStore, check: &Check) -> CheckOutcome {
    let spec = &check.job.spec;
    let Some(&KernelSpec::Builtin { name }) = spec.kernel_of(check.task.index as usize) else {
        return CheckOutcome::Unchecked;
    };
    let Some(task) = spec.tasks.get(check.task.index as usize) else { return CheckOutcome::Unchecked };
    let mut inputs = Vec::with_capacity(check.inputs.len());
    for h in &check.inputs {
        match blobs.read(h).await {
            Ok(bytes) => inputs.push(bytes),
            Err(_) => return CheckOutcome::Unchecked,
        }
    }
    let comparison = crate::core::task_comparison(spec, check.task.index);
    let output = match comparison {
        Comparison::Tolerance { .. } => match blobs.read(&check.output_hash).await {
            Ok(bytes) => Some(bytes),
            Err(_) => return CheckOutcome::Unchecked,
        },
        Comparison::Exact => None,
    };
    let (params, workgroups, output_size, comparison, hash) =
        (task.params.clone(), task.workgroups, task.output_size, comparison, check.output_hash);
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = inputs.iter().map(|i| i.as_slice()).collect();
        match kernels::run_cpu(name, &params, &refs, workgroups, output_size) {
            Ok(reference) => compare(comparison, &reference, &hash, output.as_deref()),
            Err(_) => CheckOutcome::Unchecked,
        }
    })
    .await
    .unwrap_or(CheckOutcome::Unchecked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Monte Carlo check of task 0 whose signed hash is the reference's.
    fn pi_check(dispute: bool) -> Check {
        use starling_protocol::job::{BuiltinKernel, JobSpec};
        let tasks = kernels::monte_carlo_pi::tasks(1, 1, 1, 16);
        let t = &tasks[0];
        let reference = kernels::run_cpu(BuiltinKernel::MonteCarloPi, &t.params, &[], t.workgroups, t.output_size);
        let spec = JobSpec {
            label: String::new(),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            tasks,
            comparison: Comparison::Exact,
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            price_per_replica: 0,
            deadline_secs: 600,
            homogeneous: false,
            nonce: 0,
            adaptive: None,
            kernels: Vec::new(),
        };
        let job = starling_protocol::sign::Keypair::from_seed([9; 32]).sign_job(spec);
        Check {
            task: starling_protocol::TaskId { job: starling_protocol::JobId(1), index: 0 },
            lease: starling_protocol::LeaseId(if dispute { 2 } else { 1 }),
            inputs: job.spec.tasks[0].blobs().collect(),
            job: Arc::new(job),
            output_hash: sha256(&reference.unwrap()),
            dispute,
        }
    }

    /// A busy checker skips a drawn check at once, queues a dispute check until a slot frees
    /// (then really runs it), and skips a dispute check too once its queue is full.
    #[tokio::test]
    async fn a_busy_checker_skips_drawn_checks_and_queues_disputes() {
        let dir = tempfile::tempdir().unwrap();
        let checker = Checker::new(BlobStore::folder(dir.path(), 1 << 20).unwrap(), 1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Handle::current();
        let busy = checker.slots.clone().acquire_owned().await.unwrap();
        checker.start(pi_check(false), &runtime, tx.clone());
        let answer = rx.recv().await.unwrap();
        assert!(matches!(answer, Input::Checked { outcome: CheckOutcome::Unchecked, .. }), "{answer:?}");
        checker.start(pi_check(true), &runtime, tx.clone());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "the dispute check waits for the slot");
        drop(busy);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
        assert!(matches!(answer, Input::Checked { outcome: CheckOutcome::Matches, .. }), "{answer:?}");
        // The queue full, and the slot busy: a dispute check is skipped too.
        let busy = checker.slots.clone().acquire_owned().await.unwrap();
        let full = checker.queue.clone().acquire_many_owned(DISPUTE_QUEUE as u32).await.unwrap();
        checker.start(pi_check(true), &runtime, tx.clone());
        let answer = rx.recv().await.unwrap();
        assert!(matches!(answer, Input::Checked { outcome: CheckOutcome::Unchecked, .. }), "{answer:?}");
        drop((busy, full));
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn comparison_table() {
        let exact = Comparison::Exact;
        let tol = Comparison::Tolerance { rel: 1e-3, abs: 0.0 };
        let reference = f32s(&[1.0, 2.0]);
        let close = f32s(&[1.0, 2.0005]);
        let far = f32s(&[1.0, 2.5]);
        // (case, job's comparison, bytes the worker signed, bytes read back, outcome)
        type Case<'a> = (&'a str, Comparison, &'a [u8], Option<&'a [u8]>, CheckOutcome);
        let cases: &[Case<'_>] = &[
            ("exact, same bytes", exact, &reference, None, CheckOutcome::Matches),
            ("exact, other bytes", exact, &close, None, CheckOutcome::Differs),
            ("tolerance, same bytes", tol, &reference, None, CheckOutcome::Matches),
            ("tolerance, within", tol, &close, Some(&close), CheckOutcome::Matches),
            ("tolerance, outside", tol, &far, Some(&far), CheckOutcome::Differs),
            ("tolerance, bytes missing", tol, &far, None, CheckOutcome::Unchecked),
            ("tolerance, bytes not the signed ones", tol, &far, Some(&close), CheckOutcome::Unchecked),
        ];
        for (case, comparison, signed, bytes, want) in cases {
            assert_eq!(compare(*comparison, &reference, &sha256(signed), *bytes), *want, "{case}");
        }
    }
}
