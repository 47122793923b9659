#!/usr/bin/env bash
# Builds the web app into www/pkg/, ready for the relay to serve www/ as it is.
#
# 1. cargo builds the web app for wasm32 in release, in target/web: starling-frontend, the Leptos
#    app with the compute engine for the browser's Web Worker (starling-web-worker) linked in,
#    linked with its relocations kept.
# 2. wasm-split-cli (wasm_split_cli_support, pinned; installed if missing) cuts it at its pages
#    (frontend/src/routes/lazy.rs), at the engine (frontend/src/lib.rs, `engine_main`) and at the
#    built-ins' code (web-worker/src/browser/web/compute.rs: each group's WGSL, the CPU kernels): a
#    main module, and chunks a page fetches when it is first shown, the worker when it starts and
#    when a first task needs a kernel's code, with their loader. The worker instantiates the same
#    main module as the page, so the two share one download of what they both use.
# 3. wasm-bindgen (exactly the version in Cargo.lock; installed if missing) writes the main
#    module's ES module glue.
# 4. wasm-opt -O3 optimises the main module and every chunk, with npm binaryen's wasm-opt under
#    target/npm (the one scripts/build-contract.sh uses). Debian's wasm-opt 108 breaks wasm-bindgen
#    output, so only version 116 or newer is used; without one the modules stay as they are.
#    -O3, not -Oz: what is downloaded is the gzipped module, and -Oz's smaller raw module compresses
#    worse. Measured on the app (2026-12-04, one module then): wasm-bindgen's output 1,695,632
#    bytes / 527,825 gzip; -O1 1,620,973 / 517,715; -Os 1,492,861 / 571,892; -Oz 1,435,610 /
#    572,929. On the split app's main module and the chunks of Contribute and the engine
#    (2026-12-05, gzip -9): -O1 436,511; -O2 432,742; -Os 432,743; -O3 432,022; -O3 with
#    --converge, --gufa-optimizing or --merge-similar-functions no better.
# 5. The build is one folder, www/pkg/app-<hash of its files>/, the JS glue minified (terser), with
#    .gz (zopfli) and .br copies of each file for the relay to serve; sizes are printed and the
#    budget is checked before it goes live.
#    Then www/pkg/app.js, the one file that names the build, and www/pkg/sw-assets.js, what the
#    service worker (www/sw.js) precaches and keeps, with each file's SHA-256. The build before
#    stays for tabs still running it; older ones go.
#
# Safe to rerun: cargo rebuilds nothing when nothing changed, wasm-opt and zopfli run only on files
# they have not seen, and compressed copies are rewritten only when older than their file.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)

