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
use starling_protocol::events::JobState;
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
