//! Timers on the browser's event loop: a [`Sleep`] future over `setTimeout` that clears its
//! timeout when dropped, and [`with_timeout`] to bound any future by one.

use futures_util::future::{Either, select};
use js_sys::{Function, Promise};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    // Global functions in windows and workers alike, so no scope object is needed.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> i32;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: i32);
}

/// Resolves after `ms` milliseconds. Dropping it early cancels the timeout, so the event loop
/// keeps no stale timers for a worker that rearms its deadline often.
#[derive(Debug)]
pub struct Sleep {
    /// The pending timeout, until it fires.
    timeout: Option<i32>,
    fired: JsFuture,
}

impl Sleep {
    pub fn new(ms: u32) -> Sleep {
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        let mut timeout = None;
        let promise = Promise::new(&mut |resolve, _reject| timeout = Some(set_timeout(&resolve, ms)));
        Sleep { timeout, fired: JsFuture::from(promise) }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.fired).poll(cx) {
            Poll::Ready(_) => {
                self.timeout = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.timeout.take() {
            clear_timeout(id);
        }
    }
}

/// `future`'s output, or `None` if `sleep` ends first (the future is then dropped).
pub async fn with_timeout<F: Future>(future: F, sleep: Sleep) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match select(future, sleep).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => None,
    }
}
