//! `/jobs/:id`: one job task by task. A grid shows every task's state (live over the job's event
//! WebSocket), a chart its verified tasks over time, and the results section offers each output,
//! everything in one archive, a readable summary, and for Mandelbrot renders the picture itself.

use super::Alive;
use crate::api::{self, JobFollower, Link};
use crate::app::set_title;
use crate::browser;
use crate::components::chart::{LineChart, Series};
use crate::components::notice::{Notice, Tone};
use crate::components::progress::ProgressBar;
use crate::error::Error;
use crate::results::{self, Progress};
use crate::routes::dashboard::state_label;
use crate::{format, job_form};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use starling_protocol::api::JobEscrow;
use starling_protocol::api::{JobDetail, JobState, JobSummary, ReplicaState, ReplicaView, TaskState};
use starling_protocol::events::JobEvent;
use starling_protocol::job::{BuiltinKernel, JobSpec};
use starling_protocol::{Hash32, JobId};
use wasm_bindgen::{Clamped, JsCast};

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
            set_title("Job");
            view! {
                <section class="page" data-testid="page-job">
                    <h1 data-testid="page-heading">"No such job"</h1>
                    <p>"Job addresses end in the job's number, like /jobs/12. "<a href="/dashboard">"See the latest jobs"</a>"."</p>
                </section>
            }
            .into_any()
        }
    }
}

/// One task as the grid shows it.
#[derive(Debug, Clone, PartialEq)]
struct Cell {
    state: TaskState,
    output_hash: Option<Hash32>,
    replicas: Vec<ReplicaView>,
}

