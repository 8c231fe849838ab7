// A tiny static server for the browser tests, on 127.0.0.1 and a random port. Roots:
//   /pkg/    web/pkg (the built npm package)      /t/       tests/web (pages, ref.js, cases)
//   /data/   tests/data (golden references)        /models/  the model cache
//   /cdn/    web/pkg again, with the CORS headers a CDN sends (Access-Control-Allow-Origin: *,
//            Cross-Origin-Resource-Policy: cross-origin): the cross-origin case imports the
//            package from http://localhost:PORT/cdn/ into a page of http://127.0.0.1:PORT
// Range requests are served (206 + Content-Range). Query switches make failures on purpose:
//   ?truncate=N  serve only the first N bytes (as if the file were that long)
//   ?corrupt=N   XOR 0xff into 64 bytes at offset N
//   ?drop=N      the first request for this URL (without Range) is cut after N bytes
//   ?rate=B      send at most B bytes per second (so a test can abort mid-download)
// GET /__log returns the requests so far ([{path, range, status, host}]); /__log?clear=1 empties it.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

export function modelDir() {
  const cache = process.env.WEBJIT_CACHE || path.join(os.homedir(), '.cache', 'webjit');
  return path.join(cache, 'models');
}

const ROOTS = {
  pkg: path.join(ROOT, 'web', 'pkg'),
  cdn: path.join(ROOT, 'web', 'pkg'),
  t: HERE,
  data: path.join(ROOT, 'tests', 'data'),
  models: modelDir(),
};

const TYPES = {
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.ts': 'text/plain',
};

function resolve(roots, urlPath) {
  const parts = decodeURIComponent(urlPath).split('/').filter(Boolean);
  const root = roots[parts.shift()];
  if (!root) return null;
  const p = path.resolve(root, ...parts);
  // No escaping a root with '..'.
  if (p !== root && !p.startsWith(root + path.sep)) return null;
  return p;
}

function parseRange(h, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(h || '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start, end;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start <= end && start < size ? { start, end } : 'unsatisfiable';
}

/** extraRoots: {name: dir} served under /name/ (e.g. a built Vite app). */
export function startServer(extraRoots = {}) {
  const roots = { ...ROOTS, ...extraRoots };
  const log = [];
  const dropped = new Set();
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      // A client that goes away mid-body (an aborted download) is normal here.
      if (e && e.code !== 'ERR_STREAM_PREMATURE_CLOSE') console.error(`server: ${req.url}: ${e.message}`);
      res.destroy();
    });
  });
  async function handle(req, res) {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/__log') {
      if (url.searchParams.get('clear')) log.length = 0;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(log));
      return;
    }
    const entry = { path: url.pathname + url.search, range: req.headers.range || null, status: 0, host: req.headers.host };
    const cors = url.pathname.startsWith('/cdn/')
      ? { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' }
      : {};
    log.push(entry);
    const file = resolve(roots, url.pathname);
    let st;
    try {
      st = file && fs.statSync(file);
    } catch {
      st = null;
    }
    if (!st || !st.isFile()) {
      entry.status = 404;
      res.writeHead(404, { 'content-type': 'text/plain', ...cors });
      res.end('not found');
      return;
    }
    const q = url.searchParams;
    const size = q.has('truncate') ? Math.min(st.size, Number(q.get('truncate'))) : st.size;
    const range = parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') {
      entry.status = 416;
      res.writeHead(416, { 'content-range': `bytes */${size}` });
      res.end();
      return;
    }
    const start = range ? range.start : 0;
    const end = range ? range.end : size - 1;
    const headers = {
      'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
      'content-length': String(end - start + 1),
      'accept-ranges': 'bytes',
      'cache-control': 'no-store',
      ...cors,
    };
    if (range) headers['content-range'] = `bytes ${start}-${end}/${size}`;
    entry.status = range ? 206 : 200;
    res.writeHead(entry.status, headers);
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    const dropAt = q.has('drop') && !req.headers.range && !dropped.has(entry.path) ? Number(q.get('drop')) : -1;
    if (dropAt >= 0) dropped.add(entry.path);
    const rate = q.has('rate') ? Number(q.get('rate')) : 0;
    const corruptAt = q.has('corrupt') ? Number(q.get('corrupt')) : -1;
    const stream = fs.createReadStream(file, { start, end, highWaterMark: rate > 0 ? 64 << 10 : 256 << 10 });
    let pos = start;
    let sent = 0;
    const t0 = Date.now();
    req.on('close', () => stream.destroy());
    for await (let chunk of stream) {
      if (corruptAt >= 0 && pos < corruptAt + 64 && pos + chunk.length > corruptAt) {
        chunk = Buffer.from(chunk);
        for (let i = Math.max(corruptAt, pos); i < Math.min(corruptAt + 64, pos + chunk.length); i++) chunk[i - pos] ^= 0xff;
      }
      if (dropAt >= 0 && sent + chunk.length > dropAt) {
        const head = chunk.subarray(0, dropAt - sent);
        await new Promise((r) => res.write(head, r));
        entry.dropped = dropAt;
        // Cut the TCP connection mid-body: the client sees a network error, not an end.
        res.socket?.destroy();
        return;
      }
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      if (res.destroyed) return;
      pos += chunk.length;
      sent += chunk.length;
      if (rate > 0) {
        const ahead = (sent / rate) * 1000 - (Date.now() - t0);
        if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
      }
    }
    res.end();
  }
  return new Promise((resolveP) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolveP({ server, port, origin: `http://127.0.0.1:${port}`, log });
    });
  });
}

// `node tests/web/server.mjs` serves until killed (for poking at pages by hand).
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { origin } = await startServer();
  console.log(`serving on ${origin} (/pkg/, /t/, /data/, /models/)`);
}
