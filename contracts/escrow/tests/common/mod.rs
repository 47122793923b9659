//! A cw-multi-test chain with the escrow, a relay, a payer that funds accounts, a reporter,
//! account keys (a client and worker owners) and worker keys, all real ed25519
//! (`starling_protocol::sign::Keypair`), shared by the flow and property tests.

#![allow(dead_code)] // each test binary uses a different part of the fixture

use cosmwasm_std::{Addr, Coin, HexBinary, StdResult, Uint128, coins};
use cw_multi_test::{App, AppResponse, ContractWrapper, Executor};
use serde::de::DeserializeOwned;
use starling_escrow::ContractError;
use starling_escrow::msg::{
    Authorization, ExecuteMsg, InstantiateMsg, JobTerms, QueryMsg, TaskResult, WorkerSignature,
};
use starling_escrow::state::{Account, JobComparison, Totals};
use starling_protocol::sign::{AccountAction, Deployment, Keypair};
use starling_protocol::{Hash32, JobId, TaskId, sha256};
use std::collections::BTreeMap;

pub const DENOM: &str = "ustar";
/// Another denom the payer holds, to attach the wrong coin.
pub const OTHER_DENOM: &str = "uother";
/// What the payer, the relay and the reporter start with on the chain.
pub const START_BALANCE: u128 = 100_000_000;
pub const MIN_BOND: u128 = 1_000;
pub const UNBONDING: u64 = 7_200;
pub const MAX_JOB: u64 = 3_600;
pub const FEE_BPS: u16 = 500;
pub const SLASH_BPS: u16 = 5_000;
/// Least bond of a relay other than the deployment's own.
pub const MIN_RELAY_BOND: u128 = 50_000;
/// The chain `cw_multi_test::App` reports (`mock_env`'s).
pub const CHAIN_ID: &str = "cosmos-testnet-14002";

pub fn instantiate_msg(relay: &Addr) -> InstantiateMsg {
    InstantiateMsg {
        denom: DENOM.into(),
        relay: relay.to_string(),
        relay_fee_bps: FEE_BPS,
        min_bond: Uint128::new(MIN_BOND),
        unbonding_period: UNBONDING,
        max_job_duration: MAX_JOB,
        slash_bps: SLASH_BPS,
        min_relay_bond: Uint128::new(MIN_RELAY_BOND),
        relay_endpoint: Some("https://relay.example".into()),
    }
}

pub fn hex(bytes: &[u8]) -> HexBinary {
    HexBinary::from(bytes)
}

pub fn key_hex(key: &Keypair) -> HexBinary {
    hex(&key.public().0)
}

#[derive(Debug)]
pub struct TestWorker {
    pub key: Keypair,
    /// Index into `Fixture::owners`.
    pub owner: usize,
}

impl TestWorker {
    pub fn pubkey(&self) -> HexBinary {
        key_hex(&self.key)
    }
}

pub struct Fixture {
    pub app: App,
    pub contract: Addr,
    pub relay: Addr,
    /// A chain wallet that pays `Deposit`s into accounts (anyone may).
    pub payer: Addr,
    pub reporter: Addr,
    /// Another chain wallet, funded, that may register as a relay of its own.
    pub relay2: Addr,
    /// The client's account key.
    pub client: Keypair,
    /// Worker owners' account keys.
    pub owners: Vec<Keypair>,
    pub workers: Vec<TestWorker>,
    /// Chain wallets owners withdraw to, one per owner, and one for the client (last).
    pub wallets: Vec<Addr>,
    /// Spec digests of the jobs opened through the fixture.
    pub digests: BTreeMap<u64, Hash32>,
}

/// The hash workers agree on for a task in these tests.
pub fn output_of(job_id: u64, index: u32) -> Hash32 {
    sha256(format!("output {job_id}/{index}").as_bytes())
}

/// The spec digest the fixture gives job `job_id` unless told otherwise.
pub fn spec_of(job_id: u64) -> Hash32 {
    sha256(format!("spec of job {job_id}").as_bytes())
}

pub const OUTPUT_LEN: u64 = 4096;

