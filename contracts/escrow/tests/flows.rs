//! End-to-end flows on cw-multi-test with real ed25519 keys: the happy path, and every way an
//! account action, a job opening, a settlement, a slash or a refund can be refused. Every refusal
//! also checks that no balance, account or nonce moved.

mod common;

use common::*;
use cosmwasm_std::{Addr, HexBinary, Uint128, coins};
use starling_escrow::ContractError;
use starling_escrow::msg::{
    ExecuteMsg, JobResponse, JobsResponse, QueryMsg, RelayResponse, RelaysResponse, SpecJobResponse, TaskResponse,
    TaskResult, TasksResponse, WorkerResponse, WorkersResponse,
};
use starling_escrow::state::{JobComparison, JobRef, JobStatus};
use starling_protocol::sign::{AccountAction, Deployment, Keypair};
use starling_protocol::{JobId, TaskId, sha256};

const JOB: u64 = 7;
const PRICE: u128 = 100;
const FEE: u128 = PRICE * FEE_BPS as u128 / 10_000;

/// Four bonded workers of distinct owners and job 7: 3 tasks × 3 replicas, quorum 2, exact,
/// deadline in an hour.
fn with_job() -> Fixture {
    let mut f = Fixture::new(4);
    f.create_job(JOB, 3, 3, 2, PRICE, MAX_JOB).unwrap();
    f
}

fn pubkey_hex(f: &Fixture, worker: usize) -> String {
    f.workers[worker].pubkey().to_hex()
}

fn task_query(f: &Fixture, job_id: u64, index: u32) -> TaskResponse {
    f.query(&QueryMsg::Task { relay: f.relay.to_string(), job_id, index })
}

fn job_query(f: &Fixture, job_id: u64) -> JobResponse {
    f.query(&QueryMsg::Job { relay: f.relay.to_string(), job_id })
}

/// Refusals that must leave everything as it was. Methods, so that the expected error can be built
/// from the fixture in the same call.
trait Refusals {
    /// Runs a refused message and checks nothing moved: chain balances, account balances, nonces.
    fn refused_unchanged(&mut self, sender: &Addr, msg: &ExecuteMsg, expected: ContractError);
    /// Runs a refused settlement of `JOB` and checks nothing moved and nothing was recorded.
    fn settle_refused(&mut self, tasks: Vec<TaskResult>, expected: ContractError);
}

impl Refusals for Fixture {
    #[track_caller]
    fn refused_unchanged(&mut self, sender: &Addr, msg: &ExecuteMsg, expected: ContractError) {
        let before = self.snapshot();
        let result = self.execute(sender, msg, &[]);
        assert_refused(result, expected);
        assert_eq!(self.snapshot(), before, "a refused message moved money or used a nonce");
    }

    #[track_caller]
    fn settle_refused(&mut self, tasks: Vec<TaskResult>, expected: ContractError) {
        let settled = |f: &Fixture| -> TasksResponse {
            f.query(&QueryMsg::Tasks { relay: f.relay.to_string(), job_id: JOB, start_after: None, limit: None })
        };
        let (before, tasks_before) = (self.snapshot(), settled(self));
        assert_refused(self.settle(JOB, tasks), expected);
        assert_eq!(self.snapshot(), before, "a refused batch moved money");
        assert_eq!(settled(self), tasks_before, "a refused batch recorded a task");
    }
}

/// The contract holds exactly its accounts, stakes and open deposits, and everything deposited is
/// there, withdrawn, paid as fees or burned. `others`: accounts beyond the client's and the owners'.
#[track_caller]
fn assert_conserved(f: &Fixture, others: &[&Keypair]) {
    let mut held: u128 = 0;
    held += f.account(&f.client_key()).balance.u128();
    for other in others {
        held += f.account(other).balance.u128();
    }
    for o in 0..f.owners.len() {
        held += f.account(&f.owner_key(o)).balance.u128();
    }
    for w in &f.workers {
        let found: Option<WorkerResponse> =
            f.app.wrap().query_wasm_smart(&f.contract, &QueryMsg::Worker { pubkey: w.pubkey() }).ok();
        if let Some(worker) = found {
            held += worker.bonded.u128() + worker.unbonding.u128();
        }
    }
    let jobs: JobsResponse =
        f.query(&QueryMsg::Jobs { relay: f.relay.to_string(), start_after: None, limit: Some(30) });
    held += jobs.jobs.iter().map(|j| j.remaining.u128()).sum::<u128>();
    assert_eq!(f.balance(&f.contract), held, "the contract holds more or less than it owes");
    let t = f.totals();
    assert_eq!(t.deposited.u128(), held + t.withdrawn.u128() + t.fees_paid.u128() + t.burned.u128());
}

#[test]
fn happy_path_pays_accounts_and_relay_refunds_the_rest_and_withdraws() {
    let mut f = with_job();
    let supply = f.total_supply();
    let client = f.client_key();
    let deposit = f.deposit_for(3, 3, PRICE);
    assert_eq!(deposit, 3 * 3 * (PRICE + FEE));
    assert_eq!(f.account(&client).balance.u128(), START_BALANCE / 10 - deposit);
    let relay_start = f.balance(&f.relay);

    // Task 0 by three workers, task 1 by two; task 2 never settles.
    let batch = vec![f.signed(JOB, 0, &[0, 1, 2]), f.signed(JOB, 1, &[1, 3])];
    f.settle(JOB, batch).unwrap();

    let earned = [PRICE, 2 * PRICE, PRICE, PRICE];
    for (i, amount) in earned.iter().enumerate() {
        let account = f.account(&f.owner_of(i));
        assert_eq!((account.balance.u128(), account.earned.u128()), (*amount, *amount), "owner of worker {i}");
    }
    assert_eq!(f.balance(&f.relay), relay_start + 5 * FEE);

    let settled = task_query(&f, JOB, 0).settled.expect("task 0 settled");
    assert_eq!(settled.output_hash, hex(&output_of(JOB, 0).0));
    assert_eq!(settled.output_len, OUTPUT_LEN);
    assert_eq!(settled.paid_workers, vec![f.workers[0].pubkey(), f.workers[1].pubkey(), f.workers[2].pubkey()]);
    assert!(task_query(&f, JOB, 2).settled.is_none());

    let job = job_query(&f, JOB);
    assert_eq!((job.settled_tasks, job.status), (2, JobStatus::Open));
    assert_eq!((job.paid_to_workers.u128(), job.paid_to_relay.u128()), (5 * PRICE, 5 * FEE));
    assert_eq!(job.client, key_hex(&client));
    assert_eq!(job.spec_digest, hex(&spec_of(JOB).0));

    // After the deadline anyone triggers the refund: task 2's share and task 1's unused replica
    // slot go back to the client's account.
    f.advance(MAX_JOB);
    let reporter = f.reporter.clone();
    let refund_msg = f.refund_msg(JOB);
    f.execute(&reporter, &refund_msg, &[]).unwrap();
    let refund = deposit - 5 * (PRICE + FEE);
    assert_eq!(refund, 4 * (PRICE + FEE));
    let account = f.account(&client);
    assert_eq!(account.balance.u128(), START_BALANCE / 10 - deposit + refund);
    assert_eq!((account.spent_on_jobs.u128(), account.refunded.u128()), (deposit, refund));
    let job = job_query(&f, JOB);
    assert_eq!(
        (job.status, job.refunded, job.remaining),
        (JobStatus::Closed, Some(Uint128::new(refund)), Uint128::zero())
    );

    // Worker 1's owner takes its pay out to its wallet.
    let owner = f.owner_of(1);
    let wallet = f.wallets[f.workers[1].owner].clone();
    let msg = f.withdraw_msg(&owner, &wallet, 2 * PRICE);
    f.relay_executes(&msg).unwrap();
    assert_eq!(f.balance(&wallet), 2 * PRICE);
    assert_eq!(f.account(&owner).balance, Uint128::zero());
    assert_eq!(f.total_supply(), supply, "nothing burned: money only moved");
    assert_conserved(&f, &[]);
}

