//! The relay's HTTP and WebSocket API, and nothing else: each function is one call, decoded at the
//! edge into typed values or an [`Error`] a person can read. The relay is this page's origin, or
//! the one picked from the registry ([`browser::relay`]), across origins.

use crate::browser::Signer;
use crate::browser::{self, js_text};
use crate::format::fill;
use crate::lang::say;
use crate::views::WorkerView;
use crate::{Error, Result};
use js_sys::Uint8Array;
use serde::de::DeserializeOwned;
use starling_protocol::api::Health;
use starling_protocol::api::{ClientView, JobEscrow, StoredBlob};
use starling_protocol::api::{JobDetail, JobSummary};
use starling_protocol::events::JobEvent;
use starling_protocol::sign::{SignedJob, UploadPurpose, upload_bytes};
use starling_protocol::upload::UploadAuth;
use starling_protocol::{Hash32, JobId};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

enum Body<'a> {
    None,
    Json(String),
    /// Bytes with the headers that sign them (a blob upload).
    Signed(&'a [u8], Vec<(&'static str, String)>),
}

/// One request; `endpoint` names it in errors (`GET /v1/health`).
async fn send(method: &str, path: &str, body: Body<'_>, endpoint: &str) -> Result<web_sys::Response> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|e| Error::Browser(js_text(&e)))?;
    match body {
        Body::None => {}
        Body::Json(text) => {
            let _ = headers.set("content-type", "application/json");
            init.set_body(&JsValue::from_str(&text));
        }
        Body::Signed(bytes, signed) => {
            let _ = headers.set("content-type", "application/octet-stream");
            for (name, value) in signed {
                headers.set(name, &value).map_err(|e| Error::Browser(js_text(&e)))?;
            }
            init.set_body(&Uint8Array::from(bytes));
        }
    }
    let _ = headers.set("accept", "application/json");
    init.set_headers(&headers);
    let url = if path.starts_with('/') { format!("{}{path}", browser::relay()) } else { path.to_owned() };
    let request = web_sys::Request::new_with_str_and_init(&url, &init).map_err(|e| Error::Browser(js_text(&e)))?;
    let response = JsFuture::from(browser::window().fetch_with_request(&request))
        .await
        .map_err(|e| if browser::is_online() { Error::Network(js_text(&e)) } else { Error::Offline })?;
    let response: web_sys::Response = response.unchecked_into();
    if response.ok() {
        return Ok(response);
    }
    let status = response.status();
    let content_type = response.headers().get("content-type").ok().flatten();
    let body = bytes_of(&response).await.unwrap_or_default();
    match Error::from_response(endpoint, status, content_type.as_deref(), &body) {
        // The service worker could not reach the relay and the page knows the device is offline.
        Error::Network(_) if !browser::is_online() => Err(Error::Offline),
        error => Err(error),
    }
}

async fn bytes_of(response: &web_sys::Response) -> Result<Vec<u8>> {
    let promise = response.array_buffer().map_err(|e| Error::Browser(js_text(&e)))?;
    let buffer = JsFuture::from(promise).await.map_err(|e| Error::Network(js_text(&e)))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// A successful answer read as JSON; an answer that is not JSON (an HTML page from a relay that
/// does not know the route) means the endpoint is missing.
async fn json<T: DeserializeOwned>(response: web_sys::Response, endpoint: &str) -> Result<T> {
    let content_type = response.headers().get("content-type").ok().flatten().unwrap_or_default();
    if !content_type.contains("json") {
        return Err(Error::Unsupported { endpoint: endpoint.to_string() });
    }
    let body = bytes_of(&response).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Decode(format!("{endpoint}: {e}")))
}

async fn get_json<T: DeserializeOwned>(path: &str, endpoint: &str) -> Result<T> {
    json(send("GET", path, Body::None, endpoint).await?, endpoint).await
}

pub async fn health() -> Result<Health> {
    get_json("/v1/health", "GET /v1/health").await
}

/// The relay's own samples of the network's figures, oldest first.
pub async fn network_history() -> Result<starling_protocol::api::NetworkHistory> {
    get_json("/v1/network/history", "GET /v1/network/history").await
}

