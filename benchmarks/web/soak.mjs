// A long soak of the npm package in one headless Chromium (WebGPU on SwiftShader here, or a
// GPU with WEBJIT_CHROMIUM_EXTRA_ARGS): does memory level off over hundreds of load/generate/
// dispose cycles, and if it grows, is it webjit's (the engine's own counters, wasm memory) or
// Chromium's (the GPU process, whose resident memory is read from /proc)?
//
//   node benchmarks/web/soak.mjs [--models 300] [--engines 60] [--embedders 100] [--every 10]
//        [--in-page] [--gc] [--pkg DIR] [--out FILE]
//
// --pkg serves another build of the package (default web/pkg), e.g. a clean clone's, so a
// rebuild of web/pkg during the hours of a soak does not change what is measured.
// --in-page runs the engine in the page ({worker: false}) instead of the package's Worker;
// --gc starts Chromium with --js-flags=--expose-gc and collects garbage in the page before each
// row (with --in-page that includes the engine's JS objects), so what still grows is not garbage
// waiting for the collector.
//
// Three phases, each in a fresh page:
//   models     one Engine; each cycle loads tests' tiny-llama.gguf, generates 8 tokens, disposes
//              the model
//   engines    each cycle creates an Engine, loads the tiny model, generates, disposes the engine
//              (a new GPUDevice every cycle)
//   embedders  one Engine; each cycle loads all-MiniLM-L6-v2, embeds two sentences, disposes it
// Every `--every` cycles a row: the engine's live/pooled GPU bytes and buffers created, wasm
// memory, the page's JS heap, and the resident memory (VmRSS) of Chromium's GPU process and of
// the renderer. Prints one JSON object (rows per phase, plus first-to-last and second-half
// slopes per 100 cycles) and writes it to --out when given. Fails (exit 1) when the engine's
// live GPU bytes after a dispose differ from before the first load: that would be a leak of
// ours whatever the browser does.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, chromiumArgs } from '../../tests/web/chromium.mjs';
import { startServer } from '../../tests/web/server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');

function die(msg) {
  console.error(`soak: FAIL: ${msg}`);
  process.exit(1);
}

function parseArgs(argv) {
  const o = { models: 300, engines: 60, embedders: 100, every: 10, out: '', inPage: false, gc: false, pkg: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const key = a.replace(/^--/, '');
    if (a === '--out') o.out = argv[++i] || die('--out wants a file');
    else if (a === '--pkg') o.pkg = path.resolve(argv[++i] || die('--pkg wants a folder'));
    else if (a === '--in-page') o.inPage = true;
    else if (a === '--gc') o.gc = true;
    else if (key in o) {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 0) die(`${a} wants an integer >= 0`);
      o[key] = n;
    } else die(`unknown argument ${a} (see the header of ${path.relative(ROOT, fileURLToPath(import.meta.url))})`);
  }
  if (o.every < 1) die('--every wants an integer >= 1');
  return o;
}

/** pid -> {ppid, cmd} of every process. */
function processes() {
  const out = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.set(Number(d), { ppid, cmd });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

function rssMiB(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Resident MiB of this script's Chromium GPU process and renderers (descendants of node). */
function chromiumRss() {
  const procs = processes();
  const mine = (pid) => {
    for (let p = pid, n = 0; p > 1 && n < 20; n++) {
      if (p === process.pid) return true;
      p = procs.get(p)?.ppid ?? 0;
    }
    return false;
  };
  let gpu = 0;
  let renderer = 0;
  for (const [pid, { cmd }] of procs) {
    if (!mine(pid)) continue;
    if (cmd.includes('--type=gpu-process')) gpu += rssMiB(pid) ?? 0;
    else if (cmd.includes('--type=renderer')) renderer += rssMiB(pid) ?? 0;
  }
  return { gpuProcessMiB: +gpu.toFixed(1), rendererMiB: +renderer.toFixed(1) };
}

// Runs in the page: `n` cycles of `phase` starting at cycle `from`, keeping state on window.
async function pageCycles({ phase, from, n, inPage }) {
  const { Engine } = await import('/pkg/index.js');
  const S = (window.soak ??= {});
  const models = '/models';
  if (phase !== 'engines' && !S.engine) {
    S.engine = await Engine.create({ tuningStore: 'none', worker: !inPage });
    S.base = (await S.engine.info()).memory.live_bytes;
  }
  const sentences = ['A man is eating food.', 'The stock market fell sharply.'];
  for (let i = 0; i < n; i++) {
    if (phase === 'engines') {
      const e = await Engine.create({ tuningStore: 'none', worker: !inPage });
      const m = await e.loadModel(`${models}/tiny-llama.gguf`);
      for await (const t of m.generateTokens('Hello there', { maxTokens: 8 })) void t;
      await e.dispose();
    } else if (phase === 'models') {
      const m = await S.engine.loadModel(`${models}/tiny-llama.gguf`);
      for await (const t of m.generateTokens('Hello there', { maxTokens: 8 })) void t;
      await m.dispose();
    } else {
      const emb = await S.engine.loadEmbedder(`${models}/all-MiniLM-L6-v2/`);
      const v = await emb.embed(sentences);
      if (!v || !v.length) throw new Error('no embeddings');
      await emb.dispose();
    }
  }
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 50));
  const info = S.engine ? await S.engine.info() : null;
  return {
    cycle: from + n,
    liveBytes: info ? info.memory.live_bytes : null,
    baseLiveBytes: S.base ?? null,
    pooledBytes: info ? info.memory.pooled_bytes : null,
    buffersCreated: info ? info.memory.buffers_created : null,
    wasmMiB: info ? +(info.wasm_memory_bytes / 2 ** 20).toFixed(1) : null,
    jsHeapMiB: performance.memory ? +(performance.memory.usedJSHeapSize / 2 ** 20).toFixed(1) : null,
  };
}

