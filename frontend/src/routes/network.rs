//! Network: who is computing and how fast. Workers online grouped by backend and adapter, and
//! verified tasks per second from successive `tasks_verified_total` readings, drawn over time.

use crate::api;
use crate::app::set_title;
use crate::browser;
use crate::chart;
use crate::components::chart::{LineChart, Series};
use crate::components::notice::{Notice, Tone};
use crate::error::Error;
use crate::format;
use crate::lang::{self, I18n, tr, use_i18n};
use crate::network_stats::{self, History};
use crate::poll::{self, Then};
use crate::views::{WorkerView, adapter_label_in};
use leptos::prelude::*;
use starling_protocol::api::{Health, RelayList};

const HEALTH_POLL_MS: u32 = 5_000;
const WORKERS_POLL_MS: u32 = 15_000;
const RELAYS_POLL_MS: u32 = 30_000;
/// Readings kept for the charts: an hour at one every 5 seconds (the relay's own samples, one
/// every 10 seconds, fill in what came before the page opened).
const HISTORY: usize = 720;
/// Workers listed individually.
const WORKER_LIMIT: u32 = 200;

#[component]
pub fn Network() -> impl IntoView {
    let i18n = use_i18n();
    set_title(tr!(i18n, network.title));
    let health: RwSignal<Option<Health>> = RwSignal::new(None);
    let health_problem: RwSignal<Option<String>> = RwSignal::new(None);
    let history = RwSignal::new(History::new(HISTORY));
    let workers: RwSignal<Option<Vec<WorkerView>>> = RwSignal::new(None);
    let workers_problem: RwSignal<Option<String>> = RwSignal::new(None);
    // What the relay sampled before this page opened (a relay without the endpoint has none).
    let seeded: RwSignal<usize> = RwSignal::new(0);
    leptos::task::spawn_local(async move {
        if let Ok(relay) = api::network_history().await {
            // The relay's wall-clock times on this page's monotonic clock.
            let (mono, wall) = (browser::monotonic_ms(), browser::now_ms() as f64);
            let earlier: Vec<(f64, u64, Option<u64>)> = relay
                .samples
                .iter()
                .map(|s| (mono - (wall - s.at_ms as f64), s.workers_online, Some(s.tasks_verified_total)))
                .collect();
            let _ = history.try_update(|h| {
                let before = h.samples().count();
                *h = h.with_earlier(&earlier);
                let _ = seeded.try_set(h.samples().count().saturating_sub(before));
            });
        }
    });
    poll::every(
        HEALTH_POLL_MS,
        || Some(api::health()),
        move |result| {
            match result {
                Ok(h) => {
                    history.update(|hist| {
                        hist.record(browser::monotonic_ms(), h.workers_online, h.tasks_verified_total);
                    });
                    health.set(Some(h));
                    health_problem.set(None);
                }
                Err(e) => health_problem.set(Some(problem_text(i18n, tr!(i18n, network.what_health), &e))),
            }
            Then::Again
        },
    );
    poll::every(
        WORKERS_POLL_MS,
        || Some(api::workers(WORKER_LIMIT)),
        move |result| {
            match result {
                Ok(list) => {
                    workers.set(Some(list));
                    workers_problem.set(None);
                }
                Err(e) => workers_problem.set(Some(problem_text(i18n, tr!(i18n, network.what_workers), &e))),
            }
            Then::Again
        },
    );

    let relays: RwSignal<Option<RelayList>> = RwSignal::new(None);
    let relays_problem: RwSignal<Option<String>> = RwSignal::new(None);
    poll::every(
        RELAYS_POLL_MS,
        || Some(api::relays()),
        move |result| {
            match result {
                Ok(list) => {
                    relays.set(Some(list));
                    relays_problem.set(None);
                }
                Err(e) => relays_problem.set(Some(problem_text(i18n, tr!(i18n, network.what_registry), &e))),
            }
            Then::Again
        },
    );
    let current = browser::relay();
    let own = browser::origin();
    // The deployment whose registry lists the relays below: a relay picked from it must settle
    // through it (the browser worker refuses one that does not).
    let listed_in = move || {
        health.with_untracked(|h| {
            h.as_ref().and_then(|h| h.escrow.as_ref()).map(|e| starling_protocol::sign::EscrowDeployment {
                chain_id: e.chain_id.clone(),
                contract: e.contract.clone(),
            })
        })
    };
    let choose = move |relay: Option<String>| match browser::choose_relay(relay.as_deref(), listed_in().as_ref()) {
        Ok(()) => {
            let _ = browser::window().location().reload();
        }
        Err(e) => relays_problem.set(Some(lang::error_text(i18n, &e))),
    };

    let adapter_words = lang::adapter_words(i18n);
    let groups =
        Memo::new(move |_| workers.with(|w| w.as_deref().map(|w| network_stats::group_workers_in(w, &adapter_words))));
    let rate = move || history.with(History::window_rate);
    let counter_missing = move || health.with(|h| h.as_ref().is_some_and(|h| h.tasks_verified_total.is_none()));
    let started = browser::monotonic_ms();
    let now = RwSignal::new(started);
    let tick =
        set_interval_with_handle(move || now.set(browser::monotonic_ms()), std::time::Duration::from_secs(5)).ok();
    on_cleanup(move || {
        if let Some(t) = tick {
            t.clear();
        }
    });
    // x in minutes before now; the window is the history's length.
    let window_minutes = (HISTORY as f64) * f64::from(HEALTH_POLL_MS) / 60_000.0;
    let to_x = move |at_ms: f64| (at_ms - now.get()) / 60_000.0;
    let workers_series = Signal::derive(move || {
        let points = history.with(|h| h.samples().map(|s| (to_x(s.at_ms), s.workers_online as f64)).collect());
        vec![Series { points, dashed: false }]
    });
    let rate_series = Signal::derive(move || {
        let points = history.with(|h| h.samples().filter_map(|s| s.rate.map(|r| (to_x(s.at_ms), r))).collect());
        vec![Series { points, dashed: false }]
    });
    let domain = Signal::derive(move || Some((-window_minutes, 0.0)));
    let minutes_label = Callback::new(move |m: f64| {
        if m.abs() < 0.05 {
            tr!(i18n, network.now).to_string()
        } else {
            format::fill(tr!(i18n, network.minutes), &[("n", &format::decimal_mark(chart::tick_label(m)))])
        }
    });

    view! {
        <section class="page network" data-testid="page-network">
            <h1 data-testid="page-heading">{tr!(i18n, network.heading)}</h1>
            <p class="lead">{tr!(i18n, network.lead)}</p>
            <Notice text=Signal::derive(move || health_problem.get()) tone=Tone::Warning testid="network-health-error"/>
            <dl class="stats">
                <div>
                    <dt>{tr!(i18n, network.workers_online)}</dt>
                    <dd data-testid="network-workers-online">{move || health.with(|h| h.as_ref().map(|h| format::count(h.workers_online)).unwrap_or_else(|| "–".into()))}</dd>
                </div>
                <div>
                    <dt>{tr!(i18n, network.jobs_running)}</dt>
                    <dd data-testid="network-jobs-running">{move || health.with(|h| h.as_ref().map(|h| format::count(h.jobs_running)).unwrap_or_else(|| "–".into()))}</dd>
                </div>
                <div>
                    <dt>{tr!(i18n, network.verified_tasks)}</dt>
                    <dd data-testid="network-rate">{move || {
                        if health.with(Option::is_none) {
                            "–".to_string()
                        } else if counter_missing() {
                            tr!(i18n, network.not_reported).to_string()
                        } else {
                            match rate() {
                                Some(r) => format::rate(r, tr!(i18n, units.tasks)),
                                None => tr!(i18n, network.measuring).to_string(),
                            }
                        }
                    }}</dd>
                </div>
                <div>
                    <dt>{tr!(i18n, network.verified_total)}</dt>
                    <dd data-testid="network-verified-total">{move || health.with(|h| h.as_ref().and_then(|h| h.tasks_verified_total).map(format::count).unwrap_or_else(|| "–".into()))}</dd>
                </div>
            </dl>
            {move || counter_missing().then(|| view! {
                <p class="notice info" role="status" data-testid="network-rate-unsupported">
                    {tr!(i18n, network.counter_missing)}
                </p>
            })}
            <p class="hint relay-line" data-testid="network-relay">{move || health.with(|h| h.as_ref().map(|h| {
                let pay = match &h.escrow {
                    Some(e) => format::fill(
                        tr!(i18n, network.settles),
                        &[("denom", &e.denom), ("backend", &e.backend), ("fee", &fee(e.relay_fee_bps))],
                    ),
                    None => tr!(i18n, network.unpaid).to_string(),
                };
                format::fill(tr!(i18n, network.relay_line), &[("version", &h.version), ("status", &h.status), ("pay", &pay)])
            }).unwrap_or_default())}</p>

            <div class="grid two">
                <section class="card" aria-labelledby="workers-chart-heading">
                    <h2 id="workers-chart-heading">{tr!(i18n, network.workers_online)}</h2>
                    <LineChart
                        series=workers_series
                        x_domain=domain
                        x_label=minutes_label
                        caption=Signal::derive(move || format::fill(
                            tr!(i18n, network.workers_caption),
                            &[("minutes", &format!("{window_minutes:.0}")), ("seconds", &(HEALTH_POLL_MS / 1000).to_string())],
                        ))
                        empty_text=tr!(i18n, network.first_reading)
                        testid="network-workers-chart"
                        integer=true
                    />
                </section>
                <section class="card" aria-labelledby="rate-chart-heading">
                    <h2 id="rate-chart-heading">{tr!(i18n, network.rate_heading)}</h2>
                    <LineChart
                        series=rate_series
                        x_domain=domain
                        x_label=minutes_label
                        caption=Signal::derive(move || tr!(i18n, network.rate_caption).to_string())
                        empty_text=tr!(i18n, network.two_readings)
                        testid="network-chart"
                        class="rate"
                    />
                </section>
            </div>
            {move || (seeded.get() > 0).then(|| view! {
                <p class="hint" data-testid="network-history-seeded" data-samples=seeded.get().to_string()>
                    {format::fill(tr!(i18n, network.seeded), &[("n", &format::count(seeded.get() as u64))])}
                </p>
            })}

            <section class="card" aria-labelledby="groups-heading">
                <h2 id="groups-heading">{tr!(i18n, network.groups_heading)}</h2>
                <Notice text=Signal::derive(move || workers_problem.get()) tone=Tone::Warning testid="network-workers-error"/>
                <div data-testid="network-groups" aria-busy=move || workers.with(Option::is_none).to_string()>
                    {move || match groups.get() {
                        None => view! { <p class="loading">{tr!(i18n, network.loading_workers)}</p> }.into_any(),
                        Some(groups) if groups.is_empty() => view! {
                            <p class="empty" data-testid="network-groups-empty">{tr!(i18n, network.no_workers)}</p>
                        }.into_any(),
                        Some(groups) => view! {
                            <ul class="groups">
                                {groups.into_iter().map(|g| view! {
                                    <li class="group" data-testid="network-group" data-backend=g.backend.clone()>
                                        <div class="group-head">
                                            <strong>{if g.backend.is_empty() { tr!(i18n, network.connecting).to_string() } else { lang::backend_label(i18n, &g.backend) }}</strong>
                                            <span>{format::fill(tr!(i18n, network.online_count), &[("n", &format::count(g.workers as u64))])}</span>
                                        </div>
                                        <ul class="adapters">
                                            {g.adapters.iter().map(|(name, n)| view! {
                                                <li><span>{name.clone()}</span><span class="count">{n.to_string()}</span></li>
                                            }).collect_view()}
                                        </ul>
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }}
                </div>
            </section>

            <section class="card" aria-labelledby="relays-heading">
                <h2 id="relays-heading">{tr!(i18n, network.relays)}</h2>
                <p class="hint" data-testid="network-current-relay">
                    {
                        let (current, own) = (current.clone(), own.clone());
                        move || if current == own {
                            format::fill(tr!(i18n, network.using_own), &[("relay", &current)])
                        } else {
                            format::fill(tr!(i18n, network.using_picked), &[("relay", &current), ("own", &own)])
                        }
                    }
                </p>
                {(current != own).then(|| view! {
                    <button class="button" data-testid="network-relay-reset" on:click=move |_| choose(None)>{tr!(i18n, network.use_own)}</button>
                })}
                {move || {
                    let expected = browser::relay_deployment()?;
                    let named = health.with(|h| h.as_ref().and_then(|h| h.escrow.as_ref()).map(|e| (e.chain_id.clone(), e.contract.clone())))?;
                    (named != (expected.chain_id.clone(), expected.contract.clone())).then(|| view! {
                        <p class="notice warning" role="alert" data-testid="network-relay-mismatch">
                            {format::fill(
                                tr!(i18n, network.mismatch),
                                &[("contract", &named.1), ("chain", &named.0), ("expected_contract", &expected.contract), ("expected_chain", &expected.chain_id)],
                            )}
                        </p>
                    })
                }}
                <Notice text=Signal::derive(move || relays_problem.get()) tone=Tone::Warning testid="network-relays-error"/>
                <div class="table-wrap" tabindex="0" role="region" aria-labelledby="relays-heading">
                    <table class="relays" data-testid="network-relays">
                        <thead>
                            <tr>
                                <th scope="col">{tr!(i18n, network.col_relay)}</th>
                                <th scope="col">{tr!(i18n, network.col_fee)}</th>
                                <th scope="col">{tr!(i18n, network.col_jobs)}</th>
                                <th scope="col">{tr!(i18n, network.col_tasks_paid)}</th>
                                <th scope="col">{tr!(i18n, network.col_slashed)}</th>
                                <th scope="col" aria-label=tr!(i18n, network.col_choose)></th>
                            </tr>
                        </thead>
                        <tbody>
                            {move || relays.get().map(|list| {
                                let this = list.this_relay.clone().unwrap_or_default();
                                list.relays.into_iter().map(|r| {
                                    let endpoint = r.endpoint.trim_end_matches('/').to_string();
                                    let serving = r.address == this;
                                    let usable = browser::reachable_from_here(&endpoint);
                                    let shown = if endpoint.is_empty() { tr!(i18n, network.no_endpoint).to_string() } else { endpoint.clone() };
                                    let status = if !r.active {
                                        tr!(i18n, network.not_active)
                                    } else if serving {
                                        tr!(i18n, network.answering)
                                    } else if !usable {
                                        tr!(i18n, network.unreachable_here)
                                    } else {
                                        ""
                                    };
                                    let pick = endpoint.clone();
                                    view! {
                                        <tr data-testid="network-relay-row">
                                            <td><span class="mono">{shown}</span><br/><span class="hint mono" title=r.address.clone()>{format::short_key(&r.address)}</span>" "<span class="hint">{status}</span></td>
                                            <td>{fee(r.fee_bps)}</td>
                                            <td>{format::count(r.jobs_opened)}</td>
                                            <td>{format::count(r.tasks_paid)}</td>
                                            <td>{format::count(r.workers_slashed)}</td>
                                            <td>{(!serving && usable && r.active).then(|| view! {
                                                <button class="button" data-testid="network-relay-use" on:click=move |_| choose(Some(pick.clone()))>{tr!(i18n, network.use_relay)}</button>
                                            })}</td>
                                        </tr>
                                    }
                                }).collect_view()
                            })}
                        </tbody>
                    </table>
                </div>
            </section>

            <section class="card" aria-labelledby="list-heading">
                <h2 id="list-heading">{tr!(i18n, network.workers)}</h2>
                // Scrolls sideways on a phone: reachable and named for the keyboard and screen readers.
                <div class="table-wrap" tabindex="0" role="region" aria-labelledby="list-heading">
                    <table class="workers" data-testid="network-workers">
                        <thead>
                            <tr>
                                <th scope="col">{tr!(i18n, network.col_key)}</th>
                                <th scope="col">{tr!(i18n, network.col_backend)}</th>
                                <th scope="col">{tr!(i18n, network.col_adapter)}</th>
                                <th scope="col">{tr!(i18n, network.col_verified)}</th>
                                <th scope="col">{tr!(i18n, network.col_rejected)}</th>
                                <th scope="col">{tr!(i18n, network.col_duty_cycle)}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {move || workers.get().unwrap_or_default().into_iter().filter(|w| w.online).map(|w| {
                                let (backend, adapter, duty) = match &w.capabilities {
                                    Some(c) => (lang::backend_label(i18n, c.backend.as_str()), adapter_label_in(&c.adapter, &adapter_words), format::percent(f64::from(c.duty_cycle))),
                                    None => ("–".to_string(), "–".to_string(), "–".to_string()),
                                };
                                view! {
                                    <tr data-testid="network-worker-row">
                                        <td class="mono" title=w.key.to_string()>{format::short_key(&w.key.to_string())}</td>
                                        <td>{backend}</td>
                                        <td>{adapter}</td>
                                        <td>{format::count(w.replicas_accepted)}</td>
                                        <td>{format::count(w.replicas_rejected)}</td>
                                        <td>{duty}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </section>
        </section>
    }
}

fn problem_text(i18n: I18n, what: &str, e: &Error) -> String {
    match e {
        Error::Offline => format::fill(tr!(i18n, network.offline_problem), &[("what", what)]),
        _ => format::fill(tr!(i18n, network.read_problem), &[("what", what), ("error", &lang::error_text(i18n, e))]),
    }
}

/// A fee in basis points as a percentage with two decimals (`2.50 %`).
fn fee(bps: u16) -> String {
    format::fill(&format::percent_template(), &[("n", &format::fixed(f64::from(bps) / 100.0, 2))])
}
