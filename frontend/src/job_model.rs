//! What the pages know about jobs, and how a reading or a live event changes it: pure reducers,
//! tested natively. The job page keeps one [`JobModel`] and mirrors it into signals (one per task
//! cell, so an event redraws one cell, not thousands); the dashboard's list uses
//! [`apply_to_list`].
//!
//! Events can arrive twice or out of order (a reconnect replays a snapshot, a detail reading
//! races the event stream), so every change is idempotent: a task already failed is not counted
//! again, and verified counts only grow.

use crate::results::Progress;
use starling_protocol::Hash32;
use starling_protocol::JobId;
use starling_protocol::api::{JobDetail, JobSummary, ReplicaView, TaskState, TaskView};
use starling_protocol::events::JobEvent;
use starling_protocol::job::JobSpec;

/// One task as the grid shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub state: TaskState,
    pub output_hash: Option<Hash32>,
    pub replicas: Vec<ReplicaView>,
}

impl Cell {
    pub fn of(task: &TaskView) -> Cell {
        Cell { state: task.state, output_hash: task.output_hash, replicas: task.replicas.clone() }
    }
}

/// Which cells a change touched, for the page to redraw only those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cells {
    /// The task list itself is new (first reading, or a different length): rebuild the grid.
    Replaced,
    /// These cells changed, in task order.
    Changed(Vec<u32>),
}

impl Cells {
    fn none() -> Cells {
        Cells::Changed(Vec::new())
    }
}

/// One job as the page knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobModel {
    pub id: JobId,
    pub summary: Option<JobSummary>,
    pub spec: Option<JobSpec>,
    pub cells: Vec<Cell>,
    pub progress: Progress,
}

impl JobModel {
    pub fn new(id: JobId) -> JobModel {
        JobModel { id, summary: None, spec: None, cells: Vec::new(), progress: Progress::default() }
    }

    /// A full reading of the job (`GET /v1/jobs/{id}`) at `now_ms`.
    pub fn apply_detail(&mut self, detail: JobDetail, now_ms: u64) -> Cells {
        if detail.summary.id != self.id {
            return Cells::none();
        }
        let cells = if self.cells.len() == detail.tasks.len() {
            let mut changed = Vec::new();
            for (cell, task) in self.cells.iter_mut().zip(&detail.tasks) {
                let fresh = Cell::of(task);
                if *cell != fresh {
                    *cell = fresh;
                    changed.push(task.index);
                }
            }
            Cells::Changed(changed)
        } else {
            self.cells = detail.tasks.iter().map(Cell::of).collect();
            Cells::Replaced
        };
        match &self.summary {
            None => self.progress = Progress::from_summary(&detail.summary, now_ms),
            Some(_) => {
                self.progress.record(detail.summary.finished_at_ms.unwrap_or(now_ms), detail.summary.tasks_verified)
            }
        }
        if self.spec.is_none() {
            self.spec = Some(detail.spec);
        }
        self.summary = Some(detail.summary);
        cells
    }

    /// One live event at `now_ms`. Events of other jobs and of tasks this page does not know
    /// change nothing.
    pub fn apply_event(&mut self, event: JobEvent, now_ms: u64) -> Cells {
        match event {
            JobEvent::Snapshot { job } | JobEvent::JobDone { job } | JobEvent::JobFailed { job } => {
                if job.id != self.id {
                    return Cells::none();
                }
                self.progress.record(job.finished_at_ms.unwrap_or(now_ms), job.tasks_verified);
                self.summary = Some(job);
                Cells::none()
            }
            JobEvent::TaskVerified { task, output_hash, verified, .. } => {
                if task.job != self.id {
                    return Cells::none();
                }
                self.progress.record(now_ms, verified);
                if let Some(summary) = &mut self.summary {
                    summary.tasks_verified = summary.tasks_verified.max(verified);
                }
                let Some(cell) = self.cells.get_mut(task.index as usize) else { return Cells::none() };
                if cell.state == TaskState::Verified && cell.output_hash == Some(output_hash) {
                    return Cells::none();
                }
                cell.state = TaskState::Verified;
                cell.output_hash = Some(output_hash);
                Cells::Changed(vec![task.index])
            }
            JobEvent::TaskFailed { task, .. } => {
                if task.job != self.id {
                    return Cells::none();
                }
                let Some(cell) = self.cells.get_mut(task.index as usize) else { return Cells::none() };
                if cell.state == TaskState::Failed {
                    return Cells::none();
                }
                cell.state = TaskState::Failed;
                if let Some(summary) = &mut self.summary {
                    summary.tasks_failed += 1;
                }
                Cells::Changed(vec![task.index])
            }
        }
    }
}

