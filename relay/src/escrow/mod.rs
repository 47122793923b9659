//! Payment through the escrow contract (`contracts/escrow`), behind [`EscrowBridge`].
//!
//! - [`plan`]: pure decisions: what a job deposits, which signatures settle a task, which
//!   rejected replicas are slashing evidence. Table-tested.
//! - [`embedded`]: the default backend: the compiled contract in cosmwasm-vm on a local ledger
//!   persisted next to the relay's database, with a faucet for demo accounts.
//! - [`chain`]: a real CosmWasm chain over Tendermint RPC, transactions signed with `cosmrs`.
//! - [`settler`]: the loop that turns verified tasks into settlement batches, evidence into
//!   slashes, and finished jobs into refunds; it recovers from the ledger after a restart.
//!
//! The relay core opens a job in escrow before accepting it (so a client that cannot pay is
//! refused and nothing is stored); everything after that is the settler's, off the core's path.

pub mod chain;
pub mod embedded;
pub mod plan;
mod queries;
pub mod settler;

use async_trait::async_trait;
use starling_protocol::api::{EscrowAccount, EscrowInfo, JobEscrow};
use starling_protocol::sign::{
    AccountAction, ComparisonKind, Deployment, DepositTerms, EscrowDeployment, SignatureError, account_bytes,
    register_bytes_v2, verify,
};
use starling_protocol::{Hash32, JobId, PublicKey, Signature};
use std::collections::HashSet;
use std::sync::Arc;

/// The escrow a relay settles through; `None` in [`crate::AppState`] runs jobs unpaid.
pub type Escrow = Arc<dyn EscrowBridge>;

#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    /// The contract (or the ledger's bank) refused: the caller's request is at fault.
    #[error("{0}")]
    Refused(String),
    /// The client's account cannot pay the deposit.
    #[error("{0}")]
    InsufficientFunds(String),
    /// The escrow could not be reached or failed internally; retry later.
    #[error("escrow unavailable: {0}")]
    Unavailable(String),
}

pub type EscrowResult<T> = std::result::Result<T, EscrowError>;

/// A contract refusal, with an account's shortfall told apart (the client must fund its account;
/// nothing is wrong with the request itself).
fn refused(text: String) -> EscrowError {
    // `ContractError::InsufficientBalance`'s message: "account {key} has {balance}, needs {needed}".
    let short = text.split("account ").nth(1).is_some_and(|rest| rest.contains(" has ") && rest.contains(", needs "));
    if short { EscrowError::InsufficientFunds(text) } else { EscrowError::Refused(text) }
}

/// A job as the contract's `CreateJob` sees it: the terms its client signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenJob {
    pub job: JobId,
    pub client: PublicKey,
    pub terms: DepositTerms,
    /// The client's signature over `deposit_bytes(terms)`.
    pub signature: Signature,
}

impl OpenJob {
    /// Dissenting signatures can be slashed: results are compared byte for byte.
    pub fn slashable(&self) -> bool {
        self.terms.comparison == ComparisonKind::Exact
    }
}

/// A worker key's signed request to be bonded under an owner account (the contract's `Bond`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub worker: PublicKey,
    pub owner: PublicKey,
    pub nonce: u64,
    pub bond: u64,
    /// The owner's signature over `account_bytes(owner, nonce, Bond {worker, bond})`.
    pub authorization: Signature,
    /// The worker key's signature over `register_bytes_v2(owner, worker)`.
    pub proof: Signature,
}

impl Registration {
    /// Checks both signatures for `deployment` (the contract checks them again): a relay on a
    /// chain pays gas for every transaction it sends, so a forged registration is refused
    /// before it costs anything.
    pub fn verify(&self, deployment: Deployment<'_>) -> Result<(), SignatureError> {
        let action = AccountAction::Bond { worker: self.worker, amount: u128::from(self.bond) };
        verify(&self.owner, &account_bytes(deployment, &self.owner, self.nonce, &action), &self.authorization)?;
        verify(&self.worker, &register_bytes_v2(deployment, &self.owner, &self.worker), &self.proof)
    }
}

/// One signer of a settled task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub worker: PublicKey,
    pub signature: Signature,
    /// Tolerance jobs: the hash this signer signed, when it is not the task's `output_hash`.
    pub output_hash: Option<Hash32>,
}

