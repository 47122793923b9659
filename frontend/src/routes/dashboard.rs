//! Dashboard: post a job and follow the latest ones. The form builds a signed `JobSpec` with the
//! kernels' own job builders ([`crate::job_form`]), uploads the inputs, posts it, and opens the
//! job's page. Relay refusals show next to what caused them (WGSL errors at their line).

use crate::api::{self, JobFollower, Link};
use crate::app::set_title;
use crate::browser;
use crate::components::field::FormField;
use crate::components::notice::{Notice, Tone};
use crate::components::progress::ProgressBar;
use crate::error::Error;
use crate::job_form::{self, Field, FormError, InputFile, JobForm, JobKind, REGIONS};
use crate::job_model;
use crate::lang::{I18n, tr, use_i18n};
use crate::poll::{self, Then};
use crate::{access, form_text, format, lang, wgsl_error};
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use starling_protocol::JobId;
use starling_protocol::api::ClientView;
use starling_protocol::api::{JobState, JobSummary};
use starling_protocol::events::JobEvent;
use starling_protocol::page::KeyStorage;
use starling_protocol::sign::{Deployment, JobToSign, SignedJob};
use std::collections::HashMap;
use wasm_bindgen::JsCast;

/// How often the job list is refreshed (running jobs also update live over WebSockets).
const LIST_REFRESH_MS: u32 = 10_000;
/// How often the client's balance is refreshed (deposits and refunds move it).
const BALANCE_REFRESH_MS: u32 = 15_000;
/// Jobs shown in the list.
const LIST_LIMIT: u32 = 50;
/// How long a paid job's signed deposit authorization stays usable (the relay opens it at once).
const DEPOSIT_VALID_SECS: u64 = 600;
/// Running jobs followed live at once: the relay bounds event watchers per client.
const MAX_FOLLOWED: usize = 16;

#[component]
pub fn Dashboard() -> impl IntoView {
    let i18n = use_i18n();
    set_title(tr!(i18n, dashboard.title));
    // The client key opens from the browser's keystore (asynchronously, created on first use);
    // the card and the list follow once it is open.
    let client: RwSignal<Option<Result<(String, KeyStorage), String>>> = RwSignal::new(None);
    leptos::task::spawn_local(async move {
        let opened = browser::client_key().await.map(|(key, storage)| (key.public().to_hex(), storage));
        let _ = client.try_set(Some(opened.map_err(|e| lang::error_text(i18n, &e))));
    });
    let key_problem = move || {
        client.with(|c| match c {
            Some(Err(e)) => Some(format::fill(tr!(i18n, dashboard.no_client_key), &[("error", e)])),
            _ => None,
        })
    };
    view! {
        <section class="page dashboard" data-testid="page-dashboard">
            <h1 data-testid="page-heading">{tr!(i18n, dashboard.heading)}</h1>
            <p class="lead">{tr!(i18n, dashboard.lead)}</p>
            <Notice text=Signal::derive(key_problem) tone=Tone::Error testid="client-key-error"/>
            {move || client.get().map(|opened| {
                let (key, storage) = opened.ok().unzip();
                view! { <ClientCard key storage/> }
            })}
            <JobFormPanel/>
            {move || client.get().map(|opened| view! { <JobList client=opened.ok().map(|(key, _)| key)/> })}
        </section>
    }
}

/// Where the client key is kept, in words, for the card.
fn key_storage_note(i18n: I18n, storage: &KeyStorage) -> String {
    match storage {
        KeyStorage::Held { .. } => tr!(i18n, dashboard.key_held).to_string(),
        KeyStorage::Page { reason } => format::fill(
            tr!(i18n, dashboard.key_in_page),
            &[("reason", &crate::lang::key_storage_reason(i18n, reason))],
        ),
    }
}

/// A client secret still in `localStorage` that is not the key in use (`key`): one the keystore
/// did not import because it already held another.
fn older_client_key(key: Option<&str>) -> Option<String> {
    let older = browser::stored_keypair(browser::CLIENT_SECRET_KEY)?.public().to_hex();
    (Some(older.as_str()) != key).then_some(older)
}

