//! Starling's escrow contract (CosmWasm): clients lock a deposit per job, workers bond stake
//! under an ed25519 key, the relay settles verified tasks in batches with the workers' own
//! signatures (checked here with one batched ed25519 verification), provable contradictions
//! are slashed, and what was not paid out goes back to the client after the deadline.
//!
//! - [`msg`]: the message API (and the bytes a worker key signs to register).
//! - [`contract`]: entry points and `execute_*` / `query_*` handlers.
//! - [`state`]: stored records, with their money arithmetic and status transitions as plain
//!   methods; the fee, deposit, refund and slash formulas are documented there.
//! - [`error`]: every refusal, naming the job, task and signer at fault.
//!
//! Signed result bytes come from `starling_protocol::sign::result_bytes`, the same function
//! workers sign with, so the contract and the workers cannot disagree on the encoding.
//!
//! The `library` feature turns the wasm entry points off for crates that link this one.

pub mod contract;
pub mod error;
pub mod msg;
pub mod state;

pub use crate::error::ContractError;
