//! The relay core: the one task that changes relay state. Connections and HTTP handlers send it
//! [`Command`]s; it applies a batch of them inside one database transaction (group commit),
//! runs the scheduler and verifier, commits, and only then sends assignments, acknowledgements
//! and events. A crash at any point leaves the database at the last commit, from which
//! [`Core::recover`] rebuilds the in-memory state.

use crate::blobs::BlobStore;
use crate::error::{Error, Result};
use crate::escrow::settler::{SettleNote, SettleSender};
use crate::escrow::{Escrow, EscrowError, plan};
use crate::leases::HeldLease;
use crate::scheduler::{JobRequirements, Lease, Scheduler, TaskNeeds};
use crate::store::{ReturnedReplica, Store};
use crate::verifier::{self, Decision, Returned, Rule};
use sqlx::SqliteConnection;
use starling_protocol::events::{JobEvent, JobState, JobSummary, ReplicaState};
use starling_protocol::job::{Comparison, JobSpec};
use starling_protocol::sign::SignedJob;
use starling_protocol::worker::{Assignment, Capabilities, DeviceState, RelayMessage};
use starling_protocol::{ErrorBody, ErrorCode, Hash32, JobId, LeaseId, PublicKey, Signature, TaskId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Requests to the core.
#[derive(Debug)]
pub enum Command {
    WorkerOnline {
        key: PublicKey,
        conn: u64,
        caps: Capabilities,
        /// Registered and bonded in escrow: may take paid jobs.
        paid: bool,
        tx: mpsc::Sender<RelayMessage>,
    },
    /// A worker's escrow standing changed: whether it may take paid jobs.
    PaidStanding {
        key: PublicKey,
        paid: bool,
    },
    WorkerOffline {
        key: PublicKey,
        conn: u64,
    },
    Heartbeat {
        key: PublicKey,
        state: DeviceState,
    },
    /// The signature was already checked by the connection.
    Result {
        key: PublicKey,
        lease: LeaseId,
        task: TaskId,
        output_hash: Hash32,
        output_len: u64,
        signature: Signature,
    },
    Failed {
        key: PublicKey,
        lease: LeaseId,
        task: TaskId,
        reason: String,
    },
    Decline {
        key: PublicKey,
        lease: LeaseId,
        task: TaskId,
        reason: String,
    },
    CreateJob {
        job: SignedJob,
        req: JobRequirements,
        reply: oneshot::Sender<Result<JobSummary>>,
    },
}

/// A job event with the job it belongs to.
#[derive(Debug, Clone)]
pub struct JobEventFrame {
    pub job: JobId,
    pub event: JobEvent,
}

/// What the API reads without asking the core.
#[derive(Debug, Default)]
pub struct Shared {
    pub online: RwLock<HashSet<PublicKey>>,
    /// Leases held now: who may store which output (blob uploads and inline outputs check it).
    pub leases: crate::leases::LeaseBook,
    /// One event channel per watched job, so a watcher wakes only for its own job's events.
    watchers: std::sync::Mutex<HashMap<JobId, broadcast::Sender<Arc<JobEvent>>>>,
}

/// Events buffered per watcher before it counts as lagging.
const WATCHER_BUFFER: usize = 256;
/// Job ids found taken in escrow, one after another, before a submission is refused.
const MAX_ESCROW_ID_SKIPS: u32 = 64;

impl Shared {
    /// Starts receiving a job's events.
    pub fn watch(&self, job: JobId) -> broadcast::Receiver<Arc<JobEvent>> {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        watchers.entry(job).or_insert_with(|| broadcast::channel(WATCHER_BUFFER).0).subscribe()
    }

    /// Called by a watcher after dropping its receiver: forget channels nobody listens to.
    pub fn unwatch(&self, job: JobId) {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        if watchers.get(&job).is_some_and(|tx| tx.receiver_count() == 0) {
            watchers.remove(&job);
        }
    }

    fn publish(&self, frame: JobEventFrame) {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        let last = matches!(frame.event, JobEvent::JobDone { .. } | JobEvent::JobFailed { .. });
        if let Some(tx) = watchers.get(&frame.job) {
            let _ = tx.send(Arc::new(frame.event));
        }
        if last {
            watchers.remove(&frame.job);
        }
    }
}

/// Handle for sending commands.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
    pub shared: Arc<Shared>,
}

