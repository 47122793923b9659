//! The settlement loop. The core tells it (after each commit) which tasks verified and which
//! jobs finished; it reads the signed results from the store, asks the escrow which signers are
//! bonded, settles in batches, submits evidence against registered workers that signed a
//! different result, and closes finished jobs so clients get the rest of their deposit back.
//!
//! It never blocks the core, and it keeps no state that the ledger and the store cannot give
//! back: after a restart it lists the escrow's open jobs, settles what the store verified and
//! the ledger has not (so a crash between the two settles nothing twice and loses nothing), and
//! resubmits the evidence of settled tasks with rejected results (the contract refuses a second
//! slash for the same task and worker, so nothing is slashed twice and no liar escapes a crash
//! between settlement and evidence). A job is closed only once its evidence is in.

use super::plan::{self, SettleTerms as Terms, SignedReplica, Unpayable};
use super::{Escrow, EscrowError, SettleTask};
use crate::store::Store;
use starling_protocol::api::JobState;
use starling_protocol::{JobId, PublicKey, TaskId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the core reports after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleNote {
    Verified(TaskId),
    Finished(JobId),
}

pub type SettleSender = mpsc::UnboundedSender<SettleNote>;

/// A worker's escrow standing changed (a slash took it below the minimum bond): whether it may
/// still take paid jobs. The relay forwards these to the scheduler.
pub type StandingSender = mpsc::UnboundedSender<(PublicKey, bool)>;

/// Tasks per `SettleBatch`: one transaction's gas stays bounded (about 80M CosmWasm gas each).
pub const MAX_BATCH: usize = 64;
/// How long notes gather before a flush: batches fill up under load, and a lone task still
/// settles within this long.
const GATHER: Duration = Duration::from_millis(200);
/// Retry delay after the escrow was unavailable.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Settler {
    escrow: Escrow,
    store: Store,
    rx: mpsc::UnboundedReceiver<SettleNote>,
    pending: BTreeMap<JobId, BTreeSet<u32>>,
    /// Settled tasks with rejected results whose evidence is not submitted yet.
    evidence_owed: BTreeMap<JobId, BTreeSet<u32>>,
    finished: BTreeSet<JobId>,
    terms: HashMap<JobId, Option<Terms>>,
    standing: StandingSender,
}

/// Starts the settler; the returned sender goes to the core.
pub fn spawn(escrow: Escrow, store: Store, standing: StandingSender) -> (SettleSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let settler = Settler {
        escrow,
        store,
        rx,
        pending: BTreeMap::new(),
        evidence_owed: BTreeMap::new(),
        finished: BTreeSet::new(),
        terms: HashMap::new(),
        standing,
    };
    (tx, tokio::spawn(settler.run()))
}

impl Settler {
    async fn run(mut self) {
        while let Err(e) = self.recover().await {
            tracing::warn!(error = %e, "settlement recovery failed; retrying");
            tokio::time::sleep(RETRY).await;
        }
        loop {
            let idle = self.pending.is_empty() && self.evidence_owed.is_empty() && self.finished.is_empty();
            let first = if idle {
                match self.rx.recv().await {
                    Some(note) => Some(note),
                    None => return,
                }
            } else {
                // Work is waiting for a retry: wake up for it even if nothing new arrives.
                tokio::time::timeout(RETRY, self.rx.recv()).await.unwrap_or(None)
            };
            if let Some(note) = first {
                self.note(note);
                let until = tokio::time::Instant::now() + GATHER;
                while let Ok(Some(note)) = tokio::time::timeout_at(until, self.rx.recv()).await {
                    self.note(note);
                }
            }
            while let Ok(note) = self.rx.try_recv() {
                self.note(note);
            }
            self.flush().await;
        }
    }

    fn note(&mut self, note: SettleNote) {
        match note {
            SettleNote::Verified(task) => {
                self.pending.entry(task.job).or_default().insert(task.index);
            }
            SettleNote::Finished(job) => {
                self.finished.insert(job);
            }
        }
    }

