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

    // Accounts.
    #[error("account {account} has {balance}, needs {needed}")]
    InsufficientBalance { account: String, balance: Uint128, needed: Uint128 },

    #[error("account {account}: authorization carries nonce {got}, the account is at {expected}")]
    BadNonce { account: String, expected: u64, got: u64 },

    #[error("account {account}: the authorization is not its key's signature over this action, chain and contract")]
    BadAuthorization { account: String },

    #[error("{name} must be more than zero")]
    ZeroAmount { name: &'static str },

    #[error("cannot withdraw to {address}: the escrow's own address")]
    BadRecipient { address: String },

    // Relays.
    #[error("{relay} is not a registered relay that may open jobs (register with RegisterRelay)")]
    NotRelay { relay: String },

    #[error("{relay} is already registered; use UpdateRelay")]
    RelayRegistered { relay: String },

    #[error("a relay bond of {needed} is required, {relay} would have {bond}")]
    RelayBondTooSmall { relay: String, bond: Uint128, needed: Uint128 },

    #[error(
        "{relay} charged {current} basis points; its fee never rises (its clients signed for that relay at that fee)"
    )]
    RelayFeeRaise { relay: String, current: u16 },

    #[error("{relay} is leaving already")]
    RelayLeaving { relay: String },

    #[error("{relay} has nothing to release before block time {release_at}")]
    RelayNotReleasable { relay: String, release_at: u64 },

    // Workers.
    #[error("worker key {worker} is not registered")]
    UnknownWorker { worker: String },

    #[error("worker key {worker} belongs to account {owner}")]
    NotOwner { worker: String, owner: String },

    #[error(
        "worker key {worker} is new: registering it needs its proof (a signature over register_bytes_v2 naming the owner)"
    )]
    MissingRegistrationProof { worker: String },

    #[error(
        "the registration proof is not a valid signature by {worker} naming account {owner} on this chain and contract"
    )]
    BadRegistrationProof { worker: String, owner: String },

    #[error("registering worker {worker} needs a bond of at least {min_bond}, got {amount}")]
    BondTooSmall { worker: String, amount: Uint128, min_bond: Uint128 },

    #[error("cannot unbond {requested}: worker {worker} has {bonded} bonded")]
    UnbondTooLarge { worker: String, requested: Uint128, bonded: Uint128 },

    #[error("worker {worker} has nothing unbonding to release")]
    NothingToRelease { worker: String },

    #[error("worker {worker} is still unbonding until {release_at} (now {now})")]
    StillUnbonding { worker: String, release_at: u64, now: u64 },

    // Jobs.
    #[error("job {job_id} already exists")]
    JobExists { job_id: u64 },

    #[error("job {job_id} not found")]
    JobNotFound { job_id: u64 },

    #[error("client {client} already opened job {job_id} with spec {spec_digest}: a signed deposit opens one job")]
    SpecAlreadyOpened { client: String, spec_digest: String, job_id: u64 },

    #[error("the client's deposit signature expired at {not_after} (now {now})")]
    DepositExpired { not_after: u64, now: u64 },

    #[error("the deposit is not a valid signature by client {client} over these terms, this relay, chain and contract")]
    BadDepositSignature { client: String },

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

    #[error(
        "task {job_id}/{index}: signers {worker} and {other} have the same owner {owner}, which counts once toward the quorum"
    )]
    SameOwner { job_id: u64, index: u32, worker: String, other: String, owner: String },

    #[error("task {job_id}/{index}: signer {worker} is not registered")]
    SignerNotRegistered { job_id: u64, index: u32, worker: String },

    #[error("task {job_id}/{index}: signer {worker} has {bonded} bonded, minimum is {min_bond}")]
    SignerNotBonded { job_id: u64, index: u32, worker: String, bonded: Uint128, min_bond: Uint128 },

    #[error(
        "task {job_id}/{index}: signer {worker} names its own hash on an exact job, where every signer signs the task's hash"
    )]
    SignerHashOnExactJob { job_id: u64, index: u32, worker: String },

    #[error("task {job_id}/{index}: no signer signed the delivered output hash")]
    ResultUnsigned { job_id: u64, index: u32 },

    #[error(
        "task {job_id}/{index}: signature by {worker} does not verify (v2 result bytes for this chain, contract and job)"
    )]
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
