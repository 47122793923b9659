//! The deployable artifact (`target/contracts/starling_escrow.wasm`, from
//! `scripts/build-contract.sh`) in cosmwasm-vm: static checks, then the whole flow with real
//! signatures (instantiate, deposit into accounts, register and bond workers with their owners'
//! authorizations, open a job with the client's signed deposit, settle batches with v2 result
//! signatures, slash and burn, unbond, release and withdraw, refund), checking every payment,
//! every refusal that must move nothing, and that the ledger's supply changes only by what was
//! burned; and measuring gas per operation, per settled task and per extra signature.
//!
//! `STARLING_RECORD_GAS=1 cargo test -p starling-escrow-vm --test escrow_flow` also writes the
//! figures into BENCHMARKS.md, between the `gas:begin` / `gas:end` markers.

use cosmwasm_std::{Addr, HexBinary, Uint128};
use starling_escrow::msg::{
    Authorization, ExecuteMsg, InstantiateMsg, JobResponse, JobTerms, QueryMsg, RelayResponse, RelaysResponse,
    TaskResult, WorkerResponse, WorkerSignature,
};
use starling_escrow::state::{Account, JobComparison, JobStatus, Totals};
use starling_escrow_vm::artifact::{self, workspace_root};
use starling_escrow_vm::{Executed, GasUsed, Ledger};
use starling_protocol::sign::{AccountAction, Deployment, Keypair};
use starling_protocol::{Hash32, JobId, TaskId, sha256};
use std::path::{Path, PathBuf};

const DENOM: &str = "ustar";
const RECORD_COMMAND: &str =
    "scripts/build-contract.sh && STARLING_RECORD_GAS=1 cargo test -p starling-escrow-vm --test escrow_flow";
const START: u128 = 10_000_000;
const MIN_BOND: u128 = 100_000;
const PRICE: u128 = 1_000;
const FEE_BPS: u16 = 500;
const FEE: u128 = PRICE * FEE_BPS as u128 / 10_000;
const JOB: u64 = 1;
const OUTPUT_LEN: u64 = 1 << 20;

/// The artifact, refusing a missing or stale one rather than testing something else.
fn artifact() -> (Vec<u8>, PathBuf) {
    let root = workspace_root();
    let wasm = artifact::load(&root).unwrap_or_else(|e| panic!("{e}"));
    (wasm, root.join(artifact::ARTIFACT_PATH))
}

fn hex(bytes: &[u8]) -> HexBinary {
    HexBinary::from(bytes)
}

struct Flow {
    ledger: Ledger,
    deployer: Addr,
    relay: Addr,
    /// Pays deposits into accounts from its chain wallet.
    payer: Addr,
    reporter: Addr,
    client: Keypair,
    /// Worker keys and their owners' account keys.
    workers: Vec<(Keypair, Keypair)>,
    spec: Hash32,
}

impl Flow {
    fn new(wasm: &[u8]) -> Self {
        let mut ledger = Ledger::new(wasm, DENOM).expect("the artifact passes cosmwasm-vm's static checks");
        let [deployer, relay, payer, reporter] =
            ["deployer", "relay", "payer", "reporter"].map(|n| ledger.addr_make(n));
        let workers = (0..4u8).map(|i| (Keypair::from_seed([i + 11; 32]), Keypair::from_seed([i + 21; 32]))).collect();
        for addr in [&deployer, &relay, &payer, &reporter] {
            ledger.mint(addr, START);
        }
        Self {
            ledger,
            deployer,
            relay,
            payer,
            reporter,
            client: Keypair::from_seed([9; 32]),
            workers,
            spec: sha256(b"job spec"),
        }
    }

    fn deployment(&self) -> (String, String) {
        (self.ledger.block().chain_id.clone(), self.ledger.contract().to_string())
    }

    fn pubkey(&self, worker: usize) -> HexBinary {
        hex(&self.workers[worker].0.public().0)
    }

    fn exec(&mut self, sender: &Addr, msg: &ExecuteMsg, funds: u128) -> Executed {
        self.ledger.execute(sender, msg, funds).unwrap_or_else(|e| panic!("{msg:?}: {e}"))
    }

    fn query<T: serde::de::DeserializeOwned>(&self, msg: &QueryMsg) -> T {
        self.ledger.query(msg).unwrap().0
    }

    fn account(&self, key: &Keypair) -> Account {
        self.query(&QueryMsg::Account { pubkey: hex(&key.public().0) })
    }