#[component]
fn ClientCard(key: Option<String>, storage: Option<KeyStorage>) -> impl IntoView {
    let i18n = use_i18n();
    let info: RwSignal<Option<Result<ClientView, Error>>> = RwSignal::new(None);
    if let Some(key) = key.clone() {
        let fetch = move || {
            let key = key.clone();
            Some(async move { api::client(&key).await })
        };
        poll::into_signal(BALANCE_REFRESH_MS, info, fetch, |_| false);
    }
    let balance = move || {
        info.with(|i| match i {
            None => tr!(i18n, dashboard.checking).to_string(),
            Some(Ok(ClientView { escrow: Some(e), .. })) => format::amount(&e.balance, &e.denom),
            Some(Ok(_)) => tr!(i18n, dashboard.unpaid_relay).to_string(),
            Some(Err(e)) if e.is_not_found() => tr!(i18n, dashboard.no_account).to_string(),
            Some(Err(e)) => {
                format::fill(tr!(i18n, dashboard.balance_unavailable), &[("error", &lang::error_text(i18n, e))])
            }
        })
    };
    view! {
        <section class="card client" aria-labelledby="client-heading">
            <h2 id="client-heading">{tr!(i18n, dashboard.client_key)}</h2>
            <dl class="facts">
                <dt>{tr!(i18n, dashboard.key)}</dt>
                <dd class="mono" data-testid="client-key" title=key.clone().unwrap_or_default()>
                    {key.as_deref().map(format::short_key).unwrap_or_else(|| tr!(i18n, dashboard.unavailable).to_string())}
                </dd>
                <dt>{tr!(i18n, dashboard.balance)}</dt>
                <dd data-testid="client-balance">{balance}</dd>
            </dl>
            <p
                class=if matches!(storage, Some(KeyStorage::Page { .. })) { "hint warning" } else { "hint" }
                data-testid="client-key-storage"
                data-held=matches!(storage, Some(KeyStorage::Held { .. })).to_string()
            >
                {storage.as_ref().map(|s| key_storage_note(i18n, s))}
            </p>
            {older_client_key(key.as_deref()).map(|older| view! {
                <p class="hint warning" data-testid="client-key-older">
                    {format::fill(tr!(i18n, dashboard.older_client_key), &[("key", &format::short_key(&older))])}
                </p>
            })}
        </section>
    }
}

/// Signs `job` with the client key (through WebCrypto when the browser holds it).
async fn sign_job(key: &browser::Signer, job: JobToSign) -> Result<SignedJob, String> {
    let signature = key.sign(job.job_bytes()).await?;
    let deposit = match job.deposit_bytes() {
        Some(bytes) => Some(key.sign(bytes).await?),
        None => None,
    };
    job.signed(signature, deposit).map_err(str::to_string)
}

/// Where a submission stands.
#[derive(Debug, Clone, PartialEq)]
enum Submission {
    Idle,
    Working(String),
    Failed(String),
}

/// The job being written (its fields and picked files), provided above the app's redraw on a
/// change of language, so nothing typed is lost then (or on a visit to another page).
#[derive(Debug, Clone, Copy)]
pub struct JobDraft {
    form: RwSignal<JobForm>,
    files: RwSignal<Vec<InputFile>>,
}

impl JobDraft {
    pub fn new() -> Self {
        JobDraft { form: RwSignal::new(JobForm::default()), files: RwSignal::new(Vec::new()) }
    }
}

impl Default for JobDraft {
    fn default() -> Self {
        Self::new()
    }
}

