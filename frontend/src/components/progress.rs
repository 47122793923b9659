//! A job's progress: verified and failed tasks out of the total, as one accessible bar.

use crate::format;
use crate::lang::{tr, use_i18n};
use leptos::prelude::*;

#[component]
pub fn ProgressBar(
    #[prop(into)] verified: Signal<u32>,
    #[prop(into)] failed: Signal<u32>,
    #[prop(into)] total: Signal<u32>,
    /// What the bar is for ("Job 12").
    #[prop(into)]
    label: Signal<String>,
    #[prop(optional)] job_id: Option<u64>,
) -> impl IntoView {
    let i18n = use_i18n();
    let share = move |n: u32| {
        let t = total.get();
        if t == 0 { 0.0 } else { f64::from(n.min(t)) * 100.0 / f64::from(t) }
    };
    view! {
        <div
            class="progress"
            role="progressbar"
            data-testid="job-progress"
            data-job-id=job_id.map(|id| id.to_string())
            aria-label=move || label.get()
            aria-valuemin="0"
            aria-valuemax=move || total.get().to_string()
            aria-valuenow=move || verified.get().to_string()
            aria-valuetext=move || {
                let (verified, total, failed) = (verified.get(), total.get(), failed.get());
                let n = |v: u32| format::count(u64::from(v));
                if failed > 0 {
                    format::fill(
                        tr!(i18n, progress.label_failed),
                        &[("verified", &n(verified)), ("total", &n(total)), ("failed", &n(failed))],
                    )
                } else {
                    format::fill(tr!(i18n, progress.label), &[("verified", &n(verified)), ("total", &n(total))])
                }
            }
        >
            <span class="progress-verified" style:width=move || format!("{:.2}%", share(verified.get()))></span>
            <span class="progress-failed" style:width=move || format!("{:.2}%", share(failed.get()))></span>
        </div>
    }
}
