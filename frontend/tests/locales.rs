//! The locale files (`frontend/locales/*.json`) agree: every file has every key the others have,
//! no text is empty, and each text names the same `{placeholders}` as the English one, so no page
//! shows a raw key, a blank, or a value in the wrong place in any language.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn locales_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/locales"))
}

/// The locales the app is built with, from `[package.metadata.leptos-i18n]` in Cargo.toml.
fn configured_locales() -> Vec<String> {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let section = manifest.split("[package.metadata.leptos-i18n]").nth(1).expect("the leptos-i18n section");
    let line = section.lines().find(|l| l.trim_start().starts_with("locales")).expect("a locales line");
    let list = line.split_once('=').unwrap().1;
    list.split(',').map(|t| t.trim().trim_matches(['[', ']', '"', ' ']).to_string()).filter(|t| !t.is_empty()).collect()
}

/// Every text of a locale file by its dotted key.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, value, out)?;
            }
            Ok(())
        }
        Value::String(text) => {
            out.insert(prefix.to_string(), text.clone());
            Ok(())
        }
        other => Err(format!("{prefix} is {other}, not text")),
    }
}

fn load(tag: &str) -> BTreeMap<String, String> {
    let path = locales_dir().join(format!("{tag}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out).unwrap_or_else(|e| panic!("{tag}: {e}"));
    out
}

/// `{name}` placeholders, filled by `format::fill`.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if after[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && end > 0 => {
                names.insert(after[..end].to_string());
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    names
}

/// What the locale files must agree on, as a list of complaints (empty when they do).
fn disagreements(locales: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let mut problems = Vec::new();
    let all_keys: BTreeSet<&String> = locales.values().flat_map(|texts| texts.keys()).collect();
    let english = &locales["en"];
    for (tag, texts) in locales {
        for key in &all_keys {
            match texts.get(*key) {
                None => problems.push(format!("{tag}: {key} is missing")),
                Some(text) if text.trim().is_empty() => problems.push(format!("{tag}: {key} is empty")),
                // leptos_i18n's own interpolation and components are not used: `{{` and `<x>`
                // would change how the text is compiled in.
                Some(text) if text.contains("{{") || text.contains("}}") => {
                    problems.push(format!("{tag}: {key} uses {{{{ }}}}; placeholders are {{name}}"))
                }
                Some(text) if text.contains('<') && text.contains('>') => {
                    problems.push(format!("{tag}: {key} has a <tag>, which leptos_i18n reads as a component"))
                }
                Some(text) => {
                    if let Some(reference) = english.get(*key)
                        && placeholders(text) != placeholders(reference)
                    {
                        problems.push(format!(
                            "{tag}: {key} has placeholders {:?}, English has {:?}",
                            placeholders(text),
                            placeholders(reference)
                        ));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn every_locale_file_has_every_key_with_text_and_the_same_placeholders() {
    let tags = configured_locales();
    assert!(tags.len() >= 3 && tags.contains(&"en".to_string()), "{tags:?}");
    let locales: BTreeMap<String, BTreeMap<String, String>> = tags.iter().map(|t| (t.clone(), load(t))).collect();
    assert!(locales["en"].len() > 100, "en.json has only {} texts", locales["en"].len());
    let problems = disagreements(&locales);
    assert!(problems.is_empty(), "the locale files disagree:\n{}", problems.join("\n"));
}

#[test]
fn every_locale_file_is_configured() {
    let tags: BTreeSet<String> = configured_locales().into_iter().collect();
    let files: BTreeSet<String> = std::fs::read_dir(locales_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(String::from))
        .collect();
    assert_eq!(files, tags, "locale files and [package.metadata.leptos-i18n] locales differ");
}

#[test]
fn the_check_catches_what_it_is_for() {
    let texts = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let locales: BTreeMap<String, BTreeMap<String, String>> = [
        ("en".to_string(), texts(&[("a", "{n} tasks"), ("b", "Start"), ("c", "Job {id}")])),
        ("id".to_string(), texts(&[("a", "{count} tugas"), ("b", " ")])),
        ("zh-Hans".to_string(), texts(&[("a", "{n} 个任务"), ("b", "开始"), ("c", "作业 {{ id }}"), ("d", "额外")])),
    ]
    .into_iter()
    .collect();
    let problems = disagreements(&locales);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("id: a has placeholders"), "{problems:?}");
    assert!(has("id: b is empty"), "{problems:?}");
    assert!(has("id: c is missing"), "{problems:?}");
    assert!(has("en: d is missing"), "{problems:?}");
    assert!(has("zh-Hans: c uses"), "{problems:?}");
    assert!(!has("zh-Hans: a"), "{problems:?}");
}

#[test]
fn placeholders_are_read_as_the_app_fills_them() {
    let names = |t: &str| placeholders(t).into_iter().collect::<Vec<_>>();
    assert_eq!(names("{verified} of {total} verified{failed}"), ["failed", "total", "verified"]);
    assert_eq!(names("π ≈ {pi}; {} and { x } are text"), ["pi"]);
    assert_eq!(names("{task} stands for the task's index."), ["task"]);
}
