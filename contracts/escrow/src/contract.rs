//! Entry points and handlers. Each `execute_*` validates everything first and writes only once the
//! whole message is accepted (the chain would roll back anyway; this keeps the handlers honest
//! under mock storage too).

use crate::error::{ContractError, Result};
use crate::msg::{
    DepositResponse, ExecuteMsg, InstantiateMsg, JobResponse, JobsResponse, QueryMsg, TaskResponse, TaskResult,
    TasksResponse, WorkerResponse, WorkersResponse, registration_bytes,
};
use crate::state::{ACCOUNTS, Account, CONFIG, Config, JOBS, Job, SLASHED, SettledTask, TASKS, WORKERS, Worker};
use cosmwasm_std::{
    Addr, BankMsg, Binary, Coin, Deps, DepsMut, Empty, Env, HexBinary, MessageInfo, Order, Response, StdResult,
    Storage, Uint128, Uint256, to_json_binary,
};
use cw_storage_plus::Bound;
use starling_protocol::sign::result_bytes;
use starling_protocol::{Hash32, JobId, PublicKey, TaskId};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

#[cfg(not(feature = "library"))]
use cosmwasm_std::entry_point;

const CONTRACT_NAME: &str = "crates.io:starling-escrow";
const CONTRACT_VERSION: &str = env!("CARGO_PKG_VERSION");
const DEFAULT_PAGE: u32 = 10;
const MAX_PAGE: u32 = 30;

#[cfg_attr(not(feature = "library"), entry_point)]
pub fn instantiate(deps: DepsMut, _env: Env, _info: MessageInfo, msg: InstantiateMsg) -> Result<Response> {
    let config = Config {
        denom: msg.denom,
        relay: deps.api.addr_validate(&msg.relay)?,
        relay_fee_bps: msg.relay_fee_bps,
        min_bond: msg.min_bond,
        unbonding_period: msg.unbonding_period,
        max_job_duration: msg.max_job_duration,
        slash_bps: msg.slash_bps,
        reporter_share_bps: msg.reporter_share_bps,
    };
    config.validate()?;
    cw2::set_contract_version(deps.storage, CONTRACT_NAME, CONTRACT_VERSION)?;
    CONFIG.save(deps.storage, &config)?;
    Ok(Response::new().add_attribute("action", "instantiate").add_attribute("relay", config.relay))
}

#[cfg_attr(not(feature = "library"), entry_point)]
pub fn execute(deps: DepsMut, env: Env, info: MessageInfo, msg: ExecuteMsg) -> Result<Response> {
    match msg {
        ExecuteMsg::RegisterWorker { pubkey, proof } => execute_register_worker(deps, env, info, pubkey, proof),
        ExecuteMsg::Bond { pubkey } => execute_bond(deps, info, pubkey),
        ExecuteMsg::Unbond { pubkey, amount } => execute_unbond(deps, env, info, pubkey, amount),
        ExecuteMsg::Withdraw { pubkey } => execute_withdraw(deps, env, info, pubkey),
        ExecuteMsg::CreateJob { job_id, tasks, replicas, quorum, price_per_replica, deadline, slashable } => {
            execute_create_job(
                deps,
                env,
                info,
                JobShape { job_id, tasks, replicas, quorum, price_per_replica, deadline, slashable },
            )
        }
        ExecuteMsg::SettleBatch { job_id, tasks } => execute_settle_batch(deps, env, info, job_id, tasks),
        ExecuteMsg::Slash { job_id, index, worker_pubkey, output_hash, output_len, signature } => {
            execute_slash(deps, info, Evidence { job_id, index, worker_pubkey, output_hash, output_len, signature })
        }
        ExecuteMsg::Refund { job_id } => execute_refund(deps, env, job_id),
        ExecuteMsg::Close { job_id } => execute_close(deps, info, job_id),
    }
}

pub fn execute_register_worker(
    deps: DepsMut,
    env: Env,
    info: MessageInfo,
    pubkey: HexBinary,
    proof: HexBinary,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let key: [u8; 32] = fixed(&pubkey, "pubkey")?;
    let proof: [u8; 64] = fixed(&proof, "proof")?;
    if WORKERS.has(deps.storage, &key) {
        return Err(ContractError::WorkerExists { worker: pubkey.to_hex() });
    }
    let bond = attached(&info, &config.denom)?;
    if bond < config.min_bond {
        return Err(ContractError::InsufficientFunds {
            min: format!("{}{}", config.min_bond, config.denom),
            got: describe_funds(&info.funds),
        });
    }
    let message = registration_bytes(env.contract.address.as_str(), info.sender.as_str(), &key);
    // An invalid key (not a curve point) is an error from the API: the proof fails either way.
    if !deps.api.ed25519_verify(&message, &proof, &key).unwrap_or(false) {
        return Err(ContractError::BadRegistrationProof { worker: pubkey.to_hex() });
    }
    WORKERS.save(deps.storage, &key, &Worker::new(info.sender.clone(), bond))?;
    Ok(Response::new()
        .add_attribute("action", "register_worker")
        .add_attribute("worker", pubkey.to_hex())
        .add_attribute("owner", info.sender)
        .add_attribute("bond", bond))
}

pub fn execute_bond(deps: DepsMut, info: MessageInfo, pubkey: HexBinary) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let (key, mut worker) = load_owned_worker(deps.storage, &info.sender, &pubkey)?;
    let amount = attached(&info, &config.denom)?;
    worker.bond(amount)?;
    WORKERS.save(deps.storage, &key, &worker)?;
    Ok(Response::new()
        .add_attribute("action", "bond")
        .add_attribute("worker", pubkey.to_hex())
        .add_attribute("bonded", worker.bonded))
}

pub fn execute_unbond(
    deps: DepsMut,
    env: Env,
    info: MessageInfo,
    pubkey: HexBinary,
    amount: Uint128,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let (key, mut worker) = load_owned_worker(deps.storage, &info.sender, &pubkey)?;
    worker.start_unbonding(&pubkey.to_hex(), amount, env.block.time.seconds(), config.unbonding_period)?;
    WORKERS.save(deps.storage, &key, &worker)?;
    Ok(Response::new()
        .add_attribute("action", "unbond")
        .add_attribute("worker", pubkey.to_hex())
        .add_attribute("amount", amount)
        .add_attribute("release_at", worker.release_at.to_string()))
}

