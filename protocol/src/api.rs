//! Every view the REST API serves and reads (`/v1/...`): jobs, tasks, workers, clients, escrow,
//! health, results and stored blobs. The relay writes them, the CLI and the web app read them;
//! none is defined anywhere else. Fields a page must read leniently from relays older or newer
//! than itself carry `#[serde(default)]`.

use crate::bytes::{Hash32, PublicKey};
use crate::ids::JobId;
use crate::job::JobSpec;
use crate::sign::SignedJob;
use crate::worker::Capabilities;
use serde::{Deserialize, Serialize};

/// The first name, in a `/`-separated path or URL, of a web app build's folder: `app-<16 hex>`
/// (scripts/build-web.sh serves each build from `/pkg/app-<hash of its files>/`, immutable, and
/// keeps the build before the current one for tabs still running it; the page starts its compute
/// worker on its own build).
pub fn build_name_in(path: &str) -> Option<&str> {
    path.split('/').find(|segment| {
        segment.strip_prefix("app-").is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// A job's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

/// A task's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Verified,
    Failed,
}

/// A replica's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Leased to a worker, no answer yet.
    Leased,
    /// The worker returned a signed result not yet compared.
    Returned,
    /// Agreed with the quorum.
    Accepted,
    /// Disagreed with the quorum; its signed hash is kept as evidence.
    Rejected,
    /// The lease lapsed or the worker gave up.
    Lapsed,
    /// Cancelled because the task was decided without it.
    Cancelled,
}

/// `POST /v1/jobs` answer and the summary line of job lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: JobId,
    pub label: String,
    pub kernel: String,
    pub client: PublicKey,
    pub state: JobState,
    pub tasks_total: u32,
    pub tasks_verified: u32,
    pub tasks_failed: u32,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub failure: Option<String>,
}

/// `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub spec: JobSpec,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub index: u32,
    pub state: TaskState,
    /// The verified output's hash; none before the task is verified.
    pub output_hash: Option<Hash32>,
    /// Who took the task and what each returned: empty until the task is decided (verified or
    /// failed), so that nobody can copy an answer, or tell how many replicas a task has.
    pub replicas: Vec<ReplicaView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub worker: PublicKey,
    pub state: ReplicaState,
    pub output_hash: Option<Hash32>,
}

/// `GET /v1/workers`. Nothing here moves when a worker returns a result, only when its task is
/// decided: a watcher cannot tell who holds a replica of a pending task.
///
/// Read leniently (the web app may talk to relays older or newer than itself): a missing counter
/// reads as 0, and capabilities this build cannot read (a newer backend, say) as none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    pub key: PublicKey,
    #[serde(default)]
    pub online: bool,
    #[serde(default, deserialize_with = "known_or_none")]
    pub capabilities: Option<Capabilities>,
    /// Results returned for tasks since decided (verified or failed).
    #[serde(default)]
    pub replicas_returned: u64,
    #[serde(default)]
    pub replicas_accepted: u64,
    #[serde(default)]
    pub replicas_rejected: u64,
    /// When the worker last connected, or last had a result judged.
    #[serde(default)]
    pub last_seen_ms: u64,
    /// The worker's payout account in escrow (`GET /v1/workers/{key}` only; null when the relay
    /// settles without escrow or the key never registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<EscrowAccount>,
}

/// An account in the relay's escrow. Amounts are decimal strings in the smallest unit of
/// `denom` (they can exceed 2^53).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowAccount {
    /// The account's ed25519 key (hex): only its signature spends from it.
    pub address: String,
    /// Free to bond, to pay job deposits or to withdraw.
    pub balance: String,
    /// The nonce the account's next signed authorization (bond, unbond, withdraw) must carry.
    #[serde(default)]
    pub nonce: u64,
    /// Worker keys only: bond held by the contract, and what slashing took from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slashed: Option<String>,
    /// What the contract paid this account: earnings for its workers' verified work, and
    /// refunds of job deposits (empty from relays that do not report it).
    #[serde(default)]
    pub received: String,
    pub denom: String,
}

/// `GET /v1/clients/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub key: PublicKey,
    pub escrow: Option<EscrowAccount>,
}

/// An account owner's signed action on its escrow funds (`POST /v1/accounts/{key}/actions`): the
/// relay submits it; the contract checks the signature over
/// [`crate::sign::account_bytes`]`(deployment, key, nonce, action)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    /// The account's current nonce (`GET /v1/clients/{key}`).
    pub nonce: u64,
    pub action: AccountActionView,
    pub signature: crate::bytes::Signature,
}

/// The actions an owner can sign over the API. Amounts are decimal strings (they can exceed
/// 2^53); bonding happens through worker registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountActionView {
    /// Start unbonding part of a worker's bond; it returns to the account after the unbonding
    /// period (then anyone may release it).
    Unbond { worker: PublicKey, amount: String },
    /// Send part of the balance to a chain address.
    Withdraw { to: String, amount: String },
}

