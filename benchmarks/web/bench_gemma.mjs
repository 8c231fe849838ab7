// Gemma 3 270M Q4_K_M in one headless Chromium (WebGPU on SwiftShader): webjit untuned, webjit
// after engine.tune(), and wllama (llama.cpp compiled to wasm, CPU) single- and multi-thread.
// Greedy decode of "The capital of France is" (BOS + special-token parsing). The greedy tokens
// are checked against tests/data/gemma/refs.json (llama.cpp, prompt 'plain') and between the
// engines BEFORE any number is reported: a broken setup fails the run instead.
//
//   node benchmarks/web/bench_gemma.mjs
//
// Prints one JSON object and writes it to benchmarks/<day>-<adapter architecture>-chromium-gemma/
// gemma-<date>.json (a new raw-run folder: give it a README, see benchmarks/README.md).
// Needs: web/pkg built (scripts/build-web.sh), `npm ci` in benchmarks/web/gemma (pinned wllama),
// playwright-core in WEBJIT_WEB_TOOLS, /usr/bin/chromium, the model in the webjit cache.
// Env: WEBJIT_BENCH_GEMMA_TOKENS (greedy tokens of each webjit run, default 4: the steps of
// refs.json 'plain' whose top-1/top-2 gap is >= 0.3; the first decode step is not timed),
// WEBJIT_BENCH_GEMMA_WLLAMA_TOKENS (tokens of each wllama run, default 16),
// WEBJIT_BENCH_GEMMA_TUNE_MS (tuning budget, default 180000; 0 skips tuning and the tuned run),
// WEBJIT_BENCH_GEMMA_ONLY (comma list of webjit,wllama; default both),
// WEBJIT_BENCH_GEMMA_WLLAMA_GPU=1 also runs wllama's WebGPU build (llama.cpp ggml-webgpu),
// =only runs just that (with WEBJIT_BENCH_GEMMA_ONLY=wllama).
//
// Cross-origin isolation: the page is served through a proxy in front of tests/web/server.mjs
// that adds COOP: same-origin, COEP: require-corp and CORP: same-origin, so the page is
// crossOriginIsolated and wllama can use its multi-thread (pthreads + SharedArrayBuffer) path.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, chromiumArgs } from '../../tests/web/chromium.mjs';
import { modelDir, startServer } from '../../tests/web/server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');
const WLLAMA_DIR = path.join(HERE, 'gemma', 'node_modules', '@wllama', 'wllama');
const MODEL = 'gemma-3-270m-q4_k_m.gguf';
const PROMPT = 'The capital of France is';
const N_TOKENS = Number(process.env.WEBJIT_BENCH_GEMMA_TOKENS || 3);
// wllama is fast enough to time more steps; the first N_TOKENS are the ones checked.
const WLLAMA_TOKENS = Math.max(N_TOKENS, Number(process.env.WEBJIT_BENCH_GEMMA_WLLAMA_TOKENS || 16));
const TUNE_MS = Number(process.env.WEBJIT_BENCH_GEMMA_TUNE_MS || 180000);
const ONLY = (process.env.WEBJIT_BENCH_GEMMA_ONLY || 'webjit,wllama').split(',');
const WLLAMA_GPU = ['1', 'only'].includes(process.env.WEBJIT_BENCH_GEMMA_WLLAMA_GPU);
const MAX_CONTEXT = 512;
const GEN_LIMIT_MS = 1500 * 1000;
const TOTAL_LIMIT_MS = Number(process.env.WEBJIT_BENCH_GEMMA_LIMIT_MIN || 45) * 60 * 1000;
// The launch of the browser tests (tests/web/chromium.mjs): WebGPU on SwiftShader here.
const ARGS = chromiumArgs();

const T_START = Date.now();
function log(msg) {
  console.error(`[bench_gemma ${((Date.now() - T_START) / 1000).toFixed(0).padStart(4)} s] ${msg}`);
}
// What was measured so far; a failure still writes it (marked failed) so a slow machine's
// partial run is not lost, but the run exits 1.
let partial = null;
function die(msg) {
  console.error(`bench_gemma: FAIL: ${msg}`);
  if (partial) {
    partial.failed = msg;
    try {
      writeResult(partial);
    } catch (e) {
      console.error(`bench_gemma: could not write the partial result: ${e.message}`);
    }
  }
  process.exit(1);
}