pub fn execute_withdraw(deps: DepsMut, env: Env, info: MessageInfo, pubkey: HexBinary) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let (key, mut worker) = load_owned_worker(deps.storage, &info.sender, &pubkey)?;
    let amount = worker.withdraw(&pubkey.to_hex(), env.block.time.seconds())?;
    WORKERS.save(deps.storage, &key, &worker)?;
    Ok(Response::new()
        .add_message(send(&worker.owner, amount, &config.denom))
        .add_attribute("action", "withdraw")
        .add_attribute("worker", pubkey.to_hex())
        .add_attribute("amount", amount))
}

/// The fields of `ExecuteMsg::CreateJob`.
#[derive(Debug, Clone)]
pub struct JobShape {
    pub job_id: u64,
    pub tasks: u32,
    pub replicas: u8,
    pub quorum: u8,
    pub price_per_replica: Uint128,
    pub deadline: u64,
    pub slashable: bool,
}

pub fn execute_create_job(deps: DepsMut, env: Env, info: MessageInfo, shape: JobShape) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let now = env.block.time.seconds();
    let invalid = |name, reason: String| ContractError::InvalidParameter { name, reason };
    if shape.tasks == 0 {
        return Err(invalid("tasks", "zero".into()));
    }
    if shape.replicas == 0 {
        return Err(invalid("replicas", "zero".into()));
    }
    if shape.quorum == 0 || shape.quorum > shape.replicas {
        return Err(invalid("quorum", format!("must be 1..={} (replicas), got {}", shape.replicas, shape.quorum)));
    }
    if shape.price_per_replica.is_zero() {
        return Err(invalid("price_per_replica", "zero".into()));
    }
    if shape.deadline <= now {
        return Err(invalid("deadline", format!("{} is not after now ({now})", shape.deadline)));
    }
    let latest = now.saturating_add(config.max_job_duration);
    if shape.deadline > latest {
        return Err(invalid("deadline", format!("{} is after now + max_job_duration ({latest})", shape.deadline)));
    }
    if JOBS.has(deps.storage, shape.job_id) {
        return Err(ContractError::JobExists { job_id: shape.job_id });
    }
    let fee_per_replica = config.fee_per_replica(shape.price_per_replica)?;
    let deposit = Job::deposit_for(shape.tasks, shape.replicas, shape.price_per_replica, fee_per_replica)?;
    if !matches!(info.funds.as_slice(), [coin] if coin.denom == config.denom && coin.amount == Uint256::from(deposit)) {
        return Err(ContractError::WrongFunds {
            expected: format!("{deposit}{}", config.denom),
            got: describe_funds(&info.funds),
        });
    }
    let job = Job {
        client: info.sender.clone(),
        relay: config.relay,
        tasks: shape.tasks,
        replicas: shape.replicas,
        quorum: shape.quorum,
        price_per_replica: shape.price_per_replica,
        fee_per_replica,
        deadline: shape.deadline,
        slashable: shape.slashable,
        deposit,
        settled_tasks: 0,
        paid_to_workers: Uint128::zero(),
        paid_to_relay: Uint128::zero(),
        refunded: None,
    };
    JOBS.save(deps.storage, shape.job_id, &job)?;
    update_account(deps.storage, &info.sender, |a| {
        a.deposited = a.deposited.checked_add(deposit)?;
        Ok(())
    })?;
    Ok(Response::new()
        .add_attribute("action", "create_job")
        .add_attribute("job_id", shape.job_id.to_string())
        .add_attribute("client", info.sender)
        .add_attribute("deposit", deposit))
}

/// A task that passed every check but the signatures, with the bytes its signers signed.
struct CheckedTask {
    index: u32,
    output_hash: [u8; 32],
    output_len: u64,
    signers: Vec<[u8; 32]>,
    signatures: Vec<[u8; 64]>,
    messages: Vec<Vec<u8>>,
}

