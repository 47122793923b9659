//! Decides which worker runs which replica. Pure: the relay feeds it events (workers coming and
//! going, heartbeats, jobs, replicas wanted, results) with the current time in milliseconds, and
//! drains new leases from [`Scheduler::assign`] and lapsed ones from [`Scheduler::expire`]. No
//! sockets, SQL or clocks inside, so every rule is table-tested below.
//!
//! Rules:
//! - a replica goes only to a worker that fits: accepting work, a free slot, battery not low
//!   unless charging, asking price at most the job's price, a GPU if the kernel is custom WGSL,
//!   device limits covering the job's buffers and dispatch, and (for homogeneous jobs) the adapter
//!   class of the task's first replica;
//! - a worker never holds two replicas of the same task (replicas must be independent), nor
//!   does an escrow owner through two of its keys, nor (on paid jobs, unless
//!   `distinct_networks` is off) two workers of one network (IPv4 /24, IPv6 /48);
//! - fairness across jobs: one replica per job per round, jobs in round-robin order;
//! - evenness across workers, and nothing a worker controls buys a place: the fitting worker
//!   with the fewest active leases wins (not per declared slot: slots only cap a worker's
//!   concurrency), then the earliest *turn*. A worker served, or one that connects, draws its
//!   next turn from a CSPRNG seeded secretly by the relay, behind the workers online (served) or
//!   anywhere among them (connected); a reconnect never moves a turn forward. Key bytes only
//!   break exact ties of the turn, which the secret draw makes unpredictable;
//! - records outlive connections: a worker's run of accepted results, its abandons and its turn
//!   are kept by key. A new key may hold at most [`NEW_WORKER_LEASES`] leases at once, one more
//!   per accepted result in a row;
//! - new keys earn trust: after `trusted_after` accepted results in a row a worker is reliable,
//!   and a task's last wanted replica goes only to a reliable worker when none of its holders is
//!   one and a reliable worker that may take it is online (BOINC's reliable hosts as anchors);
//! - abandoning costs: a lease that lapses (silence, disconnect, running too long) or fails
//!   keeps its worker a holder of the task, so it is never offered that task again, and puts the
//!   worker in a cooldown of `abandon_backoff_ms` that doubles with each abandon; a decline
//!   (before starting) costs nothing. Lapsed and failed replicas are handed back to the relay,
//!   which re-decides the task with the verifier.
//!
//! Cost: nothing scans all workers or all leases. Indexes kept beside the state answer each
//! question directly: the workers with room in ranking order (`Rank`), leases by worker, by
//! task and by deadline, and workers by last heartbeat. With n workers online and l leases out,
//! a lease costs O(log n) when the best-ranked worker fits the job; when it does not (price,
//! limits, already a holder of the task, another adapter class) the lease walks further down the
//! ranking, but never past [`WALK_LIMIT`] workers, so a job that almost nobody fits costs a
//! bounded O(log n + `WALK_LIMIT` × `SCAN_LIMIT`) per attempt instead of O(n). The price of the
//! bound: a job that only workers ranked beyond it would fit waits for the next `assign`, when
//! the ranking has moved (busy workers sink; idle ones that got no work rise, since fewer leases
//! ever ranks first). Every other operation is O(log(n + l)) plus what it touches: the leases it
//! returns, the job's tasks for `add_job` and `remove_job`, the silent workers (until the relay
//! disconnects them) for `expire` and `silent_workers`; `assign` adds O(jobs wanting replicas)
//! per call and stops at once when no worker has room.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use starling_protocol::worker::{Capabilities, DeviceState};
use starling_protocol::{Hash32, JobId, LeaseId, PublicKey, TaskId, sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Bound;

/// Tunables.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Silence after which a worker's leases lapse.
    pub lease_ms: u64,
    /// Longest a single lease may run even while its worker heartbeats.
    pub max_lease_ms: u64,
    /// Below this battery charge a worker that is not charging gets no work.
    pub min_battery: f32,
    /// Accepted results in a row after which a worker is reliable (an anchor for new keys).
    pub trusted_after: u32,
    /// Cooldown after a worker's first abandoned lease; it doubles with each further abandon.
    pub abandon_backoff_ms: u64,
    /// Paid tasks never go to two workers of one network (IPv4 /24, IPv6 /48).
    pub distinct_networks: bool,
    /// Seeds the turn draws. Secret: whoever knows it can predict who is served next.
    pub seed: [u8; 32],
}

impl Default for Config {
    /// The defaults, with a fresh seed from the operating system's CSPRNG.
    fn default() -> Self {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill(&mut seed);
        Self {
            lease_ms: 15_000,
            max_lease_ms: 600_000,
            min_battery: 0.2,
            trusted_after: 10,
            abandon_backoff_ms: 10_000,
            distinct_networks: true,
            seed,
        }
    }
}

/// Leases a worker without a run of accepted results may hold at once; each accepted result in
/// a row allows one more, up to its declared slots. A new key that lies fast cannot take a
/// large share of a job before its first results are checked.
pub const NEW_WORKER_LEASES: u32 = 2;
/// Worker records kept (online workers always are). Past this, records of offline workers with
/// nothing to remember are dropped.
pub const MAX_RECORDS: usize = 1_000_000;
/// The cooldown stops doubling after this many abandons.
const MAX_BACKOFF_DOUBLINGS: u32 = 10;
/// Reliable workers looked at, at most, to see whether one could anchor a task.
const ANCHOR_SCAN: usize = 64;

/// What the scheduler remembers of a worker key across connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Accepted results since its last rejected one.
    pub valid_run: u32,
    /// Leases it abandoned (lapsed or failed), ever.
    pub abandoned: u32,
    /// It gets no new lease before this time.
    pub cooling_until_ms: u64,
    /// Its place in the queue among workers with as many active leases.
    pub turn: u64,
    /// A result of it failed a known-answer check: it gets no paid work on this relay.
    pub barred: bool,
}

/// What a job needs of a worker, aggregated over its tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequirements {
    pub price_per_replica: u64,
    pub needs_gpu: bool,
    pub homogeneous: bool,
    /// Largest single buffer bound (an input or the output), in bytes.
    pub max_binding_bytes: u64,
    /// Storage buffers bound (inputs + output).
    pub storage_buffers: u32,
    /// Largest workgroup count in any dimension.
    pub max_workgroups: u32,
    /// Paid through escrow: only workers that can be paid and slashed (registered, bonded) take
    /// it, so its verified work can settle and a lie costs a bond.
    pub paid: bool,
}

/// A task's replication state as the scheduler sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskNeeds {
    /// Replicas to hand out now.
    pub wanted: u8,
    /// Holders of a replica of this task, held or returned (never given another one): each
    /// worker's owner account when it is registered in escrow (keys of one owner are one
    /// independent replica, as the contract counts them), else its key.
    pub holders: BTreeSet<PublicKey>,
    /// Adapter class all replicas must share (homogeneous jobs), once known.
    pub class: Option<String>,
    /// Networks of the workers holding a replica (only those with a known network).
    pub networks: BTreeSet<IpAddr>,
    /// Holders that were reliable when they took their replica.
    pub anchors: u8,
    /// Its results disagree, or it carries a hidden replica: further replicas are drawn at random
    /// among the reliable workers online, busy or not, rather than taken by the first idle one
    /// (see [`Scheduler::set_sampled`]).
    pub sampled: bool,
}

/// A replica leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub task: TaskId,
    pub worker: PublicKey,
    /// What [`TaskNeeds::holders`] counts it as: the worker's owner, or its key.
    pub holder: PublicKey,
    pub assigned_at_ms: u64,
    /// The worker's network, as [`TaskNeeds::networks`] counts it.
    pub network: Option<IpAddr>,
    /// The worker was reliable when it took the lease.
    pub anchor: bool,
    /// Handed out as part of a sample (see [`Scheduler::set_sampled`]): its result is a vote in
    /// a dispute.
    pub sampled: bool,
}

/// A worker's place in the queue for work; smaller is served first. The field order is the
/// ranking: active leases, then the turn drawn for it, then key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    active: u32,
    turn: u64,
    key: PublicKey,
}

#[derive(Debug)]
struct WorkerSlot {
    caps: Capabilities,
    class: String,
    state: DeviceState,
    last_seen_ms: u64,
    active: u32,
    /// Registered and bonded in escrow (as last read): may take paid jobs.
    paid: bool,
    /// Its owner account in escrow, else its own key: no two replicas of a task go to one.
    identity: PublicKey,
    /// Its network prefix, unless unknown or local.
    network: Option<IpAddr>,
    /// In a cooldown after an abandon (its end is in the record and in [`Scheduler::cooling`]).
    cooling: bool,
    /// Out of paid work after a failed known-answer check (as in its record).
    barred: bool,
    /// Its entry in [`Scheduler::ready`] while it has room, so the entry can be found and
    /// removed when its load, history or state changes.
    rank: Option<Rank>,
}

impl WorkerSlot {
    fn has_room(&self, min_battery: f32, record: &Record) -> bool {
        let cap = self.caps.slots.max(1).min(NEW_WORKER_LEASES.saturating_add(record.valid_run));
        self.available(min_battery) && self.active < cap
    }

    /// Could take work now or soon: accepting, battery fine, not cooling (its slots may be full).
    fn available(&self, min_battery: f32) -> bool {
        self.state.accepting && self.samplable(min_battery)
    }

    /// Whether it may be drawn for a sample: as [`WorkerSlot::available`], except that a worker
    /// that stopped accepting because its slots are full still counts (it queues the lease).
    fn samplable(&self, min_battery: f32) -> bool {
        let battery_ok = match (self.state.battery, self.state.charging) {
            (Some(level), charging) => charging == Some(true) || level >= min_battery,
            (None, _) => true,
        };
        battery_ok && !self.cooling
    }

    fn rank(&self, key: PublicKey, record: &Record) -> Rank {
        Rank { active: self.active, turn: record.turn, key }
    }
}

/// How a lease ends, for what it does to the task's holders and the worker's record.
#[derive(Debug, Clone, Copy)]
enum Release {
    /// A result came back: the worker stays a holder.
    Returned,
    /// Lapsed or failed at this time: the worker stays a holder and its cooldown grows.
    Abandoned(u64),
    /// Given back before starting: the worker may be offered the task again.
    Declined,
    /// The task or job closed.
    Cancelled,
}

#[derive(Debug)]
struct JobQueue {
    req: JobRequirements,
    tasks: BTreeMap<u32, TaskNeeds>,
    /// Tasks with `wanted > 0`, in index order.
    wanting: BTreeSet<u32>,
}

impl JobQueue {
    fn pending(&self) -> u64 {
        self.tasks.values().map(|t| u64::from(t.wanted)).sum()
    }
}

