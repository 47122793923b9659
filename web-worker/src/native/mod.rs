//! The native worker: connects to a relay, proves its key, announces capabilities, runs leased
//! tasks on the GPU (or the CPU references with `cpu_only`), reports signed result hashes (small
//! outputs inline, larger ones uploaded first under a signature for their lease), heartbeats, honours a duty cycle, and reconnects with backoff until shut down.

mod blobs;
mod keys;

pub use crate::pacing::rest_after;
pub use keys::load_or_create_key;

use crate::engine;
use crate::escrow;
use crate::gpu::GpuContext;
use futures_util::{SinkExt, StreamExt};
use starling_protocol::api::ClientView;
use starling_protocol::job::KernelSpec;
use starling_protocol::limits::MAX_INLINE_OUTPUT_BYTES;
use starling_protocol::sign::{EscrowDeployment, Keypair, UploadPurpose};
use starling_protocol::upload::UploadAuth;
use starling_protocol::worker::{
    AdapterInfo, Assignment, Backend, Capabilities, DeviceLimits, DeviceState, InlineBytes, Platform, RelayMessage,
    WorkerMessage,
};
use starling_protocol::{LeaseId, PROTOCOL_VERSION, PublicKey, sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

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
    pub tasks_run: u64,
    pub tasks_failed: u64,
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
                (Compute::Cpu, KernelSpec::Wgsl { .. }) => {
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
    let caps = compute.capabilities(&config);
    tracing::info!(worker = %key.public(), backend = ?caps.backend, adapter = %caps.adapter.name, "worker starting");
    let key = Arc::new(key);
    let stats = Arc::new(Mutex::new(WorkerStats::default()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| NativeError::Http(e.to_string()))?;
    let inputs = Arc::new(blobs::InputCache::new(http.clone(), config.relay.clone(), config.cache_bytes));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(250);
    loop {
        let session = Session {
            config: &config,
            key: key.clone(),
            compute: &compute,
            caps: &caps,
            http: &http,
            inputs: &inputs,
            stats: &stats,
        };
        tokio::select! {
            ended = session.run() => {
                match ended {
                    Ok(welcomed) => { if welcomed { backoff = Duration::from_millis(250); } }
                    Err(NativeError::Refused(why)) => tracing::warn!(%why, "relay refused the session"),
                    Err(e) => tracing::info!(error = %e, "session ended"),
                }
            }
            _ = &mut shutdown => break,
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
        tracing::info!(after = ?(backoff + jitter), "reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = &mut shutdown => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    tracing::info!("worker stopped");
    let s = *stats.lock().expect("stats lock");
    Ok(s)
}

struct Session<'a> {
    config: &'a WorkerConfig,
    key: Arc<Keypair>,
    compute: &'a Compute,
    caps: &'a Capabilities,
    http: &'a reqwest::Client,
    inputs: &'a Arc<blobs::InputCache>,
    stats: &'a Arc<Mutex<WorkerStats>>,
}

fn ws_url(relay: &str) -> String {
    let base = relay.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{base}/v1/workers/ws")
}

/// Outcome of running one task, sent from executors to the session loop.
enum Outcome {
    /// A slot freed; report the message if any (none when the relay cancelled the lease).
    Done(Option<WorkerMessage>),
}

impl Session<'_> {
    /// One connection's life. Ok(true) when the relay welcomed us (resets the backoff).
    async fn run(self) -> Result<bool, NativeError> {
        // No Nagle: results and heartbeats are small frames that should leave at once.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(ws_url(&self.config.relay), None, true)
            .await
            .map_err(|e| NativeError::Connection(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let send =
            |m: &WorkerMessage| Message::Text(serde_json::to_string(m).expect("worker messages serialize").into());
        let conn = |e: tokio_tungstenite::tungstenite::Error| NativeError::Connection(e.to_string());

        sink.send(send(&WorkerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_key: self.key.public(),
            capabilities: self.caps.clone(),
        }))
        .await
        .map_err(conn)?;
        let nonce = match next_relay_message(&mut stream).await? {
            RelayMessage::Challenge { nonce } => nonce,
            RelayMessage::Error(e) => return Err(NativeError::Refused(format!("{:?}: {}", e.code, e.message))),
            other => return Err(NativeError::Connection(format!("expected challenge, got {other:?}"))),
        };
        sink.send(send(&WorkerMessage::Auth { signature: self.key.sign_auth(&nonce) })).await.map_err(conn)?;
        let (heartbeat_ms, deployment) = match next_relay_message(&mut stream).await? {
            RelayMessage::Welcome { heartbeat_ms, escrow, .. } => (heartbeat_ms, escrow),
            RelayMessage::Error(e) => return Err(NativeError::Refused(format!("{:?}: {}", e.code, e.message))),
            other => return Err(NativeError::Connection(format!("expected welcome, got {other:?}"))),
        };
        let pinned = |want: &Option<String>, got: fn(&EscrowDeployment) -> &String| {
            want.as_ref().is_none_or(|want| deployment.as_ref().is_some_and(|d| got(d) == want))
        };
        if !pinned(&self.config.expect_contract, |d| &d.contract)
            || !pinned(&self.config.expect_chain_id, |d| &d.chain_id)
        {
            return Err(NativeError::Refused(format!(
                "the relay settles through {deployment:?}, not the expected chain {:?} and contract {:?}",
                self.config.expect_chain_id, self.config.expect_contract
            )));
        }
        tracing::info!(relay = %self.config.relay, escrow = ?deployment, "connected");
        self.stats.lock().expect("stats lock").sessions += 1;

        let slots = self.config.slots.max(1) as usize;
        let (assign_tx, assign_rx) = mpsc::channel::<Assignment>(slots * 4);
        let assign_rx = Arc::new(tokio::sync::Mutex::new(assign_rx));
        let (outcome_tx, mut outcome_rx) = mpsc::channel::<Outcome>(slots * 4);
        let cancelled = Arc::new(Mutex::new(HashSet::<LeaseId>::new()));
        let (resting_tx, mut resting_rx) = watch::channel(0usize);
        let resting_tx = Arc::new(resting_tx);
        let mut executors = Vec::new();
        let copied = Arc::new(Mutex::new(None));
        for _ in 0..slots {
            let ex = Executor {
                config: self.config.clone(),
                key: self.key.clone(),
                deployment: deployment.clone(),
                compute: self.compute.clone(),
                http: self.http.clone(),
                inputs: self.inputs.clone(),
                stats: self.stats.clone(),
                cancelled: cancelled.clone(),
                resting: resting_tx.clone(),
                copied: copied.clone(),
            };
            executors.push(tokio::spawn(ex.run(assign_rx.clone(), outcome_tx.clone())));
        }
        drop(outcome_tx);

        let mut heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms.clamp(100, 60_000)));
        let mut in_flight = 0usize;
        let state = |in_flight: usize, resting: usize| DeviceState {
            accepting: in_flight < slots && resting == 0,
            battery: None,
            charging: None,
        };
        let result = loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let msg = WorkerMessage::Heartbeat { state: state(in_flight, *resting_rx.borrow()) };
                    if let Err(e) = sink.send(send(&msg)).await { break Err(conn(e)); }
                }
                changed = resting_rx.changed() => {
                    if changed.is_ok() {
                        let msg = WorkerMessage::Heartbeat { state: state(in_flight, *resting_rx.borrow()) };
                        if let Err(e) = sink.send(send(&msg)).await { break Err(conn(e)); }
                    }
                }
                msg = next_relay_message(&mut stream) => match msg {
                    Ok(RelayMessage::Assign(a)) if escrow::check_assignment(deployment.as_ref(), &a).is_err() => {
                        let reason = escrow::check_assignment(deployment.as_ref(), &a).expect_err("checked").to_string();
                        tracing::warn!(lease = %a.lease, %reason, "refused an assignment");
                        let msg = WorkerMessage::Failed { lease: a.lease, task: a.task, reason };
                        if let Err(e) = sink.send(send(&msg)).await { break Err(conn(e)); }
                    }
                    Ok(RelayMessage::Assign(a)) => {
                        in_flight += 1;
                        tracing::debug!(lease = %a.lease, task = %a.task, kernel = %a.kernel.display_name(), "assigned");
                        if assign_tx.try_send(a).is_err() {
                            break Err(NativeError::Connection("relay sent more work than we have room for".into()));
                        }
                    }
                    Ok(RelayMessage::Cancel { lease }) => { cancelled.lock().expect("cancel lock").insert(lease); }
                    Ok(RelayMessage::Ack { .. }) => {}
                    Ok(RelayMessage::Register { escrow: asked, nonce, bond }) => {
                        // Only registered keys are paid: bond this key under its owner account.
                        let owner = self.config.owner_seed.map(Keypair::from_seed);
                        let owner = owner.as_ref().unwrap_or(&self.key);
                        // The relay told us the worker key's own nonce; another owner's we read.
                        let nonce = if owner.public() == self.key.public() {
                            nonce
                        } else {
                            match self.account_nonce(&owner.public()).await {
                                Ok(nonce) => nonce,
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot read the owner's account nonce; not registering");
                                    continue;
                                }
                            }
                        };
                        match escrow::register(&self.key, owner, deployment.as_ref(), &asked, nonce, bond, self.config.max_bond) {
                            Ok(msg) => {
                                tracing::info!(contract = %asked.contract, owner = %owner.public(), bond, "registering with the relay's escrow");
                                if let Err(e) = sink.send(send(&msg)).await { break Err(conn(e)); }
                            }
                            Err(why) => tracing::warn!(%why, "refused to register; this worker takes only unpaid work"),
                        }
                    }
                    Ok(RelayMessage::Error(e)) => tracing::warn!(code = ?e.code, message = %e.message, "relay reported an error"),
                    Ok(other) => tracing::warn!(?other, "unexpected relay message"),
                    Err(e) => break Err(e),
                },
                outcome = outcome_rx.recv() => match outcome {
                    Some(Outcome::Done(msg)) => {
                        in_flight = in_flight.saturating_sub(1);
                        if let Some(msg) = msg
                            && let Err(e) = sink.send(send(&msg)).await
                        {
                            break Err(conn(e));
                        }
                        let msg = WorkerMessage::Heartbeat { state: state(in_flight, *resting_rx.borrow()) };
                        if let Err(e) = sink.send(send(&msg)).await { break Err(conn(e)); }
                    }
                    None => break Err(NativeError::Connection("executors stopped".into())),
                },
            }
        };
        for ex in executors {
            ex.abort();
        }
        let _ = sink.close().await;
        result.map(|()| true).or_else(|e| match e {
            NativeError::Connection(_) => Ok(true),
            other => Err(other),
        })
    }
}