pub fn execute_settle_batch(
    deps: DepsMut,
    env: Env,
    info: MessageInfo,
    job_id: u64,
    tasks: Vec<TaskResult>,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let mut job = JOBS.may_load(deps.storage, job_id)?.ok_or(ContractError::JobNotFound { job_id })?;
    if info.sender != job.relay {
        return Err(ContractError::Unauthorized { expected: job.relay.into_string() });
    }
    let now = env.block.time.seconds();
    job.ensure_open(job_id, now)?;
    if tasks.is_empty() {
        return Err(ContractError::EmptyBatch { job_id });
    }

    // Every structural and stake check, task by task, before any signature work.
    let mut workers: BTreeMap<[u8; 32], Worker> = BTreeMap::new();
    let mut seen_tasks = BTreeSet::new();
    let mut checked = Vec::with_capacity(tasks.len());
    for task in tasks {
        let index = task.index;
        if index >= job.tasks {
            return Err(ContractError::TaskOutOfRange { job_id, index, tasks: job.tasks });
        }
        if !seen_tasks.insert(index) {
            return Err(ContractError::DuplicateTask { job_id, index });
        }
        if TASKS.has(deps.storage, (job_id, index)) {
            return Err(ContractError::TaskAlreadySettled { job_id, index });
        }
        let signers = task.signatures.len();
        if signers < usize::from(job.quorum) {
            return Err(ContractError::BelowQuorum { job_id, index, signers, quorum: job.quorum });
        }
        if signers > usize::from(job.replicas) {
            return Err(ContractError::TooManySigners { job_id, index, signers, replicas: job.replicas });
        }
        let output_hash: [u8; 32] = fixed(&task.output_hash, "output_hash")?;
        let mut entry = CheckedTask {
            index,
            output_hash,
            output_len: task.output_len,
            signers: Vec::with_capacity(signers),
            signatures: Vec::with_capacity(signers),
            messages: Vec::with_capacity(signers),
        };
        for sig in task.signatures {
            let key: [u8; 32] = fixed(&sig.worker_pubkey, "worker_pubkey")?;
            let worker_name = || sig.worker_pubkey.to_hex();
            if entry.signers.contains(&key) {
                return Err(ContractError::DuplicateSigner { job_id, index, worker: worker_name() });
            }
            let worker = match workers.entry(key) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(slot) => match WORKERS.may_load(deps.storage, &key)? {
                    Some(worker) => slot.insert(worker),
                    None => {
                        return Err(ContractError::SignerNotRegistered { job_id, index, worker: worker_name() });
                    }
                },
            };
            if !worker.is_eligible(config.min_bond) {
                return Err(ContractError::SignerNotBonded {
                    job_id,
                    index,
                    worker: worker_name(),
                    bonded: worker.bonded,
                    min_bond: config.min_bond,
                });
            }
            entry.signatures.push(fixed(&sig.signature, "signature")?);
            entry.messages.push(result_bytes(
                TaskId { job: JobId(job_id), index },
                &Hash32(output_hash),
                task.output_len,
                &PublicKey(key),
            ));
            entry.signers.push(key);
        }
        checked.push(entry);
    }

    verify_batch(deps.as_ref(), job_id, &checked)?;

    // Accepted: record and pay.
    let mut pay: BTreeMap<Addr, Uint128> = BTreeMap::new();
    let mut fees = Uint128::zero();
    for task in checked {
        let signers = u8::try_from(task.signers.len()).expect("at most `replicas` (a u8) signers");
        let (_, fee) = job.record_settlement(signers)?;
        fees = fees.checked_add(fee)?;
        for key in &task.signers {
            let owed = pay.entry(workers[key].owner.clone()).or_default();
            *owed = owed.checked_add(job.price_per_replica)?;
        }
        let settled = SettledTask {
            output_hash: HexBinary::from(task.output_hash.as_slice()),
            output_len: task.output_len,
            paid_workers: task.signers.iter().map(|k| HexBinary::from(k.as_slice())).collect(),
            settled_at: now,
        };
        TASKS.save(deps.storage, (job_id, task.index), &settled)?;
    }
    JOBS.save(deps.storage, job_id, &job)?;

    let mut response = Response::new()
        .add_attribute("action", "settle_batch")
        .add_attribute("job_id", job_id.to_string())
        .add_attribute("settled_tasks", job.settled_tasks.to_string())
        .add_attribute("relay_fee", fees);
    for (owner, amount) in pay {
        update_account(deps.storage, &owner, |a| {
            a.earned_work = a.earned_work.checked_add(amount)?;
            Ok(())
        })?;
        response = response.add_message(send(&owner, amount, &config.denom));
    }
    if !fees.is_zero() {
        update_account(deps.storage, &job.relay, |a| {
            a.earned_fees = a.earned_fees.checked_add(fees)?;
            Ok(())
        })?;
        response = response.add_message(send(&job.relay, fees, &config.denom));
    }
    Ok(response)
}

/// One batched ed25519 verification for the whole batch; when it fails, finds the first bad
/// signature one by one so the error names it (the relay then drops that entry and resubmits).
fn verify_batch(deps: Deps, job_id: u64, tasks: &[CheckedTask]) -> Result<()> {
    let messages: Vec<&[u8]> = tasks.iter().flat_map(|t| t.messages.iter().map(Vec::as_slice)).collect();
    let signatures: Vec<&[u8]> = tasks.iter().flat_map(|t| t.signatures.iter().map(|s| s.as_slice())).collect();
    let keys: Vec<&[u8]> = tasks.iter().flat_map(|t| t.signers.iter().map(|k| k.as_slice())).collect();
    if deps.api.ed25519_batch_verify(&messages, &signatures, &keys).unwrap_or(false) {
        return Ok(());
    }
    for task in tasks {
        for ((message, signature), key) in task.messages.iter().zip(&task.signatures).zip(&task.signers) {
            if !deps.api.ed25519_verify(message, signature, key).unwrap_or(false) {
                return Err(ContractError::InvalidSignature {
                    job_id,
                    index: task.index,
                    worker: HexBinary::from(key.as_slice()).to_hex(),
                });
            }
        }
    }
    // Batch and single verification disagree only if the crypto backend is broken; refuse.
    Err(ContractError::InvalidSignature { job_id, index: tasks[0].index, worker: "unknown".into() })
}

/// The fields of `ExecuteMsg::Slash`.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub job_id: u64,
    pub index: u32,
    pub worker_pubkey: HexBinary,
    pub output_hash: HexBinary,
    pub output_len: u64,
    pub signature: HexBinary,
}

pub fn execute_slash(deps: DepsMut, info: MessageInfo, evidence: Evidence) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let Evidence { job_id, index, .. } = evidence;
    let job = JOBS.may_load(deps.storage, job_id)?.ok_or(ContractError::JobNotFound { job_id })?;
    if !job.slashable {
        return Err(ContractError::NotSlashable { job_id });
    }
    let settled =
        TASKS.may_load(deps.storage, (job_id, index))?.ok_or(ContractError::TaskNotSettled { job_id, index })?;
    let key: [u8; 32] = fixed(&evidence.worker_pubkey, "worker_pubkey")?;
    let output_hash: [u8; 32] = fixed(&evidence.output_hash, "output_hash")?;
    let signature: [u8; 64] = fixed(&evidence.signature, "signature")?;
    let worker_name = evidence.worker_pubkey.to_hex();
    if !settled.contradicted_by(&output_hash, evidence.output_len) {
        return Err(ContractError::EvidenceAgrees { job_id, index });
    }
    let mut worker = WORKERS
        .may_load(deps.storage, &key)?
        .ok_or_else(|| ContractError::UnknownWorker { worker: worker_name.clone() })?;
    if SLASHED.has(deps.storage, (job_id, index, &key)) {
        return Err(ContractError::AlreadySlashed { job_id, index, worker: worker_name });
    }
    let message =
        result_bytes(TaskId { job: JobId(job_id), index }, &Hash32(output_hash), evidence.output_len, &PublicKey(key));
    if !deps.api.ed25519_verify(&message, &signature, &key).unwrap_or(false) {
        return Err(ContractError::InvalidSignature { job_id, index, worker: worker_name });
    }

    let slashed = worker.slash(&worker_name, config.slash_bps)?;
    let (to_reporter, to_client) = config.split_slash(slashed)?;
    WORKERS.save(deps.storage, &key, &worker)?;
    SLASHED.save(deps.storage, (job_id, index, &key), &Empty {})?;

    let mut response = Response::new()
        .add_attribute("action", "slash")
        .add_attribute("job_id", job_id.to_string())
        .add_attribute("index", index.to_string())
        .add_attribute("worker", worker_name)
        .add_attribute("slashed", slashed);
    for (recipient, amount) in [(&info.sender, to_reporter), (&job.client, to_client)] {
        if amount.is_zero() {
            continue;
        }
        update_account(deps.storage, recipient, |a| {
            a.slash_rewards = a.slash_rewards.checked_add(amount)?;
            Ok(())
        })?;
        response = response.add_message(send(recipient, amount, &config.denom));
    }
    Ok(response)
}

