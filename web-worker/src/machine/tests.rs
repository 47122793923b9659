//! The browser worker's protocol and pacing, driven through the pure machine: a scripted relay
//! on one side, a scripted page on the other, time moved by hand.

use super::*;
use crate::escrow::DEFAULT_MAX_BOND;
use crate::pacing::Battery;
use starling_protocol::job::BuiltinKernel;
use starling_protocol::sign::{
    AccountAction, EscrowDeployment, account_bytes, auth_bytes, register_bytes_v2, result_bytes_v2, verify,
};
use starling_protocol::worker::{AdapterInfo, DeviceLimits, Platform};
use starling_protocol::{ErrorBody, ErrorCode, JobId, TaskId, sha256};

const RELAY: &str = "http://127.0.0.1:8080";

fn settings(duty_cycle: f32) -> Settings {
    Settings { duty_cycle, pause_when_hidden: true, min_battery: 0.2 }
}

fn caps(backend: Backend) -> Capabilities {
    Capabilities {
        backend,
        platform: Platform::Browser,
        adapter: AdapterInfo { name: "test adapter".into(), ..Default::default() },
        limits: DeviceLimits {
            max_buffer_size: 1 << 28,
            max_storage_buffer_binding_size: 1 << 20,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroups_per_dimension: 65_535,
        },
        asking_price: 0,
        duty_cycle: 1.0,
        slots: 1,
    }
}

fn assignment(lease: u64) -> Assignment {
    Assignment {
        lease: LeaseId(lease),
        task: TaskId { job: JobId(7), index: lease as u32 },
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        params: vec![1, 2, 3],
        inputs: vec![],
        workgroups: [4, 1, 1],
        output_size: 16,
        lease_ms: 30_000,
        spec_digest: sha256(b"spec"),
        escrow: Some(deployment()),
    }
}

/// The escrow the test relay names in its welcome.
fn deployment() -> EscrowDeployment {
    EscrowDeployment { chain_id: "starling-test".into(), contract: "starling1contract".into() }
}

fn relay(message: RelayMessage) -> String {
    serde_json::to_string(&message).unwrap()
}

/// The seed of the worker key the tests start machines with, unless they say otherwise.
const WORKER_SEED: [u8; 32] = [3; 32];

/// The worker's frames among `actions`, decoded, with the connection each went to; those the
/// machine asked the glue to sign are signed as the glue would, with the key of `WORKER_SEED`.
fn sent(actions: &[Action]) -> Vec<(ConnId, WorkerMessage)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, text } => Some((*conn, serde_json::from_str(text).unwrap())),
            Action::SignAndSend { conn, message } => {
                let signatures: Vec<_> = message.bytes().map(|b| Keypair::from_seed(WORKER_SEED).sign(b)).collect();
                let text = message.clone().complete(&signatures).unwrap();
                Some((*conn, serde_json::from_str(&text).unwrap()))
            }
            _ => None,
        })
        .collect()
}

