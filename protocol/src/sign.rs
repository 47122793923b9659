//! The exact bytes that get signed, and ed25519 keys.
//!
//! Every signed message starts with a domain tag framed as one length byte followed by the tag's
//! ASCII bytes, so a signature made for one purpose never verifies for another. Integers are
//! big-endian, digests and keys are raw 32 bytes:
//!
//! | message | bytes |
//! | --- | --- |
//! | auth   | tag `starling/auth/v1` ‖ nonce (32) ‖ worker key (32) |
//! | result | tag `starling/result/v1` ‖ job id (u64) ‖ task index (u32) ‖ output SHA-256 (32) ‖ output length (u64) ‖ worker key (32) |
//! | job    | tag `starling/job/v1` ‖ SHA-256 of the spec's canonical JSON (32) ‖ client key (32) |
//! | register | tag `starling/register/v1` ‖ contract address length (u16) ‖ contract address ‖ owner length (u16) ‖ owner address ‖ worker key (32) |
//! | upload | tag `starling/upload/v1` ‖ purpose (u8: 0 client input, 1 worker output) ‖ lease id (u64; 0 for an input) ‖ blob SHA-256 (32) ‖ blob length (u64) ‖ uploader key (32) |
//!
//! The escrow contract checks the following itself; each names the deployment it is for (chain id
//! and contract address, each a u16 big-endian length and the bytes, written `str` below), so a
//! signature made for one chain, contract or job never counts in another:
//!
//! | message | bytes |
//! | --- | --- |
//! | result v2 | tag `starling/result/v2` ‖ chain id (str) ‖ contract (str) ‖ job id (u64) ‖ job spec digest (32) ‖ task index (u32) ‖ output SHA-256 (32) ‖ output length (u64) ‖ worker key (32) |
//! | register v2 | tag `starling/register/v2` ‖ chain id (str) ‖ contract (str) ‖ owner account key (32) ‖ worker key (32) |
//! | account | tag `starling/account/v1` ‖ chain id (str) ‖ contract (str) ‖ account key (32) ‖ nonce (u64) ‖ action: 0 bond ‖ worker key (32) ‖ amount (u128), 1 unbond ‖ worker key (32) ‖ amount (u128), 2 withdraw ‖ recipient address (str) ‖ amount (u128) |
//! | deposit | tag `starling/deposit/v1` ‖ chain id (str) ‖ contract (str) ‖ relay address (str) ‖ client account key (32) ‖ job spec digest (32) ‖ tasks (u32) ‖ replicas (u8) ‖ quorum (u8) ‖ price per replica (u128) ‖ comparison (u8: 0 exact, 1 tolerance) ‖ deadline duration in seconds (u64) ‖ not after, block time in seconds (u64) |
//!
//! `result` v1 and `register` v1 are kept for their golden vectors only: workers sign `result`
//! v2 (an unpaid relay names the empty deployment, `""`/`""`, which no contract accepts), and the
//! escrow accepts nothing else. These encodings never change within a version tag: the golden-vector tests pin
//! every one of them.

use crate::bytes::{Hash32, PublicKey, Signature};
use crate::ids::{LeaseId, TaskId};
use crate::job::JobSpec;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const TAG_AUTH: &str = "starling/auth/v1";
pub const TAG_RESULT: &str = "starling/result/v1";
pub const TAG_JOB: &str = "starling/job/v1";
pub const TAG_REGISTER: &str = "starling/register/v1";
pub const TAG_UPLOAD: &str = "starling/upload/v1";
pub const TAG_RESULT_V2: &str = "starling/result/v2";
pub const TAG_REGISTER_V2: &str = "starling/register/v2";
pub const TAG_ACCOUNT: &str = "starling/account/v1";
pub const TAG_DEPOSIT: &str = "starling/deposit/v1";

fn tagged(tag: &str, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + tag.len() + capacity);
    out.push(u8::try_from(tag.len()).expect("tags are short"));
    out.extend_from_slice(tag.as_bytes());
    out
}

/// Bytes a worker signs to prove it holds its key.
pub fn auth_bytes(nonce: &Hash32, worker: &PublicKey) -> Vec<u8> {
    let mut out = tagged(TAG_AUTH, 64);
    out.extend_from_slice(&nonce.0);
    out.extend_from_slice(&worker.0);
    out
}

/// Bytes a worker signs over a task's output.
pub fn result_bytes(task: TaskId, output_hash: &Hash32, output_len: u64, worker: &PublicKey) -> Vec<u8> {
    let mut out = tagged(TAG_RESULT, 84);
    out.extend_from_slice(&task.job.0.to_be_bytes());
    out.extend_from_slice(&task.index.to_be_bytes());
    out.extend_from_slice(&output_hash.0);
    out.extend_from_slice(&output_len.to_be_bytes());
    out.extend_from_slice(&worker.0);
    out
}

