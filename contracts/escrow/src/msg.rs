//! The contract's message API. Keys, hashes and signatures travel as lowercase hex, like every
//! other Starling wire format. The bytes each signature covers come from
//! `starling_protocol::sign` (re-exported here with the contract's types), the same functions
//! workers, clients and the relay sign with.

#[allow(unused_imports)] // named by the `#[returns]` attributes, used by the schema only
use crate::state::{Account, Config, Totals};
use crate::state::{JobComparison, JobRef, JobStatus, RelayRecord, SettledTask};
use cosmwasm_schema::{QueryResponses, cw_serde};
use cosmwasm_std::{Addr, HexBinary, Uint128};
use starling_protocol::sign::{self, AccountAction, ComparisonKind, Deployment, DepositTerms};
use starling_protocol::{Hash32, JobId, PublicKey, TaskId};

#[cw_serde]
pub struct InstantiateMsg {
    pub denom: String,
    /// The relay's account: the only sender of `CreateJob`, `SettleBatch` and `Close`, and the
    /// recipient of fees. It cannot be the contract itself.
    pub relay: String,
    pub relay_fee_bps: u16,
    pub min_bond: Uint128,
    pub unbonding_period: u64,
    pub max_job_duration: u64,
    pub slash_bps: u16,
    /// Least bond another relay registers with (`RegisterRelay`); the deployment's own relay,
    /// `relay`, is registered at instantiation and needs none.
    #[serde(default)]
    pub min_relay_bond: Uint128,
    /// The deployment's own relay's public URL, listed in the registry.
    #[serde(default)]
    pub relay_endpoint: Option<String>,
}

/// An account owner's consent to one action: its key's signature over
/// `starling_protocol::sign::account_bytes(chain id, contract, account, nonce, action)`.
#[cw_serde]
pub struct Authorization {
    /// The account's 32-byte ed25519 key.
    pub account: HexBinary,
    /// Must be the account's current nonce (`QueryMsg::Account`); it then increments.
    pub nonce: u64,
    pub signature: HexBinary,
}

/// What a client signs to have one job opened and paid from its account (see
/// `starling_protocol::sign::deposit_bytes`).
#[cw_serde]
pub struct JobTerms {
    /// `JobSpec::digest` (32 bytes): every result signature for the job names it.
    pub spec_digest: HexBinary,
    pub tasks: u32,
    pub replicas: u8,
    pub quorum: u8,
    pub price_per_replica: Uint128,
    pub comparison: JobComparison,
    /// Seconds from opening to the escrow deadline; at most `max_job_duration`.
    pub deadline_secs: u64,
    /// The last block time (seconds) at which the job may be opened with this signature.
    pub not_after: u64,
}

