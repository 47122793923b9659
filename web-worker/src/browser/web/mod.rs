//! The Web Worker glue: [`worker_main`] installs the `onmessage` handler and runs one loop that
//! feeds the [`Machine`] with what happens (page messages, socket events, finished tasks, the
//! time) and carries out its actions with the browser's APIs. Nothing here decides anything.
//!
//! Everything runs on the worker's single thread: futures are polled by the browser's event loop
//! (`wasm_bindgen_futures::spawn_local`), shared state is `Rc`, and the loop owns the running
//! task's future, so aborting a task is dropping it.

pub mod blobs;
pub mod compute;
pub mod socket;
pub mod timer;

use super::keystore::{self, Signer};
use super::page::{LogLevel, PageMessage, State, Status, WorkerEvent, parse_secret_key};
use crate::machine::{Action, ConnId, LeaseUpload, Machine, TaskFailure, TaskOutput, ToSign};
use crate::outbox::{Frame, Next, Outbox};
use crate::pacing::Settings;
use compute::{Compute, Opened, open_compute};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use socket::{Socket, SocketEvent};
use starling_protocol::limits::MAX_INLINE_OUTPUT_BYTES;
use starling_protocol::sign::Keypair;
use starling_protocol::worker::Assignment;
use starling_protocol::{LeaseId, sha256};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use timer::Sleep;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

/// Bytes of input blobs kept between tasks.
const INPUT_CACHE_BYTES: u64 = 64 << 20;

/// What wakes the loop from outside it.
#[derive(Debug)]
pub enum Event {
    Page(JsValue),
    Socket { conn: ConnId, event: SocketEvent },
}

/// The engine's entry point, called once inside a dedicated module worker (by the web app's
/// exported `engine_main`, which `www/worker.js` awaits after `init()`). Returns at once; the
/// worker then lives on its message handler and event loop.
pub fn worker_main() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!("the worker crashed: {info}");
        web_sys::console::error_1(&message.as_str().into());
        let status = Status {
            state: State::Error,
            reason: Some(message.clone()),
            backend: None,
            adapter: None,
            public_key: None,
            tasks_done: 0,
            tasks_failed: 0,
            kernel: None,
        };
        if let Ok(scope) = js_sys::global().dyn_into::<DedicatedWorkerGlobalScope>() {
            post(&scope, &WorkerEvent::log(LogLevel::Error, message));
            post(&scope, &WorkerEvent::Status(status));
        }
    }));
    let Ok(scope) = js_sys::global().dyn_into::<DedicatedWorkerGlobalScope>() else {
        web_sys::console::error_1(&"worker_main must run in a dedicated Web Worker".into());
        return;
    };
    let (events, inbox) = unbounded();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let events = events.clone();
        move |message: MessageEvent| drop(events.unbounded_send(Event::Page(message.data())))
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker does.
    on_message.forget();
    wasm_bindgen_futures::spawn_local(Glue::new(scope, events).run(inbox));
}

