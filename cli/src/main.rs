//! `starling`: run a relay, contribute as a worker, post jobs and watch them, or run the whole
//! market on one machine with `starling demo`.

mod bench;
mod chain;
mod client;
mod demo;
mod demo_relays;
mod discover;
mod jobs;
mod simulate;
mod train;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use starling_protocol::JobId;
use starling_web_worker::native::{self, Compute, WorkerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "starling", version, about = "Verified compute market: relay, worker and client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a relay: REST API, worker and event WebSockets, scheduler, verifier, SQLite store (or
    /// PostgreSQL, shared by a cluster of relays).
    Relay(Box<RelayArgs>),
    /// Contribute this machine's GPU (or CPU) to a relay.
    Worker(WorkerArgs),
    /// Post a job and follow it to the end.
    Submit(jobs::SubmitArgs),
    /// Show a job, or the latest jobs and the workers online.
    Status(StatusArgs),
    /// Start a relay and several workers here, run a Mandelbrot render and a matmul, and report.
    Demo(demo::DemoArgs),
    /// Operator of an embedded ledger: deposit new money into an account (a client's, or a
    /// worker owner's) through the relay's admin route.
    Fund(FundArgs),
    /// A local development chain running the escrow contract (`starling chain serve`), and its
    /// keys and faucet. For development and demos; production relays use a real chain.
    Chain(chain::ChainArgs),
    /// Run the market simulator: strategies of cheaters against the relay's decision code and
    /// the real contract, seeded; print (and with --write record) what cheating earns.
    Simulate(simulate::SimulateArgs),
    /// Measure a training round through a relay on this machine beside the same kernels run back
    /// to back in one process (BENCHMARKS.md, "Training rounds").
    BenchTraining(bench::TrainingBenchArgs),
}

#[derive(Debug, clap::Args)]
struct FundArgs {
    /// Relay URL.
    #[arg(long, default_value = "http://127.0.0.1:7070", env = "STARLING_RELAY")]
    relay: String,
    /// The file holding the relay's admin token (the relay's `--admin-token-file`).
    #[arg(long)]
    admin_token_file: PathBuf,
    /// The account's ed25519 key (64 hex digits): a client key, or a worker owner's.
    #[arg(long)]
    account: starling_protocol::PublicKey,
    /// Amount, in the escrow's smallest unit.
    #[arg(long)]
    amount: u128,
}