#[cw_serde]
pub enum ExecuteMsg {
    /// Credits the attached funds (the denom only) to `account`, an ed25519 key; anyone may pay.
    /// The payer's own transaction is its consent; from here only `account`'s key moves them.
    Deposit { account: HexBinary },
    /// Moves `amount` from the account's balance into `worker`'s bond. A new worker key is
    /// registered under the account, which needs `proof` (the worker key's signature over
    /// `register_bytes_v2` naming the account) and `amount ≥ min_bond`; a known one must
    /// already belong to the account (`proof` is then not needed).
    Bond { authorization: Authorization, worker: HexBinary, amount: Uint128, proof: Option<HexBinary> },
    /// Starts unbonding `amount` of `worker`'s bond (the owner's authorization). It stays
    /// slashable for `unbonding_period`, then `Release` returns it to the owner's account.
    /// Stake that already finished unbonding is released first, so it does not wait again.
    Unbond { authorization: Authorization, worker: HexBinary, amount: Uint128 },
    /// Returns `worker`'s finished unbonding stake to its owner's account. Anyone may send it:
    /// the money only moves to the owner.
    Release { worker: HexBinary },
    /// Sends `amount` from the account's balance to the chain address `to`.
    Withdraw { authorization: Authorization, to: String, amount: Uint128 },
    /// Opens job `job_id` in the sender's namespace (the configured relay only), paid from the
    /// `client` account with the client's `signature` over `deposit_bytes(terms)`.
    CreateJob { job_id: u64, client: HexBinary, terms: JobTerms, signature: HexBinary },
    /// Settles verified tasks of one of the sender's jobs (the relay only). Any bad entry refuses
    /// the whole batch.
    SettleBatch { job_id: u64, tasks: Vec<TaskResult> },
    /// Evidence that a worker signed a different result for a settled task of an exact job;
    /// anyone may report. The slashed stake is burned.
    Slash {
        relay: String,
        job_id: u64,
        index: u32,
        worker_pubkey: HexBinary,
        output_hash: HexBinary,
        output_len: u64,
        signature: HexBinary,
    },
    /// After the deadline, returns to the client's account what was not paid out. Anyone may
    /// trigger it.
    Refund { relay: String, job_id: u64 },
    /// The relay ends one of its jobs early (its work is done or abandoned): the client's account
    /// gets what was not paid out at once; nothing settles afterwards. Settled tasks stay
    /// slashable.
    Close { job_id: u64 },
    /// Registers the sender as a relay, reachable at `endpoint`, charging `fee_bps` on each paid
    /// replica, with the attached funds as its bond (at least `min_relay_bond`). A relay that
    /// left registers again with a fee no higher than before (its unbonding bond is bonded again).
    RegisterRelay { endpoint: String, fee_bps: u16 },
    /// Changes the sender's entry: a new endpoint, a lower fee (never higher: clients' standing
    /// deposit signatures name the relay, not the fee), attached funds added to its bond.
    UpdateRelay { endpoint: Option<String>, fee_bps: Option<u16> },
    /// The sender stops opening jobs; its bond unbonds for `unbonding_period`. Its open jobs still
    /// settle, close and refund.
    LeaveRelay {},
    /// Returns a leaving relay's bond to it once unbonded. Anyone may send it.
    ReleaseRelay { relay: String },
}

/// One verified task: the delivered result and the signatures of `quorum..=replicas` workers of
/// distinct owners over `starling_protocol::sign::result_bytes_v2`.
#[cw_serde]
pub struct TaskResult {
    pub index: u32,
    /// The result the client gets. On a tolerance job, one of the signers' hashes.
    pub output_hash: HexBinary,
    pub output_len: u64,
    pub signatures: Vec<WorkerSignature>,
}

#[cw_serde]
pub struct WorkerSignature {
    pub worker_pubkey: HexBinary,
    pub signature: HexBinary,
    /// Tolerance jobs: the hash this worker signed, when it differs from the task's
    /// `output_hash`. Must be absent on exact jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_hash: Option<HexBinary>,
}

#[cw_serde]
#[derive(QueryResponses)]
pub enum QueryMsg {
    #[returns(Config)]
    Config {},
    /// Money in and out since instantiation.
    #[returns(Totals)]
    Totals {},
    /// The exact deposit a job of this shape takes from the client's account.
    #[returns(DepositResponse)]
    Deposit {
        tasks: u32,
        replicas: u8,
        price_per_replica: Uint128,
        /// The relay that would open it (its fee); the deployment's own relay when absent.
        relay: Option<String>,
    },
    /// An account's balance, nonce and running totals (all zero for an account never paid into).
    #[returns(Account)]
    Account { pubkey: HexBinary },
    #[returns(JobResponse)]
    Job { relay: String, job_id: u64 },
    /// One relay's jobs, by id.
    #[returns(JobsResponse)]
    Jobs { relay: String, start_after: Option<u64>, limit: Option<u32> },
    /// The job a client's signed deposit for `spec_digest` opened, if any.
    #[returns(SpecJobResponse)]
    JobOfSpec { client: HexBinary, spec_digest: HexBinary },
    #[returns(TaskResponse)]
    Task { relay: String, job_id: u64, index: u32 },
    /// Settled tasks of a job, by index.
    #[returns(TasksResponse)]
    Tasks { relay: String, job_id: u64, start_after: Option<u32>, limit: Option<u32> },
    #[returns(WorkerResponse)]
    Worker { pubkey: HexBinary },
    #[returns(WorkersResponse)]
    Workers { start_after: Option<HexBinary>, limit: Option<u32> },
    #[returns(RelayResponse)]
    Relay { address: String },
    /// Registered relays (leaving ones included, marked), by address.
    #[returns(RelaysResponse)]
    Relays { start_after: Option<String>, limit: Option<u32> },
}

