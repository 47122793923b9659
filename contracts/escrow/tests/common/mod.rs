//! A cw-multi-test chain with the escrow, a relay, a client, a reporter and workers holding real
//! ed25519 keys (`starling_protocol::sign::Keypair`), shared by the flow and property tests.

#![allow(dead_code)] // each test binary uses a different part of the fixture

use cosmwasm_std::{Addr, Coin, HexBinary, StdResult, Uint128, coins};
use cw_multi_test::{App, AppResponse, ContractWrapper, Executor};
use serde::de::DeserializeOwned;
use starling_escrow::ContractError;
use starling_escrow::msg::{ExecuteMsg, InstantiateMsg, QueryMsg, TaskResult, WorkerSignature, registration_bytes};
use starling_protocol::sign::Keypair;
use starling_protocol::{Hash32, JobId, TaskId, sha256};

pub const DENOM: &str = "ustar";
/// Another denom every account holds, to attach the wrong coin.
pub const OTHER_DENOM: &str = "uother";
/// What every test account starts with.
pub const START_BALANCE: u128 = 1_000_000;
pub const MIN_BOND: u128 = 1_000;
pub const UNBONDING: u64 = 7_200;
pub const MAX_JOB: u64 = 3_600;
pub const FEE_BPS: u16 = 500;
pub const SLASH_BPS: u16 = 5_000;
pub const REPORTER_BPS: u16 = 2_000;

pub fn instantiate_msg(relay: &Addr) -> InstantiateMsg {
    InstantiateMsg {
        denom: DENOM.into(),
        relay: relay.to_string(),
        relay_fee_bps: FEE_BPS,
        min_bond: Uint128::new(MIN_BOND),
        unbonding_period: UNBONDING,
        max_job_duration: MAX_JOB,
        slash_bps: SLASH_BPS,
        reporter_share_bps: REPORTER_BPS,
    }
}

#[derive(Debug)]
pub struct TestWorker {
    pub key: Keypair,
    pub owner: Addr,
}

impl TestWorker {
    pub fn pubkey(&self) -> HexBinary {
        HexBinary::from(self.key.public().0.as_slice())
    }

    pub fn sign(&self, job_id: u64, index: u32, output_hash: &Hash32, output_len: u64) -> WorkerSignature {
        let sig = self.key.sign_result(TaskId { job: JobId(job_id), index }, output_hash, output_len);
        WorkerSignature { worker_pubkey: self.pubkey(), signature: HexBinary::from(sig.0.as_slice()) }
    }
}

pub struct Fixture {
    pub app: App,
    pub contract: Addr,
    pub relay: Addr,
    pub client: Addr,
    pub reporter: Addr,
    pub workers: Vec<TestWorker>,
}

/// The hash workers agree on for a task in these tests.
pub fn output_of(job_id: u64, index: u32) -> Hash32 {
    sha256(format!("output {job_id}/{index}").as_bytes())
}

pub const OUTPUT_LEN: u64 = 4096;

