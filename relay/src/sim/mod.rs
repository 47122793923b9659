//! The market simulator: thousands of workers with chosen strategies against the relay's real
//! decision code and the real escrow contract, with no sockets, no database and no clock.
//!
//! One [`run`] drives a [`Core`] (scheduler, verifier, hidden replicas, audits) the way the
//! driver does, with simulated time; settles every verified task through
//! [`plan::settle_entry`] and the contract's `SettleBatch`; reports every rejected signature as
//! evidence through [`plan::evidence`] and the contract's `Slash`; and closes finished jobs,
//! refunding their clients. The contract is the deployable wasm running in cosmwasm-vm
//! ([`Ledger`]), so payments, slashes and refunds are the contract's own arithmetic, read back
//! from its accounts at the end. Everything random is drawn from one seed: a run is
//! reproducible bit for bit.
//!
//! Workers do not run kernels: a task's correct output is a hash only honest work yields, and a
//! strategy decides what each worker signs and when ([`Strategy`]). The price of honest work is
//! [`Params::compute_cost`] per replica computed; strategies that skip the work save it.

pub mod report;

use crate::core::{CheckOutcome, Core, CoreConfig, Input, Now, OpenOutcome, Ready, Write};
use crate::escrow::settler::SettleNote;
use crate::escrow::{Evidence, OpenJob, Registration, bond_msg, create_job_msg, plan, settle_msg, slash_msg};
use crate::scheduler;
use cosmwasm_std::{Addr, HexBinary, Timestamp, Uint128};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use starling_escrow::msg::{ExecuteMsg, InstantiateMsg, QueryMsg, WorkerResponse};
use starling_escrow::state::Account;
use starling_escrow_vm::{Ledger, LedgerError};
use starling_protocol::api::ReplicaState;
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::sign::{AccountAction, EscrowDeployment, Keypair};
use starling_protocol::worker::{
    AdapterInfo, Backend, Capabilities, DeviceLimits, DeviceState, Platform, RelayMessage,
};
use starling_protocol::{Hash32, JobId, LeaseId, PublicKey, TaskId, sha256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

/// What a group of workers does with the tasks it is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Computes every task and signs the correct result.
    Honest,
    /// Signs a wrong result of its own, without computing, with probability `p` per task.
    Liar { p: f64 },
    /// Signs one constant output for every task without computing (every lazy worker's constant
    /// is the same, as all-zero buffers would be).
    Lazy,
    /// Keys of one colluding group: each waits a little after a lease to see which replicas of
    /// the task the group holds, and signs one agreed wrong result whenever the group holds as
    /// many replicas of it as the job asks for (every replica it can see); otherwise it computes
    /// honestly and builds a record.
    Cartel,
    /// Copies what is public instead of computing: before a task is decided nothing of it is,
    /// so it signs the last verified output of the same job.
    Copier,
    /// Takes leases and never returns them (it heartbeats, so each lease runs to its limit).
    Griefer,
}

impl Strategy {
    pub fn lies(self) -> bool {
        !matches!(self, Strategy::Honest | Strategy::Griefer)
    }
}

/// Who owns a group's keys in escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// One account per key (independent people, or an attacker with many accounts).
    Many,
    /// One account for all of them: the relay and the contract count them as one vote.
    One,
}

/// A share of the network following one strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub strategy: Strategy,
    /// Its share of the workers.
    pub share: f64,
    pub owners: Owners,
    /// A key that loses its standing (slashed below the minimum bond) is replaced by a fresh,
    /// freshly bonded key, while the group's bond budget lasts.
    pub reenter: bool,
    /// Money the group may put into bonds over the run (`None`: unlimited).
    pub budget: Option<u128>,
}

impl Group {
    pub fn new(name: &str, strategy: Strategy, share: f64) -> Self {
        Self { name: name.into(), strategy, share, owners: Owners::Many, reenter: true, budget: None }
    }
}

/// A population and the parameters it runs at.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// The cheating groups; the rest of the network is honest.
    pub groups: Vec<Group>,
    pub params: Params,
}

/// The market's parameters (what a sweep varies) and the run's size.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub seed: u64,
    pub workers: usize,
    pub tasks: usize,
    pub tasks_per_job: u32,
    /// Jobs the client keeps running at once.
    pub jobs_in_flight: usize,
    pub replicas: u8,
    pub max_replicas: u8,
    /// Paid per settled replica (smallest unit).
    pub price: u64,
    /// The contract's minimum bond; every key bonds exactly this.
    pub min_bond: u128,
    pub slash_bps: u16,
    pub relay_fee_bps: u16,
    /// What computing one replica costs an honest worker (power, wear), as a share of the price.
    pub compute_cost: f64,
    /// The core's hidden extra replica, audit and known-answer check rates.
    pub extra_rate: f64,
    pub audit_rate: f64,
    pub canary_rate: f64,
    /// Jobs allow adaptive replication with this audit rate in percent (quorum 1): a task whose
    /// first worker has a long verified run may run on it alone.
    pub adaptive: Option<u8>,
}

