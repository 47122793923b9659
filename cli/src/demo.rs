//! `starling demo`: the whole market on one machine. Starts a relay on an embedded SQLite file,
//! several native workers, posts a tiled Mandelbrot render and a matmul checked against the CPU,
//! shows progress, and prints a summary.

use crate::client::Client;
use crate::jobs::{self, Kind, Rules};
use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar};
use starling_protocol::events::ReplicaState;
use starling_protocol::sign::Keypair;
use starling_web_worker::native::{self, Compute, WorkerConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Native workers to start.
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Where the relay keeps its database and blobs (a fresh temporary folder by default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to write the render.
    #[arg(long, default_value = "mandelbrot.png")]
    out: PathBuf,
    /// Render size in pixels.
    #[arg(long, default_value_t = 1024)]
    width: u32,
    #[arg(long, default_value_t = 768)]
    height: u32,
    /// Square matrix size for the matmul job.
    #[arg(long, default_value_t = 512)]
    matrix: u32,
    /// Run the workers on the CPU references instead of the GPU.
    #[arg(long)]
    cpu: bool,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().join("relay"));
    let listener = starling_relay::bind(([127, 0, 0, 1], 0).into())?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let relay = tokio::spawn(starling_relay::run(listener, starling_relay::Config::new(&data_dir), stop(stop_rx.clone())));
    let base = format!("http://{addr}");
    println!("relay     http://{addr}  (SQLite at {})", data_dir.join("relay.sqlite").display());

    let compute = Compute::open(args.cpu).await;
    let caps = compute.capabilities(&WorkerConfig::new(&base));
    println!("workers   {} × {:?} on {}", args.workers, caps.backend, caps.adapter.name);
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let config = WorkerConfig::new(&base);
        workers.push(tokio::spawn(native::run(config, Keypair::generate(), compute.clone(), stop(stop_rx.clone()))));
    }

    let client = Client::new(&base);
    let key = Keypair::generate();
    let rules = Rules { replicas: 2, quorum: 2, max_replicas: 4, price: 0, deadline: 3600, label: String::new() };
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

    let started = Instant::now();
    let progress = MultiProgress::new();
    let mut runs = Vec::new();
    for (label, kind) in [("mandelbrot tiles", render), ("matmul f32", matmul)] {
        let rules = Rules { label: label.into(), ..rules.clone() };
        let prepared = jobs::prepare(&client, kind, &rules).await?;
        let job = client.submit(&key, prepared.spec.clone()).await.with_context(|| format!("submitting {label}"))?;
        let bar = progress.add(ProgressBar::new(u64::from(job.tasks_total)));
        let client = client.clone();
        runs.push(tokio::spawn(async move {
            let done = jobs::follow(&client, &job, &bar).await?;
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
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    relay.await??;
    Ok(())
}
