//! Three relays on one PostgreSQL database, native workers spread over them, a paid job posted on
//! one, and the relay leading the cluster SIGKILLed in the middle of the job.

use crate::support::*;
use serde_json::Value;
use sqlx::Row;
use starling_protocol::api::{JobState, ReplicaState, TaskState};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use starling_web_worker::kernels::mandelbrot;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const FAUCET: u128 = 1_000_000_000;
const PRICE: u64 = 1_000;
const FEE_BPS: u128 = 500;

/// The peer address of the relay leading the cluster, once one leads (and before the first
/// relay has made the table, none).
async fn leader(db: &sqlx::PgPool) -> Option<String> {
    sqlx::query_scalar("SELECT leader FROM relay_cluster WHERE id = 1").fetch_optional(db).await.ok().flatten()
}

/// A cluster's first relay, leading: its database (a fresh one on the tests' server), folder and
/// process (blobs in S3 when the tests have a bucket), the peer address it leads under, and the arguments that start another relay on the
/// same database and blobs.
struct Cluster {
    db: sqlx::PgPool,
    dir: tempfile::TempDir,
    first: Relay,
    first_leader: String,
    args: Vec<String>,
}

impl Cluster {
    /// Starts relay `i` of the cluster.
    fn spawn(&self, i: usize) -> Relay {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        spawn_relay(&self.dir.path().join(format!("relay{i}")), 0, &args)
    }
}

