// Gemma 3 270M Q4_K_M text generation: webjit in headless Chromium (WebGPU) beside the same
// commit's native CLI on the same GPU and wllama (llama.cpp in wasm, CPU) in the same page, all
// in one run. Prefill ppP (P = --pp, default 128,512) and decode tgN (N = --tg, default 128)
// from the token ids `webjit bench model` uses (i * 2654435761 >> 7 mod vocab), greedy.
//
//   1. native, before the browser starts (the GPU is not shared): for each P
//        webjit bench model --model M --prompt-tokens P --gen-tokens N --reps R --json [--profile]
//        webjit generate --model M --prompt-ids IDS --max-tokens N+1 --max-context P+N+1 --json
//      (bench model: the speeds; generate: the greedy tokens every other run is checked against;
//      generate once more from the text prompt's ids, for wllama's tokens)
//   2. webjit in the page: per P a load with maxContext P+N+1 (as bench model allocates), then
//      1 + R generations of N+1 tokens from the ids (the first warms up; the best of R is kept,
//      as bench model keeps its best rep). prefill = arrival of token 1; decode = tokens 2..N+1.
//   3. wllama (pinned in gemma/package.json): loaded once, multi-thread when the page is
//      crossOriginIsolated (hardwareConcurrency threads), N+1 tokens, EOS ignored, 1 + R runs
//      per P; with --wllama-gpu also its WebGPU build. wllama 3 takes a prompt only as text, so
//      it gets the English prompt of exactly P tokens of gemma/prompts.json (make_prompts.py)
//      instead of the ids (speed does not depend on which tokens; its prompt_n must be P).
// Tokens: every webjit run must give the native ids (greedy); a mismatch is recorded in
// webjit[P].token_check (the step and the native top-2 gap there) and logged, not fatal. wllama's tokens are compared with a native generate
// from the text prompt's ids (webjit's tokenizer must give prompts.json's ids) and reported
// (same model, other arithmetic: agreement up to a near-tie is expected, not required).
// Prints one JSON object (figures, ratios browser/native and browser/wllama, tokens) and writes
// it to --out.
//   node benchmarks/web/bench_gemma_gpu.mjs [--pp 128,512] [--tg 128] [--reps 3] [--out FILE]
//        [--cli target/release/webjit] [--no-native | --native-from EARLIER.json] [--no-webjit]
//        [--no-wllama] [--wllama-gpu | --wllama-gpu-only] [--profile]
// Env: WEBJIT_CHROMIUM, WEBJIT_WEB_TOOLS, WEBJIT_CHROMIUM_EXTRA_ARGS (tests/web/chromium.mjs),
// WEBJIT_CACHE (the model), WEBJIT_PKG_DIR (the npm package served as /pkg/, default web/pkg),
// WEBJIT_WLLAMA_DIR (@wllama/wllama, default gemma/node_modules/@wllama/wllama).
// On the H100 machine: benchmarks/web/device/README.md (gemma section).
import { execFileSync, spawnSync } from 'node:child_process';
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
const PKG = process.env.WEBJIT_PKG_DIR || path.join(ROOT, 'web', 'pkg');
const WLLAMA_DIR = process.env.WEBJIT_WLLAMA_DIR || path.join(HERE, 'gemma', 'node_modules', '@wllama', 'wllama');
const MODEL = 'gemma-3-270m-q4_k_m.gguf';
const argv = process.argv.slice(2);
const opt = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const flag = (k) => argv.includes(k);
const PP = opt('--pp', '128,512').split(',').map(Number);
const TG = Number(opt('--tg', '128'));
const REPS = Number(opt('--reps', '3'));
const CLI = path.resolve(opt('--cli', process.env.WEBJIT_CLI || path.join(ROOT, 'target/release/webjit')));
const OUT = opt('--out', '');
const ARGS = chromiumArgs();
const T0 = Date.now();
const log = (m) => console.error(`[bench_gemma_gpu ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${m}`);
const round = (x, d = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);