#[test]
fn a_spend_without_the_owners_signature_is_refused_and_moves_nothing() {
    let mut f = Fixture::new(2);
    let victim = f.client_key();
    let thief = Keypair::from_seed([66; 32]);
    let relay = f.relay.clone();
    let thief_wallet = f.wallets[0].clone();

    // Withdraw from the victim's account, signed by the thief.
    let action = AccountAction::Withdraw { to: thief_wallet.to_string(), amount: 500 };
    let authorization = Fixture::authorization_by(f.deployment(), &thief, &victim, 0, &action);
    let msg = ExecuteMsg::Withdraw { authorization, to: thief_wallet.to_string(), amount: Uint128::new(500) };
    f.refused_unchanged(&relay, &msg, ContractError::BadAuthorization { account: key_hex(&victim).to_hex() });

    // The victim's real signature for 5, submitted as 500.
    let mut msg = f.withdraw_msg(&victim, &thief_wallet, 5);
    if let ExecuteMsg::Withdraw { amount, .. } = &mut msg {
        *amount = Uint128::new(500);
    }
    f.refused_unchanged(&relay, &msg, ContractError::BadAuthorization { account: key_hex(&victim).to_hex() });

    // Unbonding someone else's worker with one's own signature.
    let worker = f.workers[0].key.public();
    let action = AccountAction::Unbond { worker, amount: 1 };
    let authorization = Fixture::authorization_by(f.deployment(), &thief, &thief, 0, &action);
    let msg = ExecuteMsg::Unbond { authorization, worker: f.workers[0].pubkey(), amount: Uint128::new(1) };
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::NotOwner { worker: pubkey_hex(&f, 0), owner: key_hex(&f.owner_of(0)).to_hex() },
    );

    // Bonding one's own money into someone else's key (to take over its pay) is refused too.
    f.deposit(&thief, MIN_BOND).unwrap();
    let action = AccountAction::Bond { worker, amount: MIN_BOND };
    let authorization = f.authorization(&thief, &action);
    let msg =
        ExecuteMsg::Bond { authorization, worker: f.workers[0].pubkey(), amount: Uint128::new(MIN_BOND), proof: None };
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::NotOwner { worker: pubkey_hex(&f, 0), owner: key_hex(&f.owner_of(0)).to_hex() },
    );
    assert_conserved(&f, &[&thief]);
}

#[test]
fn registering_with_another_account_as_owner_is_refused() {
    // Issue 9's attack: a worker names a client's account as its owner, to bond with its money.
    let mut f = Fixture::new(2);
    let victim = f.client_key();
    let relay = f.relay.clone();
    // The attacker's worker key, not yet registered.
    let worker_key = Keypair::from_seed([3; 32]);

    // The worker key consents to the victim as owner, but the victim never signed the bond.
    let action = AccountAction::Bond { worker: worker_key.public(), amount: MIN_BOND };
    let proof = hex(&worker_key.sign_register_v2(f.deployment(), &victim.public()).0);
    let authorization = Fixture::authorization_by(f.deployment(), &worker_key, &victim, 0, &action);
    let msg = ExecuteMsg::Bond {
        authorization,
        worker: key_hex(&worker_key),
        amount: Uint128::new(MIN_BOND),
        proof: Some(proof),
    };
    f.refused_unchanged(&relay, &msg, ContractError::BadAuthorization { account: key_hex(&victim).to_hex() });

    // An owner's valid authorization does not put a key under it without the key's consent
    // naming that owner: here the key consented to someone else.
    let owner = f.owner_key(0);
    let action = AccountAction::Bond { worker: worker_key.public(), amount: MIN_BOND };
    f.deposit(&owner, MIN_BOND).unwrap();
    let authorization = f.authorization(&owner, &action);
    let proof = hex(&worker_key.sign_register_v2(f.deployment(), &victim.public()).0);
    let msg = ExecuteMsg::Bond {
        authorization,
        worker: key_hex(&worker_key),
        amount: Uint128::new(MIN_BOND),
        proof: Some(proof),
    };
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::BadRegistrationProof { worker: key_hex(&worker_key).to_hex(), owner: key_hex(&owner).to_hex() },
    );
    // Without any proof a new key cannot be registered at all.
    let mut no_proof = msg.clone();
    if let ExecuteMsg::Bond { proof, .. } = &mut no_proof {
        *proof = None;
    }
    f.refused_unchanged(
        &relay,
        &no_proof,
        ContractError::MissingRegistrationProof { worker: key_hex(&worker_key).to_hex() },
    );
    let found: Result<WorkerResponse, _> =
        f.app.wrap().query_wasm_smart(&f.contract, &QueryMsg::Worker { pubkey: key_hex(&worker_key) });
    assert!(found.is_err(), "the key was registered");
    assert_conserved(&f, &[]);
}

