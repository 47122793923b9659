//! The default escrow: the contract's deployable wasm (`scripts/build-contract.sh`) running in
//! cosmwasm-vm on a one-denom local ledger, so what runs on one machine is the code a chain
//! would run. The ledger lives in `ledger.sqlite` next to the relay's database: every accepted
//! transaction writes the contract storage keys and balances it changed, in one SQL
//! transaction, before the call returns.
//!
//! Money enters only through the contract's `Deposit`, sent by the ledger's operator account
//! after minting ([`Embedded::deposit`]): an operator funding accounts on a server, or the demo
//! faucet ([`EmbeddedConfig::faucet`], off unless asked for), which deposits once into each
//! new account that opens a job or registers a worker. Every mint is recorded, so the ledger's
//! supply can be checked against it. The relay's own bank account receives fees.

use super::{
    EscrowBridge, EscrowError, EscrowResult, Evidence, OpenJob, Registration, SettleTask, WorkerStanding, account_view,
    authorized_msg, bond_msg, create_job_msg, hex, queries, settle_msg, slash_msg, standing,
};
use async_trait::async_trait;
use cosmwasm_std::{Addr, Timestamp, Uint128};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};
use starling_escrow::msg::{ExecuteMsg, InstantiateMsg, QueryMsg};
use starling_escrow_vm::{Ledger, LedgerChanges, LedgerError, LedgerState};
use starling_protocol::api::{EscrowAccount, EscrowInfo, JobEscrow};
use starling_protocol::sign::AccountAction;
use starling_protocol::{JobId, PublicKey, Signature};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Settings of the embedded ledger and the contract it instantiates on first start.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The contract artifact (`target/contracts/starling_escrow.wasm`).
    pub wasm: PathBuf,
    pub denom: String,
    /// Deposited once into each new account that opens a job or registers a worker (0: no
    /// faucet, the default; `starling demo` turns it on).
    pub faucet: u128,
    pub relay_fee_bps: u16,
    pub min_bond: u128,
    pub unbonding_period: u64,
    pub max_job_duration: u64,
    pub slash_bps: u16,
    /// Where the ledger is kept: `None` is `ledger.sqlite` in the relay's data folder; a
    /// PostgreSQL URL keeps it in the database a cluster's relays share (set by the relay).
    pub database: Option<String>,
    /// The cluster epoch the relay running this ledger leads in: every save checks it is still
    /// current, so a relay that lost the lead changes no balance (see `crate::cluster`).
    pub fence: Option<i64>,
}

impl EmbeddedConfig {
    pub fn new(wasm: impl Into<PathBuf>) -> Self {
        Self {
            wasm: wasm.into(),
            denom: "ustar".into(),
            faucet: 0,
            relay_fee_bps: 500,
            min_bond: 10_000_000,
            unbonding_period: 21 * 24 * 3600,
            max_job_duration: starling_protocol::limits::MAX_DEADLINE_SECS + 3600,
            slash_bps: 5_000,
            database: None,
            fence: None,
        }
    }
}

struct Inner {
    ledger: Ledger,
    /// Set when a write to `ledger.sqlite` failed: memory may be ahead of disk, so nothing more
    /// is accepted until a restart reloads the last saved state.
    poisoned: bool,
}

pub struct Embedded {
    inner: Mutex<Inner>,
    db: AnyPool,
    config: EmbeddedConfig,
    contract: Addr,
    relay: Addr,
    /// The operator's bank account: newly minted money passes through it into `Deposit`.
    operator: Addr,
    chain_id: String,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").field("contract", &self.contract).field("denom", &self.config.denom).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> EscrowError {
    EscrowError::Unavailable(e.to_string())
}

fn ledger_error(e: LedgerError) -> EscrowError {
    match e {
        LedgerError::Refused(text) => super::refused(text),
        LedgerError::InsufficientFunds { .. } => EscrowError::InsufficientFunds(e.to_string()),
        other => unavailable(other),
    }
}

