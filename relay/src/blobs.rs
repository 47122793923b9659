//! Content-addressed blob store on disk: `root/ab/abcdef…` named by SHA-256. Writes go to a
//! temporary file that is hashed while written, synced, then renamed into place, so a blob is
//! either whole under its hash or absent.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use starling_protocol::Hash32;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("content hashes to {actual}, not {expected}")]
    HashMismatch { expected: Hash32, actual: Hash32 },
    #[error("upload interrupted: {0}")]
    Body(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    max_bytes: u64,
}

impl BlobStore {
    pub fn open(root: &Path, max_bytes: u64) -> std::io::Result<BlobStore> {
        std::fs::create_dir_all(root.join("tmp"))?;
        // Leftovers from a crash mid-upload are never referenced.
        for entry in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(BlobStore { root: root.to_path_buf(), max_bytes })
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

    /// Stores a stream, checking the size limit as it arrives and, when given, that the content
    /// hashes to `expected`.
    pub async fn put_stream<S, E>(&self, mut body: S, expected: Option<Hash32>) -> Result<(Hash32, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self.root.join("tmp").join(format!("{:016x}", rand::random::<u64>()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                len += chunk.len() as u64;
                if len > self.max_bytes {
                    return Err(BlobError::TooLarge { limit: self.max_bytes });
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            let actual = Hash32(hasher.finalize().into());
            if let Some(expected) = expected
                && expected != actual
            {
                return Err(BlobError::HashMismatch { expected, actual });
            }
            file.sync_all().await?;
            Ok((actual, len))
        }
        .await;
        match result {
            Ok((hash, len)) => {
                let dest = self.path(&hash);
                tokio::fs::create_dir_all(dest.parent().expect("blob paths have a parent")).await?;
                tokio::fs::rename(&tmp, &dest).await?;
                Ok((hash, len))
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    pub async fn put_bytes(&self, data: Bytes) -> Result<(Hash32, u64), BlobError> {
        self.put_stream(futures_util::stream::iter([Ok::<_, std::convert::Infallible>(data)]), None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::sha256;

    #[tokio::test]
    async fn stores_by_hash_and_refuses_bad_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 8).unwrap();
        let (h, len) = store.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!((h, len), (sha256(b"hello"), 5));
        assert_eq!(store.read(&h).await.unwrap(), b"hello");
        assert!(matches!(store.put_bytes(Bytes::from_static(b"too long!")).await, Err(BlobError::TooLarge { .. })));
        let wrong = store
            .put_stream(
                futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from_static(b"abc"))]),
                Some(h),
            )
            .await;
        assert!(matches!(wrong, Err(BlobError::HashMismatch { .. })));
        assert_eq!(store.size(&sha256(b"abc")).await, None, "refused uploads leave nothing behind");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
