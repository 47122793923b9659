//! REST handlers (`/v1/...`). Each decodes at the edge into protocol types, answers errors as
//! `{code, message}`, and leaves every state change to the core.

use crate::blobs::{BlobError, BlobStore, Owner, Upload, wall_ms};
use crate::core::requirements;
use crate::error::ApiError;
use crate::leases::OutputRefused;
use crate::{AppState, ws};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use starling_kernels::{self as kernels, validate};
use starling_protocol::api::{
    AccountRequest, AdminDeposit, ClientView, Health, JobsQuery, NetworkHistory, NetworkSample, RelayList, StoredBlob,
    TaskResult, TaskState, WorkersQuery,
};
use starling_protocol::job::{Binding, BuiltinKernel, JobSpec, KernelSpec};
use starling_protocol::limits::MAX_SPEC_BYTES;
use starling_protocol::sign::{SignedJob, UploadPurpose, account_bytes, verify};
use starling_protocol::upload::UploadAuth;
use starling_protocol::{ErrorBody, ErrorCode, Hash32, JobId, PublicKey, TaskId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/network/history", get(network_history))
        .route("/metrics", get(metrics))
        .route("/v1/relays", get(list_relays))
        .route("/v1/jobs", post(create_job).layer(DefaultBodyLimit::max(MAX_SPEC_BYTES)).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/results", get(job_results))
        .route("/v1/jobs/{id}/tasks/{index}/output", get(task_output))
        .route("/v1/jobs/{id}/events", get(ws::job_events))
        .route("/v1/blobs/{hash}", put(put_blob).get(get_blob))
        .route("/v1/jobs/{id}/escrow", get(job_escrow))
        .route("/v1/clients/{key}", get(get_client))
        .route("/v1/accounts/{key}/actions", post(account_action).layer(DefaultBodyLimit::max(4096)))
        .route("/v1/admin/deposits", post(admin_deposit).layer(DefaultBodyLimit::max(4096)))
        .route("/v1/workers", get(list_workers))
        .route("/v1/workers/{key}", get(get_worker))
        .route("/v1/workers/ws", get(ws::worker_socket))
}

/// Cross-origin access to the API, for the web app of another relay (a contributor or client
/// who picked this relay from the registry there): any origin, no credentials (the API has no
/// cookies; signatures travel in the body and the upload headers). `authorization` is not an
/// allowed header, so the operator's admin route cannot be driven from a web page.
pub fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method, header};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static(starling_protocol::upload::KEY_HEADER),
            HeaderName::from_static(starling_protocol::upload::SIGNATURE_HEADER),
            HeaderName::from_static(starling_protocol::upload::LEASE_HEADER),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(ErrorCode::Malformed, format!("bad path: {}", e.body_text()))
}

pub(crate) fn parse_job_id(s: &str) -> Result<JobId, ApiError> {
    s.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::new(ErrorCode::Malformed, format!("job id must be a number, got {s:?}")))
}

fn parse_hash(s: &str) -> Result<Hash32, ApiError> {
    s.parse().map_err(|_| ApiError::new(ErrorCode::Malformed, "blob hash must be 64 hex digits"))
}

async fn health(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    let workers_online = app.core.shared.online.read().expect("online set lock").len() as u64;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        workers_online,
        jobs_running: app.store.count_running_jobs().await?,
        tasks_verified_total: Some(app.store.tasks_verified_total().await?),
        escrow: app.escrow.as_ref().map(|e| e.info()),
    }))
}

/// The network's figures now.
async fn sample(app: &AppState) -> Result<NetworkSample, ApiError> {
    let online = app.core.shared.online.read().expect("online set lock").clone();
    Ok(NetworkSample {
        at_ms: wall_ms(),
        workers_online: online.len() as u64,
        workers_by_backend: app.core.shared.metrics.by_backend(&online),
        jobs_running: app.store.count_running_jobs().await?,
        tasks_verified_total: app.store.tasks_verified_total().await?,
    })
}

/// Samples the network's figures into its history every `every` until `stop` turns true.
pub fn spawn_sampler(app: AppState, every: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match sample(&app).await {
                Ok(s) => app.core.shared.metrics.record(s),
                Err(e) => tracing::warn!(error = ?e, "cannot sample the network's figures"),
            }
        }
    });
}

/// `GET /v1/network/history`: the last samples of the network's figures, oldest first.
async fn network_history(State(app): State<AppState>) -> Json<NetworkHistory> {
    Json(NetworkHistory { every_ms: app.history_every_ms, samples: app.core.shared.metrics.history() })
}

