//! What a Cosmos SDK chain's ante handler checks before a transaction runs, as pure functions:
//! decoding, the one signer's SIGN_MODE_DIRECT secp256k1 signature over the chain id and account
//! number, the sequence, the fee, and the gas schedule. Errors carry the SDK's codes, so a client
//! sees what a real node would answer.

use cosmrs::proto::cosmos::crypto::secp256k1::PubKey;
use cosmrs::proto::cosmos::tx::signing::v1beta1::SignMode;
use cosmrs::proto::cosmos::tx::v1beta1::{AuthInfo, SignDoc, TxBody, TxRaw, mode_info};
use cosmrs::proto::prost::Message;
use k256::ecdsa::signature::Verifier;
use starling_escrow_vm::GasUsed;

/// Largest transaction accepted (CometBFT's default `max_tx_bytes` is 1 MiB).
pub const MAX_TX_BYTES: usize = 1 << 20;
/// Longest memo (the SDK's default `max_memo_characters`).
pub const MAX_MEMO: usize = 256;
/// Most gas one transaction may ask for (a block's gas limit here).
pub const MAX_TX_GAS: u64 = 100_000_000;

/// The SDK's gas schedule, as its defaults and wasmd's set it.
pub mod gas {
    /// `auth` params: `tx_size_cost_per_byte`.
    pub const TX_SIZE_PER_BYTE: u64 = 10;
    /// `auth` params: `sig_verify_cost_secp256k1`.
    pub const SIG_VERIFY_SECP256K1: u64 = 1_000;
    /// Reading and writing the signer's account and the fee payment.
    pub const ANTE_STORE: u64 = 10_000;
    /// wasmd's `DefaultInstanceCost`: loading a contract instance.
    pub const WASM_INSTANCE: u64 = 60_000;
    /// wasmd's `DefaultGasMultiplier`: CosmWasm gas per SDK gas.
    pub const WASM_MULTIPLIER: u64 = 140_000;
    /// The KV store's `ReadCostFlat`, `ReadCostPerByte`, `WriteCostFlat`, `WriteCostPerByte`,
    /// `DeleteCost`, `IterNextCostFlat`.
    pub const READ_FLAT: u64 = 1_000;
    pub const READ_PER_BYTE: u64 = 3;
    pub const WRITE_FLAT: u64 = 2_000;
    pub const WRITE_PER_BYTE: u64 = 30;
    pub const DELETE: u64 = 1_000;
    pub const ITER_NEXT: u64 = 30;
    /// A bank send: two balance reads and writes.
    pub const BANK_SEND: u64 = 2 * (READ_FLAT + WRITE_FLAT) + 2 * 16 * WRITE_PER_BYTE;
}

/// A refusal with the code and codespace a Cosmos SDK node gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{log}")]
pub struct TxError {
    pub codespace: &'static str,
    pub code: u32,
    pub log: String,
}

impl TxError {
    pub fn sdk(code: u32, log: impl Into<String>) -> Self {
        Self { codespace: "sdk", code, log: log.into() }
    }
    pub fn decode(what: impl std::fmt::Display) -> Self {
        Self::sdk(2, format!("{what}: tx parse error"))
    }
    pub fn unauthorized(log: impl Into<String>) -> Self {
        Self::sdk(4, format!("{}: unauthorized", log.into()))
    }
    pub fn insufficient_funds(log: impl Into<String>) -> Self {
        Self::sdk(5, format!("{}: insufficient funds", log.into()))
    }
    pub fn unknown_address(log: impl Into<String>) -> Self {
        Self::sdk(9, format!("{}: unknown address", log.into()))
    }
    pub fn out_of_gas(log: impl Into<String>) -> Self {
        Self::sdk(11, format!("{}: out of gas", log.into()))
    }
    pub fn insufficient_fee(log: impl Into<String>) -> Self {
        Self::sdk(13, format!("{}: insufficient fee", log.into()))
    }
    pub fn invalid_request(log: impl Into<String>) -> Self {
        Self::sdk(18, format!("{}: invalid request", log.into()))
    }
    pub fn too_large(log: impl Into<String>) -> Self {
        Self::sdk(21, format!("{}: tx too large", log.into()))
    }
    pub fn wrong_sequence(expected: u64, got: u64) -> Self {
        Self::sdk(32, format!("account sequence mismatch, expected {expected}, got {got}: incorrect account sequence"))
    }
}

