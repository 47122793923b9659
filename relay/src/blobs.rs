//! Content-addressed blob store on disk: `root/ab/abcdef…` named by SHA-256. Writes go to a
//! temporary file that is hashed while written, synced, then renamed into place, so a blob is
//! either whole under its hash or absent.
//!
//! Every upload is charged to someone until a job references the blob: a client key for an
//! input (bounded per key and, over all keys, in total, so fresh keys gain little), a worker's
//! lease for an output (bounded by [`crate::leases::LeaseBook`]). A blob nobody references
//! within [`BlobQuota::ttl`] of its upload is deleted by [`BlobStore::sweep`]. Referenced blobs
//! (job inputs once the job is accepted, outputs once a result names them) are kept for good and
//! are not tracked here; the [`Ledger`] holds only the unreferenced ones, so its size is bounded
//! by the quotas.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use starling_protocol::{Hash32, LeaseId, PublicKey};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("content hashes to {actual}, not {expected}")]
    HashMismatch { expected: Hash32, actual: Hash32 },
    #[error("the body is {actual} bytes, not the {declared} that were signed")]
    LengthMismatch { declared: u64, actual: u64 },
    /// The uploader's allowance of unreferenced blobs is spent; retry after using or losing some.
    #[error("{0}")]
    Quota(String),
    #[error("upload interrupted: {0}")]
    Body(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Bounds on blobs that no job references yet, and how long they live.
#[derive(Debug, Clone, Copy)]
pub struct BlobQuota {
    /// Bytes one client key may hold in unreferenced inputs.
    pub per_key_bytes: u64,
    /// Unreferenced inputs one client key may hold.
    pub per_key_blobs: usize,
    /// Bytes all client keys together may hold in unreferenced inputs.
    pub total_bytes: u64,
    /// Unreferenced inputs all client keys together may hold.
    pub total_blobs: usize,
    /// An unreferenced blob is deleted this long after its upload (or its last use in a job
    /// submission that was then refused).
    pub ttl: Duration,
    /// How often expired blobs are deleted.
    pub sweep_every: Duration,
}

impl Default for BlobQuota {
    fn default() -> Self {
        Self {
            per_key_bytes: 256 << 20,
            per_key_blobs: 1024,
            total_bytes: 4 << 30,
            total_blobs: 65_536,
            ttl: Duration::from_secs(3600),
            sweep_every: Duration::from_secs(60),
        }
    }
}

/// Whose allowance an unreferenced blob spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A client's input, counted against its key and the total.
    Client(PublicKey),
    /// A worker's output for a lease; the lease book allows one per lease.
    Lease(LeaseId),
    /// Found on disk at start-up with no job referencing it: expires, counts against nobody.
    Found,
}

/// An unreferenced blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unreferenced {
    owner: Owner,
    bytes: u64,
    /// Wall-clock ms of the upload (or of the file, for [`Owner::Found`]), or of the last touch.
    since_ms: u64,
}

/// Unreferenced blobs and what each client key holds in them (reservations of uploads in
/// flight included, so concurrent uploads cannot overshoot a quota).
#[derive(Debug, Default)]
struct Ledger {
    unreferenced: HashMap<Hash32, Unreferenced>,
    /// Bytes and blobs per client key.
    by_key: HashMap<PublicKey, (u64, usize)>,
    /// Bytes and blobs over all client keys.
    total: (u64, usize),
}

impl Ledger {
    fn charge(&mut self, quota: &BlobQuota, key: PublicKey, bytes: u64) -> Result<(), BlobError> {
        if bytes > quota.per_key_bytes {
            return Err(BlobError::TooLarge { limit: quota.per_key_bytes });
        }
        let (held, count) = self.by_key.get(&key).copied().unwrap_or_default();
        if held + bytes > quota.per_key_bytes || count >= quota.per_key_blobs {
            return Err(BlobError::Quota(format!(
                "key {key} already holds {count} blobs ({held} bytes) that no job uses yet; its quota is {} blobs \
                 ({} bytes): post a job that uses them, or wait for them to expire",
                quota.per_key_blobs, quota.per_key_bytes
            )));
        }
        if self.total.0 + bytes > quota.total_bytes || self.total.1 >= quota.total_blobs {
            return Err(BlobError::Quota(
                "the relay holds as many unused uploads as it allows from all clients; retry later".into(),
            ));
        }
        let entry = self.by_key.entry(key).or_default();
        *entry = (entry.0 + bytes, entry.1 + 1);
        self.total = (self.total.0 + bytes, self.total.1 + 1);
        Ok(())
    }

