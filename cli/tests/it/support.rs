//! Shared by the end-to-end tests: real `starling relay` and `starling worker` processes on
//! 127.0.0.1, driven over HTTP and WebSocket.
#![allow(dead_code)]

use serde_json::Value;
use starling_protocol::JobId;
use starling_protocol::api::{JobDetail, JobState, JobSummary, TaskState};
use starling_protocol::job::{JobSpec, KernelSpec};
use starling_protocol::sign::Keypair;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// A child process killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} failed");
    }
}

#[derive(Debug)]
pub struct Relay {
    pub proc: Proc,
    pub base: String,
    pub port: u16,
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).unwrap()
}

/// Starts `starling relay` on `port` (0 for any) and waits for its listening line.
pub fn spawn_relay(data_dir: &Path, port: u16, extra: &[&str]) -> Relay {
    let mut child = Command::new(BIN)
        .args(["relay", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log_file(data_dir.parent().unwrap(), &format!("relay-{}", rand_suffix())))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().expect("listening line").to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "unexpected relay output {line:?}");
    let port = base.rsplit(':').next().unwrap().parse().unwrap();
    Relay { proc: Proc(child), base, port }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007
}

/// Starts `starling worker` with its own key file in `dir`; it logs to `dir/{name}.log`.
pub fn spawn_worker(base: &str, dir: &Path, name: &str, extra: &[&str]) -> Proc {
    spawn_worker_with_env(base, dir, name, extra, &[])
}

/// [`spawn_worker`] that also logs every assignment it receives (see [`assigned`]): what a worker
/// is handed is its own to know, while the relay shows nobody who holds an undecided task.
pub fn spawn_worker_logging_assignments(base: &str, dir: &Path, name: &str, extra: &[&str]) -> Proc {
    let filter = "info,starling_web_worker::native=debug,wgpu_core=warn,wgpu_hal=warn,wgpu_hal::gles=off,naga=warn";
    spawn_worker_with_env(base, dir, name, extra, &[("RUST_LOG", filter), ("NO_COLOR", "1")])
}

fn spawn_worker_with_env(base: &str, dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let runtime = dir.join("xdg");
    std::fs::create_dir_all(&runtime).unwrap();
    let child = Command::new(BIN)
        .args(["worker", "--relay", base, "--key-file"])
        .arg(dir.join(format!("{name}.key")))
        .args(extra)
        .env("XDG_RUNTIME_DIR", &runtime)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log_file(dir, name))
        .spawn()
        .unwrap();
    Proc(child)
}

