//! The job's overview: state, progress, money, timing and its settings.

use super::*;

#[component]
pub(super) fn Overview(data: JobData) -> impl IntoView {
    let get =
        move |read: fn(&JobSummary) -> u32| Signal::derive(move || data.summary.with(|s| s.as_ref().map_or(0, read)));
    let (verified, failed, total) = (get(|s| s.tasks_verified), get(|s| s.tasks_failed), get(|s| s.tasks_total));
    let state =
        move || data.summary.with(|s| s.as_ref().map(|s| state_label(s.state)).unwrap_or(("running", "Running")));
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
                let mut text = format!(
                    "Deposit {}; paid to workers {}; relay fee {}",
                    format::amount(&e.deposit, &e.denom),
                    format::amount(&e.paid_to_workers, &e.denom),
                    format::amount(&e.paid_to_relay, &e.denom)
                );
                if let Some(refunded) = &e.refunded {
                    text.push_str(&format!("; refunded {}", format::amount(refunded, &e.denom)));
                }
                text.push_str(&format!(" ({} tasks settled).", e.settled_tasks));
                Some(text)
            }
            Some(Err(Error::Unsupported { .. })) => None,
            Some(Err(e)) if e.is_not_found() => {
                Some("No money is held for this job: it is free, or this relay runs jobs unpaid.".to_string())
            }
            Some(Err(e)) => Some(format!("Payment details unavailable: {e}")),
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
            if n > 0 { format!(", {n} waiting for the tasks they read") } else { String::new() }
        })
    };
    let link = move || {
        data.link.with(|l| match l {
            Some(Link::Live) => ("live", "Live".to_string()),
            Some(Link::Reconnecting(why)) => ("reconnecting", format!("Reconnecting ({why})")),
            Some(Link::Finished) | None => ("idle", String::new()),
        })
    };
    view! {
        <section class="card overview" aria-labelledby="overview-heading">
            <div class="card-head">
                <h2 id="overview-heading">"Progress"</h2>
                <span class=move || format!("badge {}", state().0) data-testid="job-state" data-state=move || state().0>{move || state().1}</span>
                <span class=move || format!("link-state {}", link().0) data-testid="job-link-state">{move || link().1}</span>
            </div>
            <ProgressBar verified failed total label=Signal::derive(move || format!("Job {id}")) job_id=id.0/>
            <dl class="facts">
                <dt>"Tasks"</dt>
                <dd data-testid="job-counts">{move || {
                    let failed = failed.get();
                    let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
                    format!("{} of {} verified{failed}{}", verified.get(), total.get(), waiting())
                }}</dd>
                <dt>"Kernel"</dt>
                <dd class="mono">{move || data.summary.with(|s| s.as_ref().map(|s| s.kernel.clone()).unwrap_or_default())}</dd>
                <dt>"Rules"</dt>
                <dd>{move || data.spec.with(|s| s.as_ref().map(|s| {
                    let (expected, worst) = job_form::cost(s);
                    let price = if s.price_per_replica == 0 {
                        "free".to_string()
                    } else {
                        format!(
                            "{} micro-units per replica (about {}, at most {} in all)",
                            format::count(s.price_per_replica), format::thousands(expected), format::thousands(worst)
                        )
                    };
                    format!(
                        "{} replica{} per task, quorum {}, up to {}; {price}",
                        s.replicas, if s.replicas == 1 { "" } else { "s" }, s.quorum, s.max_replicas
                    )
                }).unwrap_or_default())}</dd>
                <dt>"Time"</dt>
                <dd data-testid="job-elapsed">{elapsed}</dd>
                <dt>"Client"</dt>
                <dd class="mono">{move || data.summary.with(|s| s.as_ref().map(|s| format::short_key(&s.client.to_hex())).unwrap_or_default())}</dd>
            </dl>
            {move || money().map(|m| view! { <p class="hint" data-testid="job-escrow">{m}</p> })}
            {move || data.summary.with(|s| s.as_ref().and_then(|s| s.failure.clone())).map(|f| view! {
                <p class="notice error" role="alert" data-testid="job-failure">{format!("The job failed: {f}")}</p>
            })}
        </section>
    }
}
