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
//! - a worker never holds two replicas of the same task (replicas must be independent);
//! - fairness across jobs: one replica per job per round, jobs in round-robin order;
//! - evenness across workers: the least loaded fitting worker wins (active leases per slot, then
//!   fewest leases ever, then key order);
//! - a lease lapses when its worker is silent for `lease_ms` or the lease is older than
//!   `max_lease_ms`; lapsed and failed replicas are handed back to the relay, which re-decides the
//!   task with the verifier.

use starling_protocol::worker::{Capabilities, DeviceState};
use starling_protocol::{JobId, LeaseId, PublicKey, TaskId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Tunables.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Silence after which a worker's leases lapse.
    pub lease_ms: u64,
    /// Longest a single lease may run even while its worker heartbeats.
    pub max_lease_ms: u64,
    /// Below this battery charge a worker that is not charging gets no work.
    pub min_battery: f32,
}

impl Default for Config {
    fn default() -> Self {
        Self { lease_ms: 15_000, max_lease_ms: 600_000, min_battery: 0.2 }
    }
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
    /// Workers that hold or returned a replica of this task (never given another one).
    pub holders: BTreeSet<PublicKey>,
    /// Adapter class all replicas must share (homogeneous jobs), once known.
    pub class: Option<String>,
}

/// A replica leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub task: TaskId,
    pub worker: PublicKey,
    pub assigned_at_ms: u64,
}

#[derive(Debug)]
struct WorkerSlot {
    caps: Capabilities,
    class: String,
    state: DeviceState,
    last_seen_ms: u64,
    active: u32,
    assigned_total: u64,
    /// Registered and bonded in escrow when it connected: may take paid jobs.
    paid: bool,
}

#[derive(Debug)]
struct JobQueue {
    req: JobRequirements,
    tasks: BTreeMap<u32, TaskNeeds>,
    /// Tasks with `wanted > 0`, in index order.
    wanting: BTreeSet<u32>,
}

/// The scheduler's whole state.
#[derive(Debug)]
pub struct Scheduler {
    config: Config,
    workers: BTreeMap<PublicKey, WorkerSlot>,
    jobs: BTreeMap<JobId, JobQueue>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: u64,
    /// The job served last; the next round starts after it.
    cursor: Option<JobId>,
}

/// Tasks scanned per job per round while looking for one some free worker may take.
const SCAN_LIMIT: usize = 64;

