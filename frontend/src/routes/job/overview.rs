//! The job's overview: state, progress, money, timing and its settings.

use super::*;

#[component]
pub(super) fn Overview(data: JobData) -> impl IntoView {
    let i18n = use_i18n();
    let get =
        move |read: fn(&JobSummary) -> u32| Signal::derive(move || data.summary.with(|s| s.as_ref().map_or(0, read)));
    let (verified, failed, total) = (get(|s| s.tasks_verified), get(|s| s.tasks_failed), get(|s| s.tasks_total));
    let state = move || data.summary.with(|s| state_label(i18n, s.as_ref().map_or(JobState::Running, |s| s.state)));
    let now = RwSignal::new(browser::now_ms());
    let tick = set_interval_with_handle(move || now.set(browser::now_ms()), std::time::Duration::from_secs(1)).ok();
    on_cleanup(move || {
        if let Some(t) = tick {
            t.clear();
        }
    });
    let elapsed = move || {
        data.summary.with(|s| {
            s.as_ref().map(|s| {
                let end = s.finished_at_ms.unwrap_or_else(|| now.get());
                format::duration_ms(end.saturating_sub(s.created_at_ms))
            })
        })
    };
    let escrow: RwSignal<Option<Result<JobEscrow, Error>>> = RwSignal::new(None);
    let id = data.id;
    // Settlement runs in batches after tasks are verified: keep the money line current (an older
    // relay without the endpoint, or a job it forgot, ends the loop).
    poll::into_signal(
        ESCROW_REFRESH_MS,
        escrow,
        move || Some(api::job_escrow(id)),
        |r| matches!(r, Err(Error::Unsupported { .. })) || r.as_ref().is_err_and(Error::is_not_found),
    );
    let money = move || {
        escrow.with(|e| match e {
            Some(Ok(e)) => {
                let amount = |a: &str| format::amount(a, &e.denom);
                let refunded = e
                    .refunded
                    .as_ref()
                    .map(|r| format::fill(tr!(i18n, job.money_refunded), &[("amount", &amount(r))]))
                    .unwrap_or_default();
                Some(format::fill(
                    tr!(i18n, job.money),
                    &[
                        ("deposit", &amount(&e.deposit)),
                        ("workers", &amount(&e.paid_to_workers)),
                        ("relay", &amount(&e.paid_to_relay)),
                        ("refunded", &refunded),
                        ("settled", &format::count(u64::from(e.settled_tasks))),
                    ],
                ))
            }
            Some(Err(Error::Unsupported { .. })) => None,
            Some(Err(e)) if e.is_not_found() => Some(tr!(i18n, job.money_none).to_string()),
            Some(Err(e)) => {
                Some(format::fill(tr!(i18n, job.money_unavailable), &[("error", &lang::error_text(i18n, e))]))
            }
            None => None,
        })
    };
    // A job whose tasks read each other's outputs: how many wait for an input.
    let waiting = move || {
        data.spec.with(|s| {
            let Some(s) = s.as_ref().filter(|s| s.has_dependencies()) else { return String::new() };
            let state = |t: u32| data.cells.with(|c| c.get(t as usize).map(|c| c.with(|c| c.state)));
            let n = s.waiting_for_inputs(
                |t| matches!(state(t), Some(TaskState::Verified | TaskState::Failed)),
                |t| state(t) == Some(TaskState::Verified),
            );
            if n > 0 { format::fill(tr!(i18n, job.waiting), &[("n", &format::count(n as u64))]) } else { String::new() }
        })
    };
    let link = move || {
        data.link.with(|l| match l {
            Some(Link::Live) => ("live", tr!(i18n, job.live).to_string()),
            Some(Link::Reconnecting(why)) => {
                ("reconnecting", format::fill(tr!(i18n, job.reconnecting), &[("why", why)]))
            }
            Some(Link::Finished) | None => ("idle", String::new()),
        })
    };
    view! {
        <section class="card overview" aria-labelledby="overview-heading">
            <div class="card-head">
                <h2 id="overview-heading">{tr!(i18n, job.progress)}</h2>
                <span class=move || format!("badge {}", state().0) data-testid="job-state" data-state=move || state().0>{move || state().1}</span>
                <span class=move || format!("link-state {}", link().0) data-testid="job-link-state">{move || link().1}</span>
            </div>
            <ProgressBar verified failed total label=Signal::derive(move || job_title(i18n, id.0, None)) job_id=id.0/>
            <dl class="facts">
                <dt>{tr!(i18n, job.tasks)}</dt>
                <dd data-testid="job-counts">{move || {
                    let failed = failed.get();
                    let failed = if failed > 0 {
                        format::fill(tr!(i18n, job.failed_suffix), &[("n", &format::count(u64::from(failed)))])
                    } else {
                        String::new()
                    };
                    format::fill(
                        tr!(i18n, job.counts),
                        &[
                            ("verified", &format::count(u64::from(verified.get()))),
                            ("total", &format::count(u64::from(total.get()))),
                            ("failed", &failed),
                            ("waiting", &waiting()),
                        ],
                    )
                }}</dd>
                <dt>{tr!(i18n, dashboard.kernel)}</dt>
                <dd class="mono">{move || data.summary.with(|s| s.as_ref().map(|s| s.kernel.clone()).unwrap_or_default())}</dd>
                <dt>{tr!(i18n, job.rules)}</dt>
                <dd>{move || data.spec.with(|s| s.as_ref().map(|s| {
                    let (expected, worst) = job_form::cost(s);
                    let price = if s.price_per_replica == 0 {
                        tr!(i18n, job.free).to_string()
                    } else {
                        format::fill(
                            tr!(i18n, job.price),
                            &[
                                ("price", &format::count(s.price_per_replica)),
                                ("expected", &format::thousands(expected)),
                                ("worst", &format::thousands(worst)),
                            ],
                        )
                    };
                    let replicas = if s.replicas == 1 { tr!(i18n, job.rules_one) } else { tr!(i18n, job.rules_many) };
                    format::fill(
                        replicas,
                        &[
                            ("replicas", &s.replicas.to_string()),
                            ("quorum", &s.quorum.to_string()),
                            ("max", &s.max_replicas.to_string()),
                            ("price", &price),
                        ],
                    )
                }).unwrap_or_default())}</dd>
                <dt>{tr!(i18n, job.time)}</dt>
                <dd data-testid="job-elapsed" title=move || data.summary.with(|s| s.as_ref().map(|s| format::fill(tr!(i18n, job.posted_at), &[("when", &lang::date_time(s.created_at_ms))])))>{elapsed}</dd>
                <dt>{tr!(i18n, job.client)}</dt>
                <dd class="mono">{move || data.summary.with(|s| s.as_ref().map(|s| format::short_key(&s.client.to_hex())).unwrap_or_default())}</dd>
            </dl>
            {move || money().map(|m| view! { <p class="hint" data-testid="job-escrow">{m}</p> })}
            {move || data.summary.with(|s| s.as_ref().and_then(|s| s.failure.clone())).map(|f| view! {
                <p class="notice error" role="alert" data-testid="job-failure">{format::fill(tr!(i18n, job.failed), &[("reason", &f)])}</p>
            })}
        </section>
    }
}