const result = { bench: 'gemma3-270m-q4_k_m-browser-vs-native', date: new Date().toISOString(), command: `node benchmarks/web/bench_gemma_gpu.mjs ${argv.join(' ')}`.trim() };
function write() {
  result.total_s = round((Date.now() - T0) / 1000);
  const text = JSON.stringify(result, null, 1);
  if (OUT) fs.writeFileSync(OUT, text + '\n');
  return text;
}
function die(msg) {
  console.error(`bench_gemma_gpu: FAIL: ${msg}`);
  result.failed = msg;
  write();
  process.exit(1);
}

/** bench model's prompt: (i * 2654435761 mod 2^32) >> 7, mod vocab. */
const promptIds = (n, vocab) => Array.from({ length: n }, (_, i) => Number((BigInt(i) * 2654435761n) & 0xffffffffn) >>> 7).map((x) => x % vocab);

function runCli(args, what) {
  log(`native: ${what}`);
  const r = spawnSync(CLI, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 300000 });
  if (r.status !== 0) die(`native ${what}: exit ${r.status}: ${(r.stderr || '').slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** Serves server.mjs's roots (+ wllama, this page, the package) with COOP/COEP/CORP added, so
 *  the page is crossOriginIsolated and wllama can run its threads. */
async function startIsolatedServer() {
  const inner = await startServer({ pkg: PKG, wllama: path.join(WLLAMA_DIR, 'esm'), bench: path.join(HERE, 'gemma') });
  const outer = http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: inner.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, { ...r.headers, 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp', 'cross-origin-resource-policy': 'same-origin' });
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise((r) => outer.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${outer.address().port}`, close: () => (outer.close(), inner.server.close()) };
}

