//! Property tests: random sequences of operations, honest and adversarial (deposit, bond and
//! register, unbond, release, withdraw, each with forged, replayed or foreign authorizations;
//! open jobs with forged, expired or replayed deposits; settle with valid or broken quorums,
//! keys of one owner, v1 or foreign signatures, tolerance results with different hashes; slash
//! with valid or foreign evidence; refund, close, advance time) run against the contract on
//! cw-multi-test and against a small reference model of the money rules. After every step:
//!
//! - the contract accepted exactly the operations the model accepts (so nothing is paid without
//!   a valid quorum of bonded signers of distinct owners, no task is paid twice, and no account's
//!   money moves without its key's signature for this chain and contract at its current nonce);
//! - every chain balance, account balance and nonce, stake and job equals the model's;
//! - funds are conserved: the contract holds exactly Σ account balances + Σ stakes + Σ what jobs
//!   still hold, everything deposited = that + withdrawn + fees paid + burned, and the chain's
//!   supply shrank by exactly what was burned.

mod common;

use common::*;
use cosmwasm_std::{Addr, HexBinary, Uint128};
use proptest::prelude::*;
use starling_escrow::msg::{
    Authorization, ExecuteMsg, JobResponse, JobTerms, QueryMsg, RelayResponse, TaskResponse, TaskResult, WorkerResponse,
};
use starling_escrow::state::JobComparison;
use starling_protocol::sign::{AccountAction, Deployment, Keypair};
use starling_protocol::{Hash32, JobId, TaskId, sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Worker keys and their owners: workers 4 and 5 share owners with 0 and 1 (two keys, one
/// owner); worker 6 never registers (an outsider's key).
const OWNERS_OF: [usize; 7] = [0, 1, 2, 3, 0, 1, 3];
const WORKERS: usize = OWNERS_OF.len();
const REGISTRABLE: usize = WORKERS - 1;
const OWNERS: usize = 4;
/// Account index of the client (owners are 0..OWNERS).
const CLIENT: usize = OWNERS;

/// How an account action's authorization is broken, if it is.
#[derive(Debug, Clone, Copy)]
enum AuthFault {
    /// Signed by a key that is not the account's.
    WrongSigner,
    /// A nonce already used (or, on a fresh account, one not yet reached).
    StaleNonce,
    FutureNonce,
    OtherChain,
    OtherContract,
    /// Another owner's valid authorization for this worker (not theirs, or, for a new key, a
    /// registration proof that names someone else).
    WrongOwner,
    /// A new key without its registration proof.
    NoProof,
}

fn auth_fault() -> impl Strategy<Value = Option<AuthFault>> {
    prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(vec![
            AuthFault::WrongSigner,
            AuthFault::StaleNonce,
            AuthFault::FutureNonce,
            AuthFault::OtherChain,
            AuthFault::OtherContract,
            AuthFault::WrongOwner,
            AuthFault::NoProof,
        ])
        .prop_map(Some),
    ]
}

#[derive(Debug, Clone, Copy)]
enum JobFault {
    /// Sent by someone other than the relay.
    NotRelay,
    /// The deposit signed by a key that is not the client's.
    Forged,
    /// Signed for another relay.
    OtherRelay,
    /// Past the signature's `not_after`.
    Expired,
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        account: usize,
        amount: u128,
    },
    Bond {
        worker: usize,
        amount: u128,
        fault: Option<AuthFault>,
    },
    Unbond {
        worker: usize,
        amount: u128,
        fault: Option<AuthFault>,
    },
    Release {
        worker: usize,
    },
    Withdraw {
        account: usize,
        amount: u128,
        fault: Option<AuthFault>,
    },
    CreateJob {
        tasks: u32,
        replicas: u8,
        quorum: u8,
        price: u128,
        duration: u64,
        tolerance: bool,
        reuse_id: bool,
        reuse_spec: bool,
        fault: Option<JobFault>,
    },
    /// A batch built from the model's state to be valid, then broken by `fault` if any.
    Settle {
        job: usize,
        by_relay: bool,
        tasks: usize,
        extra_signers: u8,
        rotate: usize,
        /// Tolerance jobs: each signer signs its own hash.
        split: bool,
        fault: Option<Fault>,
    },
    /// Evidence against `worker`, for a settled task when `settled_task` (else any task).
    Slash {
        pick: usize,
        index: u32,
        worker: usize,
        settled_task: bool,
        foreign: Option<ForeignSignature>,
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
    /// Another relay registers (again), with `bond` attached and `fee_bps`.
    RelayJoin {
        bond: u128,
        fee_bps: u16,
    },
    /// It starts leaving: its bond unbonds.
    RelayLeave,
    /// Anyone asks for its unbonded bond to go back to it.
    RelayRelease,
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
    /// A second key of an owner already signing.
    SameOwner,
    /// The first signature made over other bytes than this deployment's v2 result bytes.
    Foreign(ForeignSignature),
}

/// A valid signature by the right key, over the wrong bytes.
#[derive(Debug, Clone, Copy)]
enum ForeignSignature {
    V1,
    OtherChain,
    OtherContract,
    OtherSpec,
}

fn foreign() -> impl Strategy<Value = ForeignSignature> {
    prop::sample::select(vec![
        ForeignSignature::V1,
        ForeignSignature::OtherChain,
        ForeignSignature::OtherContract,
        ForeignSignature::OtherSpec,
    ])
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
            Fault::SameOwner,
        ])
        .prop_map(Some),
        1 => foreign().prop_map(|f| Some(Fault::Foreign(f))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..=OWNERS, prop_oneof![1u128..2_000, 2_000u128..20_000]).prop_map(|(account, amount)| Op::Deposit { account, amount }),
        2 => (0..REGISTRABLE, prop_oneof![1u128..500, MIN_BOND..MIN_BOND + 500], auth_fault())
            .prop_map(|(worker, amount, fault)| Op::Bond { worker, amount, fault }),
        1 => (0..WORKERS, 1u128..1_500, auth_fault()).prop_map(|(worker, amount, fault)| Op::Unbond { worker, amount, fault }),
        1 => (0..WORKERS).prop_map(|worker| Op::Release { worker }),
        1 => (0..=OWNERS, 1u128..3_000, auth_fault()).prop_map(|(account, amount, fault)| Op::Withdraw { account, amount, fault }),
        2 => (
            (1u32..4, 1u8..4, 1u8..4, 1u128..300),
            prop_oneof![(MAX_JOB / 2)..=MAX_JOB, 1..MAX_JOB + 300],
            prop::bool::weighted(0.4),
            (prop::bool::weighted(0.1), prop::bool::weighted(0.1)),
            prop_oneof![
                6 => Just(None),
                1 => prop::sample::select(vec![JobFault::NotRelay, JobFault::Forged, JobFault::OtherRelay, JobFault::Expired]).prop_map(Some),
            ],
        )
            .prop_map(|((tasks, replicas, quorum, price), duration, tolerance, (reuse_id, reuse_spec), fault)| Op::CreateJob {
                tasks, replicas, quorum, price, duration, tolerance, reuse_id, reuse_spec, fault
            }),
        5 => (0usize..6, prop::bool::weighted(0.95), 1usize..4, 0u8..3, 0..WORKERS, prop::bool::ANY, fault()).prop_map(
            |(job, by_relay, tasks, extra_signers, rotate, split, fault)| Op::Settle { job, by_relay, tasks, extra_signers, rotate, split, fault }
        ),
        2 => (0usize..16, 0u32..4, 0..WORKERS, prop::bool::weighted(0.8), prop::option::weighted(0.2, foreign()))
            .prop_map(|(pick, index, worker, settled_task, foreign)| Op::Slash { pick, index, worker, settled_task, foreign }),
        2 => (0usize..8).prop_map(|job| Op::Refund { job }),
        1 => (0usize..8, prop::bool::weighted(0.9)).prop_map(|(job, by_relay)| Op::Close { job, by_relay }),
        3 => prop_oneof![3 => 1u64..600, 1 => (UNBONDING / 2)..(UNBONDING + 600)].prop_map(|seconds| Op::Advance { seconds }),
        1 => (prop_oneof![Just(0u128), 1..MIN_RELAY_BOND, MIN_RELAY_BOND..MIN_RELAY_BOND + 500], 0u16..400)
            .prop_map(|(bond, fee_bps)| Op::RelayJoin { bond, fee_bps }),
        1 => Just(Op::RelayLeave),
        1 => Just(Op::RelayRelease),
    ]
}

