//! The leases held right now, readable outside the core: a worker may store an output blob
//! (uploaded, or inline in its result) only for a lease it holds, of exactly the task's declared
//! size, and only one per lease. The core writes this book where it hands out and ends leases;
//! connections and HTTP handlers read it without asking the core.
//!
//! The book also says which output a lease's own upload stored: a result counts only with the
//! worker's own upload of the output it signed ([`LeaseBook::uploaded`]), so a worker that
//! learned someone else's hash gains nothing by reporting it.

use starling_protocol::{Hash32, JobId, LeaseId, PublicKey, TaskId};
use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

/// One held lease: who holds it and what output it may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    pub worker: PublicKey,
    pub task: TaskId,
    /// The task's declared output size: the only length an output for this lease may have.
    pub output_size: u64,
}

/// Why a worker may not store an output for a lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputRefused {
    #[error("lease {0} is not held by this worker")]
    NotHeld(LeaseId),
    #[error("lease {lease}: output is {len} bytes, the task declares {declared}")]
    WrongSize { lease: LeaseId, len: u64, declared: u64 },
    #[error("lease {lease} already stored output {stored}; one output per lease")]
    AlreadyStored { lease: LeaseId, stored: Hash32 },
}

/// The output a lease's worker is storing or has stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Output {
    hash: Hash32,
    /// The blob is whole on disk (not merely an upload in flight).
    stored: bool,
}

/// The held leases, with an index by job.
#[derive(Debug, Default)]
struct Book {
    held: HashMap<LeaseId, (HeldLease, Option<Output>)>,
    by_job: BTreeSet<(JobId, LeaseId)>,
}

#[derive(Debug, Default)]
pub struct LeaseBook {
    held: RwLock<Book>,
}

impl LeaseBook {
    /// The core handed `lease` out.
    pub fn insert(&self, lease: LeaseId, held: HeldLease) {
        let mut book = self.held.write().expect("lease book lock");
        if let Some((old, _)) = book.held.insert(lease, (held, None)) {
            book.by_job.remove(&(old.task.job, lease));
        }
        book.by_job.insert((held.task.job, lease));
    }

    /// The lease ended (returned, lapsed, failed, declined, cancelled).
    pub fn remove(&self, lease: LeaseId) {
        let mut book = self.held.write().expect("lease book lock");
        if let Some((old, _)) = book.held.remove(&lease) {
            book.by_job.remove(&(old.task.job, lease));
        }
    }

    pub fn get(&self, lease: LeaseId) -> Option<HeldLease> {
        self.held.read().expect("lease book lock").held.get(&lease).map(|(held, _)| *held)
    }

