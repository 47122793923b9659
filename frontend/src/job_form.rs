//! The Dashboard's job form: raw field text in, a checked [`JobSpec`] and the blobs it needs out.
//!
//! Built-in kernels get their tasks from the kernels' own job builders
//! (`starling_web_worker::kernels`), the same calls `starling submit` makes, and are checked with
//! `kernels::check_sizes` and `JobSpec::validate` exactly as the relay will check them, so a form
//! that passes here is refused by the relay only for reasons it alone can know (WGSL, balance).
//! Input blobs are hashed here (content addressing), so the spec is complete before any upload.

use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, TaskSpec};
use starling_protocol::limits::{MAX_BLOB_BYTES, MAX_DEADLINE_SECS, MAX_REPLICAS, MAX_TASKS, MAX_WGSL_BYTES};
use starling_protocol::{Hash32, sha256};
use starling_web_worker::kernels::job::Rules;
use starling_web_worker::kernels::{self, mandelbrot, matmul_f32, monte_carlo_pi, sha256_nonce_search};

/// What kind of job the form describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobKind {
    #[default]
    Mandelbrot,
    Matmul,
    MonteCarloPi,
    Sha256NonceSearch,
    Wgsl,
}

impl JobKind {
    pub const ALL: [JobKind; 5] =
        [JobKind::Mandelbrot, JobKind::Matmul, JobKind::MonteCarloPi, JobKind::Sha256NonceSearch, JobKind::Wgsl];

    /// The `<option value>`.
    pub fn value(self) -> &'static str {
        match self {
            JobKind::Mandelbrot => "mandelbrot",
            JobKind::Matmul => "matmul_f32",
            JobKind::MonteCarloPi => "monte_carlo_pi",
            JobKind::Sha256NonceSearch => "sha256_nonce_search",
            JobKind::Wgsl => "wgsl",
        }
    }

    pub fn from_value(value: &str) -> Option<JobKind> {
        Self::ALL.into_iter().find(|k| k.value() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            JobKind::Mandelbrot => "Mandelbrot render (exact, tiled)",
            JobKind::Matmul => "Matrix product, f32 (random inputs)",
            JobKind::MonteCarloPi => "Monte Carlo estimate of π (exact)",
            JobKind::Sha256NonceSearch => "SHA-256 nonce search (exact)",
            JobKind::Wgsl => "Custom WGSL kernel",
        }
    }
}

/// A form field, named by the id of its input element so errors can point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Label,
    Replicas,
    Quorum,
    MaxReplicas,
    Price,
    Deadline,
    Width,
    Height,
    Tile,
    MaxIter,
    CenterRe,
    CenterIm,
    Scale,
    MatM,
    MatN,
    MatK,
    RowsPerTask,
    Seed,
    PiTasks,
    PiWorkgroups,
    PiSamples,
    ShaPrefix,
    ShaTasks,
    ShaWorkgroups,
    ShaNonces,
    WgslSource,
    WgslEntry,
    WgslInputs,
    WgslParams,
    WgslWorkgroups,
    WgslOutputSize,
    WgslTasks,
    WgslTolerance,
}

impl Field {
    /// The input's `id` (and `data-testid`).
    pub fn id(self) -> &'static str {
        match self {
            Field::Label => "job-label",
            Field::Replicas => "job-replicas",
            Field::Quorum => "job-quorum",
            Field::MaxReplicas => "job-max-replicas",
            Field::Price => "job-price",
            Field::Deadline => "job-deadline",
            Field::Width => "job-width",
            Field::Height => "job-height",
            Field::Tile => "job-tile",
            Field::MaxIter => "job-max-iter",
            Field::CenterRe => "job-center-re",
            Field::CenterIm => "job-center-im",
            Field::Scale => "job-scale",
            Field::MatM => "job-m",
            Field::MatN => "job-n",
            Field::MatK => "job-k",
            Field::RowsPerTask => "job-rows-per-task",
            Field::Seed => "job-seed",
            Field::PiTasks => "job-pi-tasks",
            Field::PiWorkgroups => "job-pi-workgroups",
            Field::PiSamples => "job-pi-samples",
            Field::ShaPrefix => "job-sha-prefix",
            Field::ShaTasks => "job-sha-tasks",
            Field::ShaWorkgroups => "job-sha-workgroups",
            Field::ShaNonces => "job-sha-nonces",
            Field::WgslSource => "wgsl-editor",
            Field::WgslEntry => "job-wgsl-entry",
            Field::WgslInputs => "job-wgsl-inputs",
            Field::WgslParams => "job-wgsl-params",
            Field::WgslWorkgroups => "job-wgsl-workgroups",
            Field::WgslOutputSize => "job-wgsl-output-size",
            Field::WgslTasks => "job-wgsl-tasks",
            Field::WgslTolerance => "job-wgsl-tolerance",
        }
    }
}

/// Why the form cannot become a job; `field` is the input to fix, when one is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct FormError {
    pub field: Option<Field>,
    pub problem: Problem,
}

