// Byte sources for model loading: URLs (fetch + ReadableStream reader, resumed with Range
// requests after a dropped connection, optionally stored in the Cache API or OPFS), Blobs/Files,
// ReadableStreams and in-memory buffers. Every source is consumed as a sequence of chunks so
// that a model file is never held whole in memory.

import { ErrorCode, WebjitError, abortedError } from './errors.js';
import { opfsChunks, opfsClear, opfsLookup } from './opfs.js';

export const CACHE_NAME = 'webjit-models-v1';
const SLICE = 1 << 20; // in-memory buffers are fed in 1 MiB pieces
const MAX_RESUMES = 5;

function checkAbort(signal) {
  if (signal && signal.aborted) throw abortedError(signal);
}

/** "bytes 100-199/1234" -> {start: 100, total: 1234} (total NaN when '*'). */
function parseContentRange(v) {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec((v || '').trim());
  if (!m) return null;
  return { start: Number(m[1]), total: m[3] === '*' ? NaN : Number(m[3]) };
}

function httpError(url, res) {
  return new WebjitError(ErrorCode.NETWORK, `GET ${url}: HTTP ${res.status} ${res.statusText}`, {
    status: res.status,
    url: String(url),
  });
}

async function* readStream(stream, signal) {
  const reader = stream.getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      checkAbort(signal);
      const { done, value } = await reader.read();
      if (done) return;
      checkAbort(signal);
      if (value && value.byteLength) yield value;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock?.();
  }
}

/**
 * Chunks of a URL. `meta.totalBytes` is set as soon as the first response arrives (0 when the
 * server does not say). A connection that drops mid-body is resumed with `Range: bytes=N-`
 * (the server must answer 206 from exactly N; else the load fails with NETWORK).
 */
async function* fetchChunks(url, { signal, meta, fetchImpl = fetch }) {
  let offset = 0;
  let resumes = 0;
  for (;;) {
    checkAbort(signal);
    const headers = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    let res;
    try {
      res = await fetchImpl(url, { signal, headers, cache: 'no-store' });
    } catch (e) {
      if (signal?.aborted) throw abortedError(signal);
      if (offset > 0 && resumes < MAX_RESUMES) {
        resumes++;
        continue;
      }
      throw new WebjitError(ErrorCode.NETWORK, `GET ${url}: ${e.message || e}`, { url: String(url) });
    }
    if (offset === 0) {
      if (!res.ok) throw httpError(url, res);
      const len = Number(res.headers.get('content-length'));
      // Content-Length of a compressed body is not the file size: only trust it uncompressed.
      const encoded = (res.headers.get('content-encoding') || 'identity') !== 'identity';
      if (!meta.totalBytes && Number.isFinite(len) && len > 0 && !encoded) meta.totalBytes = len;
      // Recorded with an OPFS copy (what the server said the file was).
      meta.etag = res.headers.get('etag') || '';
      meta.lastModified = res.headers.get('last-modified') || '';
    } else {
      const cr = parseContentRange(res.headers.get('content-range'));
      if (res.status !== 206 || !cr || cr.start !== offset) {
        throw new WebjitError(
          ErrorCode.NETWORK,
          `GET ${url}: the connection dropped at byte ${offset} and the server does not ` +
            `resume from there (HTTP ${res.status}, Content-Range ${res.headers.get('content-range')})`,
          { status: res.status, url: String(url) },
        );
      }
      if (!meta.totalBytes && Number.isFinite(cr.total)) meta.totalBytes = cr.total;
    }
    if (!res.body) throw new WebjitError(ErrorCode.NETWORK, `GET ${url}: empty body`);
    try {
      for await (const chunk of readStream(res.body, signal)) {
        offset += chunk.byteLength;
        yield chunk;
      }
    } catch (e) {
      if (signal?.aborted) throw abortedError(signal);
      if (e instanceof WebjitError) throw e;
      // A network error mid-body: resume after the bytes already delivered.
      if (resumes < MAX_RESUMES) {
        resumes++;
        meta.resumes = resumes;
        continue;
      }
      throw new WebjitError(ErrorCode.NETWORK, `GET ${url}: ${e.message || e} at byte ${offset}`, {
        url: String(url),
      });
    }
    if (meta.totalBytes && offset < meta.totalBytes) {
      // The body ended early without an error (a proxy closed it): resume as well.
      if (resumes < MAX_RESUMES) {
        resumes++;
        meta.resumes = resumes;
        continue;
      }
      throw new WebjitError(ErrorCode.NETWORK, `GET ${url}: body ended at ${offset} of ${meta.totalBytes} bytes`);
    }
    return;
  }
}

