//! How the browser compute worker reads to a person, and the contributor's stored settings. The
//! messages themselves (page → worker and back, `web-worker/BROWSER.md`) are the protocol's:
//! [`starling_protocol::page`], read leniently there (a newer worker's state or backend still
//! reads).

pub use starling_protocol::page::{
    Battery, DeviceReport, KeyStorage, LogLevel, PageMessage, Settings, State, Status, WorkerEvent,
};

/// The slider's range: below 5 % a worker would hardly ever hold a lease.
pub const MIN_DUTY_CYCLE: f32 = 0.05;
pub const MAX_MIN_BATTERY: f32 = 0.9;

/// Brings stored or typed values into the sliders' ranges, so the worker never sees nonsense.
pub fn sanitized(settings: Settings) -> Settings {
    let defaults = Settings::default();
    let duty_cycle = if settings.duty_cycle.is_finite() {
        settings.duty_cycle.clamp(MIN_DUTY_CYCLE, 1.0)
    } else {
        defaults.duty_cycle
    };
    let min_battery = if settings.min_battery.is_finite() {
        settings.min_battery.clamp(0.0, MAX_MIN_BATTERY)
    } else {
        defaults.min_battery
    };
    Settings { duty_cycle, pause_when_hidden: settings.pause_when_hidden, min_battery }
}

/// Settings from what was stored in `localStorage`; defaults when there is nothing usable.
pub fn stored_settings(text: Option<&str>) -> Settings {
    sanitized(text.and_then(|t| serde_json::from_str::<Settings>(t).ok()).unwrap_or_default())
}

pub fn to_stored(settings: &Settings) -> String {
    serde_json::to_string(settings).expect("settings serialize")
}

/// A message from the worker, from the JSON text of its `postMessage` data.
pub fn read_event(text: &str) -> Result<WorkerEvent, String> {
    serde_json::from_str(text).map_err(|e| format!("unreadable message from the compute worker: {e}"))
}

/// A message for the worker, as the JSON text its `postMessage` data is parsed from.
pub fn to_json(message: &PageMessage) -> String {
    serde_json::to_string(message).expect("page messages serialize")
}

pub fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// The state line on the Contribute page: a headline, a sentence, and the `data-state` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLine {
    pub key: &'static str,
    pub headline: String,
    pub detail: String,
    /// Which of the page's own sentences `detail` is (a key under `worker_state.detail` in the
    /// locale files), or `None` when it is the worker's reason, shown as the worker gave it.
    pub detail_key: Option<&'static str>,
}

