//! A local ledger that runs one compiled CosmWasm contract in `cosmwasm-vm`, the VM chains use,
//! with a one-denom bank, a block clock, and a gas report for every call.
//!
//! It exists so the code that runs on one machine is the code that would be deployed: the
//! escrow's wasm artifact (built by `scripts/build-contract.sh`) goes through the same static
//! checks as `cosmwasm-check` ([`Ledger::new`] calls `Cache::store_code` with checks on), then
//! every message runs in a fresh instance as a chain would run it, atomically: if the contract
//! refuses, or a bank transfer it asks for cannot be paid, storage and balances roll back.
//!
//! - [`Ledger`]: accounts, time, and `instantiate` / `execute` / `query`.
//! - [`artifact`]: finds the escrow's wasm and refuses a missing or stale one.
//! - [`LedgerStorage`]: the contract's key-value store, counting reads and writes so callers can
//!   convert them to their chain's storage gas (the VM's own figures cover only execution).
//! - [`Executed`] / [`GasUsed`]: what a call did and cost.
//!
//! Limits, on purpose: one contract per ledger, bank sends and burns in the ledger's denom as the
//! only messages a contract may emit (no submessages), and the `cosmwasm` bech32 prefix of the
//! VM's mock API.

pub mod artifact;
pub mod record;
mod storage;

pub use storage::{LedgerStorage, StorageOps};

use cosmwasm_std::{
    Addr, BalanceResponse, BankMsg, BankQuery, Binary, BlockInfo, Checksum, Coin, ContractResult, CosmosMsg, Env,
    Event, MessageInfo, QueryRequest, Response, SystemError, SystemResult, Timestamp, to_json_binary,
};
use cosmwasm_vm::testing::{MockApi, mock_env};
use cosmwasm_vm::{
    Backend, BackendResult, Cache, CacheOptions, GasInfo, InstanceOptions, Querier, Size, VmError, call_execute,
    call_instantiate, call_query, capabilities_from_csv,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

/// What a chain running CosmWasm 3 typically offers; the escrow needs none of these.
const CAPABILITIES: &str = "iterator,staking,stargate,cosmwasm_1_1,cosmwasm_1_2,cosmwasm_1_3,cosmwasm_1_4,cosmwasm_2_0,cosmwasm_2_1,cosmwasm_2_2,cosmwasm_3_0";
/// Per-call gas limit in CosmWasm gas: room for thousands of settled tasks in one call (about
/// 80 million each), and still a stop for runaway loops.
pub const DEFAULT_GAS_LIMIT: u64 = 500_000_000_000;
/// Seconds a block takes on this ledger when the caller does not move time itself.
const BLOCK_SECONDS: u64 = 5;

pub type Result<T> = std::result::Result<T, LedgerError>;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cosmwasm-vm: {0}")]
    Vm(#[from] VmError),
    #[error("ledger storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("message encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A query answer that is not the type asked for.
    #[error("unexpected query answer: {0}")]
    Decode(String),
    /// The contract refused the message; the text is its error.
    #[error("contract refused: {0}")]
    Refused(String),
    #[error("{account} has {balance}{denom}, cannot pay {amount}{denom}")]
    InsufficientFunds { account: String, balance: u128, amount: u128, denom: String },
    #[error("the ledger only runs bank sends and burns in {denom}; the contract emitted {message}")]
    Unsupported { message: String, denom: String },
    #[error("the contract is not instantiated yet")]
    NotInstantiated,
    #[error("the contract is already instantiated")]
    AlreadyInstantiated,
    /// The call went over the budget its caller gave (see [`Ledger::execute_within`]).
    #[error("out of gas: {0}")]
    OutOfGas(String),
}

impl LedgerError {
    /// The contract's own refusal text, if this is one.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Self::Refused(text) => Some(text),
            _ => None,
        }
    }
}

/// Gas one call used, in CosmWasm gas (not SDK gas).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GasUsed {
    /// Everything the VM metered: `internal + external`.
    pub total: u64,
    /// Wasm execution and host functions metered inside the VM (crypto, address handling).
    pub internal: u64,
    /// Reported by the storage and querier backends (this ledger uses the VM mock's byte costs).
    pub external: u64,
    /// Storage operations, for converting to a chain's own storage gas.
    pub storage: StorageOps,
}