/** MiB per 100 cycles between two rows of a series. */
function slope(rows, key, a, b) {
  if (!rows[a] || !rows[b] || rows[a][key] == null || rows[b][key] == null || rows[b].cycle === rows[a].cycle) return null;
  return +(((rows[b][key] - rows[a][key]) / (rows[b].cycle - rows[a].cycle)) * 100).toFixed(2);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const pw = path.join(TOOLS, 'node_modules/playwright-core/index.mjs');
  if (!fs.existsSync(pw)) die(`playwright-core is missing from ${TOOLS}: run \`make web\``);
  const pkg = o.pkg || path.join(ROOT, 'web/pkg');
  if (!fs.existsSync(path.join(pkg, 'index.js'))) die(`${pkg} has no index.js: run \`make web\``);
  const { chromium } = await import(pathToFileURL(pw).href);
  const srv = await startServer({ pkg });
  const args = o.gc ? [...chromiumArgs(), '--js-flags=--expose-gc'] : chromiumArgs();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args });
  const result = { adapter: '', pkg, inPage: o.inPage, gc: o.gc, phases: {} };
  let leak = '';
  try {
    for (const phase of ['models', 'engines', 'embedders']) {
      const total = o[phase];
      if (!total) continue;
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      await page.goto(`${srv.origin}/t/pages/harness.html`);
      if (!result.adapter) {
        result.adapter = await page.evaluate(async () => {
          const a = await navigator.gpu?.requestAdapter();
          return a ? `${a.info?.vendor ?? ''} ${a.info?.architecture ?? ''} ${a.info?.description ?? ''}`.trim() : 'none';
        });
      }
      const rows = [{ cycle: 0, seconds: 0, ...chromiumRss() }];
      const t0 = Date.now();
      for (let from = 0; from < total; from += o.every) {
        const n = Math.min(o.every, total - from);
        const r = await page.evaluate(pageCycles, { phase, from, n, inPage: o.inPage });
        const row = { ...r, seconds: +((Date.now() - t0) / 1000).toFixed(1), ...chromiumRss() };
        rows.push(row);
        console.error(`soak ${phase} ${JSON.stringify(row)}`);
        if (r.liveBytes != null && r.liveBytes !== r.baseLiveBytes) {
          leak ||= `${phase}: live GPU bytes ${r.liveBytes} after cycle ${r.cycle}, ${r.baseLiveBytes} before the first load`;
        }
      }
      const last = rows.length - 1;
      const mid = Math.floor(last / 2);
      result.phases[phase] = {
        cycles: total,
        rows,
        per100: {
          gpuProcessMiB: slope(rows, 'gpuProcessMiB', 1, last),
          gpuProcessMiBSecondHalf: slope(rows, 'gpuProcessMiB', mid, last),
          rendererMiB: slope(rows, 'rendererMiB', 1, last),
          rendererMiBSecondHalf: slope(rows, 'rendererMiB', mid, last),
          wasmMiB: slope(rows, 'wasmMiB', 1, last),
          jsHeapMiB: slope(rows, 'jsHeapMiB', 1, last),
        },
      };
      await ctx.close();
    }
  } finally {
    await browser.close().catch(() => {});
    srv.server.close();
  }
  const text = JSON.stringify(result, null, 1);
  console.log(text);
  if (o.out) fs.writeFileSync(o.out, `${text}\n`);
  if (leak) die(leak);
}

main().catch((e) => die(e.stack || e.message));