impl Session<'_> {
    /// An escrow account's current nonce, from the relay (`GET /v1/clients/{key}`).
    async fn account_nonce(&self, account: &PublicKey) -> Result<u64, NativeError> {
        let url = format!("{}/v1/clients/{account}", self.config.relay.trim_end_matches('/'));
        let resp = self.http.get(url).send().await.map_err(|e| NativeError::Http(e.to_string()))?;
        let http = |e: reqwest::Error| NativeError::Http(e.to_string());
        let view: ClientView = resp.error_for_status().map_err(http)?.json().await.map_err(http)?;
        view.escrow.map(|a| a.nonce).ok_or_else(|| NativeError::Http("the relay has no escrow".into()))
    }
}

async fn next_relay_message<S>(stream: &mut S) -> Result<RelayMessage, NativeError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| NativeError::Connection(format!("bad relay message: {e}")));
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(NativeError::Connection(format!("relay closed the connection: {frame:?}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(NativeError::Connection(e.to_string())),
            None => return Err(NativeError::Connection("relay closed the connection".into())),
        }
    }
}

struct Executor {
    config: WorkerConfig,
    key: Arc<Keypair>,
    /// The escrow the relay's `welcome` named: results are signed for it.
    deployment: Option<EscrowDeployment>,
    compute: Compute,
    http: reqwest::Client,
    inputs: Arc<blobs::InputCache>,
    stats: Arc<Mutex<WorkerStats>>,
    cancelled: Arc<Mutex<HashSet<LeaseId>>>,
    resting: Arc<watch::Sender<usize>>,
    /// The last output computed (`copy_results` only).
    copied: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Executor {
    async fn run(self, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Assignment>>>, out: mpsc::Sender<Outcome>) {
        loop {
            let Some(a) = rx.lock().await.recv().await else { return };
            let started = Instant::now();
            let msg = self.execute(&a).await;
            let busy = started.elapsed();
            let cancelled = self.cancelled.lock().expect("cancel lock").remove(&a.lease);
            let msg = match msg {
                _ if cancelled => None,
                Ok(msg) => Some(msg),
                Err(reason) => {
                    self.stats.lock().expect("stats lock").tasks_failed += 1;
                    tracing::warn!(lease = %a.lease, task = %a.task, %reason, "task failed");
                    Some(WorkerMessage::Failed { lease: a.lease, task: a.task, reason })
                }
            };
            let rest = rest_after(busy, self.config.duty_cycle);
            if !rest.is_zero() {
                self.resting.send_modify(|n| *n += 1);
            }
            if out.send(Outcome::Done(msg)).await.is_err() {
                return;
            }
            if !rest.is_zero() {
                tokio::time::sleep(rest).await;
                self.resting.send_modify(|n| *n -= 1);
            }
        }
    }

    async fn execute(&self, a: &Assignment) -> Result<WorkerMessage, String> {
        if self.config.stall_tasks {
            std::future::pending::<()>().await;
        }
        let mut inputs = Vec::with_capacity(a.inputs.len());
        for h in &a.inputs {
            inputs.push(self.inputs.get(h).await.map_err(|e| format!("input {h}: {e}"))?);
        }
        let earlier = if self.config.copy_results {
            self.copied.lock().expect("copy lock").clone().filter(|o| o.len() == a.output_size as usize)
        } else {
            None
        };
        let mut output = match earlier {
            Some(copy) => copy,
            None => self.compute.run(a, inputs).await?,
        };
        if self.config.copy_results {
            *self.copied.lock().expect("copy lock") = Some(output.clone());
        }
        if self.config.corrupt_results
            && let Some(b) = output.first_mut()
        {
            *b ^= 1;
        }
        if self.config.perturb_floats
            && let Some(first) = output.get_mut(..4)
        {
            let v = f32::from_le_bytes(first.try_into().expect("four bytes"));
            first.copy_from_slice(&f32::from_bits(v.to_bits().wrapping_add(1)).to_le_bytes());
        }
        let output_hash = sha256(&output);
        let output_len = output.len() as u64;
        // Small outputs travel inside the result; larger ones are uploaded first, signed for
        // this lease.
        let inline = if output.len() <= MAX_INLINE_OUTPUT_BYTES {
            Some(InlineBytes(output))
        } else {
            let auth = UploadAuth::sign(&self.key, UploadPurpose::Output { lease: a.lease }, &output_hash, output_len);
            blobs::upload(&self.http, &self.config.relay, &auth, &output_hash, output)
                .await
                .map_err(|e| format!("upload: {e}"))?;
            None
        };
        self.stats.lock().expect("stats lock").tasks_run += 1;
        Ok(WorkerMessage::Result {
            lease: a.lease,
            task: a.task,
            output_hash,
            output_len,
            signature: escrow::sign_result(&self.key, self.deployment.as_ref(), a, &output_hash, output_len),
            output: inline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_map_to_websocket_urls() {
        assert_eq!(ws_url("http://127.0.0.1:7070/"), "ws://127.0.0.1:7070/v1/workers/ws");
        assert_eq!(ws_url("https://relay.example"), "wss://relay.example/v1/workers/ws");
    }
}