/// Runs contract code (CPU-bound: wasm with gas metering, signature checks) without holding up
/// the other tasks of the relay's runtime: on a multi-threaded runtime the thread hands its
/// other tasks over first. The ledger's lock keeps this to one contract call at a time, so
/// hundreds of registrations in flight take at most one core, never the whole runtime.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Embedded {
    /// Opens (or creates) `<data_dir>/ledger.sqlite`, checks and compiles the contract, and
    /// restores the ledger, or instantiates the contract on a fresh one.
    pub async fn open(data_dir: &Path, config: EmbeddedConfig) -> Result<Self, EscrowError> {
        let wasm = std::fs::read(&config.wasm).map_err(|e| {
            unavailable(format!(
                "cannot read the escrow contract {} ({e}); build it with scripts/build-contract.sh",
                config.wasm.display()
            ))
        })?;
        let db = match &config.database {
            Some(url) => {
                sqlx::any::install_default_drivers();
                let db = AnyPoolOptions::new().max_connections(2).connect(url).await.map_err(unavailable)?;
                sqlx::migrate!("./migrations-ledger/postgres").run(&db).await.map_err(unavailable)?;
                db
            }
            None => {
                sqlx::any::install_default_drivers();
                let path = data_dir.join("ledger.sqlite");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let db = AnyPoolOptions::new()
                    .max_connections(2)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await
                    .map_err(unavailable)?;
                sqlx::migrate!("./migrations-ledger/sqlite").run(&db).await.map_err(unavailable)?;
                db
            }
        };
        let state = load(&db).await.map_err(unavailable)?;
        let fresh = state.is_none();
        let mut ledger = match state {
            Some(state) => Ledger::restore(&wasm, &config.denom, state).map_err(unavailable)?,
            None => Ledger::new(&wasm, &config.denom).map_err(unavailable)?,
        };
        ledger.set_block_seconds(0);
        // Each ledger is its own deployment: a chain id drawn when it is created, so a signature
        // made for one relay's ledger (every ledger's contract has the same address) is worth
        // nothing on another's.
        let chain_id = match meta(&db, "chain_id").await.map_err(unavailable)? {
            Some(id) => id,
            None => {
                let id = format!("starling-local-{}", hex::encode(rand::random::<[u8; 8]>()));
                set_meta(&db, "chain_id", &id).await.map_err(unavailable)?;
                id
            }
        };
        ledger.set_chain_id(&chain_id);
        let relay = ledger.addr_make("relay");
        let operator = ledger.addr_make("operator");
        let contract = ledger.contract().clone();
        let checksum = ledger.checksum().to_hex();
        if let Some(saved) = meta(&db, "checksum").await.map_err(unavailable)?
            && saved != checksum
        {
            tracing::warn!(%saved, now = %checksum, "the escrow artifact changed since this ledger was saved; running the new code over the saved state");
        }
        let me = Self {
            inner: Mutex::new(Inner { ledger, poisoned: false }),
            db,
            config,
            contract,
            relay,
            operator,
            chain_id,
        };
        if fresh {
            let msg = InstantiateMsg {
                denom: me.config.denom.clone(),
                relay: me.relay.to_string(),
                relay_fee_bps: me.config.relay_fee_bps,
                min_bond: Uint128::new(me.config.min_bond),
                unbonding_period: me.config.unbonding_period,
                max_job_duration: me.config.max_job_duration,
                slash_bps: me.config.slash_bps,
                // Another relay on this ledger bonds what a worker does.
                min_relay_bond: Uint128::new(me.config.min_bond),
                relay_endpoint: None,
            };
            let relay = me.relay.clone();
            me.transact(|l| l.instantiate(&relay, &msg, 0).map(drop)).await?;
            tracing::info!(contract = %me.contract, "escrow contract instantiated on the embedded ledger");
        }
        set_meta(&me.db, "checksum", &checksum).await.map_err(unavailable)?;
        Ok(me)
    }

    /// Runs `f` on the ledger at the current wall-clock time and saves what it changed, with
    /// `minted` (an account key and an amount) recorded as minted for it. A refusal changes
    /// nothing.
    async fn transact<T>(&self, f: impl FnOnce(&mut Ledger) -> Result<T, LedgerError>) -> EscrowResult<T> {
        self.transact_minting(None, f).await
    }

    async fn transact_minting<T>(
        &self,
        minted: Option<(String, u128)>,
        f: impl FnOnce(&mut Ledger) -> Result<T, LedgerError>,
    ) -> EscrowResult<T> {
        let mut inner = self.inner.lock().await;
        if inner.poisoned {
            return Err(unavailable("the embedded ledger failed to save; restart the relay"));
        }
        let now = Timestamp::from_seconds(now_secs());
        if now > inner.ledger.block().time {
            inner.ledger.set_time(now);
        }
        let result = off_the_runtime(|| f(&mut inner.ledger));
        let changes = inner.ledger.take_changes();
        if let Err(e) = save(&self.db, self.config.fence, &changes, minted.as_ref().filter(|_| result.is_ok())).await {
            inner.poisoned = true;
            tracing::error!(error = %e, "saving the embedded ledger failed; refusing escrow calls until restart");
            return Err(unavailable(e));
        }
        result.map_err(ledger_error)
    }

    /// Mints `amount` and deposits it into `account` through the contract's `Deposit`, sent by
    /// the operator's bank account: how an operator funds accounts on a server.
    async fn deposit(&self, account: &PublicKey, amount: u128) -> EscrowResult<()> {
        if amount == 0 {
            return Err(EscrowError::Refused("amount: zero".into()));
        }
        let (operator, msg) = (self.operator.clone(), ExecuteMsg::Deposit { account: hex(&account.0) });
        self.transact_minting(Some((account.to_hex(), amount)), |l| {
            l.mint(&operator, amount);
            match l.execute(&operator, &msg, amount) {
                Ok(_) => Ok(()),
                Err(e) => {
                    // The refused deposit rolled back to just after the mint: take it back.
                    let _ = l.burn(&operator, amount);
                    Err(e)
                }
            }
        })
        .await
    }

    /// The demo faucet: deposits [`EmbeddedConfig::faucet`] into an account it never funded.
    async fn faucet(&self, account: &PublicKey) -> EscrowResult<()> {
        if self.config.faucet == 0 {
            return Ok(());
        }
        let funded = sqlx::query("SELECT 1 FROM ledger_faucet WHERE address = $1")
            .bind(account.to_hex())
            .fetch_optional(&self.db)
            .await
            .map_err(unavailable)?;
        if funded.is_some() {
            return Ok(());
        }
        self.deposit(account, self.config.faucet).await
    }

    async fn query<T: serde::de::DeserializeOwned>(&self, msg: &QueryMsg) -> EscrowResult<T> {
        let inner = self.inner.lock().await;
        off_the_runtime(|| inner.ledger.query(msg)).map(|(v, _)| v).map_err(ledger_error)
    }

    /// Everything ever minted (operator deposits and the faucet): with no other source of
    /// money, the ledger's total supply plus what slashing burned must equal it.
    pub async fn minted(&self) -> EscrowResult<u128> {
        let rows = sqlx::query("SELECT amount FROM ledger_faucet").fetch_all(&self.db).await.map_err(unavailable)?;
        Ok(rows.iter().map(|r| r.get::<&str, _>(0).parse::<u128>().unwrap_or(0)).sum())
    }

    pub async fn total_supply(&self) -> u128 {
        self.inner.lock().await.ledger.total_supply()
    }

    pub async fn balance(&self, address: &str) -> u128 {
        self.inner.lock().await.ledger.balance(&Addr::unchecked(address))
    }
}

