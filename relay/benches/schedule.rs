//! Cost of one lease in the relay's pure scheduler as the number of connected workers grows.
//!
//! ```sh
//! cargo bench -p starling-relay --bench schedule
//! cargo bench -p starling-relay --bench schedule -- --workers 1000,10000,100000 --seconds 1 --fill-max 100000
//! ```
//!
//! For each worker count N (one slot each, asking prices 0–9, four adapter classes) and 300 jobs
//! (price 10, every tenth homogeneous, tasks of 2 replicas), three figures:
//!
//! - **steady**: all but 256 workers have no room (paused, which the scheduler treats like busy).
//!   A cycle is what the relay does per batch: `assign` hands the 256 free workers a replica each,
//!   then each lease is returned (`lease_returned`), a task with nothing outstanding is closed
//!   (`outstanding`, `close_task`), a job whose tasks are all closed is removed and replaced by a
//!   fresh one (`remove_job`, `add_job`), and the tick runs (`silent_workers`, `expire`). Reported:
//!   wall time of the cycles ÷ leases handed out.
//! - **fill**: all N workers free; one `assign` hands every one of them a replica. Reported: wall
//!   time ÷ N. Skipped above `--fill-max` workers (the scheduler before the indexes took
//!   quadratic time here).
//! - **heartbeat**: `worker_heartbeat` for every worker. Reported: wall time ÷ N.
//!
//! `cargo test --all-targets` builds this file but, without `--bench`, `main` returns at once.

use starling_protocol::worker::{AdapterInfo, Backend, Capabilities, DeviceLimits, DeviceState, Platform};
use starling_protocol::{JobId, PublicKey, TaskId};
use starling_relay::scheduler::{Config, JobRequirements, Scheduler, TaskNeeds};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const JOBS: u64 = 300;
const FREE_WORKERS: usize = 256;
const REPLICAS: u8 = 2;
const TASKS_PER_JOB: u32 = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: measure nothing.
        println!("schedule: run with `cargo bench -p starling-relay --bench schedule`");
        return;
    }
    let mut workers = vec![1_000, 10_000, 100_000];
    let mut seconds = 1.0_f64;
    let mut fill_max = usize::MAX;
    let mut rest = args.iter().filter(|a| *a != "--bench");
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--workers" => workers = value.split(',').map(|n| n.parse().expect("worker count")).collect(),
            "--seconds" => seconds = value.parse().expect("seconds"),
            "--fill-max" => fill_max = value.parse().expect("worker count"),
            other => panic!("unknown option {other}"),
        }
    }

    println!("| workers online | steady: ns per lease | fill: ns per lease | heartbeat: ns |");
    println!("| ---: | ---: | ---: | ---: |");
    for n in workers {
        let steady = steady_ns_per_lease(n, Duration::from_secs_f64(seconds));
        let fill = if n <= fill_max { format!("{:.0}", fill_ns_per_lease(n)) } else { "—".into() };
        let heartbeat = heartbeat_ns(n);
        println!("| {n} | {steady:.0} | {fill} | {heartbeat:.0} |");
    }
}

/// Spreads worker keys over the key space, as public keys are.
fn worker_key(i: usize) -> PublicKey {
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&x.to_be_bytes());
    bytes[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    PublicKey(bytes)
}

fn worker_caps(i: usize) -> Capabilities {
    Capabilities {
        backend: Backend::Vulkan,
        platform: Platform::Native,
        adapter: AdapterInfo { vendor: [0x10de, 0x1002, 0x8086, 0x106b][i % 4], ..Default::default() },
        limits: DeviceLimits {
            max_buffer_size: 1 << 28,
            max_storage_buffer_binding_size: 1 << 27,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroups_per_dimension: 65_535,
        },
        asking_price: (i % 10) as u64,
        duty_cycle: 1.0,
        slots: 1,
    }
}

fn job_requirements(job: u64) -> JobRequirements {
    JobRequirements {
        price_per_replica: 10,
        needs_gpu: false,
        homogeneous: job.is_multiple_of(10),
        max_binding_bytes: 1024,
        storage_buffers: 2,
        max_workgroups: 16,
        paid: false,
    }
}

fn add_job(s: &mut Scheduler, job: u64, tasks: u32) {
    s.add_job(
        JobId(job),
        job_requirements(job),
        (0..tasks).map(|i| (i, TaskNeeds { wanted: REPLICAS, ..Default::default() })),
    );
}

fn scheduler_with_workers(n: usize, now_ms: u64) -> Scheduler {
    let mut s = Scheduler::new(Config::default(), 1);
    for i in 0..n {
        s.worker_online(worker_key(i), worker_caps(i), now_ms);
    }
    s
}

fn steady_ns_per_lease(n: usize, window: Duration) -> f64 {
    let now = 1_000;
    let mut s = scheduler_with_workers(n, now);
    let paused = DeviceState { accepting: false, ..Default::default() };
    let stride = (n / FREE_WORKERS).max(1);
    for i in (0..n).filter(|i| i % stride != 0) {
        s.worker_heartbeat(&worker_key(i), paused, now);
    }
    let mut open_tasks: HashMap<u64, u32> = HashMap::new();
    for job in 0..JOBS {
        add_job(&mut s, job, TASKS_PER_JOB);
        open_tasks.insert(job, TASKS_PER_JOB);
    }
    let mut next_job = JOBS;

    let mut leases = 0u64;
    let start = Instant::now();
    while start.elapsed() < window || leases == 0 {
        let handed = s.assign(now);
        assert!(!handed.is_empty(), "the free workers always find work");
        leases += handed.len() as u64;
        for lease in handed {
            s.lease_returned(lease.id);
            let TaskId { job, .. } = lease.task;
            if s.outstanding(lease.task) == 0 {
                s.close_task(lease.task);
                let left = open_tasks.get_mut(&job.0).expect("open job");
                *left -= 1;
                if *left == 0 {
                    open_tasks.remove(&job.0);
                    s.remove_job(job);
                    add_job(&mut s, next_job, TASKS_PER_JOB);
                    open_tasks.insert(next_job, TASKS_PER_JOB);
                    next_job += 1;
                }
            }
        }
        assert!(s.silent_workers(now).is_empty() && s.expire(now).is_empty());
    }
    start.elapsed().as_nanos() as f64 / leases as f64
}

fn fill_ns_per_lease(n: usize) -> f64 {
    let now = 1_000;
    let mut s = scheduler_with_workers(n, now);
    // Enough replicas for every worker, spread over the jobs.
    let tasks = (n as u64).div_ceil(JOBS * u64::from(REPLICAS)) as u32 + 1;
    for job in 0..JOBS {
        add_job(&mut s, job, tasks);
    }
    let start = Instant::now();
    let handed = s.assign(now);
    let elapsed = start.elapsed();
    assert_eq!(handed.len(), n, "every worker gets a replica");
    elapsed.as_nanos() as f64 / n as f64
}

fn heartbeat_ns(n: usize) -> f64 {
    let mut s = scheduler_with_workers(n, 0);
    let keys: Vec<PublicKey> = (0..n).map(worker_key).collect();
    let start = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        s.worker_heartbeat(key, DeviceState::default(), 1 + i as u64 % 1_000);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}
