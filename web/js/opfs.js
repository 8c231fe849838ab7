// The OPFS model cache (`cache: 'opfs'`): downloaded files kept in the origin private file
// system, in the folder OPFS_DIR. Per URL there are two files:
//   <key>.<random>.part   the bytes, written as they stream in
//   <key>.json            the completion marker {url, file, size, etag, lastModified, storedAt}
// where <key> is a hash of the URL. The marker is written only after the whole file went
// through and the consumer accepted it (`meta.commitCache()`; the engine parsed the model), so
// an aborted, failed or rejected download never becomes a hit: its .part file is removed, and
// one left by a closed page is removed by the next commit for that URL. A hit needs the marker
// to name this URL and its data file to have the recorded size.
//
// Writing uses a sync access handle where there is one (dedicated workers: the package's
// worker), else `createWritable` (the page's thread with {worker: false}).

import { ErrorCode, WebjitError } from './errors.js';

export const OPFS_DIR = 'webjit-models-v1';

/** 64-bit FNV-1a of the URL's UTF-8 bytes, in hex (two 32-bit lanes). The marker keeps the
 *  URL, so a collision is a miss, never a wrong file. */
export function opfsKey(url) {
  const bytes = new TextEncoder().encode(String(url));
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ bytes.length;
  for (const x of bytes) {
    a = Math.imul(a ^ x, 0x01000193) >>> 0;
    b = Math.imul(b ^ x ^ 0x5bd1e995, 0x01000193) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

function isQuota(e) {
  return !!e && (e.name === 'QuotaExceededError' || e.code === ErrorCode.QUOTA_EXCEEDED);
}

/** What went wrong with the cache, for `meta.cacheError` (the load itself goes on). */
function cacheErrorOf(e) {
  return isQuota(e) ? ErrorCode.QUOTA_EXCEEDED : `OPFS: ${(e && (e.message || e.name)) || e}`;
}

/** The OPFS root: `getRoot` (tests) or navigator.storage.getDirectory(); null when absent. */
async function rootDir(getRoot) {
  if (getRoot) return getRoot();
  if (typeof navigator === 'undefined' || !navigator.storage || typeof navigator.storage.getDirectory !== 'function') {
    return null;
  }
  return navigator.storage.getDirectory();
}

async function cacheDir(getRoot, create) {
  const root = await rootDir(getRoot);
  if (!root) return null;
  try {
    return await root.getDirectoryHandle(OPFS_DIR, { create });
  } catch (e) {
    if (!create && e && e.name === 'NotFoundError') return null;
    throw e;
  }
}

/** A sequential writer over a file handle, emptied first. */
async function openWriter(fh) {
  if (typeof fh.createSyncAccessHandle === 'function') {
    let h = null;
    try {
      h = await fh.createSyncAccessHandle();
    } catch (e) {
      // Outside a dedicated worker the method exists but refuses: use createWritable below.
      if (e && e.name !== 'InvalidStateError' && e.name !== 'NotSupportedError' && e.name !== 'TypeError') throw e;
    }
    if (h) {
      h.truncate(0);
      let at = 0;
      return {
        kind: 'sync-access-handle',
        async write(chunk) {
          const n = h.write(chunk, { at });
          if (n !== chunk.byteLength) {
            throw new WebjitError(ErrorCode.QUOTA_EXCEEDED, `OPFS wrote ${n} of ${chunk.byteLength} bytes`);
          }
          at += n;
        },
        async close() {
          h.flush();
          h.close();
        },
        async abort() {
          try {
            h.close();
          } catch {
            // Already closed.
          }
        },
      };
    }
  }
  const w = await fh.createWritable({ keepExistingData: false });
  return {
    kind: 'writable',
    write: (chunk) => w.write(chunk),
    close: () => w.close(),
    abort: () => w.abort().catch(() => {}),
  };
}

async function readMarker(dir, key) {
  try {
    const f = await (await dir.getFileHandle(`${key}.json`)).getFile();
    return JSON.parse(await f.text());
  } catch {
    return null;
  }
}

async function removeQuietly(dir, name) {
  try {
    await dir.removeEntry(name);
    return true;
  } catch {
    return false;
  }
}

/** Names in `dir` (an empty list where iteration is missing). */
async function names(dir) {
  const out = [];
  if (typeof dir.keys !== 'function') return out;
  for await (const n of dir.keys()) out.push(n);
  return out;
}

/**
 * The stored copy of `url`: {file: File, marker}, or null (no entry, another URL under the
 * same key, a size that does not match the marker, no OPFS here).
 */
export async function opfsLookup(url, { getRoot } = {}) {
  let dir;
  try {
    dir = await cacheDir(getRoot, false);
  } catch {
    return null;
  }
  if (!dir) return null;
  const key = opfsKey(url);
  const marker = await readMarker(dir, key);
  if (!marker || marker.url !== String(url) || typeof marker.file !== 'string' || !Number.isFinite(marker.size)) return null;
  try {
    const file = await (await dir.getFileHandle(marker.file)).getFile();
    return file.size === marker.size ? { file, marker } : null;
  } catch {
    return null;
  }
}

/**
 * Passes `inner`'s chunks through while writing them to a fresh .part file. At the end of a
 * complete download (all of meta.totalBytes when known) it sets `meta.commitCache()` (write the
 * marker: the copy becomes a hit; sets meta.cached) and `meta.discardCache()` (remove the
 * bytes); any other end removes the bytes at once. A failing write (quota) stops the caching,
 * not the load: meta.cacheError says why (QUOTA_EXCEEDED for quota, as for the Cache API).
 */
export async function* opfsChunks(url, inner, meta, { getRoot } = {}) {
  const key = opfsKey(url);
  const name = `${key}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.part`;
  let dir = null;
  let writer = null;
  try {
    dir = await cacheDir(getRoot, true);
    if (!dir) {
      meta.cacheError = 'OPFS unavailable (navigator.storage.getDirectory is missing)';
    } else {
      writer = await openWriter(await dir.getFileHandle(name, { create: true }));
      meta.cacheWriter = writer.kind;
    }
  } catch (e) {
    meta.cacheError = cacheErrorOf(e);
    if (dir) await removeQuietly(dir, name);
    writer = null;
  }
  if (!writer) {
    yield* inner;
    return;
  }
  let written = 0;
  let complete = false;
  const drop = async () => {
    const w = writer;
    writer = null;
    await w.abort();
    await removeQuietly(dir, name);
  };
  try {
    for await (const chunk of inner) {
      if (writer) {
        try {
          await writer.write(chunk);
          written += chunk.byteLength;
        } catch (e) {
          meta.cacheError = cacheErrorOf(e);
          await drop();
        }
      }
      yield chunk;
    }
    complete = !meta.totalBytes || written === meta.totalBytes;
  } finally {
    if (writer && complete) {
      try {
        await writer.close();
        writer = null;
        const marker = {
          url: String(url),
          file: name,
          size: written,
          etag: meta.etag || '',
          lastModified: meta.lastModified || '',
        };
        meta.commitCache = () => commit(dir, key, marker, meta);
        meta.discardCache = () => removeQuietly(dir, name).then(() => undefined);
      } catch (e) {
        meta.cacheError = cacheErrorOf(e);
        writer = null;
        await removeQuietly(dir, name);
      }
    } else if (writer) {
      await drop();
    }
  }
}

/**
 * Writes the marker (the copy becomes a hit), then removes this URL's other .part files: the
 * copy it replaces, and bytes left by a page closed mid-download (a download still running in
 * another tab holds a lock on its file and keeps it; its own commit then finds its bytes
 * gone or short and does not write a marker).
 */
async function commit(dir, key, marker, meta) {
  delete meta.commitCache;
  delete meta.discardCache;
  try {
    const data = await (await dir.getFileHandle(marker.file)).getFile();
    if (data.size !== marker.size) throw new Error(`${marker.file} holds ${data.size} of ${marker.size} bytes`);
  } catch (e) {
    meta.cacheError = `OPFS: the downloaded copy changed before it was kept (${e.message || e.name})`;
    await removeQuietly(dir, marker.file);
    return;
  }
  try {
    const w = await openWriter(await dir.getFileHandle(`${key}.json`, { create: true }));
    try {
      await w.write(new TextEncoder().encode(JSON.stringify({ ...marker, storedAt: Date.now() })));
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
    meta.cached = true;
  } catch (e) {
    meta.cacheError = cacheErrorOf(e);
    await removeQuietly(dir, `${key}.json`);
    await removeQuietly(dir, marker.file);
    return;
  }
  for (const n of await names(dir)) {
    if (n.startsWith(`${key}.`) && n.endsWith('.part') && n !== marker.file) await removeQuietly(dir, n);
  }
}

/** Every complete stored copy: [{url, size, storedAt}] (markers whose bytes are all there). */
export async function opfsList({ getRoot } = {}) {
  let dir;
  try {
    dir = await cacheDir(getRoot, false);
  } catch {
    return [];
  }
  if (!dir) return [];
  const out = [];
  for (const n of await names(dir)) {
    if (!n.endsWith('.json')) continue;
    const marker = await readMarker(dir, n.slice(0, -'.json'.length));
    if (!marker || typeof marker.url !== 'string') continue;
    const hit = await opfsLookup(marker.url, { getRoot });
    if (hit) out.push({ url: marker.url, size: marker.size, storedAt: marker.storedAt ?? null });
  }
  return out;
}

/**
 * Removes the stored copy of `url` (its marker and bytes), or every copy when `url` is not
 * given. Returns how many files went. A file a running load is writing cannot be removed:
 * BUSY.
 */
export async function opfsClear({ url, getRoot } = {}) {
  const dir = await cacheDir(getRoot, false);
  if (!dir) return 0;
  const all = await names(dir);
  const key = url === undefined ? null : opfsKey(url);
  let n = 0;
  for (const name of all) {
    if (key && !name.startsWith(`${key}.`)) continue;
    try {
      await dir.removeEntry(name);
      n++;
    } catch (e) {
      if (e && e.name === 'NotFoundError') continue;
      if (e && e.name === 'NoModificationAllowedError') {
        throw new WebjitError(ErrorCode.BUSY, `OPFS file ${name} is being written by a load in progress: abort it first`);
      }
      throw e;
    }
  }
  return n;
}
