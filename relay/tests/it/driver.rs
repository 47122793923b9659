//! The driver around the pure core, on a real SQLite file, with a fake escrow and a manual clock
//! (the relay's time moves only when the test says): a slow escrow stalls nobody, leases lapse on
//! silence, verified tasks reach the settler after their commit.

use async_trait::async_trait;
use starling_protocol::api::{EscrowAccount, EscrowInfo, JobEscrow, JobState};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::sign::{AccountAction, Deployment, Keypair};
use starling_protocol::worker::{
    AdapterInfo, Backend, Capabilities, DeviceLimits, DeviceState, Platform, RelayMessage,
};
use starling_protocol::{JobId, PublicKey, Signature, sha256};
use starling_relay::blobs::BlobStore;
use starling_relay::core::{CoreConfig, Input, requirements};
use starling_relay::driver::{Command, CoreHandle, Driver, ManualClock};
use starling_relay::escrow::settler::SettleNote;
use starling_relay::escrow::{
    Escrow, EscrowBridge, EscrowError, EscrowResult, Evidence, OpenJob, Registration, SettleTask, WorkerStanding,
};
use starling_relay::store::Store;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// An escrow that opens a job only once `release` says so, and accepts everything else at once.
#[derive(Debug)]
struct SlowEscrow {
    release: tokio::sync::watch::Receiver<bool>,
    opened: Mutex<HashSet<JobId>>,
    opens_started: AtomicU32,
}

impl SlowEscrow {
    fn new(released: bool) -> (Arc<Self>, tokio::sync::watch::Sender<bool>) {
        let (tx, release) = tokio::sync::watch::channel(released);
        (Arc::new(Self { release, opened: Mutex::default(), opens_started: AtomicU32::new(0) }), tx)
    }
}

/// The deployment [`SlowEscrow`] names.
const FAKE: Deployment<'static> = Deployment { chain_id: "test", contract: "fake" };