    fn authorization(&self, key: &Keypair, action: &AccountAction) -> Authorization {
        let nonce = self.account(key).nonce;
        let (chain_id, contract) = self.deployment();
        let signature = key.sign_account_action(Deployment { chain_id: &chain_id, contract: &contract }, nonce, action);
        Authorization { account: hex(&key.public().0), nonce, signature: hex(&signature.0) }
    }

    fn deposit(&mut self, account: &Keypair, amount: u128) -> Executed {
        let payer = self.payer.clone();
        self.exec(&payer, &ExecuteMsg::Deposit { account: hex(&account.public().0) }, amount)
    }

    fn bond(&mut self, worker: usize, amount: u128, register: bool) -> Executed {
        let (chain_id, contract) = self.deployment();
        let deployment = Deployment { chain_id: &chain_id, contract: &contract };
        let (key, owner) = &self.workers[worker];
        let action = AccountAction::Bond { worker: key.public(), amount };
        let proof = register.then(|| hex(&key.sign_register_v2(deployment, &owner.public()).0));
        let msg = ExecuteMsg::Bond {
            authorization: self.authorization(owner, &action),
            worker: self.pubkey(worker),
            amount: Uint128::new(amount),
            proof,
        };
        let relay = self.relay.clone();
        self.exec(&relay, &msg, 0)
    }

    fn sign(&self, worker: usize, index: u32, hash: &Hash32) -> WorkerSignature {
        let (chain_id, contract) = self.deployment();
        let deployment = Deployment { chain_id: &chain_id, contract: &contract };
        let task = TaskId { job: JobId(JOB), index };
        let sig = self.workers[worker].0.sign_result_v2(deployment, task, &self.spec, hash, OUTPUT_LEN);
        WorkerSignature { worker_pubkey: self.pubkey(worker), signature: hex(&sig.0), output_hash: None }
    }

    fn task(&self, index: u32, signers: &[usize]) -> TaskResult {
        let hash = sha256(format!("output of task {index}").as_bytes());
        TaskResult {
            index,
            output_hash: hex(&hash.0),
            output_len: OUTPUT_LEN,
            signatures: signers.iter().map(|&w| self.sign(w, index, &hash)).collect(),
        }
    }

    fn settle(&mut self, tasks: Vec<TaskResult>) -> Executed {
        let relay = self.relay.clone();
        self.exec(&relay, &ExecuteMsg::SettleBatch { job_id: JOB, tasks }, 0)
    }
}

/// A measured operation for the table.
struct Row {
    operation: String,
    gas: u64,
    storage: String,
}

fn row(operation: &str, gas: GasUsed) -> Row {
    let s = gas.storage;
    Row {
        operation: operation.into(),
        gas: gas.total,
        storage: format!("{} / {} ({} B)", s.reads, s.writes, s.written_bytes),
    }
}