/// The second relay's entry in the model.
#[derive(Debug, Clone, Default)]
struct ModelRelay {
    fee_bps: u16,
    bond: u128,
    unbonding: u128,
    release_at: u64,
    leaving: bool,
}

#[derive(Debug, Clone, Default)]
struct ModelAccount {
    balance: u128,
    nonce: u64,
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
    digest: Hash32,
    tasks: u32,
    replicas: u8,
    quorum: u8,
    price: u128,
    fee: u128,
    tolerance: bool,
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
    /// Chain balances of every wallet and the contract.
    chain: BTreeMap<Addr, u128>,
    accounts: Vec<ModelAccount>,
    workers: Vec<Option<ModelWorker>>,
    jobs: Vec<ModelJob>,
    next_job_id: u64,
    next_spec: u64,
    deposited: u128,
    withdrawn: u128,
    fees: u128,
    burned: u128,
    /// The second relay, once it registered.
    relay2: Option<ModelRelay>,
    relay_bonds_in: u128,
    relay_bonds_out: u128,
}

impl Model {
    fn new(f: &Fixture) -> Self {
        let chain = f.wallets_and_contract().into_iter().map(|a| (a.clone(), f.balance(&a))).collect();
        Self {
            chain,
            accounts: vec![ModelAccount::default(); OWNERS + 1],
            workers: vec![None; WORKERS],
            jobs: Vec::new(),
            next_job_id: 1,
            next_spec: 1,
            deposited: 0,
            withdrawn: 0,
            fees: 0,
            burned: 0,
            relay2: None,
            relay_bonds_in: 0,
            relay_bonds_out: 0,
        }
    }

