//! Escrow on a real CosmWasm chain: the deployed `contracts/escrow`, reached over a node's
//! Tendermint/CometBFT RPC. Transactions are built and signed (SIGN_MODE_DIRECT, secp256k1) with
//! `cosmrs`; queries go through `abci_query` to the wasm module's `SmartContractState`.
//!
//! The relay signs with its own account (the one instantiated as the contract's `relay`): job
//! openings, worker registrations, settlements, slashing evidence and early closes. It pays the
//! gas, never anyone's money: a job's deposit comes from its client's account in the contract
//! (funded by the client's own `Deposit` transaction) with the client's signed terms, and a
//! registration bonds from the owner's account with the owner's signed authorization. The
//! contract checks every one of those signatures.
//!
//! Deployment is described in `contracts/escrow/README.md` ("Deploying on a chain").

use super::{
    EscrowBridge, EscrowError, EscrowResult, Evidence, OpenJob, Registration, SettleTask, WorkerStanding,
    authorized_msg, bond_msg, create_job_msg, queries, settle_msg, slash_msg, standing,
};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cosmrs::proto::cosmos::auth::v1beta1::{BaseAccount, QueryAccountRequest, QueryAccountResponse};
use cosmrs::proto::cosmwasm::wasm::v1::{QuerySmartContractStateRequest, QuerySmartContractStateResponse};
use cosmrs::proto::prost::Message;
use cosmrs::tx::{Body, Fee, Msg, SignDoc, SignerInfo};
use cosmrs::{AccountId, Coin, crypto::secp256k1::SigningKey};
use serde_json::{Value, json};
use starling_escrow::msg::{DepositResponse, ExecuteMsg, QueryMsg, SpecJobResponse};
use starling_escrow::state::Config;
use starling_protocol::api::{EscrowAccount, EscrowInfo, JobEscrow};
use starling_protocol::sign::{AccountAction, deposit_bytes, verify};
use starling_protocol::{JobId, PublicKey, Signature};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Mutex;

/// Settings of the chain backend (the relay's `--chain-*` flags).
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// The node's RPC endpoint, e.g. `http://localhost:26657`.
    pub rpc: String,
    pub chain_id: String,
    /// The deployed escrow contract.
    pub contract: String,
    /// Bech32 prefix of the chain's accounts (`wasm`, `neutron`, `osmo`, ...).
    pub prefix: String,
    /// A file holding the relay account's secp256k1 secret key as 64 hex digits.
    pub key_file: PathBuf,
    /// Fee per unit of gas, in the contract's denom.
    pub gas_price: f64,
    /// Gas for one message, plus `gas_per_task` for each task in a settlement batch.
    pub gas_base: u64,
    pub gas_per_task: u64,
    /// How long to wait for a transaction to be included in a block.
    pub confirm_timeout: Duration,
    /// This relay's entry in the contract's registry: registered (bonding from the relay's chain
    /// account) or brought up to date on start. `None`: the account must be registered already.
    pub register: Option<RelayRegistration>,
}

/// What a relay puts in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRegistration {
    /// Its public base URL, for workers and clients.
    pub endpoint: String,
    /// Fee on each paid replica, in basis points (registered once; later only lowered).
    pub fee_bps: u16,
    /// Bond sent when registering, in the contract's denom.
    pub bond: u128,
}

impl ChainConfig {
    pub fn new(rpc: &str, chain_id: &str, contract: &str, prefix: &str, key_file: impl Into<PathBuf>) -> Self {
        Self {
            rpc: rpc.trim_end_matches('/').to_owned(),
            chain_id: chain_id.to_owned(),
            contract: contract.to_owned(),
            prefix: prefix.to_owned(),
            key_file: key_file.into(),
            gas_price: 0.025,
            gas_base: 400_000,
            gas_per_task: 250_000,
            confirm_timeout: Duration::from_secs(60),
            register: None,
        }
    }
}

/// The relay account's next sequence number, fetched from the chain when unknown.
#[derive(Debug, Default)]
struct Sequence {
    account_number: u64,
    next: Option<u64>,
}

/// A node's RPC: JSON-RPC calls, ABCI queries and contract queries. Needs no key.
#[derive(Debug, Clone)]
pub struct Node {
    url: String,
    http: reqwest::Client,
}

