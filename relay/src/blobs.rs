//! Content-addressed blob store: every blob is the object `ab/abcdef…` named by its SHA-256, in
//! an [`object_store`]: a local folder by default ([`BlobLocation::Folder`]), any S3-compatible
//! service by configuration ([`BlobLocation::S3`]), which the relays of a cluster share (they
//! never copy blobs between each other). A blob is either whole under its hash or absent: an
//! upload is hashed and checked as it arrives and placed only once it checks out (in a folder: a
//! synced temporary file hard-linked into place; in S3: one `PUT`, or a multipart upload that
//! is completed only then, and aborted otherwise).
//!
//! Every upload is charged to someone until a job references the blob: a client key for an
//! input (bounded per key and, over all keys, in total, so fresh keys gain little), a worker's
//! lease for an output (bounded by [`crate::leases::LeaseBook`]). A blob nobody references
//! within [`BlobQuota::ttl`] of its upload is deleted by [`BlobStore::sweep`]. Referenced blobs
//! (job inputs once the job is accepted, outputs once a result names them) are kept for good and
//! are not tracked here; the [`Ledger`] holds only the unreferenced ones, so its size is bounded
//! by the quotas. Only the relay that decides (the cluster's leader) writes or deletes blobs, so
//! the ledger of one process sees every change.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use starling_protocol::{Hash32, LeaseId, PublicKey};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
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
    /// Uploads of each hash in flight (checked for presence, not yet recorded).
    placing: HashMap<Hash32, usize>,
    /// Hashes placed while another upload of them was in flight: that one must not record the
    /// blob again (a job may reference it by then). Emptied as those uploads end.
    placed: HashSet<Hash32>,
    /// Expired blobs being deleted: absent to readers, and an upload of one waits for the end.
    deleting: HashSet<Hash32>,
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
struct Reservation {
    ledger: Arc<Mutex<Ledger>>,
    owner: Owner,
    bytes: u64,
    held: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            self.ledger.lock().expect("blob ledger lock").release(self.owner, self.bytes);
        }
    }
}

/// Bytes in hand up to this size are checked for in a folder without the blocking pool.
const SMALL_BLOB_BYTES: u64 = 64 << 10;

/// An upload's body is kept in memory up to this size; a larger one is staged in a file.
const STAGE_IN_MEMORY_BYTES: usize = 256 << 10;

/// Memory all uploads together may stage in; past it, uploads are staged in files.
const STAGE_MEMORY_BUDGET: usize = 64 << 20;

/// A blob up to this size goes to a remote store in one `PUT`; a larger one in a multipart
/// upload of parts this size (S3's smallest part is 5 MiB).
const PART_BYTES: usize = 8 << 20;

/// Staged files sent to a remote store at once (each holds up to a few parts in memory).
const REMOTE_PLACEMENTS: usize = 8;

/// Parts of one multipart upload in flight at once.
const PART_CONCURRENCY: usize = 2;

