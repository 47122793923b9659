//! What a worker signs for the escrow, shared by the native and the browser worker: its result
//! signatures (bound to the deployment its relay's `welcome` named and to the job's spec digest),
//! and its answer to a registration request (two signatures: the owner account's authorization
//! of the bond, and the worker key's consent to be bonded under that owner).
//!
//! The relay is not trusted with money: a request that names another deployment than `welcome`
//! did, or asks for a bond above the worker's cap, is refused here and nothing is signed.

use starling_protocol::sign::{AccountAction, EscrowDeployment, Keypair, result_deployment};
use starling_protocol::worker::{Assignment, WorkerMessage};
use starling_protocol::{Hash32, Signature};

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

/// The worker's signature over its result for `a` (`result_bytes_v2`).
pub fn sign_result(
    key: &Keypair,
    welcomed: Option<&EscrowDeployment>,
    a: &Assignment,
    hash: &Hash32,
    len: u64,
) -> Signature {
    key.sign_result_v2(result_deployment(welcomed), a.task, &a.spec_digest, hash, len)
}

/// The answer to a registration request: `owner` (often the worker key itself) authorizes
/// bonding `bond` at `nonce`, and the worker key consents to being bonded under `owner`.
pub fn register(
    worker: &Keypair,
    owner: &Keypair,
    welcomed: Option<&EscrowDeployment>,
    asked: &EscrowDeployment,
    nonce: u64,
    bond: u64,
    max_bond: u64,
) -> Result<WorkerMessage, Refusal> {
    let Some(welcomed) = welcomed else { return Err(Refusal::NoEscrow) };
    if asked != welcomed {
        return Err(Refusal::OtherDeployment { asked: asked.clone(), welcomed: Some(welcomed.clone()) });
    }
    if bond > max_bond {
        return Err(Refusal::BondTooLarge { asked: bond, cap: max_bond });
    }
    let deployment = welcomed.as_deployment();
    let action = AccountAction::Bond { worker: worker.public(), amount: u128::from(bond) };
    Ok(WorkerMessage::Register {
        owner: owner.public(),
        nonce,
        bond,
        authorization: owner.sign_account_action(deployment, nonce, &action),
        proof: worker.sign_register_v2(deployment, &owner.public()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::job::{BuiltinKernel, KernelSpec};
    use starling_protocol::sign::{account_bytes, register_bytes_v2, result_bytes_v2, verify};
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
        let Ok(WorkerMessage::Register { owner: o, nonce, bond, authorization, proof }) =
            register(&worker, &owner, Some(&here), &here, 4, 10, 10)
        else {
            panic!("an in-bounds request on the welcomed deployment is answered")
        };
        assert_eq!((o, nonce, bond), (owner.public(), 4, 10));
        let action = AccountAction::Bond { worker: worker.public(), amount: 10 };
        verify(&owner.public(), &account_bytes(here.as_deployment(), &owner.public(), 4, &action), &authorization)
            .unwrap();
        verify(&worker.public(), &register_bytes_v2(here.as_deployment(), &owner.public(), &worker.public()), &proof)
            .unwrap();

        let cases = [
            ("other contract", Some(here.clone()), deployment("c2"), 10, "deployment"),
            ("no escrow welcomed", None, here.clone(), 10, "without escrow"),
            ("bond above cap", Some(here.clone()), here.clone(), 11, "cap"),
        ];
        for (case, welcomed, asked, bond, why) in cases {
            let got = register(&worker, &owner, welcomed.as_ref(), &asked, 4, bond, 10);
            assert!(got.as_ref().is_err_and(|e| e.to_string().contains(why)), "{case}: {got:?}");
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
        let bytes = |d: &EscrowDeployment, digest: &Hash32| {
            result_bytes_v2(d.as_deployment(), a.task, digest, &hash, len, &key.public())
        };
        verify(&key.public(), &bytes(&here, &a.spec_digest), &sig).unwrap();
        assert!(verify(&key.public(), &bytes(&deployment("c2"), &a.spec_digest), &sig).is_err());
        assert!(verify(&key.public(), &bytes(&here, &Hash32([8; 32])), &sig).is_err());
    }
}
