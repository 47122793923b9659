//! Which tasks of a job may run: a task that reads other tasks' outputs
//! ([`TaskInput::Output`]) is held back until every one of them is verified, then bound to the
//! outputs their replicas agreed on; when one of them fails, every task downstream of it fails
//! too, since it could never run. Pure bookkeeping, no I/O: the core asks it and acts.
//!
//! The graph was checked at submission ([`starling_protocol::job::JobSpec::dependency_depths`]:
//! every named task exists, no cycles, bounded depth and fan-in), so it is a DAG here.

use starling_protocol::Hash32;
use starling_protocol::job::{JobSpec, TaskInput, TaskSpec};
use std::collections::{BTreeSet, HashMap, HashSet};

/// A job's dependencies as they resolve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskGraph {
    /// The tasks that read each task's output (each once).
    readers: HashMap<u32, Vec<u32>>,
    /// Tasks held back, with how many distinct tasks they still wait for.
    waiting: HashMap<u32, usize>,
    /// Verified outputs that other tasks read.
    outputs: HashMap<u32, Hash32>,
}

impl TaskGraph {
    /// The graph of `spec`'s dependencies, `None` when no task reads another (so a job without
    /// dependencies costs nothing).
    pub fn new(spec: &JobSpec) -> Option<Self> {
        if !spec.has_dependencies() {
            return None;
        }
        let mut graph = TaskGraph::default();
        for (i, task) in spec.tasks.iter().enumerate() {
            let deps: BTreeSet<u32> = task.depends_on().collect();
            if deps.is_empty() {
                continue;
            }
            graph.waiting.insert(i as u32, deps.len());
            for d in deps {
                graph.readers.entry(d).or_default().push(i as u32);
            }
        }
        Some(graph)
    }

    /// Whether `task` still waits for an input.
    pub fn is_waiting(&self, task: u32) -> bool {
        self.waiting.contains_key(&task)
    }

    /// Whether another task reads `task`'s output.
    pub fn has_readers(&self, task: u32) -> bool {
        self.readers.contains_key(&task)
    }

    /// How many tasks wait for an input.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// `task` was verified with `output`: returns the tasks that this releases (every input of
    /// theirs is now verified), in index order.
    pub fn verified(&mut self, task: u32, output: Hash32) -> Vec<u32> {
        let Some(readers) = self.readers.get(&task) else {
            return Vec::new();
        };
        if self.outputs.insert(task, output).is_some() {
            // Verified once only; a second call releases nothing twice.
            return Vec::new();
        }
        let mut released = Vec::new();
        for r in readers {
            if let Some(n) = self.waiting.get_mut(r) {
                *n -= 1;
                if *n == 0 {
                    self.waiting.remove(r);
                    released.push(*r);
                }
            }
        }
        released.sort_unstable();
        released
    }

    /// `task` failed: returns every task downstream of it that has not run (they can never
    /// have their inputs), in index order, and stops holding them.
    pub fn failed(&mut self, task: u32) -> Vec<u32> {
        let mut doomed = BTreeSet::new();
        let mut next = vec![task];
        let mut seen = HashSet::from([task]);
        while let Some(t) = next.pop() {
            for &r in self.readers.get(&t).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(r) && self.waiting.remove(&r).is_some() {
                    doomed.insert(r);
                    next.push(r);
                }
            }
        }
        doomed.into_iter().collect()
    }

    /// The blobs a released task binds, in order: its own blobs and the verified outputs of the
    /// tasks it reads. `None` while any of those is not verified.
    pub fn resolve(&self, task: &TaskSpec) -> Option<Vec<Hash32>> {
        task.inputs
            .iter()
            .map(|input| match input {
                TaskInput::Blob(h) => Some(*h),
                TaskInput::Output(o) => self.outputs.get(&o.task).copied(),
            })
            .collect()
    }
}

