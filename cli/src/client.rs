//! HTTP and WebSocket calls to a relay, for `submit`, `status` and `demo`.

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use starling_protocol::api::{JobDetail, JobSummary, WorkerView};
use starling_protocol::events::JobEvent;
use starling_protocol::job::JobSpec;
use starling_protocol::sign::{Deployment, Keypair, UploadPurpose};
use starling_protocol::upload::UploadAuth;
use starling_protocol::{ErrorBody, Hash32, JobId, sha256};
use tokio_tungstenite::tungstenite::Message;

/// How long a signed deposit authorization stays usable: the relay opens the job at once, so a
/// short window limits what a leaked signature could still open.
pub const DEPOSIT_VALID_SECS: u64 = 600;

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The escrow deployment and relay account a paid job's deposit may name (found in the
    /// registry by discovery): a relay that answers otherwise when the job is signed is refused.
    expect: Option<Expected>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub chain_id: String,
    pub contract: String,
    pub relay_address: String,
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => bail!("relay refused ({status}): {:?}: {}", body.code, body.message),
        Err(_) => bail!("relay answered {status}: {text}"),
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new(), expect: None }
    }

    /// Signs deposits only for this deployment and relay account.
    pub fn expecting(mut self, expect: Expected) -> Self {
        self.expect = Some(expect);
        self
    }

    /// Uploads a job input to its content address, signed by `key` (whose quota it counts
    /// against until a job uses it); returns the hash.
    pub async fn upload(&self, key: &Keypair, data: Vec<u8>) -> Result<Hash32> {
        let hash = sha256(&data);
        let auth = UploadAuth::sign(key, UploadPurpose::Input, &hash, data.len() as u64);
        let mut req = self.http.put(format!("{}/v1/blobs/{hash}", self.base));
        for (name, value) in auth.headers() {
            req = req.header(name, value);
        }
        let resp = req.body(data).send().await.context("uploading blob")?;
        check(resp).await?;
        Ok(hash)
    }

    pub async fn download(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.with_context(|| format!("GET {path}"))?;
        Ok(check(resp).await?.bytes().await?.to_vec())
    }

    pub async fn task_output(&self, job: JobId, index: u32) -> Result<Vec<u8>> {
        self.download(&format!("/v1/jobs/{job}/tasks/{index}/output")).await
    }

    /// Posts `spec` signed by `key`. A paid job on a relay with escrow carries the client's
    /// deposit authorization: its consent that this relay open this one job, on the terms the
    /// spec implies, paid from its account, within the next [`DEPOSIT_VALID_SECS`].
    pub async fn submit(&self, key: &Keypair, spec: JobSpec) -> Result<JobSummary> {
        let escrow = if spec.price_per_replica > 0 {
            self.get::<starling_protocol::api::Health>("/v1/health").await?.escrow
        } else {
            None
        };
        if let (Some(want), Some(e)) = (&self.expect, &escrow) {
            let got = Expected {
                chain_id: e.chain_id.clone(),
                contract: e.contract.clone(),
                relay_address: e.relay_address.clone(),
            };
            if &got != want {
                bail!("the relay now answers for {got:?}, not the registered {want:?}: nothing signed");
            }
        }
        let body = match escrow {
            Some(e) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
                let deployment = Deployment { chain_id: &e.chain_id, contract: &e.contract };
                key.sign_paid_job(spec, deployment, &e.relay_address, now + DEPOSIT_VALID_SECS)
            }
            None => key.sign_job(spec),
        };
        let resp = self.http.post(format!("{}/v1/jobs", self.base)).json(&body).send().await.context("posting job")?;
        Ok(check(resp).await?.json().await?)
    }

    pub async fn job(&self, id: JobId) -> Result<JobDetail> {
        let resp = self.http.get(format!("{}/v1/jobs/{id}", self.base)).send().await?;
        Ok(check(resp).await?.json().await?)
    }

    pub async fn jobs(&self) -> Result<Vec<JobSummary>> {
        let resp = self.http.get(format!("{}/v1/jobs", self.base)).send().await?;
        Ok(check(resp).await?.json().await?)
    }

    /// GET a JSON resource under the relay's base URL.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.with_context(|| format!("GET {path}"))?;
        Ok(check(resp).await?.json().await?)
    }

    pub async fn workers(&self) -> Result<Vec<WorkerView>> {
        let resp = self.http.get(format!("{}/v1/workers", self.base)).send().await?;
        Ok(check(resp).await?.json().await?)
    }

    /// Follows a job's live events, calling `on_event` for each, until it finishes.
    pub async fn watch(&self, id: JobId, mut on_event: impl FnMut(&JobEvent)) -> Result<JobSummary> {
        let url = format!("{}/v1/jobs/{id}/events", self.base.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.context("opening job events")?;
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg? else { continue };
            let event: JobEvent = serde_json::from_str(text.as_str())?;
            on_event(&event);
            match event {
                JobEvent::JobDone { job } | JobEvent::JobFailed { job } => return Ok(job),
                JobEvent::Snapshot { job } if job.state != starling_protocol::api::JobState::Running => {
                    return Ok(job);
                }
                _ => {}
            }
        }
        // The stream ended without a final event (relay restarted): read where the job stands.
        Ok(self.job(id).await?.summary)
    }
}
