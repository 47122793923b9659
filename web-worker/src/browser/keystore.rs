//! Ed25519 keys that page scripts cannot read: non-extractable WebCrypto keys kept in IndexedDB
//! (`keystore.js`), used by the page for the client key and by the compute worker for the worker
//! key. Signing goes through `crypto.subtle.sign`, so the secret never enters wasm memory or any
//! script's reach.
//!
//! Where the browser has no Ed25519 in WebCrypto (or no IndexedDB), [`open`] says so and the caller
//! keeps the key as before: a seed in the page's storage, signed with in wasm ([`Signer::Memory`]),
//! and the app shows a note saying so. A seed kept that way earlier is imported into the keystore
//! the first time it is supported ([`Held::migrated`]); the caller then deletes its copy.

use starling_protocol::sign::Keypair;
use starling_protocol::{PublicKey, Signature};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

#[wasm_bindgen(module = "/src/browser/keystore.js")]
extern "C" {
    #[wasm_bindgen(catch, js_name = openKey)]
    async fn open_key(name: &str, seed: Option<Vec<u8>>, public_key: Option<Vec<u8>>) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = sign)]
    async fn sign_js(key: &JsValue, bytes: &[u8]) -> Result<JsValue, JsValue>;
}

/// A key that signs: held by the browser, or (the fallback) in memory.
pub enum Signer {
    /// A non-extractable WebCrypto key (`CryptoKey`).
    Held { public: PublicKey, key: JsValue },
    /// A seed from the page's storage, on a browser that cannot hold Ed25519 keys.
    Memory(Keypair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Signer::Held { .. } => "Held",
            Signer::Memory(_) => "Memory",
        };
        f.debug_struct(kind).field("public", &self.public()).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn public(&self) -> PublicKey {
        match self {
            Signer::Held { public, .. } => *public,
            Signer::Memory(key) => key.public(),
        }
    }

    /// The key in memory, if that is where it is (it can then sign without waiting).
    pub fn memory(&self) -> Option<&Keypair> {
        match self {
            Signer::Memory(key) => Some(key),
            Signer::Held { .. } => None,
        }
    }

    pub async fn sign(&self, bytes: &[u8]) -> Result<Signature, String> {
        match self {
            Signer::Memory(key) => Ok(key.sign(bytes)),
            Signer::Held { key, .. } => {
                let out =
                    sign_js(key, bytes).await.map_err(|e| format!("WebCrypto could not sign: {}", describe(&e)))?;
                let array =
                    out.dyn_into::<js_sys::Uint8Array>().map_err(|_| "WebCrypto signed no bytes".to_string())?;
                let bytes: [u8; 64] = array.to_vec().try_into().map_err(|_| "WebCrypto's signature is not 64 bytes")?;
                Ok(Signature(bytes))
            }
        }
    }
}

/// A key the browser holds.
#[derive(Debug)]
pub struct Held {
    pub signer: Signer,
    /// `legacy` is the held key (imported now or before), checked by signing: the caller's copy
    /// may go, once the caller has checked its storage still holds that very key.
    pub migrated: bool,
}

/// What [`open`] found.
#[derive(Debug)]
pub enum Opened {
    Held(Box<Held>),
    /// This browser cannot hold Ed25519 keys: why, as a code (`no-webcrypto`, `no-indexeddb`,
    /// `indexeddb-refused`, `no-ed25519`, `no-key-storage`) the app words in the person's language,
    /// and the browser's own words.
    Unsupported {
        code: String,
        detail: String,
    },
}

/// The key kept under `name` in this origin's keystore, created when there is none: from `legacy`
/// (a seed the app kept in page storage) or freshly generated. (A held key that did not sign for
/// its public key would show at once: the relay refuses the worker's handshake and the client's
/// jobs.)
pub async fn open(name: &str, legacy: Option<&Keypair>) -> Result<Opened, String> {
    let seed = legacy.map(|k| k.seed().to_vec());
    let public = legacy.map(|k| k.public().0.to_vec());
    let found = open_key(name, seed, public).await.map_err(|e| format!("the keystore failed: {}", describe(&e)))?;
    if let Some(code) = get(&found, "unsupported").as_string() {
        return Ok(Opened::Unsupported { code, detail: get(&found, "detail").as_string().unwrap_or_default() });
    }
    let held = get(&found, "held");
    let key = get(&held, "key");
    let public: [u8; 32] = js_sys::Uint8Array::new(&get(&held, "publicKey"))
        .to_vec()
        .try_into()
        .map_err(|_| "the keystore's public key is not 32 bytes".to_string())?;
    let signer = Signer::Held { public: PublicKey(public), key };
    // Ed25519 signatures are deterministic: the held key is the legacy seed exactly when both sign
    // a probe alike. (A browser whose Ed25519 were randomised would keep the legacy copy: safe.)
    let migrated = match legacy {
        Some(legacy) if legacy.public() == signer.public() => {
            let probe = format!("starling keystore migration {name}");
            signer.sign(probe.as_bytes()).await? == legacy.sign(probe.as_bytes())
        }
        _ => false,
    };
    Ok(Opened::Held(Box::new(Held { signer, migrated })))
}

fn get(object: &JsValue, field: &str) -> JsValue {
    js_sys::Reflect::get(object, &JsValue::from_str(field)).unwrap_or(JsValue::UNDEFINED)
}

fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
