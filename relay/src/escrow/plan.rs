//! Settlement decisions, pure: no ledger, no database. The settler gathers the facts (a task's
//! replicas and which keys are bonded) and acts on what these functions return.

use super::{Evidence, OpenJob, SettleTask, Signer};
use starling_protocol::job::{Comparison, JobSpec};
use starling_protocol::sign::{DepositTerms, SignedJob};
use starling_protocol::{Hash32, JobId, PublicKey, Signature};
use std::collections::{HashMap, HashSet};

/// A returned replica of a task, as the store keeps it (its signature was checked on receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReplica {
    pub worker: PublicKey,
    pub output_hash: Hash32,
    pub output_len: u64,
    pub signature: Signature,
    /// The verifier accepted this result (it agreed with the quorum, within the job's tolerance).
    pub accepted: bool,
    /// The verifier rejected this result: it disagreed with the quorum. Only rejected results
    /// are evidence; an accepted one that differs in its bytes agreed within the job's tolerance.
    pub rejected: bool,
}

/// Whether a job is paid through escrow (when the relay has one): the one place that says so.
pub fn is_paid(spec: &JobSpec) -> bool {
    spec.price_per_replica > 0
}

/// Why a paid job cannot be opened in escrow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotOpen {
    #[error(
        "a paid job needs a deposit authorization: the client's signature over its deposit terms (see GET /v1/health for the escrow)"
    )]
    NoDeposit,
}

/// What a job asks the escrow to open, with its client's signed terms, or `None` for a free job
/// (price 0 runs unpaid). The terms are derived from the spec exactly as the client derived
/// them ([`DepositTerms::for_spec`]); the contract checks the signature over them.
pub fn open_job(job: JobId, signed: &SignedJob) -> Result<Option<OpenJob>, CannotOpen> {
    if !is_paid(&signed.spec) {
        return Ok(None);
    }
    let deposit = signed.deposit.ok_or(CannotOpen::NoDeposit)?;
    Ok(Some(OpenJob {
        job,
        client: signed.client,
        terms: DepositTerms::for_spec(&signed.spec, deposit.not_after),
        signature: deposit.signature,
    }))
}

/// How a paid job settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleTerms {
    pub quorum: u8,
    /// Signers paid per task at most (the escrow's `replicas`).
    pub max_signers: u8,
    /// Results must match byte for byte: only then does a different signature prove a lie, and
    /// only then is it evidence.
    pub exact: bool,
}

/// The settlement terms of a job, or `None` for a job that runs unpaid.
pub fn settle_terms(spec: &JobSpec) -> Option<SettleTerms> {
    is_paid(spec).then(|| SettleTerms {
        quorum: spec.quorum,
        max_signers: spec.max_replicas.max(spec.replicas),
        exact: spec.comparison == Comparison::Exact,
    })
}

/// Why a verified task cannot be settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpayable {
    /// Fewer bonded agreeing signers of distinct owners than the quorum: the client keeps that
    /// task's deposit.
    BelowQuorum { eligible: usize, quorum: u8 },
}

/// The settlement entry for a verified task: agreeing replicas from distinct eligible keys of
/// distinct owners (one owner is one independent replica, as the contract counts), ordered by
/// key, at most `max_signers` of them, at least `quorum`. `eligible` maps each bonded key to its
/// owner. On an exact job the agreeing replicas are those of the verified hash; on a tolerance
/// job, those the verifier accepted, each paid for the hash it signed.
pub fn settle_entry(
    index: u32,
    verified: &Hash32,
    replicas: &[SignedReplica],
    eligible: &HashMap<PublicKey, PublicKey>,
    terms: SettleTerms,
) -> Result<SettleTask, Unpayable> {
    let below = |n: usize| Unpayable::BelowQuorum { eligible: n, quorum: terms.quorum };
    let Some(output_len) = replicas.iter().find(|r| r.output_hash == *verified).map(|r| r.output_len) else {
        return Err(below(0));
    };
    let agrees = |r: &SignedReplica| {
        r.output_len == output_len
            && if terms.exact { r.output_hash == *verified } else { r.accepted || r.output_hash == *verified }
    };
    let mut agreeing: Vec<&SignedReplica> =
        replicas.iter().filter(|r| agrees(r) && eligible.contains_key(&r.worker)).collect();
    // Signers of the verified hash first (then by key), so that keeping one key per owner and
    // capping the signers never drops them in favour of a within-tolerance neighbour: the
    // settled result should be the one the client got.
    agreeing.sort_by_key(|r| (r.output_hash != *verified, r.worker.0));
    let mut keys = HashSet::new();
    let mut owners = HashSet::new();
    agreeing.retain(|r| keys.insert(r.worker) && owners.insert(eligible[&r.worker]));
    agreeing.truncate(usize::from(terms.max_signers));
    if agreeing.len() < usize::from(terms.quorum) {
        return Err(below(agreeing.len()));
    }
    agreeing.sort_by_key(|r| r.worker.0);
    // The contract wants the task's result among its signers' hashes: the verified one when a
    // signer of it is eligible, else (tolerance only) the first signer's.
    let output_hash =
        if agreeing.iter().any(|r| r.output_hash == *verified) { *verified } else { agreeing[0].output_hash };
    Ok(SettleTask {
        index,
        output_hash,
        output_len,
        signatures: agreeing
            .iter()
            .map(|r| Signer {
                worker: r.worker,
                signature: r.signature,
                output_hash: (r.output_hash != output_hash).then_some(r.output_hash),
            })
            .collect(),
    })
}