impl Node {
    pub fn new(url: &str) -> EscrowResult<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().map_err(unavailable)?;
        Ok(Self { url: url.trim_end_matches('/').to_owned(), http })
    }

    /// One JSON-RPC call; a JSON-RPC error is an error.
    pub async fn call(&self, method: &str, params: Value) -> EscrowResult<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = self.http.post(&self.url).json(&body).send().await.map_err(unavailable)?;
        let answer: Value = resp.json().await.map_err(unavailable)?;
        if let Some(error) = answer.get("error") {
            return Err(unavailable(format!("{method}: {error}")));
        }
        answer.get("result").cloned().ok_or_else(|| unavailable(format!("{method}: no result")))
    }

    pub async fn abci_query(&self, path: &str, data: Vec<u8>) -> EscrowResult<Vec<u8>> {
        let result =
            self.call("abci_query", json!({"path": path, "data": ::hex::encode(data), "prove": false})).await?;
        let response = &result["response"];
        if response["code"].as_u64().unwrap_or(0) != 0 {
            let log = response["log"].as_str().unwrap_or_default();
            // The wasm module reports contract errors as query failures.
            return Err(EscrowError::Refused(log.to_owned()));
        }
        B64.decode(response["value"].as_str().unwrap_or_default()).map_err(unavailable)
    }

    /// A smart query of `contract`.
    pub async fn smart<T: serde::de::DeserializeOwned>(&self, contract: &AccountId, msg: &QueryMsg) -> EscrowResult<T> {
        let request = QuerySmartContractStateRequest {
            address: contract.to_string(),
            query_data: serde_json::to_vec(msg).map_err(unavailable)?,
        };
        let bytes = self.abci_query("/cosmwasm.wasm.v1.Query/SmartContractState", request.encode_to_vec()).await?;
        let response = QuerySmartContractStateResponse::decode(bytes.as_slice()).map_err(unavailable)?;
        serde_json::from_slice(&response.data).map_err(unavailable)
    }

    /// The relay registry of the escrow `contract`: what workers and clients read to find
    /// relays without knowing one.
    pub async fn relays(&self, contract: &str) -> EscrowResult<Vec<starling_protocol::api::RegisteredRelay>> {
        let contract: AccountId = contract.parse().map_err(|e| unavailable(format!("contract address: {e}")))?;
        queries::relays(&Registry { node: self, contract }).await
    }
}

/// A keyless reader of one contract (the registry's pages).
struct Registry<'a> {
    node: &'a Node,
    contract: AccountId,
}

impl queries::SmartQuery for Registry<'_> {
    fn relay(&self) -> String {
        String::new()
    }

    async fn smart_query<T: serde::de::DeserializeOwned>(&self, msg: &QueryMsg) -> EscrowResult<T> {
        self.node.smart(&self.contract, msg).await
    }
}