fn statuses(actions: &[Action]) -> Vec<Status> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Post(WorkerEvent::Status(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn last_status(actions: &[Action]) -> Status {
    statuses(actions).pop().expect("a status was posted")
}

fn heartbeats(actions: &[Action]) -> Vec<DeviceState> {
    sent(actions)
        .into_iter()
        .filter_map(|(_, m)| match m {
            WorkerMessage::Heartbeat { state } => Some(state),
            _ => None,
        })
        .collect()
}

/// A worker driven through start, compute and the handshake to `welcome` at t = 1000 ms.
struct Rig {
    m: Machine,
    key: Keypair,
    conn: ConnId,
    now: u64,
}

impl Rig {
    fn welcomed(duty_cycle: f32, backend: Backend) -> (Rig, Vec<Action>) {
        Rig::welcomed_with(duty_cycle, backend, Options::default())
    }

    /// As [`Rig::welcomed`], for a worker with `options` (the welcome's actions are returned
    /// unchecked: a pinned escrow may refuse it).
    fn welcomed_with(duty_cycle: f32, backend: Backend, options: Options) -> (Rig, Vec<Action>) {
        let key = Keypair::from_seed(WORKER_SEED);
        let mut m = Machine::with_options(42, options);
        assert_eq!(last_status(&m.take_actions()).state, State::Stopped);

        m.start(RELAY, Ok(key.public()), settings(duty_cycle), 0);
        let actions = m.take_actions();
        assert!(matches!(actions[0], Action::OpenCompute), "{actions:?}");
        let status = last_status(&actions);
        assert_eq!((status.state, status.public_key), (State::Starting, Some(key.public())));

        m.compute_ready(caps(backend), 10);
        let actions = m.take_actions();
        let Some(Action::Connect { conn, url }) = actions.first() else { panic!("{actions:?}") };
        assert_eq!(url, "ws://127.0.0.1:8080/v1/workers/ws");
        let conn = *conn;
        let status = last_status(&actions);
        assert_eq!(
            (status.state, status.backend, status.adapter.as_deref()),
            (State::Connecting, Some(backend), Some("test adapter"))
        );

        m.socket_opened(conn, 20);
        let hello = sent(&m.take_actions());
        let [(to, WorkerMessage::Hello { protocol_version, worker_key, capabilities })] = &hello[..] else {
            panic!("{hello:?}")
        };
        assert_eq!((*to, *protocol_version, *worker_key), (conn, PROTOCOL_VERSION, key.public()));
        assert_eq!(capabilities.duty_cycle, duty_cycle, "hello carries the page's duty cycle");
        assert_eq!(capabilities.backend, backend);

        let nonce = sha256(b"nonce");
        m.socket_text(conn, &relay(RelayMessage::Challenge { nonce }), 30);
        let auth = sent(&m.take_actions());
        let [(_, WorkerMessage::Auth { signature })] = &auth[..] else { panic!("{auth:?}") };
        verify(&key.public(), &auth_bytes(&nonce, &key.public()), signature).expect("auth signs the challenge");

        let welcome = RelayMessage::Welcome { heartbeat_ms: 5_000, lease_ms: 30_000, escrow: Some(deployment()) };
        m.socket_text(conn, &relay(welcome), 1000);
        let actions = m.take_actions();
        (Rig { m, key, conn, now: 1000 }, actions)
    }

    fn at(&mut self, now: u64) -> &mut Self {
        self.now = now;
        self
    }

    fn relay(&mut self, message: RelayMessage) -> Vec<Action> {
        self.m.socket_text(self.conn, &relay(message), self.now);
        self.m.take_actions()
    }

    fn tick(&mut self) -> Vec<Action> {
        self.m.tick(self.now);
        self.m.take_actions()
    }

    fn finish(&mut self, lease: u64, outcome: Result<TaskOutput, TaskFailure>) -> Vec<Action> {
        self.m.task_finished(LeaseId(lease), outcome, self.now);
        self.m.take_actions()
    }

    fn device(&mut self, device: DeviceReport) -> Vec<Action> {
        self.m.set_device(device, self.now);
        self.m.take_actions()
    }
}

/// The machine only says what to sign: the signatures a held key makes elsewhere go exactly where
/// the message carries them, and a wrong count is refused rather than sent half-signed.
#[test]
fn frames_to_sign_are_completed_by_the_glue() {
    let key = Keypair::from_seed(WORKER_SEED);
    let mut m = Machine::new(1);
    m.compute_ready(caps(Backend::Vulkan), 0);
    m.start(RELAY, Ok(key.public()), settings(1.0), 0);
    let conn = m
        .take_actions()
        .iter()
        .find_map(|a| match a {
            Action::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("connects");
    m.socket_opened(conn, 1);
    m.take_actions();
    let nonce = sha256(b"challenge");
    m.socket_text(conn, &relay(RelayMessage::Challenge { nonce }), 2);
    let actions = m.take_actions();
    let Some(Action::SignAndSend { conn: to, message }) =
        actions.iter().find(|a| matches!(a, Action::SignAndSend { .. }))
    else {
        panic!("the challenge is answered through the glue's key: {actions:?}")
    };
    assert_eq!(*to, conn);
    let bytes: Vec<&[u8]> = message.bytes().collect();
    assert_eq!(bytes, [auth_bytes(&nonce, &key.public()).as_slice()]);
    assert!(message.clone().complete(&[]).is_err());
    assert!(message.clone().complete(&[key.sign(bytes[0]), key.sign(bytes[0])]).is_err());
    let text = message.clone().complete(&[key.sign(bytes[0])]).unwrap();
    assert_eq!(text, message.clone().sign_with(&key));
    let WorkerMessage::Auth { signature } = serde_json::from_str(&text).unwrap() else { panic!("{text}") };
    verify(&key.public(), &auth_bytes(&nonce, &key.public()), &signature).unwrap();
}

#[test]
fn handshake_then_assign_run_sign_rest_and_ack() {
    let (mut rig, actions) = Rig::welcomed(0.5, Backend::BrowserWebgpu);
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: true, battery: None, charging: None }]);
    assert_eq!(last_status(&actions).state, State::Working);
    assert_eq!(rig.m.next_deadline(), Some(6000), "next heartbeat");

    // Assigned at 2000: runs at once, and the relay hears we are busy.
    let actions = rig.at(2000).relay(RelayMessage::Assign(assignment(1)));
    let Some(Action::RunTask { assignment: task, relay, upload }) = actions.first() else { panic!("{actions:?}") };
    assert_eq!(**task, assignment(1));
    // The upload is signed for this lease only, by the worker's key.
    assert_eq!(*upload, LeaseUpload { worker: rig.key.public(), lease: LeaseId(1) });
    let auth = upload.sign_with(&rig.key, &sha256(b"big output"), 20_000);
    assert_eq!(auth.key, rig.key.public());
    assert_eq!(auth.purpose, starling_protocol::sign::UploadPurpose::Output { lease: LeaseId(1) });
    auth.verify(&sha256(b"big output"), 20_000).unwrap();
    assert_eq!(relay.blob(&sha256(b"in")), format!("{RELAY}/v1/blobs/{}", sha256(b"in")));
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: false, battery: None, charging: None }]);
    let status = last_status(&actions);
    assert_eq!((status.state, status.kernel.as_deref()), (State::Working, Some("monte_carlo_pi")));

    // Done at 2400: the result is signed over result_bytes_v2 for the welcomed escrow and the
    // job's spec digest; at duty 0.5 it rests 400 ms.
    let output_hash = sha256(b"output");
    let actions = rig.at(2400).finish(1, Ok(TaskOutput { output_hash, output_len: 16, inline: None }));
    let msgs = sent(&actions);
    let WorkerMessage::Result { lease, task, output_hash: h, output_len, signature, output: None } = &msgs[0].1 else {
        panic!("{msgs:?}")
    };
    assert_eq!((*lease, *task, *h, *output_len), (LeaseId(1), assignment(1).task, output_hash, 16));
    let signed = result_bytes_v2(
        deployment().as_deployment(),
        *task,
        &assignment(1).spec_digest,
        &output_hash,
        16,
        &rig.key.public(),
    );
    verify(&rig.key.public(), &signed, signature).unwrap();
    let status = last_status(&actions);
    assert_eq!(status.state, State::Resting);
    assert_eq!(status.reason.as_deref(), Some("duty cycle 50%: resting 400 ms after 400 ms of work"));
    assert_eq!((status.tasks_done, status.kernel), (0, None));
    assert_eq!(rig.m.next_deadline(), Some(2800), "the rest ends before the next heartbeat");

    // The ack counts the task as done.
    let actions = rig.relay(RelayMessage::Ack { lease: LeaseId(1) });
    assert_eq!(last_status(&actions).tasks_done, 1);
    // A second ack for the same lease (or one never sent) counts nothing.
    assert!(statuses(&rig.relay(RelayMessage::Ack { lease: LeaseId(1) })).is_empty());
    assert!(statuses(&rig.relay(RelayMessage::Ack { lease: LeaseId(99) })).is_empty());

    // Rest over: accepting again.
    let actions = rig.at(2800).tick();
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: true, battery: None, charging: None }]);
    assert_eq!(last_status(&actions).state, State::Working);

    // Heartbeats keep coming on the relay's period even when nothing changes.
    assert_eq!(rig.m.next_deadline(), Some(7800));
    assert!(heartbeats(&rig.at(7000).tick()).is_empty());
    assert_eq!(heartbeats(&rig.at(7800).tick()).len(), 1);
    assert_eq!(rig.m.next_deadline(), Some(12_800));
}

