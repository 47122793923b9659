//! What a worker signs for the escrow, shared by the native and the browser worker: its result
//! signatures (bound to the deployment its relay's `welcome` named and to the job's spec digest),
//! and its answer to a registration request (two signatures: the owner account's authorization
//! of the bond, and the worker key's consent to be bonded under that owner). The worker key's
//! signatures are made by the glue (the key may be a WebCrypto key nobody can read), so these
//! build the bytes it signs.
//!
//! The relay is not trusted with money: a request that names another deployment than `welcome`
//! did, or asks for a bond above the worker's cap, is refused here and nothing is signed.

use starling_protocol::sign::{
    AccountAction, EscrowDeployment, Keypair, account_bytes, register_bytes_v2, result_bytes_v2, result_deployment,
};
use starling_protocol::worker::{Assignment, WorkerMessage};
use starling_protocol::{Hash32, PublicKey, Signature};

/// The largest bond a worker signs for unless told otherwise: ten times the embedded ledger's
/// minimum. A relay asking more is refused.
pub const DEFAULT_MAX_BOND: u64 = 100_000_000;

/// Why a worker refuses to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the relay welcomed us without escrow but asks us to register")]
    NoEscrow,
    #[error("the request names deployment {asked:?}, but the relay's welcome named {welcomed:?}")]
    OtherDeployment { asked: EscrowDeployment, welcomed: Option<EscrowDeployment> },
    #[error("the relay asks for a bond of {asked}, above this worker's cap of {cap}")]
    BondTooLarge { asked: u64, cap: u64 },
}

/// Checks that an assignment names the deployment `welcome` named (or none, on an unpaid relay).
pub fn check_assignment(welcomed: Option<&EscrowDeployment>, a: &Assignment) -> Result<(), Refusal> {
    if a.escrow.as_ref() == welcomed {
        Ok(())
    } else {
        Err(Refusal::OtherDeployment {
            asked: a.escrow.clone().unwrap_or(EscrowDeployment { chain_id: String::new(), contract: String::new() }),
            welcomed: welcomed.cloned(),
        })
    }
}

/// The bytes the worker signs over its result for `a` (`result_bytes_v2`).
pub fn result_bytes(
    worker: &PublicKey,
    welcomed: Option<&EscrowDeployment>,
    a: &Assignment,
    hash: &Hash32,
    len: u64,
) -> Vec<u8> {
    result_bytes_v2(result_deployment(welcomed), a.task, &a.spec_digest, hash, len, worker)
}

/// The worker's signature over its result for `a`, by a key in memory (the native worker's tests
/// and benches; the workers themselves sign [`result_bytes`] where the key is).
pub fn sign_result(
    key: &Keypair,
    welcomed: Option<&EscrowDeployment>,
    a: &Assignment,
    hash: &Hash32,
    len: u64,
) -> Signature {
    key.sign(&result_bytes(&key.public(), welcomed, a, hash, len))
}

/// A registration answer before the worker key signs it: `message` with its worker-key
/// signatures zeroed, and the bytes that key signs for them.
#[derive(Debug)]
pub struct Registration {
    pub message: WorkerMessage,
    /// The bond's authorization at the nonce, when the worker key is its own owner; `None` when
    /// `owner` signed it already.
    pub authorization: Option<Vec<u8>>,
    /// The worker key's consent to being bonded under its owner.
    pub proof: Vec<u8>,
}

impl Registration {
    /// The message, signed by `worker` (a key in memory) where the worker key signs.
    pub fn sign_with(self, worker: &Keypair) -> WorkerMessage {
        let mut message = self.message;
        if let WorkerMessage::Register { authorization, proof, .. } = &mut message {
            if let Some(bytes) = &self.authorization {
                *authorization = worker.sign(bytes);
            }
            *proof = worker.sign(&self.proof);
        }
        message
    }
}

