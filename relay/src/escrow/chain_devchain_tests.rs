//! The chain backend against a running development chain (`starling-devchain`): every
//! transaction it sends and every query it makes, over real JSON-RPC, with signed Cosmos SDK
//! transactions and the real contract in cosmwasm-vm.

use super::*;
use crate::escrow::plan::{self, SignedReplica};
use starling_devchain::rpc::Shared;
use starling_devchain::{DevChain, Genesis, PREFIX};
use starling_protocol::Hash32;
use starling_protocol::TaskId;
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::sign::{AccountAction, Keypair};
use std::collections::HashMap;
use std::sync::Arc;

const PRICE: u64 = 1_000;
const OUTPUT_LEN: u64 = 8;
const RELAY_FUNDS: u128 = 1_000_000_000;
const MIN_BOND: u128 = 10_000_000;

fn wasm() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contracts/starling_escrow.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}: run scripts/build-contract.sh first", path.display()))
}

/// A relay's chain key (secp256k1 from `seed`), written where `ChainConfig` reads it.
struct RelayKey {
    file: tempfile::NamedTempFile,
    address: String,
}

fn relay_key(seed: u8) -> RelayKey {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ::hex::encode([seed; 32])).unwrap();
    let key = SigningKey::from_slice(&[seed; 32]).unwrap();
    RelayKey { file, address: key.public_key().account_id(PREFIX).unwrap().to_string() }
}

/// A development chain served on 127.0.0.1:0, `genesis_relay` its escrow's own relay and the
/// `funded` addresses holding [`RELAY_FUNDS`] each.
async fn dev_chain(genesis_relay: &str, funded: &[&str]) -> (String, String, Shared) {
    let mut genesis = Genesis::new("starling-dev-test", genesis_relay);
    genesis.accounts = funded.iter().map(|a| ((*a).to_owned(), RELAY_FUNDS)).collect();
    genesis.escrow.min_bond = MIN_BOND.into();
    genesis.escrow.min_relay_bond = MIN_BOND.into();
    let chain = DevChain::new(&wasm(), genesis).unwrap();
    let contract = chain.contract().to_string();
    let shared: Shared = Arc::new(std::sync::Mutex::new(chain));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(starling_devchain::rpc::serve(
        listener,
        shared.clone(),
        Duration::from_millis(200),
        std::future::pending(),
    ));
    (url, contract, shared)
}

fn config(url: &str, contract: &str, key: &RelayKey) -> ChainConfig {
    let mut cfg = ChainConfig::new(url, "starling-dev-test", contract, PREFIX, key.file.path());
    cfg.confirm_timeout = Duration::from_secs(10);
    cfg
}

fn spec(tasks: usize) -> JobSpec {
    JobSpec {
        label: String::new(),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks: vec![
            TaskSpec { params: vec![], inputs: vec![], workgroups: [1, 1, 1], output_size: 8, kernel: 0 };
            tasks
        ],
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 2,
        price_per_replica: PRICE,
        deadline_secs: 600,
        homogeneous: false,
        nonce: 0,
        adaptive: None,
        kernels: Vec::new(),
    }
}

fn not_after() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600
}

