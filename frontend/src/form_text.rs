//! The job form in the shown language: each field's label and hint, the kernels' names, the
//! Mandelbrot presets, and the form's problems ([`crate::job_form::Problem`]) as sentences that
//! name the field by its label.

use crate::format::fill;
use crate::job_form::{Field, FormError, JobKind, Problem};
use crate::lang::{I18n, tr};

pub fn label(i18n: I18n, field: Field) -> &'static str {
    match field {
        Field::Label => tr!(i18n, form.field.label),
        Field::Replicas => tr!(i18n, form.field.replicas),
        Field::Quorum => tr!(i18n, form.field.quorum),
        Field::MaxReplicas => tr!(i18n, form.field.max_replicas),
        Field::Price => tr!(i18n, form.field.price),
        Field::Deadline => tr!(i18n, form.field.deadline),
        Field::Width => tr!(i18n, form.field.width),
        Field::Height => tr!(i18n, form.field.height),
        Field::Tile => tr!(i18n, form.field.tile),
        Field::MaxIter => tr!(i18n, form.field.max_iter),
        Field::CenterRe => tr!(i18n, form.field.center_re),
        Field::CenterIm => tr!(i18n, form.field.center_im),
        Field::Scale => tr!(i18n, form.field.scale),
        Field::MatM => tr!(i18n, form.field.mat_m),
        Field::MatN => tr!(i18n, form.field.mat_n),
        Field::MatK => tr!(i18n, form.field.mat_k),
        Field::RowsPerTask => tr!(i18n, form.field.rows_per_task),
        Field::Seed => tr!(i18n, form.field.seed),
        Field::PiTasks | Field::ShaTasks | Field::WgslTasks => tr!(i18n, form.field.tasks),
        Field::PiWorkgroups | Field::ShaWorkgroups => tr!(i18n, form.field.workgroups_per_task),
        Field::PiSamples => tr!(i18n, form.field.pi_samples),
        Field::ShaPrefix => tr!(i18n, form.field.sha_prefix),
        Field::ShaNonces => tr!(i18n, form.field.sha_nonces),
        Field::WgslSource => tr!(i18n, form.field.wgsl_source),
        Field::WgslEntry => tr!(i18n, form.field.wgsl_entry),
        Field::WgslInputs => tr!(i18n, form.field.wgsl_inputs),
        Field::WgslParams => tr!(i18n, form.field.wgsl_params),
        Field::WgslWorkgroups => tr!(i18n, form.field.wgsl_workgroups),
        Field::WgslOutputSize => tr!(i18n, form.field.wgsl_output_size),
        Field::WgslTolerance => tr!(i18n, form.field.wgsl_tolerance),
    }
}

pub fn hint(i18n: I18n, field: Field) -> Option<&'static str> {
    Some(match field {
        Field::Replicas => tr!(i18n, form.hint.replicas),
        Field::Quorum => tr!(i18n, form.hint.quorum),
        Field::MaxReplicas => tr!(i18n, form.hint.max_replicas),
        Field::Price => tr!(i18n, form.hint.price),
        Field::Deadline => tr!(i18n, form.hint.deadline),
        Field::Tile => tr!(i18n, form.hint.tile),
        Field::Scale => tr!(i18n, form.hint.scale),
        Field::PiWorkgroups | Field::ShaWorkgroups => tr!(i18n, form.hint.workgroups_per_task),
        Field::WgslParams => tr!(i18n, form.hint.wgsl_params),
        Field::WgslTolerance => tr!(i18n, form.hint.wgsl_tolerance),
        _ => return None,
    })
}

pub fn kind(i18n: I18n, kind: JobKind) -> &'static str {
    match kind {
        JobKind::Mandelbrot => tr!(i18n, form.kind.mandelbrot),
        JobKind::Matmul => tr!(i18n, form.kind.matmul),
        JobKind::MonteCarloPi => tr!(i18n, form.kind.monte_carlo_pi),
        JobKind::Sha256NonceSearch => tr!(i18n, form.kind.sha256_nonce_search),
        JobKind::Wgsl => tr!(i18n, form.kind.wgsl),
    }
}

/// The name of [`crate::job_form::REGIONS`]`[index]`.
pub fn region(i18n: I18n, index: usize) -> &'static str {
    match index {
        0 => tr!(i18n, form.region.whole_set),
        1 => tr!(i18n, form.region.seahorse_valley),
        2 => tr!(i18n, form.region.elephant_valley),
        _ => tr!(i18n, form.region.spiral),
    }
}