#[test]
fn a_replayed_authorization_is_refused() {
    let mut f = Fixture::unregistered(1);
    let owner = f.owner_key(0);
    f.deposit(&owner, 3 * MIN_BOND).unwrap();
    let msg = f.bond_msg(0, MIN_BOND);
    f.relay_executes(&msg).unwrap();
    let relay = f.relay.clone();
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::BadNonce { account: key_hex(&owner).to_hex(), expected: 1, got: 0 },
    );
    // A signature for a future nonce is refused too, until its turn comes.
    let action = AccountAction::Bond { worker: f.workers[0].key.public(), amount: 5 };
    let early = Fixture::authorization_by(f.deployment(), &owner, &owner, 2, &action);
    let msg =
        ExecuteMsg::Bond { authorization: early, worker: f.workers[0].pubkey(), amount: Uint128::new(5), proof: None };
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::BadNonce { account: key_hex(&owner).to_hex(), expected: 1, got: 2 },
    );
    assert_eq!(f.account(&owner).balance.u128(), 2 * MIN_BOND);
}

#[test]
fn an_authorization_for_another_chain_or_contract_is_refused() {
    let mut f = Fixture::new(1);
    let owner = f.owner_key(0);
    f.deposit(&owner, 500).unwrap();
    let wallet = f.wallets[0].clone();
    let action = AccountAction::Withdraw { to: wallet.to_string(), amount: 500 };
    let relay = f.relay.clone();
    let contract = f.contract.to_string();
    for deployment in [
        Deployment { chain_id: "another-chain", contract: &contract },
        Deployment { chain_id: CHAIN_ID, contract: "cosmwasm1anothercontract" },
    ] {
        let nonce = f.account(&owner).nonce;
        let authorization = Fixture::authorization_by(deployment, &owner, &owner, nonce, &action);
        let msg = ExecuteMsg::Withdraw { authorization, to: wallet.to_string(), amount: Uint128::new(500) };
        f.refused_unchanged(&relay, &msg, ContractError::BadAuthorization { account: key_hex(&owner).to_hex() });
    }
    // The same action for this deployment goes through.
    let msg = f.withdraw_msg(&owner, &wallet, 500);
    f.relay_executes(&msg).unwrap();
    assert_eq!(f.balance(&wallet), 500);
}

#[test]
fn deposits_credit_any_account_and_only_its_key_takes_them_out() {
    let mut f = Fixture::unregistered(1);
    let payer = f.payer.clone();
    let someone = Keypair::from_seed([77; 32]);
    let msg = ExecuteMsg::Deposit { account: key_hex(&someone) };
    assert_refused(
        f.execute(&payer, &msg, &coins(5, OTHER_DENOM)),
        ContractError::WrongFunds { expected: format!("a positive amount of {DENOM}"), got: format!("5{OTHER_DENOM}") },
    );
    f.execute(&payer, &msg, &coins(1_234, DENOM)).unwrap();
    assert_eq!(f.account(&someone).balance.u128(), 1_234);
    assert_eq!(f.balance(&f.contract), 1_234);
    // Not to the contract's own address: the coins would stay with no account holding them.
    let contract = f.contract.clone();
    let action = AccountAction::Withdraw { to: contract.to_string(), amount: 1 };
    let authorization = Fixture::authorization_by(f.deployment(), &someone, &someone, 0, &action);
    let msg = ExecuteMsg::Withdraw { authorization, to: contract.to_string(), amount: Uint128::new(1) };
    assert_refused(f.execute(&payer, &msg, &[]), ContractError::BadRecipient { address: contract.to_string() });
    assert_conserved(&f, &[&someone]);
}

#[test]
fn create_job_is_the_relays_and_takes_the_clients_signed_deposit_once() {
    let mut f = Fixture::new(2);
    let client = f.client_key();
    let terms = f.terms(JOB, 2, 3, 2, PRICE, MAX_JOB);
    let deposit = f.deposit_for(2, 3, PRICE);
    let msg = f.create_job_msg_by(&client, JOB, terms.clone());

    // Only a registered relay opens jobs, even with the client's signature.
    let payer = f.payer.clone();
    f.refused_unchanged(&payer, &msg, ContractError::NotRelay { relay: payer.to_string() });
    // A deposit signed by someone else for the client's account.
    let relay = f.relay.clone();
    let mut forged = f.create_job_msg_by(&Keypair::from_seed([66; 32]), JOB, terms.clone());
    if let ExecuteMsg::CreateJob { client: c, .. } = &mut forged {
        *c = key_hex(&client);
    }
    f.refused_unchanged(&relay, &forged, ContractError::BadDepositSignature { client: key_hex(&client).to_hex() });
    // Signed for another relay.
    let other_relay = f.app.api().addr_make("other-relay");
    let signature = client.sign_deposit(f.deployment(), other_relay.as_str(), &terms.to_protocol().unwrap());
    let elsewhere = ExecuteMsg::CreateJob {
        job_id: JOB,
        client: key_hex(&client),
        terms: terms.clone(),
        signature: hex(&signature.0),
    };
    f.refused_unchanged(&relay, &elsewhere, ContractError::BadDepositSignature { client: key_hex(&client).to_hex() });
    // Terms changed after signing: more replicas, a tolerance comparison.
    for change in [
        |t: &mut starling_escrow::msg::JobTerms| t.replicas = 2,
        |t: &mut starling_escrow::msg::JobTerms| t.comparison = JobComparison::Tolerance,
        |t: &mut starling_escrow::msg::JobTerms| t.deadline_secs -= 1,
    ] {
        let mut tampered = msg.clone();
        if let ExecuteMsg::CreateJob { terms, .. } = &mut tampered {
            change(terms);
        }
        f.refused_unchanged(
            &relay,
            &tampered,
            ContractError::BadDepositSignature { client: key_hex(&client).to_hex() },
        );
    }
    // Past its expiry.
    f.advance(61);
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::DepositExpired { not_after: terms.not_after, now: terms.not_after + 1 },
    );

    let terms = f.terms(JOB, 2, 3, 2, PRICE, MAX_JOB);
    let before = f.account(&client).balance.u128();
    f.create_job_with(JOB, terms.clone()).unwrap();
    assert_eq!(f.account(&client).balance.u128(), before - deposit);
    // The same signed deposit again, under the same or another id, opens nothing.
    let msg = f.create_job_msg_by(&client, JOB, terms.clone());
    f.refused_unchanged(&relay, &msg, ContractError::JobExists { job_id: JOB });
    let msg = f.create_job_msg_by(&client, JOB + 1, terms.clone());
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::SpecAlreadyOpened {
            client: key_hex(&client).to_hex(),
            spec_digest: terms.spec_digest.to_hex(),
            job_id: JOB,
        },
    );
    let found: SpecJobResponse =
        f.query(&QueryMsg::JobOfSpec { client: key_hex(&client), spec_digest: terms.spec_digest });
    assert_eq!(found.job, Some(JobRef { relay: f.relay.clone(), job_id: JOB }));

    // A client that cannot pay opens nothing.
    let poor = Keypair::from_seed([55; 32]);
    f.deposit(&poor, deposit - 1).unwrap();
    let msg = f.create_job_msg_by(&poor, JOB + 2, f.terms(JOB + 2, 2, 3, 2, PRICE, MAX_JOB));
    f.refused_unchanged(
        &relay,
        &msg,
        ContractError::InsufficientBalance {
            account: key_hex(&poor).to_hex(),
            balance: Uint128::new(deposit - 1),
            needed: Uint128::new(deposit),
        },
    );

    let now = f.now();
    let bad_shapes = [
        (f.terms(1, 0, 3, 2, PRICE, 100), "tasks"),
        (f.terms(2, 2, 0, 0, PRICE, 100), "replicas"),
        (f.terms(3, 2, 3, 0, PRICE, 100), "quorum"),
        (f.terms(4, 2, 3, 4, PRICE, 100), "quorum"),
        (f.terms(5, 2, 3, 2, 0, 100), "price_per_replica"),
        (f.terms(6, 2, 3, 2, PRICE, 0), "deadline_secs"),
        (f.terms(7, 2, 3, 2, PRICE, MAX_JOB + 1), "deadline_secs"),
    ];
    for (i, (terms, field)) in bad_shapes.into_iter().enumerate() {
        let msg = f.create_job_msg_by(&client, 100 + i as u64, terms);
        let err = f.relay_executes(&msg).unwrap_err();
        assert!(format!("{err:?}").contains(&format!("invalid parameter {field}")), "{field}: {err:?} (now {now})");
    }
    assert_conserved(&f, &[&poor]);
}