/// Reads from a folder are streamed in chunks this size.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// A checked upload waiting to be placed: in memory, or a file (by name) in the staging folder.
enum Staged {
    /// The chunks, and the share of the memory budget they hold until dropped.
    Memory(Vec<Bytes>, #[allow(dead_code)] MemoryHeld),
    File(StagedFile),
}

/// A file in the staging folder, removed when dropped: whatever ends an upload (an error, a
/// refusal, or its request dropped mid-way when the client goes), nothing stays behind.
struct StagedFile {
    /// Its name in the staging folder (and so, for a folder store, `tmp/NAME`).
    name: String,
    path: PathBuf,
}

impl StagedFile {
    /// Creates the file at once (no await: a request dropped now cannot leave it behind).
    fn create(staging: &Path) -> std::io::Result<(StagedFile, tokio::fs::File)> {
        let name = format!("{:016x}", rand::random::<u64>());
        let path = staging.join(&name);
        let file = std::fs::File::create(&path)?;
        Ok((StagedFile { name, path }, tokio::fs::File::from_std(file)))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Wall-clock milliseconds, the clock of unreferenced blobs' ages.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where a relay keeps its blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A local folder (the default: `<data-dir>/blobs`).
    Folder(PathBuf),
    /// `s3://BUCKET/PREFIX` on any S3-compatible service. Credentials, region and endpoint
    /// come from the environment as the AWS tools read them (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for a service other than AWS,
    /// `AWS_ALLOW_HTTP=true` for one without TLS).
    S3 { bucket: String, prefix: String },
}

impl BlobLocation {
    /// `s3://BUCKET/PREFIX`, or else a folder.
    pub fn parse(s: &str) -> Result<BlobLocation, String> {
        let Some(rest) = s.strip_prefix("s3://") else {
            if s.contains("://") {
                return Err(format!("{s:?}: blobs go in a folder or in s3://BUCKET/PREFIX"));
            }
            return Ok(BlobLocation::Folder(PathBuf::from(s)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || prefix.trim_matches('/').is_empty() {
            return Err(format!(
                "{s:?}: use s3://BUCKET/PREFIX (the relay lists and deletes what is under the prefix, so it needs \
                 one of its own)"
            ));
        }
        Ok(BlobLocation::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() })
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobLocation::Folder(path) => write!(f, "{}", path.display()),
            BlobLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            BlobLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl BlobLocation {
    /// For tests: a fresh prefix in the S3-compatible bucket named by `STARLING_TEST_S3`
    /// (`s3://BUCKET`, reached with the AWS_* variables; `scripts/s3.sh start` exports them), if
    /// any. Under the README's test command (`STARLING_REQUIRE_S3=1`) a missing bucket fails the
    /// tests that need one instead of skipping them.
    #[doc(hidden)]
    pub fn test_bucket() -> Option<BlobLocation> {
        let url = std::env::var("STARLING_TEST_S3").ok().filter(|s| !s.is_empty());
        let Some(url) = url else {
            assert!(
                !std::env::var("STARLING_REQUIRE_S3").is_ok_and(|v| v == "1"),
                "STARLING_REQUIRE_S3=1 but STARLING_TEST_S3 is not set"
            );
            return None;
        };
        match url.strip_prefix("s3://").map(|b| b.trim_end_matches('/')) {
            Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => {
                Some(BlobLocation::S3 { bucket: bucket.into(), prefix: format!("test-{:016x}", rand::random::<u64>()) })
            }
            _ => panic!("STARLING_TEST_S3={url:?} is not s3://BUCKET"),
        }
    }
}

/// A stored blob opened for reading: its size and its bytes as they arrive.
pub struct BlobReader {
    pub size: u64,
    pub chunks: BoxStream<'static, std::io::Result<Bytes>>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader").field("size", &self.size).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    objects: Arc<dyn ObjectStore>,
    /// The folder, when blobs are local files.
    folder: Option<PathBuf>,
    /// Where large uploads wait, checked, until placed: a folder's own `tmp/` (the same file
    /// system, for the hard link), or a local folder beside a remote store.
    staging: PathBuf,
    /// Bounds the staged files being sent to a remote store at once.
    uploads: Arc<tokio::sync::Semaphore>,
    /// Bounds the memory all uploads stage in at once.
    memory: Arc<MemoryBudget>,
    max_bytes: u64,
    quota: BlobQuota,
    ledger: Arc<Mutex<Ledger>>,
}

/// An upload in flight, counted in [`Ledger::placing`] until dropped.
struct Placing {
    ledger: Arc<Mutex<Ledger>>,
    hash: Hash32,
}

impl Drop for Placing {
    fn drop(&mut self) {
        let mut ledger = self.ledger.lock().expect("blob ledger lock");
        let n = ledger.placing.get_mut(&self.hash).expect("counted while placing");
        *n -= 1;
        if *n == 0 {
            ledger.placing.remove(&self.hash);
            ledger.placed.remove(&self.hash);
        }
    }
}

/// A blob being deleted, marked in [`Ledger::deleting`] until dropped.
struct Deleting {
    ledger: Arc<Mutex<Ledger>>,
    hash: Hash32,
}

impl Drop for Deleting {
    fn drop(&mut self) {
        self.ledger.lock().expect("blob ledger lock").deleting.remove(&self.hash);
    }
}

/// In-memory staging of uploads, bounded over all uploads at once ([`STAGE_MEMORY_BUDGET`]).
#[derive(Debug, Default)]
struct MemoryBudget {
    used: std::sync::atomic::AtomicUsize,
}

/// Bytes of the memory budget an upload holds, returned when dropped.
struct MemoryHeld {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl MemoryHeld {
    /// Takes `more` bytes of the budget, or false when that would pass it.
    fn take(&mut self, more: usize) -> bool {
        use std::sync::atomic::Ordering;
        let taken = self.budget.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(more).filter(|&n| n <= STAGE_MEMORY_BUDGET)
        });
        if taken.is_ok() {
            self.bytes += more;
        }
        taken.is_ok()
    }
}

impl Drop for MemoryHeld {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The object name of a blob: `ab/abcdef…`.
fn object_path(hash: &Hash32) -> ObjectPath {
    let hex = hash.to_hex();
    ObjectPath::from(format!("{}/{hex}", &hex[..2]))
}

/// The blob an object name stands for, when it is one.
fn hash_of(path: &ObjectPath) -> Option<Hash32> {
    let hash: Hash32 = path.filename()?.parse().ok()?;
    (object_path(&hash) == *path).then_some(hash)
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl BlobStore {
    /// Opens the blobs at `location`. A folder is created when missing and cleared of uploads a
    /// crash left half done. An S3 bucket must exist; large uploads to it are staged in
    /// `staging` (created, and cleared of what a crash left), a folder of this machine.
    pub fn open(location: &BlobLocation, staging: &Path, max_bytes: u64) -> Result<BlobStore, BlobError> {
        let (objects, folder, staging): (Arc<dyn ObjectStore>, _, _) = match location {
            BlobLocation::Folder(root) => {
                let local = object_store::local::LocalFileSystem::new_with_prefix({
                    std::fs::create_dir_all(root)?;
                    root
                })?;
                (Arc::new(local), Some(root.clone()), root.join("tmp"))
            }
            BlobLocation::S3 { bucket, prefix } => {
                let retry = object_store::RetryConfig {
                    max_retries: 5,
                    retry_timeout: Duration::from_secs(30),
                    ..Default::default()
                };
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .build()?;
                let s3: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
                };
                (s3, None, staging.to_path_buf())
            }
        };
        std::fs::create_dir_all(&staging)?;
        for entry in std::fs::read_dir(&staging)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(BlobStore {
            objects,
            folder,
            staging,
            uploads: Arc::new(tokio::sync::Semaphore::new(REMOTE_PLACEMENTS)),
            memory: Arc::default(),
            max_bytes,
            quota: BlobQuota::default(),
            ledger: Arc::default(),
        })
    }

    /// Blobs in a local folder.
    pub fn folder(root: &Path, max_bytes: u64) -> Result<BlobStore, BlobError> {
        Self::open(&BlobLocation::Folder(root.to_path_buf()), &root.join("tmp"), max_bytes)
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

    fn being_deleted(&self, hash: &Hash32) -> bool {
        self.ledger.lock().expect("blob ledger lock").deleting.contains(hash)
    }

    /// Size of a stored blob, or None when absent (or unreadable: the store's error is logged).
    pub async fn size(&self, hash: &Hash32) -> Option<u64> {
        self.presence(hash).await.unwrap_or_else(|e| {
            tracing::warn!(blob = %hash, error = %e, "cannot read a blob's size");
            None
        })
    }

    /// Size of a stored blob, None when absent, or the store's error when it cannot tell.
    async fn presence(&self, hash: &Hash32) -> Result<Option<u64>, BlobError> {
        if self.being_deleted(hash) {
            return Ok(None);
        }
        match self.objects.head(&object_path(hash)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn read(&self, hash: &Hash32) -> Result<Vec<u8>, BlobError> {
        if self.being_deleted(hash) {
            return Err(BlobError::Store(object_store::Error::NotFound {
                path: object_path(hash).to_string(),
                source: "being deleted".into(),
            }));
        }
        Ok(self.objects.get(&object_path(hash)).await?.bytes().await?.to_vec())
    }

    /// Opens a stored blob to stream it.
    pub async fn open_reader(&self, hash: &Hash32) -> Result<BlobReader, BlobError> {
        if self.being_deleted(hash) {
            return Err(BlobError::Store(object_store::Error::NotFound {
                path: object_path(hash).to_string(),
                source: "being deleted".into(),
            }));
        }
        let got = self.objects.get(&object_path(hash)).await?;
        let size = got.meta.size;
        let chunks = match got.payload {
            // A local file: read in larger chunks than the store's own stream does.
            object_store::GetResultPayload::File(file, _) => {
                futures_util::stream::unfold(tokio::fs::File::from_std(file), |mut file| async move {
                    let mut buf = vec![0u8; READ_CHUNK_BYTES];
                    match file.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Bytes::from(buf)), file))
                        }
                        Err(e) => Some((Err(e), file)),
                    }
                })
                .boxed()
            }
            object_store::GetResultPayload::Stream(stream) => stream.map_err(std::io::Error::other).boxed(),
        };
        Ok(BlobReader { size, chunks })
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
            // An upload of it still in flight (placed, not yet recorded) must not record it as
            // unreferenced once it finishes: it is referenced now.
            if ledger.placing.contains_key(hash) {
                ledger.placed.insert(*hash);
            }
        }
    }

    /// Deletes unreferenced blobs older than the TTL at `now_ms`; returns them. Each is taken
    /// out of the ledger under its lock before it is deleted and reads as absent meanwhile, so
    /// a concurrent [`BlobStore::touch`] or upload sees it either still tracked (and so no
    /// longer expired) or gone, never tracked but gone.
    pub async fn sweep(&self, now_ms: u64) -> Vec<Hash32> {
        let ttl = self.quota.ttl.as_millis() as u64;
        let expired = |e: &Unreferenced| e.since_ms.saturating_add(ttl) <= now_ms;
        let candidates: Vec<Hash32> = {
            let ledger = self.ledger.lock().expect("blob ledger lock");
            ledger.unreferenced.iter().filter(|(_, e)| expired(e)).map(|(h, _)| *h).collect()
        };
        let mut deleted = Vec::with_capacity(candidates.len());
        for hash in candidates {
            let entry = {
                let mut ledger = self.ledger.lock().expect("blob ledger lock");
                if !ledger.unreferenced.get(&hash).is_some_and(expired) || ledger.placing.contains_key(&hash) {
                    continue;
                }
                ledger.deleting.insert(hash);
                ledger.forget(&hash).expect("tracked")
            };
            // Marked as being deleted until the deletion ends, however it ends (a sweep stopped
            // at shutdown included): an upload of the hash waits for the mark to go.
            let deleting = Deleting { ledger: self.ledger.clone(), hash };
            let result = self.objects.delete(&object_path(&hash)).await;
            drop(deleting);
            let mut ledger = self.ledger.lock().expect("blob ledger lock");
            match result {
                Ok(()) => deleted.push(hash),
                Err(e) if not_found(&e) => deleted.push(hash),
                Err(e) => {
                    tracing::warn!(blob = %hash, error = %e, "cannot delete an expired blob; will retry");
                    // Still there: it expires again at the next sweep, charged to nobody now.
                    ledger.unreferenced.insert(hash, Unreferenced { owner: Owner::Found, ..entry });
                }
            }
        }
        deleted
    }

    /// How many objects the store holds, blobs or not (a folder's staged uploads included): what
    /// a test or an operator counts to see that nothing was left behind.
    pub async fn object_count(&self) -> Result<usize, BlobError> {
        let mut n = 0;
        let mut objects = self.objects.list(None);
        while objects.try_next().await?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Start-up: every stored blob outside `referenced` (what jobs in the store name) is
    /// unreferenced since it was last written, and expires from then.
    pub async fn adopt_unreferenced(&self, referenced: &HashSet<Hash32>) -> Result<usize, BlobError> {
        let mut found = Vec::new();
        let mut objects = self.objects.list(None);
        while let Some(meta) = objects.try_next().await? {
            let Some(hash) = hash_of(&meta.location) else { continue };
            if referenced.contains(&hash) {
                continue;
            }
            let since_ms = u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0);
            found.push((hash, Unreferenced { owner: Owner::Found, bytes: meta.size, since_ms }));
        }
        let n = found.len();
        self.ledger.lock().expect("blob ledger lock").unreferenced.extend(found);
        Ok(n)
    }

    /// Counts an upload of `hash` in flight, once the blob is not being deleted (an upload of a
    /// blob being swept waits for the deletion, then stores it anew), and restarts its expiry.
    async fn start_placing(&self, hash: Hash32, now_ms: u64) -> Placing {
        loop {
            {
                let mut ledger = self.ledger.lock().expect("blob ledger lock");
                if !ledger.deleting.contains(&hash) {
                    *ledger.placing.entry(hash).or_default() += 1;
                    if let Some(entry) = ledger.unreferenced.get_mut(&hash) {
                        entry.since_ms = entry.since_ms.max(now_ms);
                    }
                    return Placing { ledger: self.ledger.clone(), hash };
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
        let placing = self.start_placing(upload.hash, now_ms).await;
        // An upload goes on only when the store says the blob is absent: one it cannot ask would
        // otherwise overwrite (on S3) and record as unreferenced a blob a job already uses.
        if let Some(size) = self.presence(&upload.hash).await? {
            // Content-addressed: the same hash is the same bytes, so nothing is written again.
            // The body is still read and checked: an upload proves that its uploader holds the
            // bytes (a worker's result counts only with its own upload), and an answer without
            // that proof would tell anyone who knows a hash whether someone stored it.
            let mut check = Check::new(upload.hash, upload.len, self.max_bytes);
            let mut body = body;
            while let Some(chunk) = body.next().await {
                check.feed(&chunk.map_err(|e| BlobError::Body(e.to_string()))?)?;
            }
            check.finish()?;
            if let Owner::Client(key) = upload.owner {
                self.claim_unreported(key, &upload.hash, now_ms)?;
            }
            return Ok(Stored { hash: upload.hash, size, created: false });
        }
        let mut reservation =
            Reservation { ledger: self.ledger.clone(), owner: upload.owner, bytes: upload.len, held: false };
        if let Owner::Client(key) = upload.owner {
            self.ledger.lock().expect("blob ledger lock").charge(&self.quota, key, upload.len)?;
            reservation.held = true;
        }
        let staged = self.stage(body, upload).await?;
        // Placed and recorded in a task of its own, which runs to its end even when this
        // upload's request is dropped (its client gone): a blob is never stored untracked.
        let store = self.clone();
        tokio::spawn(async move { store.place_and_record(staged, upload, reservation, placing, now_ms).await })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(format!("blob placement failed: {e}"))))?
    }

    /// Places a checked upload, then records it unless another upload placed it meanwhile.
    async fn place_and_record(
        &self,
        staged: Staged,
        upload: Upload,
        mut reservation: Reservation,
        placing: Placing,
        now_ms: u64,
    ) -> Result<Stored, BlobError> {
        let fresh = self.place(&staged, &upload.hash).await?;
        drop(staged);
        // Whether this upload placed the blob, and its record, are decided in one step under
        // the ledger lock: a blob that another upload placed meanwhile (and that a job may
        // reference by now) is never tracked again.
        let mut ledger = self.ledger.lock().expect("blob ledger lock");
        if !fresh || !ledger.placed.insert(upload.hash) {
            return Ok(Stored { hash: upload.hash, size: upload.len, created: false });
        }
        let entry = Unreferenced { owner: upload.owner, bytes: upload.len, since_ms: now_ms };
        if let Some(old) = ledger.unreferenced.insert(upload.hash, entry) {
            // Tracked but missing from the store (deleted by hand): the old charge goes.
            ledger.release(old.owner, old.bytes);
        }
        reservation.held = false;
        drop(ledger);
        drop(placing);
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

    /// Reads a body to its end, checking it as it arrives: a small one is kept in memory, a
    /// larger one goes to a file in the staging folder (synced, when blobs are local files), so
    /// that however slowly an uploader sends, it holds at most [`STAGE_IN_MEMORY_BYTES`] of
    /// memory.
    async fn stage<S, E>(&self, mut body: S, upload: Upload) -> Result<Staged, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut check = Check::new(upload.hash, upload.len, self.max_bytes);
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut held = MemoryHeld { budget: self.memory.clone(), bytes: 0 };
        let mut file: Option<(StagedFile, tokio::fs::File)> = None;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                check.feed(&chunk)?;
                if let Some((_, f)) = file.as_mut() {
                    f.write_all(&chunk).await?;
                    continue;
                }
                if held.bytes + chunk.len() <= STAGE_IN_MEMORY_BYTES && held.take(chunk.len()) {
                    chunks.push(chunk);
                    continue;
                }
                let (_, f) = file.insert(StagedFile::create(&self.staging)?);
                for chunk in chunks.drain(..).chain([chunk]) {
                    f.write_all(&chunk).await?;
                }
            }
            if let Some((_, f)) = file.as_mut() {
                f.flush().await?;
            }
            check.finish()
        }
        .await;
        result?;
        Ok(match file {
            Some((staged, _)) => Staged::File(staged),
            None => Staged::Memory(chunks, held),
        })
    }

