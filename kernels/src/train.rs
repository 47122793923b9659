//! Data-parallel training as one job: each round, one `mlp_grad_fx` task per shard of the
//! training set computes its gradient under the round's weights; a tree of `sum_i32` tasks adds
//! them into one verified gradient (with the round's loss and accuracy); one `mlp_step_fx` task
//! makes the next round's weights from it. Round `r + 1`'s tasks read round `r`'s verified
//! weights, so no step builds on an unverified one. A last `mlp_infer_fx` task classifies the
//! test set with the final weights.
//!
//! In the default numerics ([`Numerics::Fixed`]) everything is Q16 integer arithmetic with
//! wrapping sums, so the shards' gradients add up to the whole set's bit for bit: [`train_cpu`],
//! full-batch training on one CPU, gives exactly the weights the job's verified outputs hold,
//! whatever the sharding and whichever devices ran it. [`Numerics::F32`] runs the same rounds with
//! `mlp_grad_f32`, `sum_f32` and `mlp_step_f32`, compared within a tolerance, and has no test-set
//! task (classes are not comparable within a tolerance): its client classifies on its own.

use crate::mlp_f32::StepF32;
use crate::mlp_fx::{Shape, StepParams, from_q, i32_bytes};
use crate::{Result, kernel_error, reduce};
use starling_protocol::Hash32;
use starling_protocol::job::{BuiltinKernel, Comparison, KernelSpec, OutputOf, TaskInput, TaskSpec};

/// The kernels of a training job, in index order (task kernel 0 is the job's `kernel`).
pub const KERNEL: BuiltinKernel = BuiltinKernel::MlpGradFx;
pub const KERNEL_SUM: u8 = 1;
pub const KERNEL_STEP: u8 = 2;
pub const KERNEL_INFER: u8 = 3;

/// The arithmetic a training job runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Numerics {
    /// Q16 fixed point: bit-identical everywhere, compared exactly.
    #[default]
    Fixed,
    /// f32: compared within [`Numerics::comparison`]'s tolerance.
    F32,
}

impl Numerics {
    /// The gradient kernel, the job's `kernel`.
    pub fn grad(self) -> BuiltinKernel {
        match self {
            Numerics::Fixed => BuiltinKernel::MlpGradFx,
            Numerics::F32 => BuiltinKernel::MlpGradF32,
        }
    }

    /// How replicas are compared.
    pub fn comparison(self) -> Comparison {
        match self {
            Numerics::Fixed => Comparison::Exact,
            Numerics::F32 => Comparison::Tolerance { rel: 1e-3, abs: 1e-4 },
        }
    }

    /// The job's further kernels (`JobSpec::kernels`).
    pub fn kernels(self) -> Vec<KernelSpec> {
        let names: &[BuiltinKernel] = match self {
            Numerics::Fixed => &[BuiltinKernel::SumI32, BuiltinKernel::MlpStepFx, BuiltinKernel::MlpInferFx],
            Numerics::F32 => &[BuiltinKernel::SumF32, BuiltinKernel::MlpStepF32],
        };
        names.iter().map(|&name| KernelSpec::Builtin { name }).collect()
    }
}

/// The fixed-point job's further kernels (`JobSpec::kernels`).
pub fn kernels() -> Vec<KernelSpec> {
    Numerics::Fixed.kernels()
}

/// One shard of samples, as uploaded blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub samples: u32,
    /// `samples * inputs` Q16 words.
    pub features: Hash32,
    /// `samples` u32 labels.
    pub labels: Hash32,
}

/// What a training job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub inputs: u32,
    pub hidden: u32,
    pub outputs: u32,
    pub rounds: u32,
    /// Learning rate, Q16 (an f32 run steps by the same value).
    pub rate: i32,
    pub numerics: Numerics,
    /// The initial weights blob.
    pub weights: Hash32,
    pub shards: Vec<Shard>,
    /// The test set to classify with the final weights.
    pub test: Option<Shard>,
}