impl Fixture {
    /// A chain with `n_workers` funded accounts, their keys not yet registered.
    pub fn unregistered(n_workers: usize) -> Self {
        let mut app = App::default();
        let api = app.api();
        let relay = api.addr_make("relay");
        let client = api.addr_make("client");
        let reporter = api.addr_make("reporter");
        let workers: Vec<TestWorker> = (0..n_workers)
            .map(|i| TestWorker {
                key: Keypair::from_seed([u8::try_from(i).unwrap() + 1; 32]),
                owner: api.addr_make(&format!("worker{i}")),
            })
            .collect();
        let deployer = api.addr_make("deployer");
        app.init_modules(|router, _, storage| {
            for addr in [&relay, &client, &reporter].into_iter().chain(workers.iter().map(|w| &w.owner)) {
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
        Self { app, contract, relay, client, reporter, workers }
    }

    /// A chain whose workers are registered with `MIN_BOND` each.
    pub fn new(n_workers: usize) -> Self {
        let mut fixture = Self::unregistered(n_workers);
        for i in 0..n_workers {
            fixture.register(i, MIN_BOND).unwrap();
        }
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

    pub fn execute(&mut self, sender: &Addr, msg: &ExecuteMsg, funds: &[Coin]) -> StdResult<AppResponse> {
        self.app.execute_contract(sender.clone(), self.contract.clone(), msg, funds)
    }

    pub fn query<T: DeserializeOwned>(&self, msg: &QueryMsg) -> T {
        self.app.wrap().query_wasm_smart(&self.contract, msg).unwrap()
    }

    pub fn registration_proof(&self, worker: usize) -> HexBinary {
        let w = &self.workers[worker];
        let bytes = registration_bytes(self.contract.as_str(), w.owner.as_str(), &w.key.public().0);
        HexBinary::from(w.key.sign(&bytes).0.as_slice())
    }

    pub fn register(&mut self, worker: usize, bond: u128) -> StdResult<AppResponse> {
        let msg = ExecuteMsg::RegisterWorker {
            pubkey: self.workers[worker].pubkey(),
            proof: self.registration_proof(worker),
        };
        let owner = self.workers[worker].owner.clone();
        self.execute(&owner, &msg, &coins(bond, DENOM))
    }

    pub fn deposit_for(&self, tasks: u32, replicas: u8, price: u128) -> u128 {
        let fee = price * u128::from(FEE_BPS) / 10_000;
        u128::from(tasks) * u128::from(replicas) * (price + fee)
    }

    /// Opens a job as the client with the exact deposit and a deadline `duration` from now.
    pub fn create_job(
        &mut self,
        job_id: u64,
        tasks: u32,
        replicas: u8,
        quorum: u8,
        price: u128,
        duration: u64,
    ) -> StdResult<AppResponse> {
        let deposit = self.deposit_for(tasks, replicas, price);
        let msg = self.create_job_msg(job_id, tasks, replicas, quorum, price, duration);
        let client = self.client.clone();
        self.execute(&client, &msg, &coins(deposit, DENOM))
    }

    pub fn create_job_msg(
        &self,
        job_id: u64,
        tasks: u32,
        replicas: u8,
        quorum: u8,
        price: u128,
        duration: u64,
    ) -> ExecuteMsg {
        ExecuteMsg::CreateJob {
            job_id,
            tasks,
            replicas,
            quorum,
            price_per_replica: Uint128::new(price),
            deadline: self.now() + duration,
            slashable: true,
        }
    }

    /// A task result signed by the given workers over the agreed output.
    pub fn signed(&self, job_id: u64, index: u32, signers: &[usize]) -> TaskResult {
        let hash = output_of(job_id, index);
        TaskResult {
            index,
            output_hash: HexBinary::from(hash.0.as_slice()),
            output_len: OUTPUT_LEN,
            signatures: signers.iter().map(|&w| self.workers[w].sign(job_id, index, &hash, OUTPUT_LEN)).collect(),
        }
    }

    pub fn settle(&mut self, job_id: u64, tasks: Vec<TaskResult>) -> StdResult<AppResponse> {
        let relay = self.relay.clone();
        self.execute(&relay, &ExecuteMsg::SettleBatch { job_id, tasks }, &[])
    }

    /// Evidence that `worker` signed `wrong` for a task.
    pub fn evidence(&self, worker: usize, job_id: u64, index: u32, wrong: &Hash32) -> ExecuteMsg {
        let sig = self.workers[worker].sign(job_id, index, wrong, OUTPUT_LEN);
        ExecuteMsg::Slash {
            job_id,
            index,
            worker_pubkey: sig.worker_pubkey,
            output_hash: HexBinary::from(wrong.0.as_slice()),
            output_len: OUTPUT_LEN,
            signature: sig.signature,
        }
    }

    pub fn balance(&self, addr: &Addr) -> u128 {
        Uint128::try_from(self.app.wrap().query_balance(addr, DENOM).unwrap().amount).unwrap().u128()
    }

    pub fn accounts(&self) -> Vec<Addr> {
        let mut all = vec![self.relay.clone(), self.client.clone(), self.reporter.clone(), self.contract.clone()];
        all.extend(self.workers.iter().map(|w| w.owner.clone()));
        all
    }

    /// Every coin of the denom in existence on this chain.
    pub fn total_supply(&self) -> u128 {
        self.accounts().iter().map(|a| self.balance(a)).sum()
    }

    pub fn balances(&self) -> Vec<u128> {
        self.accounts().iter().map(|a| self.balance(a)).collect()
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
    let text = format!("{err:?}");
    assert!(text.contains(&expected.to_string()), "expected refusal `{expected}`, got: {text}");
}