/// The answer to a registration request: the owner (`owner`, or the worker key itself when
/// `None`) authorizes bonding `bond` at `nonce`, and the worker key consents to being bonded under
/// that owner. Refused for a deployment other than the welcomed one, or a bond over `max_bond`.
pub fn register(
    worker: &PublicKey,
    owner: Option<&Keypair>,
    welcomed: Option<&EscrowDeployment>,
    asked: &EscrowDeployment,
    nonce: u64,
    bond: u64,
    max_bond: u64,
) -> Result<Registration, Refusal> {
    let Some(welcomed) = welcomed else { return Err(Refusal::NoEscrow) };
    if asked != welcomed {
        return Err(Refusal::OtherDeployment { asked: asked.clone(), welcomed: Some(welcomed.clone()) });
    }
    if bond > max_bond {
        return Err(Refusal::BondTooLarge { asked: bond, cap: max_bond });
    }
    let deployment = welcomed.as_deployment();
    let action = AccountAction::Bond { worker: *worker, amount: u128::from(bond) };
    let owner_key = owner.map_or(*worker, Keypair::public);
    let (authorization, authorization_bytes) = match owner {
        Some(owner) => (owner.sign_account_action(deployment, nonce, &action), None),
        None => (Signature([0; 64]), Some(account_bytes(deployment, worker, nonce, &action))),
    };
    Ok(Registration {
        message: WorkerMessage::Register { owner: owner_key, nonce, bond, authorization, proof: Signature([0; 64]) },
        authorization: authorization_bytes,
        proof: register_bytes_v2(deployment, &owner_key, worker),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::job::{BuiltinKernel, KernelSpec};
    use starling_protocol::sign::verify;
    use starling_protocol::{JobId, LeaseId, TaskId};

    fn deployment(contract: &str) -> EscrowDeployment {
        EscrowDeployment { chain_id: "starling-local".into(), contract: contract.into() }
    }

    fn assignment(escrow: Option<EscrowDeployment>) -> Assignment {
        Assignment {
            lease: LeaseId(1),
            task: TaskId { job: JobId(3), index: 2 },
            kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
            params: vec![],
            inputs: vec![],
            workgroups: [1, 1, 1],
            output_size: 8,
            lease_ms: 1000,
            spec_digest: Hash32([9; 32]),
            escrow,
        }
    }

    #[test]
    fn registration_signs_both_consents_for_the_welcomed_deployment_only() {
        let (worker, owner) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        let here = deployment("c1");
        let action = AccountAction::Bond { worker: worker.public(), amount: 10 };

        // Another owner signs its authorization here; the worker key signs its consent.
        let Ok(Registration { message, authorization: None, proof }) =
            register(&worker.public(), Some(&owner), Some(&here), &here, 4, 10, 10)
        else {
            panic!("an in-bounds request on the welcomed deployment is answered, the owner's part signed")
        };
        let WorkerMessage::Register { owner: o, nonce, bond, authorization, .. } = message else {
            panic!("{message:?}")
        };
        assert_eq!((o, nonce, bond), (owner.public(), 4, 10));
        verify(&owner.public(), &account_bytes(here.as_deployment(), &owner.public(), 4, &action), &authorization)
            .unwrap();
        assert_eq!(proof, register_bytes_v2(here.as_deployment(), &owner.public(), &worker.public()));

        // A key that owns itself signs both.
        let Ok(Registration { message, authorization: Some(authorization), proof }) =
            register(&worker.public(), None, Some(&here), &here, 4, 10, 10)
        else {
            panic!("a self-owned key signs both parts")
        };
        assert!(matches!(message, WorkerMessage::Register { owner: o, .. } if o == worker.public()));
        assert_eq!(authorization, account_bytes(here.as_deployment(), &worker.public(), 4, &action));
        assert_eq!(proof, register_bytes_v2(here.as_deployment(), &worker.public(), &worker.public()));
        let signed = register(&worker.public(), None, Some(&here), &here, 4, 10, 10).unwrap().sign_with(&worker);
        let WorkerMessage::Register { authorization: a, proof: p, .. } = signed else { panic!("{signed:?}") };
        verify(&worker.public(), &authorization, &a).unwrap();
        verify(&worker.public(), &proof, &p).unwrap();

        let cases = [
            ("other contract", Some(here.clone()), deployment("c2"), 10, "deployment"),
            ("no escrow welcomed", None, here.clone(), 10, "without escrow"),
            ("bond above cap", Some(here.clone()), here.clone(), 11, "cap"),
        ];
        for (case, welcomed, asked, bond, why) in cases {
            for owner in [Some(&owner), None] {
                let got = register(&worker.public(), owner, welcomed.as_ref(), &asked, 4, bond, 10);
                assert!(got.as_ref().is_err_and(|e| e.to_string().contains(why)), "{case}: {got:?}");
            }
        }
    }

    #[test]
    fn assignments_must_name_the_welcomed_deployment() {
        let here = deployment("c1");
        assert!(check_assignment(Some(&here), &assignment(Some(here.clone()))).is_ok());
        assert!(check_assignment(None, &assignment(None)).is_ok());
        assert!(check_assignment(Some(&here), &assignment(Some(deployment("c2")))).is_err());
        assert!(check_assignment(Some(&here), &assignment(None)).is_err());
        assert!(check_assignment(None, &assignment(Some(here))).is_err());
    }

    #[test]
    fn results_are_signed_for_the_deployment_and_the_job() {
        let key = Keypair::from_seed([1; 32]);
        let here = deployment("c1");
        let a = assignment(Some(here.clone()));
        let (hash, len) = (Hash32([5; 32]), 8);
        let sig = sign_result(&key, Some(&here), &a, &hash, len);
        assert_eq!(sig, key.sign(&result_bytes(&key.public(), Some(&here), &a, &hash, len)));
        let bytes = |d: &EscrowDeployment, digest: &Hash32| {
            result_bytes_v2(d.as_deployment(), a.task, digest, &hash, len, &key.public())
        };
        verify(&key.public(), &bytes(&here, &a.spec_digest), &sig).unwrap();
        assert!(verify(&key.public(), &bytes(&deployment("c2"), &a.spec_digest), &sig).is_err());
        assert!(verify(&key.public(), &bytes(&here, &Hash32([8; 32])), &sig).is_err());
    }
}
