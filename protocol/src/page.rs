//! The messages between the web app's page and its browser compute worker (a module Web Worker,
//! `www/worker.js`), exactly as web-worker/BROWSER.md lists them: plain JS values, each message an
//! object with one key, its kind (`{"start": {...}}`), or, with nothing to carry, the kind's name
//! (`"stop"`); snake_case fields. The page (crate `starling-frontend`) writes [`PageMessage`]s and
//! reads [`WorkerEvent`]s; the worker (crate `starling-web-worker`) does the opposite. Both use
//! these types and nothing else, and both are of one build (the engine is a chunk of the page's
//! app), so the shape is private to a build.
//!
//! Tagged by a key of their own (serde's default), not by a `type` field among the others: a
//! message read by its `type` field must be buffered whole before it can be read, and that
//! buffering, for both messages and both directions, cost the app 12 KB of its gzipped download
//! (BENCHMARKS.md, "Web app size").
//!
//! Reading is lenient where the page needs it: extra fields are ignored, a status field that is
//! missing takes its default, and a worker state or backend this build does not know reads as
//! [`State::Unknown`] or no backend rather than failing. Missing required fields of a message
//! (`relay` of `start`, `settings` of `settings`) and unknown `type`s are refused.

use crate::api::known_or_none;
use crate::bytes::PublicKey;
use crate::sign::Keypair;
use crate::worker::Backend;
use serde::{Deserialize, Serialize};

/// The contributor's limits, set on the page. A field left out takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Largest fraction of wall time spent computing, in (0, 1].
    pub duty_cycle: f32,
    /// Stop taking work while the page is hidden.
    pub pause_when_hidden: bool,
    /// Stop taking work below this charge (0..=1) unless charging.
    pub min_battery: f32,
}

impl Default for Settings {
    /// What BROWSER.md shows: a tenth of the time, only while visible, not below 20% charge.
    fn default() -> Self {
        Settings { duty_cycle: 0.1, pause_when_hidden: true, min_battery: 0.2 }
    }
}

impl Settings {
    /// Refuses settings outside their ranges (NaN included) instead of clamping them silently:
    /// the page shows the contributor what was wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(self.duty_cycle > 0.0 && self.duty_cycle <= 1.0) {
            return Err(format!("duty_cycle must be in (0, 1], got {}", self.duty_cycle));
        }
        if !(0.0..=1.0).contains(&self.min_battery) {
            return Err(format!("min_battery must be in [0, 1], got {}", self.min_battery));
        }
        Ok(())
    }
}

/// A Battery Status API reading, taken on the page (workers have no `navigator.getBattery`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Battery {
    /// Charge, 0..=1.
    pub level: f32,
    pub charging: bool,
}

/// What the page last reported about the device.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceReport {
    /// The page is not visible (another tab, minimised, screen off).
    pub hidden: bool,
    /// `None` where the browser has no Battery Status API (or no battery).
    #[serde(default)]
    pub battery: Option<Battery>,
}

/// Page → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageMessage {
    /// Connect to `relay` (its origin, `http(s)://host[:port]`) and work, as the worker key the
    /// browser holds (a non-extractable WebCrypto key, created on first use), or, where the browser
    /// cannot hold one, as `secret_key` (kept by the page), generated when there is none. A
    /// `secret_key` the page kept from before the browser could hold keys is imported on first use.
    /// The worker answers with a [`WorkerEvent::Key`] saying which.
    Start {
        relay: String,
        #[serde(default)]
        secret_key: Option<String>,
        settings: Settings,
        /// Refuse a relay whose escrow is not this deployment (the page picked the relay from a
        /// registry in this contract on this chain); `None`: whatever the relay names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<crate::sign::EscrowDeployment>,
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
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker's identity, sent on every `start`: its public key, where the secret is kept
    /// and, only when the page must keep it, the secret itself (the page stores it and passes it
    /// to the next `start`).
    Key {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_key: Option<String>,
        public_key: PublicKey,
        /// Absent: a key the page keeps.
        #[serde(default)]
        storage: KeyStorage,
    },
    Status(Status),
    Log {
        level: LogLevel,
        message: String,
    },
}

/// Where a browser key's secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStorage {
    /// A non-extractable WebCrypto key in IndexedDB: no script can read the secret. `migrated`:
    /// the secret the page passed is the held key now, and the page deletes its copy.
    Held { migrated: bool },
    /// In the page's storage, where scripts on the page can read it, because the browser cannot
    /// hold Ed25519 keys: `reason` is a code (`no-webcrypto`, `no-indexeddb`, `indexeddb-refused`,
    /// `no-ed25519`, `no-key-storage`, `old-engine`) the page words in its language.
    Page { reason: String },
}

