// Starling's service worker: the app opens offline, and the relay's API says clearly when it
// cannot be reached.
//
// - The app shell (index.html, style.css, the manifest, icons, /pkg/app.js and the build's main
//   wasm module, its glue and chunk loader, and the chunks of Contribute, the page "/" opens) is
//   precached at install, each file checked against the build's SHA-256, and served cache-first,
//   so the app starts without a network. Any page address (deep links like /jobs/12) gets the
//   cached index.html.
// - What a first visit does not need is not downloaded until it is used: the compute engine
//   (worker.js and the engine's chunks) when the person presses Start, a built-in kernel's code
//   (a group's WGSL, or the CPU kernels) with the first task that needs it, and the other pages'
//   chunks when the page is first shown. Its first fetch is kept in the same cache if its SHA-256
//   is this build's (a fetch that raced a deploy is used once, not kept), so it works offline from
//   then on, and a new build drops it with the rest.
// - /v1 API calls go to the network first. Offline, a GET gets its last good answer where one was
//   kept; otherwise every API call gets a JSON error the app shows in words:
//   {"code": "offline", "message": "<a sentence>"} when the device is offline, or
//   {"code": "unreachable", "message": "<the network error>"} when it is online but the relay does
//   not answer; both with status 503.
// - The asset list and the build's version come from /pkg/sw-assets.js, written by
//   scripts/build-web.sh. A new build changes that file, which makes the browser install this
//   worker again into a new cache and delete the old one; the page then offers a reload.

importScripts('/pkg/sw-assets.js');

const { version: VERSION, files: FILES, onFirstUse: ON_FIRST_USE = {} } = self.STARLING_ASSETS;
const SHELL_CACHE = `starling-shell-${VERSION}`;
const API_CACHE = 'starling-api';
const SHELL = '/index.html';

// API answers worth keeping for offline viewing: small JSON, not blobs or outputs.
const KEEP_API = [
  /^\/v1\/health$/,
  /^\/v1\/jobs$/,
  /^\/v1\/jobs\/\d+$/,
  /^\/v1\/jobs\/\d+\/results$/,
  /^\/v1\/workers$/,
  /^\/v1\/workers\/[0-9a-f]{64}$/,
  /^\/v1\/clients\/[0-9a-f]{64}$/,
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(SHELL_CACHE);
      // Each file is kept only if its bytes are this build's: one that changed under a deploy fails
      // the install, which the browser tries again later, so the cache never mixes two builds.
      // `no-cache` revalidates with the relay: a file the page has just downloaded answers 304 and
      // is not downloaded again.
      await Promise.all(
        Object.entries(FILES).map(async ([path, sha256]) => {
          const response = await fetch(new Request(path, { cache: 'no-cache' }));
          if (!response.ok) throw new Error(`${path}: ${response.status}`);
          const bytes = await response.arrayBuffer();
          if ((await sha256Hex(bytes)) !== sha256) throw new Error(`${path} is not this build's`);
          await cache.put(path, decoded(response, bytes));
        }),
      );
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith('starling-shell-') && name !== SHELL_CACHE) {
          await caches.delete(name);
        }
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/v1/')) {
    event.respondWith(api(request, url));
    return;
  }
  if (request.method !== 'GET') return;
  if (request.mode === 'navigate') {
    event.respondWith(shell(request));
    return;
  }
  event.respondWith(asset(event, request));
});

function offlineAnswer(error) {
  const offline = self.navigator && self.navigator.onLine === false;
  const body = offline
    ? { code: 'offline', message: 'You are offline: the relay cannot be reached until the network is back.' }
    : { code: 'unreachable', message: error && error.message ? error.message : 'no answer' };
  return new Response(JSON.stringify(body), {
    status: 503,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

async function api(request, url) {
  const keep = request.method === 'GET' && KEEP_API.some((pattern) => pattern.test(url.pathname));
  try {
    const response = await fetch(request);
    if (keep && response.ok) {
      const copy = response.clone();
      caches.open(API_CACHE).then((cache) => cache.put(request, copy)).catch(() => {});
    }
    return response;
  } catch (error) {
    if (keep && self.navigator.onLine === false) {
      const cached = await caches.match(request, { cacheName: API_CACHE });
      if (cached) return cached;
    }
    return offlineAnswer(error);
  }
}

async function shell(request) {
  const cached = await caches.match(SHELL, { cacheName: SHELL_CACHE });
  if (cached) return cached;
  try {
    return await fetch(request);
  } catch (error) {
    return new Response(
      '<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">' +
        '<title>Starling: offline</title><p style="font-family:system-ui;padding:1rem">' +
        'You are offline and Starling is not saved on this device yet. Connect once and it opens offline afterwards.</p>',
      { status: 503, headers: { 'content-type': 'text/html; charset=utf-8' } },
    );
  }
}

async function asset(event, request) {
  const cached = await caches.match(request, { cacheName: SHELL_CACHE, ignoreSearch: true });
  if (cached) return cached;
  try {
    const response = await fetch(request);
    const path = new URL(request.url).pathname;
    if (response.ok && Object.hasOwn(ON_FIRST_USE, path)) {
      event.waitUntil(keepOnFirstUse(path, response.clone(), ON_FIRST_USE[path]));
    }
    return response;
  } catch (error) {
    return new Response('', { status: 503, statusText: 'Offline' });
  }
}

// Keeps an engine file or page chunk fetched on first use, under its path, in this build's shell
// cache, if its bytes are this build's.
async function keepOnFirstUse(path, response, sha256) {
  try {
    const bytes = await response.arrayBuffer();
    if ((await sha256Hex(bytes)) !== sha256) return;
    const cache = await caches.open(SHELL_CACHE);
    await cache.put(path, decoded(response, bytes));
  } catch (error) {
    // Not kept: the next use fetches it again.
  }
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// `response`'s body, read as `bytes`, as a response to keep: the body is decoded already, so its
// old encoding and length no longer describe it.
function decoded(response, bytes) {
  const headers = new Headers(response.headers);
  headers.delete('content-encoding');
  headers.delete('content-length');
  return new Response(bytes, { status: 200, headers });
}
