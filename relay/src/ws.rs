//! WebSockets: the worker channel (`/v1/workers/ws`) and live job events
//! (`/v1/jobs/{id}/events`). Each connection is split into a writer task fed by a channel and a
//! reader loop; when one ends the other is aborted.

use crate::AppState;
use crate::blobs::{Owner, Upload, wall_ms};
use crate::core::Input;
use crate::driver::Command;
use crate::error::ApiError;
use crate::escrow::Registration;
use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use starling_protocol::api::JobState;
use starling_protocol::events::JobEvent;
use starling_protocol::limits::{MAX_INLINE_OUTPUT_BYTES, MAX_REASON_LEN, MAX_WS_FRAME_BYTES};
use starling_protocol::sign::{auth_bytes, result_bytes_v2, result_deployment, verify};
use starling_protocol::worker::{Capabilities, InlineBytes, RelayMessage, WorkerMessage};
use starling_protocol::{ErrorBody, ErrorCode, Hash32, JobId, LeaseId, PROTOCOL_VERSION, PublicKey, TaskId, sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Time a worker has to finish the hello/auth handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Protocol errors tolerated on one connection before it is closed.
const MAX_PROTOCOL_ERRORS: u32 = 16;
/// Messages a worker may send per second on average, and in one burst; more are refused as
/// protocol errors (and close the connection soon), so no connection can flood the core.
const MESSAGES_PER_SEC: f64 = 500.0;
const MESSAGE_BURST: f64 = 1000.0;
/// Leases a connection remembers as its own (a worker holds at most 64 slots).
const MAX_LEASES_PER_CONN: usize = 1024;

/// A token bucket over the worker's messages.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    at: tokio::time::Instant,
}

impl RateLimit {
    fn new() -> Self {
        Self { tokens: MESSAGE_BURST, at: tokio::time::Instant::now() }
    }

    fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * MESSAGES_PER_SEC;
        self.tokens = (self.tokens + refill).min(MESSAGE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A request to a WebSocket endpoint that is not a WebSocket upgrade, as `{code, message}`.
fn not_an_upgrade(e: WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(ErrorCode::Malformed, format!("this endpoint speaks WebSocket: {}", e.body_text()))
}

pub async fn worker_socket(
    State(app): State<AppState>,
    extensions: axum::http::Extensions,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let addr = crate::serve::peer(&extensions).map(|a| a.ip());
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => return not_an_upgrade(e).into_response(),
    };
    let Ok(permit) = app.worker_slots.clone().try_acquire_owned() else {
        return ApiError::new(ErrorCode::RateLimited, "relay is at its worker connection limit").into_response();
    };
    upgrade
        // tungstenite's default 128 KiB read buffer stays resident per idle worker; protocol
        // frames are small.
        .read_buffer_size(4 << 10)
        .max_message_size(MAX_WS_FRAME_BYTES)
        .max_frame_size(MAX_WS_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            serve_worker(app, socket, addr).await;
            drop(permit);
        })
}

fn encode(msg: &RelayMessage) -> Message {
    Message::Text(Utf8Bytes::from(serde_json::to_string(msg).expect("relay messages serialize")))
}

fn error_frame(code: ErrorCode, message: impl Into<String>) -> RelayMessage {
    RelayMessage::Error(ErrorBody::new(code, message))
}