    fn release(&mut self, owner: Owner, bytes: u64) {
        let Owner::Client(key) = owner else { return };
        if let Some(entry) = self.by_key.get_mut(&key) {
            *entry = (entry.0.saturating_sub(bytes), entry.1.saturating_sub(1));
            if entry.1 == 0 {
                self.by_key.remove(&key);
            }
        }
        self.total = (self.total.0.saturating_sub(bytes), self.total.1.saturating_sub(1));
    }

    fn forget(&mut self, hash: &Hash32) -> Option<Unreferenced> {
        let entry = self.unreferenced.remove(hash)?;
        self.release(entry.owner, entry.bytes);
        Some(entry)
    }
}

/// What a blob upload is: its address, its signed length and who pays for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    pub hash: Hash32,
    pub len: u64,
    pub owner: Owner,
}

/// The outcome of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub hash: Hash32,
    pub size: u64,
    /// False when the blob was already there (and so charged to nobody a second time).
    pub created: bool,
}

/// A quota reservation for an upload in flight; released on drop unless the blob was recorded.
struct Reservation<'a> {
    ledger: &'a Mutex<Ledger>,
    owner: Owner,
    bytes: u64,
    held: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.held {
            self.ledger.lock().expect("blob ledger lock").release(self.owner, self.bytes);
        }
    }
}

/// Bytes in hand up to this size are checked for on disk without the blocking pool.
const SMALL_BLOB_BYTES: u64 = 64 << 10;

/// Wall-clock milliseconds, the clock of unreferenced blobs' ages.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    max_bytes: u64,
    quota: BlobQuota,
    ledger: Arc<Mutex<Ledger>>,
}

impl BlobStore {
    pub fn open(root: &Path, max_bytes: u64) -> std::io::Result<BlobStore> {
        std::fs::create_dir_all(root.join("tmp"))?;
        // Leftovers from a crash mid-upload are never referenced.
        for entry in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(BlobStore { root: root.to_path_buf(), max_bytes, quota: BlobQuota::default(), ledger: Arc::default() })
    }

    /// Sets the bounds on unreferenced blobs.
    pub fn with_quota(mut self, quota: BlobQuota) -> Self {
        self.quota = quota;
        self
    }

