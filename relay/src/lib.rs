//! The Starling relay: accepts jobs, leases their tasks to workers, verifies results by quorum
//! and pushes live status.
//!
//! - [`api`] and [`ws`]: thin HTTP and WebSocket adapters; they decode, validate and forward.
//! - [`core`]: pure; every decision about jobs, tasks, leases, verification and settlement, as
//!   inputs in and effects out; it calls:
//!   - [`scheduler`]: pure; which worker gets which replica, lease expiry;
//!   - [`verifier`]: pure; quorum decisions over returned results.
//! - [`driver`]: the single writer around the core: batches commands, commits the core's writes
//!   in one transaction, then sends; escrow calls and blob reads run off it.
//! - [`sim`]: the market simulator: many workers with chosen strategies against the core and the
//!   real contract, no sockets.
//! - [`standing`]: re-reads online workers' escrow standing, so that one whose bond fell below
//!   the minimum stops getting paid work.
//! - [`serve`]: the accept loop: connection budgets per address and in all, header and body
//!   deadlines, the open-file limit.
//! - [`store`]: SQL state (SQLite in WAL mode by default); [`blobs`]: content-addressed files,
//!   charged to their uploader until a job references them; [`leases`]: leases held now, and the
//!   output each one's own upload stored; [`withheld`]: outputs nobody may read before their task
//!   is decided.

pub mod api;
pub mod blobs;
pub mod canary;
pub mod cluster;
pub mod core;
pub mod driver;
pub mod error;
pub mod escrow;
pub mod graph;
pub mod leases;
pub mod metrics;
pub mod scheduler;
pub mod serve;
pub mod sim;
pub mod standing;
pub mod store;
pub mod verifier;
pub mod web;
pub mod withheld;
pub mod ws;

use axum::Router;
use axum::response::IntoResponse;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use error::{ApiError, Error, Result};

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: store::Store,
    pub blobs: blobs::BlobStore,
    pub core: driver::CoreHandle,
    pub core_config: core::CoreConfig,
    /// Caps concurrent worker connections.
    pub worker_slots: Arc<Semaphore>,
    /// Caps concurrent job-event watchers.
    pub watcher_slots: Arc<Semaphore>,
    /// Payment; `None` runs every job unpaid.
    pub escrow: Option<escrow::Escrow>,
    /// The operator's secret for `POST /v1/admin/deposits`; `None` turns the route off.
    pub admin_token: Option<Arc<str>>,
    /// The escrow's relay registry as last read, for `GET /v1/relays` (read at most every
    /// [`api::RELAYS_TTL`], one read at a time).
    pub relays: Arc<api::RelaysCache>,
    /// [`Config::history_every`], for `GET /v1/network/history`.
    pub history_every_ms: u64,
}

