//! Contribute: lend this device's GPU. One button starts and stops the browser worker; the
//! settings (duty cycle, pause when hidden, minimum battery) apply at once and are remembered;
//! the page shows what the worker reports and, from the relay, verified work and earnings.

use crate::app::{Connectivity, set_title};
use crate::browser;
use crate::components::notice::{Notice, Tone};
use crate::compute::Contributor;
use crate::error::Error;
use crate::format;
use crate::lang::{self, I18n, tr, use_i18n};
use crate::poll;
use crate::views::WorkerView;
use crate::worker_protocol::{self, DeviceReport, KeyStorage, Settings, State};
use crate::{api, worker_protocol::describe};
use leptos::prelude::*;
use starling_web_worker::pacing;

/// How often the relay's record of this worker is refreshed.
const POLL_MS: u32 = 5_000;

#[component]
pub fn Contribute() -> impl IntoView {
    let i18n = use_i18n();
    set_title(tr!(i18n, contribute.title));
    let contributor = expect_context::<Contributor>();
    let online = expect_context::<Connectivity>().online;
    let record: RwSignal<Option<Result<WorkerView, Error>>> = RwSignal::new(None);
    poll_record(contributor, record);

    let line = Memo::new(move |_| contributor.status.with(|s| describe(s, online.get(), contributor.wanted.get())));
    let running = move || contributor.wanted.get();
    let toggle = move |_| {
        if contributor.wanted.get_untracked() {
            contributor.stop();
        } else {
            contributor.start();
        }
    };
    let settings = contributor.settings;
    let set = move |change: fn(&mut Settings, f32), value: f32| {
        let mut s = settings.get_untracked();
        change(&mut s, value);
        contributor.update_settings(s);
    };

    view! {
        <section class="page contribute" data-testid="page-contribute">
            <h1 data-testid="page-heading">{tr!(i18n, contribute.heading)}</h1>
            <p class="lead">{tr!(i18n, contribute.lead)}</p>

            <div class="start-panel">
                <button
                    type="button"
                    class="start-button"
                    class:running=running
                    data-testid="start-button"
                    data-running=move || running().to_string()
                    aria-pressed=move || running().to_string()
                    on:click=toggle
                >
                    <span class="start-icon" aria-hidden="true">{move || if running() { "■" } else { "▶" }}</span>
                    <span>{move || if running() { tr!(i18n, contribute.stop) } else { tr!(i18n, contribute.start) }}</span>
                </button>
                <div class="state" role="status" aria-live="polite" data-testid="worker-status" data-state=move || line.get().key>
                    <span class="state-dot" aria-hidden="true"></span>
                    <strong data-testid="worker-state">{move || state_headline(i18n, line.get().key)}</strong>
                    <span data-testid="worker-reason">{move || line.with(|l| match l.detail_key {
                        Some(key) => state_detail(i18n, key).to_string(),
                        None => worker_reason(i18n, contributor, l),
                    })}</span>
                </div>
            </div>
            <Notice text=Signal::derive(move || contributor.failure.get()) tone=Tone::Error testid="worker-error"/>
            <Notice text=Signal::derive(move || contributor.storage_problem.get()) tone=Tone::Warning testid="storage-warning"/>

            <div class="grid two">
                <section class="card" aria-labelledby="device-heading">
                    <h2 id="device-heading">{tr!(i18n, contribute.this_device)}</h2>
                    <dl class="facts">
                        <dt>{tr!(i18n, contribute.device)}</dt>
                        <dd data-testid="worker-device">{device_text(i18n)}</dd>
                        <dt>{tr!(i18n, contribute.backend)}</dt>
                        <dd data-testid="worker-backend">
                            {move || contributor.status.with(|s| match s.backend {
                                Some(b) => lang::backend_label(i18n, b.as_str()),
                                _ => tr!(i18n, contribute.known_once_started).to_string(),
                            })}
                        </dd>
                        <dt>{tr!(i18n, contribute.adapter)}</dt>
                        <dd data-testid="worker-adapter">
                            {move || contributor.status.with(|s| match (s.adapter.as_deref(), s.backend.map(|b| b.as_str())) {
                                (Some(a), _) if !a.trim().is_empty() => a.to_string(),
                                (_, Some("browser_webgpu")) => tr!(i18n, contribute.adapter_unnamed).to_string(),
                                (_, Some("cpu")) => tr!(i18n, contribute.adapter_cpu).to_string(),
                                _ => tr!(i18n, contribute.known_once_started).to_string(),
                            })}
                        </dd>
                        <dt>{tr!(i18n, contribute.battery)}</dt>
                        <dd data-testid="worker-battery">
                            {move || match contributor.battery.get() {
                                Some(b) if b.charging => format::fill(tr!(i18n, contribute.battery_charging), &[("level", &format::percent(f64::from(b.level)))]),
                                Some(b) => format::percent(f64::from(b.level)),
                                None => tr!(i18n, contribute.battery_unknown).to_string(),
                            }}
                        </dd>
                        <dt>{tr!(i18n, contribute.running_now)}</dt>
                        <dd data-testid="current-kernel">
                            {move || contributor.status.with(|s| match (&s.kernel, s.state) {
                                (Some(k), State::Working) if !k.is_empty() => k.clone(),
                                _ => tr!(i18n, contribute.nothing).to_string(),
                            })}
                        </dd>
                        <dt>{tr!(i18n, contribute.worker_key)}</dt>
                        <dd data-testid="worker-key" class="mono">
                            {move || contributor.public_key.get().map(|k| format::short_key(&k)).unwrap_or_else(|| tr!(i18n, contribute.key_created_on_start).to_string())}
                        </dd>
                    </dl>
                    {move || contributor.key_storage.get().map(|storage| {
                        let held = matches!(storage, KeyStorage::Held { .. });
                        let note = match storage {
                            KeyStorage::Held { .. } => tr!(i18n, contribute.key_held).to_string(),
                            KeyStorage::Page { reason } => format::fill(
                                tr!(i18n, contribute.key_in_page),
                                &[("reason", &crate::lang::key_storage_reason(i18n, &reason))],
                            ),
                        };
                        view! {
                            <p class=if held { "hint" } else { "hint warning" } data-testid="worker-key-storage" data-held=held.to_string()>
                                {note}
                            </p>
                        }
                    })}
                </section>

                <section class="card" aria-labelledby="work-heading">
                    <h2 id="work-heading">{tr!(i18n, contribute.work)}</h2>
                    <dl class="counters">
                        <div><dt>{tr!(i18n, contribute.done_since_open)}</dt><dd data-testid="tasks-done">{move || format::count(contributor.status.with(|s| s.tasks_done))}</dd></div>
                        <div><dt>{tr!(i18n, contribute.failed_since_open)}</dt><dd data-testid="tasks-failed">{move || format::count(contributor.status.with(|s| s.tasks_failed))}</dd></div>
                        <div><dt>{tr!(i18n, contribute.verified_all_time)}</dt><dd data-testid="tasks-verified">{move || relay_count(record, |w| w.replicas_accepted)}</dd></div>
                        <div><dt>{tr!(i18n, contribute.rejected_all_time)}</dt><dd data-testid="tasks-rejected">{move || relay_count(record, |w| w.replicas_rejected)}</dd></div>
                    </dl>
                    <p class="earnings">
                        <span>{tr!(i18n, contribute.earnings)}" "</span>
                        <strong data-testid="earnings">{move || earnings(i18n, record)}</strong>
                    </p>
                    <p class="hint" data-testid="relay-record-note">{move || record_note(i18n, record, contributor.public_key.get().is_some())}</p>
                </section>
            </div>

            <section class="card settings" aria-labelledby="settings-heading">
                <h2 id="settings-heading">{tr!(i18n, contribute.settings)}</h2>
                <div class="setting">
                    <label for="duty-cycle">{tr!(i18n, contribute.duty_cycle)}</label>
                    <div class="slider-row">
                        <input
                            id="duty-cycle"
                            data-testid="duty-cycle"
                            type="range"
                            min="5"
                            max="100"
                            step="5"
                            prop:value=move || ((settings.with(|s| s.duty_cycle) * 100.0).round() as u32).to_string()
                            aria-describedby="duty-cycle-hint"
                            aria-valuetext=move || format::percent(f64::from(settings.with(|s| s.duty_cycle)))
                            on:input:target=move |ev| {
                                if let Ok(v) = ev.target().value().parse::<f32>() {
                                    set(|s, v| s.duty_cycle = v / 100.0, v);
                                }
                            }
                        />
                        <output for="duty-cycle" data-testid="duty-cycle-value">{move || format::percent(f64::from(settings.with(|s| s.duty_cycle)))}</output>
                    </div>
                    <small id="duty-cycle-hint" class="hint">{tr!(i18n, contribute.duty_cycle_hint)}</small>
                </div>
                <div class="setting">
                    <label class="check" for="pause-when-hidden">
                        <input
                            id="pause-when-hidden"
                            data-testid="pause-when-hidden"
                            type="checkbox"
                            prop:checked=move || settings.with(|s| s.pause_when_hidden)
                            on:change:target=move |ev| {
                                let checked = ev.target().checked();
                                set(|s, v| s.pause_when_hidden = v > 0.5, if checked { 1.0 } else { 0.0 });
                            }
                        />
                        <span>{tr!(i18n, contribute.pause_when_hidden)}</span>
                    </label>
                </div>
                <div class="setting">
                    <label for="min-battery">{tr!(i18n, contribute.min_battery)}</label>
                    <div class="slider-row">
                        <input
                            id="min-battery"
                            data-testid="min-battery"
                            type="range"
                            min="0"
                            max="90"
                            step="5"
                            prop:value=move || ((settings.with(|s| s.min_battery) * 100.0).round() as u32).to_string()
                            aria-valuetext=move || battery_text(i18n, settings.with(|s| s.min_battery))
                            on:input:target=move |ev| {
                                if let Ok(v) = ev.target().value().parse::<f32>() {
                                    set(|s, v| s.min_battery = v / 100.0, v);
                                }
                            }
                        />
                        <output for="min-battery" data-testid="min-battery-value">{move || battery_text(i18n, settings.with(|s| s.min_battery))}</output>
                    </div>
                </div>
            </section>
        </section>
    }
}

