//! Issue 14's workloads end to end, with real relay and worker processes on lavapipe: a
//! reduction tree ending in one verified answer, data-parallel training of the digits classifier
//! as one job of verified rounds (bit-identical to one CPU's training, a corrupted gradient caught
//! and rejected), and the relay refusing dependency graphs it could never run.

use crate::support::*;
use serde_json::Value;
use starling_protocol::api::{JobState, ReplicaState, TaskState};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, OutputOf, TaskInput, TaskSpec};
use starling_web_worker::kernels::{self, monte_carlo_pi, reduce};
use std::process::Command;

/// A relay and two honest native workers, all connected.
struct Network {
    _dir: tempfile::TempDir,
    _relay: Relay,
    _workers: [Proc; 2],
    api: Api,
}

async fn two_workers() -> Network {
    let (dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &[]);
    let workers = ["w1", "w2"].map(|name| spawn_worker(&relay.base, dir.path(), name, &[]));
    let api = Api::new(&relay.base);
    api.wait_workers(2).await;
    Network { _dir: dir, _relay: relay, _workers: workers, api }
}

fn spec(kernel: BuiltinKernel, kernels: Vec<KernelSpec>, tasks: Vec<TaskSpec>) -> JobSpec {
    JobSpec {
        label: "workloads".into(),
        kernel: KernelSpec::Builtin { name: kernel },
        kernels,
        tasks,
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price_per_replica: 0,
        deadline_secs: 600,
        homogeneous: false,
        nonce: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        adaptive: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reduction_tree_ends_in_one_verified_answer_equal_to_the_cpu_reference() {
    let Network { api, .. } = &two_workers().await;

    // Thirteen pi tasks of 8 workgroups (one count each), added up by a tree of sum_i32 tasks
    // (13 -> 3 -> 1): the root's 8 words are the counts of all 13 tasks, word by word.
    let (n, workgroups) = (13u32, 8u32);
    let mut tasks = monte_carlo_pi::tasks(5, n, workgroups, 32);
    let leaves = tasks.clone();
    let leaf_ids: Vec<u32> = (0..n).collect();
    tasks.extend(reduce::tree(1, &leaf_ids, workgroups, n));
    assert_eq!(tasks.len(), 13 + 3 + 1);
    let job = spec(BuiltinKernel::MonteCarloPi, vec![KernelSpec::Builtin { name: BuiltinKernel::SumI32 }], tasks);
    let summary = api.submit(job.clone()).await;
    let detail = api.wait_done(summary.id).await;
    assert_eq!(detail.summary.state, JobState::Done);
    assert!(detail.tasks.iter().all(|t| t.state == TaskState::Verified));

    let mut want = vec![0u32; workgroups as usize];
    for t in &leaves {
        let out = kernels::run_cpu(BuiltinKernel::MonteCarloPi, &t.params, &[], t.workgroups, t.output_size).unwrap();
        for (w, c) in want.iter_mut().zip(kernels::bytes_to_words(&out)) {
            *w = w.wrapping_add(c);
        }
    }
    let root = api.output(summary.id, job.tasks.len() as u32 - 1).await;
    assert_eq!(kernels::bytes_to_words(&root), want, "the one answer is the CPU's sum");
    // Every sum in the tree was run by two workers that agreed, like any other task.
    for t in &detail.tasks[n as usize..] {
        assert_eq!(t.replicas.iter().filter(|r| r.state == ReplicaState::Accepted).count(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rounds_of_training_are_bit_identical_to_the_cpu_and_a_corrupted_gradient_is_rejected() {
    let (dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &[]);
    let _h1 = spawn_worker(&relay.base, dir.path(), "h1", &[]);
    let _h2 = spawn_worker(&relay.base, dir.path(), "h2", &[]);
    let mut liar = spawn_worker(&relay.base, dir.path(), "liar", &["--corrupt-one", "mlp_grad_fx"]);
    let liar_key = worker_key(&mut liar);
    let api = Api::new(&relay.base);
    api.wait_workers(3).await;

    let weights = dir.path().join("weights.bin");
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["submit", "--relay", &relay.base, "--key-file"])
        .arg(dir.path().join("client.key"))
        .args(["train", "--rounds", "3", "--shards", "3", "--out"])
        .arg(&weights)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "submit train failed:\n{stdout}\n{stderr}");
    // The rounds' figures were printed as they were verified (the bar prints to stderr).
    let rounds: Vec<&str> =
        stderr.lines().chain(stdout.lines()).filter(|l| l.contains("round ") && l.contains("loss")).collect();
    assert_eq!(rounds.len(), 3, "one line per round:\n{stdout}\n{stderr}");
    assert!(stdout.contains("bit-identical to the CPU's"), "{stdout}");

    // The weights the network verified are, bit for bit, one CPU's three rounds of training.
    let (train_set, _) = kernels::digits::Digits::load().split(5);
    let n = train_set.len();
    let shape = kernels::mlp_fx::Shape { inputs: 64, hidden: 32, outputs: 10, samples: n as u32 };
    let (history, figures) = kernels::train::train_cpu(
        shape,
        &train_set.features(0..n),
        &train_set.label_words(0..n),
        &kernels::mlp_fx::init_weights(shape, 1),
        3,
        kernels::mlp_fx::to_q(0.5),
    );
    assert_eq!(std::fs::read(&weights).unwrap(), history[3], "the written weights are the CPU's");
    assert!(figures[2].0 < figures[0].0, "the loss fell over three rounds: {figures:?}");

    // The liar's one corrupted gradient was caught: rejected, never accepted, and the task it
    // sat on verified with the honest answer all the same.
    let job_id: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("job ").and_then(|r| r.split_whitespace().next()).and_then(|id| id.parse().ok()))
        .expect("a job id in the output");
    let detail = api.job(starling_protocol::JobId(job_id)).await;
    assert_eq!(detail.summary.state, JobState::Done);
    let mut liar_rejected = 0;
    for (i, t) in detail.tasks.iter().enumerate() {
        for r in t.replicas.iter().filter(|r| r.worker.to_hex() == liar_key) {
            if r.state == ReplicaState::Rejected {
                liar_rejected += 1;
                assert_eq!(detail.spec.tasks[i].kernel, 0, "only a gradient was corrupted (task {i})");
                assert_ne!(r.output_hash, t.output_hash);
            }
        }
    }
    assert_eq!(liar_rejected, 1, "the one corrupted gradient was rejected");
    let workers: Vec<Value> = api.workers().await;
    let liar_view = workers.iter().find(|w| w["key"] == liar_key.as_str()).unwrap();
    assert_eq!(liar_view["replicas_rejected"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphs_the_relay_could_never_run_are_refused_with_clear_errors_and_nothing_stored() {
    let (_dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &[]);
    let api = Api::new(&relay.base);
    let pi = monte_carlo_pi::tasks(1, 1, 8, 32).remove(0);
    let sum = |inputs: Vec<TaskInput>| {
        let p = reduce::ReduceParams { words: 8, fan_in: inputs.len() as u32 };
        TaskSpec { params: p.to_words(), inputs, workgroups: p.workgroups().unwrap(), output_size: 32, kernel: 1 }
    };
    let out = |task| TaskInput::Output(OutputOf { task });
    let sums = vec![KernelSpec::Builtin { name: BuiltinKernel::SumI32 }];
    let mut chain = vec![pi.clone()];
    for i in 0..=starling_protocol::limits::MAX_DEPENDENCY_DEPTH as u32 {
        chain.push(sum(vec![out(i)]));
    }
    let mut wrong_size = pi.clone();
    wrong_size.workgroups = [4, 1, 1];
    wrong_size.output_size = 16;
    let cases: Vec<(&str, JobSpec, u16, &str, &str)> = vec![
        (
            "a cycle",
            spec(BuiltinKernel::MonteCarloPi, sums.clone(), vec![pi.clone(), sum(vec![out(2)]), sum(vec![out(1)])]),
            400,
            "invalid_spec",
            "cycle: 1 reads 2 reads 1",
        ),
        ("a chain too deep", spec(BuiltinKernel::MonteCarloPi, sums.clone(), chain), 413, "too_large", "levels deep"),
        (
            "a missing task",
            spec(BuiltinKernel::MonteCarloPi, sums.clone(), vec![pi.clone(), sum(vec![out(5)])]),
            400,
            "invalid_spec",
            "task 5, which does not exist",
        ),
        (
            "an input of the wrong size",
            spec(BuiltinKernel::MonteCarloPi, sums.clone(), vec![wrong_size, sum(vec![out(0)])]),
            400,
            "invalid_spec",
            "task 1: ",
        ),
        (
            "a kernel that does not exist",
            spec(BuiltinKernel::MonteCarloPi, vec![], vec![pi.clone(), sum(vec![out(0)])]),
            400,
            "invalid_spec",
            "kernel 1 does not exist",
        ),
    ];
    for (name, job, status, code, text) in cases {
        let signed = api.sign(job).await;
        let resp = api.http.post(format!("{}/v1/jobs", api.base)).json(&signed).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{name}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains(text), "{name}: {body}");
    }
    let jobs: Value = api.http.get(format!("{}/v1/jobs", api.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs.as_array().map_or(0, Vec::len), 0, "nothing was stored: {jobs}");
}

/// `starling demo` trains the classifier across its workers (a liar among them) and prints the
/// test accuracy beside one CPU's run of the same training.
#[test]
fn the_demo_trains_a_classifier_and_sets_its_accuracy_beside_one_cpus() {
    let (dir, _) = tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["demo", "--width", "64", "--height", "32", "--matrix", "32", "--train-rounds", "3", "--out"])
        .arg(dir.path().join("render.png"))
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("training accuracy").count(), 3, "a line per round: {text}");
    let line = text.lines().find(|l| l.contains("digits training")).expect("the training job's report");
    assert!(line.contains("across the network") && line.contains("on one CPU alone"), "{line}");
    assert!(line.contains("weights bit-identical to the CPU's"), "{line}");
}

/// A forward pass as one task of three dispatches (matmul, bias, activation) over named
/// buffers, posted as client WGSL: validated stage by stage at the relay, run by two native
/// workers that agree, equal to the CPU's; a pipeline with a stage that breaks the binding
/// convention is refused naming the stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_task_runs_a_forward_pass_and_a_broken_stage_is_refused_by_name() {
    use starling_web_worker::kernels::examples::{dense_relu, dense_relu_cpu};
    let Network { api, .. } = &two_workers().await;

    let (n, k, m) = (6usize, 8usize, 10usize);
    let x: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 - 3.0).collect();
    let w: Vec<f32> = (0..k * m).map(|i| (i % 3) as f32 - 1.0).collect();
    let b: Vec<f32> = (0..m).map(|i| i as f32 - 5.0).collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let (hx, hw, hb) = (api.upload(bytes(&x)).await, api.upload(bytes(&w)).await, api.upload(bytes(&b)).await);
    let task = TaskSpec {
        params: vec![n as u32, k as u32, m as u32],
        inputs: vec![hx.into(), hw.into(), hb.into()],
        workgroups: [((n * m) as u32).div_ceil(64), 1, 1],
        output_size: (n * m * 4) as u32,
        kernel: 0,
    };
    let mut job = spec(BuiltinKernel::MonteCarloPi, vec![], vec![task]);
    job.kernel = dense_relu(n as u32, m as u32);
    let summary = api.submit(job.clone()).await;
    let detail = api.wait_done(summary.id).await;
    assert_eq!(detail.summary.state, JobState::Done);
    assert_eq!(api.output(summary.id, 0).await, bytes(&dense_relu_cpu(n, k, m, &x, &w, &b)));
    assert_eq!(detail.tasks[0].replicas.iter().filter(|r| r.state == ReplicaState::Accepted).count(), 2);

    // A buffer smaller than the array the shader declares for it: WebGPU would fail the dispatch
    // on every worker, so the relay refuses the job.
    let mut small = job.clone();
    if let KernelSpec::Pipeline { source, .. } = &mut small.kernel {
        *source = source.replace("read_write> z: array<f32>", "read_write> z: array<f32, 1024>");
    }
    let signed = api.sign(small).await;
    let resp = api.http.post(format!("{}/v1/jobs", api.base)).json(&signed).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid_spec", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("stage 0: binding 3 is 240 bytes; the shader needs at least 4096"),
        "{body}"
    );

    // The relu stage asked to bind two inputs: its output binding would be read-only.
    if let KernelSpec::Pipeline { stages, .. } = &mut job.kernel {
        stages[2].inputs.push("input:0".into());
    }
    let signed = api.sign(job).await;
    let resp = api.http.post(format!("{}/v1/jobs", api.base)).json(&signed).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid_wgsl", "{body}");
    assert!(body["message"].as_str().unwrap().contains("stage 2 (`relu`)"), "{body}");
}

/// The same training in f32: the gradients are a two-dispatch built-in (per-sample rows, then
/// their sum), replicas agree within the job's tolerance, and the verified weights are within a
/// hair of one CPU's f32 training.
#[test]
fn training_in_f32_verifies_within_its_tolerance_of_the_cpu() {
    let (dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &[]);
    let _w1 = spawn_worker(&relay.base, dir.path(), "w1", &[]);
    let _w2 = spawn_worker(&relay.base, dir.path(), "w2", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["submit", "--relay", &relay.base, "--key-file"])
        .arg(dir.path().join("client.key"))
        .args(["train", "--rounds", "3", "--shards", "2", "--numerics", "f32", "--out"])
        .arg(dir.path().join("weights.bin"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("round ") && l.contains("loss")).count(), 3, "{stdout}");
    let report = stdout.lines().find(|l| l.contains("test accuracy")).expect("a report");
    // Bit-identical is possible (lavapipe and the CPU may round alike); otherwise within 1e-3.
    let close = report.contains("bit-identical")
        || report
            .split("within ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|d| d.parse::<f64>().ok())
            .is_some_and(|d| d < 1e-3);
    assert!(close, "{report}");
    assert_eq!(std::fs::metadata(dir.path().join("weights.bin")).unwrap().len(), 2410 * 4);
}

/// A client's own WGSL reducer: the element-wise largest of two pi tasks' counts, as a task of a
/// second (WGSL) kernel that reads both outputs, run by both workers; and a top-k over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_wgsl_reducer_reads_verified_outputs() {
    let Network { api, .. } = &two_workers().await;
    let reducer = "\
struct P { words: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(64)
fn largest(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < p.words) { out[id.x] = max(a[id.x], b[id.x]); }
}
";
    let mut tasks = monte_carlo_pi::tasks(11, 2, 8, 32);
    let leaves = tasks.clone();
    tasks.push(TaskSpec {
        params: vec![8],
        inputs: vec![TaskInput::Output(OutputOf { task: 0 }), TaskInput::Output(OutputOf { task: 1 })],
        workgroups: [1, 1, 1],
        output_size: 32,
        kernel: 1,
    });
    let job = spec(
        BuiltinKernel::MonteCarloPi,
        vec![KernelSpec::Wgsl { source: reducer.into(), entry_point: "largest".into() }],
        tasks,
    );
    let summary = api.submit(job).await;
    let detail = api.wait_done(summary.id).await;
    assert_eq!(detail.summary.state, JobState::Done);
    let cpu: Vec<Vec<u32>> = leaves
        .iter()
        .map(|t| {
            kernels::bytes_to_words(
                &kernels::run_cpu(BuiltinKernel::MonteCarloPi, &t.params, &[], t.workgroups, t.output_size).unwrap(),
            )
        })
        .collect();
    let want: Vec<u32> = cpu[0].iter().zip(&cpu[1]).map(|(a, b)| *a.max(b)).collect();
    assert_eq!(kernels::bytes_to_words(&api.output(summary.id, 2).await), want);
}
