// Where the engine runs: the package's module Worker (WorkerBackend, the default) or the calling
// thread (LocalBackend, `{worker: false}`). Both expose `call(method, args, {onEvent, signal,
// transfer})`, `terminate()` and an `onDeviceLost` hook.
//
// This file must not import core.js statically: core.js pulls in the wasm-bindgen glue, and a
// bundler would then put a second copy of the engine into the page's main chunk even though the
// worker carries its own. LocalBackend imports it on first use instead.

import { ErrorCode, WebjitError, abortedError, deserializeError, toWebjitError } from './errors.js';

// Kept in a variable so that bundlers do not treat the fallback URL below as an asset: the
// literal `new Worker(new URL('./worker.js', import.meta.url))` is the one they must bundle.
const WORKER_FILE = 'worker.js';

const FIXES =
  'serve the webjit package from the page\'s origin, pass Engine.create({workerUrl}) with a same-origin (or CORS-enabled) URL of its worker.js, or use Engine.create({worker: false})';
const VITE_403 =
  " (the server refused it: with Vite's dev server and webjit installed from a folder — file:, npm link — add the package's folder to server.fs.allow, see webjit's README 'With Vite')";
// Unbundled (the package's own files, as from a CDN or Vite's dev server without pre-bundling)
// this module is backends.js and worker.js sits next to it; in a bundle it is somewhere else.
const UNBUNDLED = /\/backends\.js(?:[?#]|$)/.test(import.meta.url);

/**
 * A module Worker running `href` from a same-origin blob URL: browsers refuse `new Worker()` on a
 * cross-origin script (a CDN), but a module worker may import one when the server sends CORS
 * headers. The worker's own `import.meta.url` is then the real URL, so core.js finds the wasm
 * next to it.
 */
function blobWorker(href) {
  const blob = new Blob([`import ${JSON.stringify(href)};\n`], { type: 'text/javascript' });
  const blobUrl = URL.createObjectURL(blob);
  try {
    return { worker: new Worker(blobUrl, { type: 'module' }), blobUrl };
  } catch (e) {
    URL.revokeObjectURL(blobUrl);
    throw e;
  }
}

function sameOrigin(href) {
  const here = globalThis.location?.origin;
  return !here || here === 'null' || new URL(href, globalThis.location.href).origin === here;
}

/** -> {worker, url (the script's URL when known), blobUrl?}; throws WORKER when none can start. */
function startWorker(workerUrl) {
  const guess = new URL(WORKER_FILE, import.meta.url).href;
  let url = workerUrl ? String(workerUrl) : guess;
  try {
    if (workerUrl) {
      return sameOrigin(url) ? { worker: new Worker(url, { type: 'module' }), url } : { ...blobWorker(url), url };
    }
    try {
      // Written out literally so that bundlers (Vite, webpack 5) see `new Worker(new URL(...))`
      // and bundle worker.js with its imports as a worker entry.
      return { worker: new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }), url: guess, guessed: true };
    } catch (e) {
      // The package was imported from another origin (a CDN): start it from a blob instead.
      if (e?.name !== 'SecurityError') throw e;
      return { ...blobWorker(guess), url };
    }
  } catch (e) {
    url = url || guess;
    throw new WebjitError(
      ErrorCode.WORKER,
      `cannot start the webjit worker from ${url} (page origin ${globalThis.location?.origin}): ${e?.name || 'Error'}: ${e?.message || e}. To fix: ${FIXES}`,
      { url },
    );
  }
}

/** Why the worker script at `url` did not load, found by fetching it as the worker would. */
async function whyNotLoaded(url) {
  let res;
  try {
    res = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    return { why: `it could not be fetched (${e.message}; a cross-origin script needs Access-Control-Allow-Origin)` };
  }
  if (!res.ok) return { why: `HTTP ${res.status} ${res.statusText}`.trim() + (res.status === 403 ? VITE_403 : ''), status: res.status };
  const type = res.headers.get('content-type') || '';
  if (!/javascript|ecmascript/i.test(type)) {
    return { why: `it is served as '${type || 'no Content-Type'}', not JavaScript${/html/i.test(type) ? ' (got an HTML page — a 404 or an SPA fallback?)' : ''}`, status: res.status };
  }
  return { why: 'it was fetched but did not run (one of its imports next to it failed: core.js, errors.js, wasm/webjit_web.js...)', status: res.status };
}