    fn transfer(&mut self, from: &Addr, to: &Addr, amount: u128) {
        *self.chain.get_mut(from).unwrap() -= amount;
        *self.chain.get_mut(to).unwrap() += amount;
    }

    fn eligible(&self, worker: usize) -> bool {
        self.workers[worker].as_ref().is_some_and(|w| w.bonded >= MIN_BOND)
    }
}

fn account_key(f: &Fixture, account: usize) -> Keypair {
    if account == CLIENT { f.client_key() } else { f.owner_key(account) }
}

/// An authorization for `action` on `account`, broken by `fault` (those that concern the
/// signature itself; ownership and proof faults are applied by the caller).
fn authorization(
    f: &Fixture,
    m: &Model,
    account: usize,
    action: &AccountAction,
    fault: Option<AuthFault>,
) -> Authorization {
    let key = account_key(f, account);
    let nonce = m.accounts[account].nonce;
    let contract = f.contract.to_string();
    let stranger = Keypair::from_seed([200; 32]);
    let (signer, nonce, deployment) = match fault {
        Some(AuthFault::WrongSigner) => (&stranger, nonce, f.deployment()),
        Some(AuthFault::StaleNonce) => (&key, nonce.checked_sub(1).unwrap_or(nonce + 1), f.deployment()),
        Some(AuthFault::FutureNonce) => (&key, nonce + 1, f.deployment()),
        Some(AuthFault::OtherChain) => (&key, nonce, Deployment { chain_id: "another-chain", contract: &contract }),
        Some(AuthFault::OtherContract) => (&key, nonce, Deployment { chain_id: CHAIN_ID, contract: "cosmwasm1other" }),
        _ => (&key, nonce, f.deployment()),
    };
    Fixture::authorization_by(deployment, signer, &key, nonce, action)
}

/// Whether `fault` breaks the signature or nonce of an authorization.
fn breaks_signature(fault: Option<AuthFault>) -> bool {
    matches!(
        fault,
        Some(
            AuthFault::WrongSigner
                | AuthFault::StaleNonce
                | AuthFault::FutureNonce
                | AuthFault::OtherChain
                | AuthFault::OtherContract
        )
    )
}

