//! Blob transfer for the native worker: inputs fetched over HTTP, checked against their hash and
//! cached (bounded); outputs too large to send inline uploaded to their content address, signed
//! for their lease.

use super::NativeError;
use crate::blob_cache::BlobCache;
use crate::relay_urls::RelayUrls;
use starling_protocol::limits::MAX_BLOB_BYTES;
use starling_protocol::upload::UploadAuth;
use starling_protocol::{Hash32, sha256};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(super) struct InputCache {
    http: reqwest::Client,
    inner: Mutex<BlobCache<Arc<Vec<u8>>>>,
}

impl InputCache {
    pub(super) fn new(http: reqwest::Client, capacity: u64) -> Self {
        Self { http, inner: Mutex::new(BlobCache::new(capacity)) }
    }

    /// The blob `hash`, from the cache or else from `relay` (the one the task came from).
    pub(super) async fn get(&self, relay: &RelayUrls, hash: &Hash32) -> Result<Arc<Vec<u8>>, NativeError> {
        if let Some(hit) = self.inner.lock().expect("cache lock").get(hash) {
            return Ok(hit);
        }
        let mut resp = self.http.get(relay.blob(hash)).send().await.map_err(|e| NativeError::Http(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(NativeError::Http(format!("GET blob {hash}: {}", resp.status())));
        }
        // At most a blob's size, whatever the server announces or sends.
        if resp.content_length().is_some_and(|len| len > MAX_BLOB_BYTES) {
            return Err(NativeError::Http(format!("GET blob {hash}: over the {MAX_BLOB_BYTES} byte blob limit")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| NativeError::Http(e.to_string()))? {
            if body.len() as u64 + chunk.len() as u64 > MAX_BLOB_BYTES {
                return Err(NativeError::Http(format!("GET blob {hash}: over the {MAX_BLOB_BYTES} byte blob limit")));
            }
            body.extend_from_slice(&chunk);
        }
        if sha256(&body) != *hash {
            return Err(NativeError::Http(format!("blob {hash} arrived with different content")));
        }
        let blob = Arc::new(body);
        self.inner.lock().expect("cache lock").insert(*hash, blob.clone());
        Ok(blob)
    }
}

/// Uploads an output too large to travel inline, signed for the lease it answers.
pub(super) async fn upload(
    http: &reqwest::Client,
    relay: &str,
    auth: &UploadAuth,
    hash: &Hash32,
    body: Vec<u8>,
) -> Result<(), NativeError> {
    let url = format!("{}/v1/blobs/{hash}", relay.trim_end_matches('/'));
    let mut req = http.put(url);
    for (name, value) in auth.headers() {
        req = req.header(name, value);
    }
    let resp = req.body(body).send().await.map_err(|e| NativeError::Http(e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(NativeError::Http(format!("PUT blob {hash}: {status} {text}")));
    }
    Ok(())
}
