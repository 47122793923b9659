//! Property tests: random sequences of operations (register, bond, unbond, withdraw, create job,
//! settle with valid or broken quorums, slash, refund, advance time) run against the contract on
//! cw-multi-test and against a small reference model of the money rules. After every step:
//!
//! - the contract accepted exactly the operations the model accepts (so nothing is paid without
//!   a valid quorum of bonded signers, and no task is paid twice);
//! - every bank balance equals the model's (so a refund pays exactly `deposit − paid` and never
//!   touches money already paid out, and a slash moves exactly its formula);
//! - the total supply is unchanged, and the contract holds exactly the workers' stakes plus what
//!   is left of each job.

mod common;

use common::*;
use cosmwasm_std::{Addr, HexBinary, Uint128, coins};
use proptest::prelude::*;
use starling_escrow::msg::{ExecuteMsg, JobResponse, QueryMsg, TaskResponse, WorkerResponse};
use std::collections::{BTreeMap, BTreeSet};

/// Workers 0..REGISTRABLE may register; the last one never does (an outsider's key).
const WORKERS: usize = 6;
const REGISTRABLE: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Register {
        worker: usize,
        extra: u128,
    },
    Bond {
        worker: usize,
        amount: u128,
    },
    Unbond {
        worker: usize,
        amount: u128,
    },
    Withdraw {
        worker: usize,
    },
    CreateJob {
        tasks: u32,
        replicas: u8,
        quorum: u8,
        price: u128,
        duration: u64,
        reuse_id: bool,
    },
    /// A batch built from the model's state to be valid, then broken by `fault` if any.
    Settle {
        job: usize,
        by_relay: bool,
        tasks: usize,
        extra_signers: u8,
        rotate: usize,
        fault: Option<Fault>,
    },
    /// Evidence against `worker`, for a settled task when `settled_task` (else any task).
    Slash {
        pick: usize,
        index: u32,
        worker: usize,
        settled_task: bool,
    },
    Refund {
        job: usize,
    },
    /// The relay's early close (or someone else's attempt at one).
    Close {
        job: usize,
        by_relay: bool,
    },
    Advance {
        seconds: u64,
    },
}

/// Ways to break an otherwise valid batch (applied to its first task).
#[derive(Debug, Clone, Copy)]
enum Fault {
    Forge,
    DuplicateSigner,
    BelowQuorum,
    TooManySigners,
    Outsider,
    Replay,
    OutOfRange,
    DuplicateTask,
    UnknownJob,
}

fn fault() -> impl Strategy<Value = Option<Fault>> {
    prop_oneof![
        4 => Just(None),
        1 => prop::sample::select(vec![
            Fault::Forge,
            Fault::DuplicateSigner,
            Fault::BelowQuorum,
            Fault::TooManySigners,
            Fault::Outsider,
            Fault::Replay,
            Fault::OutOfRange,
            Fault::DuplicateTask,
            Fault::UnknownJob,
        ])
        .prop_map(Some),
    ]
}

/// One task of a batch as submitted.
#[derive(Debug, Clone)]
struct Entry {
    index: u32,
    signers: Vec<usize>,
    /// Flip a bit of the first signature.
    forge: bool,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..WORKERS, 0u128..500).prop_map(|(worker, extra)| Op::Register { worker: worker % REGISTRABLE, extra }),
        1 => (0..WORKERS, 1u128..500).prop_map(|(worker, amount)| Op::Bond { worker, amount }),
        1 => (0..WORKERS, 1u128..1_500).prop_map(|(worker, amount)| Op::Unbond { worker, amount }),
        1 => (0..WORKERS).prop_map(|worker| Op::Withdraw { worker }),
        2 => (1u32..4, 1u8..4, 1u8..4, 1u128..300, prop_oneof![(MAX_JOB / 2)..=MAX_JOB, 1..MAX_JOB + 300], prop::bool::weighted(0.1)).prop_map(
            |(tasks, replicas, quorum, price, duration, reuse_id)| Op::CreateJob { tasks, replicas, quorum, price, duration, reuse_id }
        ),
        5 => (0usize..6, prop::bool::weighted(0.95), 1usize..4, 0u8..3, 0..WORKERS, fault()).prop_map(
            |(job, by_relay, tasks, extra_signers, rotate, fault)| Op::Settle { job, by_relay, tasks, extra_signers, rotate, fault }
        ),
        2 => (0usize..16, 0u32..4, 0..WORKERS, prop::bool::weighted(0.8))
            .prop_map(|(pick, index, worker, settled_task)| Op::Slash { pick, index, worker, settled_task }),
        2 => (0usize..8).prop_map(|job| Op::Refund { job }),
        1 => (0usize..8, prop::bool::weighted(0.9)).prop_map(|(job, by_relay)| Op::Close { job, by_relay }),
        3 => prop_oneof![3 => 1u64..600, 1 => (UNBONDING / 2)..(UNBONDING + 600)].prop_map(|seconds| Op::Advance { seconds }),
    ]
}

