//! `/jobs/:id`: one job task by task. A grid shows every task's state (live over the job's event
//! WebSocket), a chart its verified tasks over time, and the results section offers each output,
//! everything in one archive, a readable summary, and for Mandelbrot renders the picture itself.
//!
//! One module per section: [`overview`], [`grid`], [`throughput`], [`outputs`], [`preview`]
//! (Mandelbrot) and [`matmul`] (the in-page check); the job's state is the pure
//! [`crate::job_model::JobModel`], mirrored here into signals.

mod grid;
mod matmul;
mod outputs;
mod overview;
mod preview;
mod throughput;
mod training;

use crate::api::{self, JobFollower, Link};
use crate::app::set_title;
use crate::browser;
use crate::components::chart::{LineChart, Series};
use crate::components::notice::{Notice, Tone};
use crate::components::progress::ProgressBar;
use crate::error::Error;
use crate::job_model::{Cell, Cells, JobModel};
use crate::lang::{I18n, tr, use_i18n};
use crate::poll::{self, Then};
use crate::results::{self, Progress};
use crate::routes::dashboard::{job_title, state_label};
use crate::{format, job_form, lang};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use starling_protocol::JobId;
use starling_protocol::api::JobEscrow;
use starling_protocol::api::{JobDetail, JobState, JobSummary, ReplicaState, TaskState};
use starling_protocol::events::JobEvent;
use starling_protocol::job::{BuiltinKernel, JobSpec};
use wasm_bindgen::{Clamped, JsCast};

use grid::TaskGrid;
use matmul::MatmulCheck;
use outputs::Results;
use overview::Overview;
use preview::MandelbrotPreview;
use throughput::Throughput;
use training::Training;
/// Replica details are refreshed this often while the job runs (task states arrive live).
const DETAIL_REFRESH_MS: u32 = 15_000;
/// How often a job's money in escrow is refreshed.
const ESCROW_REFRESH_MS: u32 = 10_000;
/// Largest Mandelbrot image previewed in the page (pixels): bigger renders are downloaded.
const MAX_PREVIEW_PIXELS: u64 = 4096 * 4096;
/// Outputs fetched on their own for a summary only while the whole job's output is this small.
const AUTO_SUMMARY_BYTES: u64 = 8 << 20;
/// Most multiply-adds the in-page CPU check of a matmul job does (about a second of wasm).
const MAX_CHECK_WORK: u64 = 1 << 28;

#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|s| s.parse::<u64>().ok())));
    move || match id.get() {
        Some(id) => view! { <JobView id=JobId(id)/> }.into_any(),
        None => {
            let i18n = use_i18n();
            set_title(tr!(i18n, job.no_such_title));
            view! {
                <section class="page" data-testid="page-job">
                    <h1 data-testid="page-heading">{tr!(i18n, job.no_such_heading)}</h1>
                    <p>{tr!(i18n, job.no_such_text)}" "<a href="/dashboard">{tr!(i18n, job.see_latest)}</a></p>
                </section>
            }
            .into_any()
        }
    }
}

/// Everything the page knows about the job: the pure [`JobModel`] decides, and its parts are
/// mirrored into signals; cells are separate signals so one event redraws one cell, not
/// thousands.
#[derive(Clone, Copy)]
struct JobData {
    id: JobId,
    model: StoredValue<JobModel, LocalStorage>,
    summary: RwSignal<Option<JobSummary>>,
    spec: RwSignal<Option<JobSpec>>,
    cells: RwSignal<Vec<RwSignal<Cell>>>,
    progress: RwSignal<Progress>,
    /// Verified outputs fetched so far, by task index.
    outputs: StoredValue<Vec<Option<Vec<u8>>>, LocalStorage>,
    /// Bumped whenever `outputs` gains an entry.
    outputs_version: RwSignal<u32>,
    link: RwSignal<Option<Link>>,
}

impl JobData {
    fn apply_detail(self, detail: JobDetail) {
        let now = browser::now_ms();
        if let Some(touched) = self.model.try_update_value(|m| m.apply_detail(detail, now)) {
            self.mirror(touched);
        }
    }

    fn apply_event(self, event: JobEvent) {
        let now = browser::now_ms();
        if let Some(touched) = self.model.try_update_value(|m| m.apply_event(event, now)) {
            self.mirror(touched);
        }
    }

    /// Brings the signals in line with the model after a change that touched `cells`.
    fn mirror(self, cells: Cells) {
        self.model.with_value(|m| {
            match cells {
                Cells::Replaced => {
                    self.cells.set(m.cells.iter().cloned().map(RwSignal::new).collect());
                    self.outputs.set_value(vec![None; m.cells.len()]);
                }
                Cells::Changed(indices) => {
                    for index in indices {
                        let signal = self.cells.with_untracked(|signals| signals.get(index as usize).copied());
                        if let (Some(signal), Some(cell)) = (signal, m.cells.get(index as usize)) {
                            signal.set(cell.clone());
                        }
                    }
                }
            }
            if self.summary.with_untracked(|s| *s != m.summary) {
                self.summary.set(m.summary.clone());
            }
            if self.spec.with_untracked(Option::is_none) && m.spec.is_some() {
                self.spec.set(m.spec.clone());
            }
            if self.progress.with_untracked(|p| *p != m.progress) {
                self.progress.set(m.progress.clone());
            }
        });
    }

