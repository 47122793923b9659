//! One busy dependency stalls no unrelated client: while 300 workers register in the embedded
//! escrow (the contract in cosmwasm-vm checks each key's proof), an unrelated unpaid job is
//! answered within 50 ms. Real relay, real WebSockets, the real contract. Its own test binary,
//! so no other test shares the machine's two cores while it measures.

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

use futures_util::{SinkExt, StreamExt};
use starling_protocol::PROTOCOL_VERSION;
use starling_protocol::job::{BuiltinKernel, JobSpec, KernelSpec};
use starling_protocol::sign::Keypair;
use starling_protocol::worker::{Capabilities, RelayMessage, WorkerMessage};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WORKERS: usize = 300;
/// Unrelated job posts measured while the registrations run.
const POSTS: u64 = 9;

fn contract() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contracts/starling_escrow.wasm");
    assert!(path.exists(), "{} is missing: run scripts/build-contract.sh first", path.display());
    path
}

fn caps() -> Capabilities {
    support::cpu_caps(1)
}

async fn next(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Option<RelayMessage> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Connects, authenticates and registers; returns once the relay has had the registration.
async fn register(ws_url: String, key: Keypair, registered: Arc<AtomicUsize>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("connect");
    let send = |m: &WorkerMessage| Message::Text(serde_json::to_string(m).unwrap().into());
    ws.send(send(&WorkerMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_key: key.public(),
        capabilities: caps(),
    }))
    .await
    .unwrap();
    let Some(RelayMessage::Challenge { nonce }) = next(&mut ws).await else { panic!("no challenge") };
    ws.send(send(&WorkerMessage::Auth { signature: key.sign_auth(&nonce) })).await.unwrap();
    loop {
        match next(&mut ws).await {
            Some(RelayMessage::Register { escrow, nonce, bond }) => {
                let answer = starling_web_worker::escrow::register(
                    &key.public(),
                    None,
                    Some(&escrow),
                    &escrow,
                    nonce,
                    bond,
                    bond,
                )
                .expect("the relay's own request")
                .sign_with(&key);
                ws.send(send(&answer)).await.unwrap();
                registered.fetch_add(1, Ordering::SeqCst);
            }
            Some(_) => continue,
            // Keep the connection until the test ends.
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_job_is_answered_within_50_ms_while_300_workers_register() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = starling_relay::Config::new(dir.path());
    config.limits.per_address = 1024;
    // The faucet funds each worker's bond: every registration is a deposit and a bond, both
    // contract calls in the VM.
    let embedded = starling_relay::escrow::embedded::EmbeddedConfig {
        faucet: 1_000_000_000,
        ..starling_relay::escrow::embedded::EmbeddedConfig::new(contract())
    };
    config.escrow = starling_relay::EscrowConfig::Embedded(embedded);
    let started = starling_relay::start(listener, config, std::future::pending()).await.unwrap();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    // Warm up the path the measured request takes.
    let post = |nonce: u64| {
        let job = Keypair::generate().sign_job(JobSpec {
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
            nonce,
            adaptive: None,
            kernels: Vec::new(),
        });
        http.post(format!("{base}/v1/jobs")).json(&job).send()
    };
    assert_eq!(post(0).await.unwrap().status(), 201);

    let registered = Arc::new(AtomicUsize::new(0));
    let ws_url = format!("ws://{addr}/v1/workers/ws");
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        workers.spawn(register(ws_url.clone(), Keypair::generate(), registered.clone()));
    }
    // Wait until a good share of registrations is in flight, then measure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while registered.load(Ordering::SeqCst) < WORKERS / 3 {
        assert!(tokio::time::Instant::now() < deadline, "registrations never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut took = Vec::new();
    for nonce in 1..=POSTS {
        let sent = std::time::Instant::now();
        let response = post(nonce).await.unwrap();
        took.push(sent.elapsed());
        assert_eq!(response.status(), 201);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took.sort();
    let (median, worst) = (took[took.len() / 2], took[took.len() - 1]);
    let in_flight = WORKERS - started_standing(&http, &base).await;
    eprintln!(
        "POST /v1/jobs: median {median:?}, worst {worst:?}; registrations still in flight afterwards: {in_flight}"
    );
    assert!(in_flight > 0, "the registrations were over before the measurement ended; the test proves nothing");
    // On two shared cores one request can lose a scheduling slice to whatever else runs (a
    // compiler, the registrations' contract calls): the median answers within 50 ms, and no
    // request waits anywhere near the 1.1-1.3 s the writer's stall used to cost.
    assert!(median < Duration::from_millis(50), "an unrelated POST /v1/jobs took {median:?} (median of {POSTS})");
    assert!(worst < Duration::from_millis(400), "an unrelated POST /v1/jobs took {worst:?}");
    workers.abort_all();
    drop(started);
}

/// Workers whose registration the ledger has taken (their escrow account exists).
async fn started_standing(http: &reqwest::Client, base: &str) -> usize {
    let workers: Vec<serde_json::Value> =
        http.get(format!("{base}/v1/workers?limit=1000")).send().await.unwrap().json().await.unwrap();
    workers.len().min(WORKERS)
}
