#!/usr/bin/env bash
# One command for a fresh machine: set up and run every test: unit, property and integration
# tests with real relay and worker processes on software Vulkan (cargo test), the browser
# engine's kernels on WebGPU in headless Chromium (wasm-bindgen-test), and the browser end to end
# (Playwright driving Chromium against a real relay; screenshots in target/screenshots/).
# A private PostgreSQL server (scripts/postgres.sh) and a private S3-compatible server
# (scripts/s3.sh) run for the whole command: the tests that need them use them, and the relay's
# integration tests run a second time with their relays on PostgreSQL and their blobs in S3.
#
# At the end (pass or fail) it prints how long each phase took; BENCHMARKS.md ("Test time") keeps
# the figures against the budget of 35 minutes cold on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

phases=()
started=$(date +%s)
phase_start=$started
report() {
  local status=$?
  local now
  now=$(date +%s)
  echo "test.sh: phase times (s):" >&2
  for p in "${phases[@]}"; do echo "  $p" >&2; done
  [ "$status" -eq 0 ] || echo "  $current: $((now - phase_start)) (failed, exit $status)" >&2
  echo "  total: $((now - started))" >&2
}
trap report EXIT
# Runs one phase and records its time.
current=setup
phase() {
  local name=$1
  current=$name
  shift
  "$@"
  local now
  now=$(date +%s)
  phases+=("$name: $((now - phase_start))")
  phase_start=$now
}

setup_env=$(scripts/setup.sh)
eval "$setup_env"
phases+=("setup: $(($(date +%s) - phase_start))")
phase_start=$(date +%s)
export RUST_BACKTRACE=1
phase "contract build" scripts/build-contract.sh
phase "web build" scripts/build-web.sh
# The build scripts' own helpers (node): scripts/tests/.
phase "script tests" node --test scripts/tests/split-graph.test.mjs
eval "$(scripts/postgres.sh start)"
trap 'status=$?; scripts/postgres.sh stop "$STARLING_TEST_PGDATA"; (exit $status); report' EXIT
phase "S3 server install" scripts/s3.sh install
eval "$(scripts/s3.sh start)"
trap 'status=$?; scripts/s3.sh stop "$STARLING_TEST_S3_DIR"; scripts/postgres.sh stop "$STARLING_TEST_PGDATA"; (exit $status); report' EXIT
# The tests that need PostgreSQL or the S3-compatible server fail rather than skip when it is missing.
export STARLING_REQUIRE_POSTGRES=1 STARLING_REQUIRE_S3=1
phase "cargo test (build and run)" cargo test --locked --workspace --all-targets "$@"
# The relay's integration tests again, every relay on PostgreSQL with its blobs in S3: the binary the run above built
# (same arguments, so nothing is rebuilt), started the way cargo starts it (in its crate's folder).
relay_tests_on_postgres() {
  local bin
  bin=$(cargo test --locked --workspace --all-targets --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" \
            and m["package_id"].find("/relay#") != -1 and m.get("executable"):
        print(m["executable"])
')
  [ -n "$bin" ] || { echo "test.sh: the relay's integration test binary was not found" >&2; return 1; }
  (cd relay && STARLING_TEST_STORE=postgres STARLING_TEST_BLOBS=s3 "$bin")
}
phase "relay tests on PostgreSQL and S3" relay_tests_on_postgres
phase "browser kernels" scripts/test-browser-kernels.sh
phase "browser end to end" scripts/test-browser-e2e.sh