#[derive(Debug, clap::Args)]
struct RelayArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:7070", env = "STARLING_LISTEN")]
    listen: SocketAddr,
    /// Folder for the SQLite database and blobs.
    #[arg(long, default_value = ".starling/relay", env = "STARLING_DATA_DIR")]
    data_dir: PathBuf,
    /// The relay's database, when not SQLite in the data folder: `postgres://USER@HOST/DB`
    /// (several relays may share one; see the README).
    #[arg(long, env = "STARLING_DATABASE")]
    database: Option<String>,
    /// With a PostgreSQL database: where this relay takes connections the cluster's other relays
    /// hand over while it leads (keep it on a private interface).
    #[arg(long, env = "STARLING_PEER_LISTEN", default_value = "127.0.0.1:0")]
    peer_listen: SocketAddr,
    /// The peer address the other relays connect to (`host:port`), when not the bound one.
    #[arg(long, env = "STARLING_PEER_ADVERTISE")]
    peer_advertise: Option<String>,
    /// Where blobs live, when not the folder `<data-dir>/blobs`: another folder, or
    /// `s3://BUCKET[/PREFIX]` on any S3-compatible service (credentials, region and endpoint from
    /// the AWS_* environment variables). Relays sharing a database share one.
    #[arg(long, env = "STARLING_BLOBS", value_parser = starling_relay::blobs::BlobLocation::parse)]
    blobs: Option<starling_relay::blobs::BlobLocation>,
    /// A worker silent this long loses its leases (milliseconds).
    #[arg(long, default_value_t = 15_000)]
    lease_ms: u64,
    /// Longest a single lease may run (milliseconds).
    #[arg(long, default_value_t = 600_000)]
    max_lease_ms: u64,
    /// How often each online worker's escrow standing is read again (milliseconds): a worker
    /// whose bond falls below the minimum stops getting paid work within about this long. The
    /// reads are spread evenly over the period, a few at a time.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    standing_refresh_ms: u64,
    /// Chance that an agreed task of a paid job waits for a hidden audit replica, drawn among
    /// reliable workers, before it is decided (0 to 1).
    #[arg(long, default_value_t = starling_relay::core::CoreConfig::default().audit_rate, value_parser = rate)]
    audit_rate: f64,
    /// Chance that a task of a paid job gets one unannounced replica more than its spec asks
    /// (0 to 1).
    #[arg(long, default_value_t = starling_relay::core::CoreConfig::default().extra_rate, value_parser = rate)]
    extra_rate: f64,
    /// Chance that a returned result of a built-in kernel is checked against the relay's own CPU
    /// reference (a known-answer check); a job's first results and results far faster than its
    /// median always are; 0 turns checks off. A worker whose result fails one gets no more paid
    /// work here (0 to 1).
    #[arg(long, default_value_t = starling_relay::core::CoreConfig::default().canary_rate, value_parser = rate)]
    canary_rate: f64,
    /// How long an agreed task waits for its hidden replica before it is decided without it
    /// (milliseconds).
    #[arg(long, default_value_t = starling_relay::core::CoreConfig::default().hold_wait_ms)]
    hold_wait_ms: u64,
    /// Accepted results in a row after which a worker is reliable: an anchor for new keys and a
    /// candidate for disputes and audits.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    trusted_after: u32,
    /// Cooldown after a worker's first abandoned lease (milliseconds); it doubles with each
    /// further abandon.
    #[arg(long, default_value_t = 10_000)]
    abandon_backoff_ms: u64,
    /// Let workers of one network (IPv4 /24, IPv6 /48) hold replicas of one paid task (off by
    /// default: replicas go to distinct networks).
    #[arg(long)]
    shared_networks: bool,
    /// Most worker connections at once (default: 20,000, or what the open-file hard limit
    /// leaves room for).
    #[arg(long)]
    max_workers: Option<usize>,
    /// Most connections at once from one remote address (workers, watchers and requests).
    #[arg(long, default_value_t = 256)]
    max_connections_per_address: usize,
    /// Most unpaid jobs running at once over the whole relay.
    #[arg(long, default_value_t = 1_000)]
    max_unpaid_jobs: usize,
    /// Most unpaid jobs running at once from one network (IPv4 /24, IPv6 /48), whatever keys
    /// sign them.
    #[arg(long, default_value_t = 16)]
    max_unpaid_jobs_per_network: usize,
    /// How jobs are paid: `embedded` runs the escrow contract in cosmwasm-vm on a local ledger
    /// in the data folder; `off` runs every job unpaid.
    #[arg(long, value_enum, default_value_t = EscrowMode::Embedded, env = "STARLING_ESCROW")]
    escrow: EscrowMode,
    /// The escrow contract's wasm (default: target/contracts/starling_escrow.wasm, built by
    /// scripts/build-contract.sh).
    #[arg(long, env = "STARLING_CONTRACT")]
    contract: Option<PathBuf>,
    /// Embedded ledger only: a faucet that deposits this much, once, into each new account that
    /// posts a paid job or registers a worker. Off (0) by default: free money lets anyone bond
    /// and post jobs at no cost. `starling demo` turns it on; a server funds accounts with
    /// `starling fund` instead.
    #[arg(long, default_value_t = 0)]
    faucet: u128,
    /// Enables `POST /v1/admin/deposits` (`starling fund`) with the secret in this file, created
    /// with a fresh random token (readable by its owner only) if it does not exist.
    #[arg(long, env = "STARLING_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// `--escrow chain`: the node's Tendermint RPC URL.
    #[arg(long, env = "STARLING_CHAIN_RPC", required_if_eq("escrow", "chain"))]
    chain_rpc: Option<String>,
    /// `--escrow chain`: the chain id.
    #[arg(long, env = "STARLING_CHAIN_ID", required_if_eq("escrow", "chain"))]
    chain_id: Option<String>,
    /// `--escrow chain`: the deployed escrow contract's address.
    #[arg(long, env = "STARLING_CHAIN_CONTRACT", required_if_eq("escrow", "chain"))]
    chain_contract: Option<String>,
    /// `--escrow chain`: bech32 prefix of the chain's addresses.
    #[arg(long, env = "STARLING_CHAIN_PREFIX", default_value = "wasm")]
    chain_prefix: String,
    /// `--escrow chain`: file with the relay account's secp256k1 secret key (64 hex digits).
    #[arg(long, env = "STARLING_CHAIN_KEY", required_if_eq("escrow", "chain"))]
    chain_key: Option<PathBuf>,
    /// `--escrow chain`: fee per unit of gas, in the contract's denom.
    #[arg(long, env = "STARLING_CHAIN_GAS_PRICE", default_value_t = 0.025)]
    chain_gas_price: f64,
    /// `--escrow chain`: this relay's public URL, put in the contract's relay registry (the
    /// relay registers on start if it is not registered, bonding `--chain-bond` from its chain
    /// account, or updates its entry). Workers and clients find it there.
    #[arg(long, env = "STARLING_CHAIN_ENDPOINT")]
    chain_endpoint: Option<String>,
    /// `--escrow chain`: how often to look for other registered relays' expired jobs that
    /// nobody refunded (a dead relay's) and send their clients' refunds (milliseconds).
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1_000..))]
    chain_refund_sweep_ms: u64,
    /// `--escrow chain` with `--chain-endpoint`: the bond a new registration sends (at least the
    /// contract's `min_relay_bond`).
    #[arg(long, env = "STARLING_CHAIN_BOND", default_value_t = 10_000_000)]
    chain_bond: u128,
    /// `--escrow chain` with `--chain-endpoint`: the fee this relay charges on each paid replica,
    /// in basis points (set when registering; afterwards it can only be lowered).
    #[arg(long, env = "STARLING_CHAIN_FEE_BPS", default_value_t = 500, value_parser = clap::value_parser!(u16).range(0..=10_000))]
    chain_fee_bps: u16,
    /// The web app's folder (default: www/ with its build in www/pkg); `--www ''` serves the API only.
    // A String, not a PathBuf: clap refuses an empty path, and `''` is how one says "none".
    #[arg(long, env = "STARLING_WWW")]
    www: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EscrowMode {
    Embedded,
    Chain,
    Off,
}