/// `GET /metrics`: the network's figures and the relay's internals as Prometheus text. The
/// figures are the latest sample's (so a scrape costs no database read).
async fn metrics(State(app): State<AppState>) -> Response {
    let m = &app.core.shared.metrics;
    let now = m.history().pop().unwrap_or(NetworkSample {
        at_ms: wall_ms(),
        workers_online: 0,
        workers_by_backend: Default::default(),
        jobs_running: 0,
        tasks_verified_total: 0,
    });
    let internals = crate::metrics::Internals { leases_open: app.core.shared.leases.len() as u64 };
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render(&now, internals)).into_response()
}

/// How long a read of the escrow's relay registry is served before it is read again.
pub const RELAYS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// One read of the registry: the list, or why it failed.
type RegistryRead = Result<Arc<RelayList>, String>;

/// The last read of the escrow's relay registry (or its failure) and when it was made; one
/// read at a time.
#[derive(Debug, Default)]
pub struct RelaysCache {
    last: std::sync::Mutex<Option<(std::time::Instant, RegistryRead)>>,
    reading: tokio::sync::Mutex<()>,
}

/// `GET /v1/relays`: the relays registered in this relay's escrow contract, with their records.
/// Served from a read at most [`RELAYS_TTL`] old (a failed read too), so a flood of requests
/// costs one contract read per period; while a read is under way, others get the last one.
async fn list_relays(State(app): State<AppState>) -> Result<Response, ApiError> {
    let Some(escrow) = &app.escrow else {
        return Ok(Json(RelayList::default()).into_response());
    };
    let answer = |read: &RegistryRead| match read {
        Ok(list) => Ok(Json(list.as_ref().clone()).into_response()),
        Err(e) => Err(ApiError::from(crate::escrow::EscrowError::Unavailable(e.clone()))),
    };
    let last = || app.relays.last.lock().expect("relays cache lock").clone();
    if let Some((at, read)) = last()
        && at.elapsed() < RELAYS_TTL
    {
        return answer(&read);
    }
    let Ok(_reading) = app.relays.reading.try_lock() else {
        return match last() {
            Some((_, read)) => answer(&read),
            None => Err(ApiError::from(crate::escrow::EscrowError::Unavailable("the registry is being read".into()))),
        };
    };
    let read = escrow
        .relays()
        .await
        .map(|relays| Arc::new(RelayList { this_relay: Some(escrow.info().relay_address), relays }))
        .map_err(|e| e.to_string());
    *app.relays.last.lock().expect("relays cache lock") = Some((std::time::Instant::now(), read.clone()));
    answer(&read)
}

/// Sizes of a spec's input blobs, each read once; the first missing blob, or the first that
/// `unavailable` says may not be used, is the error.
pub async fn input_sizes(
    spec: &JobSpec,
    blobs: &BlobStore,
    unavailable: impl Fn(&Hash32) -> bool,
) -> std::result::Result<HashMap<Hash32, u64>, Hash32> {
    let mut sizes = HashMap::new();
    for h in spec.tasks.iter().flat_map(|t| t.blobs()) {
        if let std::collections::hash_map::Entry::Vacant(entry) = sizes.entry(h) {
            if unavailable(&h) {
                return Err(h);
            }
            entry.insert(blobs.size(&h).await.ok_or(h)?);
        }
    }
    Ok(sizes)
}

/// Whether `hash` is an output nobody may read yet: returned for a task not yet decided (and not
/// also an input of a running job), or uploaded for a lease and not reported yet. Such a blob is
/// answered exactly as an absent one, for downloads and as a job's input alike (a job naming it
/// would publish it), so that nobody learns even that it exists.
pub(crate) fn withheld(app: &AppState, hash: &Hash32) -> bool {
    app.core.shared.withheld.hides(hash) || app.blobs.is_unreported_output(hash)
}

