//! Reading the contract: the paging and "not found" handling both backends share, over each
//! backend's own way of running a smart query.

use super::{EscrowError, EscrowResult, account_view, hex, job_escrow};
use starling_escrow::msg::{
    JobResponse, JobsResponse, QueryMsg, RelayResponse, RelaysResponse, TasksResponse, WorkerResponse,
};
use starling_escrow::state::Account;
use starling_escrow::state::JobStatus;
use starling_protocol::api::JobEscrow;
use starling_protocol::api::{EscrowAccount, RegisteredRelay};
use starling_protocol::{JobId, PublicKey};
use std::collections::HashSet;

/// Entries per page of the contract's list queries (its own maximum).
const PAGE: u32 = 100;

/// A backend that can run the contract's smart queries.
pub(super) trait SmartQuery: Sync {
    /// The relay's own address: its jobs are the ones it reads.
    fn relay(&self) -> String;

    fn smart_query<T: serde::de::DeserializeOwned>(
        &self,
        msg: &QueryMsg,
    ) -> impl std::future::Future<Output = EscrowResult<T>> + Send;
}

/// A query whose refusal means "no such thing".
async fn optional<T: serde::de::DeserializeOwned>(q: &impl SmartQuery, msg: &QueryMsg) -> EscrowResult<Option<T>> {
    match q.smart_query(msg).await {
        Ok(v) => Ok(Some(v)),
        Err(EscrowError::Refused(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// This relay's jobs, page by page, ascending by id (nobody else can open a job in its
/// namespace).
async fn jobs(q: &impl SmartQuery) -> EscrowResult<Vec<JobResponse>> {
    Ok(jobs_of(q, &q.relay(), None, usize::MAX).await?.0)
}

pub(super) async fn max_job_id(q: &impl SmartQuery) -> EscrowResult<u64> {
    Ok(jobs(q).await?.last().map_or(0, |j| j.job_id))
}

/// This relay's jobs that are not closed yet.
pub(super) async fn open_jobs(q: &impl SmartQuery) -> EscrowResult<Vec<JobId>> {
    Ok(jobs(q).await?.iter().filter(|j| !matches!(j.status, JobStatus::Closed)).map(|j| JobId(j.job_id)).collect())
}

pub(super) async fn settled_tasks(q: &impl SmartQuery, job: JobId) -> EscrowResult<HashSet<u32>> {
    let mut settled = HashSet::new();
    let mut start_after = None;
    loop {
        let page: TasksResponse =
            q.smart_query(&QueryMsg::Tasks { relay: q.relay(), job_id: job.0, start_after, limit: Some(PAGE) }).await?;
        let Some(last) = page.tasks.last() else { return Ok(settled) };
        start_after = Some(last.index);
        settled.extend(page.tasks.iter().filter(|t| t.settled.is_some()).map(|t| t.index));
    }
}

pub(super) async fn job(q: &impl SmartQuery, job: JobId, denom: &str) -> EscrowResult<Option<JobEscrow>> {
    Ok(optional::<JobResponse>(q, &QueryMsg::Job { relay: q.relay(), job_id: job.0 })
        .await?
        .map(|j| job_escrow(job, j, denom)))
}

pub(super) async fn worker(q: &impl SmartQuery, worker: &PublicKey) -> EscrowResult<Option<WorkerResponse>> {
    optional(q, &QueryMsg::Worker { pubkey: hex(&worker.0) }).await
}

pub(super) async fn account(q: &impl SmartQuery, key: &PublicKey) -> EscrowResult<Account> {
    q.smart_query(&QueryMsg::Account { pubkey: hex(&key.0) }).await
}

/// A worker key's bond and its owner's account, as the API shows them.
pub(super) async fn worker_account(
    q: &impl SmartQuery,
    worker: &PublicKey,
    denom: &str,
) -> EscrowResult<Option<EscrowAccount>> {
    let Some(w) = self::worker(q, worker).await? else { return Ok(None) };
    let owner = PublicKey(w.owner.to_array().map_err(|e| EscrowError::Unavailable(e.to_string()))?);
    let account = account(q, &owner).await?;
    Ok(Some(EscrowAccount {
        bonded: Some((w.bonded + w.unbonding).to_string()),
        slashed: Some(w.slashed.to_string()),
        ..account_view(&owner, &account, denom)
    }))
}

/// Most registry entries read (and listed) at once.
pub const MAX_RELAYS: usize = 1_000;

/// The contract's relay registry, page by page, at most [`MAX_RELAYS`] entries.
pub(super) async fn relays(q: &impl SmartQuery) -> EscrowResult<Vec<RegisteredRelay>> {
    let mut all: Vec<RegisteredRelay> = Vec::new();
    let mut start_after: Option<String> = None;
    while all.len() < MAX_RELAYS {
        let page: RelaysResponse =
            q.smart_query(&QueryMsg::Relays { start_after: start_after.clone(), limit: Some(PAGE) }).await?;
        let Some(last) = page.relays.last() else { break };
        start_after = Some(last.address.to_string());
        all.extend(page.relays.into_iter().map(registered));
    }
    all.truncate(MAX_RELAYS);
    Ok(all)
}

/// One registry entry (`None`: not registered).
pub(super) async fn relay(q: &impl SmartQuery, address: &str) -> EscrowResult<Option<RegisteredRelay>> {
    Ok(optional::<RelayResponse>(q, &QueryMsg::Relay { address: address.to_owned() }).await?.map(registered))
}

pub(super) fn registered(r: RelayResponse) -> RegisteredRelay {
    RegisteredRelay {
        address: r.address.to_string(),
        endpoint: r.endpoint,
        fee_bps: r.fee_bps,
        bond: r.bond.to_string(),
        unbonding: r.unbonding.to_string(),
        active: r.active,
        leaving: r.leaving,
        jobs_opened: r.record.jobs_opened,
        jobs_ended: r.record.jobs_ended,
        tasks_paid: r.record.tasks_paid,
        fees_earned: r.record.fees_earned.to_string(),
        workers_slashed: r.record.workers_slashed,
    }
}

/// Up to `pages` pages of `relay`'s jobs after `start_after`, and where to go on from (`None`:
/// the end was reached).
pub(super) async fn jobs_of(
    q: &impl SmartQuery,
    relay: &str,
    mut start_after: Option<u64>,
    pages: usize,
) -> EscrowResult<(Vec<JobResponse>, Option<u64>)> {
    let mut all = Vec::new();
    for _ in 0..pages {
        let msg = QueryMsg::Jobs { relay: relay.to_owned(), start_after, limit: Some(PAGE) };
        let page: JobsResponse = q.smart_query(&msg).await?;
        let Some(last) = page.jobs.last() else { return Ok((all, None)) };
        start_after = Some(last.job_id);
        all.extend(page.jobs);
    }
    Ok((all, start_after))
}