pub fn execute_refund(deps: DepsMut, env: Env, job_id: u64) -> Result<Response> {
    let mut job = JOBS.may_load(deps.storage, job_id)?.ok_or(ContractError::JobNotFound { job_id })?;
    let amount = job.take_refund(job_id, env.block.time.seconds())?;
    pay_refund(deps, job_id, &job, amount, "refund")
}

pub fn execute_close(deps: DepsMut, info: MessageInfo, job_id: u64) -> Result<Response> {
    let mut job = JOBS.may_load(deps.storage, job_id)?.ok_or(ContractError::JobNotFound { job_id })?;
    if info.sender != job.relay {
        return Err(ContractError::Unauthorized { expected: job.relay.into_string() });
    }
    let amount = job.take_close(job_id)?;
    pay_refund(deps, job_id, &job, amount, "close")
}

/// Saves a job whose refund was just taken and sends the refund to its client.
fn pay_refund(deps: DepsMut, job_id: u64, job: &Job, amount: Uint128, action: &str) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    JOBS.save(deps.storage, job_id, job)?;
    let mut response = Response::new()
        .add_attribute("action", action)
        .add_attribute("job_id", job_id.to_string())
        .add_attribute("amount", amount);
    if !amount.is_zero() {
        update_account(deps.storage, &job.client, |a| {
            a.refunded = a.refunded.checked_add(amount)?;
            Ok(())
        })?;
        response = response.add_message(send(&job.client, amount, &config.denom));
    }
    Ok(response)
}

#[cfg_attr(not(feature = "library"), entry_point)]
pub fn query(deps: Deps, env: Env, msg: QueryMsg) -> Result<Binary> {
    let now = env.block.time.seconds();
    Ok(match msg {
        QueryMsg::Config {} => to_json_binary(&CONFIG.load(deps.storage)?)?,
        QueryMsg::Deposit { tasks, replicas, price_per_replica } => {
            to_json_binary(&query_deposit(deps, tasks, replicas, price_per_replica)?)?
        }
        QueryMsg::Job { job_id } => to_json_binary(&query_job(deps, now, job_id)?)?,
        QueryMsg::Jobs { start_after, limit } => to_json_binary(&query_jobs(deps, now, start_after, limit)?)?,
        QueryMsg::Task { job_id, index } => {
            to_json_binary(&TaskResponse { job_id, index, settled: TASKS.may_load(deps.storage, (job_id, index))? })?
        }
        QueryMsg::Tasks { job_id, start_after, limit } => {
            to_json_binary(&query_tasks(deps, job_id, start_after, limit)?)?
        }
        QueryMsg::Worker { pubkey } => to_json_binary(&query_worker(deps, pubkey)?)?,
        QueryMsg::Workers { start_after, limit } => to_json_binary(&query_workers(deps, start_after, limit)?)?,
        QueryMsg::Account { address } => {
            let address = deps.api.addr_validate(&address)?;
            to_json_binary(&ACCOUNTS.may_load(deps.storage, &address)?.unwrap_or_default())?
        }
    })
}

pub fn query_deposit(deps: Deps, tasks: u32, replicas: u8, price_per_replica: Uint128) -> Result<DepositResponse> {
    let config = CONFIG.load(deps.storage)?;
    let fee_per_replica = config.fee_per_replica(price_per_replica)?;
    Ok(DepositResponse {
        fee_per_replica,
        deposit: Job::deposit_for(tasks, replicas, price_per_replica, fee_per_replica)?,
    })
}

pub fn query_job(deps: Deps, now: u64, job_id: u64) -> Result<JobResponse> {
    let job = JOBS.may_load(deps.storage, job_id)?.ok_or(ContractError::JobNotFound { job_id })?;
    job_response(job_id, job, now)
}

pub fn query_jobs(deps: Deps, now: u64, start_after: Option<u64>, limit: Option<u32>) -> Result<JobsResponse> {
    let jobs = JOBS
        .range(deps.storage, start_after.map(Bound::exclusive), None, Order::Ascending)
        .take(page(limit))
        .map(|item| {
            let (job_id, job) = item?;
            job_response(job_id, job, now)
        })
        .collect::<Result<_>>()?;
    Ok(JobsResponse { jobs })
}

pub fn query_tasks(deps: Deps, job_id: u64, start_after: Option<u32>, limit: Option<u32>) -> Result<TasksResponse> {
    let tasks = TASKS
        .prefix(job_id)
        .range(deps.storage, start_after.map(Bound::exclusive), None, Order::Ascending)
        .take(page(limit))
        .map(|item| item.map(|(index, settled)| TaskResponse { job_id, index, settled: Some(settled) }))
        .collect::<StdResult<_>>()?;
    Ok(TasksResponse { tasks })
}

pub fn query_worker(deps: Deps, pubkey: HexBinary) -> Result<WorkerResponse> {
    let config = CONFIG.load(deps.storage)?;
    let key: [u8; 32] = fixed(&pubkey, "pubkey")?;
    let worker =
        WORKERS.may_load(deps.storage, &key)?.ok_or(ContractError::UnknownWorker { worker: pubkey.to_hex() })?;
    Ok(worker_response(pubkey, worker, config.min_bond))
}