/// What is wrong, with the numbers the sentence needs: the page says it in the shown language
/// (the field's own label stands for `what`); `Display` is the English sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{what} is required")]
    Required { what: &'static str },
    #[error("{what} must be a whole number from 0 to {max}", max = u32::MAX)]
    NotU32 { what: &'static str },
    #[error("{what} must be between 1 and {max}")]
    OutOfRange { what: &'static str, max: u32 },
    #[error("{what} must be a whole number")]
    NotWhole { what: &'static str },
    #[error("{what} must be a number, like -0.75")]
    NotNumber { what: &'static str },
    #[error("the label may have at most {max} characters")]
    LabelTooLong { max: usize },
    #[error("a quorum of {quorum} needs at least {quorum} replicas")]
    QuorumOverReplicas { quorum: u8 },
    #[error("most replicas must be at least the {replicas} replicas handed out first")]
    MaxBelowReplicas { replicas: u8 },
    #[error("this makes {tasks} tasks; a job may have at most {max}")]
    TooManyTasks { tasks: usize, max: usize },
    #[error("the view width must be above 0")]
    ViewWidthNotPositive,
    #[error("the view must stay within ±8 of the origin (the kernel's fixed-point range)")]
    ViewOutOfRange,
    #[error("image and tile sizes must be positive")]
    ImageSizesNotPositive,
    #[error("matrix {name} would be over the relay's {mib} MiB blob limit")]
    MatrixTooLarge { name: &'static str, mib: u64 },
    #[error("matrix sizes must be positive")]
    MatrixSizesNotPositive,
    #[error("this many workgroups has no dispatch shape; try a power of two")]
    NoDispatchShape,
    #[error("tasks × workgroups must stay within 2³² workgroups")]
    TooManyWorkgroups,
    #[error("these counts are out of range")]
    CountsOutOfRange,
    #[error("the prefix is required (any text)")]
    PrefixRequired,
    #[error("write a kernel first")]
    KernelEmpty,
    #[error("the kernel is over {kib} KiB")]
    KernelTooLarge { kib: usize },
    #[error("the entry point is a function name: 1-64 letters, digits or '_'")]
    EntryPoint,
    #[error("at most {max} input files")]
    TooManyInputs { max: usize },
    #[error("{name} is over the relay's {mib} MiB limit")]
    InputTooLarge { name: String, mib: u64 },
    #[error("{word:?} is not a whole number from 0 to {max}", max = u32::MAX)]
    NotAWord { word: String },
    #[error("workgroups take three numbers: x,y,z")]
    WorkgroupsNotThree,
    #[error("each workgroup count must be between 1 and {max}")]
    WorkgroupCount { max: u32 },
    #[error("the output size must be a multiple of 4 bytes")]
    OutputNotWords,
    #[error("at most {max} param words")]
    TooManyParams { max: usize },
    #[error("the tolerance is a non-negative number like 0.0001, or empty for exact")]
    Tolerance,
    /// The relay's own checks (`kernels::job::check`), in their words.
    #[error("{0}")]
    Rejected(String),
}

fn at(field: Field, problem: Problem) -> FormError {
    FormError { field: Some(field), problem }
}

fn whole(message: impl Into<String>) -> FormError {
    FormError { field: None, problem: Problem::Rejected(message.into()) }
}

/// A named region of the complex plane for Mandelbrot renders.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub name: &'static str,
    pub center_re: f64,
    pub center_im: f64,
    /// Width of the view in the plane.
    pub scale: f64,
}

pub const REGIONS: [Region; 4] = [
    Region { name: "Whole set", center_re: -0.6, center_im: 0.0, scale: 3.2 },
    Region { name: "Seahorse valley", center_re: -0.745, center_im: 0.105, scale: 0.05 },
    Region { name: "Elephant valley", center_re: 0.285, center_im: 0.01, scale: 0.06 },
    Region { name: "Spiral", center_re: -0.7615, center_im: -0.0848, scale: 0.0125 },
];

/// The form as typed: every field is text, parsed and checked by [`build`]. Defaults are the
/// CLI's (`starling submit --help`), scaled so a first job finishes quickly on a few phones.
#[derive(Debug, Clone, PartialEq)]
pub struct JobForm {
    pub kind: JobKind,
    pub label: String,
    pub replicas: String,
    pub quorum: String,
    pub max_replicas: String,
    /// Micro-units per accepted replica.
    pub price: String,
    /// Minutes.
    pub deadline_minutes: String,
    pub width: String,
    pub height: String,
    pub tile: String,
    pub max_iter: String,
    pub center_re: String,
    pub center_im: String,
    pub scale: String,
    pub m: String,
    pub n: String,
    pub k: String,
    pub rows_per_task: String,
    pub seed: String,
    pub pi_tasks: String,
    pub pi_workgroups: String,
    pub pi_samples: String,
    pub sha_prefix: String,
    pub sha_tasks: String,
    pub sha_workgroups: String,
    pub sha_nonces: String,
    pub wgsl_source: String,
    pub wgsl_entry: String,
    /// Comma-separated u32 words; `{task}` stands for the task index.
    pub wgsl_params: String,
    pub wgsl_workgroups: String,
    pub wgsl_output_size: String,
    pub wgsl_tasks: String,
    /// Empty for exact comparison.
    pub wgsl_tolerance: String,
}

/// A starting point for custom kernels: doubles every input word into the output.
pub const WGSL_EXAMPLE: &str =
    "// Binding 0: this task's params (u32 words). Bindings 1..=N: the inputs. N+1: the output.
struct Params {
    scale: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&output) && i < arrayLength(&input)) {
        output[i] = input[i] * params.scale;
    }
}
";

impl Default for JobForm {
    fn default() -> Self {
        let whole_set = REGIONS[0];
        JobForm {
            kind: JobKind::Mandelbrot,
            label: String::new(),
            replicas: "2".into(),
            quorum: "2".into(),
            max_replicas: "4".into(),
            price: "0".into(),
            deadline_minutes: "60".into(),
            width: "1024".into(),
            height: "768".into(),
            tile: "128".into(),
            max_iter: "500".into(),
            center_re: whole_set.center_re.to_string(),
            center_im: whole_set.center_im.to_string(),
            scale: whole_set.scale.to_string(),
            m: "512".into(),
            n: "512".into(),
            k: "512".into(),
            rows_per_task: "128".into(),
            seed: "1".into(),
            pi_tasks: "16".into(),
            pi_workgroups: "64".into(),
            pi_samples: "1024".into(),
            sha_prefix: "starling".into(),
            sha_tasks: "8".into(),
            sha_workgroups: "64".into(),
            sha_nonces: "64".into(),
            wgsl_source: WGSL_EXAMPLE.into(),
            wgsl_entry: "main".into(),
            wgsl_params: "2".into(),
            wgsl_workgroups: "1,1,1".into(),
            wgsl_output_size: "256".into(),
            wgsl_tasks: "1".into(),
            wgsl_tolerance: String::new(),
        }
    }
}

/// A file the client picked as a WGSL input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A blob the relay must hold before the job is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// What to call it in progress messages ("matrix A", a file name).
    pub name: String,
    pub hash: Hash32,
    pub bytes: Vec<u8>,
}

/// A checked job, ready to upload, sign and post.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltJob {
    pub spec: JobSpec,
    /// Distinct blobs, in the order the tasks first bind them.
    pub uploads: Vec<Upload>,
}

