//! Entry points and handlers. Each `execute_*` validates everything first and writes only once the
//! whole message is accepted (the chain would roll back anyway; this keeps the handlers honest
//! under mock storage too).
//!
//! Who may move money: an account's funds move only with its key's signature checked here
//! ([`Authorization`] for bond, unbond and withdraw; the client's deposit signature for a job),
//! whoever submits the message. The relay opens, settles and closes jobs, and is paid its fee,
//! but every payment to a worker needs the workers' own signatures.

use crate::error::{ContractError, Result};
use crate::msg::{
    Authorization, DepositResponse, ExecuteMsg, InstantiateMsg, JobResponse, JobTerms, JobsResponse, QueryMsg,
    RelayResponse, RelaysResponse, SpecJobResponse, TaskResponse, TaskResult, TasksResponse, WorkerResponse,
    WorkersResponse, authorization_bytes, deposit_bytes, registration_bytes, result_bytes,
};
use crate::state::{
    ACCOUNTS, Account, CONFIG, Config, JOBS, Job, JobComparison, JobRef, RELAYS, RelayEntry, RelayRecord, SLASHED,
    SPEC_JOBS, SettledTask, TASKS, TOTALS, Totals, WORKERS, Worker, validate_endpoint,
};
use cosmwasm_std::{
    Addr, Api, BankMsg, Binary, Coin, Deps, DepsMut, Empty, Env, HexBinary, MessageInfo, Order, Response, StdResult,
    Storage, Uint128, to_json_binary,
};
use cw_storage_plus::Bound;
use starling_protocol::PublicKey;
use starling_protocol::sign::AccountAction;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

#[cfg(not(feature = "library"))]
use cosmwasm_std::entry_point;

const CONTRACT_NAME: &str = "crates.io:starling-escrow";
const CONTRACT_VERSION: &str = env!("CARGO_PKG_VERSION");
const DEFAULT_PAGE: u32 = 10;
const MAX_PAGE: u32 = 30;

#[cfg_attr(not(feature = "library"), entry_point)]
pub fn instantiate(deps: DepsMut, env: Env, _info: MessageInfo, msg: InstantiateMsg) -> Result<Response> {
    let config = Config {
        denom: msg.denom,
        relay: deps.api.addr_validate(&msg.relay)?,
        relay_fee_bps: msg.relay_fee_bps,
        min_bond: msg.min_bond,
        unbonding_period: msg.unbonding_period,
        max_job_duration: msg.max_job_duration,
        slash_bps: msg.slash_bps,
        min_relay_bond: msg.min_relay_bond,
    };
    config.validate()?;
    if config.relay == env.contract.address {
        return Err(ContractError::InvalidParameter { name: "relay", reason: "the escrow's own address".into() });
    }
    let endpoint = msg.relay_endpoint.unwrap_or_default();
    if !endpoint.is_empty() {
        validate_endpoint(&endpoint)?;
    }
    cw2::set_contract_version(deps.storage, CONTRACT_NAME, CONTRACT_VERSION)?;
    CONFIG.save(deps.storage, &config)?;
    TOTALS.save(deps.storage, &Totals::default())?;
    RELAYS.save(deps.storage, &config.relay, &genesis_entry(&config, endpoint))?;
    Ok(Response::new().add_attribute("action", "instantiate").add_attribute("relay", config.relay))
}

#[cfg_attr(not(feature = "library"), entry_point)]
pub fn execute(deps: DepsMut, env: Env, info: MessageInfo, msg: ExecuteMsg) -> Result<Response> {
    match msg {
        ExecuteMsg::Deposit { account } => execute_deposit(deps, info, account),
        ExecuteMsg::Bond { authorization, worker, amount, proof } => {
            execute_bond(deps, env, authorization, worker, amount, proof)
        }
        ExecuteMsg::Unbond { authorization, worker, amount } => {
            execute_unbond(deps, env, authorization, worker, amount)
        }
        ExecuteMsg::Release { worker } => execute_release(deps, env, worker),
        ExecuteMsg::Withdraw { authorization, to, amount } => execute_withdraw(deps, env, authorization, to, amount),
        ExecuteMsg::CreateJob { job_id, client, terms, signature } => {
            execute_create_job(deps, env, info, job_id, client, terms, signature)
        }
        ExecuteMsg::SettleBatch { job_id, tasks } => execute_settle_batch(deps, env, info, job_id, tasks),
        ExecuteMsg::Slash { relay, job_id, index, worker_pubkey, output_hash, output_len, signature } => {
            let evidence = Evidence { relay, job_id, index, worker_pubkey, output_hash, output_len, signature };
            execute_slash(deps, env, evidence)
        }
        ExecuteMsg::Refund { relay, job_id } => execute_refund(deps, env, relay, job_id),
        ExecuteMsg::Close { job_id } => execute_close(deps, info, job_id),
        ExecuteMsg::RegisterRelay { endpoint, fee_bps } => execute_register_relay(deps, env, info, endpoint, fee_bps),
        ExecuteMsg::UpdateRelay { endpoint, fee_bps } => execute_update_relay(deps, info, endpoint, fee_bps),
        ExecuteMsg::LeaveRelay {} => execute_leave_relay(deps, env, info),
        ExecuteMsg::ReleaseRelay { relay } => execute_release_relay(deps, env, relay),
    }
}

pub fn execute_deposit(deps: DepsMut, info: MessageInfo, account: HexBinary) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let key: [u8; 32] = fixed(&account, "account")?;
    let amount = attached(&info, &config.denom)?;
    let mut holder = ACCOUNTS.may_load(deps.storage, &key)?.unwrap_or_default();
    holder.credit(amount)?;
    holder.deposited = holder.deposited.checked_add(amount)?;
    ACCOUNTS.save(deps.storage, &key, &holder)?;
    update_totals(deps.storage, |t| {
        t.deposited = t.deposited.checked_add(amount)?;
        Ok(())
    })?;
    Ok(Response::new()
        .add_attribute("action", "deposit")
        .add_attribute("account", account.to_hex())
        .add_attribute("payer", info.sender)
        .add_attribute("amount", amount))
}

/// An authorization whose nonce was accepted (and advanced on `account`), with the bytes its
/// signature must cover. Nothing is saved until the signature checks out.
struct Authorized {
    key: [u8; 32],
    account: Account,
    message: Vec<u8>,
    signature: [u8; 64],
}

impl Authorized {
    fn name(&self) -> String {
        HexBinary::from(self.key.as_slice()).to_hex()
    }

    fn check(&self) -> SignatureCheck<'_> {
        SignatureCheck { message: &self.message, signature: &self.signature, key: &self.key }
    }
}

fn authorize(storage: &dyn Storage, env: &Env, auth: &Authorization, action: &AccountAction) -> Result<Authorized> {
    let key: [u8; 32] = fixed(&auth.account, "account")?;
    let signature: [u8; 64] = fixed(&auth.signature, "signature")?;
    let mut account = ACCOUNTS.may_load(storage, &key)?.unwrap_or_default();
    account.use_nonce(&auth.account.to_hex(), auth.nonce)?;
    let message = authorization_bytes(&env.block.chain_id, env.contract.address.as_str(), &key, auth.nonce, action);
    Ok(Authorized { key, account, message, signature })
}

pub fn execute_bond(
    deps: DepsMut,
    env: Env,
    auth: Authorization,
    worker: HexBinary,
    amount: Uint128,
    proof: Option<HexBinary>,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let worker_key: [u8; 32] = fixed(&worker, "worker")?;
    if amount.is_zero() {
        return Err(ContractError::ZeroAmount { name: "amount" });
    }
    let action = AccountAction::Bond { worker: PublicKey(worker_key), amount: amount.u128() };
    let mut authorized = authorize(deps.storage, &env, &auth, &action)?;
    let owner = HexBinary::from(authorized.key.as_slice());
    let mut proof_message = None;
    let record = match WORKERS.may_load(deps.storage, &worker_key)? {
        Some(mut known) => {
            if known.owner != owner {
                return Err(ContractError::NotOwner { worker: worker.to_hex(), owner: known.owner.to_hex() });
            }
            known.bond(amount)?;
            known
        }
        None => {
            if amount < config.min_bond {
                return Err(ContractError::BondTooSmall { worker: worker.to_hex(), amount, min_bond: config.min_bond });
            }
            let proof =
                proof.as_ref().ok_or_else(|| ContractError::MissingRegistrationProof { worker: worker.to_hex() })?;
            let proof: [u8; 64] = fixed(proof, "proof")?;
            let message =
                registration_bytes(&env.block.chain_id, env.contract.address.as_str(), &authorized.key, &worker_key);
            proof_message = Some((message, proof));
            Worker::new(owner.clone(), amount)
        }
    };
    authorized.account.debit(&authorized.name(), amount)?;

    // The owner's authorization and, for a new key, the key's own consent: one batch.
    let mut checks = vec![authorized.check()];
    if let Some((message, proof)) = &proof_message {
        checks.push(SignatureCheck { message, signature: proof, key: &worker_key });
    }
    verify_all(deps.api, &checks, |i| match i {
        0 => ContractError::BadAuthorization { account: authorized.name() },
        _ => ContractError::BadRegistrationProof { worker: worker.to_hex(), owner: owner.to_hex() },
    })?;

    ACCOUNTS.save(deps.storage, &authorized.key, &authorized.account)?;
    WORKERS.save(deps.storage, &worker_key, &record)?;
    Ok(Response::new()
        .add_attribute("action", if proof_message.is_some() { "register_worker" } else { "bond" })
        .add_attribute("worker", worker.to_hex())
        .add_attribute("owner", owner.to_hex())
        .add_attribute("amount", amount)
        .add_attribute("bonded", record.bonded))
}

