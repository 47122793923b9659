//! What the contract stores, and the arithmetic and status transitions of each record as plain
//! methods (no storage access here, so they are unit-tested on their own).
//!
//! Money rules, all in the native denom and all with checked math:
//! - Money enters only by `Deposit` into an account (an ed25519 key), and leaves only by a
//!   `Withdraw` its key signed, by the relay's fee on paid work, or by a slash, which burns.
//! - `fee_per_replica = floor(price_per_replica × relay_fee_bps / 10_000)`.
//! - `deposit = tasks × replicas × (price_per_replica + fee_per_replica)`, taken from the client's
//!   account balance when the job opens.
//! - Settling a task with `n` signers (`quorum ≤ n ≤ replicas`, distinct owners) credits
//!   `price_per_replica` to the account owning each of the `n` keys and sends `n × fee_per_replica`
//!   to the job's relay.
//! - A refund credits the client's account with `deposit − paid to workers − paid to the relay`:
//!   the full share of every unsettled task plus the unused replica slots of settled ones.
//! - A slash takes `floor((bonded + unbonding) × slash_bps / 10_000)`, from the unbonding funds
//!   first, and burns it.
//!
//! So at every moment: the contract's balance = Σ account balances + Σ bonds + Σ unbonding +
//! Σ what jobs still hold, and everything ever deposited = that + withdrawn + fees paid + burned
//! ([`Totals`]).

use crate::error::{ContractError, Result};
use cosmwasm_schema::cw_serde;
use cosmwasm_std::{Addr, Empty, HexBinary, Uint128};
use cw_storage_plus::{Item, Map};

/// Basis points in one whole.
pub const BPS: u16 = 10_000;

pub const CONFIG: Item<Config> = Item::new("config");
/// What came in and what went out, for the conservation check anyone can run.
pub const TOTALS: Item<Totals> = Item::new("totals");
/// Accounts by their 32-byte ed25519 key: the only way money is held for someone here.
pub const ACCOUNTS: Map<&[u8], Account> = Map::new("accounts");
/// Workers by their 32-byte ed25519 key.
pub const WORKERS: Map<&[u8], Worker> = Map::new("workers");
/// Jobs by (the relay that opened them, the relay's job id): each relay numbers its own jobs.
pub const JOBS: Map<(&Addr, u64), Job> = Map::new("jobs");
/// The job a (client key, spec digest) pair opened: a signed deposit opens at most one job.
pub const SPEC_JOBS: Map<(&[u8], &[u8]), JobRef> = Map::new("spec_jobs");
/// Settled tasks by (relay, job id, task index). A task without an entry is unsettled.
pub const TASKS: Map<(&Addr, u64, u32), SettledTask> = Map::new("tasks");
/// Key of one slash: (relay, job id, (task index, worker key)).
pub type SlashKey<'a> = (&'a Addr, u64, (u32, &'a [u8]));
/// Every slash taken, so evidence counts once.
pub const SLASHED: Map<SlashKey, Empty> = Map::new("slashed");
/// Relays that may open jobs, by chain address (the deployment's own relay included).
pub const RELAYS: Map<&Addr, RelayEntry> = Map::new("relays");

/// Longest endpoint a relay may register.
pub const MAX_ENDPOINT_LEN: usize = 200;

/// A registered relay: where clients and workers reach it, what it charges, its bond and its
/// record. Its fee never rises: a client's deposit signature names the relay, so it consents to
/// at most the fee that relay charged when it signed. (A relay that wants a higher fee registers
/// another address.)
#[cw_serde]
pub struct RelayEntry {
    /// Public base URL (`https://…`); empty for the deployment's own relay when not given.
    pub endpoint: String,
    /// Fee on each paid replica, in basis points of `price_per_replica`.
    pub fee_bps: u16,
    /// Bonded: at least `min_relay_bond` while it opens jobs (the deployment's own relay needs none).
    pub bond: Uint128,
    /// Leaving: returned to the relay's address at `release_at`.
    pub unbonding: Uint128,
    pub release_at: u64,
    /// Set by `LeaveRelay`: opens no more jobs (its open ones still settle, close and refund).
    pub leaving: bool,
    pub record: RelayRecord,
}

/// What a relay has done on this escrow, counted by the contract itself.
#[cw_serde]
#[derive(Default)]
pub struct RelayRecord {
    pub jobs_opened: u64,
    /// Jobs closed early or refunded at their deadline.
    pub jobs_ended: u64,
    /// Tasks settled (each paid its signers).
    pub tasks_paid: u64,
    pub fees_earned: Uint128,
    /// Workers slashed for contradicting a task settled on its jobs.
    pub workers_slashed: u64,
}

impl RelayEntry {
    /// Whether it may open a job now.
    pub fn is_active(&self, min_relay_bond: Uint128, genesis: bool) -> bool {
        !self.leaving && (genesis || self.bond >= min_relay_bond)
    }

    pub fn fee_per_replica(&self, price_per_replica: Uint128) -> Result<Uint128> {
        Ok(price_per_replica.checked_multiply_ratio(self.fee_bps, BPS)?)
    }
}

/// Checks an endpoint a relay registers: an http(s) URL of printable characters, bounded.
pub fn validate_endpoint(endpoint: &str) -> Result<()> {
    let invalid = |reason: String| ContractError::InvalidParameter { name: "endpoint", reason };
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(invalid(format!("longer than {MAX_ENDPOINT_LEN} bytes")));
    }
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with https:// or http://".into()))?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid("must name a host, in printable ASCII without spaces".into()));
    }
    Ok(())
}

