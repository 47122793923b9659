//! Blob transfer for the native worker: inputs fetched over HTTP, checked against their hash and
//! cached (bounded); outputs too large to send inline uploaded to their content address, signed
//! for their lease.

use super::NativeError;
use starling_protocol::upload::UploadAuth;
use starling_protocol::{Hash32, sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(super) struct InputCache {
    http: reqwest::Client,
    relay: String,
    capacity: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    blobs: HashMap<Hash32, Arc<Vec<u8>>>,
    order: VecDeque<Hash32>,
    bytes: u64,
}

impl InputCache {
    pub(super) fn new(http: reqwest::Client, relay: String, capacity: u64) -> Self {
        Self { http, relay: relay.trim_end_matches('/').to_string(), capacity, inner: Mutex::default() }
    }

    pub(super) async fn get(&self, hash: &Hash32) -> Result<Arc<Vec<u8>>, NativeError> {
        if let Some(hit) = self.inner.lock().expect("cache lock").blobs.get(hash) {
            return Ok(hit.clone());
        }
        let resp = self
            .http
            .get(format!("{}/v1/blobs/{hash}", self.relay))
            .send()
            .await
            .map_err(|e| NativeError::Http(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(NativeError::Http(format!("GET blob {hash}: {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| NativeError::Http(e.to_string()))?.to_vec();
        if sha256(&body) != *hash {
            return Err(NativeError::Http(format!("blob {hash} arrived with different content")));
        }
        let blob = Arc::new(body);
        let mut inner = self.inner.lock().expect("cache lock");
        inner.bytes += blob.len() as u64;
        inner.blobs.insert(*hash, blob.clone());
        inner.order.push_back(*hash);
        while inner.bytes > self.capacity {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(b) = inner.blobs.remove(&old) {
                inner.bytes -= b.len() as u64;
            }
        }
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
