#!/usr/bin/env bash
# One command for a fresh machine: set up, build, and run the whole market locally.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
# The escrow contract, so the demo's jobs are paid through it (embedded ledger).
scripts/build-contract.sh >&2
cargo run --locked -p starling-cli --bin starling -- demo "$@"