pub fn execute_unbond(
    deps: DepsMut,
    env: Env,
    auth: Authorization,
    worker: HexBinary,
    amount: Uint128,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let (worker_key, mut record) = load_worker(deps.storage, &worker)?;
    let action = AccountAction::Unbond { worker: PublicKey(worker_key), amount: amount.u128() };
    let mut authorized = authorize(deps.storage, &env, &auth, &action)?;
    if record.owner.as_slice() != authorized.key {
        return Err(ContractError::NotOwner { worker: worker.to_hex(), owner: record.owner.to_hex() });
    }
    let now = env.block.time.seconds();
    // Stake whose wait is over goes home first, so unbonding more does not make it wait again.
    let released = if record.can_release(now) { record.release(&worker.to_hex(), now)? } else { Uint128::zero() };
    authorized.account.credit(released)?;
    record.start_unbonding(&worker.to_hex(), amount, now, config.unbonding_period)?;
    verify_all(deps.api, &[authorized.check()], |_| ContractError::BadAuthorization { account: authorized.name() })?;

    ACCOUNTS.save(deps.storage, &authorized.key, &authorized.account)?;
    WORKERS.save(deps.storage, &worker_key, &record)?;
    Ok(Response::new()
        .add_attribute("action", "unbond")
        .add_attribute("worker", worker.to_hex())
        .add_attribute("amount", amount)
        .add_attribute("released", released)
        .add_attribute("release_at", record.release_at.to_string()))
}

pub fn execute_release(deps: DepsMut, env: Env, worker: HexBinary) -> Result<Response> {
    let (worker_key, mut record) = load_worker(deps.storage, &worker)?;
    let amount = record.release(&worker.to_hex(), env.block.time.seconds())?;
    let mut owner = ACCOUNTS.may_load(deps.storage, record.owner.as_slice())?.unwrap_or_default();
    owner.credit(amount)?;
    ACCOUNTS.save(deps.storage, record.owner.as_slice(), &owner)?;
    WORKERS.save(deps.storage, &worker_key, &record)?;
    Ok(Response::new()
        .add_attribute("action", "release")
        .add_attribute("worker", worker.to_hex())
        .add_attribute("owner", record.owner.to_hex())
        .add_attribute("amount", amount))
}

pub fn execute_withdraw(deps: DepsMut, env: Env, auth: Authorization, to: String, amount: Uint128) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    if amount.is_zero() {
        return Err(ContractError::ZeroAmount { name: "amount" });
    }
    let recipient = deps.api.addr_validate(&to)?;
    if recipient == env.contract.address {
        // The escrow would keep the coins with no account holding them.
        return Err(ContractError::BadRecipient { address: to });
    }
    let action = AccountAction::Withdraw { to, amount: amount.u128() };
    let mut authorized = authorize(deps.storage, &env, &auth, &action)?;
    authorized.account.debit(&authorized.name(), amount)?;
    authorized.account.withdrawn = authorized.account.withdrawn.checked_add(amount)?;
    verify_all(deps.api, &[authorized.check()], |_| ContractError::BadAuthorization { account: authorized.name() })?;

    ACCOUNTS.save(deps.storage, &authorized.key, &authorized.account)?;
    update_totals(deps.storage, |t| {
        t.withdrawn = t.withdrawn.checked_add(amount)?;
        Ok(())
    })?;
    Ok(Response::new()
        .add_message(send(&recipient, amount, &config.denom))
        .add_attribute("action", "withdraw")
        .add_attribute("account", authorized.name())
        .add_attribute("to", recipient)
        .add_attribute("amount", amount))
}

pub fn execute_create_job(
    deps: DepsMut,
    env: Env,
    info: MessageInfo,
    job_id: u64,
    client: HexBinary,
    terms: JobTerms,
    signature: HexBinary,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let relay = info.sender;
    let mut entry = load_relay(deps.storage, &config, &relay)?
        .filter(|e| e.is_active(config.min_relay_bond, relay == config.relay))
        .ok_or_else(|| ContractError::NotRelay { relay: relay.to_string() })?;
    let now = env.block.time.seconds();
    let client_key: [u8; 32] = fixed(&client, "client")?;
    let signature: [u8; 64] = fixed(&signature, "signature")?;
    let digest: [u8; 32] = fixed(&terms.spec_digest, "spec_digest")?;
    let invalid = |name, reason: String| ContractError::InvalidParameter { name, reason };
    if terms.tasks == 0 {
        return Err(invalid("tasks", "zero".into()));
    }
    if terms.replicas == 0 {
        return Err(invalid("replicas", "zero".into()));
    }
    if terms.quorum == 0 || terms.quorum > terms.replicas {
        return Err(invalid("quorum", format!("must be 1..={} (replicas), got {}", terms.replicas, terms.quorum)));
    }
    if terms.price_per_replica.is_zero() {
        return Err(invalid("price_per_replica", "zero".into()));
    }
    if terms.deadline_secs == 0 || terms.deadline_secs > config.max_job_duration {
        return Err(invalid(
            "deadline_secs",
            format!("must be 1..={} (max_job_duration), got {}", config.max_job_duration, terms.deadline_secs),
        ));
    }
    if now > terms.not_after {
        return Err(ContractError::DepositExpired { not_after: terms.not_after, now });
    }
    if JOBS.has(deps.storage, (&relay, job_id)) {
        return Err(ContractError::JobExists { job_id });
    }
    if let Some(opened) = SPEC_JOBS.may_load(deps.storage, (&client_key, &digest))? {
        return Err(ContractError::SpecAlreadyOpened {
            client: client.to_hex(),
            spec_digest: terms.spec_digest.to_hex(),
            job_id: opened.job_id,
        });
    }
    let fee_per_replica = entry.fee_per_replica(terms.price_per_replica)?;
    let deposit = Job::deposit_for(terms.tasks, terms.replicas, terms.price_per_replica, fee_per_replica)?;
    let mut account = ACCOUNTS.may_load(deps.storage, &client_key)?.unwrap_or_default();
    account.debit(&client.to_hex(), deposit)?;
    account.spent_on_jobs = account.spent_on_jobs.checked_add(deposit)?;

    let protocol_terms = terms.to_protocol().expect("the digest was checked to be 32 bytes");
    let message =
        deposit_bytes(&env.block.chain_id, env.contract.address.as_str(), relay.as_str(), &client_key, &protocol_terms);
    let check = SignatureCheck { message: &message, signature: &signature, key: &client_key };
    verify_all(deps.api, &[check], |_| ContractError::BadDepositSignature { client: client.to_hex() })?;

    let job = Job {
        client: client.clone(),
        relay: relay.clone(),
        spec_digest: terms.spec_digest,
        tasks: terms.tasks,
        replicas: terms.replicas,
        quorum: terms.quorum,
        price_per_replica: terms.price_per_replica,
        fee_per_replica,
        comparison: terms.comparison,
        deadline: now.checked_add(terms.deadline_secs).ok_or_else(|| invalid("deadline_secs", "overflow".into()))?,
        deposit,
        settled_tasks: 0,
        paid_to_workers: Uint128::zero(),
        paid_to_relay: Uint128::zero(),
        refunded: None,
    };
    JOBS.save(deps.storage, (&relay, job_id), &job)?;
    SPEC_JOBS.save(deps.storage, (&client_key, &digest), &JobRef { relay: relay.clone(), job_id })?;
    ACCOUNTS.save(deps.storage, &client_key, &account)?;
    entry.record.jobs_opened += 1;
    RELAYS.save(deps.storage, &relay, &entry)?;
    Ok(Response::new()
        .add_attribute("action", "create_job")
        .add_attribute("relay", relay)
        .add_attribute("job_id", job_id.to_string())
        .add_attribute("client", client.to_hex())
        .add_attribute("deposit", deposit)
        .add_attribute("deadline", job.deadline.to_string()))
}

