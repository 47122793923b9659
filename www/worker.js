// The browser worker's bootstrap, started by the page as
// `new Worker('/worker.js?app=app-<hash>', { type: 'module' })`. Everything else (messages, relay,
// WebGPU) lives in the wasm engine: see web-worker/BROWSER.md. The engine is a chunk of the web
// app's module: the worker instantiates the page's build of the app's module (which the page has
// loaded already, so it comes from the cache), then `engine_main()` fetches the engine's own code
// and starts it. `app` names the page's build, so the two never run different builds; without it
// (or with anything but a build's name) the worker takes the relay's current build.
const app = new URL(import.meta.url).searchParams.get('app');
const glue = app && /^app-[0-9a-f]{16}$/.test(app) ? `./pkg/${app}/starling_frontend.js` : './pkg/app.js';

// The page may post `start` before the engine has loaded: keep those messages and replay them
// to the engine's own handler, which engine_main() installs in place of this one.
const early = [];
self.onmessage = (event) => early.push(event.data);

try {
  const { default: init, engine_main } = await import(glue);
  await init();
  await engine_main();
} catch (error) {
  self.postMessage({ status: {
    state: 'error', reason: `could not load the engine: ${error}`,
    backend: null, adapter: null, public_key: null, tasks_done: 0, tasks_failed: 0, kernel: null,
  } });
  throw error;
}
for (const data of early) self.dispatchEvent(new MessageEvent('message', { data }));
