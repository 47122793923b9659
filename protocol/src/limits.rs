//! Bounds on everything a client or worker can send. The relay refuses anything beyond them
//! before storing it; workers refuse assignments beyond their own device limits.

/// Largest JSON body accepted for a job submission.
pub const MAX_SPEC_BYTES: usize = 1 << 20;
/// Tasks per job.
pub const MAX_TASKS: usize = 4096;
/// Inputs bound per task (bindings 1..=N), blobs and other tasks' outputs together: also the
/// most tasks one task may depend on (a reduction tree's fan-in).
pub const MAX_INPUTS_PER_TASK: usize = 6;
/// Kernels per job: its `kernel` and at most this many less one in `kernels`.
pub const MAX_KERNELS_PER_JOB: usize = 8;
/// Longest chain of tasks each reading the one before (a training run's rounds): every level
/// waits for the one before it to be verified.
pub const MAX_DEPENDENCY_DEPTH: usize = 256;
/// 32-bit words of uniform parameters per task (binding 0).
pub const MAX_PARAM_WORDS: usize = 64;
/// Largest blob (input or output) the relay stores.
pub const MAX_BLOB_BYTES: u64 = 64 << 20;
/// Largest output a task may declare.
pub const MAX_OUTPUT_BYTES: u32 = 64 << 20;
/// Largest custom WGSL source.
pub const MAX_WGSL_BYTES: usize = 64 << 10;
/// Dispatches in one pipeline kernel.
pub const MAX_STAGES: usize = 16;
/// Named intermediate buffers of one pipeline kernel.
pub const MAX_PIPELINE_BUFFERS: usize = 16;
/// All of a pipeline's intermediate buffers together, in bytes.
pub const MAX_PIPELINE_BUFFER_BYTES: u64 = 128 << 20;
/// Longest intermediate buffer name.
pub const MAX_BUFFER_NAME_LEN: usize = 32;
/// Most custom WGSL in one job, all its kernels together (each is validated at submission).
pub const MAX_JOB_WGSL_BYTES: usize = 128 << 10;
/// Longest entry point name.
pub const MAX_ENTRY_POINT_LEN: usize = 64;
/// Longest job label.
pub const MAX_LABEL_LEN: usize = 128;
/// Workgroups per dispatch dimension (WebGPU's guaranteed minimum).
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65_535;
/// Replicas per task, including those added after a disagreement.
pub const MAX_REPLICAS: u8 = 7;
/// Largest WebSocket frame accepted from a worker or client.
pub const MAX_WS_FRAME_BYTES: usize = 256 << 10;
/// Longest free-text reason a worker can attach to a failure.
pub const MAX_REASON_LEN: usize = 512;
/// Longest deadline a job may ask for, in seconds from submission.
pub const MAX_DEADLINE_SECS: u64 = 7 * 24 * 3600;

/// Longest chain address or contract address accepted in protocol messages (bech32 addresses
/// are at most 90 characters).
pub const MAX_ADDRESS_LEN: usize = 128;

/// Largest output a worker may send inline in its `result` message instead of uploading it:
/// base64 makes it 4/3 as large, still far below [`MAX_WS_FRAME_BYTES`].
pub const MAX_INLINE_OUTPUT_BYTES: usize = 16 << 10;