    /// Rebuilds the work list from the escrow's open jobs and the store.
    async fn recover(&mut self) -> crate::Result<()> {
        for job in self.escrow.open_jobs().await? {
            match self.store.job_state_spec(job).await? {
                // Opened in escrow, but the relay's commit never happened: give it all back.
                None => {
                    self.finished.insert(job);
                }
                Some((state, _)) => {
                    let settled = self.escrow.settled_tasks(job).await?;
                    let todo: BTreeSet<u32> =
                        self.store.verified_tasks(job).await?.into_iter().filter(|i| !settled.contains(i)).collect();
                    if !todo.is_empty() {
                        self.pending.insert(job, todo);
                    }
                    let owed: BTreeSet<u32> = self
                        .store
                        .tasks_with_rejected_results(job)
                        .await?
                        .into_iter()
                        .filter(|i| settled.contains(i))
                        .collect();
                    if !owed.is_empty() {
                        self.evidence_owed.insert(job, owed);
                    }
                    if state != JobState::Running {
                        self.finished.insert(job);
                    }
                }
            }
        }
        let tasks = self.pending.values().map(BTreeSet::len).sum::<usize>();
        let evidence = self.evidence_owed.values().map(BTreeSet::len).sum::<usize>();
        let jobs = self.finished.len();
        if tasks + evidence + jobs > 0 {
            tracing::info!(tasks, evidence, jobs, "settlement resumes unfinished work");
        }
        Ok(())
    }

    async fn terms(&mut self, job: JobId) -> crate::Result<Option<Terms>> {
        if let Some(t) = self.terms.get(&job) {
            return Ok(*t);
        }
        // The terms the job was opened with in escrow, derived where the opening was.
        let terms = match self.store.job_state_spec(job).await? {
            Some((_, spec)) if self.escrow.job(job).await?.is_some() => plan::settle_terms(&spec),
            _ => None,
        };
        self.terms.insert(job, terms);
        Ok(terms)
    }

    async fn flush(&mut self) {
        let jobs: Vec<JobId> = self
            .pending
            .keys()
            .chain(self.evidence_owed.keys())
            .chain(self.finished.iter())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for job in jobs {
            match self.flush_job(job).await {
                Ok(()) => {}
                Err(crate::Error::Escrow(EscrowError::Unavailable(e))) => {
                    tracing::warn!(%job, error = %e, "escrow unavailable; settlement retries");
                }
                Err(e) => tracing::error!(%job, error = %e, "settlement failed; it retries"),
            }
        }
    }

    async fn flush_job(&mut self, job: JobId) -> crate::Result<()> {
        let terms = if self.store.job_state_spec(job).await?.is_some() { self.terms(job).await? } else { None };
        if let Some(terms) = terms {
            self.settle_pending(job, terms).await?;
            self.submit_evidence(job, terms).await?;
        } else {
            // Unpaid job (nothing to settle), or an orphan opened in escrow only.
            self.pending.remove(&job);
            self.evidence_owed.remove(&job);
        }
        if self.finished.contains(&job) && !self.pending.contains_key(&job) && !self.evidence_owed.contains_key(&job) {
            if self.escrow.job(job).await?.is_some_and(|j| j.refunded.is_none()) {
                let refund = self.escrow.close(job).await?;
                tracing::info!(%job, refund, "job closed in escrow; unpaid deposit refunded");
            }
            self.finished.remove(&job);
            self.terms.remove(&job);
        }
        Ok(())
    }

