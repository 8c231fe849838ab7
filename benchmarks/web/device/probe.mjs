// Which WebGPU adapter does this Chromium give a page, with the flags of tests/web/chromium.mjs
// (plus WEBJIT_CHROMIUM_EXTRA_ARGS)? Serves one tiny page on 127.0.0.1 (a secure context),
// prints {chromium version, args, adapter info, features, limits} as JSON, and with --gpu-txt
// FILE also writes the text of chrome://gpu there (shadow DOM included).
//   node benchmarks/web/device/probe.mjs [--gpu-txt FILE] [--out FILE]
// Env as bench_minilm.mjs: WEBJIT_CHROMIUM, WEBJIT_WEB_TOOLS, WEBJIT_CHROMIUM_EXTRA_ARGS.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, chromiumArgs } from '../../../tests/web/chromium.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');
const argv = process.argv.slice(2);
const opt = (k) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : '');

const { chromium } = await import(pathToFileURL(path.join(TOOLS, 'node_modules/playwright-core/index.mjs')).href);
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>probe</title>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;
const args = chromiumArgs();
const out = { chromium: CHROMIUM, args };
const t0 = Date.now();
let browser;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 60000 });
  out.version = browser.version();
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  await page.goto(origin);
  // A GPU process that hangs must not hang the probe: give up after PROBE_TIMEOUT_S (45) s.
  const limit = Number(process.env.PROBE_TIMEOUT_S || 45) * 1000;
  const timeout = (what) => new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer in ${limit / 1000} s`)), limit).unref());
  out.page = await Promise.race([timeout('adapter probe'), page.evaluate(async () => {
    const r = { secure: isSecureContext, hasGpu: !!navigator.gpu, requests: [] };
    if (!navigator.gpu) return r;
    // requestAdapter() as bench_page.js asks (no options), as webjit asks ('high-performance'),
    // 'low-power', then the first two again (a GPU process still starting could answer null).
    let best = null;
    for (const pref of ['default', 'high-performance', 'low-power', 'default', 'high-performance']) {
      const t = performance.now();
      const a = await navigator.gpu.requestAdapter(pref === 'default' ? undefined : { powerPreference: pref });
      const q = { pref, ms: Math.round(performance.now() - t) };
      r.requests.push(q);
      if (!a) {
        q.adapter = null;
        continue;
      }
      const i = a.info || {};
      q.adapter = { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: i.isFallbackAdapter, subgroupMinSize: i.subgroupMinSize, subgroupMaxSize: i.subgroupMaxSize };
      if (!r.features) {
        r.features = [...a.features].sort();
        r.limits = {};
        for (const k in a.limits) r.limits[k] = a.limits[k];
      }
      if (!best || (best.info.isFallbackAdapter && !i.isFallbackAdapter)) best = { a, info: i, pref };
    }
    if (best) {
      // A device and one tiny compute dispatch on the best adapter: it must really work.
      r.dispatch_on = `${best.info.vendor} (${best.pref})`;
      try {
        const d = await best.a.requestDevice();
        const buf = d.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
        const rd = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        const m = d.createShaderModule({ code: '@group(0) @binding(0) var<storage, read_write> o: array<u32, 4>; @compute @workgroup_size(4) fn main(@builtin(local_invocation_index) i: u32) { o[i] = i * 7u + 1u; }' });
        const p = d.createComputePipeline({ layout: 'auto', compute: { module: m, entryPoint: 'main' } });
        const bg = d.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
        const e = d.createCommandEncoder();
        const c = e.beginComputePass();
        c.setPipeline(p);
        c.setBindGroup(0, bg);
        c.dispatchWorkgroups(1);
        c.end();
        e.copyBufferToBuffer(buf, 0, rd, 0, 16);
        d.queue.submit([e.finish()]);
        await rd.mapAsync(GPUMapMode.READ);
        r.dispatch = Array.from(new Uint32Array(rd.getMappedRange()));
        d.destroy();
      } catch (err) {
        r.dispatch = `error: ${err.message}`;
      }
    }
    return r;
  })]);
  out.console = logs.slice(-20);
  if (opt('--gpu-txt')) {
    try {
      await page.goto('chrome://gpu');
      await page.waitForTimeout(3000);
      const txt = await Promise.race([timeout('chrome://gpu'), page.evaluate(() => {
        const parts = [];
        const walk = (n) => {
          if (n.nodeName === 'STYLE' || n.nodeName === 'SCRIPT') return;
          if (n.shadowRoot) walk(n.shadowRoot);
          if (n.nodeType === Node.TEXT_NODE) {
            const t = n.textContent.trim();
            if (t) parts.push(t);
          }
          for (const c of n.childNodes) walk(c);
        };
        walk(document.body);
        return parts.join('\n');
      })]);
      fs.writeFileSync(opt('--gpu-txt'), txt + '\n');
    } catch (e) {
      fs.writeFileSync(opt('--gpu-txt'), `chrome://gpu failed: ${e.message}\n`);
    }
  }
} catch (e) {
  out.error = String(e && e.message ? e.message : e).split('\n').slice(0, 30).join('\n');
} finally {
  await browser?.close().catch(() => {});
  server.close();
}
out.wall_s = (Date.now() - t0) / 1000;
const text = JSON.stringify(out, null, 2);
console.log(text);
if (opt('--out')) fs.writeFileSync(opt('--out'), text + '\n');