#[test]
fn small_outputs_travel_inside_the_result() {
    let small = TaskOutput::inline(b"small output".to_vec());
    assert_eq!((small.output_hash, small.output_len), (sha256(b"small output"), 12));

    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.at(2000).relay(RelayMessage::Assign(assignment(1)));
    let actions = rig.at(2100).finish(1, Ok(small));
    let msgs = sent(&actions);
    let WorkerMessage::Result { output: Some(inline), output_hash, .. } = &msgs[0].1 else { panic!("{msgs:?}") };
    assert_eq!((inline.0.as_slice(), *output_hash), (&b"small output"[..], sha256(b"small output")));
}

#[test]
fn an_assignment_during_a_rest_waits_for_the_rest_to_end() {
    let (mut rig, _) = Rig::welcomed(0.25, Backend::BrowserWebgpu);
    rig.at(2000).relay(RelayMessage::Assign(assignment(1)));
    rig.at(2100).finish(1, Ok(TaskOutput { output_hash: sha256(b"o"), output_len: 16, inline: None }));
    // 100 ms busy at 25%: 300 ms rest, until 2400. The relay raced us with a second task.
    let actions = rig.at(2150).relay(RelayMessage::Assign(assignment(2)));
    assert!(!actions.iter().any(|a| matches!(a, Action::RunTask { .. })), "{actions:?}");
    assert!(sent(&actions).iter().all(|(_, m)| !matches!(m, WorkerMessage::Failed { .. })));
    assert_eq!(rig.m.next_deadline(), Some(2400));
    let actions = rig.at(2400).tick();
    assert!(
        matches!(actions.first(), Some(Action::RunTask { assignment: t, .. }) if t.lease == LeaseId(2)),
        "{actions:?}"
    );
}

#[test]
fn pause_rules_reach_the_relay_and_the_page() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    // Hidden: not accepting, paused with a reason.
    let actions = rig.at(1500).device(DeviceReport { hidden: true, battery: None });
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: false, battery: None, charging: None }]);
    let status = last_status(&actions);
    assert_eq!((status.state, status.reason.as_deref()), (State::Paused, Some("the page is hidden")));

    // A task that raced the heartbeat is handed back at once, not held while hidden; it is not
    // this device's failure.
    let actions = rig.relay(RelayMessage::Assign(assignment(1)));
    let msgs = sent(&actions);
    assert!(
        matches!(&msgs[..], [(_, WorkerMessage::Decline { lease: LeaseId(1), reason, .. })] if reason == "paused: the page is hidden"),
        "{msgs:?}"
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::RunTask { .. })));
    assert!(statuses(&actions).is_empty(), "tasks_failed unchanged");

    // Visible again but the battery is low and not charging: still paused, and the relay hears
    // the battery reading.
    let low = DeviceReport { hidden: false, battery: Some(Battery { level: 0.1, charging: false }) };
    let actions = rig.device(low);
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: false, battery: Some(0.1), charging: Some(false) }]);
    assert_eq!(last_status(&actions).state, State::Paused);

    // Plugged in: works again by itself.
    let charging = DeviceReport { hidden: false, battery: Some(Battery { level: 0.1, charging: true }) };
    let actions = rig.device(charging);
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: true, battery: Some(0.1), charging: Some(true) }]);
    assert_eq!(last_status(&actions).state, State::Working);

    // The contributor allows hidden work: hiding no longer pauses.
    rig.m.set_settings(Settings { pause_when_hidden: false, ..settings(1.0) }, rig.now);
    rig.m.take_actions();
    let actions = rig.device(DeviceReport { hidden: true, battery: None });
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: true, battery: None, charging: None }]);
    assert!(statuses(&actions).is_empty(), "nothing the page sees changed");
}

#[test]
fn a_pause_during_a_task_lets_it_finish_then_pauses() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.at(2000).relay(RelayMessage::Assign(assignment(1)));
    let actions = rig.device(DeviceReport { hidden: true, battery: None });
    assert!(!actions.iter().any(|a| matches!(a, Action::AbortTask { .. })));
    let status = last_status(&actions);
    assert_eq!(
        (status.state, status.reason.as_deref()),
        (State::Working, Some("pausing after this task: the page is hidden"))
    );
    let actions = rig.at(2500).finish(1, Ok(TaskOutput { output_hash: sha256(b"o"), output_len: 16, inline: None }));
    assert!(matches!(sent(&actions)[0].1, WorkerMessage::Result { .. }));
    assert_eq!(last_status(&actions).state, State::Paused);
}

