//! Fuzz targets against a real relay on 127.0.0.1:0: fuzzed paths, query strings and bodies over
//! raw HTTP/1.1 (so dot segments, bad percent-encoding and overlong segments reach the server as
//! written, not as a URL library would normalize them), and fuzzed text frames on the worker
//! socket before and after the handshake.
//!
//! Every answer must be a well-formed status below 500; every 4xx to a well-formed request must
//! be a JSON `{code, message}` whose code maps to that status; and afterwards the relay still
//! answers `/v1/health` and still admits a fresh worker.
//!
//! Bounded by `STARLING_FUZZ_SECS` per target (a few seconds by default) and a case cap of a few
//! hundred requests; see `starling-fuzz` for the knobs and how to rerun one failing case.

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::Value;
use starling_fuzz::mutate::{JsonMutator, interesting_string};
use starling_fuzz::{Fuzz, Shown, truncated};
use starling_protocol::job::{BuiltinKernel, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::sign::Keypair;
use starling_protocol::worker::{DeviceState, RelayMessage, WorkerMessage};
use starling_protocol::{ErrorCode, JobId, LeaseId, PROTOCOL_VERSION, TaskId, sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const MAX_BLOB_BYTES: u64 = 1 << 20;

struct Relay {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = crate::support::relay_config(dir.path()).await;
    config.max_blob_bytes = MAX_BLOB_BYTES;
    tokio::spawn(starling_relay::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let relay = Relay { addr, _dir: dir, _stop: stop };
    for _ in 0..200 {
        if relay.healthy().await {
            return relay;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("relay did not start");
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Relay {
    /// One request on its own connection, exactly as written; `None` when the relay closed the
    /// connection without an answer. With `end_input`, the client then closes its side, so a
    /// request cut short ends there instead of waiting for the rest (hyper drops a connection
    /// whose client closed its side, answer or not).
    async fn raw(&self, request: &[u8], end_input: bool) -> Option<Answer> {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request).await.ok()?;
        if end_input {
            stream.shutdown().await.ok()?;
        }
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
            .await
            .expect("the relay answers within 20 s")
            .ok()?;
        parse_response(&response)
    }

    async fn request(&self, method: &str, target: &str, body: &[u8]) -> Option<Answer> {
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.raw(&request, false).await
    }

    async fn healthy(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.addr).await else { return false };
        let request = format!("GET /v1/health HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", self.addr);
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
        parse_response(&response).is_some_and(|a| a.status == 200)
    }
}

fn parse_response(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).expect("response head is ASCII");
    let status_line = head.lines().next()?;
    let status = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().expect("a three-digit status");
    let headers = head.to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        body = dechunk(&body).expect("a well-formed chunked body");
    }
    Some(Answer { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Characters a request target may hold as they are (RFC 3986 unreserved, sub-delims, ':', '@',
/// '/', '?', '%'); anything else is percent-encoded so the request stays well-formed HTTP.
fn encode_target(raw: &str) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path segment a stranger might send where an id, index, hash or key belongs.
fn segment(rng: &mut StdRng) -> String {
    let choices: &[&str] = &[
        "0",
        "1",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "+1",
        " 1",
        "01",
        "1e3",
        "0x10",
        "4294967295",
        "4294967296",
        "",
        ".",
        "..",
        "%2e%2e",
        "%2F",
        "%00",
        "%ff",
        "%",
        "%zz",
        "%c3%28",
        "%e2%82%ac",
        "null",
        "ws",
    ];
    match rng.gen_range(0..8) {
        0 => sha256(&rng.r#gen::<[u8; 8]>()).to_hex(),
        1 => sha256(b"").to_hex().to_uppercase(),
        2 => "ab".repeat(rng.gen_range(0..40)),
        3 => "9".repeat(rng.gen_range(1..5000)),
        4 => interesting_string(rng).chars().take(3000).collect(),
        _ => choices.choose(rng).unwrap().to_string(),
    }
}

fn query(rng: &mut StdRng) -> String {
    let keys = ["state", "limit", "offset", "", "state[]", "LIMIT"];
    let values = [
        "running",
        "done",
        "failed",
        "Running",
        "",
        "0",
        "1",
        "500",
        "501",
        "-1",
        "4294967296",
        "abc",
        "%",
        "%ff",
        "1.5",
    ];
    let mut q: Vec<String> = (0..rng.gen_range(0..4))
        .map(|_| format!("{}={}", keys.choose(rng).unwrap(), values.choose(rng).unwrap()))
        .collect();
    if rng.gen_ratio(1, 5) {
        q.push(["&&", "=", "==", "state", "limit=1=2"].choose(rng).unwrap().to_string());
    }
    q.join("&")
}

fn pi_spec(nonce: u64) -> JobSpec {
    JobSpec {
        label: "fuzz".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks: starling_web_worker::kernels::monte_carlo_pi::tasks(nonce, 2, 4, 16),
        comparison: Default::default(),
        replicas: 2,
        quorum: 2,
        max_replicas: 4,
        price_per_replica: 0,
        deadline_secs: 600,
        homogeneous: false,
        nonce,
        adaptive: None,
        kernels: Vec::new(),
    }
}

fn wgsl_spec(nonce: u64) -> JobSpec {
    JobSpec {
        kernel: KernelSpec::Wgsl {
            source: "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
                     @compute @workgroup_size(1) fn main() { o[0] = 7u; }"
                .into(),
            entry_point: "main".into(),
        },
        tasks: vec![TaskSpec { params: vec![], inputs: vec![], workgroups: [1, 1, 1], output_size: 4, kernel: 0 }],
        ..pi_spec(nonce)
    }
}

fn job_corpus() -> JsonMutator {
    let docs: Vec<Value> = (0..16)
        .map(|i| {
            let key = Keypair::from_seed([i as u8; 32]);
            let spec = if i % 2 == 0 { pi_spec(i) } else { wgsl_spec(i) };
            serde_json::to_value(key.sign_job(spec)).unwrap()
        })
        .collect();
    JsonMutator::new(docs).with_limits(&[4096, 7, 64, 604_800])
}

/// What was sent, for the failure message.
#[derive(Debug)]
struct Sent {
    method: &'static str,
    target: String,
    body: Shown,
}

fn http_request(rng: &mut StdRng, jobs: &JsonMutator) -> Sent {
    let seg = |rng: &mut StdRng| segment(rng);
    let (method, path, body): (&'static str, String, Vec<u8>) = match rng.gen_range(0..14) {
        0 => ("GET", format!("/v1/jobs/{}", seg(rng)), vec![]),
        1 => ("GET", format!("/v1/jobs/{}/results", seg(rng)), vec![]),
        2 => ("GET", format!("/v1/jobs/{}/tasks/{}/output", seg(rng), seg(rng)), vec![]),
        3 => ("GET", format!("/v1/jobs/{}/escrow", seg(rng)), vec![]),
        4 => ("GET", format!("/v1/blobs/{}", seg(rng)), vec![]),
        5 => {
            let body: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.r#gen()).collect();
            let hash = if rng.r#gen() { sha256(&body).to_hex() } else { seg(rng) };
            ("PUT", format!("/v1/blobs/{hash}"), body)
        }
        6 => ("GET", format!("/v1/{}/{}", seg(rng), seg(rng)), vec![]),
        7 => ("GET", format!("/v1/{}?{}", ["jobs", "workers"].choose(rng).unwrap(), query(rng)), vec![]),
        8 => ("GET", format!("/v1/{}/{}", ["clients", "workers"].choose(rng).unwrap(), seg(rng)), vec![]),
        // A method the route does not take.
        9 => {
            let method = *["DELETE", "PATCH", "POST", "PUT", "OPTIONS", "GET"].choose(rng).unwrap();
            let path = ["/v1/health", "/v1/jobs", "/v1/jobs/1", "/v1/blobs", "/v1/workers/ws", "/v1/workers"];
            (method, path.choose(rng).unwrap().to_string(), vec![])
        }
        // WebSocket endpoints without an upgrade.
        10 => (
            "GET",
            ["/v1/workers/ws".to_string(), format!("/v1/jobs/{}/events", seg(rng))].choose(rng).unwrap().clone(),
            vec![],
        ),
        _ => ("POST", "/v1/jobs".to_string(), jobs.bytes(rng).1),
    };
    Sent { method, target: encode_target(&path), body: Shown(body) }
}

/// Checks one answer; `Err` says what is wrong.
fn check_answer(_sent: &Sent, answer: &Option<Answer>) -> Result<(), String> {
    let Some(answer) = answer else { return Err("connection closed without an answer".into()) };
    if !(100..500).contains(&answer.status) {
        return Err(format!("status {}: {}", answer.status, String::from_utf8_lossy(&answer.body)));
    }
    if (400..500).contains(&answer.status) {
        let body: Value = serde_json::from_slice(&answer.body).map_err(|_| {
            format!(
                "{} body is not JSON: {:?} (headers {:?})",
                answer.status,
                Shown(answer.body.clone()),
                answer.headers
            )
        })?;
        let code: ErrorCode = serde_json::from_value(body["code"].clone())
            .map_err(|_| format!("{} body has no known code: {body}", answer.status))?;
        if !body["message"].is_string() {
            return Err(format!("{} body has no message: {body}", answer.status));
        }
        if code.http_status() != answer.status {
            return Err(format!("code {code:?} answered with status {}", answer.status));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_paths_queries_and_bodies_never_5xx() {
    let relay = start().await;
    let jobs = job_corpus();
    let fuzz = Fuzz::new("http_requests", 400).with_budget(Duration::from_secs(8));
    let mut statuses = std::collections::BTreeMap::new();
    for mut case in fuzz.cases() {
        let sent = http_request(&mut case.rng, &jobs);
        let answer = relay.request(sent.method, &sent.target, &sent.body.0).await;
        if let Err(problem) = check_answer(&sent, &answer) {
            panic!("{}\n{problem}\nrequest: {}", case.reproduce(), truncated(&sent));
        }
        *statuses.entry(answer.unwrap().status).or_insert(0u32) += 1;
    }
    eprintln!("http_requests: statuses {statuses:?}");
    assert!(relay.healthy().await, "the relay stopped answering /v1/health");
    assert!(statuses.keys().any(|s| (200..300).contains(s)), "nothing succeeded: the inputs are too broken");
}

/// Requests that are not well-formed HTTP at all: hyper answers or drops them, the relay keeps
/// serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_leaves_the_relay_serving() {
    let relay = start().await;
    let fuzz = Fuzz::new("raw_http", 150).with_budget(Duration::from_secs(4));
    for mut case in fuzz.cases() {
        let rng = &mut case.rng;
        let base = format!(
            "GET /v1/jobs/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            rng.gen_range(0..9)
        );
        let mut request = base.into_bytes();
        for _ in 0..rng.gen_range(1..=6) {
            starling_fuzz::mutate::mutate_bytes(
                rng,
                &mut request,
                &[b"\r\n".to_vec(), b" ".to_vec(), b"transfer-encoding: chunked\r\n".to_vec(), b"%".to_vec()],
            );
        }
        if let Some(answer) = relay.raw(&request, true).await {
            assert!(answer.status < 500, "{}\nstatus {} for {:?}", case.reproduce(), answer.status, Shown(request));
        }
    }
    assert!(relay.healthy().await, "the relay stopped answering /v1/health");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(relay: &Relay) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{}/v1/workers/ws", relay.addr)).await.unwrap().0
}

/// What the relay did next on a socket.
#[derive(Debug)]
enum Next {
    Message(Box<RelayMessage>),
    /// A text frame that is not a relay message.
    Garbage(String),
    Quiet,
    Closed,
}

async fn next_frame(ws: &mut Ws, wait: Duration) -> Next {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return Next::Quiet,
            Ok(Some(Ok(Message::Text(t)))) => {
                return match serde_json::from_str(t.as_str()) {
                    Ok(message) => Next::Message(Box::new(message)),
                    Err(_) => Next::Garbage(t.as_str().to_string()),
                };
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return Next::Closed,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

use crate::support::hello;

async fn send(ws: &mut Ws, text: String) -> bool {
    ws.send(Message::Text(text.into())).await.is_ok()
}

/// Hello, challenge, auth, welcome; panics if the relay does not admit `key`.
async fn authenticate(relay: &Relay, key: &Keypair) -> Ws {
    let mut ws = connect(relay).await;
    assert!(send(&mut ws, serde_json::to_string(&hello(key)).unwrap()).await);
    let Next::Message(challenge) = next_frame(&mut ws, Duration::from_secs(10)).await else { panic!("no challenge") };
    let RelayMessage::Challenge { nonce } = *challenge else { panic!("no challenge: {challenge:?}") };
    let auth = WorkerMessage::Auth { signature: key.sign_auth(&nonce) };
    assert!(send(&mut ws, serde_json::to_string(&auth).unwrap()).await);
    let welcome = next_frame(&mut ws, Duration::from_secs(10)).await;
    assert!(matches!(&welcome, Next::Message(m) if matches!(**m, RelayMessage::Welcome { .. })), "{welcome:?}");
    ws
}

fn worker_corpus(key: &Keypair) -> JsonMutator {
    let task = TaskId { job: JobId(1), index: 0 };
    let hash = sha256(b"out");
    let messages = [
        hello(key),
        WorkerMessage::Auth { signature: key.sign_auth(&sha256(b"nonce")) },
        WorkerMessage::Heartbeat { state: DeviceState { accepting: true, battery: Some(0.5), charging: Some(false) } },
        WorkerMessage::Result {
            lease: LeaseId(1),
            task,
            output_hash: hash,
            output_len: 4,
            signature: key.sign_result(task, &hash, 4),
            output: None,
        },
        WorkerMessage::Failed { lease: LeaseId(2), task, reason: "device lost".into() },
        WorkerMessage::Decline { lease: LeaseId(3), task, reason: "paused".into() },
        WorkerMessage::Register {
            owner: Keypair::from_seed([3; 32]).public(),
            nonce: 0,
            bond: 10_000_000,
            authorization: key.sign(b"x"),
            proof: key.sign(b"y"),
        },
    ];
    JsonMutator::new(messages.iter().map(|m| serde_json::to_value(m).unwrap()).collect()).with_limits(&[
        u64::from(PROTOCOL_VERSION),
        512,
        128,
    ])
}

/// Reads the relay's answers until it goes quiet for `wait`: every frame must be a relay
/// message. Returns whether the connection is still open.
async fn drain_answers(ws: &mut Ws, wait: Duration, what: &str) -> bool {
    loop {
        match next_frame(ws, wait).await {
            Next::Message(_) => continue,
            Next::Garbage(text) => panic!("{what}\nthe relay sent a frame that is not a relay message: {text:?}"),
            Next::Quiet => return true,
            Next::Closed => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_socket_frames_before_and_after_the_handshake() {
    let relay = start().await;
    let key = Keypair::from_seed([42; 32]);
    let mutator = worker_corpus(&key);

    // Before the handshake: one fuzzed first frame per connection. The relay answers with relay
    // messages (a challenge or an error) or closes.
    let fuzz = Fuzz::new("worker_first_frame", 60).with_budget(Duration::from_secs(4));
    for mut case in fuzz.cases() {
        let (_, bytes) = mutator.bytes(&mut case.rng);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut ws = connect(&relay).await;
        if send(&mut ws, text.clone()).await {
            let what = format!("{}\nfirst frame: {}", case.reproduce(), truncated(&text));
            drain_answers(&mut ws, Duration::from_millis(100), &what).await;
        }
    }

    // After the handshake: many fuzzed frames on one authenticated connection; a new connection
    // when the relay ends one for too many protocol errors.
    let fuzz = Fuzz::new("worker_frames", 300).with_budget(Duration::from_secs(5));
    let mut ws = authenticate(&relay, &key).await;
    for mut case in fuzz.cases() {
        let (_, bytes) = mutator.bytes(&mut case.rng);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let what = format!("{}\nframe after auth: {}", case.reproduce(), truncated(&text));
        let open = send(&mut ws, text).await && drain_answers(&mut ws, Duration::from_millis(50), &what).await;
        if !open {
            ws = authenticate(&relay, &key).await;
        }
    }

    // The relay still serves: health, and a fresh worker gets through the handshake.
    assert!(relay.healthy().await, "the relay stopped answering /v1/health");
    authenticate(&relay, &Keypair::from_seed([43; 32])).await;
}

/// One client request must not take the relay down.
///
/// Was a bug (it aborted the relay): `POST /v1/jobs`
/// with custom WGSL of about 6,000 nested prefix operators (`let x = !!!…!true;`, 6 KB, well
/// under `MAX_WGSL_BYTES`) overflows the stack of the tokio blocking thread that runs
/// `validate_kernel` (naga's WGSL parser recurses once per operator), and the whole relay
/// process aborts. See `web-worker/tests/fuzz.rs`,
/// `deepest_nesting_within_the_size_limit_is_refused_on_a_small_stack`, for the thresholds
/// and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_wgsl_does_not_abort_the_relay() {
    let relay = start().await;
    let mut spec = wgsl_spec(1);
    spec.kernel = KernelSpec::Wgsl {
        source: format!(
            "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
             @compute @workgroup_size(1) fn main() {{ let x = {}true; o[0] = 1u; }}",
            "!".repeat(30_000)
        ),
        entry_point: "main".into(),
    };
    let body = serde_json::to_vec(&Keypair::from_seed([1; 32]).sign_job(spec)).unwrap();
    let answer = relay.request("POST", "/v1/jobs", &body).await.expect("an answer, not an abort");
    assert_eq!(answer.status, 400, "refused: workers must never be handed it");
    assert!(String::from_utf8_lossy(&answer.body).contains("nested deeper"));
    assert!(relay.healthy().await);
}

/// Every 4xx is a `{code, message}` the client can branch on, including requests axum refuses
/// before a relay handler runs.
///
/// Was a bug: a GET without a WebSocket upgrade to `/v1/workers/ws` or
/// `/v1/jobs/{id}/events` gets axum's plain-text 400 ("Connection header did not include
/// 'upgrade'"), and a method a route does not take gets axum's 405 with an empty body. Fix in
/// the relay's router and handlers: take `Result<WebSocketUpgrade, WebSocketUpgradeRejection>`
/// and map the rejection to an `ApiError`, and give the router a
/// `method_not_allowed_fallback` that answers an `ApiError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_rejections_are_json_errors() {
    let relay = start().await;
    let requests = [
        ("GET", "/v1/workers/ws"),
        ("GET", "/v1/jobs/1/events"),
        ("GET", "/v1/jobs/abc/events"),
        ("DELETE", "/v1/jobs/1"),
        ("PUT", "/v1/health"),
        ("GET", "/v1/blobs"),
    ];
    let mut problems = Vec::new();
    for (method, target) in requests {
        let answer = relay.request(method, target, &[]).await.expect("an answer");
        assert!((400..500).contains(&answer.status), "{method} {target}: {}", answer.status);
        if serde_json::from_slice::<starling_protocol::ErrorBody>(&answer.body).is_err() {
            problems.push(format!("{method} {target}: {} {:?}", answer.status, Shown(answer.body)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