    /// Places a checked body under its hash. False when it was there by then (only a folder can
    /// tell: S3 overwrites, with the same bytes).
    async fn place(&self, staged: &Staged, hash: &Hash32) -> Result<bool, BlobError> {
        let path = object_path(hash);
        match (&self.folder, staged) {
            (Some(_), Staged::Memory(chunks, _)) => {
                // In a folder everything goes through a synced file, then a hard link: atomic,
                // refused when the name exists, and never a name over half-written bytes.
                let (staged, mut file) = StagedFile::create(&self.staging)?;
                for chunk in chunks {
                    file.write_all(chunk).await?;
                }
                file.sync_all().await?;
                self.link(&staged.name, &path).await
            }
            (Some(_), Staged::File(staged)) => {
                tokio::fs::File::open(&staged.path).await?.sync_all().await?;
                self.link(&staged.name, &path).await
            }
            (None, Staged::Memory(chunks, _)) => {
                self.objects.put(&path, PutPayload::from_iter(chunks.iter().cloned())).await?;
                Ok(true)
            }
            (None, Staged::File(staged)) => {
                // Bounded: each placement holds up to a few parts in memory.
                let _permit = self.uploads.acquire().await.expect("never closed");
                let mut file = tokio::fs::File::open(&staged.path).await?;
                let len = file.metadata().await?.len();
                if len <= PART_BYTES as u64 {
                    let mut data = Vec::with_capacity(len as usize);
                    file.read_to_end(&mut data).await?;
                    self.objects.put(&path, PutPayload::from(data)).await?;
                    return Ok(true);
                }
                let mut parts =
                    WriteMultipart::new_with_chunk_size(self.objects.put_multipart(&path).await?, PART_BYTES);
                let sent = async {
                    let mut buf = vec![0u8; READ_CHUNK_BYTES];
                    loop {
                        let n = file.read(&mut buf).await?;
                        if n == 0 {
                            // Every part up before completing: a failed part is aborted below.
                            parts.wait_for_capacity(0).await?;
                            return Ok::<_, BlobError>(());
                        }
                        parts.wait_for_capacity(PART_CONCURRENCY).await?;
                        parts.write(&buf[..n]);
                    }
                }
                .await;
                match sent {
                    Ok(()) => {
                        parts.finish().await?;
                        Ok(true)
                    }
                    Err(e) => {
                        if let Err(abort) = parts.abort().await {
                            tracing::warn!(blob = %hash, error = %abort, "cannot abort a multipart upload");
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// Links a staged file (by name, in the folder's `tmp/`) under `path`; false when the name
    /// exists already.
    async fn link(&self, name: &str, path: &ObjectPath) -> Result<bool, BlobError> {
        match self.objects.copy_if_not_exists(&ObjectPath::from(format!("tmp/{name}")), path).await {
            Ok(()) => {
                // The new name itself made durable, as the file's bytes were before the link.
                if let Some(dir) =
                    self.folder.as_ref().and_then(|root| root.join(path.as_ref()).parent().map(Path::to_path_buf))
                {
                    tokio::fs::File::open(dir).await?.sync_all().await?;
                }
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(BlobError::Store(e)),
        }
    }

    /// Stores bytes in hand (an inline output, a test fixture) as `upload`. A small blob already
    /// stored is not checked again: the caller has the bytes in hand and has hashed them.
    pub async fn put_bytes(&self, upload: Upload, data: Bytes, now_ms: u64) -> Result<Stored, BlobError> {
        // Most inline outputs are already stored (many tasks share an output): in a folder, one
        // `stat` of a cached directory entry answers that in microseconds, without the blocking
        // pool's hop that `tokio::fs` takes for every call.
        if data.len() as u64 <= SMALL_BLOB_BYTES
            && upload.len <= self.max_bytes
            && let Some(root) = &self.folder
        {
            // One step under the ledger lock: not being deleted, present, expiry restarted, so
            // the sweeper (which re-checks expiry under the lock) cannot take it after this.
            let mut ledger = self.ledger.lock().expect("blob ledger lock");
            if !ledger.deleting.contains(&upload.hash)
                && let Ok(meta) = std::fs::metadata(root.join(object_path(&upload.hash).as_ref()))
            {
                if let Some(entry) = ledger.unreferenced.get_mut(&upload.hash) {
                    entry.since_ms = entry.since_ms.max(now_ms);
                }
                return Ok(Stored { hash: upload.hash, size: meta.len(), created: false });
            }
        }
        self.put(upload, futures_util::stream::iter([Ok::<_, std::convert::Infallible>(data)]), now_ms).await
    }
}

/// Checks a body as it arrives: the size limit and the signed length, then the content's hash.
struct Check {
    hasher: Sha256,
    len: u64,
    expected: Hash32,
    declared: u64,
    max_bytes: u64,
}

impl Check {
    fn new(expected: Hash32, declared: u64, max_bytes: u64) -> Self {
        Self { hasher: Sha256::new(), len: 0, expected, declared, max_bytes }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.len += chunk.len() as u64;
        if self.len > self.declared.min(self.max_bytes) {
            return Err(if self.declared <= self.max_bytes {
                BlobError::LengthMismatch { declared: self.declared, actual: self.len }
            } else {
                BlobError::TooLarge { limit: self.max_bytes }
            });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    fn finish(self) -> Result<(), BlobError> {
        if self.declared != self.len {
            return Err(BlobError::LengthMismatch { declared: self.declared, actual: self.len });
        }
        let actual = Hash32(self.hasher.finalize().into());
        if self.expected != actual {
            return Err(BlobError::HashMismatch { expected: self.expected, actual });
        }
        Ok(())
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
            let deleted = tokio::select! {
                deleted = blobs.sweep(wall_ms()) => deleted,
                _ = stop.wait_for(|s| *s) => return,
            };
            if !deleted.is_empty() {
                tracing::info!(deleted = deleted.len(), "expired unreferenced blobs");
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

    /// Where each test runs: a fresh folder, and a fresh prefix in the tests' S3 bucket when
    /// there is one.
    /// (A folder store stages uploads in its own `tmp/`; an S3 one in the folder's `staging/`.)
    fn locations() -> Vec<(BlobLocation, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let mut out = vec![(BlobLocation::Folder(dir.path().join("blobs")), dir)];
        out.extend(BlobLocation::test_bucket().map(|l| (l, tempfile::tempdir().unwrap())));
        out
    }

    fn small_quota() -> BlobQuota {
        BlobQuota { per_key_bytes: 10, per_key_blobs: 3, total_bytes: 16, total_blobs: 100, ..BlobQuota::default() }
    }

    #[tokio::test]
    async fn stores_by_hash_and_refuses_bad_uploads() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 8).unwrap();
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
            assert_eq!(std::fs::read_dir(&store.staging).unwrap().count(), 0, "nothing staged stays");
            assert_eq!(store.object_count().await.unwrap(), 1, "only the one good upload is stored");
            assert_eq!(store.held_by(&PublicKey([1; 32])), ((5, 1), (5, 1)), "refusals charge nothing");
        }
    }

    #[tokio::test]
    async fn quotas_bound_each_key_and_all_keys_together() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64).unwrap().with_quota(small_quota());
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
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64)
                .unwrap()
                .with_quota(BlobQuota { total_bytes: 1 << 20, ..small_quota() });
            for blob in [&b"e"[..], b"f", b"g"] {
                store.put_bytes(input(4, blob), Bytes::copy_from_slice(blob), 0).await.unwrap();
            }
            assert!(matches!(put(&store, input(4, b"h"), b"h", 0).await, Err(BlobError::Quota(_))));
            assert_eq!(store.held_by(&PublicKey([4; 32])).0, (3, 3));
        }
    }

    #[tokio::test]
    async fn unreferenced_blobs_expire_and_referenced_ones_stay() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64).unwrap();
            let t0 = 10 * HOUR_MS;
            let unused = put(&store, input(1, b"unused"), b"unused", t0).await.unwrap().hash;
            let used = put(&store, input(1, b"used"), b"used", t0).await.unwrap().hash;
            let touched = put(&store, input(1, b"touched"), b"touched", t0).await.unwrap().hash;
            let output = Upload { owner: Owner::Lease(LeaseId(3)), ..input(0, b"output") };
            let output = put(&store, output, b"output", t0).await.unwrap().hash;
            store.keep([&used]);
            store.touch([&touched], t0 + HOUR_MS / 2);
            assert!(store.sweep(t0 + HOUR_MS - 1).await.is_empty(), "nothing expires before its TTL");
            let mut deleted = store.sweep(t0 + HOUR_MS).await;
            deleted.sort();
            let mut expected = vec![unused, output];
            expected.sort();
            assert_eq!(deleted, expected);
            assert_eq!(store.size(&unused).await, None);
            assert_eq!(store.size(&output).await, None);
            assert_eq!(store.size(&used).await, Some(4));
            assert_eq!(store.held_by(&PublicKey([1; 32])).0, (7, 1), "an expired blob frees its quota");
            assert_eq!(store.sweep(t0 + 3 * HOUR_MS / 2).await, vec![touched]);
            assert!(store.sweep(t0 + 100 * HOUR_MS).await.is_empty(), "a referenced blob never expires");
            assert_eq!(store.size(&used).await, Some(4));
            assert_eq!(store.held_by(&PublicKey([1; 32])), ((0, 0), (0, 0)));
        }
    }

    #[tokio::test]
    async fn a_client_that_uploads_an_unreported_output_takes_it_over_as_its_input() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64).unwrap();
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
    }