#[derive(Debug, Clone, Default)]
struct ModelWorker {
    bonded: u128,
    unbonding: u128,
    release_at: u64,
}

impl ModelWorker {
    fn stake(&self) -> u128 {
        self.bonded + self.unbonding
    }
}

#[derive(Debug, Clone)]
struct ModelJob {
    id: u64,
    tasks: u32,
    replicas: u8,
    quorum: u8,
    price: u128,
    fee: u128,
    deadline: u64,
    deposit: u128,
    paid: u128,
    refunded: bool,
    /// Settled tasks and the workers paid for each.
    settled: BTreeMap<u32, Vec<usize>>,
    slashed: BTreeSet<(u32, usize)>,
}

impl ModelJob {
    fn remaining(&self) -> u128 {
        if self.refunded { 0 } else { self.deposit - self.paid }
    }
}

/// The money rules, written independently of the contract.
#[derive(Debug)]
struct Model {
    balances: BTreeMap<Addr, u128>,
    workers: Vec<Option<ModelWorker>>,
    jobs: Vec<ModelJob>,
    next_job_id: u64,
}

impl Model {
    fn new(f: &Fixture) -> Self {
        let balances = f.accounts().into_iter().map(|a| (a.clone(), f.balance(&a))).collect();
        Self { balances, workers: vec![None; WORKERS], jobs: Vec::new(), next_job_id: 1 }
    }

    fn transfer(&mut self, from: &Addr, to: &Addr, amount: u128) {
        *self.balances.get_mut(from).unwrap() -= amount;
        *self.balances.get_mut(to).unwrap() += amount;
    }
}

