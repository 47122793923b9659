//! `starling submit`: build a job (a built-in preset, custom WGSL or a JSON spec), upload its
//! inputs, post it signed, follow it with a progress bar, and turn its verified outputs into
//! something useful (a PNG, a checked matrix, an estimate of pi, a best nonce, files).

use crate::client::Client;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use starling_protocol::api::{JobState, JobSummary};
use starling_protocol::events::JobEvent;
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::sha256;
use starling_protocol::sign::Keypair;
use starling_web_worker::kernels::{job, mandelbrot, matmul_f32, monte_carlo_pi, reduce, sha256_nonce_search, train};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Relay URL.
    #[arg(long, default_value = "http://127.0.0.1:7070", env = "STARLING_RELAY", global = true)]
    pub relay: String,
    /// Find a relay instead: read the relay registry of the escrow contract at this chain
    /// node's RPC URL (with `--contract`) and post to the registered relay with the lowest fee
    /// among those answering (then the most workers online, then the nearest). Overrides
    /// `--relay`.
    #[arg(long, env = "STARLING_DISCOVER_CHAIN", requires = "contract", global = true)]
    pub chain: Option<String>,
    /// With `--chain`: the escrow contract whose registry to read.
    #[arg(long, env = "STARLING_DISCOVER_CONTRACT", global = true)]
    pub contract: Option<String>,
    /// The client's ed25519 key (created on first use).
    #[arg(long, default_value = ".starling/client.key", global = true)]
    pub key_file: PathBuf,
    #[command(flatten)]
    pub rules: Rules,
    /// Post the job and print its id without waiting.
    #[arg(long, global = true)]
    pub no_wait: bool,
    #[command(subcommand)]
    pub kind: Kind,
}