#[test]
fn cancel_aborts_the_task_and_sends_nothing_for_it() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.at(2000).relay(RelayMessage::Assign(assignment(1)));
    let actions = rig.at(2100).relay(RelayMessage::Cancel { lease: LeaseId(1) });
    assert!(matches!(actions.first(), Some(Action::AbortTask { lease: LeaseId(1) })), "{actions:?}");
    assert_eq!(heartbeats(&actions), [DeviceState { accepting: true, battery: None, charging: None }]);
    // If the glue finishes it anyway, the result is not sent.
    let actions = rig.at(2200).finish(1, Ok(TaskOutput { output_hash: sha256(b"o"), output_len: 16, inline: None }));
    assert!(sent(&actions).is_empty(), "{actions:?}");
    // Cancelling a lease we do not hold does nothing.
    assert!(rig.relay(RelayMessage::Cancel { lease: LeaseId(5) }).is_empty());
}

#[test]
fn refused_tasks_fail_with_a_reason_and_count() {
    type Case = (&'static str, Backend, Box<dyn Fn(&mut Assignment)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "custom WGSL without WebGPU",
            Backend::Cpu,
            Box::new(|a| a.kernel = KernelSpec::Wgsl { source: "fn main() {}".into(), entry_point: "main".into() }),
            "custom WGSL needs a GPU",
        ),
        ("too many inputs", Backend::BrowserWebgpu, Box::new(|a| a.inputs = vec![sha256(b"x"); 7]), "7 inputs"),
        ("too many params", Backend::BrowserWebgpu, Box::new(|a| a.params = vec![0; 65]), "65 param words"),
        ("empty output", Backend::BrowserWebgpu, Box::new(|a| a.output_size = 0), "output of 0 bytes"),
        (
            "output over the device",
            Backend::BrowserWebgpu,
            Box::new(|a| a.output_size = (1 << 20) + 4),
            "this device binds",
        ),
        ("zero workgroups", Backend::BrowserWebgpu, Box::new(|a| a.workgroups = [0, 1, 1]), "workgroups"),
        ("too many workgroups", Backend::BrowserWebgpu, Box::new(|a| a.workgroups = [1, 70_000, 1]), "workgroups"),
    ];
    for (name, backend, spoil, expect) in cases {
        let (mut rig, _) = Rig::welcomed(1.0, backend);
        let mut a = assignment(1);
        spoil(&mut a);
        let actions = rig.relay(RelayMessage::Assign(a));
        assert!(!actions.iter().any(|a| matches!(a, Action::RunTask { .. })), "{name}");
        let msgs = sent(&actions);
        assert!(
            matches!(&msgs[..], [(_, WorkerMessage::Failed { lease: LeaseId(1), reason, .. })] if reason.contains(expect)),
            "{name}: {msgs:?}"
        );
        assert_eq!(last_status(&actions).tasks_failed, 1, "{name}");
    }
    // Built-ins run on the CPU backend.
    let (mut rig, _) = Rig::welcomed(1.0, Backend::Cpu);
    assert!(matches!(rig.relay(RelayMessage::Assign(assignment(1))).first(), Some(Action::RunTask { .. })));
}

#[test]
fn a_second_assignment_while_busy_is_refused() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.relay(RelayMessage::Assign(assignment(1)));
    let actions = rig.relay(RelayMessage::Assign(assignment(2)));
    let msgs = sent(&actions);
    // Declined, not failed: the relay may offer it to this worker again once it is free.
    assert!(matches!(&msgs[..], [(_, WorkerMessage::Decline { lease: LeaseId(2), .. })]), "{msgs:?}");
    // The first one still reports.
    let actions = rig.finish(1, Ok(TaskOutput { output_hash: sha256(b"o"), output_len: 16, inline: None }));
    assert!(matches!(sent(&actions)[0].1, WorkerMessage::Result { lease: LeaseId(1), .. }));
}

#[test]
fn a_task_whose_code_could_not_be_fetched_is_declined_not_failed() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.relay(RelayMessage::Assign(assignment(1)));
    let why = "the WGSL of mandelbrot could not be downloaded";
    let actions = rig.finish(1, Err(TaskFailure { reason: why.into(), device_lost: false, declined: true }));
    let msgs = sent(&actions);
    assert!(
        matches!(&msgs[0], (_, WorkerMessage::Decline { lease: LeaseId(1), reason, .. }) if reason == why),
        "{msgs:?}"
    );
    assert!(!msgs.iter().any(|(_, m)| matches!(m, WorkerMessage::Failed { .. })), "{msgs:?}");
    assert_eq!(last_status(&actions).tasks_failed, 0, "not the task's failure, nor counted as this device's");
    // The worker goes on: the next task runs, and a success starts the count again.
    rig.relay(RelayMessage::Assign(assignment(2)));
    let actions = rig.finish(2, Ok(TaskOutput { output_hash: sha256(b"o"), output_len: 16, inline: None }));
    assert!(matches!(sent(&actions)[0].1, WorkerMessage::Result { lease: LeaseId(2), .. }), "{actions:?}");
    let decline = |rig: &mut Rig, lease: u64| {
        rig.relay(RelayMessage::Assign(assignment(lease)));
        rig.finish(lease, Err(TaskFailure { reason: why.into(), device_lost: false, declined: true }))
    };
    for lease in 3..2 + u64::from(MAX_CODE_NOT_LOADED) {
        let actions = decline(&mut rig, lease);
        assert_ne!(last_status(&actions).state, State::Error, "after {} in a row", lease - 2);
    }
    // Code that cannot be fetched again and again is gone (a build two deploys old): declining
    // every task forever would look like work and do none. The run stops and says to reload.
    let actions = decline(&mut rig, 2 + u64::from(MAX_CODE_NOT_LOADED));
    assert!(matches!(sent(&actions)[0].1, WorkerMessage::Decline { .. }), "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Close { .. })), "{actions:?}");
    let status = last_status(&actions);
    assert_eq!(status.state, State::Error);
    assert!(status.reason.as_deref().is_some_and(|r| r.contains("reload the page")), "{status:?}");
    assert!(rig.relay(RelayMessage::Assign(assignment(99))).is_empty(), "no session after the stop");
}

