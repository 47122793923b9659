//! The browser worker's decisions, with no I/O: [`Machine`] takes what happened (a page message,
//! a socket event, a finished task, the time) and answers with [`Action`]s for the Web Worker
//! glue to carry out (open a socket, send a frame, run a task, post a message to the page).
//!
//! It speaks the same protocol as the native worker (`crate::native`): `hello` → `challenge` →
//! `auth` → `welcome`, then heartbeats, `assign`/`cancel`/`ack`/`register` from the relay and
//! signed `result`s, `failed` or `register` from us; it reconnects with jittered exponential
//! backoff. On top it keeps the browser's rules: one task at a time, the duty-cycle rest after
//! each task, and the pause rules of [`crate::pacing`]. Being pure, every path here is
//! unit-tested natively.
//!
//! Time is a monotonic millisecond count passed in by the caller (`performance.now()` in the
//! browser); [`Machine::next_deadline`] says when to call [`Machine::tick`] next.

use super::page::{LogLevel, RelayUrls, State, Status, WorkerEvent};
use crate::escrow::{self, DEFAULT_MAX_BOND};
use crate::pacing::{self, DeviceReport, Pace, Settings};
use starling_protocol::job::KernelSpec;
use starling_protocol::limits::{
    MAX_ENTRY_POINT_LEN, MAX_INLINE_OUTPUT_BYTES, MAX_INPUTS_PER_TASK, MAX_OUTPUT_BYTES, MAX_PARAM_WORDS,
    MAX_REASON_LEN, MAX_WGSL_BYTES, MAX_WORKGROUPS_PER_DIM, MAX_WS_FRAME_BYTES,
};
use starling_protocol::sign::{EscrowDeployment, Keypair, UploadPurpose};
use starling_protocol::upload::UploadAuth;
use starling_protocol::worker::{
    Assignment, Backend, Capabilities, DeviceState, InlineBytes, RelayMessage, WorkerMessage,
};
use starling_protocol::{Hash32, LeaseId, PROTOCOL_VERSION, PublicKey};
use std::collections::VecDeque;
use std::time::Duration;

/// Names one WebSocket, so events from a socket already given up are told apart and ignored.
pub type ConnId = u64;

/// Longest wait from opening the socket to `welcome`: a relay that accepts the TCP connection
/// and then says nothing must not hold the worker forever.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;
/// First retry delay after a dropped or failed connection; doubles up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_FIRST_MS: u64 = 250;
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// Heartbeat period bounds, whatever the relay asks for.
const HEARTBEAT_MIN_MS: u64 = 100;
const HEARTBEAT_MAX_MS: u64 = 60_000;
/// Results sent and not yet acknowledged that are remembered (to count `tasks_done`); one task
/// runs at a time, so more than a handful means the relay stopped acknowledging.
const MAX_AWAITING_ACK: usize = 64;

/// What the glue must do. Carried out in order.
#[derive(Debug)]
pub enum Action {
    /// Open the GPU (or settle for the CPU), then call [`Machine::compute_ready`].
    OpenCompute,
    /// Open a WebSocket to `url` and report its events under `conn`.
    Connect { conn: ConnId, url: String },
    /// Send one text frame on `conn` (dropped if that socket is gone).
    Send { conn: ConnId, text: String },
    /// Close `conn`; its later events are ignored.
    Close { conn: ConnId },
    /// Fetch the inputs from `relay`, run the kernel, then call [`Machine::task_finished`]: with
    /// the output inline when it is at most [`MAX_INLINE_OUTPUT_BYTES`], else after uploading it
    /// there under `signer`'s signature for this lease.
    RunTask { assignment: Box<Assignment>, relay: RelayUrls, signer: LeaseSigner },
    /// Stop working on `lease`: its lease is void, nobody wants the result.
    AbortTask { lease: LeaseId },
    /// `postMessage` to the page.
    Post(WorkerEvent),
}

