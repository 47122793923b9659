//! Contribute: lend this device's GPU. One button starts and stops the browser worker; the
//! settings (duty cycle, pause when hidden, minimum battery) apply at once and are remembered;
//! the page shows what the worker reports and, from the relay, verified work and earnings.

use crate::app::{Connectivity, set_title};
use crate::browser;
use crate::components::notice::{Notice, Tone};
use crate::compute::Contributor;
use crate::error::Error;
use crate::format;
use crate::poll;
use crate::views::WorkerView;
use crate::worker_protocol::{self, KeyStorage, Settings, State};
use crate::{api, worker_protocol::describe};
use leptos::prelude::*;

/// How often the relay's record of this worker is refreshed.
const POLL_MS: u32 = 5_000;

#[component]
pub fn Contribute() -> impl IntoView {
    set_title("Contribute");
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
            <h1 data-testid="page-heading">"Contribute"</h1>
            <p class="lead">"Lend this device's GPU to the network. Every result is checked against other devices before anyone is paid, and the work stops whenever you say."</p>

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
                    <span>{move || if running() { "Stop contributing" } else { "Start contributing" }}</span>
                </button>
                <div class="state" role="status" aria-live="polite" data-testid="worker-status" data-state=move || line.get().key>
                    <span class="state-dot" aria-hidden="true"></span>
                    <strong data-testid="worker-state">{move || line.get().headline}</strong>
                    <span data-testid="worker-reason">{move || line.get().detail}</span>
                </div>
            </div>
            <Notice text=Signal::derive(move || contributor.failure.get()) tone=Tone::Error testid="worker-error"/>
            <Notice text=Signal::derive(move || contributor.storage_problem.get()) tone=Tone::Warning testid="storage-warning"/>

            <div class="grid two">
                <section class="card" aria-labelledby="device-heading">
                    <h2 id="device-heading">"This device"</h2>
                    <dl class="facts">
                        <dt>"Device"</dt>
                        <dd data-testid="worker-device">{browser::device_description()}</dd>
                        <dt>"Backend"</dt>
                        <dd data-testid="worker-backend">
                            {move || contributor.status.with(|s| match s.backend {
                                Some(b) => worker_protocol::backend_label(b.as_str()),
                                _ => "Known once started".to_string(),
                            })}
                        </dd>
                        <dt>"Adapter"</dt>
                        <dd data-testid="worker-adapter">
                            {move || contributor.status.with(|s| match (s.adapter.as_deref(), s.backend.map(|b| b.as_str())) {
                                (Some(a), _) if !a.trim().is_empty() => a.to_string(),
                                (_, Some("browser_webgpu")) => "WebGPU adapter (the browser does not name it)".to_string(),
                                (_, Some("cpu")) => "No WebGPU adapter: built-in kernels run on the CPU".to_string(),
                                _ => "Known once started".to_string(),
                            })}
                        </dd>
                        <dt>"Battery"</dt>
                        <dd data-testid="worker-battery">
                            {move || match contributor.battery.get() {
                                Some(b) => format!("{}{}", format::percent(f64::from(b.level)), if b.charging { ", charging" } else { "" }),
                                None => "Not reported by this browser".to_string(),
                            }}
                        </dd>
                        <dt>"Running now"</dt>
                        <dd data-testid="current-kernel">
                            {move || contributor.status.with(|s| match (&s.kernel, s.state) {
                                (Some(k), State::Working) if !k.is_empty() => k.clone(),
                                _ => "Nothing".to_string(),
                            })}
                        </dd>
                        <dt>"Worker key"</dt>
                        <dd data-testid="worker-key" class="mono">
                            {move || contributor.public_key.get().map(|k| format::short_key(&k)).unwrap_or_else(|| "Created when you first start".to_string())}
                        </dd>
                    </dl>
                    {move || contributor.key_storage.get().map(|storage| {
                        let held = matches!(storage, KeyStorage::Held { .. });
                        let note = match storage {
                            KeyStorage::Held { .. } => "The key is held by this browser: no script, not even this app's, can read it.".to_string(),
                            KeyStorage::Page { reason } => format!(
                                "This browser cannot hold the key out of scripts' reach ({reason}), so it is kept in this site's storage, where a script running on this page could read it."
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
                    <h2 id="work-heading">"Work"</h2>
                    <dl class="counters">
                        <div><dt>"Done since this page opened"</dt><dd data-testid="tasks-done">{move || format::count(contributor.status.with(|s| s.tasks_done))}</dd></div>
                        <div><dt>"Failed since this page opened"</dt><dd data-testid="tasks-failed">{move || format::count(contributor.status.with(|s| s.tasks_failed))}</dd></div>
                        <div><dt>"Verified, all time"</dt><dd data-testid="tasks-verified">{move || relay_count(record, |w| w.replicas_accepted)}</dd></div>
                        <div><dt>"Rejected, all time"</dt><dd data-testid="tasks-rejected">{move || relay_count(record, |w| w.replicas_rejected)}</dd></div>
                    </dl>
                    <p class="earnings">
                        <span>"Earnings "</span>
                        <strong data-testid="earnings">{move || earnings(record)}</strong>
                    </p>
                    <p class="hint" data-testid="relay-record-note">{move || record_note(record, contributor.public_key.get().is_some())}</p>
                </section>
            </div>

            <section class="card settings" aria-labelledby="settings-heading">
                <h2 id="settings-heading">"Settings"</h2>
                <div class="setting">
                    <label for="duty-cycle">"Share of time spent computing"</label>
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
                    <small id="duty-cycle-hint" class="hint">"After each task the worker rests so that it computes at most this share of the time. Lower keeps the device cool."</small>
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
                        <span>"Pause while this page is hidden"</span>
                    </label>
                </div>
                <div class="setting">
                    <label for="min-battery">"Pause below this battery level (unless charging)"</label>
                    <div class="slider-row">
                        <input
                            id="min-battery"
                            data-testid="min-battery"
                            type="range"
                            min="0"
                            max="90"
                            step="5"
                            prop:value=move || ((settings.with(|s| s.min_battery) * 100.0).round() as u32).to_string()
                            aria-valuetext=move || battery_text(settings.with(|s| s.min_battery))
                            on:input:target=move |ev| {
                                if let Ok(v) = ev.target().value().parse::<f32>() {
                                    set(|s, v| s.min_battery = v / 100.0, v);
                                }
                            }
                        />
                        <output for="min-battery" data-testid="min-battery-value">{move || battery_text(settings.with(|s| s.min_battery))}</output>
                    </div>
                </div>
            </section>
        </section>
    }
}

fn battery_text(level: f32) -> String {
    if level <= 0.0 { "Never".to_string() } else { format::percent(f64::from(level)) }
}

fn relay_count(record: RwSignal<Option<Result<WorkerView, Error>>>, count: fn(&WorkerView) -> u64) -> String {
    record.with(|r| match r {
        Some(Ok(w)) => format::count(count(w)),
        _ => "–".to_string(),
    })
}

fn earnings(record: RwSignal<Option<Result<WorkerView, Error>>>) -> String {
    record.with(|r| match r {
        Some(Ok(WorkerView { escrow: Some(e), .. })) => {
            let received = if e.received.is_empty() { "0" } else { e.received.as_str() };
            format::amount(received, &e.denom)
        }
        Some(Ok(_)) => "Unpaid relay".to_string(),
        _ => "–".to_string(),
    })
}

/// A sentence on where the relay-side numbers come from, or why they are missing.
fn record_note(record: RwSignal<Option<Result<WorkerView, Error>>>, has_key: bool) -> String {
    record.with(|r| match r {
        _ if !has_key => "Verified work and earnings appear here after this device's first start.".to_string(),
        None => "Asking the relay for this device's record…".to_string(),
        Some(Ok(w)) => match &w.escrow {
            Some(e) => {
                let mut parts = vec![format!("Balance {}", format::amount(&e.balance, &e.denom))];
                if let Some(bonded) = &e.bonded {
                    parts.push(format!("bond {}", format::amount(bonded, &e.denom)));
                }
                if let Some(slashed) = e.slashed.as_deref().filter(|s| *s != "0") {
                    parts.push(format!("slashed {}", format::amount(slashed, &e.denom)));
                }
                format!("{}. Verified and rejected counts are the relay's.", parts.join(", "))
            }
            None => "This relay runs jobs without payment, or this key has no payout account yet. Verified and rejected counts are the relay's.".to_string(),
        },
        Some(Err(e)) if e.is_not_found() => "The relay has no record of this device yet: it appears after the first connection.".to_string(),
        Some(Err(e)) => format!("Verified work and earnings are unavailable: {e}."),
    })
}

/// Refreshes the relay's record of this worker while the page is open (hidden tabs' timers are
/// slowed by the browser anyway).
fn poll_record(contributor: Contributor, record: RwSignal<Option<Result<WorkerView, Error>>>) {
    let fetch = move || contributor.public_key.get_untracked().map(|key| async move { api::worker(&key).await });
    poll::into_signal(POLL_MS, record, fetch, |_| false);
}
