//! Every blob upload is tied to an identity and counted against its quota: a client key for
//! inputs, the uploading worker's lease for outputs. Small outputs travel inline in the result and
//! are checked against its signed hash. Blobs no job references expire. Each refusal is a
//! `{code, message}` 4xx or a protocol error frame, and the relay keeps serving everyone else.
//! Runs a real relay on 127.0.0.1:0 with a real SQLite file.

use crate::support::{Ws, assignments, connect_worker, next_answer, send};
use serde_json::Value;
use starling_protocol::job::{BuiltinKernel, JobSpec, KernelSpec};
use starling_protocol::sign::{Keypair, UploadPurpose};
use starling_protocol::upload::{KEY_HEADER, SIGNATURE_HEADER, UploadAuth};
use starling_protocol::worker::{Assignment, Capabilities, InlineBytes, RelayMessage, WorkerMessage};
use starling_protocol::{ErrorCode, Hash32, sha256};
use starling_relay::blobs::BlobQuota;
use std::time::Duration;

struct Relay {
    base: String,
    _dir: tempfile::TempDir,
    blobs: starling_relay::blobs::BlobStore,
    _stop: tokio::sync::oneshot::Sender<()>,
    http: reqwest::Client,
}

async fn start(quota: BlobQuota) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = crate::support::relay_config(dir.path()).await;
    config.blob_quota = quota;
    // These workers sign made-up outputs: the relay's known-answer checks would bar them.
    config.core.canary_rate = 0.0;
    let started = starling_relay::start(listener, config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let blobs = started.state.blobs.clone();
    tokio::spawn(started.finished());
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/v1/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Relay { base, _dir: dir, blobs, _stop: stop, http }
}