#[test]
fn a_failed_task_is_reported_bounded_and_a_lost_device_reopens_and_reconnects() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.relay(RelayMessage::Assign(assignment(1)));
    let long = "x".repeat(MAX_REASON_LEN * 2);
    let actions = rig.finish(1, Err(TaskFailure { reason: long, device_lost: false, declined: false }));
    let msgs = sent(&actions);
    let WorkerMessage::Failed { reason, .. } = &msgs[0].1 else { panic!("{msgs:?}") };
    assert_eq!(reason.len(), MAX_REASON_LEN);
    assert_eq!(last_status(&actions).tasks_failed, 1);

    rig.relay(RelayMessage::Assign(assignment(2)));
    let actions =
        rig.finish(2, Err(TaskFailure { reason: "GPU device lost".into(), device_lost: true, declined: false }));
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            Action::Send { .. } => "send",
            Action::Close { .. } => "close",
            Action::OpenCompute => "open",
            Action::Post(_) => "post",
            other => panic!("{other:?}"),
        })
        .filter(|k| *k != "post")
        .collect();
    assert_eq!(kinds, ["send", "close", "open"], "report, drop the session, reopen the GPU");
    assert_eq!(last_status(&actions).state, State::Starting);
    // Events from the old socket mean nothing now.
    assert!(rig.relay(RelayMessage::Assign(assignment(3))).is_empty());
    rig.m.compute_ready(caps(Backend::Cpu), rig.now);
    let actions = rig.m.take_actions();
    assert!(matches!(actions.first(), Some(Action::Connect { conn, .. }) if *conn != rig.conn), "{actions:?}");
}

#[test]
fn dropped_connections_retry_with_growing_jittered_backoff_until_welcomed() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.relay(RelayMessage::Assign(assignment(1)));
    rig.m.socket_closed(rig.conn, "code 1006", 2000);
    let actions = rig.m.take_actions();
    assert!(matches!(actions.first(), Some(Action::AbortTask { lease: LeaseId(1) })), "the lease died with the socket");
    let status = last_status(&actions);
    assert_eq!(status.state, State::Connecting);
    assert!(status.reason.as_deref().unwrap().starts_with("connection lost (code 1006); retrying in"), "{status:?}");

    let mut now = 2000;
    let mut delays = Vec::new();
    for _ in 0..10 {
        let at = rig.m.next_deadline().unwrap();
        delays.push(at - now);
        now = at;
        rig.m.tick(now);
        let actions = rig.m.take_actions();
        let Some(Action::Connect { conn, .. }) = actions.first() else { panic!("{actions:?}") };
        // The socket fails to open.
        rig.m.socket_closed(*conn, "refused", now);
        rig.m.take_actions();
    }
    for (i, delay) in delays.iter().enumerate() {
        let base = (BACKOFF_FIRST_MS << i).min(BACKOFF_MAX_MS);
        assert!((base..=base + base / 2).contains(delay), "attempt {i}: {delay} ms, base {base}");
    }

    // A welcome resets the backoff.
    let at = rig.m.next_deadline().unwrap();
    rig.m.tick(at);
    let Some(Action::Connect { conn, .. }) = rig.m.take_actions().into_iter().next() else { panic!() };
    rig.m.socket_opened(conn, at);
    rig.m.socket_text(conn, &relay(RelayMessage::Challenge { nonce: sha256(b"n") }), at);
    rig.m.socket_text(conn, &relay(RelayMessage::Welcome { heartbeat_ms: 5000, lease_ms: 30_000, escrow: None }), at);
    rig.m.socket_closed(conn, "again", at + 1);
    rig.m.take_actions();
    let delay = rig.m.next_deadline().unwrap() - (at + 1);
    assert!((BACKOFF_FIRST_MS..=BACKOFF_FIRST_MS * 3 / 2).contains(&delay), "{delay}");
}

/// A worker given several relays moves to the next when its connection is lost (in turn, back
/// to the first after the last), and a task it then gets is fetched from and returned to the
/// relay it came from.
#[test]
fn a_lost_relay_is_left_for_the_next_and_tasks_use_the_relay_they_came_from() {
    let mut m = Machine::with_options(42, Options::default());
    m.start("http://a:1,http://b:2", Ok(Keypair::from_seed(WORKER_SEED).public()), settings(1.0), 0);
    m.compute_ready(caps(Backend::Cpu), 10);
    let connect = |actions: Vec<Action>| match actions.into_iter().find(|a| matches!(a, Action::Connect { .. })) {
        Some(Action::Connect { conn, url }) => (conn, url),
        other => panic!("{other:?}"),
    };
    let (conn, url) = connect(m.take_actions());
    assert_eq!(url, "ws://a:1/v1/workers/ws", "the first relay first");
    m.socket_closed(conn, "refused", 20);
    m.take_actions();
    let mut urls = Vec::new();
    let mut now;
    for _ in 0..3 {
        now = m.next_deadline().unwrap();
        m.tick(now);
        let (conn, url) = connect(m.take_actions());
        urls.push(url);
        m.socket_closed(conn, "refused", now);
        m.take_actions();
    }
    assert_eq!(urls, ["ws://b:2/v1/workers/ws", "ws://a:1/v1/workers/ws", "ws://b:2/v1/workers/ws"]);

    now = m.next_deadline().unwrap();
    m.tick(now);
    let (conn, url) = connect(m.take_actions());
    assert_eq!(url, "ws://a:1/v1/workers/ws");
    m.socket_closed(conn, "refused", now);
    now = m.next_deadline().unwrap();
    m.tick(now);
    let (conn, url) = connect(m.take_actions());
    assert_eq!(url, "ws://b:2/v1/workers/ws");
    m.socket_opened(conn, now);
    m.socket_text(conn, &relay(RelayMessage::Challenge { nonce: sha256(b"n") }), now);
    m.socket_text(
        conn,
        &relay(RelayMessage::Welcome { heartbeat_ms: 5000, lease_ms: 30_000, escrow: Some(deployment()) }),
        now,
    );
    m.take_actions();
    m.socket_text(conn, &relay(RelayMessage::Assign(assignment(1))), now);
    let actions = m.take_actions();
    let Some(Action::RunTask { relay, .. }) = actions.iter().find(|a| matches!(a, Action::RunTask { .. })) else {
        panic!("{actions:?}")
    };
    assert_eq!(relay.http, "http://b:2", "inputs and output go through the relay that assigned the task");
}

