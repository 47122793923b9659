//! Bad input of every kind gets a clear error, stores nothing, and leaves the relay serving.
//! Runs a real relay on 127.0.0.1:0 with a real SQLite file.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use starling_protocol::job::{BuiltinKernel, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::sign::{Keypair, UploadPurpose};
use starling_protocol::upload::UploadAuth;
use starling_protocol::worker::{Capabilities, DeviceState, RelayMessage, WorkerMessage};
use starling_protocol::{ErrorBody, ErrorCode, JobId, LeaseId, PROTOCOL_VERSION, Signature, TaskId, sha256};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

struct Relay {
    base: String,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    state: starling_relay::AppState,
    _stop: tokio::sync::oneshot::Sender<()>,
    http: reqwest::Client,
}

async fn start() -> Relay {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut starling_relay::Config)) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = crate::support::relay_config(dir.path()).await;
    config.max_blob_bytes = 1 << 20;
    config.core.max_running_jobs_per_client = 2;
    configure(&mut config);
    let started = starling_relay::start(listener, config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let state = started.state.clone();
    tokio::spawn(started.finished());
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/v1/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Relay { base, addr, dir, state, _stop: stop, http }
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

    /// Files of uploads in progress: in the blob folder's `tmp/`, or in `blob-staging/` beside
    /// a remote store.
    fn staged_files(&self) -> usize {
        ["blobs/tmp", "blob-staging"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.dir.path().join(d)).ok())
            .map(|entries| entries.count())
            .sum()
    }

    /// Objects in the relay's blob store, whatever their names (staged uploads included).
    async fn stored_blobs(&self) -> usize {
        self.state.blobs.object_count().await.unwrap()
    }
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
        adaptive: None,
        kernels: Vec::new(),
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
    wgsl.tasks = vec![TaskSpec { params: vec![], inputs: vec![], workgroups: [1, 1, 1], output_size: 4, kernel: 0 }];
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

    // A large upload (staged in a file while it arrives) cut off mid-body, and one whose last
    // byte is wrong: neither leaves anything behind, staged or stored.
    let large = vec![7u8; 600 << 10];
    let auth = UploadAuth::sign(&client, UploadPurpose::Input, &sha256(&large), large.len() as u64);
    let mut head =
        format!("PUT /v1/blobs/{} HTTP/1.1\r\nhost: relay\r\ncontent-length: {}\r\n", sha256(&large), large.len());
    for (name, value) in auth.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&large[..400 << 10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
    let mut wrong = large.clone();
    *wrong.last_mut().unwrap() = 8;
    let mut put = relay.http.put(format!("{}/v1/blobs/{}", relay.base, sha256(&large)));
    for (name, value) in auth.headers() {
        put = put.header(name, value);
    }
    let resp = put.body(wrong).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(code(&resp.json::<Value>().await.unwrap()), "hash_mismatch");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay.staged_files() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "a refused upload's staged file stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Nothing was stored, and the relay still serves.
    assert!(relay.jobs().await.is_empty());
    assert_eq!(relay.stored_blobs().await, 0);
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
    crate::support::cpu_caps(1)
}