#[component]
fn JobFormPanel() -> impl IntoView {
    let i18n = use_i18n();
    let JobDraft { form, files } = use_context::<JobDraft>().unwrap_or_default();
    let error: RwSignal<Option<FormError>> = RwSignal::new(None);
    let wgsl_failure: RwSignal<Option<String>> = RwSignal::new(None);
    let submission = RwSignal::new(Submission::Idle);
    let editor = NodeRef::<leptos::html::Textarea>::new();
    let navigate = use_navigate();
    let kind = Memo::new(move |_| form.with(|f| f.kind));
    let busy = move || matches!(submission.get(), Submission::Working(_));

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy() {
            return;
        }
        wgsl_failure.set(None);
        let built =
            files.with_untracked(|files| form.with_untracked(|f| job_form::build(f, files, browser::random_u64())));
        let built = match built {
            Ok(built) => built,
            Err(e) => {
                if let Some(field) = e.field {
                    focus(field.id());
                }
                error.set(Some(e));
                return;
            }
        };
        error.set(None);
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            // The client key signs the uploads (charged to it until the job uses them) and the job.
            let key = match browser::client_key().await {
                Ok((key, _)) => key,
                Err(e) => {
                    let _ = submission.try_set(Submission::Failed(format::fill(
                        tr!(i18n, dashboard.submit.not_signed),
                        &[("error", &lang::error_text(i18n, &e))],
                    )));
                    return;
                }
            };
            let total = built.uploads.len();
            for (i, upload) in built.uploads.iter().enumerate() {
                let _ = submission.try_set(Submission::Working(format::fill(
                    tr!(i18n, dashboard.submit.uploading),
                    &[
                        ("name", &upload_name(i18n, &upload.name)),
                        ("size", &format::bytes(upload.bytes.len() as u64)),
                        ("n", &(i + 1).to_string()),
                        ("total", &total.to_string()),
                    ],
                )));
                if let Err(e) = api::upload(&key, &upload.bytes, &upload.hash).await {
                    let _ = submission.try_set(Submission::Failed(format::fill(
                        tr!(i18n, dashboard.submit.upload_failed),
                        &[("name", &upload_name(i18n, &upload.name)), ("error", &lang::error_text(i18n, &e))],
                    )));
                    return;
                }
            }
            let _ = submission.try_set(Submission::Working(tr!(i18n, dashboard.submit.posting_step).into()));
            // A paid job carries this key's consent to pay its deposit: the exact terms, for this
            // relay and its escrow only, usable for the next ten minutes.
            let escrow = if built.spec.price_per_replica > 0 {
                match api::health().await {
                    Ok(health) => health.escrow,
                    Err(e) => {
                        let _ = submission.try_set(Submission::Failed(format::fill(
                            tr!(i18n, dashboard.submit.unreachable),
                            &[("error", &lang::error_text(i18n, &e))],
                        )));
                        return;
                    }
                }
            } else {
                None
            };
            let not_after = browser::now_ms() / 1000 + DEPOSIT_VALID_SECS;
            let paid = escrow.as_ref().map(|e| {
                (Deployment { chain_id: &e.chain_id, contract: &e.contract }, e.relay_address.as_str(), not_after)
            });
            let signed = match sign_job(&key, JobToSign::new(built.spec, key.public(), paid)).await {
                Ok(signed) => signed,
                Err(e) => {
                    let _ = submission.try_set(Submission::Failed(format::fill(
                        tr!(i18n, dashboard.submit.not_signed),
                        &[("error", &e)],
                    )));
                    return;
                }
            };
            match api::submit(&signed).await {
                Ok(job) => {
                    let _ = submission.try_set(Submission::Idle);
                    navigate(&format!("/jobs/{}", job.id), Default::default());
                }
                Err(e) if e.code() == Some("invalid_wgsl") => {
                    let message = e.to_string();
                    let _ = submission.try_set(Submission::Failed(tr!(i18n, dashboard.submit.kernel_refused).into()));
                    point_at_error(editor, &message);
                    let _ = wgsl_failure.try_set(Some(message));
                }
                Err(e) => {
                    let _ = submission.try_set(Submission::Failed(format::fill(
                        tr!(i18n, dashboard.submit.job_refused),
                        &[("error", &lang::error_text(i18n, &e))],
                    )));
                }
            }
        });
    };

    let estimate = move || {
        form.with(|f| match job_form::estimate(f) {
            None => tr!(i18n, dashboard.estimate.empty).to_string(),
            Some(e) => {
                let count = format::count(e.tasks);
                let tasks = if e.tasks == 1 {
                    tr!(i18n, dashboard.estimate.one_task).to_string()
                } else {
                    format::fill(tr!(i18n, dashboard.estimate.tasks), &[("n", &count)])
                };
                if e.worst == 0 {
                    format::fill(tr!(i18n, dashboard.estimate.free), &[("tasks", &tasks)])
                } else {
                    format::fill(
                        tr!(i18n, dashboard.estimate.cost),
                        &[
                            ("tasks", &tasks),
                            ("expected", &format::thousands(e.expected)),
                            ("worst", &format::thousands(e.worst)),
                            ("expected_units", &format::micro(e.expected)),
                            ("worst_units", &format::micro(e.worst)),
                        ],
                    )
                }
            }
        })
    };

    view! {
        <section class="card job-form" aria-labelledby="post-heading">
            <h2 id="post-heading">{tr!(i18n, dashboard.post_heading)}</h2>
            <form on:submit=submit novalidate data-testid="job-form">
                <div class="field">
                    <label for="job-kernel">{tr!(i18n, dashboard.kernel)}</label>
                    <select
                        id="job-kernel"
                        data-testid="job-kernel"
                        on:change:target=move |ev| {
                            if let Some(k) = JobKind::from_value(&ev.target().value()) {
                                form.update(|f| f.kind = k);
                                error.set(None);
                                wgsl_failure.set(None);
                            }
                        }
                        prop:value=move || kind.get().value()
                    >
                        {JobKind::ALL.into_iter().map(|k| view! { <option value=k.value()>{form_text::kind(i18n, k)}</option> }).collect_view()}
                    </select>
                </div>

                {move || match kind.get() {
                    JobKind::Mandelbrot => mandelbrot_fields(i18n, form, error).into_any(),
                    JobKind::Matmul => matmul_fields(i18n, form, error).into_any(),
                    JobKind::MonteCarloPi => pi_fields(i18n, form, error).into_any(),
                    JobKind::Sha256NonceSearch => sha_fields(i18n, form, error).into_any(),
                    JobKind::Wgsl => wgsl_fields(i18n, form, files, error, wgsl_failure, editor).into_any(),
                }}

                <fieldset class="rules">
                    <legend>{tr!(i18n, dashboard.rules)}</legend>
                    <div class="fields">
                        <FormField form access=access!(replicas) field=Field::Replicas kind="integer" error/>
                        <FormField form access=access!(quorum) field=Field::Quorum kind="integer" error/>
                        <FormField form access=access!(max_replicas) field=Field::MaxReplicas kind="integer" error/>
                        <FormField form access=access!(price) field=Field::Price kind="integer" error/>
                        <FormField form access=access!(deadline_minutes) field=Field::Deadline kind="integer" error/>
                        <FormField form access=access!(label) field=Field::Label error/>
                    </div>
                </fieldset>

                <p class="estimate" data-testid="job-estimate" aria-live="polite">{estimate}</p>
                <Notice
                    text=Signal::derive(move || error.with(|e| e.as_ref().filter(|e| e.field.is_none()).map(|e| form_text::error(i18n, e))))
                    tone=Tone::Error
                    testid="job-form-error"
                />
                <Notice
                    text=Signal::derive(move || match submission.get() {
                        Submission::Failed(m) => Some(m),
                        _ => None,
                    })
                    tone=Tone::Error
                    testid="job-submit-error"
                />
                <div class="actions">
                    <button type="submit" class="primary" data-testid="job-submit" disabled=busy aria-busy=move || busy().to_string()>
                        {move || if busy() { tr!(i18n, dashboard.posting) } else { tr!(i18n, dashboard.post) }}
                    </button>
                    <span class="step" role="status" data-testid="job-submit-status">
                        {move || match submission.get() {
                            Submission::Working(step) => step,
                            _ => String::new(),
                        }}
                    </span>
                </div>
            </form>
        </section>
    }
}