/// Runs `op` on both the contract and the model; checks the contract accepted it exactly when the
/// model does.
fn step(f: &mut Fixture, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let now = f.now();
    let contract = f.contract.clone();
    let relay = f.relay.clone();
    let (accepted, expected_ok) = match op.clone() {
        Op::Deposit { account, amount } => {
            let key = account_key(f, account);
            let result = f.deposit(&key, amount);
            if result.is_ok() {
                m.accounts[account].balance += amount;
                m.deposited += amount;
                m.transfer(&f.payer.clone(), &contract, amount);
            }
            (result, true)
        }
        Op::Bond { worker, amount, fault } => {
            let owner = OWNERS_OF[worker];
            // WrongOwner: the next owner authorizes (validly) a bond into a key that is not theirs.
            let signer = if matches!(fault, Some(AuthFault::WrongOwner)) { (owner + 1) % OWNERS } else { owner };
            let key = f.workers[worker].key.public();
            let action = AccountAction::Bond { worker: key, amount };
            let authorization = authorization(f, m, signer, &action, fault);
            // The key's consent always names its real owner.
            let proof =
                (!matches!(fault, Some(AuthFault::NoProof))).then(|| f.registration_proof(worker, &f.owner_key(owner)));
            let msg = ExecuteMsg::Bond {
                authorization,
                worker: f.workers[worker].pubkey(),
                amount: Uint128::new(amount),
                proof,
            };
            let new = m.workers[worker].is_none();
            let ok = !breaks_signature(fault)
                && signer == owner
                && (!new || (amount >= MIN_BOND && !matches!(fault, Some(AuthFault::NoProof))))
                && m.accounts[signer].balance >= amount;
            let result = f.relay_executes(&msg);
            if ok && result.is_ok() {
                m.accounts[owner].balance -= amount;
                m.accounts[owner].nonce += 1;
                m.workers[worker].get_or_insert_with(ModelWorker::default).bonded += amount;
            }
            (result, ok)
        }
        Op::Unbond { worker, amount, fault } => {
            let owner = OWNERS_OF[worker];
            let signer = if matches!(fault, Some(AuthFault::WrongOwner)) { (owner + 1) % OWNERS } else { owner };
            let action = AccountAction::Unbond { worker: f.workers[worker].key.public(), amount };
            let authorization = authorization(f, m, signer, &action, fault);
            let msg =
                ExecuteMsg::Unbond { authorization, worker: f.workers[worker].pubkey(), amount: Uint128::new(amount) };
            let ok = !breaks_signature(fault)
                && signer == owner
                && m.workers[worker].as_ref().is_some_and(|w| amount <= w.bonded);
            let result = f.relay_executes(&msg);
            if ok && result.is_ok() {
                let w = m.workers[worker].as_mut().unwrap();
                if w.unbonding > 0 && now >= w.release_at {
                    m.accounts[owner].balance += std::mem::take(&mut w.unbonding);
                }
                w.bonded -= amount;
                w.unbonding += amount;
                w.release_at = now + UNBONDING;
                m.accounts[owner].nonce += 1;
            }
            (result, ok)
        }
        Op::Release { worker } => {
            // Mostly a worker that has something unbonding.
            let leaving: Vec<usize> =
                (0..WORKERS).filter(|&w| m.workers[w].as_ref().is_some_and(|w| w.unbonding > 0)).collect();
            let worker = if leaving.is_empty() || worker == 0 { worker } else { leaving[worker % leaving.len()] };
            let ok = m.workers[worker].as_ref().is_some_and(|w| w.unbonding > 0 && now >= w.release_at);
            let payer = f.payer.clone();
            let result = f.execute(&payer, &ExecuteMsg::Release { worker: f.workers[worker].pubkey() }, &[]);
            if ok && result.is_ok() {
                let amount = std::mem::take(&mut m.workers[worker].as_mut().unwrap().unbonding);
                m.accounts[OWNERS_OF[worker]].balance += amount;
            }
            (result, ok)
        }
        Op::Withdraw { account, amount, fault } => {
            let wallet = f.wallets[account].clone();
            let action = AccountAction::Withdraw { to: wallet.to_string(), amount };
            let authorization = authorization(f, m, account, &action, fault);
            let msg = ExecuteMsg::Withdraw { authorization, to: wallet.to_string(), amount: Uint128::new(amount) };
            let ok = !breaks_signature(fault) && m.accounts[account].balance >= amount;
            let result = f.relay_executes(&msg);
            if ok && result.is_ok() {
                m.accounts[account].balance -= amount;
                m.accounts[account].nonce += 1;
                m.withdrawn += amount;
                m.transfer(&contract, &wallet, amount);
            }
            (result, ok)
        }
        Op::CreateJob { tasks, replicas, quorum, price, duration, tolerance, reuse_id, reuse_spec, fault } => {
            let id = match m.jobs.last() {
                Some(job) if reuse_id => job.id,
                _ => m.next_job_id,
            };
            let digest = match m.jobs.last() {
                Some(job) if reuse_spec => job.digest,
                _ => sha256(format!("spec {}", m.next_spec).as_bytes()),
            };
            let terms = JobTerms {
                spec_digest: hex(&digest.0),
                tasks,
                replicas,
                quorum,
                price_per_replica: Uint128::new(price),
                comparison: if tolerance { JobComparison::Tolerance } else { JobComparison::Exact },
                deadline_secs: duration,
                not_after: if matches!(fault, Some(JobFault::Expired)) { now - 1 } else { now + 10 },
            };
            let client = f.client_key();
            let msg = match fault {
                Some(JobFault::Forged) => {
                    let mut msg = f.create_job_msg_by(&Keypair::from_seed([200; 32]), id, terms);
                    if let ExecuteMsg::CreateJob { client: c, .. } = &mut msg {
                        *c = key_hex(&client);
                    }
                    msg
                }
                Some(JobFault::OtherRelay) => {
                    let other = f.reporter.to_string();
                    let signature = client.sign_deposit(f.deployment(), &other, &terms.to_protocol().unwrap());
                    ExecuteMsg::CreateJob { job_id: id, client: key_hex(&client), terms, signature: hex(&signature.0) }
                }
                _ => f.create_job_msg_by(&client, id, terms),
            };
            let fee = price * u128::from(FEE_BPS) / 10_000;
            let deposit = u128::from(tasks) * u128::from(replicas) * (price + fee);
            let ok = fault.is_none()
                && quorum <= replicas
                && duration <= MAX_JOB
                && !m.jobs.iter().any(|j| j.id == id || j.digest == digest)
                && m.accounts[CLIENT].balance >= deposit;
            let sender = if matches!(fault, Some(JobFault::NotRelay)) { f.payer.clone() } else { relay.clone() };
            let result = f.execute(&sender, &msg, &[]);
            if ok && result.is_ok() {
                f.digests.insert(id, digest);
                m.next_job_id += 1;
                m.next_spec += 1;
                m.accounts[CLIENT].balance -= deposit;
                m.jobs.push(ModelJob {
                    id,
                    digest,
                    tasks,
                    replicas,
                    quorum,
                    price,
                    fee,
                    tolerance,
                    deadline: now + duration,
                    deposit,
                    paid: 0,
                    refunded: false,
                    settled: BTreeMap::new(),
                    slashed: BTreeSet::new(),
                });
            }
            (result, ok)
        }
        Op::Settle { job, by_relay, tasks, extra_signers, rotate, split, fault } => {
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
            let tolerance = model_job.as_ref().is_some_and(|j| j.tolerance);
            let batch: Vec<TaskResult> =
                entries.iter().map(|e| signed_entry(f, job_id, e, tolerance && split)).collect();
            let ok = by_relay
                && model_job.as_ref().is_some_and(|j| {
                    let mut seen = BTreeSet::new();
                    now < j.deadline
                        && !j.refunded
                        && !entries.is_empty()
                        && entries.iter().all(|e| {
                            let keys: BTreeSet<_> = e.signers.iter().collect();
                            let owners: BTreeSet<_> = e.signers.iter().map(|&w| OWNERS_OF[w]).collect();
                            e.index < j.tasks
                                && seen.insert(e.index)
                                && !j.settled.contains_key(&e.index)
                                && (usize::from(j.quorum)..=usize::from(j.replicas)).contains(&e.signers.len())
                                && keys.len() == e.signers.len()
                                && owners.len() == e.signers.len()
                                && ((!e.forge && e.foreign.is_none()) || e.signers.is_empty())
                                && e.signers.iter().all(|&w| m.eligible(w))
                        })
                });
            let sender = if by_relay { relay.clone() } else { f.payer.clone() };
            let result = f.execute(&sender, &ExecuteMsg::SettleBatch { job_id, tasks: batch }, &[]);
            if ok && result.is_ok() {
                let slot = m.jobs.iter().position(|j| j.id == job_id).unwrap();
                for e in &entries {
                    let j = &mut m.jobs[slot];
                    let (price, fee) = (j.price, j.fee);
                    let n = e.signers.len() as u128;
                    j.paid += (price + fee) * n;
                    j.settled.insert(e.index, e.signers.clone());
                    for &w in &e.signers {
                        m.accounts[OWNERS_OF[w]].balance += price;
                    }
                    m.fees += fee * n;
                    m.transfer(&contract, &relay, fee * n);
                }
            }
            (result, ok)
        }
        Op::Slash { pick, index, worker, settled_task, foreign } => {
            let settled: Vec<(usize, u32)> =
                m.jobs.iter().enumerate().flat_map(|(j, job)| job.settled.keys().map(move |&i| (j, i))).collect();
            let (job, index) = match settled.len() {
                n if settled_task && n > 0 => settled[pick % n],
                _ => (pick, index),
            };
            let (job_id, model_job) = pick_job(m, job);
            let wrong = sha256(b"a contradicting output");
            let signature = sign_result(f, worker, job_id, index, &wrong, foreign);
            let evidence = f.evidence_with(worker, job_id, index, &wrong, signature);
            let ok = foreign.is_none()
                && model_job.as_ref().is_some_and(|j| {
                    !j.tolerance && j.settled.contains_key(&index) && !j.slashed.contains(&(index, worker))
                })
                && m.workers[worker].as_ref().is_some_and(|w| w.stake() * u128::from(SLASH_BPS) / 10_000 > 0);
            let reporter = f.reporter.clone();
            let result = f.execute(&reporter, &evidence, &[]);
            if ok && result.is_ok() {
                let w = m.workers[worker].as_mut().unwrap();
                let slashed = w.stake() * u128::from(SLASH_BPS) / 10_000;
                let from_unbonding = slashed.min(w.unbonding);
                w.unbonding -= from_unbonding;
                w.bonded -= slashed - from_unbonding;
                m.jobs.iter_mut().find(|j| j.id == job_id).unwrap().slashed.insert((index, worker));
                m.burned += slashed;
                *m.chain.get_mut(&contract).unwrap() -= slashed;
            }
            (result, ok)
        }
        Op::Refund { job } => {
            let (job_id, model_job) = pick_job(m, job);
            let ok = model_job.as_ref().is_some_and(|j| now >= j.deadline && !j.refunded);
            let reporter = f.reporter.clone();
            let msg = f.refund_msg(job_id);
            let result = f.execute(&reporter, &msg, &[]);
            if ok && result.is_ok() {
                let j = m.jobs.iter_mut().find(|j| j.id == job_id).unwrap();
                let amount = j.remaining();
                j.refunded = true;
                m.accounts[CLIENT].balance += amount;
            }
            (result, ok)
        }
        Op::Close { job, by_relay } => {
            let (job_id, model_job) = pick_job(m, job);
            let ok = by_relay && model_job.as_ref().is_some_and(|j| !j.refunded);
            let sender = if by_relay { relay.clone() } else { f.reporter.clone() };
            let result = f.execute(&sender, &ExecuteMsg::Close { job_id }, &[]);
            if ok && result.is_ok() {
                let j = m.jobs.iter_mut().find(|j| j.id == job_id).unwrap();
                let amount = j.remaining();
                j.refunded = true;
                m.accounts[CLIENT].balance += amount;
            }
            (result, ok)
        }
        Op::Advance { seconds } => {
            f.advance(seconds);
            return Ok(());
        }
        Op::RelayJoin { bond, fee_bps } => {
            let relay2 = f.relay2.clone();
            let joined = match &m.relay2 {
                Some(r) if !r.leaving => None,
                Some(r) if fee_bps > r.fee_bps => None,
                Some(r) => Some(ModelRelay { fee_bps, bond: r.bond + r.unbonding + bond, ..ModelRelay::default() }),
                None => Some(ModelRelay { fee_bps, bond, ..ModelRelay::default() }),
            }
            .filter(|r| r.bond >= MIN_RELAY_BOND);
            let funds = if bond == 0 { vec![] } else { cosmwasm_std::coins(bond, DENOM) };
            let msg = ExecuteMsg::RegisterRelay { endpoint: "https://two.example".into(), fee_bps };
            let result = f.execute(&relay2, &msg, &funds);
            if let (Some(joined), Ok(_)) = (joined.clone(), &result) {
                m.transfer(&relay2, &contract, bond);
                m.relay_bonds_in += bond;
                m.relay2 = Some(joined);
            }
            (result, joined.is_some())
        }
        Op::RelayLeave => {
            let relay2 = f.relay2.clone();
            let ok = m.relay2.as_ref().is_some_and(|r| !r.leaving);
            let result = f.execute(&relay2, &ExecuteMsg::LeaveRelay {}, &[]);
            if ok && result.is_ok() {
                let r = m.relay2.as_mut().unwrap();
                r.unbonding += std::mem::take(&mut r.bond);
                r.leaving = true;
                r.release_at = now + UNBONDING;
            }
            (result, ok)
        }
        Op::RelayRelease => {
            let relay2 = f.relay2.clone();
            let ok = m.relay2.as_ref().is_some_and(|r| r.leaving && r.unbonding > 0 && now >= r.release_at);
            let payer = f.payer.clone();
            let result = f.execute(&payer, &ExecuteMsg::ReleaseRelay { relay: relay2.to_string() }, &[]);
            if ok && result.is_ok() {
                let amount = std::mem::take(&mut m.relay2.as_mut().unwrap().unbonding);
                m.transfer(&contract, &relay2, amount);
                m.relay_bonds_out += amount;
            }
            (result, ok)
        }
    };
    prop_assert_eq!(accepted.is_ok(), expected_ok, "{:?}: contract said {:?}", op, accepted.err());
    Ok(())
}

