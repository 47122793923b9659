//! Numbers as people read them: token amounts, rates, durations, sizes, percentages and keys.
//!
//! The functions are pure and read one [`Style`]: digit grouping, decimal mark and unit words for
//! the language being shown. The default style is the English one these functions always had
//! (thin-space grouping, `.`), which the native tests pin; in the browser, `lang` sets the style
//! of the chosen language from `Intl.NumberFormat` and the locale files when the language
//! changes, and every reactive view that formats a number is told to redraw.

use std::cell::RefCell;

/// How numbers and units read in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// Between groups of three digits (`1 234`, `1,234`, `1.234`).
    pub group: String,
    /// Before the fraction (`.` or `,`).
    pub decimal: String,
    /// `{n}%`-style template for percentages; `{n}` is the number.
    pub percent: String,
    pub ms: String,
    pub s: String,
    pub min: String,
    pub h: String,
    pub d: String,
    /// Appended to a rate's unit: per second, per minute (`/s`, `/min`).
    pub per_second: String,
    pub per_minute: String,
    /// `{time} ago`.
    pub ago: String,
    pub just_now: String,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            group: "\u{202f}".into(),
            decimal: ".".into(),
            percent: "{n}%".into(),
            ms: "ms".into(),
            s: "s".into(),
            min: "min".into(),
            h: "h".into(),
            d: "d".into(),
            per_second: "/s".into(),
            per_minute: "/min".into(),
            ago: "{time} ago".into(),
            just_now: "just now".into(),
        }
    }
}

thread_local! {
    static STYLE: RefCell<Style> = RefCell::new(Style::default());
}

/// Makes `style` the one every function here reads (the browser app calls this on a language
/// change).
pub fn set_style(style: Style) {
    STYLE.with(|s| *s.borrow_mut() = style);
    #[cfg(target_arch = "wasm32")]
    style_changed::notify();
}

fn with_style<T>(read: impl FnOnce(&Style) -> T) -> T {
    #[cfg(target_arch = "wasm32")]
    style_changed::track();
    STYLE.with(|s| read(&s.borrow()))
}

/// In the browser, a reactive trigger: views that format numbers subscribe to the style, so a
/// language change redraws them as it redraws their words.
#[cfg(target_arch = "wasm32")]
mod style_changed {
    use leptos::prelude::{ArcTrigger, Notify, Track};

    thread_local! {
        static TRIGGER: ArcTrigger = ArcTrigger::new();
    }

    pub fn notify() {
        TRIGGER.with(|t| t.notify());
    }

    pub fn track() {
        TRIGGER.with(|t| t.track());
    }
}

/// `template` with each `{name}` replaced by its value (the locale files' placeholders).
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Decimal places of a `u`-prefixed denomination (`ustar` is a millionth of a STAR), the unit job
/// prices are quoted in (micro-units).
pub const MICRO_DECIMALS: u32 = 6;

/// An amount in the smallest unit of `denom`, given as the decimal string the relay sends.
/// `u`-prefixed denominations show in whole units (`1500000 ustar` → `1.5 STAR`); others as the
/// integer with thousands separated. Text that is not a whole number is shown as it came.
pub fn amount(amount: &str, denom: &str) -> String {
    let Ok(value) = amount.trim().parse::<u128>() else {
        return format!("{} {}", amount.trim(), denom).trim().to_string();
    };
    match denom.strip_prefix('u').filter(|rest| !rest.is_empty()) {
        Some(unit) => format!("{} {}", decimal(value, MICRO_DECIMALS), unit.to_uppercase()),
        None if denom.is_empty() => thousands(value),
        None => format!("{} {denom}", thousands(value)),
    }
}

/// A job price in micro-units, as whole units with the fraction trimmed (`1500000` → `1.5`).
pub fn micro(value: u128) -> String {
    decimal(value, MICRO_DECIMALS)
}

/// `value / 10^decimals` with thousands separated and trailing zeros trimmed.
pub fn decimal(value: u128, decimals: u32) -> String {
    let scale = 10u128.pow(decimals);
    let (whole, frac) = (value / scale, value % scale);
    let whole = thousands(whole);
    if frac == 0 {
        return whole;
    }
    let frac = format!("{frac:0width$}", width = decimals as usize);
    with_style(|style| format!("{whole}{}{}", style.decimal, frac.trim_end_matches('0')))
}

