//! The relay's error type, and the one `ApiError` every HTTP handler returns.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use starling_protocol::{ErrorBody, ErrorCode};

/// Internal failures of the relay's own machinery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A setting the relay cannot start with.
    #[error("configuration: {0}")]
    Config(String),
    /// Another relay leads the cluster now: this one must stop deciding.
    #[error("another relay leads the cluster now (this relay led epoch {0})")]
    Fenced(i64),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob store: {0}")]
    Blobs(#[from] object_store::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the relay is shutting down")]
    ShuttingDown,
    /// A bound on running work was reached; the client may retry later.
    #[error("{0}")]
    Limit(String),
    /// The request repeats one already taken (a replayed signed job).
    #[error("{0}")]
    Duplicate(String),
    #[error("escrow: {0}")]
    Escrow(#[from] crate::escrow::EscrowError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// An error answer: the code and a message the client may see. Internal details are logged,
/// never sent.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ErrorBody::new(code, message))
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::ShuttingDown => ApiError::new(ErrorCode::Internal, "the relay is shutting down"),
            Error::Limit(message) => ApiError::new(ErrorCode::RateLimited, message),
            Error::Duplicate(message) => ApiError::new(ErrorCode::Conflict, message),
            Error::Escrow(e) => e.into(),
            other => {
                tracing::error!(error = %other, "internal error while serving a request");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<crate::escrow::EscrowError> for ApiError {
    fn from(e: crate::escrow::EscrowError) -> Self {
        use crate::escrow::EscrowError;
        match e {
            EscrowError::InsufficientFunds(m) => ApiError::new(ErrorCode::InsufficientFunds, m),
            EscrowError::Refused(m) => ApiError::new(ErrorCode::EscrowRefused, m),
            EscrowError::Unavailable(m) => {
                tracing::warn!(error = %m, "escrow unavailable");
                ApiError::new(ErrorCode::EscrowUnavailable, "the escrow is unavailable; retry later")
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}
