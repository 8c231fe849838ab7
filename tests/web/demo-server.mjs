// Serves the browser demo in the layout of `webjit serve`, for the demo test and for trying the
// page before that command exists:
//   /          demo/web/ (index.html for directories)
//   /pkg/      web/pkg/ (the built npm package, `make web`)
//   /models/   the model cache (${WEBJIT_CACHE:-~/.cache/webjit}/models)
// Range requests get 206 + Content-Range; every response carries COOP/COEP (cross-origin
// isolation, as `webjit serve` sends them) and `cache-control: no-store`.
//
// Throttling (tests only; `webjit serve` has none): GGUF files under /models/ can be sent at a set
// rate, so that a page sees a load in progress for long enough to act during it (the demo test
// sends its first chat message while the model streams in; tiny-llama.gguf would otherwise
// arrive in milliseconds; the embedder's files are not slowed). `startDemoServer` returns a
// `throttle` object whose `modelBytesPerSecond` applies to the .gguf requests that start after
// it is set (0: full speed, the default).
//
//   node tests/web/demo-server.mjs [port] [--throttle-models=BYTES_PER_S]   serves on 127.0.0.1 until killed
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

// Throttled bodies go out in slices every TICK_MS.
const TICK_MS = 50;

/** Sends bytes [start, end] of `file` at `bytesPerSecond`, in slices every TICK_MS. */
function sendThrottled(req, res, file, start, end, bytesPerSecond) {
  const slice = Math.max(1, Math.round((bytesPerSecond * TICK_MS) / 1000));
  let fd;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    res.destroy();
    return;
  }
  let at = start;
  let timer = null;
  const close = () => {
    clearTimeout(timer);
    if (fd !== undefined) fs.closeSync(fd);
    fd = undefined;
  };
  const tick = () => {
    if (fd === undefined) return;
    const n = Math.min(slice, end + 1 - at);
    const buf = Buffer.alloc(n);
    fs.readSync(fd, buf, 0, n, at);
    at += n;
    res.write(buf);
    if (at > end) {
      close();
      res.end();
    } else {
      timer = setTimeout(tick, TICK_MS);
    }
  };
  req.on('close', close);
  tick();
}

/** Starts the server on 127.0.0.1 (port 0: a free one). Resolves to {server, origin, log,
 *  throttle} (see the header for `throttle`). */
export function startDemoServer({ port = 0, models = modelDir(), modelBytesPerSecond = 0 } = {}) {
  const throttle = { modelBytesPerSecond };
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
    const rate = throttle.modelBytesPerSecond;
    if (rate > 0 && url.pathname.startsWith('/models/') && url.pathname.endsWith('.gguf')) {
      entry.throttled = rate;
      sendThrottled(req, res, file, start, end, rate);
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
      done({ server, origin: `http://127.0.0.1:${p}`, log, throttle });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const rateArg = args.find((a) => a.startsWith('--throttle-models='));
  const modelBytesPerSecond = rateArg ? Number(rateArg.split('=')[1]) : 0;
  if (!(Number.isFinite(modelBytesPerSecond) && modelBytesPerSecond >= 0)) {
    console.error(`--throttle-models wants bytes per second, got ${rateArg}`);
    process.exit(2);
  }
  const portArg = args.find((a) => !a.startsWith('--'));
  const { origin } = await startDemoServer({ port: Number(portArg || 0), modelBytesPerSecond });
  const slow = modelBytesPerSecond ? ` (model files at ${modelBytesPerSecond} bytes/s)` : '';
  console.log(`webjit demo on ${origin}/${slow}  (try ${origin}/?model=tiny-llama.gguf)`);
}