#[test]
fn handshake_problems_drop_the_socket_and_refusals_show_as_errors() {
    let start = |m: &mut Machine| -> ConnId {
        m.start(RELAY, Ok(Keypair::from_seed([1; 32]).public()), settings(1.0), 0);
        m.compute_ready(caps(Backend::BrowserWebgpu), 0);
        let Some(Action::Connect { conn, .. }) =
            m.take_actions().into_iter().find(|a| matches!(a, Action::Connect { .. }))
        else {
            panic!()
        };
        m.socket_opened(conn, 0);
        m.take_actions();
        conn
    };

    // Refused: error state with the relay's words, and it keeps retrying.
    let mut m = Machine::new(1);
    let conn = start(&mut m);
    let refusal = RelayMessage::Error(ErrorBody::new(ErrorCode::OutOfOrder, "protocol version 9 is not spoken here"));
    m.socket_text(conn, &relay(refusal), 5);
    let actions = m.take_actions();
    assert!(actions.iter().any(|a| matches!(a, Action::Close { conn: c } if *c == conn)));
    let status = last_status(&actions);
    assert_eq!(status.state, State::Error);
    assert!(status.reason.unwrap().contains("protocol version 9 is not spoken here"));
    assert!(m.next_deadline().is_some());

    // Silence: the handshake times out.
    let mut m = Machine::new(1);
    let conn = start(&mut m);
    assert_eq!(m.next_deadline(), Some(HANDSHAKE_TIMEOUT_MS));
    m.tick(HANDSHAKE_TIMEOUT_MS);
    let actions = m.take_actions();
    assert!(actions.iter().any(|a| matches!(a, Action::Close { conn: c } if *c == conn)));
    assert_eq!(last_status(&actions).state, State::Connecting);

    // Out of order, garbage, and oversized frames.
    for frame in [
        relay(RelayMessage::Welcome { heartbeat_ms: 1, lease_ms: 1, escrow: None }),
        "not json".to_string(),
        format!("{{\"type\":\"ack\",\"lease\":1,\"pad\":\"{}\"}}", "x".repeat(MAX_WS_FRAME_BYTES)),
    ] {
        let mut m = Machine::new(1);
        let conn = start(&mut m);
        m.socket_text(conn, &frame, 5);
        let actions = m.take_actions();
        assert!(actions.iter().any(|a| matches!(a, Action::Close { conn: c } if *c == conn)), "{}", &frame[..20]);
        assert!(sent(&actions).is_empty());
    }
}

#[test]
fn stop_really_stops_and_start_again_resumes() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.relay(RelayMessage::Assign(assignment(1)));
    rig.m.stop(3000);
    let actions = rig.m.take_actions();
    assert!(matches!(actions[0], Action::AbortTask { lease: LeaseId(1) }), "{actions:?}");
    assert!(matches!(actions[1], Action::Close { conn } if conn == rig.conn));
    assert!(sent(&actions).is_empty());
    let status = last_status(&actions);
    assert_eq!((status.state, status.public_key), (State::Stopped, Some(rig.key.public())));
    assert_eq!(rig.m.next_deadline(), None, "no timers, no retries");
    // Nothing from the old socket or task gets through.
    assert!(rig.relay(RelayMessage::Assign(assignment(2))).is_empty());
    assert!(rig.finish(1, Ok(TaskOutput { output_hash: sha256(b"o"), output_len: 16, inline: None })).is_empty());
    rig.m.tick(100_000);
    assert!(rig.m.take_actions().is_empty());

    // Starting again reuses the opened GPU: straight to connecting.
    rig.m.start(RELAY, Ok(Keypair::from_seed(WORKER_SEED).public()), settings(1.0), 200_000);
    let actions = rig.m.take_actions();
    assert!(matches!(actions.first(), Some(Action::Connect { .. })), "{actions:?}");
}

#[test]
fn start_problems_are_errors_and_a_repeated_start_keeps_the_session() {
    for (relay_url, key, settings, expect) in [
        ("ftp://x", Ok(Keypair::from_seed([1; 32]).public()), settings(0.5), "http:// or https://"),
        (RELAY, Err("secret_key must be 64 hex digits".to_string()), settings(0.5), "64 hex digits"),
        (RELAY, Ok(Keypair::from_seed([1; 32]).public()), settings(0.0), "duty_cycle"),
    ] {
        let mut m = Machine::new(1);
        m.start(relay_url, key, settings, 0);
        let actions = m.take_actions();
        assert!(!actions.iter().any(|a| matches!(a, Action::Connect { .. } | Action::OpenCompute)));
        let status = last_status(&actions);
        assert_eq!(status.state, State::Error);
        assert!(status.reason.unwrap().contains(expect));
    }

    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    rig.m.start(RELAY, Ok(Keypair::from_seed(WORKER_SEED).public()), settings(0.5), rig.now);
    let actions = rig.m.take_actions();
    assert!(!actions.iter().any(|a| matches!(a, Action::Close { .. } | Action::Connect { .. })), "{actions:?}");
    // A different key is a different worker: new session.
    rig.m.start(RELAY, Ok(Keypair::from_seed([4; 32]).public()), settings(0.5), rig.now);
    let actions = rig.m.take_actions();
    assert!(actions.iter().any(|a| matches!(a, Action::Close { .. })));
    assert!(actions.iter().any(|a| matches!(a, Action::Connect { .. })));
}

