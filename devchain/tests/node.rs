//! The development chain as a node: what it refuses (replays, other chains, forged signers,
//! short fees, unknown accounts), what a refused or failed transaction costs (nothing, or the
//! fee only), and that coins are conserved.

use cosmrs::crypto::secp256k1::SigningKey;
use cosmrs::tx::{Body, Fee, Msg, SignDoc, SignerInfo};
use cosmrs::{AccountId, Coin};
use serde_json::json;
use starling_devchain::{DevChain, Genesis, PREFIX};

const FUNDS: u128 = 1_000_000_000;

fn wasm() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/contracts/starling_escrow.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}: run scripts/build-contract.sh first", path.display()))
}

fn key(seed: u8) -> (SigningKey, AccountId) {
    let key = SigningKey::from_slice(&[seed; 32]).unwrap();
    let address = key.public_key().account_id(PREFIX).unwrap();
    (key, address)
}

fn chain(funded: &[&AccountId]) -> DevChain {
    let (_, relay) = key(1);
    let mut genesis = Genesis::new("dev-1", relay.as_ref());
    genesis.accounts = funded.iter().map(|a| (a.to_string(), FUNDS)).collect();
    DevChain::new(&wasm(), genesis).unwrap()
}

fn coin(amount: u128) -> Coin {
    Coin { denom: "ustar".parse().unwrap(), amount }
}

struct Tx<'a> {
    key: &'a SigningKey,
    chain_id: &'a str,
    account_number: u64,
    sequence: u64,
    gas: u64,
    fee: u128,
}

impl Tx<'_> {
    fn sign(&self, msg: impl Msg) -> Vec<u8> {
        let body = Body::new([msg.to_any().unwrap()], "", 0u32);
        let auth = SignerInfo::single_direct(Some(self.key.public_key()), self.sequence)
            .auth_info(Fee::from_amount_and_gas(coin(self.fee), self.gas));
        let doc = SignDoc::new(&body, &auth, &self.chain_id.parse().unwrap(), self.account_number).unwrap();
        doc.sign(self.key).unwrap().to_bytes().unwrap()
    }
}

fn send(from: &AccountId, to: &AccountId, amount: u128) -> cosmrs::bank::MsgSend {
    cosmrs::bank::MsgSend { from_address: from.clone(), to_address: to.clone(), amount: vec![coin(amount)] }
}

#[test]
fn a_node_refuses_replays_other_chains_forgeries_short_fees_and_strangers() {
    let (alice_key, alice) = key(2);
    let (_, bob) = key(3);
    let (mallory_key, mallory) = key(4);
    let mut chain = chain(&[&alice]);
    let supply = chain.total_supply();
    // Account numbers: alice 0, the faucet 1, the contract 2, then bob and mallory as they
    // first receive coins.
    let ok = Tx { key: &alice_key, chain_id: "dev-1", account_number: 0, sequence: 0, gas: 200_000, fee: 5_000 };

    let first = ok.sign(send(&alice, &bob, 100));
    let sent = chain.broadcast(&first);
    assert_eq!(sent.code, 0, "{}", sent.log);
    assert_eq!(chain.tx(&sent.hash).unwrap().code, 0);
    assert_eq!((chain.balance(bob.as_ref()), chain.balance(alice.as_ref())), (100, FUNDS - 100 - 5_000));

    // The same bytes again: the sequence is used.
    let replay = chain.broadcast(&first);
    assert_eq!(replay.code, 32, "{}", replay.log);
    // Signed for another chain, or under another account number: the signature fails.
    for tx in [Tx { chain_id: "dev-2", sequence: 1, ..ok }, Tx { account_number: 1, sequence: 1, ..ok }] {
        let refused = chain.broadcast(&tx.sign(send(&alice, &bob, 100)));
        assert_eq!(refused.code, 4, "{}", refused.log);
    }
    // A fee under gas × price, and a gas limit under what the ante handler charges.
    let short = chain.broadcast(&Tx { sequence: 1, fee: 4_999, ..ok }.sign(send(&alice, &bob, 100)));
    assert_eq!(short.code, 13, "{}", short.log);
    let starved = chain.broadcast(&Tx { sequence: 1, gas: 1_000, fee: 25, ..ok }.sign(send(&alice, &bob, 100)));
    assert_eq!(starved.code, 11, "{}", starved.log);
    // Mallory's key, naming alice as the sender: mallory has no account; once funded, the
    // message's sender is not the signer, refused before any fee is taken.
    let stranger = Tx { key: &mallory_key, ..ok };
    assert_eq!(chain.broadcast(&stranger.sign(send(&alice, &mallory, 100))).code, 9);
    chain.faucet_send(mallory.as_ref(), 10_000).unwrap();
    let forged = chain.broadcast(&Tx { key: &mallory_key, account_number: 4, ..ok }.sign(send(&alice, &mallory, 100)));
    assert_eq!(forged.code, 4, "{}", forged.log);
    assert_eq!(chain.balance(mallory.as_ref()), 10_000, "nothing taken");

    // Refused transactions cost nothing; alice's next sequence still works.
    assert_eq!(chain.balance(alice.as_ref()), FUNDS - 100 - 5_000);
    assert_eq!(chain.broadcast(&Tx { sequence: 1, ..ok }.sign(send(&alice, &bob, 1))).code, 0);
    assert_eq!(chain.total_supply(), supply, "the faucet's grant came from the faucet");
    // Each committed transaction is a block of its own.
    let h = chain.height();
    let sent = chain.broadcast(&Tx { sequence: 2, ..ok }.sign(send(&alice, &bob, 1)));
    assert_eq!(chain.tx(&sent.hash).unwrap().height, h + 1);
    assert_eq!(chain.height(), h + 1);
}

