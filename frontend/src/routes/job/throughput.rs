//! Verified tasks over time, as a chart.

use super::*;

#[component]
pub(super) fn Throughput(data: JobData) -> impl IntoView {
    let i18n = use_i18n();
    let now = RwSignal::new(browser::now_ms());
    let tick = set_interval_with_handle(move || now.set(browser::now_ms()), std::time::Duration::from_secs(2)).ok();
    on_cleanup(move || {
        if let Some(t) = tick {
            t.clear();
        }
    });
    let series = Signal::derive(move || {
        data.progress.with(|p| {
            let points = p.points();
            if p.joined_late && points.len() >= 2 {
                vec![
                    Series { points: points[..2].to_vec(), dashed: true },
                    Series { points: points[1..].to_vec(), dashed: false },
                ]
            } else {
                vec![Series { points: points.to_vec(), dashed: false }]
            }
        })
    });
    let domain = Signal::derive(move || {
        data.summary.with(|s| {
            s.as_ref().map(|s| {
                let end = s.finished_at_ms.unwrap_or_else(|| now.get());
                let secs = end.saturating_sub(s.created_at_ms) as f64 / 1000.0;
                let last = data.progress.with(|p| p.points().last().map_or(0.0, |p| p.0));
                (0.0, secs.max(last).max(1.0))
            })
        })
    });
    let caption = Signal::derive(move || {
        let rate = data.progress.with(Progress::average_rate);
        let late = data.progress.with(|p| p.joined_late);
        let mut text = match rate {
            Some(r) => {
                format::fill(tr!(i18n, throughput.caption_rate), &[("rate", &format::rate(r, tr!(i18n, units.tasks)))])
            }
            None => tr!(i18n, throughput.caption).to_string(),
        };
        if late {
            // The sentence brings its own separator: a space in English, none after "。".
            text.push_str(tr!(i18n, throughput.dashed));
        }
        text
    });
    view! {
        <section class="card" aria-labelledby="throughput-heading">
            <h2 id="throughput-heading">{tr!(i18n, throughput.heading)}</h2>
            <LineChart
                series
                x_domain=domain
                x_label=Callback::new(|s: f64| format::duration_ms((s * 1000.0).round() as u64))
                caption
                empty_text=tr!(i18n, throughput.empty)
                testid="throughput-chart"
            />
        </section>
    }
}
