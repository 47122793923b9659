//! The page's side of the browser compute worker: spawns `/worker.js` as a module Web Worker,
//! speaks the messages of `web-worker/BROWSER.md`, forwards visibility and battery readings, and
//! keeps the worker's key. It lives as long as the app (not the Contribute page), so contributing
//! goes on while the contributor looks at other pages.

use crate::browser::{self, js_text};
use crate::format::fill;
use crate::lang::say;
use crate::worker_protocol::{
    self, Battery, DeviceReport, KeyStorage, LogLevel, PageMessage, Settings, State, Status, WorkerEvent,
};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// The running Web Worker and the handlers that must live as long as it does.
struct ComputeWorker {
    worker: web_sys::Worker,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for ComputeWorker {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
    }
}

/// Shared contributor state, provided as context by the app.
#[derive(Debug, Clone, Copy)]
pub struct Contributor {
    /// The contributor pressed Start (and not Stop since).
    pub wanted: RwSignal<bool>,
    /// The worker's latest `status`.
    pub status: RwSignal<Status>,
    pub settings: RwSignal<Settings>,
    /// This device's worker key (public half), once known.
    pub public_key: RwSignal<Option<String>>,
    /// Why the worker could not be started or died, in words.
    pub failure: RwSignal<Option<String>>,
    /// The worker's latest log line (level, message).
    pub last_log: RwSignal<Option<(String, String)>>,
    pub hidden: RwSignal<bool>,
    /// `None` where the Battery Status API does not exist.
    pub battery: RwSignal<Option<Battery>>,
    /// A problem saving settings or the key.
    pub storage_problem: RwSignal<Option<String>>,
    /// Where the worker key is kept, as the worker last said (`None` before its first start here).
    pub key_storage: RwSignal<Option<KeyStorage>>,
    worker: StoredValue<Option<ComputeWorker>, LocalStorage>,
}

impl Contributor {
    pub fn new() -> Contributor {
        let contributor = Contributor {
            wanted: RwSignal::new(false),
            status: RwSignal::new(Status::default()),
            settings: RwSignal::new(worker_protocol::stored_settings(
                browser::stored(browser::CONTRIBUTE_SETTINGS).as_deref(),
            )),
            public_key: RwSignal::new(browser::worker_public_key()),
            failure: RwSignal::new(None),
            last_log: RwSignal::new(None),
            hidden: RwSignal::new(browser::document_hidden()),
            battery: RwSignal::new(None),
            storage_problem: RwSignal::new(None),
            key_storage: RwSignal::new(None),
            worker: StoredValue::new_local(None),
        };
        contributor.watch_visibility();
        contributor.watch_battery();
        contributor
    }

    /// Starts contributing: spawns the worker if needed and sends `start`, then the device state.
    pub fn start(self) {
        self.failure.set(None);
        self.wanted.set(true);
        if self.worker.with_value(Option::is_none) {
            match self.spawn() {
                Ok(worker) => self.worker.set_value(Some(worker)),
                Err(message) => {
                    self.failure.set(Some(message));
                    self.wanted.set(false);
                    return;
                }
            }
        }
        let secret_key = browser::stored(browser::WORKER_SECRET_KEY).filter(|k| k.len() == 64);
        self.post(&PageMessage::Start {
            relay: browser::relay(),
            secret_key,
            settings: self.settings.get_untracked(),
            expect: browser::relay_deployment(),
        });
        self.report_device();
    }

    /// Stops taking work; the worker stays loaded for a quick restart.
    pub fn stop(self) {
        self.wanted.set(false);
        self.post(&PageMessage::Stop);
    }

    /// Saves new settings and tells the worker at once.
    pub fn update_settings(self, settings: Settings) {
        let settings = worker_protocol::sanitized(settings);
        self.settings.set(settings);
        match browser::store(browser::CONTRIBUTE_SETTINGS, &worker_protocol::to_stored(&settings)) {
            Ok(()) => self.storage_problem.set(None),
            Err(e) => {
                self.storage_problem.set(Some(fill(say!(compute.settings_not_saved), &[("error", &e.to_string())])))
            }
        }
        self.post(&PageMessage::Settings { settings });
    }

    fn post(self, message: &PageMessage) {
        self.worker.with_value(|worker| {
            if let Some(w) = worker {
                match js_sys::JSON::parse(&worker_protocol::to_json(message)) {
                    Ok(value) => {
                        if let Err(e) = w.worker.post_message(&value) {
                            self.failure.set(Some(fill(say!(compute.unreachable), &[("error", &js_text(&e))])));
                        }
                    }
                    Err(e) => self.failure.set(Some(fill(say!(compute.unencodable), &[("error", &js_text(&e))]))),
                }
            }
        });
    }

    fn report_device(self) {
        let device = DeviceReport { hidden: self.hidden.get_untracked(), battery: self.battery.get_untracked() };
        self.post(&PageMessage::Device(device));
    }

