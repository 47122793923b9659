//! Payment end to end: a real relay with the embedded ledger (the escrow contract's wasm in
//! cosmwasm-vm), real native workers (one of them lying), paid jobs.
//!
//! The first test checks, from the ledger: honest workers paid exactly for their accepted
//! replicas, the liar paid nothing and slashed (burned) once per settled task it contradicted,
//! the relay's fees, the client's refund of the unused deposit, a second job that cannot verify
//! (the slashed liar gets no more paid work) refunded in full, supply equal to what the faucet
//! minted less what slashing burned, and all of it unchanged after the relay is killed with -9
//! and restarted.
//!
//! The second is issue 9's attacks on money: a registration naming someone else's account as
//! owner is refused and that account keeps its money; a result signature a worker made for
//! another deployment does not slash it here (one made for this deployment does); a tolerance
//! job whose workers return floats one ulp apart pays every one of them; an owner unbonds with
//! its own signature, while a stranger's or a replayed one moves nothing.
//!
//! The third is issue 10's stale standing: a worker whose owner unbonds below the minimum after
//! connecting gets no more paid work within the relay's standing refresh.

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sqlx::Row;
use starling_protocol::api::{
    AccountActionView, AccountRequest, ClientView, EscrowAccount, Health, JobEscrow, JobState, ReplicaState, TaskState,
    WorkerView,
};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use starling_protocol::sign::{AccountAction, Deployment, EscrowDeployment, Keypair, account_bytes};
use starling_protocol::worker::{
    AdapterInfo, Backend, Capabilities, DeviceLimits, Platform, RelayMessage, WorkerMessage,
};
use starling_protocol::{ErrorBody, ErrorCode, PROTOCOL_VERSION, TaskId, sha256};
use starling_relay::escrow::embedded::{Embedded, EmbeddedConfig};
use starling_relay::escrow::{EscrowBridge, EscrowError, Evidence};
use starling_web_worker::kernels::{mandelbrot, matmul_f32};
use starling_web_worker::native;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The embedded ledger's defaults (relay/src/escrow/embedded.rs), which this test relies on.
const FAUCET: u128 = 1_000_000_000;
const MIN_BOND: u128 = 10_000_000;
const FEE_BPS: u128 = 500;
const SLASH_BPS: u128 = 5_000;
const PRICE: u64 = 1_000;
/// The faucet the tests turn on (it is off by default).
const FAUCET_ARGS: [&str; 2] = ["--faucet", "1000000000"];

fn amount(s: &str) -> u128 {
    s.parse().unwrap()
}