/// How the relay settles payment.
#[derive(Debug, Clone)]
pub enum EscrowConfig {
    /// Jobs run unpaid.
    Off,
    /// The contract in cosmwasm-vm on a local ledger in the data folder (the default).
    Embedded(escrow::embedded::EmbeddedConfig),
    /// A deployed contract on a real CosmWasm chain, over its node's RPC.
    Chain(escrow::chain::ChainConfig),
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Folder for `relay.sqlite` and `blobs/`.
    pub data_dir: PathBuf,
    /// The relay's database: `None` is SQLite in `data_dir/relay.sqlite`; otherwise a
    /// `postgres://` (or `sqlite://`) URL.
    pub database: Option<String>,
    /// Where blobs live, when not the folder `data_dir/blobs` (relays of one cluster share one
    /// store: a folder they all reach, or an S3 bucket).
    pub blobs: Option<blobs::BlobLocation>,
    /// Several relays on one PostgreSQL database (see [`cluster`]); `None`: this relay alone.
    pub cluster: Option<cluster::ClusterConfig>,
    pub core: core::CoreConfig,
    pub max_workers: usize,
    pub max_watchers: usize,
    pub max_blob_bytes: u64,
    /// Connection budgets and HTTP deadlines.
    pub limits: serve::Limits,
    /// Bounds on blobs no job references yet, and how long they live.
    pub blob_quota: blobs::BlobQuota,
    pub escrow: EscrowConfig,
    /// The web app's folder (`www/`), served at `/`; `None` serves the API only.
    pub www: Option<PathBuf>,
    /// The operator's secret for `POST /v1/admin/deposits` (funding accounts on the embedded
    /// ledger); `None` turns the route off.
    pub admin_token: Option<String>,
    /// How often an online worker's escrow standing is read again (see [`standing`]): a worker
    /// whose bond falls below the minimum stops getting paid work within about this long.
    pub standing_refresh: std::time::Duration,
    /// How often this relay looks for other registered relays' expired jobs nobody refunded (a
    /// dead relay's) and sends their refunds, at most [`escrow::REFUNDS_PER_SWEEP`] a time, so
    /// their clients get their unfinished deposits back at the deadline. Chain escrow only.
    pub refund_sweep: std::time::Duration,
    /// How often the network's figures are sampled into its history (`/v1/network/history`).
    pub history_every: std::time::Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let limits = serve::Limits::default();
        let (max_workers, max_watchers) = serve::default_connection_limits(&limits);
        Self {
            data_dir: data_dir.into(),
            database: None,
            blobs: None,
            cluster: None,
            core: core::CoreConfig::default(),
            max_workers,
            max_watchers,
            max_blob_bytes: starling_protocol::limits::MAX_BLOB_BYTES,
            limits,
            blob_quota: blobs::BlobQuota::default(),
            escrow: EscrowConfig::Off,
            www: None,
            admin_token: None,
            standing_refresh: std::time::Duration::from_secs(30),
            refund_sweep: std::time::Duration::from_secs(60),
            history_every: std::time::Duration::from_secs(10),
        }
    }
}

/// Binds a listener with a deep accept queue: after a relay restart thousands of workers
/// reconnect at once, and the default backlog of 128 drops their SYNs (1 s retry each).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The whole HTTP surface: the API under `/v1`, and the web app from `www` at every other path.
pub fn app(state: AppState, www: Option<PathBuf>) -> Router {
    let router = api::router()
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(starling_protocol::ErrorCode::Malformed, format!("{method} is not allowed on this path"))
                .into_response()
        })
        // Outside the method check, so a browser's preflight (OPTIONS) is answered.
        .layer(api::cors());
    let router = match www {
        Some(dir) => router.fallback_service(web::service(dir)),
        None => router.fallback(|| async { api_not_found() }),
    };
    router.layer(tower_http::trace::TraceLayer::new_for_http()).with_state(state)
}

fn api_not_found() -> axum::response::Response {
    ApiError::new(starling_protocol::ErrorCode::NotFound, "no such endpoint").into_response()
}

/// Opens the store, recovers state and serves on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    start(listener, config, shutdown).await?.finished().await
}

