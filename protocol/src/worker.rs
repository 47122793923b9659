//! The worker WebSocket channel: JSON text frames, one message each, tagged by `type`.
//!
//! Order: worker `hello` → relay `challenge` → worker `auth` → relay `welcome`; then the relay
//! sends `assign`/`cancel` and the worker sends `heartbeat`, `result` and `failed`. Anything out
//! of that order gets an `error` frame with [`crate::ErrorCode::OutOfOrder`].

use crate::bytes::{Hash32, PublicKey, Signature};
use crate::error::ErrorBody;
use crate::ids::{LeaseId, TaskId};
use crate::job::KernelSpec;
use crate::sign::EscrowDeployment;
use serde::{Deserialize, Serialize};

/// Messages a worker sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkerMessage {
    Hello {
        protocol_version: u32,
        worker_key: PublicKey,
        capabilities: Capabilities,
    },
    /// Signature over [`crate::sign::auth_bytes`] of the challenge nonce.
    Auth {
        signature: Signature,
    },
    Heartbeat {
        state: DeviceState,
    },
    /// `signature` is over [`crate::sign::result_bytes_v2`] for the deployment `welcome` named
    /// ([`crate::sign::result_deployment`]) and the assignment's spec digest. An output of at most
    /// [`crate::limits::MAX_INLINE_OUTPUT_BYTES`] may travel here as `output`; a larger one is
    /// uploaded first (`PUT /v1/blobs/{output_hash}` signed for this lease).
    Result {
        lease: LeaseId,
        task: TaskId,
        output_hash: Hash32,
        output_len: u64,
        signature: Signature,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<InlineBytes>,
    },
    /// The worker could not run the task (bad input, device lost, limits exceeded).
    Failed {
        lease: LeaseId,
        task: TaskId,
        reason: String,
    },
    /// The worker did not start the task, or could not for a reason of its own, and gives the
    /// lease back (paused by its duty cycle, a hidden tab or a low battery, busy, or a browser
    /// engine that could not download its code for the task): the relay hands the replica to
    /// another worker,
    /// may offer the task to this one again later, and takes the worker as not accepting work
    /// until its next heartbeat. Unlike [`WorkerMessage::Failed`], it says nothing against the
    /// task.
    Decline {
        lease: LeaseId,
        task: TaskId,
        reason: String,
    },
    /// Answers [`RelayMessage::Register`]. `owner` is the escrow account (an ed25519 key) that
    /// bonds this worker and is paid for its work: often the worker key itself. `authorization`
    /// is the owner's signature over [`crate::sign::account_bytes`] of
    /// [`crate::sign::AccountAction::Bond`]`{worker, bond}` at `nonce`; `proof` is the worker
    /// key's over [`crate::sign::register_bytes_v2`]`(owner, worker)`. The contract checks both:
    /// no relay can bond a key, or spend an account, without their holders.
    Register {
        owner: PublicKey,
        nonce: u64,
        bond: u64,
        authorization: Signature,
        proof: Signature,
    },
}

/// Bytes carried inside a JSON message, as standard base64.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineBytes(pub Vec<u8>);

impl std::fmt::Debug for InlineBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InlineBytes({} bytes)", self.0.len())
    }
}

impl Serialize for InlineBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for InlineBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(InlineBytes)
            .map_err(serde::de::Error::custom)
    }
}

/// Messages the relay sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayMessage {
    Challenge {
        nonce: Hash32,
    },
    Welcome {
        heartbeat_ms: u64,
        lease_ms: u64,
        /// The escrow this relay settles through; results are signed for it. Absent: the relay
        /// runs unpaid and results are signed for [`crate::sign::UNPAID`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escrow: Option<EscrowDeployment>,
    },
    Assign(Assignment),
    /// The lease is void (task verified or failed elsewhere, or lease expired): stop and discard.
    Cancel {
        lease: LeaseId,
    },
    /// The result for `lease` was recorded.
    Ack {
        lease: LeaseId,
    },
    /// Sent after `welcome` when settlement runs through an escrow contract and this key is not
    /// registered there yet: only registered, bonded keys count toward a paid quorum. `nonce` is
    /// the worker key's own account nonce (for a worker that owns itself) and `bond` the least
    /// the contract bonds. The worker answers [`WorkerMessage::Register`] if it wants paid work.
    Register {
        escrow: EscrowDeployment,
        nonce: u64,
        bond: u64,
    },
    Error(ErrorBody),
}

