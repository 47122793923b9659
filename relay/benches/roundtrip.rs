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
//!    On `assign` a worker computes the real output with the CPU reference, sends the signed
//!    `result` with the (small) output inline and awaits the `ack`. A client posts
//!    signed jobs of tiny `monte_carlo_pi` tasks (2 replicas, quorum 2), follows them on
//!    `/v1/jobs/{id}/events` and posts another whenever fewer than workers + one job's tasks are
//!    left unverified, so the workers never run dry. Afterwards the relay is killed with SIGKILL,
//!    restarted on the same data folder, and every posted job is read back: each task must be
//!    verified with the output the CPU reference gives, with exactly 2 accepted replicas, and every
//!    acknowledged replica must be among them.
//! 3. **idle**: a fresh relay (and, for comparison, a fresh echo server) gets 1,000 then 10,000
//!    idle authenticated connections; bytes per connection = growth of VmRSS / connections.
//!
//! `cargo test --all-targets` builds this file but, without `--bench`, `main` returns at once.

use anyhow::{Context, Result, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use starling_protocol::api::{JobDetail, JobState, JobSummary, ReplicaState, TaskState};
use starling_protocol::events::JobEvent;
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use starling_protocol::sign::{Keypair, UNPAID};
use starling_protocol::worker::{Capabilities, DeviceState, InlineBytes, RelayMessage, WorkerMessage};
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
/// A relay child on PostgreSQL: the database's URL, and the blob folder the cluster shares.
const DATABASE_ENV: &str = "STARLING_BENCH_DATABASE";
const BLOBS_ENV: &str = "STARLING_BENCH_BLOBS";
const RESULTS_BEGIN: &str = "<!-- results:begin -->";
const RESULTS_END: &str = "<!-- results:end -->";
/// Connections opened at once; each finishes its handshake well within the relay's 10 s limit.
const CONNECT_BATCH: usize = 250;
/// Upper bound on anything the benchmark waits for (a connection, a job to drain, a reply).
const PATIENCE: Duration = Duration::from_secs(120);
/// The relay's limit on one worker connection's handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

fn main() -> Result<()> {
    if std::env::var_os(ROLE_ENV).is_some() && std::env::var_os("RUST_LOG").is_some() {
        // Servers log to stderr only when asked: logging is not part of what is measured.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
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
    let fds = raise_fd_limits();
    let options = Options::parse(args.into_iter().filter(|a| a != "--bench"), fds)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench(options))
}

/// Open files this process and the servers it starts may hold: raised (hard limit too, where
/// the benchmark runs as root) so that 100,000 idle workers fit; the children inherit it.
const WANTED_FDS: u64 = 300_000;

fn raise_fd_limits() -> u64 {
    let nofile = rlimit::Resource::NOFILE;
    if let Ok((_, hard)) = nofile.get()
        && hard < WANTED_FDS
    {
        // Only root may raise the hard limit; elsewhere the soft limit goes as far as it allows.
        let _ = nofile.set(WANTED_FDS, WANTED_FDS);
    }
    let _ = rlimit::increase_nofile_limit(WANTED_FDS);
    nofile.get().map_or(1024, |(soft, _)| soft)
}

/// Loopback source addresses the load generator spreads its connections over: one source
/// address reaches one server port through about 28,000 ephemeral ports only.
const SOURCE_ADDRESSES: u8 = 8;
static NEXT_SOURCE: AtomicU64 = AtomicU64::new(0);

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
    /// Where the results go; None with `--no-write`.
    out: Option<PathBuf>,
    /// A PostgreSQL server (`postgres://user@host:port`): the relay phase runs again on it, with
    /// each of `relays` relays sharing one database.
    postgres: Option<String>,
    relays: Vec<usize>,
}

impl Options {
    const USAGE: &str = "options (defaults shown): --workers 100,1000 --idle 1000,10000,100000 --seconds 10 --warmup 2 \
                         --tasks-per-job 2048, --out FILE (default: BENCHMARKS.md at the workspace root) or --no-write, \
                         and --postgres postgres://USER@HOST:PORT --relays 1,2,3 to run the relay phase on PostgreSQL too";

    fn parse(args: impl Iterator<Item = String>, fds: u64) -> Result<Options> {
        let mut o = Options {
            workers: vec![100, 1000],
            idle: vec![1000, 10_000, 100_000],
            seconds: 10.0,
            warmup: 2.0,
            tasks_per_job: 2048,
            out: Some(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("..")).join("BENCHMARKS.md")),
            postgres: None,
            relays: vec![1, 2, 3],
        };
        let list = |v: &str| -> Result<Vec<usize>> {
            v.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse().context(Options::USAGE)).collect()
        };
        let mut args = args;
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
                "--out" => o.out = Some(PathBuf::from(value)),
                "--postgres" => o.postgres = Some(value),
                "--relays" => o.relays = list(&value)?,
                _ => bail!("unknown option {flag}; {}", Options::USAGE),
            }
        }
        ensure!(o.seconds > 0.0 && o.warmup >= 0.0, "--seconds must be positive");
        ensure!(o.workers.iter().all(|&n| n > 0), "--workers must be positive");
        ensure!(o.relays.iter().all(|&n| (1..=8).contains(&n)), "--relays must be in 1..=8");
        ensure!((1..=4096).contains(&o.tasks_per_job), "--tasks-per-job must be in 1..=4096");
        o.idle.sort_unstable();
        // Each process holds one end of every connection: keep inside the open-file limit.
        let most = fds.saturating_sub(2_000) as usize;
        ensure!(
            o.idle.last().is_none_or(|&n| n <= most),
            "--idle counts above {most} exceed the open-file limit ({fds}; run as root or raise ulimit -Hn)"
        );
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

/// A listener on `127.0.0.1:0` with a 1,024-connection accept queue. `TcpListener::bind` gives
/// 128 (mio copies std), which a burst of hundreds of connects overflows: the kernel drops the
/// SYNs and the clients retry one second later.
fn listen_loopback() -> Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(socket.listen(1024)?)
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
        let listener = listen_loopback()?;
        announce(listener.local_addr()?)?;
        let mut config = bench_relay_config(dir);
        match std::env::var(DATABASE_ENV) {
            Ok(url) => {
                config.database = Some(url);
                config.blobs =
                    std::env::var_os(BLOBS_ENV).map(|p| starling_relay::blobs::BlobLocation::Folder(PathBuf::from(p)));
                config.cluster = Some(starling_relay::cluster::ClusterConfig {
                    peer_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    advertise: None,
                });
                starling_relay::cluster::run(listener, config, stdin_closed()).await?;
            }
            Err(_) => starling_relay::run(listener, config, stdin_closed()).await?,
        }
        Ok(())
    })
}