    async fn settle_pending(&mut self, job: JobId, terms: Terms) -> crate::Result<()> {
        let Some(indices) = self.pending.get(&job).cloned() else {
            return Ok(());
        };
        let mut facts: Vec<(u32, starling_protocol::Hash32, Vec<SignedReplica>)> = Vec::new();
        for index in indices {
            match self.store.signed_results(TaskId { job, index }).await? {
                Some((hash, replicas)) => facts.push((index, hash, replicas)),
                None => {
                    self.done(job, index);
                }
            }
        }
        let keys: BTreeSet<PublicKey> = facts.iter().flat_map(|(_, _, r)| r.iter().map(|r| r.worker)).collect();
        // Bonded keys and their owners: one owner counts once toward a quorum.
        let mut eligible = HashMap::new();
        for key in keys {
            if let Some(standing) = self.escrow.worker(&key).await?.filter(|standing| standing.eligible) {
                eligible.insert(key, standing.owner);
            }
        }
        let mut entries = Vec::new();
        // Settled tasks with a rejected result owe evidence (on slashable jobs).
        let mut with_rejected = HashSet::new();
        for (index, hash, replicas) in facts {
            match plan::settle_entry(index, &hash, &replicas, &eligible, terms) {
                Ok(entry) => {
                    if replicas.iter().any(|r| r.rejected) {
                        with_rejected.insert(index);
                    }
                    entries.push(entry);
                }
                Err(Unpayable::BelowQuorum { eligible, quorum }) => {
                    tracing::warn!(%job, index, eligible, quorum, "verified task has too few bonded signers to settle; its deposit goes back to the client");
                    self.done(job, index);
                }
            }
        }
        for batch in entries.chunks(MAX_BATCH) {
            let settled = self.settle_batch(job, batch, terms.quorum).await?;
            for index in settled {
                self.done(job, index);
                if terms.exact && with_rejected.contains(&index) {
                    self.evidence_owed.entry(job).or_default().insert(index);
                }
            }
        }
        Ok(())
    }