impl Default for KeyStorage {
    fn default() -> Self {
        KeyStorage::Page { reason: "old-engine".into() }
    }
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
    /// The `key` message for a key the page keeps: the secret is the 32-byte ed25519 seed in hex.
    pub fn key_in_page(key: &Keypair, reason: impl Into<String>) -> Self {
        WorkerEvent::Key {
            secret_key: Some(hex::encode(key.seed())),
            public_key: key.public(),
            storage: KeyStorage::Page { reason: reason.into() },
        }
    }

    /// The `key` message for a key the browser holds: no secret travels.
    pub fn key_held(public_key: PublicKey, migrated: bool) -> Self {
        WorkerEvent::Key { secret_key: None, public_key, storage: KeyStorage::Held { migrated } }
    }

    pub fn log(level: LogLevel, message: impl Into<String>) -> Self {
        WorkerEvent::Log { level, message: message.into() }
    }
}

/// Everything the page shows about the worker; sent whenever any of it changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub state: State,
    /// A sentence for the contributor (why paused, why reconnecting), or none.
    pub reason: Option<String>,
    /// `browser_webgpu` or `cpu`; none until the worker has looked for a GPU (and, reading, a
    /// backend this build does not know).
    #[serde(deserialize_with = "known_or_none")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    #[default]
    Stopped,
    /// Cannot go on as asked (bad settings or key, refused by the relay); `reason` says why.
    Error,
    /// Only read, never sent: a state this build does not know (a newer worker).
    #[serde(other)]
    Unknown,
}

