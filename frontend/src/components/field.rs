//! A labelled input bound to one field of the job form, showing that field's error beside it.

use crate::form_text;
use crate::job_form::{Field, FormError, JobForm};
use crate::lang::use_i18n;
use leptos::prelude::*;

/// Reads and writes one text field of [`JobForm`].
pub type Access = (fn(&JobForm) -> &String, fn(&mut JobForm) -> &mut String);

/// `access!(width)` → the getter and setter of `JobForm::width`.
#[macro_export]
macro_rules! access {
    ($name:ident) => {
        (
            (|f: &$crate::job_form::JobForm| &f.$name) as fn(&$crate::job_form::JobForm) -> &String,
            (|f: &mut $crate::job_form::JobForm| &mut f.$name) as fn(&mut $crate::job_form::JobForm) -> &mut String,
        )
    };
}

#[component]
pub fn FormField(
    form: RwSignal<JobForm>,
    access: Access,
    /// Also names the label and hint (`form_text`).
    field: Field,
    /// `integer` fields get a numeric keyboard on phones; `text` (also for signed or fractional
    /// numbers, whose keyboards lack a minus sign on some phones) the full one.
    #[prop(default = "text")]
    kind: &'static str,
    error: RwSignal<Option<FormError>>,
) -> impl IntoView {
    let i18n = use_i18n();
    let label = form_text::label(i18n, field);
    let hint = form_text::hint(i18n, field);
    let has_hint = hint.is_some();
    let (get, set) = access;
    let id = field.id();
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let mine = move || error.with(|e| e.as_ref().filter(|e| e.field == Some(field)).map(|e| form_text::error(i18n, e)));
    let described = {
        let (error_id, hint_id) = (error_id.clone(), hint_id.clone());
        move || {
            let mut ids = Vec::new();
            if has_hint {
                ids.push(hint_id.clone());
            }
            if mine().is_some() {
                ids.push(error_id.clone());
            }
            (!ids.is_empty()).then(|| ids.join(" "))
        }
    };
    let inputmode = (kind == "integer").then_some("numeric");
    view! {
        <div class="field" class:invalid=move || mine().is_some()>
            <label for=id>{label}</label>
            <input
                id=id
                name=id
                data-testid=id
                type="text"
                inputmode=inputmode
                autocomplete="off"
                spellcheck="false"
                prop:value=move || form.with(|f| get(f).clone())
                on:input:target=move |ev| {
                    let value = ev.target().value();
                    form.update(|f| *set(f) = value);
                    if error.with_untracked(|e| e.as_ref().is_some_and(|e| e.field == Some(field))) {
                        error.set(None);
                    }
                }
                aria-invalid=move || mine().is_some().then_some("true")
                aria-describedby=described
            />
            {has_hint.then(|| view! { <small id=hint_id class="hint">{hint}</small> })}
            {move || mine().map(|m| view! { <small id=error_id.clone() class="field-error" data-testid=format!("{id}-error")>{m}</small> })}
        </div>
    }
}