/// The loop's state: the machine and the browser objects its actions refer to.
struct Glue {
    scope: DedicatedWorkerGlobalScope,
    machine: Machine,
    /// The worker key, once the keystore has opened it, and the `key` event that told the page.
    signer: Option<(Rc<Signer>, WorkerEvent)>,
    /// The keystore opening the worker key for a `start`, which waits for it.
    keying: Option<LocalBoxFuture<'static, Keyed>>,
    /// Frames in the machine's order, some waiting for the one being signed.
    outbox: Outbox,
    /// The frame being signed by a held key, and the connection it goes to.
    signing: Option<(ConnId, LocalBoxFuture<'static, Result<String, String>>)>,
    /// For sockets to report on.
    events: UnboundedSender<Event>,
    sockets: HashMap<ConnId, Socket>,
    compute: Option<Rc<Compute>>,
    opening: Option<LocalBoxFuture<'static, Opened>>,
    task: Option<(LeaseId, LocalBoxFuture<'static, Result<TaskOutput, TaskFailure>>)>,
    inputs: Rc<blobs::InputCache>,
    /// The armed timer and the deadline it is for.
    timer: Option<(u64, Sleep)>,
}

/// The worker key opened for a `start` (or why it could not be).
type Keyed = (Result<(Rc<Signer>, WorkerEvent), String>, Start);

/// A `start` from the page, carried out once the worker key is open.
struct Start {
    relay: String,
    settings: Settings,
}

/// What woke the loop.
enum Wake {
    Event(Event),
    Keyed(Result<(Rc<Signer>, WorkerEvent), String>, Start),
    Signed(ConnId, Result<String, String>),
    Opened(Box<Opened>),
    TaskDone(LeaseId, Result<TaskOutput, TaskFailure>),
    Timer,
}

impl Glue {
    fn new(scope: DedicatedWorkerGlobalScope, events: UnboundedSender<Event>) -> Glue {
        let jitter_seed = (js_sys::Math::random() * u64::MAX as f64) as u64;
        Glue {
            scope,
            machine: Machine::new(jitter_seed),
            signer: None,
            keying: None,
            outbox: Outbox::default(),
            signing: None,
            events,
            sockets: HashMap::new(),
            compute: None,
            opening: None,
            task: None,
            inputs: Rc::new(blobs::InputCache::new(INPUT_CACHE_BYTES)),
            timer: None,
        }
    }

    async fn run(mut self, mut inbox: UnboundedReceiver<Event>) {
        loop {
            self.carry_out_actions();
            self.arm_timer();
            let wake = poll_fn(|cx| {
                if let Poll::Ready(Some(event)) = inbox.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Event(event));
                }
                if let Some(keying) = &mut self.keying
                    && let Poll::Ready((signer, start)) = keying.as_mut().poll(cx)
                {
                    self.keying = None;
                    return Poll::Ready(Wake::Keyed(signer, start));
                }
                if let Some((conn, signing)) = &mut self.signing
                    && let Poll::Ready(text) = signing.as_mut().poll(cx)
                {
                    let conn = *conn;
                    self.signing = None;
                    self.outbox.signed();
                    return Poll::Ready(Wake::Signed(conn, text));
                }
                if let Some(opening) = &mut self.opening
                    && let Poll::Ready(opened) = opening.as_mut().poll(cx)
                {
                    self.opening = None;
                    return Poll::Ready(Wake::Opened(Box::new(opened)));
                }
                if let Some((lease, task)) = &mut self.task
                    && let Poll::Ready(outcome) = task.as_mut().poll(cx)
                {
                    let lease = *lease;
                    self.task = None;
                    return Poll::Ready(Wake::TaskDone(lease, outcome));
                }
                if let Some((_, sleep)) = &mut self.timer
                    && std::pin::Pin::new(sleep).poll(cx).is_ready()
                {
                    self.timer = None;
                    return Poll::Ready(Wake::Timer);
                }
                Poll::Pending
            })
            .await;
            let now = self.now_ms();
            match wake {
                Wake::Event(Event::Page(data)) => self.page_message(data, now),
                Wake::Event(Event::Socket { conn, event }) => match event {
                    SocketEvent::Opened => self.machine.socket_opened(conn, now),
                    SocketEvent::Text(text) => self.machine.socket_text(conn, &text, now),
                    SocketEvent::Closed(why) => {
                        self.sockets.remove(&conn);
                        self.drop_frames(conn);
                        self.machine.socket_closed(conn, &why, now);
                    }
                },
                Wake::Opened(opened) => {
                    if let Some(why) = &opened.fallback_reason {
                        let message = format!("no WebGPU ({why}); running built-in kernels on the CPU");
                        post(&self.scope, &WorkerEvent::log(LogLevel::Warn, message));
                    }
                    let Opened { compute, capabilities, .. } = *opened;
                    self.compute = Some(Rc::new(compute));
                    self.machine.compute_ready(capabilities, now);
                }
                Wake::Keyed(signer, start) => self.keyed(signer, start, now),
                Wake::Signed(conn, text) => {
                    match text {
                        Ok(text) => self.send_now(conn, &text),
                        Err(why) => {
                            // The relay would wait for this frame in vain: drop the connection,
                            // and the machine reconnects (and signs afresh) as for any loss.
                            let why = format!("a frame could not be signed: {why}");
                            post(&self.scope, &WorkerEvent::log(LogLevel::Error, why.clone()));
                            self.drop_frames(conn);
                            self.sockets.remove(&conn);
                            self.machine.socket_closed(conn, &why, now);
                        }
                    }
                    self.pump();
                }
                Wake::TaskDone(lease, outcome) => self.machine.task_finished(lease, outcome, now),
                Wake::Timer => self.machine.tick(now),
            }
        }
    }

