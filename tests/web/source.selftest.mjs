// Checks web/js/source.js (streaming, Range resume, abort, bounded whole-file reads, the OPFS
// cache over an in-memory stand-in) in node
// against server.mjs: no browser and no engine needed. Run by run.mjs before the browser.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSource, readAll } from '../../web/js/source.js';
import { opfsClear } from '../../web/js/opfs.js';
import { FakeOpfs } from './fake-opfs.mjs';
import { startServer } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FILE = path.join(HERE, '../data/minilm_refs.json'); // any committed file of a few 100 KiB
const want = fs.readFileSync(FILE);
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function drain(chunks) {
  const parts = [];
  for await (const c of chunks) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

const { server, origin, log } = await startServer();
const url = (q = '') => `${origin}/data/minilm_refs.json${q}`;
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check('plain stream: every byte, totalBytes from Content-Length', async () => {
  const { chunks, meta } = await openSource(url());
  const got = await drain(chunks);
  assert.equal(sha(got), sha(want));
  assert.equal(meta.totalBytes, want.length);
});

check('dropped connection is resumed with one Range request from the right byte', async () => {
  const q = `?drop=40000&u=${Math.random()}`;
  const { chunks, meta } = await openSource(url(q));
  const got = await drain(chunks);
  assert.equal(sha(got), sha(want));
  assert.equal(meta.resumes, 1);
  const reqs = log.filter((r) => r.path.endsWith(q));
  assert.deepEqual(reqs.map((r) => r.range), [null, 'bytes=40000-']);
});

check('abort mid-stream rejects with ABORTED', async () => {
  const ac = new AbortController();
  const { chunks } = await openSource(url('?rate=200000'), { signal: ac.signal });
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const c of chunks) {
        n += c.byteLength;
        if (n > 30000) ac.abort('test');
      }
    })(),
    (e) => e.code === 'ABORTED',
  );
  assert.ok(n < want.length, 'the stream went on after the abort');
});

check('HTTP 404 is a NETWORK error with the status', async () => {
  const { chunks } = await openSource(`${origin}/data/nope.gguf`);
  await assert.rejects(drain(chunks), (e) => e.code === 'NETWORK' && e.status === 404);
});

check('Blob, ArrayBuffer and ReadableStream sources give the same bytes', async () => {
  for (const src of [new Blob([want]), want.buffer.slice(want.byteOffset, want.byteOffset + want.length),
    new Blob([want]).stream()]) {
    const got = await drain((await openSource(src)).chunks);
    assert.equal(sha(got), sha(want));
  }
});

check('readAll: whole file; a declared size over maxBytes fails before reading', async () => {
  assert.equal(sha(Buffer.from(await readAll(url()))), sha(want));
  await assert.rejects(readAll(url(), { maxBytes: 1000 }), (e) => e.code === 'INVALID_ARGUMENT');
  // No declared size (a stream): fails once the body passes the limit.
  await assert.rejects(readAll(new Blob([want]).stream(), { maxBytes: 1000 }), (e) => e.code === 'INVALID_ARGUMENT');
});

check('bad source types and cache modes are INVALID_ARGUMENT', async () => {
  await assert.rejects(openSource(42), (e) => e.code === 'INVALID_ARGUMENT');
  await assert.rejects(openSource(url(), { cache: 'opfs-typo' }), (e) => e.code === 'INVALID_ARGUMENT');
});

check('opfs: a complete download becomes a hit only when committed; the hit needs no request', async () => {
  const fs = new FakeOpfs();
  const u = url(`?opfs=${Math.random()}`);
  const a = await openSource(u, { cache: 'opfs', getRoot: fs.getRoot });
  assert.equal(sha(await drain(a.chunks)), sha(want));
  assert.equal(typeof a.meta.commitCache, 'function');
  const before = await openSource(u, { cache: 'opfs', getRoot: fs.getRoot });
  assert.equal(before.meta.fromCache, false, 'a hit before the commit');
  await drain(before.chunks); // a second download, not committed: its bytes stay a .part file
  await a.meta.commitCache();
  assert.equal(a.meta.cached, true);
  const n = log.filter((r) => r.path.endsWith(u.slice(u.indexOf('?')))).length;
  const b = await openSource(u, { cache: 'opfs', getRoot: fs.getRoot });
  assert.equal(b.meta.fromCache, true);
  assert.equal(b.meta.totalBytes, want.length);
  assert.equal(sha(await drain(b.chunks)), sha(want));
  assert.equal(log.filter((r) => r.path.endsWith(u.slice(u.indexOf('?')))).length, n, 'the hit made a request');
  // readAll commits by itself; a new copy replaces the old one (one marker, one data file).
  assert.equal(sha(Buffer.from(await readAll(`${u}&again=1`, { cache: 'opfs', getRoot: fs.getRoot }))), sha(want));
  const files = Object.keys(fs.listing());
  assert.equal(files.filter((f) => f.endsWith('.json')).length, 2, JSON.stringify(fs.listing()));
  assert.equal(await opfsClear({ url: u, getRoot: fs.getRoot }) >= 2, true);
  assert.equal((await openSource(u, { cache: 'opfs', getRoot: fs.getRoot })).meta.fromCache, false);
  await opfsClear({ getRoot: fs.getRoot });
  assert.deepEqual(fs.listing(), {});
});

check('opfs: an aborted, discarded or over-quota download leaves no hit and no bytes', async () => {
  const fs = new FakeOpfs();
  const ac = new AbortController();
  const u = url(`?rate=200000&opfs=${Math.random()}`);
  const a = await openSource(u, { cache: 'opfs', getRoot: fs.getRoot, signal: ac.signal });
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const c of a.chunks) {
        n += c.byteLength;
        if (n > 30000) ac.abort('test');
      }
    })(),
    (e) => e.code === 'ABORTED',
  );
  assert.deepEqual(fs.listing(), {}, 'bytes of the aborted download stayed');
  assert.equal(a.meta.commitCache, undefined);
  // Complete, but the consumer rejects the file.
  const u2 = url(`?opfs=${Math.random()}`);
  const b = await openSource(u2, { cache: 'opfs', getRoot: fs.getRoot });
  await drain(b.chunks);
  await b.meta.discardCache();
  assert.deepEqual(fs.listing(), {});
  assert.equal((await openSource(u2, { cache: 'opfs', getRoot: fs.getRoot })).meta.fromCache, false);
  // Quota: the load gets every byte, the cache reports QUOTA_EXCEEDED and keeps nothing.
  const small = new FakeOpfs({ quota: 50000 });
  const c = await openSource(u2, { cache: 'opfs', getRoot: small.getRoot });
  assert.equal(sha(await drain(c.chunks)), sha(want));
  assert.equal(c.meta.cacheError, 'QUOTA_EXCEEDED');
  assert.equal(c.meta.commitCache, undefined);
  assert.deepEqual(small.listing(), {});
});

let failed = 0;
for (const [name, fn] of checks) {
  try {
    await fn();
    console.log(`ok   source: ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL source: ${name}: ${e.stack || e.message}`);
  }
}
server.close();
process.exit(failed ? 1 : 0);
