//! Fuzz targets for the decoders a stranger reaches in this crate: worker messages (the relay
//! decodes them from anyone who opens a socket), relay messages (a worker decodes them from any
//! relay it is pointed at), and signed job specs (the body of `POST /v1/jobs`), through
//! `JobSpec::validate` and signature verification.
//!
//! Bounded by `STARLING_FUZZ_SECS` per target (2 s by default) and a case cap; see
//! `starling-fuzz` for the knobs and how to rerun one failing case.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::Value;
use starling_fuzz::mutate::{JsonMutator, interesting_string};
use starling_fuzz::{Fuzz, Shown};
use starling_protocol::job::{BuiltinKernel, Comparison, JobSpec, KernelSpec, OutputOf, TaskInput, TaskSpec};
use starling_protocol::limits::*;
use starling_protocol::sign::{Keypair, SignedJob};
use starling_protocol::worker::{
    AdapterInfo, Assignment, Backend, Capabilities, DeviceLimits, DeviceState, Platform, RelayFrame, RelayMessage,
    WorkerMessage,
};
use starling_protocol::{ErrorBody, ErrorCode, Hash32, JobId, LeaseId, PROTOCOL_VERSION, Signature, TaskId};

fn hash(rng: &mut StdRng) -> Hash32 {
    Hash32(rng.r#gen())
}

fn signature(rng: &mut StdRng) -> Signature {
    let mut bytes = [0u8; 64];
    rng.fill(&mut bytes[..]);
    Signature(bytes)
}

fn task_id(rng: &mut StdRng) -> TaskId {
    TaskId { job: JobId(rng.r#gen()), index: rng.r#gen() }
}

fn text(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.5) { "device lost".into() } else { interesting_string(rng) }
}

fn finite_f32(rng: &mut StdRng) -> f32 {
    *[0.0, -0.0, 1.0, 0.5, f32::MIN_POSITIVE, f32::MAX, f32::MIN, 1e-45, rng.r#gen()].choose(rng).unwrap()
}

fn capabilities(rng: &mut StdRng) -> Capabilities {
    Capabilities {
        backend: *[Backend::Vulkan, Backend::Metal, Backend::Dx12, Backend::Gl, Backend::BrowserWebgpu, Backend::Cpu]
            .choose(rng)
            .unwrap(),
        platform: if rng.r#gen() { Platform::Native } else { Platform::Browser },
        adapter: AdapterInfo {
            name: text(rng),
            vendor: rng.r#gen(),
            device: rng.r#gen(),
            device_type: text(rng),
            driver: text(rng),
        },
        limits: DeviceLimits {
            max_buffer_size: rng.r#gen(),
            max_storage_buffer_binding_size: rng.r#gen(),
            max_storage_buffers_per_shader_stage: rng.r#gen(),
            max_compute_workgroups_per_dimension: rng.r#gen(),
        },
        asking_price: rng.r#gen(),
        duty_cycle: finite_f32(rng),
        slots: rng.r#gen(),
    }
}

/// A well-formed worker message with random field values.
fn worker_message(rng: &mut StdRng) -> WorkerMessage {
    let (lease, task) = (LeaseId(rng.r#gen()), task_id(rng));
    match rng.gen_range(0..7) {
        0 => WorkerMessage::Hello {
            protocol_version: if rng.r#gen() { PROTOCOL_VERSION } else { rng.r#gen() },
            worker_key: starling_protocol::PublicKey(rng.r#gen()),
            capabilities: capabilities(rng),
        },
        1 => WorkerMessage::Auth { signature: signature(rng) },
        2 => WorkerMessage::Heartbeat {
            state: DeviceState {
                accepting: rng.r#gen(),
                battery: rng.r#gen::<bool>().then(|| finite_f32(rng)),
                charging: rng.r#gen::<bool>().then(|| rng.r#gen()),
            },
        },
        3 => WorkerMessage::Result {
            lease,
            task,
            output_hash: hash(rng),
            output_len: rng.r#gen(),
            signature: signature(rng),
            output: rng.gen_bool(0.5).then(|| {
                starling_protocol::worker::InlineBytes((0..rng.gen_range(0..64)).map(|_| rng.r#gen()).collect())
            }),
        },
        4 => WorkerMessage::Failed { lease, task, reason: text(rng) },
        5 => WorkerMessage::Decline { lease, task, reason: text(rng) },
        _ => WorkerMessage::Register {
            owner: starling_protocol::PublicKey(rng.r#gen()),
            nonce: rng.r#gen(),
            bond: rng.r#gen(),
            authorization: signature(rng),
            proof: signature(rng),
        },
    }
}

fn kernel(rng: &mut StdRng) -> KernelSpec {
    if rng.r#gen() {
        KernelSpec::Builtin { name: *BuiltinKernel::ALL.choose(rng).unwrap() }
    } else {
        KernelSpec::Wgsl {
            source: "@group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
                     @compute @workgroup_size(1) fn main() { o[0] = 7u; }"
                .into(),
            entry_point: "main".into(),
        }
    }
}

fn deployment(rng: &mut StdRng) -> starling_protocol::sign::EscrowDeployment {
    starling_protocol::sign::EscrowDeployment { chain_id: text(rng), contract: text(rng) }
}

fn relay_message(rng: &mut StdRng) -> RelayMessage {
    match rng.gen_range(0..7) {
        0 => RelayMessage::Challenge { nonce: hash(rng) },
        1 => RelayMessage::Welcome {
            heartbeat_ms: rng.r#gen(),
            lease_ms: rng.r#gen(),
            escrow: rng.gen_bool(0.5).then(|| deployment(rng)),
        },
        2 => RelayMessage::Assign(Assignment {
            lease: LeaseId(rng.r#gen()),
            task: task_id(rng),
            kernel: kernel(rng),
            params: (0..rng.gen_range(0..5)).map(|_| rng.r#gen()).collect(),
            inputs: (0..rng.gen_range(0..3)).map(|_| hash(rng)).collect(),
            workgroups: rng.r#gen(),
            output_size: rng.r#gen(),
            lease_ms: rng.r#gen(),
            spec_digest: hash(rng),
            escrow: rng.gen_bool(0.5).then(|| deployment(rng)),
        }),
        3 => RelayMessage::Cancel { lease: LeaseId(rng.r#gen()) },
        4 => RelayMessage::Register { escrow: deployment(rng), nonce: rng.r#gen(), bond: rng.r#gen() },
        5 => RelayMessage::Ack { lease: LeaseId(rng.r#gen()) },
        _ => RelayMessage::Error(ErrorBody::new(ErrorCode::OutOfOrder, text(rng))),
    }
}

fn corpus<T: serde::Serialize>(rng: &mut StdRng, n: usize, mut make: impl FnMut(&mut StdRng) -> T) -> Vec<Value> {
    (0..n).map(|_| serde_json::to_value(make(rng)).unwrap()).collect()
}

/// serde_json decodes a float literal too large for f32 as infinity, which it then encodes as
/// `null`: such a message cannot round-trip, so it is only required not to panic.
fn worker_floats_finite(m: &WorkerMessage) -> bool {
    match m {
        WorkerMessage::Hello { capabilities, .. } => capabilities.duty_cycle.is_finite(),
        WorkerMessage::Heartbeat { state } => state.battery.is_none_or(f32::is_finite),
        _ => true,
    }
}

/// Decode, and for what decodes: re-encode, decode again to an equal value.
fn round_trips<T>(bytes: &[u8], finite: impl Fn(&T) -> bool) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(bytes).ok()?;
    let again = serde_json::to_vec(&value).expect("a decoded message encodes");
    if finite(&value) {
        let back: T = serde_json::from_slice(&again).unwrap_or_else(|e| {
            panic!("{value:?} re-encoded as {:?}, which does not decode: {e}", Shown(again.clone()))
        });
        assert_eq!(back, value, "round trip changed the value");
    }
    Some(value)
}

#[test]
fn worker_messages_never_panic_and_round_trip() {
    let seed_rng = &mut <StdRng as rand::SeedableRng>::seed_from_u64(1);
    let mutator = JsonMutator::new(corpus(seed_rng, 64, worker_message)).with_limits(&[
        u64::from(PROTOCOL_VERSION),
        MAX_REASON_LEN as u64,
        MAX_ADDRESS_LEN as u64,
        u64::from(u32::MAX),
    ]);
    let mut decoded = 0u64;
    let ran = Fuzz::new("worker_messages", 200_000).run(
        |rng| {
            if rng.gen_ratio(1, 10) {
                Shown(serde_json::to_vec(&worker_message(rng)).unwrap())
            } else {
                Shown(mutator.bytes(rng).1)
            }
        },
        |Shown(bytes)| {
            if let Some(message) = round_trips::<WorkerMessage>(bytes, worker_floats_finite) {
                decoded += 1;
                if let WorkerMessage::Hello { capabilities, .. } = &message {
                    // The relay groups workers by this string.
                    let _ = capabilities.adapter_class();
                    let _ = capabilities.runs_wgsl();
                }
            }
        },
    );
    // The mutator must reach past the parser, or this target tests nothing but serde's error path.
    assert!(decoded * 20 > ran, "only {decoded} of {ran} inputs decoded");
}

#[test]
fn relay_messages_never_panic_and_round_trip() {
    let seed_rng = &mut <StdRng as rand::SeedableRng>::seed_from_u64(2);
    let mutator = JsonMutator::new(corpus(seed_rng, 64, relay_message));
    let mut decoded = 0u64;
    let ran = Fuzz::new("relay_messages", 200_000).run(
        |rng| Shown(mutator.bytes(rng).1),
        |Shown(bytes)| {
            if let Some(message) = round_trips::<RelayMessage>(bytes, |_| true) {
                decoded += 1;
                if let RelayMessage::Assign(a) = &message {
                    let _ = (a.kernel.display_name(), a.kernel.needs_gpu());
                }
            }
        },
    );
    assert!(decoded * 20 > ran, "only {decoded} of {ran} inputs decoded");
}

/// The workers' reader of relay frames ([`RelayFrame`], `type` first) reads exactly what the
/// derived reader reads, or refuses; and it reads every message as the relay writes it.
#[test]
fn relay_frames_read_as_the_derived_reader_does() {
    let seed_rng = &mut <StdRng as rand::SeedableRng>::seed_from_u64(3);
    // Values keep their keys sorted, so the mutator's output mostly has `type` elsewhere than
    // first: half the inputs are messages as the relay writes them, tag first.
    let mutator = JsonMutator::new(corpus(seed_rng, 64, relay_message));
    let (mut framed, mut derived_ok) = (0u64, 0u64);
    let ran = Fuzz::new("relay_frames", 100_000).run(
        |rng| {
            if rng.gen_bool(0.5) {
                Shown(serde_json::to_vec(&relay_message(rng)).unwrap())
            } else {
                Shown(mutator.bytes(rng).1)
            }
        },
        |Shown(bytes)| {
            let derived = serde_json::from_slice::<RelayMessage>(bytes).ok();
            if let Ok(RelayFrame(message)) = serde_json::from_slice::<RelayFrame>(bytes) {
                framed += 1;
                assert_eq!(derived.as_ref(), Some(&message), "read what the derived reader does not");
            }
            if let Some(message) = derived {
                derived_ok += 1;
                let written = serde_json::to_vec(&message).unwrap();
                let RelayFrame(read) = serde_json::from_slice(&written).expect("a frame as the relay writes it reads");
                assert_eq!(read, message);
            }
        },
    );
    assert!(framed * 3 > ran && derived_ok * 3 > ran, "only {framed} and {derived_ok} of {ran} inputs decoded");
}

/// Task `index` of a job with `kernels` kernels: its inputs are blobs, or outputs of tasks before it.
fn task(rng: &mut StdRng, index: u32, kernels: u8) -> TaskSpec {
    TaskSpec {
        params: (0..rng.gen_range(0..=4)).map(|_| rng.r#gen()).collect(),
        inputs: (0..rng.gen_range(0..=2))
            .map(|_| match index {
                0 => TaskInput::Blob(hash(rng)),
                _ if rng.r#gen() => TaskInput::Blob(hash(rng)),
                _ => TaskInput::Output(OutputOf { task: rng.gen_range(0..index) }),
            })
            .collect(),
        workgroups: [rng.gen_range(1..=64), rng.gen_range(1..=4), 1],
        output_size: 4 * rng.gen_range(1..=1024),
        // Every kernel is run by some task (task i runs kernel i mod kernels).
        kernel: (index % u32::from(kernels)) as u8,
    }
}

/// A spec that passes `validate`.
fn valid_spec(rng: &mut StdRng) -> JobSpec {
    let quorum = rng.gen_range(1..=3);
    let replicas = rng.gen_range(quorum..=4);
    let comparison = if rng.r#gen() { Comparison::Exact } else { Comparison::Tolerance { rel: 1e-5, abs: 0.0 } };
    let adaptive = (quorum == 1 && replicas >= 2 && comparison == Comparison::Exact && rng.r#gen())
        .then(|| starling_protocol::job::Adaptive { audit_percent: rng.gen_range(1..=100) });
    let n_tasks = rng.gen_range(1..=3);
    let kernels: Vec<KernelSpec> = (1..rng.gen_range(1..=n_tasks)).map(|_| kernel(rng)).collect();
    let n_kernels = 1 + kernels.len() as u8;
    JobSpec {
        label: if rng.r#gen() { String::new() } else { "tiles ✓".into() },
        kernel: kernel(rng),
        kernels,
        tasks: (0..n_tasks).map(|i| task(rng, i, n_kernels)).collect(),
        comparison,
        replicas,
        quorum,
        max_replicas: rng.gen_range(replicas..=MAX_REPLICAS),
        price_per_replica: rng.gen_range(0..1000),
        deadline_secs: rng.gen_range(1..=MAX_DEADLINE_SECS),
        homogeneous: rng.r#gen(),
        nonce: rng.r#gen(),
        adaptive,
    }
}

const SPEC_LIMITS: &[u64] = &[
    MAX_TASKS as u64,
    MAX_INPUTS_PER_TASK as u64,
    MAX_PARAM_WORDS as u64,
    MAX_OUTPUT_BYTES as u64,
    MAX_WGSL_BYTES as u64,
    MAX_ENTRY_POINT_LEN as u64,
    MAX_LABEL_LEN as u64,
    MAX_WORKGROUPS_PER_DIM as u64,
    MAX_REPLICAS as u64,
    MAX_DEADLINE_SECS,
    0,
    255,
];

/// Everything `JobSpec::validate` promises about a spec it accepts.
fn assert_within_limits(spec: &JobSpec) {
    assert!(spec.label.chars().count() <= MAX_LABEL_LEN, "label");
    assert!(spec.all_kernels().count() <= MAX_KERNELS_PER_JOB, "kernel count");
    for kernel in spec.all_kernels() {
        if let KernelSpec::Wgsl { source, entry_point } = kernel {
            assert!(source.len() <= MAX_WGSL_BYTES, "wgsl size");
            assert!((1..=MAX_ENTRY_POINT_LEN).contains(&entry_point.len()), "entry point length");
            assert!(entry_point.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "entry point characters");
        }
    }
    let depths = spec.dependency_depths().expect("an accepted spec's graph is sound");
    assert!(depths.iter().all(|&d| d <= MAX_DEPENDENCY_DEPTH), "depth");
    assert!((1..=MAX_TASKS).contains(&spec.tasks.len()), "task count");
    assert!(1 <= spec.quorum && spec.quorum <= spec.replicas, "quorum");
    assert!(spec.replicas <= spec.max_replicas && spec.max_replicas <= MAX_REPLICAS, "replicas");
    assert!((1..=MAX_DEADLINE_SECS).contains(&spec.deadline_secs), "deadline");
    if let Comparison::Tolerance { rel, abs } = spec.comparison {
        assert!(rel.is_finite() && abs.is_finite() && rel >= 0.0 && abs >= 0.0, "tolerance");
    }
    for task in &spec.tasks {
        assert!(task.params.len() <= MAX_PARAM_WORDS, "params");
        assert!(task.inputs.len() <= MAX_INPUTS_PER_TASK, "inputs");
        assert!(usize::from(task.kernel) < spec.all_kernels().count(), "kernel index");
        assert!(task.depends_on().all(|d| (d as usize) < spec.tasks.len()), "dependency index");
        assert!(task.workgroups.iter().all(|w| (1..=MAX_WORKGROUPS_PER_DIM).contains(w)), "workgroups");
        assert!(task.output_size > 0 && task.output_size % 4 == 0, "output size alignment");
        assert!(task.output_size <= MAX_OUTPUT_BYTES, "output size");
    }
    // What the relay derives from an accepted spec stays far from overflow.
    let replicas = spec.tasks.len() as u64 * u64::from(spec.max_replicas);
    assert!(replicas <= MAX_TASKS as u64 * u64::from(MAX_REPLICAS));
    for task in &spec.tasks {
        let _invocations: u64 = task.workgroups.iter().map(|&w| u64::from(w)).product();
    }
    // The signed digest survives the relay storing and re-encoding the spec.
    let wire = serde_json::to_vec(spec).unwrap();
    let back: JobSpec = serde_json::from_slice(&wire).expect("an accepted spec re-decodes");
    assert_eq!(&back, spec);
    assert_eq!(back.digest(), spec.digest(), "digest changed across a round trip");
}

#[test]
fn job_specs_that_validate_respect_the_limits() {
    let seed_rng = &mut <StdRng as rand::SeedableRng>::seed_from_u64(3);
    let mutator = JsonMutator::new(corpus(seed_rng, 64, valid_spec)).with_limits(SPEC_LIMITS);
    let (mut decoded, mut accepted) = (0u64, 0u64);
    let ran = Fuzz::new("job_specs", 100_000).run(
        |rng| Shown(mutator.bytes(rng).1),
        |Shown(bytes)| {
            let Ok(spec) = serde_json::from_slice::<JobSpec>(bytes) else { return };
            decoded += 1;
            let _ = spec.digest();
            if spec.validate().is_ok() {
                accepted += 1;
                assert_within_limits(&spec);
            }
        },
    );
    assert!(decoded * 20 > ran, "only {decoded} of {ran} inputs decoded");
    assert!(accepted * 50 > ran, "only {accepted} of {ran} inputs validated");
}

#[test]
fn signed_jobs_verify_only_as_signed() {
    let seed_rng = &mut <StdRng as rand::SeedableRng>::seed_from_u64(4);
    let client = Keypair::from_seed([9; 32]);
    let signed: Vec<SignedJob> = (0..32).map(|_| client.sign_job(valid_spec(seed_rng))).collect();
    let mutator =
        JsonMutator::new(signed.iter().map(|s| serde_json::to_value(s).unwrap()).collect()).with_limits(SPEC_LIMITS);
    Fuzz::new("signed_jobs", 50_000).run(
        |rng| {
            let (index, bytes) = mutator.bytes(rng);
            (index, Shown(bytes))
        },
        |(index, Shown(bytes))| {
            let Ok(job) = serde_json::from_slice::<SignedJob>(bytes) else { return };
            let valid = job.spec.validate().is_ok();
            if job.verify().is_ok() {
                // Only the exact spec that was signed verifies, under the same key and signature
                // bytes (strict verification: no malleable second signature).
                let original = &signed[*index];
                assert_eq!(job.client, original.client, "verified under another key");
                assert_eq!(job.signature, original.signature, "a second signature verified");
                assert_eq!(job.spec.digest(), original.spec.digest(), "a changed spec verified");
                assert!(valid, "a signed valid spec stopped validating without changing");
            }
            if valid {
                assert_within_limits(&job.spec);
            }
        },
    );
}