/// Bytes a client signs over a job spec.
pub fn job_bytes(spec_digest: &Hash32, client: &PublicKey) -> Vec<u8> {
    let mut out = tagged(TAG_JOB, 64);
    out.extend_from_slice(&spec_digest.0);
    out.extend_from_slice(&client.0);
    out
}

/// Bytes a worker key signs to register with an escrow contract for an owner account: proof of
/// possession, so nobody can register someone else's key and collect its pay. Addresses are
/// bech32 strings, far below 64 KiB; a longer one would only fail to verify.
pub fn register_bytes(contract: &str, owner: &str, worker: &PublicKey) -> Vec<u8> {
    let mut out = tagged(TAG_REGISTER, 4 + contract.len() + owner.len() + 32);
    for part in [contract, owner] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(&worker.0);
    out
}

/// Appends a string as a u16 big-endian length and its bytes. Chain ids and bech32 addresses are
/// far below 64 KiB (the Cosmos SDK caps addresses at 255 bytes); a longer string is a caller's
/// bug, refused loudly rather than encoded ambiguously.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("chain ids and addresses are shorter than 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// One escrow deployment: the chain and the contract on it. Every signature the escrow checks
/// names one, so it cannot be replayed on another chain or into another contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment<'a> {
    pub chain_id: &'a str,
    pub contract: &'a str,
}

impl Deployment<'_> {
    fn tagged(&self, tag: &str, capacity: usize) -> Vec<u8> {
        let mut out = tagged(tag, 4 + self.chain_id.len() + self.contract.len() + capacity);
        put_str(&mut out, self.chain_id);
        put_str(&mut out, self.contract);
        out
    }
}

/// Bytes a worker signs over a task's output, bound to one deployment and one job: the escrow
/// stores the job's spec digest when the job opens and checks these on settlement and slashing.
pub fn result_bytes_v2(
    deployment: Deployment<'_>,
    task: TaskId,
    spec_digest: &Hash32,
    output_hash: &Hash32,
    output_len: u64,
    worker: &PublicKey,
) -> Vec<u8> {
    let mut out = deployment.tagged(TAG_RESULT_V2, 116);
    out.extend_from_slice(&task.job.0.to_be_bytes());
    out.extend_from_slice(&spec_digest.0);
    out.extend_from_slice(&task.index.to_be_bytes());
    out.extend_from_slice(&output_hash.0);
    out.extend_from_slice(&output_len.to_be_bytes());
    out.extend_from_slice(&worker.0);
    out
}

/// Bytes a worker key signs to be bonded under an owner account (an ed25519 key of the escrow's
/// accounts): proof of possession, so nobody can put someone else's worker key under their own
/// account and collect its pay.
pub fn register_bytes_v2(deployment: Deployment<'_>, owner: &PublicKey, worker: &PublicKey) -> Vec<u8> {
    let mut out = deployment.tagged(TAG_REGISTER_V2, 64);
    out.extend_from_slice(&owner.0);
    out.extend_from_slice(&worker.0);
    out
}

/// What an account's owner authorizes the escrow to do with its funds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountAction {
    /// Move `amount` from the account's balance into `worker`'s bond (registering the key under
    /// this account if it is new).
    Bond { worker: PublicKey, amount: u128 },
    /// Start unbonding `amount` of `worker`'s bond; it returns to the account after the
    /// unbonding period.
    Unbond { worker: PublicKey, amount: u128 },
    /// Send `amount` from the account's balance to the chain address `to`.
    Withdraw { to: String, amount: u128 },
}

/// Bytes an account's key signs to authorize one action on its funds. `nonce` is the account's
/// current nonce in the contract: each authorization is accepted once, in order.
pub fn account_bytes(deployment: Deployment<'_>, account: &PublicKey, nonce: u64, action: &AccountAction) -> Vec<u8> {
    let mut out = deployment.tagged(TAG_ACCOUNT, 32 + 8 + 1 + 34 + 16);
    out.extend_from_slice(&account.0);
    out.extend_from_slice(&nonce.to_be_bytes());
    match action {
        AccountAction::Bond { worker, amount } => {
            out.push(0);
            out.extend_from_slice(&worker.0);
            out.extend_from_slice(&amount.to_be_bytes());
        }
        AccountAction::Unbond { worker, amount } => {
            out.push(1);
            out.extend_from_slice(&worker.0);
            out.extend_from_slice(&amount.to_be_bytes());
        }
        AccountAction::Withdraw { to, amount } => {
            out.push(2);
            put_str(&mut out, to);
            out.extend_from_slice(&amount.to_be_bytes());
        }
    }
    out
}

/// How the verifier compares a job's replicas, as far as money is concerned: only exact jobs
/// are slashable, and tolerance jobs pay signers of different hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComparisonKind {
    Exact,
    Tolerance,
}