#[test]
fn a_contract_call_out_of_gas_or_refused_changes_nothing_but_the_fee() {
    let (key_a, alice) = key(2);
    let mut chain = chain(&[&alice]);
    let contract: AccountId = chain.contract().as_str().parse().unwrap();
    let account = [7u8; 32];
    let deposit = |funds: u128| cosmrs::cosmwasm::MsgExecuteContract {
        sender: alice.clone(),
        contract: contract.clone(),
        msg: serde_json::to_vec(&json!({"deposit": {"account": hex::encode(account)}})).unwrap(),
        funds: vec![coin(funds)],
    };
    let tx = |sequence, gas: u64| Tx {
        key: &key_a,
        chain_id: "dev-1",
        account_number: 0,
        sequence,
        gas,
        fee: u128::from(gas),
    };
    let balance = |chain: &DevChain| {
        chain.query(
            "/cosmwasm.wasm.v1.Query/SmartContractState",
            &cosmrs::proto::prost::Message::encode_to_vec(
                &cosmrs::proto::cosmwasm::wasm::v1::QuerySmartContractStateRequest {
                    address: contract.to_string(),
                    query_data: serde_json::to_vec(&json!({"account": {"pubkey": hex::encode(account)}})).unwrap(),
                },
            ),
        )
    };
    let read = |chain: &DevChain| -> u128 {
        let answer = balance(chain);
        assert_eq!(answer.code, 0, "{}", answer.log);
        let data = <cosmrs::proto::cosmwasm::wasm::v1::QuerySmartContractStateResponse as cosmrs::proto::prost::Message>::decode(answer.value.as_slice()).unwrap().data;
        serde_json::from_slice::<serde_json::Value>(&data).unwrap()["balance"].as_str().unwrap().parse().unwrap()
    };

    // Enough gas: the deposit lands.
    let done = chain.broadcast(&tx(0, 400_000).sign(deposit(1_000)));
    let record = chain.tx(&done.hash).unwrap().clone();
    assert_eq!(record.code, 0, "{}", record.log);
    assert!(record.gas_used > 60_000 && record.gas_used < 400_000, "gas used {}", record.gas_used);
    assert_eq!(read(&chain), 1_000);
    assert!(record.events.iter().any(|e| e["type"] == "wasm"), "{:?}", record.events);

    // Just over the ante handler's share: committed as out of gas, the deposit rolled back.
    let before = chain.balance(alice.as_ref());
    let starved = chain.broadcast(&tx(1, 20_000).sign(deposit(1_000)));
    assert_eq!(starved.code, 0);
    let record = chain.tx(&starved.hash).unwrap();
    assert_eq!(record.code, 11, "{}", record.log);
    assert_eq!(read(&chain), 1_000);
    assert_eq!(chain.balance(alice.as_ref()), before - 20_000, "only the fee");

    // A message the contract refuses (a malformed account): the contract's error, fee only.
    let bad = cosmrs::cosmwasm::MsgExecuteContract {
        msg: serde_json::to_vec(&json!({"deposit": {"account": "00"}})).unwrap(),
        ..deposit(1_000)
    };
    let refused = chain.broadcast(&tx(2, 400_000).sign(bad));
    let record = chain.tx(&refused.hash).unwrap();
    assert_eq!((record.code, record.codespace), (5, "wasm"), "{}", record.log);
    assert!(record.log.contains("execute wasm contract failed"), "{}", record.log);
    assert_eq!(chain.balance(alice.as_ref()), before - 20_000 - 400_000);
    assert_eq!(read(&chain), 1_000);

    // Another contract address: not found.
    let elsewhere = cosmrs::cosmwasm::MsgExecuteContract { contract: alice.clone(), ..deposit(1) };
    let record = chain.broadcast(&tx(3, 400_000).sign(elsewhere));
    assert_eq!(chain.tx(&record.hash).unwrap().code, 8);
}
