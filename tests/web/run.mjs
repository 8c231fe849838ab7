// The browser test suite: headless Debian Chromium (WebGPU on SwiftShader) driven by
// playwright-core, against web/pkg served by server.mjs. Missing Chromium, WebGPU, the
// package or the models FAIL the run: nothing is skipped.
//
//   node tests/web/run.mjs            every case
//   node tests/web/run.mjs na_1d gemma   only these
// Env: WEBJIT_CHROMIUM (default /usr/bin/chromium), WEBJIT_WEB_TOOLS (npm tools dir, default
// .cache/web-tools), WEBJIT_WEB_GEMMA_TOKENS (caps the greedy steps of the Gemma golden check;
// by default every step the golden rule compares, 34 over 4 prompts: SwiftShader decodes
// Gemma 3 270M at ~0.5 tok/s on 2 cores), WEBJIT_WEB_TIMEOUT_S (per case; default 300,
// Gemma 1200), WEBJIT_CLI (the native CLI the family cases compare with, default
// target/release/webjit).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, WEBGPU_ARGS, chromiumArgs } from './chromium.mjs';
import { modelDir, startServer } from './server.mjs';
import { runViteCase } from './vite.mjs';
import { compile as compileTypes } from './types.mjs';
import { FAMILIES, chatParams, familyParams, kvCacheKiviParams, kvCacheParams, perplexityParams } from './native.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');
const TIMEOUT_S = Number(process.env.WEBJIT_WEB_TIMEOUT_S || 0);

// [case, browser ('webgpu' | 'nowebgpu'), params (or a function computing them when the case
// runs: the family cases run the native CLI first)]
const CASES = [
  ['info', 'webgpu'],
  // The packed package in a Vite app (vite.mjs: build + preview, dev, folder install).
  ['vite', 'webgpu'],
  // The package imported from another origin; a worker or wasm that cannot be loaded.
  ['cross_origin', 'webgpu'],
  ['load_errors', 'webgpu'],
  ['webgpu_unavailable', 'nowebgpu'],
  ['na_1d', 'webgpu'],
  ['na_2d', 'webgpu'],
  ['na_3d', 'webgpu'],
  ['bsa_moba', 'webgpu'],
  ['bsa_grid', 'webgpu'],
  ['op_errors', 'webgpu'],
  ['bad_gguf', 'webgpu'],
  ['resume', 'webgpu'],
  ['generate_stop', 'webgpu'],
  ['cache_api', 'webgpu'],
  ['opfs', 'webgpu'],
  ['cycles', 'webgpu'],
  ['abort', 'webgpu'],
  ['device_lost', 'webgpu'],
  ['not_a_model', 'webgpu'],
  ['option_errors', 'webgpu'],
  ['progress_fraction', 'webgpu'],
  ['cache_listing', 'webgpu'],
  ['embed_truncation', 'webgpu'],
  ['decode_pipelined', 'webgpu'],
  ['minilm', 'webgpu'],
  ['readback_nudge', 'webgpu'],
  ['tune', 'webgpu'],
  // Every greedy step the golden rule compares, unless WEBJIT_WEB_GEMMA_TOKENS caps them.
  // Each decoder family's tiny GGUF against the native engine (target/release/webjit).
  ...FAMILIES.map((f) => [`family_${f}`, 'webgpu', () => familyParams(f)]),
  ['family_chat', 'webgpu', chatParams],
  // tiny-llama with a q8_0 KV cache against the native CLI's --kv-cache q8_0.
  ['kv_cache_q8_0', 'webgpu', kvCacheParams],
  // The same with kivi2 over a prompt that crosses its group boundaries.
  ['kv_cache_kivi2', 'webgpu', kvCacheKiviParams],
  ['perplexity', 'webgpu', perplexityParams],
  ['openai_chat', 'webgpu'],
  ['openai_control', 'webgpu'],
  // The objects the API returns as literals of index.d.ts's types, and usage.ts: tsc --strict (types.mjs).
  ['types', 'webgpu'],
  ['gemma', 'webgpu', { ...(process.env.WEBJIT_WEB_GEMMA_TOKENS ? { tokens: Number(process.env.WEBJIT_WEB_GEMMA_TOKENS) } : {}), timeoutS: 1200 }],
  ['gemma_iq4', 'webgpu', { ...(process.env.WEBJIT_WEB_GEMMA_TOKENS ? { tokens: Number(process.env.WEBJIT_WEB_GEMMA_TOKENS) } : {}), timeoutS: 600 }],
  // At most 8 steps whatever WEBJIT_WEB_GEMMA_TOKENS says: llama.cpp is 1.1 off f64 at step 8.
  ['gemma_lowbit', 'webgpu', { timeoutS: 600 }],
];

function die(msg) {
  console.error(`web tests: FAIL: ${msg}`);
  process.exit(1);
}

