//! The job form in the shown language: each field's label and hint, the kernels' names, the
//! Mandelbrot presets, and the form's problems ([`crate::job_form::Problem`]) as sentences that
//! name the field by its label.

use crate::format::fill;
use crate::i18n::{Locale, t_string};
use crate::job_form::{Field, FormError, JobKind, Problem};
use leptos_i18n::I18nContext;

type I18n = I18nContext<Locale>;

pub fn label(i18n: I18n, field: Field) -> &'static str {
    match field {
        Field::Label => t_string!(i18n, form.field.label),
        Field::Replicas => t_string!(i18n, form.field.replicas),
        Field::Quorum => t_string!(i18n, form.field.quorum),
        Field::MaxReplicas => t_string!(i18n, form.field.max_replicas),
        Field::Price => t_string!(i18n, form.field.price),
        Field::Deadline => t_string!(i18n, form.field.deadline),
        Field::Width => t_string!(i18n, form.field.width),
        Field::Height => t_string!(i18n, form.field.height),
        Field::Tile => t_string!(i18n, form.field.tile),
        Field::MaxIter => t_string!(i18n, form.field.max_iter),
        Field::CenterRe => t_string!(i18n, form.field.center_re),
        Field::CenterIm => t_string!(i18n, form.field.center_im),
        Field::Scale => t_string!(i18n, form.field.scale),
        Field::MatM => t_string!(i18n, form.field.mat_m),
        Field::MatN => t_string!(i18n, form.field.mat_n),
        Field::MatK => t_string!(i18n, form.field.mat_k),
        Field::RowsPerTask => t_string!(i18n, form.field.rows_per_task),
        Field::Seed => t_string!(i18n, form.field.seed),
        Field::PiTasks | Field::ShaTasks | Field::WgslTasks => t_string!(i18n, form.field.tasks),
        Field::PiWorkgroups | Field::ShaWorkgroups => t_string!(i18n, form.field.workgroups_per_task),
        Field::PiSamples => t_string!(i18n, form.field.pi_samples),
        Field::ShaPrefix => t_string!(i18n, form.field.sha_prefix),
        Field::ShaNonces => t_string!(i18n, form.field.sha_nonces),
        Field::WgslSource => t_string!(i18n, form.field.wgsl_source),
        Field::WgslEntry => t_string!(i18n, form.field.wgsl_entry),
        Field::WgslInputs => t_string!(i18n, form.field.wgsl_inputs),
        Field::WgslParams => t_string!(i18n, form.field.wgsl_params),
        Field::WgslWorkgroups => t_string!(i18n, form.field.wgsl_workgroups),
        Field::WgslOutputSize => t_string!(i18n, form.field.wgsl_output_size),
        Field::WgslTolerance => t_string!(i18n, form.field.wgsl_tolerance),
    }
}

pub fn hint(i18n: I18n, field: Field) -> Option<&'static str> {
    Some(match field {
        Field::Replicas => t_string!(i18n, form.hint.replicas),
        Field::Quorum => t_string!(i18n, form.hint.quorum),
        Field::MaxReplicas => t_string!(i18n, form.hint.max_replicas),
        Field::Price => t_string!(i18n, form.hint.price),
        Field::Deadline => t_string!(i18n, form.hint.deadline),
        Field::Tile => t_string!(i18n, form.hint.tile),
        Field::Scale => t_string!(i18n, form.hint.scale),
        Field::PiWorkgroups | Field::ShaWorkgroups => t_string!(i18n, form.hint.workgroups_per_task),
        Field::WgslParams => t_string!(i18n, form.hint.wgsl_params),
        Field::WgslTolerance => t_string!(i18n, form.hint.wgsl_tolerance),
        _ => return None,
    })
}

pub fn kind(i18n: I18n, kind: JobKind) -> &'static str {
    match kind {
        JobKind::Mandelbrot => t_string!(i18n, form.kind.mandelbrot),
        JobKind::Matmul => t_string!(i18n, form.kind.matmul),
        JobKind::MonteCarloPi => t_string!(i18n, form.kind.monte_carlo_pi),
        JobKind::Sha256NonceSearch => t_string!(i18n, form.kind.sha256_nonce_search),
        JobKind::Wgsl => t_string!(i18n, form.kind.wgsl),
    }
}