    pub fn quota(&self) -> BlobQuota {
        self.quota
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(&self, hash: &Hash32) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Size of a stored blob, or None when absent.
    pub async fn size(&self, hash: &Hash32) -> Option<u64> {
        tokio::fs::metadata(self.path(hash)).await.ok().map(|m| m.len())
    }

    pub async fn read(&self, hash: &Hash32) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.path(hash)).await
    }

    pub async fn open_file(&self, hash: &Hash32) -> std::io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(hash)).await
    }

    /// Unreferenced blobs: bytes and count charged to `key`, and over all client keys.
    pub fn held_by(&self, key: &PublicKey) -> ((u64, usize), (u64, usize)) {
        let ledger = self.ledger.lock().expect("blob ledger lock");
        (ledger.by_key.get(key).copied().unwrap_or_default(), ledger.total)
    }

    /// Whether `hash` is stored but no job references it yet.
    pub fn is_unreferenced(&self, hash: &Hash32) -> bool {
        self.ledger.lock().expect("blob ledger lock").unreferenced.contains_key(hash)
    }

    /// Whether `hash` is stored, unreferenced and not a client's input: an output a worker
    /// uploaded and has not reported yet, or a blob found at start-up whose uploader is gone.
    /// Nobody reads such a blob over the API (see `api::withheld`).
    pub fn is_unreported_output(&self, hash: &Hash32) -> bool {
        let ledger = self.ledger.lock().expect("blob ledger lock");
        matches!(ledger.unreferenced.get(hash).map(|e| e.owner), Some(Owner::Lease(_) | Owner::Found))
    }

    /// A job submission names these blobs: restart their expiry, so none is swept between the
    /// submission's checks and its acceptance. (If it is refused, they expire a TTL later.)
    pub fn touch<'a>(&self, hashes: impl IntoIterator<Item = &'a Hash32>, now_ms: u64) {
        let mut ledger = self.ledger.lock().expect("blob ledger lock");
        for hash in hashes {
            if let Some(entry) = ledger.unreferenced.get_mut(hash) {
                entry.since_ms = entry.since_ms.max(now_ms);
            }
        }
    }

    /// A job or a recorded result references these blobs: they are kept for good, and stop
    /// counting against their uploader.
    pub fn keep<'a>(&self, hashes: impl IntoIterator<Item = &'a Hash32>) {
        let mut ledger = self.ledger.lock().expect("blob ledger lock");
        for hash in hashes {
            ledger.forget(hash);
        }
    }

    /// Deletes unreferenced blobs older than the TTL at `now_ms`; returns them. Each deletion
    /// happens under the ledger lock, so a concurrent [`BlobStore::touch`] or upload sees the
    /// blob either still tracked or gone, never tracked but gone.
    pub fn sweep(&self, now_ms: u64) -> Vec<Hash32> {
        let ttl = self.quota.ttl.as_millis() as u64;
        let expired = |e: &Unreferenced| e.since_ms.saturating_add(ttl) <= now_ms;
        let candidates: Vec<Hash32> = {
            let ledger = self.ledger.lock().expect("blob ledger lock");
            ledger.unreferenced.iter().filter(|(_, e)| expired(e)).map(|(h, _)| *h).collect()
        };
        let mut deleted = Vec::with_capacity(candidates.len());
        for hash in candidates {
            let mut ledger = self.ledger.lock().expect("blob ledger lock");
            if !ledger.unreferenced.get(&hash).is_some_and(expired) {
                continue;
            }
            match std::fs::remove_file(self.path(&hash)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(blob = %hash, error = %e, "cannot delete an expired blob; will retry");
                    continue;
                }
            }
            ledger.forget(&hash);
            deleted.push(hash);
        }
        deleted
    }

    /// Start-up: every stored blob outside `referenced` (what jobs in the store name) is
    /// unreferenced since its file's modification time, and expires from then.
    pub fn adopt_unreferenced(&self, referenced: &HashSet<Hash32>) -> std::io::Result<usize> {
        let mut found = Vec::new();
        for dir in std::fs::read_dir(&self.root)? {
            let dir = dir?;
            if dir.file_name() == "tmp" || !dir.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(dir.path())? {
                let file = file?;
                let Some(hash) = file.file_name().to_str().and_then(|n| n.parse::<Hash32>().ok()) else { continue };
                if referenced.contains(&hash) {
                    continue;
                }
                let meta = file.metadata()?;
                let since_ms = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                found.push((hash, Unreferenced { owner: Owner::Found, bytes: meta.len(), since_ms }));
            }
        }
        let n = found.len();
        self.ledger.lock().expect("blob ledger lock").unreferenced.extend(found);
        Ok(n)
    }

    /// Stores `body` as `upload`: charges the owner first (a client key's quota; a lease is
    /// charged by the caller through the lease book), then checks the length and hash as the
    /// body arrives. A blob already stored is not charged again; its expiry restarts.
    pub async fn put<S, E>(&self, upload: Upload, body: S, now_ms: u64) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if upload.len > self.max_bytes {
            return Err(BlobError::TooLarge { limit: self.max_bytes });
        }
        self.touch([&upload.hash], now_ms);
        if let Some(size) = self.size(&upload.hash).await {
            // Content-addressed: the same hash is the same bytes, so nothing is written again.
            // The body is still read and checked: an upload proves that its uploader holds the
            // bytes (a worker's result counts only with its own upload), and an answer without
            // that proof would tell anyone who knows a hash whether someone stored it.
            self.read_checked(body, upload.hash, upload.len, None).await?;
            if let Owner::Client(key) = upload.owner {
                self.claim_unreported(key, &upload.hash, now_ms)?;
            }
            return Ok(Stored { hash: upload.hash, size, created: false });
        }
        let mut reservation = Reservation { ledger: &self.ledger, owner: upload.owner, bytes: upload.len, held: false };
        if let Owner::Client(key) = upload.owner {
            self.ledger.lock().expect("blob ledger lock").charge(&self.quota, key, upload.len)?;
            reservation.held = true;
        }
        let tmp = self.write_tmp(body, upload.hash, upload.len).await?;
        // The check that the blob is new, the rename and the record are one step under the
        // ledger lock: a blob that a job started referencing meanwhile is never tracked again.
        let dest = self.path(&upload.hash);
        let mut ledger = self.ledger.lock().expect("blob ledger lock");
        if dest.exists() {
            drop(ledger);
            let _ = std::fs::remove_file(&tmp);
            return Ok(Stored { hash: upload.hash, size: upload.len, created: false });
        }
        let placed = std::fs::create_dir_all(dest.parent().expect("blob paths have a parent"))
            .and_then(|()| std::fs::rename(&tmp, &dest));
        if let Err(e) = placed {
            drop(ledger);
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        let entry = Unreferenced { owner: upload.owner, bytes: upload.len, since_ms: now_ms };
        if let Some(old) = ledger.unreferenced.insert(upload.hash, entry) {
            // Tracked but missing on disk (deleted by hand): the old charge goes.
            ledger.release(old.owner, old.bytes);
        }
        reservation.held = false;
        Ok(Stored { hash: upload.hash, size: upload.len, created: true })
    }

    /// A client uploaded bytes stored as an output not yet reported (or found at start-up): it
    /// holds them, so they become its input, charged to its quota as a new upload would be.
    /// Otherwise it would find them unreadable after its own upload, and so learn that someone
    /// else had stored them.
    fn claim_unreported(&self, key: PublicKey, hash: &Hash32, now_ms: u64) -> Result<(), BlobError> {
        let mut ledger = self.ledger.lock().expect("blob ledger lock");
        let Some(entry) = ledger.unreferenced.get(hash).copied() else { return Ok(()) };
        if !matches!(entry.owner, Owner::Lease(_) | Owner::Found) {
            return Ok(());
        }
        ledger.charge(&self.quota, key, entry.bytes)?;
        let since_ms = entry.since_ms.max(now_ms);
        ledger.unreferenced.insert(*hash, Unreferenced { owner: Owner::Client(key), since_ms, ..entry });
        Ok(())
    }

    /// Writes a body to a temporary file, checking it as [`BlobStore::read_checked`] does.
    async fn write_tmp<S, E>(&self, body: S, expected: Hash32, declared: u64) -> Result<PathBuf, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self.root.join("tmp").join(format!("{:016x}", rand::random::<u64>()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            self.read_checked(body, expected, declared, Some(&mut file)).await?;
            file.sync_all().await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Reads a body to its end, into `file` when given, checking the size limit and the signed
    /// length as it arrives, and that the content hashes to `expected`.
    async fn read_checked<S, E>(
        &self,
        mut body: S,
        expected: Hash32,
        declared: u64,
        mut file: Option<&mut tokio::fs::File>,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let limit = declared.min(self.max_bytes);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            len += chunk.len() as u64;
            if len > limit {
                return Err(if declared <= self.max_bytes {
                    BlobError::LengthMismatch { declared, actual: len }
                } else {
                    BlobError::TooLarge { limit: self.max_bytes }
                });
            }
            hasher.update(&chunk);
            if let Some(file) = file.as_mut() {
                file.write_all(&chunk).await?;
            }
        }
        if declared != len {
            return Err(BlobError::LengthMismatch { declared, actual: len });
        }
        let actual = Hash32(hasher.finalize().into());
        if expected != actual {
            return Err(BlobError::HashMismatch { expected, actual });
        }
        Ok(())
    }

    /// Stores bytes in hand (an inline output, a test fixture) as `upload`. A small blob already
    /// stored is not checked again: the caller has the bytes in hand and has hashed them.
    pub async fn put_bytes(&self, upload: Upload, data: Bytes, now_ms: u64) -> Result<Stored, BlobError> {
        // Most inline outputs are already stored (many tasks share an output): one `stat` of a
        // cached directory entry answers that in microseconds, without the blocking pool's hop
        // that `tokio::fs` takes for every call.
        if data.len() as u64 <= SMALL_BLOB_BYTES
            && upload.len <= self.max_bytes
            && let Ok(meta) = std::fs::metadata(self.path(&upload.hash))
        {
            self.touch([&upload.hash], now_ms);
            return Ok(Stored { hash: upload.hash, size: meta.len(), created: false });
        }
        self.put(upload, futures_util::stream::iter([Ok::<_, std::convert::Infallible>(data)]), now_ms).await
    }
}