/// `POST /v1/jobs`: validate everything, store nothing unless all of it holds.
async fn create_job(State(app): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let origin = crate::serve::peer(request.extensions()).map(|a| a.ip());
    let body = axum::body::to_bytes(request.into_body(), MAX_SPEC_BYTES).await.map_err(|e| {
        let text = e.to_string();
        let code = if text.contains("length limit") { ErrorCode::TooLarge } else { ErrorCode::Malformed };
        ApiError::new(code, format!("job body: {text}"))
    })?;
    let job: SignedJob = serde_json::from_slice(&body).map_err(|e| match unknown_kernel(&body) {
        Some(name) => ApiError::new(
            ErrorCode::UnknownKernel,
            format!(
                "unknown kernel {name:?}; built-in kernels are {} (or send WGSL with type \"wgsl\")",
                BuiltinKernel::ALL.map(|k| k.name()).join(", ")
            ),
        ),
        None => ApiError::new(ErrorCode::Malformed, format!("job body: {e}")),
    })?;
    job.spec.validate().map_err(|e| ApiError::new(e.code, e.message))?;
    job.verify().map_err(|e| ApiError::new(ErrorCode::BadSignature, format!("job signature: {e}")))?;
    let inputs: Vec<Hash32> = job.spec.tasks.iter().flat_map(|t| t.blobs()).collect();
    // Nothing this submission names may expire while it is checked; once accepted, its inputs
    // are kept for good and stop counting against their uploaders.
    app.blobs.touch(&inputs, wall_ms());
    let sizes = input_sizes(&job.spec, &app.blobs, |h| withheld(&app, h))
        .await
        .map_err(|h| ApiError::new(ErrorCode::InvalidSpec, format!("input blob {h} has not been uploaded")))?;
    // A built-in checks every task that runs it (an input that is another task's output has that
    // task's declared size); a WGSL kernel is validated once, for the inputs its tasks bind.
    let mut wgsl_inputs: BTreeMap<u8, usize> = BTreeMap::new();
    for (i, task) in job.spec.tasks.iter().enumerate() {
        match job.spec.kernel_of(i) {
            Some(KernelSpec::Builtin { name }) => {
                let task_sizes: Vec<u64> =
                    job.spec.input_sizes(i, |h| sizes.get(h).copied()).into_iter().map(|s| s.unwrap_or(0)).collect();
                kernels::check_sizes(*name, &task.params, &task_sizes, task.workgroups, task.output_size)
                    .map_err(|e| ApiError::new(ErrorCode::InvalidSpec, format!("task {i}: {e}")))?;
            }
            Some(KernelSpec::Wgsl { .. } | KernelSpec::Pipeline { .. }) => {
                if *wgsl_inputs.entry(task.kernel).or_insert(task.inputs.len()) != task.inputs.len() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidSpec,
                        format!("task {i}: every task of a WGSL kernel binds the same number of inputs"),
                    ));
                }
            }
            None => return Err(ApiError::new(ErrorCode::InvalidSpec, format!("task {i}: no such kernel"))),
        }
    }
    for (index, n_inputs) in wgsl_inputs {
        let Some(kernel) = job.spec.all_kernels().nth(usize::from(index)) else { continue };
        let Some(source) = kernel.wgsl() else { continue };
        let which = if index == 0 { String::new() } else { format!("kernels[{}]: ", index - 1) };
        // Each dispatch (a pipeline's every stage, on one parse) for the inputs it binds.
        let dispatches: Vec<(String, usize)> =
            kernel.dispatches(n_inputs).into_iter().map(|(e, n)| (e.to_string(), n)).collect();
        let (source, pipeline) = (source.to_string(), matches!(kernel, KernelSpec::Pipeline { .. }));
        let min_sizes = tokio::task::spawn_blocking(move || {
            if pipeline {
                let stages: Vec<(&str, usize)> = dispatches.iter().map(|(e, n)| (e.as_str(), *n)).collect();
                validate::pipeline_checked(&source, &stages).map(|(_, sizes)| sizes)
            } else {
                validate::validate_kernel(&source, &dispatches[0].0, dispatches[0].1)
                    .map(|module| vec![validate::min_binding_sizes(&module, |_| true)])
            }
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "validator crashed"))?
        .map_err(|e| ApiError::new(ErrorCode::InvalidWgsl, format!("{which}{e}")))?;
        // Every buffer each task binds holds what the shader reads (WebGPU checks only at dispatch,
        // on the worker, which would fail the task on every worker).
        for (i, task) in job.spec.tasks.iter().enumerate().filter(|(_, t)| t.kernel == index) {
            let inputs: Vec<u64> =
                job.spec.input_sizes(i, |h| sizes.get(h).copied()).into_iter().map(|s| s.unwrap_or(0).max(4)).collect();
            let params = (task.params.len() as u64 * 4).next_multiple_of(16).max(16);
            let bound = binding_sizes(kernel, &inputs, u64::from(task.output_size));
            for (stage, (mins, bound)) in min_sizes.iter().zip(bound).enumerate() {
                for &(binding, min) in mins {
                    let have =
                        if binding == 0 { params } else { bound.get(binding as usize - 1).copied().unwrap_or(0) };
                    if have < min {
                        let at = if pipeline { format!("stage {stage}: ") } else { String::new() };
                        return Err(ApiError::new(
                            ErrorCode::InvalidSpec,
                            format!(
                                "task {i}: {which}{at}binding {binding} is {have} bytes; the shader needs at least {min}"
                            ),
                        ));
                    }
                }
            }
        }
    }
    if app.store.job_signed(&job.signature).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this signed job was already posted; sign it again with a new nonce to post another",
        ));
    }
    let req = requirements(&job.spec, &sizes);
    let summary = app.core.create_job(job, req, origin).await?;
    app.blobs.keep(&inputs);
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