impl ComparisonKind {
    fn code(self) -> u8 {
        match self {
            Self::Exact => 0,
            Self::Tolerance => 1,
        }
    }
}

impl From<crate::job::Comparison> for ComparisonKind {
    fn from(comparison: crate::job::Comparison) -> Self {
        match comparison {
            crate::job::Comparison::Exact => Self::Exact,
            crate::job::Comparison::Tolerance { .. } => Self::Tolerance,
        }
    }
}

/// The terms of a job's deposit that its client signs ([`deposit_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositTerms {
    /// [`JobSpec::digest`] of the job: one signed deposit opens at most one job.
    pub spec_digest: Hash32,
    pub tasks: u32,
    pub replicas: u8,
    pub quorum: u8,
    pub price_per_replica: u128,
    pub comparison: ComparisonKind,
    /// Seconds from the job's opening to its escrow deadline.
    pub deadline_secs: u64,
    /// The last block time (seconds) at which the relay may open the job with this signature.
    pub not_after: u64,
}

/// Bytes a client signs to let `relay` open one job in the escrow, paid from the client's account.
pub fn deposit_bytes(deployment: Deployment<'_>, relay: &str, client: &PublicKey, terms: &DepositTerms) -> Vec<u8> {
    let mut out = deployment.tagged(TAG_DEPOSIT, 2 + relay.len() + 64 + 4 + 2 + 16 + 1 + 16);
    put_str(&mut out, relay);
    out.extend_from_slice(&client.0);
    out.extend_from_slice(&terms.spec_digest.0);
    out.extend_from_slice(&terms.tasks.to_be_bytes());
    out.push(terms.replicas);
    out.push(terms.quorum);
    out.extend_from_slice(&terms.price_per_replica.to_be_bytes());
    out.push(terms.comparison.code());
    out.extend_from_slice(&terms.deadline_secs.to_be_bytes());
    out.extend_from_slice(&terms.not_after.to_be_bytes());
    out
}

/// How long after the relay's own deadline the escrow still takes settlements: tasks verified
/// in a job's last moments are still in the settler's batch (or its retries) when the relay's
/// deadline passes, and must be paid, not refunded. The relay closes a finished job at once, so
/// the grace delays nothing for the client.
pub const SETTLE_GRACE_SECS: u64 = 600;

impl DepositTerms {
    /// The terms a relay opens `spec` with: clients sign exactly these. The escrow deadline is
    /// the job's own plus one second (the relay's clock rounds up) plus [`SETTLE_GRACE_SECS`];
    /// the escrow pays at most `max(max_replicas, replicas)` signers per task, so the replicas
    /// added after a disagreement are covered.
    pub fn for_spec(spec: &JobSpec, not_after: u64) -> Self {
        Self {
            spec_digest: spec.digest(),
            tasks: u32::try_from(spec.tasks.len()).unwrap_or(u32::MAX),
            replicas: spec.max_replicas.max(spec.replicas),
            quorum: spec.quorum,
            price_per_replica: u128::from(spec.price_per_replica),
            comparison: spec.comparison.into(),
            deadline_secs: spec.deadline_secs.saturating_add(1 + SETTLE_GRACE_SECS),
            not_after,
        }
    }
}

/// An escrow deployment as it travels on the wire (`welcome`, `assign`, `register`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowDeployment {
    pub chain_id: String,
    pub contract: String,
}

impl EscrowDeployment {
    pub fn as_deployment(&self) -> Deployment<'_> {
        Deployment { chain_id: &self.chain_id, contract: &self.contract }
    }
}

/// What workers of a relay without escrow sign their results for: no contract has an empty
/// chain id or address, so these signatures can never settle or slash anything.
pub const UNPAID: Deployment<'static> = Deployment { chain_id: "", contract: "" };

/// The deployment a worker signs results for, given what its relay's `welcome` named.
pub fn result_deployment(escrow: Option<&EscrowDeployment>) -> Deployment<'_> {
    escrow.map_or(UNPAID, EscrowDeployment::as_deployment)
}

/// A client's consent to pay for one job: its signature over [`deposit_bytes`] of
/// [`DepositTerms::for_spec`]`(spec, not_after)`, for the relay and deployment its escrow info
/// names (`GET /v1/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositAuthorization {
    /// The last block time (Unix seconds) at which the job may be opened.
    pub not_after: u64,
    pub signature: Signature,
}

/// Why a blob is uploaded, and so whose allowance it spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UploadPurpose {
    /// A client's job input: counts against the client key's quota until a job names it.
    Input,
    /// A worker's output for the lease it holds: at most one blob of the task's declared size.
    Output { lease: LeaseId },
}