/// Replication and payment rules shared by every job kind.
#[derive(Debug, Clone, clap::Args)]
pub struct Rules {
    /// Replicas per task.
    #[arg(long, default_value_t = 2, global = true)]
    pub replicas: u8,
    /// Agreeing results needed.
    #[arg(long, default_value_t = 2, global = true)]
    pub quorum: u8,
    /// Most replicas per task when results disagree.
    #[arg(long, default_value_t = 4, global = true)]
    pub max_replicas: u8,
    /// Price per replica, in micro-units.
    #[arg(long, default_value_t = 0, global = true)]
    pub price: u64,
    /// Seconds until unfinished tasks fail.
    #[arg(long, default_value_t = 3600, global = true)]
    pub deadline: u64,
    /// Label shown on dashboards.
    #[arg(long, default_value = "", global = true)]
    pub label: String,
    /// Allow adaptive replication, auditing this percentage of the tasks that run on one worker
    /// (1 to 100): a task whose first worker has a long record of verified results may run on it
    /// alone. Needs `--quorum 1` (escrow then pays one signature) and an exact kernel.
    #[arg(long, global = true, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub adaptive_audit: Option<u8>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Kind {
    /// Render the Mandelbrot set in tiles (exact fixed-point arithmetic) into a PNG.
    Mandelbrot {
        #[arg(long, default_value_t = 1024)]
        width: u32,
        #[arg(long, default_value_t = 768)]
        height: u32,
        #[arg(long, default_value_t = 128)]
        tile: u32,
        #[arg(long, default_value_t = 500)]
        max_iter: u32,
        #[arg(long, default_value_t = -0.6, allow_hyphen_values = true)]
        center_re: f64,
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        center_im: f64,
        /// Width of the view in the complex plane.
        #[arg(long, default_value_t = 3.2)]
        scale: f64,
        #[arg(long, default_value = "mandelbrot.png")]
        out: PathBuf,
    },
    /// Multiply two random f32 matrices and check the product against the CPU.
    Matmul {
        #[arg(long, default_value_t = 512)]
        m: u32,
        #[arg(long, default_value_t = 512)]
        n: u32,
        #[arg(long, default_value_t = 512)]
        k: u32,
        #[arg(long, default_value_t = 128)]
        rows_per_task: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Estimate pi by counting random points in the quarter circle (exact integer counts).
    Pi {
        #[arg(long, default_value_t = 16)]
        tasks: u32,
        #[arg(long, default_value_t = 64)]
        workgroups: u32,
        #[arg(long, default_value_t = 1024)]
        samples: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Add the tasks' counts up on the network too, in a tree of verified `sum_i32` tasks,
        /// so the job ends with one verified answer.
        #[arg(long)]
        reduce: bool,
    },
    /// Train a digits classifier across workers: rounds of shard gradients, a verified sum and a
    /// verified step, each round reading the last one's verified weights (Q16 fixed point, so
    /// the weights are bit for bit one CPU's); prints the loss and accuracy as rounds verify.
    Train(crate::train::TrainArgs),
    /// Classify the digits with trained weights (one shared input), in tasks of `--batch`.
    Infer(crate::train::InferArgs),
    /// Search nonces for the SHA-256 of (SHA-256(prefix) || nonce) with the most leading zeros.
    Sha256 {
        #[arg(long, default_value = "starling")]
        prefix: String,
        #[arg(long, default_value_t = 8)]
        tasks: u32,
        #[arg(long, default_value_t = 64)]
        workgroups: u32,
        #[arg(long, default_value_t = 64)]
        nonces: u32,
    },
    /// Run your own WGSL kernel (binding 0: params, 1..=N: inputs, N+1: output).
    Wgsl {
        /// The WGSL file.
        #[arg(long)]
        source: PathBuf,
        #[arg(long, default_value = "main")]
        entry: String,
        /// Input files, bound in order from binding 1 (the same for every task).
        #[arg(long = "input")]
        inputs: Vec<PathBuf>,
        /// Uniform words, comma separated; `{task}` is replaced by the task index.
        #[arg(long, default_value = "")]
        params: String,
        #[arg(long, default_value = "1,1,1")]
        workgroups: String,
        #[arg(long)]
        output_size: u32,
        #[arg(long, default_value_t = 1)]
        tasks: u32,
        /// Compare outputs as f32 within this relative tolerance instead of exactly.
        #[arg(long)]
        tolerance: Option<f32>,
        /// Where to write each task's output.
        #[arg(long, default_value = "outputs")]
        out_dir: PathBuf,
    },
    /// Post a JobSpec from a JSON file (see protocol/src/job.rs).
    Spec { file: PathBuf },
}

/// A job ready to post, plus what to do with its outputs.
#[derive(Debug)]
pub struct Prepared {
    pub spec: JobSpec,
    pub finish: Finish,
}

#[derive(Debug)]
pub enum Finish {
    Png {
        width: u32,
        height: u32,
        out: PathBuf,
    },
    Matmul {
        m: u32,
        n: u32,
        k: u32,
        a: Vec<f32>,
        b: Vec<f32>,
    },
    Pi,
    /// The answer is task `root`'s output alone (a reduction's).
    PiReduced {
        root: u32,
    },
    Sha256,
    Files {
        dir: PathBuf,
    },
    Train(Box<crate::train::Training>),
    Infer {
        labels: Vec<u32>,
    },
}

/// The job `kernel` over `tasks` makes under the command line's rules (the builder the web app's
/// job form uses too).
fn spec(kernel: KernelSpec, tasks: Vec<TaskSpec>, comparison: Comparison, rules: &Rules) -> JobSpec {
    let rules = job::Rules {
        label: rules.label.clone(),
        replicas: rules.replicas,
        quorum: rules.quorum,
        max_replicas: rules.max_replicas,
        price_per_replica: rules.price,
        deadline_secs: rules.deadline,
        adaptive_audit: rules.adaptive_audit,
    };
    rules.spec(kernel, tasks, comparison, rand::random())
}

fn builtin(name: BuiltinKernel) -> KernelSpec {
    KernelSpec::Builtin { name }
}

fn parse_list(s: &str, task: u32) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let p = p.replace("{task}", &task.to_string());
            p.parse::<u32>().with_context(|| format!("{p:?} is not a u32"))
        })
        .collect()
}

