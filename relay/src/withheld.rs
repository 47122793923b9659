//! Outputs nobody may read before their task is decided. A worker that could fetch another's
//! output (or learn that some bytes were returned) before the decision could report it instead of
//! computing, so `GET /v1/blobs/{hash}` refuses the outputs of undecided tasks as if they were
//! absent, and a job may not name one as its input (which would publish it).
//!
//! The driver keeps this index from the core's writes: a returned result is hidden before its
//! batch commits, and revealed only after the decision commits. Inputs of running jobs stay
//! readable even when some task's output has the same bytes: their workers must fetch them, and
//! the client published them; so do the verified outputs of a running job's decided tasks, which
//! the tasks that read them (`{"task": N}` inputs) must fetch, and which anyone may read anyway.
//! Otherwise a worker could hide a verified input from the other replicas of a task that reads it
//! by returning the same bytes for that task, so that they fail to fetch it.

use crate::core::Write;
use starling_protocol::{Hash32, JobId, TaskId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;

#[derive(Debug, Default)]
struct Index {
    /// The outputs returned for each undecided task (one entry per result).
    returned: BTreeMap<TaskId, Vec<Hash32>>,
    /// How many undecided results name each output.
    outputs: HashMap<Hash32, u32>,
    /// The distinct inputs of each running job.
    inputs: HashMap<JobId, Vec<Hash32>>,
    /// How many running jobs name each input.
    input_jobs: HashMap<Hash32, u32>,
    /// Outputs of undecided tasks that a client uploaded as its own: it holds the bytes, so
    /// they read as any upload of its would (forgotten with the last result naming them).
    published: HashSet<Hash32>,
}

/// Adds one to `hash`'s count.
fn count_up(counts: &mut HashMap<Hash32, u32>, hash: Hash32) {
    *counts.entry(hash).or_default() += 1;
}

/// Takes one from `hash`'s count, forgetting it at zero.
fn count_down(counts: &mut HashMap<Hash32, u32>, hash: &Hash32) {
    if let Some(n) = counts.get_mut(hash) {
        *n -= 1;
        if *n == 0 {
            counts.remove(hash);
        }
    }
}

impl Index {
    fn decided(&mut self, task: &TaskId) {
        for hash in self.returned.remove(task).unwrap_or_default() {
            count_down(&mut self.outputs, &hash);
            if !self.outputs.contains_key(&hash) {
                self.published.remove(&hash);
            }
        }
    }
}

/// Returned outputs of undecided tasks, and inputs of running jobs. Bounded by what the core
/// holds: results of its open tasks, specs of its running jobs.
#[derive(Debug, Default)]
pub struct Withheld {
    index: RwLock<Index>,
}

impl Withheld {
    /// A job runs: its inputs are public.
    pub fn job_running(&self, job: JobId, inputs: impl IntoIterator<Item = Hash32>) {
        let mut index = self.index.write().expect("withheld lock");
        let mut distinct: Vec<Hash32> = inputs.into_iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        for hash in &distinct {
            count_up(&mut index.input_jobs, *hash);
        }
        if let Some(old) = index.inputs.insert(job, distinct) {
            for hash in &old {
                count_down(&mut index.input_jobs, hash);
            }
        }
    }

    /// `task` was verified with `output`: readable as an input of its job while the job runs.
    pub fn verified(&self, task: TaskId, output: Hash32) {
        let mut index = self.index.write().expect("withheld lock");
        let Some(inputs) = index.inputs.get_mut(&task.job) else { return };
        if let Err(at) = inputs.binary_search(&output) {
            inputs.insert(at, output);
            count_up(&mut index.input_jobs, output);
        }
    }

    /// A result for `task` named `output`: hidden until the task is decided.
    pub fn returned(&self, task: TaskId, output: Hash32) {
        let mut index = self.index.write().expect("withheld lock");
        index.returned.entry(task).or_default().push(output);
        count_up(&mut index.outputs, output);
    }

    /// `task` was verified or failed: its results may be seen.
    pub fn decided(&self, task: TaskId) {
        self.index.write().expect("withheld lock").decided(&task);
    }

    /// `job` finished: whatever of it was still undecided is over, and its inputs are no longer
    /// served on its behalf.
    pub fn job_finished(&self, job: JobId) {
        let mut index = self.index.write().expect("withheld lock");
        let tasks: Vec<TaskId> = index
            .returned
            .range(TaskId { job, index: 0 }..=TaskId { job, index: u32::MAX })
            .map(|(task, _)| *task)
            .collect();
        for task in &tasks {
            index.decided(task);
        }
        for hash in index.inputs.remove(&job).unwrap_or_default() {
            count_down(&mut index.input_jobs, &hash);
        }
    }

    /// A client uploaded `hash`'s bytes as its input, proving it holds them: answering as if
    /// they were absent would now tell it that someone returned them.
    pub fn publish(&self, hash: Hash32) {
        let mut index = self.index.write().expect("withheld lock");
        if index.outputs.contains_key(&hash) {
            index.published.insert(hash);
        }
    }

    /// Whether `hash` is the output of an undecided task, neither an input of a running job nor
    /// uploaded by a client that holds it.
    pub fn hides(&self, hash: &Hash32) -> bool {
        let index = self.index.read().expect("withheld lock");
        index.outputs.contains_key(hash) && !index.input_jobs.contains_key(hash) && !index.published.contains(hash)
    }

    /// Before a batch commits: hides the results it records.
    pub fn before_commit(&self, writes: &[Write]) {
        for w in writes {
            if let Write::Returned(row) = w {
                self.returned(row.task, row.output_hash);
            }
        }
    }

    /// After a batch committed: reveals what it decided, and the inputs of the jobs it opened.
    pub fn after_commit(&self, writes: &[Write]) {
        for w in writes {
            match w {
                Write::InsertJob { id, job, .. } => {
                    self.job_running(*id, job.spec.tasks.iter().flat_map(|t| t.blobs()))
                }
                Write::VerifyTask { task, output_hash, .. } => {
                    self.decided(*task);
                    self.verified(*task, *output_hash);
                }
                Write::FailTask { task, .. } => self.decided(*task),
                Write::FinishJob { job, .. } => self.job_finished(*job),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::sha256;

    /// A worker that returns a verified input's bytes for the task reading it cannot hide that
    /// input from the task's other replicas (which would fail to fetch it and give up the task).
    #[test]
    fn a_verified_output_stays_readable_while_its_job_runs() {
        let w = Withheld::default();
        let (x, y) = (TaskId { job: JobId(1), index: 0 }, TaskId { job: JobId(1), index: 1 });
        let out = sha256(b"x's output");
        w.job_running(JobId(1), []);
        w.returned(x, out);
        assert!(w.hides(&out), "undecided: hidden");
        w.after_commit(&[Write::VerifyTask { task: x, output_hash: out, at_ms: 0 }]);
        assert!(!w.hides(&out));
        // Task y reads x's output; a worker returns those bytes as y's result.
        w.returned(y, out);
        assert!(!w.hides(&out), "still readable by y's other replicas");
        w.after_commit(&[Write::FinishJob {
            job: JobId(1),
            state: starling_protocol::api::JobState::Done,
            failure: None,
            at_ms: 0,
        }]);
        assert!(!w.hides(&out) && w.index.read().unwrap().input_jobs.is_empty(), "nothing left behind");
        // A verification for a job that is not running leaves nothing either.
        w.verified(TaskId { job: JobId(9), index: 0 }, out);
        assert!(w.index.read().unwrap().input_jobs.is_empty());
    }

    #[test]
    fn outputs_stay_hidden_until_their_task_is_decided() {
        let w = Withheld::default();
        let task = |job, index| TaskId { job: JobId(job), index };
        let (a, b, c, input) = (sha256(b"a"), sha256(b"b"), sha256(b"c"), sha256(b"input"));
        w.job_running(JobId(1), [input, input]);
        /// What happens, which hashes are hidden after it.
        type Step<'a> = (&'a str, &'a dyn Fn(), &'a [Hash32]);
        let steps: [Step<'_>; 11] = [
            ("a result returned", &|| w.returned(task(1, 0), a), &[a]),
            ("another task returns the same bytes", &|| w.returned(task(1, 1), a), &[a]),
            ("the first task is decided: the second still hides them", &|| w.decided(task(1, 0)), &[a]),
            ("a result with a running job's input bytes", &|| w.returned(task(1, 2), input), &[a]),
            ("two results in another job", &|| [b, c].into_iter().for_each(|h| w.returned(task(2, 0), h)), &[a, b, c]),
            ("a client uploads b's bytes itself", &|| w.publish(b), &[a, c]),
            ("that job finishes with its task undecided", &|| w.job_finished(JobId(2)), &[a]),
            ("b returned again: its earlier publication is forgotten", &|| w.returned(task(4, 0), b), &[a, b]),
            ("publishing what no undecided result names", &|| w.publish(c), &[a, b]),
            (
                "the job with the input finishes",
                &|| [JobId(1), JobId(4)].into_iter().for_each(|j| w.job_finished(j)),
                &[],
            ),
            ("a decision for a task nobody returned", &|| w.decided(task(3, 0)), &[]),
        ];
        for (case, step, hidden) in steps {
            step();
            for hash in [a, b, c, input] {
                assert_eq!(w.hides(&hash), hidden.contains(&hash), "{case}: {hash}");
            }
        }
        let index = w.index.read().unwrap();
        assert!(index.returned.is_empty() && index.outputs.is_empty(), "nothing is kept for finished jobs");
        assert!(index.inputs.is_empty() && index.input_jobs.is_empty() && index.published.is_empty());
    }
}
