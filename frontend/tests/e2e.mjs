// End to end in a real browser: Debian's headless Chromium (WebGPU through SwiftShader) against a
// real relay serving www/, with a real native worker beside the browser's.
//
//  1. Contribute page: Start, and the browser's Web Worker connects with its own key.
//  2. Dashboard: post a Mandelbrot job (2 replicas, quorum 2, paid) from the form; the job page's
//     progress bar reaches 100 %, and the relay shows every task verified with the browser's and
//     the native worker's agreeing results (so the browser really computed verified work).
//  2b. A small training job (3 rounds of the fixed-point digits classifier, posted with the CLI):
//     the browser and the native worker both compute every gradient, sum and step and agree bit
//     for bit, the CLI finds the verified weights identical to one CPU's training, and the job
//     page draws the loss and accuracy curves as the rounds are verified (screenshot job-training).
//  3. Invalid WGSL posted from the Dashboard shows the relay's line:column error by the editor.
//  4. Screenshots of each page at 360 px and 1280 px wide (target/screenshots/), and each page in
//     each language (en, id, zh-Hans) at 360 px: no raw key, <html lang> and the nav in that
//     language, no overflow (screenshots <page>-<en|id|zh>-phone.png).
//  5. PWA: Page.getInstallabilityErrors is empty; offline, a reload shows the app shell and the
//     offline state; a page whose code is not on the device says so, and so does Start when the
//     engine's code is not.
//  The app is split at its pages: a first visit to Contribute fetches Contribute's code only.
//
// Run by scripts/test-browser-e2e.sh (which builds what it needs); env: STARLING_BIN, WWW_DIR,
// SCREENSHOTS, CHROMIUM, NPM_DIR (where playwright-core is installed).
import { createRequire } from 'node:module';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';

const { chromium } = createRequire(`${process.env.NPM_DIR}/`)('playwright-core');
const BIN = process.env.STARLING_BIN;
const WWW = process.env.WWW_DIR;
const SHOTS = process.env.SCREENSHOTS;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 180_000;

const tmp = mkdtempSync(join(tmpdir(), 'starling-e2e-'));
const children = [];
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
};
process.on('exit', cleanup);

function start(args, name) {
  const child = spawn(BIN, args, {
    env: { ...process.env, XDG_RUNTIME_DIR: tmp, RUST_LOG: process.env.RUST_LOG || 'info,tower_http=warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const log = [];
  child.stderr.on('data', (d) => log.push(d.toString()));
  child.on('exit', (code, signal) => {
    if (!stopping) console.error(`${name} exited (${code ?? signal}):\n${log.join('').slice(-4000)}`);
  });
  return { child, log, lines: createInterface({ input: child.stdout }) };
}

let stopping = false;

async function firstLine(proc, pattern, timeout = 60_000) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeout} ms:\n${proc.log.join('').slice(-4000)}`)), timeout);
  });
  const found = (async () => {
    for await (const line of proc.lines) {
      const m = line.match(pattern);
      if (m) return m;
    }
    throw new Error(`process ended before printing ${pattern}:\n${proc.log.join('').slice(-4000)}`);
  })();
  try {
    return await Promise.race([found, late]);
  } finally {
    clearTimeout(timer);
  }
}

// The Ed25519 public key (hex) of a 32-byte seed (hex), as the app's keys are derived.
function publicOf(seedHex) {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(seedHex, 'hex')]);
  const spki = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
  return spki.subarray(-32).toString('hex');
}

// The keys the app's keystore holds (IndexedDB "starling-keys"), as a script on the page sees
// them: whether the secret can be exported, and the public key.
function heldKeys(page) {
  return page.evaluate(async () => {
    const settle = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
    const db = await settle(indexedDB.open('starling-keys'));
    const out = {};
    for (const name of ['worker', 'client']) {
      const record = db.objectStoreNames.contains('keys') ? await settle(db.transaction('keys').objectStore('keys').get(name)) : undefined;
      if (!record) { out[name] = null; continue; }
      let exported;
      try {
        await crypto.subtle.exportKey('pkcs8', record.key);
        exported = 'exported';
      } catch (error) {
        exported = error.name;
      }
      const hex = [...record.publicKey].map((b) => b.toString(16).padStart(2, '0')).join('');
      out[name] = { extractable: record.key.extractable, algorithm: record.key.algorithm.name, exported, publicKey: hex };
    }
    db.close();
    return out;
  });
}

async function api(base, path) {
  const r = await fetch(base + path);
  const text = await r.text();
  assert.ok(r.ok, `GET ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

async function until(what, fn, timeout = TIMEOUT) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeout) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function shoot(page, name) {
  for (const [label, viewport] of [['phone', { width: 360, height: 740 }], ['desktop', { width: 1280, height: 800 }]]) {
    await page.setViewportSize(viewport);
    await page.waitForTimeout(150);
    // No horizontal scrolling at phone width: the layout must fit.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const wide = overflow <= 1 ? [] : await page.evaluate(() => [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
      .slice(0, 8)
      .map((e) => `${e.tagName.toLowerCase()}.${e.className}[${e.getAttribute('data-testid') || ''}]`));
    assert.ok(overflow <= 1, `${name} overflows ${label} width by ${overflow}px: ${wide.join(' ')}`);
    await page.screenshot({ path: join(SHOTS, `${name}-${label}.png`), fullPage: true });
  }
}