    fn page_message(&mut self, data: JsValue, now: u64) {
        let message = match serde_wasm_bindgen::from_value::<PageMessage>(data) {
            Ok(message) => message,
            Err(e) => {
                let message = format!("ignored a message from the page: {e}");
                return post(&self.scope, &WorkerEvent::log(LogLevel::Error, message));
            }
        };
        match message {
            PageMessage::Start { relay, secret_key, settings, expect } => {
                // A later start replaces one still waiting for the key.
                self.keying = None;
                self.machine.expect_deployment(expect);
                let start = Start { relay, settings };
                if let Some((signer, told)) = &self.signer {
                    post(&self.scope, told);
                    return self.machine.start(&start.relay, Ok(signer.public()), start.settings, now);
                }
                // The first start opens the worker key (a later one, before it is open, replaces it).
                let legacy = match secret_key.as_deref().map(parse_secret_key).transpose() {
                    Ok(legacy) => legacy,
                    Err(why) => return self.machine.start(&start.relay, Err(why), start.settings, now),
                };
                let scope = self.scope.clone();
                self.keying = Some(Box::pin(async move { (open_worker_key(&scope, legacy).await, start) }));
            }
            PageMessage::Stop => {
                self.keying = None;
                self.machine.stop(now);
            }
            PageMessage::Settings { settings } => self.machine.set_settings(settings, now),
            PageMessage::Device(device) => self.machine.set_device(device, now),
        }
    }

    /// The worker key is open (or could not be): start the machine with it.
    fn keyed(&mut self, signer: Result<(Rc<Signer>, WorkerEvent), String>, start: Start, now: u64) {
        let public = signer.map(|(signer, told)| {
            let public = signer.public();
            self.signer = Some((signer, told));
            public
        });
        self.machine.start(&start.relay, public, start.settings, now);
    }

    /// Sends frames from the outbox in order until one must wait for a held key's signature.
    fn pump(&mut self) {
        let signer = self.signer.as_ref().map(|(signer, _)| signer.clone());
        let memory = signer.as_deref().and_then(Signer::memory);
        let sockets = &self.sockets;
        while let Some(next) = self.outbox.next(|conn| sockets.contains_key(&conn), memory) {
            match next {
                Next::Send(conn, text) => self.send_now(conn, &text),
                Next::Sign(conn, message) => match &signer {
                    Some(signer) => self.signing = Some((conn, Box::pin(sign_frame(signer.clone(), message)))),
                    None => {
                        let why = "a frame was not sent: no worker key to sign with";
                        post(&self.scope, &WorkerEvent::log(LogLevel::Error, why));
                        self.outbox.signed();
                    }
                },
            }
        }
    }

    /// Forgets the frames for `conn`, queued or being signed (its connection is gone).
    fn drop_frames(&mut self, conn: ConnId) {
        if self.outbox.close(conn) {
            self.signing = None;
        }
    }

    fn send_now(&self, conn: ConnId, text: &str) {
        if let Some(socket) = self.sockets.get(&conn)
            && let Err(why) = socket.send(text)
        {
            post(&self.scope, &WorkerEvent::log(LogLevel::Debug, format!("frame not sent: {why}")));
        }
    }

    /// Carries out the machine's actions, including those that carrying out produced.
    fn carry_out_actions(&mut self) {
        loop {
            let actions = self.machine.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                self.carry_out(action);
            }
        }
    }

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::OpenCompute => {
                // A lost device is dropped before a new one is asked for.
                self.compute = None;
                self.opening = Some(Box::pin(open_compute()));
            }
            Action::Connect { conn, url } => match Socket::open(conn, &url, &self.events) {
                Ok(socket) => {
                    self.sockets.insert(conn, socket);
                }
                Err(why) => {
                    let now = self.now_ms();
                    self.machine.socket_closed(conn, &why, now);
                }
            },
            Action::Send { conn, text } => {
                self.outbox.push(conn, Frame::Text(text));
                self.pump();
            }
            Action::SignAndSend { conn, message } => {
                self.outbox.push(conn, Frame::Sign(message));
                self.pump();
            }
            Action::Close { conn } => {
                self.sockets.remove(&conn);
                self.drop_frames(conn);
                self.pump();
            }
            Action::RunTask { assignment, relay, upload } => {
                let lease = assignment.lease;
                let signer = self.signer.as_ref().map(|(signer, _)| signer.clone());
                let run = run_assignment(self.compute.clone(), self.inputs.clone(), relay, signer, upload, *assignment);
                self.task = Some((lease, Box::pin(run)));
            }
            Action::AbortTask { lease } => {
                if self.task.as_ref().is_some_and(|(running, _)| *running == lease) {
                    self.task = None;
                }
            }
            Action::ReadNonce { conn, asked, bond, .. } => {
                // The browser's key owns itself, so the machine never asks; answer all the same.
                let now = self.now_ms();
                self.machine.nonce_read(conn, asked, bond, Err("a browser worker owns itself".into()), now);
            }
            Action::Post(event) => post(&self.scope, &event),
        }
    }

    /// Keeps one timer armed for the machine's next deadline.
    fn arm_timer(&mut self) {
        let deadline = self.machine.next_deadline();
        if self.timer.as_ref().map(|(at, _)| *at) == deadline {
            return;
        }
        let now = self.now_ms();
        // +1: never wake a hair early and spin on a deadline not yet reached.
        self.timer =
            deadline.map(|at| (at, Sleep::new(at.saturating_sub(now).saturating_add(1).min(u32::MAX as u64) as u32)));
    }

    /// Monotonic milliseconds (`performance.now()`), the machine's clock.
    fn now_ms(&self) -> u64 {
        self.scope.performance().map(|p| p.now() as u64).unwrap_or_else(|| js_sys::Date::now() as u64)
    }
}