impl Fixture {
    /// A chain with `owners.len()` worker keys, worker `i` owned by account `owners[i]`; nothing
    /// deposited or registered yet.
    pub fn with_owners(owners: &[usize]) -> Self {
        let mut app = App::default();
        let api = app.api();
        let relay = api.addr_make("relay");
        let payer = api.addr_make("payer");
        let reporter = api.addr_make("reporter");
        let relay2 = api.addr_make("relay2");
        let owner_count = owners.iter().copied().max().map_or(0, |m| m + 1);
        let workers: Vec<TestWorker> = owners
            .iter()
            .enumerate()
            .map(|(i, &owner)| TestWorker { key: Keypair::from_seed([u8::try_from(i).unwrap() + 1; 32]), owner })
            .collect();
        let owner_keys: Vec<Keypair> =
            (0..owner_count).map(|i| Keypair::from_seed([u8::try_from(i).unwrap() + 101; 32])).collect();
        let wallets: Vec<Addr> = (0..=owner_count).map(|i| api.addr_make(&format!("wallet{i}"))).collect();
        let deployer = api.addr_make("deployer");
        app.init_modules(|router, _, storage| {
            for addr in [&relay, &payer, &reporter, &relay2] {
                let funds = vec![Coin::new(START_BALANCE, OTHER_DENOM), Coin::new(START_BALANCE, DENOM)];
                router.bank.init_balance(storage, addr, funds).unwrap();
            }
        });
        let code = ContractWrapper::new(
            starling_escrow::contract::execute,
            starling_escrow::contract::instantiate,
            starling_escrow::contract::query,
        );
        let code_id = app.store_code(Box::new(code));
        let contract = app
            .instantiate_contract(code_id, deployer, &instantiate_msg(&relay), &[], "starling-escrow", None)
            .unwrap();
        Self {
            app,
            contract,
            relay,
            payer,
            reporter,
            relay2,
            client: Keypair::from_seed([99; 32]),
            owners: owner_keys,
            workers,
            wallets,
            digests: BTreeMap::new(),
        }
    }

    /// `n_workers` keys, each with its own owner account, none registered.
    pub fn unregistered(n_workers: usize) -> Self {
        Self::with_owners(&(0..n_workers).collect::<Vec<_>>())
    }

    /// `n_workers` keys of distinct owners, each registered with `MIN_BOND`, and the client's
    /// account funded with `START_BALANCE / 10`.
    pub fn new(n_workers: usize) -> Self {
        let mut fixture = Self::unregistered(n_workers);
        for i in 0..n_workers {
            fixture.register(i, MIN_BOND).unwrap();
        }
        let client = fixture.client_key();
        fixture.deposit(&client, START_BALANCE / 10).unwrap();
        fixture
    }

    pub fn now(&self) -> u64 {
        self.app.block_info().time.seconds()
    }

    pub fn advance(&mut self, seconds: u64) {
        self.app.update_block(|b| {
            b.time = b.time.plus_seconds(seconds);
            b.height += 1;
        });
    }