/// `worker`'s signature over (`hash`, `OUTPUT_LEN`) for a task: this deployment's v2 bytes, or
/// the `foreign` bytes.
fn sign_result(
    f: &Fixture,
    worker: usize,
    job_id: u64,
    index: u32,
    hash: &Hash32,
    foreign: Option<ForeignSignature>,
) -> HexBinary {
    let key = &f.workers[worker].key;
    let task = TaskId { job: JobId(job_id), index };
    let digest = f.digest(job_id);
    let contract = f.contract.to_string();
    let signature = match foreign {
        None => key.sign_result_v2(f.deployment(), task, &digest, hash, OUTPUT_LEN),
        Some(ForeignSignature::V1) => key.sign_result(task, hash, OUTPUT_LEN),
        Some(ForeignSignature::OtherChain) => key.sign_result_v2(
            Deployment { chain_id: "another-chain", contract: &contract },
            task,
            &digest,
            hash,
            OUTPUT_LEN,
        ),
        Some(ForeignSignature::OtherContract) => key.sign_result_v2(
            Deployment { chain_id: CHAIN_ID, contract: "cosmwasm1other" },
            task,
            &digest,
            hash,
            OUTPUT_LEN,
        ),
        Some(ForeignSignature::OtherSpec) => {
            key.sign_result_v2(f.deployment(), task, &sha256(b"another spec"), hash, OUTPUT_LEN)
        }
    };
    hex(&signature.0)
}

