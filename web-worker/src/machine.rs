//! Every worker's decisions, with no I/O: [`Machine`] takes what happened (a start or a setting,
//! a socket event, a finished task, the time) and answers with [`Action`]s for a driver to carry
//! out (open a socket, send a frame, run or abort a task, read an account's nonce, post a status).
//! Two thin drivers run it: the browser's Web Worker glue (`crate::browser::web`) and the native
//! worker (`crate::native`), so both speak the protocol through this one piece of code.
//!
//! The protocol: `hello` → `challenge` → `auth` → `welcome` (the escrow it names may be pinned by
//! [`Options`]), then heartbeats carrying whether the worker accepts work, `assign`/`cancel`/
//! `ack`/`register` from the relay and signed `result`s, `failed`, `decline` or `register` from
//! the worker; it reconnects with jittered exponential backoff. An assignment is checked before
//! anything is downloaded ([`check_assignment`], the escrow it names); one the worker cannot run
//! fails, one it only cannot run now (all [`Options::slots`] busy, paused) is declined, so the
//! relay gives it to someone else. A cancelled task is aborted at once. On top it keeps the
//! pacing rules of [`crate::pacing`]: the duty-cycle rest after each task, and the browser's
//! pauses (hidden page, low battery). Being pure, every path is unit-tested natively.
//!
//! Time is a monotonic millisecond count passed in by the driver (`performance.now()` in the
//! browser, tokio's clock natively); [`Machine::next_deadline`] says when to call
//! [`Machine::tick`] next.

use crate::escrow::{self, DEFAULT_MAX_BOND};
use crate::pacing::{self, DeviceReport, Pace, Settings};
use starling_protocol::job::KernelSpec;
use starling_protocol::limits::{
    MAX_ENTRY_POINT_LEN, MAX_INLINE_OUTPUT_BYTES, MAX_INPUTS_PER_TASK, MAX_OUTPUT_BYTES, MAX_PARAM_WORDS,
    MAX_REASON_LEN, MAX_WGSL_BYTES, MAX_WORKGROUPS_PER_DIM, MAX_WS_FRAME_BYTES,
};
use starling_protocol::page::{LogLevel, State, Status, WorkerEvent};
use starling_protocol::sign::{EscrowDeployment, Keypair, UploadPurpose, auth_bytes, upload_bytes};
use starling_protocol::upload::UploadAuth;
use starling_protocol::worker::{
    Assignment, Backend, Capabilities, DeviceState, InlineBytes, RelayFrame, RelayMessage, WorkerMessage,
};
use starling_protocol::{Hash32, LeaseId, PROTOCOL_VERSION, PublicKey, Signature};
use std::collections::VecDeque;
use std::time::Duration;

pub use crate::relay_urls::RelayUrls;

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
/// Results sent and not yet acknowledged that are remembered (to count `tasks_done`); more than a
/// few per slot means the relay stopped acknowledging.
const MAX_AWAITING_ACK: usize = 64;
/// The most tasks one worker runs at once, whatever it is configured with.
pub const MAX_SLOTS: u32 = 64;

/// What a worker is, fixed for its life: how many tasks it runs at once, who owns it in the
/// escrow and what it agrees to there. The browser's worker is [`Options::default`]: one slot,
/// its key owning itself.
#[derive(Debug)]
pub struct Options {
    /// Tasks run at once, 1 to [`MAX_SLOTS`].
    pub slots: u32,
    /// The escrow account that bonds this worker and is paid for its work. `None`: the worker
    /// key owns itself.
    pub owner: Option<Keypair>,
    /// The largest bond the owner signs for; a relay asking more is refused.
    pub max_bond: u64,
    /// Refuse a relay whose `welcome` names another escrow contract or chain (the worker's own
    /// choice, so a relay cannot have it sign for a deployment it did not pick).
    pub expect_contract: Option<String>,
    pub expect_chain_id: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { slots: 1, owner: None, max_bond: DEFAULT_MAX_BOND, expect_contract: None, expect_chain_id: None }
    }
}