/// The sizes each dispatch of `kernel` binds at bindings `1..`, in order (its inputs, then its
/// output), for a task whose inputs have `inputs` bytes and whose output `output`.
fn binding_sizes(kernel: &KernelSpec, inputs: &[u64], output: u64) -> Vec<Vec<u64>> {
    let KernelSpec::Pipeline { buffers, .. } = kernel else {
        return vec![inputs.iter().copied().chain([output]).collect()];
    };
    let size = |b: Binding| match b {
        Binding::Input(k) => inputs.get(k).copied().unwrap_or(0),
        Binding::Output => output,
        Binding::Buffer(k) => buffers.get(k).map_or(0, |b| u64::from(b.size)),
    };
    kernel
        .pipeline_bindings(inputs.len())
        .map(|stages| stages.into_iter().map(|(ins, out)| ins.into_iter().chain([out]).map(size).collect()).collect())
        .unwrap_or_default()
}

/// The kernel a body names when it is not one we know (for a precise error).
fn unknown_kernel(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kernel = value.get("spec")?.get("kernel")?;
    match kernel.get("type")?.as_str()? {
        "builtin" => {
            let name = kernel.get("name")?.as_str()?;
            BuiltinKernel::from_name(name).is_none().then(|| name.to_string())
        }
        "wgsl" | "pipeline" => None,
        other => Some(other.to_string()),
    }
}

async fn list_jobs(
    State(app): State<AppState>,
    q: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::Malformed, e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(app.store.list_jobs(q.state, limit).await?).into_response())
}

async fn get_job(State(app): State<AppState>, id: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let id = parse_job_id(&id.map_err(path_error)?.0)?;
    // Open leases first: one that ends while the rows are read is then found among the rows.
    let open = app.core.shared.leases.of_job(id);
    let detail = app.store.job_detail(id, &open).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    Ok(Json(detail).into_response())
}

async fn job_results(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_job_id(&id.map_err(path_error)?.0)?;
    let detail = app.store.job_detail(id, &[]).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    let results: Vec<TaskResult> = detail
        .tasks
        .into_iter()
        .map(|t| TaskResult { index: t.index, state: t.state, output_hash: t.output_hash })
        .collect();
    Ok(Json(results).into_response())
}

async fn task_output(
    State(app): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, index) = p.map_err(path_error)?.0;
    let job = parse_job_id(&id)?;
    let index: u32 = index.parse().map_err(|_| ApiError::new(ErrorCode::Malformed, "task index must be a number"))?;
    let task = TaskId { job, index };
    match app.store.task_output(task).await? {
        None => Err(ApiError::not_found(format!("task {task}"))),
        Some((TaskState::Verified, Some(hash))) => serve_blob(&app, &hash).await,
        Some((state, _)) => Err(ApiError::new(ErrorCode::Conflict, format!("task {task} is {state:?}, not verified"))),
    }
}

fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::TooLarge { .. } => ApiError::new(ErrorCode::TooLarge, e.to_string()),
        BlobError::HashMismatch { .. } => ApiError::new(ErrorCode::HashMismatch, e.to_string()),
        BlobError::LengthMismatch { .. } | BlobError::Body(_) => ApiError::new(ErrorCode::Malformed, e.to_string()),
        BlobError::Quota(m) => ApiError::new(ErrorCode::RateLimited, m),
        BlobError::Io(io) => crate::error::Error::Io(io).into(),
        BlobError::Store(e) => crate::error::Error::Blobs(e).into(),
    }
}