/// A transaction taken apart, with the exact bytes its signature covers.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub body: TxBody,
    pub auth: AuthInfo,
    body_bytes: Vec<u8>,
    auth_bytes: Vec<u8>,
    signature: Vec<u8>,
    /// The signer's compressed secp256k1 key and the sequence it signed for.
    pub pubkey: Vec<u8>,
    pub sequence: u64,
    pub gas_limit: u64,
    /// The fee offered, in the chain's denom.
    pub fee: u128,
}

/// Decodes a `TxRaw` and checks its shape: one signer, one signature, SIGN_MODE_DIRECT with a
/// secp256k1 key, a fee in `denom` only, a memo and gas within bounds, no timeout already passed.
pub fn decode(bytes: &[u8], denom: &str, height: u64) -> Result<Decoded, TxError> {
    if bytes.len() > MAX_TX_BYTES {
        return Err(TxError::too_large(format!("{} bytes > {MAX_TX_BYTES}", bytes.len())));
    }
    let raw = TxRaw::decode(bytes).map_err(TxError::decode)?;
    let body = TxBody::decode(raw.body_bytes.as_slice()).map_err(TxError::decode)?;
    let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).map_err(TxError::decode)?;
    // Unknown fields and non-canonical encodings are refused (as the SDK's ADR-027 and
    // unknown-field checks do): otherwise one signed transaction could travel under many hashes.
    if raw.encode_to_vec() != bytes
        || body.encode_to_vec() != raw.body_bytes
        || auth.encode_to_vec() != raw.auth_info_bytes
    {
        return Err(TxError::decode("unknown fields or a non-canonical encoding"));
    }
    if body.memo.chars().count() > MAX_MEMO {
        return Err(TxError::sdk(12, format!("maximum number of characters is {MAX_MEMO}: memo too large")));
    }
    if body.timeout_height != 0 && body.timeout_height < height {
        return Err(TxError::sdk(
            30,
            format!("block height {height} > timeout height {}: tx timeout height", body.timeout_height),
        ));
    }
    if !body.extension_options.is_empty() || !body.non_critical_extension_options.is_empty() {
        return Err(TxError::sdk(31, "unknown extension options: unknown extension options"));
    }
    let [signer] = auth.signer_infos.as_slice() else {
        return Err(TxError::unauthorized(format!(
            "this chain takes one signer per transaction, not {}",
            auth.signer_infos.len()
        )));
    };
    let [signature] = raw.signatures.as_slice() else {
        return Err(TxError::unauthorized(format!(
            "wrong number of signatures; expected 1, got {}",
            raw.signatures.len()
        )));
    };
    match signer.mode_info.as_ref().and_then(|m| m.sum.as_ref()) {
        Some(mode_info::Sum::Single(single)) if single.mode == SignMode::Direct as i32 => {}
        _ => return Err(TxError::unauthorized("only SIGN_MODE_DIRECT single signatures are accepted")),
    }
    let key = signer
        .public_key
        .as_ref()
        .ok_or_else(|| TxError::sdk(8, "the signer's public key is missing: invalid pubkey"))?;
    if key.type_url != "/cosmos.crypto.secp256k1.PubKey" {
        return Err(TxError::sdk(8, format!("{} keys are not accepted: invalid pubkey", key.type_url)));
    }
    let pubkey = PubKey::decode(key.value.as_slice()).map_err(TxError::decode)?.key;
    let fee = auth.fee.as_ref().ok_or_else(|| TxError::insufficient_fee("no fee"))?;
    if fee.gas_limit > MAX_TX_GAS {
        return Err(TxError::out_of_gas(format!("gas limit {} over the block's {MAX_TX_GAS}", fee.gas_limit)));
    }
    if !fee.payer.is_empty() || !fee.granter.is_empty() {
        return Err(TxError::invalid_request("fee payers and granters are not supported here"));
    }
    let amount = match fee.amount.as_slice() {
        [] => 0,
        [coin] if coin.denom == denom => coin
            .amount
            .parse::<u128>()
            .map_err(|_| TxError::insufficient_fee(format!("fee amount {:?}", coin.amount)))?,
        other => {
            let coins: Vec<String> = other.iter().map(|c| format!("{}{}", c.amount, c.denom)).collect();
            return Err(TxError::insufficient_fee(format!("fees must be paid in {denom}, got {}", coins.join(","))));
        }
    };
    Ok(Decoded {
        sequence: signer.sequence,
        gas_limit: fee.gas_limit,
        fee: amount,
        pubkey,
        body,
        auth,
        body_bytes: raw.body_bytes,
        auth_bytes: raw.auth_info_bytes,
        signature: signature.clone(),
    })
}