#[test]
fn bad_settings_are_refused_and_the_old_ones_kept() {
    let (mut rig, _) = Rig::welcomed(0.5, Backend::BrowserWebgpu);
    rig.m.set_settings(Settings { duty_cycle: f32::NAN, ..settings(0.5) }, rig.now);
    let actions = rig.m.take_actions();
    assert!(actions.iter().any(|a| matches!(a, Action::Post(WorkerEvent::Log { level: LogLevel::Error, .. }))));
    rig.relay(RelayMessage::Assign(assignment(1)));
    let actions = rig.at(3500).finish(1, Ok(TaskOutput { output_hash: sha256(b"o"), output_len: 16, inline: None }));
    assert_eq!(last_status(&actions).reason.unwrap(), "duty cycle 50%: resting 2.5 s after 2.5 s of work");
}

#[test]
fn statuses_are_posted_only_on_change() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    for now in [1100, 1200, 1300] {
        assert!(statuses(&rig.at(now).tick()).is_empty());
        assert!(statuses(&rig.device(DeviceReport::default())).is_empty());
    }
}

#[test]
fn registration_requests_are_answered_with_the_owners_consent_and_the_keys() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    let actions = rig.relay(RelayMessage::Register { escrow: deployment(), nonce: 3, bond: 10 });
    let msgs = sent(&actions);
    let [(conn, WorkerMessage::Register { owner, nonce, bond, authorization, proof })] = &msgs[..] else {
        panic!("{msgs:?}")
    };
    let key = rig.key.public();
    assert_eq!((*conn, *owner, *nonce, *bond), (rig.conn, key, 3, 10), "the browser's key owns itself");
    let d = deployment();
    let action = AccountAction::Bond { worker: key, amount: 10 };
    verify(&key, &account_bytes(d.as_deployment(), &key, 3, &action), authorization).expect("the owner's consent");
    verify(&key, &register_bytes_v2(d.as_deployment(), &key, &key), proof).expect("the key's consent");

    // Another deployment than the welcome's, or a bond above the cap: nothing is signed.
    let elsewhere = EscrowDeployment { contract: "starling1other".into(), ..deployment() };
    assert!(sent(&rig.relay(RelayMessage::Register { escrow: elsewhere, nonce: 3, bond: 10 })).is_empty());
    let greedy = RelayMessage::Register { escrow: deployment(), nonce: 3, bond: DEFAULT_MAX_BOND + 1 };
    assert!(sent(&rig.relay(greedy)).is_empty());
}

#[test]
fn assignments_naming_another_deployment_fail_unsigned() {
    let (mut rig, _) = Rig::welcomed(1.0, Backend::BrowserWebgpu);
    let mut a = assignment(1);
    a.escrow = Some(EscrowDeployment { chain_id: "elsewhere".into(), ..deployment() });
    let msgs = sent(&rig.relay(RelayMessage::Assign(a)));
    let [(_, WorkerMessage::Failed { lease, reason, .. })] = &msgs[..] else { panic!("{msgs:?}") };
    assert_eq!(*lease, LeaseId(1));
    assert!(reason.contains("deployment"), "{reason}");
}

fn slots(n: u32) -> Options {
    Options { slots: n, ..Options::default() }
}

fn accepting(actions: &[Action]) -> Vec<bool> {
    heartbeats(actions).iter().map(|s| s.accepting).collect()
}

#[test]
fn several_slots_run_side_by_side_and_decline_past_them() {
    let (mut rig, _) = Rig::welcomed_with(1.0, Backend::Vulkan, slots(2));
    let actions = rig.at(2000).relay(RelayMessage::Assign(assignment(1)));
    assert!(matches!(actions.first(), Some(Action::RunTask { .. })), "{actions:?}");
    assert!(accepting(&actions).is_empty(), "one of two slots busy: still accepting, nothing new to say");
    let actions = rig.relay(RelayMessage::Assign(assignment(2)));
    assert!(matches!(actions.first(), Some(Action::RunTask { .. })), "{actions:?}");
    assert_eq!(accepting(&actions), [false], "both slots busy");

    let msgs = sent(&rig.relay(RelayMessage::Assign(assignment(3))));
    let [(_, WorkerMessage::Decline { lease: LeaseId(3), reason, .. })] = &msgs[..] else { panic!("{msgs:?}") };
    assert!(reason.contains("2 of this worker's slots are busy"), "{reason}");

    // Either may finish first; each is reported for its own lease and frees its slot.
    let actions = rig.at(2300).finish(2, Ok(TaskOutput::inline(b"two".to_vec())));
    assert!(matches!(sent(&actions)[0].1, WorkerMessage::Result { lease: LeaseId(2), .. }));
    assert_eq!(accepting(&actions), [true]);
    assert!(statuses(&actions).is_empty(), "task 1 still runs: the status (working on it) stays");
    // A cancel aborts only its own task.
    let actions = rig.relay(RelayMessage::Cancel { lease: LeaseId(1) });
    let aborted: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::AbortTask { lease } => Some(*lease),
            _ => None,
        })
        .collect();
    assert_eq!(aborted, [LeaseId(1)]);
    assert_eq!(rig.m.counters(), Counters { tasks_done: 0, tasks_failed: 0, results_sent: 1, sessions: 1 });
    // A dropped connection aborts whatever still runs.
    rig.relay(RelayMessage::Assign(assignment(4)));
    rig.relay(RelayMessage::Assign(assignment(5)));
    rig.m.socket_closed(rig.conn, "reset", rig.now);
    let mut aborted: Vec<_> = rig
        .m
        .take_actions()
        .iter()
        .filter_map(|a| match a {
            Action::AbortTask { lease } => Some(*lease),
            _ => None,
        })
        .collect();
    aborted.sort();
    assert_eq!(aborted, [LeaseId(4), LeaseId(5)]);
}

