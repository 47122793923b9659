//! Starling's escrow contract (CosmWasm). Accounts are ed25519 keys: money moves out of one only
//! with that key's signature, checked here, whoever submits the message. Clients fund their own
//! jobs with a signed deposit, workers bond stake from their owner's account under keys that
//! consented, the relay settles verified tasks in batches with the workers' own signatures
//! (bound to this chain, this contract and the job's spec digest; checked with one batched
//! ed25519 verification, counting each owner once), provable contradictions on exact jobs are
//! slashed and burned, and what was not paid out returns to the client's account.
//!
//! - [`msg`]: the message API, and the signed bytes in the contract's types.
//! - [`contract`]: entry points and `execute_*` / `query_*` handlers.
//! - [`state`]: stored records, with their money arithmetic and status transitions as plain
//!   methods; the fee, deposit, refund, slash and conservation rules are documented there.
//! - [`error`]: every refusal, naming the account, job, task and signer at fault.
//!
//! Every signed byte string comes from `starling_protocol::sign`, the same functions workers,
//! clients and the relay sign with, so they and the contract cannot disagree on an encoding.
//!
//! The `library` feature turns the wasm entry points off for crates that link this one.

pub mod contract;
pub mod error;
pub mod msg;
pub mod state;

pub use crate::error::ContractError;