/// Deletes expired unreferenced blobs every [`BlobQuota::sweep_every`] until `stop` turns true.
pub fn spawn_sweeper(blobs: BlobStore, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(blobs.quota.sweep_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let b = blobs.clone();
            match tokio::task::spawn_blocking(move || b.sweep(wall_ms())).await {
                Ok(deleted) if !deleted.is_empty() => {
                    tracing::info!(deleted = deleted.len(), "expired unreferenced blobs")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "blob sweep panicked"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::sha256;

    const HOUR_MS: u64 = 3_600_000;

    fn input(key: u8, data: &[u8]) -> Upload {
        Upload { hash: sha256(data), len: data.len() as u64, owner: Owner::Client(PublicKey([key; 32])) }
    }

    /// `data` as an upload's body (the streaming path, which `put_bytes` skips for small blobs
    /// already stored).
    fn body(data: &'static [u8]) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Unpin {
        futures_util::stream::iter([Ok(Bytes::from_static(data))])
    }

    async fn put(store: &BlobStore, upload: Upload, data: &'static [u8], now_ms: u64) -> Result<Stored, BlobError> {
        store.put_bytes(upload, Bytes::from_static(data), now_ms).await
    }

    fn small_quota() -> BlobQuota {
        BlobQuota { per_key_bytes: 10, per_key_blobs: 3, total_bytes: 16, total_blobs: 100, ..BlobQuota::default() }
    }

    #[tokio::test]
    async fn stores_by_hash_and_refuses_bad_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 8).unwrap();
        let stored = put(&store, input(1, b"hello"), b"hello", 0).await.unwrap();
        assert_eq!(stored, Stored { hash: sha256(b"hello"), size: 5, created: true });
        assert_eq!(store.read(&stored.hash).await.unwrap(), b"hello");
        let too_long = put(&store, input(1, b"too long!"), b"too long!", 0).await;
        assert!(matches!(too_long, Err(BlobError::TooLarge { .. })), "{too_long:?}");
        // Stored already under that hash: nothing is written, but the body must still prove it
        // holds those bytes.
        let again = store.put(input(1, b"hello"), body(b"hello"), 0).await.unwrap();
        assert_eq!(again, Stored { hash: stored.hash, size: 5, created: false });
        let wrong = Upload { hash: stored.hash, ..input(1, b"hellp") };
        let refused = store.put(wrong, body(b"hellp"), 0).await;
        assert!(matches!(refused, Err(BlobError::HashMismatch { .. })), "{refused:?}");
        let refused = store.put(Upload { hash: stored.hash, ..input(1, b"hello") }, body(b"hell"), 0).await;
        assert!(matches!(refused, Err(BlobError::LengthMismatch { declared: 5, actual: 4 })), "{refused:?}");
        let wrong = Upload { hash: sha256(b"abd"), ..input(1, b"abc") };
        assert!(matches!(put(&store, wrong, b"abc", 0).await, Err(BlobError::HashMismatch { .. })));
        let short = Upload { len: 4, ..input(1, b"abc") };
        assert!(matches!(
            put(&store, short, b"abc", 0).await,
            Err(BlobError::LengthMismatch { declared: 4, actual: 3 })
        ));
        let long = Upload { len: 2, ..input(1, b"abc") };
        assert!(matches!(
            put(&store, long, b"abc", 0).await,
            Err(BlobError::LengthMismatch { declared: 2, actual: 3 })
        ));
        assert_eq!(store.size(&sha256(b"abc")).await, None, "refused uploads leave nothing behind");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.held_by(&PublicKey([1; 32])), ((5, 1), (5, 1)), "refusals charge nothing");
    }

    #[tokio::test]
    async fn quotas_bound_each_key_and_all_keys_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 64).unwrap().with_quota(small_quota());
        put(&store, input(1, b"aaaaaa"), b"aaaaaa", 0).await.unwrap();
        let over = put(&store, input(1, b"bbbbb"), b"bbbbb", 0).await;
        assert!(matches!(over, Err(BlobError::Quota(_))), "{over:?}");
        assert_eq!(store.size(&sha256(b"bbbbb")).await, None);
        assert!(matches!(
            put(&store, input(1, b"too big for a key"), b"too big for a key", 0).await,
            Err(BlobError::TooLarge { limit: 10 })
        ));
        // Another key still uploads, until all keys together reach the total.
        put(&store, input(2, b"cccccccc"), b"cccccccc", 0).await.unwrap();
        let total = put(&store, input(3, b"ddd"), b"ddd", 0).await;
        assert!(matches!(&total, Err(BlobError::Quota(m)) if m.contains("all clients")), "{total:?}");
        // The same blob again is charged to nobody, whoever sends it.
        assert!(!put(&store, input(3, b"aaaaaa"), b"aaaaaa", 0).await.unwrap().created);
        assert_eq!(store.held_by(&PublicKey([3; 32])), ((0, 0), (14, 2)));
        // Once a job references a blob it stops counting: the key and the relay have room again.
        store.keep([&sha256(b"aaaaaa")]);
        assert_eq!(store.held_by(&PublicKey([1; 32])), ((0, 0), (8, 1)));
        put(&store, input(1, b"bbbbb"), b"bbbbb", 0).await.unwrap();
        put(&store, input(3, b"ddd"), b"ddd", 0).await.unwrap();
        // A count limit too.
        let store =
            BlobStore::open(dir.path(), 64).unwrap().with_quota(BlobQuota { total_bytes: 1 << 20, ..small_quota() });
        for blob in [&b"e"[..], b"f", b"g"] {
            store.put_bytes(input(4, blob), Bytes::copy_from_slice(blob), 0).await.unwrap();
        }
        assert!(matches!(put(&store, input(4, b"h"), b"h", 0).await, Err(BlobError::Quota(_))));
        assert_eq!(store.held_by(&PublicKey([4; 32])).0, (3, 3));
    }

    #[tokio::test]
    async fn unreferenced_blobs_expire_and_referenced_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 64).unwrap();
        let t0 = 10 * HOUR_MS;
        let unused = put(&store, input(1, b"unused"), b"unused", t0).await.unwrap().hash;
        let used = put(&store, input(1, b"used"), b"used", t0).await.unwrap().hash;
        let touched = put(&store, input(1, b"touched"), b"touched", t0).await.unwrap().hash;
        let output = Upload { owner: Owner::Lease(LeaseId(3)), ..input(0, b"output") };
        let output = put(&store, output, b"output", t0).await.unwrap().hash;
        store.keep([&used]);
        store.touch([&touched], t0 + HOUR_MS / 2);
        assert!(store.sweep(t0 + HOUR_MS - 1).is_empty(), "nothing expires before its TTL");
        let mut deleted = store.sweep(t0 + HOUR_MS);
        deleted.sort();
        let mut expected = vec![unused, output];
        expected.sort();
        assert_eq!(deleted, expected);
        assert_eq!(store.size(&unused).await, None);
        assert_eq!(store.size(&output).await, None);
        assert_eq!(store.size(&used).await, Some(4));
        assert_eq!(store.held_by(&PublicKey([1; 32])).0, (7, 1), "an expired blob frees its quota");
        assert_eq!(store.sweep(t0 + 3 * HOUR_MS / 2), vec![touched]);
        assert!(store.sweep(t0 + 100 * HOUR_MS).is_empty(), "a referenced blob never expires");
        assert_eq!(store.size(&used).await, Some(4));
        assert_eq!(store.held_by(&PublicKey([1; 32])), ((0, 0), (0, 0)));
    }

    #[tokio::test]
    async fn a_client_that_uploads_an_unreported_output_takes_it_over_as_its_input() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 64).unwrap();
        let output = Upload { owner: Owner::Lease(LeaseId(3)), ..input(0, b"output") };
        assert!(store.put(output, body(b"output"), 0).await.unwrap().created);
        assert!(store.is_unreported_output(&output.hash));
        // Without the bytes, nothing changes; with them, the client holds the blob as its own.
        let guess = store.put(input(1, b"output"), body(b"outpux"), 0).await;
        assert!(matches!(guess, Err(BlobError::HashMismatch { .. })), "{guess:?}");
        assert!(store.is_unreported_output(&output.hash));
        assert!(!store.put(input(1, b"output"), body(b"output"), 0).await.unwrap().created);
        assert!(!store.is_unreported_output(&output.hash));
        assert_eq!(store.held_by(&PublicKey([1; 32])).0, (6, 1), "charged as its own upload");
    }

    #[tokio::test]
    async fn blobs_found_at_start_up_expire_unless_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 64).unwrap();
        let a = put(&store, input(1, b"a"), b"a", 0).await.unwrap().hash;
        let b = put(&store, input(1, b"b"), b"b", 0).await.unwrap().hash;
        let reopened = BlobStore::open(dir.path(), 64).unwrap();
        assert_eq!(reopened.adopt_unreferenced(&HashSet::from([a])).unwrap(), 1);
        assert!(reopened.is_unreferenced(&b) && !reopened.is_unreferenced(&a));
        assert_eq!(reopened.held_by(&PublicKey([1; 32])), ((0, 0), (0, 0)), "found blobs count against nobody");
        assert!(reopened.sweep(wall_ms()).is_empty(), "written just now: not yet expired");
        assert_eq!(reopened.sweep(wall_ms() + HOUR_MS + 1000), vec![b]);
        assert_eq!(reopened.size(&a).await, Some(1));
    }
}