/// Builds the job, uploading any inputs it needs under `key`.
pub async fn prepare(client: &Client, key: &Keypair, kind: Kind, rules: &Rules) -> Result<Prepared> {
    Ok(match kind {
        Kind::Mandelbrot { width, height, tile, max_iter, center_re, center_im, scale, out } => {
            let tasks = mandelbrot::tile_job_tasks(width, height, tile, max_iter, (center_re, center_im), scale);
            if tasks.is_empty() {
                bail!("image and tile sizes must be positive");
            }
            Prepared {
                spec: spec(builtin(BuiltinKernel::Mandelbrot), tasks, Comparison::Exact, rules),
                finish: Finish::Png { width, height, out },
            }
        }
        Kind::Matmul { m, n, k, rows_per_task, seed } => {
            let a = matmul_f32::random_matrix((m * k) as usize, seed);
            let b = matmul_f32::random_matrix((k * n) as usize, seed.wrapping_add(1));
            let ha = client.upload(key, matmul_f32::f32s_to_bytes(&a)).await?;
            let hb = client.upload(key, matmul_f32::f32s_to_bytes(&b)).await?;
            let tasks = matmul_f32::tasks_for(m, n, k, ha, hb, rows_per_task);
            if tasks.is_empty() {
                bail!("matrix sizes must be positive");
            }
            // Float sums may be reassociated across GPUs: compare within a tolerance.
            let comparison = Comparison::Tolerance { rel: 1e-4, abs: 1e-4 * (k as f32).sqrt() };
            Prepared {
                spec: spec(builtin(BuiltinKernel::MatmulF32), tasks, comparison, rules),
                finish: Finish::Matmul { m, n, k, a, b },
            }
        }
        Kind::Pi { tasks, workgroups, samples, seed, reduce: true } => {
            let mut tasks = monte_carlo_pi::tasks(seed, tasks, workgroups, samples);
            if tasks.is_empty() {
                bail!("counts out of range");
            }
            // Each output is one count per workgroup: the tree adds them up word by word.
            let leaves: Vec<u32> = (0..tasks.len() as u32).collect();
            let sums = reduce::tree(1, &leaves, workgroups, tasks.len() as u32);
            if sums.is_empty() {
                bail!("counts out of range");
            }
            tasks.extend(sums);
            let root = tasks.len() as u32 - 1;
            let mut spec = spec(builtin(BuiltinKernel::MonteCarloPi), tasks, Comparison::Exact, rules);
            spec.kernels = vec![builtin(BuiltinKernel::SumI32)];
            Prepared { spec, finish: Finish::PiReduced { root } }
        }
        Kind::Train(args) => {
            let training = crate::train::prepare_train(client, key, args).await?;
            let numerics = training.args.numerics;
            let mut spec = spec(builtin(numerics.grad()), training.tasks.clone(), numerics.comparison(), rules);
            spec.kernels = training.kernels.clone();
            Prepared { spec, finish: Finish::Train(Box::new(training)) }
        }
        Kind::Infer(args) => {
            let (tasks, labels) = crate::train::prepare_infer(client, key, &args).await?;
            Prepared {
                spec: spec(crate::train::infer_kernel(), tasks, Comparison::Exact, rules),
                finish: Finish::Infer { labels },
            }
        }
        Kind::Pi { tasks, workgroups, samples, seed, reduce: false } => {
            let tasks = monte_carlo_pi::tasks(seed, tasks, workgroups, samples);
            if tasks.is_empty() {
                bail!("counts out of range");
            }
            Prepared {
                spec: spec(builtin(BuiltinKernel::MonteCarloPi), tasks, Comparison::Exact, rules),
                finish: Finish::Pi,
            }
        }
        Kind::Sha256 { prefix, tasks, workgroups, nonces } => {
            let tasks = sha256_nonce_search::tasks(sha256(prefix.as_bytes()).0, 0, tasks, workgroups, nonces);
            if tasks.is_empty() {
                bail!("counts out of range");
            }
            Prepared {
                spec: spec(builtin(BuiltinKernel::Sha256NonceSearch), tasks, Comparison::Exact, rules),
                finish: Finish::Sha256,
            }
        }
        Kind::Wgsl { source, entry, inputs, params, workgroups, output_size, tasks, tolerance, out_dir } => {
            let source = std::fs::read_to_string(&source).with_context(|| format!("reading {}", source.display()))?;
            let mut hashes = Vec::new();
            for path in &inputs {
                let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                hashes.push(client.upload(key, data).await?);
            }
            let wg = parse_list(&workgroups, 0)?;
            let wg: [u32; 3] = wg.try_into().map_err(|_| anyhow::anyhow!("--workgroups takes x,y,z"))?;
            let task_specs = (0..tasks)
                .map(|i| {
                    Ok(TaskSpec {
                        params: parse_list(&params, i)?,
                        inputs: hashes.iter().map(|&h| h.into()).collect(),
                        workgroups: wg,
                        output_size,
                        kernel: 0,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let comparison = match tolerance {
                Some(rel) => Comparison::Tolerance { rel, abs: rel },
                None => Comparison::Exact,
            };
            Prepared {
                spec: spec(KernelSpec::Wgsl { source, entry_point: entry }, task_specs, comparison, rules),
                finish: Finish::Files { dir: out_dir },
            }
        }
        Kind::Spec { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let spec: JobSpec = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
            Prepared { spec, finish: Finish::Files { dir: PathBuf::from("outputs") } }
        }
    })
}

/// Follows a job with a progress bar until it ends.
pub async fn follow(client: &Client, job: &JobSummary, bar: &ProgressBar) -> Result<JobSummary> {
    follow_graph(client, job, None, bar, |_| {}).await
}

/// [`follow`], for a job whose tasks may read each other's outputs (`spec`): the bar also says
/// how many tasks wait for their inputs, and `verified` hears of each task as it is verified.
pub async fn follow_graph(
    client: &Client,
    job: &JobSummary,
    spec: Option<&JobSpec>,
    bar: &ProgressBar,
    mut verified: impl FnMut(u32),
) -> Result<JobSummary> {
    let mut done: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let waiting = |done: &std::collections::HashSet<u32>| -> Option<usize> {
        let spec = spec.filter(|s| s.has_dependencies())?;
        Some(spec.waiting_for_inputs(|t| done.contains(&t), |t| done.contains(&t)))
    };
    bar.set_length(u64::from(job.tasks_total));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40.cyan/blue}] {pos}/{len} tasks verified {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("job {}", job.id));
    bar.enable_steady_tick(Duration::from_millis(200));
    let done = client
        .watch(job.id, |event| match event {
            JobEvent::Snapshot { job } => bar.set_position(u64::from(job.tasks_verified)),
            JobEvent::TaskVerified { task, verified: n, .. } => {
                bar.set_position(u64::from(*n));
                done.insert(task.index);
                if let Some(w) = waiting(&done) {
                    bar.set_message(format!("· {w} waiting for inputs"));
                }
                verified(task.index);
            }
            JobEvent::TaskFailed { task, reason } => say(bar, format!("task {task} failed: {reason}")),
            JobEvent::JobDone { .. } => bar.set_message("done"),
            JobEvent::JobFailed { .. } => bar.set_message("failed"),
        })
        .await?;
    bar.finish();
    Ok(done)
}

/// Downloads every verified output, in task order.
pub async fn outputs(client: &Client, job: &JobSummary) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(job.tasks_total as usize);
    for index in 0..job.tasks_total {
        out.push(client.task_output(job.id, index).await?);
    }
    Ok(out)
}

pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(rgb)?;
    Ok(())
}

