//! End-to-end flows on cw-multi-test with real ed25519 keys: the happy path, and every way a
//! settlement, a slash, a registration or a refund can be refused. Every refusal also checks
//! that no balance moved.

mod common;

use common::*;
use cosmwasm_std::{HexBinary, Uint128, coins};
use starling_escrow::ContractError;
use starling_escrow::msg::{
    ExecuteMsg, JobResponse, JobsResponse, QueryMsg, TaskResponse, TasksResponse, WorkerResponse, WorkersResponse,
};
use starling_escrow::state::{Account, JobStatus};
use starling_protocol::sha256;

const JOB: u64 = 7;
const PRICE: u128 = 100;
const FEE: u128 = PRICE * FEE_BPS as u128 / 10_000;

/// Four bonded workers and job 7: 3 tasks × 3 replicas, quorum 2, deadline in an hour.
fn with_job() -> Fixture {
    let mut f = Fixture::new(4);
    f.create_job(JOB, 3, 3, 2, PRICE, MAX_JOB).unwrap();
    f
}

fn pubkey_hex(f: &Fixture, worker: usize) -> String {
    f.workers[worker].pubkey().to_hex()
}

/// Runs a refused settlement and checks nothing moved and nothing was recorded.
#[track_caller]
fn assert_settle_refused(f: &mut Fixture, tasks: Vec<starling_escrow::msg::TaskResult>, expected: ContractError) {
    let settled =
        |f: &Fixture| -> TasksResponse { f.query(&QueryMsg::Tasks { job_id: JOB, start_after: None, limit: None }) };
    let (balances, tasks_before) = (f.balances(), settled(f));
    assert_refused(f.settle(JOB, tasks), expected);
    assert_eq!(f.balances(), balances, "a refused batch moved money");
    assert_eq!(settled(f), tasks_before, "a refused batch recorded a task");
}

#[test]
fn happy_path_pays_workers_and_relay_then_refunds_the_rest() {
    let mut f = with_job();
    let supply = f.total_supply();
    let deposit = f.deposit_for(3, 3, PRICE);
    assert_eq!(deposit, 3 * 3 * (PRICE + FEE));
    assert_eq!(f.balance(&f.client), START_BALANCE - deposit);
    let worker_start: Vec<u128> = f.workers.iter().map(|w| f.balance(&w.owner)).collect();
    let relay_start = f.balance(&f.relay);

    // Task 0 by three workers, task 1 by two; task 2 never settles.
    let batch = vec![f.signed(JOB, 0, &[0, 1, 2]), f.signed(JOB, 1, &[1, 3])];
    f.settle(JOB, batch).unwrap();

    let earned = [PRICE, 2 * PRICE, PRICE, PRICE];
    for (i, w) in f.workers.iter().enumerate() {
        assert_eq!(f.balance(&w.owner), worker_start[i] + earned[i], "worker {i}");
        let account: Account = f.query(&QueryMsg::Account { address: w.owner.to_string() });
        assert_eq!(account.earned_work, Uint128::new(earned[i]));
    }
    assert_eq!(f.balance(&f.relay), relay_start + 5 * FEE);

    let task: TaskResponse = f.query(&QueryMsg::Task { job_id: JOB, index: 0 });
    let settled = task.settled.expect("task 0 settled");
    assert_eq!(settled.output_hash, HexBinary::from(output_of(JOB, 0).0.as_slice()));
    assert_eq!(settled.output_len, OUTPUT_LEN);
    assert_eq!(settled.paid_workers, vec![f.workers[0].pubkey(), f.workers[1].pubkey(), f.workers[2].pubkey()]);
    let unsettled: TaskResponse = f.query(&QueryMsg::Task { job_id: JOB, index: 2 });
    assert!(unsettled.settled.is_none());
    let tasks: TasksResponse = f.query(&QueryMsg::Tasks { job_id: JOB, start_after: None, limit: None });
    assert_eq!(tasks.tasks.iter().map(|t| t.index).collect::<Vec<_>>(), vec![0, 1]);

    let job: JobResponse = f.query(&QueryMsg::Job { job_id: JOB });
    assert_eq!((job.settled_tasks, job.status), (2, JobStatus::Open));
    assert_eq!(job.paid_to_workers, Uint128::new(5 * PRICE));
    assert_eq!(job.paid_to_relay, Uint128::new(5 * FEE));
    assert_eq!(job.remaining, Uint128::new(deposit - 5 * (PRICE + FEE)));

    // After the deadline the client gets task 2's share and task 1's unused replica slot.
    f.advance(MAX_JOB);
    let client_before = f.balance(&f.client);
    f.execute(&f.reporter.clone(), &ExecuteMsg::Refund { job_id: JOB }, &[]).unwrap();
    let refund = deposit - 5 * (PRICE + FEE);
    assert_eq!(refund, 4 * (PRICE + FEE));
    assert_eq!(f.balance(&f.client), client_before + refund);
    assert_eq!(f.balance(&f.contract), 4 * MIN_BOND, "only the bonds stay");
    let job: JobResponse = f.query(&QueryMsg::Job { job_id: JOB });
    assert_eq!(
        (job.status, job.refunded, job.remaining),
        (JobStatus::Closed, Some(Uint128::new(refund)), Uint128::zero())
    );
    let client: Account = f.query(&QueryMsg::Account { address: f.client.to_string() });
    assert_eq!((client.deposited, client.refunded), (Uint128::new(deposit), Uint128::new(refund)));
    assert_eq!(f.total_supply(), supply);
}