/// The relay's defaults, except the bounds meant for strangers on the internet: here every
/// worker and the client share one loopback address.
fn bench_relay_config(dir: String) -> starling_relay::Config {
    let mut config = starling_relay::Config::new(dir);
    // Room for the largest idle count, as far as the open-file limit allows (the benchmark
    // needs few watchers).
    config.max_watchers = 64;
    let hard = rlimit::Resource::NOFILE.get().map_or(0, |(_, hard)| hard);
    let others = (config.max_watchers + config.limits.http_connections) as u64 + 256;
    config.max_workers = hard.saturating_sub(others).min(150_000) as usize;
    config.limits.per_address = usize::MAX;
    config.core.max_unpaid_jobs_per_network = usize::MAX;
    config.core.max_running_jobs_per_client = usize::MAX;
    config
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
        let listener = listen_loopback()?;
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
        Server::start_with(role, data, &[]).await
    }

    async fn start_with(role: &str, data: Option<&Path>, env: &[(&str, &str)]) -> Result<Server> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE_ENV, role).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        cmd.envs(env.iter().copied());
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

/// Busy CPU time in clock ticks: the whole machine's, this process's and the server's.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTicks {
    machine: u64,
    loadgen: u64,
    server: u64,
}

/// Cores kept busy during a window, by whom: shows whether a server was CPU-bound, and whether
/// something else on the machine (a compiler, say) took part of it.
#[derive(Debug, Clone, Copy, Default)]
struct CpuShare {
    loadgen: f64,
    server: f64,
    other: f64,
}

impl CpuShare {
    fn describe(&self) -> String {
        format!("load generator {:.2}, server {:.2}, other {:.2}", self.loadgen, self.server, self.other)
    }
}

fn process_ticks(stat_path: &str) -> u64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the parenthesised command name: state is 0, utime 11, stime 12.
    let fields: Vec<u64> =
        stat.rsplit(')').next().unwrap_or("").split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

fn cpu_ticks(server_pid: u32) -> CpuTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    let machine = v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0);
    CpuTicks {
        machine,
        loadgen: process_ticks("/proc/self/stat"),
        server: process_ticks(&format!("/proc/{server_pid}/stat")),
    }
}

fn cpu_share(a: CpuTicks, b: CpuTicks, window: Duration) -> CpuShare {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let hz = *HZ.get_or_init(|| command_line("getconf", &["CLK_TCK"]).and_then(|s| s.parse().ok()).unwrap_or(100.0));
    let cores = |ticks: u64| ticks as f64 / hz / window.as_secs_f64();
    let (machine, loadgen, server) = (b.machine - a.machine, b.loadgen - a.loadgen, b.server - a.server);
    CpuShare { loadgen: cores(loadgen), server: cores(server), other: cores(machine.saturating_sub(loadgen + server)) }
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

/// Opens a client WebSocket with `TCP_NODELAY`, as the native worker does. The load generator
/// reads with an 8 KiB buffer instead of tungstenite's 128 KiB default, which it zero-fills on
/// every read: thousands of default buffers would spend the shared CPU on memset that the servers
/// under test need.
async fn connect_ws(url: String) -> Result<Ws> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 << 10);
    let server: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .context("ws:// URL")?
        .parse()
        .context("the servers listen on a loopback address")?;
    let source = 1 + (NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % u64::from(SOURCE_ADDRESSES)) as u8;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, source], 0)))?;
    let tcp = socket.connect(server).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(tcp), Some(config)).await?;
    Ok(ws)
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
    let health: starling_protocol::api::Health = http.get(format!("{base}/v1/health")).send().await?.json().await?;
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
        signature: key.sign_result_v2(UNPAID, task, &output_hash, &output_hash, 4),
        output: Some(InlineBytes(vec![1, 2, 3, 4])),
    })
    .expect("serializes")
}

// ---------------------------------------------------------------------------------------------
// Fixed CPU costs of one replica in the relay, measured on one core

/// Per-call costs (µs) of work the relay does for every replica whatever its design, to put a
/// floor under the rate two shared cores can reach.
#[derive(Debug, Clone, Copy)]
struct FixedCosts {
    /// `starling_protocol::sign::verify` on a result signature, as the relay's connection runs it.
    verify_result_us: f64,
    /// ed25519 `verify_strict` alone (what `verify` runs before its second check).
    verify_strict_us: f64,
    /// Decoding a worker `result` frame.
    decode_result_us: f64,
    /// Encoding an `assign` frame.
    encode_assign_us: f64,
    /// Signing a result: the worker's side, which shares this machine's cores.
    sign_result_us: f64,
}

fn mean_us(iterations: u32, mut f: impl FnMut()) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}