/// A settlement entry without the signers `keep` refuses (unbonded or slashed since the entry
/// was made), or `None` if fewer than `quorum` remain: one refused signer costs only its own
/// pay, not its co-signers'. The task's result stays a hash one of the remaining signers signed.
pub fn without_signers(entry: &SettleTask, keep: impl Fn(&PublicKey) -> bool, quorum: u8) -> Option<SettleTask> {
    let signers: Vec<Signer> = entry.signatures.iter().filter(|s| keep(&s.worker)).cloned().collect();
    if signers.len() < usize::from(quorum.max(1)) {
        return None;
    }
    let hash_of = |s: &Signer| s.output_hash.unwrap_or(entry.output_hash);
    let output_hash =
        if signers.iter().any(|s| s.output_hash.is_none()) { entry.output_hash } else { hash_of(&signers[0]) };
    let signatures = signers
        .iter()
        .map(|s| Signer { output_hash: (hash_of(s) != output_hash).then_some(hash_of(s)), ..s.clone() })
        .collect();
    Some(SettleTask { index: entry.index, output_hash, output_len: entry.output_len, signatures })
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
        let rejected = hash != 1 || len != 8;
        SignedReplica {
            worker: key(worker),
            output_hash: Hash32([hash; 32]),
            output_len: len,
            signature: Signature([worker; 64]),
            accepted: !rejected,
            rejected,
        }
    }

    /// Each key its own owner.
    fn owners<'a>(keys: impl IntoIterator<Item = &'a u8>) -> HashMap<PublicKey, PublicKey> {
        keys.into_iter().map(|&n| (key(n), key(100 + n))).collect()
    }

    fn exact(quorum: u8, max_signers: u8) -> SettleTerms {
        SettleTerms { quorum, max_signers, exact: true }
    }

    /// (case, replicas, eligible keys, quorum, max signers, expected signers or `Err(eligible)`).
    type Case = (&'static str, Vec<SignedReplica>, HashMap<PublicKey, PublicKey>, u8, u8, Result<Vec<u8>, usize>);

    #[test]
    fn settle_entries() {
        let h = Hash32([1; 32]);
        let all = owners(&[1, 2, 3, 4, 5]);
        let mut shared = all.clone();
        shared.insert(key(2), key(101)); // key 2 belongs to key 1's owner
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
                owners(&[1, 3]),
                2,
                3,
                Ok(vec![1, 3]),
            ),
            (
                "one owner's second key counts once",
                vec![replica(1, 1, 8), replica(2, 1, 8), replica(3, 1, 8)],
                shared.clone(),
                2,
                3,
                Ok(vec![1, 3]),
            ),
            ("one owner is no quorum", vec![replica(1, 1, 8), replica(2, 1, 8)], shared, 2, 3, Err(1)),
            (
                "below quorum once unbonded dropped",
                vec![replica(1, 1, 8), replica(2, 1, 8)],
                owners(&[1]),
                2,
                3,
                Err(1),
            ),
            ("nothing agrees", vec![replica(1, 9, 8)], all.clone(), 1, 3, Err(0)),
        ];
        for (case, replicas, eligible, quorum, max, want) in cases {
            let got = settle_entry(4, &h, &replicas, &eligible, exact(quorum, max));
            match (got, want) {
                (Ok(entry), Ok(signers)) => {
                    assert_eq!(entry.index, 4, "{case}");
                    assert_eq!(entry.output_len, 8, "{case}");
                    assert_eq!(entry.signatures.iter().map(|s| s.worker.0[0]).collect::<Vec<_>>(), signers, "{case}");
                    assert!(
                        entry.signatures.iter().all(|s| s.signature.0[0] == s.worker.0[0] && s.output_hash.is_none()),
                        "{case}: signatures stay with their keys, and exact jobs name no own hash"
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
    fn tolerance_pays_each_accepted_signer_for_its_own_hash() {
        let h = Hash32([1; 32]);
        let terms = SettleTerms { quorum: 2, max_signers: 3, exact: false };
        // Worker 2's floats differ by an ulp: accepted within tolerance. Worker 3 was rejected.
        let within = SignedReplica { accepted: true, rejected: false, ..replica(2, 5, 8) };
        let replicas = vec![replica(1, 1, 8), within, replica(3, 9, 8)];
        let entry = settle_entry(0, &h, &replicas, &owners(&[1, 2, 3]), terms).unwrap();
        let got: Vec<(u8, Option<u8>)> =
            entry.signatures.iter().map(|s| (s.worker.0[0], s.output_hash.map(|h| h.0[0]))).collect();
        assert_eq!(got, vec![(1, None), (2, Some(5))]);
        // The verified hash's signer is of the same owner as a within-tolerance one, or the
        // signers are capped: it is kept, and the task still settles on the hash the client got.
        let mut shared = owners(&[1, 2, 3]);
        shared.insert(key(1), key(102)); // key 1 belongs to key 2's owner
        let entry =
            settle_entry(0, &h, &replicas, &shared, SettleTerms { quorum: 1, max_signers: 1, exact: false }).unwrap();
        assert_eq!((entry.output_hash, entry.signatures[0].worker, entry.signatures[0].output_hash), (h, key(1), None));
        // Its signer no longer bonded: the task settles on the remaining signer's own hash.
        let entry = settle_entry(0, &h, &replicas, &owners(&[2, 3]), SettleTerms { quorum: 1, ..terms }).unwrap();
        assert_eq!((entry.output_hash, entry.signatures.len()), (Hash32([5; 32]), 1));
        assert_eq!(entry.signatures[0].output_hash, None, "it signed the task's hash itself");
        // The same replicas on an exact job: only the verified hash is paid, below quorum.
        assert_eq!(
            settle_entry(0, &h, &replicas, &owners(&[1, 2, 3]), SettleTerms { exact: true, ..terms }),
            Err(Unpayable::BelowQuorum { eligible: 1, quorum: 2 })
        );
    }

    #[test]
    fn a_refused_signer_costs_only_its_own_pay() {
        let (h, own) = (Hash32([1; 32]), Hash32([5; 32]));
        let signer =
            |n: u8, hash: Option<Hash32>| Signer { worker: key(n), signature: Signature([n; 64]), output_hash: hash };
        let entry = SettleTask {
            index: 3,
            output_hash: h,
            output_len: 8,
            signatures: vec![signer(1, None), signer(2, Some(own)), signer(3, None)],
        };
        // (case, refused signers, quorum, remaining signers with their own hashes, or None)
        type Want = Option<(Hash32, Vec<(u8, Option<Hash32>)>)>;
        let cases: Vec<(&str, Vec<u8>, u8, Want)> = vec![
            ("nobody refused", vec![], 2, Some((h, vec![(1, None), (2, Some(own)), (3, None)]))),
            ("one dropped, quorum kept", vec![3], 2, Some((h, vec![(1, None), (2, Some(own))]))),
            ("below quorum", vec![1, 3], 2, None),
            // Only the within-tolerance signer is left: the task settles on its own hash.
            ("verified signers gone", vec![1, 3], 1, Some((own, vec![(2, None)]))),
            ("everyone gone", vec![1, 2, 3], 1, None),
        ];
        for (case, refused, quorum, want) in cases {
            let got = without_signers(&entry, |k| !refused.contains(&k.0[0]), quorum).map(|e| {
                (e.output_hash, e.signatures.iter().map(|s| (s.worker.0[0], s.output_hash)).collect::<Vec<_>>())
            });
            assert_eq!(got, want, "{case}");
        }
    }

    fn spec(price: u64) -> JobSpec {
        JobSpec {
            label: String::new(),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            tasks: vec![
                TaskSpec { params: vec![], inputs: vec![], workgroups: [1, 1, 1], output_size: 8, kernel: 0 };
                3
            ],
            comparison: Default::default(),
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            price_per_replica: price,
            deadline_secs: 60,
            homogeneous: false,
            nonce: 0,
            adaptive: None,
            kernels: Vec::new(),
        }
    }

    #[test]
    fn paid_jobs_open_with_the_terms_their_client_signed() {
        use starling_protocol::sign::{Deployment, Keypair, deposit_bytes, verify};
        let client = Keypair::from_seed([3; 32]);
        let here = Deployment { chain_id: "c", contract: "k" };
        assert_eq!(open_job(JobId(1), &client.sign_job(spec(0))), Ok(None), "free jobs skip escrow");
        assert_eq!(open_job(JobId(1), &client.sign_job(spec(25))), Err(CannotOpen::NoDeposit));
        let signed = client.sign_paid_job(spec(25), here, "relay", 1_000);
        let open = open_job(JobId(1), &signed).unwrap().unwrap();
        let t = open.terms;
        assert_eq!(
            (t.tasks, t.replicas, t.quorum, t.price_per_replica, t.deadline_secs, t.not_after),
            (3, 4, 2, 25, 60 + 1 + starling_protocol::sign::SETTLE_GRACE_SECS, 1_000),
            "the deposit covers the extra replicas; the escrow deadline outlasts the relay's"
        );
        verify(&client.public(), &deposit_bytes(here, "relay", &client.public(), &t), &open.signature)
            .expect("the relay's terms are the ones the client signed");
        assert!(open.slashable());
        let mut tolerant = spec(25);
        tolerant.comparison = Comparison::Tolerance { rel: 1e-5, abs: 1e-6 };
        let open = open_job(JobId(1), &client.sign_paid_job(tolerant.clone(), here, "relay", 1_000)).unwrap().unwrap();
        assert!(!open.slashable());
        assert_eq!(settle_terms(&tolerant), Some(SettleTerms { quorum: 2, max_signers: 4, exact: false }));
        assert_eq!(settle_terms(&spec(0)), None);
    }
}
