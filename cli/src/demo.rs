//! `starling demo`: the whole market on one machine. Starts a relay on an embedded SQLite file,
//! several native workers, posts a tiled Mandelbrot render and a matmul checked against the CPU,
//! shows progress, and prints a summary.

use crate::client::Client;
use crate::jobs::{self, Kind, Rules};
use anyhow::{Context, Result, bail, ensure};
use indicatif::{MultiProgress, ProgressBar};
use starling_protocol::api::{ClientView, JobEscrow, ReplicaState, WorkerView};
use starling_protocol::sign::Keypair;
use starling_web_worker::native::{self, Compute, WorkerConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Native workers to start.
    #[arg(long, default_value_t = 3)]
    pub(crate) workers: u32,
    /// Where the relay keeps its database and blobs (a fresh temporary folder by default).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Where to write the render.
    #[arg(long, default_value = "mandelbrot.png")]
    pub(crate) out: PathBuf,
    /// Render size in pixels.
    #[arg(long, default_value_t = 1024)]
    pub(crate) width: u32,
    #[arg(long, default_value_t = 768)]
    pub(crate) height: u32,
    /// Square matrix size for the matmul job.
    #[arg(long, default_value_t = 512)]
    pub(crate) matrix: u32,
    /// Rounds of the digits classifier's training job (0: no training job).
    #[arg(long, default_value_t = 30)]
    pub(crate) train_rounds: u32,
    /// Run the workers on the CPU references instead of the GPU.
    #[arg(long)]
    pub(crate) cpu: bool,
    /// Extra workers that sign wrong results, to show verification and slashing.
    #[arg(long, default_value_t = 1)]
    pub(crate) liars: u32,
    /// Price per accepted replica, in micro-units of the escrow's token.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) price: u64,
    /// The escrow contract's wasm (default: target/contracts/starling_escrow.wasm); without
    /// one the demo runs unpaid.
    #[arg(long)]
    pub(crate) contract: Option<PathBuf>,
    /// Independent relays, each with its own database, on one local development chain (2 to 8):
    /// workers find them in the escrow's registry; the first is killed mid-job. 1: one relay on
    /// the embedded ledger.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub(crate) relays: u32,
}

/// What the demo's faucet deposits into each new account: a hundred minimum bonds.
pub const DEMO_FAUCET: u128 = 1_000_000_000;

pub async fn run(args: DemoArgs) -> Result<()> {
    if args.relays > 1 {
        return crate::demo_relays::run(args).await;
    }
    let temp = tempfile::tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().join("relay"));
    let listener = starling_relay::bind(([127, 0, 0, 1], 0).into())?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut config = starling_relay::Config::new(&data_dir);
    let contract = args.contract.clone().or_else(|| crate::locate(&["target/contracts/starling_escrow.wasm"]));
    let paid = contract.is_some() && args.price > 0;
    if let Some(wasm) = contract.filter(|_| paid) {
        // The demo's accounts are funded by the faucet: each client and worker once.
        let embedded = starling_relay::escrow::embedded::EmbeddedConfig {
            faucet: DEMO_FAUCET,
            ..starling_relay::escrow::embedded::EmbeddedConfig::new(wasm)
        };
        config.escrow = starling_relay::EscrowConfig::Embedded(embedded);
    } else {
        println!("escrow    off (no contract: run scripts/build-contract.sh for paid jobs)");
    }
    let relay = tokio::spawn(starling_relay::run(listener, config, stop(stop_rx.clone())));
    let base = format!("http://{addr}");
    println!("relay     http://{addr}  (SQLite at {})", data_dir.join("relay.sqlite").display());

    let compute = Compute::open(args.cpu).await;
    let caps = compute.capabilities(&WorkerConfig::new(&base));
    println!("workers   {} × {:?} on {}", args.workers, caps.backend, caps.adapter.name);
    if args.liars > 0 {
        println!("          + {} lying worker(s) that sign corrupted results", args.liars);
    }
    let mut workers = Vec::new();
    let mut worker_keys = Vec::new();
    for n in 0..args.workers + args.liars {
        let config = WorkerConfig { corrupt_results: n >= args.workers, ..WorkerConfig::new(&base) };
        let key = Keypair::generate();
        worker_keys.push((key.public(), config.corrupt_results));
        workers.push(tokio::spawn(native::run(config, key, compute.clone(), stop(stop_rx.clone()))));
    }

    let client = Client::new(&base);
    let key = Keypair::generate();
    let price = if paid { args.price } else { 0 };
    let rules = Rules {
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price,
        deadline: 3600,
        label: String::new(),
        adaptive_audit: None,
    };
    let render = Kind::Mandelbrot {
        width: args.width,
        height: args.height,
        tile: 128,
        max_iter: 400,
        center_re: -0.6,
        center_im: 0.0,
        scale: 3.2,
        out: args.out.clone(),
    };
    let n = args.matrix;
    let matmul = Kind::Matmul { m: n, n, k: n, rows_per_task: (n / 4).max(1), seed: 7 };

    let mut kinds = vec![("mandelbrot tiles", render), ("matmul f32", matmul)];
    if args.train_rounds > 0 {
        // Data-parallel training: a gradient per worker each round, verified and added up on the
        // network, then a verified step; the report sets its test accuracy beside one CPU's.
        let train = crate::train::TrainArgs {
            rounds: args.train_rounds,
            shards: args.workers.max(1),
            hidden: 32,
            rate: 0.5,
            seed: 1,
            out: data_dir.join("digits-weights.bin"),
            numerics: Default::default(),
        };
        kinds.push(("digits training", Kind::Train(train)));
    }

    let started = Instant::now();
    let progress = MultiProgress::new();
    let mut runs = Vec::new();
    for (label, kind) in kinds {
        let rules = Rules { label: label.into(), ..rules.clone() };
        let prepared = jobs::prepare(&client, &key, kind, &rules).await?;
        let job = client.submit(&key, prepared.spec.clone()).await.with_context(|| format!("submitting {label}"))?;
        let bar = progress.add(ProgressBar::new(u64::from(job.tasks_total)));
        let client = client.clone();
        runs.push(tokio::spawn(async move {
            let done = jobs::follow_prepared(&client, &job, &prepared, &bar).await?;
            let report = jobs::finish(&client, &done, &prepared.spec, &prepared.finish).await?;
            anyhow::Ok((done, report))
        }));
    }
    let mut finished = Vec::new();
    for run in runs {
        finished.push(run.await??);
    }
    let elapsed = started.elapsed();

    let mut tasks = 0u32;
    let mut replicas = 0usize;
    let mut accepted = 0usize;
    for (job, report) in &finished {
        println!("job {:<3} {:<18} {report}", job.id.0, job.label);
        let detail = client.job(job.id).await?;
        tasks += detail.summary.tasks_verified;
        replicas += detail.tasks.iter().map(|t| t.replicas.len()).sum::<usize>();
        accepted += detail.tasks.iter().flat_map(|t| &t.replicas).filter(|r| r.state == ReplicaState::Accepted).count();
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "summary   {tasks} tasks verified, {replicas} replicas run ({accepted} accepted) by {} workers in {secs:.2}s: {:.1} tasks/s, {:.1} replicas/s",
        args.workers,
        f64::from(tasks) / secs,
        replicas as f64 / secs
    );
    if paid {
        let jobs: Vec<_> = finished.iter().map(|(job, _)| job.id).collect();
        settlement_report(&client, &key, &jobs, &worker_keys).await?;
    }
    if let Some(wasm) = args.contract.clone().or_else(|| crate::locate(&["target/contracts/starling_escrow.wasm"])) {
        market_summary(&wasm)?;
    }
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    relay.await??;
    Ok(())
}

