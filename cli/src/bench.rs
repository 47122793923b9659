//! `starling bench-training`: what a training round costs through the relay beside the same
//! kernels run back to back in one process on the same GPU (the anchor, measured in the same run).
//!
//! A relay (SQLite, no escrow) and `--workers` native workers run in this process on loopback.
//! For each replication (1 replica, then 2 with quorum 2) a training job of `--rounds` rounds over
//! `--shards` shards is posted and followed; a round's time is from one round's verified step to
//! the next's (the first round from the post). The anchor runs each round's gradients, sum tree
//! and step through the engine directly, outputs feeding inputs, with nothing else in between.

use crate::client::Client;
use crate::train::{self as cli_train, TrainArgs};
use anyhow::{Context, Result, bail, ensure};
use starling_protocol::events::JobEvent;
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use starling_protocol::sign::Keypair;
use starling_web_worker::engine::run_task;
use starling_web_worker::kernels::digits::Digits;
use starling_web_worker::kernels::mlp_fx::{self, Shape, StepParams, i32_bytes};
use starling_web_worker::kernels::reduce::{self, ReduceParams};
use starling_web_worker::native::{self, Compute, WorkerConfig};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct TrainingBenchArgs {
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
}

pub async fn training(args: TrainingBenchArgs) -> Result<()> {
    ensure!(args.rounds >= 2 && args.shards >= 1 && args.workers >= 2, "need 2+ rounds, 1+ shards, 2+ workers");
    let compute = Compute::open(false).await;
    let Compute::Gpu(ctx) = &compute else { bail!("no GPU adapter: the benchmark compares GPU runs") };
    println!("adapter   {} ({:?})", ctx.adapter_info().name, ctx.adapter_info().backend);

    // The anchor: the same round in one process.
    let (train_set, _) = Digits::load().split(cli_train::TEST_EVERY);
    let n = train_set.len() as u32;
    let shape = Shape { inputs: 64, hidden: 32, outputs: 10, samples: n };
    let mut weights = i32_bytes(&mlp_fx::init_weights(shape, 1));
    let shards: Vec<(Shape, Vec<u8>, Vec<u8>)> = (0..args.shards)
        .map(|s| {
            let r = (s * n / args.shards) as usize..((s + 1) * n / args.shards) as usize;
            let words: Vec<u8> = train_set.label_words(r.clone()).iter().flat_map(|w| w.to_le_bytes()).collect();
            (Shape { samples: r.len() as u32, ..shape }, i32_bytes(&train_set.features(r)), words)
        })
        .collect();
    let builtin = |name| KernelSpec::Builtin { name };
    let step = StepParams { weights: shape.weight_words(), rate: mlp_fx::to_q(0.5), samples: n };
    let mut local = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        let mut grads = Vec::new();
        for (s, x, y) in &shards {
            let out = run_task(
                ctx,
                &builtin(BuiltinKernel::MlpGradFx),
                &s.to_words(),
                &[&weights, x, y],
                s.workgroups(),
                s.grad_words() * 4,
            )
            .await?;
            grads.push(out);
        }
        // The same tree the job runs: groups of at most MAX_FAN_IN, level by level, at least one.
        loop {
            let mut next = Vec::new();
            for group in grads.chunks(reduce::MAX_FAN_IN) {
                let p = ReduceParams { words: shape.grad_words(), fan_in: group.len() as u32 };
                let inputs: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
                let wg = p.workgroups().context("sum dispatch")?;
                next.push(
                    run_task(ctx, &builtin(BuiltinKernel::SumI32), &p.to_words(), &inputs, wg, p.words * 4).await?,
                );
            }
            grads = next;
            if grads.len() == 1 {
                break;
            }
        }
        let wg = step.workgroups().context("step dispatch")?;
        weights = run_task(
            ctx,
            &builtin(BuiltinKernel::MlpStepFx),
            &step.to_words(),
            &[&weights, &grads[0]],
            wg,
            step.weights * 4,
        )
        .await?;
        local.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    // Through the relay.
    let temp = tempfile::tempdir()?;
    let listener = starling_relay::bind(([127, 0, 0, 1], 0).into())?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let relay =
        tokio::spawn(starling_relay::run(listener, starling_relay::Config::new(temp.path()), stop(stop_rx.clone())));
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        workers.push(tokio::spawn(native::run(
            WorkerConfig::new(&base),
            Keypair::generate(),
            compute.clone(),
            stop(stop_rx.clone()),
        )));
    }
    let client = Client::new(&base);
    let key = Keypair::generate();
    let mut rows = Vec::new();
    for replicas in [1u8, 2] {
        let train = TrainArgs {
            rounds: args.rounds,
            shards: args.shards,
            hidden: 32,
            rate: 0.5,
            seed: 1,
            out: temp.path().join("w.bin"),
            numerics: Default::default(),
        };
        let training = cli_train::prepare_train(&client, &key, train).await?;
        let spec = JobSpec {
            label: format!("bench {replicas}"),
            kernel: builtin(BuiltinKernel::MlpGradFx),
            kernels: training.kernels.clone(),
            tasks: training.tasks.clone(),
            comparison: Comparison::Exact,
            replicas,
            quorum: replicas,
            max_replicas: replicas.max(2),
            price_per_replica: 0,
            deadline_secs: 3600,
            homogeneous: false,
            nonce: rand::random(),
            adaptive: None,
        };
        // Wait until every worker is connected, so each run starts alike.
        while client.workers().await.map(|w| w.iter().filter(|w| w.online).count()).unwrap_or(0) < args.workers as usize
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let posted = Instant::now();
        let job = client.submit(&key, spec).await?;
        let steps: Vec<u32> = training.layout.rounds.iter().map(|r| r.step).collect();
        let mut at = Vec::new();
        let done = client
            .watch(job.id, |e| {
                if let JobEvent::TaskVerified { task, .. } = e
                    && steps.contains(&task.index)
                {
                    at.push(posted.elapsed().as_secs_f64() * 1000.0);
                }
            })
            .await?;
        ensure!(done.tasks_verified == done.tasks_total, "the job did not finish: {done:?}");
        let mut rounds: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
        rounds.insert(0, at[0]);
        let weights_relay = client.task_output(job.id, *steps.last().expect("rounds")).await?;
        ensure!(weights_relay == weights, "the relay's weights differ from the in-process run's");
        rows.push((replicas, rounds));
    }
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    relay.await??;

    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let tasks_per_round = training_tasks_per_round(args.shards);
    println!(
        "shards {} · workers {} · rounds {} · {tasks_per_round} tasks a round (gradients, sums, step)",
        args.shards, args.workers, args.rounds
    );
    println!("| run | median ms per round | overhead per round (ms) | per task (ms) |");
    println!("| --- | ---: | ---: | ---: |");
    let anchor = median(&local);
    println!("| one process, kernels back to back (anchor) | {anchor:.1} | | |");
    for (replicas, rounds) in rows {
        let m = median(&rounds);
        println!(
            "| through the relay, {replicas} replica(s) | {m:.1} | {:.1} | {:.1} |",
            m - anchor,
            (m - anchor) / f64::from(tasks_per_round)
        );
    }
    println!("weights: the relay's verified weights equal the in-process run's, bit for bit");
    Ok(())
}

fn training_tasks_per_round(shards: u32) -> u32 {
    let mut tasks = shards + 1;
    let mut level = shards;
    loop {
        level = level.div_ceil(reduce::MAX_FAN_IN as u32);
        tasks += level;
        if level == 1 {
            break;
        }
    }
    tasks
}