/// Counters for the driver's report (the page's status shows the first two).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Results the relay acknowledged.
    pub tasks_done: u64,
    /// Tasks this worker could not run, or refused as beyond it.
    pub tasks_failed: u64,
    /// Signed results sent.
    pub results_sent: u64,
    /// Connections the relay welcomed.
    pub sessions: u64,
}

/// What the glue must do. Carried out in order.
#[derive(Debug)]
pub enum Action {
    /// Open the GPU (or settle for the CPU), then call [`Machine::compute_ready`].
    OpenCompute,
    /// Open a WebSocket to `url` and report its events under `conn`.
    Connect { conn: ConnId, url: String },
    /// Send one text frame on `conn` (dropped if that socket is gone).
    Send { conn: ConnId, text: String },
    /// Sign `message` with the worker key, then send it on `conn` like [`Action::Send`], in order
    /// with the frames before and after it. The machine never holds the worker's secret key (in
    /// the browser it is a WebCrypto key nobody can read): the glue signs.
    SignAndSend { conn: ConnId, message: ToSign },
    /// Close `conn`; its later events are ignored.
    Close { conn: ConnId },
    /// Fetch the inputs from `relay`, run the kernel, then call [`Machine::task_finished`]: with
    /// the output inline when it is at most [`MAX_INLINE_OUTPUT_BYTES`], else after uploading it
    /// there, signed by the worker key for this lease ([`LeaseUpload`]).
    RunTask { assignment: Box<Assignment>, relay: RelayUrls, upload: LeaseUpload },
    /// Stop working on `lease`: its lease is void, nobody wants the result.
    AbortTask { lease: LeaseId },
    /// Read `account`'s escrow nonce from the relay (`GET /v1/clients/{account}`), then call
    /// [`Machine::nonce_read`] with the rest: the owner signs its consent to `asked` under it.
    ReadNonce { conn: ConnId, relay: RelayUrls, account: PublicKey, asked: EscrowDeployment, bond: u64 },
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

/// What the worker key signs to upload one lease's output (`PUT /v1/blobs/{hash}` with
/// [`UploadAuth`] headers), and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseUpload {
    pub worker: PublicKey,
    pub lease: LeaseId,
}

impl LeaseUpload {
    /// The bytes the worker key signs for an output of `output_len` bytes hashing to `output_hash`.
    pub fn bytes(&self, output_hash: &Hash32, output_len: u64) -> Vec<u8> {
        upload_bytes(UploadPurpose::Output { lease: self.lease }, output_hash, output_len, &self.worker)
    }

    /// The upload's headers, with the worker key's `signature` over [`LeaseUpload::bytes`].
    pub fn auth(&self, signature: Signature) -> UploadAuth {
        UploadAuth { key: self.worker, purpose: UploadPurpose::Output { lease: self.lease }, signature }
    }

    /// Signs with a key in memory (the native worker; a browser without WebCrypto Ed25519).
    pub fn sign_with(&self, key: &Keypair, output_hash: &Hash32, output_len: u64) -> UploadAuth {
        self.auth(key.sign(&self.bytes(output_hash, output_len)))
    }
}

/// Where a worker-key signature goes in the message it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// `auth.signature`: the challenge's nonce.
    Auth,
    /// `result.signature`: the output, for this deployment and job.
    Result,
    /// `register.authorization`: the key, as its own owner, authorizes the bond at the nonce.
    Authorization,
    /// `register.proof`: the key consents to being bonded under its owner.
    Proof,
}

/// A message to the relay still missing the worker key's signatures: the glue signs each of
/// [`ToSign::bytes`] with the worker key and sends [`ToSign::complete`]'s text.
#[derive(Debug, Clone)]
pub struct ToSign {
    message: WorkerMessage,
    slots: Vec<(Slot, Vec<u8>)>,
}

