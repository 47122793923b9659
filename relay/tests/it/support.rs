//! Helpers the relay's integration tests share.

use futures_util::{SinkExt, StreamExt};
use starling_protocol::PROTOCOL_VERSION;
use starling_protocol::sign::Keypair;
use starling_protocol::worker::{
    AdapterInfo, Assignment, Backend, Capabilities, DeviceLimits, Platform, RelayMessage, WorkerMessage,
};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A CPU worker with 1 MiB buffers and `slots` parallel tasks.
pub fn cpu_caps(slots: u32) -> Capabilities {
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
        slots,
    }
}

/// A worker's first frame, with [`cpu_caps`] of one slot.
pub fn hello(key: &Keypair) -> WorkerMessage {
    WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, worker_key: key.public(), capabilities: cpu_caps(1) }
}

/// A worker's WebSocket, spoken by hand.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn send(ws: &mut Ws, msg: &WorkerMessage) {
    ws.send(Message::Text(serde_json::to_string(msg).unwrap().into())).await.unwrap();
}

/// The next relay frame (pings skipped); panics after 10 s of silence or when the connection ends.
pub async fn recv(ws: &mut Ws) -> RelayMessage {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("relay answers") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// A worker connected to the relay at `base` (`http://…`), through the handshake.
pub async fn connect_worker(base: &str, key: &Keypair, capabilities: Capabilities) -> Ws {
    let url = format!("{}/v1/workers/ws", base.replace("http", "ws"));
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let hello = WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, worker_key: key.public(), capabilities };
    send(&mut ws, &hello).await;
    let RelayMessage::Challenge { nonce } = recv(&mut ws).await else { panic!("no challenge") };
    send(&mut ws, &WorkerMessage::Auth { signature: key.sign_auth(&nonce) }).await;
    assert!(matches!(recv(&mut ws).await, RelayMessage::Welcome { .. }));
    ws
}

/// The next `n` assignments, in the order they came.
pub async fn assignments(ws: &mut Ws, n: usize) -> Vec<Assignment> {
    let mut out = Vec::new();
    while out.len() < n {
        if let RelayMessage::Assign(a) = recv(ws).await {
            out.push(a);
        }
    }
    out
}

/// The next frame that is not an assignment.
pub async fn next_answer(ws: &mut Ws) -> RelayMessage {
    loop {
        match recv(ws).await {
            RelayMessage::Assign(_) => continue,
            other => return other,
        }
    }
}

/// The database a test's relay uses: SQLite in `dir` by default; with `STARLING_TEST_STORE=postgres`,
/// a fresh database of its own on the PostgreSQL server named by `STARLING_TEST_POSTGRES` (a
/// server URL, as `scripts/postgres.sh start` exports). The README's test command runs these
/// tests both ways.
pub async fn database_url(dir: &std::path::Path) -> String {
    if std::env::var("STARLING_TEST_STORE").is_ok_and(|s| s == "postgres") {
        let server = postgres_server().expect("STARLING_TEST_STORE=postgres needs STARLING_TEST_POSTGRES");
        return fresh_postgres_database(&server).await;
    }
    format!("sqlite://{}?mode=rwc", dir.join("relay.sqlite").display())
}

/// A relay configuration for a test in `dir`: its database as [`database_url`] picks it, and its
/// blobs in a fresh prefix of the tests' S3 bucket with `STARLING_TEST_BLOBS=s3` (the README's
/// test command runs these tests on PostgreSQL with blobs in S3), else in `dir`.
pub async fn relay_config(dir: &std::path::Path) -> starling_relay::Config {
    let mut config = starling_relay::Config::new(dir);
    config.database = Some(database_url(dir).await);
    if std::env::var("STARLING_TEST_BLOBS").is_ok_and(|s| s == "s3") {
        let bucket = starling_relay::blobs::BlobLocation::test_bucket();
        config.blobs = Some(bucket.expect("STARLING_TEST_BLOBS=s3 needs STARLING_TEST_S3"));
    }
    config
}

/// Creates an empty database on the PostgreSQL server at `server` and returns its URL.
pub async fn fresh_postgres_database(server: &str) -> String {
    let name = format!("starling_{:016x}", rand::random::<u64>());
    starling_relay::store::Store::create_postgres_database(server, &name).await.expect("create a database")
}

/// The PostgreSQL server the tests may use (`STARLING_TEST_POSTGRES`), if any.
/// Under the README's test command (`STARLING_REQUIRE_POSTGRES=1`) a missing server fails the
/// tests that need it instead of skipping them.
pub fn postgres_server() -> Option<String> {
    let server = std::env::var("STARLING_TEST_POSTGRES").ok().filter(|s| !s.is_empty());
    if server.is_none() && std::env::var("STARLING_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("STARLING_REQUIRE_POSTGRES=1 but STARLING_TEST_POSTGRES is not set");
    }
    server
}
