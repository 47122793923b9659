//! `cargo bench -p starling-web-worker --bench matmul`: f32 matmul GFLOP/s on whatever adapter
//! wgpu finds (`WGPU_BACKEND` and the other wgpu variables choose), for the generated
//! register-tiled kernels (`starling_kernels::matmul_tiled`) beside the built-in 64 x 64 kernel
//! (`matmul_f32`), and the CPU reference in the same run as the anchor.
//!
//! Each kernel runs `STARLING_BENCH_N` (default 1024) square products: two warm-up dispatches,
//! then `STARLING_BENCH_REPS` (default 10) dispatches in one submission, timed on the wall clock
//! from submission to completion. Every result is checked against an f64 reference on sampled
//! entries (relative error below 1e-4 of the row's magnitude); a kernel that fails the check
//! reports no figure. Runtime bounds checks stay on (wgpu's default). Output: one line per
//! kernel, and a JSON line per kernel for scripts.

use starling_kernels::matmul_f32::{self, MatmulParams};
use starling_kernels::matmul_tiled::Tiling;
use std::time::Instant;
use wgpu::util::DeviceExt;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Deterministic inputs in [-1, 1).
fn matrix(len: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
}

fn open() -> Option<Gpu> {
    pollster::block_on(async {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .ok()?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("matmul bench"),
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .ok()?;
        Some(Gpu { device, queue, info: adapter.get_info() })
    })
}

struct Outcome {
    seconds: f64,
    max_error: f64,
}

/// Runs `source` over A and B (`n x n`) `reps` times after two warm-ups; returns the time of the
/// timed dispatches and C's largest relative error on sampled entries.
fn run(gpu: &Gpu, source: &str, workgroups: [u32; 3], n: u32, a: &[f32], b: &[f32], reps: u32) -> Outcome {
    let device = &gpu.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("matmul"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("matmul"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let params = MatmulParams::whole(n, n, n).to_words();
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: bytemuck::cast_slice(&[params[0], params[1], params[2], params[3], params[4], 0, 0, 0]),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let storage = |data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
    };
    let (a_buf, b_buf) = (storage(a), storage(b));
    let c_len = u64::from(n) * u64::from(n) * 4;
    let c_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("c"),
        size: c_len,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read"),
        size: c_len,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: a_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: b_buf.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: c_buf.as_entire_binding() },
        ],
    });
    let dispatch = |times: u32, copy: bool| {
        let mut encoder = device.create_command_encoder(&Default::default());
        for _ in 0..times {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        if copy {
            encoder.copy_buffer_to_buffer(&c_buf, 0, &read, 0, c_len);
        }
        gpu.queue.submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).expect("the device finishes");
    };
    dispatch(2, false);
    let started = Instant::now();
    dispatch(reps, false);
    let seconds = started.elapsed().as_secs_f64();
    dispatch(1, true);
    let slice = read.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.expect("mapping the result"));
    device.poll(wgpu::PollType::wait_indefinitely()).expect("the map completes");
    let c: Vec<f32> = bytemuck::cast_slice(&slice.get_mapped_range().expect("mapped")).to_vec();
    read.unmap();

    // Sampled entries against an f64 reference.
    let n = n as usize;
    let mut max_error = 0f64;
    for s in 0..256usize {
        let (i, j) = ((s * 7919) % n, (s * 104_729 + 13) % n);
        let mut exact = 0f64;
        let mut scale = 0f64;
        for p in 0..n {
            let t = f64::from(a[i * n + p]) * f64::from(b[p * n + j]);
            exact += t;
            scale += t.abs();
        }
        let error = (f64::from(c[i * n + j]) - exact).abs() / scale.max(1e-30);
        max_error = max_error.max(error);
    }
    Outcome { seconds, max_error }
}

fn main() {
    let n = env_u32("STARLING_BENCH_N", 1024).max(4) / 4 * 4;
    let reps = env_u32("STARLING_BENCH_REPS", 10).max(1);
    let flop = 2.0 * f64::from(n).powi(3);
    let a = matrix((n * n) as usize, 1);
    let b = matrix((n * n) as usize, 2);

    // The anchor: the CPU reference, on as many rows as make about a GFLOP (at most 64).
    let cpu_rows = (1e9 / (2.0 * f64::from(n) * f64::from(n))).clamp(1.0, 64.0) as u32;
    let params = MatmulParams { m: n, n, k: n, row_offset: 0, rows: cpu_rows };
    let (ab, bb): (Vec<u8>, Vec<u8>) =
        (a.iter().flat_map(|x| x.to_le_bytes()).collect(), b.iter().flat_map(|x| x.to_le_bytes()).collect());
    let started = Instant::now();
    std::hint::black_box(params.cpu(&ab, &bb));
    let cpu_gflops = 2.0 * f64::from(cpu_rows) * f64::from(n) * f64::from(n) / started.elapsed().as_secs_f64() / 1e9;
    println!("matmul f32, {n} x {n} x {n}, {reps} timed dispatches each");
    println!("  {:<34} {:>10.2} GFLOP/s  ({cpu_rows} rows, one thread)", "cpu reference", cpu_gflops);
    println!(r#"{{"kernel":"cpu_reference","n":{n},"gflops":{cpu_gflops:.3}}}"#);

    let Some(gpu) = open() else {
        println!("  no GPU adapter found: nothing else to measure");
        return;
    };
    println!("  adapter: {} ({:?}, {})", gpu.info.name, gpu.info.backend, gpu.info.driver);
    let mut kernels: Vec<(String, String, [u32; 3])> = vec![(
        "matmul_f32 (built-in, 64x64)".into(),
        matmul_f32::SOURCE.into(),
        MatmulParams::whole(n, n, n).workgroups(),
    )];
    let shape = |bm, bn, bk, tm, tn| Tiling { bm, bn, bk, tm, tn, prefetch: true };
    for t in [
        Tiling::DEFAULT,
        Tiling { prefetch: true, ..Tiling::DEFAULT },
        Tiling { bk: 8, ..Tiling::DEFAULT },
        Tiling { prefetch: false, ..shape(128, 64, 16, 8, 8) },
        Tiling { prefetch: false, ..shape(64, 128, 16, 8, 8) },
        Tiling { prefetch: false, ..shape(128, 128, 16, 16, 8) },
        Tiling { prefetch: false, ..shape(128, 128, 16, 8, 16) },
        Tiling { prefetch: false, ..shape(128, 128, 8, 8, 8) },
        shape(128, 128, 16, 16, 8),
        shape(128, 64, 16, 8, 4),
    ] {
        if t.check().is_ok() {
            let name =
                format!("tiled {}x{}x{} / {}x{}{}", t.bm, t.bn, t.bk, t.tm, t.tn, if t.prefetch { " pf" } else { "" });
            kernels.push((name, t.wgsl(), t.workgroups(n, n)));
        }
    }
    for (name, source, workgroups) in kernels {
        let outcome = run(&gpu, &source, workgroups, n, &a, &b, reps);
        let gflops = flop * f64::from(reps) / outcome.seconds / 1e9;
        let ok = outcome.max_error < 1e-4;
        if ok {
            println!("  {name:<34} {gflops:>10.2} GFLOP/s  (max rel. error {:.1e})", outcome.max_error);
            println!(r#"{{"kernel":"{name}","n":{n},"gflops":{gflops:.3},"max_error":{:.3e}}}"#, outcome.max_error);
        } else {
            println!("  {name:<34}      WRONG  (max rel. error {:.1e}): no figure", outcome.max_error);
        }
    }
}
