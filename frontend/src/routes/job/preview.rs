//! The picture of a Mandelbrot render, painted from its verified outputs.

use super::*;

#[component]
pub(super) fn MandelbrotPreview(data: JobData) -> impl IntoView {
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
                    let _ = problem.try_set(Some(format!("Some tiles could not be fetched: {e}")));
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
                    problem.set(Some(format!("The preview could not be drawn: {e}")));
                }
            }
            Some(Err(e)) => problem.set(Some(format!("The tiles do not make a picture: {e}"))),
            None => {}
        }
    });

    let save_png = move |_| {
        let Some(canvas) = canvas.get_untracked() else { return };
        match canvas.to_data_url_with_type("image/png") {
            Ok(url) => {
                if let Err(e) = browser::click_link(&url, &format!("job-{}-mandelbrot.png", data.id)) {
                    problem.set(Some(e.to_string()));
                }
            }
            Err(e) => problem.set(Some(format!("The picture could not be saved: {}", browser::js_text(&e)))),
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
                        aria-label=move || format!(
                            "Mandelbrot render, {w}×{h} pixels, {} of {} tiles verified",
                            data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_verified)),
                            data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_total))
                        )
                    ></canvas>
                    <button type="button" data-testid="download-png" on:click=save_png>"Save picture (PNG)"</button>
                }.into_any(),
                Some((w, h)) => view! {
                    <p class="hint">{format!("A {w}×{h} render is too large to preview here; download the outputs instead.")}</p>
                }.into_any(),
                None => view! { <p class="hint">"This job's tiles do not describe one picture."</p> }.into_any(),
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