/// One task from lease to output: fetch and check the inputs, run the kernel, and upload the
/// output to its content address (signed for the lease) unless it is small enough to travel
/// inline in the result. The machine signs and reports.
async fn run_assignment(
    compute: Option<Rc<Compute>>,
    inputs: Rc<blobs::InputCache>,
    relay: crate::relay_urls::RelayUrls,
    signer: Option<Rc<Signer>>,
    upload: LeaseUpload,
    a: Assignment,
) -> Result<TaskOutput, TaskFailure> {
    let failed = |reason: String| TaskFailure { reason, device_lost: false, declined: false };
    let compute = compute.ok_or_else(|| failed("no compute backend is open".into()))?;
    let mut blobs = Vec::with_capacity(a.inputs.len());
    for hash in &a.inputs {
        blobs.push(inputs.get(&relay, hash).await.map_err(|e| failed(format!("input {hash}: {e}")))?);
    }
    let views: Vec<&[u8]> = blobs.iter().map(|b| b.as_slice()).collect();
    let output =
        compute.run(&a.kernel, &a.params, &views, a.workgroups, a.output_size).await.map_err(|e| TaskFailure {
            device_lost: matches!(e, crate::Error::DeviceLost(_)),
            declined: matches!(e, crate::Error::CodeNotLoaded(_)),
            reason: e.to_string(),
        })?;
    if output.len() <= MAX_INLINE_OUTPUT_BYTES {
        return Ok(TaskOutput::inline(output));
    }
    let (output_hash, output_len) = (sha256(&output), output.len() as u64);
    let signer = signer.ok_or_else(|| failed("no worker key to sign the upload with".into()))?;
    let signature = signer.sign(&upload.bytes(&output_hash, output_len)).await.map_err(failed)?;
    let auth = upload.auth(signature);
    blobs::upload(&relay, &auth, &output_hash, &output).await.map_err(|e| failed(format!("upload: {e}")))?;
    Ok(TaskOutput { output_hash, output_len, inline: None })
}

/// Opens the worker key: the one the browser holds (importing `legacy`, the secret the page kept
/// before, on first use), or, where the browser cannot hold Ed25519 keys, `legacy` or a new key
/// for the page to keep. Tells the page which.
async fn open_worker_key(
    scope: &DedicatedWorkerGlobalScope,
    legacy: Option<Keypair>,
) -> Result<(Rc<Signer>, WorkerEvent), String> {
    let (signer, told) = match keystore::open("worker", legacy.as_ref()).await? {
        keystore::Opened::Held(held) => {
            if legacy.is_some() && !held.migrated {
                let message =
                    "the page keeps another worker key than the one this browser holds; it is left where it is";
                post(scope, &WorkerEvent::log(LogLevel::Warn, message));
            }
            let told = WorkerEvent::key_held(held.signer.public(), held.migrated);
            (held.signer, told)
        }
        keystore::Opened::Unsupported { code, detail } => {
            let message = format!("this browser cannot hold the worker key ({code}: {detail}); the page keeps it");
            post(scope, &WorkerEvent::log(LogLevel::Warn, message));
            let key = legacy.unwrap_or_else(Keypair::generate);
            let told = WorkerEvent::key_in_page(&key, code);
            (Signer::Memory(key), told)
        }
    };
    post(scope, &told);
    Ok((Rc::new(signer), told))
}

/// Signs a frame with a held key.
async fn sign_frame(signer: Rc<Signer>, message: ToSign) -> Result<String, String> {
    let mut signatures = Vec::new();
    for bytes in message.bytes() {
        signatures.push(signer.sign(bytes).await?);
    }
    message.complete(&signatures)
}

/// Posts `event` to the page as a plain object (numbers, not BigInts; objects, not Maps).
fn post(scope: &DedicatedWorkerGlobalScope, event: &WorkerEvent) {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    match event.serialize(&serializer) {
        Ok(value) => {
            if let Err(e) = scope.post_message(&value) {
                web_sys::console::error_1(&e);
            }
        }
        Err(e) => web_sys::console::error_1(&format!("cannot encode a message for the page: {e}").into()),
    }
}

/// A thrown JS value as a sentence (an Error's message, or its string form).
pub(crate) fn describe_js(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