impl CoreHandle {
    pub async fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).await.map_err(|_| Error::ShuttingDown)
    }

    pub async fn create_job(&self, job: SignedJob, req: JobRequirements) -> Result<JobSummary> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::CreateJob { job, req, reply }).await?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }
}

#[derive(Debug)]
struct JobTrack {
    spec: Arc<JobSpec>,
    summary: JobSummary,
    deadline_ms: u64,
}

#[derive(Debug, Default)]
struct TaskTrack {
    returned: Vec<ReturnedReplica>,
    lapses: u32,
}

/// Effects to perform after the batch commits.
#[derive(Debug, Default)]
struct Outbox {
    /// Worker record changes (returned, accepted, rejected), written once per worker per batch.
    worker_counts: HashMap<PublicKey, [i64; 3]>,
    messages: Vec<(PublicKey, RelayMessage)>,
    events: Vec<JobEventFrame>,
    replies: Vec<(oneshot::Sender<Result<JobSummary>>, JobSummary)>,
}

/// Core settings.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    pub scheduler: crate::scheduler::Config,
    pub tick: Duration,
    /// Commands applied per transaction at most.
    pub max_batch: usize,
    /// Jobs running at once, over all clients.
    pub max_running_jobs: usize,
    /// Jobs running at once for one client key.
    pub max_running_jobs_per_client: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            scheduler: Default::default(),
            tick: Duration::from_millis(500),
            max_batch: 1024,
            max_running_jobs: 10_000,
            max_running_jobs_per_client: 64,
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub struct Core {
    store: Store,
    blobs: BlobStore,
    sched: Scheduler,
    config: CoreConfig,
    workers: HashMap<PublicKey, (u64, mpsc::Sender<RelayMessage>)>,
    jobs: HashMap<JobId, JobTrack>,
    tasks: HashMap<TaskId, TaskTrack>,
    shared: Arc<Shared>,
    started: tokio::time::Instant,
    /// Where paid jobs lock their deposit; `None` runs every job unpaid.
    escrow: Option<Escrow>,
    /// Told about verified tasks and finished jobs after each commit.
    settle: Option<SettleSender>,
    /// Ids are never reused, neither in the store nor in escrow.
    next_job_id: u64,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("jobs", &self.jobs.len()).field("workers", &self.workers.len()).finish()
    }
}

/// Job requirements from a spec and the sizes of its input blobs.
pub fn requirements(spec: &JobSpec, input_sizes: &HashMap<Hash32, u64>) -> JobRequirements {
    let max_input =
        spec.tasks.iter().flat_map(|t| &t.inputs).filter_map(|h| input_sizes.get(h)).copied().max().unwrap_or(0);
    let max_output = spec.tasks.iter().map(|t| u64::from(t.output_size)).max().unwrap_or(0);
    JobRequirements {
        price_per_replica: spec.price_per_replica,
        needs_gpu: spec.kernel.needs_gpu(),
        homogeneous: spec.homogeneous,
        max_binding_bytes: max_input.max(max_output),
        storage_buffers: spec.tasks.iter().map(|t| t.inputs.len() as u32 + 1).max().unwrap_or(1),
        max_workgroups: spec.tasks.iter().flat_map(|t| t.workgroups).max().unwrap_or(1),
        // Set by the core, which knows whether an escrow is configured.
        paid: false,
    }
}

/// Sizes of a spec's input blobs, each read once; the first missing blob is the error.
pub async fn input_sizes(spec: &JobSpec, blobs: &BlobStore) -> std::result::Result<HashMap<Hash32, u64>, Hash32> {
    let mut sizes = HashMap::new();
    for h in spec.tasks.iter().flat_map(|t| &t.inputs) {
        if !sizes.contains_key(h) {
            let size = blobs.size(h).await.ok_or(*h)?;
            sizes.insert(*h, size);
        }
    }
    Ok(sizes)
}

impl Outbox {
    fn count(&mut self, worker: PublicKey, returned: i64, accepted: i64, rejected: i64) {
        let c = self.worker_counts.entry(worker).or_default();
        c[0] += returned;
        c[1] += accepted;
        c[2] += rejected;
    }

    /// Writes the batch's worker record changes (inside the batch's transaction).
    async fn write_counts(&mut self, db: &mut SqliteConnection) -> Result<()> {
        let now = now_ms();
        for (worker, [returned, accepted, rejected]) in self.worker_counts.drain() {
            Store::bump_worker(db, &worker, returned, accepted, rejected, now).await?;
        }
        Ok(())
    }
}