impl Default for Params {
    /// The relay's and the contract's defaults, at a size that runs in about a minute.
    fn default() -> Self {
        let core = CoreConfig::default();
        let embedded = crate::escrow::embedded::EmbeddedConfig::new("");
        Self {
            seed: 1,
            workers: 1_000,
            tasks: 20_000,
            tasks_per_job: 100,
            jobs_in_flight: 30,
            replicas: 2,
            max_replicas: starling_protocol::limits::MAX_REPLICAS,
            price: 1_000,
            min_bond: embedded.min_bond,
            slash_bps: embedded.slash_bps,
            relay_fee_bps: embedded.relay_fee_bps,
            compute_cost: 0.5,
            extra_rate: core.extra_rate,
            audit_rate: core.audit_rate,
            canary_rate: core.canary_rate,
            adaptive: None,
        }
    }
}

/// What happened to one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupOutcome {
    pub name: String,
    pub strategy: Option<Strategy>,
    /// Keys it ran, re-entries included.
    pub keys: usize,
    /// Results it signed and returned.
    pub returned: u64,
    /// Of those, computed honestly (what its work cost it).
    pub computed: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Paid by the contract to its accounts.
    pub earned: u128,
    /// Taken from its bonds by the contract.
    pub slashed: u128,
    /// Put into bonds.
    pub bonded: u128,
    /// Its signatures on accepted wrong results (a task it signed with two keys counts twice).
    pub wrong_accepted: u64,
    /// Keys that lost their standing (slashed below the minimum bond, or barred from paid work
    /// by a failed known-answer check), and the median time from a key's first lease to that.
    pub ejected: usize,
    /// Of those, barred by a known-answer check.
    pub barred: usize,
    pub median_eject_secs: Option<f64>,
}

impl GroupOutcome {
    /// Net gain: pay, less slashes, less the cost of the work it did.
    pub fn profit(&self, compute_cost: f64, price: u64) -> f64 {
        self.earned as f64 - self.slashed as f64 - self.computed as f64 * compute_cost * price as f64
    }

    /// Net gain per result returned, in units of the replica price.
    pub fn profit_per_replica(&self, compute_cost: f64, price: u64) -> Option<f64> {
        (self.returned > 0).then(|| self.profit(compute_cost, price) / self.returned as f64 / price as f64)
    }
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub scenario: String,
    pub params: Params,
    pub tasks_verified: u64,
    pub tasks_failed: u64,
    pub wrong_accepted: u64,
    /// Results returned over all workers.
    pub replicas_returned: u64,
    /// Honest workers first, then each group in order.
    pub groups: Vec<GroupOutcome>,
    /// Simulated time the run took.
    pub sim_secs: f64,
    /// Money check: what was minted equals the ledger's supply plus what slashing burned.
    pub conserved: bool,
}

impl Outcome {
    pub fn wrong_per_10k(&self) -> f64 {
        self.wrong_accepted as f64 * 10_000.0 / (self.tasks_verified.max(1)) as f64
    }

    pub fn replicas_per_verified(&self) -> f64 {
        self.replicas_returned as f64 / self.tasks_verified.max(1) as f64
    }

    pub fn honest(&self) -> &GroupOutcome {
        &self.groups[0]
    }
}

/// Why a run could not be carried out (the contract or its artifact, never a strategy).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Setup(String),
}

const TICK_MS: u64 = 500;
const HEARTBEAT_MS: u64 = 5_000;
const START_WALL_MS: u64 = 1_800_000_000_000;
const CHAIN_ID: &str = "starling-sim";
/// Cheaters that skip the work answer this fast.
const SHORTCUT_MS: u64 = 300;
/// How long a cartel key waits after a lease to see the group's other leases of the task.
const CARTEL_WAIT_MS: u64 = 3_000;
/// A run that has not finished in this much simulated time stops (and says so in its counts).
const MAX_SIM_MS: u64 = 6 * 3600 * 1000;

#[derive(Debug)]
struct SimWorker {
    kp: Keypair,
    /// Index into [`Sim::groups`]; 0 is the honest majority.
    group: usize,
    speed_ms: u64,
    paid: bool,
    online: bool,
    first_lease_ms: Option<u64>,
}

#[derive(Debug)]
struct OwnerAccount {
    kp: Keypair,
    nonce: u64,
    /// The group its keys belong to.
    group: usize,
}

#[derive(Debug)]
enum Event {
    /// A worker's answer to a lease is due.
    Answer { worker: usize, lease: LeaseId, task: TaskId, digest: Hash32 },
    /// A key lost its standing: slashed below the minimum bond, or barred from paid work.
    Standing { worker: usize },
}

/// Replicas of a task as the store has them.
#[derive(Debug, Default)]
struct TaskReplicas {
    replicas: Vec<plan::SignedReplica>,
    leases: HashMap<LeaseId, usize>,
    verified: Option<Hash32>,
}