/// A task that passed every check but the signatures, with the bytes its signers signed.
struct CheckedTask {
    index: u32,
    output_hash: [u8; 32],
    output_len: u64,
    signers: Vec<[u8; 32]>,
    /// The hash each signer signed (all `output_hash` on an exact job).
    signer_hashes: Vec<[u8; 32]>,
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
    // Only a job's own relay settles it: jobs are found under their sender.
    let config = CONFIG.load(deps.storage)?;
    let relay = info.sender;
    let mut job = JOBS.may_load(deps.storage, (&relay, job_id))?.ok_or(ContractError::JobNotFound { job_id })?;
    let now = env.block.time.seconds();
    job.ensure_open(job_id, now)?;
    if tasks.is_empty() {
        return Err(ContractError::EmptyBatch { job_id });
    }
    let digest: [u8; 32] = fixed(&job.spec_digest, "spec_digest")?;
    let (chain_id, contract) = (env.block.chain_id.as_str(), env.contract.address.as_str());

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
        if TASKS.has(deps.storage, (&relay, job_id, index)) {
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
            signer_hashes: Vec::with_capacity(signers),
            signatures: Vec::with_capacity(signers),
            messages: Vec::with_capacity(signers),
        };
        // Owner → the first key of theirs in this task: one owner is one independent replica.
        let mut owners: BTreeMap<HexBinary, HexBinary> = BTreeMap::new();
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
            if let Some(other) = owners.insert(worker.owner.clone(), sig.worker_pubkey.clone()) {
                return Err(ContractError::SameOwner {
                    job_id,
                    index,
                    worker: worker_name(),
                    other: other.to_hex(),
                    owner: worker.owner.to_hex(),
                });
            }
            let signed_hash: [u8; 32] = match (job.comparison, &sig.output_hash) {
                (_, None) => output_hash,
                (JobComparison::Tolerance, Some(own)) => fixed(own, "output_hash")?,
                (JobComparison::Exact, Some(_)) => {
                    return Err(ContractError::SignerHashOnExactJob { job_id, index, worker: worker_name() });
                }
            };
            entry.signatures.push(fixed(&sig.signature, "signature")?);
            entry.messages.push(result_bytes(
                chain_id,
                contract,
                job_id,
                &digest,
                index,
                &signed_hash,
                task.output_len,
                &key,
            ));
            entry.signer_hashes.push(signed_hash);
            entry.signers.push(key);
        }
        // On a tolerance job the delivered result must be one a paid worker signed.
        if !entry.signer_hashes.contains(&output_hash) {
            return Err(ContractError::ResultUnsigned { job_id, index });
        }
        checked.push(entry);
    }

    verify_batch(deps.api, job_id, &checked)?;

    // Accepted: record and pay.
    let mut pay: BTreeMap<HexBinary, Uint128> = BTreeMap::new();
    let mut fees = Uint128::zero();
    let tasks_paid = checked.len() as u64;
    for task in checked {
        let signers = u8::try_from(task.signers.len()).expect("at most `replicas` (a u8) signers");
        let (_, fee) = job.record_settlement(signers)?;
        fees = fees.checked_add(fee)?;
        for key in &task.signers {
            let owed = pay.entry(workers[key].owner.clone()).or_default();
            *owed = owed.checked_add(job.price_per_replica)?;
        }
        let hex = |k: &[u8; 32]| HexBinary::from(k.as_slice());
        let settled = SettledTask {
            output_hash: hex(&task.output_hash),
            output_len: task.output_len,
            paid_workers: task.signers.iter().map(hex).collect(),
            signer_hashes: match job.comparison {
                JobComparison::Exact => Vec::new(),
                JobComparison::Tolerance => task.signer_hashes.iter().map(hex).collect(),
            },
            settled_at: now,
        };
        TASKS.save(deps.storage, (&relay, job_id, task.index), &settled)?;
    }
    JOBS.save(deps.storage, (&relay, job_id), &job)?;
    update_record(deps.storage, &config, &relay, |r| {
        r.tasks_paid += tasks_paid;
        r.fees_earned = r.fees_earned.checked_add(fees)?;
        Ok(())
    })?;

    let mut response = Response::new()
        .add_attribute("action", "settle_batch")
        .add_attribute("job_id", job_id.to_string())
        .add_attribute("settled_tasks", job.settled_tasks.to_string())
        .add_attribute("relay_fee", fees);
    for (owner, amount) in pay {
        let mut account = ACCOUNTS.may_load(deps.storage, owner.as_slice())?.unwrap_or_default();
        account.credit(amount)?;
        account.earned = account.earned.checked_add(amount)?;
        ACCOUNTS.save(deps.storage, owner.as_slice(), &account)?;
    }
    if !fees.is_zero() {
        update_totals(deps.storage, |t| {
            t.fees_paid = t.fees_paid.checked_add(fees)?;
            Ok(())
        })?;
        response = response.add_message(send(&relay, fees, &config.denom));
    }
    Ok(response)
}

/// One signature to check: `signature` by `key` over `message`.
struct SignatureCheck<'a> {
    message: &'a [u8],
    signature: &'a [u8; 64],
    key: &'a [u8; 32],
}

/// Verifies every check (one batched verification when there are several); on failure, finds
/// the first bad one so `error(i)` can name it.
fn verify_all(api: &dyn Api, checks: &[SignatureCheck], error: impl Fn(usize) -> ContractError) -> Result<()> {
    // An invalid key (not a curve point) is an error from the API: the check fails either way.
    let single = |c: &SignatureCheck| api.ed25519_verify(c.message, c.signature, c.key).unwrap_or(false);
    if let [check] = checks {
        return if single(check) { Ok(()) } else { Err(error(0)) };
    }
    let messages: Vec<&[u8]> = checks.iter().map(|c| c.message).collect();
    let signatures: Vec<&[u8]> = checks.iter().map(|c| c.signature.as_slice()).collect();
    let keys: Vec<&[u8]> = checks.iter().map(|c| c.key.as_slice()).collect();
    if api.ed25519_batch_verify(&messages, &signatures, &keys).unwrap_or(false) {
        return Ok(());
    }
    // Batch and single verification disagree only if the crypto backend is broken: refuse.
    Err(error(checks.iter().position(|c| !single(c)).unwrap_or(0)))
}

/// One batched ed25519 verification for the whole settlement; when it fails, the error names the
/// first bad signature (the relay then drops that entry and resubmits).
fn verify_batch(api: &dyn Api, job_id: u64, tasks: &[CheckedTask]) -> Result<()> {
    let located: Vec<(u32, &[u8; 32])> =
        tasks.iter().flat_map(|t| t.signers.iter().map(move |k| (t.index, k))).collect();
    let checks: Vec<SignatureCheck> = tasks
        .iter()
        .flat_map(|t| {
            t.messages.iter().zip(&t.signatures).zip(&t.signers).map(|((message, signature), key)| SignatureCheck {
                message,
                signature,
                key,
            })
        })
        .collect();
    verify_all(api, &checks, |i| {
        let (index, key) = located[i];
        ContractError::InvalidSignature { job_id, index, worker: HexBinary::from(key.as_slice()).to_hex() }
    })
}

/// The fields of `ExecuteMsg::Slash`.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub relay: String,
    pub job_id: u64,
    pub index: u32,
    pub worker_pubkey: HexBinary,
    pub output_hash: HexBinary,
    pub output_len: u64,
    pub signature: HexBinary,
}

pub fn execute_slash(deps: DepsMut, env: Env, evidence: Evidence) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let Evidence { job_id, index, .. } = evidence;
    let relay = deps.api.addr_validate(&evidence.relay)?;
    let job = JOBS.may_load(deps.storage, (&relay, job_id))?.ok_or(ContractError::JobNotFound { job_id })?;
    if !job.slashable() {
        return Err(ContractError::NotSlashable { job_id });
    }
    // Settled means: signed by a quorum of bonded workers of distinct owners (see settlement).
    let settled = TASKS
        .may_load(deps.storage, (&relay, job_id, index))?
        .ok_or(ContractError::TaskNotSettled { job_id, index })?;
    let key: [u8; 32] = fixed(&evidence.worker_pubkey, "worker_pubkey")?;
    let output_hash: [u8; 32] = fixed(&evidence.output_hash, "output_hash")?;
    let signature: [u8; 64] = fixed(&evidence.signature, "signature")?;
    let digest: [u8; 32] = fixed(&job.spec_digest, "spec_digest")?;
    let worker_name = evidence.worker_pubkey.to_hex();
    if !settled.contradicted_by(&output_hash, evidence.output_len) {
        return Err(ContractError::EvidenceAgrees { job_id, index });
    }
    let mut worker = WORKERS
        .may_load(deps.storage, &key)?
        .ok_or_else(|| ContractError::UnknownWorker { worker: worker_name.clone() })?;
    if SLASHED.has(deps.storage, (&relay, job_id, (index, &key))) {
        return Err(ContractError::AlreadySlashed { job_id, index, worker: worker_name });
    }
    let message = result_bytes(
        &env.block.chain_id,
        env.contract.address.as_str(),
        job_id,
        &digest,
        index,
        &output_hash,
        evidence.output_len,
        &key,
    );
    let check = SignatureCheck { message: &message, signature: &signature, key: &key };
    verify_all(deps.api, &[check], |_| ContractError::InvalidSignature { job_id, index, worker: worker_name.clone() })?;

    let slashed = worker.slash(&worker_name, config.slash_bps)?;
    WORKERS.save(deps.storage, &key, &worker)?;
    SLASHED.save(deps.storage, (&relay, job_id, (index, &key)), &Empty {})?;
    update_record(deps.storage, &config, &relay, |r| {
        r.workers_slashed += 1;
        Ok(())
    })?;
    update_totals(deps.storage, |t| {
        t.burned = t.burned.checked_add(slashed)?;
        Ok(())
    })?;
    // Burned, not paid to anyone: whoever could be paid (reporter, client, other signers) could
    // also arrange the dissent (see the README).
    Ok(Response::new()
        .add_message(BankMsg::Burn { amount: vec![Coin::new(slashed, &config.denom)] })
        .add_attribute("action", "slash")
        .add_attribute("job_id", job_id.to_string())
        .add_attribute("index", index.to_string())
        .add_attribute("worker", worker_name)
        .add_attribute("burned", slashed))
}