/// Issue 13: every transaction (register a relay, update it, bond a worker, open a job, settle,
/// slash, close, an account's own withdrawal) and every query of the chain backend runs against
/// the development chain; each job's own relay alone settles it and earns its fee; no coin
/// appears or disappears.
#[tokio::test]
async fn every_chain_transaction_and_query_runs_against_the_dev_chain() {
    let (a_key, b_key) = (relay_key(31), relay_key(32));
    let (url, contract, chain) = dev_chain(&a_key.address, &[&a_key.address, &b_key.address]).await;
    let supply = chain.lock().unwrap().total_supply();

    // Relay A is the deployment's own; B is not registered and cannot start until it registers.
    let a = Chain::connect(config(&url, &contract, &a_key)).await.unwrap();
    assert_eq!((a.info().relay_address.as_str(), a.info().relay_fee_bps), (a_key.address.as_str(), 500));
    let refused = Chain::connect(config(&url, &contract, &b_key)).await.unwrap_err();
    assert!(refused.to_string().contains("not a registered relay"), "{refused}");
    let mut b_cfg = config(&url, &contract, &b_key);
    b_cfg.register = Some(RelayRegistration { endpoint: "http://b.example".into(), fee_bps: 300, bond: MIN_BOND });
    let b = Chain::connect(b_cfg.clone()).await.unwrap();
    assert_eq!(b.info().relay_fee_bps, 300);
    let b_bank = chain.lock().unwrap().balance(&b_key.address);
    assert!(b_bank < RELAY_FUNDS - MIN_BOND, "B paid its bond and its gas: {b_bank}");
    // A restart with a new endpoint and a lower fee updates the entry; a higher fee is not asked.
    b_cfg.register = Some(RelayRegistration { endpoint: "http://b2.example".into(), fee_bps: 200, bond: MIN_BOND });
    let b = Chain::connect(b_cfg).await.unwrap();
    assert_eq!(b.info().relay_fee_bps, 200);
    let listed = Node::new(&url).unwrap().relays(&contract).await.unwrap();
    let by_address: HashMap<_, _> = listed.iter().map(|r| (r.address.clone(), r.clone())).collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(by_address[&b_key.address].endpoint, "http://b2.example");
    assert_eq!((by_address[&b_key.address].fee_bps, by_address[&b_key.address].bond.as_str()), (200, "10000000"));
    assert!(by_address[&a_key.address].active && by_address[&b_key.address].active);
    assert_eq!(b.relays().await.unwrap(), listed, "the backend's registry read is the keyless reader's");

    // Accounts funded by the faucet's deposits (a client's own Deposit on a real chain).
    let here = a.deployment();
    let d = here.as_deployment();
    assert_eq!(b.deployment(), here, "one contract, one deployment: signatures name the relay instead");
    let workers: Vec<Keypair> = (1..=3).map(|n| Keypair::from_seed([n; 32])).collect();
    let owners: Vec<Keypair> = (11..=13).map(|n| Keypair::from_seed([n; 32])).collect();
    let client = Keypair::from_seed([20; 32]);
    for key in owners.iter().chain([&client]) {
        chain.lock().unwrap().faucet_deposit(&key.public().0, 100 * MIN_BOND).unwrap();
        assert_eq!(EscrowBridge::account(&a, &key.public()).await.unwrap().balance, (100 * MIN_BOND).to_string());
    }

    // Bond: registrations signed by owner and worker, sent by either relay.
    for (i, (worker, owner)) in workers.iter().zip(&owners).enumerate() {
        let nonce = a.nonce(&owner.public()).await.unwrap();
        let action = AccountAction::Bond { worker: worker.public(), amount: MIN_BOND };
        let registration = Registration {
            worker: worker.public(),
            owner: owner.public(),
            nonce,
            bond: u64::try_from(MIN_BOND).unwrap(),
            authorization: owner.sign_account_action(d, nonce, &action),
            proof: worker.sign_register_v2(d, &owner.public()),
        };
        let via = if i == 0 { &b } else { &a };
        via.register_worker(&registration).await.unwrap();
        let standing = a.worker(&worker.public()).await.unwrap().expect("bonded");
        assert!(standing.eligible && standing.owner == owner.public());
        let shown = a.worker_account(&worker.public()).await.unwrap().unwrap();
        assert_eq!(shown.bonded.as_deref(), Some("10000000"));
    }

    // A job on each relay, each at its own fee; job ids are per relay.
    let job = JobId(1);
    let on_a = client.sign_paid_job(spec(2), d, &a_key.address, not_after());
    let on_b = client.sign_paid_job(JobSpec { nonce: 1, ..spec(1) }, d, &b_key.address, not_after());
    a.open_job(&plan::open_job(job, &on_a).unwrap().unwrap()).await.unwrap();
    b.open_job(&plan::open_job(job, &on_b).unwrap().unwrap()).await.unwrap();
    let replay = a.open_job(&plan::open_job(JobId(2), &on_a).unwrap().unwrap()).await.unwrap_err();
    assert!(replay.to_string().contains("already opened"), "one signed deposit opens one job: {replay}");
    let stolen = a.open_job(&plan::open_job(JobId(2), &on_b).unwrap().unwrap()).await.unwrap_err();
    assert!(matches!(stolen, EscrowError::Refused(_)), "A cannot open a deposit signed for B: {stolen}");
    assert_eq!((a.max_job_id().await.unwrap(), b.max_job_id().await.unwrap()), (1, 1));
    assert_eq!(a.open_jobs().await.unwrap(), vec![job]);
    let fee_a = u128::from(PRICE) * 500 / 10_000;
    let fee_b = u128::from(PRICE) * 200 / 10_000;
    assert_eq!(a.job(job).await.unwrap().unwrap().deposit, (2 * 2 * (u128::from(PRICE) + fee_a)).to_string());
    assert_eq!(b.job(job).await.unwrap().unwrap().deposit, (2 * (u128::from(PRICE) + fee_b)).to_string());

    // Settle task 0 of A's job with w1 and w2; w3 signed another result and is slashed.
    let digest = spec(2).digest();
    let task = TaskId { job, index: 0 };
    let good = Hash32([0xa0; 32]);
    let replicas: Vec<SignedReplica> = workers[..2]
        .iter()
        .map(|w| SignedReplica {
            worker: w.public(),
            output_hash: good,
            output_len: OUTPUT_LEN,
            signature: w.sign_result_v2(d, task, &digest, &good, OUTPUT_LEN),
            accepted: true,
            rejected: false,
        })
        .collect();
    let eligible: HashMap<_, _> = workers.iter().zip(&owners).map(|(w, o)| (w.public(), o.public())).collect();
    let terms = plan::settle_terms(&spec(2)).unwrap();
    let entry = plan::settle_entry(0, &good, &replicas, &eligible, terms).unwrap();
    let foreign = b.settle(job, std::slice::from_ref(&entry)).await.unwrap_err();
    assert!(matches!(foreign, EscrowError::Refused(_)), "B settles only its own job 1, whose spec differs: {foreign}");
    a.settle(job, &[entry]).await.unwrap();
    assert_eq!(a.settled_tasks(job).await.unwrap(), HashSet::from([0]));
    assert!(b.settled_tasks(job).await.unwrap().is_empty(), "B's job 1 is another job");
    let bad = Hash32([0xbb; 32]);
    let evidence = Evidence {
        job,
        index: 0,
        worker: workers[2].public(),
        output_hash: bad,
        output_len: OUTPUT_LEN,
        signature: workers[2].sign_result_v2(d, task, &digest, &bad, OUTPUT_LEN),
    };
    a.slash(&evidence).await.unwrap();
    let slashed = a.worker_account(&workers[2].public()).await.unwrap().unwrap();
    assert_ne!(slashed.slashed.as_deref(), Some("0"), "w3 lost its bond: {slashed:?}");
    assert!(!a.worker(&workers[2].public()).await.unwrap().unwrap().eligible);

    // A closes its job: the unsettled task and nothing else comes back.
    let refund = a.close(job).await.unwrap();
    assert_eq!(refund, 2 * (u128::from(PRICE) + fee_a));
    assert!(a.open_jobs().await.unwrap().is_empty());
    assert_eq!(b.open_jobs().await.unwrap(), vec![job], "B's job is untouched");

    // Each relay's record: A earned its fee on two paid replicas and slashed one worker; B
    // earned nothing (nothing of its job settled).
    let listed = Node::new(&url).unwrap().relays(&contract).await.unwrap();
    let by_address: HashMap<_, _> = listed.iter().map(|r| (r.address.clone(), r.clone())).collect();
    let (ra, rb) = (&by_address[&a_key.address], &by_address[&b_key.address]);
    assert_eq!((ra.jobs_opened, ra.jobs_ended, ra.tasks_paid, ra.workers_slashed), (1, 1, 1, 1));
    assert_eq!(ra.fees_earned, (2 * fee_a).to_string());
    assert_eq!((rb.jobs_opened, rb.tasks_paid, rb.fees_earned.as_str()), (1, 0, "0"));

    // The client's own signed withdrawal to a chain address, relayed by B (B pays the gas).
    let to = relay_key(40).address;
    let nonce = b.nonce(&client.public()).await.unwrap();
    let action = AccountAction::Withdraw { to: to.clone(), amount: 1_234 };
    let signature = client.sign_account_action(d, nonce, &action);
    b.authorized(&client.public(), nonce, &action, &signature).await.unwrap();
    assert_eq!(chain.lock().unwrap().balance(&to), 1_234);
    let replayed = b.authorized(&client.public(), nonce, &action, &signature).await.unwrap_err();
    assert!(matches!(replayed, EscrowError::Refused(_)), "a signed withdrawal pays once: {replayed}");

    // B's job 1 is still open when B goes silent; past its deadline, A (any other registered
    // relay) refunds it to the client, unasked.
    assert_eq!(a.refund_expired_elsewhere(8).await.unwrap(), 0, "nothing expired yet");
    let before = EscrowBridge::account(&a, &client.public()).await.unwrap().balance.parse::<u128>().unwrap();
    chain.lock().unwrap().advance_time(600 + 600 + 2);
    assert_eq!(a.refund_expired_elsewhere(8).await.unwrap(), 1);
    let after = EscrowBridge::account(&a, &client.public()).await.unwrap().balance.parse::<u128>().unwrap();
    assert_eq!(after - before, 2 * (u128::from(PRICE) + fee_b), "B's whole deposit came back");
    assert_eq!(a.refund_expired_elsewhere(8).await.unwrap(), 0, "refunded once");
    let listed = Node::new(&url).unwrap().relays(&contract).await.unwrap();
    let rb = listed.iter().find(|r| r.address == b_key.address).unwrap();
    assert_eq!((rb.jobs_ended, rb.fees_earned.as_str()), (1, "0"), "B earned nothing on a job it never finished");

    // Gas fees, bonds and payments move coins; only the slashed half of w3's bond is burned.
    assert_eq!(chain.lock().unwrap().total_supply(), supply - MIN_BOND / 2);
}