/// A task's output: sent inline in the result, or already uploaded to
/// `/v1/blobs/{output_hash}` (then `inline` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutput {
    pub output_hash: Hash32,
    pub output_len: u64,
    pub inline: Option<Vec<u8>>,
}

impl TaskOutput {
    /// An output of at most [`MAX_INLINE_OUTPUT_BYTES`], sent inside the result.
    pub fn inline(output: Vec<u8>) -> Self {
        debug_assert!(output.len() <= MAX_INLINE_OUTPUT_BYTES);
        TaskOutput {
            output_hash: starling_protocol::sha256(&output),
            output_len: output.len() as u64,
            inline: Some(output),
        }
    }
}

/// Signs the upload of one lease's output (`PUT /v1/blobs/{hash}` with [`UploadAuth`] headers),
/// and nothing else: the glue uploads, the machine keeps the key.
#[derive(Debug)]
pub struct LeaseSigner {
    key: Keypair,
    lease: LeaseId,
}

impl LeaseSigner {
    pub fn sign(&self, output_hash: &Hash32, output_len: u64) -> UploadAuth {
        UploadAuth::sign(&self.key, UploadPurpose::Output { lease: self.lease }, output_hash, output_len)
    }
}

/// Why a task could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub reason: String,
    /// The GPU device is gone: the glue must open a new one before more work.
    pub device_lost: bool,
}

/// The browser worker's state; see the module docs.
#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    device: DeviceReport,
    compute: Compute,
    /// Between `start` and `stop`.
    run: Option<Run>,
    /// Why the last `start` could not go ahead; shown until the next `start`.
    start_error: Option<String>,
    /// Kept after `stop` so the page can still show who this worker was.
    public_key: Option<PublicKey>,
    rest: Option<Rest>,
    tasks_done: u64,
    tasks_failed: u64,
    next_conn: ConnId,
    /// xorshift64 state for backoff jitter (no clock or OS randomness in here).
    jitter_state: u64,
    /// The last status posted, so only changes are posted.
    posted: Option<Status>,
    actions: Vec<Action>,
}

#[derive(Debug)]
enum Compute {
    Unknown,
    Opening,
    Ready(Capabilities),
}

#[derive(Debug)]
struct Run {
    urls: RelayUrls,
    key: Keypair,
    link: Link,
    backoff_ms: u64,
}

#[derive(Debug)]
enum Link {
    /// No connection until the compute backend is known (it goes into `hello`).
    AwaitCompute,
    /// Waiting to reconnect. `refused`: the relay said no (shown as an error, not a blip).
    Backoff {
        until_ms: u64,
        delay_ms: u64,
        why: String,
        refused: bool,
    },
    Handshake {
        conn: ConnId,
        deadline_ms: u64,
        step: Handshake,
    },
    /// Boxed: a session (its assignment, its escrow) is far larger than the other states.
    Ready(Box<Session>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// Socket opening; `hello` goes out when it opens.
    Opening,
    /// `hello` sent.
    AwaitChallenge,
    /// `auth` sent.
    AwaitWelcome,
}

/// One welcomed connection. Leases die with it: the relay voids them when we reconnect.
#[derive(Debug)]
struct Session {
    conn: ConnId,
    /// The escrow `welcome` named: results are signed for it, and assignments or registration
    /// requests naming another are refused.
    escrow: Option<EscrowDeployment>,
    heartbeat_ms: u64,
    next_heartbeat_ms: u64,
    /// The device state last sent; a change is sent at once, not at the next beat.
    sent_state: Option<DeviceState>,
    job: Option<Job>,
    awaiting_ack: VecDeque<LeaseId>,
}

#[derive(Debug)]
struct Job {
    assignment: Assignment,
    /// None while it waits for a rest to end.
    started_ms: Option<u64>,
}

/// The duty-cycle rest after a task, with the numbers for the status sentence.
#[derive(Debug, Clone, Copy)]
struct Rest {
    until_ms: u64,
    rest_ms: u64,
    busy_ms: u64,
}

impl Machine {
    /// A stopped worker. `jitter_seed` seeds the backoff jitter (any value).
    pub fn new(jitter_seed: u64) -> Machine {
        let mut machine = Machine {
            settings: Settings::default(),
            device: DeviceReport::default(),
            compute: Compute::Unknown,
            run: None,
            start_error: None,
            public_key: None,
            rest: None,
            tasks_done: 0,
            tasks_failed: 0,
            next_conn: 0,
            jitter_state: jitter_seed | 1,
            posted: None,
            actions: Vec::new(),
        };
        machine.reconcile(0);
        machine
    }