/// The form's problem as a sentence; a field's own label stands for `what`.
pub fn error(i18n: I18n, error: &FormError) -> String {
    let what = error.field.map(|f| label(i18n, f)).unwrap_or_default();
    problem(i18n, what, &error.problem)
}

fn problem(i18n: I18n, what: &str, problem: &Problem) -> String {
    let n = |v: u64| crate::format::count(v);
    match problem {
        Problem::Required { .. } => fill(tr!(i18n, form.error.required), &[("what", what)]),
        Problem::NotU32 { .. } => {
            fill(tr!(i18n, form.error.not_u32), &[("what", what), ("max", &n(u64::from(u32::MAX)))])
        }
        Problem::OutOfRange { max, .. } => {
            fill(tr!(i18n, form.error.out_of_range), &[("what", what), ("max", &n(u64::from(*max)))])
        }
        Problem::NotWhole { .. } => fill(tr!(i18n, form.error.not_whole), &[("what", what)]),
        Problem::NotNumber { .. } => fill(tr!(i18n, form.error.not_number), &[("what", what)]),
        Problem::LabelTooLong { max } => fill(tr!(i18n, form.error.label_too_long), &[("max", &n(*max as u64))]),
        Problem::QuorumOverReplicas { quorum } => {
            fill(tr!(i18n, form.error.quorum_over_replicas), &[("quorum", &quorum.to_string())])
        }
        Problem::MaxBelowReplicas { replicas } => {
            fill(tr!(i18n, form.error.max_below_replicas), &[("replicas", &replicas.to_string())])
        }
        Problem::TooManyTasks { tasks, max } => {
            fill(tr!(i18n, form.error.too_many_tasks), &[("tasks", &n(*tasks as u64)), ("max", &n(*max as u64))])
        }
        Problem::ViewWidthNotPositive => tr!(i18n, form.error.view_width_not_positive).to_string(),
        Problem::ViewOutOfRange => tr!(i18n, form.error.view_out_of_range).to_string(),
        Problem::ImageSizesNotPositive => tr!(i18n, form.error.image_sizes_not_positive).to_string(),
        Problem::MatrixTooLarge { name, mib } => {
            fill(tr!(i18n, form.error.matrix_too_large), &[("name", name), ("mib", &n(*mib))])
        }
        Problem::MatrixSizesNotPositive => tr!(i18n, form.error.matrix_sizes_not_positive).to_string(),
        Problem::NoDispatchShape => tr!(i18n, form.error.no_dispatch_shape).to_string(),
        Problem::TooManyWorkgroups => tr!(i18n, form.error.too_many_workgroups).to_string(),
        Problem::CountsOutOfRange => tr!(i18n, form.error.counts_out_of_range).to_string(),
        Problem::PrefixRequired => tr!(i18n, form.error.prefix_required).to_string(),
        Problem::KernelEmpty => tr!(i18n, form.error.kernel_empty).to_string(),
        Problem::KernelTooLarge { kib } => fill(tr!(i18n, form.error.kernel_too_large), &[("kib", &n(*kib as u64))]),
        Problem::EntryPoint => tr!(i18n, form.error.entry_point).to_string(),
        Problem::TooManyInputs { max } => fill(tr!(i18n, form.error.too_many_inputs), &[("max", &n(*max as u64))]),
        Problem::InputTooLarge { name, mib } => {
            fill(tr!(i18n, form.error.input_too_large), &[("name", name), ("mib", &n(*mib))])
        }
        Problem::NotAWord { word } => {
            fill(tr!(i18n, form.error.not_a_word), &[("word", word), ("max", &n(u64::from(u32::MAX)))])
        }
        Problem::WorkgroupsNotThree => tr!(i18n, form.error.workgroups_not_three).to_string(),
        Problem::WorkgroupCount { max } => fill(tr!(i18n, form.error.workgroup_count), &[("max", &n(u64::from(*max)))]),
        Problem::OutputNotWords => tr!(i18n, form.error.output_not_words).to_string(),
        Problem::TooManyParams { max } => fill(tr!(i18n, form.error.too_many_params), &[("max", &n(*max as u64))]),
        Problem::Tolerance => tr!(i18n, form.error.tolerance).to_string(),
        Problem::Rejected(message) => message.clone(),
    }
}
