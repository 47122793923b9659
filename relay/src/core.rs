//! The relay core: every decision about jobs, tasks, replicas, leases, verification and what to
//! settle, as a pure state machine. It does no I/O and awaits nothing, in the way raft-rs's core
//! is driven: the [`crate::driver`] feeds it [`Input`]s with the current time ([`Core::step`]),
//! runs periodic work ([`Core::tick`]) and drains [`Core::ready`]: rows to write (applied in one
//! transaction per batch), messages to workers, job events, replies to API callers, escrow
//! requests and blob reads. Answers to those requests come back as inputs
//! ([`Input::EscrowOpened`], [`Input::OutputsRead`], [`Input::Checked`]), so one slow dependency
//! stalls nobody.
//!
//! The in-memory state is authoritative while the relay runs; the store is its durable copy,
//! from which [`Core::restore`] rebuilds it after a crash. The scheduler and the verifier stay
//! pure and are called from here.

use crate::error::Error;
use crate::escrow::settler::SettleNote;
use crate::escrow::{EscrowError, OpenJob, plan};
use crate::graph::{self, TaskGraph};
use crate::leases::HeldLease;
use crate::scheduler::{JobRequirements, Lease, Record, Scheduler, TaskNeeds};
use crate::store::{ReturnedReplica, RunningJob};
use crate::verifier::{self, Decision, Returned, Rule};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use starling_protocol::api::{JobState, JobSummary, ReplicaState};
use starling_protocol::events::JobEvent;
use starling_protocol::job::{Comparison, JobSpec, KernelSpec};
use starling_protocol::sign::{EscrowDeployment, SignedJob};
use starling_protocol::worker::{Assignment, Capabilities, DeviceState, RelayMessage};
use starling_protocol::{ErrorBody, ErrorCode, Hash32, JobId, LeaseId, PublicKey, Signature, TaskId, sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The time an input is applied at: monotonic milliseconds for leases and silence, wall-clock
/// Unix milliseconds for what is stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    pub mono_ms: u64,
    pub wall_ms: u64,
}

/// Identifies an API caller waiting for an answer (a job submission).
pub type RequestId = u64;

/// What the core is told.
#[derive(Debug)]
pub enum Input {
    WorkerOnline {
        key: PublicKey,
        conn: u64,
        caps: Capabilities,
        /// Registered and bonded in escrow: may take paid jobs.
        paid: bool,
        /// The escrow account that owns the key, when registered: its keys hold at most one
        /// replica of a task between them.
        owner: Option<PublicKey>,
        /// The address it connected from: paid tasks go to distinct networks.
        addr: Option<IpAddr>,
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
    /// The connection checked the signature and that the output blob is stored with this length.
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
    /// A validated, signed job whose input blobs exist. `origin` is the submitter's address.
    CreateJob {
        request: RequestId,
        job: Box<SignedJob>,
        req: JobRequirements,
        origin: Option<IpAddr>,
    },
    /// The escrow's answer to [`Ready::escrow_opens`].
    EscrowOpened {
        request: RequestId,
        outcome: OpenOutcome,
    },
    /// Output bytes asked for by [`Ready::reads`] (`None`: unreadable).
    OutputsRead {
        task: TaskId,
        outputs: Vec<(Hash32, Option<Arc<[u8]>>)>,
    },
    /// The answer to a known-answer check asked for by [`Ready::checks`].
    Checked {
        task: TaskId,
        lease: LeaseId,
        outcome: CheckOutcome,
    },
}

/// A returned result to compare with the answer the relay computes itself (the kernel's CPU
/// reference): a known-answer check, or *canary*. Drawn after the result is in, at random, so
/// no worker can tell which of its results are checked: every result of a checkable job is a
/// possible canary.
#[derive(Debug, Clone)]
pub struct Check {
    pub task: TaskId,
    pub lease: LeaseId,
    pub job: Arc<SignedJob>,
    /// The blobs the task bound (its own, and the verified outputs of the tasks it read).
    pub inputs: Vec<Hash32>,
    pub output_hash: Hash32,
    /// Asked for because the task's results disagree: the check settles the dispute, so it
    /// waits for the checker (in a bounded queue) rather than being skipped when it is busy.
    pub dispute: bool,
}

/// How a known-answer check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The result is the reference's (or within the job's tolerance of it).
    Matches,
    /// The result is not what the kernel computes: its worker signed a wrong answer.
    Differs,
    /// Not checked (the checker was busy, or a blob could not be read): it counts as nothing.
    Unchecked,
}

/// Whether the relay can compute a task's results itself to check them: a built-in kernel whose
/// CPU reference gives every device's bytes (exact kernels), or any built-in on a tolerance job
/// (compared within the job's tolerance). Client WGSL has no reference.
pub fn checkable(spec: &JobSpec, task: u32) -> bool {
    match spec.kernel_of(task as usize) {
        Some(KernelSpec::Builtin { name }) => name.exact() || matches!(spec.comparison, Comparison::Tolerance { .. }),
        _ => false,
    }
}

/// How a task's replicas are compared: as the job says, except that a built-in whose every
/// device gives the same bytes (an exact kernel in a job that also runs float ones, say) is
/// compared exactly: its integers read as floats within a tolerance would let a liar through.
pub fn task_comparison(spec: &JobSpec, task: u32) -> Comparison {
    match spec.kernel_of(task as usize) {
        Some(KernelSpec::Builtin { name }) if name.exact() => Comparison::Exact,
        _ => spec.comparison,
    }
}

/// How opening a job in escrow went.
#[derive(Debug)]
pub enum OpenOutcome {
    /// The deposit is locked.
    Opened,
    /// The id is already taken in escrow (another relay on a shared contract, or an earlier open
    /// that landed late): the core picks the next id.
    IdTaken,
    Failed(EscrowError),
}

/// A replica's row as its result arrives (see [`Write::Returned`]).
#[derive(Debug, Clone)]
pub struct ReturnedRow {
    pub lease: LeaseId,
    pub task: TaskId,
    pub worker: PublicKey,
    pub assigned_ms: u64,
    pub output_hash: Hash32,
    pub output_len: u64,
    pub signature: Signature,
    pub at_ms: u64,
}

/// Lease ids reserved in the store at a time (see [`Write::ReserveLeases`]).
pub const LEASE_ID_BLOCK: u64 = 1 << 16;

/// A durable change, applied by the driver in the batch's transaction.
#[derive(Debug, Clone)]
pub enum Write {
    InsertJob {
        id: JobId,
        job: Arc<SignedJob>,
        created_ms: u64,
        deadline_ms: u64,
    },
    UpsertWorker {
        key: PublicKey,
        caps: Capabilities,
        at_ms: u64,
    },
    /// Lease ids below `below` may be handed out: a restart continues from there, so an id held
    /// when the relay died is never handed out again. Written once per [`LEASE_ID_BLOCK`] leases.
    ReserveLeases {
        below: u64,
    },
    /// A replica's signed result: the replica's first row. Open leases are kept in memory only
    /// (a restart lapses them all anyway), so a replica costs one insert, not an insert and an
    /// update.
    Returned(ReturnedRow),
    /// A lease that ended without a result (lapsed, declined, cancelled): its only row.
    LeaseEnded {
        lease: LeaseId,
        task: TaskId,
        worker: PublicKey,
        assigned_ms: u64,
        state: ReplicaState,
    },
    /// A returned replica's verdict (accepted or rejected).
    ReplicaState {
        lease: LeaseId,
        state: ReplicaState,
    },
    /// A rejected replica that is not slashing evidence: it lost a dispute on a side that had
    /// sampled votes of its own (see [`Core::decide`]).
    NotEvidence {
        lease: LeaseId,
    },
    Lapse {
        task: TaskId,
    },
    VerifyTask {
        task: TaskId,
        output_hash: Hash32,
        at_ms: u64,
    },
    FailTask {
        task: TaskId,
        reason: String,
        at_ms: u64,
    },
    FinishJob {
        job: JobId,
        state: JobState,
        failure: Option<String>,
        at_ms: u64,
    },
    /// Added to a worker's record.
    WorkerCounts {
        key: PublicKey,
        returned: i64,
        accepted: i64,
        rejected: i64,
        at_ms: u64,
    },
    /// The scheduler's record of a worker key (see [`crate::scheduler::Record`]), kept across
    /// restarts; its cooldown as a wall-clock time.
    WorkerRecord {
        key: PublicKey,
        record: StoredRecord,
    },
}

/// A worker's scheduling record as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredRecord {
    pub valid_run: u32,
    pub abandoned: u32,
    /// Unix milliseconds until which it gets no new lease.
    pub cooling_until_wall_ms: u64,
    pub barred: bool,
}

/// A job event with the job it belongs to.
#[derive(Debug, Clone)]
pub struct JobEventFrame {
    pub job: JobId,
    pub event: JobEvent,
}

/// Everything a batch decided, for the driver to carry out: first `writes` in one transaction,
/// then (only after the commit) the rest.
#[derive(Debug, Default)]
pub struct Ready {
    pub writes: Vec<Write>,
    pub messages: Vec<(PublicKey, RelayMessage)>,
    /// Workers to disconnect (silent, or replaced).
    pub disconnect: Vec<PublicKey>,
    /// Changes to the set of workers online, in order.
    pub online: Vec<(PublicKey, bool)>,
    pub events: Vec<JobEventFrame>,
    pub replies: Vec<(RequestId, Result<JobSummary, Refusal>)>,
    /// Jobs to open in escrow; each answer comes back as [`Input::EscrowOpened`].
    pub escrow_opens: Vec<(RequestId, OpenJob)>,
    /// Outputs to read for tolerance comparison; answered with [`Input::OutputsRead`].
    pub reads: Vec<(TaskId, Vec<Hash32>)>,
    /// Results to check against the relay's own answer; answered with [`Input::Checked`].
    pub checks: Vec<Check>,
    /// Keys barred from paid work in this batch (a failed known-answer check).
    pub barred: Vec<PublicKey>,
    /// For the settler, after the commit.
    pub settle: Vec<SettleNote>,
    /// Leases handed out and ended, for the lease book the API checks uploads against (updated
    /// before the batch's messages go out).
    pub leases_opened: Vec<(LeaseId, HeldLease)>,
    pub leases_closed: Vec<LeaseId>,
    /// Worker record changes gathered over the batch, written once per worker.
    counts: HashMap<PublicKey, [i64; 3]>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.messages.is_empty()
            && self.disconnect.is_empty()
            && self.online.is_empty()
            && self.events.is_empty()
            && self.replies.is_empty()
            && self.escrow_opens.is_empty()
            && self.reads.is_empty()
            && self.checks.is_empty()
            && self.barred.is_empty()
            && self.settle.is_empty()
            && self.leases_opened.is_empty()
            && self.leases_closed.is_empty()
            && self.counts.is_empty()
    }

    fn count(&mut self, worker: PublicKey, returned: i64, accepted: i64, rejected: i64) {
        let c = self.counts.entry(worker).or_default();
        c[0] += returned;
        c[1] += accepted;
        c[2] += rejected;
    }

    fn event(&mut self, job: JobId, event: JobEvent) {
        match &event {
            JobEvent::TaskVerified { task, .. } => self.settle.push(SettleNote::Verified(*task)),
            JobEvent::JobDone { .. } | JobEvent::JobFailed { .. } => self.settle.push(SettleNote::Finished(job)),
            _ => {}
        }
        self.events.push(JobEventFrame { job, event });
    }
}

/// Why a submission was refused (told to the client as `{code, message}`).
#[derive(Debug)]
pub enum Refusal {
    /// A bound on running work; retry later.
    Limit(String),
    /// This signed job was already posted.
    Duplicate(String),
    Escrow(EscrowError),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Limit(m) => Error::Limit(m),
            Refusal::Duplicate(m) => Error::Duplicate(m),
            Refusal::Escrow(e) => Error::Escrow(e),
        }
    }
}

/// Core settings.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    pub scheduler: crate::scheduler::Config,
    pub tick: Duration,
    /// Commands applied per transaction at most.
    pub max_batch: usize,
    /// Jobs running (or being opened in escrow) at once, over all clients.
    pub max_running_jobs: usize,
    /// Jobs running at once for one client key.
    pub max_running_jobs_per_client: usize,
    /// Unpaid jobs running at once over the whole relay: free work is a shared, bounded pool.
    pub max_unpaid_jobs: usize,
    /// Unpaid jobs running at once from one network (an IPv4 /24 or IPv6 /48), whatever keys
    /// they are signed with: fresh keys gain nothing.
    pub max_unpaid_jobs_per_network: usize,
    /// Chance that a task gets an unannounced extra replica, and waits for it before deciding.
    pub extra_rate: f64,
    /// Chance that an agreed task gets a hidden audit replica on another independent worker
    /// before it is decided.
    pub audit_rate: f64,
    /// How long an agreed task waits for its hidden replica before it is decided without it
    /// (no independent worker took it): audits never hold up a small or busy network for long.
    pub hold_wait_ms: u64,
    /// Chance that a returned result of a checkable job ([`checkable`]) is checked against the
    /// relay's own answer (a known-answer check); a job's first results, until it has a median
    /// time, and results far faster than that median are always checked; 0 turns checks off. A
    /// result that fails one is thrown out, its worker barred from paid work and its record
    /// reset.
    pub canary_rate: f64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            scheduler: Default::default(),
            tick: Duration::from_millis(500),
            max_batch: 1024,
            max_running_jobs: 10_000,
            max_running_jobs_per_client: 64,
            max_unpaid_jobs: 1_000,
            max_unpaid_jobs_per_network: 16,
            extra_rate: 0.05,
            audit_rate: 0.1,
            hold_wait_ms: 30_000,
            canary_rate: 0.05,
        }
    }
}

/// Job ids found taken in escrow, one after another, before a submission is refused.
pub const MAX_ESCROW_ID_SKIPS: u32 = 64;
/// How often worker records are written, and how many workers' changes may wait.
const COUNTS_EVERY_MS: u64 = 1000;
const MAX_PENDING_COUNTS: usize = 50_000;
/// Signatures of finished jobs remembered to refuse a replay racing the store's check.
const RECENT_SIGNATURES: usize = 4096;

/// The network a submitter's address belongs to, for per-network bounds: an IPv4 /24 or an IPv6
/// /48 (what one household, office or small provider typically holds).
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
            }
        },
    }
}

