//! The native worker: a thin tokio driver of the worker [`Machine`] (the same one the browser
//! runs). The machine decides everything (handshake, which assignments to take, decline or fail,
//! heartbeats, the duty cycle, cancels, backoff, registration); this module carries out its
//! actions with a WebSocket, HTTP and the engine, and feeds back what happened:
//!
//! - each connection is one task that forwards text frames (bounded by the protocol's frame
//!   limit) and writes what the machine sends;
//! - each leased task runs in its own task, on the GPU (or the CPU references with `cpu_only`),
//!   inputs fetched through one byte-bounded cache, outputs too large to travel inline uploaded
//!   under a signature for their lease; a cancel aborts it at once (a dispatch already on the GPU
//!   finishes and is dropped);
//! - time is tokio's clock, so tests can pause it.

mod blobs;
mod keys;

pub use crate::pacing::rest_after;
pub use keys::load_or_create_key;

use crate::engine;
use crate::escrow;
use crate::gpu::GpuContext;
use crate::machine::{Action, ConnId, LeaseUpload, Machine, Options, RelayUrls, TaskFailure, TaskOutput};
use crate::pacing::Settings;
use futures_util::{SinkExt, StreamExt};
use starling_protocol::api::ClientView;
use starling_protocol::job::KernelSpec;
use starling_protocol::limits::{MAX_INLINE_OUTPUT_BYTES, MAX_WS_FRAME_BYTES};
use starling_protocol::page::{LogLevel, WorkerEvent};
use starling_protocol::sign::{EscrowDeployment, Keypair};
use starling_protocol::worker::{AdapterInfo, Assignment, Backend, Capabilities, DeviceLimits, Platform};
use starling_protocol::{LeaseId, PublicKey, sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Why a worker stopped or a session ended.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("key file: {0}")]
    Key(String),
    #[error("connection: {0}")]
    Connection(String),
    #[error("relay refused us: {0}")]
    Refused(String),
    #[error("http: {0}")]
    Http(String),
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Relay base URL, e.g. `http://127.0.0.1:7070`.
    pub relay: String,
    /// Lowest price per replica accepted.
    pub asking_price: u64,
    /// Largest fraction of wall time spent computing, in (0, 1].
    pub duty_cycle: f32,
    /// Tasks run at once.
    pub slots: u32,
    /// Run built-in kernels on the CPU and announce no GPU.
    pub cpu_only: bool,
    /// FOR TESTING VERIFICATION ONLY: flip a bit in every output before signing it, as a
    /// cheating worker would. The relay must never accept such a result.
    pub corrupt_results: bool,
    /// FOR TESTING VERIFICATION ONLY: sign the output of an earlier task again instead of
    /// computing (a copier: before a task is decided nothing of it is public to copy). The
    /// first task is computed, to have something to copy.
    pub copy_results: bool,
    /// FOR TESTING LEASES ONLY: accept tasks and never finish them, like a hung device.
    pub stall_tasks: bool,
    /// FOR TESTING TOLERANCE ONLY: move the first f32 of every output up by one ulp, as another
    /// GPU's rounding might. A tolerance job must accept (and pay) such a result; an exact job
    /// must not.
    pub perturb_floats: bool,
    /// FOR TESTING VERIFICATION ONLY: flip a bit in the first output of this built-in (one wrong
    /// gradient, say) and compute everything else honestly.
    pub corrupt_one: Option<starling_protocol::job::BuiltinKernel>,
    /// Cap on the in-memory input cache.
    pub cache_bytes: u64,
    /// The escrow account (its seed) that bonds this worker and is paid for its verified work,
    /// when the relay settles through escrow. `None`: the worker key owns itself.
    pub owner_seed: Option<[u8; 32]>,
    /// The largest bond this worker's owner signs for; a relay asking more is refused.
    pub max_bond: u64,
    /// Refuse a relay whose escrow is not this deployment (the worker's own choice, so a relay
    /// cannot have it sign for another one it is registered in). Embedded ledgers share one
    /// contract address: pin the chain id too.
    pub expect_contract: Option<String>,
    pub expect_chain_id: Option<String>,
}

impl WorkerConfig {
    pub fn new(relay: impl Into<String>) -> Self {
        Self {
            relay: relay.into(),
            asking_price: 0,
            duty_cycle: 1.0,
            slots: 1,
            cpu_only: false,
            corrupt_results: false,
            copy_results: false,
            stall_tasks: false,
            perturb_floats: false,
            corrupt_one: None,
            cache_bytes: 256 << 20,
            owner_seed: None,
            max_bond: escrow::DEFAULT_MAX_BOND,
            expect_contract: None,
            expect_chain_id: None,
        }
    }
}

