//! Settlement decisions, pure: no ledger, no database. The settler gathers the facts (a task's
//! replicas and which keys are bonded) and acts on what these functions return.

use super::{Evidence, OpenJob, SettleTask};
use starling_protocol::job::{Comparison, JobSpec};
use starling_protocol::{Hash32, JobId, PublicKey, Signature};
use std::collections::HashSet;

/// A returned replica of a task, as the store keeps it (its signature was checked on receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReplica {
    pub worker: PublicKey,
    pub output_hash: Hash32,
    pub output_len: u64,
    pub signature: Signature,
    /// The verifier rejected this result: it disagreed with the quorum. Only rejected results
    /// are evidence; an accepted one that differs in its bytes agreed within the job's tolerance.
    pub rejected: bool,
}

/// How long after the relay's own deadline the escrow still takes settlements: tasks verified
/// in the job's last moments are still in the settler's batch (or its retries) when the relay's
/// deadline passes, and must be paid, not refunded. The relay closes a finished job at once, so
/// the grace delays nothing for the client.
pub const SETTLE_GRACE_SECS: u64 = 600;

/// Whether a job is paid through escrow (when the relay has one): the one place that says so.
pub fn is_paid(spec: &JobSpec) -> bool {
    spec.price_per_replica > 0
}

/// What a job locks in escrow, or `None` for a free job (price 0 runs unpaid). `created_ms` is
/// the job's creation time (Unix milliseconds); the escrow deadline is the relay's deadline,
/// rounded up to the second, plus [`SETTLE_GRACE_SECS`].
pub fn open_job(job: JobId, client: PublicKey, spec: &JobSpec, created_ms: u64) -> Option<OpenJob> {
    if !is_paid(spec) {
        return None;
    }
    Some(OpenJob {
        job,
        client,
        tasks: spec.tasks.len() as u32,
        replicas: spec.max_replicas.max(spec.replicas),
        quorum: spec.quorum,
        price_per_replica: u128::from(spec.price_per_replica),
        deadline: created_ms.div_ceil(1000) + spec.deadline_secs + SETTLE_GRACE_SECS,
        // A signature over a different result proves a lie only when results must match byte
        // for byte; within a tolerance, honest GPUs differ.
        slashable: spec.comparison == Comparison::Exact,
    })
}

/// Why a verified task cannot be settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpayable {
    /// Fewer bonded agreeing signers than the quorum: the client keeps that task's deposit.
    BelowQuorum { eligible: usize, quorum: u8 },
}

/// The settlement entry for a verified task: agreeing replicas from distinct eligible keys,
/// ordered by key, at most `max_signers` of them, at least `quorum`.
pub fn settle_entry(
    index: u32,
    verified: &Hash32,
    replicas: &[SignedReplica],
    eligible: &HashSet<PublicKey>,
    quorum: u8,
    max_signers: u8,
) -> Result<SettleTask, Unpayable> {
    let mut agreeing: Vec<&SignedReplica> =
        replicas.iter().filter(|r| r.output_hash == *verified && eligible.contains(&r.worker)).collect();
    agreeing.sort_by_key(|r| r.worker.0);
    agreeing.dedup_by_key(|r| r.worker);
    agreeing.truncate(usize::from(max_signers));
    if agreeing.len() < usize::from(quorum) {
        return Err(Unpayable::BelowQuorum { eligible: agreeing.len(), quorum });
    }
    Ok(SettleTask {
        index,
        output_hash: *verified,
        output_len: agreeing[0].output_len,
        signatures: agreeing.iter().map(|r| (r.worker, r.signature)).collect(),
    })
}