    /// Submits the evidence owed for a job's settled tasks. A task leaves the list once each of
    /// its registered dissenters is slashed or the contract refused (already slashed, say); if
    /// the escrow is unavailable it stays for the retry.
    async fn submit_evidence(&mut self, job: JobId, terms: Terms) -> crate::Result<()> {
        let Some(indices) = self.evidence_owed.get(&job).cloned() else {
            return Ok(());
        };
        for index in indices {
            let Some((hash, replicas)) = self.store.signed_results(TaskId { job, index }).await? else {
                self.evidence_paid(job, index);
                continue;
            };
            let Some(output_len) = replicas.iter().find(|r| r.output_hash == hash).map(|r| r.output_len) else {
                self.evidence_paid(job, index);
                continue;
            };
            let mut registered = HashSet::new();
            for r in replicas.iter().filter(|r| r.rejected) {
                if !registered.contains(&r.worker) && self.escrow.worker(&r.worker).await?.is_some() {
                    registered.insert(r.worker);
                }
            }
            let settled = SettleTask { index, output_hash: hash, output_len, signatures: Vec::new() };
            for evidence in plan::evidence(job, terms.exact, &settled, &replicas, &registered) {
                match self.escrow.slash(&evidence).await {
                    Ok(()) => {
                        tracing::warn!(%job, index, worker = %evidence.worker, "worker slashed: it signed a different result for a settled task");
                        let eligible = self.escrow.worker(&evidence.worker).await?.is_some_and(|s| s.eligible);
                        let _ = self.standing.send((evidence.worker, eligible));
                    }
                    Err(EscrowError::Refused(why)) => {
                        tracing::info!(%job, index, worker = %evidence.worker, %why, "slash refused")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.evidence_paid(job, index);
        }
        Ok(())
    }

    fn evidence_paid(&mut self, job: JobId, index: u32) {
        remove_task(&mut self.evidence_owed, job, index);
    }

    /// Settles a batch; if the escrow refuses it (a signer unbonded meanwhile, a task already
    /// settled before a crash), settles its tasks one by one so one bad entry costs only itself,
    /// and a refused entry is tried once more without the signers no longer eligible, so one
    /// unbonded co-signer costs only its own pay. Returns the indices settled.
    async fn settle_batch(&mut self, job: JobId, batch: &[SettleTask], quorum: u8) -> crate::Result<Vec<u32>> {
        let refused = match self.escrow.settle(job, batch).await {
            Ok(()) => return Ok(batch.iter().map(|e| e.index).collect()),
            Err(EscrowError::Refused(why)) => why,
            Err(e) => return Err(e.into()),
        };
        if batch.len() > 1 {
            tracing::info!(%job, why = %refused, tasks = batch.len(), "batch refused; settling its tasks one by one");
        }
        let mut settled = Vec::new();
        for entry in batch {
            let alone = if batch.len() == 1 {
                Err(EscrowError::Refused(refused.clone()))
            } else {
                self.escrow.settle(job, std::slice::from_ref(entry)).await
            };
            let why = match alone {
                Ok(()) => {
                    settled.push(entry.index);
                    continue;
                }
                Err(EscrowError::Refused(why)) => why,
                Err(e) => return Err(e.into()),
            };
            let mut eligible = HashSet::new();
            for s in &entry.signatures {
                if self.escrow.worker(&s.worker).await?.is_some_and(|standing| standing.eligible) {
                    eligible.insert(s.worker);
                }
            }
            let retry = plan::without_signers(entry, |k| eligible.contains(k), quorum)
                .filter(|fewer| fewer.signatures.len() < entry.signatures.len());
            let outcome = match &retry {
                Some(fewer) => self.escrow.settle(job, std::slice::from_ref(fewer)).await,
                None => Err(EscrowError::Refused(why)),
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(%job, index = entry.index, "task settled without its signers that lost their bond");
                    settled.push(entry.index);
                }
                Err(EscrowError::Refused(why)) => {
                    tracing::warn!(%job, index = entry.index, %why, "escrow refused to settle task");
                    self.done(job, entry.index);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(settled)
    }

    fn done(&mut self, job: JobId, index: u32) {
        remove_task(&mut self.pending, job, index);
    }
}

/// Takes a task off a per-job work list, dropping the job's entry once it is empty.
fn remove_task(list: &mut BTreeMap<JobId, BTreeSet<u32>>, job: JobId, index: u32) {
    if let Some(set) = list.get_mut(&job) {
        set.remove(&index);
        if set.is_empty() {
            list.remove(&job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::embedded::{Embedded, EmbeddedConfig};
    use crate::escrow::queries::{self, SmartQuery};
    use crate::escrow::{EscrowBridge, Registration};
    use starling_escrow::msg::{QueryMsg, TasksResponse};
    use starling_protocol::Hash32;
    use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
    use starling_protocol::sign::{AccountAction, Keypair};
    use std::path::PathBuf;
    use std::sync::Arc;

    const PRICE: u64 = 1_000;
    const OUTPUT_LEN: u64 = 8;

    /// The contract's deployable wasm, as `scripts/build-contract.sh` builds it.
    fn contract() -> PathBuf {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contracts/starling_escrow.wasm");
        assert!(path.exists(), "{} is missing: run scripts/build-contract.sh first", path.display());
        path
    }

    /// A settler over `escrow` with nothing to do yet but `pending`.
    fn settler(escrow: Escrow, store: Store, pending: BTreeMap<JobId, BTreeSet<u32>>) -> Settler {
        let (_, rx) = mpsc::unbounded_channel();
        let (standing, _) = mpsc::unbounded_channel();
        Settler {
            escrow,
            store,
            rx,
            pending,
            evidence_owed: BTreeMap::new(),
            finished: BTreeSet::new(),
            terms: HashMap::new(),
            standing,
        }
    }

    fn amount(text: &str) -> u128 {
        text.parse().expect("an amount")
    }

    /// All the money on the ledger, counted where it sits: the contract's accounts, its
    /// workers' stakes and the job's unspent deposit, plus the relay's fees in its bank account.
    /// Checks on the way that the contract's bank balance is exactly what its books hold.
    async fn money(ledger: &Embedded, accounts: &[PublicKey], workers: &[PublicKey], job: JobId) -> u128 {
        let mut books = 0;
        for key in accounts {
            books += queries::account(ledger, key).await.unwrap().balance.u128();
        }
        for key in workers {
            let w = queries::worker(ledger, key).await.unwrap().expect("registered");
            books += (w.bonded + w.unbonding).u128();
        }
        let j = ledger.job(job).await.unwrap().expect("opened");
        books += amount(&j.deposit)
            - amount(&j.paid_to_workers)
            - amount(&j.paid_to_relay)
            - j.refunded.as_deref().map_or(0, amount);
        let info = ledger.info();
        assert_eq!(ledger.balance(&info.contract).await, books, "the contract holds exactly what its books say");
        books + ledger.balance(&info.relay_address).await
    }

    /// Issue 10, item 7, against the real contract: a signer whose owner unbonds below the
    /// minimum between the settler building a batch and submitting it costs only its own pay.
    /// The contract refuses the batch [A, B]; `settle_batch` settles A with its two remaining
    /// signers (paid, with the relay's fee on two replicas, the unbonded one paid nothing), and
    /// gives up B, whose other signer alone is below the quorum: B's whole deposit share goes
    /// back to the client when the job closes. No money appears or disappears on the way.
    #[tokio::test]
    async fn an_unbonded_signer_costs_only_its_own_pay_against_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Embedded::open(dir.path(), EmbeddedConfig::new(contract())).await.unwrap());
        let info = ledger.info();
        let here = ledger.deployment();
        let d = here.as_deployment();
        let min_bond = amount(&info.min_bond);

        // Three worker keys of three owners, each bonded at the minimum.
        let workers: Vec<Keypair> = (1..=3).map(|n| Keypair::from_seed([n; 32])).collect();
        let owners: Vec<Keypair> = (11..=13).map(|n| Keypair::from_seed([n; 32])).collect();
        for (worker, owner) in workers.iter().zip(&owners) {
            ledger.mint_deposit(&owner.public(), min_bond).await.unwrap();
            let nonce = ledger.nonce(&owner.public()).await.unwrap();
            let bond = AccountAction::Bond { worker: worker.public(), amount: min_bond };
            let registration = Registration {
                worker: worker.public(),
                owner: owner.public(),
                nonce,
                bond: u64::try_from(min_bond).unwrap(),
                authorization: owner.sign_account_action(d, nonce, &bond),
                proof: worker.sign_register_v2(d, &owner.public()),
            };
            ledger.register_worker(&registration).await.unwrap();
        }
        let (w1, w2, w3) = (&workers[0], &workers[1], &workers[2]);

        // A paid exact job of two tasks, quorum 2, up to three paid signers a task; the client
        // deposits exactly what the contract asks.
        let fee = u128::from(PRICE) * u128::from(info.relay_fee_bps) / 10_000;
        let replica_cost = u128::from(PRICE) + fee;
        let deposit = 2 * 3 * replica_cost;
        let spec = JobSpec {
            label: String::new(),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            tasks: vec![
                TaskSpec { params: vec![], inputs: vec![], workgroups: [1, 1, 1], output_size: 8, kernel: 0 };
                2
            ],
            comparison: Comparison::Exact,
            replicas: 3,
            quorum: 2,
            max_replicas: 3,
            price_per_replica: PRICE,
            deadline_secs: 600,
            homogeneous: false,
            nonce: 0,
            adaptive: None,
            kernels: Vec::new(),
        };
        let client = Keypair::from_seed([20; 32]);
        ledger.mint_deposit(&client.public(), deposit).await.unwrap();
        let job = JobId(1);
        let not_after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
        let signed = client.sign_paid_job(spec.clone(), d, &info.relay_address, not_after);
        ledger.open_job(&plan::open_job(job, &signed).unwrap().unwrap()).await.unwrap();
        assert_eq!(amount(&ledger.job(job).await.unwrap().unwrap().deposit), deposit);

        let accounts: Vec<PublicKey> = owners.iter().chain([&client]).map(Keypair::public).collect();
        let worker_keys: Vec<PublicKey> = workers.iter().map(Keypair::public).collect();
        let minted = ledger.minted().await.unwrap();
        assert_eq!(money(&ledger, &accounts, &worker_keys, job).await, minted, "every minted unit is accounted for");

        // Task A signed by all three, task B by w1 and w3: entries built as `settle_pending`
        // builds them, while all three are bonded.
        let hash = |index: u32| Hash32([0xa0 + u8::try_from(index).unwrap(); 32]);
        let digest = spec.digest();
        let replicas = |index: u32, signers: &[&Keypair]| -> Vec<SignedReplica> {
            let task = TaskId { job, index };
            signers
                .iter()
                .map(|w| SignedReplica {
                    worker: w.public(),
                    output_hash: hash(index),
                    output_len: OUTPUT_LEN,
                    signature: w.sign_result_v2(d, task, &digest, &hash(index), OUTPUT_LEN),
                    accepted: true,
                    rejected: false,
                })
                .collect()
        };
        let mut eligible = HashMap::new();
        for key in &worker_keys {
            let standing = ledger.worker(key).await.unwrap().expect("registered");
            assert!(standing.eligible);
            eligible.insert(*key, standing.owner);
        }
        let terms = plan::settle_terms(&spec).unwrap();
        let a = plan::settle_entry(0, &hash(0), &replicas(0, &[w1, w2, w3]), &eligible, terms).unwrap();
        let b = plan::settle_entry(1, &hash(1), &replicas(1, &[w1, w3]), &eligible, terms).unwrap();
        assert_eq!((a.signatures.len(), b.signatures.len()), (3, 2));

        // Then w3's owner unbonds one unit with its own signature: w3 is below the minimum bond.
        let o3 = &owners[2];
        let nonce = ledger.nonce(&o3.public()).await.unwrap();
        let unbond = AccountAction::Unbond { worker: w3.public(), amount: 1 };
        let signature = o3.sign_account_action(d, nonce, &unbond);
        ledger.authorized(&o3.public(), nonce, &unbond, &signature).await.unwrap();
        assert!(!ledger.worker(&w3.public()).await.unwrap().unwrap().eligible);

        // One call settles the batch [A, B].
        let store = Store::open(&dir.path().join("relay.sqlite")).await.unwrap();
        let mut settler = settler(ledger.clone(), store, BTreeMap::from([(job, BTreeSet::from([0, 1]))]));
        let settled = settler.settle_batch(job, &[a, b], terms.quorum).await.unwrap();
        assert_eq!(settled, vec![0], "A settles without w3; B cannot");
        assert!(!settler.pending[&job].contains(&1), "B is given up, not retried forever");

        // The ledger: A settled and paid to w1 and w2 only; B unsettled.
        assert_eq!(ledger.settled_tasks(job).await.unwrap(), HashSet::from([0]));
        let msg = QueryMsg::Tasks { relay: info.relay_address.clone(), job_id: job.0, start_after: None, limit: None };
        let tasks: TasksResponse = ledger.smart_query(&msg).await.unwrap();
        let [task_a] = &tasks.tasks[..] else { panic!("one settled task, A: {tasks:?}") };
        let paid: BTreeSet<Vec<u8>> =
            task_a.settled.as_ref().expect("A settled").paid_workers.iter().map(|k| k.to_vec()).collect();
        assert_eq!((task_a.index, paid), (0, BTreeSet::from([w1.public().0.to_vec(), w2.public().0.to_vec()])));
        for (owner, earned) in owners.iter().zip([PRICE, PRICE, 0]) {
            let account = queries::account(&*ledger, &owner.public()).await.unwrap();
            assert_eq!((account.earned.u128(), account.balance.u128()), (earned.into(), earned.into()));
        }
        let w3_standing = queries::worker(&*ledger, &w3.public()).await.unwrap().unwrap();
        assert_eq!(
            ((w3_standing.bonded + w3_standing.unbonding).u128(), w3_standing.slashed.u128()),
            (min_bond, 0),
            "unpaid, not punished"
        );
        let j = ledger.job(job).await.unwrap().unwrap();
        assert_eq!(
            (j.settled_tasks, amount(&j.paid_to_workers), amount(&j.paid_to_relay)),
            (1, 2 * u128::from(PRICE), 2 * fee)
        );
        assert_eq!(ledger.balance(&info.relay_address).await, 2 * fee, "the relay's fee on A's two paid replicas");
        assert_eq!(money(&ledger, &accounts, &worker_keys, job).await, minted);

        // Closing the job returns B's whole share and A's unpaid third replica to the client.
        let refund = settler.escrow.close(job).await.unwrap();
        assert_eq!(refund, 3 * replica_cost + replica_cost);
        let account = queries::account(&*ledger, &client.public()).await.unwrap();
        assert_eq!((account.balance.u128(), account.refunded.u128()), (refund, refund));
        assert_eq!(money(&ledger, &accounts, &worker_keys, job).await, minted);
        assert_eq!(ledger.total_supply().await, minted, "nothing minted or burned on the way");
    }
}