/// Everything the page knows about the job; cells are separate signals so one event redraws one
/// cell, not thousands.
#[derive(Clone, Copy)]
struct JobData {
    id: JobId,
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
        let cells = self.cells.get_untracked();
        if cells.len() == detail.tasks.len() {
            for (signal, task) in cells.iter().zip(&detail.tasks) {
                let cell = Cell { state: task.state, output_hash: task.output_hash, replicas: task.replicas.clone() };
                if signal.with_untracked(|c| *c != cell) {
                    signal.set(cell);
                }
            }
        } else {
            let fresh = detail
                .tasks
                .iter()
                .map(|t| {
                    RwSignal::new(Cell { state: t.state, output_hash: t.output_hash, replicas: t.replicas.clone() })
                })
                .collect();
            self.cells.set(fresh);
            self.outputs.set_value(vec![None; detail.tasks.len()]);
        }
        if self.summary.with_untracked(Option::is_none) {
            self.progress.set(Progress::from_summary(&detail.summary, browser::now_ms()));
        } else {
            let verified = detail.summary.tasks_verified;
            self.progress.update(|p| p.record(detail.summary.finished_at_ms.unwrap_or_else(browser::now_ms), verified));
        }
        if self.spec.with_untracked(Option::is_none) {
            self.spec.set(Some(detail.spec));
        }
        self.summary.set(Some(detail.summary));
    }

    fn apply_event(self, event: JobEvent) {
        match event {
            JobEvent::Snapshot { job } | JobEvent::JobDone { job } | JobEvent::JobFailed { job } => {
                self.progress
                    .update(|p| p.record(job.finished_at_ms.unwrap_or_else(browser::now_ms), job.tasks_verified));
                self.summary.set(Some(job));
            }
            JobEvent::TaskVerified { task, output_hash, verified, .. } => {
                if let Some(cell) = self.cells.with_untracked(|c| c.get(task.index as usize).copied()) {
                    cell.update(|c| {
                        c.state = TaskState::Verified;
                        c.output_hash = Some(output_hash);
                    });
                }
                self.progress.update(|p| p.record(browser::now_ms(), verified));
                self.summary.update(|s| {
                    if let Some(s) = s {
                        s.tasks_verified = s.tasks_verified.max(verified);
                    }
                });
            }
            JobEvent::TaskFailed { task, .. } => {
                if let Some(cell) = self.cells.with_untracked(|c| c.get(task.index as usize).copied()) {
                    cell.update(|c| c.state = TaskState::Failed);
                }
                self.summary.update(|s| {
                    if let Some(s) = s {
                        s.tasks_failed += 1;
                    }
                });
            }
        }
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
    set_title(&format!("Job {id}"));
    let data = JobData {
        id,
        summary: RwSignal::new(None),
        spec: RwSignal::new(None),
        cells: RwSignal::new(Vec::new()),
        progress: RwSignal::new(Progress::default()),
        outputs: StoredValue::new_local(Vec::new()),
        outputs_version: RwSignal::new(0),
        link: RwSignal::new(None),
    };
    let load_error: RwSignal<Option<Error>> = RwSignal::new(None);
    let alive = Alive::for_current_page();
    let follower: StoredValue<Option<JobFollower>, LocalStorage> = StoredValue::new_local(None);

    // First load, then replica details now and then while the job runs.
    {
        let alive = alive.clone();
        leptos::task::spawn_local(async move {
            let mut first = true;
            while alive.get() {
                let result = api::job(id).await;
                if !alive.get() {
                    break;
                }
                match result {
                    Ok(detail) => {
                        let running = detail.summary.state == JobState::Running;
                        data.apply_detail(detail);
                        load_error.set(None);
                        if first {
                            first = false;
                            if running {
                                follower.set_value(Some(JobFollower::start(
                                    id,
                                    move |event| {
                                        let ended =
                                            matches!(event, JobEvent::JobDone { .. } | JobEvent::JobFailed { .. });
                                        data.apply_event(event);
                                        if ended {
                                            // Fetch the final replica states once.
                                            leptos::task::spawn_local(async move {
                                                // Skipped when the page is gone by then.
                                                if let Ok(detail) = api::job(id).await
                                                    && data.summary.try_get_untracked().is_some()
                                                {
                                                    data.apply_detail(detail);
                                                }
                                            });
                                        }
                                    },
                                    move |link| {
                                        let _ = data.link.try_set(Some(link));
                                    },
                                )));
                            }
                        }
                        if !running {
                            break;
                        }
                    }
                    Err(e) => {
                        let fatal = e.is_not_found();
                        // After a first success, keep showing what we have through a blip.
                        if data.summary.with_untracked(Option::is_none) || fatal {
                            load_error.set(Some(e));
                        }
                        if fatal {
                            break;
                        }
                    }
                }
                browser::sleep(DETAIL_REFRESH_MS).await;
                // The page may be gone by now, and its signals with it.
                if !alive.get()
                    || data.summary.with_untracked(|s| s.as_ref().is_some_and(|s| s.state != JobState::Running))
                {
                    break;
                }
            }
        });
    }

    // Only the first answer mounts the sections; later ones update them in place.
    let loaded = Memo::new(move |_| data.summary.with(Option::is_some));
    let heading = move || {
        data.summary.with(|s| match s {
            Some(s) if !s.label.trim().is_empty() => format!("Job {id}: {}", s.label),
            _ => format!("Job {id}"),
        })
    };

    view! {
        <section class="page job" data-testid="page-job" data-job-id=id.0.to_string()>
            <p class="crumbs"><a href="/dashboard">"← Dashboard"</a></p>
            <h1 data-testid="page-heading">{heading}</h1>
            <Notice
                text=Signal::derive(move || load_error.with(|e| e.as_ref().map(|e| {
                    if e.is_not_found() { format!("This relay has no job {id}.") } else { format!("The job could not be loaded: {e}") }
                })))
                tone=Tone::Error
                testid="job-load-error"
            />
            {move || loaded.get().then(|| view! {
                <Overview data/>
                <TaskGrid data/>
                <Throughput data/>
                <Results data/>
            })}
            {move || (!loaded.get() && load_error.with(Option::is_none)).then(|| view! {
                <p class="loading" data-testid="job-loading">"Loading the job…"</p>
            })}
        </section>
    }
}