#[test]
fn rests_of_tasks_ending_together_do_not_add_up() {
    let (mut rig, _) = Rig::welcomed_with(0.5, Backend::Vulkan, slots(2));
    rig.at(2000).relay(RelayMessage::Assign(assignment(1)));
    rig.relay(RelayMessage::Assign(assignment(2)));
    let actions = rig.at(2400).finish(1, Ok(TaskOutput::inline(b"one".to_vec())));
    assert!(statuses(&actions).is_empty(), "task 2 still runs through the rest: still working");
    assert_eq!(rig.m.next_deadline(), Some(2800));
    rig.at(2600).finish(2, Ok(TaskOutput::inline(b"two".to_vec())));
    assert_eq!(rig.m.next_deadline(), Some(3200), "600 ms of work, 600 ms of rest: the later end wins");
    // A task assigned during the rest waits for its end.
    let actions = rig.at(2900).relay(RelayMessage::Assign(assignment(3)));
    assert!(!actions.iter().any(|a| matches!(a, Action::RunTask { .. })), "{actions:?}");
    let actions = rig.at(3200).tick();
    assert!(matches!(actions.first(), Some(Action::RunTask { .. })), "{actions:?}");
}

#[test]
fn an_owner_other_than_the_key_reads_its_own_nonce_before_consenting() {
    let owner = Keypair::from_seed([8; 32]);
    let options = Options { owner: Some(Keypair::from_seed(owner.seed())), max_bond: 50, ..Options::default() };
    let (mut rig, _) = Rig::welcomed_with(1.0, Backend::Vulkan, options);
    // The relay's nonce is the worker key's; the owner's is read, not taken on the relay's word.
    let actions = rig.relay(RelayMessage::Register { escrow: deployment(), nonce: 3, bond: 40 });
    assert!(sent(&actions).is_empty(), "{actions:?}");
    let Some(Action::ReadNonce { conn, relay: _, account, asked, bond }) =
        actions.iter().find(|a| matches!(a, Action::ReadNonce { .. }))
    else {
        panic!("{actions:?}")
    };
    assert_eq!((*conn, *account, asked, *bond), (rig.conn, owner.public(), &deployment(), 40));

    rig.m.nonce_read(rig.conn, deployment(), 40, Ok(8), rig.now);
    let msgs = sent(&rig.m.take_actions());
    let [(_, WorkerMessage::Register { owner: named, nonce, bond, authorization, proof })] = &msgs[..] else {
        panic!("{msgs:?}")
    };
    assert_eq!((*named, *nonce, *bond), (owner.public(), 8, 40));
    let d = deployment();
    let key = rig.key.public();
    let action = AccountAction::Bond { worker: key, amount: 40 };
    verify(&owner.public(), &account_bytes(d.as_deployment(), &owner.public(), 8, &action), authorization)
        .expect("the owner consents under its own nonce");
    verify(&key, &register_bytes_v2(d.as_deployment(), &owner.public(), &key), proof).expect("the key's consent");

    // A failed read, an answer for a connection already gone, and a bond over the owner's cap
    // sign nothing.
    rig.m.nonce_read(rig.conn, deployment(), 40, Err("timed out".into()), rig.now);
    assert!(sent(&rig.m.take_actions()).is_empty());
    rig.m.nonce_read(rig.conn + 1, deployment(), 40, Ok(8), rig.now);
    assert!(sent(&rig.m.take_actions()).is_empty());
    rig.m.nonce_read(rig.conn, deployment(), 51, Ok(8), rig.now);
    assert!(sent(&rig.m.take_actions()).is_empty());
}

#[test]
fn the_page_pins_the_deployment_it_picked_the_relay_for() {
    let mut m = Machine::with_options(42, Options::default());
    let picked = starling_protocol::sign::EscrowDeployment { chain_id: "mainnet".into(), contract: "c1".into() };
    m.expect_deployment(Some(picked));
    assert_eq!(
        (m.options.expect_contract.as_deref(), m.options.expect_chain_id.as_deref()),
        (Some("c1"), Some("mainnet")),
        "what the refusal below checks"
    );
    m.expect_deployment(None);
    assert_eq!((m.options.expect_contract.as_deref(), m.options.expect_chain_id.as_deref()), (None, None));
}

#[test]
fn a_relay_naming_another_escrow_than_the_pinned_one_is_refused() {
    for (name, options) in [
        ("contract", Options { expect_contract: Some("starling1other".into()), ..Options::default() }),
        ("chain", Options { expect_chain_id: Some("mainnet".into()), ..Options::default() }),
    ] {
        let (rig, actions) = Rig::welcomed_with(1.0, Backend::Vulkan, options);
        assert!(actions.iter().any(|a| matches!(a, Action::Close { conn } if *conn == rig.conn)), "{name}");
        assert!(heartbeats(&actions).is_empty(), "{name}: no session, no heartbeat");
        let status = last_status(&actions);
        assert_eq!(status.state, State::Error, "{name}");
        assert!(status.reason.as_deref().is_some_and(|r| r.contains("expected chain")), "{name}: {status:?}");
        assert_eq!(rig.m.counters().sessions, 0, "{name}");
    }
    // Pinned to the deployment the relay names: welcomed.
    let pinned = Options {
        expect_contract: Some(deployment().contract),
        expect_chain_id: Some(deployment().chain_id),
        ..Options::default()
    };
    let (rig, actions) = Rig::welcomed_with(1.0, Backend::Vulkan, pinned);
    assert_eq!(accepting(&actions), [true]);
    assert_eq!(rig.m.counters().sessions, 1);
}