pub struct Chain {
    cfg: ChainConfig,
    node: Node,
    key: SigningKey,
    address: AccountId,
    contract: AccountId,
    chain_id: cosmrs::tendermint::chain::Id,
    contract_config: Config,
    /// This relay's fee, from its registry entry.
    fee_bps: u16,
    /// One transaction in flight at a time: sequence numbers must not race.
    sequence: Mutex<Sequence>,
    /// Where the refund sweep goes on in each other relay's job list.
    refund_cursor: Mutex<std::collections::HashMap<String, u64>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("rpc", &self.cfg.rpc).field("contract", &self.contract).finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> EscrowError {
    EscrowError::Unavailable(e.to_string())
}

/// Reads a secp256k1 secret key written as hex (whitespace ignored).
pub fn read_key(path: &std::path::Path) -> EscrowResult<SigningKey> {
    let text = std::fs::read_to_string(path).map_err(|e| unavailable(format!("reading {}: {e}", path.display())))?;
    let bytes =
        ::hex::decode(text.trim()).map_err(|_| unavailable(format!("{} must hold 64 hex digits", path.display())))?;
    SigningKey::from_slice(&bytes).map_err(|e| unavailable(format!("{}: {e}", path.display())))
}

/// Builds and signs a transaction carrying one `MsgExecuteContract`. Pure: no network.
#[allow(clippy::too_many_arguments)]
pub fn signed_execute_tx(
    key: &SigningKey,
    sender: &AccountId,
    contract: &AccountId,
    msg: &ExecuteMsg,
    funds: Option<Coin>,
    fee: Fee,
    chain_id: &cosmrs::tendermint::chain::Id,
    account_number: u64,
    sequence: u64,
) -> EscrowResult<Vec<u8>> {
    let execute = cosmrs::cosmwasm::MsgExecuteContract {
        sender: sender.clone(),
        contract: contract.clone(),
        msg: serde_json::to_vec(msg).map_err(unavailable)?,
        funds: funds.into_iter().collect(),
    };
    let body = Body::new([execute.to_any().map_err(unavailable)?], "starling relay", 0u32);
    let auth = SignerInfo::single_direct(Some(key.public_key()), sequence).auth_info(fee);
    let doc = SignDoc::new(&body, &auth, chain_id, account_number).map_err(unavailable)?;
    doc.sign(key).and_then(|raw| raw.to_bytes()).map_err(unavailable)
}

impl Chain {
    /// Loads the relay's key and reads the contract's configuration from the chain, checking
    /// that this key's account is the contract's relay.
    pub async fn connect(cfg: ChainConfig) -> EscrowResult<Self> {
        let key = read_key(&cfg.key_file)?;
        let address = key.public_key().account_id(&cfg.prefix).map_err(unavailable)?;
        let contract: AccountId = cfg.contract.parse().map_err(|e| unavailable(format!("contract address: {e}")))?;
        let chain_id = cfg.chain_id.parse().map_err(|e| unavailable(format!("chain id: {e}")))?;
        let node = Node::new(&cfg.rpc)?;
        let mut chain = Self {
            cfg,
            node,
            key,
            address,
            contract,
            chain_id,
            contract_config: Config {
                denom: String::new(),
                relay: cosmwasm_std::Addr::unchecked(""),
                relay_fee_bps: 0,
                min_bond: Default::default(),
                unbonding_period: 0,
                max_job_duration: 0,
                slash_bps: 0,
                min_relay_bond: Default::default(),
            },
            fee_bps: 0,
            sequence: Mutex::new(Sequence::default()),
            refund_cursor: Mutex::default(),
        };
        chain.contract_config = chain.smart(&QueryMsg::Config {}).await?;
        let entry = chain.registered().await?;
        chain.fee_bps = entry.fee_bps;
        Ok(chain)
    }

    /// This relay's registry entry, registering or updating it first as configured. A relay
    /// that is not registered and active opens no jobs, so it does not start.
    async fn registered(&self) -> EscrowResult<starling_protocol::api::RegisteredRelay> {
        let me = self.address.to_string();
        let entry = queries::relay(self, &me).await?;
        match (&entry, &self.cfg.register) {
            (None, Some(r)) => {
                tracing::info!(endpoint = %r.endpoint, fee_bps = r.fee_bps, bond = r.bond, "registering this relay in the escrow's registry");
                let msg = ExecuteMsg::RegisterRelay { endpoint: r.endpoint.clone(), fee_bps: r.fee_bps };
                self.execute(&msg, r.bond, self.cfg.gas_base).await?;
            }
            (Some(e), Some(r)) if e.leaving => {
                // Re-registering bonds the unbonding bond again, at a fee no higher than before;
                // what it lacks of the minimum (all of it, once released) is sent.
                let unbonding: u128 = e.unbonding.parse().unwrap_or(0);
                let shortfall = self.contract_config.min_relay_bond.u128().saturating_sub(unbonding);
                let msg = ExecuteMsg::RegisterRelay { endpoint: r.endpoint.clone(), fee_bps: r.fee_bps.min(e.fee_bps) };
                self.execute(&msg, shortfall.max(if unbonding == 0 { r.bond } else { 0 }), self.cfg.gas_base).await?;
            }
            (Some(e), Some(r)) if e.endpoint != r.endpoint || r.fee_bps < e.fee_bps => {
                let fee_bps = (r.fee_bps < e.fee_bps).then_some(r.fee_bps);
                let msg = ExecuteMsg::UpdateRelay { endpoint: Some(r.endpoint.clone()), fee_bps };
                self.execute(&msg, 0, self.cfg.gas_base).await?;
            }
            (None, None) => {
                return Err(unavailable(format!(
                    "{me} is not a registered relay of contract {}: register it (--chain-endpoint and --chain-bond)",
                    self.contract
                )));
            }
            _ => {}
        }
        let entry = queries::relay(self, &me).await?.ok_or_else(|| unavailable("the registration did not take"))?;
        if !entry.active {
            return Err(unavailable(format!(
                "{me} is registered but not active (bond {}, leaving: {})",
                entry.bond, entry.leaving
            )));
        }
        Ok(entry)
    }

