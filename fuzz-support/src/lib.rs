//! Fuzzing that runs inside `cargo test` on the stable toolchain: a seeded harness bounded by time
//! and case count, and mutators for the three kinds of input strangers send Starling (bytes, JSON
//! documents, WGSL tokens).
//!
//! - [`Fuzz`]: one target. Each case gets its own RNG derived from the master seed, the target's
//!   name and the case index, so one failing case reruns alone (`STARLING_FUZZ_CASE`).
//! - [`mutate`]: structure-aware mutations of valid inputs (a corpus), plus byte-level noise.
//!
//! Knobs, all environment variables:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `STARLING_FUZZ_SECS` | seconds per target | 2 (the case cap is lifted when this is set) |
//! | `STARLING_FUZZ_CASES` | most cases per target | the target's own cap |
//! | `STARLING_FUZZ_SEED` | master seed (decimal) | a fixed seed, so the suite is reproducible |
//! | `STARLING_FUZZ_CASE` | run only this case index | all cases |

pub mod mutate;

use rand::SeedableRng;
use rand::rngs::StdRng;
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

/// The master seed when `STARLING_FUZZ_SEED` is unset.
pub const DEFAULT_SEED: u64 = 0x5747_524c_494e_4721;
/// Seconds per target when `STARLING_FUZZ_SECS` is unset.
pub const DEFAULT_SECS: f64 = 2.0;

/// One fuzz target's budget and seed.
#[derive(Debug, Clone)]
pub struct Fuzz {
    name: &'static str,
    seed: u64,
    budget: Duration,
    max_cases: u64,
    only: Option<u64>,
}

/// One case: its index, and an RNG that depends only on the master seed, target and index.
#[derive(Debug)]
pub struct Case {
    pub index: u64,
    pub rng: StdRng,
    target: &'static str,
    seed: u64,
}

impl Case {
    /// How to run this case alone.
    pub fn reproduce(&self) -> String {
        format!(
            "fuzz target `{}` case {}: rerun with STARLING_FUZZ_SEED={} STARLING_FUZZ_CASE={}",
            self.target, self.index, self.seed, self.index
        )
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

/// splitmix64: turns (seed, target, index) into well-spread per-case seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

impl Fuzz {
    /// A target named `name` (used in the reproduce line) that runs at most `max_cases` cases
    /// and at most [`DEFAULT_SECS`], unless the environment says otherwise.
    pub fn new(name: &'static str, max_cases: u64) -> Self {
        let secs: Option<f64> = env("STARLING_FUZZ_SECS");
        let max_cases = env("STARLING_FUZZ_CASES").unwrap_or(if secs.is_some() { u64::MAX } else { max_cases });
        Self {
            name,
            seed: env("STARLING_FUZZ_SEED").unwrap_or(DEFAULT_SEED),
            budget: Duration::from_secs_f64(secs.unwrap_or(DEFAULT_SECS)),
            max_cases,
            only: env("STARLING_FUZZ_CASE"),
        }
    }

    /// Overrides the time budget (for targets that each case costs a network round trip).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        if std::env::var_os("STARLING_FUZZ_SECS").is_none() {
            self.budget = budget;
        }
        self
    }

    fn case(&self, index: u64) -> Case {
        let seed = mix(self.seed ^ mix(fnv1a(self.name)) ^ mix(index));
        Case { index, rng: StdRng::seed_from_u64(seed), target: self.name, seed: self.seed }
    }

    /// The cases to run, in order, until the budget or the case cap runs out. For async targets:
    /// put [`Case::reproduce`] in every assertion message.
    pub fn cases(&self) -> impl Iterator<Item = Case> + '_ {
        let start = Instant::now();
        let (first, last) = match self.only {
            Some(i) => (i, i),
            None => (0, self.max_cases.saturating_sub(1)),
        };
        (first..=last)
            .take_while(move |&i| self.only.is_some() || i == 0 || start.elapsed() < self.budget)
            .map(|i| self.case(i))
    }

    /// Runs `check` on `generate`d inputs. A panic in `check` prints the case's reproduce line and
    /// its input, then fails the test. Returns the number of cases run.
    pub fn run<T: Debug>(&self, mut generate: impl FnMut(&mut StdRng) -> T, mut check: impl FnMut(&T)) -> u64 {
        let start = Instant::now();
        let mut ran = 0;
        for mut case in self.cases() {
            let input = generate(&mut case.rng);
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
                eprintln!("{}\ninput: {}", case.reproduce(), truncated(&input));
                resume_unwind(panic);
            }
            ran += 1;
        }
        eprintln!("fuzz target `{}`: {ran} cases in {:.1?}", self.name, start.elapsed());
        ran
    }
}

/// `{input:?}`, cut to a length a terminal can show.
pub fn truncated(input: &impl Debug) -> String {
    const MAX: usize = 4000;
    let text = format!("{input:?}");
    if text.len() <= MAX {
        return text;
    }
    let cut = (0..=MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}... ({} bytes in all)", &text[..cut], text.len())
}

/// Input bytes shown as text where they are UTF-8 (most of them are JSON).
pub struct Shown(pub Vec<u8>);

impl Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "{text:?}"),
            Err(_) => write!(f, "bytes {:?}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn cases_are_reproducible_and_bounded() {
        let fuzz = Fuzz { name: "t", seed: 1, budget: Duration::from_secs(60), max_cases: 5, only: None };
        let draws: Vec<u64> = fuzz.cases().map(|mut c| c.rng.r#gen()).collect();
        assert_eq!(draws.len(), 5);
        let again: Vec<u64> = fuzz.cases().map(|mut c| c.rng.r#gen()).collect();
        assert_eq!(draws, again);
        let only = Fuzz { only: Some(3), ..fuzz.clone() };
        let single: Vec<u64> = only.cases().map(|mut c| c.rng.r#gen()).collect();
        assert_eq!(single, vec![draws[3]]);
        let other = Fuzz { name: "u", ..fuzz };
        assert_ne!(other.cases().map(|mut c| c.rng.r#gen::<u64>()).next(), Some(draws[0]));
    }

    #[test]
    fn time_budget_stops_the_run() {
        let fuzz = Fuzz { name: "t", seed: 1, budget: Duration::from_millis(50), max_cases: u64::MAX, only: None };
        let ran = fuzz.run(|_| (), |_| std::thread::sleep(Duration::from_millis(10)));
        assert!((1..50).contains(&ran), "{ran}");
    }
}