/// The scheduler's whole state.
#[derive(Debug)]
pub struct Scheduler {
    config: Config,
    workers: HashMap<PublicKey, WorkerSlot>,
    /// Workers with room for another lease, best first: a lease takes the first that fits.
    ready: BTreeSet<Rank>,
    /// Every online worker by its last heartbeat, oldest first: the silent ones are a prefix.
    seen: BTreeSet<(u64, PublicKey)>,
    jobs: BTreeMap<JobId, JobQueue>,
    /// Jobs with a task that wants replicas: the round-robin visits only these.
    wanting_jobs: BTreeSet<JobId>,
    /// Sum of `wanted` over every task of every job.
    pending: u64,
    leases: HashMap<LeaseId, Lease>,
    /// The same leases by holder, by task, and by the time they run too long
    /// (`assigned_at_ms + max_lease_ms`), so disconnects, closes and expiry touch only theirs.
    leases_by_worker: BTreeSet<(PublicKey, LeaseId)>,
    leases_by_task: BTreeSet<(TaskId, LeaseId)>,
    lease_deadlines: BTreeSet<(u64, LeaseId)>,
    next_lease: u64,
    /// The job served last; the next round starts after it.
    cursor: Option<JobId>,
    /// Records by key, online workers' and others'.
    records: HashMap<PublicKey, Record>,
    /// Online workers in a cooldown, by its end.
    cooling: BTreeSet<(u64, PublicKey)>,
    /// Online reliable workers.
    /// Online reliable workers, on a ring ordered by a keyed hash of their key
    /// ([`Scheduler::ring`]): where a key sits is secret, so grinding keys buys no place on it.
    reliable: BTreeSet<(Hash32, PublicKey)>,
    /// Leases handed out since start: turns are counted in it.
    clock: u64,
    rng: StdRng,
    /// Keys whose record changed since [`Scheduler::take_changed_records`] (for the store).
    changed: HashSet<PublicKey>,
}

/// Tasks scanned per job per round while looking for one some free worker may take.
const SCAN_LIMIT: usize = 64;

/// Workers with room visited, best-ranked first, per job per round while looking for one that
/// fits the job and one of its first [`SCAN_LIMIT`] wanting tasks. Bounds the cost of a lease
/// for a job that few workers fit; see the module doc for what it costs such a job.
pub const WALK_LIMIT: usize = 256;

const MIN_KEY: PublicKey = PublicKey([0; 32]);

impl Scheduler {
    pub fn new(config: Config, next_lease: u64) -> Self {
        Self {
            config,
            workers: HashMap::new(),
            ready: BTreeSet::new(),
            seen: BTreeSet::new(),
            jobs: BTreeMap::new(),
            wanting_jobs: BTreeSet::new(),
            pending: 0,
            leases: HashMap::new(),
            leases_by_worker: BTreeSet::new(),
            leases_by_task: BTreeSet::new(),
            lease_deadlines: BTreeSet::new(),
            next_lease: next_lease.max(1),
            cursor: None,
            records: HashMap::new(),
            cooling: BTreeSet::new(),
            reliable: BTreeSet::new(),
            clock: 0,
            rng: StdRng::from_seed(config.seed),
            changed: HashSet::new(),
        }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// A worker connected (or reconnected: its record, and so its turn, cooldown and run, carry
    /// over; a reconnect never moves its turn forward).
    pub fn worker_online(&mut self, key: PublicKey, caps: Capabilities, now_ms: u64) {
        let class = caps.adapter_class();
        self.remove_worker(&key);
        let active = self.worker_leases(&key).count() as u32;
        if self.records.len() >= MAX_RECORDS && !self.records.contains_key(&key) {
            self.forget_idle_records();
        }
        let n = self.workers.len() as u64 + 1;
        let drawn = self.clock + self.rng.gen_range(0..2 * n);
        let record = self.records.entry(key).or_default();
        record.turn = record.turn.max(drawn);
        let record = *record;
        let cooling = record.cooling_until_ms > now_ms;
        if cooling {
            self.cooling.insert((record.cooling_until_ms, key));
        }
        if record.valid_run >= self.config.trusted_after {
            self.reliable.insert(self.ring(&key));
        }
        let slot = WorkerSlot {
            caps,
            class,
            state: DeviceState::default(),
            last_seen_ms: now_ms,
            active,
            paid: false,
            identity: key,
            network: None,
            cooling,
            barred: record.barred,
            rank: None,
        };
        self.workers.insert(key, slot);
        self.seen.insert((now_ms, key));
        self.rerank(&key);
    }

    /// The worker's network prefix (`None`: unknown, or a local address that proves nothing).
    pub fn set_network(&mut self, key: &PublicKey, network: Option<IpAddr>) {
        if let Some(w) = self.workers.get_mut(key) {
            w.network = network;
        }
    }

    /// What the scheduler remembers of a key.
    pub fn record(&self, key: &PublicKey) -> Option<Record> {
        self.records.get(key).copied()
    }

    /// Whether the key has `trusted_after` accepted results in a row.
    pub fn is_reliable(&self, key: &PublicKey) -> bool {
        self.records.get(key).is_some_and(|r| r.valid_run >= self.config.trusted_after)
    }

    /// The verifier accepted a result of the key: its run grows (and with it its concurrency,
    /// up to its slots, and in time its reliability).
    pub fn record_accepted(&mut self, key: &PublicKey) {
        let r = self.records.entry(*key).or_default();
        r.valid_run = r.valid_run.saturating_add(1);
        self.changed.insert(*key);
        self.refresh_reliable(key);
        self.rerank(key);
    }

    /// The verifier rejected a result of the key: its run starts over.
    pub fn record_rejected(&mut self, key: &PublicKey) {
        let r = self.records.entry(*key).or_default();
        r.valid_run = 0;
        self.changed.insert(*key);
        self.refresh_reliable(key);
        self.rerank(key);
    }

    /// A result of the key failed a known-answer check: its run starts over and it gets no paid
    /// work on this relay from now on, whatever its escrow standing (its record keeps the mark
    /// across reconnects and, through the store, restarts).
    pub fn bar(&mut self, key: &PublicKey) {
        let r = self.records.entry(*key).or_default();
        r.valid_run = 0;
        r.barred = true;
        self.changed.insert(*key);
        if let Some(w) = self.workers.get_mut(key) {
            w.barred = true;
        }
        self.refresh_reliable(key);
        self.rerank(key);
    }

    /// Records that changed since the last call, in key order, for the store. A record's
    /// `cooling_until_ms` is on this scheduler's clock.
    pub fn take_changed_records(&mut self) -> Vec<(PublicKey, Record)> {
        let mut out: Vec<(PublicKey, Record)> =
            self.changed.drain().filter_map(|k| self.records.get(&k).map(|r| (k, *r))).collect();
        out.sort_unstable_by_key(|(k, _)| *k);
        out
    }

    /// Puts back a record read from the store (at start, before any worker connects). Its turn
    /// is not kept: turns count leases of this run.
    pub fn restore_record(&mut self, key: PublicKey, record: Record) {
        if self.records.len() < MAX_RECORDS {
            self.records.insert(key, Record { turn: 0, ..record });
        }
    }

    fn refresh_reliable(&mut self, key: &PublicKey) {
        let at = self.ring(key);
        if self.workers.contains_key(key) && self.is_reliable(key) {
            self.reliable.insert(at);
        } else {
            self.reliable.remove(&at);
        }
    }

    /// A key's place on the ring of reliable workers: a hash keyed with the secret seed.
    fn ring(&self, key: &PublicKey) -> (Hash32, PublicKey) {
        (sha256(&[&self.config.seed[..], b"ring", &key.0[..]].concat()), *key)
    }

    fn reliable_contains(&self, key: &PublicKey) -> bool {
        self.reliable.contains(&self.ring(key))
    }

    /// Drops records of offline keys with nothing to remember: no run, no abandon, no cooldown,
    /// and a turn already passed. Amortised: runs only when the table is full.
    fn forget_idle_records(&mut self) {
        let (clock, workers) = (self.clock, &self.workers);
        self.records.retain(|k, r| {
            workers.contains_key(k)
                || r.valid_run > 0
                || r.abandoned > 0
                || r.cooling_until_ms > 0
                || r.turn > clock
                || r.barred
        });
    }

    /// Whether the worker may take paid jobs (its escrow standing, read when it connected).
    pub fn set_paid_eligible(&mut self, key: &PublicKey, eligible: bool) {
        if let Some(w) = self.workers.get_mut(key) {
            w.paid = eligible;
        }
    }

    /// The escrow account that owns the worker key: its keys count as one holder of a task.
    pub fn set_owner(&mut self, key: &PublicKey, owner: PublicKey) {
        if let Some(w) = self.workers.get_mut(key) {
            w.identity = owner;
        }
    }

    /// Records a heartbeat; its leases stay alive.
    pub fn worker_heartbeat(&mut self, key: &PublicKey, state: DeviceState, now_ms: u64) {
        if let Some(w) = self.workers.get_mut(key) {
            self.seen.remove(&(w.last_seen_ms, *key));
            self.seen.insert((now_ms, *key));
            w.state = state;
            w.last_seen_ms = now_ms;
            self.rerank(key);
        }
    }

    /// The worker disconnected: its leases lapse at once and are returned, in lease order. Each
    /// is an abandon: the worker stays a holder of the task and its cooldown grows.
    pub fn worker_offline(&mut self, key: &PublicKey, now_ms: u64) -> Vec<Lease> {
        let ids: Vec<LeaseId> = self.worker_leases(key).collect();
        let out = ids.into_iter().filter_map(|id| self.release(id, Release::Abandoned(now_ms))).collect();
        self.remove_worker(key);
        let at = self.ring(key);
        self.reliable.remove(&at);
        out
    }

    pub fn is_online(&self, key: &PublicKey) -> bool {
        self.workers.contains_key(key)
    }

    pub fn workers_online(&self) -> usize {
        self.workers.len()
    }

    /// Workers online with room for another lease now (accepting, a free slot, battery fine).
    pub fn workers_with_room(&self) -> usize {
        self.ready.len()
    }

    /// Starts scheduling a job's tasks.
    pub fn add_job(&mut self, job: JobId, req: JobRequirements, tasks: impl IntoIterator<Item = (u32, TaskNeeds)>) {
        let tasks: BTreeMap<u32, TaskNeeds> = tasks.into_iter().collect();
        let wanting: BTreeSet<u32> = tasks.iter().filter(|(_, t)| t.wanted > 0).map(|(&i, _)| i).collect();
        let queue = JobQueue { req, tasks, wanting };
        self.pending += queue.pending();
        if queue.wanting.is_empty() {
            self.wanting_jobs.remove(&job);
        } else {
            self.wanting_jobs.insert(job);
        }
        if let Some(replaced) = self.jobs.insert(job, queue) {
            self.pending -= replaced.pending();
        }
    }

    /// Stops scheduling a job; returns its outstanding leases, in lease order, so the relay can
    /// cancel them.
    pub fn remove_job(&mut self, job: JobId) -> Vec<Lease> {
        if let Some(removed) = self.jobs.remove(&job) {
            self.pending -= removed.pending();
        }
        self.wanting_jobs.remove(&job);
        let first = (TaskId { job, index: 0 }, LeaseId(0));
        let last = (TaskId { job, index: u32::MAX }, LeaseId(u64::MAX));
        let ids: Vec<LeaseId> = self.leases_by_task.range(first..=last).map(|(_, id)| *id).collect();
        ids.into_iter().filter_map(|id| self.release(id, Release::Cancelled)).collect()
    }

    /// Hands out `n` more replicas of `task`.
    pub fn add_replicas(&mut self, task: TaskId, n: u8) {
        if let Some(job) = self.jobs.get_mut(&task.job)
            && let Some(t) = job.tasks.get_mut(&task.index)
        {
            let before = t.wanted;
            t.wanted = t.wanted.saturating_add(n);
            self.pending += u64::from(t.wanted - before);
            if t.wanted > 0 {
                job.wanting.insert(task.index);
                self.wanting_jobs.insert(task.job);
            }
        }
    }

    /// The task's further replicas are a sample of the network: drawn at random among the
    /// reliable workers online that may take it, busy or not (a busy one takes it beyond its
    /// slots), instead of going to the first idle worker. A worker that computes nothing is
    /// always idle; were disputes and audits settled by the idle, such workers would settle
    /// them. Falls back to the usual ranking when no reliable worker may take it.
    pub fn set_sampled(&mut self, task: TaskId) {
        if let Some(t) = self.jobs.get_mut(&task.job).and_then(|j| j.tasks.get_mut(&task.index)) {
            t.sampled = true;
        }
    }

    /// How many workers online, up to `max`, could still hold a replica of `task`: they fit its
    /// job (paid standing and bars included) and are independent of its holders (owner, network,
    /// adapter class), busy or not. A task that asks for more than this waits for workers that
    /// are not there. Costs O(workers online) at worst (when fewer than `max` qualify).
    pub fn could_take(&self, task: TaskId, max: usize) -> usize {
        let Some(job) = self.jobs.get(&task.job) else { return 0 };
        let Some(t) = job.tasks.get(&task.index) else { return 0 };
        let distinct_networks = job.req.paid && self.config.distinct_networks;
        self.workers
            .values()
            .filter(|w| {
                let same_owner = t.holders.contains(&w.identity);
                let other_class = job.req.homogeneous && t.class.as_ref().is_some_and(|c| *c != w.class);
                let same_network = distinct_networks && w.network.is_some_and(|n| t.networks.contains(&n));
                Self::fits(&job.req, w) && !(same_owner || other_class || same_network)
            })
            .take(max)
            .count()
    }

    /// Takes back `task`'s replicas that are queued and not leased yet (a hidden replica nobody
    /// took in time); returns how many.
    pub fn withdraw_queued(&mut self, task: TaskId) -> u8 {
        let Some(job) = self.jobs.get_mut(&task.job) else { return 0 };
        let Some(t) = job.tasks.get_mut(&task.index) else { return 0 };
        let withdrawn = std::mem::take(&mut t.wanted);
        self.pending -= u64::from(withdrawn);
        job.wanting.remove(&task.index);
        if job.wanting.is_empty() {
            self.wanting_jobs.remove(&task.job);
        }
        withdrawn
    }

    /// The task is decided: nothing more is handed out and outstanding leases are returned, in
    /// lease order, for cancelling.
    pub fn close_task(&mut self, task: TaskId) -> Vec<Lease> {
        if let Some(job) = self.jobs.get_mut(&task.job) {
            if let Some(t) = job.tasks.remove(&task.index) {
                self.pending -= u64::from(t.wanted);
            }
            job.wanting.remove(&task.index);
            if job.wanting.is_empty() {
                self.wanting_jobs.remove(&task.job);
            }
        }
        let ids: Vec<LeaseId> = self.task_leases(task).collect();
        ids.into_iter().filter_map(|id| self.release(id, Release::Cancelled)).collect()
    }

    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// The id the next lease will get.
    pub fn next_lease_id(&self) -> u64 {
        self.next_lease
    }

    /// Replicas of `task` still to come: leased and not returned, plus those queued to be handed
    /// out (counting only leases would make the verifier ask again for replicas already queued).
    pub fn outstanding(&self, task: TaskId) -> u8 {
        let leased = self.task_leases(task).count();
        let queued =
            self.jobs.get(&task.job).and_then(|j| j.tasks.get(&task.index)).map_or(0, |t| usize::from(t.wanted));
        (leased + queued).min(u8::MAX as usize) as u8
    }

    /// The worker returned a result for the lease; its slot frees and it stays a holder.
    pub fn lease_returned(&mut self, id: LeaseId) -> Option<Lease> {
        self.release(id, Release::Returned)
    }

    /// The worker gave up on the lease: an abandon. It stays a holder so it is not handed the
    /// task again, and its cooldown grows.
    pub fn lease_failed(&mut self, id: LeaseId, now_ms: u64) -> Option<Lease> {
        self.release(id, Release::Abandoned(now_ms))
    }

    /// The worker gave the lease back without starting it (paused, busy): the replica is queued
    /// again (the task still wants as many as before), the worker may be offered the task again
    /// later, and it takes no new work until its next heartbeat says it accepts some (so the task
    /// does not bounce straight back).
    pub fn lease_declined(&mut self, id: LeaseId) -> Option<Lease> {
        let lease = self.release(id, Release::Declined)?;
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.state.accepting = false;
            self.rerank(&lease.worker);
        }
        self.add_replicas(lease.task, 1);
        Some(lease)
    }