/// Counters a worker reports when it stops (and that tests read).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Signed results sent.
    pub tasks_run: u64,
    /// Tasks that failed here or were refused as beyond this worker.
    pub tasks_failed: u64,
    /// Connections the relay welcomed.
    pub sessions: u64,
}

/// What runs a task: a GPU context or the CPU references.
#[derive(Debug, Clone)]
pub enum Compute {
    Gpu(Arc<GpuContext>),
    Cpu,
}

impl Compute {
    /// Opens the GPU unless `cpu_only`; falls back to the CPU when no adapter works.
    pub async fn open(cpu_only: bool) -> Compute {
        if cpu_only {
            return Compute::Cpu;
        }
        match GpuContext::new().await {
            Ok(ctx) => Compute::Gpu(Arc::new(ctx)),
            Err(e) => {
                tracing::warn!(error = %e, "no usable GPU; running built-in kernels on the CPU");
                Compute::Cpu
            }
        }
    }

    pub fn capabilities(&self, config: &WorkerConfig) -> Capabilities {
        match self {
            Compute::Gpu(ctx) => ctx.capabilities(config.asking_price, config.duty_cycle, config.slots),
            Compute::Cpu => Capabilities {
                backend: Backend::Cpu,
                platform: Platform::Native,
                adapter: AdapterInfo { name: "cpu".into(), device_type: "cpu".into(), ..Default::default() },
                limits: DeviceLimits {
                    max_buffer_size: 1 << 30,
                    max_storage_buffer_binding_size: 1 << 30,
                    max_storage_buffers_per_shader_stage: 8,
                    max_compute_workgroups_per_dimension: 65_535,
                },
                asking_price: config.asking_price,
                duty_cycle: config.duty_cycle,
                slots: config.slots,
            },
        }
    }

    async fn run(&self, a: &Assignment, inputs: Vec<Arc<Vec<u8>>>) -> Result<Vec<u8>, String> {
        let (kernel, params, wg, out) = (a.kernel.clone(), a.params.clone(), a.workgroups, a.output_size);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let views: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
            match (&this, &kernel) {
                (Compute::Gpu(ctx), _) => pollster::block_on(engine::run_task(ctx, &kernel, &params, &views, wg, out)),
                (Compute::Cpu, KernelSpec::Builtin { name }) => engine::run_task_cpu(*name, &params, &views, wg, out),
                (Compute::Cpu, KernelSpec::Wgsl { .. } | KernelSpec::Pipeline { .. }) => {
                    Err(crate::Error::Kernel("this worker has no GPU for custom WGSL".into()))
                }
            }
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("task panicked: {e}"))?
    }
}

/// Runs the worker until `shutdown` resolves, reconnecting with exponential backoff.
pub async fn run(
    config: WorkerConfig,
    key: Keypair,
    compute: Compute,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<WorkerStats, NativeError> {
    RelayUrls::from_origins(&config.relay).map_err(NativeError::Connection)?;
    // Native workers have no page to hide and no battery reading: only the duty cycle paces them.
    let settings = Settings { duty_cycle: config.duty_cycle, pause_when_hidden: false, min_battery: 0.0 };
    settings.check().map_err(NativeError::Connection)?;
    let caps = compute.capabilities(&config);
    tracing::info!(worker = %key.public(), backend = ?caps.backend, adapter = %caps.adapter.name, "worker starting");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| NativeError::Http(e.to_string()))?;
    let options = Options {
        slots: config.slots,
        owner: config.owner_seed.map(Keypair::from_seed),
        max_bond: config.max_bond,
        expect_contract: config.expect_contract.clone(),
        expect_chain_id: config.expect_chain_id.clone(),
    };
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let mut driver = Driver {
        machine: Machine::with_options(rand::random(), options),
        clock: Instant::now(),
        caps,
        events_tx,
        events,
        sockets: HashMap::new(),
        tasks: HashMap::new(),
        runner: Arc::new(Runner {
            inputs: blobs::InputCache::new(http.clone(), config.cache_bytes),
            config,
            compute,
            http,
            copied: Mutex::new(None),
            corrupted_one: std::sync::atomic::AtomicBool::new(false),
            key,
        }),
    };
    let now = driver.now_ms();
    let worker = driver.runner.key.public();
    driver.machine.start(&driver.runner.config.relay, Ok(worker), settings, now);
    tokio::pin!(shutdown);
    loop {
        driver.carry_out_actions();
        let deadline = driver.machine.next_deadline().map(|ms| driver.clock + Duration::from_millis(ms));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sleep_until(deadline) => {
                let now = driver.now_ms();
                driver.machine.tick(now);
            }
            event = driver.events.recv() => {
                let event = event.expect("the driver holds a sender");
                driver.handle(event);
            }
        }
    }
    let now = driver.now_ms();
    driver.machine.stop(now);
    driver.carry_out_actions();
    tracing::info!("worker stopped");
    let counters = driver.machine.counters();
    Ok(WorkerStats {
        tasks_run: counters.results_sent,
        tasks_failed: counters.tasks_failed,
        sessions: counters.sessions,
    })
}

