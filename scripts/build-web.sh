#!/usr/bin/env bash
# Builds the web app into www/pkg/, ready for the relay to serve www/ as it is.
#
# 1. cargo builds the web app for wasm32 in release, in target/web: starling-frontend, the Leptos
#    app with the compute engine for the browser's Web Worker (starling-web-worker) linked in,
#    linked with its relocations kept.
# 2. wasm-split-cli (wasm_split_cli_support, pinned; installed if missing) cuts it at its pages
#    (frontend/src/routes/lazy.rs) and at the engine (frontend/src/lib.rs, `engine_main`): a main
#    module, and chunks a page fetches when it is first shown and the worker when it starts, in
#    www/pkg/split-<hash of this split>/ with their loader. The worker instantiates the same
#    main module as the page, so the two share one download of what they both use.
# 3. wasm-bindgen (exactly the version in Cargo.lock; installed if missing) writes the ES modules
#    and wasm into www/pkg/.
# 4. wasm-opt -O1 optimises every module and chunk, with npm binaryen's wasm-opt under target/npm
#    (the one scripts/build-contract.sh uses). Debian's wasm-opt 108 breaks wasm-bindgen output,
#    so only version 116 or newer is used; without one the modules stay as wasm-bindgen wrote them.
#    -O1, not -Oz: what is downloaded is the gzipped module, and -Oz's smaller raw module compresses
#    worse. Measured on the app (2026-12-04): wasm-bindgen's output 1,695,632 bytes / 527,825 gzip;
#    -O1 1,620,973 / 517,715; -Os 1,492,861 / 571,892; -Oz 1,435,610 / 572,929. The engine: -O1
#    220,512 gzip, -Oz 220,889, none 222,556.
# 5. www/pkg/sw-assets.js lists the app shell for the service worker (www/sw.js) with a version
#    derived from the files' contents: a new build installs a new cache and drops the old one.
# 6. Precompressed .gz and .br copies of the wasm, JS, CSS, HTML and manifest sit next to each
#    file for the relay to serve; a table of raw/gzip/brotli sizes, what a first visit to each
#    page downloads, and the budget check.
#
# Safe to rerun: cargo rebuilds nothing when nothing changed, wasm-opt runs only when its input
# changed, and compressed copies are rewritten only when older than their file.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)

TARGET=wasm32-unknown-unknown
BINARYEN_VERSION=132.0.0
MIN_WASM_OPT_VERSION=116
WASM_OPT_FLAGS=(
  -O1
  --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals
  --enable-reference-types --enable-multivalue
)

# One target folder for the web builds: other builds run in target/ at the same time.
export CARGO_TARGET_DIR="$root/target/web"
out="$root/www/pkg"
staging="$CARGO_TARGET_DIR/bindgen"
mkdir -p "$out" "$staging"

say() { echo "build-web: $*" >&2; }

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
  say "adding the $TARGET Rust target"
  rustup target add "$TARGET"
fi

# wasm-bindgen's CLI must match the library version in Cargo.lock exactly.
lock_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$lock_version" ]; then
  say "Cargo.lock names no wasm-bindgen version"
  exit 1
fi
installed_version=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$installed_version" != "$lock_version" ]; then
  say "installing wasm-bindgen-cli $lock_version (found: ${installed_version:-none}); this takes a few minutes"
  # No --locked: its locked webpki-roots version is not served here (see TOOLCHAIN.md).
  cargo install wasm-bindgen-cli --version "$lock_version"
fi

# The app is sized for download: optimise for size, whole-program LTO, one codegen unit. Measured
# on this app: 1.53 MB raw / 379 KB brotli instead of 2.03 MB / 480 KB with the release profile's
# defaults. Only for this build (the relay and CLI keep their profile), and target/web is used by
# this script alone, so the setting never thrashes another build's cache.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
# Leptos's type-erased views (every component and element behind AnyView): 27 KB less gzipped
# app, measured.
export RUSTFLAGS="--cfg erase_components"
say "building starling-frontend (release, $TARGET, sized for download)"
# The app's link keeps its relocations for wasm-split (below); given after `--`, the flag reaches
# that link only. The engine's part is built for size like the rest: its work is on the GPU, and
# the CPU fallback's kernels are small loops.
cargo rustc --locked --release --target "$TARGET" -p starling-frontend --lib --crate-type cdylib -- -Clink-args=--emit-relocs

# wasm-opt: npm binaryen under target/npm, installed like scripts/build-contract.sh does.
wasm_opt="$root/target/npm/node_modules/.bin/wasm-opt"
binaryen_version() {
  node -p "require('$root/target/npm/node_modules/binaryen/package.json').version" 2>/dev/null || true
}
if command -v node >/dev/null 2>&1 && [ "$(binaryen_version)" != "$BINARYEN_VERSION" ] && command -v npm >/dev/null 2>&1; then
  say "installing binaryen@$BINARYEN_VERSION (wasm-opt) under target/npm"
  npm install --silent --no-audit --no-fund --prefix "$root/target/npm" "binaryen@$BINARYEN_VERSION" >&2 || true
