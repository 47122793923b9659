//! Every type that crosses a Starling process boundary, and the exact bytes that get signed.
//!
//! - [`ids`] and [`bytes`]: identifiers, SHA-256 digests and keys, all hex on the wire.
//! - [`job`]: what a client posts (`JobSpec`) and its structural validation against [`limits`].
//! - [`worker`]: the worker WebSocket channel (`WorkerMessage` up, `RelayMessage` down) and
//!   worker capabilities.
//! - [`api`]: every view the REST API serves (jobs, tasks, workers, clients, escrow, health).
//! - [`events`]: live events pushed to clients watching jobs.
//! - [`page`]: the web app's page ↔ browser compute worker messages (`postMessage`).
//! - [`sign`]: domain-separated signed byte encodings (the escrow contract verifies the same bytes).
//! - [`upload`]: the signed headers that tie a blob upload to a client key or a worker's lease.
//! - [`error`]: the error codes every API and channel uses.
//!
//! No I/O here: the crate builds for native targets and `wasm32-unknown-unknown`.

pub mod api;
pub mod bytes;
pub mod error;
pub mod events;
pub mod ids;
pub mod job;
pub mod limits;
pub mod page;
pub mod sign;
pub mod upload;
pub mod worker;

pub use bytes::{Hash32, PublicKey, Signature, sha256};
pub use error::{ErrorBody, ErrorCode};
pub use ids::{JobId, LeaseId, TaskId};

/// Version of the worker protocol; a worker announcing another major version is refused.
pub const PROTOCOL_VERSION: u32 = 1;