/// Next decoded worker message; None when the socket closed.
async fn next_message(stream: &mut SplitStream<WebSocket>) -> Option<Result<WorkerMessage, ErrorBody>> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => {
                return Some(
                    serde_json::from_str(text.as_str())
                        .map_err(|e| ErrorBody::new(ErrorCode::Malformed, format!("bad worker message: {e}"))),
                );
            }
            Ok(Message::Binary(_)) => {
                return Some(Err(ErrorBody::new(ErrorCode::Malformed, "binary frames are not part of the protocol")));
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

async fn refuse(mut sink: SplitSink<WebSocket, Message>, code: ErrorCode, message: String) {
    let _ = sink.send(encode(&error_frame(code, message.clone()))).await;
    let reason = Utf8Bytes::from(message.chars().take(120).collect::<String>());
    let _ = sink.send(Message::Close(Some(CloseFrame { code: 1008, reason }))).await;
}

fn check_capabilities(caps: &Capabilities) -> Result<(), String> {
    if !(caps.duty_cycle > 0.0 && caps.duty_cycle <= 1.0) {
        return Err("duty_cycle must be in (0, 1]".into());
    }
    if caps.slots == 0 || caps.slots > 64 {
        return Err("slots must be in 1..=64".into());
    }
    if caps.adapter.name.len() > 256 || caps.adapter.driver.len() > 256 || caps.adapter.device_type.len() > 32 {
        return Err("adapter strings are too long".into());
    }
    Ok(())
}

async fn handshake(
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
) -> Result<(PublicKey, Capabilities), ErrorBody> {
    let (key, caps) = match next_message(stream).await {
        Some(Ok(WorkerMessage::Hello { protocol_version, worker_key, capabilities })) => {
            if protocol_version != PROTOCOL_VERSION {
                return Err(ErrorBody::new(
                    ErrorCode::UnsupportedVersion,
                    format!("relay speaks protocol {PROTOCOL_VERSION}, worker {protocol_version}"),
                ));
            }
            check_capabilities(&capabilities).map_err(|m| ErrorBody::new(ErrorCode::Malformed, m))?;
            (worker_key, capabilities)
        }
        Some(Ok(_)) => return Err(ErrorBody::new(ErrorCode::OutOfOrder, "send hello first")),
        Some(Err(e)) => return Err(e),
        None => {
            return Err(ErrorBody::new(ErrorCode::Malformed, "closed during handshake"));
        }
    };
    let nonce = Hash32(rand::random());
    sink.send(encode(&RelayMessage::Challenge { nonce }))
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Malformed, "closed during handshake"))?;
    match next_message(stream).await {
        Some(Ok(WorkerMessage::Auth { signature })) => {
            verify(&key, &auth_bytes(&nonce, &key), &signature)
                .map_err(|e| ErrorBody::new(ErrorCode::BadSignature, format!("challenge signature: {e}")))?;
        }
        Some(Ok(_)) => {
            return Err(ErrorBody::new(ErrorCode::OutOfOrder, "answer the challenge with auth"));
        }
        Some(Err(e)) => return Err(e),
        None => {
            return Err(ErrorBody::new(ErrorCode::Malformed, "closed during handshake"));
        }
    }
    Ok((key, caps))
}

