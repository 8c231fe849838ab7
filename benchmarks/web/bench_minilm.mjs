// all-MiniLM-L6-v2 sentences/s in ONE headless Chromium (WebGPU on SwiftShader here), for
//   webjit      the npm package (web/pkg), WebGPU, in its Worker
//   ort-wasm    onnxruntime-web, wasm execution provider (threads when the page is isolated)
//   ort-webgpu  onnxruntime-web, webgpu execution provider
// at each batch size, on the 8 sentences of scripts/bench_onnxruntime_minilm.py repeated to the
// batch. webjit must first agree with sentence-transformers (tests/data/minilm_refs.json,
// cosine >= 0.9999); ORT is fed webjit's token ids and must agree with webjit's embeddings
// (cosine >= 0.999 per sentence) before it is timed. Prints one JSON object and writes it to
// benchmarks/<date>-<adapter architecture>-chromium-minilm/<date>-<adapter architecture>.json
// unless --out is given (a new raw-run folder: give it a README, see benchmarks/README.md). An
// engine that fails is recorded with its error, reported on stderr, and makes the exit status
// 1; nothing is skipped quietly.
//
//   npm ci --prefix .cache/bench-tools   # after: cp benchmarks/web/package*.json .cache/bench-tools/
//   node benchmarks/web/bench_minilm.mjs [--batch 1 32] [--min-s 5] [--warmup 1]
//        [--engines webjit,ort-wasm,ort-webgpu] [--out FILE] [--no-isolation]
// --engines without webjit still loads webjit first, untimed, for the reference ids/embeddings.
// --no-isolation serves without COOP/COEP, so the page is not cross-origin isolated and ORT's
// wasm backend runs one thread.
// Env: WEBJIT_CHROMIUM (default /usr/bin/chromium), WEBJIT_WEB_TOOLS (playwright-core,
// default .cache/web-tools), WEBJIT_BENCH_TOOLS (onnxruntime-web, default .cache/bench-tools),
// WEBJIT_CACHE (models and onnx/, default ~/.cache/webjit).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, chromiumArgs } from '../../tests/web/chromium.mjs';
import { modelDir, startServer } from '../../tests/web/server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');
const BENCH_TOOLS = process.env.WEBJIT_BENCH_TOOLS || path.join(ROOT, '.cache', 'bench-tools');
const CACHE = process.env.WEBJIT_CACHE || path.join(os.homedir(), '.cache', 'webjit');
const ONNX = path.join(CACHE, 'onnx', 'all-MiniLM-L6-v2.onnx');
// The launch of the browser tests (tests/web/chromium.mjs): WebGPU on SwiftShader here.
const ARGS = chromiumArgs();
// Those of scripts/bench_onnxruntime_minilm.py, so the native and browser numbers line up.
const SENTENCES = [
  'A man is eating food.',
  'The quick brown fox jumps over the lazy dog near the river bank.',
  'WebGPU brings general purpose compute shaders to every modern browser.',
  'She placed the book on the shelf and walked out of the quiet room.',
  'Sentence embeddings map text to vectors whose distances reflect meaning.',
  'It rained all afternoon, so the football match was postponed until Sunday.',
  "Tuning kernels on the user's own device can make inference much faster.",
  'Two dogs are playing with a red ball in the garden.',
];
const ENGINES = ['webjit', 'ort-wasm', 'ort-webgpu'];
const MIN_COSINE = 0.999;
// webjit against sentence-transformers: the bound of the browser test (tests/web/cases.js).
const MIN_GOLDEN_COSINE = 0.9999;
const GOLDEN = path.join(ROOT, 'tests/data/minilm_refs.json');

function die(msg) {
  console.error(`bench_minilm: FAIL: ${msg}`);
  process.exit(1);
}