    /// Indices of verified tasks; empty once the page is gone (async work calls this after awaits).
    fn verified_indices(self) -> Vec<u32> {
        self.cells
            .try_with_untracked(|cells| {
                cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.try_with_untracked(|c| c.state == TaskState::Verified).unwrap_or(false))
                    .map(|(i, _)| i as u32)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fetches the outputs of `indices` not fetched yet; `progress` hears (done, total).
    async fn fetch_outputs(self, indices: &[u32], progress: impl Fn(usize, usize)) -> Result<(), Error> {
        let missing: Vec<u32> = indices
            .iter()
            .copied()
            .filter(|&i| {
                self.outputs.try_with_value(|o| o.get(i as usize).is_some_and(Option::is_none)).unwrap_or(false)
            })
            .collect();
        for (n, &index) in missing.iter().enumerate() {
            progress(n, missing.len());
            let bytes = api::task_output(self.id, index).await?;
            let stored = self.outputs.try_update_value(|o| {
                if let Some(slot) = o.get_mut(index as usize) {
                    *slot = Some(bytes);
                }
            });
            if stored.is_none() {
                // The page is gone.
                return Ok(());
            }
            self.outputs_version.try_update(|v| *v += 1);
        }
        progress(missing.len(), missing.len());
        Ok(())
    }

    /// Every task's output, once all are fetched (`None` before, or once the page is gone).
    fn all_outputs(self) -> Option<Vec<Vec<u8>>> {
        self.outputs.try_with_value(|o| o.iter().cloned().collect::<Option<Vec<_>>>()).flatten()
    }
}

#[component]
fn JobView(id: JobId) -> impl IntoView {
    let i18n = use_i18n();
    set_title(&job_title(i18n, id.0, None));
    let data = JobData {
        id,
        model: StoredValue::new_local(JobModel::new(id)),
        summary: RwSignal::new(None),
        spec: RwSignal::new(None),
        cells: RwSignal::new(Vec::new()),
        progress: RwSignal::new(Progress::default()),
        outputs: StoredValue::new_local(Vec::new()),
        outputs_version: RwSignal::new(0),
        link: RwSignal::new(None),
    };
    let load_error: RwSignal<Option<Error>> = RwSignal::new(None);
    let follower: StoredValue<Option<JobFollower>, LocalStorage> = StoredValue::new_local(None);

    // First load, then replica details now and then while the job runs (its task states and
    // summary arrive live from the job's events).
    let mut first = true;
    let loaded_detail = move |result: Result<JobDetail, Error>| match result {
        Ok(detail) => {
            let running = detail.summary.state == JobState::Running;
            data.apply_detail(detail);
            load_error.set(None);
            if std::mem::take(&mut first) && running {
                let on_event = move |event: JobEvent| {
                    let ended = matches!(event, JobEvent::JobDone { .. } | JobEvent::JobFailed { .. });
                    data.apply_event(event);
                    if ended {
                        // Fetch the final replica states once (skipped when the page is gone).
                        leptos::task::spawn_local(async move {
                            if let Ok(detail) = api::job(id).await
                                && data.summary.try_get_untracked().is_some()
                            {
                                data.apply_detail(detail);
                            }
                        });
                    }
                };
                let on_link = move |link| {
                    let _ = data.link.try_set(Some(link));
                };
                follower.set_value(Some(JobFollower::start(id, on_event, on_link)));
            }
            // The events may have ended it since.
            let still_running =
                data.summary.with_untracked(|s| s.as_ref().is_some_and(|s| s.state == JobState::Running));
            if running && still_running { Then::Again } else { Then::Stop }
        }
        Err(e) => {
            let fatal = e.is_not_found();
            // After a first success, keep showing what we have through a blip.
            if data.summary.with_untracked(Option::is_none) || fatal {
                load_error.set(Some(e));
            }
            if fatal { Then::Stop } else { Then::Again }
        }
    };
    poll::every(DETAIL_REFRESH_MS, move || Some(api::job(id)), loaded_detail);

    // Only the first answer mounts the sections; later ones update them in place.
    let loaded = Memo::new(move |_| data.summary.with(Option::is_some));
    let heading = move || {
        data.summary.with(|s| match s {
            Some(s) if !s.label.trim().is_empty() => job_title(i18n, id.0, Some(&s.label)),
            _ => job_title(i18n, id.0, None),
        })
    };

    view! {
        <section class="page job" data-testid="page-job" data-job-id=id.0.to_string()>
            <p class="crumbs"><a href="/dashboard">"← "{tr!(i18n, nav.dashboard)}</a></p>
            <h1 data-testid="page-heading">{heading}</h1>
            <Notice
                text=Signal::derive(move || load_error.with(|e| e.as_ref().map(|e| {
                    if e.is_not_found() {
                        format::fill(tr!(i18n, job.not_found), &[("id", &id.to_string())])
                    } else {
                        format::fill(tr!(i18n, job.load_failed), &[("error", &lang::error_text(i18n, e))])
                    }
                })))
                tone=Tone::Error
                testid="job-load-error"
            />
            {move || loaded.get().then(|| view! {
                <Overview data/>
                <TaskGrid data/>
                <Throughput data/>
                <Training data/>
                <Results data/>
            })}
            {move || (!loaded.get() && load_error.with(Option::is_none)).then(|| view! {
                <p class="loading" data-testid="job-loading">{tr!(i18n, job.loading)}</p>
            })}
        </section>
    }
}
