//! The deployable artifact (`target/contracts/starling_escrow.wasm`, from
//! `scripts/build-contract.sh`) in cosmwasm-vm: static checks, then the whole flow with real
//! signatures (instantiate, register and bond workers, create a job, settle batches, slash,
//! unbond and withdraw, refund), checking every payment and that the ledger's supply never
//! changes, and measuring gas per operation, per settled task and per extra signature.
//!
//! `STARLING_RECORD_GAS=1 cargo test -p starling-escrow-vm --test escrow_flow` also writes the
//! figures into BENCHMARKS.md, between the `gas:begin` / `gas:end` markers.

use cosmwasm_std::{Addr, HexBinary, Uint128};
use starling_escrow::msg::{
    ExecuteMsg, InstantiateMsg, JobResponse, QueryMsg, TaskResult, WorkerResponse, WorkerSignature, registration_bytes,
};
use starling_escrow::state::JobStatus;
use starling_escrow_vm::artifact::{self, workspace_root};
use starling_escrow_vm::{Executed, GasUsed, Ledger};
use starling_protocol::sign::Keypair;
use starling_protocol::{Hash32, JobId, TaskId, sha256};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

struct Flow {
    ledger: Ledger,
    deployer: Addr,
    relay: Addr,
    client: Addr,
    reporter: Addr,
    workers: Vec<(Keypair, Addr)>,
}

impl Flow {
    fn new(wasm: &[u8]) -> Self {
        let mut ledger = Ledger::new(wasm, DENOM).expect("the artifact passes cosmwasm-vm's static checks");
        let [deployer, relay, client, reporter] =
            ["deployer", "relay", "client", "reporter"].map(|n| ledger.addr_make(n));
        let workers: Vec<(Keypair, Addr)> =
            (0..4u8).map(|i| (Keypair::from_seed([i + 11; 32]), ledger.addr_make(&format!("worker{i}")))).collect();
        for addr in [&deployer, &relay, &client, &reporter].into_iter().chain(workers.iter().map(|(_, a)| a)) {
            ledger.mint(addr, START);
        }
        Self { ledger, deployer, relay, client, reporter, workers }
    }

    fn pubkey(&self, worker: usize) -> HexBinary {
        HexBinary::from(self.workers[worker].0.public().0.as_slice())
    }

    fn exec(&mut self, sender: &Addr, msg: &ExecuteMsg, funds: u128) -> Executed {
        self.ledger.execute(sender, msg, funds).unwrap_or_else(|e| panic!("{msg:?}: {e}"))
    }

    fn sign(&self, worker: usize, index: u32, hash: &Hash32) -> WorkerSignature {
        let sig = self.workers[worker].0.sign_result(TaskId { job: JobId(JOB), index }, hash, OUTPUT_LEN);
        WorkerSignature { worker_pubkey: self.pubkey(worker), signature: HexBinary::from(sig.0.as_slice()) }
    }