/// Runs `op` on both the contract and the model; returns whether the contract accepted it.
fn step(f: &mut Fixture, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let now = f.now();
    let contract = f.contract.clone();
    // The model's verdict: `Some(effects)` if it accepts, applied only when the contract agrees.
    let (accepted, expected_ok) = match op.clone() {
        Op::Register { worker, extra } => {
            let ok = m.workers[worker].is_none();
            let result = f.register(worker, MIN_BOND + extra);
            if ok && result.is_ok() {
                m.workers[worker] = Some(ModelWorker { bonded: MIN_BOND + extra, ..Default::default() });
                m.transfer(&f.workers[worker].owner.clone(), &contract, MIN_BOND + extra);
            }
            (result, ok)
        }
        Op::Bond { worker, amount } => {
            let ok = m.workers[worker].is_some();
            let owner = f.workers[worker].owner.clone();
            let result =
                f.execute(&owner, &ExecuteMsg::Bond { pubkey: f.workers[worker].pubkey() }, &coins(amount, DENOM));
            if ok && result.is_ok() {
                m.workers[worker].as_mut().unwrap().bonded += amount;
                m.transfer(&owner, &contract, amount);
            }
            (result, ok)
        }
        Op::Unbond { worker, amount } => {
            let ok = m.workers[worker].as_ref().is_some_and(|w| amount <= w.bonded);
            let owner = f.workers[worker].owner.clone();
            let msg = ExecuteMsg::Unbond { pubkey: f.workers[worker].pubkey(), amount: Uint128::new(amount) };
            let result = f.execute(&owner, &msg, &[]);
            if ok && result.is_ok() {
                let w = m.workers[worker].as_mut().unwrap();
                w.bonded -= amount;
                w.unbonding += amount;
                w.release_at = now + UNBONDING;
            }
            (result, ok)
        }
        Op::Withdraw { worker } => {
            // Mostly a worker that has something unbonding.
            let leaving: Vec<usize> =
                (0..WORKERS).filter(|&w| m.workers[w].as_ref().is_some_and(|w| w.unbonding > 0)).collect();
            let worker = if leaving.is_empty() || worker == 0 { worker } else { leaving[worker % leaving.len()] };
            let ok = m.workers[worker].as_ref().is_some_and(|w| w.unbonding > 0 && now >= w.release_at);
            let owner = f.workers[worker].owner.clone();
            let result = f.execute(&owner, &ExecuteMsg::Withdraw { pubkey: f.workers[worker].pubkey() }, &[]);
            if ok && result.is_ok() {
                let amount = std::mem::take(&mut m.workers[worker].as_mut().unwrap().unbonding);
                m.transfer(&contract, &owner, amount);
            }
            (result, ok)
        }
        Op::CreateJob { tasks, replicas, quorum, price, duration, reuse_id } => {
            let id = match m.jobs.last() {
                Some(job) if reuse_id => job.id,
                _ => m.next_job_id,
            };
            let ok = quorum <= replicas && duration <= MAX_JOB && !m.jobs.iter().any(|j| j.id == id);
            let result = f.create_job(id, tasks, replicas, quorum, price, duration);
            if ok && result.is_ok() {
                let fee = price * u128::from(FEE_BPS) / 10_000;
                let deposit = u128::from(tasks) * u128::from(replicas) * (price + fee);
                m.next_job_id += 1;
                m.jobs.push(ModelJob {
                    id,
                    tasks,
                    replicas,
                    quorum,
                    price,
                    fee,
                    deadline: now + duration,
                    deposit,
                    paid: 0,
                    refunded: false,
                    settled: BTreeMap::new(),
                    slashed: BTreeSet::new(),
                });
                m.transfer(&f.client.clone(), &contract, deposit);
            }
            (result, ok)
        }
        Op::Settle { job, by_relay, tasks, extra_signers, rotate, fault } => {
            // Count from the newest job: those are the ones still open.
            // Mostly a job that can still settle something; `job == 0` picks among all of them
            // (expired and fully settled ones included).
            let live: Vec<usize> = (0..m.jobs.len())
                .filter(|&i| now < m.jobs[i].deadline && m.jobs[i].settled.len() < m.jobs[i].tasks as usize)
                .collect();
            let slot = match fault {
                Some(Fault::UnknownJob) => usize::MAX,
                _ if job > 0 && !live.is_empty() => live[job % live.len()],
                _ => job % m.jobs.len().max(1),
            };
            let (job_id, model_job) = pick_job(m, slot);
            let entries = build_batch(m, model_job.as_ref(), tasks, extra_signers, rotate, fault);
            let mut batch = Vec::new();
            for e in &entries {
                let mut task = f.signed(job_id, e.index, &e.signers);
                if e.forge
                    && let Some(first) = task.signatures.first_mut()
                {
                    let mut sig = first.signature.to_vec();
                    sig[0] ^= 1;
                    first.signature = HexBinary::from(sig);
                }
                batch.push(task);
            }
            let ok = by_relay
                && model_job.as_ref().is_some_and(|j| {
                    let mut seen = BTreeSet::new();
                    now < j.deadline
                        && !j.refunded
                        && !entries.is_empty()
                        && entries.iter().all(|e| {
                            let distinct: BTreeSet<_> = e.signers.iter().collect();
                            e.index < j.tasks
                                && seen.insert(e.index)
                                && !j.settled.contains_key(&e.index)
                                && (usize::from(j.quorum)..=usize::from(j.replicas)).contains(&e.signers.len())
                                && distinct.len() == e.signers.len()
                                && (!e.forge || e.signers.is_empty())
                                && e.signers
                                    .iter()
                                    .all(|&w| m.workers[w].as_ref().is_some_and(|w| w.bonded >= MIN_BOND))
                        })
                });
            let sender = if by_relay { f.relay.clone() } else { f.client.clone() };
            let result = f.execute(&sender, &ExecuteMsg::SettleBatch { job_id, tasks: batch }, &[]);
            if ok && result.is_ok() {
                let slot = m.jobs.iter().position(|j| j.id == job_id).unwrap();
                for e in &entries {
                    let j = &mut m.jobs[slot];
                    let (price, fee) = (j.price, j.fee);
                    j.paid += (price + fee) * e.signers.len() as u128;
                    j.settled.insert(e.index, e.signers.clone());
                    for &w in &e.signers {
                        m.transfer(&contract, &f.workers[w].owner.clone(), price);
                    }
                    m.transfer(&contract, &f.relay.clone(), fee * e.signers.len() as u128);
                }
            }
            (result, ok)
        }
        Op::Slash { pick, index, worker, settled_task } => {
            let settled: Vec<(usize, u32)> =
                m.jobs.iter().enumerate().flat_map(|(j, job)| job.settled.keys().map(move |&i| (j, i))).collect();
            let (job, index) = match settled.len() {
                n if settled_task && n > 0 => settled[pick % n],
                _ => (pick, index),
            };
            let (job_id, model_job) = pick_job(m, job);
            let ok = model_job
                .as_ref()
                .is_some_and(|j| j.settled.contains_key(&index) && !j.slashed.contains(&(index, worker)))
                && m.workers[worker].as_ref().is_some_and(|w| w.stake() * u128::from(SLASH_BPS) / 10_000 > 0);
            let evidence = f.evidence(worker, job_id, index, &starling_protocol::sha256(b"a contradicting output"));
            let reporter = f.reporter.clone();
            let result = f.execute(&reporter, &evidence, &[]);
            if ok && result.is_ok() {
                let w = m.workers[worker].as_mut().unwrap();
                let slashed = w.stake() * u128::from(SLASH_BPS) / 10_000;
                let from_unbonding = slashed.min(w.unbonding);
                w.unbonding -= from_unbonding;
                w.bonded -= slashed - from_unbonding;
                let to_reporter = slashed * u128::from(REPORTER_BPS) / 10_000;
                m.jobs.iter_mut().find(|j| j.id == job_id).unwrap().slashed.insert((index, worker));
                m.transfer(&contract, &reporter, to_reporter);
                m.transfer(&contract, &f.client.clone(), slashed - to_reporter);
            }
            (result, ok)
        }
        Op::Refund { job } => {
            let (job_id, model_job) = pick_job(m, job);
            let ok = model_job.as_ref().is_some_and(|j| now >= j.deadline && !j.refunded);
            let reporter = f.reporter.clone();
            let result = f.execute(&reporter, &ExecuteMsg::Refund { job_id }, &[]);
            if ok && result.is_ok() {
                let j = m.jobs.iter_mut().find(|j| j.id == job_id).unwrap();
                let amount = j.remaining();
                j.refunded = true;
                m.transfer(&contract, &f.client.clone(), amount);
            }
            (result, ok)
        }
        Op::Close { job, by_relay } => {
            let (job_id, model_job) = pick_job(m, job);
            let ok = by_relay && model_job.as_ref().is_some_and(|j| !j.refunded);
            let sender = if by_relay { f.relay.clone() } else { f.reporter.clone() };
            let result = f.execute(&sender, &ExecuteMsg::Close { job_id }, &[]);
            if ok && result.is_ok() {
                let j = m.jobs.iter_mut().find(|j| j.id == job_id).unwrap();
                let amount = j.remaining();
                j.refunded = true;
                m.transfer(&contract, &f.client.clone(), amount);
            }
            (result, ok)
        }
        Op::Advance { seconds } => {
            f.advance(seconds);
            return Ok(());
        }
    };
    prop_assert_eq!(accepted.is_ok(), expected_ok, "{:?}: contract said {:?}", op, accepted.err());
    Ok(())
}