/// One verified task for `SettleBatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleTask {
    pub index: u32,
    pub output_hash: Hash32,
    pub output_len: u64,
    /// Agreeing signers of distinct owners, with their signatures over `result_bytes_v2`.
    pub signatures: Vec<Signer>,
}

/// A worker's signature over a different result for a settled task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub job: JobId,
    pub index: u32,
    pub worker: PublicKey,
    pub output_hash: Hash32,
    pub output_len: u64,
    pub signature: Signature,
}

/// A worker key's standing in escrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStanding {
    /// The account key it is bonded under and paid to.
    pub owner: PublicKey,
    /// Its signatures count toward a paid quorum now.
    pub eligible: bool,
}

/// What a relay needs from an escrow. Amounts are in the smallest unit of the escrow's denom.
/// The relay moves no account's money: every spend is signed by the account's key and checked
/// by the contract.
#[async_trait]
pub trait EscrowBridge: Send + Sync + std::fmt::Debug {
    fn info(&self) -> EscrowInfo;

    /// The chain and contract every signature for this escrow names.
    fn deployment(&self) -> EscrowDeployment {
        let info = self.info();
        EscrowDeployment { chain_id: info.chain_id, contract: info.contract }
    }

    /// The highest job id this relay holds in the contract (the relay never reuses one).
    async fn max_job_id(&self) -> EscrowResult<u64>;
    /// Opens a job paid from its client's account, with the client's signed terms (the
    /// contract's `CreateJob`).
    async fn open_job(&self, job: &OpenJob) -> EscrowResult<()>;
    /// Jobs of this relay's that are not closed yet, for recovery.
    async fn open_jobs(&self) -> EscrowResult<Vec<JobId>>;
    /// Indices of a job's settled tasks.
    async fn settled_tasks(&self, job: JobId) -> EscrowResult<HashSet<u32>>;
    async fn job(&self, job: JobId) -> EscrowResult<Option<JobEscrow>>;

    /// `None`: not registered.
    async fn worker(&self, worker: &PublicKey) -> EscrowResult<Option<WorkerStanding>>;
    /// The nonce an account's next authorization must carry.
    async fn nonce(&self, account: &PublicKey) -> EscrowResult<u64>;
    /// Bonds a new worker key under its owner (the contract's `Bond`, both signatures checked).
    async fn register_worker(&self, registration: &Registration) -> EscrowResult<()>;

    /// Settles verified tasks atomically: any bad entry refuses the whole batch.
    async fn settle(&self, job: JobId, tasks: &[SettleTask]) -> EscrowResult<()>;
    async fn slash(&self, evidence: &Evidence) -> EscrowResult<()>;
    /// Ends a job early and returns the unpaid deposit to its client; the amount refunded.
    async fn close(&self, job: JobId) -> EscrowResult<u128>;

    /// A worker key's bond, with its owner's account.
    async fn worker_account(&self, worker: &PublicKey) -> EscrowResult<Option<EscrowAccount>>;
    /// An account (a client's, or a worker owner's).
    async fn account(&self, account: &PublicKey) -> EscrowResult<EscrowAccount>;
    /// The contract's relay registry (at most [`queries::MAX_RELAYS`] entries).
    async fn relays(&self) -> EscrowResult<Vec<starling_protocol::api::RegisteredRelay>>;
    /// Sends the refunds of up to `max` expired, unrefunded jobs of other registered relays
    /// (anyone may send a refund after a job's deadline; it goes to the job's client); returns
    /// how many were refunded. Only where other relays share the contract.
    async fn refund_expired_elsewhere(&self, _max: usize) -> EscrowResult<usize> {
        Ok(0)
    }

    /// Submits an account owner's signed `unbond` or `withdraw` (anyone may submit one; the
    /// contract checks the signature and the nonce). Callers check the signature first, so a
    /// forged one costs nothing (`POST /v1/accounts/{key}/actions`).
    async fn authorized(
        &self,
        account: &PublicKey,
        nonce: u64,
        action: &AccountAction,
        signature: &Signature,
    ) -> EscrowResult<()>;

    /// New money into `account`, by the ledger's operator (the embedded ledger only: on a chain,
    /// owners deposit from their own wallets).
    async fn mint_deposit(&self, _account: &PublicKey, _amount: u128) -> EscrowResult<()> {
        Err(EscrowError::Refused(
            "this escrow is on a chain: fund the account with the contract's deposit message from a wallet".into(),
        ))
    }
}