#[async_trait]
impl EscrowBridge for Embedded {
    fn info(&self) -> EscrowInfo {
        EscrowInfo {
            backend: "embedded".into(),
            chain_id: self.chain_id.clone(),
            contract: self.contract.to_string(),
            denom: self.config.denom.clone(),
            relay_address: self.relay.to_string(),
            relay_fee_bps: self.config.relay_fee_bps,
            min_bond: self.config.min_bond.to_string(),
        }
    }

    async fn max_job_id(&self) -> EscrowResult<u64> {
        queries::max_job_id(self).await
    }

    async fn open_job(&self, job: &OpenJob) -> EscrowResult<()> {
        self.faucet(&job.client).await?;
        let (relay, msg) = (self.relay.clone(), create_job_msg(job));
        self.transact(|l| l.execute(&relay, &msg, 0).map(drop)).await
    }

    async fn open_jobs(&self) -> EscrowResult<Vec<JobId>> {
        queries::open_jobs(self).await
    }

    async fn settled_tasks(&self, job: JobId) -> EscrowResult<HashSet<u32>> {
        queries::settled_tasks(self, job).await
    }

    async fn job(&self, job: JobId) -> EscrowResult<Option<JobEscrow>> {
        queries::job(self, job, &self.config.denom).await
    }

    async fn worker(&self, worker: &PublicKey) -> EscrowResult<Option<WorkerStanding>> {
        queries::worker(self, worker).await.map(|w| w.and_then(standing))
    }

    async fn nonce(&self, account: &PublicKey) -> EscrowResult<u64> {
        Ok(queries::account(self, account).await?.nonce)
    }

    async fn register_worker(&self, registration: &Registration) -> EscrowResult<()> {
        self.faucet(&registration.owner).await?;
        let (relay, msg) = (self.relay.clone(), bond_msg(registration));
        self.transact(|l| l.execute(&relay, &msg, 0).map(drop)).await
    }

    async fn settle(&self, job: JobId, tasks: &[SettleTask]) -> EscrowResult<()> {
        let msg = settle_msg(job, tasks);
        let relay = self.relay.clone();
        self.transact(|l| l.execute(&relay, &msg, 0).map(drop)).await
    }

    async fn slash(&self, e: &Evidence) -> EscrowResult<()> {
        let msg = slash_msg(self.relay.as_str(), e);
        let relay = self.relay.clone();
        self.transact(|l| l.execute(&relay, &msg, 0).map(drop)).await
    }

    async fn close(&self, job: JobId) -> EscrowResult<u128> {
        let relay = self.relay.clone();
        let msg = ExecuteMsg::Close { job_id: job.0 };
        let executed = self.transact(|l| l.execute(&relay, &msg, 0)).await?;
        Ok(executed.attribute("amount").and_then(|a| a.parse().ok()).unwrap_or(0))
    }