impl Scheduler {
    pub fn new(config: Config, next_lease: u64) -> Self {
        Self {
            config,
            workers: BTreeMap::new(),
            jobs: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: next_lease.max(1),
            cursor: None,
        }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    pub fn worker_online(&mut self, key: PublicKey, caps: Capabilities, now_ms: u64) {
        let class = caps.adapter_class();
        let assigned_total = self.workers.get(&key).map_or(0, |w| w.assigned_total);
        let active = self.leases.values().filter(|l| l.worker == key).count() as u32;
        let slot = WorkerSlot {
            caps,
            class,
            state: DeviceState::default(),
            last_seen_ms: now_ms,
            active,
            assigned_total,
            paid: false,
        };
        self.workers.insert(key, slot);
    }

    /// Whether the worker may take paid jobs (its escrow standing, read when it connected).
    pub fn set_paid_eligible(&mut self, key: &PublicKey, eligible: bool) {
        if let Some(w) = self.workers.get_mut(key) {
            w.paid = eligible;
        }
    }

    /// Records a heartbeat; its leases stay alive.
    pub fn worker_heartbeat(&mut self, key: &PublicKey, state: DeviceState, now_ms: u64) {
        if let Some(w) = self.workers.get_mut(key) {
            w.state = state;
            w.last_seen_ms = now_ms;
        }
    }

    /// The worker disconnected: its leases lapse at once and are returned.
    pub fn worker_offline(&mut self, key: &PublicKey) -> Vec<Lease> {
        self.workers.remove(key);
        let ids: Vec<LeaseId> = self.leases.values().filter(|l| &l.worker == key).map(|l| l.id).collect();
        ids.into_iter().filter_map(|id| self.release(id, false)).collect()
    }

    pub fn is_online(&self, key: &PublicKey) -> bool {
        self.workers.contains_key(key)
    }

    pub fn workers_online(&self) -> usize {
        self.workers.len()
    }

    /// Starts scheduling a job's tasks.
    pub fn add_job(&mut self, job: JobId, req: JobRequirements, tasks: impl IntoIterator<Item = (u32, TaskNeeds)>) {
        let tasks: BTreeMap<u32, TaskNeeds> = tasks.into_iter().collect();
        let wanting = tasks.iter().filter(|(_, t)| t.wanted > 0).map(|(&i, _)| i).collect();
        self.jobs.insert(job, JobQueue { req, tasks, wanting });
    }

    /// Stops scheduling a job; returns its outstanding leases so the relay can cancel them.
    pub fn remove_job(&mut self, job: JobId) -> Vec<Lease> {
        self.jobs.remove(&job);
        let ids: Vec<LeaseId> = self.leases.values().filter(|l| l.task.job == job).map(|l| l.id).collect();
        ids.into_iter().filter_map(|id| self.release(id, false)).collect()
    }

    /// Hands out `n` more replicas of `task`.
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

    /// The task is decided: nothing more is handed out and outstanding leases are returned for
    /// cancelling.
    pub fn close_task(&mut self, task: TaskId) -> Vec<Lease> {
        if let Some(job) = self.jobs.get_mut(&task.job) {
            job.tasks.remove(&task.index);
            job.wanting.remove(&task.index);
        }
        let ids: Vec<LeaseId> = self.leases.values().filter(|l| l.task == task).map(|l| l.id).collect();
        ids.into_iter().filter_map(|id| self.release(id, false)).collect()
    }

    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Replicas of `task` still to come: leased and not returned, plus those queued to be handed
    /// out (counting only leases would make the verifier ask again for replicas already queued).
    pub fn outstanding(&self, task: TaskId) -> u8 {
        let leased = self.leases.values().filter(|l| l.task == task).count();
        let queued =
            self.jobs.get(&task.job).and_then(|j| j.tasks.get(&task.index)).map_or(0, |t| usize::from(t.wanted));
        (leased + queued).min(u8::MAX as usize) as u8
    }

    /// The worker returned a result for the lease; its slot frees and it stays a holder.
    pub fn lease_returned(&mut self, id: LeaseId) -> Option<Lease> {
        self.release(id, true)
    }

    /// The worker gave up on the lease; it stays a holder so it is not handed the task again.
    pub fn lease_failed(&mut self, id: LeaseId) -> Option<Lease> {
        self.release(id, true)
    }

    /// The worker gave the lease back without starting it (paused, busy): the replica is queued
    /// again (the task still wants as many as before), the worker may be offered the task again later, and it takes no new work
    /// until its next heartbeat says it accepts some (so the task does not bounce straight back).
    pub fn lease_declined(&mut self, id: LeaseId) -> Option<Lease> {
        let lease = self.release(id, false)?;
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.state.accepting = false;
        }
        self.add_replicas(lease.task, 1);
        Some(lease)
    }