fn battery_text(i18n: I18n, level: f32) -> String {
    if level <= 0.0 { tr!(i18n, contribute.never).to_string() } else { format::percent(f64::from(level)) }
}

/// "Chrome on Android, 8 CPU threads", in the shown language.
fn device_text(i18n: I18n) -> String {
    let (browser, os, threads) = browser::device_description();
    let browser = if browser.is_empty() { tr!(i18n, contribute.device_unknown_browser) } else { browser };
    let os = if os.is_empty() { tr!(i18n, contribute.device_unknown_system).to_string() } else { os };
    if threads > 0 {
        format::fill(
            tr!(i18n, contribute.device_threads),
            &[("browser", browser), ("os", &os), ("threads", &threads.to_string())],
        )
    } else {
        format::fill(tr!(i18n, contribute.device_on), &[("browser", browser), ("os", &os)])
    }
}

/// The worker's own reason for its state. The worker words it in English (`web-worker`); in
/// another language the page says what it can know itself: why it pauses (from the same
/// settings and readings the worker decides with, `pacing::pause_reason`), or its own sentence
/// for starting and resting; connection and error details, as the worker gave them, inside a
/// sentence in the page's language.
fn worker_reason(i18n: I18n, contributor: Contributor, line: &worker_protocol::StateLine) -> String {
    if lang::is_english(i18n) {
        return line.detail.clone();
    }
    let pause = move || {
        let device = DeviceReport { hidden: contributor.hidden.get(), battery: contributor.battery.get() };
        pacing::pause_reason(&contributor.settings.get(), &device).map(|why| match why {
            pacing::PauseReason::Hidden => tr!(i18n, worker_state.why_hidden).to_string(),
            pacing::PauseReason::LowBattery { level, min } => format::fill(
                tr!(i18n, worker_state.why_low_battery),
                &[("level", &format::percent(f64::from(level))), ("min", &format::percent(f64::from(min)))],
            ),
        })
    };
    match line.key {
        "starting" => state_detail(i18n, "starting").to_string(),
        "resting" => state_detail(i18n, "resting").to_string(),
        "paused" => match pause() {
            Some(why) => format::fill(tr!(i18n, worker_state.paused_because), &[("why", &why)]),
            None => state_detail(i18n, "paused").to_string(),
        },
        "working" => match pause() {
            Some(why) => format::fill(tr!(i18n, worker_state.pausing_after_task), &[("why", &why)]),
            None => state_detail(i18n, "working_task").to_string(),
        },
        // The worker's own words are technical (a close code, an HTTP status): kept as the detail
        // of a sentence in the page's language.
        "connecting" => format::fill(tr!(i18n, worker_state.retrying), &[("why", &line.detail)]),
        "error" => format::fill(tr!(i18n, worker_state.error_because), &[("why", &line.detail)]),
        _ => line.detail.clone(),
    }
}

