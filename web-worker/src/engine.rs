//! Runs one task: [`run_task`] on the GPU (built-in or client WGSL), [`run_task_cpu`] for a
//! built-in on the CPU.
//!
//! Binding convention (see [`starling_protocol::job`]): group 0, binding 0 the params as a uniform
//! buffer (zero-padded to a multiple of 16 bytes, at least 16, so it exists even without params),
//! bindings `1..=N` the inputs as read-only storage (each zero-padded to a multiple of 4 bytes, at
//! least 4), binding `N + 1` the output, `output_size` bytes of zero-initialised read-write
//! storage. Sizes are checked against the device's limits before anything is allocated.

use crate::gpu::{GpuContext, PipelineKey};
use crate::validate::validate_kernel;
use crate::{Error, Result, kernels};
use starling_protocol::job::{BuiltinKernel, KernelSpec};
use wgpu::util::DeviceExt;

/// Runs one task on the GPU and returns its `output_size` output bytes.
///
/// Built-ins are checked by [`kernels::check`] first (exact params, inputs, dispatch and output
/// size); client WGSL is validated by [`validate_kernel`] the first time this context sees it.
/// Natively this blocks in `device.poll` until the GPU is done; run it where blocking is fine.
pub async fn run_task(
    ctx: &GpuContext,
    kernel: &KernelSpec,
    params: &[u32],
    inputs: &[&[u8]],
    workgroups: [u32; 3],
    output_size: u32,
) -> Result<Vec<u8>> {
    ctx.check_alive()?;
    let (source, entry_point) = match kernel {
        KernelSpec::Builtin { name } => {
            kernels::check(*name, params, inputs, workgroups, output_size)?;
            (kernels::source_for(*name, params), kernels::ENTRY_POINT)
        }
        KernelSpec::Wgsl { source, entry_point } => (source.as_str(), entry_point.as_str()),
    };
    if output_size == 0 {
        return Err(Error::Kernel("output_size must be at least 1 byte".into()));
    }
    if workgroups.contains(&0) {
        return Err(Error::Kernel("workgroup counts must be at least 1".into()));
    }
    check_limits(ctx.limits(), params, inputs, workgroups, output_size)?;

    let key = PipelineKey::new(source, entry_point, inputs.len());
    let compiled = match ctx.cached_pipeline(&key) {
        Some(compiled) => compiled,
        None => {
            if kernel.needs_gpu() {
                validate_kernel(source, entry_point, inputs.len())?;
            }
            ctx.compile(key, source).await?
        }
    };

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

        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buffer.as_entire_binding() }];
        entries.extend(
            input_buffers.iter().enumerate().map(|(i, buffer)| wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: buffer.as_entire_binding(),
            }),
        );
        entries.push(wgpu::BindGroupEntry { binding: inputs.len() as u32 + 1, resource: output.as_entire_binding() });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("task"),
            layout: &compiled.layout,
            entries: &entries,
        });

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("task") });
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("task"), timestamp_writes: None });
            pass.set_pipeline(&compiled.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
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