    async fn worker_account(&self, worker: &PublicKey) -> EscrowResult<Option<EscrowAccount>> {
        queries::worker_account(self, worker, &self.config.denom).await
    }

    async fn account(&self, account: &PublicKey) -> EscrowResult<EscrowAccount> {
        let a = queries::account(self, account).await?;
        Ok(account_view(account, &a, &self.config.denom))
    }

    async fn relays(&self) -> EscrowResult<Vec<starling_protocol::api::RegisteredRelay>> {
        queries::relays(self).await
    }

    async fn authorized(
        &self,
        account: &PublicKey,
        nonce: u64,
        action: &AccountAction,
        signature: &Signature,
    ) -> EscrowResult<()> {
        // Sent by the operator's account: on a chain anyone may send it, the signature is what counts.
        let (operator, msg) = (self.operator.clone(), authorized_msg(account, nonce, action, signature)?);
        self.transact(|l| l.execute(&operator, &msg, 0).map(drop)).await
    }

    async fn mint_deposit(&self, account: &PublicKey, amount: u128) -> EscrowResult<()> {
        self.deposit(account, amount).await
    }
}

async fn meta(db: &AnyPool, name: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT value FROM ledger_meta WHERE name = $1").bind(name).fetch_optional(db).await
}

async fn set_meta(db: &AnyPool, name: &str, value: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO ledger_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(db)
    .await
    .map(drop)
}

/// The saved ledger, or `None` if none was saved yet.
async fn load(db: &AnyPool) -> sqlx::Result<Option<LedgerState>> {
    let Some(height) = meta(db, "height").await? else {
        return Ok(None);
    };
    let time = meta(db, "time_nanos").await?.unwrap_or_default();
    let instantiated = meta(db, "instantiated").await?.is_some_and(|v| v == "1");
    let storage = sqlx::query("SELECT key, value FROM ledger_kv")
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| (r.get::<Vec<u8>, _>(0), r.get::<Vec<u8>, _>(1)))
        .collect();
    let balances = sqlx::query("SELECT address, balance FROM ledger_accounts")
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| (Addr::unchecked(r.get::<String, _>(0)), r.get::<&str, _>(1).parse::<u128>().unwrap_or(0)))
        .collect();
    Ok(Some(LedgerState {
        storage,
        balances,
        height: height.parse().unwrap_or(1),
        time_nanos: time.parse().unwrap_or(0),
        instantiated,
    }))
}

/// Writes one transaction's changes (and what it minted, by account) atomically.
async fn save(
    db: &AnyPool,
    fence: Option<i64>,
    changes: &LedgerChanges,
    minted: Option<&(String, u128)>,
) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    if let Some(epoch) = fence {
        // The row stays locked to the commit: no new leader takes over in between.
        let done = sqlx::query("UPDATE public.relay_cluster SET epoch = epoch WHERE id = 1 AND epoch = $1")
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(sqlx::Error::Protocol(format!(
                "another relay leads the cluster now (this one led epoch {epoch})"
            )));
        }
    }
    for (key, value) in &changes.storage {
        match value {
            Some(value) => {
                sqlx::query("INSERT INTO ledger_kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM ledger_kv WHERE key = $1").bind(key).execute(&mut *tx).await?;
            }
        }
    }
    for (address, balance) in &changes.balances {
        sqlx::query("INSERT INTO ledger_accounts (address, balance) VALUES ($1, $2) ON CONFLICT (address) DO UPDATE SET balance = excluded.balance")
            .bind(address.as_str())
            .bind(balance.to_string())
            .execute(&mut *tx)
            .await?;
    }
    if let Some((to, amount)) = minted {
        let before: Option<String> = sqlx::query_scalar("SELECT amount FROM ledger_faucet WHERE address = $1")
            .bind(to.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let total = before.and_then(|b| b.parse::<u128>().ok()).unwrap_or(0) + amount;
        sqlx::query("INSERT INTO ledger_faucet (address, amount) VALUES ($1, $2) ON CONFLICT (address) DO UPDATE SET amount = excluded.amount")
            .bind(to.as_str())
            .bind(total.to_string())
            .execute(&mut *tx)
            .await?;
    }
    for (name, value) in [
        ("height", changes.height.to_string()),
        ("time_nanos", changes.time_nanos.to_string()),
        ("instantiated", if changes.instantiated { "1" } else { "0" }.to_string()),
    ] {
        sqlx::query("INSERT INTO ledger_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

impl queries::SmartQuery for Embedded {
    fn relay(&self) -> String {
        self.relay.to_string()
    }

    async fn smart_query<T: serde::de::DeserializeOwned>(&self, msg: &QueryMsg) -> EscrowResult<T> {
        self.query(msg).await
    }
}