#[component]
fn Overview(data: JobData) -> impl IntoView {
    let get =
        move |read: fn(&JobSummary) -> u32| Signal::derive(move || data.summary.with(|s| s.as_ref().map_or(0, read)));
    let (verified, failed, total) = (get(|s| s.tasks_verified), get(|s| s.tasks_failed), get(|s| s.tasks_total));
    let state =
        move || data.summary.with(|s| s.as_ref().map(|s| state_label(s.state)).unwrap_or(("running", "Running")));
    let now = RwSignal::new(browser::now_ms());
    let tick = set_interval_with_handle(move || now.set(browser::now_ms()), std::time::Duration::from_secs(1)).ok();
    on_cleanup(move || {
        if let Some(t) = tick {
            t.clear();
        }
    });
    let elapsed = move || {
        data.summary.with(|s| {
            s.as_ref().map(|s| {
                let end = s.finished_at_ms.unwrap_or_else(|| now.get());
                format::duration_ms(end.saturating_sub(s.created_at_ms))
            })
        })
    };
    let escrow: RwSignal<Option<Result<JobEscrow, Error>>> = RwSignal::new(None);
    let id = data.id;
    // Settlement runs in batches after tasks are verified: keep the money line current.
    let alive = Alive::for_current_page();
    leptos::task::spawn_local(async move {
        while alive.get() {
            let result = api::job_escrow(id).await;
            if !alive.get() {
                break;
            }
            let stop =
                matches!(result, Err(Error::Unsupported { .. })) || result.as_ref().is_err_and(Error::is_not_found);
            let blip = matches!(result, Err(Error::Offline | Error::Network(_)))
                && escrow.with_untracked(|e| matches!(e, Some(Ok(_))));
            if !blip {
                escrow.set(Some(result));
            }
            if stop {
                break;
            }
            browser::sleep(ESCROW_REFRESH_MS).await;
        }
    });
    let money = move || {
        escrow.with(|e| match e {
            Some(Ok(e)) => {
                let mut text = format!(
                    "Deposit {}; paid to workers {}; relay fee {}",
                    format::amount(&e.deposit, &e.denom),
                    format::amount(&e.paid_to_workers, &e.denom),
                    format::amount(&e.paid_to_relay, &e.denom)
                );
                if let Some(refunded) = &e.refunded {
                    text.push_str(&format!("; refunded {}", format::amount(refunded, &e.denom)));
                }
                text.push_str(&format!(" ({} tasks settled).", e.settled_tasks));
                Some(text)
            }
            Some(Err(Error::Unsupported { .. })) => None,
            Some(Err(e)) if e.is_not_found() => {
                Some("No money is held for this job: it is free, or this relay runs jobs unpaid.".to_string())
            }
            Some(Err(e)) => Some(format!("Payment details unavailable: {e}")),
            None => None,
        })
    };
    let link = move || {
        data.link.with(|l| match l {
            Some(Link::Live) => ("live", "Live".to_string()),
            Some(Link::Reconnecting(why)) => ("reconnecting", format!("Reconnecting ({why})")),
            Some(Link::Finished) | None => ("idle", String::new()),
        })
    };
    view! {
        <section class="card overview" aria-labelledby="overview-heading">
            <div class="card-head">
                <h2 id="overview-heading">"Progress"</h2>
                <span class=move || format!("badge {}", state().0) data-testid="job-state" data-state=move || state().0>{move || state().1}</span>
                <span class=move || format!("link-state {}", link().0) data-testid="job-link-state">{move || link().1}</span>
            </div>
            <ProgressBar verified failed total label=Signal::derive(move || format!("Job {id}")) job_id=id.0/>
            <dl class="facts">
                <dt>"Tasks"</dt>
                <dd data-testid="job-counts">{move || {
                    let failed = failed.get();
                    let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
                    format!("{} of {} verified{failed}", verified.get(), total.get())
                }}</dd>
                <dt>"Kernel"</dt>
                <dd class="mono">{move || data.summary.with(|s| s.as_ref().map(|s| s.kernel.clone()).unwrap_or_default())}</dd>
                <dt>"Rules"</dt>
                <dd>{move || data.spec.with(|s| s.as_ref().map(|s| {
                    let (expected, worst) = job_form::cost(s);
                    let price = if s.price_per_replica == 0 {
                        "free".to_string()
                    } else {
                        format!(
                            "{} micro-units per replica (about {}, at most {} in all)",
                            format::count(s.price_per_replica), format::thousands(expected), format::thousands(worst)
                        )
                    };
                    format!(
                        "{} replica{} per task, quorum {}, up to {}; {price}",
                        s.replicas, if s.replicas == 1 { "" } else { "s" }, s.quorum, s.max_replicas
                    )
                }).unwrap_or_default())}</dd>
                <dt>"Time"</dt>
                <dd data-testid="job-elapsed">{elapsed}</dd>
                <dt>"Client"</dt>
                <dd class="mono">{move || data.summary.with(|s| s.as_ref().map(|s| format::short_key(&s.client.to_hex())).unwrap_or_default())}</dd>
            </dl>
            {move || money().map(|m| view! { <p class="hint" data-testid="job-escrow">{m}</p> })}
            {move || data.summary.with(|s| s.as_ref().and_then(|s| s.failure.clone())).map(|f| view! {
                <p class="notice error" role="alert" data-testid="job-failure">{format!("The job failed: {f}")}</p>
            })}
        </section>
    }
}