fn focus(id: &str) {
    if let Some(element) = browser::window().document().and_then(|d| d.get_element_by_id(id))
        && let Ok(element) = element.dyn_into::<web_sys::HtmlElement>()
    {
        let _ = element.focus();
    }
}

/// Focuses the editor and selects the line a WGSL error points at.
fn point_at_error(editor: NodeRef<leptos::html::Textarea>, message: &str) {
    let Some(textarea) = editor.try_get_untracked().flatten() else { return };
    let Some(at) = wgsl_error::parse(message) else { return };
    let source = textarea.value();
    if let Some((start, end)) = wgsl_error::line_range_utf16(&source, at.line) {
        let _ = textarea.focus();
        let _ = textarea.set_selection_range(start, end);
        // Scroll the line into view: line height times line index, roughly centred.
        let line_height = 20.0;
        let top = (f64::from(at.line) - 4.0).max(0.0) * line_height;
        textarea.set_scroll_top(top as i32);
    }
}

/// Tab inserts four spaces in the editor; right after Escape, Tab moves focus on as usual, so
/// keyboard users are never trapped.
fn indent_on_tab(ev: &leptos::ev::KeyboardEvent, editor: NodeRef<leptos::html::Textarea>, form: RwSignal<JobForm>) {
    let Some(textarea) = editor.get_untracked() else { return };
    let dataset = textarea.dataset();
    let escaped = dataset.get("escaped").is_some_and(|v| v == "1");
    let _ = dataset.set("escaped", if ev.key() == "Escape" { "1" } else { "0" });
    let plain_tab = ev.key() == "Tab" && !ev.shift_key() && !ev.ctrl_key() && !ev.alt_key() && !ev.meta_key();
    if !plain_tab || escaped {
        return;
    }
    ev.prevent_default();
    let start = textarea.selection_start().ok().flatten().unwrap_or(0);
    let end = textarea.selection_end().ok().flatten().unwrap_or(start);
    let _ = textarea.set_range_text_with_start_and_end_and_mode("    ", start, end, "end");
    let value = textarea.value();
    form.update(|f| f.wgsl_source = value);
}

