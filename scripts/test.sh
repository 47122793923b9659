#!/usr/bin/env bash
# One command for a fresh machine: set up and run every test (unit, property, integration with
# real relay and worker processes on software Vulkan).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
export RUST_BACKTRACE=1
scripts/build-contract.sh
cargo test --locked --workspace --all-targets "$@"
