//! `starling demo --relays N`: independent relays on one local development chain. Each relay is
//! its own `starling relay` process with its own SQLite database, registered in the escrow's
//! relay registry with its own fee; workers know only the chain and find the relays there; the
//! first relay is SIGKILLed mid-job, its workers move to the others, and its client's
//! unfinished deposit comes back at the deadline, refunded by another relay.

use crate::client::Client;
use crate::demo::{DEMO_FAUCET, DemoArgs};
use crate::discover::{self, Role};
use crate::jobs::{self, Kind, Rules};
use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use starling_devchain::{DevChain, Genesis};
use starling_protocol::api::{ClientView, JobEscrow, JobState, WorkerView};
use starling_protocol::sign::Keypair;
use starling_web_worker::native::{self, Compute, WorkerConfig};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHAIN_ID: &str = "starling-demo-1";
/// Each relay's fee in basis points: the first is the deployment's own, the others register.
const FEES: [u16; 8] = [500, 300, 100, 200, 400, 250, 350, 150];

fn name(i: usize) -> char {
    char::from(b'a' + i as u8)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A relay process, SIGKILLed when dropped.
struct RelayProc(Child);

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which relay (index into `endpoints`) lists `worker` online, if any.
async fn where_online(http: &reqwest::Client, endpoints: &[String], alive: &[bool], worker: &str) -> Option<usize> {
    for (i, endpoint) in endpoints.iter().enumerate().filter(|(i, _)| alive[*i]) {
        let Ok(resp) = http.get(format!("{endpoint}/v1/workers/{worker}")).send().await else { continue };
        if let Ok(view) = resp.json::<WorkerView>().await
            && view.online
        {
            return Some(i);
        }
    }
    None
}

async fn balance(client: &Client, key: &Keypair) -> Result<u128> {
    let view: ClientView = client.get(&format!("/v1/clients/{}", key.public())).await?;
    Ok(view.escrow.map(|a| a.balance.parse().unwrap_or(0)).unwrap_or(0))
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let n = args.relays as usize;
    let temp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let wasm_path = args
        .contract
        .clone()
        .or_else(|| crate::locate(&["target/contracts/starling_escrow.wasm"]))
        .context("the escrow contract is not built: run scripts/build-contract.sh (or pass --contract)")?;
    let wasm = std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;

    // Relay chain keys, ports and endpoints; a chain whose escrow names the first relay.
    let mut keys = Vec::new();
    let mut addresses = Vec::new();
    for i in 0..n {
        let path = dir.join(format!("relay-{}.chain-key", name(i)));
        addresses.push(crate::chain::key(&path)?);
        keys.push(path);
    }
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_>>()?;
    let endpoints: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let mut genesis = Genesis::new(CHAIN_ID, &addresses[0]);
    genesis.escrow.relay_endpoint = Some(endpoints[0].clone());
    genesis.escrow.relay_fee_bps = FEES[0];
    genesis.accounts = addresses.iter().map(|a| (a.clone(), 1_000_000_000)).collect();
    let chain = Arc::new(Mutex::new(DevChain::new(&wasm, genesis)?));
    let contract = chain.lock().expect("chain lock").contract().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let rpc = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(starling_devchain::rpc::serve(
        listener,
        chain.clone(),
        Duration::from_millis(500),
        stop(stop_rx.clone()),
    ));
    println!("chain     {rpc}  {CHAIN_ID}: a local development chain running the escrow {contract}");

    // The relays: separate processes, separate databases, one contract.
    let exe = std::env::current_exe()?;
    let mut relays = Vec::new();
    for i in 0..n {
        let data = dir.join(format!("relay-{}", name(i)));
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.join(format!("relay-{}.log", name(i))))?;
        let fee = FEES[i % FEES.len()].to_string();
        let mut child = Command::new(&exe)
            .args(["relay", "--listen", &format!("127.0.0.1:{}", ports[i]), "--data-dir"])
            .arg(&data)
            .args(["--escrow", "chain", "--chain-rpc", &rpc, "--chain-id", CHAIN_ID, "--chain-contract", &contract])
            .args(["--chain-prefix", starling_devchain::PREFIX, "--chain-key"])
            .arg(&keys[i])
            .args(["--chain-endpoint", &endpoints[i], "--chain-fee-bps", &fee, "--chain-refund-sweep-ms", "2000"])
            .args(["--www", ""])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("relay stdout")?).read_line(&mut line)?;
        if !line.contains("listening") {
            bail!("relay {} did not start: see {}", name(i), dir.join(format!("relay-{}.log", name(i))).display());
        }
        relays.push(Some(RelayProc(child)));
        println!("relay {}   {}  fee {fee} bps, its own SQLite in {}", name(i), endpoints[i], data.display());
    }
    let node = starling_relay::escrow::chain::Node::new(&rpc)?;
    let started = Instant::now();
    while node.relays(&contract).await?.iter().filter(|r| r.active).count() < n {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the relays did not register within a minute (logs in {})", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("registry  {n} relays registered in the contract");

    // A client and the workers' accounts, funded by the development faucet.
    let client_key = Keypair::generate();
    let worker_keys: Vec<Keypair> = (0..args.workers).map(|_| Keypair::generate()).collect();
    for key in worker_keys.iter().chain([&client_key]) {
        chain
            .lock()
            .expect("chain lock")
            .faucet_deposit(&key.public().0, DEMO_FAUCET)
            .map_err(|e| anyhow::anyhow!(e))?;
    }

    // Jobs posted on the first two relays wait for workers; the first is big enough to be cut
    // short when its relay is killed.
    let clients: Vec<Client> = endpoints.iter().map(|e| Client::new(e)).collect();
    let rules = Rules {
        replicas: 2,
        quorum: 2,
        max_replicas: 2,
        price: args.price,
        deadline: 600,
        label: String::new(),
        adaptive_audit: None,
    };
    let render = Kind::Mandelbrot {
        width: args.width,
        height: args.height,
        tile: 64,
        max_iter: 2_000,
        center_re: -0.6,
        center_im: 0.0,
        scale: 3.2,
        out: args.out.clone(),
    };
    let m = args.matrix;
    let matmul = Kind::Matmul { m, n: m, k: m, rows_per_task: (m / 4).max(1), seed: 7 };
    let mut posted = Vec::new();
    for (i, (label, kind)) in [("mandelbrot tiles", render), ("matmul f32", matmul)].into_iter().enumerate() {
        let rules = Rules { label: label.into(), ..rules.clone() };
        let prepared = jobs::prepare(&clients[i], &client_key, kind, &rules).await?;
        let job = clients[i]
            .submit(&client_key, prepared.spec.clone())
            .await
            .with_context(|| format!("submitting {label}"))?;
        println!("job       {label}: job {} on relay {}, {} tasks", job.id, name(i), job.tasks_total);
        posted.push((job, prepared));
    }

    // Workers that know only the chain: each reads the registry and goes where work waits.
    let compute = Compute::open(args.cpu).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let mut alive = vec![true; n];
    let mut placed = Vec::new();
    let mut handles = Vec::new();
    for key in worker_keys {
        let found = discover::relays(&rpc, &contract, Role::Worker).await?;
        let config = WorkerConfig {
            expect_contract: Some(contract.clone()),
            expect_chain_id: Some(found.chain_id.clone()),
            ..WorkerConfig::new(discover::endpoints(&found.relays))
        };
        let public = key.public().to_hex();
        handles.push(tokio::spawn(native::run(config, key, compute.clone(), stop(stop_rx.clone()))));
        let since = Instant::now();
        let at = loop {
            if let Some(i) = where_online(&http, &endpoints, &alive, &public).await {
                break i;
            }
            if since.elapsed() > Duration::from_secs(30) {
                bail!("worker {} found no relay", &public[..12]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!("worker    {}… found relay {} in the registry", &public[..12], name(at));
        placed.push((public, at));
    }

    // Relay a is killed mid-job; its workers move on.
    let (job_a, _) = &posted[0];
    let mut verified = 0;
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(120) {
        let detail = clients[0].job(job_a.id).await?;
        verified = detail.summary.tasks_verified;
        if verified > 0 || detail.summary.state != JobState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relays[0] = None;
    alive[0] = false;
    let killed = Instant::now();
    println!("relay a   SIGKILLed with job {} at {verified}/{} tasks verified", job_a.id, job_a.tasks_total);
    for (worker, _) in placed.iter().filter(|(_, at)| *at == 0) {
        loop {
            if let Some(i) = where_online(&http, &endpoints, &alive, worker).await {
                println!(
                    "worker    {}… moved to relay {} in {} ms",
                    &worker[..12],
                    name(i),
                    killed.elapsed().as_millis()
                );
                break;
            }
            if killed.elapsed() > Duration::from_secs(30) {
                bail!("worker {} did not move off the killed relay", &worker[..12]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Relay b's job completes and closes.
    let (job_b, prepared_b) = &posted[1];
    let bar = ProgressBar::new(u64::from(job_b.tasks_total));
    let done = jobs::follow(&clients[1], job_b, &bar).await?;
    bar.finish_and_clear();
    let report = jobs::finish(&clients[1], &done, &prepared_b.spec, &prepared_b.finish).await?;
    println!("job       {} on relay b {:?}: {report}", done.id, done.state);
    let since = Instant::now();
    loop {
        let e: JobEscrow = clients[1].get(&format!("/v1/jobs/{}/escrow", done.id)).await?;
        if e.refunded.is_some() {
            break;
        }
        if since.elapsed() > Duration::from_secs(60) {
            bail!("job {} on relay b was not closed in escrow", done.id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Relay a's client gets its unfinished deposit back at the deadline: the development chain's
    // clock jumps past it, and another relay's refund sweep sends the refund.
    let before = balance(&clients[1], &client_key).await?;
    chain.lock().expect("chain lock").advance_time(rules.deadline + 1 + starling_protocol::sign::SETTLE_GRACE_SECS + 1);
    println!("chain     clock moved past job {}'s escrow deadline (a development chain can)", job_a.id);
    let since = Instant::now();
    loop {
        let now = balance(&clients[1], &client_key).await?;
        if now > before {
            println!(
                "refund    {} came back to the client from relay a's dead job, sent by another relay",
                now - before
            );
            break;
        }
        if since.elapsed() > Duration::from_secs(30) {
            println!("refund    none yet (relay a's job finished before it was killed?)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    println!(
        "registry  {:<12} {:>7} {:>6} {:>6} {:>10} {:>10}",
        "relay", "fee bps", "jobs", "ended", "tasks paid", "fees"
    );
    for r in node.relays(&contract).await? {
        let who = addresses.iter().position(|a| *a == r.address).map_or('?', name);
        println!(
            "          {:<12} {:>7} {:>6} {:>6} {:>10} {:>10}",
            format!("{who} {}…", &r.address[..14.min(r.address.len())]),
            r.fee_bps,
            r.jobs_opened,
            r.jobs_ended,
            r.tasks_paid,
            r.fees_earned
        );
    }
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    drop(relays);
    Ok(())
}