/**
 * Wraps URL chunks so that, once the whole file went through, it is stored in the Cache API.
 * The cache writer gets the same chunks through its own stream (it holds only what it has
 * not written yet); an incomplete or aborted download never reaches the cache.
 */
async function* cachingChunks(url, inner, meta) {
  let cache = null;
  try {
    cache = await caches.open(CACHE_NAME);
  } catch {
    meta.cacheError = 'Cache API unavailable';
  }
  if (!cache) {
    yield* inner;
    return;
  }
  let ctrl;
  const body = new ReadableStream({ start: (c) => (ctrl = c) });
  let put = null;
  let ok = false;
  try {
    for await (const chunk of inner) {
      if (!put) {
        const headers = meta.totalBytes ? { 'content-length': String(meta.totalBytes) } : {};
        put = cache.put(url, new Response(body, { headers })).catch((e) => {
          meta.cacheError = e && e.name === 'QuotaExceededError' ? ErrorCode.QUOTA_EXCEEDED : String(e);
        });
      }
      ctrl.enqueue(chunk.slice());
      yield chunk;
    }
    ok = true;
  } finally {
    if (ok) ctrl.close();
    else ctrl.error(new Error('download incomplete'));
    if (put) await put;
    if (!ok && cache) await cache.delete(url).catch(() => {});
  }
  meta.cached = ok && !meta.cacheError;
}

export const CACHE_KINDS = ['none', 'cache-api', 'opfs'];

/**
 * Resolves a source into {chunks: AsyncIterable<Uint8Array>, meta: {totalBytes, name, ...}}.
 * cache (URLs only): 'none', 'cache-api' or 'opfs'. With 'opfs' a complete download sets
 * meta.commitCache / meta.discardCache: the consumer calls one of them once it has checked
 * the bytes (see opfs.js); an OPFS hit sets meta.dropCachedCopy, for a consumer that finds the
 * stored bytes bad. `getRoot` replaces navigator.storage.getDirectory (tests).
 */
