//! `starling submit train` and `starling submit infer`: a small classifier of the handwritten
//! digits (see `kernels/data/README.md`) trained across workers as one job of verified rounds,
//! and batch inference with trained weights. Both run the Q16 fixed-point network
//! (`starling_kernels::mlp_fx`), so every worker, whatever its GPU, computes the same bits, and
//! the job's weights are exactly those of [`train::train_cpu`] on one CPU.

use crate::client::Client;
use anyhow::{Context, Result, bail};
use starling_kernels::digits::{CLASSES, Digits, FEATURES};
use starling_kernels::mlp_fx::{self, Shape, i32_bytes};
use starling_kernels::train::{self, Layout, Numerics, Plan, Shard};
use starling_protocol::job::{BuiltinKernel, KernelSpec, TaskInput, TaskSpec};
use starling_protocol::sign::Keypair;
use std::path::PathBuf;

/// Samples of the digits kept for testing: every `TEST_EVERY`-th.
pub const TEST_EVERY: usize = 5;

/// What `submit train` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Rounds of training: each a gradient per shard, their verified sum and a verified step.
    #[arg(long, default_value_t = 30)]
    pub rounds: u32,
    /// Shards of the training set (tasks per round).
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Hidden units (1 to 64).
    #[arg(long, default_value_t = 32)]
    pub hidden: u32,
    /// Learning rate.
    #[arg(long, default_value_t = 0.5)]
    pub rate: f64,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the trained weights (Q16 little-endian i32 words; f32 words with
    /// `--numerics f32`).
    #[arg(long, default_value = "weights.bin")]
    pub out: PathBuf,
    /// `fixed` (Q16, bit-identical on every device, compared exactly) or `f32` (compared within
    /// a tolerance; the test set is classified here, from the verified weights).
    #[arg(long, default_value = "fixed", value_parser = parse_numerics)]
    pub numerics: Numerics,
}

fn parse_numerics(s: &str) -> Result<Numerics, String> {
    match s {
        "fixed" => Ok(Numerics::Fixed),
        "f32" => Ok(Numerics::F32),
        other => Err(format!("{other:?}: fixed or f32")),
    }
}

/// What `submit infer` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct InferArgs {
    /// Trained weights, as `submit train` writes them.
    #[arg(long, default_value = "weights.bin")]
    pub weights: PathBuf,
    /// Hidden units the weights were trained with.
    #[arg(long, default_value_t = 32)]
    pub hidden: u32,
    /// Samples per task.
    #[arg(long, default_value_t = 128)]
    pub batch: u32,
    /// Classify all 1,797 digits instead of the test set only.
    #[arg(long)]
    pub all: bool,
}

/// A training job ready to post, and what its results mean.
#[derive(Debug)]
pub struct Training {
    pub tasks: Vec<TaskSpec>,
    pub kernels: Vec<KernelSpec>,
    pub layout: Layout,
    pub args: TrainArgs,
    shape: Shape,
    initial: Vec<i32>,
    train: Digits,
    test: Digits,
}

fn shape(hidden: u32, samples: u32) -> Shape {
    Shape { inputs: FEATURES as u32, hidden, outputs: CLASSES as u32, samples }
}

