//! What a job's verified outputs become on its page: a readable summary per kernel, a Mandelbrot
//! preview, a throughput series, and one archive holding every output.

use starling_protocol::api::{JobDetail, JobSummary};
use starling_protocol::job::{BuiltinKernel, JobSpec, KernelSpec, TaskSpec};
use starling_web_worker::kernels::{mandelbrot, matmul_f32, monte_carlo_pi, sha256_nonce_search};

/// The built-in kernel a spec runs, if any.
pub fn builtin(spec: &JobSpec) -> Option<BuiltinKernel> {
    match spec.kernel {
        KernelSpec::Builtin { name } => Some(name),
        KernelSpec::Wgsl { .. } | KernelSpec::Pipeline { .. } => None,
    }
}

/// Image size of a Mandelbrot job, from its first tile's params.
pub fn mandelbrot_size(spec: &JobSpec) -> Option<(u32, u32)> {
    if builtin(spec) != Some(BuiltinKernel::Mandelbrot) {
        return None;
    }
    let p = mandelbrot::MandelbrotParams::from_words(&spec.tasks.first()?.params).ok()?;
    Some((p.image_width, p.image_height))
}

/// Pixel rectangle (x, y, width, height) of each Mandelbrot task, in task order.
pub fn mandelbrot_tiles(spec: &JobSpec) -> Vec<(u32, u32, u32, u32)> {
    spec.tasks
        .iter()
        .filter_map(|t| mandelbrot::MandelbrotParams::from_words(&t.params).ok())
        .map(|p| (p.tile.x, p.tile.y, p.tile.width, p.tile.height))
        .collect()
}

/// The verified tiles of a Mandelbrot job as an RGBA image (for `ImageData`), with the kernels'
/// own `assemble_image`. Tiles not verified yet stay transparent, so the page's placeholder shows
/// through. `outputs[i]` is task `i`'s output where verified.
pub fn mandelbrot_rgba(spec: &JobSpec, outputs: &[Option<Vec<u8>>]) -> Result<Vec<u8>, String> {
    let (width, height) = mandelbrot_size(spec).ok_or("not a Mandelbrot job")?;
    let (tasks, outs): (Vec<TaskSpec>, Vec<&[u8]>) =
        spec.tasks.iter().zip(outputs).filter_map(|(task, out)| out.as_deref().map(|o| (task.clone(), o))).unzip();
    let rgb = mandelbrot::assemble_image(width, height, &tasks, &outs).map_err(|e| e.to_string())?;
    let mut rgba = vec![0u8; width as usize * height as usize * 4];
    for (x, y, w, h) in tasks
        .iter()
        .filter_map(|t| mandelbrot::MandelbrotParams::from_words(&t.params).ok())
        .map(|p| (p.tile.x, p.tile.y, p.tile.width, p.tile.height))
    {
        for row in y..y + h {
            for col in x..x + w {
                let i = (row as usize * width as usize + col as usize) * 3;
                let o = i / 3 * 4;
                rgba[o..o + 3].copy_from_slice(&rgb[i..i + 3]);
                rgba[o + 3] = 255;
            }
        }
    }
    Ok(rgba)
}

/// The sentences [`summary_in`] fills, one per kernel, with `{name}` placeholders.
#[derive(Debug, Clone, Copy)]
pub struct SummaryText<'a> {
    /// `{pi}`, `{samples}`, `{hits}`, `{error}`.
    pub pi: &'a str,
    /// `{nonce}`, `{zeros}`.
    pub nonce: &'a str,
    /// `{width}`, `{height}`, `{tiles}`.
    pub mandelbrot: &'a str,
    /// `{m}`, `{n}`, `{k}`.
    pub matmul: &'a str,
}

impl SummaryText<'static> {
    pub const ENGLISH: SummaryText<'static> = SummaryText {
        pi: "π ≈ {pi} from {samples} samples ({hits} inside the quarter circle); off by {error}",
        nonce: "Best nonce {nonce} with {zeros} leading zero bits",
        mandelbrot: "{width}×{height} render assembled from {tiles} tiles",
        matmul: "{m}×{n} product of a {m}×{k} and a {k}×{n} matrix",
    };
}