struct Sim {
    p: Params,
    rng: StdRng,
    core: Core,
    ledger: Ledger,
    relay: Addr,
    operator: Addr,
    deployment: EscrowDeployment,
    client: Keypair,
    minted: u128,
    groups: Vec<Group>,
    outcomes: Vec<GroupOutcome>,
    workers: Vec<SimWorker>,
    by_key: HashMap<PublicKey, usize>,
    owners: Vec<OwnerAccount>,
    /// Each group's one owner, when its keys share one.
    group_owner: Vec<Option<usize>>,
    /// Bonded keys that count toward a quorum, with their owners (the settler's view).
    eligible: HashMap<PublicKey, PublicKey>,
    events: BinaryHeap<Reverse<(u64, u64)>>,
    event_bodies: HashMap<u64, Event>,
    next_event: u64,
    now_ms: u64,
    jobs_posted: usize,
    /// Tasks still to post in the current phase.
    to_post: usize,
    /// Past the warm-up: strategies are on and everything is counted.
    warm: bool,
    /// What each group had earned when the warm-up ended.
    earned_before: Vec<u128>,
    jobs_running: usize,
    next_request: u64,
    tasks: HashMap<TaskId, TaskReplicas>,
    lease_task: HashMap<LeaseId, TaskId>,
    cancelled: HashSet<LeaseId>,
    /// Per task, the cartel keys (by group) that hold or held a lease of it, and whether the
    /// cartel committed to its lie.
    cartel_seen: HashMap<(usize, TaskId), (u8, bool)>,
    /// The last verified output of each job (what a copier can read).
    last_verified: HashMap<JobId, Hash32>,
    to_settle: BTreeMap<JobId, Vec<TaskId>>,
    to_close: Vec<JobId>,
    verified: u64,
    failed: u64,
    wrong: u64,
    returned: u64,
    eject_ms: Vec<Vec<u64>>,
    /// Wall time spent in the contract, for the run's log.
    ledger_time: std::time::Duration,
}

/// The correct output of a task: only honest work yields it.
fn truth(task: TaskId) -> Hash32 {
    sha256(format!("output of {task}").as_bytes())
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
        slots: 1,
    }
}

/// Runs one scenario against the contract artifact `wasm`.
pub fn run(scenario: &Scenario, wasm: &[u8]) -> Result<Outcome, SimError> {
    let mut sim = Sim::new(scenario, wasm)?;
    sim.run()?;
    sim.finish(scenario)
}