export async function openSource(src, { signal, cache = 'none', fetchImpl, getRoot } = {}) {
  const meta = { totalBytes: 0, name: '', fromCache: false, cached: false, resumes: 0 };
  if (cache !== undefined && !CACHE_KINDS.includes(cache)) {
    throw new WebjitError(ErrorCode.INVALID_ARGUMENT, `cache must be 'none', 'cache-api' or 'opfs', got ${cache}`);
  }
  if (typeof src === 'string' || src instanceof URL) {
    const url = String(src);
    meta.name = url;
    if (cache === 'opfs') {
      const hit = await opfsLookup(url, { getRoot });
      if (hit) {
        checkAbort(signal);
        meta.fromCache = true;
        meta.totalBytes = hit.marker.size;
        meta.etag = hit.marker.etag || '';
        meta.lastModified = hit.marker.lastModified || '';
        // For the consumer, when the engine refuses the stored bytes: the next load downloads.
        meta.dropCachedCopy = () => opfsClear({ url, getRoot }).then(() => undefined, () => undefined);
        return { chunks: readStream(hit.file.stream(), signal), meta };
      }
      return { chunks: opfsChunks(url, fetchChunks(url, { signal, meta, fetchImpl }), meta, { getRoot }), meta };
    }
    if (cache === 'cache-api' && typeof caches !== 'undefined') {
      const hit = await caches
        .open(CACHE_NAME)
        .then((c) => c.match(url))
        .catch(() => undefined);
      if (hit && hit.body) {
        meta.fromCache = true;
        meta.totalBytes = Number(hit.headers.get('content-length')) || 0;
        return { chunks: readStream(hit.body, signal), meta };
      }
      return { chunks: cachingChunks(url, fetchChunks(url, { signal, meta, fetchImpl }), meta), meta };
    }
    return { chunks: fetchChunks(url, { signal, meta, fetchImpl }), meta };
  }
  if (typeof Blob !== 'undefined' && src instanceof Blob) {
    meta.totalBytes = src.size;
    meta.name = src.name || '';
    return { chunks: readStream(src.stream(), signal), meta };
  }
  if (typeof Response !== 'undefined' && src instanceof Response) {
    if (!src.ok) throw httpError(src.url, src);
    meta.totalBytes = Number(src.headers.get('content-length')) || 0;
    meta.name = src.url;
    return { chunks: readStream(src.body, signal), meta };
  }
  if (typeof ReadableStream !== 'undefined' && src instanceof ReadableStream) {
    return { chunks: readStream(src, signal), meta };
  }
  if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) {
    const bytes =
      src instanceof ArrayBuffer ? new Uint8Array(src) : new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    meta.totalBytes = bytes.byteLength;
    return {
      chunks: (async function* () {
        for (let o = 0; o < bytes.byteLength; o += SLICE) {
          checkAbort(signal);
          yield bytes.subarray(o, Math.min(o + SLICE, bytes.byteLength));
        }
      })(),
      meta,
    };
  }
  throw new WebjitError(
    ErrorCode.INVALID_ARGUMENT,
    'model source must be a URL string, URL, Blob/File, Response, ReadableStream, ArrayBuffer or typed array',
  );
}

/**
 * A whole (small) file in memory, for sources the engine takes at once (embedder files).
 * `maxBytes` bounds the allocation before it happens: a Content-Length or Blob size above it
 * fails with INVALID_ARGUMENT, and so does a body that grows past it.
 */
export async function readAll(src, { signal, cache, maxBytes = 2 ** 31 - 1, getRoot } = {}) {
  const { chunks, meta } = await openSource(src, { signal, cache, getRoot });
  try {
    const bytes = await readChunks(chunks, meta, maxBytes);
    await meta.commitCache?.();
    return bytes;
  } catch (e) {
    await meta.discardCache?.();
    throw e;
  } finally {
    delete meta.dropCachedCopy;
  }
}

async function readChunks(chunks, meta, maxBytes) {
  const tooBig = (n) =>
    new WebjitError(ErrorCode.INVALID_ARGUMENT, `${meta.name || 'source'}: ${n} bytes is over the ${maxBytes}-byte limit`);
  // Sized once from the declared length when there is one (known before the first chunk),
  // doubled when a source without a length keeps going.
  let buf = null;
  let n = 0;
  for await (const c of chunks) {
    if (!buf) {
      if (meta.totalBytes > maxBytes) throw tooBig(meta.totalBytes);
      buf = new Uint8Array(meta.totalBytes || Math.min(maxBytes, Math.max(c.byteLength, 1 << 20)));
    }
    if (n + c.byteLength > maxBytes) throw tooBig(n + c.byteLength);
    if (n + c.byteLength > buf.byteLength) {
      const grown = new Uint8Array(Math.min(maxBytes, Math.max(n + c.byteLength, buf.byteLength * 2)));
      grown.set(buf.subarray(0, n));
      buf = grown;
    }
    buf.set(c, n);
    n += c.byteLength;
  }
  if (!buf) return new Uint8Array(0);
  return n === buf.byteLength ? buf : buf.slice(0, n);
}

/** Typed-array buffers in a result (moved, not copied, to the main thread). */
export function transferables(v, out = [], depth = 0) {
  if (!v || typeof v !== 'object' || depth > 3) return out;
  if (ArrayBuffer.isView(v)) {
    if (!out.includes(v.buffer) && v.buffer instanceof ArrayBuffer) out.push(v.buffer);
    return out;
  }
  for (const x of Object.values(v)) transferables(x, out, depth + 1);
  return out;
}