#[component]
fn TaskGrid(data: JobData) -> impl IntoView {
    let selected: RwSignal<Option<usize>> = RwSignal::new(None);
    // One tab stop for the whole grid (a job may have thousands of tasks); arrows move within it.
    let focused = RwSignal::new(0usize);
    let grid = NodeRef::<leptos::html::Ol>::new();
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        let Some(grid) = grid.get_untracked() else { return };
        let Ok(cells) = grid.query_selector_all(".task-cell") else { return };
        let cell = |i: u32| cells.get(i).and_then(|n| n.dyn_into::<web_sys::HtmlElement>().ok());
        let top = |i: u32| cell(i).map(|c| c.offset_top());
        let first_top = top(0);
        let columns = (0..cells.length()).take_while(|&i| top(i) == first_top).count();
        if let Some(next) = results::grid_step(focused.get_untracked(), cells.length() as usize, columns, &ev.key()) {
            ev.prevent_default();
            focused.set(next);
            if let Some(c) = cell(next as u32) {
                let _ = c.focus();
            }
        }
    };
    view! {
        <section class="card tasks" aria-labelledby="tasks-heading">
            <div class="card-head">
                <h2 id="tasks-heading">"Tasks"</h2>
                <ul class="legend" aria-label="Legend">
                    <li><span class="swatch pending"></span>"Pending"</li>
                    <li><span class="swatch verified"></span>"Verified"</li>
                    <li><span class="swatch failed"></span>"Failed"</li>
                </ul>
            </div>
            <p class="hint" id="task-grid-help">"Select a task for its replicas and output. With the keyboard: Tab into the grid, then arrow keys, Home and End."</p>
            <ol class="task-grid" data-testid="task-grid" node_ref=grid aria-describedby="task-grid-help" on:keydown=on_key>
                {move || data.cells.get().into_iter().enumerate().map(|(i, cell)| {
                    let state = move || task_state_name(cell.with(|c| c.state));
                    view! {
                        <li>
                            <button
                                type="button"
                                class=move || format!("task-cell {}", state())
                                data-testid="task-cell"
                                data-index=i.to_string()
                                data-state=state
                                tabindex=move || if focused.get() == i { "0" } else { "-1" }
                                aria-label=move || format!("Task {i}: {}", state())
                                aria-pressed=move || (selected.get() == Some(i)).to_string()
                                on:focus=move |_| focused.set(i)
                                on:click=move |_| selected.set(if selected.get_untracked() == Some(i) { None } else { Some(i) })
                            ></button>
                        </li>
                    }
                }).collect_view()}
            </ol>
            {move || selected.get().and_then(|i| data.cells.with(|c| c.get(i).copied())).map(|cell| {
                let index = selected.get_untracked().unwrap_or(0);
                view! { <TaskDetail data index=index as u32 cell/> }
            })}
        </section>
    }
}