    /// The open leases of one job, in lease order: a range of the job index, so a stranger
    /// reading job views costs what the job holds, not what the whole relay holds.
    pub fn of_job(&self, job: JobId) -> Vec<(LeaseId, HeldLease)> {
        let book = self.held.read().expect("lease book lock");
        book.by_job
            .range((job, LeaseId(0))..=(job, LeaseId(u64::MAX)))
            .filter_map(|(_, id)| book.held.get(id).map(|(h, _)| (*id, *h)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.held.read().expect("lease book lock").held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Charges `blob` of `len` bytes to `lease` held by `worker`, once: the same blob again is
    /// allowed (a retried upload), another blob is refused. `task` is checked when known (the
    /// inline path has it; an HTTP upload names only the lease). Then [`LeaseBook::confirm`] once
    /// the blob is stored, or [`LeaseBook::uncharge`] if it is not.
    pub fn charge(
        &self,
        lease: LeaseId,
        worker: &PublicKey,
        task: Option<TaskId>,
        blob: &Hash32,
        len: u64,
    ) -> Result<(), OutputRefused> {
        let mut book = self.held.write().expect("lease book lock");
        let held = &mut book.held;
        let Some((entry, stored)) =
            held.get_mut(&lease).filter(|(h, _)| h.worker == *worker && task.is_none_or(|t| t == h.task))
        else {
            return Err(OutputRefused::NotHeld(lease));
        };
        if len != entry.output_size {
            return Err(OutputRefused::WrongSize { lease, len, declared: entry.output_size });
        }
        match stored {
            Some(stored) if stored.hash != *blob => Err(OutputRefused::AlreadyStored { lease, stored: stored.hash }),
            Some(_) => Ok(()),
            None => {
                *stored = Some(Output { hash: *blob, stored: false });
                Ok(())
            }
        }
    }

    /// The charged blob is whole on disk: from now on it is this lease's upload.
    pub fn confirm(&self, lease: LeaseId, blob: &Hash32) {
        if let Some((_, Some(output))) = self.held.write().expect("lease book lock").held.get_mut(&lease)
            && output.hash == *blob
        {
            output.stored = true;
        }
    }

    /// The charged blob was not stored after all (the body broke off, or failed its hash). An
    /// upload already confirmed stays: a failed retry does not undo the blob on disk.
    pub fn uncharge(&self, lease: LeaseId, blob: &Hash32) {
        if let Some((_, stored)) = self.held.write().expect("lease book lock").held.get_mut(&lease)
            && stored.is_some_and(|o| o.hash == *blob && !o.stored)
        {
            *stored = None;
        }
    }

    /// The output `worker`'s own upload stored for `lease` it holds, and the task's declared
    /// size: what a result without inline output may report, and nothing else. An upload still
    /// in flight does not count (its body may yet fail its hash), nor does the same blob stored
    /// by anyone else.
    pub fn uploaded(&self, lease: LeaseId, worker: &PublicKey) -> Option<(Hash32, u64)> {
        let book = self.held.read().expect("lease book lock");
        match book.held.get(&lease)? {
            (held, Some(output)) if held.worker == *worker && output.stored => Some((output.hash, held.output_size)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::{JobId, sha256};

    #[test]
    fn a_jobs_open_leases_come_from_its_own_index() {
        let book = LeaseBook::default();
        let worker = PublicKey([1; 32]);
        let held = |job, index| HeldLease { worker, task: TaskId { job: JobId(job), index }, output_size: 8 };
        for (lease, job, index) in [(5, 2, 0), (3, 1, 0), (4, 2, 1), (9, 3, 0)] {
            book.insert(LeaseId(lease), held(job, index));
        }
        let ids = |job| book.of_job(JobId(job)).iter().map(|(l, _)| l.0).collect::<Vec<_>>();
        assert_eq!(ids(2), vec![4, 5]);
        assert_eq!(ids(1), vec![3]);
        assert!(ids(7).is_empty());
        // Ended, or handed out again for another job: gone from the old job's list.
        book.remove(LeaseId(4));
        book.insert(LeaseId(5), held(3, 1));
        assert!(ids(2).is_empty());
        assert_eq!(ids(3), vec![5, 9]);
        assert_eq!(book.len(), 3);
    }

    #[test]
    fn one_output_of_the_declared_size_per_held_lease() {
        let book = LeaseBook::default();
        let (worker, other) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let task = TaskId { job: JobId(1), index: 0 };
        let lease = LeaseId(7);
        let (a, b) = (sha256(b"a"), sha256(b"b"));
        assert_eq!(book.charge(lease, &worker, None, &a, 8), Err(OutputRefused::NotHeld(lease)));
        book.insert(lease, HeldLease { worker, task, output_size: 8 });
        assert_eq!(book.charge(lease, &other, None, &a, 8), Err(OutputRefused::NotHeld(lease)));
        let wrong_task = TaskId { job: JobId(1), index: 1 };
        assert_eq!(book.charge(lease, &worker, Some(wrong_task), &a, 8), Err(OutputRefused::NotHeld(lease)));
        assert_eq!(
            book.charge(lease, &worker, None, &a, 9),
            Err(OutputRefused::WrongSize { lease, len: 9, declared: 8 })
        );
        assert_eq!(book.charge(lease, &worker, Some(task), &a, 8), Ok(()));
        assert_eq!(book.charge(lease, &worker, None, &a, 8), Ok(()), "a retry of the same blob is fine");
        assert_eq!(book.charge(lease, &worker, None, &b, 8), Err(OutputRefused::AlreadyStored { lease, stored: a }));
        book.uncharge(lease, &a);
        assert_eq!(
            book.charge(lease, &worker, None, &b, 8),
            Ok(()),
            "an upload that failed frees the lease's allowance"
        );
        book.remove(lease);
        assert_eq!(book.charge(lease, &worker, None, &b, 8), Err(OutputRefused::NotHeld(lease)));
        assert!(book.is_empty());
    }

    #[test]
    fn a_lease_counts_as_uploaded_only_once_its_own_blob_is_stored() {
        let book = LeaseBook::default();
        let (worker, copier) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let task = TaskId { job: JobId(1), index: 0 };
        let (lease, copied) = (LeaseId(7), LeaseId(8));
        let (a, b) = (sha256(b"a"), sha256(b"b"));
        book.insert(lease, HeldLease { worker, task, output_size: 8 });
        book.insert(copied, HeldLease { worker: copier, task, output_size: 8 });
        /// What happens, who asks about which lease, what its upload is then.
        type Step<'a> = (&'a str, &'a dyn Fn(), PublicKey, LeaseId, Option<(Hash32, u64)>);
        let steps: [Step<'_>; 8] = [
            ("nothing uploaded", &|| {}, worker, lease, None),
            ("an upload in flight", &|| book.charge(lease, &worker, None, &a, 8).unwrap(), worker, lease, None),
            ("stored", &|| book.confirm(lease, &a), worker, lease, Some((a, 8))),
            ("asked by another key", &|| {}, copier, lease, None),
            ("a failed retry of the same blob", &|| book.uncharge(lease, &a), worker, lease, Some((a, 8))),
            // The copier starts an upload of the same hash for its own lease: until its body
            // proves it, it has uploaded nothing, whatever is already on disk under that hash.
            (
                "the copier's upload in flight",
                &|| book.charge(copied, &copier, None, &a, 8).unwrap(),
                copier,
                copied,
                None,
            ),
            ("the copier's body fails its hash", &|| book.uncharge(copied, &a), copier, copied, None),
            ("confirming another blob than the charged one", &|| book.confirm(copied, &b), copier, copied, None),
        ];
        for (case, step, asker, asked, expected) in steps {
            step();
            assert_eq!(book.uploaded(asked, &asker), expected, "{case}");
        }
        book.remove(lease);
        assert_eq!(book.uploaded(lease, &worker), None, "an ended lease has no upload");
    }
}