async fn serve_worker(app: AppState, socket: WebSocket, addr: Option<std::net::IpAddr>) {
    let (mut sink, mut stream) = socket.split();
    let (key, caps) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut sink, &mut stream)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return refuse(sink, e.code, e.message).await,
        Err(_) => {
            return refuse(sink, ErrorCode::OutOfOrder, "handshake timed out".into()).await;
        }
    };
    let config = app.core_config;
    // Results are signed for this deployment and verified here for it.
    let deployment = app.escrow.as_ref().map(|e| e.deployment());
    let welcome = RelayMessage::Welcome {
        heartbeat_ms: config.scheduler.lease_ms / 3,
        lease_ms: config.scheduler.lease_ms,
        escrow: deployment.clone(),
    };
    if sink.send(encode(&welcome)).await.is_err() {
        return;
    }
    // Paid work needs a registered, bonded key: an unregistered worker is asked to sign up
    // before it gets work, so its first results already count toward paid quorums. A worker
    // that answers anything else declines, and works unpaid.
    let (mut first, mut paid, mut owner) = (None, false, None);
    if let Some(escrow) = &app.escrow {
        match register(escrow, key, &mut sink, &mut stream).await {
            Ok(Standing { interjected, eligible, owner: o }) => (first, paid, owner) = (interjected, eligible, o),
            Err(()) => return,
        }
    }
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    // The core holds the only sender of `rx`: when it drops the worker (silent, overloaded,
    // replaced by a reconnect), `rx` closes, the writer closes the socket and this task ends.
    // Protocol errors found here travel on a separate channel so they do not keep it open.
    let (tx, mut rx) = mpsc::channel::<RelayMessage>(1024);
    let (errors_tx, mut errors_rx) = mpsc::channel::<RelayMessage>(MAX_PROTOCOL_ERRORS as usize);
    // The leases this connection was handed, with their job's spec digest (which the result
    // signature names): answers about any other lease are refused here, without reaching the
    // core.
    let held: Arc<Mutex<HashMap<LeaseId, Hash32>>> = Arc::default();
    let writer_held = held.clone();
    let mut writer = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                Some(msg) = errors_rx.recv() => msg,
            };
            match &msg {
                RelayMessage::Assign(a) => {
                    let mut held = writer_held.lock().expect("held leases lock");
                    if held.len() < MAX_LEASES_PER_CONN {
                        held.insert(a.lease, a.spec_digest);
                    }
                }
                RelayMessage::Cancel { lease } => {
                    writer_held.lock().expect("held leases lock").remove(lease);
                }
                _ => {}
            }
            if sink.send(encode(&msg)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    if app.core.send(Command::WorkerOnline { key, conn, caps, paid, owner, addr, tx }).await.is_err() {
        writer.abort();
        return;
    }
    tracing::debug!(worker = %key, conn, "worker connected");
    let mut errors = 0u32;
    let mut rate = RateLimit::new();
    loop {
        let msg = match first.take() {
            Some(msg) => Some(msg),
            None => tokio::select! {
                msg = next_message(&mut stream) => msg,
                _ = &mut writer => break,
            },
        };
        let Some(msg) = msg else { break };
        let lease_of = |m: &WorkerMessage| match m {
            WorkerMessage::Result { lease, .. }
            | WorkerMessage::Failed { lease, .. }
            | WorkerMessage::Decline { lease, .. } => Some(*lease),
            _ => None,
        };
        let outcome = match msg {
            _ if !rate.allow() => Err(ErrorBody::new(
                ErrorCode::RateLimited,
                format!("more than {MESSAGES_PER_SEC} messages per second; slow down"),
            )),
            Ok(m) if lease_of(&m).is_some_and(|l| !held.lock().expect("held leases lock").contains_key(&l)) => {
                let lease = lease_of(&m).expect("checked above");
                Err(ErrorBody::new(ErrorCode::LeaseNotHeld, format!("lease {lease} is not held by this worker")))
            }
            Err(e) => Err(e),
            Ok(WorkerMessage::Hello { .. } | WorkerMessage::Auth { .. }) => {
                Err(ErrorBody::new(ErrorCode::OutOfOrder, "already authenticated"))
            }
            Ok(WorkerMessage::Heartbeat { state }) => Ok(Command::Core(Input::Heartbeat { key, state })),
            Ok(WorkerMessage::Result { lease, task, output_hash, output_len, signature, output }) => {
                // Read once: a cancel may have taken the lease since the check above.
                let digest = held.lock().expect("held leases lock").get(&lease).copied();
                let checked = match digest {
                    Some(digest) => {
                        let d = result_deployment(deployment.as_ref());
                        verify(&key, &result_bytes_v2(d, task, &digest, &output_hash, output_len, &key), &signature)
                            .map_err(|e| {
                                ErrorBody::new(ErrorCode::BadSignature, format!("result for lease {lease}: {e}"))
                            })
                    }
                    None => Err(ErrorBody::new(
                        ErrorCode::LeaseNotHeld,
                        format!("lease {lease} is not held by this worker"),
                    )),
                };
                match checked {
                    Ok(()) => match output {
                        Some(InlineBytes(bytes)) => {
                            let inline = InlineOutput { key, lease, task, output_hash, output_len, bytes };
                            store_inline_output(&app, inline).await.map(|()| {
                                Command::Core(Input::Result { key, lease, task, output_hash, output_len, signature })
                            })
                        }
                        None => check_own_upload(&app, key, lease, &output_hash, output_len).await.map(|()| {
                            Command::Core(Input::Result { key, lease, task, output_hash, output_len, signature })
                        }),
                    },
                    Err(e) => Err(e),
                }
            }
            Ok(WorkerMessage::Failed { lease, task, reason }) => {
                let reason: String = reason.chars().take(MAX_REASON_LEN).collect();
                Ok(Command::Core(Input::Failed { key, lease, task, reason }))
            }
            Ok(WorkerMessage::Decline { lease, task, reason }) => {
                let reason: String = reason.chars().take(MAX_REASON_LEN).collect();
                Ok(Command::Core(Input::Decline { key, lease, task, reason }))
            }
            Ok(WorkerMessage::Register { .. }) => {
                Err(ErrorBody::new(ErrorCode::OutOfOrder, "registration is answered right after welcome, when asked"))
            }
        };
        match outcome {
            Ok(cmd) => {
                if let Command::Core(
                    Input::Result { lease, .. } | Input::Failed { lease, .. } | Input::Decline { lease, .. },
                ) = &cmd
                {
                    // Answered: later messages about it are refused here.
                    held.lock().expect("held leases lock").remove(lease);
                }
                if app.core.send(cmd).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                errors += 1;
                tracing::debug!(worker = %key, code = ?e.code, message = %e.message, "protocol error");
                if errors_tx.try_send(RelayMessage::Error(e)).is_err() || errors >= MAX_PROTOCOL_ERRORS {
                    break;
                }
            }
        }
    }
    let _ = app.core.send(Command::Core(Input::WorkerOffline { key, conn })).await;
    writer.abort();
    tracing::debug!(worker = %key, conn, "worker disconnected");
}

