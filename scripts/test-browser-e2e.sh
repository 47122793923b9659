#!/usr/bin/env bash
# The browser end-to-end test (frontend/tests/e2e.mjs): headless Chromium with WebGPU
# (SwiftShader) against a real relay serving www/, a native worker beside the browser's, the
# Dashboard, the job page, invalid WGSL, PWA installability and an offline reload. Screenshots of
# every page at phone and desktop width land in target/screenshots/.
#
# Builds what it needs: the starling binary (debug, with the workspace's test build), the web app (scripts/build-web.sh), and
# playwright-core (npm, pinned, under target/npm; it drives Debian's Chromium, never downloads one).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PLAYWRIGHT_VERSION=1.65.1
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "test-browser-e2e: no browser at $chromium: apt-get install -y chromium" >&2; exit 1; }

# The relay runs the escrow contract's wasm (embedded ledger): build it when missing or stale.
scripts/build-contract.sh
[ -f www/pkg/app.js ] || scripts/build-web.sh
# The starling binary as `cargo test --workspace --all-targets` builds it (scripts/test.sh has just
# done so: nothing to rebuild). A plain `cargo build -p starling-cli` would unify other features
# and rebuild most dependencies, about 10 minutes on 2 cores.
cargo test --locked --workspace --all-targets --no-run
npm_dir="$root/target/npm"
mkdir -p "$npm_dir"
installed=$(node -p "require('$npm_dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$PLAYWRIGHT_VERSION" ]; then
  npm install --prefix "$npm_dir" --no-save --no-audit --no-fund "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi

rm -rf target/screenshots
NPM_DIR="$npm_dir" \
STARLING_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/starling" \
WWW_DIR="$root/www" \
SCREENSHOTS="$root/target/screenshots" \
CHROMIUM="$chromium" \
  node "$root/frontend/tests/e2e.mjs"