/// What an accepted call returned and cost.
#[derive(Debug, Clone)]
pub struct Executed {
    pub gas: GasUsed,
    pub attributes: Vec<(String, String)>,
    pub events: Vec<Event>,
    /// Bank sends made from the contract on the contract's behalf: (recipient, amount).
    pub transfers: Vec<(Addr, u128)>,
    /// Coins the contract burned (taken out of the supply).
    pub burned: u128,
}

impl Executed {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Answers the contract's bank balance queries from the ledger (a snapshot taken per call).
#[derive(Debug, Clone, Default)]
pub struct LedgerQuerier {
    denom: String,
    balances: BTreeMap<Addr, u128>,
}

impl Querier for LedgerQuerier {
    fn query_raw(&self, request: &[u8], _gas_limit: u64) -> BackendResult<SystemResult<ContractResult<Binary>>> {
        let gas = GasInfo::with_externally_used(request.len() as u64);
        let answer = match cosmwasm_std::from_json::<QueryRequest>(request) {
            Ok(QueryRequest::Bank(BankQuery::Balance { address, denom })) => {
                let amount = if denom == self.denom {
                    self.balances.get(&Addr::unchecked(&address)).copied().unwrap_or(0)
                } else {
                    0
                };
                match to_json_binary(&BalanceResponse::new(Coin::new(amount, denom))) {
                    Ok(bin) => SystemResult::Ok(ContractResult::Ok(bin)),
                    Err(e) => SystemResult::Ok(ContractResult::Err(e.to_string())),
                }
            }
            Ok(_) => SystemResult::Err(SystemError::UnsupportedRequest { kind: "only bank balance queries".into() }),
            Err(e) => {
                SystemResult::Err(SystemError::InvalidRequest { error: e.to_string(), request: Binary::from(request) })
            }
        };
        (Ok(answer), gas)
    }
}

/// The amount of a single coin of `denom`, the only kind of coin this ledger moves.
fn amount_in(denom: &str, coins: &[Coin]) -> Option<u128> {
    match coins {
        [coin] if coin.denom == denom => cosmwasm_std::Uint128::try_from(coin.amount).ok().map(|a| a.u128()),
        _ => None,
    }
}

/// A valid address derived from `name` (bech32, prefix `cosmwasm`): what every ledger's
/// [`Ledger::addr_make`] returns, without compiling a contract.
pub fn addr_make(name: &str) -> Addr {
    Addr::unchecked(MockApi::default().addr_make(name))
}

/// One contract, one denom, a clock and balances.
pub struct Ledger {
    cache: Cache<MockApi, LedgerStorage, LedgerQuerier>,
    checksum: Checksum,
    api: MockApi,
    storage: LedgerStorage,
    balances: BTreeMap<Addr, u128>,
    denom: String,
    contract: Addr,
    instantiated: bool,
    block: BlockInfo,
    gas_limit: u64,
    /// Seconds each committed transaction moves the clock.
    block_seconds: u64,
    /// Accounts whose balance may have changed since the last [`Ledger::take_changes`].
    dirty_accounts: BTreeSet<Addr>,
    _cache_dir: tempfile::TempDir,
}

/// Everything a ledger holds, for persisting it: the contract's storage, balances and the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    pub storage: Vec<(Vec<u8>, Vec<u8>)>,
    pub balances: Vec<(Addr, u128)>,
    pub height: u64,
    /// Block time in nanoseconds.
    pub time_nanos: u64,
    pub instantiated: bool,
}