    /// The actions decided since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The next instant [`Machine::tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let rest = self.rest.map(|r| r.until_ms).filter(|_| self.run.is_some());
        let link = match self.run.as_ref().map(|r| &r.link) {
            Some(Link::Backoff { until_ms, .. }) => Some(*until_ms),
            Some(Link::Handshake { deadline_ms, .. }) => Some(*deadline_ms),
            Some(Link::Ready(session)) => Some(session.next_heartbeat_ms),
            Some(Link::AwaitCompute) | None => None,
        };
        [rest, link].into_iter().flatten().min()
    }

    /// Begins working for `relay` with `key` (or reports why not). A `start` that changes
    /// nothing but the settings keeps the connection and its leases.
    pub fn start(&mut self, relay: &str, key: Result<Keypair, String>, settings: Settings, now_ms: u64) {
        let checked = settings.check().and_then(|()| RelayUrls::from_origin(relay)).and_then(|urls| Ok((urls, key?)));
        let (urls, key) = match checked {
            Ok(ok) => ok,
            Err(why) => {
                self.teardown();
                self.run = None;
                self.start_error = Some(why.clone());
                self.log(LogLevel::Error, format!("cannot start: {why}"));
                self.reconcile(now_ms);
                return;
            }
        };
        self.settings = settings;
        self.start_error = None;
        if let Some(run) = &self.run
            && run.urls == urls
            && run.key.public() == key.public()
        {
            self.reconcile(now_ms);
            return;
        }
        self.teardown();
        self.public_key = Some(key.public());
        self.run = Some(Run { urls, key, link: Link::AwaitCompute, backoff_ms: BACKOFF_FIRST_MS });
        match self.compute {
            Compute::Ready(_) => self.connect(now_ms),
            Compute::Opening => {}
            Compute::Unknown => {
                self.compute = Compute::Opening;
                self.actions.push(Action::OpenCompute);
            }
        }
        self.reconcile(now_ms);
    }

    /// Takes nothing new and drops the connection; a running task is abandoned (its lease lapses
    /// at the relay, which hands it to someone else).
    pub fn stop(&mut self, now_ms: u64) {
        if self.run.is_some() {
            self.teardown();
            self.run = None;
            self.log(LogLevel::Info, "stopped");
        }
        self.start_error = None;
        self.reconcile(now_ms);
    }

    /// New limits from the page; refused (and the old ones kept) when out of range.
    pub fn set_settings(&mut self, settings: Settings, now_ms: u64) {
        match settings.check() {
            Ok(()) => self.settings = settings,
            Err(why) => self.log(LogLevel::Error, format!("settings refused: {why}")),
        }
        self.reconcile(now_ms);
    }

    pub fn set_device(&mut self, device: DeviceReport, now_ms: u64) {
        self.device = device;
        self.reconcile(now_ms);
    }

    /// The compute backend is open; `caps` go into every `hello` from now on.
    pub fn compute_ready(&mut self, caps: Capabilities, now_ms: u64) {
        self.compute = Compute::Ready(caps);
        if let Some(Run { link: Link::AwaitCompute, .. }) = &self.run {
            self.connect(now_ms);
        }
        self.reconcile(now_ms);
    }