fn fixed_costs() -> FixedCosts {
    use std::hint::black_box;
    const N: u32 = 2000;
    let key = Keypair::from_seed([3; 32]);
    let public = key.public();
    let task = TaskId { job: JobId(12), index: 1234 };
    let hash = sha256(b"output");
    let signature = key.sign_result_v2(UNPAID, task, &hash, &hash, 4);
    let message = starling_protocol::sign::result_bytes_v2(UNPAID, task, &hash, &hash, 4, &public);
    let verify_result_us = mean_us(N, || {
        starling_protocol::sign::verify(black_box(&public), black_box(&message), black_box(&signature)).expect("valid");
    });
    let verify_strict_us = mean_us(N, || {
        let k = ed25519_dalek::VerifyingKey::from_bytes(black_box(&public.0)).expect("valid key");
        let sig = ed25519_dalek::Signature::from_bytes(black_box(&signature.0));
        k.verify_strict(black_box(&message), &sig).expect("valid");
    });
    let frame = typical_result_message();
    let decode_result_us = mean_us(N, || {
        black_box(serde_json::from_str::<WorkerMessage>(black_box(&frame)).expect("decodes"));
    });
    let spec = monte_carlo_pi::tasks(7, 1, 1, 1).remove(0);
    let assign = RelayMessage::Assign(starling_protocol::worker::Assignment {
        lease: LeaseId(123_456),
        task,
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        inputs: spec.blobs().collect(),
        params: spec.params,
        workgroups: spec.workgroups,
        output_size: spec.output_size,
        lease_ms: 15_000,
        spec_digest: hash,
        escrow: None,
    });
    let encode_assign_us = mean_us(N, || {
        black_box(serde_json::to_string(black_box(&assign)).expect("encodes"));
    });
    let sign_result_us = mean_us(N, || {
        black_box(key.sign_result_v2(UNPAID, black_box(task), &hash, black_box(&hash), 4));
    });
    FixedCosts { verify_result_us, verify_strict_us, decode_result_us, encode_assign_us, sign_result_us }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: echo anchor

#[derive(Debug, Clone, Copy)]
struct EchoFigures {
    connections: usize,
    payload_bytes: usize,
    echoes_per_sec: f64,
    mean_rtt_us: f64,
    cpu: CpuShare,
}

async fn echo_phase(n: usize, o: &Options) -> Result<EchoFigures> {
    let server = Server::start("echo", None).await?;
    let url = server.ws("/echo");
    let payload = typical_result_message();
    let payload_bytes = payload.len();
    let sockets = connect_all(0..n, |_| {
        let url = url.clone();
        async move { tokio::time::timeout(HANDSHAKE_LIMIT, connect_ws(url)).await? }
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
    let (c0, cpu0, t0) = (echoes.load(Ordering::Relaxed), cpu_ticks(server.pid()), Instant::now());
    tokio::time::sleep(secs(o.seconds)).await;
    let (c1, cpu1, t1) = (echoes.load(Ordering::Relaxed), cpu_ticks(server.pid()), Instant::now());
    let _ = stop_tx.send(true);
    while let Some(joined) = loops.join_next().await {
        joined??;
    }
    server.stop().await?;
    let window = t1 - t0;
    let echoes_per_sec = per_second(c1 - c0, window);
    Ok(EchoFigures {
        connections: n,
        payload_bytes,
        echoes_per_sec,
        mean_rtt_us: n as f64 / echoes_per_sec * 1e6,
        cpu: cpu_share(cpu0, cpu1, window),
    })
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
    /// Signing and sending `result` until its `ack` arrives (the relay's batch and commit).
    ack_ns: AtomicU64,
    /// `ack` to the next `assign` (the relay hands out work in the batch that frees the slot).
    next_assign_ns: AtomicU64,
    /// Error frames other than `lease_not_held` (none expected).
    relay_errors: AtomicU64,
    /// `cancel` frames: the relay took a lease back.
    cancels: AtomicU64,
    /// `lease_not_held` answers to results (for leases cancelled while the result was on its way).
    late_results: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct CounterSnapshot {
    acks: u64,
    compute_ns: u64,
    ack_ns: u64,
    next_assign_ns: u64,
}

impl Counters {
    fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            acks: l(&self.acks),
            compute_ns: l(&self.compute_ns),
            ack_ns: l(&self.ack_ns),
            next_assign_ns: l(&self.next_assign_ns),
        }
    }
}

fn add_elapsed(counter: &AtomicU64, since: Instant) {
    counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// What one simulated worker shares with the others.
struct WorkerCtx {
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
    let mut ws = connect_ws(url).await?;
    ws.send(text(&WorkerMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_key: key.public(),
        capabilities: caps,
    }))
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

/// Connects workers `range`, worker `i` to `urls[i % urls.len()]`, and starts each one's session
/// as soon as it is welcomed: a worker that waited for the others before its first heartbeat
/// could be dropped as silent. A worker whose relay goes away reconnects, to the next of `urls`,
/// as real workers do, until `stop` flips.
async fn connect_workers(
    urls: &[String],
    range: std::ops::Range<usize>,
    ctx: &Arc<WorkerCtx>,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let started = Instant::now();
    let count = range.len();
    let sessions = connect_all(range, |i| {
        let (urls, ctx, stop) = (urls.to_vec(), ctx.clone(), stop.clone());
        async move {
            let key = Keypair::generate();
            let mut at = i % urls.len();
            let (ws, heartbeat) =
                tokio::time::timeout(HANDSHAKE_LIMIT, handshake(urls[at].clone(), &key, worker_caps()))
                    .await
                    .context("worker handshake took longer than the relay allows")??;
            Ok(tokio::spawn(async move {
                let (mut ws, mut heartbeat) = (ws, heartbeat);
                loop {
                    run_worker(ws, heartbeat, &key, ctx.clone(), stop.clone()).await;
                    // Reconnect (after the real worker's first backoff) unless told to stop.
                    loop {
                        if *stop.borrow() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        at = (at + 1) % urls.len();
                        let attempt = handshake(urls[at].clone(), &key, worker_caps());
                        if let Ok(Ok(session)) = tokio::time::timeout(HANDSHAKE_LIMIT, attempt).await {
                            (ws, heartbeat) = session;
                            break;
                        }
                    }
                }
            }))
        }
    })
    .await?;
    println!("       {count} workers authenticated in {:.1} s", started.elapsed().as_secs_f64());
    Ok(sessions)
}

/// A worker's session: heartbeats, and for every assignment compute, report (output inline), await ack.
/// Ends when `stop` flips or the relay goes away.
async fn run_worker(
    mut ws: Ws,
    heartbeat: Duration,
    key: &Keypair,
    ctx: Arc<WorkerCtx>,
    mut stop: watch::Receiver<bool>,
) {
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
                    (KernelSpec::Builtin { name }, true) => {
                        run_task_cpu(*name, &a.params, &[], a.workgroups, a.output_size)
                    }
                    _ => Err(starling_web_worker::Error::Kernel(
                        "the benchmark worker runs input-free built-ins only".into(),
                    )),
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
                // The output is a few bytes: it travels inside the result, as real workers send it.
                let signature = starling_web_worker::escrow::sign_result(key, None, &a, &output_hash, output_len);
                let output = Some(InlineBytes(output));
                let result =
                    WorkerMessage::Result { lease: a.lease, task: a.task, output_hash, output_len, signature, output };
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
            RelayMessage::Cancel { lease } => {
                c.cancels.fetch_add(1, Ordering::Relaxed);
                // Our result for it is (or will be) answered `lease_not_held`, never acked.
                pending = pending.filter(|(held, ..)| *held != lease);
            }
            RelayMessage::Error(e) if e.code == starling_protocol::ErrorCode::LeaseNotHeld => {
                c.late_results.fetch_add(1, Ordering::Relaxed);
            }
            RelayMessage::Error(e) => {
                if c.relay_errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("  relay error to a worker: {:?}: {}", e.code, e.message);
                }
            }
            // The benchmark relay runs without escrow: nothing asks workers to register.
            RelayMessage::Challenge { .. } | RelayMessage::Welcome { .. } | RelayMessage::Register { .. } => {
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
        .map(|t| {
            sha256(
                &run_task_cpu(BuiltinKernel::MonteCarloPi, &t.params, &[], t.workgroups, t.output_size)
                    .expect("valid task"),
            )
        })
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
        adaptive: None,
        kernels: Vec::new(),
    };
    (spec, expected)
}

/// A running job's progress as its event socket reports it.
#[derive(Debug)]
struct Progress {
    total: u32,
    verified: AtomicU64,
    finished: std::sync::atomic::AtomicBool,
}

/// Follows a job on its event socket, keeping `progress` current until the job ends.
async fn watch_job(url: String, id: JobId, progress: Arc<Progress>, wake: mpsc::UnboundedSender<()>) {
    let followed = async {
        let mut ws = connect_ws(url).await?;
        while let Some(frame) = ws.next().await {
            let Message::Text(t) = frame? else { continue };
            match serde_json::from_str::<JobEvent>(t.as_str())? {
                JobEvent::Snapshot { job } => {
                    progress.verified.store(u64::from(job.tasks_verified), Ordering::Relaxed);
                    if job.state != JobState::Running {
                        break;
                    }
                }
                JobEvent::TaskVerified { task, verified, .. } if task.job == id => {
                    progress.verified.fetch_max(u64::from(verified), Ordering::Relaxed);
                    let _ = wake.send(());
                }
                JobEvent::JobDone { .. } | JobEvent::JobFailed { .. } => break,
                _ => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = tokio::time::timeout(PATIENCE, followed).await.map_err(anyhow::Error::from).and_then(|r| r) {
        eprintln!("  watching job {id}: {e:#}");
    }
    progress.finished.store(true, Ordering::Relaxed);
    let _ = wake.send(());
}

/// Posts jobs until `stop` flips, whenever the unverified tasks of the running jobs drop below
/// `keep_unverified`, then waits for the running ones to finish. Posting on progress rather than
/// on completion staggers the jobs: the scheduler serves running jobs round-robin, so jobs posted
/// together also finish together and would leave every worker idle at once.
async fn post_jobs(
    http: reqwest::Client,
    server_http: String,
    server_ws: String,
    tasks_per_job: u32,
    keep_unverified: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<PostedJob>> {
    /// Well below the relay's running-job limit per client.
    const MAX_RUNNING: usize = 32;
    let client = Keypair::generate();
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel();
    let mut posted = Vec::new();
    let mut running: Vec<Arc<Progress>> = Vec::new();
    let mut seed = 1u64;
    let mut failures = 0u32;
    loop {
        running.retain(|p| !p.finished.load(Ordering::Relaxed));
        let unverified: u64 =
            running.iter().map(|p| u64::from(p.total).saturating_sub(p.verified.load(Ordering::Relaxed))).sum();
        if !*stop.borrow() && unverified < keep_unverified && running.len() < MAX_RUNNING {
            let (spec, expected) = bench_job(seed, tasks_per_job);
            seed += 1;
            let resp = match http.post(format!("{server_http}/v1/jobs")).json(&client.sign_job(spec)).send().await {
                Ok(resp) => {
                    failures = 0;
                    resp
                }
                // A cluster's leader killed under load: its connections break until another
                // leads. Post the job again (a new one: the seed moved on).
                Err(e) => {
                    failures += 1;
                    ensure!(failures < 300, "POST /v1/jobs kept failing: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let status = resp.status();
            if status.as_u16() == 503 {
                // A follower between leaders: retry, as a client does after `retry-after`.
                failures += 1;
                ensure!(failures < 300, "POST /v1/jobs kept answering 503");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            ensure!(
                status.as_u16() == 201,
                "POST /v1/jobs answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
            let summary: JobSummary = resp.json().await?;
            let progress = Arc::new(Progress {
                total: summary.tasks_total,
                verified: AtomicU64::new(0),
                finished: std::sync::atomic::AtomicBool::new(false),
            });
            let url = format!("{server_ws}/v1/jobs/{}/events", summary.id);
            tokio::spawn(watch_job(url, summary.id, progress.clone(), wake_tx.clone()));
            running.push(progress);
            posted.push(PostedJob { id: summary.id, expected });
            continue;
        }
        if running.is_empty() && *stop.borrow() {
            return Ok(posted);
        }
        tokio::select! {
            _ = wake_rx.recv() => {}
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
    ack_us: f64,
    next_assign_us: f64,
    cycle_us: f64,
    relay_rss_under_load: u64,
    cpu: CpuShare,
    durability: Durability,
}

#[derive(Debug, Clone, Default)]
struct Durability {
    jobs: usize,
    tasks: u64,
    replicas_acked: u64,
    /// Replicas beyond the 2 each task needs (the store's view): work the relay handed out and
    /// then cancelled. Not a durability failure, but wasted worker time.
    extra_replicas: u64,
    tasks_with_extra: u64,
    /// The workers' view of the same: `cancel` frames, and results answered `lease_not_held`.
    cancels_seen: u64,
    late_results: u64,
    /// Replicas accepted in the store whose ack never reached the worker: it was on its way when
    /// a cluster's leader was killed.
    acks_lost: u64,
    /// Empty when every durability check held.
    problems: Vec<String>,
}

/// Where a relay phase keeps state: SQLite in the relay's folder, or `relays` relays sharing one
/// fresh database on a PostgreSQL server.
#[derive(Debug, Clone)]
enum Backing {
    Sqlite,
    Postgres { server: String, relays: usize },
}

impl Backing {
    fn describe(&self) -> String {
        match self {
            Backing::Sqlite => "SQLite, 1 relay".into(),
            Backing::Postgres { relays: 1, .. } => "PostgreSQL, 1 relay".into(),
            Backing::Postgres { relays, .. } => format!("PostgreSQL, {relays} relays"),
        }
    }
}

/// The relays of a phase: their processes, and the environment that starts another on the same
/// state.
struct Relays {
    servers: Vec<Server>,
    data: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Relays {
    async fn start(backing: &Backing) -> Result<Relays> {
        let data = tempfile::tempdir()?;
        let env = match backing {
            Backing::Sqlite => vec![],
            Backing::Postgres { server, .. } => {
                let name = format!("starling_bench_{:016x}", rand::random::<u64>());
                let url = starling_relay::store::Store::create_postgres_database(server, &name).await?;
                let blobs = data.path().join("blobs").display().to_string();
                vec![(DATABASE_ENV.to_string(), url), (BLOBS_ENV.to_string(), blobs)]
            }
        };
        let count = match backing {
            Backing::Sqlite => 1,
            Backing::Postgres { relays, .. } => *relays,
        };
        let mut relays = Relays { servers: Vec::new(), data, env };
        let http = reqwest::Client::builder().timeout(PATIENCE).build()?;
        // The first leads (it is alone until it answers); the others follow.
        for _ in 0..count {
            let server = relays.spawn().await?;
            wait_healthy(&http, &server.http()).await?;
            relays.servers.push(server);
        }
        Ok(relays)
    }

    async fn spawn(&self) -> Result<Server> {
        let i = self.servers.len();
        let dir = self.data.path().join(format!("relay{i}"));
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start_with("relay", Some(&dir), &env).await
    }
}

/// What a relay phase measured, and (with several relays) how long the work took to resume after
/// the leader was SIGKILLed under load: until a surviving relay reported a newly verified task.
struct PhaseOutcome {
    figures: RelayFigures,
    failover: Option<Duration>,
}

async fn relay_phase(n: usize, o: &Options, backing: &Backing) -> Result<PhaseOutcome> {
    let mut relays = Relays::start(backing).await?;
    let count = relays.servers.len();
    // Jobs are posted to (and followed on) a follower when there is one: the path a client of a
    // cluster takes more often than not.
    let front = relays.servers[1 % count].addr;
    let base = format!("http://{front}");
    let http = reqwest::Client::builder().timeout(PATIENCE).build()?;
    let ctx = Arc::new(WorkerCtx { counters: Counters::default(), acked: Mutex::default() });
    let (stop_workers, stop_rx) = watch::channel(false);
    let urls: Vec<String> = relays.servers.iter().map(|r| r.ws("/v1/workers/ws")).collect();
    let workers = connect_workers(&urls, 0..n, &ctx, &stop_rx).await?;
    wait_online(&http, &base, n).await?;

    let (stop_posting, posting_rx) = watch::channel(false);
    let poster = tokio::spawn(post_jobs(
        http.clone(),
        base.clone(),
        format!("ws://{front}"),
        o.tasks_per_job,
        n as u64 + u64::from(o.tasks_per_job),
        posting_rx,
    ));
    let leader_pid = relays.servers[0].pid();
    tokio::time::sleep(secs(o.warmup)).await;
    let (s0, v0, cpu0, t0) =
        (ctx.counters.snapshot(), tasks_verified(&http, &base).await?, cpu_ticks(leader_pid), Instant::now());
    tokio::time::sleep(secs(o.seconds)).await;
    let (s1, v1, cpu1, t1) =
        (ctx.counters.snapshot(), tasks_verified(&http, &base).await?, cpu_ticks(leader_pid), Instant::now());
    let relay_rss_under_load = relays.servers[0].rss()?;

    // With several relays, the leader dies under load; the workers reconnect to the others.
    let mut failover = None;
    if count > 1 {
        let before = tasks_verified(&http, &base).await?;
        let leader = relays.servers.remove(0);
        let killed = Instant::now();
        leader.kill().await?;
        loop {
            if tasks_verified(&http, &base).await.is_ok_and(|v| v > before) {
                failover = Some(killed.elapsed());
                break;
            }
            ensure!(killed.elapsed() < PATIENCE, "no task was verified after the leader was killed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = stop_posting.send(true);
    let posted = tokio::time::timeout(PATIENCE, poster).await.context("posted jobs did not finish in time")???;
    // Jobs whose event socket went with a killed leader: wait for them over HTTP.
    for job in &posted {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let detail: Option<JobSummary> = match http.get(format!("{base}/v1/jobs/{}", job.id)).send().await {
                Ok(r) => r.json::<JobDetail>().await.ok().map(|d| d.summary),
                Err(_) => None,
            };
            if detail.is_some_and(|d| d.state != JobState::Running) {
                break;
            }
            ensure!(Instant::now() < deadline, "job {} never finished", job.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A job's last event and its last acks travel on different sockets: let the acks land.
    let replicas_posted: u64 = posted.iter().map(|j| 2 * j.expected.len() as u64).sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctx.counters.acks.load(Ordering::Relaxed) < replicas_posted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Crash every relay with everything acknowledged, then read it all back from a fresh process.
    let _ = stop_workers.send(true);
    for relay in std::mem::take(&mut relays.servers) {
        relay.kill().await?;
    }
    for worker in workers {
        let _ = worker.await;
    }
    let restarted = relays.spawn().await?;
    wait_healthy(&http, &restarted.http()).await?;
    let acked = std::mem::take(&mut *ctx.acked.lock().expect("acked lock"));
    let durability = check_durability(&http, &restarted.http(), &posted, &acked, failover.is_some()).await?;
    restarted.stop().await?;

    let window = t1 - t0;
    let replicas = s1.acks - s0.acks;
    ensure!(replicas > 0, "no replica completed in the window");
    let mean = |a: u64, b: u64| (b - a) as f64 / replicas as f64 / 1e3;
    let (compute_us, ack_us, next_assign_us) =
        (mean(s0.compute_ns, s1.compute_ns), mean(s0.ack_ns, s1.ack_ns), mean(s0.next_assign_ns, s1.next_assign_ns));
    let c = &ctx.counters;
    let errors = c.relay_errors.load(Ordering::Relaxed);
    let mut durability = durability;
    if errors > 0 {
        durability.problems.push(format!("{errors} errors from the relay to workers"));
    }
    durability.cancels_seen = c.cancels.load(Ordering::Relaxed);
    durability.late_results = c.late_results.load(Ordering::Relaxed);
    let figures = RelayFigures {
        workers: n,
        replicas_per_sec: per_second(replicas, window),
        tasks_per_sec: per_second(v1 - v0, window),
        compute_us,
        ack_us,
        next_assign_us,
        cycle_us: n as f64 / per_second(replicas, window) * 1e6,
        relay_rss_under_load,
        cpu: cpu_share(cpu0, cpu1, window),
        durability,
    };
    Ok(PhaseOutcome { figures, failover })
}

/// Every posted job, read back from the restarted relay: done, each task verified with the CPU
/// reference's output and exactly 2 accepted replicas, and every acknowledged replica accepted.
async fn check_durability(
    http: &reqwest::Client,
    base: &str,
    posted: &[PostedJob],
    acked: &[(TaskId, PublicKey)],
    failover: bool,
) -> Result<Durability> {
    let mut d = Durability { jobs: posted.len(), replicas_acked: acked.len() as u64, ..Default::default() };
    let mut accepted: HashSet<(TaskId, PublicKey)> = HashSet::new();
    fn problem(d: &mut Durability, p: String) {
        if d.problems.len() < 10 {
            d.problems.push(p);
        }
    }
    for job in posted {
        let detail: JobDetail =
            http.get(format!("{base}/v1/jobs/{}", job.id)).send().await?.error_for_status()?.json().await?;
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
                problem(
                    &mut d,
                    format!("task {task} is {:?} with {:?}, the CPU reference gives {want}", t.state, t.output_hash),
                );
            }
            let ok: Vec<_> = t.replicas.iter().filter(|r| r.state == ReplicaState::Accepted).collect();
            if ok.len() != 2 || ok.iter().any(|r| r.output_hash != Some(*want)) {
                problem(&mut d, format!("task {task} has {} accepted replicas", ok.len()));
            }
            accepted.extend(ok.iter().map(|r| (task, r.worker)));
            if t.replicas.len() > 2 {
                d.extra_replicas += t.replicas.len() as u64 - 2;
                d.tasks_with_extra += 1;
            }
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
    if failover && accepted.len() > acked.len() {
        // Results committed just before the leader died, whose acks died with its connections:
        // accepted and paid for, only never confirmed to the worker.
        d.acks_lost = (accepted.len() - acked.len()) as u64;
    } else if acked.len() != accepted.len() {
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
    let ctx = Arc::new(WorkerCtx { counters: Counters::default(), acked: Mutex::default() });
    let (stop, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    let mut figures = Vec::new();
    let mut connected = 0;
    for &n in counts {
        workers.extend(connect_workers(&[relay.ws("/v1/workers/ws")], connected..n, &ctx, &stop_rx).await?);
        connected = n;
        wait_online(&http, &base, n).await?;
        figures.push(IdleFigure { connections: n, rss_before, rss_after: settled_rss(&relay).await? });
        // Still all there (heartbeats kept them) after the reading.
        wait_online(&http, &base, n).await?;
    }
    let _ = stop.send(true);
    for worker in workers {
        let _ = worker.await;
    }
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
        let started = Instant::now();
        let count = n.saturating_sub(sockets.len());
        let more = connect_all(sockets.len()..n, |_| {
            let url = url.clone();
            async move {
                let mut ws = tokio::time::timeout(HANDSHAKE_LIMIT, connect_ws(url)).await??;
                // One message each, as the relay's workers exchange a handshake.
                ws.send(Message::Text("hello".into())).await?;
                ws.next().await.context("echo closed")??;
                Ok(ws)
            }
        })
        .await?;
        println!("       {count} echo connections open in {:.1} s", started.elapsed().as_secs_f64());
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
    /// The relay phase on PostgreSQL: the backing, its figures, the failover time.
    cluster: Vec<(String, RelayFigures, Option<Duration>)>,
    idle_relay: Vec<IdleFigure>,
    idle_echo: Vec<IdleFigure>,
    costs: FixedCosts,
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit the measured code came from, and whether the tree differed from it (read-only).
fn source_revision() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let root = root.to_string_lossy();
    let Some(commit) = command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"]) else {
        return "not a git checkout".into();
    };
    let dirty = command_line("git", &["-C", &root, "status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    format!("commit {commit}{}", if dirty { " with uncommitted changes" } else { "" })
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

/// Issue 8's target for the relay.
const TARGET: &str = "at 1,000 workers at least 12,000 replica round trips/s, or, where the echo anchor \
    runs below 100,000/s, at least 0.12 of it; every verified result durable after SIGKILL";

struct Headline {
    workers: usize,
    replicas_per_sec: f64,
    echoes_per_sec: f64,
    durable: bool,
}

impl Headline {
    fn ratio(&self) -> f64 {
        self.replicas_per_sec / self.echoes_per_sec
    }

    fn met(&self) -> bool {
        let needed = if self.echoes_per_sec < 100_000.0 { 0.12 * self.echoes_per_sec } else { 12_000.0 };
        self.workers >= 1000 && self.durable && self.replicas_per_sec >= needed.min(12_000.0)
    }
}

impl Report {
    /// The figures the target is about, at 1,000 workers (or the largest count measured when
    /// 1,000 was not): workers, relay replicas/s, echoes/s, every verified result durable.
    fn headline(&self) -> Option<Headline> {
        let pick =
            self.relay.iter().find(|r| r.workers == 1000).or_else(|| self.relay.iter().max_by_key(|r| r.workers))?;
        let echo = self.echo.iter().find(|e| e.connections == pick.workers)?;
        Some(Headline {
            workers: pick.workers,
            replicas_per_sec: pick.replicas_per_sec,
            echoes_per_sec: echo.echoes_per_sec,
            durable: pick.durability.problems.is_empty(),
        })
    }

    fn markdown(&self) -> String {
        let o = &self.options;
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!(
            "Measured {} by `cargo bench -p starling-relay --bench roundtrip{}` in {:.0} s.",
            self.started,
            self.args(),
            self.elapsed.as_secs_f64()
        ));
        line(String::new());
        line(format!("- Machine: {}", machine()));
        line(format!(
            "- Toolchain: {}",
            command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown rustc".into())
        ));
        line(format!("- Source: {}", source_revision()));
        line(format!(
            "- Window: {} s after {} s of warm-up per phase; jobs of {} `monte_carlo_pi` tasks (1 workgroup, 1 sample per thread, 4-byte output), 2 replicas, quorum 2, a new job posted whenever fewer than workers + {} tasks are unverified",
            o.seconds, o.warmup, o.tasks_per_job, o.tasks_per_job
        ));
        if let Some(e) = self.echo.first() {
            line(format!("- Echo payload: {} bytes, a `result` message as a worker sends it", e.payload_bytes));
        }
        line(String::new());
        line("#### Round trips".into());
        line(String::new());
        line("| workers | echo round trips/s | relay replicas/s | relay tasks/s | replicas/s ÷ echoes/s | durable after SIGKILL | extra replicas handed out, then cancelled |".into());
        line("| ---: | ---: | ---: | ---: | ---: | --- | ---: |".into());
        for r in &self.relay {
            let echo = self.echo.iter().find(|e| e.connections == r.workers);
            let ratio = echo.map_or("n/a".into(), |e| format!("{:.3}", r.replicas_per_sec / e.echoes_per_sec));
            let durable = if r.durability.problems.is_empty() {
                format!(
                    "yes: {} jobs, {} tasks, {} acked replicas",
                    r.durability.jobs, r.durability.tasks, r.durability.replicas_acked
                )
            } else {
                format!("**NO**: {}", r.durability.problems.join("; "))
            };
            line(format!(
                "| {} | {} | {:.0} | {:.0} | {ratio} | {durable} | {} in {} tasks |",
                r.workers,
                echo.map_or("n/a".into(), |e| format!("{:.0}", e.echoes_per_sec)),
                r.replicas_per_sec,
                r.tasks_per_sec,
                r.durability.extra_replicas,
                r.durability.tasks_with_extra
            ));
        }
        line(String::new());
        if !self.cluster.is_empty() {
            line("#### Relays on PostgreSQL".into());
            line(String::new());
            line("The same phase with the relays' state in one PostgreSQL database (the server `--postgres` names): one relay, then a cluster of several (one leads and decides, the others hand their connections over; workers spread evenly over all, jobs posted on a follower). With several relays the leader is SIGKILLed after the window, under load; the workers reconnect to the others, and the last column is the time from the kill until a surviving relay reports a newly verified task. Durability is then checked as above, every relay killed and one restarted on the database.".into());
            line(String::new());
            line("| store | workers | echo round trips/s | relay replicas/s | relay tasks/s | replicas/s ÷ echoes/s | durable after SIGKILL | work resumed after the leader's SIGKILL |".into());
            line("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |".into());
            for r in self
                .relay
                .iter()
                .map(|r| ("SQLite, 1 relay".to_string(), r, None))
                .chain(self.cluster.iter().map(|(b, r, f)| (b.clone(), r, *f)))
            {
                let (backing, r, failover) = r;
                let echo = self.echo.iter().find(|e| e.connections == r.workers);
                let ratio = echo.map_or("n/a".into(), |e| format!("{:.3}", r.replicas_per_sec / e.echoes_per_sec));
                let durable = if r.durability.problems.is_empty() {
                    let lost = match r.durability.acks_lost {
                        0 => String::new(),
                        n => format!(" ({n} replicas accepted whose acks died with the killed leader's connections)"),
                    };
                    format!(
                        "yes: {} jobs, {} tasks, every acked replica accepted{lost}",
                        r.durability.jobs, r.durability.tasks
                    )
                } else {
                    format!("**NO**: {}", r.durability.problems.join("; "))
                };
                line(format!(
                    "| {backing} | {} | {} | {:.0} | {:.0} | {ratio} | {durable} | {} |",
                    r.workers,
                    echo.map_or("n/a".into(), |e| format!("{:.0}", e.echoes_per_sec)),
                    r.replicas_per_sec,
                    r.tasks_per_sec,
                    failover.map_or("n/a".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
                ));
            }
            line(String::new());
        }
        if let Some(h) = self.headline() {
            let verdict = if h.met() { "**met**" } else { "**not met**" };
            line(format!(
                "Target ({TARGET}): {verdict}: {:.0} replicas/s at {} workers, {:.3} of the echo rate, durable: {}.",
                h.replicas_per_sec,
                h.workers,
                h.ratio(),
                h.durable
            ));
            line(String::new());
        }
        line("Where a replica's time goes, per replica as the workers saw it (mean over the window, µs):".into());
        line(String::new());
        line("| workers | compute + hash | result (output inline) → ack | ack → next assign | cycle (workers ÷ rate) | echo RTT | relay RSS under load |".into());
        line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |".into());
        for r in &self.relay {
            let rtt = self
                .echo
                .iter()
                .find(|e| e.connections == r.workers)
                .map_or("n/a".into(), |e| format!("{:.0}", e.mean_rtt_us));
            line(format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {rtt} | {} |",
                r.workers,
                r.compute_us,
                r.ack_us,
                r.next_assign_us,
                r.cycle_us,
                mib(r.relay_rss_under_load)
            ));
        }
        line(String::new());
        line(
            "Cores busy during each window (of the machine's CPUs; \"other\" is everything else on the machine):"
                .into(),
        );
        line(String::new());
        line(
            "| workers | echo: load generator | echo: server | echo: other | relay: load generator | relay: server | relay: other |".into(),
        );
        line("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |".into());
        for r in &self.relay {
            let e = self.echo.iter().find(|e| e.connections == r.workers).map(|e| e.cpu);
            let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.2}"));
            line(format!(
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                r.workers,
                f(e.map(|c| c.loadgen)),
                f(e.map(|c| c.server)),
                f(e.map(|c| c.other)),
                r.cpu.loadgen,
                r.cpu.server,
                r.cpu.other
            ));
        }
        line(String::new());
        let c = self.costs;
        let floor = c.verify_result_us + c.decode_result_us + c.encode_assign_us;
        line(format!(
            "Fixed CPU per replica, measured on one core in this run: the relay verifies the result signature in {:.1} µs \
             (`verify_strict` alone: {:.1} µs), decodes the result frame in {:.1} µs and encodes the assign frame in {:.1} µs \
             ({floor:.1} µs in all: one core's worth caps the relay at {:.0} replicas/s); the worker signs the result in {:.1} µs.",
            c.verify_result_us,
            c.verify_strict_us,
            c.decode_result_us,
            c.encode_assign_us,
            1e6 / floor,
            c.sign_result_us
        ));
        line(String::new());
        for e in &self.echo {
            // Machine CPU an echo took, against the least a replica takes with these fixed costs
            // alone: a ceiling on the ratio for any relay on this machine.
            let echo_us = (e.cpu.loadgen + e.cpu.server) / e.echoes_per_sec * 1e6;
            line(format!(
                "- {} connections: an echo round trip took {echo_us:.1} µs of machine CPU, so even a relay that did nothing but the fixed work above ({:.1} µs with the signing) would reach at most {:.2} of the echo rate.",
                e.connections,
                floor + c.sign_result_us,
                echo_us / (floor + c.sign_result_us)
            ));
        }
        line(String::new());
        line("#### Idle memory".into());
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
        _ if current.is_empty() => {
            format!(
                "# Benchmarks\n\n## Relay round trips\n\nRerun with `cargo bench -p starling-relay --bench roundtrip`.\n\n### Results\n\n{section}\n"
            )
        }
        _ => format!("{}\n\n### Results\n\n{section}\n", current.trim_end()),
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
        cluster: Vec::new(),
        idle_relay: Vec::new(),
        idle_echo: Vec::new(),
        costs: fixed_costs(),
    };
    let c = report.costs;
    println!(
        "fixed CPU per replica (one core): relay verifies the result signature {:.1} µs (verify_strict alone {:.1} µs), decodes result {:.1} µs, encodes assign {:.1} µs; worker signs {:.1} µs",
        c.verify_result_us, c.verify_strict_us, c.decode_result_us, c.encode_assign_us, c.sign_result_us
    );
    for &n in &o.workers {
        let e = echo_phase(n, &o).await.with_context(|| format!("echo with {n} connections"))?;
        println!(
            "echo   {n:>6} connections: {:>9.0} round trips/s ({:.0} µs each, {} byte frames); cores busy: {}",
            e.echoes_per_sec,
            e.mean_rtt_us,
            e.payload_bytes,
            e.cpu.describe()
        );
        report.echo.push(e);
        let r = relay_phase(n, &o, &Backing::Sqlite).await.with_context(|| format!("relay with {n} workers"))?.figures;
        println!(
            "relay  {n:>6} workers:     {:>9.0} replicas/s, {:.0} tasks/s, ratio {:.3}; per replica µs: compute {:.0}, result→ack {:.0}, ack→assign {:.0}",
            r.replicas_per_sec,
            r.tasks_per_sec,
            r.replicas_per_sec / e.echoes_per_sec,
            r.compute_us,
            r.ack_us,
            r.next_assign_us
        );
        println!("       cores busy: {}", r.cpu.describe());
        if r.durability.problems.is_empty() {
            println!(
                "       durable after SIGKILL + restart: {} jobs, {} tasks verified with 2 accepted replicas each, all {} acknowledged replicas accepted",
                r.durability.jobs, r.durability.tasks, r.durability.replicas_acked
            );
        } else {
            println!("       NOT DURABLE: {}", r.durability.problems.join("; "));
        }
        let d = &r.durability;
        if d.extra_replicas > 0 || d.cancels_seen > 0 {
            println!(
                "       extra replicas: {} beyond 2 in {} tasks (workers saw {} cancels, {} results answered lease_not_held)",
                d.extra_replicas, d.tasks_with_extra, d.cancels_seen, d.late_results
            );
        }
        report.relay.push(r);
        if let Some(server) = &o.postgres {
            for &relays in &o.relays {
                let backing = Backing::Postgres { server: server.clone(), relays };
                let outcome = relay_phase(n, &o, &backing)
                    .await
                    .with_context(|| format!("{} with {n} workers", backing.describe()))?;
                let r = outcome.figures;
                println!(
                    "{:<22} {n:>6} workers: {:>9.0} replicas/s, {:.0} tasks/s, ratio {:.3}; durable: {}{}",
                    backing.describe(),
                    r.replicas_per_sec,
                    r.tasks_per_sec,
                    r.replicas_per_sec / e.echoes_per_sec,
                    if r.durability.problems.is_empty() { "yes".to_string() } else { r.durability.problems.join("; ") },
                    outcome.failover.map_or(String::new(), |d| format!(
                        "; work resumed {:.0} ms after the leader's SIGKILL",
                        d.as_secs_f64() * 1e3
                    )),
                );
                report.cluster.push((backing.describe(), r, outcome.failover));
            }
        }
    }
    if !o.idle.is_empty() {
        report.idle_relay = idle_relay(&o.idle).await.context("idle relay workers")?;
        for f in &report.idle_relay {
            println!(
                "idle relay {:>6} workers:     RSS {} -> {}, {} per worker",
                f.connections,
                mib(f.rss_before),
                mib(f.rss_after),
                kib(f.bytes_per_connection())
            );
        }
        report.idle_echo = idle_echo(&o.idle).await.context("idle echo connections")?;
        for f in &report.idle_echo {
            println!(
                "idle echo  {:>6} connections: RSS {} -> {}, {} per connection",
                f.connections,
                mib(f.rss_before),
                mib(f.rss_after),
                kib(f.bytes_per_connection())
            );
        }
    }
    report.elapsed = started_at.elapsed();
    if let Some(h) = report.headline() {
        let verdict = if h.met() { "met" } else { "NOT met" };
        println!(
            "target ({TARGET}): {verdict} ({:.0} replicas/s at {} workers, ratio {:.3}, durable: {})",
            h.replicas_per_sec,
            h.workers,
            h.ratio(),
            h.durable
        );
    }
    if let Some(path) = &o.out {
        write_results(path, &report.markdown())?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
