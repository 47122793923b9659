//! The messages between this page and the browser compute worker (`www/worker.js`), exactly as
//! `web-worker/BROWSER.md` fixes them, plus the contributor's settings and how the worker's state
//! reads to a person.
//!
//! Messages travel as plain JS objects; the page turns them into JSON text and back at the edge,
//! so everything here is ordinary serde and tested natively.

use serde::{Deserialize, Serialize};

/// What the contributor chose on the Contribute page; sent with `start` and as `settings`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Fraction of wall time spent computing, in (0, 1].
    pub duty_cycle: f64,
    /// Pause while the page is hidden (another tab, screen off).
    pub pause_when_hidden: bool,
    /// Pause below this battery level (0..1) unless charging; 0 never pauses.
    pub min_battery: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { duty_cycle: DEFAULT_DUTY_CYCLE, pause_when_hidden: true, min_battery: 0.2 }
    }
}

pub const DEFAULT_DUTY_CYCLE: f64 = 0.1;
/// The slider's range: below 5 % a worker would hardly ever hold a lease.
pub const MIN_DUTY_CYCLE: f64 = 0.05;
pub const MAX_MIN_BATTERY: f64 = 0.9;

impl Settings {
    /// Brings stored or typed values into range, so the worker never sees nonsense.
    pub fn sanitized(self) -> Settings {
        let defaults = Settings::default();
        let duty_cycle =
            if self.duty_cycle.is_finite() { self.duty_cycle.clamp(MIN_DUTY_CYCLE, 1.0) } else { defaults.duty_cycle };
        let min_battery = if self.min_battery.is_finite() {
            self.min_battery.clamp(0.0, MAX_MIN_BATTERY)
        } else {
            defaults.min_battery
        };
        Settings { duty_cycle, pause_when_hidden: self.pause_when_hidden, min_battery }
    }

    /// Settings from what was stored in `localStorage`; defaults when there is nothing usable.
    pub fn from_stored(text: Option<&str>) -> Settings {
        text.and_then(|t| serde_json::from_str::<Settings>(t).ok()).unwrap_or_default().sanitized()
    }

    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).expect("settings serialize")
    }
}

/// Battery Status API reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Battery {
    /// 0..=1.
    pub level: f64,
    pub charging: bool,
}

/// Page → worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    Start { relay: String, secret_key: Option<String>, settings: Settings },
    Stop,
    Settings { settings: Settings },
    Device { hidden: bool, battery: Option<Battery> },
}

impl ToWorker {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("page messages serialize")
    }
}

/// Worker → page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    Key { secret_key: String, public_key: String },
    Status(WorkerStatus),
    Log { level: String, message: String },
}

impl FromWorker {
    pub fn from_json(text: &str) -> Result<FromWorker, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable message from the compute worker: {e}"))
    }
}

/// The worker's `status` message. Fields default so a partial status still reads.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct WorkerStatus {
    pub state: WorkerState,
    pub reason: Option<String>,
    pub backend: Option<String>,
    pub adapter: Option<String>,
    pub public_key: Option<String>,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Starting,
    Connecting,
    Working,
    Resting,
    Paused,
    #[default]
    Stopped,
    Error,
    /// A state this page does not know (a newer worker); shown by its reason.
    #[serde(other)]
    Unknown,
}

impl WorkerState {
    /// The value of the `data-state` attribute tests and styles key on.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Connecting => "connecting",
            WorkerState::Working => "working",
            WorkerState::Resting => "resting",
            WorkerState::Paused => "paused",
            WorkerState::Stopped => "stopped",
            WorkerState::Error => "error",
            WorkerState::Unknown => "unknown",
        }
    }

    /// Whether the worker is connected or trying to be (the button offers Stop).
    pub fn is_active(self) -> bool {
        !matches!(self, WorkerState::Stopped | WorkerState::Error)
    }
}

/// The state line on the Contribute page: a headline, a sentence, and the `data-state` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLine {
    pub key: &'static str,
    pub headline: String,
    pub detail: String,
}

/// How the worker's state reads to a person. `online` is the browser's `navigator.onLine`: when
/// the device is offline, that is the reason nothing happens, whatever the worker last said.
pub fn describe(status: &WorkerStatus, online: bool, wanted: bool) -> StateLine {
    let reason = status.reason.clone().filter(|r| !r.trim().is_empty());
    if !online && (wanted || status.state.is_active()) {
        return StateLine {
            key: "offline",
            headline: "Offline".into(),
            detail: "This device has no network. Work resumes by itself when it is back.".into(),
        };
    }
    let (headline, default_detail) = match status.state {
        WorkerState::Starting => ("Starting", "Loading the compute engine and looking for a GPU."),
        WorkerState::Connecting => ("Connecting", "Connecting to the relay."),
        WorkerState::Working if status.kernel.as_deref().is_some_and(|k| !k.is_empty()) => {
            ("Working", "Running a task for the network.")
        }
        WorkerState::Working => ("Working", "Connected and ready: waiting for the next task."),
        WorkerState::Resting => ("Resting", "Resting between tasks to keep to your duty cycle."),
        WorkerState::Paused => ("Paused", "Paused by your settings; resumes by itself."),
        WorkerState::Stopped if wanted => ("Starting", "Starting the compute worker."),
        WorkerState::Stopped => ("Stopped", "Not contributing. Press Start to lend this device's GPU."),
        WorkerState::Error => ("Error", "The compute worker stopped with an error."),
        WorkerState::Unknown => ("Busy", "The compute worker reported a state this page does not know."),
    };
    let key = if status.state == WorkerState::Stopped && wanted { "starting" } else { status.state.as_str() };
    StateLine { key, headline: headline.into(), detail: reason.unwrap_or_else(|| default_detail.into()) }
}

