//! An in-page CPU check of a matrix-multiply job's verified output.

use super::*;

#[component]
pub(super) fn MatmulCheck(data: JobData) -> impl IntoView {
    let i18n = use_i18n();
    let result: RwSignal<Option<Result<String, String>>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let work = Memo::new(move |_| data.spec.with(|s| s.as_ref().and_then(results::matmul_work)));
    let check = move |_| {
        busy.set(true);
        result.set(None);
        leptos::task::spawn_local(async move {
            let outcome = async {
                let (spec, a_hash, b_hash) = data
                    .spec
                    .with_untracked(|s| s.clone())
                    .and_then(|s| {
                        let inputs: Vec<_> = s.tasks.first()?.blobs().collect();
                        Some((s, *inputs.first()?, *inputs.get(1)?))
                    })
                    .ok_or_else(|| tr!(i18n, matmul.no_inputs).to_string())?;
                let fetch_failed = |name: &str, e: Error| {
                    format::fill(
                        tr!(i18n, matmul.fetch_failed),
                        &[("name", name), ("error", &lang::error_text(i18n, &e))],
                    )
                };
                let a = api::blob(&a_hash).await.map_err(|e| fetch_failed("A", e))?;
                let b = api::blob(&b_hash).await.map_err(|e| fetch_failed("B", e))?;
                let indices: Vec<u32> = (0..spec.tasks.len() as u32).collect();
                data.fetch_outputs(&indices, |_, _| {}).await.map_err(|e| {
                    format::fill(tr!(i18n, matmul.outputs_failed), &[("error", &lang::error_text(i18n, &e))])
                })?;
                let outputs = data.all_outputs().ok_or_else(|| tr!(i18n, matmul.missing_outputs).to_string())?;
                // Give the browser a frame to paint "Checking…" before the CPU work.
                browser::sleep(16).await;
                let max_error = results::matmul_max_error(&spec, &a, &b, &outputs)?;
                let ok = results::matmul_within_tolerance(&spec, max_error);
                let verdict = if ok { tr!(i18n, matmul.matches) } else { tr!(i18n, matmul.differs) };
                Ok::<String, String>(format::fill(
                    verdict,
                    &[("error", &format::decimal_mark(format!("{max_error:.2e}")))],
                ))
            }
            .await;
            let _ = result.try_set(Some(outcome));
            let _ = busy.try_set(false);
        });
    };
    view! {
        <div class="matmul-check">
            {move || match work.get() {
                Some(w) if w <= MAX_CHECK_WORK => view! {
                    <button type="button" data-testid="matmul-check" on:click=check disabled=move || busy.get()>
                        {move || if busy.get() { tr!(i18n, matmul.checking) } else { tr!(i18n, matmul.check) }}
                    </button>
                }.into_any(),
                Some(_) => view! { <p class="hint">{tr!(i18n, matmul.too_large)}</p> }.into_any(),
                None => view! { <span></span> }.into_any(),
            }}
            {move || result.get().map(|r| match r {
                Ok(text) => view! { <p class="result-summary" data-testid="matmul-check-result">{text}</p> }.into_any(),
                Err(text) => view! { <p class="notice error" role="alert" data-testid="matmul-check-result">{format::fill(tr!(i18n, matmul.failed), &[("error", &text)])}</p> }.into_any(),
            })}
        </div>
    }
}