function writeResult(result) {
  result.loadavg_end = os.loadavg().map((x) => round(x, 2));
  result.total_s = round((Date.now() - T_START) / 1000);
  const arch = String(result.env?.adapter?.architecture || 'unknown-adapter').replace(/[^a-z0-9_-]+/gi, '_');
  const dir = path.join(HERE, '..', `${result.date.slice(0, 10)}-${arch}-chromium-gemma`);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `gemma-${result.date.replace(/[:.]/g, '-')}${result.failed ? '-failed' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${path.relative(ROOT, file)}`);
  return file;
}

/** Serves server.mjs's roots (+ the wllama esm dir and this page) with COOP/COEP/CORP added. */
async function startIsolatedServer() {
  const inner = await startServer({ wllama: path.join(WLLAMA_DIR, 'esm'), bench: path.join(HERE, 'gemma') });
  const outer = http.createServer((req, res) => {
    const up = http.request(
      { host: '127.0.0.1', port: inner.port, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode, {
          ...r.headers,
          'cross-origin-opener-policy': 'same-origin',
          'cross-origin-embedder-policy': 'require-corp',
          'cross-origin-resource-policy': 'same-origin',
        });
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise((r) => outer.listen(0, '127.0.0.1', r));
  const { port } = outer.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => {
      outer.close();
      inner.server.close();
    },
  };
}

/** page.evaluate bounded by limitMs; a timeout fails the run. */
async function step(page, what, fn, arg, limitMs) {
  log(`${what} ...`);
  const t0 = Date.now();
  let timer;
  try {
    const r = await Promise.race([
      page.evaluate(fn, arg),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`timed out after ${limitMs / 1000} s`)), limitMs);
      }),
    ]);
    log(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return r;
  } catch (e) {
    die(`${what}: ${e.message}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Prefill = time to the first token; decode rate over steps 2.. (step 1 compiles shaders). */
function timing(ms) {
  const n = ms.length;
  const out = { prefill_ms: round(ms[0]), first_decode_step_ms: n > 1 ? round(ms[1] - ms[0]) : null };
  out.decode_step_ms = ms.slice(1).map((t, i) => round(t - ms[i]));
  if (n >= 3) {
    const timed = n - 2;
    out.decode_timed_steps = timed;
    out.decode_tok_s = round(timed / ((ms[n - 1] - ms[1]) / 1000), 4);
  } else {
    out.decode_tok_s = null;
  }
  return out;
}

function round(x, d = 1) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x;
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** Steps that must match: up to (and including) the first step where llama.cpp's gap < 0.3. */
function checkedSteps(greedy, n) {
  let k = 0;
  while (k < n && k < greedy.length && greedy[k].gap >= 0.3) k++;
  return k;
}

function checkIds(name, ids, greedy, k) {
  for (let i = 0; i < k; i++) {
    if (ids[i] !== greedy[i].id) {
      die(`${name} step ${i}: token ${ids[i]}, llama.cpp (refs.json 'plain') ${greedy[i].id}; ours ${JSON.stringify(ids)}`);
    }
  }
}

/**
 * The GGUF's token pieces (tokenizer.ggml.tokens), read in node with no engine involved: the
 * OAI-compatible stream of wllama 3 carries token texts, not ids, so each streamed piece is
 * checked against the piece of llama.cpp's reference id.
 */
function ggufVocab(file) {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(48 << 20);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  fs.closeSync(fd);
  let o = 0;
  const need = (k) => {
    if (o + k > n) throw new Error(`${file}: GGUF metadata longer than ${n} bytes`);
  };
  const u32 = () => (need(4), (o += 4), buf.readUInt32LE(o - 4));
  const u64 = () => (need(8), (o += 8), Number(buf.readBigUInt64LE(o - 8)));
  const str = () => {
    const len = u64();
    need(len);
    o += len;
    return buf.toString('utf8', o - len, o);
  };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (t) => {
    if (t === 8) return void str();
    if (t === 9) {
      const et = u32();
      const len = u64();
      if (et === 8 || et === 9) for (let i = 0; i < len; i++) skip(et);
      else (need(len * SIZES[et]), (o += len * SIZES[et]));
      return;
    }
    if (!(t in SIZES)) throw new Error(`${file}: GGUF value type ${t}`);
    need(SIZES[t]);
    o += SIZES[t];
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${file}: not a GGUF file`);
  o = 8;
  u64(); // tensors
  const nKv = u64();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const t = u32();
    if (key === 'tokenizer.ggml.tokens') {
      if (t !== 9 || u32() !== 8) throw new Error(`${file}: tokenizer.ggml.tokens is not a string array`);
      const len = u64();
      const out = new Array(len);
      for (let j = 0; j < len; j++) out[j] = str();
      return out;
    }
    skip(t);
  }
  throw new Error(`${file}: no tokenizer.ggml.tokens`);
}