/// Bytes an uploader signs over a blob it stores on the relay (`PUT /v1/blobs/{hash}`): the
/// relay charges the blob to `uploader` (or to its lease) only with this proof, and the length
/// it signs is the length the relay reserves before reading the body.
pub fn upload_bytes(purpose: UploadPurpose, blob: &Hash32, len: u64, uploader: &PublicKey) -> Vec<u8> {
    let mut out = tagged(TAG_UPLOAD, 81);
    let (kind, lease) = match purpose {
        UploadPurpose::Input => (0u8, 0u64),
        UploadPurpose::Output { lease } => (1u8, lease.0),
    };
    out.push(kind);
    out.extend_from_slice(&lease.to_be_bytes());
    out.extend_from_slice(&blob.0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&uploader.0);
    out
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("not a valid ed25519 public key")]
    BadKey,
    #[error("signature does not verify")]
    Invalid,
}

/// Checks `signature` over `message` by `key` (strict: rejects small-order keys and malleable
/// signatures).
pub fn verify(key: &PublicKey, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::BadKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &sig).map_err(|_| SignatureError::Invalid)
}

/// An ed25519 signing key.
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

impl Keypair {
    #[cfg(feature = "keygen")]
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand_core::OsRng))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    pub fn sign_auth(&self, nonce: &Hash32) -> Signature {
        self.sign(&auth_bytes(nonce, &self.public()))
    }

    pub fn sign_result(&self, task: TaskId, output_hash: &Hash32, output_len: u64) -> Signature {
        self.sign(&result_bytes(task, output_hash, output_len, &self.public()))
    }

    pub fn sign_upload(&self, purpose: UploadPurpose, blob: &Hash32, len: u64) -> Signature {
        self.sign(&upload_bytes(purpose, blob, len, &self.public()))
    }

    pub fn sign_result_v2(
        &self,
        deployment: Deployment<'_>,
        task: TaskId,
        spec_digest: &Hash32,
        output_hash: &Hash32,
        output_len: u64,
    ) -> Signature {
        self.sign(&result_bytes_v2(deployment, task, spec_digest, output_hash, output_len, &self.public()))
    }

    /// This worker key's consent to be bonded under `owner`.
    pub fn sign_register_v2(&self, deployment: Deployment<'_>, owner: &PublicKey) -> Signature {
        self.sign(&register_bytes_v2(deployment, owner, &self.public()))
    }

    /// This account key's authorization of `action` at `nonce`.
    pub fn sign_account_action(&self, deployment: Deployment<'_>, nonce: u64, action: &AccountAction) -> Signature {
        self.sign(&account_bytes(deployment, &self.public(), nonce, action))
    }

    /// This client key's consent to pay for one job opened by `relay`.
    pub fn sign_deposit(&self, deployment: Deployment<'_>, relay: &str, terms: &DepositTerms) -> Signature {
        self.sign(&deposit_bytes(deployment, relay, &self.public(), terms))
    }

    /// Signs `spec` for submission to a relay that runs it unpaid (price 0, or no escrow).
    pub fn sign_job(&self, spec: JobSpec) -> SignedJob {
        self.sign_all(JobToSign::new(spec, self.public(), None))
    }

    /// Signs `spec` for submission with the deposit authorization a paid job needs: `relay` may
    /// open it in `deployment`'s escrow until `not_after` (Unix seconds), paid from this key's
    /// account.
    pub fn sign_paid_job(&self, spec: JobSpec, deployment: Deployment<'_>, relay: &str, not_after: u64) -> SignedJob {
        self.sign_all(JobToSign::new(spec, self.public(), Some((deployment, relay, not_after))))
    }

    fn sign_all(&self, job: JobToSign) -> SignedJob {
        let signature = self.sign(job.job_bytes());
        let deposit = job.deposit_bytes().map(|bytes| self.sign(bytes));
        job.signed(signature, deposit).expect("a deposit signature exactly when the job is paid")
    }
}

/// A job to sign with a key that signs elsewhere (the browser's WebCrypto key): the bytes of the
/// client's signature over the spec and, for a paid job, of its consent to the deposit; the
/// signatures then make the [`SignedJob`]. [`Keypair::sign_job`] and [`Keypair::sign_paid_job`]
/// go through here too.
#[derive(Debug, Clone)]
pub struct JobToSign {
    spec: JobSpec,
    client: PublicKey,
    job: Vec<u8>,
    /// `not_after` and the deposit bytes, for a paid job.
    deposit: Option<(u64, Vec<u8>)>,
}