/// The bech32 address of a compressed secp256k1 key: `ripemd160(sha256(key))`.
pub fn address(pubkey: &[u8], prefix: &str) -> Result<String, TxError> {
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(pubkey)
        .ok()
        .filter(|_| pubkey.len() == 33)
        .map(cosmrs::crypto::PublicKey::from)
        .ok_or_else(|| TxError::sdk(8, "not a compressed secp256k1 key: invalid pubkey"))?;
    key.account_id(prefix).map(|a| a.to_string()).map_err(|e| TxError::sdk(8, format!("{e}: invalid pubkey")))
}

/// Checks the signature over `SignDoc{body, auth_info, chain_id, account_number}`. A signature
/// for another chain, another account number or other bytes fails here; so does a high-S one
/// (the SDK accepts only the low-S form, so a signature cannot be altered into a second valid one).
pub fn verify(tx: &Decoded, chain_id: &str, account_number: u64) -> Result<(), TxError> {
    let doc = SignDoc {
        body_bytes: tx.body_bytes.clone(),
        auth_info_bytes: tx.auth_bytes.clone(),
        chain_id: chain_id.to_owned(),
        account_number,
    }
    .encode_to_vec();
    let failed = || {
        TxError::unauthorized(format!(
            "signature verification failed; please verify account number ({account_number}), sequence ({}) and chain-id ({chain_id})",
            tx.sequence
        ))
    };
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&tx.pubkey).map_err(|_| failed())?;
    let signature = k256::ecdsa::Signature::from_slice(&tx.signature).map_err(|_| failed())?;
    if signature.normalize_s().is_some() {
        return Err(failed());
    }
    key.verify(&doc, &signature).map_err(|_| failed())
}

/// The least fee for `gas_limit` at `min_gas_price` per unit, rounded up.
pub fn required_fee(gas_limit: u64, min_gas_price: f64) -> u128 {
    (gas_limit as f64 * min_gas_price).ceil() as u128
}

/// What the ante handler charges: the transaction's size and its one signature check.
pub fn ante_gas(tx_bytes: usize) -> u64 {
    gas::TX_SIZE_PER_BYTE * tx_bytes as u64 + gas::SIG_VERIFY_SECP256K1 + gas::ANTE_STORE
}

/// SDK gas of one contract call: the instance, the VM's own metering converted with wasmd's
/// multiplier, and its storage at the KV store's prices.
pub fn wasm_gas(used: &GasUsed) -> u64 {
    let s = used.storage;
    gas::WASM_INSTANCE
        + used.internal.div_ceil(gas::WASM_MULTIPLIER)
        + s.reads * gas::READ_FLAT
        + s.read_bytes * gas::READ_PER_BYTE
        + s.writes * gas::WRITE_FLAT
        + s.written_bytes * gas::WRITE_PER_BYTE
        + s.removes * gas::DELETE
        + s.scanned_entries * gas::ITER_NEXT
}