/// Events from sockets and tasks waiting for the driver; a socket that outpaces it waits.
const EVENT_QUEUE: usize = 256;
/// How long a closing socket may take to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened, reported to the driver loop by the tasks it spawned.
enum Event {
    Opened(ConnId),
    Text(ConnId, String),
    Closed(ConnId, String),
    Finished(LeaseId, Result<TaskOutput, TaskFailure>),
    Nonce { conn: ConnId, asked: EscrowDeployment, bond: u64, nonce: Result<u64, String> },
}

struct Driver {
    machine: Machine,
    /// The machine's time zero.
    clock: Instant,
    caps: Capabilities,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    /// Frames to write on each open connection; dropping the sender closes it.
    sockets: HashMap<ConnId, mpsc::UnboundedSender<String>>,
    tasks: HashMap<LeaseId, AbortHandle>,
    runner: Arc<Runner>,
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn handle(&mut self, event: Event) {
        let now = self.now_ms();
        match event {
            Event::Opened(conn) => self.machine.socket_opened(conn, now),
            Event::Text(conn, text) => self.machine.socket_text(conn, &text, now),
            Event::Closed(conn, why) => {
                self.sockets.remove(&conn);
                self.machine.socket_closed(conn, &why, now);
            }
            Event::Finished(lease, outcome) => {
                self.tasks.remove(&lease);
                self.machine.task_finished(lease, outcome, now);
            }
            Event::Nonce { conn, asked, bond, nonce } => self.machine.nonce_read(conn, asked, bond, nonce, now),
        }
    }

    /// Carries out the machine's actions, including those that carrying out produced.
    fn carry_out_actions(&mut self) {
        loop {
            let actions = self.machine.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                self.carry_out(action);
            }
        }
    }

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::OpenCompute => {
                // Opened before the machine started; a lost device is not told apart natively.
                let now = self.now_ms();
                self.machine.compute_ready(self.caps.clone(), now);
            }
            Action::Connect { conn, url } => {
                let (frames, outgoing) = mpsc::unbounded_channel();
                self.sockets.insert(conn, frames);
                tokio::spawn(socket(conn, url, outgoing, self.events_tx.clone()));
            }
            Action::Send { conn, text } => {
                if let Some(frames) = self.sockets.get(&conn) {
                    let _ = frames.send(text);
                }
            }
            Action::SignAndSend { conn, message } => {
                if let Some(frames) = self.sockets.get(&conn) {
                    let _ = frames.send(message.sign_with(&self.runner.key));
                }
            }
            Action::Close { conn } => {
                self.sockets.remove(&conn);
            }
            Action::RunTask { assignment, relay, upload } => {
                let lease = assignment.lease;
                let kernel = assignment.kernel.display_name();
                tracing::debug!(%lease, task = %assignment.task, %kernel, "assigned");
                let (runner, events) = (self.runner.clone(), self.events_tx.clone());
                let task = tokio::spawn(async move {
                    let outcome = runner.execute(&assignment, &relay, &upload).await;
                    if let Err(failure) = &outcome {
                        tracing::warn!(%lease, task = %assignment.task, reason = %failure.reason, "task failed");
                    }
                    let _ = events.send(Event::Finished(lease, outcome)).await;
                });
                self.tasks.insert(lease, task.abort_handle());
            }
            Action::AbortTask { lease } => {
                if let Some(task) = self.tasks.remove(&lease) {
                    task.abort();
                }
            }
            Action::ReadNonce { conn, relay, account, asked, bond } => {
                let (runner, events) = (self.runner.clone(), self.events_tx.clone());
                tokio::spawn(async move {
                    let nonce = runner.account_nonce(&relay, &account).await.map_err(|e| e.to_string());
                    let _ = events.send(Event::Nonce { conn, asked, bond, nonce }).await;
                });
            }
            Action::Post(WorkerEvent::Log { level, message }) => match level {
                LogLevel::Error => tracing::error!("{message}"),
                LogLevel::Warn => tracing::warn!("{message}"),
                LogLevel::Info => tracing::info!("{message}"),
                LogLevel::Debug => tracing::debug!("{message}"),
            },
            Action::Post(WorkerEvent::Status(status)) => {
                tracing::debug!(state = status.state.as_str(), reason = ?status.reason, "worker status");
            }
            Action::Post(WorkerEvent::Key { .. }) => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One WebSocket: reports it open, forwards its text frames and its end, and writes the frames
