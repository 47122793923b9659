//! [`GpuContext`]: one wgpu device and queue, opened once per worker, with a cache of compiled
//! compute pipelines and the readback path every task uses.
//!
//! Readback is `map_async` plus a oneshot channel, then `device.poll(wait)`: natively the poll
//! drives the map to completion; in the browser it is a no-op and the channel resolves when the
//! browser maps the buffer. The same code runs in both places.
//!
//! wgpu reports errors through error scopes, not return values. Everything that can fail on
//! client input (shader compilation, pipeline creation, buffer creation, submission) runs inside
//! [`GpuContext::capture`], so a bad task becomes an [`Error`] instead of a panic in wgpu's
//! default uncaptured-error handler. `capture` pushes and pops its scopes without an `.await` in
//! between, and under a lock: wgpu keeps one scope stack per thread only when its `std` feature is
//! on, and one stack for all threads otherwise, so concurrent tasks must not interleave there.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use starling_protocol::worker::{AdapterInfo, Backend, Capabilities, DeviceLimits, Platform};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

/// Pipelines are compiled once per (source, entry point, input count).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    source_sha256: [u8; 32],
    entry_point: String,
    n_inputs: usize,
}

impl PipelineKey {
    pub(crate) fn new(source: &str, entry_point: &str, n_inputs: usize) -> Self {
        PipelineKey { source_sha256: Sha256::digest(source).into(), entry_point: entry_point.to_string(), n_inputs }
    }
}

/// A compiled kernel and the bind group layout of the binding convention it was built for.
#[derive(Debug, Clone)]
pub(crate) struct CachedPipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// The GPU a worker computes on.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter_info: wgpu::AdapterInfo,
    /// The limits the device was opened with (the adapter's own), checked before each task.
    limits: wgpu::Limits,
    pipelines: Mutex<HashMap<PipelineKey, CachedPipeline>>,
    /// Held from the first push to the last pop of an error-scope section (see the module docs).
    scope_section: Mutex<()>,
    /// Set by the device-lost callback; every later task fails fast with [`Error::DeviceLost`].
    lost: Arc<Mutex<Option<String>>>,
    /// Errors outside any error scope (there should be none); reported by the next task to finish
    /// instead of panicking, which is what wgpu's default handler does.
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter_info", &self.adapter_info)
            .field("cached_pipelines", &self.cached_pipelines())
            .finish_non_exhaustive()
    }
}