pub fn execute_refund(deps: DepsMut, env: Env, relay: String, job_id: u64) -> Result<Response> {
    let relay = deps.api.addr_validate(&relay)?;
    let mut job = JOBS.may_load(deps.storage, (&relay, job_id))?.ok_or(ContractError::JobNotFound { job_id })?;
    let amount = job.take_refund(job_id, env.block.time.seconds())?;
    pay_refund(deps, job_id, &job, amount, "refund")
}

pub fn execute_close(deps: DepsMut, info: MessageInfo, job_id: u64) -> Result<Response> {
    // Only a job's own relay closes it: jobs are found under their sender.
    let mut job = JOBS.may_load(deps.storage, (&info.sender, job_id))?.ok_or(ContractError::JobNotFound { job_id })?;
    let amount = job.take_close(job_id)?;
    pay_refund(deps, job_id, &job, amount, "close")
}

/// Saves a job whose refund was just taken and credits the refund to its client's account.
fn pay_refund(deps: DepsMut, job_id: u64, job: &Job, amount: Uint128, action: &str) -> Result<Response> {
    JOBS.save(deps.storage, (&job.relay, job_id), job)?;
    let config = CONFIG.load(deps.storage)?;
    update_record(deps.storage, &config, &job.relay, |r| {
        r.jobs_ended += 1;
        Ok(())
    })?;
    if !amount.is_zero() {
        let mut client = ACCOUNTS.may_load(deps.storage, job.client.as_slice())?.unwrap_or_default();
        client.credit(amount)?;
        client.refunded = client.refunded.checked_add(amount)?;
        ACCOUNTS.save(deps.storage, job.client.as_slice(), &client)?;
    }
    Ok(Response::new()
        .add_attribute("action", action)
        .add_attribute("job_id", job_id.to_string())
        .add_attribute("client", job.client.to_hex())
        .add_attribute("amount", amount))
}

/// The deployment's own relay's entry, as instantiation registers it.
fn genesis_entry(config: &Config, endpoint: String) -> RelayEntry {
    RelayEntry {
        endpoint,
        fee_bps: config.relay_fee_bps,
        bond: Uint128::zero(),
        unbonding: Uint128::zero(),
        release_at: 0,
        leaving: false,
        record: RelayRecord::default(),
    }
}

/// A relay's entry; the deployment's own relay has one even where instantiation predates the
/// registry.
fn load_relay(storage: &dyn Storage, config: &Config, relay: &Addr) -> Result<Option<RelayEntry>> {
    Ok(match RELAYS.may_load(storage, relay)? {
        Some(entry) => Some(entry),
        None if *relay == config.relay => Some(genesis_entry(config, String::new())),
        None => None,
    })
}

/// Counts something in a relay's record (a job's relay always has an entry).
fn update_record(
    storage: &mut dyn Storage,
    config: &Config,
    relay: &Addr,
    change: impl FnOnce(&mut RelayRecord) -> Result<()>,
) -> Result<()> {
    let mut entry =
        load_relay(storage, config, relay)?.ok_or_else(|| ContractError::NotRelay { relay: relay.to_string() })?;
    change(&mut entry.record)?;
    RELAYS.save(storage, relay, &entry).map_err(ContractError::from)
}

fn check_fee(fee_bps: u16) -> Result<()> {
    if fee_bps > crate::state::BPS {
        return Err(ContractError::InvalidParameter { name: "fee_bps", reason: "more than 10000 basis points".into() });
    }
    Ok(())
}

fn add_relay_bond(storage: &mut dyn Storage, amount: Uint128) -> Result<()> {
    update_totals(storage, |t| {
        t.relay_bonds_in = t.relay_bonds_in.checked_add(amount)?;
        Ok(())
    })
}

pub fn execute_register_relay(
    deps: DepsMut,
    env: Env,
    info: MessageInfo,
    endpoint: String,
    fee_bps: u16,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let relay = info.sender.clone();
    validate_endpoint(&endpoint)?;
    check_fee(fee_bps)?;
    if relay == env.contract.address {
        return Err(ContractError::InvalidParameter { name: "relay", reason: "the escrow's own address".into() });
    }
    // Nothing attached is fine for a relay coming back (its unbonding bond is bonded again);
    // a new one falls short of the minimum below.
    let attached = if info.funds.is_empty() { Uint128::zero() } else { attached(&info, &config.denom)? };
    let entry = match load_relay(deps.storage, &config, &relay)? {
        Some(old) if !old.leaving => return Err(ContractError::RelayRegistered { relay: relay.into_string() }),
        Some(old) => {
            if fee_bps > old.fee_bps {
                return Err(ContractError::RelayFeeRaise { relay: relay.into_string(), current: old.fee_bps });
            }
            // Back from leaving: the unbonding bond is bonded again.
            let bond = old.bond.checked_add(old.unbonding)?.checked_add(attached)?;
            RelayEntry { endpoint, fee_bps, bond, unbonding: Uint128::zero(), release_at: 0, leaving: false, ..old }
        }
        None => RelayEntry {
            endpoint,
            fee_bps,
            bond: attached,
            unbonding: Uint128::zero(),
            release_at: 0,
            leaving: false,
            record: RelayRecord::default(),
        },
    };
    if relay != config.relay && entry.bond < config.min_relay_bond {
        return Err(ContractError::RelayBondTooSmall {
            relay: relay.into_string(),
            bond: entry.bond,
            needed: config.min_relay_bond,
        });
    }
    RELAYS.save(deps.storage, &relay, &entry)?;
    add_relay_bond(deps.storage, attached)?;
    Ok(Response::new()
        .add_attribute("action", "register_relay")
        .add_attribute("relay", relay)
        .add_attribute("endpoint", entry.endpoint)
        .add_attribute("fee_bps", fee_bps.to_string())
        .add_attribute("bond", entry.bond))
}

pub fn execute_update_relay(
    deps: DepsMut,
    info: MessageInfo,
    endpoint: Option<String>,
    fee_bps: Option<u16>,
) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let relay = info.sender.clone();
    let mut entry = load_relay(deps.storage, &config, &relay)?
        .ok_or_else(|| ContractError::NotRelay { relay: relay.to_string() })?;
    if entry.leaving {
        return Err(ContractError::RelayLeaving { relay: relay.into_string() });
    }
    if let Some(endpoint) = endpoint {
        validate_endpoint(&endpoint)?;
        entry.endpoint = endpoint;
    }
    if let Some(fee_bps) = fee_bps {
        check_fee(fee_bps)?;
        if fee_bps > entry.fee_bps {
            return Err(ContractError::RelayFeeRaise { relay: relay.into_string(), current: entry.fee_bps });
        }
        entry.fee_bps = fee_bps;
    }
    let attached = if info.funds.is_empty() { Uint128::zero() } else { attached(&info, &config.denom)? };
    entry.bond = entry.bond.checked_add(attached)?;
    RELAYS.save(deps.storage, &relay, &entry)?;
    add_relay_bond(deps.storage, attached)?;
    Ok(Response::new()
        .add_attribute("action", "update_relay")
        .add_attribute("relay", relay)
        .add_attribute("endpoint", entry.endpoint)
        .add_attribute("fee_bps", entry.fee_bps.to_string())
        .add_attribute("bond", entry.bond))
}

pub fn execute_leave_relay(deps: DepsMut, env: Env, info: MessageInfo) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let relay = info.sender;
    let mut entry = load_relay(deps.storage, &config, &relay)?
        .ok_or_else(|| ContractError::NotRelay { relay: relay.to_string() })?;
    if entry.leaving {
        return Err(ContractError::RelayLeaving { relay: relay.into_string() });
    }
    entry.leaving = true;
    entry.unbonding = entry.unbonding.checked_add(entry.bond)?;
    entry.bond = Uint128::zero();
    entry.release_at = env.block.time.seconds().saturating_add(config.unbonding_period);
    RELAYS.save(deps.storage, &relay, &entry)?;
    Ok(Response::new()
        .add_attribute("action", "leave_relay")
        .add_attribute("relay", relay)
        .add_attribute("unbonding", entry.unbonding)
        .add_attribute("release_at", entry.release_at.to_string()))
}

pub fn execute_release_relay(deps: DepsMut, env: Env, relay: String) -> Result<Response> {
    let config = CONFIG.load(deps.storage)?;
    let relay = deps.api.addr_validate(&relay)?;
    let mut entry = load_relay(deps.storage, &config, &relay)?
        .ok_or_else(|| ContractError::NotRelay { relay: relay.to_string() })?;
    if !entry.leaving || entry.unbonding.is_zero() || env.block.time.seconds() < entry.release_at {
        return Err(ContractError::RelayNotReleasable { relay: relay.into_string(), release_at: entry.release_at });
    }
    let amount = entry.unbonding;
    entry.unbonding = Uint128::zero();
    RELAYS.save(deps.storage, &relay, &entry)?;
    update_totals(deps.storage, |t| {
        t.relay_bonds_out = t.relay_bonds_out.checked_add(amount)?;
        Ok(())
    })?;
    Ok(Response::new()
        .add_message(send(&relay, amount, &config.denom))
        .add_attribute("action", "release_relay")
        .add_attribute("relay", relay)
        .add_attribute("amount", amount))
}

