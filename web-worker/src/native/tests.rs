//! The native driver against a scripted relay on a real socket: the shared machine's decisions
//! (refuse, decline when busy, cancel) carried out by real WebSockets, HTTP and tasks.

use super::*;
use starling_protocol::job::BuiltinKernel;
use starling_protocol::worker::{DeviceState, RelayMessage, WorkerMessage};
use starling_protocol::{JobId, TaskId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

const WAIT: Duration = Duration::from_secs(10);

async fn send(ws: &mut Ws, message: RelayMessage) {
    ws.send(Message::Text(serde_json::to_string(&message).unwrap().into())).await.unwrap();
}

async fn next(ws: &mut Ws) -> WorkerMessage {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("the worker said nothing").unwrap().unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// The next message that is not a heartbeat repeating `state`.
async fn next_news(ws: &mut Ws, state: &mut Option<DeviceState>) -> WorkerMessage {
    loop {
        match next(ws).await {
            WorkerMessage::Heartbeat { state: now } if Some(now) == *state => continue,
            WorkerMessage::Heartbeat { state: now } => {
                *state = Some(now);
                return WorkerMessage::Heartbeat { state: now };
            }
            other => return other,
        }
    }
}

fn accepting(message: &WorkerMessage) -> bool {
    match message {
        WorkerMessage::Heartbeat { state } => state.accepting,
        other => panic!("expected a heartbeat, got {other:?}"),
    }
}

fn assignment(lease: u64, kernel: KernelSpec, inputs: Vec<starling_protocol::Hash32>) -> Assignment {
    Assignment {
        lease: LeaseId(lease),
        task: TaskId { job: JobId(1), index: lease as u32 },
        kernel,
        params: vec![1, 0, 0, 0],
        inputs,
        workgroups: [1, 1, 1],
        output_size: 16,
        lease_ms: 60_000,
        spec_digest: sha256(b"spec"),
        escrow: None,
    }
}

#[tokio::test]
async fn one_slot_refuses_declines_when_busy_and_a_cancel_aborts_the_running_task_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = format!("http://{}", listener.local_addr().unwrap());
    let mut config = WorkerConfig::new(relay);
    config.cpu_only = true;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let key = Keypair::from_seed([3; 32]);
    let worker = tokio::spawn(run(config, key, Compute::Cpu, async move {
        let _ = stop_rx.await;
    }));

    let (stream, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    assert!(matches!(next(&mut ws).await, WorkerMessage::Hello { .. }));
    send(&mut ws, RelayMessage::Challenge { nonce: sha256(b"nonce") }).await;
    assert!(matches!(next(&mut ws).await, WorkerMessage::Auth { .. }));
    send(&mut ws, RelayMessage::Welcome { heartbeat_ms: 60_000, lease_ms: 60_000, escrow: None }).await;
    let mut state = None;
    assert!(accepting(&next_news(&mut ws, &mut state).await));

    // Custom WGSL on a worker without a GPU: failed before anything is downloaded.
    let wgsl =
        KernelSpec::Wgsl { source: "@compute @workgroup_size(1) fn main() {}".into(), entry_point: "main".into() };
    send(&mut ws, RelayMessage::Assign(assignment(9, wgsl, vec![]))).await;
    match next_news(&mut ws, &mut state).await {
        WorkerMessage::Failed { lease, reason, .. } => {
            assert_eq!(lease, LeaseId(9));
            assert!(reason.contains("needs a GPU"), "{reason}");
        }
        other => panic!("expected failed, got {other:?}"),
    }

    // A task whose input download hangs: the one slot is taken.
    let input = sha256(b"an input the relay never sends");
    let builtin = KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi };
    send(&mut ws, RelayMessage::Assign(assignment(1, builtin.clone(), vec![input]))).await;
    assert!(!accepting(&next_news(&mut ws, &mut state).await), "a busy worker says it takes no more");
    let (mut download, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut request = vec![0u8; 4096];
    let n = download.read(&mut request).await.unwrap();
    let request = String::from_utf8_lossy(&request[..n]).to_string();
    assert!(request.starts_with(&format!("GET /v1/blobs/{input} ")), "{request}");

    // A second assignment while the slot is busy is declined, not queued or failed.
    send(&mut ws, RelayMessage::Assign(assignment(2, builtin, vec![]))).await;
    match next_news(&mut ws, &mut state).await {
        WorkerMessage::Decline { lease, reason, .. } => {
            assert_eq!(lease, LeaseId(2));
            assert!(reason.contains("busy"), "{reason}");
        }
        other => panic!("expected decline, got {other:?}"),
    }

    // The cancel aborts the running task: its download is dropped at once, and the slot is free.
    send(&mut ws, RelayMessage::Cancel { lease: LeaseId(1) }).await;
    assert!(accepting(&next_news(&mut ws, &mut state).await));
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, download.read(&mut rest)).await.expect("the download was not dropped");
    assert!(matches!(closed, Ok(0) | Err(_)), "the aborted download's connection closes");
    let _ = download.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;

    stop_tx.send(()).unwrap();
    let stats = tokio::time::timeout(WAIT, worker).await.unwrap().unwrap().unwrap();
    assert_eq!(stats, WorkerStats { tasks_run: 0, tasks_failed: 1, sessions: 1 });
}
