// Preload for bench_minilm.mjs (node --import): after playwright-core's chromium.launch, open
// one throw-away page and call navigator.gpu.requestAdapter() until it answers (at most 10
// tries, 1 s apart), then close that page, before the benchmark opens its own.
// Why: on an H200 under gVisor (Chromium 156, Dawn on Vulkan, NVIDIA 580) the FIRST
// requestAdapter() of a fresh browser answered null (about 0.2-0.5 s) and every later one the
// NVIDIA adapter, so the webjit page (the first) recorded 'requestAdapter() returned null'.
// It changes nothing else: same browser, same flags; the bench's engines still get fresh
// contexts. What it saw goes to stderr (and to $GPU_WARMUP_LOG when set, as JSON).
//   node --import ./benchmarks/web/device/gpu_warmup.mjs benchmarks/web/bench_minilm.mjs ...
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');
// The very URL bench_minilm.mjs imports, so both get the same module (and the same object).
const { chromium } = await import(pathToFileURL(path.join(TOOLS, 'node_modules/playwright-core/index.mjs')).href);

const launch = chromium.launch.bind(chromium);
chromium.launch = async (...args) => {
  const browser = await launch(...args);
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>gpu warm-up</title>');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const tries = [];
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    for (let i = 0; i < 10; i++) {
      const got = await page.evaluate(async () => {
        const t = performance.now();
        const a = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
        return { ms: Math.round(performance.now() - t), vendor: a ? a.info.vendor : null, fallback: a ? a.info.isFallbackAdapter : null };
      });
      tries.push(got);
      if (got.vendor) break;
      await page.waitForTimeout(1000);
    }
    await page.context().close();
  } catch (e) {
    tries.push({ error: String(e.message || e) });
  } finally {
    server.close();
  }
  console.error(`gpu_warmup: requestAdapter() tries: ${JSON.stringify(tries)}`);
  if (process.env.GPU_WARMUP_LOG) fs.appendFileSync(process.env.GPU_WARMUP_LOG, JSON.stringify({ date: new Date().toISOString(), tries }) + '\n');
  return browser;
};