/// The network a worker counts as for independent replicas, or `None` for a loopback address:
/// workers on the relay's own machine (tests, the demo, one operator's workers) prove nothing
/// about independence either way, and a relay behind a local reverse proxy sees only those.
pub fn worker_network(ip: IpAddr) -> Option<IpAddr> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| network_of(ip))
}

/// Job requirements from a spec and the sizes of its input blobs.
pub fn requirements(spec: &JobSpec, input_sizes: &HashMap<Hash32, u64>) -> JobRequirements {
    // An input that is another task's output is no larger than the largest output.
    let max_input =
        spec.tasks.iter().flat_map(|t| t.blobs()).filter_map(|h| input_sizes.get(&h)).copied().max().unwrap_or(0);
    let max_output = spec.tasks.iter().map(|t| u64::from(t.output_size)).max().unwrap_or(0);
    // A pipeline also binds its intermediate buffers, and each stage its own inputs and workgroups
    // (a built-in that runs as several dispatches too, per task: its buffers follow its params).
    let (mut max_buffer, mut stage_buffers, mut stage_groups) = (0u64, 0u32, 0u32);
    for task in &spec.tasks {
        if let Some(KernelSpec::Builtin { name }) = spec.kernel_of_task(task) {
            max_buffer = max_buffer.max(starling_kernels::intermediate_bytes(*name, &task.params));
        }
    }
    for kernel in spec.all_kernels() {
        if let KernelSpec::Pipeline { buffers, stages, .. } = kernel {
            max_buffer = max_buffer.max(buffers.iter().map(|b| u64::from(b.size)).max().unwrap_or(0));
            stage_buffers = stage_buffers.max(stages.iter().map(|s| s.inputs.len() as u32 + 1).max().unwrap_or(1));
            stage_groups = stage_groups.max(stages.iter().filter_map(|s| s.workgroups).flatten().max().unwrap_or(1));
        }
    }
    JobRequirements {
        price_per_replica: spec.price_per_replica,
        needs_gpu: spec.needs_gpu(),
        homogeneous: spec.homogeneous,
        max_binding_bytes: max_input.max(max_output).max(max_buffer),
        storage_buffers: spec.tasks.iter().map(|t| t.inputs.len() as u32 + 1).max().unwrap_or(1).max(stage_buffers),
        max_workgroups: spec.tasks.iter().flat_map(|t| t.workgroups).max().unwrap_or(1).max(stage_groups),
        // Set by the core, which knows whether an escrow is configured.
        paid: false,
    }
}

#[derive(Debug)]
struct JobTrack {
    job: Arc<SignedJob>,
    /// `job.spec.digest()`, named in every assignment (and so in every result signature).
    digest: Hash32,
    summary: JobSummary,
    deadline_ms: u64,
    /// The network it was posted from, when it runs unpaid (counted against that network).
    unpaid_from: Option<Option<IpAddr>>,
    /// How long its latest accepted results took, lease to result (ms), newest last, per kernel
    /// index: a reduction's sums are quick beside the gradients they add, and must not read as
    /// answers made up without computing.
    durations: HashMap<u8, VecDeque<u64>>,
    /// Its tasks' dependencies, when some task reads another's output.
    graph: Option<TaskGraph>,
}

/// Accepted results of a job whose durations are kept, and how many it takes before a result
/// can be called fast.
const DURATIONS_KEPT: usize = 64;
const DURATIONS_NEEDED: usize = 8;

impl JobTrack {
    /// The kernel index task `index` runs.
    fn kernel_of(&self, index: u32) -> u8 {
        self.job.spec.tasks.get(index as usize).map_or(0, |t| t.kernel)
    }

    /// Whether enough results of the kernel task `index` runs were accepted to know how long its
    /// tasks take.
    fn timed(&self, index: u32) -> bool {
        self.durations.get(&self.kernel_of(index)).is_some_and(|d| d.len() >= DURATIONS_NEEDED)
    }

    /// Whether a result for task `index` that took `ms` came back in under half the median time
    /// of its kernel's tasks in this job: a worker that computes nothing answers at once, and is
    /// always idle for the next lease.
    fn fast(&self, index: u32, ms: u64) -> bool {
        if !self.timed(index) {
            return false;
        }
        let mut d: Vec<u64> = self.durations[&self.kernel_of(index)].iter().copied().collect();
        d.sort_unstable();
        ms.saturating_mul(2) < d[d.len() / 2]
    }

    /// Records how long an accepted result for task `index` took.
    fn took(&mut self, index: u32, ms: u64) {
        let kernel = self.kernel_of(index);
        let d = self.durations.entry(kernel).or_default();
        if d.len() == DURATIONS_KEPT {
            d.pop_front();
        }
        d.push_back(ms);
    }
}

impl TaskTrack {
    /// A task that was to run alone lost its only replica before a result: whoever takes it next
    /// is judged afresh, as its first worker was.
    fn reopen_adaptive(&mut self) {
        if self.single && self.returned.is_empty() {
            self.single = false;
            self.adaptive_open = true;
        }
    }
}

#[derive(Debug, Default)]
struct TaskTrack {
    returned: Vec<ReturnedReplica>,
    /// Each returned lease's vote: its holder (escrow owner, or key) when it was leased.
    owners: HashMap<LeaseId, PublicKey>,
    /// Returned leases that were part of a sample (audit or dispute).
    sampled: HashSet<LeaseId>,
    /// How long each returned lease took (ms).
    took: HashMap<LeaseId, u64>,
    /// Results to wait for before deciding (hidden extra replica or audit drawn), else 0.
    hold_for: u8,
    /// Whether the audit draw was made (once per task).
    audit_drawn: bool,
    /// The task agreed and waits only for its hidden replica, since then (monotonic ms).
    held_since_ms: Option<u64>,
    lapses: u32,
    /// Output bytes read for tolerance comparison, by hash.
    outputs: HashMap<Hash32, Option<Arc<[u8]>>>,
    /// A read of missing outputs is in flight.
    reading: bool,
    /// Returned leases whose known-answer check is in flight: the task is not decided before.
    checking: HashSet<LeaseId>,
    /// Output hashes the relay's own answer confirmed.
    confirmed: HashSet<Hash32>,
    /// Output hashes the relay's own answer refuted: any result that signs one again is thrown
    /// out as soon as it is in.
    refuted: HashSet<Hash32>,
    /// Output hashes a dispute already sent to the checker.
    asked: HashSet<Hash32>,
    /// Adaptive replication: the task's first replica is out and how many more it gets is
    /// decided when its worker is known.
    adaptive_open: bool,
    /// Adaptive replication chose to run it on its first worker alone.
    single: bool,
    /// Replicas to hand out when the task stops waiting for its inputs (see [`TaskGraph`]).
    release: u8,
}

/// A paid submission waiting for the escrow to lock its deposit.
#[derive(Debug)]
struct PendingOpen {
    id: JobId,
    job: SignedJob,
    req: JobRequirements,
    created_ms: u64,
    skipped: u32,
}

/// The relay's decisions, in memory.
#[derive(Debug)]
pub struct Core {
    sched: Scheduler,
    config: CoreConfig,
    /// Whether paid jobs lock their deposit in an escrow (else every job runs unpaid).
    escrow: bool,
    /// The escrow's deployment, named in every assignment (`None` without escrow).
    deployment: Option<EscrowDeployment>,
    /// The live connection of each online worker.
    conns: HashMap<PublicKey, u64>,
    jobs: HashMap<JobId, JobTrack>,
    tasks: HashMap<TaskId, TaskTrack>,
    /// Running jobs by deadline, so a tick finds overdue jobs without a scan.
    deadlines: BTreeSet<(u64, JobId)>,
    pending_opens: HashMap<RequestId, PendingOpen>,
    /// Running and opening jobs per client key.
    per_client: HashMap<PublicKey, usize>,
    /// Running unpaid jobs per submitting network (`None`: address unknown).
    unpaid_per_network: HashMap<Option<IpAddr>, usize>,
    unpaid: usize,
    /// Signatures of running and opening jobs, and of recently finished ones.
    signatures: HashSet<Signature>,
    recent_signatures: VecDeque<Signature>,
    /// Ids are never reused, neither in the store nor in escrow.
    next_job_id: u64,
    /// Worker record changes not written yet, and when they last were.
    counts: HashMap<PublicKey, [i64; 3]>,
    counts_written_ms: u64,
    /// Lease ids below this are reserved in the store.
    leases_reserved: u64,
    ready: Ready,
    /// Draws hidden extra replicas and audits; seeded from the scheduler's secret seed.
    rng: StdRng,
    /// Agreed tasks waiting for a hidden replica, by when they stop waiting.
    held: BTreeSet<(u64, TaskId)>,
}