#[test]
fn job_ids_belong_to_the_relay_and_it_lists_only_its_own() {
    let mut f = Fixture::new(2);
    for id in [3, 1, 2] {
        f.create_job(id, 1, 2, 2, PRICE, MAX_JOB).unwrap();
    }
    let relay = f.relay.to_string();
    let ids = |r: JobsResponse| r.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>();
    let page: JobsResponse = f.query(&QueryMsg::Jobs { relay: relay.clone(), start_after: None, limit: Some(2) });
    assert_eq!(ids(page), vec![1, 2]);
    let rest: JobsResponse = f.query(&QueryMsg::Jobs { relay: relay.clone(), start_after: Some(2), limit: Some(2) });
    assert_eq!(ids(rest), vec![3]);
    let other = f.app.api().addr_make("other-relay").to_string();
    let none: JobsResponse = f.query(&QueryMsg::Jobs { relay: other.clone(), start_after: None, limit: None });
    assert!(none.jobs.is_empty());
    // An unregistered sender opens nothing; a registered one has ids of its own, so nobody can
    // take or collide with the relay's.
    let client = f.client_key();
    let msg = f.create_job_msg_by(&client, 4, f.terms(4, 1, 2, 2, PRICE, MAX_JOB));
    let payer = f.payer.clone();
    assert_refused(f.execute(&payer, &msg, &[]), ContractError::NotRelay { relay: payer.to_string() });
    let _ = relay;
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
    f.settle_refused(vec![good, forged], expected);
    assert!(task_query(&f, JOB, 0).settled.is_none(), "the valid entry must not settle alone");
}

#[test]
fn v1_and_other_deployment_signatures_do_not_settle() {
    let mut f = with_job();
    let hash = output_of(JOB, 0);
    let task = TaskId { job: JobId(JOB), index: 0 };
    let resign = |f: &Fixture, signature: starling_protocol::Signature| {
        let mut t = f.signed(JOB, 0, &[0, 1]);
        t.signatures[1].signature = hex(&signature.0);
        t
    };
    let worker = &f.workers[1].key;
    let contract = f.contract.to_string();
    let digest = f.digest(JOB);
    let bad = [
        // The v1 bytes the relay and workers use today.
        worker.sign_result(task, &hash, OUTPUT_LEN),
        // Another chain, another contract, another job's digest, another job id.
        worker.sign_result_v2(
            Deployment { chain_id: "another-chain", contract: &contract },
            task,
            &digest,
            &hash,
            OUTPUT_LEN,
        ),
        worker.sign_result_v2(
            Deployment { chain_id: CHAIN_ID, contract: "cosmwasm1other" },
            task,
            &digest,
            &hash,
            OUTPUT_LEN,
        ),
        worker.sign_result_v2(f.deployment(), task, &spec_of(JOB + 1), &hash, OUTPUT_LEN),
        worker.sign_result_v2(f.deployment(), TaskId { job: JobId(JOB + 1), index: 0 }, &digest, &hash, OUTPUT_LEN),
    ];
    for signature in bad {
        let t = resign(&f, signature);
        f.settle_refused(vec![t], ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 1) });
    }
    // A signature over another hash than the submitted one.
    let mut t = f.signed(JOB, 0, &[0]);
    t.signatures.push(f.sign(1, JOB, 0, &sha256(b"something else")));
    f.settle_refused(vec![t], ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 1) });
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
}

#[test]
fn v1_and_other_deployment_signatures_do_not_slash() {
    let mut f = with_job();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    let wrong = sha256(b"wrong output");
    let task = TaskId { job: JobId(JOB), index: 0 };
    let worker = &f.workers[2].key;
    let contract = f.contract.to_string();
    let digest = f.digest(JOB);
    let bad = [
        worker.sign_result(task, &wrong, OUTPUT_LEN),
        worker.sign_result_v2(
            Deployment { chain_id: "another-chain", contract: &contract },
            task,
            &digest,
            &wrong,
            OUTPUT_LEN,
        ),
        worker.sign_result_v2(
            Deployment { chain_id: CHAIN_ID, contract: "cosmwasm1other" },
            task,
            &digest,
            &wrong,
            OUTPUT_LEN,
        ),
        // Made for another job that had the same id somewhere (another spec).
        worker.sign_result_v2(f.deployment(), task, &spec_of(JOB + 1), &wrong, OUTPUT_LEN),
    ];
    let reporter = f.reporter.clone();
    for signature in bad {
        let msg = f.evidence_with(2, JOB, 0, &wrong, hex(&signature.0));
        f.refused_unchanged(
            &reporter,
            &msg,
            ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 2) },
        );
    }
    let worker: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.workers[2].pubkey() });
    assert_eq!((worker.bonded.u128(), worker.slashed.u128()), (MIN_BOND, 0));
}

