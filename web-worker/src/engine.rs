//! Runs one task: [`run_task`] on the GPU (built-in or client WGSL), [`run_task_cpu`] for a
//! built-in on the CPU.
//!
//! Binding convention (see [`starling_protocol::job`]): group 0, binding 0 the params as a uniform
//! buffer (zero-padded to a multiple of 16 bytes, at least 16, so it exists even without params),
//! bindings `1..=N` the inputs as read-only storage (each zero-padded to a multiple of 4 bytes, at
//! least 4), binding `N + 1` the output, `output_size` bytes of zero-initialised read-write
//! storage. Sizes are checked against the device's limits before anything is allocated.

use crate::gpu::{GpuContext, PipelineKey};
#[cfg(not(target_arch = "wasm32"))]
use crate::validate::{validate_kernel, validate_pipeline};
use crate::{Error, Result, kernels};
use starling_protocol::job::{Binding, BuiltinKernel, KernelSpec};
use wgpu::util::DeviceExt;

/// Runs one task on the GPU and returns its `output_size` output bytes.
///
/// Built-ins are checked by [`kernels::check`] first (exact params, inputs, dispatch and output
/// size), then run as their WGSL program ([`kernels::program`]); see [`run_program`] for the rest.
pub async fn run_task(
    ctx: &GpuContext,
    kernel: &KernelSpec,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<Vec<u8>> {
    match kernel {
        KernelSpec::Builtin { name } => {
            kernels::check(*name, params, inputs, workgroups, output_size)?;
            let program = kernels::program(*name, params);
            run_program(ctx, &program, Source::Builtin, params, inputs, workgroups, output_size).await
        }
        _ => run_program(ctx, kernel, Source::Client, params, inputs, workgroups, output_size).await,
    }
}

/// Whose WGSL [`run_program`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A built-in's [`kernels::program`], checked by [`kernels::check`]: natively not validated
    /// again.
    Builtin,
    /// The client's: natively validated by naga the first time the context sees it.
    Client,
}

