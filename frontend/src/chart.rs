//! Chart geometry for the SVG line charts: scales, "nice" axis ticks and path data. The page only
//! drops the strings this module computes into `<path d=…>` and `<text>` elements.

/// The drawing area inside an SVG `viewBox` of `width` x `height`, leaving margins for labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Frame {
    /// The frame every chart in the app uses: room for y labels on the left and x labels below.
    pub const STANDARD: Frame = Frame { width: 640.0, height: 200.0, left: 48.0, right: 14.0, top: 12.0, bottom: 28.0 };

    /// The standard frame `width` pixels wide: charts are drawn at their on-screen size so labels
    /// keep their font size on a phone and on a desktop.
    pub fn with_width(width: f64) -> Frame {
        let width = if width.is_finite() { width.max(160.0) } else { Frame::STANDARD.width };
        Frame { width, ..Frame::STANDARD }
    }

    /// How many x-axis intervals fit without labels running into each other.
    pub fn x_tick_count(&self) -> usize {
        ((self.plot_width() / 110.0) as usize).clamp(2, 8)
    }

    pub fn plot_width(&self) -> f64 {
        (self.width - self.left - self.right).max(1.0)
    }

    pub fn plot_height(&self) -> f64 {
        (self.height - self.top - self.bottom).max(1.0)
    }

    pub fn x_of(&self, domain: (f64, f64), x: f64) -> f64 {
        self.left + unit(domain, x) * self.plot_width()
    }

    /// Larger values are higher up: SVG's y grows downwards.
    pub fn y_of(&self, domain: (f64, f64), y: f64) -> f64 {
        self.top + (1.0 - unit(domain, y)) * self.plot_height()
    }

    pub fn bottom_y(&self) -> f64 {
        self.top + self.plot_height()
    }
}

/// `x` mapped from `domain` onto 0..=1 (clamped); a degenerate domain maps everything to 0.
fn unit((lo, hi): (f64, f64), x: f64) -> f64 {
    // Also catches NaN bounds, which compare false.
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !x.is_finite() {
        return 0.0;
    }
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// The smallest "nice" number (1, 2, 2.5 or 5 times a power of ten) at or above `value`; 1 for
/// anything not positive, so an all-zero series still gets an axis.
pub fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        let candidate = step * power;
        // Float noise in `power` must not push an exact value to the next step.
        if candidate >= value * (1.0 - 1e-12) {
            return candidate;
        }
    }
    10.0 * power
}

/// A y axis from 0 that holds `max`: its top and its ticks, about `target` intervals of a nice step
/// (whole numbers for counts, so an axis of workers never reads 0.25).
pub fn y_axis(max: f64, target: usize, integer: bool) -> (f64, Vec<f64>) {
    let target = target.max(1) as f64;
    let max = if max.is_finite() && max > 0.0 { max } else { 0.0 };
    let mut step = nice_ceiling(max / target);
    if integer {
        step = step.max(1.0).ceil();
    }
    let intervals = (max / step).ceil().max(1.0);
    let top = step * intervals;
    (top, (0..=intervals as usize).map(|i| step * i as f64).collect())
}

/// Evenly spaced ticks from 0 to `max` inclusive (`max` should come from [`nice_ceiling`]).
pub fn ticks(max: f64, count: usize) -> Vec<f64> {
    let count = count.max(1);
    (0..=count).map(|i| max * i as f64 / count as f64).collect()
}

/// A y-axis label: integers as integers, small values with the decimals they need.
pub fn tick_label(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    if (value - value.round()).abs() < 1e-9 && value.abs() < 1e15 {
        return format!("{}", value.round() as i64);
    }
    let digits = (2.0 - value.abs().log10().floor()).clamp(1.0, 6.0) as usize;
    let text = format!("{value:.digits$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Everything needed to draw one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// The line, as SVG path data (empty without points).
    pub line: String,
    /// The line closed down to the x axis, for a filled area under it.
    pub area: String,
    /// y-axis ticks: value and SVG y.
    pub y_ticks: Vec<(f64, f64)>,
    /// The x domain the points were drawn over.
    pub x_domain: (f64, f64),
    pub y_max: f64,
}

/// Lays out `points` (x, y) in `frame`: x over `x_domain` (or the points' own range), y from 0 to
/// a nice ceiling of the largest y (or `y_max` when given, so several series can share an axis).
pub fn plot(points: &[(f64, f64)], frame: &Frame, x_domain: Option<(f64, f64)>, y_max: Option<f64>) -> Plot {
    let x_domain = x_domain.unwrap_or_else(|| {
        let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) }
    });
    let y_max = y_max.unwrap_or_else(|| nice_ceiling(points.iter().map(|p| p.1).fold(0.0, f64::max)));
    let y_domain = (0.0, y_max);
    let mut line = String::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        let command = if i == 0 { 'M' } else { 'L' };
        line.push_str(&format!("{command}{:.1} {:.1} ", frame.x_of(x_domain, x), frame.y_of(y_domain, y)));
    }
    let line = line.trim_end().to_string();
    let area = match (points.first(), points.last()) {
        (Some(first), Some(last)) => format!(
            "{line} L{:.1} {:.1} L{:.1} {:.1} Z",
            frame.x_of(x_domain, last.0),
            frame.bottom_y(),
            frame.x_of(x_domain, first.0),
            frame.bottom_y()
        ),
        _ => String::new(),
    };
    let y_ticks = ticks(y_max, 4).into_iter().map(|v| (v, frame.y_of(y_domain, v))).collect();
    Plot { line, area, y_ticks, x_domain, y_max }
}