/// The state line's headline, by its `data-state` key.
fn state_headline(i18n: I18n, key: &str) -> &'static str {
    match key {
        "offline" => tr!(i18n, worker_state.offline),
        "starting" => tr!(i18n, worker_state.starting),
        "connecting" => tr!(i18n, worker_state.connecting),
        "working" => tr!(i18n, worker_state.working),
        "resting" => tr!(i18n, worker_state.resting),
        "paused" => tr!(i18n, worker_state.paused),
        "stopped" => tr!(i18n, worker_state.stopped),
        "error" => tr!(i18n, worker_state.error),
        _ => tr!(i18n, worker_state.busy),
    }
}

/// The page's own sentence for a state ([`worker_protocol::StateLine::detail_key`]).
fn state_detail(i18n: I18n, key: &str) -> &'static str {
    match key {
        "offline" => tr!(i18n, worker_state.detail.offline),
        "starting" => tr!(i18n, worker_state.detail.starting),
        "connecting" => tr!(i18n, worker_state.detail.connecting),
        "working_task" => tr!(i18n, worker_state.detail.working_task),
        "working_idle" => tr!(i18n, worker_state.detail.working_idle),
        "resting" => tr!(i18n, worker_state.detail.resting),
        "paused" => tr!(i18n, worker_state.detail.paused),
        "starting_worker" => tr!(i18n, worker_state.detail.starting_worker),
        "stopped" => tr!(i18n, worker_state.detail.stopped),
        "error" => tr!(i18n, worker_state.detail.error),
        _ => tr!(i18n, worker_state.detail.unknown),
    }
}