#[cw_serde]
pub struct Config {
    /// The native denom of deposits, bonds and payments.
    pub denom: String,
    /// The relay: the only sender of job openings, settlements and early closes, and the
    /// recipient of fees. It moves no account's money without that account's signature.
    pub relay: Addr,
    /// The relay's fee on each paid replica, in basis points of `price_per_replica`.
    pub relay_fee_bps: u16,
    /// Least bond a worker needs for its signature to count toward a quorum (and to register).
    pub min_bond: Uint128,
    /// Seconds unbonding funds stay in the contract (and slashable) before they return to the
    /// owner's account.
    pub unbonding_period: u64,
    /// Longest allowed deadline duration of a job. Kept below `unbonding_period` so a worker that
    /// starts unbonding after signing for a job still has funds here when that job's last task can
    /// settle, and for `unbonding_period − max_job_duration` seconds after it (the evidence window).
    pub max_job_duration: u64,
    /// Share of a worker's stake (bonded + unbonding) taken, and burned, per proven contradiction.
    pub slash_bps: u16,
    /// Least bond another relay registers with (the deployment's own relay, `relay`, needs none).
    #[serde(default)]
    pub min_relay_bond: Uint128,
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, reason: &str| ContractError::InvalidParameter { name, reason: reason.to_owned() };
        if self.denom.is_empty() {
            return Err(invalid("denom", "empty"));
        }
        for (name, bps) in [("relay_fee_bps", self.relay_fee_bps), ("slash_bps", self.slash_bps)] {
            if bps > BPS {
                return Err(invalid(name, "more than 10000 basis points"));
            }
        }
        if self.min_bond.is_zero() {
            return Err(invalid("min_bond", "zero"));
        }
        if self.max_job_duration == 0 {
            return Err(invalid("max_job_duration", "zero"));
        }
        if self.unbonding_period <= self.max_job_duration {
            return Err(invalid(
                "unbonding_period",
                "must exceed max_job_duration, or a worker could withdraw before evidence against it can exist",
            ));
        }
        Ok(())
    }

    pub fn fee_per_replica(&self, price_per_replica: Uint128) -> Result<Uint128> {
        Ok(price_per_replica.checked_multiply_ratio(self.relay_fee_bps, BPS)?)
    }
}

/// Money in and out of the contract since it was instantiated.
#[cw_serde]
#[derive(Default)]
pub struct Totals {
    /// Everything `Deposit` brought in.
    pub deposited: Uint128,
    /// Everything `Withdraw` sent out.
    pub withdrawn: Uint128,
    /// Relay fees sent out.
    pub fees_paid: Uint128,
    /// Slashed stake, burned.
    pub burned: Uint128,
    /// Relay bonds brought in (`RegisterRelay`, `UpdateRelay`).
    #[serde(default)]
    pub relay_bonds_in: Uint128,
    /// Relay bonds returned to the relays (`ReleaseRelay`).
    #[serde(default)]
    pub relay_bonds_out: Uint128,
}

/// One ed25519 key's money in the contract. Only a signature by that key spends it.
#[cw_serde]
#[derive(Default)]
pub struct Account {
    /// Free to bond, to pay for jobs or to withdraw.
    pub balance: Uint128,
    /// The nonce the next authorization must carry; each accepted one increments it.
    pub nonce: u64,
    /// Running totals, for dashboards and balance sheets.
    pub deposited: Uint128,
    pub withdrawn: Uint128,
    /// Paid by this account's worker keys' verified work.
    pub earned: Uint128,
    /// Taken from the balance for job deposits.
    pub spent_on_jobs: Uint128,
    /// Returned from job deposits.
    pub refunded: Uint128,
}