impl BuiltJob {
    /// What the client pays if every task is verified with the first replicas, and at most (every
    /// task needing `max_replicas`), in micro-units.
    pub fn cost(&self) -> (u128, u128) {
        cost(&self.spec)
    }
}

/// Expected and worst-case cost of `spec` in micro-units: tasks x replicas (or max_replicas) x price.
pub fn cost(spec: &JobSpec) -> (u128, u128) {
    let per = |replicas: u8| spec.tasks.len() as u128 * u128::from(replicas) * u128::from(spec.price_per_replica);
    (per(spec.replicas), per(spec.max_replicas))
}

/// Tasks and cost of the job the form describes, from its numbers alone (no inputs generated),
/// for the line under the form while typing. `None` while a number it needs does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub tasks: u64,
    /// Micro-units if every task is verified by its first replicas.
    pub expected: u128,
    /// Micro-units if every task needs `max_replicas`.
    pub worst: u128,
}

pub fn estimate(form: &JobForm) -> Option<Estimate> {
    let num = |text: &str| text.trim().parse::<u64>().ok();
    let tasks = match form.kind {
        JobKind::Mandelbrot => {
            let tile = num(&form.tile).filter(|&t| t > 0)?;
            num(&form.width)?.div_ceil(tile) * num(&form.height)?.div_ceil(tile)
        }
        JobKind::Matmul => num(&form.m)?.div_ceil(num(&form.rows_per_task).filter(|&r| r > 0)?),
        JobKind::MonteCarloPi => num(&form.pi_tasks)?,
        JobKind::Sha256NonceSearch => num(&form.sha_tasks)?,
        JobKind::Wgsl => num(&form.wgsl_tasks)?,
    };
    let price = u128::from(num(&form.price)?);
    let replicas = u128::from(num(&form.replicas)?);
    let max_replicas = u128::from(num(&form.max_replicas)?).max(replicas);
    let per_task = u128::from(tasks) * price;
    Some(Estimate { tasks, expected: per_task * replicas, worst: per_task * max_replicas })
}

fn trimmed(text: &str) -> &str {
    text.trim()
}

fn parse_u32(field: Field, text: &str, what: &'static str) -> Result<u32, FormError> {
    let t = trimmed(text);
    if t.is_empty() {
        return Err(at(field, Problem::Required { what }));
    }
    t.parse::<u32>().map_err(|_| at(field, Problem::NotU32 { what }))
}