#[test]
fn forged_signature_refuses_the_whole_batch_and_names_the_task() {
    let mut f = with_job();
    let good = f.signed(JOB, 0, &[0, 1]);
    let mut forged = f.signed(JOB, 1, &[2, 3]);
    let mut sig = forged.signatures[1].signature.to_vec();
    sig[10] ^= 1;
    forged.signatures[1].signature = HexBinary::from(sig);
    let expected = ContractError::InvalidSignature { job_id: JOB, index: 1, worker: pubkey_hex(&f, 3) };
    assert_settle_refused(&mut f, vec![good, forged], expected);
    let task0: TaskResponse = f.query(&QueryMsg::Task { job_id: JOB, index: 0 });
    assert!(task0.settled.is_none(), "the valid entry must not settle alone");
}

#[test]
fn signature_over_another_hash_or_job_does_not_count() {
    let mut f = with_job();
    // Worker 1 signed a different output than the one submitted.
    let mut task = f.signed(JOB, 0, &[0]);
    task.signatures.push(f.workers[1].sign(JOB, 0, &sha256(b"something else"), OUTPUT_LEN));
    let expected = ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 1) };
    assert_settle_refused(&mut f, vec![task], expected);

    // Signatures made for job 8 replayed into job 7.
    f.create_job(8, 3, 3, 2, PRICE, MAX_JOB).unwrap();
    let mut replayed = f.signed(8, 0, &[0, 1]);
    replayed.output_hash = HexBinary::from(output_of(8, 0).0.as_slice());
    let expected = ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 0) };
    assert_settle_refused(&mut f, vec![replayed], expected);
}

#[test]
fn replayed_batch_is_refused() {
    let mut f = with_job();
    let batch = vec![f.signed(JOB, 0, &[0, 1])];
    f.settle(JOB, batch.clone()).unwrap();
    assert_settle_refused(&mut f, batch, ContractError::TaskAlreadySettled { job_id: JOB, index: 0 });
    // A settled task cannot come back with other signers either.
    let other = f.signed(JOB, 0, &[2, 3]);
    assert_settle_refused(&mut f, vec![other], ContractError::TaskAlreadySettled { job_id: JOB, index: 0 });
}

#[test]
fn task_twice_in_one_batch_is_refused() {
    let mut f = with_job();
    let batch = vec![f.signed(JOB, 0, &[0, 1]), f.signed(JOB, 0, &[2, 3])];
    assert_settle_refused(&mut f, batch, ContractError::DuplicateTask { job_id: JOB, index: 0 });
}

