//! The driver around the pure [`crate::core`]: the one task that changes relay state. Connections
//! and HTTP handlers send it [`Command`]s; it feeds a batch of them to the core with the current
//! time, ticks it, and carries out what the core decided: the batch's writes in one transaction
//! (group commit), then, only after the commit, replies, worker messages and job events. Escrow
//! calls and blob reads run on their own tasks, off the writer, and their answers come back as
//! core inputs. A crash at any point leaves the database at the last commit, from which
//! [`Driver::recover`] rebuilds the core.

use crate::blobs::BlobStore;
use crate::core::{Core, CoreConfig, Input, JobEventFrame, Now, OpenOutcome, Ready, RequestId, requirements};
use crate::error::{Error, Result};
use crate::escrow::Escrow;
use crate::escrow::settler::SettleSender;
use crate::scheduler::JobRequirements;
use crate::store::Store;
use starling_protocol::api::JobSummary;
use starling_protocol::events::JobEvent;
use starling_protocol::sign::SignedJob;
use starling_protocol::worker::{Capabilities, RelayMessage};
use starling_protocol::{JobId, PublicKey, TaskId};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Requests to the relay's state, from connections and handlers: the core's inputs, and the two
/// that carry something for the driver to keep (a worker's outgoing queue, a caller's reply).
#[derive(Debug)]
pub enum Command {
    WorkerOnline {
        key: PublicKey,
        conn: u64,
        caps: Capabilities,
        /// Registered and bonded in escrow: may take paid jobs.
        paid: bool,
        /// Its owner account in escrow, when registered.
        owner: Option<PublicKey>,
        /// The address it connected from.
        addr: Option<IpAddr>,
        tx: mpsc::Sender<RelayMessage>,
    },
    CreateJob {
        job: SignedJob,
        req: JobRequirements,
        origin: Option<IpAddr>,
        reply: oneshot::Sender<Result<JobSummary>>,
    },
    /// Any other input, handed to the core as it is.
    Core(Input),
}

/// What the API reads without asking the core.
#[derive(Debug, Default)]
pub struct Shared {
    pub online: RwLock<HashSet<PublicKey>>,
    /// The network's history and the relay's internals (`/v1/network/history`, `/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Leases held now: who may store which output (blob uploads and inline outputs check it).
    pub leases: crate::leases::LeaseBook,
    /// Outputs of undecided tasks, which nobody may read yet.
    pub withheld: crate::withheld::Withheld,
    /// Online workers registered in escrow, and whether the core was last told each may take
    /// paid work: whose standing [`crate::standing`] re-reads.
    pub registered: RwLock<crate::standing::Registered>,
    /// One event channel per watched job, so a watcher wakes only for its own job's events.
    watchers: std::sync::Mutex<HashMap<JobId, broadcast::Sender<Arc<JobEvent>>>>,
}

/// Events buffered per watcher before it counts as lagging.
const WATCHER_BUFFER: usize = 256;

/// A subscription to a job's events; dropping it forgets the job's channel once nobody listens.
#[derive(Debug)]
pub struct Watch {
    pub events: broadcast::Receiver<Arc<JobEvent>>,
    job: JobId,
    shared: Arc<Shared>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.shared.watchers.lock().expect("watchers lock");
        // This receiver still counts until the end of this function: one left means it is ours.
        if watchers.get(&self.job).is_some_and(|tx| tx.receiver_count() <= 1) {
            watchers.remove(&self.job);
        }
    }
}

impl Shared {
    /// Starts receiving a job's events. Call it only for a job that exists: every watched job
    /// holds a channel until its last watcher leaves.
    pub fn watch(self: &Arc<Self>, job: JobId) -> Watch {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        let events = watchers.entry(job).or_insert_with(|| broadcast::channel(WATCHER_BUFFER).0).subscribe();
        Watch { events, job, shared: self.clone() }
    }

    /// Jobs with a live event channel (bounded by the watchers connected).
    pub fn watched_jobs(&self) -> usize {
        self.watchers.lock().expect("watchers lock").len()
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

    pub async fn create_job(&self, job: SignedJob, req: JobRequirements, origin: Option<IpAddr>) -> Result<JobSummary> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::CreateJob { job, req, origin, reply }).await?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }
}

/// Where the driver reads the time it hands the core.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Now;
}

/// Monotonic time from tokio's clock, and wall-clock time that moves with it from the wall time
/// read at start.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    started: tokio::time::Instant,
    wall_at_start_ms: u64,
}