pub fn query_workers(deps: Deps, start_after: Option<HexBinary>, limit: Option<u32>) -> Result<WorkersResponse> {
    let config = CONFIG.load(deps.storage)?;
    let workers = WORKERS
        .range(deps.storage, start_after.as_ref().map(|k| Bound::exclusive(k.as_slice())), None, Order::Ascending)
        .take(page(limit))
        .map(|item| item.map(|(key, worker)| worker_response(HexBinary::from(key), worker, config.min_bond)))
        .collect::<StdResult<_>>()?;
    Ok(WorkersResponse { workers })
}

fn job_response(job_id: u64, job: Job, now: u64) -> Result<JobResponse> {
    let remaining = job.remaining()?;
    let status = job.status(now);
    Ok(JobResponse {
        job_id,
        client: job.client,
        relay: job.relay,
        tasks: job.tasks,
        replicas: job.replicas,
        quorum: job.quorum,
        price_per_replica: job.price_per_replica,
        fee_per_replica: job.fee_per_replica,
        deadline: job.deadline,
        slashable: job.slashable,
        deposit: job.deposit,
        settled_tasks: job.settled_tasks,
        paid_to_workers: job.paid_to_workers,
        paid_to_relay: job.paid_to_relay,
        refunded: job.refunded,
        remaining,
        status,
    })
}

fn worker_response(pubkey: HexBinary, worker: Worker, min_bond: Uint128) -> WorkerResponse {
    WorkerResponse {
        pubkey,
        eligible: worker.is_eligible(min_bond),
        owner: worker.owner,
        bonded: worker.bonded,
        unbonding: worker.unbonding,
        release_at: worker.release_at,
        slashed: worker.slashed,
    }
}

fn page(limit: Option<u32>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE) as usize
}

/// A fixed-length byte string from a hex field.
fn fixed<const N: usize>(bytes: &HexBinary, what: &'static str) -> Result<[u8; N]> {
    bytes.to_array().map_err(|_| ContractError::BadLength { what, expected: N, got: bytes.len() })
}

/// The one positive coin of `denom` attached to a message.
fn attached(info: &MessageInfo, denom: &str) -> Result<Uint128> {
    match info.funds.as_slice() {
        [coin] if coin.denom == denom && !coin.amount.is_zero() => Ok(Uint128::try_from(coin.amount)?),
        other => Err(ContractError::WrongFunds {
            expected: format!("a positive amount of {denom}"),
            got: describe_funds(other),
        }),
    }
}

fn describe_funds(funds: &[Coin]) -> String {
    if funds.is_empty() {
        return "nothing".into();
    }
    funds.iter().map(Coin::to_string).collect::<Vec<_>>().join(",")
}

fn load_owned_worker(storage: &dyn Storage, sender: &Addr, pubkey: &HexBinary) -> Result<([u8; 32], Worker)> {
    let key: [u8; 32] = fixed(pubkey, "pubkey")?;
    let worker =
        WORKERS.may_load(storage, &key)?.ok_or_else(|| ContractError::UnknownWorker { worker: pubkey.to_hex() })?;
    if worker.owner != *sender {
        return Err(ContractError::Unauthorized { expected: worker.owner.into_string() });
    }
    Ok((key, worker))
}

fn update_account(
    storage: &mut dyn Storage,
    address: &Addr,
    change: impl FnOnce(&mut Account) -> Result<()>,
) -> Result<()> {
    let mut account = ACCOUNTS.may_load(storage, address)?.unwrap_or_default();
    change(&mut account)?;
    ACCOUNTS.save(storage, address, &account)?;
    Ok(())
}

fn send(to: &Addr, amount: Uint128, denom: &str) -> BankMsg {
    BankMsg::Send { to_address: to.to_string(), amount: vec![Coin::new(amount, denom)] }
}

#[cfg(test)]
mod tests {
    //! One test per handler with `mock_dependencies` (whose API verifies ed25519 for real).
    //! Flows across several messages and balances live in `tests/flows.rs` (cw-multi-test).

    use super::*;
    use crate::state::JobStatus;
    use cosmwasm_std::testing::{MockApi, MockQuerier, MockStorage, message_info, mock_dependencies, mock_env};
    use cosmwasm_std::{CosmosMsg, OwnedDeps, Timestamp, coins, from_json};
    use starling_protocol::sign::Keypair;

    const DENOM: &str = "ustar";
    type Deps = OwnedDeps<MockStorage, MockApi, MockQuerier>;

    fn key(seed: u8) -> Keypair {
        Keypair::from_seed([seed; 32])
    }

    fn hex_key(k: &Keypair) -> HexBinary {
        HexBinary::from(k.public().0.as_slice())
    }

    fn addr(deps: &Deps, name: &str) -> Addr {
        deps.api.addr_make(name)
    }

    fn env_at(seconds: u64) -> Env {
        let mut env = mock_env();
        env.block.time = Timestamp::from_seconds(seconds);
        env
    }

    fn setup() -> Deps {
        let mut deps = mock_dependencies();
        let msg = InstantiateMsg {
            denom: DENOM.into(),
            relay: addr(&deps, "relay").into_string(),
            relay_fee_bps: 1_000,
            min_bond: Uint128::new(500),
            unbonding_period: 200,
            max_job_duration: 100,
            slash_bps: 10_000,
            reporter_share_bps: 5_000,
        };
        let info = message_info(&addr(&deps, "deployer"), &[]);
        instantiate(deps.as_mut(), env_at(0), info, msg).unwrap();
        deps
    }

    fn register(deps: &mut Deps, k: &Keypair, owner: &str, bond: u128) -> Result<Response> {
        let owner = addr(deps, owner);
        let contract = mock_env().contract.address;
        let proof = k.sign(&registration_bytes(contract.as_str(), owner.as_str(), &k.public().0));
        let msg = ExecuteMsg::RegisterWorker { pubkey: hex_key(k), proof: HexBinary::from(proof.0.as_slice()) };
        execute(deps.as_mut(), env_at(0), message_info(&owner, &coins(bond, DENOM)), msg)
    }

    /// Job 1: 2 tasks × 2 replicas, quorum 2, price 100 (fee 10), deadline 100.
    fn create_job(deps: &mut Deps) {
        let msg = ExecuteMsg::CreateJob {
            job_id: 1,
            tasks: 2,
            replicas: 2,
            quorum: 2,
            price_per_replica: Uint128::new(100),
            deadline: 100,
            slashable: true,
        };
        let info = message_info(&addr(deps, "client"), &coins(2 * 2 * 110, DENOM));
        execute(deps.as_mut(), env_at(0), info, msg).unwrap();
    }

