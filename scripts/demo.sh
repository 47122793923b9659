#!/usr/bin/env bash
# One command for a fresh machine: set up, build, and run the whole market locally.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
cargo run --locked -p starling-cli --bin starling -- demo "$@"