/// Hex-encoded bytes as the contract's messages take them.
/// Most refunds of other relays' expired jobs one sweep sends (each costs this relay gas).
pub const REFUNDS_PER_SWEEP: usize = 8;

/// Every `every`, refunds other relays' expired jobs (see
/// [`EscrowBridge::refund_expired_elsewhere`]) until `stop`.
pub fn spawn_refund_sweep(escrow: Escrow, every: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            match escrow.refund_expired_elsewhere(REFUNDS_PER_SWEEP).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(refunds = n, "refunded expired jobs of other relays"),
                Err(e) => tracing::warn!(error = %e, "refund sweep failed"),
            }
        }
    });
}

fn hex(bytes: &[u8]) -> cosmwasm_std::HexBinary {
    cosmwasm_std::HexBinary::from(bytes)
}

/// The contract's `SettleBatch` for `tasks` (both backends send exactly this).
pub(crate) fn settle_msg(job: JobId, tasks: &[SettleTask]) -> starling_escrow::msg::ExecuteMsg {
    use starling_escrow::msg::{ExecuteMsg, TaskResult, WorkerSignature};
    ExecuteMsg::SettleBatch {
        job_id: job.0,
        tasks: tasks
            .iter()
            .map(|t| TaskResult {
                index: t.index,
                output_hash: hex(&t.output_hash.0),
                output_len: t.output_len,
                signatures: t
                    .signatures
                    .iter()
                    .map(|s| WorkerSignature {
                        worker_pubkey: hex(&s.worker.0),
                        signature: hex(&s.signature.0),
                        output_hash: s.output_hash.map(|h| hex(&h.0)),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The contract's `Slash` for `e`, against a job of `relay`'s.
pub(crate) fn slash_msg(relay: &str, e: &Evidence) -> starling_escrow::msg::ExecuteMsg {
    starling_escrow::msg::ExecuteMsg::Slash {
        relay: relay.to_owned(),
        job_id: e.job.0,
        index: e.index,
        worker_pubkey: hex(&e.worker.0),
        output_hash: hex(&e.output_hash.0),
        output_len: e.output_len,
        signature: hex(&e.signature.0),
    }
}

/// The contract's `CreateJob` for `job`.
pub(crate) fn create_job_msg(job: &OpenJob) -> starling_escrow::msg::ExecuteMsg {
    use starling_escrow::msg::JobTerms;
    use starling_escrow::state::JobComparison;
    let t = &job.terms;
    starling_escrow::msg::ExecuteMsg::CreateJob {
        job_id: job.job.0,
        client: hex(&job.client.0),
        terms: JobTerms {
            spec_digest: hex(&t.spec_digest.0),
            tasks: t.tasks,
            replicas: t.replicas,
            quorum: t.quorum,
            price_per_replica: cosmwasm_std::Uint128::new(t.price_per_replica),
            comparison: match t.comparison {
                ComparisonKind::Exact => JobComparison::Exact,
                ComparisonKind::Tolerance => JobComparison::Tolerance,
            },
            deadline_secs: t.deadline_secs,
            not_after: t.not_after,
        },
        signature: hex(&job.signature.0),
    }
}

/// The contract's `Bond` registering a new worker key.
pub(crate) fn bond_msg(r: &Registration) -> starling_escrow::msg::ExecuteMsg {
    starling_escrow::msg::ExecuteMsg::Bond {
        authorization: starling_escrow::msg::Authorization {
            account: hex(&r.owner.0),
            nonce: r.nonce,
            signature: hex(&r.authorization.0),
        },
        worker: hex(&r.worker.0),
        amount: cosmwasm_std::Uint128::new(u128::from(r.bond)),
        proof: Some(hex(&r.proof.0)),
    }
}

/// A worker's standing from the contract's answer (`None` if the owner is not a key).
fn standing(w: starling_escrow::msg::WorkerResponse) -> Option<WorkerStanding> {
    Some(WorkerStanding { owner: PublicKey(w.owner.to_array().ok()?), eligible: w.eligible })
}

/// The contract's message for an owner's signed action (bonds go through [`bond_msg`]).
fn authorized_msg(
    account: &PublicKey,
    nonce: u64,
    action: &AccountAction,
    signature: &Signature,
) -> EscrowResult<starling_escrow::msg::ExecuteMsg> {
    use starling_escrow::msg::{Authorization, ExecuteMsg};
    let authorization = Authorization { account: hex(&account.0), nonce, signature: hex(&signature.0) };
    let amount = |a: u128| cosmwasm_std::Uint128::new(a);
    Ok(match action {
        AccountAction::Unbond { worker, amount: a } => {
            ExecuteMsg::Unbond { authorization, worker: hex(&worker.0), amount: amount(*a) }
        }
        AccountAction::Withdraw { to, amount: a } => {
            ExecuteMsg::Withdraw { authorization, to: to.clone(), amount: amount(*a) }
        }
        AccountAction::Bond { .. } => {
            return Err(EscrowError::Refused("bonds are made by registering a worker".into()));
        }
    })
}

/// An account as the API shows it, from the contract's answer.
fn account_view(key: &PublicKey, a: &starling_escrow::state::Account, denom: &str) -> EscrowAccount {
    EscrowAccount {
        address: key.to_hex(),
        balance: a.balance.to_string(),
        nonce: a.nonce,
        bonded: None,
        slashed: None,
        received: (a.earned + a.refunded).to_string(),
        denom: denom.to_owned(),
    }
}

/// A job as the API shows it, from the contract's answer.
fn job_escrow(job: JobId, j: starling_escrow::msg::JobResponse, denom: &str) -> JobEscrow {
    JobEscrow {
        job,
        client_address: j.client.to_hex(),
        deposit: j.deposit.to_string(),
        paid_to_workers: j.paid_to_workers.to_string(),
        paid_to_relay: j.paid_to_relay.to_string(),
        refunded: j.refunded.map(|r| r.to_string()),
        settled_tasks: j.settled_tasks,
        denom: denom.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_escrow::ContractError;

    #[test]
    fn the_contract_is_sent_exactly_the_terms_the_client_signed() {
        use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
        use starling_protocol::sign::{Keypair, deposit_bytes};
        let client = Keypair::from_seed([4; 32]);
        let here = Deployment { chain_id: "c", contract: "k" };
        for comparison in [Comparison::Exact, Comparison::Tolerance { rel: 1e-5, abs: 1e-6 }] {
            let spec = JobSpec {
                label: String::new(),
                kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
                tasks: vec![
                    TaskSpec {
                        params: vec![],
                        inputs: vec![],
                        workgroups: [1, 1, 1],
                        output_size: 8,
                        kernel: 0
                    };
                    5
                ],
                comparison,
                replicas: 3,
                quorum: 2,
                max_replicas: 5,
                price_per_replica: 77,
                deadline_secs: 120,
                homogeneous: false,
                nonce: 9,
                adaptive: None,
                kernels: Vec::new(),
            };
            let signed = client.sign_paid_job(spec, here, "relay1", 5_000);
            let open = plan::open_job(JobId(3), &signed).unwrap().unwrap();
            let starling_escrow::msg::ExecuteMsg::CreateJob { job_id, client: key, terms, signature } =
                create_job_msg(&open)
            else {
                panic!("not a CreateJob")
            };
            assert_eq!((job_id, key.as_slice()), (3, client.public().0.as_slice()));
            // What the contract will rebuild and check the signature over.
            let rebuilt = terms.to_protocol().unwrap();
            let message = deposit_bytes(here, "relay1", &client.public(), &rebuilt);
            verify(&client.public(), &message, &Signature(signature.to_array().unwrap()))
                .expect("the client's signature holds");
            assert_eq!(rebuilt.comparison, ComparisonKind::from(signed.spec.comparison));
        }
    }

    #[test]
    fn a_short_account_is_told_apart_from_other_refusals() {
        let short = ContractError::InsufficientBalance {
            account: "ab".repeat(32),
            balance: cosmwasm_std::Uint128::new(5),
            needed: cosmwasm_std::Uint128::new(9),
        };
        assert!(matches!(refused(format!("execute: {short}")), EscrowError::InsufficientFunds(_)));
        let other = ContractError::JobExists { job_id: 4 };
        assert!(matches!(refused(other.to_string()), EscrowError::Refused(_)));
    }
}