/// The first of `candidates` (relative to the working folder, then to the workspace this
/// binary was built from) that exists.
pub(crate) fn locate(candidates: &[&str]) -> Option<PathBuf> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.iter().flat_map(|c| [PathBuf::from(c), workspace.join(c)]).find(|p| p.exists())
}

/// A probability given on the command line.
fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not between 0 and 1")) }
}

fn relay_config(args: &RelayArgs) -> Result<starling_relay::Config> {
    let mut config = starling_relay::Config::new(&args.data_dir);
    config.database = args.database.clone();
    config.blobs = args.blobs.clone();
    if args.database.as_deref().is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        config.cluster = Some(starling_relay::cluster::ClusterConfig {
            peer_listen: args.peer_listen,
            advertise: args.peer_advertise.clone(),
        });
    }
    config.core.scheduler.lease_ms = args.lease_ms;
    config.core.scheduler.max_lease_ms = args.max_lease_ms;
    config.standing_refresh = std::time::Duration::from_millis(args.standing_refresh_ms);
    config.refund_sweep = std::time::Duration::from_millis(args.chain_refund_sweep_ms);
    config.core.audit_rate = args.audit_rate;
    config.core.extra_rate = args.extra_rate;
    config.core.canary_rate = args.canary_rate;
    config.core.hold_wait_ms = args.hold_wait_ms;
    config.core.scheduler.trusted_after = args.trusted_after;
    config.core.scheduler.abandon_backoff_ms = args.abandon_backoff_ms;
    config.core.scheduler.distinct_networks = !args.shared_networks;
    if let Some(n) = args.max_workers {
        config.max_workers = n;
    }
    config.limits.per_address = args.max_connections_per_address;
    config.core.max_unpaid_jobs = args.max_unpaid_jobs;
    config.core.max_unpaid_jobs_per_network = args.max_unpaid_jobs_per_network;
    config.escrow = match args.escrow {
        EscrowMode::Off => starling_relay::EscrowConfig::Off,
        EscrowMode::Chain => {
            let req =
                |v: &Option<String>, name: &str| v.clone().with_context(|| format!("--escrow chain needs --{name}"));
            let mut chain = starling_relay::escrow::chain::ChainConfig::new(
                &req(&args.chain_rpc, "chain-rpc")?,
                &req(&args.chain_id, "chain-id")?,
                &req(&args.chain_contract, "chain-contract")?,
                &args.chain_prefix,
                args.chain_key.clone().context("--escrow chain needs --chain-key")?,
            );
            chain.gas_price = args.chain_gas_price;
            chain.register =
                args.chain_endpoint.as_ref().map(|endpoint| starling_relay::escrow::chain::RelayRegistration {
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                    fee_bps: args.chain_fee_bps,
                    bond: args.chain_bond,
                });
            starling_relay::EscrowConfig::Chain(chain)
        }
        EscrowMode::Embedded => {
            let wasm = match &args.contract {
                Some(path) => path.clone(),
                None => locate(&["target/contracts/starling_escrow.wasm"]).context(
                    "the escrow contract is not built: run scripts/build-contract.sh (or pass --contract, or --escrow off)",
                )?,
            };
            let mut embedded = starling_relay::escrow::embedded::EmbeddedConfig::new(wasm);
            embedded.faucet = args.faucet;
            starling_relay::EscrowConfig::Embedded(embedded)
        }
    };
    if let Some(path) = &args.admin_token_file {
        config.admin_token = Some(admin_token(path)?);
    }
    config.www = match &args.www {
        Some(dir) if dir.is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => locate(&["www/index.html"]).and_then(|index| index.parent().map(PathBuf::from)),
    };
    Ok(config)
}