    pub fn deployment(&self) -> Deployment<'_> {
        Deployment { chain_id: CHAIN_ID, contract: self.contract.as_str() }
    }

    pub fn execute(&mut self, sender: &Addr, msg: &ExecuteMsg, funds: &[Coin]) -> StdResult<AppResponse> {
        self.app.execute_contract(sender.clone(), self.contract.clone(), msg, funds)
    }

    /// Runs `msg` as the relay (which submits nearly everything).
    pub fn relay_executes(&mut self, msg: &ExecuteMsg) -> StdResult<AppResponse> {
        let relay = self.relay.clone();
        self.execute(&relay, msg, &[])
    }

    pub fn query<T: DeserializeOwned>(&self, msg: &QueryMsg) -> T {
        self.app.wrap().query_wasm_smart(&self.contract, msg).unwrap()
    }

    /// A copy of the client's key (Keypair is not Clone on purpose; seeds are test-only).
    pub fn client_key(&self) -> Keypair {
        Keypair::from_seed(self.client.seed())
    }

    pub fn owner_key(&self, owner: usize) -> Keypair {
        Keypair::from_seed(self.owners[owner].seed())
    }

    pub fn owner_of(&self, worker: usize) -> Keypair {
        self.owner_key(self.workers[worker].owner)
    }

    /// Pays `amount` from the payer's wallet into `account`.
    pub fn deposit(&mut self, account: &Keypair, amount: u128) -> StdResult<AppResponse> {
        let payer = self.payer.clone();
        self.execute(&payer, &ExecuteMsg::Deposit { account: key_hex(account) }, &coins(amount, DENOM))
    }

    pub fn account(&self, account: &Keypair) -> Account {
        self.query(&QueryMsg::Account { pubkey: key_hex(account) })
    }

    pub fn totals(&self) -> Totals {
        self.query(&QueryMsg::Totals {})
    }

    /// `signer`'s signature over `action` for `account` at `nonce` in `deployment`.
    pub fn authorization_by(
        deployment: Deployment<'_>,
        signer: &Keypair,
        account: &Keypair,
        nonce: u64,
        action: &AccountAction,
    ) -> Authorization {
        let bytes = starling_protocol::sign::account_bytes(deployment, &account.public(), nonce, action);
        Authorization { account: key_hex(account), nonce, signature: hex(&signer.sign(&bytes).0) }
    }

    /// `account`'s own authorization of `action` at its current nonce, for this deployment.
    pub fn authorization(&self, account: &Keypair, action: &AccountAction) -> Authorization {
        let nonce = self.account(account).nonce;
        Self::authorization_by(self.deployment(), account, account, nonce, action)
    }

    /// Worker `worker`'s proof that it consents to be bonded under `owner`.
    pub fn registration_proof(&self, worker: usize, owner: &Keypair) -> HexBinary {
        hex(&self.workers[worker].key.sign_register_v2(self.deployment(), &owner.public()).0)
    }

    /// A bond of `amount` into `worker` authorized by its owner (with its registration proof).
    pub fn bond_msg(&self, worker: usize, amount: u128) -> ExecuteMsg {
        let owner = self.owner_of(worker);
        let action = AccountAction::Bond { worker: self.workers[worker].key.public(), amount };
        ExecuteMsg::Bond {
            authorization: self.authorization(&owner, &action),
            worker: self.workers[worker].pubkey(),
            amount: Uint128::new(amount),
            proof: Some(self.registration_proof(worker, &owner)),
        }
    }

    /// Funds the worker's owner account with `bond` and bonds it into the worker key.
    pub fn register(&mut self, worker: usize, bond: u128) -> StdResult<AppResponse> {
        let owner = self.owner_of(worker);
        self.deposit(&owner, bond)?;
        let msg = self.bond_msg(worker, bond);
        self.relay_executes(&msg)
    }

    pub fn unbond_msg(&self, worker: usize, amount: u128) -> ExecuteMsg {
        let owner = self.owner_of(worker);
        let action = AccountAction::Unbond { worker: self.workers[worker].key.public(), amount };
        ExecuteMsg::Unbond {
            authorization: self.authorization(&owner, &action),
            worker: self.workers[worker].pubkey(),
            amount: Uint128::new(amount),
        }
    }

    pub fn withdraw_msg(&self, account: &Keypair, to: &Addr, amount: u128) -> ExecuteMsg {
        let action = AccountAction::Withdraw { to: to.to_string(), amount };
        ExecuteMsg::Withdraw {
            authorization: self.authorization(account, &action),
            to: to.to_string(),
            amount: Uint128::new(amount),
        }
    }

    pub fn deposit_for(&self, tasks: u32, replicas: u8, price: u128) -> u128 {
        let fee = price * u128::from(FEE_BPS) / 10_000;
        u128::from(tasks) * u128::from(replicas) * (price + fee)
    }

    /// Exact terms with the fixture's digest for `job_id`, valid for the next minute.
    pub fn terms(&self, job_id: u64, tasks: u32, replicas: u8, quorum: u8, price: u128, duration: u64) -> JobTerms {
        JobTerms {
            spec_digest: hex(&spec_of(job_id).0),
            tasks,
            replicas,
            quorum,
            price_per_replica: Uint128::new(price),
            comparison: JobComparison::Exact,
            deadline_secs: duration,
            not_after: self.now() + 60,
        }
    }

    /// `CreateJob` for `terms`, signed by `client` for this deployment and relay.
    pub fn create_job_msg_by(&self, client: &Keypair, job_id: u64, terms: JobTerms) -> ExecuteMsg {
        let signature = client.sign_deposit(self.deployment(), self.relay.as_str(), &terms.to_protocol().unwrap());
        ExecuteMsg::CreateJob { job_id, client: key_hex(client), terms, signature: hex(&signature.0) }
    }

    /// Opens `job_id` (sent by the relay, paid from the client's account).
    pub fn create_job_with(&mut self, job_id: u64, terms: JobTerms) -> StdResult<AppResponse> {
        let digest = Hash32(terms.spec_digest.to_array().unwrap());
        let msg = self.create_job_msg_by(&self.client_key(), job_id, terms);
        let result = self.relay_executes(&msg);
        if result.is_ok() {
            self.digests.insert(job_id, digest);
        }
        result
    }

    /// Opens an exact job with a deadline `duration` from now.
    pub fn create_job(
        &mut self,
        job_id: u64,
        tasks: u32,
        replicas: u8,
        quorum: u8,
        price: u128,
        duration: u64,
    ) -> StdResult<AppResponse> {
        let terms = self.terms(job_id, tasks, replicas, quorum, price, duration);
        self.create_job_with(job_id, terms)
    }

    /// The digest result signatures for `job_id` name (the fixture's default for unknown jobs).
    pub fn digest(&self, job_id: u64) -> Hash32 {
        self.digests.get(&job_id).copied().unwrap_or_else(|| spec_of(job_id))
    }

    /// Worker `worker`'s v2 signature over (`hash`, `OUTPUT_LEN`) for a task of `job_id`.
    pub fn sign(&self, worker: usize, job_id: u64, index: u32, hash: &Hash32) -> WorkerSignature {
        let sig = self.workers[worker].key.sign_result_v2(
            self.deployment(),
            TaskId { job: JobId(job_id), index },
            &self.digest(job_id),
            hash,
            OUTPUT_LEN,
        );
        WorkerSignature { worker_pubkey: self.workers[worker].pubkey(), signature: hex(&sig.0), output_hash: None }
    }

    /// A task result signed by the given workers over the agreed output.
    pub fn signed(&self, job_id: u64, index: u32, signers: &[usize]) -> TaskResult {
        let hash = output_of(job_id, index);
        TaskResult {
            index,
            output_hash: hex(&hash.0),
            output_len: OUTPUT_LEN,
            signatures: signers.iter().map(|&w| self.sign(w, job_id, index, &hash)).collect(),
        }
    }

    pub fn settle(&mut self, job_id: u64, tasks: Vec<TaskResult>) -> StdResult<AppResponse> {
        self.relay_executes(&ExecuteMsg::SettleBatch { job_id, tasks })
    }

    /// `Slash` evidence carrying `signature` over (`wrong`, `OUTPUT_LEN`) by `worker`.
    pub fn evidence_with(
        &self,
        worker: usize,
        job_id: u64,
        index: u32,
        wrong: &Hash32,
        signature: HexBinary,
    ) -> ExecuteMsg {
        ExecuteMsg::Slash {
            relay: self.relay.to_string(),
            job_id,
            index,
            worker_pubkey: self.workers[worker].pubkey(),
            output_hash: hex(&wrong.0),
            output_len: OUTPUT_LEN,
            signature,
        }
    }

    /// Evidence that `worker` signed `wrong` for a task (a v2 signature for this deployment).
    pub fn evidence(&self, worker: usize, job_id: u64, index: u32, wrong: &Hash32) -> ExecuteMsg {
        let sig = self.sign(worker, job_id, index, wrong);
        self.evidence_with(worker, job_id, index, wrong, sig.signature)
    }

    pub fn refund_msg(&self, job_id: u64) -> ExecuteMsg {
        ExecuteMsg::Refund { relay: self.relay.to_string(), job_id }
    }

    /// A chain wallet's balance of the denom.
    pub fn balance(&self, addr: &Addr) -> u128 {
        Uint128::try_from(self.app.wrap().query_balance(addr, DENOM).unwrap().amount).unwrap().u128()
    }

    pub fn wallets_and_contract(&self) -> Vec<Addr> {
        let mut all = vec![
            self.relay.clone(),
            self.payer.clone(),
            self.reporter.clone(),
            self.relay2.clone(),
            self.contract.clone(),
        ];
        all.extend(self.wallets.iter().cloned());
        all
    }

    /// Every coin of the denom on this chain (burns make it smaller).
    pub fn total_supply(&self) -> u128 {
        self.wallets_and_contract().iter().map(|a| self.balance(a)).sum()
    }

    /// Chain balances and every account's balance and nonce: what a refused message must not move.
    pub fn snapshot(&self) -> (Vec<u128>, Vec<(Uint128, u64)>) {
        let chain = self.wallets_and_contract().iter().map(|a| self.balance(a)).collect();
        let accounts = std::iter::once(self.client_key())
            .chain((0..self.owners.len()).map(|o| self.owner_key(o)))
            .map(|k| {
                let a = self.account(&k);
                (a.balance, a.nonce)
            })
            .collect();
        (chain, accounts)
    }
}

/// Asserts `result` was refused with exactly `expected` (cw-multi-test carries contract errors as
/// their messages).
#[track_caller]
pub fn assert_refused(result: StdResult<AppResponse>, expected: ContractError) {
    let err = match result {
        Ok(response) => panic!("expected refusal `{expected}`, got {response:?}"),
        Err(err) => err,
    };
    // The message chain only: the debug form carries a backtrace.
    let text = err.to_string();
    assert!(text.contains(&expected.to_string()), "expected refusal `{expected}`, got: {text}");
}