impl Core {
    /// Loads running jobs from the store and returns the core and its handle.
    pub async fn recover(
        store: Store,
        blobs: BlobStore,
        config: CoreConfig,
        escrow: Option<(Escrow, SettleSender)>,
    ) -> Result<(Core, CoreHandle, mpsc::Receiver<Command>)> {
        let (tx, rx) = mpsc::channel(8192);
        let shared = Arc::new(Shared::default());
        let next_lease = store.next_lease_id().await?;
        let mut next_job_id = store.max_job_id().await? + 1;
        if let Some((escrow, _)) = &escrow {
            next_job_id = next_job_id.max(escrow.max_job_id().await? + 1);
        }
        let (escrow, settle) = escrow.unzip();
        let mut core = Core {
            sched: Scheduler::new(config.scheduler, next_lease),
            store,
            blobs,
            config,
            workers: HashMap::new(),
            jobs: HashMap::new(),
            tasks: HashMap::new(),
            shared: shared.clone(),
            started: tokio::time::Instant::now(),
            escrow,
            settle,
            next_job_id,
        };
        let mut db = core.store.begin().await?;
        let orphaned = Store::lapse_orphaned_leases(&mut db).await?;
        db.commit().await?;
        let running = core.store.running_jobs().await?;
        let mut out = Outbox::default();
        let mut db = core.store.begin().await?;
        for job in running {
            let summary =
                core.store.job_summary(job.id).await?.ok_or_else(|| Error::Corrupt(format!("job {}", job.id)))?;
            let sizes = input_sizes(&job.spec, &core.blobs)
                .await
                .map_err(|h| Error::Corrupt(format!("missing input blob {h}")))?;
            let req = JobRequirements { paid: core.paid_in_escrow(&job.spec), ..requirements(&job.spec, &sizes) };
            let indices: Vec<u32> = job.tasks.iter().map(|t| t.index).collect();
            core.sched.add_job(
                job.id,
                req,
                job.tasks.iter().map(|t| {
                    let holders = t.returned.iter().map(|r| r.worker).collect();
                    (t.index, TaskNeeds { wanted: 0, holders, class: None })
                }),
            );
            for t in job.tasks {
                core.tasks.insert(
                    TaskId { job: job.id, index: t.index },
                    TaskTrack { returned: t.returned, lapses: t.lapses },
                );
            }
            core.jobs.insert(job.id, JobTrack { spec: Arc::new(job.spec), summary, deadline_ms: job.deadline_ms });
            for index in indices {
                core.decide(&mut db, TaskId { job: job.id, index }, &mut out).await?;
            }
            core.maybe_finish(&mut db, job.id, &mut out).await?;
        }
        out.write_counts(&mut db).await?;
        db.commit().await?;
        tracing::info!(jobs = core.jobs.len(), tasks = core.tasks.len(), orphaned, "relay state recovered");
        Ok((core, CoreHandle { tx, shared }, rx))
    }