/// Reads the admin token in `path`, or creates it (32 random bytes as hex, mode 0600).
fn admin_token(path: &std::path::Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= 32 => Ok(text.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} holds a token shorter than 32 characters", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = write_secret(path)?;
            eprintln!("admin token written to {}", path.display());
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Creates `path` (never overwriting) readable by its owner only, holding a fresh random
/// 32-byte secret as hex; returns the secret.
pub(crate) fn write_secret(path: &std::path::Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let secret = hex_token();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(secret)
}

fn hex_token() -> String {
    rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// `starling fund`: one operator deposit.
async fn fund(args: FundArgs) -> Result<()> {
    let token = std::fs::read_to_string(&args.admin_token_file)
        .with_context(|| format!("reading {}", args.admin_token_file.display()))?;
    let body = starling_protocol::api::AdminDeposit { account: args.account, amount: args.amount.to_string() };
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/admin/deposits", args.relay.trim_end_matches('/')))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .context("posting the deposit")?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("the relay refused the deposit ({status}): {text}");
    }
    let account: starling_protocol::api::EscrowAccount = serde_json::from_str(&text)?;
    println!("account {}: balance {} {}", account.address, account.balance, account.denom);
    Ok(())
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Relay URL; several relays of one network comma-separated: the worker moves to the next
    /// when its connection is lost.
    #[arg(long, default_value = "http://127.0.0.1:7070", env = "STARLING_RELAY")]
    relay: String,
    /// Find relays instead: read the relay registry of the escrow contract at this chain node's
    /// RPC URL (with `--contract`), and work for the registered relays, best first, moving to
    /// the next when one stops answering. Overrides `--relay`.
    #[arg(long, env = "STARLING_DISCOVER_CHAIN", requires = "contract", conflicts_with = "expect_contract")]
    chain: Option<String>,
    /// With `--chain`: the escrow contract whose registry to read (and the only one this
    /// worker's signatures and bond are for).
    #[arg(long, env = "STARLING_DISCOVER_CONTRACT")]
    contract: Option<String>,
    /// The worker's ed25519 key (created on first run).
    #[arg(long, default_value = ".starling/worker.key")]
    key_file: PathBuf,
    /// Largest fraction of wall time spent computing (0.1 = at most 10% busy).
    #[arg(long, default_value_t = 1.0, value_parser = parse_duty)]
    duty: f32,
    /// Lowest price per replica accepted, in micro-units.
    #[arg(long, default_value_t = 0)]
    price: u64,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    slots: u32,
    /// Run built-in kernels on the CPU even if a GPU is present.
    #[arg(long)]
    cpu: bool,
    /// TESTING ONLY: corrupt every output before signing it, to exercise verification.
    #[arg(long, hide = true)]
    corrupt_results: bool,
    /// TESTING ONLY: sign an earlier task's output again instead of computing, like a copier.
    #[arg(long, hide = true)]
    copy_results: bool,
    /// TESTING ONLY: take tasks and never finish them, like a hung device.
    #[arg(long, hide = true)]
    stall_tasks: bool,
    /// TESTING ONLY: move the first f32 of every output by one ulp, like another GPU's rounding.
    #[arg(long, hide = true)]
    perturb_floats: bool,
    /// TESTING ONLY: corrupt the first output of this built-in kernel (by name) and nothing else.
    #[arg(long, hide = true, value_parser = parse_builtin)]
    corrupt_one: Option<starling_protocol::job::BuiltinKernel>,
    /// The escrow account that bonds this worker and is paid for its work: a key file like
    /// `--key-file` (created if missing). Default: the worker key owns itself. One owner may
    /// hold many worker keys; its keys count once toward any task's quorum.
    #[arg(long)]
    owner_key_file: Option<PathBuf>,
    /// The largest bond this worker's owner signs for when a relay asks it to register.
    #[arg(long, default_value_t = starling_web_worker::escrow::DEFAULT_MAX_BOND)]
    max_bond: u64,
    /// Refuse relays that do not settle through this escrow contract.
    #[arg(long)]
    expect_contract: Option<String>,
    /// Refuse relays that do not settle on this chain (embedded ledgers: the id in the relay's
    /// `GET /v1/health`; each draws its own).
    #[arg(long)]
    expect_chain_id: Option<String>,
}

fn parse_duty(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("{s} is not a number"))?;
    if v > 0.0 && v <= 1.0 { Ok(v) } else { Err("duty must be in (0, 1]".into()) }
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Relay URL.
    #[arg(long, default_value = "http://127.0.0.1:7070", env = "STARLING_RELAY")]
    relay: String,
    /// A job to show in detail.
    job: Option<u64>,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Relay(args) => {
            init_tracing("info,tower_http=warn,sqlx=warn");
            let listener = starling_relay::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
            let addr = listener.local_addr()?;
            // Scripts and tests read this line to learn the port.
            println!("starling relay listening on http://{addr}");
            let config = relay_config(&args)?;
            if let Some(www) = &config.www {
                // stderr: scripts read only the first stdout line and may close the pipe.
                eprintln!("web app: http://{addr}/ (from {})", www.display());
            }
            if config.cluster.is_some() {
                starling_relay::cluster::run(listener, config, ctrl_c()).await?;
            } else {
                starling_relay::run(listener, config, ctrl_c()).await?;
            }
        }
        Command::Worker(args) => {
            init_tracing("info,wgpu_core=warn,wgpu_hal=warn,wgpu_hal::gles=off,naga=warn");
            let key = native::load_or_create_key(&args.key_file)?;
            let (relay, expect_contract, expect_chain_id) = match (&args.chain, &args.contract) {
                (Some(rpc), Some(contract)) => {
                    let found = discover::relays(rpc, contract, discover::Role::Worker).await?;
                    if args.expect_chain_id.as_ref().is_some_and(|id| *id != found.chain_id) {
                        anyhow::bail!("the chain at {rpc} is {}, not --expect-chain-id", found.chain_id);
                    }
                    for r in &found.relays {
                        let latency = r.latency_ms.map_or("-".into(), |ms| format!("{ms} ms"));
                        // stderr: the first stdout line is the worker's key.
                        eprintln!("relay {}  fee {} bps  {latency}  {}", r.endpoint, r.fee_bps, r.note);
                    }
                    (discover::endpoints(&found.relays), Some(contract.clone()), Some(found.chain_id))
                }
                _ => (args.relay.clone(), args.expect_contract.clone(), args.expect_chain_id.clone()),
            };
            let config = WorkerConfig {
                duty_cycle: args.duty,
                asking_price: args.price,
                slots: args.slots,
                cpu_only: args.cpu,
                corrupt_results: args.corrupt_results,
                copy_results: args.copy_results,
                stall_tasks: args.stall_tasks,
                perturb_floats: args.perturb_floats,
                corrupt_one: args.corrupt_one,
                owner_seed: match &args.owner_key_file {
                    Some(path) => Some(native::load_or_create_key(path)?.seed()),
                    None => None,
                },
                max_bond: args.max_bond,
                expect_contract,
                expect_chain_id,
                ..WorkerConfig::new(relay)
            };
            println!("starling worker {}", key.public());
            let compute = Compute::open(config.cpu_only).await;
            let stats = native::run(config, key, compute, ctrl_c()).await?;
            println!(
                "worker stopped: {} tasks run, {} failed, {} sessions",
                stats.tasks_run, stats.tasks_failed, stats.sessions
            );
        }
        Command::Submit(args) => {
            init_tracing("warn");
            jobs::submit(args).await?;
        }
        Command::Status(args) => {
            init_tracing("warn");
            status(args).await?;
        }
        Command::Simulate(args) => {
            init_tracing("error");
            simulate::run(args)?;
        }
        Command::Fund(args) => {
            init_tracing("warn");
            fund(args).await?;
        }
        Command::Chain(args) => {
            init_tracing("info");
            chain::run(args).await?;
        }
        Command::BenchTraining(args) => {
            init_tracing("error,wgpu_hal::gles=off");
            bench::training(args).await?;
        }
        Command::Demo(args) => {
            init_tracing("error,wgpu_hal::gles=off");
            demo::run(args).await?;
        }
    }
    Ok(())
}

