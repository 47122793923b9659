//! The input-blob cache both workers keep (native and browser): content-addressed, bounded in
//! bytes, evicting the oldest first. Pure: the workers own the fetching and the locking.
//!
//! A blob inserted twice (two tasks that missed on the same hash at once, each fetching it) is
//! counted once: the cache's byte count always equals the bytes it holds, so its usable capacity
//! never shrinks.

use starling_protocol::Hash32;
use std::collections::{HashMap, VecDeque};
use std::ops::Deref;

/// A byte-bounded cache of blobs `B` (an `Arc<Vec<u8>>` natively, an `Rc<Vec<u8>>` in the
/// browser) by content hash.
#[derive(Debug)]
pub struct BlobCache<B> {
    capacity: u64,
    blobs: HashMap<Hash32, B>,
    order: VecDeque<Hash32>,
    bytes: u64,
}

impl<B: Deref<Target = Vec<u8>> + Clone> BlobCache<B> {
    /// An empty cache holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { capacity, blobs: HashMap::new(), order: VecDeque::new(), bytes: 0 }
    }

    pub fn get(&self, hash: &Hash32) -> Option<B> {
        self.blobs.get(hash).cloned()
    }

    /// Keeps `blob` under `hash` (unless it is there already), then evicts the oldest blobs until
    /// the cache fits its capacity again. A blob larger than the whole capacity is not kept (and
    /// evicts nothing).
    pub fn insert(&mut self, hash: Hash32, blob: B) {
        if self.blobs.contains_key(&hash) || blob.len() as u64 > self.capacity {
            return;
        }
        self.bytes += blob.len() as u64;
        self.blobs.insert(hash, blob);
        self.order.push_back(hash);
        while self.bytes > self.capacity {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(b) = self.blobs.remove(&old) {
                self.bytes -= b.len() as u64;
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Blobs held.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::sha256;
    use std::sync::Arc;

    fn blob(n: u8, len: usize) -> (Hash32, Arc<Vec<u8>>) {
        let bytes = vec![n; len];
        (sha256(&bytes), Arc::new(bytes))
    }

    /// Two tasks missed on the same hash at once and both fetched it: it is held and counted
    /// once, and after it is evicted the count is back to what the cache really holds (the
    /// native cache used to count it twice and lose that capacity for good).
    #[test]
    fn a_blob_inserted_twice_is_counted_once() {
        let mut cache = BlobCache::new(100);
        let (h, b) = blob(1, 60);
        cache.insert(h, b.clone());
        cache.insert(h, b);
        assert_eq!((cache.len(), cache.bytes()), (1, 60));
        // Two more blobs push it out: the bytes held are exactly the blobs held.
        let (h2, b2) = blob(2, 40);
        let (h3, b3) = blob(3, 40);
        cache.insert(h2, b2);
        cache.insert(h3, b3);
        assert!(cache.get(&h).is_none());
        assert_eq!((cache.len(), cache.bytes()), (2, 80));
        // And the whole capacity is usable again.
        let (h4, b4) = blob(4, 20);
        cache.insert(h4, b4);
        assert_eq!((cache.len(), cache.bytes()), (3, 100));
    }

    #[test]
    fn the_oldest_blobs_go_first_and_an_oversized_one_is_not_kept() {
        let mut cache = BlobCache::new(100);
        let blobs: Vec<_> = (0..4).map(|n| blob(n, 30)).collect();
        for (h, b) in &blobs {
            cache.insert(*h, b.clone());
        }
        assert!(cache.get(&blobs[0].0).is_none(), "the oldest was evicted");
        assert!(blobs[1..].iter().all(|(h, _)| cache.get(h).is_some()));
        let (big, b) = blob(9, 101);
        cache.insert(big, b);
        assert!(cache.get(&big).is_none(), "a blob over the whole capacity is not kept");
        assert_eq!((cache.len(), cache.bytes()), (3, 90), "and evicts nothing");
    }
}