/// Runs WGSL, one kernel ([`KernelSpec::Wgsl`]) or a [`KernelSpec::Pipeline`], and returns its
/// `output_size` output bytes. A [`KernelSpec::Builtin`] is refused: it runs as its
/// [`kernels::program`], through [`run_task`] (or, in the browser, with its WGSL fetched first).
///
/// Client WGSL is validated natively by naga (`validate_kernel`) the first time this context sees
/// it, and in the browser by WebGPU itself when it compiles the module (an invalid module is a
/// captured validation error either way, and the task fails with its message). A pipeline runs its
/// stages in order in one submission, each a dispatch with its own bindings over the task's inputs,
/// its zeroed intermediate buffers and its output (WebGPU makes one dispatch's writes visible to
/// the next). Natively this blocks in `device.poll` until the GPU is done; run it where blocking is
/// fine.
pub async fn run_program(
    ctx: &GpuContext,
    program: &KernelSpec,
    from: Source,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    let _ = from; // the browser validates every module itself
    ctx.check_alive()?;
    let every_input = || (0..inputs.len()).map(Binding::Input).collect::<Vec<_>>();
    let (source, stages, buffers): (&str, Vec<Dispatch<'_>>, Vec<u32>) = match program {
        KernelSpec::Builtin { name } => {
            return Err(Error::Kernel(format!("the built-in {} runs as its WGSL program", name.name())));
        }
        KernelSpec::Wgsl { source, entry_point } => {
            let one = Dispatch { entry_point, inputs: every_input(), output: Binding::Output, workgroups };
            (source.as_str(), vec![one], Vec::new())
        }
        pipeline @ KernelSpec::Pipeline { source, buffers, stages } => {
            let bindings = pipeline.pipeline_bindings(inputs.len()).map_err(|e| Error::Kernel(e.message))?;
            let dispatches = stages
                .iter()
                .zip(bindings)
                .map(|(stage, (inputs, output))| Dispatch {
                    entry_point: &stage.entry_point,
                    inputs,
                    output,
                    workgroups: stage.workgroups.unwrap_or(workgroups),
                })
                .collect();
            (source.as_str(), dispatches, buffers.iter().map(|b| b.size).collect())
        }
    };
    if output_size == 0 {
        return Err(Error::Kernel("output_size must be at least 1 byte".into()));
    }
    if stages.iter().any(|d| d.workgroups.contains(&0)) {
        return Err(Error::Kernel("workgroup counts must be at least 1".into()));
    }
    check_limits(ctx.limits(), params, inputs, workgroups, output_size)?;
    check_stages(ctx.limits(), &stages, &buffers)?;

    let mut compiled = Vec::with_capacity(stages.len());
    #[cfg(not(target_arch = "wasm32"))]
    let mut validated = false;
    for stage in &stages {
        let key = PipelineKey::new(source, stage.entry_point, stage.inputs.len());
        compiled.push(match ctx.cached_pipeline(&key) {
            Some(compiled) => compiled,
            None => {
                #[cfg(not(target_arch = "wasm32"))]
                if from == Source::Client && !std::mem::replace(&mut validated, true) {
                    // Client WGSL, once per task: a pipeline's module for all its stages.
                    match program {
                        KernelSpec::Pipeline { .. } => {
                            let dispatches: Vec<(&str, usize)> =
                                stages.iter().map(|s| (s.entry_point, s.inputs.len())).collect();
                            validate_pipeline(source, &dispatches)?;
                        }
                        _ => {
                            validate_kernel(source, stage.entry_point, stage.inputs.len())?;
                        }
                    }
                }
                ctx.compile(key, source).await?
            }
        });
    }

    let device = ctx.device();
    let output_len = padded(u64::from(output_size), 4, 4);
    let (staging, errors) = ctx.capture(|| {
        let params_buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &params_bytes(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let input_buffers: Vec<wgpu::Buffer> = inputs
            .iter()
            .map(|input| {
                let usage = wgpu::BufferUsages::STORAGE;
                if input.is_empty() {
                    // create_buffer_init would make a 0-byte buffer, which cannot be bound.
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("input"),
                        size: 4,
                        usage,
                        mapped_at_creation: false,
                    })
                } else {
                    // Pads to a multiple of 4 bytes with zeros.
                    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("input"),
                        contents: input,
                        usage,
                    })
                }
            })
            .collect();
        // New buffers start zeroed.
        let intermediate: Vec<wgpu::Buffer> = buffers
            .iter()
            .map(|&size| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("intermediate"),
                    size: u64::from(size),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let output = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("output"),
            size: output_len,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: output_len,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let buffer_of = |b: Binding| match b {
            Binding::Input(k) => &input_buffers[k],
            Binding::Buffer(k) => &intermediate[k],
            Binding::Output => &output,
        };
        let bind_groups: Vec<wgpu::BindGroup> = stages
            .iter()
            .zip(&compiled)
            .map(|(stage, compiled)| {
                let mut entries =
                    vec![wgpu::BindGroupEntry { binding: 0, resource: params_buffer.as_entire_binding() }];
                entries.extend(stage.inputs.iter().enumerate().map(|(i, &b)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: buffer_of(b).as_entire_binding(),
                }));
                entries.push(wgpu::BindGroupEntry {
                    binding: stage.inputs.len() as u32 + 1,
                    resource: buffer_of(stage.output).as_entire_binding(),
                });
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("task"),
                    layout: &compiled.layout,
                    entries: &entries,
                })
            })
            .collect();

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("task") });
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("task"), timestamp_writes: None });
            for ((stage, compiled), bind_group) in stages.iter().zip(&compiled).zip(&bind_groups) {
                pass.set_pipeline(&compiled.pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(stage.workgroups[0], stage.workgroups[1], stage.workgroups[2]);
            }
        }
        encoder.copy_buffer_to_buffer(&output, 0, &staging, 0, output_len);
        ctx.queue().submit([encoder.finish()]);
        staging
    });
    if let Some(error) = errors.await {
        return Err(Error::Gpu(error));
    }

    let read = ctx.read_back(&staging, output_len).await;
    // A lost device is the likelier story behind a failed readback: say so.
    ctx.check_alive()?;
    let mut bytes = read?;
    if let Some(error) = ctx.take_uncaptured() {
        return Err(Error::Gpu(error));
    }
    bytes.truncate(output_size as usize);
    Ok(bytes)
}

/// One dispatch of a task: a pipeline's stage, or the only one of any other kernel.
struct Dispatch<'a> {
    entry_point: &'a str,
    inputs: Vec<Binding>,
    output: Binding,
    workgroups: [u32; 3],
}

