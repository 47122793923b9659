//! Nothing leaks before the decision, and a copied hash counts for nothing: a real relay on
//! 127.0.0.1:0, workers speaking the protocol by hand.
//!
//! A stranger who reads every public endpoint while a task is undecided, one of its replicas
//! returned, finds neither the returned hash nor who holds the task, cannot download the output
//! or tell that it exists, and no worker record moves. A worker that reports another's hash
//! without uploading the output for its own lease is refused, and the task does not verify on its
//! word.

use crate::support::{Ws, assignments, connect_worker, cpu_caps, next_answer, send};
use futures_util::StreamExt;
use serde_json::Value;
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use starling_protocol::sign::{Keypair, UploadPurpose};
use starling_protocol::upload::UploadAuth;
use starling_protocol::worker::{Assignment, InlineBytes, RelayMessage, WorkerMessage};
use starling_protocol::{ErrorCode, Hash32, JobId, sha256};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

struct Relay {
    base: String,
    state: starling_relay::AppState,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    http: reqwest::Client,
}

async fn start() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // These workers sign made-up outputs: the relay's known-answer checks would bar them.
    let mut config = crate::support::relay_config(dir.path()).await;
    config.core.canary_rate = 0.0;
    let started = starling_relay::start(listener, config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let state = started.state.clone();
    tokio::spawn(started.finished());
    Relay { base, state, _dir: dir, _stop: stop, http: reqwest::Client::new() }
}

