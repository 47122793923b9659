//! A local development chain, in the spirit of a chain's local dev node: one process that serves
//! the part of CometBFT's RPC and the Cosmos SDK that Starling's `--escrow chain` backend uses,
//! over the real escrow contract running in `cosmwasm-vm` ([`starling_escrow_vm::Ledger`]).
//!
//! It is a development tool: one validator (itself), each transaction committed in a block of
//! its own as it arrives (like a dev node's automine), empty blocks every `block_time` so the
//! clock moves, state in memory (a restarted chain starts again from genesis). The production
//! path is a real CosmWasm chain; the relay speaks to both with the same bytes.
//!
//! What it checks as a node would: transactions decode as `TxRaw`; the one signer's
//! SIGN_MODE_DIRECT secp256k1 signature over the chain id and its account number; the account
//! sequence (replays fail); a fee in the chain's denom of at least `gas × min_gas_price`, taken
//! even when the message then fails; gas by the SDK's and wasmd's schedule, out of gas rolling the
//! message back. Messages: `MsgExecuteContract` to the escrow contract and `MsgSend`, one per
//! transaction. Queries (`abci_query`): auth `Account`, bank `Balance`, wasm `SmartContractState`.
//!
//! - [`tx`]: the ante checks and the gas schedule, pure.
//! - [`DevChain`]: accounts, blocks, transactions and queries.
//! - [`rpc`]: the JSON-RPC server.