impl State {
    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Connecting => "connecting",
            State::Working => "working",
            State::Resting => "resting",
            State::Paused => "paused",
            State::Stopped => "stopped",
            State::Error => "error",
            State::Unknown => "unknown",
        }
    }

    /// Connected or trying to be (neither stopped nor given up).
    pub fn is_active(self) -> bool {
        !matches!(self, State::Stopped | State::Error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> Result<PageMessage, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn page_messages_read_and_write_as_browser_md_has_them() {
        let settings = Settings { duty_cycle: 0.1, pause_when_hidden: true, min_battery: 0.2 };
        let settings_json = r#"{"duty_cycle":0.1,"pause_when_hidden":true,"min_battery":0.2}"#;
        let start =
            PageMessage::Start { relay: "http://127.0.0.1:8080".into(), secret_key: None, settings, expect: None };
        let start_json =
            format!(r#"{{"start":{{"relay":"http://127.0.0.1:8080","secret_key":null,"settings":{settings_json}}}}}"#);
        assert_eq!(page(&start_json).unwrap(), start);
        assert_eq!(serde_json::to_string(&start).unwrap(), start_json);
        let seed = "ab".repeat(32);
        assert_eq!(
            page(&format!(r#"{{"start":{{"relay":"https://r","secret_key":"{seed}","settings":{settings_json}}}}}"#))
                .unwrap(),
            PageMessage::Start { relay: "https://r".into(), secret_key: Some(seed), settings, expect: None }
        );
        assert_eq!(page(r#""stop""#).unwrap(), PageMessage::Stop);
        assert_eq!(serde_json::to_string(&PageMessage::Stop).unwrap(), r#""stop""#);
        assert_eq!(
            page(&format!(r#"{{"settings":{{"settings":{settings_json}}}}}"#)).unwrap(),
            PageMessage::Settings { settings }
        );
        let hidden = PageMessage::Device(DeviceReport { hidden: true, battery: None });
        assert_eq!(page(r#"{"device":{"hidden":true,"battery":null}}"#).unwrap(), hidden);
        assert_eq!(serde_json::to_string(&hidden).unwrap(), r#"{"device":{"hidden":true,"battery":null}}"#);
        let charging =
            PageMessage::Device(DeviceReport { hidden: false, battery: Some(Battery { level: 0.5, charging: true }) });
        let charging_json = r#"{"device":{"hidden":false,"battery":{"level":0.5,"charging":true}}}"#;
        assert_eq!(page(charging_json).unwrap(), charging);
        assert_eq!(serde_json::to_string(&charging).unwrap(), charging_json);
        // Extra fields are tolerated, and so are settings left out (their defaults); a missing
        // message field, unknown kinds, a second kind in one message and the `type` field of
        // earlier builds are not.
        assert_eq!(
            page(r#"{"start":{"relay":"https://r","settings":{},"why":"button"}}"#).unwrap(),
            PageMessage::Start {
                relay: "https://r".into(),
                secret_key: None,
                settings: Settings::default(),
                expect: None
            }
        );
        assert_eq!(
            page(r#"{"settings":{"settings":{"duty_cycle":0.5}}}"#).unwrap(),
            PageMessage::Settings { settings: Settings { duty_cycle: 0.5, ..Settings::default() } }
        );
        assert!(page(r#"{"settings":{}}"#).is_err());
        assert!(page(r#"{"start":{"settings":{}}}"#).is_err());
        assert!(page(r#""teleport""#).is_err());
        assert!(page(r#"{"teleport":{}}"#).is_err());
        assert!(page(r#"{"relay":"http://x"}"#).is_err());
        assert!(page(r#"{"device":{"hidden":true},"stop":null}"#).is_err());
        assert!(page(r#"{"type":"stop"}"#).is_err());
    }

    #[test]
    fn worker_events_read_and_write_as_browser_md_has_them() {
        let key = Keypair::from_seed([7; 32]);
        let in_page = WorkerEvent::key_in_page(&key, "no Ed25519");
        let json = serde_json::to_value(&in_page).unwrap();
        assert_eq!(json["key"]["secret_key"], "07".repeat(32));
        assert_eq!(json["key"]["public_key"], key.public().to_string());
        assert_eq!(json["key"]["storage"], serde_json::json!({"page": {"reason": "no Ed25519"}}));
        assert_eq!(serde_json::from_value::<WorkerEvent>(json).unwrap(), in_page);
        assert!(!format!("{in_page:?}").contains(&"07".repeat(32)), "the secret stays out of Debug");
        let held = WorkerEvent::key_held(key.public(), true);
        let json = serde_json::to_value(&held).unwrap();
        assert_eq!(json["key"].get("secret_key"), None, "a held key's secret never travels");
        assert_eq!(json["key"]["storage"], serde_json::json!({"held": {"migrated": true}}));
        assert_eq!(serde_json::from_value::<WorkerEvent>(json).unwrap(), held);
        // A key message without `storage` is a key the page keeps.
        let bare = serde_json::json!({"key": {"secret_key": "07".repeat(32), "public_key": key.public()}});
        let Ok(WorkerEvent::Key { secret_key: Some(_), storage: KeyStorage::Page { .. }, .. }) =
            serde_json::from_value::<WorkerEvent>(bare)
        else {
            panic!("a key message without storage is the page's to keep")
        };

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
        let json = serde_json::to_value(WorkerEvent::Status(status.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": {
                "state": "paused", "reason": "the page is hidden",
                "backend": "browser_webgpu", "adapter": "", "public_key": key.public().to_string(),
                "tasks_done": 3, "tasks_failed": 1, "kernel": null,
            }})
        );
        assert_eq!(serde_json::from_value::<WorkerEvent>(json).unwrap(), WorkerEvent::Status(status));
        let json = serde_json::to_value(WorkerEvent::log(LogLevel::Warn, "careful")).unwrap();
        assert_eq!(json, serde_json::json!({"log": {"level": "warn", "message": "careful"}}));
        assert_eq!(serde_json::from_value::<WorkerEvent>(json).unwrap(), WorkerEvent::log(LogLevel::Warn, "careful"));
    }

    #[test]
    fn a_status_from_a_newer_or_older_worker_still_reads() {
        let read = |json: &str| match serde_json::from_str::<WorkerEvent>(json).unwrap() {
            WorkerEvent::Status(status) => status,
            other => panic!("not a status: {other:?}"),
        };
        let newer = read(r#"{"status":{"state":"warming_up","backend":"quantum_tpu","tasks_done":2,"new":1}}"#);
        assert_eq!((newer.state, newer.backend, newer.tasks_done), (State::Unknown, None, 2));
        assert_eq!(read(r#"{"status":{}}"#), Status::default());
        assert_eq!(read(r#"{"status":{"backend":"cpu"}}"#).backend, Some(Backend::Cpu));
        assert!(serde_json::from_str::<WorkerEvent>(r#"{"teleport":{}}"#).is_err());
    }

    #[test]
    fn settings_ranges() {
        let ok = Settings::default();
        assert!(ok.check().is_ok());
        for (name, bad) in [
            ("zero duty", Settings { duty_cycle: 0.0, ..ok }),
            ("duty over 1", Settings { duty_cycle: 1.5, ..ok }),
            ("NaN duty", Settings { duty_cycle: f32::NAN, ..ok }),
            ("negative battery", Settings { min_battery: -0.1, ..ok }),
            ("battery over 1", Settings { min_battery: 1.01, ..ok }),
            ("NaN battery", Settings { min_battery: f32::NAN, ..ok }),
        ] {
            assert!(bad.check().is_err(), "{name}");
        }
        assert!(Settings { duty_cycle: 1.0, min_battery: 1.0, ..ok }.check().is_ok());
    }
}