#[test]
fn duplicated_signer_is_refused() {
    let mut f = with_job();
    let task = f.signed(JOB, 2, &[0, 1, 0]);
    let worker = pubkey_hex(&f, 0);
    assert_settle_refused(&mut f, vec![task], ContractError::DuplicateSigner { job_id: JOB, index: 2, worker });
    // Two copies of one signature cannot make a quorum of two.
    let task = f.signed(JOB, 2, &[1, 1]);
    let worker = pubkey_hex(&f, 1);
    assert_settle_refused(&mut f, vec![task], ContractError::DuplicateSigner { job_id: JOB, index: 2, worker });
}

#[test]
fn below_quorum_and_too_many_signers_are_refused() {
    let mut f = with_job();
    let task = f.signed(JOB, 0, &[0]);
    assert_settle_refused(
        &mut f,
        vec![task],
        ContractError::BelowQuorum { job_id: JOB, index: 0, signers: 1, quorum: 2 },
    );
    let task = f.signed(JOB, 0, &[]);
    assert_settle_refused(
        &mut f,
        vec![task],
        ContractError::BelowQuorum { job_id: JOB, index: 0, signers: 0, quorum: 2 },
    );
    // The deposit pays three replicas: a fourth signer has no money behind it.
    let task = f.signed(JOB, 0, &[0, 1, 2, 3]);
    assert_settle_refused(
        &mut f,
        vec![task],
        ContractError::TooManySigners { job_id: JOB, index: 0, signers: 4, replicas: 3 },
    );
}

#[test]
fn unregistered_and_unbonded_signers_do_not_count() {
    // Worker 3's account exists but its key was never registered.
    let mut f = Fixture::unregistered(4);
    for i in 0..3 {
        f.register(i, MIN_BOND).unwrap();
    }
    f.create_job(JOB, 3, 3, 2, PRICE, MAX_JOB).unwrap();
    let task = f.signed(JOB, 0, &[0, 3]);
    let worker = pubkey_hex(&f, 3);
    assert_settle_refused(&mut f, vec![task], ContractError::SignerNotRegistered { job_id: JOB, index: 0, worker });

    // Worker 1 starts unbonding: its signature stops counting at once.
    let owner = f.workers[1].owner.clone();
    f.execute(&owner, &ExecuteMsg::Unbond { pubkey: f.workers[1].pubkey(), amount: Uint128::new(1) }, &[]).unwrap();
    let task = f.signed(JOB, 0, &[0, 1]);
    let expected = ContractError::SignerNotBonded {
        job_id: JOB,
        index: 0,
        worker: pubkey_hex(&f, 1),
        bonded: Uint128::new(MIN_BOND - 1),
        min_bond: Uint128::new(MIN_BOND),
    };
    assert_settle_refused(&mut f, vec![task], expected);

    // Topping the bond back up makes it eligible again.
    f.execute(&owner, &ExecuteMsg::Bond { pubkey: f.workers[1].pubkey() }, &coins(1, DENOM)).unwrap();
    let task = f.signed(JOB, 0, &[0, 1]);
    f.settle(JOB, vec![task]).unwrap();
}

#[test]
fn late_settlement_is_refused() {
    let mut f = with_job();
    let job: JobResponse = f.query(&QueryMsg::Job { job_id: JOB });
    f.advance(job.deadline - f.now());
    let task = f.signed(JOB, 0, &[0, 1]);
    let expected = ContractError::DeadlinePassed { job_id: JOB, deadline: job.deadline, now: job.deadline };
    assert_settle_refused(&mut f, vec![task], expected);
}

#[test]
fn wrong_job_out_of_range_empty_and_foreign_sender_are_refused() {
    let mut f = with_job();
    let task = f.signed(99, 0, &[0, 1]);
    let relay = f.relay.clone();
    assert_refused(
        f.execute(&relay, &ExecuteMsg::SettleBatch { job_id: 99, tasks: vec![task] }, &[]),
        ContractError::JobNotFound { job_id: 99 },
    );

    let task = f.signed(JOB, 3, &[0, 1]);
    assert_settle_refused(&mut f, vec![task], ContractError::TaskOutOfRange { job_id: JOB, index: 3, tasks: 3 });
    assert_settle_refused(&mut f, vec![], ContractError::EmptyBatch { job_id: JOB });

    // Only the relay settles, even with valid signatures.
    let task = f.signed(JOB, 0, &[0, 1]);
    let client = f.client.clone();
    let result = f.execute(&client, &ExecuteMsg::SettleBatch { job_id: JOB, tasks: vec![task] }, &[]);
    assert_refused(result, ContractError::Unauthorized { expected: f.relay.to_string() });

    // A malformed hash is refused with its length.
    let mut task = f.signed(JOB, 0, &[0, 1]);
    task.output_hash = HexBinary::from(vec![0; 31]);
    assert_settle_refused(&mut f, vec![task], ContractError::BadLength { what: "output_hash", expected: 32, got: 31 });
}