/// Slashing evidence from a settled task of a slashable job: every registered key whose result
/// the verifier rejected and that signed a different result (hash or length), once per key.
pub fn evidence(
    job: JobId,
    slashable: bool,
    settled: &SettleTask,
    replicas: &[SignedReplica],
    registered: &HashSet<PublicKey>,
) -> Vec<Evidence> {
    if !slashable {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    replicas
        .iter()
        .filter(|r| r.rejected)
        .filter(|r| r.output_hash != settled.output_hash || r.output_len != settled.output_len)
        .filter(|r| registered.contains(&r.worker) && seen.insert(r.worker))
        .map(|r| Evidence {
            job,
            index: settled.index,
            worker: r.worker,
            output_hash: r.output_hash,
            output_len: r.output_len,
            signature: r.signature,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::job::{BuiltinKernel, KernelSpec, TaskSpec};

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    /// A replica the verifier rejected when its hash differs from the agreed one (`1`), as an
    /// exact comparison does.
    fn replica(worker: u8, hash: u8, len: u64) -> SignedReplica {
        SignedReplica {
            worker: key(worker),
            output_hash: Hash32([hash; 32]),
            output_len: len,
            signature: Signature([worker; 64]),
            rejected: hash != 1 || len != 8,
        }
    }

    /// (case, replicas, eligible keys, quorum, max signers, expected signers or `Err(eligible)`).
    type Case = (&'static str, Vec<SignedReplica>, HashSet<PublicKey>, u8, u8, Result<Vec<u8>, usize>);

    #[test]
    fn settle_entries() {
        let h = Hash32([1; 32]);
        let all: HashSet<PublicKey> = (1..=5).map(key).collect();
        let cases: Vec<Case> = vec![
            ("two agree", vec![replica(2, 1, 8), replica(1, 1, 8)], all.clone(), 2, 3, Ok(vec![1, 2])),
            (
                "dissenter left out",
                vec![replica(1, 1, 8), replica(2, 9, 8), replica(3, 1, 8)],
                all.clone(),
                2,
                3,
                Ok(vec![1, 3]),
            ),
            (
                "capped at max signers",
                vec![replica(3, 1, 8), replica(1, 1, 8), replica(2, 1, 8)],
                all.clone(),
                2,
                2,
                Ok(vec![1, 2]),
            ),
            ("duplicate key counted once", vec![replica(1, 1, 8), replica(1, 1, 8)], all.clone(), 2, 3, Err(1)),
            (
                "unbonded signer dropped",
                vec![replica(1, 1, 8), replica(2, 1, 8), replica(3, 1, 8)],
                [key(1), key(3)].into(),
                2,
                3,
                Ok(vec![1, 3]),
            ),
            (
                "below quorum once unbonded dropped",
                vec![replica(1, 1, 8), replica(2, 1, 8)],
                [key(1)].into(),
                2,
                3,
                Err(1),
            ),
            ("nothing agrees", vec![replica(1, 9, 8)], all.clone(), 1, 3, Err(0)),
        ];
        for (case, replicas, eligible, quorum, max, want) in cases {
            let got = settle_entry(4, &h, &replicas, &eligible, quorum, max);
            match (got, want) {
                (Ok(entry), Ok(signers)) => {
                    assert_eq!(entry.index, 4, "{case}");
                    assert_eq!(entry.output_len, 8, "{case}");
                    assert_eq!(entry.signatures.iter().map(|(k, _)| k.0[0]).collect::<Vec<_>>(), signers, "{case}");
                    assert!(
                        entry.signatures.iter().all(|(k, s)| s.0[0] == k.0[0]),
                        "{case}: signatures stay with their keys"
                    );
                }
                (Err(Unpayable::BelowQuorum { eligible, quorum: q }), Err(n)) => {
                    assert_eq!((eligible, q), (n, quorum), "{case}");
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn evidence_against_registered_dissenters_only() {
        let settled = SettleTask { index: 2, output_hash: Hash32([1; 32]), output_len: 8, signatures: vec![] };
        let registered: HashSet<PublicKey> = [key(1), key(2), key(3), key(4)].into();
        let replicas = vec![
            replica(1, 1, 8), // agrees
            replica(2, 9, 8), // different hash
            replica(3, 1, 9), // same hash, different length: still a different claim
            replica(2, 7, 8), // second lie by the same key: one slash
            replica(5, 9, 8), // not registered: nothing to slash
        ];
        let got = evidence(JobId(7), true, &settled, &replicas, &registered);
        let got: Vec<(u8, u8, u64)> = got.iter().map(|e| (e.worker.0[0], e.output_hash.0[0], e.output_len)).collect();
        assert_eq!(got, vec![(2, 9, 8), (3, 1, 9)]);
        assert!(evidence(JobId(7), true, &settled, &replicas[..1], &registered).is_empty());
    }

    #[test]
    fn no_evidence_from_results_accepted_within_tolerance() {
        let settled = SettleTask { index: 0, output_hash: Hash32([1; 32]), output_len: 8, signatures: vec![] };
        let registered: HashSet<PublicKey> = [key(1), key(2), key(3)].into();
        // Worker 2's bytes differ but the verifier accepted them (within tolerance): honest.
        let within = SignedReplica { rejected: false, ..replica(2, 5, 8) };
        let replicas = vec![replica(1, 1, 8), within, replica(3, 9, 8)];
        let got: Vec<u8> =
            evidence(JobId(7), true, &settled, &replicas, &registered).iter().map(|e| e.worker.0[0]).collect();
        assert_eq!(got, vec![3], "only the rejected dissenter is evidence");
        assert!(
            evidence(JobId(7), false, &settled, &replicas, &registered).is_empty(),
            "a tolerance job (not slashable) gives no evidence at all"
        );
    }

    #[test]
    fn deposits_cover_extra_replicas_and_free_jobs_skip_escrow() {
        let mut spec = JobSpec {
            label: String::new(),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            tasks: vec![TaskSpec { params: vec![], inputs: vec![], workgroups: [1, 1, 1], output_size: 8 }; 3],
            comparison: Default::default(),
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            price_per_replica: 0,
            deadline_secs: 60,
            homogeneous: false,
            nonce: 0,
        };
        assert_eq!(open_job(JobId(1), key(1), &spec, 1_000_000), None);
        spec.price_per_replica = 25;
        let open = open_job(JobId(1), key(1), &spec, 1_000_000).unwrap();
        assert_eq!(
            (open.tasks, open.replicas, open.quorum, open.price_per_replica, open.deadline, open.slashable),
            (3, 4, 2, 25, 1000 + 60 + SETTLE_GRACE_SECS, true)
        );
        // Created part-way through a second: the escrow deadline never falls before the relay's.
        let open = open_job(JobId(1), key(1), &spec, 1_000_001).unwrap();
        assert_eq!(open.deadline, 1001 + 60 + SETTLE_GRACE_SECS);
        spec.comparison = Comparison::Tolerance { rel: 1e-5, abs: 1e-6 };
        assert!(!open_job(JobId(1), key(1), &spec, 1_000_000).unwrap().slashable);
    }
}