/// x-axis ticks over `domain` at multiples of a nice step, at most about `count` intervals:
/// value and SVG x.
pub fn x_ticks(frame: &Frame, domain: (f64, f64), count: usize) -> Vec<(f64, f64)> {
    let span = domain.1 - domain.0;
    if !(span.is_finite() && span > 0.0) {
        return Vec::new();
    }
    let step = nice_ceiling(span / count.max(1) as f64);
    let first = (domain.0 / step).ceil() as i64;
    let last = (domain.1 / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|i| {
            let v = i as f64 * step;
            // -0 and float noise print badly.
            let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
            (v, frame.x_of(domain, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        let cases = [
            (0.0, 1.0),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (0.7, 1.0),
            (1.0, 1.0),
            (1.2, 2.0),
            (2.2, 2.5),
            (3.0, 5.0),
            (7.3, 10.0),
            (10.0, 10.0),
            (23.0, 25.0),
            (0.013, 0.02),
            (4096.0, 5000.0),
        ];
        for (value, want) in cases {
            let got = nice_ceiling(value);
            assert!((got - want).abs() < 1e-9, "nice_ceiling({value}) = {got}, want {want}");
            if value > 0.0 {
                assert!(got >= value);
            }
        }
    }

    #[test]
    fn points_map_onto_the_frame_corners() {
        let frame = Frame { width: 110.0, height: 60.0, left: 10.0, right: 0.0, top: 0.0, bottom: 10.0 };
        let p = plot(&[(0.0, 0.0), (5.0, 5.0), (10.0, 10.0)], &frame, None, None);
        // x: 0 → left edge, 10 → right edge; y: 0 → bottom of the plot, 10 (the nice max) → top.
        assert_eq!(p.line, "M10.0 50.0 L60.0 25.0 L110.0 0.0");
        assert_eq!(p.area, "M10.0 50.0 L60.0 25.0 L110.0 0.0 L110.0 50.0 L10.0 50.0 Z");
        assert_eq!(p.y_max, 10.0);
        assert_eq!(p.y_ticks.first(), Some(&(0.0, 50.0)));
        assert_eq!(p.y_ticks.last(), Some(&(10.0, 0.0)));
    }

    #[test]
    fn shared_axis_and_fixed_domain_clamp() {
        let frame = Frame { width: 100.0, height: 100.0, left: 0.0, right: 0.0, top: 0.0, bottom: 0.0 };
        let p = plot(&[(-5.0, 40.0), (50.0, 10.0)], &frame, Some((0.0, 100.0)), Some(20.0));
        // Out-of-domain x and over-the-top y are clamped to the frame.
        assert_eq!(p.line, "M0.0 0.0 L50.0 50.0");
    }

    #[test]
    fn empty_and_single_point_series() {
        let frame = Frame::STANDARD;
        let empty = plot(&[], &frame, None, None);
        assert!(empty.line.is_empty() && empty.area.is_empty());
        assert_eq!(empty.y_max, 1.0);
        let single = plot(&[(3.0, 2.0)], &frame, None, None);
        assert!(single.line.starts_with('M'));
        assert!(!single.line.contains("NaN"));
    }

    #[test]
    fn frames_follow_the_screen_width() {
        let phone = Frame::with_width(320.0);
        assert_eq!(phone.width, 320.0);
        assert_eq!(phone.height, Frame::STANDARD.height);
        assert_eq!(phone.x_tick_count(), 2);
        assert_eq!(Frame::with_width(1000.0).x_tick_count(), 8);
        assert_eq!(Frame::with_width(10.0).width, 160.0);
        assert_eq!(Frame::with_width(f64::NAN).width, Frame::STANDARD.width);
    }

    #[test]
    fn labels() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(25.0), "25");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(0.005), "0.005");
        assert_eq!(tick_label(0.25), "0.25");
        let frame = Frame { width: 100.0, height: 10.0, left: 0.0, right: 0.0, top: 0.0, bottom: 0.0 };
        let xs = x_ticks(&frame, (0.0, 60.0), 2);
        assert_eq!(xs.len(), 2);
        assert_eq!(xs[0], (0.0, 0.0));
        assert_eq!(xs[1].0, 50.0);
        assert!((xs[1].1 - 500.0 / 6.0).abs() < 1e-9);
        // Ticks land on round values, not on the domain's odd ends.
        let values: Vec<f64> = x_ticks(&frame, (0.0, 3.3), 8).into_iter().map(|t| t.0).collect();
        assert_eq!(values, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        let values: Vec<f64> = x_ticks(&frame, (-10.0, 0.0), 5).into_iter().map(|t| t.0).collect();
        assert_eq!(values, vec![-10.0, -8.0, -6.0, -4.0, -2.0, 0.0]);
        assert!(x_ticks(&frame, (1.0, 1.0), 4).is_empty());
    }

    #[test]
    fn y_axes() {
        assert_eq!(y_axis(1.0, 4, true), (1.0, vec![0.0, 1.0]));
        assert_eq!(y_axis(0.0, 4, true), (1.0, vec![0.0, 1.0]));
        assert_eq!(y_axis(7.0, 4, true), (8.0, vec![0.0, 2.0, 4.0, 6.0, 8.0]));
        assert_eq!(y_axis(12.0, 4, false), (15.0, vec![0.0, 5.0, 10.0, 15.0]));
        let (top, ticks) = y_axis(0.3, 4, false);
        assert!((top - 0.3).abs() < 1e-9 && ticks.len() == 4, "{top} {ticks:?}");
    }
}