/// A sentence about a finished job's result, for kernels whose outputs mean something on their
/// own. `outputs` holds every task's output, in task order.
pub fn summary(spec: &JobSpec, outputs: &[Vec<u8>]) -> Option<String> {
    summary_in(spec, outputs, &SummaryText::ENGLISH)
}

/// [`summary`] in the words of `text`.
pub fn summary_in(spec: &JobSpec, outputs: &[Vec<u8>], text: &SummaryText) -> Option<String> {
    use crate::format::{count, decimal_mark, fill};
    match builtin(spec)? {
        BuiltinKernel::MonteCarloPi => {
            let hits: u64 = outputs.iter().map(|o| monte_carlo_pi::total_hits(o)).sum();
            let samples: u64 = spec
                .tasks
                .iter()
                .map(|t| monte_carlo_pi::MonteCarloParams::from_words(&t.params).map(|p| p.samples(t.workgroups)))
                .sum::<Result<u64, _>>()
                .ok()?;
            let pi = monte_carlo_pi::estimate(hits, samples);
            Some(fill(
                text.pi,
                &[
                    ("pi", &decimal_mark(format!("{pi:.6}"))),
                    ("samples", &count(samples)),
                    ("hits", &count(hits)),
                    ("error", &decimal_mark(format!("{:.1e}", (pi - std::f64::consts::PI).abs()))),
                ],
            ))
        }
        BuiltinKernel::Sha256NonceSearch => {
            let best = sha256_nonce_search::best(outputs.iter().flat_map(|o| sha256_nonce_search::decode(o)))?;
            Some(fill(text.nonce, &[("nonce", &best.nonce.to_string()), ("zeros", &best.leading_zeros.to_string())]))
        }
        BuiltinKernel::Mandelbrot => {
            let (w, h) = mandelbrot_size(spec)?;
            Some(fill(
                text.mandelbrot,
                &[("width", &w.to_string()), ("height", &h.to_string()), ("tiles", &count(spec.tasks.len() as u64))],
            ))
        }
        BuiltinKernel::MatmulF32 => {
            let p = matmul_f32::MatmulParams::from_words(&spec.tasks.first()?.params).ok()?;
            Some(fill(text.matmul, &[("m", &p.m.to_string()), ("n", &p.n.to_string()), ("k", &p.k.to_string())]))
        }
        // Reductions and the network's kernels are parts of larger jobs (their graph says more).
        BuiltinKernel::SumI32
        | BuiltinKernel::SumF32
        | BuiltinKernel::Concat
        | BuiltinKernel::MlpGradFx
        | BuiltinKernel::MlpStepFx
        | BuiltinKernel::MlpInferFx
        | BuiltinKernel::MlpGradF32
        | BuiltinKernel::MlpStepF32
        | BuiltinKernel::TopKU32 => None,
    }
}

/// The largest |difference| between a matmul job's outputs and the CPU reference over inputs
/// `a` and `b`; `Err` when the outputs do not make up the whole product.
pub fn matmul_max_error(spec: &JobSpec, a: &[u8], b: &[u8], outputs: &[Vec<u8>]) -> Result<f32, String> {
    let p = spec
        .tasks
        .first()
        .and_then(|t| matmul_f32::MatmulParams::from_words(&t.params).ok())
        .ok_or("not a matmul job")?;
    let reference = matmul_f32::bytes_to_f32s(&matmul_f32::MatmulParams::whole(p.m, p.n, p.k).cpu(a, b));
    let product: Vec<f32> = outputs.iter().flat_map(|o| matmul_f32::bytes_to_f32s(o)).collect();
    if product.len() != reference.len() {
        return Err(format!("the outputs hold {} entries; the product has {}", product.len(), reference.len()));
    }
    Ok(product.iter().zip(&reference).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max))
}

/// Whether a matmul job's largest difference from the CPU is within what float reassociation
/// explains (the bound `starling submit matmul` applies: 1e-3·√k).
pub fn matmul_within_tolerance(spec: &JobSpec, max_error: f32) -> bool {
    let k = spec.tasks.first().and_then(|t| matmul_f32::MatmulParams::from_words(&t.params).ok()).map_or(1, |p| p.k);
    f64::from(max_error) <= 1e-3 * f64::from(k).sqrt()
}

