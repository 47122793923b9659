//! Small wrappers over browser APIs: storage, clocks, timers, files, downloads and keys. Every
//! fallible call returns [`Error::Browser`] with a sentence, never a raw `JsValue`.

use crate::{Error, Result};
use js_sys::{Promise, Uint8Array};
use starling_protocol::page::KeyStorage;
use starling_protocol::sign::{EscrowDeployment, Keypair};
pub use starling_web_worker::browser::keystore::{self, Signer};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// `localStorage` keys. The worker's key name is fixed by `web-worker/BROWSER.md`.
/// The worker's secret, only on a browser that cannot hold Ed25519 keys (or from before the
/// keystore existed, until it is imported).
pub const WORKER_SECRET_KEY: &str = "starling.worker.secret_key";
/// The worker's public key, to show before the worker has started.
pub const WORKER_PUBLIC_KEY: &str = "starling.worker.public_key";
/// The client's secret, like [`WORKER_SECRET_KEY`].
pub const CLIENT_SECRET_KEY: &str = "starling.client.secret_key";
pub const CONTRIBUTE_SETTINGS: &str = "starling.contribute.settings";
/// The relay picked from the registry, when it is not this page's own, and the escrow deployment
/// whose registry it was picked from.
pub const RELAY: &str = "starling.relay";
pub const RELAY_DEPLOYMENT: &str = "starling.relay.deployment";

pub fn window() -> web_sys::Window {
    web_sys::window().expect("the app runs in a window")
}