/// The lines of a worker's log so far, without terminal colours.
pub fn worker_log(dir: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence: ESC [ ... letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain.lines().map(str::to_string).collect()
}

/// Whether a worker started with [`spawn_worker_logging_assignments`] was handed `task`.
pub fn assigned(dir: &Path, name: &str, task: starling_protocol::TaskId) -> bool {
    let needle = format!("task={task}");
    worker_log(dir, name).iter().any(|l| l.contains("assigned") && l.split_whitespace().any(|w| w == needle))
}

/// Reads the public key a worker prints on its first line.
pub fn worker_key(proc: &mut Proc) -> String {
    let mut line = String::new();
    BufReader::new(proc.0.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    line.trim().rsplit(' ').next().unwrap().to_string()
}

#[derive(Debug)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub key: Keypair,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api { base: base.to_string(), http: reqwest::Client::new(), key: Keypair::from_seed([42; 32]) }
    }

    pub async fn upload(&self, data: Vec<u8>) -> starling_protocol::Hash32 {
        let hash = starling_protocol::sha256(&data);
        let auth = starling_protocol::upload::UploadAuth::sign(
            &self.key,
            starling_protocol::sign::UploadPurpose::Input,
            &hash,
            data.len() as u64,
        );
        let mut req = self.http.put(format!("{}/v1/blobs/{hash}", self.base));
        for (name, value) in auth.headers() {
            req = req.header(name, value);
        }
        let resp = req.body(data).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        hash
    }

    /// Signs `spec` as the CLI does: a paid job on a relay with escrow carries the client's
    /// deposit authorization for that relay's escrow.
    pub async fn sign(&self, spec: JobSpec) -> starling_protocol::sign::SignedJob {
        let health: starling_protocol::api::Health =
            self.http.get(format!("{}/v1/health", self.base)).send().await.unwrap().json().await.unwrap();
        match health.escrow.filter(|_| spec.price_per_replica > 0) {
            Some(e) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let deployment = starling_protocol::sign::Deployment { chain_id: &e.chain_id, contract: &e.contract };
                self.key.sign_paid_job(spec, deployment, &e.relay_address, now + 600)
            }
            None => self.key.sign_job(spec),
        }
    }

    pub async fn submit(&self, spec: JobSpec) -> JobSummary {
        let signed = self.sign(spec).await;
        let resp = self.http.post(format!("{}/v1/jobs", self.base)).json(&signed).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status.as_u16(), 201, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn job(&self, id: JobId) -> JobDetail {
        self.http.get(format!("{}/v1/jobs/{id}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    /// Polls until `pred` holds for the job (or panics after `timeout`).
    pub async fn wait_for(&self, id: JobId, timeout: Duration, pred: impl Fn(&JobDetail) -> bool) -> JobDetail {
        let start = Instant::now();
        loop {
            if let Ok(resp) = self.http.get(format!("{}/v1/jobs/{id}", self.base)).send().await
                && let Ok(detail) = resp.json::<JobDetail>().await
                && pred(&detail)
            {
                return detail;
            }
            assert!(start.elapsed() < timeout, "job {id} did not reach the expected state in {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_done(&self, id: JobId) -> JobDetail {
        let detail = self.wait_for(id, Duration::from_secs(180), |d| d.summary.state != JobState::Running).await;
        let failed: Vec<_> = detail.tasks.iter().filter(|t| t.state != TaskState::Verified).collect();
        assert_eq!(detail.summary.state, JobState::Done, "job failed: {:?} {failed:?}", detail.summary.failure);
        detail
    }

    pub async fn output(&self, id: JobId, index: u32) -> Vec<u8> {
        let resp = self.http.get(format!("{}/v1/jobs/{id}/tasks/{index}/output", self.base)).send().await.unwrap();
        assert!(resp.status().is_success());
        resp.bytes().await.unwrap().to_vec()
    }

    pub async fn workers(&self) -> Vec<Value> {
        self.http.get(format!("{}/v1/workers", self.base)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn wait_workers(&self, n: usize) {
        let start = Instant::now();
        while self.workers().await.iter().filter(|w| w["online"] == Value::Bool(true)).count() < n {
            assert!(start.elapsed() < Duration::from_secs(60), "{n} workers never came online");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The CPU reference output of each task of a built-in job.
pub async fn cpu_outputs(api: &Api, spec: &JobSpec) -> Vec<Vec<u8>> {
    let KernelSpec::Builtin { name } = spec.kernel else { panic!("built-in jobs only") };
    let mut out = Vec::new();
    for t in &spec.tasks {
        let mut inputs = Vec::new();
        for h in t.blobs() {
            inputs.push(
                api.http
                    .get(format!("{}/v1/blobs/{h}", api.base))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec(),
            );
        }
        let views: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        out.push(
            starling_web_worker::engine::run_task_cpu(name, &t.params, &views, t.workgroups, t.output_size).unwrap(),
        );
    }
    out
}

pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    (dir, data)
}

/// The PostgreSQL server the README's test command starts (`STARLING_TEST_POSTGRES`), if any.
/// Under the README's test command (`STARLING_REQUIRE_POSTGRES=1`) a missing server fails the
/// tests that need it instead of skipping them.
pub fn postgres_server() -> Option<String> {
    let server = std::env::var("STARLING_TEST_POSTGRES").ok().filter(|s| !s.is_empty());
    if server.is_none() && std::env::var("STARLING_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("STARLING_REQUIRE_POSTGRES=1 but STARLING_TEST_POSTGRES is not set");
    }
    server
}

/// Creates an empty database on the PostgreSQL server at `server` and returns its URL.
pub async fn fresh_postgres_database(server: &str) -> String {
    let name = format!("starling_e2e_{}", rand_suffix());
    starling_relay::store::Store::create_postgres_database(server, &name).await.expect("create a database")
}

/// Polls until a paid job is closed in escrow (its refund paid) and returns its account.
pub async fn wait_closed(api: &Api, job: JobId) -> starling_protocol::api::JobEscrow {
    let start = Instant::now();
    loop {
        if let Ok(resp) = api.http.get(format!("{}/v1/jobs/{job}/escrow", api.base)).send().await
            && let Ok(e) = resp.json::<starling_protocol::api::JobEscrow>().await
            && e.refunded.is_some()
        {
            return e;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "job {job} never closed in escrow");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