/// Multiply-adds the CPU check of a matmul job costs (to decide whether to offer it).
pub fn matmul_work(spec: &JobSpec) -> Option<u64> {
    let p = matmul_f32::MatmulParams::from_words(&spec.tasks.first()?.params).ok()?;
    Some(u64::from(p.m) * u64::from(p.n) * u64::from(p.k))
}

/// Where a key moves the focus in the task grid (one tab stop; arrows move inside it):
/// `index` of `len` cells laid out `columns` to a row. `None` for keys the grid does not handle.
pub fn grid_step(index: usize, len: usize, columns: usize, key: &str) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let columns = columns.max(1);
    let last = len - 1;
    let index = index.min(last);
    Some(match key {
        "ArrowRight" => (index + 1).min(last),
        "ArrowLeft" => index.saturating_sub(1),
        "ArrowDown" => (index + columns).min(last),
        "ArrowUp" => index.saturating_sub(columns),
        "Home" => 0,
        "End" => last,
        "PageDown" => (index + columns * 8).min(last),
        "PageUp" => index.saturating_sub(columns * 8),
        _ => return None,
    })
}

/// File name of one task's output in downloads.
pub fn output_name(job: u64, index: u32) -> String {
    format!("job-{job}-task-{index:04}.bin")
}

/// A tar archive (POSIX ustar) of `files`: the combined download of a job's outputs. Plain tar
/// opens everywhere without extra software.
pub fn tar(files: &[(String, Vec<u8>)], mtime_secs: u64) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(files.iter().map(|(_, d)| 512 + d.len().div_ceil(512) * 512).sum::<usize>() + 1024);
    for (name, data) in files {
        let mut header = [0u8; 512];
        let name_bytes = name.as_bytes();
        let n = name_bytes.len().min(100);
        header[..n].copy_from_slice(&name_bytes[..n]);
        octal(&mut header[100..108], 0o644);
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], data.len() as u64);
        octal(&mut header[136..148], mtime_secs);
        header[148..156].fill(b' ');
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        // Six octal digits, NUL, space: the traditional checksum field.
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
    }
    // End of archive: two zero blocks.
    out.resize(out.len() + 1024, 0);
    out
}

/// `value` as zero-padded octal filling `field` but its last byte, which is NUL.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(width)..];
    field[..width].copy_from_slice(text);
    field[width] = 0;
}

/// `job.json` in the combined download: the summary, the spec and each task's verified hash.
pub fn manifest(detail: &JobDetail) -> String {
    let tasks: Vec<serde_json::Value> = detail
        .tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "index": t.index,
                "state": t.state,
                "output_hash": t.output_hash,
                "file": t.output_hash.map(|_| output_name(detail.summary.id.0, t.index)),
            })
        })
        .collect();
    let value = serde_json::json!({ "job": detail.summary, "spec": detail.spec, "tasks": tasks });
    serde_json::to_string_pretty(&value).expect("manifest serializes")
}

/// Verified tasks over time for the throughput chart: (seconds since the job was created,
/// tasks verified). Points come from the relay's summary and from live events the page saw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Progress {
    created_ms: u64,
    points: Vec<(f64, f64)>,
    /// Whether the first observed point came after the job had already made progress: the line
    /// from creation to it is an assumption, which the chart draws differently.
    pub joined_late: bool,
}

impl Progress {
    /// Starts from a summary seen at `now_ms` (the page's wall clock).
    pub fn from_summary(job: &JobSummary, now_ms: u64) -> Progress {
        let mut p =
            Progress { created_ms: job.created_at_ms, points: vec![(0.0, 0.0)], joined_late: job.tasks_verified > 0 };
        let seen = job.finished_at_ms.unwrap_or(now_ms).max(job.created_at_ms);
        if job.tasks_verified > 0 {
            p.points.push((p.secs(seen), f64::from(job.tasks_verified)));
        }
        p
    }

    fn secs(&self, ms: u64) -> f64 {
        ms.saturating_sub(self.created_ms) as f64 / 1000.0
    }