    fn signed(index: u32, hash: [u8; 32], signers: &[&Keypair]) -> TaskResult {
        TaskResult {
            index,
            output_hash: HexBinary::from(hash.as_slice()),
            output_len: 64,
            signatures: signers
                .iter()
                .map(|k| crate::msg::WorkerSignature {
                    worker_pubkey: hex_key(k),
                    signature: HexBinary::from(
                        k.sign_result(TaskId { job: JobId(1), index }, &Hash32(hash), 64).0.as_slice(),
                    ),
                })
                .collect(),
        }
    }

    fn settle(deps: &mut Deps, at: u64, tasks: Vec<TaskResult>) -> Result<Response> {
        let relay = addr(deps, "relay");
        execute(deps.as_mut(), env_at(at), message_info(&relay, &[]), ExecuteMsg::SettleBatch { job_id: 1, tasks })
    }

    fn sends(response: &Response) -> Vec<(String, u128)> {
        response
            .messages
            .iter()
            .map(|m| match &m.msg {
                CosmosMsg::Bank(BankMsg::Send { to_address, amount }) => {
                    assert_eq!(amount.len(), 1);
                    assert_eq!(amount[0].denom, DENOM);
                    (to_address.clone(), Uint128::try_from(amount[0].amount).unwrap().u128())
                }
                other => panic!("unexpected message {other:?}"),
            })
            .collect()
    }

    /// Two registered workers and job 1.
    fn with_job() -> (Deps, Keypair, Keypair) {
        let mut deps = setup();
        let (a, b) = (key(1), key(2));
        register(&mut deps, &a, "alice", 500).unwrap();
        register(&mut deps, &b, "bob", 500).unwrap();
        create_job(&mut deps);
        (deps, a, b)
    }

    #[test]
    fn instantiate_stores_config_and_refuses_bad_parameters() {
        let deps = setup();
        let config: Config = from_json(query(deps.as_ref(), env_at(0), QueryMsg::Config {}).unwrap()).unwrap();
        assert_eq!((config.relay_fee_bps, config.min_bond), (1_000, Uint128::new(500)));
        assert_eq!(cw2::get_contract_version(&deps.storage).unwrap().contract, CONTRACT_NAME);

        let mut deps = mock_dependencies();
        let mut msg = InstantiateMsg {
            denom: DENOM.into(),
            relay: "not an address".into(),
            relay_fee_bps: 0,
            min_bond: Uint128::new(1),
            unbonding_period: 2,
            max_job_duration: 1,
            slash_bps: 0,
            reporter_share_bps: 0,
        };
        let info = message_info(&addr(&deps, "deployer"), &[]);
        assert!(matches!(instantiate(deps.as_mut(), env_at(0), info.clone(), msg.clone()), Err(ContractError::Std(_))));
        msg.relay = addr(&deps, "relay").into_string();
        msg.unbonding_period = 1;
        let err = instantiate(deps.as_mut(), env_at(0), info, msg).unwrap_err();
        assert!(matches!(err, ContractError::InvalidParameter { name: "unbonding_period", .. }), "{err}");
    }

    #[test]
    fn register_worker_checks_proof_bond_and_uniqueness() {
        let mut deps = setup();
        let k = key(1);
        let err = register(&mut deps, &k, "alice", 499).unwrap_err();
        assert!(matches!(err, ContractError::InsufficientFunds { .. }), "{err}");
        register(&mut deps, &k, "alice", 700).unwrap();
        assert!(matches!(register(&mut deps, &k, "alice", 700), Err(ContractError::WorkerExists { .. })));

        // A proof made for alice does not register bob.
        let k2 = key(2);
        let contract = mock_env().contract.address;
        let alice = addr(&deps, "alice");
        let proof = k2.sign(&registration_bytes(contract.as_str(), alice.as_str(), &k2.public().0));
        let msg = ExecuteMsg::RegisterWorker { pubkey: hex_key(&k2), proof: HexBinary::from(proof.0.as_slice()) };
        let bob = addr(&deps, "bob");
        let err = execute(deps.as_mut(), env_at(0), message_info(&bob, &coins(500, DENOM)), msg).unwrap_err();
        assert!(matches!(err, ContractError::BadRegistrationProof { .. }), "{err}");

        // A key that is not a curve point fails the proof rather than erroring out.
        let msg =
            ExecuteMsg::RegisterWorker { pubkey: HexBinary::from(vec![0xff; 32]), proof: HexBinary::from(vec![0; 64]) };
        let err = execute(deps.as_mut(), env_at(0), message_info(&bob, &coins(500, DENOM)), msg).unwrap_err();
        assert!(matches!(err, ContractError::BadRegistrationProof { .. }), "{err}");

        let worker = query_worker(deps.as_ref(), hex_key(&k)).unwrap();
        assert_eq!((worker.owner, worker.bonded, worker.eligible), (alice, Uint128::new(700), true));
    }

    #[test]
    fn bond_adds_only_the_denom_from_the_owner() {
        let mut deps = setup();
        let k = key(1);
        register(&mut deps, &k, "alice", 500).unwrap();
        let alice = addr(&deps, "alice");
        let bob = addr(&deps, "bob");
        let bond = || ExecuteMsg::Bond { pubkey: hex_key(&k) };
        let err = execute(deps.as_mut(), env_at(0), message_info(&alice, &coins(5, "uatom")), bond()).unwrap_err();
        assert!(matches!(err, ContractError::WrongFunds { .. }), "{err}");
        let err = execute(deps.as_mut(), env_at(0), message_info(&bob, &coins(5, DENOM)), bond()).unwrap_err();
        assert!(matches!(err, ContractError::Unauthorized { .. }), "{err}");
        execute(deps.as_mut(), env_at(0), message_info(&alice, &coins(5, DENOM)), bond()).unwrap();
        assert_eq!(query_worker(deps.as_ref(), hex_key(&k)).unwrap().bonded, Uint128::new(505));
    }

