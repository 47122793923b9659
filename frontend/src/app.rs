//! The app shell: header with the page nav, the offline banner, and the routes. The header's
//! markup matches the static shell in `www/index.html`, so the frame does not move when the app
//! takes over from the shell.

use crate::browser;
use crate::compute::Contributor;
use crate::routes::{contribute::Contribute, dashboard::Dashboard, job::JobPage, network::Network};
use leptos::prelude::*;
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
    let contributor = Contributor::new();
    provide_context(contributor);
    let online = RwSignal::new(browser::is_online());
    watch_connectivity(online);
    provide_context(Connectivity { online });

    let contributing = move || contributor.wanted.get() && contributor.status.with(|s| s.state.is_active());
    view! {
        <Router>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <header class="topbar">
                <a class="brand" href="/contribute" aria-label="Starling home">
                    <img src="/icons/icon-192.png" alt="" width="28" height="28"/>
                    <span>"Starling"</span>
                </a>
                <nav class="nav" aria-label="Pages" data-testid="nav">
                    <A href="/contribute" attr:data-testid="nav-contribute">"Contribute"</A>
                    <A href="/dashboard" attr:data-testid="nav-dashboard">"Dashboard"</A>
                    <A href="/network" attr:data-testid="nav-network">"Network"</A>
                </nav>
                <span
                    class="live-dot"
                    class:on=contributing
                    data-testid="contributing-indicator"
                    title=move || if contributing() { "This device is contributing" } else { "Not contributing" }
                    aria-hidden="true"
                ></span>
            </header>
            <div class="offline-banner" role="status" data-testid="offline-banner" hidden=move || online.get()>
                "You are offline. Pages open from this device's cache; live numbers and new jobs wait for the network."
            </div>
            <main id="main" tabindex="-1">
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=|| view! { <Redirect path="/contribute"/> }/>
                    <Route path=path!("/contribute") view=Contribute/>
                    <Route path=path!("/dashboard") view=Dashboard/>
                    <Route path=path!("/jobs/:id") view=JobPage/>
                    <Route path=path!("/network") view=Network/>
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    set_title("Not found");
    view! {
        <section class="page" data-testid="page-not-found">
            <h1 data-testid="page-heading">"Page not found"</h1>
            <p>"There is no page at this address. Try "<a href="/contribute">"Contribute"</a>", "
                <a href="/dashboard">"Dashboard"</a>" or "<a href="/network">"Network"</a>"."</p>
        </section>
    }
}