    #[tokio::test]
    async fn blobs_found_at_start_up_expire_unless_referenced() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64).unwrap();
            let a = put(&store, input(1, b"a"), b"a", 0).await.unwrap().hash;
            let b = put(&store, input(1, b"b"), b"b", 0).await.unwrap().hash;
            let reopened = BlobStore::open(&location, &dir.path().join("staging"), 64).unwrap();
            assert_eq!(reopened.adopt_unreferenced(&HashSet::from([a])).await.unwrap(), 1);
            assert!(reopened.is_unreferenced(&b) && !reopened.is_unreferenced(&a));
            assert_eq!(reopened.held_by(&PublicKey([1; 32])), ((0, 0), (0, 0)), "found blobs count against nobody");
            assert!(reopened.sweep(wall_ms()).await.is_empty(), "written just now: not yet expired");
            assert_eq!(reopened.sweep(wall_ms() + HOUR_MS + 1000).await, vec![b]);
            assert_eq!(reopened.size(&a).await, Some(1));
        }
    }

    /// A body larger than one part goes up in parts and reads back whole; one that turns out
    /// wrong at its end leaves nothing behind (it is checked before anything is sent, its staged
    /// file removed).
    #[tokio::test]
    async fn large_uploads_go_in_parts_and_a_wrong_one_leaves_nothing() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64 << 20).unwrap();
            let data: Vec<u8> = (0..(PART_BYTES * 2 + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
            let chunks = |data: &[u8]| {
                let chunks: Vec<Result<Bytes, std::convert::Infallible>> =
                    data.chunks(1 << 20).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                futures_util::stream::iter(chunks)
            };
            let mut wrong = data.clone();
            *wrong.last_mut().unwrap() ^= 1;
            let upload = input(1, &data);
            let refused = store.put(upload, chunks(&wrong), 0).await;
            assert!(matches!(refused, Err(BlobError::HashMismatch { .. })), "{refused:?}");
            assert_eq!(store.size(&upload.hash).await, None);
            assert_eq!(store.held_by(&PublicKey([1; 32])).0, (0, 0));
            let stored = store.put(upload, chunks(&data), 0).await.unwrap();
            assert!(stored.created);
            assert_eq!(store.read(&upload.hash).await.unwrap(), data);
            let reader = store.open_reader(&upload.hash).await.unwrap();
            assert_eq!(reader.size, data.len() as u64);
            let streamed: Vec<Bytes> = reader.chunks.try_collect().await.unwrap();
            assert_eq!(streamed.concat(), data);
            // Staged in a file but sent in one request.
            let medium = data[..STAGE_IN_MEMORY_BYTES * 3].to_vec();
            assert!(store.put(input(1, &medium), chunks(&medium), 0).await.unwrap().created);
            assert_eq!(store.read(&sha256(&medium)).await.unwrap(), medium);
            assert_eq!(std::fs::read_dir(&store.staging).unwrap().count(), 0, "nothing staged stays");
        }
    }

    /// Two uploads of one blob at once: it is recorded once, and a job that references it after
    /// the first finishes keeps it, however late the second finishes.
    #[tokio::test]
    async fn concurrent_uploads_of_one_blob_record_it_once() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64).unwrap();
            let upload = input(1, b"shared");
            let (tx, rx) = tokio::sync::oneshot::channel::<Bytes>();
            let late_body =
                Box::pin(futures_util::stream::once(
                    async move { Ok::<_, std::convert::Infallible>(rx.await.unwrap()) },
                ));
            let slow = store.put(upload, late_body, 0);
            let quick = async {
                // The slow upload is counted in flight before it reads its body.
                while !store.ledger.lock().unwrap().placing.contains_key(&upload.hash) {
                    tokio::task::yield_now().await;
                }
                let first = store.put(upload, body(b"shared"), 0).await.unwrap();
                store.keep([&upload.hash]);
                tx.send(Bytes::from_static(b"shared")).unwrap();
                first
            };
            let (first, second) = tokio::join!(quick, slow);
            assert!(first.created);
            assert!(!second.unwrap().created, "the second upload found it placed");
            assert!(!store.is_unreferenced(&upload.hash), "referenced: never tracked again");
            assert_eq!(store.held_by(&PublicKey([1; 32])), ((0, 0), (0, 0)));
            assert!(store.sweep(u64::MAX).await.is_empty());
            assert_eq!(store.size(&upload.hash).await, Some(6));
            assert!(store.ledger.lock().unwrap().placed.is_empty(), "nothing stays behind");
        }
    }

    /// A job may reference a blob while an upload of it is still in flight (its bytes reached
    /// the store through another path): that upload must not record it as unreferenced after.
    #[tokio::test]
    async fn a_blob_kept_while_an_upload_of_it_is_in_flight_is_never_tracked() {
        for (location, dir) in locations() {
            let store = BlobStore::open(&location, &dir.path().join("staging"), 64).unwrap();
            let upload = input(1, b"in flight");
            let (tx, rx) = tokio::sync::oneshot::channel::<Bytes>();
            let late_body =
                Box::pin(futures_util::stream::once(
                    async move { Ok::<_, std::convert::Infallible>(rx.await.unwrap()) },
                ));
            let slow = store.put(upload, late_body, 0);
            let keep = async {
                while !store.ledger.lock().unwrap().placing.contains_key(&upload.hash) {
                    tokio::task::yield_now().await;
                }
                store.keep([&upload.hash]);
                tx.send(Bytes::from_static(b"in flight")).unwrap();
            };
            let (stored, ()) = tokio::join!(slow, keep);
            assert!(!stored.unwrap().created);
            assert!(!store.is_unreferenced(&upload.hash), "referenced: never tracked");
            assert!(store.sweep(u64::MAX).await.is_empty());
            assert_eq!(store.size(&upload.hash).await, Some(9));
            assert_eq!(store.held_by(&PublicKey([1; 32])), ((0, 0), (0, 0)));
        }
    }

    #[test]
    fn locations_parse() {
        assert_eq!(BlobLocation::parse("/srv/blobs"), Ok(BlobLocation::Folder("/srv/blobs".into())));
        assert_eq!(
            BlobLocation::parse("s3://bucket/a/b/"),
            Ok(BlobLocation::S3 { bucket: "bucket".into(), prefix: "a/b".into() })
        );
        assert!(BlobLocation::parse("s3://bucket").is_err(), "a prefix of its own is required");
        assert!(BlobLocation::parse("s3://bucket//").is_err());
        assert!(BlobLocation::parse("s3:///x").is_err());
        assert!(BlobLocation::parse("gs://bucket").is_err());
        for s in ["s3://b/p", "s3://b/p/q", "/srv/blobs"] {
            assert_eq!(BlobLocation::parse(s).unwrap().to_string(), s);
        }
    }
}