/// A [`RelayMessage`] read with its `type` first, and the `type` of an assignment's
/// [`KernelSpec`] first in the kernel, as the relay writes them (serde writes a tag before the
/// fields). Workers read relay frames with this rather than with [`RelayMessage`]'s derived reader,
/// which takes `type` anywhere in the object and so must buffer each message whole before reading
/// it: that buffering is most of the code for reading relay frames, and the browser engine is a
/// download (BENCHMARKS.md, "Web app size"). Otherwise exactly as strict: unknown types, unknown
/// fields (wherever the derived reader refuses them) and missing fields are refused.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayFrame(pub RelayMessage);

impl<'de> Deserialize<'de> for RelayFrame {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(tag_first::TagFirst::<RelayFrame>::new())
    }
}

impl tag_first::ByTag for RelayFrame {
    const WHAT: &'static str = "a relay message";
    const TAGS: &'static [&'static str] = &["challenge", "welcome", "assign", "cancel", "ack", "register", "error"];

    fn read<'de, A: serde::de::MapAccess<'de>>(tag: &str, rest: A) -> Result<Self, A::Error> {
        use tag_first::*;
        let rest = serde::de::value::MapAccessDeserializer::new(rest);
        Ok(RelayFrame(match tag {
            "challenge" => {
                let ChallengeFields { nonce } = Deserialize::deserialize(rest)?;
                RelayMessage::Challenge { nonce }
            }
            "welcome" => {
                let WelcomeFields { heartbeat_ms, lease_ms, escrow } = Deserialize::deserialize(rest)?;
                RelayMessage::Welcome { heartbeat_ms, lease_ms, escrow }
            }
            "assign" => {
                let AssignFields {
                    lease,
                    task,
                    kernel: KernelFrame(kernel),
                    params,
                    inputs,
                    workgroups,
                    output_size,
                    lease_ms,
                    spec_digest,
                    escrow,
                } = Deserialize::deserialize(rest)?;
                RelayMessage::Assign(Assignment {
                    lease,
                    task,
                    kernel,
                    params,
                    inputs,
                    workgroups,
                    output_size,
                    lease_ms,
                    spec_digest,
                    escrow,
                })
            }
            "cancel" => RelayMessage::Cancel { lease: LeaseFields::deserialize(rest)?.lease },
            "ack" => RelayMessage::Ack { lease: LeaseFields::deserialize(rest)?.lease },
            "register" => {
                let RegisterFields { escrow, nonce, bond } = Deserialize::deserialize(rest)?;
                RelayMessage::Register { escrow, nonce, bond }
            }
            "error" => {
                // ErrorBody tolerates fields it does not know, but not a second `type`, which
                // the derived reader refuses as a duplicate.
                let ErrorFields { code, message, r#type } = Deserialize::deserialize(rest)?;
                if r#type.is_some() {
                    return Err(serde::de::Error::duplicate_field("type"));
                }
                RelayMessage::Error(ErrorBody { code, message })
            }
            other => return Err(serde::de::Error::unknown_variant(other, Self::TAGS)),
        }))
    }
}

/// The tag-first reading of [`RelayFrame`]: a visitor that takes `type` as the first key and
/// hands the rest of the object to the type it names, and each variant's fields as a struct
/// (read, like the derived reader, with unknown fields refused).
mod tag_first {
    use super::*;
    use crate::job::{BuiltinKernel, NamedBuffer, Stage};
    use serde::de::{Error, MapAccess, Visitor};
    use std::marker::PhantomData;