/// `1234567` → `1 234 567` (grouped with the style's separator: a thin space by default).
pub fn thousands(value: u128) -> String {
    let group = with_style(|style| style.group.clone());
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(&group);
        }
        out.push(c);
    }
    out
}

/// The style's percentage template (`{n}%`), for percentages with decimals.
pub fn percent_template() -> String {
    with_style(|style| style.percent.clone())
}

/// A number already written with `.` as its decimal mark, in the style's mark (`0.5` → `0,5`).
pub fn decimal_mark(text: String) -> String {
    with_style(|style| if style.decimal == "." { text } else { text.replacen('.', &style.decimal, 1) })
}

/// A fractional number with `digits` decimals and the style's decimal mark (`1.23`, `1,23`).
pub fn fixed(value: f64, digits: usize) -> String {
    decimal_mark(format!("{value:.digits$}"))
}

/// A chart's axis label ([`crate::chart::tick_label`]) in the style: whole numbers grouped
/// (`12,000`), others with the style's decimal mark.
pub fn tick(label: String) -> String {
    match label.parse::<u64>() {
        Ok(whole) => count(whole),
        Err(_) => decimal_mark(label),
    }
}

/// A count with thousands separated.
pub fn count(value: u64) -> String {
    thousands(u128::from(value))
}

/// A rate in events per second, with a precision that suits its size.
pub fn rate(per_second: f64, unit: &str) -> String {
    let (per_s, per_min) = with_style(|style| (style.per_second.clone(), style.per_minute.clone()));
    if !per_second.is_finite() || per_second <= 0.0 {
        return format!("0 {unit}{per_s}");
    }
    if per_second < 0.01 {
        return format!("{} {unit}{per_min}", fixed(per_second * 60.0, 1));
    }
    let digits = if per_second >= 100.0 {
        0
    } else if per_second >= 10.0 {
        1
    } else {
        2
    };
    format!("{} {unit}{per_s}", fixed(per_second, digits))
}

/// A duration in milliseconds, two units at most (`3 h 12 min`, `45 s`, `820 ms`).
pub fn duration_ms(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    with_style(|u| match ms {
        0..S => format!("{ms} {}", u.ms),
        S..M => {
            let s = ms as f64 / S as f64;
            if s < 10.0 { format!("{} {}", fixed(s, 1), u.s) } else { format!("{} {}", ms / S, u.s) }
        }
        M..H => two_units(ms / M, &u.min, (ms % M) / S, &u.s),
        H..D => two_units(ms / H, &u.h, (ms % H) / M, &u.min),
        _ => two_units(ms / D, &u.d, (ms % D) / H, &u.h),
    })
}

fn two_units(major: u64, major_unit: &str, minor: u64, minor_unit: &str) -> String {
    if minor == 0 { format!("{major} {major_unit}") } else { format!("{major} {major_unit} {minor} {minor_unit}") }
}

/// How long ago `then_ms` was, seen at `now_ms` (`just now`, `5 s ago`, `3 min ago`).
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let elapsed = now_ms.saturating_sub(then_ms);
    if elapsed < 2000 {
        return with_style(|style| style.just_now.clone());
    }
    let text = duration_ms(elapsed - elapsed % 1000);
    with_style(|style| fill(&style.ago, &[("time", &text)]))
}

/// Bytes in binary units (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 { format!("{value:.0} {}", UNITS[unit]) } else { format!("{} {}", fixed(value, 1), UNITS[unit]) }
}

/// A fraction in 0..=1 as a whole percentage.
pub fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "–".to_string();
    }
    let n = format!("{:.0}", (fraction * 100.0).clamp(0.0, 100.0));
    with_style(|style| fill(&style.percent, &[("n", &n)]))
}

/// A long hex key shortened for display: the first and last 6 digits.
pub fn short_key(hex: &str) -> String {
    if hex.len() <= 14 || !hex.is_ascii() {
        return hex.to_string();
    }
    format!("{}…{}", &hex[..6], &hex[hex.len() - 6..])
}