/// A result without inline output counts only with this lease's own upload, stored whole, of
/// exactly the signed hash and length: a blob with that hash stored by someone else proves
/// nothing about this worker (it may have copied the hash), and the core decides without
/// touching the blob store. The lease stays the worker's: it may upload and report again.
async fn check_own_upload(
    app: &AppState,
    key: PublicKey,
    lease: LeaseId,
    output_hash: &Hash32,
    output_len: u64,
) -> Result<(), ErrorBody> {
    let upload_first = || {
        ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "lease {lease}: upload your output first (PUT /v1/blobs/{output_hash}, {output_len} bytes, signed \
                 for this lease), then report it"
            ),
        )
    };
    match app.core.shared.leases.uploaded(lease, &key) {
        None => Err(upload_first()),
        Some((uploaded, _)) if uploaded != *output_hash => Err(ErrorBody::new(
            ErrorCode::HashMismatch,
            format!("lease {lease}: this lease's upload is {uploaded}, the result says {output_hash}"),
        )),
        Some((_, size)) if size != output_len => Err(ErrorBody::new(
            ErrorCode::Malformed,
            format!("lease {lease}: the result says {output_len} bytes, the task declares {size}"),
        )),
        // Confirmed uploads are on disk; an unreferenced one could only be gone if it outlived
        // the blob TTL, far beyond any lease.
        Some(_) if app.blobs.size(output_hash).await != Some(output_len) => Err(upload_first()),
        Some(_) => Ok(()),
    }
}

/// An output sent inside a result message.
struct InlineOutput {
    key: PublicKey,
    lease: LeaseId,
    task: TaskId,
    output_hash: Hash32,
    output_len: u64,
    bytes: Vec<u8>,
}

