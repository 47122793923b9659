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
use crate::poll::{self, Then};
use crate::{access, format, wgsl_error};
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
    set_title("Dashboard");
    // The client key opens from the browser's keystore (asynchronously, created on first use);
    // the card and the list follow once it is open.
    let client: RwSignal<Option<Result<(String, KeyStorage), String>>> = RwSignal::new(None);
    leptos::task::spawn_local(async move {
        let opened = browser::client_key().await.map(|(key, storage)| (key.public().to_hex(), storage));
        let _ = client.try_set(Some(opened.map_err(|e| e.to_string())));
    });
    let key_problem = move || {
        client.with(|c| match c {
            Some(Err(e)) => Some(format!("No client key: {e}. Jobs cannot be signed in this browser.")),
            _ => None,
        })
    };
    view! {
        <section class="page dashboard" data-testid="page-dashboard">
            <h1 data-testid="page-heading">"Dashboard"</h1>
            <p class="lead">"Post a job to the network and watch it being computed and verified."</p>
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
fn key_storage_note(storage: &KeyStorage) -> String {
    match storage {
        KeyStorage::Held { .. } => {
            "The key is held by this browser as a WebCrypto key: no script, not even this app's, can read it. \
            It signs every job you post. Clearing this site's data loses it."
                .to_string()
        }
        KeyStorage::Page { reason } => format!(
            "This browser cannot hold the key out of scripts' reach ({reason}), so it is kept in this site's storage, \
             where a script running on this page could read it. It signs every job you post. Clearing this site's data loses it."
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
            None => "Checking…".to_string(),
            Some(Ok(ClientView { escrow: Some(e), .. })) => format::amount(&e.balance, &e.denom),
            Some(Ok(_)) => "This relay runs jobs without payment".to_string(),
            Some(Err(e)) if e.is_not_found() => "No account yet: it opens with your first job".to_string(),
            Some(Err(e)) => format!("Unavailable: {e}"),
        })
    };
    view! {
        <section class="card client" aria-labelledby="client-heading">
            <h2 id="client-heading">"Your client key"</h2>
            <dl class="facts">
                <dt>"Key"</dt>
                <dd class="mono" data-testid="client-key" title=key.clone().unwrap_or_default()>
                    {key.as_deref().map(format::short_key).unwrap_or_else(|| "Unavailable".to_string())}
                </dd>
                <dt>"Balance"</dt>
                <dd data-testid="client-balance">{balance}</dd>
            </dl>
            <p
                class=if matches!(storage, Some(KeyStorage::Page { .. })) { "hint warning" } else { "hint" }
                data-testid="client-key-storage"
                data-held=matches!(storage, Some(KeyStorage::Held { .. })).to_string()
            >
                {storage.as_ref().map(key_storage_note)}
            </p>
            {older_client_key(key.as_deref()).map(|older| view! {
                <p class="hint warning" data-testid="client-key-older">
                    {format!(
                        "This browser also keeps an older client key, {}, in this site's storage. Jobs are signed with the key above now; the older key's balance stays with it, and it is left where it is.",
                        format::short_key(&older)
                    )}
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

#[component]
fn JobFormPanel() -> impl IntoView {
    let form = RwSignal::new(JobForm::default());
    let files: RwSignal<Vec<InputFile>> = RwSignal::new(Vec::new());
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
                    let _ = submission.try_set(Submission::Failed(format!("The job could not be signed: {e}")));
                    return;
                }
            };
            let total = built.uploads.len();
            for (i, upload) in built.uploads.iter().enumerate() {
                let _ = submission.try_set(Submission::Working(format!(
                    "Uploading {} ({}), {} of {total}…",
                    upload.name,
                    format::bytes(upload.bytes.len() as u64),
                    i + 1
                )));
                if let Err(e) = api::upload(&key, &upload.bytes, &upload.hash).await {
                    let _ = submission.try_set(Submission::Failed(format!("Uploading {} failed: {e}", upload.name)));
                    return;
                }
            }
            let _ = submission.try_set(Submission::Working("Signing and posting the job…".into()));
            // A paid job carries this key's consent to pay its deposit: the exact terms, for this
            // relay and its escrow only, usable for the next ten minutes.
            let escrow = if built.spec.price_per_replica > 0 {
                match api::health().await {
                    Ok(health) => health.escrow,
                    Err(e) => {
                        let _ = submission.try_set(Submission::Failed(format!("Cannot reach the relay: {e}")));
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
                    let _ = submission.try_set(Submission::Failed(format!("The job could not be signed: {e}")));
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
                    let _ = submission.try_set(Submission::Failed(
                        "The relay refused the kernel: see the error under the editor.".into(),
                    ));
                    point_at_error(editor, &message);
                    let _ = wgsl_failure.try_set(Some(message));
                }
                Err(e) => {
                    let _ = submission.try_set(Submission::Failed(format!("The relay refused the job: {e}")));
                }
            }
        });
    };

    let estimate = move || {
        form.with(|f| match job_form::estimate(f) {
            None => "Fill in the numbers to see the job's size and cost.".to_string(),
            Some(e) => {
                let tasks = format!("{} task{}", format::count(e.tasks), if e.tasks == 1 { "" } else { "s" });
                if e.worst == 0 {
                    format!("{tasks}, free (price 0).")
                } else {
                    format!(
                        "{tasks}; costs {} micro-units if every task agrees at once, at most {} with extra replicas ({} / {} units).",
                        format::thousands(e.expected),
                        format::thousands(e.worst),
                        format::micro(e.expected),
                        format::micro(e.worst)
                    )
                }
            }
        })
    };

    view! {
        <section class="card job-form" aria-labelledby="post-heading">
            <h2 id="post-heading">"Post a job"</h2>
            <form on:submit=submit novalidate data-testid="job-form">
                <div class="field">
                    <label for="job-kernel">"Kernel"</label>
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
                        {JobKind::ALL.into_iter().map(|k| view! { <option value=k.value()>{k.label()}</option> }).collect_view()}
                    </select>
                </div>

                {move || match kind.get() {
                    JobKind::Mandelbrot => mandelbrot_fields(form, error).into_any(),
                    JobKind::Matmul => matmul_fields(form, error).into_any(),
                    JobKind::MonteCarloPi => pi_fields(form, error).into_any(),
                    JobKind::Sha256NonceSearch => sha_fields(form, error).into_any(),
                    JobKind::Wgsl => wgsl_fields(form, files, error, wgsl_failure, editor).into_any(),
                }}

                <fieldset class="rules">
                    <legend>"Verification and payment"</legend>
                    <div class="fields">
                        <FormField form access=access!(replicas) field=Field::Replicas label="Replicas per task" kind="integer" error
                            hint="Independent devices that compute each task."/>
                        <FormField form access=access!(quorum) field=Field::Quorum label="Quorum" kind="integer" error
                            hint="Agreeing results that verify a task."/>
                        <FormField form access=access!(max_replicas) field=Field::MaxReplicas label="Most replicas" kind="integer" error
                            hint="Upper bound once results disagree."/>
                        <FormField form access=access!(price) field=Field::Price label="Price per replica" kind="integer" error
                            hint="In micro-units, paid per accepted replica."/>
                        <FormField form access=access!(deadline_minutes) field=Field::Deadline label="Deadline (minutes)" kind="integer" error
                            hint="Unfinished tasks fail and are refunded after this."/>
                        <FormField form access=access!(label) field=Field::Label label="Label (optional)" error/>
                    </div>
                </fieldset>

                <p class="estimate" data-testid="job-estimate" aria-live="polite">{estimate}</p>
                <Notice
                    text=Signal::derive(move || error.with(|e| e.as_ref().filter(|e| e.field.is_none()).map(|e| e.message.clone())))
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
                        {move || if busy() { "Posting…" } else { "Post job" }}
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

fn mandelbrot_fields(form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>"Image"</legend>
            <div class="fields">
                <FormField form access=access!(width) field=Field::Width label="Width (px)" kind="integer" error/>
                <FormField form access=access!(height) field=Field::Height label="Height (px)" kind="integer" error/>
                <FormField form access=access!(tile) field=Field::Tile label="Tile size (px)" kind="integer" error
                    hint="One task per tile."/>
                <FormField form access=access!(max_iter) field=Field::MaxIter label="Iterations" kind="integer" error/>
            </div>
        </fieldset>
        <fieldset>
            <legend>"Region"</legend>
            <div class="field">
                <label for="job-region">"Preset"</label>
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
                    {REGIONS.iter().map(|r| view! { <option value=r.name>{r.name}</option> }).collect_view()}
                    <option value="custom" disabled>"Custom"</option>
                </select>
            </div>
            <div class="fields">
                <FormField form access=access!(center_re) field=Field::CenterRe label="Centre (real)" error/>
                <FormField form access=access!(center_im) field=Field::CenterIm label="Centre (imaginary)" error/>
                <FormField form access=access!(scale) field=Field::Scale label="View width" error
                    hint="Width of the picture in the complex plane."/>
            </div>
        </fieldset>
    }
}

fn matmul_fields(form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>"Matrices"</legend>
            <p class="hint">"A (m×k) and B (k×n) are filled with random numbers from the seed and uploaded; each task computes a block of rows of A·B."</p>
            <div class="fields">
                <FormField form access=access!(m) field=Field::MatM label="m (rows of A)" kind="integer" error/>
                <FormField form access=access!(k) field=Field::MatK label="k (columns of A)" kind="integer" error/>
                <FormField form access=access!(n) field=Field::MatN label="n (columns of B)" kind="integer" error/>
                <FormField form access=access!(rows_per_task) field=Field::RowsPerTask label="Rows per task" kind="integer" error/>
                <FormField form access=access!(seed) field=Field::Seed label="Seed" kind="integer" error/>
            </div>
        </fieldset>
    }
}

fn pi_fields(form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>"Sampling"</legend>
            <div class="fields">
                <FormField form access=access!(pi_tasks) field=Field::PiTasks label="Tasks" kind="integer" error/>
                <FormField form access=access!(pi_workgroups) field=Field::PiWorkgroups label="Workgroups per task" kind="integer" error
                    hint="256 threads each."/>
                <FormField form access=access!(pi_samples) field=Field::PiSamples label="Samples per thread" kind="integer" error/>
                <FormField form access=access!(seed) field=Field::Seed label="Seed" kind="integer" error/>
            </div>
        </fieldset>
    }
}