#[test]
fn whole_flow_in_cosmwasm_vm_with_gas() {
    let (wasm, path) = artifact();
    let mut f = Flow::new(&wasm);
    let supply = f.ledger.total_supply();
    let mut rows = Vec::new();

    let init = InstantiateMsg {
        denom: DENOM.into(),
        relay: f.relay.to_string(),
        relay_fee_bps: FEE_BPS,
        min_bond: Uint128::new(MIN_BOND),
        unbonding_period: 14 * 24 * 3600,
        max_job_duration: 7 * 24 * 3600,
        slash_bps: 5_000,
        min_relay_bond: Uint128::new(MIN_BOND),
        relay_endpoint: Some("https://relay.example".into()),
    };
    let deployer = f.deployer.clone();
    let done = f.ledger.instantiate(&deployer, &init, 0).unwrap();
    rows.push(row("instantiate", done.gas));

    // Each owner pays its bond into its account, then the relay submits the owner's signed bond
    // with the worker key's registration proof; one owner tops its bond up.
    let mut deposit_gas = None;
    let mut register_gas = None;
    for i in 0..4 {
        let owner = Keypair::from_seed(f.workers[i].1.seed());
        let amount = if i == 0 { MIN_BOND + 5_000 } else { MIN_BOND };
        deposit_gas.get_or_insert(f.deposit(&owner, amount).gas);
        register_gas.get_or_insert(f.bond(i, MIN_BOND, true).gas);
    }
    rows.push(row("deposit into an account", deposit_gas.unwrap()));
    rows.push(row("register worker (owner's authorization + key's proof, one batch verify)", register_gas.unwrap()));
    let done = f.bond(0, 5_000, false);
    rows.push(row("bond top-up (owner's authorization)", done.gas));

    // A bond out of owner 1's account signed by someone else moves nothing.
    let owner1 = Keypair::from_seed(f.workers[1].1.seed());
    f.deposit(&owner1, 1);
    let before = f.ledger.balances().clone();
    let action = AccountAction::Bond { worker: f.workers[1].0.public(), amount: 1 };
    let nonce = f.account(&owner1).nonce;
    let (chain_id, contract) = f.deployment();
    let bytes = starling_protocol::sign::account_bytes(
        Deployment { chain_id: &chain_id, contract: &contract },
        &owner1.public(),
        nonce,
        &action,
    );
    let thief = Keypair::from_seed([66; 32]);
    let stolen = ExecuteMsg::Bond {
        authorization: Authorization { account: hex(&owner1.public().0), nonce, signature: hex(&thief.sign(&bytes).0) },
        worker: f.pubkey(1),
        amount: Uint128::new(1),
        proof: None,
    };
    let relay = f.relay.clone();
    let err = f.ledger.execute(&relay, &stolen, 0).unwrap_err();
    assert!(err.refusal().is_some_and(|t| t.contains("authorization")), "{err}");
    assert_eq!(f.ledger.balances(), &before);
    assert_eq!((f.account(&owner1).balance.u128(), f.account(&owner1).nonce), (1, nonce));

    // Job 1: 8 tasks × 3 replicas, quorum 2, paid from the client's account with its signature.
    let deposit = 8 * 3 * (PRICE + FEE);
    let client = Keypair::from_seed(f.client.seed());
    f.deposit(&client, deposit - 1);
    let terms = JobTerms {
        spec_digest: hex(&f.spec.0),
        tasks: 8,
        replicas: 3,
        quorum: 2,
        price_per_replica: Uint128::new(PRICE),
        comparison: JobComparison::Exact,
        deadline_secs: 3_600,
        not_after: f.ledger.now() + 600,
    };
    let (chain_id, contract) = f.deployment();
    let signature = client.sign_deposit(
        Deployment { chain_id: &chain_id, contract: &contract },
        f.relay.as_str(),
        &terms.to_protocol().unwrap(),
    );
    let create =
        ExecuteMsg::CreateJob { job_id: JOB, client: hex(&client.public().0), terms, signature: hex(&signature.0) };
    let refused = f.ledger.execute(&relay, &create, 0).unwrap_err();
    assert!(refused.refusal().is_some_and(|t| t.contains("needs")), "{refused}");
    f.deposit(&client, 1);
    let done = f.exec(&relay, &create, 0);
    rows.push(row("create job (client's deposit signature)", done.gas));
    assert_eq!(f.account(&client).balance, Uint128::zero());

    // Settlement batches, shaped to separate the cost of a task and of a signature.
    let one_task = f.settle(vec![f.task(0, &[0, 1])]);
    let one_task_three_sigs = f.settle(vec![f.task(1, &[0, 1, 2])]);
    let four_tasks = f.settle((2..6).map(|i| f.task(i, &[1, 2])).collect());
    assert_eq!(four_tasks.transfers, vec![(f.relay.clone(), 8 * FEE)], "workers are paid into accounts");
    rows.push(row("settle batch: 1 task, 2 signatures", one_task.gas));
    rows.push(row("settle batch: 1 task, 3 signatures", one_task_three_sigs.gas));
    rows.push(row("settle batch: 4 tasks, 2 signatures each", four_tasks.gas));
    let per_task = (four_tasks.gas.total - one_task.gas.total) / 3;
    let per_signature = one_task_three_sigs.gas.total - one_task.gas.total;

    // Paid so far: worker0 2 replicas, worker1 6, worker2 5, the relay 13 fees.
    let paid = [2, 2 + 4, 1 + 4, 0];
    for (i, replicas) in paid.iter().enumerate() {
        assert_eq!(f.account(&f.workers[i].1).earned.u128(), replicas * PRICE, "owner of worker {i}");
    }
    assert_eq!(f.ledger.balance(&f.relay), START + 13 * FEE);

    // A forged batch is refused whole, naming the task, and nothing moves.
    let before = f.ledger.balances().clone();
    let mut forged = f.task(7, &[0, 3]);
    forged.signatures[1].signature = hex(&[1; 64]);
    let err = f
        .ledger
        .execute(&relay, &ExecuteMsg::SettleBatch { job_id: JOB, tasks: vec![f.task(6, &[0, 1]), forged] }, 0)
        .unwrap_err();
    assert!(err.refusal().is_some_and(|t| t.contains("task 1/7") && t.contains("does not verify")), "{err}");
    assert_eq!(f.ledger.balances(), &before);
    let replay = f
        .ledger
        .execute(&relay, &ExecuteMsg::SettleBatch { job_id: JOB, tasks: vec![f.task(0, &[2, 3])] }, 0)
        .unwrap_err();
    assert!(replay.refusal().is_some_and(|t| t.contains("already settled")), "{replay}");
    // A v1 signature (what workers sign today) does not settle.
    let mut v1 = f.task(6, &[0, 1]);
    let hash = Hash32(v1.output_hash.to_array().unwrap());
    v1.signatures[1].signature =
        hex(&f.workers[1].0.sign_result(TaskId { job: JobId(JOB), index: 6 }, &hash, OUTPUT_LEN).0);
    let err = f.ledger.execute(&relay, &ExecuteMsg::SettleBatch { job_id: JOB, tasks: vec![v1] }, 0).unwrap_err();
    assert!(err.refusal().is_some_and(|t| t.contains("does not verify")), "{err}");

    // Worker 3 signed a different output for task 0: half its bond is burned, nobody is paid.
    let wrong = sha256(b"a wrong output");
    let sig = f.sign(3, 0, &wrong);
    let evidence = ExecuteMsg::Slash {
        relay: f.relay.to_string(),
        job_id: JOB,
        index: 0,
        worker_pubkey: sig.worker_pubkey,
        output_hash: hex(&wrong.0),
        output_len: OUTPUT_LEN,
        signature: sig.signature,
    };
    let reporter = f.reporter.clone();
    let done = f.exec(&reporter, &evidence, 0);
    rows.push(row("slash (one signature check, burn)", done.gas));
    let slashed = MIN_BOND / 2;
    assert_eq!((done.burned, done.transfers.len()), (slashed, 0));
    assert_eq!(f.ledger.balance(&reporter), START);

    // Worker 2 leaves: unbond, wait, release to its owner's account, withdraw to a wallet.
    let owner2 = Keypair::from_seed(f.workers[2].1.seed());
    let action = AccountAction::Unbond { worker: f.workers[2].0.public(), amount: MIN_BOND };
    let unbond = ExecuteMsg::Unbond {
        authorization: f.authorization(&owner2, &action),
        worker: f.pubkey(2),
        amount: Uint128::new(MIN_BOND),
    };
    let done = f.exec(&relay, &unbond, 0);
    rows.push(row("unbond (owner's authorization)", done.gas));
    let worker: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.pubkey(2) });
    f.ledger.set_time(cosmwasm_std::Timestamp::from_seconds(worker.release_at));
    let done = f.exec(&reporter, &ExecuteMsg::Release { worker: f.pubkey(2) }, 0);
    rows.push(row("release finished unbonding to the owner's account", done.gas));
    let earned2 = 5 * PRICE;
    assert_eq!(f.account(&owner2).balance.u128(), MIN_BOND + earned2);
    let wallet = f.ledger.addr_make("owner2-wallet");
    let action = AccountAction::Withdraw { to: wallet.to_string(), amount: MIN_BOND + earned2 };
    let withdraw = ExecuteMsg::Withdraw {
        authorization: f.authorization(&owner2, &action),
        to: wallet.to_string(),
        amount: Uint128::new(MIN_BOND + earned2),
    };
    let done = f.exec(&relay, &withdraw, 0);
    rows.push(row("withdraw (owner's authorization, bank send)", done.gas));
    assert_eq!(f.ledger.balance(&wallet), MIN_BOND + earned2);
    let replayed = f.ledger.execute(&relay, &withdraw, 0).unwrap_err();
    assert!(replayed.refusal().is_some_and(|t| t.contains("nonce")), "{replayed}");

    // Past the deadline: tasks 6 and 7 and the unused third replica of tasks 0, 2..5 go back to
    // the client's account.
    let done = f.exec(&reporter, &ExecuteMsg::Refund { relay: f.relay.to_string(), job_id: JOB }, 0);
    rows.push(row("refund (to the client's account)", done.gas));
    let settled_replicas = 2 + 3 + 4 * 2;
    let refund = deposit - settled_replicas * (PRICE + FEE);
    assert_eq!(f.account(&client).balance.u128(), refund);
    let (job, query_gas): (JobResponse, GasUsed) =
        f.ledger.query(&QueryMsg::Job { relay: f.relay.to_string(), job_id: JOB }).unwrap();
    rows.push(row("query job", query_gas));
    assert_eq!((job.status, job.settled_tasks, job.remaining), (JobStatus::Closed, 6, Uint128::zero()));

    // Money only moved, except what was burned; the contract holds exactly what it owes.
    assert_eq!(f.ledger.total_supply(), supply - slashed);
    let totals: Totals = f.query(&QueryMsg::Totals {});
    assert_eq!(totals.burned.u128(), slashed);
    let mut owed = f.account(&client).balance.u128();
    for i in 0..4 {
        owed += f.account(&f.workers[i].1).balance.u128();
        let w: WorkerResponse = f.query(&QueryMsg::Worker { pubkey: f.pubkey(i) });
        owed += w.bonded.u128() + w.unbonding.u128();
    }
    assert_eq!(f.ledger.balance(&contract_addr(&f)), owed);

    // Sanity of the measurement itself: signatures dominate, and costs grow with the batch.
    assert!(per_signature > 0 && per_task > per_signature, "per task {per_task}, per signature {per_signature}");
    rows.push(Row {
        operation: "→ per additional settled task (2 signatures)".into(),
        gas: per_task,
        storage: String::new(),
    });
    rows.push(Row {
        operation: "→ per additional signature on a task (its owner is a new payee)".into(),
        gas: per_signature,
        storage: String::new(),
    });

    let table = render(&rows, &wasm, &path, f.ledger.checksum().to_hex());
    println!("{table}");
    if std::env::var("STARLING_RECORD_GAS").is_ok_and(|v| v == "1") {
        record(&table);
    }
}