/// What changed since the last [`Ledger::take_changes`]: apply it to a persisted
/// [`LedgerState`] to bring it up to date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerChanges {
    /// Changed keys with their value now (`None`: removed).
    pub storage: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub balances: Vec<(Addr, u128)>,
    pub height: u64,
    pub time_nanos: u64,
    pub instantiated: bool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("checksum", &self.checksum)
            .field("contract", &self.contract)
            .field("block", &self.block)
            .field("balances", &self.balances)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Checks and compiles `wasm` (the same static checks as `cosmwasm-check`) and prepares a
    /// ledger where it will live at the address `addr_make("starling-escrow")`.
    pub fn new(wasm: &[u8], denom: &str) -> Result<Self> {
        let cache_dir = tempfile::Builder::new().prefix("starling-ledger-").tempdir()?;
        let options =
            CacheOptions::new(cache_dir.path(), capabilities_from_csv(CAPABILITIES), Size::mebi(64), Size::mebi(32));
        // SAFETY: `Cache::new` is unsafe because the file system cache trusts the compiled
        // modules it finds in its folder; this folder is a fresh private temporary directory.
        #[allow(unsafe_code)]
        let cache = unsafe { Cache::new(options)? };
        let checksum = cache.store_code(wasm, true, true)?;
        cache.pin(&checksum)?;
        let api = MockApi::default();
        let contract = Addr::unchecked(api.addr_make("starling-escrow"));
        let mut block = mock_env().block;
        block.height = 1;
        Ok(Self {
            cache,
            checksum,
            api,
            storage: LedgerStorage::default(),
            balances: BTreeMap::new(),
            denom: denom.to_owned(),
            contract,
            instantiated: false,
            block,
            gas_limit: DEFAULT_GAS_LIMIT,
            block_seconds: BLOCK_SECONDS,
            dirty_accounts: BTreeSet::new(),
            _cache_dir: cache_dir,
        })
    }

    /// A ledger over `wasm` in the state a previous one persisted (see [`Ledger::state`] and
    /// [`Ledger::take_changes`]).
    pub fn restore(wasm: &[u8], denom: &str, state: LedgerState) -> Result<Self> {
        let mut ledger = Self::new(wasm, denom)?;
        ledger.storage = state.storage.into_iter().collect();
        ledger.balances = state.balances.into_iter().filter(|(_, b)| *b > 0).collect();
        ledger.block.height = state.height;
        ledger.block.time = Timestamp::from_nanos(state.time_nanos);
        ledger.instantiated = state.instantiated;
        Ok(ledger)
    }

    /// The whole state, for a first save.
    pub fn state(&self) -> LedgerState {
        LedgerState {
            storage: self.storage.entries().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
            balances: self.balances.iter().map(|(a, b)| (a.clone(), *b)).collect(),
            height: self.block.height,
            time_nanos: self.block.time.nanos(),
            instantiated: self.instantiated,
        }
    }

    /// What changed since the last call (or since [`Ledger::new`] / [`Ledger::restore`]).
    pub fn take_changes(&mut self) -> LedgerChanges {
        let balances = std::mem::take(&mut self.dirty_accounts)
            .into_iter()
            .map(|a| {
                let b = self.balance(&a);
                (a, b)
            })
            .collect();
        LedgerChanges {
            storage: self.storage.take_dirty(),
            balances,
            height: self.block.height,
            time_nanos: self.block.time.nanos(),
            instantiated: self.instantiated,
        }
    }

    pub fn is_instantiated(&self) -> bool {
        self.instantiated
    }

    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    pub fn contract(&self) -> &Addr {
        &self.contract
    }

    pub fn denom(&self) -> &str {
        &self.denom
    }

    /// A valid address derived from `name` (bech32, prefix `cosmwasm`).
    pub fn addr_make(&self, name: &str) -> Addr {
        addr_make(name)
    }

    pub fn block(&self) -> &BlockInfo {
        &self.block
    }

    /// Block time in seconds.
    pub fn now(&self) -> u64 {
        self.block.time.seconds()
    }

    /// Moves the clock (and the height by one block).
    pub fn advance(&mut self, seconds: u64) {
        self.block.time = self.block.time.plus_seconds(seconds);
        self.block.height += 1;
    }

    /// Seconds each committed transaction moves the clock (default 5); 0 for a ledger whose
    /// owner sets the time itself from a wall clock.
    pub fn set_block_seconds(&mut self, seconds: u64) {
        self.block_seconds = seconds;
    }

    pub fn set_time(&mut self, time: Timestamp) {
        self.block.time = time;
    }

    /// Names the chain every contract call sees (`env.block.chain_id`): signatures for the
    /// escrow name it, so two ledgers with different ids cannot use each other's.
    pub fn set_chain_id(&mut self, chain_id: &str) {
        self.block.chain_id = chain_id.to_owned();
    }

    /// Creates money out of nothing: the faucet. Everything else moves existing money.
    pub fn mint(&mut self, to: &Addr, amount: u128) {
        self.dirty_accounts.insert(to.clone());
        let balance = self.balances.entry(to.clone()).or_default();
        *balance = balance.checked_add(amount).expect("supply fits in u128");
    }

    /// Takes back money the faucet minted (to undo a grant whose transaction failed).
    pub fn burn(&mut self, from: &Addr, amount: u128) -> Result<()> {
        let balance = self.balance(from);
        let Some(left) = balance.checked_sub(amount) else {
            return Err(LedgerError::InsufficientFunds {
                account: from.to_string(),
                balance,
                amount,
                denom: self.denom.clone(),
            });
        };
        self.dirty_accounts.insert(from.clone());
        self.balances.insert(from.clone(), left);
        Ok(())
    }

    pub fn balance(&self, of: &Addr) -> u128 {
        self.balances.get(of).copied().unwrap_or(0)
    }

    pub fn balances(&self) -> &BTreeMap<Addr, u128> {
        &self.balances
    }

    pub fn total_supply(&self) -> u128 {
        self.balances.values().sum()
    }

    pub fn instantiate<M: Serialize>(&mut self, sender: &Addr, msg: &M, funds: u128) -> Result<Executed> {
        if self.instantiated {
            return Err(LedgerError::AlreadyInstantiated);
        }
        let executed = self.run(sender, funds, |instance, env, info| {
            Ok(call_instantiate::<_, _, _, cosmwasm_std::Empty>(instance, env, info, &serde_json::to_vec(msg)?)?)
        })?;
        self.instantiated = true;
        Ok(executed)
    }

    pub fn execute<M: Serialize>(&mut self, sender: &Addr, msg: &M, funds: u128) -> Result<Executed> {
        if !self.instantiated {
            return Err(LedgerError::NotInstantiated);
        }
        self.run(sender, funds, |instance, env, info| {
            Ok(call_execute::<_, _, _, cosmwasm_std::Empty>(instance, env, info, &serde_json::to_vec(msg)?)?)
        })
    }

    /// Like [`Ledger::execute`], for a caller that meters gas by its own schedule: `budget` sees
    /// what the call used before anything is committed and may refuse it (a chain's out-of-gas),
    /// which leaves storage and balances as they were. The VM itself stops at `vm_gas_limit`.
    pub fn execute_within<M: Serialize>(
        &mut self,
        sender: &Addr,
        msg: &M,
        funds: u128,
        vm_gas_limit: u64,
        budget: impl FnOnce(&GasUsed) -> std::result::Result<(), String>,
    ) -> Result<Executed> {
        if !self.instantiated {
            return Err(LedgerError::NotInstantiated);
        }
        let limit = std::mem::replace(&mut self.gas_limit, vm_gas_limit.min(DEFAULT_GAS_LIMIT));
        let mut budget = Some(budget);
        let outcome = self.run_checked(
            sender,
            funds,
            &mut |gas| budget.take().map_or(Ok(()), |b| b(gas)),
            |instance, env, info| {
                Ok(call_execute::<_, _, _, cosmwasm_std::Empty>(instance, env, info, &serde_json::to_vec(msg)?)?)
            },
        );
        self.gas_limit = limit;
        outcome
    }

    /// A read-only query, with the gas it used.
    pub fn query<M: Serialize, T: DeserializeOwned>(&self, msg: &M) -> Result<(T, GasUsed)> {
        let storage = self.storage.fork();
        let mut instance = self.instance(storage)?;
        let result = call_query(&mut instance, &self.env(), &serde_json::to_vec(msg)?)?;
        let report = instance.create_gas_report();
        let storage = instance.recycle().map(|b| b.storage.ops()).unwrap_or_default();
        let gas = GasUsed {
            total: report.limit - report.remaining,
            internal: report.used_internally,
            external: report.used_externally,
            storage,
        };
        match result {
            ContractResult::Ok(bin) => {
                Ok((cosmwasm_std::from_json(&bin).map_err(|e| LedgerError::Decode(e.to_string()))?, gas))
            }
            ContractResult::Err(text) => Err(LedgerError::Refused(text)),
        }
    }

    fn env(&self) -> Env {
        let mut env = mock_env();
        env.block = self.block.clone();
        env.contract.address = self.contract.clone();
        env
    }

    fn instance(&self, storage: LedgerStorage) -> Result<cosmwasm_vm::Instance<MockApi, LedgerStorage, LedgerQuerier>> {
        let querier = LedgerQuerier { denom: self.denom.clone(), balances: self.balances.clone() };
        let backend = Backend { api: self.api, storage, querier };
        Ok(self.cache.get_instance(&self.checksum, backend, InstanceOptions { gas_limit: self.gas_limit })?)
    }

    /// Runs one message as a transaction: funds move to the contract, the contract runs in a
    /// fresh instance over a copy of its storage, its bank sends and burns are applied; any failure leaves
    /// storage and balances as they were.
    fn run(
        &mut self,
        sender: &Addr,
        funds: u128,
        call: impl FnOnce(
            &mut cosmwasm_vm::Instance<MockApi, LedgerStorage, LedgerQuerier>,
            &Env,
            &MessageInfo,
        ) -> Result<ContractResult<Response>>,
    ) -> Result<Executed> {
        self.run_checked(sender, funds, &mut |_| Ok(()), call)
    }

    fn run_checked(
        &mut self,
        sender: &Addr,
        funds: u128,
        budget: &mut dyn FnMut(&GasUsed) -> std::result::Result<(), String>,
        call: impl FnOnce(
            &mut cosmwasm_vm::Instance<MockApi, LedgerStorage, LedgerQuerier>,
            &Env,
            &MessageInfo,
        ) -> Result<ContractResult<Response>>,
    ) -> Result<Executed> {
        let balances_before = self.balances.clone();
        let outcome = self.run_uncommitted(sender, funds, budget, call);
        if outcome.is_err() {
            self.balances = balances_before;
        } else {
            self.block.height += 1;
            self.block.time = self.block.time.plus_seconds(self.block_seconds);
        }
        outcome
    }

    fn run_uncommitted(
        &mut self,
        sender: &Addr,
        funds: u128,
        budget: &mut dyn FnMut(&GasUsed) -> std::result::Result<(), String>,
        call: impl FnOnce(
            &mut cosmwasm_vm::Instance<MockApi, LedgerStorage, LedgerQuerier>,
            &Env,
            &MessageInfo,
        ) -> Result<ContractResult<Response>>,
    ) -> Result<Executed> {
        let contract = self.contract.clone();
        self.transfer(sender, &contract, funds)?;
        let info = MessageInfo {
            sender: sender.clone(),
            funds: if funds == 0 { vec![] } else { vec![Coin::new(funds, self.denom.clone())] },
        };
        let storage = self.storage.fork();
        let mut instance = self.instance(storage)?;
        let result = call(&mut instance, &self.env(), &info);
        let report = instance.create_gas_report();
        let storage = instance.recycle().expect("a finished call hands its backend back").storage;
        let gas = GasUsed {
            total: report.limit - report.remaining,
            internal: report.used_internally,
            external: report.used_externally,
            storage: storage.ops(),
        };
        if let Err(LedgerError::Vm(VmError::GasDepletion { .. })) = &result {
            return Err(LedgerError::OutOfGas(format!("the VM ran out of its limit of {} CosmWasm gas", report.limit)));
        }
        let response = match result? {
            ContractResult::Ok(response) => response,
            ContractResult::Err(text) => return Err(LedgerError::Refused(text)),
        };
        budget(&gas).map_err(LedgerError::OutOfGas)?;
        let mut transfers = Vec::new();
        let mut burned = 0u128;
        for sub in &response.messages {
            let unsupported =
                || LedgerError::Unsupported { message: format!("{:?}", sub.msg), denom: self.denom.clone() };
            if sub.reply_on != cosmwasm_std::ReplyOn::Never {
                return Err(unsupported());
            }
            match &sub.msg {
                CosmosMsg::Bank(BankMsg::Send { to_address, amount }) => {
                    let amount = amount_in(&self.denom, amount).ok_or_else(unsupported)?;
                    let to = Addr::unchecked(to_address);
                    self.transfer(&contract, &to, amount)?;
                    transfers.push((to, amount));
                }
                CosmosMsg::Bank(BankMsg::Burn { amount }) => {
                    let amount = amount_in(&self.denom, amount).ok_or_else(unsupported)?;
                    self.burn(&contract, amount)?;
                    burned += amount;
                }
                _ => return Err(unsupported()),
            }
        }
        // The previous copy is dropped first, so the committed map is updated in place.
        self.storage.apply(storage);
        Ok(Executed {
            gas,
            attributes: response.attributes.into_iter().map(|a| (a.key, a.value)).collect(),
            events: response.events,
            transfers,
            burned,
        })
    }

    fn transfer(&mut self, from: &Addr, to: &Addr, amount: u128) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        self.dirty_accounts.insert(from.clone());
        self.dirty_accounts.insert(to.clone());
        let balance = self.balance(from);
        let Some(left) = balance.checked_sub(amount) else {
            return Err(LedgerError::InsufficientFunds {
                account: from.to_string(),
                balance,
                amount,
                denom: self.denom.clone(),
            });
        };
        self.balances.insert(from.clone(), left);
        *self.balances.entry(to.clone()).or_default() += amount;
        Ok(())
    }
}