export class WorkerBackend {
  #worker;
  #blobUrl = null;
  #pending = new Map(); // id -> {resolve, reject, onEvent}
  #next = 1;
  #dead = null;
  #dying = null; // a promise while the reason of a failed load is being found

  constructor(workerUrl) {
    const { worker, url, guessed, blobUrl } = startWorker(workerUrl);
    this.#worker = worker;
    this.#blobUrl = blobUrl ?? null;
    this.#worker.onmessage = (ev) => {
      this.#revokeBlob();
      const { id, value, error, event, deviceLost } = ev.data || {};
      if (deviceLost !== undefined) {
        this.onDeviceLost?.(deviceLost);
        return;
      }
      const p = this.#pending.get(id);
      if (!p) return;
      if (event) {
        p.onEvent?.(event);
        return;
      }
      this.#pending.delete(id);
      p.cleanup?.();
      if (error) p.reject(deserializeError(error));
      else p.resolve(value);
    };
    const fail = (why, extra) => {
      this.#dead = new WebjitError(ErrorCode.WORKER, why, extra);
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
    };
    this.#worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.#revokeBlob();
      if (this.#dead || this.#dying) return;
      if (ev.message) {
        fail(`the webjit worker failed: ${ev.message}`, { url });
        return;
      }
      // A script that did not load gives an error event without a message: find out why.
      // A bundler moved worker.js somewhere this module cannot know: no guess to look at then.
      const known = !guessed || UNBUNDLED;
      const where = known ? url : 'of the bundle';
      this.#dying = (known ? whyNotLoaded(url) : Promise.resolve({ why: 'it could not be fetched or did not run' })).then(({ why, status }) => {
        fail(`the webjit worker script ${where} did not load: ${why}. To fix: ${FIXES}`, status ? { url, status } : { url });
      });
    };
    this.#worker.onmessageerror = () => fail('a message from the webjit worker could not be read');
  }

  #revokeBlob() {
    if (this.#blobUrl) URL.revokeObjectURL(this.#blobUrl);
    this.#blobUrl = null;
  }

  call(method, args, { onEvent, signal, transfer } = {}) {
    if (this.#dying && !this.#dead) return this.#dying.then(() => Promise.reject(this.#dead));
    if (this.#dead) return Promise.reject(this.#dead);
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, onEvent };
      if (signal) {
        const onAbort = () => this.#worker.postMessage({ abort: id, reason: String(signal.reason ?? 'aborted') });
        signal.addEventListener('abort', onAbort, { once: true });
        entry.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.#pending.set(id, entry);
      try {
        this.#worker.postMessage({ id, method, args }, transfer || []);
      } catch (e) {
        this.#pending.delete(id);
        entry.cleanup?.();
        reject(new WebjitError(ErrorCode.INVALID_ARGUMENT, `cannot send ${method} arguments to the worker: ${e.message}`));
      }
    });
  }

  terminate() {
    this.#worker.terminate();
    this.#revokeBlob();
    this.#dead = new WebjitError(ErrorCode.DISPOSED, 'the engine was disposed');
    for (const p of this.#pending.values()) p.reject(this.#dead);
    this.#pending.clear();
  }
}

/**
 * The engine code (core.js and the wasm glue) for the calling thread, imported on first use
 * only (see the note on top). Rejects with WORKER when the module cannot be loaded.
 */
export function loadCore() {
  return import('./core.js').catch((e) => {
    throw new WebjitError(ErrorCode.WORKER, `cannot load the webjit engine module core.js (next to ${import.meta.url}): ${e?.message || e}`);
  });
}

export class LocalBackend {
  #core = null;
  #ready;
  constructor() {
    this.#ready = loadCore().then(({ Core }) => {
      this.#core = new Core();
      this.#core.onLost = (reason) => this.onDeviceLost?.(reason);
    });
    this.#ready.catch(() => {});
  }
  async call(method, args, { onEvent, signal } = {}) {
    if (signal?.aborted) throw abortedError(signal);
    await this.#ready;
    try {
      const { value } = await this.#core.call(method, args, { emit: onEvent, signal });
      return value;
    } catch (e) {
      throw toWebjitError(e);
    }
  }
  terminate() {}
}