/// The blobs `spec`'s task `index` binds, given its graph (`None`: the job has no dependencies,
/// so every input is a blob). `None` while an input is not verified, or for no such task.
pub fn resolve(spec: &JobSpec, graph: Option<&TaskGraph>, index: u32) -> Option<Vec<Hash32>> {
    let task = spec.tasks.get(index as usize)?;
    match graph {
        Some(g) => g.resolve(task),
        None => task.inputs.iter().map(TaskInput::blob).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::bytes::sha256;
    use starling_protocol::job::{BuiltinKernel, Comparison, KernelSpec, OutputOf};

    /// `n` tasks; task `i` reads the outputs in `edges[i]` after the blob `sha256([i])`.
    fn spec(n: usize, edges: &[(usize, &[u32])]) -> JobSpec {
        let mut tasks: Vec<TaskSpec> = (0..n)
            .map(|i| TaskSpec {
                params: vec![],
                inputs: vec![TaskInput::Blob(sha256(&[i as u8]))],
                workgroups: [1, 1, 1],
                output_size: 4,
                kernel: 0,
            })
            .collect();
        for (i, deps) in edges {
            tasks[*i].inputs.extend(deps.iter().map(|&task| TaskInput::Output(OutputOf { task })));
        }
        JobSpec {
            label: String::new(),
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            kernels: vec![],
            tasks,
            comparison: Comparison::Exact,
            replicas: 2,
            quorum: 2,
            max_replicas: 4,
            price_per_replica: 0,
            deadline_secs: 60,
            homogeneous: false,
            nonce: 0,
            adaptive: None,
        }
    }

    fn out(i: u8) -> Hash32 {
        sha256(&[b'o', i])
    }

    #[test]
    fn a_job_without_dependencies_has_no_graph_and_binds_its_blobs() {
        let s = spec(2, &[]);
        assert_eq!(TaskGraph::new(&s), None);
        assert_eq!(resolve(&s, None, 1), Some(vec![sha256(&[1])]));
        assert_eq!(resolve(&s, None, 2), None);
    }

    #[test]
    fn release_table() {
        // A reduction tree: 0..4 leaves, 4 sums 0 and 1 (1 read twice), 5 sums 2 and 3, 6 sums
        // 4 and 5.
        let s = spec(7, &[(4, &[0, 1, 1]), (5, &[2, 3]), (6, &[4, 5])]);
        let mut g = TaskGraph::new(&s).unwrap();
        assert_eq!(g.waiting(), 3);
        assert!(g.is_waiting(4) && g.is_waiting(6) && !g.is_waiting(0));
        assert_eq!(g.resolve(&s.tasks[4]), None, "nothing to bind before its inputs are verified");
        let steps: &[(u32, &[u32])] = &[(1, &[]), (1, &[]), (0, &[4]), (3, &[]), (2, &[5]), (5, &[]), (4, &[6])];
        for &(task, want) in steps {
            assert_eq!(g.verified(task, out(task as u8)), want, "verifying {task}");
        }
        assert_eq!(g.waiting(), 0);
        assert_eq!(g.resolve(&s.tasks[4]), Some(vec![sha256(&[4]), out(0), out(1), out(1)]));
        assert_eq!(resolve(&s, Some(&g), 6), Some(vec![sha256(&[6]), out(4), out(5)]));
        // A task nobody reads leaves nothing behind.
        assert_eq!(g.verified(6, out(6)), Vec::<u32>::new());
        assert!(!g.outputs.contains_key(&6));
    }

    #[test]
    fn a_failure_dooms_everything_downstream_and_nothing_else() {
        // Rounds: 0 -> 2 -> 4, 1 -> 2, 3 -> 4 and 5 reads 3 only.
        let s = spec(6, &[(2, &[0, 1]), (4, &[2, 3]), (5, &[3])]);
        let mut g = TaskGraph::new(&s).unwrap();
        assert_eq!(g.verified(3, out(3)), vec![5]);
        assert_eq!(g.failed(1), vec![2, 4]);
        assert_eq!(g.waiting(), 0);
        assert_eq!(g.verified(0, out(0)), Vec::<u32>::new(), "a doomed task is never released");
        assert_eq!(g.failed(5), Vec::<u32>::new());
    }
}
