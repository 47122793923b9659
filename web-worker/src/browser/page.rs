//! The messages between the page and the browser worker, exactly as web-worker/BROWSER.md lists
//! them: plain JS objects tagged by `type`, snake_case fields. Decoded here into one enum each
//! way; the Web Worker glue converts them to and from JS values with serde-wasm-bindgen.
//!
//! Extra fields from the page are ignored (a newer page may say more than this worker reads);
//! missing or mistyped fields and unknown `type`s are refused with a message the page can show.

use crate::pacing::{DeviceReport, Settings};
use serde::{Deserialize, Serialize};
use starling_protocol::PublicKey;
use starling_protocol::sign::Keypair;
use starling_protocol::worker::Backend;

/// Page → worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PageMessage {
    /// Connect to `relay` (its origin, `http(s)://host[:port]`) and work. With no `secret_key`
    /// the worker generates one and sends it back in a [`WorkerEvent::Key`] first.
    Start {
        relay: String,
        #[serde(default)]
        secret_key: Option<String>,
        settings: Settings,
    },
    /// Take nothing new and drop the connection; the relay lets the leases lapse.
    Stop,
    Settings {
        settings: Settings,
    },
    /// Visibility and Battery Status API readings, which only the page can take.
    Device(DeviceReport),
}

/// Worker → page.
#[derive(Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// A freshly generated identity: the page stores `secret_key` and passes it to the next
    /// `start`.
    Key {
        secret_key: String,
        public_key: PublicKey,
    },
    Status(Status),
    Log {
        level: LogLevel,
        message: String,
    },
}

/// Keeps the secret key out of debug output and logs.
impl std::fmt::Debug for WorkerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerEvent::Key { public_key, .. } => {
                f.debug_struct("Key").field("public_key", public_key).finish_non_exhaustive()
            }
            WorkerEvent::Status(status) => f.debug_tuple("Status").field(status).finish(),
            WorkerEvent::Log { level, message } => {
                f.debug_struct("Log").field("level", level).field("message", message).finish()
            }
        }
    }
}

impl WorkerEvent {
    /// The `key` message for a generated keypair: the secret is the 32-byte ed25519 seed in hex.
    pub fn key(key: &Keypair) -> Self {
        WorkerEvent::Key { secret_key: hex::encode(key.seed()), public_key: key.public() }
    }

    pub fn log(level: LogLevel, message: impl Into<String>) -> Self {
        WorkerEvent::Log { level, message: message.into() }
    }
}

/// Everything the page shows about the worker; sent whenever any of it changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub state: State,
    /// A sentence for the contributor (why paused, why reconnecting), or none.
    pub reason: Option<String>,
    /// `browser_webgpu` or `cpu`; none until the worker has looked for a GPU.
    pub backend: Option<Backend>,
    /// The adapter's description; may be empty on WebGPU, which hides it.
    pub adapter: Option<String>,
    pub public_key: Option<PublicKey>,
    /// Results the relay acknowledged.
    pub tasks_done: u64,
    /// Tasks this device could not run.
    pub tasks_failed: u64,
    /// The kernel running now.
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Looking for a GPU before the first connection.
    Starting,
    /// Opening the connection, proving the key, or waiting to retry.
    Connecting,
    /// Connected: running a task, or ready for one.
    Working,
    /// Keeping the duty cycle after a task.
    Resting,
    /// Hidden page or low battery.
    Paused,
    Stopped,
    /// Cannot go on as asked (bad settings or key, refused by the relay); `reason` says why.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The worker's identity from the page's `secret_key`: 64 hex digits, the ed25519 seed.
pub fn parse_secret_key(hex_seed: &str) -> Result<Keypair, String> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed.trim(), &mut seed).map_err(|_| "secret_key must be 64 hex digits".to_string())?;
    Ok(Keypair::from_seed(seed))
}

/// The relay's endpoints, derived from the origin the page passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrls {
    /// `ws(s)://host/v1/workers/ws`.
    pub socket: String,
    /// `http(s)://host`, the prefix for `/v1/blobs/{hash}`.
    pub http: String,
}

