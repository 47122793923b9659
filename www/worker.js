// The browser worker's bootstrap, started by the page as
// `new Worker('/worker.js', { type: 'module' })`. Everything else (messages, relay, WebGPU)
// lives in the wasm engine: see web-worker/BROWSER.md. The engine is a chunk of the web app's
// module: the worker instantiates the app's module (which the page has loaded already, so it
// comes from the cache), then `engine_main()` fetches the engine's own code and starts it.
import init, { engine_main } from './pkg/app.js';

// The page may post `start` before the engine has loaded: keep those messages and replay them
// to the engine's own handler, which engine_main() installs in place of this one.
const early = [];
self.onmessage = (event) => early.push(event.data);

try {
  await init();
  await engine_main();
} catch (error) {
  self.postMessage({
    type: 'status', state: 'error', reason: `could not load the engine: ${error}`,
    backend: null, adapter: null, public_key: null, tasks_done: 0, tasks_failed: 0, kernel: null,
  });
  throw error;
}
for (const data of early) self.dispatchEvent(new MessageEvent('message', { data }));
