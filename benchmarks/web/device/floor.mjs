// The browser's own latency floor for one small GPU job, to read webjit's batch-1 embedding
// time against: in one headless Chromium (flags of tests/web/chromium.mjs plus
// WEBJIT_CHROMIUM_EXTRA_ARGS), a page times, each many times over:
//   readback     copy 1536 bytes into a kept mappable buffer, submit, mapAsync, read, unmap
//                (what returning one 384-float embedding costs with no compute at all)
//   dispatchN    N dispatches of a one-workgroup kernel, each with its own setPipeline and
//                setBindGroup (bind groups made once), in one pass, then the same readback
//                (N = 62, the dispatches of webjit's MiniLM forward pass)
//   worker_echo  a postMessage round trip to a Worker and back (webjit's API lives in one)
// and prints {adapter, results: {name: {runs, min_ms, median_ms, mean_ms}}} as JSON.
//   node benchmarks/web/device/floor.mjs [--runs 300] [--dispatches 62] [--out FILE]
// Env as bench_minilm.mjs: WEBJIT_CHROMIUM, WEBJIT_WEB_TOOLS, WEBJIT_CHROMIUM_EXTRA_ARGS.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, chromiumArgs } from '../../../tests/web/chromium.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TOOLS = process.env.WEBJIT_WEB_TOOLS || path.join(ROOT, '.cache', 'web-tools');
const argv = process.argv.slice(2);
const opt = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const RUNS = Number(opt('--runs', '300'));
const DISPATCHES = Number(opt('--dispatches', '62'));

const { chromium } = await import(pathToFileURL(path.join(TOOLS, 'node_modules/playwright-core/index.mjs')).href);
const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>floor</title>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const args = chromiumArgs();
let browser;
let out;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 60000 });
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}`);
  out = await page.evaluate(async ({ runs, dispatches }) => {
    const stats = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      return {
        runs: s.length,
        min_ms: s[0],
        median_ms: s[Math.floor(s.length / 2)],
        mean_ms: s.reduce((a, b) => a + b, 0) / s.length,
      };
    };
    // The first request of a fresh browser can answer null (seen on the device machine).
    let adapter = null;
    for (let i = 0; i < 10 && !adapter; i++) adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { error: 'no WebGPU adapter' };
    const device = await adapter.requestDevice();
    const info = adapter.info || {};
    const results = {};
    const src = device.createBuffer({ size: 1536, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const staging = device.createBuffer({ size: 1536, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const readback = async (enc) => {
      enc.copyBufferToBuffer(src, 0, staging, 0, 1536);
      device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const v = new Float32Array(staging.getMappedRange().slice(0));
      staging.unmap();
      return v;
    };
    const time = async (name, fn) => {
      for (let i = 0; i < 10; i++) await fn(); // warm-up
      const xs = [];
      for (let i = 0; i < runs; i++) {
        const t = performance.now();
        await fn();
        xs.push(performance.now() - t);
      }
      results[name] = stats(xs);
    };
    await time('readback', () => readback(device.createCommandEncoder()));
    const module = device.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read_write> b: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32) { b[i] = b[i] + 1.0; }`,
    });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const groups = [];
    for (let i = 0; i < dispatches; i++) {
      groups.push(device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: src } }] }));
    }
    await time(`dispatch${dispatches}`, () => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (let i = 0; i < dispatches; i++) {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, groups[i]);
        pass.dispatchWorkgroups(1);
      }
      pass.end();
      return readback(enc);
    });
    const worker = new Worker(URL.createObjectURL(new Blob(['onmessage = (e) => postMessage(e.data);'], { type: 'text/javascript' })));
    await time('worker_echo', () => new Promise((r) => {
      worker.onmessage = r;
      worker.postMessage(1);
    }));
    worker.terminate();
    device.destroy();
    return { adapter: { vendor: info.vendor, architecture: info.architecture, isFallbackAdapter: info.isFallbackAdapter }, results };
  }, { runs: RUNS, dispatches: DISPATCHES });
} finally {
  if (browser) await browser.close();
  server.close();
}
out = { date: new Date().toISOString(), chromium: CHROMIUM, args, ...out };
const text = JSON.stringify(out, null, 1);
console.log(text);
if (opt('--out', '')) fs.writeFileSync(opt('--out', ''), text + '\n');
if (out.error) process.exit(1);