fn mandelbrot_fields(i18n: I18n, form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>{tr!(i18n, dashboard.image)}</legend>
            <div class="fields">
                <FormField form access=access!(width) field=Field::Width kind="integer" error/>
                <FormField form access=access!(height) field=Field::Height kind="integer" error/>
                <FormField form access=access!(tile) field=Field::Tile kind="integer" error/>
                <FormField form access=access!(max_iter) field=Field::MaxIter kind="integer" error/>
            </div>
        </fieldset>
        <fieldset>
            <legend>{tr!(i18n, dashboard.region)}</legend>
            <div class="field">
                <label for="job-region">{tr!(i18n, dashboard.preset)}</label>
                <select
                    id="job-region"
                    data-testid="job-region"
                    on:change:target=move |ev| {
                        if let Some(r) = REGIONS.iter().find(|r| r.name == ev.target().value()) {
                            form.update(|f| {
                                f.center_re = r.center_re.to_string();
                                f.center_im = r.center_im.to_string();
                                f.scale = r.scale.to_string();
                            });
                        }
                    }
                    prop:value=move || {
                        form.with(|f| {
                            REGIONS
                                .iter()
                                .find(|r| r.center_re.to_string() == f.center_re && r.center_im.to_string() == f.center_im && r.scale.to_string() == f.scale)
                                .map(|r| r.name)
                                .unwrap_or("custom")
                        })
                    }
                >
                    {REGIONS.iter().enumerate().map(|(i, r)| view! { <option value=r.name>{form_text::region(i18n, i)}</option> }).collect_view()}
                    <option value="custom" disabled>{tr!(i18n, dashboard.custom_region)}</option>
                </select>
            </div>
            <div class="fields">
                <FormField form access=access!(center_re) field=Field::CenterRe error/>
                <FormField form access=access!(center_im) field=Field::CenterIm error/>
                <FormField form access=access!(scale) field=Field::Scale error/>
            </div>
        </fieldset>
    }
}

fn matmul_fields(i18n: I18n, form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>{tr!(i18n, dashboard.matrices)}</legend>
            <p class="hint">{tr!(i18n, dashboard.matrices_hint)}</p>
            <div class="fields">
                <FormField form access=access!(m) field=Field::MatM kind="integer" error/>
                <FormField form access=access!(k) field=Field::MatK kind="integer" error/>
                <FormField form access=access!(n) field=Field::MatN kind="integer" error/>
                <FormField form access=access!(rows_per_task) field=Field::RowsPerTask kind="integer" error/>
                <FormField form access=access!(seed) field=Field::Seed kind="integer" error/>
            </div>
        </fieldset>
    }
}

fn pi_fields(i18n: I18n, form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>{tr!(i18n, dashboard.sampling)}</legend>
            <div class="fields">
                <FormField form access=access!(pi_tasks) field=Field::PiTasks kind="integer" error/>
                <FormField form access=access!(pi_workgroups) field=Field::PiWorkgroups kind="integer" error/>
                <FormField form access=access!(pi_samples) field=Field::PiSamples kind="integer" error/>
                <FormField form access=access!(seed) field=Field::Seed kind="integer" error/>
            </div>
        </fieldset>
    }
}

fn sha_fields(i18n: I18n, form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>{tr!(i18n, dashboard.search)}</legend>
            <p class="hint">{tr!(i18n, dashboard.search_hint)}</p>
            <div class="fields">
                <FormField form access=access!(sha_prefix) field=Field::ShaPrefix error/>
                <FormField form access=access!(sha_tasks) field=Field::ShaTasks kind="integer" error/>
                <FormField form access=access!(sha_workgroups) field=Field::ShaWorkgroups kind="integer" error/>
                <FormField form access=access!(sha_nonces) field=Field::ShaNonces kind="integer" error/>
            </div>
        </fieldset>
    }
}

