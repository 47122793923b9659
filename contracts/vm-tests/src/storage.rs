//! The contract's key-value store: an ordered map that can be copied for a transaction and
//! dropped on failure, with counters of what a call read and wrote. A copy shares the committed
//! map and keeps its own writes beside it until [`LedgerStorage::commit`], so a transaction
//! costs what it touches, not the size of the store.
//!
//! Gas reported to the VM follows `cosmwasm_vm::testing::MockStorage` (bytes touched), so the
//! VM's figures compare with other CosmWasm measurements; a chain charges storage by its own
//! schedule, which [`StorageOps`] lets a caller compute.

use cosmwasm_std::{Order, Record};
use cosmwasm_vm::{BackendError, BackendResult, GasInfo, Storage};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

const GAS_COST_RANGE: u64 = 11;
const GAS_COST_LAST_ITERATION: u64 = 37;

/// Storage operations of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageOps {
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub written_bytes: u64,
    pub removes: u64,
    /// Range scans opened, and entries they returned.
    pub scans: u64,
    pub scanned_entries: u64,
}

#[derive(Debug, Clone, Default)]
pub struct LedgerStorage {
    /// What is committed, shared by copies.
    data: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// This copy's writes since the last commit (`None`: removed).
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    iterators: HashMap<u32, (Vec<Record>, usize)>,
    // `Storage::get` takes `&self`; the counters are bookkeeping, not state.
    reads: Cell<u64>,
    read_bytes: Cell<u64>,
    ops: StorageOps,
    /// Keys written or removed since the last [`LedgerStorage::take_dirty`]: what a persisted
    /// ledger must write back.
    dirty: BTreeSet<Vec<u8>>,
}

impl LedgerStorage {
    pub fn ops(&self) -> StorageOps {
        StorageOps { reads: self.reads.get(), read_bytes: self.read_bytes.get(), ..self.ops }
    }

    pub fn reset_ops(&mut self) {
        self.reads.set(0);
        self.read_bytes.set(0);
        self.ops = StorageOps::default();
        self.iterators.clear();
    }

    /// A copy for one transaction: it shares the committed map and starts with no dirty keys.
    pub fn fork(&self) -> Self {
        Self {
            data: self.data.clone(),
            overlay: self.overlay.clone(),
            iterators: HashMap::new(),
            reads: Cell::new(0),
            read_bytes: Cell::new(0),
            ops: StorageOps::default(),
            dirty: BTreeSet::new(),
        }
    }

    /// Takes a transaction's copy (see [`LedgerStorage::fork`]) as the committed state, with
    /// its keys added to the dirty ones.
    pub fn apply(&mut self, tx: LedgerStorage) {
        let mut dirty = std::mem::take(&mut self.dirty);
        *self = tx;
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
        self.commit();
    }

    /// Folds this copy's writes into the committed map (without copying it when this copy is
    /// its only holder).
    pub fn commit(&mut self) {
        if self.overlay.is_empty() {
            return;
        }
        let data = Arc::make_mut(&mut self.data);
        for (k, v) in std::mem::take(&mut self.overlay) {
            match v {
                Some(v) => data.insert(k, v),
                None => data.remove(&k),
            };
        }
    }

    fn value(&self, key: &[u8]) -> Option<&Vec<u8>> {
        match self.overlay.get(key) {
            Some(v) => v.as_ref(),
            None => self.data.get(key),
        }
    }