    #[test]
    fn unbond_then_withdraw_after_the_period() {
        let mut deps = setup();
        let k = key(1);
        register(&mut deps, &k, "alice", 800).unwrap();
        let alice = addr(&deps, "alice");
        let unbond = ExecuteMsg::Unbond { pubkey: hex_key(&k), amount: Uint128::new(300) };
        execute(deps.as_mut(), env_at(10), message_info(&alice, &[]), unbond).unwrap();
        let worker = query_worker(deps.as_ref(), hex_key(&k)).unwrap();
        assert_eq!((worker.bonded, worker.unbonding, worker.release_at), (Uint128::new(500), Uint128::new(300), 210));

        let withdraw = || ExecuteMsg::Withdraw { pubkey: hex_key(&k) };
        let err = execute(deps.as_mut(), env_at(209), message_info(&alice, &[]), withdraw()).unwrap_err();
        assert!(matches!(err, ContractError::StillUnbonding { release_at: 210, now: 209, .. }), "{err}");
        let response = execute(deps.as_mut(), env_at(210), message_info(&alice, &[]), withdraw()).unwrap();
        assert_eq!(sends(&response), vec![(alice.to_string(), 300)]);
        assert!(query_worker(deps.as_ref(), hex_key(&k)).unwrap().unbonding.is_zero());
    }