    async fn rpc(&self, method: &str, params: Value) -> EscrowResult<Value> {
        self.node.call(method, params).await
    }

    async fn smart<T: serde::de::DeserializeOwned>(&self, msg: &QueryMsg) -> EscrowResult<T> {
        self.node.smart(&self.contract, msg).await
    }

    async fn account(&self) -> EscrowResult<(u64, u64)> {
        let request = QueryAccountRequest { address: self.address.to_string() };
        let bytes = self.node.abci_query("/cosmos.auth.v1beta1.Query/Account", request.encode_to_vec()).await?;
        let response = QueryAccountResponse::decode(bytes.as_slice()).map_err(unavailable)?;
        let any = response.account.ok_or_else(|| unavailable(format!("account {} does not exist", self.address)))?;
        let base = BaseAccount::decode(any.value.as_slice()).map_err(unavailable)?;
        Ok((base.account_number, base.sequence))
    }

    fn coin(&self, amount: u128) -> EscrowResult<Coin> {
        Ok(Coin { denom: self.contract_config.denom.parse().map_err(unavailable)?, amount })
    }

    /// Signs, broadcasts and waits for one contract call; returns the transaction's events.
    async fn execute(&self, msg: &ExecuteMsg, funds: u128, gas: u64) -> EscrowResult<Value> {
        let mut sequence = self.sequence.lock().await;
        for attempt in 0..2 {
            if sequence.next.is_none() {
                let (number, next) = self.account().await?;
                *sequence = Sequence { account_number: number, next: Some(next) };
            }
            let fee_amount = (gas as f64 * self.cfg.gas_price).ceil() as u128;
            let fee = Fee::from_amount_and_gas(self.coin(fee_amount)?, gas);
            let funds = if funds == 0 { None } else { Some(self.coin(funds)?) };
            let tx = signed_execute_tx(
                &self.key,
                &self.address,
                &self.contract,
                msg,
                funds,
                fee,
                &self.chain_id,
                sequence.account_number,
                sequence.next.unwrap_or(0),
            )?;
            let checked = self.rpc("broadcast_tx_sync", json!({"tx": B64.encode(&tx)})).await?;
            let code = checked["code"].as_u64().unwrap_or(0);
            let log = checked["log"].as_str().unwrap_or_default().to_owned();
            // 32: account sequence mismatch (another client used the key): refetch, retry once.
            if code == 32 && attempt == 0 {
                sequence.next = None;
                continue;
            }
            if code != 0 {
                sequence.next = None;
                return Err(classify(code, log));
            }
            sequence.next = sequence.next.map(|n| n + 1);
            let hash = checked["hash"].as_str().unwrap_or_default().to_owned();
            return self.confirm(&hash).await;
        }
        Err(unavailable("account sequence kept changing"))
    }