fi
use_wasm_opt=""
if command -v node >/dev/null 2>&1 && [ -x "$wasm_opt" ]; then
  major=$(binaryen_version | cut -d. -f1)
  if [ -n "$major" ] && [ "$major" -ge "$MIN_WASM_OPT_VERSION" ]; then
    use_wasm_opt=1
  fi
fi
[ -n "$use_wasm_opt" ] || say "no wasm-opt $MIN_WASM_OPT_VERSION+ (needs Node.js and npm): modules are left as wasm-bindgen wrote them"

# Copies $1 to $2 unless $2 already has the same bytes (keeps modification times of unchanged files).
install_if_changed() {
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2"
  fi
}

# Optimises $1 into $2 with wasm-opt (or copies it without one); skipped when $2 was made from the
# same bytes with the same flags (the stamp beside the build says which).
optimise() {
  local raw=$1 target=$2
  local stamp="$CARGO_TARGET_DIR/opt-stamps/${target#"$out"/}.stamp"
  local want
  want="$(sha256sum "$raw" | cut -d' ' -f1) ${use_wasm_opt:+binaryen-$BINARYEN_VERSION ${WASM_OPT_FLAGS[*]}}"
  if [ -f "$target" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  mkdir -p "$(dirname "$stamp")" "$(dirname "$target")"
  if [ -n "$use_wasm_opt" ]; then
    say "wasm-opt ${WASM_OPT_FLAGS[0]} ${target#"$out"/}"
    # wasm-split leaves a name subsection binaryen does not know (and drops): it warns, harmlessly.
    "$wasm_opt" "${WASM_OPT_FLAGS[@]}" "$raw" -o "$target.tmp" 2> >(grep -v 'unknown name subsection' >&2)
    mv "$target.tmp" "$target"
  else
    cp "$raw" "$target"
  fi
  echo "$want" > "$stamp"
}

# wasm-bindgen for $1 (the crate) from the module $2; the JS glue (and any snippets) go straight
# to www/pkg, the module through wasm-opt. $3, for the split app: a step run on wasm-bindgen's
# output before it is installed.
bindgen() {
  local crate=$1 wasm=$2
  local dir="$staging/$crate"
  rm -rf "$dir"
  mkdir -p "$dir"
  # The app keeps the exports the linker made: its page chunks link to its function table.
  wasm-bindgen --target web --no-typescript --remove-name-section ${3:+--keep-lld-exports} --out-dir "$dir" "$wasm"
  if [ -n "${3:-}" ]; then "$3" "$dir"; fi
  (cd "$dir" && find . -type f ! -name '*.wasm' -print0) | while IFS= read -r -d '' file; do
    mkdir -p "$out/$(dirname "$file")"
    install_if_changed "$dir/$file" "$out/$file"
  done
  optimise "$dir/${crate}_bg.wasm" "$out/${crate}_bg.wasm"
}

# The app is split at its pages (src/routes/lazy.rs marks each page a split point) and at the
# compute engine (src/lib.rs, `engine_main`): wasm-split cuts each one's code, and code shared by
# some of them only, into chunks fetched when the page is first shown or the worker starts. The
# chunks share the main module's memory and function table, so they belong to
# exactly one build of it: they go to pkg/split-<hash of this split>/, and a tab still running an
# older build asks for its own folder, which is gone after a deploy, and says so (instead of
# linking foreign code).
WASM_SPLIT_VERSION=0.2.4
if ! cargo install --list | grep -qx "wasm_split_cli_support v$WASM_SPLIT_VERSION:"; then
  say "installing wasm_split_cli_support $WASM_SPLIT_VERSION (wasm-split-cli); this takes a few minutes"
  cargo install --locked wasm_split_cli_support --version "$WASM_SPLIT_VERSION" --features build-binary
fi
split_dir="$staging/split"
rm -rf "$split_dir"
mkdir -p "$split_dir"
wasm-split-cli "$CARGO_TARGET_DIR/$TARGET/release/starling_frontend.wasm" "$split_dir" --target web --out-name starling_frontend
# Named by the hash of everything wasm-split wrote: a change to any chunk, even one that leaves the
# main module as it was, makes a new folder.
split_name="split-$(cd "$split_dir" && sha256sum $(LC_ALL=C ls) | sha256sum | cut -c1-16)"
for file in "$split_dir"/*.wasm; do
  case "$(basename "$file")" in
    starling_frontend.wasm) ;;
    *) optimise "$file" "$out/$split_name/$(basename "$file")" ;;
  esac
done
sed 's#^import { initSync } from "./starling_frontend.js";$#import { initSync } from "../starling_frontend.js";#' \
  "$split_dir/__wasm_split.js" > "$staging/__wasm_split.js"
grep -q '^import { initSync } from "../starling_frontend.js";$' "$staging/__wasm_split.js" ||
  { say "wasm-split-cli's loader does not import the app as expected"; exit 1; }
install_if_changed "$staging/__wasm_split.js" "$out/$split_name/__wasm_split.js"
# The app's glue imports the loader from the build's folder.
point_at_split() {
  sed -i "s#^import \* as \(import[0-9]*\) from \"./__wasm_split.js\"#import * as \1 from \"./$split_name/__wasm_split.js\"#" \
    "$1/starling_frontend.js"
  ! grep -q '^import .* from "./__wasm_split.js"' "$1/starling_frontend.js" ||
    { say "the app's glue still imports ./__wasm_split.js"; exit 1; }
}
bindgen starling_frontend "$split_dir/starling_frontend.wasm" point_at_split
# The engine was a module of its own before it became the app's chunk.
rm -f "$out"/starling_web_worker*
# JS snippets (the keystore) a former build wrote and this one did not: the service worker would
# precache them.
if [ -d "$out/snippets" ]; then
  (cd "$out" && find snippets -type f ! -name '*.gz' ! -name '*.br' -print0) | while IFS= read -r -d '' file; do
    if [ ! -f "$staging/starling_frontend/$file" ]; then
      rm -f "$out/$file" "$out/$file.gz" "$out/$file.br"
    fi
  done
  find "$out/snippets" -type d -empty -delete
fi
# Former builds' chunk folders.
for folder in "$out"/split-*; do
  [ -d "$folder" ] && [ "$(basename "$folder")" != "$split_name" ] && rm -rf "$folder"
done
# The chunk files a split point (a page, or the engine) needs: its own, and every shared chunk the
# loader lists it under (`/* page_a, engine */` above each chunk's loader).
page_files() {
  echo "$split_name/split_$1.wasm"
  awk -v page="$1" '
    /^\/\* .* \*\/$/ { line = $0; gsub(/[\/*,]/, " ", line); n = split(line, pages, " "); next }
    /fetch\(new URL\("\.\/chunk_[0-9]+\.wasm"/ {
      for (i = 1; i <= n; i++) if (pages[i] == page) { match($0, /chunk_[0-9]+\.wasm/); print substr($0, RSTART, RLENGTH) }
      n = 0
    }' "$out/$split_name/__wasm_split.js" | sed "s#^#$split_name/#"
}
PAGES=(page_contribute page_dashboard page_job page_network engine)
for page in "${PAGES[@]}"; do
  [ -f "$out/$split_name/split_$page.wasm" ] || { say "wasm-split made no chunk for $page"; exit 1; }
done
mapfile -t contribute_files < <(page_files page_contribute)

# The service worker's asset lists: the app shell it precaches at install (page, style, manifest,
# icons, the app's main module and loader, and the chunks of Contribute, the page "/" opens, so the
# installed app opens offline), and what a first visit does not download, which the service worker
# keeps when it is first fetched: the compute engine (worker bootstrap and the engine's chunks),
# fetched when the person presses Start, and the other pages' chunks.
assets=(/index.html /style.css /manifest.webmanifest)
for icon in www/icons/*.png; do assets+=("/${icon#www/}"); done
later=()
[ -f www/worker.js ] && later+=(/worker.js)
is_contribute_file() {
  local f
  for f in "${contribute_files[@]}"; do [ "$f" = "$1" ] && return 0; done
  return 1
}
while IFS= read -r file; do
  case "$file" in
    www/pkg/split-*/*.wasm)
      if is_contribute_file "${file#www/pkg/}"; then assets+=("/${file#www/}"); else later+=("/${file#www/}"); fi ;;
    *) assets+=("/${file#www/}") ;;
  esac
done < <(find www/pkg -type f \( -name '*.js' -o -name '*.wasm' \) ! -name 'sw-assets.js' | LC_ALL=C sort)
version=$(for asset in "${assets[@]}" "${later[@]}"; do echo "$asset $(sha256sum "www$asset" | cut -d' ' -f1)"; done | sha256sum | cut -c1-16)
{
  echo "// Written by scripts/build-web.sh: the files www/sw.js precaches, those it keeps on first"
  echo "// use (the compute engine and the pages' chunks other than Contribute's, by SHA-256: only"
  echo "// this build's bytes are kept), and this build's version."
  echo "self.STARLING_ASSETS = {"
  echo "  version: '$version',"
  echo "  files: ["
  for asset in "${assets[@]}"; do echo "    '$asset',"; done
  echo "  ],"
  echo "  onFirstUse: {"
  for asset in "${later[@]}"; do echo "    '$asset': '$(sha256sum "www$asset" | cut -d' ' -f1)',"; done
  echo "  },"
  echo "};"
} > "$staging/sw-assets.js"
install_if_changed "$staging/sw-assets.js" "$out/sw-assets.js"

# Precompressed copies for the relay.
compressible=()
while IFS= read -r file; do compressible+=("$file"); done < <(
  find www -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.webmanifest' \) | LC_ALL=C sort
)
stale_br=()
for file in "${compressible[@]}"; do
  if [ ! -f "$file.gz" ] || [ "$file" -nt "$file.gz" ]; then
    gzip -9 -n -c "$file" > "$file.gz.tmp" && mv "$file.gz.tmp" "$file.gz"
  fi
  if [ ! -f "$file.br" ] || [ "$file" -nt "$file.br" ]; then
    stale_br+=("$file")
  fi
done
if [ ${#stale_br[@]} -gt 0 ]; then
  if command -v node >/dev/null 2>&1; then
    node -e '
      const zlib = require("zlib"), fs = require("fs");
      for (const file of process.argv.slice(1)) {
        const data = fs.readFileSync(file);
        const br = zlib.brotliCompressSync(data, { params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
        } });
        fs.writeFileSync(file + ".br.tmp", br);
        fs.renameSync(file + ".br.tmp", file + ".br");
      }' "${stale_br[@]}"
  elif command -v brotli >/dev/null 2>&1; then
    for file in "${stale_br[@]}"; do brotli -q 11 -f -o "$file.br" "$file"; done
  else
    say "no Node.js or brotli: .br copies not written"
  fi
fi

size_of() { if [ -f "$1" ]; then stat -c %s "$1"; else echo "-"; fi; }
printf '%-36s %10s %10s %10s\n' "file" "raw" "gzip" "brotli"
for file in www/pkg/starling_frontend_bg.wasm www/pkg/starling_frontend.js "www/pkg/$split_name/__wasm_split.js" \
  "www/pkg/$split_name"/split_*.wasm \
  www/style.css www/sw.js www/worker.js www/index.html; do
  [ -f "$file" ] || continue
  printf '%-36s %10s %10s %10s\n' "${file#www/}" "$(size_of "$file")" "$(size_of "$file.gz")" "$(size_of "$file.br")"
done
# The size budget (BENCHMARKS.md, "Web app size"), in gzip bytes of wasm and its JS. A page's
# first visit downloads the app's main module, its glue and loader, and that page's chunks;
# pressing Start on Contribute adds the engine's chunks. A build over budget fails, so growth is a
# decision, not an accident. Issue 15's goal is 400 KB for app and engine together; see
# BENCHMARKS.md for how far there is still to go and where the bytes are.
PAGE_BUDGET=430000
ENGINE_BUDGET=160000
TOTAL_BUDGET=470000
gz_sum() { local sum=0 f; for f in "$@"; do sum=$((sum + $(size_of "www/pkg/$f.gz"))); done; echo "$sum"; }
main=$(gz_sum starling_frontend_bg.wasm starling_frontend.js "$split_name/__wasm_split.js")
over=0
for page in page_contribute page_dashboard page_job page_network; do
  mapfile -t files < <(page_files "$page")
  bytes=$((main + $(gz_sum "${files[@]}")))
  say "gzipped: a first visit to ${page#page_} downloads $bytes bytes ($main main, ${#files[@]} chunks; budget $PAGE_BUDGET)"
  [ "$bytes" -le "$PAGE_BUDGET" ] || { say "${page#page_} is over its budget (BENCHMARKS.md)"; over=1; }
done
# What pressing Start adds to a visit to Contribute: the engine's chunks Contribute did not fetch.
mapfile -t engine_files < <(comm -23 <(page_files engine | sort) <(page_files page_contribute | sort))
engine=$(gz_sum "${engine_files[@]}")
contributing=$((main + $(gz_sum $(sort -u <(page_files page_contribute) <(page_files engine)))))
mapfile -t all_files < <(cd www/pkg && printf '%s\n' "$split_name"/*.wasm)
all=$((main + $(gz_sum "${all_files[@]}")))
say "gzipped: the engine adds $engine bytes to Contribute (budget $ENGINE_BUDGET); every page and the engine: $all bytes"
say "gzipped: app and engine together (open the app, press Start): $contributing bytes (budget $TOTAL_BUDGET)"
[ "$engine" -le "$ENGINE_BUDGET" ] || { say "the engine is over its budget (BENCHMARKS.md)"; over=1; }
[ "$contributing" -le "$TOTAL_BUDGET" ] || { say "app and engine together are over budget (BENCHMARKS.md)"; over=1; }
[ "$over" -eq 0 ] || exit 1
say "done in $(($(date +%s) - started)) s; build $version in www/"
