//! The picture of a Mandelbrot render, painted from its verified outputs.

use super::*;

#[component]
pub(super) fn MandelbrotPreview(data: JobData) -> impl IntoView {
    let i18n = use_i18n();
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let size = Memo::new(move |_| data.spec.with(|s| s.as_ref().and_then(results::mandelbrot_size)));
    let too_big = move || size.get().is_some_and(|(w, h)| u64::from(w) * u64::from(h) > MAX_PREVIEW_PIXELS);
    let problem: RwSignal<Option<String>> = RwSignal::new(None);
    let fetching = RwSignal::new(false);

    // Fetch the outputs of newly verified tiles, a few at a time, as they come in.
    Effect::new(move |_| {
        let _ = data.summary.with(|s| s.as_ref().map(|s| s.tasks_verified));
        if too_big() || fetching.get_untracked() {
            return;
        }
        fetching.set(true);
        leptos::task::spawn_local(async move {
            loop {
                let indices = data.verified_indices();
                let before = data.outputs_version.get_untracked();
                if let Err(e) = data.fetch_outputs(&indices, |_, _| {}).await {
                    let _ = problem.try_set(Some(format::fill(
                        tr!(i18n, preview.tiles_failed),
                        &[("error", &lang::error_text(i18n, &e))],
                    )));
                    break;
                }
                // Stop when a pass found nothing new (events that arrived meanwhile were fetched).
                if data.outputs_version.try_get_untracked() == Some(before) {
                    break;
                }
            }
            let _ = fetching.try_set(false);
        });
    });

    // Redraw when outputs arrive.
    Effect::new(move |_| {
        let _ = data.outputs_version.get();
        let Some(canvas) = canvas.get() else { return };
        let Some((w, h)) = size.get() else { return };
        if too_big() {
            return;
        }
        let rgba = data
            .spec
            .with_untracked(|s| s.as_ref().map(|s| data.outputs.with_value(|o| results::mandelbrot_rgba(s, o))));
        match rgba {
            Some(Ok(rgba)) => {
                if let Err(e) = paint(&canvas, w, h, &rgba) {
                    problem.set(Some(format::fill(tr!(i18n, preview.draw_failed), &[("error", &e)])));
                }
            }
            Some(Err(e)) => {
                problem.set(Some(format::fill(tr!(i18n, preview.no_picture), &[("error", &e.to_string())])))
            }
            None => {}
        }
    });

    let save_png = move |_| {
        let Some(canvas) = canvas.get_untracked() else { return };
        match canvas.to_data_url_with_type("image/png") {
            Ok(url) => {
                if let Err(e) = browser::click_link(&url, &format!("job-{}-mandelbrot.png", data.id)) {
                    problem.set(Some(lang::error_text(i18n, &e)));
                }
            }
            Err(e) => {
                problem.set(Some(format::fill(tr!(i18n, preview.save_failed), &[("error", &browser::js_text(&e))])))
            }
        }
    };

    view! {
        <div class="preview">
            {move || match size.get() {
                Some((w, h)) if !too_big() => view! {
                    <canvas
                        node_ref=canvas
                        width=w.to_string()
                        height=h.to_string()
                        style:aspect-ratio=format!("{w} / {h}")
                        data-testid="mandelbrot-preview"
                        role="img"
                        aria-label=move || format::fill(
                            tr!(i18n, preview.label),
                            &[
                                ("width", &w.to_string()),
                                ("height", &h.to_string()),
                                ("verified", &format::count(u64::from(data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_verified))))),
                                ("total", &format::count(u64::from(data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_total))))),
                            ],
                        )
                    ></canvas>
                    <button type="button" data-testid="download-png" on:click=save_png>{tr!(i18n, preview.save)}</button>
                }.into_any(),
                Some((w, h)) => view! {
                    <p class="hint">{format::fill(tr!(i18n, preview.too_large), &[("width", &w.to_string()), ("height", &h.to_string())])}</p>
                }.into_any(),
                None => view! { <p class="hint">{tr!(i18n, preview.not_one_picture)}</p> }.into_any(),
            }}
            <Notice text=Signal::derive(move || problem.get()) tone=Tone::Warning testid="preview-error"/>
        </div>
    }
}

fn paint(canvas: &web_sys::HtmlCanvasElement, width: u32, height: u32, rgba: &[u8]) -> Result<(), String> {
    let context = canvas
        .get_context("2d")
        .map_err(|e| browser::js_text(&e))?
        .ok_or("no 2D context")?
        .dyn_into::<web_sys::CanvasRenderingContext2d>()
        .map_err(|_| "not a 2D context".to_string())?;
    let image = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(rgba), width, height)
        .map_err(|e| browser::js_text(&e))?;
    context.put_image_data(&image, 0.0, 0.0).map_err(|e| browser::js_text(&e))
}
