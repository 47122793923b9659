#!/usr/bin/env bash
# Builds the escrow contract's deployable wasm: target/contracts/starling_escrow.wasm.
#
# 1. cargo builds the contract for wasm32 (release, its own target folder, paths remapped so the
#    bytes do not depend on where the checkout or the cargo home lives).
# 2. npm's binaryen wasm-opt lowers the bulk-memory, sign-extension and other post-MVP operations
#    the precompiled std uses, which the CosmWasm VM refuses, and shrinks the module
#    (see ../shared/TOOLCHAIN.md, "CosmWasm contract"). Debian's binaryen is too old for this.
#
# Safe to rerun: cargo rebuilds nothing when nothing changed, and wasm-opt only runs when its
# input, version or flags changed. Prints the artifact's path and sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

BINARYEN_VERSION=132.0.0
WASM_OPT_FLAGS=(
  --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-reference-types
  --enable-multivalue --enable-mutable-globals --signext-lowering --llvm-memory-copy-fill-lowering
  -Os --strip-debug
)

build_dir="$root/target/contract-build"
out_dir="$root/target/contracts"
out="$out_dir/starling_escrow.wasm"
stamp="$out_dir/.starling_escrow.stamp"
mkdir -p "$out_dir"

# A separate target folder: the remapping flags below would otherwise force rebuilds of the
# wasm32 crates the web worker shares, and any RUSTFLAGS from the caller must not leak in.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
unset CARGO_ENCODED_RUSTFLAGS
export RUSTFLAGS="--remap-path-prefix=$root=/starling --remap-path-prefix=$cargo_home=/cargo"
CARGO_TARGET_DIR="$build_dir" cargo build --locked --release --target wasm32-unknown-unknown -p starling-escrow --lib
raw="$build_dir/wasm32-unknown-unknown/release/starling_escrow.wasm"

wasm_opt="$root/target/npm/node_modules/.bin/wasm-opt"
installed_version=""
if [ -x "$wasm_opt" ]; then
  installed_version=$(node -p "require('$root/target/npm/node_modules/binaryen/package.json').version" 2>/dev/null || true)
fi
if [ "$installed_version" != "$BINARYEN_VERSION" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      SUDO=""
      [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      echo "build-contract: installing nodejs and npm (for binaryen's wasm-opt)" >&2
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    else
      echo "build-contract: please install Node.js and npm (needed for binaryen's wasm-opt)" >&2
      exit 1
    fi
  fi
  echo "build-contract: installing binaryen@$BINARYEN_VERSION (wasm-opt) under target/npm" >&2
  npm install --silent --no-audit --no-fund --prefix "$root/target/npm" "binaryen@$BINARYEN_VERSION" >&2
fi

want_stamp="$(sha256sum "$raw" | cut -d' ' -f1) binaryen-$BINARYEN_VERSION ${WASM_OPT_FLAGS[*]}"
if [ -f "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; then
  # Mark it fresh against its sources (the VM test compares modification times).
  touch "$out"
  echo "build-contract: $out is up to date" >&2
else
  "$wasm_opt" "${WASM_OPT_FLAGS[@]}" "$raw" -o "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$want_stamp" > "$stamp"
fi
echo "build-contract: $(sha256sum "$out" | cut -d' ' -f1)  $(stat -c %s "$out") bytes  target/contracts/starling_escrow.wasm" >&2