async function step(page, what, fn, arg, limitMs) {
  log(`${what} ...`);
  const t = Date.now();
  let timer;
  try {
    return await Promise.race([page.evaluate(fn, arg), new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`timed out after ${limitMs / 1000} s`)), limitMs)))]);
  } finally {
    clearTimeout(timer);
    log(`${what}: ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }
}

/** Arrival times of N+1 tokens -> prefill (token 1) and decode (tokens 2..N+1). */
function speeds(ms, p) {
  const n = ms.length - 1;
  return { prefill_ms: round(ms[0], 3), prefill_tok_s: round((p / ms[0]) * 1000), decode_ms_per_token: round((ms[n] - ms[0]) / n, 4), decode_tok_s: round((n / (ms[n] - ms[0])) * 1000) };
}
/** The best of the timed runs (after the first), each figure on its own, as bench model does. */
function best(runs, p) {
  const s = runs.slice(1).map((r) => speeds(r.ms, p));
  return { prefill_tok_s: Math.max(...s.map((x) => x.prefill_tok_s)), decode_tok_s: Math.max(...s.map((x) => x.decode_tok_s)), runs: s, warmup: speeds(runs[0].ms, p) };
}
/** Steps where a and b agree before the first difference. */
const agree = (a, b) => {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
};
const gapAt = (top, k) => (top && top[k] && top[k].length > 1 ? round(top[k][0][1] - top[k][1][1], 4) : null);

async function main() {
  const modelPath = path.join(modelDir(), MODEL);
  if (!fs.existsSync(modelPath)) die(`${modelPath} is missing`);
  if (!fs.existsSync(path.join(PKG, 'index.js'))) die(`${PKG} has no built package (scripts/build-web.sh)`);
  const wantWllama = !flag('--no-wllama');
  if (wantWllama && !fs.existsSync(path.join(WLLAMA_DIR, 'esm/wasm/wllama.wasm'))) die(`${WLLAMA_DIR}: no wllama (npm ci in benchmarks/web/gemma, or --no-wllama)`);
  const { chromium } = await import(pathToFileURL(path.join(TOOLS, 'node_modules/playwright-core/index.mjs')).href);
  const wasm = path.join(PKG, 'wasm/webjit_web_bg.wasm');
  let head = null;
  try {
    head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {}
  Object.assign(result, {
    pp: PP,
    tg: TG,
    reps: REPS,
    git_head_tree: head,
    revision: process.env.WEBJIT_REVISION || head,
    webjit_pkg: { dir: PKG, version: JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8')).version, wasm_sha256: crypto.createHash('sha256').update(fs.readFileSync(wasm)).digest('hex') },
    cli: { path: CLI, sha256: fs.existsSync(CLI) ? crypto.createHash('sha256').update(fs.readFileSync(CLI)).digest('hex') : null },
    model: { file: MODEL, bytes: fs.statSync(modelPath).size },
    machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, loadavg_start: os.loadavg().map((x) => round(x, 2)) },
    chromium: CHROMIUM,
    chromium_args: ARGS,
  });
  // Gemma 3's vocabulary (bench model's ids are taken modulo it).
  const vocab = 262144;
  const texts = JSON.parse(fs.readFileSync(path.join(HERE, 'gemma', 'prompts.json'), 'utf8')).prompts;
  for (const p of PP) if (!texts[p] || texts[p].ids.length !== p) die(`gemma/prompts.json has no ${p}-token prompt (make_prompts.py ${PP.join(' ')})`);
  result.text_prompts = Object.fromEntries(PP.map((p) => [p, texts[p].text]));

  // ---- 1. native ----
  let native = {};
  if (opt('--native-from', '')) {
    // The native half of an earlier run of this script (same machine, same call sequence).
    const prev = JSON.parse(fs.readFileSync(opt('--native-from'), 'utf8'));
    native = prev.native || die(`${opt('--native-from')} has no native results`);
    result.native = native;
    result.native_from = { file: opt('--native-from'), date: prev.date };
  } else if (!flag('--no-native')) {
    for (const p of PP) {
      const b = runCli(['bench', 'model', '--model', modelPath, '--prompt-tokens', String(p), '--gen-tokens', String(TG), '--reps', String(REPS), '--json', ...(flag('--profile') ? ['--profile'] : [])], `bench model pp${p} tg${TG}`);
      const ids = promptIds(p, vocab);
      const g = runCli(['generate', '--model', modelPath, '--prompt-ids', ids.join(','), '--max-tokens', String(TG + 1), '--max-context', String(p + TG + 1), '--json'], `generate pp${p}`);
      if (g.tokens.length !== TG + 1) die(`native generate pp${p}: ${g.tokens.length} tokens (${g.stop_reason}), want ${TG + 1}`);
      const gt = runCli(['generate', '--model', modelPath, '--prompt-ids', texts[p].ids.join(','), '--max-tokens', String(TG + 1), '--max-context', String(p + TG + 1), '--json'], `generate text pp${p}`);
      const keep = (x) => ({ tokens: x.tokens, text: x.text, stop_reason: x.stop_reason, decode_tok_s: x.decode_tok_s, dispatches_per_token: x.dispatches_per_token, top2: x.top_logits.map((t) => t.slice(0, 2)) });
      native[p] = { bench: b, generate: keep(g), generate_text: keep(gt) };
      log(`native pp${p}: load ${round(b.load_s, 3)} s, prefill ${round(b.prefill_tok_s)} tok/s, decode ${round(b.decode_tok_s)} tok/s, ${b.dispatches_per_token} dispatches/token`);
    }
    result.native = native;
    write();
  }

  // ---- 2./3. the browser ----
  const srv = await startIsolatedServer();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  const consoleLines = [];
  try {
    const page = await (await browser.newContext()).newPage();
    page.on('console', (m) => consoleLines.length < 300 && consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
    await page.goto(`${srv.origin}/bench/bench_gemma.html`);
    await page.waitForFunction(() => typeof window.webjitRunIds === 'function', null, { timeout: 30000 });
    result.browser_version = browser.version();
    result.env = await step(page, 'environment', () => window.benchEnv(), null, 60000);
    result.adapter_features = await step(page, 'adapter features', () => window.benchFeatures(), null, 60000);
    if (result.env.adapter.error) die(`no WebGPU adapter: ${result.env.adapter.error}`);
    log(`adapter ${JSON.stringify(result.env.adapter)}; crossOriginIsolated ${result.env.crossOriginIsolated}`);
    const url = `/models/${MODEL}`;

    const web = {};
    for (const p of flag('--no-webjit') ? [] : PP) {
      const ids = promptIds(p, vocab);
      const load = await step(page, `webjit load (maxContext ${p + TG + 1})`, (a) => window.webjitLoadIds(a), { url, maxContext: p + TG + 1 }, 300000);
      if (load.importedTuning) die(`the engine imported ${load.importedTuning} tuning records`);
      const tids = await step(page, `webjit tokenize the ${p}-token text`, (a) => window.webjitTokenizeText(a), { text: texts[p].text }, 60000);
      if (agree(tids, texts[p].ids) !== p || tids.length !== p) die(`webjit tokenizes the ${p}-token text to ${tids.length} ids, first difference at ${agree(tids, texts[p].ids)} (llama.cpp: prompts.json)`);
      const runs = await step(page, `webjit pp${p} tg${TG} x ${REPS + 1}`, (a) => window.webjitRunIds(a), { ids, maxTokens: TG + 1, runs: REPS + 1 }, 600000);
      // A token that differs from native is recorded (token_check) rather than failing the run:
      // the timings stay worth having, and the check names the step and native's top-2 gap.
      const check = [];
      for (const [i, r] of runs.entries()) {
        if (r.ids.length !== TG + 1) die(`webjit pp${p} run ${i}: ${r.ids.length} tokens (${r.stats?.reason}), want ${TG + 1}`);
        if (r.stats?.promptTokens !== p) die(`webjit pp${p}: the engine saw ${r.stats?.promptTokens} prompt tokens`);
        const n = native[p]?.generate.tokens || runs[0].ids;
        const k = agree(r.ids, n);
        if (k < n.length) {
          check.push(`run ${i}: token ${k} is ${r.ids[k]}, ${native[p] ? `native ${n[k]} (native top-2 gap there ${gapAt(native[p].generate.top2, k)})` : `run 0 ${n[k]}`}`);
          log(`TOKENS DIFFER: webjit pp${p} ${check[check.length - 1]}`);
        }
      }
      const tokenCheck = check.length ? { identical: false, against: native[p] ? 'native' : 'run 0', differences: check } : { identical: true, against: native[p] ? 'native generate, all runs, all steps' : 'run 0 only (no native run)' };
      web[p] = { load_ms: round(load.loadMs), engine_create_ms: round(load.createMs), load: load.load, ...best(runs, p), engine_stats: runs.map((r) => r.stats), ids: runs[0].ids, token_check: tokenCheck };
      if (!result.webjit_info) result.webjit_info = { engine: load.info, model: load.model };
      log(`webjit pp${p}: load ${web[p].load_ms} ms, prefill ${web[p].prefill_tok_s} tok/s, decode ${web[p].decode_tok_s} tok/s`);
      write();
    }
    result.webjit = web;
    if (!flag('--no-webjit')) await step(page, 'webjit dispose', () => window.webjitDispose(), null, 60000);

    if (wantWllama) {
      const threads = result.env.crossOriginIsolated ? result.env.hardwareConcurrency : 1;
      const cfgs = flag('--wllama-gpu-only') ? [] : [['cpu', threads, 0]];
      if (flag('--wllama-gpu') || flag('--wllama-gpu-only')) cfgs.push(['webgpu', threads, 999]);
      result.wllama = { version: JSON.parse(fs.readFileSync(path.join(WLLAMA_DIR, 'package.json'), 'utf8')).version };
      for (const [name, threads, ngl] of cfgs) {
        let r;
        try {
          r = await step(page, `wllama ${name} (${threads} threads)`, (a) => window.wllamaPromptsRun(a), { url, nThreads: threads, nGpuLayers: ngl, nCtx: Math.max(...PP) + TG + 1, nBatch: Math.max(...PP), prompts: PP.map((p) => texts[p].text), maxTokens: TG + 1, runs: REPS + 1 }, 480000);
        } catch (e) {
          result.wllama[name] = { error: String(e.message || e).slice(0, 2000) };
          if (name === 'cpu') die(`wllama cpu: ${e.message}`);
          continue;
        }
        const w = { threads: r.threads, multithread: r.multithread, fetch_ms: round(r.fetchMs), load_ms: round(r.loadMs), logs: r.logs.filter((l) => /thread|backend|WebGPU|webgpu|CPU|offload|error/i.test(l)).slice(0, 40) };
        for (const [j, p] of PP.entries()) {
          const runs = r.results[j].map((x) => {
            const tok = x.chunks.filter((c) => c.choices?.[0] && c.choices[0].finish_reason == null);
            const stamps = x.chunks.map((c, i) => (c.choices?.[0] && c.choices[0].finish_reason == null ? x.ms[i] : null)).filter((v) => v !== null);
            const last = [...x.chunks].reverse().find((c) => c.timings);
            // wllama's OAI-style stream carries token texts, not ids.
            return { ms: stamps, pieces: tok.map((c) => c.choices[0].text), timings: last?.timings };
          });
          for (const [i, x] of runs.entries()) if (x.ms.length !== TG + 1) die(`wllama ${name} pp${p} run ${i}: ${x.ms.length} streamed tokens, want ${TG + 1}`);
          const t = runs[runs.length - 1].timings;
          // Steps whose text continues the native generation's text (wllama gives no ids).
          const n = native[p]?.generate_text;
          let k = null;
          if (n) {
            let acc = '';
            k = 0;
            while (k < runs[0].pieces.length && n.text.startsWith(acc + runs[0].pieces[k])) acc += runs[0].pieces[k++];
          }
          w[p] = {
            ...best(runs, p),
            llama_timings: runs.slice(1).map((x) => x.timings && { prompt_n: x.timings.prompt_n, prompt_per_second: round(x.timings.prompt_per_second), predicted_n: x.timings.predicted_n, predicted_per_second: round(x.timings.predicted_per_second) }),
            text: runs[0].pieces.join(''),
            agrees_with_native_steps: k,
            prompt: 'gemma/prompts.json text (same length, other tokens than webjit\'s ids)',
            native_gap_at_first_difference: n && k < TG + 1 ? gapAt(n.top2, k) : null,
          };
          if (t && t.prompt_n !== p) die(`wllama ${name} pp${p}: prompt_n ${t.prompt_n}`);
          log(`wllama ${name} pp${p}: prefill ${w[p].prefill_tok_s} tok/s, decode ${w[p].decode_tok_s} tok/s, its text follows native's for ${k} steps`);
        }
        result.wllama[name] = w;
        write();
      }
    }
  } catch (e) {
    result.console_tail = consoleLines.slice(-60);
    die(e.stack || e.message);
  } finally {
    await browser.close().catch(() => {});
    srv.close();
  }
  result.console_tail = consoleLines.slice(-40);

  // ---- ratios (same run) ----
  const r = {};
  for (const p of PP) {
    const n = native[p]?.bench;
    const b = result.webjit[p];
    if (!b) continue;
    const w = result.wllama?.cpu?.[p];
    const wg = result.wllama?.webgpu?.[p];
    r[p] = {
      prefill_browser_over_native: n ? round(b.prefill_tok_s / n.prefill_tok_s, 3) : null,
      decode_browser_over_native: n ? round(b.decode_tok_s / n.decode_tok_s, 3) : null,
      load_browser_over_native_time: n ? round(b.load_ms / 1000 / n.load_s, 2) : null,
      prefill_browser_over_wllama: w ? round(b.prefill_tok_s / w.prefill_tok_s, 2) : null,
      decode_browser_over_wllama: w ? round(b.decode_tok_s / w.decode_tok_s, 2) : null,
      prefill_browser_over_wllama_webgpu: wg ? round(b.prefill_tok_s / wg.prefill_tok_s, 2) : null,
      decode_browser_over_wllama_webgpu: wg ? round(b.decode_tok_s / wg.decode_tok_s, 2) : null,
    };
  }
  result.ratios = r;
  result.machine.loadavg_end = os.loadavg().map((x) => round(x, 2));
  console.log(write());
}

main().catch((e) => die(e.stack || e.message));