fn sha_fields(form: RwSignal<JobForm>, error: RwSignal<Option<FormError>>) -> impl IntoView {
    view! {
        <fieldset>
            <legend>"Search"</legend>
            <p class="hint">"Finds the nonce whose SHA-256 of (SHA-256(prefix) ‖ nonce) has the most leading zero bits."</p>
            <div class="fields">
                <FormField form access=access!(sha_prefix) field=Field::ShaPrefix label="Prefix" error/>
                <FormField form access=access!(sha_tasks) field=Field::ShaTasks label="Tasks" kind="integer" error/>
                <FormField form access=access!(sha_workgroups) field=Field::ShaWorkgroups label="Workgroups per task" kind="integer" error
                    hint="256 threads each."/>
                <FormField form access=access!(sha_nonces) field=Field::ShaNonces label="Nonces per thread" kind="integer" error/>
            </div>
        </fieldset>
    }
}

fn wgsl_fields(
    form: RwSignal<JobForm>,
    files: RwSignal<Vec<InputFile>>,
    error: RwSignal<Option<FormError>>,
    wgsl_failure: RwSignal<Option<String>>,
    editor: NodeRef<leptos::html::Textarea>,
) -> impl IntoView {
    let gutter = NodeRef::<leptos::html::Div>::new();
    let location = Memo::new(move |_| wgsl_failure.with(|m| m.as_deref().and_then(wgsl_error::parse)));
    let line_count = Memo::new(move |_| form.with(|f| f.wgsl_source.split('\n').count().max(1)));
    let source_error =
        move || error.with(|e| e.as_ref().filter(|e| e.field == Some(Field::WgslSource)).map(|e| e.message.clone()));
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
                        let _ = file_problem.try_set(Some(e.to_string()));
                    }
                }
            }
        });
    };
    view! {
        <fieldset>
            <legend>"Kernel"</legend>
            <div class="field wgsl">
                <label for="wgsl-editor">"WGSL source"</label>
                <small class="hint" id="wgsl-hint">
                    "@group(0) @binding(0): a uniform of the task's params (u32 words); @binding(1..=N): the inputs, read-only storage; @binding(N+1): the output, read-write storage (starts zeroed)."
                </small>
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
                                <p><strong>{format!("Line {}, column {}: ", at.line, at.column)}</strong>{at.message.clone()}</p>
                                {excerpt.map(|(text, caret)| view! { <pre class="excerpt">{text}"\n"{caret}</pre> })}
                            }.into_any()
                        }
                        None => view! { <p>{message}</p> }.into_any(),
                    })}
                </div>
                <small class="hint">"Tab indents; press Escape, then Tab, to leave the editor."</small>
            </div>
            <div class="fields">
                <FormField form access=access!(wgsl_entry) field=Field::WgslEntry label="Entry point" error/>
                <FormField form access=access!(wgsl_tasks) field=Field::WgslTasks label="Tasks" kind="integer" error/>
                <FormField form access=access!(wgsl_workgroups) field=Field::WgslWorkgroups label="Workgroups x,y,z" error/>
                <FormField form access=access!(wgsl_output_size) field=Field::WgslOutputSize label="Output size (bytes)" kind="integer" error/>
                <FormField form access=access!(wgsl_params) field=Field::WgslParams label="Params (u32, comma separated)" error
                    hint="{task} stands for the task's index."/>
                <FormField form access=access!(wgsl_tolerance) field=Field::WgslTolerance label="Float tolerance (empty: exact)" error
                    hint="Compare outputs as f32 within this relative error."/>
            </div>
            <div class="field">
                <label for="job-wgsl-inputs">"Input files (bound from binding 1, in this order)"</label>
                <input id="job-wgsl-inputs" data-testid="job-wgsl-inputs" type="file" multiple on:change=add_files/>
                <Notice text=Signal::derive(move || file_problem.get()) tone=Tone::Error testid="job-wgsl-inputs-problem"/>
                {move || error.with(|e| e.as_ref().filter(|e| e.field == Some(Field::WgslInputs)).map(|e| {
                    view! { <small class="field-error" data-testid="job-wgsl-inputs-error">{e.message.clone()}</small> }
                }))}
                <ol class="files" data-testid="job-wgsl-input-list">
                    {move || files.with(|list| list.iter().enumerate().map(|(i, f)| {
                        let name = f.name.clone();
                        view! {
                            <li>
                                <span class="mono">{format!("binding {}: ", i + 1)}</span>
                                {name.clone()}" · "{format::bytes(f.bytes.len() as u64)}
                                <button type="button" class="link" aria-label=format!("Remove {name}")
                                    on:click=move |_| files.update(|f| { if i < f.len() { f.remove(i); } })>"Remove"</button>
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
                Err(e) => problem.set(Some(format!("The job list could not be refreshed: {e}"))),
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
                <h2 id="jobs-heading">"Latest jobs"</h2>
                <label class="check">
                    <input type="checkbox" data-testid="jobs-mine-only" disabled=client.is_none()
                        prop:checked=move || filter.get() == Filter::Mine
                        on:change:target=move |ev| filter.set(if ev.target().checked() { Filter::Mine } else { Filter::All })/>
                    <span>"Only mine"</span>
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
                    {move || if filter.get() == Filter::Mine { "You have not posted a job from this browser yet." } else { "No jobs yet. Post the first one above." }}
                </p>
            })}
        </section>
    }
}