impl Relay {
    /// `PUT /v1/blobs/{hash}` with `headers`; the status and the JSON answer.
    async fn put(&self, hash: &Hash32, headers: &[(&'static str, String)], body: Vec<u8>) -> (u16, Value) {
        let mut req = self.http.put(format!("{}/v1/blobs/{hash}", self.base));
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// An upload signed by `key` for `purpose`.
    async fn put_signed(&self, key: &Keypair, purpose: UploadPurpose, body: &[u8]) -> (u16, Value) {
        let hash = sha256(body);
        let auth = UploadAuth::sign(key, purpose, &hash, body.len() as u64);
        self.put(&hash, &auth.headers(), body.to_vec()).await
    }

    async fn input(&self, key: &Keypair, body: &[u8]) -> (u16, Value) {
        self.put_signed(key, UploadPurpose::Input, body).await
    }

    /// Whether the relay's blob store holds `hash` (in a folder or in S3).
    async fn stored(&self, hash: &Hash32) -> bool {
        self.blobs.size(hash).await.is_some()
    }

    async fn healthy(&self) -> bool {
        self.http.get(format!("{}/v1/health", self.base)).send().await.is_ok_and(|r| r.status().is_success())
    }

    async fn post_job(&self, key: &Keypair, spec: JobSpec) -> (u16, Value) {
        let resp = self.http.post(format!("{}/v1/jobs", self.base)).json(&key.sign_job(spec)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("<no code>")
}

fn spec(kernel: BuiltinKernel, tasks: Vec<starling_protocol::job::TaskSpec>, nonce: u64) -> JobSpec {
    JobSpec {
        label: String::new(),
        kernel: KernelSpec::Builtin { name: kernel },
        tasks,
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

/// A 2×2 by 2×2 matmul job over inputs `a` and `b` (16 bytes each).
fn matmul_spec(a: &[u8], b: &[u8], nonce: u64) -> JobSpec {
    let task = starling_web_worker::kernels::matmul_f32::task_for(2, 2, 2, sha256(a), sha256(b));
    spec(BuiltinKernel::MatmulF32, vec![task], nonce)
}

#[tokio::test]
async fn uploads_need_a_valid_signature_and_store_nothing_without_one() {
    let relay = start(BlobQuota::default()).await;
    let client = Keypair::generate();
    let body = b"an input".to_vec();
    let hash = sha256(&body);

    // Anonymous.
    let (status, answer) = relay.put(&hash, &[], body.clone()).await;
    assert_eq!((status, code(&answer)), (401, "bad_signature"), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains(KEY_HEADER), "{answer}");
    // Signed by another key than the one named.
    let mut forged = UploadAuth::sign(&client, UploadPurpose::Input, &hash, body.len() as u64);
    forged.signature = Keypair::generate().sign_upload(UploadPurpose::Input, &hash, body.len() as u64);
    let (status, answer) = relay.put(&hash, &forged.headers(), body.clone()).await;
    assert_eq!((status, code(&answer)), (401, "bad_signature"), "{answer}");
    // Signed for another blob, or another length.
    let other = UploadAuth::sign(&client, UploadPurpose::Input, &sha256(b"other"), body.len() as u64);
    assert_eq!(relay.put(&hash, &other.headers(), body.clone()).await.0, 401);
    let longer = UploadAuth::sign(&client, UploadPurpose::Input, &hash, body.len() as u64 + 1);
    assert_eq!(relay.put(&hash, &longer.headers(), body.clone()).await.0, 401);
    // Unreadable headers.
    let garbled = [(KEY_HEADER, "not a key".to_string()), (SIGNATURE_HEADER, "00".to_string())];
    let (status, answer) = relay.put(&hash, &garbled, body.clone()).await;
    assert_eq!((status, code(&answer)), (400, "malformed"), "{answer}");
    assert!(!relay.stored(&hash).await, "no refused upload stored anything");

    // Signed properly: stored, and readable by anyone.
    let (status, answer) = relay.input(&client, &body).await;
    assert_eq!((status, answer["hash"].as_str()), (201, Some(hash.to_hex().as_str())), "{answer}");
    let fetched = relay.http.get(format!("{}/v1/blobs/{hash}", relay.base)).send().await.unwrap();
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), body.as_slice());
    // The old anonymous `POST /v1/blobs` is gone.
    let resp = relay.http.post(format!("{}/v1/blobs", relay.base)).body(body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn each_key_has_a_quota_and_all_keys_together_a_cap() {
    let quota = BlobQuota { per_key_bytes: 40, per_key_blobs: 8, total_bytes: 72, ..BlobQuota::default() };
    let relay = start(quota).await;
    let (alice, bob, carol) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let a = [1u8; 16];
    let b = [2u8; 16];
    assert_eq!(relay.input(&alice, &a).await.0, 201);
    assert_eq!(relay.input(&alice, &b).await.0, 201);
    // Alice is at 32 of her 40 bytes: 16 more is refused, and nothing of it is kept.
    let c = [3u8; 16];
    let (status, answer) = relay.input(&alice, &c).await;
    assert_eq!((status, code(&answer)), (429, "rate_limited"), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("quota"), "{answer}");
    assert!(!relay.stored(&sha256(&c)).await);
    // More than a key's whole quota at once is too large.
    let (status, answer) = relay.input(&bob, &[4u8; 41]).await;
    assert_eq!((status, code(&answer)), (413, "too_large"), "{answer}");
    // Bob still uploads; the same blob again costs nobody anything.
    assert_eq!(relay.input(&bob, &c).await.0, 201);
    assert_eq!(relay.input(&bob, &c).await.0, 200);
    assert_eq!(relay.input(&carol, &a).await.0, 200, "a blob already stored is not charged to the new uploader");
    // Bob and Alice hold 48 of the relay's 72: Carol's 32 would pass her own quota, not the cap.
    let (status, answer) = relay.input(&carol, &[5u8; 32]).await;
    assert_eq!((status, code(&answer)), (429, "rate_limited"), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("all clients"), "{answer}");
    assert!(relay.input(&carol, &[6u8; 16]).await.0 == 201, "what is left under the cap is still usable");

    // A job that uses Alice's inputs frees her quota.
    let (status, answer) = relay.post_job(&alice, matmul_spec(&a, &b, 1)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(relay.input(&alice, &[7u8; 16]).await.0, 201);
    assert!(relay.healthy().await);
}

fn caps() -> Capabilities {
    crate::support::cpu_caps(4)
}

async fn worker(relay: &Relay, key: &Keypair) -> Ws {
    connect_worker(&relay.base, key, caps()).await
}

fn result(key: &Keypair, a: &Assignment, output: &[u8], inline: bool) -> WorkerMessage {
    let (output_hash, output_len) = (sha256(output), output.len() as u64);
    WorkerMessage::Result {
        lease: a.lease,
        task: a.task,
        output_hash,
        output_len,
        signature: starling_web_worker::escrow::sign_result(key, None, a, &output_hash, output_len),
        output: inline.then(|| InlineBytes(output.to_vec())),
    }
}

#[tokio::test]
async fn outputs_are_stored_only_for_a_held_lease_of_the_declared_size() {
    let relay = start(BlobQuota::default()).await;
    let (key, stranger) = (Keypair::generate(), Keypair::generate());
    let mut ws = worker(&relay, &key).await;
    let mut stranger_ws = worker(&relay, &stranger).await;
    // Four tasks, two replicas each; a new key holds two leases at most, so each worker holds
    // one replica of each of the first two tasks.
    let tasks = starling_web_worker::kernels::monte_carlo_pi::tasks(1, 4, 4, 16);
    let (status, answer) = relay.post_job(&Keypair::generate(), spec(BuiltinKernel::MonteCarloPi, tasks, 1)).await;
    assert_eq!(status, 201, "{answer}");
    let held = assignments(&mut ws, 2).await;
    let size = held[0].output_size as usize;
    let lease = UploadPurpose::Output { lease: held[0].lease };

    // Uploads: a lease the uploader does not hold, one that does not exist, the wrong size.
    let output = vec![9u8; size];
    let (status, answer) = relay.put_signed(&stranger, lease, &output).await;
    assert_eq!((status, code(&answer)), (400, "lease_not_held"), "{answer}");
    let nowhere = UploadPurpose::Output { lease: starling_protocol::LeaseId(999_999) };
    assert_eq!(code(&relay.put_signed(&key, nowhere, &output).await.1), "lease_not_held");
    let (status, answer) = relay.put_signed(&key, lease, &vec![9u8; size + 1]).await;
    assert_eq!((status, code(&answer)), (400, "malformed"), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("declares"), "{answer}");
    assert!(!relay.stored(&sha256(&output)).await && !relay.stored(&sha256(&vec![9u8; size + 1])).await);
    // The holder, at the declared size: stored; a second, different output for it is not.
    assert_eq!(relay.put_signed(&key, lease, &output).await.0, 201);
    let (status, answer) = relay.put_signed(&key, lease, &vec![8u8; size]).await;
    assert_eq!((status, code(&answer)), (409, "conflict"), "{answer}");
    assert!(!relay.stored(&sha256(&vec![8u8; size])).await);
    send(&mut ws, &result(&key, &held[0], &output, false)).await;
    assert_eq!(next_answer(&mut ws).await, RelayMessage::Ack { lease: held[0].lease });
    // The lease is returned: no more uploads for it.
    assert_eq!(code(&relay.put_signed(&key, lease, &output).await.1), "lease_not_held");

    // Inline: an output that does not hash to the signed hash is a protocol error frame, and
    // nothing is stored; the connection stays up.
    let inline = vec![7u8; size];
    let mut lying = result(&key, &held[1], &inline, true);
    if let WorkerMessage::Result { output: Some(bytes), .. } = &mut lying {
        bytes.0[0] ^= 1;
    }
    send(&mut ws, &lying).await;
    let RelayMessage::Error(e) = next_answer(&mut ws).await else { panic!("expected an error frame") };
    assert_eq!(e.code, ErrorCode::HashMismatch, "{e:?}");
    assert!(!relay.stored(&sha256(&inline)).await);
    // Inline of the wrong size, and for a lease held by someone else.
    send(&mut ws, &result(&key, &held[1], &inline[1..], true)).await;
    let RelayMessage::Error(e) = next_answer(&mut ws).await else { panic!("expected an error frame") };
    assert_eq!(e.code, ErrorCode::Malformed, "{e:?}");
    let mut unheld = result(&key, &held[1], &inline, true);
    if let WorkerMessage::Result { lease, .. } = &mut unheld {
        *lease = starling_protocol::LeaseId(999_999);
    }
    send(&mut ws, &unheld).await;
    let RelayMessage::Error(e) = next_answer(&mut ws).await else { panic!("expected an error frame") };
    assert_eq!(e.code, ErrorCode::LeaseNotHeld, "{e:?}");
    assert!(!relay.stored(&sha256(&inline)).await);
    // The honest inline result is stored and acknowledged without any upload.
    send(&mut ws, &result(&key, &held[1], &inline, true)).await;
    assert_eq!(next_answer(&mut ws).await, RelayMessage::Ack { lease: held[1].lease });
    assert!(relay.stored(&sha256(&inline)).await);
    // Nobody reads it while its task is undecided; once the other replica agrees, anyone may.
    let fetch = async |hash: Hash32| relay.http.get(format!("{}/v1/blobs/{hash}", relay.base)).send().await.unwrap();
    assert_eq!(fetch(sha256(&inline)).await.status().as_u16(), 404, "an undecided task's output was served");
    let other = assignments(&mut stranger_ws, 2).await.into_iter().find(|a| a.task == held[1].task).unwrap();
    send(&mut stranger_ws, &result(&stranger, &other, &inline, true)).await;
    assert_eq!(next_answer(&mut stranger_ws).await, RelayMessage::Ack { lease: other.lease });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let served = loop {
        let resp = fetch(sha256(&inline)).await;
        if resp.status().is_success() {
            break resp.bytes().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "the verified output never became readable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(served.as_ref(), inline.as_slice());
    assert!(relay.healthy().await);
}

#[tokio::test]
async fn blobs_no_job_references_expire_and_referenced_ones_stay() {
    let quota =
        BlobQuota { ttl: Duration::from_millis(300), sweep_every: Duration::from_millis(50), ..BlobQuota::default() };
    let relay = start(quota).await;
    let client = Keypair::generate();
    let (a, b, unused) = ([1u8; 16], [2u8; 16], [3u8; 16]);
    for blob in [&a, &b, &unused] {
        assert_eq!(relay.input(&client, blob).await.0, 201);
    }
    let (status, answer) = relay.post_job(&client, matmul_spec(&a, &b, 1)).await;
    assert_eq!(status, 201, "{answer}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay.stored(&sha256(&unused)).await {
        assert!(tokio::time::Instant::now() < deadline, "the unreferenced blob never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several sweeps later, the job's inputs are still there.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(relay.stored(&sha256(&a)).await && relay.stored(&sha256(&b)).await);
    let fetched = relay.http.get(format!("{}/v1/blobs/{}", relay.base, sha256(&unused))).send().await.unwrap();
    assert_eq!(fetched.status().as_u16(), 404);
    // Its quota is free again, and the blob can be uploaded anew.
    assert_eq!(relay.input(&client, &unused).await.0, 201);
}