/// The text of a JS exception or rejection.
pub fn js_text(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Wall clock, Unix milliseconds.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Monotonic milliseconds since the page loaded.
pub fn monotonic_ms() -> f64 {
    window().performance().map(|p| p.now()).unwrap_or_else(js_sys::Date::now)
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: u32) {
    let promise = Promise::new(&mut |resolve, _| {
        // A window without setTimeout does not exist; if it did, resolving at once is harmless.
        if window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32).is_err() {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

pub fn is_online() -> bool {
    window().navigator().on_line()
}

/// Asks the service worker to look for a newer build now (a page whose code is gone usually means
/// one was deployed): when it finds one, the app's update banner offers the reload.
pub fn check_for_update() {
    let navigator = window().navigator();
    // Not in every context: plain http on another host than localhost has no service workers.
    if !js_sys::Reflect::has(&navigator, &JsValue::from_str("serviceWorker")).unwrap_or(false) {
        return;
    }
    let container = navigator.service_worker();
    wasm_bindgen_futures::spawn_local(async move {
        let Ok(found) = JsFuture::from(container.get_registration()).await else { return };
        if let Ok(registration) = found.dyn_into::<web_sys::ServiceWorkerRegistration>()
            && let Ok(update) = registration.update()
        {
            let _ = JsFuture::from(update).await;
        }
    });
}

pub fn document_hidden() -> bool {
    window().document().map(|d| d.hidden()).unwrap_or(false)
}

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

pub fn stored(key: &str) -> Option<String> {
    storage()?.get_item(key).ok().flatten()
}

/// Stores `value`; a refusal (private mode, quota) is reported, since losing a key matters.
pub fn store(key: &str, value: &str) -> Result<()> {
    let storage =
        storage().ok_or_else(|| Error::Browser("this browser does not allow saving data for this site".into()))?;
    storage
        .set_item(key, value)
        .map_err(|e| Error::Browser(format!("the browser refused to save {key}: {}", js_text(&e))))
}

/// The page's origin: the relay that served this app.
pub fn origin() -> String {
    window().location().origin().unwrap_or_default()
}

/// Whether `relay` is an origin the app can talk to: `http(s)://host[:port]`, nothing more
/// (a registry entry is a stranger's text).
pub fn usable_relay(relay: &str) -> bool {
    let Some(host) = relay.strip_prefix("https://").or_else(|| relay.strip_prefix("http://")) else {
        return false;
    };
    !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// Whether this page may call `relay`: a page served over HTTPS cannot reach a plain-HTTP relay.
pub fn reachable_from_here(relay: &str) -> bool {
    usable_relay(relay) && !(origin().starts_with("https://") && relay.starts_with("http://"))
}

/// The relay the app talks to: the one picked on the Network page, or the page's own.
pub fn relay() -> String {
    stored(RELAY).filter(|r| reachable_from_here(r)).unwrap_or_else(origin)
}

/// Picks `relay` from the registry of `deployment` (`None`, or this page's own origin: go back to
/// the page's relay).
pub fn choose_relay(relay: Option<&str>, deployment: Option<&EscrowDeployment>) -> Result<()> {
    match relay.map(|r| r.trim_end_matches('/')) {
        Some(r) if r != origin() => {
            if !reachable_from_here(r) {
                return Err(Error::Browser(format!("{r} cannot be reached from this page")));
            }
            match deployment.and_then(|d| serde_json::to_string(d).ok()) {
                Some(json) => store(RELAY_DEPLOYMENT, &json)?,
                None => forget(RELAY_DEPLOYMENT),
            }
            store(RELAY, r)
        }
        _ => {
            forget(RELAY);
            forget(RELAY_DEPLOYMENT);
            Ok(())
        }
    }
}

/// Deletes `key` from `localStorage` (a picked relay, a secret the keystore now holds).
pub fn forget(key: &str) {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(key);
    }
}

/// The deployment a picked relay must settle through (the one whose registry listed it); `None`
/// on the page's own relay.
pub fn relay_deployment() -> Option<EscrowDeployment> {
    if relay() == origin() {
        return None;
    }
    stored(RELAY_DEPLOYMENT).and_then(|json| serde_json::from_str(&json).ok())
}

/// `ws(s)://host/path` for a path on the relay the app talks to.
pub fn ws_url(path: &str) -> String {
    let origin = relay();
    let ws = if let Some(rest) = origin.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = origin.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        origin
    };
    format!("{ws}{path}")
}

/// A random u64 from the browser's crypto (job nonces).
pub fn random_u64() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64()
}

/// A secret kept in `localStorage` under `name` (64 hex digits), if any.
pub fn stored_keypair(name: &str) -> Option<Keypair> {
    let bytes = hex::decode(stored(name)?.trim()).ok()?;
    Some(Keypair::from_seed(<[u8; 32]>::try_from(bytes.as_slice()).ok()?))
}

/// Deletes the secret kept under `name`, if it is still the one for `public` (the keystore holds
/// that key now). Another secret there, written meanwhile by another tab, stays.
pub fn forget_secret(name: &str, public: &starling_protocol::PublicKey) {
    if stored_keypair(name).is_some_and(|key| key.public() == *public) {
        forget(name);
    }
}

thread_local! {
    /// The client key, once opened: the page signs with it until it is closed.
    static CLIENT: std::cell::RefCell<Option<(std::rc::Rc<Signer>, KeyStorage)>> = const { std::cell::RefCell::new(None) };
}

/// The client's signing key and where it is kept: a non-extractable WebCrypto key the browser
/// holds (created on first use; a secret kept in `localStorage` by an earlier version is imported
/// and then deleted), or, where the browser cannot hold Ed25519 keys, a secret in `localStorage`.
pub async fn client_key() -> Result<(std::rc::Rc<Signer>, KeyStorage)> {
    if let Some(open) = CLIENT.with(|c| c.borrow().clone()) {
        return Ok(open);
    }
    let legacy = stored_keypair(CLIENT_SECRET_KEY);
    let open = match keystore::open("client", legacy.as_ref()).await.map_err(Error::Browser)? {
        keystore::Opened::Held(held) => {
            if held.migrated {
                forget_secret(CLIENT_SECRET_KEY, &held.signer.public());
            }
            (std::rc::Rc::new(held.signer), KeyStorage::Held { migrated: held.migrated })
        }
        keystore::Opened::Unsupported { code: reason, .. } => {
            let key = match legacy {
                Some(key) => key,
                None => {
                    let key = Keypair::generate();
                    store(CLIENT_SECRET_KEY, &hex::encode(key.seed()))?;
                    key
                }
            };
            (std::rc::Rc::new(Signer::Memory(key)), KeyStorage::Page { reason })
        }
    };
    CLIENT.with(|c| *c.borrow_mut() = Some(open.clone()));
    Ok(open)
}

/// The contributor's public key as the worker last reported it (or derived from a secret kept
/// in `localStorage` before the keystore).
pub fn worker_public_key() -> Option<String> {
    stored(WORKER_PUBLIC_KEY)
        .filter(|k| k.len() == 64)
        .or_else(|| stored_keypair(WORKER_SECRET_KEY).map(|k| k.public().to_hex()))
}

/// The bytes of a file the user picked.
pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>> {
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| Error::Browser(format!("could not read {}: {}", file.name(), js_text(&e))))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Hands `bytes` to the browser as a download named `name`.
pub fn download(name: &str, bytes: &[u8], mime: &str) -> Result<()> {
    let array = Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
        .map_err(|e| Error::Browser(format!("could not prepare the download: {}", js_text(&e))))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)
        .map_err(|e| Error::Browser(format!("could not prepare the download: {}", js_text(&e))))?;
    let result = click_link(&url, name);
    // The click has started the download; the URL is no longer needed after this turn.
    let revoke = url.clone();
    leptos::prelude::set_timeout(
        move || drop(web_sys::Url::revoke_object_url(&revoke)),
        std::time::Duration::from_secs(30),
    );
    result
}

/// Starts a download of `url` (same origin) as `name`.
pub fn click_link(url: &str, name: &str) -> Result<()> {
    let document = window().document().ok_or_else(|| Error::Browser("no document".into()))?;
    let anchor: web_sys::HtmlAnchorElement =
        document.create_element("a").map_err(|e| Error::Browser(js_text(&e)))?.unchecked_into();
    anchor.set_href(url);
    anchor.set_download(name);
    anchor.click();
    Ok(())
}

/// Calls a method by name where the browser has it (`navigator.getBattery`), for APIs web-sys
/// does not bind everywhere.
pub fn call_method(target: &JsValue, name: &str) -> Option<JsValue> {
    let method = js_sys::Reflect::get(target, &JsValue::from_str(name)).ok()?;
    let method: js_sys::Function = method.dyn_into().ok()?;
    method.call0(target).ok()
}

pub fn get_f64(target: &JsValue, name: &str) -> Option<f64> {
    js_sys::Reflect::get(target, &JsValue::from_str(name)).ok()?.as_f64()
}

pub fn get_bool(target: &JsValue, name: &str) -> Option<bool> {
    js_sys::Reflect::get(target, &JsValue::from_str(name)).ok()?.as_bool()
}

/// This device for the Contribute page: its browser and system as their makers name them (empty
/// when unknown) and its CPU threads (0 when not reported); the page words the sentence.
pub fn device_description() -> (&'static str, String, u32) {
    let navigator = window().navigator();
    let agent = navigator.user_agent().unwrap_or_default();
    let platform = navigator.platform().unwrap_or_default();
    let os = ["Android", "iPhone", "iPad", "Windows", "Mac OS X", "CrOS", "Linux"]
        .into_iter()
        .find(|os| agent.contains(os))
        .map(|os| match os {
            "Mac OS X" => "macOS",
            "CrOS" => "ChromeOS",
            other => other,
        })
        .unwrap_or(platform.as_str())
        .to_string();
    let browser = ["Edg/", "OPR/", "Firefox/", "Chrome/", "Safari/"]
        .into_iter()
        .find(|b| agent.contains(b))
        .map(|b| match b {
            "Edg/" => "Edge",
            "OPR/" => "Opera",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            _ => "Safari",
        })
        .unwrap_or("");
    (browser, os, navigator.hardware_concurrency() as u32)
}

#[wasm_bindgen(inline_js = "export function module_url() { return import.meta.url; }")]
extern "C" {
    /// The URL of a module wasm-bindgen writes beside this build's glue.
    fn module_url() -> String;
}

/// The name of the build this page runs, `app-<16 hex>`: the folder its modules were loaded from
/// (scripts/build-web.sh), so the compute worker can load the very same build.
pub fn build_name() -> Option<String> {
    starling_protocol::api::build_name_in(&module_url()).map(str::to_owned)
}