/// A compute backend as people say it.
pub fn backend_label(backend: &str) -> String {
    match backend {
        "browser_webgpu" => "WebGPU (browser)".into(),
        "cpu" => "CPU only (no WebGPU)".into(),
        "vulkan" => "Vulkan".into(),
        "metal" => "Metal".into(),
        "dx12" => "Direct3D 12".into(),
        "gl" => "OpenGL".into(),
        "" => "unknown".into(),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_messages_match_the_contract() {
        let start =
            ToWorker::Start { relay: "http://127.0.0.1:8080".into(), secret_key: None, settings: Settings::default() };
        assert_eq!(
            start.to_json(),
            r#"{"type":"start","relay":"http://127.0.0.1:8080","secret_key":null,"settings":{"duty_cycle":0.1,"pause_when_hidden":true,"min_battery":0.2}}"#
        );
        assert_eq!(ToWorker::Stop.to_json(), r#"{"type":"stop"}"#);
        let device = ToWorker::Device { hidden: true, battery: Some(Battery { level: 0.5, charging: false }) };
        assert_eq!(device.to_json(), r#"{"type":"device","hidden":true,"battery":{"level":0.5,"charging":false}}"#);
        assert_eq!(
            ToWorker::Device { hidden: false, battery: None }.to_json(),
            r#"{"type":"device","hidden":false,"battery":null}"#
        );
        let settings =
            ToWorker::Settings { settings: Settings { duty_cycle: 0.5, pause_when_hidden: false, min_battery: 0.0 } };
        assert_eq!(
            settings.to_json(),
            r#"{"type":"settings","settings":{"duty_cycle":0.5,"pause_when_hidden":false,"min_battery":0.0}}"#
        );
    }

    #[test]
    fn worker_messages_decode() {
        let status = FromWorker::from_json(
            r#"{"type":"status","state":"paused","reason":"the page is hidden","backend":"browser_webgpu","adapter":"","public_key":"ab","tasks_done":3,"tasks_failed":1,"kernel":null}"#,
        )
        .unwrap();
        let FromWorker::Status(s) = status else { panic!("not a status") };
        assert_eq!(s.state, WorkerState::Paused);
        assert_eq!(s.reason.as_deref(), Some("the page is hidden"));
        assert_eq!((s.tasks_done, s.tasks_failed), (3, 1));
        // Newer states and missing fields still read.
        let FromWorker::Status(s) = FromWorker::from_json(r#"{"type":"status","state":"warming_up"}"#).unwrap() else {
            panic!("not a status")
        };
        assert_eq!(s.state, WorkerState::Unknown);
        assert_eq!(
            FromWorker::from_json(r#"{"type":"key","secret_key":"aa","public_key":"bb"}"#).unwrap(),
            FromWorker::Key { secret_key: "aa".into(), public_key: "bb".into() }
        );
        assert!(FromWorker::from_json(r#"{"type":"teleport"}"#).is_err());
    }

    #[test]
    fn stored_settings_are_sanitized() {
        assert_eq!(Settings::from_stored(None), Settings::default());
        assert_eq!(Settings::from_stored(Some("not json")), Settings::default());
        let s = Settings::from_stored(Some(r#"{"duty_cycle":7,"min_battery":-1}"#));
        assert_eq!(s, Settings { duty_cycle: 1.0, pause_when_hidden: true, min_battery: 0.0 });
        let s = Settings::from_stored(Some(r#"{"duty_cycle":0.0,"pause_when_hidden":false,"min_battery":0.95}"#));
        assert_eq!(s, Settings { duty_cycle: MIN_DUTY_CYCLE, pause_when_hidden: false, min_battery: MAX_MIN_BATTERY });
        let round = Settings { duty_cycle: 0.25, pause_when_hidden: false, min_battery: 0.3 };
        assert_eq!(Settings::from_stored(Some(&round.to_stored())), round);
    }

    #[test]
    fn state_lines() {
        let paused = WorkerStatus {
            state: WorkerState::Paused,
            reason: Some("battery below 20 %".into()),
            ..Default::default()
        };
        let line = describe(&paused, true, true);
        assert_eq!(
            (line.key, line.headline.as_str(), line.detail.as_str()),
            ("paused", "Paused", "battery below 20 %")
        );
        let offline = describe(&WorkerStatus { state: WorkerState::Working, ..Default::default() }, false, true);
        assert_eq!(offline.key, "offline");
        // Offline does not matter while not contributing.
        assert_eq!(describe(&WorkerStatus::default(), false, false).key, "stopped");
        // Pressed Start, worker not yet reporting.
        assert_eq!(describe(&WorkerStatus::default(), true, true).key, "starting");
        let idle = describe(&WorkerStatus { state: WorkerState::Working, ..Default::default() }, true, true);
        assert!(idle.detail.contains("waiting"), "{}", idle.detail);
        let busy = describe(
            &WorkerStatus { state: WorkerState::Working, kernel: Some("mandelbrot".into()), ..Default::default() },
            true,
            true,
        );
        assert!(busy.detail.contains("Running"), "{}", busy.detail);
        let resting = describe(
            &WorkerStatus { state: WorkerState::Resting, reason: Some("  ".into()), ..Default::default() },
            true,
            true,
        );
        assert!(resting.detail.contains("duty cycle"));
    }

    #[test]
    fn backends() {
        assert_eq!(backend_label("browser_webgpu"), "WebGPU (browser)");
        assert_eq!(backend_label("cpu"), "CPU only (no WebGPU)");
        assert_eq!(backend_label("quantum_tpu"), "quantum tpu");
    }
}