/// One live event applied to the dashboard's job list; whether anything changed. The list has
/// no task cells, so a failed task counts once per event.
pub fn apply_to_list(list: &mut [JobSummary], event: JobEvent) -> bool {
    let id = match &event {
        JobEvent::Snapshot { job } | JobEvent::JobDone { job } | JobEvent::JobFailed { job } => job.id,
        JobEvent::TaskVerified { task, .. } | JobEvent::TaskFailed { task, .. } => task.job,
    };
    let Some(shown) = list.iter_mut().find(|j| j.id == id) else { return false };
    let before = shown.clone();
    match event {
        JobEvent::Snapshot { job } | JobEvent::JobDone { job } | JobEvent::JobFailed { job } => *shown = job,
        JobEvent::TaskVerified { verified, .. } => shown.tasks_verified = shown.tasks_verified.max(verified),
        JobEvent::TaskFailed { .. } => shown.tasks_failed += 1,
    }
    *shown != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::TaskId;
    use starling_protocol::api::JobState;
    use starling_protocol::job::{BuiltinKernel, KernelSpec};
    use starling_protocol::{PublicKey, sha256};

    const JOB: JobId = JobId(7);

    fn summary(verified: u32, failed: u32, state: JobState) -> JobSummary {
        JobSummary {
            id: JOB,
            label: "pi".into(),
            kernel: "monte_carlo_pi".into(),
            client: PublicKey([1; 32]),
            state,
            tasks_total: 3,
            tasks_verified: verified,
            tasks_failed: failed,
            created_at_ms: 1_000,
            finished_at_ms: None,
            failure: None,
        }
    }

    fn spec() -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "kernel": KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            "tasks": [],
        }))
        .expect("a minimal spec reads")
    }

    fn detail(states: &[TaskState]) -> JobDetail {
        let verified = states.iter().filter(|s| **s == TaskState::Verified).count() as u32;
        let failed = states.iter().filter(|s| **s == TaskState::Failed).count() as u32;
        JobDetail {
            summary: summary(verified, failed, JobState::Running),
            spec: spec(),
            tasks: states
                .iter()
                .enumerate()
                .map(|(i, &state)| TaskView {
                    index: i as u32,
                    state,
                    output_hash: (state == TaskState::Verified).then(|| sha256(&[i as u8])),
                    replicas: vec![],
                })
                .collect(),
        }
    }

    fn task(index: u32) -> TaskId {
        TaskId { job: JOB, index }
    }

    #[test]
    fn details_replace_the_grid_once_then_change_only_what_moved() {
        use TaskState::{Pending, Verified};
        let mut m = JobModel::new(JOB);
        assert_eq!(m.apply_detail(detail(&[Pending, Pending, Pending]), 2_000), Cells::Replaced);
        assert_eq!(m.cells.len(), 3);
        assert!(m.spec.is_some());
        assert_eq!(m.apply_detail(detail(&[Pending, Pending, Pending]), 3_000), Cells::Changed(vec![]));
        assert_eq!(m.apply_detail(detail(&[Verified, Pending, Verified]), 4_000), Cells::Changed(vec![0, 2]));
        assert_eq!(m.summary.as_ref().unwrap().tasks_verified, 2);
        assert_eq!(m.cells[2].output_hash, Some(sha256(&[2])));
        // Another job's reading changes nothing.
        let mut other = detail(&[Pending]);
        other.summary.id = JobId(8);
        assert_eq!(m.apply_detail(other, 5_000), Cells::Changed(vec![]));
        assert_eq!(m.cells.len(), 3);
    }

    #[test]
    fn events_change_one_cell_each_and_twice_is_once() {
        use TaskState::{Failed, Pending, Verified};
        let mut m = JobModel::new(JOB);
        m.apply_detail(detail(&[Pending, Pending, Pending]), 2_000);
        let verified = |index, verified| JobEvent::TaskVerified {
            task: task(index),
            output_hash: sha256(b"out"),
            verified,
            total: 3,
        };
        let failed = |index| JobEvent::TaskFailed { task: task(index), reason: "no agreement".into() };
        type Case = (&'static str, JobEvent, Cells, TaskState, u32, u32);
        let cases: Vec<Case> = vec![
            ("verified", verified(1, 1), Cells::Changed(vec![1]), Verified, 1, 0),
            ("verified again", verified(1, 1), Cells::Changed(vec![]), Verified, 1, 0),
            ("an older count does not go back", verified(1, 0), Cells::Changed(vec![]), Verified, 1, 0),
            ("failed", failed(2), Cells::Changed(vec![2]), Verified, 1, 1),
            ("failed again counts once", failed(2), Cells::Changed(vec![]), Verified, 1, 1),
            ("a task past the grid", failed(9), Cells::Changed(vec![]), Verified, 1, 1),
            (
                "another job's task",
                JobEvent::TaskFailed { task: TaskId { job: JobId(8), index: 0 }, reason: String::new() },
                Cells::Changed(vec![]),
                Verified,
                1,
                1,
            ),
        ];
        for (name, event, touched, cell1, verified, failed) in cases {
            assert_eq!(m.apply_event(event, 3_000), touched, "{name}");
            assert_eq!(m.cells[1].state, cell1, "{name}");
            let s = m.summary.as_ref().unwrap();
            assert_eq!((s.tasks_verified, s.tasks_failed), (verified, failed), "{name}");
        }
        assert_eq!(m.cells[2].state, Failed);
        assert_eq!(m.cells[0].state, Pending);
        // The job's end replaces the summary wholesale.
        let mut done = summary(2, 1, JobState::Done);
        done.finished_at_ms = Some(9_000);
        m.apply_event(JobEvent::JobDone { job: done.clone() }, 10_000);
        assert_eq!(m.summary, Some(done));
    }

    #[test]
    fn the_list_follows_events_of_the_jobs_it_shows() {
        let mut list = vec![summary(0, 0, JobState::Running)];
        assert!(apply_to_list(
            &mut list,
            JobEvent::TaskVerified { task: task(0), output_hash: sha256(b"o"), verified: 2, total: 3 }
        ));
        assert!(!apply_to_list(
            &mut list,
            JobEvent::TaskVerified { task: task(1), output_hash: sha256(b"o"), verified: 1, total: 3 }
        ));
        assert_eq!(list[0].tasks_verified, 2);
        assert!(apply_to_list(&mut list, JobEvent::TaskFailed { task: task(2), reason: String::new() }));
        assert_eq!(list[0].tasks_failed, 1);
        let elsewhere = JobEvent::TaskFailed { task: TaskId { job: JobId(99), index: 0 }, reason: String::new() };
        assert!(!apply_to_list(&mut list, elsewhere));
        let done = summary(3, 0, JobState::Done);
        assert!(apply_to_list(&mut list, JobEvent::JobDone { job: done.clone() }));
        assert_eq!(list[0], done);
    }
}
