//! One module per page.

pub mod contribute;
pub mod dashboard;
pub mod job;
pub mod network;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tells a page's polling loops that the page is gone: set on cleanup, checked before each round.
#[derive(Debug, Clone)]
pub struct Alive(Arc<AtomicBool>);

impl Alive {
    /// A flag that turns false when the current reactive owner (the page) is cleaned up.
    pub fn for_current_page() -> Alive {
        let flag = Arc::new(AtomicBool::new(true));
        let on_cleanup_flag = flag.clone();
        leptos::prelude::on_cleanup(move || on_cleanup_flag.store(false, Ordering::Relaxed));
        Alive(flag)
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
pub mod lazy;