fn task_state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "pending",
        TaskState::Verified => "verified",
        TaskState::Failed => "failed",
    }
}

fn replica_state_name(state: ReplicaState) -> &'static str {
    match state {
        ReplicaState::Leased => "computing",
        ReplicaState::Returned => "returned, not compared yet",
        ReplicaState::Accepted => "agreed",
        ReplicaState::Rejected => "disagreed (evidence kept)",
        ReplicaState::Lapsed => "lapsed",
        ReplicaState::Cancelled => "cancelled",
    }
}

#[component]
fn TaskDetail(data: JobData, index: u32, cell: RwSignal<Cell>) -> impl IntoView {
    let id = data.id;
    view! {
        <div class="task-detail" data-testid="task-detail" data-index=index.to_string()>
            <h3>{format!("Task {index}")}</h3>
            <dl class="facts">
                <dt>"State"</dt>
                <dd>{move || task_state_name(cell.with(|c| c.state))}</dd>
                <dt>"Output hash"</dt>
                <dd class="mono wrap">{move || cell.with(|c| c.output_hash.map(|h| h.to_hex()).unwrap_or_else(|| "–".into()))}</dd>
            </dl>
            <h4>"Replicas"</h4>
            {move || cell.with(|c| if c.state == TaskState::Pending {
                // The relay shows no replicas before the decision: nobody can copy an answer.
                view! { <p class="hint" data-testid="replicas-hidden">"Who computes this task, and what they returned, stays hidden until it is decided."</p> }.into_any()
            } else if c.replicas.is_empty() {
                view! { <p class="hint">"No replicas recorded for this task."</p> }.into_any()
            } else {
                view! {
                    <ul class="replicas">
                        {c.replicas.iter().map(|r| view! {
                            <li><span class="mono">{format::short_key(&r.worker.to_hex())}</span>" · "{replica_state_name(r.state)}</li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            })}
            {move || (cell.with(|c| c.state) == TaskState::Verified).then(|| view! {
                <a class="button" href=api::task_output_path(id, index) download=results::output_name(id.0, index) data-testid="task-download">
                    "Download this output"
                </a>
            })}
        </div>
    }
}

#[component]
fn Throughput(data: JobData) -> impl IntoView {
    let now = RwSignal::new(browser::now_ms());
    let tick = set_interval_with_handle(move || now.set(browser::now_ms()), std::time::Duration::from_secs(2)).ok();
    on_cleanup(move || {
        if let Some(t) = tick {
            t.clear();
        }
    });
    let series = Signal::derive(move || {
        data.progress.with(|p| {
            let points = p.points();
            if p.joined_late && points.len() >= 2 {
                vec![
                    Series { points: points[..2].to_vec(), dashed: true },
                    Series { points: points[1..].to_vec(), dashed: false },
                ]
            } else {
                vec![Series { points: points.to_vec(), dashed: false }]
            }
        })
    });
    let domain = Signal::derive(move || {
        data.summary.with(|s| {
            s.as_ref().map(|s| {
                let end = s.finished_at_ms.unwrap_or_else(|| now.get());
                let secs = end.saturating_sub(s.created_at_ms) as f64 / 1000.0;
                let last = data.progress.with(|p| p.points().last().map_or(0.0, |p| p.0));
                (0.0, secs.max(last).max(1.0))
            })
        })
    });
    let caption = Signal::derive(move || {
        let rate = data.progress.with(Progress::average_rate);
        let late = data.progress.with(|p| p.joined_late);
        let mut text = match rate {
            Some(r) => format!("Verified tasks since the job was posted; {} on average.", format::rate(r, "tasks")),
            None => "Verified tasks since the job was posted.".to_string(),
        };
        if late {
            text.push_str(" The dashed part is before this page was watching.");
        }
        text
    });
    view! {
        <section class="card" aria-labelledby="throughput-heading">
            <h2 id="throughput-heading">"Throughput"</h2>
            <LineChart
                series
                x_domain=domain
                x_label=|s| format::duration_ms((s * 1000.0).round() as u64)
                caption
                empty_text="No verified tasks yet"
                testid="throughput-chart"
            />
        </section>
    }
}

#[component]
fn Results(data: JobData) -> impl IntoView {
    let id = data.id;
    let kernel = Memo::new(move |_| data.spec.with(|s| s.as_ref().and_then(results::builtin)));
    let done = Memo::new(move |_| data.summary.with(|s| s.as_ref().is_some_and(|s| s.state == JobState::Done)));
    let status: RwSignal<Option<String>> = RwSignal::new(None);
    let problem: RwSignal<Option<String>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let summary: RwSignal<Option<String>> = RwSignal::new(None);
    let total_output = Memo::new(move |_| {
        data.spec.with(|s| s.as_ref().map_or(0, |s| s.tasks.iter().map(|t| u64::from(t.output_size)).sum::<u64>()))
    });

    // A summary of a finished job, when its outputs are small enough to fetch on their own.
    Effect::new(move |_| {
        if !done.get()
            || kernel.get().is_none()
            || total_output.get() > AUTO_SUMMARY_BYTES
            || summary.with_untracked(Option::is_some)
        {
            return;
        }
        leptos::task::spawn_local(async move {
            let indices = data.verified_indices();
            if let Err(e) = data.fetch_outputs(&indices, |_, _| {}).await {
                let _ = problem.try_set(Some(format!("The outputs could not be fetched for a summary: {e}")));
                return;
            }
            let Some(outputs) = data.all_outputs() else { return };
            let text =
                data.spec.try_with_untracked(|s| s.as_ref().and_then(|s| results::summary(s, &outputs))).flatten();
            let _ = summary.try_set(text);
        });
    });

    let download_all = move |_| {
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        problem.set(None);
        leptos::task::spawn_local(async move {
            let indices = data.verified_indices();
            let fetched = data
                .fetch_outputs(&indices, |n, total| {
                    let _ = status.try_set(Some(format!("Fetching outputs: {n} of {total}…")));
                })
                .await;
            if let Err(e) = fetched {
                let _ = problem.try_set(Some(format!("The download stopped: {e}")));
                let _ = busy.try_set(false);
                let _ = status.try_set(None);
                return;
            }
            let detail = api::job(id).await;
            let Some(mut files) = data.outputs.try_with_value(|outs| {
                outs.iter()
                    .enumerate()
                    .filter_map(|(i, o)| o.as_ref().map(|o| (results::output_name(id.0, i as u32), o.clone())))
                    .collect::<Vec<(String, Vec<u8>)>>()
            }) else {
                // The page is gone.
                return;
            };
            match detail {
                Ok(detail) => files.push((format!("job-{id}.json"), results::manifest(&detail).into_bytes())),
                Err(e) => {
                    let _ = problem.try_set(Some(format!("The archive has the outputs but not job-{id}.json: {e}")));
                }
            }
            let archive = results::tar(&files, browser::now_ms() / 1000);
            if let Err(e) = browser::download(&format!("job-{id}-outputs.tar"), &archive, "application/x-tar") {
                let _ = problem.try_set(Some(e.to_string()));
            }
            let _ = status.try_set(Some(format!(
                "Saved {} outputs ({}).",
                files.len().saturating_sub(1),
                format::bytes(archive.len() as u64)
            )));
            let _ = busy.try_set(false);
        });
    };

    let verified_count = move || data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_verified));

    view! {
        <section class="card results" aria-labelledby="results-heading">
            <h2 id="results-heading">"Results"</h2>
            {move || summary.get().map(|s| view! { <p class="result-summary" data-testid="job-result-summary">{s}</p> })}
            {move || (kernel.get() == Some(BuiltinKernel::Mandelbrot)).then(|| view! { <MandelbrotPreview data/> })}
            {move || (kernel.get() == Some(BuiltinKernel::MatmulF32) && done.get()).then(|| view! { <MatmulCheck data/> })}
            <div class="actions">
                <button type="button" data-testid="download-all" on:click=download_all disabled=move || busy.get() || verified_count() == 0>
                    {move || format!("Download all verified outputs ({})", verified_count())}
                </button>
                <span class="step" role="status" data-testid="download-status">{move || status.get().unwrap_or_default()}</span>
            </div>
            <Notice text=Signal::derive(move || problem.get()) tone=Tone::Error testid="results-error"/>
            <p class="hint">"One .tar archive: each verified task's output as job-N-task-NNNN.bin, and job-N.json with the spec and every output's SHA-256."</p>
            <details class="outputs">
                <summary>"Outputs one by one"</summary>
                <ul class="output-links" data-testid="output-links">
                    {move || data.cells.get().into_iter().enumerate().map(|(i, cell)| {
                        let i = i as u32;
                        move || (cell.with(|c| c.state) == TaskState::Verified).then(|| view! {
                            <li><a href=api::task_output_path(id, i) download=results::output_name(id.0, i) data-testid="task-download">
                                {results::output_name(id.0, i)}
                            </a></li>
                        })
                    }).collect_view()}
                </ul>
            </details>
        </section>
    }
}

#[component]
fn MandelbrotPreview(data: JobData) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let size = Memo::new(move |_| data.spec.with(|s| s.as_ref().and_then(results::mandelbrot_size)));
    let too_big = move || size.get().is_some_and(|(w, h)| u64::from(w) * u64::from(h) > MAX_PREVIEW_PIXELS);
    let problem: RwSignal<Option<String>> = RwSignal::new(None);
    let fetching = RwSignal::new(false);

    // Fetch the outputs of newly verified tiles, a few at a time, as they come in.
    Effect::new(move |_| {
        let _ = data.summary.with(|s| s.as_ref().map(|s| s.tasks_verified));
        if too_big() || fetching.get_untracked() {
            return;
        }
        fetching.set(true);
        leptos::task::spawn_local(async move {
            loop {
                let indices = data.verified_indices();
                let before = data.outputs_version.get_untracked();
                if let Err(e) = data.fetch_outputs(&indices, |_, _| {}).await {
                    let _ = problem.try_set(Some(format!("Some tiles could not be fetched: {e}")));
                    break;
                }
                // Stop when a pass found nothing new (events that arrived meanwhile were fetched).
                if data.outputs_version.try_get_untracked() == Some(before) {
                    break;
                }
            }
            let _ = fetching.try_set(false);
        });
    });

    // Redraw when outputs arrive.
    Effect::new(move |_| {
        let _ = data.outputs_version.get();
        let Some(canvas) = canvas.get() else { return };
        let Some((w, h)) = size.get() else { return };
        if too_big() {
            return;
        }
        let rgba = data
            .spec
            .with_untracked(|s| s.as_ref().map(|s| data.outputs.with_value(|o| results::mandelbrot_rgba(s, o))));
        match rgba {
            Some(Ok(rgba)) => {
                if let Err(e) = paint(&canvas, w, h, &rgba) {
                    problem.set(Some(format!("The preview could not be drawn: {e}")));
                }
            }
            Some(Err(e)) => problem.set(Some(format!("The tiles do not make a picture: {e}"))),
            None => {}
        }
    });

    let save_png = move |_| {
        let Some(canvas) = canvas.get_untracked() else { return };
        match canvas.to_data_url_with_type("image/png") {
            Ok(url) => {
                if let Err(e) = browser::click_link(&url, &format!("job-{}-mandelbrot.png", data.id)) {
                    problem.set(Some(e.to_string()));
                }
            }
            Err(e) => problem.set(Some(format!("The picture could not be saved: {}", browser::js_text(&e)))),
        }
    };

    view! {
        <div class="preview">
            {move || match size.get() {
                Some((w, h)) if !too_big() => view! {
                    <canvas
                        node_ref=canvas
                        width=w.to_string()
                        height=h.to_string()
                        style:aspect-ratio=format!("{w} / {h}")
                        data-testid="mandelbrot-preview"
                        role="img"
                        aria-label=move || format!(
                            "Mandelbrot render, {w}×{h} pixels, {} of {} tiles verified",
                            data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_verified)),
                            data.summary.with(|s| s.as_ref().map_or(0, |s| s.tasks_total))
                        )
                    ></canvas>
                    <button type="button" data-testid="download-png" on:click=save_png>"Save picture (PNG)"</button>
                }.into_any(),
                Some((w, h)) => view! {
                    <p class="hint">{format!("A {w}×{h} render is too large to preview here; download the outputs instead.")}</p>
                }.into_any(),
                None => view! { <p class="hint">"This job's tiles do not describe one picture."</p> }.into_any(),
            }}
            <Notice text=Signal::derive(move || problem.get()) tone=Tone::Warning testid="preview-error"/>
        </div>
    }
}