/// The relay registry in the real artifact: a second relay registers with its bond, opens a job
/// its client signed for it, settles it with bonded workers' signatures and is paid its own fee
/// (the deployment's relay nothing), leaves, and gets its bond back after the unbonding period;
/// the contract's record of it and its money add up.
#[test]
fn relay_registry_in_cosmwasm_vm() {
    let (wasm, _) = artifact();
    let mut f = Flow::new(&wasm);
    let supply = f.ledger.total_supply();
    let relay2 = f.ledger.addr_make("relay2");
    f.ledger.mint(&relay2, START);
    let init = InstantiateMsg {
        denom: DENOM.into(),
        relay: f.relay.to_string(),
        relay_fee_bps: FEE_BPS,
        min_bond: Uint128::new(MIN_BOND),
        unbonding_period: 14 * 24 * 3600,
        max_job_duration: 7 * 24 * 3600,
        slash_bps: 5_000,
        min_relay_bond: Uint128::new(MIN_BOND),
        relay_endpoint: Some("https://relay.example".into()),
    };
    let deployer = f.deployer.clone();
    f.ledger.instantiate(&deployer, &init, 0).unwrap();
    let register = ExecuteMsg::RegisterRelay { endpoint: "https://two.example".into(), fee_bps: 200 };
    let short = f.ledger.execute(&relay2, &register, MIN_BOND - 1).unwrap_err();
    assert!(short.refusal().is_some_and(|t| t.contains("relay bond")), "{short}");
    f.exec(&relay2, &register, MIN_BOND);
    let listed: RelaysResponse = f.query(&QueryMsg::Relays { start_after: None, limit: None });
    let mut endpoints: Vec<(String, u16, bool)> =
        listed.relays.iter().map(|r| (r.endpoint.clone(), r.fee_bps, r.active)).collect();
    endpoints.sort();
    assert_eq!(
        endpoints,
        vec![("https://relay.example".into(), FEE_BPS, true), ("https://two.example".into(), 200, true)]
    );

    for w in [0, 1] {
        let owner = Keypair::from_seed([w as u8 + 21; 32]); // the flow's owner key of worker `w`
        f.deposit(&owner, MIN_BOND);
        f.bond(w, MIN_BOND, true);
    }
    let client = Keypair::from_seed([9; 32]); // the flow's client key
    f.deposit(&client, 100_000);
    let terms = JobTerms {
        spec_digest: hex(&f.spec.0),
        tasks: 1,
        replicas: 2,
        quorum: 2,
        price_per_replica: Uint128::new(PRICE),
        comparison: JobComparison::Exact,
        deadline_secs: 3600,
        not_after: f.ledger.now() + 600,
    };
    let (chain_id, contract) = f.deployment();
    let deployment = Deployment { chain_id: &chain_id, contract: &contract };
    let signature = client.sign_deposit(deployment, relay2.as_str(), &terms.to_protocol().unwrap());
    let open =
        ExecuteMsg::CreateJob { job_id: JOB, client: hex(&client.public().0), terms, signature: hex(&signature.0) };
    let wrong_relay = f.ledger.execute(&f.relay.clone(), &open, 0).unwrap_err();
    assert!(wrong_relay.refusal().is_some_and(|t| t.contains("signature")), "{wrong_relay}");
    f.exec(&relay2, &open, 0);
    let fee = PRICE * 200 / 10_000;
    assert_eq!(f.account(&client).balance.u128(), 100_000 - 2 * (PRICE + fee));
    let (relay_before, relay2_before) = (f.ledger.balance(&f.relay), f.ledger.balance(&relay2));
    let task = f.task(0, &[0, 1]);
    f.exec(&relay2, &ExecuteMsg::SettleBatch { job_id: JOB, tasks: vec![task] }, 0);
    assert_eq!(f.ledger.balance(&relay2) - relay2_before, 2 * fee);
    assert_eq!(f.ledger.balance(&f.relay), relay_before);

    f.exec(&relay2, &ExecuteMsg::LeaveRelay {}, 0);
    let release = ExecuteMsg::ReleaseRelay { relay: relay2.to_string() };
    let payer = f.payer.clone();
    let early = f.ledger.execute(&payer, &release, 0).unwrap_err();
    assert!(early.refusal().is_some_and(|t| t.contains("nothing to release")), "{early}");
    f.ledger.advance(14 * 24 * 3600);
    let before = f.ledger.balance(&relay2);
    f.exec(&payer, &release, 0);
    assert_eq!(f.ledger.balance(&relay2) - before, MIN_BOND);
    let entry: RelayResponse = f.query(&QueryMsg::Relay { address: relay2.to_string() });
    assert_eq!(
        (entry.active, entry.record.jobs_opened, entry.record.tasks_paid, entry.record.fees_earned.u128()),
        (false, 1, 1, 2 * fee)
    );
    assert_eq!(f.ledger.total_supply(), supply + START, "only the mint for relay2 changed the supply");
}

