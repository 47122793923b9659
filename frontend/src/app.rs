//! The app shell: header with the page nav, the offline banner, and the routes. The header's
//! markup matches the static shell in `www/index.html`, so the frame does not move when the app
//! takes over from the shell.

use crate::browser;
use crate::compute::Contributor;
use crate::lang::{self, LanguagePicker};
use crate::lang::{I18n, tr, use_i18n};
use crate::routes::lazy::{ContributeRoute, DashboardRoute, JobRoute, NetworkRoute};
use leptos::prelude::*;
use leptos_router::Lazy;
use leptos_router::components::{A, Redirect, Route, Router, Routes};
use leptos_router::path;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// Whether the browser believes it is online; shared by every page.
#[derive(Debug, Clone, Copy)]
pub struct Connectivity {
    pub online: RwSignal<bool>,
}

/// Sets the document title for the page being shown.
pub fn set_title(page: &str) {
    if let Some(document) = browser::window().document() {
        document.set_title(&format!("{page} · Starling"));
    }
}

fn watch_connectivity(online: RwSignal<bool>) {
    for event in ["online", "offline"] {
        let listener =
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| online.set(browser::is_online()));
        let _ = browser::window().add_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
        // The app lives as long as the page.
        listener.forget();
    }
}

#[component]
pub fn App() -> impl IntoView {
    let i18n = lang::provide();
    let contributor = Contributor::new();
    provide_context(contributor);
    let online = RwSignal::new(browser::is_online());
    watch_connectivity(online);
    provide_context(Connectivity { online });
    provide_context(crate::routes::dashboard::JobDraft::new());

    let contributing = move || contributor.wanted.get() && contributor.status.with(|s| s.state.is_active());
    // While a page's code is on its way (its first visit), a line says so and a thin bar runs
    // along the top (style.css, `main[aria-busy]`), so a tap on a slow link shows it took. Made
    // here, above the redraw on a change of language: one count for the app's life.
    let loading = crate::routes::lazy::provide_loading();
    // Drawn again when the language changes: words are read once per drawing (`lang::tr`), and
    // what lives longer than a page (the contributor, connectivity, the language, the job being
    // written) sits above.
    move || {
        let _language = i18n.get();
        app_view(i18n, contributing, online, loading)
    }
}

fn app_view(
    i18n: I18n,
    contributing: impl Fn() -> bool + Copy + Send + Sync + 'static,
    online: RwSignal<bool>,
    loading: RwSignal<u32>,
) -> impl IntoView {
    view! {
        <Router>
            <a class="skip-link" href="#main">{tr!(i18n, app.skip_to_content)}</a>
            <header class="topbar">
                <a class="brand" href="/contribute" aria-label=tr!(i18n, app.home)>
                    <img src="/icons/icon-192.png" alt="" width="28" height="28"/>
                    <span>"Starling"</span>
                </a>
                <nav class="nav" aria-label=tr!(i18n, nav.pages) data-testid="nav">
                    <A href="/contribute" attr:data-testid="nav-contribute">{tr!(i18n, nav.contribute)}</A>
                    <A href="/dashboard" attr:data-testid="nav-dashboard">{tr!(i18n, nav.dashboard)}</A>
                    <A href="/network" attr:data-testid="nav-network">{tr!(i18n, nav.network)}</A>
                </nav>
                <LanguagePicker/>
                <span
                    class="live-dot"
                    class:on=contributing
                    data-testid="contributing-indicator"
                    title=move || if contributing() { tr!(i18n, app.contributing) } else { tr!(i18n, app.not_contributing) }
                    aria-hidden="true"
                ></span>
            </header>
            <div class="offline-banner" role="status" data-testid="offline-banner" hidden=move || online.get()>
                {tr!(i18n, app.offline)}
            </div>
            <main id="main" tabindex="-1" aria-busy=move || (loading.get() > 0).to_string()>
                <p class="page-loading" role="status" data-testid="page-loading" hidden=move || loading.get() == 0>
                    {tr!(i18n, page_load.loading)}
                </p>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=|| view! { <Redirect path="/contribute"/> }/>
                    <Route path=path!("/contribute") view={Lazy::<ContributeRoute>::new()}/>
                    <Route path=path!("/dashboard") view={Lazy::<DashboardRoute>::new()}/>
                    <Route path=path!("/jobs/:id") view={Lazy::<JobRoute>::new()}/>
                    <Route path=path!("/network") view={Lazy::<NetworkRoute>::new()}/>
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    let i18n = use_i18n();
    set_title(tr!(i18n, not_found.title));
    view! {
        <section class="page" data-testid="page-not-found">
            <h1 data-testid="page-heading">{tr!(i18n, not_found.heading)}</h1>
            <p>{tr!(i18n, not_found.text)}</p>
            <ul class="links">
                <li><a href="/contribute">{tr!(i18n, nav.contribute)}</a></li>
                <li><a href="/dashboard">{tr!(i18n, nav.dashboard)}</a></li>
                <li><a href="/network">{tr!(i18n, nav.network)}</a></li>
            </ul>
        </section>
    }
}