/// Why a worker may not store an output, as the error it is told (HTTP and protocol frames).
pub(crate) fn output_refused(e: OutputRefused) -> ErrorBody {
    let code = match e {
        OutputRefused::NotHeld(_) => ErrorCode::LeaseNotHeld,
        OutputRefused::WrongSize { .. } => ErrorCode::Malformed,
        OutputRefused::AlreadyStored { .. } => ErrorCode::Conflict,
    };
    ErrorBody::new(code, e.to_string())
}

/// The signed length of an upload: its `Content-Length`.
fn content_length(req: &Request) -> Result<u64, ApiError> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::new(ErrorCode::Malformed, "blob uploads need a Content-Length (the signed length)"))
}

/// `PUT /v1/blobs/{hash}`: store a blob that must hash to `hash`, signed by its uploader
/// ([`UploadAuth`]): a client key for an input, charged to the key's quota; a worker key and the
/// lease it holds for an output of the task's declared size. Nothing is read or stored before
/// the signature, the quota and the lease check out.
async fn put_blob(
    State(app): State<AppState>,
    hash: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&hash.map_err(path_error)?.0)?;
    let auth =
        UploadAuth::from_headers(|name| req.headers().get(name).and_then(|v| v.to_str().ok())).map_err(ApiError)?;
    let len = content_length(&req)?;
    let limit = app.blobs.max_bytes();
    if len > limit {
        return Err(ApiError::new(ErrorCode::TooLarge, format!("blob is larger than {limit} bytes")));
    }
    auth.verify(&hash, len).map_err(|e| ApiError::new(ErrorCode::BadSignature, format!("upload signature: {e}")))?;
    let owner = match auth.purpose {
        UploadPurpose::Input => Owner::Client(auth.key),
        UploadPurpose::Output { lease } => {
            app.core
                .shared
                .leases
                .charge(lease, &auth.key, None, &hash, len)
                .map_err(|e| ApiError(output_refused(e)))?;
            Owner::Lease(lease)
        }
    };
    let stream = req.into_body().into_data_stream().map(|r| r.map_err(|e| e.to_string()));
    // Whether the blob is an output nobody may read yet, asked before it is stored: the answer
    // must not tell an uploader that someone else already stored these bytes.
    let withheld = withheld(&app, &hash);
    let stored = app.blobs.put(Upload { hash, len, owner }, Box::pin(stream), wall_ms()).await;
    if let Owner::Lease(lease) = owner {
        match &stored {
            Ok(_) => app.core.shared.leases.confirm(lease, &hash),
            Err(_) => app.core.shared.leases.uncharge(lease, &hash),
        }
    }
    let stored = stored.map_err(blob_error)?;
    if withheld && owner == Owner::Client(auth.key) {
        // The client proved it holds these bytes: they read as its own upload now.
        app.core.shared.withheld.publish(hash);
    }
    let status = if stored.created || withheld { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(StoredBlob { hash, size: stored.size })).into_response())
}

/// `GET /v1/blobs/{hash}`: inputs, and outputs of decided tasks. An output of a task not yet
/// decided is answered as absent: reading it would let a worker copy instead of compute.
async fn get_blob(
    State(app): State<AppState>,
    hash: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&hash.map_err(path_error)?.0)?;
    if withheld(&app, &hash) {
        return Err(blob_not_found(&hash));
    }
    serve_blob(&app, &hash).await
}

fn blob_not_found(hash: &Hash32) -> ApiError {
    ApiError::not_found(format!("blob {hash}"))
}

async fn serve_blob(app: &AppState, hash: &Hash32) -> Result<Response, ApiError> {
    // Streamed, so large outputs never sit whole in memory.
    let reader = app.blobs.open_reader(hash).await.map_err(|e| match e {
        BlobError::Store(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
            crate::error::Error::Blobs(e).into()
        }
        _ => blob_not_found(hash),
    })?;
    let (len, chunks) = (reader.size, reader.chunks);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable".to_string()),
            (header::ETAG, format!("\"{hash}\"")),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

async fn list_workers(
    State(app): State<AppState>,
    q: Result<Query<WorkersQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::Malformed, e.body_text()))?;
    let online = app.core.shared.online.read().expect("online set lock").clone();
    let workers = app.store.workers(&online, q.limit.unwrap_or(200).clamp(1, 2000)).await?;
    Ok(Json(workers).into_response())
}