    #[test]
    fn create_job_needs_the_exact_deposit() {
        let mut deps = setup();
        let client = addr(&deps, "client");
        let msg = |job_id, deadline| ExecuteMsg::CreateJob {
            job_id,
            tasks: 3,
            replicas: 2,
            quorum: 1,
            price_per_replica: Uint128::new(95),
            deadline,
            slashable: true,
        };
        // fee = floor(95 × 10%) = 9; deposit = 3 × 2 × 104.
        let deposit: DepositResponse = from_json(
            query(
                deps.as_ref(),
                env_at(0),
                QueryMsg::Deposit { tasks: 3, replicas: 2, price_per_replica: Uint128::new(95) },
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!((deposit.fee_per_replica, deposit.deposit), (Uint128::new(9), Uint128::new(624)));
        let err = execute(deps.as_mut(), env_at(0), message_info(&client, &coins(623, DENOM)), msg(1, 50)).unwrap_err();
        assert!(matches!(err, ContractError::WrongFunds { .. }), "{err}");
        let err =
            execute(deps.as_mut(), env_at(0), message_info(&client, &coins(624, DENOM)), msg(1, 101)).unwrap_err();
        assert!(matches!(err, ContractError::InvalidParameter { name: "deadline", .. }), "{err}");
        execute(deps.as_mut(), env_at(0), message_info(&client, &coins(624, DENOM)), msg(1, 100)).unwrap();
        let job = query_job(deps.as_ref(), 0, 1).unwrap();
        assert_eq!(
            (job.client, job.deposit, job.remaining, job.status),
            (client, Uint128::new(624), Uint128::new(624), JobStatus::Open)
        );
    }

    #[test]
    fn settle_batch_pays_signers_and_the_relay_once() {
        let (mut deps, a, b) = with_job();
        let response =
            settle(&mut deps, 99, vec![signed(0, [7; 32], &[&a, &b]), signed(1, [8; 32], &[&b, &a])]).unwrap();
        let alice = addr(&deps, "alice").to_string();
        let bob = addr(&deps, "bob").to_string();
        let relay = addr(&deps, "relay").to_string();
        let mut expected = vec![(alice, 200), (bob, 200)];
        expected.sort();
        expected.push((relay, 40));
        assert_eq!(sends(&response), expected);
        let job = query_job(deps.as_ref(), 99, 1).unwrap();
        assert_eq!(
            (job.settled_tasks, job.paid_to_workers, job.paid_to_relay, job.remaining),
            (2, Uint128::new(400), Uint128::new(40), Uint128::zero())
        );
        let err = settle(&mut deps, 99, vec![signed(0, [7; 32], &[&a, &b])]).unwrap_err();
        assert!(matches!(err, ContractError::TaskAlreadySettled { job_id: 1, index: 0 }), "{err}");
    }

    #[test]
    fn settle_batch_refusals_name_the_task() {
        let (mut deps, a, b) = with_job();
        let stranger = key(9);
        type Case = (Vec<TaskResult>, u64, fn(&ContractError) -> bool);
        let cases: Vec<Case> = vec![
            (vec![signed(0, [7; 32], &[&a])], 0, |e| {
                matches!(e, ContractError::BelowQuorum { index: 0, signers: 1, quorum: 2, .. })
            }),
            (vec![signed(0, [7; 32], &[&a, &b, &stranger])], 0, |e| {
                matches!(e, ContractError::TooManySigners { index: 0, .. })
            }),
            (vec![signed(1, [7; 32], &[&a, &a])], 0, |e| matches!(e, ContractError::DuplicateSigner { index: 1, .. })),
            (vec![signed(1, [7; 32], &[&a, &stranger])], 0, |e| {
                matches!(e, ContractError::SignerNotRegistered { index: 1, .. })
            }),
            (vec![signed(2, [7; 32], &[&a, &b])], 0, |e| {
                matches!(e, ContractError::TaskOutOfRange { index: 2, tasks: 2, .. })
            }),
            (vec![signed(0, [7; 32], &[&a, &b]), signed(0, [7; 32], &[&a, &b])], 0, |e| {
                matches!(e, ContractError::DuplicateTask { index: 0, .. })
            }),
            (vec![signed(0, [7; 32], &[&a, &b])], 100, |e| {
                matches!(e, ContractError::DeadlinePassed { deadline: 100, now: 100, .. })
            }),
            (vec![], 0, |e| matches!(e, ContractError::EmptyBatch { .. })),
        ];
        for (i, (batch, at, expected)) in cases.into_iter().enumerate() {
            let err = settle(&mut deps, at, batch).unwrap_err();
            assert!(expected(&err), "case {i}: {err}");
        }
        let mut forged = signed(1, [7; 32], &[&a, &b]);
        forged.output_len += 1;
        let err = settle(&mut deps, 0, vec![signed(0, [7; 32], &[&a, &b]), forged]).unwrap_err();
        assert!(
            matches!(&err, ContractError::InvalidSignature { index: 1, worker, .. } if *worker == hex_key(&a).to_hex()),
            "{err}"
        );
        assert!(TASKS.is_empty(&deps.storage), "a refused batch wrote a task");

        let client = addr(&deps, "client");
        let msg = ExecuteMsg::SettleBatch { job_id: 1, tasks: vec![signed(0, [7; 32], &[&a, &b])] };
        let err = execute(deps.as_mut(), env_at(0), message_info(&client, &[]), msg).unwrap_err();
        assert!(matches!(err, ContractError::Unauthorized { .. }), "{err}");
    }

    #[test]
    fn slash_pays_reporter_and_client_and_counts_once() {
        let (mut deps, a, b) = with_job();
        let c = key(3);
        register(&mut deps, &c, "carol", 600).unwrap();
        settle(&mut deps, 1, vec![signed(0, [7; 32], &[&a, &b])]).unwrap();
        let wrong = signed(0, [9; 32], &[&c]);
        let evidence = || ExecuteMsg::Slash {
            job_id: 1,
            index: 0,
            worker_pubkey: hex_key(&c),
            output_hash: wrong.output_hash.clone(),
            output_len: 64,
            signature: wrong.signatures[0].signature.clone(),
        };
        let reporter = addr(&deps, "reporter");
        let response = execute(deps.as_mut(), env_at(2), message_info(&reporter, &[]), evidence()).unwrap();
        // slash_bps 100%: all 600, half to the reporter, half to the client.
        assert_eq!(sends(&response), vec![(reporter.to_string(), 300), (addr(&deps, "client").to_string(), 300)]);
        let worker = query_worker(deps.as_ref(), hex_key(&c)).unwrap();
        assert_eq!((worker.bonded, worker.slashed), (Uint128::zero(), Uint128::new(600)));
        let err = execute(deps.as_mut(), env_at(3), message_info(&reporter, &[]), evidence()).unwrap_err();
        assert!(matches!(err, ContractError::AlreadySlashed { .. }), "{err}");
        let reporter_account: Account =
            from_json(query(deps.as_ref(), env_at(3), QueryMsg::Account { address: reporter.to_string() }).unwrap())
                .unwrap();
        assert_eq!(reporter_account.slash_rewards, Uint128::new(300));
    }

    #[test]
    fn refund_returns_only_what_was_not_paid() {
        let (mut deps, a, b) = with_job();
        settle(&mut deps, 1, vec![signed(1, [7; 32], &[&a, &b])]).unwrap();
        let anyone = addr(&deps, "anyone");
        let err = execute(deps.as_mut(), env_at(99), message_info(&anyone, &[]), ExecuteMsg::Refund { job_id: 1 })
            .unwrap_err();
        assert!(matches!(err, ContractError::DeadlineNotReached { .. }), "{err}");
        let response =
            execute(deps.as_mut(), env_at(100), message_info(&anyone, &[]), ExecuteMsg::Refund { job_id: 1 }).unwrap();
        assert_eq!(sends(&response), vec![(addr(&deps, "client").to_string(), 220)]);
        let err = execute(deps.as_mut(), env_at(101), message_info(&anyone, &[]), ExecuteMsg::Refund { job_id: 1 })
            .unwrap_err();
        assert!(matches!(err, ContractError::AlreadyRefunded { job_id: 1 }), "{err}");
        let err = execute(deps.as_mut(), env_at(101), message_info(&anyone, &[]), ExecuteMsg::Refund { job_id: 2 })
            .unwrap_err();
        assert!(matches!(err, ContractError::JobNotFound { job_id: 2 }), "{err}");
    }

    #[test]
    fn the_relay_closes_a_job_early_and_the_client_gets_the_rest_at_once() {
        let (mut deps, a, b) = with_job();
        settle(&mut deps, 1, vec![signed(1, [7; 32], &[&a, &b])]).unwrap();
        let anyone = addr(&deps, "anyone");
        let relay = addr(&deps, "relay");
        let err = execute(deps.as_mut(), env_at(50), message_info(&anyone, &[]), ExecuteMsg::Close { job_id: 1 })
            .unwrap_err();
        assert!(matches!(err, ContractError::Unauthorized { .. }), "{err}");
        let response =
            execute(deps.as_mut(), env_at(50), message_info(&relay, &[]), ExecuteMsg::Close { job_id: 1 }).unwrap();
        // The same amount the deadline refund returns: the deposit less what settled.
        assert_eq!(sends(&response), vec![(addr(&deps, "client").to_string(), 220)]);
        let err = settle(&mut deps, 51, vec![signed(2, [7; 32], &[&a, &b])]).unwrap_err();
        assert!(matches!(err, ContractError::JobClosed { job_id: 1 }), "{err}");
        for msg in [ExecuteMsg::Close { job_id: 1 }, ExecuteMsg::Refund { job_id: 1 }] {
            let err = execute(deps.as_mut(), env_at(200), message_info(&relay, &[]), msg).unwrap_err();
            assert!(matches!(err, ContractError::AlreadyRefunded { job_id: 1 }), "{err}");
        }
        let err =
            execute(deps.as_mut(), env_at(50), message_info(&relay, &[]), ExecuteMsg::Close { job_id: 2 }).unwrap_err();
        assert!(matches!(err, ContractError::JobNotFound { job_id: 2 }), "{err}");
    }

    #[test]
    fn list_queries_paginate() {
        let mut deps = setup();
        for seed in 1..=4 {
            register(&mut deps, &key(seed), &format!("w{seed}"), 500).unwrap();
        }
        let first = query_workers(deps.as_ref(), None, Some(3)).unwrap().workers;
        let rest = query_workers(deps.as_ref(), Some(first[2].pubkey.clone()), Some(3)).unwrap().workers;
        assert_eq!((first.len(), rest.len()), (3, 1));
        assert!(first.iter().all(|w| w.pubkey != rest[0].pubkey));
        create_job(&mut deps);
        assert_eq!(query_jobs(deps.as_ref(), 0, None, None).unwrap().jobs.len(), 1);
        assert!(query_jobs(deps.as_ref(), 0, Some(1), None).unwrap().jobs.is_empty());
        assert!(query_tasks(deps.as_ref(), 1, None, None).unwrap().tasks.is_empty());
    }
}