    fn sched_now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs until every handle is dropped or `shutdown` resolves. A database error ends the
    /// core (and so the relay): restart recovers from the last commit.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => batch.push(cmd),
                    None => return Ok(()),
                },
                _ = tick.tick() => {}
                _ = &mut shutdown => return Ok(()),
            }
            while batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            self.apply_batch(batch).await?;
        }
    }

    async fn apply_batch(&mut self, batch: Vec<Command>) -> Result<()> {
        let mut out = Outbox::default();
        let mut db = self.store.begin().await?;
        for cmd in batch {
            self.apply(&mut db, cmd, &mut out).await?;
        }
        self.on_tick(&mut db, &mut out).await?;
        out.write_counts(&mut db).await?;
        db.commit().await?;
        self.flush(out);
        Ok(())
    }

    fn flush(&mut self, out: Outbox) {
        for (reply, summary) in out.replies {
            let _ = reply.send(Ok(summary));
        }
        let mut overloaded = Vec::new();
        for (key, msg) in out.messages {
            if let Some((_, tx)) = self.workers.get(&key)
                && tx.try_send(msg).is_err()
            {
                overloaded.push(key);
            }
        }
        for key in overloaded {
            // A worker that cannot keep up with its own messages is dropped: removing its sender
            // closes the connection, whose offline notice lapses its leases in the next batch.
            tracing::warn!(worker = %key, "worker channel full; disconnecting");
            self.workers.remove(&key);
            self.shared.online.write().expect("online set lock").remove(&key);
        }
        for event in out.events {
            if let Some(settle) = &self.settle {
                let note = match &event.event {
                    JobEvent::TaskVerified { task, .. } => Some(SettleNote::Verified(*task)),
                    JobEvent::JobDone { .. } | JobEvent::JobFailed { .. } => Some(SettleNote::Finished(event.job)),
                    _ => None,
                };
                if let Some(note) = note {
                    let _ = settle.send(note);
                }
            }
            self.shared.publish(event);
        }
    }

    async fn apply(&mut self, db: &mut SqliteConnection, cmd: Command, out: &mut Outbox) -> Result<()> {
        let now = self.sched_now();
        match cmd {
            Command::WorkerOnline { key, conn, caps, paid, tx } => {
                // A reconnect voids the previous connection's leases: the worker lost them.
                for lease in self.sched.worker_offline(&key) {
                    self.record_lapse(db, &lease, out).await?;
                }
                Store::upsert_worker(db, &key, &caps, now_ms()).await?;
                self.sched.worker_online(key, caps, now);
                self.sched.set_paid_eligible(&key, paid);
                self.workers.insert(key, (conn, tx));
                self.shared.online.write().expect("online set lock").insert(key);
            }
            Command::WorkerOffline { key, conn } => {
                if self.workers.get(&key).is_some_and(|(c, _)| *c == conn) {
                    self.workers.remove(&key);
                }
                if !self.workers.contains_key(&key) && self.sched.is_online(&key) {
                    self.shared.online.write().expect("online set lock").remove(&key);
                    for lease in self.sched.worker_offline(&key) {
                        self.record_lapse(db, &lease, out).await?;
                    }
                }
            }
            Command::Heartbeat { key, state } => self.sched.worker_heartbeat(&key, state, now),
            Command::PaidStanding { key, paid } => self.sched.set_paid_eligible(&key, paid),
            Command::Result { key, lease, task, output_hash, output_len, signature } => {
                self.on_result(db, key, lease, task, output_hash, output_len, signature, out).await?;
            }
            Command::Failed { key, lease, task, reason } => {
                if !self.sched.lease(lease).is_some_and(|l| l.worker == key && l.task == task) {
                    out.messages.push((key, lease_not_held(lease)));
                    return Ok(());
                }
                tracing::info!(worker = %key, %task, %reason, "worker could not run task");
                let lease = self.sched.lease_failed(lease).expect("lease checked above");
                self.record_lapse(db, &lease, out).await?;
            }
            Command::Decline { key, lease, task, reason } => {
                if !self.sched.lease(lease).is_some_and(|l| l.worker == key && l.task == task) {
                    out.messages.push((key, lease_not_held(lease)));
                    return Ok(());
                }
                tracing::debug!(worker = %key, %task, %reason, "worker declined task");
                // The scheduler queues the replica again; the store records this lease as ended
                // without a result, but no lapse counts against the task: it did nothing wrong.
                self.sched.lease_declined(lease);
                self.shared.leases.remove(lease);
                Store::set_replica_state(db, lease, &[ReplicaState::Leased], ReplicaState::Lapsed).await?;
            }
            Command::CreateJob { job, req, reply } => {
                let mine = self.jobs.values().filter(|j| j.summary.client == job.client).count();
                if mine >= self.config.max_running_jobs_per_client || self.jobs.len() >= self.config.max_running_jobs {
                    let limit = if mine >= self.config.max_running_jobs_per_client {
                        format!("this client already has {mine} jobs running; wait for some to finish")
                    } else {
                        "the relay is at its running-job limit; retry later".to_string()
                    };
                    let _ = reply.send(Err(Error::Limit(limit)));
                    return Ok(());
                }
                if Store::job_signed(db, &job.signature).await? {
                    let _ = reply.send(Err(Error::Duplicate(
                        "this signed job was already posted; sign it again with a new nonce to post another".into(),
                    )));
                    return Ok(());
                }
                let created = now_ms();
                let mut id = JobId(self.next_job_id);
                if let (Some(escrow), Some(mut open)) =
                    (&self.escrow, plan::open_job(id, job.client, &job.spec, created))
                {
                    // An id already taken in escrow (another relay's job on a shared contract,
                    // or an open whose confirmation timed out and landed later) is skipped, so
                    // one taken id never blocks every later job.
                    let mut skipped = 0;
                    loop {
                        match escrow.job(id).await {
                            Ok(None) => break,
                            Ok(Some(_)) => {}
                            Err(e) => {
                                let _ = reply.send(Err(e.into()));
                                return Ok(());
                            }
                        }
                        skipped += 1;
                        if skipped > MAX_ESCROW_ID_SKIPS {
                            let _ = reply.send(Err(Error::Limit(format!(
                                "{skipped} consecutive job ids are already taken in escrow; retry later"
                            ))));
                            return Ok(());
                        }
                        self.next_job_id += 1;
                        id = JobId(self.next_job_id);
                        open.job = id;
                    }
                    // The deposit is locked before anything is stored: a client that cannot
                    // pay is refused and leaves no trace.
                    if let Err(e) = escrow.open_job(&open).await {
                        if matches!(e, EscrowError::Unavailable(_)) {
                            // The open may still land: never reuse its id. Recovery closes an
                            // escrow job the store never got, refunding it.
                            self.next_job_id += 1;
                        }
                        let _ = reply.send(Err(e.into()));
                        return Ok(());
                    }
                }
                self.next_job_id += 1;
                let id = Store::insert_job(db, id, &job, created).await?;
                let summary = JobSummary {
                    id,
                    label: job.spec.label.clone(),
                    kernel: job.spec.kernel.display_name(),
                    client: job.client,
                    state: JobState::Running,
                    tasks_total: job.spec.tasks.len() as u32,
                    tasks_verified: 0,
                    tasks_failed: 0,
                    created_at_ms: created,
                    finished_at_ms: None,
                    failure: None,
                };
                let replicas = job.spec.replicas;
                let n = job.spec.tasks.len() as u32;
                let req = JobRequirements { paid: self.paid_in_escrow(&job.spec), ..req };
                self.sched.add_job(id, req, (0..n).map(|i| (i, TaskNeeds { wanted: replicas, ..Default::default() })));
                for index in 0..n {
                    self.tasks.insert(TaskId { job: id, index }, TaskTrack::default());
                }
                let deadline_ms = created + job.spec.deadline_secs * 1000;
                self.jobs.insert(id, JobTrack { spec: Arc::new(job.spec), summary: summary.clone(), deadline_ms });
                tracing::info!(job = %id, tasks = n, "job accepted");
                out.replies.push((reply, summary));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_result(
        &mut self,
        db: &mut SqliteConnection,
        key: PublicKey,
        lease_id: LeaseId,
        task: TaskId,
        output_hash: Hash32,
        output_len: u64,
        signature: Signature,
        out: &mut Outbox,
    ) -> Result<()> {
        if !self.sched.lease(lease_id).is_some_and(|l| l.worker == key && l.task == task) {
            out.messages.push((key, lease_not_held(lease_id)));
            return Ok(());
        }
        let declared = self.jobs.get(&task.job).map(|j| u64::from(j.spec.tasks[task.index as usize].output_size));
        if declared != Some(output_len) {
            out.messages.push((
                key,
                RelayMessage::Error(ErrorBody::new(
                    ErrorCode::Malformed,
                    format!("lease {lease_id}: output is {output_len} bytes, the task declares {declared:?}"),
                )),
            ));
            let lease = self.sched.lease_failed(lease_id).expect("lease checked above");
            return self.record_lapse(db, &lease, out).await;
        }
        // Named by a result from here on: the output never expires (see `blobs`).
        self.blobs.keep([&output_hash]);
        if self.blobs.size(&output_hash).await != Some(output_len) {
            out.messages.push((
                key,
                RelayMessage::Error(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("lease {lease_id}: upload output blob {output_hash} before reporting it"),
                )),
            ));
            return Ok(());
        }
        if !Store::record_result(db, lease_id, &output_hash, output_len, &signature, now_ms()).await? {
            return Err(Error::Corrupt(format!("lease {lease_id} held in memory but not leased in the store")));
        }
        out.count(key, 1, 0, 0);
        self.sched.lease_returned(lease_id);
        self.shared.leases.remove(lease_id);
        self.tasks.entry(task).or_default().returned.push(ReturnedReplica {
            lease: lease_id,
            worker: key,
            output_hash,
        });
        out.messages.push((key, RelayMessage::Ack { lease: lease_id }));
        self.decide(db, task, out).await
    }

    /// A lease ended without a result (silence, disconnect, failure): record it and re-decide.
    async fn record_lapse(&mut self, db: &mut SqliteConnection, lease: &Lease, out: &mut Outbox) -> Result<()> {
        self.shared.leases.remove(lease.id);
        if !Store::set_replica_state(db, lease.id, &[ReplicaState::Leased], ReplicaState::Lapsed).await? {
            return Ok(());
        }
        Store::add_lapse(db, lease.task).await?;
        if let Some(track) = self.tasks.get_mut(&lease.task) {
            track.lapses += 1;
            self.decide(db, lease.task, out).await?;
        }
        Ok(())
    }

    async fn decide(&mut self, db: &mut SqliteConnection, task: TaskId, out: &mut Outbox) -> Result<()> {
        let (Some(job), Some(track)) = (self.jobs.get(&task.job), self.tasks.get(&task)) else {
            return Ok(());
        };
        let rule =
            Rule { comparison: job.spec.comparison, quorum: job.spec.quorum, max_replicas: job.spec.max_replicas };
        let outputs: Vec<Option<Vec<u8>>> = match rule.comparison {
            Comparison::Exact => vec![None; track.returned.len()],
            Comparison::Tolerance { .. } => {
                let mut v = Vec::with_capacity(track.returned.len());
                for r in &track.returned {
                    v.push(self.blobs.read(&r.output_hash).await.ok());
                }
                v
            }
        };
        let returned: Vec<Returned<'_>> = track
            .returned
            .iter()
            .zip(&outputs)
            .map(|(r, o)| Returned {
                lease: r.lease,
                worker: r.worker,
                output_hash: r.output_hash,
                output: o.as_deref(),
            })
            .collect();
        let decision = verifier::decide(rule, &returned, self.sched.outstanding(task), track.lapses);
        let workers: HashMap<LeaseId, PublicKey> = track.returned.iter().map(|r| (r.lease, r.worker)).collect();
        match decision {
            Decision::Wait => {}
            Decision::AddReplicas(n) => self.sched.add_replicas(task, n),
            Decision::Verified { output_hash, agreeing, dissenting } => {
                if !Store::verify_task(db, task, &output_hash, now_ms()).await? {
                    return Ok(());
                }
                for lease in &agreeing {
                    Store::set_replica_state(db, *lease, &[ReplicaState::Returned], ReplicaState::Accepted).await?;
                    out.count(workers[lease], 0, 1, 0);
                }
                for lease in &dissenting {
                    Store::set_replica_state(db, *lease, &[ReplicaState::Returned], ReplicaState::Rejected).await?;
                    out.count(workers[lease], 0, 0, 1);
                    tracing::warn!(worker = %workers[lease], %task, "result rejected: disagrees with the quorum");
                }
                self.close_task(db, task, out).await?;
                let job = self.jobs.get_mut(&task.job).expect("job tracked");
                job.summary.tasks_verified += 1;
                let (verified, total) = (job.summary.tasks_verified, job.summary.tasks_total);
                out.events.push(JobEventFrame {
                    job: task.job,
                    event: JobEvent::TaskVerified { task, output_hash, verified, total },
                });
                self.maybe_finish(db, task.job, out).await?;
            }
            Decision::Failed { reason, .. } => {
                self.fail_task(db, task, &reason, out).await?;
                self.maybe_finish(db, task.job, out).await?;
            }
        }
        Ok(())
    }

    async fn fail_task(
        &mut self,
        db: &mut SqliteConnection,
        task: TaskId,
        reason: &str,
        out: &mut Outbox,
    ) -> Result<()> {
        if !Store::fail_task(db, task, reason, now_ms()).await? {
            return Ok(());
        }
        tracing::warn!(%task, %reason, "task failed");
        self.close_task(db, task, out).await?;
        if let Some(job) = self.jobs.get_mut(&task.job) {
            job.summary.tasks_failed += 1;
        }
        out.events
            .push(JobEventFrame { job: task.job, event: JobEvent::TaskFailed { task, reason: reason.to_string() } });
        Ok(())
    }

    async fn close_task(&mut self, db: &mut SqliteConnection, task: TaskId, out: &mut Outbox) -> Result<()> {
        self.tasks.remove(&task);
        for lease in self.sched.close_task(task) {
            self.shared.leases.remove(lease.id);
            Store::set_replica_state(db, lease.id, &[ReplicaState::Leased], ReplicaState::Cancelled).await?;
            out.messages.push((lease.worker, RelayMessage::Cancel { lease: lease.id }));
        }
        Ok(())
    }

    /// Whether the job's money is in escrow (so only bonded workers may take it).
    fn paid_in_escrow(&self, spec: &JobSpec) -> bool {
        self.escrow.is_some() && spec.price_per_replica > 0
    }

    async fn maybe_finish(&mut self, db: &mut SqliteConnection, job_id: JobId, out: &mut Outbox) -> Result<()> {
        let Some(job) = self.jobs.get(&job_id) else {
            return Ok(());
        };
        let s = &job.summary;
        if s.tasks_verified + s.tasks_failed < s.tasks_total {
            return Ok(());
        }
        let mut job = self.jobs.remove(&job_id).expect("checked above");
        for lease in self.sched.remove_job(job_id) {
            self.shared.leases.remove(lease.id);
        }
        let (state, failure) = if job.summary.tasks_failed == 0 {
            (JobState::Done, None)
        } else {
            (
                JobState::Failed,
                Some(format!("{} of {} tasks failed", job.summary.tasks_failed, job.summary.tasks_total)),
            )
        };
        let finished = now_ms();
        Store::finish_job(db, job_id, state, failure.as_deref(), finished).await?;
        job.summary.state = state;
        job.summary.failure = failure;
        job.summary.finished_at_ms = Some(finished);
        tracing::info!(job = %job_id, ?state, "job finished");
        let event = match state {
            JobState::Done => JobEvent::JobDone { job: job.summary },
            _ => JobEvent::JobFailed { job: job.summary },
        };
        out.events.push(JobEventFrame { job: job_id, event });
        Ok(())
    }

    /// Periodic work, also run after every batch: lapse expired leases, drop silent workers,
    /// fail tasks past their job's deadline, hand out work.
    async fn on_tick(&mut self, db: &mut SqliteConnection, out: &mut Outbox) -> Result<()> {
        let now = self.sched_now();
        for key in self.sched.silent_workers(now) {
            tracing::info!(worker = %key, "worker silent; dropping it");
            self.workers.remove(&key);
            self.shared.online.write().expect("online set lock").remove(&key);
            for lease in self.sched.worker_offline(&key) {
                self.record_lapse(db, &lease, out).await?;
            }
        }
        for lease in self.sched.expire(now) {
            out.messages.push((lease.worker, RelayMessage::Cancel { lease: lease.id }));
            self.record_lapse(db, &lease, out).await?;
        }
        let wall = now_ms();
        let overdue: Vec<JobId> = self.jobs.iter().filter(|(_, j)| j.deadline_ms <= wall).map(|(id, _)| *id).collect();
        for job in overdue {
            let pending: Vec<TaskId> = self.tasks.keys().filter(|t| t.job == job).copied().collect();
            for task in pending {
                self.fail_task(db, task, "deadline passed", out).await?;
            }
            self.maybe_finish(db, job, out).await?;
        }
        let lease_ms = self.sched.config().lease_ms;
        for lease in self.sched.assign(now) {
            let job = &self.jobs[&lease.task.job];
            let spec = &job.spec.tasks[lease.task.index as usize];
            Store::insert_lease(db, lease.id, lease.task, &lease.worker, wall).await?;
            let held = HeldLease { worker: lease.worker, task: lease.task, output_size: u64::from(spec.output_size) };
            self.shared.leases.insert(lease.id, held);
            out.messages.push((
                lease.worker,
                RelayMessage::Assign(Assignment {
                    lease: lease.id,
                    task: lease.task,
                    kernel: job.spec.kernel.clone(),
                    params: spec.params.clone(),
                    inputs: spec.inputs.clone(),
                    workgroups: spec.workgroups,
                    output_size: spec.output_size,
                    lease_ms,
                }),
            ));
        }
        Ok(())
    }
}

fn lease_not_held(lease: LeaseId) -> RelayMessage {
    RelayMessage::Error(ErrorBody::new(ErrorCode::LeaseNotHeld, format!("lease {lease} is not held by this worker")))
}
