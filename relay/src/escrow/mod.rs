//! Payment through the escrow contract (`contracts/escrow`), behind [`EscrowBridge`].
//!
//! - [`plan`]: pure decisions: what a job deposits, which signatures settle a task, which
//!   rejected replicas are slashing evidence. Table-tested.
//! - [`embedded`]: the default backend: the compiled contract in cosmwasm-vm on a local ledger
//!   persisted next to the relay's database, with a faucet for demo accounts.
//! - [`chain`]: a real CosmWasm chain over Tendermint RPC, transactions signed with `cosmrs`.
//! - [`settler`]: the loop that turns verified tasks into settlement batches, evidence into
//!   slashes, and finished jobs into refunds; it recovers from the ledger after a restart.
//!
//! The relay core opens a job in escrow before accepting it (so a client that cannot pay is
//! refused and nothing is stored); everything after that is the settler's, off the core's path.

pub mod chain;
pub mod embedded;
pub mod plan;
mod queries;
pub mod settler;

use async_trait::async_trait;
use starling_protocol::events::{EscrowAccount, EscrowInfo, JobEscrow};
use starling_protocol::{Hash32, JobId, PublicKey, Signature};
use std::collections::HashSet;
use std::sync::Arc;

/// The escrow a relay settles through; `None` in [`crate::AppState`] runs jobs unpaid.
pub type Escrow = Arc<dyn EscrowBridge>;

#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    /// The contract (or the ledger's bank) refused: the caller's request is at fault.
    #[error("{0}")]
    Refused(String),
    /// The client's account cannot pay the deposit.
    #[error("{0}")]
    InsufficientFunds(String),
    /// The escrow could not be reached or failed internally; retry later.
    #[error("escrow unavailable: {0}")]
    Unavailable(String),
}

pub type EscrowResult<T> = std::result::Result<T, EscrowError>;

/// A job as the contract's `CreateJob` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenJob {
    pub job: JobId,
    pub client: PublicKey,
    pub tasks: u32,
    /// Signers paid per task at most (the job's `max_replicas`, so extra replicas after a
    /// disagreement are covered by the deposit).
    pub replicas: u8,
    pub quorum: u8,
    pub price_per_replica: u128,
    /// Unix seconds.
    pub deadline: u64,
    /// Dissenting signatures can be slashed: results are compared byte for byte.
    pub slashable: bool,
}

/// One verified task for `SettleBatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleTask {
    pub index: u32,
    pub output_hash: Hash32,
    pub output_len: u64,
    /// Distinct, eligible signers that agree, with their signatures over `result_bytes`.
    pub signatures: Vec<(PublicKey, Signature)>,
}

/// A worker's signature over a different result for a settled task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub job: JobId,
    pub index: u32,
    pub worker: PublicKey,
    pub output_hash: Hash32,
    pub output_len: u64,
    pub signature: Signature,
}

/// A worker key's standing in escrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStanding {
    pub owner: String,
    /// Its signatures count toward a paid quorum now.
    pub eligible: bool,
}

/// What a relay needs from an escrow. Amounts are in the smallest unit of the escrow's denom.
#[async_trait]
pub trait EscrowBridge: Send + Sync + std::fmt::Debug {
    fn info(&self) -> EscrowInfo;
    /// The account a client key pays from.
    fn client_address(&self, client: &PublicKey) -> String;
    /// The payout account the relay proposes for a worker key that registers through it.
    fn worker_owner(&self, worker: &PublicKey) -> String;

    /// The highest job id the contract holds (the relay never reuses one).
    async fn max_job_id(&self) -> EscrowResult<u64>;
    /// Locks the client's deposit for a job (the contract's `CreateJob`).
    async fn open_job(&self, job: &OpenJob) -> EscrowResult<()>;
    /// Jobs of this relay's that are not closed yet, for recovery.
    async fn open_jobs(&self) -> EscrowResult<Vec<JobId>>;
    /// Indices of a job's settled tasks.
    async fn settled_tasks(&self, job: JobId) -> EscrowResult<HashSet<u32>>;
    async fn job(&self, job: JobId) -> EscrowResult<Option<JobEscrow>>;

    /// `None`: not registered.
    async fn worker(&self, worker: &PublicKey) -> EscrowResult<Option<WorkerStanding>>;
    /// Registers and bonds `worker` under `owner` with the key's `proof` over
    /// `register_bytes(contract, owner, worker)`.
    async fn register_worker(&self, worker: &PublicKey, owner: &str, proof: &Signature) -> EscrowResult<()>;

    /// Settles verified tasks atomically: any bad entry refuses the whole batch.
    async fn settle(&self, job: JobId, tasks: &[SettleTask]) -> EscrowResult<()>;
    async fn slash(&self, evidence: &Evidence) -> EscrowResult<()>;
    /// Ends a job early and returns the unpaid deposit to its client; the amount refunded.
    async fn close(&self, job: JobId) -> EscrowResult<u128>;

    async fn worker_account(&self, worker: &PublicKey) -> EscrowResult<Option<EscrowAccount>>;
    async fn client_account(&self, client: &PublicKey) -> EscrowResult<EscrowAccount>;
}

/// Hex-encoded bytes as the contract's messages take them.
fn hex(bytes: &[u8]) -> cosmwasm_std::HexBinary {
    cosmwasm_std::HexBinary::from(bytes)
}

/// The contract's `SettleBatch` for `tasks` (both backends send exactly this).
fn settle_msg(job: JobId, tasks: &[SettleTask]) -> starling_escrow::msg::ExecuteMsg {
    use starling_escrow::msg::{ExecuteMsg, TaskResult, WorkerSignature};
    ExecuteMsg::SettleBatch {
        job_id: job.0,
        tasks: tasks
            .iter()
            .map(|t| TaskResult {
                index: t.index,
                output_hash: hex(&t.output_hash.0),
                output_len: t.output_len,
                signatures: t
                    .signatures
                    .iter()
                    .map(|(k, s)| WorkerSignature { worker_pubkey: hex(&k.0), signature: hex(&s.0) })
                    .collect(),
            })
            .collect(),
    }
}

/// The contract's `Slash` for `e`.
fn slash_msg(e: &Evidence) -> starling_escrow::msg::ExecuteMsg {
    starling_escrow::msg::ExecuteMsg::Slash {
        job_id: e.job.0,
        index: e.index,
        worker_pubkey: hex(&e.worker.0),
        output_hash: hex(&e.output_hash.0),
        output_len: e.output_len,
        signature: hex(&e.signature.0),
    }
}

/// The contract's `CreateJob` for `job`.
fn create_job_msg(job: &OpenJob) -> starling_escrow::msg::ExecuteMsg {
    starling_escrow::msg::ExecuteMsg::CreateJob {
        job_id: job.job.0,
        tasks: job.tasks,
        replicas: job.replicas,
        quorum: job.quorum,
        price_per_replica: cosmwasm_std::Uint128::new(job.price_per_replica),
        deadline: job.deadline,
        slashable: job.slashable,
    }
}

/// A job as the API shows it, from the contract's answer.
fn job_escrow(job: JobId, j: starling_escrow::msg::JobResponse, denom: &str) -> JobEscrow {
    JobEscrow {
        job,
        client_address: j.client.to_string(),
        deposit: j.deposit.to_string(),
        paid_to_workers: j.paid_to_workers.to_string(),
        paid_to_relay: j.paid_to_relay.to_string(),
        refunded: j.refunded.map(|r| r.to_string()),
        settled_tasks: j.settled_tasks,
        denom: denom.to_owned(),
    }
}