    pub trait ByTag: Sized {
        const WHAT: &'static str;
        const TAGS: &'static [&'static str];
        fn read<'de, A: MapAccess<'de>>(tag: &str, rest: A) -> Result<Self, A::Error>;
    }

    pub struct TagFirst<T>(PhantomData<T>);

    impl<T> TagFirst<T> {
        pub fn new() -> Self {
            TagFirst(PhantomData)
        }
    }

    impl<'de, T: ByTag> Visitor<'de> for TagFirst<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} (an object whose first field is `type`)", T::WHAT)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            match map.next_key::<String>()?.as_deref() {
                Some("type") => {}
                Some(_) => return Err(A::Error::custom(format_args!("{}: `type` must be its first field", T::WHAT))),
                None => return Err(A::Error::missing_field("type")),
            }
            let tag: String = map.next_value()?;
            T::read(&tag, map)
        }
    }

    /// An assignment's kernel, `type` first.
    pub struct KernelFrame(pub KernelSpec);

    impl<'de> Deserialize<'de> for KernelFrame {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(TagFirst::<KernelFrame>::new())
        }
    }

    impl ByTag for KernelFrame {
        const WHAT: &'static str = "a kernel";
        const TAGS: &'static [&'static str] = &["builtin", "wgsl", "pipeline"];

        fn read<'de, A: MapAccess<'de>>(tag: &str, rest: A) -> Result<Self, A::Error> {
            let rest = serde::de::value::MapAccessDeserializer::new(rest);
            Ok(KernelFrame(match tag {
                "builtin" => KernelSpec::Builtin { name: BuiltinFields::deserialize(rest)?.name },
                "wgsl" => {
                    let WgslFields { source, entry_point } = Deserialize::deserialize(rest)?;
                    KernelSpec::Wgsl { source, entry_point }
                }
                "pipeline" => {
                    let PipelineFields { source, buffers, stages } = Deserialize::deserialize(rest)?;
                    KernelSpec::Pipeline { source, buffers, stages }
                }
                other => return Err(A::Error::unknown_variant(other, Self::TAGS)),
            }))
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ChallengeFields {
        pub nonce: Hash32,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct WelcomeFields {
        pub heartbeat_ms: u64,
        pub lease_ms: u64,
        #[serde(default)]
        pub escrow: Option<EscrowDeployment>,
    }

    /// [`Assignment`]'s fields, its kernel read `type` first.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AssignFields {
        pub lease: LeaseId,
        pub task: TaskId,
        pub kernel: KernelFrame,
        pub params: Vec<u32>,
        pub inputs: Vec<Hash32>,
        pub workgroups: [u32; 3],
        pub output_size: u32,
        pub lease_ms: u64,
        pub spec_digest: Hash32,
        #[serde(default)]
        pub escrow: Option<EscrowDeployment>,
    }

    /// [`ErrorBody`]'s fields (unknown ones tolerated, as [`ErrorBody`] tolerates them), and a
    /// second `type`, to be refused.
    #[derive(Deserialize)]
    pub struct ErrorFields {
        pub code: crate::ErrorCode,
        pub message: String,
        #[serde(default)]
        pub r#type: Option<serde::de::IgnoredAny>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LeaseFields {
        pub lease: LeaseId,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RegisterFields {
        pub escrow: EscrowDeployment,
        pub nonce: u64,
        pub bond: u64,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct BuiltinFields {
        pub name: BuiltinKernel,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct WgslFields {
        pub source: String,
        pub entry_point: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PipelineFields {
        pub source: String,
        #[serde(default)]
        pub buffers: Vec<NamedBuffer>,
        pub stages: Vec<Stage>,
    }
}

/// One replica of one task, leased to the receiving worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    pub lease: LeaseId,
    pub task: TaskId,
    pub kernel: KernelSpec,
    pub params: Vec<u32>,
    pub inputs: Vec<Hash32>,
    pub workgroups: [u32; 3],
    pub output_size: u32,
    /// The lease lapses this long after the last heartbeat from the worker.
    pub lease_ms: u64,
    /// [`crate::job::JobSpec::digest`] of the task's job: the result signature names it.
    pub spec_digest: Hash32,
    /// The escrow the job is paid through, as `welcome` named it; a worker refuses an
    /// assignment that names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<EscrowDeployment>,
}

/// How a worker computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Vulkan,
    Metal,
    Dx12,
    Gl,
    /// WebGPU in a browser.
    BrowserWebgpu,
    /// No GPU: built-in kernels only, on their CPU implementations.
    Cpu,
}

impl Backend {
    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Dx12 => "dx12",
            Backend::Gl => "gl",
            Backend::BrowserWebgpu => "browser_webgpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// Where the worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Native,
    Browser,
}

/// The adapter as wgpu reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct AdapterInfo {
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    /// "discrete_gpu", "integrated_gpu", "virtual_gpu", "cpu" or "other".
    pub device_type: String,
    pub driver: String,
}

/// The device limits that decide which tasks fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceLimits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

/// What a worker announces on connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub backend: Backend,
    pub platform: Platform,
    pub adapter: AdapterInfo,
    pub limits: DeviceLimits,
    /// Lowest price per replica the worker accepts, in micro-units.
    pub asking_price: u64,
    /// Largest fraction of wall time the worker computes (0 < duty <= 1).
    pub duty_cycle: f32,
    /// Tasks the worker runs at once.
    pub slots: u32,
}