    /// Leases whose worker went silent or that ran too long lapse (abandons, as in
    /// [`Scheduler::lease_failed`]); they are returned in lease order. Costs O(log) plus the
    /// silent workers and the lapsed leases.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Lease> {
        let mut lapsed: BTreeSet<LeaseId> = BTreeSet::new();
        for key in self.silent(now_ms) {
            lapsed.extend(self.worker_leases(key));
        }
        // Too old: `now - assigned_at > max_lease_ms`, that is `deadline < now`.
        lapsed.extend(self.lease_deadlines.range(..(now_ms, LeaseId(0))).map(|(_, id)| *id));
        lapsed.into_iter().filter_map(|id| self.release(id, Release::Abandoned(now_ms))).collect()
    }

    /// Workers silent for longer than `lease_ms`, in key order, to be disconnected by the relay.
    pub fn silent_workers(&self, now_ms: u64) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> = self.silent(now_ms).copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Replicas still to hand out, over all jobs.
    pub fn pending_replicas(&self) -> u64 {
        self.pending
    }

    /// Hands out as many replicas as fit, one per job per round.
    ///
    /// A job that gets nothing in a round leaves the rotation for the rest of this call: within
    /// one call workers only fill up and tasks only gain holders, so it would get nothing later
    /// either. The call ends as soon as no worker has room.
    pub fn assign(&mut self, now_ms: u64) -> Vec<Lease> {
        self.thaw(now_ms);
        let mut out = Vec::new();
        let mut rotation: Vec<JobId> = match self.cursor {
            Some(c) => self
                .wanting_jobs
                .range((Bound::Excluded(c), Bound::Unbounded))
                .chain(self.wanting_jobs.range(..=c))
                .copied()
                .collect(),
            None => self.wanting_jobs.iter().copied().collect(),
        };
        // Jobs that got a replica this round, in serving order: the next round's order, since
        // every job served after the last one that got something got nothing.
        let mut served = Vec::with_capacity(rotation.len());
        while !rotation.is_empty() {
            for &job in &rotation {
                if self.ready.is_empty() {
                    return out;
                }
                if let Some(lease) = self.assign_one(job, now_ms) {
                    self.cursor = Some(job);
                    out.push(lease);
                    served.push(job);
                }
            }
            std::mem::swap(&mut rotation, &mut served);
            served.clear();
        }
        out
    }

    fn fits(req: &JobRequirements, w: &WorkerSlot) -> bool {
        let l = &w.caps.limits;
        w.caps.asking_price <= req.price_per_replica
            && (!req.paid || (w.paid && !w.barred))
            && (!req.needs_gpu || w.caps.runs_wgsl())
            && req.max_binding_bytes <= l.max_storage_buffer_binding_size
            && req.max_binding_bytes <= l.max_buffer_size
            && req.storage_buffers <= l.max_storage_buffers_per_shader_stage
            && req.max_workgroups <= l.max_compute_workgroups_per_dimension
    }

    /// One replica of the job's first wanting task (of the first [`SCAN_LIMIT`]) that some
    /// worker may take, to the best-ranked such worker among the first [`WALK_LIMIT`] with room.
    fn assign_one(&mut self, job_id: JobId, now_ms: u64) -> Option<Lease> {
        let job = self.jobs.get(&job_id)?;
        let distinct_networks = job.req.paid && self.config.distinct_networks;
        // Whether the worker may hold a replica of the task, anchors aside.
        let independent = |task: &TaskNeeds, w: &WorkerSlot| {
            let same_owner = task.holders.contains(&w.identity);
            let other_class = job.req.homogeneous && task.class.as_ref().is_some_and(|c| *c != w.class);
            let same_network = distinct_networks && w.network.is_some_and(|n| task.networks.contains(&n));
            !(same_owner || other_class || same_network)
        };
        // The task's last wanted replica waits for a reliable worker when none of its holders is
        // one and a reliable worker that could take it is online and not paused or cooling.
        let needs_anchor = |task: &TaskNeeds| {
            task.wanted == 1
                && task.anchors == 0
                && self.reliable.iter().map(|(_, k)| k).take(ANCHOR_SCAN).any(|k| {
                    let w = &self.workers[k];
                    w.available(self.config.min_battery) && Self::fits(&job.req, w) && independent(task, w)
                })
        };
        // Workers with room that fit the job, best first, read off the ranking only as far as
        // needed and kept for the next task.
        let mut walk = self.ready.iter().take(WALK_LIMIT).filter_map(|rank| {
            let w = &self.workers[&rank.key];
            Self::fits(&job.req, w).then_some((rank.key, w))
        });
        let mut fitting: Vec<(PublicKey, &WorkerSlot)> = Vec::new();
        let mut walked_all = false;
        let mut pick = None;
        // Whether the pick was drawn as a sample (only then is its result a sampled vote).
        let mut via_sample = false;
        'tasks: for &index in job.wanting.iter().take(SCAN_LIMIT) {
            let task = &job.tasks[&index];
            if task.sampled {
                // A reliable worker drawn at random: the first, going round the reliable keys
                // from a point drawn from the secret seed (at most ANCHOR_SCAN of them), that
                // may take it and is not already one lease past its slots.
                let point = sha256(
                    &[
                        &self.config.seed[..],
                        &job_id.0.to_le_bytes(),
                        &index.to_le_bytes(),
                        &self.next_lease.to_le_bytes(),
                    ]
                    .concat(),
                );
                let start = (point, MIN_KEY);
                let drawn = self
                    .reliable
                    .range(start..)
                    .chain(self.reliable.range(..start))
                    .map(|(_, k)| k)
                    .take(ANCHOR_SCAN)
                    .find(|k| {
                        let w = &self.workers[*k];
                        w.samplable(self.config.min_battery)
                            && w.active <= w.caps.slots.max(1)
                            && Self::fits(&job.req, w)
                            && independent(task, w)
                    });
                if let Some(key) = drawn {
                    pick = Some((index, *key));
                    via_sample = true;
                    break;
                }
            }
            let anchor = needs_anchor(task);
            let may_take =
                |key: &PublicKey, w: &WorkerSlot| independent(task, w) && (!anchor || self.reliable_contains(key));
            if let Some((key, _)) = fitting.iter().find(|(key, w)| may_take(key, w)) {
                pick = Some((index, *key));
                break;
            }
            if walked_all {
                if fitting.is_empty() {
                    break;
                }
                continue;
            }
            for (key, w) in walk.by_ref() {
                fitting.push((key, w));
                if may_take(&key, w) {
                    pick = Some((index, key));
                    break 'tasks;
                }
            }
            walked_all = true;
        }
        let (index, worker) = pick?;

        let id = LeaseId(self.next_lease);
        self.next_lease += 1;
        let anchor = self.reliable_contains(&worker);
        let sampled = via_sample;
        // Served: its next turn is drawn behind the workers online.
        let n = self.workers.len() as u64;
        let turn = self.clock + self.rng.gen_range(n..2 * n);
        self.clock += 1;
        self.records.entry(worker).or_default().turn = turn;
        let w = self.workers.get_mut(&worker).expect("candidate is online");
        w.active += 1;
        let class = w.class.clone();
        let holder = w.identity;
        let network = w.network;
        self.rerank(&worker);
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let task = job.tasks.get_mut(&index).expect("task exists");
        task.wanted -= 1;
        task.holders.insert(holder);
        if let Some(n) = network {
            task.networks.insert(n);
        }
        if anchor {
            task.anchors = task.anchors.saturating_add(1);
        }
        if job.req.homogeneous && task.class.is_none() {
            task.class = Some(class);
        }
        if task.wanted == 0 {
            job.wanting.remove(&index);
            if job.wanting.is_empty() {
                self.wanting_jobs.remove(&job_id);
            }
        }
        self.pending -= 1;
        let task = TaskId { job: job_id, index };
        let lease = Lease { id, task, worker, holder, assigned_at_ms: now_ms, network, anchor, sampled };
        self.leases_by_worker.insert((worker, id));
        self.leases_by_task.insert((task, id));
        self.lease_deadlines.insert((self.deadline(&lease), id));
        self.leases.insert(id, lease.clone());
        Some(lease)
    }

    fn release(&mut self, id: LeaseId, how: Release) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        self.leases_by_worker.remove(&(lease.worker, id));
        self.leases_by_task.remove(&(lease.task, id));
        self.lease_deadlines.remove(&(self.deadline(&lease), id));
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.active = w.active.saturating_sub(1);
        }
        if let Release::Abandoned(now_ms) = how {
            self.abandoned(&lease.worker, now_ms);
        }
        self.rerank(&lease.worker);
        let keep_holder = matches!(how, Release::Returned | Release::Abandoned(_));
        if !keep_holder
            && let Some(job) = self.jobs.get_mut(&lease.task.job)
            && let Some(t) = job.tasks.get_mut(&lease.task.index)
        {
            t.holders.remove(&lease.holder);
            if let Some(n) = lease.network {
                t.networks.remove(&n);
            }
            if lease.anchor {
                t.anchors = t.anchors.saturating_sub(1);
            }
        }
        Some(lease)
    }

    /// Counts an abandon against the worker and starts (or lengthens) its cooldown.
    fn abandoned(&mut self, key: &PublicKey, now_ms: u64) {
        self.changed.insert(*key);
        let r = self.records.entry(*key).or_default();
        let before = r.cooling_until_ms;
        r.abandoned = r.abandoned.saturating_add(1);
        let doublings = (r.abandoned - 1).min(MAX_BACKOFF_DOUBLINGS);
        let until = now_ms.saturating_add(self.config.abandon_backoff_ms.saturating_mul(1 << doublings));
        r.cooling_until_ms = r.cooling_until_ms.max(until);
        let until = r.cooling_until_ms;
        if let Some(w) = self.workers.get_mut(key)
            && until > now_ms
        {
            if w.cooling {
                self.cooling.remove(&(before, *key));
            }
            w.cooling = true;
            self.cooling.insert((until, *key));
        }
    }

    /// Ends the cooldowns that are over.
    fn thaw(&mut self, now_ms: u64) {
        while let Some(&(until, key)) = self.cooling.first() {
            if until > now_ms {
                break;
            }
            self.cooling.pop_first();
            if let Some(w) = self.workers.get_mut(&key) {
                w.cooling = false;
            }
            self.rerank(&key);
        }
    }

    /// When the lease has run too long; saturates, so a lease near the end of time never does.
    fn deadline(&self, lease: &Lease) -> u64 {
        lease.assigned_at_ms.saturating_add(self.config.max_lease_ms)
    }

    /// Puts the worker's entry in `ready` where its state says: at its current rank while it has
    /// room, nowhere otherwise. Call after anything its rank or room depends on changes.
    fn rerank(&mut self, key: &PublicKey) {
        let Some(w) = self.workers.get_mut(key) else { return };
        let record = self.records.get(key).copied().unwrap_or_default();
        let rank = w.has_room(self.config.min_battery, &record).then(|| w.rank(*key, &record));
        if w.rank != rank {
            if let Some(old) = w.rank {
                self.ready.remove(&old);
            }
            if let Some(new) = rank {
                self.ready.insert(new);
            }
            w.rank = rank;
        }
    }

    /// Takes the worker out of the worker table and its indexes (its leases and record stay).
    fn remove_worker(&mut self, key: &PublicKey) -> Option<WorkerSlot> {
        let w = self.workers.remove(key)?;
        if let Some(rank) = w.rank {
            self.ready.remove(&rank);
        }
        if w.cooling
            && let Some(r) = self.records.get(key)
        {
            self.cooling.remove(&(r.cooling_until_ms, *key));
        }
        self.seen.remove(&(w.last_seen_ms, *key));
        Some(w)
    }

    fn worker_leases(&self, key: &PublicKey) -> impl Iterator<Item = LeaseId> + use<'_> {
        self.leases_by_worker.range((*key, LeaseId(0))..=(*key, LeaseId(u64::MAX))).map(|(_, id)| *id)
    }

    fn task_leases(&self, task: TaskId) -> impl Iterator<Item = LeaseId> + use<'_> {
        self.leases_by_task.range((task, LeaseId(0))..=(task, LeaseId(u64::MAX))).map(|(_, id)| *id)
    }

    /// Workers whose last heartbeat is more than `lease_ms` ago: `now - last_seen > lease_ms`,
    /// that is `last_seen < now - lease_ms`, a prefix of `seen`.
    fn silent(&self, now_ms: u64) -> impl Iterator<Item = &PublicKey> {
        let cutoff = now_ms.saturating_sub(self.config.lease_ms);
        self.seen.range(..(cutoff, MIN_KEY)).map(|(_, key)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::worker::{AdapterInfo, Backend, DeviceLimits, Platform};

    fn caps(backend: Backend, price: u64, slots: u32, vendor: u32) -> Capabilities {
        Capabilities {
            backend,
            platform: Platform::Native,
            adapter: AdapterInfo { vendor, ..Default::default() },
            limits: DeviceLimits {
                max_buffer_size: 1 << 28,
                max_storage_buffer_binding_size: 1 << 27,
                max_storage_buffers_per_shader_stage: 8,
                max_compute_workgroups_per_dimension: 65_535,
            },
            asking_price: price,
            duty_cycle: 1.0,
            slots,
        }
    }

    fn req(price: u64) -> JobRequirements {
        JobRequirements {
            price_per_replica: price,
            needs_gpu: false,
            homogeneous: false,
            max_binding_bytes: 1024,
            storage_buffers: 2,
            max_workgroups: 16,
            paid: false,
        }
    }

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    fn tasks(n: u32, wanted: u8) -> Vec<(u32, TaskNeeds)> {
        (0..n).map(|i| (i, TaskNeeds { wanted, ..Default::default() })).collect()
    }

    /// Gives the worker a run of `n` accepted results.
    fn proven(s: &mut Scheduler, k: u8, n: u32) {
        for _ in 0..n {
            s.record_accepted(&key(k));
        }
    }

    fn sched_with_workers(workers: &[(u8, Capabilities)]) -> Scheduler {
        let mut s = Scheduler::new(Config::default(), 1);
        for (k, c) in workers {
            s.worker_online(key(*k), c.clone(), 0);
        }
        s
    }

    #[test]
    fn replicas_of_a_task_go_to_distinct_workers() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 4, 1)), (2, caps(Backend::Vulkan, 0, 4, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 3));
        let leases = s.assign(0);
        assert_eq!(leases.len(), 2, "third replica must wait for a third worker");
        assert_ne!(leases[0].worker, leases[1].worker);
        s.worker_online(key(3), caps(Backend::Vulkan, 0, 4, 1), 0);
        let more = s.assign(0);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].worker, key(3));
    }

    /// Disputes and audits are settled by a sample of the reliable workers, not by whoever is
    /// idle: a worker that computes nothing is always idle.
    #[test]
    fn a_sampled_replica_goes_to_a_reliable_worker_busy_or_not() {
        let one = caps(Backend::Vulkan, 0, 1, 1);
        for sampled in [false, true] {
            let mut s = sched_with_workers(&[(1, one.clone()), (2, one.clone())]);
            proven(&mut s, 1, 10);
            proven(&mut s, 2, 10);
            // Both reliable workers busy.
            s.add_job(JobId(1), req(10), tasks(1, 2));
            assert_eq!(s.assign(0).len(), 2);
            // An idle key without a record, always first in line.
            s.worker_online(key(3), one.clone(), 0);
            let needs = TaskNeeds { wanted: 1, anchors: 1, holders: [key(7)].into(), ..Default::default() };
            s.add_job(JobId(2), req(10), [(0, needs)]);
            if sampled {
                s.set_sampled(TaskId { job: JobId(2), index: 0 });
            }
            let lease = s.assign(0);
            let worker = lease.iter().map(|l| l.worker).collect::<Vec<_>>();
            assert_eq!(lease[0].sampled, sampled, "a sampled vote only when drawn as one");
            if sampled {
                assert!(worker == [key(1)] || worker == [key(2)], "a busy reliable worker: {worker:?}");
                // One lease past its slots at most.
                s.add_job(JobId(3), req(10), [(0, TaskNeeds { wanted: 2, anchors: 1, ..Default::default() })]);
                s.set_sampled(TaskId { job: JobId(3), index: 0 });
                let more = s.assign(0);
                assert!(more.iter().all(|l| l.worker != worker[0] || l.worker == key(3)), "{more:?}");
            } else {
                assert_eq!(worker, [key(3)], "unsampled: the idle worker");
            }
        }
    }

    /// With no reliable worker to draw, a sampled task falls back to the ranking, and that lease
    /// is no sampled vote: whoever is idle gets no say in a dispute.
    #[test]
    fn a_sample_with_nobody_reliable_is_an_ordinary_lease() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 1));
        s.set_sampled(TaskId { job: JobId(1), index: 0 });
        let lease = s.assign(0);
        assert_eq!((lease.len(), lease[0].sampled), (1, false));
    }

    #[test]
    fn keys_of_one_owner_hold_one_replica_of_a_task() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 4, 1)), (2, caps(Backend::Vulkan, 0, 4, 1))]);
        // Keys 1 and 2 belong to one escrow account: one independent replica, as the contract
        // counts a quorum.
        s.set_owner(&key(1), key(9));
        s.set_owner(&key(2), key(9));
        s.add_job(JobId(1), req(10), tasks(1, 2));
        let leases = s.assign(0);
        assert_eq!(leases.len(), 1, "the owner's second key waits: {leases:?}");
        assert_eq!(leases[0].holder, key(9));
        s.worker_online(key(3), caps(Backend::Vulkan, 0, 4, 1), 0);
        let more = s.assign(0);
        assert_eq!(more.iter().map(|l| l.worker).collect::<Vec<_>>(), vec![key(3)]);
        // An abandon does not free the owner's place: its other key may not take the replica.
        s.worker_offline(&leases[0].worker, 0);
        s.add_replicas(TaskId { job: JobId(1), index: 0 }, 1);
        assert!(s.assign(0).is_empty());
    }

    #[test]
    fn fit_table() {
        let base = caps(Backend::Vulkan, 5, 1, 1);
        let cases: Vec<(&str, Capabilities, JobRequirements, bool)> = vec![
            ("fits", base.clone(), req(10), true),
            ("price too high", caps(Backend::Vulkan, 11, 1, 1), req(10), false),
            ("price equal", caps(Backend::Vulkan, 10, 1, 1), req(10), true),
            ("cpu worker, builtin", caps(Backend::Cpu, 0, 1, 0), req(10), true),
            (
                "cpu worker, custom wgsl",
                caps(Backend::Cpu, 0, 1, 0),
                JobRequirements { needs_gpu: true, ..req(10) },
                false,
            ),
            ("gpu worker, custom wgsl", base.clone(), JobRequirements { needs_gpu: true, ..req(10) }, true),
            ("buffer too big", base.clone(), JobRequirements { max_binding_bytes: 1 << 28, ..req(10) }, false),
            ("too many buffers", base.clone(), JobRequirements { storage_buffers: 9, ..req(10) }, false),
            ("too many workgroups", base.clone(), JobRequirements { max_workgroups: 70_000, ..req(10) }, false),
        ];
        for (name, c, r, want) in cases {
            let mut s = sched_with_workers(&[(1, c)]);
            s.add_job(JobId(1), r, tasks(1, 1));
            assert_eq!(s.assign(0).len() == 1, want, "{name}");
        }
    }

    #[test]
    fn paid_jobs_go_only_to_workers_eligible_for_payment() {
        let paid = JobRequirements { paid: true, ..req(10) };
        // (case, worker eligible, job paid, assigned)
        let cases = [
            ("unpaid job, any worker", false, false, true),
            ("paid job, unbonded worker", false, true, false),
            ("paid job, bonded worker", true, true, true),
        ];
        for (name, eligible, is_paid, want) in cases {
            let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
            s.set_paid_eligible(&key(1), eligible);
            s.add_job(JobId(1), if is_paid { paid.clone() } else { req(10) }, tasks(1, 1));
            assert_eq!(s.assign(0).len() == 1, want, "{name}");
        }
        // Eligibility is per connection: a reconnect starts unpaid until the relay says otherwise.
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
        s.set_paid_eligible(&key(1), true);
        s.worker_online(key(1), caps(Backend::Vulkan, 0, 1, 1), 0);
        s.add_job(JobId(1), paid, tasks(1, 1));
        assert!(s.assign(0).is_empty());
    }

    #[test]
    fn device_state_table() {
        let cases: Vec<(&str, DeviceState, bool)> = vec![
            ("accepting", DeviceState::default(), true),
            ("paused", DeviceState { accepting: false, ..Default::default() }, false),
            ("low battery", DeviceState { accepting: true, battery: Some(0.1), charging: Some(false) }, false),
            ("low battery charging", DeviceState { accepting: true, battery: Some(0.1), charging: Some(true) }, true),
            ("battery fine", DeviceState { accepting: true, battery: Some(0.8), charging: None }, true),
        ];
        for (name, state, want) in cases {
            let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
            s.worker_heartbeat(&key(1), state, 0);
            s.add_job(JobId(1), req(10), tasks(1, 1));
            assert_eq!(s.assign(0).len() == 1, want, "{name}");
        }
    }

    #[test]
    fn work_spreads_evenly_across_workers() {
        let workers: Vec<(u8, Capabilities)> = (1..=4).map(|k| (k, caps(Backend::Vulkan, 0, 8, 1))).collect();
        let mut s = sched_with_workers(&workers);
        for k in 1..=4 {
            proven(&mut s, k, 6);
        }
        s.add_job(JobId(1), req(10), tasks(8, 2));
        let leases = s.assign(0);
        assert_eq!(leases.len(), 16);
        let mut per_worker: BTreeMap<PublicKey, usize> = BTreeMap::new();
        for l in &leases {
            *per_worker.entry(l.worker).or_default() += 1;
        }
        assert!(per_worker.values().all(|&n| n == 4), "{per_worker:?}");
    }

    #[test]
    fn jobs_take_turns() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 4, 1))]);
        proven(&mut s, 1, 2);
        s.add_job(JobId(1), req(10), tasks(10, 1));
        s.add_job(JobId(2), req(10), tasks(10, 1));
        let leases = s.assign(0);
        let jobs: Vec<u64> = leases.iter().map(|l| l.task.job.0).collect();
        assert_eq!(jobs, vec![1, 2, 1, 2]);
        // The next round continues after the job served last.
        for l in &leases {
            s.lease_returned(l.id);
        }
        let next: Vec<u64> = s.assign(0).iter().map(|l| l.task.job.0).collect();
        assert_eq!(next, vec![1, 2, 1, 2]);
    }

    #[test]
    fn silent_worker_leases_lapse_and_return_to_the_pool() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1)), (2, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 1));
        let lease = s.assign(0).pop().unwrap();
        let lease_ms = s.config().lease_ms;
        // The holder keeps heartbeating, the other worker too: nothing lapses.
        s.worker_heartbeat(&lease.worker, DeviceState::default(), lease_ms);
        assert!(s.expire(lease_ms + 1).is_empty());
        // The holder goes silent.
        let other = if lease.worker == key(1) { key(2) } else { key(1) };
        s.worker_heartbeat(&other, DeviceState::default(), 3 * lease_ms);
        let lapsed = s.expire(3 * lease_ms);
        assert_eq!(lapsed, vec![lease.clone()]);
        assert_eq!(s.silent_workers(3 * lease_ms), vec![lease.worker]);
        // The relay asks for a replacement; the silent worker is no longer a holder but is
        // also not accepting fresh work until it speaks again, so the other worker gets it.
        s.worker_offline(&lease.worker, 0);
        s.add_replicas(lease.task, 1);
        let again = s.assign(3 * lease_ms);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].worker, other);
        assert_ne!(again[0].id, lease.id);
    }

    #[test]
    fn long_leases_lapse_even_with_heartbeats() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 1));
        let lease = s.assign(0).pop().unwrap();
        let max = s.config().max_lease_ms;
        s.worker_heartbeat(&key(1), DeviceState::default(), max + 1);
        assert_eq!(s.expire(max + 1), vec![lease]);
    }

    #[test]
    fn failed_worker_is_not_given_the_same_task_again() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 1));
        let lease = s.assign(0).pop().unwrap();
        s.lease_failed(lease.id, 0);
        s.add_replicas(lease.task, 1);
        assert!(s.assign(0).is_empty());
    }

    #[test]
    fn declined_task_goes_elsewhere_and_may_come_back() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1)), (2, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 1));
        let first = s.assign(0).pop().unwrap();
        let other = if first.worker == key(1) { key(2) } else { key(1) };
        s.worker_heartbeat(&other, DeviceState { accepting: false, ..Default::default() }, 0);
        assert_eq!(s.lease_declined(first.id), Some(first.clone()));
        assert_eq!(s.outstanding(first.task), 1, "the replica is queued again");
        // The decliner takes nothing until its next heartbeat; the other is paused too.
        assert!(s.assign(1).is_empty());
        // The other worker resumes and gets it.
        s.worker_heartbeat(&other, DeviceState::default(), 2);
        let second = s.assign(2).pop().unwrap();
        assert_eq!((second.worker, second.task), (other, first.task));
        // Unlike a failure, a decline leaves the worker free to take the task later.
        s.worker_heartbeat(&first.worker, DeviceState::default(), 3);
        s.lease_declined(second.id);
        s.worker_heartbeat(&first.worker, DeviceState::default(), 4);
        let third = s.assign(4).pop().unwrap();
        assert_eq!((third.worker, third.task), (first.worker, first.task));
    }

    #[test]
    fn a_disconnect_is_an_abandon_that_costs_the_task_and_a_cooldown() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 2, 1))]);
        s.add_job(JobId(1), req(10), tasks(3, 1));
        let leases = s.assign(0);
        assert_eq!(leases.len(), 2);
        let mut back = s.worker_offline(&key(1), 0);
        back.sort_by_key(|l| l.id);
        assert_eq!(back, leases);
        for l in &back {
            s.add_replicas(l.task, 1);
        }
        // Reconnecting does not wipe its record: it cools down for the backoff...
        s.worker_online(key(1), caps(Backend::Vulkan, 0, 2, 1), 1);
        let backoff = Config::default().abandon_backoff_ms;
        assert_eq!(s.record(&key(1)).map(|r| (r.abandoned, r.cooling_until_ms)), Some((2, backoff * 2)));
        assert!(s.assign(backoff).is_empty(), "cooling down");
        // ...then gets only the task it never held; the abandoned ones wait for someone else.
        let after: Vec<u32> = s.assign(backoff * 2).iter().map(|l| l.task.index).collect();
        assert_eq!(after, vec![2]);
        s.worker_online(key(2), caps(Backend::Vulkan, 0, 2, 1), backoff * 2);
        let mut other: Vec<(PublicKey, u32)> = s.assign(backoff * 2).iter().map(|l| (l.worker, l.task.index)).collect();
        other.sort();
        assert_eq!(other, vec![(key(2), 0), (key(2), 1)]);
    }

    #[test]
    fn each_abandon_doubles_the_cooldown() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(4, 1));
        let backoff = Config::default().abandon_backoff_ms;
        let mut now = 0;
        // (abandon number, cooldown that follows it)
        for (n, cooldown) in [(1, backoff), (2, 2 * backoff), (3, 4 * backoff)] {
            let lease = s.assign(now).pop().expect("a lease after the cooldown");
            s.lease_failed(lease.id, now);
            assert!(s.assign(now + cooldown - 1).is_empty(), "abandon {n}: still cooling");
            now += cooldown;
        }
        assert_eq!(s.assign(now).len(), 1);
    }

    #[test]
    fn a_worker_that_drops_a_task_is_never_offered_it_again_so_one_key_cannot_fail_it() {
        // One griefing key and one honest worker; the griefer abandons every lease it gets.
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1)), (2, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 2));
        let task = TaskId { job: JobId(1), index: 0 };
        let mut lapses = 0;
        for round in 0..20u64 {
            let now = round * 1_000_000;
            for l in s.assign(now) {
                if l.worker == key(1) {
                    s.lease_failed(l.id, now);
                    lapses += 1;
                    s.add_replicas(task, 1);
                }
            }
        }
        assert_eq!(lapses, 1, "the griefer held the task once");
    }

    #[test]
    fn new_keys_hold_few_leases_until_their_results_are_accepted() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 64, 1))]);
        s.add_job(JobId(1), req(10), tasks(100, 1));
        // (accepted in a row, leases it may hold at once)
        assert_eq!(s.assign(0).len(), NEW_WORKER_LEASES as usize);
        proven(&mut s, 1, 5);
        assert_eq!(s.assign(0).len(), 5);
        s.record_rejected(&key(1));
        assert_eq!(s.assign(0).len(), 0, "a rejection takes the run, and the room, away");
    }

    /// Nothing a worker controls buys it a larger share of the work: low key bytes, many declared
    /// slots, reconnecting after every lease. 20 workers, one of them the attacker; 4000 single
    /// replicas handed out one at a time and returned at once. Its fair share is 200.
    #[test]
    fn key_bytes_slots_and_reconnects_buy_no_share() {
        // (case, attacker's slots, reconnects after each lease)
        let cases = [("low key", 1, false), ("64 slots", 64, false), ("reconnects", 1, true)];
        for (name, slots, reconnect) in cases {
            let mut s = Scheduler::new(Config { seed: [3; 32], ..Config::default() }, 1);
            let attacker = PublicKey([0; 32]);
            s.worker_online(attacker, caps(Backend::Vulkan, 0, slots, 1), 0);
            for k in 1..20u8 {
                s.worker_online(key(k), caps(Backend::Vulkan, 0, 1, 1), 0);
            }
            let mut share = 0;
            for i in 0..4000u64 {
                // One replica at a time: only the ranking decides who gets it.
                s.add_job(JobId(i + 1), req(10), tasks(1, 1));
                let mut got = s.assign(0);
                assert_eq!(got.len(), 1);
                let lease = got.pop().unwrap();
                s.lease_returned(lease.id);
                if lease.worker == attacker {
                    share += 1;
                    if reconnect {
                        s.worker_online(attacker, caps(Backend::Vulkan, 0, slots, 1), 0);
                    }
                }
            }
            assert!((160..=240).contains(&share), "{name}: {share} of 4000, fair is 200");
        }
    }

    #[test]
    fn a_tasks_last_replica_waits_for_a_reliable_worker_when_one_is_online() {
        // (case, reliable worker online, expected holders of the task's two replicas)
        let cases: [(&str, bool, usize); 2] = [("no reliable worker: new keys only", false, 2), ("anchored", true, 2)];
        for (name, reliable_online, holders) in cases {
            let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1)), (2, caps(Backend::Vulkan, 0, 1, 1))]);
            if reliable_online {
                s.worker_online(key(9), caps(Backend::Vulkan, 0, 1, 1), 0);
                proven(&mut s, 9, Config::default().trusted_after);
                // Busy with other work, so the new keys are idle and ranked first.
                s.add_job(JobId(0), req(10), tasks(1, 1));
                assert_eq!(s.assign(0).iter().map(|l| l.worker).collect::<Vec<_>>(), vec![key(9)]);
            }
            s.add_job(JobId(1), req(10), tasks(1, 2));
            let first = s.assign(0);
            if reliable_online {
                assert_eq!(first.len(), 1, "{name}: the last replica waits for the anchor");
                assert!(!first[0].anchor);
                let busy = s.leases.values().find(|l| l.task.job == JobId(0)).unwrap().id;
                s.lease_returned(busy);
                let anchor = s.assign(0);
                assert_eq!(
                    anchor.iter().map(|l| (l.worker, l.anchor)).collect::<Vec<_>>(),
                    vec![(key(9), true)],
                    "{name}"
                );
            } else {
                assert_eq!(first.len(), holders, "{name}");
            }
        }
    }

    #[test]
    fn paid_replicas_go_to_distinct_networks() {
        let net = |a: u8| Some(IpAddr::from([10, 0, a, 0]));
        // (case, networks of workers 1..=3, distinct_networks, paid, workers that get a replica)
        type Case = (&'static str, [Option<IpAddr>; 3], bool, bool, usize);
        let cases: Vec<Case> = vec![
            ("one network, paid", [net(1), net(1), net(1)], true, true, 1),
            ("two networks, paid", [net(1), net(1), net(2)], true, true, 2),
            ("one network, unpaid", [net(1), net(1), net(1)], true, false, 3),
            ("one network, rule off", [net(1), net(1), net(1)], false, true, 3),
            ("networks unknown (loopback)", [None, None, None], true, true, 3),
        ];
        for (name, networks, distinct, paid, want) in cases {
            let mut s = Scheduler::new(Config { distinct_networks: distinct, ..Config::default() }, 1);
            for (i, n) in networks.iter().enumerate() {
                let k = key(i as u8 + 1);
                s.worker_online(k, caps(Backend::Vulkan, 0, 1, 1), 0);
                s.set_paid_eligible(&k, true);
                s.set_network(&k, *n);
            }
            s.add_job(JobId(1), JobRequirements { paid, ..req(10) }, tasks(1, 3));
            assert_eq!(s.assign(0).len(), want, "{name}");
        }
    }

    #[test]
    fn homogeneous_tasks_stay_within_one_adapter_class() {
        let mut s = sched_with_workers(&[
            (1, caps(Backend::Vulkan, 0, 1, 0x10de)),
            (2, caps(Backend::Vulkan, 0, 1, 0x1002)),
            (3, caps(Backend::Vulkan, 0, 1, 0x10de)),
        ]);
        s.add_job(JobId(1), JobRequirements { homogeneous: true, ..req(10) }, tasks(1, 2));
        let leases = s.assign(0);
        let workers: BTreeSet<PublicKey> = leases.iter().map(|l| l.worker).collect();
        // Turns are drawn at random: whoever is served first fixes the class.
        if leases[0].worker == key(2) {
            assert_eq!(workers, BTreeSet::from([key(2)]), "no second worker of the AMD class");
        } else {
            assert_eq!(workers, BTreeSet::from([key(1), key(3)]));
        }
    }

    #[test]
    fn queued_replicas_count_as_outstanding() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 2));
        let task = TaskId { job: JobId(1), index: 0 };
        assert_eq!(s.outstanding(task), 2, "both replicas queued");
        let lease = s.assign(0).pop().unwrap();
        assert_eq!(s.outstanding(task), 2, "one leased, one still queued");
        s.lease_returned(lease.id);
        assert_eq!(s.outstanding(task), 1, "the queued one is still coming");
    }

    #[test]
    fn closing_a_task_returns_outstanding_leases() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1)), (2, caps(Backend::Vulkan, 0, 1, 1))]);
        s.add_job(JobId(1), req(10), tasks(1, 2));
        let leases = s.assign(0);
        s.lease_returned(leases[0].id);
        let cancelled = s.close_task(leases[0].task);
        assert_eq!(cancelled, vec![leases[1].clone()]);
        assert_eq!(s.outstanding(leases[0].task), 0);
        assert_eq!(s.pending_replicas(), 0);
    }

    impl Scheduler {
        /// Recomputes every index from the primary state and panics where one disagrees.
        fn check_indexes(&self) {
            let min_battery = self.config.min_battery;
            let rec = |k: &PublicKey| self.records.get(k).copied().unwrap_or_default();
            let ready: BTreeSet<Rank> = self
                .workers
                .iter()
                .filter(|(k, w)| w.has_room(min_battery, &rec(k)))
                .map(|(k, w)| w.rank(*k, &rec(k)))
                .collect();
            assert_eq!(self.ready, ready, "ready set");
            let cooling: BTreeSet<(u64, PublicKey)> =
                self.workers.iter().filter(|(_, w)| w.cooling).map(|(k, _)| (rec(k).cooling_until_ms, *k)).collect();
            assert_eq!(self.cooling, cooling, "cooling index");
            let reliable: BTreeSet<(Hash32, PublicKey)> =
                self.workers.keys().filter(|k| self.is_reliable(k)).map(|k| self.ring(k)).collect();
            assert_eq!(self.reliable, reliable, "reliable index");
            for (k, w) in &self.workers {
                assert!(self.records.contains_key(k), "online worker {k:?} has a record");
                assert_eq!(
                    w.rank,
                    w.has_room(min_battery, &rec(k)).then(|| w.rank(*k, &rec(k))),
                    "stored rank of {k:?}"
                );
                let active = self.leases.values().filter(|l| l.worker == *k).count() as u32;
                assert_eq!(w.active, active, "active leases of {k:?}");
            }
            let seen: BTreeSet<(u64, PublicKey)> = self.workers.iter().map(|(k, w)| (w.last_seen_ms, *k)).collect();
            assert_eq!(self.seen, seen, "heartbeat index");
            let by_worker: BTreeSet<(PublicKey, LeaseId)> = self.leases.values().map(|l| (l.worker, l.id)).collect();
            assert_eq!(self.leases_by_worker, by_worker, "leases by worker");
            let by_task: BTreeSet<(TaskId, LeaseId)> = self.leases.values().map(|l| (l.task, l.id)).collect();
            assert_eq!(self.leases_by_task, by_task, "leases by task");
            let deadlines: BTreeSet<(u64, LeaseId)> = self
                .leases
                .values()
                .map(|l| (l.assigned_at_ms.saturating_add(self.config.max_lease_ms), l.id))
                .collect();
            assert_eq!(self.lease_deadlines, deadlines, "lease deadlines");
            for l in self.leases.values() {
                assert!(self.workers.contains_key(&l.worker), "lease {:?} held by a worker offline", l.id);
                assert!(l.id.0 < self.next_lease);
            }
            let pending: u64 = self.jobs.values().map(JobQueue::pending).sum();
            assert_eq!(self.pending, pending, "pending replicas");
            for (id, job) in &self.jobs {
                let wanting: BTreeSet<u32> = job.tasks.iter().filter(|(_, t)| t.wanted > 0).map(|(i, _)| *i).collect();
                assert_eq!(job.wanting, wanting, "wanting tasks of job {id:?}");
            }
            let wanting_jobs: BTreeSet<JobId> =
                self.jobs.iter().filter(|(_, j)| !j.wanting.is_empty()).map(|(id, _)| *id).collect();
            assert_eq!(self.wanting_jobs, wanting_jobs, "wanting jobs");
        }
    }

    /// The scheduler as it was before the indexes (commit b10a7b5): every lease scans every
    /// worker, every disconnect, close and expiry scans every lease. Slow and plainly right, it is
    /// the oracle the indexed scheduler must agree with while fewer than `WALK_LIMIT` workers have
    /// room (beyond that the indexed walk stops early by design).
    mod reference {
        use super::super::{
            ANCHOR_SCAN, Config, JobRequirements, Lease, MAX_BACKOFF_DOUBLINGS, NEW_WORKER_LEASES, Record, TaskNeeds,
        };
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        use starling_protocol::worker::{Capabilities, DeviceState};
        use starling_protocol::{JobId, LeaseId, PublicKey, TaskId};
        use std::collections::{BTreeMap, BTreeSet, HashMap};

        const SCAN_LIMIT: usize = super::super::SCAN_LIMIT;

        #[derive(Debug)]
        struct WorkerSlot {
            caps: Capabilities,
            class: String,
            state: DeviceState,
            last_seen_ms: u64,
            active: u32,
            paid: bool,
            cooling: bool,
        }

        #[derive(Debug)]
        struct JobQueue {
            req: JobRequirements,
            tasks: BTreeMap<u32, TaskNeeds>,
            wanting: BTreeSet<u32>,
        }

        #[derive(Debug)]
        pub struct Reference {
            config: Config,
            workers: BTreeMap<PublicKey, WorkerSlot>,
            jobs: BTreeMap<JobId, JobQueue>,
            leases: HashMap<LeaseId, Lease>,
            next_lease: u64,
            cursor: Option<JobId>,
            records: BTreeMap<PublicKey, Record>,
            clock: u64,
            rng: StdRng,
        }

        impl Reference {
            pub fn new(config: Config, next_lease: u64) -> Self {
                Self {
                    config,
                    workers: BTreeMap::new(),
                    jobs: BTreeMap::new(),
                    leases: HashMap::new(),
                    next_lease: next_lease.max(1),
                    cursor: None,
                    records: BTreeMap::new(),
                    clock: 0,
                    rng: StdRng::from_seed(config.seed),
                }
            }

            pub fn worker_online(&mut self, key: PublicKey, caps: Capabilities, now_ms: u64) {
                let class = caps.adapter_class();
                self.workers.remove(&key);
                let active = self.leases.values().filter(|l| l.worker == key).count() as u32;
                let n = self.workers.len() as u64 + 1;
                let drawn = self.clock + self.rng.gen_range(0..2 * n);
                let record = self.records.entry(key).or_default();
                record.turn = record.turn.max(drawn);
                let cooling = record.cooling_until_ms > now_ms;
                let slot = WorkerSlot {
                    caps,
                    class,
                    state: DeviceState::default(),
                    last_seen_ms: now_ms,
                    active,
                    paid: false,
                    cooling,
                };
                self.workers.insert(key, slot);
            }

            pub fn set_paid_eligible(&mut self, key: &PublicKey, eligible: bool) {
                if let Some(w) = self.workers.get_mut(key) {
                    w.paid = eligible;
                }
            }

            pub fn worker_heartbeat(&mut self, key: &PublicKey, state: DeviceState, now_ms: u64) {
                if let Some(w) = self.workers.get_mut(key) {
                    w.state = state;
                    w.last_seen_ms = now_ms;
                }
            }

            pub fn worker_offline(&mut self, key: &PublicKey, now_ms: u64) -> Vec<Lease> {
                let ids: Vec<LeaseId> = self.leases.values().filter(|l| &l.worker == key).map(|l| l.id).collect();
                let out = ids.into_iter().filter_map(|id| self.release(id, Some(now_ms), true)).collect();
                self.workers.remove(key);
                out
            }

            pub fn record_accepted(&mut self, key: &PublicKey) {
                let r = self.records.entry(*key).or_default();
                r.valid_run = r.valid_run.saturating_add(1);
            }

            pub fn record_rejected(&mut self, key: &PublicKey) {
                self.records.entry(*key).or_default().valid_run = 0;
            }

            pub fn record(&self, key: &PublicKey) -> Option<Record> {
                self.records.get(key).copied()
            }

            fn reliable(&self, key: &PublicKey) -> bool {
                self.records.get(key).is_some_and(|r| r.valid_run >= self.config.trusted_after)
            }

            pub fn is_online(&self, key: &PublicKey) -> bool {
                self.workers.contains_key(key)
            }

            pub fn workers_online(&self) -> usize {
                self.workers.len()
            }

            pub fn add_job(
                &mut self,
                job: JobId,
                req: JobRequirements,
                tasks: impl IntoIterator<Item = (u32, TaskNeeds)>,
            ) {
                let tasks: BTreeMap<u32, TaskNeeds> = tasks.into_iter().collect();
                let wanting = tasks.iter().filter(|(_, t)| t.wanted > 0).map(|(&i, _)| i).collect();
                self.jobs.insert(job, JobQueue { req, tasks, wanting });
            }

            pub fn remove_job(&mut self, job: JobId) -> Vec<Lease> {
                self.jobs.remove(&job);
                let ids: Vec<LeaseId> = self.leases.values().filter(|l| l.task.job == job).map(|l| l.id).collect();
                ids.into_iter().filter_map(|id| self.release(id, None, false)).collect()
            }

            pub fn add_replicas(&mut self, task: TaskId, n: u8) {
                if let Some(job) = self.jobs.get_mut(&task.job)
                    && let Some(t) = job.tasks.get_mut(&task.index)
                {
                    t.wanted = t.wanted.saturating_add(n);
                    if t.wanted > 0 {
                        job.wanting.insert(task.index);
                    }
                }
            }

            pub fn close_task(&mut self, task: TaskId) -> Vec<Lease> {
                if let Some(job) = self.jobs.get_mut(&task.job) {
                    job.tasks.remove(&task.index);
                    job.wanting.remove(&task.index);
                }
                let ids: Vec<LeaseId> = self.leases.values().filter(|l| l.task == task).map(|l| l.id).collect();
                ids.into_iter().filter_map(|id| self.release(id, None, false)).collect()
            }

            pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
                self.leases.get(&id)
            }

            pub fn outstanding(&self, task: TaskId) -> u8 {
                let leased = self.leases.values().filter(|l| l.task == task).count();
                let queued = self
                    .jobs
                    .get(&task.job)
                    .and_then(|j| j.tasks.get(&task.index))
                    .map_or(0, |t| usize::from(t.wanted));
                (leased + queued).min(u8::MAX as usize) as u8
            }

            pub fn lease_returned(&mut self, id: LeaseId) -> Option<Lease> {
                self.release(id, None, true)
            }

            pub fn lease_failed(&mut self, id: LeaseId, now_ms: u64) -> Option<Lease> {
                self.release(id, Some(now_ms), true)
            }

            pub fn lease_declined(&mut self, id: LeaseId) -> Option<Lease> {
                let lease = self.release(id, None, false)?;
                if let Some(w) = self.workers.get_mut(&lease.worker) {
                    w.state.accepting = false;
                }
                self.add_replicas(lease.task, 1);
                Some(lease)
            }

            fn release(&mut self, id: LeaseId, abandoned_at: Option<u64>, keep_holder: bool) -> Option<Lease> {
                let lease = self.leases.remove(&id)?;
                if let Some(w) = self.workers.get_mut(&lease.worker) {
                    w.active = w.active.saturating_sub(1);
                }
                if let Some(now_ms) = abandoned_at {
                    let r = self.records.entry(lease.worker).or_default();
                    r.abandoned += 1;
                    let until =
                        now_ms + self.config.abandon_backoff_ms * (1 << (r.abandoned - 1).min(MAX_BACKOFF_DOUBLINGS));
                    r.cooling_until_ms = r.cooling_until_ms.max(until);
                    if let Some(w) = self.workers.get_mut(&lease.worker) {
                        w.cooling = true;
                    }
                }
                if !keep_holder
                    && let Some(job) = self.jobs.get_mut(&lease.task.job)
                    && let Some(t) = job.tasks.get_mut(&lease.task.index)
                {
                    t.holders.remove(&lease.worker);
                    if lease.anchor {
                        t.anchors = t.anchors.saturating_sub(1);
                    }
                }
                Some(lease)
            }

            pub fn expire(&mut self, now_ms: u64) -> Vec<Lease> {
                let Config { lease_ms, max_lease_ms, .. } = self.config;
                let lapsed: Vec<LeaseId> = self
                    .leases
                    .values()
                    .filter(|l| {
                        let silent = self
                            .workers
                            .get(&l.worker)
                            .is_none_or(|w| now_ms.saturating_sub(w.last_seen_ms) > lease_ms);
                        silent || now_ms.saturating_sub(l.assigned_at_ms) > max_lease_ms
                    })
                    .map(|l| l.id)
                    .collect();
                lapsed.into_iter().filter_map(|id| self.release(id, Some(now_ms), true)).collect()
            }

            pub fn silent_workers(&self, now_ms: u64) -> Vec<PublicKey> {
                self.workers
                    .iter()
                    .filter(|(_, w)| now_ms.saturating_sub(w.last_seen_ms) > self.config.lease_ms)
                    .map(|(k, _)| *k)
                    .collect()
            }

            pub fn pending_replicas(&self) -> u64 {
                self.jobs.values().flat_map(|j| j.tasks.values()).map(|t| u64::from(t.wanted)).sum()
            }

            pub fn assign(&mut self, now_ms: u64) -> Vec<Lease> {
                for (k, w) in self.workers.iter_mut() {
                    if w.cooling && self.records[k].cooling_until_ms <= now_ms {
                        w.cooling = false;
                    }
                }
                let mut out = Vec::new();
                loop {
                    if !self.workers.iter().any(|(k, w)| self.has_room(k, w)) {
                        break;
                    }
                    let order: Vec<JobId> = {
                        let start = self.cursor;
                        let (after, upto): (Vec<JobId>, Vec<JobId>) =
                            self.jobs.keys().copied().partition(|j| start.is_some_and(|c| *j > c));
                        after.into_iter().chain(upto).collect()
                    };
                    let mut progressed = false;
                    for job in order {
                        if let Some(lease) = self.assign_one(job, now_ms) {
                            self.cursor = Some(job);
                            out.push(lease);
                            progressed = true;
                        }
                    }
                    if !progressed {
                        break;
                    }
                }
                out
            }

            fn available(&self, w: &WorkerSlot) -> bool {
                let battery_ok = match (w.state.battery, w.state.charging) {
                    (Some(level), charging) => charging == Some(true) || level >= self.config.min_battery,
                    (None, _) => true,
                };
                w.state.accepting && battery_ok && !w.cooling
            }

            fn has_room(&self, key: &PublicKey, w: &WorkerSlot) -> bool {
                let run = self.records.get(key).map_or(0, |r| r.valid_run);
                self.available(w) && w.active < w.caps.slots.max(1).min(NEW_WORKER_LEASES + run)
            }

            fn fits(req: &JobRequirements, w: &WorkerSlot) -> bool {
                let l = &w.caps.limits;
                w.caps.asking_price <= req.price_per_replica
                    && (!req.paid || w.paid)
                    && (!req.needs_gpu || w.caps.runs_wgsl())
                    && req.max_binding_bytes <= l.max_storage_buffer_binding_size
                    && req.max_binding_bytes <= l.max_buffer_size
                    && req.storage_buffers <= l.max_storage_buffers_per_shader_stage
                    && req.max_workgroups <= l.max_compute_workgroups_per_dimension
            }

            fn assign_one(&mut self, job_id: JobId, now_ms: u64) -> Option<Lease> {
                let job = self.jobs.get(&job_id)?;
                let candidates: Vec<&PublicKey> = self
                    .workers
                    .iter()
                    .filter(|(k, w)| self.has_room(k, w) && Self::fits(&job.req, w))
                    .map(|(k, _)| k)
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                let independent = |task: &TaskNeeds, k: &PublicKey, w: &WorkerSlot| {
                    !task.holders.contains(k)
                        && (!job.req.homogeneous || task.class.as_ref().is_none_or(|c| *c == w.class))
                };
                // Reliable workers in the order of their secret place on the ring.
                let mut ring: Vec<(starling_protocol::Hash32, &PublicKey, &WorkerSlot)> = self
                    .workers
                    .iter()
                    .filter(|(k, _)| self.reliable(k))
                    .map(|(k, w)| {
                        (starling_protocol::sha256(&[&self.config.seed[..], b"ring", &k.0[..]].concat()), k, w)
                    })
                    .collect();
                ring.sort_by_key(|r| r.0);
                let (index, worker) = job.wanting.iter().take(SCAN_LIMIT).find_map(|&index| {
                    let task = &job.tasks[&index];
                    let anchor = task.wanted == 1
                        && task.anchors == 0
                        && ring
                            .iter()
                            .take(ANCHOR_SCAN)
                            .any(|&(_, k, w)| self.available(w) && Self::fits(&job.req, w) && independent(task, k, w));
                    candidates
                        .iter()
                        .map(|k| (*k, &self.workers[*k]))
                        .filter(|(k, w)| independent(task, k, w) && (!anchor || self.reliable(k)))
                        .min_by_key(|(k, w)| (w.active, self.records[*k].turn, **k))
                        .map(|(k, _)| (index, *k))
                })?;

                let id = LeaseId(self.next_lease);
                self.next_lease += 1;
                let anchor = self.reliable(&worker);
                let n = self.workers.len() as u64;
                let turn = self.clock + self.rng.gen_range(n..2 * n);
                self.clock += 1;
                self.records.get_mut(&worker).expect("online workers have records").turn = turn;
                let w = self.workers.get_mut(&worker).expect("candidate is online");
                w.active += 1;
                let class = w.class.clone();
                let job = self.jobs.get_mut(&job_id).expect("job exists");
                let task = job.tasks.get_mut(&index).expect("task exists");
                task.wanted -= 1;
                task.holders.insert(worker);
                if anchor {
                    task.anchors = task.anchors.saturating_add(1);
                }
                if job.req.homogeneous && task.class.is_none() {
                    task.class = Some(class);
                }
                if task.wanted == 0 {
                    job.wanting.remove(&index);
                }
                let task = TaskId { job: job_id, index };
                let lease = Lease {
                    id,
                    task,
                    worker,
                    holder: worker,
                    assigned_at_ms: now_ms,
                    network: None,
                    anchor,
                    sampled: false,
                };
                self.leases.insert(id, lease.clone());
                Some(lease)
            }
        }
    }

    fn sorted(mut leases: Vec<Lease>) -> Vec<Lease> {
        leases.sort_by_key(|l| l.id);
        leases
    }

    /// Drives the indexed scheduler and the reference through the same random operations (seeded,
    /// so a failure reproduces) and requires the same answer to every call, with the indexes
    /// recomputed from scratch after each step.
    #[test]
    fn indexed_scheduler_agrees_with_the_reference_on_random_operations() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        let config = Config {
            lease_ms: 1_000,
            max_lease_ms: 5_000,
            min_battery: 0.2,
            trusted_after: 2,
            abandon_backoff_ms: 300,
            distinct_networks: true,
            seed: [7; 32],
        };
        let backends = [Backend::Vulkan, Backend::Metal, Backend::Cpu];
        let mut steps_with_leases = 0;
        let mut leases_seen = 0;
        for seed in 0..40u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = Scheduler::new(config, 1);
            let mut r = reference::Reference::new(config, 1);
            let mut now = 0u64;
            let mut job_ids: Vec<JobId> = Vec::new();
            let mut leases: Vec<LeaseId> = Vec::new();
            for step in 0..1_500 {
                let ctx = format!("seed {seed} step {step}");
                let worker = key(rng.gen_range(1..=12));
                match rng.gen_range(0..100) {
                    0..=9 => {
                        let c = caps(
                            backends[rng.gen_range(0..backends.len())],
                            rng.gen_range(0..12),
                            rng.gen_range(0..=3),
                            [0x10de, 0x1002][rng.gen_range(0..2)],
                        );
                        s.worker_online(worker, c.clone(), now);
                        r.worker_online(worker, c, now);
                    }
                    10..=13 => assert_eq!(
                        sorted(s.worker_offline(&worker, now)),
                        sorted(r.worker_offline(&worker, now)),
                        "{ctx}"
                    ),
                    14..=27 => {
                        let state = DeviceState {
                            accepting: rng.gen_bool(0.8),
                            battery: rng.gen_bool(0.3).then(|| rng.gen_range(0.0..1.0)),
                            charging: rng.gen_bool(0.3).then(|| rng.gen_bool(0.5)),
                        };
                        s.worker_heartbeat(&worker, state, now);
                        r.worker_heartbeat(&worker, state, now);
                    }
                    28..=29 => {
                        let eligible = rng.gen_bool(0.5);
                        s.set_paid_eligible(&worker, eligible);
                        r.set_paid_eligible(&worker, eligible);
                    }
                    30 => {
                        if rng.gen_bool(0.8) {
                            s.record_accepted(&worker);
                            r.record_accepted(&worker);
                        } else {
                            s.record_rejected(&worker);
                            r.record_rejected(&worker);
                        }
                    }
                    31..=36 => {
                        let job = JobId(rng.gen_range(1..=5));
                        let requirements = JobRequirements {
                            needs_gpu: rng.gen_bool(0.3),
                            homogeneous: rng.gen_bool(0.4),
                            paid: rng.gen_bool(0.3),
                            max_workgroups: if rng.gen_bool(0.1) { 70_000 } else { 16 },
                            ..req(rng.gen_range(4..14))
                        };
                        let tasks: Vec<(u32, TaskNeeds)> = (0..rng.gen_range(1..6))
                            .map(|i| (i, TaskNeeds { wanted: rng.gen_range(0..4), ..Default::default() }))
                            .collect();
                        s.add_job(job, requirements.clone(), tasks.clone());
                        r.add_job(job, requirements, tasks);
                        job_ids.push(job);
                    }
                    37..=38 => {
                        let job = JobId(rng.gen_range(1..=5));
                        assert_eq!(sorted(s.remove_job(job)), sorted(r.remove_job(job)), "{ctx}");
                    }
                    39..=44 => {
                        let task = TaskId { job: JobId(rng.gen_range(1..=5)), index: rng.gen_range(0..6) };
                        let n = rng.gen_range(0..3);
                        s.add_replicas(task, n);
                        r.add_replicas(task, n);
                    }
                    45..=47 => {
                        let task = TaskId { job: JobId(rng.gen_range(1..=5)), index: rng.gen_range(0..6) };
                        assert_eq!(sorted(s.close_task(task)), sorted(r.close_task(task)), "{ctx}");
                    }
                    48..=64 => {
                        let got = s.assign(now);
                        assert_eq!(got, r.assign(now), "{ctx}");
                        leases.extend(got.iter().map(|l| l.id));
                        leases_seen += got.len();
                    }
                    65..=79 if !leases.is_empty() => {
                        let id = leases.swap_remove(rng.gen_range(0..leases.len()));
                        let (a, b) = match rng.gen_range(0..3) {
                            0 => (s.lease_returned(id), r.lease_returned(id)),
                            1 => (s.lease_failed(id, now), r.lease_failed(id, now)),
                            _ => (s.lease_declined(id), r.lease_declined(id)),
                        };
                        assert_eq!(a, b, "{ctx}");
                    }
                    80..=89 => now += rng.gen_range(0..800),
                    _ => {
                        assert_eq!(s.silent_workers(now), r.silent_workers(now), "{ctx}");
                        assert_eq!(sorted(s.expire(now)), sorted(r.expire(now)), "{ctx}");
                    }
                }
                s.check_indexes();
                assert_eq!(s.pending_replicas(), r.pending_replicas(), "{ctx}");
                assert_eq!(s.workers_online(), r.workers_online(), "{ctx}");
                for k in 1..=12 {
                    assert_eq!(s.is_online(&key(k)), r.is_online(&key(k)), "{ctx}");
                    assert_eq!(s.record(&key(k)), r.record(&key(k)), "{ctx}");
                }
                for job in 1..=5 {
                    for index in 0..6 {
                        let task = TaskId { job: JobId(job), index };
                        assert_eq!(s.outstanding(task), r.outstanding(task), "{ctx} {task}");
                    }
                }
                for id in &leases {
                    assert_eq!(s.lease(*id), r.lease(*id), "{ctx}");
                }
                if !s.leases.is_empty() {
                    steps_with_leases += 1;
                }
            }
        }
        // The sequence must exercise leasing, not just churn: guard against a generator that
        // never gets past the fit rules.
        assert!(leases_seen > 4_000 && steps_with_leases > 20_000, "{leases_seen} leases, {steps_with_leases} steps");
    }

    #[test]
    fn a_lease_walks_at_most_walk_limit_workers_down_the_ranking() {
        // WALK_LIMIT + 1 idle workers, all ranked alike but for key order; only the last fits.
        let mut s = Scheduler::new(Config::default(), 1);
        let worker_key = |i: usize| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            PublicKey(bytes)
        };
        for i in 0..=WALK_LIMIT {
            s.worker_online(worker_key(i), caps(Backend::Vulkan, 50, 1, 1), 0);
        }
        // The worker ranked last becomes the cheap one; reconnecting never moves a turn forward.
        let cheap = s.ready.last().unwrap().key;
        let first = s.ready.first().unwrap().key;
        s.worker_online(cheap, caps(Backend::Vulkan, 0, 1, 1), 0);
        assert_eq!(s.ready.last().unwrap().key, cheap);
        s.add_job(JobId(1), req(10), tasks(1, 1));
        assert!(s.assign(0).is_empty(), "the one worker that fits is past the walk");
        assert_eq!(s.workers_with_room(), WALK_LIMIT + 1);
        // One ranked ahead of it gets other work and leaves the ranking (its one slot is full)...
        s.add_job(JobId(2), req(100), tasks(1, 1));
        let other = s.assign(0);
        assert_eq!(other.iter().map(|l| (l.task.job, l.worker)).collect::<Vec<_>>(), vec![(JobId(2), first)]);
        // ...so at the next call the cheap worker is within reach.
        let found = s.assign(0);
        assert_eq!(found.iter().map(|l| (l.task.job, l.worker)).collect::<Vec<_>>(), vec![(JobId(1), cheap)]);
        s.check_indexes();
    }

    #[test]
    fn indexes_follow_every_change_of_room() {
        // (case, change applied to a worker with one free slot, has room afterwards)
        type Change = fn(&mut Scheduler);
        let cases: Vec<(&str, Change, bool)> = vec![
            ("online", |_| {}, true),
            (
                "paused",
                |s| s.worker_heartbeat(&key(1), DeviceState { accepting: false, ..Default::default() }, 1),
                false,
            ),
            (
                "low battery",
                |s| s.worker_heartbeat(&key(1), DeviceState { battery: Some(0.1), charging: None, accepting: true }, 1),
                false,
            ),
            ("leased its slot", |s| assert_eq!(s.assign(0).len(), 1), false),
            (
                "lease returned",
                |s| {
                    let lease = s.assign(0).pop().unwrap();
                    s.lease_returned(lease.id);
                },
                true,
            ),
            (
                "lease declined",
                |s| {
                    let lease = s.assign(0).pop().unwrap();
                    s.lease_declined(lease.id);
                },
                false,
            ),
            (
                "task closed under it",
                |s| {
                    let lease = s.assign(0).pop().unwrap();
                    s.close_task(lease.task);
                },
                true,
            ),
            ("offline", |s| assert!(s.worker_offline(&key(1), 0).is_empty()), false),
            (
                "reconnected while holding a lease",
                |s| {
                    s.assign(0);
                    s.worker_online(key(1), caps(Backend::Vulkan, 0, 1, 1), 1);
                },
                false,
            ),
        ];
        for (name, change, room) in cases {
            let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 1, 1))]);
            s.add_job(JobId(1), req(10), tasks(1, 1));
            change(&mut s);
            s.check_indexes();
            assert_eq!(s.workers_with_room() == 1, room, "{name}");
        }
    }
}