    /// Waits until the transaction is in a block; its contract errors become refusals.
    async fn confirm(&self, hash: &str) -> EscrowResult<Value> {
        let deadline = tokio::time::Instant::now() + self.cfg.confirm_timeout;
        loop {
            let hash_b64 = B64.encode(::hex::decode(hash).map_err(unavailable)?);
            if let Ok(found) = self.rpc("tx", json!({"hash": hash_b64, "prove": false})).await {
                let result = &found["tx_result"];
                let code = result["code"].as_u64().unwrap_or(0);
                if code != 0 {
                    return Err(classify(code, result["log"].as_str().unwrap_or_default().to_owned()));
                }
                return Ok(result["events"].clone());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(unavailable(format!(
                    "transaction {hash} not in a block after {:?}",
                    self.cfg.confirm_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Maps a failed transaction's code to an error: the wasm module's execution failures and
/// insufficient funds are the caller's; the rest (fees, gas, node trouble) may pass on retry.
fn classify(code: u64, log: String) -> EscrowError {
    if log.contains("insufficient funds") {
        EscrowError::InsufficientFunds(log)
    } else if log.contains("execute wasm contract failed") || log.contains("wasm") && code == 5 {
        super::refused(log)
    } else {
        EscrowError::Unavailable(format!("transaction failed with code {code}: {log}"))
    }
}

/// The refund a `Close` credited to the client's account: the contract's `amount` attribute.
fn refunded(events: &Value) -> u128 {
    let mut total = 0;
    for event in events.as_array().into_iter().flatten().filter(|e| e["type"] == "wasm") {
        let attrs = event["attributes"].as_array().cloned().unwrap_or_default();
        let get =
            |key: &str| attrs.iter().find(|a| a["key"] == key).and_then(|a| a["value"].as_str()).map(str::to_owned);
        if matches!(get("action").as_deref(), Some("close"))
            && let Some(amount) = get("amount")
        {
            total += amount.parse::<u128>().unwrap_or(0);
        }
    }
    total
}

#[async_trait]
impl EscrowBridge for Chain {
    fn info(&self) -> EscrowInfo {
        EscrowInfo {
            backend: "chain".into(),
            chain_id: self.cfg.chain_id.clone(),
            contract: self.contract.to_string(),
            denom: self.contract_config.denom.clone(),
            relay_address: self.address.to_string(),
            relay_fee_bps: self.fee_bps,
            min_bond: self.contract_config.min_bond.to_string(),
        }
    }

    async fn max_job_id(&self) -> EscrowResult<u64> {
        queries::max_job_id(self).await
    }

    async fn open_job(&self, job: &OpenJob) -> EscrowResult<()> {
        // Every transaction costs the relay gas, a refused one too: what queries and a local
        // signature check can refuse is refused here, for free. That includes this relay no
        // longer being active in the registry (it left, or its key was used elsewhere).
        match queries::relay(self, self.address.as_ref()).await? {
            Some(entry) if entry.active => {}
            _ => return Err(EscrowError::Refused(format!("relay {} is not an active registered relay", self.address))),
        }
        let deployment = self.deployment();
        let message = deposit_bytes(deployment.as_deployment(), self.address.as_ref(), &job.client, &job.terms);
        verify(&job.client, &message, &job.signature)
            .map_err(|e| EscrowError::Refused(format!("deposit authorization: {e}")))?;
        let t = &job.terms;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now > t.not_after {
            return Err(EscrowError::Refused(format!("the deposit authorization expired at {}", t.not_after)));
        }
        if t.deadline_secs > self.contract_config.max_job_duration {
            return Err(EscrowError::Refused(format!(
                "the job's escrow deadline ({} s) is beyond the contract's max_job_duration ({} s)",
                t.deadline_secs, self.contract_config.max_job_duration
            )));
        }
        let opened: SpecJobResponse = self
            .smart(&QueryMsg::JobOfSpec {
                client: super::hex(&job.client.0),
                spec_digest: super::hex(&t.spec_digest.0),
            })
            .await?;
        if let Some(opened) = opened.job {
            return Err(EscrowError::Refused(format!("this signed deposit already opened job {}", opened.job_id)));
        }
        let deposit: DepositResponse = self
            .smart(&QueryMsg::Deposit {
                tasks: t.tasks,
                replicas: t.replicas,
                price_per_replica: cosmwasm_std::Uint128::new(t.price_per_replica),
                // This relay's own fee: each registered relay charges its own.
                relay: Some(self.address.to_string()),
            })
            .await?;
        let balance = queries::account(self, &job.client).await?.balance;
        if balance < deposit.deposit {
            return Err(EscrowError::InsufficientFunds(format!(
                "account {} has {balance}, needs {}",
                job.client, deposit.deposit
            )));
        }
        self.execute(&create_job_msg(job), 0, self.cfg.gas_base).await.map(drop)
    }

    async fn open_jobs(&self) -> EscrowResult<Vec<JobId>> {
        queries::open_jobs(self).await
    }

    async fn settled_tasks(&self, job: JobId) -> EscrowResult<HashSet<u32>> {
        queries::settled_tasks(self, job).await
    }

    async fn job(&self, job: JobId) -> EscrowResult<Option<JobEscrow>> {
        queries::job(self, job, &self.contract_config.denom).await
    }

    async fn worker(&self, worker: &PublicKey) -> EscrowResult<Option<WorkerStanding>> {
        queries::worker(self, worker).await.map(|w| w.and_then(standing))
    }

    async fn nonce(&self, account: &PublicKey) -> EscrowResult<u64> {
        Ok(queries::account(self, account).await?.nonce)
    }

    async fn register_worker(&self, registration: &Registration) -> EscrowResult<()> {
        // As for jobs: a bond the owner's account cannot pay is refused before it costs gas.
        let account = queries::account(self, &registration.owner).await?;
        let bond = u128::from(registration.bond);
        if account.nonce != registration.nonce
            || account.balance.u128() < bond
            || bond < self.contract_config.min_bond.u128()
        {
            return Err(EscrowError::Refused(format!(
                "account {} has {} at nonce {}; the registration bonds {} at nonce {}",
                registration.owner, account.balance, account.nonce, registration.bond, registration.nonce
            )));
        }
        self.execute(&bond_msg(registration), 0, self.cfg.gas_base).await.map(drop)
    }

    async fn authorized(
        &self,
        account: &PublicKey,
        nonce: u64,
        action: &AccountAction,
        signature: &Signature,
    ) -> EscrowResult<()> {
        // The relay pays the gas: a stale nonce is refused before (the API checked the signature).
        let current = queries::account(self, account).await?.nonce;
        if current != nonce {
            return Err(EscrowError::Refused(format!("the account's nonce is {current}, not {nonce}")));
        }
        self.execute(&authorized_msg(account, nonce, action, signature)?, 0, self.cfg.gas_base).await.map(drop)
    }

    async fn settle(&self, job: JobId, tasks: &[SettleTask]) -> EscrowResult<()> {
        let gas = self.cfg.gas_base + self.cfg.gas_per_task * tasks.len() as u64;
        self.execute(&settle_msg(job, tasks), 0, gas).await.map(drop)
    }

    async fn slash(&self, evidence: &Evidence) -> EscrowResult<()> {
        self.execute(&slash_msg(self.address.as_ref(), evidence), 0, self.cfg.gas_base).await.map(drop)
    }

    async fn close(&self, job: JobId) -> EscrowResult<u128> {
        let events = self.execute(&ExecuteMsg::Close { job_id: job.0 }, 0, self.cfg.gas_base).await?;
        Ok(refunded(&events))
    }

    async fn worker_account(&self, worker: &PublicKey) -> EscrowResult<Option<EscrowAccount>> {
        queries::worker_account(self, worker, &self.contract_config.denom).await
    }

    async fn account(&self, account: &PublicKey) -> EscrowResult<EscrowAccount> {
        let a = queries::account(self, account).await?;
        Ok(super::account_view(account, &a, &self.contract_config.denom))
    }

    async fn relays(&self) -> EscrowResult<Vec<starling_protocol::api::RegisteredRelay>> {
        queries::relays(self).await
    }

    async fn refund_expired_elsewhere(&self, max: usize) -> EscrowResult<usize> {
        let me = self.address.to_string();
        let mut refunded = 0;
        for relay in queries::relays(self).await? {
            if relay.address == me || refunded >= max {
                continue;
            }
            // A bounded scan per relay per sweep, resumed where the last one stopped.
            let start = self.refund_cursor.lock().await.get(&relay.address).copied();
            let (jobs, next) = queries::jobs_of(self, &relay.address, start, 2).await?;
            match next {
                Some(at) => self.refund_cursor.lock().await.insert(relay.address.clone(), at),
                None => self.refund_cursor.lock().await.remove(&relay.address),
            };
            for job in jobs.iter().filter(|j| matches!(j.status, starling_escrow::state::JobStatus::Expired)) {
                if refunded >= max {
                    break;
                }
                let msg = ExecuteMsg::Refund { relay: relay.address.clone(), job_id: job.job_id };
                match self.execute(&msg, 0, self.cfg.gas_base).await {
                    Ok(_) => refunded += 1,
                    Err(e) => tracing::warn!(relay = %relay.address, job = job.job_id, error = %e, "refund refused"),
                }
            }
        }
        Ok(refunded)
    }
}

impl queries::SmartQuery for Chain {
    fn relay(&self) -> String {
        self.address.to_string()
    }

    async fn smart_query<T: serde::de::DeserializeOwned>(&self, msg: &QueryMsg) -> EscrowResult<T> {
        self.smart(msg).await
    }
}

#[cfg(test)]
#[path = "chain_devchain_tests.rs"]
mod devchain_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use cosmrs::tx::Raw;

    #[test]
    fn execute_transactions_are_signed_for_the_chain_and_carry_the_contract_message() {
        let key = SigningKey::from_slice(&[7; 32]).unwrap();
        let sender = key.public_key().account_id("wasm").unwrap();
        let contract: AccountId = "wasm14hj2tavq8fpesdwxxcu44rty3hh90vhujrvcmstl4zr3txmfvw9s0phg4d".parse().unwrap();
        let chain_id: cosmrs::tendermint::chain::Id = "starling-test-1".parse().unwrap();
        let msg = ExecuteMsg::Close { job_id: 9 };
        let fee = Fee::from_amount_and_gas(Coin { denom: "ustar".parse().unwrap(), amount: 10_000 }, 400_000u64);
        let funds = Some(Coin { denom: "ustar".parse().unwrap(), amount: 123 });
        let bytes = signed_execute_tx(&key, &sender, &contract, &msg, funds, fee.clone(), &chain_id, 5, 11).unwrap();

        let tx = cosmrs::Tx::from_bytes(&bytes).unwrap();
        assert_eq!(tx.body.messages.len(), 1);
        let execute = cosmrs::cosmwasm::MsgExecuteContract::from_any(&tx.body.messages[0]).unwrap();
        assert_eq!(execute.sender, sender);
        assert_eq!(execute.contract, contract);
        assert_eq!(serde_json::from_slice::<Value>(&execute.msg).unwrap(), json!({"close": {"job_id": 9}}));
        assert_eq!(execute.funds[0].amount, 123);
        assert_eq!(tx.auth_info.fee.gas_limit, 400_000);
        assert_eq!(tx.auth_info.signer_infos[0].sequence, 11);

        // The signature is over exactly this chain, account number and sequence.
        let raw = Raw::from_bytes(&bytes).unwrap();
        let proto: cosmrs::proto::cosmos::tx::v1beta1::TxRaw = raw.into();
        let doc = |account_number, chain: &str| cosmrs::proto::cosmos::tx::v1beta1::SignDoc {
            body_bytes: proto.body_bytes.clone(),
            auth_info_bytes: proto.auth_info_bytes.clone(),
            chain_id: chain.into(),
            account_number,
        };
        let signature = cosmrs::crypto::secp256k1::Signature::try_from(proto.signatures[0].as_slice()).unwrap();
        let verifying = cosmrs::crypto::secp256k1::VerifyingKey::from_sec1_bytes(&key.public_key().to_bytes()).unwrap();
        let verify = |d: cosmrs::proto::cosmos::tx::v1beta1::SignDoc| {
            use k256::ecdsa::signature::Verifier;
            verifying.verify(&d.encode_to_vec(), &signature).is_ok()
        };
        assert!(verify(doc(5, "starling-test-1")));
        assert!(!verify(doc(6, "starling-test-1")), "replayable under another account number");
        assert!(!verify(doc(5, "other-chain")), "replayable on another chain");
    }

    #[test]
    fn failed_transactions_are_classified() {
        let cases = [
            (
                5,
                "failed to execute message; message index: 0: job 3 was already refunded: execute wasm contract failed",
                "refused",
            ),
            (5, "0ustar is smaller than 10ustar: insufficient funds", "funds"),
            (13, "insufficient fees; got: 1ustar required: 10ustar", "unavailable"),
            (11, "out of gas in location: wasm contract", "unavailable"),
        ];
        for (code, log, want) in cases {
            let got = match classify(code, log.into()) {
                EscrowError::Refused(_) => "refused",
                EscrowError::InsufficientFunds(_) => "funds",
                EscrowError::Unavailable(_) => "unavailable",
            };
            assert_eq!(got, want, "{log}");
        }
    }

    #[test]
    fn refunds_are_read_from_the_close_event() {
        let events = json!([
            {"type": "wasm", "attributes": [{"key": "action", "value": "close"}, {"key": "amount", "value": "250"}]},
            {"type": "wasm", "attributes": [{"key": "action", "value": "settle"}, {"key": "amount", "value": "9"}]},
            {"type": "transfer", "attributes": [{"key": "recipient", "value": "wasm1relay"}, {"key": "amount", "value": "1ustar"}]}
        ]);
        assert_eq!(refunded(&events), 250);
        assert_eq!(refunded(&json!([])), 0);
    }
}