TARGET=wasm32-unknown-unknown
BINARYEN_VERSION=132.0.0
TERSER_VERSION=5.51.4
MIN_WASM_OPT_VERSION=116
WASM_OPT_FLAGS=(
  -O3
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

# wasm-split-cli, pinned, installed before the size settings below are exported (it is a tool,
# built like one).
WASM_SPLIT_VERSION=0.2.4
if ! cargo install --list | grep -qx "wasm_split_cli_support v$WASM_SPLIT_VERSION:"; then
  say "installing wasm_split_cli_support $WASM_SPLIT_VERSION (wasm-split-cli); this takes a few minutes"
  env -u CARGO_TARGET_DIR cargo install --locked wasm_split_cli_support --version "$WASM_SPLIT_VERSION" --features build-binary
fi

# The app is sized for download: optimise for size, whole-program LTO, one codegen unit. Measured
# on this app: 1.53 MB raw / 379 KB brotli instead of 2.03 MB / 480 KB with the release profile's
# defaults. Only for this build (the relay and CLI keep their profile), and target/web is used by
# this script alone, so the setting never thrashes another build's cache.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
# Leptos's type-erased views (every component and element behind AnyView): 27 KB less gzipped
# app, measured.
# Panic locations name source files by shorter paths (the registry's and this checkout's prefix
# replaced): fewer bytes, and a build that does not depend on where the checkout or cargo sits.
# (CARGO_ENCODED_RUSTFLAGS: one flag per field, so paths with spaces stay whole.)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
unset RUSTFLAGS
CARGO_ENCODED_RUSTFLAGS=$(printf '%s\x1f' --cfg erase_components \
  "--remap-path-prefix=$cargo_home/registry/src=/crates" "--remap-path-prefix=$cargo_home/git/checkouts=/git" \
  "--remap-path-prefix=$root=/starling")
export CARGO_ENCODED_RUSTFLAGS=${CARGO_ENCODED_RUSTFLAGS%$'\x1f'}
say "building starling-frontend (release, $TARGET, sized for download)"
# The app's link keeps its relocations for wasm-split (below); given after `--`, the flag reaches
# that link only. The engine's part is built for size like the rest: its work is on the GPU, and
# the CPU fallback's kernels are small loops.
cargo rustc --locked --release --target "$TARGET" -p starling-frontend --lib --crate-type cdylib -- -Clink-args=--emit-relocs

# The npm tools, pinned, under target/npm (where scripts/build-contract.sh puts binaryen too).
# The version of npm package $1 there, or nothing.
npm_version() {
  node -p "require('$root/target/npm/node_modules/$1/package.json').version" 2>/dev/null || true
}
# Installs npm package $1 at version $2 there unless it is (needs Node.js and npm; without them,
# or if the install fails, the caller goes on without the tool).
npm_tool() {
  if command -v node >/dev/null 2>&1 && [ "$(npm_version "$1")" != "$2" ] && command -v npm >/dev/null 2>&1; then
    say "installing $1@$2 under target/npm"
    npm install --silent --no-audit --no-fund --prefix "$root/target/npm" "$1@$2" >&2 || true
  fi
}

# wasm-opt: npm binaryen.
wasm_opt="$root/target/npm/node_modules/.bin/wasm-opt"
npm_tool binaryen "$BINARYEN_VERSION"
use_wasm_opt=""
if command -v node >/dev/null 2>&1 && [ -x "$wasm_opt" ]; then
  major=$(npm_version binaryen | cut -d. -f1)
  if [ -n "$major" ] && [ "$major" -ge "$MIN_WASM_OPT_VERSION" ]; then
    use_wasm_opt=1
  fi
fi
[ -n "$use_wasm_opt" ] || say "no wasm-opt $MIN_WASM_OPT_VERSION+ (needs Node.js and npm): modules are left as wasm-bindgen wrote them"

# terser: it minifies the JS glue and the snippets (the glue is about 110 KB as wasm-bindgen
# writes it, 52 KB minified; 3 KB less gzipped). Without it the JS stays as written.
terser="$root/target/npm/node_modules/.bin/terser"
npm_tool terser "$TERSER_VERSION"
use_terser=""
if command -v node >/dev/null 2>&1 && [ "$(npm_version terser)" = "$TERSER_VERSION" ]; then use_terser=1; fi
[ -n "$use_terser" ] || say "no terser (needs Node.js and npm): the JS glue is left as wasm-bindgen wrote it"

# gzip copies are written by zopfli where it is installed (scripts/setup.sh installs it): the same
# deflate format every browser and proxy reads, about 5% smaller than gzip -9 (measured on the app,
# BENCHMARKS.md "Web app size"), at about a second per 100 KB. Its copies are kept in a cache keyed
# by the file's bytes, so a module that did not change is not compressed again.
# It is required: the size budget below is what the relay serves, and gzip -9's copies would not
# fit it.
zopfli_bin=$(command -v zopfli || true)
[ -n "$zopfli_bin" ] || { say "zopfli is missing (scripts/setup.sh installs it; Debian/Ubuntu: apt-get install zopfli)"; exit 1; }
gzip_tool="zopfli-$(dpkg-query -W -f='${Version}' zopfli 2>/dev/null || echo local)"

# Writes each file's precompressed siblings (.gz, and .br with Node.js or brotli) when older than
# the file, each through a temporary file and a rename, so the relay never serves half a file.
compress() {
  local file stale_br=() key cached
  for file in "$@"; do
    if [ ! -f "$file.gz" ] || [ "$file" -nt "$file.gz" ]; then
      key=$(printf '%s %s' "$(sha256sum "$file" | cut -d' ' -f1)" "$gzip_tool" | sha256sum | cut -d' ' -f1)
      cached="$CARGO_TARGET_DIR/gz-cache/$key.gz"
      if [ ! -f "$cached" ]; then
        mkdir -p "$(dirname "$cached")"
        "$zopfli_bin" -c "$file" > "$cached.tmp"
        mv "$cached.tmp" "$cached"
      fi
      touch "$cached"; cp "$cached" "$file.gz.tmp" && mv "$file.gz.tmp" "$file.gz"
    fi
    if [ ! -f "$file.br" ] || [ "$file" -nt "$file.br" ]; then stale_br+=("$file"); fi
  done
  [ ${#stale_br[@]} -gt 0 ] || return 0
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
    for file in "${stale_br[@]}"; do brotli -q 11 -f -o "$file.br.tmp" "$file" && mv "$file.br.tmp" "$file.br"; done
  fi
}

# The caches keep what a build made for the next; what no build has used for 30 days goes.
find "$CARGO_TARGET_DIR/opt-cache" "$CARGO_TARGET_DIR/gz-cache" -type f -mtime +30 -delete 2>/dev/null || true

# Optimises $1 into $2 with wasm-opt (or copies it without one), through a cache keyed by $1's
# bytes and the flags: a module wasm-opt has seen before is not optimised again.
optimise() {
  local raw=$1 target=$2 key
  key=$(printf '%s %s' "$(sha256sum "$raw" | cut -d' ' -f1)" "${use_wasm_opt:+binaryen-$(npm_version binaryen) ${WASM_OPT_FLAGS[*]}}" | sha256sum | cut -d' ' -f1)
  local cached="$CARGO_TARGET_DIR/opt-cache/$key.wasm"
  if [ ! -f "$cached" ]; then
    mkdir -p "$(dirname "$cached")"
    if [ -n "$use_wasm_opt" ]; then
      say "wasm-opt ${WASM_OPT_FLAGS[0]} $(basename "$target")"
      # wasm-split leaves a name subsection binaryen does not know (and drops): it warns, harmlessly.
      "$wasm_opt" "${WASM_OPT_FLAGS[@]}" "$raw" -o "$cached.tmp" 2> >(grep -v 'unknown name subsection' >&2)
      mv "$cached.tmp" "$cached"
    else
      cp "$raw" "$cached"
    fi
  fi
  touch "$cached"; cp "$cached" "$target"
}

# The app is split at its pages (src/routes/lazy.rs marks each page a split point) and at the
# compute engine (src/lib.rs, `engine_main`): wasm-split cuts each one's code, and code shared by
# some of them only, into chunks fetched when the page is first shown or the worker starts.
split_dir="$staging/split"
rm -rf "$split_dir"
mkdir -p "$split_dir"
wasm-split-cli "$CARGO_TARGET_DIR/$TARGET/release/starling_frontend.wasm" "$split_dir" --target web --out-name starling_frontend
grep -q '^import { initSync } from "./starling_frontend.js";$' "$split_dir/__wasm_split.js" ||
  { say "wasm-split-cli's loader does not import the app's glue as expected"; exit 1; }

# One build is one folder, www/pkg/app-<hash of every file in it>/: the main module and its JS glue
# (wasm-bindgen keeps the linker's exports: the chunks link to the function table), the loader, the
# chunks, the glue's snippets. The chunks share the main module's memory and function table, so a
# chunk linked into another build's module would corrupt it without any error; inside one folder
# every file is of one build, and every relative import stays inside it. The one file that changes
# between builds is www/pkg/app.js, which names the folder.
assembly="$staging/app"
rm -rf "$assembly" "$staging/bindgen"
mkdir -p "$assembly" "$staging/bindgen"
wasm-bindgen --target web --no-typescript --remove-name-section --keep-lld-exports \
  --out-dir "$staging/bindgen" "$split_dir/starling_frontend.wasm"
grep -q 'from "./__wasm_split.js"' "$staging/bindgen/starling_frontend.js" ||
  { say "the app's glue does not import wasm-split's loader as expected"; exit 1; }
(cd "$staging/bindgen" && find . -type f ! -name '*.wasm' -print0) | while IFS= read -r -d '' file; do
  mkdir -p "$assembly/$(dirname "$file")"
  cp "$staging/bindgen/$file" "$assembly/$file"
done
# The glue and snippets minified (ES modules: imports, exports and the wasm's import names stay).
# wasm-split's loader stays as written: scripts/split-graph.mjs reads its dependency lists.
if [ -n "$use_terser" ]; then
  while IFS= read -r -d '' file; do
    "$terser" "$file" --module --compress --mangle --output "$file.min"
    mv "$file.min" "$file"
  done < <(find "$assembly" -type f -name '*.js' -print0)
fi
optimise "$staging/bindgen/starling_frontend_bg.wasm" "$assembly/starling_frontend_bg.wasm"
cp "$split_dir/__wasm_split.js" "$assembly/"
for file in "$split_dir"/*.wasm; do
  [ "$(basename "$file")" = starling_frontend.wasm ] || optimise "$file" "$assembly/$(basename "$file")"
done
build="app-$(cd "$assembly" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"

# Which files each split point needs (scripts/split-graph.mjs reads the loader; it fails when it
# cannot). A first visit to a page downloads the main module, its glue and loader, and the page's
# files; pressing Start on Contribute adds the engine's.
command -v node >/dev/null 2>&1 || { say "Node.js is needed to read the split's loader (scripts/setup.sh installs it)"; exit 1; }
node scripts/split-graph.mjs "$assembly" > "$staging/graph.txt"
files_of() { awk -v point="$1" '$1 == point { print $2 }' "$staging/graph.txt"; }
for point in page_contribute page_dashboard page_job page_network engine builtins_cpu wgsl_mandelbrot; do
  [ -n "$(files_of "$point")" ] || { say "wasm-split made no split point $point"; exit 1; }
done
# The kernels' split points (web-worker/src/browser/web/compute.rs): the built-ins' CPU references,
# and their WGSL by group, each fetched with the first task that needs it.
mapfile -t kernel_points < <(awk '$1 ~ /^(wgsl_[a-z0-9_]+|builtins_cpu)$/ { print $1 }' "$staging/graph.txt" | LC_ALL=C sort -u)
mapfile -t built < <(find "$assembly" -type f \( -name '*.wasm' -o -name '*.js' \))
compress "${built[@]}"

size_of() { if [ -f "$1" ]; then stat -c %s "$1"; else echo "-"; fi; }
printf '%-44s %10s %10s %10s\n' "file" "raw" "gzip" "brotli"
for file in starling_frontend_bg.wasm starling_frontend.js __wasm_split.js $(cd "$assembly" && printf '%s\n' split_*.wasm); do
  printf '%-44s %10s %10s %10s\n' "pkg/$build/$file" "$(size_of "$assembly/$file")" "$(size_of "$assembly/$file.gz")" "$(size_of "$assembly/$file.br")"
done

# The size budget (BENCHMARKS.md, "Web app size"), in gzip bytes of wasm and JS as the relay serves
# them, checked before the build goes live. A build over budget fails, so growth is a decision, not
# an accident. Issue 15's goal: at most 400 KB for the app and the engine together (open the app,
# press Start, run a first task).
PAGE_BUDGET=400000
ENGINE_BUDGET=130000
TOTAL_BUDGET=400000
gz_sum() { local sum=0 f; for f in "$@"; do sum=$((sum + $(size_of "$assembly/$f.gz"))); done; echo "$sum"; }
# The main download: the glue, its snippets, the loader and the main module, and www/pkg/app.js
# (about 200 bytes; written after the check).
mapfile -t main_files < <(cd "$assembly" && find . -type f \( -name '*.js' -o -name starling_frontend_bg.wasm \) | sed 's#^\./##' | LC_ALL=C sort)
main=$(( $(gz_sum "${main_files[@]}") + 200 ))
over=0
for page in page_contribute page_dashboard page_job page_network; do
  mapfile -t files < <(files_of "$page")
  bytes=$((main + $(gz_sum "${files[@]}")))
  say "gzipped: a first visit to ${page#page_} downloads $bytes bytes ($main main, ${#files[@]} files; budget $PAGE_BUDGET)"
  [ "$bytes" -le "$PAGE_BUDGET" ] || { say "${page#page_} is over its budget (BENCHMARKS.md)"; over=1; }
done
# What pressing Start adds to a visit to Contribute: the engine's files Contribute did not fetch,
# and the kernel code of the first task (one WGSL group's chunk on WebGPU, the CPU kernels'
# without it), counted at the largest of them.
mapfile -t engine_files < <(LC_ALL=C comm -23 <(files_of engine | LC_ALL=C sort) <(files_of page_contribute | LC_ALL=C sort))
mapfile -t contributing_files < <(LC_ALL=C sort -u <(files_of page_contribute) <(files_of engine))
kernel=0
for point in "${kernel_points[@]}"; do
  mapfile -t files < <(LC_ALL=C comm -23 <(files_of "$point" | LC_ALL=C sort) <(printf '%s\n' "${contributing_files[@]}"))
  bytes=$(gz_sum "${files[@]}")
  say "gzipped: a first task needing $point adds $bytes bytes"
  [ "$bytes" -le "$kernel" ] || kernel=$bytes
done
# Start also fetches the worker's bootstrap, www/worker.js.
compress www/worker.js
bootstrap=$(stat -c %s www/worker.js.gz)
engine=$(($(gz_sum "${engine_files[@]}") + kernel + bootstrap))
contributing=$((main + $(gz_sum "${contributing_files[@]}") + kernel + bootstrap))
mapfile -t all_files < <(cd "$assembly" && printf '%s\n' *.wasm | grep -vx starling_frontend_bg.wasm)
all=$((main + $(gz_sum "${all_files[@]}")))
say "gzipped: the engine and its largest kernel chunk add $engine bytes to Contribute (budget $ENGINE_BUDGET); every page, the engine and every kernel: $all bytes"
say "gzipped: app, engine and a first task's kernel (open the app, press Start): $contributing bytes (budget $TOTAL_BUDGET)"
[ "$engine" -le "$ENGINE_BUDGET" ] || { say "the engine is over its budget (BENCHMARKS.md)"; over=1; }
[ "$contributing" -le "$TOTAL_BUDGET" ] || { say "app and engine together are over budget (BENCHMARKS.md)"; over=1; }
[ "$over" -eq 0 ] || exit 1

# Live: the folder first (whole, compressed), then the name of it. A folder of this name already
# live is reused only if its files still hash to its name (a copy cut short, or edited by hand,
# would otherwise be served as immutable).
folder_hash() { (cd "$1" && find . -type f ! -name '*.gz' ! -name '*.br' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }
if [ -d "$out/$build" ] && [ "app-$(folder_hash "$out/$build")" != "$build" ]; then
  say "www/pkg/$build does not hold what its name says: replacing it"
  rm -rf "$out/$build"
fi
if [ ! -d "$out/$build" ]; then
  rm -rf "$out/$build.tmp"
  cp -a "$assembly" "$out/$build.tmp"
  sync "$out/$build.tmp" 2>/dev/null || sync
  mv "$out/$build.tmp" "$out/$build"
else
  # The same files, live already: their compressed copies become the ones measured above (an
  # older copy may be another compressor's), each through a temporary file and a rename.
  while IFS= read -r -d '' copy; do
    live="$out/$build/${copy#"$assembly/"}"
    cmp -s "$copy" "$live" || { cp "$copy" "$live.tmp" && mv "$live.tmp" "$live"; }
  done < <(find "$assembly" -type f \( -name '*.gz' -o -name '*.br' \) -print0)
fi
{
  echo "// Written by scripts/build-web.sh: the build of the web app this relay serves. Everything else"
  echo "// in www/pkg/ sits in that build's folder, whose name is the hash of its files."
  echo "export * from './$build/starling_frontend.js';"
  echo "export { default } from './$build/starling_frontend.js';"
} > "$staging/app.js"
# Replaces $2 with $1 (a temporary copy and a rename), its compressed copies dropped before and
# written after, so the relay never serves a half-written file or a former one's compressed copy.
swap_in() {
  cp "$1" "$2.tmp"
  rm -f "$2.gz" "$2.br"
  mv "$2.tmp" "$2"
  compress "$2"
}
# The build before this one stays for tabs still running it (www/pkg/previous names it); it
# changes only when app.js does, so a rerun of the same build keeps it.
current=$(sed -n "s#^export { default } from './\(app-[0-9a-f]*\)/starling_frontend.js';\$#\1#p" "$out/app.js" 2>/dev/null || true)
if ! cmp -s "$staging/app.js" "$out/app.js"; then
  [ -n "$current" ] && [ "$current" != "$build" ] && echo "$current" > "$out/previous"
  swap_in "$staging/app.js" "$out/app.js"
fi
previous=$(cat "$out/previous" 2>/dev/null || true)
# Former builds go, except the one before this, and the layout of earlier versions (one module
# per crate at www/pkg/, split-*/ folders).
for folder in "$out"/app-*; do
  [ -d "$folder" ] || continue
  name=$(basename "$folder")
  [ "$name" = "$build" ] || [ "$name" = "$previous" ] || rm -rf "$folder"
done
rm -rf "$out"/starling_frontend* "$out"/starling_web_worker* "$out"/split-* "$out"/snippets

# The service worker's asset lists, each file with its SHA-256 (the service worker keeps a file only
# if its bytes are this build's): the app shell it precaches at install (page, style, manifest,
# icons, app.js, the build's main module, glue, loader and snippets, and the files of Contribute,
# the page "/" opens, so the installed app opens offline), and what a first visit does not
# download, which the service worker keeps when it is first fetched: the compute engine (worker
# bootstrap and the engine's files), fetched when the person presses Start, and the other pages'.
shell=(/index.html /style.css /manifest.webmanifest /pkg/app.js)
for icon in www/icons/*.png; do shell+=("/${icon#www/}"); done
later=(/worker.js)
mapfile -t contribute_files < <(files_of page_contribute)
while IFS= read -r file; do
  name=${file#"$out/$build/"}
  case "$name" in
    starling_frontend_bg.wasm) shell+=("/pkg/$build/$name") ;;
    *.wasm)
      if printf '%s\n' "${contribute_files[@]}" | grep -qx "$name"; then shell+=("/pkg/$build/$name"); else later+=("/pkg/$build/$name"); fi ;;
    *) shell+=("/pkg/$build/$name") ;;
  esac
done < <(find "$out/$build" -type f \( -name '*.js' -o -name '*.wasm' \) | LC_ALL=C sort)
version=$(for asset in "${shell[@]}" "${later[@]}"; do echo "$asset $(sha256sum "www$asset" | cut -d' ' -f1)"; done | sha256sum | cut -c1-16)
{
  echo "// Written by scripts/build-web.sh: the files www/sw.js precaches (files) and those it keeps"
  echo "// on first use (onFirstUse), each with its SHA-256 (only this build's bytes are kept), and"
  echo "// this build's version."
  echo "self.STARLING_ASSETS = {"
  echo "  version: '$version',"
  echo "  files: {"
  for asset in "${shell[@]}"; do echo "    '$asset': '$(sha256sum "www$asset" | cut -d' ' -f1)',"; done
  echo "  },"
  echo "  onFirstUse: {"
  for asset in "${later[@]}"; do echo "    '$asset': '$(sha256sum "www$asset" | cut -d' ' -f1)',"; done
  echo "  },"
  echo "};"
} > "$staging/sw-assets.js"
cmp -s "$staging/sw-assets.js" "$out/sw-assets.js" || swap_in "$staging/sw-assets.js" "$out/sw-assets.js"

# Precompressed copies of the rest (page, style, manifest, service worker, worker bootstrap).
mapfile -t rest < <(
  find www -maxdepth 2 -type f \( -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.webmanifest' \) ! -path 'www/pkg/app-*' | LC_ALL=C sort
)
compress "${rest[@]}"
say "done in $(($(date +%s) - started)) s; build $build, version $version, in www/"