#[test]
fn two_keys_of_one_owner_do_not_make_a_quorum_of_two() {
    // Workers 0 and 1 belong to owner 0; worker 2 to owner 1.
    let mut f = Fixture::with_owners(&[0, 0, 1]);
    for w in 0..3 {
        f.register(w, MIN_BOND).unwrap();
    }
    let client = f.client_key();
    f.deposit(&client, 100_000).unwrap();
    f.create_job(JOB, 2, 3, 2, PRICE, MAX_JOB).unwrap();
    let expected = ContractError::SameOwner {
        job_id: JOB,
        index: 0,
        worker: pubkey_hex(&f, 1),
        other: pubkey_hex(&f, 0),
        owner: key_hex(&f.owner_key(0)).to_hex(),
    };
    f.settle_refused(vec![f.signed(JOB, 0, &[0, 1])], expected);
    // Adding an independent owner's key does not launder the duplicate: drop it and it settles.
    let expected = ContractError::SameOwner {
        job_id: JOB,
        index: 0,
        worker: pubkey_hex(&f, 1),
        other: pubkey_hex(&f, 0),
        owner: key_hex(&f.owner_key(0)).to_hex(),
    };
    f.settle_refused(vec![f.signed(JOB, 0, &[0, 2, 1])], expected);
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 2])]).unwrap();
    assert_eq!(f.account(&f.owner_key(0)).earned.u128(), PRICE, "one owner, one share");
}

#[test]
fn a_tolerance_job_with_two_different_hashes_pays_both() {
    let mut f = Fixture::new(3);
    let mut terms = f.terms(JOB, 2, 2, 2, PRICE, MAX_JOB);
    terms.comparison = JobComparison::Tolerance;
    f.create_job_with(JOB, terms).unwrap();
    // Two GPUs, one ulp apart: each signs its own output.
    let (mine, theirs) = (sha256(b"floats from gpu a"), sha256(b"floats from gpu b"));
    let mut second = f.sign(1, JOB, 0, &theirs);
    second.output_hash = Some(hex(&theirs.0));
    let task = TaskResult {
        index: 0,
        output_hash: hex(&mine.0),
        output_len: OUTPUT_LEN,
        signatures: vec![f.sign(0, JOB, 0, &mine), second.clone()],
    };
    // Naming the other's hash as one's own does not verify.
    let mut lying = task.clone();
    lying.signatures[1].output_hash = Some(hex(&mine.0));
    f.settle_refused(vec![lying], ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 1) });
    // Below the quorum of distinct owners, tolerance or not.
    let mut alone = task.clone();
    alone.signatures.truncate(1);
    f.settle_refused(vec![alone], ContractError::BelowQuorum { job_id: JOB, index: 0, signers: 1, quorum: 2 });

    let relay_before = f.balance(&f.relay);
    f.settle(JOB, vec![task]).unwrap();
    for w in 0..2 {
        assert_eq!(f.account(&f.owner_of(w)).earned.u128(), PRICE, "worker {w}");
    }
    assert_eq!(f.balance(&f.relay), relay_before + 2 * FEE);
    let settled = task_query(&f, JOB, 0).settled.unwrap();
    assert_eq!(settled.signer_hashes, vec![hex(&mine.0), hex(&theirs.0)]);
    // Not slashable: worker 2's different hash proves nothing on a tolerance job.
    let reporter = f.reporter.clone();
    let msg = f.evidence(2, JOB, 0, &sha256(b"floats from gpu c"));
    f.refused_unchanged(&reporter, &msg, ContractError::NotSlashable { job_id: JOB });
    assert_conserved(&f, &[]);
}

#[test]
fn an_exact_job_refuses_per_signer_hashes() {
    let mut f = with_job();
    let mut task = f.signed(JOB, 0, &[0, 1]);
    task.signatures[1].output_hash = Some(task.output_hash.clone());
    f.settle_refused(
        vec![task],
        ContractError::SignerHashOnExactJob { job_id: JOB, index: 0, worker: pubkey_hex(&f, 1) },
    );
}

#[test]
fn settled_tasks_cannot_be_paid_twice() {
    let mut f = with_job();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    let batch = vec![f.signed(JOB, 0, &[0, 1])];
    f.settle_refused(batch, ContractError::TaskAlreadySettled { job_id: JOB, index: 0 });
    let other = f.signed(JOB, 0, &[2, 3]);
    f.settle_refused(vec![other], ContractError::TaskAlreadySettled { job_id: JOB, index: 0 });
    let batch = vec![f.signed(JOB, 1, &[0, 1]), f.signed(JOB, 1, &[2, 3])];
    f.settle_refused(batch, ContractError::DuplicateTask { job_id: JOB, index: 1 });
}

#[test]
fn duplicated_signer_below_quorum_and_too_many_signers_are_refused() {
    let mut f = with_job();
    let task = f.signed(JOB, 2, &[0, 1, 0]);
    let worker = pubkey_hex(&f, 0);
    f.settle_refused(vec![task], ContractError::DuplicateSigner { job_id: JOB, index: 2, worker });
    let task = f.signed(JOB, 0, &[0]);
    f.settle_refused(vec![task], ContractError::BelowQuorum { job_id: JOB, index: 0, signers: 1, quorum: 2 });
    // The deposit pays three replicas: a fourth signer has no money behind it.
    let task = f.signed(JOB, 0, &[0, 1, 2, 3]);
    f.settle_refused(vec![task], ContractError::TooManySigners { job_id: JOB, index: 0, signers: 4, replicas: 3 });
}