impl RelayUrls {
    /// Accepts only `http://` and `https://` origins (a path is tolerated and dropped of its
    /// trailing slash); anything else is refused rather than guessed at.
    pub fn from_origin(relay: &str) -> Result<RelayUrls, String> {
        let base = relay.trim().trim_end_matches('/');
        let (socket_scheme, rest) = if let Some(rest) = base.strip_prefix("https://") {
            ("wss", rest)
        } else if let Some(rest) = base.strip_prefix("http://") {
            ("ws", rest)
        } else {
            return Err(format!("relay must be an http:// or https:// origin, got {relay:?}"));
        };
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err(format!("relay must be an http:// or https:// origin, got {relay:?}"));
        }
        Ok(RelayUrls { socket: format!("{socket_scheme}://{rest}/v1/workers/ws"), http: base.to_string() })
    }

    pub fn blob(&self, hash: &starling_protocol::Hash32) -> String {
        format!("{}/v1/blobs/{hash}", self.http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::Battery;

    fn page(json: &str) -> Result<PageMessage, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn page_messages_decode_as_browser_md_writes_them() {
        let settings = Settings { duty_cycle: 0.1, pause_when_hidden: true, min_battery: 0.2 };
        let settings_json = r#"{"duty_cycle":0.1,"pause_when_hidden":true,"min_battery":0.2}"#;
        assert_eq!(
            page(&format!(
                r#"{{"type":"start","relay":"http://127.0.0.1:8080","secret_key":null,"settings":{settings_json}}}"#
            ))
            .unwrap(),
            PageMessage::Start { relay: "http://127.0.0.1:8080".into(), secret_key: None, settings }
        );
        let seed = "ab".repeat(32);
        assert_eq!(
            page(&format!(
                r#"{{"type":"start","relay":"https://r","secret_key":"{seed}","settings":{settings_json}}}"#
            ))
            .unwrap(),
            PageMessage::Start { relay: "https://r".into(), secret_key: Some(seed), settings }
        );
        assert_eq!(page(r#"{"type":"stop"}"#).unwrap(), PageMessage::Stop);
        assert_eq!(
            page(&format!(r#"{{"type":"settings","settings":{settings_json}}}"#)).unwrap(),
            PageMessage::Settings { settings }
        );
        assert_eq!(
            page(r#"{"type":"device","hidden":true,"battery":null}"#).unwrap(),
            PageMessage::Device(DeviceReport { hidden: true, battery: None })
        );
        assert_eq!(
            page(r#"{"type":"device","hidden":false,"battery":{"level":0.5,"charging":true}}"#).unwrap(),
            PageMessage::Device(DeviceReport { hidden: false, battery: Some(Battery { level: 0.5, charging: true }) })
        );
        // Extra fields are tolerated; missing ones and unknown types are not.
        assert_eq!(page(r#"{"type":"stop","why":"button"}"#).unwrap(), PageMessage::Stop);
        assert!(page(r#"{"type":"settings","settings":{"duty_cycle":0.1}}"#).is_err());
        assert!(page(r#"{"type":"teleport"}"#).is_err());
        assert!(page(r#"{"relay":"http://x"}"#).is_err());
    }

    #[test]
    fn worker_events_encode_as_browser_md_reads_them() {
        let key = Keypair::from_seed([7; 32]);
        let json = serde_json::to_value(WorkerEvent::key(&key)).unwrap();
        assert_eq!(json["type"], "key");
        assert_eq!(json["secret_key"], "07".repeat(32));
        assert_eq!(json["public_key"], key.public().to_string());
        assert!(!format!("{:?}", WorkerEvent::key(&key)).contains(&"07".repeat(32)), "the secret stays out of Debug");

        let status = Status {
            state: State::Paused,
            reason: Some("the page is hidden".into()),
            backend: Some(Backend::BrowserWebgpu),
            adapter: Some(String::new()),
            public_key: Some(key.public()),
            tasks_done: 3,
            tasks_failed: 1,
            kernel: None,
        };
        let json = serde_json::to_value(WorkerEvent::Status(status)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "status", "state": "paused", "reason": "the page is hidden",
                "backend": "browser_webgpu", "adapter": "", "public_key": key.public().to_string(),
                "tasks_done": 3, "tasks_failed": 1, "kernel": null,
            })
        );
        let json = serde_json::to_value(WorkerEvent::log(LogLevel::Warn, "careful")).unwrap();
        assert_eq!(json, serde_json::json!({"type": "log", "level": "warn", "message": "careful"}));
    }

    #[test]
    fn secret_keys_round_trip_and_bad_ones_are_refused() {
        let key = Keypair::from_seed([9; 32]);
        let WorkerEvent::Key { secret_key, .. } = WorkerEvent::key(&key) else { unreachable!() };
        assert_eq!(parse_secret_key(&secret_key).unwrap().public(), key.public());
        for bad in ["", "zz", &"ab".repeat(31), &"ab".repeat(33), &"g".repeat(64)] {
            assert!(parse_secret_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relay_origins_map_to_endpoints() {
        let urls = RelayUrls::from_origin("http://127.0.0.1:8080/").unwrap();
        assert_eq!(urls.socket, "ws://127.0.0.1:8080/v1/workers/ws");
        assert_eq!(urls.http, "http://127.0.0.1:8080");
        let hash = starling_protocol::sha256(b"x");
        assert_eq!(urls.blob(&hash), format!("http://127.0.0.1:8080/v1/blobs/{hash}"));
        assert_eq!(
            RelayUrls::from_origin("https://relay.example").unwrap().socket,
            "wss://relay.example/v1/workers/ws"
        );
        for bad in ["", "relay.example", "ws://relay.example", "http://", "http:///x", "http://a b", "file:///etc"] {
            assert!(RelayUrls::from_origin(bad).is_err(), "{bad:?}");
        }
    }
}
