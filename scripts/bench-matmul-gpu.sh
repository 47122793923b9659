#!/usr/bin/env bash
# The matmul benchmark on a machine with an NVIDIA GPU (an H100 or H200), in one call: the WGSL
# kernels through wgpu on NVIDIA's Vulkan driver (web-worker/benches/matmul.rs) beside a native
# cuBLAS SGEMM through PyTorch (TF32 off: true fp32) on the same card, same sizes.
#
# Prepared here, run there. Here:
#   cargo bench --no-run -p starling-web-worker --bench matmul      # prints the binary's path
#   mkdir -p .gl && (cd .gl && apt-get download libvulkan1 ...)      # see the device README
# There (the repository root, with .gl and the binary carried):
#   scripts/bench-matmul-gpu.sh target/release/deps/matmul-HASH [SIZES]
# Output: each line of both benchmarks, and $OUT/matmul-gpu.txt when OUT is set.
set -uo pipefail
bin=${1:?usage: bench-matmul-gpu.sh BENCH_BINARY [SIZES]}
sizes=${2:-"4096 8192"}
out=${OUT:-/tmp}/matmul-gpu.txt
: > "$out"

# Vulkan's loader, when the machine has none (the NVIDIA driver brings the ICD).
if ! ldconfig -p | grep -q libvulkan.so.1 && [ -d .gl ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export WGPU_BACKEND=vulkan
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee -a "$out"

for n in $sizes; do
  STARLING_BENCH_N=$n STARLING_BENCH_REPS=10 "$bin" 2>&1 | tee -a "$out"
done

python3 - "$sizes" <<'EOF' 2>&1 | tee -a "$out"
import sys, torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
dev = torch.device("cuda")
print(f"cuBLAS SGEMM through torch {torch.__version__} on {torch.cuda.get_device_name(0)}, TF32 off")
for n in map(int, sys.argv[1].split()):
    a = torch.rand(n, n, device=dev) * 2 - 1
    b = torch.rand(n, n, device=dev) * 2 - 1
    for _ in range(3):
        torch.mm(a, b)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 10
    start.record()
    for _ in range(reps):
        torch.mm(a, b)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3
    gflops = 2 * n**3 * reps / seconds / 1e9
    print(f"  cublas sgemm {n} x {n} x {n}: {gflops:10.2f} GFLOP/s")
    print(f'{{"kernel":"cublas_sgemm","n":{n},"gflops":{gflops:.3f}}}')
EOF