// The faucet funds the browser's client account and both workers' bonds (it is off by default).
const relay = start(
  ['relay', '--listen', '127.0.0.1:0', '--data-dir', join(tmp, 'relay'), '--www', WWW, '--faucet', '1000000000'],
  'relay',
);
const [, base] = await firstLine(relay, /listening on (http:\/\/\S+)/);
console.log(`relay ${base}`);

// A persistent profile: Chromium reports incognito contexts as not installable.
const context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
  executablePath: CHROMIUM,
  viewport: { width: 1280, height: 800 },
  headless: true,
  args: [
    '--enable-unsafe-webgpu',
    '--no-sandbox',
    '--disable-gpu-sandbox',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const consoleErrors = [];
context.on('page', (p) => p.on('pageerror', (e) => consoleErrors.push(String(e))));

try {
  // 1. Contribute: start the browser worker.
  // The app runs under the relay's Content-Security-Policy: its inline scripts by hash, no eval.
  const csp = (await fetch(`${base}/contribute`)).headers.get('content-security-policy') || '';
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval' 'sha256-/, `the policy is ${csp}`);
  assert.doesNotMatch(csp, /'unsafe-eval'|script-src[^;]*'unsafe-inline'/, `the policy is ${csp}`);
  const cspViolations = [];
  context.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
  const contribute = await context.newPage();
  contribute.on('pageerror', (e) => consoleErrors.push(String(e)));
  await contribute.goto(`${base}/contribute`);
  await contribute.getByTestId('page-contribute').waitFor();
  // A first visit downloads the app, not the compute engine: neither the page nor the service
  // worker's precache fetches it before Start.
  await contribute.waitForFunction(() => navigator.serviceWorker.ready.then(() => true), null, { timeout: 60_000 });
  await contribute.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
  // The engine is a chunk of the app's module (split_engine.wasm, with the shared chunks only it
  // needs) that the worker fetches when it starts.
  const engineCached = () => contribute.evaluate(async () => {
    for (const name of await caches.keys()) {
      for (const request of await (await caches.open(name)).keys()) if (request.url.endsWith('/split_engine.wasm')) return true;
    }
    return false;
  });
  const engineFetched = () => contribute.evaluate(() => performance.getEntriesByType('resource').some((e) => /split_engine|worker\.js/.test(e.name)));
  assert.equal(await engineFetched(), false, 'the page fetched the compute engine before Start');
  assert.equal(await engineCached(), false, 'the service worker precached the compute engine');
  const cachedFiles = (page) => page.evaluate(async () => {
    const found = [];
    for (const name of await caches.keys()) {
      for (const request of await (await caches.open(name)).keys()) found.push(new URL(request.url).pathname);
    }
    return found;
  });
  const shell = await cachedFiles(contribute);
  assert.ok(shell.includes('/pkg/app.js') && shell.some((p) => /^\/pkg\/app-[0-9a-f]{16}\/starling_frontend_bg\.wasm$/.test(p)),
    `the app shell is not precached: ${shell.join(' ')}`);
  // The app is split at its pages: a first visit to Contribute fetched Contribute's code and no
  // other page's; the service worker precached Contribute's chunks (the installed app opens on it
  // offline) and not the other pages'.
  const pageChunks = (page) => page.evaluate(() => performance.getEntriesByType('resource')
    .map((e) => new URL(e.name).pathname).filter((path) => /\/split_page_\w+\.wasm$/.test(path)).map((path) => path.split('/').pop()));
  assert.deepEqual(await pageChunks(contribute), ['split_page_contribute.wasm'], 'a first visit to Contribute fetched other pages');
  const cachedPageChunks = () => contribute.evaluate(async () => {
    const found = [];
    for (const name of await caches.keys()) {
      for (const request of await (await caches.open(name)).keys()) {
        const m = new URL(request.url).pathname.match(/\/(split_page_\w+\.wasm)$/);
        if (m) found.push(m[1]);
      }
    }
    return found.sort();
  });
  assert.deepEqual(await cachedPageChunks(), ['split_page_contribute.wasm'], 'the service worker precached other pages');
  // Keys an earlier version kept as plain hex in localStorage: the keystore imports them on first
  // use (the worker's at Start, the client's when the Dashboard opens) and the hex goes.
  const [workerSeed, clientSeed] = ['a1'.repeat(32), 'b2'.repeat(32)];
  await contribute.evaluate(([w, c]) => {
    localStorage.setItem('starling.worker.secret_key', w);
    localStorage.setItem('starling.client.secret_key', c);
  }, [workerSeed, clientSeed]);
  await contribute.getByTestId('start-button').click();
  const browserWorker = await until('the browser worker to connect to the relay', async () => {
    const workers = await api(base, '/v1/workers');
    return workers.find((w) => w.online && w.capabilities?.platform === 'browser') ?? null;
  });
  const browserKey = browserWorker.key;
  // It computes on WebGPU, not on the CPU fallback (which would agree with the native worker too).
  assert.equal(browserWorker.capabilities.backend, 'browser_webgpu', `the browser worker announced ${JSON.stringify(browserWorker.capabilities)}`);
  const shown = (await contribute.getByTestId('worker-key').textContent()).trim().replace(/[…\.]+/g, ' ').split(/\s+/)[0];
  assert.ok(browserKey.startsWith(shown), `Contribute shows key ${shown}, the relay sees ${browserKey}`);
  console.log(`browser worker ${browserKey}`);
  // The worker key is the migrated one, held by the browser where no script can read it: its
  // signatures (the handshake so far, every result below) verify at the relay.
  assert.equal(browserKey, publicOf(workerSeed), 'the worker key kept in localStorage was not migrated');
  await until('the page to drop its copy of the worker secret', () => contribute.evaluate(() => localStorage.getItem('starling.worker.secret_key') === null), 10_000);
  assert.equal(await contribute.getByTestId('worker-key-storage').getAttribute('data-held'), 'true');
  const workerHeld = (await heldKeys(contribute)).worker;
  assert.deepEqual(workerHeld, { extractable: false, algorithm: 'Ed25519', exported: 'InvalidAccessError', publicKey: browserKey },
    `the worker key as page scripts see it: ${JSON.stringify(workerHeld)}`);
  // Start fetched the engine, and the service worker kept it for offline use.
  await until('the engine to be kept for offline use', engineCached, 30_000);
  const backend = await contribute.getByTestId('worker-backend').textContent();
  assert.match(backend, /WebGPU/i, `Contribute shows backend ${backend}`);
  console.log(`browser backend: ${backend}`);

  // ...and a native worker beside it.
  const native = start(['worker', '--relay', base, '--key-file', join(tmp, 'native.key')], 'native worker');
  const [, nativeKey] = await firstLine(native, /starling worker ([0-9a-f]{64})/);
  await until('two workers online', async () => (await api(base, '/v1/health')).workers_online >= 2);

  // 2. Dashboard: post a paid Mandelbrot job from the form.
  const dashboard = await context.newPage();
  await dashboard.goto(`${base}/dashboard`);
  await dashboard.getByTestId('page-dashboard').waitFor();
  await dashboard.getByTestId('job-kernel').selectOption('mandelbrot');
  for (const [id, value] of [['job-width', '64'], ['job-height', '64'], ['job-tile', '32'], ['job-max-iter', '64'],
    ['job-replicas', '2'], ['job-quorum', '2'], ['job-max-replicas', '3'], ['job-price', '1000'], ['job-label', 'browser e2e']]) {
    await dashboard.getByTestId(id).fill(value);
  }
  await dashboard.getByTestId('job-submit').click();
  const jobId = await until('the relay to accept the job', async () => {
    const job = (await api(base, '/v1/jobs')).find((j) => j.label === 'browser e2e');
    return job ? String(job.id) : null;
  }, 60_000).catch(async (e) => {
    const errors = await dashboard.locator('[data-testid$="-error"], .field-error, [data-testid="job-submit-status"]').allTextContents();
    await dashboard.screenshot({ path: join(tmpdir(), 'starling-e2e-submit.png'), fullPage: true });
    throw new Error(`${e.message}; the form says: ${JSON.stringify(errors.filter((t) => t.trim()))} at ${dashboard.url()}`);
  });
  console.log(`job ${jobId} posted from the dashboard`);
  // Signed by the migrated client key, through WebCrypto: the relay (and the escrow, for the
  // deposit) verified both signatures, and no script can read the key.
  const posted = (await api(base, '/v1/jobs')).find((j) => String(j.id) === jobId);
  assert.equal(posted.client, publicOf(clientSeed), 'the job was not signed by the migrated client key');
  assert.equal(await dashboard.evaluate(() => localStorage.getItem('starling.client.secret_key')), null, 'the client secret is still in localStorage');
  await dashboard.goto(`${base}/dashboard`);
  assert.equal(await dashboard.getByTestId('client-key-storage').getAttribute('data-held'), 'true');
  const clientHeld = (await heldKeys(dashboard)).client;
  assert.deepEqual(clientHeld, { extractable: false, algorithm: 'Ed25519', exported: 'InvalidAccessError', publicKey: posted.client },
    `the client key as page scripts see it: ${JSON.stringify(clientHeld)}`);
  console.log('both keys are held by the browser: not extractable, and their signatures verify at the relay');
  await dashboard.goto(`${base}/jobs/${jobId}`);
  await dashboard.getByTestId('page-job').waitFor();
  const progress = dashboard.getByTestId('job-progress');
  await until('the job page to show 100 %', async () => {
    const [now, max] = [await progress.getAttribute('aria-valuenow'), await progress.getAttribute('aria-valuemax')];
    return max && max !== '0' && now === max;
  });
  const detail = await api(base, `/v1/jobs/${jobId}`);
  assert.equal(detail.state, 'done');
  for (const task of detail.tasks) {
    const accepted = task.replicas.filter((r) => r.state === 'accepted').map((r) => r.worker);
    assert.ok(accepted.includes(browserKey), `task ${task.index}: the browser's result was not among the verified ones: ${JSON.stringify(task.replicas)}`);
    assert.ok(accepted.includes(nativeKey), `task ${task.index}: the native worker's result was not verified`);
  }
  await dashboard.getByTestId('mandelbrot-preview').waitFor();
  console.log(`job ${jobId}: ${detail.tasks.length} tasks verified by the browser and the native worker`);
  const doneInBrowser = Number(await contribute.getByTestId('tasks-done').textContent());
  assert.ok(doneInBrowser >= detail.tasks.length, `Contribute shows ${doneInBrowser} tasks done`);

  // The worker's key lives in the browser: after a reload, Start connects with the same key.
  await contribute.reload();
  await contribute.getByTestId('page-contribute').waitFor();
  if ((await contribute.getByTestId('start-button').getAttribute('data-running')) !== 'true') {
    await contribute.getByTestId('start-button').click();
  }
  await until('the reloaded Contribute page to connect again', async () => {
    const browsers = (await api(base, '/v1/workers')).filter((w) => w.capabilities?.platform === 'browser');
    assert.deepEqual(browsers.map((w) => w.key), [browserKey], 'the reload made a new worker key');
    const shownAgain = (await contribute.getByTestId('worker-key').textContent()).trim().replace(/[…\.]+/g, ' ').split(/\s+/)[0];
    return browserKey.startsWith(shownAgain) && (await contribute.getByTestId('worker-status').getAttribute('data-state')) !== 'stopped';
  }, 60_000);
  console.log('a reload keeps the worker key');

  // 2b. Training across the browser and the native worker, followed on the job page.
  const training = promisify(execFile)(BIN, ['submit', '--relay', base, '--key-file', join(tmp, 'client.key'),
    '--label', 'browser training', 'train', '--rounds', '3', '--shards', '2', '--out', join(tmp, 'weights.bin')],
  { timeout: TIMEOUT, env: { ...process.env, XDG_RUNTIME_DIR: tmp } });
  const trainId = await until('the training job to be posted', async () => {
    const job = (await api(base, '/v1/jobs')).find((j) => j.label === 'browser training');
    return job ? String(job.id) : null;
  }, 60_000);
  await dashboard.goto(`${base}/jobs/${trainId}`);
  await dashboard.getByTestId('training').waitFor();
  await until('the job page to show three verified rounds', async () =>
    /^3 of 3 rounds verified/.test((await dashboard.getByTestId('training-status').textContent()).trim()));
  await dashboard.getByTestId('training-weights').waitFor();
  const { stdout: trained } = await training;
  assert.match(trained, /weights bit-identical to the CPU's/, `the CLI says: ${trained}`);
  const trainDetail = await api(base, `/v1/jobs/${trainId}`);
  assert.equal(trainDetail.state, 'done');
  for (const task of trainDetail.tasks) {
    const accepted = task.replicas.filter((r) => r.state === 'accepted').map((r) => r.worker);
    assert.ok(accepted.includes(browserKey) && accepted.includes(nativeKey),
      `training task ${task.index} was not computed by both the browser and the native worker: ${JSON.stringify(task.replicas)}`);
  }
  console.log(`training job ${trainId}: ${trainDetail.tasks.length} tasks, bit-identical in the browser, natively and on the CPU`);
  mkdirSync(SHOTS, { recursive: true });
  await shoot(dashboard, 'job-training');

  // 2c. The built-ins' code comes with the first task that needs it (chunks of the engine): the
  // WebGPU worker fetched, and the service worker kept, Mandelbrot's WGSL, and never the CPU
  // kernels.
  const kernelChunks = (page) => page.evaluate(async () => {
    const found = new Set();
    for (const name of await caches.keys()) {
      for (const request of await (await caches.open(name)).keys()) {
        const m = new URL(request.url).pathname.match(/\/split_(wgsl_\w+|builtins_cpu)\.wasm$/);
        if (m) found.add(m[1]);
      }
    }
    return [...found].sort();
  });
  const gpuChunks = await until('Mandelbrot\'s WGSL to be kept', async () => {
    const chunks = await kernelChunks(contribute);
    return chunks.includes('wgsl_mandelbrot') ? chunks : null;
  }, 30_000);
  assert.ok(!gpuChunks.includes('builtins_cpu'), `the WebGPU worker fetched the CPU kernels: ${gpuChunks.join(' ')}`);
  console.log(`the WebGPU worker's kernel code: ${gpuChunks.join(' ')}`);

  // 2d. A browser without WebGPU computes the built-ins on the CPU, with the CPU kernels' chunk
  // and no WGSL. The WebGPU worker stops meanwhile, so each task's two replicas go to the CPU
  // browser and the native worker.
  const setRunning = async (page, running) => {
    const now = (await page.getByTestId('start-button').getAttribute('data-running')) === 'true';
    if (now !== running) await page.getByTestId('start-button').click();
  };
  const cpuBrowser = await chromium.launchPersistentContext(join(tmp, 'profile-cpu'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--disable-gpu', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const cpuPage = await cpuBrowser.newPage();
    cpuPage.on('pageerror', (e) => consoleErrors.push(String(e)));
    await cpuPage.goto(`${base}/contribute`);
    await cpuPage.getByTestId('page-contribute').waitFor();
    await cpuPage.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
    await setRunning(cpuPage, true);
    const cpuWorker = await until('the CPU browser worker to connect', async () => (await api(base, '/v1/workers'))
      .find((w) => w.online && w.capabilities?.platform === 'browser' && w.capabilities?.backend === 'cpu') ?? null);
    await setRunning(contribute, false);
    await until('the WebGPU browser worker to go offline', async () =>
      !(await api(base, '/v1/workers')).some((w) => w.key === browserKey && w.online), 60_000);
    await promisify(execFile)(BIN, ['submit', '--relay', base, '--key-file', join(tmp, 'client.key'), 'mandelbrot',
      '--width', '32', '--height', '32', '--tile', '16', '--max-iter', '32', '--label', 'cpu browser',
      '--out', join(tmp, 'cpu.png')], { timeout: TIMEOUT, env: { ...process.env, XDG_RUNTIME_DIR: tmp } });
    const cpuJob = (await api(base, '/v1/jobs')).find((j) => j.label === 'cpu browser');
    const cpuDetail = await api(base, `/v1/jobs/${cpuJob.id}`);
    assert.equal(cpuDetail.state, 'done');
    for (const task of cpuDetail.tasks) {
      const accepted = task.replicas.filter((r) => r.state === 'accepted').map((r) => r.worker);
      assert.ok(accepted.includes(cpuWorker.key) && accepted.includes(nativeKey),
        `task ${task.index} was not verified by the CPU browser and the native worker: ${JSON.stringify(task.replicas)}`);
    }
    const cpuChunks = await until('the CPU kernels to be kept', async () => {
      const chunks = await kernelChunks(cpuPage);
      return chunks.includes('builtins_cpu') ? chunks : null;
    }, 30_000);
    assert.deepEqual(cpuChunks, ['builtins_cpu'], 'a browser without WebGPU fetched WGSL');
    console.log(`job ${cpuJob.id}: ${cpuDetail.tasks.length} tasks verified by a browser without WebGPU (CPU kernels' chunk only) and the native worker`);
  } finally {
    await cpuBrowser.close();
  }
  await setRunning(contribute, true);
  await until('the WebGPU browser worker to be back', async () =>
    (await api(base, '/v1/workers')).some((w) => w.key === browserKey && w.online), 60_000);

  // 3. Invalid WGSL shows the relay's line:column error.
  await dashboard.goto(`${base}/dashboard`);
  await dashboard.getByTestId('job-kernel').selectOption('wgsl');
  await dashboard.getByTestId('wgsl-editor').fill(
    '@group(0) @binding(1) var<storage, read_write> out: array<u32>;\n@compute @workgroup_size(64)\nfn main(@builtin(global_invocation_id) id: vec3<u32>) {\n  out[id.x] = undefined_thing;\n}\n');
  await dashboard.getByTestId('job-submit').click();
  const wgslError = dashboard.getByTestId('wgsl-error');
  const message = await until('the WGSL error', async () => {
    const text = (await wgslError.textContent()) || '';
    return /Line 4, column 15\b/.test(text) ? text : null;
  }, 30_000).catch(async (e) => {
    const errors = await dashboard.locator('[data-testid$="-error"], .field-error, [data-testid="job-submit-status"]').allTextContents();
    throw new Error(`${e.message}; the page says: ${JSON.stringify(errors.filter((t) => t.trim()))}`);
  });
  console.log(`invalid WGSL: ${message.trim()}`);

  // 4. Screenshots of each page at phone and desktop width.
  mkdirSync(SHOTS, { recursive: true });
  await shoot(contribute, 'contribute');
  await shoot(dashboard, 'dashboard');
  await dashboard.goto(`${base}/jobs/${jobId}`);
  await dashboard.getByTestId('mandelbrot-preview').waitFor();
  await shoot(dashboard, 'job');
  await dashboard.goto(`${base}/network`);
  await dashboard.getByTestId('page-network').waitFor();
  await until('the network page to list workers', async () => (await dashboard.getByTestId('network-worker-row').count()) >= 2, 30_000);
  // A fresh page shows what the relay recorded before it opened (the relay samples every 10 s).
  const seeded = Number(await dashboard.getByTestId('network-history-seeded').getAttribute('data-samples', { timeout: 30_000 }));
  assert.ok(seeded >= 1, `the network page shows ${seeded} earlier readings`);
  // /metrics gives the latest sample's figures (every 10 s), and the WebGPU worker reconnected
  // lately (2d above).
  const webgpuOnline = /^starling_workers_online\{backend="browser_webgpu"\} 1$/m;
  let metrics = '';
  await until('/metrics to count the WebGPU browser worker', async () => {
    metrics = await (await fetch(`${base}/metrics`)).text();
    return webgpuOnline.test(metrics);
  }, 30_000).catch((e) => { throw new Error(`${e.message}; /metrics says:\n${metrics}`); });
  console.log(`network page: ${seeded} readings from before it opened; /metrics lists the browser worker`);
  await shoot(dashboard, 'network');

  // 4a. Every page in English, Bahasa Indonesia and Simplified Chinese at phone width. English
  // comes from the browser's languages (en-US here); the others are picked in the header, and
  // the choice holds across the page loads that follow. Each page must speak the language
  // (<html lang>, the nav's words, a heading other than the English one), show no raw key or
  // unfilled placeholder, and fit the phone.
  const languages = [
    { tag: 'en', short: 'en', nav: ['Contribute', 'Dashboard', 'Network'] },
    { tag: 'id', short: 'id', nav: ['Kontribusi', 'Dasbor', 'Jaringan'] },
    { tag: 'zh-Hans', short: 'zh', nav: ['贡献算力', '控制台', '网络'] },
  ];
  const pages = [
    ['contribute', '/contribute', 'worker-state'],
    ['dashboard', '/dashboard', 'job-estimate'],
    ['job', `/jobs/${jobId}`, 'job-counts'],
    ['network', '/network', 'network-worker-row'],
  ];
  const rawKey = /\b(app|nav|units|contribute|worker_state|backend|errors|dashboard|form|job_state|job|network|task_state|replica_state|matmul|results|preview|throughput|training|progress|not_found)\.[a-z_]+\b/;
  const englishHeadings = {};
  const phone = await context.newPage();
  phone.on('pageerror', (e) => consoleErrors.push(String(e)));
  await phone.setViewportSize({ width: 360, height: 740 });
  const t0 = Date.now();
  for (const { tag, short, nav } of languages) {
    for (const [name, path, ready] of pages) {
      await phone.goto(`${base}${path}`);
      await phone.getByTestId(ready).first().waitFor();
      if (name === 'contribute' && tag !== 'en') {
        // Pick the language in the header: the page redraws in it at once.
        await phone.getByTestId('language-picker').selectOption(tag);
        await until(`the page to switch to ${tag}`, async () => (await phone.evaluate(() => document.documentElement.lang)) === tag, 10_000);
        await phone.getByTestId(ready).first().waitFor();
      }
      const seen = await phone.evaluate(() => ({
        lang: document.documentElement.lang,
        nav: [...document.querySelectorAll('[data-testid=nav] a')].map((a) => a.textContent.trim()),
        heading: document.querySelector('[data-testid=page-heading]')?.textContent.trim() ?? '',
        text: document.body.innerText,
        labels: [...document.querySelectorAll('[aria-label],[title],[placeholder]')]
          .flatMap((e) => ['aria-label', 'title', 'placeholder'].map((a) => e.getAttribute(a) || '')).join('\n'),
        overflow: document.documentElement.scrollWidth - window.innerWidth,
      }));
      const where = `${name} in ${tag}`;
      assert.equal(seen.lang, tag, `${where}: <html lang> is ${seen.lang}`);
      assert.deepEqual(seen.nav, nav, `${where}: the nav reads ${seen.nav}`);
      const all = `${seen.text}\n${seen.labels}`;
      assert.doesNotMatch(all, rawKey, `${where}: a raw translation key shows: ${all.match(rawKey)?.[0]}`);
      assert.doesNotMatch(all.replaceAll('{task}', ''), /\{[a-z_]+\}/, `${where}: an unfilled placeholder shows: ${all.match(/\{[a-z_]+\}/)?.[0]}`);
      if (tag === 'en') {
        englishHeadings[name] = seen.heading;
      } else {
        for (const word of languages[0].nav) assert.ok(!seen.nav.includes(word), `${where}: the nav still says ${word}`);
        assert.notEqual(seen.heading, englishHeadings[name], `${where}: the heading is still the English one`);
      }
      assert.ok(seen.overflow <= 1, `${where} overflows the phone's width by ${seen.overflow}px`);
      await phone.screenshot({ path: join(SHOTS, `${name}-${short}-phone.png`), fullPage: true });
    }
  }
  // A job being written survives a change of language (the app redraws in the new words).
  await phone.goto(`${base}/dashboard`);
  await phone.getByTestId('job-label').fill('kept across languages');
  await phone.getByTestId('language-picker').selectOption('id');
  await until('the dashboard to switch to id', async () => (await phone.evaluate(() => document.documentElement.lang)) === 'id', 10_000);
  assert.equal(await phone.getByTestId('job-label').inputValue(), 'kept across languages', 'a language change lost the job form');
  // Back to the browser's language for the steps below (they read English words).
  await phone.evaluate(() => localStorage.removeItem('starling.language'));
  await phone.close();
  console.log(`every page in ${languages.map((l) => l.tag).join(', ')} at 360 px in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  // 4b. The escrow's relay registry, and a relay picked across origins: the page talks to a
  // second relay (its API answers another origin's page), then goes back to its own.
  await until('the network page to list the registry', async () => (await dashboard.getByTestId('network-relay-row').count()) >= 1, 30_000);
  const other = start(['relay', '--listen', '127.0.0.1:0', '--data-dir', join(tmp, 'relay-2'), '--www', ''], 'second relay');
  const [, base2] = await firstLine(other, /listening on (http:\/\/\S+)/);
  // Picked from the first relay's registry: the picked relay must settle through the first relay's
  // deployment. This second relay runs its own embedded ledger, so the page warns (and the
  // browser worker would refuse it).
  const listedIn = (await api(base, '/v1/health')).escrow;
  await dashboard.evaluate(([r, d]) => {
    localStorage.setItem('starling.relay', r);
    localStorage.setItem('starling.relay.deployment', JSON.stringify({ chain_id: d.chain_id, contract: d.contract }));
  }, [base2, listedIn]);
  await dashboard.reload();
  await dashboard.getByTestId('page-network').waitFor();
  await until('the page to use the picked relay', async () => (await dashboard.getByTestId('network-current-relay').textContent()).includes(`Using ${base2},`), 30_000);
  // The picked relay's own figures: no workers there, while the page's relay has two.
  await until("the picked relay's health", async () => (await dashboard.getByTestId('network-workers-online').textContent()).trim() === '0', 30_000);
  await until("the picked relay's registry", async () => (await dashboard.getByTestId('network-relay-row').count()) >= 1, 30_000);
  await dashboard.getByTestId('network-relay-mismatch').waitFor({ timeout: 30_000 });
  await shoot(dashboard, 'network-picked-relay');
  await dashboard.getByTestId('network-relay-reset').click();
  await dashboard.getByTestId('page-network').waitFor();
  await until('the page to go back to its own relay', async () => (await dashboard.getByTestId('network-current-relay').textContent()).includes(`Using ${base},`), 30_000);
  await until("its own relay's workers again", async () => (await dashboard.getByTestId('network-worker-row').count()) >= 2, 30_000);
  console.log('registry listed; a relay picked across origins, then the page\'s own again');

  // 4b. A browser without Ed25519 in WebCrypto (simulated on another origin, so with its own
  // storage): the client key falls back to the site's storage, and the Dashboard says so.
  const fallback = await context.newPage();
  await fallback.addInitScript(() => {
    for (const [name, at] of [['generateKey', 0], ['importKey', 2]]) {
      const real = crypto.subtle[name].bind(crypto.subtle);
      crypto.subtle[name] = (...args) => ((args[at]?.name ?? args[at]) === 'Ed25519'
        ? Promise.reject(new DOMException('Ed25519 is not supported', 'NotSupportedError'))
        : real(...args));
    }
  });
  await fallback.goto(`${base.replace('127.0.0.1', 'localhost')}/dashboard`);
  const storageNote = fallback.getByTestId('client-key-storage');
  await storageNote.waitFor();
  assert.equal(await storageNote.getAttribute('data-held'), 'false');
  assert.match(await storageNote.textContent(), /cannot hold the key.*Ed25519/s);
  const kept = await fallback.evaluate(() => localStorage.getItem('starling.client.secret_key'));
  assert.match(kept ?? '', /^[0-9a-f]{64}$/, 'the fallback key is not in localStorage');
  assert.equal(await fallback.getByTestId('client-key').getAttribute('title'), publicOf(kept));
  await fallback.setViewportSize({ width: 360, height: 740 });
  await fallback.screenshot({ path: join(SHOTS, 'dashboard-key-fallback-phone.png') });
  await fallback.close();
  console.log('without Ed25519 in WebCrypto, the client key falls back to localStorage, with a note');

  // 5. Installable, and starts offline.
  const cdp = await context.newCDPSession(dashboard);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, [], `not installable: ${JSON.stringify(installabilityErrors)}`);
  await dashboard.waitForFunction(() => navigator.serviceWorker.ready.then(() => true), null, { timeout: 60_000 });
  await dashboard.reload();
  await dashboard.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
  // Offline for real: the relay is gone, so only the service worker's cache can answer, and the
  // page's network is emulated offline (navigator.onLine false, as on a phone in flight mode).
  stopping = true;
  relay.child.kill('SIGKILL');
  await new Promise((r) => relay.child.once('exit', r));
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await dashboard.reload();
  await dashboard.getByTestId('page-network').waitFor({ timeout: 30_000 });
  assert.equal(await dashboard.evaluate(() => navigator.onLine), false);
  await dashboard.getByTestId('offline-banner').waitFor({ timeout: 30_000 });
  await dashboard.setViewportSize({ width: 360, height: 740 });
  await dashboard.screenshot({ path: join(SHOTS, 'offline-phone.png') });
  console.log('installable; offline reload shows the app shell');
  // Every page shown before was kept for offline use; a page whose code the device does not have
  // (its chunk dropped from the service worker's cache and the browser's HTTP cache, which keeps a
  // build's files for good) says so offline, and the app keeps running.
  assert.deepEqual(await cachedPageChunks(), ['split_page_contribute.wasm', 'split_page_dashboard.wasm', 'split_page_job.wasm', 'split_page_network.wasm'],
    'the pages shown were not kept for offline use');
  await dashboard.evaluate(async () => {
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const request of await cache.keys()) if (request.url.endsWith('/split_page_dashboard.wasm')) await cache.delete(request);
    }
  });
  await cdp.send('Network.clearBrowserCache');
  await dashboard.getByTestId('nav-dashboard').click();
  await dashboard.getByTestId('page-not-loaded').waitFor({ timeout: 30_000 });
  assert.match(await dashboard.getByTestId('page-not-loaded').textContent(), /offline/);
  await dashboard.screenshot({ path: join(SHOTS, 'page-not-loaded-phone.png') });
  await dashboard.getByTestId('nav-network').click();
  await dashboard.getByTestId('page-network').waitFor({ timeout: 30_000 });
  console.log('offline, a page never kept says so, and the app goes on');
  // The engine's code in no cache, offline: Start says the engine could not load (the worker's
  // loader fails into a status, not a silent worker).
  await dashboard.evaluate(async () => {
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const request of await cache.keys()) if (request.url.endsWith('/split_engine.wasm')) await cache.delete(request);
    }
  });
  await cdp.send('Network.clearBrowserCache');
  await dashboard.goto(`${base}/contribute`);
  await dashboard.getByTestId('page-contribute').waitFor({ timeout: 30_000 });
  if ((await dashboard.getByTestId('start-button').getAttribute('data-running')) !== 'true') {
    await dashboard.getByTestId('start-button').click();
  }
  await until('Start to say the engine could not load', async () =>
    (await dashboard.getByTestId('worker-status').getAttribute('data-state')) === 'error', 30_000);
  assert.match(await dashboard.getByTestId('worker-status').textContent(), /could not load the engine/);
  await dashboard.screenshot({ path: join(SHOTS, 'engine-not-loaded-phone.png') });
  console.log('offline, an engine never kept says so at Start');

  assert.deepEqual(consoleErrors, [], `uncaught errors in the page: ${consoleErrors.join('\n')}`);
  assert.deepEqual(cspViolations, [], `the app broke its own Content-Security-Policy: ${cspViolations.join('\n')}`);
  console.log(`browser e2e passed; screenshots in ${SHOTS}`);
} finally {
  stopping = true;
  await context.close();
  cleanup();
}