/// Uploads the shards, the test set and the initial weights, and lays out the rounds.
pub async fn prepare_train(client: &Client, key: &Keypair, args: TrainArgs) -> Result<Training> {
    if !(1..=mlp_fx::MAX_HIDDEN).contains(&args.hidden) {
        bail!("--hidden must be in 1..={}", mlp_fx::MAX_HIDDEN);
    }
    if !(args.rate > 0.0 && args.rate < 16.0) {
        bail!("--rate must be in (0, 16)");
    }
    let (train_set, test_set) = Digits::load().split(TEST_EVERY);
    let n = train_set.len() as u32;
    if args.shards == 0 || args.shards > n {
        bail!("--shards must be in 1..={n}");
    }
    let shape = shape(args.hidden, n);
    let initial = mlp_fx::init_weights(shape, args.seed);
    // The f32 run starts from the same reals.
    let words = |q: &[i32]| match args.numerics {
        Numerics::Fixed => i32_bytes(q),
        Numerics::F32 => q.iter().flat_map(|&v| (mlp_fx::from_q(v) as f32).to_le_bytes()).collect(),
    };
    let weights = client.upload(key, words(&initial)).await?;
    let mut shards = Vec::new();
    for s in 0..args.shards {
        let range = (s * n / args.shards) as usize..((s + 1) * n / args.shards) as usize;
        let samples = range.len() as u32;
        let features = client.upload(key, words(&train_set.features(range.clone()))).await?;
        let labels = client.upload(key, words_bytes(&train_set.label_words(range))).await?;
        shards.push(Shard { samples, features, labels });
    }
    let all = 0..test_set.len();
    let test = Shard {
        samples: test_set.len() as u32,
        features: client.upload(key, words(&test_set.features(all.clone()))).await?,
        labels: client.upload(key, words_bytes(&test_set.label_words(all))).await?,
    };
    let plan = Plan {
        inputs: shape.inputs,
        hidden: shape.hidden,
        outputs: shape.outputs,
        rounds: args.rounds,
        rate: mlp_fx::to_q(args.rate),
        numerics: args.numerics,
        weights,
        shards,
        test: Some(test),
    };
    let (tasks, layout) = train::tasks(&plan)?;
    let kernels = args.numerics.kernels();
    Ok(Training { tasks, kernels, layout, args, shape, initial, train: train_set, test: test_set })
}

fn words_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// One round's figures, once its gradient sum is verified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundLine {
    pub round: u32,
    pub loss: f64,
    pub accuracy: f64,
}

impl Training {
    /// The round whose gradient sum `task` is, if it is one.
    pub fn round_of(&self, task: u32) -> Option<u32> {
        self.layout.rounds.iter().position(|r| r.sum == task).map(|r| r as u32)
    }

    /// Reads round `round`'s figures from its verified gradient sum.
    pub async fn round_line(&self, client: &Client, job: starling_protocol::JobId, round: u32) -> Result<RoundLine> {
        let sum = self.layout.rounds[round as usize].sum;
        let out = client.task_output(job, sum).await?;
        let (loss, accuracy) = train::round_figures(&out, self.layout.samples, self.args.numerics)
            .context("a gradient sum without its figures")?;
        Ok(RoundLine { round, loss, accuracy })
    }

    /// After the job: writes the weights, checks them against one CPU's training of the same
    /// rounds, and reports the test accuracy of the verified classes beside the CPU's.
    pub async fn finish(&self, client: &Client, job: starling_protocol::JobId) -> Result<TrainReport> {
        let last = self.layout.last_step().context("no rounds")?;
        let weights = client.task_output(job, last).await?;
        std::fs::write(&self.args.out, &weights).with_context(|| format!("writing {}", self.args.out.display()))?;
        let labels = self.test.label_words(0..self.test.len());
        let network_accuracy = match self.layout.infer {
            Some(infer) => train::accuracy(&client.task_output(job, infer).await?, &labels),
            // f32: the verified weights classify here.
            None => train::accuracy(&words_bytes(&self.classify(&weights)), &labels),
        };
        let started = std::time::Instant::now();
        let cpu = self.cpu_run();
        let cpu_secs = started.elapsed().as_secs_f64();
        let difference = match self.args.numerics {
            Numerics::Fixed if weights == cpu.0 => 0.0,
            Numerics::Fixed => f64::INFINITY,
            Numerics::F32 => max_difference(&weights, &cpu.0),
        };
        Ok(TrainReport { network_accuracy, cpu_accuracy: cpu.1, cpu_secs, difference, numerics: self.args.numerics })
    }

    /// The test set's classes under `weights` (in this job's numerics), on this CPU.
    fn classify(&self, weights: &[u8]) -> Vec<u32> {
        let test_shape = Shape { samples: self.test.len() as u32, ..self.shape };
        let q = self.test.features(0..self.test.len());
        match self.args.numerics {
            Numerics::Fixed => starling_kernels::bytes_to_words(&test_shape.infer_cpu(weights, &i32_bytes(&q))),
            Numerics::F32 => {
                let xs: Vec<u8> = q.iter().flat_map(|&v| (mlp_fx::from_q(v) as f32).to_le_bytes()).collect();
                starling_kernels::mlp_f32::infer_cpu(&test_shape, weights, &xs)
            }
        }
    }

