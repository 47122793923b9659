//! The languages the app speaks and how it picks one: the choice remembered on this device, else
//! the first of the browser's languages (`navigator.languages`) that the app has, else English.
//!
//! The words themselves live in `frontend/locales/<tag>.json`, compiled in by leptos_i18n (the
//! `i18n` module on wasm32); `frontend/tests/locales.rs` checks that every file has every key,
//! none empty, with the same `{placeholders}`. Placeholders are filled by
//! [`crate::format::fill`], so the same text serves views, attributes and titles alike.

/// One language of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    /// The BCP 47 tag: the locale file's name, `<html lang>`, and what `Intl` formats with.
    pub tag: &'static str,
    /// The language's name in itself, for the picker.
    pub name: &'static str,
}

/// In the picker's order. The first is the fallback.
pub const LANGUAGES: [Language; 3] = [
    Language { tag: "en", name: "English" },
    Language { tag: "id", name: "Bahasa Indonesia" },
    Language { tag: "zh-Hans", name: "简体中文" },
];

/// The language picker's accessible name, in each of the app's languages.
pub const PICKER_LABEL: &str = "Language · Bahasa · 语言";

/// The language for a tag the browser or the device's storage gives (`id-ID`, `zh-CN`, `zh-Hans`,
/// `en-US`), by its primary subtag. Traditional Chinese tags (`zh-TW`, `zh-HK`, `zh-Hant`) match
/// nothing: Simplified Chinese is not what those readers asked for, unless the tag names the
/// Simplified script itself (`zh-Hans-HK`).
pub fn matching(tag: &str) -> Option<Language> {
    let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
    let subtags: Vec<&str> = tag.split('-').collect();
    match subtags[0] {
        "en" => Some(LANGUAGES[0]),
        "id" | "in" => Some(LANGUAGES[1]),
        "zh" if subtags.contains(&"hans") => Some(LANGUAGES[2]),
        "zh" if subtags.iter().any(|t| ["hant", "tw", "hk", "mo"].contains(t)) => None,
        "zh" => Some(LANGUAGES[2]),
        _ => None,
    }
}

/// The language to show: the stored choice if it is one of ours, else the first of the browser's
/// languages that is, else English.
pub fn pick<'a>(stored: Option<&str>, browser: impl IntoIterator<Item = &'a str>) -> Language {
    stored
        .and_then(|s| LANGUAGES.into_iter().find(|l| l.tag == s))
        .or_else(|| browser.into_iter().find_map(matching))
        .unwrap_or(LANGUAGES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_languages_pick_the_first_the_app_has() {
        let tag = |stored: Option<&str>, browser: &[&str]| pick(stored, browser.iter().copied()).tag;
        assert_eq!(tag(None, &["id-ID", "en-US"]), "id");
        assert_eq!(tag(None, &["zh-CN", "en"]), "zh-Hans");
        assert_eq!(tag(None, &["zh"]), "zh-Hans");
        assert_eq!(tag(None, &["zh-Hans-SG"]), "zh-Hans");
        assert_eq!(tag(None, &["zh-Hans-HK", "en"]), "zh-Hans", "the script decides over the region");
        assert_eq!(tag(None, &["zh-TW", "en"]), "en");
        assert_eq!(tag(None, &["zh-Hant-CN", "id"]), "id");
        assert_eq!(tag(None, &["inh", "zha", "en"]), "en", "only whole subtags match");
        assert_eq!(tag(None, &["fr-FR", "id"]), "id");
        assert_eq!(tag(None, &["zh-TW", "en-GB"]), "en");
        assert_eq!(tag(None, &["de", "fr"]), "en");
        assert_eq!(tag(None, &[]), "en");
    }

    #[test]
    fn a_remembered_choice_wins_unless_it_is_not_ours() {
        let tag = |stored: Option<&str>, browser: &[&str]| pick(stored, browser.iter().copied()).tag;
        assert_eq!(tag(Some("en"), &["zh-CN"]), "en");
        assert_eq!(tag(Some("zh-Hans"), &["id"]), "zh-Hans");
        assert_eq!(tag(Some("klingon"), &["id"]), "id");
    }
}
