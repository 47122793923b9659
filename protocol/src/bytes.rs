//! Fixed-size byte strings (digests, keys, signatures) that travel as lowercase hex.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use sha2::{Digest, Sha256};
use std::fmt;

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn from_hex(s: &str) -> Result<Self, crate::error::ParseError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).map_err(|_| crate::error::ParseError::Hex {
                    what: stringify!($name),
                    expected_len: $len,
                })?;
                Ok(Self(out))
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::error::ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(de::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// A SHA-256 digest: blob addresses and result hashes.
    Hash32,
    32
);
hex_bytes!(
    /// An ed25519 verifying key (workers and clients are known by theirs).
    PublicKey,
    32
);
hex_bytes!(
    /// An ed25519 signature.
    Signature,
    64
);

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(data).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_length() {
        let h = sha256(b"abc");
        assert_eq!(h.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hash32>("\"abcd\"").is_err());
        assert!(serde_json::from_str::<Signature>(&json).is_err());
    }
}
