//! The language in the browser: picks it at start ([`crate::languages::pick`]), provides it
//! ([`I18n`]), keeps `<html lang>` and the number style ([`crate::format::Style`]) in step with
//! it, remembers a choice made in the [`LanguagePicker`], and formats dates with the browser's
//! `Intl.DateTimeFormat` (no ICU data in the wasm).
//!
//! Texts are looked up with [`tr!`] and read once per drawing: a language change draws the app
//! again (`app::App`), so words need no reactive text nodes of their own.

use crate::Error;
use crate::browser;
use crate::format::{self, Style};
use crate::i18n::{I18nLocaleTrait as _, Locale, td_string};
use crate::languages::{self, LANGUAGES};
use leptos::prelude::*;
use std::str::FromStr;
use wasm_bindgen::JsValue;

/// `tr!(i18n, nav.contribute)`: the text of one key in the current language, as a plain
/// `&'static str` looked up by locale (`td_string!`, so a key missing from `en.json` does not
/// compile). Views read it once: the app is drawn again when the language changes (see
/// `app::App`), so words need no reactive text nodes of their own.
macro_rules! tr {
    ($i18n:expr, $($key:tt)+) => {
        $crate::i18n::td_string!($crate::lang::locale_of($i18n), $($key)+)
    };
}
pub(crate) use tr;

/// `say!(compute.worker_stopped)`: the text of one key in the language shown now, for messages
/// made outside a component (the compute worker's events, the job event stream). A message
/// already shown keeps its language until it is made again.
macro_rules! say {
    ($($key:tt)+) => {
        $crate::i18n::td_string!($crate::lang::current(), $($key)+)
    };
}
pub(crate) use say;

thread_local! {
    /// The language shown now, for [`say!`].
    static CURRENT: std::cell::Cell<Locale> = std::cell::Cell::new(Locale::default());
}

/// The language shown now (English before the app starts).
pub fn current() -> Locale {
    CURRENT.with(std::cell::Cell::get)
}

/// `localStorage` key of a language picked in the app (absent until someone picks one, so the
/// browser's languages decide until then).
pub const CHOSEN_LANGUAGE: &str = "starling.language";

thread_local! {
    /// Set by the picker just before the app is drawn again in the new language, so the new
    /// picker takes the focus back (keyboard and screen reader users stay where they were).
    static PICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The language being shown, shared by every page (in context, like `Connectivity`).
///
/// Not leptos_i18n's `I18nContext`: that one reads the browser's languages, cookies and `<html>`
/// through leptos-use and ICU's locale matching, which this app does its own way
/// ([`languages::pick`]); measured on the app's wasm: 652 KB gzip with it, 630 KB without. Texts
/// are looked up by locale (`td_string!`, wrapped as [`tr!`]), still checked against the locale
/// files at compile time.
#[derive(Debug, Clone, Copy)]
pub struct I18n {
    locale: RwSignal<Locale>,
}

impl I18n {
    /// The current language, subscribing to changes.
    pub fn get(self) -> Locale {
        self.locale.get()
    }

    pub fn get_untracked(self) -> Locale {
        self.locale.get_untracked()
    }

    fn set(self, locale: Locale) {
        self.locale.set(locale);
    }
}

/// Why a browser cannot hold keys, from the keystore's code (`KeyStorage::Page`'s `reason`), in
/// the language shown; a reason this app does not know is shown as it came.
pub fn key_storage_reason(i18n: I18n, code: &str) -> String {
    match code {
        "no-webcrypto" => tr!(i18n, key_reason.no_webcrypto),
        "no-indexeddb" => tr!(i18n, key_reason.no_indexeddb),
        "indexeddb-refused" => tr!(i18n, key_reason.indexeddb_refused),
        "no-ed25519" => tr!(i18n, key_reason.no_ed25519),
        "no-key-storage" => tr!(i18n, key_reason.no_key_storage),
        "old-engine" => tr!(i18n, key_reason.old_engine),
        other => return other.to_string(),
    }
    .to_string()
}

pub fn use_i18n() -> I18n {
    expect_context::<I18n>()
}

/// Picks the language, provides it and keeps the page in step with it.
pub fn provide() -> I18n {
    let stored = browser::stored(CHOSEN_LANGUAGE);
    let navigator = browser::window().navigator();
    let mut preferred: Vec<String> = navigator.languages().iter().filter_map(|l| l.as_string()).collect();
    if preferred.is_empty() {
        // Some browsers list none; their one language then decides (as in index.html).
        preferred.extend(navigator.language());
    }
    let language = languages::pick(stored.as_deref(), preferred.iter().map(String::as_str));
    let locale = Locale::from_str(language.tag).unwrap_or_default();
    // Before the first render, so the first paint already reads right.
    apply(locale);
    let i18n = I18n { locale: RwSignal::new(locale) };
    provide_context(i18n);
    Effect::new(move |previous: Option<Locale>| {
        let locale = i18n.get();
        if previous.is_some_and(|p| p != locale) {
            apply(locale);
        }
        locale
    });
    i18n
}

fn apply(locale: Locale) {
    CURRENT.with(|c| c.set(locale));
    if let Some(root) = browser::window().document().and_then(|d| d.document_element()) {
        let _ = root.set_attribute("lang", locale.as_str());
    }
    format::set_style(style(locale));
}

/// The number style of `locale`: grouping and decimal mark from `Intl.NumberFormat`, unit words
/// from the locale file.
fn style(locale: Locale) -> Style {
    let tag = locale.as_str();
    let numbers = js_sys::Intl::NumberFormat::new(&js_sys::Array::of1(&JsValue::from_str(tag)), &js_sys::Object::new());
    let part = |kind: &str| {
        numbers.format_to_parts(12345.5).iter().find_map(|p| {
            let kind_here = js_sys::Reflect::get(&p, &"type".into()).ok()?.as_string()?;
            (kind_here == kind).then(|| js_sys::Reflect::get(&p, &"value".into()).ok()?.as_string()).flatten()
        })
    };
    let defaults = Style::default();
    Style {
        group: part("group").unwrap_or(defaults.group),
        decimal: part("decimal").unwrap_or(defaults.decimal),
        percent: td_string!(locale, units.percent).to_string(),
        ms: td_string!(locale, units.ms).to_string(),
        s: td_string!(locale, units.s).to_string(),
        min: td_string!(locale, units.min).to_string(),
        h: td_string!(locale, units.h).to_string(),
        d: td_string!(locale, units.d).to_string(),
        per_second: td_string!(locale, units.per_second).to_string(),
        per_minute: td_string!(locale, units.per_minute).to_string(),
        ago: td_string!(locale, units.ago).to_string(),
        just_now: td_string!(locale, units.just_now).to_string(),
    }
}

/// A moment (Unix milliseconds) as a date and time of day in the shown language and the device's
/// time zone (`4 Dec 2026, 14:03`, `2026年12月4日 14:03`).
pub fn date_time(ms: u64) -> String {
    let locale = use_i18n().get_untracked();
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"dateStyle".into(), &"medium".into());
    let _ = js_sys::Reflect::set(&options, &"timeStyle".into(), &"short".into());
    let dates = js_sys::Intl::DateTimeFormat::new(&js_sys::Array::of1(&JsValue::from_str(locale.as_str())), &options);
    let date = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    dates.format().call1(&dates, &date).ok().and_then(|t| t.as_string()).unwrap_or_default()
}