impl JobToSign {
    /// `spec` from `client`; `paid`: the escrow `deployment`, the `relay` that may open the job
    /// there, and until when (`not_after`, Unix seconds).
    pub fn new(spec: JobSpec, client: PublicKey, paid: Option<(Deployment<'_>, &str, u64)>) -> Self {
        let deposit = paid.map(|(deployment, relay, not_after)| {
            let terms = DepositTerms::for_spec(&spec, not_after);
            (not_after, deposit_bytes(deployment, relay, &client, &terms))
        });
        JobToSign { job: job_bytes(&spec.digest(), &client), spec, client, deposit }
    }

    pub fn client(&self) -> PublicKey {
        self.client
    }

    /// What the client signs to submit the job.
    pub fn job_bytes(&self) -> &[u8] {
        &self.job
    }

    /// What the client signs to pay the deposit, for a paid job.
    pub fn deposit_bytes(&self) -> Option<&[u8]> {
        self.deposit.as_ref().map(|(_, bytes)| bytes.as_slice())
    }

    /// The body of `POST /v1/jobs`. Refused when `deposit` is given for an unpaid job or missing
    /// for a paid one.
    pub fn signed(self, signature: Signature, deposit: Option<Signature>) -> Result<SignedJob, &'static str> {
        let deposit = match (self.deposit, deposit) {
            (Some((not_after, _)), Some(signature)) => Some(DepositAuthorization { not_after, signature }),
            (None, None) => None,
            (Some(_), None) => return Err("a paid job needs the deposit's signature"),
            (None, Some(_)) => return Err("an unpaid job has no deposit to sign"),
        };
        Ok(SignedJob { spec: self.spec, client: self.client, signature, deposit })
    }
}

/// A job spec with its client's signature: the body of `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedJob {
    pub spec: JobSpec,
    pub client: PublicKey,
    pub signature: Signature,
    /// Required for a paid job on a relay with escrow; the relay hands it to the contract,
    /// which checks it. It is not stored: the escrow opens the job before the relay keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit: Option<DepositAuthorization>,
}

impl SignedJob {
    pub fn verify(&self) -> Result<(), SignatureError> {
        verify(&self.client, &job_bytes(&self.spec.digest(), &self.client), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::sha256;
    use crate::ids::JobId;

    fn worker() -> Keypair {
        Keypair::from_seed([7; 32])
    }

    /// A key that signs elsewhere (a WebCrypto key) makes the same job, byte for byte, and a
    /// deposit signature goes with a paid job only.
    #[test]
    fn jobs_signed_in_two_steps_equal_jobs_signed_at_once() {
        let key = Keypair::from_seed([5; 32]);
        let spec = crate::job::tests_support::spec();
        let deployment = Deployment { chain_id: "starling-local", contract: "c1" };
        for paid in [None, Some((deployment, "relay-1", 1_000))] {
            let job = JobToSign::new(spec.clone(), key.public(), paid);
            assert_eq!(job.client(), key.public());
            let signature = key.sign(job.job_bytes());
            let deposit = job.deposit_bytes().map(|b| key.sign(b));
            assert_eq!(deposit.is_some(), paid.is_some());
            let signed = job.clone().signed(signature, deposit).unwrap();
            let at_once = match paid {
                Some((d, relay, not_after)) => key.sign_paid_job(spec.clone(), d, relay, not_after),
                None => key.sign_job(spec.clone()),
            };
            assert_eq!(signed, at_once);
            signed.verify().unwrap();
            let wrong = if deposit.is_some() { None } else { Some(signature) };
            assert!(job.signed(signature, wrong).is_err(), "{paid:?}");
        }
    }

    /// Pinned encodings and signatures. If one of these changes, every deployed contract and
    /// worker disagrees with this build: bump the tag's version instead.
    #[test]
    fn golden_vectors() {
        let key = worker();
        assert_eq!(key.public().to_hex(), "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c");

        let nonce = Hash32([0x11; 32]);
        let auth = auth_bytes(&nonce, &key.public());
        assert_eq!(
            hex::encode(&auth),
            concat!(
                "10",
                "737461726c696e672f617574682f7631",
                "1111111111111111111111111111111111111111111111111111111111111111",
                "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
            )
        );

        let task = TaskId { job: JobId(42), index: 7 };
        let out = sha256(b"output");
        let result = result_bytes(task, &out, 4096, &key.public());
        assert_eq!(
            hex::encode(&result),
            concat!(
                "12",
                "737461726c696e672f726573756c742f7631",
                "000000000000002a",
                "00000007",
                "e0ee8bb50685e05fa0f47ed04203ae953fdfd055f5bd2892ea186504254f8c3a",
                "0000000000001000",
                "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
            )
        );
        let sig = key.sign(&result);
        assert_eq!(sig.to_hex(), GOLDEN_RESULT_SIGNATURE);
        verify(&key.public(), &result, &sig).unwrap();
    }

    #[test]
    fn golden_register_bytes() {
        let key = worker();
        let bytes = register_bytes("cosmos1contract", "cosmos1owner", &key.public());
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "14",
                "737461726c696e672f72656769737465722f7631",
                "000f",
                "636f736d6f7331636f6e7472616374",
                "000c",
                "636f736d6f73316f776e6572",
                "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
            )
        );
    }

