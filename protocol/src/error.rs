//! Error codes shared by the REST API (`{code, message}` bodies) and protocol error frames.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes. Clients branch on these; messages are for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    #[error("malformed request")]
    Malformed,
    #[error("invalid job spec")]
    InvalidSpec,
    #[error("unknown kernel")]
    UnknownKernel,
    #[error("invalid WGSL")]
    InvalidWgsl,
    #[error("too large")]
    TooLarge,
    #[error("bad signature")]
    BadSignature,
    #[error("hash mismatch")]
    HashMismatch,
    #[error("not found")]
    NotFound,
    #[error("out of order")]
    OutOfOrder,
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    #[error("lease not held")]
    LeaseNotHeld,
    #[error("conflict")]
    Conflict,
    #[error("rate limited")]
    RateLimited,
    /// The client's escrow account cannot pay the job's deposit.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// The escrow refused the request (for example a worker registration).
    #[error("escrow refused")]
    EscrowRefused,
    /// The escrow (ledger or chain) cannot be reached now; retry later.
    #[error("escrow unavailable")]
    EscrowUnavailable,
    /// The relay cannot serve the request now (a cluster between leaders); retry shortly.
    #[error("unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code maps to on the REST API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Malformed
            | ErrorCode::InvalidSpec
            | ErrorCode::UnknownKernel
            | ErrorCode::InvalidWgsl
            | ErrorCode::HashMismatch
            | ErrorCode::OutOfOrder
            | ErrorCode::UnsupportedVersion
            | ErrorCode::LeaseNotHeld => 400,
            ErrorCode::BadSignature => 401,
            ErrorCode::InsufficientFunds => 402,
            ErrorCode::EscrowRefused => 422,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::EscrowUnavailable | ErrorCode::Unavailable => 503,
        }
    }
}

/// The JSON body of every error response, and the payload of protocol error frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// [`ErrorBody`] as a client reads it: the code as text, so a code newer than the client still
/// reads (the web app shows the message and keys on the codes it knows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Errors from decoding protocol values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what} must be {expected_len} bytes of hex")]
    Hex { what: &'static str, expected_len: usize },
}
