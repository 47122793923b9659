//! Messages in the page flow: errors, warnings and information, announced to screen readers.

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Warning,
    Error,
}

/// A message box; renders nothing while `text` is `None`.
#[component]
pub fn Notice(#[prop(into)] text: Signal<Option<String>>, tone: Tone, testid: &'static str) -> impl IntoView {
    let (class, role) = match tone {
        Tone::Warning => ("notice warning", "status"),
        Tone::Error => ("notice error", "alert"),
    };
    move || {
        text.get().map(|t| {
            view! { <p class=class role=role data-testid=testid>{t}</p> }
        })
    }
}