    /// One CPU's training of the same rounds and its test accuracy.
    pub fn cpu_run(&self) -> (Vec<u8>, f64) {
        let n = self.train.len();
        let train = match self.args.numerics {
            Numerics::Fixed => train::train_cpu,
            Numerics::F32 => train::train_cpu_f32,
        };
        let (history, _) = train(
            self.shape,
            &self.train.features(0..n),
            &self.train.label_words(0..n),
            &self.initial,
            self.args.rounds,
            mlp_fx::to_q(self.args.rate),
        );
        let weights = history.last().cloned().unwrap_or_default();
        let classes = self.classify(&weights);
        (weights, train::accuracy(&words_bytes(&classes), &self.test.label_words(0..self.test.len())))
    }
}

/// How a training job came out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainReport {
    /// Test accuracy of the classes the network's workers computed with the verified weights.
    pub network_accuracy: f64,
    /// Test accuracy of the same training on one CPU.
    pub cpu_accuracy: f64,
    /// How long that took here.
    pub cpu_secs: f64,
    /// The largest |difference| between the verified weights and the CPU's (0 when bit for bit
    /// the same; fixed point: infinite when they differ at all).
    pub difference: f64,
    pub numerics: Numerics,
}

/// The largest |difference| between two f32 vectors' elements (infinite for different lengths).
fn max_difference(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let f = |x: &[u8]| starling_kernels::bytes_to_words(x).into_iter().map(f32::from_bits).collect::<Vec<_>>();
    // A NaN anywhere is as far as it gets (f64::max would drop it).
    f(a).iter()
        .zip(f(b))
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) })
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "test accuracy {:.1}% across the network, {:.1}% on one CPU alone ({:.1}s); weights {}",
            self.network_accuracy * 100.0,
            self.cpu_accuracy * 100.0,
            self.cpu_secs,
            match (self.numerics, self.difference) {
                (_, 0.0) => "bit-identical to the CPU's".to_string(),
                (Numerics::Fixed, _) => "DIFFER from the CPU's".to_string(),
                (Numerics::F32, d) => format!("within {d:.1e} of the CPU's (f32)"),
            }
        )
    }
}

/// Batch inference: the weights as one input every task shares (cached by workers), the samples
/// split into tasks of `batch`.
pub async fn prepare_infer(client: &Client, key: &Keypair, args: &InferArgs) -> Result<(Vec<TaskSpec>, Vec<u32>)> {
    let bytes = std::fs::read(&args.weights).with_context(|| format!("reading {}", args.weights.display()))?;
    let words = shape(args.hidden, 1).weight_words() as usize;
    if bytes.len() != words * 4 {
        bail!(
            "{} holds {} bytes; a network of {} hidden units has {}",
            args.weights.display(),
            bytes.len(),
            args.hidden,
            words * 4
        );
    }
    if args.batch == 0 || args.batch > mlp_fx::MAX_SAMPLES {
        bail!("--batch must be in 1..={}", mlp_fx::MAX_SAMPLES);
    }
    let all = Digits::load();
    let set = if args.all { all } else { all.split(TEST_EVERY).1 };
    let weights = client.upload(key, bytes).await?;
    let mut tasks = Vec::new();
    for start in (0..set.len()).step_by(args.batch as usize) {
        let range = start..(start + args.batch as usize).min(set.len());
        let s = shape(args.hidden, range.len() as u32);
        let x = client.upload(key, i32_bytes(&set.features(range))).await?;
        tasks.push(TaskSpec {
            params: s.to_words(),
            inputs: vec![TaskInput::Blob(weights), TaskInput::Blob(x)],
            workgroups: s.workgroups(),
            output_size: s.samples * 4,
            kernel: 0,
        });
    }
    Ok((tasks, set.label_words(0..set.len())))
}

/// The kernel of an inference job.
pub fn infer_kernel() -> KernelSpec {
    KernelSpec::Builtin { name: BuiltinKernel::MlpInferFx }
}
