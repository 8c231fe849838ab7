// Fetching and instantiating the engine's wasm with errors that say what went wrong: the
// wasm-bindgen glue alone turns a 404, a dev server's 403 or an HTML fallback page into an
// untyped `Error`/`CompileError` ("expected magic word 00 61 73 6d, found 3c 21 64 6f").

import { ErrorCode, WebjitError, toWebjitError } from './errors.js';

const MAGIC = [0x00, 0x61, 0x73, 0x6d]; // "\0asm"
const HINTS = {
  403: " (the server refused it: with Vite's dev server and webjit installed from a folder — file:, npm link — add the package's folder to server.fs.allow, see webjit's README 'With Vite')",
  404: " (serve the package's wasm/ folder next to core.js, or pass Engine.create({wasmUrl}) with where it is)",
};

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');

/** Up to the first `n` bytes of a response's body, read from a clone (the original stays unread). */
async function firstBytes(res, n) {
  const reader = res.clone().body?.getReader();
  if (!reader) return new Uint8Array(0);
  const out = new Uint8Array(n);
  let got = 0;
  try {
    while (got < n) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(n - got, value.byteLength);
      out.set(value.subarray(0, take), got);
      got += take;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return out.subarray(0, got);
}

/**
 * What `initWasm({module_or_path})` should get for `url`: a checked Response (compiled while it
 * streams in when served as application/wasm), or its bytes. Throws NETWORK (with `status`
 * when there was a response) when the fetch fails or the body is not a wasm module.
 */
async function wasmSource(url) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new WebjitError(
      ErrorCode.NETWORK,
      `cannot fetch the webjit wasm ${url}: ${e?.message || e} (offline, a wrong host, or a cross-origin URL served without Access-Control-Allow-Origin)`,
      { url },
    );
  }
  if (!res.ok) {
    const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
    throw new WebjitError(ErrorCode.NETWORK, `${status} fetching the webjit wasm ${url}${HINTS[res.status] || ''}`, {
      status: res.status,
      url,
    });
  }
  const head = await firstBytes(res, 16);
  if (!MAGIC.every((b, i) => head[i] === b)) {
    const text = new TextDecoder().decode(head).trimStart();
    const type = res.headers.get('content-type') || '';
    const what = /html/i.test(type) || text.startsWith('<')
      ? 'got an HTML page — a 404 or an SPA fallback? Serve the package\'s wasm/webjit_web_bg.wasm there, or pass Engine.create({wasmUrl})'
      : `not a wasm module (Content-Type '${type}', first bytes ${hex(head.subarray(0, 8)) || 'none: empty body'}; a wasm file starts with 00 61 73 6d)`;
    throw new WebjitError(ErrorCode.NETWORK, `${url} is not the webjit wasm: ${what}`, { status: res.status, url });
  }
  // Without the wasm MIME type streaming compilation refuses the response (and the glue warns).
  const type = (res.headers.get('content-type') || '').split(';')[0].trim();
  return type === 'application/wasm' ? res : new Uint8Array(await res.arrayBuffer());
}

/** Instantiates the wasm at `url` with wasm-bindgen's `init`; every failure is a WebjitError. */
export async function loadWasm(init, url) {
  const href = String(url);
  const source = await wasmSource(href);
  try {
    return await init({ module_or_path: source });
  } catch (e) {
    if (e instanceof WebAssembly.CompileError) {
      throw new WebjitError(ErrorCode.NETWORK, `the webjit wasm ${href} does not compile (a cut or altered download?): ${e.message}`, { url: href });
    }
    if (e instanceof WebAssembly.LinkError) {
      throw new WebjitError(
        ErrorCode.WORKER,
        `the webjit wasm ${href} does not fit this package's JavaScript (files of two webjit versions?): ${e.message}`,
        { url: href },
      );
    }
    throw toWebjitError(e);
  }
}
