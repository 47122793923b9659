//! The task grid: every task's state, live, and one task's replicas on demand.

use super::*;

#[component]
pub(super) fn TaskGrid(data: JobData) -> impl IntoView {
    let i18n = use_i18n();
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
                <h2 id="tasks-heading">{tr!(i18n, job.tasks)}</h2>
                <ul class="legend" aria-label=tr!(i18n, job.legend)>
                    <li><span class="swatch pending"></span>{tr!(i18n, task_state.pending)}</li>
                    <li><span class="swatch verified"></span>{tr!(i18n, task_state.verified)}</li>
                    <li><span class="swatch failed"></span>{tr!(i18n, task_state.failed)}</li>
                </ul>
            </div>
            <p class="hint" id="task-grid-help">{tr!(i18n, job.grid_help)}</p>
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
                                aria-label=move || format::fill(
                                    tr!(i18n, job.task_cell),
                                    &[("index", &i.to_string()), ("state", task_state_text(i18n, cell.with(|c| c.state)))],
                                )
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

/// A task's state in words.
fn task_state_text(i18n: I18n, state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => tr!(i18n, task_state.pending),
        TaskState::Verified => tr!(i18n, task_state.verified),
        TaskState::Failed => tr!(i18n, task_state.failed),
    }
}

fn replica_state_name(i18n: I18n, state: ReplicaState) -> &'static str {
    match state {
        ReplicaState::Leased => tr!(i18n, replica_state.leased),
        ReplicaState::Returned => tr!(i18n, replica_state.returned),
        ReplicaState::Accepted => tr!(i18n, replica_state.accepted),
        ReplicaState::Rejected => tr!(i18n, replica_state.rejected),
        ReplicaState::Lapsed => tr!(i18n, replica_state.lapsed),
        ReplicaState::Cancelled => tr!(i18n, replica_state.cancelled),
    }
}

#[component]
pub(super) fn TaskDetail(data: JobData, index: u32, cell: RwSignal<Cell>) -> impl IntoView {
    let i18n = use_i18n();
    let id = data.id;
    view! {
        <div class="task-detail" data-testid="task-detail" data-index=index.to_string()>
            <h3>{format::fill(tr!(i18n, job.task), &[("index", &index.to_string())])}</h3>
            <dl class="facts">
                <dt>{tr!(i18n, job.state)}</dt>
                <dd>{move || task_state_text(i18n, cell.with(|c| c.state))}</dd>
                <dt>{tr!(i18n, job.output_hash)}</dt>
                <dd class="mono wrap">{move || cell.with(|c| c.output_hash.map(|h| h.to_hex()).unwrap_or_else(|| "–".into()))}</dd>
            </dl>
            <h4>{tr!(i18n, job.replicas)}</h4>
            {move || cell.with(|c| if c.state == TaskState::Pending {
                // The relay shows no replicas before the decision: nobody can copy an answer.
                view! { <p class="hint" data-testid="replicas-hidden">{tr!(i18n, job.replicas_hidden)}</p> }.into_any()
            } else if c.replicas.is_empty() {
                view! { <p class="hint">{tr!(i18n, job.no_replicas)}</p> }.into_any()
            } else {
                view! {
                    <ul class="replicas">
                        {c.replicas.iter().map(|r| view! {
                            <li><span class="mono">{format::short_key(&r.worker.to_hex())}</span>" · "{replica_state_name(i18n, r.state)}</li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            })}
            {move || (cell.with(|c| c.state) == TaskState::Verified).then(|| view! {
                <a class="button" href=api::task_output_path(id, index) download=results::output_name(id.0, index) data-testid="task-download">
                    {tr!(i18n, job.download_output)}
                </a>
            })}
        </div>
    }
}
