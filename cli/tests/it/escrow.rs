//! Payment end to end: a real relay with the embedded ledger (the escrow contract's wasm in
//! cosmwasm-vm), real native workers (one of them lying), a paid job. Checks, from the ledger:
//! honest workers paid exactly for their accepted replicas, the liar paid nothing and slashed
//! once per settled task it contradicted, the relay's fees, the client's refund of the unused
//! deposit, a second job that cannot verify (the slashed liar gets no more paid work) refunded
//! in full, every deposit accounted for, total supply equal to what the faucet minted, and all of it unchanged after the relay is
//! killed with -9 and restarted.



use serde_json::Value;
use sqlx::Row;
use starling_protocol::JobId;
use starling_protocol::events::{ClientView, EscrowAccount, JobEscrow, JobState, ReplicaState, TaskState, WorkerView};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use starling_web_worker::kernels::mandelbrot;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use crate::support::*;

/// The embedded ledger's defaults (relay/src/escrow/embedded.rs), which this test relies on.
const FAUCET: u128 = 1_000_000_000;
const MIN_BOND: u128 = 10_000_000;
const FEE_BPS: u128 = 500;
const SLASH_BPS: u128 = 5_000;
const REPORTER_BPS: u128 = 1_000;
const PRICE: u64 = 1_000;

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

async fn wait_closed(api: &Api, job: JobId) -> JobEscrow {
    let start = Instant::now();
    loop {
        let e: JobEscrow = get(api, &format!("/v1/jobs/{job}/escrow")).await;
        if e.refunded.is_some() {
            return e;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "job {job} never closed in escrow: {e:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sum of all balances, everything the faucet minted, and `account`'s balance, read from the
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
    let mut relay = spawn_relay(&data, 0, &[]);
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
        max_replicas: 3,
        price_per_replica: u64::MAX / 64,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 1,
    };
    let resp =
        api.http.post(format!("{}/v1/jobs", relay.base)).json(&api.key.sign_job(greedy.clone())).send().await.unwrap();
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
    let deposit = tasks * 3 * (price + fee);
    assert_eq!(amount(&escrow.deposit), deposit);
    assert_eq!(escrow.settled_tasks as u128, tasks, "every verified task settled");
    assert_eq!(amount(&escrow.paid_to_workers), paid_replicas * price);
    assert_eq!(amount(&escrow.paid_to_relay), paid_replicas * fee);
    let refund = amount(escrow.refunded.as_deref().unwrap());
    assert_eq!(refund, deposit - paid_replicas * (price + fee));
    assert!(refund > 0, "unused replicas are refunded");

    // Honest workers: paid exactly for their accepted replicas, bonds intact.
    for key in &keys {
        let (view, account) = worker_account(&api, key).await;
        let n = accepted.get(key).copied().unwrap_or(0);
        assert_eq!(u128::from(view.replicas_accepted as u32), n);
        assert_eq!(amount(&account.received), n * price, "worker {key} earned");
        assert_eq!(amount(&account.balance), n * price, "worker {key} balance");
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

    // The client: the faucet's grant, less what work and fees cost, plus its share of slashes.
    let to_reporter = |cut: u128| cut * REPORTER_BPS / 10_000;
    let mut client_share = 0;
    let mut relay_share = 0;
    let mut s = MIN_BOND;
    for _ in 0..liar_contradicted {
        let cut = s * SLASH_BPS / 10_000;
        s -= cut;
        relay_share += to_reporter(cut);
        client_share += cut - to_reporter(cut);
    }
    let client: ClientView = get(&api, &format!("/v1/clients/{}", api.key.public())).await;
    let client = client.escrow.unwrap();
    assert_eq!(amount(&client.balance), FAUCET - paid_replicas * (price + fee) + client_share);
    assert_eq!(amount(&client.received), refund + client_share);

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
    assert_eq!(amount(&after.escrow.unwrap().balance), FAUCET - paid_replicas * (price + fee) + client_share);

    // Supply: only the faucet creates money (the client's grant and four bonds).
    let relay_address = health["escrow"]["relay_address"].as_str().unwrap().to_string();
    relay.proc.kill9();
    let (supply, minted, relay_balance) = ledger_totals(&data, &relay_address).await;
    assert_eq!(minted, FAUCET + 4 * MIN_BOND);
    assert_eq!(supply, minted, "money was created or destroyed");
    // The relay: its fees, and the reporter's share of each slash it proved.
    assert_eq!(relay_balance, paid_replicas * fee + relay_share);

    // The ledger survives kill -9: same accounts after a restart.
    let relay = spawn_relay(&data, 0, &[]);
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