impl ToSign {
    /// The bytes to sign, in the order [`ToSign::complete`] takes the signatures.
    pub fn bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.slots.iter().map(|(_, bytes)| bytes.as_slice())
    }

    /// The frame's text, with `signatures` (one per [`ToSign::bytes`], in order) in place.
    pub fn complete(mut self, signatures: &[Signature]) -> Result<String, String> {
        if signatures.len() != self.slots.len() {
            return Err(format!("{} signatures for {} slots", signatures.len(), self.slots.len()));
        }
        for ((slot, _), signature) in self.slots.iter().zip(signatures) {
            let place = match (slot, &mut self.message) {
                (Slot::Auth, WorkerMessage::Auth { signature }) => signature,
                (Slot::Result, WorkerMessage::Result { signature, .. }) => signature,
                (Slot::Authorization, WorkerMessage::Register { authorization, .. }) => authorization,
                (Slot::Proof, WorkerMessage::Register { proof, .. }) => proof,
                (slot, _) => return Err(format!("a {slot:?} signature has no place in this message")),
            };
            *place = *signature;
        }
        Ok(encode(&self.message))
    }

    /// Signs with a key in memory (the native worker; a browser without WebCrypto Ed25519).
    pub fn sign_with(self, key: &Keypair) -> String {
        let signatures: Vec<Signature> = self.bytes().map(|bytes| key.sign(bytes)).collect();
        self.complete(&signatures).expect("one signature per slot")
    }

    fn new(message: WorkerMessage, slots: Vec<(Slot, Vec<u8>)>) -> Self {
        ToSign { message, slots }
    }
}

/// Tasks declined in a row for want of their kernel's code before the run stops (see
/// [`TaskFailure::declined`]).
pub const MAX_CODE_NOT_LOADED: u32 = 3;

/// A signature's place before it is made.
const UNSIGNED: Signature = Signature([0; 64]);

/// Why a task could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub reason: String,
    /// The GPU device is gone: the glue must open a new one before more work.
    pub device_lost: bool,
    /// The task is not at fault (the browser engine could not fetch its own code for it): it is
    /// declined, not failed, so the relay gives it to another worker and counts no lapse against
    /// the client's task.
    pub declined: bool,
}

/// A worker's state; see the module docs.
#[derive(Debug)]
pub struct Machine {
    options: Options,
    settings: Settings,
    device: DeviceReport,
    compute: Compute,
    /// Between `start` and `stop`.
    run: Option<Run>,
    /// Why the last `start` could not go ahead, or why the run stopped by itself; shown until the
    /// next `start`.
    start_error: Option<String>,
    /// Tasks declined in a row because the engine could not fetch their kernel's code (see
    /// [`TaskFailure::declined`]); at [`MAX_CODE_NOT_LOADED`] the run stops.
    code_not_loaded: u32,
    /// Kept after `stop` so the page can still show who this worker was.
    public_key: Option<PublicKey>,
    rest: Option<Rest>,
    counters: Counters,
    next_conn: ConnId,
    /// xorshift64 state for backoff jitter (no clock or OS randomness in here).
    jitter_state: u64,
    /// The last status posted, so only changes are posted.
    posted: Option<Status>,
    actions: Vec<Action>,
}

impl Run {
    fn urls(&self) -> &RelayUrls {
        &self.relays[self.current]
    }
}

#[derive(Debug)]
enum Compute {
    Unknown,
    Opening,
    Ready(Capabilities),
}

#[derive(Debug)]
struct Run {
    /// The relays this worker may work for; it works for `relays[current]` and moves to the
    /// next when a connection is lost.
    relays: Vec<RelayUrls>,
    current: usize,
    /// The worker key; its secret stays with the glue.
    key: PublicKey,
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
    /// At most [`Options::slots`].
    jobs: Vec<Job>,
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
    /// A stopped browser worker ([`Options::default`]). `jitter_seed` seeds the backoff jitter
    /// (any value).
    pub fn new(jitter_seed: u64) -> Machine {
        Machine::with_options(jitter_seed, Options::default())
    }