impl Account {
    pub fn credit(&mut self, amount: Uint128) -> Result<()> {
        self.balance = self.balance.checked_add(amount)?;
        Ok(())
    }

    pub fn debit(&mut self, account: &str, amount: Uint128) -> Result<()> {
        self.balance = self.balance.checked_sub(amount).map_err(|_| ContractError::InsufficientBalance {
            account: account.to_owned(),
            balance: self.balance,
            needed: amount,
        })?;
        Ok(())
    }

    /// Accepts `nonce` only if it is the account's current one, and moves on to the next.
    pub fn use_nonce(&mut self, account: &str, nonce: u64) -> Result<()> {
        if nonce != self.nonce {
            return Err(ContractError::BadNonce { account: account.to_owned(), expected: self.nonce, got: nonce });
        }
        self.nonce = self.nonce.checked_add(1).ok_or_else(|| overflow("nonce"))?;
        Ok(())
    }
}

/// How replicas of a job are compared, as far as money is concerned.
#[cw_serde]
#[derive(Copy)]
pub enum JobComparison {
    /// Byte-for-byte: every paid signer signed the same hash, and a dissenting signature on a
    /// settled task is proof of a wrong result (slashable).
    Exact,
    /// Float output within a tolerance, checked by the relay's verifier only: each paid signer
    /// signs its own hash, and nothing is slashable.
    Tolerance,
}

/// Where a (client, spec digest) pair's job lives.
#[cw_serde]
pub struct JobRef {
    pub relay: Addr,
    pub job_id: u64,
}

#[cw_serde]
pub struct Job {
    /// The client's account key: paid the deposit, gets the refund.
    pub client: HexBinary,
    /// The relay that opened the job: settles it and earns its fees.
    pub relay: Addr,
    /// `JobSpec::digest` the client signed; every result signature names it.
    pub spec_digest: HexBinary,
    pub tasks: u32,
    pub replicas: u8,
    pub quorum: u8,
    pub price_per_replica: Uint128,
    pub fee_per_replica: Uint128,
    pub comparison: JobComparison,
    /// Block time (seconds): settlement strictly before, refund at or after.
    pub deadline: u64,
    pub deposit: Uint128,
    pub settled_tasks: u32,
    pub paid_to_workers: Uint128,
    pub paid_to_relay: Uint128,
    /// Set once, by the refund or the relay's early close.
    pub refunded: Option<Uint128>,
}

#[cw_serde]
#[derive(Copy)]
pub enum JobStatus {
    /// Before the deadline: tasks can settle.
    Open,
    /// Deadline passed, refund not yet taken.
    Expired,
    /// Refund taken; nothing left in escrow for this job.
    Closed,
}

impl Job {
    /// The exact deposit a job of this shape costs.
    pub fn deposit_for(
        tasks: u32,
        replicas: u8,
        price_per_replica: Uint128,
        fee_per_replica: Uint128,
    ) -> Result<Uint128> {
        let per_replica = price_per_replica.checked_add(fee_per_replica)?;
        let replicas_total = Uint128::from(tasks).checked_mul(Uint128::from(replicas))?;
        Ok(per_replica.checked_mul(replicas_total)?)
    }

    /// Only exact jobs: on a tolerance job honest workers on different GPUs sign different bytes,
    /// so a dissenting signature proves nothing.
    pub fn slashable(&self) -> bool {
        self.comparison == JobComparison::Exact
    }

    pub fn status(&self, now: u64) -> JobStatus {
        if self.refunded.is_some() {
            JobStatus::Closed
        } else if now < self.deadline {
            JobStatus::Open
        } else {
            JobStatus::Expired
        }
    }

    pub fn ensure_open(&self, job_id: u64, now: u64) -> Result<()> {
        match self.status(now) {
            JobStatus::Open => Ok(()),
            JobStatus::Closed => Err(ContractError::JobClosed { job_id }),
            JobStatus::Expired => Err(ContractError::DeadlinePassed { job_id, deadline: self.deadline, now }),
        }
    }