fn parse_positive(field: Field, text: &str, what: &'static str, max: u32) -> Result<u32, FormError> {
    let v = parse_u32(field, text, what)?;
    if v == 0 || v > max {
        return Err(at(field, Problem::OutOfRange { what, max }));
    }
    Ok(v)
}

fn parse_u64(field: Field, text: &str, what: &'static str) -> Result<u64, FormError> {
    let t = trimmed(text);
    if t.is_empty() {
        return Err(at(field, Problem::Required { what }));
    }
    t.parse::<u64>().map_err(|_| at(field, Problem::NotWhole { what }))
}

fn parse_f64(field: Field, text: &str, what: &'static str) -> Result<f64, FormError> {
    decimal(trimmed(text)).ok_or_else(|| at(field, Problem::NotNumber { what }))
}

/// A finite decimal number, written with `.` or, as in Indonesian, `,` as its decimal mark
/// (`-0,75`); these fields never group thousands, so one comma and no point is a decimal mark.
fn decimal(text: &str) -> Option<f64> {
    let text = if !text.contains('.') && text.matches(',').count() == 1 { text.replace(',', ".") } else { text.into() };
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Comma-separated u32 words with `{task}` replaced by `task` (as `starling submit wgsl --params`).
pub fn parse_words(text: &str, task: u32) -> Result<Vec<u32>, Problem> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let p = p.replace("{task}", &task.to_string());
            p.parse::<u32>().map_err(|_| Problem::NotAWord { word: p })
        })
        .collect()
}

pub use starling_web_worker::kernels::matmul_f32::random_matrix;

/// Largest matrix dimension the page generates: a 4096 x 4096 f32 input is 64 MiB, the relay's
/// blob limit.
pub const MAX_MATRIX_DIM: u32 = 4096;
/// Largest Mandelbrot image side: the assembled preview lives in the page's memory.
pub const MAX_IMAGE_SIDE: u32 = 8192;

fn rules(form: &JobForm) -> Result<Rules, FormError> {
    let label = form.label.trim().to_string();
    if label.chars().count() > starling_protocol::limits::MAX_LABEL_LEN {
        return Err(at(Field::Label, Problem::LabelTooLong { max: starling_protocol::limits::MAX_LABEL_LEN }));
    }
    let small = |field, text: &str, what: &'static str| -> Result<u8, FormError> {
        let v = parse_positive(field, text, what, u32::from(MAX_REPLICAS))?;
        Ok(v as u8)
    };
    let replicas = small(Field::Replicas, &form.replicas, "Replicas")?;
    let quorum = small(Field::Quorum, &form.quorum, "Quorum")?;
    let max_replicas = small(Field::MaxReplicas, &form.max_replicas, "Most replicas")?;
    if quorum > replicas {
        return Err(at(Field::Quorum, Problem::QuorumOverReplicas { quorum }));
    }
    if max_replicas < replicas {
        return Err(at(Field::MaxReplicas, Problem::MaxBelowReplicas { replicas }));
    }
    let price = parse_u64(Field::Price, &form.price, "Price per replica")?;
    let max_minutes = (MAX_DEADLINE_SECS / 60) as u32;
    let minutes = parse_positive(Field::Deadline, &form.deadline_minutes, "The deadline (minutes)", max_minutes)?;
    let deadline_secs = u64::from(minutes) * 60;
    Ok(Rules { label, replicas, quorum, max_replicas, price_per_replica: price, deadline_secs, adaptive_audit: None })
}

fn check_task_count(field: Field, n: usize) -> Result<(), FormError> {
    if n > MAX_TASKS {
        return Err(at(field, Problem::TooManyTasks { tasks: n, max: MAX_TASKS }));
    }
    Ok(())
}

/// Builds and checks the job the form describes. `files` are the WGSL job's inputs, bound in order
/// from binding 1 (ignored for built-ins); `nonce` makes otherwise identical jobs distinct.
pub fn build(form: &JobForm, files: &[InputFile], nonce: u64) -> Result<BuiltJob, FormError> {
    let rules = rules(form)?;
    let (kernel, tasks, comparison, uploads) = match form.kind {
        JobKind::Mandelbrot => mandelbrot_job(form)?,
        JobKind::Matmul => matmul_job(form)?,
        JobKind::MonteCarloPi => pi_job(form)?,
        JobKind::Sha256NonceSearch => sha_job(form)?,
        JobKind::Wgsl => wgsl_job(form, files)?,
    };
    let spec = rules.spec(kernel, tasks, comparison, nonce);
    // The relay's own checks, so the form says what is wrong before anything is uploaded.
    let upload_size = |h: &Hash32| uploads.iter().find(|u| u.hash == *h).map(|u| u.bytes.len() as u64);
    kernels::job::check(&spec, upload_size).map_err(whole)?;
    Ok(BuiltJob { spec, uploads })
}

type Parts = (KernelSpec, Vec<TaskSpec>, Comparison, Vec<Upload>);

fn builtin(name: BuiltinKernel) -> KernelSpec {
    KernelSpec::Builtin { name }
}