    #[test]
    fn golden_upload_bytes() {
        let key = worker();
        let blob = sha256(b"output");
        assert_eq!(
            hex::encode(upload_bytes(UploadPurpose::Input, &blob, 4096, &key.public())),
            concat!(
                "12",
                "737461726c696e672f75706c6f61642f7631",
                "00",
                "0000000000000000",
                "e0ee8bb50685e05fa0f47ed04203ae953fdfd055f5bd2892ea186504254f8c3a",
                "0000000000001000",
                "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
            )
        );
        let output = upload_bytes(UploadPurpose::Output { lease: LeaseId(0x0102) }, &blob, 4096, &key.public());
        assert_eq!(
            hex::encode(&output),
            concat!(
                "12",
                "737461726c696e672f75706c6f61642f7631",
                "01",
                "0000000000000102",
                "e0ee8bb50685e05fa0f47ed04203ae953fdfd055f5bd2892ea186504254f8c3a",
                "0000000000001000",
                "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
            )
        );
        let sig = key.sign_upload(UploadPurpose::Output { lease: LeaseId(0x0102) }, &blob, 4096);
        assert_eq!(sig.to_hex(), GOLDEN_UPLOAD_SIGNATURE);
        verify(&key.public(), &output, &sig).unwrap();
        // The same blob for another lease, another purpose or another length does not verify.
        for other in [
            upload_bytes(UploadPurpose::Output { lease: LeaseId(0x0103) }, &blob, 4096, &key.public()),
            upload_bytes(UploadPurpose::Input, &blob, 4096, &key.public()),
            upload_bytes(UploadPurpose::Output { lease: LeaseId(0x0102) }, &blob, 4095, &key.public()),
        ] {
            assert_eq!(verify(&key.public(), &other, &sig), Err(SignatureError::Invalid));
        }
    }

    /// Cross-checked against Python `cryptography`, as the result signature is.
    const GOLDEN_UPLOAD_SIGNATURE: &str = "582b21f4f9b326adc8ea9fa16f63dbfa4f508507ed70ae0faa6aafb199d2c79771d54ea18bba88f5b2f51354b296f059eac876c46f7d37f8c59a489c1aa7270f";

    /// Cross-checked against an independent ed25519 implementation (Python `cryptography`).
    const GOLDEN_RESULT_SIGNATURE: &str = "898047d6f3c27b8b6431e937ebe3b4bbf8c2ee54038d40af23cb1c61aaeb4343f3bbf6a2027f7dfa194674bc5cd8bc206662319b15469af52a9b4d89280bad0c";

    #[test]
    fn signatures_do_not_cross_domains_or_contexts() {
        let key = worker();
        let task = TaskId { job: JobId(1), index: 0 };
        let h = sha256(b"x");
        let sig = key.sign_result(task, &h, 32);
        let other_task = TaskId { job: JobId(1), index: 1 };
        let other_job = TaskId { job: JobId(2), index: 0 };
        assert!(verify(&key.public(), &result_bytes(task, &h, 32, &key.public()), &sig).is_ok());
        assert_eq!(
            verify(&key.public(), &result_bytes(other_task, &h, 32, &key.public()), &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&key.public(), &result_bytes(other_job, &h, 32, &key.public()), &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&key.public(), &result_bytes(task, &h, 36, &key.public()), &sig),
            Err(SignatureError::Invalid)
        );
        let impostor = Keypair::from_seed([8; 32]);
        assert!(verify(&impostor.public(), &result_bytes(task, &h, 32, &key.public()), &sig).is_err());
        // An auth signature over the same 32 bytes is not a result signature.
        let auth_sig = key.sign_auth(&h);
        assert!(verify(&key.public(), &result_bytes(task, &h, 32, &key.public()), &auth_sig).is_err());
    }

    const DEPLOYMENT: Deployment<'static> = Deployment { chain_id: "starling-1", contract: "cosmos1contract" };
    /// `tag` ‖ chain id "starling-1" ‖ contract "cosmos1contract", hex.
    const DEPLOYMENT_HEX: &str = concat!("000a", "737461726c696e672d31", "000f", "636f736d6f7331636f6e7472616374");
    const WORKER_HEX: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
    const OWNER_HEX: &str = "fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618";
    /// sha256("spec"), standing in for a job spec digest.
    const SPEC_HEX: &str = "d4f02eaafd1a9e9de7d10972ca8e47fa7a985825c3c9c1e249c72683cb3e4f19";

    fn owner() -> Keypair {
        Keypair::from_seed([9; 32])
    }