/// Turns a finished job's outputs into a report line (and files).
pub async fn finish(client: &Client, job: &JobSummary, spec: &JobSpec, finish: &Finish) -> Result<String> {
    if job.state != JobState::Done {
        bail!("job {} {:?}: {}", job.id, job.state, job.failure.clone().unwrap_or_default());
    }
    let outs = match finish {
        // Only the answer matters (and a training job's figures were read as it ran).
        Finish::PiReduced { root } => vec![client.task_output(job.id, *root).await?],
        Finish::Train(_) => Vec::new(),
        _ => outputs(client, job).await?,
    };
    Ok(match finish {
        Finish::Png { width, height, out } => {
            let rgb = mandelbrot::assemble_image(*width, *height, &spec.tasks, &outs)?;
            write_png(out, *width, *height, &rgb)?;
            format!("wrote {}x{} render to {}", width, height, out.display())
        }
        Finish::Matmul { m, n, k, a, b } => {
            let c: Vec<f32> = outs.iter().flat_map(|o| matmul_f32::bytes_to_f32s(o)).collect();
            let reference = matmul_f32::bytes_to_f32s(
                &matmul_f32::MatmulParams::whole(*m, *n, *k)
                    .cpu(&matmul_f32::f32s_to_bytes(a), &matmul_f32::f32s_to_bytes(b)),
            );
            if c.len() != reference.len() {
                bail!("product has {} entries, expected {}", c.len(), reference.len());
            }
            let max_err = c.iter().zip(&reference).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            if max_err > 1e-3 * (*k as f32).sqrt() {
                bail!("matmul differs from the CPU reference by {max_err}");
            }
            format!("{m}x{k} · {k}x{n} product matches the CPU reference (max |error| {max_err:.2e})")
        }
        Finish::Pi => {
            let hits: u64 = outs.iter().map(|o| monte_carlo_pi::total_hits(o)).sum();
            let samples: u64 = spec
                .tasks
                .iter()
                .map(|t| monte_carlo_pi::MonteCarloParams::from_words(&t.params).map(|p| p.samples(t.workgroups)))
                .sum::<Result<u64, _>>()?;
            format!("pi ≈ {:.6} from {samples} samples", monte_carlo_pi::estimate(hits, samples))
        }
        Finish::PiReduced { .. } => {
            let hits: u64 = monte_carlo_pi::total_hits(&outs[0]);
            let samples: u64 = spec
                .tasks
                .iter()
                .filter(|t| t.kernel == 0)
                .map(|t| monte_carlo_pi::MonteCarloParams::from_words(&t.params).map(|p| p.samples(t.workgroups)))
                .sum::<Result<u64, _>>()?;
            format!(
                "pi ≈ {:.6} from {samples} samples, added up on the network",
                monte_carlo_pi::estimate(hits, samples)
            )
        }
        Finish::Train(training) => {
            let report = training.finish(client, job.id).await?;
            format!("{report}; weights written to {}", training.args.out.display())
        }
        Finish::Infer { labels } => {
            let classes: Vec<u8> = outs.concat();
            let acc = train::accuracy(&classes, labels);
            format!("classified {} digits: {:.1}% right", labels.len(), acc * 100.0)
        }
        Finish::Sha256 => {
            let best = sha256_nonce_search::best(outs.iter().flat_map(|o| sha256_nonce_search::decode(o)));
            match best {
                Some(b) => format!("best nonce {} with {} leading zero bits", b.nonce, b.leading_zeros),
                None => "no nonces searched".into(),
            }
        }
        Finish::Files { dir } => {
            std::fs::create_dir_all(dir)?;
            for (i, o) in outs.iter().enumerate() {
                std::fs::write(dir.join(format!("task-{i}.bin")), o)?;
            }
            format!("wrote {} outputs to {}", outs.len(), dir.display())
        }
    })
}