/** A SentencePiece piece as text ('\u2581' is the space marker). */
const pieceText = (p) => p.replace(/\u2581/g, ' ');

/** The token texts of a wllama streamed completion: one chunk per token until finish_reason. */
function wllamaPieces(run) {
  return run.chunks.filter((c) => c.choices?.[0] && c.choices[0].finish_reason == null).map((c) => c.choices[0].text);
}

function wllamaTiming(run) {
  const stamps = run.chunks.map((c, i) => (c.choices?.[0] && c.choices[0].finish_reason == null ? run.ms[i] : null)).filter((x) => x !== null);
  const t = timing(stamps);
  const last = [...run.chunks].reverse().find((c) => c.timings);
  if (last) {
    const tm = last.timings;
    t.llama_timings = {
      prompt_n: tm.prompt_n,
      prompt_ms: round(tm.prompt_ms),
      predicted_n: tm.predicted_n,
      predicted_ms: round(tm.predicted_ms),
      predicted_per_second: round(tm.predicted_per_second, 3),
    };
  }
  t.text = wllamaPieces(run).join('');
  return t;
}

/** Which build of web/pkg ran (the wasm's hash: the package is a build output). */
function pkgInfo() {
  const wasm = path.join(ROOT, 'web/pkg/wasm/webjit_web_bg.wasm');
  if (!fs.existsSync(wasm)) return null;
  const st = fs.statSync(wasm);
  return {
    version: JSON.parse(fs.readFileSync(path.join(ROOT, 'web/pkg/package.json'), 'utf8')).version,
    wasm_sha256: crypto.createHash('sha256').update(fs.readFileSync(wasm)).digest('hex'),
    wasm_mtime: st.mtime.toISOString(),
  };
}

