//! The page's lenient reading of one relay view, `starling_protocol::api::WorkerView`: worker
//! records read with missing fields defaulted and unknown ones ignored (relays older and newer
//! than this page differ in them), and capabilities kept as the strings the pages show, so that a
//! backend or platform this page does not know still reads. Every other view the page reads is
//! the protocol's own type (`starling_protocol::api`).

use serde::Deserialize;
use starling_protocol::api::EscrowAccount;

/// `GET /v1/workers`, `GET /v1/workers/{key}`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct WorkerInfo {
    pub key: String,
    pub online: bool,
    pub capabilities: Option<CapabilitiesInfo>,
    pub replicas_returned: u64,
    pub replicas_accepted: u64,
    pub replicas_rejected: u64,
    pub last_seen_ms: u64,
    pub escrow: Option<EscrowAccount>,
}

/// The parts of a worker's announced capabilities the pages show.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct CapabilitiesInfo {
    pub backend: String,
    pub platform: String,
    pub adapter: AdapterInfo,
    pub asking_price: u64,
    pub duty_cycle: f64,
    pub slots: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct AdapterInfo {
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    pub device_type: String,
    pub driver: String,
}

impl AdapterInfo {
    /// The adapter as people tell adapters apart: its name where the platform gives one (browsers
    /// often do not), else its device type and PCI ids.
    pub fn label(&self) -> String {
        let name = self.name.trim();
        if !name.is_empty() {
            return name.to_string();
        }
        let kind = match self.device_type.as_str() {
            "discrete_gpu" => "discrete GPU",
            "integrated_gpu" => "integrated GPU",
            "virtual_gpu" => "virtual GPU",
            "cpu" => "software (CPU)",
            "" | "other" => "unnamed adapter",
            other => other,
        };
        if self.vendor == 0 && self.device == 0 {
            kind.to_string()
        } else {
            format!("{kind} {:04x}:{:04x}", self.vendor, self.device)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let plain = r#"{"key":"0101","online":true,"capabilities":{"backend":"browser_webgpu","platform":"browser",
            "adapter":{"name":"","vendor":0,"device":0,"device_type":"other","driver":""},
            "limits":{"max_buffer_size":1,"max_storage_buffer_binding_size":1,"max_storage_buffers_per_shader_stage":8,
            "max_compute_workgroups_per_dimension":65535},"asking_price":5,"duty_cycle":0.1,"slots":1},
            "replicas_returned":4,"replicas_accepted":3,"replicas_rejected":1,"last_seen_ms":99}"#;
        let info: WorkerInfo = serde_json::from_str(plain).unwrap();
        assert_eq!(info.capabilities.as_ref().unwrap().backend, "browser_webgpu");
        assert_eq!((info.replicas_accepted, info.replicas_rejected), (3, 1));
        assert_eq!(info.escrow, None);
        let with_escrow: WorkerInfo = serde_json::from_str(
            r#"{"key":"ab","online":false,"capabilities":null,"escrow":{"address":"cosmos1x","balance":"1500000","bonded":"100","received":"250","denom":"ustar"}}"#,
        )
        .unwrap();
        let escrow = with_escrow.escrow.unwrap();
        assert_eq!((escrow.received.as_str(), escrow.slashed), ("250", None));
        let client: starling_protocol::api::ClientView =
            serde_json::from_str(&format!(r#"{{"key":"{}","escrow":null}}"#, "ab".repeat(32))).unwrap();
        assert_eq!(client.escrow, None);
    }

    #[test]
    fn adapter_labels() {
        let named = AdapterInfo { name: "NVIDIA H100".into(), ..Default::default() };
        assert_eq!(named.label(), "NVIDIA H100");
        let ids =
            AdapterInfo { device_type: "integrated_gpu".into(), vendor: 0x8086, device: 0x46a6, ..Default::default() };
        assert_eq!(ids.label(), "integrated GPU 8086:46a6");
        assert_eq!(AdapterInfo::default().label(), "unnamed adapter");
    }
}