fn parse_key(s: &str) -> Result<PublicKey, ApiError> {
    s.parse().map_err(|_| ApiError::new(ErrorCode::Malformed, "key must be 64 hex digits (an ed25519 public key)"))
}

/// `GET /v1/workers/{key}`: the relay's record of a worker, with its escrow account.
async fn get_worker(
    State(app): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = parse_key(&key.map_err(path_error)?.0)?;
    let online = app.core.shared.online.read().expect("online set lock").clone();
    let mut worker =
        app.store.worker(&key, &online).await?.ok_or_else(|| ApiError::not_found(format!("worker {key}")))?;
    if let Some(escrow) = &app.escrow {
        worker.escrow = escrow.worker_account(&key).await?;
    }
    Ok(Json(worker).into_response())
}

/// `GET /v1/clients/{key}`: an account in escrow (a client's, or a worker owner's): its balance
/// and the nonce its next signed authorization must carry.
async fn get_client(
    State(app): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = parse_key(&key.map_err(path_error)?.0)?;
    let escrow = match &app.escrow {
        Some(escrow) => Some(escrow.account(&key).await?),
        None => None,
    };
    Ok(Json(ClientView { key, escrow }).into_response())
}

/// `POST /v1/accounts/{key}/actions`: submits an owner's signed `unbond` or `withdraw` to the
/// escrow. The signature is checked here first (a forged one costs nothing), then by the
/// contract, with the nonce: a replay is refused.
async fn account_action(
    State(app): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = parse_key(&key.map_err(path_error)?.0)?;
    let req: AccountRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::new(ErrorCode::Malformed, format!("action: {e}")))?;
    let action = req.action.to_action().map_err(|e| ApiError::new(ErrorCode::Malformed, e))?;
    let escrow = app.escrow.as_ref().ok_or_else(|| ApiError::not_found("escrow (this relay runs jobs unpaid)"))?;
    let deployment = escrow.deployment();
    let message = account_bytes(deployment.as_deployment(), &key, req.nonce, &action);
    verify(&key, &message, &req.signature)
        .map_err(|e| ApiError::new(ErrorCode::BadSignature, format!("the account's signature over the action: {e}")))?;
    escrow.authorized(&key, req.nonce, &action, &req.signature).await?;
    Ok(Json(escrow.account(&key).await?).into_response())
}

/// Largest single operator deposit: far above any real grant, far below overflow.
const MAX_ADMIN_DEPOSIT: u128 = 1_000_000_000_000_000_000_000_000;

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /v1/admin/deposits` (`Authorization: Bearer <admin token>`): the operator of an
/// embedded ledger funds an account with new money, through the contract's `Deposit`. Off
/// unless the relay was given an admin token.
async fn admin_deposit(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let Some(token) = &app.admin_token else {
        return Err(ApiError::not_found("admin routes (start the relay with --admin-token-file)"));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !same_secret(given.strip_prefix("Bearer ").unwrap_or("").as_bytes(), token.as_bytes()) {
        return Err(ApiError::new(ErrorCode::BadSignature, "admin routes need Authorization: Bearer <admin token>"));
    }
    let req: AdminDeposit =
        serde_json::from_slice(&body).map_err(|e| ApiError::new(ErrorCode::Malformed, format!("deposit: {e}")))?;
    let amount = req
        .amount
        .parse::<u128>()
        .ok()
        .filter(|a| (1..=MAX_ADMIN_DEPOSIT).contains(a))
        .ok_or_else(|| ApiError::new(ErrorCode::Malformed, format!("amount must be 1..={MAX_ADMIN_DEPOSIT}")))?;
    let escrow = app.escrow.as_ref().ok_or_else(|| ApiError::not_found("escrow (this relay runs jobs unpaid)"))?;
    escrow.mint_deposit(&req.account, amount).await?;
    tracing::info!(account = %req.account, amount, "operator deposit");
    Ok(Json(escrow.account(&req.account).await?).into_response())
}

/// `GET /v1/jobs/{id}/escrow`: the job's deposit, payouts and refund.
async fn job_escrow(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_job_id(&id.map_err(path_error)?.0)?;
    let Some(escrow) = &app.escrow else {
        return Err(ApiError::not_found("escrow (this relay runs jobs unpaid)"));
    };
    let job = escrow.job(id).await?.ok_or_else(|| ApiError::not_found(format!("job {id} in escrow")))?;
    Ok(Json(job).into_response())
}