async function main() {
  const watchdog = setTimeout(() => die(`total run time over ${TOTAL_LIMIT_MS / 60000} min`), TOTAL_LIMIT_MS);
  watchdog.unref();
  const modelPath = path.join(modelDir(), MODEL);
  if (!fs.existsSync(modelPath)) die(`${modelPath} is missing: run \`make models\``);
  if (ONLY.includes('webjit') && !fs.existsSync(path.join(ROOT, 'web/pkg/index.js'))) die('web/pkg is not built: run scripts/build-web.sh');
  if (ONLY.includes('wllama') && !fs.existsSync(path.join(WLLAMA_DIR, 'esm/wasm/wllama.wasm'))) {
    die(`${WLLAMA_DIR} is missing: run \`npm ci\` in benchmarks/web/gemma`);
  }
  if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} is missing`);
  const pw = path.join(TOOLS, 'node_modules/playwright-core/index.mjs');
  if (!fs.existsSync(pw)) die(`playwright-core is missing from ${TOOLS}`);
  const { chromium } = await import(pathToFileURL(pw).href);
  const refs = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/data/gemma/refs.json'), 'utf8'));
  const plain = refs.prompts.find((p) => p.name === 'plain');
  if (!plain || plain.text !== PROMPT) die(`refs.json has no prompt 'plain' = ${JSON.stringify(PROMPT)}`);
  const nCheck = checkedSteps(plain.greedy, N_TOKENS);
  const vocab = ggufVocab(modelPath);
  if (vocab.length !== refs.n_vocab) die(`GGUF vocab ${vocab.length} != refs.json n_vocab ${refs.n_vocab}`);
  const wllamaVersion = JSON.parse(fs.readFileSync(path.join(WLLAMA_DIR, 'package.json'), 'utf8')).version;

  const result = {
    bench: 'gemma3-270m-q4_k_m-web',
    date: new Date().toISOString(),
    command: 'node benchmarks/web/bench_gemma.mjs',
    prompt: PROMPT,
    prompt_ids_ref: plain.prompt_ids,
    tokens: N_TOKENS,
    wllama_tokens: WLLAMA_TOKENS,
    checked_steps: nCheck,
    loadavg_start: os.loadavg().map((x) => round(x, 2)),
    machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, shared: 'yes: other engineers build and benchmark on this machine at the same time' },
    git_head: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim(),
    webjit_pkg: pkgInfo(),
    chromium: CHROMIUM,
    chromium_args: ARGS,
    server: 'tests/web/server.mjs behind a proxy adding COOP same-origin, COEP require-corp, CORP same-origin (127.0.0.1)',
  };

  partial = result;
  const srv = await startIsolatedServer();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  try {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const consoleLines = [];
    page.on('console', (m) => {
      if (m.text().startsWith('bench:')) log(`  page ${m.text()}`);
      else if (consoleLines.length < 300) consoleLines.push(`[${m.type()}] ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
    await page.goto(`${srv.origin}/bench/bench_gemma.html`);
    await page.waitForFunction(() => typeof window.wllamaRun === 'function', null, { timeout: 30000 });
    result.env = await step(page, 'environment', () => window.benchEnv(), null, 30000);
    result.browser_version = browser.version();
    if (result.env.adapter.error) die(`no WebGPU adapter: ${result.env.adapter.error}`);
    log(`adapter ${JSON.stringify(result.env.adapter)}, crossOriginIsolated ${result.env.crossOriginIsolated}`);
    const url = `/models/${MODEL}`;

    // wllama runs first (minutes); webjit's tokens are then checked against refs.json and wllama's.
    const wllamaPieces0 = {};
    if (ONLY.includes('wllama')) {
      result.wllama = { version: wllamaVersion, note: 'n_gpu_layers 0 = llama.cpp CPU backend compiled to wasm (SIMD); n_ctx 512; 2 completions per config, the second is reported (the first warms up)' };
      const configs = [['single_thread', 1, 0]];
      if (result.env.crossOriginIsolated) configs.push(['multi_thread', Math.max(2, result.env.hardwareConcurrency), 0]);
      else result.wllama.multi_thread = 'skipped: the page is not crossOriginIsolated';
      if (WLLAMA_GPU) configs.push(['webgpu', 1, 999]);
      // WEBJIT_BENCH_GEMMA_WLLAMA_GPU=only: just the WebGPU config.
      if (process.env.WEBJIT_BENCH_GEMMA_WLLAMA_GPU === 'only') configs.splice(0, configs.length, ['webgpu', 1, 999]);
      for (const [name, nThreads, ngl] of configs) {
        const r = await step(
          page,
          `wllama ${name}`,
          (a) => window.wllamaRun(a),
          { url, nThreads, nGpuLayers: ngl, nCtx: MAX_CONTEXT, prompt: PROMPT, maxTokens: WLLAMA_TOKENS, runs: 2 },
          name === 'webgpu' ? 600000 : 300000,
        );
        const pieces = wllamaPieces(r.runs[1]);
        if (pieces.length !== WLLAMA_TOKENS) die(`wllama ${name}: ${pieces.length} streamed tokens, asked for ${WLLAMA_TOKENS}: ${JSON.stringify(r.runs[1].chunks).slice(0, 1500)}`);
        for (let i = 0; i < nCheck; i++) {
          const want = pieceText(vocab[plain.greedy[i].id]);
          if (pieces[i] !== want) die(`wllama ${name} step ${i}: ${JSON.stringify(pieces[i])}, llama.cpp (refs.json 'plain') id ${plain.greedy[i].id} = ${JSON.stringify(want)}; all ${JSON.stringify(pieces)}`);
        }
        const pt = wllamaTiming(r.runs[1]).llama_timings;
        if (!pt || pt.prompt_n !== plain.prompt_ids.length) die(`wllama ${name}: prompt_n ${pt && pt.prompt_n}, llama.cpp's prompt has ${plain.prompt_ids.length} tokens (BOS + text)`);
        wllamaPieces0[name] = pieces;
        const warmPieces = wllamaPieces(r.runs[0]);
        if (JSON.stringify(warmPieces) !== JSON.stringify(pieces)) die(`wllama ${name}: the two runs differ: ${JSON.stringify(warmPieces)} vs ${JSON.stringify(pieces)}`);
        const mt = name === 'multi_thread';
        if (mt && !r.multithread) die(`wllama multi_thread: isMultithread() is false`);
        result.wllama[name] = {
          fetch_ms: round(r.fetchMs),
          load_ms: round(r.loadMs),
          multithread: r.multithread,
          threads: r.threads,
          backend_log: (r.logs || []).filter((l) => /webgpu|WebGPU|backend|device|CPU|offload/i.test(l)).slice(0, 30),
          warmup_run: wllamaTiming(r.runs[0]),
          ...wllamaTiming(r.runs[1]),
          pieces,
        };
        log(`wllama ${name}: ${JSON.stringify(result.wllama[name])}`);
      }
    }
    if (ONLY.includes('webjit')) {
      const load = await step(page, 'webjit load', (a) => window.webjitLoad(a), { url, maxContext: MAX_CONTEXT }, 300000);
      if (load.importedTuning) die(`the untuned engine imported ${load.importedTuning} tuning records`);
      const ids = await step(page, 'webjit tokenize', (a) => window.webjitTokenize(a), { prompt: PROMPT }, 60000);
      if (JSON.stringify(ids) !== JSON.stringify(plain.prompt_ids)) die(`webjit prompt ids ${JSON.stringify(ids)} != llama.cpp ${JSON.stringify(plain.prompt_ids)}`);
      const gen0 = await step(page, `webjit untuned generate ${N_TOKENS}`, (a) => window.webjitGenerate(a), { prompt: PROMPT, maxTokens: N_TOKENS }, GEN_LIMIT_MS);
      const webjitIds = gen0.items.map((t) => t.id);
      if (webjitIds.length !== N_TOKENS) die(`webjit gave ${webjitIds.length} tokens, asked for ${N_TOKENS}`);
      checkIds('webjit untuned', webjitIds, plain.greedy, nCheck);
      for (const [name, pieces] of Object.entries(wllamaPieces0)) {
        for (let i = 0; i < nCheck; i++) {
          if (pieceText(vocab[webjitIds[i]]) !== pieces[i]) die(`webjit and wllama ${name} differ at step ${i}: ids ${JSON.stringify(webjitIds)} vs ${JSON.stringify(pieces)}`);
        }
      }
      result.agreement = `greedy steps 0..${nCheck - 1}: webjit ids = refs.json 'plain' ids; wllama pieces = the GGUF pieces of those ids (${Object.keys(wllamaPieces0).join(', ') || 'no wllama run'})`;
      result.webjit = {
        load_ms: round(load.loadMs),
        info: load.info,
        untuned: { ...timing(gen0.ms), ids: webjitIds, text: gen0.items.map((t) => t.text).join(''), stats: gen0.stats, top_step0: gen0.items[0].top },
      };
      log(`webjit untuned: ${JSON.stringify({ ...result.webjit.untuned, top_step0: undefined })}`);

      if (TUNE_MS > 0) {
        const tune = await step(page, `webjit tune ${TUNE_MS / 1000} s`, (a) => window.webjitTune(a), { budgetMs: TUNE_MS }, TUNE_MS + 420000);
        const rep = tune.report;
        result.webjit.tune = {
          budget_ms: TUNE_MS,
          wall_ms: round(tune.wallMs),
          spent_ms: round(rep.spent_ms),
          geomean_speedup: round(rep.geomean_speedup, 3),
          // engine TuneReport fields (tune_key, tried, rejected, skipped; index.d.ts's kernel /
          // problem / candidates do not exist in the wasm's report), times rounded.
          kernels: rep.kernels.map((k) => ({
            ...k,
            default_us: round(k.default_us, 0),
            tuned_us: round(k.tuned_us, 0),
            speedup: round(k.speedup, 3),
            spent_ms: round(k.spent_ms, 0),
          })),
        };
        log(`tune: geomean ${result.webjit.tune.geomean_speedup} over ${rep.kernels.length} kernels in ${(rep.spent_ms / 1000).toFixed(0)} s`);

        const gen1 = await step(page, `webjit tuned generate ${N_TOKENS}`, (a) => window.webjitGenerate(a), { prompt: PROMPT, maxTokens: N_TOKENS }, GEN_LIMIT_MS);
        const tunedIds = gen1.items.map((t) => t.id);
        checkIds('webjit tuned', tunedIds, plain.greedy, nCheck);
        result.webjit.tuned = { ...timing(gen1.ms), ids: tunedIds, text: gen1.items.map((t) => t.text).join(''), stats: gen1.stats };
        log(`webjit tuned: ${JSON.stringify(result.webjit.tuned)}`);
      }
      await step(page, 'webjit dispose', () => window.webjitDispose(), null, 60000);
    }

    result.console_tail = consoleLines.slice(-40);
    await ctx.close();
  } finally {
    await browser.close();
    srv.close();
  }
  writeResult(result);
  console.log(JSON.stringify(result));
}

main().catch((e) => die(e.stack || e.message));
