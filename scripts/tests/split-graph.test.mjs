// Tests for scripts/split-graph.mjs on loaders shaped like wasm-split-cli's: the files of each split
// point, and a loud failure on a loader it cannot read or a chunk that belongs to nothing.
// Run by scripts/test.sh: node --test scripts/tests/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'split-graph.mjs');

const chunk = (n, points) => `/* ${points} */
const __chunk_${n} = makeLoad(() => {
    const src = fetch(new URL("./chunk_${n}.wasm", import.meta.url));
    src.catch(() => {});
    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));
}
, []);
`;
const point = (name, deps) => `export const __wasm_split_load_${name} = wrapAsyncCb(makeLoad(() => {
    const src = fetch(new URL("./split_${name}.wasm", import.meta.url));
    src.catch(() => {});
    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));
}
, [${deps.join(', ')}]));
`;

function folder(loader, files) {
  const dir = mkdtempSync(join(tmpdir(), 'split-graph-'));
  writeFileSync(join(dir, '__wasm_split.js'), loader);
  for (const file of files) writeFileSync(join(dir, file), '');
  return dir;
}

test('each split point gets its own module and the chunks it waits for', () => {
  const loader = 'import { initSync } from "./starling_frontend.js";\n' + chunk(5, 'page_a, engine') + chunk(6, 'page_a, page_b') +
    point('engine', ['__chunk_5']) + point('page_b', ['__chunk_6']) + point('page_a', ['__chunk_5', '__chunk_6']);
  const dir = folder(loader, ['chunk_5.wasm', 'chunk_6.wasm', 'split_engine.wasm', 'split_page_a.wasm', 'split_page_b.wasm']);
  try {
    const lines = execFileSync('node', [script, dir], { encoding: 'utf8' }).trim().split('\n').sort();
    assert.deepEqual(lines, [
      'engine chunk_5.wasm', 'engine split_engine.wasm',
      'page_a chunk_5.wasm', 'page_a chunk_6.wasm', 'page_a split_page_a.wasm',
      'page_b chunk_6.wasm', 'page_b split_page_b.wasm',
    ]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('a loader it cannot read, or a chunk nobody waits for, fails the build', () => {
  const cases = [
    ['no split point in the loader', chunk(5, 'page_a'), ['chunk_5.wasm']],
    ['a chunk in the folder that no split point waits for', point('page_a', []), ['split_page_a.wasm', 'chunk_9.wasm']],
    ['a dependency the loader never defines', point('page_a', ['__chunk_7']), ['split_page_a.wasm']],
    ['a chunk that waits for another chunk', chunk(5, 'page_a').replace(', []);', ', [__chunk_6]);') + chunk(6, 'page_a') +
      point('page_a', ['__chunk_5', '__chunk_6']), ['split_page_a.wasm', 'chunk_5.wasm', 'chunk_6.wasm']],
  ];
  for (const [what, loader, files] of cases) {
    const dir = folder(loader, files);
    try {
      const run = spawnSync('node', [script, dir], { encoding: 'utf8' });
      assert.equal(run.status, 1, `${what}: exit ${run.status}, output ${run.stdout}`);
      assert.match(run.stderr, /split-graph: /, what);
    } finally {
      rmSync(dir, { recursive: true });
    }
  }
});
