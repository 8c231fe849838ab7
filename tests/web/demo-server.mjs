// Serves the browser demo in the layout of `webjit serve`, for the demo test and for trying the
// page before that command exists:
//   /          demo/web/ (index.html for directories)
//   /pkg/      web/pkg/ (the built npm package, `make web`)
//   /models/   the model cache (${WEBJIT_CACHE:-~/.cache/webjit}/models)
// Range requests get 206 + Content-Range; every response carries COOP/COEP (cross-origin
// isolation, as `webjit serve` sends them) and `cache-control: no-store`.
//
//   node tests/web/demo-server.mjs [port]     serves on 127.0.0.1 until killed
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDir } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ts': 'text/plain',
};

/** URL path -> file path, or null when it leaves its root. Longest mount first. */
function resolve(mounts, urlPath) {
  let rel;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  for (const [prefix, dir] of mounts) {
    if (rel === prefix.slice(0, -1) || rel.startsWith(prefix)) {
      const p = path.resolve(dir, '.' + path.posix.normalize('/' + rel.slice(prefix.length)));
      if (p !== dir && !p.startsWith(dir + path.sep)) return null;
      return p;
    }
  }
  return null;
}

function byteRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header || '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start;
  let end;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start <= end && start < size ? { start, end } : 'unsatisfiable';
}

/** Starts the server on 127.0.0.1 (port 0: a free one). Resolves to {server, origin, log}. */
export function startDemoServer({ port = 0, models = modelDir() } = {}) {
  const mounts = [
    ['/pkg/', path.join(ROOT, 'web', 'pkg')],
    ['/models/', models],
    ['/', path.join(ROOT, 'demo', 'web')],
  ];
  const log = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const entry = { path: url.pathname, range: req.headers.range || null, status: 0 };
    log.push(entry);
    const common = {
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
      'cache-control': 'no-store',
    };
    let file = resolve(mounts, url.pathname);
    let st = null;
    try {
      st = file && fs.statSync(file);
      if (st && st.isDirectory()) {
        if (!url.pathname.endsWith('/')) {
          entry.status = 301;
          res.writeHead(301, { ...common, location: url.pathname + '/' + url.search });
          res.end();
          return;
        }
        file = path.join(file, 'index.html');
        st = fs.statSync(file);
      }
    } catch {
      st = null;
    }
    if (!st || !st.isFile()) {
      entry.status = 404;
      res.writeHead(404, { ...common, 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    const range = byteRange(req.headers.range, st.size);
    if (range === 'unsatisfiable') {
      entry.status = 416;
      res.writeHead(416, { ...common, 'content-range': `bytes */${st.size}` });
      res.end();
      return;
    }
    const start = range ? range.start : 0;
    const end = range ? range.end : st.size - 1;
    const headers = {
      ...common,
      'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
      'content-length': String(Math.max(0, end - start + 1)),
      'accept-ranges': 'bytes',
    };
    if (range) headers['content-range'] = `bytes ${start}-${end}/${st.size}`;
    entry.status = range ? 206 : 200;
    res.writeHead(entry.status, headers);
    if (req.method === 'HEAD' || st.size === 0) {
      res.end();
      return;
    }
    const stream = fs.createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    req.on('close', () => stream.destroy());
    stream.pipe(res);
  });
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      const { port: p } = server.address();
      done({ server, origin: `http://127.0.0.1:${p}`, log });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { origin } = await startDemoServer({ port: Number(process.argv[2] || 0) });
  console.log(`webjit demo on ${origin}/  (try ${origin}/?model=tiny-llama.gguf)`);
}