impl GpuContext {
    /// Opens the best adapter on any backend wgpu was built with (`WGPU_BACKEND` and the other
    /// wgpu environment variables narrow the choice), asking for the adapter's full limits so
    /// large buffers fit.
    pub async fn new() -> Result<GpuContext> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|_| Error::NoAdapter)?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("starling"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;

        let lost = Arc::new(Mutex::new(None));
        let lost_slot = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            *lock(&lost_slot) = Some(format!("{reason:?}: {message}"));
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let uncaptured_slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            lock(&uncaptured_slot).get_or_insert_with(|| error.to_string());
        }));

        Ok(GpuContext {
            device,
            queue,
            adapter_info: adapter.get_info(),
            limits,
            pipelines: Mutex::new(HashMap::new()),
            scope_section: Mutex::new(()),
            lost,
            uncaptured,
        })
    }

    /// What this worker announces to the relay.
    pub fn capabilities(&self, asking_price: u64, duty_cycle: f32, slots: u32) -> Capabilities {
        let info = &self.adapter_info;
        let device_type = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete_gpu",
            wgpu::DeviceType::IntegratedGpu => "integrated_gpu",
            wgpu::DeviceType::VirtualGpu => "virtual_gpu",
            wgpu::DeviceType::Cpu => "cpu",
            wgpu::DeviceType::Other => "other",
        };
        let driver = if info.driver_info.is_empty() {
            info.driver.clone()
        } else {
            format!("{} ({})", info.driver, info.driver_info)
        };
        Capabilities {
            backend: protocol_backend(info.backend),
            platform: if cfg!(target_arch = "wasm32") { Platform::Browser } else { Platform::Native },
            adapter: AdapterInfo {
                name: info.name.clone(),
                vendor: info.vendor,
                device: info.device,
                device_type: device_type.to_string(),
                driver,
            },
            limits: DeviceLimits {
                max_buffer_size: self.limits.max_buffer_size,
                max_storage_buffer_binding_size: self.limits.max_storage_buffer_binding_size,
                max_storage_buffers_per_shader_stage: self.limits.max_storage_buffers_per_shader_stage,
                max_compute_workgroups_per_dimension: self.limits.max_compute_workgroups_per_dimension,
            },
            asking_price,
            duty_cycle,
            slots,
        }
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter_info
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// How many pipelines are compiled and cached.
    pub fn cached_pipelines(&self) -> usize {
        lock(&self.pipelines).len()
    }

    /// Whether `source` is compiled for `entry_point` and `n_inputs` inputs in this context.
    pub fn has_pipeline(&self, source: &str, entry_point: &str, n_inputs: usize) -> bool {
        lock(&self.pipelines).contains_key(&PipelineKey::new(source, entry_point, n_inputs))
    }

    /// Fails once the device has been lost.
    pub(crate) fn check_alive(&self) -> Result<()> {
        match lock(&self.lost).as_ref() {
            Some(reason) => Err(Error::DeviceLost(reason.clone())),
            None => Ok(()),
        }
    }

    /// Takes the error reported outside any scope since the last call, if any.
    pub(crate) fn take_uncaptured(&self) -> Option<String> {
        lock(&self.uncaptured).take()
    }

    pub(crate) fn cached_pipeline(&self, key: &PipelineKey) -> Option<CachedPipeline> {
        lock(&self.pipelines).get(key).cloned()
    }

    /// Compiles `source` (with wgpu's runtime checks on) for the binding convention with
    /// `key.n_inputs` inputs, and caches the pipeline. Natively, validate client WGSL first (naga):
    /// this only turns wgpu's own errors into [`Error::Gpu`]. In the browser, where naga is not in
    /// the engine, WebGPU's compilation messages for a module it refused become
    /// [`Error::Validation`] with the first error's line and column.
    pub(crate) async fn compile(&self, key: PipelineKey, source: &str) -> Result<CachedPipeline> {
        let ((compiled, _module), errors) = self.capture(|| {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&key.entry_point),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("starling convention"),
                entries: &convention_layout(key.n_inputs),
            });
            let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&key.entry_point),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key.entry_point),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(&key.entry_point),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            });
            (CachedPipeline { pipeline, layout }, module)
        });
        if let Some(error) = errors.await {
            #[cfg(target_arch = "wasm32")]
            if let Some(located) = first_compilation_error(&_module.get_compilation_info().await) {
                return Err(Error::Validation(located));
            }
            return Err(Error::Gpu(error));
        }
        lock(&self.pipelines).insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Runs `work` inside validation, out-of-memory and internal error scopes. The returned future
    /// yields the first error any of them caught.
    pub(crate) fn capture<T>(&self, work: impl FnOnce() -> T) -> (T, impl Future<Output = Option<String>>) {
        let section = lock(&self.scope_section);
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = work();
        let internal = internal.pop();
        let validation = validation.pop();
        let out_of_memory = out_of_memory.pop();
        drop(section);
        let errors = async move {
            let internal = internal.await;
            let validation = validation.await;
            let out_of_memory = out_of_memory.await;
            validation.or(out_of_memory).or(internal).map(|e| e.to_string())
        };
        (value, errors)
    }

    /// Maps the first `len` bytes of `staging` (a `MAP_READ` buffer whose copy was submitted)
    /// and copies them out.
    pub(crate) async fn read_back(&self, staging: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
        let slice = staging.slice(..len);
        let (sender, receiver) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            // The receiver only goes away if the task was dropped; nothing to tell then.
            let _ = sender.send(result);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Map(e.to_string()))?;
        receiver
            .await
            .map_err(|_| Error::Map("the map callback never ran".into()))?
            .map_err(|e| Error::Map(e.to_string()))?;
        let bytes = slice.get_mapped_range().map_err(|e| Error::Map(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(bytes)
    }
}

/// Bind group layout entries for the convention: 0 uniform params, `1..=n_inputs` read-only
/// storage inputs, `n_inputs + 1` read-write storage output.
fn convention_layout(n_inputs: usize) -> Vec<wgpu::BindGroupLayoutEntry> {
    let entry = |binding: usize, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding: binding as u32,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform)];
    entries.extend((1..=n_inputs).map(|b| entry(b, wgpu::BufferBindingType::Storage { read_only: true })));
    entries.push(entry(n_inputs + 1, wgpu::BufferBindingType::Storage { read_only: false }));
    entries
}

fn protocol_backend(backend: wgpu::Backend) -> Backend {
    if cfg!(target_arch = "wasm32") {
        return Backend::BrowserWebgpu;
    }
    match backend {
        wgpu::Backend::Vulkan => Backend::Vulkan,
        wgpu::Backend::Metal => Backend::Metal,
        wgpu::Backend::Dx12 => Backend::Dx12,
        wgpu::Backend::Gl => Backend::Gl,
        wgpu::Backend::BrowserWebGpu => Backend::BrowserWebgpu,
        // The no-op backend computes nothing; never announce it as a GPU.
        wgpu::Backend::Noop => Backend::Cpu,
    }
}

/// Locks `mutex`, ignoring poisoning: every value kept behind these locks stays valid even if a
/// holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first error among a module's compilation messages, with its 1-based line and column.
#[cfg(target_arch = "wasm32")]
fn first_compilation_error(info: &wgpu::CompilationInfo) -> Option<crate::kernels::WgslError> {
    info.messages.iter().find(|m| m.message_type == wgpu::CompilationMessageType::Error).map(|m| {
        let (line, column) = m.location.map_or((0, 0), |l| (l.line_number, l.line_position));
        crate::kernels::WgslError { line, column, message: m.message.clone() }
    })
}