impl SystemClock {
    pub fn new() -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self { started: tokio::time::Instant::now(), wall_at_start_ms: wall }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let mono_ms = self.started.elapsed().as_millis() as u64;
        Now { mono_ms, wall_ms: self.wall_at_start_ms + mono_ms }
    }
}

/// A clock that moves only when told: the driver's time-dependent behaviour (silence, lease
/// ages, deadlines) tested without waiting. (Tokio's paused time does not fit here: while the
/// driver waits on SQLite's own thread the runtime looks idle and skips ahead.)
#[derive(Debug, Default)]
pub struct ManualClock {
    mono_ms: std::sync::atomic::AtomicU64,
}

impl ManualClock {
    pub fn advance(&self, by: std::time::Duration) {
        self.mono_ms.fetch_add(by.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        let mono_ms = self.mono_ms.load(std::sync::atomic::Ordering::SeqCst);
        Now { mono_ms, wall_ms: 1_700_000_000_000 + mono_ms }
    }
}

/// Capacity of the command channel from connections and handlers.
const COMMAND_QUEUE: usize = 8192;

pub struct Driver {
    core: Core,
    store: Store,
    blobs: BlobStore,
    /// Where paid jobs lock their deposit; `None` runs every job unpaid.
    escrow: Option<Escrow>,
    /// Told about verified tasks and finished jobs after each commit.
    settle: Option<SettleSender>,
    shared: Arc<Shared>,
    /// The live connection of each online worker and its outgoing queue.
    workers: HashMap<PublicKey, (u64, mpsc::Sender<RelayMessage>)>,
    replies: HashMap<RequestId, oneshot::Sender<Result<JobSummary>>>,
    next_request: RequestId,
    /// Answers from escrow and blob tasks, fed back to the core.
    answers_tx: mpsc::UnboundedSender<Input>,
    answers_rx: mpsc::UnboundedReceiver<Input>,
    /// Workers whose queue was full at the last flush: they go offline in the next batch.
    overloaded: Vec<PublicKey>,
    clock: Arc<dyn Clock>,
    /// The runtime that escrow calls and blob reads run on: the one the driver was recovered on,
    /// so they never queue behind the driver when it runs on a thread of its own.
    side: tokio::runtime::Handle,
    /// Runs the known-answer checks the core draws.
    checker: crate::canary::Checker,
    /// The cluster epoch this driver leads in, checked by every write (see [`crate::cluster`]).
    fence: Option<i64>,
}

/// Known-answer checks computed at once (each a CPU reference run on the blocking pool); a check
/// drawn while all are busy is skipped.
const CHECK_THREADS: usize = 1;

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("core", &self.core).field("workers", &self.workers.len()).finish()
    }
}

impl Driver {
    /// Loads running jobs from the store into a fresh core and returns the driver and its handle.
    pub async fn recover(
        store: Store,
        blobs: BlobStore,
        config: CoreConfig,
        escrow: Option<(Escrow, SettleSender)>,
    ) -> Result<(Driver, CoreHandle, mpsc::Receiver<Command>)> {
        Self::recover_with_clock(store, blobs, config, escrow, Arc::new(SystemClock::new())).await
    }

