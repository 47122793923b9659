//! Keeping a page's view of the relay fresh: the one loop behind every "fetch, show, wait, fetch
//! again" on the pages (the relay's health and workers, a client's balance, the job list, a job's
//! details and money, this device's worker record).
//!
//! The decisions are plain functions, tested natively: [`shown_after`] keeps the last good
//! reading on screen through a network blip. The loop itself ([`every`], [`into_signal`]) exists
//! in the browser and ends with the page that started it.

use crate::error::Error;

/// What a loop does after one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Wait the period, then read again.
    Again,
    /// The view will not change any more (or is gone): stop reading.
    Stop,
}

/// Whether a new reading replaces what is shown: a network blip (offline, or the connection
/// failed) after a good reading keeps the good reading; every other result is shown, errors from
/// the relay included (they say something true about now).
pub fn shown_after<T>(shown: Option<&Result<T, Error>>, reading: &Result<T, Error>) -> bool {
    let blip = matches!(reading, Err(Error::Offline | Error::Network(_)));
    !(blip && matches!(shown, Some(Ok(_))))
}

#[cfg(target_arch = "wasm32")]
pub use browser_loop::{every, into_signal};

#[cfg(target_arch = "wasm32")]
mod browser_loop {
    use super::{Then, shown_after};
    use crate::browser;
    use crate::error::Error;
    use crate::routes::Alive;
    use leptos::prelude::*;
    use std::future::Future;

    /// Reads with `fetch` every `period_ms` while the current page lives, handing each result to
    /// `seen`. `fetch` may have nothing to read yet (`None`: wait a period). A reading that
    /// arrives after the page is gone is dropped, and the loop ends.
    pub fn every<T, Fut>(
        period_ms: u32,
        mut fetch: impl FnMut() -> Option<Fut> + 'static,
        mut seen: impl FnMut(Result<T, Error>) -> Then + 'static,
    ) where
        T: 'static,
        Fut: Future<Output = Result<T, Error>> + 'static,
    {
        let alive = Alive::for_current_page();
        leptos::task::spawn_local(async move {
            while alive.get() {
                if let Some(reading) = fetch() {
                    let result = reading.await;
                    if !alive.get() || seen(result) == Then::Stop {
                        return;
                    }
                }
                browser::sleep(period_ms).await;
            }
        });
    }

    /// [`every`] into a signal, keeping the last good reading through blips ([`shown_after`]);
    /// `stop` says from a reading that the view is final.
    pub fn into_signal<T, Fut>(
        period_ms: u32,
        slot: RwSignal<Option<Result<T, Error>>>,
        fetch: impl FnMut() -> Option<Fut> + 'static,
        stop: fn(&Result<T, Error>) -> bool,
    ) where
        T: Send + Sync + 'static,
        Fut: Future<Output = Result<T, Error>> + 'static,
    {
        every(period_ms, fetch, move |reading| {
            let then = if stop(&reading) { Then::Stop } else { Then::Again };
            if slot.with_untracked(|shown| shown_after(shown.as_ref(), &reading)) {
                slot.set(Some(reading));
            }
            then
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blips_keep_the_last_good_reading_and_everything_else_shows() {
        let good: Result<u32, Error> = Ok(1);
        let offline: Result<u32, Error> = Err(Error::Offline);
        let refused: Result<u32, Error> = Err(Error::Network("connection refused".into()));
        let gone: Result<u32, Error> =
            Err(Error::Api { status: 404, code: "not_found".into(), message: "no such job".into() });
        type Case<'a> = (&'static str, Option<&'a Result<u32, Error>>, &'a Result<u32, Error>, bool);
        let cases: [Case; 8] = [
            ("first reading, good", None, &good, true),
            ("first reading, offline", None, &offline, true),
            ("good after good", Some(&good), &good, true),
            ("offline after good", Some(&good), &offline, false),
            ("network failure after good", Some(&good), &refused, false),
            ("relay error after good", Some(&good), &gone, true),
            ("offline after an error", Some(&gone), &offline, true),
            ("good after offline", Some(&offline), &good, true),
        ];
        for (name, shown, reading, replaces) in cases {
            assert_eq!(shown_after(shown, reading), replaces, "{name}");
        }
    }
}