fn wgsl_fields(
    i18n: I18n,
    form: RwSignal<JobForm>,
    files: RwSignal<Vec<InputFile>>,
    error: RwSignal<Option<FormError>>,
    wgsl_failure: RwSignal<Option<String>>,
    editor: NodeRef<leptos::html::Textarea>,
) -> impl IntoView {
    let gutter = NodeRef::<leptos::html::Div>::new();
    let location = Memo::new(move |_| wgsl_failure.with(|m| m.as_deref().and_then(wgsl_error::parse)));
    let line_count = Memo::new(move |_| form.with(|f| f.wgsl_source.split('\n').count().max(1)));
    let source_error = move || {
        error.with(|e| e.as_ref().filter(|e| e.field == Some(Field::WgslSource)).map(|e| form_text::error(i18n, e)))
    };
    let file_problem = RwSignal::new(None::<String>);
    let add_files = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(list) = input.files() else { return };
        let picked: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        input.set_value("");
        leptos::task::spawn_local(async move {
            for file in picked {
                match browser::read_file(&file).await {
                    Ok(bytes) => {
                        files.try_update(|f| f.push(InputFile { name: file.name(), bytes }));
                    }
                    Err(e) => {
                        let _ = file_problem.try_set(Some(lang::error_text(i18n, &e)));
                    }
                }
            }
        });
    };
    view! {
        <fieldset>
            <legend>{tr!(i18n, dashboard.kernel)}</legend>
            <div class="field wgsl">
                <label for="wgsl-editor">{tr!(i18n, form.field.wgsl_source)}</label>
                <small class="hint" id="wgsl-hint">{tr!(i18n, dashboard.wgsl_hint)}</small>
                <div class="editor" class:has-error=move || location.get().is_some() || source_error().is_some()>
                    <div class="gutter" node_ref=gutter aria-hidden="true">
                        {move || {
                            let bad = location.get().map(|l| l.line as usize);
                            (1..=line_count.get())
                                .map(|n| view! { <span class:bad=bad == Some(n)>{n}</span> })
                                .collect_view()
                        }}
                    </div>
                    <textarea
                        id="wgsl-editor"
                        data-testid="wgsl-editor"
                        node_ref=editor
                        spellcheck="false"
                        autocapitalize="off"
                        autocomplete="off"
                        wrap="off"
                        rows="18"
                        aria-describedby="wgsl-hint wgsl-error"
                        aria-invalid=move || (location.get().is_some() || source_error().is_some()).then_some("true")
                        prop:value=move || form.with(|f| f.wgsl_source.clone())
                        on:input:target=move |ev| {
                            let value = ev.target().value();
                            form.update(|f| f.wgsl_source = value);
                        }
                        on:scroll:target=move |ev| {
                            if let Some(g) = gutter.get_untracked() {
                                g.set_scroll_top(ev.target().scroll_top());
                            }
                        }
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| indent_on_tab(&ev, editor, form)
                    ></textarea>
                </div>
                <div id="wgsl-error" class="wgsl-error" role="alert" data-testid="wgsl-error"
                    data-line=move || location.get().map(|l| l.line.to_string())
                    data-column=move || location.get().map(|l| l.column.to_string())
                    hidden=move || wgsl_failure.with(Option::is_none) && source_error().is_none()
                >
                    {move || source_error()}
                    {move || wgsl_failure.get().map(|message| match wgsl_error::parse(&message) {
                        Some(at) => {
                            let excerpt = form.with(|f| wgsl_error::excerpt(&f.wgsl_source, &at));
                            view! {
                                <p><strong>{format::fill(tr!(i18n, dashboard.wgsl_at), &[("line", &at.line.to_string()), ("column", &at.column.to_string())])}" "</strong>{at.message.clone()}</p>
                                {excerpt.map(|(text, caret)| view! { <pre class="excerpt">{text}"\n"{caret}</pre> })}
                            }.into_any()
                        }
                        None => view! { <p>{message}</p> }.into_any(),
                    })}
                </div>
                <small class="hint">{tr!(i18n, dashboard.editor_hint)}</small>
            </div>
            <div class="fields">
                <FormField form access=access!(wgsl_entry) field=Field::WgslEntry error/>
                <FormField form access=access!(wgsl_tasks) field=Field::WgslTasks kind="integer" error/>
                <FormField form access=access!(wgsl_workgroups) field=Field::WgslWorkgroups error/>
                <FormField form access=access!(wgsl_output_size) field=Field::WgslOutputSize kind="integer" error/>
                <FormField form access=access!(wgsl_params) field=Field::WgslParams error/>
                <FormField form access=access!(wgsl_tolerance) field=Field::WgslTolerance error/>
            </div>
            <div class="field">
                <label for="job-wgsl-inputs">{tr!(i18n, form.field.wgsl_inputs)}</label>
                <input id="job-wgsl-inputs" data-testid="job-wgsl-inputs" type="file" multiple on:change=add_files/>
                <Notice text=Signal::derive(move || file_problem.get()) tone=Tone::Error testid="job-wgsl-inputs-problem"/>
                {move || error.with(|e| e.as_ref().filter(|e| e.field == Some(Field::WgslInputs)).map(|e| {
                    view! { <small class="field-error" data-testid="job-wgsl-inputs-error">{form_text::error(i18n, e)}</small> }
                }))}
                <ol class="files" data-testid="job-wgsl-input-list">
                    {move || files.with(|list| list.iter().enumerate().map(|(i, f)| {
                        let name = f.name.clone();
                        view! {
                            <li>
                                <span class="mono">{format!("@binding({}): ", i + 1)}</span>
                                {name.clone()}" · "{format::bytes(f.bytes.len() as u64)}
                                <button type="button" class="link" aria-label=format::fill(tr!(i18n, dashboard.remove_file), &[("name", &name)])
                                    on:click=move |_| files.update(|f| { if i < f.len() { f.remove(i); } })>{tr!(i18n, dashboard.remove)}</button>
                            </li>
                        }
                    }).collect_view())}
                </ol>
            </div>
        </fieldset>
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    All,
    Mine,
}

