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
//! The escrow contract rebuilds `result` bytes from settled data and verifies the signatures
//! itself, so these encodings never change within a version tag. `tests::golden_vectors` pins them.

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

    /// Signs `spec` for submission.
    pub fn sign_job(&self, spec: JobSpec) -> SignedJob {
        let client = self.public();
        let signature = self.sign(&job_bytes(&spec.digest(), &client));
        SignedJob { spec, client, signature }
    }
}

/// A job spec with its client's signature: the body of `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedJob {
    pub spec: JobSpec,
    pub client: PublicKey,
    pub signature: Signature,
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