/// The escrow's relay registry, as the relay reads it.
pub async fn relays() -> Result<starling_protocol::api::RelayList> {
    get_json("/v1/relays", "GET /v1/relays").await
}

pub async fn worker(key: &str) -> Result<WorkerView> {
    get_json(&format!("/v1/workers/{key}"), "GET /v1/workers/{key}").await
}

pub async fn workers(limit: u32) -> Result<Vec<WorkerView>> {
    get_json(&format!("/v1/workers?limit={limit}"), "GET /v1/workers").await
}

pub async fn client(key: &str) -> Result<ClientView> {
    get_json(&format!("/v1/clients/{key}"), "GET /v1/clients/{key}").await
}

pub async fn jobs(limit: u32) -> Result<Vec<JobSummary>> {
    get_json(&format!("/v1/jobs?limit={limit}"), "GET /v1/jobs").await
}

pub async fn job(id: JobId) -> Result<JobDetail> {
    get_json(&format!("/v1/jobs/{id}"), "GET /v1/jobs/{id}").await
}

pub async fn job_escrow(id: JobId) -> Result<JobEscrow> {
    get_json(&format!("/v1/jobs/{id}/escrow"), "GET /v1/jobs/{id}/escrow").await
}

pub fn task_output_path(id: JobId, index: u32) -> String {
    format!("{}/v1/jobs/{id}/tasks/{index}/output", browser::relay())
}

pub async fn task_output(id: JobId, index: u32) -> Result<Vec<u8>> {
    let response =
        send("GET", &task_output_path(id, index), Body::None, "GET /v1/jobs/{id}/tasks/{index}/output").await?;
    bytes_of(&response).await
}

pub async fn blob(hash: &Hash32) -> Result<Vec<u8>> {
    let response = send("GET", &format!("/v1/blobs/{hash}"), Body::None, "GET /v1/blobs/{hash}").await?;
    bytes_of(&response).await
}

/// Uploads `bytes` as a job input signed by the client `key` (the relay counts it against the
/// key's quota until a job uses it), and checks the relay stored them under the hash the spec
/// names.
/// Uploads `bytes` as an input blob charged to the client key `key` (which signs the upload).
pub async fn upload(key: &Signer, bytes: &[u8], expected: &Hash32) -> Result<StoredBlob> {
    let endpoint = "PUT /v1/blobs/{hash}";
    let (purpose, len) = (UploadPurpose::Input, bytes.len() as u64);
    let signature = key.sign(&upload_bytes(purpose, expected, len, &key.public())).await.map_err(Error::Browser)?;
    let auth = UploadAuth { key: key.public(), purpose, signature };
    let body = Body::Signed(bytes, auth.headers());
    let stored: StoredBlob =
        json(send("PUT", &format!("/v1/blobs/{expected}"), body, endpoint).await?, endpoint).await?;
    if stored.hash != *expected {
        return Err(Error::Decode(format!("the relay stored the upload as {}, not {expected}", stored.hash)));
    }
    Ok(stored)
}

pub async fn submit(job: &SignedJob) -> Result<JobSummary> {
    let body = serde_json::to_string(job).map_err(|e| Error::Browser(e.to_string()))?;
    let endpoint = "POST /v1/jobs";
    json(send("POST", "/v1/jobs", Body::Json(body), endpoint).await?, endpoint).await
}

/// Whether a job's event stream is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Live,
    /// Closed; reconnecting after a pause. The text says why it closed.
    Reconnecting(String),
    /// The job ended; nothing more will come.
    Finished,
}

struct FollowState {
    socket: Option<web_sys::WebSocket>,
    closures: Vec<Box<dyn std::any::Any>>,
    stopped: Cell<bool>,
    finished: Cell<bool>,
    failures: Cell<u32>,
}

/// Follows `GET /v1/jobs/{id}/events` and reconnects with growing pauses when the socket drops,
/// until the job ends or this value is dropped. Each reconnect starts with a fresh snapshot, so
/// nothing is missed for long.
pub struct JobFollower {
    state: Rc<RefCell<FollowState>>,
}

impl std::fmt::Debug for JobFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobFollower")
    }
}