/// Where each round's figures and the final weights are among the job's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Per round: the root of its gradient sum (its output ends with the round's summed loss and
    /// count right) and its step (its output is the next round's weights).
    pub rounds: Vec<RoundTasks>,
    /// The test set's classes, when there is a test set.
    pub infer: Option<u32>,
    /// Samples per round (all shards).
    pub samples: u32,
    /// Words of weights.
    pub weight_words: u32,
    pub numerics: Numerics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTasks {
    pub sum: u32,
    pub step: u32,
}

impl Layout {
    /// The final weights' task.
    pub fn last_step(&self) -> Option<u32> {
        self.rounds.last().map(|r| r.step)
    }
}

/// The tasks of `plan` and where its results are. Refuses a plan no kernel would run.
pub fn tasks(plan: &Plan) -> Result<(Vec<TaskSpec>, Layout)> {
    if plan.shards.is_empty() || plan.rounds == 0 {
        return Err(kernel_error("training needs a shard and a round"));
    }
    let samples: u32 = plan
        .shards
        .iter()
        .try_fold(0u32, |n, s| n.checked_add(s.samples))
        .ok_or_else(|| kernel_error("too many samples"))?;
    let shape = |samples| Shape { inputs: plan.inputs, hidden: plan.hidden, outputs: plan.outputs, samples };
    let words = shape(1).weight_words();
    let grad_words = shape(1).grad_words();
    let (step_words, step_wg) = match plan.numerics {
        Numerics::Fixed => {
            let step = StepParams { weights: words, rate: plan.rate, samples };
            (step.to_words(), step.workgroups())
        }
        Numerics::F32 => {
            let step = StepF32 { weights: words, rate: from_q(plan.rate) as f32, samples };
            (step.to_words(), step.workgroups())
        }
    };
    let step_wg = step_wg.ok_or_else(|| kernel_error("too many weights"))?;
    let mut tasks: Vec<TaskSpec> = Vec::new();
    let mut layout = Layout { rounds: Vec::new(), infer: None, samples, weight_words: words, numerics: plan.numerics };
    let mut weights = TaskInput::Blob(plan.weights);
    for _ in 0..plan.rounds {
        let first = tasks.len() as u32;
        for shard in &plan.shards {
            let s = shape(shard.samples);
            tasks.push(TaskSpec {
                params: s.to_words(),
                inputs: vec![weights, TaskInput::Blob(shard.features), TaskInput::Blob(shard.labels)],
                workgroups: s.workgroups(),
                output_size: s.grad_words() * 4,
                kernel: 0,
            });
        }
        let leaves: Vec<u32> = (first..tasks.len() as u32).collect();
        let tree = reduce::tree(KERNEL_SUM, &leaves, grad_words, tasks.len() as u32);
        tasks.extend(tree);
        let sum = tasks.len() as u32 - 1;
        tasks.push(TaskSpec {
            params: step_words.clone(),
            inputs: vec![weights, TaskInput::Output(OutputOf { task: sum })],
            workgroups: step_wg,
            output_size: words * 4,
            kernel: KERNEL_STEP,
        });
        let step_task = tasks.len() as u32 - 1;
        layout.rounds.push(RoundTasks { sum, step: step_task });
        weights = TaskInput::Output(OutputOf { task: step_task });
    }
    if let Some(test) = plan.test.filter(|_| plan.numerics == Numerics::Fixed) {
        let s = shape(test.samples);
        tasks.push(TaskSpec {
            params: s.to_words(),
            inputs: vec![weights, TaskInput::Blob(test.features)],
            workgroups: s.workgroups(),
            output_size: test.samples * 4,
            kernel: KERNEL_INFER,
        });
        layout.infer = Some(tasks.len() as u32 - 1);
    }
    Ok((tasks, layout))
}