impl Capabilities {
    /// Whether the worker can run client WGSL (it has a GPU backend).
    pub fn runs_wgsl(&self) -> bool {
        self.backend != Backend::Cpu
    }

    /// Workers in the same class produce bit-identical float output in practice.
    pub fn adapter_class(&self) -> String {
        format!("{:?}:{:04x}:{:04x}", self.backend, self.adapter.vendor, self.adapter.device).to_lowercase()
    }
}

/// Live device state, sent with every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceState {
    /// False while paused (duty cycle rest, hidden tab, low battery, user stop).
    pub accepting: bool,
    /// Battery charge 0..=1 where known.
    #[serde(default)]
    pub battery: Option<f32>,
    #[serde(default)]
    pub charging: Option<bool>,
}

impl Default for DeviceState {
    fn default() -> Self {
        Self { accepting: true, battery: None, charging: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn messages_are_tagged_and_strict() {
        let m: WorkerMessage = serde_json::from_str(r#"{"type":"heartbeat","state":{"accepting":false}}"#).unwrap();
        assert_eq!(
            m,
            WorkerMessage::Heartbeat { state: DeviceState { accepting: false, battery: None, charging: None } }
        );
        assert!(
            serde_json::from_str::<WorkerMessage>(r#"{"type":"heartbeat","state":{"accepting":false},"x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<WorkerMessage>(r#"{"type":"teleport"}"#).is_err());
        let e = RelayMessage::Error(ErrorBody::new(ErrorCode::OutOfOrder, "auth first"));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"type":"error","code":"out_of_order","message":"auth first"}"#);
        assert_eq!(serde_json::from_str::<RelayMessage>(&json).unwrap(), e);
    }

    /// Every kind of relay message, every kind of kernel, optional fields present and absent.
    fn every_relay_message() -> Vec<RelayMessage> {
        use crate::job::{BuiltinKernel, NamedBuffer, Stage};
        let escrow = EscrowDeployment { chain_id: "starling-1".into(), contract: "cosmos1escrow".into() };
        let assign = |kernel: KernelSpec, escrow: Option<EscrowDeployment>| {
            RelayMessage::Assign(Assignment {
                lease: LeaseId(7),
                task: TaskId { job: crate::JobId(3), index: 2 },
                kernel,
                params: vec![1, 2, u32::MAX],
                inputs: vec![Hash32([5; 32]), Hash32([6; 32])],
                workgroups: [4, 2, 1],
                output_size: 4096,
                lease_ms: 30_000,
                spec_digest: Hash32([9; 32]),
                escrow,
            })
        };
        let stage = |workgroups| Stage {
            entry_point: "main".into(),
            inputs: vec!["input:0".into()],
            output: "output".into(),
            workgroups,
        };
        let messages = vec![
            RelayMessage::Challenge { nonce: Hash32([1; 32]) },
            RelayMessage::Welcome { heartbeat_ms: 5000, lease_ms: 30_000, escrow: None },
            RelayMessage::Welcome { heartbeat_ms: 5000, lease_ms: 30_000, escrow: Some(escrow.clone()) },
            assign(KernelSpec::Builtin { name: BuiltinKernel::Mandelbrot }, None),
            assign(
                KernelSpec::Wgsl { source: "@compute fn main() {}\n\"quoted\"".into(), entry_point: "main".into() },
                Some(escrow.clone()),
            ),
            assign(
                KernelSpec::Pipeline {
                    source: "fn a() {}".into(),
                    buffers: vec![NamedBuffer { name: "h".into(), size: 64 }],
                    stages: vec![stage(None), stage(Some([1, 2, 3]))],
                },
                None,
            ),
            assign(KernelSpec::Pipeline { source: String::new(), buffers: vec![], stages: vec![] }, None),
            RelayMessage::Cancel { lease: LeaseId(u64::MAX) },
            RelayMessage::Ack { lease: LeaseId(0) },
            RelayMessage::Register { escrow, nonce: 4, bond: 1_000_000 },
            RelayMessage::Error(ErrorBody::new(ErrorCode::OutOfOrder, "auth first")),
        ];
        // Adding a kind of message fails to compile here until it is in the list above (and in
        // RelayFrame's reader, which the round trip below then proves).
        for m in &messages {
            match m {
                RelayMessage::Challenge { .. }
                | RelayMessage::Welcome { .. }
                | RelayMessage::Assign(_)
                | RelayMessage::Cancel { .. }
                | RelayMessage::Ack { .. }
                | RelayMessage::Register { .. }
                | RelayMessage::Error(_) => {}
            }
        }
        messages
    }

    #[test]
    fn relay_frames_read_tag_first_exactly_as_the_relay_writes_them() {
        let frame = |json: &str| serde_json::from_str::<RelayFrame>(json).map(|f| f.0);
        for m in every_relay_message() {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(frame(&json).unwrap(), m, "{json}");
            assert_eq!(serde_json::from_str::<RelayMessage>(&json).unwrap(), m, "{json}");
        }
        for kernel in ["builtin", "wgsl", "pipeline"] {
            assert!(
                every_relay_message().iter().any(|m| matches!(m, RelayMessage::Assign(a) if serde_json::to_value(&a.kernel).unwrap()["type"] == kernel)),
                "no {kernel} kernel in the list"
            );
        }
    }

    #[test]
    fn relay_frames_refuse_what_the_derived_reader_refuses_and_type_after_fields() {
        let frame = |json: &str| serde_json::from_str::<RelayFrame>(json).map(|f| f.0);
        let nonce = "01".repeat(32);
        let refused = [
            // `type` not first, or missing.
            (format!(r#"{{"nonce":"{nonce}","type":"challenge"}}"#), "first field"),
            (format!(r#"{{"nonce":"{nonce}"}}"#), "first field"),
            ("{}".to_string(), "type"),
            // Unknown types, unknown and missing fields.
            (r#"{"type":"teleport"}"#.to_string(), "teleport"),
            (format!(r#"{{"type":"challenge","nonce":"{nonce}","x":1}}"#), "x"),
            (r#"{"type":"challenge"}"#.to_string(), "nonce"),
            (r#"{"type":"cancel","lease":1,"task":2}"#.to_string(), "task"),
            (r#"{"type":"welcome","heartbeat_ms":1}"#.to_string(), "lease_ms"),
            ("[1,2]".to_string(), "relay message"),
            (r#""ack""#.to_string(), "relay message"),
        ];
        for (json, why) in &refused {
            let e = frame(json).expect_err(json).to_string();
            assert!(e.contains(why), "{json}: {e}");
        }
        // Inside an assignment: the kernel's `type` first, and the same strictness.
        let assign = every_relay_message().into_iter().find(|m| matches!(m, RelayMessage::Assign(_))).unwrap();
        let json = serde_json::to_string(&assign).unwrap();
        let kernel = r#""kernel":{"type":"builtin","name":"mandelbrot"}"#;
        assert!(json.contains(kernel), "{json}");
        for (bad, why) in [
            (r#""kernel":{"name":"mandelbrot","type":"builtin"}"#, "first field"),
            (r#""kernel":{"type":"builtin","name":"mandelbrot","x":1}"#, "x"),
            (r#""kernel":{"type":"quantum","name":"mandelbrot"}"#, "quantum"),
            (r#""kernel":{"type":"builtin","name":"no_such_kernel"}"#, "no_such_kernel"),
        ] {
            let e = frame(&json.replace(kernel, bad)).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = frame(&json.replace(r#""output_size""#, r#""surprise":1,"output_size""#)).unwrap_err().to_string();
        assert!(e.contains("surprise"), "{e}");
        // Extra fields in an error frame are tolerated, as the derived reader tolerates them, but
        // not a second `type`.
        let extra = r#"{"type":"error","code":"out_of_order","message":"auth first","hint":"x"}"#;
        let error = RelayMessage::Error(ErrorBody::new(ErrorCode::OutOfOrder, "auth first"));
        assert_eq!(frame(extra).unwrap(), error);
        assert_eq!(serde_json::from_str::<RelayMessage>(extra).unwrap(), error);
        let twice = r#"{"type":"error","code":"out_of_order","message":"auth first","type":"ack"}"#;
        assert!(serde_json::from_str::<RelayMessage>(twice).is_err());
        assert!(frame(twice).unwrap_err().to_string().contains("duplicate field `type`"));
        let twice = format!(r#"{{"type":"challenge","nonce":"{nonce}","type":"ack"}}"#);
        assert!(serde_json::from_str::<RelayMessage>(&twice).is_err());
        assert!(frame(&twice).is_err());
    }

    #[test]
    fn inline_output_is_base64_and_optional() {
        let result = |output| WorkerMessage::Result {
            lease: LeaseId(1),
            task: TaskId { job: crate::JobId(2), index: 3 },
            output_hash: Hash32([0; 32]),
            output_len: 3,
            signature: Signature([0; 64]),
            output,
        };
        let plain = serde_json::to_string(&result(None)).unwrap();
        assert!(!plain.contains("output\""), "absent inline output is not sent: {plain}");
        assert_eq!(serde_json::from_str::<WorkerMessage>(&plain).unwrap(), result(None));
        let inline = serde_json::to_string(&result(Some(InlineBytes(b"abc".to_vec())))).unwrap();
        assert!(inline.contains(r#""output":"YWJj""#), "{inline}");
        assert_eq!(serde_json::from_str::<WorkerMessage>(&inline).unwrap(), result(Some(InlineBytes(b"abc".to_vec()))));
        assert!(serde_json::from_str::<WorkerMessage>(&inline.replace("YWJj", "!!")).is_err());
    }

    #[test]
    fn the_largest_inline_output_fits_a_frame() {
        let output = InlineBytes(vec![0xff; crate::limits::MAX_INLINE_OUTPUT_BYTES]);
        let msg = WorkerMessage::Result {
            lease: LeaseId(u64::MAX),
            task: TaskId { job: crate::JobId(u64::MAX), index: u32::MAX },
            output_hash: Hash32([0; 32]),
            output_len: u64::MAX,
            signature: Signature([0; 64]),
            output: Some(output),
        };
        assert!(serde_json::to_string(&msg).unwrap().len() < crate::limits::MAX_WS_FRAME_BYTES);
    }
}