#[cw_serde]
pub struct RelayResponse {
    pub address: Addr,
    pub endpoint: String,
    pub fee_bps: u16,
    pub bond: Uint128,
    pub unbonding: Uint128,
    pub release_at: u64,
    pub leaving: bool,
    /// Whether it may open jobs now (registered, not leaving, bonded enough).
    pub active: bool,
    pub record: RelayRecord,
}

#[cw_serde]
pub struct RelaysResponse {
    pub relays: Vec<RelayResponse>,
}

#[cw_serde]
pub struct DepositResponse {
    pub fee_per_replica: Uint128,
    pub deposit: Uint128,
}

#[cw_serde]
pub struct SpecJobResponse {
    pub job: Option<JobRef>,
}

#[cw_serde]
pub struct JobResponse {
    pub job_id: u64,
    pub client: HexBinary,
    pub relay: Addr,
    pub spec_digest: HexBinary,
    pub tasks: u32,
    pub replicas: u8,
    pub quorum: u8,
    pub price_per_replica: Uint128,
    pub fee_per_replica: Uint128,
    pub comparison: JobComparison,
    pub deadline: u64,
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
    /// The account key it belongs to.
    pub owner: HexBinary,
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

// The signed bytes, in the contract's types. Each is exactly the `starling_protocol::sign`
// function its signers use, so the contract and its signers cannot disagree on an encoding.

/// What a worker key signs to be bonded under `owner` ([`sign::register_bytes_v2`]).
pub fn registration_bytes(chain_id: &str, contract: &str, owner: &[u8; 32], worker: &[u8; 32]) -> Vec<u8> {
    sign::register_bytes_v2(Deployment { chain_id, contract }, &PublicKey(*owner), &PublicKey(*worker))
}

/// What a worker signs over a task's result ([`sign::result_bytes_v2`]).
#[allow(clippy::too_many_arguments)] // the fields of the signed bytes, one each
pub fn result_bytes(
    chain_id: &str,
    contract: &str,
    job_id: u64,
    spec_digest: &[u8; 32],
    index: u32,
    output_hash: &[u8; 32],
    output_len: u64,
    worker: &[u8; 32],
) -> Vec<u8> {
    sign::result_bytes_v2(
        Deployment { chain_id, contract },
        TaskId { job: JobId(job_id), index },
        &Hash32(*spec_digest),
        &Hash32(*output_hash),
        output_len,
        &PublicKey(*worker),
    )
}

/// What an account's key signs to authorize `action` at `nonce` ([`sign::account_bytes`]).
pub fn authorization_bytes(
    chain_id: &str,
    contract: &str,
    account: &[u8; 32],
    nonce: u64,
    action: &AccountAction,
) -> Vec<u8> {
    sign::account_bytes(Deployment { chain_id, contract }, &PublicKey(*account), nonce, action)
}

impl From<JobComparison> for ComparisonKind {
    fn from(comparison: JobComparison) -> Self {
        match comparison {
            JobComparison::Exact => ComparisonKind::Exact,
            JobComparison::Tolerance => ComparisonKind::Tolerance,
        }
    }
}

impl JobTerms {
    /// The protocol's view of these terms; `None` when the digest is not 32 bytes.
    pub fn to_protocol(&self) -> Option<DepositTerms> {
        Some(DepositTerms {
            spec_digest: Hash32(self.spec_digest.to_array().ok()?),
            tasks: self.tasks,
            replicas: self.replicas,
            quorum: self.quorum,
            price_per_replica: self.price_per_replica.u128(),
            comparison: self.comparison.into(),
            deadline_secs: self.deadline_secs,
            not_after: self.not_after,
        })
    }
}

/// What a client signs to have `relay` open a job on these terms ([`sign::deposit_bytes`]).
pub fn deposit_bytes(chain_id: &str, contract: &str, relay: &str, client: &[u8; 32], terms: &DepositTerms) -> Vec<u8> {
    sign::deposit_bytes(Deployment { chain_id, contract }, relay, &PublicKey(*client), terms)
}