    /// Every entry, for persisting the ledger.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let committed = self.data.iter().filter(|(k, _)| !self.overlay.contains_key(*k));
        let written = self.overlay.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, v)));
        committed.chain(written).map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The keys changed since the last call, each with its value now (`None`: removed).
    pub fn take_dirty(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|k| {
                let v = self.value(&k).cloned();
                (k, v)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromIterator<(Vec<u8>, Vec<u8>)> for LedgerStorage {
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(iter: I) -> Self {
        Self { data: Arc::new(iter.into_iter().collect()), ..Self::default() }
    }
}

impl Storage for LedgerStorage {
    fn get(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        let value = self.value(key).cloned();
        self.reads.set(self.reads.get() + 1);
        self.read_bytes.set(self.read_bytes.get() + value.as_ref().map_or(0, Vec::len) as u64);
        (Ok(value), GasInfo::with_externally_used(key.len() as u64))
    }

    fn scan(&mut self, start: Option<&[u8]>, end: Option<&[u8]>, order: Order) -> BackendResult<u32> {
        let lower = start.map_or(Bound::Unbounded, |s| Bound::Included(s.to_vec()));
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        let empty = matches!((start, end), (Some(s), Some(e)) if s >= e);
        let records: Vec<Record> = if empty {
            Vec::new()
        } else {
            let mut range: BTreeMap<&Vec<u8>, &Vec<u8>> = self.data.range((lower.clone(), upper.clone())).collect();
            for (k, v) in self.overlay.range((lower, upper)) {
                match v {
                    Some(v) => range.insert(k, v),
                    None => range.remove(k),
                };
            }
            let range = range.into_iter().map(|(k, v)| (k.clone(), v.clone()));
            match order {
                Order::Ascending => range.collect(),
                Order::Descending => range.rev().collect(),
            }
        };
        let Ok(id) = u32::try_from(self.iterators.len() + 1) else {
            return (Err(BackendError::unknown("too many iterators")), GasInfo::free());
        };
        self.iterators.insert(id, (records, 0));
        self.ops.scans += 1;
        (Ok(id), GasInfo::with_externally_used(GAS_COST_RANGE))
    }

    fn next(&mut self, iterator_id: u32) -> BackendResult<Option<Record>> {
        let Some((records, position)) = self.iterators.get_mut(&iterator_id) else {
            return (Err(BackendError::iterator_does_not_exist(iterator_id)), GasInfo::free());
        };
        match records.get(*position) {
            Some(record) => {
                *position += 1;
                self.ops.scanned_entries += 1;
                let cost = (record.0.len() + record.1.len()) as u64;
                (Ok(Some(record.clone())), GasInfo::with_cost(cost))
            }
            None => (Ok(None), GasInfo::with_externally_used(GAS_COST_LAST_ITERATION)),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> BackendResult<()> {
        self.overlay.insert(key.to_vec(), Some(value.to_vec()));
        self.dirty.insert(key.to_vec());
        self.ops.writes += 1;
        self.ops.written_bytes += (key.len() + value.len()) as u64;
        (Ok(()), GasInfo::with_externally_used((key.len() + value.len()) as u64))
    }

    fn remove(&mut self, key: &[u8]) -> BackendResult<()> {
        self.overlay.insert(key.to_vec(), None);
        self.dirty.insert(key.to_vec());
        self.ops.removes += 1;
        (Ok(()), GasInfo::with_externally_used(key.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_in_both_orders_and_counts() {
        let mut s: LedgerStorage =
            [(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]
                .into_iter()
                .collect();
        let id = s.scan(Some(b"b"), None, Order::Descending).0.unwrap();
        assert_eq!(s.next(id).0.unwrap().unwrap().0, b"c");
        assert_eq!(s.next(id).0.unwrap().unwrap().0, b"b");
        assert!(s.next(id).0.unwrap().is_none());
        let id = s.scan(Some(b"c"), Some(b"a"), Order::Ascending).0.unwrap();
        assert!(s.next(id).0.unwrap().is_none());
        s.set(b"d", b"44").0.unwrap();
        assert_eq!(s.get(b"d").0.unwrap(), Some(b"44".to_vec()));
        let ops = s.ops();
        assert_eq!(
            (ops.reads, ops.read_bytes, ops.writes, ops.written_bytes, ops.scans, ops.scanned_entries),
            (1, 2, 1, 3, 2, 2)
        );
        s.reset_ops();
        assert_eq!(s.ops(), StorageOps::default());
        s.remove(b"a").0.unwrap();
        // A copy shares what is committed and keeps its writes to itself.
        let before = s.clone();
        s.commit();
        let id = s.scan(None, None, Order::Ascending).0.unwrap();
        let keys: Vec<Vec<u8>> = std::iter::from_fn(|| s.next(id).0.unwrap()).map(|r| r.0).collect();
        assert_eq!(keys, [b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        let mut other = before.clone();
        other.set(b"e", b"5").0.unwrap();
        assert_eq!(s.get(b"e").0.unwrap(), None);
        assert_eq!((before.len(), s.len(), other.len()), (3, 3, 4));
        assert_eq!(s.take_dirty(), vec![(b"a".to_vec(), None), (b"d".to_vec(), Some(b"44".to_vec()))]);
        assert!(s.take_dirty().is_empty());
    }
}