fn mandelbrot_job(form: &JobForm) -> Result<Parts, FormError> {
    let width = parse_positive(Field::Width, &form.width, "Width", MAX_IMAGE_SIDE)?;
    let height = parse_positive(Field::Height, &form.height, "Height", MAX_IMAGE_SIDE)?;
    let tile = parse_positive(Field::Tile, &form.tile, "Tile size", MAX_IMAGE_SIDE)?;
    let max_iter = parse_positive(Field::MaxIter, &form.max_iter, "Iterations", 1_000_000)?;
    let center_re = parse_f64(Field::CenterRe, &form.center_re, "The centre's real part")?;
    let center_im = parse_f64(Field::CenterIm, &form.center_im, "The centre's imaginary part")?;
    let scale = parse_f64(Field::Scale, &form.scale, "The view width")?;
    if scale <= 0.0 {
        return Err(at(Field::Scale, Problem::ViewWidthNotPositive));
    }
    // Q4.28 fixed point: the plane coordinates must stay within ±8.
    if center_re.abs() + scale / 2.0 >= 8.0
        || center_im.abs() + scale * f64::from(height) / f64::from(width) / 2.0 >= 8.0
    {
        return Err(at(Field::Scale, Problem::ViewOutOfRange));
    }
    let tiles = u64::from(width.div_ceil(tile)) * u64::from(height.div_ceil(tile));
    check_task_count(Field::Tile, tiles as usize)?;
    let tasks = mandelbrot::tile_job_tasks(width, height, tile, max_iter, (center_re, center_im), scale);
    if tasks.is_empty() {
        return Err(at(Field::Width, Problem::ImageSizesNotPositive));
    }
    Ok((builtin(BuiltinKernel::Mandelbrot), tasks, Comparison::Exact, Vec::new()))
}

fn matmul_job(form: &JobForm) -> Result<Parts, FormError> {
    let m = parse_positive(Field::MatM, &form.m, "m (rows of A)", MAX_MATRIX_DIM)?;
    let n = parse_positive(Field::MatN, &form.n, "n (columns of B)", MAX_MATRIX_DIM)?;
    let k = parse_positive(Field::MatK, &form.k, "k (columns of A, rows of B)", MAX_MATRIX_DIM)?;
    let rows = parse_positive(Field::RowsPerTask, &form.rows_per_task, "Rows per task", m.max(1))?;
    let seed = parse_u64(Field::Seed, &form.seed, "Seed")?;
    for (field, r, c, name) in [(Field::MatK, m, k, "A"), (Field::MatN, k, n, "B")] {
        if u64::from(r) * u64::from(c) * 4 > MAX_BLOB_BYTES {
            return Err(at(field, Problem::MatrixTooLarge { name, mib: MAX_BLOB_BYTES >> 20 }));
        }
    }
    check_task_count(Field::RowsPerTask, m.div_ceil(rows) as usize)?;
    let a = matmul_f32::f32s_to_bytes(&random_matrix((m * k) as usize, seed));
    let b = matmul_f32::f32s_to_bytes(&random_matrix((k * n) as usize, seed.wrapping_add(1)));
    let (ha, hb) = (sha256(&a), sha256(&b));
    let tasks = matmul_f32::tasks_for(m, n, k, ha, hb, rows);
    if tasks.is_empty() {
        return Err(at(Field::MatM, Problem::MatrixSizesNotPositive));
    }
    // Float sums may be reassociated across GPUs: compare within a tolerance (as the CLI does).
    let comparison = Comparison::Tolerance { rel: 1e-4, abs: 1e-4 * (k as f32).sqrt() };
    let mut uploads = vec![Upload { name: format!("matrix A ({m}×{k})"), hash: ha, bytes: a }];
    if hb != ha {
        uploads.push(Upload { name: format!("matrix B ({k}×{n})"), hash: hb, bytes: b });
    }
    Ok((builtin(BuiltinKernel::MatmulF32), tasks, comparison, uploads))
}

fn pi_job(form: &JobForm) -> Result<Parts, FormError> {
    let n_tasks = parse_positive(Field::PiTasks, &form.pi_tasks, "Tasks", MAX_TASKS as u32)?;
    let workgroups = parse_positive(Field::PiWorkgroups, &form.pi_workgroups, "Workgroups per task", u32::MAX)?;
    let samples = parse_positive(
        Field::PiSamples,
        &form.pi_samples,
        "Samples per thread",
        monte_carlo_pi::MAX_SAMPLES_PER_THREAD,
    )?;
    let seed = parse_u64(Field::Seed, &form.seed, "Seed")?;
    if kernels::linear_workgroups(workgroups).is_none() {
        return Err(at(Field::PiWorkgroups, Problem::NoDispatchShape));
    }
    if u64::from(n_tasks) * u64::from(workgroups) > 1 << 32 {
        return Err(at(Field::PiWorkgroups, Problem::TooManyWorkgroups));
    }
    let tasks = monte_carlo_pi::tasks(seed, n_tasks, workgroups, samples);
    if tasks.is_empty() {
        return Err(at(Field::PiTasks, Problem::CountsOutOfRange));
    }
    Ok((builtin(BuiltinKernel::MonteCarloPi), tasks, Comparison::Exact, Vec::new()))
}