async fn status(args: StatusArgs) -> Result<()> {
    let client = client::Client::new(&args.relay);
    if let Some(id) = args.job {
        let job = client.job(JobId(id)).await?;
        let s = &job.summary;
        println!(
            "job {} {:?} {} ({}): {}/{} verified, {} failed",
            s.id, s.state, s.kernel, s.label, s.tasks_verified, s.tasks_total, s.tasks_failed
        );
        if let Some(f) = &s.failure {
            println!("  failure: {f}");
        }
        for t in &job.tasks {
            let replicas: Vec<String> =
                t.replicas.iter().map(|r| format!("{}…:{:?}", &r.worker.to_hex()[..8], r.state)).collect();
            // The relay shows a task's replicas only once it is decided.
            let replicas = if t.state == starling_protocol::api::TaskState::Pending {
                "(replicas hidden until decided)".into()
            } else {
                replicas.join(" ")
            };
            println!("  task {:>4} {:?} {replicas}", t.index, t.state);
        }
        return Ok(());
    }
    let jobs = client.jobs().await?;
    println!("{:>6}  {:<8}  {:<20}  {:>9}  label", "job", "state", "kernel", "verified");
    for s in jobs.iter().take(20) {
        println!(
            "{:>6}  {:<8}  {:<20}  {:>4}/{:<4}  {}",
            s.id.0,
            format!("{:?}", s.state),
            s.kernel,
            s.tasks_verified,
            s.tasks_total,
            s.label
        );
    }
    let workers = client.workers().await?;
    let online: Vec<_> = workers.iter().filter(|w| w.online).collect();
    println!("\n{} workers online ({} known)", online.len(), workers.len());
    for w in online {
        let caps = w.capabilities.as_ref();
        println!(
            "  {}…  {:<14} {:<30} returned {:>5}  accepted {:>5}  rejected {:>3}",
            &w.key.to_hex()[..12],
            caps.map(|c| format!("{:?}", c.backend)).unwrap_or_default(),
            caps.map(|c| c.adapter.name.clone()).unwrap_or_default(),
            w.replicas_returned,
            w.replicas_accepted,
            w.replicas_rejected
        );
    }
    Ok(())
}

