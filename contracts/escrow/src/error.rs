//! Every way an escrow message can be refused. Settlement errors name the job and the task (and
//! the signer where one is at fault) so the relay can tell which entry of a batch was bad.

use cosmwasm_std::{CheckedMultiplyRatioError, ConversionOverflowError, OverflowError, StdError, Uint128};
use thiserror::Error;

pub type Result<T> = std::result::Result<T, ContractError>;

#[derive(Debug, Error)]
pub enum ContractError {
    #[error(transparent)]
    Std(#[from] StdError),

    #[error(transparent)]
    Overflow(#[from] OverflowError),

    #[error(transparent)]
    MultiplyRatio(#[from] CheckedMultiplyRatioError),

    #[error(transparent)]
    Conversion(#[from] ConversionOverflowError),

    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter { name: &'static str, reason: String },

    #[error("{what} must be {expected} bytes, got {got}")]
    BadLength { what: &'static str, expected: usize, got: usize },

    #[error("expected {expected} attached, got {got}")]
    WrongFunds { expected: String, got: String },

    #[error("expected at least {min} attached, got {got}")]
    InsufficientFunds { min: String, got: String },

    #[error("only {expected} may do this")]
    Unauthorized { expected: String },

    // Workers.
    #[error("worker key {worker} is already registered")]
    WorkerExists { worker: String },

    #[error("worker key {worker} is not registered")]
    UnknownWorker { worker: String },

    #[error("the registration proof is not a valid signature by {worker} over this contract and sender")]
    BadRegistrationProof { worker: String },

    #[error("cannot unbond {requested}: worker {worker} has {bonded} bonded")]
    UnbondTooLarge { worker: String, requested: Uint128, bonded: Uint128 },

    #[error("worker {worker} has nothing to withdraw")]
    NothingToWithdraw { worker: String },

    #[error("worker {worker} is still unbonding until {release_at} (now {now})")]
    StillUnbonding { worker: String, release_at: u64, now: u64 },

    // Jobs.
    #[error("job {job_id} already exists")]
    JobExists { job_id: u64 },

    #[error("job {job_id} not found")]
    JobNotFound { job_id: u64 },

    #[error("job {job_id} passed its deadline {deadline} (now {now})")]
    DeadlinePassed { job_id: u64, deadline: u64, now: u64 },

    #[error("job {job_id} is open until {deadline} (now {now})")]
    DeadlineNotReached { job_id: u64, deadline: u64, now: u64 },

    #[error("job {job_id} was already refunded")]
    AlreadyRefunded { job_id: u64 },

    #[error("job {job_id} is closed: nothing settles after its refund")]
    JobClosed { job_id: u64 },

    // Settlement: each names the task it refuses.
    #[error("job {job_id}: the batch has no tasks")]
    EmptyBatch { job_id: u64 },

    #[error("task {job_id}/{index}: index out of range (job has {tasks} tasks)")]
    TaskOutOfRange { job_id: u64, index: u32, tasks: u32 },

    #[error("task {job_id}/{index} is already settled")]
    TaskAlreadySettled { job_id: u64, index: u32 },

    #[error("task {job_id}/{index} appears twice in the batch")]
    DuplicateTask { job_id: u64, index: u32 },

    #[error("task {job_id}/{index}: {signers} signers, quorum is {quorum}")]
    BelowQuorum { job_id: u64, index: u32, signers: usize, quorum: u8 },

    #[error("task {job_id}/{index}: {signers} signers, the deposit pays {replicas} replicas")]
    TooManySigners { job_id: u64, index: u32, signers: usize, replicas: u8 },

    #[error("task {job_id}/{index}: worker {worker} signed twice")]
    DuplicateSigner { job_id: u64, index: u32, worker: String },

    #[error("task {job_id}/{index}: signer {worker} is not registered")]
    SignerNotRegistered { job_id: u64, index: u32, worker: String },

    #[error("task {job_id}/{index}: signer {worker} has {bonded} bonded, minimum is {min_bond}")]
    SignerNotBonded { job_id: u64, index: u32, worker: String, bonded: Uint128, min_bond: Uint128 },

    #[error("task {job_id}/{index}: signature by {worker} does not verify")]
    InvalidSignature { job_id: u64, index: u32, worker: String },

    // Slashing.
    #[error("job {job_id} compares results within a tolerance: its dissenting signatures are not slashable")]
    NotSlashable { job_id: u64 },

    #[error("task {job_id}/{index} is not settled: nothing to contradict")]
    TaskNotSettled { job_id: u64, index: u32 },

    #[error("task {job_id}/{index}: the evidence agrees with the settled result")]
    EvidenceAgrees { job_id: u64, index: u32 },

    #[error("task {job_id}/{index}: worker {worker} was already slashed for this task")]
    AlreadySlashed { job_id: u64, index: u32, worker: String },

    #[error("worker {worker} has no stake left to slash")]
    NothingToSlash { worker: String },
}