#[test]
fn create_job_refuses_wrong_funds_and_bad_shapes() {
    let mut f = Fixture::new(2);
    let deposit = f.deposit_for(2, 3, PRICE);
    let msg = f.create_job_msg(JOB, 2, 3, 2, PRICE, MAX_JOB);
    let client = f.client.clone();
    for funds in [coins(deposit - 1, DENOM), coins(deposit + 1, DENOM), coins(deposit, OTHER_DENOM), vec![]] {
        let got = funds.first().map_or_else(|| "nothing".to_string(), ToString::to_string);
        let before = f.balances();
        let expected = ContractError::WrongFunds { expected: format!("{deposit}{DENOM}"), got };
        assert_refused(f.execute(&client, &msg, &funds), expected);
        assert_eq!(f.balances(), before);
    }
    f.execute(&client, &msg, &coins(deposit, DENOM)).unwrap();
    assert_refused(f.execute(&client, &msg, &coins(deposit, DENOM)), ContractError::JobExists { job_id: JOB });

    let now = f.now();
    let bad_shapes = [
        (f.create_job_msg(1, 0, 3, 2, PRICE, 100), "tasks"),
        (f.create_job_msg(2, 2, 0, 0, PRICE, 100), "replicas"),
        (f.create_job_msg(3, 2, 3, 0, PRICE, 100), "quorum"),
        (f.create_job_msg(4, 2, 3, 4, PRICE, 100), "quorum"),
        (f.create_job_msg(5, 2, 3, 2, 0, 100), "price_per_replica"),
        (f.create_job_msg(6, 2, 3, 2, PRICE, 0), "deadline"),
        (f.create_job_msg(7, 2, 3, 2, PRICE, MAX_JOB + 1), "deadline"),
    ];
    for (msg, field) in bad_shapes {
        let err = f.execute(&client, &msg, &coins(deposit, DENOM)).unwrap_err();
        assert!(format!("{err:?}").contains(&format!("invalid parameter {field}")), "{field}: {err:?} (now {now})");
    }
}

#[test]
fn slash_takes_stake_of_a_contradicting_worker_once() {
    let mut f = with_job();
    let supply = f.total_supply();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    let wrong = sha256(b"wrong output");

    // Worker 2 signed a different result for the settled task; the reporter brings the evidence.
    let client_before = f.balance(&f.client);
    let reporter_before = f.balance(&f.reporter);
    let reporter = f.reporter.clone();
    f.execute(&reporter, &f.evidence(2, JOB, 0, &wrong), &[]).unwrap();
    let slashed = MIN_BOND * SLASH_BPS as u128 / 10_000;
    let to_reporter = slashed * REPORTER_BPS as u128 / 10_000;
    assert_eq!(f.balance(&f.reporter), reporter_before + to_reporter);
    assert_eq!(f.balance(&f.client), client_before + slashed - to_reporter);
    let worker: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.workers[2].pubkey() });
    assert_eq!(
        (worker.bonded, worker.slashed, worker.eligible),
        (Uint128::new(MIN_BOND - slashed), Uint128::new(slashed), false)
    );
    let rewards: Account = f.query(&QueryMsg::Account { address: f.reporter.to_string() });
    assert_eq!(rewards.slash_rewards, Uint128::new(to_reporter));

    // Once per (worker, task), whatever the evidence.
    let again = f.evidence(2, JOB, 0, &sha256(b"another wrong output"));
    assert_refused(
        f.execute(&reporter, &again, &[]),
        ContractError::AlreadySlashed { job_id: JOB, index: 0, worker: pubkey_hex(&f, 2) },
    );

    // Evidence that agrees, evidence for an unsettled task, and forged evidence are refused.
    let agreeing = f.evidence(3, JOB, 0, &output_of(JOB, 0));
    assert_refused(f.execute(&reporter, &agreeing, &[]), ContractError::EvidenceAgrees { job_id: JOB, index: 0 });
    let unsettled = f.evidence(3, JOB, 1, &wrong);
    assert_refused(f.execute(&reporter, &unsettled, &[]), ContractError::TaskNotSettled { job_id: JOB, index: 1 });
    let ExecuteMsg::Slash { job_id, index, worker_pubkey, output_hash, output_len, .. } = f.evidence(3, JOB, 0, &wrong)
    else {
        unreachable!()
    };
    let forged = ExecuteMsg::Slash {
        job_id,
        index,
        worker_pubkey,
        output_hash,
        output_len,
        signature: HexBinary::from(vec![7; 64]),
    };
    let before = f.balances();
    assert_refused(
        f.execute(&reporter, &forged, &[]),
        ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 3) },
    );
    assert_eq!(f.balances(), before);
    // A settling worker that also signed a contradiction is slashable too.
    f.execute(&reporter, &f.evidence(0, JOB, 0, &wrong), &[]).unwrap();
    assert_eq!(f.total_supply(), supply);
}