/// Stores an inline output as the lease's output blob, on the connection's side: only a small
/// one, only the bytes the signed hash and length name, and only for a lease this worker holds
/// for this task and of the task's declared size (one output per lease).
async fn store_inline_output(app: &AppState, o: InlineOutput) -> Result<(), ErrorBody> {
    let len = o.bytes.len() as u64;
    if o.bytes.len() > MAX_INLINE_OUTPUT_BYTES {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("lease {}: inline outputs are at most {MAX_INLINE_OUTPUT_BYTES} bytes; upload it", o.lease),
        ));
    }
    if len != o.output_len {
        return Err(ErrorBody::new(
            ErrorCode::Malformed,
            format!("lease {}: inline output is {len} bytes, the result says {}", o.lease, o.output_len),
        ));
    }
    let actual = sha256(&o.bytes);
    if actual != o.output_hash {
        return Err(ErrorBody::new(
            ErrorCode::HashMismatch,
            format!("lease {}: inline output hashes to {actual}, the result says {}", o.lease, o.output_hash),
        ));
    }
    let leases = &app.core.shared.leases;
    leases.charge(o.lease, &o.key, Some(o.task), &o.output_hash, len).map_err(crate::api::output_refused)?;
    let upload = Upload { hash: o.output_hash, len, owner: Owner::Lease(o.lease) };
    if let Err(e) = app.blobs.put_bytes(upload, o.bytes.into(), wall_ms()).await {
        leases.uncharge(o.lease, &o.output_hash);
        tracing::error!(lease = %o.lease, error = %e, "cannot store an inline output");
        return Err(ErrorBody::new(ErrorCode::Internal, format!("lease {}: could not store the output", o.lease)));
    }
    leases.confirm(o.lease, &o.output_hash);
    Ok(())
}

/// A worker's escrow standing as its connection starts.
struct Standing {
    /// A message the worker sent instead of registering (handled as usual), if any.
    interjected: Option<Result<WorkerMessage, ErrorBody>>,
    /// Registered and bonded: may take paid work.
    eligible: bool,
    /// The account that owns the key, when registered.
    owner: Option<PublicKey>,
}

/// Asks an unregistered worker to register in escrow and registers it; `Err` if the socket
/// closed.
async fn register(
    escrow: &crate::escrow::Escrow,
    key: PublicKey,
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
) -> Result<Standing, ()> {
    let unpaid = |interjected| Ok(Standing { interjected, eligible: false, owner: None });
    match escrow.worker(&key).await {
        Ok(None) => {}
        Ok(Some(s)) => return Ok(Standing { interjected: None, eligible: s.eligible, owner: Some(s.owner) }),
        Err(e) => {
            tracing::warn!(worker = %key, error = %e, "cannot read the worker's escrow standing; it takes only unpaid work for now");
            return unpaid(None);
        }
    }
    let deployment = escrow.deployment();
    let Ok(bond) = escrow.info().min_bond.parse::<u64>() else {
        tracing::warn!("the escrow's minimum bond does not fit the protocol's u64; workers take only unpaid work");
        return unpaid(None);
    };
    let nonce = match escrow.nonce(&key).await {
        Ok(nonce) => nonce,
        Err(e) => {
            tracing::warn!(worker = %key, error = %e, "cannot read the worker's account nonce; it takes only unpaid work for now");
            return unpaid(None);
        }
    };
    let ask = RelayMessage::Register { escrow: deployment.clone(), nonce, bond };
    sink.send(encode(&ask)).await.map_err(drop)?;
    // Heartbeats may cross the question; the last one is handed on, anything else declines.
    let until = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut heartbeat = None;
    let registration = loop {
        match tokio::time::timeout_at(until, next_message(stream)).await {
            Ok(Some(Ok(WorkerMessage::Register { owner, nonce, bond, authorization, proof }))) => {
                break Registration { worker: key, owner, nonce, bond, authorization, proof };
            }
            Ok(Some(Ok(hb @ WorkerMessage::Heartbeat { .. }))) => heartbeat = Some(Ok(hb)),
            Ok(Some(other)) => return unpaid(Some(other)),
            Ok(None) => return Err(()),
            Err(_) => return unpaid(heartbeat),
        }
    };
    // Checked here first: on a chain, a refused registration would cost the relay gas.
    let outcome = if registration.bond < bond {
        Err(ErrorBody::new(
            ErrorCode::EscrowRefused,
            format!("registration bonds {}, below the minimum {bond}", registration.bond),
        ))
    } else if let Err(e) = registration.verify(deployment.as_deployment()) {
        Err(ErrorBody::new(ErrorCode::BadSignature, format!("registration: {e}")))
    } else {
        escrow.register_worker(&registration).await.map_err(|e| crate::error::ApiError::from(e).0)
    };
    let owner = registration.owner;
    let eligible = match outcome {
        Ok(()) => {
            tracing::info!(worker = %key, %owner, "worker registered in escrow");
            // Registration bonds at least the minimum (the contract refuses less).
            true
        }
        Err(e) => {
            tracing::info!(worker = %key, %owner, code = ?e.code, message = %e.message, "worker registration refused; it takes only unpaid work");
            sink.send(encode(&RelayMessage::Error(e))).await.map_err(drop)?;
            false
        }
    };
    Ok(Standing { interjected: heartbeat, eligible, owner: eligible.then_some(owner) })
}

