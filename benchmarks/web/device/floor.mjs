// The browser's own latency floor for one small GPU job, to read webjit's batch-1 embedding
// time against: in one headless Chromium (flags of tests/web/chromium.mjs plus
// WEBJIT_CHROMIUM_EXTRA_ARGS), a page times, each many times over:
//   readback     copy 1536 bytes into a kept mappable buffer, submit, mapAsync, read, unmap
//                (what returning one 384-float embedding costs with no compute at all)
//   dispatchN    N dispatches of a one-workgroup kernel, each with its own setPipeline and
//                setBindGroup (bind groups made once), in one pass, then the same readback
//                (N = 62, the dispatches of webjit's MiniLM forward pass)
//   worker_echo  a postMessage round trip to a Worker and back (webjit's API lives in one)
// and, with --variants, what the per-dispatch cost depends on, for each N:
//   indepN       N dispatches each writing its own buffer (no dependency between them)
//   samebindN    N dependent dispatches, one setPipeline and one setBindGroup for all
//   passesN      N dependent dispatches, each in its own compute pass
//   encodeN      only encoding and submitting dispatchN (no wait for the GPU)
//   pokeTms_N    dispatchN, with an empty queue.submit() every T ms (--poke list, 0: every
//                macrotask) while the map is pending: does traffic to the GPU process
//                deliver the map sooner?
// and prints {adapter, results: {name: {runs, min_ms, median_ms, mean_ms}}} as JSON.
//   node benchmarks/web/device/floor.mjs [--runs 300] [--dispatches 62[,32,...]] [--variants] [--out FILE]
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
const DISPATCHES = opt('--dispatches', '62').split(',').map(Number);
const VARIANTS = argv.includes('--variants');
const POKES = opt('--poke', '0,0.25,1').split(',').map(Number);

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
  out = await page.evaluate(async ({ runs, dispatches, variants, pokes }) => {
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
    const most = Math.max(...dispatches);
    const bind = (buffer) => device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
    const groups = [];
    const own = [];
    for (let i = 0; i < most; i++) {
      groups.push(bind(src));
      if (variants) own.push(bind(device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE })));
    }
    const encode = (n, sets, { perPass = false, once = false } = {}) => {
      const enc = device.createCommandEncoder();
      let pass = enc.beginComputePass();
      if (once) {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, sets[0]);
      }
      for (let i = 0; i < n; i++) {
        if (perPass && i > 0) {
          pass.end();
          pass = enc.beginComputePass();
        }
        if (!once) {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, sets[i]);
        }
        pass.dispatchWorkgroups(1);
      }
      pass.end();
      return enc;
    };
    for (const n of dispatches) {
      await time(`dispatch${n}`, () => readback(encode(n, groups)));
      if (!variants) continue;
      await time(`indep${n}`, () => readback(encode(n, own)));
      await time(`samebind${n}`, () => readback(encode(n, groups, { once: true })));
      await time(`passes${n}`, () => readback(encode(n, groups, { perPass: true })));
      // While the map is pending, an empty submit every macrotask (MessageChannel, no 4 ms
      // timer clamp): does traffic to the GPU process deliver the map sooner?
      for (const every of pokes) {
        await time(`poke${every}ms_${n}`, async () => {
          const enc = encode(n, groups);
          enc.copyBufferToBuffer(src, 0, staging, 0, 1536);
          device.queue.submit([enc.finish()]);
          let done = false;
          const p = staging.mapAsync(GPUMapMode.READ).then(() => { done = true; });
          const ch = new MessageChannel();
          let last = performance.now();
          while (!done) {
            if (performance.now() - last >= every) {
              device.queue.submit([]);
              last = performance.now();
            }
            await new Promise((r) => { ch.port1.onmessage = r; ch.port2.postMessage(0); });
          }
          await p;
          const v = new Float32Array(staging.getMappedRange().slice(0));
          staging.unmap();
          return v;
        });
      }
      await time(`encode${n}`, async () => {
        device.queue.submit([encode(n, groups).finish()]);
      });
      await device.queue.onSubmittedWorkDone();
    }
    const worker = new Worker(URL.createObjectURL(new Blob(['onmessage = (e) => postMessage(e.data);'], { type: 'text/javascript' })));
    await time('worker_echo', () => new Promise((r) => {
      worker.onmessage = r;
      worker.postMessage(1);
    }));
    worker.terminate();
    device.destroy();
    return { adapter: { vendor: info.vendor, architecture: info.architecture, isFallbackAdapter: info.isFallbackAdapter }, results };
  }, { runs: RUNS, dispatches: DISPATCHES, variants: VARIANTS, pokes: POKES });
} finally {
  if (browser) await browser.close();
  server.close();
}
out = { date: new Date().toISOString(), chromium: CHROMIUM, args, ...out };
const text = JSON.stringify(out, null, 1);
console.log(text);
if (opt('--out', '')) fs.writeFileSync(opt('--out', ''), text + '\n');
if (out.error) process.exit(1);
