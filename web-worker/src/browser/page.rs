//! The page side of the browser worker: the messages themselves are the protocol's
//! ([`starling_protocol::page`]); here is how the worker reads a key the page hands over (one it
//! keeps because the browser cannot hold Ed25519 keys, or one from before the keystore).

pub use starling_protocol::page::{LogLevel, PageMessage, State, Status, WorkerEvent};
use starling_protocol::sign::Keypair;

/// The worker's identity from the page's `secret_key`: 64 hex digits, the ed25519 seed.
pub fn parse_secret_key(hex_seed: &str) -> Result<Keypair, String> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed.trim(), &mut seed).map_err(|_| "secret_key must be 64 hex digits".to_string())?;
    Ok(Keypair::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_round_trip_and_bad_ones_are_refused() {
        let key = Keypair::from_seed([9; 32]);
        let WorkerEvent::Key { secret_key: Some(secret_key), .. } = WorkerEvent::key_in_page(&key, "no Ed25519") else {
            unreachable!()
        };
        assert_eq!(parse_secret_key(&secret_key).unwrap().public(), key.public());
        for bad in ["", "zz", &"ab".repeat(31), &"ab".repeat(33), &"g".repeat(64)] {
            assert!(parse_secret_key(bad).is_err(), "{bad:?}");
        }
    }
}