type OnEvent = Rc<dyn Fn(JobEvent)>;
type OnLink = Rc<dyn Fn(Link)>;

impl JobFollower {
    pub fn start(id: JobId, on_event: impl Fn(JobEvent) + 'static, on_link: impl Fn(Link) + 'static) -> JobFollower {
        let state = Rc::new(RefCell::new(FollowState {
            socket: None,
            closures: Vec::new(),
            stopped: Cell::new(false),
            finished: Cell::new(false),
            failures: Cell::new(0),
        }));
        connect(id, state.clone(), Rc::new(on_event), Rc::new(on_link));
        JobFollower { state }
    }
}

impl Drop for JobFollower {
    fn drop(&mut self) {
        let mut state = self.state.borrow_mut();
        state.stopped.set(true);
        if let Some(socket) = state.socket.take() {
            socket.set_onmessage(None);
            socket.set_onclose(None);
            let _ = socket.close();
        }
        state.closures.clear();
    }
}

fn connect(id: JobId, state: Rc<RefCell<FollowState>>, on_event: OnEvent, on_link: OnLink) {
    if state.borrow().stopped.get() {
        return;
    }
    let socket = match web_sys::WebSocket::new(&browser::ws_url(&format!("/v1/jobs/{id}/events"))) {
        Ok(socket) => socket,
        Err(e) => {
            on_link(Link::Reconnecting(fill(say!(events.not_opened), &[("error", &js_text(&e))])));
            schedule_reconnect(id, state, on_event, on_link);
            return;
        }
    };
    let on_message = {
        let (state, on_event, on_link) = (state.clone(), on_event.clone(), on_link.clone());
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let Some(text) = event.data().as_string() else { return };
            match serde_json::from_str::<JobEvent>(&text) {
                Ok(event) => {
                    let s = state.borrow();
                    s.failures.set(0);
                    if matches!(event, JobEvent::Snapshot { .. }) {
                        on_link(Link::Live);
                    }
                    if matches!(event, JobEvent::JobDone { .. } | JobEvent::JobFailed { .. }) {
                        s.finished.set(true);
                    }
                    drop(s);
                    on_event(event);
                }
                Err(e) => web_sys::console::warn_1(&JsValue::from_str(&format!("job {id}: unreadable event: {e}"))),
            }
        })
    };
    let on_close = {
        let (state, on_event, on_link) = (state.clone(), on_event.clone(), on_link.clone());
        Closure::<dyn FnMut(web_sys::CloseEvent)>::new(move |event: web_sys::CloseEvent| {
            let s = state.borrow();
            if s.stopped.get() {
                return;
            }
            if s.finished.get() {
                drop(s);
                on_link(Link::Finished);
                return;
            }
            let reason = event.reason();
            let why = if !browser::is_online() {
                say!(events.offline).to_string()
            } else if reason.is_empty() {
                fill(say!(events.closed), &[("code", &event.code().to_string())])
            } else {
                reason
            };
            drop(s);
            on_link(Link::Reconnecting(why));
            schedule_reconnect(id, state.clone(), on_event.clone(), on_link.clone());
        })
    };
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut s = state.borrow_mut();
    if let Some(old) = s.socket.replace(socket) {
        old.set_onmessage(None);
        old.set_onclose(None);
        let _ = old.close();
    }
    // Keep only the closures of the live socket (and the previous one, which may still be
    // running its close handler right now).
    let stale = s.closures.len().saturating_sub(2);
    s.closures.drain(..stale);
    s.closures.push(Box::new(on_message));
    s.closures.push(Box::new(on_close));
}

fn schedule_reconnect(id: JobId, state: Rc<RefCell<FollowState>>, on_event: OnEvent, on_link: OnLink) {
    let failures = {
        let s = state.borrow();
        s.failures.set(s.failures.get() + 1);
        s.failures.get()
    };
    // 1 s, 2 s, 4 s … up to 30 s.
    let pause = (1000u32 << failures.min(5).saturating_sub(1)).min(30_000);
    wasm_bindgen_futures::spawn_local(async move {
        browser::sleep(pause).await;
        connect(id, state, on_event, on_link);
    });
}