    pub fn socket_opened(&mut self, conn: ConnId, now_ms: u64) {
        let Some(run) = &mut self.run else { return };
        let Link::Handshake { conn: current, step, .. } = &mut run.link else { return };
        if *current != conn || *step != Handshake::Opening {
            return;
        }
        *step = Handshake::AwaitChallenge;
        let Compute::Ready(caps) = &self.compute else { return };
        let hello = WorkerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_key: run.key.public(),
            capabilities: Capabilities { duty_cycle: self.settings.duty_cycle, ..caps.clone() },
        };
        self.actions.push(Action::Send { conn, text: encode(&hello) });
        self.reconcile(now_ms);
    }

    /// One text frame from the relay.
    pub fn socket_text(&mut self, conn: ConnId, text: &str, now_ms: u64) {
        if self.current_conn() != Some(conn) {
            return;
        }
        if text.len() > MAX_WS_FRAME_BYTES {
            let why = format!("the relay sent a {} byte frame (limit {MAX_WS_FRAME_BYTES})", text.len());
            return self.drop_connection(why, false, now_ms);
        }
        let message = match serde_json::from_str::<RelayMessage>(text) {
            Ok(message) => message,
            Err(e) => return self.drop_connection(format!("bad relay message: {e}"), false, now_ms),
        };
        let Some(run) = &mut self.run else { return };
        match (&mut run.link, message) {
            (Link::Handshake { step: step @ Handshake::AwaitChallenge, .. }, RelayMessage::Challenge { nonce }) => {
                *step = Handshake::AwaitWelcome;
                let auth = WorkerMessage::Auth { signature: run.key.sign_auth(&nonce) };
                self.actions.push(Action::Send { conn, text: encode(&auth) });
            }
            (
                Link::Handshake { step: Handshake::AwaitWelcome, .. },
                RelayMessage::Welcome { heartbeat_ms, escrow, .. },
            ) => {
                let heartbeat_ms = heartbeat_ms.clamp(HEARTBEAT_MIN_MS, HEARTBEAT_MAX_MS);
                run.backoff_ms = BACKOFF_FIRST_MS;
                run.link = Link::Ready(Box::new(Session {
                    conn,
                    escrow,
                    heartbeat_ms,
                    next_heartbeat_ms: now_ms,
                    sent_state: None,
                    job: None,
                    awaiting_ack: VecDeque::new(),
                }));
                let relay = run.urls.http.clone();
                self.log(LogLevel::Info, format!("connected to {relay}"));
            }
            (Link::Handshake { .. }, RelayMessage::Error(e)) => {
                let why = format!("the relay refused this worker: {}", e.message);
                return self.drop_connection(why, true, now_ms);
            }
            (Link::Handshake { .. }, other) => {
                let why = format!("unexpected {} during the handshake", relay_message_name(&other));
                return self.drop_connection(why, false, now_ms);
            }
            (Link::Ready(_), RelayMessage::Assign(assignment)) => self.assigned(assignment, now_ms),
            (Link::Ready(session), RelayMessage::Cancel { lease }) => {
                session.awaiting_ack.retain(|&l| l != lease);
                if session.job.as_ref().is_some_and(|job| job.assignment.lease == lease) {
                    let job = session.job.take().expect("checked above");
                    if let Some(started_ms) = job.started_ms {
                        self.actions.push(Action::AbortTask { lease });
                        self.start_rest(now_ms.saturating_sub(started_ms), now_ms);
                    }
                    self.log(LogLevel::Info, format!("lease {lease} cancelled by the relay"));
                }
            }
            (Link::Ready(session), RelayMessage::Ack { lease }) => {
                if let Some(at) = session.awaiting_ack.iter().position(|&l| l == lease) {
                    session.awaiting_ack.remove(at);
                    self.tasks_done += 1;
                }
            }
            (Link::Ready(session), RelayMessage::Register { escrow: asked, nonce, bond }) => {
                // Only registered keys are paid. The browser's key owns itself: its account is
                // paid, and the same key signs the bond's authorization and its own consent.
                match escrow::register(
                    &run.key,
                    &run.key,
                    session.escrow.as_ref(),
                    &asked,
                    nonce,
                    bond,
                    DEFAULT_MAX_BOND,
                ) {
                    Ok(register) => {
                        self.actions.push(Action::Send { conn: session.conn, text: encode(&register) });
                        let note = format!("registering with the relay's escrow {}: bond {bond}", asked.contract);
                        self.log(LogLevel::Info, note);
                    }
                    Err(why) => self.log(LogLevel::Warn, format!("refused to register: {why}")),
                }
            }
            (Link::Ready(_), RelayMessage::Error(e)) => {
                self.log(LogLevel::Warn, format!("relay reported {:?}: {}", e.code, e.message));
            }
            (Link::Ready(_), other) => {
                self.log(LogLevel::Warn, format!("ignored an unexpected {}", relay_message_name(&other)));
            }
            (Link::AwaitCompute | Link::Backoff { .. }, _) => {}
        }
        self.reconcile(now_ms);
    }

    /// The socket closed or failed (`why` for the page).
    pub fn socket_closed(&mut self, conn: ConnId, why: &str, now_ms: u64) {
        if self.current_conn() == Some(conn) {
            self.drop_connection(format!("connection lost ({why})"), false, now_ms);
        }
    }

    /// The task leased as `lease` ended. Results for a lease no longer held are dropped.
    pub fn task_finished(&mut self, lease: LeaseId, outcome: Result<TaskOutput, TaskFailure>, now_ms: u64) {
        let Some(run) = &mut self.run else { return };
        let Link::Ready(session) = &mut run.link else { return };
        let Some(started_ms) =
            session.job.as_ref().filter(|job| job.assignment.lease == lease).and_then(|job| job.started_ms)
        else {
            return;
        };
        let job = session.job.take().expect("checked above");
        let task = job.assignment.task;
        let conn = session.conn;
        let mut device_lost = false;
        match outcome {
            Ok(TaskOutput { output_hash, output_len, inline }) => {
                let signature =
                    escrow::sign_result(&run.key, session.escrow.as_ref(), &job.assignment, &output_hash, output_len);
                let output = inline.map(InlineBytes);
                let result = WorkerMessage::Result { lease, task, output_hash, output_len, signature, output };
                self.actions.push(Action::Send { conn, text: encode(&result) });
                if session.awaiting_ack.len() == MAX_AWAITING_ACK {
                    session.awaiting_ack.pop_front();
                }
                session.awaiting_ack.push_back(lease);
            }
            Err(failure) => {
                self.tasks_failed += 1;
                let reason: String = failure.reason.chars().take(MAX_REASON_LEN).collect();
                self.actions.push(Action::Send { conn, text: encode(&WorkerMessage::Failed { lease, task, reason }) });
                self.log(LogLevel::Warn, format!("task {task} failed: {}", failure.reason));
                device_lost = failure.device_lost;
            }
        }
        self.start_rest(now_ms.saturating_sub(started_ms), now_ms);
        if device_lost {
            // The capabilities in `hello` described the lost device: reconnect with new ones.
            self.teardown();
            if let Some(run) = &mut self.run {
                run.link = Link::AwaitCompute;
            }
            self.compute = Compute::Opening;
            self.actions.push(Action::OpenCompute);
            self.log(LogLevel::Warn, "the GPU device was lost; opening it again");
        }
        self.reconcile(now_ms);
    }

    /// Time passed: retry, time out the handshake, beat, end a rest.
    pub fn tick(&mut self, now_ms: u64) {
        let Some(run) = &mut self.run else { return self.reconcile(now_ms) };
        match &mut run.link {
            Link::Backoff { until_ms, .. } if *until_ms <= now_ms => self.connect(now_ms),
            Link::Handshake { deadline_ms, .. } if *deadline_ms <= now_ms => {
                let why = format!("no welcome from the relay within {} s", HANDSHAKE_TIMEOUT_MS / 1000);
                return self.drop_connection(why, false, now_ms);
            }
            Link::Ready(session) if session.next_heartbeat_ms <= now_ms => {
                // reconcile sends it: forget what was sent so the same state goes out again.
                session.sent_state = None;
            }
            _ => {}
        }
        self.reconcile(now_ms);
    }

    fn current_conn(&self) -> Option<ConnId> {
        match self.run.as_ref().map(|r| &r.link) {
            Some(Link::Handshake { conn, .. }) => Some(*conn),
            Some(Link::Ready(session)) => Some(session.conn),
            _ => None,
        }
    }

    fn assigned(&mut self, assignment: Assignment, now_ms: u64) {
        let pace = self.pace(now_ms);
        let Compute::Ready(caps) = &self.compute else { return };
        let refusal = check_assignment(&assignment, caps);
        let Some(Run { link: Link::Ready(session), .. }) = &mut self.run else { return };
        let (lease, task) = (assignment.lease, assignment.task);
        // A task this worker cannot run fails (the relay will not offer it again); one it only
        // cannot run now is declined (the relay gives it to someone else, maybe back later).
        let refusal = if session.job.is_some() {
            Some((false, "this browser worker runs one task at a time and already has one".to_string()))
        } else if let Err(why) = refusal {
            Some((true, why))
        } else if let Err(why) = escrow::check_assignment(session.escrow.as_ref(), &assignment) {
            Some((true, why.to_string()))
        } else if let Pace::Pause(why) = pace {
            // Heartbeats keep a lease alive: holding it while paused could hold it for hours.
            Some((false, format!("paused: {why}")))
        } else {
            session.job = Some(Job { assignment, started_ms: None });
            None
        };
        if let Some((cannot_run, reason)) = refusal {
            let conn = session.conn;
            let level = if cannot_run { LogLevel::Warn } else { LogLevel::Info };
            self.log(level, format!("task {task} refused: {reason}"));
            let reason: String = reason.chars().take(MAX_REASON_LEN).collect();
            let message = if cannot_run {
                self.tasks_failed += 1;
                WorkerMessage::Failed { lease, task, reason }
            } else {
                WorkerMessage::Decline { lease, task, reason }
            };
            self.actions.push(Action::Send { conn, text: encode(&message) });
        }
    }

    /// Opens a new connection now.
    fn connect(&mut self, now_ms: u64) {
        let Some(run) = &mut self.run else { return };
        self.next_conn += 1;
        let conn = self.next_conn;
        run.link = Link::Handshake { conn, deadline_ms: now_ms + HANDSHAKE_TIMEOUT_MS, step: Handshake::Opening };
        self.actions.push(Action::Connect { conn, url: run.urls.socket.clone() });
    }

    /// Closes the current connection (if any) and abandons its task.
    fn teardown(&mut self) {
        let Some(run) = &mut self.run else { return };
        match std::mem::replace(&mut run.link, Link::AwaitCompute) {
            Link::Handshake { conn, .. } => self.actions.push(Action::Close { conn }),
            Link::Ready(session) => {
                if let Some(Job { assignment, started_ms: Some(_) }) = &session.job {
                    self.actions.push(Action::AbortTask { lease: assignment.lease });
                }
                self.actions.push(Action::Close { conn: session.conn });
            }
            link @ (Link::AwaitCompute | Link::Backoff { .. }) => run.link = link,
        }
    }

    /// Gives up the current connection and schedules the next attempt.
    fn drop_connection(&mut self, why: String, refused: bool, now_ms: u64) {
        self.teardown();
        let jitter = self.jitter();
        let Some(run) = &mut self.run else { return };
        let delay_ms = run.backoff_ms + jitter % (run.backoff_ms / 2 + 1);
        run.backoff_ms = (run.backoff_ms * 2).min(BACKOFF_MAX_MS);
        run.link = Link::Backoff { until_ms: now_ms + delay_ms, delay_ms, why: why.clone(), refused };
        let level = if refused { LogLevel::Error } else { LogLevel::Info };
        self.log(level, format!("{why}; retrying in {:.1} s", delay_ms as f64 / 1000.0));
        self.reconcile(now_ms);
    }

    fn start_rest(&mut self, busy_ms: u64, now_ms: u64) {
        let rest_ms = pacing::rest_after(Duration::from_millis(busy_ms), self.settings.duty_cycle).as_millis() as u64;
        self.rest = (rest_ms > 0).then_some(Rest { until_ms: now_ms + rest_ms, rest_ms, busy_ms });
    }

    fn pace(&self, now_ms: u64) -> Pace {
        pacing::pace(&self.settings, &self.device, self.rest.map(|r| r.until_ms), now_ms)
    }

    /// Brings everything in line with the current pace: starts a waiting task when allowed,
    /// refuses it when paused, tells the relay when our state changed or a beat is due, and
    /// posts the status when it changed.
    fn reconcile(&mut self, now_ms: u64) {
        // A rest that is over is forgotten (even while paused), so no deadline lies in the past.
        if self.rest.is_some_and(|r| r.until_ms <= now_ms) {
            self.rest = None;
        }
        let pace = self.pace(now_ms);
        let battery = self.device.battery;
        if let Some(Run { link: Link::Ready(session), urls, key, .. }) = &mut self.run {
            if let Some(job) = &mut session.job
                && job.started_ms.is_none()
            {
                match pace {
                    Pace::Work => {
                        job.started_ms = Some(now_ms);
                        let assignment = Box::new(job.assignment.clone());
                        let signer = LeaseSigner { key: Keypair::from_seed(key.seed()), lease: assignment.lease };
                        self.actions.push(Action::RunTask { assignment, relay: urls.clone(), signer });
                    }
                    Pace::Pause(why) => {
                        let (lease, task) = (job.assignment.lease, job.assignment.task);
                        session.job = None;
                        let reason = format!("paused: {why}");
                        self.actions.push(Action::Send {
                            conn: session.conn,
                            text: encode(&WorkerMessage::Decline { lease, task, reason }),
                        });
                    }
                    Pace::Rest { .. } => {}
                }
            }
            let state = DeviceState {
                accepting: session.job.is_none() && pace == Pace::Work,
                battery: battery.map(|b| b.level).filter(|level| level.is_finite()),
                charging: battery.map(|b| b.charging),
            };
            if session.sent_state != Some(state) {
                session.sent_state = Some(state);
                session.next_heartbeat_ms = now_ms + session.heartbeat_ms;
                let beat = WorkerMessage::Heartbeat { state };
                self.actions.push(Action::Send { conn: session.conn, text: encode(&beat) });
            }
        }
        let status = self.status(pace);
        if self.posted.as_ref() != Some(&status) {
            self.posted = Some(status.clone());
            self.actions.push(Action::Post(WorkerEvent::Status(status)));
        }
    }

    fn status(&self, pace: Pace) -> Status {
        let (state, reason, kernel) = match &self.run {
            None => match &self.start_error {
                Some(why) => (State::Error, Some(why.clone()), None),
                None => (State::Stopped, None, None),
            },
            Some(run) => match &run.link {
                Link::AwaitCompute => (State::Starting, Some("looking for a WebGPU adapter".to_string()), None),
                Link::Backoff { delay_ms, why, refused, .. } => {
                    let state = if *refused { State::Error } else { State::Connecting };
                    (state, Some(format!("{why}; retrying in {:.1} s", *delay_ms as f64 / 1000.0)), None)
                }
                Link::Handshake { .. } => (State::Connecting, None, None),
                Link::Ready(session) => match (&session.job, pace) {
                    (Some(Job { assignment, started_ms: Some(_) }), pace) => {
                        let reason = match pace {
                            Pace::Pause(why) => Some(format!("pausing after this task: {why}")),
                            _ => None,
                        };
                        (State::Working, reason, Some(assignment.kernel.display_name()))
                    }
                    (_, Pace::Pause(why)) => (State::Paused, Some(why.to_string()), None),
                    (_, Pace::Rest { .. }) => {
                        let reason = self.rest.map(|r| {
                            format!(
                                "duty cycle {:.0}%: resting {} after {} of work",
                                self.settings.duty_cycle * 100.0,
                                duration(r.rest_ms),
                                duration(r.busy_ms)
                            )
                        });
                        (State::Resting, reason, None)
                    }
                    (_, Pace::Work) => (State::Working, None, None),
                },
            },
        };
        let caps = match &self.compute {
            Compute::Ready(caps) => Some(caps),
            Compute::Unknown | Compute::Opening => None,
        };
        Status {
            state,
            reason,
            backend: caps.map(|c| c.backend),
            adapter: caps.map(|c| c.adapter.name.clone()),
            public_key: self.public_key,
            tasks_done: self.tasks_done,
            tasks_failed: self.tasks_failed,
            kernel,
        }
    }

    fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.actions.push(Action::Post(WorkerEvent::log(level, message)));
    }

    fn jitter(&mut self) -> u64 {
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        x
    }
}