    /// Records `verified` tasks at `at_ms`; counts never go back.
    pub fn record(&mut self, at_ms: u64, verified: u32) {
        let t = self.secs(at_ms);
        let v = f64::from(verified);
        match self.points.last() {
            Some(&(lt, lv)) if v <= lv => {
                // Same count: the line stays flat; keep only the newest time.
                if v == lv && t > lt && self.points.len() > 1 {
                    self.points.push((t, v));
                }
            }
            Some(&(lt, _)) => self.points.push((t.max(lt), v)),
            None => self.points.push((t, v)),
        }
    }

    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// Average verified tasks per second from creation to the last point.
    pub fn average_rate(&self) -> Option<f64> {
        let &(t, v) = self.points.last()?;
        (t > 0.0).then(|| v / t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_form::{self, JobKind};
    use starling_protocol::api::JobState;
    use starling_protocol::{JobId, PublicKey};

    fn spec(kind: JobKind, tweak: impl FnOnce(&mut job_form::JobForm)) -> JobSpec {
        let mut form = job_form::JobForm { kind, ..Default::default() };
        tweak(&mut form);
        job_form::build(&form, &[], 1).unwrap().spec
    }

    fn cpu_outputs(spec: &JobSpec, inputs: &[&[u8]]) -> Vec<Vec<u8>> {
        let name = builtin(spec).unwrap();
        spec.tasks
            .iter()
            .map(|t| {
                starling_web_worker::kernels::run_cpu(name, &t.params, inputs, t.workgroups, t.output_size).unwrap()
            })
            .collect()
    }

    #[test]
    fn mandelbrot_preview_places_verified_tiles_only() {
        let s = spec(JobKind::Mandelbrot, |f| {
            f.width = "40".into();
            f.height = "20".into();
            f.tile = "16".into();
            f.max_iter = "50".into();
        });
        assert_eq!(mandelbrot_size(&s), Some((40, 20)));
        assert_eq!(mandelbrot_tiles(&s).len(), 6);
        let outs = cpu_outputs(&s, &[]);
        let mut partial: Vec<Option<Vec<u8>>> = outs.iter().cloned().map(Some).collect();
        partial[0] = None;
        let rgba = mandelbrot_rgba(&s, &partial).unwrap();
        assert_eq!(rgba.len(), 40 * 20 * 4);
        // Tile 0 covers (0..16, 0..16): transparent. Tile 1 starts at x = 16: opaque.
        assert_eq!(rgba[3], 0);
        assert_eq!(rgba[16 * 4 + 3], 255);
        // The full image agrees with the kernels' own assembly.
        let full: Vec<Option<Vec<u8>>> = outs.iter().cloned().map(Some).collect();
        let rgba = mandelbrot_rgba(&s, &full).unwrap();
        let rgb = mandelbrot::assemble_image(40, 20, &s.tasks, &outs).unwrap();
        let stripped: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        assert_eq!(stripped, rgb);
        assert!(rgba.chunks_exact(4).all(|p| p[3] == 255));
        assert!(summary(&s, &outs).unwrap().contains("40×20"));
    }

    #[test]
    fn pi_and_sha_summaries() {
        let s = spec(JobKind::MonteCarloPi, |f| {
            f.pi_tasks = "2".into();
            f.pi_workgroups = "4".into();
            f.pi_samples = "16".into();
        });
        let text = summary(&s, &cpu_outputs(&s, &[])).unwrap();
        assert!(text.starts_with("π ≈ 3."), "{text}");
        let s = spec(JobKind::Sha256NonceSearch, |f| {
            f.sha_tasks = "2".into();
            f.sha_workgroups = "2".into();
            f.sha_nonces = "2".into();
        });
        let text = summary(&s, &cpu_outputs(&s, &[])).unwrap();
        assert!(text.starts_with("Best nonce "), "{text}");
    }

    #[test]
    fn matmul_check_finds_agreement_and_corruption() {
        let form = job_form::JobForm {
            kind: JobKind::Matmul,
            m: "8".into(),
            n: "8".into(),
            k: "8".into(),
            rows_per_task: "4".into(),
            ..Default::default()
        };
        let job = job_form::build(&form, &[], 1).unwrap();
        let (a, b) = (&job.uploads[0].bytes, &job.uploads[1].bytes);
        let mut outs = cpu_outputs(&job.spec, &[a, b]);
        assert_eq!(matmul_max_error(&job.spec, a, b, &outs).unwrap(), 0.0);
        assert!(matmul_within_tolerance(&job.spec, 1e-3));
        assert!(!matmul_within_tolerance(&job.spec, 1.0));
        assert_eq!(matmul_work(&job.spec), Some(512));
        outs[1][0..4].copy_from_slice(&100f32.to_le_bytes());
        assert!(matmul_max_error(&job.spec, a, b, &outs).unwrap() > 50.0);
        outs.pop();
        assert!(matmul_max_error(&job.spec, a, b, &outs).is_err());
    }

    #[test]
    fn tar_headers_are_well_formed() {
        let files = vec![("a.bin".to_string(), vec![7u8; 700]), ("job.json".to_string(), b"{}".to_vec())];
        let archive = tar(&files, 1_700_000_000);
        // 2 headers + 2 data blocks for 700 bytes + 1 for 2 bytes + 2 end blocks.
        assert_eq!(archive.len(), 512 * (2 + 2 + 1 + 2));
        let header = &archive[..512];
        assert_eq!(&header[..5], b"a.bin");
        assert_eq!(&header[124..136], b"00000001274\0");
        assert_eq!(&header[257..262], b"ustar");
        // The checksum is the byte sum with the checksum field read as spaces.
        let mut copy = header.to_vec();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&archive[512..512 + 700], &[7u8; 700][..]);
        let second = &archive[512 * 3..512 * 4];
        assert_eq!(&second[..8], b"job.json");
        assert!(archive[archive.len() - 1024..].iter().all(|&b| b == 0));
        assert_eq!(output_name(12, 3), "job-12-task-0003.bin");
    }

    #[test]
    fn grid_keys() {
        assert_eq!(grid_step(0, 10, 4, "ArrowRight"), Some(1));
        assert_eq!(grid_step(9, 10, 4, "ArrowRight"), Some(9));
        assert_eq!(grid_step(0, 10, 4, "ArrowLeft"), Some(0));
        assert_eq!(grid_step(1, 10, 4, "ArrowDown"), Some(5));
        assert_eq!(grid_step(7, 10, 4, "ArrowDown"), Some(9));
        assert_eq!(grid_step(5, 10, 4, "ArrowUp"), Some(1));
        assert_eq!(grid_step(2, 10, 4, "ArrowUp"), Some(0));
        assert_eq!(grid_step(4, 10, 4, "End"), Some(9));
        assert_eq!(grid_step(4, 10, 4, "Home"), Some(0));
        assert_eq!(grid_step(4, 10, 0, "ArrowDown"), Some(5));
        assert_eq!(grid_step(4, 10, 4, "Enter"), None);
        assert_eq!(grid_step(0, 0, 4, "ArrowRight"), None);
    }

    fn summary_at(created: u64, verified: u32, finished: Option<u64>) -> JobSummary {
        JobSummary {
            id: JobId(1),
            label: String::new(),
            kernel: "mandelbrot".into(),
            client: PublicKey([0; 32]),
            state: if finished.is_some() { JobState::Done } else { JobState::Running },
            tasks_total: 10,
            tasks_verified: verified,
            tasks_failed: 0,
            created_at_ms: created,
            finished_at_ms: finished,
            failure: None,
        }
    }

    #[test]
    fn progress_series() {
        let mut p = Progress::from_summary(&summary_at(1_000, 0, None), 2_000);
        assert_eq!(p.points(), &[(0.0, 0.0)]);
        assert!(!p.joined_late);
        p.record(3_000, 2);
        p.record(5_000, 5);
        p.record(4_000, 4); // late, out-of-order event: counts never go back
        assert_eq!(p.points(), &[(0.0, 0.0), (2.0, 2.0), (4.0, 5.0)]);
        assert_eq!(p.average_rate(), Some(1.25));
        let late = Progress::from_summary(&summary_at(0, 4, Some(8_000)), 60_000);
        assert!(late.joined_late);
        assert_eq!(late.points(), &[(0.0, 0.0), (8.0, 4.0)]);
    }
}
