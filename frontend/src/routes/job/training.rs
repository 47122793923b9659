//! A training job's curves: each round's loss and training accuracy, read from the round's
//! verified gradient sum as soon as it is verified, and the trained weights to download once the
//! last step is verified. Shown only for a job laid out as `starling_kernels::train` lays one out.

use super::*;
use starling_web_worker::kernels::train::{self, Layout};
use std::collections::HashSet;

#[component]
pub(super) fn Training(data: JobData) -> impl IntoView {
    let layout = Memo::new(move |_| data.spec.with(|s| s.as_ref().and_then(train::layout_of)));
    move || layout.get().map(|layout| view! { <Curves data layout/> })
}

/// A tick's label: rounds are whole numbers, so a tick between two rounds has none.
fn round_label(i18n: I18n, r: f64) -> String {
    if (r - r.round()).abs() < 1e-6 {
        format::fill(tr!(i18n, training.round), &[("n", &format!("{r:.0}"))])
    } else {
        String::new()
    }
}

#[component]
fn Curves(data: JobData, layout: Layout) -> impl IntoView {
    let i18n = use_i18n();
    let rounds = layout.rounds.len();
    // Each round's (mean loss, training accuracy) once read.
    let figures: RwSignal<Vec<Option<(f64, f64)>>> = RwSignal::new(vec![None; rounds]);
    let asked: StoredValue<HashSet<u32>, LocalStorage> = StoredValue::new_local(HashSet::new());
    let problem: RwSignal<Option<String>> = RwSignal::new(None);
    let verified = move |task: u32| {
        data.cells.with(|cells| cells.get(task as usize).is_some_and(|c| c.with(|c| c.state == TaskState::Verified)))
    };
    let sums: Vec<u32> = layout.rounds.iter().map(|r| r.sum).collect();
    let (samples, numerics) = (layout.samples, layout.numerics);
    let id = data.id;
    Effect::new(move |_| {
        for (round, &sum) in sums.iter().enumerate() {
            if !verified(sum) || !asked.try_update_value(|a| a.insert(sum)).unwrap_or(false) {
                continue;
            }
            leptos::task::spawn_local(async move {
                match api::task_output(id, sum).await {
                    Ok(bytes) => {
                        let line = train::round_figures(&bytes, samples, numerics);
                        let _ = figures.try_update(|f| f[round] = line);
                    }
                    Err(e) => {
                        let _ = problem.try_set(Some(format::fill(
                            tr!(i18n, training.read_failed),
                            &[("n", &(round + 1).to_string()), ("error", &lang::error_text(i18n, &e))],
                        )));
                        asked.try_update_value(|a| a.remove(&sum));
                    }
                }
            });
        }
    });
    let points = move |pick: fn((f64, f64)) -> f64| {
        Signal::derive(move || {
            figures.with(|f| {
                let points: Vec<(f64, f64)> = f
                    .iter()
                    .enumerate()
                    .filter_map(|(r, v)| v.map(|v| ((r + 1) as f64, pick(v))))
                    .filter(|p| p.1.is_finite())
                    .collect();
                vec![Series { points, dashed: false }]
            })
        })
    };
    let domain = Signal::derive(move || Some((1.0, rounds.max(2) as f64)));
    let latest = move || {
        figures.with(|f| {
            let done = f.iter().filter(|v| v.is_some()).count();
            match f.iter().rev().flatten().next() {
                Some((loss, acc)) if acc.is_nan() => format::fill(
                    tr!(i18n, training.status_loss),
                    &[("done", &done.to_string()), ("rounds", &rounds.to_string()), ("loss", &format::fixed(*loss, 4))],
                ),
                Some((loss, acc)) => format::fill(
                    tr!(i18n, training.status_accuracy),
                    &[
                        ("done", &done.to_string()),
                        ("rounds", &rounds.to_string()),
                        ("loss", &format::fixed(*loss, 4)),
                        ("accuracy", &format::fixed(acc * 100.0, 1)),
                    ],
                ),
                None => format::fill(tr!(i18n, training.status_none), &[("rounds", &rounds.to_string())]),
            }
        })
    };
    let last = layout.last_step();
    let weights_ready = move || last.is_some_and(verified);
    view! {
        <section class="card" aria-labelledby="training-heading" data-testid="training">
            <h2 id="training-heading">{tr!(i18n, training.heading)}</h2>
            <p data-testid="training-status">{latest}</p>
            <div class="chart-pair">
                <LineChart
                    series=points(|(loss, _)| loss)
                    x_domain=domain
                    x_label=Callback::new(move |r| round_label(i18n, r))
                    caption=Signal::derive(move || tr!(i18n, training.loss_caption).to_string())
                    empty_text=tr!(i18n, training.empty)
                    testid="training-loss-chart"
                />
                <LineChart
                    series=points(|(_, acc)| acc * 100.0)
                    x_domain=domain
                    x_label=Callback::new(move |r| round_label(i18n, r))
                    caption=Signal::derive(move || tr!(i18n, training.accuracy_caption).to_string())
                    empty_text=tr!(i18n, training.empty)
                    testid="training-accuracy-chart"
                />
            </div>
            <Notice text=Signal::derive(move || problem.get()) tone=Tone::Error testid="training-error"/>
            {move || weights_ready().then(|| {
                let step = last.unwrap_or_default();
                view! {
                    <p><a href=api::task_output_path(id, step) download=format!("job-{}-weights.bin", id.0) data-testid="training-weights">
                        {tr!(i18n, training.download)}
                    </a>" "{tr!(i18n, training.weights_format)}</p>
                }
            })}
        </section>
    }
}