    fn spawn(self) -> Result<ComputeWorker, String> {
        let options = web_sys::WorkerOptions::new();
        options.set_type(web_sys::WorkerType::Module);
        let url = worker_protocol::worker_url(crate::browser::build_name().as_deref());
        let worker = web_sys::Worker::new_with_options(&url, &options)
            .map_err(|e| fill(say!(compute.not_started), &[("error", &js_text(&e))]))?;
        let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let text = match js_sys::JSON::stringify(&event.data()) {
                Ok(text) => String::from(text),
                Err(e) => {
                    web_sys::console::warn_1(&JsValue::from_str(&format!(
                        "unreadable worker message: {}",
                        js_text(&e)
                    )));
                    return;
                }
            };
            match worker_protocol::read_event(&text) {
                Ok(message) => self.receive(message),
                Err(e) => web_sys::console::warn_1(&JsValue::from_str(&e)),
            }
        });
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let detail = event
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| worker_protocol::uncaught_detail(&e.message()).to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| say!(compute.load_failed).to_string());
            event.prevent_default();
            self.failure.set(Some(fill(say!(compute.stopped), &[("detail", &detail)])));
            self.wanted.set(false);
            self.status.update(|s| s.state = State::Error);
            // Drop it: the next Start loads a fresh one.
            self.worker.set_value(None);
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(ComputeWorker { worker, _on_message: on_message, _on_error: on_error })
    }

    fn receive(self, message: WorkerEvent) {
        match message {
            WorkerEvent::Key { secret_key, public_key, storage } => {
                // Only a key the browser cannot hold comes with its secret, for the page to keep.
                let saved = match (&storage, secret_key) {
                    (KeyStorage::Page { .. }, Some(secret_key)) => {
                        browser::store(browser::WORKER_SECRET_KEY, &secret_key)
                    }
                    _ => Ok(()),
                };
                if let Err(e) = saved {
                    self.storage_problem.set(Some(fill(say!(compute.key_not_saved), &[("error", &e.to_string())])));
                }
                if let KeyStorage::Held { migrated } = storage {
                    if migrated {
                        // The browser holds the secret the page kept: the page's copy goes.
                        browser::forget_secret(browser::WORKER_SECRET_KEY, &public_key);
                    }
                    if let Some(other) =
                        browser::stored_keypair(browser::WORKER_SECRET_KEY).filter(|other| other.public() != public_key)
                    {
                        self.storage_problem.set(Some(fill(
                            say!(compute.older_worker_key),
                            &[("key", &crate::format::short_key(&other.public().to_hex()))],
                        )));
                    }
                }
                let _ = browser::store(browser::WORKER_PUBLIC_KEY, &public_key.to_hex());
                self.public_key.set(Some(public_key.to_string()));
                self.key_storage.set(Some(storage));
            }
            WorkerEvent::Status(status) => {
                if let Some(key) = status.public_key.map(|k| k.to_string())
                    && self.public_key.get_untracked().as_deref() != Some(key.as_str())
                {
                    self.public_key.set(Some(key));
                }
                if status.state == State::Stopped
                    && self.wanted.get_untracked()
                    && self.status.get_untracked().state.is_active()
                {
                    // The worker stopped by itself (not on our request): reflect it in the button.
                    self.wanted.set(false);
                }
                if status.state == State::Error {
                    self.wanted.set(false);
                }
                self.status.set(status);
            }
            WorkerEvent::Log { level, message } => {
                let text = JsValue::from_str(&format!("worker: {message}"));
                match level {
                    LogLevel::Error => web_sys::console::error_1(&text),
                    LogLevel::Warn => web_sys::console::warn_1(&text),
                    LogLevel::Info | LogLevel::Debug => web_sys::console::log_1(&text),
                }
                self.last_log.set(Some((worker_protocol::level_name(level).to_string(), message)));
            }
        }
    }

    fn watch_visibility(self) {
        let Some(document) = browser::window().document() else { return };
        let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            let hidden = browser::document_hidden();
            if hidden != self.hidden.get_untracked() {
                self.hidden.set(hidden);
                self.report_device();
            }
        });
        let _ = document.add_event_listener_with_callback("visibilitychange", listener.as_ref().unchecked_ref());
        // The contributor lives as long as the page: the listener is never removed.
        listener.forget();
    }

    /// Reads the Battery Status API where the browser has it, and follows its changes.
    fn watch_battery(self) {
        let navigator: JsValue = browser::window().navigator().into();
        let Some(promise) = browser::call_method(&navigator, "getBattery") else { return };
        let Ok(promise) = promise.dyn_into::<js_sys::Promise>() else { return };
        wasm_bindgen_futures::spawn_local(async move {
            let Ok(manager) = wasm_bindgen_futures::JsFuture::from(promise).await else { return };
            let read = {
                let manager = manager.clone();
                move || {
                    let level = browser::get_f64(&manager, "level");
                    let charging = browser::get_bool(&manager, "charging");
                    if let (Some(level), Some(charging)) = (level, charging) {
                        self.battery.set(Some(Battery { level: level as f32, charging }));
                        self.report_device();
                    }
                }
            };
            read();
            let Ok(target) = manager.dyn_into::<web_sys::EventTarget>() else { return };
            let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| read());
            for event in ["levelchange", "chargingchange"] {
                let _ = target.add_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
            }
            listener.forget();
        });
    }
}

impl Default for Contributor {
    fn default() -> Self {
        Self::new()
    }
}
