//! Relay round trips per second beside the raw echo rate of a bare axum WebSocket, and the relay's
//! resident memory per idle connected worker. Writes its figures into `BENCHMARKS.md`.
//!
//! ```sh
//! cargo bench -p starling-relay --bench roundtrip
//! cargo bench -p starling-relay --bench roundtrip -- --workers 100,1000 --idle 1000,10000 --seconds 10
//! ```
//!
//! The servers under test run in child processes (this binary re-executed with
//! `STARLING_BENCH_ROLE=relay` or `=echo`), so the load generator never shares their runtime and
//! their resident memory is read from `/proc/<pid>/status`. Each child serves on `127.0.0.1:0`,
//! prints its address on stdout and stops when its stdin closes. Phases, each against a fresh
//! child:
//!
//! 1. **echo**: N connections to a bare axum WebSocket echo handler, each a closed loop that
//!    sends one text frame the size of a worker `result` message and awaits the echo.
//! 2. **relay**: N real protocol clients (hello, challenge, ed25519 auth, welcome, heartbeats).
//!    On `assign` a worker computes the real output with the CPU reference, uploads it with
//!    `PUT /v1/blobs/{sha256}`, sends the signed `result` and awaits the `ack`. A client keeps
//!    `--jobs-ahead` signed jobs of tiny `monte_carlo_pi` tasks (2 replicas, quorum 2) running and
//!    follows them on `/v1/jobs/{id}/events`. Afterwards the relay is killed with SIGKILL,
//!    restarted on the same data folder, and every posted job is read back: each task must be
//!    verified with the output the CPU reference gives, with exactly 2 accepted replicas, and every
//!    acknowledged replica must be among them.
//! 3. **idle**: a fresh relay (and, for comparison, a fresh echo server) gets 1,000 then 10,000
//!    idle authenticated connections; bytes per connection = growth of VmRSS / connections.
//!
//! `cargo test --all-targets` builds this file but, without `--bench`, `main` returns at once.

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use starling_protocol::events::{JobDetail, JobEvent, JobState, JobSummary, ReplicaState, TaskState};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use starling_protocol::sign::Keypair;
use starling_protocol::worker::{Capabilities, DeviceState, RelayMessage, WorkerMessage};
use starling_protocol::{Hash32, JobId, LeaseId, PROTOCOL_VERSION, PublicKey, TaskId, sha256};
use starling_web_worker::engine::run_task_cpu;
use starling_web_worker::kernels::monte_carlo_pi;
use starling_web_worker::native::{Compute, WorkerConfig};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ROLE_ENV: &str = "STARLING_BENCH_ROLE";
const DATA_ENV: &str = "STARLING_BENCH_DATA";
const RESULTS_BEGIN: &str = "<!-- results:begin -->";
const RESULTS_END: &str = "<!-- results:end -->";
/// Connections opened at once; each finishes its handshake well within the relay's 10 s limit.
const CONNECT_BATCH: usize = 250;
/// Upper bound on anything the benchmark waits for (a connection, a job to drain, a reply).
const PATIENCE: Duration = Duration::from_secs(120);
/// The relay's limit on one worker connection's handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

fn main() -> Result<()> {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("relay") => return serve_relay(),
        Ok("echo") => return serve_echo(),
        Ok(other) => bail!("unknown {ROLE_ENV}={other}"),
        Err(_) => {}
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: measure nothing.
        println!("roundtrip: run with `cargo bench -p starling-relay --bench roundtrip`");
        return Ok(());
    }
    let options = Options::parse(args.into_iter().filter(|a| a != "--bench"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench(options))
}

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Options {
    /// Worker counts for the echo and relay phases.
    workers: Vec<usize>,
    /// Idle connection counts, ascending; each step adds connections to the previous ones.
    idle: Vec<usize>,
    /// Measured window per phase.
    seconds: f64,
    /// Load before the window opens (connections warm, jobs flowing).
    warmup: f64,
    tasks_per_job: u32,
    /// Jobs kept running at once in the relay phase, so a job's tail never idles the workers.
    jobs_ahead: usize,
    /// Where the results go; None with `--no-write`.
    out: Option<PathBuf>,
}

impl Options {
    const USAGE: &str = "options: --workers 100,1000 --idle 1000,10000 --seconds 10 --warmup 2 \
                         --tasks-per-job 2048 --jobs-ahead 2 --out BENCHMARKS.md --no-write";

    fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut o = Options {
            workers: vec![100, 1000],
            idle: vec![1000, 10_000],
            seconds: 10.0,
            warmup: 2.0,
            tasks_per_job: 2048,
            jobs_ahead: 2,
            out: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("BENCHMARKS.md")),
        };
        let list = |v: &str| -> Result<Vec<usize>> {
            v.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse().context(Options::USAGE)).collect()
        };
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if flag == "--no-write" {
                o.out = None;
                continue;
            }
            if flag == "--help" || flag == "-h" {
                bail!("{}", Options::USAGE);
            }
            let value = args.next().with_context(|| format!("{flag} needs a value; {}", Options::USAGE))?;
            match flag.as_str() {
                "--workers" => o.workers = list(&value)?,
                "--idle" => o.idle = list(&value)?,
                "--seconds" => o.seconds = value.parse().context(Options::USAGE)?,
                "--warmup" => o.warmup = value.parse().context(Options::USAGE)?,
                "--tasks-per-job" => o.tasks_per_job = value.parse().context(Options::USAGE)?,
                "--jobs-ahead" => o.jobs_ahead = value.parse().context(Options::USAGE)?,
                "--out" => o.out = Some(PathBuf::from(value)),
                _ => bail!("unknown option {flag}; {}", Options::USAGE),
            }
        }
        ensure!(o.seconds > 0.0 && o.warmup >= 0.0, "--seconds must be positive");
        ensure!(o.workers.iter().all(|&n| n > 0), "--workers must be positive");
        ensure!((1..=4096).contains(&o.tasks_per_job), "--tasks-per-job must be in 1..=4096");
        ensure!(o.jobs_ahead > 0, "--jobs-ahead must be positive");
        o.idle.sort_unstable();
        // Both ends of every connection live on this machine: keep well inside the fd limit.
        ensure!(o.idle.last().is_none_or(|&n| n <= 18_000), "--idle counts above 18000 exceed the fd limit");
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes: the servers under test

/// Stops when stdin closes, that is when the parent drops its end or dies.
fn stdin_closed() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

fn announce(addr: SocketAddr) -> Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{addr}")?;
    out.flush()?;
    Ok(())
}

fn serve_relay() -> Result<()> {
    let dir = std::env::var(DATA_ENV).context("relay child needs a data folder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.local_addr()?)?;
        starling_relay::run(listener, starling_relay::Config::new(dir), stdin_closed()).await?;
        Ok(())
    })
}

/// The anchor: the smallest axum WebSocket handler there is, on the same tokio and axum.
fn serve_echo() -> Result<()> {
    use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
    async fn echo(upgrade: WebSocketUpgrade) -> axum::response::Response {
        upgrade.on_upgrade(|mut socket| async move {
            while let Some(Ok(msg)) = socket.recv().await {
                match msg {
                    AxMessage::Text(_) | AxMessage::Binary(_) => {
                        if socket.send(msg).await.is_err() {
                            break;
                        }
                    }
                    AxMessage::Close(_) => break,
                    AxMessage::Ping(_) | AxMessage::Pong(_) => {}
                }
            }
        })
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.local_addr()?)?;
        let app = axum::Router::new().route("/echo", axum::routing::get(echo));
        axum::serve(listener, app).with_graceful_shutdown(stdin_closed()).await?;
        Ok(())
    })
}

/// A server under test in its own process.
struct Server {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Server {
    async fn start(role: &str, data: Option<&Path>) -> Result<Server> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE_ENV, role).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if let Some(dir) = data {
            cmd.env(DATA_ENV, dir);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting the {role} child"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(PATIENCE, line).await.context("child never announced its address")???;
        let addr = line.trim().parse().with_context(|| format!("{role} child printed {line:?}, not an address"))?;
        Ok(Server { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn rss(&self) -> Result<u64> {
        rss_bytes(self.pid())
    }

    /// Closes stdin (a graceful stop) and waits for the process.
    async fn stop(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(move || self.child.wait()))
            .await
            .context("child did not stop")???;
        ensure!(status.success(), "child exited with {status}");
        Ok(())
    }

    /// SIGKILL: no shutdown path runs, so whatever the relay acknowledged must already be on disk.
    async fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        tokio::task::spawn_blocking(move || self.child.wait()).await??;
        Ok(())
    }
}

fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    let kib: u64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn text(msg: &WorkerMessage) -> Message {
    Message::Text(serde_json::to_string(msg).expect("worker messages serialize").into())
}

/// Next relay message; Err when the socket closed or sent something that is not one.
async fn next_relay(ws: &mut Ws) -> Result<RelayMessage> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(Message::Close(f))) => bail!("relay closed the connection: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("relay closed the connection"),
        }
    }
}

