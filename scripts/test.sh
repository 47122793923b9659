#!/usr/bin/env bash
# One command for a fresh machine: set up and run every test: unit, property and integration
# tests with real relay and worker processes on software Vulkan (cargo test), the browser
# engine's kernels on WebGPU in headless Chromium (wasm-bindgen-test), and the browser end to end
# (Playwright driving Chromium against a real relay; screenshots in target/screenshots/).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
export RUST_BACKTRACE=1
scripts/build-contract.sh
scripts/build-web.sh
cargo test --locked --workspace --all-targets "$@"
scripts/test-browser-kernels.sh
scripts/test-browser-e2e.sh