/// How the worker's state reads to a person. `online` is the browser's `navigator.onLine`: when
/// the device is offline, that is the reason nothing happens, whatever the worker last said.
pub fn describe(status: &Status, online: bool, wanted: bool) -> StateLine {
    let reason = status.reason.clone().filter(|r| !r.trim().is_empty());
    if !online && (wanted || status.state.is_active()) {
        return StateLine {
            key: "offline",
            headline: "Offline".into(),
            detail: "This device has no network. Work resumes by itself when it is back.".into(),
            detail_key: Some("offline"),
        };
    }
    let (headline, detail_key, default_detail) = match status.state {
        State::Starting => ("Starting", "starting", "Loading the compute engine and looking for a GPU."),
        State::Connecting => ("Connecting", "connecting", "Connecting to the relay."),
        State::Working if status.kernel.as_deref().is_some_and(|k| !k.is_empty()) => {
            ("Working", "working_task", "Running a task for the network.")
        }
        State::Working => ("Working", "working_idle", "Connected and ready: waiting for the next task."),
        State::Resting => ("Resting", "resting", "Resting between tasks to keep to your duty cycle."),
        State::Paused => ("Paused", "paused", "Paused by your settings; resumes by itself."),
        State::Stopped if wanted => ("Starting", "starting_worker", "Starting the compute worker."),
        State::Stopped => ("Stopped", "stopped", "Not contributing. Press Start to lend this device's GPU."),
        State::Error => ("Error", "error", "The compute worker stopped with an error."),
        State::Unknown => ("Busy", "unknown", "The compute worker reported a state this page does not know."),
    };
    let key = if status.state == State::Stopped && wanted { "starting" } else { status.state.as_str() };
    match reason {
        Some(reason) => StateLine { key, headline: headline.into(), detail: reason, detail_key: None },
        None => {
            StateLine { key, headline: headline.into(), detail: default_detail.into(), detail_key: Some(detail_key) }
        }
    }
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

/// What a worker's uncaught error says, without the browser's "Uncaught " (and "Error: ") before it.
pub fn uncaught_detail(message: &str) -> &str {
    let message = message.strip_prefix("Uncaught ").unwrap_or(message);
    message.strip_prefix("Error: ").unwrap_or(message)
}

/// The compute worker's script for the page's build: `www/worker.js` loads the build it is told,
/// so the page and its worker always run the same build (a deploy between the page's load and
/// Start leaves the page's build in place; the relay keeps the build before the current one).
pub fn worker_url(build: Option<&str>) -> String {
    match build {
        Some(build) => format!("/worker.js?app={build}"),
        None => "/worker.js".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_uncaught_error_reads_as_its_message() {
        for (message, want) in [
            (
                "Uncaught the compute engine's code could not be fetched",
                "the compute engine's code could not be fetched",
            ),
            ("Uncaught Error: boom", "boom"),
            ("RuntimeError: unreachable", "RuntimeError: unreachable"),
            ("", ""),
        ] {
            assert_eq!(uncaught_detail(message), want, "{message}");
        }
    }

    #[test]
    fn the_worker_loads_the_pages_build() {
        assert_eq!(worker_url(Some("app-0123456789abcdef")), "/worker.js?app=app-0123456789abcdef");
        assert_eq!(worker_url(None), "/worker.js");
    }

    use super::*;

    #[test]
    fn the_page_writes_what_the_worker_reads() {
        let start = PageMessage::Start {
            relay: "http://127.0.0.1:8080".into(),
            secret_key: None,
            settings: Settings::default(),
            expect: None,
        };
        assert_eq!(
            to_json(&start),
            r#"{"start":{"relay":"http://127.0.0.1:8080","secret_key":null,"settings":{"duty_cycle":0.1,"pause_when_hidden":true,"min_battery":0.2}}}"#
        );
        let device =
            PageMessage::Device(DeviceReport { hidden: true, battery: Some(Battery { level: 0.5, charging: false }) });
        assert_eq!(to_json(&device), r#"{"device":{"hidden":true,"battery":{"level":0.5,"charging":false}}}"#);
        let WorkerEvent::Status(status) = read_event(r#"{"status":{"state":"paused","tasks_done":3}}"#).unwrap() else {
            panic!("not a status")
        };
        assert_eq!((status.state, status.tasks_done), (State::Paused, 3));
        assert!(read_event(r#"{"teleport":{}}"#).unwrap_err().contains("compute worker"));
        // worker.js's own message when the engine cannot load, written by hand in JavaScript.
        let Ok(WorkerEvent::Status(status)) = read_event(
            r#"{"status":{"state":"error","reason":"could not load the engine: x","backend":null,"adapter":null,"public_key":null,"tasks_done":0,"tasks_failed":0,"kernel":null}}"#,
        ) else {
            panic!("worker.js's status does not read")
        };
        assert_eq!(status.state, State::Error);
    }

    #[test]
    fn stored_settings_are_sanitized() {
        assert_eq!(stored_settings(None), Settings::default());
        assert_eq!(stored_settings(Some("not json")), Settings::default());
        let s = stored_settings(Some(r#"{"duty_cycle":7,"min_battery":-1}"#));
        assert_eq!(s, Settings { duty_cycle: 1.0, pause_when_hidden: true, min_battery: 0.0 });
        let s = stored_settings(Some(r#"{"duty_cycle":0.0,"pause_when_hidden":false,"min_battery":0.95}"#));
        assert_eq!(s, Settings { duty_cycle: MIN_DUTY_CYCLE, pause_when_hidden: false, min_battery: MAX_MIN_BATTERY });
        // What the page sends the worker is what it checks.
        assert!(stored_settings(Some(r#"{"duty_cycle":"NaN","min_battery":1e9}"#)).check().is_ok());
        let round = Settings { duty_cycle: 0.25, pause_when_hidden: false, min_battery: 0.3 };
        assert_eq!(stored_settings(Some(&to_stored(&round))), round);
    }

    #[test]
    fn state_lines() {
        let paused = Status { state: State::Paused, reason: Some("battery below 20 %".into()), ..Default::default() };
        let line = describe(&paused, true, true);
        assert_eq!(
            (line.key, line.headline.as_str(), line.detail.as_str()),
            ("paused", "Paused", "battery below 20 %")
        );
        let offline = describe(&Status { state: State::Working, ..Default::default() }, false, true);
        assert_eq!(offline.key, "offline");
        // Offline does not matter while not contributing.
        assert_eq!(describe(&Status::default(), false, false).key, "stopped");
        // Pressed Start, worker not yet reporting.
        assert_eq!(describe(&Status::default(), true, true).key, "starting");
        let idle = describe(&Status { state: State::Working, ..Default::default() }, true, true);
        assert!(idle.detail.contains("waiting"), "{}", idle.detail);
        let busy = describe(
            &Status { state: State::Working, kernel: Some("mandelbrot".into()), ..Default::default() },
            true,
            true,
        );
        assert!(busy.detail.contains("Running"), "{}", busy.detail);
        let resting =
            describe(&Status { state: State::Resting, reason: Some("  ".into()), ..Default::default() }, true, true);
        assert!(resting.detail.contains("duty cycle"));
    }

    #[test]
    fn backends() {
        assert_eq!(backend_label("browser_webgpu"), "WebGPU (browser)");
        assert_eq!(backend_label("cpu"), "CPU only (no WebGPU)");
        assert_eq!(backend_label("quantum_tpu"), "quantum tpu");
    }
}
