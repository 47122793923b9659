//! How the pages show what the relay's views say that is not plain text: adapters. Every view
//! the pages read is the protocol's own type (`starling_protocol::api`), read leniently where
//! relays older or newer than this page differ (`WorkerView`, `Health`).

pub use starling_protocol::api::WorkerView;
use starling_protocol::worker::AdapterInfo;

/// The words for adapters the platform does not name, by device type.
#[derive(Debug, Clone, Copy)]
pub struct AdapterWords<'a> {
    pub discrete_gpu: &'a str,
    pub integrated_gpu: &'a str,
    pub virtual_gpu: &'a str,
    pub cpu: &'a str,
    pub unnamed: &'a str,
    /// A worker that has not announced its capabilities yet.
    pub not_announced: &'a str,
}

impl AdapterWords<'static> {
    pub const ENGLISH: AdapterWords<'static> = AdapterWords {
        discrete_gpu: "discrete GPU",
        integrated_gpu: "integrated GPU",
        virtual_gpu: "virtual GPU",
        cpu: "software (CPU)",
        unnamed: "unnamed adapter",
        not_announced: "not announced",
    };
}

/// The adapter as people tell adapters apart: its name where the platform gives one (browsers
/// often do not), else its device type and PCI ids.
pub fn adapter_label(adapter: &AdapterInfo) -> String {
    adapter_label_in(adapter, &AdapterWords::ENGLISH)
}

/// [`adapter_label`] in the words of `words`.
pub fn adapter_label_in(adapter: &AdapterInfo, words: &AdapterWords) -> String {
    let name = adapter.name.trim();
    if !name.is_empty() {
        return name.to_string();
    }
    let kind = match adapter.device_type.as_str() {
        "discrete_gpu" => words.discrete_gpu,
        "integrated_gpu" => words.integrated_gpu,
        "virtual_gpu" => words.virtual_gpu,
        "cpu" => words.cpu,
        "" | "other" => words.unnamed,
        other => other,
    };
    if adapter.vendor == 0 && adapter.device == 0 {
        kind.to_string()
    } else {
        format!("{kind} {:04x}:{:04x}", adapter.vendor, adapter.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::worker::Backend;

    #[test]
    fn health_without_the_verified_counter_reads_as_unknown() {
        let h: starling_protocol::api::Health =
            serde_json::from_str(r#"{"status":"ok","version":"0.1.0","workers_online":3,"jobs_running":1}"#).unwrap();
        assert_eq!(h.tasks_verified_total, None);
        let h: starling_protocol::api::Health = serde_json::from_str(
            r#"{"status":"ok","version":"0.1.0","workers_online":3,"jobs_running":1,"tasks_verified_total":42,"new":true}"#,
        )
        .unwrap();
        assert_eq!(h.tasks_verified_total, Some(42));
    }

    #[test]
    fn worker_views_from_the_relay_read() {
        // What relays without escrow serve: no `escrow` field at all.
        let plain = &r#"{"key":"KEY","online":true,"capabilities":{"backend":"browser_webgpu","platform":"browser",
            "adapter":{"name":"","vendor":0,"device":0,"device_type":"other","driver":""},
            "limits":{"max_buffer_size":1,"max_storage_buffer_binding_size":1,"max_storage_buffers_per_shader_stage":8,
            "max_compute_workgroups_per_dimension":65535},"asking_price":5,"duty_cycle":0.1,"slots":1},
            "replicas_returned":4,"replicas_accepted":3,"replicas_rejected":1,"last_seen_ms":99}"#
            .replace("KEY", &"01".repeat(32));
        let info: WorkerView = serde_json::from_str(plain).unwrap();
        assert_eq!(info.capabilities.as_ref().unwrap().backend, Backend::BrowserWebgpu);
        assert_eq!((info.replicas_accepted, info.replicas_rejected), (3, 1));
        assert_eq!(info.escrow, None);
        let with_escrow: WorkerView = serde_json::from_str(
            &r#"{"key":"KEY","online":false,"capabilities":null,"escrow":{"address":"cosmos1x","balance":"1500000","bonded":"100","received":"250","denom":"ustar"}}"#
                .replace("KEY", &"ab".repeat(32)),
        )
        .unwrap();
        let escrow = with_escrow.escrow.unwrap();
        assert_eq!((escrow.received.as_str(), escrow.slashed), ("250", None));
        let client: starling_protocol::api::ClientView =
            serde_json::from_str(&format!(r#"{{"key":"{}","escrow":null}}"#, "ab".repeat(32))).unwrap();
        assert_eq!(client.escrow, None);
    }

    #[test]
    fn a_worker_whose_capabilities_this_page_cannot_read_still_reads() {
        let newer = r#"{"key":"KEY","online":true,"capabilities":{"backend":"quantum_tpu","platform":"native"},
            "replicas_accepted":2,"reputation":0.9}"#
            .replace("KEY", &"02".repeat(32));
        let info: WorkerView = serde_json::from_str(&newer).unwrap();
        assert_eq!((info.online, info.capabilities, info.replicas_accepted, info.last_seen_ms), (true, None, 2, 0));
    }

    #[test]
    fn adapter_labels() {
        let named = AdapterInfo { name: "NVIDIA H100".into(), ..Default::default() };
        assert_eq!(adapter_label(&named), "NVIDIA H100");
        let ids =
            AdapterInfo { device_type: "integrated_gpu".into(), vendor: 0x8086, device: 0x46a6, ..Default::default() };
        assert_eq!(adapter_label(&ids), "integrated GPU 8086:46a6");
        assert_eq!(adapter_label(&AdapterInfo::default()), "unnamed adapter");
    }
}