    /// [`Driver::recover`] on a given clock.
    pub async fn recover_with_clock(
        store: Store,
        blobs: BlobStore,
        config: CoreConfig,
        escrow: Option<(Escrow, SettleSender)>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Driver, CoreHandle, mpsc::Receiver<Command>)> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared::default());
        let next_lease = store.next_lease_id().await?;
        let mut next_job_id =
            store.max_job_id().await?.checked_add(1).ok_or_else(|| Error::Corrupt("job ids exhausted".into()))?;
        if let Some((escrow, _)) = &escrow {
            let max = escrow.max_job_id().await?;
            next_job_id = next_job_id.max(max.saturating_add(1));
        }
        let (escrow, settle) = escrow.unzip();
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        let blobs_for_checks = blobs.clone();
        let mut driver = Driver {
            core: Core::new(config, escrow.as_ref().map(|e| e.deployment()), next_lease, next_job_id),
            store,
            blobs,
            escrow,
            settle,
            shared: shared.clone(),
            workers: HashMap::new(),
            replies: HashMap::new(),
            next_request: 1,
            answers_tx,
            answers_rx,
            overloaded: Vec::new(),
            clock,
            side: tokio::runtime::Handle::current(),
            checker: crate::canary::Checker::new(blobs_for_checks, CHECK_THREADS),
            fence: None,
        };
        let mut db = driver.store.begin().await?;
        let orphaned = Store::lapse_orphaned_leases(&mut db).await?;
        db.commit().await?;
        let now = driver.clock.now();
        driver.core.restore_records(driver.store.worker_records().await?, now);
        let running = driver.store.running_jobs().await?;
        for job in running {
            let summary =
                driver.store.job_summary(job.id).await?.ok_or_else(|| Error::Corrupt(format!("job {}", job.id)))?;
            let sizes = crate::api::input_sizes(&job.job.spec, &driver.blobs, |_| false)
                .await
                .map_err(|h| Error::Corrupt(format!("missing input blob {h}")))?;
            let req = requirements(&job.job.spec, &sizes);
            let withheld = &driver.shared.withheld;
            // Its blobs, and the verified outputs its waiting tasks will read.
            let verified = job.decided.iter().filter_map(|(_, output)| *output);
            withheld.job_running(job.id, job.job.spec.tasks.iter().flat_map(|t| t.blobs()).chain(verified));
            for task in &job.tasks {
                for r in &task.returned {
                    withheld.returned(TaskId { job: job.id, index: task.index }, r.output_hash);
                }
            }
            driver.core.restore(summary, job, req, now);
        }
        let ready = driver.core.ready(now);
        driver.carry_out(ready).await?;
        tracing::info!(jobs = driver.core.jobs_running(), orphaned, "relay state recovered");
        Ok((driver, CoreHandle { tx, shared }, rx))
    }

    /// Makes every write check that `epoch` still leads the cluster: a relay that lost the lead
    /// fails its next write and stops, and nothing it decided after losing it is stored.
    pub fn fenced(mut self, epoch: Option<i64>) -> Self {
        self.fence = epoch;
        self
    }

    /// [`Driver::run`] on a thread of its own with a current-thread runtime, so that its wake-ups
    /// (each batch's SQL, the commit) never queue behind thousands of connection tasks on the
    /// shared runtime. Measured on the round-trip benchmark: see BENCHMARKS.md. Escrow calls and
    /// blob reads still run on the runtime this is called from.
    pub fn spawn_on_own_thread(
        self,
        rx: mpsc::Receiver<Command>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<oneshot::Receiver<Result<()>>> {
        let (done_tx, done_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("relay-core".into()).spawn(move || {
            let outcome = runtime.block_on(self.run(rx, shutdown));
            let _ = done_tx.send(outcome);
        })?;
        Ok(done_rx)
    }

    /// Runs until every handle is dropped or `shutdown` resolves. A database error ends the
    /// driver (and so the relay): restart recovers from the last commit.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.core.config().tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_batch = self.core.config().max_batch;
        loop {
            let mut commands = Vec::new();
            let mut answers = Vec::new();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => commands.push(cmd),
                    None => return Ok(()),
                },
                Some(answer) = self.answers_rx.recv() => answers.push(answer),
                _ = tick.tick() => {}
                _ = &mut shutdown => return Ok(()),
            }
            while commands.len() + answers.len() < max_batch {
                match rx.try_recv() {
                    Ok(cmd) => commands.push(cmd),
                    Err(_) => break,
                }
            }
            while let Ok(answer) = self.answers_rx.try_recv() {
                answers.push(answer);
            }
            let now = self.clock.now();
            for key in std::mem::take(&mut self.overloaded) {
                self.core.worker_overloaded(key, now);
            }
            for answer in answers {
                self.core.step(answer, now);
            }
            for cmd in commands {
                let input = self.admit_command(cmd);
                self.core.step(input, now);
            }
            self.core.tick(now);
            let ready = self.core.ready(now);
            self.shared.metrics.set_pending_replicas(self.core.pending_replicas());
            self.carry_out(ready).await?;
        }
    }

    /// Keeps what a command carries for the driver (a worker's queue, a caller's reply) and
    /// hands the rest to the core.
    fn admit_command(&mut self, cmd: Command) -> Input {
        match cmd {
            Command::WorkerOnline { key, conn, caps, paid, owner, addr, tx } => {
                // Replacing the previous connection's queue closes it.
                self.workers.insert(key, (conn, tx));
                self.shared.metrics.worker_online(key, caps.backend);
                let mut registered = self.shared.registered.write().expect("registered lock");
                match owner {
                    Some(_) => registered.insert(key, paid),
                    None => registered.remove(&key),
                };
                Input::WorkerOnline { key, conn, caps, paid, owner, addr }
            }
            Command::CreateJob { job, req, origin, reply } => {
                let request = self.next_request;
                self.next_request += 1;
                self.replies.insert(request, reply);
                Input::CreateJob { request, job: Box::new(job), req, origin }
            }
            Command::Core(input) => {
                if let Input::WorkerOffline { key, conn } = &input
                    && self.workers.get(key).is_some_and(|(c, _)| c == conn)
                {
                    self.workers.remove(key);
                }
                if let Input::PaidStanding { key, paid } = &input
                    && let Some(told) = self.shared.registered.write().expect("registered lock").get_mut(key)
                {
                    *told = *paid;
                }
                input
            }
        }
    }

    /// Commits the batch's writes, then tells everyone what changed and starts the escrow calls
    /// and reads the core asked for.
    async fn carry_out(&mut self, ready: Ready) -> Result<()> {
        if !ready.writes.is_empty() {
            // A result is hidden before anyone can read its row, and revealed only once its
            // task's decision is committed.
            self.shared.withheld.before_commit(&ready.writes);
            let started = std::time::Instant::now();
            let mut db = self.store.begin().await?;
            if let Some(epoch) = self.fence {
                Store::check_fence(&mut db, epoch).await?;
            }
            Store::apply(&mut db, &ready.writes).await?;
            let applied = started.elapsed();
            db.commit().await?;
            self.shared.metrics.committed(started.elapsed());
            tracing::debug!(writes = ready.writes.len(), ?applied, committed = ?started.elapsed(), "batch written");
            self.shared.withheld.after_commit(&ready.writes);
        }
        for id in ready.leases_closed {
            self.shared.leases.remove(id);
        }
        for (id, held) in ready.leases_opened {
            self.shared.leases.insert(id, held);
        }
        // Outputs named by a stored result never expire (see `blobs`).
        self.blobs.keep(ready.writes.iter().filter_map(|w| match w {
            crate::core::Write::Returned(row) => Some(&row.output_hash),
            _ => None,
        }));
        for (request, answer) in ready.replies {
            if let Some(reply) = self.replies.remove(&request) {
                let _ = reply.send(answer.map_err(Error::from));
            }
        }
        {
            let mut online = self.shared.online.write().expect("online set lock");
            let mut last = HashMap::with_capacity(ready.online.len());
            for (key, up) in ready.online {
                if up {
                    online.insert(key);
                } else {
                    online.remove(&key);
                }
                last.insert(key, up);
            }
            // A worker's standing is entered when its connection is admitted: forget it only if
            // the batch ended with the worker offline (not after a reconnect in the same batch).
            let mut registered = self.shared.registered.write().expect("registered lock");
            for (key, up) in last {
                if !up {
                    registered.remove(&key);
                }
            }
        }
        for key in ready.disconnect {
            // Dropping the queue closes the connection.
            self.workers.remove(&key);
        }
        for (key, msg) in ready.messages {
            if let Some((_, tx)) = self.workers.get(&key)
                && tx.try_send(msg).is_err()
            {
                // A worker that cannot keep up with its own messages is dropped: removing its
                // queue closes the connection, and its leases lapse in the next batch.
                tracing::warn!(worker = %key, "worker channel full; disconnecting");
                self.workers.remove(&key);
                self.overloaded.push(key);
            }
        }
        if let Some(settle) = &self.settle {
            for note in ready.settle {
                let _ = settle.send(note);
            }
        }
        for event in ready.events {
            self.shared.publish(event);
        }
        for (request, open) in ready.escrow_opens {
            let Some(escrow) = self.escrow.clone() else {
                continue;
            };
            let answers = self.answers_tx.clone();
            self.side.spawn(async move {
                let outcome = match escrow.job(open.job).await {
                    Ok(Some(_)) => OpenOutcome::IdTaken,
                    Err(e) => OpenOutcome::Failed(e),
                    Ok(None) => match escrow.open_job(&open).await {
                        Ok(()) => OpenOutcome::Opened,
                        Err(e) => OpenOutcome::Failed(e),
                    },
                };
                let _ = answers.send(Input::EscrowOpened { request, outcome });
            });
        }
        for check in ready.checks {
            self.checker.start(check, &self.side, self.answers_tx.clone());
        }
        for (task, hashes) in ready.reads {
            let blobs = self.blobs.clone();
            let answers = self.answers_tx.clone();
            self.side.spawn(async move {
                let mut outputs = Vec::with_capacity(hashes.len());
                for h in hashes {
                    outputs.push((h, blobs.read(&h).await.ok().map(Arc::from)));
                }
                let _ = answers.send(Input::OutputsRead { task, outputs });
            });
        }
        Ok(())
    }
}
