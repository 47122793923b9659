//! Bad input of every kind gets a clear error, stores nothing, and leaves the relay serving.
//! Runs a real relay on 127.0.0.1:0 with a real SQLite file.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use starling_protocol::job::{BuiltinKernel, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::sign::{Keypair, UploadPurpose};
use starling_protocol::upload::UploadAuth;
use starling_protocol::worker::{
    AdapterInfo, Backend, Capabilities, DeviceLimits, DeviceState, Platform, RelayMessage, WorkerMessage,
};
use starling_protocol::{ErrorBody, ErrorCode, JobId, LeaseId, PROTOCOL_VERSION, Signature, TaskId, sha256};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

struct Relay {
    base: String,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    http: reqwest::Client,
}

async fn start() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = starling_relay::Config::new(dir.path());
    config.max_blob_bytes = 1 << 20;
    config.core.max_running_jobs_per_client = 2;
    tokio::spawn(starling_relay::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/v1/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Relay { base, dir, _stop: stop, http }
}

impl Relay {
    async fn post_job_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/jobs", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post_job(&self, body: &impl serde::Serialize) -> (u16, Value) {
        self.post_job_raw(serde_json::to_vec(body).unwrap()).await
    }

    async fn jobs(&self) -> Vec<Value> {
        self.http.get(format!("{}/v1/jobs", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn healthy(&self) -> bool {
        self.http.get(format!("{}/v1/health", self.base)).send().await.map(|r| r.status().is_success()).unwrap_or(false)
    }

    fn stored_blobs(&self) -> usize {
        walk(&self.dir.path().join("blobs"))
    }
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
        .unwrap_or(0)
}

fn pi_spec() -> JobSpec {
    JobSpec {
        label: String::new(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks: starling_web_worker::kernels::monte_carlo_pi::tasks(1, 2, 4, 16),
        comparison: Default::default(),
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price_per_replica: 0,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 1,
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn bad_jobs_and_blobs_are_refused_and_leave_nothing_behind() {
    let relay = start().await;
    let client = Keypair::generate();

    // Malformed JSON.
    let (status, body) = relay.post_job_raw(b"{\"spec\": ".to_vec()).await;
    assert_eq!((status, code(&body)), (400, "malformed"), "{body}");

    // Unknown built-in kernel.
    let mut unknown = serde_json::to_value(client.sign_job(pi_spec())).unwrap();
    unknown["spec"]["kernel"]["name"] = json!("bitcoin_miner");
    let (status, body) = relay.post_job(&unknown).await;
    assert_eq!((status, code(&body)), (400, "unknown_kernel"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("bitcoin_miner"), "{body}");

    // Invalid WGSL: the error names line and column.
    let mut wgsl = pi_spec();
    wgsl.kernel = KernelSpec::Wgsl {
        source: "@group(0) @binding(1) var<storage, read_write> out: array<u32>;\n@compute @workgroup_size(64)\nfn main() {\n  out[0] = 1u +;\n}\n".into(),
        entry_point: "main".into(),
    };
    wgsl.tasks = vec![TaskSpec { params: vec![], inputs: vec![], workgroups: [1, 1, 1], output_size: 4 }];
    let (status, body) = relay.post_job(&client.sign_job(wgsl)).await;
    assert_eq!((status, code(&body)), (400, "invalid_wgsl"), "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("4:"), "error should point at line 4: {body}");

    // Built-in kernel with params it cannot run.
    let mut bad_params = pi_spec();
    bad_params.tasks[0].params = vec![1, 2];
    let (status, body) = relay.post_job(&client.sign_job(bad_params)).await;
    assert_eq!((status, code(&body)), (400, "invalid_spec"), "{body}");

    // Structural limits.
    let mut zero_quorum = pi_spec();
    zero_quorum.quorum = 0;
    let (status, body) = relay.post_job(&client.sign_job(zero_quorum)).await;
    assert_eq!((status, code(&body)), (400, "invalid_spec"), "{body}");

    // Oversized spec body.
    let mut huge = pi_spec();
    huge.label = "x".repeat(2 << 20);
    let (status, _) = relay.post_job(&client.sign_job(huge)).await;
    assert_eq!(status, 413);

    // Bad signature: signed, then changed.
    let mut forged = client.sign_job(pi_spec());
    forged.spec.price_per_replica = 1;
    let (status, body) = relay.post_job(&forged).await;
    assert_eq!((status, code(&body)), (401, "bad_signature"), "{body}");
    let mut wrong_key = client.sign_job(pi_spec());
    wrong_key.signature = Signature([0; 64]);
    let (status, body) = relay.post_job(&wrong_key).await;
    assert_eq!((status, code(&body)), (401, "bad_signature"), "{body}");

    // An input blob that was never uploaded.
    let mut missing = pi_spec();
    missing.kernel = KernelSpec::Builtin { name: BuiltinKernel::MatmulF32 };
    missing.tasks = vec![starling_web_worker::kernels::matmul_f32::task_for(2, 2, 2, sha256(b"a"), sha256(b"b"))];
    let (status, body) = relay.post_job(&client.sign_job(missing)).await;
    assert_eq!((status, code(&body)), (400, "invalid_spec"), "{body}");

    // Blobs: unsigned, over the size limit, and content that does not match its address.
    let resp = relay.http.put(format!("{}/v1/blobs/{}", relay.base, sha256(b"x"))).body("x").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(code(&resp.json::<Value>().await.unwrap()), "bad_signature");
    let big = vec![0u8; (1 << 20) + 1];
    let auth = UploadAuth::sign(&client, UploadPurpose::Input, &sha256(&big), big.len() as u64);
    let mut put = relay.http.put(format!("{}/v1/blobs/{}", relay.base, sha256(&big)));
    for (name, value) in auth.headers() {
        put = put.header(name, value);
    }
    assert_eq!(put.body(big).send().await.unwrap().status().as_u16(), 413);
    let auth = UploadAuth::sign(&client, UploadPurpose::Input, &sha256(b"x"), 1);
    let mut put = relay.http.put(format!("{}/v1/blobs/{}", relay.base, sha256(b"x")));
    for (name, value) in auth.headers() {
        put = put.header(name, value);
    }
    let resp = put.body("y").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(code(&resp.json::<Value>().await.unwrap()), "hash_mismatch");
    let resp = relay.http.get(format!("{}/v1/blobs/not-a-hash", relay.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = relay.http.get(format!("{}/v1/jobs/abc", relay.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = relay.http.get(format!("{}/v1/jobs/12345", relay.base)).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), code(&resp.json::<Value>().await.unwrap()).to_string()),
        (404, "not_found".into())
    );
    let resp = relay.http.get(format!("{}/v1/jobs?limit=lots", relay.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Nothing was stored, and the relay still serves.
    assert!(relay.jobs().await.is_empty());
    assert_eq!(relay.stored_blobs(), 0);
    assert!(relay.healthy().await);

    // A good job still goes through.
    let posted = client.sign_job(pi_spec());
    let (status, body) = relay.post_job(&posted).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(relay.jobs().await.len(), 1);

    // Replaying the same signed job is refused, not run (and charged) twice.
    let (status, body) = relay.post_job(&posted).await;
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    assert_eq!(relay.jobs().await.len(), 1);

    // One client cannot flood the relay with running jobs; others are unaffected.
    let mut second = pi_spec();
    second.nonce = 2;
    assert_eq!(relay.post_job(&client.sign_job(second)).await.0, 201);
    let mut third = pi_spec();
    third.nonce = 3;
    let (status, body) = relay.post_job(&client.sign_job(third.clone())).await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    assert_eq!(relay.post_job(&Keypair::generate().sign_job(third)).await.0, 201);
    assert_eq!(relay.jobs().await.len(), 3);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(relay: &Relay) -> Ws {
    let url = format!("{}/v1/workers/ws", relay.base.replace("http", "ws"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, msg: &WorkerMessage) {
    ws.send(Message::Text(serde_json::to_string(msg).unwrap().into())).await.unwrap();
}

/// The next relay message, or None once the relay closed the connection.
async fn recv(ws: &mut Ws) -> Option<RelayMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("relay answers") {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

async fn expect_error(ws: &mut Ws, want: ErrorCode) -> ErrorBody {
    loop {
        match recv(ws).await {
            Some(RelayMessage::Error(e)) => {
                assert_eq!(e.code, want, "{e:?}");
                return e;
            }
            Some(RelayMessage::Assign(_)) | Some(RelayMessage::Ack { .. }) => continue,
            other => panic!("expected {want:?} error, got {other:?}"),
        }
    }
}

fn caps() -> Capabilities {
    Capabilities {
        backend: Backend::Cpu,
        platform: Platform::Native,
        adapter: AdapterInfo::default(),
        limits: DeviceLimits {
            max_buffer_size: 1 << 20,
            max_storage_buffer_binding_size: 1 << 20,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroups_per_dimension: 65_535,
        },
        asking_price: 0,
        duty_cycle: 1.0,
        slots: 1,
    }
}

fn hello(key: &Keypair) -> WorkerMessage {
    WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, worker_key: key.public(), capabilities: caps() }
}

async fn authenticated(relay: &Relay, key: &Keypair) -> Ws {
    let mut ws = connect(relay).await;
    send(&mut ws, &hello(key)).await;
    let Some(RelayMessage::Challenge { nonce }) = recv(&mut ws).await else { panic!("no challenge") };
    send(&mut ws, &WorkerMessage::Auth { signature: key.sign_auth(&nonce) }).await;
    assert!(matches!(recv(&mut ws).await, Some(RelayMessage::Welcome { .. })));
    ws
}

#[tokio::test]
async fn worker_protocol_violations_get_error_frames() {
    let relay = start().await;
    let key = Keypair::generate();

    // Out of order: a heartbeat before hello.
    let mut ws = connect(&relay).await;
    send(&mut ws, &WorkerMessage::Heartbeat { state: DeviceState::default() }).await;
    expect_error(&mut ws, ErrorCode::OutOfOrder).await;
    assert!(recv(&mut ws).await.is_none(), "connection closes after a refused handshake");

    // Wrong protocol version.
    let mut ws = connect(&relay).await;
    send(&mut ws, &WorkerMessage::Hello { protocol_version: 99, worker_key: key.public(), capabilities: caps() }).await;
    expect_error(&mut ws, ErrorCode::UnsupportedVersion).await;

    // A challenge signed by another key.
    let mut ws = connect(&relay).await;
    send(&mut ws, &hello(&key)).await;
    let Some(RelayMessage::Challenge { nonce }) = recv(&mut ws).await else { panic!("no challenge") };
    let impostor = Keypair::generate();
    send(&mut ws, &WorkerMessage::Auth { signature: impostor.sign_auth(&nonce) }).await;
    expect_error(&mut ws, ErrorCode::BadSignature).await;
    assert!(recv(&mut ws).await.is_none());

    // Impossible capabilities.
    let mut ws = connect(&relay).await;
    let mut bad = caps();
    bad.duty_cycle = 0.0;
    send(
        &mut ws,
        &WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, worker_key: key.public(), capabilities: bad },
    )
    .await;
    expect_error(&mut ws, ErrorCode::Malformed).await;

    // After auth: garbage, replayed hello, forged and unheld results each get an error frame
    // and the session stays up.
    let mut ws = authenticated(&relay, &key).await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    expect_error(&mut ws, ErrorCode::Malformed).await;
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    expect_error(&mut ws, ErrorCode::Malformed).await;
    send(&mut ws, &hello(&key)).await;
    expect_error(&mut ws, ErrorCode::OutOfOrder).await;
    let task = TaskId { job: JobId(1), index: 0 };
    let hash = sha256(b"output");
    send(
        &mut ws,
        &WorkerMessage::Result {
            lease: LeaseId(1),
            task,
            output_hash: hash,
            output_len: 6,
            signature: impostor.sign_result(task, &hash, 6),
            output: None,
        },
    )
    .await;
    expect_error(&mut ws, ErrorCode::BadSignature).await;
    send(
        &mut ws,
        &WorkerMessage::Result {
            lease: LeaseId(77),
            task,
            output_hash: hash,
            output_len: 6,
            signature: key.sign_result(task, &hash, 6),
            output: None,
        },
    )
    .await;
    expect_error(&mut ws, ErrorCode::LeaseNotHeld).await;
    send(&mut ws, &WorkerMessage::Failed { lease: LeaseId(78), task, reason: "x".repeat(10_000) }).await;
    expect_error(&mut ws, ErrorCode::LeaseNotHeld).await;
    send(&mut ws, &WorkerMessage::Heartbeat { state: DeviceState::default() }).await;

    // An oversized frame ends that connection only.
    let mut big = authenticated(&relay, &Keypair::generate()).await;
    let _ = big.send(Message::Text("x".repeat(1 << 20).into())).await;
    assert!(recv(&mut big).await.is_none());

    // Nothing was recorded for those results, and the relay still serves.
    let workers: Vec<Value> =
        relay.http.get(format!("{}/v1/workers", relay.base)).send().await.unwrap().json().await.unwrap();
    let me = workers.iter().find(|w| w["key"] == json!(key.public().to_hex())).expect("worker listed");
    assert_eq!(me["replicas_returned"], json!(0));
    assert_eq!(me["online"], json!(true));
    assert!(relay.healthy().await);
}