/// Refuses a pipeline this device cannot run: an intermediate buffer over its binding size, a
/// stage binding more storage buffers than a shader stage may, or a dispatch beyond its limits.
fn check_stages(limits: &wgpu::Limits, stages: &[Dispatch<'_>], buffers: &[u32]) -> Result<()> {
    let storage_max = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    if let Some(size) = buffers.iter().find(|&&s| u64::from(s) > storage_max) {
        return Err(Error::Exceeds(format!(
            "an intermediate buffer of {size} bytes; the device binds at most {storage_max}"
        )));
    }
    for (i, stage) in stages.iter().enumerate() {
        let storage_buffers = stage.inputs.len() as u64 + 1;
        if storage_buffers > u64::from(limits.max_storage_buffers_per_shader_stage) {
            return Err(Error::Exceeds(format!(
                "stage {i} binds {storage_buffers} storage buffers; the device allows {} per shader stage",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        let max = limits.max_compute_workgroups_per_dimension;
        if stage.workgroups.iter().any(|&w| w > max) {
            return Err(Error::Exceeds(format!(
                "stage {i} dispatches {:?}; the device dispatches at most {max} per dimension",
                stage.workgroups
            )));
        }
    }
    Ok(())
}

/// Runs a built-in's CPU reference. Same checks and same output as [`run_task`]: identical bytes
/// for the exact kernels, equal within f32 tolerance for `matmul_f32`.
pub fn run_task_cpu(
    kernel: BuiltinKernel,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<Vec<u8>> {
    Ok(kernels::run_cpu(kernel, params, inputs, workgroups, output_size)?)
}

/// Refuses a task this device cannot hold, before anything is allocated.
pub fn check_limits(
    limits: &wgpu::Limits,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<()> {
    let params_len = padded(params.len() as u64 * 4, 16, 16);
    if params_len > limits.max_uniform_buffer_binding_size.min(limits.max_buffer_size) {
        return Err(Error::Exceeds(format!(
            "{params_len} bytes of params; the device's uniform buffers hold {}",
            limits.max_uniform_buffer_binding_size
        )));
    }
    let storage_max = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    for (i, input) in inputs.iter().enumerate() {
        let len = padded(input.len() as u64, 4, 4);
        if len > storage_max {
            return Err(Error::Exceeds(format!("input {i} is {len} bytes; the device binds at most {storage_max}")));
        }
    }
    let output_len = padded(u64::from(output_size), 4, 4);
    if output_len > storage_max {
        return Err(Error::Exceeds(format!("output is {output_len} bytes; the device binds at most {storage_max}")));
    }
    let storage_buffers = inputs.len() as u64 + 1;
    if storage_buffers > u64::from(limits.max_storage_buffers_per_shader_stage) {
        return Err(Error::Exceeds(format!(
            "{storage_buffers} storage buffers; the device allows {} per shader stage",
            limits.max_storage_buffers_per_shader_stage
        )));
    }
    if storage_buffers + 1 > u64::from(limits.max_bindings_per_bind_group) {
        return Err(Error::Exceeds(format!(
            "{} bindings; the device allows {} per bind group",
            storage_buffers + 1,
            limits.max_bindings_per_bind_group
        )));
    }
    let max = limits.max_compute_workgroups_per_dimension;
    if workgroups.iter().any(|&w| w > max) {
        return Err(Error::Exceeds(format!(
            "workgroups {workgroups:?}; the device dispatches at most {max} per dimension"
        )));
    }
    Ok(())
}

/// `len` rounded up to a multiple of `align`, and at least `min`.
fn padded(len: u64, align: u64, min: u64) -> u64 {
    len.next_multiple_of(align).max(min)
}

/// The params words as little-endian bytes, zero-padded to a multiple of 16 bytes (at least 16):
/// uniform buffers are read in 16-byte rows.
fn params_bytes(params: &[u32]) -> Vec<u8> {
    let mut bytes: Vec<u8> = params.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.resize(padded(bytes.len() as u64, 16, 16) as usize, 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_padded_to_16_byte_rows() {
        assert_eq!(params_bytes(&[]), [0; 16]);
        assert_eq!(params_bytes(&[1]).len(), 16);
        assert_eq!(params_bytes(&[1, 2, 3, 4]).len(), 16);
        let five = params_bytes(&[1, 2, 3, 4, 5]);
        assert_eq!(five.len(), 32);
        assert_eq!(&five[16..20], &5u32.to_le_bytes());
        assert!(five[20..].iter().all(|&b| b == 0));
    }

    #[test]
    fn limits_table() {
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 1024,
            max_uniform_buffer_binding_size: 64,
            ..wgpu::Limits::downlevel_defaults()
        };
        let big = vec![0u8; limits.max_storage_buffer_binding_size as usize + 1];
        let small = [0u8; 8];
        type Case<'a> = (&'a str, Vec<u32>, Vec<&'a [u8]>, [u32; 3], u32, bool);
        let cases: Vec<Case> = vec![
            ("fits", vec![1, 2], vec![&small], [1, 1, 1], 4, true),
            ("input too big", vec![], vec![&big], [1, 1, 1], 4, false),
            ("output too big", vec![], vec![], [1, 1, 1], limits.max_storage_buffer_binding_size as u32 + 4, false),
            ("too many workgroups", vec![], vec![], [limits.max_compute_workgroups_per_dimension + 1, 1, 1], 4, false),
            ("too many inputs", vec![], vec![&small; 8], [1, 1, 1], 4, false),
            (
                "params too big",
                vec![0; limits.max_uniform_buffer_binding_size as usize / 4 + 1],
                vec![],
                [1, 1, 1],
                4,
                false,
            ),
        ];
        for (name, params, inputs, workgroups, output_size, ok) in cases {
            let result = check_limits(&limits, &params, &inputs, workgroups, output_size);
            assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
            if let Err(e) = result {
                assert!(matches!(e, Error::Exceeds(_)), "{name}: {e}");
            }
        }
    }
}