use crate::support::hello;

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
    // A result for a lease the worker holds, signed by another key.
    assert_eq!(relay.post_job(&Keypair::generate().sign_job(pi_spec())).await.0, 201);
    let assignment = loop {
        match recv(&mut ws).await {
            Some(RelayMessage::Assign(a)) => break a,
            Some(_) => continue,
            None => panic!("closed before an assignment"),
        }
    };
    let task = assignment.task;
    let hash = sha256(b"output");
    send(
        &mut ws,
        &WorkerMessage::Result {
            lease: assignment.lease,
            task,
            output_hash: hash,
            output_len: u64::from(assignment.output_size),
            signature: impostor.sign_result(task, &hash, u64::from(assignment.output_size)),
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
    // (It may have been handed the job's other replica before it misbehaved.)
    while let Some(msg) = recv(&mut big).await {
        assert!(matches!(msg, RelayMessage::Assign(_)), "{msg:?}");
    }

    // Nothing was recorded for those results (a recorded result would have ended the lease),
    // and the relay still serves.
    assert!(relay.state.core.shared.leases.get(assignment.lease).is_some(), "a forged result ended the lease");
    let workers: Vec<Value> =
        relay.http.get(format!("{}/v1/workers", relay.base)).send().await.unwrap().json().await.unwrap();
    let me = workers.iter().find(|w| w["key"] == json!(key.public().to_hex())).expect("worker listed");
    assert_eq!(me["replicas_returned"], json!(0));
    assert_eq!(me["online"], json!(true));
    assert!(relay.healthy().await);
}

/// Event sockets for jobs that do not exist are refused before anything is registered: 2,000
/// of them leave no channel behind (each used to leave one, about 8 KB, for good).
#[tokio::test]
async fn event_sockets_for_missing_jobs_leave_nothing_behind() {
    let relay = start().await;
    let ws_base = relay.base.replace("http", "ws");
    for id in 0..2_000u64 {
        let url = format!("{ws_base}/v1/jobs/{}/events", 1_000_000 + id);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
            other => panic!("expected a 404, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(relay.state.core.shared.watched_jobs(), 0);
    // A real watcher's channel goes when the watcher leaves.
    assert_eq!(relay.post_job(&Keypair::generate().sign_job(pi_spec())).await.0, 201);
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("{ws_base}/v1/jobs/1/events")).await.unwrap();
    assert!(matches!(watcher.next().await, Some(Ok(Message::Text(_)))), "snapshot first");
    assert_eq!(relay.state.core.shared.watched_jobs(), 1);
    drop(watcher);
    for _ in 0..100 {
        if relay.state.core.shared.watched_jobs() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(relay.state.core.shared.watched_jobs(), 0);
    assert!(relay.healthy().await);
}

/// Whether the relay closed `tcp` (it reads end-of-file or an error) within `within`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// Connections that trickle their headers are closed at the header deadline, and the relay
/// keeps serving.
#[tokio::test]
async fn trickled_headers_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let relay = start_with(|c| c.limits.header_timeout = Duration::from_secs(1)).await;
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
        tcp.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(tcp);
    }
    let trickle = async {
        for _ in 0..10 {
            for tcp in &mut slow {
                let _ = tcp.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    trickle.await;
    for tcp in &mut slow {
        assert!(closed_within(tcp, Duration::from_secs(3)).await.is_some(), "a trickling connection stayed open");
    }
    assert!(relay.healthy().await);
}

/// A body sent a byte at a time is refused once it falls below the minimum rate (today's
/// relay waited on a 64 MiB upload at one byte every 5 s for as long as it took).
#[tokio::test]
async fn slow_bodies_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let relay = start_with(|c| {
        c.limits.body_grace = Duration::from_millis(500);
        c.limits.body_idle = Duration::from_secs(2);
        c.limits.body_min_rate = 1024;
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let answer = loop {
        let _ = tcp.write_all(b" ").await;
        if let Some(answer) = closed_within(&mut tcp, Duration::from_millis(400)).await {
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the slow body was never cut off");
    };
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("\"code\":\"malformed\""), "{text}");
    // Silence inside a body is bounded too.
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n{").await.unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(5)).await.is_some());
    assert!(relay.healthy().await);
}

/// One address may hold only so many connections; the next one gets a 429 with
/// `{code, message}`, and a place frees when a connection closes.
#[tokio::test]
async fn connections_per_address_are_budgeted() {
    let relay = start_with(|c| c.limits.per_address = 16).await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(tokio::net::TcpStream::connect(relay.addr).await.unwrap());
    }
    // Accepting is asynchronous: give the relay a moment to count them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let answer = closed_within(&mut extra, Duration::from_secs(5)).await.expect("refused and closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("\"code\":\"rate_limited\""), "{text}");
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(relay.healthy().await, "a freed place is usable again");
}

/// A worker that floods the relay with results for leases it does not hold is refused on its
/// own connection and cut off; nothing reaches the core's record and others are served.
#[tokio::test]
async fn worker_message_floods_are_cut_off() {
    let relay = start().await;
    let key = Keypair::generate();
    let mut ws = authenticated(&relay, &key).await;
    let task = TaskId { job: JobId(1), index: 0 };
    let hash = sha256(b"output");
    let signature = key.sign_result(task, &hash, 6);
    let flood = serde_json::to_string(&WorkerMessage::Result {
        lease: LeaseId(9),
        task,
        output_hash: hash,
        output_len: 6,
        signature,
        output: None,
    })
    .unwrap();
    let mut sent = 0;
    for _ in 0..5_000 {
        if ws.send(Message::Text(flood.clone().into())).await.is_err() {
            break;
        }
        sent += 1;
    }
    let mut errors = 0;
    while let Some(msg) = recv(&mut ws).await {
        assert!(matches!(msg, RelayMessage::Error(_)), "{msg:?}");
        errors += 1;
    }
    assert!(errors <= 16, "{errors} error frames for {sent} bogus results: the connection is closed early");
    // The relay's record catches up with the connection's end within a batch or two.
    let mut me = Value::Null;
    for _ in 0..100 {
        let workers: Vec<Value> =
            relay.http.get(format!("{}/v1/workers", relay.base)).send().await.unwrap().json().await.unwrap();
        me = workers.into_iter().find(|w| w["key"] == json!(key.public().to_hex())).unwrap_or(Value::Null);
        if me["online"] == json!(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(me["online"], json!(false), "{me}");
    assert_eq!(me["replicas_returned"], json!(0));
    assert!(relay.healthy().await);
}

/// Unpaid work from one network is bounded whatever keys sign it: 30 fresh keys get no more
/// than one key would.
#[tokio::test]
async fn fresh_keys_gain_no_unpaid_work() {
    let relay = start_with(|c| c.core.max_unpaid_jobs_per_network = 4).await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let (status, body) = relay.post_job(&Keypair::generate().sign_job(pi_spec())).await;
        if status != 201 {
            assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 4);
    assert_eq!(relay.jobs().await.len(), 4, "nothing stored for the refused ones");
}