/// Starts a cluster's first relay with `extra` arguments and waits until it leads (it is alone);
/// `None` (the test skips) without a PostgreSQL server.
async fn first_relay_leading(extra: &[&str]) -> Option<Cluster> {
    let Some(server) = postgres_server() else {
        eprintln!("STARLING_TEST_POSTGRES is not set (scripts/test.sh starts a server and sets it); skipped");
        return None;
    };
    let url = fresh_postgres_database(&server).await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let (dir, _) = tempdir();
    // One blob store for all: the tests' S3 bucket (a fresh prefix) where there is one (the
    // README's test command starts one), else a shared folder.
    let blobs = starling_relay::blobs::BlobLocation::test_bucket()
        .map_or_else(|| dir.path().join("blobs").display().to_string(), |bucket| bucket.to_string());
    let mut args: Vec<String> = vec!["--database".into(), url, "--blobs".into(), blobs];
    args.extend(extra.iter().map(|a| a.to_string()));
    let first = spawn_relay(&dir.path().join("relay0"), 0, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let start = Instant::now();
    while leader(&db).await.is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "the first relay never took the lead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_leader = leader(&db).await.unwrap();
    Some(Cluster { db, dir, first, first_leader, args })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_on_one_database_finish_a_job_when_the_leader_is_killed_mid_job() {
    let Some(mut cluster) = first_relay_leading(&["--faucet", "1000000000"]).await else {
        return;
    };
    // The other two follow.
    let others: Vec<Relay> = (1..3).map(|i| cluster.spawn(i)).collect();
    let (db, dir, first_leader) = (cluster.db.clone(), cluster.dir.path().to_path_buf(), cluster.first_leader.clone());
    let first = &mut cluster.first;
    let bases = [first.base.clone(), others[0].base.clone(), others[1].base.clone()];

    // Four workers, each given all three relays, starting at a different one: two connect to
    // the leader directly, two through the followers.
    let mut workers = Vec::new();
    for i in 0..4 {
        let relays: Vec<&str> = (0..3).map(|k| bases[(i + k) % 3].as_str()).collect();
        workers.push(spawn_worker(&relays.join(","), &dir, &format!("w{i}"), &["--duty", "0.4"]));
    }
    // A job posted on a follower, read on the other: one relay to the outside.
    let api = Api::new(&bases[1]);
    let reader = Api::new(&bases[2]);
    api.wait_workers(4).await;
    // The leader's peer port serves a connection handed over with the cluster's secret, and a
    // stranger naming no secret or a wrong one (with a made-up client address) gets nothing: the
    // connection closes without a byte.
    let secret: String =
        sqlx::query_scalar("SELECT secret FROM relay_cluster WHERE id = 1").fetch_one(&db).await.unwrap();
    let request = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (line, served) in [
        (format!("STARLING-PEER/1 {secret} 198.51.100.9:1\n{request}"), true),
        (request.to_string(), false),
        (format!("STARLING-PEER/1 {} 198.51.100.9:1\n{request}", "0".repeat(64)), false),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(&first_leader).await.unwrap();
        tcp.write_all(line.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(answer.starts_with("HTTP/1.1 200"), served, "{line:?} was answered {answer:?}");
        assert!(served || answer.is_empty(), "the peer port answered a stranger: {answer:?}");
    }

    let spec = JobSpec {
        label: "scale-out".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot },
        tasks: mandelbrot::tile_job_tasks(96, 96, 16, 400, (-0.6, 0.0), 3.0),
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price_per_replica: PRICE,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 1,
        adaptive: None,
        kernels: Vec::new(),
    };
    let total = spec.tasks.len() as u32;
    let job = api.submit(spec.clone()).await;
    let seen = reader.job(job.id).await;
    assert_eq!((seen.summary.id, seen.summary.tasks_total), (job.id, total));

    // Mid-job: some tasks verified, not all. Then the leader dies without a word.
    let mid = reader.wait_for(job.id, Duration::from_secs(120), |d| d.summary.tasks_verified >= 2).await;
    first.proc.kill9();
    let killed = Instant::now();
    let verified_at_kill: i64 = sqlx::query_scalar("SELECT tasks_verified FROM jobs WHERE id = $1")
        .bind(job.id.0 as i64)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        verified_at_kill < i64::from(total),
        "the job finished before the kill ({} of {total} verified when it was seen mid-job)",
        mid.summary.tasks_verified
    );

    // Another relay takes the lead, and the job goes on.
    let start = Instant::now();
    while leader(&db).await.as_deref() == Some(first_leader.as_str()) {
        assert!(start.elapsed() < Duration::from_secs(10), "no relay took over the lead");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = killed.elapsed();
    let resumed = reader
        .wait_for(job.id, Duration::from_secs(60), |d| i64::from(d.summary.tasks_verified) > verified_at_kill)
        .await;
    let resumed_after = killed.elapsed();
    eprintln!(
        "failover: a new leader {took_over:?} after the kill, the next verified task {resumed_after:?} after ({} of {total})",
        resumed.summary.tasks_verified
    );
    assert!(took_over < Duration::from_secs(5), "the lead moved in {took_over:?}");
    let detail = reader.wait_done(job.id).await;

    // Every result is the CPU reference's; every task verified once.
    let expected = cpu_outputs(&reader, &spec).await;
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&reader.output(job.id, i as u32).await, want, "task {i}");
    }
    assert_eq!(detail.summary.state, JobState::Done);
    assert!(detail.tasks.iter().all(|t| t.state == TaskState::Verified));
    assert_eq!(detail.summary.tasks_verified, total, "a task counted as verified twice");
    let decided: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tasks WHERE job_id = $1 AND state = 'verified' AND decided_at_ms IS NOT NULL",
    )
    .bind(job.id.0 as i64)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(decided, i64::from(total));

    // Settled once: the escrow paid exactly the accepted replicas, each task once, and gave the
    // rest back.
    let escrow = wait_closed(&reader, job.id).await;
    let accepted: u128 =
        detail.tasks.iter().flat_map(|t| t.replicas.iter()).filter(|r| r.state == ReplicaState::Accepted).count()
            as u128;
    let mut per_worker: HashMap<String, u128> = HashMap::new();
    for r in detail.tasks.iter().flat_map(|t| t.replicas.iter()).filter(|r| r.state == ReplicaState::Accepted) {
        *per_worker.entry(r.worker.to_hex()).or_default() += 1;
    }
    let (price, fee) = (u128::from(PRICE), u128::from(PRICE) * FEE_BPS / 10_000);
    assert_eq!(escrow.settled_tasks, total, "every verified task settled, once");
    assert_eq!(escrow.paid_to_workers.parse::<u128>().unwrap(), accepted * price);
    assert_eq!(escrow.paid_to_relay.parse::<u128>().unwrap(), accepted * fee);
    let deposit: u128 = escrow.deposit.parse().unwrap();
    assert_eq!(escrow.refunded.as_deref().unwrap().parse::<u128>().unwrap(), deposit - accepted * (price + fee));
    for (key, n) in &per_worker {
        let view: Value =
            reader.http.get(format!("{}/v1/workers/{key}", reader.base)).send().await.unwrap().json().await.unwrap();
        assert_eq!(
            view["escrow"]["received"],
            Value::String((n * price).to_string()),
            "worker {key} paid once per replica"
        );
    }

    // Money is conserved across the failover: the ledger (in the shared database) holds what
    // the faucet minted, no more and no less.
    let sum = |rows: Vec<sqlx::postgres::PgRow>| {
        rows.iter().map(|r| r.get::<String, _>(0).parse::<u128>().unwrap()).sum::<u128>()
    };
    let balances = sum(sqlx::query("SELECT balance FROM ledger.ledger_accounts").fetch_all(&db).await.unwrap());
    let minted = sum(sqlx::query("SELECT amount FROM ledger.ledger_faucet").fetch_all(&db).await.unwrap());
    assert_eq!(minted, 5 * FAUCET, "the client and four workers, once each");
    assert_eq!(balances, minted, "money was created or destroyed across the failover");

    // The workers that were on the killed relay moved to the others.
    reader.wait_workers(4).await;
    drop(workers);
    drop(others);
}