impl AccountActionView {
    /// The action as signed, or why its amount is not one.
    pub fn to_action(&self) -> Result<crate::sign::AccountAction, String> {
        let amount = |a: &str| a.parse::<u128>().map_err(|_| format!("amount {a:?} is not a whole number"));
        Ok(match self {
            Self::Unbond { worker, amount: a } => {
                crate::sign::AccountAction::Unbond { worker: *worker, amount: amount(a)? }
            }
            Self::Withdraw { to, amount: a } => {
                crate::sign::AccountAction::Withdraw { to: to.clone(), amount: amount(a)? }
            }
        })
    }
}

/// How the relay settles payment (in [`Health`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowInfo {
    /// `embedded` (the contract in cosmwasm-vm on a local ledger) or `chain`.
    pub backend: String,
    pub chain_id: String,
    pub contract: String,
    pub denom: String,
    /// The relay's own account: it sends settlements and receives fees.
    pub relay_address: String,
    pub relay_fee_bps: u16,
    pub min_bond: String,
}

/// One relay in the escrow contract's registry, with its record there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisteredRelay {
    /// Its chain account: the address a deposit signature names.
    pub address: String,
    /// Its public base URL (empty when it gave none).
    pub endpoint: String,
    pub fee_bps: u16,
    /// Bonded, in the escrow's smallest unit.
    pub bond: String,
    /// Leaving: what is unbonding.
    pub unbonding: String,
    /// Whether it opens jobs now (registered, bonded, not leaving).
    pub active: bool,
    pub leaving: bool,
    pub jobs_opened: u64,
    pub jobs_ended: u64,
    pub tasks_paid: u64,
    pub fees_earned: String,
    pub workers_slashed: u64,
}

/// `GET /v1/relays`: the registry as the relay's escrow reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayList {
    /// The answering relay's own chain account (`None` without escrow).
    pub this_relay: Option<String>,
    pub relays: Vec<RegisteredRelay>,
}

/// `GET /v1/health`. Read leniently: a field a relay does not send defaults (the web app reads
/// relays older and newer than itself).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub workers_online: u64,
    pub jobs_running: u64,
    /// Tasks verified since this relay's database was created: rates come from its deltas. None
    /// from relays that do not count them, so a page can say so instead of showing a zero.
    pub tasks_verified_total: Option<u64>,
    /// Null when jobs run unpaid (no escrow configured).
    pub escrow: Option<EscrowInfo>,
}

/// One sample of the network's figures, taken by the relay every [`NetworkHistory::every_ms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSample {
    pub at_ms: u64,
    pub workers_online: u64,
    /// Online workers by backend (`vulkan`, `browser_webgpu`, `cpu`, ...).
    #[serde(default)]
    pub workers_by_backend: std::collections::BTreeMap<String, u64>,
    pub jobs_running: u64,
    /// Tasks verified since the relay's database was created: rates come from its deltas.
    pub tasks_verified_total: u64,
}

/// `GET /v1/network/history`: the relay's last samples, oldest first (a bounded window, so a
/// page opened now shows what came before it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkHistory {
    pub every_ms: u64,
    pub samples: Vec<NetworkSample>,
}

/// A job's money in escrow (`GET /v1/jobs/{id}/escrow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEscrow {
    pub job: crate::JobId,
    pub client_address: String,
    pub deposit: String,
    pub paid_to_workers: String,
    pub paid_to_relay: String,
    /// Set once the job is closed (early by the relay, or after its deadline).
    pub refunded: Option<String>,
    pub settled_tasks: u32,
    pub denom: String,
}

/// `POST /v1/jobs` body.
pub type SubmitJob = SignedJob;

/// One line of `GET /v1/jobs/{id}/results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub index: u32,
    pub state: TaskState,
    /// The verified output's hash; none before the task is verified.
    pub output_hash: Option<Hash32>,
}

/// The answer to `PUT /v1/blobs/{hash}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBlob {
    pub hash: Hash32,
    pub size: u64,
}

/// `GET /v1/jobs?state=&limit=`: the query, every part optional; unknown parameters are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    pub state: Option<JobState>,
    pub limit: Option<u32>,
}

/// `GET /v1/workers?limit=`: the query; unknown parameters are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersQuery {
    pub limit: Option<u32>,
}

/// The body of `POST /v1/admin/deposits` (`starling fund`): credit `account` on the embedded
/// ledger, for demos and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminDeposit {
    pub account: PublicKey,
    /// Decimal, in the escrow's smallest unit.
    pub amount: String,
}

/// Reads an optional value, taking one this build cannot read as none (lenient views).
pub(crate) fn known_or_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_names_are_found_in_paths() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://relay.example/pkg/app-0123456789abcdef/snippets/s/inline0.js", Some("app-0123456789abcdef")),
            ("export * from './app-ffffffffffffffff/starling_frontend.js';", Some("app-ffffffffffffffff")),
            // Not a build folder: too short, not hex, or none at all.
            ("/pkg/app-0123/x.js", None),
            ("/pkg/app-0123456789abcdeg/x.js", None),
            ("/pkg/app.js", None),
        ];
        for &(path, want) in cases {
            assert_eq!(super::build_name_in(path), want, "{path}");
        }
    }
}