#[component]
fn JobList(client: Option<String>) -> impl IntoView {
    let i18n = use_i18n();
    let jobs: RwSignal<Vec<JobSummary>> = RwSignal::new(Vec::new());
    let problem: RwSignal<Option<String>> = RwSignal::new(None);
    let loaded = RwSignal::new(false);
    let filter = RwSignal::new(Filter::All);
    let followers: StoredValue<HashMap<u64, JobFollower>, LocalStorage> = StoredValue::new_local(HashMap::new());
    let apply = move |event: JobEvent| {
        jobs.maybe_update(|list| job_model::apply_to_list(list, event));
    };

    let sync_followers = move || {
        let running: Vec<u64> = jobs.with_untracked(|l| {
            l.iter().filter(|j| j.state == JobState::Running).map(|j| j.id.0).take(MAX_FOLLOWED).collect()
        });
        followers.update_value(|map| {
            map.retain(|id, _| running.contains(id));
            for id in running {
                map.entry(id).or_insert_with(|| {
                    JobFollower::start(JobId(id), apply, |link| {
                        if let Link::Reconnecting(why) = link {
                            web_sys::console::debug_1(&wasm_bindgen::JsValue::from_str(&format!("job events: {why}")));
                        }
                    })
                });
            }
        });
    };

    poll::every(
        LIST_REFRESH_MS,
        || Some(api::jobs(LIST_LIMIT)),
        move |result| {
            match result {
                Ok(list) => {
                    jobs.set(list);
                    problem.set(None);
                    sync_followers();
                }
                Err(e) => problem.set(Some(format::fill(
                    tr!(i18n, dashboard.list_refresh_failed),
                    &[("error", &lang::error_text(i18n, &e))],
                ))),
            }
            loaded.set(true);
            Then::Again
        },
    );

    let mine_key = client.clone();
    let shown = Memo::new(move |_| {
        let filter = filter.get();
        jobs.with(|list| {
            list.iter()
                .filter(|j| filter == Filter::All || mine_key.as_deref() == Some(j.client.to_hex().as_str()))
                .map(|j| j.id.0)
                .collect::<Vec<_>>()
        })
    });
    let now = RwSignal::new(browser::now_ms());
    let tick = set_interval_with_handle(move || now.set(browser::now_ms()), std::time::Duration::from_secs(5)).ok();
    on_cleanup(move || {
        if let Some(t) = tick {
            t.clear();
        }
    });

    view! {
        <section class="card job-list" aria-labelledby="jobs-heading">
            <div class="card-head">
                <h2 id="jobs-heading">{tr!(i18n, dashboard.latest_jobs)}</h2>
                <label class="check">
                    <input type="checkbox" data-testid="jobs-mine-only" disabled=client.is_none()
                        prop:checked=move || filter.get() == Filter::Mine
                        on:change:target=move |ev| filter.set(if ev.target().checked() { Filter::Mine } else { Filter::All })/>
                    <span>{tr!(i18n, dashboard.only_mine)}</span>
                </label>
            </div>
            <Notice text=Signal::derive(move || problem.get()) tone=Tone::Warning testid="job-list-error"/>
            <ul class="jobs" data-testid="job-list" aria-busy=move || (!loaded.get()).to_string()>
                <For each=move || shown.get() key=|id| *id let:id>
                    <JobRow id jobs now/>
                </For>
            </ul>
            {move || (loaded.get() && shown.with(Vec::is_empty)).then(|| view! {
                <p class="empty" data-testid="job-list-empty">
                    {move || if filter.get() == Filter::Mine { tr!(i18n, dashboard.none_mine) } else { tr!(i18n, dashboard.none_yet) }}
                </p>
            })}
        </section>
    }
}