/// A batch for `job` that the model would accept (when enough workers are bonded), then broken
/// by `fault`. Its validity is judged afterwards by the same rules as any batch.
fn build_batch(
    m: &Model,
    job: Option<&ModelJob>,
    tasks: usize,
    extra_signers: u8,
    rotate: usize,
    fault: Option<Fault>,
) -> Vec<Entry> {
    let Some(job) = job else {
        return vec![Entry { index: 0, signers: vec![0, 1], forge: false }];
    };
    let mut eligible: Vec<usize> =
        (0..WORKERS).filter(|&w| m.workers[w].as_ref().is_some_and(|w| w.bonded >= MIN_BOND)).collect();
    let shift = rotate % eligible.len().max(1);
    eligible.rotate_left(shift);
    let count = usize::from(job.quorum.saturating_add(extra_signers).min(job.replicas));
    let signers: Vec<usize> = eligible.iter().copied().take(count).collect();
    let mut entries: Vec<Entry> = (0..job.tasks)
        .filter(|i| !job.settled.contains_key(i))
        .take(tasks)
        .map(|index| Entry { index, signers: signers.clone(), forge: false })
        .collect();
    if entries.is_empty() {
        entries.push(Entry { index: 0, signers: signers.clone(), forge: false });
    }
    let first = &mut entries[0];
    match fault {
        None => {}
        Some(Fault::Forge) => first.forge = true,
        // Two copies of one worker's signature in place of a second worker's.
        Some(Fault::DuplicateSigner) => match first.signers.len() {
            0 => {}
            1 => first.signers.push(first.signers[0]),
            n => first.signers[n - 1] = first.signers[0],
        },
        Some(Fault::BelowQuorum) => first.signers.truncate(usize::from(job.quorum) - 1),
        Some(Fault::TooManySigners) => {
            let more = (0..WORKERS)
                .filter(|w| !first.signers.contains(w))
                .take(usize::from(job.replicas) + 1 - first.signers.len());
            first.signers.extend(more.collect::<Vec<_>>());
        }
        Some(Fault::Outsider) => {
            first.signers.pop();
            first.signers.push(WORKERS - 1);
        }
        Some(Fault::Replay) => {
            if let Some(&settled) = job.settled.keys().next() {
                first.index = settled;
            }
        }
        Some(Fault::OutOfRange) => first.index = job.tasks,
        Some(Fault::UnknownJob) => unreachable!("an unknown job has no model entry"),
        Some(Fault::DuplicateTask) => {
            let copy = first.clone();
            entries.push(copy);
        }
    }
    entries
}

