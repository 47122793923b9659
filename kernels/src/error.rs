//! The kernel library's errors: a task a kernel refuses, or client WGSL that fails validation.
//! Both are values; nothing here panics on client input.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The kernel refused the task: parameters, inputs, dispatch size or output size are wrong.
    #[error("kernel refused the task: {0}")]
    Kernel(String),
    /// Client WGSL failed validation or the binding convention.
    #[error("invalid WGSL at {0}")]
    Validation(#[from] WgslError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A problem in client WGSL, located in its source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct WgslError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in bytes.
    pub column: u32,
    pub message: String,
}