    /// Records one settled task paid to `signers` workers; returns (paid to workers, relay fee).
    pub fn record_settlement(&mut self, signers: u8) -> Result<(Uint128, Uint128)> {
        let workers = self.price_per_replica.checked_mul(signers.into())?;
        let fee = self.fee_per_replica.checked_mul(signers.into())?;
        self.settled_tasks = self.settled_tasks.checked_add(1).ok_or_else(|| overflow("settled_tasks"))?;
        self.paid_to_workers = self.paid_to_workers.checked_add(workers)?;
        self.paid_to_relay = self.paid_to_relay.checked_add(fee)?;
        Ok((workers, fee))
    }

    /// What is still held for this job (zero once refunded).
    pub fn remaining(&self) -> Result<Uint128> {
        Ok(self
            .deposit
            .checked_sub(self.paid_to_workers)?
            .checked_sub(self.paid_to_relay)?
            .checked_sub(self.refunded.unwrap_or_default())?)
    }

    /// Closes the job after its deadline and returns what goes back to the client.
    pub fn take_refund(&mut self, job_id: u64, now: u64) -> Result<Uint128> {
        match self.status(now) {
            JobStatus::Open => Err(ContractError::DeadlineNotReached { job_id, deadline: self.deadline, now }),
            JobStatus::Closed => Err(ContractError::AlreadyRefunded { job_id }),
            JobStatus::Expired => {
                let amount = self.remaining()?;
                self.refunded = Some(amount);
                Ok(amount)
            }
        }
    }

    /// Closes the job now, deadline or not (the relay's early close), and returns what goes back
    /// to the client.
    pub fn take_close(&mut self, job_id: u64) -> Result<Uint128> {
        if self.refunded.is_some() {
            return Err(ContractError::AlreadyRefunded { job_id });
        }
        let amount = self.remaining()?;
        self.refunded = Some(amount);
        Ok(amount)
    }
}

#[cw_serde]
pub struct SettledTask {
    /// The result the relay delivered: on an exact job the hash every paid worker signed; on a
    /// tolerance job one of `signer_hashes`.
    pub output_hash: HexBinary,
    pub output_len: u64,
    /// Keys of the workers paid for this task (distinct owners), in the order the relay submitted
    /// them.
    pub paid_workers: Vec<HexBinary>,
    /// Tolerance jobs only: the hash each paid worker signed, in the order of `paid_workers`.
    /// Empty on exact jobs, where it is `output_hash` for all.
    pub signer_hashes: Vec<HexBinary>,
    pub settled_at: u64,
}

impl SettledTask {
    /// Whether a signed (hash, length) claim contradicts this settled result.
    pub fn contradicted_by(&self, output_hash: &[u8], output_len: u64) -> bool {
        self.output_hash.as_slice() != output_hash || self.output_len != output_len
    }
}

#[cw_serde]
pub struct Worker {
    /// The account key that bonded this worker key (with the worker key's consent): its pay
    /// and its returned stake are credited there.
    pub owner: HexBinary,
    pub bonded: Uint128,
    /// Leaving, but still slashable until it is released to the owner's account.
    pub unbonding: Uint128,
    /// Block time (seconds) from which `unbonding` can be released.
    pub release_at: u64,
    /// Total taken by slashes.
    pub slashed: Uint128,
}

impl Worker {
    pub fn new(owner: HexBinary, bond: Uint128) -> Self {
        Self { owner, bonded: bond, unbonding: Uint128::zero(), release_at: 0, slashed: Uint128::zero() }
    }

    /// Everything a slash can reach.
    pub fn stake(&self) -> Result<Uint128> {
        Ok(self.bonded.checked_add(self.unbonding)?)
    }

    /// Whether this worker's signature counts toward a quorum.
    pub fn is_eligible(&self, min_bond: Uint128) -> bool {
        self.bonded >= min_bond
    }

    pub fn bond(&mut self, amount: Uint128) -> Result<()> {
        self.bonded = self.bonded.checked_add(amount)?;
        Ok(())
    }

    /// Moves `amount` from bonded to unbonding. Unbonding again restarts the clock for everything
    /// still unbonding: simpler than a queue of claims, and it never shortens a wait.
    pub fn start_unbonding(&mut self, worker: &str, amount: Uint128, now: u64, period: u64) -> Result<()> {
        if amount.is_zero() || amount > self.bonded {
            return Err(ContractError::UnbondTooLarge {
                worker: worker.to_owned(),
                requested: amount,
                bonded: self.bonded,
            });
        }
        self.bonded = self.bonded.checked_sub(amount)?;
        self.unbonding = self.unbonding.checked_add(amount)?;
        self.release_at = now.checked_add(period).ok_or_else(|| overflow("release_at"))?;
        Ok(())
    }