fn paint(canvas: &web_sys::HtmlCanvasElement, width: u32, height: u32, rgba: &[u8]) -> Result<(), String> {
    let context = canvas
        .get_context("2d")
        .map_err(|e| browser::js_text(&e))?
        .ok_or("no 2D context")?
        .dyn_into::<web_sys::CanvasRenderingContext2d>()
        .map_err(|_| "not a 2D context".to_string())?;
    let image = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(rgba), width, height)
        .map_err(|e| browser::js_text(&e))?;
    context.put_image_data(&image, 0.0, 0.0).map_err(|e| browser::js_text(&e))
}

#[component]
fn MatmulCheck(data: JobData) -> impl IntoView {
    let result: RwSignal<Option<Result<String, String>>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let work = Memo::new(move |_| data.spec.with(|s| s.as_ref().and_then(results::matmul_work)));
    let check = move |_| {
        busy.set(true);
        result.set(None);
        leptos::task::spawn_local(async move {
            let outcome = async {
                let (spec, a_hash, b_hash) = data
                    .spec
                    .with_untracked(|s| s.clone())
                    .and_then(|s| {
                        let inputs = s.tasks.first()?.inputs.clone();
                        Some((s, *inputs.first()?, *inputs.get(1)?))
                    })
                    .ok_or("this job has no matrix inputs")?;
                let a = api::blob(&a_hash).await.map_err(|e| format!("matrix A could not be fetched: {e}"))?;
                let b = api::blob(&b_hash).await.map_err(|e| format!("matrix B could not be fetched: {e}"))?;
                let indices: Vec<u32> = (0..spec.tasks.len() as u32).collect();
                data.fetch_outputs(&indices, |_, _| {})
                    .await
                    .map_err(|e| format!("the outputs could not be fetched: {e}"))?;
                let outputs = data.all_outputs().ok_or("not every task has an output")?;
                // Give the browser a frame to paint "Checking…" before the CPU work.
                browser::sleep(16).await;
                let max_error = results::matmul_max_error(&spec, &a, &b, &outputs)?;
                let ok = results::matmul_within_tolerance(&spec, max_error);
                Ok::<String, String>(format!(
                    "{} the CPU: largest difference {max_error:.2e}",
                    if ok { "Matches" } else { "Differs from" }
                ))
            }
            .await;
            let _ = result.try_set(Some(outcome));
            let _ = busy.try_set(false);
        });
    };
    view! {
        <div class="matmul-check">
            {move || match work.get() {
                Some(w) if w <= MAX_CHECK_WORK => view! {
                    <button type="button" data-testid="matmul-check" on:click=check disabled=move || busy.get()>
                        {move || if busy.get() { "Checking…" } else { "Check the product on this device's CPU" }}
                    </button>
                }.into_any(),
                Some(_) => view! { <p class="hint">"This product is too large to check in the browser; `starling submit matmul` checks it natively."</p> }.into_any(),
                None => view! { <span></span> }.into_any(),
            }}
            {move || result.get().map(|r| match r {
                Ok(text) => view! { <p class="result-summary" data-testid="matmul-check-result">{text}</p> }.into_any(),
                Err(text) => view! { <p class="notice error" role="alert" data-testid="matmul-check-result">{format!("The check failed: {text}")}</p> }.into_any(),
            })}
        </div>
    }
}