/// A wall-clock time of day in UTC from Unix milliseconds (`14:03:07`), for chart labels and logs.
pub fn clock_utc(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        let cases = [
            ("1500000", "ustar", "1.5 STAR"),
            ("0", "ustar", "0 STAR"),
            ("1", "ustar", "0.000001 STAR"),
            ("1234567000000", "ustar", "1\u{202f}234\u{202f}567 STAR"),
            ("1234", "stake", "1\u{202f}234 stake"),
            ("1234", "", "1\u{202f}234"),
            ("12", "u", "12 u"),
            ("lots", "ustar", "lots ustar"),
            (
                "340282366920938463463374607431768211455",
                "ustar",
                "340\u{202f}282\u{202f}366\u{202f}920\u{202f}938\u{202f}463\u{202f}463\u{202f}374\u{202f}607\u{202f}431\u{202f}768.211455 STAR",
            ),
        ];
        for (value, denom, want) in cases {
            assert_eq!(amount(value, denom), want, "{value} {denom}");
        }
        assert_eq!(micro(2_500), "0.0025");
    }

    #[test]
    fn thousands_groups_from_the_right() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1\u{202f}000");
        assert_eq!(thousands(100_000), "100\u{202f}000");
        assert_eq!(thousands(1_000_000), "1\u{202f}000\u{202f}000");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(0.0, "tasks"), "0 tasks/s");
        assert_eq!(rate(f64::NAN, "tasks"), "0 tasks/s");
        assert_eq!(rate(0.005, "tasks"), "0.3 tasks/min");
        assert_eq!(rate(1.234, "tasks"), "1.23 tasks/s");
        assert_eq!(rate(12.34, "tasks"), "12.3 tasks/s");
        assert_eq!(rate(1234.5, "tasks"), "1234 tasks/s");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(820), "820 ms");
        assert_eq!(duration_ms(1500), "1.5 s");
        assert_eq!(duration_ms(45_000), "45 s");
        assert_eq!(duration_ms(60_000), "1 min");
        assert_eq!(duration_ms(3 * 60_000 + 7_000), "3 min 7 s");
        assert_eq!(duration_ms(3_600_000 * 3 + 12 * 60_000), "3 h 12 min");
        assert_eq!(duration_ms(86_400_000 * 2 + 3_600_000), "2 d 1 h");
        assert_eq!(ago(10_000, 9_500), "just now");
        assert_eq!(ago(70_500, 0), "1 min 10 s ago");
        assert_eq!(ago(0, 5_000), "just now");
    }

    #[test]
    fn another_style_groups_marks_and_names_units_its_way() {
        let indonesian = Style {
            group: ".".into(),
            decimal: ",".into(),
            percent: "{n}%".into(),
            s: "dtk".into(),
            min: "mnt".into(),
            per_second: "/dtk".into(),
            ago: "{time} lalu".into(),
            just_now: "baru saja".into(),
            ..Style::default()
        };
        set_style(indonesian);
        let seen = (
            amount("1234567500000", "ustar"),
            rate(1.5, "tugas"),
            duration_ms(1500),
            ago(70_500, 0),
            ago(1, 0),
            percent(0.25),
        );
        set_style(Style::default());
        assert_eq!(
            seen,
            (
                "1.234.567,5 STAR".to_string(),
                "1,50 tugas/dtk".to_string(),
                "1,5 dtk".to_string(),
                "1 mnt 10 dtk lalu".to_string(),
                "baru saja".to_string(),
                "25%".to_string()
            )
        );
        assert_eq!(amount("1500000", "ustar"), "1.5 STAR");
    }

    #[test]
    fn fill_replaces_named_placeholders_only() {
        assert_eq!(fill("{n} of {total}", &[("n", "3"), ("total", "4")]), "3 of 4");
        assert_eq!(fill("{task} stays", &[("n", "3")]), "{task} stays");
    }

    #[test]
    fn sizes_percentages_keys_and_clock() {
        assert_eq!(bytes(1000), "1000 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(tick("12000".into()), count(12_000));
        assert_ne!(tick("12000".into()), "12000", "whole ticks are grouped");
        assert_eq!(tick("2.5".into()), "2.5");
        assert_eq!(percent(0.1), "10%");
        assert_eq!(percent(1.7), "100%");
        assert_eq!(short_key("ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"), "ea4a6c…46d22c");
        assert_eq!(short_key("abc"), "abc");
        assert_eq!(clock_utc(86_400_000 + 3_723_000), "01:02:03");
    }
}
