//! Helpers the relay's integration tests share.

use starling_protocol::PROTOCOL_VERSION;
use starling_protocol::sign::Keypair;
use starling_protocol::worker::{AdapterInfo, Backend, Capabilities, DeviceLimits, Platform, WorkerMessage};

/// A CPU worker with 1 MiB buffers and `slots` parallel tasks.
pub fn cpu_caps(slots: u32) -> Capabilities {
    Capabilities {
        backend: Backend::Cpu,
        platform: Platform::Native,
        adapter: AdapterInfo::default(),
        limits: DeviceLimits {
            max_buffer_size: 1 << 20,
            max_storage_buffer_binding_size: 1 << 20,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroups_per_dimension: 65_535,
        },
        asking_price: 0,
        duty_cycle: 1.0,
        slots,
    }
}

/// A worker's first frame, with [`cpu_caps`] of one slot.
pub fn hello(key: &Keypair) -> WorkerMessage {
    WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, worker_key: key.public(), capabilities: cpu_caps(1) }
}