fn parse_builtin(name: &str) -> Result<starling_protocol::job::BuiltinKernel, String> {
    starling_protocol::job::BuiltinKernel::from_name(name).ok_or_else(|| format!("no built-in kernel {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_args(extra: &[&str]) -> RelayArgs {
        let mut argv = vec!["starling", "relay", "--escrow", "off"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("arguments parse").command {
            Command::Relay(args) => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn empty_www_serves_the_api_only() {
        // As the README writes it: `--www ''`.
        let config = relay_config(&relay_args(&["--www", ""])).expect("config");
        assert_eq!(config.www, None);
        let config = relay_config(&relay_args(&["--www", "some/folder"])).expect("config");
        assert_eq!(config.www, Some(PathBuf::from("some/folder")));
    }

    #[test]
    fn abuse_bounds_come_from_the_command_line() {
        let args = relay_args(&[
            "--max-connections-per-address",
            "7",
            "--max-unpaid-jobs",
            "9",
            "--max-unpaid-jobs-per-network",
            "3",
        ]);
        let config = relay_config(&args).expect("config");
        assert_eq!(config.limits.per_address, 7);
        assert_eq!(config.core.max_unpaid_jobs, 9);
        assert_eq!(config.core.max_unpaid_jobs_per_network, 3);
    }

    #[test]
    fn standing_refresh_comes_from_the_command_line() {
        let config = relay_config(&relay_args(&[])).expect("config");
        assert_eq!(config.standing_refresh, std::time::Duration::from_secs(30));
        let config = relay_config(&relay_args(&["--standing-refresh-ms", "250"])).expect("config");
        assert_eq!(config.standing_refresh, std::time::Duration::from_millis(250));
        let too_often = Cli::try_parse_from(["starling", "relay", "--standing-refresh-ms", "5"]);
        assert!(too_often.is_err(), "a refresh under 100 ms would hammer the escrow");
    }
}