/// `GET /v1/jobs/{id}/events`: a snapshot, then live events until the job ends.
pub async fn job_events(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(not_an_upgrade)?;
    let id = crate::api::parse_job_id(&id.map_err(|e| ApiError::new(ErrorCode::Malformed, e.body_text()))?.0)?;
    let permit = app.watcher_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(ErrorCode::RateLimited, "too many event watchers; poll GET /v1/jobs/{id} instead")
    })?;
    // A job that does not exist gets no channel: nothing a stranger sends leaves state behind.
    if app.store.job_summary(id).await?.is_none() {
        return Err(ApiError::not_found(format!("job {id}")));
    }
    // Subscribe before reading the snapshot so no event falls between the two.
    let watch = app.core.shared.watch(id);
    let summary = app.store.job_summary(id).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    let store = app.store.clone();
    Ok(upgrade.max_message_size(4096).on_upgrade(move |socket| async move {
        stream_job_events(socket, store, id, summary, watch).await;
        drop(permit);
    }))
}

async fn stream_job_events(
    socket: WebSocket,
    store: crate::store::Store,
    id: JobId,
    summary: starling_protocol::api::JobSummary,
    mut watch: crate::driver::Watch,
) {
    let events = &mut watch.events;
    let (mut sink, mut stream) = socket.split();
    let send =
        |event: &JobEvent| Message::Text(Utf8Bytes::from(serde_json::to_string(event).expect("events serialize")));
    let finished = summary.state != JobState::Running;
    if sink.send(send(&JobEvent::Snapshot { job: summary })).await.is_err() || finished {
        let _ = sink.close().await;
        return;
    }
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(event) => {
                    let last = matches!(*event, JobEvent::JobDone { .. } | JobEvent::JobFailed { .. });
                    if sink.send(send(&event)).await.is_err() || last {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Too slow to keep up: send where the job stands now instead of what was
                    // missed, and end the stream if the job finished meanwhile.
                    tracing::debug!(job = %id, missed, "event watcher lagged; sending a fresh snapshot");
                    let Ok(Some(job)) = store.job_summary(id).await else { break };
                    let finished = job.state != JobState::Running;
                    let event = match job.state {
                        JobState::Running => JobEvent::Snapshot { job },
                        JobState::Done => JobEvent::JobDone { job },
                        JobState::Failed => JobEvent::JobFailed { job },
                    };
                    if sink.send(send(&event)).await.is_err() || finished {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
    let _ = sink.close().await;
}
