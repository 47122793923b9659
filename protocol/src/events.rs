//! Live events pushed to a job's watchers (`GET /v1/jobs/{id}/events`, WebSocket JSON frames).

use crate::api::JobSummary;
use crate::bytes::Hash32;
use crate::ids::TaskId;
use serde::{Deserialize, Serialize};

/// Events on `GET /v1/jobs/{id}/events` (WebSocket, JSON text frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// First frame: where the job stands now.
    Snapshot {
        job: JobSummary,
    },
    TaskVerified {
        task: TaskId,
        output_hash: Hash32,
        verified: u32,
        total: u32,
    },
    TaskFailed {
        task: TaskId,
        reason: String,
    },
    JobDone {
        job: JobSummary,
    },
    JobFailed {
        job: JobSummary,
    },
}