/// Refuses, before any download, a task this worker cannot or must not run: beyond the protocol's
/// limits or the device's, or custom WGSL without a GPU. The engine checks the rest.
pub fn check_assignment(a: &Assignment, caps: &Capabilities) -> Result<(), String> {
    if a.inputs.len() > MAX_INPUTS_PER_TASK {
        return Err(format!("{} inputs; at most {MAX_INPUTS_PER_TASK}", a.inputs.len()));
    }
    if a.params.len() > MAX_PARAM_WORDS {
        return Err(format!("{} param words; at most {MAX_PARAM_WORDS}", a.params.len()));
    }
    if a.output_size == 0 || a.output_size > MAX_OUTPUT_BYTES {
        return Err(format!("output of {} bytes; 1 to {MAX_OUTPUT_BYTES} allowed", a.output_size));
    }
    if u64::from(a.output_size) > caps.limits.max_storage_buffer_binding_size {
        return Err(format!(
            "output of {} bytes; this device binds at most {}",
            a.output_size, caps.limits.max_storage_buffer_binding_size
        ));
    }
    let max_groups = caps.limits.max_compute_workgroups_per_dimension.min(MAX_WORKGROUPS_PER_DIM);
    if a.workgroups.iter().any(|&w| w == 0 || w > max_groups) {
        return Err(format!("workgroups {:?}; each must be 1 to {max_groups}", a.workgroups));
    }
    if let KernelSpec::Wgsl { source, entry_point } = &a.kernel {
        if caps.backend == Backend::Cpu {
            return Err("custom WGSL needs WebGPU, and this browser has no WebGPU adapter".into());
        }
        if source.len() > MAX_WGSL_BYTES || entry_point.len() > MAX_ENTRY_POINT_LEN {
            return Err("WGSL source or entry point over the protocol's limits".into());
        }
    }
    Ok(())
}

/// "850 ms" or "2.4 s": short tasks are common, and "0.0 s" reads as nothing.
fn duration(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

fn encode(message: &WorkerMessage) -> String {
    serde_json::to_string(message).expect("worker messages always serialize")
}

fn relay_message_name(message: &RelayMessage) -> &'static str {
    match message {
        RelayMessage::Challenge { .. } => "challenge",
        RelayMessage::Welcome { .. } => "welcome",
        RelayMessage::Assign(_) => "assign",
        RelayMessage::Cancel { .. } => "cancel",
        RelayMessage::Ack { .. } => "ack",
        RelayMessage::Register { .. } => "register",
        RelayMessage::Error(_) => "error",
    }
}

#[cfg(test)]
mod tests;