/// One task of a batch as submitted.
#[derive(Debug, Clone)]
struct Entry {
    index: u32,
    signers: Vec<usize>,
    /// Flip a bit of the first signature.
    forge: bool,
    /// The first signature is over foreign bytes.
    foreign: Option<ForeignSignature>,
}

/// The submitted form of `e`: on an exact job (or an unsplit tolerance one) every signer signs the
/// task's hash; split, each signs its own and names it.
fn signed_entry(f: &Fixture, job_id: u64, e: &Entry, split: bool) -> TaskResult {
    let own_hash = |w: usize| {
        if split {
            sha256(format!("output {job_id}/{} by {w}", e.index).as_bytes())
        } else {
            output_of(job_id, e.index)
        }
    };
    let signatures = e
        .signers
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let hash = own_hash(w);
            let foreign = if i == 0 { e.foreign } else { None };
            let mut signature = sign_result(f, w, job_id, e.index, &hash, foreign).to_vec();
            if i == 0 && e.forge {
                signature[0] ^= 1;
            }
            starling_escrow::msg::WorkerSignature {
                worker_pubkey: f.workers[w].pubkey(),
                signature: HexBinary::from(signature),
                output_hash: split.then(|| hex(&hash.0)),
            }
        })
        .collect();
    let delivered = e.signers.first().map_or_else(|| output_of(job_id, e.index), |&w| own_hash(w));
    TaskResult { index: e.index, output_hash: hex(&delivered.0), output_len: OUTPUT_LEN, signatures }
}