/// A leader that freezes (SIGSTOP: its sockets stay open, it just stops answering) loses the lead
/// within seconds, and when it wakes it finds out and stops instead of deciding anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_loses_the_lead_and_stops_when_it_wakes() {
    let Some(mut cluster) = first_relay_leading(&["--escrow", "off"]).await else {
        return;
    };
    let second = cluster.spawn(1);
    let (db, frozen_leader) = (cluster.db.clone(), cluster.first_leader.clone());
    let first = &mut cluster.first;
    let api = Api::new(&second.base);
    let health = api.http.get(format!("{}/v1/health", second.base)).send().await.unwrap();
    assert!(health.status().is_success(), "the follower serves through the leader");

    first.proc.signal("-STOP");
    let frozen = Instant::now();
    while leader(&db).await.as_deref() == Some(frozen_leader.as_str()) {
        assert!(frozen.elapsed() < Duration::from_secs(20), "a frozen leader kept the lead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let moved = frozen.elapsed();
    eprintln!("the lead moved {moved:?} after the leader froze");
    assert!(
        moved >= Duration::from_secs(4),
        "the lead moved before the leader's session could have idled out: {moved:?}"
    );
    // A connection the follower had handed to the frozen leader is closed once another leads
    // (a keep-alive client is not left hanging on it), and the new leader serves.
    let old =
        tokio::time::timeout(Duration::from_secs(10), api.http.get(format!("{}/v1/health", second.base)).send()).await;
    assert!(old.is_ok(), "a request on a connection handed to the frozen leader hung");
    let health = reqwest::Client::new().get(format!("{}/v1/health", second.base)).send().await.unwrap();
    assert!(health.status().is_success(), "the new leader serves");

    // Woken, the old leader notices at its next ping and exits rather than decide anything.
    first.proc.signal("-CONT");
    let woke = Instant::now();
    loop {
        if let Some(status) = first.proc.0.try_wait().unwrap() {
            assert!(!status.success(), "a relay that lost the lead exits with an error: {status}");
            break;
        }
        assert!(woke.elapsed() < Duration::from_secs(10), "the woken leader kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}