    fn release(&mut self, id: LeaseId, keep_holder: bool) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.active = w.active.saturating_sub(1);
        }
        if !keep_holder
            && let Some(job) = self.jobs.get_mut(&lease.task.job)
            && let Some(t) = job.tasks.get_mut(&lease.task.index)
        {
            t.holders.remove(&lease.worker);
        }
        Some(lease)
    }

    /// Leases whose worker went silent or that ran too long lapse; they are returned.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Lease> {
        let Config { lease_ms, max_lease_ms, .. } = self.config;
        let lapsed: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|l| {
                let silent =
                    self.workers.get(&l.worker).is_none_or(|w| now_ms.saturating_sub(w.last_seen_ms) > lease_ms);
                silent || now_ms.saturating_sub(l.assigned_at_ms) > max_lease_ms
            })
            .map(|l| l.id)
            .collect();
        lapsed.into_iter().filter_map(|id| self.release(id, false)).collect()
    }

    /// Workers silent for longer than `lease_ms`, to be disconnected by the relay.
    pub fn silent_workers(&self, now_ms: u64) -> Vec<PublicKey> {
        self.workers
            .iter()
            .filter(|(_, w)| now_ms.saturating_sub(w.last_seen_ms) > self.config.lease_ms)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Replicas still to hand out, over all jobs.
    pub fn pending_replicas(&self) -> u64 {
        self.jobs.values().flat_map(|j| j.tasks.values()).map(|t| u64::from(t.wanted)).sum()
    }

    /// Hands out as many replicas as fit, one per job per round.
    pub fn assign(&mut self, now_ms: u64) -> Vec<Lease> {
        let mut out = Vec::new();
        loop {
            if !self.workers.values().any(|w| self.has_room(w)) {
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

    fn has_room(&self, w: &WorkerSlot) -> bool {
        let battery_ok = match (w.state.battery, w.state.charging) {
            (Some(level), charging) => charging == Some(true) || level >= self.config.min_battery,
            (None, _) => true,
        };
        w.state.accepting && battery_ok && w.active < w.caps.slots.max(1)
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
        let candidates: Vec<&PublicKey> =
            self.workers.iter().filter(|(_, w)| self.has_room(w) && Self::fits(&job.req, w)).map(|(k, _)| k).collect();
        if candidates.is_empty() {
            return None;
        }
        let (index, worker) = job.wanting.iter().take(SCAN_LIMIT).find_map(|&index| {
            let task = &job.tasks[&index];
            candidates
                .iter()
                .filter(|k| !task.holders.contains(k))
                .map(|k| (*k, &self.workers[*k]))
                .filter(|(_, w)| !job.req.homogeneous || task.class.as_ref().is_none_or(|c| *c == w.class))
                .min_by(|(ka, a), (kb, b)| {
                    let load = |w: &WorkerSlot| u64::from(w.active) * 1_000_000 / u64::from(w.caps.slots.max(1));
                    (load(a), a.assigned_total, *ka).cmp(&(load(b), b.assigned_total, *kb))
                })
                .map(|(k, _)| (index, *k))
        })?;

        let id = LeaseId(self.next_lease);
        self.next_lease += 1;
        let w = self.workers.get_mut(&worker).expect("candidate is online");
        w.active += 1;
        w.assigned_total += 1;
        let class = w.class.clone();
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let task = job.tasks.get_mut(&index).expect("task exists");
        task.wanted -= 1;
        task.holders.insert(worker);
        if job.req.homogeneous && task.class.is_none() {
            task.class = Some(class);
        }
        if task.wanted == 0 {
            job.wanting.remove(&index);
        }
        let lease = Lease { id, task: TaskId { job: job_id, index }, worker, assigned_at_ms: now_ms };
        self.leases.insert(id, lease.clone());
        Some(lease)
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
        s.worker_offline(&lease.worker);
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
        s.lease_failed(lease.id);
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
    fn disconnect_returns_leases_and_frees_holder() {
        let mut s = sched_with_workers(&[(1, caps(Backend::Vulkan, 0, 2, 1))]);
        s.add_job(JobId(1), req(10), tasks(2, 1));
        let leases = s.assign(0);
        assert_eq!(leases.len(), 2);
        let mut back = s.worker_offline(&key(1));
        back.sort_by_key(|l| l.id);
        assert_eq!(back, leases);
        // Reconnecting, it may take the same tasks again.
        s.worker_online(key(1), caps(Backend::Vulkan, 0, 2, 1), 1);
        for l in &back {
            s.add_replicas(l.task, 1);
        }
        assert_eq!(s.assign(1).len(), 2);
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
        assert_eq!(leases.len(), 2);
        let workers: BTreeSet<PublicKey> = leases.iter().map(|l| l.worker).collect();
        assert_eq!(workers, BTreeSet::from([key(1), key(3)]));
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
}