/// The name of [`crate::job_form::REGIONS`]`[index]`.
pub fn region(i18n: I18n, index: usize) -> &'static str {
    match index {
        0 => t_string!(i18n, form.region.whole_set),
        1 => t_string!(i18n, form.region.seahorse_valley),
        2 => t_string!(i18n, form.region.elephant_valley),
        _ => t_string!(i18n, form.region.spiral),
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
        Problem::Required { .. } => fill(t_string!(i18n, form.error.required), &[("what", what)]),
        Problem::NotU32 { .. } => {
            fill(t_string!(i18n, form.error.not_u32), &[("what", what), ("max", &n(u64::from(u32::MAX)))])
        }
        Problem::OutOfRange { max, .. } => {
            fill(t_string!(i18n, form.error.out_of_range), &[("what", what), ("max", &n(u64::from(*max)))])
        }
        Problem::NotWhole { .. } => fill(t_string!(i18n, form.error.not_whole), &[("what", what)]),
        Problem::NotNumber { .. } => fill(t_string!(i18n, form.error.not_number), &[("what", what)]),
        Problem::LabelTooLong { max } => fill(t_string!(i18n, form.error.label_too_long), &[("max", &n(*max as u64))]),
        Problem::QuorumOverReplicas { quorum } => {
            fill(t_string!(i18n, form.error.quorum_over_replicas), &[("quorum", &quorum.to_string())])
        }
        Problem::MaxBelowReplicas { replicas } => {
            fill(t_string!(i18n, form.error.max_below_replicas), &[("replicas", &replicas.to_string())])
        }
        Problem::TooManyTasks { tasks, max } => {
            fill(t_string!(i18n, form.error.too_many_tasks), &[("tasks", &n(*tasks as u64)), ("max", &n(*max as u64))])
        }
        Problem::ViewWidthNotPositive => t_string!(i18n, form.error.view_width_not_positive).to_string(),
        Problem::ViewOutOfRange => t_string!(i18n, form.error.view_out_of_range).to_string(),
        Problem::ImageSizesNotPositive => t_string!(i18n, form.error.image_sizes_not_positive).to_string(),
        Problem::MatrixTooLarge { name, mib } => {
            fill(t_string!(i18n, form.error.matrix_too_large), &[("name", name), ("mib", &n(*mib))])
        }
        Problem::MatrixSizesNotPositive => t_string!(i18n, form.error.matrix_sizes_not_positive).to_string(),
        Problem::NoDispatchShape => t_string!(i18n, form.error.no_dispatch_shape).to_string(),
        Problem::TooManyWorkgroups => t_string!(i18n, form.error.too_many_workgroups).to_string(),
        Problem::CountsOutOfRange => t_string!(i18n, form.error.counts_out_of_range).to_string(),
        Problem::PrefixRequired => t_string!(i18n, form.error.prefix_required).to_string(),
        Problem::KernelEmpty => t_string!(i18n, form.error.kernel_empty).to_string(),
        Problem::KernelTooLarge { kib } => {
            fill(t_string!(i18n, form.error.kernel_too_large), &[("kib", &n(*kib as u64))])
        }
        Problem::EntryPoint => t_string!(i18n, form.error.entry_point).to_string(),
        Problem::TooManyInputs { max } => {
            fill(t_string!(i18n, form.error.too_many_inputs), &[("max", &n(*max as u64))])
        }
        Problem::InputTooLarge { name, mib } => {
            fill(t_string!(i18n, form.error.input_too_large), &[("name", name), ("mib", &n(*mib))])
        }
        Problem::NotAWord { word } => {
            fill(t_string!(i18n, form.error.not_a_word), &[("word", word), ("max", &n(u64::from(u32::MAX)))])
        }
        Problem::WorkgroupsNotThree => t_string!(i18n, form.error.workgroups_not_three).to_string(),
        Problem::WorkgroupCount { max } => {
            fill(t_string!(i18n, form.error.workgroup_count), &[("max", &n(u64::from(*max)))])
        }
        Problem::OutputNotWords => t_string!(i18n, form.error.output_not_words).to_string(),
        Problem::TooManyParams { max } => {
            fill(t_string!(i18n, form.error.too_many_params), &[("max", &n(*max as u64))])
        }
        Problem::Tolerance => t_string!(i18n, form.error.tolerance).to_string(),
        Problem::Rejected(message) => message.clone(),
    }
}