/// A batch for `job` that the model would accept (when enough owners have bonded keys), then
/// broken by `fault`. Its validity is judged afterwards by the same rules as any batch.
fn build_batch(
    m: &Model,
    job: Option<&ModelJob>,
    tasks: usize,
    extra_signers: u8,
    rotate: usize,
    fault: Option<Fault>,
) -> Vec<Entry> {
    let plain = |index, signers| Entry { index, signers, forge: false, foreign: None };
    let Some(job) = job else {
        return vec![plain(0, vec![0, 1])];
    };
    let mut eligible: Vec<usize> = (0..WORKERS).filter(|&w| m.eligible(w)).collect();
    let shift = rotate % eligible.len().max(1);
    eligible.rotate_left(shift);
    // One key per owner.
    let mut owners = BTreeSet::new();
    eligible.retain(|&w| owners.insert(OWNERS_OF[w]));
    let count = usize::from(job.quorum.saturating_add(extra_signers).min(job.replicas));
    let signers: Vec<usize> = eligible.iter().copied().take(count).collect();
    let mut entries: Vec<Entry> = (0..job.tasks)
        .filter(|i| !job.settled.contains_key(i))
        .take(tasks)
        .map(|index| plain(index, signers.clone()))
        .collect();
    if entries.is_empty() {
        entries.push(plain(0, signers.clone()));
    }
    let first = &mut entries[0];
    match fault {
        None => {}
        Some(Fault::Forge) => first.forge = true,
        Some(Fault::Foreign(kind)) => first.foreign = Some(kind),
        // Two copies of one worker's signature in place of a second worker's.
        Some(Fault::DuplicateSigner) => match first.signers.len() {
            0 => {}
            1 => first.signers.push(first.signers[0]),
            n => first.signers[n - 1] = first.signers[0],
        },
        Some(Fault::SameOwner) => {
            let twin = (0..REGISTRABLE)
                .find(|&w| !first.signers.contains(&w) && first.signers.iter().any(|&s| OWNERS_OF[s] == OWNERS_OF[w]));
            if let Some(twin) = twin {
                match first.signers.len() {
                    0 | 1 => first.signers.push(twin),
                    n => first.signers[n - 1] = twin,
                }
            }
        }
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
    for (addr, expected) in &m.chain {
        prop_assert_eq!(f.balance(addr), *expected, "chain balance of {}", addr);
    }
    prop_assert_eq!(f.total_supply(), supply - m.burned, "supply changed by more or less than the burns");
    for (i, expected) in m.accounts.iter().enumerate() {
        let on_chain = f.account(&account_key(f, i));
        prop_assert_eq!((on_chain.balance.u128(), on_chain.nonce), (expected.balance, expected.nonce), "account {}", i);
    }
    for (i, w) in m.workers.iter().enumerate() {
        if let Some(w) = w {
            let on_chain: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.workers[i].pubkey() });
            prop_assert_eq!((on_chain.bonded.u128(), on_chain.unbonding.u128()), (w.bonded, w.unbonding));
            prop_assert_eq!(on_chain.owner, key_hex(&f.owner_key(OWNERS_OF[i])), "worker {} has another owner", i);
        }
    }
    let relay = f.relay.to_string();
    for j in &m.jobs {
        let on_chain: JobResponse = f.query(&QueryMsg::Job { relay: relay.clone(), job_id: j.id });
        prop_assert_eq!(on_chain.paid_to_workers.u128() + on_chain.paid_to_relay.u128(), j.paid);
        prop_assert_eq!(on_chain.remaining.u128(), j.remaining());
        for (index, signers) in &j.settled {
            let task: TaskResponse = f.query(&QueryMsg::Task { relay: relay.clone(), job_id: j.id, index: *index });
            let paid: Vec<HexBinary> = signers.iter().map(|&w| f.workers[w].pubkey()).collect();
            prop_assert_eq!(task.settled.map(|t| t.paid_workers), Some(paid));
        }
    }
    if let Some(r) = &m.relay2 {
        let on_chain: RelayResponse = f.query(&QueryMsg::Relay { address: f.relay2.to_string() });
        prop_assert_eq!(
            (on_chain.bond.u128(), on_chain.unbonding.u128(), on_chain.fee_bps, on_chain.leaving),
            (r.bond, r.unbonding, r.fee_bps, r.leaving)
        );
    }
    // Conservation.
    let balances: u128 = m.accounts.iter().map(|a| a.balance).sum();
    let stakes: u128 = m.workers.iter().flatten().map(ModelWorker::stake).sum();
    let held: u128 = m.jobs.iter().map(ModelJob::remaining).sum();
    let relay_bonds: u128 = m.relay2.iter().map(|r| r.bond + r.unbonding).sum();
    prop_assert_eq!(
        f.balance(&f.contract),
        balances + stakes + held + relay_bonds,
        "contract ≠ accounts + stakes + open deposits + relay bonds"
    );
    prop_assert_eq!(m.relay_bonds_in, relay_bonds + m.relay_bonds_out, "relay bonds not conserved");
    prop_assert_eq!(
        (f.totals().relay_bonds_in.u128(), f.totals().relay_bonds_out.u128()),
        (m.relay_bonds_in, m.relay_bonds_out)
    );
    let totals = f.totals();
    prop_assert_eq!(
        (totals.deposited.u128(), totals.withdrawn.u128(), totals.fees_paid.u128(), totals.burned.u128()),
        (m.deposited, m.withdrawn, m.fees, m.burned)
    );
    prop_assert_eq!(m.deposited, balances + stakes + held + m.withdrawn + m.fees + m.burned, "funds not conserved");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 500, ..ProptestConfig::default() })]

    #[test]
    fn money_follows_the_rules(ops in prop::collection::vec(op(), 1..60)) {
        let mut f = Fixture::with_owners(&OWNERS_OF);
        let mut m = Model::new(&f);
        let supply = f.total_supply();
        // Start with a bonded quorum (worker 4 is owner 0's second key) and an open job, so
        // settlements and their faults have something to hit.
        for w in [0, 1, 2, 4] {
            step(&mut f, &mut m, &Op::Deposit { account: OWNERS_OF[w], amount: MIN_BOND })?;
            step(&mut f, &mut m, &Op::Bond { worker: w, amount: MIN_BOND, fault: None })?;
        }
        step(&mut f, &mut m, &Op::Deposit { account: CLIENT, amount: 50_000 })?;
        step(&mut f, &mut m, &Op::CreateJob {
            tasks: 3, replicas: 3, quorum: 2, price: 100, duration: MAX_JOB, tolerance: false,
            reuse_id: false, reuse_spec: false, fault: None,
        })?;
        check_invariants(&f, &m, supply)?;
        for op in &ops {
            step(&mut f, &mut m, op)?;
            check_invariants(&f, &m, supply)?;
        }
    }
}