#[test]
fn tolerance_jobs_are_not_slashable() {
    // On a float-tolerance job honest GPUs sign different bytes: a dissenting signature there
    // proves nothing, so nobody can take a bond with it.
    let mut f = Fixture::new(4);
    let mut msg = f.create_job_msg(JOB, 2, 3, 2, PRICE, MAX_JOB);
    if let ExecuteMsg::CreateJob { slashable, .. } = &mut msg {
        *slashable = false;
    }
    let deposit = f.deposit_for(2, 3, PRICE);
    let client = f.client.clone();
    f.execute(&client, &msg, &coins(deposit, DENOM)).unwrap();
    let job: JobResponse = f.query(&QueryMsg::Job { job_id: JOB });
    assert!(!job.slashable);
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    let before = f.balances();
    let reporter = f.reporter.clone();
    let within_tolerance = f.evidence(2, JOB, 0, &sha256(b"last bits differ"));
    assert_refused(f.execute(&reporter, &within_tolerance, &[]), ContractError::NotSlashable { job_id: JOB });
    assert_eq!(f.balances(), before, "a refused slash moved money");
}

#[test]
fn unbonding_does_not_escape_a_slash() {
    let mut f = with_job();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    // Worker 2 knows it signed a wrong result and tries to leave with everything.
    let owner = f.workers[2].owner.clone();
    let pubkey = f.workers[2].pubkey();
    f.execute(&owner, &ExecuteMsg::Unbond { pubkey: pubkey.clone(), amount: Uint128::new(MIN_BOND) }, &[]).unwrap();
    f.advance(UNBONDING - 1);
    let worker: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: pubkey.clone() });
    let result = f.execute(&owner, &ExecuteMsg::Withdraw { pubkey: pubkey.clone() }, &[]);
    assert_refused(
        result,
        ContractError::StillUnbonding { worker: pubkey.to_hex(), release_at: worker.release_at, now: f.now() },
    );

    let reporter = f.reporter.clone();
    f.execute(&reporter, &f.evidence(2, JOB, 0, &sha256(b"wrong")), &[]).unwrap();
    f.advance(1);
    let before = f.balance(&owner);
    f.execute(&owner, &ExecuteMsg::Withdraw { pubkey: pubkey.clone() }, &[]).unwrap();
    let slashed = MIN_BOND * SLASH_BPS as u128 / 10_000;
    assert_eq!(f.balance(&owner), before + MIN_BOND - slashed);
    assert_refused(
        f.execute(&owner, &ExecuteMsg::Withdraw { pubkey: pubkey.clone() }, &[]),
        ContractError::NothingToWithdraw { worker: pubkey.to_hex() },
    );
}