/// Waits until the escrow closed every job, then prints who was paid what, read back from the
/// ledger, and checks that every deposit is accounted for.
async fn settlement_report(
    client: &Client,
    key: &Keypair,
    jobs: &[starling_protocol::JobId],
    workers: &[(starling_protocol::PublicKey, bool)],
) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let mut escrows = Vec::new();
    for job in jobs {
        loop {
            let e: JobEscrow = client.get(&format!("/v1/jobs/{job}/escrow")).await?;
            if e.refunded.is_some() {
                escrows.push(e);
                break;
            }
            if Instant::now() > deadline {
                bail!("job {job} was not closed in escrow within a minute: {e:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let amount = |s: &str| s.parse::<u128>().unwrap_or(0);
    let denom = escrows.first().map(|e| e.denom.clone()).unwrap_or_default();
    let (mut deposits, mut to_workers, mut fees, mut refunds) = (0u128, 0u128, 0u128, 0u128);
    for e in &escrows {
        let refunded = e.refunded.as_deref().map_or(0, amount);
        let (d, w, f) = (amount(&e.deposit), amount(&e.paid_to_workers), amount(&e.paid_to_relay));
        ensure!(d == w + f + refunded, "job {}: deposit {d} != paid {w} + fee {f} + refund {refunded}", e.job);
        deposits += d;
        to_workers += w;
        fees += f;
        refunds += refunded;
    }
    println!("escrow    {} jobs settled and closed on the embedded ledger ({denom})", escrows.len());
    let mut earned_total = 0u128;
    for (worker, lying) in workers {
        let view: WorkerView = client.get(&format!("/v1/workers/{worker}")).await?;
        let Some(account) = view.escrow else {
            println!("  worker {}…  not registered in escrow", &worker.to_hex()[..12]);
            continue;
        };
        let earned = amount(&account.received);
        earned_total += earned;
        println!(
            "  worker {}…{}  earned {:>9}  bond {:>9}  slashed {:>9}  ({} accepted, {} rejected)",
            &worker.to_hex()[..12],
            if *lying { " (lying)" } else { "        " },
            earned,
            account.bonded.as_deref().unwrap_or("0"),
            account.slashed.as_deref().unwrap_or("0"),
            view.replicas_accepted,
            view.replicas_rejected,
        );
    }
    let client_view: ClientView = client.get(&format!("/v1/clients/{}", key.public())).await?;
    let balance = client_view.escrow.map(|a| a.balance).unwrap_or_default();
    println!("  client  deposited {deposits}, refunded {refunds} (unused replicas), balance now {balance}");
    println!("  relay   fees {fees}");
    ensure!(earned_total == to_workers, "workers earned {earned_total} but the jobs paid out {to_workers}");
    println!("  check   deposits {deposits} = workers {to_workers} + relay {fees} + refunds {refunds}  ✓");
    Ok(())
}

/// The market simulator's headline run at the default parameters, small enough to take seconds:
/// what a cartel of 30% of the keys gets for lying (`starling simulate` runs them all).
fn market_summary(wasm: &std::path::Path) -> Result<()> {
    use starling_relay::sim::{self, Params, report};
    let wasm = std::fs::read(wasm)?;
    let params = Params { workers: 100, tasks: 1_000, ..Params::default() };
    let outcome = sim::run(&report::cartel(&params), &wasm)?;
    println!("market    {} (starling simulate for every population)", report::summary(&outcome));
    Ok(())
}