    fn task(&self, index: u32, signers: &[usize]) -> TaskResult {
        let hash = sha256(format!("output of task {index}").as_bytes());
        TaskResult {
            index,
            output_hash: HexBinary::from(hash.0.as_slice()),
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
        reporter_share_bps: 2_000,
    };
    let deployer = f.deployer.clone();
    let done = f.ledger.instantiate(&deployer, &init, 0).unwrap();
    rows.push(row("instantiate", done.gas));

    // Register four workers; one tops its bond up.
    let contract = f.ledger.contract().clone();
    let mut register_gas = None;
    for i in 0..4 {
        let (key, owner) = (&f.workers[i].0, f.workers[i].1.clone());
        let proof = key.sign(&registration_bytes(contract.as_str(), owner.as_str(), &key.public().0));
        let msg = ExecuteMsg::RegisterWorker { pubkey: f.pubkey(i), proof: HexBinary::from(proof.0.as_slice()) };
        let done = f.exec(&owner, &msg, MIN_BOND);
        register_gas.get_or_insert(done.gas);
    }
    rows.push(row("register worker (proof check + bond)", register_gas.unwrap()));
    let owner0 = f.workers[0].1.clone();
    let done = f.exec(&owner0, &ExecuteMsg::Bond { pubkey: f.pubkey(0) }, 5_000);
    rows.push(row("bond top-up", done.gas));

    // Job 1: 8 tasks × 3 replicas, quorum 2.
    let deadline = f.ledger.now() + 3_600;
    let create = ExecuteMsg::CreateJob {
        job_id: JOB,
        tasks: 8,
        replicas: 3,
        quorum: 2,
        price_per_replica: Uint128::new(PRICE),
        deadline,
        slashable: true,
    };
    let deposit = 8 * 3 * (PRICE + FEE);
    let client = f.client.clone();
    let refused = f.ledger.execute(&client, &create, deposit - 1).unwrap_err();
    assert!(refused.refusal().is_some_and(|t| t.contains("expected")), "{refused}");
    assert_eq!(f.ledger.balance(&client), START, "a refused deposit is returned");
    let done = f.exec(&client, &create, deposit);
    rows.push(row("create job", done.gas));

    // Settlement batches, shaped to separate the cost of a task and of a signature.
    let one_task = f.settle(vec![f.task(0, &[0, 1])]);
    let one_task_three_sigs = f.settle(vec![f.task(1, &[0, 1, 2])]);
    let four_tasks = f.settle((2..6).map(|i| f.task(i, &[1, 2])).collect());
    assert_eq!(four_tasks.transfers.len(), 3, "two workers and the relay, one send each");
    rows.push(row("settle batch: 1 task, 2 signatures", one_task.gas));
    rows.push(row("settle batch: 1 task, 3 signatures", one_task_three_sigs.gas));
    rows.push(row("settle batch: 4 tasks, 2 signatures each", four_tasks.gas));
    let per_task = (four_tasks.gas.total - one_task.gas.total) / 3;
    let per_signature = one_task_three_sigs.gas.total - one_task.gas.total;

    // Payments so far: worker0 2 replicas, worker1 6, worker2 5, the relay 13 fees.
    let paid = [2, 2 + 4, 1 + 4, 0];
    for (i, replicas) in paid.iter().enumerate() {
        let bond = if i == 0 { MIN_BOND + 5_000 } else { MIN_BOND };
        assert_eq!(f.ledger.balance(&f.workers[i].1), START - bond + replicas * PRICE, "worker {i}");
    }
    assert_eq!(f.ledger.balance(&f.relay), START + 13 * FEE);

    // A forged batch is refused whole, naming the task, and nothing moves.
    let before = f.ledger.balances().clone();
    let mut forged = f.task(7, &[0, 3]);
    forged.signatures[1].signature = HexBinary::from(vec![1; 64]);
    let relay = f.relay.clone();
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

    // Worker 3 signed a different output for task 0: the reporter takes 20% of half its bond.
    let wrong = sha256(b"a wrong output");
    let sig = f.sign(3, 0, &wrong);
    let evidence = ExecuteMsg::Slash {
        job_id: JOB,
        index: 0,
        worker_pubkey: sig.worker_pubkey,
        output_hash: HexBinary::from(wrong.0.as_slice()),
        output_len: OUTPUT_LEN,
        signature: sig.signature,
    };
    let reporter = f.reporter.clone();
    let client_before = f.ledger.balance(&client);
    let done = f.exec(&reporter, &evidence, 0);
    rows.push(row("slash (one signature check)", done.gas));
    let slashed = MIN_BOND / 2;
    assert_eq!(f.ledger.balance(&reporter), START + slashed / 5);
    assert_eq!(f.ledger.balance(&client), client_before + slashed - slashed / 5);

    // Worker 2 leaves: unbond, wait, withdraw.
    let owner2 = f.workers[2].1.clone();
    let done = f.exec(&owner2, &ExecuteMsg::Unbond { pubkey: f.pubkey(2), amount: Uint128::new(MIN_BOND) }, 0);
    rows.push(row("unbond", done.gas));
    let worker: WorkerResponse = f.ledger.query(&QueryMsg::Worker { pubkey: f.pubkey(2) }).unwrap().0;
    f.ledger.set_time(cosmwasm_std::Timestamp::from_seconds(worker.release_at));
    let done = f.exec(&owner2, &ExecuteMsg::Withdraw { pubkey: f.pubkey(2) }, 0);
    rows.push(row("withdraw", done.gas));
    assert_eq!(f.ledger.balance(&owner2), START + 5 * PRICE);

    // Past the deadline: tasks 6 and 7 and task 0, 2..5's unused third replica come back.
    let done = f.exec(&reporter, &ExecuteMsg::Refund { job_id: JOB }, 0);
    rows.push(row("refund", done.gas));
    let settled_replicas = 2 + 3 + 4 * 2;
    let refund = deposit - settled_replicas * (PRICE + FEE);
    assert_eq!(done.transfers, vec![(client.clone(), refund)]);
    let (job, query_gas): (JobResponse, GasUsed) = f.ledger.query(&QueryMsg::Job { job_id: JOB }).unwrap();
    rows.push(row("query job", query_gas));
    assert_eq!((job.status, job.settled_tasks, job.remaining), (JobStatus::Closed, 6, Uint128::zero()));

    // Money only moved: the contract holds the remaining bonds, nothing else.
    assert_eq!(f.ledger.total_supply(), supply);
    assert_eq!(f.ledger.balance(&contract), MIN_BOND + 5_000 + MIN_BOND + (MIN_BOND - slashed));

    // Sanity of the measurement itself: signatures dominate, and costs grow with the batch.
    assert!(per_signature > 0 && per_task > per_signature, "per task {per_task}, per signature {per_signature}");
    rows.push(Row {
        operation: "→ per additional settled task (2 signatures)".into(),
        gas: per_task,
        storage: String::new(),
    });
    rows.push(Row {
        operation: "→ per additional signature on a task (its worker is a new payee)".into(),
        gas: per_signature,
        storage: String::new(),
    });

    let table = render(&rows, &wasm, &path, f.ledger.checksum().to_hex());
    println!("{table}");
    if std::env::var("STARLING_RECORD_GAS").is_ok_and(|v| v == "1") {
        record(&table);
    }
}

fn render(rows: &[Row], wasm: &[u8], path: &Path, checksum: String) -> String {
    let mut out = String::new();
    out.push_str("## Escrow contract gas (cosmwasm-vm)\n\n");
    out.push_str(&format!("Recorded {} on {} by `{RECORD_COMMAND}`.\n", utc_date(), machine()));
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
         replicas, quorum 2; workers' signatures are real ed25519 over `result_bytes`. Gas is\n\
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

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{} {}, {cpu}, {cores} cores", std::env::consts::OS, std::env::consts::ARCH)
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

/// Today's date (UTC) as YYYY-MM-DD, without a date crate.
fn utc_date() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
