//! The pages as split points: each page's code is cut from the app's main module into wasm chunks
//! of its own (`scripts/build-web.sh` runs wasm-split after the build), fetched when the page is
//! first shown. A first visit to Contribute downloads the app's frame and Contribute's code, not
//! the job form, the job pages and the network charts.
//!
//! The loads are `fallible`: a chunk that cannot be fetched (offline before the page was ever
//! shown, or a tab left open across a deploy, whose chunks are gone) shows a page that says so,
//! instead of the panic that would stop the whole app.

use crate::app::set_title;
use crate::browser;
use crate::lang::{tr, use_i18n};
use leptos::prelude::*;
use leptos::wasm_split::{SplitLoaderError, wasm_split};
use leptos_router::LazyRoute;
use std::cell::Cell;
use std::future::Future;

/// A page's code could not be fetched.
#[derive(Debug)]
pub struct NotLoaded;

impl From<SplitLoaderError> for NotLoaded {
    fn from(_: SplitLoaderError) -> Self {
        NotLoaded
    }
}

#[wasm_split(page_contribute, wasm_split_path = ::leptos::wasm_split, fallible)]
fn contribute_page() -> Result<AnyView, NotLoaded> {
    Ok(view! { <super::contribute::Contribute/> }.into_any())
}

#[wasm_split(page_dashboard, wasm_split_path = ::leptos::wasm_split, fallible)]
fn dashboard_page() -> Result<AnyView, NotLoaded> {
    Ok(view! { <super::dashboard::Dashboard/> }.into_any())
}

#[wasm_split(page_job, wasm_split_path = ::leptos::wasm_split, fallible)]
fn job_page() -> Result<AnyView, NotLoaded> {
    Ok(view! { <super::job::JobPage/> }.into_any())
}

#[wasm_split(page_network, wasm_split_path = ::leptos::wasm_split, fallible)]
fn network_page() -> Result<AnyView, NotLoaded> {
    Ok(view! { <super::network::Network/> }.into_any())
}

thread_local! {
    /// How many pages' code is on its way (set up by [`provide_loading`]).
    static LOADING: Cell<Option<RwSignal<u32>>> = const { Cell::new(None) };
}

/// The count of pages whose code is on its way, for the app's frame to show that one is loading.
pub fn provide_loading() -> RwSignal<u32> {
    let loading = RwSignal::new(0);
    LOADING.with(|cell| cell.set(Some(loading)));
    loading
}

/// One page's code on its way, in the loading count while it lives.
struct Counting(RwSignal<u32>);

impl Counting {
    fn new(loading: RwSignal<u32>) -> Self {
        loading.try_update(|n| *n += 1);
        Counting(loading)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.0.try_update(|n| *n = n.saturating_sub(1));
    }
}

/// The page, or the page that says why it is missing; counted in [`provide_loading`]'s signal
/// meanwhile.
async fn shown(page: impl Future<Output = Result<AnyView, NotLoaded>>) -> AnyView {
    // Counted down when this future ends, finished or dropped (Leptos drops a load it no longer
    // needs: another page was picked meanwhile, or the app was redrawn).
    let _counting = LOADING.with(Cell::get).map(Counting::new);
    match page.await {
        Ok(view) => view,
        Err(NotLoaded) => not_loaded().into_any(),
    }
}

fn not_loaded() -> impl IntoView {
    let i18n = use_i18n();
    set_title(tr!(i18n, page_load.title));
    let why = if browser::is_online() {
        // Most likely a deploy removed this tab's build: let the service worker fetch the new one.
        browser::check_for_update();
        tr!(i18n, page_load.failed)
    } else {
        tr!(i18n, page_load.offline)
    };
    let reload = |_| {
        let _ = browser::window().location().reload();
    };
    view! {
        <section class="page" data-testid="page-not-loaded">
            <h1 data-testid="page-heading">{tr!(i18n, page_load.heading)}</h1>
            <p class="notice error" role="alert">{why}</p>
            <button class="primary" type="button" on:click=reload data-testid="page-reload">
                {tr!(i18n, page_load.reload)}
            </button>
        </section>
    }
}

/// The router waits for a page's code before it shows the page (the current page stays up
/// meanwhile); the routes carry no data of their own.
macro_rules! lazy_page {
    ($route:ident, $load:ident) => {
        pub struct $route;

        impl LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            fn view(_this: Self) -> impl Future<Output = AnyView> {
                shown($load())
            }
        }
    };
}

lazy_page!(ContributeRoute, contribute_page);
lazy_page!(DashboardRoute, dashboard_page);
lazy_page!(JobRoute, job_page);
lazy_page!(NetworkRoute, network_page);