/// The layout of a training job read back from its spec (a page that did not build the job),
/// `None` for a job that is not one [`tasks`] lays out.
pub fn layout_of(spec: &starling_protocol::job::JobSpec) -> Option<Layout> {
    let numerics = [Numerics::Fixed, Numerics::F32]
        .into_iter()
        .find(|n| spec.kernel == (KernelSpec::Builtin { name: n.grad() }) && spec.kernels == n.kernels())?;
    let mut layout = Layout { rounds: Vec::new(), infer: None, samples: 0, weight_words: 0, numerics };
    for (i, task) in spec.tasks.iter().enumerate() {
        match task.kernel {
            KERNEL_STEP => {
                // Both numerics' steps: weights, rate, samples.
                let (weights, samples) = match numerics {
                    Numerics::Fixed => StepParams::from_words(&task.params).map(|s| (s.weights, s.samples)).ok()?,
                    Numerics::F32 => StepF32::from_words(&task.params).map(|s| (s.weights, s.samples)).ok()?,
                };
                let sum = task.inputs.get(1)?.task()?;
                layout.samples = samples;
                layout.weight_words = weights;
                layout.rounds.push(RoundTasks { sum, step: i as u32 });
            }
            KERNEL_INFER => layout.infer = Some(i as u32),
            _ => {}
        }
    }
    (!layout.rounds.is_empty()).then_some(layout)
}

/// A round's figures from its gradient sum's output: mean loss and accuracy on the training set,
/// under the round's weights (before its step).
pub fn round_figures(sum_output: &[u8], samples: u32, numerics: Numerics) -> Option<(f64, f64)> {
    let words = crate::bytes_to_words(sum_output);
    let n = words.len();
    (n >= 2 && samples > 0).then(|| {
        let (loss, right) = match numerics {
            Numerics::Fixed => (from_q(words[n - 2] as i32), f64::from(words[n - 1])),
            // f32 gradients count nothing (a near tie may go either way on two GPUs).
            Numerics::F32 => (f64::from(f32::from_bits(words[n - 2])), f64::NAN),
        };
        (loss / f64::from(samples), right / f64::from(samples))
    })
}

/// The share of `classes` (an `mlp_infer_fx` output) equal to `labels`.
pub fn accuracy(classes: &[u8], labels: &[u32]) -> f64 {
    let got = crate::bytes_to_words(classes);
    let right = got.iter().zip(labels).filter(|(a, b)| a == b).count();
    right as f64 / labels.len().max(1) as f64
}

/// One CPU's full-batch training: the weights after each round (the initial ones first) and each
/// round's (mean loss, accuracy) on the training set before its step.
pub fn train_cpu(
    shape: Shape,
    features: &[i32],
    labels: &[u32],
    weights: &[i32],
    rounds: u32,
    rate: i32,
) -> (Vec<Vec<u8>>, Vec<(f64, f64)>) {
    let (xs, ys) = (i32_bytes(features), crate::words_to_bytes(labels));
    let step = StepParams { weights: shape.weight_words(), rate, samples: shape.samples };
    let mut history = vec![i32_bytes(weights)];
    let mut figures = Vec::new();
    for _ in 0..rounds {
        let w = history.last().expect("initial weights");
        let grad = shape.grad_cpu(w, &xs, &ys);
        figures.push(round_figures(&grad, shape.samples, Numerics::Fixed).expect("a gradient has its figures"));
        let next = step.cpu(w, &grad);
        history.push(next);
    }
    (history, figures)
}