    /// Checks `bytes` against its expected hex, and that `signature` (made by `key` over them)
    /// is the pinned one and verifies.
    #[track_caller]
    fn assert_golden(bytes: &[u8], expected_hex: &str, key: &Keypair, signature: Signature, expected_sig: &str) {
        assert_eq!(hex::encode(bytes), expected_hex);
        assert_eq!(signature.to_hex(), expected_sig);
        verify(&key.public(), bytes, &signature).unwrap();
    }

    /// Pinned v2 encodings and signatures, built field by field; each signature was also computed
    /// by an independent ed25519 implementation (Python `cryptography`) over independently
    /// encoded bytes.
    #[test]
    fn golden_result_v2() {
        let key = worker();
        assert_eq!(owner().public().to_hex(), OWNER_HEX);
        let spec = sha256(b"spec");
        assert_eq!(spec.to_hex(), SPEC_HEX);
        let task = TaskId { job: JobId(42), index: 7 };
        let out = sha256(b"output");
        let bytes = result_bytes_v2(DEPLOYMENT, task, &spec, &out, 4096, &key.public());
        let expected = [
            "12",
            "737461726c696e672f726573756c742f7632",
            DEPLOYMENT_HEX,
            "000000000000002a",
            SPEC_HEX,
            "00000007",
            "e0ee8bb50685e05fa0f47ed04203ae953fdfd055f5bd2892ea186504254f8c3a",
            "0000000000001000",
            WORKER_HEX,
        ]
        .concat();
        let sig = key.sign_result_v2(DEPLOYMENT, task, &spec, &out, 4096);
        assert_golden(
            &bytes,
            &expected,
            &key,
            sig,
            "7ae12e6f43c797c9da69153b404832c84c9d8a18a0a04c3c7ca6ac4e52462901c3e23afd98d8e5136f08b88f462ed14723f189b760f54813574da87246d31609",
        );

        // Another chain, contract, job digest, task or a v1 encoding of the same result: no.
        let others = [
            result_bytes_v2(
                Deployment { chain_id: "starling-2", ..DEPLOYMENT },
                task,
                &spec,
                &out,
                4096,
                &key.public(),
            ),
            result_bytes_v2(
                Deployment { contract: "cosmos1other", ..DEPLOYMENT },
                task,
                &spec,
                &out,
                4096,
                &key.public(),
            ),
            result_bytes_v2(DEPLOYMENT, task, &sha256(b"another spec"), &out, 4096, &key.public()),
            result_bytes_v2(DEPLOYMENT, TaskId { job: JobId(43), index: 7 }, &spec, &out, 4096, &key.public()),
            result_bytes(task, &out, 4096, &key.public()),
        ];
        for other in others {
            assert_eq!(verify(&key.public(), &other, &sig), Err(SignatureError::Invalid));
        }
        // A v1 signature over the same result is not a v2 signature.
        assert!(verify(&key.public(), &bytes, &key.sign_result(task, &out, 4096)).is_err());
    }

