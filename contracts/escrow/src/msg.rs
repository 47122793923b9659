//! The contract's message API. Keys, hashes and signatures travel as lowercase hex, like every
//! other Starling wire format.

#[allow(unused_imports)] // named by the `#[returns]` attributes, used by the schema only
use crate::state::{Account, Config};
use crate::state::{JobStatus, SettledTask};
use cosmwasm_schema::{QueryResponses, cw_serde};
use cosmwasm_std::{Addr, HexBinary, Uint128};

/// Bytes a worker key signs to register with this contract for an owner account: exactly
/// [`starling_protocol::sign::register_bytes`], which workers use too.
pub fn registration_bytes(contract: &str, owner: &str, worker: &[u8; 32]) -> Vec<u8> {
    starling_protocol::sign::register_bytes(contract, owner, &starling_protocol::PublicKey(*worker))
}

#[cw_serde]
pub struct InstantiateMsg {
    pub denom: String,
    /// The relay's account: sends settlements, receives fees.
    pub relay: String,
    pub relay_fee_bps: u16,
    pub min_bond: Uint128,
    pub unbonding_period: u64,
    pub max_job_duration: u64,
    pub slash_bps: u16,
    pub reporter_share_bps: u16,
}

#[cw_serde]
pub enum ExecuteMsg {
    /// Registers a worker key under the sender's account, with a bond of at least `min_bond`
    /// attached. `proof` is the key's signature over [`registration_bytes`].
    RegisterWorker { pubkey: HexBinary, proof: HexBinary },
    /// Adds the attached funds to the worker's bond (owner only).
    Bond { pubkey: HexBinary },
    /// Starts unbonding `amount` (owner only). It stays slashable for `unbonding_period`.
    Unbond { pubkey: HexBinary, amount: Uint128 },
    /// Sends the owner everything that finished unbonding.
    Withdraw { pubkey: HexBinary },
    /// Opens a job with the sender as client. Attach exactly the deposit (see `QueryMsg::Deposit`).
    CreateJob {
        job_id: u64,
        tasks: u32,
        replicas: u8,
        quorum: u8,
        price_per_replica: Uint128,
        /// Block time in seconds; at most `max_job_duration` from now.
        deadline: u64,
        /// Whether a signature over a different result for a settled task can be slashed: true
        /// only for jobs whose results are compared byte for byte. On a float-tolerance job,
        /// honest workers on different GPUs sign different bytes, so a dissenting signature
        /// proves nothing; there a wrong result is only left unpaid.
        slashable: bool,
    },
    /// Settles verified tasks (the job's relay only). Any bad entry refuses the whole batch.
    SettleBatch { job_id: u64, tasks: Vec<TaskResult> },
    /// Evidence that a worker signed a different result for a settled task; anyone may report.
    Slash {
        job_id: u64,
        index: u32,
        worker_pubkey: HexBinary,
        output_hash: HexBinary,
        output_len: u64,
        signature: HexBinary,
    },
    /// After the deadline, returns to the client what was not paid out. Anyone may trigger it.
    Refund { job_id: u64 },
    /// The job's relay ends the job early (its work is done or abandoned): returns to the client
    /// at once what was not paid out; nothing settles afterwards. Settled tasks stay slashable.
    Close { job_id: u64 },
}

/// One verified task: the agreed result and the signatures of `quorum..=replicas` distinct
/// workers over `starling_protocol::sign::result_bytes`.
#[cw_serde]
pub struct TaskResult {
    pub index: u32,
    pub output_hash: HexBinary,
    pub output_len: u64,
    pub signatures: Vec<WorkerSignature>,
}

#[cw_serde]
pub struct WorkerSignature {
    pub worker_pubkey: HexBinary,
    pub signature: HexBinary,
}

#[cw_serde]
#[derive(QueryResponses)]
pub enum QueryMsg {
    #[returns(Config)]
    Config {},
    /// The exact deposit `CreateJob` needs for this shape.
    #[returns(DepositResponse)]
    Deposit { tasks: u32, replicas: u8, price_per_replica: Uint128 },
    #[returns(JobResponse)]
    Job { job_id: u64 },
    #[returns(JobsResponse)]
    Jobs { start_after: Option<u64>, limit: Option<u32> },
    #[returns(TaskResponse)]
    Task { job_id: u64, index: u32 },
    /// Settled tasks of a job, by index.
    #[returns(TasksResponse)]
    Tasks { job_id: u64, start_after: Option<u32>, limit: Option<u32> },
    #[returns(WorkerResponse)]
    Worker { pubkey: HexBinary },
    #[returns(WorkersResponse)]
    Workers { start_after: Option<HexBinary>, limit: Option<u32> },
    /// What the contract paid to (or received from) an address.
    #[returns(Account)]
    Account { address: String },
}

#[cw_serde]
pub struct DepositResponse {
    pub fee_per_replica: Uint128,
    pub deposit: Uint128,
}

#[cw_serde]
pub struct JobResponse {
    pub job_id: u64,
    pub client: Addr,
    pub relay: Addr,
    pub tasks: u32,
    pub replicas: u8,
    pub quorum: u8,
    pub price_per_replica: Uint128,
    pub fee_per_replica: Uint128,
    pub deadline: u64,
    pub slashable: bool,
    pub deposit: Uint128,
    pub settled_tasks: u32,
    pub paid_to_workers: Uint128,
    pub paid_to_relay: Uint128,
    pub refunded: Option<Uint128>,
    /// Still held for this job: owed to workers if their tasks settle, else to the client.
    pub remaining: Uint128,
    pub status: JobStatus,
}

#[cw_serde]
pub struct JobsResponse {
    pub jobs: Vec<JobResponse>,
}

#[cw_serde]
pub struct TaskResponse {
    pub job_id: u64,
    pub index: u32,
    /// `None` while the task is unsettled.
    pub settled: Option<SettledTask>,
}

#[cw_serde]
pub struct TasksResponse {
    pub tasks: Vec<TaskResponse>,
}

#[cw_serde]
pub struct WorkerResponse {
    pub pubkey: HexBinary,
    pub owner: Addr,
    pub bonded: Uint128,
    pub unbonding: Uint128,
    pub release_at: u64,
    pub slashed: Uint128,
    /// Whether its signature counts toward a quorum now (`bonded ≥ min_bond`).
    pub eligible: bool,
}

#[cw_serde]
pub struct WorkersResponse {
    pub workers: Vec<WorkerResponse>,
}
