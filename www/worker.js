// The browser worker's bootstrap, started by the page as
// `new Worker('/worker.js', { type: 'module' })`. Everything else (messages, relay, WebGPU)
// lives in the wasm engine: see web-worker/BROWSER.md.
import init, { worker_main } from './pkg/starling_web_worker.js';

// The page may post `start` before the engine has loaded: keep those messages and replay them
// to the engine's own handler, which worker_main() installs in place of this one.
const early = [];
self.onmessage = (event) => early.push(event.data);

try {
  await init();
} catch (error) {
  self.postMessage({
    type: 'status', state: 'error', reason: `could not load the engine: ${error}`,
    backend: null, adapter: null, public_key: null, tasks_done: 0, tasks_failed: 0, kernel: null,
  });
  throw error;
}
worker_main();
for (const data of early) self.dispatchEvent(new MessageEvent('message', { data }));