#[async_trait]
impl EscrowBridge for SlowEscrow {
    fn info(&self) -> EscrowInfo {
        EscrowInfo {
            backend: "fake".into(),
            chain_id: "test".into(),
            contract: "fake".into(),
            denom: "ustar".into(),
            relay_address: "relay".into(),
            relay_fee_bps: 0,
            min_bond: "0".into(),
        }
    }
    async fn max_job_id(&self) -> EscrowResult<u64> {
        Ok(0)
    }
    async fn open_job(&self, job: &OpenJob) -> EscrowResult<()> {
        self.opens_started.fetch_add(1, Ordering::SeqCst);
        let _ = self.release.clone().wait_for(|r| *r).await;
        self.opened.lock().unwrap().insert(job.job);
        Ok(())
    }
    async fn open_jobs(&self) -> EscrowResult<Vec<JobId>> {
        Ok(vec![])
    }
    async fn settled_tasks(&self, _: JobId) -> EscrowResult<HashSet<u32>> {
        Ok(HashSet::new())
    }
    async fn job(&self, _: JobId) -> EscrowResult<Option<JobEscrow>> {
        Ok(None)
    }
    async fn worker(&self, worker: &PublicKey) -> EscrowResult<Option<WorkerStanding>> {
        Ok(Some(WorkerStanding { owner: *worker, eligible: true }))
    }
    async fn nonce(&self, _: &PublicKey) -> EscrowResult<u64> {
        Ok(0)
    }
    async fn register_worker(&self, _: &Registration) -> EscrowResult<()> {
        Ok(())
    }
    async fn authorized(&self, _: &PublicKey, _: u64, _: &AccountAction, _: &Signature) -> EscrowResult<()> {
        Err(EscrowError::Refused("not in this test".into()))
    }
    async fn settle(&self, _: JobId, _: &[SettleTask]) -> EscrowResult<()> {
        Ok(())
    }
    async fn slash(&self, _: &Evidence) -> EscrowResult<()> {
        Err(EscrowError::Refused("not in this test".into()))
    }
    async fn close(&self, _: JobId) -> EscrowResult<u128> {
        Ok(0)
    }
    async fn worker_account(&self, _: &PublicKey) -> EscrowResult<Option<EscrowAccount>> {
        Ok(None)
    }
    async fn relays(&self) -> EscrowResult<Vec<starling_protocol::api::RegisteredRelay>> {
        Ok(Vec::new())
    }
    async fn account(&self, account: &PublicKey) -> EscrowResult<EscrowAccount> {
        Ok(EscrowAccount {
            address: account.to_hex(),
            balance: "0".into(),
            nonce: 0,
            bonded: None,
            slashed: None,
            received: "0".into(),
            denom: "ustar".into(),
        })
    }
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

fn spec(price: u64, nonce: u64) -> JobSpec {
    JobSpec {
        label: String::new(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks: vec![TaskSpec { params: vec![1], inputs: vec![], workgroups: [1, 1, 1], output_size: 8, kernel: 0 }],
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price_per_replica: price,
        deadline_secs: 600,
        homogeneous: false,
        nonce,
        adaptive: None,
        kernels: Vec::new(),
    }
}

struct Harness {
    handle: CoreHandle,
    clock: Arc<ManualClock>,
    settled: mpsc::UnboundedReceiver<SettleNote>,
    _dir: tempfile::TempDir,
    /// The database's URL, to read it back.
    database: String,
    blobs: BlobStore,
}

async fn start(escrow: Option<Escrow>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let database = crate::support::database_url(dir.path()).await;
    let store = Store::connect(&database).await.unwrap();
    let blobs = BlobStore::folder(&dir.path().join("blobs"), 1 << 20).unwrap();
    let (settle_tx, settled) = mpsc::unbounded_channel();
    let clock = Arc::new(ManualClock::default());
    let (driver, handle, rx) = Driver::recover_with_clock(
        store,
        blobs.clone(),
        // These tests count leases: no unannounced extra replica, audit or known-answer check may
        // be drawn (the draws are seeded from a random secret, so they would make them flaky).
        CoreConfig { extra_rate: 0.0, audit_rate: 0.0, canary_rate: 0.0, ..CoreConfig::default() },
        escrow.map(|e| (e, settle_tx)),
        clock.clone(),
    )
    .await
    .unwrap();
    tokio::spawn(driver.run(rx, std::future::pending()));
    Harness { handle, clock, settled, _dir: dir, database, blobs }
}

/// Moves the relay's clock on by a second, and gives the driver a moment of real time.
async fn second_passes(h: &Harness) {
    h.clock.advance(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn connect(handle: &CoreHandle, n: u8) -> (PublicKey, mpsc::Receiver<RelayMessage>) {
    let key = Keypair::from_seed([n; 32]).public();
    let (tx, rx) = mpsc::channel(64);
    handle
        .send(Command::WorkerOnline { key, conn: u64::from(n), caps: caps(), paid: true, owner: None, addr: None, tx })
        .await
        .unwrap();
    (key, rx)
}

async fn heartbeat(handle: &CoreHandle, key: PublicKey) {
    handle.send(Command::Core(Input::Heartbeat { key, state: DeviceState::default() })).await.unwrap();
}

/// A paid job whose escrow open takes 60 s: an unrelated unpaid job is taken meanwhile, and
/// heartbeating workers are never dropped; the paid job is taken once the escrow answers.
#[tokio::test]
async fn a_sixty_second_escrow_open_stalls_no_one() {
    let (escrow, release) = SlowEscrow::new(false);
    let h = start(Some(escrow.clone() as Escrow)).await;
    let (w1, mut rx1) = connect(&h.handle, 1).await;
    let (w2, mut rx2) = connect(&h.handle, 2).await;
    let payer = Keypair::from_seed([100; 32]);
    let paid = tokio::spawn({
        let handle = h.handle.clone();
        let job = payer.sign_paid_job(spec(10, 0), FAKE, "relay", u64::MAX);
        let req = requirements(&job.spec, &HashMap::new());
        async move { handle.create_job(job, req, None).await }
    });
    // Heartbeats every second; at 30 s another client posts unpaid work.
    let mut assigned = 0;
    for s in 1..=60u64 {
        second_passes(&h).await;
        heartbeat(&h.handle, w1).await;
        heartbeat(&h.handle, w2).await;
        if s == 30 {
            assert_eq!(escrow.opens_started.load(Ordering::SeqCst), 1, "the paid job is being opened");
            let other = Keypair::from_seed([101; 32]).sign_job(spec(0, 0));
            let req = requirements(&other.spec, &HashMap::new());
            let summary = tokio::time::timeout(Duration::from_secs(5), h.handle.create_job(other, req, None))
                .await
                .expect("answered without waiting for the escrow")
                .expect("the unpaid job is taken");
            assert_eq!(summary.state, JobState::Running);
            assert!(escrow.opened.lock().unwrap().is_empty(), "the slow open is still in flight");
            assert!(!paid.is_finished());
        }
        for rx in [&mut rx1, &mut rx2] {
            while let Ok(msg) = rx.try_recv() {
                if matches!(msg, RelayMessage::Assign(_)) {
                    assigned += 1;
                }
            }
        }
    }
    assert_eq!(assigned, 2, "the unpaid job's two replicas went out while the escrow was busy");
    assert!(!rx1.is_closed() && !rx2.is_closed(), "no worker was dropped");
    release.send(true).unwrap();
    let summary = paid.await.unwrap().expect("the paid job is taken once the escrow answers");
    assert_eq!(summary.id, JobId(1));
    assert!(escrow.opened.lock().unwrap().contains(&JobId(1)));
}

/// A worker that stops talking loses its connection and its lease, and the replica goes to
/// someone else; results that reach quorum are committed before the settler hears of them.
#[tokio::test]
async fn silence_lapses_leases_and_verified_work_reaches_the_settler() {
    let (escrow, _release) = SlowEscrow::new(true);
    let mut h = start(Some(escrow as Escrow)).await;
    let mut workers = Vec::new();
    for n in 1..=3 {
        workers.push(connect(&h.handle, n).await);
    }
    let job = Keypair::from_seed([100; 32]).sign_paid_job(spec(10, 0), FAKE, "relay", u64::MAX);
    let req = requirements(&job.spec, &HashMap::new());
    h.handle.create_job(job, req, None).await.unwrap();
    second_passes(&h).await;
    let mut leases = Vec::new();
    for (i, (_, rx)) in workers.iter_mut().enumerate() {
        while let Ok(msg) = rx.try_recv() {
            if let RelayMessage::Assign(a) = msg {
                leases.push((i, a));
            }
        }
    }
    assert_eq!(leases.len(), 2);
    let silent = leases[0].0;
    let (talker, talking_lease) = (leases[1].0, leases[1].1.clone());
    let spare = (0..3).find(|i| *i != silent && *i != talker).unwrap();
    // Two workers heartbeat for 20 s, the first holder says nothing.
    let mut reassigned = None;
    for _ in 0..20 {
        second_passes(&h).await;
        for i in [talker, spare] {
            heartbeat(&h.handle, workers[i].0).await;
        }
        while let Ok(msg) = workers[spare].1.try_recv() {
            if let RelayMessage::Assign(a) = msg {
                reassigned = Some(a);
            }
        }
    }
    assert!(workers[silent].1.is_closed() || workers[silent].1.recv().await.is_none(), "the silent worker was dropped");
    let again = reassigned.expect("the lapsed replica went to the spare worker");
    assert_eq!(again.task, talking_lease.task);
    // Both live holders report the same output: verified, then settled.
    let output = [1u8; 8];
    let hash = sha256(&output);
    let upload = starling_relay::blobs::Upload { hash, len: 8, owner: starling_relay::blobs::Owner::Found };
    h.blobs.put_bytes(upload, bytes::Bytes::copy_from_slice(&output), 0).await.unwrap();
    for (i, lease) in [(talker, talking_lease), (spare, again)] {
        let seed = [i as u8 + 1; 32];
        let key = Keypair::from_seed(seed);
        let signature = key.sign_result(lease.task, &hash, 8);
        h.handle
            .send(Command::Core(Input::Result {
                key: key.public(),
                lease: lease.lease,
                task: lease.task,
                output_hash: hash,
                output_len: 8,
                signature,
            }))
            .await
            .unwrap();
    }
    let note = tokio::time::timeout(Duration::from_secs(5), h.settled.recv()).await.unwrap().unwrap();
    assert!(matches!(note, SettleNote::Verified(t) if t == lease_task(&leases)));
}

fn lease_task(leases: &[(usize, starling_protocol::worker::Assignment)]) -> starling_protocol::TaskId {
    leases[0].1.task
}

/// Open leases live in memory only: nothing is written when a replica is handed out, the lease
/// book holds them (while the job's view, the task being undecided, shows no replica at all), and
/// a relay restarted on the same store never hands out a lease id a worker of the previous run may
/// still hold.
#[tokio::test]
async fn open_leases_are_not_written_yet_their_ids_are_never_reused() {
    let h = start(None).await;
    let mut workers = Vec::new();
    for n in 1..=2 {
        workers.push(connect(&h.handle, n).await);
    }
    let job = Keypair::from_seed([100; 32]).sign_job(spec(0, 0));
    let req = requirements(&job.spec, &HashMap::new());
    let id = h.handle.create_job(job, req, None).await.unwrap().id;
    second_passes(&h).await;
    let mut leases = Vec::new();
    for (_, rx) in &mut workers {
        while let Ok(msg) = rx.try_recv() {
            if let RelayMessage::Assign(a) = msg {
                leases.push(a.lease.0);
            }
        }
    }
    assert_eq!(leases.len(), 2);
    let store = Store::connect(&h.database).await.unwrap();
    let stored = store.job_detail(id, &[]).await.unwrap().unwrap();
    assert!(stored.tasks[0].replicas.is_empty(), "no row for an open lease");
    let open = h.handle.shared.leases.of_job(id);
    let mut in_book: Vec<u64> = open.iter().map(|(lease, _)| lease.0).collect();
    in_book.sort_unstable();
    leases.sort_unstable();
    assert_eq!(in_book, leases, "the lease book holds both open leases");
    let view = store.job_detail(id, &open).await.unwrap().unwrap();
    assert!(view.tasks[0].replicas.is_empty(), "an undecided task's holders are not shown");
    let next = store.next_lease_id().await.unwrap();
    assert!(leases.iter().all(|l| next > *l), "next lease id {next} is above the open leases {leases:?}");
}