impl Core {
    /// An empty core; `next_lease` and `next_job_id` continue after what the store (and the
    /// escrow) already hold.
    pub fn new(config: CoreConfig, deployment: Option<EscrowDeployment>, next_lease: u64, next_job_id: u64) -> Self {
        Self {
            sched: Scheduler::new(config.scheduler, next_lease),
            config,
            escrow: deployment.is_some(),
            deployment,
            conns: HashMap::new(),
            jobs: HashMap::new(),
            tasks: HashMap::new(),
            deadlines: BTreeSet::new(),
            pending_opens: HashMap::new(),
            per_client: HashMap::new(),
            unpaid_per_network: HashMap::new(),
            unpaid: 0,
            signatures: HashSet::new(),
            recent_signatures: VecDeque::new(),
            next_job_id: next_job_id.max(1),
            counts: HashMap::new(),
            counts_written_ms: 0,
            leases_reserved: next_lease.max(1),
            ready: Ready::default(),
            rng: StdRng::from_seed(sha256(&[&config.scheduler.seed[..], b"audits"].concat()).0),
            held: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Takes what the inputs since the last call decided. Worker record changes are folded
    /// into `writes` here, once per worker.
    pub fn ready(&mut self, now: Now) -> Ready {
        let mut ready = std::mem::take(&mut self.ready);
        for (key, [r, a, j]) in ready.counts.drain() {
            let c = self.counts.entry(key).or_default();
            c[0] += r;
            c[1] += a;
            c[2] += j;
        }
        // Worker records are statistics (the replicas' rows are the truth): written at most once
        // a second, so a busy worker costs one row update per second, not one per batch; and
        // whenever a job ends, so they are whole when its client looks.
        let job_ended = ready.settle.iter().any(|n| matches!(n, SettleNote::Finished(_)));
        if job_ended
            || now.mono_ms >= self.counts_written_ms + COUNTS_EVERY_MS
            || self.counts.len() > MAX_PENDING_COUNTS
        {
            self.counts_written_ms = now.mono_ms;
            for (key, [returned, accepted, rejected]) in self.counts.drain() {
                ready.writes.push(Write::WorkerCounts { key, returned, accepted, rejected, at_ms: now.wall_ms });
            }
            for (key, r) in self.sched.take_changed_records() {
                let cooling_until_wall_ms = if r.cooling_until_ms > now.mono_ms {
                    now.wall_ms.saturating_add(r.cooling_until_ms - now.mono_ms)
                } else {
                    0
                };
                let record = StoredRecord {
                    valid_run: r.valid_run,
                    abandoned: r.abandoned,
                    cooling_until_wall_ms,
                    barred: r.barred,
                };
                ready.writes.push(Write::WorkerRecord { key, record });
            }
        }
        ready
    }

    /// Puts back the worker records the store kept (at start, before any worker connects): runs,
    /// abandons, cooldowns and bars survive a restart.
    pub fn restore_records(&mut self, records: impl IntoIterator<Item = (PublicKey, StoredRecord)>, now: Now) {
        for (key, r) in records {
            let cooling_until_ms = if r.cooling_until_wall_ms > now.wall_ms {
                now.mono_ms.saturating_add(r.cooling_until_wall_ms - now.wall_ms)
            } else {
                0
            };
            let record =
                Record { valid_run: r.valid_run, abandoned: r.abandoned, cooling_until_ms, turn: 0, barred: r.barred };
            self.sched.restore_record(key, record);
        }
    }

    /// What the scheduler remembers of a worker key.
    pub fn record(&self, key: &PublicKey) -> Option<Record> {
        self.sched.record(key)
    }

    pub fn jobs_running(&self) -> usize {
        self.jobs.len()
    }

    /// Replicas waiting for a worker.
    pub fn pending_replicas(&self) -> u64 {
        self.sched.pending_replicas()
    }

    pub fn workers_online(&self) -> usize {
        self.conns.len()
    }

    /// Puts a running job read back from the store under management again (recovery). Its
    /// tasks are re-decided, since a crash may have come between a result and its decision.
    pub fn restore(&mut self, summary: JobSummary, running: RunningJob, req: JobRequirements, now: Now) {
        let RunningJob { job, deadline_ms, tasks, decided, .. } = running;
        let id = summary.id;
        let req = JobRequirements { paid: self.paid_in_escrow(&job.spec), ..req };
        let unpaid_from = (!req.paid).then_some(None);
        self.sched.add_job(
            id,
            req,
            tasks.iter().map(|t| {
                let holders = t.returned.iter().map(|r| r.worker).collect();
                (t.index, TaskNeeds { wanted: 0, holders, ..Default::default() })
            }),
        );
        let indices: Vec<u32> = tasks.iter().map(|t| t.index).collect();
        // A restored task is decided as the verifier sees it; one still waiting for its inputs
        // starts as a fresh one would when they are verified (one replica first, under adaptive
        // replication).
        let adaptive = job.spec.adaptive.is_some();
        let release = if adaptive { 1 } else { job.spec.replicas };
        // What was decided before the restart resolves the graph again: verified outputs release
        // their readers (each released task is decided below, which hands out its replicas),
        // failures doom theirs.
        let mut graph = TaskGraph::new(&job.spec);
        let mut doomed = Vec::new();
        if let Some(g) = graph.as_mut() {
            for (index, output) in decided {
                match output {
                    Some(hash) => {
                        g.verified(index, hash);
                    }
                    None => doomed.extend(g.failed(index)),
                }
            }
        }
        for t in tasks {
            let adaptive_open = adaptive && graph.as_ref().is_some_and(|g| g.is_waiting(t.index));
            self.tasks.insert(
                TaskId { job: id, index: t.index },
                TaskTrack {
                    returned: t.returned,
                    lapses: t.lapses,
                    audit_drawn: true,
                    release,
                    adaptive_open,
                    ..Default::default()
                },
            );
        }
        self.track_job(id, Arc::new(job), summary, deadline_ms, unpaid_from, graph);
        for index in doomed {
            self.fail_task(TaskId { job: id, index }, "a task it reads failed", now);
        }
        for index in indices {
            // A task still waiting for an input is not decided (see `decide`).
            self.decide(TaskId { job: id, index }, now);
        }
        self.maybe_finish(id, now);
    }

    /// Applies one input.
    pub fn step(&mut self, input: Input, now: Now) {
        match input {
            Input::WorkerOnline { key, conn, caps, paid, owner, addr } => {
                // A reconnect voids the previous connection's leases: the worker lost them.
                for lease in self.sched.worker_offline(&key, now.mono_ms) {
                    self.record_lapse(&lease, now);
                }
                self.ready.writes.push(Write::UpsertWorker { key, caps: caps.clone(), at_ms: now.wall_ms });
                self.sched.worker_online(key, caps, now.mono_ms);
                self.sched.set_paid_eligible(&key, paid);
                if let Some(owner) = owner {
                    self.sched.set_owner(&key, owner);
                }
                self.sched.set_network(&key, addr.and_then(worker_network));
                self.conns.insert(key, conn);
                self.ready.online.push((key, true));
            }
            Input::WorkerOffline { key, conn } => {
                if self.conns.get(&key) == Some(&conn) {
                    self.conns.remove(&key);
                    self.ready.online.push((key, false));
                    for lease in self.sched.worker_offline(&key, now.mono_ms) {
                        self.record_lapse(&lease, now);
                    }
                }
            }
            Input::Heartbeat { key, state } => self.sched.worker_heartbeat(&key, state, now.mono_ms),
            Input::PaidStanding { key, paid } => self.sched.set_paid_eligible(&key, paid),
            Input::Result { key, lease, task, output_hash, output_len, signature } => {
                self.on_result(key, lease, task, output_hash, output_len, signature, now)
            }
            Input::Failed { key, lease, task, reason } => {
                if !self.holds(&key, lease, task) {
                    return;
                }
                tracing::info!(worker = %key, %task, %reason, "worker could not run task");
                let lease = self.sched.lease_failed(lease, now.mono_ms).expect("lease checked above");
                self.record_lapse(&lease, now);
            }
            Input::Decline { key, lease, task, reason } => {
                if !self.holds(&key, lease, task) {
                    return;
                }
                tracing::debug!(worker = %key, %task, %reason, "worker declined task");
                // The scheduler queues the replica again; the store records this lease as ended
                // without a result, but no lapse counts against the task: it did nothing wrong.
                let lease = self.sched.lease_declined(lease).expect("lease checked above");
                if let Some(track) = self.tasks.get_mut(&task) {
                    track.reopen_adaptive();
                }
                self.ready.leases_closed.push(lease.id);
                self.ready.writes.push(ended(&lease, ReplicaState::Lapsed, now));
            }
            Input::CreateJob { request, job, req, origin } => self.on_create_job(request, *job, req, origin, now),
            Input::EscrowOpened { request, outcome } => self.on_escrow_opened(request, outcome),
            Input::OutputsRead { task, outputs } => {
                if let Some(track) = self.tasks.get_mut(&task) {
                    track.reading = false;
                    track.outputs.extend(outputs);
                    self.decide(task, now);
                }
            }
            Input::Checked { task, lease, outcome } => self.on_checked(task, lease, outcome, now),
        }
    }

    /// Whether `key` holds `lease` for `task`; tells the worker when it does not.
    fn holds(&mut self, key: &PublicKey, lease: LeaseId, task: TaskId) -> bool {
        let held = self.sched.lease(lease).is_some_and(|l| l.worker == *key && l.task == task);
        if !held {
            self.ready.messages.push((*key, lease_not_held(lease)));
        }
        held
    }

    fn on_create_job(
        &mut self,
        request: RequestId,
        job: SignedJob,
        req: JobRequirements,
        origin: Option<IpAddr>,
        now: Now,
    ) {
        let paid = self.paid_in_escrow(&job.spec);
        let network = origin.map(network_of);
        let mine = self.per_client.get(&job.client).copied().unwrap_or(0);
        let refusal = if mine >= self.config.max_running_jobs_per_client {
            Some(format!("this client already has {mine} jobs running; wait for some to finish"))
        } else if self.jobs.len() + self.pending_opens.len() >= self.config.max_running_jobs {
            Some("the relay is at its running-job limit; retry later".to_string())
        } else if !paid && self.unpaid >= self.config.max_unpaid_jobs {
            Some("the relay is running as much unpaid work as it takes; retry later or post a paid job".to_string())
        } else if !paid
            && self.unpaid_per_network.get(&network).copied().unwrap_or(0) >= self.config.max_unpaid_jobs_per_network
        {
            Some(format!(
                "your network already runs {} unpaid jobs; wait for some to finish or post a paid job",
                self.config.max_unpaid_jobs_per_network
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            self.ready.replies.push((request, Err(Refusal::Limit(message))));
            return;
        }
        if self.signatures.contains(&job.signature) {
            self.ready.replies.push((
                request,
                Err(Refusal::Duplicate(
                    "this signed job was already posted; sign it again with a new nonce to post another".into(),
                )),
            ));
            return;
        }
        if paid && job.deposit.is_none() {
            let why = plan::CannotOpen::NoDeposit.to_string();
            self.ready.replies.push((request, Err(Refusal::Escrow(EscrowError::Refused(why)))));
            return;
        }
        let Some(id) = self.take_job_id() else {
            self.ready.replies.push((request, Err(Refusal::Limit("the relay has run out of job ids".into()))));
            return;
        };
        match plan::open_job(id, &job) {
            Ok(Some(open)) if paid => {
                // The deposit is locked before anything is stored: a client that cannot pay is
                // refused and leaves no trace. Meanwhile the job counts against its client.
                self.signatures.insert(job.signature);
                *self.per_client.entry(job.client).or_default() += 1;
                self.pending_opens.insert(request, PendingOpen { id, job, req, created_ms: now.wall_ms, skipped: 0 });
                self.ready.escrow_opens.push((request, open));
            }
            _ => {
                self.signatures.insert(job.signature);
                *self.per_client.entry(job.client).or_default() += 1;
                self.admit(request, id, job, req, now.wall_ms, Some(network));
            }
        }
    }

    fn on_escrow_opened(&mut self, request: RequestId, outcome: OpenOutcome) {
        let Some(mut pending) = self.pending_opens.remove(&request) else {
            return;
        };
        match outcome {
            OpenOutcome::Opened => {
                let PendingOpen { id, job, req, created_ms, .. } = pending;
                self.admit(request, id, job, req, created_ms, None);
            }
            OpenOutcome::IdTaken if pending.skipped < MAX_ESCROW_ID_SKIPS => match self.take_job_id() {
                Some(id) => {
                    pending.skipped += 1;
                    pending.id = id;
                    let open = plan::open_job(id, &pending.job).ok().flatten().expect("a paid job stays paid");
                    self.pending_opens.insert(request, pending);
                    self.ready.escrow_opens.push((request, open));
                }
                None => self.refuse_open(request, pending, Refusal::Limit("the relay has run out of job ids".into())),
            },
            OpenOutcome::IdTaken => {
                let message =
                    format!("{} consecutive job ids are already taken in escrow; retry later", pending.skipped + 1);
                self.refuse_open(request, pending, Refusal::Limit(message));
            }
            // An open that failed as unavailable may still land: its id is never reused (ids
            // only grow), and recovery closes an escrow job the store never got, refunding it.
            OpenOutcome::Failed(e) => self.refuse_open(request, pending, Refusal::Escrow(e)),
        }
    }

    fn refuse_open(&mut self, request: RequestId, pending: PendingOpen, why: Refusal) {
        self.signatures.remove(&pending.job.signature);
        self.release_client(&pending.job.client);
        self.ready.replies.push((request, Err(why)));
    }

    fn release_client(&mut self, client: &PublicKey) {
        if let Some(n) = self.per_client.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(client);
            }
        }
    }

    fn take_job_id(&mut self) -> Option<JobId> {
        // Ids are stored as SQL BIGINT: stay within i64.
        if self.next_job_id >= i64::MAX as u64 {
            return None;
        }
        let id = JobId(self.next_job_id);
        self.next_job_id += 1;
        Some(id)
    }

    /// Stores and starts scheduling an accepted job; the caller is answered after the commit.
    /// `unpaid_from` is the submitter's network for an unpaid job (`None` for a paid one).
    fn admit(
        &mut self,
        request: RequestId,
        id: JobId,
        job: SignedJob,
        req: JobRequirements,
        created_ms: u64,
        unpaid_from: Option<Option<IpAddr>>,
    ) {
        let deadline_ms = created_ms.saturating_add(job.spec.deadline_secs.saturating_mul(1000));
        let summary = JobSummary {
            id,
            label: job.spec.label.clone(),
            kernel: job.spec.kernel.display_name(),
            client: job.client,
            state: JobState::Running,
            tasks_total: job.spec.tasks.len() as u32,
            tasks_verified: 0,
            tasks_failed: 0,
            created_at_ms: created_ms,
            finished_at_ms: None,
            failure: None,
        };
        let n = job.spec.tasks.len() as u32;
        let (replicas, max) = (job.spec.replicas, job.spec.max_replicas);
        let req = JobRequirements { paid: self.paid_in_escrow(&job.spec), ..req };
        // Some tasks of paid jobs get one more replica than the spec asks, unannounced, and wait
        // for it (when more workers are online than the spec's replicas: else nobody could take it).
        let hidden = req.paid && self.sched.workers_online() > usize::from(replicas);
        // Adaptive replication: one replica first; the rest once its worker is known (`tick`).
        let adaptive = job.spec.adaptive.is_some();
        let extra: Vec<bool> = (0..n)
            .map(|_| !adaptive && hidden && replicas < max && self.rng.gen_bool(self.config.extra_rate.clamp(0.0, 1.0)))
            .collect();
        let first = if adaptive { 1 } else { replicas };
        // A task that reads other tasks' outputs waits, without replicas, until they are verified.
        let graph = TaskGraph::new(&job.spec);
        let waiting = |i: u32| graph.as_ref().is_some_and(|g| g.is_waiting(i));
        let wanted = |i: u32| first + u8::from(extra[i as usize]);
        self.sched.add_job(
            id,
            req,
            (0..n).map(|i| (i, TaskNeeds { wanted: if waiting(i) { 0 } else { wanted(i) }, ..Default::default() })),
        );
        for index in 0..n {
            let hold_for = if extra[index as usize] { replicas + 1 } else { 0 };
            let release = if waiting(index) { wanted(index) } else { 0 };
            self.tasks.insert(
                TaskId { job: id, index },
                TaskTrack { hold_for, adaptive_open: adaptive, release, ..Default::default() },
            );
        }
        let job = Arc::new(job);
        self.ready.writes.push(Write::InsertJob { id, job: job.clone(), created_ms, deadline_ms });
        // The client was already counted when the submission was admitted.
        self.release_client(&job.client);
        self.track_job(id, job, summary.clone(), deadline_ms, unpaid_from, graph);
        tracing::info!(job = %id, tasks = n, "job accepted");
        self.ready.replies.push((request, Ok(summary)));
    }

    fn track_job(
        &mut self,
        id: JobId,
        job: Arc<SignedJob>,
        summary: JobSummary,
        deadline_ms: u64,
        unpaid_from: Option<Option<IpAddr>>,
        graph: Option<TaskGraph>,
    ) {
        *self.per_client.entry(summary.client).or_default() += 1;
        if let Some(network) = unpaid_from {
            self.unpaid += 1;
            *self.unpaid_per_network.entry(network).or_default() += 1;
        }
        self.signatures.insert(job.signature);
        self.deadlines.insert((deadline_ms, id));
        let digest = job.spec.digest();
        self.jobs
            .insert(id, JobTrack { job, digest, summary, deadline_ms, unpaid_from, durations: HashMap::new(), graph });
    }

    fn untrack_job(&mut self, id: JobId) -> Option<JobTrack> {
        let job = self.jobs.remove(&id)?;
        self.deadlines.remove(&(job.deadline_ms, id));
        self.release_client(&job.summary.client);
        if let Some(network) = job.unpaid_from {
            self.unpaid -= 1;
            if let Some(n) = self.unpaid_per_network.get_mut(&network) {
                *n -= 1;
                if *n == 0 {
                    self.unpaid_per_network.remove(&network);
                }
            }
        }
        // The store refuses a replay from now on; the recent list covers the moment before the
        // API's check can see the finished row.
        self.recent_signatures.push_back(job.job.signature);
        if self.recent_signatures.len() > RECENT_SIGNATURES
            && let Some(old) = self.recent_signatures.pop_front()
        {
            self.signatures.remove(&old);
        }
        Some(job)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_result(
        &mut self,
        key: PublicKey,
        lease_id: LeaseId,
        task: TaskId,
        output_hash: Hash32,
        output_len: u64,
        signature: Signature,
        now: Now,
    ) {
        if !self.holds(&key, lease_id, task) {
            return;
        }
        let declared = self.jobs.get(&task.job).map(|j| u64::from(j.job.spec.tasks[task.index as usize].output_size));
        if declared != Some(output_len) {
            self.ready.messages.push((
                key,
                RelayMessage::Error(ErrorBody::new(
                    ErrorCode::Malformed,
                    format!("lease {lease_id}: output is {output_len} bytes, the task declares {declared:?}"),
                )),
            ));
            let lease = self.sched.lease_failed(lease_id, now.mono_ms).expect("lease checked above");
            self.record_lapse(&lease, now);
            return;
        }
        let lease = self.sched.lease_returned(lease_id).expect("lease checked above");
        self.ready.writes.push(Write::Returned(ReturnedRow {
            lease: lease_id,
            task,
            worker: key,
            assigned_ms: assigned_wall_ms(&lease, now),
            output_hash,
            output_len,
            signature,
            at_ms: now.wall_ms,
        }));
        self.ready.count(key, 1, 0, 0);
        self.ready.leases_closed.push(lease_id);
        let track = self.tasks.entry(task).or_default();
        track.owners.insert(lease_id, lease.holder);
        if lease.sampled {
            track.sampled.insert(lease_id);
        }
        track.took.insert(lease_id, now.mono_ms.saturating_sub(lease.assigned_at_ms));
        track.returned.push(ReturnedReplica { lease: lease_id, worker: key, output_hash });
        // A known-answer check, drawn after the fact: any result of a checkable job may be one.
        // One back in under half the job's median time always is (answering without computing
        // is what makes a worker fast), and so is every result until the job has a median: its
        // first results are the ones nobody could yet call fast. A rate of 0 turns checks off.
        let drawn = self.rng.gen_bool(self.config.canary_rate.clamp(0.0, 1.0));
        if let Some(job) = self.jobs.get(&task.job)
            && self.config.canary_rate > 0.0
            && checkable(&job.job.spec, task.index)
            && let Some(inputs) = graph::resolve(&job.job.spec, job.graph.as_ref(), task.index)
            && (drawn
                || !job.timed(task.index)
                || job.fast(task.index, now.mono_ms.saturating_sub(lease.assigned_at_ms)))
            && !track.confirmed.contains(&output_hash)
            && !track.refuted.contains(&output_hash)
        {
            track.checking.insert(lease_id);
            self.ready.checks.push(Check {
                task,
                lease: lease_id,
                job: job.job.clone(),
                inputs,
                output_hash,
                dispute: false,
            });
        }
        self.ready.messages.push((key, RelayMessage::Ack { lease: lease_id }));
        self.decide(task, now);
    }

    /// A known-answer check came back: the answer it confirmed or refuted is remembered, and
    /// what it proves wrong is thrown out before the task is decided ([`Core::throw_out_refuted`]).
    fn on_checked(&mut self, task: TaskId, lease: LeaseId, outcome: CheckOutcome, now: Now) {
        let Some(track) = self.tasks.get_mut(&task) else { return };
        if !track.checking.remove(&lease) {
            return;
        }
        if let Some(hash) = track.returned.iter().find(|r| r.lease == lease).map(|r| r.output_hash) {
            match outcome {
                CheckOutcome::Differs => track.refuted.insert(hash),
                CheckOutcome::Matches => track.confirmed.insert(hash),
                CheckOutcome::Unchecked => false,
            };
        }
        self.decide(task, now);
    }

    /// Throws out every result of `task` the relay's own answer proved wrong: one that signs a
    /// refuted hash, and under exact comparison (one right answer) any other than a confirmed
    /// one. Each is rejected (its signature is evidence once the task settles through an
    /// independent quorum), its worker barred from paid work and its record reset, and the
    /// task's further replicas are sampled. Known answers are remembered for the task's life:
    /// a liar drawn later to the same task is thrown out as soon as its result is in, and never
    /// gets to vote.
    fn throw_out_refuted(&mut self, task: TaskId) {
        let exact =
            self.jobs.get(&task.job).is_some_and(|j| task_comparison(&j.job.spec, task.index) == Comparison::Exact);
        let Some(track) = self.tasks.get_mut(&task) else { return };
        if track.refuted.is_empty() && track.confirmed.is_empty() {
            return;
        }
        let wrong = |h: &Hash32| {
            track.refuted.contains(h) || (exact && !track.confirmed.is_empty() && !track.confirmed.contains(h))
        };
        let caught: Vec<(LeaseId, PublicKey)> =
            track.returned.iter().filter(|r| wrong(&r.output_hash)).map(|r| (r.lease, r.worker)).collect();
        if caught.is_empty() {
            return;
        }
        track.returned.retain(|r| !wrong(&r.output_hash));
        for (l, worker) in caught {
            track.owners.remove(&l);
            track.sampled.remove(&l);
            track.took.remove(&l);
            track.checking.remove(&l);
            tracing::warn!(%worker, %task, "result failed a known-answer check; worker barred from paid work");
            self.ready.writes.push(Write::ReplicaState { lease: l, state: ReplicaState::Rejected });
            self.ready.count(worker, 0, 0, 1);
            self.sched.bar(&worker);
            self.ready.barred.push(worker);
        }
        // A task that was to run alone no longer does: it waits for the job's replicas, and what
        // comes next is drawn as a sample.
        if std::mem::take(&mut track.single)
            && let Some(job) = self.jobs.get(&task.job)
        {
            track.hold_for = track.hold_for.max(job.job.spec.replicas);
        }
        self.sched.set_sampled(task);
    }

    /// A lease ended without a result (silence, disconnect, failure): record it and re-decide.
    fn record_lapse(&mut self, lease: &Lease, now: Now) {
        self.ready.leases_closed.push(lease.id);
        self.ready.writes.push(ended(lease, ReplicaState::Lapsed, now));
        if let Some(track) = self.tasks.get_mut(&lease.task) {
            self.ready.writes.push(Write::Lapse { task: lease.task });
            track.lapses += 1;
            track.reopen_adaptive();
            self.decide(lease.task, now);
        }
    }

    fn decide(&mut self, task: TaskId, now: Now) {
        self.throw_out_refuted(task);
        let (Some(job), Some(track)) = (self.jobs.get(&task.job), self.tasks.get_mut(&task)) else {
            return;
        };
        if job.graph.as_ref().is_some_and(|g| g.is_waiting(task.index)) {
            // Nothing to decide before it runs.
            return;
        }
        if !track.checking.is_empty() {
            // Decided once the relay's own answer is in.
            return;
        }
        let rule = Rule {
            comparison: task_comparison(&job.job.spec, task.index),
            quorum: job.job.spec.quorum,
            max_replicas: job.job.spec.max_replicas,
        };
        if matches!(rule.comparison, Comparison::Tolerance { .. }) {
            let missing: Vec<Hash32> = track
                .returned
                .iter()
                .map(|r| r.output_hash)
                .filter(|h| !track.outputs.contains_key(h))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !missing.is_empty() {
                // Decided when the bytes are in; a read already in flight brings them.
                if !track.reading {
                    track.reading = true;
                    self.ready.reads.push((task, missing));
                }
                return;
            }
        }
        let returned: Vec<Returned<'_>> = track
            .returned
            .iter()
            .map(|r| Returned {
                lease: r.lease,
                worker: track.owners.get(&r.lease).copied().unwrap_or(r.worker),
                output_hash: r.output_hash,
                output: track.outputs.get(&r.output_hash).and_then(|o| o.as_deref()),
                sampled: track.sampled.contains(&r.lease),
            })
            .collect();
        let inputs = graph::resolve(&job.job.spec, job.graph.as_ref(), task.index);
        if self.config.canary_rate > 0.0
            && checkable(&job.job.spec, task.index)
            && let Some(inputs) = inputs
            && verifier::contested(rule.comparison, &returned)
        {
            // Results that disagree on a job the relay can compute: its own answer settles the
            // dispute, not a vote a large enough cartel could win. Each answer not yet sent to the
            // checker goes now, and the task waits for them (only an answer the checker's queue
            // had no room for is left to the sampled vote).
            let fresh: BTreeMap<Hash32, LeaseId> = returned
                .iter()
                .filter(|r| !track.asked.contains(&r.output_hash) && !track.confirmed.contains(&r.output_hash))
                .map(|r| (r.output_hash, r.lease))
                .collect();
            if !fresh.is_empty() {
                for (output_hash, lease) in fresh {
                    track.asked.insert(output_hash);
                    track.checking.insert(lease);
                    self.ready.checks.push(Check {
                        task,
                        lease,
                        job: job.job.clone(),
                        inputs: inputs.clone(),
                        output_hash,
                        dispute: true,
                    });
                }
                self.sched.set_sampled(task);
                return;
            }
        }
        let outstanding = self.sched.outstanding(task);
        let disputed = returned.iter().any(|r| r.output_hash != returned[0].output_hash);
        let rule = if disputed {
            // A dispute asks only for replicas someone online could take: where every worker that
            // could is a holder already (a small network, or its other workers barred), the votes
            // in hand decide it rather than a wait until the deadline.
            let issued = returned.len() + usize::from(outstanding);
            let spare = self.sched.could_take(task, usize::from(rule.max_replicas));
            Rule { max_replicas: rule.max_replicas.min((issued + spare).min(usize::from(u8::MAX)) as u8), ..rule }
        } else {
            rule
        };
        let mut decision = verifier::decide(rule, &returned, outstanding, track.lapses, track.hold_for);
        if matches!(decision, Decision::Verified { .. }) && !track.audit_drawn {
            // An agreed task of a paid job may get a hidden audit replica on another independent
            // worker, when more workers are online than hold it.
            track.audit_drawn = true;
            let paid = self.escrow && plan::is_paid(&job.job.spec);
            let others = self.sched.workers_online() > returned.len() + usize::from(outstanding);
            // A result back in under half the job's median time is always audited: answering
            // without computing buys no share of the work without being checked. A task run on
            // one worker (adaptive replication) is audited at the client's rate, paid or not.
            let fast = track.took.values().any(|&ms| job.fast(task.index, ms));
            let rate = match (fast, job.job.spec.adaptive) {
                (true, _) => 1.0,
                (false, Some(a)) if track.single => f64::from(a.audit_percent.min(100)) / 100.0,
                (false, _) => self.config.audit_rate.clamp(0.0, 1.0),
            };
            if (paid || track.single) && others && self.rng.gen_bool(rate) {
                track.hold_for = (track.returned.len() as u8).saturating_add(1);
                // Its own wait, whatever an extra replica's already used.
                track.held_since_ms = None;
                // The auditor is drawn from the reliable workers, busy or not.
                self.sched.set_sampled(task);
                decision = verifier::decide(rule, &returned, outstanding, track.lapses, track.hold_for);
            }
        }
        if track.hold_for > 0
            && track.held_since_ms.is_none()
            && !matches!(decision, Decision::Verified { .. })
            && matches!(verifier::decide(rule, &returned, outstanding, track.lapses, 0), Decision::Verified { .. })
        {
            // Agreed, and waiting only for the hidden replica: for a bounded time.
            track.held_since_ms = Some(now.mono_ms);
            self.held.insert((now.mono_ms.saturating_add(self.config.hold_wait_ms), task));
        }
        let workers: HashMap<LeaseId, PublicKey> = track.returned.iter().map(|r| (r.lease, r.worker)).collect();
        if disputed {
            // A dispute is settled by a sample of the reliable workers, not by whoever is idle:
            // every replica handed out from now on, queued ones included.
            self.sched.set_sampled(task);
        }
        match decision {
            Decision::Wait => {}
            Decision::AddReplicas(n) => self.sched.add_replicas(task, n),
            Decision::Verified { output_hash, agreeing, dissenting } => {
                self.ready.writes.push(Write::VerifyTask { task, output_hash, at_ms: now.wall_ms });
                let took: Vec<u64> = agreeing.iter().filter_map(|l| track.took.get(l).copied()).collect();
                if let Some(job) = self.jobs.get_mut(&task.job) {
                    for ms in took {
                        job.took(task.index, ms);
                    }
                }
                // A result nobody else computed (adaptive replication, unaudited) is paid, but
                // proves nothing: it does not lengthen its worker's run.
                let proven = !(track.single && agreeing.len() == 1);
                for lease in &agreeing {
                    self.ready.writes.push(Write::ReplicaState { lease: *lease, state: ReplicaState::Accepted });
                    self.ready.count(workers[lease], 0, 1, 0);
                    if proven {
                        self.sched.record_accepted(&workers[lease]);
                    }
                }
                // A dissent is slashing evidence only when no sampled vote stood on its side. A
                // side that drew sampled votes lost a vote among reliable workers drawn at random,
                // which a large enough cartel sometimes wins: the loser's record is reset, but
                // the relay does not ask the contract to take its bond on such a count.
                let hash_of: HashMap<LeaseId, Hash32> =
                    track.returned.iter().map(|r| (r.lease, r.output_hash)).collect();
                let sampled_sides: HashSet<Hash32> =
                    track.sampled.iter().filter_map(|l| hash_of.get(l).copied()).collect();
                for lease in &dissenting {
                    self.ready.writes.push(Write::ReplicaState { lease: *lease, state: ReplicaState::Rejected });
                    if hash_of.get(lease).is_some_and(|h| sampled_sides.contains(h)) {
                        self.ready.writes.push(Write::NotEvidence { lease: *lease });
                    }
                    self.ready.count(workers[lease], 0, 0, 1);
                    self.sched.record_rejected(&workers[lease]);
                    tracing::warn!(worker = %workers[lease], %task, "result rejected: disagrees with the quorum");
                }
                self.close_task(task, now);
                let job = self.jobs.get_mut(&task.job).expect("job tracked");
                job.summary.tasks_verified += 1;
                let (verified, total) = (job.summary.tasks_verified, job.summary.tasks_total);
                let released = job.graph.as_mut().map(|g| g.verified(task.index, output_hash)).unwrap_or_default();
                self.ready.event(task.job, JobEvent::TaskVerified { task, output_hash, verified, total });
                for index in released {
                    // Its inputs are verified: it runs now, on the outputs they agreed on.
                    let reader = TaskId { job: task.job, index };
                    if let Some(track) = self.tasks.get_mut(&reader) {
                        self.sched.add_replicas(reader, std::mem::take(&mut track.release));
                    }
                }
                self.maybe_finish(task.job, now);
            }
            Decision::Failed { reason, .. } => {
                self.fail_task(task, &reason, now);
                self.maybe_finish(task.job, now);
            }
        }
    }

    fn fail_task(&mut self, task: TaskId, reason: &str, now: Now) {
        if !self.tasks.contains_key(&task) {
            return;
        }
        tracing::warn!(%task, %reason, "task failed");
        self.ready.writes.push(Write::FailTask { task, reason: reason.to_string(), at_ms: now.wall_ms });
        self.close_task(task, now);
        let mut doomed = Vec::new();
        if let Some(job) = self.jobs.get_mut(&task.job) {
            job.summary.tasks_failed += 1;
            doomed = job.graph.as_mut().map(|g| g.failed(task.index)).unwrap_or_default();
        }
        self.ready.event(task.job, JobEvent::TaskFailed { task, reason: reason.to_string() });
        // Tasks downstream could never have their inputs.
        for index in doomed {
            self.fail_task(TaskId { job: task.job, index }, &format!("task {} it reads failed", task.index), now);
        }
    }

    fn close_task(&mut self, task: TaskId, now: Now) {
        self.tasks.remove(&task);
        for lease in self.sched.close_task(task) {
            self.ready.leases_closed.push(lease.id);
            self.ready.writes.push(ended(&lease, ReplicaState::Cancelled, now));
            self.ready.messages.push((lease.worker, RelayMessage::Cancel { lease: lease.id }));
        }
    }

    /// Whether the job's money is in escrow (so only bonded workers may take it).
    fn paid_in_escrow(&self, spec: &JobSpec) -> bool {
        self.escrow && plan::is_paid(spec)
    }

    fn maybe_finish(&mut self, job_id: JobId, now: Now) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let s = &job.summary;
        if s.tasks_verified + s.tasks_failed < s.tasks_total {
            return;
        }
        let mut job = self.untrack_job(job_id).expect("checked above");
        for lease in self.sched.remove_job(job_id) {
            self.ready.leases_closed.push(lease.id);
        }
        let (state, failure) = if job.summary.tasks_failed == 0 {
            (JobState::Done, None)
        } else {
            (
                JobState::Failed,
                Some(format!("{} of {} tasks failed", job.summary.tasks_failed, job.summary.tasks_total)),
            )
        };
        self.ready.writes.push(Write::FinishJob { job: job_id, state, failure: failure.clone(), at_ms: now.wall_ms });
        job.summary.state = state;
        job.summary.failure = failure;
        job.summary.finished_at_ms = Some(now.wall_ms);
        tracing::info!(job = %job_id, ?state, "job finished");
        let event = match state {
            JobState::Done => JobEvent::JobDone { job: job.summary },
            _ => JobEvent::JobFailed { job: job.summary },
        };
        self.ready.event(job_id, event);
    }

    /// Periodic work, also run after every batch: drop silent workers, lapse expired leases,
    /// fail tasks past their job's deadline, hand out work.
    pub fn tick(&mut self, now: Now) {
        for key in self.sched.silent_workers(now.mono_ms) {
            tracing::info!(worker = %key, "worker silent; dropping it");
            if self.conns.remove(&key).is_some() {
                self.ready.online.push((key, false));
                self.ready.disconnect.push(key);
            }
            for lease in self.sched.worker_offline(&key, now.mono_ms) {
                self.record_lapse(&lease, now);
            }
        }
        for lease in self.sched.expire(now.mono_ms) {
            self.ready.messages.push((lease.worker, RelayMessage::Cancel { lease: lease.id }));
            self.record_lapse(&lease, now);
        }
        while let Some(&(deadline, job)) = self.deadlines.first() {
            if deadline > now.wall_ms {
                break;
            }
            self.deadlines.pop_first();
            let total = self.jobs.get(&job).map_or(0, |j| j.summary.tasks_total);
            for index in 0..total {
                self.fail_task(TaskId { job, index }, "deadline passed", now);
            }
            self.maybe_finish(job, now);
        }
        while let Some(&(until, task)) = self.held.first() {
            if until > now.mono_ms {
                break;
            }
            self.held.pop_first();
            // Nobody independent took the hidden replica in time: decide without it; a lease of
            // it still out is cancelled with the task.
            if let Some(track) = self.tasks.get_mut(&task)
                && track.hold_for > 0
            {
                self.sched.withdraw_queued(task);
                if self.sched.outstanding(task) > 0 {
                    // Taken and running: its answer (or its abandon, which costs the worker)
                    // decides. A stalling auditor cannot time its own audit out.
                    track.held_since_ms = None;
                    continue;
                }
                track.hold_for = 0;
                track.audit_drawn = true;
                self.decide(task, now);
            }
        }
        let lease_ms = self.sched.config().lease_ms;
        let trusted_after = self.sched.config().trusted_after.max(1);
        for lease in self.sched.assign(now.mono_ms) {
            if !self.jobs.contains_key(&lease.task.job) || !self.tasks.contains_key(&lease.task) {
                // Its job or task ended earlier in this loop (see below): its leases went with it.
                continue;
            }
            if let Some(track) = self.tasks.get_mut(&lease.task)
                && std::mem::take(&mut track.adaptive_open)
            {
                // Adaptive replication (BOINC's rule): a worker with a run of N >= trusted_after
                // verified results runs the task alone with probability 1 - 1/N; otherwise the
                // task gets the job's replicas, and waits for all of them.
                let run = self.sched.record(&lease.worker).map_or(0, |r| r.valid_run);
                // A task other tasks read is never run alone: an unaudited answer would be bound
                // into everything downstream of it.
                let read = self.jobs[&lease.task.job].graph.as_ref().is_some_and(|g| g.has_readers(lease.task.index));
                let alone = lease.anchor
                    && !read
                    && run >= trusted_after
                    && self.rng.gen_bool(1.0 - 1.0 / f64::from(run.max(1)));
                if alone {
                    track.single = true;
                } else {
                    let replicas = self.jobs[&lease.task.job].job.spec.replicas;
                    track.hold_for = replicas;
                    self.sched.add_replicas(lease.task, replicas.saturating_sub(1));
                }
            }
            let job = &self.jobs[&lease.task.job];
            let spec = &job.job.spec.tasks[lease.task.index as usize];
            let (Some(kernel), Some(inputs)) = (
                job.job.spec.kernel_of(lease.task.index as usize),
                graph::resolve(&job.job.spec, job.graph.as_ref(), lease.task.index),
            ) else {
                // Not reached: a task is handed out only once its inputs are verified. Were it, the
                // task fails (and its lease is cancelled) rather than cost the worker anything.
                tracing::error!(task = %lease.task, "a task was leased before its inputs were verified");
                self.fail_task(lease.task, "internal error: its inputs were not verified", now);
                self.maybe_finish(lease.task.job, now);
                continue;
            };
            let held = HeldLease { worker: lease.worker, task: lease.task, output_size: u64::from(spec.output_size) };
            self.ready.leases_opened.push((lease.id, held));
            self.ready.messages.push((
                lease.worker,
                RelayMessage::Assign(Assignment {
                    lease: lease.id,
                    task: lease.task,
                    kernel: kernel.clone(),
                    params: spec.params.clone(),
                    inputs,
                    workgroups: spec.workgroups,
                    output_size: spec.output_size,
                    lease_ms,
                    spec_digest: job.digest,
                    escrow: self.deployment.clone(),
                }),
            ));
        }
        let next = self.sched.next_lease_id();
        if next >= self.leases_reserved {
            self.leases_reserved = next.saturating_add(LEASE_ID_BLOCK);
            self.ready.writes.push(Write::ReserveLeases { below: self.leases_reserved });
        }
    }

    /// A worker's connection could not keep up with its messages and was closed by the driver:
    /// the same as going offline.
    pub fn worker_overloaded(&mut self, key: PublicKey, now: Now) {
        if let Some(conn) = self.conns.get(&key).copied() {
            self.step(Input::WorkerOffline { key, conn }, now);
        }
    }
}

/// The wall-clock time a lease was handed out, from the scheduler's monotonic time.
fn assigned_wall_ms(lease: &Lease, now: Now) -> u64 {
    now.wall_ms.saturating_sub(now.mono_ms.saturating_sub(lease.assigned_at_ms))
}

/// The one row of a lease that ended without a result.
fn ended(lease: &Lease, state: ReplicaState, now: Now) -> Write {
    Write::LeaseEnded {
        lease: lease.id,
        task: lease.task,
        worker: lease.worker,
        assigned_ms: assigned_wall_ms(lease, now),
        state,
    }
}

fn lease_not_held(lease: LeaseId) -> RelayMessage {
    RelayMessage::Error(ErrorBody::new(ErrorCode::LeaseNotHeld, format!("lease {lease} is not held by this worker")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::job::{BuiltinKernel, KernelSpec, TaskSpec};
    use starling_protocol::sign::Keypair;
    use starling_protocol::worker::{AdapterInfo, Backend, DeviceLimits, Platform};

    /// The defaults without known-answer checks, which tests that do not answer them would wait
    /// on forever.
    fn quiet() -> CoreConfig {
        CoreConfig { canary_rate: 0.0, ..CoreConfig::default() }
    }

    fn test_deployment() -> EscrowDeployment {
        EscrowDeployment { chain_id: "test-chain".into(), contract: "test-contract".into() }
    }

    fn caps() -> Capabilities {
        Capabilities {
            backend: Backend::Vulkan,
            platform: Platform::Native,
            adapter: AdapterInfo::default(),
            limits: DeviceLimits {
                max_buffer_size: 1 << 28,
                max_storage_buffer_binding_size: 1 << 27,
                max_storage_buffers_per_shader_stage: 8,
                max_compute_workgroups_per_dimension: 65_535,
            },
            asking_price: 0,
            duty_cycle: 1.0,
            slots: 4,
        }
    }

    fn spec(tasks: u32, price: u64, nonce: u64) -> JobSpec {
        JobSpec {
            label: String::new(),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            tasks: (0..tasks)
                .map(|i| TaskSpec { params: vec![i], inputs: vec![], workgroups: [1, 1, 1], output_size: 8, kernel: 0 })
                .collect(),
            comparison: Comparison::Exact,
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            price_per_replica: price,
            deadline_secs: 60,
            homogeneous: false,
            nonce,
            adaptive: None,
            kernels: Vec::new(),
        }
    }

    fn req(spec: &JobSpec) -> JobRequirements {
        requirements(spec, &HashMap::new())
    }

    fn at(secs: u64) -> Now {
        Now { mono_ms: secs * 1000, wall_ms: 1_700_000_000_000 + secs * 1000 }
    }

    fn worker(n: u8) -> PublicKey {
        Keypair::from_seed([n; 32]).public()
    }

    fn online(core: &mut Core, n: u8, now: Now) {
        core.step(
            Input::WorkerOnline {
                key: worker(n),
                conn: u64::from(n),
                caps: caps(),
                paid: true,
                owner: None,
                addr: None,
            },
            now,
        );
    }

    /// Posts `spec` as a client would: signed, with a deposit authorization when it is paid.
    fn post(core: &mut Core, request: RequestId, client: &Keypair, spec: JobSpec, origin: &str, now: Now) {
        let d = test_deployment();
        let job = client.sign_paid_job(spec, d.as_deployment(), "relay", u64::MAX);
        let req = req(&job.spec);
        core.step(Input::CreateJob { request, job: Box::new(job), req, origin: Some(origin.parse().unwrap()) }, now);
    }

    fn accepted(ready: &Ready) -> Vec<RequestId> {
        ready.replies.iter().filter(|(_, r)| r.is_ok()).map(|(id, _)| *id).collect()
    }

    fn refused(ready: &Ready) -> Vec<RequestId> {
        ready.replies.iter().filter(|(_, r)| r.is_err()).map(|(id, _)| *id).collect()
    }

    fn assignments(ready: &Ready) -> Vec<(PublicKey, Assignment)> {
        ready
            .messages
            .iter()
            .filter_map(|(k, m)| match m {
                RelayMessage::Assign(a) => Some((*k, a.clone())),
                _ => None,
            })
            .collect()
    }

    /// Returns `hash(lease)` for every lease in `leases`.
    fn answer_all(core: &mut Core, leases: &[(PublicKey, Assignment)], hash: impl Fn(&Assignment) -> Hash32, now: Now) {
        for (key, a) in leases {
            let input = Input::Result {
                key: *key,
                lease: a.lease,
                task: a.task,
                output_hash: hash(a),
                output_len: 8,
                signature: Signature([0; 64]),
            };
            core.step(input, now);
        }
    }

    #[test]
    fn a_task_runs_only_once_its_inputs_are_verified_and_binds_their_agreed_outputs() {
        use starling_protocol::job::{OutputOf, TaskInput};
        let mut core = Core::new(quiet(), None, 1, 1);
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        // Tasks 0 and 1 are leaves; 2 reads both (and a blob); 3 reads 2.
        let mut job = spec(4, 0, 0);
        let blob = Hash32([9; 32]);
        job.tasks[2].inputs = vec![
            TaskInput::Output(OutputOf { task: 1 }),
            TaskInput::Blob(blob),
            TaskInput::Output(OutputOf { task: 0 }),
        ];
        job.tasks[3].inputs = vec![TaskInput::Output(OutputOf { task: 2 })];
        post(&mut core, 1, &Keypair::from_seed([100; 32]), job, "10.0.0.1", at(0));
        let out = |a: &Assignment| Hash32([a.task.index as u8 + 1; 32]);
        let mut handed: Vec<u32> = Vec::new();
        for round in 1..=3u64 {
            core.tick(at(round));
            let leases = assignments(&core.ready(at(round)));
            let tasks: BTreeSet<u32> = leases.iter().map(|(_, a)| a.task.index).collect();
            handed.extend(&tasks);
            match round {
                1 => assert_eq!(tasks, BTreeSet::from([0, 1]), "only the leaves go out first"),
                2 => {
                    assert_eq!(tasks, BTreeSet::from([2]));
                    // Bound in its own order: task 1's output, the blob, task 0's output.
                    assert!(leases.iter().all(|(_, a)| a.inputs == vec![Hash32([2; 32]), blob, Hash32([1; 32])]));
                }
                _ => {
                    assert_eq!(tasks, BTreeSet::from([3]));
                    assert!(leases.iter().all(|(_, a)| a.inputs == vec![Hash32([3; 32])]));
                }
            }
            answer_all(&mut core, &leases, out, at(round));
        }
        assert_eq!(handed, vec![0, 1, 2, 3]);
        let ready = core.ready(at(4));
        assert!(ready.writes.iter().any(|w| matches!(w, Write::FinishJob { state: JobState::Done, .. })));
    }

    #[test]
    fn a_failed_task_fails_everything_that_reads_it_at_once() {
        use starling_protocol::job::{OutputOf, TaskInput};
        let mut core = Core::new(quiet(), None, 1, 1);
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        let mut job = spec(4, 0, 0);
        job.max_replicas = 2;
        job.tasks[1].inputs = vec![TaskInput::Output(OutputOf { task: 0 })];
        job.tasks[2].inputs = vec![TaskInput::Output(OutputOf { task: 1 })];
        post(&mut core, 1, &Keypair::from_seed([100; 32]), job, "10.0.0.1", at(0));
        core.tick(at(1));
        let leases = assignments(&core.ready(at(1)));
        assert_eq!(leases.iter().map(|(_, a)| a.task.index).collect::<BTreeSet<_>>(), BTreeSet::from([0, 3]));
        // Task 0's two replicas disagree and no more may be asked for: it fails, and so do 1 and 2,
        // which could never run; task 3 does not depend on it and is verified.
        answer_all(&mut core, &leases, |a| Hash32([if a.task.index == 0 { a.lease.0 as u8 } else { 4 }; 32]), at(1));
        core.tick(at(2));
        let ready = core.ready(at(2));
        let failed: BTreeSet<u32> = ready
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::FailTask { task, .. } => Some(task.index),
                _ => None,
            })
            .collect();
        assert_eq!(failed, BTreeSet::from([0, 1, 2]));
        assert!(assignments(&ready).is_empty(), "nothing downstream of a failure is handed out");
        assert!(ready.writes.iter().any(|w| matches!(w, Write::FinishJob { state: JobState::Failed, .. })));
    }

    #[test]
    fn a_slow_escrow_open_holds_up_nobody() {
        let mut core = Core::new(quiet(), Some(test_deployment()), 1, 1);
        let (payer, other) = (Keypair::from_seed([100; 32]), Keypair::from_seed([101; 32]));
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        post(&mut core, 1, &payer, spec(1, 10, 0), "10.0.0.1", at(0));
        core.tick(at(0));
        let ready = core.ready(at(0));
        // Asked of the escrow, not stored, not answered yet.
        assert_eq!(ready.escrow_opens.len(), 1);
        assert!(ready.replies.is_empty());
        assert!(!ready.writes.iter().any(|w| matches!(w, Write::InsertJob { .. })));
        // For a minute the escrow says nothing; heartbeats and other clients go on.
        for s in 1..=60 {
            core.step(Input::Heartbeat { key: worker(1), state: DeviceState::default() }, at(s));
            core.step(Input::Heartbeat { key: worker(2), state: DeviceState::default() }, at(s));
            if s == 30 {
                post(&mut core, 2, &other, spec(1, 0, 0), "10.0.1.1", at(s));
            }
            core.tick(at(s));
            let ready = core.ready(at(s));
            assert!(ready.disconnect.is_empty(), "second {s}: no worker is dropped");
            if s == 30 {
                assert_eq!(accepted(&ready), vec![2], "the unpaid job is taken at once");
                assert_eq!(assignments(&ready).len(), 2);
            }
        }
        core.step(Input::EscrowOpened { request: 1, outcome: OpenOutcome::Opened }, at(61));
        let ready = core.ready(at(61));
        assert_eq!(accepted(&ready), vec![1]);
        assert!(ready.writes.iter().any(|w| matches!(w, Write::InsertJob { id: JobId(1), .. })));
        assert_eq!(core.workers_online(), 2);
    }

    #[test]
    fn ids_taken_in_escrow_are_skipped_up_to_a_bound() {
        let mut core = Core::new(quiet(), Some(test_deployment()), 1, 5);
        let client = Keypair::from_seed([100; 32]);
        post(&mut core, 1, &client, spec(1, 10, 0), "10.0.0.1", at(0));
        let ready = core.ready(at(0));
        assert_eq!(ready.escrow_opens[0].1.job, JobId(5));
        core.step(Input::EscrowOpened { request: 1, outcome: OpenOutcome::IdTaken }, at(0));
        let ready = core.ready(at(0));
        assert_eq!(ready.escrow_opens[0].1.job, JobId(6), "the next id is tried");
        for _ in 0..MAX_ESCROW_ID_SKIPS {
            core.step(Input::EscrowOpened { request: 1, outcome: OpenOutcome::IdTaken }, at(0));
        }
        let ready = core.ready(at(0));
        assert_eq!(refused(&ready), vec![1]);
        // The client's slot is free again and a later job gets a fresh id.
        post(&mut core, 2, &client, spec(1, 10, 1), "10.0.0.1", at(1));
        let ready = core.ready(at(1));
        assert!(ready.escrow_opens[0].1.job.0 > 6 + u64::from(MAX_ESCROW_ID_SKIPS) - 1);
    }

    #[test]
    fn a_paid_job_without_a_deposit_authorization_is_refused_and_stored_nowhere() {
        let client = Keypair::from_seed([9; 32]);
        let unsigned = |core: &mut Core| {
            let job = client.sign_job(spec(1, 10, 0));
            let req = req(&job.spec);
            core.step(
                Input::CreateJob { request: 1, job: Box::new(job), req, origin: Some("10.0.0.1".parse().unwrap()) },
                at(0),
            );
            core.ready(at(0))
        };
        let mut core = Core::new(quiet(), Some(test_deployment()), 1, 1);
        let ready = unsigned(&mut core);
        assert_eq!(refused(&ready), vec![1]);
        assert!(ready.escrow_opens.is_empty() && ready.writes.is_empty(), "nothing opened or stored");
        // Without escrow the same job runs unpaid.
        let mut unpaid = Core::new(quiet(), None, 1, 1);
        let ready = unsigned(&mut unpaid);
        assert!(refused(&ready).is_empty() && ready.escrow_opens.is_empty());
        assert!(ready.writes.iter().any(|w| matches!(w, Write::InsertJob { .. })), "stored to run unpaid");
    }

    #[test]
    fn a_refused_deposit_leaves_no_trace() {
        let mut core = Core::new(
            CoreConfig { max_running_jobs_per_client: 1, ..Default::default() },
            Some(test_deployment()),
            1,
            1,
        );
        let client = Keypair::from_seed([100; 32]);
        post(&mut core, 1, &client, spec(1, 10, 0), "10.0.0.1", at(0));
        // While it is being opened it counts against the client.
        post(&mut core, 2, &client, spec(1, 10, 1), "10.0.0.1", at(0));
        assert_eq!(refused(&core.ready(at(0))), vec![2]);
        core.step(
            Input::EscrowOpened {
                request: 1,
                outcome: OpenOutcome::Failed(EscrowError::InsufficientFunds("no money".into())),
            },
            at(1),
        );
        let ready = core.ready(at(1));
        assert!(matches!(ready.replies[..], [(1, Err(Refusal::Escrow(EscrowError::InsufficientFunds(_))))]));
        assert!(ready.writes.is_empty());
        assert_eq!(core.jobs_running(), 0);
        // The same signed job may be posted again once funded: it was never stored.
        post(&mut core, 3, &client, spec(1, 10, 0), "10.0.0.1", at(2));
        assert_eq!(core.ready(at(2)).escrow_opens.len(), 1);
    }

    #[test]
    fn fresh_keys_gain_no_unpaid_work() {
        let config = CoreConfig { max_unpaid_jobs: 20, max_unpaid_jobs_per_network: 4, ..Default::default() };
        let mut core = Core::new(config, Some(test_deployment()), 1, 1);
        for n in 0..10u8 {
            let key = Keypair::from_seed([n; 32]);
            post(&mut core, u64::from(n), &key, spec(1, 0, 0), &format!("192.0.2.{n}"), at(0));
        }
        let ready = core.ready(at(0));
        assert_eq!(accepted(&ready).len(), 4, "one network, however many keys");
        // Another network still gets in, and so does paid work from the first.
        let stranger = Keypair::from_seed([200; 32]);
        post(&mut core, 100, &stranger, spec(1, 0, 0), "198.51.100.7", at(0));
        post(&mut core, 101, &Keypair::from_seed([1; 32]), spec(1, 10, 1), "192.0.2.1", at(0));
        let ready = core.ready(at(0));
        assert_eq!(accepted(&ready), vec![100]);
        assert_eq!(ready.escrow_opens.len(), 1);
        // IPv6 addresses count by /48.
        assert_eq!(network_of("2001:db8:1:2::1".parse().unwrap()), network_of("2001:db8:1:ffff::9".parse().unwrap()));
        assert_ne!(network_of("2001:db8:1::1".parse().unwrap()), network_of("2001:db8:2::1".parse().unwrap()));
        assert_eq!(network_of("::ffff:192.0.2.9".parse().unwrap()), network_of("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn unpaid_work_has_a_relay_wide_cap() {
        let config = CoreConfig { max_unpaid_jobs: 3, max_unpaid_jobs_per_network: 100, ..Default::default() };
        let mut core = Core::new(config, None, 1, 1);
        for n in 0..5u8 {
            post(&mut core, u64::from(n), &Keypair::from_seed([n; 32]), spec(1, 0, 0), &format!("10.{n}.0.1"), at(0));
        }
        assert_eq!(accepted(&core.ready(at(0))).len(), 3);
    }

    #[test]
    fn a_replayed_job_is_refused_while_it_runs() {
        let mut core = Core::new(quiet(), None, 1, 1);
        let client = Keypair::from_seed([100; 32]);
        post(&mut core, 1, &client, spec(1, 0, 0), "10.0.0.1", at(0));
        post(&mut core, 2, &client, spec(1, 0, 0), "10.0.0.1", at(0));
        let ready = core.ready(at(0));
        assert_eq!(accepted(&ready), vec![1]);
        assert!(matches!(ready.replies[1], (2, Err(Refusal::Duplicate(_)))));
    }

    #[test]
    fn job_ids_never_overflow() {
        let mut core = Core::new(quiet(), None, 1, i64::MAX as u64 - 1);
        let client = Keypair::from_seed([100; 32]);
        post(&mut core, 1, &client, spec(1, 0, 0), "10.0.0.1", at(0));
        post(&mut core, 2, &client, spec(1, 0, 1), "10.0.0.1", at(0));
        let ready = core.ready(at(0));
        assert_eq!(accepted(&ready), vec![1]);
        assert!(matches!(ready.replies[1], (2, Err(Refusal::Limit(_)))));
    }

    /// One task through its whole life: leased twice, both results in, verified, settled.
    #[test]
    fn a_task_is_leased_returned_verified_and_settled() {
        let mut core = Core::new(quiet(), None, 1, 1);
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        post(&mut core, 1, &Keypair::from_seed([100; 32]), spec(1, 0, 0), "10.0.0.1", at(0));
        core.tick(at(0));
        let ready = core.ready(at(0));
        let leases = assignments(&ready);
        assert_eq!(leases.len(), 2);
        assert_ne!(leases[0].0, leases[1].0, "replicas go to distinct workers");
        // Open leases are not written: a replica's row is written once, with its result.
        assert!(!ready.writes.iter().any(|w| matches!(w, Write::Returned(_) | Write::LeaseEnded { .. })));
        assert!(
            ready.writes.iter().any(|w| matches!(w, Write::ReserveLeases { below } if *below > leases[1].1.lease.0))
        );
        let hash = Hash32([7; 32]);
        for (key, a) in &leases {
            let signature = Signature([0; 64]);
            core.step(
                Input::Result { key: *key, lease: a.lease, task: a.task, output_hash: hash, output_len: 8, signature },
                at(1),
            );
        }
        let ready = core.ready(at(1));
        assert_eq!(ready.writes.iter().filter(|w| matches!(w, Write::Returned(_))).count(), 2);
        assert!(
            ready.writes.iter().any(|w| matches!(w, Write::VerifyTask { output_hash, .. } if *output_hash == hash))
        );
        assert_eq!(
            ready
                .writes
                .iter()
                .filter(|w| matches!(w, Write::ReplicaState { state: ReplicaState::Accepted, .. }))
                .count(),
            2
        );
        assert!(ready.writes.iter().any(|w| matches!(w, Write::FinishJob { state: JobState::Done, .. })));
        assert_eq!(ready.messages.iter().filter(|(_, m)| matches!(m, RelayMessage::Ack { .. })).count(), 2);
        assert!(matches!(ready.settle[..], [SettleNote::Verified(_), SettleNote::Finished(JobId(1))]));
        // Worker records are written once per worker per batch.
        assert_eq!(ready.writes.iter().filter(|w| matches!(w, Write::WorkerCounts { .. })).count(), 2);
    }

    fn answer(core: &mut Core, (key, a): &(PublicKey, Assignment), hash: u8, now: Now) {
        let signature = Signature([0; 64]);
        let input = Input::Result {
            key: *key,
            lease: a.lease,
            task: a.task,
            output_hash: Hash32([hash; 32]),
            output_len: 8,
            signature,
        };
        core.step(input, now);
    }

    fn verified(ready: &Ready) -> Option<Hash32> {
        ready.writes.iter().find_map(|w| match w {
            Write::VerifyTask { output_hash, .. } => Some(*output_hash),
            _ => None,
        })
    }

    fn hidden(audit_rate: f64, extra_rate: f64) -> CoreConfig {
        CoreConfig { audit_rate, extra_rate, ..quiet() }
    }

    /// A result back in under half the job's median time is fast (always audited); it takes
    /// eight accepted results before anything is.
    #[test]
    fn a_result_far_faster_than_the_jobs_median_is_fast() {
        let job = Keypair::from_seed([100; 32]).sign_job(spec(1, 10, 0));
        let mut track = JobTrack {
            digest: job.spec.digest(),
            job: Arc::new(job.clone()),
            summary: JobSummary {
                id: JobId(1),
                label: String::new(),
                kernel: String::new(),
                client: job.client,
                state: JobState::Running,
                tasks_total: 1,
                tasks_verified: 0,
                tasks_failed: 0,
                created_at_ms: 0,
                finished_at_ms: None,
                failure: None,
            },
            deadline_ms: 0,
            unpaid_from: None,
            durations: HashMap::new(),
            graph: None,
        };
        for ms in [3000, 4000, 2000, 5000, 3500, 2500, 4500] {
            track.took(0, ms);
        }
        assert!(!track.fast(0, 10), "seven results are too few to judge");
        track.took(0, 3000);
        // Median of the eight: 3500.
        for (ms, fast) in [(10, true), (1749, true), (1750, false), (3000, false)] {
            assert_eq!(track.fast(0, ms), fast, "{ms} ms");
        }
        // Each kernel has its own median: a quick kernel's results are judged among their own.
        let mut two = (*track.job).clone();
        two.spec.kernels = vec![two.spec.kernel.clone()];
        two.spec.tasks.push(TaskSpec { kernel: 1, ..two.spec.tasks[0].clone() });
        track.job = Arc::new(two);
        assert!(!track.fast(1, 10), "the second kernel has no median of its own yet");
        for _ in 0..8 {
            track.took(1, 20);
        }
        assert!(!track.fast(1, 15) && track.fast(1, 9) && track.fast(0, 10));
    }

    /// A core with `workers` workers online and one paid task posted, opened in escrow and
    /// leased; with the leases handed out.
    fn paid_task(config: CoreConfig, workers: u8) -> (Core, Vec<(PublicKey, Assignment)>) {
        let mut core = Core::new(config, Some(test_deployment()), 1, 1);
        for n in 1..=workers {
            online(&mut core, n, at(0));
        }
        post(&mut core, 1, &Keypair::from_seed([100; 32]), spec(1, 10, 0), "10.0.0.1", at(0));
        core.step(Input::EscrowOpened { request: 1, outcome: OpenOutcome::Opened }, at(0));
        core.tick(at(0));
        let leases = assignments(&core.ready(at(0)));
        (core, leases)
    }

    fn checks(ready: &Ready) -> Vec<LeaseId> {
        ready.checks.iter().map(|c| c.lease).collect()
    }

    /// A result that fails a known-answer check is thrown out before the task is decided, with
    /// every result that signed the same bytes; their workers are barred from paid work (not
    /// from unpaid work) and their records reset; the task is decided by fresh replicas.
    #[test]
    fn a_result_that_fails_a_known_answer_check_is_thrown_out_and_its_worker_barred() {
        let config = CoreConfig { canary_rate: 1.0, ..hidden(0.0, 0.0) };
        let (mut core, leases) = paid_task(config, 5);
        assert_eq!(leases.len(), 2);
        let liar = leases[1].0;
        for _ in 0..20 {
            core.sched.record_accepted(&liar);
        }
        answer(&mut core, &leases[0], 7, at(1));
        answer(&mut core, &leases[1], 9, at(1));
        let ready = core.ready(at(1));
        assert_eq!(checks(&ready), vec![leases[0].1.lease, leases[1].1.lease], "every result is checked");
        assert_eq!(verified(&ready), None, "nothing is decided while a check is out");
        core.step(
            Input::Checked { task: leases[1].1.task, lease: leases[1].1.lease, outcome: CheckOutcome::Differs },
            at(2),
        );
        core.tick(at(2));
        let ready = core.ready(at(2));
        assert!(ready.writes.iter().all(|w| !matches!(w, Write::VerifyTask { .. } | Write::FailTask { .. })));
        assert!(ready.writes.iter().any(|w| matches!(
            w,
            Write::ReplicaState { lease, state: ReplicaState::Rejected } if *lease == leases[1].1.lease
        )));
        assert_eq!(ready.barred, vec![liar]);
        let record = core.record(&liar).unwrap();
        assert!(record.barred && record.valid_run == 0, "{record:?}");
        // Once the other check is in, another worker is asked; its agreement with the first
        // decides the task.
        core.step(
            Input::Checked { task: leases[0].1.task, lease: leases[0].1.lease, outcome: CheckOutcome::Matches },
            at(2),
        );
        core.tick(at(2));
        let ready = core.ready(at(2));
        let more = assignments(&ready);
        assert!(ready.writes.iter().all(|w| !matches!(w, Write::VerifyTask { .. } | Write::FailTask { .. })));
        assert_eq!(more.len(), 1);
        assert!(more[0].0 != liar && more[0].0 != leases[0].0);
        answer(&mut core, &more[0], 7, at(3));
        let ready = core.ready(at(3));
        assert!(checks(&ready).is_empty(), "an answer the relay already confirmed is not checked again");
        assert_eq!(verified(&ready), Some(Hash32([7; 32])));
        // Paid work never reaches the barred key again; unpaid work still may.
        post(&mut core, 2, &Keypair::from_seed([101; 32]), spec(20, 10, 1), "10.0.0.1", at(4));
        core.step(Input::EscrowOpened { request: 2, outcome: OpenOutcome::Opened }, at(4));
        core.tick(at(4));
        let paid = assignments(&core.ready(at(4)));
        assert!(!paid.is_empty() && paid.iter().all(|(k, _)| *k != liar));
        // The barred key reconnects: still barred.
        let n = (1..=5).find(|&n| worker(n) == liar).unwrap();
        online(&mut core, n, at(5));
        assert!(core.record(&liar).unwrap().barred);
    }

    /// Results that disagree on a job the relay can compute are settled by its own answer, not
    /// by a vote: the side it matches stands whatever its number, every other answer is thrown
    /// out (under exact comparison there is one right answer) and its workers barred, and their
    /// signatures stay slashing evidence once the task settles. A cartel that wins the sampled
    /// vote cannot outvote an honest minority, so the honest are never slashed for it.
    #[test]
    fn a_dispute_on_a_checkable_job_is_settled_by_the_relays_answer() {
        let (mut core, leases) = paid_task(CoreConfig { canary_rate: 1.0, ..hidden(0.0, 0.0) }, 6);
        let (liar, honest) = (&leases[0], &leases[1]);
        answer(&mut core, liar, 7, at(1));
        answer(&mut core, honest, 9, at(1));
        assert_eq!(checks(&core.ready(at(1))).len(), 2);
        // The checker was too busy for either: the disagreement sends both answers again.
        for (_, a) in &leases {
            core.step(Input::Checked { task: a.task, lease: a.lease, outcome: CheckOutcome::Unchecked }, at(1));
        }
        let ready = core.ready(at(1));
        assert_eq!(checks(&ready), vec![liar.1.lease, honest.1.lease], "each answer once, by hash");
        assert_eq!(verified(&ready), None);
        // The relay's answer matches the honest one: the other is thrown out at once.
        core.step(Input::Checked { task: honest.1.task, lease: honest.1.lease, outcome: CheckOutcome::Matches }, at(2));
        core.step(Input::Checked { task: liar.1.task, lease: liar.1.lease, outcome: CheckOutcome::Unchecked }, at(2));
        core.tick(at(2));
        let ready = core.ready(at(2));
        assert_eq!(ready.barred, vec![liar.0]);
        assert!(ready.writes.iter().any(|w| matches!(
            w,
            Write::ReplicaState { lease, state: ReplicaState::Rejected } if *lease == liar.1.lease
        )));
        let more = assignments(&ready);
        assert_eq!(more.len(), 1, "one more replica for the quorum");
        answer(&mut core, &more[0], 9, at(3));
        let ready = core.ready(at(3));
        assert_eq!(verified(&ready), Some(Hash32([9; 32])));
        assert!(
            !ready.writes.iter().any(|w| matches!(w, Write::NotEvidence { .. })),
            "the thrown-out signature is evidence"
        );
        assert!(!ready.writes.iter().any(|w| matches!(
            w,
            Write::ReplicaState { lease, state: ReplicaState::Rejected } if *lease == honest.1.lease
        )));
    }

    /// The relay's answer is remembered for the task's life: a second key that signs the refuted
    /// bytes later (an escalation replica the cartel landed) is thrown out as soon as its result
    /// is in, and never votes; under exact comparison so is any answer but the confirmed one.
    #[test]
    fn a_refuted_answer_signed_again_is_thrown_out_at_once() {
        let (mut core, leases) = paid_task(CoreConfig { canary_rate: 1.0, ..hidden(0.0, 0.0) }, 6);
        answer(&mut core, &leases[0], 7, at(1));
        answer(&mut core, &leases[1], 9, at(1));
        core.step(
            Input::Checked { task: leases[0].1.task, lease: leases[0].1.lease, outcome: CheckOutcome::Differs },
            at(1),
        );
        core.step(
            Input::Checked { task: leases[1].1.task, lease: leases[1].1.lease, outcome: CheckOutcome::Matches },
            at(1),
        );
        core.tick(at(1));
        let ready = core.ready(at(1));
        assert_eq!(ready.barred, vec![leases[0].0]);
        let more = assignments(&ready);
        assert_eq!(more.len(), 1);
        // The replica's holder signs the refuted bytes again: out before any vote, no check.
        answer(&mut core, &more[0], 7, at(2));
        core.tick(at(2));
        let ready = core.ready(at(2));
        assert!(checks(&ready).is_empty());
        assert_eq!(ready.barred, vec![more[0].0]);
        assert_eq!(verified(&ready), None);
        let again = assignments(&ready);
        assert_eq!(again.len(), 1);
        // A third answer, neither refuted nor confirmed: wrong all the same under exact comparison.
        answer(&mut core, &again[0], 8, at(3));
        core.tick(at(3));
        let ready = core.ready(at(3));
        assert_eq!(ready.barred, vec![again[0].0]);
        let last = assignments(&ready);
        answer(&mut core, &last[0], 9, at(4));
        assert_eq!(verified(&core.ready(at(4))), Some(Hash32([9; 32])));
    }

    /// However rare the drawn checks, a job's first results are always checked: before it has a
    /// median time nothing can be called fast, and workers that answer without computing would
    /// set that median themselves.
    #[test]
    fn a_jobs_first_results_are_always_checked() {
        let (mut core, leases) = paid_task(CoreConfig { canary_rate: 1e-12, ..hidden(0.0, 0.0) }, 3);
        answer(&mut core, &leases[0], 7, at(1));
        assert_eq!(checks(&core.ready(at(1))), vec![leases[0].1.lease]);
        let (mut core, leases) = paid_task(CoreConfig { canary_rate: 0.0, ..hidden(0.0, 0.0) }, 3);
        answer(&mut core, &leases[0], 7, at(1));
        assert!(checks(&core.ready(at(1))).is_empty(), "a rate of 0 turns checks off");
    }

    /// A check that could not be made (a busy checker) decides nothing against anyone.
    #[test]
    fn an_unchecked_result_counts_as_an_ordinary_one() {
        let (mut core, leases) = paid_task(CoreConfig { canary_rate: 1.0, ..hidden(0.0, 0.0) }, 3);
        answer(&mut core, &leases[0], 7, at(1));
        answer(&mut core, &leases[1], 7, at(1));
        for (_, a) in &leases {
            core.step(Input::Checked { task: a.task, lease: a.lease, outcome: CheckOutcome::Unchecked }, at(1));
        }
        let ready = core.ready(at(1));
        assert_eq!(verified(&ready), Some(Hash32([7; 32])));
        assert!(ready.barred.is_empty());
    }

    /// Client WGSL has no reference, and an exact job of a float kernel none that every device
    /// matches: neither is ever checked.
    #[test]
    fn only_jobs_the_relay_can_compute_are_checked() {
        let mut s = spec(1, 10, 0);
        assert!(checkable(&s, 0));
        assert!(!checkable(&s, 1), "no such task");
        s.kernel = KernelSpec::Builtin { name: BuiltinKernel::MatmulF32 };
        assert!(!checkable(&s, 0));
        s.comparison = Comparison::Tolerance { rel: 1e-3, abs: 1e-3 };
        assert!(checkable(&s, 0));
        s.kernel = KernelSpec::Wgsl { source: String::new(), entry_point: "main".into() };
        assert!(!checkable(&s, 0));
        // Per task: a task running a built-in of a job whose first kernel is WGSL is checkable.
        s.kernels = vec![KernelSpec::Builtin { name: BuiltinKernel::MatmulF32 }];
        s.tasks[0].kernel = 1;
        assert!(checkable(&s, 0));
    }

    fn adaptive_spec(tasks: u32, audit_percent: u8) -> JobSpec {
        JobSpec { quorum: 1, adaptive: Some(starling_protocol::job::Adaptive { audit_percent }), ..spec(tasks, 10, 0) }
    }

    /// A core with a fixed seed (its draws are then fixed too), workers 1..=n online, and
    /// worker 1 on a run of `run` verified results.
    fn adaptive_core(n: u8, run: u32) -> Core {
        let scheduler = crate::scheduler::Config { seed: [7; 32], ..Default::default() };
        let mut core = Core::new(CoreConfig { scheduler, ..hidden(0.0, 0.0) }, Some(test_deployment()), 1, 1);
        for k in 1..=n {
            online(&mut core, k, at(0));
        }
        for _ in 0..run {
            core.sched.record_accepted(&worker(1));
        }
        core
    }

    fn post_paid(core: &mut Core, spec: JobSpec, now: Now) -> Vec<(PublicKey, Assignment)> {
        post(core, 1, &Keypair::from_seed([100; 32]), spec, "10.0.0.1", now);
        core.step(Input::EscrowOpened { request: 1, outcome: OpenOutcome::Opened }, now);
        core.tick(now);
        assignments(&core.ready(now))
    }

    /// Adaptive replication: a worker with a long verified run gets the task's first replica and
    /// runs it alone; its result is paid but does not lengthen its run (only results someone
    /// else computed too do).
    #[test]
    fn adaptive_replication_runs_a_task_alone_on_a_long_proven_worker() {
        let mut core = adaptive_core(3, 1000);
        let leases = post_paid(&mut core, adaptive_spec(1, 1), at(0));
        assert_eq!(leases.len(), 1, "one replica first");
        assert_eq!(leases[0].0, worker(1), "the reliable worker anchors it");
        core.tick(at(1));
        assert!(assignments(&core.ready(at(1))).is_empty(), "it runs alone");
        answer(&mut core, &leases[0], 7, at(2));
        let ready = core.ready(at(2));
        assert_eq!(verified(&ready), Some(Hash32([7; 32])));
        assert_eq!(core.record(&worker(1)).unwrap().valid_run, 1000, "an unchecked result proves nothing");
    }

    /// The same proven worker, but the task is read by another: it gets the job's replicas, so
    /// no unaudited answer is bound into what reads it.
    #[test]
    fn adaptive_replication_never_runs_alone_a_task_another_reads() {
        use starling_protocol::job::{OutputOf, TaskInput};
        let mut core = adaptive_core(3, 1000);
        let mut spec = adaptive_spec(2, 1);
        spec.tasks[1].inputs = vec![TaskInput::Output(OutputOf { task: 0 })];
        let leases = post_paid(&mut core, spec, at(0));
        assert_eq!(leases.len(), 1, "one replica first, of the leaf");
        core.tick(at(1));
        assert_eq!(assignments(&core.ready(at(1))).len(), 1, "and its second replica: not alone");
    }

    /// An exact built-in is compared exactly even in a job that compares within a tolerance: a
    /// liar's integers read as floats would pass any tolerance.
    #[test]
    fn exact_builtins_compare_exactly_in_a_tolerance_job() {
        let mut s = JobSpec { comparison: Comparison::Tolerance { rel: 1e-3, abs: 1e-3 }, ..spec(2, 0, 0) };
        s.kernels = vec![KernelSpec::Wgsl { source: String::new(), entry_point: "main".into() }];
        s.tasks[1].kernel = 1;
        assert_eq!(task_comparison(&s, 0), Comparison::Exact, "monte_carlo_pi");
        assert_eq!(task_comparison(&s, 1), s.comparison, "client WGSL: as the job says");
        s.kernel = KernelSpec::Builtin { name: BuiltinKernel::MatmulF32 };
        assert_eq!(task_comparison(&s, 0), s.comparison, "a float built-in: as the job says");
    }

    /// A task whose first worker has no long record gets the job's replicas and waits for all
    /// of them, although the quorum is 1.
    #[test]
    fn adaptive_replication_replicates_for_a_worker_without_a_record() {
        let mut core = adaptive_core(3, 0);
        let leases = post_paid(&mut core, adaptive_spec(1, 1), at(0));
        assert_eq!(leases.len(), 1);
        core.tick(at(1));
        let more = assignments(&core.ready(at(1)));
        assert_eq!(more.len(), 1, "the second replica follows");
        answer(&mut core, &leases[0], 7, at(2));
        assert_eq!(verified(&core.ready(at(2))), None, "waits for the second result");
        answer(&mut core, &more[0], 7, at(3));
        assert_eq!(verified(&core.ready(at(3))), Some(Hash32([7; 32])));
        assert_eq!(core.record(&leases[0].0).unwrap().valid_run, 1);
    }

    /// A task run alone is audited at the client's rate; an audit that disagrees is a dispute
    /// that one sampled vote does not settle.
    #[test]
    fn a_task_run_alone_is_audited_at_the_clients_rate() {
        let mut core = adaptive_core(4, 1000);
        for k in 2..=4 {
            for _ in 0..20 {
                core.sched.record_accepted(&worker(k));
            }
        }
        let leases = post_paid(&mut core, adaptive_spec(1, 100), at(0));
        assert_eq!(leases.len(), 1);
        core.tick(at(1));
        assert!(assignments(&core.ready(at(1))).is_empty());
        answer(&mut core, &leases[0], 9, at(2));
        core.tick(at(2));
        let ready = core.ready(at(2));
        assert_eq!(verified(&ready), None, "held for its audit");
        let audit = assignments(&ready);
        assert_eq!(audit.len(), 1);
        answer(&mut core, &audit[0], 7, at(3));
        core.tick(at(3));
        let ready = core.ready(at(3));
        assert_eq!(verified(&ready), None, "one auditor against one worker settles nothing");
        let third = assignments(&ready);
        assert_eq!(third.len(), 1);
        answer(&mut core, &third[0], 7, at(4));
        let ready = core.ready(at(4));
        assert_eq!(verified(&ready), Some(Hash32([7; 32])));
        assert!(ready.writes.iter().any(|w| matches!(
            w,
            Write::ReplicaState { lease, state: ReplicaState::Rejected } if *lease == leases[0].1.lease
        )));
    }

    /// Worker records (runs, abandons, cooldowns, bars) are written when they change and put
    /// back into a fresh core: a restart forgets nobody's record.
    #[test]
    fn worker_records_survive_a_restart() {
        let mut core = Core::new(quiet(), Some(test_deployment()), 1, 1);
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        for _ in 0..12 {
            core.sched.record_accepted(&worker(1));
        }
        core.sched.bar(&worker(2));
        let ready = core.ready(at(5));
        let stored: Vec<(PublicKey, StoredRecord)> = ready
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::WorkerRecord { key, record } => Some((*key, *record)),
                _ => None,
            })
            .collect();
        assert_eq!(stored.len(), 2);
        let mut fresh = Core::new(quiet(), Some(test_deployment()), 1, 1);
        fresh.restore_records(stored, at(100));
        assert_eq!(fresh.record(&worker(1)).unwrap().valid_run, 12);
        assert!(fresh.sched.is_reliable(&worker(1)));
        let barred = fresh.record(&worker(2)).unwrap();
        assert!(barred.barred && barred.valid_run == 0);
        // Nothing changed since: nothing more to write.
        assert!(!core.ready(at(7)).writes.iter().any(|w| matches!(w, Write::WorkerRecord { .. })));
    }

    /// Two workers that agree on a wrong answer do not settle it when an audit is drawn: the
    /// task waits for a third, independent worker, whose different answer makes it a dispute.
    #[test]
    fn an_agreed_paid_task_may_wait_for_a_hidden_audit_that_turns_agreement_into_dispute() {
        let (mut core, leases) = paid_task(hidden(1.0, 0.0), 3);
        assert_eq!(leases.len(), 2, "the spec's two replicas, nothing that reveals an audit");
        for l in &leases {
            answer(&mut core, l, 9, at(1));
        }
        core.tick(at(1));
        let ready = core.ready(at(1));
        assert_eq!(verified(&ready), None, "two agreeing results are held for the audit");
        let audit = assignments(&ready);
        assert_eq!(audit.len(), 1);
        assert!(!leases.iter().any(|(k, _)| *k == audit[0].0), "the audit goes to another worker");
        assert_eq!(audit[0].1.task, leases[0].1.task);
        assert_eq!(
            (audit[0].1.lease_ms, &audit[0].1.spec_digest),
            (leases[0].1.lease_ms, &leases[0].1.spec_digest),
            "an audit lease looks like any other"
        );
        answer(&mut core, &audit[0], 7, at(2));
        core.tick(at(2));
        let ready = core.ready(at(2));
        assert_eq!(verified(&ready), None, "2 against 1 is no supermajority: it escalates");
        assert!(ready.writes.iter().all(|w| !matches!(w, Write::ReplicaState { .. })));
    }

    /// A hidden replica nobody independent takes (here the only other worker is paused) holds
    /// an agreed task for `hold_wait_ms`, no longer.
    #[test]
    fn a_hidden_replica_nobody_takes_is_given_up_after_the_wait() {
        let config = hidden(1.0, 0.0);
        let wait = config.hold_wait_ms;
        let (mut core, leases) = paid_task(config, 3);
        let idle = (1..=3).map(worker).find(|k| leases.iter().all(|(h, _)| h != k)).unwrap();
        let paused = DeviceState { accepting: false, ..DeviceState::default() };
        core.step(Input::Heartbeat { key: idle, state: paused }, at(0));
        for l in &leases {
            answer(&mut core, l, 9, at(1));
        }
        let mut s = 1;
        while s * 1000 < 1000 + wait {
            for n in 1..=3 {
                let state = if worker(n) == idle { paused } else { DeviceState::default() };
                core.step(Input::Heartbeat { key: worker(n), state }, at(s));
            }
            core.tick(at(s));
            let ready = core.ready(at(s));
            assert_eq!(verified(&ready), None, "second {s}: still waiting for the audit");
            assert!(assignments(&ready).is_empty());
            s += 1;
        }
        core.tick(at(s));
        assert_eq!(verified(&core.ready(at(s))), Some(Hash32([9; 32])), "decided without the audit at {s} s");
    }

    /// The wait bounds only a hidden replica nobody took: one that was taken is answered (or
    /// abandoned, at the holder's cost), so an auditor cannot time its own audit out by stalling.
    #[test]
    fn a_taken_audit_is_waited_for_past_the_hold_wait() {
        let config = hidden(1.0, 0.0);
        let wait = config.hold_wait_ms;
        let (mut core, leases) = paid_task(config, 3);
        for l in &leases {
            answer(&mut core, l, 9, at(1));
        }
        core.tick(at(1));
        let audit = assignments(&core.ready(at(1)));
        assert_eq!(audit.len(), 1);
        let end = (wait / 1000) + 5;
        for s in 2..=end {
            for n in 1..=3 {
                core.step(Input::Heartbeat { key: worker(n), state: DeviceState::default() }, at(s));
            }
            core.tick(at(s));
            assert_eq!(verified(&core.ready(at(s))), None, "second {s}: the running audit is waited for");
        }
        answer(&mut core, &audit[0], 9, at(end + 1));
        assert_eq!(verified(&core.ready(at(end + 1))), Some(Hash32([9; 32])));
    }

    /// No hidden replica where nobody else could take one, nor on unpaid jobs (nothing to slash):
    /// two workers alone settle at once.
    #[test]
    fn hidden_replicas_are_drawn_only_for_paid_jobs_with_other_workers_online() {
        for (workers, price, held) in [(2u8, 10u64, false), (3, 0, false), (3, 10, true)] {
            let mut core = Core::new(hidden(1.0, 0.0), Some(test_deployment()), 1, 1);
            for n in 1..=workers {
                online(&mut core, n, at(0));
            }
            post(&mut core, 1, &Keypair::from_seed([100; 32]), spec(1, price, 0), "10.0.0.1", at(0));
            core.step(Input::EscrowOpened { request: 1, outcome: OpenOutcome::Opened }, at(0));
            core.tick(at(0));
            for l in &assignments(&core.ready(at(0))) {
                answer(&mut core, l, 9, at(1));
            }
            core.tick(at(1));
            assert_eq!(verified(&core.ready(at(1))).is_none(), held, "{workers} workers, price {price}");
        }
    }

    /// An unannounced extra replica: the task goes to one more worker than the spec says, and
    /// is decided only with its answer.
    #[test]
    fn an_extra_replica_is_leased_unannounced_and_waited_for() {
        let (mut core, leases) = paid_task(hidden(0.0, 1.0), 4);
        assert_eq!(leases.len(), 3);
        answer(&mut core, &leases[0], 9, at(1));
        answer(&mut core, &leases[1], 9, at(1));
        assert_eq!(verified(&core.ready(at(1))), None, "the extra replica is waited for");
        answer(&mut core, &leases[2], 9, at(2));
        assert_eq!(verified(&core.ready(at(2))), Some(Hash32([9; 32])));
    }

    #[test]
    fn a_result_for_someone_elses_lease_is_refused() {
        let mut core = Core::new(quiet(), None, 1, 1);
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        online(&mut core, 3, at(0));
        post(&mut core, 1, &Keypair::from_seed([100; 32]), spec(1, 0, 0), "10.0.0.1", at(0));
        core.tick(at(0));
        let (holder, a) = assignments(&core.ready(at(0)))[0].clone();
        let thief = [worker(1), worker(2), worker(3)].into_iter().find(|k| *k != holder).unwrap();
        let signature = Signature([0; 64]);
        core.step(
            Input::Result {
                key: thief,
                lease: a.lease,
                task: a.task,
                output_hash: Hash32([1; 32]),
                output_len: 8,
                signature,
            },
            at(1),
        );
        let ready = core.ready(at(1));
        assert!(ready.writes.is_empty());
        assert!(
            matches!(&ready.messages[..], [(k, RelayMessage::Error(e))] if *k == thief && e.code == ErrorCode::LeaseNotHeld)
        );
    }

    #[test]
    fn tolerance_jobs_read_outputs_off_the_core_before_deciding() {
        let mut core = Core::new(quiet(), None, 1, 1);
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        // A float kernel (client WGSL): an exact built-in is compared exactly whatever the job says.
        let spec = JobSpec {
            comparison: Comparison::Tolerance { rel: 1e-3, abs: 1e-3 },
            kernel: KernelSpec::Wgsl { source: String::new(), entry_point: "main".into() },
            ..spec(1, 0, 0)
        };
        post(&mut core, 1, &Keypair::from_seed([100; 32]), spec, "10.0.0.1", at(0));
        core.tick(at(0));
        let leases = assignments(&core.ready(at(0)));
        let outputs = [1.0f32.to_le_bytes(), 1.0001f32.to_le_bytes()];
        let hashes: Vec<Hash32> = outputs.iter().map(|o| starling_protocol::sha256(o)).collect();
        let signature = Signature([0; 64]);
        let report = |core: &mut Core, i: usize, now: Now| {
            let (key, a) = &leases[i];
            core.step(
                Input::Result {
                    key: *key,
                    lease: a.lease,
                    task: a.task,
                    output_hash: hashes[i],
                    output_len: 8,
                    signature,
                },
                now,
            );
        };
        let bytes = |i: usize| vec![(hashes[i], Some(Arc::<[u8]>::from(&outputs[i][..])))];
        report(&mut core, 0, at(1));
        let ready = core.ready(at(1));
        assert_eq!(ready.reads, vec![(leases[0].1.task, vec![hashes[0]])], "the bytes are read off the core");
        // A second result while the read is out asks for nothing more yet, and decides nothing.
        report(&mut core, 1, at(1));
        let ready = core.ready(at(1));
        assert!(ready.reads.is_empty());
        assert!(!ready.writes.iter().any(|w| matches!(w, Write::VerifyTask { .. })), "not decided without the bytes");
        core.step(Input::OutputsRead { task: leases[0].1.task, outputs: bytes(0) }, at(2));
        let ready = core.ready(at(2));
        assert_eq!(ready.reads, vec![(leases[0].1.task, vec![hashes[1]])]);
        core.step(Input::OutputsRead { task: leases[0].1.task, outputs: bytes(1) }, at(2));
        let ready = core.ready(at(2));
        assert!(
            ready
                .writes
                .iter()
                .any(|w| matches!(w, Write::VerifyTask { output_hash, .. } if *output_hash == hashes[0]))
        );
    }

    #[test]
    fn silent_workers_are_dropped_and_their_leases_lapse() {
        let mut core = Core::new(quiet(), None, 1, 1);
        online(&mut core, 1, at(0));
        online(&mut core, 2, at(0));
        online(&mut core, 3, at(0));
        post(&mut core, 1, &Keypair::from_seed([100; 32]), spec(1, 0, 0), "10.0.0.1", at(0));
        core.tick(at(0));
        let leases = assignments(&core.ready(at(0)));
        let lease_ms = quiet().scheduler.lease_ms;
        // Everyone but the first holder keeps talking.
        let silent = leases[0].0;
        let mut now = at(0);
        while now.mono_ms <= lease_ms + 1000 {
            now = Now { mono_ms: now.mono_ms + 1000, wall_ms: now.wall_ms + 1000 };
            for n in 1..=3 {
                if worker(n) != silent {
                    core.step(Input::Heartbeat { key: worker(n), state: DeviceState::default() }, now);
                }
            }
            core.tick(now);
            let ready = core.ready(now);
            if !ready.disconnect.is_empty() {
                assert_eq!(ready.disconnect, vec![silent]);
                assert!(ready.writes.iter().any(|w| matches!(w, Write::LeaseEnded { lease, state: ReplicaState::Lapsed, .. } if *lease == leases[0].1.lease)));
                // The replica goes to the one worker that does not hold the task yet.
                let again = assignments(&ready);
                assert_eq!(again.len(), 1);
                assert!(again[0].0 != silent && again[0].0 != leases[1].0);
                return;
            }
        }
        panic!("the silent worker was never dropped");
    }

    #[test]
    fn overdue_jobs_fail_their_pending_tasks() {
        let mut core = Core::new(quiet(), None, 1, 1);
        post(&mut core, 1, &Keypair::from_seed([100; 32]), spec(3, 0, 0), "10.0.0.1", at(0));
        core.tick(at(59));
        assert!(core.ready(at(59)).events.is_empty());
        core.tick(at(61));
        let ready = core.ready(at(61));
        assert_eq!(ready.writes.iter().filter(|w| matches!(w, Write::FailTask { .. })).count(), 3);
        assert!(ready.writes.iter().any(|w| matches!(w, Write::FinishJob { state: JobState::Failed, .. })));
        assert_eq!(core.jobs_running(), 0);
    }
}
