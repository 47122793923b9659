#!/usr/bin/env bash
# Runs the browser engine's kernels on WebGPU in headless Chromium and checks them against the CPU
# references: web-worker/tests/browser_kernels.rs, through wasm-bindgen-test-runner, chromedriver
# and web-worker/webdriver.json (Chromium with --enable-unsafe-webgpu: SwiftShader's WebGPU, no
# GPU needed). The tests fail, not skip, when the browser offers no WebGPU adapter.
#
# Needs chromium and chromium-driver (apt), and wasm-bindgen-cli at exactly the wasm-bindgen
# version in Cargo.lock (it brings wasm-bindgen-test-runner). Safe to rerun: cargo rebuilds only
# what changed. Honours CARGO_TARGET_DIR; extra arguments go to the test runner (a test name
# filter, --nocapture).
set -euo pipefail
cd "$(dirname "$0")/.."

webdriver_json="$PWD/web-worker/webdriver.json"
chromium=$(sed -n 's/.*"binary": *"\([^"]*\)".*/\1/p' "$webdriver_json")
chromedriver=${CHROMEDRIVER:-/usr/bin/chromedriver}
fail() { echo "test-browser-kernels: $*" >&2; exit 1; }

[ -x "$chromium" ] || fail "no browser at $chromium (named in $webdriver_json): apt-get install -y chromium"
[ -x "$chromedriver" ] || fail "no chromedriver at $chromedriver: apt-get install -y chromium-driver (or set CHROMEDRIVER)"
lock_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
[ -n "$lock_version" ] || fail "no wasm-bindgen in Cargo.lock"
command -v wasm-bindgen-test-runner >/dev/null 2>&1 ||
  fail "no wasm-bindgen-test-runner on PATH: cargo install wasm-bindgen-cli --version $lock_version"
runner_version=$(wasm-bindgen-test-runner --version | awk '{print $2}')
[ "$runner_version" = "$lock_version" ] ||
  fail "wasm-bindgen-test-runner is $runner_version, Cargo.lock has wasm-bindgen $lock_version: cargo install wasm-bindgen-cli --version $lock_version"
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown

# Mesa warns without a runtime dir; a fresh one per run.
XDG_RUNTIME_DIR=$(mktemp -d)
trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT
export XDG_RUNTIME_DIR

# chromedriver gives every session a fresh temporary profile. SwiftShader is slow: allow minutes.
# The release profile in build-web.sh's target folder: the engine's dependencies (wgpu, naga,
# web-sys) are already built there for the browser, so this compiles a dozen crates instead of
# building them all again in the dev profile (about four minutes less on a 2-core machine).
CARGO_TARGET_DIR="$PWD/target/web" \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
CHROMEDRIVER="$chromedriver" \
WASM_BINDGEN_TEST_WEBDRIVER_JSON="$webdriver_json" \
WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-300} \
  cargo test --release -p starling-web-worker --target wasm32-unknown-unknown --test browser_kernels -- "$@"