fn sha_job(form: &JobForm) -> Result<Parts, FormError> {
    let prefix = form.sha_prefix.as_str();
    if prefix.is_empty() {
        return Err(at(Field::ShaPrefix, Problem::PrefixRequired));
    }
    let n_tasks = parse_positive(Field::ShaTasks, &form.sha_tasks, "Tasks", MAX_TASKS as u32)?;
    let workgroups = parse_positive(Field::ShaWorkgroups, &form.sha_workgroups, "Workgroups per task", u32::MAX)?;
    let nonces = parse_positive(Field::ShaNonces, &form.sha_nonces, "Nonces per thread", u32::MAX)?;
    if kernels::linear_workgroups(workgroups).is_none() {
        return Err(at(Field::ShaWorkgroups, Problem::NoDispatchShape));
    }
    let tasks = sha256_nonce_search::tasks(sha256(prefix.as_bytes()).0, 0, n_tasks, workgroups, nonces);
    if tasks.is_empty() {
        return Err(at(Field::ShaTasks, Problem::CountsOutOfRange));
    }
    Ok((builtin(BuiltinKernel::Sha256NonceSearch), tasks, Comparison::Exact, Vec::new()))
}

fn wgsl_job(form: &JobForm, files: &[InputFile]) -> Result<Parts, FormError> {
    let source = form.wgsl_source.clone();
    if source.trim().is_empty() {
        return Err(at(Field::WgslSource, Problem::KernelEmpty));
    }
    if source.len() > MAX_WGSL_BYTES {
        return Err(at(Field::WgslSource, Problem::KernelTooLarge { kib: MAX_WGSL_BYTES >> 10 }));
    }
    let entry = form.wgsl_entry.trim().to_string();
    if entry.is_empty() || entry.len() > 64 || !entry.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(at(Field::WgslEntry, Problem::EntryPoint));
    }
    if files.len() > starling_protocol::limits::MAX_INPUTS_PER_TASK {
        return Err(at(
            Field::WgslInputs,
            Problem::TooManyInputs { max: starling_protocol::limits::MAX_INPUTS_PER_TASK },
        ));
    }
    let mut uploads: Vec<Upload> = Vec::new();
    let mut hashes = Vec::with_capacity(files.len());
    for file in files {
        if file.bytes.len() as u64 > MAX_BLOB_BYTES {
            return Err(at(
                Field::WgslInputs,
                Problem::InputTooLarge { name: file.name.clone(), mib: MAX_BLOB_BYTES >> 20 },
            ));
        }
        let hash = sha256(&file.bytes);
        hashes.push(hash);
        if !uploads.iter().any(|u| u.hash == hash) {
            uploads.push(Upload { name: file.name.clone(), hash, bytes: file.bytes.clone() });
        }
    }
    let workgroups = parse_words(&form.wgsl_workgroups, 0).map_err(|e| at(Field::WgslWorkgroups, e))?;
    let workgroups: [u32; 3] =
        workgroups.try_into().map_err(|_| at(Field::WgslWorkgroups, Problem::WorkgroupsNotThree))?;
    if workgroups.contains(&0) || workgroups.iter().any(|&w| w > starling_protocol::limits::MAX_WORKGROUPS_PER_DIM) {
        return Err(at(
            Field::WgslWorkgroups,
            Problem::WorkgroupCount { max: starling_protocol::limits::MAX_WORKGROUPS_PER_DIM },
        ));
    }
    let output_size = parse_positive(
        Field::WgslOutputSize,
        &form.wgsl_output_size,
        "Output size (bytes)",
        starling_protocol::limits::MAX_OUTPUT_BYTES,
    )?;
    if !output_size.is_multiple_of(4) {
        return Err(at(Field::WgslOutputSize, Problem::OutputNotWords));
    }
    let n_tasks = parse_positive(Field::WgslTasks, &form.wgsl_tasks, "Tasks", MAX_TASKS as u32)?;
    let mut tasks = Vec::with_capacity(n_tasks as usize);
    for i in 0..n_tasks {
        let params = parse_words(&form.wgsl_params, i).map_err(|e| at(Field::WgslParams, e))?;
        if params.len() > starling_protocol::limits::MAX_PARAM_WORDS {
            return Err(at(
                Field::WgslParams,
                Problem::TooManyParams { max: starling_protocol::limits::MAX_PARAM_WORDS },
            ));
        }
        tasks.push(TaskSpec {
            params,
            inputs: hashes.iter().map(|&h| h.into()).collect(),
            workgroups,
            output_size,
            kernel: 0,
        });
    }
    let comparison = match form.wgsl_tolerance.trim() {
        "" => Comparison::Exact,
        text => {
            let rel = decimal(text)
                .map(|r| r as f32)
                .filter(|r| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| at(Field::WgslTolerance, Problem::Tolerance))?;
            Comparison::Tolerance { rel, abs: rel }
        }
    };
    Ok((KernelSpec::Wgsl { source, entry_point: entry }, tasks, comparison, uploads))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: JobKind) -> JobForm {
        JobForm { kind, ..JobForm::default() }
    }

    #[test]
    fn decimals_take_a_point_or_a_comma() {
        for (text, want) in [("-0.75", Some(-0.75)), ("-0,75", Some(-0.75)), ("3", Some(3.0)), ("0,0001", Some(0.0001))]
        {
            assert_eq!(decimal(text), want, "{text}");
        }
        for bad in ["1,000.5", "1,2,3", "1.2.3", "", "abc", "inf", "NaN", "1e999"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_default_builds_a_valid_job() {
        for kind in JobKind::ALL {
            let job = build(&form(kind), &[InputFile { name: "in.bin".into(), bytes: vec![1, 0, 0, 0] }], 7)
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            job.spec.validate().unwrap();
            assert_eq!(job.spec.nonce, 7);
            assert_eq!((job.spec.replicas, job.spec.quorum, job.spec.max_replicas), (2, 2, 4));
            assert_eq!(job.spec.deadline_secs, 3600);
        }
    }

    #[test]
    fn mandelbrot_tasks_are_the_kernel_builders_tiles() {
        let job = build(&form(JobKind::Mandelbrot), &[], 1).unwrap();
        let want = mandelbrot::tile_job_tasks(1024, 768, 128, 500, (-0.6, 0.0), 3.2);
        assert_eq!(job.spec.tasks, want);
        assert_eq!(job.spec.tasks.len(), 8 * 6);
        assert_eq!(job.spec.comparison, Comparison::Exact);
        assert!(job.uploads.is_empty());
    }

    #[test]
    fn matmul_hashes_match_the_uploaded_bytes_and_the_cli_generator() {
        let f = JobForm {
            m: "64".into(),
            n: "32".into(),
            k: "16".into(),
            rows_per_task: "16".into(),
            seed: "3".into(),
            ..form(JobKind::Matmul)
        };
        let job = build(&f, &[], 1).unwrap();
        assert_eq!(job.uploads.len(), 2);
        for u in &job.uploads {
            assert_eq!(sha256(&u.bytes), u.hash);
        }
        let a = matmul_f32::f32s_to_bytes(&random_matrix(64 * 16, 3));
        assert_eq!(job.uploads[0].bytes, a);
        assert_eq!(job.spec.tasks, matmul_f32::tasks_for(64, 32, 16, job.uploads[0].hash, job.uploads[1].hash, 16));
        assert!(matches!(job.spec.comparison, Comparison::Tolerance { .. }));
        // The generator's values stay in [-1, 1).
        assert!(random_matrix(1000, 9).iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn pi_and_sha_use_the_kernel_builders() {
        let job = build(&form(JobKind::MonteCarloPi), &[], 1).unwrap();
        assert_eq!(job.spec.tasks, monte_carlo_pi::tasks(1, 16, 64, 1024));
        let job = build(&form(JobKind::Sha256NonceSearch), &[], 1).unwrap();
        assert_eq!(job.spec.tasks, sha256_nonce_search::tasks(sha256(b"starling").0, 0, 8, 64, 64));
    }

    #[test]
    fn wgsl_params_inputs_and_tolerance() {
        let f = JobForm {
            wgsl_params: "5, {task}".into(),
            wgsl_tasks: "3".into(),
            wgsl_workgroups: "4, 2, 1".into(),
            wgsl_tolerance: "0.001".into(),
            ..form(JobKind::Wgsl)
        };
        let files = [
            InputFile { name: "a.bin".into(), bytes: vec![1; 8] },
            InputFile { name: "same.bin".into(), bytes: vec![1; 8] },
        ];
        let job = build(&f, &files, 1).unwrap();
        assert_eq!(job.spec.tasks.len(), 3);
        assert_eq!(job.spec.tasks[2].params, vec![5, 2]);
        assert_eq!(job.spec.tasks[0].workgroups, [4, 2, 1]);
        // Both bindings refer to the same blob, uploaded once.
        assert_eq!(job.spec.tasks[0].inputs.len(), 2);
        assert_eq!(job.uploads.len(), 1);
        assert_eq!(job.spec.comparison, Comparison::Tolerance { rel: 0.001, abs: 0.001 });
    }

    #[test]
    fn errors_name_the_field() {
        type Mutate = fn(&mut JobForm);
        let cases: &[(&str, JobKind, Mutate, Field)] = &[
            ("quorum over replicas", JobKind::Mandelbrot, |f| f.quorum = "3".into(), Field::Quorum),
            ("max below replicas", JobKind::Mandelbrot, |f| f.max_replicas = "1".into(), Field::MaxReplicas),
            ("replicas over limit", JobKind::Mandelbrot, |f| f.replicas = "8".into(), Field::Replicas),
            ("no price", JobKind::Mandelbrot, |f| f.price = " ".into(), Field::Price),
            ("negative price", JobKind::Mandelbrot, |f| f.price = "-1".into(), Field::Price),
            ("deadline zero", JobKind::Mandelbrot, |f| f.deadline_minutes = "0".into(), Field::Deadline),
            ("deadline past a week", JobKind::Mandelbrot, |f| f.deadline_minutes = "20000".into(), Field::Deadline),
            ("zero width", JobKind::Mandelbrot, |f| f.width = "0".into(), Field::Width),
            ("text width", JobKind::Mandelbrot, |f| f.width = "wide".into(), Field::Width),
            ("tiny tiles", JobKind::Mandelbrot, |f| f.tile = "4".into(), Field::Tile),
            ("center not a number", JobKind::Mandelbrot, |f| f.center_re = "abc".into(), Field::CenterRe),
            ("view out of range", JobKind::Mandelbrot, |f| f.scale = "20".into(), Field::Scale),
            ("huge matrix", JobKind::Matmul, |f| f.m = "5000".into(), Field::MatM),
            ("rows over m", JobKind::Matmul, |f| f.rows_per_task = "1024".into(), Field::RowsPerTask),
            ("prime workgroups", JobKind::MonteCarloPi, |f| f.pi_workgroups = "65537".into(), Field::PiWorkgroups),
            ("samples over limit", JobKind::MonteCarloPi, |f| f.pi_samples = "99999999".into(), Field::PiSamples),
            ("empty prefix", JobKind::Sha256NonceSearch, |f| f.sha_prefix = String::new(), Field::ShaPrefix),
            ("empty kernel", JobKind::Wgsl, |f| f.wgsl_source = "  ".into(), Field::WgslSource),
            ("bad entry", JobKind::Wgsl, |f| f.wgsl_entry = "main()".into(), Field::WgslEntry),
            ("two workgroup dims", JobKind::Wgsl, |f| f.wgsl_workgroups = "1,1".into(), Field::WgslWorkgroups),
            ("odd output", JobKind::Wgsl, |f| f.wgsl_output_size = "6".into(), Field::WgslOutputSize),
            ("bad param", JobKind::Wgsl, |f| f.wgsl_params = "1,x".into(), Field::WgslParams),
            ("bad tolerance", JobKind::Wgsl, |f| f.wgsl_tolerance = "-1".into(), Field::WgslTolerance),
            ("long label", JobKind::Wgsl, |f| f.label = "x".repeat(129), Field::Label),
        ];
        for (name, kind, mutate, field) in cases {
            let mut f = form(*kind);
            mutate(&mut f);
            let err = build(&f, &[], 1).expect_err(name);
            assert_eq!(err.field, Some(*field), "{name}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn cost_counts_tasks_replicas_and_price() {
        let f = JobForm { price: "10".into(), ..form(JobKind::MonteCarloPi) };
        let job = build(&f, &[], 1).unwrap();
        assert_eq!(job.cost(), (16 * 2 * 10, 16 * 4 * 10));
    }

    #[test]
    fn estimates_agree_with_built_jobs() {
        for kind in JobKind::ALL {
            let f = JobForm { price: "3".into(), ..form(kind) };
            let job = build(&f, &[], 1).unwrap();
            let e = estimate(&f).unwrap();
            assert_eq!(e.tasks, job.spec.tasks.len() as u64, "{kind:?}");
            assert_eq!((e.expected, e.worst), job.cost(), "{kind:?}");
        }
        assert_eq!(estimate(&JobForm { tile: "0".into(), ..JobForm::default() }), None);
        assert_eq!(estimate(&JobForm { price: "x".into(), ..JobForm::default() }), None);
    }

    #[test]
    fn kinds_round_trip_through_option_values() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::from_value(kind.value()), Some(kind));
        }
        assert_eq!(JobKind::from_value("bitcoin"), None);
    }

    #[test]
    fn field_ids_are_distinct() {
        let all = [
            Field::Label,
            Field::Replicas,
            Field::Quorum,
            Field::MaxReplicas,
            Field::Price,
            Field::Deadline,
            Field::Width,
            Field::Height,
            Field::Tile,
            Field::MaxIter,
            Field::CenterRe,
            Field::CenterIm,
            Field::Scale,
            Field::MatM,
            Field::MatN,
            Field::MatK,
            Field::RowsPerTask,
            Field::Seed,
            Field::PiTasks,
            Field::PiWorkgroups,
            Field::PiSamples,
            Field::ShaPrefix,
            Field::ShaTasks,
            Field::ShaWorkgroups,
            Field::ShaNonces,
            Field::WgslSource,
            Field::WgslEntry,
            Field::WgslInputs,
            Field::WgslParams,
            Field::WgslWorkgroups,
            Field::WgslOutputSize,
            Field::WgslTasks,
            Field::WgslTolerance,
        ];
        let mut ids: Vec<&str> = all.iter().map(|f| f.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
    }
}