/** One case of cases.js in a fresh page of the harness, bounded in time. */
async function runHarnessCase(page, origin, name, params) {
  const TIMEOUT_MS = (TIMEOUT_S || params?.timeoutS || 300) * 1000;
  await page.goto(`${origin}/t/pages/harness.html`);
  await page.waitForFunction(() => window.harnessReady === true, null, { timeout: 30000 });
  let timer;
  const r = await Promise.race([
    page.evaluate(([n, p]) => window.runCase(n, p), [name, params || {}]),
    new Promise((res) => {
      timer = setTimeout(() => res({ ok: false, error: `timed out after ${TIMEOUT_MS / 1000} s` }), TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  return r;
}

async function main() {
  const only = process.argv.slice(2);
  const unknown = only.filter((n) => !CASES.some(([c]) => c === n));
  if (unknown.length) die(`unknown cases ${unknown.join(', ')} (have ${CASES.map(([c]) => c).join(', ')})`);
  const todo = only.length ? CASES.filter(([c]) => only.includes(c)) : CASES;

  // The JS reference must be right before it judges anything; the streaming code is checked
  // in node too, where a failure is easier to read.
  for (const t of ['ref.selftest.mjs', 'source.selftest.mjs']) {
    const self = spawnSync(process.execPath, [path.join(HERE, t)], { encoding: 'utf8', timeout: 120000 });
    process.stdout.write(self.stdout);
    if (self.status !== 0) die(`${t} failed\n${self.stderr}`);
  }

  if (!fs.existsSync(path.join(ROOT, 'web/pkg/index.js'))) die('web/pkg is not built: run `make web`');
  if (!fs.existsSync(CHROMIUM)) die(`${CHROMIUM} is missing (apt-get install chromium)`);
  const pw = path.join(TOOLS, 'node_modules/playwright-core/index.mjs');
  if (!fs.existsSync(pw)) die(`playwright-core is missing from ${TOOLS}: run \`make web\``);
  const models = modelDir();
  const tinies = FAMILIES.map((f) => `tiny-${f}.gguf`);
  for (const f of ['gemma-3-270m-q4_k_m.gguf', 'gemma-3-270m-iq4_xs.gguf', 'gemma-3-270m-iq2_xs-iq3_s.gguf', 'tiny-llama.gguf', 'all-MiniLM-L6-v2/model.safetensors', ...tinies]) {
    if (!fs.existsSync(path.join(models, f))) die(`${path.join(models, f)} is missing: run \`make models\``);
  }
  const { chromium } = await import(pathToFileURL(pw).href);

  const srv = await startServer();
  const browsers = {};
  const browser = async (kind) => {
    if (!browsers[kind]) {
      browsers[kind] = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: chromiumArgs({ webgpu: kind === 'webgpu' }),
      });
    }
    return browsers[kind];
  };

  const t00 = Date.now();
  const results = [];
  try {
    // Fail loudly when WebGPU itself is missing: every other failure would be noise.
    {
      const ctx = await (await browser('webgpu')).newContext();
      const page = await ctx.newPage();
      await page.goto(`${srv.origin}/t/pages/harness.html`);
      const probe = await page.evaluate(async () => {
        if (!navigator.gpu) return 'navigator.gpu is missing';
        const a = await navigator.gpu.requestAdapter();
        return a ? '' : 'requestAdapter() returned null';
      });
      await ctx.close();
      if (probe) die(`no WebGPU in ${CHROMIUM} with ${WEBGPU_ARGS.join(' ')}: ${probe}`);
    }
    for (const [name, kind, params] of todo) {
      const ctx = await (await browser(kind)).newContext();
      const page = await ctx.newPage();
      const consoleLines = [];
      page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
      const t0 = Date.now();
      let r;
      try {
        const p = typeof params === 'function' ? params() : params;
        r = name === 'vite' ? await runViteCase({ tools: TOOLS, browser: await browser(kind) }) : await runHarnessCase(page, srv.origin, name, p);
        if (name === 'types' && r.ok) {
          const t = compileTypes({ tools: TOOLS, samples: r.detail.samples });
          r = { ...t, lines: [...(r.lines || []), ...t.lines] };
        }
      } catch (e) {
        r = { ok: false, error: `harness: ${e.message}` };
      }
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      console.log(`${r.ok ? 'PASS' : 'FAIL'} web/${name} ${secs} s`);
      for (const l of r.lines || []) console.log(l);
      if (!r.ok) {
        console.log(`  error: ${r.error}`);
        if (r.stack) console.log(`  stack: ${r.stack.split('\n').slice(0, 6).join('\n         ')}`);
        for (const l of consoleLines.slice(-20)) console.log(`  console: ${l}`);
      }
      results.push({ name, ok: r.ok, secs });
      await ctx.close().catch(() => {});
    }
  } finally {
    for (const b of Object.values(browsers)) await b.close().catch(() => {});
    srv.server.close();
  }
  const failed = results.filter((r) => !r.ok);
  const total = ((Date.now() - t00) / 1000).toFixed(1);
  console.log(`web tests: ${results.length - failed.length} passed, ${failed.length} failed, ${total} s${failed.length ? ` (failed: ${failed.map((r) => r.name).join(', ')})` : ''}`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => die(e.stack || e.message));