    /// Whether there is unbonding stake whose wait is over.
    pub fn can_release(&self, now: u64) -> bool {
        !self.unbonding.is_zero() && now >= self.release_at
    }

    /// Takes everything that finished unbonding (for the owner's account).
    pub fn release(&mut self, worker: &str, now: u64) -> Result<Uint128> {
        if self.unbonding.is_zero() {
            return Err(ContractError::NothingToRelease { worker: worker.to_owned() });
        }
        if now < self.release_at {
            return Err(ContractError::StillUnbonding { worker: worker.to_owned(), release_at: self.release_at, now });
        }
        Ok(std::mem::take(&mut self.unbonding))
    }

    /// Takes `slash_bps` of the stake, unbonding funds first, and returns the amount taken.
    pub fn slash(&mut self, worker: &str, slash_bps: u16) -> Result<Uint128> {
        let amount = self.stake()?.checked_multiply_ratio(slash_bps, BPS)?;
        if amount.is_zero() {
            return Err(ContractError::NothingToSlash { worker: worker.to_owned() });
        }
        let from_unbonding = amount.min(self.unbonding);
        self.unbonding = self.unbonding.checked_sub(from_unbonding)?;
        self.bonded = self.bonded.checked_sub(amount.checked_sub(from_unbonding)?)?;
        self.slashed = self.slashed.checked_add(amount)?;
        Ok(amount)
    }
}