fn relay_count(record: RwSignal<Option<Result<WorkerView, Error>>>, count: fn(&WorkerView) -> u64) -> String {
    record.with(|r| match r {
        Some(Ok(w)) => format::count(count(w)),
        _ => "–".to_string(),
    })
}

fn earnings(i18n: I18n, record: RwSignal<Option<Result<WorkerView, Error>>>) -> String {
    record.with(|r| match r {
        Some(Ok(WorkerView { escrow: Some(e), .. })) => {
            let received = if e.received.is_empty() { "0" } else { e.received.as_str() };
            format::amount(received, &e.denom)
        }
        Some(Ok(_)) => tr!(i18n, contribute.unpaid_relay).to_string(),
        _ => "–".to_string(),
    })
}

/// A sentence on where the relay-side numbers come from, or why they are missing.
fn record_note(i18n: I18n, record: RwSignal<Option<Result<WorkerView, Error>>>, has_key: bool) -> String {
    record.with(|r| match r {
        _ if !has_key => tr!(i18n, contribute.note_before_start).to_string(),
        None => tr!(i18n, contribute.note_asking).to_string(),
        Some(Ok(w)) => match &w.escrow {
            Some(e) => {
                let amount = |a: &str| format::amount(a, &e.denom);
                let mut parts =
                    vec![format::fill(tr!(i18n, contribute.note_balance), &[("amount", &amount(&e.balance))])];
                if let Some(bonded) = &e.bonded {
                    parts.push(format::fill(tr!(i18n, contribute.note_bond), &[("amount", &amount(bonded))]));
                }
                if let Some(slashed) = e.slashed.as_deref().filter(|s| *s != "0") {
                    parts.push(format::fill(tr!(i18n, contribute.note_slashed), &[("amount", &amount(slashed))]));
                }
                format::fill(
                    tr!(i18n, contribute.note_paid),
                    &[("parts", &parts.join(tr!(i18n, contribute.list_separator)))],
                )
            }
            None => tr!(i18n, contribute.note_unpaid).to_string(),
        },
        Some(Err(e)) if e.is_not_found() => tr!(i18n, contribute.note_no_record).to_string(),
        Some(Err(e)) => format::fill(tr!(i18n, contribute.note_unavailable), &[("error", &lang::error_text(i18n, e))]),
    })
}

/// Refreshes the relay's record of this worker while the page is open (hidden tabs' timers are
/// slowed by the browser anyway).
fn poll_record(contributor: Contributor, record: RwSignal<Option<Result<WorkerView, Error>>>) {
    let fetch = move || contributor.public_key.get_untracked().map(|key| async move { api::worker(&key).await });
    poll::into_signal(POLL_MS, record, fetch, |_| false);
}