/// The language picker in the header: each language named in itself; the choice is remembered.
/// Shows a short code on the header (it fits a phone), the full names in the list.
#[component]
pub fn LanguagePicker() -> impl IntoView {
    let i18n = use_i18n();
    let current = i18n.get_untracked();
    let short = match current.as_str() {
        "id" => "ID",
        "zh-Hans" => "中文",
        _ => "EN",
    };
    let select = NodeRef::<leptos::html::Select>::new();
    Effect::new(move |_| {
        if let Some(select) = select.get()
            && PICKED.with(|p| p.replace(false))
        {
            let _ = select.focus();
        }
    });
    view! {
        <label class="lang-picker">
            <span class="lang-code" aria-hidden="true">{short}</span>
            <select
                node_ref=select
                data-testid="language-picker"
                // In every language the app has: whoever cannot read the current one still finds it.
                aria-label=languages::PICKER_LABEL
                on:change:target=move |ev| {
                    let tag = ev.target().value();
                    if let Ok(locale) = Locale::from_str(&tag) {
                        // Not being able to remember the choice only means choosing again.
                        let _ = browser::store(CHOSEN_LANGUAGE, locale.as_str());
                        PICKED.with(|p| p.set(true));
                        i18n.set(locale);
                    }
                }
            >
                {LANGUAGES
                    .into_iter()
                    .map(|l| view! { <option value=l.tag lang=l.tag selected=l.tag == current.as_str()>{l.name}</option> })
                    .collect_view()}
            </select>
        </label>
    }
}

/// A compute backend as people say it; the names of graphics APIs stay as they are.
pub fn backend_label(i18n: I18n, backend: &str) -> String {
    match backend {
        "browser_webgpu" => tr!(i18n, backend.browser_webgpu).to_string(),
        "cpu" => tr!(i18n, backend.cpu).to_string(),
        "" => tr!(i18n, backend.unknown).to_string(),
        other => crate::worker_protocol::backend_label(other),
    }
}

/// Whether the shown language is English (the language the compute worker words its reasons in).
pub fn is_english(i18n: I18n) -> bool {
    i18n.get_untracked() == Locale::en
}

/// Unnamed adapters' words in the shown language.
pub fn adapter_words(i18n: I18n) -> crate::views::AdapterWords<'static> {
    crate::views::AdapterWords {
        discrete_gpu: tr!(i18n, adapter.discrete_gpu),
        integrated_gpu: tr!(i18n, adapter.integrated_gpu),
        virtual_gpu: tr!(i18n, adapter.virtual_gpu),
        cpu: tr!(i18n, adapter.cpu),
        unnamed: tr!(i18n, adapter.unnamed),
        not_announced: tr!(i18n, adapter.not_announced),
    }
}

/// An error as a sentence in the shown language. The relay's own messages (`Error::Api`) and
/// the browser's come as they were written.
pub fn error_text(i18n: I18n, error: &Error) -> String {
    match error {
        Error::Api { message, .. } => message.clone(),
        Error::Unsupported { endpoint } => format::fill(tr!(i18n, errors.unsupported), &[("endpoint", endpoint)]),
        Error::Offline => tr!(i18n, errors.offline).to_string(),
        Error::Network(detail) => format::fill(tr!(i18n, errors.network), &[("detail", detail)]),
        Error::Decode(detail) => format::fill(tr!(i18n, errors.decode), &[("detail", detail)]),
        Error::Browser(text) => text.clone(),
    }
}

/// The current language, untracked: one out-of-line call per text rather than a signal read
/// inlined at each of the app's ~450 texts.
#[inline(never)]
pub fn locale_of(i18n: I18n) -> Locale {
    i18n.get_untracked()
}