#[cfg_attr(not(feature = "library"), entry_point)]
pub fn query(deps: Deps, env: Env, msg: QueryMsg) -> Result<Binary> {
    let now = env.block.time.seconds();
    Ok(match msg {
        QueryMsg::Config {} => to_json_binary(&CONFIG.load(deps.storage)?)?,
        QueryMsg::Totals {} => to_json_binary(&TOTALS.load(deps.storage)?)?,
        QueryMsg::Deposit { tasks, replicas, price_per_replica, relay } => {
            to_json_binary(&query_deposit(deps, tasks, replicas, price_per_replica, relay)?)?
        }
        QueryMsg::Account { pubkey } => to_json_binary(&query_account(deps, pubkey)?)?,
        QueryMsg::Job { relay, job_id } => to_json_binary(&query_job(deps, now, relay, job_id)?)?,
        QueryMsg::Jobs { relay, start_after, limit } => {
            to_json_binary(&query_jobs(deps, now, relay, start_after, limit)?)?
        }
        QueryMsg::JobOfSpec { client, spec_digest } => {
            let client: [u8; 32] = fixed(&client, "client")?;
            let digest: [u8; 32] = fixed(&spec_digest, "spec_digest")?;
            to_json_binary(&SpecJobResponse { job: SPEC_JOBS.may_load(deps.storage, (&client, &digest))? })?
        }
        QueryMsg::Task { relay, job_id, index } => {
            let relay = deps.api.addr_validate(&relay)?;
            let settled = TASKS.may_load(deps.storage, (&relay, job_id, index))?;
            to_json_binary(&TaskResponse { job_id, index, settled })?
        }
        QueryMsg::Tasks { relay, job_id, start_after, limit } => {
            to_json_binary(&query_tasks(deps, relay, job_id, start_after, limit)?)?
        }
        QueryMsg::Worker { pubkey } => to_json_binary(&query_worker(deps, pubkey)?)?,
        QueryMsg::Workers { start_after, limit } => to_json_binary(&query_workers(deps, start_after, limit)?)?,
        QueryMsg::Relay { address } => to_json_binary(&query_relay(deps, address)?)?,
        QueryMsg::Relays { start_after, limit } => to_json_binary(&query_relays(deps, start_after, limit)?)?,
    })
}

pub fn query_relay(deps: Deps, address: String) -> Result<RelayResponse> {
    let config = CONFIG.load(deps.storage)?;
    let address = deps.api.addr_validate(&address)?;
    let entry = load_relay(deps.storage, &config, &address)?
        .ok_or_else(|| ContractError::NotRelay { relay: address.to_string() })?;
    Ok(relay_response(&config, address, entry))
}

pub fn query_relays(deps: Deps, start_after: Option<String>, limit: Option<u32>) -> Result<RelaysResponse> {
    let config = CONFIG.load(deps.storage)?;
    let start = start_after.map(|a| deps.api.addr_validate(&a)).transpose()?;
    let relays = RELAYS
        .range(deps.storage, start.as_ref().map(Bound::exclusive), None, Order::Ascending)
        .take(page(limit))
        .map(|item| item.map(|(address, entry)| relay_response(&config, address, entry)))
        .collect::<StdResult<Vec<_>>>()?;
    Ok(RelaysResponse { relays })
}

fn relay_response(config: &Config, address: Addr, entry: RelayEntry) -> RelayResponse {
    let active = entry.is_active(config.min_relay_bond, address == config.relay);
    RelayResponse {
        active,
        address,
        endpoint: entry.endpoint,
        fee_bps: entry.fee_bps,
        bond: entry.bond,
        unbonding: entry.unbonding,
        release_at: entry.release_at,
        leaving: entry.leaving,
        record: entry.record,
    }
}

pub fn query_deposit(
    deps: Deps,
    tasks: u32,
    replicas: u8,
    price_per_replica: Uint128,
    relay: Option<String>,
) -> Result<DepositResponse> {
    let config = CONFIG.load(deps.storage)?;
    let relay = match relay {
        Some(relay) => deps.api.addr_validate(&relay)?,
        None => config.relay.clone(),
    };
    let entry = load_relay(deps.storage, &config, &relay)?
        .ok_or_else(|| ContractError::NotRelay { relay: relay.to_string() })?;
    let fee_per_replica = entry.fee_per_replica(price_per_replica)?;
    Ok(DepositResponse {
        fee_per_replica,
        deposit: Job::deposit_for(tasks, replicas, price_per_replica, fee_per_replica)?,
    })
}

pub fn query_account(deps: Deps, pubkey: HexBinary) -> Result<Account> {
    let key: [u8; 32] = fixed(&pubkey, "pubkey")?;
    Ok(ACCOUNTS.may_load(deps.storage, &key)?.unwrap_or_default())
}

pub fn query_job(deps: Deps, now: u64, relay: String, job_id: u64) -> Result<JobResponse> {
    let relay = deps.api.addr_validate(&relay)?;
    let job = JOBS.may_load(deps.storage, (&relay, job_id))?.ok_or(ContractError::JobNotFound { job_id })?;
    job_response(job_id, job, now)
}

pub fn query_jobs(
    deps: Deps,
    now: u64,
    relay: String,
    start_after: Option<u64>,
    limit: Option<u32>,
) -> Result<JobsResponse> {
    let relay = deps.api.addr_validate(&relay)?;
    let jobs = JOBS
        .prefix(&relay)
        .range(deps.storage, start_after.map(Bound::exclusive), None, Order::Ascending)
        .take(page(limit))
        .map(|item| {
            let (job_id, job) = item?;
            job_response(job_id, job, now)
        })
        .collect::<Result<_>>()?;
    Ok(JobsResponse { jobs })
}

pub fn query_tasks(
    deps: Deps,
    relay: String,
    job_id: u64,
    start_after: Option<u32>,
    limit: Option<u32>,
) -> Result<TasksResponse> {
    let relay = deps.api.addr_validate(&relay)?;
    let tasks = TASKS
        .prefix((&relay, job_id))
        .range(deps.storage, start_after.map(Bound::exclusive), None, Order::Ascending)
        .take(page(limit))
        .map(|item| item.map(|(index, settled)| TaskResponse { job_id, index, settled: Some(settled) }))
        .collect::<StdResult<_>>()?;
    Ok(TasksResponse { tasks })
}

