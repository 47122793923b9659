//! The engine's error type. Every failure a task can meet (bad parameters, invalid WGSL, device
//! limits, GPU errors) comes back as a value; nothing here panics on client input.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No wgpu adapter on any enabled backend.
    #[error("no GPU adapter found")]
    NoAdapter,
    /// The adapter refused to open a device.
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    /// The kernel refused the task: parameters, inputs, dispatch size or output size are wrong.
    #[error("kernel refused the task: {0}")]
    Kernel(String),
    /// Client WGSL failed validation or the binding convention.
    #[error("invalid WGSL at {0}")]
    Validation(#[from] WgslError),
    /// The task needs more than this device allows.
    #[error("task exceeds the device limits: {0}")]
    Exceeds(String),
    /// wgpu reported an error (validation, out of memory, internal) while compiling or running.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Reading the output back from the GPU failed.
    #[error("reading the output back failed: {0}")]
    Map(String),
    /// The device was lost; open a new [`crate::GpuContext`].
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// The browser engine could not fetch its own code for the task (a built-in's chunk): this
    /// worker's problem, not the task's.
    #[error("{0}")]
    CodeNotLoaded(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub use starling_kernels::WgslError;

impl From<starling_kernels::Error> for Error {
    fn from(e: starling_kernels::Error) -> Self {
        match e {
            starling_kernels::Error::Kernel(message) => Error::Kernel(message),
            starling_kernels::Error::Validation(e) => Error::Validation(e),
        }
    }
}