    /// A stopped worker with `options` (slots clamped to 1..=[`MAX_SLOTS`]).
    pub fn with_options(jitter_seed: u64, options: Options) -> Machine {
        let options = Options { slots: options.slots.clamp(1, MAX_SLOTS), ..options };
        let mut machine = Machine {
            options,
            settings: Settings::default(),
            device: DeviceReport::default(),
            compute: Compute::Unknown,
            run: None,
            start_error: None,
            code_not_loaded: 0,
            public_key: None,
            rest: None,
            counters: Counters::default(),
            next_conn: 0,
            jitter_state: jitter_seed | 1,
            posted: None,
            actions: Vec::new(),
        };
        machine.reconcile(0);
        machine
    }

    pub fn counters(&self) -> Counters {
        self.counters
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

    /// Begins working for `relay` (one origin, or several comma-separated: see
    /// [`RelayUrls::from_origins`]) with `key`, or reports why not. A `start` that changes
    /// nothing but the settings keeps the connection and its leases.
    /// The deployment a relay must name before this worker signs anything for it (`None`:
    /// whatever it names); takes effect from the next session.
    pub fn expect_deployment(&mut self, expect: Option<starling_protocol::sign::EscrowDeployment>) {
        let (contract, chain_id) = expect.map(|d| (d.contract, d.chain_id)).unzip();
        self.options.expect_contract = contract;
        self.options.expect_chain_id = chain_id;
    }

    /// Starts working for `relay` (comma-separated origins) as the worker `key`, whose secret the
    /// glue keeps and signs with ([`Action::SignAndSend`], [`LeaseUpload`]).
    pub fn start(&mut self, relay: &str, key: Result<PublicKey, String>, settings: Settings, now_ms: u64) {
        let checked = settings.check().and_then(|()| RelayUrls::from_origins(relay)).and_then(|urls| Ok((urls, key?)));
        let (relays, key) = match checked {
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
        self.code_not_loaded = 0;
        if let Some(run) = &self.run
            && run.relays == relays
            && run.key == key
        {
            self.reconcile(now_ms);
            return;
        }
        self.teardown();
        self.public_key = Some(key);
        self.run = Some(Run { relays, current: 0, key, link: Link::AwaitCompute, backoff_ms: BACKOFF_FIRST_MS });
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
            worker_key: run.key,
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
        let message = match serde_json::from_str::<RelayFrame>(text) {
            Ok(RelayFrame(message)) => message,
            Err(e) => return self.drop_connection(format!("bad relay message: {e}"), false, now_ms),
        };
        let Some(run) = &mut self.run else { return };
        match (&mut run.link, message) {
            (Link::Handshake { step: step @ Handshake::AwaitChallenge, .. }, RelayMessage::Challenge { nonce }) => {
                *step = Handshake::AwaitWelcome;
                let auth = ToSign::new(
                    WorkerMessage::Auth { signature: UNSIGNED },
                    vec![(Slot::Auth, auth_bytes(&nonce, &run.key))],
                );
                self.actions.push(Action::SignAndSend { conn, message: auth });
            }
            (
                Link::Handshake { step: Handshake::AwaitWelcome, .. },
                RelayMessage::Welcome { heartbeat_ms, escrow, .. },
            ) => {
                if let Err(why) = pinned(&self.options, escrow.as_ref()) {
                    return self.drop_connection(why, true, now_ms);
                }
                let heartbeat_ms = heartbeat_ms.clamp(HEARTBEAT_MIN_MS, HEARTBEAT_MAX_MS);
                run.backoff_ms = BACKOFF_FIRST_MS;
                run.link = Link::Ready(Box::new(Session {
                    conn,
                    escrow,
                    heartbeat_ms,
                    next_heartbeat_ms: now_ms,
                    sent_state: None,
                    jobs: Vec::new(),
                    awaiting_ack: VecDeque::new(),
                }));
                self.counters.sessions += 1;
                let relay = run.urls().http.clone();
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
                if let Some(at) = session.jobs.iter().position(|job| job.assignment.lease == lease) {
                    let job = session.jobs.remove(at);
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
                    self.counters.tasks_done += 1;
                }
            }
            (Link::Ready(session), RelayMessage::Register { escrow: asked, nonce, bond }) => {
                // Only registered keys are paid. A key that owns itself signs both the bond's
                // authorization and its consent under the nonce the relay names; another owner's
                // nonce is read first (the relay's word on it is not the owner's).
                match &self.options.owner {
                    Some(owner) if owner.public() != run.key => {
                        let (conn, account) = (session.conn, owner.public());
                        let relay = run.relays[run.current].clone();
                        self.actions.push(Action::ReadNonce { conn, relay, account, asked, bond });
                    }
                    _ => self.register(asked, nonce, bond),
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
        let Some(at) = session.jobs.iter().position(|job| job.assignment.lease == lease && job.started_ms.is_some())
        else {
            return;
        };
        let job = session.jobs.remove(at);
        let started_ms = job.started_ms.expect("checked above");
        let task = job.assignment.task;
        let conn = session.conn;
        let mut device_lost = false;
        match outcome {
            Ok(TaskOutput { output_hash, output_len, inline }) => {
                self.code_not_loaded = 0;
                let bytes =
                    escrow::result_bytes(&run.key, session.escrow.as_ref(), &job.assignment, &output_hash, output_len);
                let output = inline.map(InlineBytes);
                let result =
                    WorkerMessage::Result { lease, task, output_hash, output_len, signature: UNSIGNED, output };
                let message = ToSign::new(result, vec![(Slot::Result, bytes)]);
                self.actions.push(Action::SignAndSend { conn, message });
                if session.awaiting_ack.len() == MAX_AWAITING_ACK {
                    session.awaiting_ack.pop_front();
                }
                session.awaiting_ack.push_back(lease);
                self.counters.results_sent += 1;
            }
            Err(failure) if failure.declined => {
                let reason: String = failure.reason.chars().take(MAX_REASON_LEN).collect();
                self.actions.push(Action::Send { conn, text: encode(&WorkerMessage::Decline { lease, task, reason }) });
                self.log(LogLevel::Warn, format!("task {task} declined: {}", failure.reason));
                self.code_not_loaded += 1;
            }
            Err(failure) => {
                self.counters.tasks_failed += 1;
                let reason: String = failure.reason.chars().take(MAX_REASON_LEN).collect();
                self.actions.push(Action::Send { conn, text: encode(&WorkerMessage::Failed { lease, task, reason }) });
                self.log(LogLevel::Warn, format!("task {task} failed: {}", failure.reason));
                device_lost = failure.device_lost;
            }
        }
        self.start_rest(now_ms.saturating_sub(started_ms), now_ms);
        if self.code_not_loaded >= MAX_CODE_NOT_LOADED {
            // Its code is gone for good (a build two deploys old) or out of reach: declining every
            // task of a kind forever would look like work and do none. The person reloads.
            self.teardown();
            self.run = None;
            let why = format!(
                "the code for this device's tasks could not be downloaded {MAX_CODE_NOT_LOADED} times in a row: \
                 reload the page (Starling may have been updated since it opened)"
            );
            self.log(LogLevel::Error, why.clone());
            self.start_error = Some(why);
            return self.reconcile(now_ms);
        }
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

    /// The owner's escrow nonce, read for an [`Action::ReadNonce`] on `conn`: the owner consents
    /// under it, or registration waits for the relay's next request.
    pub fn nonce_read(
        &mut self,
        conn: ConnId,
        asked: EscrowDeployment,
        bond: u64,
        nonce: Result<u64, String>,
        now_ms: u64,
    ) {
        if self.current_conn() != Some(conn) {
            return;
        }
        match nonce {
            Ok(nonce) => self.register(asked, nonce, bond),
            Err(why) => {
                self.log(LogLevel::Warn, format!("cannot read the owner's escrow nonce ({why}); not registering"))
            }
        }
        self.reconcile(now_ms);
    }

    /// Answers the relay's registration request, signed by the worker key (the bond's
    /// authorization) and its owner (consent under `nonce`), unless [`escrow::register`] refuses.
    fn register(&mut self, asked: EscrowDeployment, nonce: u64, bond: u64) {
        let Some(Run { link: Link::Ready(session), key, .. }) = &self.run else { return };
        // Another owner's key is in memory (the native worker's --owner-key) and signs here; a key
        // that owns itself signs both through the glue.
        let owner = self.options.owner.as_ref().filter(|owner| owner.public() != *key);
        let max_bond = self.options.max_bond;
        let outcome = escrow::register(key, owner, session.escrow.as_ref(), &asked, nonce, bond, max_bond)
            .map(|registration| (session.conn, registration));
        match outcome {
            Ok((conn, escrow::Registration { message, authorization, proof })) => {
                let owner = match &message {
                    WorkerMessage::Register { owner, .. } => *owner,
                    _ => unreachable!("escrow::register builds a register message"),
                };
                let mut slots: Vec<(Slot, Vec<u8>)> =
                    authorization.map(|a| (Slot::Authorization, a)).into_iter().collect();
                slots.push((Slot::Proof, proof));
                self.actions.push(Action::SignAndSend { conn, message: ToSign::new(message, slots) });
                let note =
                    format!("registering with the relay's escrow {}: owner {owner}, bond {bond}", asked.contract);
                self.log(LogLevel::Info, note);
            }
            Err(why) => self.log(LogLevel::Warn, format!("refused to register: {why}")),
        }
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
        let slots = self.options.slots as usize;
        let refusal = if session.jobs.len() >= slots {
            Some((false, format!("all {slots} of this worker's slots are busy")))
        } else if let Err(why) = refusal {
            Some((true, why))
        } else if let Err(why) = escrow::check_assignment(session.escrow.as_ref(), &assignment) {
            Some((true, why.to_string()))
        } else if let Pace::Pause(why) = pace {
            // Heartbeats keep a lease alive: holding it while paused could hold it for hours.
            Some((false, format!("paused: {why}")))
        } else {
            session.jobs.push(Job { assignment, started_ms: None });
            None
        };
        if let Some((cannot_run, reason)) = refusal {
            let conn = session.conn;
            let level = if cannot_run { LogLevel::Warn } else { LogLevel::Info };
            self.log(level, format!("task {task} refused: {reason}"));
            let reason: String = reason.chars().take(MAX_REASON_LEN).collect();
            let message = if cannot_run {
                self.counters.tasks_failed += 1;
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
        self.actions.push(Action::Connect { conn, url: run.urls().socket.clone() });
    }

    /// Closes the current connection (if any) and abandons its task.
    fn teardown(&mut self) {
        let Some(run) = &mut self.run else { return };
        match std::mem::replace(&mut run.link, Link::AwaitCompute) {
            Link::Handshake { conn, .. } => self.actions.push(Action::Close { conn }),
            Link::Ready(session) => {
                for job in session.jobs.iter().filter(|job| job.started_ms.is_some()) {
                    self.actions.push(Action::AbortTask { lease: job.assignment.lease });
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
        // The next attempt goes to the next relay, if there are several: a relay that stopped
        // answering is not tried again before the others.
        run.current = (run.current + 1) % run.relays.len();
        run.link = Link::Backoff { until_ms: now_ms + delay_ms, delay_ms, why: why.clone(), refused };
        let level = if refused { LogLevel::Error } else { LogLevel::Info };
        self.log(level, format!("{why}; retrying in {:.1} s", delay_ms as f64 / 1000.0));
        self.reconcile(now_ms);
    }

    /// The rest that keeps the duty cycle after `busy_ms` of work ending now. With several slots
    /// the rests of tasks ending together do not add up: the longest wins.
    fn start_rest(&mut self, busy_ms: u64, now_ms: u64) {
        let rest_ms = pacing::rest_after(Duration::from_millis(busy_ms), self.settings.duty_cycle).as_millis() as u64;
        let rest = Rest { until_ms: now_ms + rest_ms, rest_ms, busy_ms };
        if rest_ms > 0 && self.rest.is_none_or(|r| r.until_ms < rest.until_ms) {
            self.rest = Some(rest);
        }
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
        if let Some(Run { link: Link::Ready(session), relays, current, key, .. }) = &mut self.run {
            let urls = &relays[*current];
            let conn = session.conn;
            let actions = &mut self.actions;
            session.jobs.retain_mut(|job| {
                if job.started_ms.is_some() {
                    return true;
                }
                match pace {
                    Pace::Work => {
                        job.started_ms = Some(now_ms);
                        let assignment = Box::new(job.assignment.clone());
                        let upload = LeaseUpload { worker: *key, lease: assignment.lease };
                        actions.push(Action::RunTask { assignment, relay: urls.clone(), upload });
                        true
                    }
                    Pace::Pause(why) => {
                        let (lease, task) = (job.assignment.lease, job.assignment.task);
                        let reason = format!("paused: {why}");
                        let decline = WorkerMessage::Decline { lease, task, reason };
                        actions.push(Action::Send { conn, text: encode(&decline) });
                        false
                    }
                    Pace::Rest { .. } => true,
                }
            });
            let state = DeviceState {
                accepting: session.jobs.len() < self.options.slots as usize && pace == Pace::Work,
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
                Link::AwaitCompute => (State::Starting, Some("looking for a GPU adapter".to_string()), None),
                Link::Backoff { delay_ms, why, refused, .. } => {
                    let state = if *refused { State::Error } else { State::Connecting };
                    (state, Some(format!("{why}; retrying in {:.1} s", *delay_ms as f64 / 1000.0)), None)
                }
                Link::Handshake { .. } => (State::Connecting, None, None),
                Link::Ready(session) => match (session.jobs.iter().find(|job| job.started_ms.is_some()), pace) {
                    (Some(Job { assignment, .. }), pace) => {
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
            tasks_done: self.counters.tasks_done,
            tasks_failed: self.counters.tasks_failed,
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

/// Whether the escrow a relay's `welcome` names is the one [`Options`] pins, if it pins one.
fn pinned(options: &Options, escrow: Option<&EscrowDeployment>) -> Result<(), String> {
    let holds = |want: &Option<String>, got: fn(&EscrowDeployment) -> &String| {
        want.as_ref().is_none_or(|want| escrow.is_some_and(|d| got(d) == want))
    };
    if holds(&options.expect_contract, |d| &d.contract) && holds(&options.expect_chain_id, |d| &d.chain_id) {
        return Ok(());
    }
    Err(format!(
        "the relay settles through {escrow:?}, not the expected chain {:?} and contract {:?}",
        options.expect_chain_id, options.expect_contract
    ))
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
    if let Some(source) = a.kernel.wgsl() {
        if caps.backend == Backend::Cpu {
            return Err(
                "custom WGSL needs a GPU, and this worker has none (it runs built-in kernels on the CPU)".into()
            );
        }
        if source.len() > MAX_WGSL_BYTES
            || a.kernel.dispatches(a.inputs.len()).iter().any(|(entry, _)| entry.len() > MAX_ENTRY_POINT_LEN)
        {
            return Err("WGSL source or entry point over the protocol's limits".into());
        }
    }
    if let KernelSpec::Pipeline { .. } = &a.kernel {
        // Its stages' and buffers' counts, sizes and total, as the relay was to check them.
        a.kernel.validate().map_err(|e| e.message)?;
        a.kernel.pipeline_bindings(a.inputs.len()).map_err(|e| e.message)?;
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

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// An `auth` frame answering the challenge `[7; 32]`, for `key` to sign.
    pub(crate) fn auth_to_sign(key: &Keypair) -> ToSign {
        let bytes = auth_bytes(&Hash32([7; 32]), &key.public());
        ToSign::new(WorkerMessage::Auth { signature: UNSIGNED }, vec![(Slot::Auth, bytes)])
    }
}