#[test]
fn unregistered_and_unbonded_signers_do_not_count() {
    let mut f = Fixture::unregistered(4);
    for i in 0..3 {
        f.register(i, MIN_BOND).unwrap();
    }
    let client = f.client_key();
    f.deposit(&client, 100_000).unwrap();
    f.create_job(JOB, 3, 3, 2, PRICE, MAX_JOB).unwrap();
    let task = f.signed(JOB, 0, &[0, 3]);
    let worker = pubkey_hex(&f, 3);
    f.settle_refused(vec![task], ContractError::SignerNotRegistered { job_id: JOB, index: 0, worker });

    // Worker 1 starts unbonding: its signature stops counting at once.
    let msg = f.unbond_msg(1, 1);
    f.relay_executes(&msg).unwrap();
    let task = f.signed(JOB, 0, &[0, 1]);
    let expected = ContractError::SignerNotBonded {
        job_id: JOB,
        index: 0,
        worker: pubkey_hex(&f, 1),
        bonded: Uint128::new(MIN_BOND - 1),
        min_bond: Uint128::new(MIN_BOND),
    };
    f.settle_refused(vec![task], expected);

    // Topping the bond back up (from the owner's account) makes it eligible again.
    let owner = f.owner_of(1);
    f.deposit(&owner, 1).unwrap();
    let msg = f.bond_msg(1, 1);
    f.relay_executes(&msg).unwrap();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
}

#[test]
fn late_settlement_wrong_job_out_of_range_empty_and_foreign_sender_are_refused() {
    let mut f = with_job();
    let job = job_query(&f, JOB);
    let task = f.signed(99, 0, &[0, 1]);
    assert_refused(f.settle(99, vec![task]), ContractError::JobNotFound { job_id: 99 });
    let task = f.signed(JOB, 3, &[0, 1]);
    f.settle_refused(vec![task], ContractError::TaskOutOfRange { job_id: JOB, index: 3, tasks: 3 });
    f.settle_refused(vec![], ContractError::EmptyBatch { job_id: JOB });
    // Only the job's relay settles, even with valid signatures: another sender has no such job.
    let task = f.signed(JOB, 0, &[0, 1]);
    let payer = f.payer.clone();
    let msg = ExecuteMsg::SettleBatch { job_id: JOB, tasks: vec![task] };
    f.refused_unchanged(&payer, &msg, ContractError::JobNotFound { job_id: JOB });
    let mut task = f.signed(JOB, 0, &[0, 1]);
    task.output_hash = HexBinary::from(vec![0; 31]);
    f.settle_refused(vec![task], ContractError::BadLength { what: "output_hash", expected: 32, got: 31 });

    f.advance(job.deadline - f.now());
    let task = f.signed(JOB, 0, &[0, 1]);
    let expected = ContractError::DeadlinePassed { job_id: JOB, deadline: job.deadline, now: job.deadline };
    f.settle_refused(vec![task], expected);
}

#[test]
fn slash_burns_the_stake_of_a_contradicting_worker_once_and_nobody_gains() {
    let mut f = with_job();
    let supply = f.total_supply();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    let wrong = sha256(b"wrong output");

    let client = f.client_key();
    let client_before = f.account(&client).balance;
    let (reporter_before, relay_before) = (f.balance(&f.reporter), f.balance(&f.relay));
    let reporter = f.reporter.clone();
    let msg = f.evidence(2, JOB, 0, &wrong);
    f.execute(&reporter, &msg, &[]).unwrap();
    let slashed = MIN_BOND * SLASH_BPS as u128 / 10_000;
    // Burned: the reporter, the client and the relay get nothing from it.
    assert_eq!(f.balance(&f.reporter), reporter_before);
    assert_eq!(f.balance(&f.relay), relay_before);
    assert_eq!(f.account(&client).balance, client_before);
    assert_eq!(f.total_supply(), supply - slashed);
    assert_eq!(f.totals().burned.u128(), slashed);
    let worker: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.workers[2].pubkey() });
    assert_eq!(
        (worker.bonded, worker.slashed, worker.eligible),
        (Uint128::new(MIN_BOND - slashed), Uint128::new(slashed), false)
    );

    // Once per (worker, task), whatever the evidence.
    let again = f.evidence(2, JOB, 0, &sha256(b"another wrong output"));
    f.refused_unchanged(
        &reporter,
        &again,
        ContractError::AlreadySlashed { job_id: JOB, index: 0, worker: pubkey_hex(&f, 2) },
    );
    // Evidence that agrees, evidence for an unsettled task, and forged evidence are refused.
    let agreeing = f.evidence(3, JOB, 0, &output_of(JOB, 0));
    f.refused_unchanged(&reporter, &agreeing, ContractError::EvidenceAgrees { job_id: JOB, index: 0 });
    let unsettled = f.evidence(3, JOB, 1, &wrong);
    f.refused_unchanged(&reporter, &unsettled, ContractError::TaskNotSettled { job_id: JOB, index: 1 });
    let forged = f.evidence_with(3, JOB, 0, &wrong, HexBinary::from(vec![7; 64]));
    f.refused_unchanged(
        &reporter,
        &forged,
        ContractError::InvalidSignature { job_id: JOB, index: 0, worker: pubkey_hex(&f, 3) },
    );
    // A worker reporting its own contradiction only loses its stake.
    let own_owner = f.owner_of(3);
    let msg = f.evidence(3, JOB, 0, &wrong);
    f.relay_executes(&msg).unwrap();
    assert_eq!(f.account(&own_owner).balance, Uint128::zero());
    // A settling worker that also signed a contradiction is slashable too.
    let msg = f.evidence(0, JOB, 0, &wrong);
    f.execute(&reporter, &msg, &[]).unwrap();
    assert_eq!(f.total_supply(), supply - 3 * slashed);
    assert_conserved(&f, &[]);
}

