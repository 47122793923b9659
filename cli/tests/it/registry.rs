//! Issue 13: independent relays, each with its own database, registered in one escrow contract
//! on a local development chain; workers that know only the chain find them, spread over the
//! relays with work, and move when one is killed; each job's own relay earns its fee, no other.

use crate::support::*;
use starling_protocol::api::{JobState, RegisteredRelay};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PRICE: u64 = 1_000;
/// Fees: A is the deployment's own relay (the instantiated fee), B and C register their own.
const FEES: [u128; 3] = [500, 300, 100];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `starling chain key`: creates the key file, prints the address.
fn chain_key(path: &Path) -> String {
    let out = Command::new(BIN).args(["chain", "key"]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct DevChain {
    _proc: Proc,
    rpc: String,
    contract: String,
}

fn spawn_chain(dir: &Path, genesis_relay: &str, endpoint: &str, funded: &[&str]) -> DevChain {
    let mut cmd = Command::new(BIN);
    cmd.args(["chain", "serve", "--listen", "127.0.0.1:0", "--block-ms", "200", "--relay", genesis_relay]);
    cmd.args(["--relay-endpoint", endpoint]);
    for address in funded {
        cmd.args(["--fund", &format!("{address}=1000000000")]);
    }
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(dir.join("chain.log")).unwrap()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let rpc = lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
    let _chain_id = lines.next().unwrap().unwrap();
    let contract = lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
    assert!(rpc.starts_with("http://127.0.0.1:") && contract.starts_with("cosmwasm1"), "{rpc} {contract}");
    DevChain { _proc: Proc(child), rpc, contract }
}

fn fund(rpc: &str, account: &str) {
    let out = Command::new(BIN)
        .args(["chain", "fund", "--chain", rpc, "--account", account, "--amount", "1000000000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn job(tasks: u32, nonce: u64) -> JobSpec {
    JobSpec {
        label: format!("registry {nonce}"),
        kernel: KernelSpec::Builtin { name: BuiltinKernel::MonteCarloPi },
        tasks: starling_web_worker::kernels::monte_carlo_pi::tasks(nonce, tasks, 4, 32),
        comparison: Comparison::Exact,
        replicas: 2,
        quorum: 2,
        max_replicas: 2,
        price_per_replica: PRICE,
        deadline_secs: 600,
        homogeneous: false,
        nonce,
        adaptive: None,
        kernels: Vec::new(),
    }
}

async fn registry(chain: &DevChain) -> HashMap<String, RegisteredRelay> {
    let node = starling_relay::escrow::chain::Node::new(&chain.rpc).unwrap();
    node.relays(&chain.contract).await.unwrap().into_iter().map(|r| (r.address.clone(), r)).collect()
}

/// Keys of the workers online at `api`'s relay.
async fn online(api: &Api) -> BTreeSet<String> {
    api.workers()
        .await
        .iter()
        .filter(|w| w["online"] == true)
        .filter_map(|w| w["key"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_find_independent_relays_on_one_chain_and_move_when_one_is_killed() {
    let (dir, _) = tempdir();
    let keys: Vec<_> = ["a", "b", "c"].iter().map(|n| dir.path().join(format!("relay-{n}.chain-key"))).collect();
    let addresses: Vec<String> = keys.iter().map(|k| chain_key(k)).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let endpoints: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let funded: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let chain = spawn_chain(dir.path(), &addresses[0], &endpoints[0], &funded);

    // Three relays, three SQLite databases, one contract.
    let mut relays = Vec::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let data = dir.path().join(format!("relay-{name}"));
        std::fs::create_dir_all(&data).unwrap();
        let fee = FEES[i].to_string();
        let args = [
            "--escrow",
            "chain",
            "--chain-rpc",
            &chain.rpc,
            "--chain-id",
            "starling-dev-1",
            "--chain-contract",
            &chain.contract,
            "--chain-prefix",
            "cosmwasm",
            "--chain-key",
            keys[i].to_str().unwrap(),
            "--chain-endpoint",
            &endpoints[i],
            "--chain-fee-bps",
            &fee,
            "--www",
            "",
        ];
        relays.push(spawn_relay(&data, ports[i], &args));
    }
    let apis: Vec<Api> = relays.iter().map(|r| Api::new(&r.base)).collect();
    // Each relay registers (or finds its genesis entry) as it starts.
    let start = Instant::now();
    let mut listed = registry(&chain).await;
    while listed.len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "the relays did not register: {listed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        listed = registry(&chain).await;
    }
    for (i, address) in addresses.iter().enumerate() {
        let r = &listed[address];
        assert_eq!((r.endpoint.as_str(), u128::from(r.fee_bps), r.active), (endpoints[i].as_str(), FEES[i], true));
    }
    let shown: starling_protocol::api::RelayList =
        apis[1].http.get(format!("{}/v1/relays", relays[1].base)).send().await.unwrap().json().await.unwrap();
    assert_eq!((shown.this_relay.as_deref(), shown.relays.len()), (Some(addresses[1].as_str()), 3));

    // A client and four worker keys, funded by the faucet's deposits.
    let client_seed: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    let client_key = starling_protocol::sign::Keypair::from_seed(client_seed);
    let worker_seeds: Vec<[u8; 32]> = (0..4u8).map(|n| [0x40 + n; 32]).collect();
    for seed in &worker_seeds {
        std::fs::write(
            dir.path().join(format!("w{}.key", seed[0])),
            seed.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        )
        .unwrap();
        fund(&chain.rpc, &starling_protocol::sign::Keypair::from_seed(*seed).public().to_hex());
    }
    fund(&chain.rpc, &client_key.public().to_hex());
    let client_apis: Vec<Api> = relays
        .iter()
        .map(|r| Api { key: starling_protocol::sign::Keypair::from_seed(client_seed), ..Api::new(&r.base) })
        .collect();

    // Jobs posted on A and B wait; then workers that know only the chain arrive one by one and
    // go where work waits per worker: two end up at A and two at B, none at idle C.
    let on_a = client_apis[0].submit(job(6, 1)).await;
    let on_b = client_apis[1].submit(job(6, 2)).await;
    let mut workers = Vec::new();
    let mut placed: HashMap<String, usize> = HashMap::new();
    for seed in &worker_seeds {
        let name = format!("w{}", seed[0]);
        let mut w = spawn_worker_discovering(&chain.rpc, &chain.contract, dir.path(), &name);
        let key = worker_key(&mut w);
        let start = Instant::now();
        let at = loop {
            let mut found = None;
            for (i, api) in apis.iter().enumerate() {
                if online(api).await.contains(&key) {
                    found = Some(i);
                }
            }
            if let Some(i) = found {
                break i;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "worker {name} found no relay");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        placed.insert(key, at);
        workers.push(w);
    }
    let mut counts = [0; 3];
    for i in placed.values() {
        counts[*i] += 1;
    }
    assert_eq!(counts, [2, 2, 0], "workers spread over the relays with work: {placed:?}");

    // Both jobs complete on their own relays, verified and settled.
    for (api, j) in [(&apis[0], &on_a), (&apis[1], &on_b)] {
        let done = api.wait_done(j.id).await;
        assert_eq!(done.summary.state, JobState::Done, "{:?}", done.summary);
        let escrow = wait_closed(api, j.id).await;
        assert_eq!(escrow.settled_tasks, 6);
    }

    // Relay A dies; its two workers move to the next registered relay on their list within
    // seconds.
    let mut a = relays.remove(0);
    a.proc.kill9();
    let killed = Instant::now();
    let mut moved_to = None;
    for (key, at) in &placed {
        if *at != 0 {
            continue;
        }
        let mut found = None;
        while found.is_none() && killed.elapsed() < Duration::from_secs(30) {
            for (i, api) in apis.iter().enumerate().skip(1) {
                if online(api).await.contains(key) {
                    found = Some(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(found.is_some(), "worker {key} did not move off the killed relay");
        moved_to = found;
    }
    eprintln!("workers moved off the killed relay in {:?}", killed.elapsed());
    assert!(moved_to.is_some());

    // A job posted on the relay with the most workers now (each worker fails over along its own
    // ranked list, so A's two may have split between B and C) runs there.
    let mut moved_to = 1;
    if online(&apis[2]).await.len() > online(&apis[1]).await.len() {
        moved_to = 2;
    }
    let later = client_apis[moved_to].submit(job(4, 3)).await;
    let done = apis[moved_to].wait_done(later.id).await;
    assert_eq!(done.summary.state, JobState::Done);
    assert_eq!(wait_closed(&apis[moved_to], later.id).await.settled_tasks, 4);

    // The registry: each relay earned its own fee on its own jobs' paid replicas (two a task),
    // and no other; C, idle unless the workers moved there, earned nothing else.
    let listed = registry(&chain).await;
    let mut expected = [(1u64, 6u64), (1, 6), (0, 0)];
    expected[moved_to].0 += 1;
    expected[moved_to].1 += 4;
    for (i, (jobs, tasks)) in expected.into_iter().enumerate() {
        let r = &listed[&addresses[i]];
        assert_eq!((r.jobs_opened, r.tasks_paid), (jobs, tasks), "relay {i}: {r:?}");
        let fees = u128::from(tasks) * 2 * u128::from(PRICE) * FEES[i] / 10_000;
        assert_eq!(r.fees_earned, fees.to_string(), "relay {i}: {r:?}");
    }
    drop(workers);
}

/// `starling worker --chain RPC --contract ADDR` with a key file already in `dir`.
fn spawn_worker_discovering(rpc: &str, contract: &str, dir: &Path, name: &str) -> Proc {
    let runtime = dir.join("xdg");
    std::fs::create_dir_all(&runtime).unwrap();
    let child = Command::new(BIN)
        .args(["worker", "--cpu", "--chain", rpc, "--contract", contract, "--key-file"])
        .arg(dir.join(format!("{name}.key")))
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

/// `starling demo --relays 3` end to end: relays register, workers find them, one relay is
/// killed and its workers move, its client's deposit comes back, and the registry shows each
/// relay's record.
#[test]
fn the_three_relay_demo_runs() {
    let (dir, _) = tempdir();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--relays",
            "3",
            "--workers",
            "4",
            "--cpu",
            "--width",
            "256",
            "--height",
            "128",
            "--matrix",
            "64",
        ])
        .args(["--out"])
        .arg(dir.path().join("render.png"))
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("registry  3 relays registered"), "{text}");
    assert_eq!(text.matches("found relay").count(), 4, "{text}");
    assert!(text.contains("relay a   SIGKILLed"), "{text}");
    assert_eq!(text.matches("moved to relay").count(), text.matches("found relay a").count(), "{text}");
    assert!(text.contains("product matches the CPU reference"), "{text}");
    assert!(text.contains("came back to the client from relay a's dead job"), "{text}");
}