impl Relay {
    /// `GET path`: the status and the body as text.
    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, text) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn put(&self, key: &Keypair, purpose: UploadPurpose, hash: Hash32, body: &[u8]) -> (u16, Value) {
        let auth = UploadAuth::sign(key, purpose, &hash, body.len() as u64);
        let mut req = self.http.put(format!("{}/v1/blobs/{hash}", self.base));
        for (name, value) in auth.headers() {
            req = req.header(name, value);
        }
        let resp = req.body(body.to_vec()).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn post_job(&self, key: &Keypair, spec: JobSpec) -> (u16, Value) {
        let resp = self.http.post(format!("{}/v1/jobs", self.base)).json(&key.sign_job(spec)).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `pred` holds for `GET /v1/jobs/{id}`.
    async fn wait_job(&self, id: JobId, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let job = self.get_json(&format!("/v1/jobs/{id}")).await;
            if pred(&job) {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A worker with `slots` slots, through the handshake.
async fn worker(relay: &Relay, key: &Keypair, slots: u32) -> Ws {
    connect_worker(&relay.base, key, cpu_caps(slots)).await
}

/// The next `n` assignments, by task index.
async fn assignments_by_index(ws: &mut Ws, n: usize) -> Vec<Assignment> {
    let mut out = assignments(ws, n).await;
    out.sort_by_key(|a| a.task.index);
    out
}

/// A signed result naming `output_hash`, with no inline output: it claims an upload.
fn reported(key: &Keypair, a: &Assignment, output_hash: Hash32) -> WorkerMessage {
    let output_len = u64::from(a.output_size);
    WorkerMessage::Result {
        lease: a.lease,
        task: a.task,
        output_hash,
        output_len,
        signature: starling_web_worker::escrow::sign_result(key, None, a, &output_hash, output_len),
        output: None,
    }
}

/// An exact pi job of `tasks` tasks, two replicas each, both needed.
fn two_replica_job(tasks: u32, nonce: u64) -> JobSpec {
    JobSpec {
        label: "secrecy".into(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks: starling_web_worker::kernels::monte_carlo_pi::tasks(1, tasks, 4, 16),
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 2,
        price_per_replica: 0,
        deadline_secs: 600,
        homogeneous: false,
        nonce,
        adaptive: None,
        kernels: Vec::new(),
    }
}

/// Output bytes of a task's declared size.
fn output(a: &Assignment, fill: u8) -> Vec<u8> {
    vec![fill; a.output_size as usize]
}

/// `text` with `hash` written as another hash: answers about two blobs compared as one.
fn naming(text: &str, hash: &Hash32, instead: &Hash32) -> String {
    text.replace(&hash.to_hex(), &instead.to_hex())
}

#[tokio::test]
async fn a_stranger_learns_nothing_of_an_undecided_task() {
    let relay = start().await;
    let (a_key, b_key, client) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let mut a = worker(&relay, &a_key, 1).await;
    let mut b = worker(&relay, &b_key, 1).await;
    let (status, job) = relay.post_job(&client, two_replica_job(1, 1)).await;
    assert_eq!(status, 201, "{job}");
    let id = JobId(job["id"].as_u64().unwrap());
    let (a_lease, b_lease) =
        (assignments_by_index(&mut a, 1).await.remove(0), assignments_by_index(&mut b, 1).await.remove(0));
    let worker_view = async |key: &Keypair| relay.get_json(&format!("/v1/workers/{}", key.public())).await;
    let a_before = worker_view(&a_key).await;

    // A uploads its output for its lease and reports it.
    let bytes = output(&a_lease, 7);
    let hash = sha256(&bytes);
    let (status, answer) = relay.put(&a_key, UploadPurpose::Output { lease: a_lease.lease }, hash, &bytes).await;
    assert_eq!(status, 201, "{answer}");
    send(&mut a, &reported(&a_key, &a_lease, hash)).await;
    assert_eq!(next_answer(&mut a).await, RelayMessage::Ack { lease: a_lease.lease });
    // Recorded: A's lease is over, B's is open.
    let leases = &relay.state.core.shared.leases;
    assert!(leases.get(a_lease.lease).is_none() && leases.get(b_lease.lease).is_some());

    // A stranger reads every public endpoint.
    let (hex, a_hex, b_hex) = (hash.to_hex(), a_key.public().to_hex(), b_key.public().to_hex());
    let mut pages = Vec::new();
    for path in [
        format!("/v1/jobs/{id}"),
        "/v1/jobs".into(),
        "/v1/jobs?state=running".into(),
        format!("/v1/jobs/{id}/results"),
        format!("/v1/jobs/{id}/tasks/0/output"),
        format!("/v1/jobs/{id}/escrow"),
        "/v1/health".into(),
        format!("/v1/clients/{}", client.public()),
    ] {
        pages.push((path.clone(), relay.get(&path).await.1));
    }
    let url = format!("{}/v1/jobs/{id}/events", relay.base.replace("http", "ws"));
    let (mut events, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let Some(Ok(Message::Text(snapshot))) = events.next().await else { panic!("no snapshot") };
    pages.push(("events".into(), snapshot.to_string()));
    for (path, body) in &pages {
        assert!(!body.contains(&hex), "{path} shows the returned hash: {body}");
        assert!(!body.contains(&a_hex) && !body.contains(&b_hex), "{path} shows who holds the task: {body}");
    }
    let detail: Value = serde_json::from_str(&pages[0].1).unwrap();
    assert_eq!(detail["tasks"][0]["state"], "pending");
    assert_eq!(detail["tasks"][0]["replicas"], serde_json::json!([]), "not even how many replicas");
    // Worker records: listed (they are online), but nothing moved when A returned its result.
    let workers = relay.get("/v1/workers").await.1;
    assert!(!workers.contains(&hex), "{workers}");
    assert_eq!(worker_view(&a_key).await, a_before, "A's record moved when it returned a result");
    assert_eq!(a_before["replicas_returned"], 0);

    // The output cannot be downloaded, nor its existence told from a blob never stored: the
    // same answers, to a download, to a guessed upload without the bytes, and to a job naming it.
    let never = sha256(b"never stored");
    let stranger = Keypair::generate();
    let (status, text) = relay.get(&format!("/v1/blobs/{hash}")).await;
    assert_eq!((status, naming(&text, &hash, &never)), relay.get(&format!("/v1/blobs/{never}")).await);
    let wrong = output(&a_lease, 8);
    for h in [hash, never] {
        let (status, answer) = relay.put(&stranger, UploadPurpose::Input, h, &wrong).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some("hash_mismatch")), "{answer}");
    }
    let naming_input = |h: Hash32, nonce| {
        let mut spec = two_replica_job(1, nonce);
        spec.kernel = KernelSpec::Builtin { name: BuiltinKernel::MatmulF32 };
        spec.tasks = vec![starling_web_worker::kernels::matmul_f32::task_for(2, 2, 2, h, h)];
        spec
    };
    let (status, refused) = relay.post_job(&stranger, naming_input(hash, 2)).await;
    let (never_status, never_refused) = relay.post_job(&stranger, naming_input(never, 3)).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!((status, naming(&refused.to_string(), &hash, &never)), (never_status, never_refused.to_string()));

    // B agrees: the task is decided, and everything shows as before this change.
    let mut agree = reported(&b_key, &b_lease, hash);
    if let WorkerMessage::Result { output, .. } = &mut agree {
        *output = Some(InlineBytes(bytes.clone()));
    }
    send(&mut b, &agree).await;
    assert_eq!(next_answer(&mut b).await, RelayMessage::Ack { lease: b_lease.lease });
    let decided = relay.wait_job(id, "the task was never verified", |j| j["tasks"][0]["state"] == "verified").await;
    let replicas = decided["tasks"][0]["replicas"].as_array().unwrap();
    let mut holders: Vec<&str> = replicas.iter().map(|r| r["worker"].as_str().unwrap()).collect();
    holders.sort_unstable();
    let mut expected = [a_hex.as_str(), b_hex.as_str()];
    expected.sort_unstable();
    assert_eq!(holders, expected);
    assert!(replicas.iter().all(|r| r["state"] == "accepted" && r["output_hash"] == hex.as_str()), "{decided}");
    let (status, served) = relay.get(&format!("/v1/blobs/{hash}")).await;
    assert_eq!((status, served.into_bytes()), (200, bytes));
    assert_eq!(worker_view(&a_key).await["replicas_returned"], 1, "counted once decided");
}

#[tokio::test]
async fn a_copied_hash_without_an_upload_counts_for_nothing() {
    let relay = start().await;
    let (a_key, b_key) = (Keypair::generate(), Keypair::generate());
    // Two slots each: both workers hold a replica of both tasks.
    let mut a = worker(&relay, &a_key, 2).await;
    let mut b = worker(&relay, &b_key, 2).await;
    let (status, job) = relay.post_job(&Keypair::generate(), two_replica_job(2, 1)).await;
    assert_eq!(status, 201, "{job}");
    let id = JobId(job["id"].as_u64().unwrap());
    let (a_held, b_held) = (assignments_by_index(&mut a, 2).await, assignments_by_index(&mut b, 2).await);

    // A computes task 0 honestly: uploads, reports.
    let bytes = output(&a_held[0], 7);
    let hash = sha256(&bytes);
    let (status, answer) = relay.put(&a_key, UploadPurpose::Output { lease: a_held[0].lease }, hash, &bytes).await;
    assert_eq!(status, 201, "{answer}");
    send(&mut a, &reported(&a_key, &a_held[0], hash)).await;
    assert_eq!(next_answer(&mut a).await, RelayMessage::Ack { lease: a_held[0].lease });

    // B learned A's hash (from a colluder, say) and reports it for its own lease without
    // uploading: refused, though a blob with that hash and length is stored.
    let copy = reported(&b_key, &b_held[0], hash);
    send(&mut b, &copy).await;
    let RelayMessage::Error(e) = next_answer(&mut b).await else { panic!("the copied hash was not refused") };
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    assert!(e.message.contains("upload your output first"), "{e:?}");
    // An upload under that hash without the bytes proves nothing either (the blob is already
    // stored: its body is still checked), and the report is refused again.
    let lease = UploadPurpose::Output { lease: b_held[0].lease };
    let (status, answer) = relay.put(&b_key, lease, hash, &output(&b_held[0], 8)).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("hash_mismatch")), "{answer}");
    send(&mut b, &copy).await;
    let RelayMessage::Error(e) = next_answer(&mut b).await else { panic!("the copied hash was not refused") };
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    // Task 1: B uploads one output for its lease and reports another's hash.
    let own = output(&b_held[1], 9);
    let (status, answer) =
        relay.put(&b_key, UploadPurpose::Output { lease: b_held[1].lease }, sha256(&own), &own).await;
    assert_eq!(status, 201, "{answer}");
    send(&mut b, &reported(&b_key, &b_held[1], hash)).await;
    let RelayMessage::Error(e) = next_answer(&mut b).await else { panic!("a hash other than its upload was accepted") };
    assert_eq!(e.code, ErrorCode::HashMismatch, "{e:?}");
    assert!(e.message.contains(&sha256(&own).to_hex()), "{e:?}");

    // Nothing was recorded on B's word: its leases are open and the task is undecided.
    let leases = &relay.state.core.shared.leases;
    assert!(leases.get(b_held[0].lease).is_some() && leases.get(b_held[1].lease).is_some());
    let detail = relay.get_json(&format!("/v1/jobs/{id}")).await;
    assert_eq!((detail["tasks_verified"].as_u64(), detail["tasks"][0]["state"].as_str()), (Some(0), Some("pending")));

    // The lease is still B's: with the bytes in hand (computed, this time) it uploads and the
    // task verifies.
    let (status, answer) = relay.put(&b_key, lease, hash, &bytes).await;
    assert_eq!(status, 201, "{answer}");
    send(&mut b, &copy).await;
    assert_eq!(next_answer(&mut b).await, RelayMessage::Ack { lease: b_held[0].lease });
    relay.wait_job(id, "the task was never verified", |j| j["tasks"][0]["state"] == "verified").await;
}