fn per_second(count: u64, window: Duration) -> f64 {
    count as f64 / window.as_secs_f64()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if http.get(format!("{base}/v1/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("relay at {base} never became healthy")
}

async fn workers_online(http: &reqwest::Client, base: &str) -> Result<u64> {
    let health: starling_protocol::events::Health = http.get(format!("{base}/v1/health")).send().await?.json().await?;
    Ok(health.workers_online)
}

/// Waits until the relay reports `n` workers online.
async fn wait_online(http: &reqwest::Client, base: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let online = workers_online(http, base).await?;
        if online == n as u64 {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{online} of {n} workers online");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `connect(i)` for `0..n` with at most [`CONNECT_BATCH`] in flight.
async fn connect_all<T, F, Fut>(range: std::ops::Range<usize>, connect: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let mut out = Vec::with_capacity(range.len());
    let mut next = range.start;
    while next < range.end {
        let batch_end = (next + CONNECT_BATCH).min(range.end);
        let mut set = JoinSet::new();
        for i in next..batch_end {
            set.spawn(connect(i));
        }
        while let Some(joined) = set.join_next().await {
            out.push(joined??);
        }
        next = batch_end;
    }
    Ok(out)
}

/// A `result` message as a worker sends it, with realistic field sizes: the echo payload.
fn typical_result_message() -> String {
    let key = Keypair::from_seed([7; 32]);
    let task = TaskId { job: JobId(12), index: 1234 };
    let output_hash = sha256(b"typical output");
    serde_json::to_string(&WorkerMessage::Result {
        lease: LeaseId(123_456),
        task,
        output_hash,
        output_len: 4,
        signature: key.sign_result(task, &output_hash, 4),
    })
    .expect("serializes")
}

// ---------------------------------------------------------------------------------------------
// Phase 1: echo anchor

#[derive(Debug, Clone, Copy)]
struct EchoFigures {
    connections: usize,
    payload_bytes: usize,
    echoes_per_sec: f64,
    mean_rtt_us: f64,
}

async fn echo_phase(n: usize, o: &Options) -> Result<EchoFigures> {
    let server = Server::start("echo", None).await?;
    let url = server.ws("/echo");
    let payload = typical_result_message();
    let payload_bytes = payload.len();
    let sockets = connect_all(0..n, |_| {
        let url = url.clone();
        async move {
            let (ws, _) = tokio::time::timeout(HANDSHAKE_LIMIT, tokio_tungstenite::connect_async(url)).await??;
            Ok(ws)
        }
    })
    .await?;
    let echoes = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let payload: tokio_tungstenite::tungstenite::Utf8Bytes = payload.into();
    let mut loops = JoinSet::new();
    for mut ws in sockets {
        let (echoes, payload, mut stop) = (echoes.clone(), payload.clone(), stop_rx.clone());
        loops.spawn(async move {
            while !*stop.borrow_and_update() {
                ws.send(Message::Text(payload.clone())).await?;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            ensure!(t.len() == payload.len(), "echo changed the payload");
                            break;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                        None => bail!("echo server closed the connection"),
                    }
                }
                echoes.fetch_add(1, Ordering::Relaxed);
            }
            let _ = ws.close(None).await;
            Ok::<_, anyhow::Error>(())
        });
    }
    tokio::time::sleep(secs(o.warmup)).await;
    let (c0, t0) = (echoes.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(secs(o.seconds)).await;
    let (c1, t1) = (echoes.load(Ordering::Relaxed), Instant::now());
    let _ = stop_tx.send(true);
    while let Some(joined) = loops.join_next().await {
        joined??;
    }
    server.stop().await?;
    let window = t1 - t0;
    let echoes_per_sec = per_second(c1 - c0, window);
    Ok(EchoFigures { connections: n, payload_bytes, echoes_per_sec, mean_rtt_us: n as f64 / echoes_per_sec * 1e6 })
}

// ---------------------------------------------------------------------------------------------
// Phase 2: relay round trips

/// Sums over all workers; per-replica means are deltas of these over the window / replicas.
#[derive(Debug, Default)]
struct Counters {
    /// Results acknowledged (each is one replica round trip).
    acks: AtomicU64,
    /// `assign` in hand to output hashed: the CPU reference and SHA-256.
    compute_ns: AtomicU64,
    /// The `PUT /v1/blobs/{hash}` request.
    upload_ns: AtomicU64,
    /// Signing and sending `result` until its `ack` arrives (the relay's batch and commit).
    ack_ns: AtomicU64,
    /// `ack` to the next `assign` (the relay hands out work in the batch that frees the slot).
    next_assign_ns: AtomicU64,
    uploads_stored: AtomicU64,
    uploads_already_there: AtomicU64,
    relay_errors: AtomicU64,
    cancels: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct CounterSnapshot {
    acks: u64,
    compute_ns: u64,
    upload_ns: u64,
    ack_ns: u64,
    next_assign_ns: u64,
    uploads_stored: u64,
    uploads_already_there: u64,
}

impl Counters {
    fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            acks: l(&self.acks),
            compute_ns: l(&self.compute_ns),
            upload_ns: l(&self.upload_ns),
            ack_ns: l(&self.ack_ns),
            next_assign_ns: l(&self.next_assign_ns),
            uploads_stored: l(&self.uploads_stored),
            uploads_already_there: l(&self.uploads_already_there),
        }
    }
}

fn add_elapsed(counter: &AtomicU64, since: Instant) {
    counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// What one simulated worker shares with the others.
struct WorkerCtx {
    base: String,
    http: reqwest::Client,
    counters: Counters,
    /// Every acknowledged replica, checked against the store after the relay restarts.
    acked: Mutex<Vec<(TaskId, PublicKey)>>,
}

fn worker_caps() -> Capabilities {
    // Exactly what the native worker announces with `--cpu`.
    Compute::Cpu.capabilities(&WorkerConfig::new("http://127.0.0.1"))
}

/// hello → challenge → auth → welcome. Returns the socket and the heartbeat interval.
async fn handshake(url: String, key: &Keypair, caps: Capabilities) -> Result<(Ws, Duration)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(text(&WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, worker_key: key.public(), capabilities: caps }))
        .await?;
    let nonce = match next_relay(&mut ws).await? {
        RelayMessage::Challenge { nonce } => nonce,
        other => bail!("expected challenge, got {other:?}"),
    };
    ws.send(text(&WorkerMessage::Auth { signature: key.sign_auth(&nonce) })).await?;
    match next_relay(&mut ws).await? {
        RelayMessage::Welcome { heartbeat_ms, .. } => Ok((ws, Duration::from_millis(heartbeat_ms.max(100)))),
        other => bail!("expected welcome, got {other:?}"),
    }
}

async fn connect_workers(url: &str, range: std::ops::Range<usize>) -> Result<Vec<(Ws, Duration, Keypair)>> {
    connect_all(range, |_| {
        let url = url.to_string();
        async move {
            let key = Keypair::generate();
            let (ws, heartbeat) = tokio::time::timeout(HANDSHAKE_LIMIT, handshake(url, &key, worker_caps()))
                .await
                .context("worker handshake took longer than the relay allows")??;
            Ok((ws, heartbeat, key))
        }
    })
    .await
}

/// A worker's session: heartbeats, and for every assignment compute, upload, report, await ack.
/// Ends when `stop` flips or the relay goes away.
async fn run_worker(mut ws: Ws, heartbeat: Duration, key: Keypair, ctx: Arc<WorkerCtx>, mut stop: watch::Receiver<bool>) {
    let mut beat = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let me = key.public();
    // The result in flight: (lease, task, when it was sent).
    let mut pending: Option<(LeaseId, TaskId, Instant)> = None;
    let mut last_ack: Option<Instant> = None;
    let c = &ctx.counters;
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            _ = beat.tick() => {
                if ws.send(text(&WorkerMessage::Heartbeat { state: DeviceState::default() })).await.is_err() {
                    break;
                }
                continue;
            }
            msg = next_relay(&mut ws) => match msg {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        match msg {
            RelayMessage::Assign(a) => {
                if let Some(t) = last_ack.take() {
                    add_elapsed(&c.next_assign_ns, t);
                }
                let started = Instant::now();
                let output = match (&a.kernel, a.inputs.is_empty()) {
                    (KernelSpec::Builtin { name }, true) => run_task_cpu(*name, &a.params, &[], a.workgroups, a.output_size),
                    _ => Err(starling_web_worker::Error::Kernel("the benchmark worker runs input-free built-ins only".into())),
                };
                let output = match output {
                    Ok(o) => o,
                    Err(e) => {
                        let failed = WorkerMessage::Failed { lease: a.lease, task: a.task, reason: e.to_string() };
                        if ws.send(text(&failed)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                };
                let output_hash = sha256(&output);
                let output_len = output.len() as u64;
                add_elapsed(&c.compute_ns, started);
                let uploading = Instant::now();
                let put = ctx.http.put(format!("{}/v1/blobs/{output_hash}", ctx.base)).body(output).send().await;
                add_elapsed(&c.upload_ns, uploading);
                match put.map(|r| r.status().as_u16()) {
                    Ok(201) => c.uploads_stored.fetch_add(1, Ordering::Relaxed),
                    Ok(200) => c.uploads_already_there.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        c.relay_errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                let signature = key.sign_result(a.task, &output_hash, output_len);
                let result = WorkerMessage::Result { lease: a.lease, task: a.task, output_hash, output_len, signature };
                pending = Some((a.lease, a.task, Instant::now()));
                if ws.send(text(&result)).await.is_err() {
                    break;
                }
            }
            RelayMessage::Ack { lease } => {
                if let Some((_, task, sent)) = pending.take_if(|(held, ..)| *held == lease) {
                    add_elapsed(&c.ack_ns, sent);
                    last_ack = Some(Instant::now());
                    ctx.acked.lock().expect("acked lock").push((task, me));
                    c.acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            RelayMessage::Cancel { .. } => {
                c.cancels.fetch_add(1, Ordering::Relaxed);
            }
            RelayMessage::Error(e) => {
                if c.relay_errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("  relay error to a worker: {:?}: {}", e.code, e.message);
                }
            }
            RelayMessage::Challenge { .. } | RelayMessage::Welcome { .. } => {
                c.relay_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = ws.close(None).await;
}

/// A job the benchmark posted, with the outputs the CPU reference gives for its tasks.
struct PostedJob {
    id: JobId,
    expected: Vec<Hash32>,
}

fn bench_job(seed: u64, tasks: u32) -> (JobSpec, Vec<Hash32>) {
    let tasks = monte_carlo_pi::tasks(seed, tasks, 1, 1);
    let expected = tasks
        .iter()
        .map(|t| sha256(&run_task_cpu(BuiltinKernel::MonteCarloPi, &t.params, &[], t.workgroups, t.output_size).expect("valid task")))
        .collect();
    let spec = JobSpec {
        label: format!("bench seed {seed}"),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks,
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price_per_replica: 0,
        deadline_secs: 3600,
        homogeneous: false,
        nonce: seed,
    };
    (spec, expected)
}

/// Follows a job on its event socket; reports its id once it is done or failed.
async fn watch_job(url: String, id: JobId, done: mpsc::UnboundedSender<JobId>) {
    let followed = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        while let Some(frame) = ws.next().await {
            let Message::Text(t) = frame? else { continue };
            match serde_json::from_str::<JobEvent>(t.as_str())? {
                JobEvent::Snapshot { job } if job.state != JobState::Running => break,
                JobEvent::JobDone { .. } | JobEvent::JobFailed { .. } => break,
                _ => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = tokio::time::timeout(PATIENCE, followed).await.map_err(anyhow::Error::from).and_then(|r| r) {
        eprintln!("  watching job {id}: {e:#}");
    }
    let _ = done.send(id);
}

/// Keeps `ahead` jobs running until `stop` flips, then waits for the running ones to finish.
async fn post_jobs(
    http: reqwest::Client,
    server_http: String,
    server_ws: String,
    tasks_per_job: u32,
    ahead: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<PostedJob>> {
    let client = Keypair::generate();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut posted = Vec::new();
    let mut running = 0usize;
    let mut seed = 1u64;
    loop {
        while running < ahead && !*stop.borrow() {
            let (spec, expected) = bench_job(seed, tasks_per_job);
            seed += 1;
            let resp = http.post(format!("{server_http}/v1/jobs")).json(&client.sign_job(spec)).send().await?;
            let status = resp.status();
            ensure!(status.as_u16() == 201, "POST /v1/jobs answered {status}: {}", resp.text().await.unwrap_or_default());
            let summary: JobSummary = resp.json().await?;
            tokio::spawn(watch_job(format!("{server_ws}/v1/jobs/{}/events", summary.id), summary.id, done_tx.clone()));
            posted.push(PostedJob { id: summary.id, expected });
            running += 1;
        }
        if running == 0 {
            return Ok(posted);
        }
        tokio::select! {
            done = done_rx.recv() => {
                done.context("watchers gone")?;
                running -= 1;
            }
            _ = stop.changed(), if !*stop.borrow() => {}
        }
    }
}

/// Σ tasks_verified over every job the relay knows.
async fn tasks_verified(http: &reqwest::Client, base: &str) -> Result<u64> {
    let jobs: Vec<JobSummary> = http.get(format!("{base}/v1/jobs?limit=500")).send().await?.json().await?;
    Ok(jobs.iter().map(|j| u64::from(j.tasks_verified)).sum())
}

#[derive(Debug, Clone)]
struct RelayFigures {
    workers: usize,
    replicas_per_sec: f64,
    tasks_per_sec: f64,
    /// Per-replica means over the window, in microseconds, as the workers saw them.
    compute_us: f64,
    upload_us: f64,
    ack_us: f64,
    next_assign_us: f64,
    cycle_us: f64,
    uploads_stored: u64,
    uploads_already_there: u64,
    relay_rss_under_load: u64,
    durability: Durability,
}

#[derive(Debug, Clone, Default)]
struct Durability {
    jobs: usize,
    tasks: u64,
    replicas_acked: u64,
    /// Empty when every check held.
    problems: Vec<String>,
}

async fn relay_phase(n: usize, o: &Options) -> Result<RelayFigures> {
    let data = tempfile::tempdir()?;
    let relay = Server::start("relay", Some(data.path())).await?;
    let base = relay.http();
    let http = reqwest::Client::builder().timeout(PATIENCE).build()?;
    wait_healthy(&http, &base).await?;
    let ctx = Arc::new(WorkerCtx { base: base.clone(), http: http.clone(), counters: Counters::default(), acked: Mutex::default() });
    let sockets = connect_workers(&relay.ws("/v1/workers/ws"), 0..n).await?;
    let (stop_workers, stop_rx) = watch::channel(false);
    let mut workers = JoinSet::new();
    for (ws, heartbeat, key) in sockets {
        workers.spawn(run_worker(ws, heartbeat, key, ctx.clone(), stop_rx.clone()));
    }
    wait_online(&http, &base, n).await?;

    let (stop_posting, posting_rx) = watch::channel(false);
    let poster = tokio::spawn(post_jobs(http.clone(), base.clone(), format!("ws://{}", relay.addr), o.tasks_per_job, o.jobs_ahead, posting_rx));
    tokio::time::sleep(secs(o.warmup)).await;
    let (s0, v0, t0) = (ctx.counters.snapshot(), tasks_verified(&http, &base).await?, Instant::now());
    tokio::time::sleep(secs(o.seconds)).await;
    let (s1, v1, t1) = (ctx.counters.snapshot(), tasks_verified(&http, &base).await?, Instant::now());
    let relay_rss_under_load = relay.rss()?;
    let _ = stop_posting.send(true);
    let posted = tokio::time::timeout(PATIENCE, poster).await.context("posted jobs did not finish in time")???;
    // A job's last event and its last acks travel on different sockets: let the acks land.
    let replicas_posted: u64 = posted.iter().map(|j| 2 * j.expected.len() as u64).sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctx.counters.acks.load(Ordering::Relaxed) < replicas_posted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Crash the relay with everything acknowledged, then read it all back from a fresh process.
    relay.kill().await?;
    let _ = stop_workers.send(true);
    while workers.join_next().await.is_some() {}
    let restarted = Server::start("relay", Some(data.path())).await?;
    wait_healthy(&http, &restarted.http()).await?;
    let acked = std::mem::take(&mut *ctx.acked.lock().expect("acked lock"));
    let durability = check_durability(&http, &restarted.http(), &posted, &acked).await?;
    restarted.stop().await?;

    let window = t1 - t0;
    let replicas = s1.acks - s0.acks;
    ensure!(replicas > 0, "no replica completed in the window");
    let mean = |a: u64, b: u64| (b - a) as f64 / replicas as f64 / 1e3;
    let (compute_us, upload_us, ack_us, next_assign_us) = (
        mean(s0.compute_ns, s1.compute_ns),
        mean(s0.upload_ns, s1.upload_ns),
        mean(s0.ack_ns, s1.ack_ns),
        mean(s0.next_assign_ns, s1.next_assign_ns),
    );
    let c = &ctx.counters;
    let errors = c.relay_errors.load(Ordering::Relaxed);
    let mut durability = durability;
    if errors > 0 {
        durability.problems.push(format!("{errors} errors from the relay to workers"));
    }
    let cancels = c.cancels.load(Ordering::Relaxed);
    if cancels > 0 {
        durability.problems.push(format!("{cancels} leases cancelled"));
    }
    Ok(RelayFigures {
        workers: n,
        replicas_per_sec: per_second(replicas, window),
        tasks_per_sec: per_second(v1 - v0, window),
        compute_us,
        upload_us,
        ack_us,
        next_assign_us,
        cycle_us: n as f64 / per_second(replicas, window) * 1e6,
        uploads_stored: s1.uploads_stored - s0.uploads_stored,
        uploads_already_there: s1.uploads_already_there - s0.uploads_already_there,
        relay_rss_under_load,
        durability,
    })
}

/// Every posted job, read back from the restarted relay: done, each task verified with the CPU
/// reference's output and exactly 2 accepted replicas, and every acknowledged replica accepted.
async fn check_durability(
    http: &reqwest::Client,
    base: &str,
    posted: &[PostedJob],
    acked: &[(TaskId, PublicKey)],
) -> Result<Durability> {
    let mut d = Durability { jobs: posted.len(), replicas_acked: acked.len() as u64, ..Default::default() };
    let mut accepted: HashSet<(TaskId, PublicKey)> = HashSet::new();
    fn problem(d: &mut Durability, p: String) {
        if d.problems.len() < 10 {
            d.problems.push(p);
        }
    }
    for job in posted {
        let detail: JobDetail = http.get(format!("{base}/v1/jobs/{}", job.id)).send().await?.error_for_status()?.json().await?;
        if detail.summary.state != JobState::Done {
            problem(&mut d, format!("job {} is {:?}", job.id, detail.summary.state));
        }
        if detail.tasks.len() != job.expected.len() {
            problem(&mut d, format!("job {} has {} tasks, posted {}", job.id, detail.tasks.len(), job.expected.len()));
        }
        for (t, want) in detail.tasks.iter().zip(&job.expected) {
            d.tasks += 1;
            let task = TaskId { job: job.id, index: t.index };
            if t.state != TaskState::Verified || t.output_hash != Some(*want) {
                problem(&mut d, format!("task {task} is {:?} with {:?}, the CPU reference gives {want}", t.state, t.output_hash));
            }
            let ok: Vec<_> = t.replicas.iter().filter(|r| r.state == ReplicaState::Accepted).collect();
            if ok.len() != 2 || ok.iter().any(|r| r.output_hash != Some(*want)) {
                problem(&mut d, format!("task {task} has {} accepted replicas", ok.len()));
            }
            accepted.extend(ok.iter().map(|r| (task, r.worker)));
        }
    }
    let lost = acked.iter().filter(|a| !accepted.contains(a)).count();
    if lost > 0 {
        problem(&mut d, format!("{lost} acknowledged replicas are not accepted in the store after the restart"));
    }
    let posted_ids: HashSet<JobId> = posted.iter().map(|j| j.id).collect();
    let by_job: HashMap<JobId, usize> = acked.iter().fold(HashMap::new(), |mut m, (t, _)| {
        *m.entry(t.job).or_default() += 1;
        m
    });
    if by_job.keys().any(|j| !posted_ids.contains(j)) {
        problem(&mut d, "acks for jobs the benchmark never posted".into());
    }
    if acked.len() != accepted.len() {
        problem(&mut d, format!("{} replicas acknowledged, {} accepted in the store", acked.len(), accepted.len()));
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Phase 3: idle memory

#[derive(Debug, Clone, Copy)]
struct IdleFigure {
    connections: usize,
    rss_before: u64,
    rss_after: u64,
}

impl IdleFigure {
    fn bytes_per_connection(&self) -> f64 {
        (self.rss_after as f64 - self.rss_before as f64) / self.connections as f64
    }
}

/// Lets spawned connection tasks settle, then reads the server's RSS.
async fn settled_rss(server: &Server) -> Result<u64> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.rss()
}

async fn idle_relay(counts: &[usize]) -> Result<Vec<IdleFigure>> {
    let data = tempfile::tempdir()?;
    let relay = Server::start("relay", Some(data.path())).await?;
    let base = relay.http();
    let http = reqwest::Client::builder().timeout(PATIENCE).build()?;
    wait_healthy(&http, &base).await?;
    let rss_before = settled_rss(&relay).await?;
    let ctx = Arc::new(WorkerCtx { base: base.clone(), http: http.clone(), counters: Counters::default(), acked: Mutex::default() });
    let (stop, stop_rx) = watch::channel(false);
    let mut workers = JoinSet::new();
    let mut figures = Vec::new();
    let mut connected = 0;
    for &n in counts {
        for (ws, heartbeat, key) in connect_workers(&relay.ws("/v1/workers/ws"), connected..n).await? {
            workers.spawn(run_worker(ws, heartbeat, key, ctx.clone(), stop_rx.clone()));
        }
        connected = n;
        wait_online(&http, &base, n).await?;
        figures.push(IdleFigure { connections: n, rss_before, rss_after: settled_rss(&relay).await? });
        // Still all there (heartbeats kept them) after the reading.
        wait_online(&http, &base, n).await?;
    }
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    ensure!(ctx.counters.relay_errors.load(Ordering::Relaxed) == 0, "the relay sent idle workers errors");
    relay.stop().await?;
    Ok(figures)
}

async fn idle_echo(counts: &[usize]) -> Result<Vec<IdleFigure>> {
    let server = Server::start("echo", None).await?;
    let rss_before = settled_rss(&server).await?;
    let url = server.ws("/echo");
    let mut sockets = Vec::new();
    let mut figures = Vec::new();
    for &n in counts {
        let more = connect_all(sockets.len()..n, |_| {
            let url = url.clone();
            async move {
                let (mut ws, _) = tokio::time::timeout(HANDSHAKE_LIMIT, tokio_tungstenite::connect_async(url)).await??;
                // One message each, as the relay's workers exchange a handshake.
                ws.send(Message::Text("hello".into())).await?;
                ws.next().await.context("echo closed")??;
                Ok(ws)
            }
        })
        .await?;
        sockets.extend(more);
        figures.push(IdleFigure { connections: n, rss_before, rss_after: settled_rss(&server).await? });
    }
    for mut ws in sockets {
        let _ = ws.close(None).await;
    }
    server.stop().await?;
    Ok(figures)
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Debug)]
struct Report {
    options: Options,
    started: String,
    elapsed: Duration,
    echo: Vec<EchoFigures>,
    relay: Vec<RelayFigures>,
    idle_relay: Vec<IdleFigure>,
    idle_echo: Vec<IdleFigure>,
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = command_line("uname", &["-sr"]).unwrap_or_else(|| "unknown kernel".into());
    format!("{cpus} CPUs (`nproc`), {model}, {mem_gib:.1} GiB memory, {kernel}")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

impl Report {
    /// The figure the target is about: relay replicas/s over echoes/s at 1,000 workers (or the
    /// largest count measured when 1,000 was not).
    fn headline(&self) -> Option<(usize, f64)> {
        let pick = self.relay.iter().find(|r| r.workers == 1000).or_else(|| self.relay.iter().max_by_key(|r| r.workers))?;
        let echo = self.echo.iter().find(|e| e.connections == pick.workers)?;
        Some((pick.workers, pick.replicas_per_sec / echo.echoes_per_sec))
    }

    fn markdown(&self) -> String {
        let o = &self.options;
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!("Measured {} by `cargo bench -p starling-relay --bench roundtrip{}` in {:.0} s.", self.started, self.args(), self.elapsed.as_secs_f64()));
        line(String::new());
        line(format!("- Machine: {}", machine()));
        line(format!("- Toolchain: {}", command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown rustc".into())));
        line(format!(
            "- Window: {} s after {} s of warm-up per phase; jobs of {} `monte_carlo_pi` tasks (1 workgroup, 1 sample per thread, 4-byte output), 2 replicas, quorum 2, {} running at once",
            o.seconds, o.warmup, o.tasks_per_job, o.jobs_ahead
        ));
        if let Some(e) = self.echo.first() {
            line(format!("- Echo payload: {} bytes, a `result` message as a worker sends it", e.payload_bytes));
        }
        line(String::new());
        line("### Round trips".into());
        line(String::new());
        line("| workers | echo round trips/s | relay replicas/s | relay tasks/s | replicas/s ÷ echoes/s | durable after SIGKILL |".into());
        line("| ---: | ---: | ---: | ---: | ---: | --- |".into());
        for r in &self.relay {
            let echo = self.echo.iter().find(|e| e.connections == r.workers);
            let ratio = echo.map_or("n/a".into(), |e| format!("{:.2}", r.replicas_per_sec / e.echoes_per_sec));
            let durable = if r.durability.problems.is_empty() {
                format!("yes: {} jobs, {} tasks, {} acked replicas", r.durability.jobs, r.durability.tasks, r.durability.replicas_acked)
            } else {
                format!("**NO**: {}", r.durability.problems.join("; "))
            };
            line(format!(
                "| {} | {} | {:.0} | {:.0} | {ratio} | {durable} |",
                r.workers,
                echo.map_or("n/a".into(), |e| format!("{:.0}", e.echoes_per_sec)),
                r.replicas_per_sec,
                r.tasks_per_sec
            ));
        }
        line(String::new());
        if let Some((workers, ratio)) = self.headline() {
            let verdict = if ratio >= 0.5 { "**met**" } else { "**not met**" };
            line(format!(
                "Target (relay replicas/s at least half the echo rate at 1,000 workers, every verified result durable): {verdict}, ratio {ratio:.3} at {workers} workers."
            ));
            line(String::new());
        }
        line("Where a replica's time goes, per replica as the workers saw it (mean over the window, µs):".into());
        line(String::new());
        line("| workers | compute + hash | blob PUT | result → ack | ack → next assign | cycle (workers ÷ rate) | echo RTT | PUTs stored / already there | relay RSS under load |".into());
        line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |".into());
        for r in &self.relay {
            let rtt = self.echo.iter().find(|e| e.connections == r.workers).map_or("n/a".into(), |e| format!("{:.0}", e.mean_rtt_us));
            line(format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {rtt} | {} / {} | {} |",
                r.workers,
                r.compute_us,
                r.upload_us,
                r.ack_us,
                r.next_assign_us,
                r.cycle_us,
                r.uploads_stored,
                r.uploads_already_there,
                mib(r.relay_rss_under_load)
            ));
        }
        line(String::new());
        line("### Idle memory".into());
        line(String::new());
        line("| idle connections | relay RSS | relay per worker | bare axum echo RSS | echo per connection |".into());
        line("| ---: | ---: | ---: | ---: | ---: |".into());
        if let Some(first) = self.idle_relay.first() {
            let echo0 = self.idle_echo.first().map_or("n/a".into(), |e| mib(e.rss_before));
            line(format!("| 0 | {} | | {echo0} | |", mib(first.rss_before)));
        }
        for r in &self.idle_relay {
            let e = self.idle_echo.iter().find(|e| e.connections == r.connections);
            line(format!(
                "| {} | {} | {} | {} | {} |",
                r.connections,
                mib(r.rss_after),
                kib(r.bytes_per_connection()),
                e.map_or("n/a".into(), |e| mib(e.rss_after)),
                e.map_or("n/a".into(), |e| kib(e.bytes_per_connection()))
            ));
        }
        s
    }

    fn args(&self) -> String {
        let a: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
        if a.is_empty() { String::new() } else { format!(" -- {}", a.join(" ")) }
    }
}

/// Replaces the results section of `path` (between the markers), creating the file if needed.
fn write_results(path: &Path, results: &str) -> Result<()> {
    let section = format!("{RESULTS_BEGIN}\n{results}{RESULTS_END}");
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (current.find(RESULTS_BEGIN), current.find(RESULTS_END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &current[..b], &current[e + RESULTS_END.len()..]),
        _ if current.is_empty() => format!("# Benchmarks\n\nRerun with `cargo bench -p starling-relay --bench roundtrip`.\n\n## Results\n\n{section}\n"),
        _ => format!("{}\n\n## Results\n\n{section}\n", current.trim_end()),
    };
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

async fn bench(o: Options) -> Result<()> {
    let started_at = Instant::now();
    let started = command_line("date", &["-u"]).unwrap_or_else(|| "at an unknown date".into());
    let mut report = Report {
        options: o.clone(),
        started,
        elapsed: Duration::ZERO,
        echo: Vec::new(),
        relay: Vec::new(),
        idle_relay: Vec::new(),
        idle_echo: Vec::new(),
    };
    for &n in &o.workers {
        let e = echo_phase(n, &o).await.with_context(|| format!("echo with {n} connections"))?;
        println!("echo   {n:>6} connections: {:>9.0} round trips/s ({:.0} µs each, {} byte frames)", e.echoes_per_sec, e.mean_rtt_us, e.payload_bytes);
        report.echo.push(e);
        let r = relay_phase(n, &o).await.with_context(|| format!("relay with {n} workers"))?;
        println!(
            "relay  {n:>6} workers:     {:>9.0} replicas/s, {:.0} tasks/s, ratio {:.3}; per replica µs: compute {:.0}, PUT {:.0}, result→ack {:.0}, ack→assign {:.0}",
            r.replicas_per_sec,
            r.tasks_per_sec,
            r.replicas_per_sec / e.echoes_per_sec,
            r.compute_us,
            r.upload_us,
            r.ack_us,
            r.next_assign_us
        );
        if r.durability.problems.is_empty() {
            println!(
                "       durable after SIGKILL + restart: {} jobs, {} tasks verified with 2 accepted replicas each, all {} acknowledged replicas accepted",
                r.durability.jobs, r.durability.tasks, r.durability.replicas_acked
            );
        } else {
            println!("       NOT DURABLE / NOT CLEAN: {}", r.durability.problems.join("; "));
        }
        report.relay.push(r);
    }
    if !o.idle.is_empty() {
        report.idle_relay = idle_relay(&o.idle).await.context("idle relay workers")?;
        for f in &report.idle_relay {
            println!("idle relay {:>6} workers:     RSS {} -> {}, {} per worker", f.connections, mib(f.rss_before), mib(f.rss_after), kib(f.bytes_per_connection()));
        }
        report.idle_echo = idle_echo(&o.idle).await.context("idle echo connections")?;
        for f in &report.idle_echo {
            println!("idle echo  {:>6} connections: RSS {} -> {}, {} per connection", f.connections, mib(f.rss_before), mib(f.rss_after), kib(f.bytes_per_connection()));
        }
    }
    report.elapsed = started_at.elapsed();
    if let Some((workers, ratio)) = report.headline() {
        println!("target (>= 0.5 of the echo rate at 1000 workers): {} (ratio {ratio:.3} at {workers} workers)", if ratio >= 0.5 { "met" } else { "NOT met" });
    }
    if let Some(path) = &o.out {
        write_results(path, &report.markdown())?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