fn overflow(what: &'static str) -> ContractError {
    ContractError::InvalidParameter { name: what, reason: "overflow".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            denom: "ustar".into(),
            relay: Addr::unchecked("relay"),
            relay_fee_bps: 500,
            min_bond: Uint128::new(1_000),
            unbonding_period: 1_000,
            max_job_duration: 500,
            slash_bps: 5_000,
            min_relay_bond: Uint128::new(10_000),
        }
    }

    fn job() -> Job {
        let cfg = config();
        let price = Uint128::new(100);
        let fee = cfg.fee_per_replica(price).unwrap();
        Job {
            client: HexBinary::from(vec![9; 32]),
            relay: cfg.relay,
            spec_digest: HexBinary::from(vec![1; 32]),
            tasks: 4,
            replicas: 3,
            quorum: 2,
            price_per_replica: price,
            fee_per_replica: fee,
            comparison: JobComparison::Exact,
            deadline: 100,
            deposit: Job::deposit_for(4, 3, price, fee).unwrap(),
            settled_tasks: 0,
            paid_to_workers: Uint128::zero(),
            paid_to_relay: Uint128::zero(),
            refunded: None,
        }
    }

    fn owner() -> HexBinary {
        HexBinary::from(vec![7; 32])
    }

    #[test]
    fn config_validation_table() {
        assert!(config().validate().is_ok());
        type Case = (&'static str, fn(&mut Config));
        let cases: [Case; 5] = [
            ("denom", |c| c.denom.clear()),
            ("relay_fee_bps", |c| c.relay_fee_bps = 10_001),
            ("slash_bps", |c| c.slash_bps = 10_001),
            ("min_bond", |c| c.min_bond = Uint128::zero()),
            ("unbonding_period", |c| c.unbonding_period = c.max_job_duration),
        ];
        for (field, break_it) in cases {
            let mut cfg = config();
            break_it(&mut cfg);
            match cfg.validate() {
                Err(ContractError::InvalidParameter { name, .. }) => assert_eq!(name, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn fee_and_deposit_formulas() {
        let cfg = config();
        assert_eq!(cfg.fee_per_replica(Uint128::new(100)).unwrap(), Uint128::new(5));
        // Floor: 5% of 19 is 0.95.
        assert_eq!(cfg.fee_per_replica(Uint128::new(19)).unwrap(), Uint128::zero());
        assert_eq!(Job::deposit_for(4, 3, Uint128::new(100), Uint128::new(5)).unwrap(), Uint128::new(4 * 3 * 105));
        assert!(Job::deposit_for(u32::MAX, u8::MAX, Uint128::MAX, Uint128::zero()).is_err());
    }

    #[test]
    fn account_spends_only_what_it_holds_and_each_nonce_once() {
        let mut a = Account::default();
        a.credit(Uint128::new(100)).unwrap();
        let err = a.debit("a", Uint128::new(101)).unwrap_err();
        assert!(matches!(err, ContractError::InsufficientBalance { balance, needed, .. }
            if balance == Uint128::new(100) && needed == Uint128::new(101)));
        a.debit("a", Uint128::new(60)).unwrap();
        assert_eq!(a.balance, Uint128::new(40));
        assert!(matches!(a.use_nonce("a", 1), Err(ContractError::BadNonce { expected: 0, got: 1, .. })));
        a.use_nonce("a", 0).unwrap();
        assert!(matches!(a.use_nonce("a", 0), Err(ContractError::BadNonce { expected: 1, got: 0, .. })));
        a.use_nonce("a", 1).unwrap();
        assert_eq!(a.nonce, 2);
        a.nonce = u64::MAX;
        assert!(a.use_nonce("a", u64::MAX).is_err(), "the last nonce cannot wrap to 0");
    }

    #[test]
    fn job_settles_then_refunds_only_the_rest() {
        let mut job = job();
        assert!(job.slashable());
        assert_eq!(job.status(99), JobStatus::Open);
        assert_eq!(job.record_settlement(2).unwrap(), (Uint128::new(200), Uint128::new(10)));
        assert_eq!(job.remaining().unwrap(), Uint128::new(1260 - 210));
        assert!(matches!(job.take_refund(1, 99), Err(ContractError::DeadlineNotReached { .. })));
        assert_eq!(job.status(100), JobStatus::Expired);
        assert!(matches!(job.ensure_open(1, 100), Err(ContractError::DeadlinePassed { .. })));
        assert_eq!(job.take_refund(1, 100).unwrap(), Uint128::new(1050));
        assert_eq!(job.status(100), JobStatus::Closed);
        assert_eq!(job.remaining().unwrap(), Uint128::zero());
        assert!(matches!(job.take_refund(1, 200), Err(ContractError::AlreadyRefunded { .. })));
        assert!(matches!(job.take_close(1), Err(ContractError::AlreadyRefunded { .. })));
        job.comparison = JobComparison::Tolerance;
        assert!(!job.slashable());
    }

    #[test]
    fn worker_unbonding_release_and_slashing() {
        let mut w = Worker::new(owner(), Uint128::new(1_000));
        assert!(w.is_eligible(Uint128::new(1_000)));
        assert!(w.start_unbonding("w", Uint128::new(1_001), 10, 100).is_err());
        assert!(w.start_unbonding("w", Uint128::zero(), 10, 100).is_err());
        w.start_unbonding("w", Uint128::new(400), 10, 100).unwrap();
        assert!(!w.is_eligible(Uint128::new(1_000)));
        assert_eq!((w.bonded, w.unbonding, w.release_at), (Uint128::new(600), Uint128::new(400), 110));
        assert!(!w.can_release(109));
        assert!(matches!(w.release("w", 109), Err(ContractError::StillUnbonding { .. })));
        // Half of 1000 staked: all 400 unbonding, then 100 of the bonded.
        assert_eq!(w.slash("w", 5_000).unwrap(), Uint128::new(500));
        assert_eq!((w.bonded, w.unbonding, w.slashed), (Uint128::new(500), Uint128::zero(), Uint128::new(500)));
        assert!(!w.can_release(110));
        assert!(matches!(w.release("w", 110), Err(ContractError::NothingToRelease { .. })));
        w.start_unbonding("w", Uint128::new(500), 120, 100).unwrap();
        assert!(w.can_release(220));
        assert_eq!(w.release("w", 220).unwrap(), Uint128::new(500));
        assert!(matches!(w.slash("w", 5_000), Err(ContractError::NothingToSlash { .. })));
    }

    #[test]
    fn unbonding_again_restarts_the_clock() {
        let mut w = Worker::new(owner(), Uint128::new(1_000));
        w.start_unbonding("w", Uint128::new(100), 10, 100).unwrap();
        w.start_unbonding("w", Uint128::new(100), 50, 100).unwrap();
        assert_eq!((w.unbonding, w.release_at), (Uint128::new(200), 150));
    }

    #[test]
    fn contradiction_needs_a_different_hash_or_length() {
        let t = SettledTask {
            output_hash: HexBinary::from(vec![1; 32]),
            output_len: 8,
            paid_workers: vec![],
            signer_hashes: vec![],
            settled_at: 0,
        };
        assert!(!t.contradicted_by(&[1; 32], 8));
        assert!(t.contradicted_by(&[2; 32], 8));
        assert!(t.contradicted_by(&[1; 32], 9));
    }
}