/// The transaction hash CometBFT reports: SHA-256 of its bytes, upper-case hex.
pub fn hash(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosmrs::crypto::secp256k1::SigningKey;
    use cosmrs::tx::{Body, Fee, SignDoc as Doc, SignerInfo};
    use cosmrs::{AccountId, Coin};

    fn signed(key: &SigningKey, chain_id: &str, account_number: u64, sequence: u64, fee: u128) -> Vec<u8> {
        let sender = key.public_key().account_id("cosmwasm").unwrap();
        let send = cosmrs::bank::MsgSend {
            from_address: sender.clone(),
            to_address: sender,
            amount: vec![Coin { denom: "ustar".parse().unwrap(), amount: 1 }],
        };
        let body = Body::new([cosmrs::tx::Msg::to_any(&send).unwrap()], "", 0u32);
        let coin = Coin { denom: "ustar".parse().unwrap(), amount: fee };
        let auth = SignerInfo::single_direct(Some(key.public_key()), sequence)
            .auth_info(Fee::from_amount_and_gas(coin, 200_000u64));
        let doc = Doc::new(&body, &auth, &chain_id.parse().unwrap(), account_number).unwrap();
        doc.sign(key).unwrap().to_bytes().unwrap()
    }

    #[test]
    fn a_signature_holds_only_for_its_chain_account_number_and_bytes() {
        let key = SigningKey::from_slice(&[9; 32]).unwrap();
        let tx = signed(&key, "dev-1", 3, 0, 5_000);
        let decoded = decode(&tx, "ustar", 1).unwrap();
        assert_eq!((decoded.sequence, decoded.gas_limit, decoded.fee), (0, 200_000, 5_000));
        assert_eq!(
            address(&decoded.pubkey, "cosmwasm").unwrap(),
            key.public_key().account_id("cosmwasm").unwrap().to_string()
        );
        verify(&decoded, "dev-1", 3).unwrap();
        // Replayed on another chain, or as another account: refused.
        assert_eq!(verify(&decoded, "dev-2", 3).unwrap_err().code, 4);
        assert_eq!(verify(&decoded, "dev-1", 4).unwrap_err().code, 4);
        // The body changed after signing (a memo added): refused.
        let mut raw = TxRaw::decode(tx.as_slice()).unwrap();
        let mut body = TxBody::decode(raw.body_bytes.as_slice()).unwrap();
        body.memo = "x".into();
        raw.body_bytes = body.encode_to_vec();
        let tampered = decode(&raw.encode_to_vec(), "ustar", 1).unwrap();
        assert_eq!(verify(&tampered, "dev-1", 3).unwrap_err().code, 4);
    }

    #[test]
    fn a_high_s_twin_of_a_valid_signature_is_refused() {
        let key = SigningKey::from_slice(&[5; 32]).unwrap();
        let tx = signed(&key, "dev-1", 0, 0, 5_000);
        let mut raw = TxRaw::decode(tx.as_slice()).unwrap();
        let sig = k256::ecdsa::Signature::from_slice(&raw.signatures[0]).unwrap();
        // (r, n - s) verifies under plain ECDSA; the SDK refuses it.
        let (r, s) = sig.split_scalars();
        let twin = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        raw.signatures[0] = twin.to_bytes().to_vec();
        let decoded = decode(&raw.encode_to_vec(), "ustar", 1).unwrap();
        assert_eq!(verify(&decoded, "dev-1", 0).unwrap_err().code, 4);
    }

    #[test]
    fn shapes_a_node_refuses() {
        let key = SigningKey::from_slice(&[9; 32]).unwrap();
        let cases: Vec<(Vec<u8>, u32)> = vec![
            (vec![0xff; 10], 2),
            (
                {
                    // A valid transaction with an unknown field appended: another hash, refused.
                    let mut bytes = signed(&key, "dev-1", 0, 0, 1);
                    bytes.extend_from_slice(&[0x7a, 0x01, 0x00]);
                    bytes
                },
                2,
            ),
            (vec![0; MAX_TX_BYTES + 1], 21),
            (
                {
                    let mut raw = TxRaw::decode(signed(&key, "dev-1", 0, 0, 1).as_slice()).unwrap();
                    raw.signatures.push(raw.signatures[0].clone());
                    raw.encode_to_vec()
                },
                4,
            ),
            (
                {
                    let mut raw = TxRaw::decode(signed(&key, "dev-1", 0, 0, 1).as_slice()).unwrap();
                    raw.signatures.clear();
                    raw.encode_to_vec()
                },
                4,
            ),
        ];
        for (bytes, code) in cases {
            assert_eq!(decode(&bytes, "ustar", 1).unwrap_err().code, code);
        }
        // A fee in another denom.
        assert_eq!(decode(&signed(&key, "dev-1", 0, 0, 1), "uatom", 1).unwrap_err().code, 13);
        let _ = AccountId::new("cosmwasm", &[1; 20]).unwrap();
    }

    #[test]
    fn fees_round_up_and_gas_counts_what_a_call_touched() {
        assert_eq!(required_fee(200_000, 0.025), 5_000);
        assert_eq!(required_fee(1, 0.025), 1);
        let mut used = GasUsed::default();
        let base = wasm_gas(&used);
        assert_eq!(base, gas::WASM_INSTANCE);
        used.storage.writes = 2;
        used.storage.written_bytes = 100;
        used.internal = 140_000 * 10 + 1;
        assert_eq!(wasm_gas(&used), base + 11 + 2 * gas::WRITE_FLAT + 100 * gas::WRITE_PER_BYTE);
        assert_eq!(ante_gas(100), 1_000 + 1_000 + 10_000);
    }
}
