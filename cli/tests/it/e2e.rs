//! End to end: real relay and worker processes on 127.0.0.1, workers on software Vulkan
//! (lavapipe). Covers a job verified against the CPU reference with live events, a lying worker,
//! a worker killed (and one frozen) mid-task, and the relay killed with -9 mid-job.

use crate::support::*;
use futures_util::StreamExt;
use starling_protocol::TaskId;
use starling_protocol::api::{JobState, ReplicaState, TaskState};
use starling_protocol::events::JobEvent;
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
use starling_web_worker::kernels::{mandelbrot, matmul_f32, monte_carlo_pi};
use std::collections::HashMap;
use std::time::Duration;

fn job(kernel: BuiltinKernel, tasks: Vec<TaskSpec>, comparison: Comparison) -> JobSpec {
    JobSpec {
        label: format!("e2e {}", kernel.name()),
        kernel: KernelSpec::Builtin { name: kernel },
        tasks,
        comparison,
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price_per_replica: 0,
        deadline_secs: 600,
        homogeneous: false,
        nonce: rand_nonce(),
        adaptive: None,
        kernels: Vec::new(),
    }
}

fn rand_nonce() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn mandelbrot_job(width: u32, height: u32, tile: u32, max_iter: u32) -> JobSpec {
    job(
        BuiltinKernel::Mandelbrot,
        mandelbrot::tile_job_tasks(width, height, tile, max_iter, (-0.6, 0.0), 3.0),
        Comparison::Exact,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_with_verified_results_equal_to_the_cpu_reference() {
    let (dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &[]);
    let _w1 = spawn_worker(&relay.base, dir.path(), "w1", &[]);
    let _w2 = spawn_worker(&relay.base, dir.path(), "w2", &[]);
    let api = Api::new(&relay.base);
    api.wait_workers(2).await;

    // 96×64 pixel tiles (24 KiB of output each) are uploaded under a signature for their lease;
    // the matmul and pi outputs are small enough to travel inside the result message.
    let render = mandelbrot_job(192, 64, 96, 200);
    assert!(render.tasks.iter().all(|t| t.output_size as usize > starling_protocol::limits::MAX_INLINE_OUTPUT_BYTES));
    let render_job = api.submit(render.clone()).await;
    // Watch the render live.
    let url = format!("{}/v1/jobs/{}/events", relay.base.replace("http", "ws"), render_job.id);
    let (mut events, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    let (m, n, k) = (40, 24, 72);
    let a = api.upload(matmul_f32::f32s_to_bytes(&(0..m * k).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>())).await;
    let b = api.upload(matmul_f32::f32s_to_bytes(&(0..k * n).map(|i| (i % 5) as f32 * 0.5).collect::<Vec<_>>())).await;
    let matmul = job(
        BuiltinKernel::MatmulF32,
        matmul_f32::tasks_for(m, n, k, a, b, 16),
        Comparison::Tolerance { rel: 1e-5, abs: 1e-4 },
    );
    let pi = job(BuiltinKernel::MonteCarloPi, monte_carlo_pi::tasks(9, 3, 8, 64), Comparison::Exact);
    let matmul_job = api.submit(matmul.clone()).await;
    let pi_job = api.submit(pi.clone()).await;

    let mut verified_events = Vec::new();
    let mut snapshot = false;
    while let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(120), events.next()).await.expect("events flow")
    {
        let tokio_tungstenite::tungstenite::Message::Text(text) = msg else { continue };
        match serde_json::from_str::<JobEvent>(text.as_str()).unwrap() {
            JobEvent::Snapshot { .. } => snapshot = true,
            JobEvent::TaskVerified { verified, total, .. } => verified_events.push((verified, total)),
            JobEvent::JobDone { job } => {
                assert_eq!(job.tasks_verified, job.tasks_total);
                break;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(snapshot, "first event is a snapshot");
    let total = render.tasks.len() as u32;
    assert_eq!(verified_events.last(), Some(&(total, total)));
    assert!(verified_events.windows(2).all(|w| w[0].0 < w[1].0), "progress only grows: {verified_events:?}");

    for (summary, spec) in [(&render_job, &render), (&matmul_job, &matmul), (&pi_job, &pi)] {
        let detail = api.wait_done(summary.id).await;
        let expected = cpu_outputs(&api, spec).await;
        for (i, want) in expected.iter().enumerate() {
            let got = api.output(summary.id, i as u32).await;
            match spec.comparison {
                Comparison::Exact => assert_eq!(&got, want, "{} task {i} differs from the CPU", spec.label),
                Comparison::Tolerance { .. } => {
                    let (g, w) = (matmul_f32::bytes_to_f32s(&got), matmul_f32::bytes_to_f32s(want));
                    assert_eq!(g.len(), w.len());
                    for (x, y) in g.iter().zip(&w) {
                        assert!((x - y).abs() <= 1e-3, "{} task {i}: {x} vs {y}", spec.label);
                    }
                }
            }
            let task = &detail.tasks[i];
            assert_eq!(task.state, TaskState::Verified);
            let accepted: Vec<_> = task.replicas.iter().filter(|r| r.state == ReplicaState::Accepted).collect();
            assert!(accepted.len() >= 2, "quorum of 2 distinct workers");
            assert_ne!(accepted[0].worker, accepted[1].worker, "replicas ran on distinct workers");
        }
    }
    // Both workers did work: it was spread, not piled on one.
    let workers = api.workers().await;
    assert!(workers.iter().all(|w| w["replicas_accepted"].as_u64().unwrap() > 0), "{workers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_worker_never_gets_a_wrong_result_accepted() {
    let (dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &[]);
    let _h1 = spawn_worker(&relay.base, dir.path(), "honest1", &[]);
    let _h2 = spawn_worker(&relay.base, dir.path(), "honest2", &[]);
    // Two honest results against the liar's escalate; three against one verify.
    let _h3 = spawn_worker(&relay.base, dir.path(), "honest3", &[]);
    let mut liar = spawn_worker(&relay.base, dir.path(), "liar", &["--corrupt-results"]);
    let liar_key = worker_key(&mut liar);
    let api = Api::new(&relay.base);
    api.wait_workers(4).await;

    let spec = mandelbrot_job(128, 64, 16, 100);
    let summary = api.submit(spec.clone()).await;
    let detail = api.wait_done(summary.id).await;
    let expected = cpu_outputs(&api, &spec).await;
    let mut liar_rejected = 0;
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&api.output(summary.id, i as u32).await, want, "task {i} accepted a wrong result");
        for r in &detail.tasks[i].replicas {
            if r.worker.to_hex() == liar_key {
                assert_ne!(r.state, ReplicaState::Accepted, "the liar's result was accepted on task {i}");
                if r.state == ReplicaState::Rejected {
                    liar_rejected += 1;
                    assert_ne!(r.output_hash, detail.tasks[i].output_hash, "evidence keeps the dissenting hash");
                }
            }
        }
    }
    assert!(liar_rejected > 0, "the liar took part and was caught");
    let workers = api.workers().await;
    let liar_view = workers.iter().find(|w| w["key"] == liar_key.as_str()).unwrap();
    assert_eq!(liar_view["replicas_accepted"], 0);
    assert_eq!(liar_view["replicas_rejected"].as_u64().unwrap(), liar_rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_killed_and_frozen_workers_are_reassigned() {
    let (dir, data) = tempdir();
    let relay = spawn_relay(&data, 0, &["--lease-ms", "1500"]);
    let api = Api::new(&relay.base);
    let mut killed = spawn_worker_logging_assignments(&relay.base, dir.path(), "killed", &["--stall-tasks"]);
    let killed_key = worker_key(&mut killed);
    let mut frozen = spawn_worker_logging_assignments(&relay.base, dir.path(), "frozen", &["--stall-tasks"]);
    let frozen_key = worker_key(&mut frozen);
    api.wait_workers(2).await;

    let spec = job(BuiltinKernel::MonteCarloPi, monte_carlo_pi::tasks(3, 1, 4, 32), Comparison::Exact);
    let summary = api.submit(spec.clone()).await;
    // Both replicas of the task are leased, one to each stalled worker: each says so in its own
    // log, while the relay shows nobody who holds the undecided task.
    let task = TaskId { job: summary.id, index: 0 };
    let start = std::time::Instant::now();
    while !(assigned(dir.path(), "killed", task) && assigned(dir.path(), "frozen", task)) {
        assert!(start.elapsed() < Duration::from_secs(30), "the stalled workers were never both handed the task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = api.job(summary.id).await;
    assert_eq!(pending.tasks[0].state, TaskState::Pending);
    assert!(pending.tasks[0].replicas.is_empty(), "an undecided task's holders were shown");
    killed.kill9();
    frozen.signal("-STOP");

    let _h1 = spawn_worker(&relay.base, dir.path(), "h1", &[]);
    let _h2 = spawn_worker(&relay.base, dir.path(), "h2", &[]);
    let detail = api.wait_done(summary.id).await;
    assert_eq!(api.output(summary.id, 0).await, cpu_outputs(&api, &spec).await[0]);
    let state_of = |key: &str| detail.tasks[0].replicas.iter().find(|r| r.worker.to_hex() == key).map(|r| r.state);
    assert_eq!(state_of(&killed_key), Some(ReplicaState::Lapsed), "killed worker's lease lapsed");
    assert_eq!(state_of(&frozen_key), Some(ReplicaState::Lapsed), "silent worker's lease lapsed");
    let accepted = detail.tasks[0].replicas.iter().filter(|r| r.state == ReplicaState::Accepted).count();
    assert_eq!(accepted, 2);
    // The relay dropped the frozen worker; thawed, it notices and reconnects.
    let online =
        |workers: &[serde_json::Value], key: &str| workers.iter().any(|w| w["key"] == key && w["online"] == true);
    assert!(!online(&api.workers().await, &frozen_key));
    frozen.signal("-CONT");
    let start = std::time::Instant::now();
    while !online(&api.workers().await, &frozen_key) {
        assert!(start.elapsed() < Duration::from_secs(30), "thawed worker never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_job_loses_no_verified_result() {
    let (dir, data) = tempdir();
    let mut relay = spawn_relay(&data, 0, &[]);
    let port = relay.port;
    let api = Api::new(&relay.base);
    // Resting workers stretch the job so the kill lands mid-way.
    let _w1 = spawn_worker(&relay.base, dir.path(), "w1", &["--duty", "0.25"]);
    let _w2 = spawn_worker(&relay.base, dir.path(), "w2", &["--duty", "0.25"]);
    api.wait_workers(2).await;

    let spec = mandelbrot_job(256, 192, 32, 300);
    let total = spec.tasks.len() as u32;
    let summary = api.submit(spec.clone()).await;
    let before = api.wait_for(summary.id, Duration::from_secs(120), |d| d.summary.tasks_verified >= 4).await;
    assert!(before.summary.tasks_verified < total, "job finished before the kill; make it bigger");
    relay.proc.kill9();
    let verified_before: HashMap<u32, _> =
        before.tasks.iter().filter(|t| t.state == TaskState::Verified).map(|t| (t.index, t.output_hash)).collect();

    let relay = spawn_relay(&data, port, &[]);
    assert_eq!(relay.port, port);
    let detail = api.wait_done(summary.id).await;
    assert_eq!(detail.summary.state, JobState::Done);
    assert_eq!(detail.summary.tasks_verified, total, "each task verified exactly once");
    for (index, hash) in &verified_before {
        assert_eq!(&detail.tasks[*index as usize].output_hash, hash, "verified result {index} survived unchanged");
    }
    let expected = cpu_outputs(&api, &spec).await;
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&api.output(summary.id, i as u32).await, want, "task {i}");
        let accepted = detail.tasks[i].replicas.iter().filter(|r| r.state == ReplicaState::Accepted).count();
        assert_eq!(accepted, 2, "task {i} settled once with exactly its quorum");
    }
}