impl Sim {
    fn new(scenario: &Scenario, wasm: &[u8]) -> Result<Self, SimError> {
        let p = scenario.params.clone();
        let total_share: f64 = scenario.groups.iter().map(|g| g.share).sum();
        if !(0.0..1.0).contains(&total_share) {
            return Err(SimError::Setup(format!(
                "the groups' shares add up to {total_share}; they must leave honest workers"
            )));
        }
        let mut rng = StdRng::seed_from_u64(p.seed);
        let mut ledger = Ledger::new(wasm, "ustar")?;
        ledger.set_chain_id(CHAIN_ID);
        ledger.set_block_seconds(0);
        ledger.set_time(Timestamp::from_seconds(START_WALL_MS / 1000));
        let relay = ledger.addr_make("relay");
        let operator = ledger.addr_make("operator");
        ledger.instantiate(
            &relay,
            &InstantiateMsg {
                denom: "ustar".into(),
                relay: relay.to_string(),
                relay_fee_bps: p.relay_fee_bps,
                min_bond: Uint128::new(p.min_bond),
                unbonding_period: 21 * 24 * 3600,
                max_job_duration: starling_protocol::limits::MAX_DEADLINE_SECS + 3600,
                slash_bps: p.slash_bps,
                min_relay_bond: Uint128::new(p.min_bond),
                relay_endpoint: None,
            },
            0,
        )?;
        let deployment = EscrowDeployment { chain_id: CHAIN_ID.into(), contract: ledger.contract().to_string() };
        let mut seed = [0u8; 32];
        rng.fill(&mut seed);
        let config = CoreConfig {
            scheduler: scheduler::Config { seed, ..Default::default() },
            max_running_jobs_per_client: p.jobs_in_flight.max(1),
            extra_rate: p.extra_rate,
            audit_rate: p.audit_rate,
            canary_rate: p.canary_rate,
            ..Default::default()
        };
        let core = Core::new(config, Some(deployment.clone()), 1, 1);
        let mut groups = vec![Group::new("honest", Strategy::Honest, 1.0 - total_share)];
        groups.extend(scenario.groups.iter().cloned());
        let outcomes = groups
            .iter()
            .map(|g| GroupOutcome { name: g.name.clone(), strategy: Some(g.strategy), ..Default::default() })
            .collect();
        let client = Keypair::from_seed(rng.r#gen());
        let mut sim = Sim {
            eject_ms: vec![Vec::new(); groups.len()],
            group_owner: vec![None; groups.len()],
            p,
            rng,
            core,
            ledger,
            relay,
            operator,
            deployment,
            client,
            minted: 0,
            groups,
            outcomes,
            workers: Vec::new(),
            by_key: HashMap::new(),
            owners: Vec::new(),
            eligible: HashMap::new(),
            events: BinaryHeap::new(),
            event_bodies: HashMap::new(),
            next_event: 0,
            now_ms: 0,
            jobs_posted: 0,
            to_post: 0,
            warm: false,
            earned_before: Vec::new(),
            jobs_running: 0,
            next_request: 1,
            tasks: HashMap::new(),
            lease_task: HashMap::new(),
            cancelled: HashSet::new(),
            cartel_seen: HashMap::new(),
            last_verified: HashMap::new(),
            to_settle: BTreeMap::new(),
            to_close: Vec::new(),
            verified: 0,
            failed: 0,
            wrong: 0,
            returned: 0,
            ledger_time: std::time::Duration::ZERO,
        };
        // The client pays for every replica the jobs may use, fees included.
        let per_task = u128::from(sim.p.price) * u128::from(sim.p.max_replicas.max(sim.p.replicas)) * 2;
        let client_key = sim.client.public();
        sim.deposit(&client_key, per_task * (sim.p.tasks + sim.warmup_tasks()) as u128 + 1)?;
        // Cheating groups first (their exact counts), the honest rest after; shuffled turns do
        // the mixing.
        let mut counts: Vec<usize> =
            sim.groups.iter().map(|g| (g.share * sim.p.workers as f64).round() as usize).collect();
        counts[0] = sim.p.workers.saturating_sub(counts[1..].iter().sum());
        for (group, &count) in counts.iter().enumerate() {
            for _ in 0..count {
                sim.add_worker(group)?;
            }
        }
        Ok(sim)
    }

    fn deposit(&mut self, account: &PublicKey, amount: u128) -> Result<(), SimError> {
        self.ledger.mint(&self.operator, amount);
        self.minted += amount;
        self.ledger.execute(
            &self.operator,
            &ExecuteMsg::Deposit { account: HexBinary::from(&account.0[..]) },
            amount,
        )?;
        Ok(())
    }

    /// Bonds a fresh key for `group` and brings it online; `false` when the group's budget
    /// cannot pay the bond.
    fn add_worker(&mut self, group: usize) -> Result<bool, SimError> {
        let bond = self.p.min_bond;
        let g = &self.groups[group];
        if let Some(budget) = g.budget
            && self.outcomes[group].bonded + bond > budget
        {
            return Ok(false);
        }
        let owner = match (g.owners, self.group_owner[group]) {
            (Owners::One, Some(o)) => o,
            (owners, _) => {
                self.owners.push(OwnerAccount { kp: Keypair::from_seed(self.rng.r#gen()), nonce: 0, group });
                let o = self.owners.len() - 1;
                if owners == Owners::One {
                    self.group_owner[group] = Some(o);
                }
                o
            }
        };
        let kp = Keypair::from_seed(self.rng.r#gen());
        let owner_key = self.owners[owner].kp.public();
        self.deposit(&owner_key, bond)?;
        let d = self.deployment.as_deployment();
        let nonce = self.owners[owner].nonce;
        let action = AccountAction::Bond { worker: kp.public(), amount: bond };
        let registration = Registration {
            worker: kp.public(),
            owner: owner_key,
            nonce,
            bond: u64::try_from(bond).map_err(|_| SimError::Setup("bond too large".into()))?,
            authorization: self.owners[owner].kp.sign_account_action(d, nonce, &action),
            proof: kp.sign_register_v2(d, &owner_key),
        };
        self.ledger.execute(&self.relay, &bond_msg(&registration), 0)?;
        self.owners[owner].nonce += 1;
        self.outcomes[group].bonded += bond;
        self.outcomes[group].keys += 1;
        let index = self.workers.len();
        // Distinct /24 networks: the strategic attacker spreads its keys too.
        let addr = IpAddr::V4(Ipv4Addr::new(10 + (index >> 16) as u8, (index >> 8) as u8, index as u8, 1));
        let key = kp.public();
        self.eligible.insert(key, owner_key);
        self.by_key.insert(key, index);
        self.workers.push(SimWorker {
            kp,
            group,
            speed_ms: self.rng.gen_range(1_000..=5_000),
            paid: true,
            online: true,
            first_lease_ms: None,
        });
        let now = self.now();
        self.core.step(
            Input::WorkerOnline {
                key,
                conn: index as u64,
                caps: caps(),
                paid: true,
                owner: Some(owner_key),
                addr: Some(addr),
            },
            now,
        );
        Ok(true)
    }

    fn now(&self) -> Now {
        Now { mono_ms: self.now_ms, wall_ms: START_WALL_MS + self.now_ms }
    }

    fn at(&self, ms: u64) -> Now {
        Now { mono_ms: ms, wall_ms: START_WALL_MS + ms }
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.push(Reverse((at_ms, id)));
        self.event_bodies.insert(id, event);
    }

    fn spec(&mut self) -> JobSpec {
        let n = self.p.tasks_per_job.min(self.to_post as u32);
        self.to_post -= n as usize;
        JobSpec {
            label: format!("sim {}", self.jobs_posted),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            tasks: (0..n)
                .map(|i| TaskSpec { params: vec![i], inputs: vec![], workgroups: [1, 1, 1], output_size: 8, kernel: 0 })
                .collect(),
            comparison: Comparison::Exact,
            replicas: self.p.replicas,
            quorum: if self.p.adaptive.is_some() { 1 } else { self.p.replicas },
            max_replicas: self.p.max_replicas.max(self.p.replicas),
            price_per_replica: self.p.price,
            deadline_secs: 24 * 3600,
            homogeneous: false,
            nonce: self.jobs_posted as u64,
            adaptive: self.p.adaptive.map(|audit_percent| starling_protocol::job::Adaptive { audit_percent }),
            kernels: Vec::new(),
        }
    }

    /// Tasks of the warm-up: enough for every worker to build a record of `trusted_after`
    /// accepted results, so that cheaters join a network with history (as a real one has).
    fn warmup_tasks(&self) -> usize {
        let trusted_after = self.core.config().scheduler.trusted_after as usize;
        self.p.workers * trusted_after * 2 / usize::from(self.p.replicas.max(1))
    }

    /// The warm-up, with every worker honest, then the measured run.
    fn run(&mut self) -> Result<(), SimError> {
        self.to_post = self.warmup_tasks();
        self.phase()?;
        self.earned_before = self.earned()?;
        self.warm = true;
        self.verified = 0;
        self.failed = 0;
        self.wrong = 0;
        self.returned = 0;
        for o in &mut self.outcomes {
            (o.returned, o.computed, o.accepted, o.rejected, o.wrong_accepted) = (0, 0, 0, 0, 0);
        }
        self.to_post = self.p.tasks;
        self.phase()
    }

    /// What each group's accounts have earned so far.
    fn earned(&self) -> Result<Vec<u128>, SimError> {
        let mut earned = vec![0u128; self.groups.len()];
        for owner in &self.owners {
            let account: Account =
                self.ledger.query(&QueryMsg::Account { pubkey: HexBinary::from(&owner.kp.public().0[..]) })?.0;
            earned[owner.group] += account.earned.u128();
        }
        Ok(earned)
    }

    /// Posts `to_post` tasks, keeping `jobs_in_flight` jobs running, until all are decided.
    fn phase(&mut self) -> Result<(), SimError> {
        let mut next_heartbeat = self.now_ms + HEARTBEAT_MS;
        let mut core_time = std::time::Duration::ZERO;
        loop {
            while self.jobs_running < self.p.jobs_in_flight && self.to_post > 0 {
                let spec = self.spec();
                let job = self.client.sign_paid_job(
                    spec,
                    self.deployment.as_deployment(),
                    self.relay.as_str(),
                    START_WALL_MS / 1000 + 7 * 24 * 3600,
                );
                let req = crate::core::requirements(&job.spec, &HashMap::new());
                let request = self.next_request;
                self.next_request += 1;
                self.jobs_posted += 1;
                self.jobs_running += 1;
                self.core.step(Input::CreateJob { request, job: Box::new(job), req, origin: None }, self.now());
            }
            if self.jobs_running == 0 || self.now_ms > MAX_SIM_MS {
                tracing::info!(?core_time, ledger_time = ?self.ledger_time, "run done");
                return Ok(());
            }
            while let Some(&Reverse((at, id))) = self.events.peek() {
                if at > self.now_ms {
                    break;
                }
                self.events.pop();
                let event = self.event_bodies.remove(&id).expect("scheduled");
                self.apply(event, at)?;
            }
            if self.now_ms >= next_heartbeat {
                next_heartbeat += HEARTBEAT_MS;
                if self.now_ms.is_multiple_of(60_000) {
                    tracing::info!(
                        sim_secs = self.now_ms / 1000,
                        verified = self.verified,
                        failed = self.failed,
                        keys = self.workers.len(),
                        jobs = self.jobs_running,
                        "simulating"
                    );
                }
                let now = self.now();
                for w in self.workers.iter().filter(|w| w.online) {
                    self.core.step(Input::Heartbeat { key: w.kp.public(), state: DeviceState::default() }, now);
                }
            }
            let now = self.now();
            let started = std::time::Instant::now();
            self.core.tick(now);
            let ready = self.core.ready(now);
            core_time += started.elapsed();
            self.handle(ready)?;
            let started = std::time::Instant::now();
            self.settle()?;
            self.ledger_time += started.elapsed();
            self.now_ms += TICK_MS;
        }
    }

    fn apply(&mut self, event: Event, at_ms: u64) -> Result<(), SimError> {
        match event {
            Event::Standing { worker } => {
                if !self.workers[worker].online {
                    return Ok(());
                }
                let key = self.workers[worker].kp.public();
                self.core.step(Input::PaidStanding { key, paid: false }, self.at(at_ms));
                // A key without standing earns nothing more: its owner takes it offline.
                self.workers[worker].online = false;
                self.core.step(Input::WorkerOffline { key, conn: worker as u64 }, self.at(at_ms));
                // The strategy goes on with a fresh key while its budget lasts.
                let group = self.workers[worker].group;
                if self.groups[group].reenter {
                    self.add_worker(group)?;
                }
            }
            Event::Answer { worker, lease, task, digest } => {
                if self.cancelled.remove(&lease) {
                    return Ok(());
                }
                let group = self.workers[worker].group;
                let strategy = if self.warm { self.groups[group].strategy } else { Strategy::Honest };
                let (hash, computed) = match strategy {
                    Strategy::Honest => (truth(task), true),
                    Strategy::Liar { p } => {
                        if self.rng.gen_bool(p) {
                            (sha256(format!("lie {task} {worker}").as_bytes()), false)
                        } else {
                            (truth(task), true)
                        }
                    }
                    Strategy::Lazy => (sha256(b"lazy"), false),
                    Strategy::Copier => {
                        (self.last_verified.get(&task.job).copied().unwrap_or_else(|| sha256(b"copier")), false)
                    }
                    Strategy::Cartel => {
                        let seen = self.cartel_seen.entry((group, task)).or_default();
                        // The job's replica count is public: holding that many, it holds all it
                        // sees. Where the job allows adaptive replication one may be all there is.
                        let enough = if self.p.adaptive.is_some() { 1 } else { self.p.replicas };
                        if seen.1 || seen.0 >= enough {
                            seen.1 = true;
                            (sha256(format!("cartel {group} {task}").as_bytes()), false)
                        } else {
                            (truth(task), true)
                        }
                    }
                    Strategy::Griefer => return Ok(()),
                };
                let w = &self.workers[worker];
                let signature = w.kp.sign_result_v2(self.deployment.as_deployment(), task, &digest, &hash, 8);
                let key = w.kp.public();
                let out = &mut self.outcomes[group];
                out.returned += 1;
                out.computed += u64::from(computed);
                self.returned += 1;
                self.core.step(
                    Input::Result { key, lease, task, output_hash: hash, output_len: 8, signature },
                    self.at(at_ms),
                );
            }
        }
        Ok(())
    }

    fn handle(&mut self, ready: Ready) -> Result<(), SimError> {
        for w in ready.writes {
            match w {
                Write::Returned(row) => {
                    let t = self.tasks.entry(row.task).or_default();
                    t.leases.insert(row.lease, t.replicas.len());
                    t.replicas.push(plan::SignedReplica {
                        worker: row.worker,
                        output_hash: row.output_hash,
                        output_len: row.output_len,
                        signature: row.signature,
                        accepted: false,
                        rejected: false,
                    });
                    self.lease_task.insert(row.lease, row.task);
                }
                Write::ReplicaState { lease, state } => {
                    let Some(&task) = self.lease_task.get(&lease) else { continue };
                    let t = self.tasks.get_mut(&task).expect("returned first");
                    let r = &mut t.replicas[t.leases[&lease]];
                    r.accepted = state == ReplicaState::Accepted;
                    r.rejected = state == ReplicaState::Rejected;
                    let group = self.workers[self.by_key[&r.worker]].group;
                    match state {
                        ReplicaState::Accepted => self.outcomes[group].accepted += 1,
                        ReplicaState::Rejected => self.outcomes[group].rejected += 1,
                        _ => {}
                    }
                }
                Write::NotEvidence { lease } => {
                    // Rejected, but the settler reports it to nobody.
                    let Some(&task) = self.lease_task.get(&lease) else { continue };
                    let t = self.tasks.get_mut(&task).expect("returned first");
                    t.replicas[t.leases[&lease]].rejected = false;
                }
                Write::VerifyTask { task, output_hash, .. } => {
                    self.verified += 1;
                    self.tasks.entry(task).or_default().verified = Some(output_hash);
                    self.last_verified.insert(task.job, output_hash);
                }
                Write::FailTask { task, .. } => {
                    self.failed += 1;
                    self.forget(task);
                }
                _ => {}
            }
        }
        for (key, message) in ready.messages {
            match message {
                RelayMessage::Assign(a) => {
                    let worker = self.by_key[&key];
                    let w = &mut self.workers[worker];
                    if self.warm {
                        w.first_lease_ms.get_or_insert(self.now_ms);
                    }
                    let group = w.group;
                    let strategy = if self.warm { self.groups[group].strategy } else { Strategy::Honest };
                    let delay = match strategy {
                        Strategy::Honest => w.speed_ms,
                        Strategy::Liar { .. } => w.speed_ms,
                        Strategy::Lazy | Strategy::Copier => SHORTCUT_MS,
                        Strategy::Cartel => {
                            self.cartel_seen.entry((group, a.task)).or_default().0 += 1;
                            CARTEL_WAIT_MS.max(w.speed_ms)
                        }
                        // Never answers; the lease runs until the relay takes it back.
                        Strategy::Griefer => continue,
                    };
                    self.schedule(
                        self.now_ms + delay,
                        Event::Answer { worker, lease: a.lease, task: a.task, digest: a.spec_digest },
                    );
                }
                RelayMessage::Cancel { lease } => {
                    self.cancelled.insert(lease);
                }
                _ => {}
            }
        }
        for check in ready.checks {
            // The relay's own answer: the kernel's CPU reference, which only honest work matches.
            let outcome =
                if check.output_hash == truth(check.task) { CheckOutcome::Matches } else { CheckOutcome::Differs };
            self.core.step(Input::Checked { task: check.task, lease: check.lease, outcome }, self.now());
        }
        for key in ready.barred {
            let worker = self.by_key[&key];
            if self.workers[worker].paid {
                // Its bond is intact: what it signed before still settles.
                self.workers[worker].paid = false;
                let group = self.workers[worker].group;
                let first = self.workers[worker].first_lease_ms.unwrap_or(self.now_ms);
                self.eject_ms[group].push(self.now_ms.saturating_sub(first));
                self.outcomes[group].ejected += 1;
                self.outcomes[group].barred += 1;
                // No paid work left for it on this relay: its owner takes it offline (its bond
                // stays its own) and the strategy goes on with a fresh key.
                self.schedule(self.now_ms, Event::Standing { worker });
            }
        }
        for (request, reply) in ready.replies {
            if let Err(e) = reply {
                return Err(SimError::Setup(format!("job {request} refused: {e:?}")));
            }
        }
        for (request, open) in ready.escrow_opens {
            let outcome = self.open(&open);
            self.core.step(Input::EscrowOpened { request, outcome }, self.now());
        }
        for note in ready.settle {
            match note {
                SettleNote::Verified(task) => self.to_settle.entry(task.job).or_default().push(task),
                SettleNote::Finished(job) => self.to_close.push(job),
            }
        }
        Ok(())
    }

    fn open(&mut self, open: &OpenJob) -> OpenOutcome {
        match self.ledger.execute(&self.relay, &create_job_msg(open), 0) {
            Ok(_) => OpenOutcome::Opened,
            Err(e) => OpenOutcome::Failed(crate::escrow::EscrowError::Refused(e.to_string())),
        }
    }

    fn forget(&mut self, task: TaskId) {
        if let Some(t) = self.tasks.remove(&task) {
            for lease in t.leases.keys() {
                self.lease_task.remove(lease);
            }
        }
        for g in 0..self.groups.len() {
            self.cartel_seen.remove(&(g, task));
        }
    }

    /// Settles what was verified (one batch per job), reports dissenters as evidence, and
    /// closes finished jobs.
    fn settle(&mut self) -> Result<(), SimError> {
        self.ledger.set_time(Timestamp::from_seconds((START_WALL_MS + self.now_ms) / 1000));
        let terms = plan::SettleTerms {
            quorum: if self.p.adaptive.is_some() { 1 } else { self.p.replicas },
            max_signers: self.p.max_replicas.max(self.p.replicas),
            exact: true,
        };
        let registered: HashSet<PublicKey> =
            if self.to_settle.is_empty() { HashSet::new() } else { self.by_key.keys().copied().collect() };
        for (job, tasks) in std::mem::take(&mut self.to_settle) {
            let mut entries = Vec::new();
            for &task in &tasks {
                let t = &self.tasks[&task];
                let verified = t.verified.expect("verified before its note");
                if verified != truth(task) {
                    self.wrong += 1;
                }
                let Ok(entry) = plan::settle_entry(task.index, &verified, &t.replicas, &self.eligible, terms) else {
                    continue;
                };
                if verified != truth(task) {
                    for s in &entry.signatures {
                        let group = self.workers[self.by_key[&s.worker]].group;
                        self.outcomes[group].wrong_accepted += 1;
                    }
                }
                entries.push(entry);
            }
            if !entries.is_empty() {
                self.ledger.execute(&self.relay, &settle_msg(job, &entries), 0)?;
            }
            for entry in &entries {
                let task = TaskId { job, index: entry.index };
                let evidence = plan::evidence(job, true, entry, &self.tasks[&task].replicas, &registered);
                for e in evidence {
                    self.slash(&e)?;
                }
                self.forget(task);
            }
        }
        for job in std::mem::take(&mut self.to_close) {
            self.ledger.execute(&self.relay, &ExecuteMsg::Close { job_id: job.0 }, 0)?;
            self.jobs_running -= 1;
        }
        Ok(())
    }

    fn slash(&mut self, e: &Evidence) -> Result<(), SimError> {
        if let Err(err) = self.ledger.execute(&self.relay, &slash_msg(self.relay.as_str(), e), 0) {
            // Nothing left to slash is not an error of the run.
            tracing::debug!(error = %err, worker = %e.worker, "slash refused");
            return Ok(());
        }
        let standing: WorkerResponse =
            self.ledger.query(&QueryMsg::Worker { pubkey: HexBinary::from(&e.worker.0[..]) })?.0;
        let worker = self.by_key[&e.worker];
        if !standing.eligible {
            // Its signature no longer counts toward a quorum, whether or not it was barred first.
            self.eligible.remove(&e.worker);
        }
        if !standing.eligible && self.workers[worker].paid {
            self.workers[worker].paid = false;
            let group = self.workers[worker].group;
            let first = self.workers[worker].first_lease_ms.unwrap_or(self.now_ms);
            self.eject_ms[group].push(self.now_ms.saturating_sub(first));
            self.outcomes[group].ejected += 1;
            // The relay made the slash, so it knows at once (as the settler tells the core).
            self.schedule(self.now_ms, Event::Standing { worker });
        }
        Ok(())
    }

    fn finish(mut self, scenario: &Scenario) -> Result<Outcome, SimError> {
        for (group, earned) in self.earned()?.into_iter().enumerate() {
            self.outcomes[group].earned = earned - self.earned_before[group];
        }
        for w in &self.workers {
            let standing: WorkerResponse =
                self.ledger.query(&QueryMsg::Worker { pubkey: HexBinary::from(&w.kp.public().0[..]) })?.0;
            self.outcomes[w.group].slashed += standing.slashed.u128();
        }
        for (group, times) in self.eject_ms.iter_mut().enumerate() {
            times.sort_unstable();
            self.outcomes[group].median_eject_secs = times.get(times.len() / 2).map(|&ms| ms as f64 / 1000.0);
        }
        let totals: starling_escrow::state::Totals = self.ledger.query(&QueryMsg::Totals {})?.0;
        let conserved = self.ledger.total_supply() + totals.burned.u128() == self.minted;
        Ok(Outcome {
            scenario: scenario.name.clone(),
            params: self.p.clone(),
            tasks_verified: self.verified,
            tasks_failed: self.failed,
            wrong_accepted: self.wrong,
            replicas_returned: self.returned,
            groups: self.outcomes,
            sim_secs: self.now_ms as f64 / 1000.0,
            conserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn wasm() -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contracts/starling_escrow.wasm");
        std::fs::read(&path).expect("the contract artifact; build it with scripts/build-contract.sh")
    }

    fn small(groups: Vec<Group>) -> Scenario {
        let params = Params { workers: 40, tasks: 300, tasks_per_job: 20, jobs_in_flight: 5, ..Params::default() };
        Scenario { name: "small".into(), groups, params }
    }

    /// One seed, one outcome; money is conserved; honest work earns what it should; a liar
    /// loses its bond faster than lies could earn, and is ejected.
    #[test]
    fn a_small_market_is_reproducible_conserves_money_and_makes_liars_lose() {
        let wasm = wasm();
        let scenario = small(vec![Group::new("liars", Strategy::Liar { p: 1.0 }, 0.1)]);
        let a = run(&scenario, &wasm).unwrap();
        let b = run(&scenario, &wasm).unwrap();
        assert_eq!(a, b, "the same seed gives the same run");
        assert!(a.conserved, "minted = supply + burned");
        assert_eq!(a.tasks_verified + a.tasks_failed, 300);
        assert_eq!(a.wrong_accepted, 0, "a lone liar is always outvoted");
        let (honest, liars) = (&a.groups[0], &a.groups[1]);
        let per = |g: &GroupOutcome| g.profit_per_replica(a.params.compute_cost, a.params.price).unwrap();
        assert!((per(honest) - 0.5).abs() < 0.05, "honest: price less cost, {}", per(honest));
        assert!(per(liars) < -100.0, "liars lose their bonds: {}", per(liars));
        assert!(liars.ejected > 0 && liars.slashed > 0);
        assert!(liars.keys > 4, "ejected liars came back with fresh keys");
        let other = Scenario { params: Params { seed: 2, ..scenario.params.clone() }, ..scenario };
        assert_ne!(run(&other, &wasm).unwrap().replicas_returned, a.replicas_returned, "the seed matters");
    }

    /// Workers that sign a constant without computing are caught by known-answer checks and
    /// barred, however fast they answer, and honest work keeps paying.
    #[test]
    fn lazy_workers_are_barred_by_known_answer_checks() {
        let o = run(&small(vec![Group::new("lazy", Strategy::Lazy, 0.3)]), &wasm()).unwrap();
        let (honest, lazy) = (&o.groups[0], &o.groups[1]);
        assert!(o.conserved);
        assert!(lazy.barred > 0, "{lazy:?}");
        assert!(o.wrong_per_10k() < 100.0, "{} wrong per 10,000", o.wrong_per_10k());
        let per = |g: &GroupOutcome| g.profit_per_replica(o.params.compute_cost, o.params.price).unwrap();
        assert!(per(honest) > 0.4 && per(lazy) < 0.0, "honest {}, lazy {}", per(honest), per(lazy));
    }

    /// Adaptive replication on an honest network after warm-up: at most 1.3 replicas per
    /// verified task, every result right.
    #[test]
    fn adaptive_replication_spends_few_replicas_on_an_honest_network() {
        let mut s = small(vec![]);
        s.params.adaptive = Some(10);
        let o = run(&s, &wasm()).unwrap();
        assert_eq!((o.wrong_accepted, o.tasks_failed), (0, 0));
        assert!(o.replicas_per_verified() <= 1.3, "{} replicas per task", o.replicas_per_verified());
        let plain = run(&small(vec![]), &wasm()).unwrap();
        assert!(plain.replicas_per_verified() >= 2.0, "{}", plain.replicas_per_verified());
    }

    /// A cartel under one owner is one vote: it never holds every replica of a task.
    #[test]
    fn keys_of_one_owner_never_outvote_anyone() {
        let cartel = Group { owners: Owners::One, ..Group::new("cartel", Strategy::Cartel, 0.3) };
        let o = run(&small(vec![cartel]), &wasm()).unwrap();
        assert_eq!((o.wrong_accepted, o.groups[1].rejected, o.groups[1].slashed), (0, 0, 0));
        assert!(o.groups[1].accepted > 0, "it worked honestly instead");
    }
}