function parseArgs(argv) {
  const o = { batches: [1, 32], minS: 5, warmup: 1, engines: ENGINES, out: '', isolation: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) die(`${a} wants a number >= 0, got ${v}`);
      return n;
    };
    if (a === '--batch') {
      o.batches = [];
      while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) o.batches.push(num(argv[++i]));
      if (!o.batches.length || o.batches.some((b) => !Number.isInteger(b) || b < 1)) die('--batch wants integers >= 1');
    } else if (a === '--min-s') o.minS = num(argv[++i]);
    else if (a === '--warmup') o.warmup = num(argv[++i]);
    else if (a === '--engines') {
      o.engines = String(argv[++i] || '').split(',').filter(Boolean);
      const bad = o.engines.filter((e) => !ENGINES.includes(e));
      if (bad.length || !o.engines.length) die(`--engines: unknown ${bad.join(', ') || '(none)'}; have ${ENGINES.join(', ')}`);
    } else if (a === '--out') o.out = argv[++i] || die('--out wants a file');
    else if (a === '--no-isolation') o.isolation = false;
    else die(`unknown argument ${a}`);
  }
  // ORT needs webjit's ids and embeddings: webjit always runs first (untimed when not asked for).
  o.timeWebjit = o.engines.includes('webjit');
  if (!o.timeWebjit) o.engines = ['webjit', ...o.engines];
  return o;
}