#[component]
fn JobRow(id: u64, jobs: RwSignal<Vec<JobSummary>>, now: RwSignal<u64>) -> impl IntoView {
    let job = Memo::new(move |_| jobs.with(|l| l.iter().find(|j| j.id.0 == id).cloned()));
    let field = move |read: fn(&JobSummary) -> u32| Signal::derive(move || job.with(|j| j.as_ref().map_or(0, read)));
    let (verified, failed, total) = (field(|j| j.tasks_verified), field(|j| j.tasks_failed), field(|j| j.tasks_total));
    let title = move || {
        job.with(|j| match j {
            Some(j) if !j.label.trim().is_empty() => format!("Job {id}: {}", j.label),
            _ => format!("Job {id}"),
        })
    };
    let state = move || job.with(|j| state_label(j.as_ref().map_or(JobState::Running, |j| j.state)));
    let counts = move || {
        let failed = failed.get();
        let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        format!("{} / {} verified{failed}", verified.get(), total.get())
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
                <span>{move || job.with(|j| j.as_ref().map(|j| format::ago(now.get(), j.created_at_ms)).unwrap_or_default())}</span>
            </div>
        </li>
    }
}

/// The `data-state` value and the word shown for a job state.
pub fn state_label(state: JobState) -> (&'static str, &'static str) {
    match state {
        JobState::Running => ("running", "Running"),
        JobState::Done => ("done", "Done"),
        JobState::Failed => ("failed", "Failed"),
    }
}