/// the machine sends until the driver drops `outgoing`'s sender.
async fn socket(conn: ConnId, url: String, mut outgoing: mpsc::UnboundedReceiver<String>, events: mpsc::Sender<Event>) {
    let limits =
        WebSocketConfig::default().max_message_size(Some(MAX_WS_FRAME_BYTES)).max_frame_size(Some(MAX_WS_FRAME_BYTES));
    // No Nagle: results and heartbeats are small frames that should leave at once.
    let ws = match tokio_tungstenite::connect_async_with_config(url, Some(limits), true).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = events.send(Event::Closed(conn, e.to_string())).await;
            return;
        }
    };
    if events.send(Event::Opened(conn)).await.is_err() {
        return;
    }
    let (mut sink, mut stream) = ws.split();
    let why = loop {
        tokio::select! {
            frame = outgoing.recv() => match frame {
                Some(text) => {
                    if let Err(e) = sink.send(Message::Text(text.into())).await {
                        break e.to_string();
                    }
                }
                None => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                    return;
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if events.send(Event::Text(conn, text.as_str().to_owned())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => break format!("the relay closed the connection: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => break e.to_string(),
                None => break "the relay closed the connection".to_string(),
            },
        }
    };
    let _ = events.send(Event::Closed(conn, why)).await;
}

/// What runs tasks, shared by every task of the worker's life.
struct Runner {
    config: WorkerConfig,
    compute: Compute,
    http: reqwest::Client,
    inputs: blobs::InputCache,
    /// The last output computed (`copy_results` only).
    copied: Mutex<Option<Vec<u8>>>,
    /// `corrupt_one` has been played.
    corrupted_one: std::sync::atomic::AtomicBool,
    /// The worker key: natively in memory (read from its key file).
    key: Keypair,
}

impl Runner {
    /// Fetches the inputs, runs the kernel (or plays one of the testing cheats), and uploads an
    /// output too large to travel inline.
    /// Runs an assignment from `relay`: its inputs come from there and its output goes there.
    async fn execute(
        &self,
        a: &Assignment,
        relay: &RelayUrls,
        upload: &LeaseUpload,
    ) -> Result<TaskOutput, TaskFailure> {
        let failed = |reason: String| TaskFailure { reason, device_lost: false, declined: false };
        if self.config.stall_tasks {
            std::future::pending::<()>().await;
        }
        let mut inputs = Vec::with_capacity(a.inputs.len());
        for h in &a.inputs {
            inputs.push(self.inputs.get(relay, h).await.map_err(|e| failed(format!("input {h}: {e}")))?);
        }
        let earlier = if self.config.copy_results {
            self.copied.lock().expect("copy lock").clone().filter(|o| o.len() == a.output_size as usize)
        } else {
            None
        };
        let mut output = match earlier {
            Some(copy) => copy,
            None => self.compute.run(a, inputs).await.map_err(failed)?,
        };
        if self.config.copy_results {
            *self.copied.lock().expect("copy lock") = Some(output.clone());
        }
        if self.config.corrupt_results
            && let Some(b) = output.first_mut()
        {
            *b ^= 1;
        }
        if let (Some(target), starling_protocol::job::KernelSpec::Builtin { name }) =
            (self.config.corrupt_one, &a.kernel)
            && target == *name
            && !self.corrupted_one.swap(true, std::sync::atomic::Ordering::SeqCst)
            && let Some(b) = output.first_mut()
        {
            tracing::warn!(task = %a.task, "corrupting this output (testing)");
            *b ^= 1;
        }
        if self.config.perturb_floats
            && let Some(first) = output.get_mut(..4)
        {
            let v = f32::from_le_bytes(first.try_into().expect("four bytes"));
            first.copy_from_slice(&f32::from_bits(v.to_bits().wrapping_add(1)).to_le_bytes());
        }
        if output.len() <= MAX_INLINE_OUTPUT_BYTES {
            return Ok(TaskOutput::inline(output));
        }
        let (output_hash, output_len) = (sha256(&output), output.len() as u64);
        let auth = upload.sign_with(&self.key, &output_hash, output_len);
        blobs::upload(&self.http, &relay.http, &auth, &output_hash, output)
            .await
            .map_err(|e| failed(format!("upload: {e}")))?;
        Ok(TaskOutput { output_hash, output_len, inline: None })
    }

    /// An escrow account's current nonce, from the relay (`GET /v1/clients/{key}`).
    async fn account_nonce(&self, relay: &RelayUrls, account: &PublicKey) -> Result<u64, NativeError> {
        let url = format!("{}/v1/clients/{account}", relay.http);
        let resp = self.http.get(url).send().await.map_err(|e| NativeError::Http(e.to_string()))?;
        let http = |e: reqwest::Error| NativeError::Http(e.to_string());
        let view: ClientView = resp.error_for_status().map_err(http)?.json().await.map_err(http)?;
        view.escrow.map(|a| a.nonce).ok_or_else(|| NativeError::Http("the relay has no escrow".into()))
    }
}

#[cfg(test)]
mod tests;
