// Which wasm files each split point of the web app needs, read from the loader wasm-split-cli
// writes (`__wasm_split.js`): for every split point (a page, or the engine), its own module and the
// shared chunks its loader waits for. Prints one `<split point> <file>` line per pair.
//
// Used by scripts/build-web.sh for the service worker's precache list and the size budget. Fails
// (exit 1) when the loader's shape is not the one this reads, or a chunk in the folder belongs to no
// split point: a silent misreading would precache too little and under-count the budget.
//
// usage: node scripts/split-graph.mjs <folder holding __wasm_split.js and the chunks>
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const folder = process.argv[2];
const loader = readFileSync(join(folder, '__wasm_split.js'), 'utf8');
const fail = (why) => {
  console.error(`split-graph: ${why} (${join(folder, '__wasm_split.js')})`);
  process.exit(1);
};

// const __chunk_N = makeLoad(() => { const src = fetch(new URL("./chunk_N.wasm", ...
// }, []);   (a chunk waits for nothing: this reads no chunk-to-chunk dependencies, so it refuses any)
const chunkFile = new Map();
for (const m of loader.matchAll(/const (__chunk_\d+) = makeLoad\(\(\) => \{\s*const src = fetch\(new URL\("\.\/([\w.]+\.wasm)"[^]*?\n\}\s*,\s*\[([^\]]*)\]\);/g)) {
  if (m[3].trim() !== '') fail(`${m[1]} waits for other chunks (${m[3].trim()}), which this does not read`);
  chunkFile.set(m[1], m[2]);
}
// export const __wasm_split_load_<point> = wrapAsyncCb(makeLoad(() => { ... fetch(new URL("./split_<point>.wasm" ...
// }, [__chunk_a, __chunk_b]));
const points = new Map();
for (const m of loader.matchAll(
  /export const __wasm_split_load_(\w+) = wrapAsyncCb\(makeLoad\(\(\) => \{\s*const src = fetch\(new URL\("\.\/([\w.]+\.wasm)"[^]*?\n\}\s*,\s*\[([^\]]*)\]\)\);/g,
)) {
  const deps = m[3].split(',').map((s) => s.trim()).filter(Boolean);
  const files = [m[2]];
  for (const dep of deps) {
    if (!chunkFile.has(dep)) fail(`split point ${m[1]} waits for ${dep}, which the loader does not define`);
    files.push(chunkFile.get(dep));
  }
  points.set(m[1], files);
}
if (points.size === 0) fail('no split point found: the loader is not in the shape this reads');

const used = new Set([...points.values()].flat());
for (const file of readdirSync(folder)) {
  if (/^(chunk_\d+|split_\w+)\.wasm$/.test(file) && !used.has(file)) fail(`${file} belongs to no split point`);
}
for (const [point, files] of points) {
  for (const file of files) console.log(`${point} ${file}`);
}