fn contract_addr(f: &Flow) -> Addr {
    f.ledger.contract().clone()
}

fn render(rows: &[Row], wasm: &[u8], path: &Path, checksum: String) -> String {
    let mut out = String::new();
    out.push_str("## Escrow contract gas (cosmwasm-vm)\n\n");
    out.push_str(&format!(
        "Recorded {} on {} by `{RECORD_COMMAND}`.\n",
        starling_escrow_vm::record::utc_date(),
        starling_escrow_vm::record::machine()
    ));
    out.push_str(&format!(
        "Artifact `{}`: {} bytes, sha256 `{checksum}`, built with {}; VM: cosmwasm-vm 3.0.10 (singlepass).\n\n",
        path.strip_prefix(workspace_root()).unwrap_or(path).display(),
        wasm.len(),
        rustc_version()
    ));
    out.push_str(
        "Figures are CosmWasm gas as cosmwasm-vm meters it (Wasm execution, host crypto, and the mock\n\
         storage's per-byte costs); a chain converts to SDK gas with its own multiplier and adds its\n\
         own storage gas, for which the reads / writes column gives the counts. Job: 8 tasks × 3\n\
         replicas, quorum 2; workers' signatures are real ed25519 over `result_bytes_v2`. Gas is\n\
         deterministic for a given artifact; the machine only matters for the build.\n\n",
    );
    out.push_str("| operation | CosmWasm gas | storage reads / writes (bytes written) |\n| --- | ---: | --- |\n");
    for r in rows {
        out.push_str(&format!("| {} | {} | {} |\n", r.operation, group(r.gas), r.storage));
    }
    out
}

/// Replaces the gas section of BENCHMARKS.md (between the markers), leaving the rest untouched.
fn record(table: &str) {
    const BEGIN: &str = "<!-- gas:begin -->";
    const END: &str = "<!-- gas:end -->";
    let path = workspace_root().join("BENCHMARKS.md");
    // Read right before writing: someone else edits the rest of this file.
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let section = format!("{BEGIN}\n{table}{END}");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &text[..b], &text[e + END.len()..]),
        _ => {
            let sep = if text.is_empty() || text.ends_with("\n\n") {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{text}{sep}{section}\n")
        }
    };
    std::fs::write(&path, updated).unwrap();
    println!("recorded gas figures in {}", path.display());
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rustc_version() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "rustc (unknown version)".into())
}