    #[test]
    fn golden_register_v2() {
        let key = worker();
        let bytes = register_bytes_v2(DEPLOYMENT, &owner().public(), &key.public());
        let expected =
            ["14", "737461726c696e672f72656769737465722f7632", DEPLOYMENT_HEX, OWNER_HEX, WORKER_HEX].concat();
        let sig = key.sign_register_v2(DEPLOYMENT, &owner().public());
        assert_golden(
            &bytes,
            &expected,
            &key,
            sig,
            "01fd67298d27a4378b8aca8d0ae725d3ed1cff759fc316a769069b9e257cb5f0d693ffea8c158fa5453a2ca13c2550b4f0516d4e278074150c23651f4053a806",
        );
        // The proof names its owner: it does not put the key under another account.
        let stranger = Keypair::from_seed([10; 32]).public();
        let other = register_bytes_v2(DEPLOYMENT, &stranger, &key.public());
        assert_eq!(verify(&key.public(), &other, &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn golden_account_actions() {
        let account = owner();
        let header =
            |nonce: &str| ["13", "737461726c696e672f6163636f756e742f7631", DEPLOYMENT_HEX, OWNER_HEX, nonce].concat();
        let cases = [
            (
                5,
                AccountAction::Bond { worker: worker().public(), amount: 1_000_000 },
                [header("0000000000000005"), "00".into(), WORKER_HEX.into(), "000000000000000000000000000f4240".into()]
                    .concat(),
                "3d7b054f8cd2ce40331499306bf7c7a5bfca06a419655eeedf0ec2e1cd9add76c90917f6a5f0630a9beab1da65aa600e1c07e3702b5ee9df53af0f539ff7490d",
            ),
            (
                6,
                AccountAction::Unbond { worker: worker().public(), amount: 250 },
                [header("0000000000000006"), "01".into(), WORKER_HEX.into(), "000000000000000000000000000000fa".into()]
                    .concat(),
                "764e74b474acb76cbee6fee48ed34ce7b5b9a354a977bc8430c26850751b8f9510d066bed426c3f01c8128139d3d6f95a2a93af2b6762d20ac7cc682d7850e06",
            ),
            (
                7,
                AccountAction::Withdraw { to: "cosmos1owner".into(), amount: 12_345 },
                [
                    header("0000000000000007"),
                    "02".into(),
                    "000c636f736d6f73316f776e6572".into(),
                    "00000000000000000000000000003039".into(),
                ]
                .concat(),
                "18b91c9b986e08fd5a76a3a0ca2d3369af0e1efa86b05f2595ddd4b323d94cb45060a6bbc988c259239cd461aa1b3c3ba184f9b9c83144518601d70edf6de707",
            ),
        ];
        for (nonce, action, expected, expected_sig) in cases {
            let bytes = account_bytes(DEPLOYMENT, &account.public(), nonce, &action);
            let sig = account.sign_account_action(DEPLOYMENT, nonce, &action);
            assert_golden(&bytes, &expected, &account, sig, expected_sig);
            // The next nonce, or the same action for another account, does not verify.
            let replay = account_bytes(DEPLOYMENT, &account.public(), nonce + 1, &action);
            assert_eq!(verify(&account.public(), &replay, &sig), Err(SignatureError::Invalid));
        }
    }

    #[test]
    fn golden_deposit() {
        let client = owner();
        let terms = DepositTerms {
            spec_digest: sha256(b"spec"),
            tasks: 8,
            replicas: 3,
            quorum: 2,
            price_per_replica: 1_000,
            comparison: ComparisonKind::Tolerance,
            deadline_secs: 3_600,
            not_after: 1_700_000_000,
        };
        let bytes = deposit_bytes(DEPLOYMENT, "cosmos1relay", &client.public(), &terms);
        let expected = [
            "13",
            "737461726c696e672f6465706f7369742f7631",
            DEPLOYMENT_HEX,
            "000c636f736d6f733172656c6179",
            OWNER_HEX,
            SPEC_HEX,
            "00000008",
            "03",
            "02",
            "000000000000000000000000000003e8",
            "01",
            "0000000000000e10",
            "000000006553f100",
        ]
        .concat();
        let sig = client.sign_deposit(DEPLOYMENT, "cosmos1relay", &terms);
        assert_golden(
            &bytes,
            &expected,
            &client,
            sig,
            "245f981118f690a5070278a198cfb954e8b593fb7246e71a9262c93751cd29358cf80d574696014c96bf71565c06290aaee464f764261d2015a9d64ebdedbf04",
        );
        // Every term is covered: change any one and the signature no longer verifies.
        let changed = [
            DepositTerms { tasks: 9, ..terms },
            DepositTerms { replicas: 4, ..terms },
            DepositTerms { quorum: 1, ..terms },
            DepositTerms { price_per_replica: 1_001, ..terms },
            DepositTerms { comparison: ComparisonKind::Exact, ..terms },
            DepositTerms { deadline_secs: 3_601, ..terms },
            DepositTerms { not_after: 1_700_000_001, ..terms },
            DepositTerms { spec_digest: sha256(b"other"), ..terms },
        ];
        for other in changed {
            let bytes = deposit_bytes(DEPLOYMENT, "cosmos1relay", &client.public(), &other);
            assert_eq!(verify(&client.public(), &bytes, &sig), Err(SignatureError::Invalid), "{other:?}");
        }
        let other_relay = deposit_bytes(DEPLOYMENT, "cosmos1relay2", &client.public(), &terms);
        assert_eq!(verify(&client.public(), &other_relay, &sig), Err(SignatureError::Invalid));
        assert_eq!(
            ComparisonKind::from(crate::job::Comparison::Tolerance { rel: 0.0, abs: 0.0 }),
            ComparisonKind::Tolerance
        );
        assert_eq!(ComparisonKind::from(crate::job::Comparison::Exact), ComparisonKind::Exact);
    }

    #[test]
    fn strings_are_length_prefixed_so_fields_cannot_slide() {
        // "ab" + "c" and "a" + "bc" would collide without the length prefixes.
        let one =
            register_bytes_v2(Deployment { chain_id: "ab", contract: "c" }, &owner().public(), &worker().public());
        let two =
            register_bytes_v2(Deployment { chain_id: "a", contract: "bc" }, &owner().public(), &worker().public());
        assert_ne!(one, two);
    }

    #[test]
    fn signed_job_detects_tampering() {
        let client = Keypair::from_seed([9; 32]);
        let mut signed = client.sign_job(crate::job::tests_support::spec());
        signed.verify().unwrap();
        let wire = serde_json::to_vec(&signed).unwrap();
        let back: SignedJob = serde_json::from_slice(&wire).unwrap();
        back.verify().unwrap();
        signed.spec.price_per_replica += 1;
        assert_eq!(signed.verify(), Err(SignatureError::Invalid));
    }
}
