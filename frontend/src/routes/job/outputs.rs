//! The results section: each output, everything in one archive, and a readable summary.

use super::*;

#[component]
pub(super) fn Results(data: JobData) -> impl IntoView {
    let i18n = use_i18n();
    let id = data.id;
    let kernel = Memo::new(move |_| data.spec.with(|s| s.as_ref().and_then(results::builtin)));
    let done = Memo::new(move |_| data.summary.with(|s| s.as_ref().is_some_and(|s| s.state == JobState::Done)));
    let status: RwSignal<Option<String>> = RwSignal::new(None);
    let problem: RwSignal<Option<String>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let summary: RwSignal<Option<String>> = RwSignal::new(None);
    let total_output = Memo::new(move |_| {
        data.spec.with(|s| s.as_ref().map_or(0, |s| s.tasks.iter().map(|t| u64::from(t.output_size)).sum::<u64>()))
    });

    // A summary of a finished job, when its outputs are small enough to fetch on their own.
    Effect::new(move |_| {
        if !done.get()
            || kernel.get().is_none()
            || total_output.get() > AUTO_SUMMARY_BYTES
            || summary.with_untracked(Option::is_some)
        {
            return;
        }
        leptos::task::spawn_local(async move {
            let indices = data.verified_indices();
            if let Err(e) = data.fetch_outputs(&indices, |_, _| {}).await {
                let _ = problem.try_set(Some(format::fill(
                    tr!(i18n, results.summary_failed),
                    &[("error", &lang::error_text(i18n, &e))],
                )));
                return;
            }
            let Some(outputs) = data.all_outputs() else { return };
            let text = results::SummaryText {
                pi: tr!(i18n, results.summary_pi),
                nonce: tr!(i18n, results.summary_nonce),
                mandelbrot: tr!(i18n, results.summary_mandelbrot),
                matmul: tr!(i18n, results.summary_matmul),
            };
            let text = data
                .spec
                .try_with_untracked(|s| s.as_ref().and_then(|s| results::summary_in(s, &outputs, &text)))
                .flatten();
            let _ = summary.try_set(text);
        });
    });

    let download_all = move |_| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        problem.set(None);
        leptos::task::spawn_local(async move {
            let indices = data.verified_indices();
            let fetched = data
                .fetch_outputs(&indices, |n, total| {
                    let _ = status.try_set(Some(format::fill(
                        tr!(i18n, results.fetching),
                        &[("n", &format::count(n as u64)), ("total", &format::count(total as u64))],
                    )));
                })
                .await;
            if let Err(e) = fetched {
                let _ = problem
                    .try_set(Some(format::fill(tr!(i18n, results.stopped), &[("error", &lang::error_text(i18n, &e))])));
                let _ = busy.try_set(false);
                let _ = status.try_set(None);
                return;
            }
            let detail = api::job(id).await;
            let Some(mut files) = data.outputs.try_with_value(|outs| {
                outs.iter()
                    .enumerate()
                    .filter_map(|(i, o)| o.as_ref().map(|o| (results::output_name(id.0, i as u32), o.clone())))
                    .collect::<Vec<(String, Vec<u8>)>>()
            }) else {
                // The page is gone.
                return;
            };
            match detail {
                Ok(detail) => files.push((format!("job-{id}.json"), results::manifest(&detail).into_bytes())),
                Err(e) => {
                    let _ = problem.try_set(Some(format::fill(
                        tr!(i18n, results.no_manifest),
                        &[("file", &format!("job-{id}.json")), ("error", &lang::error_text(i18n, &e))],
                    )));
                }
            }
            let archive = results::tar(&files, browser::now_ms() / 1000);
            if let Err(e) = browser::download(&format!("job-{id}-outputs.tar"), &archive, "application/x-tar") {
                let _ = problem.try_set(Some(lang::error_text(i18n, &e)));
            }
            let _ = status.try_set(Some(format::fill(
                tr!(i18n, results.saved),
                &[
                    ("n", &format::count(files.len().saturating_sub(1) as u64)),
                    ("size", &format::bytes(archive.len() as u64)),
                ],
            )));
            let _ = busy.try_set(false);
        });
    };

    let verified_count = move || data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_verified));

    view! {
        <section class="card results" aria-labelledby="results-heading">
            <h2 id="results-heading">{tr!(i18n, results.heading)}</h2>
            {move || summary.get().map(|s| view! { <p class="result-summary" data-testid="job-result-summary">{s}</p> })}
            {move || (kernel.get() == Some(BuiltinKernel::Mandelbrot)).then(|| view! { <MandelbrotPreview data/> })}
            {move || (kernel.get() == Some(BuiltinKernel::MatmulF32) && done.get()).then(|| view! { <MatmulCheck data/> })}
            <div class="actions">
                <button type="button" data-testid="download-all" on:click=download_all disabled=move || busy.get() || verified_count() == 0>
                    {move || format::fill(tr!(i18n, results.download_all), &[("n", &format::count(u64::from(verified_count())))])}
                </button>
                <span class="step" role="status" data-testid="download-status">{move || status.get().unwrap_or_default()}</span>
            </div>
            <Notice text=Signal::derive(move || problem.get()) tone=Tone::Error testid="results-error"/>
            <p class="hint">{tr!(i18n, results.archive_hint)}</p>
            <details class="outputs">
                <summary>{tr!(i18n, results.one_by_one)}</summary>
                <ul class="output-links" data-testid="output-links">
                    {move || data.cells.get().into_iter().enumerate().map(|(i, cell)| {
                        let i = i as u32;
                        move || (cell.with(|c| c.state) == TaskState::Verified).then(|| view! {
                            <li><a href=api::task_output_path(id, i) download=results::output_name(id.0, i) data-testid="task-download">
                                {results::output_name(id.0, i)}
                            </a></li>
                        })
                    }).collect_view()}
                </ul>
            </details>
        </section>
    }
}
