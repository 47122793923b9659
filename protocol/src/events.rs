//! Views served by the REST API and live events pushed to clients.

use crate::bytes::{Hash32, PublicKey};
use crate::ids::{JobId, TaskId};
use crate::job::JobSpec;
use crate::sign::SignedJob;
use crate::worker::Capabilities;
use serde::{Deserialize, Serialize};

/// A job's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

/// A task's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Verified,
    Failed,
}

/// A replica's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Leased to a worker, no answer yet.
    Leased,
    /// The worker returned a signed result not yet compared.
    Returned,
    /// Agreed with the quorum.
    Accepted,
    /// Disagreed with the quorum; its signed hash is kept as evidence.
    Rejected,
    /// The lease lapsed or the worker gave up.
    Lapsed,
    /// Cancelled because the task was decided without it.
    Cancelled,
}

/// `POST /v1/jobs` answer and the summary line of job lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: JobId,
    pub label: String,
    pub kernel: String,
    pub client: PublicKey,
    pub state: JobState,
    pub tasks_total: u32,
    pub tasks_verified: u32,
    pub tasks_failed: u32,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub failure: Option<String>,
}

/// `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub spec: JobSpec,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub index: u32,
    pub state: TaskState,
    pub output_hash: Option<Hash32>,
    pub replicas: Vec<ReplicaView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub worker: PublicKey,
    pub state: ReplicaState,
    pub output_hash: Option<Hash32>,
}

/// `GET /v1/workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    pub key: PublicKey,
    pub online: bool,
    pub capabilities: Option<Capabilities>,
    pub replicas_returned: u64,
    pub replicas_accepted: u64,
    pub replicas_rejected: u64,
    pub last_seen_ms: u64,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub workers_online: u64,
    pub jobs_running: u64,
}

/// `POST /v1/jobs` body.
pub type SubmitJob = SignedJob;

/// Events on `GET /v1/jobs/{id}/events` (WebSocket, JSON text frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// First frame: where the job stands now.
    Snapshot { job: JobSummary },
    TaskVerified { task: TaskId, output_hash: Hash32, verified: u32, total: u32 },
    TaskFailed { task: TaskId, reason: String },
    JobDone { job: JobSummary },
    JobFailed { job: JobSummary },
}
