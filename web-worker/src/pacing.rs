//! When a worker may compute: the duty-cycle rest after each task, and the browser's pause rules
//! (hidden tab, low battery). Pure functions of settings, device readings and time, so both
//! workers share them and the tables below pin them down without a browser or a clock.

pub use starling_protocol::page::{Battery, DeviceReport, Settings};
use std::time::Duration;

/// Why the worker takes no work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PauseReason {
    Hidden,
    LowBattery { level: f32, min: f32 },
}

impl std::fmt::Display for PauseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseReason::Hidden => write!(f, "the page is hidden"),
            PauseReason::LowBattery { level, min } => {
                write!(f, "battery at {:.0}%, below the {:.0}% limit, and not charging", level * 100.0, min * 100.0)
            }
        }
    }
}

/// Why the worker must not take work now, if it must not: hidden with `pause_when_hidden`, or
/// below `min_battery` and not charging. A reading of NaN pauses nothing (it is no reading).
pub fn pause_reason(settings: &Settings, device: &DeviceReport) -> Option<PauseReason> {
    if device.hidden && settings.pause_when_hidden {
        return Some(PauseReason::Hidden);
    }
    match device.battery {
        Some(Battery { level, charging: false }) if level < settings.min_battery => {
            Some(PauseReason::LowBattery { level, min: settings.min_battery })
        }
        _ => None,
    }
}

/// What the worker may do at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Take and run work.
    Work,
    /// Keep the duty cycle: no new task before `until_ms`.
    Rest { until_ms: u64 },
    /// Take no work until the reason clears (the page reports the change).
    Pause(PauseReason),
}

/// The decision: a pause wins over a rest (it lasts longer and says more), and a rest lasts until
/// `rest_until_ms`.
pub fn pace(settings: &Settings, device: &DeviceReport, rest_until_ms: Option<u64>, now_ms: u64) -> Pace {
    if let Some(reason) = pause_reason(settings, device) {
        return Pace::Pause(reason);
    }
    match rest_until_ms {
        Some(until_ms) if until_ms > now_ms => Pace::Rest { until_ms },
        _ => Pace::Work,
    }
}

/// The rest after `busy` time computing that keeps the busy share of wall time at most `duty`:
/// busy / (busy + rest) = duty, i.e. rest = busy * (1 - duty) / duty.
pub fn rest_after(busy: Duration, duty: f32) -> Duration {
    let duty = f64::from(duty.clamp(0.01, 1.0));
    busy.mul_f64((1.0 - duty) / duty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duty_cycle_rest_table() {
        let ms = Duration::from_millis;
        for (busy, duty, rest) in [
            (ms(100), 1.0, ms(0)),
            (ms(100), 0.5, ms(100)),
            (ms(100), 0.1, ms(900)),
            (ms(30), 0.25, ms(90)),
            (ms(0), 0.1, ms(0)),
            (ms(100), 0.0, ms(9900)), // clamped to 1%
        ] {
            let got = rest_after(busy, duty);
            assert!(got.abs_diff(rest) < Duration::from_micros(10), "busy {busy:?} duty {duty}: {got:?}");
            if !rest.is_zero() {
                let share = busy.as_secs_f64() / (busy + got).as_secs_f64();
                assert!((share - f64::from(duty.max(0.01))).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn pause_and_rest_table() {
        let settings = Settings { duty_cycle: 0.5, pause_when_hidden: true, min_battery: 0.2 };
        let visible_only = Settings { pause_when_hidden: false, ..settings };
        let no_battery_limit = Settings { min_battery: 0.0, ..settings };
        let shown = DeviceReport { hidden: false, battery: None };
        let hidden = DeviceReport { hidden: true, battery: None };
        let battery = |level, charging| DeviceReport { hidden: false, battery: Some(Battery { level, charging }) };
        let low = PauseReason::LowBattery { level: 0.1, min: 0.2 };
        type Case = (&'static str, Settings, DeviceReport, Option<u64>, u64, Pace);
        let cases: Vec<Case> = vec![
            ("visible, rested", settings, shown, None, 1000, Pace::Work),
            ("hidden pauses", settings, hidden, None, 1000, Pace::Pause(PauseReason::Hidden)),
            ("hidden allowed", visible_only, hidden, None, 1000, Pace::Work),
            ("low battery pauses", settings, battery(0.1, false), None, 1000, Pace::Pause(low)),
            ("low battery charging works", settings, battery(0.1, true), None, 1000, Pace::Work),
            ("at the limit works", settings, battery(0.2, false), None, 1000, Pace::Work),
            ("no limit, empty battery", no_battery_limit, battery(0.0, false), None, 1000, Pace::Work),
            ("NaN level is no reading", settings, battery(f32::NAN, false), None, 1000, Pace::Work),
            ("resting", settings, shown, Some(1500), 1000, Pace::Rest { until_ms: 1500 }),
            ("rest over", settings, shown, Some(1000), 1000, Pace::Work),
            ("rest long over", settings, shown, Some(10), 1000, Pace::Work),
            ("pause beats rest", settings, hidden, Some(1500), 1000, Pace::Pause(PauseReason::Hidden)),
            (
                "hidden beats low battery",
                settings,
                DeviceReport { hidden: true, battery: Some(Battery { level: 0.1, charging: false }) },
                None,
                1000,
                Pace::Pause(PauseReason::Hidden),
            ),
            (
                "low battery while hidden but allowed",
                visible_only,
                DeviceReport { hidden: true, battery: Some(Battery { level: 0.1, charging: false }) },
                Some(1500),
                1000,
                Pace::Pause(low),
            ),
        ];
        for (name, settings, device, rest_until, now, want) in cases {
            assert_eq!(pace(&settings, &device, rest_until, now), want, "{name}");
        }
    }

    #[test]
    fn pause_reasons_read_as_sentences() {
        assert_eq!(PauseReason::Hidden.to_string(), "the page is hidden");
        assert_eq!(
            PauseReason::LowBattery { level: 0.15, min: 0.2 }.to_string(),
            "battery at 15%, below the 20% limit, and not charging"
        );
    }
}