function readJson(f) {
  return JSON.parse(fs.readFileSync(f, 'utf8'));
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(path.join(ROOT, 'web/pkg/index.js'))) die('web/pkg is not built: run `make web` (scripts/build-web.sh)');
  if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} is missing (apt-get install chromium)`);
  const pw = path.join(TOOLS, 'node_modules/playwright-core/index.mjs');
  if (!fs.existsSync(pw)) die(`playwright-core is missing from ${TOOLS}: run scripts/build-web.sh (or set WEBJIT_WEB_TOOLS)`);
  const ortDist = path.join(BENCH_TOOLS, 'node_modules/onnxruntime-web/dist');
  const ortPkg = path.join(BENCH_TOOLS, 'node_modules/onnxruntime-web/package.json');
  const wantOrt = readJson(path.join(HERE, 'package.json')).dependencies['onnxruntime-web'];
  if (!fs.existsSync(ortPkg)) {
    die(`onnxruntime-web is missing from ${BENCH_TOOLS}: cp benchmarks/web/package.json benchmarks/web/package-lock.json ${BENCH_TOOLS}/ && npm ci --prefix ${BENCH_TOOLS}`);
  }
  const ortVersion = readJson(ortPkg).version;
  if (ortVersion !== wantOrt) die(`${BENCH_TOOLS} has onnxruntime-web ${ortVersion}, benchmarks/web/package.json pins ${wantOrt}: npm ci again`);
  const models = modelDir();
  if (!fs.existsSync(path.join(models, 'all-MiniLM-L6-v2/model.safetensors'))) die(`${models}/all-MiniLM-L6-v2 is missing: run \`make models\``);
  if (!fs.existsSync(ONNX)) die(`${ONNX} is missing: run scripts/bench_onnxruntime_minilm.py once (it exports the model)`);
  if (!fs.existsSync(GOLDEN)) die(`${GOLDEN} is missing`);
  // Short sentences only: the 256-token one would take minutes on SwiftShader.
  const golden = readJson(GOLDEN).sentences.filter((s) => s.token_ids.length <= 32).map((s) => ({ text: s.text, embedding: s.embedding }));
  if (!golden.length) die(`${GOLDEN} has no sentence of <= 32 tokens`);
  const { chromium } = await import(pathToFileURL(pw).href);

  const srv = await startServer({ bench: HERE, ort: ortDist, onnx: path.dirname(ONNX) });
  if (opt.isolation) {
    // Cross-origin isolation (so SharedArrayBuffer, so ORT's wasm threads). Everything is
    // served from this one origin, so require-corp blocks nothing. These headers merge with
    // the ones server.mjs writes.
    srv.server.prependListener('request', (_req, res) => {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    });
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  const out = {
    benchmark: 'all-MiniLM-L6-v2 sentences/s in headless Chromium',
    date: new Date().toISOString(),
    command: `node benchmarks/web/bench_minilm.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    // Other work on the machine slows every engine; the load average says how busy it was.
    host: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, node: process.version, loadavg_start: os.loadavg() },
    webjit_pkg: {
      version: readJson(path.join(ROOT, 'web/pkg/package.json')).version,
      wasm_sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(ROOT, 'web/pkg/wasm/webjit_web_bg.wasm'))).digest('hex'),
    },
    chromium: { path: CHROMIUM, version: browser.version(), args: ARGS },
    settings: {
      batches: opt.batches,
      min_s: opt.minS,
      warmup: opt.warmup,
      sentences: SENTENCES,
      batch_rule: 'the 8 sentences repeated in order to the batch size',
      cross_origin_isolation_headers: opt.isolation,
      min_cosine_vs_webjit: MIN_COSINE,
      min_cosine_webjit_vs_sentence_transformers: MIN_GOLDEN_COSINE,
    },
    onnxruntime_web: { version: ortVersion, model: ONNX, model_bytes: fs.statSync(ONNX).size },
    engines: {},
  };
  let ref = null;
  try {
    for (const name of opt.engines) {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const consoleLines = [];
      page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
      srv.log.splice(0);
      const t0 = Date.now();
      let r;
      try {
        if (name !== 'webjit' && !ref) throw new Error('webjit did not produce reference ids/embeddings, so ORT cannot be checked');
        await page.goto(`${srv.origin}/bench/bench.html`);
        await page.waitForFunction(() => window.benchReady === true, null, { timeout: 30000 });
        const params = {
          sentences: SENTENCES,
          batches: name === 'webjit' && !opt.timeWebjit ? [] : opt.batches,
          minS: opt.minS,
          warmup: opt.warmup,
          minCosine: MIN_COSINE,
          minGoldenCosine: MIN_GOLDEN_COSINE,
          golden: name === 'webjit' ? golden : [],
          modelUrl: '/models/all-MiniLM-L6-v2/',
          onnxUrl: `/onnx/${path.basename(ONNX)}`,
          ortDir: '/ort',
          ref: name === 'webjit' ? null : ref,
        };
        r = await page.evaluate(([n, p]) => window.bench(n, p), [name, params]);
      } catch (e) {
        const msg = String(e && e.message ? e.message : e).replace(/^page\.evaluate: /, '');
        r = { error: msg.split('\n').slice(0, 8).join('\n'), console_tail: consoleLines.slice(-15) };
      }
      // The server sees the worker's requests too (page events do not).
      for (const l of srv.log.splice(0)) if (l.status >= 400 && l.path !== '/favicon.ico') consoleLines.push(`[error] HTTP ${l.status} ${l.path}`);
      r.wall_s = Math.round((Date.now() - t0) / 100) / 10;
      r.loadavg_after = os.loadavg();
      const warnings = consoleLines.filter((l) => /^\[(warning|error)\]/.test(l));
      if (!r.error && warnings.length) r.console_warnings = warnings.slice(0, 20);
      if (name === 'webjit' && !r.error) {
        ref = { ids: r.ids, vecs: r.vecs };
        r.token_counts = r.ids.map((x) => x.length);
        if (!opt.timeWebjit) r.note = 'reference ids and embeddings only (not timed: --engines left webjit out)';
        delete r.ids;
        delete r.vecs;
      }
      out.engines[name] = r;
      if (r.error) console.error(`bench_minilm: ${name} FAILED: ${r.error}`);
      else for (const x of r.results) console.error(`bench_minilm: ${name} batch ${x.batch}: ${x.sentences_per_s} sentences/s, ${x.ms_per_batch} ms/batch (${x.iterations} runs)`);
      await ctx.close().catch(() => {});
    }
  } finally {
    await browser.close().catch(() => {});
    srv.server.close();
  }
  const text = JSON.stringify(out, null, 2);
  console.log(text);
  // Named by the adapter, so a run on a real GPU cannot be taken for a SwiftShader one.
  const arch = String(out.engines.webjit?.page?.adapter?.architecture || 'unknown-adapter').replace(/[^a-z0-9_-]+/gi, '_');
  const day = out.date.slice(0, 10);
  const file = opt.out || path.join(HERE, '..', `${day}-${arch}-chromium-minilm`, `${day}-${arch}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text + '\n');
  console.error(`bench_minilm: wrote ${path.relative(process.cwd(), file)}`);
  const failed = Object.entries(out.engines).filter(([, r]) => r.error);
  if (failed.length) die(`${failed.map(([n]) => n).join(', ')} failed (errors recorded in ${file})`);
}

main().catch((e) => die(e.stack || e.message));