pub fn query_worker(deps: Deps, pubkey: HexBinary) -> Result<WorkerResponse> {
    let config = CONFIG.load(deps.storage)?;
    let (_, worker) = load_worker(deps.storage, &pubkey)?;
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
        spec_digest: job.spec_digest,
        tasks: job.tasks,
        replicas: job.replicas,
        quorum: job.quorum,
        price_per_replica: job.price_per_replica,
        fee_per_replica: job.fee_per_replica,
        comparison: job.comparison,
        deadline: job.deadline,
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

fn load_worker(storage: &dyn Storage, pubkey: &HexBinary) -> Result<([u8; 32], Worker)> {
    let key: [u8; 32] = fixed(pubkey, "pubkey")?;
    let worker =
        WORKERS.may_load(storage, &key)?.ok_or_else(|| ContractError::UnknownWorker { worker: pubkey.to_hex() })?;
    Ok((key, worker))
}

fn update_totals(storage: &mut dyn Storage, change: impl FnOnce(&mut Totals) -> Result<()>) -> Result<()> {
    let mut totals = TOTALS.may_load(storage)?.unwrap_or_default();
    change(&mut totals)?;
    TOTALS.save(storage, &totals)?;
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
    use crate::msg::WorkerSignature;
    use crate::state::JobStatus;
    use cosmwasm_std::testing::{MockApi, MockQuerier, MockStorage, message_info, mock_dependencies, mock_env};
    use cosmwasm_std::{CosmosMsg, OwnedDeps, Timestamp, coins, from_json};
    use starling_protocol::sign::{Deployment, Keypair};
    use starling_protocol::{Hash32, JobId, TaskId};

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

    /// The deployment `mock_env` describes (signatures are bound to it).
    fn with_deployment<T>(f: impl FnOnce(Deployment<'_>) -> T) -> T {
        let env = mock_env();
        f(Deployment { chain_id: &env.block.chain_id, contract: env.contract.address.as_str() })
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
            min_relay_bond: Uint128::new(1_000),
            relay_endpoint: Some("https://relay.example".into()),
        };
        let info = message_info(&addr(&deps, "deployer"), &[]);
        instantiate(deps.as_mut(), env_at(0), info, msg).unwrap();
        deps
    }

    fn exec(deps: &mut Deps, at: u64, sender: &str, funds: u128, msg: ExecuteMsg) -> Result<Response> {
        let sender = addr(deps, sender);
        let funds = if funds == 0 { vec![] } else { coins(funds, DENOM) };
        execute(deps.as_mut(), env_at(at), message_info(&sender, &funds), msg)
    }

    fn deposit(deps: &mut Deps, account: &Keypair, amount: u128) {
        exec(deps, 0, "payer", amount, ExecuteMsg::Deposit { account: hex_key(account) }).unwrap();
    }

    fn account(deps: &Deps, k: &Keypair) -> Account {
        query_account(deps.as_ref(), hex_key(k)).unwrap()
    }

    fn authorization(deps: &Deps, owner: &Keypair, action: &AccountAction) -> Authorization {
        let nonce = account(deps, owner).nonce;
        let signature = with_deployment(|d| owner.sign_account_action(d, nonce, action));
        Authorization { account: hex_key(owner), nonce, signature: HexBinary::from(signature.0.as_slice()) }
    }

    fn bond_msg(deps: &Deps, owner: &Keypair, worker: &Keypair, amount: u128, register: bool) -> ExecuteMsg {
        let action = AccountAction::Bond { worker: worker.public(), amount };
        let proof = register.then(|| {
            let sig = with_deployment(|d| worker.sign_register_v2(d, &owner.public()));
            HexBinary::from(sig.0.as_slice())
        });
        ExecuteMsg::Bond {
            authorization: authorization(deps, owner, &action),
            worker: hex_key(worker),
            amount: Uint128::new(amount),
            proof,
        }
    }

    /// Deposits `amount` for `owner` and bonds all of it to `worker` (registering it).
    fn register(deps: &mut Deps, owner: &Keypair, worker: &Keypair, amount: u128) {
        deposit(deps, owner, amount);
        let msg = bond_msg(deps, owner, worker, amount, true);
        exec(deps, 0, "relay", 0, msg).unwrap();
    }

    fn terms(tasks: u32, comparison: JobComparison) -> JobTerms {
        JobTerms {
            spec_digest: HexBinary::from(vec![0x5e; 32]),
            tasks,
            replicas: 2,
            quorum: 2,
            price_per_replica: Uint128::new(100),
            comparison,
            deadline_secs: 100,
            not_after: 10,
        }
    }

    fn create_msg(deps: &Deps, client: &Keypair, job_id: u64, terms: JobTerms) -> ExecuteMsg {
        let relay = addr(deps, "relay");
        let signature = with_deployment(|d| client.sign_deposit(d, relay.as_str(), &terms.to_protocol().unwrap()));
        ExecuteMsg::CreateJob {
            job_id,
            client: hex_key(client),
            terms,
            signature: HexBinary::from(signature.0.as_slice()),
        }
    }

    fn sign(worker: &Keypair, job_id: u64, index: u32, hash: [u8; 32]) -> WorkerSignature {
        let sig = with_deployment(|d| {
            worker.sign_result_v2(d, TaskId { job: JobId(job_id), index }, &Hash32([0x5e; 32]), &Hash32(hash), 64)
        });
        WorkerSignature {
            worker_pubkey: hex_key(worker),
            signature: HexBinary::from(sig.0.as_slice()),
            output_hash: None,
        }
    }

    fn signed(index: u32, hash: [u8; 32], signers: &[&Keypair]) -> TaskResult {
        TaskResult {
            index,
            output_hash: HexBinary::from(hash.as_slice()),
            output_len: 64,
            signatures: signers.iter().map(|k| sign(k, 1, index, hash)).collect(),
        }
    }

    fn settle(deps: &mut Deps, at: u64, tasks: Vec<TaskResult>) -> Result<Response> {
        exec(deps, at, "relay", 0, ExecuteMsg::SettleBatch { job_id: 1, tasks })
    }

    /// Workers 1 and 2 (owners 11 and 12) bonded; client 9 opened job 1 (2 tasks × 2 replicas,
    /// quorum 2, price 100, fee 10: deposit 440).
    fn with_job(comparison: JobComparison) -> (Deps, Keypair, Keypair) {
        let mut deps = setup();
        let (a, b) = (key(1), key(2));
        register(&mut deps, &key(11), &a, 500);
        register(&mut deps, &key(12), &b, 500);
        let client = key(9);
        deposit(&mut deps, &client, 1_000);
        let msg = create_msg(&deps, &client, 1, terms(2, comparison));
        exec(&mut deps, 0, "relay", 0, msg).unwrap();
        (deps, a, b)
    }

    fn sends(response: &Response) -> Vec<(String, u128)> {
        response
            .messages
            .iter()
            .map(|m| match &m.msg {
                CosmosMsg::Bank(BankMsg::Send { to_address, amount }) => {
                    (to_address.clone(), Uint128::try_from(amount[0].amount).unwrap().u128())
                }
                CosmosMsg::Bank(BankMsg::Burn { amount }) => {
                    ("burn".into(), Uint128::try_from(amount[0].amount).unwrap().u128())
                }
                other => panic!("unexpected message {other:?}"),
            })
            .collect()
    }

    fn relay_str(deps: &Deps) -> String {
        addr(deps, "relay").into_string()
    }

    #[test]
    fn instantiate_validates_the_config() {
        let deps = setup();
        let config: Config = from_json(query(deps.as_ref(), env_at(0), QueryMsg::Config {}).unwrap()).unwrap();
        assert_eq!((config.relay_fee_bps, config.min_bond), (1_000, Uint128::new(500)));
        assert_eq!(cw2::get_contract_version(&deps.storage).unwrap().contract, CONTRACT_NAME);
        let totals: Totals = from_json(query(deps.as_ref(), env_at(0), QueryMsg::Totals {}).unwrap()).unwrap();
        assert_eq!(totals, Totals::default());

        let mut deps = mock_dependencies();
        let mut msg = InstantiateMsg {
            denom: DENOM.into(),
            relay: "not an address".into(),
            relay_fee_bps: 0,
            min_bond: Uint128::new(1),
            unbonding_period: 2,
            max_job_duration: 1,
            slash_bps: 0,
            min_relay_bond: Uint128::zero(),
            relay_endpoint: None,
        };
        let info = message_info(&addr(&deps, "deployer"), &[]);
        assert!(matches!(instantiate(deps.as_mut(), env_at(0), info.clone(), msg.clone()), Err(ContractError::Std(_))));
        // The escrow cannot be its own relay.
        msg.relay = mock_env().contract.address.into_string();
        let err = instantiate(deps.as_mut(), env_at(0), info.clone(), msg.clone()).unwrap_err();
        assert!(matches!(err, ContractError::InvalidParameter { name: "relay", .. }), "{err}");
        msg.relay = addr(&deps, "relay").into_string();
        msg.unbonding_period = 1;
        let err = instantiate(deps.as_mut(), env_at(0), info, msg).unwrap_err();
        assert!(matches!(err, ContractError::InvalidParameter { name: "unbonding_period", .. }), "{err}");
    }

    #[test]
    fn deposit_credits_any_account_in_the_denom_only() {
        let mut deps = setup();
        let k = key(1);
        let msg = || ExecuteMsg::Deposit { account: hex_key(&k) };
        let payer = addr(&deps, "payer");
        let err = execute(deps.as_mut(), env_at(0), message_info(&payer, &coins(5, "uatom")), msg()).unwrap_err();
        assert!(matches!(err, ContractError::WrongFunds { .. }), "{err}");
        let err = execute(deps.as_mut(), env_at(0), message_info(&payer, &[]), msg()).unwrap_err();
        assert!(matches!(err, ContractError::WrongFunds { .. }), "{err}");
        let short = ExecuteMsg::Deposit { account: HexBinary::from(vec![1; 31]) };
        let err = execute(deps.as_mut(), env_at(0), message_info(&payer, &coins(5, DENOM)), short).unwrap_err();
        assert!(matches!(err, ContractError::BadLength { what: "account", .. }), "{err}");
        deposit(&mut deps, &k, 70);
        deposit(&mut deps, &k, 30);
        let a = account(&deps, &k);
        assert_eq!((a.balance, a.deposited, a.nonce), (Uint128::new(100), Uint128::new(100), 0));
        let totals: Totals = from_json(query(deps.as_ref(), env_at(0), QueryMsg::Totals {}).unwrap()).unwrap();
        assert_eq!(totals.deposited, Uint128::new(100));
    }

    #[test]
    fn bond_registers_with_both_signatures_and_spends_only_the_owners_balance() {
        let mut deps = setup();
        let (owner, worker) = (key(11), key(1));
        deposit(&mut deps, &owner, 1_000);
        // Below the minimum bond for a new key.
        let msg = bond_msg(&deps, &owner, &worker, 499, true);
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::BondTooSmall { .. }), "{err}");
        // A new key without its proof.
        let msg = bond_msg(&deps, &owner, &worker, 500, false);
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::MissingRegistrationProof { .. }), "{err}");
        // A proof naming another owner.
        let mut msg = bond_msg(&deps, &owner, &worker, 500, true);
        if let ExecuteMsg::Bond { proof, .. } = &mut msg {
            let sig = with_deployment(|d| worker.sign_register_v2(d, &key(12).public()));
            *proof = Some(HexBinary::from(sig.0.as_slice()));
        }
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::BadRegistrationProof { .. }), "{err}");
        // More than the balance.
        let msg = bond_msg(&deps, &owner, &worker, 1_001, true);
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::InsufficientBalance { .. }), "{err}");
        assert_eq!(account(&deps, &owner).nonce, 0, "refused authorizations use no nonce");

        let msg = bond_msg(&deps, &owner, &worker, 600, true);
        exec(&mut deps, 0, "anyone", 0, msg).unwrap();
        let w = query_worker(deps.as_ref(), hex_key(&worker)).unwrap();
        assert_eq!((w.owner, w.bonded, w.eligible), (hex_key(&owner), Uint128::new(600), true));
        let a = account(&deps, &owner);
        assert_eq!((a.balance, a.nonce), (Uint128::new(400), 1));

        // Topping up needs no proof; another account cannot bond into this key.
        let msg = bond_msg(&deps, &owner, &worker, 100, false);
        exec(&mut deps, 0, "relay", 0, msg).unwrap();
        assert_eq!(query_worker(deps.as_ref(), hex_key(&worker)).unwrap().bonded, Uint128::new(700));
        let thief = key(12);
        deposit(&mut deps, &thief, 100);
        let msg = bond_msg(&deps, &thief, &worker, 100, true);
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::NotOwner { .. }), "{err}");
    }

    #[test]
    fn a_forged_or_replayed_authorization_moves_nothing() {
        let mut deps = setup();
        let (owner, worker) = (key(11), key(1));
        deposit(&mut deps, &owner, 1_000);
        // Signed by someone else for the owner's account.
        let action = AccountAction::Bond { worker: worker.public(), amount: 500 };
        let mut msg = bond_msg(&deps, &owner, &worker, 500, true);
        if let ExecuteMsg::Bond { authorization, .. } = &mut msg {
            let sig = with_deployment(|d| key(12).sign_account_action(d, 0, &action));
            authorization.signature = HexBinary::from(sig.0.as_slice());
        }
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::BadAuthorization { .. }), "{err}");
        // The signed amount is not the submitted one.
        let mut msg = bond_msg(&deps, &owner, &worker, 500, true);
        if let ExecuteMsg::Bond { amount, .. } = &mut msg {
            *amount = Uint128::new(900);
        }
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::BadAuthorization { .. }), "{err}");
        assert_eq!(account(&deps, &owner).balance, Uint128::new(1_000));

        let msg = bond_msg(&deps, &owner, &worker, 500, true);
        exec(&mut deps, 0, "relay", 0, msg.clone()).unwrap();
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::BadNonce { expected: 1, got: 0, .. }), "{err}");
        assert_eq!(account(&deps, &owner).balance, Uint128::new(500));
    }

    #[test]
    fn unbond_then_release_to_the_owners_account() {
        let mut deps = setup();
        let (owner, worker) = (key(11), key(1));
        register(&mut deps, &owner, &worker, 800);
        let unbond = |deps: &Deps, by: &Keypair| {
            let action = AccountAction::Unbond { worker: worker.public(), amount: 300 };
            ExecuteMsg::Unbond {
                authorization: authorization(deps, by, &action),
                worker: hex_key(&worker),
                amount: Uint128::new(300),
            }
        };
        let stranger = key(12);
        let msg = unbond(&deps, &stranger);
        let err = exec(&mut deps, 10, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::NotOwner { .. }), "{err}");
        let msg = unbond(&deps, &owner);
        exec(&mut deps, 10, "relay", 0, msg).unwrap();
        let w = query_worker(deps.as_ref(), hex_key(&worker)).unwrap();
        assert_eq!((w.bonded, w.unbonding, w.release_at), (Uint128::new(500), Uint128::new(300), 210));

        let release = || ExecuteMsg::Release { worker: hex_key(&worker) };
        let err = exec(&mut deps, 209, "anyone", 0, release()).unwrap_err();
        assert!(matches!(err, ContractError::StillUnbonding { release_at: 210, now: 209, .. }), "{err}");
        let response = exec(&mut deps, 210, "anyone", 0, release()).unwrap();
        assert!(response.messages.is_empty(), "released stake stays in the contract, in the account");
        assert_eq!(account(&deps, &owner).balance, Uint128::new(300));
        let err = exec(&mut deps, 211, "anyone", 0, release()).unwrap_err();
        assert!(matches!(err, ContractError::NothingToRelease { .. }), "{err}");
    }

    #[test]
    fn withdraw_sends_to_the_signed_address_only() {
        let mut deps = setup();
        let owner = key(11);
        deposit(&mut deps, &owner, 1_000);
        let to = addr(&deps, "owner-wallet").into_string();
        let withdraw = |deps: &Deps, to: &str, amount: u128| {
            let action = AccountAction::Withdraw { to: to.to_owned(), amount };
            ExecuteMsg::Withdraw {
                authorization: authorization(deps, &owner, &action),
                to: to.to_owned(),
                amount: Uint128::new(amount),
            }
        };
        // Signed for one recipient, submitted for another.
        let mut msg = withdraw(&deps, &to, 400);
        if let ExecuteMsg::Withdraw { to, .. } = &mut msg {
            *to = addr(&deps, "relay").into_string();
        }
        let err = exec(&mut deps, 0, "relay", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::BadAuthorization { .. }), "{err}");
        let contract = mock_env().contract.address.into_string();
        let err = {
            let msg = withdraw(&deps, &contract, 400);
            exec(&mut deps, 0, "relay", 0, msg)
        }
        .unwrap_err();
        assert!(matches!(err, ContractError::BadRecipient { .. }), "{err}");
        let err = {
            let msg = withdraw(&deps, &to, 1_001);
            exec(&mut deps, 0, "relay", 0, msg)
        }
        .unwrap_err();
        assert!(matches!(err, ContractError::InsufficientBalance { .. }), "{err}");
        let err = {
            let msg = withdraw(&deps, &to, 0);
            exec(&mut deps, 0, "relay", 0, msg)
        }
        .unwrap_err();
        assert!(matches!(err, ContractError::ZeroAmount { .. }), "{err}");
        let response = {
            let msg = withdraw(&deps, &to, 400);
            exec(&mut deps, 0, "relay", 0, msg)
        }
        .unwrap();
        assert_eq!(sends(&response), vec![(to, 400)]);
        let a = account(&deps, &owner);
        assert_eq!((a.balance, a.withdrawn, a.nonce), (Uint128::new(600), Uint128::new(400), 1));
    }

    #[test]
    fn create_job_takes_the_signed_deposit_once() {
        let mut deps = setup();
        let client = key(9);
        deposit(&mut deps, &client, 439);
        // fee = floor(100 × 10%) = 10; deposit = 2 × 2 × 110.
        let cost: DepositResponse = from_json(
            query(
                deps.as_ref(),
                env_at(0),
                QueryMsg::Deposit { tasks: 2, replicas: 2, price_per_replica: Uint128::new(100), relay: None },
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!((cost.fee_per_replica, cost.deposit), (Uint128::new(10), Uint128::new(440)));
        let msg = create_msg(&deps, &client, 1, terms(2, JobComparison::Exact));
        let err = exec(&mut deps, 0, "relay", 0, msg.clone()).unwrap_err();
        assert!(matches!(err, ContractError::InsufficientBalance { .. }), "{err}");
        deposit(&mut deps, &client, 1);
        let err = exec(&mut deps, 0, "client", 0, msg.clone()).unwrap_err();
        assert!(matches!(err, ContractError::NotRelay { .. }), "{err}");
        let err = exec(&mut deps, 11, "relay", 0, msg.clone()).unwrap_err();
        assert!(matches!(err, ContractError::DepositExpired { not_after: 10, now: 11 }), "{err}");
        // Terms changed after signing.
        let mut tampered = msg.clone();
        if let ExecuteMsg::CreateJob { terms, .. } = &mut tampered {
            terms.price_per_replica = Uint128::new(99);
        }
        let err = exec(&mut deps, 0, "relay", 0, tampered).unwrap_err();
        assert!(matches!(err, ContractError::BadDepositSignature { .. }), "{err}");

        exec(&mut deps, 5, "relay", 0, msg.clone()).unwrap();
        assert_eq!(account(&deps, &client).balance, Uint128::zero());
        let job = query_job(deps.as_ref(), 5, relay_str(&deps), 1).unwrap();
        assert_eq!(
            (job.client, job.deposit, job.remaining, job.status, job.deadline),
            (hex_key(&client), Uint128::new(440), Uint128::new(440), JobStatus::Open, 105)
        );
        // The same signed deposit under another id opens nothing.
        deposit(&mut deps, &client, 440);
        let mut again = msg;
        if let ExecuteMsg::CreateJob { job_id, .. } = &mut again {
            *job_id = 2;
        }
        let err = exec(&mut deps, 5, "relay", 0, again).unwrap_err();
        assert!(matches!(err, ContractError::SpecAlreadyOpened { job_id: 1, .. }), "{err}");
        let of_spec: SpecJobResponse = from_json(
            query(
                deps.as_ref(),
                env_at(5),
                QueryMsg::JobOfSpec { client: hex_key(&client), spec_digest: HexBinary::from(vec![0x5e; 32]) },
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(of_spec.job, Some(JobRef { relay: addr(&deps, "relay"), job_id: 1 }));
    }

    #[test]
    fn settle_batch_credits_owners_and_pays_the_relay_fee() {
        let (mut deps, a, b) = with_job(JobComparison::Exact);
        let response =
            settle(&mut deps, 99, vec![signed(0, [7; 32], &[&a, &b]), signed(1, [8; 32], &[&b, &a])]).unwrap();
        assert_eq!(sends(&response), vec![(relay_str(&deps), 40)]);
        for owner in [key(11), key(12)] {
            let acc = account(&deps, &owner);
            assert_eq!((acc.balance, acc.earned), (Uint128::new(200), Uint128::new(200)));
        }
        let job = query_job(deps.as_ref(), 99, relay_str(&deps), 1).unwrap();
        assert_eq!((job.settled_tasks, job.remaining), (2, Uint128::zero()));
        let err = settle(&mut deps, 99, vec![signed(0, [7; 32], &[&a, &b])]).unwrap_err();
        assert!(matches!(err, ContractError::TaskAlreadySettled { job_id: 1, index: 0 }), "{err}");
    }

    #[test]
    fn settle_batch_refusals_name_the_task() {
        let (mut deps, a, b) = with_job(JobComparison::Exact);
        let stranger = key(3);
        // A second key of owner 11.
        let twin = key(4);
        register(&mut deps, &key(11), &twin, 500);
        type Case = (Vec<TaskResult>, u64, fn(&ContractError) -> bool);
        let mut own_hash = signed(1, [7; 32], &[&a, &b]);
        own_hash.signatures[1].output_hash = Some(HexBinary::from(vec![7; 32]));
        let cases: Vec<Case> = vec![
            (vec![signed(0, [7; 32], &[&a])], 0, |e| {
                matches!(e, ContractError::BelowQuorum { index: 0, signers: 1, quorum: 2, .. })
            }),
            (vec![signed(0, [7; 32], &[&a, &b, &stranger])], 0, |e| {
                matches!(e, ContractError::TooManySigners { index: 0, .. })
            }),
            (vec![signed(1, [7; 32], &[&a, &a])], 0, |e| matches!(e, ContractError::DuplicateSigner { index: 1, .. })),
            (vec![signed(1, [7; 32], &[&a, &twin])], 0, |e| matches!(e, ContractError::SameOwner { index: 1, .. })),
            (vec![signed(1, [7; 32], &[&a, &stranger])], 0, |e| {
                matches!(e, ContractError::SignerNotRegistered { index: 1, .. })
            }),
            (vec![own_hash], 0, |e| matches!(e, ContractError::SignerHashOnExactJob { index: 1, .. })),
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

        let err = exec(
            &mut deps,
            0,
            "client",
            0,
            ExecuteMsg::SettleBatch { job_id: 1, tasks: vec![signed(0, [7; 32], &[&a, &b])] },
        )
        .unwrap_err();
        assert!(matches!(err, ContractError::JobNotFound { job_id: 1 }), "another sender settles nothing: {err}");
    }

    #[test]
    fn tolerance_settlement_pays_signers_of_different_hashes() {
        let (mut deps, a, b) = with_job(JobComparison::Tolerance);
        let mut task = signed(0, [7; 32], &[&a]);
        let mut other = sign(&b, 1, 0, [8; 32]);
        other.output_hash = Some(HexBinary::from(vec![8; 32]));
        task.signatures.push(other);
        // The delivered hash must be one a signer signed: here both name their own, neither 9s.
        let mut unsigned = task.clone();
        unsigned.output_hash = HexBinary::from(vec![9; 32]);
        unsigned.signatures[0].output_hash = Some(HexBinary::from(vec![7; 32]));
        let err = settle(&mut deps, 1, vec![unsigned]).unwrap_err();
        assert!(matches!(err, ContractError::ResultUnsigned { index: 0, .. }), "{err}");

        settle(&mut deps, 1, vec![task]).unwrap();
        for owner in [key(11), key(12)] {
            assert_eq!(account(&deps, &owner).earned, Uint128::new(100));
        }
        let settled: TaskResponse = from_json(
            query(deps.as_ref(), env_at(1), QueryMsg::Task { relay: relay_str(&deps), job_id: 1, index: 0 }).unwrap(),
        )
        .unwrap();
        let settled = settled.settled.unwrap();
        assert_eq!(settled.signer_hashes, vec![HexBinary::from(vec![7; 32]), HexBinary::from(vec![8; 32])]);
    }

    #[test]
    fn slash_burns_and_counts_once() {
        let (mut deps, a, b) = with_job(JobComparison::Exact);
        let c = key(3);
        register(&mut deps, &key(13), &c, 600);
        settle(&mut deps, 1, vec![signed(0, [7; 32], &[&a, &b])]).unwrap();
        let wrong = sign(&c, 1, 0, [9; 32]);
        let evidence = |deps: &Deps| ExecuteMsg::Slash {
            relay: relay_str(deps),
            job_id: 1,
            index: 0,
            worker_pubkey: hex_key(&c),
            output_hash: HexBinary::from(vec![9; 32]),
            output_len: 64,
            signature: wrong.signature.clone(),
        };
        let msg = evidence(&deps);
        let response = exec(&mut deps, 2, "reporter", 0, msg).unwrap();
        // slash_bps 100%: all 600 burned, nobody paid.
        assert_eq!(sends(&response), vec![("burn".into(), 600)]);
        let worker = query_worker(deps.as_ref(), hex_key(&c)).unwrap();
        assert_eq!((worker.bonded, worker.slashed), (Uint128::zero(), Uint128::new(600)));
        let totals: Totals = from_json(query(deps.as_ref(), env_at(2), QueryMsg::Totals {}).unwrap()).unwrap();
        assert_eq!(totals.burned, Uint128::new(600));
        let msg = evidence(&deps);
        let err = exec(&mut deps, 3, "reporter", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::AlreadySlashed { .. }), "{err}");
    }

    #[test]
    fn tolerance_jobs_are_not_slashable() {
        let (mut deps, a, b) = with_job(JobComparison::Tolerance);
        settle(&mut deps, 1, vec![signed(0, [7; 32], &[&a, &b])]).unwrap();
        let wrong = sign(&a, 1, 0, [9; 32]);
        let msg = ExecuteMsg::Slash {
            relay: relay_str(&deps),
            job_id: 1,
            index: 0,
            worker_pubkey: hex_key(&a),
            output_hash: HexBinary::from(vec![9; 32]),
            output_len: 64,
            signature: wrong.signature,
        };
        let err = exec(&mut deps, 2, "reporter", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::NotSlashable { job_id: 1 }), "{err}");
    }

    #[test]
    fn refund_and_close_credit_the_clients_account() {
        let (mut deps, a, b) = with_job(JobComparison::Exact);
        settle(&mut deps, 1, vec![signed(1, [7; 32], &[&a, &b])]).unwrap();
        let client = key(9);
        let before = account(&deps, &client).balance;
        let refund = |deps: &Deps| ExecuteMsg::Refund { relay: relay_str(deps), job_id: 1 };
        let msg = refund(&deps);
        let err = exec(&mut deps, 99, "anyone", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::DeadlineNotReached { .. }), "{err}");
        // Jobs live under their relay: another sender has no job 1 to close.
        let err = exec(&mut deps, 50, "anyone", 0, ExecuteMsg::Close { job_id: 1 }).unwrap_err();
        assert!(matches!(err, ContractError::JobNotFound { job_id: 1 }), "{err}");
        let response = exec(&mut deps, 50, "relay", 0, ExecuteMsg::Close { job_id: 1 }).unwrap();
        assert!(response.messages.is_empty(), "refunds stay in the contract, in the client's account");
        let acc = account(&deps, &client);
        assert_eq!((acc.balance - before, acc.refunded), (Uint128::new(220), Uint128::new(220)));
        let err = settle(&mut deps, 51, vec![signed(0, [7; 32], &[&a, &b])]).unwrap_err();
        assert!(matches!(err, ContractError::JobClosed { job_id: 1 }), "{err}");
        let msg = refund(&deps);
        let err = exec(&mut deps, 200, "anyone", 0, msg).unwrap_err();
        assert!(matches!(err, ContractError::AlreadyRefunded { job_id: 1 }), "{err}");
        let err = exec(&mut deps, 50, "relay", 0, ExecuteMsg::Close { job_id: 2 }).unwrap_err();
        assert!(matches!(err, ContractError::JobNotFound { job_id: 2 }), "{err}");
    }

    #[test]
    fn list_queries_paginate_within_one_relay() {
        let mut deps = setup();
        for seed in 1..=4 {
            register(&mut deps, &key(10 + seed), &key(seed), 500);
        }
        let first = query_workers(deps.as_ref(), None, Some(3)).unwrap().workers;
        let rest = query_workers(deps.as_ref(), Some(first[2].pubkey.clone()), Some(3)).unwrap().workers;
        assert_eq!((first.len(), rest.len()), (3, 1));
        assert!(first.iter().all(|w| w.pubkey != rest[0].pubkey));
        let client = key(9);
        deposit(&mut deps, &client, 10_000);
        for id in [3, 1, 2] {
            let mut t = terms(1, JobComparison::Exact);
            t.spec_digest = HexBinary::from(vec![u8::try_from(id).unwrap(); 32]);
            let msg = create_msg(&deps, &client, id, t);
            exec(&mut deps, 0, "relay", 0, msg).unwrap();
        }
        let relay = relay_str(&deps);
        let ids = |jobs: JobsResponse| jobs.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>();
        assert_eq!(ids(query_jobs(deps.as_ref(), 0, relay.clone(), None, Some(2)).unwrap()), vec![1, 2]);
        assert_eq!(ids(query_jobs(deps.as_ref(), 0, relay.clone(), Some(2), None).unwrap()), vec![3]);
        let other = addr(&deps, "other-relay").into_string();
        assert!(query_jobs(deps.as_ref(), 0, other, None, None).unwrap().jobs.is_empty());
        assert!(query_tasks(deps.as_ref(), relay, 1, None, None).unwrap().tasks.is_empty());
    }
}