#[test]
fn registration_needs_the_keys_own_proof_and_a_bond() {
    let mut f = Fixture::unregistered(3);
    let stranger = f.reporter.clone();
    // Someone else presents worker 0's valid proof from their own account: it does not cover them.
    let stolen = ExecuteMsg::RegisterWorker { pubkey: f.workers[0].pubkey(), proof: f.registration_proof(0) };
    let expected = ContractError::BadRegistrationProof { worker: pubkey_hex(&f, 0) };
    assert_refused(f.execute(&stranger, &stolen, &coins(MIN_BOND, DENOM)), expected);
    // Worker 1's proof does not register worker 0's key.
    let owner0 = f.workers[0].owner.clone();
    let mixed = ExecuteMsg::RegisterWorker { pubkey: f.workers[0].pubkey(), proof: f.registration_proof(1) };
    assert_refused(
        f.execute(&owner0, &mixed, &coins(MIN_BOND, DENOM)),
        ContractError::BadRegistrationProof { worker: pubkey_hex(&f, 0) },
    );
    assert_refused(
        f.register(0, MIN_BOND - 1),
        ContractError::InsufficientFunds { min: format!("{MIN_BOND}{DENOM}"), got: format!("{}{DENOM}", MIN_BOND - 1) },
    );
    f.register(0, MIN_BOND).unwrap();
    assert_refused(f.register(0, MIN_BOND), ContractError::WorkerExists { worker: pubkey_hex(&f, 0) });
    f.register(1, MIN_BOND * 3).unwrap();

    // Only the owner bonds, unbonds and withdraws.
    let pubkey = f.workers[1].pubkey();
    let owner1 = f.workers[1].owner.clone();
    let expected = ContractError::Unauthorized { expected: owner1.to_string() };
    assert_refused(
        f.execute(&stranger, &ExecuteMsg::Unbond { pubkey: pubkey.clone(), amount: Uint128::new(1) }, &[]),
        expected,
    );

    f.execute(&owner1, &ExecuteMsg::Unbond { pubkey: pubkey.clone(), amount: Uint128::new(MIN_BOND) }, &[]).unwrap();
    f.advance(UNBONDING);
    let before = f.balance(&owner1);
    f.execute(&owner1, &ExecuteMsg::Withdraw { pubkey: pubkey.clone() }, &[]).unwrap();
    assert_eq!(f.balance(&owner1), before + MIN_BOND);

    let workers: WorkersResponse = f.query(&QueryMsg::Workers { start_after: None, limit: Some(1) });
    assert_eq!(workers.workers.len(), 1);
    let rest: WorkersResponse =
        f.query(&QueryMsg::Workers { start_after: Some(workers.workers[0].pubkey.clone()), limit: None });
    assert_eq!(rest.workers.len(), 1);
    assert_ne!(rest.workers[0].pubkey, workers.workers[0].pubkey);
}

#[test]
fn refund_waits_for_the_deadline_and_happens_once() {
    let mut f = with_job();
    let reporter = f.reporter.clone();
    let deadline = f.now() + MAX_JOB;
    assert_refused(
        f.execute(&reporter, &ExecuteMsg::Refund { job_id: JOB }, &[]),
        ContractError::DeadlineNotReached { job_id: JOB, deadline, now: f.now() },
    );
    // Every task settled by all replicas: nothing to give back.
    let batch = (0..3).map(|i| f.signed(JOB, i, &[0, 1, 2])).collect();
    f.settle(JOB, batch).unwrap();
    f.advance(MAX_JOB);
    let client_before = f.balance(&f.client);
    f.execute(&reporter, &ExecuteMsg::Refund { job_id: JOB }, &[]).unwrap();
    assert_eq!(f.balance(&f.client), client_before);
    assert_refused(
        f.execute(&reporter, &ExecuteMsg::Refund { job_id: JOB }, &[]),
        ContractError::AlreadyRefunded { job_id: JOB },
    );
    assert_eq!(f.balance(&f.contract), 4 * MIN_BOND);

    f.create_job(8, 1, 1, 1, PRICE, 10).unwrap();
    let jobs: JobsResponse = f.query(&QueryMsg::Jobs { start_after: Some(JOB), limit: None });
    assert_eq!(jobs.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(), vec![8]);
}