pub mod rpc;
pub mod tx;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cosmrs::proto::cosmos::auth::v1beta1::{BaseAccount, QueryAccountRequest, QueryAccountResponse};
use cosmrs::proto::cosmos::bank::v1beta1::{MsgSend, QueryBalanceRequest, QueryBalanceResponse};
use cosmrs::proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmrs::proto::cosmos::crypto::secp256k1::PubKey;
use cosmrs::proto::cosmwasm::wasm::v1::{
    MsgExecuteContract, QuerySmartContractStateRequest, QuerySmartContractStateResponse,
};
use cosmrs::proto::prost::Message;
use cosmwasm_std::{Addr, Timestamp};
use serde_json::{Value, json};
use starling_escrow::msg::{ExecuteMsg, InstantiateMsg};
use starling_escrow_vm::{Ledger, LedgerError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use tx::TxError;

/// The bech32 prefix of this chain's addresses (the VM's address API).
pub const PREFIX: &str = "cosmwasm";
/// Transactions whose results stay queryable by hash, and the most bytes they may hold.
const KEEP_TXS: usize = 100_000;
const KEEP_TX_BYTES: usize = 256 << 20;

/// How a development chain starts.
#[derive(Debug, Clone)]
pub struct Genesis {
    pub chain_id: String,
    pub denom: String,
    /// Least fee per unit of gas.
    pub min_gas_price: f64,
    /// Funded accounts (bech32 addresses with this chain's prefix).
    pub accounts: Vec<(String, u128)>,
    /// What the dev faucet holds.
    pub faucet: u128,
    /// The escrow contract's instantiation: `relay` is the deployment's own relay.
    pub escrow: InstantiateMsg,
}

impl Genesis {
    /// A chain id, the `ustar` denom, a big faucet, and an escrow whose own relay is `relay`,
    /// with the parameters the embedded ledger uses (jobs up to a week and an hour, bonds
    /// unbonding for 21 days, half a bond slashed for a proven wrong signature).
    pub fn new(chain_id: &str, relay: &str) -> Self {
        Self {
            chain_id: chain_id.to_owned(),
            denom: "ustar".into(),
            min_gas_price: 0.025,
            accounts: Vec::new(),
            faucet: 1_000_000_000_000_000,
            escrow: InstantiateMsg {
                denom: "ustar".into(),
                relay: relay.to_owned(),
                relay_fee_bps: 500,
                min_bond: 10_000_000u128.into(),
                unbonding_period: 21 * 24 * 3600,
                // Starling's longest job deadline (a week) and an hour.
                max_job_duration: 7 * 24 * 3600 + 3_600,
                slash_bps: 5_000,
                min_relay_bond: 10_000_000u128.into(),
                relay_endpoint: None,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevChainError {
    #[error("genesis: {0}")]
    Genesis(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

#[derive(Debug, Clone, Default)]
struct AuthAccount {
    number: u64,
    sequence: u64,
    pubkey: Option<Vec<u8>>,
}

/// A committed transaction's result, as CometBFT's `tx` answers it.
#[derive(Debug, Clone)]
pub struct TxRecord {
    pub hash: [u8; 32],
    pub height: u64,
    pub code: u32,
    pub codespace: &'static str,
    pub log: String,
    pub gas_wanted: u64,
    pub gas_used: u64,
    pub events: Vec<Value>,
    pub tx: Vec<u8>,
}

impl TxRecord {
    /// The `tx` method's answer.
    pub fn to_json(&self) -> Value {
        json!({
            "hash": hex::encode_upper(self.hash),
            "height": self.height.to_string(),
            "index": 0,
            "tx_result": {
                "code": self.code,
                "codespace": self.codespace,
                "log": self.log,
                "data": "",
                "info": "",
                "gas_wanted": self.gas_wanted.to_string(),
                "gas_used": self.gas_used.to_string(),
                "events": self.events,
            },
            "tx": B64.encode(&self.tx),
        })
    }
}

/// `broadcast_tx_sync`'s answer: the ante checks' verdict (CheckTx).
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub hash: [u8; 32],
    pub code: u32,
    pub codespace: &'static str,
    pub log: String,
}

/// `abci_query`'s answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u32,
    pub codespace: &'static str,
    pub log: String,
    pub value: Vec<u8>,
}

impl Answer {
    fn ok(value: Vec<u8>) -> Self {
        Self { code: 0, codespace: "", log: String::new(), value }
    }
    fn err(e: TxError) -> Self {
        Self { code: e.code, codespace: e.codespace, log: e.log, value: Vec::new() }
    }
}

pub struct DevChain {
    ledger: Ledger,
    chain_id: String,
    min_gas_price: f64,
    accounts: BTreeMap<String, AuthAccount>,
    next_account: u64,
    txs: HashMap<[u8; 32], TxRecord>,
    tx_order: VecDeque<[u8; 32]>,
    tx_bytes: usize,
    /// Development only: how far the chain's clock runs ahead of the wall clock.
    ahead_nanos: u64,
    faucet: Addr,
    fee_collector: Addr,
}

impl std::fmt::Debug for DevChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevChain")
            .field("chain_id", &self.chain_id)
            .field("contract", self.ledger.contract())
            .field("height", &self.ledger.block().height)
            .finish_non_exhaustive()
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl DevChain {
    /// Genesis: checks and compiles the contract, funds the accounts and the faucet, and
    /// instantiates the escrow.
    pub fn new(wasm: &[u8], genesis: Genesis) -> Result<Self, DevChainError> {
        if genesis.escrow.denom != genesis.denom {
            return Err(DevChainError::Genesis(format!(
                "the escrow's denom {} is not the chain's {}",
                genesis.escrow.denom, genesis.denom
            )));
        }
        let mut ledger = Ledger::new(wasm, &genesis.denom)?;
        ledger.set_chain_id(&genesis.chain_id);
        ledger.set_block_seconds(0);
        ledger.set_time(Timestamp::from_nanos(now_nanos()));
        let mut chain = Self {
            faucet: starling_escrow_vm::addr_make("starling-devchain-faucet"),
            fee_collector: starling_escrow_vm::addr_make("fee_collector"),
            ledger,
            chain_id: genesis.chain_id,
            min_gas_price: genesis.min_gas_price,
            accounts: BTreeMap::new(),
            next_account: 0,
            txs: HashMap::new(),
            tx_order: VecDeque::new(),
            tx_bytes: 0,
            ahead_nanos: 0,
        };
        for (address, amount) in &genesis.accounts {
            chain.check_address(address).map_err(|e| DevChainError::Genesis(e.log))?;
            chain.ledger.mint(&Addr::unchecked(address), *amount);
            chain.touch(address);
        }
        let faucet = chain.faucet.clone();
        chain.ledger.mint(&faucet, genesis.faucet);
        chain.touch(faucet.as_str());
        chain.ledger.instantiate(&faucet, &genesis.escrow, 0)?;
        let contract = chain.ledger.contract().to_string();
        chain.touch(&contract);
        Ok(chain)
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn contract(&self) -> &Addr {
        self.ledger.contract()
    }

    pub fn denom(&self) -> &str {
        self.ledger.denom()
    }

    pub fn height(&self) -> u64 {
        self.ledger.block().height
    }

    pub fn balance(&self, address: &str) -> u128 {
        self.ledger.balance(&Addr::unchecked(address))
    }

    /// Every coin on the chain: nothing but genesis creates any.
    pub fn total_supply(&self) -> u128 {
        self.ledger.total_supply()
    }

    /// An empty block: the clock moves to now.
    pub fn tick(&mut self) {
        self.new_block();
    }

    fn new_block(&mut self) {
        self.clock();
        self.ledger.advance(0);
    }

    /// The block time moves to now (never back).
    fn clock(&mut self) {
        let now = now_nanos().saturating_add(self.ahead_nanos);
        self.ledger.set_time(Timestamp::from_nanos(now.max(self.ledger.block().time.nanos())));
    }

    /// Development only: moves the chain's clock `seconds` ahead (as a dev node's time travel
    /// does), in a new block, so deadlines and unbonding periods can be reached in a test.
    pub fn advance_time(&mut self, seconds: u64) {
        self.ahead_nanos = self.ahead_nanos.saturating_add(seconds.saturating_mul(1_000_000_000));
        self.new_block();
    }

    /// Block time, in seconds.
    pub fn time(&self) -> u64 {
        self.ledger.now()
    }

    fn check_address(&self, address: &str) -> Result<(), TxError> {
        match address.parse::<cosmrs::AccountId>() {
            Ok(id) if id.prefix() == PREFIX => Ok(()),
            _ => Err(TxError::sdk(7, format!("{address} is not a {PREFIX} address: invalid address"))),
        }
    }

    /// Creates the auth account of an address that holds or received coins.
    fn touch(&mut self, address: &str) {
        if !self.accounts.contains_key(address) {
            let number = self.next_account;
            self.next_account += 1;
            self.accounts.insert(address.to_owned(), AuthAccount { number, ..AuthAccount::default() });
        }
    }

    /// `broadcast_tx_sync`: the ante checks (CheckTx); a transaction that passes them is
    /// committed in a block of its own at once, its fee taken and its sequence used whether its
    /// message then succeeds or not.
    pub fn broadcast(&mut self, bytes: &[u8]) -> Broadcast {
        let hash = tx::hash(bytes);
        match self.ante(bytes) {
            Err(e) => Broadcast { hash, code: e.code, codespace: e.codespace, log: e.log },
            Ok((decoded, signer)) => {
                // One block for this transaction: a committed contract call moves the ledger's
                // height itself; anything else (a send, a failure) is given its block here.
                self.clock();
                let height = self.height();
                let mut record = self.deliver(hash, bytes, &decoded, &signer);
                if self.height() == height {
                    self.ledger.advance(0);
                }
                record.height = self.height();
                self.remember(record);
                Broadcast { hash, code: 0, codespace: "", log: "[]".into() }
            }
        }
    }

    fn ante(&mut self, bytes: &[u8]) -> Result<(tx::Decoded, String), TxError> {
        let decoded = tx::decode(bytes, self.ledger.denom(), self.height())?;
        let signer = tx::address(&decoded.pubkey, PREFIX)?;
        let Some(account) = self.accounts.get(&signer) else {
            return Err(TxError::unknown_address(format!("account {signer} not found")));
        };
        if decoded.sequence != account.sequence {
            return Err(TxError::wrong_sequence(account.sequence, decoded.sequence));
        }
        tx::verify(&decoded, &self.chain_id, account.number)?;
        let required = tx::required_fee(decoded.gas_limit, self.min_gas_price);
        if decoded.fee < required {
            return Err(TxError::insufficient_fee(format!("got {}{}, required {required}", decoded.fee, self.denom())));
        }
        let ante = tx::ante_gas(bytes.len());
        if decoded.gas_limit < ante {
            return Err(TxError::out_of_gas(format!("gasWanted: {}, gasUsed: {ante}", decoded.gas_limit)));
        }
        if self.ledger.balance(&Addr::unchecked(&signer)) < decoded.fee {
            return Err(TxError::insufficient_funds(format!(
                "{}{} is smaller than the fee {}{}",
                self.ledger.balance(&Addr::unchecked(&signer)),
                self.denom(),
                decoded.fee,
                self.denom()
            )));
        }
        if decoded.body.messages.len() != 1 {
            return Err(TxError::invalid_request(format!(
                "this development chain runs one message per transaction, not {}",
                decoded.body.messages.len()
            )));
        }
        // The message's signer must be the transaction's (the SDK's GetSigners check, before
        // any fee is taken).
        let any = &decoded.body.messages[0];
        let named = match any.type_url.as_str() {
            "/cosmos.bank.v1beta1.MsgSend" => MsgSend::decode(any.value.as_slice()).map(|m| m.from_address),
            "/cosmwasm.wasm.v1.MsgExecuteContract" => {
                MsgExecuteContract::decode(any.value.as_slice()).map(|m| m.sender)
            }
            other => {
                return Err(TxError::sdk(6, format!("{other} is not run by this development chain: unknown request")));
            }
        }
        .map_err(TxError::decode)?;
        if named != signer {
            return Err(TxError::unauthorized(format!("pubkey does not match signer address {named}")));
        }
        // The fee and the sequence are spent from here on.
        let fee = decoded.fee;
        self.ledger.burn(&Addr::unchecked(&signer), fee).map_err(|e| TxError::insufficient_funds(e.to_string()))?;
        let collector = self.fee_collector.clone();
        self.ledger.mint(&collector, fee);
        let account = self.accounts.get_mut(&signer).expect("checked above");
        account.sequence += 1;
        account.pubkey.get_or_insert_with(|| decoded.pubkey.clone());
        Ok((decoded, signer))
    }

    fn deliver(&mut self, hash: [u8; 32], bytes: &[u8], decoded: &tx::Decoded, signer: &str) -> TxRecord {
        let ante = tx::ante_gas(bytes.len());
        let mut events = vec![json!({"type": "tx", "attributes": [
            attr("fee", &format!("{}{}", decoded.fee, self.denom())),
            attr("fee_payer", signer),
            attr("acc_seq", &format!("{signer}/{}", decoded.sequence)),
        ]})];
        let outcome = self.run_message(&decoded.body.messages[0], signer, decoded.gas_limit - ante);
        let (code, codespace, log, used) = match outcome {
            Ok((used, mut message_events)) => {
                events.append(&mut message_events);
                (0, "", "[]".to_owned(), ante + used)
            }
            Err((e, used)) => {
                (e.code, e.codespace, format!("failed to execute message; message index: 0: {}", e.log), ante + used)
            }
        };
        TxRecord {
            hash,
            height: self.height(),
            code,
            codespace,
            log,
            gas_wanted: decoded.gas_limit,
            gas_used: used.min(decoded.gas_limit),
            events,
            tx: bytes.to_vec(),
        }
    }

    /// Runs one message with `gas` left; returns the gas it used and its events, or the error
    /// with the gas used up to it. A failed message leaves no trace but the fee.
    fn run_message(&mut self, any: &cosmrs::Any, signer: &str, gas: u64) -> Result<(u64, Vec<Value>), (TxError, u64)> {
        match any.type_url.as_str() {
            "/cosmos.bank.v1beta1.MsgSend" => {
                let msg = MsgSend::decode(any.value.as_slice()).map_err(|e| (TxError::decode(e), 0))?;
                if msg.from_address != signer {
                    return Err((
                        TxError::unauthorized(format!("{} did not sign this transaction", msg.from_address)),
                        0,
                    ));
                }
                if tx::gas::BANK_SEND > gas {
                    return Err((TxError::out_of_gas(format!("a send needs {} gas", tx::gas::BANK_SEND)), gas));
                }
                self.check_address(&msg.to_address).map_err(|e| (e, 0))?;
                let amount = self.amount(&msg.amount).map_err(|e| (e, 0))?;
                let from = Addr::unchecked(signer);
                self.ledger
                    .burn(&from, amount)
                    .map_err(|e| (TxError::insufficient_funds(e.to_string()), tx::gas::BANK_SEND))?;
                self.ledger.mint(&Addr::unchecked(&msg.to_address), amount);
                self.touch(&msg.to_address);
                let coins = format!("{amount}{}", self.denom());
                Ok((
                    tx::gas::BANK_SEND,
                    vec![
                        message_event("/cosmos.bank.v1beta1.MsgSend", signer, "bank"),
                        json!({"type": "transfer", "attributes": [attr("recipient", &msg.to_address), attr("sender", signer), attr("amount", &coins)]}),
                    ],
                ))
            }
            "/cosmwasm.wasm.v1.MsgExecuteContract" => {
                let msg = MsgExecuteContract::decode(any.value.as_slice()).map_err(|e| (TxError::decode(e), 0))?;
                if msg.sender != signer {
                    return Err((TxError::unauthorized(format!("{} did not sign this transaction", msg.sender)), 0));
                }
                if msg.contract != self.contract().as_str() {
                    return Err((
                        TxError {
                            codespace: "wasm",
                            code: 8,
                            log: format!("no such contract {}: not found", msg.contract),
                        },
                        0,
                    ));
                }
                let funds = self.amount(&msg.funds).map_err(|e| (e, 0))?;
                let body: Value = serde_json::from_slice(&msg.msg)
                    .map_err(|e| (TxError { codespace: "wasm", code: 21, log: format!("{e}: invalid") }, 0))?;
                let vm_limit = gas.saturating_mul(tx::gas::WASM_MULTIPLIER);
                let mut spent = 0;
                let result = self.ledger.execute_within(&Addr::unchecked(signer), &body, funds, vm_limit, |used| {
                    spent = tx::wasm_gas(used);
                    if spent > gas { Err(format!("needed {spent} gas, {gas} left")) } else { Ok(()) }
                });
                match result {
                    Ok(executed) => {
                        let contract = self.contract().to_string();
                        let mut events = vec![
                            message_event("/cosmwasm.wasm.v1.MsgExecuteContract", signer, "wasm"),
                            json!({"type": "execute", "attributes": [attr("_contract_address", &contract)]}),
                        ];
                        if funds > 0 {
                            events.push(transfer_event(&contract, signer, funds, self.denom()));
                        }
                        let mut wasm = vec![attr("_contract_address", &contract)];
                        wasm.extend(executed.attributes.iter().map(|(k, v)| attr(k, v)));
                        events.push(json!({"type": "wasm", "attributes": wasm}));
                        for event in &executed.events {
                            let mut attrs = vec![attr("_contract_address", &contract)];
                            attrs.extend(event.attributes.iter().map(|a| attr(&a.key, &a.value)));
                            events.push(json!({"type": format!("wasm-{}", event.ty), "attributes": attrs}));
                        }
                        for (to, amount) in &executed.transfers {
                            self.touch(to.as_str());
                            events.push(transfer_event(to.as_str(), &contract, *amount, self.denom()));
                        }
                        Ok((tx::wasm_gas(&executed.gas).max(spent), events))
                    }
                    Err(LedgerError::OutOfGas(text)) => Err((TxError::out_of_gas(text), gas)),
                    Err(e @ LedgerError::InsufficientFunds { .. }) => Err((
                        TxError { codespace: "wasm", code: 5, log: format!("{e}: execute wasm contract failed") },
                        spent,
                    )),
                    Err(LedgerError::Refused(text)) => Err((
                        TxError { codespace: "wasm", code: 5, log: format!("{text}: execute wasm contract failed") },
                        spent.max(tx::gas::WASM_INSTANCE),
                    )),
                    Err(e) => Err((
                        TxError { codespace: "wasm", code: 5, log: format!("{e}: execute wasm contract failed") },
                        spent,
                    )),
                }
            }
            other => {
                Err((TxError::sdk(6, format!("{other} is not run by this development chain: unknown request")), 0))
            }
        }
    }

    /// The one coin a message may carry, in the chain's denom (none is zero).
    fn amount(&self, coins: &[ProtoCoin]) -> Result<u128, TxError> {
        match coins {
            [] => Ok(0),
            [coin] if coin.denom == self.denom() => {
                coin.amount.parse().map_err(|_| TxError::invalid_request(format!("amount {:?}", coin.amount)))
            }
            _ => Err(TxError::invalid_request(format!("this chain moves only {}, one coin per message", self.denom()))),
        }
    }

    fn remember(&mut self, record: TxRecord) {
        self.tx_bytes += record.tx.len();
        self.tx_order.push_back(record.hash);
        if let Some(old) = self.txs.insert(record.hash, record) {
            self.tx_bytes -= old.tx.len();
        }
        while self.tx_order.len() > KEEP_TXS || self.tx_bytes > KEEP_TX_BYTES {
            let Some(old) = self.tx_order.pop_front() else { break };
            if let Some(gone) = self.txs.remove(&old) {
                self.tx_bytes -= gone.tx.len();
            }
        }
    }

    /// A committed transaction by hash.
    pub fn tx(&self, hash: &[u8]) -> Option<&TxRecord> {
        <[u8; 32]>::try_from(hash).ok().and_then(|h| self.txs.get(&h))
    }

    /// `abci_query` for the gRPC paths the chain backend asks.
    pub fn query(&self, path: &str, data: &[u8]) -> Answer {
        let decode_err = |e: cosmrs::proto::prost::DecodeError| Answer::err(TxError::decode(e));
        match path {
            "/cosmos.auth.v1beta1.Query/Account" => {
                let request = match QueryAccountRequest::decode(data) {
                    Ok(r) => r,
                    Err(e) => return decode_err(e),
                };
                let Some(account) = self.accounts.get(&request.address) else {
                    return Answer::err(TxError::sdk(
                        22,
                        format!("account {} not found: key not found", request.address),
                    ));
                };
                let base = BaseAccount {
                    address: request.address,
                    pub_key: account.pubkey.as_ref().map(|key| cosmrs::Any {
                        type_url: "/cosmos.crypto.secp256k1.PubKey".into(),
                        value: PubKey { key: key.clone() }.encode_to_vec(),
                    }),
                    account_number: account.number,
                    sequence: account.sequence,
                };
                let any =
                    cosmrs::Any { type_url: "/cosmos.auth.v1beta1.BaseAccount".into(), value: base.encode_to_vec() };
                Answer::ok(QueryAccountResponse { account: Some(any) }.encode_to_vec())
            }
            "/cosmos.bank.v1beta1.Query/Balance" => {
                let request = match QueryBalanceRequest::decode(data) {
                    Ok(r) => r,
                    Err(e) => return decode_err(e),
                };
                let amount = if request.denom == self.denom() { self.balance(&request.address) } else { 0 };
                let coin = ProtoCoin { denom: request.denom, amount: amount.to_string() };
                Answer::ok(QueryBalanceResponse { balance: Some(coin) }.encode_to_vec())
            }
            "/cosmwasm.wasm.v1.Query/SmartContractState" => {
                let request = match QuerySmartContractStateRequest::decode(data) {
                    Ok(r) => r,
                    Err(e) => return decode_err(e),
                };
                if request.address != self.contract().as_str() {
                    return Answer::err(TxError {
                        codespace: "wasm",
                        code: 8,
                        log: format!("no such contract {}: not found", request.address),
                    });
                }
                let Ok(msg) = serde_json::from_slice::<Value>(&request.query_data) else {
                    return Answer::err(TxError {
                        codespace: "wasm",
                        code: 21,
                        log: "query data is not JSON: invalid".into(),
                    });
                };
                match self.ledger.query::<Value, Value>(&msg) {
                    Ok((answer, _)) => {
                        let data = serde_json::to_vec(&answer).unwrap_or_default();
                        Answer::ok(QuerySmartContractStateResponse { data }.encode_to_vec())
                    }
                    Err(e) => {
                        let text = e.refusal().map_or_else(|| e.to_string(), str::to_owned);
                        Answer::err(TxError {
                            codespace: "wasm",
                            code: 9,
                            log: format!("{text}: query wasm contract failed"),
                        })
                    }
                }
            }
            other => Answer::err(TxError::sdk(
                6,
                format!("{other} is not served by this development chain: unknown request"),
            )),
        }
    }

    /// Development only: the faucet sends `amount` to a chain address (as a `MsgSend` would).
    pub fn faucet_send(&mut self, to: &str, amount: u128) -> Result<(), TxError> {
        self.check_address(to)?;
        let faucet = self.faucet.clone();
        self.new_block();
        self.ledger.burn(&faucet, amount).map_err(|e| TxError::insufficient_funds(e.to_string()))?;
        self.ledger.mint(&Addr::unchecked(to), amount);
        self.touch(to);
        Ok(())
    }

    /// Development only: the faucet deposits `amount` into an escrow account (an ed25519 key),
    /// through the contract's own `Deposit`.
    pub fn faucet_deposit(&mut self, account: &[u8; 32], amount: u128) -> Result<(), TxError> {
        let faucet = self.faucet.clone();
        self.new_block();
        let msg = ExecuteMsg::Deposit { account: cosmwasm_std::HexBinary::from(account.as_slice()) };
        self.ledger.execute(&faucet, &msg, amount).map(drop).map_err(|e| TxError {
            codespace: "wasm",
            code: 5,
            log: format!("{e}: execute wasm contract failed"),
        })
    }
}

fn attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": value, "index": true})
}

fn message_event(action: &str, sender: &str, module: &str) -> Value {
    json!({"type": "message", "attributes": [attr("action", action), attr("sender", sender), attr("module", module)]})
}

fn transfer_event(recipient: &str, sender: &str, amount: u128, denom: &str) -> Value {
    json!({"type": "transfer", "attributes": [
        attr("recipient", recipient), attr("sender", sender), attr("amount", &format!("{amount}{denom}")),
    ]})
}