async fn get<T: serde::de::DeserializeOwned>(api: &Api, path: &str) -> T {
    let resp = api.http.get(format!("{}{path}", api.base)).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "GET {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

async fn worker_account(api: &Api, key: &str) -> (WorkerView, EscrowAccount) {
    let view: WorkerView = get(api, &format!("/v1/workers/{key}")).await;
    let account = view.escrow.clone().unwrap_or_else(|| panic!("worker {key} is not registered in escrow"));
    (view, account)
}

async fn wait_registered(api: &Api, keys: &[&str]) {
    let start = Instant::now();
    for key in keys {
        loop {
            let resp = api.http.get(format!("{}/v1/workers/{key}", api.base)).send().await.unwrap();
            if resp.status().is_success() && resp.json::<WorkerView>().await.unwrap().escrow.is_some() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "worker {key} never registered in escrow");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sum of all bank balances (the contract's included), everything the faucet minted, and `account`'s balance, read from the
/// ledger's own file.
async fn ledger_totals(data: &std::path::Path, account: &str) -> (u128, u128, u128) {
    let url = format!("sqlite://{}?mode=ro", data.join("ledger.sqlite").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let sum = |rows: Vec<sqlx::sqlite::SqliteRow>| rows.iter().map(|r| amount(r.get::<&str, _>(0))).sum::<u128>();
    let balances = sum(sqlx::query("SELECT balance FROM ledger_accounts").fetch_all(&db).await.unwrap());
    let minted = sum(sqlx::query("SELECT amount FROM ledger_faucet").fetch_all(&db).await.unwrap());
    let one = sum(sqlx::query("SELECT balance FROM ledger_accounts WHERE address = $1")
        .bind(account)
        .fetch_all(&db)
        .await
        .unwrap());
    db.close().await;
    (balances, minted, one)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_workers_are_paid_exactly_the_liar_is_slashed_and_the_client_refunded() {
    let (dir, data) = tempdir();
    let mut relay = spawn_relay(&data, 0, &FAUCET_ARGS);
    let mut procs = Vec::new();
    let mut keys = Vec::new();
    for name in ["w1", "w2", "w3"] {
        let mut w = spawn_worker(&relay.base, dir.path(), name, &[]);
        keys.push(worker_key(&mut w));
        procs.push(w);
    }
    let mut liar = spawn_worker(&relay.base, dir.path(), "liar", &["--corrupt-results"]);
    let liar_key = worker_key(&mut liar);
    let api = Api::new(&relay.base);
    api.wait_workers(4).await;
    let all: Vec<&str> = keys.iter().map(String::as_str).chain([liar_key.as_str()]).collect();
    wait_registered(&api, &all).await;

    let health: Value = get(&api, "/v1/health").await;
    assert_eq!(health["escrow"]["backend"], "embedded", "{health}");

    // A client with no money cannot open a paid job... (the faucet funds a new account once, so
    // ask for more than it gives) and nothing is stored.
    let mut greedy = JobSpec {
        label: "too expensive".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot },
        tasks: mandelbrot::tile_job_tasks(64, 32, 16, 50, (-0.6, 0.0), 3.0),
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        // Two against the liar escalates: three honest owners against one verifies.
        max_replicas: 4,
        price_per_replica: u64::MAX / 64,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 1,
        adaptive: None,
        kernels: Vec::new(),
    };
    let resp =
        api.http.post(format!("{}/v1/jobs", relay.base)).json(&api.sign(greedy.clone()).await).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 402, "{}", resp.text().await.unwrap());
    let jobs: Vec<Value> = get(&api, "/v1/jobs").await;
    assert!(jobs.is_empty(), "a refused job was stored: {jobs:?}");

    // ...and one it can pay for runs, is verified, settled, and closed.
    greedy.price_per_replica = PRICE;
    greedy.label = "paid render".into();
    greedy.tasks = mandelbrot::tile_job_tasks(96, 64, 16, 100, (-0.6, 0.0), 3.0);
    let spec = greedy;
    let tasks = spec.tasks.len() as u128;
    let job = api.submit(spec.clone()).await;
    let detail = api.wait_done(job.id).await;
    let escrow = wait_closed(&api, job.id).await;

    // What the relay verified, per worker.
    let mut accepted: HashMap<String, u128> = HashMap::new();
    let mut liar_contradicted = 0u32;
    for t in &detail.tasks {
        for r in &t.replicas {
            match r.state {
                ReplicaState::Accepted => *accepted.entry(r.worker.to_hex()).or_default() += 1,
                ReplicaState::Rejected if r.worker.to_hex() == liar_key => liar_contradicted += 1,
                _ => {}
            }
        }
    }
    assert!(liar_contradicted > 0, "the liar took part and was caught");
    let paid_replicas: u128 = accepted.values().sum();
    let price = u128::from(PRICE);
    let fee = price * FEE_BPS / 10_000;

    // The deposit covers max_replicas per task; what was not paid came back.
    let deposit = tasks * 4 * (price + fee);
    assert_eq!(amount(&escrow.deposit), deposit);
    assert_eq!(escrow.settled_tasks as u128, tasks, "every verified task settled");
    assert_eq!(amount(&escrow.paid_to_workers), paid_replicas * price);
    assert_eq!(amount(&escrow.paid_to_relay), paid_replicas * fee);
    let refund = amount(escrow.refunded.as_deref().unwrap());
    assert_eq!(refund, deposit - paid_replicas * (price + fee));
    assert!(refund > 0, "unused replicas are refunded");

    // Honest workers (each its own owner): paid exactly for their accepted replicas, bonds
    // intact; the bond came from the faucet's deposit into their account.
    for key in &keys {
        let (view, account) = worker_account(&api, key).await;
        let n = accepted.get(key).copied().unwrap_or(0);
        assert_eq!(u128::from(view.replicas_accepted as u32), n);
        assert_eq!(account.address, *key, "the worker key owns itself");
        assert_eq!(amount(&account.received), n * price, "worker {key} earned");
        assert_eq!(amount(&account.balance), FAUCET - MIN_BOND + n * price, "worker {key} balance");
        assert_eq!(amount(account.bonded.as_deref().unwrap()), MIN_BOND);
        assert_eq!(account.slashed.as_deref(), Some("0"));
    }
    // The liar: nothing earned; half its stake taken per settled task it contradicted.
    let (_, liar_account) = worker_account(&api, &liar_key).await;
    assert_eq!(amount(&liar_account.received), 0);
    let mut stake = MIN_BOND;
    let mut slashed = 0;
    for _ in 0..liar_contradicted {
        let cut = stake * SLASH_BPS / 10_000;
        stake -= cut;
        slashed += cut;
    }
    assert_eq!(amount(liar_account.slashed.as_deref().unwrap()), slashed, "one slash per contradicted task");
    assert_eq!(amount(liar_account.bonded.as_deref().unwrap()), stake);

    // The client: the faucet's grant, less what work and fees cost. Slashed stake is burned:
    // nobody who can arrange a dissent (the client least of all) gains from it.
    let client: ClientView = get(&api, &format!("/v1/clients/{}", api.key.public())).await;
    let client = client.escrow.unwrap();
    assert_eq!(amount(&client.balance), FAUCET - paid_replicas * (price + fee));
    assert_eq!(amount(&client.received), refund);

    // Work that is never verified is refunded in full. The liar, slashed below the minimum
    // bond, takes no more paid work; this job wants 4 agreeing workers and only the 3 honest
    // ones remain, so no task can verify before the deadline.
    let unverifiable = JobSpec {
        label: "needs four".into(),
        tasks: mandelbrot::tile_job_tasks(32, 32, 16, 60, (-0.6, 0.0), 3.0),
        replicas: 4,
        quorum: 4,
        max_replicas: 4,
        deadline_secs: 3,
        nonce: 2,
        ..spec.clone()
    };
    let stuck_tasks = unverifiable.tasks.len() as u128;
    let stuck = api.submit(unverifiable).await;
    let stuck_detail = api.wait_for(stuck.id, Duration::from_secs(60), |d| d.summary.state != JobState::Running).await;
    assert_eq!(stuck_detail.summary.state, JobState::Failed);
    assert!(stuck_detail.tasks.iter().all(|t| t.state == TaskState::Failed), "{:?}", stuck_detail.tasks);
    let stuck_workers: Vec<String> =
        stuck_detail.tasks.iter().flat_map(|t| t.replicas.iter().map(|r| r.worker.to_hex())).collect();
    assert!(!stuck_workers.contains(&liar_key), "a worker below the minimum bond was given paid work");
    assert!(!stuck_workers.is_empty(), "the honest workers took part");
    let stuck_escrow = wait_closed(&api, stuck.id).await;
    let stuck_deposit = stuck_tasks * 4 * (price + fee);
    assert_eq!(amount(&stuck_escrow.deposit), stuck_deposit);
    assert_eq!(stuck_escrow.settled_tasks, 0);
    assert_eq!(amount(&stuck_escrow.paid_to_workers), 0);
    assert_eq!(
        stuck_escrow.refunded.as_deref().map(amount),
        Some(stuck_deposit),
        "unverified work is refunded in full"
    );
    let after: ClientView = get(&api, &format!("/v1/clients/{}", api.key.public())).await;
    assert_eq!(amount(&after.escrow.unwrap().balance), FAUCET - paid_replicas * (price + fee));

    // Supply: only the faucet creates money (one grant each to the client and four workers);
    // only slashing destroys it.
    let relay_address = health["escrow"]["relay_address"].as_str().unwrap().to_string();
    relay.proc.kill9();
    let (supply, minted, relay_balance) = ledger_totals(&data, &relay_address).await;
    assert_eq!(minted, 5 * FAUCET);
    assert_eq!(supply, minted - slashed, "money was created or destroyed");
    // The relay: its fees, nothing else.
    assert_eq!(relay_balance, paid_replicas * fee);

    // The ledger survives kill -9: same accounts after a restart.
    let relay = spawn_relay(&data, 0, &FAUCET_ARGS);
    let api = Api::new(&relay.base);
    for key in &keys {
        let (_, account) = worker_account(&api, key).await;
        assert_eq!(amount(&account.received), accepted.get(key).copied().unwrap_or(0) * price);
    }
    let again: JobEscrow = get(&api, &format!("/v1/jobs/{}/escrow", job.id)).await;
    assert_eq!(again, escrow);
    drop(procs);
    drop(liar);
}

/// A small paid job.
fn pi_job() -> JobSpec {
    JobSpec {
        label: "pi".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks: starling_web_worker::kernels::monte_carlo_pi::tasks(1, 1, 4, 32),
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 2,
        price_per_replica: PRICE,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 0,
        adaptive: None,
        kernels: Vec::new(),
    }
}

/// The capabilities of a CPU-only native worker, for a hand-driven connection.
fn cpu_caps() -> Capabilities {
    Capabilities {
        backend: Backend::Cpu,
        platform: Platform::Native,
        adapter: AdapterInfo::default(),
        limits: DeviceLimits {
            max_buffer_size: 1 << 28,
            max_storage_buffer_binding_size: 1 << 27,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroups_per_dimension: 65_535,
        },
        asking_price: 0,
        duty_cycle: 1.0,
        slots: 1,
    }
}

/// A worker that speaks the protocol by hand: it answers the relay's registration request by
/// naming `victim` as the owner to bond from, an account whose key it does not hold. Returns
/// what the relay answered.
async fn register_as(base: &str, attacker: &Keypair, victim: &Keypair) -> ErrorBody {
    let url = format!("{}/v1/workers/ws", base.replacen("http", "ws", 1));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut ws, mut stream) = ws.split();
    let send = |m: &WorkerMessage| Message::Text(serde_json::to_string(m).unwrap().into());
    let mut next = async || loop {
        match stream.next().await.expect("relay answers").unwrap() {
            Message::Text(t) => return serde_json::from_str::<RelayMessage>(t.as_str()).unwrap(),
            _ => continue,
        }
    };
    let hello = WorkerMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_key: attacker.public(),
        capabilities: cpu_caps(),
    };
    ws.send(send(&hello)).await.unwrap();
    let RelayMessage::Challenge { nonce } = next().await else { panic!("no challenge") };
    ws.send(send(&WorkerMessage::Auth { signature: attacker.sign_auth(&nonce) })).await.unwrap();
    let RelayMessage::Welcome { escrow: Some(welcomed), .. } = next().await else { panic!("no paid welcome") };
    let RelayMessage::Register { escrow, bond, .. } = next().await else { panic!("not asked to register") };
    assert_eq!(escrow, welcomed);
    let deployment = escrow.as_deployment();
    let action = AccountAction::Bond { worker: attacker.public(), amount: u128::from(bond) };
    // The owner's authorization, signed by the attacker: the one signature it cannot make.
    let forged = WorkerMessage::Register {
        owner: victim.public(),
        nonce: 0,
        bond,
        authorization: attacker.sign(&account_bytes(deployment, &victim.public(), 0, &action)),
        proof: attacker.sign_register_v2(deployment, &victim.public()),
    };
    ws.send(send(&forged)).await.unwrap();
    loop {
        if let RelayMessage::Error(e) = next().await {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_consent_signatures_bind_to_one_deployment_and_tolerance_pays_every_accepted_worker() {
    let (dir, data) = tempdir();
    // Another relay with its own embedded ledger: another deployment. It runs the defaults, so
    // no faucet: a new client has no money and its paid job is refused, nothing stored.
    let other_data = dir.path().join("other-relay");
    let other = spawn_relay(&other_data, 0, &[]);
    let other_api = Api::new(&other.base);
    let other_health: Health = get(&other_api, "/v1/health").await;
    let other_escrow = other_health.escrow.expect("the other relay has escrow");
    let penniless = other_api.sign(JobSpec { nonce: 1, ..pi_job() }).await;
    let resp = other_api.http.post(format!("{}/v1/jobs", other.base)).json(&penniless).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 402, "{}", resp.text().await.unwrap());
    let broke: ClientView = get(&other_api, &format!("/v1/clients/{}", other_api.key.public())).await;
    assert_eq!(amount(&broke.escrow.unwrap().balance), 0, "the faucet is off by default");
    assert!(get::<Vec<Value>>(&other_api, "/v1/jobs").await.is_empty());
    drop(other);

    let token_file = dir.path().join("admin.token");
    let token_arg = token_file.to_str().unwrap();
    let relay = spawn_relay(&data, 0, &[FAUCET_ARGS[0], FAUCET_ARGS[1], "--admin-token-file", token_arg]);
    let api = Api::new(&relay.base);
    let health: Health = get(&api, "/v1/health").await;
    let here = health.escrow.expect("escrow");

    // An operator funds an account with `starling fund`; a wrong admin token moves nothing.
    let funded = Keypair::generate();
    let forged = api
        .http
        .post(format!("{}/v1/admin/deposits", relay.base))
        .bearer_auth("0".repeat(64))
        .json(&serde_json::json!({"account": funded.public(), "amount": "5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let balance = async |key: &Keypair| {
        let view: ClientView = get(&api, &format!("/v1/clients/{}", key.public())).await;
        amount(&view.escrow.unwrap().balance)
    };
    assert_eq!(balance(&funded).await, 0);
    let out = std::process::Command::new(BIN)
        .args(["fund", "--relay", &relay.base, "--admin-token-file", token_arg, "--amount", "12345", "--account"])
        .arg(funded.public().to_hex())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(balance(&funded).await, 12_345);
    assert_ne!(here.chain_id, other_escrow.chain_id, "two embedded ledgers are two deployments");
    let mut w1 = spawn_worker(&relay.base, dir.path(), "w1", &[]);
    let mut w3 = spawn_worker(&relay.base, dir.path(), "w3", &[]);
    let (k1, k3) = (worker_key(&mut w1), worker_key(&mut w3));
    wait_registered(&api, &[&k1, &k3]).await;

    // An exact job settled by w1 and w3; the client's account is funded by the faucet.
    let exact = JobSpec {
        label: "exact".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot },
        tasks: mandelbrot::tile_job_tasks(16, 16, 16, 40, (-0.6, 0.0), 3.0),
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 2,
        price_per_replica: PRICE,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 7,
        adaptive: None,
        kernels: Vec::new(),
    };
    let exact_job = api.submit(exact.clone()).await;
    let exact_detail = api.wait_done(exact_job.id).await;
    let exact_escrow = wait_closed(&api, exact_job.id).await;
    assert_eq!(exact_escrow.settled_tasks, 1);

    // 1. A stranger names the client's account as the owner of its bond: refused, and the
    //    client's balance does not move; the stranger is not registered.
    let victim_before: ClientView = get(&api, &format!("/v1/clients/{}", api.key.public())).await;
    let victim_before = victim_before.escrow.unwrap();
    assert!(amount(&victim_before.balance) >= MIN_BOND, "the victim has money to steal");
    let attacker = Keypair::generate();
    let refusal = register_as(&relay.base, &attacker, &api.key).await;
    assert_eq!(refusal.code, ErrorCode::BadSignature, "{refusal:?}");
    let victim_after: ClientView = get(&api, &format!("/v1/clients/{}", api.key.public())).await;
    assert_eq!(victim_after.escrow.unwrap(), victim_before, "the victim's account moved");
    // Its connection may not have been recorded yet (404); if it was, it has no escrow account.
    let resp = api.http.get(format!("{}/v1/workers/{}", relay.base, attacker.public())).send().await.unwrap();
    if resp.status().as_u16() != 404 {
        let stranger: WorkerView = resp.json().await.unwrap();
        assert_eq!(stranger.escrow, None, "the stranger was registered");
    }
    let unbonded: ClientView = get(&api, &format!("/v1/clients/{}", attacker.public())).await;
    assert_eq!(amount(&unbonded.escrow.unwrap().balance), 0, "the stranger's account got money");

    // A paid job posted without its client's deposit authorization, or with one signed for the
    // other deployment, is refused: nothing is stored and the client's account does not move.
    let again = JobSpec { nonce: 70, ..exact.clone() };
    let unsigned = api.key.sign_job(again.clone());
    let foreign = api.key.sign_paid_job(
        again,
        Deployment { chain_id: &other_escrow.chain_id, contract: &other_escrow.contract },
        &other_escrow.relay_address,
        u64::MAX,
    );
    for (case, body) in [("no deposit authorization", unsigned), ("signed for another deployment", foreign)] {
        let resp = api.http.post(format!("{}/v1/jobs", relay.base)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 422, "{case}: {text}");
    }
    let jobs: Vec<Value> = get(&api, "/v1/jobs").await;
    assert_eq!(jobs.len(), 1, "a refused job was stored: {jobs:?}");
    let unmoved: ClientView = get(&api, &format!("/v1/clients/{}", api.key.public())).await;
    assert_eq!(unmoved.escrow.unwrap(), victim_before);

    // 2. A tolerance job: w2's floats are one ulp off the others'. Every worker is paid.
    let mut w2 = spawn_worker(&relay.base, dir.path(), "w2", &["--perturb-floats"]);
    let k2 = worker_key(&mut w2);
    wait_registered(&api, &[&k2]).await;
    let (m, n, k) = (8, 8, 8);
    let a = api.upload(matmul_f32::f32s_to_bytes(&matmul_f32::random_matrix((m * k) as usize, 1))).await;
    let b = api.upload(matmul_f32::f32s_to_bytes(&matmul_f32::random_matrix((k * n) as usize, 2))).await;
    let tolerant = JobSpec {
        label: "tolerance".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MatmulF32 },
        tasks: matmul_f32::tasks_for(m, n, k, a, b, 4),
        comparison: Comparison::Tolerance { rel: 1e-4, abs: 1e-5 },
        replicas: 3,
        quorum: 3,
        max_replicas: 3,
        nonce: 8,
        ..exact.clone()
    };
    let tasks = tolerant.tasks.len() as u128;
    let before: HashMap<String, u128> = {
        let mut m = HashMap::new();
        for key in [&k1, &k2, &k3] {
            m.insert(key.clone(), amount(&worker_account(&api, key).await.1.received));
        }
        m
    };
    let tolerant_job = api.submit(tolerant).await;
    let detail = api.wait_done(tolerant_job.id).await;
    let hashes: std::collections::HashSet<_> =
        detail.tasks.iter().flat_map(|t| t.replicas.iter().map(|r| r.output_hash)).collect();
    assert!(hashes.len() > tasks as usize, "w2's results differ in their bytes");
    let escrow = wait_closed(&api, tolerant_job.id).await;
    assert_eq!(escrow.settled_tasks as u128, tasks);
    assert_eq!(amount(&escrow.paid_to_workers), tasks * 3 * u128::from(PRICE), "every accepted replica is paid");
    for key in [&k1, &k2, &k3] {
        let earned = amount(&worker_account(&api, key).await.1.received) - before[key];
        assert_eq!(earned, tasks * u128::from(PRICE), "worker {key} was paid for its accepted work");
    }

    // 3. An owner takes its stake back with its own signature; a forged or replayed one moves
    //    nothing.
    let w3_key = native::load_or_create_key(&dir.path().join("w3.key")).unwrap();
    let account = |key: &Keypair| {
        let api = &api;
        let key = key.public();
        async move { get::<ClientView>(api, &format!("/v1/clients/{key}")).await.escrow.unwrap() }
    };
    let before = account(&w3_key).await;
    let unbond = AccountActionView::Unbond { worker: w3_key.public(), amount: MIN_BOND.to_string() };
    let d = EscrowDeployment { chain_id: here.chain_id.clone(), contract: here.contract.clone() };
    let sign = |key: &Keypair| {
        key.sign(&account_bytes(d.as_deployment(), &w3_key.public(), before.nonce, &unbond.to_action().unwrap()))
    };
    let post = async |signature| {
        let req = AccountRequest { nonce: before.nonce, action: unbond.clone(), signature };
        let url = format!("{}/v1/accounts/{}/actions", relay.base, w3_key.public());
        let resp = api.http.post(url).json(&req).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let (status, text) = post(sign(&attacker)).await;
    assert_eq!(status, 401, "a stranger's signature: {text}");
    assert_eq!(account(&w3_key).await, before);
    let (status, text) = post(sign(&w3_key)).await;
    assert_eq!(status, 200, "the owner's own unbond: {text}");
    let after: EscrowAccount = serde_json::from_str(&text).unwrap();
    assert_eq!(after.nonce, before.nonce + 1);
    let (status, text) = post(sign(&w3_key)).await;
    assert_eq!(status, 422, "a replayed unbond: {text}");
    assert_eq!(account(&w3_key).await, after);

    // 4. Evidence against w1 for the exact job's settled task: a signature w1 made for the other
    //    deployment fails `Slash` here; the same claim signed for this deployment succeeds.
    drop(relay);
    let w1_key = native::load_or_create_key(&dir.path().join("w1.key")).unwrap();
    assert_eq!(w1_key.public().to_hex(), k1);
    let task = TaskId { job: exact_job.id, index: 0 };
    assert!(exact_detail.tasks[0].replicas.iter().any(|r| r.worker == w1_key.public()), "w1 signed task 0");
    let output_len = u64::from(exact.tasks[0].output_size);
    let forged = sha256(b"a result w1 never computed here");
    let digest = exact.digest();
    let contract =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contracts/starling_escrow.wasm");
    let ledger = Embedded::open(&data, EmbeddedConfig::new(contract)).await.unwrap();
    let evidence = |d: &EscrowDeployment| Evidence {
        job: exact_job.id,
        index: 0,
        worker: w1_key.public(),
        output_hash: forged,
        output_len,
        signature: w1_key.sign_result_v2(d.as_deployment(), task, &digest, &forged, output_len),
    };
    let elsewhere =
        EscrowDeployment { chain_id: other_escrow.chain_id.clone(), contract: other_escrow.contract.clone() };
    let refused = ledger.slash(&evidence(&elsewhere)).await;
    assert!(matches!(refused, Err(EscrowError::Refused(_))), "{refused:?}");
    let standing = ledger.worker_account(&w1_key.public()).await.unwrap().unwrap();
    assert_eq!(standing.slashed.as_deref(), Some("0"), "slashed by a signature for another deployment");
    let here = EscrowDeployment { chain_id: here.chain_id, contract: here.contract };
    ledger.slash(&evidence(&here)).await.expect("a signature for this deployment is evidence");
    let standing = ledger.worker_account(&w1_key.public()).await.unwrap().unwrap();
    assert_eq!(amount(standing.slashed.as_deref().unwrap()), MIN_BOND * SLASH_BPS / 10_000);
    drop((w1, w2, w3));
}

/// Issue 10: two colluding workers (their corruption is the same, so they always agree) and a
/// copier (it signs an earlier task's output again) among four honest workers. With every agreed
/// task audited, no wrong result is accepted, and every cheater is slashed below the minimum
/// bond: out of paid work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colluders_and_a_copier_get_no_wrong_result_accepted_and_lose_paid_work() {
    let (dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &[FAUCET_ARGS[0], FAUCET_ARGS[1], "--audit-rate", "1"]);
    let mut procs = Vec::new();
    let mut honest = Vec::new();
    for name in ["h1", "h2", "h3", "h4"] {
        let mut w = spawn_worker(&relay.base, dir.path(), name, &[]);
        honest.push(worker_key(&mut w));
        procs.push(w);
    }
    let mut cheaters = Vec::new();
    for (name, flag) in
        [("colluder1", "--corrupt-results"), ("colluder2", "--corrupt-results"), ("copier", "--copy-results")]
    {
        let mut w = spawn_worker(&relay.base, dir.path(), name, &[flag]);
        cheaters.push(worker_key(&mut w));
        procs.push(w);
    }
    let api = Api::new(&relay.base);
    api.wait_workers(7).await;
    let all: Vec<&str> = honest.iter().chain(&cheaters).map(String::as_str).collect();
    wait_registered(&api, &all).await;

    let spec = JobSpec {
        label: "colluders".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot },
        tasks: mandelbrot::tile_job_tasks(64, 64, 16, 60, (-0.6, 0.0), 3.0),
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 7,
        price_per_replica: PRICE,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 1,
        adaptive: None,
        kernels: Vec::new(),
    };
    let job = api.submit(spec.clone()).await;
    let detail = api.wait_for(job.id, Duration::from_secs(180), |d| d.summary.state != JobState::Running).await;
    let expected = cpu_outputs(&api, &spec).await;
    // On a network this small the colluders can hold out against a sample (two of seven votes
    // need five against them): such a task fails and is refunded. None is settled wrong.
    let mut verified = 0;
    for (i, want) in expected.iter().enumerate() {
        if detail.tasks[i].state == TaskState::Verified {
            verified += 1;
            assert_eq!(&api.output(job.id, i as u32).await, want, "task {i} accepted a wrong result");
        }
    }
    assert!(verified > 0, "no task verified");
    wait_closed(&api, job.id).await;
    for key in &cheaters {
        let (view, account) = worker_account(&api, key).await;
        assert!(view.replicas_rejected > 0, "cheater {key} took part and was caught");
        assert!(amount(account.slashed.as_deref().unwrap()) > 0, "cheater {key} slashed");
        assert!(amount(account.bonded.as_deref().unwrap()) < MIN_BOND, "cheater {key} is out of paid work");
    }
    for key in &honest {
        let (view, account) = worker_account(&api, key).await;
        assert_eq!((view.replicas_rejected, account.slashed.as_deref()), (0, Some("0")), "honest {key}");
    }
}

/// Issue 10's stale standing: a worker's escrow standing is read again while it stays online, so
/// an owner that unbonds below the minimum after connecting takes its worker out of paid work
/// within the relay's `--standing-refresh-ms`; the worker keeps doing unpaid work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_unbonded_below_the_minimum_gets_no_more_paid_work() {
    const REFRESH_MS: u64 = 300;
    let (dir, data) = tempdir();
    let refresh = REFRESH_MS.to_string();
    let relay = spawn_relay(&data, 0, &[FAUCET_ARGS[0], FAUCET_ARGS[1], "--standing-refresh-ms", &refresh]);
    let api = Api::new(&relay.base);
    let mut w1 = spawn_worker(&relay.base, dir.path(), "w1", &[]);
    let mut w2 = spawn_worker(&relay.base, dir.path(), "w2", &[]);
    let (k1, k2) = (worker_key(&mut w1), worker_key(&mut w2));
    wait_registered(&api, &[&k1, &k2]).await;
    let accepted = |detail: &starling_protocol::api::JobDetail| {
        let mut keys: Vec<String> = detail.tasks[0]
            .replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Accepted)
            .map(|r| r.worker.to_hex())
            .collect();
        keys.sort();
        keys
    };
    let mut both = vec![k1.clone(), k2.clone()];
    both.sort();

    // Both bonded: a paid job that needs two workers is verified by both.
    let paid = JobSpec { label: "paid, both bonded".into(), nonce: 1, ..pi_job() };
    let first = api.submit(paid.clone()).await;
    assert_eq!(accepted(&api.wait_done(first.id).await), both);

    // w2's owner (its own key) unbonds one unit, leaving the bond below the minimum.
    let w2_key = native::load_or_create_key(&dir.path().join("w2.key")).unwrap();
    assert_eq!(w2_key.public().to_hex(), k2);
    let health: Health = get(&api, "/v1/health").await;
    let here = health.escrow.expect("escrow");
    let deployment = EscrowDeployment { chain_id: here.chain_id, contract: here.contract };
    let before: ClientView = get(&api, &format!("/v1/clients/{k2}")).await;
    let nonce = before.escrow.unwrap().nonce;
    let unbond = AccountActionView::Unbond { worker: w2_key.public(), amount: "1".into() };
    let signature =
        w2_key.sign(&account_bytes(deployment.as_deployment(), &w2_key.public(), nonce, &unbond.to_action().unwrap()));
    let resp = api
        .http
        .post(format!("{}/v1/accounts/{k2}/actions", relay.base))
        .json(&AccountRequest { nonce, action: unbond, signature })
        .send()
        .await
        .unwrap();
    let (status, text) = (resp.status().as_u16(), resp.text().await.unwrap());
    assert_eq!(status, 200, "{text}");
    let after: EscrowAccount = serde_json::from_str(&text).unwrap();
    assert_eq!(after.nonce, nonce + 1, "the unbond was applied");

    // Within the refresh (waited three times over) the relay has read it again: a paid job that
    // needs two workers finds only w1 and fails at its deadline, never handed to w2.
    tokio::time::sleep(Duration::from_millis(3 * REFRESH_MS)).await;
    let stuck = api.submit(JobSpec { label: "paid, w2 unbonded".into(), nonce: 2, deadline_secs: 3, ..pi_job() }).await;
    let detail = api.wait_for(stuck.id, Duration::from_secs(60), |d| d.summary.state != JobState::Running).await;
    assert_eq!(detail.summary.state, JobState::Failed, "{:?}", detail.summary);
    let holders: Vec<String> = detail.tasks[0].replicas.iter().map(|r| r.worker.to_hex()).collect();
    assert!(!holders.contains(&k2), "a worker below the minimum bond was given paid work: {holders:?}");
    assert!(holders.contains(&k1), "the bonded worker took part: {holders:?}");

    // w2 is still online, and still does unpaid work.
    let unpaid = JobSpec { label: "unpaid".into(), nonce: 3, price_per_replica: 0, ..pi_job() };
    let free = api.submit(unpaid).await;
    assert_eq!(accepted(&api.wait_done(free.id).await), both);
    drop((w1, w2));
}