/// [`train_cpu`] in f32, from Q16 features and weights read as reals: the weights after each
/// round and each round's figures. Within the f32 job's tolerance of its verified weights.
pub fn train_cpu_f32(
    shape: Shape,
    features: &[i32],
    labels: &[u32],
    weights: &[i32],
    rounds: u32,
    rate: i32,
) -> (Vec<Vec<u8>>, Vec<(f64, f64)>) {
    let reals = |v: &[i32]| v.iter().flat_map(|&q| (from_q(q) as f32).to_le_bytes()).collect::<Vec<u8>>();
    let (xs, ys) = (reals(features), crate::words_to_bytes(labels));
    let step = StepF32 { weights: shape.weight_words(), rate: from_q(rate) as f32, samples: shape.samples };
    let mut history = vec![reals(weights)];
    let mut figures = Vec::new();
    for _ in 0..rounds {
        let w = history.last().expect("initial weights");
        let grad = crate::mlp_f32::grad_cpu(&shape, w, &xs, &ys);
        figures.push(round_figures(&grad, shape.samples, Numerics::F32).expect("a gradient has its figures"));
        let next = step.cpu(w, &grad);
        history.push(next);
    }
    (history, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::bytes::sha256;
    use starling_protocol::job::JobSpec;

    fn plan(shards: u32, rounds: u32) -> Plan {
        Plan {
            inputs: 64,
            hidden: 32,
            outputs: 10,
            rounds,
            rate: 1 << 16,
            numerics: Numerics::Fixed,
            weights: sha256(b"w"),
            shards: (0..shards)
                .map(|i| Shard { samples: 100, features: sha256(&[i as u8]), labels: sha256(&[i as u8, 1]) })
                .collect(),
            test: Some(Shard { samples: 50, features: sha256(b"t"), labels: sha256(b"tl") }),
        }
    }

    #[test]
    fn rounds_chain_through_verified_steps_and_pass_every_check() {
        let p = plan(8, 3);
        let (tasks, layout) = tasks(&p).unwrap();
        // 8 gradients, a tree of 2 + 1 sums, a step: 12 per round, and the test set.
        assert_eq!(tasks.len(), 3 * 12 + 1);
        assert_eq!(layout.rounds.len(), 3);
        let spec = JobSpec {
            label: "train".into(),
            kernel: KernelSpec::Builtin { name: KERNEL },
            kernels: kernels(),
            tasks: tasks.clone(),
            comparison: Default::default(),
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            price_per_replica: 0,
            deadline_secs: 600,
            homogeneous: false,
            nonce: 0,
            adaptive: None,
        };
        let size = |h: &Hash32| {
            if *h == p.weights {
                Some(u64::from(layout.weight_words) * 4)
            } else if let Some(s) = p.shards.iter().chain(p.test.iter()).find(|s| s.features == *h) {
                Some(u64::from(s.samples) * 64 * 4)
            } else {
                p.shards.iter().chain(p.test.iter()).find(|s| s.labels == *h).map(|s| u64::from(s.samples) * 4)
            }
        };
        crate::job::check(&spec, size).unwrap();
        let depths = spec.dependency_depths().unwrap();
        // Each round is a gradient, two levels of sums and a step deep.
        assert_eq!(depths[layout.rounds[2].step as usize], 3 * 4 - 1);
        // Round 2's gradients read round 1's step.
        assert_eq!(tasks[24].inputs[0], TaskInput::Output(OutputOf { task: layout.rounds[1].step }));
        assert_eq!(
            tasks[layout.infer.unwrap() as usize].inputs[0],
            TaskInput::Output(OutputOf { task: layout.rounds[2].step })
        );
        assert_eq!(layout_of(&spec).as_ref(), Some(&layout), "a page reads the same layout back from the spec");
        let other = JobSpec { kernels: vec![], ..spec.clone() };
        assert_eq!(layout_of(&other), None);
        // The f32 run: the same rounds with the f32 kernels, and no test-set task.
        let f = Plan { numerics: Numerics::F32, ..p.clone() };
        let (f_tasks, f_layout) = super::tasks(&f).unwrap();
        assert_eq!((f_tasks.len(), f_layout.infer), (3 * 12, None));
        let f_spec = JobSpec {
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MlpGradF32 },
            kernels: Numerics::F32.kernels(),
            tasks: f_tasks,
            comparison: Numerics::F32.comparison(),
            ..spec
        };
        crate::job::check(&f_spec, size).unwrap();
        assert_eq!(layout_of(&f_spec), Some(f_layout));
    }

    #[cfg(feature = "datasets")]
    #[test]
    fn training_on_the_cpu_learns_the_digits() {
        let (train, test) = crate::digits::Digits::load().split(5);
        let shape = Shape { inputs: 64, hidden: 32, outputs: 10, samples: train.len() as u32 };
        let w0 = crate::mlp_fx::init_weights(shape, 1);
        let (history, figures) =
            train_cpu(shape, &train.features(0..train.len()), &train.label_words(0..train.len()), &w0, 40, 1 << 15);
        let test_shape = Shape { samples: test.len() as u32, ..shape };
        let classes = test_shape.infer_cpu(history.last().unwrap(), &i32_bytes(&test.features(0..test.len())));
        let acc = accuracy(&classes, &test.label_words(0..test.len()));
        // Measured: the loss falls from 2.32 to 0.54, and 88.9% of the test set is right.
        assert!(figures.last().unwrap().0 < figures[0].0 / 3.0, "the loss falls: {figures:?}");
        assert!(acc > 0.85, "test accuracy {acc}");
    }
}