#[test]
fn unbonding_does_not_escape_a_slash_and_release_goes_to_the_account() {
    let mut f = with_job();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    // Worker 2 knows it signed a wrong result and tries to leave with everything.
    let owner = f.owner_of(2);
    let pubkey = f.workers[2].pubkey();
    let msg = f.unbond_msg(2, MIN_BOND);
    f.relay_executes(&msg).unwrap();
    f.advance(UNBONDING - 1);
    let worker: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: pubkey.clone() });
    let release = ExecuteMsg::Release { worker: pubkey.clone() };
    let payer = f.payer.clone();
    f.refused_unchanged(
        &payer,
        &release,
        ContractError::StillUnbonding { worker: pubkey.to_hex(), release_at: worker.release_at, now: f.now() },
    );

    let reporter = f.reporter.clone();
    let msg = f.evidence(2, JOB, 0, &sha256(b"wrong"));
    f.execute(&reporter, &msg, &[]).unwrap();
    f.advance(1);
    // Anyone may release: the stake only goes to its owner's account.
    f.execute(&payer, &release, &[]).unwrap();
    let slashed = MIN_BOND * SLASH_BPS as u128 / 10_000;
    assert_eq!(f.account(&owner).balance.u128(), MIN_BOND - slashed);
    assert_refused(f.execute(&payer, &release, &[]), ContractError::NothingToRelease { worker: pubkey.to_hex() });
    let wallet = f.wallets[f.workers[2].owner].clone();
    let msg = f.withdraw_msg(&owner, &wallet, MIN_BOND - slashed);
    f.relay_executes(&msg).unwrap();
    assert_eq!(f.balance(&wallet), MIN_BOND - slashed);
    assert_conserved(&f, &[]);
}

#[test]
fn unbonding_again_first_releases_what_finished() {
    let mut f = Fixture::new(1);
    let owner = f.owner_of(0);
    f.deposit(&owner, MIN_BOND).unwrap();
    let msg = f.bond_msg(0, MIN_BOND);
    f.relay_executes(&msg).unwrap();
    let msg = f.unbond_msg(0, 300);
    f.relay_executes(&msg).unwrap();
    f.advance(UNBONDING);
    let msg = f.unbond_msg(0, 200);
    f.relay_executes(&msg).unwrap();
    let worker: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.workers[0].pubkey() });
    assert_eq!((worker.bonded.u128(), worker.unbonding.u128()), (2 * MIN_BOND - 500, 200));
    assert_eq!(f.account(&owner).balance.u128(), 300);
    let workers: WorkersResponse = f.query(&QueryMsg::Workers { start_after: None, limit: Some(1) });
    assert_eq!(workers.workers.len(), 1);
    assert_conserved(&f, &[]);
}

#[test]
fn refund_waits_for_the_deadline_and_happens_once() {
    let mut f = with_job();
    let reporter = f.reporter.clone();
    let deadline = f.now() + MAX_JOB;
    let refund = f.refund_msg(JOB);
    f.refused_unchanged(&reporter, &refund, ContractError::DeadlineNotReached { job_id: JOB, deadline, now: f.now() });
    // Every task settled by all replicas: nothing to give back.
    let batch = (0..3).map(|i| f.signed(JOB, i, &[0, 1, 2])).collect();
    f.settle(JOB, batch).unwrap();
    f.advance(MAX_JOB);
    let client = f.client_key();
    let before = f.account(&client).balance;
    f.execute(&reporter, &refund, &[]).unwrap();
    assert_eq!(f.account(&client).balance, before);
    f.refused_unchanged(&reporter, &refund, ContractError::AlreadyRefunded { job_id: JOB });
    assert_eq!(f.balance(&f.contract), 4 * MIN_BOND + f.account(&client).balance.u128() + 9 * PRICE);
    assert_conserved(&f, &[]);
}

#[test]
fn the_relay_closes_a_job_early_and_the_client_gets_the_rest_at_once() {
    let mut f = with_job();
    f.settle(JOB, vec![f.signed(JOB, 1, &[0, 1])]).unwrap();
    let payer = f.payer.clone();
    f.refused_unchanged(&payer, &ExecuteMsg::Close { job_id: JOB }, ContractError::JobNotFound { job_id: JOB });
    let client = f.client_key();
    let before = f.account(&client).balance.u128();
    f.relay_executes(&ExecuteMsg::Close { job_id: JOB }).unwrap();
    let deposit = f.deposit_for(3, 3, PRICE);
    assert_eq!(f.account(&client).balance.u128(), before + deposit - 2 * (PRICE + FEE));
    let task = f.signed(JOB, 2, &[0, 1]);
    assert_refused(f.settle(JOB, vec![task]), ContractError::JobClosed { job_id: JOB });
    assert_refused(
        f.relay_executes(&ExecuteMsg::Close { job_id: JOB }),
        ContractError::AlreadyRefunded { job_id: JOB },
    );
    // Settled tasks stay slashable after the close.
    let reporter = f.reporter.clone();
    let msg = f.evidence(3, JOB, 1, &sha256(b"wrong"));
    f.execute(&reporter, &msg, &[]).unwrap();
    assert_conserved(&f, &[]);
}