/// A relay that is serving: its shared state (for tests and embedding) and its end.
#[derive(Debug)]
pub struct Started {
    pub state: AppState,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Started {
    /// Waits until the relay stops (after `shutdown`, or a store failure).
    pub async fn finished(self) -> Result<()> {
        self.task.await.map_err(|e| Error::Corrupt(format!("relay task panicked: {e}")))?
    }
}

/// Like [`run`], returning once the relay serves.
pub async fn start(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Started> {
    let addr: SocketAddr = listener.local_addr()?;
    start_serving(Box::pin(serve::accepted(listener)), addr, config, None, shutdown).await
}

/// Connections to serve, each with the address it counts against.
pub(crate) type Incoming =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = (tokio::net::TcpStream, SocketAddr)> + Send>>;

/// [`start`] over connections from anywhere. `fence`: the cluster epoch this relay leads in (see
/// [`cluster`]); every write checks it is still current.
pub(crate) async fn start_serving(
    incoming: Incoming,
    addr: SocketAddr,
    config: Config,
    fence: Option<i64>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Started> {
    // Every connection the limits allow needs a file descriptor, besides the database's and the
    // blobs' own: raise the soft limit now, or refuse to start and say why.
    let needed = serve::descriptors_needed(config.max_workers, config.max_watchers, &config.limits);
    let fds = serve::raise_fd_limit(needed)?;
    tracing::debug!(fds, needed, "open-file limit");
    std::fs::create_dir_all(&config.data_dir)?;
    let store = match &config.database {
        None => store::Store::open(&config.data_dir.join("relay.sqlite")).await?,
        Some(url) => store::Store::connect(url).await?,
    };
    let location = config.blobs.clone().unwrap_or_else(|| blobs::BlobLocation::Folder(config.data_dir.join("blobs")));
    let blobs = blobs::BlobStore::open(&location, &config.data_dir.join("blob-staging"), config.max_blob_bytes)
        .map_err(|e| Error::Config(format!("blobs at {location}: {e}")))?
        .with_quota(config.blob_quota);
    let unreferenced = blobs
        .adopt_unreferenced(&store.referenced_blobs().await?)
        .await
        .map_err(|e| Error::Config(format!("cannot list the blobs at {location}: {e}")))?;
    tracing::info!(unreferenced, "blobs no job references will expire");
    let escrow: Option<escrow::Escrow> = match &config.escrow {
        EscrowConfig::Off => None,
        EscrowConfig::Embedded(c) => {
            let mut c = c.clone();
            // On PostgreSQL the ledger lives in the relay's database (its own schema), so that
            // whichever relay leads a cluster runs the same ledger.
            if let Some(url) = config.database.as_deref().filter(|_| store.dialect() == store::Dialect::Postgres) {
                c.database = Some(store.ledger_url(url).await?);
                c.fence = fence;
            }
            Some(Arc::new(escrow::embedded::Embedded::open(&config.data_dir, c).await?))
        }
        EscrowConfig::Chain(c) => Some(Arc::new(escrow::chain::Chain::connect(c.clone()).await?)),
    };
    let (standing_tx, mut standing_rx) = tokio::sync::mpsc::unbounded_channel();
    let settler = escrow.clone().map(|e| escrow::settler::spawn(e.clone(), store.clone(), standing_tx));
    let (core, handle, rx) = driver::Driver::recover(
        store.clone(),
        blobs.clone(),
        config.core,
        escrow.clone().zip(settler.as_ref().map(|(tx, _)| tx.clone())),
    )
    .await?;
    let core = core.fenced(fence);
    // A slashed worker's new standing reaches the scheduler: below the minimum bond it takes no
    // more paid work.
    let core_handle = handle.clone();
    tokio::spawn(async move {
        while let Some((key, paid)) = standing_rx.recv().await {
            if core_handle.send(driver::Command::Core(core::Input::PaidStanding { key, paid })).await.is_err() {
                break;
            }
        }
    });
    if let Some(e) = &escrow {
        let info = e.info();
        tracing::info!(backend = %info.backend, contract = %info.contract, relay_account = %info.relay_address, "escrow ready");
    }
    let state = AppState {
        store,
        blobs,
        core: handle,
        core_config: config.core,
        worker_slots: Arc::new(Semaphore::new(config.max_workers)),
        watcher_slots: Arc::new(Semaphore::new(config.max_watchers)),
        escrow,
        admin_token: config.admin_token.as_deref().map(Arc::from),
        relays: Arc::default(),
        history_every_ms: config.history_every.as_millis() as u64,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    blobs::spawn_sweeper(state.blobs.clone(), stop_rx.clone());
    api::spawn_sampler(state.clone(), config.history_every, stop_rx.clone());
    if let Some(e) = &state.escrow {
        standing::spawn(e.clone(), state.core.clone(), config.standing_refresh, stop_rx.clone());
        escrow::spawn_refund_sweep(e.clone(), config.refund_sweep, stop_rx.clone());
    }
    let core_task = core.spawn_on_own_thread(rx, {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    })?;
    tracing::info!(%addr, "relay listening");
    let total = config.max_workers + config.max_watchers + config.limits.http_connections;
    let server = serve::serve_incoming(incoming, app(state.clone(), config.www.clone()), config.limits, total, {
        let mut stop = stop_rx;
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let task = tokio::spawn(async move {
        tokio::select! {
            () = server => {}
            core = core_task => {
                // The core only stops on its own after a store failure: stop serving too.
                core.map_err(|_| Error::Corrupt("core panicked".into()))??;
            }
        }
        Ok(())
    });
    Ok(Started { state, addr, task })
}
