//! An SVG line chart drawn from [`crate::chart`] geometry at its on-screen width (so labels keep
//! their size on phones and desktops). Its height is fixed and it keeps its size whether it has
//! data or not, so nothing moves when the first points arrive.

use crate::browser;
use crate::chart::{self, Frame};
use crate::format;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// A window `resize` listener that is removed when dropped (with the chart's owner).
struct ResizeListener(Closure<dyn FnMut(web_sys::Event)>);

impl Drop for ResizeListener {
    fn drop(&mut self) {
        let _ = browser::window().remove_event_listener_with_callback("resize", self.0.as_ref().unchecked_ref());
    }
}

/// One line. A `dashed` series is drawn as an estimate (for example the part of a job's progress
/// before this page was watching).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

#[component]
pub fn LineChart(
    /// The lines, sharing one y axis from 0.
    #[prop(into)]
    series: Signal<Vec<Series>>,
    /// The x range; `None` fits the points.
    #[prop(into)]
    x_domain: Signal<Option<(f64, f64)>>,
    /// Labels under the x axis.
    #[prop(into)]
    x_label: Callback<f64, String>,
    /// What the chart shows, for screen readers and as its caption.
    caption: Signal<String>,
    /// Said instead of a chart while there is nothing to draw.
    empty_text: &'static str,
    testid: &'static str,
    #[prop(optional)] class: &'static str,
    /// The values are counts: whole-number y ticks.
    #[prop(optional)]
    integer: bool,
) -> impl IntoView {
    let figure = NodeRef::<leptos::html::Figure>::new();
    let width = RwSignal::new(Frame::STANDARD.width);
    let measure = move || {
        if let Some(el) = figure.get_untracked() {
            let w = f64::from(el.client_width());
            if w > 0.0 && (w - width.get_untracked()).abs() >= 1.0 {
                width.set(w);
            }
        }
    };
    Effect::new(move |_| {
        if figure.get().is_some() {
            measure();
        }
    });
    let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| measure());
    let _ = browser::window().add_event_listener_with_callback("resize", listener.as_ref().unchecked_ref());
    StoredValue::new_local(ResizeListener(listener));

    let layout = Memo::new(move |_| {
        let frame = Frame::with_width(width.get());
        let all = series.get();
        let points: Vec<(f64, f64)> = all.iter().flat_map(|s| s.points.iter().copied()).collect();
        let (y_max, y_values) = chart::y_axis(points.iter().map(|p| p.1).fold(0.0, f64::max), 4, integer);
        let domain = x_domain.get().or_else(|| {
            let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            let hi = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
            (lo.is_finite() && hi > lo).then_some((lo, hi))
        });
        let plots: Vec<(chart::Plot, bool)> =
            all.iter().map(|s| (chart::plot(&s.points, &frame, domain, Some(y_max)), s.dashed)).collect();
        let y_ticks: Vec<(f64, f64)> = y_values.into_iter().map(|v| (v, frame.y_of((0.0, y_max), v))).collect();
        let x_ticks = domain.map(|d| chart::x_ticks(&frame, d, frame.x_tick_count())).unwrap_or_default();
        (frame, plots, y_ticks, x_ticks, !points.is_empty())
    });
    view! {
        <figure class=format!("chart {class}") node_ref=figure>
            <svg
                viewBox=move || layout.with(|l| format!("0 0 {} {}", l.0.width, l.0.height))
                height=Frame::STANDARD.height
                role="img"
                aria-label=move || caption.get()
                data-testid=testid
            >
                {move || {
                    let (frame, plots, y_ticks, x_ticks, has_points) = layout.get();
                    let right = frame.width - frame.right;
                    let baseline = frame.bottom_y();
                    let grid = y_ticks
                        .into_iter()
                        .map(|(value, y)| {
                            view! {
                                <line class="gridline" x1=frame.left x2=right y1=y y2=y></line>
                                <text class="tick" x=frame.left - 6.0 y=y + 4.0 text-anchor="end">{format::tick(chart::tick_label(value))}</text>
                            }
                        })
                        .collect_view();
                    let xs = x_ticks
                        .into_iter()
                        .map(|(value, x)| {
                            view! { <text class="tick" x=x y=baseline + 18.0 text-anchor="middle">{x_label.run(value)}</text> }
                        })
                        .collect_view();
                    let lines = plots
                        .into_iter()
                        .map(|(plot, dashed)| {
                            let class = if dashed { "line dashed" } else { "line" };
                            view! {
                                <path class=if dashed { "area dashed" } else { "area" } d=plot.area></path>
                                <path class=class d=plot.line></path>
                            }
                        })
                        .collect_view();
                    let empty = (!has_points).then(|| {
                        view! {
                            <text class="empty" x=frame.left + frame.plot_width() / 2.0 y=frame.top + frame.plot_height() / 2.0 text-anchor="middle">
                                {empty_text}
                            </text>
                        }
                    });
                    view! { {grid} {xs} {lines} {empty} }
                }}
            </svg>
            <figcaption>{move || caption.get()}</figcaption>
        </figure>
    }
}
