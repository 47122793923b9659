//! Blob transfer in the browser, as the native worker does it: inputs fetched from
//! `GET /v1/blobs/{hash}`, read with a size bound, checked against their hash and cached (bounded);
//! outputs too large to travel inline uploaded with `PUT /v1/blobs/{hash}`, signed for their lease.
//! Every request has a deadline.

use super::describe_js;
use super::timer::{Sleep, with_timeout};
use crate::blob_cache::BlobCache;
use crate::relay_urls::RelayUrls;
use js_sys::{Reflect, Uint8Array};
use starling_protocol::limits::MAX_BLOB_BYTES;
use starling_protocol::upload::UploadAuth;
use starling_protocol::{Hash32, sha256};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, ReadableStreamDefaultReader, RequestInit, Response};

/// Longest a single blob request may take, like the native worker's HTTP client timeout.
const REQUEST_TIMEOUT_MS: u32 = 120_000;

/// Inputs by hash, oldest evicted first once over `capacity` bytes: tasks of one job often share
/// inputs (a matrix, a prefix), and a tab should not hold more than a few blobs.
#[derive(Debug)]
pub struct InputCache {
    inner: RefCell<BlobCache<Rc<Vec<u8>>>>,
}

impl InputCache {
    pub fn new(capacity: u64) -> Self {
        InputCache { inner: RefCell::new(BlobCache::new(capacity)) }
    }

    /// The blob with `hash`, from the cache or the relay.
    pub async fn get(&self, relay: &RelayUrls, hash: &Hash32) -> Result<Rc<Vec<u8>>, String> {
        if let Some(hit) = self.inner.borrow().get(hash) {
            return Ok(hit);
        }
        let body = fetch_blob(&relay.blob(hash)).await?;
        if sha256(&body) != *hash {
            return Err(format!("blob {hash} arrived with different content"));
        }
        let blob = Rc::new(body);
        self.inner.borrow_mut().insert(*hash, blob.clone());
        Ok(blob)
    }
}

/// GETs `url`, refusing a body over [`MAX_BLOB_BYTES`] as soon as it is announced or read.
async fn fetch_blob(url: &str) -> Result<Vec<u8>, String> {
    let controller = AbortController::new().map_err(|e| describe_js(&e))?;
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_signal(Some(&controller.signal()));
    let download = async {
        let response = fetch(url, &init).await?;
        if !response.ok() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let announced = response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = announced
            && len > MAX_BLOB_BYTES
        {
            return Err(format!("GET {url}: {len} bytes, over the {MAX_BLOB_BYTES} byte blob limit"));
        }
        read_bounded(&response, MAX_BLOB_BYTES).await.map_err(|e| format!("GET {url}: {e}"))
    };
    let result = with_timeout(download, Sleep::new(REQUEST_TIMEOUT_MS)).await;
    // Stops the transfer if it is still going (timeout or refusal); a no-op once it is done.
    controller.abort();
    result.unwrap_or_else(|| Err(format!("GET {url}: no answer within {} s", REQUEST_TIMEOUT_MS / 1000)))
}

/// PUTs `body` to the blob's content address, with the upload's signed headers.
pub async fn upload(relay: &RelayUrls, auth: &UploadAuth, hash: &Hash32, body: &[u8]) -> Result<(), String> {
    let url = relay.blob(hash);
    let controller = AbortController::new().map_err(|e| describe_js(&e))?;
    let init = RequestInit::new();
    init.set_method("PUT");
    let headers = Headers::new().map_err(|e| describe_js(&e))?;
    for (name, value) in auth.headers() {
        headers.set(name, &value).map_err(|e| describe_js(&e))?;
    }
    init.set_headers(&headers);
    init.set_signal(Some(&controller.signal()));
    init.set_body(&Uint8Array::from(body).into());
    let send = async {
        let response = fetch(&url, &init).await?;
        if response.ok() {
            return Ok(());
        }
        // The relay's error body says why (`{code, message}`); show a bounded part of it.
        let detail = match response.text() {
            Ok(promise) => JsFuture::from(promise).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
            Err(_) => String::new(),
        };
        Err(format!("PUT {url}: HTTP {} {}", response.status(), detail.chars().take(200).collect::<String>()))
    };
    let result = with_timeout(send, Sleep::new(REQUEST_TIMEOUT_MS)).await;
    controller.abort();
    result.unwrap_or_else(|| Err(format!("PUT {url}: no answer within {} s", REQUEST_TIMEOUT_MS / 1000)))
}

async fn fetch(url: &str, init: &RequestInit) -> Result<Response, String> {
    let fetch: js_sys::Function = Reflect::get(&js_sys::global(), &"fetch".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or("this scope has no fetch")?;
    let promise: js_sys::Promise = fetch
        .call2(&JsValue::UNDEFINED, &url.into(), init)
        .map_err(|e| describe_js(&e))?
        .dyn_into()
        .map_err(|_| "fetch returned no promise".to_string())?;
    let response = JsFuture::from(promise).await.map_err(|e| format!("{url}: {}", describe_js(&e)))?;
    response.dyn_into().map_err(|_| "fetch resolved to something other than a Response".into())
}

/// Reads the body chunk by chunk, giving up once it passes `limit` bytes.
async fn read_bounded(response: &Response, limit: u64) -> Result<Vec<u8>, String> {
    let Some(body) = response.body() else { return Ok(Vec::new()) };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| describe_js(&e))?;
        if Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            return Ok(bytes);
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .ok()
            .and_then(|v| v.dyn_into().ok())
            .ok_or("the body stream yielded something other than bytes")?;
        if bytes.len() as u64 + u64::from(value.length()) > limit {
            let _ = reader.cancel();
            return Err(format!("body over the {limit} byte blob limit"));
        }
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
    }
}