/// The job an op refers to: one of the model's jobs, or (past the end) an id that does not exist.
fn pick_job(m: &Model, pick: usize) -> (u64, Option<ModelJob>) {
    match m.jobs.get(pick) {
        Some(job) => (job.id, Some(job.clone())),
        None => (10_000 + (pick % 1_000) as u64, None),
    }
}

fn check_invariants(f: &Fixture, m: &Model, supply: u128) -> Result<(), TestCaseError> {
    for (addr, expected) in &m.balances {
        prop_assert_eq!(f.balance(addr), *expected, "balance of {}", addr);
    }
    prop_assert_eq!(f.total_supply(), supply, "total supply changed");
    let stakes: u128 = m.workers.iter().flatten().map(ModelWorker::stake).sum();
    let held: u128 = m.jobs.iter().map(ModelJob::remaining).sum();
    prop_assert_eq!(f.balance(&f.contract), stakes + held, "contract holds more or less than stakes + open deposits");
    for (i, w) in m.workers.iter().enumerate() {
        if let Some(w) = w {
            let on_chain: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.workers[i].pubkey() });
            prop_assert_eq!((on_chain.bonded.u128(), on_chain.unbonding.u128()), (w.bonded, w.unbonding));
        }
    }
    for j in &m.jobs {
        let on_chain: JobResponse = f.query(&QueryMsg::Job { job_id: j.id });
        prop_assert_eq!(on_chain.paid_to_workers.u128() + on_chain.paid_to_relay.u128(), j.paid);
        prop_assert_eq!(on_chain.remaining.u128(), j.remaining());
        for (index, signers) in &j.settled {
            let task: TaskResponse = f.query(&QueryMsg::Task { job_id: j.id, index: *index });
            let paid: Vec<HexBinary> = signers.iter().map(|&w| f.workers[w].pubkey()).collect();
            prop_assert_eq!(task.settled.map(|t| t.paid_workers), Some(paid));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 500, ..ProptestConfig::default() })]

    #[test]
    fn money_follows_the_rules(ops in prop::collection::vec(op(), 1..60)) {
        let mut f = Fixture::unregistered(WORKERS);
        let mut m = Model::new(&f);
        let supply = f.total_supply();
        // Start most runs with a bonded quorum and an open job so settlements have something to hit.
        for w in 0..3 {
            step(&mut f, &mut m, &Op::Register { worker: w, extra: 0 })?;
        }
        step(&mut f, &mut m, &Op::CreateJob { tasks: 3, replicas: 3, quorum: 2, price: 100, duration: MAX_JOB, reuse_id: false })?;
        for op in &ops {
            step(&mut f, &mut m, op)?;
            check_invariants(&f, &m, supply)?;
        }
    }
}