/// Follows a posted job as its kind asks: a training job's rounds are printed as they verify.
pub async fn follow_prepared(
    client: &Client,
    job: &JobSummary,
    prepared: &Prepared,
    bar: &ProgressBar,
) -> Result<JobSummary> {
    match &prepared.finish {
        Finish::Train(training) => follow_training(client, job, &prepared.spec, training, bar).await,
        _ => follow_graph(client, job, Some(&prepared.spec), bar, |_| {}).await,
    }
}

/// Prints a line above the bar, or on stdout where there is no terminal to draw the bar on.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// Follows a training job, printing each round's loss and accuracy as its gradient sum verifies.
pub async fn follow_training(
    client: &Client,
    job: &JobSummary,
    spec: &JobSpec,
    training: &crate::train::Training,
    bar: &ProgressBar,
) -> Result<JobSummary> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let lines = async {
        while let Some(round) = rx.recv().await {
            match training.round_line(client, job.id, round).await {
                Ok(l) => say(
                    bar,
                    if l.accuracy.is_nan() {
                        format!("round {:>3}: loss {:.4}", l.round + 1, l.loss)
                    } else {
                        format!(
                            "round {:>3}: loss {:.4}  training accuracy {:.1}%",
                            l.round + 1,
                            l.loss,
                            l.accuracy * 100.0
                        )
                    },
                ),
                Err(e) => say(bar, format!("round {}: {e:#}", round + 1)),
            }
        }
    };
    let follow = async {
        let done = follow_graph(client, job, Some(spec), bar, |task| {
            if let Some(round) = training.round_of(task) {
                let _ = tx.send(round);
            }
        })
        .await;
        drop(tx);
        done
    };
    let (done, ()) = tokio::join!(follow, lines);
    done
}

pub async fn submit(args: SubmitArgs) -> Result<()> {
    let client = match (&args.chain, &args.contract) {
        (Some(rpc), Some(contract)) => {
            let found = crate::discover::relays(rpc, contract, crate::discover::Role::Client).await?;
            let best = found.relays.into_iter().next().filter(|f| f.latency_ms.is_some());
            let best = best.context("no registered relay answers now")?;
            println!("relay {} ({}), fee {} bps: {}", best.endpoint, best.address, best.fee_bps, best.note);
            Client::new(&best.endpoint).expecting(crate::client::Expected {
                chain_id: found.chain_id,
                contract: contract.clone(),
                relay_address: best.address,
            })
        }
        _ => Client::new(&args.relay),
    };
    let key = starling_web_worker::native::load_or_create_key(&args.key_file)?;
    let prepared = prepare(&client, &key, args.kind, &args.rules).await?;
    let started = Instant::now();
    let job = client.submit(&key, prepared.spec.clone()).await?;
    println!("job {} accepted: {} tasks × {} replicas", job.id, job.tasks_total, prepared.spec.replicas);
    if args.no_wait {
        return Ok(());
    }
    let bar = ProgressBar::new(u64::from(job.tasks_total));
    let done = follow_prepared(&client, &job, &prepared, &bar).await?;
    let report = finish(&client, &done, &prepared.spec, &prepared.finish).await?;
    println!("job {} {:?} in {:.1}s: {report}", done.id, done.state, started.elapsed().as_secs_f64());
    Ok(())
}