/// The registry: a relay registers with a bond, opens jobs at its own fee and is paid that fee
/// alone; its fee never rises; once it leaves it opens nothing more, its open jobs still end, and
/// its bond comes back after the unbonding period. Its record counts what it did. Nothing moves
/// that the rules do not move.
#[test]
fn relays_register_with_a_bond_open_jobs_at_their_own_fee_and_leave() {
    let mut f = Fixture::new(4);
    let (relay, relay2) = (f.relay.clone(), f.relay2.clone());
    let supply = f.total_supply();
    let listed: RelaysResponse = f.query(&QueryMsg::Relays { start_after: None, limit: None });
    assert_eq!(listed.relays.len(), 1, "the deployment's own relay is registered at instantiation");
    let own = &listed.relays[0];
    assert_eq!(
        (own.address.clone(), own.endpoint.as_str(), own.fee_bps, own.active),
        (relay.clone(), "https://relay.example", FEE_BPS, true)
    );

    let register = |endpoint: &str, fee_bps| ExecuteMsg::RegisterRelay { endpoint: endpoint.into(), fee_bps };
    let bond = coins(MIN_RELAY_BOND, DENOM);
    let before = f.snapshot();
    assert_refused(
        f.execute(&relay2, &register("https://two.example", 200), &coins(MIN_RELAY_BOND - 1, DENOM)),
        ContractError::RelayBondTooSmall {
            relay: relay2.to_string(),
            bond: Uint128::new(MIN_RELAY_BOND - 1),
            needed: Uint128::new(MIN_RELAY_BOND),
        },
    );
    assert_refused(
        f.execute(&relay2, &register("ftp://two.example", 200), &bond),
        ContractError::InvalidParameter { name: "endpoint", reason: "must start with https:// or http://".into() },
    );
    assert_refused(
        f.execute(&relay2, &register("https://two example", 200), &bond),
        ContractError::InvalidParameter {
            name: "endpoint",
            reason: "must name a host, in printable ASCII without spaces".into(),
        },
    );
    assert_refused(
        f.execute(&relay2, &register("https://two.example", 10_001), &bond),
        ContractError::InvalidParameter { name: "fee_bps", reason: "more than 10000 basis points".into() },
    );
    assert_eq!(f.snapshot(), before, "refusals move nothing");
    f.execute(&relay2, &register("https://two.example", 200), &bond).unwrap();
    assert_refused(
        f.execute(&relay2, &register("https://two.example", 200), &bond),
        ContractError::RelayRegistered { relay: relay2.to_string() },
    );

    // A job relay2 opens (the client signed for relay2) costs relay2's fee, not the deployment's.
    let client = f.client_key();
    let terms = f.terms(1, 2, 2, 2, PRICE, MAX_JOB);
    let signature = client.sign_deposit(f.deployment(), relay2.as_str(), &terms.to_protocol().unwrap());
    let open = ExecuteMsg::CreateJob { job_id: 1, client: key_hex(&client), terms, signature: hex(&signature.0) };
    // The deployment's relay cannot use a deposit signed for relay2.
    assert_refused(
        f.execute(&relay, &open, &[]),
        ContractError::BadDepositSignature { client: client.public().to_hex() },
    );
    let balance = f.account(&client).balance;
    f.execute(&relay2, &open, &[]).unwrap();
    let fee = PRICE * 200 / 10_000;
    assert_eq!(balance - f.account(&client).balance, Uint128::new(2 * 2 * (PRICE + fee)));
    // relay2 settles its job and is paid its fee; the deployment's relay gets nothing for it.
    let (relay_before, relay2_before) = (f.balance(&relay), f.balance(&relay2));
    let task = f.signed(1, 0, &[0, 1]);
    assert_refused(
        f.relay_executes(&ExecuteMsg::SettleBatch { job_id: 1, tasks: vec![task.clone()] }),
        ContractError::JobNotFound { job_id: 1 },
    );
    f.execute(&relay2, &ExecuteMsg::SettleBatch { job_id: 1, tasks: vec![task] }, &[]).unwrap();
    assert_eq!(f.balance(&relay2) - relay2_before, 2 * fee);
    assert_eq!(f.balance(&relay), relay_before);
    // Job ids are each relay's own: the deployment's relay opens a job 1 of its own.
    let terms = f.terms(5, 1, 2, 2, PRICE, MAX_JOB);
    f.create_job_with(1, terms).unwrap();

    // Its fee never rises; it may fall.
    let raise = ExecuteMsg::UpdateRelay { endpoint: None, fee_bps: Some(201) };
    assert_refused(
        f.execute(&relay2, &raise, &[]),
        ContractError::RelayFeeRaise { relay: relay2.to_string(), current: 200 },
    );
    let lower = ExecuteMsg::UpdateRelay { endpoint: Some("https://2.example".into()), fee_bps: Some(100) };
    f.execute(&relay2, &lower, &[]).unwrap();

    // Leaving: no new job; the open one still closes; the bond unbonds, then comes back.
    f.execute(&relay2, &ExecuteMsg::LeaveRelay {}, &[]).unwrap();
    let terms = f.terms(2, 1, 2, 2, PRICE, MAX_JOB);
    let signature = client.sign_deposit(f.deployment(), relay2.as_str(), &terms.to_protocol().unwrap());
    let open = ExecuteMsg::CreateJob { job_id: 2, client: key_hex(&client), terms, signature: hex(&signature.0) };
    assert_refused(f.execute(&relay2, &open, &[]), ContractError::NotRelay { relay: relay2.to_string() });
    assert_refused(
        f.execute(&relay2, &register("https://two.example", 150), &[]),
        ContractError::RelayFeeRaise { relay: relay2.to_string(), current: 100 },
    );
    f.execute(&relay2, &ExecuteMsg::Close { job_id: 1 }, &[]).unwrap();
    let release = ExecuteMsg::ReleaseRelay { relay: relay2.to_string() };
    let payer = f.payer.clone();
    let leaving: RelayResponse = f.query(&QueryMsg::Relay { address: relay2.to_string() });
    assert_refused(
        f.execute(&payer, &release, &[]),
        ContractError::RelayNotReleasable { relay: relay2.to_string(), release_at: leaving.release_at },
    );
    f.advance(UNBONDING);
    let before = f.balance(&relay2);
    f.execute(&payer, &release, &[]).unwrap();
    assert_eq!(f.balance(&relay2) - before, MIN_RELAY_BOND, "the bond goes back to the relay, whoever asks");
    assert_refused(
        f.execute(&payer, &release, &[]),
        ContractError::RelayNotReleasable { relay: relay2.to_string(), release_at: leaving.release_at },
    );

    let entry: RelayResponse = f.query(&QueryMsg::Relay { address: relay2.to_string() });
    assert_eq!(
        (entry.endpoint.as_str(), entry.fee_bps, entry.active, entry.leaving),
        ("https://2.example", 100, false, true)
    );
    assert_eq!((entry.bond, entry.unbonding), (Uint128::zero(), Uint128::zero()));
    let r = entry.record;
    assert_eq!(
        (r.jobs_opened, r.jobs_ended, r.tasks_paid, r.fees_earned.u128(), r.workers_slashed),
        (1, 1, 1, 2 * fee, 0)
    );
    let own: RelayResponse = f.query(&QueryMsg::Relay { address: relay.to_string() });
    assert_eq!((own.record.jobs_opened, own.record.tasks_paid), (1, 0));
    let totals = f.totals();
    assert_eq!((totals.relay_bonds_in.u128(), totals.relay_bonds_out.u128()), (MIN_RELAY_BOND, MIN_RELAY_BOND));
    assert_eq!(f.total_supply(), supply, "nothing burned, nothing created");
}

/// A slash of a worker who contradicted a task settled on a relay's job counts on that relay's
/// record.
#[test]
fn a_slash_counts_on_the_record_of_the_jobs_relay() {
    let mut f = with_job();
    f.settle(JOB, vec![f.signed(JOB, 0, &[0, 1])]).unwrap();
    let reporter = f.reporter.clone();
    let evidence = f.evidence(0, JOB, 0, &sha256(b"another answer"));
    f.execute(&reporter, &evidence, &[]).unwrap();
    let own: RelayResponse = f.query(&QueryMsg::Relay { address: f.relay.to_string() });
    assert_eq!((own.record.jobs_opened, own.record.tasks_paid, own.record.workers_slashed), (1, 1, 1));
}
