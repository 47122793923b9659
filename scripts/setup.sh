#!/usr/bin/env bash
# Installs what Starling needs on a fresh Debian/Ubuntu machine: Mesa's software Vulkan
# (lavapipe) so GPU code runs without a GPU, Chromium and chromedriver (WebGPU through SwiftShader,
# for the browser tests), PostgreSQL and Python's venv (the tests start private PostgreSQL and
# S3-compatible servers), Node.js with npm, and the pinned Rust toolchain (rust-toolchain.toml).
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
# postgresql: the tests start a private server of their own (scripts/postgres.sh).
# fonts-wqy-microhei: Chinese glyphs, so the browser e2e's screenshots of the app in Chinese are
# readable (the test itself does not depend on it).
# zopfli: the web build's gzip copies, about 5% smaller than gzip -9's (scripts/build-web.sh).
for pkg in mesa-vulkan-drivers libvulkan1 chromium chromium-driver postgresql fonts-wqy-microhei zopfli; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
# npm fetches binaryen's wasm-opt for the escrow contract's and the web app's builds; Node.js also
# reads the web app's split (scripts/split-graph.mjs) and drives the browser tests.
command -v npm >/dev/null 2>&1 || need_pkgs+=(nodejs npm)
# python3: the test scripts read cargo's JSON messages and pick free ports with it; its venv
# module holds the S3-compatible server the tests start (scripts/s3.sh).
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${need_pkgs[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "setup: please install ${need_pkgs[*]} (Mesa's lavapipe Vulkan driver, libvulkan, Node.js with npm)" >&2
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust is missing; install rustup from your package manager or rustup.rs, then rerun" >&2
  exit 1
fi
# rustup reads rust-toolchain.toml and installs the pinned toolchain on first use; the wasm32
# target (for the contract and, later, the browser worker) is added explicitly because an
# already-installed toolchain does not pick up new targets by itself.
cargo --version >/dev/null
rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown >&2

# Mesa warns without a runtime dir; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  echo "export XDG_RUNTIME_DIR=$(mktemp -d)"
fi