#[component]
fn JobRow(id: u64, jobs: RwSignal<Vec<JobSummary>>, now: RwSignal<u64>) -> impl IntoView {
    let i18n = use_i18n();
    let job = Memo::new(move |_| jobs.with(|l| l.iter().find(|j| j.id.0 == id).cloned()));
    let field = move |read: fn(&JobSummary) -> u32| Signal::derive(move || job.with(|j| j.as_ref().map_or(0, read)));
    let (verified, failed, total) = (field(|j| j.tasks_verified), field(|j| j.tasks_failed), field(|j| j.tasks_total));
    let title = move || {
        job.with(|j| match j {
            Some(j) if !j.label.trim().is_empty() => job_title(i18n, id, Some(&j.label)),
            _ => job_title(i18n, id, None),
        })
    };
    let state = move || job.with(|j| state_label(i18n, j.as_ref().map_or(JobState::Running, |j| j.state)));
    let counts = move || {
        let failed = failed.get();
        let (verified, total) = (format::count(u64::from(verified.get())), format::count(u64::from(total.get())));
        if failed > 0 {
            format::fill(
                tr!(i18n, dashboard.row_counts_failed),
                &[("verified", &verified), ("total", &total), ("failed", &format::count(u64::from(failed)))],
            )
        } else {
            format::fill(tr!(i18n, dashboard.row_counts), &[("verified", &verified), ("total", &total)])
        }
    };
    view! {
        <li class="job-row" data-testid="job-row" data-job-id=id.to_string() data-state=move || state().0>
            <div class="job-row-head">
                <a href=format!("/jobs/{id}") data-testid="job-link">{title}</a>
                <span class=move || format!("badge {}", state().0) data-testid="job-state">{move || state().1}</span>
            </div>
            <ProgressBar verified failed total label=Signal::derive(title) job_id=id/>
            <div class="job-row-meta">
                <span class="mono">{move || job.with(|j| j.as_ref().map(|j| j.kernel.clone()).unwrap_or_default())}</span>
                <span data-testid="job-counts">{counts}</span>
                <span title=move || job.with(|j| j.as_ref().map(|j| lang::date_time(j.created_at_ms)))>
                    {move || job.with(|j| j.as_ref().map(|j| format::ago(now.get(), j.created_at_ms)).unwrap_or_default())}
                </span>
            </div>
        </li>
    }
}

/// The `data-state` value and the word shown for a job state.
pub fn state_label(i18n: I18n, state: JobState) -> (&'static str, &'static str) {
    match state {
        JobState::Running => ("running", tr!(i18n, job_state.running)),
        JobState::Done => ("done", tr!(i18n, job_state.done)),
        JobState::Failed => ("failed", tr!(i18n, job_state.failed)),
    }
}

/// `Job 12`, or `Job 12: label`.
pub fn job_title(i18n: I18n, id: u64, label: Option<&str>) -> String {
    let id = id.to_string();
    match label {
        Some(label) => format::fill(tr!(i18n, job.title_labelled), &[("id", &id), ("label", label)]),
        None => format::fill(tr!(i18n, job.title), &[("id", &id)]),
    }
}

/// What an upload is called in progress messages: the generated matrices by name, files as named.
fn upload_name(i18n: I18n, name: &str) -> String {
    match name.strip_prefix("matrix ") {
        Some(rest) => format::fill(tr!(i18n, dashboard.submit.matrix), &[("matrix", rest)]),
        None => name.to_string(),
    }
}
