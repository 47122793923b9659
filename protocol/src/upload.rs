//! Who stores a blob: the headers of `PUT /v1/blobs/{hash}`.
//!
//! Every upload names its uploader's key and carries that key's signature over
//! [`crate::sign::upload_bytes`]; a worker's output upload also names the lease it is for. The
//! relay charges the blob to the key (a client input) or to the lease (a worker output), and
//! refuses an upload without a valid proof before reading its body.

use crate::bytes::{Hash32, PublicKey, Signature};
use crate::error::{ErrorBody, ErrorCode};
use crate::ids::LeaseId;
use crate::sign::{Keypair, SignatureError, UploadPurpose, upload_bytes, verify};

/// The uploader's ed25519 key, hex.
pub const KEY_HEADER: &str = "starling-key";
/// The key's signature over [`upload_bytes`], hex.
pub const SIGNATURE_HEADER: &str = "starling-signature";
/// The lease a worker output is for (decimal); absent for a client input.
pub const LEASE_HEADER: &str = "starling-lease";

/// A signed claim to store one blob of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadAuth {
    pub key: PublicKey,
    pub purpose: UploadPurpose,
    pub signature: Signature,
}

impl UploadAuth {
    pub fn sign(key: &Keypair, purpose: UploadPurpose, blob: &Hash32, len: u64) -> Self {
        Self { key: key.public(), purpose, signature: key.sign_upload(purpose, blob, len) }
    }

    /// The request headers that carry this proof.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(KEY_HEADER, self.key.to_hex()), (SIGNATURE_HEADER, self.signature.to_hex())];
        if let UploadPurpose::Output { lease } = self.purpose {
            out.push((LEASE_HEADER, lease.0.to_string()));
        }
        out
    }

    /// Reads the proof from request headers (`get` looks one up by its lowercase name). A missing
    /// key or signature is [`ErrorCode::BadSignature`]; an unreadable one is
    /// [`ErrorCode::Malformed`].
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, ErrorBody> {
        let (Some(key), Some(signature)) = (get(KEY_HEADER), get(SIGNATURE_HEADER)) else {
            return Err(ErrorBody::new(
                ErrorCode::BadSignature,
                format!(
                    "blob uploads must be signed: send the {KEY_HEADER} and {SIGNATURE_HEADER} headers \
                     (and {LEASE_HEADER} for a worker output)"
                ),
            ));
        };
        let malformed = |what: &str| ErrorBody::new(ErrorCode::Malformed, format!("{what} header is malformed"));
        let key = key.parse().map_err(|_| malformed(KEY_HEADER))?;
        let signature = signature.parse().map_err(|_| malformed(SIGNATURE_HEADER))?;
        let purpose = match get(LEASE_HEADER) {
            None => UploadPurpose::Input,
            Some(lease) => {
                UploadPurpose::Output { lease: LeaseId(lease.parse().map_err(|_| malformed(LEASE_HEADER))?) }
            }
        };
        Ok(Self { key, purpose, signature })
    }

    /// Checks the signature over this blob and length.
    pub fn verify(&self, blob: &Hash32, len: u64) -> Result<(), SignatureError> {
        verify(&self.key, &upload_bytes(self.purpose, blob, len, &self.key), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::sha256;

    fn lookup<'a>(headers: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn headers_round_trip_and_bind_the_blob() {
        let key = Keypair::from_seed([3; 32]);
        let blob = sha256(b"input");
        for purpose in [UploadPurpose::Input, UploadPurpose::Output { lease: LeaseId(9) }] {
            let auth = UploadAuth::sign(&key, purpose, &blob, 5);
            let headers = auth.headers();
            let back = UploadAuth::from_headers(lookup(&headers)).unwrap();
            assert_eq!(back, auth);
            back.verify(&blob, 5).unwrap();
            assert!(back.verify(&blob, 6).is_err());
            assert!(back.verify(&sha256(b"other"), 5).is_err());
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        assert_eq!(UploadAuth::from_headers(|_| None).unwrap_err().code, ErrorCode::BadSignature);
        let headers = [(KEY_HEADER, "zz".to_string()), (SIGNATURE_HEADER, "00".to_string())];
        assert_eq!(UploadAuth::from_headers(lookup(&headers)).unwrap_err().code, ErrorCode::Malformed);
        let key = Keypair::from_seed([3; 32]);
        let mut headers = UploadAuth::sign(&key, UploadPurpose::Input, &sha256(b"x"), 1).headers();
        headers.push((LEASE_HEADER, "-1".into()));
        assert_eq!(UploadAuth::from_headers(lookup(&headers)).unwrap_err().code, ErrorCode::Malformed);
    }
}
